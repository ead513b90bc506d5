'use strict'
// examples/platform end to end, as `npm start` runs it: the supervisor and its eight services as
// child processes on ports of their own (a random PORT_OFFSET), SQLite in a temporary folder,
// spans on the console as JSON lines. The suite checks what the platform promises: one trace
// across three services with the right parent links, 429 + Retry-After for a bursting client
// while another is served, report cache hits that survive a restart of reports-server, the
// provider breaker opening under injected failure and closing after, an N+1 finding on the
// naive reports path and none on its batched twin, observability on all eight, a crashed
// service restarted, and a clean stop. A last test runs the data path (budget-server and
// reports-server) against the real PostgreSQL, with spans sent to an OTLP receiver.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { once } = require('node:events')
const crypto = require('node:crypto')
const fs = require('node:fs')
const http = require('node:http')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')
const { needService, DATABASE_URL } = require('./helpers/services')

const root = path.join(__dirname, '..')
const platformDir = path.join(root, 'examples', 'platform')
const SERVICES = require('../examples/platform/lib/config').SERVICES

/** Children still running: killed (with their process group) if a test fails midway. */
const children = new Set()
const tempDirs = []

after(() => {
  for (const child of children) {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {}
  }
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true })
})

/** Resolves when 127.0.0.1:port can be listened on. */
function portFree(port) {
  return new Promise((resolve) => {
    const probe = net.createServer()
    probe.once('error', () => resolve(false))
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)))
  })
}

/** A PORT_OFFSET whose eight ports (3000 + offset ...) are free now: a random high base. */
async function freeOffset() {
  for (let attempt = 0; attempt < 20; attempt++) {
    const offset = 20_000 + Math.floor(Math.random() * 30_000)
    const free = await Promise.all(SERVICES.map((s) => portFree(s.port + offset)))
    if (free.every(Boolean)) return offset
  }
  throw new Error('no free range of ports found')
}

function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

/** The environment of a platform process: nothing of the caller's database, Redis or collector. */
function platformEnv(extra) {
  const env = { ...process.env }
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'PROVIDER_FAILURE_RATE', 'HOST']) delete env[name]
  return { ...env, PLATFORM_SPANS: 'json', TRACE_DELAY_MS: '50', BREAKER_OPEN_MS: '500', ...extra }
}

/** Spawns `script` in a process group of its own; collects its output. */
function run(script, env, args = []) {
  const child = spawn(process.execPath, [script, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  children.add(child)
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    children.delete(child)
    resolve({ code, signal })
  }))
  const proc = { child, exited, stdout: '', stderr: '', output: () => proc.stdout + proc.stderr }
  child.stdout.setEncoding('utf8').on('data', (chunk) => (proc.stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk) => (proc.stderr += chunk))
  return proc
}

