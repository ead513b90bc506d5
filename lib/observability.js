'use strict'
// Observability: one place that knows every block a service registered, and shows them as a
// JSON snapshot, as Prometheus (or OpenMetrics) text, and as health and readiness.
//
// It only reads each block's own stats() / metrics(): the figures are made by the blocks (in
// Rust, off the V8 heap); this file names them and lays them out. Rendering is plain string
// building, a few microseconds per series.
const { RateLimiter } = require('./limiter')
const { DistributedTracer } = require('./tracer')
const { PersistentCache } = require('./cache')
const { CircuitBreaker } = require('./breaker')
const { ConnectionPool } = require('./pool')
const { QueryOptimizer } = require('./query')
const { invalidArgument, invalidOption, describe } = require('./errors')

const VERSION = require('../package.json').version
const OPTIONS = new Set(['service'])
const MAX_NAME_LENGTH = 128

const KINDS = [
  { kind: 'rateLimiter', Class: RateLimiter },
  { kind: 'tracer', Class: DistributedTracer },
  { kind: 'cache', Class: PersistentCache },
  { kind: 'circuitBreakers', Class: CircuitBreaker },
  { kind: 'pools', Class: ConnectionPool },
  { kind: 'queries', Class: QueryOptimizer },
]

/** How many statements (by total time) and N+1 findings (most recent) a snapshot or scrape shows per optimizer. */
const QUERY_TOP = 20
const fingerprintLabel = (q) => `,fingerprint="${q.fingerprint}"`

// A family's `each(stats, emit)` calls `emit(labels, value, suffix?, le?)` for each of its
// samples, where `labels` is what follows the block's own labels (empty, or `,span="GET /"` and
// the like), `suffix` follows the family name (`_bucket`, `_sum`, `_count`) and `le` is a
// bucket's bound label: a scrape of 10,000 series then builds its lines and little else.
const counter = (name, help, value) => ({ name, type: 'counter', help, each: (s, emit) => emit('', value(s)) })
const gauge = (name, help, value) => ({ name, type: 'gauge', help, each: (s, emit) => emit('', value(s)) })
/**
 * A histogram family: `read(stats)` yields `[labels, { boundsMs, counts, sumMs, count }]` for
 * each series, written as cumulative `_bucket` lines (bounds in seconds), `_sum` and `_count`.
 */
const histogram = (name, help, read) => ({
  name,
  type: 'histogram',
  help,
  each: (s, emit) => {
    for (const [labels, h] of read(s)) {
      const le = leLabels(h.boundsMs)
      for (let i = 0; i < le.length; i++) emit(labels, h.counts[i], '_bucket', le[i])
      emit(labels, h.count, '_bucket', LE_INF)
      emit(labels, h.sumMs / 1000, '_sum')
      emit(labels, h.count, '_count')
    }
  },
})
/**
 * The `,le="…"` labels (in seconds) of histogram bounds given in ms. Every series of a family
 * shares its bounds, so the last list made is kept and reused while the bounds are the same:
 * formatting 0.0025 and the like once per scrape instead of once per series.
 */
let lastBoundsMs = []
let lastLe = []
function leLabels(boundsMs) {
  if (boundsMs !== lastBoundsMs) {
    let same = boundsMs.length === lastBoundsMs.length
    for (let i = 0; same && i < boundsMs.length; i++) same = boundsMs[i] === lastBoundsMs[i]
    if (!same) lastLe = boundsMs.map((bound) => `,le="${bound / 1000}"`)
    lastBoundsMs = boundsMs
  }
  return lastLe
}
const LE_INF = ',le="+Inf"'
const BREAKER_STATES = ['closed', 'open', 'halfOpen', 'forcedOpen', 'disabled'].map((state) => ({ state, label: `,state="${state}"` }))
const spanLabel = (span) => `,span="${escapeLabel(span)}"`

