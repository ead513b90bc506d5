'use strict'
// The OpenTelemetry JS stack a user would run instead of bulwark's tracer, set up the way its
// documentation shows: a BasicTracerProvider from @opentelemetry/sdk-trace-base with a
// BatchSpanProcessor (its default sizes unless told), and either an exporter that discards or
// the OTLP/HTTP protobuf exporter. The benchmarks build both tracers from here and from
// `bulwarkTracer`, so that the two are configured alike.
const http = require('node:http')
const { once } = require('node:events')
const api = require('@opentelemetry/api')
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks')
const { W3CTraceContextPropagator } = require('@opentelemetry/core')
const { resourceFromAttributes } = require('@opentelemetry/resources')
const {
  BasicTracerProvider,
  BatchSpanProcessor,
  AlwaysOnSampler,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} = require('@opentelemetry/sdk-trace-base')

/** An exporter that drops every batch at once and reports success (OTel's SpanExporter interface). */
class DiscardingExporter {
  constructor() {
    this.exported = 0
  }

  export(spans, resultCallback) {
    this.exported += spans.length
    resultCallback({ code: 0 })
  }

  shutdown() {
    return Promise.resolve()
  }

  forceFlush() {
    return Promise.resolve()
  }
}

let contextInstalled = false

/**
 * Registers AsyncLocalStorage context propagation and the W3C propagator globally, as an
 * application using OTel does once at start (the Express middleware needs both; bulwark's
 * tracer keeps its active span in AsyncLocalStorage too).
 */
function installOtelContext() {
  if (contextInstalled) return
  contextInstalled = true
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  api.propagation.setGlobalPropagator(new W3CTraceContextPropagator())
}

/**
 * An OTel tracer. `exporter`: 'discard' or `{ url }` (OTLP/HTTP protobuf). `sampleRate` 1 uses
 * AlwaysOn, anything else a parent-based trace-id ratio sampler, as bulwark's sampler does.
 * `concurrencyLimit` is passed to the OTLP exporter.
 */
function otelTracer({ serviceName = 'bench', sampleRate = 1, exporter = 'discard', batch = {}, concurrencyLimit } = {}) {
  let spanExporter
  if (exporter === 'discard') {
    spanExporter = new DiscardingExporter()
  } else {
    const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto')
    // concurrencyLimit (default 30 exports in flight) is raised only where a benchmark flushes
    // more batches at once than that, which OTel JS would otherwise refuse
    spanExporter = new OTLPTraceExporter({ url: exporter.url, ...(concurrencyLimit ? { concurrencyLimit } : {}) })
  }
  const processor = new BatchSpanProcessor(spanExporter, batch)
  const sampler = sampleRate === 1
    ? new AlwaysOnSampler()
    : new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(sampleRate) })
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName }),
    sampler,
    spanProcessors: [processor],
  })
  return { tracer: provider.getTracer('bench'), provider, processor, exporter: spanExporter }
}

/** Spans the BatchSpanProcessor dropped because its queue was full (a private counter). */
function otelDropped(processor) {
  return typeof processor._droppedSpansCount === 'number' ? processor._droppedSpansCount : null
}

/**
 * An Express middleware that makes the same server span as bulwark's `tracing`: parented on
 * the incoming traceparent, active through the handler chain, named `METHOD route` once the
 * route is known, with the same OTel HTTP attributes, ended on finish or close.
 */
function otelTracingMiddleware(tracer) {
  installOtelContext()
  return function otelTracing(req, res, next) {
    const parent = api.propagation.extract(api.ROOT_CONTEXT, req.headers)
    const url = req.originalUrl
    const query = url.indexOf('?')
    const socket = req.socket
    const attributes = {
      'http.request.method': req.method,
      'url.path': query === -1 ? url : url.slice(0, query),
      'url.scheme': req.protocol,
      'server.port': socket.localPort,
      'client.address': socket.remoteAddress,
    }
    const agent = req.headers['user-agent']
    if (typeof agent === 'string') attributes['user_agent.original'] = agent
    const span = tracer.startSpan(req.method, { kind: api.SpanKind.SERVER, attributes }, parent)
    function done() {
      res.removeListener('finish', done)
      res.removeListener('close', done)
      const route = req.route && req.route.path
      if (typeof route === 'string') {
        span.updateName(`${req.method} ${route}`)
        span.setAttribute('http.route', route)
      }
      span.setAttribute('http.response.status_code', res.statusCode)
      if (!res.writableFinished) span.setStatus({ code: api.SpanStatusCode.ERROR, message: 'aborted' })
      else if (res.statusCode >= 500) span.setStatus({ code: api.SpanStatusCode.ERROR })
      span.end()
    }
    res.once('finish', done)
    res.once('close', done)
    api.context.with(api.trace.setSpan(parent, span), next)
  }
}

/** bulwark's tracer configured like `otelTracer`: 'discard' is the 'none' exporter. */
function bulwarkTracer({ serviceName = 'bench', sampleRate = 1, exporter = 'discard', batch } = {}) {
  const { DistributedTracer } = require('../..')
  return new DistributedTracer({
    serviceName,
    sampleRate,
    exporter: exporter === 'discard' ? 'none' : { otlp: { url: exporter.url, protocol: 'http/protobuf' } },
    ...(batch ? { batch } : {}),
  })
}

/** An OTLP/HTTP sink on 127.0.0.1 that reads each request whole and answers 200. */
async function startSink(port = 0) {
  const stats = { requests: 0, bytes: 0 }
  const server = http.createServer((req, res) => {
    req.on('data', (chunk) => (stats.bytes += chunk.length))
    req.on('end', () => {
      stats.requests++
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 })
      res.end()
    })
  })
  server.keepAliveTimeout = 60_000
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  return { server, stats, url: `http://127.0.0.1:${server.address().port}/v1/traces`, port: server.address().port }
}

module.exports = { DiscardingExporter, otelTracer, otelDropped, otelTracingMiddleware, bulwarkTracer, installOtelContext, startSink }

