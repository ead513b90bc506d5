'use strict'
// examples/gateway runs as a user would run it: child processes that resolve `bulwark` and
// `bulwark/express` by package name. The gateway answers with the rate-limit headers, carries a
// trace to the greeting backend (one trace id in the console-exported spans of both), and both
// exit 0 on SIGINT or SIGTERM, the backend it started included.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { once } = require('node:events')
const net = require('node:net')
const path = require('node:path')

const root = path.join(__dirname, '..')
const server = path.join(root, 'examples', 'gateway', 'server.js')
const backendScript = path.join(root, 'examples', 'gateway', 'backend.js')
/** Children still running, each with whether it leads a process group of its own. */
const children = new Map()

after(() => {
  for (const [child, detached] of children) {
    // a detached child leads its own process group: take the backend it started along
    try {
      process.kill(detached ? -child.pid : child.pid, 'SIGKILL')
    } catch {}
  }
})

/** A port nobody listens on now: the OS picks it for a listener that is closed at once. */
async function freePort() {
  const probe = net.createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address()
  probe.close()
  await once(probe, 'close')
  return port
}

/**
 * Starts `script` with `env` and resolves with the child and its base URL once its stdout says
 * `<name> listening on <url>`.
 */
async function startService(script, name, env, { detached = false } = {}) {
  const child = spawn(process.execPath, [script], {
    cwd: root,
    // spans go to stdout (the console exporter) and are exported 50 ms after they end
    env: { ...process.env, TRACE_EXPORT: 'console', TRACE_DELAY_MS: '50', BACKEND_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  })
  children.set(child, detached)
  child.on('exit', () => children.delete(child))
  let stdout = ''
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk))
  const pattern = new RegExp(`bulwark ${name} listening on (http:\\/\\/127\\.0\\.0\\.1:(\\d+))`)
  const base = await new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      stdout += chunk
      const match = pattern.exec(stdout)
      if (match) resolve(match[1])
    })
    child.once('exit', (code, signal) => reject(new Error(`the ${name} exited (${code ?? signal}) before listening:\n${stdout}${stderr}`)))
  })
  return { child, base, stdout: () => stdout, output: () => stdout + stderr }
}

/** Starts the gateway (which starts its own backend unless env.BACKEND_URL is given). */
async function startGateway(env = {}, options) {
  const port = await freePort()
  const gateway = await startService(server, 'gateway', { PORT: String(port), ...env }, options)
  assert.equal(gateway.base, `http://127.0.0.1:${port}`)
  return gateway
}

