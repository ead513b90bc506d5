// Types of `require('bulwark')`. Hand-written; `__test__/types.test-d.ts` compiles against it.

import { EventEmitter } from 'node:events'

/** Limits of one client bucket. */
export interface ClientLimits {
  /** Tokens the bucket holds when full (finite, > 0). */
  capacity?: number
  /** Tokens added per second (finite, > 0). */
  refillPerSecond?: number
  /** Share of the shared budget while requests queue, relative to other clients (finite, > 0). @default 1 */
  weight?: number
}

/** Options of `new RateLimiter(options)`. Unknown options are refused. */
export interface RateLimiterOptions {
  /** Tokens a key's bucket holds when full (finite, > 0). */
  capacity: number
  /** Tokens added to a key's bucket per second (finite, > 0). */
  refillPerSecond: number
  /** Default weight of a client in the fair queue. @default 1 */
  weight?: number
  /** Named limits that clients can be put in with `setClientTier`. */
  tiers?: Record<string, Required<Pick<ClientLimits, 'capacity' | 'refillPerSecond'>> & Pick<ClientLimits, 'weight'>>
  /** Once a key is refused by its own bucket, refuse it for this long (ms). @default 0 */
  blockDurationMs?: number
  /** A service-wide budget every admitted request also draws from. */
  global?: { capacity: number; refillPerSecond: number }
  /** Limits of the `acquire` wait queue. */
  queue?: {
    /** @default 100 */
    maxPerClient?: number
    /** @default 10000 */
    maxTotal?: number
    /** @default 10000 */
    maxWaitMs?: number
  }
  /** Keys held in memory at most; full buckets are dropped first, then the least recently used. @default 1000000 */
  maxKeys?: number
  /** A TestClock, to drive time by hand in tests. */
  clock?: TestClock
  /** Where the buckets live: in this process (the default), or in Redis, shared by every process using the same `keyPrefix`. */
  store?: { redis: RedisStoreOptions }
  /** What decides while Redis cannot be reached (remote store only). @default 'local' */
  onStoreError?: 'deny' | 'allow' | 'local'
}

/** Options of a RateLimiter's Redis store. */
export interface RedisStoreOptions {
  /** `redis://[user:password@]host[:port][/db]`. @default 'redis://127.0.0.1:6379' */
  url?: string
  /** Prefix of every key the limiter writes (no braces: a hash tag is added). @default 'bulwark:rl:' */
  keyPrefix?: string
  /** Longest wait for a connection, in ms. @default 500 */
  connectTimeoutMs?: number
  /** Longest wait for one read or write to Redis, in ms. @default 1000 */
  commandTimeoutMs?: number
  /** After a failure, how long decisions go to `onStoreError` without trying Redis, in ms. @default 1000 */
  retryMs?: number
}

/** Counters of a RateLimiter's Redis store (`stats().store`). */
export interface RateLimiterStoreStats {
  kind: 'redis'
  /** Batches sent (each tick's decisions form one). */
  batches: number
  /** Pipelines sent to Redis (batches queued while one was out share the next). */
  roundTrips: number
  /** Script calls sent (one decides a whole batch, up to 512 requests). */
  commands: number
  /** Refusals made in this process for keys Redis had refused, without a round trip. */
  localRefusals: number
  /** Decisions made by `onStoreError` because Redis failed or the breaker was open. */
  fallbackDecisions: number
  /** Requests whose batch or reply failed. */
  errors: number
  /** Times the script was loaded again after a NOSCRIPT reply. */
  scriptReloads: number
  /** Connections made to Redis. */
  connects: number
  /** Whether the breaker is open: decisions go to `onStoreError` without trying Redis. */
  breakerOpen: boolean
  /** The last error, if any. */
  lastError?: string
}

/** One rate-limit decision. */
export interface RateLimitDecision {
  /** Whether the request was admitted (and its tokens taken). */
  allowed: boolean
  /** The key's capacity. */
  limit: number
  /** Whole tokens the key holds after the decision. */
  remaining: number
  /** Milliseconds until the key's bucket is full again. */
  resetMs: number
  /** Milliseconds until the same request would be admitted (0 when allowed). */
  retryAfterMs: number
}

/**
 * A duration histogram in a Prometheus histogram's shape: for each of `boundsMs`, how many values
 * were at most that long (cumulative), with their sum and count.
 */
export interface HistogramSnapshot {
  boundsMs: readonly number[]
  counts: number[]
  sumMs: number
  count: number
}

/** Counters of a limiter since it was created. */
export interface RateLimiterStats {
  allowed: number
  rejected: number
  blocked: number
  queued: number
  waited: number
  timedOut: number
  keys: number
  evicted: number
  /** Wait of granted `acquire` calls, in ms. */
  waitMs: { p50: number; p95: number; p99: number; max: number }
  /** The same waits as a histogram (bounds from 1 ms to 10 s). */
  waitHistogram: HistogramSnapshot
  /** The Redis store's counters (absent with the in-memory store). */
  store?: RateLimiterStoreStats
}

/** Options of `acquire`. */
export interface AcquireOptions {
  /** Aborting it rejects the wait with RateLimitError (reason 'aborted'). */
  signal?: AbortSignal
  /** Longest wait; defaults to `queue.maxWaitMs`. */
  maxWaitMs?: number
}

