'use strict'
// ConnectionPool: a generic pool of resources (database clients, Redis connections, anything
// the user's `create` makes), with a priority wait queue, health checks, lifetimes, create
// retries with backoff, leak detection and a drain.
//
// The whole block is JavaScript, a deliberate exception to "blocks in Rust" (ARCHITECTURE.md's
// crossing rule decides): the pool holds JS objects and every one of its decisions ends in JS
// (settle a promise, call the user's create, validate or destroy). Its own work per acquire and
// release is a few array operations, less than one crossing would cost, so a native core could
// only add to it. Time comes from `performance.now()` or a TestClock, all timers are unref'd.
const { EventEmitter } = require('node:events')
const { DurationHistogram } = require('./histogram')
const { TestClock } = require('./test-clock')
const { PoolError, PoolTimeoutError, codes, invalidArgument, invalidOption, describe } = require('./errors')

const OPTIONS = new Set([
  'name', 'create', 'destroy', 'validate', 'isBroken', 'min', 'max', 'fifo', 'maxWaiting', 'acquireTimeoutMs',
  'createTimeoutMs', 'validateOnAcquire', 'healthCheckIntervalMs', 'idleTimeoutMs', 'maxLifetimeMs',
  'lifetimeJitterMs', 'maxUses', 'createRetry', 'leakDetectionMs', 'watchResourceErrors', 'clock',
])
const RETRY_OPTIONS = new Set(['retries', 'backoffMs', 'maxBackoffMs'])
const ACQUIRE_OPTIONS = new Set(['priority', 'signal', 'timeoutMs'])
const DRAIN_OPTIONS = new Set(['timeoutMs'])

// error codes of a connection that is gone: socket errors, and PostgreSQL's "terminating
// connection" class (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now)
const BROKEN_CODES = new Set(['ECONNRESET', 'EPIPE', 'PROTOCOL_CONNECTION_LOST', 'ECONNREFUSED', 'ETIMEDOUT', 'ENOTCONN', 'ERR_STREAM_DESTROYED', '57P01', '57P02', '57P03'])
const BROKEN_MESSAGE = /connection (?:is )?(?:terminated|closed|ended|lost)|socket (?:hang up|closed)|not connected|stream isn't writeable|cannot enqueue .* after (?:fatal error|being destroyed|invoking quit)/i

/**
 * The default `isBroken`: true for errors that say the connection itself is gone (socket errors,
 * PostgreSQL's 57P0x codes, "Connection terminated" / "Connection is closed" / "Stream isn't
 * writeable" messages of pg, mysql2 and ioredis), false for errors of the statement (a syntax error, a constraint).
 */
function connectionLost(error) {
  if (error === null || typeof error !== 'object') return false
  if (error.fatal === true) return true
  if (typeof error.code === 'string' && BROKEN_CODES.has(error.code)) return true
  return typeof error.message === 'string' && BROKEN_MESSAGE.test(error.message)
}

/** A double-ended queue on an array with a moving head: O(1) at both ends for the common cases. */
class Deque {
  #items = []
  #head = 0

  get length() {
    return this.#items.length - this.#head
  }

  push(item) {
    this.#items.push(item)
  }

