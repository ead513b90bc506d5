'use strict'
// The RateLimiter from the user's side: every option, every bad input, and the time-dependent
// behaviour driven by a TestClock (no sleeps).
const { test, describe } = require('node:test')
const assert = require('node:assert/strict')
const { RateLimiter, TestClock, RateLimitError, BulwarkError } = require('..')

function make(options = {}) {
  const clock = new TestClock()
  const limiter = new RateLimiter({ capacity: 10, refillPerSecond: 1, clock, ...options })
  return { clock, limiter }
}

function assertInvalid(fn, Kind, code, ...fragments) {
  assert.throws(fn, (error) => {
    assert.ok(error instanceof Kind, `expected ${Kind.name}, got ${error && error.constructor.name}: ${error && error.message}`)
    assert.equal(error.code, code)
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" should mention ${fragment}`)
    return true
  })
}

describe('tryConsume and check', () => {
  test('takes tokens and reports what is left, then minus the wait', () => {
    const { limiter } = make({ capacity: 3, refillPerSecond: 2 })
    assert.equal(limiter.tryConsume('a'), 2)
    assert.equal(limiter.tryConsume('a', 2), 0)
    assert.equal(limiter.tryConsume('a'), -500)
    assert.equal(limiter.tryConsume('b'), 2, 'keys are independent')
  })

  test('refills continuously with time', () => {
    const { clock, limiter } = make({ capacity: 10, refillPerSecond: 4 })
    assert.equal(limiter.tryConsume('k', 10), 0)
    clock.advance(249)
    assert.equal(limiter.tryConsume('k'), -1)
    clock.advance(1)
    assert.equal(limiter.tryConsume('k'), 0)
    clock.advance(1000)
    assert.equal(limiter.peek('k'), 4)
    clock.advance(60_000)
    assert.equal(limiter.peek('k'), 10, 'never above capacity')
  })

  test('a refused request takes nothing', () => {
    const { limiter } = make({ capacity: 5, refillPerSecond: 1 })
    limiter.tryConsume('k', 4)
    assert.equal(limiter.tryConsume('k', 2), -1000)
    assert.equal(limiter.peek('k'), 1)
  })

  test('check returns the same decision as an object', () => {
    const { limiter } = make({ capacity: 4, refillPerSecond: 1 })
    assert.deepEqual(limiter.check('k', 3), { allowed: true, limit: 4, remaining: 1, resetMs: 3000, retryAfterMs: 0 })
    assert.deepEqual(limiter.check('k', 2), { allowed: false, limit: 4, remaining: 1, resetMs: 3000, retryAfterMs: 1000 })
  })

  test('cost 0 is allowed and fractional costs work', () => {
    const { limiter } = make({ capacity: 2, refillPerSecond: 1 })
    assert.equal(limiter.tryConsume('k', 0), 2)
    assert.equal(limiter.tryConsume('k', 0.5), 1)
    assert.equal(limiter.tryConsume('k', 1.5), 0)
  })

  test('reset refills a key', () => {
    const { limiter } = make({ capacity: 2, refillPerSecond: 1 })
    limiter.tryConsume('k', 2)
    limiter.reset('k')
    assert.equal(limiter.peek('k'), 2)
  })
})

describe('per-client limits and tiers', () => {
  test('a tier applies from the next request and keeps the tokens used', () => {
    const { limiter } = make({ capacity: 2, refillPerSecond: 1, tiers: { pro: { capacity: 100, refillPerSecond: 10 } } })
    assert.equal(limiter.tryConsume('c', 2), 0)
    assert.ok(limiter.tryConsume('c') < 0)
    limiter.setClientTier('c', 'pro')
    assert.equal(limiter.tryConsume('c'), 97)
    assert.equal(limiter.check('c', 0).limit, 100)
    limiter.clearClient('c')
    assert.equal(limiter.check('c', 0).limit, 2)
  })

  test('setClientLimits overrides only what it names', () => {
    const { clock, limiter } = make({ capacity: 10, refillPerSecond: 1 })
    limiter.setClientLimits('vip', { refillPerSecond: 5 })
    limiter.tryConsume('vip', 10)
    clock.advance(1000)
    assert.equal(limiter.peek('vip'), 5)
    assert.equal(limiter.check('vip', 0).limit, 10)
    assert.equal(limiter.tryConsume('other', 10), 0)
    clock.advance(1000)
    assert.equal(limiter.peek('other'), 1)
  })

  test('unknown tiers and bad limits are refused', () => {
    const { limiter } = make({ tiers: { free: { capacity: 1, refillPerSecond: 1 } } })
    assertInvalid(() => limiter.setClientTier('c', 'gold'), RangeError, 'ERR_BULWARK_INVALID_ARGUMENT', 'gold', 'free')
    assertInvalid(() => limiter.setClientTier('c', 5), TypeError, 'ERR_BULWARK_INVALID_ARGUMENT', 'tier')
    assertInvalid(() => limiter.setClientLimits('c', { capacity: -1 }), RangeError, 'ERR_BULWARK_INVALID_OPTION', 'limits.capacity', '-1')
    assertInvalid(() => limiter.setClientLimits('c', { weight: NaN }), RangeError, 'ERR_BULWARK_INVALID_OPTION', 'limits.weight', 'NaN')
    assertInvalid(() => limiter.setClientLimits('c', { burst: 1 }), TypeError, 'ERR_BULWARK_INVALID_OPTION', 'burst')
    assertInvalid(() => limiter.setClientLimits('c'), TypeError, 'ERR_BULWARK_INVALID_ARGUMENT', 'limits')
  })
})

