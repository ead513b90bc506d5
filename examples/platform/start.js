'use strict'
// `npm start`: the whole platform in one command. Starts each of the eight services as a
// process of its own, copies their output here (each line behind the service's name, spans as
// one readable line each), restarts a service that crashes (with backoff), prints a table of
// the services and their URLs once all listen, and on Ctrl-C or SIGTERM stops them all
// (each closes its server, caches and pools and flushes its spans) within 5 seconds.
//
//   node examples/platform/start.js [--quiet] [--spans=pretty|json|off]
//
// --quiet (or --spans=off, or PLATFORM_SPANS=off) silences the spans; --spans=json shows the
// console exporter's JSON lines as they are. See lib/config.js for the environment.
const { spawn } = require('node:child_process')
const path = require('node:path')
const readline = require('node:readline')

const args = process.argv.slice(2)
for (const arg of args) {
  if (arg === '--help' || arg === '-h') {
    console.log('usage: npm start [-- --quiet | --spans=pretty|json|off]\nenvironment: PORT_OFFSET, HOST, DATABASE_URL, REDIS_URL, PLATFORM_DATA_DIR, PLATFORM_SPANS, OTEL_EXPORTER_OTLP_ENDPOINT, PROVIDER_FAILURE_RATE, BREAKER_OPEN_MS')
    process.exit(0)
  } else if (arg === '--quiet') {
    process.env.PLATFORM_SPANS = 'off'
  } else if (arg.startsWith('--spans=')) {
    process.env.PLATFORM_SPANS = arg.slice('--spans='.length)
  } else {
    console.error(`unknown argument ${arg}; try --help`)
    process.exit(2)
  }
}

const config = require('./lib/config')
const { shown } = require('./lib/db')

const STOP_DEADLINE_MS = 4500
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000]
/** A service that stayed up this long has its backoff reset. */
const HEALTHY_AFTER_MS = 10_000
/** A service that never listened gets this many tries before the platform gives up. */
const FIRST_START_TRIES = 3
const WIDTH = Math.max(...config.SERVICES.map((s) => s.name.length), 'supervisor'.length)

const tty = process.stdout.isTTY
const dim = (text) => (tty ? `\x1b[2m${text}\x1b[22m` : text)
const bold = (text) => (tty ? `\x1b[1m${text}\x1b[22m` : text)

function out(name, line) {
  process.stdout.write(`${dim(name.padEnd(WIDTH) + ' |')} ${line}\n`)
}
function say(line) {
  out('supervisor', line)
}

/** One span of the console exporter as one line: kind, name, status, duration, ids. */
function prettySpan(span) {
  const a = span.attributes || {}
  let what = span.name
  if (a['db.query.text']) what = String(a['db.query.text']).slice(0, 80)
  else if (span.kind === 'client' && a['url.full']) what += ` ${a['url.full']}`
  const status = a['http.response.status_code'] !== undefined ? ` ${a['http.response.status_code']}` : ''
  const error = span.status && span.status.code === 'error' ? ` ERROR${span.status.message ? ` ${span.status.message}` : ''}` : ''
  const ms = typeof span.durationMs === 'number' ? `${span.durationMs.toFixed(1)} ms` : ''
  const parent = span.parentSpanId ? ` parent ${span.parentSpanId.slice(0, 8)}` : ''
  return dim(`span ${span.kind.padEnd(8)}`) + ` ${what}${status}${error} ${dim(`${ms} trace ${span.traceId.slice(0, 8)} span ${span.spanId.slice(0, 8)}${parent}`)}`
}

/** Copies a child's output lines here, behind its name; console spans made readable. */
function copyLines(stream, name, to) {
  readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
    if (line.startsWith('{') && config.spans === 'pretty') {
      try {
        const span = JSON.parse(line)
        if (typeof span.traceId === 'string' && typeof span.spanId === 'string') return out(name, prettySpan(span))
      } catch {}
    }
    const text = line.startsWith(`${name}: `) ? line.slice(name.length + 2) : line
    if (to === process.stderr) process.stderr.write(`${name.padEnd(WIDTH)} | ${text}\n`)
    else out(name, text)
  })
}

/** Per service: its child, state and restart bookkeeping. */
const services = config.SERVICES.map((s) => ({
  ...s,
  child: null,
  url: null,
  pid: null,
  listenedOnce: false,
  startedAt: 0,
  failures: 0,
  restartTimer: null,
  exited: null,
}))

let stopping = false
let announced = false

