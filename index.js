'use strict'
// The public entry of bulwark: the native blocks (from the generated loader, binding.js) with
// the JS glue they need, and the error classes.
const { RateLimiter } = require('./lib/limiter')
const { DistributedTracer, Span, SpanKind } = require('./lib/tracer')
const { PersistentCache } = require('./lib/cache')
const { CircuitBreaker } = require('./lib/breaker')
const { Observability } = require('./lib/observability')
const { TestClock } = require('./lib/test-clock')
const { BulwarkError, RateLimitError, CacheError, BreakerOpenError, BreakerTimeoutError, codes } = require('./lib/errors')
const { StoreAsyncError } = require('./lib/errors')

module.exports = {
  RateLimiter,
  DistributedTracer,
  Span,
  SpanKind,
  PersistentCache,
  CircuitBreaker,
  Observability,
  TestClock,
  BulwarkError,
  RateLimitError,
  CacheError,
  BreakerOpenError,
  BreakerTimeoutError,
  codes,
}
module.exports.StoreAsyncError = StoreAsyncError
