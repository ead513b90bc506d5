'use strict'
// The ConnectionPool from the user's side, with plain objects as resources and time driven by a
// TestClock (no sleeps): sizes, the wait queue (order, priorities, maxWaiting, timeouts and their
// reasons, AbortSignal), create retries that never spin, validation, health checks, idle
// timeouts, lifetimes with jitter, maxUses, leak detection, use(), drain, events, stats, user
// callbacks that throw, and every bad option and argument. pool-services.test.js runs the same
// pool against the real PostgreSQL and Redis.
const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const { ConnectionPool, TestClock, PoolError, PoolTimeoutError, BulwarkError, codes } = require('..')

/** Lets pending promise callbacks and setImmediate work run. */
const settle = async (rounds = 3) => {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** A factory of numbered plain-object resources that records what happened to them. */
function factory({ fail = () => false, invalid = () => false } = {}) {
  const made = []
  const destroyed = []
  let attempts = 0
  return {
    made,
    destroyed,
    get attempts() {
      return attempts
    },
    create: async () => {
      attempts++
      if (fail(attempts)) throw new Error(`connect ECONNREFUSED (attempt ${attempts})`)
      const resource = { id: made.length + 1 }
      made.push(resource)
      return resource
    },
    destroy: async (resource) => {
      destroyed.push(resource.id)
    },
    validate: async (resource) => !invalid(resource),
  }
}

function make(options = {}, factoryOptions) {
  const clock = new TestClock()
  const f = factory(factoryOptions)
  const pool = new ConnectionPool({ create: f.create, destroy: f.destroy, validate: f.validate, clock, ...options })
  return { clock, f, pool }
}

async function rejection(promise) {
  try {
    await promise
  } catch (error) {
    return error
  }
  assert.fail('expected a rejection')
}

function assertInvalid(fn, Kind, ...fragments) {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof Kind, `expected ${Kind.name}, got ${error && error.constructor.name}: ${error && error.message}`)
    assert.equal(error.code, codes.INVALID_OPTION)
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" should mention ${fragment}`)
    return true
  })
}

describe('sizes and the fast path', () => {
  test('min resources are made at start; acquire hands out idle ones and makes more up to max', async () => {
    const { f, pool } = make({ min: 2, max: 3 })
    await settle()
    assert.equal(f.made.length, 2)
    assert.deepEqual({ size: pool.size, idle: pool.stats().idle }, { size: 2, idle: 2 })
    const got = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    assert.equal(new Set(got).size, 3)
    assert.equal(f.made.length, 3)
    const s = pool.stats()
    assert.equal(s.borrowed, 3)
    assert.equal(s.idle, 0)
    assert.equal(s.size, 3)
    for (const r of got) pool.release(r)
    assert.equal(pool.stats().idle, 3)
    await pool.close()
  })

  test('a released resource goes to the first waiter', async () => {
    const { pool } = make({ max: 1 })
    const first = await pool.acquire()
    const waiting = pool.acquire()
    await settle()
    assert.equal(pool.pending, 1)
    pool.release(first)
    assert.equal(await waiting, first)
    assert.equal(pool.pending, 0)
    pool.release(first)
    await pool.close()
  })

  test('fifo (default) hands out the longest idle resource; fifo: false the most recent', async () => {
    for (const fifo of [true, false]) {
      const { pool } = make({ max: 3, fifo })
      const [a, b, c] = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
      pool.release(a)
      pool.release(b)
      pool.release(c)
      const next = await pool.acquire()
      assert.equal(next, fifo ? a : c, `fifo ${fifo}`)
      pool.release(next)
      await pool.close()
    }
  })
})