function launch(service) {
  service.restartTimer = null
  service.startedAt = Date.now()
  const child = spawn(process.execPath, [path.join(__dirname, service.script)], {
    env: process.env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  service.child = child
  service.pid = child.pid
  service.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  copyLines(child.stdout, service.name, process.stdout)
  copyLines(child.stderr, service.name, process.stderr)
  child.on('message', (message) => {
    if (!message || typeof message.listening !== 'string') return
    const again = service.listenedOnce
    service.url = message.listening
    service.listenedOnce = true
    if (again) say(`${service.name} is back (pid ${child.pid}) on ${service.url}`)
    announce()
  })
  child.on('error', (error) => say(`${service.name}: ${error.message}`))
  service.exited.then(({ code, signal }) => {
    if (service.child === child) service.child = null
    if (stopping) return
    const upMs = Date.now() - service.startedAt
    if (upMs >= HEALTHY_AFTER_MS) service.failures = 0
    service.failures++
    if (!service.listenedOnce && service.failures >= FIRST_START_TRIES) {
      say(`${service.name} exited (${signal || `code ${code}`}) ${service.failures} times without ever listening; stopping the platform`)
      stop('a service cannot start', 1)
      return
    }
    const delay = BACKOFF_MS[Math.min(service.failures - 1, BACKOFF_MS.length - 1)]
    say(`${service.name} exited (${signal || `code ${code}`}) after ${(upMs / 1000).toFixed(1)} s; restarting in ${delay} ms`)
    service.restartTimer = setTimeout(() => launch(service), delay)
  })
}

/** Prints the table once every service has listened. */
function announce() {
  if (announced || stopping || !services.every((s) => s.listenedOnce)) return
  announced = true
  const rows = [['service', 'URL', 'pid', 'what it shows'], ...services.map((s) => [s.name, s.url, String(s.pid), s.blocks])]
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  const line = (r) => '  ' + r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()
  const gateway = services[0].url
  const storage = config.databaseUrl ? `PostgreSQL (${config.schemaPrefix}* schemas)` : `SQLite under ${shown(config.dataDir)}`
  const spans = config.otlp ? 'spans to the OTLP collector' : config.spans === 'off' ? 'spans silenced' : 'spans on the console (--quiet silences them)'
  process.stdout.write([
    '',
    bold(`  bulwark platform: ${services.length} services up`),
    `  ${storage}; ${config.redisUrl ? `limits and caches shared through Redis ${config.redisUrl}` : 'limiter and caches embedded'}; ${spans}`,
    '',
    bold(line(rows[0])),
    ...rows.slice(1).map(line),
    '',
    `  Open ${gateway}/ for the index, or try:`,
    `    curl ${gateway}/api/dashboard/2`,
    `    curl ${gateway}/api/reports/teams/3/summary`,
    `    curl ${services.find((s) => s.name === 'reports-server').url}/api/v1/system/observability`,
    '  Drive some load from another terminal with `npm run load`. Ctrl-C stops everything.',
    '',
  ].join('\n') + '\n')
}

/** Stops every service (SIGTERM, then SIGKILL at the deadline) and exits. */
async function stop(reason, exitCode = 0) {
  if (stopping) return
  stopping = true
  const started = Date.now()
  say(`${reason}: stopping ${services.filter((s) => s.child !== null).length} services`)
  for (const s of services) {
    if (s.restartTimer !== null) clearTimeout(s.restartTimer)
    // a service may have had the terminal's SIGINT already: a second signal does no harm
    if (s.child !== null) s.child.kill('SIGTERM')
  }
  const deadline = setTimeout(() => {
    for (const s of services) {
      if (s.child !== null) {
        say(`${s.name} did not stop within ${STOP_DEADLINE_MS} ms: SIGKILL`)
        s.child.kill('SIGKILL')
      }
    }
  }, STOP_DEADLINE_MS)
  const results = await Promise.all(services.map((s) => (s.exited === null ? { code: 0 } : s.exited)))
  clearTimeout(deadline)
  const unclean = services.filter((s, i) => results[i].code !== 0 && s.listenedOnce).map((s, i) => s.name)
  say(unclean.length === 0
    ? `stopped: every service exited cleanly in ${Date.now() - started} ms`
    : `stopped in ${Date.now() - started} ms; not cleanly: ${unclean.join(', ')}`)
  process.exit(unclean.length === 0 ? exitCode : 1)
}

process.on('SIGINT', () => stop('SIGINT'))
process.on('SIGTERM', () => stop('SIGTERM'))
process.stdout.on('error', () => {}) // a closed pipe (| head) must not crash the supervisor

say(`starting ${services.length} services${config.portOffset ? ` (PORT_OFFSET ${config.portOffset})` : ''}`)
for (const service of services) launch(service)
