'use strict'
// Observability: the snapshot of every registered block, the Prometheus and OpenMetrics text
// (parsed with an independent parser from the registry, parse-prometheus-text-format, not our
// own), health and readiness, and the Express routes on a real server.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const { once } = require('node:events')
const express = require('express')
const parsePrometheus = require('parse-prometheus-text-format')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { required } = require('./helpers/services')

/**
 * The families as the Prometheus project's own Python client parses them (text format, or the
 * strict OpenMetrics parser), or `{ skip }` when python3 or prometheus_client is missing (a
 * failure when BULWARK_REQUIRE_SERVICES=1, as in CI, which installs it).
 */
function officialParse(text, openMetrics = false) {
  const script = path.join(__dirname, 'helpers', 'prometheus_parse.py')
  const run = spawnSync('python3', [script, ...(openMetrics ? ['--openmetrics'] : [])], { input: text, encoding: 'utf8', maxBuffer: 64 << 20 })
  if (run.error || run.status === 3) {
    const why = 'python3 with prometheus_client is not installed (pip install prometheus_client)'
    if (required) throw new Error(`${why}; it is required with BULWARK_REQUIRE_SERVICES=1`)
    return { skip: why }
  }
  assert.equal(run.status, 0, run.stderr)
  return { families: JSON.parse(run.stdout) }
}
const { Observability, RateLimiter, DistributedTracer, PersistentCache, CircuitBreaker, ConnectionPool, QueryOptimizer, TestClock, codes } = require('..')
const { observability } = require('../express')

/** Every kind of block with some activity, registered under names that need escaping too. */
function fleet() {
  const clock = new TestClock(0)
  const limiter = new RateLimiter({ capacity: 2, refillPerSecond: 1, clock })
  limiter.tryConsume('a')
  limiter.tryConsume('a')
  limiter.tryConsume('a')
  const tracer = new DistributedTracer({ serviceName: 'budget-server', exporter: 'none' })
  tracer.startSpan('GET /api/budget').end()
  const failed = tracer.startSpan('GET /api/budget')
  failed.setStatus('error', 'boom')
  failed.end()
  const cache = new PersistentCache({ maxEntries: 100 })
  cache.set('provider:1', { price: 3 })
  cache.get('provider:1')
  cache.get('missing')
  const breaker = new CircuitBreaker({ name: 'openai', critical: true, clock })
  const obs = new Observability({ service: 'budget-server' })
  const pool = new ConnectionPool({ name: 'db', create: async () => ({}), destroy: () => {}, max: 2 })
  const qo = new QueryOptimizer({ nPlusOne: { threshold: 3 } })
  for (let id = 1; id <= 4; id++) qo.record(`SELECT name FROM users WHERE id = ${id}`, 2, { traceId: 'a'.repeat(32) })
  qo.record("UPDATE budgets SET amount = 10 WHERE id = 'x'", 50, { error: true })
  obs.add('api', limiter).add('tracer', tracer).add('providers "eu"\\n', cache).add('openai', breaker).add('db', pool).add('sql', qo)
  return { obs, limiter, tracer, cache, breaker, pool, qo, clock }
}

function family(parsed, name) {
  const found = parsed.find((f) => f.name === name)
  assert.ok(found, `family ${name} is in the output`)
  return found
}

test('snapshot: every block under its kind and name, with service, version and times', async () => {
  const { obs, cache } = fleet()
  const snap = obs.snapshot()
  assert.equal(snap.service, 'budget-server')
  assert.equal(snap.version, require('../package.json').version)
  assert.equal(typeof snap.uptimeSeconds, 'number')
  assert.ok(!Number.isNaN(Date.parse(snap.timestamp)))
  assert.equal(snap.rateLimiter.api.allowed, 2)
  assert.equal(snap.rateLimiter.api.rejected, 1)
  assert.equal(snap.tracer.tracer.spans['GET /api/budget'].count, 2)
  assert.equal(snap.tracer.tracer.spans['GET /api/budget'].errors, 1)
  assert.equal(snap.cache['providers "eu"\\n'].hits, 1)
  assert.equal(snap.cache['providers "eu"\\n'].misses, 1)
  assert.equal(snap.circuitBreakers.openai.state, 'closed')
  assert.equal(snap.pools.db.max, 2)
  assert.equal(snap.pools.db.size, 0)
  assert.deepEqual(snap.pools.db.acquireWaitMs, { p50: 0, p95: 0, p99: 0, max: 0 })
  assert.deepEqual(snap.queries.top.map((q) => [q.optimizer, q.normalized, q.calls, q.errors]), [
    ['sql', 'UPDATE budgets SET amount = ? WHERE id = ?', 1, 1],
    ['sql', 'SELECT name FROM users WHERE id = ?', 4, 0],
  ])
  assert.equal(snap.queries.nPlusOne.length, 1)
  assert.equal(snap.queries.nPlusOne[0].optimizer, 'sql')
  assert.equal(snap.queries.nPlusOne[0].count, 4)
  // no literal from a query is shown
  assert.doesNotMatch(JSON.stringify(snap.queries), /'x'|id = 3/)
  // JSON-ready, and a closed block still renders (with the reason)
  JSON.parse(JSON.stringify(snap))
  await cache.close()
  assert.match(obs.snapshot().cache['providers "eu"\\n'].error, /closed/)
})

