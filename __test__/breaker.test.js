'use strict'
// The CircuitBreaker from the user's side: the state machine driven by a TestClock (no sleeps),
// refusals, fallback, timeouts, isFailure, slow calls, both windows, manual states, wrap,
// events, stats, and every bad option and argument.
const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const util = require('node:util')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const { CircuitBreaker, TestClock, BreakerOpenError, BreakerTimeoutError, BulwarkError, codes } = require('..')

function make(options = {}) {
  const clock = new TestClock()
  const breaker = new CircuitBreaker({ name: 'test', minimumCalls: 2, windowSize: 4, openMs: 1000, clock, ...options })
  return { clock, breaker }
}

const ok = (value = 'ok') => async () => value
const boom = (message = 'boom') => async () => { throw new Error(message) }

/** Fires `fn` and returns the error it rejects with (or fails when it resolves). */
async function rejection(promise) {
  try {
    await promise
  } catch (error) {
    return error
  }
  assert.fail('expected a rejection')
}

async function trip(breaker) {
  await rejection(breaker.fire(boom()))
  await rejection(breaker.fire(boom()))
  assert.equal(breaker.state, 'open')
}

function assertInvalid(fn, Kind, code, ...fragments) {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof Kind, `expected ${Kind.name}, got ${error && error.constructor.name}: ${error && error.message}`)
    assert.equal(error.code, code)
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" should mention ${fragment}`)
    return true
  })
}

describe('state machine', () => {
  test('closed -> open -> halfOpen -> closed, and -> open again', async () => {
    const { clock, breaker } = make()
    assert.equal(breaker.state, 'closed')
    assert.equal(await breaker.fire(ok(1)), 1)
    await rejection(breaker.fire(boom()))
    // 1 failure of 2 calls reaches 0.5
    assert.equal(breaker.state, 'open')
    clock.advance(999)
    assert.equal(breaker.state, 'open')
    clock.advance(1)
    assert.equal(breaker.state, 'halfOpen')
    // the probe fails: open again
    await rejection(breaker.fire(boom()))
    assert.equal(breaker.state, 'open')
    clock.advance(1000)
    assert.equal(await breaker.fire(ok('probe')), 'probe')
    assert.equal(breaker.state, 'closed')
    assert.equal(breaker.stats().window.calls, 0, 'closing starts an empty window')
  })

  test('does not open before minimumCalls', async () => {
    const { breaker } = make({ minimumCalls: 3 })
    await rejection(breaker.fire(boom()))
    await rejection(breaker.fire(boom()))
    assert.equal(breaker.state, 'closed')
    await rejection(breaker.fire(boom()))
    assert.equal(breaker.state, 'open')
  })

  test('half-open lets halfOpenMaxCalls probes through and refuses the rest', async () => {
    const { clock, breaker } = make({ halfOpenMaxCalls: 2 })
    await trip(breaker)
    clock.advance(1000)
    const resolvers = []
    const probe = () => new Promise((resolve) => resolvers.push(resolve))
    const p1 = breaker.fire(probe)
    const p2 = breaker.fire(probe)
    const refused = await rejection(breaker.fire(ok()))
    assert.ok(refused instanceof BreakerOpenError)
    assert.equal(refused.state, 'halfOpen')
    resolvers.forEach((resolve) => resolve('fine'))
    assert.deepEqual(await Promise.all([p1, p2]), ['fine', 'fine'])
    assert.equal(breaker.state, 'closed')
  })

  test('a half-open spell ends after halfOpenMaxWaitMs even if its probe never settles', async () => {
    const { clock, breaker } = make({ halfOpenMaxWaitMs: 5000 })
    await trip(breaker)
    clock.advance(1000)
    breaker.fire(() => new Promise(() => {})) // never settles
    assert.equal(breaker.state, 'halfOpen')
    clock.advance(4999)
    assert.equal(breaker.state, 'halfOpen')
    clock.advance(1)
    assert.equal(breaker.state, 'open')
  })
})