/** Resolves once `check()` returns a truthy value (polled), or fails after `ms` with `what`. */
async function waitFor(what, check, ms = 15_000) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Sends `signal` to a child and resolves with how it exited; fails if it is still up after 5 s. */
async function stop(proc, signal = 'SIGTERM') {
  proc.child.kill(signal)
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`still running 5 s after ${signal}:\n${proc.output()}`)), 5000)
  })
  try {
    return await Promise.race([proc.exited, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    if (error.code === 'ESRCH') return false
    throw error
  }
}

/** The console exporter's spans in the supervisor's output (`<service> | {json}` lines). */
function spansIn(output) {
  const spans = []
  for (const line of output.split('\n')) {
    const bar = line.indexOf(' | {')
    if (bar === -1) continue
    try {
      const span = JSON.parse(line.slice(bar + 3))
      if (typeof span.traceId === 'string' && typeof span.spanId === 'string') spans.push(span)
    } catch {}
  }
  return spans
}

const randomHex = (bytes) => crypto.randomBytes(bytes).toString('hex')
const traceparent = (traceId, spanId) => `00-${traceId}-${spanId}-01`

// -- the platform under test, started once for the tests below -------------------------------------

let platform
let offset
const urlOf = (name) => `http://127.0.0.1:${SERVICES.find((s) => s.name === name).port + offset}`
let gateway
/** pid of each service, from the supervisor's table (updated on restarts). */
const pids = new Map()

async function snapshot(name) {
  const response = await fetch(`${urlOf(name)}/api/v1/system/observability`)
  assert.equal(response.status, 200)
  return response.json()
}

/** A GET through the gateway as client `apiKey`. */
function get(pathname, apiKey, headers = {}) {
  return fetch(gateway + pathname, { headers: { 'x-api-key': apiKey, ...headers } })
}

before(async () => {
  offset = await freeOffset()
  gateway = urlOf('web-server')
  platform = run(path.join(platformDir, 'start.js'), platformEnv({ PORT_OFFSET: String(offset), PLATFORM_DATA_DIR: tempDir('bulwark-platform-') }))
  await Promise.race([
    waitFor('the table of services', () => /bulwark platform: 8 services up[\s\S]*Ctrl-C stops everything/.test(platform.stdout), 60_000),
    platform.exited.then(({ code, signal }) => {
      throw new Error(`the supervisor exited (${code ?? signal}) before the platform was up:\n${platform.output()}`)
    }),
  ])
  for (const match of platform.stdout.matchAll(/^\s+([a-z]+-server)\s+(http:\/\/127\.0\.0\.1:\d+)\s+(\d+)\s/gm)) {
    pids.set(match[1], Number(match[3]))
    assert.equal(match[2], urlOf(match[1]), `the table shows ${match[1]} on its port`)
  }
})

test('npm start brings up the eight services and prints their URLs', () => {
  assert.deepEqual([...pids.keys()].sort(), SERVICES.map((s) => s.name).sort())
  for (const pid of pids.values()) assert.equal(alive(pid), true)
  assert.match(platform.stdout, new RegExp(`Open ${gateway}/ for the index`))
})

test('observability, metrics, healthz and readyz answer on all eight services', async () => {
  for (const { name } of SERVICES) {
    const base = urlOf(name)
    const snap = await snapshot(name)
    assert.equal(snap.service, name)
    assert.equal(typeof snap.tracer.tracer.started, 'number')
    const metrics = await fetch(`${base}/metrics`)
    assert.equal(metrics.status, 200)
    assert.match(metrics.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
    assert.match(await metrics.text(), new RegExp(`^bulwark_tracer_spans_started_total\\{service="${name}",name="tracer"\\} \\d+$`, 'm'))
    const health = await fetch(`${base}/healthz`)
    assert.equal(health.status, 200)
    assert.equal((await health.json()).status, 'ok')
    const ready = await fetch(`${base}/readyz`)
    assert.equal(ready.status, 200, `${name} is ready`)
    assert.deepEqual(await ready.json(), { ready: true, reasons: [] })
  }
  // the blocks each service registered
  assert.ok((await snapshot('web-server')).rateLimiter.gateway)
  const budget = await snapshot('budget-server')
  assert.deepEqual(Object.keys(budget.cache), ['rates'])
  assert.deepEqual(Object.keys(budget.circuitBreakers), ['rates-provider'])
  assert.deepEqual(Object.keys(budget.rateLimiter), ['api'])
  assert.equal(budget.pools.db.closed, false)
  const resilience = await fetch(`${urlOf('budget-server')}/api/v1/providers/resilience-status`)
  assert.equal((await resilience.json()).circuitBreakers['rates-provider'].state, 'closed')
  const reports = await snapshot('reports-server')
  assert.deepEqual(Object.keys(reports.cache), ['reports'])
  assert.ok(reports.pools.db.created >= 1)
})

test('one request through the gateway to two backends is one trace, with the parent links across the three services', async () => {
  const traceId = randomHex(16)
  const callerSpanId = randomHex(8)
  const response = await get('/api/dashboard/5', 'trace-test', { traceparent: traceparent(traceId, callerSpanId) })
  assert.equal(response.status, 200, platform.output())
  const body = await response.json()
  assert.equal(body.traceId, traceId)
  assert.equal(body.budget.status, 200)
  assert.equal(body.budget.body.teamId, 5)
  assert.equal(body.report.status, 200)
  assert.equal(body.report.body.team.id, 5)

  // spans are exported 50 ms after they end: wait for the three server spans
  const inTrace = () => spansIn(platform.stdout).filter((s) => s.traceId === traceId)
  const serverOf = (service, spans) => spans.filter((s) => s.service === service && s.kind === 'server')
  const spans = await waitFor('the spans of the three services', () => {
    const found = inTrace()
    return ['web-server', 'budget-server', 'reports-server'].every((s) => serverOf(s, found).length === 1) ? found : null
  })
  const [gatewayServer] = serverOf('web-server', spans)
  assert.equal(gatewayServer.name, 'GET /api/dashboard/:teamId')
  assert.equal(gatewayServer.parentSpanId, callerSpanId, "the gateway's server span is the caller's child")
  const gatewayClients = spans.filter((s) => s.service === 'web-server' && s.kind === 'client')
  assert.equal(gatewayClients.length, 2, 'one client span per backend call')
  for (const client of gatewayClients) assert.equal(client.parentSpanId, gatewayServer.spanId)

  const [budgetServer] = serverOf('budget-server', spans)
  const [reportsServer] = serverOf('reports-server', spans)
  assert.equal(budgetServer.name, 'GET /api/v1/budgets/:teamId')
  assert.equal(reportsServer.name, 'GET /api/v1/teams/:teamId/summary')
  const budgetCall = gatewayClients.find((c) => c.spanId === budgetServer.parentSpanId)
  const reportsCall = gatewayClients.find((c) => c.spanId === reportsServer.parentSpanId)
  assert.ok(budgetCall, "budget-server's server span is the child of one of the gateway's client spans")
  assert.ok(reportsCall, "reports-server's server span is the child of one of the gateway's client spans")
  assert.notEqual(budgetCall, reportsCall)
  assert.match(budgetCall.attributes['url.full'], /\/api\/v1\/budgets\/5$/)
  assert.match(reportsCall.attributes['url.full'], /\/api\/v1\/teams\/5\/summary$/)

  // inside the backends: the instrumented queries are children of their server spans
  const budgetQueries = spans.filter((s) => s.service === 'budget-server' && s.kind === 'client' && s.attributes['db.system'] === 'sqlite')
  assert.ok(budgetQueries.length >= 1)
  for (const q of budgetQueries) assert.equal(q.parentSpanId, budgetServer.spanId)
  const reportsQueries = spans.filter((s) => s.service === 'reports-server' && s.kind === 'client' && s.attributes['db.system'] === 'sqlite')
  assert.ok(reportsQueries.length >= 2)
  for (const q of reportsQueries) assert.equal(q.parentSpanId, reportsServer.spanId)
})

test('a bursting client gets 429 with Retry-After while another client is still served', async () => {
  const burst = Array.from({ length: 60 }, () => get('/api/training/courses', 'burst-test'))
  // another client, in the middle of the burst and after it
  const during = await get('/api/coach/tips', 'calm-test')
  const responses = await Promise.all(burst)
  const after = await get('/api/capabilities/capabilities?plan=pro', 'calm-test')

  const ok = responses.filter((r) => r.status === 200)
  const limited = responses.filter((r) => r.status === 429)
  assert.equal(ok.length + limited.length, responses.length, `statuses: ${responses.map((r) => r.status)}`)
  assert.ok(ok.length >= 20, 'the burst capacity (20) is served')
  assert.ok(limited.length >= 1, 'the rest of the burst is held back')
  for (const response of limited) {
    assert.match(response.headers.get('retry-after'), /^[1-9]\d*$/)
    assert.match(response.headers.get('ratelimit'), /^"gateway";r=0;t=\d+$/)
    assert.equal((await response.json()).error, 'rate_limited')
  }
  await Promise.all(ok.map((r) => r.arrayBuffer()))

  assert.equal(during.status, 200)
  assert.ok((await during.json()).tips.length > 0)
  assert.match(during.headers.get('ratelimit'), /^"gateway";r=19;t=\d+$/)
  assert.equal(after.status, 200)
  assert.match(after.headers.get('ratelimit'), /^"gateway";r=1[89];t=\d+$/)

  const limiter = (await snapshot('web-server')).rateLimiter.gateway
  assert.ok(limiter.rejected >= limited.length)
})

test('repeated report requests are cache hits, and the reports cache survives a restart of reports-server', async () => {
  const first = await get('/api/reports/teams/3/summary', 'cache-test')
  assert.equal(first.status, 200)
  assert.equal(first.headers.get('x-cache'), 'MISS')
  const report = await first.json()
  assert.equal(report.team.id, 3)
  assert.ok(report.members.length >= 6)
  assert.equal(report.totals.minutes, report.members.reduce((sum, m) => sum + m.minutes, 0))

  const second = await get('/api/reports/teams/3/summary', 'cache-test')
  assert.equal(second.headers.get('x-cache'), 'HIT')
  assert.deepEqual(await second.json(), report)
  const before = (await snapshot('reports-server')).cache.reports
  assert.ok(before.hits >= 1)

  // stop reports-server as an operator would (SIGTERM): the supervisor starts it again
  const oldPid = pids.get('reports-server')
  process.kill(oldPid, 'SIGTERM')
  const back = await waitFor('reports-server to be back', () => /reports-server is back \(pid (\d+)\)/.exec(platform.stdout))
  const newPid = Number(back[1])
  assert.notEqual(newPid, oldPid)
  assert.equal(alive(oldPid), false)
  pids.set('reports-server', newPid)
  assert.match(platform.stdout, /reports-server +\| closed in \d+ ms \(server, db pool, reports cache, tracer\)/)
  const held = /reports-server +\| .*report cache .* \((\d+) held\)\n(?![\s\S]*report cache)/.exec(platform.stdout)
  assert.ok(held && Number(held[1]) >= 1, 'the new process opened the disk tier with the reports in it')

  const third = await get('/api/reports/teams/3/summary', 'cache-test')
  assert.equal(third.status, 200)
  assert.equal(third.headers.get('x-cache'), 'HIT')
  const again = await third.json()
  assert.deepEqual(again, report, 'the report rendered before the restart')
  assert.equal(again.renderedBy, oldPid)
  const after = (await snapshot('reports-server')).cache.reports
  assert.equal(after.misses, 0, 'a fresh process: its only lookup was a hit')
  assert.equal(after.disk.hits, 1, 'served by the disk tier')

  // a new activity invalidates the team's report (tag team:3): the next request renders it again
  const posted = await fetch(`${gateway}/api/reports/teams/3/activities`, {
    method: 'POST',
    headers: { 'x-api-key': 'cache-test', 'content-type': 'application/json' },
    body: JSON.stringify({ memberId: report.members[0].id, kind: 'workshop', minutes: 45 }),
  })
  assert.equal(posted.status, 201)
  assert.equal((await posted.json()).invalidated, 1)
  const fourth = await get('/api/reports/teams/3/summary', 'cache-test')
  assert.equal(fourth.headers.get('x-cache'), 'MISS')
  const rerendered = await fourth.json()
  assert.equal(rerendered.members[0].minutes, report.members[0].minutes + 45)
  assert.equal(rerendered.totals.sessions, report.totals.sessions + 1)
})

test("budget's provider breaker opens when failures are injected and closes once they stop", async () => {
  const admin = `${urlOf('budget-server')}/api/v1/admin/provider-failure`
  const inject = async (rate) => {
    const response = await fetch(admin, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rate }) })
    assert.equal(response.status, 200)
  }
  // not reachable through the gateway
  assert.equal((await get('/api/budget/admin/provider-failure', 'breaker-test')).status, 403)
  const resilience = async () => (await (await fetch(`${urlOf('budget-server')}/api/v1/providers/resilience-status`)).json()).circuitBreakers['rates-provider']

  let n = 0
  // currencies asked for once each: cache misses, so every request calls the provider
  const fresh = () => `Q${String.fromCharCode(65 + Math.floor(n / 26))}${String.fromCharCode(65 + (n++ % 26))}`
  const healthy = await get(`/api/budget/providers/rates/${fresh()}`, 'breaker-test')
  assert.equal(healthy.status, 200)
  assert.equal(healthy.headers.get('x-cache'), 'MISS')

  await inject(1)
  const statuses = []
  let refused = null
  for (let i = 0; i < 15 && refused === null; i++) {
    const response = await get(`/api/budget/providers/rates/${fresh()}`, 'breaker-test')
    const body = await response.json()
    statuses.push(response.status)
    if (response.status === 503 && body.refused) refused = { response, body }
  }
  assert.ok(refused, `the breaker opened; statuses: ${statuses}`)
  assert.ok(statuses.every((s) => s === 503), 'every failed provider call is a 503')
  const failedCalls = statuses.length - 1
  assert.match(refused.response.headers.get('retry-after'), /^[1-9]\d*$/)
  assert.equal(refused.body.error, 'provider_unavailable')
  const opened = await resilience()
  assert.equal(opened.state, 'open')
  // it opened once the window held 5 calls (minimumCalls), half of them or more failed
  assert.equal(opened.failures, failedCalls)
  assert.ok(failedCalls >= 4)
  assert.equal(opened.rejected, 1)
  // a cached rate is still served while the provider is down
  assert.equal((await get('/api/budget/providers/rates/QAA', 'breaker-test')).status, 200)

  await inject(0)
  const recovered = await waitFor('a rate from the provider again', async () => {
    const response = await get(`/api/budget/providers/rates/${fresh()}`, 'breaker-test')
    const body = await response.json()
    if (response.status === 200) return body
    assert.equal(response.status, 503)
    await new Promise((resolve) => setTimeout(resolve, 150)) // stay under the gateway's 10 a second
    return null
  })
  assert.equal(typeof recovered.perUsd, 'number')
  assert.equal((await resilience()).state, 'closed')
})