test('prometheus: an independent parser reads names, types, labels and values', () => {
  const { obs } = fleet()
  const text = obs.prometheus()
  const parsed = parsePrometheus(text)
  for (const f of parsed) {
    assert.match(f.name, /^bulwark_[a-z_]+$/)
    if (f.type === 'COUNTER') assert.match(f.name, /_total$/)
    if (f.type !== 'HISTOGRAM') for (const m of f.metrics) assert.equal(m.labels.service, 'budget-server')
  }
  const allowed = family(parsed, 'bulwark_rate_limiter_allowed_total')
  assert.equal(allowed.type, 'COUNTER')
  assert.deepEqual(allowed.metrics, [{ value: '2', labels: { service: 'budget-server', name: 'api' } }])
  const hits = family(parsed, 'bulwark_cache_hits_total')
  // the name with a quote, a backslash and an n came back unescaped, exactly
  assert.equal(hits.metrics[0].labels.name, 'providers "eu"\\n')
  assert.equal(hits.metrics[0].value, '1')
  assert.equal(family(parsed, 'bulwark_cache_disk_resets_total').metrics[0].value, '0')
  const spans = family(parsed, 'bulwark_tracer_span_count_total')
  assert.deepEqual(spans.metrics, [{ value: '2', labels: { service: 'budget-server', name: 'tracer', span: 'GET /api/budget' } }])
  // (this parser reads only one unlabelled series per histogram family: histograms are checked
  // with the official parser below)
  assert.equal(family(parsed, 'bulwark_tracer_span_duration_seconds').type, 'HISTOGRAM')
  const state = family(parsed, 'bulwark_circuit_breaker_state')
  assert.deepEqual(state.metrics.filter((m) => m.value === '1').map((m) => m.labels.state), ['closed'])
  assert.equal(family(parsed, 'bulwark_rate_limiter_wait_seconds').type, 'HISTOGRAM')
})