/** The metric families of each kind of block: Prometheus names (without the `bulwark_` prefix). */
const FAMILIES = {
  rateLimiter: [
    counter('rate_limiter_allowed_total', 'Requests the limiter allowed.', (s) => s.allowed),
    counter('rate_limiter_rejected_total', 'Requests the limiter refused.', (s) => s.rejected),
    counter('rate_limiter_blocked_total', 'Requests refused because their key was blocked.', (s) => s.blocked),
    counter('rate_limiter_waited_total', 'Requests granted after waiting in the fair queue.', (s) => s.waited),
    counter('rate_limiter_timed_out_total', 'Waits that ran out of time.', (s) => s.timedOut),
    counter('rate_limiter_evicted_total', 'Buckets evicted to stay within maxKeys.', (s) => s.evicted),
    gauge('rate_limiter_queued', 'Requests waiting in the fair queue now.', (s) => s.queued),
    gauge('rate_limiter_keys', 'Keys held now.', (s) => s.keys),
    histogram('rate_limiter_wait_seconds', 'Time waited in the fair queue by granted requests.', (s) => [['', s.waitHistogram]]),
  ],
  tracer: [
    counter('tracer_spans_started_total', 'Spans started, sampled or not.', (s) => s.started),
    counter('tracer_spans_sampled_total', 'Spans started with a sampled decision.', (s) => s.sampled),
    counter('tracer_spans_exported_total', 'Sampled spans the exporter delivered.', (s) => s.exported),
    counter('tracer_spans_dropped_total', 'Sampled spans not exported (full queue, shut down, or a failed batch).', (s) => s.dropped),
    counter('tracer_export_errors_total', 'Failed export attempts.', (s) => s.exportErrors),
    counter('tracer_export_cpu_seconds_total', 'CPU time the export thread has used.', (s) => s.exportCpuMs / 1000),
    gauge('tracer_live_spans', 'Spans started and not ended.', (s) => s.liveSpans),
    {
      name: 'tracer_span_count_total',
      type: 'counter',
      help: 'Spans ended, by span name.',
      each: (s, emit) => {
        for (const [label, m] of s.spanSeries) emit(label, m.count)
      },
    },
    {
      name: 'tracer_span_errors_total',
      type: 'counter',
      help: 'Spans ended with status error, by span name.',
      each: (s, emit) => {
        for (const [label, m] of s.spanSeries) emit(label, m.errors)
      },
    },
    histogram('tracer_span_duration_seconds', 'Span durations by span name.', function* (s) {
      for (const [label, m] of s.spanSeries) {
        yield [label, { boundsMs: s.durationBoundsMs, counts: m.buckets, sumMs: m.sumMs, count: m.count }]
      }
    }),
  ],
  cache: [
    counter('cache_hits_total', 'Lookups that found a live value.', (s) => s.hits),
    counter('cache_misses_total', 'Lookups that found nothing.', (s) => s.misses),
    counter('cache_sets_total', 'Values set.', (s) => s.sets),
    counter('cache_deletes_total', 'Entries deleted.', (s) => s.deletes),
    counter('cache_evictions_total', 'Entries evicted to stay within the bounds.', (s) => s.evictions),
    counter('cache_expirations_total', 'Entries removed because their time was up.', (s) => s.expirations),
    gauge('cache_entries', 'Entries held now.', (s) => s.entries),
    gauge('cache_bytes', 'Bytes held now.', (s) => s.bytes),
    counter('cache_memory_hits_total', 'Hits served by the memory tier.', (s) => s.memory.hits),
    counter('cache_disk_hits_total', 'Hits served by the disk tier.', (s) => s.disk.hits),
    counter('cache_disk_writes_total', 'Entries written to disk.', (s) => s.disk.writes),
    counter('cache_disk_errors_total', 'Disk failures (the cache kept serving from memory).', (s) => s.disk.errors),
    counter('cache_disk_skipped_total', 'Writes kept in memory only (the disk writer behind, or the tier resetting).', (s) => s.disk.skipped),
    counter('cache_disk_resets_total', 'Times the disk tier was emptied and made anew (a failed write, a damaged file).', (s) => s.disk.resets),
    counter('cache_loads_total', 'Loader calls made by getOrSet.', (s) => s.loads.calls),
    counter('cache_load_errors_total', 'Loader calls that failed.', (s) => s.loads.errors),
  ],
  pools: [
    gauge('pool_resources', 'Resources held now (idle, borrowed, validating, being created).', (s) => s.size),
    gauge('pool_idle', 'Idle resources now.', (s) => s.idle),
    gauge('pool_borrowed', 'Resources lent out now.', (s) => s.borrowed),
    gauge('pool_pending', 'Callers waiting for a resource now.', (s) => s.pending),
    gauge('pool_max', 'The most resources the pool may hold.', (s) => s.max),
    counter('pool_created_total', 'Resources created.', (s) => s.created),
    counter('pool_destroyed_total', 'Resources destroyed.', (s) => s.destroyed),
    counter('pool_create_errors_total', 'Failed create attempts.', (s) => s.createErrors),
    counter('pool_validation_failures_total', 'Resources that failed validation (destroyed and replaced).', (s) => s.validationFailures),
    counter('pool_acquires_total', 'Resources handed out.', (s) => s.acquired),
    counter('pool_acquire_timeouts_total', 'Acquires that ran out of time.', (s) => s.acquireTimeouts),
    counter('pool_leaks_total', 'Resources held longer than leakDetectionMs.', (s) => s.leaks),
    histogram('pool_acquire_wait_seconds', 'Time callers waited for a resource (zero waits included).', (s) => [['', s.acquireWaitHistogram]]),
  ],
  queries: [
    {
      name: 'query_calls_total',
      type: 'counter',
      help: `Statements run, by fingerprint (the ${QUERY_TOP} with the most total time).`,
      each: (s, emit) => {
        for (const q of s.top) emit(fingerprintLabel(q), q.calls)
      },
    },
    {
      name: 'query_errors_total',
      type: 'counter',
      help: 'Statements that failed, by fingerprint.',
      each: (s, emit) => {
        for (const q of s.top) emit(fingerprintLabel(q), q.errors)
      },
    },
    {
      name: 'query_slow_total',
      type: 'counter',
      help: 'Statements at or above slowQueryMs, by fingerprint.',
      each: (s, emit) => {
        for (const q of s.top) emit(fingerprintLabel(q), q.slow)
      },
    },
    {
      name: 'query_time_seconds_total',
      type: 'counter',
      help: 'Time spent in statements, by fingerprint.',
      each: (s, emit) => {
        for (const q of s.top) emit(fingerprintLabel(q), q.totalMs / 1000)
      },
    },
    histogram('query_duration_seconds', 'Statement durations by fingerprint.', (s) => s.top.map((q) => [fingerprintLabel(q), q.durationHistogram])),
    gauge('query_nplusone_findings', 'N+1 findings held now (recent traces).', (s) => s.nPlusOneHeld),
  ],
  circuitBreakers: [
    {
      name: 'circuit_breaker_state',
      type: 'gauge',
      help: 'The breaker state: 1 for the current one, 0 for the others.',
      each: (s, emit) => {
        for (const b of BREAKER_STATES) emit(b.label, s.state === b.state ? 1 : 0)
      },
    },
    counter('circuit_breaker_calls_total', 'Calls that ran.', (s) => s.calls),
    counter('circuit_breaker_failures_total', 'Calls that failed.', (s) => s.failures),
    counter('circuit_breaker_slow_calls_total', 'Calls slower than slowCallMs.', (s) => s.slowCalls),
    counter('circuit_breaker_rejected_total', 'Calls refused without running.', (s) => s.rejected),
    counter('circuit_breaker_timeouts_total', 'Calls that ran past timeoutMs.', (s) => s.timeouts),
    gauge('circuit_breaker_failure_rate', 'Failure rate over the window.', (s) => s.failureRate),
    gauge('circuit_breaker_slow_call_rate', 'Slow-call rate over the window.', (s) => s.slowCallRate),
  ],
}

