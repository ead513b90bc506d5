#!/usr/bin/env node
'use strict'
// `npm run bench`: builds the release addon, runs the criterion benches of the limiter and
// breaker cores and the JS benchmarks (peer comparison, memory, Express), and rewrites
// BENCHMARKS.md.
//
//   node benches/run.js [--only=criterion|js|limiter|memory|express|tracer|express-tracing|cache|breaker|pool|observability|query|redis] [--quick] [--no-build] [--write]
//
// A full run (no --only, no --quick) rewrites BENCHMARKS.md; a partial or quick run prints the
// figures and leaves it alone unless --write is given. Raw results go to benches/results/.
//
// The JS benches load a private copy of the release addon (NAPI_RS_NATIVE_LIBRARY_PATH), taken
// from cargo's release output right after the build: a debug build made meanwhile in the same
// checkout (`node scripts/build.js`) overwrites the .node beside Cargo.toml, and a benchmark of
// a debug build means nothing.
const { spawnSync, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const { isDebugBuild } = require('./js/common')
const os = require('node:os')
const path = require('node:path')

const root = path.join(__dirname, '..')
const resultsDir = path.join(__dirname, 'results')
const args = process.argv.slice(2)
const quick = args.includes('--quick')
const onlyArg = args.find((a) => a.startsWith('--only='))
const only = onlyArg ? onlyArg.slice('--only='.length).split(',') : null
const JS_PARTS = ['limiter', 'memory', 'express', 'tracer', 'express-tracing', 'cache', 'breaker', 'pool', 'observability', 'query', 'redis']
const wants = (part) => !only || only.includes(part) || (only.includes('js') && JS_PARTS.includes(part))
const write = args.includes('--write') || (!only && !quick)

function step(title) {
  console.log(`\n=== ${title}`)
}

function run(command, commandArgs, options = {}) {
  const result = spawnSync(command, commandArgs, { cwd: root, stdio: 'inherit', ...options })
  if (result.status !== 0) {
    throw new Error(`${command} ${commandArgs.join(' ')} failed (${result.status === null ? result.signal : `exit ${result.status}`})`)
  }
  return result
}

// ---- the addon -------------------------------------------------------------------------------



/** The newest release cdylib cargo wrote for the napi build (target/<triple>/release). */
function releaseArtifact() {
  const target = path.join(root, 'target')
  const candidates = []
  for (const dir of fs.existsSync(target) ? fs.readdirSync(target) : []) {
    const file = path.join(target, dir, 'release', 'libbulwark.so')
    if (dir !== 'release' && fs.existsSync(file)) candidates.push(file)
  }
  const local = fs.readdirSync(root).filter((f) => /^bulwark\..*\.node$/.test(f)).map((f) => path.join(root, f))
  const all = [...candidates, ...local].filter((f) => !isDebugBuild(f))
  all.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)
  return all[0]
}

function prepareAddon() {
  if (!args.includes('--no-build')) {
    step('release build: node scripts/build.js --release')
    run(process.execPath, ['scripts/build.js', '--release'])
  }
  const source = releaseArtifact()
  if (!source) throw new Error('no release build of the addon found: run `node scripts/build.js --release`')
  fs.mkdirSync(resultsDir, { recursive: true })
  const copy = path.join(resultsDir, 'bulwark.release.node')
  fs.copyFileSync(source, copy)
  return { file: path.relative(root, source), copy, builtAt: fs.statSync(source).mtime.toISOString() }
}

// ---- criterion -------------------------------------------------------------------------------

const UNIT_NS = { ps: 1e-3, ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9 }

/** Criterion's `name  time: [low mid high]` lines (the name may be on the line before). */
function parseCriterion(text) {
  const results = {}
  let lastName = null
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\x1b\[[0-9;]*m/g, '').trimEnd()
    const timed = line.match(/^(.*?)\s*time:\s+\[([^\]]+)\]/)
    if (timed) {
      const name = timed[1].trim() || lastName
      const parts = timed[2].trim().split(/\s+/)
      const values = []
      for (let i = 0; i + 1 < parts.length; i += 2) values.push(Number(parts[i]) * UNIT_NS[parts[i + 1]])
      if (name && values.length === 3) results[name] = { lowNs: values[0], ns: values[1], highNs: values[2] }
      continue
    }
    if (line && !/^\s/.test(line) && !/^(Benchmarking|Found|Gnuplot|Warning|WARNING|Running|Compiling|Finished|change:|\s)/.test(line)) lastName = line.trim()
  }
  return results
}

function runCriterion() {
  step('criterion: cargo bench --bench limiter --bench breaker')
  // napi's `dyn-symbols` lets a bench binary link without Node (the symbols resolve at load);
  // it is asked for here unless Cargo.toml already turns it on.
  const manifest = fs.readFileSync(path.join(root, 'Cargo.toml'), 'utf8')
  const napiLine = manifest.split('\n').find((line) => /^napi\s*=/.test(line)) || ''
  const cargoArgs = ['bench', '--bench', 'limiter', '--bench', 'breaker']
  if (!napiLine.includes('dyn-symbols')) cargoArgs.push('--features', 'napi/dyn-symbols')
  cargoArgs.push('--', '--noplot')
  if (quick) cargoArgs.push('--warm-up-time', '1', '--measurement-time', '2')
  const result = spawnSync('cargo', cargoArgs, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 })
  process.stdout.write(result.stdout || '')
  if (result.status !== 0) {
    process.stderr.write(result.stderr || '')
    throw new Error(`cargo bench failed (exit ${result.status})`)
  }
  const benches = parseCriterion(`${result.stdout}\n${result.stderr}`)
  if (Object.keys(benches).length === 0) throw new Error('no criterion results parsed')
  return { command: `cargo ${cargoArgs.join(' ')}`, benches }
}

// ---- JS benches ------------------------------------------------------------------------------

const fromResults = args.includes('--from-results')

function runJs(name, env, extra = [], resultName = name) {
  if (fromResults) {
    // rebuild BENCHMARKS.md from the JSON a previous run left in benches/results/
    return JSON.parse(fs.readFileSync(path.join(resultsDir, `${resultName}.json`), 'utf8'))
  }
  step(`node benches/js/${name}.js ${extra.join(' ')}`.trim())
  const out = path.join(resultsDir, `${resultName}.json`)
  const benchArgs = [path.join(__dirname, 'js', `${name}.js`), out, ...extra]
  if (quick) benchArgs.push('--quick')
  run(process.execPath, benchArgs, { env })
  return JSON.parse(fs.readFileSync(out, 'utf8'))
}

// ---- BENCHMARKS.md ---------------------------------------------------------------------------

function environment(addon) {
  const cpuinfo = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : ''
  const model = (cpuinfo.match(/^model name\s*:\s*(.+)$/m) || [])[1] || (os.cpus()[0] || {}).model || 'unknown'
  let rustc = 'unknown'
  try {
    rustc = execFileSync('rustc', ['--version'], { encoding: 'utf8' }).trim()
  } catch {}
  return {
    date: new Date().toISOString(),
    node: process.version,
    rustc,
    cpu: model.trim(),
    cores: os.cpus().length,
    platform: `${process.platform}-${process.arch}`,
    addon,
  }
}

