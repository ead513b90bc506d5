'use strict'
// The QueryOptimizer from the user's side: fingerprints (the same shape, different shapes, the
// cache), analyze, record with N+1 findings and events, stats, slow events, bad input and
// options, and instrument() on a real PostgreSQL (pg Pool, pg Client in both query forms, a
// pool with use/acquire/release) including an N+1 from a real loop of queries inside one traced
// Express request. The PostgreSQL suites use their own schema and drop it afterwards.
const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const express = require('express')
const pg = require('pg')
const { QueryOptimizer, DistributedTracer, codes } = require('..')
const { tracing } = require('../express.js')
const { needService, DATABASE_URL } = require('./helpers/services')

function assertInvalid(fn, Kind, code, ...fragments) {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof Kind, `expected ${Kind.name}, got ${error && error.constructor.name}: ${error && error.message}`)
    assert.equal(error.code, code)
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" should mention ${fragment}`)
    return true
  })
}

describe('fingerprint', () => {
  const qo = new QueryOptimizer()

  test('16 hex digits and the normalized text', () => {
    const { fingerprint, normalized } = qo.fingerprint("select id, name from Users where email = 'a@b.c' and age > 30")
    assert.match(fingerprint, /^[0-9a-f]{16}$/)
    assert.equal(normalized, 'SELECT id, name FROM users WHERE email = ? AND age > ?')
  })

  test('the same fingerprint for literals, whitespace, comments, keyword case, IN lists and VALUES rows', () => {
    const groups = [
      ['SELECT * FROM t WHERE id = 1', 'select *   from t\n -- x\n where id = 42', 'SELECT * FROM t /* c */ WHERE id = $1', "SELECT * FROM t WHERE id = 'z'"],
      ['SELECT a FROM t WHERE b IN (1, 2, 3)', 'SELECT a FROM t WHERE b IN ($1)', 'select a from t where b in (7,8,9,10,11)'],
      ['INSERT INTO t (a, b) VALUES (1, 2)', 'INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6)'],
      ['SELECT a FROM t WHERE b != 1', 'SELECT a FROM t WHERE b <> -2.5', "select A from T where B<>E'x'"],
      ['SELECT a FROM t WHERE b = ANY(ARRAY[1, 2, 3])', 'SELECT a FROM t WHERE b = ANY(ARRAY[$1])'],
    ]
    for (const group of groups) {
      const prints = new Set(group.map((sql) => qo.fingerprint(sql).fingerprint))
      assert.equal(prints.size, 1, group.join(' | '))
    }
  })

  test('different fingerprints for different tables, columns, operators and structure', () => {
    const shapes = [
      'SELECT a FROM t WHERE id = 1',
      'SELECT a FROM u WHERE id = 1',
      'SELECT b FROM t WHERE id = 1',
      'SELECT a FROM t WHERE id > 1',
      'SELECT a FROM t WHERE id = 1 ORDER BY a',
      'SELECT a FROM t WHERE id = 1 AND b = 2',
      'SELECT a FROM t WHERE id = 1 OR b = 2',
      'SELECT a FROM t WHERE id IS NULL',
      'SELECT a FROM t WHERE id IS NOT NULL',
      'SELECT a FROM t WHERE id = 1 AND (b = 2 OR c = 3)',
      'SELECT a FROM t WHERE (id = 1 AND b = 2) OR c = 3',
      'SELECT "A" FROM t WHERE id = 1',
    ]
    const prints = new Set(shapes.map((sql) => qo.fingerprint(sql).fingerprint))
    assert.equal(prints.size, shapes.length)
  })

  test('the fingerprint is stable across optimizers (a hash of the normalized text)', () => {
    const other = new QueryOptimizer({ cacheSize: 0 })
    const sql = 'SELECT id FROM orders WHERE user_id = $1 LIMIT 10'
    assert.deepEqual(other.fingerprint(sql), qo.fingerprint(sql))
    // FNV-1a 64 of the normalized text, computed here independently
    let h = 0xcbf29ce484222325n
    for (const byte of Buffer.from(qo.fingerprint(sql).normalized)) {
      h ^= BigInt(byte)
      h = (h * 0x100000001b3n) & 0xffffffffffffffffn
    }
    assert.equal(qo.fingerprint(sql).fingerprint, h.toString(16).padStart(16, '0'))
  })

  test('a repeated statement is answered from the cache; the cache is bounded', () => {
    const small = new QueryOptimizer({ cacheSize: 3 })
    const first = small.fingerprint('SELECT 1 FROM a')
    assert.equal(small.fingerprint('SELECT 1 FROM a'), first)
    for (const t of ['b', 'c', 'd', 'e']) small.fingerprint(`SELECT 1 FROM ${t}`)
    assert.equal(small.size.cachedStatements, 3)
    // evicted, learned again: an equal answer, a new object
    const again = small.fingerprint('SELECT 1 FROM a')
    assert.notEqual(again, first)
    assert.deepEqual(again, first)
  })

  test('every dialect reads its own syntax', () => {
    assert.equal(new QueryOptimizer({ dialect: 'mysql' }).fingerprint('SELECT `id` FROM `t` WHERE a = ? LIMIT 5, 10').normalized, 'SELECT `id` FROM `t` WHERE a = ? LIMIT ?, ?')
    assert.equal(new QueryOptimizer({ dialect: 'sqlite' }).fingerprint('SELECT id FROM t WHERE a = ?1').normalized, 'SELECT id FROM t WHERE a = ?')
    assert.equal(new QueryOptimizer({ dialect: 'generic' }).fingerprint('SELECT id FROM t WHERE a = :name').normalized, 'SELECT id FROM t WHERE a = ?')
  })

  test('unparsable, empty, huge and deeply nested SQL still get a fingerprint', () => {
    assert.equal(qo.fingerprint('SELEC * FRM t WHERE x = 5').normalized, 'selec * frm t WHERE x = ?')
    assert.match(qo.fingerprint('').fingerprint, /^[0-9a-f]{16}$/)
    const deep = 'SELECT ' + '('.repeat(10000) + '1' + ')'.repeat(10000)
    assert.match(qo.fingerprint(deep).fingerprint, /^[0-9a-f]{16}$/)
    const subqueries = 'SELECT * FROM t WHERE a IN ' + '(SELECT a FROM t WHERE a IN '.repeat(10000) + '(1)' + ')'.repeat(10000)
    assert.match(qo.fingerprint(subqueries).fingerprint, /^[0-9a-f]{16}$/)
    let big = "INSERT INTO t (a, b) VALUES (1, 'x')"
    const row = ", (123456, 'some text')"
    big += row.repeat(Math.ceil((10 << 20) / row.length))
    assert.equal(qo.fingerprint(big).normalized, 'INSERT INTO t (a, b) VALUES (?, ?)')
    assert.equal(qo.analyze(big)[0].rule, 'parse-error')
    assert.equal(qo.analyze(deep)[0].rule, 'parse-error')
  })

  test('sql that is not a string is a TypeError', () => {
    for (const bad of [undefined, null, 42, {}, ['SELECT 1']]) {
      assertInvalid(() => qo.fingerprint(bad), TypeError, codes.INVALID_ARGUMENT, 'sql must be a string')
      assertInvalid(() => qo.analyze(bad), TypeError, codes.INVALID_ARGUMENT, 'sql must be a string')
      assertInvalid(() => qo.record(bad, 1), TypeError, codes.INVALID_ARGUMENT, 'sql must be a string')
    }
  })
})

