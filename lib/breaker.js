'use strict'
// CircuitBreaker: the native state machine and windows, plus what only JS can do: call the
// function, time it out, answer refusals with the fallback, and emit events.
//
// A call makes two crossings, both plain functions bound to the native state: `acquire()` before
// it (a ticket, or 0 when refused) and `record(ticket, start, outcome)` after it (whether the
// state changed). The other figures come back in a shared Float64Array, so neither crossing
// builds an object; events for transitions are emitted only when the transition count moved.
// Time-driven transitions (open -> halfOpen, a half-open spell running out) happen at the next
// call or look, so a breaker holds no timer of its own; per-call timeout timers are unref()ed
// and cleared when the call settles.
const { EventEmitter } = require('node:events')
const binding = require('../binding.js')
const { BreakerOpenError, BreakerTimeoutError, invalidArgument, invalidOption, describe } = require('./errors')
const { TestClock } = require('./test-clock')

const STATES = ['closed', 'open', 'halfOpen', 'forcedOpen', 'disabled']
/** The event emitted on entering each state (besides `stateChange`). */
const STATE_EVENTS = ['close', 'open', 'halfOpen', 'open', null]

// indices into the shared figures (see src/breaker/binding.rs)
const RETRY_AFTER_MS = 0
const START_NANOS = 1
const STATE = 2
const TRANSITIONS = 3
const DURATION_MS = 4
// written by `_stats()` only
const CALLS = 5
const FAILURES = 6
const SLOW_CALLS = 7
const REJECTED = 8
const TIMEOUTS = 9
const FAILURE_RATE = 10
const SLOW_CALL_RATE = 11
const LAST_TRANSITION_AT = 12
const WINDOW_CALLS = 13
const WINDOW_FAILURES = 14
const WINDOW_SLOW_CALLS = 15

// outcome codes of `record`
const SUCCESS = 0
const FAILURE = 1
const TIMEOUT = 2

/** What `fire(fn)` passes to `fn` when there is no `timeoutMs`: a signal that never aborts. */
const NEVER_ABORTED = new AbortController().signal

/**
 * The error every refusal of one breaker in one state shares as its prototype (see
 * `refusalError`): built once, without a stack (a refusal's stack would only show the breaker's
 * own frames, and capturing one costs more than the rest of a refusal together). Its `stack` is
 * made a plain data property so that objects inheriting from it read it like any other field.
 */
function refusalTemplate(breaker, state) {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  let template
  try {
    const what = state === 'halfOpen' ? 'half-open and its probes are taken' : state === 'forcedOpen' ? 'forced open' : 'open'
    template = new BreakerOpenError(`breaker ${breaker} is ${what}`, { retryAfterMs: 0, state, breaker })
  } finally {
    Error.stackTraceLimit = limit
  }
  Object.defineProperty(template, 'stack', { value: template.stack, writable: true, enumerable: false, configurable: true })
  return template
}

/**
 * A refusal's BreakerOpenError: a fresh object per refused call, inheriting message, name and
 * stack from its breaker's template for the state, with its own `code`, `retryAfterMs`, `state`
 * and `breaker`. Constructing an Error costs V8 about 350 ns even without a stack, more than the
 * 300 ns a refusal may take; this costs a few ns. What a caller sets on its error stays on its
 * own object, since assignment never writes through to a prototype's data property.
 */
function refusalError(template, retryAfterMs) {
  const error = Object.create(template)
  error.code = template.code
  error.retryAfterMs = retryAfterMs
  error.state = template.state
  error.breaker = template.breaker
  return error
}

// Refusals waiting for `rejectRefusals` to reject them: [reject, error, reject, error, ...].
const pendingRefusals = []
let capturedReject = null
/** A Promise executor that keeps no closure: it hands `reject` over in a module variable. */
function captureReject(resolve, reject) {
  capturedReject = reject
}
/** Rejects every pending refusal (one microtask for all the refusals of a synchronous run). */
function rejectRefusals() {
  for (let i = 0; i < pendingRefusals.length; i += 2) pendingRefusals[i](pendingRefusals[i + 1])
  pendingRefusals.length = 0
}
const RESOLVED = Promise.resolve()

/**
 * A promise rejected with `error` once the caller has had the chance to attach its handler. A
 * promise rejected before it has a handler goes through Node's unhandled-rejection bookkeeping,
 * which costs several times the rest of a refusal; if no handler is ever attached the rejection
 * is still reported as unhandled. The refusals of one synchronous run are rejected together by
 * one microtask.
 */
