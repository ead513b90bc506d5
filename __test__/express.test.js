'use strict'
// bulwark/express: the rateLimit middleware on a real Express app, and the clientKey helper.
// Time is either a TestClock or a refill rate so slow that no test can see it move.
const { test, describe, after } = require('node:test')
const assert = require('node:assert/strict')
const { once } = require('node:events')
const net = require('node:net')
const express = require('express')
const { RateLimiter, TestClock } = require('..')
const { rateLimit, clientKey } = require('../express.js')
const { expandIPv6 } = require('../lib/client-key')

const servers = []
after(() => {
  for (const server of servers) {
    server.closeAllConnections()
    server.close()
  }
})

/** Serves `GET /*` behind `middleware`; errors answer 500 with their message and code. */
async function serve(middleware, { trustProxy = false, before = null } = {}) {
  const app = express()
  if (trustProxy) app.set('trust proxy', true)
  if (before) app.use(before)
  app.use(middleware)
  app.get('/{*path}', (req, res) => res.json({ ok: true }))
  app.use((err, req, res, next) => {
    res.status(500).json({ message: err.message, code: err.code })
  })
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  servers.push(server)
  return `http://127.0.0.1:${server.address().port}`
}

async function get(base, path = '/', headers = {}) {
  const response = await fetch(base + path, { headers })
  const body = await response.json()
  return { status: response.status, headers: response.headers, body }
}

const RATE_HEADERS = [
  'ratelimit', 'ratelimit-policy', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset',
  'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'retry-after',
]

function rateHeaders(headers) {
  return RATE_HEADERS.filter((name) => headers.has(name))
}

