'use strict'
// What every service of the platform shares: an Express app with the tracing middleware and
// the observability routes, a tracer configured from the environment, and a shutdown that
// stops taking requests, lets the ones in flight finish, closes the service's blocks (caches,
// pools, limiters) and flushes the spans, within the supervisor's 5 seconds.
const express = require('express')
const { DistributedTracer, Observability } = require('bulwark')
const { tracing, observability } = require('bulwark/express')
const config = require('./config')

/** Paths that are neither traced nor worth a span: scrapes and probes. */
const UNTRACED = new Set(['/healthz', '/readyz', '/metrics', '/favicon.ico'])

/**
 * A DistributedTracer for `serviceName`: to the OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT
 * is set (the tracer reads the variable itself), else one JSON line per span on stdout (the
 * supervisor shows them as one readable line each), or nowhere with PLATFORM_SPANS=off.
 */
function createTracer(serviceName, sampleRate) {
  const exporter = config.otlp ? { otlp: {} } : config.spans === 'off' ? 'none' : 'console'
  return new DistributedTracer({
    serviceName,
    sampleRate,
    exporter,
    resource: { 'service.namespace': 'bulwark-platform', 'service.instance.id': `${config.host}:${config.portOf(serviceName)}` },
    batch: { scheduledDelayMs: config.traceDelayMs },
  })
}

/**
 * Creates a service: `{ app, tracer, obs, onClose, listen }`. Register routes on `app`, blocks
 * on `obs`, and what must be closed at shutdown with `onClose` (closed in reverse order, after
 * the HTTP server and before the tracer); then call `listen()`.
 */
function createService(name, { sampleRate = 1 } = {}) {
  const tracer = createTracer(name, sampleRate)
  const obs = new Observability({ service: name }).add('tracer', tracer)
  const app = express()
  app.disable('x-powered-by')
  // the gateway (on this machine) forwards the client's address in X-Forwarded-For
  app.set('trust proxy', 'loopback')
  // /api/v1/system/observability, /api/v1/providers/resilience-status, /metrics, /healthz, /readyz
  app.use(observability({ obs }))
  app.use(tracing({ tracer, ignore: (req) => UNTRACED.has(req.path) }))
  app.use(express.json({ limit: '64kb' }))

  const closers = []
  let server = null
  let closing = false

  function log(message) {
    console.log(`${name}: ${message}`)
  }

  async function shutdown(reason) {
    if (closing) return
    closing = true
    const started = Date.now()
    log(`${reason}, closing`)
    // a watchdog: whatever hangs, the process is gone before the supervisor's deadline
    setTimeout(() => {
      console.error(`${name}: shutdown took longer than 4 s, exiting`)
      process.exit(1)
    }, 4000).unref()
    if (server !== null) {
      const closed = new Promise((resolve) => server.close(resolve))
      // keep-alive connections would hold close() open: idle ones go now, busy ones get 1.5 s
      server.closeIdleConnections()
      const force = setTimeout(() => server.closeAllConnections(), 1500)
      await closed
      clearTimeout(force)
    }
    for (const { what, close } of closers.reverse()) {
      try {
        await close()
      } catch (error) {
        console.error(`${name}: closing ${what} failed: ${error.message}`)
      }
    }
    await tracer.shutdown(1500) // exports the spans still queued
    log(`closed in ${Date.now() - started} ms (server, ${closers.map((c) => c.what).concat('tracer').join(', ')})`)
    process.exit(0)
  }

  /** Runs `close` at shutdown; `what` names it in the log. */
  function onClose(what, close) {
    closers.push({ what, close })
  }

  /** Listens on the service's port; tells the supervisor (when there is one) where. */
  function listen() {
    // after every route: unknown paths and thrown errors answer JSON
    app.use((req, res) => res.status(404).json({ error: 'not_found', path: req.path }))
    app.use((error, req, res, next) => {
      if (res.headersSent) return next(error)
      const status = error.status || error.statusCode || 500
      if (status >= 500) console.error(`${name}: ${req.method} ${req.originalUrl}: ${error.stack || error}`)
      res.status(status).json({ error: status >= 500 ? 'internal_error' : 'bad_request', message: error.message })
    })
    const port = config.portOf(name)
    server = app.listen(port, config.host, (error) => {
      if (error) {
        console.error(`${name}: cannot listen on ${config.host}:${port}: ${error.message}`)
        process.exit(1)
      }
      const url = config.urlOf(name)
      log(`listening on ${url}`)
      if (process.send) process.send({ listening: url, pid: process.pid })
    })
  }

  process.on('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  if (process.channel) {
    // started by the supervisor: stop when it goes away, however it went, and do not let the
    // channel alone keep this process up
    process.channel.unref()
    process.on('disconnect', () => shutdown('supervisor gone'))
  }

  return { app, tracer, obs, onClose, listen, log }
}

/** Resolves after `ms`, or rejects when `signal` aborts. */
function sleep(ms, signal) {
  return require('node:timers/promises').setTimeout(ms, undefined, { signal })
}

module.exports = { createService, createTracer, sleep }
