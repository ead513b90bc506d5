'use strict'
// Child process of the damaged-file tests in cache.test.js: opens a PersistentCache on a
// directory whose database file the test damaged, reads every key the test stored, writes and
// flushes one more, closes, and prints what it saw as one JSON line. A child, because the damage
// must not be able to take the test runner down with it: before bulwark guarded its calls into
// redb, a lookup that met a garbage page aborted the process.
const { PersistentCache } = require('../..')

/** The value stored under `key-${i}`: uncompressed text the test can find in the file. */
function markedValue(i) {
  return `value-${i}-${'x'.repeat(200)}`
}

const OPTIONS = { maxEntries: 10, compression: 'none' }

async function main() {
  const [dir, count] = [process.argv[2], Number(process.argv[3])]
  const warnings = []
  process.on('warning', (warning) => warnings.push({ code: warning.code, name: warning.name, message: warning.message }))
  const seen = { intact: 0, missing: 0, changed: [] }
  const cache = new PersistentCache({ ...OPTIONS, dir })
  for (let i = 0; i < count; i++) {
    const value = cache.get(`key-${i}`)
    if (value === undefined) seen.missing++
    else if (value === markedValue(i)) seen.intact++
    else seen.changed.push(i)
  }
  // what was on the damaged file is lost: the first flush after the damage may say so
  seen.firstFlush = await cache.flush().then(() => 'resolved', (e) => e.code)
  cache.set('after', 'a')
  seen.flush = await cache.flush().then(() => 'resolved', (e) => e.code)
  seen.disk = cache.stats().disk
  await cache.close()
  // warnings are emitted on the next tick
  await new Promise((resolve) => setImmediate(resolve))
  seen.warnings = warnings
  process.stdout.write(JSON.stringify(seen) + '\n')
}

if (require.main === module) main()

module.exports = { markedValue, OPTIONS }
