#!/usr/bin/env node
'use strict'
// Memory for 1,000,000 distinct keys, each measured in a fresh `node --expose-gc` child:
// a bulwark RateLimiter (state off the V8 heap, in Rust), rate-limiter-flexible's
// RateLimiterMemory, and the 20-line JS Map token bucket of benches/js/limiter.js for context.
//
//   node benches/js/memory.js [out.json] [--keys=N]
//
// The child first makes and drops as many key strings as it will insert, so that V8's young
// generation has already grown to its working size, collects garbage, and takes the baseline;
// then it inserts the keys, keeps the limiter alive, collects garbage again and measures. The
// difference is what the keys cost: RSS (everything the process holds) and, for JS libraries,
// the V8 heap.
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const { writeReport } = require('./common')

const args = process.argv.slice(2)
const option = (name) => {
  const found = args.find((a) => a.startsWith(`--${name}=`))
  return found && found.slice(name.length + 3)
}
const KEYS = Number(option('keys') || 1_000_000)
const TARGET_BYTES_PER_KEY = 120
const key = (i) => `user-${i}`

const subjects = {
  bulwark: {
    label: 'bulwark RateLimiter',
    load: () => require('../..').RateLimiter,
    async insert(RateLimiter, n) {
      const limiter = new RateLimiter({ capacity: 1e9, refillPerSecond: 1, maxKeys: 1_100_000 })
      for (let i = 0; i < n; i++) limiter.tryConsume(key(i))
      return limiter
    },
    verify(limiter) {
      const { keys, evicted } = limiter.stats()
      return { keys, evicted }
    },
  },
  rlf: {
    label: 'rate-limiter-flexible RateLimiterMemory',
    load: () => require('rate-limiter-flexible').RateLimiterMemory,
    async insert(RateLimiterMemory, n) {
      const limiter = new RateLimiterMemory({ points: 1e9, duration: 3600 })
      for (let i = 0; i < n; i += 1000) {
        const batch = []
        for (let j = i; j < Math.min(n, i + 1000); j++) batch.push(limiter.consume(key(j)))
        await Promise.all(batch)
      }
      return limiter
    },
    verify(limiter) {
      return { keys: Object.keys(limiter._memoryStorage._storage).length, evicted: 0 }
    },
  },
  floor: {
    label: 'JS Map token bucket (the floor)',
    load: () => Map,
    async insert(_, n) {
      const buckets = new Map()
      const t = performance.now()
      for (let i = 0; i < n; i++) buckets.set(key(i), { tokens: 1e9 - 1, last: t })
      return buckets
    },
    verify(buckets) {
      return { keys: buckets.size, evicted: 0 }
    },
  },
}

function settle() {
  for (let i = 0; i < 4; i++) global.gc()
  return new Promise((resolve) => setTimeout(resolve, 50)).then(() => global.gc())
}

async function child(name) {
  const subject = subjects[name]
  const lib = subject.load()
  // churn as many key strings as will be inserted, so the baseline heap has its working size
  let churn = 0
  for (let i = 0; i < KEYS; i++) churn += key(i).length
  await settle()
  const before = process.memoryUsage()
  const t0 = process.hrtime.bigint()
  const held = await subject.insert(lib, KEYS)
  const insertMs = Number(process.hrtime.bigint() - t0) / 1e6
  await settle()
  const after = process.memoryUsage()
  const verified = subject.verify(held)
  const delta = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]))
  process.stdout.write(JSON.stringify({ name, label: subject.label, keys: KEYS, verified, insertMs: Math.round(insertMs), before, after, delta, churn }))
}

function run(name) {
  const out = execFileSync(process.execPath, ['--expose-gc', __filename, `--child=${name}`, `--keys=${KEYS}`], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 120_000,
    env: process.env,
  })
  const r = JSON.parse(out)
  const perKey = (bytes) => Math.round((bytes / r.keys) * 10) / 10
  return {
    label: r.label,
    keys: r.keys,
    verified: r.verified,
    insertMs: r.insertMs,
    rssBytes: r.delta.rss,
    heapUsedBytes: r.delta.heapUsed,
    externalBytes: r.delta.external,
    bytesPerKey: { rss: perKey(r.delta.rss), heapUsed: perKey(r.delta.heapUsed), external: perKey(r.delta.external) },
    before: r.before,
    after: r.after,
  }
}

function main() {
  const outPath = args.find((a) => !a.startsWith('--'))
  const results = {}
  for (const name of Object.keys(subjects)) results[name] = run(name)

  const b = results.bulwark
  const complete = b.verified.keys === KEYS && b.verified.evicted === 0
  const report = {
    bench: 'memory',
    date: new Date().toISOString(),
    node: process.version,
    keys: KEYS,
    subjects: results,
    target: {
      bytesPerKey: TARGET_BYTES_PER_KEY,
      measured: b.bytesPerKey.rss,
      met: complete && b.bytesPerKey.rss <= TARGET_BYTES_PER_KEY,
      allKeysHeld: complete,
    },
  }

  const mb = (x) => (x / 1048576).toFixed(1)
  const lines = ['', `memory for ${KEYS.toLocaleString('en-US')} distinct keys (delta after GC, fresh process each)`]
  lines.push(`${'subject'.padEnd(42)}${'keys held'.padStart(11)}${'RSS MB'.padStart(9)}${'B/key'.padStart(8)}${'heap MB'.padStart(9)}${'B/key'.padStart(8)}${'insert ms'.padStart(11)}`)
  for (const r of Object.values(results)) {
    lines.push(`${r.label.padEnd(42)}${String(r.verified.keys).padStart(11)}${mb(r.rssBytes).padStart(9)}${String(r.bytesPerKey.rss).padStart(8)}${mb(r.heapUsedBytes).padStart(9)}${String(r.bytesPerKey.heapUsed).padStart(8)}${String(r.insertMs).padStart(11)}`)
  }
  lines.push(`bulwark bytes per key (RSS) ${b.bytesPerKey.rss}  target <= ${TARGET_BYTES_PER_KEY}  ${report.target.met ? 'met' : 'MISSED'}${complete ? '' : '  (not every key was held!)'}`)
  writeReport(outPath, report, lines)
}

const childName = option('child')
if (childName) {
  child(childName).catch((error) => {
    console.error(error)
    process.exit(1)
  })
} else {
  main()
}
