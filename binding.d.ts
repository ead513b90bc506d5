
/**
 * Which binding artifact the generated loader actually loaded: `'native'` for
 * a native addon, otherwise the `platformArchABI` of the WASI flavor. Every
 * flavor napi-rs can build is listed, because `NAPI_RS_NATIVE_LIBRARY_PATH`
 * can point the loader at a WASI artifact this package does not build itself.
 */
export declare const __napiBindingTarget: 'native' | 'wasm32-wasi' | 'wasm32-wasip1'

/** Internal: the Redis tier of a `PersistentCache` (created by the facade for `redis`). */
export declare class CacheRedisTier {
  /** Validates the `redis` options of a PersistentCache; connects on first use. */
  constructor(options: object)
  /** Starts the threads (subscribing at once); `wake(id)` is called when events are ready. */
  _start(wake: (id: number) => void, id: number): void
  /** Queues a lookup of `key`; its id. */
  get(key: string): number
  /** Queues a write-through: `kind` (the value's kind) and its payload. */
  set(key: string, kind: number, payload: string | Uint8Array, ttlMs?: number, tags?: string[]): void
  /** Queues an invalidation (`delete`, `tag`, `prefix`, `clear`) for Redis and the others. */
  invalidate(op: string, arg: string): void
  /** Sends what was queued this tick as one batch. */
  _flush(): void
  /**
   * Every event ready: the lookups' answers packed (`got`: id, ttlMs or -1, and the value's
   * start and end in `data`, -1 for a miss), then the invalidations and flushes in order.
   */
  _take(): TierTake
  /** Stops both threads (what was queued is still sent). */
  close(): void
  /** The counters. */
  stats(): CacheRedisStats
}
export type CacheRedisTierBinding = CacheRedisTier

/** A circuit breaker (the native class; see `index.d.ts`). */
export declare class CircuitBreaker {
  /** Creates a closed breaker; every option is validated and unknown options are refused. */
  constructor(options?: CircuitBreakerOptions)
  /**
   * Internal (used by the facade's constructor): the hot-path functions bound to this
   * breaker, `{ acquire, record, sync, figures }`; `figures` holds retryAfterMs,
   * startNanos, the state code, the transition count and the last duration in ms.
   */
  _fastPath(): { acquire(): number; record(ticket: number, startNanos: number, outcome: number): boolean; sync(): number; figures: Float64Array }
  /** Opens the breaker until `reset()`. */
  _forceOpen(): void
  /** Lets every call pass, still measuring, until `reset()`. */
  _disable(): void
  /** Closes the breaker with an empty window. */
  _reset(): void
  /**
   * Internal (used by `stats()`): writes the state, the counters, the window's rates and
   * counts and the last transition time into the shared figures (indices 2, 3 and 5 to 15),
   * so that a snapshot builds no object on this side of the crossing.
   */
  _stats(): void
}
export type CircuitBreakerBinding = CircuitBreaker

/**
 * Spans, W3C trace context, sampling, span metrics and export (the native class; see
 * `index.d.ts`).
 */
