'use strict'
// The Loader beside DataLoader: the same calls give the same batches and the same results (the
// reference is DataLoader itself, run on the same script), per-key errors, wrong-length batch
// results, options, the bounded memo and batch statistics.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const DataLoader = require('dataloader')
const { QueryOptimizer, Loader, codes } = require('..')

/** Runs `script(loader)` with a loader made by `make(batchFn, options)`; returns the batches seen and the outcome. */
async function run(make, script, options) {
  const batches = []
  const batchFn = async (keys) => {
    batches.push([...keys])
    return keys.map((k) => (typeof k === 'number' && k < 0 ? new Error(`bad key ${k}`) : `v${typeof k === 'object' ? k.id : k}`))
  }
  const loader = make(batchFn, options)
  const outcome = await script(loader)
  return { batches, outcome }
}

const makers = {
  DataLoader: (fn, options) => new DataLoader(fn, options),
  Loader: (fn, options) => new Loader(fn, options),
}

async function same(script, options) {
  const reference = await run(makers.DataLoader, script, options)
  const ours = await run(makers.Loader, script, options)
  assert.deepEqual(ours, reference)
  return ours
}

const settle = (p) => p.then((v) => ({ ok: v }), (e) => ({ error: e.message }))

test('keys asked within one tick form one batch, duplicates loaded once, as DataLoader does', async () => {
  const { batches } = await same(async (l) => {
    const first = await Promise.all([l.load(1), l.load(2), l.load(1), l.load(3)])
    const second = await Promise.all([l.load(3), l.load(4)])
    return [first, second]
  })
  assert.deepEqual(batches, [[1, 2, 3], [4]])
})

test('per-key errors reject only that key; loadMany returns errors in place', async () => {
  await same(async (l) => {
    const results = await Promise.all([settle(l.load(1)), settle(l.load(-1)), settle(l.load(2))])
    const many = (await l.loadMany([5, -2, 6])).map((x) => (x instanceof Error ? `error: ${x.message}` : x))
    return { results, many }
  })
})

test('maxBatchSize, batch: false, cache: false, cacheKeyFn, prime, clear, clearAll behave as DataLoader', async () => {
  await same(async (l) => Promise.all([1, 2, 3, 4, 5].map((k) => l.load(k))), { maxBatchSize: 2 })
  await same(async (l) => Promise.all([1, 2, 2].map((k) => l.load(k))), { batch: false })
  await same(async (l) => Promise.all([1, 1, 1].map((k) => l.load(k))), { cache: false })
  await same(async (l) => Promise.all([{ id: 1 }, { id: 1 }, { id: 2 }].map((k) => l.load(k))), { cacheKeyFn: (k) => k.id })
  await same(async (l) => {
    l.prime(1, 'primed').prime(2, new Error('primed error'))
    const a = await Promise.all([settle(l.load(1)), settle(l.load(2)), settle(l.load(3))])
    l.clear(1).clear(3)
    const b = await Promise.all([l.load(1), l.load(3)])
    l.clearAll()
    const c = await l.load(1)
    return { a, b, c }
  })
  const order = []
  await same(async (l) => Promise.all([l.load(1), l.load(2)]), {
    batchScheduleFn: (fn) => {
      order.push('scheduled')
      setTimeout(fn, 1)
    },
  })
  assert.deepEqual(order, ['scheduled', 'scheduled'])
})

test('several loaders: batches dispatch and settle in the order DataLoader gives, around promise jobs and ticks', async () => {
  /** The log of batches and settled loads of a script over three loaders made by `Make`. */
  async function log(Make) {
    const events = []
    const make = (name, options) => new Make(async (keys) => {
      events.push(`batch ${name} [${keys}]`)
      // a batch function that loads from another loader while it runs
      if (name === 'a' && keys.includes(9)) events.push(`nested ${await other.load(99)}`)
      return keys.map((k) => `${name}${k}`)
    }, options)
    const a = make('a')
    const b = make('b')
    const c = make('c', { batchScheduleFn: (fn) => setTimeout(fn, 0) })
    const other = make('o')
    const track = (p) => p.then((v) => events.push(`got ${v}`))
    const loads = [track(a.load(1)), track(b.load(1)), track(c.load(1))]
    process.nextTick(() => loads.push(track(b.load(2))))
    Promise.resolve().then(() => loads.push(track(a.load(2))))
    await null
    loads.push(track(a.load(3)), track(c.load(2)))
    await new Promise((resolve) => setTimeout(resolve, 5))
    loads.push(track(b.load(3)), track(a.load(9)))
    await new Promise((resolve) => setTimeout(resolve, 5))
    await Promise.all(loads)
    return events
  }
  const reference = await log(DataLoader)
  assert.deepEqual(await log(Loader), reference)
  assert.ok(reference.includes('nested o99'))
})

