'use strict'
// Loader: DataLoader's API and semantics (load, loadMany, clear, clearAll, prime; options batch,
// maxBatchSize, batchScheduleFn, cache, cacheKeyFn, cacheMap, name), so that code written for
// DataLoader runs unchanged, plus a bounded memo (`maxCacheSize`) and batch statistics.
//
// It is all promise scheduling, so it is plain JS: crossing into the addon would only add cost.
// Keys asked for within one tick form one batch: the batch is dispatched after the promise jobs
// queued so far have run (a resolved promise, then process.nextTick), as DataLoader does.
const { invalidArgument, invalidOption, describe } = require('./errors')

const LOADER_OPTIONS = new Set(['batch', 'maxBatchSize', 'batchScheduleFn', 'cache', 'cacheKeyFn', 'cacheMap', 'name', 'maxCacheSize'])
const resolved = Promise.resolve()

// The default schedule, shared by every loader: batches wait in `pending` in the order they were
// scheduled, and each one queues a promise job that queues a tick that dispatches the oldest
// pending batch. That is the same order and the same turn as a callback per batch (a resolved
// promise, then process.nextTick), without two closures per batch.
// `pending` keeps its length (the most batches ever pending at once) so that a batch per turn
// reuses a slot instead of growing and trimming the array.
const pending = []
let pendingHead = 0
let pendingTail = 0
function dispatchOldest() {
  const batch = pending[pendingHead]
  pending[pendingHead++] = undefined
  if (pendingHead === pendingTail) {
    pendingHead = 0
    pendingTail = 0
  }
  dispatchBatch(batch.loader, batch)
}
/** `loader.#dispatch(batch)`, for the shared schedule (set in the class's static block). */
let dispatchBatch
function tickThenDispatch() {
  process.nextTick(dispatchOldest)
}

/** One batch being collected: its keys and, per key, its promise's resolve and reject. */
class Batch {
  constructor(loader) {
    this.loader = loader
    this.dispatched = false
    this.keys = []
    /** resolve, reject, resolve, reject... in the order of `keys`. */
    this.settlers = []
  }
}

function isArrayLike(value) {
  return value !== null && typeof value === 'object' && typeof value.length === 'number' && value.length >= 0
}

class Loader {
  static {
    dispatchBatch = (loader, batch) => loader.#dispatch(batch)
  }

  #batchFn
  #maxBatchSize
  /** options.batchScheduleFn, or null for the shared default schedule. */
  #schedule
  #cacheKeyFn
  #cache
  #maxCacheSize
  #batch = null
  #batches = 0
  #keys = 0
  #largestBatch = 0
  #failedBatches = 0

