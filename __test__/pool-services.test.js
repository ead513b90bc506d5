'use strict'
// The ConnectionPool against the real PostgreSQL (through pg) and the real Redis (through
// ioredis): many concurrent callers over a small pool, connections killed on the server side
// mid-run (pg_terminate_backend, CLIENT KILL) detected and replaced without a caller hanging, and
// a database that is not there rejecting waiters with reason 'create-failed' without spinning.
// Each suite uses its own schema or key prefix and removes it at the end.
const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const pg = require('pg')
const Redis = require('ioredis')
const { ConnectionPool, PoolTimeoutError, QueryOptimizer, DistributedTracer } = require('..')
const { DATABASE_URL, REDIS_URL, needService } = require('./helpers/services')

const SCHEMA = `bulwark_pool_${process.pid}`

function pgPool(options = {}) {
  return new ConnectionPool({
    name: 'pg-test',
    create: async () => {
      const client = new pg.Client({ connectionString: DATABASE_URL, application_name: `bulwark-pool-test-${process.pid}`, connectionTimeoutMillis: 2000 })
      await client.connect()
      return client
    },
    destroy: (client) => client.end(),
    validate: async (client) => (await client.query('SELECT 1 AS ok')).rowCount === 1,
    max: 10,
    acquireTimeoutMs: 10_000,
    ...options,
  })
}