export declare class DistributedTracer {
  /** Creates a tracer; every option is validated and unknown options are refused. */
  constructor(options: DistributedTracerOptions)
  /**
   * Internal (used by the facade, once per thread): the hot-path functions, shared by every
   * tracer of this thread, and their `io` array. Each call is for the tracer whose slot
   * (`_fastSlot()`) is in the array's `IO_TRACER` cell.
   */
  _fastPath(): { start(name?: string): void; end(): void; rename(name?: string): void; setAttr(value?: string, key?: string): void; setAttrs(...values: Array<string | undefined>): void; endWithAttrs(...values: Array<string | undefined>): void; setAttribute(handle: number, key: string, value: unknown): boolean; io: Float64Array }
  /** Internal: this tracer's slot, for the fast path's `IO_TRACER` cell. */
  _fastSlot(): number
  /**
   * Internal: the id of span name `name` for the fast path (interned once; the same name
   * gets the same id), or -1 once the tracer interns no more names (pass the name instead).
   */
  _internName(name: string): number
  /**
   * Internal: the id of attribute key `key` for the fast path (interned once), or -1 once
   * the tracer interns no more keys (pass the key instead).
   */
  _internKey(key: string): number
  /**
   * Internal: starts a span whose parent is the context in `traceparent`/`tracestate` (a new
   * trace when `traceparent` is invalid). Returns the handle.
   */
  _startRemote(name: string, kind: number, traceparent: string, tracestate?: string | undefined | null, startTimeMs?: number | undefined | null, rate?: number | undefined | null): number
  /**
   * Internal: the remote context in incoming header values, or null when `traceparent` is
   * missing, repeated or invalid (the trace restarts; `tracestate` is then ignored).
   */
  _extract(traceparentValues: Array<string>, tracestateValues: Array<string>): SpanContextObject | null
  /** Internal: the live span's `traceparent`, or null once it has ended. */
  _traceparent(handle: number): string | null
  /** Internal: the live span's `tracestate`, or null when empty or ended. */
  _tracestate(handle: number): string | null
  /** Internal: the live span's context, or null once it has ended. */
  _context(handle: number): SpanContextObject | null
  /** Internal: adds an event; whether it was stored. */
  _addEvent(handle: number, name: string, attributes?: Record<string, unknown>, timeMs?: number): boolean
  /** Internal: records an `exception` event; whether it was stored. */
  _recordException(handle: number, exceptionType: string, message: string, stack?: string | undefined | null): boolean
  /** Internal: sets the status (`ok`, `error` or `unset`); whether the span was live. */
  _setStatus(handle: number, code: string, message?: string | undefined | null): boolean
  /** Internal: renames the span; whether it was live. */
  _updateName(handle: number, name: string): boolean
  /** The tracer's counters and per-name span metrics (sampled and unsampled spans alike). */
  metrics(): TracerMetrics
  /**
   * The spans the `'memory'` exporter has received (after a flush, or a scheduled export),
   * oldest first. Empty with any other exporter.
   */
  finishedSpans(): Array<FinishedSpan>
  /** Forgets the spans the `'memory'` exporter has received. */
  resetFinishedSpans(): void
  /**
   * Exports every span ended so far; resolves with whether it finished within `timeoutMs`
   * (default: the batch export timeout). The wait happens off the JS thread.
   */
  flush(timeoutMs?: number | undefined | null): Promise<boolean>
  /**
   * Flushes and stops the export thread; spans ended later are dropped and counted. Resolves
   * with whether everything finished within `timeoutMs` (default: the batch export timeout).
   */
  shutdown(timeoutMs?: number | undefined | null): Promise<boolean>
  /** The `service.name` spans are exported under. */
  get serviceName(): string
}
export type DistributedTracerBinding = DistributedTracer

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

/**
 * A two-tier cache: memory (W-TinyLFU) over an optional persistent disk tier (the native
 * class; see `index.d.ts`).
 */
export declare class PersistentCache {
  /** Opens a cache; every option is validated and unknown options are refused. */
  constructor(options: PersistentCacheOptions)
  /**
   * Internal (used by the facade's constructor): the hot-path functions bound to this cache
   * and the shared array they exchange numbers through (slots in `lib/cache.js`), the
   * options the facade applies, and why the disk tier's file was replaced at open (or null).
   */
  _fastPath(): { get(key: string): string | Buffer | Uint8Array | true | undefined; getStale(key: string): string | Buffer | Uint8Array | true | undefined; set(key: string, value: string | Uint8Array, tags?: string[]): void; has(key: string): boolean; delete(key: string): boolean; io: Float64Array; hotObjects: number; serveStaleOnError: boolean; diskDamageAtOpen: string | null }
  /** Removes every entry from both tiers; returns how many there were. */
  clear(): number
  /** Removes every entry tagged `tag` from both tiers; returns how many. */
  invalidateTag(tag: string): number
  /** Removes every entry whose key starts with `prefix` from both tiers; returns how many. */
  invalidatePrefix(prefix: string): number
  /** Entries held (on disk when there is a disk tier, else in memory). */
  get size(): number
  /** Internal (used by `stats()`): the native counts. */
  _stats(): CacheNativeStats
  /**
   * Internal (used by `flush()` and `close()`): resolves when every write before it is
   * durable, with `null`, or with why it is not. The wait happens off the JS thread.
   */
  _flush(): Promise<string | null>
  /**
   * Internal (used by `close()` after a flush): stops the disk writer (its queue is then
   * empty or nearly so) and refuses every later call.
   */
  _close(): void
}
export type PersistentCacheBinding = PersistentCache