  /**
   * @param {(keys: readonly any[]) => PromiseLike<ArrayLike<any>>} batchFn
   * @param {import('..').LoaderOptions} [options]
   */
  constructor(batchFn, options) {
    if (typeof batchFn !== 'function') {
      throw invalidArgument(TypeError, `batchFn must be a function that takes an array of keys and returns a promise of an array of values, received ${describe(batchFn)}`)
    }
    if (options === undefined || options === null) {
      // the common case (a loader per request): no option to read
      this.#batchFn = batchFn
      this.#maxBatchSize = Infinity
      this.#schedule = null
      this.#cacheKeyFn = null
      this.#cache = new Map()
      this.#maxCacheSize = Infinity
      this.name = null
      return
    }
    const opts = options
    if (typeof opts !== 'object') throw invalidOption(TypeError, `options must be an object, received ${describe(options)}`)
    for (const key of Object.keys(opts)) {
      if (!LOADER_OPTIONS.has(key)) {
        throw invalidOption(TypeError, `options has an unknown option "${key}"; known options are: ${[...LOADER_OPTIONS].join(', ')}`)
      }
    }
    for (const flag of ['batch', 'cache']) {
      if (opts[flag] !== undefined && typeof opts[flag] !== 'boolean') {
        throw invalidOption(TypeError, `options.${flag} must be a boolean, received ${describe(opts[flag])}`)
      }
    }
    let maxBatchSize = Infinity
    if (opts.batch === false) {
      maxBatchSize = 1
    } else if (opts.maxBatchSize !== undefined) {
      const n = opts.maxBatchSize
      if (typeof n !== 'number') throw invalidOption(TypeError, `options.maxBatchSize must be a number, received ${describe(n)}`)
      if (!(n >= 1) || (n !== Infinity && !Number.isInteger(n))) {
        throw invalidOption(RangeError, `options.maxBatchSize must be an integer >= 1 (or Infinity), received number ${n}`)
      }
      maxBatchSize = n
    }
    for (const fn of ['batchScheduleFn', 'cacheKeyFn']) {
      if (opts[fn] !== undefined && typeof opts[fn] !== 'function') {
        throw invalidOption(TypeError, `options.${fn} must be a function, received ${describe(opts[fn])}`)
      }
    }
    let cache = null
    if (opts.cache !== false) {
      if (opts.cacheMap !== undefined && opts.cacheMap !== null) {
        const map = opts.cacheMap
        if (typeof map !== 'object' || ['get', 'set', 'delete', 'clear'].some((m) => typeof map[m] !== 'function')) {
          throw invalidOption(TypeError, `options.cacheMap must be an object with get, set, delete and clear methods, received ${describe(map)}`)
        }
        cache = map
      } else {
        cache = new Map()
      }
    }
    let maxCacheSize = Infinity
    if (opts.maxCacheSize !== undefined) {
      const n = opts.maxCacheSize
      if (typeof n !== 'number') throw invalidOption(TypeError, `options.maxCacheSize must be a number, received ${describe(n)}`)
      if (!(n >= 1) || (n !== Infinity && !Number.isInteger(n))) {
        throw invalidOption(RangeError, `options.maxCacheSize must be an integer >= 1 (or Infinity), received number ${n}`)
      }
      if (cache !== null && !(cache instanceof Map)) {
        throw invalidOption(TypeError, 'options.maxCacheSize bounds the loader\'s own Map: it cannot be used with options.cacheMap (bound that map yourself)')
      }
      maxCacheSize = n
    }
    if (opts.name !== undefined && opts.name !== null && typeof opts.name !== 'string') {
      throw invalidOption(TypeError, `options.name must be a string, received ${describe(opts.name)}`)
    }
    this.#batchFn = batchFn
    this.#maxBatchSize = maxBatchSize
    this.#schedule = opts.batchScheduleFn || null
    this.#cacheKeyFn = opts.cacheKeyFn || null
    this.#cache = cache
    this.#maxCacheSize = maxCacheSize
    /** The loader's name (`options.name`), or null. */
    this.name = opts.name === undefined ? null : opts.name
  }