describe('with pg against PostgreSQL', () => {
  let skip = false
  let admin
  before(async () => {
    skip = (await needService('postgres')).skip
    if (skip) return
    admin = new pg.Client({ connectionString: DATABASE_URL })
    await admin.connect()
    await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
    await admin.query(`CREATE SCHEMA ${SCHEMA}`)
    await admin.query(`CREATE TABLE ${SCHEMA}.items (id int PRIMARY KEY, doubled int NOT NULL)`)
    await admin.query(`INSERT INTO ${SCHEMA}.items SELECT g, g * 2 FROM generate_series(1, 200) g`)
  })
  after(async () => {
    if (!admin) return
    await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
    await admin.end()
  })

  test('200 concurrent use() calls through a pool of 10 all complete with the right rows', async (t) => {
    if (skip) return t.skip(skip)
    const pool = pgPool()
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => pool.use(async (client) => (await client.query(`SELECT doubled, pg_backend_pid() AS pid FROM ${SCHEMA}.items WHERE id = $1`, [i + 1])).rows[0])),
    )
    results.forEach((row, i) => assert.equal(row.doubled, (i + 1) * 2))
    const backends = new Set(results.map((row) => row.pid))
    assert.ok(backends.size <= 10, `${backends.size} backends for a pool of 10`)
    const s = pool.stats()
    assert.ok(s.created <= 10)
    assert.equal(s.borrowed, 0)
    assert.equal(s.acquired, 200)
    assert.ok(s.acquireWaitMs.max > 0)
    await pool.close()
    assert.equal(pool.stats().destroyed, s.created)
  })

  test('backends killed mid-run with pg_terminate_backend are detected and replaced; no caller hangs', async (t) => {
    if (skip) return t.skip(skip)
    const pool = pgPool({ max: 5, min: 5 })
    const errors = []
    pool.on('error', (error, info) => errors.push(info.source))
    // warm up: five connections, five backends
    await Promise.all(Array.from({ length: 5 }, () => pool.use((c) => c.query('SELECT pg_sleep(0.01)'))))
    const outcomes = []
    const run = (i) => pool.use(async (client) => (await client.query(`SELECT doubled FROM ${SCHEMA}.items WHERE id = $1 AND pg_sleep(0.005) IS NOT NULL`, [i])).rows[0].doubled).then(
      (value) => outcomes.push(value === i * 2 ? 'ok' : `wrong ${value}`),
      (error) => outcomes.push(`error ${error.message}`),
    )
    const first = Array.from({ length: 100 }, (_, i) => run((i % 200) + 1))
    // kill every backend of this pool while the first wave runs
    await new Promise((resolve) => setTimeout(resolve, 20))
    const killed = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [`bulwark-pool-test-${process.pid}`])
    assert.ok(killed.rowCount >= 1)
    await Promise.all(first)
    // every caller settled; the ones whose connection died got the driver's error
    assert.equal(outcomes.length, 100)
    for (const outcome of outcomes) assert.ok(outcome === 'ok' || /terminat|Connection/i.test(outcome), outcome)
    // the pool replaced the dead connections: a second wave all succeeds
    outcomes.length = 0
    await Promise.all(Array.from({ length: 100 }, (_, i) => run(i + 1)))
    assert.deepEqual(new Set(outcomes), new Set(['ok']))
    const s = pool.stats()
    assert.ok(s.destroyed >= killed.rowCount, JSON.stringify(s))
    assert.ok(s.created > 5, 'dead connections were replaced')
    await pool.close()
  })

  test('validateOnAcquire replaces idle connections killed on the server without any caller seeing an error', async (t) => {
    if (skip) return t.skip(skip)
    // without the pool's watcher, the clients need their own 'error' listener (pg emits one when
    // the backend of an idle client dies; unheard, it would crash the process)
    const pool = pgPool({
      max: 3,
      min: 3,
      validateOnAcquire: true,
      watchResourceErrors: false,
      create: async () => {
        const client = new pg.Client({ connectionString: DATABASE_URL, application_name: `bulwark-pool-test-${process.pid}` })
        client.on('error', () => {})
        await client.connect()
        return client
      },
    })
    await Promise.all(Array.from({ length: 3 }, () => pool.use((c) => c.query('SELECT 1'))))
    // all three connected and idle before the kill
    while (pool.stats().idle < 3) await new Promise((resolve) => setTimeout(resolve, 10))
    const killed = await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [`bulwark-pool-test-${process.pid}`])
    assert.equal(killed.rowCount, 3)
    for (let i = 0; i < 3; i++) {
      const rows = await pool.use(async (client) => (await client.query('SELECT 42 AS answer')).rows)
      assert.equal(rows[0].answer, 42)
    }
    assert.ok(pool.stats().validationFailures >= 1)
    await pool.close()
  })

  test('a ConnectionPool of pg clients instrumented by the QueryOptimizer: measured statements and an N+1 inside one trace', async (t) => {
    if (skip) return t.skip(skip)
    const tracer = new DistributedTracer({ serviceName: 'pool-test', exporter: 'memory' })
    const qo = new QueryOptimizer({ dialect: 'postgres', nPlusOne: { threshold: 5 } })
    const findings = []
    qo.on('nplusone', (finding) => findings.push(finding))
    const pool = pgPool({ max: 3 })
    const db = qo.instrument(pool, { tracer })
    // a real loop of queries, one per item, inside one traced request
    const doubled = await tracer.startActiveSpan('GET /api/items', async (span) => {
      const out = []
      for (let id = 1; id <= 8; id++) {
        out.push(await db.use(async (client) => (await client.query(`SELECT doubled FROM ${SCHEMA}.items WHERE id = $1`, [id])).rows[0].doubled))
      }
      span.end()
      return out
    })
    assert.deepEqual(doubled, [2, 4, 6, 8, 10, 12, 14, 16])
    // acquire/release through the wrapper hands out measured clients and takes them back
    const client = await db.acquire()
    await client.query(`SELECT count(*) FROM ${SCHEMA}.items`)
    db.release(client)
    assert.equal(pool.stats().borrowed, 0)
    assert.equal(pool.stats().invalidReleases, 0)
    const stats = qo.stats()
    const loop = stats.find((q) => q.normalized.includes('WHERE id = ?'))
    assert.equal(loop.calls, 8)
    assert.ok(stats.some((q) => /SELECT count\(\*\) FROM/i.test(q.normalized)))
    assert.equal(findings.length, 1)
    assert.equal(findings[0].count, 5)
    assert.match(findings[0].suggestion, /ANY\(\$1\)/)
    await pool.close()
    await tracer.shutdown()
  })

  test('a pool pointed at a port where nothing listens rejects waiters with reason "create-failed" and does not spin', async (t) => {
    if (skip) return t.skip(skip)
    const pool = new ConnectionPool({
      create: async () => {
        const client = new pg.Client({ host: '127.0.0.1', port: 1, user: 'postgres', database: 'test', connectionTimeoutMillis: 1000 })
        await client.connect()
        return client
      },
      destroy: (client) => client.end(),
      max: 10,
      acquireTimeoutMs: 1500,
      createRetry: { retries: 2, backoffMs: 50, maxBackoffMs: 1000 },
    })
    const started = performance.now()
    const outcomes = await Promise.all(Array.from({ length: 20 }, () => pool.acquire().then(() => 'served', (error) => error)))
    const elapsed = performance.now() - started
    for (const error of outcomes) {
      assert.ok(error instanceof PoolTimeoutError, String(error))
      assert.equal(error.reason, 'create-failed')
      assert.equal(error.cause.code, 'ECONNREFUSED')
    }
    // each waiter was rejected by its own deadline, not later (a little slack for the event loop)
    assert.ok(elapsed < 1500 + 500, `${elapsed} ms`)
    const attempts = pool.stats().createErrors
    // 10 first attempts at once, then one chain of 2 retries: no spinning
    assert.ok(attempts <= 12, `${attempts} create attempts`)
    await pool.close()
  })
})

