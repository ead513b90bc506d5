#!/usr/bin/env node
'use strict'
// QueryOptimizer beside what a user would pick instead, in one process, on a corpus of 210
// typical OLTP statements (benches/fixtures/oltp.sql):
//
// - fingerprint, first sight: bulwark with its cache off (every call crosses and parses) beside
//   node-sql-parser doing the fair equivalent (parse to an AST, replace every literal and
//   parameter, print it back, hash the text); statements it cannot parse cost their throw;
// - fingerprint, repeated statement: bulwark with its cache (the common case: parameterized
//   queries);
// - analyze: every rule over every statement;
// - instrument: `query()` through an instrumented no-op pg-like client beside the bare client,
//   awaited one by one (and with a tracer, as a diagnostic);
// - Loader beside DataLoader: a fresh loader per "request", loading 1 key or 100 keys.
//
//   node benches/js/query.js [out.json] [--quick]
//
// Every variant of a group runs in every round, in rotating order; figures are medians of the
// rounds after warmup.
const fs = require('node:fs')
const path = require('node:path')
const { writeReport, median } = require('./common')
const { Parser } = require('node-sql-parser')
const DataLoader = require('dataloader')
const { QueryOptimizer, Loader, DistributedTracer } = require('../..')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const outPath = args.find((a) => !a.startsWith('--'))
const WARMUP = quick ? 1 : 2
const ROUNDS = quick ? 3 : 7

const corpus = fs
  .readFileSync(path.join(__dirname, '..', 'fixtures', 'oltp.sql'), 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '' && !line.startsWith('--'))

const now = () => process.hrtime.bigint()
let sink = 0

/**
 * Runs each variant `ops` times per round, `rounds` rounds after the warmup; returns ns/op and
 * ops/s per variant (medians).
 */
async function compare(variants, ops, rounds = ROUNDS) {
  const names = Object.keys(variants)
  const samples = Object.fromEntries(names.map((n) => [n, []]))
  for (let round = 0; round < WARMUP + rounds; round++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(round + k) % names.length]
      const ns = Number(await variants[name](ops))
      if (round >= WARMUP) samples[name].push(ns / ops)
    }
  }
  const out = {}
  for (const name of names) {
    const nsPerOp = median(samples[name])
    out[name] = { nsPerOp: Math.round(nsPerOp * 10) / 10, opsPerSec: Math.round(1e9 / nsPerOp), minNsPerOp: Math.min(...samples[name]), maxNsPerOp: Math.max(...samples[name]) }
  }
  return out
}

// ---- node-sql-parser: the fair equivalent of a first-sight fingerprint -------------------------

const sqlParser = new Parser()
const LITERALS = new Set(['number', 'single_quote_string', 'string', 'bool', 'boolean', 'null', 'var', 'param', 'double_quote_string', 'natural_string', 'hex_string', 'bit_string', 'interval'])

/** Replaces every literal and parameter in an AST by `?`, iteratively. */
function normalizeAst(ast) {
  const stack = [ast]
  while (stack.length) {
    const node = stack.pop()
    if (node === null || typeof node !== 'object') continue
    if (Array.isArray(node)) {
      for (const child of node) stack.push(child)
      continue
    }
    if (LITERALS.has(node.type) && 'value' in node) {
      node.type = 'origin'
      node.value = '?'
      continue
    }
    for (const key in node) {
      const child = node[key]
      if (child !== null && typeof child === 'object') stack.push(child)
    }
  }
  return ast
}