/** A token-bucket rate limiter keyed by client, with tiers, a penalty box and fair queuing. */
export declare class RateLimiter {
  constructor(options: RateLimiterOptions)
  /** Tokens left (>= 0) when allowed; minus the ms to wait (<= -1) when refused. */
  tryConsume(key: string, cost?: number): number
  /** The same decision as an object. */
  check(key: string, cost?: number): RateLimitDecision
  /**
   * The decision as a promise: at once with the in-memory store; with a Redis store the
   * decisions of one tick share one round trip. Rejects only on invalid arguments.
   */
  consume(key: string, cost?: number): Promise<RateLimitDecision>
  /** Whether the buckets are in Redis (then `tryConsume`, `check` and `peek` throw StoreAsyncError). */
  readonly remote: boolean
  /** Waits for the tokens in fair order; rejects with RateLimitError. */
  acquire(key: string, cost?: number, options?: AcquireOptions): Promise<RateLimitDecision>
  /** Whole tokens the key holds now, without taking any. */
  peek(key: string): number
  /** Refills the key and lifts any block on it. */
  reset(key: string): void
  /** Refuses every request of the key for `ms` milliseconds. */
  block(key: string, ms: number): void
  /** Lifts a block. */
  unblock(key: string): void
  /** Puts the key in a configured tier from the next request on. */
  setClientTier(key: string, tier: string): void
  /** Gives the key its own limits from the next request on. */
  setClientLimits(key: string, limits: ClientLimits): void
  /** Returns the key to the default limits. */
  clearClient(key: string): void
  /** A snapshot of the counters. */
  stats(): RateLimiterStats
  /** Rejects every waiter with RateLimitError (reason 'closed') and stops timers. */
  close(): void
  /** Whether `close()` was called. */
  readonly closed: boolean
  /** The default capacity (per-client limits may differ). */
  readonly capacity: number
  /** The default refill rate in tokens per second (per-client limits may differ). */
  readonly refillPerSecond: number
}

/** A clock for tests: blocks given `clock: testClock` only see time move when it is moved. */
export declare class TestClock {
  constructor(startMs?: number)
  /** Moves the clock forward and wakes the blocks that use it. */
  advance(ms: number): void
  /** Sets the clock and wakes the blocks that use it. */
  set(ms: number): void
  /** The clock's time in ms. */
  now(): number
  /** Runs `listener` whenever the clock moves; returns a function that stops it. */
  onMove(listener: () => void): () => void
}

/** The stable error codes. */
export declare const codes: {
  readonly INVALID_OPTION: 'ERR_BULWARK_INVALID_OPTION'
  readonly INVALID_ARGUMENT: 'ERR_BULWARK_INVALID_ARGUMENT'
  readonly RATE_LIMITED: 'ERR_RATE_LIMITED'
  readonly CACHE_LOCKED: 'ERR_CACHE_LOCKED'
  readonly CACHE_CLOSED: 'ERR_CACHE_CLOSED'
  readonly CACHE_DISK: 'ERR_CACHE_DISK'
  readonly BREAKER_OPEN: 'ERR_BREAKER_OPEN'
  readonly BREAKER_TIMEOUT: 'ERR_BREAKER_TIMEOUT'
  readonly POOL_TIMEOUT: 'ERR_POOL_TIMEOUT'
  readonly POOL_CLOSED: 'ERR_POOL_CLOSED'
  readonly POOL_QUEUE_FULL: 'ERR_POOL_QUEUE_FULL'
  readonly POOL_FOREIGN_RESOURCE: 'ERR_POOL_FOREIGN_RESOURCE'
  readonly STORE_ASYNC: 'ERR_STORE_ASYNC'
}

/** Base class of the package's own errors. */
export declare class BulwarkError extends Error {
  constructor(message: string, code: string, options?: ErrorOptions)
  readonly code: string
}

/** Why a RateLimitError was raised. */
export type RateLimitReason =
  | 'rate_limited'
  | 'blocked'
  | 'wait_too_long'
  | 'queue_full'
  | 'timed_out'
  | 'aborted'
  | 'closed'

/** A request refused by a RateLimiter (`code: 'ERR_RATE_LIMITED'`). */
export declare class RateLimitError extends BulwarkError {
  constructor(message: string, details?: { retryAfterMs?: number; reason?: RateLimitReason; key?: string }, options?: ErrorOptions)
  readonly code: 'ERR_RATE_LIMITED'
  /** Milliseconds after which trying again may succeed. */
  readonly retryAfterMs: number
  readonly reason: RateLimitReason
  readonly key?: string
}

/** A synchronous call (`tryConsume`, `check`, `peek`) on a RateLimiter whose buckets are in Redis: use `consume`. */
export declare class StoreAsyncError extends BulwarkError {
  constructor(message: string, options?: ErrorOptions)
  readonly code: 'ERR_STORE_ASYNC'
}

/** The code of a CacheError. */
export type CacheErrorCode = 'ERR_CACHE_LOCKED' | 'ERR_CACHE_CLOSED' | 'ERR_CACHE_DISK'

/**
 * A PersistentCache failure: `dir` in use by another open cache (`ERR_CACHE_LOCKED`), a call
 * after `close()` (`ERR_CACHE_CLOSED`), or a disk tier that cannot be opened or flushed
 * (`ERR_CACHE_DISK`).
 */
export declare class CacheError extends BulwarkError {
  constructor(message: string, code: CacheErrorCode, details?: { dir?: string }, options?: ErrorOptions)
  readonly code: CacheErrorCode
  /** The cache directory, when one is involved. */
  readonly dir?: string
}

/** A JSON value as `JSON.stringify` writes it and `JSON.parse` reads it back. */
export type CacheJsonValue = null | boolean | number | string | CacheJsonValue[] | { [key: string]: CacheJsonValue }

/**
 * What a PersistentCache stores: strings, Buffers and Uint8Arrays as they are, and any other
 * JSON value (objects, arrays, numbers, booleans, null) through `JSON.stringify`. A value comes
 * back as the type it went in as.
 */
export type CacheValue = string | Buffer | Uint8Array | CacheJsonValue | object

/** Options of `new PersistentCache(options)`. Unknown options are refused. */
export interface PersistentCacheOptions {
  /** Entries the memory tier holds at most. At least one of maxEntries and maxBytes is required. */
  maxEntries?: number
  /** Bytes the memory tier holds at most (stored bytes, key and tags, plus about 112 bytes per entry). */
  maxBytes?: number
  /** Time to live of entries set without their own `ttlMs`, in ms. @default no expiry */
  ttlMs?: number
  /** The codec of payloads of at least `compressMinBytes`. @default 'lz4' */
  compression?: 'lz4' | 'zstd' | 'none'
  /** Payloads shorter than this are stored raw. @default 1024 */
  compressMinBytes?: number
  /** The directory of the persistent disk tier; without it the cache is memory only. */
  dir?: string
  /** Bytes the disk tier holds at most (its records, not the file size). @default no bound */
  diskMaxBytes?: number
  /** Decoded JSON values kept on the JS side for the most often read keys; hot hits return the same instance. @default 0 */
  hotObjects?: number
  /** getOrSet returns a stale value it still holds when the loader fails, instead of the error. @default false */
  serveStaleOnError?: boolean
  /** A TestClock, to drive time by hand in tests. */
  clock?: TestClock
  /** Redis as a shared tier below memory and disk, and the channel invalidations travel on between instances. */
  redis?: CacheRedisOptions
}

