'use strict'
// `npm run load`: a bounded load against the platform's gateway, then a summary read from the
// services' observability endpoints.
//
//   npm run load [-- --requests=600 --duration=30 --clients=4 --rate=8 --burst=60 --chaos --no-progress]
//
// Normal clients (each with an API key of its own) send a mix of the platform's requests at
// --rate a second each, under the gateway's limit (10 a second per client). A third of the way
// in, one more client sends --burst requests at once: the gateway's limiter lets its first 20
// through and answers the rest 429 with Retry-After, while the normal clients keep being served.
// With --chaos, budget-server's provider fails every call for a few seconds in the middle of the
// run while one more client asks for rare currencies (cache misses): the breaker opens, answers
// 503 at once while open, and closes again once the provider is back.
//
// The run stops at --requests or --duration, whichever comes first (both have a ceiling), and
// only ever talks to 127.0.0.1, on the platform's ports (PORT_OFFSET applies).
const { setTimeout: sleep } = require('node:timers/promises')
const config = require('./lib/config')

const LIMITS = { requests: [1, 20_000], duration: [1, 300], clients: [1, 50], rate: [0.1, 50], burst: [0, 500] }
const options = { requests: 600, duration: 30, clients: 4, rate: 8, burst: 60, chaos: false, progress: process.stderr.isTTY }

for (const arg of process.argv.slice(2)) {
  const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
  if (match === null) fail(`unknown argument ${arg}`)
  const [, name, value] = match
  if (name === 'help') {
    console.log('usage: npm run load [-- --requests=N --duration=SECONDS --clients=N --rate=PER_SECOND --burst=N --chaos --no-progress]')
    process.exit(0)
  } else if (name === 'chaos' && value === undefined) options.chaos = true
  else if (name === 'no-progress' && value === undefined) options.progress = false
  else if (name in LIMITS && value !== undefined) {
    const n = Number(value)
    const [min, max] = LIMITS[name]
    if (!(n >= min && n <= max)) fail(`--${name} must be a number from ${min} to ${max}, received ${value}`)
    options[name] = name === 'rate' ? n : Math.round(n)
  } else fail(`unknown argument ${arg}`)
}

function fail(message) {
  console.error(`load: ${message}; try --help`)
  process.exit(2)
}

/** Only ever 127.0.0.1: whatever HOST the services listen on, the driver stays on this machine. */
const url = (service) => `http://127.0.0.1:${config.portOf(service)}`
const GATEWAY = url('web-server')

// -- what the clients ask for ---------------------------------------------------------------------

const pick = (list) => list[Math.floor(Math.random() * list.length)]
const team = () => 1 + Math.floor(Math.random() * 8)
const COMMON_CURRENCIES = ['EUR', 'GBP', 'JPY', 'CHF', 'CAD', 'AUD']
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'
/** Mostly common currencies (cache hits), sometimes a rare one (a miss: a provider call). */
const currency = () => (Math.random() < 0.75 ? pick(COMMON_CURRENCIES) : Array.from({ length: 3 }, () => pick(LETTERS)).join(''))
const json = (body) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

