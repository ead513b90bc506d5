'use strict'
// RateLimiter: the native limiter plus `acquire`, which waits instead of refusing.
//
// The native side decides and orders waiters (weighted fair queuing across clients); this file
// keeps the promises and one timer that wakes the native queue when the next waiter can be
// served or expires. The timer runs only while someone waits, so an idle limiter never keeps
// the process alive. With a TestClock, the clock's moves wake the queue instead of the timer.
//
// With `store: { redis }` the buckets live in Redis and decisions are asynchronous: `consume`
// asks the native side, which answers at once what this process already knows (a key refused
// until later, or the breaker's policy while Redis is down) and otherwise queues the request;
// every request queued in one tick goes to Redis as one batch (one pipeline) at the end of the
// tick, and the store thread wakes this file when batches complete.
const binding = require('../binding.js')
const { RateLimitError, StoreAsyncError, invalidArgument, describe } = require('./errors')
const { TestClock } = require('./test-clock')

/**
 * Remote limiters by id, held weakly: the store thread's wake-up names its limiter by id. A
 * limiter with batches out is also held strongly in `awaitingStore`, or a caller that keeps
 * only the promise would let it be collected (and the promise never settle).
 */
const remotes = new Map()
const awaitingStore = new Set()
const forgetRemote = new FinalizationRegistry((id) => remotes.delete(id))
let nextRemoteId = 1

function wakeRemote(id) {
  const ref = remotes.get(id)
  const limiter = ref && ref.deref()
  if (limiter) limiter[kDrain]()
}

const kDrain = Symbol('bulwark.drain')
const PENDING = 2

function storeAsync(method) {
  return new StoreAsyncError(`RateLimiter.${method}() cannot answer synchronously: the limiter's buckets are in Redis; use consume(), which returns a Promise`)
}

const ACQUIRE_OPTIONS = new Set(['signal', 'maxWaitMs'])

/**
 * For the package's own glue (the Express middleware): `limiter[kDecide](key, cost)` makes the
 * decision of `check` and returns whether it was allowed, leaving limit, remaining, resetMs and
 * retryAfterMs in `limiter[kDecision]` (a Float64Array), so a hot caller builds no object.
 */
const kDecide = Symbol('bulwark.decide')
const kDecision = Symbol('bulwark.decision')

const MESSAGES = {
  blocked: 'the key is blocked',
  wait_too_long: 'the wait would exceed maxWaitMs',
  queue_full: 'the wait queue is full',
  timed_out: 'the request waited maxWaitMs without being served',
  aborted: 'the wait was aborted',
  closed: 'the limiter is closed',
}

function refusal(reason, retryAfterMs, key, cause) {
  return new RateLimitError(`rate limited: ${MESSAGES[reason] || reason}`, { reason, retryAfterMs, key }, cause ? { cause } : undefined)
}

class RateLimiter extends binding.RateLimiter {
  /** Waiters by id: { resolve, reject, key, signal, onAbort }. */
  #waiters = new Map()
  #timer = null
  #timerDueAt = Infinity
  #stopClockListener = null
  #decide
  #decision
  /** Remote store only: the fast submit, resolvers of this tick, batches out by id. */
  #submit = null
  #batch = []
  #flushQueued = false
  #inflight = new Map()
  #flushBound = null
  #closed = false
  /** Remote store only: waiting `acquire` calls, FIFO per key; counters of the waits. */
  #remoteWaiters = new Set()
  #keyQueues = new Map()
  #queueLimits = null
  #remoteWaited = 0
  #remoteTimedOut = 0

  constructor(options) {
    super(options)
    if (this._remote) {
      this.#setupRemote(options)
      return
    }
    // The hot calls are functions bound to this limiter's native state (no per-call unwrap);
    // `tryConsume` becomes an own property, and `check` reads its figures from a shared array.
    const fast = this._fastPath()
    /** Tokens left (>= 0) when allowed; minus the ms to wait (<= -1) when refused. */
    this.tryConsume = fast.tryConsume
    this.#decide = fast.decide
    this.#decision = fast.decision
    this[kDecide] = fast.decide
    this[kDecision] = fast.decision
    const clock = options && options.clock
    if (clock instanceof TestClock) {
      this.#stopClockListener = clock.onMove(() => this.#pump())
    }
  }