describe('refusals', () => {
  test('an open breaker refuses at once with BreakerOpenError and retryAfterMs', async () => {
    const { clock, breaker } = make()
    await trip(breaker)
    clock.advance(250)
    let called = false
    const error = await rejection(breaker.fire(async () => { called = true }))
    assert.equal(called, false)
    assert.ok(error instanceof BreakerOpenError)
    assert.ok(error instanceof BulwarkError)
    assert.ok(error instanceof Error)
    assert.equal(error.code, 'ERR_BREAKER_OPEN')
    assert.equal(error.code, codes.BREAKER_OPEN)
    assert.equal(error.retryAfterMs, 750)
    assert.equal(error.state, 'open')
    assert.equal(error.breaker, 'test')
    assert.match(error.message, /breaker test is open/)
    assert.equal(breaker.stats().rejected, 1)
  })

  test('each refused call gets its own error: what one caller changes, another does not see', async () => {
    const { clock, breaker } = make()
    await trip(breaker)
    const first = await rejection(breaker.fire(ok()))
    clock.advance(100)
    const second = await rejection(breaker.fire(ok()))
    assert.notEqual(first, second)
    assert.equal(first.retryAfterMs, 1000)
    assert.equal(second.retryAfterMs, 900)
    first.message = 'changed by the first caller'
    first.retryAfterMs = -1
    first.extra = true
    assert.match(second.message, /breaker test is open/)
    assert.equal(second.retryAfterMs, 900)
    assert.equal(second.extra, undefined)
    const third = await rejection(breaker.fire(ok()))
    assert.match(third.message, /breaker test is open/)
    // what a logger sees: the header line as the stack, and the fields
    assert.equal(typeof second.stack, 'string')
    assert.match(second.stack, /^BreakerOpenError: breaker test is open/)
    assert.equal(String(second), 'BreakerOpenError: breaker test is open')
    const shown = util.inspect(second)
    assert.match(shown, /BreakerOpenError: breaker test is open/)
    assert.match(shown, /code: 'ERR_BREAKER_OPEN'/)
    assert.match(shown, /retryAfterMs: 900/)
    assert.deepEqual(JSON.parse(JSON.stringify(second)), { code: 'ERR_BREAKER_OPEN', retryAfterMs: 900, state: 'open', breaker: 'test' })
  })

  test('a half-open refusal and a forced-open refusal say so', async () => {
    const { clock, breaker } = make({ halfOpenMaxCalls: 1 })
    await trip(breaker)
    clock.advance(1000)
    let release
    const probe = breaker.fire(() => new Promise((resolve) => { release = resolve }))
    const halfOpen = await rejection(breaker.fire(ok()))
    assert.equal(halfOpen.state, 'halfOpen')
    assert.match(halfOpen.message, /breaker test is half-open and its probes are taken/)
    release('done')
    assert.equal(await probe, 'done')
    breaker.forceOpen()
    const forced = await rejection(breaker.fire(ok()))
    assert.equal(forced.state, 'forcedOpen')
    assert.equal(forced.retryAfterMs, Infinity)
    assert.match(forced.message, /breaker test is forced open/)
  })

  test('a refusal nobody handles is still an unhandled rejection', () => {
    // in a child process: the test runner fails any test during which a rejection goes unhandled
    const script = `
      const { CircuitBreaker, BreakerOpenError } = require(${JSON.stringify(path.join(__dirname, '..'))})
      const breaker = new CircuitBreaker({ name: 'lonely' })
      breaker.forceOpen()
      process.on('unhandledRejection', (reason) => {
        console.log(JSON.stringify({ isBreakerOpenError: reason instanceof BreakerOpenError, message: reason.message }))
      })
      breaker.fire(async () => 1)
    `
    const output = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
    assert.deepEqual(JSON.parse(output), { isBreakerOpenError: true, message: 'breaker lonely is forced open' })
  })

  test('the fallback answers refused calls (and only those)', async () => {
    const seen = []
    const { breaker } = make({ fallback: (error) => { seen.push(error); return 'cached' } })
    const failure = await rejection(breaker.fire(boom('real')))
    assert.equal(failure.message, 'real', 'failures are not masked by the fallback')
    await rejection(breaker.fire(boom()))
    assert.equal(await breaker.fire(ok('fresh')), 'cached')
    assert.equal(seen.length, 1)
    assert.ok(seen[0] instanceof BreakerOpenError)
  })

  test('a fallback without parameters answers without an error being built, unless reject is listened to', async () => {
    const { breaker } = make({ fallback: () => 'cached' })
    await trip(breaker)
    assert.equal(await breaker.fire(ok()), 'cached')
    const rejected = []
    breaker.on('reject', (error) => rejected.push(error))
    assert.equal(await breaker.fire(ok()), 'cached')
    assert.equal(rejected.length, 1)
    assert.ok(rejected[0] instanceof BreakerOpenError)
    assert.equal(breaker.stats().rejected, 2)
  })

  test('a fallback that throws rejects the call with its error', async () => {
    const { breaker } = make({ fallback: () => { throw new Error('no cache') } })
    await trip(breaker)
    assert.equal((await rejection(breaker.fire(ok()))).message, 'no cache')
  })
})

