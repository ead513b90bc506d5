'use strict'
// DistributedTracer: the native tracer plus the JS-only parts, the `Span` object, header
// propagation and the active span (AsyncLocalStorage).
//
// A span is a number on the native side (a handle whose bit 31 says "sampled"), so `Span` is a
// thin JS object around that number. The hot calls (start, end, setAttribute) are functions
// bound to the tracer's native state; attribute and event calls on an unsampled span never
// cross into native code at all. Sampling rules whose `name` is a RegExp are evaluated here and
// their rate passed to `start`; string rules are matched natively.
const { AsyncLocalStorage } = require('node:async_hooks')
const binding = require('../binding.js')
const { invalidArgument, invalidOption, describe } = require('./errors')

const KINDS = Object.freeze({ internal: 0, server: 1, client: 2, producer: 3, consumer: 4 })
// handles of sampled spans have bit 29 set (see src/tracer/tracer_core.rs)
const RECORDING = 0x20000000
/** How many of a span name's figures in `metrics()`'s native array come before its buckets (see src/tracer/binding.rs). */
const SPAN_FIGURES_BEFORE_BUCKETS = 7
const STATUS_CODES = new Set(['ok', 'error', 'unset'])
const START_OPTIONS = new Set(['parent', 'kind', 'attributes', 'startTime'])
const INVALID_CONTEXT = Object.freeze({
  traceId: '0'.repeat(32),
  spanId: '0'.repeat(16),
  traceFlags: 0,
  isRemote: false,
})

// Cells of the fast path's shared Float64Array (see `io` in src/tracer/binding.rs).
const IO_HANDLE = 10
const IO_NAME = 11
const IO_KIND = 12
const IO_PARENT = 13
const IO_START_TIME = 14
const IO_RATE = 15
const IO_END_HANDLE = 16
const IO_END_TIME = 17
const IO_RENAME_HANDLE = 18
const IO_RENAME_NAME = 19
const IO_ATTR_HANDLE = 20
const IO_ATTR_KEY = 21
const IO_ATTR_TYPE = 22
const IO_ATTR_VALUE = 23
const IO_ATTRS_HANDLE = 24
const IO_ATTRS_COUNT = 25
const IO_ATTRS_KEYS = 26
const ATTRS_PER_CALL = 8
const IO_ATTRS_TYPES = IO_ATTRS_KEYS + ATTRS_PER_CALL
const IO_ATTRS_VALUES = IO_ATTRS_TYPES + ATTRS_PER_CALL
const IO_END_NAME = IO_ATTRS_VALUES + ATTRS_PER_CALL
// the slot of the tracer a fast-path call is for (the functions are shared by every tracer)
const IO_TRACER = IO_END_NAME + 1
const ATTR_NUMBER = 0
const ATTR_BOOLEAN = 1
const ATTR_STRING = 2

const kHandle = Symbol('bulwark.spanHandle')
/** The unchecked start used by `bulwark/express` (see DistributedTracer[kStartSpan]). */
const kStartSpan = Symbol('bulwark.startSpanUnchecked')
const kCore = Symbol('bulwark.spanCore')

/** A time argument (ms since the epoch, or a Date) as ms; undefined means now. */
function toMs(time, name) {
  if (time === undefined) return undefined
  if (time instanceof Date) return time.getTime()
  if (typeof time === 'number' && Number.isFinite(time) && time >= 0) return time
  throw invalidArgument(TypeError, `${name} must be a Date or a number of milliseconds since the epoch, received ${describe(time)}`)
}

function formatTraceparent(ctx) {
  return `00-${ctx.traceId}-${ctx.spanId}-${(ctx.traceFlags & 0xff).toString(16).padStart(2, '0')}`
}

function isContext(value) {
  return value !== null && typeof value === 'object' && typeof value.traceId === 'string' && typeof value.spanId === 'string'
}

