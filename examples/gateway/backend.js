'use strict'
// The second example service: a greeting backend the gateway calls with `tracer.fetch`. Its
// server spans are children of the gateway's client spans, so one request through the gateway
// is one trace across both services. The gateway starts it (see server.js); to run it alone:
// `PORT=3001 node examples/gateway/backend.js`.
const { setTimeout: sleep } = require('node:timers/promises')
const express = require('express')
const { tracing } = require('bulwark/express')
const { createTracer } = require('./telemetry')

const port = process.env.PORT === undefined ? 3001 : Number(process.env.PORT)
const tracer = createTracer('backend')

const app = express()
app.disable('x-powered-by')
// One server span per request, parented on the caller's traceparent.
app.use(tracing({ tracer }))

app.get('/api/greeting', async (req, res) => {
  const name = typeof req.query.name === 'string' && req.query.name !== '' ? req.query.name : 'world'
  // A child of the request's server span; it stays active across the await.
  const greeting = await tracer.startActiveSpan('compose greeting', async (span) => {
    span.setAttribute('greeting.name.length', name.length)
    await sleep(2) // stands for a lookup
    return `Hello, ${name}!`
  })
  res.json({ service: 'backend', greeting, traceId: tracer.currentTraceId() })
})

const server = app.listen(port, '127.0.0.1', (error) => {
  if (error) throw error
  const url = `http://127.0.0.1:${server.address().port}`
  console.log(`bulwark backend listening on ${url}`)
  // Started by the gateway: tell it where we listen.
  if (process.send) process.send({ listening: url })
})

let closing = false
function shutdown(reason) {
  if (closing) return
  closing = true
  console.log(`bulwark backend: ${reason}, closing`)
  server.close(async () => {
    await tracer.shutdown(2000) // exports the spans still queued
    process.exit(0)
  })
  // keep-alive connections would hold close() open; idle ones can go now, busy ones get 3 s
  server.closeIdleConnections()
  setTimeout(() => server.closeAllConnections(), 3000).unref()
}

process.on('SIGINT', () => shutdown('SIGINT'))
process.on('SIGTERM', () => shutdown('SIGTERM'))
// Started by the gateway: stop when it goes away, however it went (no orphan), and do not let
// the channel alone keep this process up.
if (process.channel) {
  process.channel.unref()
  process.on('disconnect', () => shutdown('gateway gone'))
}
