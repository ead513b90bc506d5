'use strict'
// QueryOptimizer: the native parser, rules, statistics and N+1 detector, plus what is cheaper
// in JS: the fingerprint cache, the record buffer, events, `instrument` and `loader`.
//
// The hot path is a statement seen before. Its fingerprint comes from a bounded Map keyed by the
// exact text (no crossing), and recording a call writes six numbers into a Float64Array and two
// references into arrays; the buffer crosses into the addon once per 256 calls or once per
// event-loop turn (a setImmediate), whichever comes first, and anything that reads
// the figures (stats, nPlusOne) flushes it first. Only the first sight of a statement crosses on
// its own, and comes back as one string: the fingerprint, the rules it breaks (when recorded),
// its operation and its normalized text.
const { EventEmitter } = require('node:events')
const binding = require('../binding.js')
const { Loader } = require('./loader')
const { invalidArgument, invalidOption, describe } = require('./errors')

const RECORD_WIDTH = 6
/** Where the operation starts in what `_learn` returns (`LEARNED_HEADER` in src/query/binding.rs). */
const LEARNED_HEADER = 24
const BATCH = 256
const DEFAULT_CACHE_SIZE = 5000
const DEFAULT_CACHE_BYTES = 16 << 20
const SORT_BY = new Set(['totalMs', 'calls', 'p95Ms', 'errors'])
const STATS_OPTIONS = new Set(['top', 'sortBy'])
const RECORD_OPTIONS = new Set(['traceId', 'rows', 'error'])
const INSTRUMENT_OPTIONS = new Set(['tracer'])
/** Dialect codes of the addon's static `_fingerprint` (`Dialect::from_code`). */
const DIALECT_CODES = { postgres: 0, mysql: 1, sqlite: 2, generic: 3 }
const nativeFingerprint = binding.QueryOptimizer._fingerprint
const DB_SYSTEM = { postgres: 'postgresql', mysql: 'mysql', sqlite: 'sqlite', generic: 'other_sql' }

/** What the optimizer keeps about a statement text it has seen. */
class Statement {
  /**
   * @param {string} learned what the addon's `_learn` returns: 16 hex digits of fingerprint, 8 of
   * rule bit set (`--------` when not analyzed), the operation, a space, the normalized text.
   */
  constructor(learned) {
    const space = learned.indexOf(' ', LEARNED_HEADER)
    const fingerprint = learned.slice(0, 16)
    const normalized = learned.slice(space + 1)
    /** What `fingerprint()` returns (frozen, shared by every call). */
    this.result = Object.freeze({ fingerprint, normalized })
    this.normalized = normalized
    this.hi = parseInt(learned.slice(0, 8), 16)
    this.lo = parseInt(learned.slice(8, 16), 16)
    /** Rule bit set; -1 until analyzed. */
    this.rules = learned.charCodeAt(16) === 45 /* - */ ? -1 : parseInt(learned.slice(16, LEARNED_HEADER), 16)
    this.operation = learned.slice(LEARNED_HEADER, space)
  }
}

function readCount(opts, name, fallback) {
  const value = opts[name]
  if (value === undefined) return fallback
  if (typeof value !== 'number') throw invalidOption(TypeError, `options.${name} must be a number, received ${describe(value)}`)
  if (!Number.isInteger(value) || value < 0) throw invalidOption(RangeError, `options.${name} must be an integer >= 0, received number ${value}`)
  return value
}