describe('the wait queue', () => {
  test('higher priority first, arrival order within a priority', async () => {
    const { pool } = make({ max: 1 })
    const held = await pool.acquire()
    const order = []
    const wait = (label, priority) => pool.acquire(priority === undefined ? undefined : { priority }).then((r) => {
      order.push(label)
      pool.release(r)
    })
    const all = [wait('low-1'), wait('high', 5), wait('low-2', 0), wait('mid', 1), wait('below', -1)]
    await settle()
    assert.equal(pool.pending, 5)
    pool.release(held)
    await Promise.all(all)
    assert.deepEqual(order, ['high', 'mid', 'low-1', 'low-2', 'below'])
    await pool.close()
  })

  test('maxWaiting: beyond it acquire rejects at once with ERR_POOL_QUEUE_FULL', async () => {
    const { pool } = make({ max: 1, maxWaiting: 2 })
    const held = await pool.acquire()
    const waiting = [pool.acquire(), pool.acquire()]
    const error = await rejection(pool.acquire())
    assert.ok(error instanceof PoolError)
    assert.ok(error instanceof BulwarkError)
    assert.equal(error.code, 'ERR_POOL_QUEUE_FULL')
    assert.match(error.message, /maxWaiting 2/)
    assert.equal(pool.stats().queueFull, 1)
    pool.release(held)
    pool.release(await waiting[0])
    pool.release(await waiting[1])
    await pool.close()
  })

  test('a saturated pool times out with reason "saturated" after acquireTimeoutMs (or the per-call timeoutMs)', async () => {
    const { clock, pool } = make({ max: 1, acquireTimeoutMs: 1000 })
    const held = await pool.acquire()
    const byDefault = rejection(pool.acquire())
    const perCall = rejection(pool.acquire({ timeoutMs: 200 }))
    clock.advance(199)
    await settle()
    assert.equal(pool.pending, 2)
    clock.advance(1)
    const early = await perCall
    assert.ok(early instanceof PoolTimeoutError)
    assert.equal(early.code, 'ERR_POOL_TIMEOUT')
    assert.equal(early.reason, 'saturated')
    assert.equal(early.timeoutMs, 200)
    assert.match(early.message, /all 1 resources were busy/)
    assert.equal(pool.pending, 1)
    clock.advance(800)
    const late = await byDefault
    assert.equal(late.reason, 'saturated')
    assert.equal(late.timeoutMs, 1000)
    assert.equal(pool.stats().acquireTimeouts, 2)
    assert.equal(pool.pending, 0)
    // the pool still works: the timed-out waiters took nothing
    pool.release(held)
    assert.equal(await pool.acquire(), held)
    pool.release(held)
    await pool.close()
  })

  test('timeoutMs 0 waits without a deadline', async () => {
    const { clock, pool } = make({ max: 1, acquireTimeoutMs: 0 })
    const held = await pool.acquire()
    const waiting = pool.acquire()
    clock.advance(10 * 60_000)
    await settle()
    assert.equal(pool.pending, 1)
    pool.release(held)
    assert.equal(await waiting, held)
    pool.release(held)
    await pool.close()
  })

  test('an AbortSignal takes the caller out of the queue with the signal reason', async () => {
    const { pool } = make({ max: 1 })
    const held = await pool.acquire()
    const controller = new AbortController()
    const waiting = rejection(pool.acquire({ signal: controller.signal }))
    const behind = pool.acquire()
    await settle()
    controller.abort(new Error('client went away'))
    assert.equal((await waiting).message, 'client went away')
    assert.equal(pool.stats().aborted, 1)
    assert.equal(pool.pending, 1)
    pool.release(held)
    assert.equal(await behind, held)
    // an already aborted signal rejects at once
    const error = await rejection(pool.acquire({ signal: AbortSignal.abort() }))
    assert.equal(error.name, 'AbortError')
    pool.release(held)
    await pool.close()
  })

  test('bad acquire arguments reject with errors naming them', async () => {
    const { pool } = make()
    const cases = [
      [null, TypeError, /acquire options must be an object/],
      [{ priority: 1.5 }, TypeError, /"priority" must be an integer/],
      [{ timeoutMs: -1 }, RangeError, /"timeoutMs" must be a non-negative finite number/],
      [{ timeoutMs: Infinity }, RangeError, /"timeoutMs"/],
      [{ signal: {} }, TypeError, /"signal" must be an AbortSignal/],
      [{ prio: 1 }, TypeError, /unknown acquire option "prio"/],
    ]
    for (const [options, Kind, pattern] of cases) {
      const error = await rejection(pool.acquire(options))
      assert.ok(error instanceof Kind, `${JSON.stringify(options)} gave ${error.constructor.name}`)
      assert.equal(error.code, codes.INVALID_ARGUMENT)
      assert.match(error.message, pattern)
    }
    await assert.rejects(pool.use('not a function'), /fn must be a function/)
    await pool.close()
  })
})

