'use strict'
// bulwark/express: the tracing middleware on real Express apps with a 'memory' tracer. Every
// wait is on an event (the response's 'close', which follows the middleware's own listener),
// never on a timer.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const net = require('node:net')
const express = require('express')
const { DistributedTracer, codes } = require('..')
const { tracing } = require('../express.js')

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

const servers = []
after(() => {
  for (const server of servers) {
    server.closeAllConnections()
    server.close()
  }
})

function memoryTracer(options = {}) {
  return new DistributedTracer({ serviceName: 'test', exporter: 'memory', ...options })
}

/**
 * An app with `tracing(options)` first, then a recorder of each response's 'close' (registered
 * after the middleware's listener, so awaiting it means the span has ended), then `routes(app)`.
 */
async function serve(options, routes) {
  const closed = []
  const app = express()
  app.use(tracing(options))
  app.use((req, res, next) => {
    closed.push(once(res, 'close'))
    next()
  })
  routes(app)
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  servers.push(server)
  const port = server.address().port
  return {
    port,
    async get(path, headers = {}) {
      const response = await fetch(`http://127.0.0.1:${port}${path}`, { headers })
      await response.arrayBuffer()
      await Promise.all(closed)
      return response.status
    },
  }
}

async function finished(tracer) {
  assert.equal(await tracer.flush(), true)
  return tracer.finishedSpans()
}

function items(app) {
  app.get('/items/:id', (req, res) => res.json({ id: req.params.id }))
}

test('a request makes one server span named by its route, with the HTTP attributes', async () => {
  const tracer = memoryTracer()
  const { port, get } = await serve({ tracer }, items)
  assert.equal(await get('/items/42?x=1', { 'user-agent': 'bulwark-test' }), 200)
  const spans = await finished(tracer)
  assert.equal(spans.length, 1)
  const [span] = spans
  assert.equal(span.name, 'GET /items/:id')
  assert.equal(span.kind, 'server')
  assert.equal(span.parentSpanId, undefined)
  assert.deepEqual(span.attributes, {
    'http.request.method': 'GET',
    'url.path': '/items/42',
    'url.scheme': 'http',
    'server.port': port,
    'client.address': '127.0.0.1',
    'user_agent.original': 'bulwark-test',
    'http.route': '/items/:id',
    'http.response.status_code': 200,
  })
  assert.equal(span.status.code, 'unset')
})

test('a mounted router names the span with req.baseUrl and the route', async () => {
  const tracer = memoryTracer()
  const { get } = await serve({ tracer }, (app) => {
    const router = express.Router()
    items(router)
    app.use('/api', router)
  })
  assert.equal(await get('/api/items/7'), 200)
  const [span] = await finished(tracer)
  assert.equal(span.name, 'GET /api/items/:id')
  assert.equal(span.attributes['http.route'], '/api/items/:id')
  assert.equal(span.attributes['url.path'], '/api/items/7')
})

test('the server span is active in handlers: a span started after an await is its child', async () => {
  const tracer = memoryTracer()
  let reqSpan
  const { get } = await serve({ tracer }, (app) => {
    app.get('/items/:id', async (req, res) => {
      reqSpan = req.span
      await new Promise((resolve) => setImmediate(resolve))
      await Promise.resolve()
      tracer.startSpan('db.query').end()
      res.json({})
    })
  })
  assert.equal(await get('/items/1'), 200)
  const spans = await finished(tracer)
  const server = spans.find((s) => s.name === 'GET /items/:id')
  const child = spans.find((s) => s.name === 'db.query')
  assert.ok(server && child)
  assert.equal(reqSpan.spanId, server.spanId)
  assert.equal(child.traceId, server.traceId)
  assert.equal(child.parentSpanId, server.spanId)
})

test('an incoming traceparent makes the server span join that trace', async () => {
  const tracer = memoryTracer()
  const { get } = await serve({ tracer }, items)
  assert.equal(await get('/items/1', { traceparent: TP }), 200)
  const [span] = await finished(tracer)
  assert.equal(span.traceId, '4bf92f3577b34da6a3ce929d0e0e4736')
  assert.equal(span.parentSpanId, '00f067aa0ba902b7')
})