class QueryOptimizer extends EventEmitter {
  #native
  #dialect
  #dialectCode
  #cache = new Map()
  #cacheSize
  #cacheBytes
  #bytes = 0
  #slowMs
  #records = new Float64Array(BATCH * RECORD_WIDTH)
  #texts = new Array(BATCH).fill('')
  #traces = new Array(BATCH).fill('')
  #count = 0
  #immediate = null
  #flushSoon = () => {
    this.#immediate = null
    this.#flush()
  }
  #callbackErrors = 0

  /** @param {import('..').QueryOptimizerOptions} [options] */
  constructor(options) {
    super()
    this.#native = new binding.QueryOptimizer(options)
    const opts = options || {}
    this.#dialect = opts.dialect === undefined ? 'postgres' : opts.dialect
    this.#dialectCode = DIALECT_CODES[this.#dialect]
    this.#cacheSize = readCount(opts, 'cacheSize', DEFAULT_CACHE_SIZE)
    this.#cacheBytes = readCount(opts, 'cacheBytes', DEFAULT_CACHE_BYTES)
    this.#slowMs = opts.slowQueryMs === undefined ? Infinity : opts.slowQueryMs
  }

  /** The dialect the optimizer parses. */
  get dialect() {
    return this.#dialect
  }

  /** `{ fingerprint, normalized }` of `sql`: 16 hex digits, and the text with every literal as `?`. */
  fingerprint(sql) {
    const known = this.#cache.get(sql)
    if (known !== undefined) return known.result
    if (typeof sql !== 'string') throw invalidArgument(TypeError, `sql must be a string, received ${describe(sql)}`)
    return this.#learn(sql, false).result
  }

  /** The anti-pattern findings of `sql`: `[{ rule, severity, message, suggestion }]`. */
  analyze(sql) {
    if (typeof sql !== 'string') throw invalidArgument(TypeError, `sql must be a string, received ${describe(sql)}`)
    return this.#native._analyze(sql)
  }

  /**
   * Records one execution of `sql` that took `durationMs`, in trace `info.traceId` (for N+1
   * detection), with `info.rows` rows, failed when `info.error` is set.
   */
  record(sql, durationMs, info) {
    if (typeof sql !== 'string') throw invalidArgument(TypeError, `sql must be a string, received ${describe(sql)}`)
    if (typeof durationMs !== 'number') throw invalidArgument(TypeError, `durationMs must be a number, received ${describe(durationMs)}`)
    if (!(durationMs >= 0) || durationMs === Infinity) throw invalidArgument(RangeError, `durationMs must be a finite number >= 0, received number ${durationMs}`)
    let traceId
    let rows = NaN
    let failed = false
    if (info !== undefined) {
      if (info === null || typeof info !== 'object') throw invalidArgument(TypeError, `info must be an object, received ${describe(info)}`)
      for (const key of Object.keys(info)) {
        if (!RECORD_OPTIONS.has(key)) throw invalidArgument(TypeError, `info has an unknown field "${key}"; known fields are: ${[...RECORD_OPTIONS].join(', ')}`)
      }
      if (info.traceId !== undefined && info.traceId !== null) {
        if (typeof info.traceId !== 'string') throw invalidArgument(TypeError, `info.traceId must be a string, received ${describe(info.traceId)}`)
        traceId = info.traceId
      }
      if (info.rows !== undefined && info.rows !== null) {
        if (typeof info.rows !== 'number' || !(info.rows >= 0)) throw invalidArgument(TypeError, `info.rows must be a number >= 0, received ${describe(info.rows)}`)
        rows = info.rows
      }
      failed = info.error !== undefined && info.error !== null && info.error !== false
    }
    this.#push(this.#statement(sql), durationMs, traceId, rows, failed)
  }

  /** Recent N+1 findings, oldest first: `[{ traceId, fingerprint, normalized, count, totalMs, suggestion }]`. */
  nPlusOne() {
    this.#flush()
    return this.#native._nPlusOne()
  }

  /** Per-fingerprint statistics, like pg_stat_statements: the `top` by `sortBy` (default totalMs). */
  stats(options) {
    let top = null
    let sortBy = 'totalMs'
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw invalidArgument(TypeError, `options must be an object, received ${describe(options)}`)
      for (const key of Object.keys(options)) {
        if (!STATS_OPTIONS.has(key)) throw invalidArgument(TypeError, `options has an unknown option "${key}"; known options are: top, sortBy`)
      }
      if (options.top !== undefined) {
        if (typeof options.top !== 'number') throw invalidArgument(TypeError, `options.top must be a number, received ${describe(options.top)}`)
        if (!Number.isInteger(options.top) || options.top < 1) throw invalidArgument(RangeError, `options.top must be an integer >= 1, received number ${options.top}`)
        top = Math.min(options.top, 0xffffffff)
      }
      if (options.sortBy !== undefined) {
        if (!SORT_BY.has(options.sortBy)) throw invalidArgument(RangeError, `options.sortBy must be one of ${[...SORT_BY].join(', ')}, received ${describe(options.sortBy)}`)
        sortBy = options.sortBy
      }
    }
    this.#flush()
    return this.#native._stats(top, sortBy)
  }

  /** Forgets statistics, traces, findings and cached fingerprints. */
  reset() {
    this.#count = 0
    this.#native._reset()
    this.#cache.clear()
    this.#bytes = 0
  }

  /** Sizes: statements cached, fingerprints with statistics, traces followed, calls waiting to be recorded. */
  get size() {
    this.#flush()
    const [fingerprints, traces] = this.#native._sizes()
    return { cachedStatements: this.#cache.size, fingerprints, traces, callbackErrors: this.#callbackErrors }
  }

  /**
   * Wraps a pg Pool, a pg Client, or a pool with `use`/`acquire`/`release` (the package's
   * ConnectionPool) so that every `query()` is fingerprinted, timed, recorded with the active
   * trace id and, with a tracer, run in a client span. Returns the wrapper; the original is left
   * untouched.
   */
  instrument(target, options) {
    let tracer = null
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw invalidArgument(TypeError, `options must be an object, received ${describe(options)}`)
      for (const key of Object.keys(options)) {
        if (!INSTRUMENT_OPTIONS.has(key)) throw invalidArgument(TypeError, `options has an unknown option "${key}"; known options are: tracer`)
      }
      if (options.tracer !== undefined && options.tracer !== null) {
        const t = options.tracer
        if (typeof t !== 'object' || typeof t.startSpan !== 'function' || typeof t.active !== 'function') {
          throw invalidArgument(TypeError, `options.tracer must be a DistributedTracer, received ${describe(t)}`)
        }
        tracer = t
      }
    }
    if (target === null || typeof target !== 'object') {
      throw invalidArgument(TypeError, `instrument() needs a pg Pool, a pg Client or a pool with use/acquire/release, received ${describe(target)}`)
    }
    const hooks = this.#hooks(tracer)
    if (typeof target.use === 'function' && typeof target.acquire === 'function' && typeof target.release === 'function') {
      return instrumentResourcePool(target, hooks)
    }
    if (typeof target.query === 'function') {
      return instrumentPg(target, hooks, typeof target.totalCount === 'number' && typeof target.connect === 'function')
    }
    throw invalidArgument(TypeError, 'instrument() needs a pg Pool, a pg Client or a pool with use/acquire/release: the object has no query() and no use/acquire/release')
  }

  /** A DataLoader-compatible loader (see `Loader`). */
  loader(batchFn, options) {
    return new Loader(batchFn, options)
  }

  /** The statement of `sql`, learned (and analyzed) on first sight. */
  #statement(sql) {
    const known = this.#cache.get(sql)
    if (known !== undefined && known.rules !== -1) return known
    return this.#learn(sql, true)
  }

  #learn(sql, analyze) {
    const statement = new Statement(analyze ? this.#native._learn(sql, true) : nativeFingerprint(sql, this.#dialectCode))
    const cache = this.#cache
    if (this.#cacheSize > 0 && sql.length <= this.#cacheBytes >>> 3) {
      if (cache.has(sql)) {
        cache.set(sql, statement)
      } else {
        cache.set(sql, statement)
        this.#bytes += sql.length
        while (cache.size > this.#cacheSize || this.#bytes > this.#cacheBytes) {
          const oldest = cache.keys().next().value
          cache.delete(oldest)
          this.#bytes -= oldest.length
        }
      }
    }
    return statement
  }

  #push(statement, durationMs, traceId, rows, failed) {
    const n = this.#count
    const i = n * RECORD_WIDTH
    const r = this.#records
    r[i] = statement.hi
    r[i + 1] = statement.lo
    r[i + 2] = durationMs
    r[i + 3] = rows
    r[i + 4] = failed ? 1 : 0
    r[i + 5] = statement.rules
    this.#texts[n] = statement.normalized
    this.#traces[n] = traceId === undefined ? '' : traceId
    this.#count = n + 1
    if (n + 1 === BATCH) this.#flush()
    else if (this.#immediate === null) {
      // ref()ed: it runs on the next turn of the loop and holds nothing longer than that
      this.#immediate = setImmediate(this.#flushSoon)
    }
    if (durationMs >= this.#slowMs && this.listenerCount('slow') !== 0) {
      this.#emit('slow', { fingerprint: statement.result.fingerprint, normalized: statement.normalized, durationMs, traceId })
    }
  }

  #flush() {
    const count = this.#count
    if (count === 0) return
    this.#count = 0
    if (this.#immediate !== null) {
      clearImmediate(this.#immediate)
      this.#immediate = null
    }
    const found = this.#native._flush(this.#records, count, this.#texts, this.#traces)
    for (let i = 0; i < found.length; i++) this.#emit('nplusone', found[i])
  }

  /** Emits an event; a listener that throws is counted and reported, never rethrown. */
  #emit(type, value) {
    try {
      this.emit(type, value)
    } catch (error) {
      this.#callbackErrors++
      process.emitWarning(`QueryOptimizer: a '${type}' listener threw: ${error && error.message}`, { code: 'BULWARK_QUERY_CALLBACK', detail: error && error.stack })
    }
  }

  /** What an instrumented query calls: `begin(sql)` before, `end(call, error, result)` after. */
  #hooks(tracer) {
    const optimizer = this
    const system = DB_SYSTEM[this.#dialect]
    // trace ids by active span: a request's queries share one span, so its id is made once
    const traceIds = new WeakMap()
    return {
      begin(sql) {
        const statement = optimizer.#statement(sql)
        let traceId
        let span = null
        if (tracer !== null) {
          const active = tracer.active()
          if (active !== undefined) {
            traceId = traceIds.get(active)
            if (traceId === undefined) {
              traceId = active.traceId
              traceIds.set(active, traceId)
            }
          }
          span = tracer.startSpan(statement.operation || 'query', { kind: 'client' })
          if (span.sampled) {
            span.setAttribute('db.system', system)
            if (statement.operation) span.setAttribute('db.operation.name', statement.operation)
            span.setAttribute('db.query.text', statement.normalized)
          }
        }
        return new Call(statement, traceId, span, performance.now())
      },
      end(call, error, result) {
        const durationMs = performance.now() - call.start
        const rows = result !== null && typeof result === 'object' && typeof result.rowCount === 'number' ? result.rowCount : NaN
        optimizer.#push(call.statement, durationMs, call.traceId, rows, error !== null && error !== undefined)
        const span = call.span
        if (span !== null) {
          if (error !== null && error !== undefined) {
            span.recordException(error)
            span.setStatus('error', error && typeof error.message === 'string' ? error.message : String(error))
          } else if (rows === rows && span.sampled) {
            span.setAttribute('db.response.returned_rows', rows)
          }
          span.end()
        }
      },
    }
  }
}