describe('create failures', () => {
  test('when create always fails, waiters reject with reason "create-failed" and the last create error as cause', async () => {
    const { clock, f, pool } = make({ max: 5, createRetry: { retries: 2, backoffMs: 100, maxBackoffMs: 1000 } }, { fail: () => true })
    const errors = []
    pool.on('error', (error, info) => errors.push(info.source))
    const waiter = rejection(pool.acquire({ timeoutMs: 10_000 }))
    await settle()
    assert.equal(f.attempts, 1)
    // the retries wait for their backoff (100, then 200 ms, each with up to 20% less jitter)
    clock.advance(100)
    await settle()
    assert.equal(f.attempts, 2)
    clock.advance(200)
    await settle()
    assert.equal(f.attempts, 3)
    const error = await waiter
    assert.ok(error instanceof PoolTimeoutError)
    assert.equal(error.reason, 'create-failed')
    assert.match(error.cause.message, /ECONNREFUSED \(attempt 3\)/)
    assert.match(error.message, /no resource could be created after 3 attempts/)
    assert.equal(pool.stats().createErrors, 3)
    assert.ok(errors.every((source) => source === 'create'))
    assert.equal(errors.length, 3)
    await pool.close()
  })

  test('a failing create never spins: at most one attempt at a time, paused between rounds', async () => {
    const { clock, f, pool } = make({ max: 10, min: 3, acquireTimeoutMs: 500, createRetry: { retries: 3, backoffMs: 50, maxBackoffMs: 2000 } }, { fail: () => true })
    const waiters = Array.from({ length: 20 }, () => rejection(pool.acquire()))
    // one simulated minute in 10 ms steps
    for (let t = 0; t < 60_000; t += 10) {
      clock.advance(10)
      await Promise.resolve()
    }
    await settle()
    for (const error of await Promise.all(waiters)) assert.equal(error.reason, 'create-failed')
    // a round is 4 attempts over at least 0.8 * (50 + 100 + 200) ms, then a 2 s pause
    // (the first round starts with up to max creates at once, before anything has failed)
    const rounds = Math.ceil(60_000 / (2000 + 0.8 * 350))
    assert.ok(f.attempts <= rounds * 4 + 10, `${f.attempts} create attempts in a minute`)
    assert.ok(f.attempts >= 4)
    assert.equal(pool.stats().createErrors, f.attempts)
    assert.equal(pool.stats().createFailing, true)
    await pool.close()
  })

  test('a waiter times out with reason "create-failed" while creates fail, and the pool recovers when they work again', async () => {
    let down = true
    const { clock, f, pool } = make({ max: 2, createRetry: { retries: 100, backoffMs: 100, maxBackoffMs: 100 } }, { fail: () => down })
    const first = rejection(pool.acquire({ timeoutMs: 1000 }))
    for (let t = 0; t < 1000; t += 50) {
      clock.advance(50)
      await settle(1)
    }
    const error = await first
    assert.equal(error.reason, 'create-failed')
    assert.match(error.cause.message, /ECONNREFUSED/)
    assert.match(error.message, /timed out after 1000 ms: no resource could be created/)
    down = false
    const second = pool.acquire({ timeoutMs: 1000 })
    clock.advance(100)
    await settle()
    const resource = await second
    assert.equal(resource, f.made[0])
    assert.equal(pool.stats().createFailing, false)
    pool.release(resource)
    await pool.close()
  })

  test('create that hangs past createTimeoutMs counts as a failure; a late resource is destroyed', async () => {
    const clock = new TestClock()
    const late = []
    const destroyed = []
    let calls = 0
    const pool = new ConnectionPool({
      clock,
      create: () => {
        calls++
        if (calls === 1) return new Promise((resolve) => late.push(resolve))
        return Promise.resolve({ id: calls })
      },
      destroy: (r) => destroyed.push(r.id),
      createTimeoutMs: 1000,
      createRetry: { retries: 1, backoffMs: 10 },
    })
    const waiting = pool.acquire({ timeoutMs: 5000 })
    await settle()
    clock.advance(1000)
    await settle()
    assert.equal(pool.stats().createErrors, 1)
    clock.advance(10)
    await settle()
    const resource = await waiting
    assert.equal(resource.id, 2)
    late[0]({ id: 'late' })
    await settle()
    assert.deepEqual(destroyed, ['late'])
    pool.release(resource)
    await pool.close()
  })

  test('create returning a non-object, or a resource the pool holds, is a create error', async () => {
    const shared = { id: 'same' }
    let step = 0
    const errors = []
    const clock = new TestClock()
    const pool = new ConnectionPool({
      clock,
      create: async () => [42, shared, shared, { id: 'fine' }][step++],
      destroy: () => {},
      max: 3,
      createRetry: { retries: 0, backoffMs: 0, maxBackoffMs: 0 },
    })
    pool.on('error', (error) => errors.push(error.message))
    const a = await rejection(pool.acquire({ timeoutMs: 100 }))
    assert.equal(a.reason, 'create-failed')
    assert.match(errors[0], /create must return \(or resolve to\) an object, received number 42/)
    const first = await pool.acquire()
    assert.equal(first, shared)
    const second = pool.acquire({ timeoutMs: 1000 })
    await settle()
    assert.match(errors[1], /create returned a resource the pool already holds/)
    // the next round of creates (after the pause, 0 ms here) makes a fresh one
    clock.advance(1)
    const third = await second
    assert.equal(third.id, 'fine')
    pool.release(third)
    pool.release(first)
    await pool.close()
  })
})

