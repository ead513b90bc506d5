#!/usr/bin/env node
'use strict'
// DistributedTracer beside OpenTelemetry JS (@opentelemetry/sdk-trace-base, BatchSpanProcessor),
// in three parts:
//
//   spans     start, one attribute, end (sampled) and start, end (unsampled), in one process,
//             every variant in every round in rotating order; medians of the rounds. Both
//             tracers export through their batch processor to an exporter that discards.
//   export    100,000 ended spans exported over OTLP/HTTP protobuf to a sink in another
//             process: the event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution)
//             while the export runs, beside the same loop idle. Each tracer in its own process.
//   outage    the collector is down (connection refused) while spans keep coming for 60 s
//             (10 s with --quick): RSS and V8 heap every second, drops and export errors
//             counted; then the collector comes back and export must resume.
//
//   node benches/js/tracer.js [out.json] [--quick] [--parts=spans,export,outage]
const { fork } = require('node:child_process')
const http = require('node:http')
const { monitorEventLoopDelay } = require('node:perf_hooks')
const { once } = require('node:events')
const { writeReport, median } = require('./common')
const { otelTracer, otelDropped, bulwarkTracer, startSink } = require('./otel')

const now = () => process.hrtime.bigint()
let sink = 0

const round1 = (x) => Math.round(x * 10) / 10
const round2 = (x) => Math.round(x * 100) / 100

// ---- spans ------------------------------------------------------------------------------------

function spanVariants() {
  const sampled = bulwarkTracer({ sampleRate: 1 })
  const unsampled = bulwarkTracer({ sampleRate: 0 })
  const otelSampled = otelTracer({ sampleRate: 1 })
  const otelUnsampled = otelTracer({ sampleRate: 0 })
  const subjects = { sampled, unsampled, otelSampled, otelUnsampled }
  const table = {
    'bulwark sampled: start, setAttribute, end': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        const span = sampled.startSpan('GET /api/budget')
        span.setAttribute('http.response.status_code', 200)
        span.end()
      }
      return now() - t0
    },
    'OTel JS sampled: startSpan, setAttribute, end': (ops) => {
      const tracer = otelSampled.tracer
      const t0 = now()
      for (let i = 0; i < ops; i++) {
        const span = tracer.startSpan('GET /api/budget')
        span.setAttribute('http.response.status_code', 200)
        span.end()
      }
      return now() - t0
    },
    'bulwark unsampled: start, end': (ops) => {
      const t0 = now()
      for (let i = 0; i < ops; i++) unsampled.startSpan('GET /api/budget').end()
      return now() - t0
    },
    'OTel JS unsampled: startSpan, end': (ops) => {
      const tracer = otelUnsampled.tracer
      const t0 = now()
      for (let i = 0; i < ops; i++) tracer.startSpan('GET /api/budget').end()
      return now() - t0
    },
  }
  return { table, subjects }
}

async function measureSpans(quick) {
  const warmupRounds = quick ? 2 : 3
  const rounds = quick ? 5 : 11
  const ops = quick ? 20_000 : 50_000
  const { table, subjects } = spanVariants()
  const names = Object.keys(table)
  const samples = Object.fromEntries(names.map((n) => [n, []]))
  for (let round = 0; round < warmupRounds + rounds; round++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(round + j) % names.length]
      const ns = Number(table[name](ops))
      if (round >= warmupRounds) samples[name].push(ns / ops)
      // let both batch processors drain between variants, as they would between requests
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const result = {}
  for (const name of names) {
    const ns = median(samples[name])
    result[name] = { nsPerOp: round1(ns), opsPerSec: Math.round(1e9 / ns), minNsPerOp: round1(Math.min(...samples[name])), maxNsPerOp: round1(Math.max(...samples[name])) }
  }
  const bm = subjects.sampled.metrics()
  const drops = {
    bulwark: { started: bm.started, exported: bm.exported, dropped: bm.dropped },
    otel: { exported: subjects.otelSampled.exporter.exported, dropped: otelDropped(subjects.otelSampled.processor) },
  }
  await subjects.sampled.shutdown()
  await subjects.unsampled.shutdown()
  await subjects.otelSampled.provider.shutdown()
  await subjects.otelUnsampled.provider.shutdown()
  return { rounds, warmupRounds, opsPerRound: ops, variants: result, drops }
}