function rejectSoon(error) {
  const promise = new Promise(captureReject)
  if (pendingRefusals.length === 0) RESOLVED.then(rejectRefusals)
  pendingRefusals.push(capturedReject, error)
  capturedReject = null
  return promise
}

/** A call under `timeoutMs`: settled once, by its outcome or by its deadline (breaker clock ms). */
class TimedCall {
  constructor(ticket, start, deadline, controller) {
    this.ticket = ticket
    this.start = start
    this.deadline = deadline
    this.controller = controller
    this.settled = false
    this.resolve = null
    this.reject = null
  }
}

class CircuitBreaker extends EventEmitter {
  #native
  #acquire
  #record
  #sync
  #figures
  /** Transition count last seen, and the state it led to. */
  #seen = 0
  #state = 'closed'
  #name
  #critical
  #timeoutMs
  #fallback
  #isFailure
  /** Calls under timeoutMs, in start order (see #expireTimeouts), and how many are unsettled. */
  #timeouts = []
  #inFlight = 0
  #settledInQueue = 0
  #expiring = false
  #timer = null
  #clockOrigin = 0
  /** A TestClock drives timeouts when given: its moves expire calls instead of the timer. */
  #testClock = null
  #callbackErrors = 0
  /** The refusal templates by state index (see `refusalTemplate`), made on first use. */
  #refusalTemplates = [null, null, null, null, null]

  /**
   * @param {import('..').CircuitBreakerOptions} [options]
   */
  constructor(options) {
    super()
    this.#native = new binding.CircuitBreaker(options)
    this.#clockOrigin = performance.now()
    const opts = options || {}
    const name = opts.name === undefined ? 'breaker' : opts.name
    if (typeof name !== 'string' || name.length === 0) {
      throw invalidOption(TypeError, `options.name must be a non-empty string, received ${describe(opts.name)}`)
    }
    const critical = opts.critical === undefined ? false : opts.critical
    if (typeof critical !== 'boolean') {
      throw invalidOption(TypeError, `options.critical must be a boolean, received ${describe(opts.critical)}`)
    }
    for (const option of ['fallback', 'isFailure']) {
      if (opts[option] !== undefined && typeof opts[option] !== 'function') {
        throw invalidOption(TypeError, `options.${option} must be a function, received ${describe(opts[option])}`)
      }
    }
    this.#name = name
    this.#critical = critical
    this.#timeoutMs = opts.timeoutMs === undefined ? 0 : opts.timeoutMs
    this.#fallback = opts.fallback || null
    this.#isFailure = opts.isFailure || null
    const fast = this.#native._fastPath()
    this.#acquire = fast.acquire
    this.#record = fast.record
    this.#sync = fast.sync
    this.#figures = fast.figures
    if (opts.clock instanceof TestClock) {
      this.#testClock = opts.clock
      if (this.#timeoutMs !== 0) opts.clock.onMove(() => this.#expireTimeouts(this.#testClock.now()))
    }
  }

  /** The breaker's name (`options.name`). */
  get name() {
    return this.#name
  }

  /** Whether the service cannot work while this breaker is open (`options.critical`). */
  get critical() {
    return this.#critical
  }

  /** 'closed', 'open', 'halfOpen', 'forcedOpen' or 'disabled', after what time has done. */
  get state() {
    this.#sync()
    this.#noticeTransitions()
    return this.#state
  }

  /**
   * Calls `fn(signal)` through the breaker. Resolves or rejects as `fn` does; rejects with
   * BreakerOpenError when refused (or resolves with the fallback's answer), and with
   * BreakerTimeoutError after `timeoutMs` (aborting `signal`).
   */
  fire(fn) {
    if (typeof fn !== 'function') {
      return Promise.reject(invalidArgument(TypeError, `fn must be a function, received ${describe(fn)}`))
    }
    const ticket = this.#acquire()
    const figures = this.#figures
    if (figures[TRANSITIONS] !== this.#seen) this.#noticeTransitions()
    if (ticket === 0) return this.#refuse()
    const start = figures[START_NANOS]
    if (this.#timeoutMs !== 0) return this.#runWithTimeout(fn, ticket, start)
    return this.#run(fn, ticket, start)
  }

  /** A function that fires `fn` with its arguments (and `this`) through the breaker. */
  wrap(fn) {
    if (typeof fn !== 'function') {
      throw invalidArgument(TypeError, `fn must be a function, received ${describe(fn)}`)
    }
    const breaker = this
    return function wrapped(...args) {
      return breaker.fire(() => fn.apply(this, args))
    }
  }

  /** Opens the breaker until `reset()`: every call is refused. */
  forceOpen() {
    this.#native._forceOpen()
    this.#noticeTransitions()
  }

  /** Lets every call pass until `reset()`; calls are still measured, nothing opens it. */
  disable() {
    this.#native._disable()
    this.#noticeTransitions()
  }

  /** Closes the breaker with an empty window (from any state). */
  reset() {
    this.#native._reset()
    this.#noticeTransitions()
  }

  /** A snapshot of the state and counters. */
  stats() {
    // the native side writes the figures into the shared array instead of building an object:
    // a service with hundreds of breakers reads them all on every scrape
    this.#native._stats()
    this.#noticeTransitions()
    const f = this.#figures
    return {
      state: STATES[f[STATE]],
      calls: f[CALLS],
      failures: f[FAILURES],
      slowCalls: f[SLOW_CALLS],
      rejected: f[REJECTED],
      timeouts: f[TIMEOUTS],
      failureRate: f[FAILURE_RATE],
      slowCallRate: f[SLOW_CALL_RATE],
      lastTransitionAt: f[LAST_TRANSITION_AT],
      window: { calls: f[WINDOW_CALLS], failures: f[WINDOW_FAILURES], slowCalls: f[WINDOW_SLOW_CALLS] },
      callbackErrors: this.#callbackErrors,
    }
  }

  #run(fn, ticket, start) {
    let result
    try {
      result = fn(NEVER_ABORTED)
    } catch (error) {
      this.#settleFailure(ticket, start, error)
      return Promise.reject(error)
    }
    if (!(result instanceof Promise)) {
      if (result === null || typeof result !== 'object' || typeof result.then !== 'function') {
        this.#settleSuccess(ticket, start, result)
        return Promise.resolve(result)
      }
      result = Promise.resolve(result)
    }
    return result.then(
      (value) => {
        this.#settleSuccess(ticket, start, value)
        return value
      },
      (error) => {
        this.#settleFailure(ticket, start, error)
        throw error
      },
    )
  }

  #settleSuccess(ticket, start, value) {
    const durationMs = this.#recordSettled(ticket, start, SUCCESS)
    if (this.listenerCount('success') !== 0) this.#emit('success', value, durationMs)
  }

  /**
   * Records a settled call, then runs the state listeners of any transition it caused; returns
   * its duration, read before they run (a listener may record a call of its own).
   */
  #recordSettled(ticket, start, outcome) {
    const changed = this.#record(ticket, start, outcome)
    const durationMs = this.#figures[DURATION_MS]
    if (changed) this.#noticeTransitions()
    return durationMs
  }