describe('validation, health checks, lifetimes', () => {
  test('validateOnAcquire replaces a resource that fails validation (false or a throw)', async () => {
    const bad = new Set()
    const clock = new TestClock()
    let n = 0
    const pool = new ConnectionPool({
      clock,
      min: 2,
      max: 2,
      validateOnAcquire: true,
      create: async () => ({ id: ++n }),
      destroy: () => {},
      validate: async (r) => {
        if (r.id === 2) throw new Error('socket closed')
        return !bad.has(r.id)
      },
    })
    await settle()
    bad.add(1)
    const got = await pool.acquire()
    assert.equal(got.id, 3)
    assert.equal(pool.stats().validationFailures, 2)
    assert.equal(pool.stats().destroyed, 2)
    pool.release(got)
    await pool.close()
  })

  test('healthCheckIntervalMs validates idle resources; failures are destroyed and min refilled', async () => {
    const { clock, f, pool } = make({ min: 3, max: 5, healthCheckIntervalMs: 1000, idleTimeoutMs: 0 }, { invalid: (r) => r.id === 2 })
    await settle()
    assert.equal(f.made.length, 3)
    clock.advance(999)
    await settle()
    assert.equal(pool.stats().validationFailures, 0)
    clock.advance(1)
    await settle()
    assert.equal(pool.stats().validationFailures, 1)
    assert.deepEqual(f.destroyed, [2])
    assert.equal(pool.size, 3)
    assert.equal(f.made.length, 4)
    await pool.close()
  })

  test('idleTimeoutMs destroys idle resources above min', async () => {
    const { clock, f, pool } = make({ min: 1, max: 4, idleTimeoutMs: 5000 })
    const got = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire(), pool.acquire()])
    for (const r of got) pool.release(r)
    clock.advance(4999)
    await settle()
    assert.equal(pool.size, 4)
    clock.advance(1300)
    await settle()
    assert.equal(pool.size, 1)
    assert.equal(f.destroyed.length, 3)
    await pool.close()
  })

  test('maxLifetimeMs retires resources with jitter, idle ones at once and borrowed ones on release', async () => {
    const { clock, f, pool } = make({ min: 20, max: 21, maxLifetimeMs: 10_000, lifetimeJitterMs: 4000, idleTimeoutMs: 0 })
    await settle()
    const borrowed = await pool.acquire()
    clock.advance(5999)
    await settle()
    assert.equal(f.destroyed.length, 0)
    // the lifetimes are spread over the last 4 s: halfway through, some are gone and some not
    // (housekeeping runs every second here)
    clock.advance(2001)
    await settle()
    const halfway = f.destroyed.length
    assert.ok(halfway > 0 && halfway < 20, `${halfway} of 20 retired halfway through the jitter`)
    clock.advance(2000)
    await settle()
    assert.ok(!f.destroyed.includes(borrowed.id), 'a borrowed resource is not destroyed under its user')
    assert.equal(f.destroyed.length, 19)
    pool.release(borrowed)
    await settle()
    assert.equal(f.destroyed.length, 20)
    assert.equal(pool.size, 20)
    assert.equal(f.made.length, 40)
    await pool.close()
  })

  test('maxUses retires a resource after that many acquires', async () => {
    const { f, pool } = make({ max: 1, maxUses: 3 })
    const seen = []
    for (let i = 0; i < 7; i++) {
      const r = await pool.acquire()
      seen.push(r.id)
      pool.release(r)
    }
    assert.deepEqual(seen, [1, 1, 1, 2, 2, 2, 3])
    await settle()
    assert.deepEqual(f.destroyed, [1, 2])
    await pool.close()
  })
})