function childMessage(child, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (m && m.type === type) {
        child.off('exit', onExit)
        child.off('message', onMessage)
        resolve(m)
      }
    }
    const onExit = (code) => reject(new Error(`bench child exited (${code}) before sending ${type}`))
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

// ---- export of 100,000 spans: event-loop delay ------------------------------------------------

const EXPORT_SPANS = 100_000

/** In a child: end 100,000 spans, then measure the loop idle and while the export runs. */
async function exportChild(subject, url) {
  const batch = { maxQueueSize: EXPORT_SPANS }
  // OTel JS's forceFlush sends every batch at once, and its exporter refuses more than 30 in
  // flight by default: the limit is raised to the number of batches so that none is refused
  const concurrencyLimit = Math.ceil(EXPORT_SPANS / 512) + 16
  const made = subject === 'bulwark' ? bulwarkTracer({ exporter: { url }, batch }) : otelTracer({ exporter: { url }, batch, concurrencyLimit })
  const start = subject === 'bulwark' ? (name) => made.startSpan(name) : (name) => made.tracer.startSpan(name)
  const flush = subject === 'bulwark' ? () => made.flush() : () => made.processor.forceFlush()
  const spanBatch = (n) => {
    for (let i = 0; i < n; i++) {
      const span = start('SELECT budget')
      span.setAttribute('db.system.name', 'postgresql')
      span.setAttribute('db.query.text', 'SELECT * FROM budget WHERE team_id = $1')
      span.setAttribute('db.response.returned_rows', i & 63)
      span.end()
    }
  }
  // warm up the encoder, the connection and the JIT
  spanBatch(4096)
  await flush()

  const histogram = monitorEventLoopDelay({ resolution: 1 })
  const idleMs = 1000
  histogram.enable()
  await new Promise((resolve) => setTimeout(resolve, idleMs))
  histogram.disable()
  const idle = { p50Ms: histogram.percentile(50) / 1e6, p99Ms: histogram.percentile(99) / 1e6, maxMs: histogram.max / 1e6 }

  // the spans are made first (that time is the application's, not the export's) ...
  spanBatch(EXPORT_SPANS)
  histogram.reset()
  // ... then the loop is watched from the moment the export starts until it is done, and for
  // at least as long as the idle sample so that both have as many samples
  const t0 = performance.now()
  histogram.enable()
  await flush()
  const exportMs = performance.now() - t0
  if (exportMs < idleMs) await new Promise((resolve) => setTimeout(resolve, idleMs - exportMs))
  histogram.disable()
  const during = { p50Ms: histogram.percentile(50) / 1e6, p99Ms: histogram.percentile(99) / 1e6, maxMs: histogram.max / 1e6 }
  let exported
  let dropped
  if (subject === 'bulwark') {
    const m = made.metrics()
    exported = m.exported
    dropped = m.dropped
    await made.shutdown()
  } else {
    exported = null
    dropped = otelDropped(made.processor)
    await made.provider.shutdown()
  }
  process.send({ type: 'result', idle, during, exportMs, exported, dropped })
}