const mark = (met) => (met === undefined || met === null ? '—' : met ? '✅' : '❌')
const fmt = (x, digits = 1) => (x === undefined || x === null || Number.isNaN(x) ? '—' : Number(x).toLocaleString('en-US', { maximumFractionDigits: digits }))
const fmtNs = (ns) => (ns >= 1000 ? `${fmt(ns / 1000, 2)} µs` : `${fmt(ns, 1)} ns`)

function targetRows(r) {
  const rows = []
  const lim = r.limiter
  if (lim) {
    const a = lim.scenarios.allowed
    const tc = a['bulwark tryConsume']
    const ck = a['bulwark check']
    const fl = a['JS Map token bucket (floor)']
    const rlf = lim.rlfBest.allowed
    const rlfHow = rlf.name.replace(/^rlf consume, /, '')
    rows.push(['`tryConsume` vs `rate-limiter-flexible` `RateLimiterMemory.consume`', 'at least 3x its throughput',
      `${fmt(lim.ratios.tryConsumeVsRlf.value, 2)}x (${fmt(tc.opsPerSec, 0)} vs ${fmt(rlf.opsPerSec, 0)} ops/s; rlf ${rlfHow}, its better way)`, lim.ratios.tryConsumeVsRlf.met])
    rows.push(['`check` (object result) vs the same', 'at least 1.5x',
      `${fmt(lim.ratios.checkVsRlf.value, 2)}x (${fmt(ck.opsPerSec, 0)} vs ${fmt(rlf.opsPerSec, 0)} ops/s)`, lim.ratios.checkVsRlf.met])
    rows.push(['`tryConsume` vs a 20-line pure-JS `Map` token bucket (the floor)', 'within 3x of its time per op; report the ratio',
      `${fmt(lim.ratios.tryConsumeVsFloorTime.value, 2)}x (${fmt(tc.nsPerOp)} vs ${fmt(fl.nsPerOp)} ns/op)`, lim.ratios.tryConsumeVsFloorTime.met])
  } else {
    rows.push(['`tryConsume` / `check` vs rate-limiter-flexible and the JS floor', '3x / 1.5x / within 3x', 'not run', undefined])
  }
  const ex = r.express
  if (ex) {
    const v = ex.variants
    // Over HTTP when the measurement resolves the target; otherwise by the middlewares' own time
    // in the server, which does (see the Express section).
    const judge = (http, own) => (http.resolved ? { met: http.met, by: 'server CPU' } : { met: own.met, by: 'own time; server CPU within the noise' })
    const f = ex.ratios.bulwarkVsFloorOverhead
    const e = ex.ratios.bulwarkVsExpressRateLimitOverhead
    const fo = ex.ownTime.ratios.bulwarkVsFloor
    const eo = ex.ownTime.ratios.bulwarkVsExpressRateLimit
    const fj = judge(f, fo)
    const ej = judge(e, eo)
    const pm = (x) => (x.error === undefined || x.error === null ? '' : ` ± ${fmt(x.error, 2)}`)
    rows.push(['Express hello world with `rateLimit` (draft-8 headers): server CPU per request over bare Express',
      'at most 1.3x the floor middleware\'s overhead, at most 0.35x express-rate-limit\'s; report req/s',
      `server CPU over bare: bulwark ${fmt(v.bulwark.overheadUsPerRequest, 2)} µs/req, floor ${fmt(v.floor.overheadUsPerRequest, 2)}, express-rate-limit ${fmt(v['express-rate-limit'].overheadUsPerRequest, 2)} (standard error ${fmt(ex.noiseUsPerRequest, 2)}): ` +
        `${fmt(f.value, 2)}x${pm(f)} the floor's, ${fmt(e.value, 2)}x${pm(e)} express-rate-limit's. ` +
        `Own time in the server: ${fmt(fo.value, 2)}x the floor's, ${fmt(eo.value, 2)}x express-rate-limit's. ` +
        `Verdict: vs floor ${mark(fj.met)} (${fj.by}), vs express-rate-limit ${mark(ej.met)} (${ej.by}). ` +
        `req/s: bare ${fmt(v.bare.reqPerSec, 0)}, floor ${fmt(v.floor.reqPerSec, 0)}, bulwark ${fmt(v.bulwark.reqPerSec, 0)}, express-rate-limit ${fmt(v['express-rate-limit'].reqPerSec, 0)}`,
      fj.met && ej.met])
  } else {
    rows.push(['Express hello world with `rateLimit` (draft-8 headers)', 'at most 1.3x floor, 0.35x express-rate-limit', 'not run', undefined])
  }
  const mem = r.memory
  if (mem) {
    const b = mem.subjects.bulwark
    rows.push(['memory for 1,000,000 distinct keys', 'bytes per key; at most 120',
      `${fmt(b.bytesPerKey.rss)} B/key RSS (${fmt(b.rssBytes / 1048576)} MB for ${fmt(b.verified.keys, 0)} keys held; rate-limiter-flexible ${fmt(mem.subjects.rlf.bytesPerKey.rss)} B/key)`, mem.target.met])
  } else {
    rows.push(['memory for 1,000,000 distinct keys', 'bytes per key; at most 120', 'not run', undefined])
  }
  const tr = r.tracer
  if (tr) {
    const v = tr.spans.variants
    const bs = v['bulwark sampled: start, setAttribute, end']
    const os = v['OTel JS sampled: startSpan, setAttribute, end']
    const bu = v['bulwark unsampled: start, end']
    const ou = v['OTel JS unsampled: startSpan, end']
    rows.push(['sampled span: start, one attribute, end, vs OTel JS (sdk-trace-base, BatchSpanProcessor, discarding exporter)', 'at least 5x its throughput',
      `${fmt(tr.ratios.sampledVsOtel.value, 2)}x (${fmt(bs.nsPerOp)} vs ${fmt(os.nsPerOp)} ns per span)`, tr.ratios.sampledVsOtel.met])
    rows.push(['unsampled span: start, end', 'at most 100 ns per span',
      `${fmt(bu.nsPerOp)} ns (OTel JS: ${fmt(ou.nsPerOp)} ns, ${fmt(ou.nsPerOp / bu.nsPerOp, 1)}x slower)`, tr.ratios.unsampledNs.met])
    const ex = tr.export.results
    rows.push(['export of 100,000 spans (OTLP/protobuf to a local sink): event-loop delay p99', 'within 1 ms of idle',
      `+${fmt(ex.bulwark.p99OverIdleMs, 2)} ms (idle p99 ${fmt(ex.bulwark.idle.p99Ms, 2)}, during ${fmt(ex.bulwark.during.p99Ms, 2)}, max ${fmt(ex.bulwark.during.maxMs, 2)}; OTel JS +${fmt(ex.otel.p99OverIdleMs, 2)} ms, max ${fmt(ex.otel.during.maxMs, 2)})`, tr.export.target.met])
    const o = tr.outage
    rows.push([`collector down for ${o.seconds} s under load (${fmt(o.spansPerSecond, 0)} spans/s)`, 'memory flat (bounded queue), drops counted, export resumes',
      `RSS ${fmt(o.rssAtSettleMB)} MB after ${o.settleSecond} s, at most ${fmt(o.rssMaxAfterMB)} MB later (+${fmt(o.rssGrowthMB)} MB); ${fmt(o.droppedWhileDown, 0)} spans dropped, ${fmt(o.exportErrorsWhileDown, 0)} export errors; export resumed ${o.resumedAfterMs} ms after the collector came back`, o.target.met])
  } else {
    rows.push(['tracer: spans, export delay, collector outage', 'see the tracer issue', 'not run', undefined])
  }
  const et = r.expressTracing
  if (et) {
    const t = et.targets
    const v = et.variants
    const rr = (x) => `${fmt(x.value, 2)} ± ${fmt(x.error, 2)}`
    const own = et.ownTime
    const ownText = own
      ? `own time ${fmt(own.totalUs, 2)} µs (on the request ${fmt(own.requestUs, 2)} + at the response's end ${fmt(own.closeUs, 2)} + export-thread CPU ${fmt(own.exportThreadUs, 2)}); `
      : ''
    rows.push(['Express hello world with `tracing` (100% sampled, OTLP/protobuf to a local sink): server CPU per request over bare', 'at most 4 µs, and at most 0.25x OTel JS\'s overhead',
      `${ownText}server CPU over bare ${rr(t.bulwarkTracingOverhead)} µs (OTel JS ${fmt(v['OTel JS tracing'].overheadUsPerRequest, 2)} µs): ${rr(t.bulwarkVsOtelOverhead)}x${t.bulwarkTracingOverhead.resolved ? '' : '; server CPU within the noise'}`,
      (t.bulwarkTracingOwnTime ? t.bulwarkTracingOwnTime.met : t.bulwarkTracingOverhead.met) && t.bulwarkVsOtelOverhead.met])
    rows.push(['`rateLimit` and `tracing` together, same measure', 'at most 12 µs over bare',
      `${rr(t.bulwarkRateLimitAndTracingOverhead)} µs (express-rate-limit with OTel JS: ${fmt(v['express-rate-limit + OTel JS tracing'].overheadUsPerRequest, 2)} µs)`, t.bulwarkRateLimitAndTracingOverhead.met])
  } else {
    rows.push(['Express with `tracing`, and with `rateLimit` + `tracing`', 'at most 4 µs / 0.25x OTel JS; at most 12 µs', 'not run', undefined])
  }
  const ca = r.cache
  if (ca) {
    const t = ca.ops.targets
    const v = ca.ops.variants
    rows.push(['PersistentCache memory-tier hit, 100-byte string', 'at most 300 ns; ratio to lru-cache reported',
      `${fmt(t.stringHit.value)} ns (lru-cache ${fmt(v['lru-cache get hit, 100-byte string'].nsPerOp)} ns: ${fmt(t.stringHit.vsLru, 1)}x its time)`, t.stringHit.met])
    rows.push(['set of a 1 KiB JSON object', 'at most `JSON.stringify` + 1 µs',
      `${fmt(t.jsonSet.value)} ns = stringify ${fmt(t.jsonSet.floor)} + ${fmt(t.jsonSet.overFloor)} ns`, t.jsonSet.met])
    rows.push(['get of a 1 KiB JSON object; a `hotObjects` hit', 'at most `JSON.parse` + 0.5 µs; at most 300 ns',
      `${fmt(t.jsonGet.value)} ns = parse ${fmt(t.jsonGet.floor)} + ${fmt(t.jsonGet.overFloor)} ns; hot hit ${fmt(t.hotHit.value)} ns`, t.jsonGet.met && t.hotHit.met])
    const z = ca.ratio.results['Zipf(0.9)']
    const zs = ca.ratio.results['Zipf(0.9) with one-off scans']
    rows.push([`hit ratio, Zipf(0.9) over ${fmt(ca.ratio.keys, 0)} keys, 10% capacity`, 'at least lru-cache\'s', `${fmt(z.bulwark * 100, 1)}% vs ${fmt(z.lruCache * 100, 1)}% (${fmt(z.ratio, 2)}x)`, ca.ratio.targets.zipf.met])
    rows.push(['the same trace with one-off scans mixed in', 'at least 1.3x lru-cache\'s', `${fmt(zs.bulwark * 100, 1)}% vs ${fmt(zs.lruCache * 100, 1)}% (${fmt(zs.ratio, 2)}x)`, ca.ratio.targets.scans.met])
    const m = ca.memory
    rows.push([`${fmt(m.entries, 0)} entries of a 1 KiB JSON object`, 'V8 heap growth at most 16 MB; RSS at most 1.3x the stored bytes + 64 MB',
      `heap +${fmt(m.bulwark.heapGrowthMB)} MB (lru-cache +${fmt(m.lruCache.heapGrowthMB)} MB); RSS +${fmt(m.bulwark.rssGrowthMB)} MB for ${fmt(m.bulwark.storedMB)} MB stored (limit ${fmt(m.targets.rss.target)} MB)`, m.targets.heap.met && m.targets.rss.met])
    for (const c of ca.churn.runs) {
      rows.push([`event-loop delay p99 under churn (${fmt(c.entries, 0)} entries)`, 'lower than lru-cache\'s', `${fmt(c.bulwark.p99Ms, 2)} ms vs ${fmt(c.lruCache.p99Ms, 2)} ms (max ${fmt(c.bulwark.maxMs, 2)} vs ${fmt(c.lruCache.maxMs, 2)}; lru-cache heap ${fmt(c.lruCache.heapMB, 0)} MB)`, c.target.met])
    }
    const d = ca.disk
    rows.push(['disk-tier hit after a restart', 'at most 20 µs', `${fmt(d.results.bulwark.usPerGet, 2)} µs (cacache ${fmt(d.results.cacache.usPerGet, 1)} µs)`, d.target.met])
    const wp = ca.writes.results['offered 50,000 sets/s']
    const wf = ca.writes.results['as fast as possible']
    rows.push(['sustained writes with the disk tier on', 'at least 50,000 sets/s without growing memory',
      `offered 50,000/s: ${fmt(wp.setsPerSecond, 0)} sets/s taken, the disk wrote ${fmt(wp.diskWritesPerSecond, 0)}/s, ${fmt(wp.skipped, 0)} skipped, RSS +${fmt(wp.rssGrowthMB)} MB after the first second; unpaced: ${fmt(wf.setsPerSecond, 0)} sets/s, disk ${fmt(wf.diskWritesPerSecond, 0)} writes/s, RSS +${fmt(wf.rssGrowthMB)} MB (the rest skipped: bounded queue)`, ca.writes.target.met])
  } else {
    rows.push(['PersistentCache (hits, sets, hit ratio, memory, churn, disk, writes)', 'see the cache issue', 'not run', undefined])
  }
  const br = r.breaker
  if (br) {
    const t = br.targets
    rows.push(['`breaker.fire` of a resolved async function, closed state', 'at least 2x opossum\'s throughput and at least cockatiel\'s',
      `${fmt(t.closedVsOpossum.value, 2)}x opossum, ${fmt(t.closedVsCockatiel.value, 2)}x cockatiel awaited one by one; ${fmt(t.closedVsOpossumConcurrent.value, 2)}x / ${fmt(t.closedVsCockatielConcurrent.value, 2)}x with 100 concurrent`,
      t.closedVsOpossum.met && t.closedVsCockatiel.met && t.closedVsOpossumConcurrent.met && t.closedVsCockatielConcurrent.met])
    rows.push(['refusal while open', 'at most 300 ns',
      `answered by a fallback: ${fmt(t.refusalWithFallbackNs.value)} ns; rejected with a BreakerOpenError: ${fmt(t.refusalRejectingNs.value)} ns (making the Error alone costs ~380 ns; opossum is ${fmt(br.ratios.refusalVsOpossum, 1)}x slower); the decision itself ${fmt(t.refusalDecisionNs.value)} ns`,
      t.refusalWithFallbackNs.met && t.refusalRejectingNs.met])
  } else {
    rows.push(['CircuitBreaker beside opossum and cockatiel', '2x opossum; refusal at most 300 ns', 'not run', undefined])
  }
  const po = r.pool
  if (po) {
    const t = po.targets
    const c = po.scenarios.concurrent
    rows.push(['pool acquire + release, one caller', 'at least generic-pool\'s throughput', `${fmt(po.scenarios.oneCaller.bulwark.opsPerSec, 0)}/s, ${fmt(t.oneCallerVsGenericPool.value, 2)}x generic-pool (tarn ${fmt(po.scenarios.oneCaller.tarn.opsPerSec, 0)}/s)`, t.oneCallerVsGenericPool.met])
    rows.push([`pool acquire + release, ${po.callers} callers over max ${po.max}`, 'at least generic-pool\'s and tarn\'s throughput; report p99 wait',
      `${fmt(c.bulwark.opsPerSec, 0)}/s: ${fmt(t.concurrentVsGenericPool.value, 2)}x generic-pool, ${fmt(t.concurrentVsTarn.value, 2)}x tarn; p99 wait ${fmt(c.bulwark.p99WaitMs, 3)} ms (generic-pool ${fmt(c['generic-pool'].p99WaitMs, 3)}, tarn ${fmt(c.tarn.p99WaitMs, 3)})`, t.concurrentVsGenericPool.met && t.concurrentVsTarn.met])
    rows.push(['pool memory per idle resource slot', 'report it', `${fmt(po.memory.bulwark.bytesPerSlot, 0)} bytes (generic-pool ${fmt(po.memory['generic-pool'].bytesPerSlot, 0)}, tarn ${fmt(po.memory.tarn.bytesPerSlot, 0)})`, undefined])
  } else {
    rows.push(['ConnectionPool beside generic-pool and tarn', 'at least their throughput', 'not run', undefined])
  }
  const ob = r.observability
  if (ob) {
    rows.push([`\`obs.prometheus()\` with every kind of block registered and ${fmt(ob.series, 0)} series`, 'at most 10 ms (and no longer on the event loop)',
      `median ${fmt(ob.prometheus.medianMs, 2)} ms, slowest of 21 ${fmt(ob.prometheus.maxMs, 2)} ms (OpenMetrics: ${fmt(ob.openMetrics.medianMs, 2)} ms; the JSON snapshot, stringified: ${fmt(ob.snapshotJson.medianMs, 2)} ms)`, ob.target.met])
  } else {
    rows.push(['`obs.prometheus()` with 10,000 series', 'at most 10 ms', 'not run', undefined])
  }
  const qy = r.query
  if (qy) {
    const t = qy.targets
    rows.push([`\`fingerprint\`, first sight, ${qy.corpus} OLTP statements`, 'at least 100,000 statements/s and 5x the fastest JS option', `${fmt(t.firstSight.value, 0)}/s, ${fmt(t.firstSight.vsNodeSqlParser, 1)}x node-sql-parser (parse, replace literals, print, hash)`, t.firstSight.met])
    rows.push(['`fingerprint`, repeated statement', 'at most 300 ns', `${fmt(t.repeatedNs.value)} ns`, t.repeatedNs.met])
    rows.push(['`analyze`', 'at least 50,000 statements/s', `${fmt(t.analyze.value, 0)}/s`, t.analyze.met])
    rows.push(['`instrument` overhead per `query()` against a no-op client', 'at most 1 µs', `${fmt(t.instrumentOverheadNs.value, 0)} ns (with a tracer: ${fmt(t.instrumentOverheadNs.withTracer, 0)} ns)`, t.instrumentOverheadNs.met])
    rows.push(['`loader.load` vs DataLoader, batches of 1 and of 100', 'at least DataLoader\'s throughput', `${fmt(t.loader.batchOf1, 2)}x / ${fmt(t.loader.batchOf100, 2)}x`, t.loader.met])
  } else {
    rows.push(['QueryOptimizer (fingerprint, analyze, instrument, loader)', 'see the query issue', 'not run', undefined])
  }
  const rd = r.redis
  if (rd) {
    const b = rd.limiter.results['bulwark consume (Redis store)']
    const rlf = rd.limiter.results['rlf RateLimiterRedis consume (ioredis)']
    rows.push([`RateLimiter \`consume\` through Redis vs rate-limiter-flexible \`RateLimiterRedis\` (ioredis), ${rd.callers} concurrent callers`, 'at least 1.5x its throughput; report p50/p99',
      `${fmt(rd.targets.consumeVsRlf.value, 2)}x (${fmt(b.opsPerSec, 0)} vs ${fmt(rlf.opsPerSec, 0)} ops/s); p50 ${fmt(b.p50Us, 0)} µs vs ${fmt(rlf.p50Us, 0)} µs, p99 ${fmt(b.p99Us, 0)} µs vs ${fmt(rlf.p99Us, 0)} µs`, rd.targets.consumeVsRlf.met])
    rows.push(['refusal of a locally known refused key', 'no round trip; at most 1 µs',
      `${fmt(rd.targets.localRefusalNs.value)} ns per awaited \`consume\`; ${fmt(rd.refusal.roundTripsDuring, 0)} round trips for ${fmt(rd.refusal.localRefusals, 0)} refusals (one per round, renewing the refusal)`, rd.targets.localRefusalNs.met])
    if (rd.invalidation) {
      rows.push(['PersistentCache invalidation seen by another process', 'p99 at most 50 ms on 127.0.0.1',
        `p50 ${fmt(rd.invalidation.p50Ms, 2)} ms, p99 ${fmt(rd.invalidation.p99Ms, 2)} ms, max ${fmt(rd.invalidation.maxMs, 2)} ms (${fmt(rd.invalidation.count, 0)} invalidations)`, rd.targets.invalidationP99Ms.met])
      const bt = rd.tier.results['bulwark getAsync (Redis tier, 100 local entries)']
      const kv = rd.tier.results['keyv get (@keyv/redis)']
      rows.push(['`getAsync` hit in the Redis tier vs keyv with @keyv/redis', 'at least its throughput',
        `${fmt(rd.targets.getAsyncVsKeyv.value, 2)}x (${fmt(bt.opsPerSec, 0)} vs ${fmt(kv.opsPerSec, 0)} gets/s, 100 concurrent); p99 ${fmt(bt.p99Us, 0)} µs vs ${fmt(kv.p99Us, 0)} µs`, rd.targets.getAsyncVsKeyv.met])
    }
  } else {
    rows.push(['RateLimiter through Redis vs rate-limiter-flexible RateLimiterRedis', '1.5x; refusal at most 1 µs', 'not run', undefined])
  }
  const cr = r.criterion && r.criterion.benches['limiter/bucket check']
  rows.push(['criterion: core bucket check, one thread', 'at most 50 ns', cr ? `${fmt(cr.ns, 1)} ns [${fmt(cr.lowNs, 1)} – ${fmt(cr.highNs, 1)}]` : 'not run', cr ? cr.ns <= 50 : undefined])
  return rows
}

