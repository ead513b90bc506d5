// Compiled with `tsc --noEmit` by `npm test`: if index.d.ts or express.d.ts stop describing the
// real API, or accept what the API refuses, this file stops compiling.
import {
  QueryOptimizer,
  Loader,
  type QueryStats,
  type HistogramSnapshot,
  type NPlusOneFinding,
  type QueryFinding,
  Observability,
  type ObservabilitySnapshot,
  CircuitBreaker,
  BreakerOpenError,
  BreakerTimeoutError,
  type CircuitBreakerOptions,
  type CircuitBreakerStats,
  type CircuitBreakerState,
  RateLimiter,
  TestClock,
  BulwarkError,
  RateLimitError,
  codes,
  type RateLimitDecision,
  type RateLimiterOptions,
  type RateLimiterStats,
  DistributedTracer,
  Span,
  type DistributedTracerOptions,
  type SpanContext,
  type TracerMetrics,
  type FinishedSpan,
  PersistentCache,
  CacheError,
  type PersistentCacheOptions,
  type PersistentCacheStats,
  ConnectionPool,
  PoolError,
  PoolTimeoutError,
  type ConnectionPoolStats,
} from '..'
import { rateLimit, tracing, observability, clientKey, type RateLimitOptions, type TracingOptions, type TracingRequest } from '../express'
import { createServer } from 'node:http'

const clock = new TestClock(0)
const options: RateLimiterOptions = {
  capacity: 100,
  refillPerSecond: 10,
  weight: 1,
  tiers: { pro: { capacity: 1000, refillPerSecond: 100, weight: 2 } },
  blockDurationMs: 1000,
  global: { capacity: 500, refillPerSecond: 50 },
  queue: { maxPerClient: 10, maxTotal: 100, maxWaitMs: 1000 },
  maxKeys: 10_000,
  clock,
}
const limiter = new RateLimiter(options)

const left: number = limiter.tryConsume('k')
const leftWithCost: number = limiter.tryConsume('k', 2)
const decision: RateLimitDecision = limiter.check('k', 1)
const allowed: boolean = decision.allowed
const figures: number[] = [decision.limit, decision.remaining, decision.resetMs, decision.retryAfterMs]
const waited: Promise<RateLimitDecision> = limiter.acquire('k', 1, { signal: new AbortController().signal, maxWaitMs: 5 })
const peeked: number = limiter.peek('k')
limiter.reset('k')
limiter.block('k', 100)
limiter.unblock('k')
limiter.setClientTier('k', 'pro')
limiter.setClientLimits('k', { capacity: 5 })
limiter.clearClient('k')
const stats: RateLimiterStats = limiter.stats()
const p99: number = stats.waitMs.p99
const waitBuckets: HistogramSnapshot = stats.waitHistogram
const closed: boolean = limiter.closed
limiter.close()
clock.advance(10)
clock.set(20)
const now: number = clock.now()
const stop: () => void = clock.onMove(() => {})
stop()

// @ts-expect-error capacity is required
new RateLimiter({ refillPerSecond: 1 })
// @ts-expect-error unknown options are refused
new RateLimiter({ capacity: 1, refillPerSecond: 1, burst: 2 })
// @ts-expect-error keys are strings
limiter.tryConsume(42)

waited.catch((error: unknown) => {
  if (error instanceof RateLimitError) {
    const code: 'ERR_RATE_LIMITED' = error.code
    const retry: number = error.retryAfterMs
    const reason: 'rate_limited' | 'blocked' | 'wait_too_long' | 'queue_full' | 'timed_out' | 'aborted' | 'closed' = error.reason
    void [code, retry, reason]
  }
  if (error instanceof BulwarkError) {
    const code: string = error.code
    void code
  }
})
const invalidOption: 'ERR_BULWARK_INVALID_OPTION' = codes.INVALID_OPTION

const middlewareOptions: RateLimitOptions = {
  limiter,
  key: (req) => req.ip ?? 'unknown',
  cost: () => 1,
  skip: (req) => req.url === '/healthz',
  wait: false,
  headers: 'draft-8',
  policyName: 'api',
  onLimited: (_req, res, _next, limited) => {
    res.statusCode = 429
    res.end(String(limited.retryAfterMs))
  },
}
const middleware = rateLimit(middlewareOptions)
rateLimit({ capacity: 10, refillPerSecond: 1, headers: false })
rateLimit({ limiter, headers: 'legacy' })
// @ts-expect-error not a header format
rateLimit({ limiter, headers: 'draft-9' })
createServer((req, res) => middleware(req, res, () => res.end('ok')))
const grouped: string = clientKey('2001:db8::1')

