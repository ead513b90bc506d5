'use strict'
// A script that creates the package's objects, uses them and returns must exit promptly: no
// thread, timer or ThreadsafeFunction may keep Node alive. Every block adds itself here.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')

function runScript(source, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, ['-e', source], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    child.stderr.on('data', (chunk) => (output += chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, output, elapsedMs: Date.now() - started })
    })
  })
}

test('a script using every block exits within 2 s of returning', async () => {
  const { code, signal, output } = await runScript(`
    const { RateLimiter, TestClock } = require('.')
    const { rateLimit } = require('./express.js')
    const limiter = new RateLimiter({ capacity: 2, refillPerSecond: 100, global: { capacity: 10, refillPerSecond: 10 } })
    limiter.tryConsume('a'); limiter.check('a'); limiter.tryConsume('a')
    rateLimit({ limiter })
    const clock = new TestClock()
    const tested = new RateLimiter({ capacity: 1, refillPerSecond: 1, clock })
    tested.tryConsume('x')
    tested.acquire('x').then(() => {})
    clock.advance(1000)
    // a waiter served on the real clock, then nothing left pending
    limiter.acquire('a').then((d) => console.log('granted', d.allowed))
  `)
  assert.equal(signal, null, `killed: did not exit in time\n${output}`)
  assert.equal(code, 0, output)
  assert.match(output, /granted true/)
})

test('an idle limiter with no waiters holds no timer', async () => {
  const { code, signal, output } = await runScript(`
    const { RateLimiter } = require('.')
    const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 1 })
    limiter.tryConsume('k'); limiter.tryConsume('k')
    const pending = limiter.acquire('k', 1, { maxWaitMs: 100000 })
    pending.catch((e) => console.log(e.reason))
    limiter.close()
  `)
  assert.equal(signal, null, `killed: did not exit in time\n${output}`)
  assert.equal(code, 0, output)
  assert.match(output, /closed/)
})

test('a script with tracers (memory and an unreachable OTLP collector) exits within 2 s', async () => {
  const { code, signal, output } = await runScript(`
    const { DistributedTracer } = require('.')
    const memory = new DistributedTracer({ serviceName: 'exit', exporter: 'memory', batch: { scheduledDelayMs: 10 } })
    const otlp = new DistributedTracer({
      serviceName: 'exit',
      exporter: { otlp: { url: 'http://127.0.0.1:1/v1/traces', timeoutMs: 5000 } },
      batch: { scheduledDelayMs: 1, exportTimeoutMs: 30000 },
    })
    for (const tracer of [memory, otlp]) {
      for (let i = 0; i < 100; i++) {
        const span = tracer.startSpan('op', { attributes: { i } })
        tracer.startSpan('child', { parent: span }).end()
        span.end()
      }
    }
    memory.flush().then((done) => console.log('flushed', done, memory.finishedSpans().length))
  `)
  assert.equal(signal, null, `killed: did not exit in time\n${output}`)
  assert.equal(code, 0, output)
  assert.match(output, /flushed true 200/)
})

test('a script with a disk cache that sets values and returns exits within a few seconds, its writes kept', async (t) => {
  const fs = require('node:fs')
  const os = require('node:os')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bulwark-cache-exit-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const { code, signal, output } = await runScript(`
    const { PersistentCache } = require('.')
    const cache = new PersistentCache({ maxEntries: 1000, dir: ${JSON.stringify(dir)}, ttlMs: 60000 })
    for (let i = 0; i < 2000; i++) cache.set('k' + i, { i })
    cache.getOrSet('loaded', async () => 'v').then((v) => console.log('loaded', v))
    const memoryOnly = new PersistentCache({ maxEntries: 10 })
    memoryOnly.set('a', 'b')
  `, 5000)
  assert.equal(signal, null, `killed: did not exit in time\n${output}`)
  assert.equal(code, 0, output)
  assert.match(output, /loaded v/)
  // dropped at exit, the cache drained its queue to disk
  const { code: readCode, output: readOutput } = await runScript(`
    const { PersistentCache } = require('.')
    const cache = new PersistentCache({ maxEntries: 10, dir: ${JSON.stringify(dir)} })
    console.log('size', cache.size, JSON.stringify(cache.get('k1999')))
  `, 5000)
  assert.equal(readCode, 0, readOutput)
  assert.match(readOutput, /size 2001 \{"i":1999\}/)
})