function table(header, rows) {
  const esc = (c) => String(c).replace(/\|/g, '\\|')
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n')
}

function markdown(r) {
  const env = r.environment
  const out = []
  out.push('# Benchmarks', '')
  out.push('Written by `npm run bench` (`node benches/run.js`); do not edit by hand. Raw results: `benches/results/*.json` after a run.', '')
  out.push(table(['', ''], [
    ['command', '`npm run bench`' + (r.flags.length ? ` (with \`${r.flags.join(' ')}\`)` : '')],
    ['date', env.date],
    ['Node', env.node],
    ['rustc', env.rustc],
    ['CPU', `${env.cpu}, ${env.cores} cores (${env.platform})`],
    ['addon', `release build (LTO), \`${env.addon.file}\` built ${env.addon.builtAt}`],
    ...(r.flags.includes('--from-results')
      ? [['results', 'the JS parts read back from `benches/results/*.json`, as the last run of each part left them (each JSON has its date); criterion run now']]
      : []),
  ]))
  out.push('', '## Targets', '')
  out.push(table(['what', 'target', 'measured', 'met'], targetRows(r).map(([a, b, c, d]) => [a, b, c, mark(d)])))

  const lim = r.limiter
  if (lim) {
    out.push('', '## RateLimiter beside rate-limiter-flexible and the JS floor', '')
    out.push(`One process, ${fmt(lim.keys, 0)} distinct pre-built keys (\`user-<i>\`), taken in turn. ${lim.rounds} rounds after ${lim.warmupRounds} warmup rounds, every variant in every round in rotating order; the median round is reported. ` +
      `${fmt(lim.opsPerRound.sync, 0)} operations per round for synchronous variants, ${fmt(lim.opsPerRound.async, 0)} for rate-limiter-flexible, whose \`consume\` returns a promise: it is measured awaited one at a time and in batches of 100 concurrent promises (\`Promise.all\`), and the better of the two is used for the ratios. ` +
      'The floor is a `Map` of `{ tokens, last }` refilled by elapsed `performance.now()`, with the same return encoding as `tryConsume`.', '')
    for (const [title, key] of [['All requests allowed (limits no request exhausts)', 'allowed'], ['Half the requests refused (every other request goes to keys whose bucket is empty for an hour)', 'halfRefused']]) {
      out.push(`**${title}**`, '')
      const rows = Object.entries(lim.scenarios[key]).map(([name, x]) => [name, fmt(x.nsPerOp), fmt(x.opsPerSec, 0), `${fmt(x.minNsPerOp)} – ${fmt(x.maxNsPerOp)}`])
      out.push(table(['variant', 'ns/op (median)', 'ops/s', 'range over rounds (ns/op)'], rows), '')
    }
    out.push('**What the parts cost on their own** (to read the figures above)', '')
    out.push(table(['operation', 'ns/op', 'ops/s'], Object.entries(lim.diagnostics).map(([name, x]) => [name, fmt(x.nsPerOp), fmt(x.opsPerSec, 0)])))
  }

  const mem = r.memory
  if (mem) {
    out.push('', `## Memory for ${fmt(mem.keys, 0)} distinct keys`, '')
    out.push('Each in a fresh `node --expose-gc` process: as many key strings as will be inserted are made and dropped first (so the V8 heap has its working size), then garbage is collected and the baseline taken; the keys are inserted, garbage is collected again and the difference measured. RSS is everything the process holds; bulwark keeps its state off the V8 heap.', '')
    const rows = Object.values(mem.subjects).map((s) => [s.label, fmt(s.verified.keys, 0), fmt(s.rssBytes / 1048576), fmt(s.bytesPerKey.rss), fmt(s.heapUsedBytes / 1048576), fmt(s.bytesPerKey.heapUsed), fmt(s.insertMs, 0)])
    out.push(table(['subject', 'keys held', 'RSS MB', 'RSS B/key', 'V8 heap MB', 'heap B/key', 'insert ms'], rows))
  }

  const ex = r.express
  if (ex) {
    out.push('', '## Express hello world: server CPU per request', '')
    out.push(`The server runs in a child process on 127.0.0.1, so the client's CPU is not counted. Each round starts a fresh server per variant and warms each with ${fmt(ex.warmupRequests, 0)} requests; then the servers take turns: ${ex.warmBursts ? `${ex.warmBursts} unmeasured bursts each, to finish warming up in the same rotation (a long-running service's cost per request is what is measured, not V8's warm-up: in a server timed window by window, the first 10,000 requests cost a traced server about 7 µs more each than the ones after, a bare one about 1.5 µs more; and in a run that warmed every server with 12,000 requests up front, one after the other, the first server started measured about 20 µs a request above its twin started later), then ` : ''}${ex.bursts} bursts of ${fmt(ex.burstRequests, 0)} requests each (${fmt(ex.requestsPerRun, 0)} per variant and round), sent by autocannon over ${ex.connections} connections, with the server's \`process.cpuUsage()\` (user + system, all its threads) taken around every burst. ` +
      `${ex.rounds} rounds; medians reported. A variant's overhead is the median over rounds of its CPU per request minus bare Express's in the same round. req/s is the server's rate from the first to the last request of its bursts. ` +
      '**floor**: a hand-written middleware that reads `req.ip`, bumps a `Map` counter and sets draft-8 `RateLimit-Policy` and `RateLimit`. **bulwark**: `rateLimit({ limiter: new RateLimiter({ capacity: 1e9, refillPerSecond: 1e9 }), headers: \'draft-8\' })`. **express-rate-limit**: `limit: 1e9, standardHeaders: \'draft-8\', legacyHeaders: false`. ' +
      `**bare (control)** is a second bare server: round by round it differed from bare by ${ex.controlDiffsUsPerRequest.map((x) => fmt(x, 1)).join(', ')} µs/req, which makes the standard error of an overhead ± ${fmt(ex.noiseUsPerRequest, 2)} µs/req. A ratio counts as resolved when its target lies more than two standard errors away.`, '')
    const signed = (x) => (x > 0 ? `+${fmt(x, 2)}` : fmt(x, 2))
    const rows = Object.entries(ex.variants).map(([name, v]) => [name, fmt(v.cpuUsPerRequest, 2), name === 'bare' ? '—' : signed(v.overheadUsPerRequest),
      name === 'bare' ? '—' : signed(v.userOverheadUsPerRequest), fmt(v.reqPerSec, 0), v.runs.map((x) => fmt(x.cpuUsPerRequest, 1)).join(', '),
      name.startsWith('bare') ? '—' : '`' + Object.entries(v.sample.headers).map(([h, val]) => `${h}: ${val}`).join('`<br>`') + '`'])
    out.push(table(['variant', 'CPU µs/req', 'over bare', 'over bare, user CPU only', 'req/s', 'rounds (µs/req)', 'headers sent'], rows), '')
    const rr = (x) => `${fmt(x.value, 2)}x ± ${fmt(x.error, 2)} (target ≤ ${x.target}) ${x.resolved ? mark(x.met) : 'not resolved'}`
    out.push(`Ratios of server CPU overhead: bulwark / floor ${rr(ex.ratios.bulwarkVsFloorOverhead)}; bulwark / express-rate-limit ${rr(ex.ratios.bulwarkVsExpressRateLimitOverhead)}.`, '')
    const own = ex.ownTime
    out.push(`**Each middleware's own time inside the server.** The same servers with the middleware wrapped to time it from its call to its \`next\` (an empty middleware, wrapped the same way, gives the cost of the timing, which is subtracted), under the same load: ${fmt(own.requests, 0)} requests each. What a middleware adds to a request on the JS thread, without the noise of the whole request; over HTTP each middleware also pays for its Express layer and for writing its headers, which is why its overhead there is larger.`, '')
    out.push(table(['middleware', 'own time, µs per request', 'over the timing alone'], Object.entries(own.usPerCall).map(([n, us]) => [n, fmt(us, 2), n.startsWith('empty') ? '—' : fmt(own.usOverTiming[n], 2)])), '')
    out.push(`bulwark / floor: ${fmt(own.ratios.bulwarkVsFloor.value, 2)}x (target ≤ 1.3) ${mark(own.ratios.bulwarkVsFloor.met)}; bulwark / express-rate-limit: ${fmt(own.ratios.bulwarkVsExpressRateLimit.value, 2)}x (target ≤ 0.35) ${mark(own.ratios.bulwarkVsExpressRateLimit.met)}.`)
  }

  const tr = r.tracer
  if (tr) {
    out.push('', '## DistributedTracer beside OpenTelemetry JS', '')
    out.push(`One process; ${tr.spans.rounds} rounds of ${fmt(tr.spans.opsPerRound, 0)} spans per variant after ${tr.spans.warmupRounds} warmup rounds, variants in rotating order, medians reported. ` +
      'Both tracers use their batch processor with its default sizes and an exporter that discards (bulwark: `exporter: \'none\'`; OTel JS: `BasicTracerProvider` from `@opentelemetry/sdk-trace-base` with a `BatchSpanProcessor` around an exporter that drops each batch); unsampled means `sampleRate: 0` (OTel JS: a parent-based `TraceIdRatioBasedSampler(0)`).', '')
    out.push(table(['variant', 'ns per span (median)', 'spans/s', 'range over rounds (ns)'], Object.entries(tr.spans.variants).map(([n, x]) => [n, fmt(x.nsPerOp), fmt(x.opsPerSec, 0), `${fmt(x.minNsPerOp)} – ${fmt(x.maxNsPerOp)}`])), '')
    out.push(`Queue drops during the run (the queues hold 2,048 spans; these loops end spans faster than any service would): bulwark ${fmt(tr.spans.drops.bulwark.dropped, 0)} of ${fmt(tr.spans.drops.bulwark.started, 0)}, OTel JS ${fmt(tr.spans.drops.otel.dropped, 0)}.`, '')
    out.push(`**Export of ${fmt(tr.export.spans, 0)} spans**, each tracer in its own process, exporting OTLP/HTTP protobuf to a sink in the parent process, with \`maxQueueSize\` ${fmt(tr.export.spans, 0)} so that nothing is dropped (OTel JS's exporter also gets a \`concurrencyLimit\` above the number of batches, since its \`forceFlush\` sends them all at once). The spans are made first; then \`perf_hooks.monitorEventLoopDelay\` (1 ms resolution) watches the loop from the start of the flush to its end (at least 1 s), beside 1 s of the same loop idle.`, '')
    out.push(table(['tracer', 'idle p99 (ms)', 'during export p99 (ms)', 'max (ms)', 'p99 over idle (ms)', 'export took (ms)', 'sink received'], Object.entries(tr.export.results).map(([n, x]) => [n, fmt(x.idle.p99Ms, 2), fmt(x.during.p99Ms, 2), fmt(x.during.maxMs, 2), fmt(x.p99OverIdleMs, 2), fmt(x.exportMs, 0), `${fmt(x.sinkRequests, 0)} requests, ${fmt(x.sinkBytes / 1048576, 1)} MB`])), '')
    const o = tr.outage
    out.push(`**Collector outage.** A tracer exporting OTLP to a port nobody listens on (connection refused) while spans keep ending (${fmt(o.spansPerSecond, 0)} per second, 10 every millisecond) for ${o.seconds} s; RSS and V8 heap sampled every second; then a collector starts on that port. ` +
      `RSS ${fmt(o.rssAtSettleMB)} MB after ${o.settleSecond} s and at most ${fmt(o.rssMaxAfterMB)} MB afterwards; V8 heap ${fmt(o.heapFirstMB)} MB at 1 s, ${fmt(o.heapLastMB)} MB at the end; ${fmt(o.droppedWhileDown, 0)} spans dropped and ${fmt(o.exportErrorsWhileDown, 0)} failed exports counted; export resumed ${o.resumedAfterMs} ms after the collector came back.`)
  }
  const et = r.expressTracing
  if (et) {
    out.push('', '## Express with tracing: server CPU per request', '')
    out.push(`Measured as the rate-limit Express benchmark above (same harness, ${et.rounds} rounds, ${fmt(et.requestsPerRun, 0)} requests per variant and round). Every tracer samples 100% and exports OTLP/HTTP protobuf to a sink in the benchmark's parent process, so the export thread's CPU counts in the server's. ` +
      '**OTel JS tracing** is `@opentelemetry/sdk-trace-base` with a `BatchSpanProcessor`, `@opentelemetry/exporter-trace-otlp-proto` and the AsyncLocalStorage context manager, behind a middleware that makes the same server span as bulwark\'s `tracing` (extracts `traceparent`, the same attributes, named by route, active through the handler chain, ended on finish). Two diagnostic rows: a middleware that only runs the handler chain inside `AsyncLocalStorage.run` (what keeping any context costs on this Node), and bulwark\'s `tracing` with `exporter: \'none\'`. ' +
      `The control differed from bare by ${et.controlDiffsUsPerRequest.map((x) => fmt(x, 1)).join(', ')} µs/req, a standard error of ± ${fmt(et.noiseUsPerRequest, 2)} µs/req. The sink received ${fmt(et.sink.requests, 0)} exports (${fmt(et.sink.bytes / 1048576, 1)} MB).`, '')
    if (et.ownTime) {
      out.push(`Because the server CPU figures are within that noise, bulwark's \`tracing\` is also timed part by part, in a server of its own (${fmt(et.ownTime.requests, 0)} requests), each part over the same timing of an empty middleware: on the request, from the middleware's call to its \`next\` (${fmt(et.ownTime.requestUs, 2)} µs); at the response's end (Node's finish channel, or \`close\` for an aborted request), where the span ends (${fmt(et.ownTime.closeUs, 2)} µs); and the export thread's own CPU clock (\`metrics().exportCpuMs\`, after a flush) divided by the requests (${fmt(et.ownTime.exportThreadUs, 2)} µs): ${fmt(et.ownTime.totalUs, 2)} µs in all.`, '')
    }
    const signed = (x) => (x > 0 ? `+${fmt(x, 2)}` : fmt(x, 2))
    out.push(table(['variant', 'CPU µs/req', 'over bare', 'over bare, user CPU only', 'req/s', 'rounds (µs/req)'], Object.entries(et.variants).map(([name, v]) => [name, fmt(v.cpuUsPerRequest, 2), name === 'bare' ? '—' : signed(v.overheadUsPerRequest), name === 'bare' ? '—' : signed(v.userOverheadUsPerRequest), fmt(v.reqPerSec, 0), v.runs.map((x) => fmt(x.cpuUsPerRequest, 1)).join(', ')])))
  }

  const ca = r.cache
  if (ca) {
    out.push('', '## PersistentCache beside lru-cache and cacache', '')
    out.push(`**Hot paths**, one process: ${ca.ops.rounds} rounds of ${fmt(ca.ops.opsPerRound, 0)} operations per variant after ${ca.ops.warmupRounds} warmup rounds, rotating order, medians. 10,000 keys of 100-byte strings; 256 JSON objects of about 1 KiB (lz4 applies above 1,024 bytes). lru-cache keeps the live object, so its get and set of an object cost no encoding at all: serializing is the floor of any cache that keeps values off the V8 heap, which is why \`JSON.stringify\` and \`JSON.parse\` alone are rows of their own.`, '')
    out.push(table(['variant', 'ns/op (median)', 'ops/s', 'range over rounds (ns)'], Object.entries(ca.ops.variants).map(([n, x]) => [n, fmt(x.nsPerOp), fmt(x.opsPerSec, 0), `${fmt(x.minNsPerOp)} – ${fmt(x.maxNsPerOp)}`])), '')
    out.push(`**Hit ratio.** ${fmt(ca.ratio.requests, 0)} requests over ${fmt(ca.ratio.keys, 0)} keys with Zipf(0.9) popularity (the same seeded trace for both caches; a miss sets the key), room for ${fmt(ca.ratio.capacity, 0)} entries (\`maxEntries\` / lru-cache \`max\`), the first ${fmt(ca.ratio.warmup, 0)} requests not counted. The scan trace adds ${ca.ratio.scans}.`, '')
    out.push(table(['trace', 'bulwark', 'lru-cache', 'ratio'], Object.entries(ca.ratio.results).map(([n, x]) => [n, `${fmt(x.bulwark * 100, 1)}%`, `${fmt(x.lruCache * 100, 1)}%`, `${fmt(x.ratio, 2)}x`])), '')
    const m = ca.memory
    out.push(`**Memory**, each cache in a fresh \`node --expose-gc\` process, garbage collected before and after inserting ${fmt(m.entries, 0)} entries of a ${fmt(m.bulwark.jsonBytes, 0)}-byte JSON object (lru-cache holds a distinct live object per entry, as an application would).`, '')
    out.push(table(['cache', 'V8 heap growth (MB)', 'RSS growth (MB)', 'bytes stored (MB)', 'insert (ms)'], [['bulwark', fmt(m.bulwark.heapGrowthMB), fmt(m.bulwark.rssGrowthMB), fmt(m.bulwark.storedMB), fmt(m.bulwark.insertMs, 0)], ['lru-cache', fmt(m.lruCache.heapGrowthMB), fmt(m.lruCache.rssGrowthMB), '—', fmt(m.lruCache.insertMs, 0)]]), '')
    const c = ca.churn
    out.push(`**Churn**: N entries of 1 KiB objects, then for ${c.seconds} s every millisecond 20 new entries (evicting old ones) and 80 gets; event-loop delay by \`monitorEventLoopDelay\` (1 ms resolution), each cache in its own process, at two entry counts. Each bulwark get pays a \`JSON.parse\` (about 4 µs here) that lru-cache, holding live objects, does not; lru-cache pays in collection of its live heap instead, which grows with the entry count.`, '')
    out.push(table(['entries', 'cache', 'p50 (ms)', 'p99 (ms)', 'max (ms)', 'V8 heap (MB)', 'operations'], c.runs.flatMap((run) => [['bulwark', run.bulwark], ['lru-cache', run.lruCache]].map(([name, x]) => [fmt(run.entries, 0), name, fmt(x.p50Ms, 2), fmt(x.p99Ms, 2), fmt(x.maxMs, 2), fmt(x.heapMB, 0), fmt(x.ops, 0)]))), '')
    const d = ca.disk
    out.push(`**Disk tier after a restart**: one process writes ${fmt(d.entries, 0)} entries of a 1 KiB object, flushes and exits; a new process opens the directory and gets each key once (memory tier empty). bulwark ${fmt(d.results.bulwark.usPerGet, 2)} µs per get (synchronous); cacache ${fmt(d.results.cacache.usPerGet, 1)} µs per awaited get (with its JSON.parse).`, '')
    out.push(`**Sustained writes** with a disk tier (\`diskMaxBytes\` 512 MB), sets of a 1 KiB string over 200,000 keys for ${fmt(ca.writes.seconds, 0)} s, offered at 50,000 a second (1 ms ticks) and as fast as the loop goes (5 ms slices between event-loop turns). A set the writer cannot take (64 MiB of records already waiting) stays in memory and is counted as skipped.`, '')
    out.push(table(['offered', 'sets/s taken', 'disk writes/s', 'skipped', 'RSS by second (MB)', 'final flush (ms)', 'disk errors'], Object.entries(ca.writes.results).map(([n, x]) => [n, fmt(x.setsPerSecond, 0), fmt(x.diskWritesPerSecond, 0), fmt(x.skipped, 0), x.samples.map((y) => fmt(y.rssMB, 0)).join(', '), fmt(x.flushMs, 0), fmt(x.diskErrors, 0)])))
  }

  const br = r.breaker
  if (br) {
    out.push('', '## CircuitBreaker beside opossum and cockatiel', '')
    out.push(`One process, ${br.rounds} rounds of ${fmt(br.opsPerRound, 0)} calls per variant after ${br.warmupRounds} warmup rounds, rotating order, medians; awaited one by one and ${br.batch} at a time (\`Promise.all\`). The function fired is \`async () => 1\`.`, '')
    for (const [title, key] of [['Closed', 'closed'], ['Open (refusals)', 'open'], ['With a timeout per call', 'withTimeout']]) {
      out.push(`**${title}**`, '')
      out.push(table(['variant', 'ns per call (median)', 'calls/s', 'range over rounds (ns)'], Object.entries(br.scenarios[key]).map(([n, x]) => [n, fmt(x.nsPerOp), fmt(x.opsPerSec, 0), `${fmt(x.minNsPerOp)} – ${fmt(x.maxNsPerOp)}`])), '')
    }
    out.push('**What the parts cost**', '')
    out.push(table(['operation', 'ns/op', 'ops/s'], Object.entries(br.diagnostics).map(([n, x]) => [n, fmt(x.nsPerOp), fmt(x.opsPerSec, 0)])))
  }

  const po = r.pool
  if (po) {
    out.push('', '## ConnectionPool beside generic-pool and tarn', '')
    out.push(`One process, resources are plain objects made at once (so the pools themselves are measured), every pool with max ${po.max} and a 30 s acquire timeout. ${po.rounds} rounds of ${fmt(po.opsPerRound, 0)} acquire + release per pool after ${po.warmupRounds} warmup rounds, rotating order, medians. With ${po.callers} callers, each holds its resource over one \`await\` before releasing it, and the wait of every acquire is recorded.`, '')
    for (const [title, key] of [['One caller', 'oneCaller'], [`${po.callers} callers over max ${po.max}`, 'concurrent']]) {
      out.push(`**${title}**`, '')
      const rows = Object.entries(po.scenarios[key]).map(([n, x]) => [n, fmt(x.nsPerOp), fmt(x.opsPerSec, 0), fmt(x.opsPerSec / po.scenarios[key].bulwark.opsPerSec, 2) + 'x', x.p99WaitMs === undefined ? '—' : `${fmt(x.p50WaitMs, 3)} / ${fmt(x.p99WaitMs, 3)}`])
      out.push(table(['pool', 'ns per acquire + release', 'per second', 'vs bulwark', 'wait p50 / p99 (ms)'], rows), '')
    }
    out.push(`**Memory per idle slot**: ${fmt(po.idleSlots, 0)} resources acquired at once and released, V8 heap after GC in a fresh process per pool, the resources themselves excluded: bulwark ${fmt(po.memory.bulwark.bytesPerSlot, 0)} bytes, generic-pool ${fmt(po.memory['generic-pool'].bytesPerSlot, 0)}, tarn ${fmt(po.memory.tarn.bytesPerSlot, 0)}.`)
  }

  const rd = r.redis
  if (rd) {
    out.push('', '## RateLimiter through Redis beside rate-limiter-flexible', '')
    out.push(`Redis at ${rd.redis}, one process; ${rd.callers} callers each awaiting \`consume\` before the next, over ${fmt(rd.keys, 0)} keys, every request admitted (so each is decided by Redis); ${rd.rounds} rounds of ${fmt(rd.opsPerRound, 0)} after ${rd.warmupRounds} warmup rounds, rotating order, medians. Latency is each call's own, from the call to its await returning.`, '')
    out.push(table(['variant', 'ops/s', 'p50 (µs)', 'p99 (µs)'], Object.entries(rd.limiter.results).map(([n, x]) => [n, fmt(x.opsPerSec, 0), fmt(x.p50Us, 0), fmt(x.p99Us, 0)])), '')
    out.push(`bulwark sent ${fmt(rd.limiter.store.batches, 0)} batches in ${fmt(rd.limiter.store.roundTrips, 0)} round trips (${fmt(rd.limiter.store.commands, 0)} script calls).`, '')
    out.push('**Refusal of a key known refused** (the local refusal cache)', '')
    out.push(table(['operation', 'ns/op', 'ops/s'], Object.entries(rd.refusal.results).map(([n, x]) => [n, fmt(x.nsPerOp), fmt(x.opsPerSec, 0)])))
    if (rd.invalidation) {
      out.push('', '## PersistentCache on Redis', '')
      out.push(`**Invalidation seen by another process**: this process sets a key (written through), a second process fills its local tier from Redis and watches the key (a \`setImmediate\` loop); this process deletes it and the second reports when its local tier lost it. ${fmt(rd.invalidation.count, 0)} invalidations: p50 ${fmt(rd.invalidation.p50Ms, 2)} ms, p99 ${fmt(rd.invalidation.p99Ms, 2)} ms, max ${fmt(rd.invalidation.maxMs, 2)} ms.`, '')
      out.push(`**\`getAsync\` answered by the Redis tier** beside keyv with @keyv/redis: ${fmt(rd.keys, 0)} keys of a small JSON object written beforehand, ${rd.callers} callers, the bulwark cache holding 100 entries locally (so nearly every lookup goes to Redis and fills the local tier).`, '')
      out.push(table(['variant', 'gets/s', 'p50 (µs)', 'p99 (µs)'], Object.entries(rd.tier.results).map(([n, x]) => [n, fmt(x.opsPerSec, 0), fmt(x.p50Us, 0), fmt(x.p99Us, 0)])))
    }
  }

  const cr = r.criterion
  if (cr) {
    out.push('', '## Criterion: the limiter and breaker cores, one thread', '')
    out.push(`\`${cr.command}\`; the cores alone, no N-API. \`decide\` and the breaker read the real system clock (\`Clock::system()\`) unless a row says otherwise; limits are large so every request is allowed, and every breaker call succeeds.`, '')
    const about = {
      'limiter/bucket check': 'one key: hash, find the slot, read the clock, decide, take',
      'limiter/clock now_nanos': 'the system clock read alone (`Clock::system().now_nanos()`)',
      'limiter/bucket check, manual clock': 'one key as above, on a ManualClock instead of the system clock (includes the atomic add that moves it a nanosecond per call)',
      'limiter/decide 10k keys': '10,000 distinct keys in turn',
      'limiter/bucket wait_nanos+take': 'the bucket arithmetic alone',
      'limiter/fair queue push+grant': 'one waiter in and out of an empty fair queue',
      'limiter/fair queue push+grant, 1000 queued': 'the same with 1,000 waiters of 100 clients queued',
      'breaker/acquire+record, time window': 'one call through a closed breaker: admit it, record its success (two clock reads), over one-second buckets',
      'breaker/acquire+record, time window, manual clock': 'the same on a ManualClock: the state machine and window alone',
      'breaker/acquire+record, count window': 'the same over a window of the last 100 calls',
      'breaker/acquire, forced open (a refusal)': 'the decision to refuse a call while open',
    }
    const rows = Object.entries(cr.benches).map(([name, b]) => [`\`${name}\``, fmtNs(b.ns), `${fmtNs(b.lowNs)} – ${fmtNs(b.highNs)}`, about[name] || ''])
    out.push(table(['bench', 'time (median estimate)', 'confidence interval', 'what'], rows))
  }
  out.push('')
  return out.join('\n')
}