/** [weight, route label, () => [path, init?]] */
const MIX = [
  [14, 'dashboard', () => [`/api/dashboard/${team()}`]],
  [20, 'reports summary', () => [`/api/reports/teams/${team()}/summary`]],
  [5, 'reports activity (N+1)', () => [`/api/reports/teams/${team()}/activity`]],
  [5, 'reports activity batched', () => [`/api/reports/teams/${team()}/activity/batched`]],
  [2, 'reports new activity', () => {
    // a member of a team seen in a report so far (member 1 is in team 1 until one is seen)
    const seen = [...members.keys()]
    const t = seen.length > 0 ? pick(seen) : 1
    return [`/api/reports/teams/${t}/activities`, json({ memberId: seen.length > 0 ? pick(members.get(t)) : 1, kind: 'course', minutes: 30 })]
  }],
  [10, 'budget', () => [`/api/budget/budgets/${team()}?currency=${pick(['USD', ...COMMON_CURRENCIES])}`]],
  [3, 'budget all teams', () => ['/api/budget/budgets']],
  [10, 'budget rates', () => [`/api/budget/providers/rates/${currency()}`]],
  [2, 'budget new expense', () => [`/api/budget/budgets/${team()}/expenses`, json({ category: pick(['compute', 'storage', 'training', 'travel']), amountCents: 100 + Math.floor(Math.random() * 9900), note: 'load' })]],
  [5, 'training', () => [pick(['/api/training/courses', '/api/training/courses?level=advanced', `/api/training/courses/${1 + Math.floor(Math.random() * 6)}`])]],
  [3, 'meta', () => [pick(['/api/meta/services', '/api/meta/version'])]],
  [5, 'coach', () => [pick(['/api/coach/tips?topic=limits', '/api/coach/tips?topic=tracing', '/api/coach/tips/random'])]],
  [5, 'segmentation', () => ['/api/segmentation/segments/evaluate', json({ plan: pick(['trial', 'pro', 'enterprise']), seats: Math.floor(Math.random() * 100), country: pick(['DE', 'US', 'FR', 'JP']) })]],
  [5, 'capabilities', () => [`/api/capabilities/capabilities?plan=${pick(['trial', 'pro', 'enterprise'])}`]],
]
const TOTAL_WEIGHT = MIX.reduce((sum, [w]) => sum + w, 0)
/** Member ids by team id, learned from the reports the clients receive. */
const members = new Map()

function nextRequest() {
  let r = Math.random() * TOTAL_WEIGHT
  for (const [weight, label, make] of MIX) {
    r -= weight
    if (r < 0) return [label, ...make()]
  }
  return [MIX[0][1], ...MIX[0][2]()]
}

// -- the run ------------------------------------------------------------------------------------

const results = [] // { client, label, status, ms, at, retryAfter }
let sent = 0
let startedAt = 0
let stopAt = 0
let burstWindow = null // [start, end] in ms since start

function budgetLeft() {
  return sent < options.requests && performance.now() < stopAt
}

async function send(client, label, path, init = {}) {
  sent++
  const started = performance.now()
  let status = 0
  let retryAfter = null
  try {
    const response = await fetch(GATEWAY + path, { ...init, headers: { ...init.headers, 'x-api-key': client }, signal: AbortSignal.timeout(15_000) })
    status = response.status
    retryAfter = response.headers.get('retry-after')
    const body = await response.arrayBuffer()
    if (status === 200 && (label === 'reports summary' || label === 'dashboard')) {
      const parsed = JSON.parse(Buffer.from(body).toString())
      const report = label === 'dashboard' ? parsed.report && parsed.report.body : parsed
      if (report && report.team) members.set(report.team.id, report.members.map((m) => m.id))
    }
  } catch {
    status = 0 // no answer: refused, reset or timed out
  }
  const end = performance.now()
  results.push({ client, label, status, ms: end - started, at: started - startedAt, end: end - startedAt, retryAfter })
}

/** A normal client: one request every 1/rate s (with jitter), until the run's budget is spent. */
async function normalClient(name) {
  const interval = 1000 / options.rate
  let next = performance.now() + Math.random() * interval
  while (budgetLeft()) {
    const wait = next - performance.now()
    if (wait > 0) await sleep(wait)
    if (!budgetLeft()) break
    const [label, path, init] = nextRequest()
    await send(name, label, path, init)
    next += interval * (0.5 + Math.random())
  }
}

/** The burst: `burst` requests at once from one client, a third of the way into the run. */
async function burstClient() {
  if (options.burst === 0) return
  const at = Math.min(options.duration * 1000 / 3, (options.requests / 3) / (options.clients * options.rate) * 1000)
  await sleep(at)
  if (!budgetLeft()) return
  const start = performance.now() - startedAt
  const count = Math.min(options.burst, options.requests - sent)
  progressNote(`${(start / 1000).toFixed(1)} s: burst-client sends ${count} requests at once`)
  await Promise.all(Array.from({ length: count }, () => send('burst-client', 'burst', `/api/reports/teams/${team()}/summary`)))
  burstWindow = [start, performance.now() - startedAt]
}