/** The SQL optimizer (the native class; see `index.d.ts`). */
export declare class QueryOptimizer {
  /** Creates an optimizer; every option is validated and unknown options are refused. */
  constructor(options?: QueryOptimizerOptions)
  /**
   * Internal: fingerprints `sql` from its tokens and, when `analyzeToo`, parses it for the
   * rules it breaks; returns the fingerprint, rules, operation and normalized text in one
   * string (see `LEARNED_HEADER`).
   */
  _learn(sql: string, analyzeToo: boolean): string
  /**
   * Internal: what `_learn(sql, false)` returns, for the dialect of code `dialect` (see
   * `Dialect::from_code`). Static: a fingerprint needs nothing of an optimizer's state, and
   * a static call skips unwrapping and borrowing the instance.
   */
  static _fingerprint(sql: string, dialect: number): string
  /** The anti-pattern findings of `sql` (see the README's rules table). */
  _analyze(sql: string): Array<QueryFinding>
  /**
   * Internal: records a batch of `count` calls (see the module documentation); returns the
   * N+1 findings the batch made.
   */
  _flush(records: Float64Array, count: number, texts: unknown[], traces: unknown[]): Array<NPlusOneFinding>
  /** Internal: per-fingerprint statistics, `top` of them by `sortBy`. */
  _stats(top: number | undefined | null, sortBy: string): Array<QueryStats>
  /** Internal: the N+1 findings kept, oldest first. */
  _nPlusOne(): Array<NPlusOneFinding>
  /** Internal: counts for the facade's `size` figures: fingerprints held, traces followed. */
  _sizes(): Array<number>
  /** Internal: forgets statistics, traces and findings. */
  _reset(): void
}
export type QueryOptimizerBinding = QueryOptimizer

/** A token-bucket rate limiter keyed by client (the native class; see `index.d.ts`). */
export declare class RateLimiter {
  /** Creates a limiter; every option is validated and unknown options are refused. */
  constructor(options: RateLimiterOptions)
  /** Whether the buckets live in a remote store (Redis). */
  get _remote(): boolean
  /**
   * Internal (used by the facade's constructor): the remote fast path,
   * `{ submit, decision }`, where `submit(key, cost)` returns 1 (allowed), 0 (refused) or -1
   * (blocked) when decided here, with the figures in `decision`, and 2 when queued for the
   * next batch.
   */
  _remoteFastPath(): { submit(key: string, cost?: number): number; decision: Float64Array }
  /** Internal: the function the store thread calls (with `id`) when batches complete. */
  _attachStore(wake: (id: number) => void, id: number): void
  /** Internal: sends the requests queued this tick as one batch; its id (0 when none). */
  _flush(): number
  /**
   * Internal: every completed batch as `[id, n, ...n x (code, limit, remaining, resetMs,
   * retryAfterMs)]`, batch after batch (code: 1 allowed, 0 refused, -1 blocked).
   */
  _take(): Float64Array
  /** Internal: queues `reset` / `block` / `unblock` of a key for Redis and applies it here. */
  _storeCommand(op: string, key: string, ms?: number): void
  /** Internal (used by `close`): stops the store thread once it has answered what was sent. */
  _closeStore(): void
  /** Counters of the remote store; absent for an in-memory limiter. */
  _storeStats(): StoreStats | null
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
 * Internal (the cache's Redis tier): the string whose WTF-8 is `bytes` (keys, tags and values
 * with a lone surrogate come back from Redis so).
 */
export declare function _decodeWtf8(bytes: Uint8Array): string

/** Raw versus stored payload bytes. */
export interface CacheCompressionStats {
  /** Payload bytes given to `set`. */
  rawBytes: number
  /** Payload bytes stored after compression. */
  storedBytes: number
}

/** Stats of the disk tier (all zero without `dir`). */
export interface CacheDiskStats {
  /** Entries on disk or queued for it. */
  entries: number
  /** Bytes of their records. */
  bytes: number
  /** Lookups served from disk. */
  hits: number
  /** Read transactions run for lookups that missed memory. */
  reads: number
  /** Entries written durably. */
  writes: number
  /** Disk failures since open; the cache kept serving from memory. */
  errors: number
  /** Entries evicted to stay within `diskMaxBytes`. */
  evictions: number
  /** Entries not written because alone they exceed `diskMaxBytes`. */
  oversized: number
  /**
   * Writes not queued because the disk writer was too far behind or the tier was resetting
   * after a disk error (those entries live in memory only).
   */
  skipped: number
  /**
   * Times the disk tier was emptied and made anew because its file was found damaged (at
   * open or by a lookup) or a write to it failed.
   */
  resets: number
}

/** Stats of the memory tier. */
export interface CacheMemoryStats {
  /** Entries held. */
  entries: number
  /** Weight held (stored bytes, key and tags, plus a fixed overhead per entry). */
  bytes: number
  /** Lookups served from memory. */
  hits: number
  /** Entries evicted from memory (they may still be on disk). */
  evictions: number
}

/** The native counts behind `stats()` (the facade adds the rates and the loads). */
export interface CacheNativeStats {
  hits: number
  misses: number
  sets: number
  deletes: number
  evictions: number
  expirations: number
  entries: number
  bytes: number
  /** Entries too large for the memory tier. */
  oversized: number
  memory: CacheMemoryStats
  disk: CacheDiskStats
  compression: CacheCompressionStats
}

/** Counters of the Redis tier. */
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
  /** Times the local tiers were dropped because messages may have been missed. */
  flushes: number
  /** Pipelines (or removals) that failed. */
  errors: number
  /** Whether the subscription is up. */
  subscribed: boolean
}

