'use strict'
// The other process of the invalidation-latency benchmark (benches/js/redis.js): fills its
// local tier from Redis when told, then watches the key until an invalidation from the parent
// removes it, and reports when that was seen (performance.timeOrigin + now(), as the parent).
const { performance } = require('node:perf_hooks')
const { PersistentCache } = require('../..')

const cache = new PersistentCache({ maxEntries: 10_000, redis: { url: process.env.REDIS_URL, keyPrefix: process.env.PEER_PREFIX } })
const stamp = () => performance.timeOrigin + performance.now()

process.on('message', async ({ op, key }) => {
  if (op === 'exit') {
    await cache.close()
    process.disconnect()
    return
  }
  const value = await cache.getAsync(key)
  if (value === undefined) {
    process.send({ error: `${key} not found in Redis` })
    return
  }
  process.send({ filled: key })
  const watch = () => {
    if (cache.get(key) === undefined) process.send({ seen: key, at: stamp() })
    else setImmediate(watch)
  }
  watch()
})
const ready = setInterval(() => {
  if (cache.stats().redis.subscribed) {
    clearInterval(ready)
    process.send({ ready: true })
  }
}, 5)