/** One query in flight. */
class Call {
  constructor(statement, traceId, span, start) {
    this.statement = statement
    this.traceId = traceId
    this.span = span
    this.start = start
  }
}

/** The SQL text of pg's `query()` first argument, or undefined (a Submittable, or bad input that pg reports itself). */
function sqlOf(config) {
  if (typeof config === 'string') return config
  if (config !== null && typeof config === 'object' && typeof config.text === 'string' && typeof config.submit !== 'function') return config.text
  return undefined
}

/** pg's `query(config, values?, callback?)`, measured. */
function measuredQuery(target, hooks) {
  const query = target.query
  return function instrumentedQuery(config, values, callback) {
    const sql = sqlOf(config)
    if (sql === undefined) return query.apply(target, arguments)
    const call = hooks.begin(sql)
    const cb = typeof values === 'function' ? values : typeof callback === 'function' ? callback : null
    if (cb !== null) {
      const done = (error, result) => {
        hooks.end(call, error, result)
        return cb(error, result)
      }
      return typeof values === 'function' ? query.call(target, config, done) : query.call(target, config, values, done)
    }
    let result
    try {
      result = arguments.length < 2 ? query.call(target, config) : query.call(target, config, values)
    } catch (error) {
      hooks.end(call, error, null)
      throw error
    }
    if (result === null || typeof result !== 'object' || typeof result.then !== 'function') {
      hooks.end(call, null, result)
      return result
    }
    // The caller gets pg's own promise: the measuring handlers are registered on it first, so
    // they run before the caller's, and the caller waits no extra turn for a derived promise.
    // The derived promise never rejects (the error handler returns), so nothing goes unhandled.
    result.then(
      (value) => hooks.end(call, null, value),
      (error) => hooks.end(call, error, null),
    )
    return result
  }
}