// A fresh bucket is full, so the first request of a key takes exactly one token: with 5 tokens
// and 0.5 per second, 4 remain and the bucket is full again in exactly 2 s; the window is 10 s.
describe('headers of an admitted request', () => {
  test("draft-8 (the default): RateLimit-Policy and RateLimit as in draft-ietf-httpapi-ratelimit-headers-08", async () => {
    const base = await serve(rateLimit({ capacity: 5, refillPerSecond: 0.5 }))
    const { status, headers } = await get(base)
    assert.equal(status, 200)
    assert.equal(headers.get('ratelimit-policy'), '"default";q=5;w=10')
    assert.equal(headers.get('ratelimit'), '"default";r=4;t=2')
    assert.deepEqual(rateHeaders(headers), ['ratelimit', 'ratelimit-policy'])
  })

  test('draft-8 with a policyName, quoted as a Structured Fields String', async () => {
    const base = await serve(rateLimit({ capacity: 5, refillPerSecond: 0.5, policyName: 'api "v1" \\ burst' }))
    const { headers } = await get(base)
    assert.equal(headers.get('ratelimit-policy'), '"api \\"v1\\" \\\\ burst";q=5;w=10')
    assert.equal(headers.get('ratelimit'), '"api \\"v1\\" \\\\ burst";r=4;t=2')
  })

  test('draft-8 quotas are whole: capacity 2.5 is q=2; the window is rounded up', async () => {
    const base = await serve(rateLimit({ capacity: 2.5, refillPerSecond: 2 }))
    const { headers } = await get(base)
    assert.equal(headers.get('ratelimit-policy'), '"default";q=2;w=2')
    assert.equal(headers.get('ratelimit'), '"default";r=1;t=1')
  })

  test('draft-6: RateLimit-Policy, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset', async () => {
    const base = await serve(rateLimit({ capacity: 5, refillPerSecond: 0.5, headers: 'draft-6' }))
    const { headers } = await get(base)
    assert.equal(headers.get('ratelimit-policy'), '5;w=10')
    assert.equal(headers.get('ratelimit-limit'), '5')
    assert.equal(headers.get('ratelimit-remaining'), '4')
    assert.equal(headers.get('ratelimit-reset'), '2')
    assert.deepEqual(rateHeaders(headers), ['ratelimit-policy', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset'])
  })

  test('legacy: X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset in Unix seconds', async () => {
    const base = await serve(rateLimit({ capacity: 5, refillPerSecond: 0.5, headers: 'legacy' }))
    const before = Date.now()
    const { headers } = await get(base)
    const afterwards = Date.now()
    assert.equal(headers.get('x-ratelimit-limit'), '5')
    assert.equal(headers.get('x-ratelimit-remaining'), '4')
    const reset = Number(headers.get('x-ratelimit-reset'))
    assert.ok(reset >= Math.ceil((before + 2000) / 1000) && reset <= Math.ceil((afterwards + 2000) / 1000), `reset ${reset}`)
    assert.deepEqual(rateHeaders(headers), ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'])
  })

  test('false: no rate-limit headers', async () => {
    const base = await serve(rateLimit({ capacity: 5, refillPerSecond: 0.5, headers: false }))
    const { status, headers } = await get(base)
    assert.equal(status, 200)
    assert.deepEqual(rateHeaders(headers), [])
  })

  test('a limiter that exposes capacity and refillPerSecond gets the full policy', () => {
    const set = {}
    const res = { setHeader: (name, value) => (set[name] = value) }
    const limiter = {
      capacity: 100,
      refillPerSecond: 3,
      check: () => ({ allowed: true, limit: 100, remaining: 41, resetMs: 19_001, retryAfterMs: 0 }),
    }
    rateLimit({ limiter, key: () => 'k' })({}, res, () => {})
    assert.deepEqual(set, { 'RateLimit-Policy': '"default";q=100;w=34', RateLimit: '"default";r=41;t=20' })
  })

  test('a client with its own limits gets its own quota in the policy', async () => {
    const limiter = new RateLimiter({ capacity: 2, refillPerSecond: 0.001 })
    limiter.setClientLimits('vip', { capacity: 50, refillPerSecond: 0.001 })
    const base = await serve(rateLimit({ limiter, key: (req) => req.get('x-client') }))
    const vip = await get(base, '/', { 'x-client': 'vip' })
    assert.equal(vip.headers.get('ratelimit-policy'), '"default";q=50')
    assert.match(vip.headers.get('ratelimit'), /^"default";r=49;t=\d+$/)
    const other = await get(base, '/', { 'x-client': 'other' })
    assert.match(other.headers.get('ratelimit-policy'), /^"default";q=2(;w=2000)?$/)
    assert.match(other.headers.get('ratelimit'), /^"default";r=1;t=\d+$/)
    limiter.close()
  })
})

describe('a refused request', () => {
  test('429, Retry-After in whole seconds, the headers and the JSON body', async () => {
    const base = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001 }))
    assert.equal((await get(base)).status, 200)
    const response = await fetch(base + '/')
    assert.equal(response.status, 429)
    assert.match(response.headers.get('content-type'), /^application\/json/)
    const body = await response.json()
    assert.deepEqual(Object.keys(body), ['error', 'retryAfterMs'])
    assert.equal(body.error, 'rate_limited')
    assert.ok(Number.isInteger(body.retryAfterMs) && body.retryAfterMs > 0)
    const retryAfter = response.headers.get('retry-after')
    assert.equal(retryAfter, String(Math.ceil(body.retryAfterMs / 1000)))
    assert.equal(response.headers.get('ratelimit-policy'), '"default";q=1;w=1000')
    // draft-8 section 5: with Retry-After, t points at the same time
    assert.equal(response.headers.get('ratelimit'), `"default";r=0;t=${retryAfter}`)
  })

  test('Retry-After is at least 1 second', async () => {
    const clock = new TestClock()
    const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 1000, clock })
    const base = await serve(rateLimit({ limiter }))
    assert.equal((await get(base)).status, 200)
    const refused = await get(base)
    assert.equal(refused.status, 429)
    assert.deepEqual(refused.body, { error: 'rate_limited', retryAfterMs: 1 })
    assert.equal(refused.headers.get('retry-after'), '1')
    limiter.close()
  })

  test('draft-6 and legacy headers on a refusal', async () => {
    const draft6 = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001, headers: 'draft-6' }))
    await get(draft6)
    const six = await get(draft6)
    assert.equal(six.status, 429)
    assert.equal(six.headers.get('ratelimit-remaining'), '0')
    assert.equal(six.headers.get('ratelimit-reset'), six.headers.get('retry-after'))

    const legacy = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001, headers: 'legacy' }))
    await get(legacy)
    const old = await get(legacy)
    assert.equal(old.status, 429)
    assert.equal(old.headers.get('x-ratelimit-limit'), '1')
    assert.equal(old.headers.get('x-ratelimit-remaining'), '0')
    assert.ok(Number(old.headers.get('x-ratelimit-reset')) > Date.now() / 1000)
  })

  test('headers: false still sends Retry-After', async () => {
    const base = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001, headers: false }))
    await get(base)
    const refused = await get(base)
    assert.equal(refused.status, 429)
    assert.deepEqual(rateHeaders(refused.headers), ['retry-after'])
  })

  test('a blocked key reports nothing remaining', async () => {
    const limiter = new RateLimiter({ capacity: 5, refillPerSecond: 0.001 })
    limiter.block('blocked', 60_000)
    const base = await serve(rateLimit({ limiter, key: () => 'blocked' }))
    const refused = await get(base)
    assert.equal(refused.status, 429)
    assert.equal(refused.headers.get('ratelimit'), `"default";r=0;t=${refused.headers.get('retry-after')}`)
    assert.ok(Number(refused.headers.get('retry-after')) > 50)
    limiter.close()
  })
})