/** Options of a PersistentCache's Redis tier. */
export interface CacheRedisOptions {
  /** `redis://[user:password@]host[:port][/db]`. @default 'redis://127.0.0.1:6379' */
  url?: string
  /** Prefix of every key written; instances share entries when they share it. @default 'bulwark:cache:' */
  keyPrefix?: string
  /** The pub/sub channel of invalidations. @default keyPrefix + 'invalidate' */
  channel?: string
  /** Longest wait for a connection, in ms. @default 500 */
  connectTimeoutMs?: number
  /** Longest wait for one read or write, in ms. @default 1000 */
  commandTimeoutMs?: number
  /** After a failure, how long Redis is not tried (lookups miss, writes are dropped), in ms. @default 1000 */
  retryMs?: number
}

/** Counters of a PersistentCache's Redis tier (`stats().redis`). */
export interface CacheRedisStats {
  /** Pipelines sent. */
  roundTrips: number
  /** Lookups that found a value in Redis. */
  hits: number
  /** Lookups that found nothing (or failed). */
  misses: number
  /** Values written through. */
  sets: number
  /** Invalidations published. */
  published: number
  /** Invalidations received from other instances. */
  received: number
  /** Times the local tiers were dropped because invalidations may have been missed. */
  flushes: number
  /** Pipelines or removals that failed. */
  errors: number
  /** Values found in Redis that did not decode (another writer's format, or damaged), served as misses. */
  undecodable: number
  /** Whether the subscription is up. */
  subscribed: boolean
}

/** Options of `cache.set(key, value, options)`. */
export interface CacheSetOptions {
  /** Time to live in ms, overriding the cache's default. */
  ttlMs?: number
  /** Tags `invalidateTag` can remove the entry by. */
  tags?: string[]
}

/** Options of `cache.getOrSet(key, loader, options)`. */
export interface CacheGetOrSetOptions extends CacheSetOptions {
  /** For this long after expiry, the stale value is returned at once while one refresh runs in the background. @default 0 */
  staleWhileRevalidateMs?: number
}

/** Counts of a PersistentCache since it was opened. */
export interface PersistentCacheStats {
  hits: number
  misses: number
  /** hits / (hits + misses); 0 before the first lookup. */
  hitRate: number
  sets: number
  deletes: number
  evictions: number
  expirations: number
  /** Entries held (by the disk tier when there is one). */
  entries: number
  bytes: number
  /** Entries too large for the memory tier. */
  oversized: number
  memory: { entries: number; bytes: number; hits: number; evictions: number }
  /**
   * `skipped`: writes not queued because the disk writer was too far behind or the tier was
   * resetting after a disk error (those entries live in memory only). `resets`: times the disk
   * tier was emptied and made anew because its file was found damaged (at open or by a lookup)
   * or a write to it failed.
   */
  disk: { entries: number; bytes: number; hits: number; reads: number; writes: number; errors: number; evictions: number; oversized: number; skipped: number; resets: number }
  /** `ratio` is rawBytes / storedBytes (1 when nothing was stored). */
  compression: { rawBytes: number; storedBytes: number; ratio: number }
  /** getOrSet calls, those that joined a load already running, and loader failures. */
  loads: { calls: number; coalesced: number; errors: number }
  /** The Redis tier's counters (with `redis` only). */
  redis?: CacheRedisStats
}

/**
 * A two-tier cache: a bounded memory tier (W-TinyLFU eviction) over an optional persistent
 * disk tier in `dir`, with TTLs, compression, tags and prefixes, and load-through.
 */
export declare class PersistentCache<V extends CacheValue = CacheValue> {
  constructor(options: PersistentCacheOptions)
  /** The value (memory, then disk), or undefined; an expired entry is never returned. */
  get(key: string): V | undefined
  /** The value from memory, then disk, then (with `redis`) Redis, filling the local tiers; undefined when none has it. */
  getAsync(key: string): Promise<V | undefined>
  /** Stores a value; returns the cache. */
  set(key: string, value: V, options?: CacheSetOptions): this
  /** Whether a live value is held; counts neither a hit nor a miss. */
  has(key: string): boolean
  /** Removes the key from both tiers; returns whether it was there. */
  delete(key: string): boolean
  /** Removes everything; returns how many entries there were. */
  clear(): number
  /** Entries held (by the disk tier when there is one). */
  readonly size: number
  /** Whether `close()` was called. */
  readonly closed: boolean
  /** Removes every entry tagged `tag` from both tiers; returns how many. */
  invalidateTag(tag: string): number
  /** Removes every entry whose key starts with `prefix` from both tiers; returns how many. */
  invalidatePrefix(prefix: string): number
  /** The value, loaded with `loader` (once for all concurrent callers) when absent. */
  getOrSet<T extends V>(key: string, loader: (key: string) => T | Promise<T>, options?: CacheGetOrSetOptions): Promise<T>
  stats(): PersistentCacheStats
  /** Resolves when everything set before it is durable. */
  flush(): Promise<void>
  /** Writes what is queued, stops the disk writer and releases `dir`. */
  close(): Promise<void>
}

/** A breaker's state. */
export type CircuitBreakerState = 'closed' | 'open' | 'halfOpen' | 'forcedOpen' | 'disabled'