/** With --chaos: budget's provider fails every call from 40% to 55% of the run's duration. */
async function chaos() {
  if (!options.chaos) return
  const expected = Math.min(options.duration, options.requests / (options.clients * options.rate)) * 1000
  await sleep(expected * 0.4)
  if (!budgetLeft()) return
  await setProviderFailure(1)
  // a client asking for rare currencies (cache misses, so provider calls) while it fails
  const until = performance.now() + expected * 0.15
  while (performance.now() < until && budgetLeft()) {
    await send('chaos-client', 'budget rates', `/api/budget/providers/rates/${Array.from({ length: 3 }, () => pick(LETTERS)).join('')}`)
    await sleep(200)
  }
  await setProviderFailure(0)
}

/** Notes the breaker's state changes while the run lasts (budget's admin endpoint says the state). */
async function watchBreaker() {
  let last = null
  while (budgetLeft()) {
    try {
      const response = await fetch(`${url('budget-server')}/api/v1/admin/provider-failure`, { signal: AbortSignal.timeout(2000) })
      const { breaker } = await response.json()
      if (last !== null && breaker !== last) progressNote(`${((performance.now() - startedAt) / 1000).toFixed(1)} s: budget-server's rates-provider breaker ${last} -> ${breaker}`)
      last = breaker
    } catch {}
    await sleep(250)
  }
}

let failureInjected = false
async function setProviderFailure(rate) {
  failureInjected = rate > 0
  const response = await fetch(`${url('budget-server')}/api/v1/admin/provider-failure`, json({ rate })).catch((error) => ({ ok: false, status: error.message }))
  if (!response.ok) console.error(`load: could not set the provider failure rate (${response.status})`)
  else progressNote(`${((performance.now() - startedAt) / 1000).toFixed(1)} s: ${rate > 0 ? 'chaos: budget-server\'s provider now fails every call' : 'chaos: the provider is back'}`)
}

// -- progress -------------------------------------------------------------------------------------

const notes = []
function progressNote(note) {
  notes.push(note)
  if (!options.progress) console.error(`load: ${note}`)
}

