#!/usr/bin/env node
'use strict'
// The Redis-backed blocks beside what a user would pick instead, in one process, on the Redis
// at REDIS_URL (default redis://127.0.0.1:6379):
//
// - RateLimiter `consume` with `store: { redis }` beside rate-limiter-flexible's
//   RateLimiterRedis on ioredis (as configured by default, and with ioredis's auto-pipelining),
//   100 concurrent callers over 10,000 keys, every request admitted (so every one is a script
//   run in Redis); throughput and the latency of each call (p50, p99);
// - the refusal of a key this process already knows is refused (the local refusal cache): no
//   round trip;
// - PersistentCache with `redis`: how long an invalidation made in this process takes to be seen
//   by another process (p50/p99), and `getAsync` answered by the Redis tier beside keyv with
//   @keyv/redis, 100 concurrent callers.
//
//   node benches/js/redis.js [out.json] [--quick]
//
// With a path, the JSON goes there and the table to stdout; without one, the JSON goes to stdout
// and the table to stderr. Variants run in rotating order within each round; figures are
// medians of the rounds after warmup.
const fs = require('node:fs')
const path = require('node:path')
const Redis = require('ioredis')
const { RateLimiterRedis } = require('rate-limiter-flexible')
const { loadedAddon, writeReport, median } = require('./common')
const { fork } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const { Keyv } = require('keyv')
const KeyvRedis = require('@keyv/redis').default
const { RateLimiter, PersistentCache } = require('../..')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const outPath = args.find((a) => !a.startsWith('--'))
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'

const WARMUP_ROUNDS = quick ? 1 : 2
const ROUNDS = quick ? 3 : 7
const OPS = quick ? 10_000 : 30_000
const CALLERS = 100
const KEYS = 10_000
const PREFIX = `bulwark-bench:${process.pid}:`

const now = () => process.hrtime.bigint()
const round1 = (x) => Math.round(x * 10) / 10
let sink = 0

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

/**
 * `ops` calls made by CALLERS concurrent callers, each awaiting its call before the next; returns
 * the elapsed time and every call's latency (ns).
 */
async function concurrent(ops, call) {
  const latencies = new Float64Array(ops)
  let next = 0
  let keyAt = Math.floor(Math.random() * KEYS)
  async function caller() {
    while (next < ops) {
      const i = next++
      const key = `k${keyAt++ % KEYS}`
      const t0 = now()
      sink += await call(key)
      latencies[i] = Number(now() - t0)
    }
  }
  const t0 = now()
  await Promise.all(Array.from({ length: CALLERS }, caller))
  return { ns: Number(now() - t0), latencies }
}

async function measure(table, ops) {
  const names = Object.keys(table)
  const samples = Object.fromEntries(names.map((n) => [n, { nsPerOp: [], p50: [], p99: [] }]))
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(round + j) % names.length]
      progress(`${name}, round ${round}`)
      const { ns, latencies } = await table[name](ops)
      if (round < WARMUP_ROUNDS) continue
      samples[name].nsPerOp.push(ns / ops)
      if (latencies) {
        const sorted = Array.from(latencies).sort((a, b) => a - b)
        samples[name].p50.push(percentile(sorted, 0.5))
        samples[name].p99.push(percentile(sorted, 0.99))
      }
    }
  }
  const result = {}
  for (const name of names) {
    const s = samples[name]
    const ns = median(s.nsPerOp)
    result[name] = {
      nsPerOp: round1(ns),
      opsPerSec: Math.round(1e9 / ns),
      p50Us: s.p50.length ? round1(median(s.p50) / 1e3) : null,
      p99Us: s.p99.length ? round1(median(s.p99) / 1e3) : null,
    }
  }
  return result
}

