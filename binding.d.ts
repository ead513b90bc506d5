
/**
 * Which binding artifact the generated loader actually loaded: `'native'` for
 * a native addon, otherwise the `platformArchABI` of the WASI flavor. Every
 * flavor napi-rs can build is listed, because `NAPI_RS_NATIVE_LIBRARY_PATH`
 * can point the loader at a WASI artifact this package does not build itself.
 */
export declare const __napiBindingTarget: 'native' | 'wasm32-wasi' | 'wasm32-wasip1'

/**
 * A clock for tests that moves only when told to. Pass it as the `clock` option of a block to
 * drive that block's time by hand; the package exports it as `TestClock`, which also wakes the
 * blocks using it when it moves.
 */
export declare class ManualClock {
  /** A clock at `startMs` milliseconds (default 0). */
  constructor(startMs?: number | undefined | null)
  /** Moves the clock forward by `ms` milliseconds. */
  advance(ms: number): void
  /** Sets the clock to `ms` milliseconds. */
  set(ms: number): void
  /** The clock's time in milliseconds. */
  now(): number
}
export type ManualClockBinding = ManualClock

/** A token-bucket rate limiter keyed by client (the native class; see `index.d.ts`). */
export declare class RateLimiter {
  /** Creates a limiter; every option is validated and unknown options are refused. */
  constructor(options: RateLimiterOptions)
  /**
   * Internal (used by the facade's constructor): the hot-path functions bound to this
   * limiter, `{ tryConsume, decide, decision }`, where `decide(key, cost)` returns whether
   * the request was allowed and writes limit, remaining, resetMs and retryAfterMs into the
   * `decision` Float64Array.
   */
  _fastPath(): { tryConsume(key: string, cost?: number): number; decide(key: string, cost?: number): boolean; decision: Float64Array }
  /** Whole tokens the key holds now, without taking any. */
  peek(key: string): number
  /** Refills the key and lifts any block on it. */
  reset(key: string): void
  /** Refuses every request of `key` for `ms` milliseconds. */
  block(key: string, ms: number): void
  /** Lifts a block on `key`. */
  unblock(key: string): void
  /** Puts `key` in the named tier from the next request on. */
  setClientTier(key: string, tier: string): void
  /**
   * Gives `key` its own limits from the next request on (omitted figures keep the
   * defaults).
   */
  setClientLimits(key: string, limits: ClientLimits): void
  /** Returns `key` to the default limits. */
  clearClient(key: string): void
  /** A snapshot of the counters. */
  stats(): RateLimiterStats
  /** Internal (used by `acquire`): grants, queues or rejects a waiting request. */
  _enqueue(key: string, cost?: number, maxWaitMs?: number): EnqueueOutcome
  /** Internal (used by `acquire`): grants what can be granted and expires what is due. */
  _pump(): PumpOutcome
  /** Internal (used by `acquire`): removes an aborted waiter; true when it was queued. */
  _cancel(id: number): boolean
  /** Internal (used by `close`): refuses every waiter and later `acquire`; returns the ids. */
  _close(): Array<number>
  /** The default capacity (tokens a key's bucket holds when full). */
  get capacity(): number
  /** The default refill rate, in tokens per second. */
  get refillPerSecond(): number
  /** Whether `close()` was called. */
  get closed(): boolean
}
export type RateLimiterBinding = RateLimiter

/**
 * What `_enqueue` did: `granted` (with `decision`), `queued` (with `id`) or `rejected` (with
 * `reason` and `retryAfterMs`).
 */
export interface EnqueueOutcome {
  /** `granted`, `queued` or `rejected`. */
  status: string
  /** The waiter id when queued. */
  id?: number
  /** The decision when granted. */
  decision?: RateLimitDecision
  /** Why it was rejected. */
  reason?: string
  /** When to try again, when rejected. */
  retryAfterMs?: number
}

/** One waiter granted by `_pump`. */
export interface GrantedWaiter {
  /** The waiter id. */
  id: number
  /** Its decision. */
  decision: RateLimitDecision
}

/** What `_pump` did. */
export interface PumpOutcome {
  /** Waiters granted, in the order they were served. */
  granted: Array<GrantedWaiter>
  /** Waiters that reached their deadline. */
  expired: Array<number>
  /** Milliseconds until the next pump is due; absent when nobody waits. */
  nextWakeMs?: number
}

/** The result of `check`: the same decision as `tryConsume`, as an object. */
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
  /** Requests admitted, at once or after waiting. */
  allowed: number
  /** Requests refused, including blocked ones and `acquire` calls that were turned down. */
  rejected: number
  /** Refusals because the key was blocked. */
  blocked: number
  /** `acquire` calls waiting now. */
  queued: number
  /** `acquire` calls granted after waiting. */
  waited: number
  /** `acquire` calls that reached their deadline. */
  timedOut: number
  /** Keys held in memory. */
  keys: number
  /** Keys evicted to stay within `maxKeys`. */
  evicted: number
  /** How long granted `acquire` calls waited. */
  waitMs: WaitSummary
}

/** Wait times of granted `acquire` calls, in milliseconds. */
export interface WaitSummary {
  /** Median wait. */
  p50: number
  /** 95th percentile wait. */
  p95: number
  /** 99th percentile wait. */
  p99: number
  /** Longest wait. */
  max: number
}
