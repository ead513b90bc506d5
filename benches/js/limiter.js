#!/usr/bin/env node
'use strict'
// RateLimiter beside what a user would pick instead, in one process, over 10,000 distinct keys:
// rate-limiter-flexible's RateLimiterMemory (promise-based) and a 20-line pure-JS Map token
// bucket (the floor: what the crossing into Rust has to compete with).
//
//   node benches/js/limiter.js [out.json] [--quick]
//
// With a path, the JSON goes there and the table to stdout; without one, the JSON goes to stdout
// and the table to stderr. Every variant runs in every round, in rotating order, so drift on a
// noisy machine spreads over all of them; figures are medians of the rounds after warmup.
const { loadedAddon, writeReport, median } = require('./common')
const { RateLimiterMemory } = require('rate-limiter-flexible')
const { RateLimiter } = require('../..')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const outPath = args.find((a) => !a.startsWith('--'))

const KEYS = 10_000
const WARMUP_ROUNDS = quick ? 2 : 3
const ROUNDS = quick ? 5 : 11
const SYNC_OPS = quick ? 50_000 : 200_000
const ASYNC_OPS = quick ? 20_000 : 100_000
const BATCH = 100
// Limits no request in the run can exhaust (the allowed path), and limits one request exhausts
// for an hour (the refused path).
const ROOMY = { capacity: 1e9, refillPerSecond: 1e6 }
const TIGHT = { capacity: 1, refillPerSecond: 1 / 3600 }

const keys = Array.from({ length: KEYS }, (_, i) => `user-${i}`)
const now = () => process.hrtime.bigint()

// The floor: a token bucket per key in a Map, refilled by elapsed time; same return encoding as
// tryConsume (tokens left when allowed, minus the ms to wait when refused).
class JsTokenBucket {
  constructor({ capacity, refillPerSecond }) {
    this.capacity = capacity
    this.perMs = refillPerSecond / 1000
    this.buckets = new Map()
  }

  tryConsume(key, cost = 1) {
    const t = performance.now()
    let b = this.buckets.get(key)
    if (b === undefined) {
      b = { tokens: this.capacity, last: t }
      this.buckets.set(key, b)
    } else {
      b.tokens = Math.min(this.capacity, b.tokens + (t - b.last) * this.perMs)
      b.last = t
    }
    if (b.tokens < cost) return -Math.max(1, Math.ceil((cost - b.tokens) / this.perMs))
    b.tokens -= cost
    return Math.floor(b.tokens)
  }
}

/** A limiter of each kind with `limits`, for one scenario. */
function makeSet(limits) {
  return {
    bulwark: new RateLimiter({ ...limits, maxKeys: 100_000 }),
    floor: new JsTokenBucket(limits),
    rlf: new RateLimiterMemory({ points: limits.capacity, duration: Math.ceil(limits.capacity / limits.refillPerSecond) }),
  }
}

let sink = 0

// One loop per variant, written out, so each call site stays monomorphic as it would in an app.
// `pick(i)` chooses the limiter set of op i: always the roomy one, or alternating roomy/tight.
function variants(pick) {
  return {
    'bulwark tryConsume': (ops) => {
      let k = 0
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        sink += pick(i).bulwark.tryConsume(keys[k])
        if (++k === KEYS) k = 0
      }
      return now() - t0
    },
    'bulwark check': (ops) => {
      let k = 0
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        sink += pick(i).bulwark.check(keys[k]).remaining
        if (++k === KEYS) k = 0
      }
      return now() - t0
    },
    'JS Map token bucket (floor)': (ops) => {
      let k = 0
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        sink += pick(i).floor.tryConsume(keys[k])
        if (++k === KEYS) k = 0
      }
      return now() - t0
    },
    'rlf consume, awaited one by one': async (ops) => {
      let k = 0
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        try {
          sink += (await pick(i).rlf.consume(keys[k])).remainingPoints
        } catch (refused) {
          sink -= refused.msBeforeNext
        }
        if (++k === KEYS) k = 0
      }
      return now() - t0
    },
    [`rlf consume, ${BATCH} concurrent`]: async (ops) => {
      let k = 0
      const settled = (r) => r.remainingPoints
      const refused = (r) => -r.msBeforeNext
      const t0 = now()
      for (let i = 0; i < ops; i += BATCH) {
        const batch = new Array(BATCH)
        for (let j = 0; j < BATCH; j++) {
          batch[j] = pick(i + j).rlf.consume(keys[k]).then(settled, refused)
          if (++k === KEYS) k = 0
        }
        const results = await Promise.all(batch)
        sink += results[0]
      }
      return now() - t0
    },
  }
}

const round1 = (x) => Math.round(x * 10) / 10

async function measure(table) {
  const names = Object.keys(table)
  const samples = Object.fromEntries(names.map((n) => [n, []]))
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(round + j) % names.length]
      const ops = name.startsWith('rlf') ? ASYNC_OPS : SYNC_OPS
      const ns = Number(await table[name](ops))
      if (round >= WARMUP_ROUNDS) samples[name].push(ns / ops)
    }
  }
  const result = {}
  for (const name of names) {
    const ns = median(samples[name])
    result[name] = {
      nsPerOp: round1(ns),
      opsPerSec: Math.round(1e9 / ns),
      minNsPerOp: round1(Math.min(...samples[name])),
      maxNsPerOp: round1(Math.max(...samples[name])),
    }
  }
  return result
}