test('the deliberate N+1 reports path is found by the QueryOptimizer, its batched twin is not', async () => {
  const naiveTrace = randomHex(16)
  const batchedTrace = randomHex(16)
  const naive = await get('/api/reports/teams/4/activity', 'nplusone-test', { traceparent: traceparent(naiveTrace, randomHex(8)) })
  assert.equal(naive.status, 200)
  const batched = await get('/api/reports/teams/4/activity/batched', 'nplusone-test', { traceparent: traceparent(batchedTrace, randomHex(8)) })
  assert.equal(batched.status, 200)
  const naiveBody = await naive.json()
  const batchedBody = await batched.json()
  assert.ok(naiveBody.members.length >= 6)
  assert.deepEqual(batchedBody.members, naiveBody.members, 'both paths compute the same figures')

  const { queries } = await snapshot('reports-server')
  const naiveFindings = queries.nPlusOne.filter((f) => f.traceId === naiveTrace)
  assert.equal(naiveFindings.length, 1, JSON.stringify(queries.nPlusOne, null, 1))
  const [finding] = naiveFindings
  assert.equal(finding.count, naiveBody.members.length, 'one run per member')
  assert.match(finding.normalized, /FROM activities WHERE member_id = \?$/)
  assert.match(finding.suggestion, /loader/)
  assert.deepEqual(queries.nPlusOne.filter((f) => f.traceId === batchedTrace), [])
  // the batched statement is there, with an IN list, and no finding against it
  const batchedStatement = queries.top.find((q) => /WHERE member_id IN \(\?\) GROUP BY member_id/.test(q.normalized))
  assert.ok(batchedStatement)
  assert.equal(batchedStatement.nPlusOne, 0)
  assert.ok(platform.stdout.includes(`N+1 in trace ${naiveTrace}`), 'the finding is logged')
})

