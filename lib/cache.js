'use strict'
// PersistentCache: the native two-tier cache plus what belongs on the JS side: turning values
// into payloads and back (JSON.stringify once on set, JSON.parse on get), getOrSet with single
// flight and stale-while-revalidate, the hot objects, and the error classes.
//
// The hot calls are functions bound to the cache's native state (see src/cache/binding.rs);
// they take the key and at most one value, and exchange every number through `#io`, a
// Float64Array shared with the native side, whose slots are named below.
const binding = require('../binding.js')
const { CacheError, codes, invalidArgument, describe } = require('./errors')

// With `redis`, Redis is a shared tier below memory and disk and carries invalidations to the
// other instances (src/cache/redis_tier.rs). Its threads wake this file by id: caches are held
// weakly here, so a cache nobody holds any more can still be collected. A cache with lookups out
// is also held strongly in `awaitingTier`, or a caller that keeps only the promise would let it
// be collected (and the promise never settle).
const tiers = new Map()
const awaitingTier = new Set()
const forgetTier = new FinalizationRegistry((id) => tiers.delete(id))
let nextTierId = 1
const kTierDrain = Symbol('bulwark.tierDrain')

function wakeTier(id) {
  const ref = tiers.get(id)
  const cache = ref && ref.deref()
  if (cache) cache[kTierDrain]()
}

// slots of the shared Float64Array (src/cache/binding.rs, mod io)
const KNOWN_VERSION = 0 // in: version of the decoded copy held in the hot objects, 0 for none
const KIND = 1 // out of a lookup, in to set: the value's kind
const VERSION = 2 // out: the entry's version
const STALE_FOR = 3 // out of a stale lookup: ms since expiry, -1 when live
const FREQUENCY = 4 // out: the key's estimated recent lookups (0..16)
const TTL = 5 // in to set: ms, -1 for the cache's default
const KEEP_STALE = 6 // in to set: ms the memory tier keeps the entry after expiry

// value kinds (src/cache/codec.rs, ValueKind)
const STRING = 0
const BYTES = 1
const JSON_KIND = 2
const UINT8 = 3
const ILL_FORMED_STRING = 4 // a string with a lone surrogate, as WTF-8 (set natively; seen from the Redis tier)

const SET_OPTIONS = ['ttlMs', 'tags']
const GET_OR_SET_OPTIONS = ['ttlMs', 'staleWhileRevalidateMs', 'tags']
const MISS = Symbol('miss')
const noop = () => {}

function closedError() {
  return new CacheError('the cache is closed', codes.CACHE_CLOSED)
}

function unstorable(message, cause) {
  const error = invalidArgument(TypeError, message)
  if (cause !== undefined) error.cause = cause
  return error
}

const VALUE_TYPES = 'a string, Buffer, Uint8Array or JSON value (object, array, number, boolean, null)'

/** Checks an options object: an object with only `known` keys; returns it. */
function readOptions(options, known) {
  if (options === null || typeof options !== 'object') {
    throw invalidArgument(TypeError, `options must be an object, received ${describe(options)}`)
  }
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      throw invalidArgument(TypeError, `options has an unknown option "${name}"; known options are: ${known.join(', ')}`)
    }
  }
  return options
}

/** Checks a number of milliseconds option: undefined, or an integer >= min. */
function readMs(options, name, min) {
  const value = options[name]
  if (value === undefined) return undefined
  if (typeof value !== 'number') {
    throw invalidArgument(TypeError, `options.${name} must be a number, received ${describe(value)}`)
  }
  if (!Number.isInteger(value) || value < min || value > 2 ** 52) {
    throw invalidArgument(RangeError, `options.${name} must be an integer >= ${min}, received ${value}`)
  }
  return value
}

/** The most bytes of tag text (NUL-separated) the Redis tier stores with an entry. */
const MAX_SHARED_TAG_BYTES = 65535