describe('analyze', () => {
  const qo = new QueryOptimizer()
  const rules = (sql) => qo.analyze(sql).map((f) => f.rule)

  test('findings carry rule, severity, message and suggestion', () => {
    const [finding] = qo.analyze('DELETE FROM sessions')
    assert.deepEqual(Object.keys(finding).sort(), ['message', 'rule', 'severity', 'suggestion'])
    assert.equal(finding.rule, 'delete-without-where')
    assert.equal(finding.severity, 'error')
    assert.ok(finding.suggestion.length > 0)
  })

  test('each rule fires on its statement and not on its near miss', () => {
    const cases = [
      ['select-star', 'SELECT * FROM users WHERE id = $1', 'SELECT id FROM users WHERE id = $1'],
      ['update-without-where', 'UPDATE users SET active = false', 'UPDATE users SET active = false WHERE id = $1'],
      ['delete-without-where', 'DELETE FROM users', 'DELETE FROM users WHERE id = $1'],
      ['leading-wildcard-like', "SELECT id FROM users WHERE name LIKE '%son'", "SELECT id FROM users WHERE name LIKE 'jo%'"],
      ['null-comparison', 'SELECT id FROM users WHERE deleted_at = NULL', 'SELECT id FROM users WHERE deleted_at IS NULL'],
      ['order-by-random', 'SELECT id FROM quotes ORDER BY random() LIMIT 1', 'SELECT id FROM quotes ORDER BY id LIMIT 1'],
      ['not-in-subquery', 'SELECT id FROM users WHERE id NOT IN (SELECT user_id FROM bans)', 'SELECT id FROM users u WHERE NOT EXISTS (SELECT 1 FROM bans b WHERE b.user_id = u.id)'],
      ['implicit-cross-join', 'SELECT u.id FROM users u, orders o WHERE u.id = $1', 'SELECT u.id FROM users u, orders o WHERE o.user_id = u.id'],
      ['non-sargable-predicate', 'SELECT id FROM users WHERE lower(email) = $1', 'SELECT id FROM users WHERE email = lower($1)'],
      ['large-offset', 'SELECT id FROM posts ORDER BY id LIMIT 20 OFFSET 100000', 'SELECT id FROM posts ORDER BY id LIMIT 20 OFFSET 20'],
      ['insert-without-columns', 'INSERT INTO users VALUES ($1, $2)', 'INSERT INTO users (id, name) VALUES ($1, $2)'],
      ['distinct-with-join', 'SELECT DISTINCT u.id FROM users u JOIN orders o ON o.user_id = u.id', 'SELECT DISTINCT country FROM users WHERE active'],
      ['or-across-columns', 'SELECT id FROM users WHERE email = $1 OR phone = $2', "SELECT id FROM users WHERE status = 'a' OR status = 'b'"],
      ['unbounded-select', 'SELECT id, name FROM users', 'SELECT id, name FROM users WHERE team_id = $1'],
    ]
    for (const [rule, bad, good] of cases) {
      assert.ok(rules(bad).includes(rule), `${rule} should fire on ${bad}: ${rules(bad)}`)
      assert.ok(!rules(good).includes(rule), `${rule} should not fire on ${good}`)
    }
  })

  test('largeOffset sets the OFFSET threshold', () => {
    const strict = new QueryOptimizer({ largeOffset: 10 })
    assert.deepEqual(strict.analyze('SELECT id FROM posts ORDER BY id LIMIT 5 OFFSET 20').map((f) => f.rule), ['large-offset'])
  })

  test('unparsable SQL is an info parse-error, never an exception', () => {
    const findings = qo.analyze('SELEC nothing')
    assert.equal(findings.length, 1)
    assert.equal(findings[0].rule, 'parse-error')
    assert.equal(findings[0].severity, 'info')
    assert.equal(qo.analyze('')[0].rule, 'parse-error')
  })
})

