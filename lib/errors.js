'use strict'
// The error classes of the package. Every error bulwark throws or rejects with has a stable
// `code`; invalid options and arguments are native TypeError/RangeError instances with
// `code: 'ERR_BULWARK_INVALID_OPTION'` or `'ERR_BULWARK_INVALID_ARGUMENT'`.

/** The stable codes, by name. */
const codes = Object.freeze({
  INVALID_OPTION: 'ERR_BULWARK_INVALID_OPTION',
  INVALID_ARGUMENT: 'ERR_BULWARK_INVALID_ARGUMENT',
  RATE_LIMITED: 'ERR_RATE_LIMITED',
  CACHE_LOCKED: 'ERR_CACHE_LOCKED',
  CACHE_CLOSED: 'ERR_CACHE_CLOSED',
  CACHE_DISK: 'ERR_CACHE_DISK',
  BREAKER_OPEN: 'ERR_BREAKER_OPEN',
  BREAKER_TIMEOUT: 'ERR_BREAKER_TIMEOUT',
  POOL_TIMEOUT: 'ERR_POOL_TIMEOUT',
  POOL_CLOSED: 'ERR_POOL_CLOSED',
  POOL_QUEUE_FULL: 'ERR_POOL_QUEUE_FULL',
  POOL_FOREIGN_RESOURCE: 'ERR_POOL_FOREIGN_RESOURCE',
  STORE_ASYNC: 'ERR_STORE_ASYNC',
})

/** Base class of the package's own errors; `code` is stable across versions. */
class BulwarkError extends Error {
  constructor(message, code, options) {
    super(message, options)
    this.name = 'BulwarkError'
    this.code = code
  }
}

/**
 * A request refused by a RateLimiter. `retryAfterMs` says when trying again may succeed;
 * `reason` says why: 'rate_limited', 'blocked', 'wait_too_long', 'queue_full', 'timed_out',
 * 'aborted' or 'closed'.
 */
class RateLimitError extends BulwarkError {
  constructor(message, { retryAfterMs = 0, reason = 'rate_limited', key } = {}, options) {
    super(message, codes.RATE_LIMITED, options)
    this.name = 'RateLimitError'
    this.retryAfterMs = retryAfterMs
    this.reason = reason
    if (key !== undefined) this.key = key
  }
}

/**
 * A PersistentCache failure: `code` is 'ERR_CACHE_LOCKED' (the cache's `dir` is in use by another
 * open cache, in this process, a worker or another process), 'ERR_CACHE_CLOSED' (a call after
 * `close()`) or 'ERR_CACHE_DISK' (the disk tier cannot be opened in `dir`, or a flush could not
 * be made durable). `dir` is set when a directory is involved.
 */
class CacheError extends BulwarkError {
  constructor(message, code, { dir } = {}, options) {
    super(message, code, options)
    this.name = 'CacheError'
    if (dir !== undefined) this.dir = dir
  }
}

/**
 * A call refused by a CircuitBreaker without running. `retryAfterMs` says when trying again may
 * succeed (`Infinity` while forced open: only `reset()` ends that); `state` is the breaker's
 * state ('open', 'halfOpen' or 'forcedOpen'); `breaker` is its name.
 */
class BreakerOpenError extends BulwarkError {
  constructor(message, { retryAfterMs = 0, state = 'open', breaker } = {}, options) {
    super(message, codes.BREAKER_OPEN, options)
    this.name = 'BreakerOpenError'
    this.retryAfterMs = retryAfterMs
    this.state = state
    if (breaker !== undefined) this.breaker = breaker
  }
}

/** A call through a CircuitBreaker that took longer than its `timeoutMs`; `breaker` is its name. */
class BreakerTimeoutError extends BulwarkError {
  constructor(message, { timeoutMs = 0, breaker } = {}, options) {
    super(message, codes.BREAKER_TIMEOUT, options)
    this.name = 'BreakerTimeoutError'
    this.timeoutMs = timeoutMs
    if (breaker !== undefined) this.breaker = breaker
  }
}

/**
 * A ConnectionPool refusal: `code` is 'ERR_POOL_CLOSED' (an acquire after `drain()`/`close()`, or a
 * waiter the drain turned away), 'ERR_POOL_QUEUE_FULL' (`maxWaiting` callers already wait) or
 * 'ERR_POOL_FOREIGN_RESOURCE' (a resource the pool never handed out was released or destroyed).
 * `pool` is the pool's name.
 */
class PoolError extends BulwarkError {
  constructor(message, code, { pool } = {}, options) {
    super(message, code, options)
    this.name = 'PoolError'
    if (pool !== undefined) this.pool = pool
  }
}

/**
 * An acquire that was not served within its timeout (`ERR_POOL_TIMEOUT`). `reason` says why:
 * 'saturated' (every resource was busy; the database was answering) or 'create-failed' (new
 * resources could not be made; `cause` is the last error of `create`). `timeoutMs` is the wait
 * allowed and `pool` the pool's name.
 */
class PoolTimeoutError extends BulwarkError {
  constructor(message, { reason = 'saturated', timeoutMs = 0, pool } = {}, options) {
    super(message, codes.POOL_TIMEOUT, options)
    this.name = 'PoolTimeoutError'
    this.reason = reason
    this.timeoutMs = timeoutMs
    if (pool !== undefined) this.pool = pool
  }
}

/**
 * A synchronous call (`tryConsume`, `check`, `peek`) on a RateLimiter whose buckets are in a
 * remote store (Redis), which can only answer asynchronously: use `consume`.
 */
class StoreAsyncError extends BulwarkError {
  constructor(message, options) {
    super(message, codes.STORE_ASYNC, options)
    this.name = 'StoreAsyncError'
  }
}

/** An invalid argument in JS glue, shaped like the native ones. */
function invalidArgument(ErrorClass, message) {
  const error = new ErrorClass(message)
  error.code = codes.INVALID_ARGUMENT
  return error
}

/** An invalid option in JS glue, shaped like the native ones. */
function invalidOption(ErrorClass, message) {
  const error = new ErrorClass(message)
  error.code = codes.INVALID_OPTION
  return error
}

/** A short description of a received value for error messages. */
function describe(value) {
  if (value === null) return 'null'
  if (typeof value === 'string') return `string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '...' : value)}`
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`
  if (typeof value === 'undefined') return 'undefined'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'bigint') return 'a bigint'
  if (typeof value === 'symbol') return 'a symbol'
  return `${Array.isArray(value) ? 'an array' : 'an ' + typeof value}`
}

module.exports = { codes, BulwarkError, RateLimitError, CacheError, BreakerOpenError, BreakerTimeoutError, PoolError, PoolTimeoutError, StoreAsyncError, invalidArgument, invalidOption, describe }