/** Options of `new CircuitBreaker(options)`. Unknown options are refused. */
export interface CircuitBreakerOptions {
  /** A name for messages, errors and metrics. @default 'breaker' */
  name?: string
  /** Opens when the window's failure rate reaches this, in (0, 1]. @default 0.5 */
  failureRateThreshold?: number
  /** Calls longer than this (ms) are slow. Without it, no call is slow. */
  slowCallMs?: number
  /** Opens when the window's slow-call rate reaches this, in (0, 1]; needs `slowCallMs`. @default 1 */
  slowCallRateThreshold?: number
  /** Calls the window must hold before the rates can open the breaker (integer >= 1; at most `windowSize`). @default 10 */
  minimumCalls?: number
  /** A time-based window of one-second buckets: a multiple of 1000 from 1000 to 3600000 ms. @default 10000 */
  windowMs?: number
  /** A count-based window of the last N calls instead (integer 1 to 1000000). Not with `windowMs`. */
  windowSize?: number
  /** How long the breaker stays open before letting probes through (ms). @default 30000 */
  openMs?: number
  /** Probe calls let through per half-open spell. @default 1 */
  halfOpenMaxCalls?: number
  /** The longest a half-open spell lasts before the breaker opens again (ms). @default max(openMs, timeoutMs) */
  halfOpenMaxWaitMs?: number
  /** A call running longer rejects with BreakerTimeoutError, counts as a failure, and its signal aborts (ms, at most 2147483647). */
  timeoutMs?: number
  /** Decides whether an error counts as a failure; `false` counts it as a success (the error still reaches the caller). If it throws, the error counts as a failure. */
  isFailure?: (error: unknown) => boolean
  /** Answers refused calls instead of a BreakerOpenError (not failures or timeouts). */
  fallback?: (error: BreakerOpenError) => unknown
  /** Whether the service cannot work while this breaker is open (for readiness). @default false */
  critical?: boolean
  /** A TestClock, to drive time (and timeouts) by hand in tests. */
  clock?: TestClock
}

/** A snapshot of a breaker. */
export interface CircuitBreakerStats {
  state: CircuitBreakerState
  /** Calls run and recorded since creation. */
  calls: number
  /** Of which failed (timeouts included). */
  failures: number
  /** Of which took longer than `slowCallMs`. */
  slowCalls: number
  /** Calls refused since creation. */
  rejected: number
  /** Calls that timed out since creation. */
  timeouts: number
  /** Failures over calls in the window (0 when empty). */
  failureRate: number
  /** Slow calls over calls in the window (0 when empty). */
  slowCallRate: number
  /** When the state last changed (creation before any change), epoch ms; with a TestClock, the clock's ms. */
  lastTransitionAt: number
  /** The window's counts now. */
  window: { calls: number; failures: number; slowCalls: number }
  /** Listeners and `isFailure` calls that threw (each also reported as a process warning). */
  callbackErrors: number
}

/** The events of a CircuitBreaker and their arguments. */
export interface CircuitBreakerEvents {
  open: [from: CircuitBreakerState]
  halfOpen: [from: CircuitBreakerState]
  close: [from: CircuitBreakerState]
  stateChange: [to: CircuitBreakerState, from: CircuitBreakerState]
  reject: [error: BreakerOpenError]
  success: [value: unknown, durationMs: number]
  failure: [error: unknown, durationMs: number]
  timeout: [error: BreakerTimeoutError, durationMs: number]
}

/** A circuit breaker over a sliding window of outcomes; see the README for the states and events. */
export declare class CircuitBreaker extends EventEmitter {
  constructor(options?: CircuitBreakerOptions)
  /** Calls `fn(signal)` through the breaker; `signal` aborts on timeout (it never aborts without `timeoutMs`). */
  fire<T>(fn: (signal: AbortSignal) => T | PromiseLike<T>): Promise<T>
  /** A function that fires `fn` with its arguments through the breaker. */
  wrap<A extends unknown[], T>(fn: (...args: A) => T | PromiseLike<T>): (...args: A) => Promise<T>
  /** Opens the breaker until `reset()`. */
  forceOpen(): void
  /** Lets every call pass (still measuring) until `reset()`. */
  disable(): void
  /** Closes the breaker with an empty window. */
  reset(): void
  /** A snapshot of the state and counters. */
  stats(): CircuitBreakerStats
  /** The state, after what time has done. */
  readonly state: CircuitBreakerState
  readonly name: string
  readonly critical: boolean
  on<E extends keyof CircuitBreakerEvents>(event: E, listener: (...args: CircuitBreakerEvents[E]) => void): this
  once<E extends keyof CircuitBreakerEvents>(event: E, listener: (...args: CircuitBreakerEvents[E]) => void): this
  off<E extends keyof CircuitBreakerEvents>(event: E, listener: (...args: CircuitBreakerEvents[E]) => void): this
}

/**
 * A call refused by a CircuitBreaker (`code: 'ERR_BREAKER_OPEN'`). The errors a breaker rejects
 * with inherit message and stack from one error per breaker and state, with the fields below as
 * their own (see the README); `instanceof` holds, `util.types.isNativeError()` does not.
 */
export declare class BreakerOpenError extends BulwarkError {
  constructor(message: string, details?: { retryAfterMs?: number; state?: CircuitBreakerState; breaker?: string }, options?: ErrorOptions)
  readonly code: 'ERR_BREAKER_OPEN'
  /** Milliseconds after which trying again may succeed; Infinity while forced open. */
  readonly retryAfterMs: number
  /** 'open', 'halfOpen' (its probes are taken) or 'forcedOpen'. */
  readonly state: CircuitBreakerState
  /** The breaker's name. */
  readonly breaker?: string
}

/** A call that took longer than the breaker's `timeoutMs` (`code: 'ERR_BREAKER_TIMEOUT'`). */
export declare class BreakerTimeoutError extends BulwarkError {
  constructor(message: string, details?: { timeoutMs?: number; breaker?: string }, options?: ErrorOptions)
  readonly code: 'ERR_BREAKER_TIMEOUT'
  readonly timeoutMs: number
  readonly breaker?: string
}