describe('options', () => {
  test('skip: skipped requests take no tokens and carry no headers', async () => {
    const base = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001, skip: (req) => req.path === '/health' }))
    for (let i = 0; i < 3; i++) {
      const health = await get(base, '/health')
      assert.equal(health.status, 200)
      assert.deepEqual(rateHeaders(health.headers), [])
    }
    assert.equal((await get(base, '/work')).status, 200)
    assert.equal((await get(base, '/work')).status, 429)
  })

  test('cost: requests take what cost(req) says', async () => {
    const base = await serve(rateLimit({ capacity: 10, refillPerSecond: 0.001, cost: (req) => Number(req.get('x-cost')) }))
    const first = await get(base, '/', { 'x-cost': '4' })
    assert.equal(first.status, 200)
    assert.match(first.headers.get('ratelimit'), /^"default";r=6;/)
    assert.equal((await get(base, '/', { 'x-cost': '7' })).status, 429)
    const zero = await get(base, '/', { 'x-cost': '0' })
    assert.equal(zero.status, 200)
    assert.match(zero.headers.get('ratelimit'), /^"default";r=6;/)
    const negative = await get(base, '/', { 'x-cost': '-1' })
    assert.equal(negative.status, 500)
    assert.equal(negative.body.code, 'ERR_BULWARK_INVALID_ARGUMENT')
  })

  test('key: one bucket per key', async () => {
    const base = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001, key: (req) => req.get('x-api-key') }))
    assert.equal((await get(base, '/', { 'x-api-key': 'a' })).status, 200)
    assert.equal((await get(base, '/', { 'x-api-key': 'a' })).status, 429)
    assert.equal((await get(base, '/', { 'x-api-key': 'b' })).status, 200)
    // no header: key(req) returns undefined, which the limiter refuses as a key
    const missing = await get(base)
    assert.equal(missing.status, 500)
    assert.equal(missing.body.code, 'ERR_BULWARK_INVALID_ARGUMENT')
    assert.match(missing.body.message, /key must be a string/)
  })

  test('onLimited replaces the 429 response; the headers are already set', async () => {
    const seen = []
    const base = await serve(
      rateLimit({
        capacity: 1,
        refillPerSecond: 0.001,
        onLimited(req, res, next, decision) {
          seen.push(decision)
          res.status(503).json({ busy: true, path: req.path })
        },
      }),
    )
    await get(base)
    const refused = await get(base, '/x')
    assert.equal(refused.status, 503)
    assert.deepEqual(refused.body, { busy: true, path: '/x' })
    assert.ok(refused.headers.has('retry-after'))
    assert.match(refused.headers.get('ratelimit'), /^"default";r=0;t=\d+$/)
    assert.equal(seen.length, 1)
    assert.equal(seen[0].allowed, false)
    assert.equal(seen[0].limit, 1)
    assert.ok(seen[0].retryAfterMs > 0)
  })

  test('onLimited may pass the request on with next()', async () => {
    const base = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001, onLimited: (req, res, next) => next() }))
    await get(base)
    const passed = await get(base)
    assert.equal(passed.status, 200)
    assert.deepEqual(passed.body, { ok: true })
  })

  test('wait: true holds the request until the clock grants it', async () => {
    const clock = new TestClock()
    const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 1, clock })
    let arrived
    const arrivals = [new Promise((resolve) => (arrived = resolve))]
    const base = await serve(rateLimit({ limiter, wait: true }), {
      before: (req, res, next) => {
        arrived()
        arrivals.push(new Promise((resolve) => (arrived = resolve)))
        next()
      },
    })
    const first = await get(base)
    assert.equal(first.status, 200)
    assert.equal(first.headers.get('ratelimit'), '"default";r=0;t=1')

    let settled = false
    const pending = get(base).finally(() => (settled = true))
    await arrivals[1] // the second request reached the middleware, which queued it at once
    assert.equal(limiter.stats().queued, 1)
    clock.advance(999)
    assert.equal(limiter.stats().queued, 1)
    assert.equal(settled, false)
    clock.advance(1)
    const second = await pending
    assert.equal(second.status, 200)
    assert.equal(second.headers.get('ratelimit'), '"default";r=0;t=1')
    assert.equal(limiter.stats().waited, 1)
    limiter.close()
  })

  test('wait: true gives the place in the queue back when the client goes away', async () => {
    const clock = new TestClock()
    const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 1, clock })
    let arrived
    let closed
    const arrival = new Promise((resolve) => (arrived = resolve))
    const closing = new Promise((resolve) => (closed = resolve))
    let requests = 0
    const base = await serve(rateLimit({ limiter, wait: true }), {
      before: (req, res, next) => {
        if (++requests === 2) {
          // registered before the middleware's own listener, which therefore has run by the
          // time this promise's continuation does
          res.once('close', closed)
          arrived()
        }
        next()
      },
    })
    assert.equal((await get(base)).status, 200)
    const controller = new AbortController()
    const pending = fetch(base + '/', { signal: controller.signal })
    await arrival
    assert.equal(limiter.stats().queued, 1)
    controller.abort()
    await assert.rejects(pending, { name: 'AbortError' })
    await closing
    assert.equal(limiter.stats().queued, 0)
    limiter.close()
  })

  test('wait: true answers 429 when the queue turns the request down', async () => {
    const clock = new TestClock()
    const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 1, clock, queue: { maxWaitMs: 500 } })
    const base = await serve(rateLimit({ limiter, wait: true }))
    assert.equal((await get(base)).status, 200)
    const refused = await get(base)
    assert.equal(refused.status, 429)
    assert.equal(refused.body.error, 'rate_limited')
    assert.equal(refused.headers.get('retry-after'), String(Math.max(1, Math.ceil(refused.body.retryAfterMs / 1000))))
    assert.equal(limiter.stats().queued, 0)
    limiter.close()
  })

  test('wait: true answers 429 to waiters when the limiter closes', async () => {
    const clock = new TestClock()
    const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 1, clock })
    let arrived = 0
    let onArrival = () => {}
    const base = await serve(rateLimit({ limiter, wait: true }), {
      before: (req, res, next) => {
        arrived++
        next()
        onArrival()
      },
    })
    await get(base)
    const second = new Promise((resolve) => (onArrival = () => arrived === 2 && resolve()))
    const pending = get(base)
    await second
    assert.equal(limiter.stats().queued, 1)
    limiter.close()
    const refused = await pending
    assert.equal(refused.status, 429)
    assert.equal(refused.headers.get('retry-after'), '1')
  })
})

