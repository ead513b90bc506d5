'use strict'
// RateLimiter with its buckets in Redis: the shared budget seen by several limiters and several
// processes, batching, the local refusal cache, tiers, blocks, the fair queue, the middleware,
// and Redis going away (a private redis-server, killed and restarted) under each onStoreError.
const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { fork } = require('node:child_process')
const path = require('node:path')
const http = require('node:http')
const Redis = require('ioredis')
const { RateLimiter, RateLimitError, codes } = require('..')
const { rateLimit } = require('../express.js')
const { needService, deleteKeys, REDIS_URL } = require('./helpers/services')
const { haveRedisServer, startRedisServer } = require('./helpers/redis-server')
const { collectGarbage, settledWithin, afterQueuedTicks } = require('./helpers/gc')

const PREFIX = `bulwark-test:rl:${process.pid}:`
let serial = 0
/** A fresh key prefix per test, so that tests never share buckets. */
const prefix = () => `${PREFIX}${++serial}:`
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function remote(options, redis = {}) {
  return new RateLimiter({ ...options, store: { redis: { url: REDIS_URL, keyPrefix: prefix(), ...redis } } })
}

/** Two limiters over the same keys in Redis, as two processes would have. */
function pair(options) {
  const keyPrefix = prefix()
  const make = () => new RateLimiter({ ...options, store: { redis: { url: REDIS_URL, keyPrefix } } })
  return [make(), make()]
}

async function redisTimeMs(client) {
  const [seconds, micros] = await client.time()
  return Number(seconds) * 1000 + Number(micros) / 1000
}