  /** A promise of the value of `key`, loaded in a batch with the keys asked for in the same tick. */
  load(key) {
    if (key === null || key === undefined) {
      throw invalidArgument(TypeError, `loader.load() must be called with a key, received ${describe(key)}`)
    }
    const cache = this.#cache
    let cacheKey
    if (cache !== null) {
      cacheKey = this.#cacheKeyFn === null ? key : this.#cacheKeyFn(key)
      const cached = cache.get(cacheKey)
      if (cached !== undefined) return cached
    }
    let batch = this.#batch
    if (batch === null || batch.dispatched || batch.keys.length >= this.#maxBatchSize) {
      batch = this.#newBatch()
    }
    batch.keys.push(key)
    const settlers = batch.settlers
    // a function literal here, not one executor per batch: V8 inlines a literal executor
    const promise = new Promise((resolve, reject) => {
      settlers.push(resolve, reject)
    })
    if (cache !== null) {
      cache.set(cacheKey, promise)
      if (this.#maxCacheSize !== Infinity && cache.size > this.#maxCacheSize) cache.delete(cache.keys().next().value)
    }
    return promise
  }

  /** Loads every key; resolves to an array of values, an Error in the place of a key that failed. */
  loadMany(keys) {
    if (!isArrayLike(keys)) {
      throw invalidArgument(TypeError, `loader.loadMany() must be called with an array of keys, received ${describe(keys)}`)
    }
    const promises = []
    for (let i = 0; i < keys.length; i++) promises.push(this.load(keys[i]).catch((error) => error))
    return Promise.all(promises)
  }

  /** Forgets the cached value of `key`. Returns the loader. */
  clear(key) {
    if (this.#cache !== null) this.#cache.delete(this.#cacheKeyFn === null ? key : this.#cacheKeyFn(key))
    return this
  }

  /** Forgets every cached value. Returns the loader. */
  clearAll() {
    if (this.#cache !== null) this.#cache.clear()
    return this
  }

  /** Caches `value` for `key` unless a value is cached already (an Error caches a rejection). Returns the loader. */
  prime(key, value) {
    const cache = this.#cache
    if (cache === null) return this
    const cacheKey = this.#cacheKeyFn === null ? key : this.#cacheKeyFn(key)
    if (cache.get(cacheKey) !== undefined) return this
    let promise
    if (value instanceof Error) {
      promise = Promise.reject(value)
      // a primed error must not count as unhandled before someone loads it
      promise.catch(() => {})
    } else {
      promise = Promise.resolve(value)
    }
    cache.set(cacheKey, promise)
    if (cache.size > this.#maxCacheSize) cache.delete(cache.keys().next().value)
    return this
  }

  /** Batch statistics: batches dispatched, keys loaded through them, keys per batch, failed batches, cached values. */
  stats() {
    return {
      batches: this.#batches,
      keys: this.#keys,
      meanKeysPerBatch: this.#batches === 0 ? 0 : this.#keys / this.#batches,
      maxKeysPerBatch: this.#largestBatch,
      failedBatches: this.#failedBatches,
      cacheSize: this.#cache !== null && typeof this.#cache.size === 'number' ? this.#cache.size : undefined,
    }
  }

  #newBatch() {
    const batch = new Batch(this)
    this.#batch = batch
    if (this.#schedule === null) {
      pending[pendingTail++] = batch
      resolved.then(tickThenDispatch)
    } else {
      this.#schedule(() => this.#dispatch(batch))
    }
    return batch
  }

  #dispatch(batch) {
    if (batch.dispatched) return
    batch.dispatched = true
    if (this.#batch === batch) this.#batch = null
    const keys = batch.keys
    if (keys.length === 0) return
    this.#batches++
    this.#keys += keys.length
    if (keys.length > this.#largestBatch) this.#largestBatch = keys.length
    try {
      const returned = this.#batchFn(keys)
      if (returned === null || typeof returned !== 'object' || typeof returned.then !== 'function') {
        this.#fail(batch, invalidArgument(TypeError, `the loader's batch function must return a promise of an array of values, but it returned ${describe(returned)}`))
        return
      }
      returned.then(
        (values) => this.#settle(batch, values),
        (error) => this.#fail(batch, error),
      )
    } catch (error) {
      this.#fail(batch, error)
    }
  }

  /** Settles every key of `batch` with its value; a value that is an Error rejects its key only. */
  #settle(batch, values) {
    const keys = batch.keys
    try {
      if (!isArrayLike(values)) {
        throw invalidArgument(TypeError, `the loader's batch function must resolve to an array of values, one per key, but it resolved to ${describe(values)}`)
      }
      if (values.length !== keys.length) {
        throw invalidArgument(TypeError, `the loader's batch function returned ${values.length} values for ${keys.length} keys: it must return exactly one value (or Error) per key, in the order of the keys`)
      }
      const settlers = batch.settlers
      for (let i = 0; i < keys.length; i++) {
        const value = values[i]
        if (value instanceof Error) settlers[2 * i + 1](value)
        else settlers[2 * i](value)
      }
    } catch (error) {
      this.#fail(batch, error)
    }
  }

  /** A failed batch rejects every key not settled yet and caches none of them. */
  #fail(batch, error) {
    this.#failedBatches++
    const settlers = batch.settlers
    for (let i = 0; i < batch.keys.length; i++) {
      this.clear(batch.keys[i])
      settlers[2 * i + 1](error)
    }
  }
}

module.exports = { Loader }