describe('with ioredis against Redis', () => {
  const PREFIX = `bulwark:pool-test:${process.pid}:`
  let skip = false
  let admin
  before(async () => {
    skip = (await needService('redis')).skip
    if (skip) return
    admin = new Redis(REDIS_URL, { lazyConnect: true })
    await admin.connect()
  })
  after(async () => {
    if (!admin) return
    const keys = await admin.keys(`${PREFIX}*`)
    if (keys.length > 0) await admin.del(...keys)
    await admin.quit()
  })

  const connectionName = `bulwark-pool-test-${process.pid}`
  function redisPool(options = {}) {
    return new ConnectionPool({
      name: 'redis-test',
      create: async () => {
        const client = new Redis(REDIS_URL, { lazyConnect: true, connectionName, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 1000 })
        await client.connect()
        return client
      },
      destroy: (client) => client.disconnect(),
      validate: async (client) => (await client.ping()) === 'PONG',
      max: 4,
      acquireTimeoutMs: 5000,
      ...options,
    })
  }

  test('100 concurrent INCRs through a pool of 4 count exactly 100', async (t) => {
    if (skip) return t.skip(skip)
    const pool = redisPool()
    await Promise.all(Array.from({ length: 100 }, () => pool.use((client) => client.incr(`${PREFIX}counter`))))
    assert.equal(Number(await admin.get(`${PREFIX}counter`)), 100)
    const s = pool.stats()
    assert.ok(s.created <= 4)
    assert.equal(s.pending, 0)
    await pool.close()
  })

  test('connections killed with CLIENT KILL are detected and replaced; no caller hangs', async (t) => {
    if (skip) return t.skip(skip)
    // a killed connection is found by validation when idle, by isBroken when in use
    const pool = redisPool({ min: 4, validateOnAcquire: true })
    await Promise.all(Array.from({ length: 8 }, () => pool.use((client) => client.ping())))
    const listed = (await admin.client('LIST')).split('\n').filter((line) => line.includes(`name=${connectionName}`))
    assert.ok(listed.length >= 1)
    for (const line of listed) await admin.client('KILL', 'ID', /id=(\d+)/.exec(line)[1])
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, (_, i) => pool.use((client) => client.set(`${PREFIX}k${i}`, String(i))).then(() => 'ok', (error) => `error ${error.message}`)),
    )
    for (const outcome of outcomes) assert.ok(outcome === 'ok' || /Connection is closed|Stream isn't writeable/.test(outcome), outcome)
    // after the kill is noticed, everything works again
    const again = await Promise.all(Array.from({ length: 50 }, (_, i) => pool.use((client) => client.get(`${PREFIX}k${i}`))))
    assert.equal(again.length, 50)
    const s = pool.stats()
    assert.ok(s.destroyed >= listed.length, JSON.stringify(s))
    await pool.close()
  })

  test('saturation: callers beyond max wait, time out with reason "saturated", and the pool keeps serving', async (t) => {
    if (skip) return t.skip(skip)
    const pool = redisPool({ max: 2 })
    const held = await Promise.all([pool.acquire(), pool.acquire()])
    const error = await pool.acquire({ timeoutMs: 50 }).catch((e) => e)
    assert.ok(error instanceof PoolTimeoutError)
    assert.equal(error.reason, 'saturated')
    for (const client of held) pool.release(client)
    assert.equal(await pool.use((client) => client.ping()), 'PONG')
    await pool.close()
  })
})