describe('timeouts', () => {
  test('a call over timeoutMs rejects with BreakerTimeoutError, aborts its signal and counts as a failure', async () => {
    const { clock, breaker } = make({ timeoutMs: 100, minimumCalls: 4 })
    let signal
    const pending = breaker.fire((s) => {
      signal = s
      return new Promise(() => {})
    })
    assert.equal(signal.aborted, false)
    clock.advance(99)
    assert.equal(signal.aborted, false)
    clock.advance(1)
    const error = await rejection(pending)
    assert.ok(error instanceof BreakerTimeoutError)
    assert.equal(error.code, 'ERR_BREAKER_TIMEOUT')
    assert.equal(error.timeoutMs, 100)
    assert.equal(signal.aborted, true)
    assert.equal(signal.reason, error)
    const stats = breaker.stats()
    assert.equal(stats.timeouts, 1)
    assert.equal(stats.failures, 1)
  })

  test('a call that settles in time is unaffected, and a late outcome is ignored', async () => {
    const { clock, breaker } = make({ timeoutMs: 100, minimumCalls: 4 })
    assert.equal(await breaker.fire(async (signal) => { assert.ok(signal instanceof AbortSignal); return 7 }), 7)
    let finish
    const pending = breaker.fire(() => new Promise((resolve) => { finish = resolve }))
    clock.advance(100)
    await rejection(pending)
    finish('late')
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(breaker.stats().calls, 2)
  })

  test('with the real clock the shared timer times a call out, and a later call passes', async () => {
    const breaker = new CircuitBreaker({ timeoutMs: 20 })
    // the breaker's timer is unref()ed: a real call's socket keeps the loop alive, here a timer does
    const keepAlive = setTimeout(() => {}, 5000)
    const error = await rejection(breaker.fire(() => new Promise(() => {})))
    clearTimeout(keepAlive)
    assert.ok(error instanceof BreakerTimeoutError)
    assert.equal(await breaker.fire(ok('quick')), 'quick')
  })

  test('each call times out timeoutMs after its own start', async () => {
    const { clock, breaker } = make({ timeoutMs: 100, minimumCalls: 4 })
    const outcomes = []
    const track = (name, promise) => promise.then(() => outcomes.push(`${name} ok`), (e) => outcomes.push(`${name} ${e.code}`))
    const a = track('a', breaker.fire(() => new Promise(() => {})))
    clock.advance(50)
    const b = track('b', breaker.fire(() => new Promise(() => {})))
    const c = track('c', breaker.fire(async () => 'fast'))
    await c
    clock.advance(50)
    await a
    assert.deepEqual(outcomes, ['c ok', 'a ERR_BREAKER_TIMEOUT'])
    clock.advance(49)
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(outcomes.length, 2)
    clock.advance(1)
    await b
    assert.deepEqual(outcomes, ['c ok', 'a ERR_BREAKER_TIMEOUT', 'b ERR_BREAKER_TIMEOUT'])
    assert.equal(breaker.stats().timeouts, 2)
  })

  test('a function without parameters gets a signal that never aborts (no AbortController is made)', async () => {
    const { clock, breaker } = make({ timeoutMs: 10 })
    let seen
    const pending = breaker.fire(function () {
      seen = arguments[0]
      return new Promise(() => {})
    })
    clock.advance(10)
    await rejection(pending)
    assert.ok(seen instanceof AbortSignal)
    assert.equal(seen.aborted, false)
  })

  test('without timeoutMs the function gets a signal that never aborts', async () => {
    const { breaker } = make()
    const signal = await breaker.fire(async (s) => s)
    assert.ok(signal instanceof AbortSignal)
    assert.equal(signal.aborted, false)
  })
})

