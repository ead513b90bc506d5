'use strict'
// RateLimiter: the native limiter plus `acquire`, which waits instead of refusing.
//
// The native side decides and orders waiters (weighted fair queuing across clients); this file
// keeps the promises and one timer that wakes the native queue when the next waiter can be
// served or expires. The timer runs only while someone waits, so an idle limiter never keeps
// the process alive. With a TestClock, the clock's moves wake the queue instead of the timer.
const binding = require('../binding.js')
const { RateLimitError, invalidArgument, describe } = require('./errors')
const { TestClock } = require('./test-clock')

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

  constructor(options) {
    super(options)
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

  /** Rejects every waiter with RateLimitError (reason 'closed') and stops the timer. */
  close() {
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