describe('callbacks that throw go to the error handler', () => {
  for (const name of ['key', 'cost', 'skip', 'onLimited']) {
    test(name, async () => {
      const options = { capacity: 1, refillPerSecond: 0.001 }
      options[name] = () => {
        throw new Error(`${name} exploded`)
      }
      const base = await serve(rateLimit(options))
      if (name === 'onLimited') assert.equal((await get(base)).status, 200)
      const failed = await get(base)
      assert.equal(failed.status, 500)
      assert.equal(failed.body.message, `${name} exploded`)
    })
  }

  test('onLimited returning a rejected promise', async () => {
    const base = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001, onLimited: async () => Promise.reject(new Error('async boom')) }))
    await get(base)
    const failed = await get(base)
    assert.equal(failed.status, 500)
    assert.equal(failed.body.message, 'async boom')
  })

  test('an async skip is refused rather than taken as true', async () => {
    const base = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001, skip: async () => false }))
    const failed = await get(base)
    assert.equal(failed.status, 500)
    assert.match(failed.body.message, /options\.skip must return a boolean synchronously/)
  })
})

describe('bad options', () => {
  const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 1 })
  after(() => limiter.close())
  const base = { capacity: 1, refillPerSecond: 1 }
  const cases = [
    ['no options', undefined, TypeError, /options must be an object/],
    ['null', null, TypeError, /received null/],
    ['a string', 'fast', TypeError, /received string "fast"/],
    ['neither limiter nor figures', {}, TypeError, /options\.limiter or options\.capacity and options\.refillPerSecond are required/],
    ['an unknown option', { ...base, windowMs: 1000 }, TypeError, /unknown option "windowMs" \(received number 1000\)/],
    ['limiter and capacity', { limiter, capacity: 1 }, TypeError, /options\.limiter cannot be combined/],
    ['a limiter that is not one', { limiter: {} }, TypeError, /options\.limiter must be a RateLimiter, received an object/],
    ['capacity without refillPerSecond', { capacity: 1 }, TypeError, /refillPerSecond/],
    ['a negative capacity', { capacity: -1, refillPerSecond: 1 }, RangeError, /capacity/],
    ['a string capacity', { capacity: '10', refillPerSecond: 1 }, TypeError, /capacity/],
    ['key not a function', { ...base, key: 'ip' }, TypeError, /options\.key must be a function, received string "ip"/],
    ['cost not a function', { ...base, cost: 2 }, TypeError, /options\.cost must be a function, received number 2/],
    ['skip not a function', { ...base, skip: true }, TypeError, /options\.skip must be a function, received boolean true/],
    ['onLimited not a function', { ...base, onLimited: {} }, TypeError, /options\.onLimited must be a function, received an object/],
    ['wait not a boolean', { ...base, wait: 'yes' }, TypeError, /options\.wait must be a boolean, received string "yes"/],
    ['wait with a limiter that cannot wait', { limiter: { check() {} }, wait: true }, TypeError, /acquire/],
    ['an unknown header format', { ...base, headers: 'draft-7' }, RangeError, /options\.headers must be 'draft-8', 'draft-6', 'legacy' or false, received string "draft-7"/],
    ['headers: true', { ...base, headers: true }, TypeError, /options\.headers .* received boolean true/],
    ['policyName not a string', { ...base, policyName: 7 }, TypeError, /options\.policyName must be a string, received number 7/],
    ['an empty policyName', { ...base, policyName: '' }, RangeError, /options\.policyName must be 1 to 256 printable ASCII characters, received string ""/],
    ['a non-ASCII policyName', { ...base, policyName: 'café' }, RangeError, /received string "café"/],
    ['a policyName with a newline', { ...base, policyName: 'a\nb' }, RangeError, /printable ASCII/],
  ]
  for (const [name, options, ErrorClass, message] of cases) {
    test(name, () => {
      assert.throws(
        () => rateLimit(options),
        (error) => {
          assert.ok(error instanceof ErrorClass, `${error.name}: ${error.message}`)
          assert.equal(error.code, 'ERR_BULWARK_INVALID_OPTION')
          assert.match(error.message, message)
          return true
        },
      )
    })
  }

  test('options set to undefined count as absent', () => {
    assert.equal(typeof rateLimit({ ...base, key: undefined, cost: undefined, skip: undefined, wait: undefined, headers: undefined, policyName: undefined, onLimited: undefined }), 'function')
  })
})