function fnv1a(text) {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

function nodeSqlParserFingerprint(sql) {
  try {
    const ast = normalizeAst(sqlParser.astify(sql, { database: 'postgresql' }))
    return fnv1a(sqlParser.sqlify(ast, { database: 'postgresql' }))
  } catch {
    return fnv1a(sql)
  }
}

// ---- a no-op pg-like client -------------------------------------------------------------------

const RESULT = { rows: [], rowCount: 1, command: 'SELECT' }
const noopClient = {
  query(config, values) {
    return Promise.resolve(RESULT)
  },
}

async function main() {
  const report = { bench: 'query', date: new Date().toISOString(), node: process.version, corpus: corpus.length, rounds: ROUNDS, warmupRounds: WARMUP }
  const nspFailures = corpus.filter((sql) => {
    try {
      sqlParser.astify(sql, { database: 'postgresql' })
      return false
    } catch {
      return true
    }
  }).length
  report.nodeSqlParserFailures = nspFailures

  // fingerprint, first sight
  const uncached = new QueryOptimizer({ cacheSize: 0 })
  const firstOps = quick ? corpus.length * 5 : corpus.length * 20
  report.firstSight = await compare({
    'bulwark fingerprint, first sight (cache off)': async (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += uncached.fingerprint(corpus[i % corpus.length]).normalized.length
      return now() - t0
    },
    'node-sql-parser: astify, replace literals, sqlify, hash': async (ops) => {
      const n = Math.max(corpus.length, Math.floor(ops / 20))
      const t0 = now()
      for (let i = 0; i < n; i++) sink += nodeSqlParserFingerprint(corpus[i % corpus.length])
      return (now() - t0) * BigInt(Math.round(ops / n))
    },
  }, firstOps)

  // fingerprint, repeated
  const cached = new QueryOptimizer()
  for (const sql of corpus) cached.fingerprint(sql)
  const repeatOps = quick ? 200_000 : 2_000_000
  report.repeated = await compare({
    'bulwark fingerprint, repeated statement': async (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += cached.fingerprint(corpus[i % corpus.length]).fingerprint.length
      return now() - t0
    },
    'JS Map.get of the same texts (floor)': async (ops) => {
      const map = new Map(corpus.map((s) => [s, s]))
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += map.get(corpus[i % corpus.length]).length
      return now() - t0
    },
  }, repeatOps)

  // analyze
  const analyzer = new QueryOptimizer()
  report.analyze = await compare({
    'bulwark analyze': async (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) sink += analyzer.analyze(corpus[i % corpus.length]).length
      return now() - t0
    },
  }, quick ? corpus.length * 5 : corpus.length * 20)

  // instrument overhead
  const qo = new QueryOptimizer({ nPlusOne: { threshold: 5 } })
  const tracer = new DistributedTracer({ serviceName: 'bench', exporter: 'none' })
  const measured = qo.instrument(noopClient)
  const traced = qo.instrument(noopClient, { tracer })
  const queryOps = quick ? 50_000 : 300_000
  const loop = (client) => async (ops) => {
    const t0 = now()
    for (let i = 0; i < ops; i++) sink += (await client.query(corpus[i % corpus.length], [i])).rowCount
    return now() - t0
  }
  report.instrument = await compare({
    'bare no-op client': loop(noopClient),
    'instrumented (no tracer)': loop(measured),
  }, queryOps)
  report.instrumentTraced = await compare({
    'bare no-op client': loop(noopClient),
    'instrumented with a tracer, inside a request span': async (ops) => {
      let ns = 0n
      await tracer.startActiveSpan('request', async () => {
        ns = await loop(traced)(ops)
      })
      return ns
    },
  }, quick ? 20_000 : 100_000)

  // Loader vs DataLoader
  const batchFn = (keys) => Promise.resolve(keys.map((k) => k * 2))
  const loaderLoop = (make, size) => async (ops) => {
    const t0 = now()
    for (let i = 0; i < ops; i += size) {
      const loader = make()
      if (size === 1) {
        sink += await loader.load(i)
      } else {
        const promises = new Array(size)
        for (let k = 0; k < size; k++) promises[k] = loader.load(i + k)
        sink += (await Promise.all(promises)).length
      }
    }
    return now() - t0
  }
  // Two implementations of the same promise scheduling, within a few percent of each other: many
  // short rounds in alternation, so that a burst of load from other processes on the machine
  // falls in few of them and the median stays where it belongs.
  const loaderOps = quick ? 50_000 : 100_000
  const loaderRounds = quick ? ROUNDS : 3 * ROUNDS
  report.loaderRounds = loaderRounds
  report.loader1 = await compare({
    'bulwark Loader, batches of 1': loaderLoop(() => new Loader(batchFn), 1),
    'DataLoader, batches of 1': loaderLoop(() => new DataLoader(batchFn), 1),
  }, loaderOps / 5, loaderRounds)
  report.loader100 = await compare({
    'bulwark Loader, batches of 100': loaderLoop(() => new Loader(batchFn), 100),
    'DataLoader, batches of 100': loaderLoop(() => new DataLoader(batchFn), 100),
  }, loaderOps, loaderRounds)

  const first = report.firstSight['bulwark fingerprint, first sight (cache off)']
  const nsp = report.firstSight['node-sql-parser: astify, replace literals, sqlify, hash']
  const rep = report.repeated['bulwark fingerprint, repeated statement']
  const an = report.analyze['bulwark analyze']
  const bare = report.instrument['bare no-op client']
  const ins = report.instrument['instrumented (no tracer)']
  const overheadNs = ins.nsPerOp - bare.nsPerOp
  const tracedOverheadNs = report.instrumentTraced['instrumented with a tracer, inside a request span'].nsPerOp - report.instrumentTraced['bare no-op client'].nsPerOp
  const l1 = report.loader1['bulwark Loader, batches of 1'].opsPerSec / report.loader1['DataLoader, batches of 1'].opsPerSec
  const l100 = report.loader100['bulwark Loader, batches of 100'].opsPerSec / report.loader100['DataLoader, batches of 100'].opsPerSec
  report.targets = {
    firstSight: { value: first.opsPerSec, vsNodeSqlParser: first.opsPerSec / nsp.opsPerSec, met: first.opsPerSec >= 100_000 && first.opsPerSec >= 5 * nsp.opsPerSec },
    repeatedNs: { value: rep.nsPerOp, met: rep.nsPerOp <= 300 },
    analyze: { value: an.opsPerSec, met: an.opsPerSec >= 50_000 },
    instrumentOverheadNs: { value: Math.round(overheadNs), withTracer: Math.round(tracedOverheadNs), met: overheadNs <= 1000 },
    loader: { batchOf1: l1, batchOf100: l100, met: l1 >= 1 && l100 >= 1 },
  }
  const lines = ['', `QueryOptimizer on ${corpus.length} OLTP statements (node-sql-parser could not parse ${nspFailures} of them)`]
  for (const group of ['firstSight', 'repeated', 'analyze', 'instrument', 'instrumentTraced', 'loader1', 'loader100']) {
    for (const [name, x] of Object.entries(report[group])) lines.push(`${name.padEnd(58)} ${String(x.nsPerOp).padStart(10)} ns/op ${String(x.opsPerSec).padStart(12)} ops/s`)
  }
  const t = report.targets
  lines.push('', `first sight: ${t.firstSight.value} statements/s, ${t.firstSight.vsNodeSqlParser.toFixed(1)}x node-sql-parser (target 100,000/s and 5x): ${t.firstSight.met ? 'met' : 'MISSED'}`)
  lines.push(`repeated: ${t.repeatedNs.value} ns (target 300): ${t.repeatedNs.met ? 'met' : 'MISSED'}`)
  lines.push(`analyze: ${t.analyze.value} statements/s (target 50,000): ${t.analyze.met ? 'met' : 'MISSED'}`)
  lines.push(`instrument overhead: ${t.instrumentOverheadNs.value} ns per query (target 1,000; with a tracer ${t.instrumentOverheadNs.withTracer} ns): ${t.instrumentOverheadNs.met ? 'met' : 'MISSED'}`)
  lines.push(`Loader vs DataLoader: ${l1.toFixed(2)}x (batches of 1), ${l100.toFixed(2)}x (batches of 100) (target >= 1x): ${t.loader.met ? 'met' : 'MISSED'}`)
  report.sink = sink % 7
  writeReport(outPath, report, lines)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
