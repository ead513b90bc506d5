'use strict'
// The addon must load in worker_threads and keep each environment's state apart: four workers
// use it at once and each checks its own results.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { Worker } = require('node:worker_threads')
const path = require('node:path')

const root = path.join(__dirname, '..')

/**
 * The worker's first message. Rejects on an error, and when the worker exits before sending
 * one, so a worker that ends early fails its test instead of leaving the file's event loop
 * with nothing to wait for.
 */
function firstMessage(worker) {
  return new Promise((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
    worker.once('exit', (code) => reject(new Error(`the worker exited (code ${code}) before sending a message`)))
  })
}

/**
 * A key prefix of its own for a test's worker, and, after the test, its keys deleted from Redis
 * (nothing to do when Redis was unreachable: then nothing was written).
 */
function redisPrefix(t, name) {
  const { REDIS_URL, deleteKeys } = require('./helpers/services')
  const prefix = `bulwark-test:worker:${process.pid}:${name}:`
  t.after(async () => {
    const Redis = require('ioredis')
    const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    try {
      await client.connect()
      // the limiter's keys carry the client key in a hash tag around the prefix
      await deleteKeys(client, `*${prefix}*`)
    } catch {
      // Redis is down: the test wrote nothing there
    } finally {
      client.disconnect()
    }
  })
  return prefix
}

/** Runs `source` in a worker with `workerData`; resolves with its first message and ends it. */
async function runWorker(source, workerData) {
  const worker = new Worker(source, { eval: true, workerData })
  const message = await firstMessage(worker)
  await worker.terminate()
  return message
}

const workerSource = `
  const { parentPort, workerData } = require('node:worker_threads')
  const { RateLimiter, TestClock } = require(${JSON.stringify(root)})
  const clock = new TestClock()
  const limiter = new RateLimiter({ capacity: workerData.capacity, refillPerSecond: 1, clock })
  let allowed = 0
  for (let i = 0; i < 20000; i++) {
    if (limiter.tryConsume('key-' + (i % 100)) >= 0) allowed++
  }
  clock.advance(1000)
  const afterRefill = limiter.peek('key-0')
  limiter.acquire('key-1').then(
    () => parentPort.postMessage({ allowed, afterRefill, stats: limiter.stats(), waited: true }),
    (e) => parentPort.postMessage({ error: e.message }))
  clock.advance(1000)
`

test('four workers use the addon concurrently with correct, separate results', async () => {
  const runs = [1, 2, 3, 4].map(async (n) => ({ n, message: await runWorker(workerSource, { capacity: n * 10 }) }))
  const results = await Promise.all(runs)
  for (const { n, message } of results) {
    assert.equal(message.error, undefined)
    // 100 keys, capacity n*10 each: exactly that many allowed, the rest refused
    assert.equal(message.allowed, 100 * n * 10)
    assert.equal(message.afterRefill, 1)
    assert.equal(message.stats.keys, 100)
    assert.equal(message.stats.allowed, 100 * n * 10 + 1)
  }
})

test('a worker that exits while holding limiters does not crash the process', async () => {
  const worker = new Worker(`
    const { RateLimiter } = require(${JSON.stringify(root)})
    const l = new RateLimiter({ capacity: 1, refillPerSecond: 1 })
    l.tryConsume('a'); l.acquire('a').catch(() => {})
    process.exit(0)
  `, { eval: true })
  const code = await new Promise((resolve) => worker.once('exit', resolve))
  assert.equal(code, 0)
})