/** The faster of the two rlf ways, labelled with the way it was measured. */
function bestRlf(result) {
  const [name, figures] = Object.entries(result)
    .filter(([n]) => n.startsWith('rlf'))
    .sort((a, b) => a[1].nsPerOp - b[1].nsPerOp)[0]
  return { name, ...figures }
}

async function exhaust(set) {
  for (const key of keys) {
    set.bulwark.tryConsume(key)
    set.floor.tryConsume(key)
    await set.rlf.consume(key).catch(() => {})
  }
}

// What the parts cost on their own, to explain the figures: tryConsume on one key (no cache
// misses in the table), two calls through napi-rs's generated class methods (a getter with no
// argument, and `peek`, which crosses a key and returns a number), and the floor's two parts.
function diagnostics() {
  const limiter = new RateLimiter({ ...ROOMY, maxKeys: 100_000 })
  for (const key of keys) limiter.tryConsume(key)
  const map = new Map(keys.map((k) => [k, { tokens: 1, last: 0 }]))
  const table = {
    'bulwark tryConsume, one key': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += limiter.tryConsume('user-42')
      return now() - t0
    },
    'bulwark closed (napi-rs class getter)': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += limiter.closed ? 1 : 0
      return now() - t0
    },
    'bulwark peek(key) (napi-rs class method)': (ops) => {
      let k = 0
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        sink += limiter.peek(keys[k])
        if (++k === KEYS) k = 0
      }
      return now() - t0
    },
    'performance.now()': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += performance.now()
      return now() - t0
    },
    'Map.get(key) alone': (ops) => {
      let k = 0
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        sink += map.get(keys[k]).tokens
        if (++k === KEYS) k = 0
      }
      return now() - t0
    },
  }
  return measure(table)
}

function ratio(value, target, kind) {
  const met = kind === 'min' ? value >= target : value <= target
  return { value: Math.round(value * 100) / 100, target, kind, met }
}

async function main() {
  const addon = loadedAddon()
  if (addon.build === 'debug' && !args.includes('--allow-debug')) {
    console.error(`benches/js/limiter.js: ${addon.file} is a debug build; build with \`node scripts/build.js --release\` (or pass --allow-debug)`)
    process.exit(2)
  }

  const roomy = makeSet(ROOMY)
  const roomy2 = makeSet(ROOMY)
  const tight = makeSet(TIGHT)
  await exhaust(tight)

  const allowed = await measure(variants(() => roomy))
  // half the requests go to keys that are refused (their bucket is empty for the next hour)
  const halfRefused = await measure(variants((i) => (i & 1 ? tight : roomy2)))
  const diag = await diagnostics()

  const rlf = bestRlf(allowed)
  const tc = allowed['bulwark tryConsume']
  const check = allowed['bulwark check']
  const floor = allowed['JS Map token bucket (floor)']
  const report = {
    bench: 'limiter',
    date: new Date().toISOString(),
    node: process.version,
    addon,
    keys: KEYS,
    quick,
    rounds: ROUNDS,
    warmupRounds: WARMUP_ROUNDS,
    opsPerRound: { sync: SYNC_OPS, async: ASYNC_OPS },
    limits: { allowed: ROOMY, refused: TIGHT },
    scenarios: { allowed, halfRefused },
    rlfBest: { allowed: rlf, halfRefused: bestRlf(halfRefused) },
    diagnostics: diag,
    ratios: {
      tryConsumeVsRlf: ratio(tc.opsPerSec / rlf.opsPerSec, 3, 'min'),
      checkVsRlf: ratio(check.opsPerSec / rlf.opsPerSec, 1.5, 'min'),
      tryConsumeVsFloorTime: ratio(tc.nsPerOp / floor.nsPerOp, 3, 'max'),
    },
    sink: Number.isFinite(sink) ? 'ok' : String(sink),
  }

  const lines = []
  const row = (cells) => lines.push(cells.map((c, i) => (i === 0 ? String(c).padEnd(42) : String(c).padStart(12))).join(''))
  for (const [label, result] of [['10,000 keys, all allowed', allowed], ['10,000 keys, half refused', halfRefused], ['what the parts cost', diag]]) {
    lines.push('', label)
    row(['variant', 'ns/op', 'ops/s', 'min ns', 'max ns'])
    for (const [name, r] of Object.entries(result)) row([name, r.nsPerOp, r.opsPerSec.toLocaleString('en-US'), r.minNsPerOp, r.maxNsPerOp])
  }
  lines.push('', `best rlf (allowed): ${rlf.name}`)
  for (const [name, r] of Object.entries(report.ratios)) {
    lines.push(`${name.padEnd(24)} ${String(r.value).padStart(6)}  target ${r.kind === 'min' ? '>=' : '<='} ${r.target}  ${r.met ? 'met' : 'MISSED'}`)
  }
  writeReport(outPath, report, lines)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
