'use strict'
// PersistentCache with `redis`: the shared tier below memory and disk (getAsync, getOrSet,
// write-through), and the invalidation bus seen by other instances and other processes,
// including the flush after a gap in a publisher's messages and after a Redis restart.
const { test, describe, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { fork } = require('node:child_process')
const path = require('node:path')
const Redis = require('ioredis')
const { PersistentCache } = require('..')
const { needService, deleteKeys, REDIS_URL } = require('./helpers/services')
const { haveRedisServer, startRedisServer } = require('./helpers/redis-server')
const { collectGarbage, settledWithin, afterQueuedTicks } = require('./helpers/gc')

const PREFIX = `bulwark-test:cache:${process.pid}:`
let serial = 0
const prefix = () => `${PREFIX}${++serial}:`
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits until `check()` is true (polling), failing after `ms`. */
async function eventually(check, what, ms = 5000) {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not seen within ${ms} ms: ${what}`)
    await sleep(5)
  }
}

function subscribed(cache) {
  return eventually(() => cache.stats().redis.subscribed, 'the subscription')
}

describe('PersistentCache with a Redis tier', async () => {
  const service = await needService('redis')
  let client
  const caches = []
  const open = (keyPrefix, options = {}) => {
    const cache = new PersistentCache({ maxEntries: 1000, ...options, redis: { url: REDIS_URL, keyPrefix, ...(options.redis || {}) } })
    caches.push(cache)
    return cache
  }

  before(() => {
    if (!service.skip) client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  })
  after(async () => {
    for (const cache of caches) await cache.close().catch(() => {})
    if (client) {
      await deleteKeys(client, `${PREFIX}*`)
      client.disconnect()
    }
  })

  test('a value set in one instance is found by another in Redis, as the type it was set as, and fills its local tiers', { skip: service.skip }, async () => {
    const keyPrefix = prefix()
    const a = open(keyPrefix)
    const b = open(keyPrefix)
    a.set('text', 'hello')
    a.set('json', { n: 1, list: [1, 2] })
    a.set('bytes', Buffer.from([1, 2, 3]))
    a.set('u8', new Uint8Array([4, 5]))
    a.set('short', 'soon gone', { ttlMs: 60_000 })
    await sleep(30) // the write-through goes at the end of the tick, in the background
    assert.equal(b.get('text'), undefined) // get stays local and synchronous
    assert.equal(await b.getAsync('text'), 'hello')
    assert.deepEqual(await b.getAsync('json'), { n: 1, list: [1, 2] })
    const bytes = await b.getAsync('bytes')
    assert.ok(Buffer.isBuffer(bytes))
    assert.deepEqual([...bytes], [1, 2, 3])
    const u8 = await b.getAsync('u8')
    assert.ok(u8 instanceof Uint8Array && !Buffer.isBuffer(u8))
    assert.deepEqual([...u8], [4, 5])
    assert.equal(await b.getAsync('missing'), undefined)
    // now local: synchronous gets find them
    assert.equal(b.get('text'), 'hello')
    assert.deepEqual(b.get('json'), { n: 1, list: [1, 2] })
    // the TTL came along: the entry lives in Redis for at most 60 s
    const pttl = await client.pttl(`${keyPrefix}v:short`)
    assert.ok(pttl > 0 && pttl <= 60_000, `pttl ${pttl}`)
    const s = b.stats().redis
    assert.equal(s.hits, 4)
    assert.equal(s.misses, 1)
    assert.equal(a.stats().redis.sets, 5)
  })

  test('a lookup settles when nothing but its promise holds the cache, through a garbage collection', { skip: service.skip }, async () => {
    const keyPrefix = prefix()
    open(keyPrefix).set('k', 'from redis')
    await sleep(30) // the write-through goes at the end of the tick, in the background
    const lookup = new PersistentCache({ maxEntries: 10, redis: { url: REDIS_URL, keyPrefix } }).getAsync('k')
    await afterQueuedTicks() // the lookup is out
    collectGarbage()
    assert.equal(await settledWithin(lookup, 5000), 'from redis')
  })

  test('a value in Redis that does not decode is a miss for getAsync and getOrSet, never a lookup left waiting', { skip: service.skip }, async () => {
    const keyPrefix = prefix()
    const redisKey = `${keyPrefix}v:report`
    const undecodable = {
      'JSON that does not parse': Buffer.concat([Buffer.from([2, 0, 0]), Buffer.from('{not json')]),
      'an unknown kind': Buffer.from([9, 0, 0, 120]),
      'tags longer than the value': Buffer.from([0, 255, 255, 65]),
      'too short': Buffer.from([2]),
    }
    for (const [what, bytes] of Object.entries(undecodable)) {
      await client.set(redisKey, bytes)
      // a fresh instance: its memory tier is empty, so the lookup goes to Redis
      const cache = open(keyPrefix)
      const got = await settledWithin(cache.getAsync('report'), 3000, 'still waiting')
      assert.equal(got, undefined, `${what}: ${String(got)}`)
      assert.equal(cache.stats().redis.undecodable, 1, what)
      let loads = 0
      const loaded = await settledWithin(cache.getOrSet('report', async () => { loads++; return { fresh: true } }), 3000, 'still waiting')
      assert.deepEqual(loaded, { fresh: true }, what)
      assert.equal(loads, 1, what)
      // the load replaced the value in Redis: another instance reads it
      await eventually(async () => {
        const other = open(keyPrefix)
        const value = await other.getAsync('report')
        return value !== undefined && value.fresh === true
      }, `${what}: the loaded value in Redis`)
    }
  })

  test('getOrSet looks in Redis before running the loader, and a loaded value is shared', { skip: service.skip }, async () => {
    const keyPrefix = prefix()
    const a = open(keyPrefix)
    const b = open(keyPrefix)
    let loads = 0
    const loader = async (key) => {
      loads++
      return { key, at: loads }
    }
    const first = await a.getOrSet('report', loader, { ttlMs: 60_000 })
    assert.deepEqual(first, { key: 'report', at: 1 })
    await sleep(30)
    const second = await b.getOrSet('report', loader)
    assert.deepEqual(second, first)
    assert.equal(loads, 1)
    // concurrent callers in b share one load (single flight), then memory serves
    const many = await Promise.all([1, 2, 3].map(() => b.getOrSet('other', loader)))
    assert.equal(loads, 2)
    for (const v of many) assert.deepEqual(v, many[0])
  })

  test('delete, tags, prefixes and clear reach the other instances and Redis', { skip: service.skip }, async () => {
    const keyPrefix = prefix()
    const a = open(keyPrefix)
    const b = open(keyPrefix)
    await Promise.all([subscribed(a), subscribed(b)])
    // b fills its local tiers from Redis with the entries' tags, so a tag reaches them too
    a.set('user:1', 'one', { tags: ['users'] })
    a.set('user:2', 'two', { tags: ['users'] })
    a.set('post:1', 'p1')
    a.set('post:2', 'p2')
    a.set('keep', 'kept')
    await sleep(30)
    for (const key of ['user:1', 'user:2', 'post:1', 'post:2', 'keep']) assert.ok(await b.getAsync(key), key)

    a.delete('post:1')
    await eventually(() => b.get('post:1') === undefined, 'the delete in b')
    assert.equal(await b.getAsync('post:1'), undefined) // gone from Redis too

    b.invalidateTag('users') // the other way round
    await eventually(() => a.get('user:1') === undefined && a.get('user:2') === undefined, 'the tag in a')
    assert.equal(await a.getAsync('user:2'), undefined)

    a.invalidatePrefix('post:')
    await eventually(() => b.get('post:2') === undefined, 'the prefix in b')
    assert.equal(await b.getAsync('post:2'), undefined)
    assert.equal(b.get('keep'), 'kept')

    a.clear()
    await eventually(() => b.get('keep') === undefined, 'the clear in b')
    assert.equal(await b.getAsync('keep'), undefined)
    assert.ok(b.stats().redis.received >= 3)
    assert.equal(b.stats().redis.flushes, 0)
  })

  test('keys, values, tags and prefixes with lone surrogates stay apart in Redis and in invalidations', { skip: service.skip }, async () => {
    // read as UTF-8 each lone surrogate would be U+FFFD, and these would be one key in Redis
    const keyPrefix = prefix()
    const a = open(keyPrefix)
    const b = open(keyPrefix)
    await Promise.all([subscribed(a), subscribed(b)])
    a.set('k\uD800', 'lone \uD800', { tags: ['t\uDC00'] })
    a.set('k\uFFFD', 'replacement \uFFFD', { tags: ['t\uFFFD'] })
    a.set('k\uDBFF', { s: 'json \uDBFF' })
    await sleep(30)
    assert.equal(await b.getAsync('k\uD800'), 'lone \uD800')
    assert.equal(await b.getAsync('k\uFFFD'), 'replacement \uFFFD')
    assert.deepEqual(await b.getAsync('k\uDBFF'), { s: 'json \uDBFF' })
    // b filled its local tiers from Redis, tags included: a tag reaches its entry only
    a.invalidateTag('t\uDC00')
    await eventually(() => b.get('k\uD800') === undefined, 'the tag in b')
    assert.equal(b.get('k\uFFFD'), 'replacement \uFFFD')
    assert.equal(await b.getAsync('k\uD800'), undefined, 'gone from Redis too')
    a.delete('k\uDBFF')
    await eventually(() => b.get('k\uDBFF') === undefined, 'the delete in b')
    assert.equal(b.get('k\uFFFD'), 'replacement \uFFFD')
    b.set('p\uD83D:1', 'one')
    b.set('p\uD83D\uDE00:1', 'emoji')
    await sleep(30)
    assert.equal(await a.getAsync('p\uD83D:1'), 'one')
    assert.equal(await a.getAsync('p\uD83D\uDE00:1'), 'emoji')
    b.invalidatePrefix('p\uD83D')
    await eventually(() => a.get('p\uD83D:1') === undefined, 'the prefix in a')
    assert.equal(a.get('p\uD83D\uDE00:1'), 'emoji', 'a lone high surrogate is not the start of a pair')
    assert.equal(await a.getAsync('p\uD83D:1'), undefined)
    assert.equal(b.stats().redis.flushes, 0)
  })

  test('with a Redis tier, a tag with a NUL character or more than 64 KiB of tags is refused, before anything is stored', { skip: service.skip }, async () => {
    // the tier stores an entry's tags NUL-separated: another instance would read 'a\0b' as the
    // tags 'a' and 'b', and an invalidation of 'a\0b' would miss its copy
    const a = open(prefix())
    assert.throws(() => a.set('k', 'v', { tags: ['ok', 'a\0b'] }), (error) => {
      assert.ok(error instanceof RangeError)
      assert.equal(error.code, 'ERR_BULWARK_INVALID_ARGUMENT')
      assert.match(error.message, /options\.tags\[1\] must not contain a NUL character/)
      return true
    })
    assert.equal(a.get('k'), undefined)
    await assert.rejects(a.getOrSet('k', async () => 'v', { tags: ['a\0b'] }), RangeError)
    assert.equal(a.stats().sets, 0)
    // the tier stores at most 65,535 bytes of tag text with an entry: more is refused, not cut
    const many = Array.from({ length: 5 }, (_, i) => `${i}`.repeat(13_107))
    assert.throws(() => a.set('k', 'v', { tags: many }), /options\.tags must hold at most 65535 bytes of UTF-8 together .* received 65539 bytes/)
    many[4] = many[4].slice(4)
    a.set('k', 'v', { tags: many })
    assert.equal(a.get('k'), 'v')
    // without a Redis tier such a tag is one tag like any other
    const local = new PersistentCache({ maxEntries: 10 })
    local.set('k', 'v', { tags: ['a\0b'] })
    assert.equal(local.invalidateTag('a'), 0)
    assert.equal(local.invalidateTag('a\0b'), 1)
  })

  test('a gap in a publisher\'s messages drops the local tiers, counted', { skip: service.skip }, async () => {
    const keyPrefix = prefix()
    const cache = open(keyPrefix)
    await subscribed(cache)
    cache.set('a', 1)
    cache.set('b', 2)
    const channel = `${keyPrefix}invalidate`
    await client.publish(channel, 'elsewhere 1 d a')
    await eventually(() => cache.get('a') === undefined, 'the first message')
    assert.equal(cache.get('b'), 2)
    await client.publish(channel, 'elsewhere 3 d nothing') // message 2 was lost
    await eventually(() => cache.get('b') === undefined, 'the flush')
    assert.equal(cache.stats().redis.flushes, 1)
  })

  test('three processes: a delete, a tag and a prefix invalidation in one are seen by the others', { skip: service.skip }, async () => {
    const keyPrefix = prefix()
    const helper = path.join(__dirname, 'helpers', 'cache-peer.js')
    const peers = [0, 1, 2].map(() => fork(helper, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, REDIS_URL, PEER_PREFIX: keyPrefix } }))
    let nextId = 1
    const call = (peer, op, ...args) => new Promise((resolve, reject) => {
      const id = nextId++
      const onMessage = (m) => {
        if (m.id !== id) return
        peer.off('message', onMessage)
        if (m.error) reject(new Error(m.error))
        else resolve(m.result)
      }
      peer.on('message', onMessage)
      peer.send({ id, op, args })
    })
    try {
      await Promise.all(peers.map((p) => new Promise((resolve) => p.on('message', (m) => m.ready && resolve()))))
      const [writer, r1, r2] = peers
      await call(writer, 'set', 'item:1', 'one', { tags: ['items'] })
      await call(writer, 'set', 'item:2', 'two', { tags: ['items'] })
      await call(writer, 'set', 'page:1', 'p')
      await call(writer, 'set', 'other', 'o')
      await call(writer, 'settle')
      for (const reader of [r1, r2]) {
        for (const key of ['item:1', 'item:2', 'page:1', 'other']) assert.ok(await call(reader, 'getAsync', key), key)
      }
      const goneEverywhere = async (key) => {
        for (const reader of [r1, r2]) await eventually(async () => (await call(reader, 'get', key)) === null, `${key} in a reader`)
      }
      await call(writer, 'delete', 'other')
      await goneEverywhere('other')
      await call(r1, 'invalidateTag', 'items') // any process may invalidate
      await eventually(async () => (await call(writer, 'get', 'item:1')) === null, 'item:1 in the writer')
      await goneEverywhere('item:1')
      await goneEverywhere('item:2')
      await call(r2, 'invalidatePrefix', 'page:')
      await eventually(async () => (await call(writer, 'get', 'page:1')) === null, 'page:1 in the writer')
      await goneEverywhere('page:1')
      const stats = await call(r2, 'stats')
      assert.ok(stats.received >= 2)
      assert.equal(stats.flushes, 0)
    } finally {
      for (const peer of peers) if (peer.connected) peer.send({ op: 'exit' })
      await Promise.all(peers.map((p) => new Promise((resolve) => (p.exitCode !== null ? resolve() : p.once('exit', resolve)))))
    }
  })

  test('invalid redis options are refused naming the option, before the local tiers open', { skip: service.skip }, () => {
    assert.throws(() => new PersistentCache({ maxEntries: 10, redis: { url: 'http://x' } }), { code: 'ERR_BULWARK_INVALID_OPTION', message: /options\.redis\.url/ })
    assert.throws(() => new PersistentCache({ maxEntries: 10, redis: { db: 1 } }), /options\.redis has an unknown option "db"/)
    assert.throws(() => new PersistentCache({ maxEntries: 10, redis: 'redis://x' }), /options\.redis must be an object/)
    assert.throws(() => new PersistentCache({ maxEntries: 10, redis: { channel: '' } }), /options\.redis\.channel/)
    assert.throws(() => new PersistentCache({ maxEntries: 10, redis: { retryMs: -1 } }), /options\.redis\.retryMs/)
  })
})

describe('PersistentCache when Redis goes away', async () => {
  const service = await needService('redis')
  const skip = service.skip || (!haveRedisServer() && 'redis-server is not installed')
  let server
  before(async () => {
    if (!skip) server = await startRedisServer()
  })
  after(async () => {
    if (server) await server.kill()
  })

  test('local tiers keep serving while Redis is down; a subscription lost to a restart drops them, counted', { skip }, async () => {
    const options = { maxEntries: 100, redis: { url: server.url, keyPrefix: 'restart:', retryMs: 100, connectTimeoutMs: 200, commandTimeoutMs: 500 } }
    const a = new PersistentCache(options)
    const b = new PersistentCache(options)
    try {
      await Promise.all([subscribed(a), subscribed(b)])
      a.set('k', 'v')
      await sleep(30)
      assert.equal(await b.getAsync('k'), 'v')
      await server.kill()
      await eventually(() => !b.stats().redis.subscribed, 'the lost subscription')
      // local tiers still answer; Redis lookups miss at once, counted as errors
      assert.equal(b.get('k'), 'v')
      b.set('local', 'only')
      assert.equal(b.get('local'), 'only')
      assert.equal(await b.getAsync('nowhere'), undefined)
      assert.ok(b.stats().redis.errors >= 1)
      await server.start()
      // b cannot know what was invalidated meanwhile: it drops its local tiers once resubscribed
      await eventually(() => b.get('local') === undefined, 'the flush after the restart')
      assert.equal(b.get('k'), undefined)
      assert.equal(b.stats().redis.flushes, 1)
      await subscribed(a)
      // and the tier and the bus work again (past retryMs since b's last failure)
      await sleep(150)
      b.set('again', 'x')
      await sleep(30)
      assert.equal(await a.getAsync('again'), 'x', JSON.stringify([a.stats().redis, b.stats().redis]))
      b.delete('again')
      await eventually(() => a.get('again') === undefined, 'the delete after the restart')
    } finally {
      await a.close()
      await b.close()
    }
  })
})