async function measureExport() {
  const results = {}
  for (const subject of ['bulwark', 'otel']) {
    const sinkServer = await startSink()
    const child = fork(__filename, [`--export-child=${subject}`, sinkServer.url], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const result = await childMessage(child, 'result')
    await once(child, 'exit')
    sinkServer.server.close()
    const r = (x) => round2(x)
    results[subject] = {
      idle: { p50Ms: r(result.idle.p50Ms), p99Ms: r(result.idle.p99Ms), maxMs: r(result.idle.maxMs) },
      during: { p50Ms: r(result.during.p50Ms), p99Ms: r(result.during.p99Ms), maxMs: r(result.during.maxMs) },
      p99OverIdleMs: r(result.during.p99Ms - result.idle.p99Ms),
      exportMs: Math.round(result.exportMs),
      exported: result.exported,
      dropped: result.dropped,
      sinkRequests: sinkServer.stats.requests,
      sinkBytes: sinkServer.stats.bytes,
    }
  }
  return { spans: EXPORT_SPANS, results, target: { p99OverIdleMs: 1, met: results.bulwark.p99OverIdleMs <= 1 } }
}

// ---- collector outage ------------------------------------------------------------------------

/** A port that was free a moment ago (listened on and closed): nothing answers there. */
async function deadPort() {
  const probe = http.createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address()
  probe.close()
  await once(probe, 'close')
  return port
}

/**
 * In a child: spans at a steady rate (SPANS_PER_TICK every ms) against a dead collector for
 * `seconds`, sampling memory every second; then the parent starts a collector on that port
 * and the child keeps going until export resumes (or 15 s pass).
 */
async function outageChild(url, seconds) {
  const tracer = bulwarkTracer({ exporter: { url } })
  const SPANS_PER_TICK = 10
  let made = 0
  const timer = setInterval(() => {
    for (let i = 0; i < SPANS_PER_TICK; i++) {
      const span = tracer.startSpan('GET /api/reports/:id')
      span.setAttribute('http.response.status_code', 200)
      span.setAttribute('url.path', '/api/reports/42')
      span.end()
    }
    made += SPANS_PER_TICK
  }, 1)
  const samples = []
  const t0 = Date.now()
  for (let s = 1; s <= seconds; s++) {
    await new Promise((resolve) => setTimeout(resolve, t0 + s * 1000 - Date.now()))
    const m = tracer.metrics()
    const mem = process.memoryUsage()
    samples.push({ second: s, rssMB: round1(mem.rss / 1048576), heapMB: round1(mem.heapUsed / 1048576), spans: made, exported: m.exported, dropped: m.dropped, exportErrors: m.exportErrors })
  }
  const down = tracer.metrics()
  process.send({ type: 'down', samples })
  await childMessage(process, 'collector-up')
  const t1 = Date.now()
  let resumedAfterMs = null
  while (Date.now() - t1 < 15_000) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    if (tracer.metrics().exported > down.exported) {
      resumedAfterMs = Date.now() - t1
      break
    }
  }
  clearInterval(timer)
  await tracer.shutdown()
  const end = tracer.metrics()
  process.send({ type: 'result', resumedAfterMs, spans: made, exported: end.exported, dropped: end.dropped, exportErrors: end.exportErrors })
}

