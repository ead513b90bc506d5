#!/usr/bin/env node
'use strict'
// ConnectionPool beside what a user would pick instead, in one process: generic-pool (the most
// used generic pool on npm) and tarn (knex's pool). Resources are plain objects made at once, so
// the pools themselves are measured, configured alike: max 10, a 30 s acquire timeout, no
// validation on borrow.
//
//   node benches/js/pool.js [out.json] [--quick]
//
// With a path, the JSON goes there and the table to stdout; without one, the JSON goes to stdout
// and the table to stderr. Every variant runs in every round, in rotating order; figures are
// medians of the rounds after warmup. Memory per idle slot is measured in a fresh child each.
const { execFileSync } = require('node:child_process')
const { writeReport, median } = require('./common')
const genericPool = require('generic-pool')
const tarn = require('tarn')
const { ConnectionPool } = require('../..')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const outPath = args.find((a) => !a.startsWith('--'))

const WARMUP_ROUNDS = quick ? 2 : 3
const ROUNDS = quick ? 5 : 11
const OPS = quick ? 20_000 : 100_000
const CALLERS = 100
const MAX = 10
const IDLE_SLOTS = 10_000

const now = () => process.hrtime.bigint()
let sink = 0

/** The three pools, each with max `max` plain-object resources, built alike. */
function pools(max = MAX) {
  let made = 0
  const create = async () => ({ id: ++made })
  const destroy = async () => {}
  const bulwark = new ConnectionPool({ create, destroy, max, acquireTimeoutMs: 30_000 })
  const generic = genericPool.createPool({ create, destroy }, { max, min: 0, acquireTimeoutMillis: 30_000 })
  const tarnPool = new tarn.Pool({ create: (callback) => callback(null, { id: ++made }), destroy: () => {}, min: 0, max, acquireTimeoutMillis: 30_000 })
  return {
    bulwark: { acquire: () => bulwark.acquire(), release: (r) => bulwark.release(r), close: () => bulwark.close() },
    'generic-pool': { acquire: () => generic.acquire(), release: (r) => generic.release(r), close: () => generic.drain().then(() => generic.clear()) },
    tarn: { acquire: () => tarnPool.acquire().promise, release: (r) => tarnPool.release(r), close: () => tarnPool.destroy() },
  }
}

/** One caller: acquire, release, next. */
async function oneCaller(pool, ops) {
  const t0 = now()
  for (let i = 0; i < ops; i++) {
    const r = await pool.acquire()
    sink += r.id
    pool.release(r)
  }
  return { ns: Number(now() - t0) }
}

/**
 * CALLERS concurrent callers over a pool of MAX: each acquires, holds the resource over one
 * await (the smallest "query"), releases, and goes again; every acquire's wait is recorded.
 */
async function concurrent(pool, ops) {
  const perCaller = Math.ceil(ops / CALLERS)
  const waits = new Float64Array(perCaller * CALLERS)
  let w = 0
  const caller = async () => {
    for (let i = 0; i < perCaller; i++) {
      const asked = performance.now()
      const r = await pool.acquire()
      waits[w++] = performance.now() - asked
      await null
      sink += r.id
      pool.release(r)
    }
  }
  const t0 = now()
  await Promise.all(Array.from({ length: CALLERS }, caller))
  const ns = Number(now() - t0)
  waits.sort()
  return { ns, opsDone: perCaller * CALLERS, p50Ms: waits[Math.floor(waits.length * 0.5)], p99Ms: waits[Math.floor(waits.length * 0.99)] }
}

const round1 = (x) => Math.round(x * 10) / 10
const round3 = (x) => Math.round(x * 1000) / 1000

async function measure(scenario, ops) {
  const made = pools()
  const names = Object.keys(made)
  const samples = Object.fromEntries(names.map((n) => [n, []]))
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(round + j) % names.length]
      const sample = await scenario(made[name], ops)
      if (round >= WARMUP_ROUNDS) samples[name].push(sample)
    }
  }
  for (const pool of Object.values(made)) await pool.close()
  const result = {}
  for (const name of names) {
    const ns = median(samples[name].map((s) => s.ns / (s.opsDone ?? ops)))
    result[name] = { nsPerOp: round1(ns), opsPerSec: Math.round(1e9 / ns) }
    if (samples[name][0].p99Ms !== undefined) {
      result[name].p50WaitMs = round3(median(samples[name].map((s) => s.p50Ms)))
      result[name].p99WaitMs = round3(median(samples[name].map((s) => s.p99Ms)))
    }
  }
  return result
}