test('OpenMetrics: counter families without _total, samples with it, and # EOF at the end', () => {
  const { obs } = fleet()
  const text = obs.prometheus({ openMetrics: true })
  assert.ok(text.endsWith('# EOF\n'))
  assert.match(text, /^# TYPE bulwark_cache_hits counter$/m)
  assert.match(text, /^bulwark_cache_hits_total\{service="budget-server",name="providers \\"eu\\"\\\\n"\} 1$/m)
  assert.doesNotMatch(text, /^# TYPE bulwark_cache_hits_total/m)
})

test('ready: false while a critical breaker is open, true again after reset; health is always ok', () => {
  const { obs, breaker } = fleet()
  const calm = new CircuitBreaker({ name: 'calm' })
  obs.add('calm', calm)
  calm.forceOpen()
  assert.deepEqual(obs.ready(), { ready: true, reasons: [] })
  breaker.forceOpen()
  assert.deepEqual(obs.ready(), { ready: false, reasons: ['circuit breaker "openai" is forcedOpen'] })
  breaker.reset()
  assert.deepEqual(obs.ready(), { ready: true, reasons: [] })
  assert.equal(obs.health().status, 'ok')
})

test('queries: per-fingerprint families with the fingerprint as label, and the N+1 count', () => {
  const { obs, qo } = fleet()
  const parsed = parsePrometheus(obs.prometheus())
  const select = qo.fingerprint('SELECT name FROM users WHERE id = 1').fingerprint
  const calls = family(parsed, 'bulwark_query_calls_total').metrics
  assert.equal(calls.find((m) => m.labels.fingerprint === select).value, '4')
  const errors = family(parsed, 'bulwark_query_errors_total').metrics
  assert.equal(errors.find((m) => m.labels.fingerprint !== select).value, '1')
  assert.equal(family(parsed, 'bulwark_query_duration_seconds').type, 'HISTOGRAM')
  assert.equal(family(parsed, 'bulwark_query_nplusone_findings').metrics[0].value, '1')
})

test('pools: metrics after use, and not ready while closed or unable to create any resource', async () => {
  const { obs, pool } = fleet()
  await pool.use(() => 'done')
  const parsed = parsePrometheus(obs.prometheus())
  assert.equal(family(parsed, 'bulwark_pool_acquires_total').metrics[0].value, '1')
  assert.equal(family(parsed, 'bulwark_pool_idle').metrics[0].value, '1')
  assert.equal(family(parsed, 'bulwark_pool_acquire_wait_seconds').type, 'HISTOGRAM')
  const down = new ConnectionPool({ name: 'down', create: async () => {
    throw new Error('ECONNREFUSED')
  }, destroy: () => {}, createRetry: { retries: 0, backoffMs: 0, maxBackoffMs: 0 } })
  obs.add('reports-db', down)
  assert.deepEqual(obs.ready(), { ready: true, reasons: [] })
  await assert.rejects(down.acquire({ timeoutMs: 1000 }), { reason: 'create-failed' })
  assert.deepEqual(obs.ready(), { ready: false, reasons: ['pool "reports-db" has no resource and cannot create one'] })
  await pool.close()
  assert.deepEqual(obs.ready().reasons, ['pool "db" is closed', 'pool "reports-db" has no resource and cannot create one'])
  await down.close()
})

test('histograms: the official Prometheus parsers (text and strict OpenMetrics) read cumulative _bucket, _sum and _count series', async (t) => {
  const { obs, tracer, pool, limiter, qo, clock } = fleet()
  for (let i = 0; i < 3; i++) await pool.use(() => i)
  // one limiter wait of 750 ms: key 'a' is empty and refills one token a second
  clock.advance(250)
  const waited = limiter.acquire('a')
  clock.advance(750)
  await waited
  const slow = tracer.startSpan('GET /api/report', { startTime: Date.now() - 40 })
  slow.end()
  const text = obs.prometheus()
  const parsed = officialParse(text)
  if (parsed.skip) return t.skip(parsed.skip)
  const byName = new Map(parsed.families.map((f) => [f.name, f]))
  const spans = byName.get('bulwark_tracer_span_duration_seconds')
  assert.equal(spans.type, 'histogram')
  for (const span of ['GET /api/budget', 'GET /api/report']) {
    const samples = spans.samples.filter((s) => s.labels.span === span)
    const buckets = samples.filter((s) => s.name.endsWith('_bucket'))
    const count = samples.find((s) => s.name.endsWith('_count')).value
    assert.equal(buckets.at(-1).labels.le, '+Inf')
    assert.equal(buckets.at(-1).value, count)
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative')
    assert.equal(samples[0].labels.service, 'budget-server')
  }
  const report = spans.samples.filter((s) => s.labels.span === 'GET /api/report')
  const le = (bound) => report.find((s) => s.labels.le === bound).value
  // the 40 ms span is above 25 ms and at most 50 ms
  assert.equal(le('0.025'), 0)
  assert.equal(le('0.05'), 1)
  assert.ok(report.find((s) => s.name.endsWith('_sum')).value >= 0.04)
  const waits = byName.get('bulwark_pool_acquire_wait_seconds')
  assert.equal(waits.samples.find((s) => s.name.endsWith('_count')).value, 3)
  const series = (name, match = () => true) => {
    const family = byName.get(name)
    assert.equal(family.type, 'histogram', name)
    const samples = family.samples.filter(match)
    const value = (suffix, le) => samples.find((s) => s.name === name + suffix && (le === undefined || s.labels.le === le)).value
    return { value, samples }
  }
  const wait = series('bulwark_rate_limiter_wait_seconds')
  assert.equal(wait.value('_bucket', '0.5'), 0)
  assert.equal(wait.value('_bucket', '1'), 1)
  assert.equal(wait.value('_count'), 1)
  assert.ok(Math.abs(wait.value('_sum') - 0.75) < 0.001, `sum ${wait.value('_sum')}`)
  // four SELECTs of 2 ms and one UPDATE of exactly 50 ms (counted under its bound), each under its own fingerprint label
  const select = qo.fingerprint('SELECT name FROM users WHERE id = 1').fingerprint
  const selects = series('bulwark_query_duration_seconds', (s) => s.labels.fingerprint === select)
  assert.equal(selects.value('_bucket', '0.001'), 0)
  assert.equal(selects.value('_bucket', '0.0025'), 4)
  assert.equal(selects.value('_count'), 4)
  assert.ok(Math.abs(selects.value('_sum') - 0.008) < 1e-9)
  const updates = series('bulwark_query_duration_seconds', (s) => s.labels.fingerprint !== select)
  assert.equal(updates.value('_bucket', '0.025'), 0)
  assert.equal(updates.value('_bucket', '0.05'), 1)
  assert.equal(updates.value('_bucket', '+Inf'), 1)
  // the strict OpenMetrics parser accepts the whole OpenMetrics rendering
  const strict = officialParse(obs.prometheus({ openMetrics: true }), true)
  const names = strict.families.map((f) => f.name)
  assert.ok(names.includes('bulwark_tracer_span_duration_seconds'))
  assert.ok(names.includes('bulwark_cache_hits'))
})

test('bad options and blocks are refused with errors naming them', () => {
  assert.throws(() => new Observability(), { name: 'TypeError', code: codes.INVALID_OPTION })
  assert.throws(() => new Observability({ service: '' }), { name: 'TypeError', code: codes.INVALID_OPTION, message: /options\.service/ })
  assert.throws(() => new Observability({ service: 's', extra: 1 }), { code: codes.INVALID_OPTION, message: /unknown option "extra"/ })
  const obs = new Observability({ service: 's' })
  assert.throws(() => obs.add('x', {}), { name: 'TypeError', code: codes.INVALID_ARGUMENT, message: /block must be/ })
  assert.throws(() => obs.add('', new CircuitBreaker()), { name: 'TypeError', message: /name must be/ })
  obs.add('b', new CircuitBreaker())
  assert.throws(() => obs.add('b', new CircuitBreaker()), { name: 'RangeError', message: /already registered/ })
  assert.throws(() => observability({ obs: {} }), { name: 'TypeError', code: codes.INVALID_OPTION, message: /options\.obs/ })
  assert.throws(() => observability({ obs, paths: { metric: '/m' } }), { message: /unknown path "metric"/ })
  assert.throws(() => observability({ obs, paths: { metrics: 'm' } }), { message: /options\.paths\.metrics/ })
})

test('Express: the five routes, content negotiation for /metrics, 503 when not ready, others pass through', async (t) => {
  const { obs, breaker } = fleet()
  const app = express()
  app.use(observability({ obs, paths: { health: '/livez' } }))
  app.get('/other', (req, res) => res.send('other'))
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const base = `http://127.0.0.1:${server.address().port}`
  const get = (path, headers = {}) => new Promise((resolve, reject) => {
    http.get(`${base}${path}`, { headers }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c) => (body += c)).on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], body }))
    }).on('error', reject)
  })
  const snap = await get('/api/v1/system/observability')
  assert.equal(snap.status, 200)
  assert.match(snap.type, /^application\/json/)
  assert.equal(JSON.parse(snap.body).service, 'budget-server')
  const resilience = await get('/api/v1/providers/resilience-status?verbose=1')
  assert.equal(JSON.parse(resilience.body).circuitBreakers.openai.state, 'closed')
  const metrics = await get('/metrics')
  assert.equal(metrics.type, 'text/plain; version=0.0.4; charset=utf-8')
  assert.ok(parsePrometheus(metrics.body).length > 10)
  const om = await get('/metrics', { accept: 'application/openmetrics-text; version=1.0.0' })
  assert.match(om.type, /^application\/openmetrics-text/)
  assert.ok(om.body.endsWith('# EOF\n'))
  assert.equal((await get('/livez')).status, 200)
  assert.equal((await get('/healthz')).status, 404)
  assert.equal((await get('/readyz')).status, 200)
  breaker.forceOpen()
  const down = await get('/readyz')
  assert.equal(down.status, 503)
  assert.deepEqual(JSON.parse(down.body).reasons, ['circuit breaker "openai" is forcedOpen'])
  assert.equal((await get('/other')).body, 'other')
})