describe('RateLimiter with a Redis store', async () => {
  const service = await needService('redis')
  let client
  const limiters = []
  const track = (...ls) => {
    limiters.push(...ls)
    return ls.length === 1 ? ls[0] : ls
  }

  before(() => {
    if (!service.skip) client = new Redis(REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 1 })
  })

  after(async () => {
    for (const l of limiters) l.close()
    if (client) {
      await deleteKeys(client, `*${PREFIX}*`)
      client.disconnect()
    }
  })

  test('admits capacity and refuses the rest, with the figures of a local limiter', { skip: service.skip }, async () => {
    const limiter = track(remote({ capacity: 5, refillPerSecond: 1 }))
    assert.equal(limiter.remote, true)
    const decisions = []
    for (let i = 0; i < 7; i++) decisions.push(await limiter.consume('alice'))
    assert.deepEqual(decisions.map((d) => d.allowed), [true, true, true, true, true, false, false])
    assert.deepEqual(decisions.slice(0, 5).map((d) => d.remaining), [4, 3, 2, 1, 0])
    for (const d of decisions) assert.equal(d.limit, 5)
    const refused = decisions[5]
    assert.ok(refused.retryAfterMs > 0 && refused.retryAfterMs <= 1000, `retryAfterMs ${refused.retryAfterMs}`)
    assert.ok(refused.resetMs > 4000 && refused.resetMs <= 5000, `resetMs ${refused.resetMs}`)
    // a cost of 0 never takes anything; another key has its own bucket
    assert.equal((await limiter.consume('bob', 5)).remaining, 0)
    const stats = limiter.stats()
    assert.equal(stats.allowed, 6)
    assert.equal(stats.rejected, 2)
    assert.equal(stats.store.kind, 'redis')
  })

  test('a decision settles when nothing but its promise holds the limiter, through a garbage collection', { skip: service.skip }, async () => {
    const decision = remote({ capacity: 1, refillPerSecond: 1 }).consume('a')
    await afterQueuedTicks() // the batch is out
    collectGarbage()
    const settled = await settledWithin(decision, 5000)
    assert.equal(settled.allowed, true)
  })

  test('two limiters (as two processes) share one budget', { skip: service.skip }, async () => {
    const [a, b] = track(...pair({ capacity: 4, refillPerSecond: 0.001 }))
    assert.equal((await a.consume('k', 3)).remaining, 1)
    assert.equal((await b.consume('k')).remaining, 0)
    assert.equal((await a.consume('k')).allowed, false)
    assert.equal((await b.consume('k')).allowed, false)
  })

  test('decisions of one tick go to Redis in one round trip, and exactly capacity is admitted', { skip: service.skip }, async () => {
    const limiter = track(remote({ capacity: 10, refillPerSecond: 0.001 }))
    await limiter.consume('warm-up')
    const before = limiter.stats().store
    const decisions = await Promise.all(Array.from({ length: 50 }, () => limiter.consume('hot')))
    const after = limiter.stats().store
    assert.equal(decisions.filter((d) => d.allowed).length, 10)
    assert.equal(after.batches - before.batches, 1)
    assert.equal(after.roundTrips - before.roundTrips, 1)
    assert.equal(after.commands - before.commands, 1) // one script call decides the whole batch
  })

  test('a refused key is refused locally until its retry time, without a round trip', { skip: service.skip }, async () => {
    const limiter = track(remote({ capacity: 1, refillPerSecond: 0.01 }))
    assert.equal((await limiter.consume('k')).allowed, true)
    const first = await limiter.consume('k')
    assert.equal(first.allowed, false)
    const before = limiter.stats().store
    for (let i = 0; i < 20; i++) {
      const d = await limiter.consume('k')
      assert.equal(d.allowed, false)
      assert.ok(d.retryAfterMs > 0 && d.retryAfterMs <= first.retryAfterMs)
    }
    const after = limiter.stats().store
    assert.equal(after.localRefusals - before.localRefusals, 20)
    assert.equal(after.commands, before.commands)
    // reset goes to Redis and clears the local knowledge
    limiter.reset('k')
    assert.equal((await limiter.consume('k')).allowed, true)
  })

  test('a refill on Redis\'s clock admits again after the retry time it gave', { skip: service.skip }, async () => {
    const limiter = track(remote({ capacity: 2, refillPerSecond: 50 }))
    await limiter.consume('k', 2)
    const refused = await limiter.consume('k')
    assert.equal(refused.allowed, false)
    await sleep(refused.retryAfterMs + 5)
    assert.equal((await limiter.consume('k')).allowed, true)
  })

  test('synchronous calls throw ERR_STORE_ASYNC', { skip: service.skip }, async () => {
    const limiter = track(remote({ capacity: 1, refillPerSecond: 1 }))
    for (const call of [() => limiter.tryConsume('k'), () => limiter.check('k'), () => limiter.peek('k')]) {
      assert.throws(call, (error) => error.code === codes.STORE_ASYNC && error.code === 'ERR_STORE_ASYNC' && /consume\(\)/.test(error.message))
    }
  })

  test('invalid arguments reject; invalid store options throw naming the option', { skip: service.skip }, async () => {
    const limiter = track(remote({ capacity: 2, refillPerSecond: 1 }))
    await assert.rejects(limiter.consume(''), { code: 'ERR_BULWARK_INVALID_ARGUMENT' })
    await assert.rejects(limiter.consume(42), { name: 'TypeError' })
    await assert.rejects(limiter.consume('k', -1), { name: 'RangeError' })
    await assert.rejects(limiter.consume('k', 3), /above the key's capacity/)
    const base = { capacity: 1, refillPerSecond: 1 }
    assert.throws(() => new RateLimiter({ ...base, store: {} }), { code: 'ERR_BULWARK_INVALID_OPTION', message: /options\.store/ })
    assert.throws(() => new RateLimiter({ ...base, store: { memcached: {} } }), /unknown option "memcached"/)
    assert.throws(() => new RateLimiter({ ...base, store: { redis: { url: 'http://x' } } }), /options\.store\.redis\.url/)
    assert.throws(() => new RateLimiter({ ...base, store: { redis: { keyPrefix: 'a{b}' } } }), /keyPrefix must not contain braces/)
    assert.throws(() => new RateLimiter({ ...base, store: { redis: { retryMs: 0 } } }), /options\.store\.redis\.retryMs/)
    assert.throws(() => new RateLimiter({ ...base, store: { redis: {} }, onStoreError: 'maybe' }), /onStoreError must be 'deny', 'allow' or 'local'/)
    assert.throws(() => new RateLimiter({ ...base, onStoreError: 'deny' }), /onStoreError applies to a remote store/)
    // the local limiter's consume resolves at once with check's decision
    const local = new RateLimiter(base)
    assert.equal(local.remote, false)
    assert.deepEqual(await local.consume('k'), { allowed: true, limit: 1, remaining: 0, resetMs: 1000, retryAfterMs: 0 })
    assert.equal((await local.consume('k')).allowed, false)
    await assert.rejects(local.consume(''), { code: 'ERR_BULWARK_INVALID_ARGUMENT' })
  })

  test('tiers apply per process and keep the tokens used in Redis', { skip: service.skip }, async () => {
    const options = { capacity: 2, refillPerSecond: 0.001, tiers: { pro: { capacity: 10, refillPerSecond: 0.001 } } }
    const [a, b] = track(...pair(options))
    assert.equal((await a.consume('c', 2)).remaining, 0)
    assert.equal((await a.consume('c')).allowed, false)
    // another process puts the client on the pro tier: 2 of its 10 are used
    b.setClientTier('c', 'pro')
    const upgraded = await b.consume('c')
    assert.equal(upgraded.allowed, true)
    assert.equal(upgraded.limit, 10)
    assert.equal(upgraded.remaining, 7)
    assert.throws(() => b.setClientTier('c', 'gold'), /tier "gold" is not configured/)
  })

  test('blockDurationMs blocks a refused key in every process', { skip: service.skip }, async () => {
    const [a, b] = track(...pair({ capacity: 1, refillPerSecond: 0.01, blockDurationMs: 60_000 }))
    assert.equal((await a.consume('k')).allowed, true)
    const refused = await a.consume('k')
    assert.equal(refused.allowed, false)
    assert.ok(refused.retryAfterMs > 59_000, `retryAfterMs ${refused.retryAfterMs}`)
    // b never saw the refusal: Redis tells it the key is blocked
    const seen = await b.consume('k')
    assert.equal(seen.allowed, false)
    assert.ok(seen.retryAfterMs > 59_000)
    await assert.rejects(b.acquire('k'), (e) => e instanceof RateLimitError && e.reason === 'blocked')
    assert.ok(b.stats().blocked >= 1)
    // unblocked: a request that costs nothing is admitted again (a blocked key refuses even those)
    assert.equal((await b.consume('k', 0)).allowed, false)
    b.unblock('k')
    assert.equal((await b.consume('k', 0)).allowed, true)
  })

  test('block and reset are shared', { skip: service.skip }, async () => {
    const [a, b] = track(...pair({ capacity: 3, refillPerSecond: 0.001 }))
    a.block('k', 60_000)
    assert.equal((await a.consume('k')).allowed, false) // known here at once
    await a.consume('other') // the block went to Redis in this batch, before this decision
    const seen = await b.consume('k')
    assert.equal(seen.allowed, false)
    assert.ok(seen.retryAfterMs > 59_000)
    assert.throws(() => a.block('k', -1), { code: 'ERR_BULWARK_INVALID_ARGUMENT' })
    // a reset in one process goes to Redis
    a.reset('k')
    const after = await a.consume('k')
    assert.equal(after.allowed, true)
    assert.equal(after.remaining, 2)
    // b asks Redis again within a second (its cached refusal is bounded), then sees the reset
    await sleep(1_050)
    assert.equal((await b.consume('k')).remaining, 1)
  })

  test('a shared budget (global) spans keys and processes', { skip: service.skip }, async () => {
    const [a, b] = track(...pair({ capacity: 5, refillPerSecond: 0.001, global: { capacity: 3, refillPerSecond: 0.001 } }))
    assert.equal((await a.consume('x')).allowed, true)
    assert.equal((await b.consume('y')).allowed, true)
    assert.equal((await a.consume('z')).allowed, true)
    const refused = await b.consume('w')
    assert.equal(refused.allowed, false)
    assert.equal(refused.remaining, 5) // the key itself has all its tokens
  })

  test('acquire waits for the shared budget and is served in order per key', { skip: service.skip }, async () => {
    const [a, b] = track(...pair({ capacity: 2, refillPerSecond: 40, queue: { maxWaitMs: 5_000, maxPerClient: 3 } }))
    await b.consume('k', 2) // the other process took the budget
    const order = []
    const waits = [0, 1, 2].map((i) => a.acquire('k').then((d) => order.push(i) && d))
    await assert.rejects(a.acquire('k'), (e) => e.reason === 'queue_full')
    const granted = await Promise.all(waits)
    for (const d of granted) assert.equal(d.allowed, true)
    assert.deepEqual(order, [0, 1, 2])
    assert.ok(a.stats().waited >= 1)
    // a wait longer than maxWaitMs is refused at once
    await a.consume('slow', 2)
    await assert.rejects(a.acquire('slow', 2, { maxWaitMs: 1 }), (e) => e.reason === 'wait_too_long' && e.retryAfterMs > 1)
    // an aborted wait gives its place back
    const controller = new AbortController()
    await b.consume('ab', 2)
    const aborted = assert.rejects(b.acquire('ab', 2, { signal: controller.signal }), (e) => e.reason === 'aborted')
    controller.abort()
    await aborted
  })

  test('close refuses the waiters and later acquires', { skip: service.skip }, async () => {
    const limiter = remote({ capacity: 1, refillPerSecond: 0.01 })
    await limiter.consume('k')
    const waiting = assert.rejects(limiter.acquire('k', 1, { maxWaitMs: 1_000_000 }), (e) => e.reason === 'closed')
    await sleep(10)
    limiter.close()
    await waiting
    await assert.rejects(limiter.acquire('k'), (e) => e.reason === 'closed')
  })

  test('the Express middleware decides through consume', { skip: service.skip }, async () => {
    const limiter = track(remote({ capacity: 2, refillPerSecond: 0.001 }))
    const middleware = rateLimit({ limiter, key: () => 'client' })
    const server = http.createServer((req, res) => middleware(req, res, () => res.end('ok')))
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address()
    const get = () =>
      new Promise((resolve, reject) => {
        http.get({ port, host: '127.0.0.1', path: '/' }, (res) => {
          res.resume()
          res.on('end', () => resolve(res))
        }).on('error', reject)
      })
    try {
      const statuses = []
      for (let i = 0; i < 3; i++) statuses.push((await get()).statusCode)
      assert.deepEqual(statuses, [200, 200, 429])
      const refused = await get()
      assert.ok(Number(refused.headers['retry-after']) >= 1)
    } finally {
      server.close()
    }
  })

  test('four processes on one key admit capacity plus the refill over the elapsed time, no more', { skip: service.skip }, async () => {
    const keyPrefix = prefix()
    const capacity = 20
    const refillPerSecond = 100
    const runMs = 1500
    const worker = path.join(__dirname, 'helpers', 'limiter-hammer.js')
    const children = []
    for (let i = 0; i < 4; i++) {
      children.push(fork(worker, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, REDIS_URL, HAMMER_PREFIX: keyPrefix, HAMMER_CAPACITY: String(capacity), HAMMER_REFILL: String(refillPerSecond) } }))
    }
    const message = (child, type) => new Promise((resolve, reject) => {
      child.on('message', (m) => m.type === type && resolve(m))
      child.once('exit', (code) => code !== 0 && reject(new Error(`hammer exited with ${code}`)))
    })
    await Promise.all(children.map((c) => message(c, 'ready')))
    const startedAt = await redisTimeMs(client)
    const done = children.map((c) => message(c, 'done'))
    for (const c of children) c.send({ type: 'go', runMs })
    const results = await Promise.all(done)
    const endedAt = await redisTimeMs(client)
    const admitted = results.reduce((sum, r) => sum + r.admitted, 0)
    const elapsedSeconds = (endedAt - startedAt) / 1000
    const ceiling = capacity + refillPerSecond * elapsedSeconds
    // every process decided through the one shared bucket: never more than it could hold
    assert.ok(admitted <= Math.floor(ceiling) + 1, `admitted ${admitted} > ceiling ${ceiling.toFixed(1)}`)
    // and the callers took what was there: the bucket was drained during the whole run
    const floor = capacity + refillPerSecond * (runMs / 1000) * 0.85
    assert.ok(admitted >= floor, `admitted ${admitted} < ${floor.toFixed(1)} (elapsed ${elapsedSeconds.toFixed(3)} s)`)
    for (const r of results) assert.ok(r.admitted > 0, 'every process was admitted some')
    const refusedLocally = results.reduce((sum, r) => sum + r.localRefusals, 0)
    assert.ok(refusedLocally > 0, 'the refusal cache spared round trips')
    await Promise.all(children.map((c) => new Promise((resolve) => (c.exitCode !== null ? resolve() : c.once('exit', resolve)))))
  })
})