/**
 * An invalidation from another instance (`invalidated`, with `op` and `arg`) or a flush of the
 * local tiers (`flush`, with the reason in `arg`).
 */
export interface CacheTierEvent {
  /** `invalidated` or `flush`. */
  kind: string
  /** `delete`, `tag`, `prefix` or `clear` (`invalidated`). */
  op?: string
  /**
   * The key, tag or prefix as WTF-8 (`invalidated`; `_decodeWtf8` makes it a string); the
   * reason (`flush`).
   */
  arg?: Buffer
}

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

/** An event of a finished span. */
export interface FinishedEvent {
  /** The event name (`exception` for a recorded exception). */
  name: string
  /** Unix time in nanoseconds, as a decimal string (exact). */
  timeUnixNano: string
  /** Its attributes. */
  attributes: Record<string, AttributeJs>
}

/**
 * A span the memory exporter received. Times are Unix nanoseconds as decimal strings (exact;
 * a JS number cannot hold them), plus the duration in ms as a number.
 */
export interface FinishedSpan {
  /** 32 lowercase hex digits. */
  traceId: string
  /** 16 lowercase hex digits. */
  spanId: string
  /** Absent for a root span. */
  parentSpanId?: string
  /** The span's name. */
  name: string
  /** `internal`, `server`, `client`, `producer` or `consumer`. */
  kind: string
  /** Start, Unix nanoseconds as a decimal string. */
  startTimeUnixNano: string
  /** End, Unix nanoseconds as a decimal string. */
  endTimeUnixNano: string
  /** End minus start, in ms. */
  durationMs: number
  /** Its attributes (within the limits). */
  attributes: Record<string, AttributeJs>
  /** Attributes dropped by the limits or for an unsupported value. */
  droppedAttributesCount: number
  /** Its events (within the limits). */
  events: Array<FinishedEvent>
  /** Events dropped by the limits. */
  droppedEventsCount: number
  /** Its status. */
  status: FinishedStatus
  /** The W3C trace flags. */
  traceFlags: number
  /** The `tracestate` it carries, when there is one. */
  traceState?: string
}

/** A span's status. */
export interface FinishedStatus {
  /** `unset`, `ok` or `error`. */
  code: string
  /** The error description, when there is one. */
  message?: string
}

/** One waiter granted by `_pump`. */
export interface GrantedWaiter {
  /** The waiter id. */
  id: number
  /** Its decision. */
  decision: RateLimitDecision
}

/**
 * A duration histogram as Prometheus shows one: for each bound, how many values were at most
 * that long (cumulative), with their sum and count.
 */
export interface HistogramSnapshot {
  /** The upper bounds of `counts`, in milliseconds, ascending. */
  boundsMs: Array<number>
  /** For each bound, the values at most that long. */
  counts: Array<number>
  /** The sum of every value, in milliseconds. */
  sumMs: number
  /** How many values there were (the `+Inf` bucket). */
  count: number
}

