'use strict'
// Child process of the lock test in cache.test.js: opens a cache on the directory it is given
// and reports the outcome (the error code, or 'opened') on stdout.
const { PersistentCache } = require('../..')

try {
  const cache = new PersistentCache({ maxEntries: 10, dir: process.argv[2] })
  console.log('opened')
  cache.close()
} catch (error) {
  console.log(error.code)
}