  #setupRemote(options) {
    // the native side validated these
    const queue = options.queue || {}
    this.#queueLimits = {
      maxPerClient: queue.maxPerClient === undefined ? 100 : queue.maxPerClient,
      maxTotal: queue.maxTotal === undefined ? 10_000 : queue.maxTotal,
      maxWaitMs: queue.maxWaitMs === undefined ? 10_000 : queue.maxWaitMs,
    }
    const fast = this._remoteFastPath()
    this.#submit = fast.submit
    this.#decision = fast.decision
    this.#flushBound = () => this.#flush()
    const refuse = (method) => () => {
      throw storeAsync(method)
    }
    this.tryConsume = refuse('tryConsume')
    this.#decide = refuse('check')
    this[kDecide] = null
    const id = nextRemoteId++
    remotes.set(id, new WeakRef(this))
    forgetRemote.register(this, id)
    this._attachStore(wakeRemote, id)
  }

  /** Whether the buckets live in a remote store (Redis): decisions then go through `consume`. */
  get remote() {
    return this._remote
  }

  /**
   * Decides one request and resolves with `{ allowed, limit, remaining, resetMs, retryAfterMs }`.
   * With the in-memory store it resolves at once with what `check` returns; with a Redis store
   * the decisions of one tick share one round trip. Never rejects for a refusal (see `allowed`);
   * rejects on invalid arguments.
   */
  consume(key, cost) {
    if (this.#submit === null) {
      try {
        return Promise.resolve(this.check(key, cost))
      } catch (error) {
        return Promise.reject(error)
      }
    }
    let status
    try {
      status = cost === undefined ? this.#submit(key) : this.#submit(key, cost)
    } catch (error) {
      return Promise.reject(error)
    }
    if (status === PENDING) {
      return new Promise((resolve) => {
        this.#batch.push((code, limit, remaining, resetMs, retryAfterMs) => resolve({ allowed: code === 1, limit, remaining, resetMs, retryAfterMs }))
        this.#queueFlush()
      })
    }
    const f = this.#decision
    return Promise.resolve({ allowed: status === 1, limit: f[0], remaining: f[1], resetMs: f[2], retryAfterMs: f[3] })
  }

  /**
   * Remote store: calls `done(code, limit, remaining, resetMs, retryAfterMs)` (code 1 allowed,
   * 0 refused, -1 blocked) at once when this process knows the answer, after the batch
   * otherwise. Throws on invalid arguments.
   */
  #ask(key, cost, done) {
    const status = this.#submit(key, cost)
    if (status === PENDING) {
      this.#batch.push(done)
      this.#queueFlush()
      return
    }
    const f = this.#decision
    done(status, f[0], f[1], f[2], f[3])
  }

  #queueFlush() {
    if (this.#flushQueued) return
    this.#flushQueued = true
    // after the current tick's callbacks and microtasks: everything they asked goes together
    process.nextTick(this.#flushBound)
  }

  #flush() {
    this.#flushQueued = false
    const id = this._flush()
    if (id !== 0) {
      this.#inflight.set(id, this.#batch)
      awaitingStore.add(this)
    }
    this.#batch = []
  }

  [kDrain]() {
    let data
    try {
      data = this._take()
    } catch {
      return
    }
    let at = 0
    while (at < data.length) {
      const id = data[at]
      const n = data[at + 1]
      at += 2
      const resolvers = this.#inflight.get(id)
      this.#inflight.delete(id)
      for (let i = 0; i < n; i++, at += 5) {
        const done = resolvers && resolvers[i]
        if (done) {
          try {
            done(data[at], data[at + 1], data[at + 2], data[at + 3], data[at + 4])
          } catch (error) {
            process.emitWarning(error)
          }
        }
      }
    }
    if (this.#inflight.size === 0) awaitingStore.delete(this)
  }

  #storeCommand(op, key, ms) {
    this._storeCommand(op, key, ms)
    this.#batch.push(null)
    this.#queueFlush()
  }

  /** Refills the key and lifts any block on it (in Redis too, when the store is remote). */
  reset(key) {
    if (this.#submit === null) return super.reset(key)
    this.#storeCommand('reset', key)
  }

  /** Refuses every request of `key` for `ms` milliseconds (in every process, with Redis). */
  block(key, ms) {
    if (this.#submit === null) return super.block(key, ms)
    if (typeof ms !== 'number') throw invalidArgument(TypeError, `ms must be a number, received ${describe(ms)}`)
    this.#storeCommand('block', key, ms)
  }

  /** Lifts a block on `key`. */
  unblock(key) {
    if (this.#submit === null) return super.unblock(key)
    this.#storeCommand('unblock', key)
  }

  /** Whole tokens the key holds now; synchronous, so not available with a Redis store. */
  peek(key) {
    if (this.#submit !== null) throw storeAsync('peek')
    return super.peek(key)
  }

  /** The counters; with a Redis store, `store` holds the store's own. */
  stats() {
    const stats = super.stats()
    if (this.#submit !== null) {
      stats.store = this._storeStats()
      stats.queued = this.#remoteWaiters.size
      stats.waited += this.#remoteWaited
      stats.timedOut += this.#remoteTimedOut
    }
    return stats
  }

  /** The same decision as `tryConsume`, as `{ allowed, limit, remaining, resetMs, retryAfterMs }`. */
  check(key, cost) {
    // without a cost the native side reads one argument only
    const allowed = cost === undefined ? this.#decide(key) : this.#decide(key, cost)
    const figures = this.#decision
    return { allowed, limit: figures[0], remaining: figures[1], resetMs: figures[2], retryAfterMs: figures[3] }
  }

  /**
   * Waits until `cost` tokens of `key` are granted, in fair order across clients. Resolves with
   * the decision; rejects with RateLimitError when the wait would exceed `maxWaitMs`, when the
   * queue is full, when `signal` aborts, or when the limiter closes.
   */
  acquire(key, cost = 1, options = undefined) {
    let signal
    let maxWaitMs
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') {
        return Promise.reject(invalidArgument(TypeError, `options must be an object, received ${describe(options)}`))
      }
      for (const name of Object.keys(options)) {
        if (!ACQUIRE_OPTIONS.has(name)) {
          return Promise.reject(invalidArgument(TypeError, `options has an unknown option "${name}"; known options are: signal, maxWaitMs`))
        }
      }
      signal = options.signal
      maxWaitMs = options.maxWaitMs
      if (signal !== undefined && !(signal instanceof AbortSignal)) {
        return Promise.reject(invalidArgument(TypeError, `options.signal must be an AbortSignal, received ${describe(signal)}`))
      }
      if (maxWaitMs !== undefined && typeof maxWaitMs !== 'number') {
        return Promise.reject(invalidArgument(TypeError, `options.maxWaitMs must be a number, received ${describe(maxWaitMs)}`))
      }
    }
    if (this.#submit !== null) return this.#acquireRemote(key, cost, signal, maxWaitMs)
    let outcome
    try {
      outcome = this._enqueue(key, cost, maxWaitMs)
    } catch (error) {
      return Promise.reject(error)
    }
    if (outcome.status === 'granted') {
      return Promise.resolve(outcome.decision)
    }
    if (outcome.status === 'rejected') {
      return Promise.reject(refusal(outcome.reason, outcome.retryAfterMs, key))
    }
    const id = outcome.id
    if (signal && signal.aborted) {
      this._cancel(id)
      return Promise.reject(refusal('aborted', 0, key, signal.reason))
    }
    const promise = new Promise((resolve, reject) => {
      const waiter = { resolve, reject, key, signal, onAbort: null }
      if (signal) {
        waiter.onAbort = () => {
          if (this._cancel(id)) this.#settle(id, refusal('aborted', 0, key, signal.reason))
          this.#pump()
        }
        signal.addEventListener('abort', waiter.onAbort, { once: true })
      }
      this.#waiters.set(id, waiter)
    })
    this.#pump()
    return promise
  }

  /**
   * `acquire` with a Redis store. The queue is this process's: FIFO per key, and only the head
   * of a key asks Redis, again when the retry time Redis gave has passed, so the budget it
   * waits for is the shared one and a key's waiters never race each other.
   */
  #acquireRemote(key, cost, signal, maxWaitMs) {
    if (this.#closed) return Promise.reject(refusal('closed', 0, key))
    const limits = this.#queueLimits
    const maxWait = maxWaitMs === undefined ? limits.maxWaitMs : maxWaitMs
    if (!(Number.isFinite(maxWait) && maxWait >= 0)) {
      return Promise.reject(invalidArgument(RangeError, `maxWaitMs must be a finite number of milliseconds >= 0, received ${describe(maxWait)}`))
    }
    if (signal && signal.aborted) return Promise.reject(refusal('aborted', 0, key, signal.reason))
    let queue = this.#keyQueues.get(key)
    if ((queue && queue.length >= limits.maxPerClient) || this.#remoteWaiters.size >= limits.maxTotal) {
      return Promise.reject(refusal('queue_full', 0, key))
    }
    return new Promise((resolve, reject) => {
      const startedAt = Date.now()
      const waiter = {
        key,
        cost,
        deadline: startedAt + maxWait,
        timer: null,
        asked: false,
        settled: false,
        onAbort: null,
        fail: (error) => finish(error),
      }
      const finish = (error, decision) => {
        if (waiter.settled) return
        waiter.settled = true
        if (waiter.timer) clearTimeout(waiter.timer)
        if (waiter.onAbort) signal.removeEventListener('abort', waiter.onAbort)
        this.#remoteWaiters.delete(waiter)
        const q = this.#keyQueues.get(key)
        if (q) {
          const at = q.indexOf(waiter)
          if (at >= 0) q.splice(at, 1)
          if (q.length === 0) this.#keyQueues.delete(key)
          else if (at === 0) this.#askFor(q[0])
        }
        if (error) reject(error)
        else resolve(decision)
      }
      waiter.finish = finish
      waiter.startedAt = startedAt
      if (signal) {
        waiter.onAbort = () => finish(refusal('aborted', 0, key, signal.reason))
        signal.addEventListener('abort', waiter.onAbort, { once: true })
      }
      this.#remoteWaiters.add(waiter)
      if (!queue) {
        queue = []
        this.#keyQueues.set(key, queue)
      }
      queue.push(waiter)
      if (queue.length === 1) this.#askFor(waiter)
    })
  }

  #askFor(waiter) {
    if (waiter.settled || waiter.asked || this.#closed) return
    waiter.asked = true
    waiter.tries = (waiter.tries || 0) + 1
    waiter.timer = null
    try {
      this.#ask(waiter.key, waiter.cost, (code, limit, remaining, resetMs, retryAfterMs) => {
        waiter.asked = false
        if (waiter.settled) return
        const waited = waiter.tries > 1
        if (code === 1) {
          if (waited) this.#remoteWaited++
          waiter.finish(null, { allowed: true, limit, remaining, resetMs, retryAfterMs: 0 })
        } else if (code === -1) {
          waiter.finish(refusal('blocked', retryAfterMs, waiter.key))
        } else if (Date.now() + retryAfterMs > waiter.deadline) {
          if (waited) this.#remoteTimedOut++
          waiter.finish(refusal(waited ? 'timed_out' : 'wait_too_long', retryAfterMs, waiter.key))
        } else {
          waiter.timer = setTimeout(() => this.#askFor(waiter), Math.max(1, retryAfterMs))
        }
      })
    } catch (error) {
      waiter.asked = false
      waiter.finish(error)
    }
  }

  /**
   * Rejects every waiter with RateLimitError (reason 'closed') and stops the timer; with a
   * Redis store, sends what is queued and stops the store thread once it has answered.
   */
  close() {
    if (this.#submit !== null && !this.#closed) {
      this.#closed = true
      if (this.#batch.length > 0) this.#flush()
      this._closeStore()
      for (const waiter of this.#remoteWaiters) waiter.fail(refusal('closed', 0, waiter.key))
      this.#remoteWaiters.clear()
    }
    this.#clearTimer()
    if (this.#stopClockListener) {
      this.#stopClockListener()
      this.#stopClockListener = null
    }
    for (const id of this._close()) {
      const waiter = this.#waiters.get(id)
      this.#settle(id, refusal('closed', 0, waiter && waiter.key))
    }
  }

  #settle(id, error, decision) {
    const waiter = this.#waiters.get(id)
    if (!waiter) return
    this.#waiters.delete(id)
    if (waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort)
    if (error) waiter.reject(error)
    else waiter.resolve(decision)
  }

  #pump() {
    if (this.#waiters.size === 0) {
      // every native waiter has a JS waiter: nothing is queued
      this.#clearTimer()
      return
    }
    const { granted, expired, nextWakeMs } = this._pump()
    for (const { id, decision } of granted) this.#settle(id, null, decision)
    for (const id of expired) {
      const waiter = this.#waiters.get(id)
      this.#settle(id, refusal('timed_out', 0, waiter && waiter.key))
    }
    this.#schedule(nextWakeMs)
  }

  #schedule(nextWakeMs) {
    if (nextWakeMs === undefined || nextWakeMs === null || this.#stopClockListener) {
      // nobody waits, or a TestClock wakes the queue when it moves
      this.#clearTimer()
      return
    }
    const delay = Math.max(1, Math.ceil(nextWakeMs))
    const dueAt = Date.now() + delay
    if (this.#timer && this.#timerDueAt <= dueAt) return
    this.#clearTimer()
    this.#timerDueAt = dueAt
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#timerDueAt = Infinity
      this.#pump()
    }, delay)
  }

  #clearTimer() {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = null
    this.#timerDueAt = Infinity
  }
}

module.exports = { RateLimiter, kDecide, kDecision }