  #runWithTimeout(fn, ticket, start) {
    // An AbortController costs more than the rest of a call, so one is made only for a function
    // that declares the parameter it would arrive in.
    const controller = fn.length > 0 ? new AbortController() : null
    const call = new TimedCall(ticket, start, start / 1e6 + this.#timeoutMs, controller)
    const promise = new Promise((resolve, reject) => {
      call.resolve = resolve
      call.reject = reject
    })
    this.#inFlight++
    this.#timeouts.push(call)
    if (this.#timer === null && this.#testClock === null) this.#armTimer()
    let result
    try {
      result = fn(controller !== null ? controller.signal : NEVER_ABORTED)
    } catch (error) {
      this.#timedError(call, error)
      return promise
    }
    Promise.resolve(result).then(
      (value) => this.#timedValue(call, value),
      (error) => this.#timedError(call, error),
    )
    return promise
  }

  #timedValue(call, value) {
    if (call.settled) return
    this.#settledCall(call)
    const durationMs = this.#recordSettled(call.ticket, call.start, SUCCESS)
    call.resolve(value)
    if (this.listenerCount('success') !== 0) this.#emit('success', value, durationMs)
  }

  #timedError(call, error) {
    if (call.settled) return
    this.#settledCall(call)
    this.#settleFailure(call.ticket, call.start, error)
    call.reject(error)
  }

  #timedOut(call) {
    if (call.settled) return
    this.#settledCall(call)
    const durationMs = this.#recordSettled(call.ticket, call.start, TIMEOUT)
    const error = new BreakerTimeoutError(`breaker ${this.#name}: the call took longer than ${this.#timeoutMs} ms`, { timeoutMs: this.#timeoutMs, breaker: this.#name })
    if (call.controller !== null) call.controller.abort(error)
    call.reject(error)
    this.#emit('timeout', error, durationMs)
    this.#emit('failure', error, durationMs)
  }

  // Every call of a breaker has the same timeoutMs, so deadlines come in start order: the calls
  // wait in one queue behind one unref()ed timer, armed for the oldest unsettled call, instead
  // of a timer each. A settled call leaves the queue when it reaches the head, when nothing is in
  // flight any more (the queue empties), or when settled calls outnumber the others (a sweep).
  // The timer is not cleared and set again around every call (that costs as much as the rest of
  // the call): when it fires with nothing in flight, it simply stops.

  #settledCall(call) {
    call.settled = true
    this.#inFlight--
    if (this.#expiring) return
    if (this.#inFlight === 0) {
      if (this.#timeouts.length !== 0) this.#timeouts = []
      this.#settledInQueue = 0
    } else if (++this.#settledInQueue > 1024 && this.#settledInQueue > this.#inFlight) {
      this.#timeouts = this.#timeouts.filter((call) => !call.settled)
      this.#settledInQueue = 0
    }
  }

  /** Times out the calls whose deadline has passed at `now` and re-arms the timer. */
  #expireTimeouts(now) {
    const queue = this.#timeouts
    let head = 0
    this.#expiring = true
    try {
      while (head < queue.length) {
        const call = queue[head]
        if (!call.settled && call.deadline > now) break
        head++
        if (call.settled) this.#settledInQueue--
        else this.#timedOut(call)
      }
    } finally {
      this.#expiring = false
    }
    queue.splice(0, head)
    if (this.#inFlight === 0) {
      this.#timeouts = []
      this.#settledInQueue = 0
    } else if (this.#testClock === null) {
      this.#armTimer()
    }
  }

  /**
   * The breaker's clock in ms, without a crossing: the native system clock starts when the
   * breaker is made, just before `#clockOrigin` is read, so deadlines (start + timeoutMs, in
   * the native clock's time) are compared with `performance.now()` moved to that origin.
   */
  #clockMs() {
    return performance.now() - this.#clockOrigin
  }

  #armTimer() {
    if (this.#timeouts.length === 0) return
    const delay = Math.max(1, Math.ceil(this.#timeouts[0].deadline - this.#clockMs()))
    this.#timer = setTimeout(() => {
      this.#timer = null
      this.#expireTimeouts(this.#clockMs())
    }, delay)
    this.#timer.unref()
  }

  /** Records a call that threw or rejected, as `isFailure` judges it, and emits its event. */
  #settleFailure(ticket, start, error) {
    let failed = true
    if (this.#isFailure !== null) {
      try {
        failed = Boolean(this.#isFailure(error))
      } catch (callbackError) {
        this.#callbackFailed('isFailure', callbackError)
      }
    }
    const durationMs = this.#recordSettled(ticket, start, failed ? FAILURE : SUCCESS)
    this.#emit(failed ? 'failure' : 'success', error, durationMs)
  }

  #refuse() {
    const fallback = this.#fallback
    // Building the error costs more than the rest of a refusal together, so a fallback that
    // takes no parameter, with nobody listening for 'reject', answers without one.
    if (fallback !== null && fallback.length === 0 && this.listenerCount('reject') === 0) {
      try {
        return Promise.resolve(fallback())
      } catch (fallbackError) {
        return Promise.reject(fallbackError)
      }
    }
    const stateIndex = this.#figures[STATE]
    const template = this.#refusalTemplates[stateIndex] || (this.#refusalTemplates[stateIndex] = refusalTemplate(this.#name, STATES[stateIndex]))
    const error = refusalError(template, this.#figures[RETRY_AFTER_MS])
    if (this.listenerCount('reject') !== 0) this.#emit('reject', error)
    if (fallback === null) return rejectSoon(error)
    try {
      return Promise.resolve(fallback(error))
    } catch (fallbackError) {
      return Promise.reject(fallbackError)
    }
  }

  /** Emits the events of a transition when the native transition count moved. */
  #noticeTransitions() {
    const figures = this.#figures
    if (figures[TRANSITIONS] === this.#seen) return
    this.#seen = figures[TRANSITIONS]
    const from = this.#state
    const to = STATES[figures[STATE]]
    this.#state = to
    if (to === from) return
    this.#emit('stateChange', to, from)
    const event = STATE_EVENTS[figures[STATE]]
    if (event !== null) this.#emit(event, from)
  }

  /** Emits an event; a listener that throws is counted and reported, never rethrown. */
  #emit(type, a, b) {
    try {
      this.emit(type, a, b)
    } catch (error) {
      this.#callbackFailed(`a '${type}' listener`, error)
    }
  }

  #callbackFailed(what, error) {
    this.#callbackErrors++
    process.emitWarning(`breaker ${this.#name}: ${what} threw: ${error && error.message}`, { code: 'BULWARK_BREAKER_CALLBACK', detail: error && error.stack })
  }
}

module.exports = { CircuitBreaker }