test('a script with breakers (a pending call under timeoutMs, an open one) exits within 2 s', async () => {
  const { code, signal, output, elapsedMs } = await runScript(`
    const { CircuitBreaker } = require('.')
    const breaker = new CircuitBreaker({ name: 'exit', timeoutMs: 60000, minimumCalls: 1, openMs: 60000 })
    breaker.fire(async () => 'quick').then((v) => console.log('fired', v))
    // a call still pending when the script returns: its timeout timer must not hold the process
    breaker.fire(() => new Promise(() => {})).catch(() => {})
    const tripped = new CircuitBreaker({ minimumCalls: 1, windowSize: 1, openMs: 60000 })
    tripped.fire(async () => { throw new Error('down') }).catch(() => tripped.fire(async () => 1))
      .catch((e) => console.log(e.code))
  `)
  assert.equal(signal, null, `killed: did not exit in time\n${output}`)
  assert.equal(code, 0, output)
  assert.match(output, /fired quick/)
  assert.match(output, /ERR_BREAKER_OPEN/)
  assert.ok(elapsedMs < 2000)
})

test('a script with a ConnectionPool (warm resources, a waiter, health checks, a failing create) exits within 2 s', async () => {
  const { code, signal, output, elapsedMs } = await runScript(`
    const { ConnectionPool } = require('.')
    let n = 0
    const pool = new ConnectionPool({
      create: async () => ({ id: ++n }), destroy: () => {}, validate: () => true,
      min: 2, max: 2, healthCheckIntervalMs: 50, idleTimeoutMs: 60000, maxLifetimeMs: 60000, leakDetectionMs: 60000,
    })
    pool.use(async (r) => r.id).then((id) => console.log('used', id))
    // two held and one caller still waiting (60 s timeout) when the script returns
    Promise.all([pool.acquire(), pool.acquire()]).then(() => pool.acquire({ timeoutMs: 60000 }).catch(() => {}))
    const failing = new ConnectionPool({ create: async () => { throw new Error('down') }, destroy: () => {}, min: 1, createRetry: { retries: 50, backoffMs: 30000 } })
    failing.acquire({ timeoutMs: 60000 }).catch(() => {})
  `)
  assert.equal(signal, null, `killed: did not exit in time\n${output}`)
  assert.equal(code, 0, output)
  assert.match(output, /used 1/)
  assert.ok(elapsedMs < 2000)
})

test('a script with a QueryOptimizer (records waiting to be flushed, a loader) exits within 2 s', async () => {
  const { code, signal, output } = await runScript(`
    const { QueryOptimizer } = require('.')
    const qo = new QueryOptimizer({ nPlusOne: { threshold: 2 } })
    qo.on('nplusone', (f) => console.log('nplusone', f.count))
    for (let i = 0; i < 10; i++) qo.record('SELECT name FROM users WHERE id = ' + i, 1, { traceId: 't' })
    const loader = qo.loader(async (keys) => keys.map((k) => k * 2))
    loader.load(21).then((v) => console.log('loaded', v))
  `)
  assert.equal(signal, null, `killed: did not exit in time\n${output}`)
  assert.equal(code, 0, output)
  assert.match(output, /loaded 42/)
  assert.match(output, /nplusone 2/)
})

test('a script with Redis-backed limiters (reachable, and unreachable) exits within 2 s of its last decision', async () => {
  const { REDIS_URL } = require('./helpers/services')
  const { code, signal, output } = await runScript(`
    const { RateLimiter } = require('.')
    const up = new RateLimiter({ capacity: 2, refillPerSecond: 1, store: { redis: { url: ${JSON.stringify(REDIS_URL)}, keyPrefix: 'bulwark-test:exit:' + process.pid + ':' } } })
    const down = new RateLimiter({ capacity: 2, refillPerSecond: 1, onStoreError: 'deny', store: { redis: { url: 'redis://127.0.0.1:1', keyPrefix: 'exit:' } } })
    // a pending decision keeps the process alive until it is answered, then nothing does
    Promise.all([up.consume('a'), down.consume('a')]).then(([a, b]) => console.log('decided', typeof a.allowed, b.allowed))
    up.reset('a')
  `)
  assert.equal(signal, null, `killed: did not exit in time\n${output}`)
  assert.equal(code, 0, output)
  assert.match(output, /decided boolean false/)
})

test('a script with a Redis-backed cache (reachable, and unreachable) exits within 2 s of its last lookup', async () => {
  const { REDIS_URL } = require('./helpers/services')
  const { code, signal, output } = await runScript(`
    const { PersistentCache } = require('.')
    const up = new PersistentCache({ maxEntries: 10, redis: { url: ${JSON.stringify(REDIS_URL)}, keyPrefix: 'bulwark-test:exit:' + process.pid + ':' } })
    const down = new PersistentCache({ maxEntries: 10, redis: { url: 'redis://127.0.0.1:1', keyPrefix: 'exit:' } })
    up.set('k', 'v'); down.set('k', 'v'); up.delete('k')
    // a pending lookup keeps the process alive until it is answered; the subscriptions never do
    Promise.all([up.getAsync('other'), down.getAsync('other')]).then((r) => console.log('looked up', r.join(',')))
  `)
  assert.equal(signal, null, `killed: did not exit in time\n${output}`)
  assert.equal(code, 0, output)
  assert.match(output, /looked up ,/)
})
