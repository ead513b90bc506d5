#!/usr/bin/env node
'use strict'
// CircuitBreaker beside what a user would pick instead, in one process: opossum (the most used
// breaker on npm) and cockatiel (a policy library whose breaker is lean), configured alike: a
// failure-rate window of 10 s, 50 %, no per-call timeout (each library's timeout is a separate
// timer per call, measured apart below).
//
//   node benches/js/breaker.js [out.json] [--quick]
//
// With a path, the JSON goes there and the table to stdout; without one, the JSON goes to stdout
// and the table to stderr. Every variant runs in every round, in rotating order, so drift on a
// noisy machine spreads over all of them; figures are medians of the rounds after warmup.
const { loadedAddon, writeReport, median } = require('./common')
const Opossum = require('opossum')
const cockatiel = require('cockatiel')
const { CircuitBreaker, BreakerOpenError } = require('../..')
const binding = require('../../binding.js')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const outPath = args.find((a) => !a.startsWith('--'))

const WARMUP_ROUNDS = quick ? 2 : 3
const ROUNDS = quick ? 5 : 11
const OPS = quick ? 20_000 : 100_000
const BATCH = 100

const now = () => process.hrtime.bigint()
const noop = () => {}
const resolved = async () => 1
const failing = async () => {
  throw new Error('down')
}
let sink = 0

function bulwark(options = {}) {
  return new CircuitBreaker({ failureRateThreshold: 0.5, minimumCalls: 20, windowMs: 10_000, openMs: 3_600_000, ...options })
}

function opossum(action, options = {}) {
  return new Opossum(action, {
    timeout: false,
    errorThresholdPercentage: 50,
    volumeThreshold: 20,
    rollingCountTimeout: 10_000,
    rollingCountBuckets: 10,
    resetTimeout: 3_600_000,
    ...options,
  })
}

function cockatielBreaker() {
  return cockatiel.circuitBreaker(cockatiel.handleAll, {
    halfOpenAfter: 3_600_000,
    breaker: new cockatiel.SamplingBreaker({ threshold: 0.5, duration: 10_000, minimumRps: 2 }),
  })
}

/** Two loops per variant (awaited one by one, and BATCH at once), written out for each. */
function variants(fire) {
  const table = {}
  for (const [name, call] of Object.entries(fire)) {
    table[`${name}, awaited one by one`] = async (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        try {
          sink += await call()
        } catch {
          sink--
        }
      }
      return now() - t0
    }
    table[`${name}, ${BATCH} concurrent`] = async (ops) => {
      const settled = (v) => v
      const refused = () => -1
      const t0 = now()
      for (let i = 0; i < ops; i += BATCH) {
        const batch = new Array(BATCH)
        for (let j = 0; j < BATCH; j++) batch[j] = call().then(settled, refused)
        sink += (await Promise.all(batch))[0]
      }
      return now() - t0
    }
  }
  return table
}

const round1 = (x) => Math.round(x * 10) / 10

async function measure(table, ops = OPS) {
  const names = Object.keys(table)
  const samples = Object.fromEntries(names.map((n) => [n, []]))
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(round + j) % names.length]
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

async function openAll() {
  const b = bulwark()
  for (let i = 0; i < 20; i++) await b.fire(failing).catch(noop)
  const withFallback = bulwark({ fallback: () => 0 })
  for (let i = 0; i < 20; i++) await withFallback.fire(failing).catch(noop)
  const withErrorFallback = bulwark({ fallback: (error) => (error ? 0 : 1) })
  for (let i = 0; i < 20; i++) await withErrorFallback.fire(failing).catch(noop)
  const o = opossum(resolved)
  o.open()
  const c = cockatiel.circuitBreaker(cockatiel.handleAll, { halfOpenAfter: 3_600_000, breaker: new cockatiel.ConsecutiveBreaker(1) })
  await c.execute(failing).catch(noop)
  if (b.state !== 'open' || withFallback.state !== 'open' || withErrorFallback.state !== 'open' || !o.opened || c.state !== cockatiel.CircuitState.Open) {
    throw new Error('a breaker did not open')
  }
  return { b, withFallback, withErrorFallback, o, c }
}

// What the parts cost on their own: the native decision (the `acquire` crossing) while open
// and while closed, a stack-less error, and a bare async call.
function diagnostics() {
  const closed = new binding.CircuitBreaker({ windowMs: 10_000 })._fastPath()
  const open = new binding.CircuitBreaker({ openMs: 3_600_000 })
  open._forceOpen()
  const openFast = open._fastPath()
  const table = {
    'acquire crossing, closed': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += closed.acquire()
      return now() - t0
    },
    'acquire + record crossings, closed': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        const ticket = closed.acquire()
        sink += closed.record(ticket, closed.figures[1], 0) ? 1 : 0
      }
      return now() - t0
    },
    'acquire crossing, open (the refusal decision)': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += openFast.acquire() + openFast.figures[0]
      return now() - t0
    },
    'new BreakerOpenError without a stack': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        const limit = Error.stackTraceLimit
        Error.stackTraceLimit = 0
        sink += new BreakerOpenError('breaker b is open', { retryAfterMs: i, state: 'open', breaker: 'b' }).retryAfterMs
        Error.stackTraceLimit = limit
      }
      return now() - t0
    },
    'new Error with a stack': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += new Error('down').message.length
      return now() - t0
    },
    'bare async fn, awaited': async (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += await resolved()
      return now() - t0
    },
  }
  return measure(table, OPS * 5)
}

function ratio(value, target, kind) {
  const met = kind === 'min' ? value >= target : value <= target
  return { value: Math.round(value * 100) / 100, target, kind, met }
}