async function limiterPart(client, autoPipelined) {
  // every request admitted: capacity far above what a run takes from one key
  const capacity = 1e9
  const bulwark = new RateLimiter({ capacity, refillPerSecond: 1e6, store: { redis: { url: REDIS_URL, keyPrefix: `${PREFIX}bulwark:` } } })
  stuckDetail = () => JSON.stringify(bulwark.stats().store)
  const rlf = new RateLimiterRedis({ storeClient: client, points: capacity, duration: 3600, keyPrefix: `${PREFIX}rlf` })
  const rlfPipelined = new RateLimiterRedis({ storeClient: autoPipelined, points: capacity, duration: 3600, keyPrefix: `${PREFIX}rlfp` })
  const table = {
    'bulwark consume (Redis store)': (ops) => concurrent(ops, async (key) => ((await bulwark.consume(key)).allowed ? 1 : 0)),
    'rlf RateLimiterRedis consume (ioredis)': (ops) => concurrent(ops, async (key) => (await rlf.consume(key)).remainingPoints),
    'rlf RateLimiterRedis consume (ioredis, enableAutoPipelining)': (ops) => concurrent(ops, async (key) => (await rlfPipelined.consume(key)).remainingPoints),
  }
  const results = await measure(table, OPS)
  const store = bulwark.stats().store
  bulwark.close()
  return { results, store }
}

async function refusalPart() {
  const limiter = new RateLimiter({ capacity: 1, refillPerSecond: 0.001, store: { redis: { url: REDIS_URL, keyPrefix: `${PREFIX}refused:` } } })
  await limiter.consume('refused')
  const first = await limiter.consume('refused')
  if (first.allowed) throw new Error('the key was not refused')
  const submit = limiter._remoteFastPath().submit
  const before = limiter.stats().store
  const ops = OPS * 3
  const started = Date.now()
  // a refusal is repeated locally for at most a second: each round first renews it (one
  // round trip), so the timed loop never outlives it (the bare decision would then queue)
  const renew = async () => {
    if ((await limiter.consume('refused')).allowed) throw new Error('the key was admitted')
  }
  const table = {
    'consume of a refused key, awaited': async (n) => {
      await renew()
      const t0 = now()
      for (let i = 0; i < n; i++) sink += (await limiter.consume('refused')).retryAfterMs
      return { ns: Number(now() - t0) }
    },
    'the decision alone (the native call, no promise)': async (n) => {
      await renew()
      const t0 = now()
      for (let i = 0; i < n; i++) {
        if (submit('refused') !== 0) throw new Error('the refusal was not local')
      }
      return { ns: Number(now() - t0) }
    },
  }
  const results = await measure(table, ops)
  const after = limiter.stats().store
  limiter.close()
  // each round renewed the refusal with one round trip
  return { results, seconds: (Date.now() - started) / 1000, roundTripsDuring: after.roundTrips - before.roundTrips, localRefusals: after.localRefusals - before.localRefusals }
}