/** A label value as the exposition formats want it: backslash, quote and newline escaped. */
function escapeLabel(value) {
  const text = String(value)
  // most values need nothing done: skip the three replaces for them
  if (!/[\\"\n]/.test(text)) return text
  return text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/** A sample value: integers as they are, other numbers in JS notation, non-finite by name. */
function formatValue(value) {
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  if (Number.isNaN(value) || typeof value !== 'number') return 'NaN'
  return String(value)
}

/**
 * The stats of a block as a scrape reads them: for a tracer, each span name's label is made once
 * (`spanSeries`: [label, figures] in name order) for the three families that use it.
 */
function scrapeStatsOf(kind, block) {
  const stats = statsOf(kind, block)
  if (kind === 'tracer') {
    const spanSeries = []
    for (const span in stats.spans) spanSeries.push([spanLabel(span), stats.spans[span]])
    stats.spanSeries = spanSeries
  }
  return stats
}

/** The stats of a block, read the way its kind reads them. */
function statsOf(kind, block) {
  if (kind === 'tracer') return block.metrics()
  if (kind === 'queries') {
    const nPlusOne = block.nPlusOne()
    return { top: block.stats({ top: QUERY_TOP, sortBy: 'totalMs' }), nPlusOne: nPlusOne.slice(-QUERY_TOP), nPlusOneHeld: nPlusOne.length }
  }
  return block.stats()
}

class Observability {
  #service
  #started = Date.now()
  /** kind -> Map(name -> block), in registration order. */
  #blocks = new Map(KINDS.map(({ kind }) => [kind, new Map()]))
  #names = new Set()

  /** @param {{ service: string }} options */
  constructor(options) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw invalidOption(TypeError, `options must be an object with service, received ${describe(options)}`)
    }
    for (const key of Object.keys(options)) {
      if (!OPTIONS.has(key)) throw invalidOption(TypeError, `options has an unknown option "${key}"; known options are: service`)
    }
    const { service } = options
    if (typeof service !== 'string' || service === '' || service.length > MAX_NAME_LENGTH) {
      throw invalidOption(TypeError, `options.service must be a non-empty string of at most ${MAX_NAME_LENGTH} characters, received ${describe(service)}`)
    }
    this.#service = service
  }

  /** The service name the output is labelled with. */
  get service() {
    return this.#service
  }

  /**
   * Registers a block (a RateLimiter, DistributedTracer, PersistentCache, CircuitBreaker,
   * ConnectionPool or QueryOptimizer)
   * under `name`, unique across blocks. Returns this, so calls chain.
   */
  add(name, block) {
    if (typeof name !== 'string' || name === '' || name.length > MAX_NAME_LENGTH) {
      throw invalidArgument(TypeError, `name must be a non-empty string of at most ${MAX_NAME_LENGTH} characters, received ${describe(name)}`)
    }
    if (this.#names.has(name)) {
      throw invalidArgument(RangeError, `name "${name}" is already registered`)
    }
    const entry = KINDS.find(({ Class }) => block instanceof Class)
    if (entry === undefined) {
      throw invalidArgument(TypeError, `block must be a RateLimiter, DistributedTracer, PersistentCache, CircuitBreaker, ConnectionPool or QueryOptimizer, received ${describe(block)}`)
    }
    this.#blocks.get(entry.kind).set(name, block)
    this.#names.add(name)
    return this
  }

  /** Every registered block's figures, under its kind and name, as one JSON-ready object. */
  snapshot() {
    const now = Date.now()
    const out = {
      service: this.#service,
      version: VERSION,
      uptimeSeconds: Math.round((now - this.#started) / 1000),
      timestamp: new Date(now).toISOString(),
    }
    for (const { kind } of KINDS) {
      if (kind === 'queries') continue
      out[kind] = {}
      for (const [name, block] of this.#blocks.get(kind)) {
        out[kind][name] = this.#safeStats(kind, block)
      }
    }
    // queries: one list of the costliest statements and one of N+1 findings, over every
    // registered optimizer (each entry says which)
    out.queries = { top: [], nPlusOne: [] }
    for (const [name, block] of this.#blocks.get('queries')) {
      const stats = this.#safeStats('queries', block)
      if (stats.error !== undefined) continue
      for (const q of stats.top) out.queries.top.push({ optimizer: name, ...q })
      for (const f of stats.nPlusOne) out.queries.nPlusOne.push({ optimizer: name, ...f })
    }
    out.queries.top.sort((a, b) => b.totalMs - a.totalMs)
    out.queries.top.length = Math.min(out.queries.top.length, QUERY_TOP)
    return out
  }

  #safeStats(kind, block) {
    try {
      return statsOf(kind, block)
    } catch (error) {
      // a closed cache, say: the snapshot still renders, and says why this block is missing
      return { error: error && error.message ? error.message : String(error) }
    }
  }

  /**
   * The registered blocks' metrics in the Prometheus text exposition format (0.0.4), or in
   * OpenMetrics 1.0 with `{ openMetrics: true }`. Names start with `bulwark_`, counters end in
   * `_total`, durations are in seconds, and every series has `service` and `name` labels.
   */
  prometheus(options = {}) {
    const openMetrics = options !== null && typeof options === 'object' && options.openMetrics === true
    const service = escapeLabel(this.#service)
    let out = ''
    for (const { kind } of KINDS) {
      const blocks = this.#blocks.get(kind)
      if (blocks.size === 0) continue
      // (label prefix, stats) of each block that can answer now; a closed one is left out
      const stats = []
      for (const [name, block] of blocks) {
        try {
          stats.push([`service="${service}",name="${escapeLabel(name)}"`, scrapeStatsOf(kind, block)])
        } catch {
          // a block that cannot answer now (closed) is left out of this scrape
        }
      }
      for (const family of FAMILIES[kind]) {
        const full = `bulwark_${family.name}`
        // OpenMetrics names a counter family without its _total suffix
        const familyName = openMetrics && family.type === 'counter' ? full.replace(/_total$/, '') : full
        out += `# HELP ${familyName} ${family.help}\n# TYPE ${familyName} ${family.type}\n`
        for (const [base, s] of stats) {
          // a series' name and labels are joined once for all its lines (a histogram's buckets
          // share them): each join is a string node that lives until the scrape returns
          let seriesLabels = null
          let seriesSuffix = null
          let seriesHead = ''
          family.each(s, (labels, value, suffix, le) => {
            if (labels !== seriesLabels || suffix !== seriesSuffix) {
              seriesHead = `${full}${suffix === undefined ? '' : suffix}{${base}${labels}`
              seriesLabels = labels
              seriesSuffix = suffix
            }
            out += `${seriesHead}${le === undefined ? '' : le}} ${formatValue(value)}\n`
          })
        }
      }
    }
    if (openMetrics) out += '# EOF\n'
    return out
  }

  /** Liveness: the process answers. */
  health() {
    return { status: 'ok', service: this.#service, uptimeSeconds: Math.round((Date.now() - this.#started) / 1000) }
  }

  /**
   * Readiness: false, with the reasons, while a circuit breaker registered with `critical: true`
   * is open (or forced open), or a pool is closed or has no resource and cannot create one (its
   * database is down).
   */
  ready() {
    const reasons = []
    for (const [name, breaker] of this.#blocks.get('circuitBreakers')) {
      const state = breaker.state
      if (breaker.critical && (state === 'open' || state === 'forcedOpen')) {
        reasons.push(`circuit breaker "${name}" is ${state}`)
      }
    }
    for (const [name, pool] of this.#blocks.get('pools')) {
      const s = pool.stats()
      if (s.closed) reasons.push(`pool "${name}" is closed`)
      else if (s.createFailing && s.size - s.creating === 0) reasons.push(`pool "${name}" has no resource and cannot create one`)
    }
    return { ready: reasons.length === 0, reasons }
  }
}

/** The content types of the two exposition formats. */
const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8'

module.exports = { Observability, PROMETHEUS_CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE }
