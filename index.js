'use strict'
// The public entry of bulwark: the native blocks (from the generated loader, binding.js) with
// the JS glue they need, and the error classes.
const { RateLimiter } = require('./lib/limiter')
const { DistributedTracer, Span, SpanKind } = require('./lib/tracer')
const { PersistentCache } = require('./lib/cache')
const { CircuitBreaker } = require('./lib/breaker')
const { ConnectionPool } = require('./lib/pool')
const { Observability } = require('./lib/observability')
const { TestClock } = require('./lib/test-clock')
const { QueryOptimizer, Loader } = require('./lib/query')
const { BulwarkError, RateLimitError, CacheError, BreakerOpenError, BreakerTimeoutError, PoolError, PoolTimeoutError, StoreAsyncError, codes } = require('./lib/errors')

module.exports = {
  RateLimiter,
  DistributedTracer,
  Span,
  SpanKind,
  PersistentCache,
  CircuitBreaker,
  ConnectionPool,
  Observability,
  TestClock,
  QueryOptimizer,
  Loader,
  BulwarkError,
  RateLimitError,
  CacheError,
  BreakerOpenError,
  BreakerTimeoutError,
  PoolError,
  PoolTimeoutError,
  StoreAsyncError,
  codes,
}