/** Options of a ConnectionPool; only `create` and `destroy` are required. Times in ms; 0 turns a time option off. */
export interface ConnectionPoolOptions<R extends object> {
  /** Makes a resource (a connected client); may be async. Errors are retried with backoff (`createRetry`). */
  create: () => R | PromiseLike<R>
  /** Ends a resource; may be async. Errors are counted and reported, never thrown. */
  destroy: (resource: R) => unknown
  /** True when the resource still works (e.g. `SELECT 1` answered). Needed by `validateOnAcquire` and `healthCheckIntervalMs`. */
  validate?: (resource: R) => boolean | PromiseLike<boolean>
  /** Whether an error thrown inside `use(fn)` means the resource is broken (destroyed, not reused). Default: connection-level errors. */
  isBroken?: (error: unknown) => boolean
  /** Name in errors, events and Observability (default 'pool'). */
  name?: string
  /** Resources kept warm, made at start and after losses (default 0). */
  min?: number
  /** Most resources at once, including those being made (default 10). */
  max?: number
  /** Hand out the longest idle resource first (default true); false: the most recently used. */
  fifo?: boolean
  /** Callers allowed to wait; beyond, acquire rejects with ERR_POOL_QUEUE_FULL (default Infinity). */
  maxWaiting?: number
  /** Default wait for acquire before PoolTimeoutError (default 30000; 0 waits without a deadline). */
  acquireTimeoutMs?: number
  /** A create still pending after this long counts as failed; a late resource is destroyed (default 30000). */
  createTimeoutMs?: number
  /** Validate an idle resource before handing it out, replacing failures (default false). */
  validateOnAcquire?: boolean
  /** Validate idle resources this often (default 0: off). */
  healthCheckIntervalMs?: number
  /** Destroy resources idle this long, above `min` (default 30000). */
  idleTimeoutMs?: number
  /** Retire resources this old (default 0: never); idle ones at once, borrowed ones on release. */
  maxLifetimeMs?: number
  /** Lifetimes are shortened by a random 0..lifetimeJitterMs, so a fleet does not reconnect at once (default maxLifetimeMs / 10). */
  lifetimeJitterMs?: number
  /** Retire a resource after this many acquires (default 0: unlimited). */
  maxUses?: number
  /** Create retries: `retries` (default 3) with exponential backoff from `backoffMs` (default 100) up to `maxBackoffMs` (default 5000). */
  createRetry?: { retries?: number; backoffMs?: number; maxBackoffMs?: number }
  /** Report a resource held longer than this, once, with the stack of its acquire (default 0: off). */
  leakDetectionMs?: number
  /** Listen to 'error' events of resources that are EventEmitters, destroying them instead of letting them crash the process (default true). */
  watchResourceErrors?: boolean
  /** A TestClock for tests. */
  clock?: TestClock
}

/** Options of one acquire. */
export interface PoolAcquireOptions {
  /** Higher is served first (default 0); equal priorities in arrival order. */
  priority?: number
  /** Gives up waiting when aborted, rejecting with the signal's reason. */
  signal?: AbortSignal
  /** This call's wait (default the pool's acquireTimeoutMs; 0 waits without a deadline). */
  timeoutMs?: number
}

/** Wait percentiles in ms. */
export interface WaitSummary {
  p50: number
  p95: number
  p99: number
  max: number
}

/** A ConnectionPool's figures: sizes now and counters since it was made. */
export interface ConnectionPoolStats {
  /** Resources held: idle + borrowed + validating + creating. */
  size: number
  idle: number
  borrowed: number
  validating: number
  creating: number
  /** Callers waiting. */
  pending: number
  min: number
  max: number
  created: number
  destroyed: number
  createErrors: number
  destroyErrors: number
  validationFailures: number
  acquired: number
  acquireTimeouts: number
  aborted: number
  queueFull: number
  leaks: number
  /** 'error' events of resources (each destroyed the resource). */
  resourceErrors: number
  /** Releases of a resource that was not borrowed (twice, or after destroy): ignored. */
  invalidReleases: number
  /** True from a failed create until the next successful one. */
  createFailing: boolean
  closed: boolean
  /** Time callers waited for a resource, zero waits included. */
  acquireWaitMs: WaitSummary
  /** The same waits as cumulative counts at `boundsMs` (a Prometheus histogram's shape), with their sum and count. */
  acquireWaitHistogram: HistogramSnapshot
}

/** A reported leak: a resource held longer than `leakDetectionMs`. */
export interface PoolLeak<R> {
  pool: string
  resource: R
  heldMs: number
  /** Where it was acquired. */
  stack: string
}

/** The events of a ConnectionPool and their arguments. */
export interface ConnectionPoolEvents<R> {
  create: [resource: R]
  destroy: [resource: R, reason: 'destroyed' | 'broken' | 'expired' | 'idle' | 'invalid' | 'closed']
  acquire: [resource: R]
  release: [resource: R]
  /** An error of the user's callbacks or of a resource; emitted only when someone listens. */
  error: [error: unknown, info: { pool: string; source: string }]
  leak: [leak: PoolLeak<R>]
}

/** A pool of resources made by your `create`; see the README's ConnectionPool section. */
export declare class ConnectionPool<R extends object = object> extends EventEmitter {
  constructor(options: ConnectionPoolOptions<R>)
  /** A resource, now or when one is released or made. */
  acquire(options?: PoolAcquireOptions): Promise<R>
  /** Gives a borrowed resource back. */
  release(resource: R): void
  /** Destroys a resource known to be broken and replaces it if needed. */
  destroy(resource: R): Promise<void>
  /** Acquire, run `fn`, release (destroy when `fn` throws an error `isBroken` calls fatal). */
  use<T>(fn: (resource: R) => T | PromiseLike<T>, options?: PoolAcquireOptions): Promise<T>
  /** Stops handing out, rejects waiters, destroys everything (borrowed ones when released or after `timeoutMs`, default 30000). */
  drain(options?: { timeoutMs?: number }): Promise<void>
  /** The same as drain. */
  close(options?: { timeoutMs?: number }): Promise<void>
  stats(): ConnectionPoolStats
  readonly name: string
  readonly size: number
  readonly pending: number
  readonly closed: boolean
  on<E extends keyof ConnectionPoolEvents<R>>(event: E, listener: (...args: ConnectionPoolEvents<R>[E]) => void): this
  once<E extends keyof ConnectionPoolEvents<R>>(event: E, listener: (...args: ConnectionPoolEvents<R>[E]) => void): this
  off<E extends keyof ConnectionPoolEvents<R>>(event: E, listener: (...args: ConnectionPoolEvents<R>[E]) => void): this
}

