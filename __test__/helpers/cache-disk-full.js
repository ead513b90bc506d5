'use strict'
// Child process of the disk-failure test in cache.test.js, started under a file size limit
// (`ulimit -f`), so that the disk tier's file cannot grow past it and its writes fail with a real
// I/O error (EFBIG; Node ignores SIGXFSZ). Fills the disk tier until writes fail (overwriting
// `report` with each batch), overwrites and deletes entries that were flushed before, checks
// that the cache keeps serving, waits for the disk tier to come back, closes the cache, and
// prints what it saw as one JSON line.
const { PersistentCache } = require('../..')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A value of 16 KiB that lz4 cannot shrink much, distinct per `i`. */
function bigValue(i) {
  let text = ''
  let x = i + 1
  while (text.length < 16 << 10) {
    x = (x * 1103515245 + 12345) % 2147483648
    text += x.toString(36)
  }
  return text
}

async function main() {
  const cache = new PersistentCache({ maxEntries: 4, dir: process.argv[2] })
  const seen = { flushRejected: false, servedDuringFailure: true, throwsDuringFailure: 0 }
  cache.set('report', 'old')
  cache.set('gone', 'g')
  await cache.flush()

  // fill the disk until it refuses a write; each batch also overwrites `report`, so the batch
  // that fails holds an overwrite of a value that an earlier flush made durable
  let written = 0
  let round = 0
  while (cache.stats().disk.errors === 0 && written < 4000) {
    round++
    cache.set('report', `round ${round}`)
    for (let n = 0; n < 20; n++, written++) cache.set(`big${written}`, bigValue(written))
    await cache.flush().catch(() => {
      seen.flushRejected = true
    })
  }
  seen.rounds = round
  seen.bigWritten = written
  seen.errors = cache.stats().disk.errors

  // an overwrite and a delete that the failed disk may not see
  try {
    cache.set('report', 'new')
    cache.delete('gone')
    for (let i = 0; i < 50; i++) {
      if (cache.get('report') !== 'new' || cache.get('gone') !== undefined) seen.servedDuringFailure = false
      cache.set(`during${i}`, i)
      if (cache.get(`during${i}`) !== i) seen.servedDuringFailure = false
    }
  } catch (error) {
    seen.throwsDuringFailure++
    seen.error = String(error)
  }

  // the tier resets and takes writes again (its new, empty file has room below the limit)
  const started = Date.now()
  seen.recovered = false
  while (Date.now() - started < 20_000) {
    cache.set('after', 'a')
    if (cache.stats().disk.entries > 0) {
      seen.recovered = true
      break
    }
    await sleep(10)
  }
  seen.flushAfterRecovery = await cache.flush().then(
    () => 'resolved',
    (error) => error.code
  )
  seen.closed = await cache.close().then(
    () => 'resolved',
    (error) => error.code
  )
  process.stdout.write(`${JSON.stringify(seen)}\n`)
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error)
    process.exit(1)
  })
}

module.exports = { bigValue }