describe('what counts', () => {
  test('isFailure decides which errors count; the error still reaches the caller', async () => {
    const { breaker } = make({ isFailure: (error) => error.status !== 404 })
    for (let i = 0; i < 5; i++) {
      const error = await rejection(breaker.fire(async () => { throw Object.assign(new Error('not found'), { status: 404 }) }))
      assert.equal(error.status, 404)
    }
    assert.equal(breaker.state, 'closed')
    assert.equal(breaker.stats().failures, 0)
    await rejection(breaker.fire(boom()))
    await rejection(breaker.fire(boom()))
    assert.equal(breaker.state, 'open')
  })

  test('an isFailure that throws counts the error as a failure and crashes nothing', async () => {
    const warnings = []
    const onWarning = (w) => warnings.push(w)
    process.on('warning', onWarning)
    const { breaker } = make({ isFailure: () => { throw new Error('bad predicate') } })
    const error = await rejection(breaker.fire(boom('original')))
    assert.equal(error.message, 'original')
    const stats = breaker.stats()
    assert.equal(stats.failures, 1)
    assert.equal(stats.callbackErrors, 1)
    await new Promise((resolve) => setImmediate(resolve))
    process.off('warning', onWarning)
    assert.ok(warnings.some((w) => w.code === 'BULWARK_BREAKER_CALLBACK'))
  })

  test('a function that throws synchronously is handled like a rejection', async () => {
    const { breaker } = make({ minimumCalls: 4 })
    const error = await rejection(breaker.fire(() => { throw new Error('sync') }))
    assert.equal(error.message, 'sync')
    assert.equal(breaker.stats().failures, 1)
    assert.equal(await breaker.fire(() => 'plain value'), 'plain value')
  })

  test('slow calls open the breaker at slowCallRateThreshold', async () => {
    const { clock, breaker } = make({ slowCallMs: 50, slowCallRateThreshold: 0.5, minimumCalls: 2 })
    const slow = () => new Promise((resolve) => {
      setImmediate(() => {
        clock.advance(51)
        resolve('slow')
      })
    })
    assert.equal(await breaker.fire(slow), 'slow')
    assert.equal(breaker.stats().slowCalls, 1)
    assert.equal(breaker.state, 'closed')
    await breaker.fire(slow)
    assert.equal(breaker.state, 'open')
    const stats = breaker.stats()
    assert.equal(stats.failures, 0)
    assert.equal(stats.slowCalls, 2)
  })
})

describe('windows', () => {
  test('a count-based window holds the last windowSize calls', async () => {
    const { breaker } = make({ windowSize: 3, minimumCalls: 3, failureRateThreshold: 0.6 })
    await rejection(breaker.fire(boom()))
    await breaker.fire(ok())
    await breaker.fire(ok())
    await breaker.fire(ok()) // the failure slides out
    await rejection(breaker.fire(boom()))
    assert.equal(breaker.state, 'closed', '1 of 3')
    assert.equal(breaker.stats().window.calls, 3)
    await rejection(breaker.fire(boom()))
    assert.equal(breaker.state, 'open', '2 of 3 reaches 0.6')
  })

  test('a time-based window forgets calls older than windowMs', async () => {
    const clock = new TestClock()
    const breaker = new CircuitBreaker({ windowMs: 2000, minimumCalls: 3, clock })
    await rejection(breaker.fire(boom()))
    await rejection(breaker.fire(boom()))
    clock.advance(2000)
    assert.equal(breaker.stats().window.calls, 0)
    await rejection(breaker.fire(boom()))
    assert.equal(breaker.state, 'closed')
    assert.equal(breaker.stats().failureRate, 1)
  })
})

describe('manual states', () => {
  test('forceOpen refuses until reset, whatever the time', async () => {
    const { clock, breaker } = make()
    breaker.forceOpen()
    assert.equal(breaker.state, 'forcedOpen')
    clock.advance(1e9)
    const error = await rejection(breaker.fire(ok()))
    assert.equal(error.state, 'forcedOpen')
    assert.equal(error.retryAfterMs, Infinity)
    breaker.reset()
    assert.equal(breaker.state, 'closed')
    assert.equal(await breaker.fire(ok(3)), 3)
  })

  test('disable lets every call pass and still measures', async () => {
    const { breaker } = make()
    breaker.disable()
    for (let i = 0; i < 10; i++) await rejection(breaker.fire(boom()))
    assert.equal(breaker.state, 'disabled')
    const stats = breaker.stats()
    assert.equal(stats.failures, 10)
    assert.equal(stats.failureRate, 1)
    breaker.reset()
    assert.equal(breaker.stats().window.calls, 0)
  })

  test('reset closes an open breaker', async () => {
    const { breaker } = make()
    await trip(breaker)
    breaker.reset()
    assert.equal(breaker.state, 'closed')
  })
})