/** A ConnectionPool refusal: ERR_POOL_CLOSED, ERR_POOL_QUEUE_FULL or ERR_POOL_FOREIGN_RESOURCE. */
export declare class PoolError extends BulwarkError {
  constructor(message: string, code: 'ERR_POOL_CLOSED' | 'ERR_POOL_QUEUE_FULL' | 'ERR_POOL_FOREIGN_RESOURCE', details?: { pool?: string }, options?: ErrorOptions)
  readonly code: 'ERR_POOL_CLOSED' | 'ERR_POOL_QUEUE_FULL' | 'ERR_POOL_FOREIGN_RESOURCE'
  readonly pool?: string
}

/** An acquire not served in time (`code: 'ERR_POOL_TIMEOUT'`); `reason` tells a saturated pool from a database that cannot be reached. */
export declare class PoolTimeoutError extends BulwarkError {
  constructor(message: string, details?: { reason?: 'saturated' | 'create-failed'; timeoutMs?: number; pool?: string }, options?: ErrorOptions)
  readonly code: 'ERR_POOL_TIMEOUT'
  readonly reason: 'saturated' | 'create-failed'
  readonly timeoutMs: number
  readonly pool?: string
  /** With reason 'create-failed': the last error of `create`. */
  readonly cause?: unknown
}

/** An attribute value: a primitive or a homogeneous array of one. */
export type AttributeValue = string | number | boolean | string[] | number[] | boolean[]

/** Attributes by key. */
export type Attributes = Record<string, AttributeValue>

/** What role a span plays. */
export type SpanKindName = 'internal' | 'server' | 'client' | 'producer' | 'consumer'

/** The numbers the native fast path takes for each span kind. */
export declare const SpanKind: Readonly<Record<SpanKindName, number>>

/** A span's identity as it crosses processes (from `extract`, or `span.spanContext()`). */
export interface SpanContext {
  /** 32 lowercase hex digits. */
  traceId: string
  /** 16 lowercase hex digits. */
  spanId: string
  /** W3C trace flags (bit 0: sampled). */
  traceFlags: number
  /** The `tracestate` header value, when there is one. */
  traceState?: string
  /** Whether the context came from another process. */
  isRemote: boolean
}

/** Options of `new DistributedTracer(options)`. Unknown options are refused. */
export interface DistributedTracerOptions {
  /** The `service.name` spans are exported under (non-empty). */
  serviceName: string
  /** Fraction of root spans sampled, 0..1; children follow their parent. @default 1 */
  sampleRate?: number
  /** Per-name root sampling rates, tried in order before `sampleRate`. */
  sampling?: {
    /** `name` is an exact span name or a RegExp (evaluated in JS). */
    rules?: Array<{ name: string | RegExp; rate: number }>
  }
  /** Per-span limits (OpenTelemetry's defaults: 128 attributes, 128 events, no length limit). */
  limits?: {
    maxAttributes?: number
    maxEvents?: number
    maxAttributeValueLength?: number
  }
  /** Distinct span names tracked by `metrics()` before the rest go to `_other`. @default 1000 */
  maxMetricNames?: number
  /** How spans are batched for export (OpenTelemetry's BatchSpanProcessor defaults). */
  batch?: {
    /** @default 2048 */
    maxQueueSize?: number
    /** @default 512 */
    maxExportBatchSize?: number
    /** @default 5000 */
    scheduledDelayMs?: number
    /** @default 30000 */
    exportTimeoutMs?: number
  }
  /**
   * Where sampled spans go: nowhere, memory (`finishedSpans()`), stdout (one JSON line per
   * span), or an OTLP/HTTP collector (`url` defaults to the OTEL_EXPORTER_OTLP_* variables, then
   * `http://localhost:4318/v1/traces`). @default 'none'
   */
  exporter?:
    | 'none'
    | 'memory'
    | 'console'
    | {
        otlp: {
          url?: string
          headers?: Record<string, string>
          /** @default 'http/protobuf' */
          protocol?: 'http/protobuf' | 'http/json'
          /** @default 10000 */
          timeoutMs?: number
        }
      }
  /** More resource attributes (`service.version`, `deployment.environment`, ...). */
  resource?: Record<string, string | number | boolean>
  /** A TestClock, to drive span times by hand in tests. */
  clock?: TestClock
}

/** Options of `startSpan`. */
export interface StartSpanOptions {
  /** The parent: a Span, a SpanContext, a traceparent string, or null for a new trace. Default: the active span. */
  parent?: Span | SpanContext | string | null
  /** @default 'internal' */
  kind?: SpanKindName
  attributes?: Attributes
  /** Start time (ms since the epoch, or a Date). Default: now. */
  startTime?: number | Date
}

/** One span name's numbers in `metrics().spans`. */
export interface SpanNameMetrics {
  count: number
  errors: number
  p50Ms: number
  p95Ms: number
  p99Ms: number
  maxMs: number
  /** Sum of the durations in ms. */
  sumMs: number
  /** For each of `durationBoundsMs`, the spans that took at most that long (cumulative). */
  buckets: number[]
}

/** The tracer's counters and per-name span metrics (sampled and unsampled spans alike). */
export interface TracerMetrics {
  started: number
  sampled: number
  unsampled: number
  /** Starts refused because too many spans were live. */
  rejectedSpans: number
  liveSpans: number
  exported: number
  /** Sampled spans not exported: the queue was full, the tracer had shut down, or their batch failed. */
  dropped: number
  exportErrors: number
  /** CPU time the export thread has used, in ms: encoding and sending batches (0 with no exporter thread, or on a platform without a per-thread CPU clock). */
  exportCpuMs: number
  /** Attribute values of an unsupported type, dropped. */
  unsupportedAttributes: number
  /** Per span name (at most `maxMetricNames` names, the rest under `_other`), sorted by name. */
  spans: Record<string, SpanNameMetrics>
  /** The upper bounds (ms) of every name's cumulative `buckets`. */
  durationBoundsMs: number[]
}

/**
 * A span received by the 'memory' exporter. Times are Unix nanoseconds as decimal strings
 * (exact; a number cannot hold them); `durationMs` is a number.
 */
export interface FinishedSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: SpanKindName
  startTimeUnixNano: string
  endTimeUnixNano: string
  durationMs: number
  attributes: Attributes
  droppedAttributesCount: number
  events: Array<{ name: string; timeUnixNano: string; attributes: Attributes }>
  droppedEventsCount: number
  status: { code: 'unset' | 'ok' | 'error'; message?: string }
  traceFlags: number
  traceState?: string
}

