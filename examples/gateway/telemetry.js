'use strict'
// The tracer both example services make, configured from the environment:
//
//   OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set
//                          -> OTLP/HTTP to that collector (the tracer reads the variable itself)
//   TRACE_EXPORT=console   -> one JSON line per span on stdout (the default otherwise)
//   TRACE_EXPORT=otlp      -> OTLP/HTTP, to http://localhost:4318/v1/traces when no variable is set
//   TRACE_EXPORT=none      -> no export (span metrics only)
//   TRACE_DELAY_MS         -> how long finished spans wait to be exported in a batch (default 1000)
const { DistributedTracer } = require('bulwark')

const EXPORTS = ['console', 'otlp', 'none']

/** A DistributedTracer named `serviceName` that exports where the environment says. */
function createTracer(serviceName) {
  const env = process.env
  const otlpFromEnv = Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT)
  const choice = env.TRACE_EXPORT || (otlpFromEnv ? 'otlp' : 'console')
  if (!EXPORTS.includes(choice)) {
    throw new Error(`TRACE_EXPORT must be one of ${EXPORTS.join(', ')}, received ${JSON.stringify(choice)}`)
  }
  const delay = env.TRACE_DELAY_MS === undefined || env.TRACE_DELAY_MS === '' ? 1000 : Number(env.TRACE_DELAY_MS)
  return new DistributedTracer({
    serviceName,
    // `{ otlp: {} }` without url: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
    // OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://localhost:4318/v1/traces
    exporter: choice === 'otlp' ? { otlp: {} } : choice,
    batch: { scheduledDelayMs: delay },
  })
}

module.exports = { createTracer }