describe('the default key', () => {
  test('IPv6 clients share one bucket per /56; IPv4-mapped addresses count as IPv4', async () => {
    const base = await serve(rateLimit({ capacity: 1, refillPerSecond: 0.001 }), { trustProxy: true })
    const from = (address) => get(base, '/', { 'x-forwarded-for': address })
    assert.equal((await from('2001:db8:85a3:ab12::1')).status, 200)
    assert.equal((await from('2001:db8:85a3:abff:ffff::9')).status, 429, 'same /56')
    assert.equal((await from('2001:db8:85a3:ac00::1')).status, 200, 'next /56')
    assert.equal((await from('198.51.100.7')).status, 200)
    assert.equal((await from('::ffff:198.51.100.7')).status, 429, 'the mapped form of the same IPv4 client')
    assert.equal((await from('198.51.100.8')).status, 200)
  })

  test('without trust proxy, X-Forwarded-For is ignored and the key is what req.ip says', async () => {
    const keys = []
    const seen = []
    const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 0.001 })
    const record = (req, res, next) => { seen.push(req.ip); next() }
    const spy = { check: (key, cost) => (keys.push(key), limiter.check(key, cost)) }
    const base = await serve(rateLimit({ limiter: spy }), { before: record })
    assert.equal((await get(base, '/', { 'x-forwarded-for': '198.51.100.1' })).status, 200)
    assert.equal((await get(base, '/', { 'x-forwarded-for': '198.51.100.2' })).status, 429, 'a forged header does not buy a new bucket')
    assert.deepEqual(keys, seen.map(clientKey))
    assert.equal(keys[0], '127.0.0.1')
  })

  test('falls back to the socket address, then to "unknown"', () => {
    const keys = []
    const limiter = { check: (key) => (keys.push(key), { allowed: true, limit: 1, remaining: 0, resetMs: 0, retryAfterMs: 0 }) }
    const middleware = rateLimit({ limiter, headers: false })
    const res = { setHeader() {} }
    const next = (error) => assert.equal(error, undefined)
    middleware({ ip: '2001:db8::1', socket: { remoteAddress: '10.0.0.1' } }, res, next)
    middleware({ ip: undefined, socket: { remoteAddress: '::ffff:10.0.0.2' } }, res, next)
    middleware({ ip: undefined, socket: { remoteAddress: undefined } }, res, next)
    middleware({}, res, next)
    assert.deepEqual(keys, ['2001:db8::/56', '10.0.0.2', 'unknown', 'unknown'])
  })
})

