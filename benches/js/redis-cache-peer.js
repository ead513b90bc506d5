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
  // the parent's write-through is asynchronous: on a busy machine it can land after the
  // parent's short pause, so look again for up to a second before calling it missing
  let value = await cache.getAsync(key)
  for (let tries = 0; value === undefined && tries < 200; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 5))
    value = await cache.getAsync(key)
  }
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