const kRaw = Symbol('bulwark.instrumentedTarget')

/**
 * A proxy of a pg Pool or Client whose `query` is measured; a pool's `connect()` hands out
 * measured clients. Every other member is the target's own (functions bound to it).
 */
function instrumentPg(target, hooks, isPool) {
  const query = measuredQuery(target, hooks)
  let connect
  if (isPool) {
    const wrap = measuredClients(hooks)
    connect = function instrumentedConnect(callback) {
      if (typeof callback === 'function') {
        return target.connect((error, client, done) => callback(error, wrap(client), done))
      }
      return target.connect().then(wrap)
    }
  }
  return forwardingProxy(target, (prop) => {
    if (prop === 'query') return query
    if (prop === 'connect' && isPool) return connect
    return undefined
  })
}

/** `wrap(client)`: the measured proxy of a pg client, one per client; anything else as it is. */
function measuredClients(hooks) {
  const clients = new WeakMap()
  return (client) => {
    if (client === null || typeof client !== 'object' || typeof client.query !== 'function') return client
    let wrapped = clients.get(client)
    if (wrapped === undefined) {
      wrapped = instrumentPg(client, hooks, false)
      clients.set(client, wrapped)
    }
    return wrapped
  }
}

/**
 * A proxy of `target` whose members are `override(prop)` where it returns one, else the
 * target's own (functions bound to it, each bound once); `kRaw` gives the target back.
 */