describe('clientKey', () => {
  test('examples', () => {
    const cases = [
      ['203.0.113.9', '203.0.113.9'],
      ['2001:db8:85a3:ab12::1', '2001:db8:85a3:ab00::/56'],
      ['2001:0DB8:85A3:AB12:0000:0000:0000:0001', '2001:db8:85a3:ab00::/56'],
      ['2001:db8:85a3:ab12:1:2:3:4', '2001:db8:85a3:ab00::/56'],
      ['2001:db8:85a3:12::', '2001:db8:85a3::/56'],
      ['2001:db8::85a3', '2001:db8::/56'],
      ['::', '::/56'],
      ['::1', '::/56'],
      ['0:1:2:3::', '0:1:2::/56'],
      ['fe80::1%eth0', 'fe80::/56'],
      ['fe80::1ff:fe23:4567:890a%3', 'fe80::/56'],
      ['::ffff:1.2.3.4', '1.2.3.4'],
      ['::FFFF:102:304', '1.2.3.4'],
      ['0:0:0:0:0:ffff:192.0.2.1', '192.0.2.1'],
      ['64:ff9b::192.0.2.1', '64:ff9b::/56'],
      ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ff00::/56'],
    ]
    for (const [address, key] of cases) assert.equal(clientKey(address), key, address)
  })

  test('invalid input is its own key', () => {
    const invalid = [
      '', 'unknown', ':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'g::1',
      '1:2:3:4:5:6:7:8::', '::1:', ':1::', '1:2:3:4:5:6::1.2.3.4', '::ffff:1.2.3', '::ffff:1.2.3.4.5',
      '::ffff:256.1.1.1', '::ffff:01.2.3.4', '::1.2.3.4:5', '%eth0', 'fe80::1%', '[::1]', ' ::1',
    ]
    for (const address of invalid) {
      assert.equal(clientKey(address), address, JSON.stringify(address))
      assert.equal(expandIPv6(address), null, JSON.stringify(address))
    }
  })

  test('expandIPv6 agrees with net.isIPv6 on what is an address', () => {
    const inputs = [
      '::', '::1', '1::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1::8', '1:2::7:8',
      '::ffff:1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5::1.2.3.4', '::1.2.3.4', 'a:b:c:d:e:f:a:b',
      '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1::2::3', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:', '00000::',
      '::ffff:1.2.3.04', '::ffff:1.2.3', '1.2.3.4', 'x::', '::-1', '1:2:3:4:5:6:7:1.2.3.4',
    ]
    for (const input of inputs) assert.equal(expandIPv6(input) !== null, net.isIPv6(input), input)
  })

  test('random addresses: the key is the /56 that contains them, however they are written', () => {
    // deterministic pseudo-random groups (xorshift32)
    let seed = 0x9e3779b9
    const random16 = () => {
      seed ^= seed << 13
      seed ^= seed >>> 17
      seed ^= seed << 5
      return (seed >>> 0) & 0xffff
    }
    for (let n = 0; n < 2000; n++) {
      // zero runs of random length so that `::` lands everywhere
      const groups = Array.from({ length: 8 }, () => (random16() % 3 === 0 ? 0 : random16()))
      if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) continue
      const full = groups.map((g) => g.toString(16).padStart(4, '0')).join(':')
      // the WHATWG URL parser is an independent IPv6 parser and writes RFC 5952 text
      const canonical = new URL(`http://[${full}]`).hostname.slice(1, -1)
      const key = clientKey(full)
      assert.equal(clientKey(canonical), key, canonical)
      assert.equal(clientKey(full.toUpperCase()), key)
      assert.deepEqual(expandIPv6(canonical), groups)

      assert.ok(key.endsWith('/56'), key)
      const prefix = key.slice(0, -3)
      const masked = [...groups.slice(0, 3), groups[3] & 0xff00, 0, 0, 0, 0]
      assert.equal(prefix, new URL(`http://[${masked.map((g) => g.toString(16)).join(':')}]`).hostname.slice(1, -1))
      const subnet = new net.BlockList()
      subnet.addSubnet(prefix, 56, 'ipv6')
      assert.ok(subnet.check(canonical, 'ipv6'), `${canonical} in ${key}`)
      // and the first address past the /56 is not in it
      const outside = [...masked]
      outside[3] += 0x100
      if (outside[3] <= 0xffff) {
        assert.notEqual(clientKey(outside.map((g) => g.toString(16)).join(':')), key)
      }
    }
  })
})