describe('record, N+1 and stats', () => {
  test('the same fingerprint in one trace at the threshold is one finding and one event', () => {
    const qo = new QueryOptimizer({ nPlusOne: { threshold: 5 } })
    const events = []
    qo.on('nplusone', (f) => events.push(f))
    for (let i = 0; i < 4; i++) qo.record(`SELECT name FROM users WHERE id = ${i}`, 2, { traceId: 't1' })
    assert.deepEqual(qo.nPlusOne(), [])
    // other traces and other statements do not add up
    for (let i = 0; i < 4; i++) qo.record(`SELECT name FROM users WHERE id = ${i}`, 2, { traceId: 't2' })
    qo.record('SELECT id FROM teams WHERE id = 1', 2, { traceId: 't1' })
    qo.record('SELECT name FROM users WHERE id = 99', 2, { traceId: 't1' })
    qo.record('SELECT name FROM users WHERE id = 100', 3, { traceId: 't1' })
    const findings = qo.nPlusOne()
    assert.equal(findings.length, 1)
    const f = findings[0]
    assert.equal(f.traceId, 't1')
    assert.equal(f.normalized, 'SELECT name FROM users WHERE id = ?')
    assert.equal(f.fingerprint, qo.fingerprint('SELECT name FROM users WHERE id = 1').fingerprint)
    assert.equal(f.count, 6)
    assert.equal(f.totalMs, 13)
    assert.match(f.suggestion, /WHERE id = ANY\(\$1\)/)
    assert.equal(events.length, 1)
    assert.equal(events[0].count, 5)
  })

  test('minTotalMs holds back cheap repeats; maxTraces bounds memory', () => {
    const qo = new QueryOptimizer({ nPlusOne: { threshold: 2, minTotalMs: 10 }, maxTraces: 3 })
    qo.record('SELECT 1 FROM a WHERE id = 1', 1, { traceId: 'x' })
    qo.record('SELECT 1 FROM a WHERE id = 2', 1, { traceId: 'x' })
    assert.equal(qo.nPlusOne().length, 0)
    qo.record('SELECT 1 FROM a WHERE id = 3', 9, { traceId: 'x' })
    assert.equal(qo.nPlusOne().length, 1)
    for (let t = 0; t < 10; t++) qo.record('SELECT 1 FROM a WHERE id = 1', 1, { traceId: `t${t}` })
    assert.equal(qo.size.traces, 3)
  })

  test('stats per fingerprint, sorted and cut, with no literal value anywhere', () => {
    const qo = new QueryOptimizer({ slowQueryMs: 50 })
    for (let i = 1; i <= 20; i++) qo.record(`SELECT * FROM users WHERE email = 'user${i}@secret.example'`, i, { rows: 1 })
    qo.record("SELECT * FROM users WHERE email = 'boom@secret.example'", 100, { error: new Error('x') })
    qo.record('UPDATE users SET name = $1 WHERE id = $2', 1000, { rows: 3 })
    const stats = qo.stats()
    assert.equal(stats.length, 2)
    assert.equal(stats[0].normalized, 'UPDATE users SET name = ? WHERE id = ?')
    const users = stats[1]
    assert.equal(users.calls, 21)
    assert.equal(users.errors, 1)
    assert.equal(users.rows, 20)
    assert.equal(users.totalMs, 210 + 100)
    assert.equal(users.maxMs, 100)
    assert.equal(users.slow, 1)
    assert.ok(Math.abs(users.meanMs - 310 / 21) < 1e-9)
    assert.ok(users.p50Ms >= 10 && users.p50Ms <= 12, `p50 ${users.p50Ms}`)
    assert.ok(users.p95Ms >= 19 && users.p95Ms <= 21.5, `p95 ${users.p95Ms}`)
    assert.ok(users.p99Ms >= 95 && users.p99Ms <= 106, `p99 ${users.p99Ms}`)
    assert.deepEqual(users.findings, ['select-star'])
    assert.doesNotMatch(JSON.stringify(stats), /secret|user\d/)
    assert.deepEqual(qo.stats({ top: 1, sortBy: 'calls' }).map((s) => s.calls), [21])
    assert.deepEqual(qo.stats({ sortBy: 'errors' })[0].errors, 1)
    assert.equal(qo.stats({ sortBy: 'p95Ms' })[0].normalized, 'UPDATE users SET name = ? WHERE id = ?')
  })

  test('maxFingerprints keeps the most called', () => {
    const qo = new QueryOptimizer({ maxFingerprints: 2 })
    for (let i = 0; i < 3; i++) qo.record('SELECT a FROM hot', 1)
    qo.record('SELECT b FROM warm', 1)
    qo.record('SELECT b FROM warm', 1)
    qo.record('SELECT c FROM cold', 1)
    assert.deepEqual(qo.stats({ sortBy: 'calls' }).map((s) => s.normalized), ['SELECT a FROM hot', 'SELECT c FROM cold'])
  })

  test('slow calls are counted and emitted; a throwing listener is contained', async () => {
    const qo = new QueryOptimizer({ slowQueryMs: 10 })
    const slow = []
    qo.on('slow', (e) => slow.push(e))
    qo.on('slow', () => { throw new Error('listener bug') })
    const warned = once(process, 'warning')
    qo.record("SELECT 1 FROM t WHERE secret = 'abc'", 25, { traceId: 'tr' })
    qo.record("SELECT 1 FROM t WHERE secret = 'abc'", 5)
    assert.equal(slow.length, 1)
    assert.deepEqual(slow[0], { fingerprint: qo.fingerprint('SELECT 1 FROM t WHERE secret = 1').fingerprint, normalized: 'SELECT ? FROM t WHERE secret = ?', durationMs: 25, traceId: 'tr' })
    assert.match((await warned)[0].message, /listener bug/)
    assert.equal(qo.size.callbackErrors, 1)
    assert.equal(qo.stats()[0].slow, 1)
  })

  test('records are batched and flushed on the next turn of the event loop', async () => {
    const qo = new QueryOptimizer({ nPlusOne: { threshold: 2 } })
    const events = []
    qo.on('nplusone', (f) => events.push(f))
    qo.record('SELECT 1 FROM t WHERE id = 1', 1, { traceId: 'a' })
    qo.record('SELECT 1 FROM t WHERE id = 2', 1, { traceId: 'a' })
    assert.equal(events.length, 0)
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(events.length, 1)
    // a full buffer (256 calls) is flushed at once
    for (let i = 0; i < 300; i++) qo.record('SELECT 2 FROM t', 1)
    assert.equal(qo.stats().find((s) => s.normalized === 'SELECT ? FROM t').calls, 300)
  })

  test('bad arguments and options', () => {
    const qo = new QueryOptimizer()
    assertInvalid(() => qo.record('SELECT 1', -1), RangeError, codes.INVALID_ARGUMENT, 'durationMs')
    assertInvalid(() => qo.record('SELECT 1', '5'), TypeError, codes.INVALID_ARGUMENT, 'durationMs')
    assertInvalid(() => qo.record('SELECT 1', 1, { trace: 'x' }), TypeError, codes.INVALID_ARGUMENT, 'unknown field "trace"')
    assertInvalid(() => qo.record('SELECT 1', 1, { traceId: 5 }), TypeError, codes.INVALID_ARGUMENT, 'info.traceId')
    assertInvalid(() => qo.stats({ sortBy: 'name' }), RangeError, codes.INVALID_ARGUMENT, 'options.sortBy')
    assertInvalid(() => qo.stats({ top: 0 }), RangeError, codes.INVALID_ARGUMENT, 'options.top')
    assertInvalid(() => new QueryOptimizer({ dialect: 'oracle' }), RangeError, codes.INVALID_OPTION, 'options.dialect')
    assertInvalid(() => new QueryOptimizer({ dialect: 5 }), TypeError, codes.INVALID_OPTION, 'options.dialect')
    assertInvalid(() => new QueryOptimizer({ nPlusOne: { threshold: 1 } }), RangeError, codes.INVALID_OPTION, 'options.nPlusOne.threshold')
    assertInvalid(() => new QueryOptimizer({ nPlusOne: { limit: 1 } }), TypeError, codes.INVALID_OPTION, 'unknown option "limit"')
    assertInvalid(() => new QueryOptimizer({ slowQueryMs: -5 }), RangeError, codes.INVALID_OPTION, 'options.slowQueryMs')
    assertInvalid(() => new QueryOptimizer({ maxTraces: 0 }), RangeError, codes.INVALID_OPTION, 'options.maxTraces')
    assertInvalid(() => new QueryOptimizer({ maxFingerprints: 1.5 }), RangeError, codes.INVALID_OPTION, 'options.maxFingerprints')
    assertInvalid(() => new QueryOptimizer({ cacheSize: -1 }), RangeError, codes.INVALID_OPTION, 'options.cacheSize')
    assertInvalid(() => new QueryOptimizer({ colour: 'red' }), TypeError, codes.INVALID_OPTION, 'unknown option "colour"')
    assertInvalid(() => qo.instrument(42), TypeError, codes.INVALID_ARGUMENT, 'pg Pool')
    assertInvalid(() => qo.instrument({}), TypeError, codes.INVALID_ARGUMENT, 'no query()')
    assertInvalid(() => qo.instrument({ query() {} }, { tracer: {} }), TypeError, codes.INVALID_ARGUMENT, 'options.tracer')
  })
})

