'use strict'
// One of the processes of the multi-process accuracy test: 20 callers consume one key through
// a Redis-backed RateLimiter until told to stop, each waiting the retry time it was given when
// refused (as a well-behaved client does), then the process reports what it was admitted.
const { RateLimiter } = require('../..')

const limiter = new RateLimiter({
  capacity: Number(process.env.HAMMER_CAPACITY),
  refillPerSecond: Number(process.env.HAMMER_REFILL),
  store: { redis: { url: process.env.REDIS_URL, keyPrefix: process.env.HAMMER_PREFIX } },
})
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function caller(deadline, counts) {
  while (Date.now() < deadline) {
    const d = await limiter.consume('shared-key')
    if (d.allowed) counts.admitted++
    else await sleep(Math.max(1, Math.min(d.retryAfterMs, deadline - Date.now())))
  }
}

process.on('message', async (message) => {
  if (message.type !== 'go') return
  const deadline = Date.now() + message.runMs
  const counts = { admitted: 0 }
  await Promise.all(Array.from({ length: 20 }, () => caller(deadline, counts)))
  const stats = limiter.stats()
  process.send({ type: 'done', admitted: counts.admitted, localRefusals: stats.store.localRefusals }, () => {
    limiter.close()
    process.disconnect()
  })
})

// connected and the script loaded before the run starts
limiter.consume('warm-up').then(() => process.send({ type: 'ready' }))