/** Sends `signal` and resolves with the exit code; fails if the child is still up after 5 s. */
async function stop(child, signal, { group = false } = {}) {
  const exited = child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve([child.exitCode, child.signalCode])
    : once(child, 'exit')
  if (group) process.kill(-child.pid, signal)
  else child.kill(signal)
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the process did not exit within 5 s of ${signal}`)), 5000)
  })
  try {
    const [code, killedBy] = await Promise.race([exited, timeout])
    return { code, signal: killedBy }
  } finally {
    clearTimeout(timer)
  }
}

/**
 * The console exporter's spans in some output: one JSON object per line (`prefix` before it
 * when the line was copied from the backend by the gateway). Other lines are skipped.
 */
function spansIn(output, prefix = '') {
  const spans = []
  for (const line of output.split('\n')) {
    if (!line.startsWith(prefix + '{')) continue
    const span = JSON.parse(line.slice(prefix.length))
    if (typeof span.traceId === 'string' && typeof span.spanId === 'string') spans.push(span)
  }
  return spans
}

/** The one span of `spans` with this kind and name; fails unless there is exactly one. */
function only(spans, kind, name) {
  const found = spans.filter((span) => span.kind === kind && span.name === name)
  assert.equal(found.length, 1, `one ${kind} span "${name}" in ${JSON.stringify(spans, null, 1)}`)
  return found[0]
}

/** Whether a process with this pid exists (a reaped child does not). */
function alive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    if (error.code === 'ESRCH') return false
    throw error
  }
}

/**
 * Checks the spans one /api/greeting request left: the gateway's server span (parented on the
 * incoming traceparent, when there is one), its client span for tracer.fetch, the backend's
 * server span (child of that client span) and its 'compose greeting' span, all of one trace.
 * Returns the trace id.
 */
function assertOneTrace(gatewaySpans, backendSpans, incoming) {
  const gatewayServer = only(gatewaySpans, 'server', 'GET /api/greeting')
  const gatewayClient = only(gatewaySpans, 'client', 'GET')
  const backendServer = only(backendSpans, 'server', 'GET /api/greeting')
  const compose = only(backendSpans, 'internal', 'compose greeting')
  const traceId = incoming ? incoming.traceId : gatewayServer.traceId
  for (const span of [gatewayServer, gatewayClient, backendServer, compose]) {
    assert.equal(span.traceId, traceId, `span ${span.name} (${span.kind}) is in trace ${traceId}`)
  }
  if (incoming) assert.equal(gatewayServer.parentSpanId, incoming.spanId)
  else assert.equal(gatewayServer.parentSpanId, null)
  assert.equal(gatewayClient.parentSpanId, gatewayServer.spanId, "the gateway's server span is the parent of its client span")
  assert.equal(backendServer.parentSpanId, gatewayClient.spanId, "the backend's server span is a child of the gateway's client span")
  assert.equal(compose.parentSpanId, backendServer.spanId)
  return traceId
}

test('the gateway answers /api/hello with the draft-8 headers and stops on SIGINT', async () => {
  const { child, base, output } = await startGateway()

  const hello = await fetch(`${base}/api/hello`)
  assert.equal(hello.status, 200, output())
  assert.deepEqual(await hello.json(), { hello: 'world' })
  assert.match(hello.headers.get('ratelimit-policy'), /^"gateway";q=20(;w=2)?$/)
  assert.match(hello.headers.get('ratelimit'), /^"gateway";r=19;t=\d+$/)

  const root = await fetch(`${base}/`)
  assert.equal(root.status, 200)
  assert.ok(root.headers.has('ratelimit'))

  const stats = await fetch(`${base}/api/limiter/stats`)
  assert.equal(stats.status, 200)
  const body = await stats.json()
  assert.equal(body.allowed, 2)
  assert.equal(body.keys, 1)
  assert.equal(stats.headers.has('ratelimit'), false)

  assert.deepEqual(await stop(child, 'SIGINT'), { code: 0, signal: null })
  assert.match(output(), /SIGINT, closing/)
})

test('the gateway stops on SIGTERM with exit code 0', async () => {
  const { child, base } = await startGateway()
  assert.equal((await fetch(`${base}/api/hello?name=bulwark`)).status, 200)
  assert.deepEqual(await stop(child, 'SIGTERM'), { code: 0, signal: null })
})

test('a traced request through the gateway to a separate backend is one trace in the spans of both processes', async () => {
  const backend = await startService(backendScript, 'backend', { PORT: String(await freePort()) })
  const gateway = await startGateway({ BACKEND_URL: backend.base })

  const incoming = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }
  const response = await fetch(`${gateway.base}/api/greeting?name=Ada`, {
    headers: { traceparent: `00-${incoming.traceId}-${incoming.spanId}-01` },
  })
  assert.equal(response.status, 200, gateway.output() + backend.output())
  assert.match(response.headers.get('ratelimit'), /^"gateway";r=19;t=\d+$/)
  assert.deepEqual(await response.json(), {
    traceId: incoming.traceId,
    backend: { service: 'backend', greeting: 'Hello, Ada!', traceId: incoming.traceId },
  })

  // shutdown flushes what the 50 ms batch delay has not exported yet
  assert.deepEqual(await stop(gateway.child, 'SIGTERM'), { code: 0, signal: null })
  assert.deepEqual(await stop(backend.child, 'SIGTERM'), { code: 0, signal: null })

  const gatewaySpans = spansIn(gateway.stdout())
  const backendSpans = spansIn(backend.stdout())
  assert.equal(gatewaySpans.length, 2, gateway.stdout())
  assert.equal(backendSpans.length, 2, backend.stdout())
  assertOneTrace(gatewaySpans, backendSpans, incoming)
})

test('one command: the gateway starts the backend itself, carries the trace to it, and SIGTERM stops both', async () => {
  const gateway = await startGateway()
  const match = /backend \| bulwark backend listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(gateway.stdout())
  assert.ok(match, gateway.output())
  const backendBase = match[1]
  assert.match(gateway.stdout(), new RegExp(`\\(backend ${backendBase}\\)`))

  // no incoming traceparent: the gateway starts the trace
  const response = await fetch(`${gateway.base}/api/greeting`)
  assert.equal(response.status, 200, gateway.output())
  const body = await response.json()
  assert.match(body.traceId, /^[0-9a-f]{32}$/)
  assert.deepEqual(body.backend, { service: 'backend', greeting: 'Hello, world!', traceId: body.traceId })

  const pid = /bulwark gateway: started the backend \(pid (\d+)\) on /.exec(gateway.stdout())
  assert.ok(pid, gateway.output())
  const backendPid = Number(pid[1])
  assert.equal(alive(backendPid), true)

  assert.deepEqual(await stop(gateway.child, 'SIGTERM'), { code: 0, signal: null })
  assert.match(gateway.output(), /bulwark gateway: SIGTERM, closing/)
  assert.match(gateway.output(), /backend \| bulwark backend: SIGTERM, closing/)
  // the gateway waited for its backend: it has exited and been reaped, no orphan is left
  assert.equal(alive(backendPid), false)
  await assert.rejects(fetch(`${backendBase}/api/greeting`))

  const traceId = assertOneTrace(spansIn(gateway.stdout()), spansIn(gateway.stdout(), 'backend | '), null)
  assert.equal(traceId, body.traceId)
})

test('one command: Ctrl-C (SIGINT to the process group) stops the gateway and its backend with exit code 0', async () => {
  // detached: the gateway leads a process group of its own, like a shell's foreground job
  const gateway = await startGateway({}, { detached: true })
  const response = await fetch(`${gateway.base}/api/greeting?name=group`)
  assert.equal(response.status, 200, gateway.output())
  assert.equal((await response.json()).backend.greeting, 'Hello, group!')

  assert.deepEqual(await stop(gateway.child, 'SIGINT', { group: true }), { code: 0, signal: null })
  assert.match(gateway.output(), /backend \| bulwark backend: SIGINT, closing/)
  // nothing of the group is left
  assert.throws(() => process.kill(-gateway.child.pid, 0), { code: 'ESRCH' })
  assertOneTrace(spansIn(gateway.stdout()), spansIn(gateway.stdout(), 'backend | '), null)
})

test('the backend stops by itself when the gateway that started it is killed', async () => {
  const gateway = await startGateway({}, { detached: true })
  const backendBase = /backend \| bulwark backend listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(gateway.stdout())[1]
  assert.equal((await fetch(`${backendBase}/api/greeting`)).status, 200)
  assert.deepEqual(await stop(gateway.child, 'SIGKILL'), { code: null, signal: 'SIGKILL' })
  // its IPC channel closed: the backend shuts down on its own and stops listening (whoever
  // reaps it now, it is no longer a running orphan)
  const deadline = Date.now() + 5000
  for (;;) {
    const answered = await fetch(`${backendBase}/api/greeting`).then(() => true, () => false)
    if (!answered) break
    assert.ok(Date.now() < deadline, 'the backend was still answering 5 s after the gateway was killed')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
})