/** A 32-bit id word (kept as a signed integer) as 8 lowercase hex digits. */
function hexWord(word) {
  return (word >>> 0).toString(16).padStart(8, '0')
}

/** One span: ids, attributes, events, status and end. Made by `tracer.startSpan`. */
class Span {
  #ctx = null
  #ended = false
  #parent
  // The ids as the native start published them (see `io` in src/tracer/binding.rs): four
  // 32-bit words of trace id and two of span id, each kept as a signed 32-bit integer (`| 0`:
  // a small integer to V8, so keeping them allocates nothing), and the flags. Kept here so that
  // they survive `end()`, which frees the native slot, and so that reading them needs no
  // crossing.
  #t0
  #t1
  #t2
  #t3
  #s0
  #s1
  #flags

  constructor(core, handle, parent, io) {
    this[kCore] = core
    this[kHandle] = handle
    this.#parent = parent
    this.#t0 = io[0] | 0
    this.#t1 = io[1] | 0
    this.#t2 = io[2] | 0
    this.#t3 = io[3] | 0
    this.#s0 = io[4] | 0
    this.#s1 = io[5] | 0
    this.#flags = io[6]
  }

  /** The span's context: ids, flags and trace state (after `end()`, without trace state). */
  spanContext() {
    if (this.#ctx === null) {
      const ctx = this.#ended ? null : this[kCore].native._context(this[kHandle])
      this.#ctx = ctx || (this[kHandle] === 0
        ? INVALID_CONTEXT
        : Object.freeze({ traceId: this.traceId, spanId: this.spanId, traceFlags: this.#flags, isRemote: false }))
    }
    return this.#ctx
  }

  /** 32 lowercase hex digits. */
  get traceId() {
    return hexWord(this.#t0) + hexWord(this.#t1) + hexWord(this.#t2) + hexWord(this.#t3)
  }

  /** 16 lowercase hex digits. */
  get spanId() {
    return hexWord(this.#s0) + hexWord(this.#s1)
  }

  /** The parent's span id, or undefined for a root span. */
  get parentSpanId() {
    const parent = this.#parent
    if (parent === undefined || parent === null) return undefined
    if (parent instanceof Span || isContext(parent)) return parent.spanId
    if (typeof parent === 'string' && parent.length >= 52) return parent.slice(36, 52)
    return undefined
  }

  /** Whether the span was sampled: only sampled spans record and are exported. */
  get sampled() {
    return this[kHandle] >= RECORDING
  }

  /** The W3C `traceparent` value of this span. */
  get traceparent() {
    return formatTraceparent(this.spanContext())
  }

  /** Whether attributes and events set now are kept (sampled and not ended). */
  isRecording() {
    return !this.#ended && this[kHandle] >= RECORDING
  }

  /**
   * Sets one attribute (string, number, boolean or an array of one of them). Numbers, booleans
   * and strings under an interned key are queued and cross with the span's `end()` (or with the
   * next batch of eight); attributes can only be read once the span has ended, so the queue is
   * invisible, and their order is kept.
   */
  setAttribute(key, value) {
    if (this[kHandle] >= RECORDING) this[kCore].queueAttribute(this[kHandle], key, value)
    return this
  }

  /** Sets every own property of `attributes` as an attribute. */
  setAttributes(attributes) {
    if (this[kHandle] >= RECORDING && attributes !== null && typeof attributes === 'object') {
      const core = this[kCore]
      const handle = this[kHandle]
      for (const key of Object.keys(attributes)) core.queueAttribute(handle, key, attributes[key])
    }
    return this
  }

  /** Adds a timestamped event with optional attributes. */
  addEvent(name, attributes, time) {
    if (this[kHandle] >= RECORDING) {
      this[kCore].native._addEvent(this[kHandle], String(name), attributes, toMs(time, 'time'))
    }
    return this
  }

  /** Records an exception as an `exception` event (the status is left to `setStatus`). */
  recordException(error) {
    if (this[kHandle] >= RECORDING) {
      let type = 'Error'
      let message
      let stack
      if (error !== null && typeof error === 'object') {
        type = String(error.name || (error.constructor && error.constructor.name) || 'Error')
        message = String(error.message ?? '')
        stack = typeof error.stack === 'string' ? error.stack : undefined
      } else {
        type = typeof error
        message = String(error)
      }
      this[kCore].native._recordException(this[kHandle], type, message, stack)
    }
    return this
  }

  /** Sets the status: 'ok' (final), 'error' (with an optional message) or 'unset'. */
  setStatus(code, message) {
    if (!STATUS_CODES.has(code)) {
      throw invalidArgument(RangeError, `code must be 'ok', 'error' or 'unset', received ${describe(code)}`)
    }
    if (message !== undefined && typeof message !== 'string') {
      throw invalidArgument(TypeError, `message must be a string, received ${describe(message)}`)
    }
    if (!this.#ended) this[kCore].native._setStatus(this[kHandle], code, message)
    return this
  }

  /** Renames the span (a router often learns the route after the span started). */
  updateName(name) {
    if (typeof name !== 'string') {
      throw invalidArgument(TypeError, `name must be a string, received ${describe(name)}`)
    }
    if (!this.#ended) this[kCore].rename(this[kHandle], name)
    return this
  }

  /** Ends the span (at `endTime`, default now); a second call does nothing. */
  end(endTime) {
    if (this.#ended) return
    const ms = endTime === undefined ? NaN : toMs(endTime, 'endTime')
    this.#ended = true
    this[kCore].end(this[kHandle], ms)
  }

  /** Whether `end()` was called. */
  get ended() {
    return this.#ended
  }
}

/** The values of header `name` in a plain object, a Map or a Headers-like object with get(). */
function headerValues(headers, name) {
  if (headers === null || (typeof headers !== 'object' && typeof headers !== 'function')) return []
  let value
  if (typeof headers.get === 'function') {
    value = headers.get(name)
  } else {
    value = headers[name]
    if (value === undefined) {
      for (const key of Object.keys(headers)) {
        if (key.toLowerCase() === name) {
          value = headers[key]
          break
        }
      }
    }
  }
  if (typeof value === 'string') return [value]
  if (Array.isArray(value)) return value.filter((v) => typeof v === 'string')
  return []
}

function setHeader(headers, name, value) {
  if (typeof headers.setHeader === 'function') headers.setHeader(name, value)
  else if (typeof headers.set === 'function') headers.set(name, value)
  else headers[name] = value
}

function readRate(rate, path) {
  if (typeof rate !== 'number') {
    throw invalidOption(TypeError, `${path} must be a number, received ${describe(rate)}`)
  }
  if (!(rate >= 0 && rate <= 1)) {
    throw invalidOption(RangeError, `${path} must be a number between 0 and 1, received number ${rate}`)
  }
  return rate
}

/** The sampling rules as JS evaluates them when one of them is a RegExp; null otherwise. */
function jsRules(options) {
  const sampling = options !== null && typeof options === 'object' ? options.sampling : undefined
  const rules = sampling !== null && typeof sampling === 'object' ? sampling.rules : undefined
  if (!Array.isArray(rules) || !rules.some((r) => r !== null && typeof r === 'object' && r.name instanceof RegExp)) {
    return null
  }
  return rules.map((rule, i) => {
    const path = `options.sampling.rules[${i}]`
    if (rule === null || typeof rule !== 'object') {
      throw invalidOption(TypeError, `${path} must be an object, received ${describe(rule)}`)
    }
    for (const key of Object.keys(rule)) {
      if (key !== 'name' && key !== 'rate') {
        throw invalidOption(TypeError, `${path} has an unknown option "${key}"; known options are: name, rate`)
      }
    }
    if (typeof rule.name !== 'string' && !(rule.name instanceof RegExp)) {
      throw invalidOption(TypeError, `${path}.name must be a string or a RegExp, received ${describe(rule.name)}`)
    }
    return { name: rule.name, rate: readRate(rule.rate, `${path}.rate`) }
  })
}

/**
 * Interned ids of a tracer's span names or attribute keys: each string is asked of the addon
 * once, then found in a Map; -1 once the addon interns no more (the text then crosses).
 */
class Interner {
  constructor(intern) {
    this.intern = intern
    this.ids = new Map()
    this.full = false
    // The last string looked up: a loop or a route names its spans alike, and comparing a
    // string with itself costs less than hashing it into the Map.
    this.last = undefined
    this.lastId = -1
  }

  /** The interned id of `text`, or -1 (a string that is not interned, or not a string). */
  id(text) {
    if (text === this.last) return this.lastId
    let id = this.ids.get(text)
    if (id === undefined) {
      if (this.full || typeof text !== 'string') return -1
      id = this.intern(text)
      if (id < 0) {
        this.full = true
        return -1
      }
      this.ids.set(text, id)
    }
    this.last = text
    this.lastId = id
    return id
  }
}

/**
 * One tracer's hot path in JS: interned names and keys, the attribute queue and the held-back
 * rename, around the thread's shared fast-path functions (`_fastPath`). Every tracer's core is
 * an instance of this one class, so V8 sees one set of functions at each call site.
 */
class TracerCore {
  constructor(native, fast, slot) {
    this.native = native
    this.fast = fast
    // the `io` array is shared with every tracer of the thread: a call writes this tracer's
    // slot first, and nothing waits there between calls
    this.io = fast.io
    this.slot = slot
    this.names = new Interner((name) => native._internName(name))
    this.keys = new Interner((key) => native._internKey(key))
    // The attribute queue: up to eight attributes of one sampled span, waiting to cross
    // together, with the span's end when they can (one crossing fewer per span). Count and
    // handle here; key ids, types and numbers in `queue` (laid out as io's IO_ATTRS_* cells,
    // and copied there as the queue is sent); string values in `queuedStrings` (passed as the
    // call's arguments). The queue is emptied before an attribute of another span, or one that
    // cannot be queued, is set, so every span gets its attributes in order. A span's
    // attributes cannot be read before it ends, so nothing sees them wait.
    this.queuedStrings = new Array(ATTRS_PER_CALL).fill(undefined)
    this.queue = new Float64Array(3 * ATTRS_PER_CALL)
    this.queued = 0
    this.queuedHandle = 0
    // The rename held back for a span's end: its handle (0 for none) and interned name.
    this.renameHandle = 0
    this.renameId = -1
  }

  /** Writes the queue into `io` and empties it (the strings stay in queuedStrings). */
  takeQueue() {
    const io = this.io
    const queue = this.queue
    const queued = this.queued
    io[IO_ATTRS_HANDLE] = this.queuedHandle
    io[IO_ATTRS_COUNT] = queued
    for (let i = 0; i < queued; i++) {
      io[IO_ATTRS_KEYS + i] = queue[i]
      io[IO_ATTRS_TYPES + i] = queue[ATTRS_PER_CALL + i]
      io[IO_ATTRS_VALUES + i] = queue[2 * ATTRS_PER_CALL + i]
    }
    this.queued = 0
  }

  clearStrings() {
    const q = this.queuedStrings
    for (let i = 0; i < ATTRS_PER_CALL; i++) q[i] = undefined
  }

  sendRename() {
    const io = this.io
    io[IO_TRACER] = this.slot
    io[IO_RENAME_HANDLE] = this.renameHandle
    io[IO_RENAME_NAME] = this.renameId
    this.renameHandle = 0
    this.fast.rename()
  }

  setQueuedAttributes() {
    if (this.queued === 0) return
    this.takeQueue()
    this.io[IO_TRACER] = this.slot
    const q = this.queuedStrings
    this.fast.setAttrs(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7])
    this.clearStrings()
  }

  /**
   * Ends the span `handle` at `ms` (NaN for now), with its queued attributes and its held-back
   * rename if any.
   */
  end(handle, ms) {
    const io = this.io
    io[IO_TRACER] = this.slot
    io[IO_END_HANDLE] = handle
    io[IO_END_TIME] = ms
    if (this.renameHandle === handle) {
      io[IO_END_NAME] = this.renameId
      this.renameHandle = 0
    } else {
      io[IO_END_NAME] = -1
    }
    if (this.queued === 0) {
      this.fast.end()
    } else {
      // the queue may hold another span's attributes: they go to their own span
      this.takeQueue()
      const q = this.queuedStrings
      this.fast.endWithAttrs(q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7])
      this.clearStrings()
    }
  }

  /**
   * Queues one attribute; a value of another type or a key that is not interned is set at
   * once (after what is queued, so the order holds). A full queue is sent before the next
   * attribute joins it, so a span with eight attributes still sends them with its end.
   */
  queueAttribute(handle, key, value) {
    const type = typeof value
    const id = type === 'number' || type === 'boolean' || type === 'string' ? this.keys.id(key) : -1
    if (this.queued !== 0 && (id < 0 || handle !== this.queuedHandle || this.queued === ATTRS_PER_CALL)) this.setQueuedAttributes()
    if (id < 0) {
      this.setAttribute(handle, key, value)
      return
    }
    const i = this.queued
    this.queued = i + 1
    this.queuedHandle = handle
    const queue = this.queue
    queue[i] = id
    if (type === 'string') {
      queue[ATTRS_PER_CALL + i] = ATTR_STRING
      this.queuedStrings[i] = value
    } else {
      queue[ATTRS_PER_CALL + i] = type === 'number' ? ATTR_NUMBER : ATTR_BOOLEAN
      queue[2 * ATTRS_PER_CALL + i] = type === 'number' ? value : (value ? 1 : 0)
    }
  }

  /** Sets one attribute: numbers, booleans and strings by the fast path, the rest as values. */
  setAttribute(handle, key, value) {
    const io = this.io
    io[IO_TRACER] = this.slot
    const type = typeof value
    if (type !== 'number' && type !== 'boolean' && type !== 'string') {
      this.fast.setAttribute(handle, key, value)
      return
    }
    const id = this.keys.id(key)
    if (id < 0 && typeof key !== 'string') {
      // the slow path names the bad key in its error
      this.fast.setAttribute(handle, key, value)
      return
    }
    io[IO_ATTR_HANDLE] = handle
    io[IO_ATTR_KEY] = id
    if (type === 'string') {
      io[IO_ATTR_TYPE] = ATTR_STRING
      if (id < 0) this.fast.setAttr(value, key)
      else this.fast.setAttr(value)
    } else {
      io[IO_ATTR_TYPE] = type === 'number' ? ATTR_NUMBER : ATTR_BOOLEAN
      io[IO_ATTR_VALUE] = type === 'number' ? value : (value ? 1 : 0)
      if (id < 0) this.fast.setAttr(undefined, key)
      else this.fast.setAttr()
    }
  }

  /** Starts a local span; returns its handle, its ids left in `io`. */
  start(name, kind, parentHandle, startMs, rate) {
    const id = this.names.id(name)
    const io = this.io
    io[IO_TRACER] = this.slot
    io[IO_NAME] = id
    io[IO_KIND] = kind
    io[IO_PARENT] = parentHandle
    io[IO_START_TIME] = startMs
    io[IO_RATE] = rate
    if (id < 0) this.fast.start(name)
    else this.fast.start()
    return io[IO_HANDLE]
  }

  /**
   * Renames the span `handle`. An interned name is held back and sent with the span's end (a
   * name is only seen once the span ends, in its metrics and its export), one crossing fewer;
   * a rename of another span first sends the one held.
   */
  rename(handle, name) {
    const id = this.names.id(name)
    if (this.renameHandle !== 0 && (this.renameHandle !== handle || id < 0)) this.sendRename()
    if (id >= 0) {
      this.renameHandle = handle
      this.renameId = id
      return
    }
    const io = this.io
    io[IO_TRACER] = this.slot
    io[IO_RENAME_HANDLE] = handle
    io[IO_RENAME_NAME] = id
    this.fast.rename(name)
  }
}

/** This thread's fast-path functions and `io` array (see `_fastPath`), made by the first tracer. */
let fastPath = null

class DistributedTracer extends binding.DistributedTracer {
  #core
  #storage = new AsyncLocalStorage()
  #rules
  #defaultRate

  constructor(options) {
    const rules = jsRules(options)
    // RegExp rules cannot cross; the native side gets the string ones (all rules are then
    // evaluated here, in order, and the chosen rate is passed to `start`).
    const nativeOptions = rules === null
      ? options
      : { ...options, sampling: { ...options.sampling, rules: rules.filter((r) => typeof r.name === 'string') } }
    super(nativeOptions)
    this.#rules = rules
    this.#defaultRate = options.sampleRate === undefined ? 1 : options.sampleRate
    // The hot calls are native functions shared by every tracer of this thread (no per-call
    // unwrap), reached through a TracerCore whose methods are likewise shared: with functions
    // or closures of its own per tracer, a process with two tracers turned V8's call sites here
    // megamorphic (an unsampled span cost about 20 ns more with a second tracer in use).
    if (fastPath === null) fastPath = this._fastPath()
    this.#core = new TracerCore(this, fastPath, this._fastSlot())
  }

  #rateFor(name) {
    for (const rule of this.#rules) {
      if (typeof rule.name === 'string') {
        if (rule.name === name) return rule.rate
      } else {
        rule.name.lastIndex = 0
        if (rule.name.test(name)) return rule.rate
      }
    }
    return this.#defaultRate
  }

  /**
   * Starts a span. `parent` may be a Span, a SpanContext (from `extract`), a traceparent string,
   * or null for a new trace; without it, the active span is the parent.
   */
  startSpan(name, options) {
    if (typeof name !== 'string') {
      throw invalidArgument(TypeError, `name must be a string, received ${describe(name)}`)
    }
    let parent
    let kind = 0
    let startTime
    let attributes
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') {
        throw invalidArgument(TypeError, `options must be an object, received ${describe(options)}`)
      }
      for (const key of Object.keys(options)) {
        if (!START_OPTIONS.has(key)) {
          throw invalidArgument(TypeError, `options has an unknown option "${key}"; known options are: ${[...START_OPTIONS].join(', ')}`)
        }
      }
      parent = options.parent
      if (options.kind !== undefined) {
        kind = KINDS[options.kind]
        if (typeof options.kind !== 'string' || kind === undefined) {
          throw invalidArgument(RangeError, `options.kind must be one of ${Object.keys(KINDS).join(', ')}, received ${describe(options.kind)}`)
        }
      }
      startTime = toMs(options.startTime, 'options.startTime')
      attributes = options.attributes
    }
    if (parent === undefined) parent = this.#storage.getStore()
    const span = this.#start(name, kind, parent, startTime)
    if (attributes !== undefined) span.setAttributes(attributes)
    return span
  }

  /**
   * Starts a span of a kind (index) under `parent` (already read: a Span, a context, a
   * traceparent string, or null/undefined for a root) without validating options: the
   * package's own middleware calls it with values it made.
   */
  [kStartSpan](name, kind, parent) {
    return this.#start(name, kind, parent, undefined)
  }

  #start(name, kind, parent, startTime) {
    const core = this.#core
    const rate = this.#rules === null ? NaN : this.#rateFor(name)
    let handle
    if (parent === undefined || parent === null) {
      // a root: the commonest case, checked first
      return new Span(core, core.start(name, kind, 0, startTime === undefined ? NaN : startTime, rate), undefined, core.io)
    }
    if (parent instanceof Span && parent[kCore] === core && !parent.ended) {
      handle = core.start(name, kind, parent[kHandle], startTime === undefined ? NaN : startTime, rate)
    } else if (parent instanceof Span || isContext(parent)) {
      const ctx = parent instanceof Span ? parent.spanContext() : parent
      const state = typeof ctx.traceState === 'string' ? ctx.traceState : undefined
      handle = this._startRemote(name, kind, formatTraceparent(ctx), state, startTime, rate)
    } else if (typeof parent === 'string') {
      handle = this._startRemote(name, kind, parent, undefined, startTime, rate)
    } else {
      throw invalidArgument(TypeError, `options.parent must be a Span, a SpanContext or a traceparent string, received ${describe(parent)}`)
    }
    return new Span(core, handle, parent, core.io)
  }

  /**
   * The remote context in incoming headers (a plain object, a Map or a Headers-like object;
   * values may be strings or arrays of strings), or null. Never throws.
   */
  extract(headers) {
    try {
      const traceparent = headerValues(headers, 'traceparent')
      if (traceparent.length === 0) return null
      return this._extract(traceparent, headerValues(headers, 'tracestate'))
    } catch {
      return null
    }
  }

  /**
   * Writes `traceparent` (and `tracestate` when there is one) of a span or context into
   * `headers`: a plain object, a Headers object, or an OutgoingMessage (setHeader). Without a
   * span, the active span's. Returns `headers`.
   */
  inject(spanOrContext, headers) {
    if (headers === null || (typeof headers !== 'object' && typeof headers !== 'function')) {
      throw invalidArgument(TypeError, `headers must be an object, received ${describe(headers)}`)
    }
    const source = spanOrContext === undefined || spanOrContext === null ? this.#storage.getStore() : spanOrContext
    let ctx
    if (source instanceof Span) ctx = source.spanContext()
    else if (isContext(source)) ctx = source
    else return headers
    if (ctx === INVALID_CONTEXT) return headers
    setHeader(headers, 'traceparent', formatTraceparent(ctx))
    if (typeof ctx.traceState === 'string' && ctx.traceState !== '') setHeader(headers, 'tracestate', ctx.traceState)
    return headers
  }

  /**
   * The tracer's counters, and per span name (sampled and unsampled spans alike) the count,
   * errors and p50/p95/p99/max duration in ms.
   */
  metrics() {
    const native = super.metrics()
    const { spanNames, spanFigures, durationBoundsMs } = native
    const bucketCount = durationBoundsMs.length
    const stride = SPAN_FIGURES_BEFORE_BUCKETS + bucketCount
    const spans = {}
    for (let i = 0, at = 0; i < spanNames.length; i++, at += stride) {
      const buckets = new Array(bucketCount)
      for (let b = 0; b < bucketCount; b++) buckets[b] = spanFigures[at + SPAN_FIGURES_BEFORE_BUCKETS + b]
      const figures = {
        count: spanFigures[at],
        errors: spanFigures[at + 1],
        p50Ms: spanFigures[at + 2],
        p95Ms: spanFigures[at + 3],
        p99Ms: spanFigures[at + 4],
        maxMs: spanFigures[at + 5],
        sumMs: spanFigures[at + 6],
        buckets,
      }
      const name = spanNames[i]
      // defineProperty, so that a span named `__proto__` is an entry like any other
      if (name === '__proto__') Object.defineProperty(spans, name, { value: figures, enumerable: true, writable: true, configurable: true })
      else spans[name] = figures
    }
    return {
      started: native.started,
      sampled: native.sampled,
      unsampled: native.unsampled,
      rejectedSpans: native.rejectedSpans,
      liveSpans: native.liveSpans,
      exported: native.exported,
      dropped: native.dropped,
      exportErrors: native.exportErrors,
      exportCpuMs: native.exportCpuMs,
      unsupportedAttributes: native.unsupportedAttributes,
      spans,
      durationBoundsMs,
    }
  }

  /** The active span, or undefined. */
  active() {
    return this.#storage.getStore()
  }

  /** Runs `fn` with `span` as the active span, and returns what it returns. */
  withSpan(span, fn, ...args) {
    if (typeof fn !== 'function') {
      throw invalidArgument(TypeError, `fn must be a function, received ${describe(fn)}`)
    }
    return this.#storage.run(span, fn, ...args)
  }

  /**
   * Starts a span, runs `fn(span)` with it active, and ends it when `fn` returns or its promise
   * settles; a throw or rejection is recorded as an exception with status error, and rethrown.
   */
  startActiveSpan(name, options, fn) {
    if (typeof options === 'function' && fn === undefined) {
      fn = options
      options = undefined
    }
    if (typeof fn !== 'function') {
      throw invalidArgument(TypeError, `fn must be a function, received ${describe(fn)}`)
    }
    const span = this.startSpan(name, options)
    const fail = (error) => {
      span.recordException(error)
      span.setStatus('error', error !== null && typeof error === 'object' && typeof error.message === 'string' ? error.message : String(error))
      span.end()
    }
    return this.#storage.run(span, () => {
      let result
      try {
        result = fn(span)
      } catch (error) {
        fail(error)
        throw error
      }
      if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
        return result.then(
          (value) => {
            span.end()
            return value
          },
          (error) => {
            fail(error)
            throw error
          },
        )
      }
      span.end()
      return result
    })
  }

  /**
   * The global `fetch` in a `client` span (child of the active span) named after the method:
   * OTel HTTP client attributes, `traceparent`/`tracestate` in a new Headers (the caller's
   * objects are left alone), the response status (>= 500 is an error), and the span ended when
   * the response headers arrive or the request rejects (recorded, then rethrown).
   */
  async fetch(input, init) {
    if (typeof globalThis.fetch !== 'function') {
      throw invalidArgument(TypeError, 'fetch is not available in this runtime (Node 18+ is required)')
    }
    if (init !== undefined && init !== null && typeof init !== 'object') {
      throw invalidArgument(TypeError, `init must be an object, received ${describe(init)}`)
    }
    const isRequest = typeof Request === 'function' && input instanceof Request
    const rawMethod = init != null && init.method !== undefined ? init.method : isRequest ? input.method : 'GET'
    const method = String(rawMethod).toUpperCase()
    const span = this.startSpan(method, { kind: 'client' })
    try {
      if (span.sampled) {
        let url
        try {
          url = new URL(isRequest ? input.url : String(input))
        } catch {
          url = undefined
        }
        span.setAttribute('http.request.method', method)
        if (url !== undefined) {
          const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : url.protocol === 'http:' ? 80 : undefined
          url.username = ''
          url.password = ''
          span.setAttribute('url.full', url.href)
          span.setAttribute('server.address', url.hostname)
          if (port !== undefined) span.setAttribute('server.port', port)
        }
      }
      // The fetch rules: init.headers, when given, replaces the Request's headers.
      const source = init != null && init.headers !== undefined ? init.headers : isRequest ? input.headers : undefined
      const headers = new Headers(source)
      this.inject(span, headers)
      const response = await globalThis.fetch(input, { ...init, headers })
      const status = response.status
      span.setAttribute('http.response.status_code', status)
      if (status >= 500) span.setStatus('error', `HTTP ${status}`)
      span.end()
      return response
    } catch (error) {
      span.recordException(error)
      span.setStatus('error', error !== null && typeof error === 'object' && typeof error.message === 'string' ? error.message : String(error))
      span.end()
      throw error
    }
  }

  /** The trace id of the active span, or undefined. */
  currentTraceId() {
    const span = this.#storage.getStore()
    return span === undefined ? undefined : span.traceId
  }
}

module.exports = { DistributedTracer, Span, SpanKind: KINDS, kStartSpan }