describe('RateLimiter when Redis goes away', async () => {
  const service = await needService('redis')
  const skip = service.skip || (!haveRedisServer() && 'redis-server is not installed')
  let server
  let client
  before(async () => {
    if (skip) return
    server = await startRedisServer()
    client = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 })
    client.on('error', () => {})
  })
  after(async () => {
    if (client) client.disconnect()
    if (server) await server.kill()
  })

  const make = (onStoreError) =>
    new RateLimiter({ capacity: 3, refillPerSecond: 0.001, onStoreError, store: { redis: { url: server.url, keyPrefix: `failover:${onStoreError}:`, retryMs: 150, connectTimeoutMs: 200, commandTimeoutMs: 500 } } })

  test('each onStoreError mode decides while Redis is down, and the shared store takes over again after the restart', { skip }, async () => {
    const modes = ['deny', 'allow', 'local']
    const limiters = Object.fromEntries(modes.map((m) => [m, make(m)]))
    try {
      for (const m of modes) assert.equal((await limiters[m].consume('k')).allowed, true)
      await server.kill()

      const down = {}
      for (const m of modes) {
        const decisions = []
        for (let i = 0; i < 5; i++) decisions.push(await limiters[m].consume('k'))
        down[m] = decisions.map((d) => d.allowed)
      }
      assert.deepEqual(down.deny, [false, false, false, false, false])
      assert.deepEqual(down.allow, [true, true, true, true, true])
      // the in-process limiter has the same limits (its own bucket, full at first)
      assert.deepEqual(down.local, [true, true, true, false, false])
      for (const m of modes) {
        const s = limiters[m].stats().store
        assert.ok(s.errors >= 1, `${m}: errors counted`)
        assert.equal(s.fallbackDecisions, 5, `${m}: every decision made by the policy`)
        assert.equal(s.breakerOpen, true, `${m}: breaker open`)
        assert.match(s.lastError, /Redis|connect/i)
      }
      // the breaker spares the dead Redis: a burst while it is open sends nothing
      const before = limiters.deny.stats().store
      await Promise.all(Array.from({ length: 100 }, () => limiters.deny.consume('k')))
      const after = limiters.deny.stats().store
      assert.equal(after.roundTrips, before.roundTrips)
      assert.equal(after.fallbackDecisions - before.fallbackDecisions, 100)

      await server.start()
      await sleep(200) // past retryMs: the next decision tries Redis again
      for (const m of modes) {
        const d = await limiters[m].consume('k')
        // back on the shared bucket: the restarted Redis kept nothing, so it is full again
        // (no policy answers 2: deny refuses, allow reports 3, the local bucket is empty)
        assert.equal(d.allowed, true, `${m}: admitted by Redis`)
        assert.equal(d.remaining, 2, `${m}: the shared bucket decided`)
        const s = limiters[m].stats().store
        assert.equal(s.breakerOpen, false)
        assert.ok(s.connects >= 2, `${m}: reconnected`)
      }
    } finally {
      for (const m of modes) limiters[m].close()
    }
  })

  test('a flushed script is loaded again (NOSCRIPT) and the decision still counts once', { skip }, async () => {
    if (!server.child) await server.start()
    const limiter = make('deny')
    try {
      assert.equal((await limiter.consume('n')).remaining, 2)
      await client.script('FLUSH')
      const d = await limiter.consume('n')
      assert.equal(d.allowed, true)
      assert.equal(d.remaining, 1)
      assert.equal(limiter.stats().store.scriptReloads, 1)
      assert.equal(limiter.stats().store.fallbackDecisions, 0)
    } finally {
      limiter.close()
    }
  })
})