describe('leaks, use(), release and destroy', () => {
  test('leakDetectionMs reports a held resource once, with the stack of its acquire', async () => {
    const { clock, pool } = make({ max: 2, leakDetectionMs: 1000 })
    const leaks = []
    pool.on('leak', (leak) => leaks.push(leak))
    const held = await pool.acquire()
    clock.advance(500)
    await settle()
    assert.equal(leaks.length, 0)
    clock.advance(600)
    await settle()
    assert.equal(leaks.length, 1)
    assert.equal(leaks[0].resource, held)
    assert.ok(leaks[0].heldMs >= 1000)
    assert.match(leaks[0].stack, /pool\.test\.js/)
    clock.advance(5000)
    await settle()
    assert.equal(leaks.length, 1)
    assert.equal(pool.stats().leaks, 1)
    pool.release(held)
    await pool.close()
  })

  test('use() releases after success and after an ordinary error, destroys after a broken connection', async () => {
    const { f, pool } = make({ max: 1 })
    assert.equal(await pool.use(async (r) => r.id * 10), 10)
    await assert.rejects(pool.use(async () => {
      throw Object.assign(new Error('duplicate key'), { code: '23505' })
    }), /duplicate key/)
    assert.equal(pool.stats().idle, 1)
    await assert.rejects(pool.use(async () => {
      throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
    }), /ECONNRESET/)
    await settle()
    assert.deepEqual(f.destroyed, [1])
    assert.equal(await pool.use((r) => r.id), 2)
    await pool.close()
  })

  test('isBroken decides what destroys the resource; an isBroken that throws counts as not broken', async () => {
    const { f, pool } = make({ max: 1, isBroken: (error) => error.message === 'fatal' })
    await assert.rejects(pool.use(() => {
      throw new Error('read ECONNRESET')
    }))
    await assert.rejects(pool.use(() => {
      throw new Error('fatal')
    }))
    await settle()
    assert.deepEqual(f.destroyed, [1])
    const { pool: other } = make({ max: 1, isBroken: () => {
      throw new Error('bad predicate')
    } })
    await assert.rejects(other.use(() => {
      throw new Error('x')
    }), /^Error: x$/)
    assert.equal(other.stats().idle, 1)
    await Promise.all([pool.close(), other.close()])
  })

  test('releasing a foreign resource throws ERR_POOL_FOREIGN_RESOURCE; releasing twice is a counted no-op', async () => {
    const { pool } = make({ max: 2 })
    const r = await pool.acquire()
    assert.throws(() => pool.release({ id: 'stranger' }), (error) => error instanceof PoolError && error.code === 'ERR_POOL_FOREIGN_RESOURCE' && /release\(resource\)/.test(error.message))
    assert.throws(() => pool.destroy({}), { code: 'ERR_POOL_FOREIGN_RESOURCE' })
    pool.release(r)
    pool.release(r)
    const s = pool.stats()
    assert.equal(s.invalidReleases, 1)
    assert.equal(s.borrowed, 0)
    assert.equal(s.idle, 1)
    await pool.destroy(r)
    pool.release(r)
    assert.equal(pool.stats().invalidReleases, 2)
    assert.equal(pool.size, 0)
    await pool.close()
  })

  test('destroy() of a borrowed resource makes a replacement for a waiter', async () => {
    const { f, pool } = make({ max: 1 })
    const r = await pool.acquire()
    const waiting = pool.acquire()
    await pool.destroy(r)
    const next = await waiting
    assert.equal(next.id, 2)
    assert.deepEqual(f.destroyed, [1])
    pool.release(next)
    await pool.close()
  })
})