/** One N+1 finding. */
export interface NPlusOneFinding {
  /** The trace in which the statement repeated. */
  traceId: string
  /** Its fingerprint. */
  fingerprint: string
  /** Its normalized text. */
  normalized: string
  /** Runs in that trace (so far). */
  count: number
  /** Their total time, ms. */
  totalMs: number
  /** The batched form to use instead. */
  suggestion: string
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

/** One anti-pattern finding. */
export interface QueryFinding {
  /** The rule's stable id (see the README's rules table). */
  rule: string
  /** `error`, `warning` or `info`. */
  severity: string
  /** What was found. */
  message: string
  /** What to do instead. */
  suggestion: string
}

/** The statistics of one fingerprint. */
export interface QueryStats {
  /** 16 hex digits. */
  fingerprint: string
  /** The normalized statement (never a literal value). */
  normalized: string
  /** Calls recorded. */
  calls: number
  /** Of which failed. */
  errors: number
  /** Rows returned or affected (where the driver said). */
  rows: number
  /** Total time, ms. */
  totalMs: number
  /** Mean time, ms. */
  meanMs: number
  /** Median, ms (within 1/16). */
  p50Ms: number
  /** 95th percentile, ms (within 1/16). */
  p95Ms: number
  /** 99th percentile, ms (within 1/16). */
  p99Ms: number
  /** Longest call, ms. */
  maxMs: number
  /** Calls at or above `slowQueryMs`. */
  slow: number
  /** N+1 findings for this statement. */
  nPlusOne: number
  /** Ids of the rules the statement broke. */
  findings: Array<string>
  /** Call durations as a histogram (bounds from 0.1 ms to 10 s; the sum is `totalMs`). */
  durationHistogram: HistogramSnapshot
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
  /** The same waits as a histogram (bounds from 1 ms to 10 s). */
  waitHistogram: HistogramSnapshot
}

/** A span context as JS sees it (from `extract`, or a live span's `context`). */
export interface SpanContextObject {
  /** 32 lowercase hex digits. */
  traceId: string
  /** 16 lowercase hex digits. */
  spanId: string
  /** The W3C trace flags (bit 0: sampled). */
  traceFlags: number
  /** The `tracestate` header value, when there is one. */
  traceState?: string
  /** Whether the context came from another process. */
  isRemote: boolean
}

/** Counters of a Redis store. */
export interface StoreStats {
  /** `redis`. */
  kind: string
  /** Batches sent (each tick's decisions form one). */
  batches: number
  /** Pipelines sent to Redis (batches queued while one was out share the next). */
  roundTrips: number
  /** Script calls sent (one decides a whole batch, up to 512 requests). */
  commands: number
  /** Refusals made in this process from the refusal cache, without a round trip. */
  localRefusals: number
  /** Decisions made by the `onStoreError` policy because Redis failed or the breaker was open. */
  fallbackDecisions: number
  /** Requests whose batch or reply failed. */
  errors: number
  /** Times the script was loaded again after a `NOSCRIPT` reply. */
  scriptReloads: number
  /** Connections made to Redis. */
  connects: number
  /** Whether the breaker is open (decisions go to the policy without trying Redis). */
  breakerOpen: boolean
  /** The last error, if any. */
  lastError?: string
}

/**
 * What `_take` hands over: lookups packed in `got` (id, ttlMs or -1, start and end in `data`
 * or -1 for a miss; a value is its kind byte, tags and payload, see `redis_tier`), then the
 * other events.
 */
export interface TierTake {
  /** Four numbers per lookup answered. */
  got: Float64Array
  /** The values found, end to end. */
  data: Buffer
  /** Invalidations and flushes, in order. */
  events: Array<CacheTierEvent>
}

/** The tracer's counters and per-name span metrics. */
export interface TracerMetrics {
  /** Spans started. */
  started: number
  /** Spans started sampled. */
  sampled: number
  /** Spans started unsampled. */
  unsampled: number
  /** Starts refused because too many spans were live. */
  rejectedSpans: number
  /** Spans live now. */
  liveSpans: number
  /** Spans the exporter accepted. */
  exported: number
  /** Sampled spans lost before export (full queue, after shutdown). */
  dropped: number
  /** Failed export batches. */
  exportErrors: number
  /** CPU time the export thread has used, in milliseconds (encoding and sending batches). */
  exportCpuMs: number
  /** Attribute values of an unsupported type, dropped. */
  unsupportedAttributes: number
  /** The span names with metrics, sorted (`_other` once `maxMetricNames` names are tracked). */
  spanNames: Array<string>
  /**
   * Per name, in `spanNames` order, a run of figures: count, errors (spans that ended with
   * status error), p50, p95, p99, max and sum of the durations in ms, then for each of
   * `durationBoundsMs` how many spans took at most that long (cumulative, the shape of a
   * Prometheus histogram). One array instead of an object per name: the facade builds the
   * objects, which costs a fraction of building them through the crossing.
   */
  spanFigures: Float64Array
  /** The upper bounds (ms) of each name's cumulative `buckets`. */
  durationBoundsMs: Array<number>
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