describe('blocking', () => {
  test('blockDurationMs keeps a refused key out even after tokens return', () => {
    const { clock, limiter } = make({ capacity: 1, refillPerSecond: 10, blockDurationMs: 5000 })
    assert.equal(limiter.tryConsume('k'), 0)
    assert.equal(limiter.tryConsume('k'), -5000)
    clock.advance(1000)
    assert.equal(limiter.tryConsume('k'), -4000)
    clock.advance(4000)
    assert.equal(limiter.tryConsume('k'), 0)
    assert.equal(limiter.stats().blocked, 1)
  })

  test('block and unblock by hand', () => {
    const { clock, limiter } = make()
    limiter.block('k', 2000)
    assert.equal(limiter.tryConsume('k'), -2000)
    limiter.unblock('k')
    assert.equal(limiter.tryConsume('k'), 9)
    limiter.block('k', 500)
    clock.advance(500)
    assert.equal(limiter.tryConsume('k'), 8)
    assertInvalid(() => limiter.block('k', -1), RangeError, 'ERR_BULWARK_INVALID_ARGUMENT', 'ms', '-1')
    assertInvalid(() => limiter.block('k', Infinity), RangeError, 'ERR_BULWARK_INVALID_ARGUMENT', 'Infinity')
  })
})

describe('shared budget and fair queuing', () => {
  function shared(extra = {}) {
    return make({ capacity: 1000, refillPerSecond: 1000, global: { capacity: 1, refillPerSecond: 1 }, queue: { maxPerClient: 1000, maxWaitMs: 1e9 }, ...extra })
  }

  test('an empty shared budget refuses everyone', () => {
    const { clock, limiter } = shared()
    assert.ok(limiter.tryConsume('a') >= 0)
    assert.equal(limiter.tryConsume('b'), -1000)
    assert.equal(limiter.check('c').allowed, false)
    clock.advance(1000)
    assert.ok(limiter.tryConsume('b') >= 0)
  })

  test('a client with a backlog cannot delay another client by more than one round', async () => {
    const { clock, limiter } = shared()
    limiter.tryConsume('warmup')
    const order = []
    const waits = []
    for (let i = 0; i < 50; i++) waits.push(limiter.acquire('heavy').then(() => order.push('heavy')))
    waits.push(limiter.acquire('light').then(() => order.push('light')))
    for (let i = 0; i < 3; i++) {
      clock.advance(1000)
      await new Promise(setImmediate)
    }
    // FIFO would have served heavy, heavy, heavy
    assert.deepEqual(order.slice(0, 2).sort(), ['heavy', 'light'])
    limiter.close()
    await Promise.allSettled(waits)
  })

  test('weights share the budget in proportion', async () => {
    const { clock, limiter } = shared({ tiers: { gold: { capacity: 1000, refillPerSecond: 1000, weight: 3 } } })
    limiter.setClientTier('gold-client', 'gold')
    limiter.tryConsume('warmup')
    const served = []
    const waits = []
    for (let i = 0; i < 60; i++) {
      waits.push(limiter.acquire('gold-client').then(() => served.push('gold')))
      waits.push(limiter.acquire('bronze-client').then(() => served.push('bronze')))
    }
    for (let i = 0; i < 40; i++) clock.advance(1000)
    await new Promise(setImmediate)
    assert.equal(served.length, 40)
    assert.equal(served.filter((s) => s === 'gold').length, 30)
    limiter.close()
    await Promise.allSettled(waits)
  })
})