describe('user callbacks and events', () => {
  test('throwing create, validate, destroy and listeners never crash the process or wedge the pool', async () => {
    let n = 0
    const clock = new TestClock()
    const pool = new ConnectionPool({
      clock,
      max: 2,
      validateOnAcquire: true,
      createRetry: { retries: 1, backoffMs: 10 },
      create: () => {
        n++
        if (n === 1) throw new Error('sync create failure')
        return { id: n }
      },
      validate: (r) => {
        if (r.id === 2) throw new Error('sync validate failure')
        return true
      },
      destroy: () => {
        throw new Error('sync destroy failure')
      },
    })
    pool.on('acquire', () => {
      throw new Error('listener failure')
    })
    const waiting = pool.acquire({ timeoutMs: 1000 })
    await settle()
    clock.advance(10)
    await settle()
    // resource 2 was made for the waiter (not validated: fresh); give it back, then acquire
    // again: validation of 2 throws, it is destroyed (destroy throws too) and 3 is made
    const first = await waiting
    assert.equal(first.id, 2)
    pool.release(first)
    const second = await pool.acquire()
    assert.equal(second.id, 3)
    const s = pool.stats()
    assert.equal(s.createErrors, 1)
    assert.equal(s.validationFailures, 1)
    assert.equal(s.destroyErrors, 1)
    pool.release(second)
    await pool.close()
    assert.equal(pool.stats().destroyErrors, 2)
  })

  test("a resource's 'error' event while idle destroys it instead of crashing the process", async () => {
    const { EventEmitter } = require('node:events')
    let n = 0
    const made = []
    const pool = new ConnectionPool({
      create: async () => {
        const r = new EventEmitter()
        r.id = ++n
        made.push(r)
        return r
      },
      destroy: () => {},
      min: 1,
    })
    await settle()
    made[0].emit('error', new Error('terminating connection due to administrator command'))
    await settle()
    assert.equal(pool.stats().resourceErrors, 1)
    assert.equal(pool.stats().destroyed, 1)
    const r = await pool.acquire()
    assert.equal(r.id, 2)
    // while borrowed: destroyed when released
    r.emit('error', new Error('boom'))
    pool.release(r)
    await settle()
    assert.equal(pool.stats().destroyed, 2)
    await pool.close()
  })

  test('events: create, acquire, release, destroy (with the reason)', async () => {
    const { pool } = make({ max: 1, maxUses: 1 })
    const events = []
    for (const name of ['create', 'acquire', 'release']) pool.on(name, (r) => events.push(`${name} ${r.id}`))
    pool.on('destroy', (r, reason) => events.push(`destroy ${r.id} ${reason}`))
    const r = await pool.acquire()
    pool.release(r)
    await settle()
    assert.deepEqual(events, ['create 1', 'acquire 1', 'release 1', 'destroy 1 expired'])
    await pool.close()
  })

  test('stats() reports sizes, counters and acquire waits as percentiles and as a histogram', async () => {
    const { clock, pool } = make({ max: 1 })
    const r = await pool.acquire()
    const waiting = pool.acquire()
    await settle()
    clock.advance(50)
    pool.release(r)
    pool.release(await waiting)
    const s = pool.stats()
    assert.equal(s.acquired, 2)
    assert.equal(s.created, 1)
    assert.equal(s.acquireWaitMs.max, 50)
    assert.ok(s.acquireWaitMs.p99 > 46 && s.acquireWaitMs.p99 <= 50, JSON.stringify(s.acquireWaitMs))
    assert.equal(s.acquireWaitMs.p50, 0)
    // the same two waits, 0 and 50 ms, counted exactly: a wait on a bound counts under it
    const h = s.acquireWaitHistogram
    const at = (bound) => h.counts[h.boundsMs.indexOf(bound)]
    assert.deepEqual([at(0.1), at(25), at(50), at(10000)], [1, 1, 2, 2])
    assert.equal(h.count, 2)
    assert.equal(h.sumMs, 50)
    await pool.close()
  })
})