/** One span. Attribute and event calls on an unsampled span cost nothing. */
export declare class Span {
  private constructor()
  /** 32 lowercase hex digits (read it before `end()` if you need it afterwards). */
  readonly traceId: string
  readonly spanId: string
  /** Undefined for a root span. */
  readonly parentSpanId: string | undefined
  /** Whether the span was sampled (only sampled spans record and are exported). */
  readonly sampled: boolean
  /** Its W3C `traceparent` value. */
  readonly traceparent: string
  /** Whether `end()` was called. */
  readonly ended: boolean
  spanContext(): SpanContext
  isRecording(): boolean
  setAttribute(key: string, value: AttributeValue): this
  setAttributes(attributes: Attributes): this
  addEvent(name: string, attributes?: Attributes, time?: number | Date): this
  /** Records an `exception` event (type, message, stacktrace); the status is left to `setStatus`. */
  recordException(error: unknown): this
  /** 'ok' is final; 'error' takes an optional message. */
  setStatus(code: 'ok' | 'error' | 'unset', message?: string): this
  updateName(name: string): this
  /** Ends the span; a second call does nothing. */
  end(endTime?: number | Date): void
}

/** Headers `extract` reads: a plain object, a Map, or anything with `get(name)`. */
export type IncomingHeaders =
  | Record<string, string | string[] | undefined>
  | { get(name: string): string | string[] | null | undefined }

/** Headers `inject` writes: a plain object, a Headers object, or an OutgoingMessage. */
export type OutgoingHeaders =
  | Record<string, unknown>
  | { set(name: string, value: string): unknown }
  | { setHeader(name: string, value: string): unknown }

/** W3C trace context, spans, sampling, span metrics and OTLP export. */
export declare class DistributedTracer {
  constructor(options: DistributedTracerOptions)
  /** The `service.name` spans are exported under. */
  readonly serviceName: string
  /** Starts a span; without `parent`, the active span is the parent. */
  startSpan(name: string, options?: StartSpanOptions): Span
  /** Starts a span, runs `fn` with it active, and ends it when `fn` returns or settles. */
  startActiveSpan<T>(name: string, fn: (span: Span) => T): T
  startActiveSpan<T>(name: string, options: StartSpanOptions | undefined, fn: (span: Span) => T): T
  /** Runs `fn` with `span` active. */
  withSpan<A extends unknown[], T>(span: Span | undefined, fn: (...args: A) => T, ...args: A): T
  /** The active span, or undefined. */
  active(): Span | undefined
  /** The active span's trace id, or undefined. */
  currentTraceId(): string | undefined
  /** The remote context in incoming headers, or null. Never throws. */
  extract(headers: IncomingHeaders | null | undefined): SpanContext | null
  /** Writes traceparent/tracestate of a span or context (default: the active span) into headers. */
  inject<H extends OutgoingHeaders>(spanOrContext: Span | SpanContext | null | undefined, headers: H): H
  /**
   * The global `fetch` in a `client` span (child of the active span) named after the method,
   * with OTel HTTP client attributes and `traceparent`/`tracestate` injected into a new Headers;
   * a status >= 500 or a rejection sets status error. Ends when the response headers arrive.
   */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>
  /** Counters and per-name span metrics. */
  metrics(): TracerMetrics
  /** Spans the 'memory' exporter has received (after `flush()`), oldest first. */
  finishedSpans(): FinishedSpan[]
  resetFinishedSpans(): void
  /** Exports every span ended so far; resolves with whether it finished in time. */
  flush(timeoutMs?: number): Promise<boolean>
  /** Flushes and stops export; spans ended later are dropped and counted. */
  shutdown(timeoutMs?: number): Promise<boolean>
}

/** Options of `new Observability(options)`. */
export interface ObservabilityOptions {
  /** The service name every output is labelled with. */
  service: string
}

/** What `obs.snapshot()` returns: each registered block's figures under its kind and name. */
export interface ObservabilitySnapshot {
  service: string
  version: string
  uptimeSeconds: number
  /** ISO 8601. */
  timestamp: string
  rateLimiter: Record<string, RateLimiterStats | { error: string }>
  tracer: Record<string, TracerMetrics | { error: string }>
  cache: Record<string, PersistentCacheStats | { error: string }>
  circuitBreakers: Record<string, CircuitBreakerStats | { error: string }>
  /** Empty until the pool block exists. */
  pools: Record<string, ConnectionPoolStats>
  /** Empty until the query block exists. */
  /** The costliest statements (by total time) and recent N+1 findings over every registered QueryOptimizer; `optimizer` is the name it was added under. */
  queries: { top: Array<QueryStats & { optimizer: string }>; nPlusOne: Array<NPlusOneFinding & { optimizer: string }> }
}

/** Every block a service registered, as a JSON snapshot, Prometheus text, health and readiness. */
export declare class Observability {
  constructor(options: ObservabilityOptions)
  readonly service: string
  /** Registers a block under a name unique across blocks; returns this. */
  add(name: string, block: RateLimiter | DistributedTracer | PersistentCache | CircuitBreaker | ConnectionPool<object> | QueryOptimizer): this
  snapshot(): ObservabilitySnapshot
  /** Prometheus text exposition (0.0.4), or OpenMetrics 1.0 with `{ openMetrics: true }`. */
  prometheus(options?: { openMetrics?: boolean }): string
  /** Liveness. */
  health(): { status: 'ok'; service: string; uptimeSeconds: number }
  /** Readiness: false, with reasons, while a `critical` circuit breaker is open or a pool is closed or cannot create any resource. */
  ready(): { ready: boolean; reasons: string[] }
}

// ---- QueryOptimizer ---------------------------------------------------------------------------

/** SQL dialects the optimizer parses. */
export type QueryDialect = 'postgres' | 'mysql' | 'sqlite' | 'generic'