/** Invalidations made here, seen by a cache in another process: the delay, per invalidation. */
async function invalidationPart() {
  const keyPrefix = `${PREFIX}inv:`
  const cache = new PersistentCache({ maxEntries: 10_000, redis: { url: REDIS_URL, keyPrefix } })
  const peer = fork(path.join(__dirname, 'redis-cache-peer.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, REDIS_URL, PEER_PREFIX: keyPrefix } })
  const next = (field) => new Promise((resolve, reject) => {
    const on = (m) => {
      if (m.error) reject(new Error(m.error))
      else if (m[field] !== undefined) {
        peer.off('message', on)
        resolve(m)
      }
    }
    peer.on('message', on)
  })
  await next('ready')
  while (!cache.stats().redis.subscribed) await new Promise((resolve) => setTimeout(resolve, 5))
  const count = quick ? 100 : 400
  const delays = []
  for (let i = 0; i < count; i++) {
    progress(`invalidation ${i}`)
    const key = `k${i}`
    cache.set(key, { i, payload: 'x'.repeat(100) })
    await new Promise((resolve) => setTimeout(resolve, 2)) // the write-through goes first
    const filled = next('filled')
    peer.send({ op: 'fill', key })
    await filled
    const seen = next('seen')
    const t0 = performance.timeOrigin + performance.now()
    cache.delete(key)
    const { at } = await seen
    delays.push(at - t0)
  }
  peer.send({ op: 'exit' })
  await cache.close()
  const sorted = delays.sort((a, b) => a - b)
  const ms = (x) => Math.round(x * 100) / 100
  return { count, p50Ms: ms(percentile(sorted, 0.5)), p99Ms: ms(percentile(sorted, 0.99)), maxMs: ms(sorted[sorted.length - 1]) }
}

/** getAsync answered by the Redis tier beside keyv with @keyv/redis, over 10,000 keys. */
async function sharedTierPart() {
  const keyPrefix = `${PREFIX}tier:`
  const value = { id: 1, name: 'a report row', tags: ['a', 'b', 'c'], total: 12345.67, text: 'y'.repeat(120) }
  // one instance writes every key through; the measured one holds 100 entries locally, so
  // nearly every lookup goes to Redis
  const writer = new PersistentCache({ maxEntries: KEYS, redis: { url: REDIS_URL, keyPrefix } })
  const reader = new PersistentCache({ maxEntries: 100, redis: { url: REDIS_URL, keyPrefix } })
  const store = new KeyvRedis(REDIS_URL)
  const keyv = new Keyv({ store, namespace: `${PREFIX}keyv` })
  for (let i = 0; i < KEYS; i++) {
    writer.set(`k${i}`, value)
    await keyv.set(`k${i}`, value)
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
  const table = {
    'bulwark getAsync (Redis tier, 100 local entries)': (ops) => concurrent(ops, async (key) => ((await reader.getAsync(key)).id)),
    'keyv get (@keyv/redis)': (ops) => concurrent(ops, async (key) => ((await keyv.get(key)).id)),
  }
  const results = await measure(table, OPS)
  const stats = reader.stats().redis
  await writer.close()
  await reader.close()
  await store.disconnect()
  return { results, reader: stats }
}

async function cleanup(client) {
  progress('cleanup')
  // the limiter's keys carry the client key in a hash tag before or after the prefix, so one
  // pattern with the prefix anywhere finds every key of the run
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `*${PREFIX}*`, 'COUNT', 1000)
    if (keys.length) await client.del(...keys)
    cursor = next
  } while (cursor !== '0')
}

/** Fails the run (instead of hanging) when a phase makes no progress for a minute. */
let stuckDetail = () => ''
let phase = 'start'
let lastProgress = Date.now()
const progress = (name) => {
  phase = name
  lastProgress = Date.now()
}
const watchdog = setInterval(() => {
  if (Date.now() - lastProgress > 60_000) {
    const threads = fs.readdirSync('/proc/self/task').map((t) => {
      try {
        return fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim()
      } catch {
        return '?'
      }
    })
    console.error(`benches/js/redis.js: no progress for 60 s in ${phase}; threads: ${threads.join(',')}; ${stuckDetail()}`)
    process.exit(2)
  }
}, 5_000)
watchdog.unref()

async function main() {
  const addon = loadedAddon()
  if (addon.build === 'debug' && !args.includes('--allow-debug')) {
    console.error(`benches/js/redis.js: ${addon.file} is a debug build; build with \`node scripts/build.js --release\` (or pass --allow-debug)`)
    process.exit(1)
  }
  const client = new Redis(REDIS_URL)
  const autoPipelined = new Redis(REDIS_URL, { enableAutoPipelining: true })
  await Promise.all([client.ping(), autoPipelined.ping()])
  try {
    const limiter = await limiterPart(client, autoPipelined)
    const refusal = await refusalPart()
    const invalidation = await invalidationPart()
    const tier = await sharedTierPart()
    const bulwarkTier = tier.results['bulwark getAsync (Redis tier, 100 local entries)']
    const keyvTier = tier.results['keyv get (@keyv/redis)']
    const tierVsKeyv = bulwarkTier.opsPerSec / keyvTier.opsPerSec
    const b = limiter.results['bulwark consume (Redis store)']
    const rlfNames = Object.keys(limiter.results).filter((n) => n.startsWith('rlf'))
    const bestRlf = rlfNames.reduce((best, n) => (limiter.results[n].opsPerSec > limiter.results[best].opsPerSec ? n : best))
    const vsDefault = b.opsPerSec / limiter.results['rlf RateLimiterRedis consume (ioredis)'].opsPerSec
    const vsBest = b.opsPerSec / limiter.results[bestRlf].opsPerSec
    const refusalNs = refusal.results['consume of a refused key, awaited'].nsPerOp
    const report = {
      addon,
      redis: REDIS_URL,
      rounds: ROUNDS,
      warmupRounds: WARMUP_ROUNDS,
      opsPerRound: OPS,
      callers: CALLERS,
      keys: KEYS,
      limiter: { results: limiter.results, store: limiter.store, bestRlf },
      refusal,
      invalidation,
      tier,
      targets: {
        invalidationP99Ms: { value: invalidation.p99Ms, target: 50, kind: 'max', met: invalidation.p99Ms <= 50 },
        getAsyncVsKeyv: { value: Math.round(tierVsKeyv * 100) / 100, target: 1, kind: 'min', met: tierVsKeyv >= 1 },
        consumeVsRlf: { value: Math.round(vsDefault * 100) / 100, target: 1.5, kind: 'min', met: vsDefault >= 1.5 },
        consumeVsBestRlf: { value: Math.round(vsBest * 100) / 100, target: 1.5, kind: 'min', met: vsBest >= 1.5 },
        localRefusalNs: { value: refusalNs, target: 1000, kind: 'max', met: refusalNs <= 1000 && refusal.roundTripsDuring <= 2 * (WARMUP_ROUNDS + ROUNDS) },
      },
    }
    const pad = (s, n) => String(s).padEnd(n)
    const lines = [
      `RateLimiter consume through Redis, ${CALLERS} concurrent callers, ${KEYS} keys, all admitted (${ROUNDS} rounds of ${OPS})`,
      `${pad('variant', 62)}${pad('ops/s', 12)}${pad('p50 µs', 10)}p99 µs`,
      ...Object.entries(limiter.results).map(([n, x]) => `${pad(n, 62)}${pad(x.opsPerSec.toLocaleString('en-US'), 12)}${pad(x.p50Us, 10)}${x.p99Us}`),
      `  bulwark: ${limiter.store.batches} batches sent in ${limiter.store.roundTrips} round trips (${limiter.store.commands} script calls)`,
      '',
      'refusal of a key known refused (no round trip)',
      ...Object.entries(refusal.results).map(([n, x]) => `${pad(n, 62)}${pad(x.nsPerOp + ' ns', 12)}`),
      `  ${refusal.localRefusals.toLocaleString('en-US')} local refusals and ${refusal.roundTripsDuring} round trips in ${refusal.seconds.toFixed(1)} s (one per round, to renew the refusal)`,
      '',
      `consume vs rlf (ioredis default)      ${report.targets.consumeVsRlf.value}x  target >= 1.5  ${report.targets.consumeVsRlf.met ? 'met' : 'NOT met'}`,
      `consume vs rlf (best: ${bestRlf.replace('rlf RateLimiterRedis consume ', '')})  ${report.targets.consumeVsBestRlf.value}x`,
      `local refusal                          ${refusalNs} ns  target <= 1000  ${report.targets.localRefusalNs.met ? 'met' : 'NOT met'}`,
      '',
      `PersistentCache invalidation seen by another process (${invalidation.count}): p50 ${invalidation.p50Ms} ms, p99 ${invalidation.p99Ms} ms, max ${invalidation.maxMs} ms  target p99 <= 50 ms  ${report.targets.invalidationP99Ms.met ? 'met' : 'NOT met'}`,
      '',
      `getAsync answered by the Redis tier, ${CALLERS} concurrent callers, ${KEYS} keys`,
      ...Object.entries(tier.results).map(([n, x]) => `${pad(n, 62)}${pad(x.opsPerSec.toLocaleString('en-US'), 12)}${pad(x.p50Us, 10)}${x.p99Us}`),
      `  bulwark reader: ${tier.reader.hits} Redis hits, ${tier.reader.roundTrips} round trips`,
      `getAsync vs keyv                      ${report.targets.getAsyncVsKeyv.value}x  target >= 1  ${report.targets.getAsyncVsKeyv.met ? 'met' : 'NOT met'}`,
    ]
    writeReport(outPath, report, lines)
  } finally {
    await cleanup(client)
    client.disconnect()
    autoPipelined.disconnect()
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