// ---- main ------------------------------------------------------------------------------------

function main() {
  const started = Date.now()
  const results = { flags: args.filter((a) => a !== '--write') }
  let env = process.env
  if (JS_PARTS.some(wants)) {
    const addon = prepareAddon()
    env = { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: addon.copy }
    results.environment = environment({ file: addon.file, builtAt: addon.builtAt })
  } else {
    results.environment = environment({ file: '(not loaded)', builtAt: '—' })
  }
  if (wants('criterion')) results.criterion = runCriterion()
  if (wants('limiter')) results.limiter = runJs('limiter', env)
  if (wants('memory')) results.memory = runJs('memory', env)
  if (wants('express')) results.express = runJs('express', env)
  if (wants('tracer')) results.tracer = runJs('tracer', env)
  if (wants('express-tracing')) results.expressTracing = runJs('express', env, ['--suite=tracing'], 'express-tracing')
  if (wants('cache')) results.cache = runJs('cache', env)
  if (wants('breaker')) results.breaker = runJs('breaker', env)
  if (wants('pool')) results.pool = runJs('pool', env)
  if (wants('observability')) results.observability = runJs('observability', env)
  if (wants('query')) results.query = runJs('query', env)
  if (wants('redis')) results.redis = runJs('redis', env)

  fs.mkdirSync(resultsDir, { recursive: true })
  fs.writeFileSync(path.join(resultsDir, 'summary.json'), JSON.stringify(results, null, 2) + '\n')
  const md = markdown(results)
  step(`targets (${Math.round((Date.now() - started) / 1000)} s)`)
  console.log(table(['what', 'target', 'measured', 'met'], targetRows(results).map(([a, b, c, d]) => [a, b, c, mark(d)])))
  if (write) {
    fs.writeFileSync(path.join(root, 'BENCHMARKS.md'), md)
    console.log('\nBENCHMARKS.md rewritten')
  } else {
    console.log('\npartial or quick run: BENCHMARKS.md left as it is (pass --write to rewrite it)')
  }
}

try {
  main()
} catch (error) {
  console.error(`\nbenches/run.js: ${error.message}`)
  process.exit(1)
}