test('a worker with a Redis-backed limiter decides, then exits without waiting on the store thread', async (t) => {
  const { REDIS_URL } = require('./helpers/services')
  const keyPrefix = redisPrefix(t, 'limiter')
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const { RateLimiter } = require(${JSON.stringify(root)})
    const l = new RateLimiter({ capacity: 1, refillPerSecond: 1, onStoreError: 'deny', store: { redis: { url: ${JSON.stringify(REDIS_URL)}, keyPrefix: ${JSON.stringify(keyPrefix)} } } })
    Promise.all([l.consume('a'), l.consume('a')]).then((d) => {
      parentPort.postMessage(d.map((x) => x.allowed))
      l.consume('b') // left pending: the worker exits anyway
      process.exit(0)
    })
  `, { eval: true })
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  const decided = await firstMessage(worker)
  // with Redis down the policy refuses both; with Redis up exactly one of two is admitted
  assert.ok(decided.filter((x) => x).length <= 1)
  assert.equal(await exited, 0)
})

test('a worker with a Redis-backed cache looks up, then exits while subscribed', async (t) => {
  const { REDIS_URL } = require('./helpers/services')
  const keyPrefix = redisPrefix(t, 'cache')
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const { PersistentCache } = require(${JSON.stringify(root)})
    const cache = new PersistentCache({ maxEntries: 10, redis: { url: ${JSON.stringify(REDIS_URL)}, keyPrefix: ${JSON.stringify(keyPrefix)} } })
    cache.set('k', 'v')
    cache.getAsync('k').then((v) => {
      parentPort.postMessage(v)
      cache.getAsync('pending') // left pending: the worker exits anyway
      process.exit(0)
    })
  `, { eval: true })
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  const value = await firstMessage(worker)
  assert.equal(value, 'v')
  assert.equal(await exited, 0)
})

const tracerWorkerSource = `
  const { parentPort, workerData } = require('node:worker_threads')
  const { DistributedTracer } = require(${JSON.stringify(root)})
  const tracer = new DistributedTracer({ serviceName: 'worker-' + workerData.n, exporter: 'memory' })
  for (let i = 0; i < workerData.n * 100; i++) {
    const span = tracer.startSpan('op-' + workerData.n, { attributes: { i } })
    tracer.startSpan('child', { parent: span }).end()
    span.end()
  }
  tracer.flush().then(() => {
    parentPort.postMessage({ metrics: tracer.metrics(), finished: tracer.finishedSpans().length })
  })
`

test('four workers each trace with their own tracer and get separate metrics', async () => {
  const runs = [1, 2, 3, 4].map(async (n) => ({ n, message: await runWorker(tracerWorkerSource, { n }) }))
  for (const { n, message } of await Promise.all(runs)) {
    const { metrics, finished } = message
    assert.equal(metrics.started, n * 200)
    assert.equal(metrics.exported, n * 200)
    assert.equal(finished, n * 200)
    assert.deepEqual(Object.entries(metrics.spans).map(([name, s]) => [name, s.count]), [['child', n * 100], ['op-' + n, n * 100]])
  }
})

const cacheWorkerSource = `
  const { parentPort, workerData } = require('node:worker_threads')
  const { PersistentCache } = require(${JSON.stringify(root)})
  let cache
  try {
    cache = new PersistentCache({ maxEntries: 100, dir: workerData.dir, hotObjects: 10 })
  } catch (error) {
    parentPort.postMessage({ error: error.code })
  }
  if (cache) {
  for (let i = 0; i < 500; i++) cache.set('k' + i, { worker: workerData.n, i })
  const value = cache.get('k499')
  cache.flush().then(() => {
    parentPort.postMessage({ value, size: cache.size, hits: cache.stats().hits })
    if (workerData.hold) parentPort.once('message', () => cache.close().then(() => parentPort.postMessage('closed')))
    else cache.close()
  })
  }
`

test('two workers each with their own disk cache; the same dir in two workers is locked for one', async (t) => {
  const fs = require('node:fs')
  const os = require('node:os')
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'bulwark-cache-worker-'))
  t.after(() => fs.rmSync(base, { recursive: true, force: true }))
  const run = (n, dir, hold = false) => {
    const worker = new Worker(cacheWorkerSource, { eval: true, workerData: { n, dir, hold } })
    const first = new Promise((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
    const exited = new Promise((resolve) => worker.once('exit', resolve))
    return { worker, first, exited }
  }
  const a = run(1, path.join(base, 'a'))
  const b = run(2, path.join(base, 'b'))
  for (const [n, { first, exited }] of [[1, a], [2, b]]) {
    const message = await first
    assert.deepEqual(message.value, { worker: n, i: 499 })
    assert.equal(message.size, 500)
    assert.equal(message.hits, 1)
    await exited
  }
  // the same directory: the first worker holds it open, the second is refused
  const shared = path.join(base, 'shared')
  const holder = run(1, shared, true)
  assert.equal((await holder.first).size, 500)
  const refused = run(2, shared)
  assert.deepEqual(await refused.first, { error: 'ERR_CACHE_LOCKED' })
  holder.worker.postMessage('close')
  await new Promise((resolve) => holder.worker.once('message', resolve))
  await holder.worker.terminate()
  await refused.worker.terminate()
})