describe('instrument on PostgreSQL', async () => {
  const service = await needService('postgres')
  const schema = `bulwark_query_${process.pid}`
  let admin

  before(async () => {
    if (service.skip) return
    admin = new pg.Client({ connectionString: DATABASE_URL })
    await admin.connect()
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await admin.query(`CREATE SCHEMA ${schema}`)
    await admin.query(`CREATE TABLE ${schema}.users (id int PRIMARY KEY, name text NOT NULL, team_id int NOT NULL)`)
    await admin.query(`CREATE TABLE ${schema}.teams (id int PRIMARY KEY, name text NOT NULL)`)
    await admin.query(`INSERT INTO ${schema}.teams SELECT g, 'team ' || g FROM generate_series(1, 10) g`)
    await admin.query(`INSERT INTO ${schema}.users SELECT g, 'user ' || g, 1 + g % 10 FROM generate_series(1, 50) g`)
  })

  after(async () => {
    if (!admin) return
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await admin.end()
  })

  const opts = { skip: service.skip }

  test('a pg Pool: promise and callback queries, config objects, errors, and checked-out clients', opts, async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
    try {
      const qo = new QueryOptimizer()
      const db = qo.instrument(pool)
      const result = await db.query(`SELECT name FROM ${schema}.users WHERE id = $1`, [7])
      assert.equal(result.rows[0].name, 'user 7')
      const viaCallback = await new Promise((resolve, reject) => db.query(`SELECT name FROM ${schema}.users WHERE id = $1`, [8], (e, r) => (e ? reject(e) : resolve(r))))
      assert.equal(viaCallback.rows[0].name, 'user 8')
      await db.query({ text: `SELECT name FROM ${schema}.users WHERE id = $1`, values: [9] })
      await assert.rejects(db.query(`SELECT nope FROM ${schema}.users`), /nope/)
      const client = await db.connect()
      await client.query(`SELECT count(*) FROM ${schema}.teams`)
      client.release()
      // the pool's other members are the pool's own
      assert.equal(db.totalCount, pool.totalCount)
      const stats = qo.stats({ sortBy: 'calls' })
      const byId = stats.find((s) => s.normalized === `SELECT name FROM ${schema}.users WHERE id = ?`)
      assert.equal(byId.calls, 3)
      assert.equal(byId.rows, 3)
      assert.ok(byId.totalMs > 0)
      const failed = stats.find((s) => s.normalized === `SELECT nope FROM ${schema}.users`)
      assert.equal(failed.errors, 1)
      assert.deepEqual(failed.findings, ['unbounded-select'])
      assert.equal(stats.find((s) => s.normalized.startsWith('SELECT count(*)')).calls, 1)
    } finally {
      await pool.end()
    }
  })

  test('a pg Client with a tracer: client spans with the database attributes', opts, async () => {
    const client = new pg.Client({ connectionString: DATABASE_URL })
    await client.connect()
    try {
      const tracer = new DistributedTracer({ serviceName: 'query-test', exporter: 'memory' })
      const qo = new QueryOptimizer()
      const db = qo.instrument(client, { tracer })
      await tracer.startActiveSpan('request', async () => {
        await db.query(`SELECT name FROM ${schema}.teams WHERE id = $1`, [3])
        await new Promise((resolve, reject) => db.query(`UPDATE ${schema}.teams SET name = name WHERE id = 3`, (e) => (e ? reject(e) : resolve())))
        await db.query(`SELECT broken FROM ${schema}.teams WHERE id = 1`).catch(() => {})
      })
      assert.equal(await tracer.flush(), true)
      const spans = tracer.finishedSpans()
      const request = spans.find((s) => s.name === 'request')
      const clients = spans.filter((s) => s.kind === 'client')
      assert.deepEqual(clients.map((s) => s.name), ['SELECT', 'UPDATE', 'SELECT'])
      for (const span of clients) {
        assert.equal(span.traceId, request.traceId)
        assert.equal(span.parentSpanId, request.spanId)
        assert.equal(span.attributes['db.system'], 'postgresql')
      }
      assert.equal(clients[0].attributes['db.operation.name'], 'SELECT')
      assert.equal(clients[0].attributes['db.query.text'], `SELECT name FROM ${schema}.teams WHERE id = ?`)
      assert.equal(clients[1].attributes['db.query.text'], `UPDATE ${schema}.teams SET name = name WHERE id = ?`)
      assert.equal(clients[2].status.code, 'error')
    } finally {
      await client.end()
    }
  })

  test('a pool with use/acquire/release hands out measured clients', opts, async () => {
    // the shape of the package's ConnectionPool, holding real pg clients
    const idle = []
    const made = []
    const resourcePool = {
      async acquire() {
        if (idle.length) return idle.pop()
        const client = new pg.Client({ connectionString: DATABASE_URL })
        await client.connect()
        made.push(client)
        return client
      },
      release(client) {
        assert.ok(made.includes(client), 'release gets the pool\'s own client back')
        idle.push(client)
      },
      async destroy(client) {
        await client.end()
      },
      async use(fn) {
        const client = await this.acquire()
        try {
          return await fn(client)
        } finally {
          this.release(client)
        }
      },
      get size() {
        return made.length
      },
    }
    try {
      const qo = new QueryOptimizer()
      const pool = qo.instrument(resourcePool)
      const name = await pool.use(async (client) => (await client.query(`SELECT name FROM ${schema}.users WHERE id = $1`, [1])).rows[0].name)
      assert.equal(name, 'user 1')
      const client = await pool.acquire()
      await client.query(`SELECT name FROM ${schema}.users WHERE id = $1`, [2])
      pool.release(client)
      assert.equal(pool.size, 1)
      assert.equal(qo.stats()[0].calls, 2)
    } finally {
      for (const client of made) await client.end()
    }
  })

  test('an N+1 from a real loop of queries inside one traced Express request', opts, async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 })
    const tracer = new DistributedTracer({ serviceName: 'query-test', exporter: 'memory' })
    const qo = new QueryOptimizer({ nPlusOne: { threshold: 5 } })
    const db = qo.instrument(pool, { tracer })
    const events = []
    qo.on('nplusone', (f) => events.push(f))
    const app = express()
    app.use(tracing({ tracer }))
    app.get('/teams/:id/members', async (req, res) => {
      const users = await db.query(`SELECT id FROM ${schema}.users WHERE team_id = $1 ORDER BY id`, [Number(req.params.id)])
      const names = []
      for (const { id } of users.rows) {
        // the N+1: one query per row
        names.push((await db.query(`SELECT name FROM ${schema}.users WHERE id = $1`, [id])).rows[0].name)
      }
      res.json({ traceId: tracer.currentTraceId(), names })
    })
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const response = await fetch(`http://127.0.0.1:${server.address().port}/teams/3/members`)
      const body = await response.json()
      assert.equal(body.names.length, 5)
      const another = await (await fetch(`http://127.0.0.1:${server.address().port}/teams/4/members`)).json()
      const findings = qo.nPlusOne()
      assert.equal(findings.length, 2, JSON.stringify(findings))
      const mine = findings.find((f) => f.traceId === body.traceId)
      assert.ok(mine, 'a finding for the first request\'s trace')
      assert.equal(mine.normalized, `SELECT name FROM ${schema}.users WHERE id = ?`)
      assert.equal(mine.count, 5)
      assert.ok(mine.totalMs > 0)
      assert.match(mine.suggestion, /WHERE id = ANY\(\$1\)/)
      assert.ok(findings.some((f) => f.traceId === another.traceId))
      assert.equal(events.length, 2)
      // the per-team query ran once per request: no finding for it
      assert.ok(!findings.some((f) => f.normalized.includes('team_id')))
      assert.equal(qo.stats().find((s) => s.normalized.includes('WHERE id = ?')).nPlusOne, 2)
    } finally {
      server.closeAllConnections()
      server.close()
      await pool.end()
    }
  })
})