async function main() {
  const addon = loadedAddon()
  if (addon.build === 'debug' && !args.includes('--allow-debug')) {
    console.error(`benches/js/breaker.js: ${addon.file} is a debug build; build with \`node scripts/build.js --release\` (or pass --allow-debug)`)
    process.exit(2)
  }

  const b = bulwark()
  const o = opossum(resolved)
  const c = cockatielBreaker()
  const closed = await measure(variants({
    'bulwark fire': () => b.fire(resolved),
    'opossum fire': () => o.fire(),
    'cockatiel execute': () => c.execute(resolved),
  }))

  const opened = await openAll()
  const open = await measure(variants({
    'bulwark fire refused': () => opened.b.fire(resolved),
    'bulwark fire with fallback': () => opened.withFallback.fire(resolved),
    'bulwark fire with fallback(error)': () => opened.withErrorFallback.fire(resolved),
    'opossum fire refused': () => opened.o.fire(),
    'cockatiel execute refused': () => opened.c.execute(resolved),
  }))

  // with a per-call timeout (bulwark: one timer per breaker; opossum: a timer per call;
  // cockatiel: a timeout policy). Cockatiel's timeout adds an abort listener per call to a signal
  // that lives as long as the policy (it prints a MaxListenersExceededWarning), so its heap grows
  // through the run; it is measured on its own afterwards, so that its garbage does not slow the
  // other two.
  const bt = bulwark({ timeoutMs: 5_000 })
  const ot = opossum(resolved, { timeout: 5_000 })
  const withTimeout = await measure(variants({
    'bulwark fire, timeoutMs': () => bt.fire(resolved),
    'opossum fire, timeout': () => ot.fire(),
  }), Math.round(OPS / 4))
  const ct = cockatiel.wrap(cockatielBreaker(), cockatiel.timeout(5_000, cockatiel.TimeoutStrategy.Cooperative))
  Object.assign(withTimeout, await measure(variants({
    'cockatiel breaker+timeout (measured apart)': () => ct.execute(resolved),
  }), Math.round(OPS / 4)))

  const diag = await diagnostics()
  for (const breaker of [o, ot, opened.o]) breaker.shutdown()

  const one = (table, name) => table[`${name}, awaited one by one`]
  const many = (table, name) => table[`${name}, ${BATCH} concurrent`]
  const refusedBatch = many(open, 'bulwark fire refused')
  const report = {
    bench: 'breaker',
    date: new Date().toISOString(),
    node: process.version,
    addon,
    quick,
    rounds: ROUNDS,
    warmupRounds: WARMUP_ROUNDS,
    opsPerRound: OPS,
    batch: BATCH,
    scenarios: { closed, open, withTimeout },
    diagnostics: diag,
    targets: {
      closedVsOpossum: ratio(one(closed, 'bulwark fire').opsPerSec / one(closed, 'opossum fire').opsPerSec, 2, 'min'),
      closedVsCockatiel: ratio(one(closed, 'bulwark fire').opsPerSec / one(closed, 'cockatiel execute').opsPerSec, 1, 'min'),
      closedVsOpossumConcurrent: ratio(many(closed, 'bulwark fire').opsPerSec / many(closed, 'opossum fire').opsPerSec, 2, 'min'),
      closedVsCockatielConcurrent: ratio(many(closed, 'bulwark fire').opsPerSec / many(closed, 'cockatiel execute').opsPerSec, 1, 'min'),
      refusalWithFallbackNs: ratio(one(open, 'bulwark fire with fallback').nsPerOp, 300, 'max'),
      refusalRejectingNs: ratio(refusedBatch.nsPerOp, 300, 'max'),
      refusalDecisionNs: ratio(diag['acquire crossing, open (the refusal decision)'].nsPerOp, 300, 'max'),
    },
    // no target was set for these; for the record
    ratios: {
      withTimeoutVsOpossum: Math.round(100 * one(withTimeout, 'bulwark fire, timeoutMs').opsPerSec / one(withTimeout, 'opossum fire, timeout').opsPerSec) / 100,
      withTimeoutVsOpossumConcurrent: Math.round(100 * many(withTimeout, 'bulwark fire, timeoutMs').opsPerSec / many(withTimeout, 'opossum fire, timeout').opsPerSec) / 100,
      refusalVsOpossum: Math.round(100 * refusedBatch.opsPerSec / many(open, 'opossum fire refused').opsPerSec) / 100,
    },
    sink: Number.isFinite(sink) ? 'ok' : String(sink),
  }

  const lines = []
  const row = (cells) => lines.push(cells.map((c, i) => (i === 0 ? String(c).padEnd(52) : String(c).padStart(12))).join(''))
  for (const [label, result] of [['closed, resolved async fn', closed], ['open (refusals)', open], ['closed, with a 5 s timeout per call', withTimeout], ['what the parts cost', diag]]) {
    lines.push('', label)
    row(['variant', 'ns/op', 'ops/s', 'min ns', 'max ns'])
    for (const [name, r] of Object.entries(result)) row([name, r.nsPerOp, r.opsPerSec.toLocaleString('en-US'), r.minNsPerOp, r.maxNsPerOp])
  }
  lines.push('')
  for (const [name, r] of Object.entries(report.targets)) {
    lines.push(`${name.padEnd(28)} ${String(r.value).padStart(8)}  target ${r.kind === 'min' ? '>=' : '<='} ${r.target}  ${r.met ? 'met' : 'MISSED'}`)
  }
  for (const [name, value] of Object.entries(report.ratios)) lines.push(`${name.padEnd(28)} ${String(value).padStart(8)}`)
  writeReport(outPath, report, lines)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