  unshift(item) {
    if (this.#head > 0) this.#items[--this.#head] = item
    else this.#items.unshift(item)
  }

  shift() {
    if (this.#head >= this.#items.length) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head++] = undefined
    if (this.#head === this.#items.length) {
      this.#items.length = 0
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  pop() {
    if (this.#head >= this.#items.length) return undefined
    const item = this.#items.pop()
    if (this.#head === this.#items.length) {
      this.#items.length = 0
      this.#head = 0
    }
    return item
  }

  /** Removes one item wherever it is (O(n)); true when it was there. */
  remove(item) {
    const index = this.#items.indexOf(item, this.#head)
    if (index < 0) return false
    this.#items.splice(index, 1)
    return true
  }

  /** Takes every item out, oldest first. */
  drain() {
    const items = this.#items.slice(this.#head)
    this.#items = []
    this.#head = 0
    return items
  }
}

/** A min-heap of timed jobs `{ at, run, cancelled }` ordered by `at`. */
class Agenda {
  #heap = []

  get size() {
    return this.#heap.length
  }

  peek() {
    return this.#heap[0]
  }

  push(job) {
    const heap = this.#heap
    heap.push(job)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (heap[parent].at <= job.at) break
      heap[i] = heap[parent]
      i = parent
    }
    heap[i] = job
  }

  pop() {
    const heap = this.#heap
    const top = heap[0]
    const last = heap.pop()
    if (heap.length > 0) {
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        if (left >= heap.length) break
        const right = left + 1
        const child = right < heap.length && heap[right].at < heap[left].at ? right : left
        if (heap[child].at >= last.at) break
        heap[i] = heap[child]
        i = child
      }
      heap[i] = last
    }
    return top
  }

  clear() {
    this.#heap.length = 0
  }

  /** Drops the jobs for which `dead(job)` is true and restores the heap order. */
  sweep(dead) {
    const live = this.#heap.filter((job) => !dead(job))
    this.#heap = []
    for (const job of live) this.push(job)
  }
}

/** The bounds (ms) of the cumulative acquire-wait counts in `stats().acquireWaitHistogram`. */
const WAIT_BOUNDS_MS = Object.freeze([0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000])

// the states of a resource the pool holds
const IDLE = 0
const BORROWED = 1
const VALIDATING = 2

/**
 * A pool of resources made by the user's `create` and ended by their `destroy`. See the README's
 * ConnectionPool section for the options, the events and the errors.
 */
class ConnectionPool extends EventEmitter {
  #name
  #create
  #destroy
  #validate
  #isBroken
  #min
  #max
  #fifo
  #maxWaiting
  #acquireTimeoutMs
  #createTimeoutMs
  #validateOnAcquire
  #healthCheckIntervalMs
  #idleTimeoutMs
  #maxLifetimeMs
  #lifetimeJitterMs
  #maxUses
  #retries
  #backoffMs
  #maxBackoffMs
  #leakDetectionMs
  #watchResourceErrors
  #testClock = null

  /** resource -> record `{ resource, state, createdAt, expiresAt, uses, idleSince, borrowedAt, stack, leakReported, broken }` */
  #records = new Map()
  #idle = new Deque()
  #borrowed = 0
  #validating = 0
  #creating = 0
  #destroying = new Set()
  /** every resource this pool made, so a late release of a destroyed one is told from a foreign one */
  #made = new WeakSet()

  /** priority -> Deque of waiters, and the priorities that have a queue, highest first */
  #queues = new Map()
  #priorities = []
  #pending = 0

  #agenda = new Agenda()
  /** cancelled jobs still in the agenda; swept out when they are half of it */
  #cancelledJobs = 0
  #timer = null
  #timerAt = Infinity
  #housekeepingMs = 0
  #nextHealthCheckAt = Infinity
  #checkingHealth = false

  #createFailing = false
  #lastCreateError = undefined
  #createsPausedUntil = 0

  #closed = false
  #drained = null
  #onDrained = null

  #waits = new DurationHistogram(WAIT_BOUNDS_MS)
  #counts = { created: 0, destroyed: 0, createErrors: 0, destroyErrors: 0, validationFailures: 0, acquireTimeouts: 0, leaks: 0, resourceErrors: 0, invalidReleases: 0, queueFull: 0, aborted: 0, acquired: 0 }

  /** A pool; `create` and `destroy` are required, everything else has a default. */
  constructor(options) {
    super()
    if (options === null || typeof options !== 'object') {
      throw invalidOption(TypeError, `ConnectionPool options must be an object with create and destroy, received ${describe(options)}`)
    }
    for (const key of Object.keys(options)) {
      if (!OPTIONS.has(key)) throw invalidOption(TypeError, `unknown ConnectionPool option "${key}"`)
    }
    this.#name = options.name === undefined ? 'pool' : nameOption(options.name)
    this.#create = functionOption('create', options.create, true)
    this.#destroy = functionOption('destroy', options.destroy, true)
    this.#validate = functionOption('validate', options.validate, false)
    this.#isBroken = functionOption('isBroken', options.isBroken, false) ?? connectionLost
    this.#max = integerOption('max', options.max, 10, 1)
    this.#min = integerOption('min', options.min, 0, 0)
    if (this.#min > this.#max) {
      throw invalidOption(RangeError, `option "min" (${this.#min}) must not be greater than "max" (${this.#max})`)
    }
    this.#fifo = booleanOption('fifo', options.fifo, true)
    this.#maxWaiting = options.maxWaiting === Infinity ? Infinity : integerOption('maxWaiting', options.maxWaiting, Infinity, 0)
    this.#acquireTimeoutMs = msOption('acquireTimeoutMs', options.acquireTimeoutMs, 30_000)
    this.#createTimeoutMs = msOption('createTimeoutMs', options.createTimeoutMs, 30_000)
    this.#validateOnAcquire = booleanOption('validateOnAcquire', options.validateOnAcquire, false)
    this.#healthCheckIntervalMs = msOption('healthCheckIntervalMs', options.healthCheckIntervalMs, 0)
    if ((this.#validateOnAcquire || this.#healthCheckIntervalMs > 0) && this.#validate === undefined) {
      const which = this.#validateOnAcquire ? 'validateOnAcquire' : 'healthCheckIntervalMs'
      throw invalidOption(TypeError, `option "${which}" needs a "validate" function`)
    }
    this.#idleTimeoutMs = msOption('idleTimeoutMs', options.idleTimeoutMs, 30_000)
    this.#maxLifetimeMs = msOption('maxLifetimeMs', options.maxLifetimeMs, 0)
    this.#lifetimeJitterMs = msOption('lifetimeJitterMs', options.lifetimeJitterMs, this.#maxLifetimeMs / 10)
    if (this.#maxLifetimeMs > 0 && this.#lifetimeJitterMs >= this.#maxLifetimeMs) {
      throw invalidOption(RangeError, `option "lifetimeJitterMs" (${this.#lifetimeJitterMs}) must be less than "maxLifetimeMs" (${this.#maxLifetimeMs})`)
    }
    this.#maxUses = integerOption('maxUses', options.maxUses, 0, 0)
    const retry = options.createRetry ?? {}
    if (retry === null || typeof retry !== 'object') {
      throw invalidOption(TypeError, `option "createRetry" must be an object { retries, backoffMs, maxBackoffMs }, received ${describe(retry)}`)
    }
    for (const key of Object.keys(retry)) {
      if (!RETRY_OPTIONS.has(key)) throw invalidOption(TypeError, `unknown option "createRetry.${key}"`)
    }
    this.#retries = integerOption('createRetry.retries', retry.retries, 3, 0)
    this.#backoffMs = msOption('createRetry.backoffMs', retry.backoffMs, 100)
    this.#maxBackoffMs = msOption('createRetry.maxBackoffMs', retry.maxBackoffMs, Math.max(5_000, this.#backoffMs))
    if (this.#maxBackoffMs < this.#backoffMs) {
      throw invalidOption(RangeError, `option "createRetry.maxBackoffMs" (${this.#maxBackoffMs}) must not be less than "createRetry.backoffMs" (${this.#backoffMs})`)
    }
    this.#leakDetectionMs = msOption('leakDetectionMs', options.leakDetectionMs, 0)
    this.#watchResourceErrors = booleanOption('watchResourceErrors', options.watchResourceErrors, true)
    if (options.clock !== undefined) {
      if (!(options.clock instanceof TestClock)) {
        throw invalidOption(TypeError, `option "clock" must be a TestClock, received ${describe(options.clock)}`)
      }
      this.#testClock = options.clock
      this.#testClock.onMove(() => this.#runDue())
    }

    // housekeeping (idle timeouts, lifetimes, leaks, health checks) runs at a quarter of the
    // shortest of those intervals, between 10 ms and 1 s
    const intervals = [this.#idleTimeoutMs, this.#maxLifetimeMs, this.#leakDetectionMs, this.#healthCheckIntervalMs].filter((ms) => ms > 0)
    if (intervals.length > 0) this.#housekeepingMs = Math.min(1000, Math.max(10, Math.min(...intervals) / 4))
    if (this.#healthCheckIntervalMs > 0) this.#nextHealthCheckAt = this.#now() + this.#healthCheckIntervalMs
    if (this.#housekeepingMs > 0) this.#scheduleHousekeeping(this.#now() + this.#housekeepingMs)
    this.#startCreates()
  }

  /** The pool's name (in errors, events and Observability). */
  get name() {
    return this.#name
  }

  /** Resources held now: idle, borrowed, being validated, and being created. */
  get size() {
    return this.#records.size + this.#creating
  }

  /** Callers waiting for a resource now. */
  get pending() {
    return this.#pending
  }

  /** True once `drain()` or `close()` was called. */
  get closed() {
    return this.#closed
  }

  /**
   * A resource, now if one is idle, otherwise when one is released or created. Rejects with
   * `PoolTimeoutError` after `timeoutMs` (default `acquireTimeoutMs`; 0 waits without a deadline),
   * with `PoolError` ERR_POOL_QUEUE_FULL when `maxWaiting` callers already wait, ERR_POOL_CLOSED
   * after `drain()`/`close()`, or the signal's reason when `signal` aborts. Higher `priority`
   * (default 0) is served first; equal priorities in arrival order.
   */
  acquire(options) {
    let priority = 0
    let timeoutMs = this.#acquireTimeoutMs
    let signal
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') {
        return Promise.reject(invalidArgument(TypeError, `acquire options must be an object, received ${describe(options)}`))
      }
      for (const key in options) {
        if (!ACQUIRE_OPTIONS.has(key)) return Promise.reject(invalidArgument(TypeError, `unknown acquire option "${key}"`))
      }
      if (options.priority !== undefined) {
        if (!Number.isInteger(options.priority)) {
          return Promise.reject(invalidArgument(TypeError, `acquire option "priority" must be an integer, received ${describe(options.priority)}`))
        }
        priority = options.priority
      }
      if (options.timeoutMs !== undefined) {
        if (typeof options.timeoutMs !== 'number' || !Number.isFinite(options.timeoutMs) || options.timeoutMs < 0) {
          return Promise.reject(invalidArgument(RangeError, `acquire option "timeoutMs" must be a non-negative finite number, received ${describe(options.timeoutMs)}`))
        }
        timeoutMs = options.timeoutMs
      }
      if (options.signal !== undefined) {
        if (options.signal === null || typeof options.signal !== 'object' || typeof options.signal.aborted !== 'boolean') {
          return Promise.reject(invalidArgument(TypeError, `acquire option "signal" must be an AbortSignal, received ${describe(options.signal)}`))
        }
        signal = options.signal
        if (signal.aborted) return Promise.reject(signal.reason)
      }
    }
    if (this.#closed) return Promise.reject(this.#closedError())

    // the fast path: an idle resource and nobody ahead of us
    if (this.#pending === 0 && !this.#validateOnAcquire && this.#idle.length > 0) {
      const record = this.#takeIdle()
      this.#waits.record(0)
      return Promise.resolve(this.#lend(record, this.#leakDetectionMs > 0 ? acquireStack(this.acquire) : undefined))
    }
    if (this.#pending >= this.#maxWaiting) {
      this.#counts.queueFull++
      return Promise.reject(new PoolError(`pool "${this.#name}" already has ${this.#pending} callers waiting (maxWaiting ${this.#maxWaiting})`, codes.POOL_QUEUE_FULL, { pool: this.#name }))
    }
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, priority, since: this.#now(), timeoutMs, deadline: null, signal, onAbort: null, settled: false, stack: undefined }
      if (timeoutMs > 0) waiter.deadline = this.#schedule(timeoutMs, () => this.#expire(waiter))
      if (signal !== undefined) {
        waiter.onAbort = () => this.#abort(waiter)
        signal.addEventListener('abort', waiter.onAbort, { once: true })
      }
      if (this.#leakDetectionMs > 0) waiter.stack = acquireStack(this.acquire)
      this.#enqueue(waiter, false)
      this.#dispatch()
    })
  }

  /**
   * Gives a borrowed resource back. Throws `PoolError` ERR_POOL_FOREIGN_RESOURCE for a resource
   * this pool never made; releasing one that is not borrowed (twice, or after `destroy`) does
   * nothing and is counted in `stats().invalidReleases`.
   */
  release(resource) {
    const record = this.#records.get(resource)
    if (record === undefined) {
      if (!this.#isMade(resource)) throw this.#foreignError('release')
      this.#counts.invalidReleases++
      return
    }
    if (record.state !== BORROWED) {
      this.#counts.invalidReleases++
      return
    }
    this.#borrowed--
    if (this.#listening('release')) this.#safeEmit('release', resource)
    if (this.#closed || record.broken || this.#worn(record)) {
      this.#retire(record, this.#closed ? 'closed' : record.broken ? 'broken' : 'expired')
      this.#dispatch()
      return
    }
    this.#giveBack(record)
  }

  /**
   * Destroys a borrowed resource the caller knows is broken (or an idle one), and makes a new
   * one if callers wait or the pool is below `min`. Resolves when the user's `destroy` is done
   * (its errors are counted, never thrown). Throws ERR_POOL_FOREIGN_RESOURCE for a resource this
   * pool never made.
   */
  destroy(resource) {
    const record = this.#records.get(resource)
    if (record === undefined) {
      if (!this.#isMade(resource)) throw this.#foreignError('destroy')
      return Promise.resolve()
    }
    if (record.state === BORROWED) {
      this.#borrowed--
    } else if (record.state === IDLE) {
      this.#idle.remove(record)
    } else {
      // being validated: the validation's end destroys it
      record.broken = true
      return Promise.resolve()
    }
    const done = this.#retire(record, 'destroyed')
    this.#dispatch()
    return done
  }

  /**
   * Acquires a resource, runs `fn(resource)` and releases it, returning what `fn` returns. When
   * `fn` throws an error that `isBroken(error)` calls fatal, the resource is destroyed instead.
   */
  async use(fn, options) {
    if (typeof fn !== 'function') throw invalidArgument(TypeError, `use(fn): fn must be a function, received ${describe(fn)}`)
    const resource = await this.acquire(options)
    let result
    try {
      result = await fn(resource)
    } catch (error) {
      if (this.#brokenBy(error)) this.destroy(resource)
      else this.release(resource)
      throw error
    }
    this.release(resource)
    return result
  }

  /**
   * Stops the pool: new acquires reject with ERR_POOL_CLOSED, so do the waiting ones; idle
   * resources are destroyed at once and borrowed ones when released, or when `timeoutMs`
   * (default 30,000; 0 does not wait) runs out. Resolves when every resource is destroyed.
   * Calling it again returns the same promise.
   */
  drain(options) {
    let timeoutMs = 30_000
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw invalidArgument(TypeError, `drain options must be an object, received ${describe(options)}`)
      for (const key of Object.keys(options)) {
        if (!DRAIN_OPTIONS.has(key)) throw invalidArgument(TypeError, `unknown drain option "${key}"`)
      }
      if (options.timeoutMs !== undefined) {
        if (typeof options.timeoutMs !== 'number' || !Number.isFinite(options.timeoutMs) || options.timeoutMs < 0) {
          throw invalidArgument(RangeError, `drain option "timeoutMs" must be a non-negative finite number, received ${describe(options.timeoutMs)}`)
        }
        timeoutMs = options.timeoutMs
      }
    }
    if (this.#drained !== null) return this.#drained
    this.#closed = true
    for (const waiter of this.#takeAllWaiters()) this.#reject(waiter, this.#closedError())
    for (const record of this.#idle.drain()) this.#retire(record, 'closed')
    this.#drained = new Promise((resolve) => {
      this.#onDrained = resolve
    }).then(() => Promise.allSettled([...this.#destroyingPromises]))
    if (timeoutMs > 0 && !this.#settledDrain()) {
      this.#schedule(timeoutMs, () => this.#forceDrain())
    } else {
      this.#forceDrain()
    }
    this.#checkDrained()
    return this.#drained
  }

  /** `drain(options)`: the same promise. */
  close(options) {
    return this.drain(options)
  }

  /**
   * The pool's figures: sizes now, counters since it was made, and the time callers waited for
   * a resource (`acquireWaitMs`, ms, including the zero waits of the fast path).
   */
  stats() {
    const c = this.#counts
    return {
      size: this.size,
      idle: this.#idle.length,
      borrowed: this.#borrowed,
      validating: this.#validating,
      creating: this.#creating,
      pending: this.#pending,
      min: this.#min,
      max: this.#max,
      created: c.created,
      destroyed: c.destroyed,
      createErrors: c.createErrors,
      destroyErrors: c.destroyErrors,
      validationFailures: c.validationFailures,
      acquired: c.acquired,
      acquireTimeouts: c.acquireTimeouts,
      aborted: c.aborted,
      queueFull: c.queueFull,
      leaks: c.leaks,
      resourceErrors: c.resourceErrors,
      invalidReleases: c.invalidReleases,
      createFailing: this.#createFailing,
      closed: this.#closed,
      acquireWaitMs: this.#waits.summary(),
      acquireWaitHistogram: { boundsMs: WAIT_BOUNDS_MS, counts: this.#waits.cumulative(), sumMs: this.#waits.sumMs, count: this.#waits.count },
    }
  }

  // ---- lending and giving back

  #lend(record, stack) {
    record.state = BORROWED
    record.stack = stack
    record.uses++
    this.#borrowed++
    this.#counts.acquired++
    if (this.#leakDetectionMs > 0) {
      record.borrowedAt = this.#now()
      record.leakReported = false
    }
    if (this.#listening('acquire')) this.#safeEmit('acquire', record.resource)
    return record.resource
  }

  /** A resource back from use or validation: to the next waiter, or idle. */
  #giveBack(record) {
    // a resource just used, made or validated goes straight to a waiter, unvalidated
    const waiter = this.#nextWaiter()
    if (waiter !== undefined) {
      this.#grant(waiter, record)
      return
    }
    this.#makeIdle(record)
  }

  #makeIdle(record) {
    record.state = IDLE
    record.idleSince = this.#housekeepingMs > 0 ? this.#now() : 0
    record.stack = undefined
    this.#idle.push(record)
  }

  #takeIdle() {
    return this.#fifo ? this.#idle.shift() : this.#idle.pop()
  }

  #grant(waiter, record) {
    this.#settle(waiter)
    this.#waits.record(this.#now() - waiter.since)
    waiter.resolve(this.#lend(record, waiter.stack))
  }

  /** A resource past `maxUses` or its lifetime: destroyed instead of reused. */
  #worn(record) {
    return (this.#maxUses > 0 && record.uses >= this.#maxUses) || (record.expiresAt !== Infinity && this.#now() >= record.expiresAt)
  }

  #isMade(resource) {
    return resource !== null && (typeof resource === 'object' || typeof resource === 'function') && this.#made.has(resource)
  }

  #brokenBy(error) {
    try {
      return this.#isBroken(error) === true
    } catch (thrown) {
      this.#report(thrown, 'isBroken')
      return false
    }
  }

  // ---- the wait queue

  #enqueue(waiter, atFront) {
    let queue = this.#queues.get(waiter.priority)
    if (queue === undefined) {
      queue = new Deque()
      this.#queues.set(waiter.priority, queue)
      this.#priorities.push(waiter.priority)
      this.#priorities.sort((a, b) => b - a)
    }
    if (atFront) queue.unshift(waiter)
    else queue.push(waiter)
    this.#pending++
  }

  /** The next live waiter, highest priority first, taken out of its queue. */
  #nextWaiter() {
    while (this.#pending > 0) {
      const priority = this.#priorities[0]
      const queue = this.#queues.get(priority)
      const waiter = queue.shift()
      if (queue.length === 0 && this.#priorities.length > 1) {
        this.#queues.delete(priority)
        this.#priorities.shift()
      }
      if (waiter === undefined) continue
      this.#pending--
      if (!waiter.settled) return waiter
    }
    return undefined
  }

  #takeAllWaiters() {
    const waiters = []
    let waiter
    while ((waiter = this.#nextWaiter()) !== undefined) waiters.push(waiter)
    return waiters
  }

  /** Removes a waiter that gave up (timeout, abort) from its queue. */
  #dequeue(waiter) {
    const queue = this.#queues.get(waiter.priority)
    if (queue !== undefined && queue.remove(waiter)) this.#pending--
  }

  #settle(waiter) {
    waiter.settled = true
    if (waiter.deadline !== null) this.#cancel(waiter.deadline)
    if (waiter.onAbort !== null) waiter.signal.removeEventListener('abort', waiter.onAbort)
  }

  #reject(waiter, error) {
    this.#settle(waiter)
    waiter.reject(error)
  }

  #expire(waiter) {
    if (waiter.settled) return
    this.#dequeue(waiter)
    this.#counts.acquireTimeouts++
    const failing = this.#createFailing
    const reason = failing ? 'create-failed' : 'saturated'
    const why = failing
      ? `no resource could be created (last error: ${errorText(this.#lastCreateError)})`
      : `all ${this.#records.size} resources were busy (max ${this.#max})`
    const error = new PoolTimeoutError(`pool "${this.#name}": acquire timed out after ${waiter.timeoutMs} ms: ${why}`, { reason, timeoutMs: waiter.timeoutMs, pool: this.#name }, failing ? { cause: this.#lastCreateError } : undefined)
    this.#reject(waiter, error)
  }

  #abort(waiter) {
    if (waiter.settled) return
    this.#dequeue(waiter)
    this.#counts.aborted++
    this.#reject(waiter, waiter.signal.reason)
  }

  /** Serves waiters from idle resources, then starts the creates the rest need. */
  #dispatch() {
    while (this.#pending > 0 && this.#idle.length > 0) {
      const waiter = this.#nextWaiter()
      if (waiter === undefined) break
      const record = this.#takeIdle()
      if (this.#validateOnAcquire) this.#validateFor(waiter, record)
      else this.#grant(waiter, record)
    }
    this.#startCreates()
  }

  // ---- validation and health

  /** Validates an idle resource before handing it to `waiter`; a failure is replaced. */
  async #validateFor(waiter, record) {
    const ok = await this.#check(record)
    if (ok && !this.#closed && !waiter.settled) {
      this.#grant(waiter, record)
      return
    }
    if (!waiter.settled && !this.#closed) this.#enqueue(waiter, true)
    if (ok && !this.#closed) this.#giveBack(record)
    else this.#retire(record, this.#closed ? 'closed' : 'invalid')
    this.#dispatch()
  }

  /** Runs `validate` on a resource; false (or a throw, or a rejection) counts as a failure. */
  async #check(record) {
    record.state = VALIDATING
    this.#validating++
    let ok = false
    try {
      const validate = this.#validate
      ok = (await validate(record.resource)) === true && !record.broken
    } catch (error) {
      this.#report(error, 'validate')
    }
    this.#validating--
    if (!ok) this.#counts.validationFailures++
    return ok
  }

  async #checkHealth() {
    if (this.#checkingHealth) return
    this.#checkingHealth = true
    try {
      const idle = this.#idle.drain()
      await Promise.all(
        idle.map(async (record) => {
          const ok = await this.#check(record)
          if (ok && !this.#closed) this.#giveBack(record)
          else this.#retire(record, this.#closed ? 'closed' : 'invalid')
        }),
      )
    } finally {
      this.#checkingHealth = false
    }
    this.#dispatch()
  }

  /** Housekeeping at a fixed rate from `at` (a late round does not push the next ones back). */
  #scheduleHousekeeping(at) {
    const job = this.#scheduleAt(at, () => this.#housekeeping(job.at))
  }

  /** Idle timeouts, lifetimes, leaks and health checks; then the next round is scheduled. */
  #housekeeping(dueAt) {
    if (this.#closed) return
    const now = this.#now()
    if (this.#idleTimeoutMs > 0 || this.#maxLifetimeMs > 0) {
      let spare = this.#records.size - this.#min
      for (const record of this.#idle.drain()) {
        const expired = now >= record.expiresAt
        const idleTooLong = this.#idleTimeoutMs > 0 && spare > 0 && now - record.idleSince >= this.#idleTimeoutMs
        if (expired || idleTooLong) {
          if (!expired) spare--
          this.#retire(record, expired ? 'expired' : 'idle')
        } else {
          this.#idle.push(record)
        }
      }
    }
    if (this.#leakDetectionMs > 0 && this.#borrowed > 0) {
      for (const record of this.#records.values()) {
        if (record.state === BORROWED && !record.leakReported && now - record.borrowedAt >= this.#leakDetectionMs) {
          record.leakReported = true
          this.#counts.leaks++
          if (this.#listening('leak')) {
            this.#safeEmit('leak', { pool: this.#name, resource: record.resource, heldMs: now - record.borrowedAt, stack: record.stack })
          }
        }
      }
    }
    if (now >= this.#nextHealthCheckAt) {
      this.#nextHealthCheckAt = now + this.#healthCheckIntervalMs
      this.#checkHealth()
    }
    this.#startCreates()
    const next = dueAt + this.#housekeepingMs
    // rounds missed while the event loop was blocked are caught up, up to a hundred of them
    this.#scheduleHousekeeping(now - next > 100 * this.#housekeepingMs ? now + this.#housekeepingMs : next)
  }

  // ---- creating and destroying

  /** Creates toward `min` and for the callers waiting, within `max`, unless creates are failing. */
  #startCreates() {
    if (this.#closed) return
    const wanted = Math.max(this.#min - this.size, this.#pending - this.#creating)
    let room = Math.min(wanted, this.#max - this.size)
    if (room <= 0) return
    if (this.#createFailing) {
      // while creates fail, one attempt at a time, and none before the pause ends
      if (this.#creating > 0 || this.#now() < this.#createsPausedUntil) return
      room = 1
    }
    for (let i = 0; i < room; i++) {
      this.#creating++
      this.#attemptCreate(0)
    }
  }

  async #attemptCreate(attempt) {
    let resource
    let error
    let timer = null
    try {
      const create = this.#create
      const pending = create()
      let made = pending
      if (this.#createTimeoutMs > 0 && pending !== null && typeof pending?.then === 'function') {
        let timedOut = false
        made = new Promise((resolve, reject) => {
          timer = this.#schedule(this.#createTimeoutMs, () => {
            timedOut = true
            reject(new Error(`create did not finish within createTimeoutMs (${this.#createTimeoutMs} ms)`))
          })
          pending.then(resolve, reject)
        })
        // a resource that arrives after the timeout is destroyed, not leaked
        pending.then(
          (late) => {
            if (timedOut && late !== null && (typeof late === 'object' || typeof late === 'function')) this.#callDestroy(late)
          },
          () => {},
        )
      }
      resource = await made
      if (resource === null || (typeof resource !== 'object' && typeof resource !== 'function')) {
        throw new TypeError(`create must return (or resolve to) an object, received ${describe(resource)}`)
      }
      if (this.#records.has(resource) || this.#destroying.has(resource)) {
        throw new TypeError('create returned a resource the pool already holds')
      }
    } catch (thrown) {
      error = thrown ?? new Error('create failed with no reason')
    }
    if (timer !== null) this.#cancel(timer)
    if (error === undefined) {
      this.#creating--
      this.#created(resource)
      return
    }
    this.#counts.createErrors++
    this.#lastCreateError = error
    this.#createFailing = true
    this.#report(error, 'create')
    if (this.#closed) {
      this.#creating--
      this.#checkDrained()
      return
    }
    if (this.#creating > 1) {
      // other creates are in flight: while creates fail, only the last one keeps retrying
      this.#creating--
      return
    }
    if (attempt < this.#retries && this.#wantsResources()) {
      this.#schedule(this.#backoff(attempt), () => {
        if (this.#closed) {
          this.#creating--
          this.#checkDrained()
        } else {
          this.#attemptCreate(attempt + 1)
        }
      })
      return
    }
    // out of retries: pause creates; when nothing can serve the waiters, tell them now
    this.#creating--
    this.#createsPausedUntil = this.#now() + this.#maxBackoffMs
    if (this.#records.size === 0 && this.#creating === 0) {
      for (const waiter of this.#takeAllWaiters()) this.#expireNow(waiter)
    }
    this.#schedule(this.#maxBackoffMs, () => this.#startCreates())
  }

  /** A waiter turned away because creates failed and nothing else could serve it. */
  #expireNow(waiter) {
    this.#counts.acquireTimeouts++
    const error = new PoolTimeoutError(
      `pool "${this.#name}": no resource could be created after ${this.#retries + 1} attempts (last error: ${errorText(this.#lastCreateError)})`,
      { reason: 'create-failed', timeoutMs: waiter.timeoutMs, pool: this.#name },
      { cause: this.#lastCreateError },
    )
    this.#reject(waiter, error)
  }

  #wantsResources() {
    return this.#pending > 0 || this.size < this.#min
  }

  /** Exponential backoff from `backoffMs`, capped at `maxBackoffMs`, with up to 20% jitter. */
  #backoff(attempt) {
    const base = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** attempt)
    return base * (0.8 + 0.2 * Math.random())
  }

  #created(resource) {
    if (this.#closed) {
      this.#runDestroy(resource, 'closed')
      this.#checkDrained()
      return
    }
    this.#createFailing = false
    this.#createsPausedUntil = 0
    const now = this.#now()
    const expiresAt = this.#maxLifetimeMs > 0 ? now + this.#maxLifetimeMs - Math.random() * this.#lifetimeJitterMs : Infinity
    const record = { resource, state: IDLE, createdAt: now, expiresAt, uses: 0, idleSince: 0, borrowedAt: 0, stack: undefined, leakReported: false, broken: false }
    this.#records.set(resource, record)
    this.#made.add(resource)
    this.#counts.created++
    if (this.#watchResourceErrors && typeof resource.on === 'function') {
      try {
        resource.on('error', (error) => this.#resourceError(record, error))
      } catch (error) {
        this.#report(error, 'watch')
      }
    }
    if (this.#listening('create')) this.#safeEmit('create', resource)
    this.#giveBack(record)
  }

  /** An 'error' event of a resource (a pg client whose backend died while idle, say). */
  #resourceError(record, error) {
    this.#counts.resourceErrors++
    this.#report(error, 'resource')
    if (this.#records.get(record.resource) !== record) return
    record.broken = true
    if (record.state === IDLE) {
      this.#idle.remove(record)
      this.#retire(record, 'broken')
      this.#dispatch()
    }
  }

  /** Takes a record out of the pool and destroys its resource; then refills. */
  #retire(record, reason) {
    this.#records.delete(record.resource)
    const done = this.#runDestroy(record.resource, reason)
    if (!this.#closed) this.#startCreates()
    this.#checkDrained()
    return done
  }

  #destroyingPromises = new Set()

  #runDestroy(resource, reason) {
    this.#destroying.add(resource)
    this.#counts.destroyed++
    if (this.#listening('destroy')) this.#safeEmit('destroy', resource, reason)
    const done = this.#callDestroy(resource)
    this.#destroyingPromises.add(done)
    done.then(() => {
      this.#destroying.delete(resource)
      this.#destroyingPromises.delete(done)
    })
    return done
  }

  /** The user's destroy; its throws and rejections are counted and reported. */
  async #callDestroy(resource) {
    try {
      const destroy = this.#destroy
      await destroy(resource)
    } catch (error) {
      this.#counts.destroyErrors++
      this.#report(error, 'destroy')
    }
  }

  // ---- drain

  #settledDrain() {
    return this.#records.size === 0 && (this.#creating === 0 || this.#forced)
  }

  #forced = false

  /** The drain's time is up: borrowed resources are destroyed, creates in flight not awaited. */
  #forceDrain() {
    this.#forced = true
    for (const record of [...this.#records.values()]) {
      if (record.state === BORROWED) {
        this.#borrowed--
        this.#retire(record, 'closed')
      } else if (record.state === IDLE) {
        this.#idle.remove(record)
        this.#retire(record, 'closed')
      }
    }
    this.#checkDrained()
  }

  #checkDrained() {
    if (this.#onDrained !== null && this.#settledDrain() && this.#validating === 0) {
      const resolve = this.#onDrained
      this.#onDrained = null
      this.#agenda.clear()
      this.#disarm()
      resolve()
    }
  }

  // ---- time

  #now() {
    return this.#testClock === null ? performance.now() : this.#testClock.now()
  }

  /** Runs `run` after `delayMs`; returns the job, whose `cancelled` can be set. */
  #schedule(delayMs, run) {
    return this.#scheduleAt(this.#now() + delayMs, run)
  }

  /** Runs `run` at `at` (pool clock ms); returns the job. */
  #scheduleAt(at, run) {
    const job = { at, run, cancelled: false }
    this.#agenda.push(job)
    if (this.#testClock === null && job.at < this.#timerAt) this.#arm(job.at)
    return job
  }

  /** Cancels a scheduled job; a settled waiter's deadline does not stay in memory until it is due. */
  #cancel(job) {
    if (job.cancelled) return
    job.cancelled = true
    this.#cancelledJobs++
    if (this.#cancelledJobs > 64 && this.#cancelledJobs * 2 > this.#agenda.size) {
      this.#agenda.sweep((j) => j.cancelled)
      this.#cancelledJobs = 0
    }
  }

