'use strict'
// Child process of the SIGKILL test in cache.test.js: writes counter-keyed values to a disk
// cache as fast as it can, flushes now and then, and reports each flushed counter to the parent
// over IPC. The parent kills it with SIGKILL mid-run and checks the directory.
const { PersistentCache } = require('../..')

const cache = new PersistentCache({ maxEntries: 1000, dir: process.argv[2] })
let counter = 0
let flushed = 0
let flushing = false
// writes run ahead of the last durable one by this much at most, so that a flush (which waits
// for everything queued before it) completes now and then even on a slow disk
const MAX_AHEAD = 4000

function valueOf(i) {
  return { i, text: `value-${i}-`.repeat(20) }
}

function writeSome() {
  if (counter - flushed > MAX_AHEAD) {
    setTimeout(writeSome, 1)
    return
  }
  for (let n = 0; n < 200; n++) {
    counter++
    cache.set(`k${counter}`, valueOf(counter))
  }
  if (!flushing) {
    flushing = true
    const upTo = counter
    cache.flush().then(() => {
      flushing = false
      flushed = upTo
      process.send({ flushed: upTo })
    })
  }
  setImmediate(writeSome)
}

module.exports = { valueOf }
if (require.main === module) {
  process.send({ ready: true })
  writeSome()
}