/**
 * Checks `options.tags`: undefined or an array (its items are checked natively). With a Redis
 * tier (`shared`), a tag may not hold a NUL character: the tier stores an entry's tags
 * NUL-separated (after a 16-bit length), so another instance would read such a tag as two, and
 * an invalidation of it would not reach that instance's copy; for the same reason the tags of
 * one entry may not exceed MAX_SHARED_TAG_BYTES together.
 */
function readTags(options, shared) {
  const tags = options.tags
  if (tags !== undefined && !Array.isArray(tags)) {
    throw invalidArgument(TypeError, `options.tags must be an array of strings, received ${describe(tags)}`)
  }
  if (shared && tags !== undefined) {
    let bytes = 0
    for (let i = 0; i < tags.length; i++) {
      const tag = tags[i]
      if (typeof tag !== 'string') continue
      if (tag.includes('\0')) {
        throw invalidArgument(RangeError, `options.tags[${i}] must not contain a NUL character in a cache with a redis tier (it separates the tags stored in Redis), received string ${JSON.stringify(tag)}`)
      }
      bytes += (i > 0 ? 1 : 0) + Buffer.byteLength(tag)
    }
    if (bytes > MAX_SHARED_TAG_BYTES) {
      throw invalidArgument(RangeError, `options.tags must hold at most ${MAX_SHARED_TAG_BYTES} bytes of UTF-8 together (with a separator between two) in a cache with a redis tier, received ${bytes} bytes`)
    }
  }
  return tags
}

/**
 * A value as the Redis tier stores it (src/cache/redis_tier.rs): a kind byte, the tags (a 16-bit
 * length, then NUL-separated WTF-8), the payload. Returns `{ kind, value, local, tags }` (`local`
 * is what the local tiers keep: a JSON value's text), or null when the bytes are not such a
 * value: too short, an unknown kind, tags longer than the value, or a payload that does not
 * decode (JSON that does not parse, WTF-8 that is not).
 */
function decodeTierValue(bytes) {
  if (bytes.length < 3) return null
  const kind = bytes[0]
  const tagsLength = bytes.readUInt16LE(1)
  if (3 + tagsLength > bytes.length) return null
  const payload = bytes.subarray(3 + tagsLength)
  try {
    const tags = tagsLength > 0 ? binding._decodeWtf8(bytes.subarray(3, 3 + tagsLength)).split('\0') : undefined
    let value
    let local
    switch (kind) {
      case STRING:
        value = local = payload.toString('utf8')
        break
      case ILL_FORMED_STRING:
        value = local = binding._decodeWtf8(payload)
        break
      case JSON_KIND:
        local = payload.toString('utf8')
        value = JSON.parse(local)
        break
      case BYTES:
        value = local = Buffer.from(payload)
        break
      case UINT8:
        value = local = new Uint8Array(payload)
        break
      default:
        return null
    }
    return { kind, value, local, tags }
  } catch {
    return null
  }
}

class PersistentCache extends binding.PersistentCache {
  #get
  #getStale
  #set
  #has
  #delete
  #io
  /** key -> { version, value, frequency } for hot JSON values, or null without hotObjects. */
  #hot = null
  #hotMax = 0
  /** key -> { promise, superseded } of the loads running for getOrSet. */
  #inflight = new Map()
  #loads = { calls: 0, coalesced: 0, errors: 0 }
  #serveStaleOnError = false
  #defaultTtl
  #dir
  #closed = false
  #closing = null
  /** The Redis tier (null without `redis`), its lookups waiting by id, and the tick's flush. */
  #tier = null
  #tierWaiters = new Map()
  #tierFlushQueued = false
  #tierFlush = null
  /** Invalidations applied here (local or remote), to tell a lookup that one passed it by. */
  #invalidations = 0
  /** Values found in Redis that did not decode (see decodeTierValue). */
  #tierUndecodable = 0