function forwardingProxy(target, override) {
  const bound = new Map()
  return new Proxy(target, {
    get(t, prop) {
      if (prop === kRaw) return t
      const replaced = override(prop)
      if (replaced !== undefined) return replaced
      const value = Reflect.get(t, prop, t)
      if (typeof value !== 'function') return value
      let fn = bound.get(prop)
      if (fn === undefined || fn.original !== value) {
        fn = value.bind(t)
        fn.original = value
        bound.set(prop, fn)
      }
      return fn
    },
  })
}

/**
 * A wrapper of a pool with `use`/`acquire`/`release`/`destroy` (the package's ConnectionPool)
 * whose resources are measured pg clients.
 */
function instrumentResourcePool(pool, hooks) {
  const wrap = measuredClients(hooks)
  const raw = (client) => (client !== null && typeof client === 'object' && client[kRaw] !== undefined ? client[kRaw] : client)
  const overrides = {
    use(fn, ...rest) {
      if (typeof fn !== 'function') return pool.use(fn, ...rest)
      return pool.use((client, ...args) => fn(wrap(client), ...args), ...rest)
    },
    acquire(...args) {
      return Promise.resolve(pool.acquire(...args)).then(wrap)
    },
    release(client, ...args) {
      return pool.release(raw(client), ...args)
    },
    destroy(client, ...args) {
      return pool.destroy(raw(client), ...args)
    },
  }
  return forwardingProxy(pool, (prop) =>
    prop === 'use' || prop === 'acquire' || prop === 'release' || (prop === 'destroy' && typeof pool.destroy === 'function') ? overrides[prop] : undefined)
}

module.exports = { QueryOptimizer, Loader }