void [left, leftWithCost, allowed, figures, peeked, p99, closed, now, invalidOption, grouped]

// DistributedTracer
const tracerOptions: DistributedTracerOptions = {
  serviceName: 'svc',
  sampleRate: 0.5,
  sampling: { rules: [{ name: 'GET /health', rate: 0 }, { name: /^db\./, rate: 0.1 }] },
  limits: { maxAttributes: 64, maxEvents: 16, maxAttributeValueLength: 1024 },
  maxMetricNames: 100,
  batch: { maxQueueSize: 100, maxExportBatchSize: 10, scheduledDelayMs: 100, exportTimeoutMs: 1000 },
  exporter: { otlp: { url: 'http://127.0.0.1:4318/v1/traces', headers: { 'x-key': 'k' }, protocol: 'http/json', timeoutMs: 500 } },
  resource: { 'service.version': '1.0.0', replicas: 3, canary: false },
  clock,
}
const tracer = new DistributedTracer(tracerOptions)
new DistributedTracer({ serviceName: 'svc', exporter: 'memory' })
const span: Span = tracer.startSpan('work', { kind: 'server', attributes: { a: 1, b: ['x'] }, startTime: new Date() })
span.setAttribute('k', 'v').setAttributes({ n: 1 }).addEvent('e', { x: true }).recordException(new Error('x'))
span.setStatus('error', 'bad').updateName('renamed')
const ids: string[] = [span.traceId, span.spanId, span.traceparent]
const parentId: string | undefined = span.parentSpanId
const sampledFlag: boolean = span.sampled && span.isRecording()
span.end()
const extracted: SpanContext | null = tracer.extract({ traceparent: '00-...', tracestate: ['a=1'] })
if (extracted) tracer.startSpan('child', { parent: extracted })
tracer.startSpan('child', { parent: span })
tracer.startSpan('child', { parent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' })
const outgoing: Record<string, string> = tracer.inject(span, {})
tracer.inject(span, new Headers())
const activeResult: Promise<number> = tracer.startActiveSpan('op', async (s) => (s.sampled ? 1 : 0))
const syncResult: string = tracer.startActiveSpan('op', { kind: 'client' }, () => 'done')
tracer.withSpan(span, () => tracer.active())
const current: string | undefined = tracer.currentTraceId()
const tracerMetrics: TracerMetrics = tracer.metrics()
const finished: FinishedSpan[] = tracer.finishedSpans()
tracer.resetFinishedSpans()
const flushed: Promise<boolean> = tracer.flush()
const shut: Promise<boolean> = tracer.shutdown(1000)
const fetched: Promise<Response> = tracer.fetch('http://127.0.0.1:1/', { method: 'POST', headers: { 'x-a': '1' }, body: 'x' })
tracer.fetch(new URL('http://127.0.0.1:1/'))
tracer.fetch(new Request('http://127.0.0.1:1/'), { headers: new Headers() })
// @ts-expect-error input must be a string, URL or Request
tracer.fetch(1)
// @ts-expect-error serviceName is required
new DistributedTracer({ sampleRate: 1 })
// @ts-expect-error unknown exporter
new DistributedTracer({ serviceName: 'svc', exporter: 'zipkin' })
// @ts-expect-error unknown span kind
tracer.startSpan('x', { kind: 'backend' })
// @ts-expect-error unknown status code
span.setStatus('failed')

const tracingOptions: TracingOptions = {
  tracer,
  ignore: (req) => req.url === '/health',
  spanName: (req: TracingRequest) => `${req.method} custom`,
}
const tracingMiddleware = tracing(tracingOptions)
createServer((req, res) => tracingMiddleware(req, res, (err) => { if (err) res.statusCode = 500; res.end() }))
tracing({ tracer })
// @ts-expect-error tracer is required
tracing({ ignore: () => false })
// @ts-expect-error unknown option
tracing({ tracer, skip: () => false })
// @ts-expect-error spanName returns a string
tracing({ tracer, spanName: () => 1 })

void [ids, parentId, sampledFlag, outgoing, activeResult, syncResult, current, tracerMetrics, finished, flushed, shut, fetched]

const cacheOptions: PersistentCacheOptions = {
  maxEntries: 1000,
  maxBytes: 1 << 20,
  ttlMs: 60_000,
  compression: 'zstd',
  compressMinBytes: 512,
  dir: '/tmp/x',
  diskMaxBytes: 1 << 30,
  hotObjects: 100,
  serveStaleOnError: true,
  clock,
}
const cache = new PersistentCache(cacheOptions)
cache.set('a', 'text').set('b', Buffer.from('x'), { ttlMs: 10, tags: ['t'] })
cache.set('c', { nested: [1, null] })
const cached: unknown = cache.get('a')
const loadedReport: Promise<{ id: number }> = cache.getOrSet('r', async () => ({ id: 1 }), { staleWhileRevalidateMs: 100 })
const cacheStats: PersistentCacheStats = cache.stats()
const removed: number = cache.invalidateTag('t') + cache.invalidatePrefix('a') + cache.clear() + cache.size
const cacheDone: Promise<void> = cache.flush().then(() => cache.close())
const cacheCode: 'ERR_CACHE_LOCKED' | 'ERR_CACHE_CLOSED' | 'ERR_CACHE_DISK' = new CacheError('x', 'ERR_CACHE_CLOSED').code
// @ts-expect-error undefined is not a cache value
cache.set('k', undefined)
// @ts-expect-error unknown compression
new PersistentCache({ maxEntries: 1, compression: 'gzip' })
// @ts-expect-error unknown set option
cache.set('k', 'v', { ttl: 1 })
void [cached, loadedReport, cacheStats, removed, cacheDone, cacheCode]

const breakerOptions: CircuitBreakerOptions = {
  name: 'openai',
  failureRateThreshold: 0.5,
  minimumCalls: 20,
  windowMs: 10_000,
  openMs: 30_000,
  timeoutMs: 5_000,
  isFailure: (error: unknown) => !(error instanceof RangeError),
  critical: true,
  clock,
}
const breaker = new CircuitBreaker(breakerOptions)
const answer: Promise<string> = breaker.fire(async (signal: AbortSignal) => (signal.aborted ? 'no' : 'yes'))
const wrapped: (prompt: string, n: number) => Promise<number> = breaker.wrap(async (prompt: string, n: number) => prompt.length + n)
const breakerState: CircuitBreakerState = breaker.state
const breakerStats: CircuitBreakerStats = breaker.stats()
breaker.on('open', (from: CircuitBreakerState) => void from).on('reject', (error: BreakerOpenError) => void error.retryAfterMs)
breaker.on('timeout', (error: BreakerTimeoutError, ms: number) => void [error.timeoutMs, ms])
// @ts-expect-error fire takes a function
breaker.fire('not a function')
// @ts-expect-error unknown breaker option
new CircuitBreaker({ threshold: 0.5 })
void [answer, wrapped, breakerState, breakerStats]

const obs = new Observability({ service: 'budget-server' })
obs.add('api', limiter).add('openai', breaker).add('providers', cache)
const snapshot: ObservabilitySnapshot = obs.snapshot()
const text: string = obs.prometheus({ openMetrics: true })
const readiness: boolean = obs.ready().ready
const served = observability({ obs, paths: { metrics: '/internal/metrics' } })
// @ts-expect-error obs is required
observability({})
// @ts-expect-error not a block
obs.add('x', {})
void [snapshot, text, readiness, served]

interface FakeClient { query(sql: string): Promise<{ rowCount: number }>; end(): Promise<void> }
const fakeClient = (): FakeClient => ({ query: async () => ({ rowCount: 1 }), end: async () => {} })
const pool = new ConnectionPool<FakeClient>({
  create: async () => fakeClient(),
  destroy: (client) => client.end(),
  validate: async (client) => (await client.query('SELECT 1')).rowCount === 1,
  isBroken: (error) => error instanceof Error && error.message.includes('terminated'),
  min: 2,
  max: 10,
  acquireTimeoutMs: 5000,
  createRetry: { retries: 5, backoffMs: 100 },
  clock,
})
const rowCount: Promise<number> = pool.use(async (client) => (await client.query('SELECT now()')).rowCount, { priority: 1 })
const borrowed: Promise<FakeClient> = pool.acquire({ timeoutMs: 100, signal: AbortSignal.timeout(50) })
borrowed.then((client) => pool.release(client))
const poolStats: ConnectionPoolStats = pool.stats()
const poolP99: number = poolStats.acquireWaitMs.p99
pool.on('leak', (leak) => void [leak.stack, leak.heldMs]).on('destroy', (client: FakeClient, reason) => void [client, reason])
pool.on('error', (error, info) => void [error, info.source])
const drained: Promise<void> = pool.drain({ timeoutMs: 1000 })
borrowed.catch((error: unknown) => {
  if (error instanceof PoolTimeoutError) void [error.reason === 'create-failed', error.cause]
  if (error instanceof PoolError) void (error.code === 'ERR_POOL_QUEUE_FULL')
})
// @ts-expect-error create is required
new ConnectionPool({ destroy: () => {} })
// @ts-expect-error unknown option
new ConnectionPool({ create: fakeClient, destroy: () => {}, maxSize: 3 })
obs.add('db', pool)
void [rowCount, poolP99, drained]
const qo = new QueryOptimizer({ dialect: 'postgres', nPlusOne: { threshold: 5, minTotalMs: 10 }, slowQueryMs: 500 })
const printed: string = qo.fingerprint('SELECT 1').fingerprint
const findings: QueryFinding[] = qo.analyze('SELECT * FROM t')
qo.record('SELECT 1', 2.5, { traceId: 'abc', rows: 1 })
const top: QueryStats[] = qo.stats({ top: 10, sortBy: 'p95Ms' })
const durationBounds: readonly number[] = top[0].durationHistogram.boundsMs
const repeated: NPlusOneFinding[] = qo.nPlusOne()
qo.on('nplusone', (f: NPlusOneFinding) => void f.suggestion).on('slow', (e) => void e.durationMs)
const fakePool = { query: async (text: string) => ({ rows: [text], rowCount: 1 }), totalCount: 0 }
const measured: typeof fakePool = qo.instrument(fakePool, { tracer: new DistributedTracer({ serviceName: 's' }) })
const users = qo.loader(async (ids: readonly number[]) => ids.map((id) => ({ id })), { maxBatchSize: 100, maxCacheSize: 1000 })
const user: Promise<{ id: number }> = users.load(1)
const swapped = new Loader<string, number>(async (keys) => keys.map((k) => k.length))
// @ts-expect-error unknown dialect
new QueryOptimizer({ dialect: 'oracle' })
// @ts-expect-error sortBy is one of four
qo.stats({ sortBy: 'name' })
void [printed, findings, top, repeated, measured, user, swapped]
// RateLimiter with a Redis store
import { StoreAsyncError, type RedisStoreOptions, type RateLimiterStoreStats } from '..'
const redisOptions: RedisStoreOptions = { url: 'redis://127.0.0.1:6379', keyPrefix: 'app:rl:', connectTimeoutMs: 200, commandTimeoutMs: 500, retryMs: 1000 }
const shared = new RateLimiter({ capacity: 10, refillPerSecond: 1, store: { redis: redisOptions }, onStoreError: 'local' })
const consumed: Promise<RateLimitDecision> = shared.consume('k', 2)
const isRemote: boolean = shared.remote
const storeStats: RateLimiterStoreStats | undefined = shared.stats().store
const asyncCode: 'ERR_STORE_ASYNC' = codes.STORE_ASYNC
try {
  shared.tryConsume('k')
} catch (error) {
  if (error instanceof StoreAsyncError) {
    const code: 'ERR_STORE_ASYNC' = error.code
    void code
  }
}
// @ts-expect-error the policies are deny, allow and local
new RateLimiter({ capacity: 1, refillPerSecond: 1, store: { redis: {} }, onStoreError: 'retry' })
// @ts-expect-error a store names its kind
new RateLimiter({ capacity: 1, refillPerSecond: 1, store: { url: 'redis://x' } })
void [consumed, isRemote, storeStats, asyncCode]

// PersistentCache with a Redis tier
import { type CacheRedisOptions, type CacheRedisStats } from '..'
const cacheRedis: CacheRedisOptions = { url: 'redis://127.0.0.1:6379', keyPrefix: 'app:cache:', channel: 'app:inv', connectTimeoutMs: 200, commandTimeoutMs: 500, retryMs: 1000 }
const shared2 = new PersistentCache<{ id: number }>({ maxEntries: 100, redis: cacheRedis })
const fromRedis: Promise<{ id: number } | undefined> = shared2.getAsync('k')
const tierStats: CacheRedisStats | undefined = shared2.stats().redis
// @ts-expect-error the channel is a string
new PersistentCache({ maxEntries: 1, redis: { channel: 1 } })
void [fromRedis, tierStats]