const breakerWorkerSource = `
  const { parentPort, workerData } = require('node:worker_threads')
  const { CircuitBreaker, TestClock } = require(${JSON.stringify(root)})
  const clock = new TestClock()
  const breaker = new CircuitBreaker({ name: 'w' + workerData.n, windowSize: 10, minimumCalls: workerData.n + 1, openMs: 1000, clock })
  ;(async () => {
    // worker n fails n + 1 times: each opens after its own number of calls
    let failed = 0
    for (let i = 0; i < 20 && breaker.state === 'closed'; i++) {
      await breaker.fire(async () => { throw new Error('down') }).catch(() => failed++)
    }
    const open = breaker.state
    clock.advance(1000)
    const probe = await breaker.fire(async () => 'ok')
    parentPort.postMessage({ failed, open, probe, stats: breaker.stats() })
  })()
`

test('breakers in four workers are independent', async () => {
  const runs = [1, 2, 3, 4].map(async (n) => ({ n, message: await runWorker(breakerWorkerSource, { n }) }))
  for (const { n, message } of await Promise.all(runs)) {
    assert.equal(message.failed, n + 1)
    assert.equal(message.open, 'open')
    assert.equal(message.probe, 'ok')
    assert.equal(message.stats.state, 'closed')
    assert.equal(message.stats.calls, n + 2)
    assert.equal(message.stats.failures, n + 1)
  }
})

const poolWorkerSource = `
  const { parentPort, workerData } = require('node:worker_threads')
  const { ConnectionPool } = require(${JSON.stringify(root)})
  let made = 0
  const pool = new ConnectionPool({ name: 'w' + workerData.n, create: async () => ({ worker: workerData.n, id: ++made }), destroy: () => {}, max: workerData.n })
  ;(async () => {
    const ids = await Promise.all(Array.from({ length: 50 }, () => pool.use(async (r) => { await new Promise((res) => setImmediate(res)); return r.worker })))
    const stats = pool.stats()
    await pool.close()
    parentPort.postMessage({ workers: [...new Set(ids)], created: stats.created, acquired: stats.acquired })
  })()
`

test('pools in four workers are independent', async () => {
  const runs = [1, 2, 3, 4].map(async (n) => ({ n, message: await runWorker(poolWorkerSource, { n }) }))
  for (const { n, message } of await Promise.all(runs)) {
    assert.deepEqual(message.workers, [n])
    assert.equal(message.created, n)
    assert.equal(message.acquired, 50)
  }
})

const queryWorkerSource = `
  const { parentPort, workerData } = require('node:worker_threads')
  const { QueryOptimizer } = require(${JSON.stringify(root)})
  const qo = new QueryOptimizer({ nPlusOne: { threshold: workerData.n + 1 } })
  for (let i = 0; i < 10; i++) qo.record('SELECT name FROM users_' + workerData.n + ' WHERE id = ' + i, 1, { traceId: 'w' })
  // hostile input parses (or falls back) within a worker's smaller stack
  const deep = 'SELECT ' + '('.repeat(10000) + '1' + ')'.repeat(10000)
  const chain = 'SELECT * FROM t WHERE a = 1' + ' OR a = 1'.repeat(900)
  const prints = [qo.fingerprint(deep).fingerprint, qo.fingerprint(chain).fingerprint]
  parentPort.postMessage({ stats: qo.stats(), findings: qo.nPlusOne(), prints, analyzed: qo.analyze(chain).length })
`

test('query optimizers in four workers are independent', async () => {
  const runs = [1, 2, 3, 4].map(async (n) => ({ n, message: await runWorker(queryWorkerSource, { n }) }))
  for (const { n, message } of await Promise.all(runs)) {
    assert.equal(message.stats.length, 1)
    assert.equal(message.stats[0].normalized, `SELECT name FROM users_${n} WHERE id = ?`)
    assert.equal(message.stats[0].calls, 10)
    assert.equal(message.findings.length, 1)
    assert.equal(message.findings[0].count, 10)
    assert.equal(message.prints.length, 2)
  }
})