test('a service that crashes is restarted by the supervisor', async () => {
  const oldPid = pids.get('coach-server')
  process.kill(oldPid, 'SIGKILL')
  const back = await waitFor('coach-server to be back', () => /coach-server is back \(pid (\d+)\)/.exec(platform.stdout))
  assert.match(platform.stdout, /coach-server exited \(SIGKILL\) after [\d.]+ s; restarting in \d+ ms/)
  pids.set('coach-server', Number(back[1]))
  const response = await get('/api/coach/tips?topic=tracing', 'crash-test')
  assert.equal(response.status, 200)
  assert.equal((await response.json()).tips.length, 2)
})

test('SIGTERM stops the platform cleanly: every service closes its blocks and flushes its spans, then exit code 0', async () => {
  // a request just before the stop: its spans must still come out (the tracers are flushed)
  const traceId = randomHex(16)
  assert.equal((await get('/api/meta/services', 'stop-test', { traceparent: traceparent(traceId, randomHex(8)) })).status, 200)
  assert.deepEqual(await stop(platform, 'SIGTERM'), { code: 0, signal: null })
  assert.match(platform.stdout, /supervisor +\| stopped: every service exited cleanly in \d+ ms/)
  for (const { name } of SERVICES) assert.match(platform.stdout, new RegExp(`${name} +\\| closed in \\d+ ms`))
  assert.match(platform.stdout, /budget-server +\| closed in \d+ ms \(server, db pool, limiter, rates cache, tracer\)/)
  for (const [name, pid] of pids) assert.equal(alive(pid), false, `${name} is gone`)
  const spans = spansIn(platform.stdout).filter((s) => s.traceId === traceId)
  assert.deepEqual(spans.map((s) => `${s.service} ${s.kind}`).sort(), ['meta-server server', 'web-server client', 'web-server server'])
  for (const s of SERVICES) assert.equal(await portFree(s.port + offset), true)
})