  #arm(at) {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timerAt = at
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#timerAt = Infinity
      this.#runDue()
    }, Math.max(1, Math.ceil(at - performance.now())))
    this.#timer.unref()
  }

  #disarm() {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#timerAt = Infinity
  }

  /** Runs every job that is due, then arms the timer for the next one. */
  #runDue() {
    const now = this.#now()
    while (this.#agenda.size > 0 && this.#agenda.peek().at <= now) {
      const job = this.#agenda.pop()
      if (job.cancelled) {
        this.#cancelledJobs--
        continue
      }
      try {
        job.run()
      } catch (error) {
        this.#report(error, 'timer')
      }
    }
    // drop cancelled jobs at the top so they do not wake the timer
    while (this.#agenda.size > 0 && this.#agenda.peek().cancelled) {
      this.#agenda.pop()
      this.#cancelledJobs--
    }
    if (this.#testClock === null && this.#agenda.size > 0 && this.#timer === null) this.#arm(this.#agenda.peek().at)
  }

  // ---- errors and events

  #listening(event) {
    return this.listenerCount(event) > 0
  }

  /** Emits an event; a listener that throws is reported, never thrown into the pool. */
  #safeEmit(event, ...args) {
    try {
      this.emit(event, ...args)
    } catch (error) {
      if (event !== 'error') this.#report(error, `listener of "${event}"`)
    }
  }

  /** An error of the user's callbacks: an 'error' event when someone listens, never a crash. */
  #report(error, source) {
    if (this.listenerCount('error') === 0) return
    this.#safeEmit('error', error, { pool: this.#name, source })
  }

  #closedError() {
    return new PoolError(`pool "${this.#name}" is closed`, codes.POOL_CLOSED, { pool: this.#name })
  }

  #foreignError(call) {
    return new PoolError(`${call}(resource): pool "${this.#name}" did not make this resource`, codes.POOL_FOREIGN_RESOURCE, { pool: this.#name })
  }
}

/** The stack of an acquire call, without the pool's own frames (only with leakDetectionMs). */
function acquireStack(below) {
  const holder = {}
  Error.captureStackTrace(holder, below)
  return holder.stack.replace(/^Error\n/, '')
}

function errorText(error) {
  if (error instanceof Error) return error.message
  return String(error)
}

function functionOption(name, value, required) {
  if (value === undefined && !required) return undefined
  if (typeof value !== 'function') {
    throw invalidOption(TypeError, `option "${name}" must be a function, received ${describe(value)}`)
  }
  return value
}

function integerOption(name, value, fallback, min) {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw invalidOption(TypeError, `option "${name}" must be an integer, received ${describe(value)}`)
  }
  if (value < min) throw invalidOption(RangeError, `option "${name}" must be at least ${min}, received ${value}`)
  return value
}

function msOption(name, value, fallback) {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw invalidOption(TypeError, `option "${name}" must be a number of milliseconds, received ${describe(value)}`)
  }
  if (!Number.isFinite(value) || value < 0) {
    throw invalidOption(RangeError, `option "${name}" must be a non-negative finite number of milliseconds, received ${value}`)
  }
  return value
}

function booleanOption(name, value, fallback) {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw invalidOption(TypeError, `option "${name}" must be a boolean, received ${describe(value)}`)
  return value
}

function nameOption(value) {
  if (typeof value !== 'string' || value.length === 0 || value.length > 128) {
    throw invalidOption(TypeError, `option "name" must be a non-empty string of at most 128 characters, received ${describe(value)}`)
  }
  return value
}

module.exports = { ConnectionPool, connectionLost }
