'use strict'
// One of the processes of the cache invalidation tests: a PersistentCache on the shared Redis
// tier, driven by its parent over IPC ({ id, op, args } -> { id, result }).
const { PersistentCache } = require('../..')

const cache = new PersistentCache({ maxEntries: 1000, redis: { url: process.env.REDIS_URL, keyPrefix: process.env.PEER_PREFIX } })

const ops = {
  set: (key, value, options) => void cache.set(key, value, options),
  get: (key) => cache.get(key),
  getAsync: (key) => cache.getAsync(key),
  delete: (key) => cache.delete(key),
  invalidateTag: (tag) => cache.invalidateTag(tag),
  invalidatePrefix: (prefix) => cache.invalidatePrefix(prefix),
  stats: () => cache.stats().redis,
  // a Redis write-through is sent at the end of the tick: wait until it has gone
  settle: () => new Promise((resolve) => setTimeout(resolve, 20)),
}

process.on('message', async ({ id, op, args }) => {
  if (op === 'exit') {
    await cache.close()
    process.disconnect()
    return
  }
  try {
    const result = await ops[op](...args)
    process.send({ id, result: result === undefined ? null : result })
  } catch (error) {
    process.send({ id, error: String(error && error.stack) })
  }
})
// ready once subscribed: an invalidation published earlier would not reach this process
const waitSubscribed = setInterval(() => {
  if (cache.stats().redis.subscribed) {
    clearInterval(waitSubscribed)
    process.send({ ready: true })
  }
}, 5)