/** Options of `new QueryOptimizer(options)`. Unknown options are refused. */
export interface QueryOptimizerOptions {
  /** @default 'postgres' */
  dialect?: QueryDialect
  /** N+1 detection: a fingerprint run `threshold` times in one trace (and `minTotalMs` in total) is a finding. */
  nPlusOne?: { /** @default 5 */ threshold?: number; /** @default 0 */ minTotalMs?: number }
  /** Calls at or above this many ms are counted as slow and emitted as `'slow'`. */
  slowQueryMs?: number
  /** Traces followed at once for N+1 detection (the oldest dropped). @default 10000 */
  maxTraces?: number
  /** Fingerprints with statistics (the least called dropped). @default 1000 */
  maxFingerprints?: number
  /** N+1 findings kept for `nPlusOne()`. @default 1000 */
  maxFindings?: number
  /** `large-offset` fires above this OFFSET. @default 1000 */
  largeOffset?: number
  /** Statements longer than this are normalized from their tokens, not parsed. @default 1048576 */
  maxParseBytes?: number
  /** Statement texts whose fingerprint is cached (0: no cache). @default 5000 */
  cacheSize?: number
  /** Total length of the cached texts. @default 16777216 */
  cacheBytes?: number
}

/** What `fingerprint()` returns. */
export interface QueryFingerprint {
  /** 16 lowercase hex digits, stable across processes and versions. */
  readonly fingerprint: string
  /** The statement with every literal and placeholder as `?`. */
  readonly normalized: string
}

/** Rule ids of `analyze()` (see the README's rules table). */
export type QueryRule =
  | 'select-star' | 'update-without-where' | 'delete-without-where' | 'leading-wildcard-like'
  | 'null-comparison' | 'order-by-random' | 'not-in-subquery' | 'implicit-cross-join'
  | 'non-sargable-predicate' | 'large-offset' | 'insert-without-columns' | 'distinct-with-join'
  | 'or-across-columns' | 'unbounded-select' | 'parse-error'

/** One finding of `analyze()`. */
export interface QueryFinding {
  rule: QueryRule
  severity: 'error' | 'warning' | 'info'
  message: string
  suggestion: string
}

/** One N+1 finding. */
export interface NPlusOneFinding {
  traceId: string
  fingerprint: string
  normalized: string
  /** Runs in that trace (so far). */
  count: number
  totalMs: number
  /** The batched form to use instead. */
  suggestion: string
}

/** Statistics of one fingerprint. Percentiles are within 1/16 of the true value. */
export interface QueryStats {
  fingerprint: string
  normalized: string
  calls: number
  errors: number
  rows: number
  totalMs: number
  meanMs: number
  p50Ms: number
  p95Ms: number
  p99Ms: number
  maxMs: number
  /** Calls at or above `slowQueryMs`. */
  slow: number
  /** N+1 findings for this statement. */
  nPlusOne: number
  /** Ids of the rules the statement broke. */
  findings: QueryRule[]
  /** Call durations as a histogram (bounds from 0.1 ms to 10 s; the sum is `totalMs`). */
  durationHistogram: HistogramSnapshot
}

/** The `'slow'` event's argument. */
export interface SlowQueryEvent {
  fingerprint: string
  normalized: string
  durationMs: number
  traceId: string | undefined
}

/** The events of a QueryOptimizer and their arguments. */
export interface QueryOptimizerEvents {
  nplusone: [finding: NPlusOneFinding]
  slow: [event: SlowQueryEvent]
}

/** Options of `new Loader(batchFn, options)` / `qo.loader(...)`: DataLoader's, plus `maxCacheSize`. */
export interface LoaderOptions<K, V, C = K> {
  /** @default true */
  batch?: boolean
  /** @default Infinity */
  maxBatchSize?: number
  batchScheduleFn?: (callback: () => void) => void
  /** @default true */
  cache?: boolean
  cacheKeyFn?: (key: K) => C
  cacheMap?: { get(key: C): Promise<V> | void; set(key: C, value: Promise<V>): unknown; delete(key: C): unknown; clear(): unknown } | null
  name?: string | null
  /** Bounds the loader's own Map (oldest first out). @default Infinity */
  maxCacheSize?: number
}

/** A DataLoader-compatible batching loader. */
export declare class Loader<K, V, C = K> {
  constructor(batchFn: (keys: readonly K[]) => PromiseLike<ArrayLike<V | Error>>, options?: LoaderOptions<K, V, C>)
  readonly name: string | null
  load(key: K): Promise<V>
  loadMany(keys: ArrayLike<K>): Promise<Array<V | Error>>
  clear(key: K): this
  clearAll(): this
  prime(key: K, value: V | PromiseLike<V> | Error): this
  /** Batches dispatched, keys through them, keys per batch, failed batches, values cached. */
  stats(): { batches: number; keys: number; meanKeysPerBatch: number; maxKeysPerBatch: number; failedBatches: number; cacheSize: number | undefined }
}

/** SQL fingerprints, anti-pattern rules, N+1 detection, per-query statistics and batching. */
export declare class QueryOptimizer extends EventEmitter {
  constructor(options?: QueryOptimizerOptions)
  readonly dialect: QueryDialect
  fingerprint(sql: string): QueryFingerprint
  analyze(sql: string): QueryFinding[]
  record(sql: string, durationMs: number, info?: { traceId?: string; rows?: number; error?: unknown }): void
  nPlusOne(): NPlusOneFinding[]
  stats(options?: { top?: number; sortBy?: 'totalMs' | 'calls' | 'p95Ms' | 'errors' }): QueryStats[]
  reset(): void
  readonly size: { cachedStatements: number; fingerprints: number; traces: number; callbackErrors: number }
  /** Wraps a pg Pool or Client, or a pool with use/acquire/release; returns the measured wrapper (same type). */
  instrument<T extends object>(target: T, options?: { tracer?: DistributedTracer }): T
  loader<K, V, C = K>(batchFn: (keys: readonly K[]) => PromiseLike<ArrayLike<V | Error>>, options?: LoaderOptions<K, V, C>): Loader<K, V, C>
  on<E extends keyof QueryOptimizerEvents>(event: E, listener: (...args: QueryOptimizerEvents[E]) => void): this
  once<E extends keyof QueryOptimizerEvents>(event: E, listener: (...args: QueryOptimizerEvents[E]) => void): this
  off<E extends keyof QueryOptimizerEvents>(event: E, listener: (...args: QueryOptimizerEvents[E]) => void): this
}