async function measureOutage(quick) {
  const seconds = quick ? 10 : 60
  const port = await deadPort()
  const url = `http://127.0.0.1:${port}/v1/traces`
  const child = fork(__filename, [`--outage-child=${seconds}`, url], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const { samples } = await childMessage(child, 'down')
  const sinkServer = await startSink(port)
  child.send({ type: 'collector-up' })
  const result = await childMessage(child, 'result')
  await once(child, 'exit')
  sinkServer.server.close()
  // flat: after the queue has filled (the first 10 s, or the first quarter with --quick), RSS
  // stays within 8 MB of where it was
  const settle = Math.max(1, Math.min(10, Math.floor(seconds / 4)))
  const settled = samples[settle - 1].rssMB
  const maxAfter = Math.max(...samples.slice(settle).map((s) => s.rssMB))
  const last = samples[samples.length - 1]
  return {
    seconds,
    spansPerSecond: Math.round(last.spans / seconds),
    samples,
    rssAtSettleMB: settled,
    settleSecond: settle,
    rssMaxAfterMB: maxAfter,
    rssGrowthMB: round1(maxAfter - settled),
    heapFirstMB: samples[0].heapMB,
    heapLastMB: last.heapMB,
    droppedWhileDown: last.dropped,
    exportErrorsWhileDown: last.exportErrors,
    resumedAfterMs: result.resumedAfterMs,
    exportedAfter: result.exported,
    target: { rssGrowthMB: 8, met: maxAfter - settled <= 8 && last.dropped > 0 && result.resumedAfterMs !== null },
  }
}

// ---- main -------------------------------------------------------------------------------------

async function main(args) {
  const quick = args.includes('--quick')
  const outPath = args.find((a) => !a.startsWith('--'))
  const partsArg = args.find((a) => a.startsWith('--parts='))
  const parts = partsArg ? partsArg.slice('--parts='.length).split(',') : ['spans', 'export', 'outage']
  const skipped = (name) => {
    process.stderr.write(`tracer: ${name} skipped\n`)
    return null
  }
  process.stderr.write('tracer: spans\n')
  const spans = parts.includes('spans') ? await measureSpans(quick) : skipped('spans')
  process.stderr.write('tracer: export of 100,000 spans\n')
  const exportResult = parts.includes('export') ? await measureExport() : skipped('export')
  process.stderr.write(`tracer: collector down for ${quick ? 10 : 60} s\n`)
  const outage = parts.includes('outage') ? await measureOutage(quick) : skipped('outage')
  if (!spans || !exportResult || !outage) {
    // a partial run prints what it measured and writes no report
    console.log(JSON.stringify({ spans, export: exportResult, outage }, null, 2))
    return
  }

  const v = spans.variants
  const bs = v['bulwark sampled: start, setAttribute, end']
  const os = v['OTel JS sampled: startSpan, setAttribute, end']
  const bu = v['bulwark unsampled: start, end']
  const report = {
    bench: 'tracer',
    date: new Date().toISOString(),
    node: process.version,
    quick,
    spans,
    export: exportResult,
    outage,
    ratios: {
      sampledVsOtel: { value: round2(bs.opsPerSec / os.opsPerSec), target: 5, kind: 'min', met: bs.opsPerSec / os.opsPerSec >= 5 },
      unsampledNs: { value: bu.nsPerOp, target: 100, kind: 'max', met: bu.nsPerOp <= 100 },
    },
    sink: Number.isFinite(sink) ? 'ok' : String(sink),
  }

  const lines = ['', `spans (${spans.rounds} rounds of ${spans.opsPerRound} after ${spans.warmupRounds} warmup; medians)`]
  const row = (cells) => lines.push(cells.map((c, i) => (i === 0 ? String(c).padEnd(48) : String(c).padStart(12))).join(''))
  row(['variant', 'ns/op', 'ops/s', 'min ns', 'max ns'])
  for (const [name, r] of Object.entries(v)) row([name, r.nsPerOp, r.opsPerSec.toLocaleString('en-US'), r.minNsPerOp, r.maxNsPerOp])
  lines.push(`drops: ${JSON.stringify(spans.drops)}`)
  for (const [name, r] of Object.entries(report.ratios)) lines.push(`${name.padEnd(24)} ${String(r.value).padStart(8)}  target ${r.kind === 'min' ? '>=' : '<='} ${r.target}  ${r.met ? 'met' : 'MISSED'}`)
  lines.push('', `export of ${EXPORT_SPANS.toLocaleString('en-US')} spans over OTLP/HTTP protobuf: event-loop delay (ms)`)
  for (const [name, r] of Object.entries(exportResult.results)) {
    lines.push(`${name.padEnd(10)} idle p99 ${r.idle.p99Ms}  during p99 ${r.during.p99Ms} (max ${r.during.maxMs})  over idle ${r.p99OverIdleMs}  export took ${r.exportMs} ms, sink got ${r.sinkRequests} requests / ${r.sinkBytes} bytes`)
  }
  lines.push(`target: bulwark p99 within 1 ms of idle: ${exportResult.target.met ? 'met' : 'MISSED'}`)
  lines.push('', `collector down for ${outage.seconds} s at ${outage.spansPerSecond} spans/s: RSS ${outage.rssAtSettleMB} MB at ${outage.settleSecond} s, at most ${outage.rssMaxAfterMB} MB after (growth ${outage.rssGrowthMB} MB); heap ${outage.heapFirstMB} -> ${outage.heapLastMB} MB`)
  lines.push(`dropped ${outage.droppedWhileDown}, export errors ${outage.exportErrorsWhileDown}; export resumed ${outage.resumedAfterMs} ms after the collector came back: ${outage.target.met ? 'met' : 'MISSED'}`)
  writeReport(outPath, report, lines)
}

const exportArg = process.argv.find((a) => a.startsWith('--export-child='))
const outageArg = process.argv.find((a) => a.startsWith('--outage-child='))
if (exportArg) {
  exportChild(exportArg.slice('--export-child='.length), process.argv[process.argv.length - 1]).catch((error) => {
    console.error(error)
    process.exit(1)
  })
} else if (outageArg) {
  outageChild(process.argv[process.argv.length - 1], Number(outageArg.slice('--outage-child='.length))).catch((error) => {
    console.error(error)
    process.exit(1)
  })
} else {
  main(process.argv.slice(2)).catch((error) => {
    console.error(error)
    process.exit(1)
  })
}