  constructor(options) {
    // the Redis tier's options are checked before the local tiers open (and lock `dir`)
    let tier = null
    if (options !== null && typeof options === 'object' && options.redis !== undefined) {
      const { redis, ...local } = options
      tier = new binding.CacheRedisTier(redis)
      options = local
    }
    try {
      super(options)
    } catch (error) {
      if (error && (error.code === codes.CACHE_LOCKED || error.code === codes.CACHE_DISK)) {
        throw new CacheError(error.message, error.code, { dir: options.dir })
      }
      throw error
    }
    const fast = this._fastPath()
    this.#get = fast.get
    this.#getStale = fast.getStale
    this.#set = fast.set
    this.#has = fast.has
    this.#delete = fast.delete
    this.#io = fast.io
    this.#hotMax = fast.hotObjects
    if (fast.hotObjects > 0) this.#hot = new Map()
    this.#serveStaleOnError = fast.serveStaleOnError
    if (fast.diskDamageAtOpen !== null && fast.diskDamageAtOpen !== undefined) {
      // the cache started with an empty disk tier instead of refusing to start: say so once
      process.emitWarning(
        `PersistentCache: the disk tier's file in ${options.dir} was damaged and has been replaced by an empty one (${fast.diskDamageAtOpen})`,
        { type: 'BulwarkCacheWarning', code: 'BULWARK_CACHE_DISK_RESET' },
      )
    }
    this.#defaultTtl = options.ttlMs
    this.#dir = options.dir
    if (tier !== null) {
      this.#tier = tier
      this.#tierFlush = () => {
        this.#tierFlushQueued = false
        this.#tier._flush()
      }
      const id = nextTierId++
      tiers.set(id, new WeakRef(this))
      forgetTier.register(this, id)
      tier._start(wakeTier, id)
    }
  }

  #queueTierFlush() {
    if (this.#tierFlushQueued) return
    this.#tierFlushQueued = true
    // everything asked in this tick goes to Redis in one round trip
    process.nextTick(this.#tierFlush)
  }

  /** Tells Redis and the other instances (no-op without `redis`). */
  #publish(op, arg) {
    if (this.#tier === null) return
    this.#invalidations++
    this.#tier.invalidate(op, arg)
    this.#queueTierFlush()
  }

  /** Looks `key` up in Redis; resolves with the value (the local tiers filled) or MISS. */
  #fetch(key) {
    return new Promise((resolve) => {
      const id = this.#tier.get(key)
      this.#tierWaiters.set(id, { key, resolve, epoch: this.#invalidations })
      awaitingTier.add(this)
      this.#queueTierFlush()
    })
  }

  [kTierDrain]() {
    let taken
    try {
      taken = this.#tier._take()
    } catch {
      return
    }
    // answers first, then invalidations: a value read before an invalidation that arrives in
    // the same batch is then removed again, never left behind
    const { got, data, events } = taken
    for (let i = 0; i < got.length; i += 4) {
      try {
        this.#gotFromTier(got[i], got[i + 1], got[i + 2] < 0 ? null : data.subarray(got[i + 2], got[i + 3]))
      } catch (error) {
        process.emitWarning(error)
      }
    }
    for (const event of events) {
      try {
        if (event.kind === 'invalidated') this.#applyRemote(event.op, binding._decodeWtf8(event.arg))
        else this.#applyRemote('clear', '')
      } catch (error) {
        process.emitWarning(error)
      }
    }
  }

  #gotFromTier(id, ttlMs, bytes) {
    const waiter = this.#tierWaiters.get(id)
    if (waiter === undefined) return
    this.#tierWaiters.delete(id)
    if (this.#tierWaiters.size === 0) awaitingTier.delete(this)
    if (bytes === null || this.#closed) {
      waiter.resolve(MISS)
      return
    }
    const decoded = decodeTierValue(bytes)
    if (decoded === null) {
      // another writer's format, or damaged: a miss (the next set replaces it), never a
      // lookup left waiting
      this.#tierUndecodable++
      waiter.resolve(MISS)
      return
    }
    const { kind, value, local, tags } = decoded
    // Fill the local tiers for the entry's remaining time (no write-through: it came from
    // there), unless something was invalidated since the lookup left: the answer may predate it.
    if (waiter.epoch === this.#invalidations) {
      try {
        const io = this.#io
        io[KIND] = kind
        io[TTL] = ttlMs < 0 ? -1 : Math.max(1, Math.ceil(ttlMs))
        io[KEEP_STALE] = 0
        if (tags === undefined) this.#set(waiter.key, local)
        else this.#set(waiter.key, local, tags)
        if (this.#hot !== null) this.#hot.delete(waiter.key)
      } catch {
        // tags this cache refuses: the value is still the answer, the local tiers just miss it
      }
    }
    waiter.resolve(value)
  }

  /** An invalidation from another instance (or a flush): local tiers only, nothing published. */
  #applyRemote(op, arg) {
    if (this.#closed) return
    this.#invalidations++
    if (op === 'delete') this.#localDelete(arg)
    else if (op === 'tag') this.#localInvalidateTag(arg)
    else if (op === 'prefix') this.#localInvalidatePrefix(arg)
    else this.#localClear()
  }

  /**
   * The value of `key` from memory, then disk, then (with `redis`) the shared Redis tier,
   * filling the local tiers from Redis; undefined when none has it.
   */
  getAsync(key) {
    let value
    try {
      value = this.get(key)
    } catch (error) {
      return Promise.reject(error)
    }
    if (value !== undefined || this.#tier === null) return Promise.resolve(value)
    return this.#fetch(key).then((found) => (found === MISS ? undefined : found))
  }

  /**
   * The value of `key` (memory, then disk), or undefined; an expired entry is never returned.
   * The value comes back as the type it was set as.
   */
  get(key) {
    if (this.#closed) throw closedError()
    if (this.#hot === null) {
      const result = this.#get(key)
      if (result === undefined || this.#io[KIND] !== JSON_KIND) return result
      return JSON.parse(result)
    }
    const entry = this.#hot.get(key)
    this.#io[KNOWN_VERSION] = entry === undefined ? 0 : entry.version
    const result = this.#get(key)
    // the native entry is still the one the hot copy was decoded from
    if (result === true) return entry.value
    return this.#afterHotLookup(key, entry, result)
  }

  /** Stores `value` under `key`; `options.ttlMs` overrides the default TTL, `options.tags` tags it. */
  set(key, value, options) {
    if (this.#closed) throw closedError()
    const payload = this.#encode(value)
    const io = this.#io
    const kind = io[KIND]
    if (options === undefined) {
      io[KEEP_STALE] = 0
      io[TTL] = -1
      this.#set(key, payload)
    } else {
      readOptions(options, SET_OPTIONS)
      const ttlMs = readMs(options, 'ttlMs', 1)
      const tags = readTags(options, this.#tier !== null)
      // the options' getters may have used this cache: its cells are written after them
      io[KIND] = kind
      io[KEEP_STALE] = 0
      io[TTL] = ttlMs === undefined ? -1 : ttlMs
      this.#set(key, payload, tags)
    }
    if (this.#hot !== null) this.#hot.delete(key)
    if (this.#inflight.size !== 0) this.#supersede(key)
    if (this.#tier !== null) this.#writeThrough(key, kind, payload, options)
    return this
  }

  /** Sends a set to Redis in the background. */
  #writeThrough(key, kind, payload, options) {
    const ttlMs = options !== undefined && options.ttlMs !== undefined ? options.ttlMs : this.#defaultTtl
    const tags = options !== undefined ? options.tags : undefined
    this.#tier.set(key, kind, payload, ttlMs, tags)
    this.#queueTierFlush()
  }

  /** Whether `key` holds a live value (in either tier); counts neither a hit nor a miss. */
  has(key) {
    if (this.#closed) throw closedError()
    return this.#has(key)
  }

  /** Removes `key` from both tiers (and from Redis and every instance, with `redis`); returns whether it was here. */
  delete(key) {
    if (this.#closed) throw closedError()
    const removed = this.#localDelete(key)
    this.#publish('delete', key)
    return removed
  }

  #localDelete(key) {
    const removed = this.#delete(key)
    if (this.#hot !== null) this.#hot.delete(key)
    if (this.#inflight.size !== 0) this.#supersede(key)
    return removed
  }

  /** Removes everything from both tiers (and Redis and every instance); returns how many entries there were here. */
  clear() {
    if (this.#closed) throw closedError()
    const removed = this.#localClear()
    this.#publish('clear', '')
    return removed
  }

  #localClear() {
    const removed = super.clear()
    if (this.#hot !== null) this.#hot.clear()
    this.#supersedeAll(() => true)
    return removed
  }

  /** Removes every entry tagged `tag` from both tiers (and Redis and every instance); returns how many here. */
  invalidateTag(tag) {
    if (this.#closed) throw closedError()
    const removed = this.#localInvalidateTag(tag)
    this.#publish('tag', tag)
    return removed
  }

  #localInvalidateTag(tag) {
    const removed = super.invalidateTag(tag)
    // the JS side does not know tags; hot copies of other keys are decoded again on their next get
    if (this.#hot !== null) this.#hot.clear()
    this.#supersedeAll(() => true)
    return removed
  }

  /** Removes every entry whose key starts with `prefix` from both tiers (and Redis and every instance); returns how many here. */
  invalidatePrefix(prefix) {
    if (this.#closed) throw closedError()
    const removed = this.#localInvalidatePrefix(prefix)
    this.#publish('prefix', prefix)
    return removed
  }

  #localInvalidatePrefix(prefix) {
    const removed = super.invalidatePrefix(prefix)
    if (this.#hot !== null) {
      for (const key of this.#hot.keys()) if (key.startsWith(prefix)) this.#hot.delete(key)
    }
    this.#supersedeAll((key) => key.startsWith(prefix))
    return removed
  }

  /** Entries held (by the disk tier when there is one, else by memory). */
  get size() {
    if (this.#closed) throw closedError()
    return super.size
  }

  /**
   * The value of `key`, loading it with `loader(key)` when absent. Concurrent callers of a
   * missing key share one loader call. Within `staleWhileRevalidateMs` after expiry the stale
   * value is returned at once and one refresh runs in the background. A loader that throws or
   * rejects rejects every waiter and nothing is cached (with `serveStaleOnError`, a stale value
   * still held is returned instead).
   */
  getOrSet(key, loader, options) {
    if (this.#closed) return Promise.reject(closedError())
    let ttlMs
    let swrMs = 0
    let tags
    let found
    try {
      if (typeof loader !== 'function') {
        throw invalidArgument(TypeError, `loader must be a function, received ${describe(loader)}`)
      }
      if (options !== undefined) {
        readOptions(options, GET_OR_SET_OPTIONS)
        ttlMs = readMs(options, 'ttlMs', 1)
        swrMs = readMs(options, 'staleWhileRevalidateMs', 0) || 0
        tags = readTags(options, this.#tier !== null)
      }
      found = this.#lookupStale(key)
    } catch (error) {
      return Promise.reject(error)
    }
    this.#loads.calls++
    let stale = MISS
    if (found !== MISS) {
      const staleFor = this.#io[STALE_FOR]
      if (staleFor < 0) return Promise.resolve(found)
      if (staleFor < swrMs) {
        if (!this.#inflight.has(key)) this.#load(key, loader, ttlMs, swrMs, tags)
        return Promise.resolve(found)
      }
      // past the window, kept only so that a failing loader can fall back to it
      stale = found
    }
    const flight = this.#inflight.get(key)
    let promise
    if (flight !== undefined) {
      this.#loads.coalesced++
      promise = flight.promise
    } else {
      promise = this.#load(key, loader, ttlMs, swrMs, tags)
    }
    if (stale !== MISS && this.#serveStaleOnError) return promise.catch(() => stale)
    return promise
  }

  /**
   * Counts since the cache was opened; `hitRate` is hits / (hits + misses), `compression.ratio`
   * raw bytes / stored bytes (1 when nothing was stored), `loads` counts getOrSet calls, those
   * that joined a running load, and loader failures.
   */
  stats() {
    if (this.#closed) throw closedError()
    const s = this._stats()
    const lookups = s.hits + s.misses
    const { rawBytes, storedBytes } = s.compression
    return {
      hits: s.hits,
      misses: s.misses,
      hitRate: lookups === 0 ? 0 : s.hits / lookups,
      sets: s.sets,
      deletes: s.deletes,
      evictions: s.evictions,
      expirations: s.expirations,
      entries: s.entries,
      bytes: s.bytes,
      oversized: s.oversized,
      memory: s.memory,
      disk: s.disk,
      compression: { rawBytes, storedBytes, ratio: storedBytes === 0 ? 1 : rawBytes / storedBytes },
      loads: { ...this.#loads },
      ...(this.#tier !== null ? { redis: { ...this.#tier.stats(), undecodable: this.#tierUndecodable } } : {}),
    }
  }

  /** Resolves when everything set before it is durable on disk (at once without `dir`). */
  async flush() {
    if (this.#closed) throw closedError()
    const failure = await this._flush()
    if (failure != null) throw new CacheError(failure, codes.CACHE_DISK, { dir: this.#dir })
  }

  /**
   * Writes what is queued, stops the disk writer and releases `dir`; every later call throws
   * ERR_CACHE_CLOSED. Rejects with ERR_CACHE_DISK (the cache still closes) when the last writes
   * could not be made durable. Calling it again returns the same promise.
   */
  close() {
    if (this.#closing !== null) return this.#closing
    this.#closed = true
    if (this.#hot !== null) this.#hot.clear()
    this.#supersedeAll(() => true)
    if (this.#tier !== null) {
      this.#tier.close()
      for (const waiter of this.#tierWaiters.values()) waiter.resolve(MISS)
      this.#tierWaiters.clear()
      awaitingTier.delete(this)
    }
    this.#closing = (async () => {
      let failure = null
      try {
        failure = await this._flush()
      } finally {
        this._close()
      }
      if (failure != null) throw new CacheError(failure, codes.CACHE_DISK, { dir: this.#dir })
    })()
    return this.#closing
  }

  /** Whether `close()` was called. */
  get closed() {
    return this.#closed
  }

  /**
   * Sets io[KIND] and returns what crosses: a string (string or JSON text) or the bytes. The
   * kind is written after `JSON.stringify`: a `toJSON` may use this cache, and its calls write
   * the same cell.
   */
  #encode(value) {
    const io = this.#io
    switch (typeof value) {
      case 'string':
        io[KIND] = STRING
        return value
      case 'object':
        if (value === null) {
          io[KIND] = JSON_KIND
          return 'null'
        }
        if (ArrayBuffer.isView(value)) {
          if (Buffer.isBuffer(value)) {
            io[KIND] = BYTES
            return value
          }
          if (value instanceof Uint8Array) {
            io[KIND] = UINT8
            return value
          }
          throw unstorable(`value must be ${VALUE_TYPES}, received a ${value.constructor.name}`)
        }
        if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) {
          throw unstorable(`value must be ${VALUE_TYPES}, received an ArrayBuffer (wrap it in a Uint8Array)`)
        }
        {
          const text = encodeJson(value)
          io[KIND] = JSON_KIND
          return text
        }
      case 'number':
        if (!Number.isFinite(value)) {
          throw invalidArgument(RangeError, `value must be a finite number (JSON has no ${value}), received ${value}`)
        }
        io[KIND] = JSON_KIND
        return String(value)
      case 'boolean':
        io[KIND] = JSON_KIND
        return value ? 'true' : 'false'
      default:
        throw unstorable(`value must be ${VALUE_TYPES}, received ${describe(value)}`)
    }
  }

  /** A stale-allowed lookup for getOrSet: the value or MISS; staleness in io[STALE_FOR]. */
  #lookupStale(key) {
    const io = this.#io
    if (this.#hot === null) {
      const result = this.#getStale(key)
      if (result === undefined) return MISS
      return io[KIND] === JSON_KIND ? JSON.parse(result) : result
    }
    const entry = this.#hot.get(key)
    io[KNOWN_VERSION] = entry === undefined ? 0 : entry.version
    const result = this.#getStale(key)
    if (result === true) return entry.value
    if (result === undefined) {
      if (entry !== undefined) this.#hot.delete(key)
      return MISS
    }
    return this.#afterHotLookup(key, entry, result)
  }

  /** After a lookup that did not confirm the hot copy: decode, and refresh or admit the copy. */
  #afterHotLookup(key, entry, result) {
    const hot = this.#hot
    if (result === undefined) {
      if (entry !== undefined) hot.delete(key)
      return undefined
    }
    const io = this.#io
    if (io[KIND] !== JSON_KIND) {
      if (entry !== undefined) hot.delete(key)
      return result
    }
    const value = JSON.parse(result)
    if (entry !== undefined) {
      entry.version = io[VERSION]
      entry.value = value
      entry.frequency = io[FREQUENCY]
      return value
    }
    // admission: a newcomer displaces the oldest copy only if its key is looked up more often
    const frequency = io[FREQUENCY]
    if (hot.size >= this.#hotMax) {
      const oldest = hot.keys().next().value
      if (frequency <= hot.get(oldest).frequency) return value
      hot.delete(oldest)
    }
    hot.set(key, { version: io[VERSION], value, frequency })
    return value
  }

  #load(key, loader, ttlMs, swrMs, tags) {
    const flight = { promise: null, superseded: false }
    this.#inflight.set(key, flight)
    flight.promise = this.#run(key, loader, flight, ttlMs, swrMs, tags)
    // a failed load is never an unhandled rejection, whether or not anyone waits for it
    flight.promise.catch(noop)
    return flight.promise
  }

  async #run(key, loader, flight, ttlMs, swrMs, tags) {
    try {
      if (this.#tier !== null) {
        const shared = await this.#fetch(key)
        if (shared !== MISS) return shared
      }
      const value = await loader(key)
      if (!flight.superseded && !this.#closed) this.#store(key, value, ttlMs, swrMs, tags)
      return value
    } catch (error) {
      this.#loads.errors++
      throw error
    } finally {
      if (this.#inflight.get(key) === flight) this.#inflight.delete(key)
    }
  }

  /** Stores a loaded value, kept past its expiry for stale reads as getOrSet needs. */
  #store(key, value, ttlMs, swrMs, tags) {
    const payload = this.#encode(value)
    const io = this.#io
    const kind = io[KIND]
    const ttl = ttlMs === undefined ? this.#defaultTtl : ttlMs
    io[TTL] = ttlMs === undefined ? -1 : ttlMs
    // with serveStaleOnError a failing loader may fall back on the value for one more TTL
    io[KEEP_STALE] = ttl === undefined ? 0 : swrMs + (this.#serveStaleOnError ? ttl : 0)
    this.#set(key, payload, tags)
    if (this.#hot !== null) this.#hot.delete(key)
    if (this.#tier !== null) {
      this.#tier.set(key, kind, payload, ttl, tags)
      this.#queueTierFlush()
    }
  }

  #supersede(key) {
    const flight = this.#inflight.get(key)
    if (flight !== undefined) {
      flight.superseded = true
      this.#inflight.delete(key)
    }
  }

  #supersedeAll(matches) {
    for (const [key, flight] of this.#inflight) {
      if (matches(key)) {
        flight.superseded = true
        this.#inflight.delete(key)
      }
    }
  }
}

function encodeJson(value) {
  let text
  try {
    text = JSON.stringify(value)
  } catch (error) {
    // a circular structure or a BigInt
    throw unstorable(`value cannot be stored as JSON: ${error.message}`, error)
  }
  if (text === undefined) {
    throw unstorable(`value must be ${VALUE_TYPES}; JSON.stringify returned undefined for it`)
  }
  return text
}

module.exports = { PersistentCache }