// ---- memory per idle slot, one fresh child per pool ------------------------------------------

async function memoryChild(name, slots) {
  const gc = () => {
    for (let i = 0; i < 4; i++) global.gc()
  }
  const resources = Array.from({ length: slots }, (_, i) => ({ id: i }))
  let next = 0
  const create = async () => resources[next++]
  const destroy = async () => {}
  gc()
  const before = process.memoryUsage().heapUsed
  // every pool fills the same way: all slots acquired at once, then all released
  let acquire
  let release
  if (name === 'bulwark') {
    const pool = new ConnectionPool({ create, destroy, max: slots, idleTimeoutMs: 0 })
    acquire = () => pool.acquire()
    release = (r) => pool.release(r)
  } else if (name === 'generic-pool') {
    const pool = genericPool.createPool({ create, destroy }, { max: slots, min: 0 })
    acquire = () => pool.acquire()
    release = (r) => pool.release(r)
  } else {
    const pool = new tarn.Pool({ create: (callback) => callback(null, resources[next++]), destroy: () => {}, min: 0, max: slots, idleTimeoutMillis: 3_600_000 })
    acquire = () => pool.acquire().promise
    release = (r) => pool.release(r)
  }
  const held = await Promise.all(Array.from({ length: slots }, acquire))
  for (const r of held) release(r)
  held.length = 0
  await new Promise((resolve) => setTimeout(resolve, 50))
  gc()
  const after = process.memoryUsage().heapUsed
  sink += typeof acquire === 'function' ? 1 : 0
  process.stdout.write(JSON.stringify({ bytesPerSlot: (after - before) / slots }))
  process.exit(0)
}

function memory() {
  const out = {}
  for (const name of ['bulwark', 'generic-pool', 'tarn']) {
    const json = execFileSync(process.execPath, ['--expose-gc', __filename, `--child=${name}`], { encoding: 'utf8' })
    out[name] = { bytesPerSlot: Math.round(JSON.parse(json).bytesPerSlot) }
  }
  return out
}

async function main() {
  const child = args.find((a) => a.startsWith('--child='))
  if (child) return memoryChild(child.slice('--child='.length), IDLE_SLOTS)

  const single = await measure(oneCaller, OPS)
  const many = await measure(concurrent, OPS)
  const mem = memory()
  const vs = (table, peer) => table.bulwark.opsPerSec / table[peer].opsPerSec
  const target = (value, min) => ({ value: Math.round(value * 100) / 100, target: min, kind: 'min', met: value >= min })
  const report = {
    bench: 'pool',
    date: new Date().toISOString(),
    node: process.version,
    quick,
    rounds: ROUNDS,
    warmupRounds: WARMUP_ROUNDS,
    opsPerRound: OPS,
    callers: CALLERS,
    max: MAX,
    idleSlots: IDLE_SLOTS,
    scenarios: { oneCaller: single, concurrent: many },
    memory: mem,
    targets: {
      oneCallerVsGenericPool: target(vs(single, 'generic-pool'), 1),
      concurrentVsGenericPool: target(vs(many, 'generic-pool'), 1),
      concurrentVsTarn: target(vs(many, 'tarn'), 1),
    },
  }
  const lines = ['ConnectionPool beside generic-pool and tarn', '']
  for (const [title, table] of [['acquire + release, one caller', single], [`acquire + release, ${CALLERS} callers over max ${MAX}`, many]]) {
    lines.push(title)
    for (const [name, x] of Object.entries(table)) {
      const waits = x.p99WaitMs === undefined ? '' : `  wait p50 ${x.p50WaitMs} ms, p99 ${x.p99WaitMs} ms`
      lines.push(`  ${name.padEnd(14)} ${String(x.nsPerOp).padStart(8)} ns/op ${String(x.opsPerSec).padStart(10)} ops/s  ${(x.opsPerSec / table.bulwark.opsPerSec).toFixed(2)}x bulwark${waits}`)
    }
  }
  lines.push(`memory per idle slot (${IDLE_SLOTS} idle resources, V8 heap, resources themselves excluded)`)
  for (const [name, x] of Object.entries(mem)) lines.push(`  ${name.padEnd(14)} ${x.bytesPerSlot} bytes`)
  writeReport(outPath, report, lines)
  if (sink === 0.5) console.log(sink)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
