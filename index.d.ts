// Types of `require('bulwark')`. Hand-written; `__test__/types.test-d.ts` compiles against it.

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