describe('wrap', () => {
  test('returns a function that fires fn with its arguments and this', async () => {
    const { breaker } = make()
    const add = breaker.wrap(function (a, b) { return (this ? this.base : 0) + a + b })
    assert.equal(await add(1, 2), 3)
    assert.equal(await add.call({ base: 10 }, 1, 2), 13)
    const failing = breaker.wrap(boom())
    await rejection(failing())
    await rejection(failing())
    assert.ok((await rejection(add(1, 1))) instanceof BreakerOpenError)
  })
})

describe('events', () => {
  test('open, halfOpen, close, stateChange, reject, success, failure, timeout', async () => {
    const { clock, breaker } = make({ timeoutMs: 50, minimumCalls: 3 })
    const events = []
    for (const name of ['open', 'halfOpen', 'close', 'reject', 'success', 'failure', 'timeout']) {
      breaker.on(name, (arg) => events.push(name === 'reject' || name === 'timeout' ? `${name}:${arg.code}` : name))
    }
    const changes = []
    breaker.on('stateChange', (to, from) => changes.push(`${from}->${to}`))
    await breaker.fire(ok())
    await rejection(breaker.fire(boom()))
    const slow = breaker.fire(() => new Promise(() => {}))
    clock.advance(50)
    await rejection(slow)
    await rejection(breaker.fire(ok()))
    clock.advance(1000)
    await breaker.fire(ok())
    assert.deepEqual(events, ['success', 'failure', 'open', 'timeout:ERR_BREAKER_TIMEOUT', 'failure', 'reject:ERR_BREAKER_OPEN', 'halfOpen', 'close', 'success'])
    assert.deepEqual(changes, ['closed->open', 'open->halfOpen', 'halfOpen->closed'])
  })

  test('success and failure carry the duration on the breaker clock', async () => {
    const { clock, breaker } = make()
    let duration
    breaker.on('success', (value, ms) => { duration = ms })
    await breaker.fire(async () => { clock.advance(42) })
    assert.equal(duration, 42)
  })

  test('an event carries its own call\'s duration when a state listener fires another call first', async () => {
    // the probe's success closes the breaker; the 'close' listener fires (and fails) a call of
    // its own before the probe's 'success' is emitted
    const { clock, breaker } = make()
    await trip(breaker)
    clock.advance(1000)
    const durations = []
    breaker.on('success', (value, ms) => durations.push([value, ms]))
    breaker.on('failure', (error, ms) => durations.push([error.message, ms]))
    breaker.once('close', () => {
      breaker.fire(() => { throw new Error('inner') }).catch(() => {})
    })
    assert.equal(await breaker.fire(async () => { clock.advance(42); return 'probe' }), 'probe')
    assert.deepEqual(durations, [['inner', 0], ['probe', 42]])
  })

  test('a listener that throws does not break the breaker', async () => {
    process.on('warning', () => {})
    const { clock, breaker } = make()
    breaker.on('success', () => { throw new Error('listener bug') })
    breaker.on('open', () => { throw new Error('listener bug') })
    assert.equal(await breaker.fire(ok(5)), 5)
    await rejection(breaker.fire(boom()))
    assert.equal(breaker.state, 'open')
    clock.advance(1000)
    assert.equal(await breaker.fire(ok(6)), 6)
    assert.equal(breaker.state, 'closed')
    assert.equal(breaker.stats().callbackErrors, 3)
  })
})

describe('stats and properties', () => {
  test('stats has every counter and rate', async () => {
    const { clock, breaker } = make({ minimumCalls: 4 })
    await breaker.fire(ok())
    await rejection(breaker.fire(boom()))
    clock.advance(10)
    await rejection(breaker.fire(boom()))
    const stats = breaker.stats()
    assert.deepEqual(stats, {
      state: 'closed',
      calls: 3,
      failures: 2,
      slowCalls: 0,
      rejected: 0,
      timeouts: 0,
      failureRate: 2 / 3,
      slowCallRate: 0,
      lastTransitionAt: 0,
      window: { calls: 3, failures: 2, slowCalls: 0 },
      callbackErrors: 0,
    })
    await rejection(breaker.fire(boom()))
    assert.equal(breaker.stats().lastTransitionAt, 10)
  })

  test('lastTransitionAt is wall-clock time with the real clock', () => {
    const before = Date.now()
    const breaker = new CircuitBreaker()
    breaker.forceOpen()
    const at = breaker.stats().lastTransitionAt
    assert.ok(at >= before - 5 && at <= Date.now() + 5, `${at} not near ${before}`)
  })

  test('name and critical', () => {
    const breaker = new CircuitBreaker({ name: 'openai', critical: true })
    assert.equal(breaker.name, 'openai')
    assert.equal(breaker.critical, true)
    assert.equal(new CircuitBreaker().critical, false)
  })
})