test('the data path on PostgreSQL: budget-server and reports-server in schemas of their own, spans to an OTLP collector', async (t) => {
  const { skip } = await needService('postgres')
  if (skip) return t.skip(skip)
  const pg = require('pg')
  const prefix = `bulwark_platform_test_${process.pid}_`
  const schemas = [`${prefix}budget`, `${prefix}reports`]
  const admin = new pg.Client({ connectionString: DATABASE_URL })
  await admin.connect()
  t.after(async () => {
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await admin.end()
  })

  // an OTLP/HTTP receiver: what the two services export
  const otlpBodies = []
  const receiver = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      if (req.url === '/v1/traces') otlpBodies.push({ type: req.headers['content-type'], body: Buffer.concat(chunks) })
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  receiver.listen(0, '127.0.0.1')
  await once(receiver, 'listening')
  t.after(() => receiver.close())

  offset = await freeOffset()
  const env = platformEnv({
    PORT_OFFSET: String(offset),
    PLATFORM_DATA_DIR: tempDir('bulwark-platform-pg-'),
    DATABASE_URL,
    DB_SCHEMA_PREFIX: prefix,
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.address().port}`,
  })
  const budget = run(path.join(platformDir, 'budget-server.js'), env)
  const reports = run(path.join(platformDir, 'reports-server.js'), env)
  for (const [proc, name] of [[budget, 'budget-server'], [reports, 'reports-server']]) {
    await Promise.race([
      waitFor(`${name} to listen`, () => proc.stdout.includes(`${name}: listening on ${urlOf(name)}`), 30_000),
      proc.exited.then(({ code }) => { throw new Error(`${name} exited (${code}):\n${proc.output()}`) }),
    ])
    assert.match(proc.stdout, new RegExp(`database: PostgreSQL, schema ${prefix}`))
  }

  // reports: cache miss then hit, the N+1 and its twin, a write that invalidates
  const summary = async () => fetch(`${urlOf('reports-server')}/api/v1/teams/2/summary`)
  const first = await summary()
  assert.equal(first.status, 200)
  assert.equal(first.headers.get('x-cache'), 'MISS')
  const report = await first.json()
  assert.equal((await summary()).headers.get('x-cache'), 'HIT')
  const naive = await (await fetch(`${urlOf('reports-server')}/api/v1/teams/2/activity`)).json()
  const batched = await (await fetch(`${urlOf('reports-server')}/api/v1/teams/2/activity/batched`)).json()
  assert.deepEqual(naive.members, report.members)
  assert.deepEqual(batched.members, report.members)
  const posted = await fetch(`${urlOf('reports-server')}/api/v1/teams/2/activities`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ memberId: report.members[1].id, minutes: 20 }),
  })
  assert.equal(posted.status, 201)
  const refreshed = await summary()
  assert.equal(refreshed.headers.get('x-cache'), 'MISS')
  assert.equal((await refreshed.json()).members[1].minutes, report.members[1].minutes + 20)
  const { queries, pools } = await (await fetch(`${urlOf('reports-server')}/api/v1/system/observability`)).json()
  assert.equal(queries.nPlusOne.length, 1)
  assert.equal(queries.nPlusOne[0].count, report.members.length)
  assert.ok(pools.db.created >= 1)

  // budget: a read in another currency (provider + cache), a write, the totals
  const line = await (await fetch(`${urlOf('budget-server')}/api/v1/budgets/1?currency=EUR`)).json()
  assert.equal(line.lines.length, 4)
  const expense = await fetch(`${urlOf('budget-server')}/api/v1/budgets/1/expenses`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ category: 'travel', amountCents: 1234 }),
  })
  assert.equal(expense.status, 201)
  const totals = await (await fetch(`${urlOf('budget-server')}/api/v1/budgets`)).json()
  assert.equal(totals.teams.length, 8)

  // the rows are in PostgreSQL, in the services' own schemas
  const activities = await admin.query(`SELECT COUNT(*)::int AS n FROM ${prefix}reports.activities WHERE member_id = $1`, [report.members[1].id])
  assert.equal(activities.rows[0].n, report.members[1].sessions + 1)
  const runs = await admin.query(`SELECT COUNT(*)::int AS n FROM ${prefix}reports.report_runs WHERE team_id = 2`)
  assert.equal(runs.rows[0].n, 2)
  const expenses = await admin.query(`SELECT COUNT(*)::int AS n FROM ${prefix}budget.expenses WHERE amount_cents = 1234`)
  assert.equal(expenses.rows[0].n, 1)

  assert.deepEqual(await stop(budget), { code: 0, signal: null })
  assert.deepEqual(await stop(reports), { code: 0, signal: null })
  // shutdown flushed the spans to the collector, not to the console
  assert.ok(otlpBodies.length >= 2, `OTLP requests: ${otlpBodies.length}`)
  for (const { type } of otlpBodies) assert.equal(type, 'application/x-protobuf')
  const { ExportTraceServiceRequest } = require('otlp-reference-decoder/build/src/generated/root').opentelemetry.proto.collector.trace.v1
  const exported = new Map()
  for (const { body } of otlpBodies) {
    for (const rs of ExportTraceServiceRequest.decode(body).resourceSpans) {
      const service = rs.resource.attributes.find((a) => a.key === 'service.name').value.stringValue
      for (const ss of rs.scopeSpans) for (const span of ss.spans) exported.set(`${service} ${span.name}`, span)
    }
  }
  assert.ok(exported.has('reports-server GET /api/v1/teams/:teamId/activity'), [...exported.keys()].join('\n'))
  assert.ok(exported.has('budget-server GET /api/v1/budgets/:teamId'))
  const query = [...exported.values()].find((s) => s.attributes.some((a) => a.key === 'db.system' && a.value.stringValue === 'postgresql'))
  assert.ok(query, 'the queries ran in client spans with db.system postgresql')
  assert.equal(spansIn(budget.stdout).length + spansIn(reports.stdout).length, 0)
  assert.doesNotMatch(budget.stdout + reports.stdout, /^\{"attributes"/m)
})