test('a batch function whose values cannot be read, or whose thenable throws, rejects the batch', async () => {
  const badValue = new Loader(async (keys) => {
    const values = keys.map((k) => k)
    Object.defineProperty(values, 1, { get() { throw new Error('unreadable value') } })
    return values
  })
  const results = await Promise.all([settle(badValue.load(1)), settle(badValue.load(2))])
  assert.deepEqual(results, [{ ok: 1 }, { error: 'unreadable value' }])
  const badThen = new Loader(() => ({ then() { throw new Error('then threw') } }))
  assert.deepEqual(await settle(badThen.load(1)), { error: 'then threw' })
  assert.equal(badThen.stats().failedBatches, 1)
})

test('a batch function with the wrong number of values rejects the batch with a clear error, and caches nothing', async () => {
  let calls = 0
  const loader = new Loader(async (keys) => {
    calls++
    return calls === 1 ? keys.slice(1) : keys.map((k) => k * 10)
  })
  const results = await Promise.all([settle(loader.load(1)), settle(loader.load(2))])
  for (const r of results) assert.match(r.error, /returned 1 values for 2 keys: it must return exactly one value \(or Error\) per key/)
  assert.equal(await loader.load(1), 10)
  assert.equal(loader.stats().failedBatches, 1)
})

test('a batch function that throws, rejects or returns no promise rejects the batch, never the process', async () => {
  const thrown = new Loader(() => { throw new Error('sync throw') })
  assert.match((await settle(thrown.load(1))).error, /sync throw/)
  const rejected = new Loader(async () => { throw new Error('rejected') })
  assert.match((await settle(rejected.load(1))).error, /rejected/)
  const plain = new Loader((keys) => keys)
  assert.match((await settle(plain.load(1))).error, /must return a promise/)
  const notArray = new Loader(async () => 'nope')
  assert.match((await settle(notArray.load(1))).error, /resolve to an array/)
})

test('maxCacheSize bounds the memo; stats count batches and keys', async () => {
  let loads = 0
  const loader = new QueryOptimizer().loader(async (keys) => {
    loads += keys.length
    return keys
  }, { maxCacheSize: 2, name: 'users' })
  assert.equal(loader.name, 'users')
  await Promise.all([1, 2, 3].map((k) => loader.load(k)))
  assert.equal(loader.stats().cacheSize, 2)
  await loader.load(3) // cached
  await loader.load(1) // evicted: loaded again
  assert.equal(loads, 4)
  assert.deepEqual(loader.stats(), { batches: 2, keys: 4, meanKeysPerBatch: 2, maxKeysPerBatch: 3, failedBatches: 0, cacheSize: 2 })
})

test('bad arguments and options', () => {
  const check = (fn, Kind, code, fragment) => assert.throws(fn, (e) => e instanceof Kind && e.code === code && e.message.includes(fragment))
  check(() => new Loader(), TypeError, codes.INVALID_ARGUMENT, 'batchFn must be a function')
  check(() => new Loader(async (k) => k, { maxBatchSize: 0 }), RangeError, codes.INVALID_OPTION, 'options.maxBatchSize')
  check(() => new Loader(async (k) => k, { cacheMap: {} }), TypeError, codes.INVALID_OPTION, 'options.cacheMap')
  check(() => new Loader(async (k) => k, { maxCacheSize: 2, cacheMap: { get() {}, set() {}, delete() {}, clear() {} } }), TypeError, codes.INVALID_OPTION, 'options.maxCacheSize')
  check(() => new Loader(async (k) => k, { bogus: 1 }), TypeError, codes.INVALID_OPTION, 'unknown option "bogus"')
  const loader = new Loader(async (k) => k)
  check(() => loader.load(undefined), TypeError, codes.INVALID_ARGUMENT, 'must be called with a key')
  check(() => loader.loadMany(5), TypeError, codes.INVALID_ARGUMENT, 'array of keys')
})