function progressLine() {
  const elapsed = (performance.now() - startedAt) / 1000
  const done = Math.max(sent / options.requests, elapsed / options.duration)
  const fraction = Math.min(1, done)
  const width = 30
  const filled = Math.round(fraction * width)
  const ok = results.filter((r) => r.status >= 200 && r.status < 400).length
  const limited = results.filter((r) => r.status === 429).length
  const failed = results.filter((r) => r.status === 0 || r.status >= 500).length
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}%  ${sent}/${options.requests} requests  ${elapsed.toFixed(1)}/${options.duration} s  ok ${ok}  429 ${limited}  failed ${failed}`
}

function startProgress() {
  let lastDecile = -1
  let shownNotes = 0
  const timer = setInterval(() => {
    if (options.progress) {
      while (shownNotes < notes.length) process.stderr.write(`\r\x1b[K${notes[shownNotes++]}\n`)
      process.stderr.write(`\r\x1b[K${progressLine()}`)
    } else {
      const decile = Math.floor(Math.min(1, Math.max(sent / options.requests, (performance.now() - startedAt) / 1000 / options.duration)) * 10)
      if (decile > lastDecile) {
        lastDecile = decile
        console.error(progressLine())
      }
    }
  }, 200)
  return () => {
    clearInterval(timer)
    if (options.progress) process.stderr.write(`\r\x1b[K${progressLine()}\n`)
    else console.error(progressLine())
  }
}

// -- the summary ----------------------------------------------------------------------------------

function table(title, header, rows) {
  const all = [header, ...rows].map((r) => r.map((cell) => String(cell)))
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)))
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || /^[\d.,%x-]+( ms)?$/.test(String(r[i]))))
  const line = (r) => '  ' + r.map((cell, i) => (numeric[i] ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ').trimEnd()
  return [title, line(all[0]), ...all.slice(1).map(line), ''].join('\n')
}

const ms = (value) => (value === undefined || value === null || Number.isNaN(value) ? '-' : value < 10 ? value.toFixed(2) : value.toFixed(1))
const percent = (value) => (Number.isFinite(value) ? `${(value * 100).toFixed(1)}%` : '-')

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]
}

async function snapshots() {
  const out = {}
  await Promise.all(config.SERVICES.map(async (s) => {
    try {
      const response = await fetch(`${url(s.name)}/api/v1/system/observability`, { signal: AbortSignal.timeout(5000) })
      out[s.name] = response.ok ? await response.json() : null
    } catch {
      out[s.name] = null
    }
  }))
  return out
}

function summary(snaps, seconds) {
  const sections = []
  const clients = [...new Set(results.map((r) => r.client))].sort((a, b) => (a.startsWith('client-') === b.startsWith('client-') ? a.localeCompare(b, 'en', { numeric: true }) : a.startsWith('client-') ? -1 : 1))
  sections.push(`bulwark load summary: ${results.length} requests in ${seconds.toFixed(1)} s (${(results.length / seconds).toFixed(1)}/s) from ${clients.length} clients to ${GATEWAY}\n`)

  const byStatus = new Map()
  for (const r of results) byStatus.set(r.status, (byStatus.get(r.status) || 0) + 1)
  sections.push(table('Requests by status', ['status', 'requests', 'share'],
    [...byStatus].sort((a, b) => a[0] - b[0]).map(([status, n]) => [status === 0 ? 'no answer' : status, n, percent(n / results.length)])))

  const inBurst = (r) => burstWindow !== null && r.at < burstWindow[1] && r.end > burstWindow[0]
  const retryAfters = results.filter((r) => r.status === 429 && r.retryAfter !== null).map((r) => Number(r.retryAfter))
  sections.push(table('Clients (the gateway limits each API key: 20 at once, then 10 a second)',
    ['client', 'sent', '2xx', '429', 'other', 'during the burst: 2xx / 429'],
    clients.map((c) => {
      const mine = results.filter((r) => r.client === c)
      const during = mine.filter(inBurst)
      return [c, mine.length, mine.filter((r) => r.status >= 200 && r.status < 300).length, mine.filter((r) => r.status === 429).length,
        mine.filter((r) => r.status < 200 || (r.status >= 300 && r.status !== 429)).length,
        burstWindow === null ? '-' : `${during.filter((r) => r.status >= 200 && r.status < 300).length} / ${during.filter((r) => r.status === 429).length}`]
    })) + (retryAfters.length > 0 ? `  Retry-After on the 429s: ${Math.min(...retryAfters)} to ${Math.max(...retryAfters)} s\n` : ''))

  const groups = [['all requests', results.filter((r) => r.status !== 0)], ...[...new Set(results.map((r) => r.label))].sort().map((label) => [label, results.filter((r) => r.label === label && r.status !== 0)])]
  sections.push(table('Latency at the client (ms)', ['requests', 'count', 'p50', 'p95', 'p99', 'max'],
    groups.filter(([, rs]) => rs.length > 0).map(([label, rs]) => {
      const sorted = rs.map((r) => r.ms).sort((a, b) => a - b)
      return [label, sorted.length, ms(percentile(sorted, 0.5)), ms(percentile(sorted, 0.95)), ms(percentile(sorted, 0.99)), ms(sorted[sorted.length - 1])]
    })))

  // the same requests as the gateway saw them: its server spans' metrics (every span counts, sampled or not)
  const gatewaySpans = snaps['web-server'] && snaps['web-server'].tracer.tracer ? snaps['web-server'].tracer.tracer.spans : {}
  const serverRoutes = Object.entries(gatewaySpans).filter(([name]) => / \/api\//.test(name)).sort((a, b) => b[1].count - a[1].count)
  sections.push(table('Latency at the gateway (ms, its server spans since it started)', ['span', 'count', 'errors', 'p50', 'p95', 'p99', 'max'],
    serverRoutes.map(([name, m]) => [name, m.count, m.errors, ms(m.p50Ms), ms(m.p95Ms), ms(m.p99Ms), ms(m.maxMs)])))

  const missing = Object.entries(snaps).filter(([, s]) => s === null).map(([name]) => name)
  const limiterRows = []
  const cacheRows = []
  const breakerRows = []
  const findings = []
  const statements = []
  for (const [service, snap] of Object.entries(snaps)) {
    if (snap === null) continue
    for (const [name, s] of Object.entries(snap.rateLimiter || {})) limiterRows.push([`${service} ${name}`, s.allowed, s.rejected, s.keys])
    for (const [name, s] of Object.entries(snap.cache || {})) cacheRows.push([`${service} ${name}`, s.hits, s.misses, percent(s.hitRate), s.disk ? s.disk.hits : 0, s.entries, s.loads.errors])
    for (const [name, s] of Object.entries(snap.circuitBreakers || {})) breakerRows.push([`${service} ${name}`, s.state, s.calls, s.failures, s.rejected, percent(s.failureRate)])
    for (const f of (snap.queries && snap.queries.nPlusOne) || []) findings.push({ service, ...f })
    for (const q of (snap.queries && snap.queries.top) || []) statements.push({ service, ...q })
  }
  sections.push(table('Rate limiters (from the services\' snapshots, since they started)', ['limiter', 'allowed', 'rejected', 'keys'], limiterRows))
  sections.push(table('Caches', ['cache', 'hits', 'misses', 'hit rate', 'disk hits', 'entries', 'load errors'], cacheRows))
  sections.push(table('Circuit breakers', ['breaker', 'state', 'calls', 'failures', 'rejected', 'failure rate'], breakerRows))

  // N+1: the statements with findings (each finding is one trace that ran it threshold times or more)
  const byStatement = new Map()
  for (const q of statements) if (q.nPlusOne > 0) byStatement.set(`${q.service} ${q.fingerprint}`, { service: q.service, normalized: q.normalized, traces: q.nPlusOne, worst: 0 })
  for (const f of findings) {
    const entry = byStatement.get(`${f.service} ${f.fingerprint}`)
    if (entry !== undefined) entry.worst = Math.max(entry.worst, f.count)
  }
  const shorten = (sql, n = 90) => (sql.length > n ? sql.slice(0, n - 1) + '…' : sql)
  sections.push(byStatement.size === 0
    ? 'N+1 findings\n  none\n'
    : table('N+1 findings (traces that ran one statement 5 times or more)', ['service', 'traces', 'most runs in one trace', 'statement'],
      [...byStatement.values()].map((e) => [e.service, e.traces, e.worst > 0 ? `x${e.worst}` : '-', shorten(e.normalized, 120)])) +
      `  suggestion: ${findings.length > 0 ? findings[findings.length - 1].suggestion : ''}\n`)

  statements.sort((a, b) => b.p95Ms - a.p95Ms)
  sections.push(table('Slowest statements (by p95)', ['service', 'calls', 'p50 ms', 'p95 ms', 'total ms', 'statement'],
    statements.slice(0, 6).map((q) => [q.service, q.calls, ms(q.p50Ms), ms(q.p95Ms), ms(q.totalMs), shorten(q.normalized, 70)])))

  if (missing.length > 0) sections.push(`(no snapshot from ${missing.join(', ')})\n`)
  if (notes.length > 0) sections.push(`Notes\n${notes.map((n) => `  ${n}`).join('\n')}\n`)
  return sections.join('\n')
}

async function main() {
  try {
    const health = await fetch(`${GATEWAY}/healthz`, { signal: AbortSignal.timeout(3000) })
    if (!health.ok) throw new Error(`healthz answered ${health.status}`)
  } catch (error) {
    console.error(`load: no platform answers at ${GATEWAY} (${error.cause ? error.cause.code || error.cause.message : error.message}).\nStart it first with \`npm start\` in another terminal${config.portOffset ? ` (with PORT_OFFSET=${config.portOffset})` : ''}.`)
    process.exit(1)
  }
  console.error(`load: up to ${options.requests} requests in up to ${options.duration} s against ${GATEWAY}: ${options.clients} clients at ${options.rate}/s each` +
    (options.burst > 0 ? `, a burst of ${options.burst} from one more` : '') + (options.chaos ? ', provider failures in the middle' : ''))
  startedAt = performance.now()
  stopAt = startedAt + options.duration * 1000
  const stopProgress = startProgress()
  const interrupted = new Promise((resolve) => process.once('SIGINT', () => {
    progressNote('interrupted: summary of what was sent')
    stopAt = 0
    resolve()
  }))
  await Promise.race([
    Promise.all([...Array.from({ length: options.clients }, (_, i) => normalClient(`client-${i + 1}`)), burstClient(), chaos(), watchBreaker()]),
    interrupted.then(() => sleep(1000)),
  ])
  if (failureInjected) await setProviderFailure(0)
  stopProgress()
  const seconds = (performance.now() - startedAt) / 1000
  process.stdout.write('\n' + summary(await snapshots(), seconds))
  process.exit(0)
}

main().catch((error) => {
  console.error(`load: ${error.stack || error}`)
  process.exit(1)
})