describe('acquire', () => {
  test('resolves at once when tokens are there', async () => {
    const { limiter } = make()
    const decision = await limiter.acquire('k', 3)
    assert.equal(decision.allowed, true)
    assert.equal(decision.remaining, 7)
  })

  test('waits for the refill, then resolves', async () => {
    const { clock, limiter } = make({ capacity: 1, refillPerSecond: 1 })
    limiter.tryConsume('k')
    let done = false
    const wait = limiter.acquire('k').then((d) => { done = true; return d })
    await new Promise(setImmediate)
    assert.equal(done, false)
    assert.equal(limiter.stats().queued, 1)
    clock.advance(1000)
    const decision = await wait
    assert.equal(decision.allowed, true)
    const stats = limiter.stats()
    assert.equal(stats.waited, 1)
    assert.equal(stats.waitMs.max, 1000)
  })

  test('rejects at once when the wait would exceed maxWaitMs', async () => {
    const { limiter } = make({ capacity: 1, refillPerSecond: 1 })
    limiter.tryConsume('k')
    await assert.rejects(limiter.acquire('k', 1, { maxWaitMs: 500 }), (error) => {
      assert.ok(error instanceof RateLimitError)
      assert.ok(error instanceof BulwarkError)
      assert.equal(error.code, 'ERR_RATE_LIMITED')
      assert.equal(error.reason, 'wait_too_long')
      assert.equal(error.retryAfterMs, 1000)
      return true
    })
  })

  test('times out at its deadline when others are served first', async () => {
    const { clock, limiter } = make({ capacity: 1, refillPerSecond: 1, queue: { maxWaitMs: 1500 } })
    limiter.tryConsume('k')
    const first = limiter.acquire('k')
    const second = limiter.acquire('k')
    clock.advance(1000)
    await first
    clock.advance(500)
    await assert.rejects(second, { reason: 'timed_out' })
    assert.equal(limiter.stats().timedOut, 1)
  })

  test('rejects when the client queue or the whole queue is full', async () => {
    const { limiter } = make({ capacity: 1, refillPerSecond: 1, queue: { maxPerClient: 1, maxTotal: 2 } })
    limiter.tryConsume('a')
    limiter.tryConsume('b')
    limiter.tryConsume('c')
    const a = limiter.acquire('a')
    await assert.rejects(limiter.acquire('a'), { reason: 'queue_full' })
    const b = limiter.acquire('b')
    await assert.rejects(limiter.acquire('c'), { reason: 'queue_full' })
    limiter.close()
    await assert.rejects(a, { reason: 'closed' })
    await assert.rejects(b, { reason: 'closed' })
  })

  test('an abort signal rejects the wait and frees its place', async () => {
    const { limiter } = make({ capacity: 1, refillPerSecond: 1, queue: { maxPerClient: 1 } })
    limiter.tryConsume('k')
    const controller = new AbortController()
    const wait = limiter.acquire('k', 1, { signal: controller.signal })
    controller.abort(new Error('client went away'))
    await assert.rejects(wait, (error) => error instanceof RateLimitError && error.reason === 'aborted' && error.cause.message === 'client went away')
    assert.equal(limiter.stats().queued, 0)
    const again = limiter.acquire('k', 1, { signal: AbortSignal.abort() })
    await assert.rejects(again, { reason: 'aborted' })
    limiter.close()
  })

  test('a blocked key is refused instead of queued', async () => {
    const { limiter } = make()
    limiter.block('k', 60_000)
    await assert.rejects(limiter.acquire('k'), { reason: 'blocked', retryAfterMs: 60_000 })
  })

  test('close rejects waiters and every later acquire', async () => {
    const { limiter } = make({ capacity: 1, refillPerSecond: 1 })
    limiter.tryConsume('k')
    const wait = limiter.acquire('k')
    limiter.close()
    assert.equal(limiter.closed, true)
    await assert.rejects(wait, { code: 'ERR_RATE_LIMITED', reason: 'closed' })
    await assert.rejects(limiter.acquire('k', 0), { reason: 'closed' })
  })

  test('waits on the real clock too', async () => {
    const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 50 })
    limiter.tryConsume('k')
    const decision = await limiter.acquire('k')
    assert.equal(decision.allowed, true)
    limiter.close()
  })

  test('bad arguments reject with clear errors', async () => {
    const { limiter } = make()
    await assert.rejects(limiter.acquire(42), { name: 'TypeError', code: 'ERR_BULWARK_INVALID_ARGUMENT' })
    await assert.rejects(limiter.acquire('k', -1), { name: 'RangeError', code: 'ERR_BULWARK_INVALID_ARGUMENT' })
    await assert.rejects(limiter.acquire('k', 11), { name: 'RangeError', message: /11.*10/ })
    await assert.rejects(limiter.acquire('k', 1, 'fast'), { name: 'TypeError', message: /options/ })
    await assert.rejects(limiter.acquire('k', 1, { maxWait: 1 }), { name: 'TypeError', message: /maxWait/ })
    await assert.rejects(limiter.acquire('k', 1, { signal: {} }), { name: 'TypeError', message: /signal/ })
    await assert.rejects(limiter.acquire('k', 1, { maxWaitMs: -5 }), { name: 'RangeError', message: /maxWaitMs/ })
    await assert.rejects(limiter.acquire('k', 1, { maxWaitMs: '5' }), { name: 'TypeError', message: /maxWaitMs/ })
  })
})

