'use strict'
// An Express gateway rate-limited and traced by bulwark, written the way a service using the
// package would write it. Run it with `node examples/gateway/server.js` (`PORT=8080` to move it).
//
// GET /api/greeting calls a second service, the greeting backend (backend.js), with
// `tracer.fetch`: the gateway's server span, its client span and the backend's spans share one
// trace id. Without BACKEND_URL the gateway starts the backend itself, as a child process that
// stops with it; with BACKEND_URL it calls the backend found there.
const { spawn } = require('node:child_process')
const path = require('node:path')
const readline = require('node:readline')
const express = require('express')
const { RateLimiter } = require('bulwark')
const { rateLimit, tracing } = require('bulwark/express')
const { createTracer } = require('./telemetry')

const port = process.env.PORT === undefined ? 3000 : Number(process.env.PORT)

// Spans go to stdout, to an OTLP collector or nowhere: see telemetry.js.
const tracer = createTracer('gateway')

// One limiter for the whole gateway: each client (by address, IPv6 by /56) may burst 20
// requests and then make 10 a second.
const limiter = new RateLimiter({ capacity: 20, refillPerSecond: 10 })
const limited = rateLimit({ limiter, headers: 'draft-8', policyName: 'gateway' })

/** The backend's base URL, and the child process when the gateway started it. */
let backendUrl = process.env.BACKEND_URL || undefined
let backend = null

const app = express()
app.disable('x-powered-by')
// One server span per request (refused ones too), parented on an incoming traceparent. The
// operator's stats endpoint is left out of the traces.
app.use(tracing({ tracer, ignore: (req) => req.path === '/api/limiter/stats' }))

app.get('/', limited, (req, res) => {
  res.json({ service: 'bulwark gateway', hello: 'world' })
})

app.get('/api/hello', limited, (req, res) => {
  res.json({ hello: req.query.name || 'world' })
})

// Calls the backend inside the request's server span: tracer.fetch makes a client span (its
// child) and sends that span's traceparent, so the backend's spans join the same trace.
app.get('/api/greeting', limited, async (req, res) => {
  const url = new URL(`${backendUrl.replace(/\/+$/, '')}/api/greeting`)
  if (typeof req.query.name === 'string') url.searchParams.set('name', req.query.name)
  const traceId = tracer.currentTraceId()
  let response
  try {
    response = await tracer.fetch(url, { signal: AbortSignal.timeout(5000) })
  } catch (error) {
    // the client span has recorded the exception; the server span gets the 502
    res.status(502).json({ error: 'backend_unavailable', message: error.message, traceId })
    return
  }
  if (!response.ok) {
    await response.body?.cancel()
    res.status(502).json({ error: 'backend_error', status: response.status, traceId })
    return
  }
  res.json({ traceId, backend: await response.json() })
})

// Not rate-limited, so that an operator can always look.
app.get('/api/limiter/stats', (req, res) => {
  res.json(limiter.stats())
})

/** Copies a stream's lines to `out`, each behind `prefix`. */
function prefixLines(stream, out, prefix) {
  readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => out.write(prefix + line + '\n'))
}

/**
 * Starts backend.js as a child process on BACKEND_PORT (default 3001; 0 picks a free port) and
 * resolves once it listens. Its output is copied here, each line behind `backend | `.
 */
function startBackend() {
  const child = spawn(process.execPath, [path.join(__dirname, 'backend.js')], {
    env: { ...process.env, PORT: process.env.BACKEND_PORT || '3001' },
    // the IPC channel carries the "listening" message, and stops the backend if we die
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  prefixLines(child.stdout, process.stdout, 'backend | ')
  prefixLines(child.stderr, process.stderr, 'backend | ')
  const closed = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })))
  return new Promise((resolve, reject) => {
    child.on('message', (message) => {
      if (message && typeof message.listening === 'string') resolve({ child, url: message.listening, closed })
    })
    closed.then(({ code, signal }) => {
      reject(new Error(`the backend exited (${code ?? signal}) before listening`))
      if (!closing) console.error(`bulwark gateway: the backend exited (${code ?? signal}); /api/greeting will answer 502`)
    })
  })
}

let server
let closing = false

async function main() {
  if (backendUrl === undefined) {
    backend = await startBackend()
    backendUrl = backend.url
    console.log(`bulwark gateway: started the backend (pid ${backend.child.pid}) on ${backendUrl}`)
  }
  server = app.listen(port, '127.0.0.1', (error) => {
    if (error) throw error
    console.log(`bulwark gateway listening on http://127.0.0.1:${server.address().port} (backend ${backendUrl})`)
  })
}

/** Stops taking requests, lets the ones in flight finish, stops the backend, flushes the spans. */
async function shutdown(signal) {
  if (closing) return
  closing = true
  console.log(`bulwark gateway: ${signal}, closing`)
  if (server !== undefined) {
    const closed = new Promise((resolve) => server.close(resolve))
    // keep-alive connections would hold close() open; idle ones can go now, busy ones get 2 s
    server.closeIdleConnections()
    const force = setTimeout(() => server.closeAllConnections(), 2000)
    await closed
    clearTimeout(force)
  }
  limiter.close()
  const done = [tracer.shutdown(2000)] // exports the spans still queued
  if (backend !== null) {
    backend.child.kill('SIGTERM') // it may have had the terminal's SIGINT already: that is fine
    done.push(backend.closed)
  }
  await Promise.all(done)
  process.exit(0)
}

process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
// However this process ends, the backend it started does not outlive it (on SIGKILL, the
// backend sees its IPC channel close and stops itself).
process.on('exit', () => {
  if (backend !== null && backend.child.exitCode === null && backend.child.signalCode === null) backend.child.kill('SIGTERM')
})

main().catch((error) => {
  console.error(`bulwark gateway: ${error.message}`)
  process.exit(1)
})