describe('drain and close', () => {
  test('drain rejects waiters, destroys idle at once and borrowed when released, then resolves', async () => {
    const { f, pool } = make({ max: 3 })
    const [a, b, c] = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    pool.release(c)
    const [idle] = [c]
    // all three busy again, two callers waiting
    assert.equal(await pool.acquire(), idle)
    const served = pool.acquire()
    const second = rejection(pool.acquire())
    await settle()
    pool.release(idle)
    // the release served the first waiter; the second still waits at the drain
    assert.equal(await served, idle)
    const drained = pool.drain({ timeoutMs: 60_000 })
    for (const error of [await second]) {
      assert.ok(error instanceof PoolError)
      assert.equal(error.code, 'ERR_POOL_CLOSED')
    }
    assert.equal(pool.drain(), drained, 'drain twice: the same promise')
    const late = await rejection(pool.acquire())
    assert.equal(late.code, 'ERR_POOL_CLOSED')
    let done = false
    drained.then(() => (done = true))
    await settle()
    assert.equal(done, false)
    assert.deepEqual(f.destroyed, [])
    pool.release(a)
    await settle()
    assert.deepEqual(f.destroyed, [a.id])
    pool.release(b)
    await settle()
    assert.equal(done, false, 'one resource is still out')
    pool.release(idle)
    await drained
    assert.deepEqual(f.destroyed.sort(), [a.id, b.id, idle.id].sort())
    assert.equal(pool.size, 0)
    assert.equal(pool.closed, true)
  })

  test('drain destroys idle resources at once', async () => {
    const { f, pool } = make({ min: 2, max: 2 })
    await settle()
    await pool.drain()
    assert.deepEqual(f.destroyed.sort(), [1, 2])
  })

  test('a drain that runs out of time destroys borrowed resources', async () => {
    const { clock, f, pool } = make({ max: 1 })
    const held = await pool.acquire()
    const drained = pool.drain({ timeoutMs: 1000 })
    clock.advance(1000)
    await drained
    assert.deepEqual(f.destroyed, [held.id])
    pool.release(held)
    assert.equal(pool.stats().invalidReleases, 1)
  })

  test('close() with creates in flight destroys what they make', async () => {
    let resolveCreate
    const destroyed = []
    const pool = new ConnectionPool({ create: () => new Promise((resolve) => (resolveCreate = resolve)), destroy: (r) => destroyed.push(r.id), min: 1 })
    const closed = pool.close()
    resolveCreate({ id: 'late' })
    await closed
    assert.deepEqual(destroyed, ['late'])
  })

  test('bad drain arguments', () => {
    const { pool } = make()
    assert.throws(() => pool.drain({ timeoutMs: -5 }), /drain option "timeoutMs"/)
    assert.throws(() => pool.drain({ wait: 1 }), /unknown drain option "wait"/)
    assert.throws(() => pool.drain('soon'), /drain options must be an object/)
    return pool.close()
  })
})

describe('concurrency', () => {
  test('random acquire/release/destroy/abort under a small max keeps every count consistent', async () => {
    let seed = 12345
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    const { f, pool } = make({ max: 4, min: 1, acquireTimeoutMs: 0 })
    const outstanding = new Set()
    let served = 0
    const tasks = []
    for (let i = 0; i < 400; i++) {
      const controller = new AbortController()
      tasks.push(pool.acquire({ priority: Math.floor(random() * 3), signal: controller.signal }).then(async (r) => {
        assert.ok(!outstanding.has(r), 'a resource was lent twice at once')
        outstanding.add(r)
        served++
        const s = pool.stats()
        assert.ok(s.borrowed <= 4 && s.size <= 4, JSON.stringify(s))
        await settle(Math.floor(random() * 3))
        outstanding.delete(r)
        if (random() < 0.1) await pool.destroy(r)
        else pool.release(r)
      }, (error) => assert.equal(error.message, 'gave up')))
      if (random() < 0.1) controller.abort(new Error('gave up'))
    }
    await Promise.all(tasks)
    const s = pool.stats()
    assert.equal(served + s.aborted, 400)
    assert.equal(s.borrowed, 0)
    assert.equal(s.pending, 0)
    assert.equal(s.created - s.destroyed, s.size)
    assert.equal(f.made.length, s.created)
    await pool.close()
  })
})