test('a 5xx response sets status error', async () => {
  const tracer = memoryTracer()
  const { get } = await serve({ tracer }, (app) => {
    app.get('/boom', () => {
      throw new Error('boom')
    })
    app.use((err, req, res, next) => res.status(500).json({ message: err.message }))
  })
  assert.equal(await get('/boom'), 500)
  const [span] = await finished(tracer)
  assert.equal(span.name, 'GET /boom')
  assert.deepEqual(span.status, { code: 'error', message: 'HTTP 500' })
  assert.equal(span.attributes['http.response.status_code'], 500)
})

test('an unknown route is named by the method alone, never the raw path', async () => {
  const tracer = memoryTracer()
  const { get } = await serve({ tracer }, items)
  assert.equal(await get('/nope/123'), 404)
  const [span] = await finished(tracer)
  assert.equal(span.name, 'GET')
  assert.equal(span.attributes['http.route'], undefined)
  assert.equal(span.attributes['http.response.status_code'], 404)
  assert.equal(span.status.code, 'unset')
})

test('ignore skips the span; spanName overrides the name', async () => {
  const tracer = memoryTracer()
  const { get } = await serve({ tracer, ignore: (req) => req.url === '/health' }, (app) => {
    app.get('/health', (req, res) => res.json({ span: req.span === undefined }))
    items(app)
  })
  assert.equal(await get('/health'), 200)
  assert.deepEqual(await finished(tracer), [])
  assert.equal(await get('/items/1'), 200)
  assert.equal((await finished(tracer)).length, 1)

  const named = memoryTracer()
  const other = await serve({ tracer: named, spanName: (req) => `custom ${req.method}` }, items)
  assert.equal(await other.get('/items/1'), 200)
  const [span] = await finished(named)
  assert.equal(span.name, 'custom GET')
  assert.equal(span.attributes['http.route'], '/items/:id')
})

test('callback throws go to next(err)', async () => {
  const tracer = memoryTracer()
  const handler = (app) => {
    items(app)
    app.use((err, req, res, next) => res.status(500).json({ message: err.message }))
  }
  const a = await serve({ tracer, ignore: () => { throw new Error('ignore failed') } }, handler)
  assert.equal(await a.get('/items/1'), 500)
  const b = await serve({ tracer, spanName: () => { throw new Error('name failed') } }, handler)
  assert.equal(await b.get('/items/1'), 500)
  assert.deepEqual(await finished(tracer), [])
})