describe('bounded memory', () => {
  test('a flood of distinct keys stays within maxKeys and counts evictions', () => {
    const { clock, limiter } = make({ maxKeys: 1000 })
    for (let i = 0; i < 50_000; i++) {
      limiter.tryConsume(`flood-${i}`)
      if (i % 500 === 0) clock.advance(1)
    }
    const { keys, evicted } = limiter.stats()
    assert.ok(keys <= 1000, `${keys} keys`)
    assert.ok(evicted >= 48_000, `${evicted} evicted`)
  })

  test('full buckets are dropped before anyone is evicted', () => {
    const { clock, limiter } = make({ maxKeys: 100, capacity: 1, refillPerSecond: 1000 })
    for (let i = 0; i < 100; i++) limiter.tryConsume(`k${i}`)
    clock.advance(10) // every bucket is full again
    for (let i = 0; i < 100; i++) limiter.tryConsume(`n${i}`)
    assert.equal(limiter.stats().evicted, 0)
  })
})

describe('configuration', () => {
  test('the default limits can be read back', () => {
    const { limiter } = make({ capacity: 7, refillPerSecond: 0.5 })
    assert.equal(limiter.capacity, 7)
    assert.equal(limiter.refillPerSecond, 0.5)
    assert.equal(limiter.closed, false)
  })
})

describe('stats', () => {
  test('counts every outcome', () => {
    const { limiter } = make({ capacity: 1, refillPerSecond: 1 })
    limiter.tryConsume('a')
    limiter.tryConsume('a')
    limiter.check('b')
    const stats = limiter.stats()
    assert.equal(stats.allowed, 2)
    assert.equal(stats.rejected, 1)
    assert.equal(stats.keys, 2)
    assert.equal(stats.evicted, 0)
    assert.deepEqual(Object.keys(stats).sort(), ['allowed', 'blocked', 'evicted', 'keys', 'queued', 'rejected', 'timedOut', 'waitHistogram', 'waitMs', 'waited'])
    assert.deepEqual(stats.waitHistogram, { boundsMs: [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000], counts: new Array(13).fill(0), sumMs: 0, count: 0 })
  })

  test('waits of granted acquire calls, as percentiles and as a histogram', async () => {
    const { limiter, clock } = make({ capacity: 1, refillPerSecond: 10 })
    limiter.tryConsume('a')
    // three waiters on an empty key refilling every 100 ms: they wait 100, 200 and 300 ms
    const waits = [limiter.acquire('a'), limiter.acquire('a'), limiter.acquire('a')]
    for (let i = 0; i < 3; i++) clock.advance(100)
    await Promise.all(waits)
    const { waitMs, waitHistogram, waited } = limiter.stats()
    assert.equal(waited, 3)
    assert.equal(waitMs.max, 300)
    const at = (bound) => waitHistogram.counts[waitHistogram.boundsMs.indexOf(bound)]
    assert.deepEqual([at(50), at(100), at(250), at(500)], [0, 1, 2, 3])
    assert.equal(waitHistogram.count, 3)
    assert.equal(waitHistogram.sumMs, 600)
  })
})