describe('options', () => {
  const create = async () => ({})
  const destroy = () => {}
  const base = { create, destroy }
  test('every bad option is a TypeError or RangeError naming it', () => {
    assertInvalid(() => new ConnectionPool(), TypeError, 'create and destroy')
    assertInvalid(() => new ConnectionPool({ destroy }), TypeError, 'option "create" must be a function')
    assertInvalid(() => new ConnectionPool({ create }), TypeError, 'option "destroy" must be a function')
    assertInvalid(() => new ConnectionPool({ ...base, validate: 1 }), TypeError, '"validate"')
    assertInvalid(() => new ConnectionPool({ ...base, isBroken: 'x' }), TypeError, '"isBroken"')
    assertInvalid(() => new ConnectionPool({ ...base, max: 0 }), RangeError, '"max" must be at least 1')
    assertInvalid(() => new ConnectionPool({ ...base, max: 2.5 }), TypeError, '"max" must be an integer')
    assertInvalid(() => new ConnectionPool({ ...base, min: -1 }), RangeError, '"min"')
    assertInvalid(() => new ConnectionPool({ ...base, min: 5, max: 2 }), RangeError, '"min" (5) must not be greater than "max" (2)')
    assertInvalid(() => new ConnectionPool({ ...base, acquireTimeoutMs: -1 }), RangeError, '"acquireTimeoutMs"')
    assertInvalid(() => new ConnectionPool({ ...base, acquireTimeoutMs: Infinity }), RangeError, '"acquireTimeoutMs"')
    assertInvalid(() => new ConnectionPool({ ...base, idleTimeoutMs: '1s' }), TypeError, '"idleTimeoutMs"')
    assertInvalid(() => new ConnectionPool({ ...base, healthCheckIntervalMs: NaN }), TypeError, '"healthCheckIntervalMs"')
    assertInvalid(() => new ConnectionPool({ ...base, healthCheckIntervalMs: 1000 }), TypeError, '"healthCheckIntervalMs" needs a "validate" function')
    assertInvalid(() => new ConnectionPool({ ...base, validateOnAcquire: true }), TypeError, '"validateOnAcquire" needs a "validate" function')
    assertInvalid(() => new ConnectionPool({ ...base, validateOnAcquire: 'yes' }), TypeError, '"validateOnAcquire" must be a boolean')
    assertInvalid(() => new ConnectionPool({ ...base, fifo: 0 }), TypeError, '"fifo"')
    assertInvalid(() => new ConnectionPool({ ...base, maxWaiting: -1 }), RangeError, '"maxWaiting"')
    assertInvalid(() => new ConnectionPool({ ...base, maxUses: 1.5 }), TypeError, '"maxUses"')
    assertInvalid(() => new ConnectionPool({ ...base, maxLifetimeMs: 1000, lifetimeJitterMs: 1000 }), RangeError, '"lifetimeJitterMs" (1000) must be less than "maxLifetimeMs" (1000)')
    assertInvalid(() => new ConnectionPool({ ...base, createRetry: 3 }), TypeError, '"createRetry" must be an object')
    assertInvalid(() => new ConnectionPool({ ...base, createRetry: { retries: -1 } }), RangeError, '"createRetry.retries"')
    assertInvalid(() => new ConnectionPool({ ...base, createRetry: { delay: 1 } }), TypeError, 'unknown option "createRetry.delay"')
    assertInvalid(() => new ConnectionPool({ ...base, createRetry: { backoffMs: 500, maxBackoffMs: 100 } }), RangeError, '"createRetry.maxBackoffMs" (100) must not be less than "createRetry.backoffMs" (500)')
    assertInvalid(() => new ConnectionPool({ ...base, leakDetectionMs: -1 }), RangeError, '"leakDetectionMs"')
    assertInvalid(() => new ConnectionPool({ ...base, clock: Date }), TypeError, '"clock" must be a TestClock')
    assertInvalid(() => new ConnectionPool({ ...base, name: '' }), TypeError, '"name"')
    assertInvalid(() => new ConnectionPool({ ...base, maxSize: 3 }), TypeError, 'unknown ConnectionPool option "maxSize"')
  })

  test('defaults', async () => {
    const pool = new ConnectionPool(base)
    const s = pool.stats()
    assert.equal(s.min, 0)
    assert.equal(s.max, 10)
    assert.equal(pool.name, 'pool')
    assert.equal(new ConnectionPool({ ...base, maxWaiting: Infinity }).stats().max, 10)
    await pool.close()
  })
})