describe('bad options and arguments', () => {
  const OPT = 'ERR_BULWARK_INVALID_OPTION'
  test('thresholds must be in (0, 1]', () => {
    for (const value of [0, -0.1, 1.01, NaN, Infinity]) {
      assertInvalid(() => new CircuitBreaker({ failureRateThreshold: value }), RangeError, OPT, 'options.failureRateThreshold', '(0, 1]')
    }
    assertInvalid(() => new CircuitBreaker({ failureRateThreshold: '0.5' }), TypeError, OPT, 'options.failureRateThreshold', 'string "0.5"')
    assertInvalid(() => new CircuitBreaker({ slowCallMs: 10, slowCallRateThreshold: 0 }), RangeError, OPT, 'options.slowCallRateThreshold')
    assertInvalid(() => new CircuitBreaker({ slowCallRateThreshold: 0.5 }), TypeError, OPT, 'options.slowCallMs')
    assert.doesNotThrow(() => new CircuitBreaker({ failureRateThreshold: 1 }))
  })

  test('windows must be positive and of one kind', () => {
    assertInvalid(() => new CircuitBreaker({ windowMs: 0 }), RangeError, OPT, 'options.windowMs')
    assertInvalid(() => new CircuitBreaker({ windowMs: 1500 }), RangeError, OPT, 'options.windowMs', 'multiple of 1000')
    assertInvalid(() => new CircuitBreaker({ windowSize: 0 }), RangeError, OPT, 'options.windowSize')
    assertInvalid(() => new CircuitBreaker({ windowSize: 2.5 }), RangeError, OPT, 'options.windowSize')
    assertInvalid(() => new CircuitBreaker({ windowMs: 1000, windowSize: 10 }), TypeError, OPT, 'windowMs', 'windowSize')
    assertInvalid(() => new CircuitBreaker({ windowSize: 5, minimumCalls: 6 }), RangeError, OPT, 'options.minimumCalls')
  })

  test('durations and counts', () => {
    for (const name of ['openMs', 'timeoutMs', 'halfOpenMaxWaitMs', 'slowCallMs']) {
      assertInvalid(() => new CircuitBreaker({ [name]: 0 }), RangeError, OPT, `options.${name}`)
      assertInvalid(() => new CircuitBreaker({ [name]: -5 }), RangeError, OPT, `options.${name}`)
    }
    assertInvalid(() => new CircuitBreaker({ timeoutMs: 2 ** 31 }), RangeError, OPT, 'options.timeoutMs')
    assertInvalid(() => new CircuitBreaker({ minimumCalls: 0 }), RangeError, OPT, 'options.minimumCalls')
    assertInvalid(() => new CircuitBreaker({ halfOpenMaxCalls: 0 }), RangeError, OPT, 'options.halfOpenMaxCalls')
  })

  test('unknown options and wrong types are refused', () => {
    assertInvalid(() => new CircuitBreaker({ threshold: 0.5 }), TypeError, OPT, 'unknown option "threshold"')
    assertInvalid(() => new CircuitBreaker('fast'), TypeError, OPT, 'options must be an object')
    assertInvalid(() => new CircuitBreaker({ name: '' }), TypeError, OPT, 'options.name')
    assertInvalid(() => new CircuitBreaker({ name: 3 }), TypeError, OPT, 'options.name')
    assertInvalid(() => new CircuitBreaker({ critical: 'yes' }), TypeError, OPT, 'options.critical')
    assertInvalid(() => new CircuitBreaker({ fallback: 'cached' }), TypeError, OPT, 'options.fallback')
    assertInvalid(() => new CircuitBreaker({ isFailure: true }), TypeError, OPT, 'options.isFailure')
    assertInvalid(() => new CircuitBreaker({ clock: {} }), TypeError, OPT, 'options.clock', 'TestClock')
  })

  test('fire and wrap need a function', async () => {
    const { breaker } = make()
    const error = await rejection(breaker.fire('not a function'))
    assert.ok(error instanceof TypeError)
    assert.equal(error.code, 'ERR_BULWARK_INVALID_ARGUMENT')
    assert.match(error.message, /fn must be a function, received string/)
    assertInvalid(() => breaker.wrap(42), TypeError, 'ERR_BULWARK_INVALID_ARGUMENT', 'fn must be a function')
    assert.equal(breaker.stats().calls, 0)
  })
})