test('an aborted request ends the span with status error "aborted"', async () => {
  const tracer = memoryTracer()
  let entered
  const inHandler = new Promise((resolve) => { entered = resolve })
  let release
  const released = new Promise((resolve) => { release = resolve })
  let abortSeen
  const { port } = await serve({ tracer }, (app) => {
    app.get('/items/:id', async (req, res) => {
      abortSeen = once(res, 'close')
      entered()
      await released
      if (!res.destroyed) res.json({})
    })
  })
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write('GET /items/9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await inHandler
  socket.destroy()
  await abortSeen // after the middleware's own 'close' listener
  const [span] = await finished(tracer)
  release()
  assert.equal(span.name, 'GET /items/:id')
  assert.deepEqual(span.status, { code: 'error', message: 'aborted' })
  assert.equal(span.attributes['http.response.status_code'], undefined)
})

test('bad options are refused with ERR_BULWARK_INVALID_OPTION', () => {
  const tracer = memoryTracer()
  const bad = [undefined, null, {}, { tracer: {} }, { tracer, unknown: 1 }, { tracer, ignore: true }, { tracer, spanName: 'x' }]
  for (const options of bad) {
    assert.throws(() => tracing(options), (error) => {
      assert.ok(error instanceof TypeError, String(error))
      assert.equal(error.code, codes.INVALID_OPTION)
      return true
    })
  }
  assert.throws(() => tracing({ tracer, skip: () => false }), /unknown option "skip"/)
})

test('sampleRate 0: nothing is exported, but metrics count the route name', async () => {
  const tracer = memoryTracer({ sampleRate: 0 })
  let sampled
  const { get } = await serve({ tracer }, (app) => {
    app.get('/items/:id', (req, res) => {
      sampled = req.span.sampled
      res.json({})
    })
  })
  assert.equal(await get('/items/1'), 200)
  assert.equal(sampled, false)
  assert.deepEqual(await finished(tracer), [])
  const metrics = tracer.metrics()
  assert.equal(metrics.unsampled, 1)
  assert.deepEqual(Object.entries(metrics.spans).map(([name, s]) => [name, s.count]), [['GET /items/:id', 1]])
})

test('req.span is the server span in Express handlers and on a plain node:http server, and stays one per request', async () => {
  const tracer = memoryTracer()
  const seen = []
  const { get } = await serve({ tracer }, (app) => {
    app.get('/a', async (req, res) => {
      await new Promise((resolve) => setImmediate(resolve))
      seen.push({ spanId: req.span.spanId, local: res.locals.span })
      res.send('a')
    })
  })
  await get('/a')
  await get('/a')
  const spans = await finished(tracer)
  assert.equal(spans.length, 2)
  assert.deepEqual(seen.map((s) => s.spanId).sort(), spans.map((s) => s.spanId).sort())
  assert.equal(seen[0].local, undefined, 'res.locals gains no visible key')

  // without Express: the middleware on node:http's own request and response
  const plainTracer = memoryTracer()
  const middleware = tracing({ tracer: plainTracer })
  const http = require('node:http')
  const plainSeen = []
  let plainClosed
  const server = http.createServer((req, res) => {
    middleware(req, res, () => {
      plainSeen.push(req.span && req.span.spanId)
      res.end('plain')
    })
    // after the middleware's own 'close' listener: once this runs, the span has ended
    plainClosed = once(res, 'close')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  servers.push(server)
  const response = await fetch(`http://127.0.0.1:${server.address().port}/plain`)
  await response.arrayBuffer()
  await plainClosed
  const [plainSpan] = await finished(plainTracer)
  assert.equal(plainSeen.length, 1)
  assert.equal(plainSeen[0], plainSpan.spanId)
  assert.equal(plainSpan.name, 'GET')
})

test('a tracer of another make (same methods) gets its attributes one by one', async () => {
  // the middleware batches attributes on bulwark spans only; any span with setAttribute works
  const recorded = []
  const span = {
    sampled: true,
    ended: false,
    setAttribute(key, value) {
      recorded.push([key, value])
      return this
    },
    setStatus() {},
    updateName(name) {
      recorded.push(['name', name])
    },
    end() {
      this.ended = true
    },
  }
  const tracer = {
    startSpan: () => span,
    extract: () => null,
    withSpan: (s, fn) => fn(),
  }
  const app = await serve({ tracer }, (a) => a.get('/things/:id', (req, res) => res.send('ok')))
  assert.equal(await app.get('/things/7', { 'user-agent': 'probe' }), 200)
  const attributes = Object.fromEntries(recorded)
  assert.equal(attributes['http.request.method'], 'GET')
  assert.equal(attributes['url.path'], '/things/7')
  assert.equal(attributes['user_agent.original'], 'probe')
  assert.equal(attributes['http.route'], '/things/:id')
  assert.equal(attributes['http.response.status_code'], 200)
  assert.equal(attributes.name, 'GET /things/:id')
  assert.equal(span.ended, true)
})

/** A raw HTTP/1.1 connection to `port`: what it sends, and every byte it receives. */
async function rawConnection(port) {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  let received = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk) => {
    received += chunk
  })
  return {
    socket,
    /** Resolves once `count` responses (by their status lines) have arrived. */
    async responses(count) {
      while ((received.match(/HTTP\/1\.1 \d{3}/g) || []).length < count) await once(socket, 'data')
      return received.match(/HTTP\/1\.1 \d{3}/g).map((line) => Number(line.slice(9)))
    },
  }
}

test('pipelined requests on one connection each end their own span, with their own route and status', async () => {
  const tracer = memoryTracer()
  const { port } = await serve({ tracer }, (app) => {
    app.get('/slow/:id', async (req, res) => {
      await new Promise((resolve) => setTimeout(resolve, 20))
      res.status(201).send('slow')
    })
    app.get('/fast/:id', (req, res) => res.status(500).send('fast'))
  })
  const connection = await rawConnection(port)
  // both requests in one write: the second is parsed while the first is still being answered
  connection.socket.write('GET /slow/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /fast/2 HTTP/1.1\r\nHost: a\r\n\r\n')
  assert.deepEqual(await connection.responses(2), [201, 500])
  connection.socket.destroy()
  await once(connection.socket, 'close')
  const spans = (await finished(tracer)).sort((a, b) => a.name.localeCompare(b.name))
  assert.deepEqual(spans.map((s) => [s.name, s.attributes['http.route'], s.attributes['http.response.status_code'], s.status.code]), [
    ['GET /fast/:id', '/fast/:id', 500, 'error'],
    ['GET /slow/:id', '/slow/:id', 201, 'unset'],
  ])
})

test('a keep-alive connection is watched by one close listener, however many requests it carries', async () => {
  const tracer = memoryTracer()
  let socket
  const { port } = await serve({ tracer }, (app) => {
    app.get('/k', (req, res) => {
      socket = req.socket
      res.send('k')
    })
  })
  const connection = await rawConnection(port)
  for (let i = 1; i <= 5; i++) {
    connection.socket.write('GET /k HTTP/1.1\r\nHost: a\r\n\r\n')
    assert.equal((await connection.responses(i)).length, i)
  }
  const closeListeners = socket.listeners('close').length
  connection.socket.write('GET /k HTTP/1.1\r\nHost: a\r\n\r\n')
  await connection.responses(6)
  assert.equal(socket.listeners('close').length, closeListeners)
  assert.equal(socket.listeners('close').filter((f) => f.name === 'onSocketClose').length, 1)
  connection.socket.destroy()
  const spans = await finished(tracer)
  assert.equal(spans.length, 6)
  assert.ok(spans.every((s) => s.name === 'GET /k' && s.attributes['http.response.status_code'] === 200))
})

test('a request whose client left before the middleware ran ends its span at once, aborted', async () => {
  const tracer = memoryTracer()
  let clientGone
  const gone = new Promise((resolve) => { clientGone = resolve })
  let handled
  const wasHandled = new Promise((resolve) => { handled = resolve })
  const app = express()
  // a slow middleware first: the client goes away while it waits
  app.use(async (req, res, next) => {
    await gone
    await new Promise((resolve) => setImmediate(resolve))
    next()
  })
  app.use(tracing({ tracer }))
  app.get('/late', (req, res) => {
    handled(req.span)
    res.send('too late')
  })
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  servers.push(server)
  server.on('connection', (socket) => socket.on('close', () => clientGone()))
  const connection = await rawConnection(server.address().port)
  connection.socket.write('GET /late HTTP/1.1\r\nHost: a\r\n\r\n')
  await new Promise((resolve) => setImmediate(resolve))
  connection.socket.destroy()
  const span = await wasHandled
  assert.equal(span.ended, true)
  const [exported] = await finished(tracer)
  assert.equal(exported.name, 'GET /late')
  assert.deepEqual(exported.status, { code: 'error', message: 'aborted' })
})

test('a span whose end throws does not take the server down', async () => {
  let ends = 0
  const tracer = {
    startSpan: () => ({
      sampled: false,
      ended: false,
      setAttribute() {},
      setStatus() {},
      updateName() {},
      end() {
        ends++
        throw new Error('end failed')
      },
    }),
    extract: () => null,
    withSpan: (s, fn) => fn(),
  }
  const app = await serve({ tracer }, (a) => a.get('/x', (req, res) => res.send('ok')))
  assert.equal(await app.get('/x'), 200)
  assert.equal(await app.get('/x'), 200)
  assert.equal(ends, 2)
})