describe('bad input', () => {
  const OPT = 'ERR_BULWARK_INVALID_OPTION'
  const ARG = 'ERR_BULWARK_INVALID_ARGUMENT'
  const base = { capacity: 10, refillPerSecond: 1 }

  test('options', () => {
    assertInvalid(() => new RateLimiter(), TypeError, OPT, 'options')
    assertInvalid(() => new RateLimiter(null), TypeError, OPT, 'options', 'null')
    assertInvalid(() => new RateLimiter({ refillPerSecond: 1 }), TypeError, OPT, 'capacity', 'undefined')
    assertInvalid(() => new RateLimiter({ capacity: 1 }), TypeError, OPT, 'refillPerSecond', 'undefined')
    for (const bad of [0, -1, NaN, Infinity, -Infinity]) {
      assertInvalid(() => new RateLimiter({ ...base, capacity: bad }), RangeError, OPT, 'options.capacity', String(bad))
      assertInvalid(() => new RateLimiter({ ...base, refillPerSecond: bad }), RangeError, OPT, 'options.refillPerSecond', String(bad))
      assertInvalid(() => new RateLimiter({ ...base, weight: bad }), RangeError, OPT, 'options.weight', String(bad))
    }
    assertInvalid(() => new RateLimiter({ ...base, capacity: '10' }), TypeError, OPT, 'options.capacity', '"10"')
    assertInvalid(() => new RateLimiter({ ...base, maxKeys: 0 }), RangeError, OPT, 'options.maxKeys', '0')
    assertInvalid(() => new RateLimiter({ ...base, maxKeys: 1.5 }), RangeError, OPT, 'options.maxKeys', '1.5')
    assertInvalid(() => new RateLimiter({ ...base, capactiy: 10 }), TypeError, OPT, 'capactiy')
    assertInvalid(() => new RateLimiter({ ...base, tiers: { pro: { capacity: 5 } } }), TypeError, OPT, 'options.tiers.pro.refillPerSecond')
    assertInvalid(() => new RateLimiter({ ...base, tiers: { pro: 5 } }), TypeError, OPT, 'options.tiers.pro')
    assertInvalid(() => new RateLimiter({ ...base, tiers: { pro: { capacity: 5, refillPerSecond: 1, burst: 2 } } }), TypeError, OPT, 'burst')
    assertInvalid(() => new RateLimiter({ ...base, global: { capacity: 5 } }), TypeError, OPT, 'options.global.refillPerSecond')
    assertInvalid(() => new RateLimiter({ ...base, global: { capacity: 5, refillPerSecond: 1, weight: 1 } }), TypeError, OPT, 'weight')
    assertInvalid(() => new RateLimiter({ ...base, queue: { maxPerClient: 0 } }), RangeError, OPT, 'options.queue.maxPerClient')
    assertInvalid(() => new RateLimiter({ ...base, queue: { maxTotal: NaN } }), RangeError, OPT, 'options.queue.maxTotal', 'NaN')
    assertInvalid(() => new RateLimiter({ ...base, queue: { maxWaitMs: -1 } }), RangeError, OPT, 'options.queue.maxWaitMs')
    assertInvalid(() => new RateLimiter({ ...base, queue: { size: 1 } }), TypeError, OPT, 'size')
    assertInvalid(() => new RateLimiter({ ...base, blockDurationMs: -1 }), RangeError, OPT, 'options.blockDurationMs')
    assertInvalid(() => new RateLimiter({ ...base, clock: Date }), TypeError, OPT, 'options.clock')
  })

  test('keys', () => {
    const { limiter } = make()
    for (const bad of [undefined, null, 42, {}, ['k']]) {
      assertInvalid(() => limiter.tryConsume(bad), TypeError, ARG, 'key')
      assertInvalid(() => limiter.check(bad), TypeError, ARG, 'key')
    }
    assertInvalid(() => limiter.tryConsume(''), RangeError, ARG, 'key', 'empty')
    assertInvalid(() => limiter.tryConsume('x'.repeat(1025)), RangeError, ARG, 'key', '1024')
    assertInvalid(() => limiter.tryConsume('é'.repeat(513)), RangeError, ARG, 'key', '1026 bytes')
    assert.equal(limiter.tryConsume('x'.repeat(1024)), 9, 'exactly 1024 bytes is fine')
    assert.equal(limiter.tryConsume('é'.repeat(512)), 9, 'multi-byte keys count bytes')
    assert.equal(limiter.tryConsume('clé 🔑'), 9, 'any UTF-8 works')
    assert.equal(limiter.peek('clé 🔑'), 9)
  })

  test('costs', () => {
    const { limiter } = make()
    for (const bad of [NaN, Infinity, -1]) assertInvalid(() => limiter.tryConsume('k', bad), RangeError, ARG, 'cost', String(bad))
    for (const bad of ['1', null, {}]) assertInvalid(() => limiter.tryConsume('k', bad), TypeError, ARG, 'cost')
    assertInvalid(() => limiter.tryConsume('k', 11), RangeError, ARG, '11', '10')
    const { limiter: shared } = make({ global: { capacity: 5, refillPerSecond: 1 } })
    assertInvalid(() => shared.tryConsume('k', 6), RangeError, ARG, '6', '5', 'shared')
    assert.equal(limiter.peek('k'), 10, 'nothing was taken by the bad calls')
  })
})
