#!/usr/bin/env node
'use strict'
// Server CPU per request of an Express hello world, bare and with a rate-limit middleware:
//   bare                no middleware
//   floor               hand-written JS: req.ip, a Map counter, draft-8 RateLimit-Policy/RateLimit
//   bulwark             require('bulwark/express').rateLimit with a roomy RateLimiter, draft-8
//   express-rate-limit  very high limit, standardHeaders 'draft-8', legacyHeaders false
//   bare (control)      bare again: what it measures over bare is noise
//
//   node benches/js/express.js [out.json] [--quick]
//
// The server runs in a child process so the client's CPU is not counted. Each round starts a
// fresh server per variant on 127.0.0.1 (port 0) and warms it up; then, in rotating order, each
// server is told over IPC to take process.cpuUsage(), the parent sends it a burst of requests
// with autocannon, and the server reports its CPU delta and the requests it served. Bursts of
// all variants alternate, so whatever else the machine does at a moment falls on all of them.
// Figures are medians over rounds; the overhead of a variant is the median over rounds of
// (variant - bare of the same round).
//
// On a small shared machine two identical servers differ by several µs per request, as much as
// a middleware costs, so a second measure follows: each middleware's own time inside the
// server (from its call to its `next`, under the same HTTP load), which is what it adds to a
// request on the JS thread, with far less noise.
const { fork } = require('node:child_process')
const fs = require('node:fs')
const { writeReport, median } = require('./common')
const http = require('node:http')

// Two suites, run as separate invocations (`--suite=tracing` for the second):
//   ratelimit  the rate-limit middlewares beside bare Express (above)
//   tracing    bulwark's `tracing` and OTel JS's equivalent at 100% sampling, each exporting
//              OTLP/HTTP protobuf to a sink in the parent process, alone and behind a rate
//              limiter (bulwark's rateLimit; express-rate-limit for the OTel stack)
const SUITES = {
  ratelimit: {
    variants: ['bare', 'floor', 'bulwark', 'express-rate-limit', 'bare (control)'],
    timed: ['floor', 'bulwark', 'express-rate-limit'],
  },
  tracing: {
    variants: ['bare', 'bulwark tracing', 'OTel JS tracing', 'bulwark rateLimit + tracing', 'express-rate-limit + OTel JS tracing', 'bare (control)', 'AsyncLocalStorage.run only', 'bulwark tracing, exporter none'],
    // bulwark's tracing does its work in three places, each timed: on the request (call to
    // next), at the response's end (the finish channel's publish and the response's 'close'
    // listeners: the span ends), and on the export thread (its own CPU clock,
    // `metrics().exportCpuMs`)
    timed: ['bulwark tracing'],
  },
}
/** The bulwark tracer of this server process, when its variant has one (its export CPU is read). */
let benchTracer = null
const LIMIT = 1e9
const WINDOW_S = 60
// autocannon notices that `amount` is reached on its sampling tick (1 s by default)
const SAMPLE_MS = 10

/** The middlewares of `variant` (an empty list for bare); `sink` is the OTLP URL for tracing. */
function middlewaresOf(variant, sink) {
  if (variant === 'bare') return []
  if (variant === 'AsyncLocalStorage.run only') {
    // what keeping any context through the handler chain costs on Node 20 (async hooks)
    const { AsyncLocalStorage } = require('node:async_hooks')
    const storage = new AsyncLocalStorage()
    return [(req, res, next) => storage.run(req, next)]
  }
  if (variant === 'bulwark tracing, exporter none') {
    const { tracing } = require('../../express.js')
    const { bulwarkTracer } = require('./otel')
    return [tracing({ tracer: bulwarkTracer({ serviceName: 'bench' }) })]
  }
  if (variant === 'bulwark tracing' || variant === 'bulwark rateLimit + tracing') {
    const { tracing } = require('../../express.js')
    const { bulwarkTracer } = require('./otel')
    const tracer = bulwarkTracer({ serviceName: 'bench', exporter: { url: sink } })
    benchTracer = tracer
    const traced = tracing({ tracer })
    return variant === 'bulwark tracing' ? [traced] : [...middlewaresOf('bulwark'), traced]
  }
  if (variant === 'OTel JS tracing' || variant === 'express-rate-limit + OTel JS tracing') {
    const { otelTracer, otelTracingMiddleware } = require('./otel')
    const { tracer } = otelTracer({ serviceName: 'bench', exporter: { url: sink } })
    const traced = otelTracingMiddleware(tracer)
    return variant === 'OTel JS tracing' ? [traced] : [...middlewaresOf('express-rate-limit'), traced]
  }
  return [middlewareOf(variant)]
}

/** The rate-limit middleware of `variant`. */
function middlewareOf(variant) {
  if (variant === 'floor') {
    const counts = new Map()
    const policy = `"default";q=${LIMIT};w=${WINDOW_S}`
    return function floorRateLimit(req, res, next) {
      const key = req.ip
      const used = (counts.get(key) || 0) + 1
      counts.set(key, used)
      res.setHeader('RateLimit-Policy', policy)
      res.setHeader('RateLimit', `"default";r=${LIMIT - used};t=${WINDOW_S}`)
      next()
    }
  }
  if (variant === 'bulwark') {
    const { RateLimiter } = require('../..')
    const { rateLimit } = require('../../express.js')
    return rateLimit({ limiter: new RateLimiter({ capacity: 1e9, refillPerSecond: 1e9 }), headers: 'draft-8' })
  }
  if (variant === 'express-rate-limit') {
    const { rateLimit } = require('express-rate-limit')
    return rateLimit({ windowMs: WINDOW_S * 1000, limit: LIMIT, standardHeaders: 'draft-8', legacyHeaders: false })
  }
  throw new Error(`unknown variant ${variant}`)
}

/**
 * The app of `variant`. With `timed`, the middleware (an empty one for bare) is wrapped so that
 * the time from its call to its `next` is summed into `timing`.
 */
function makeApp(variant, timed, timing, sink) {
  const express = require('express')
  const app = express()
  const middlewares = middlewaresOf(variant, sink)
  let middleware = middlewares.length === 1 ? middlewares[0] : null
  if (middlewares.length > 1) for (const m of middlewares) app.use(m)
  if (timed) {
    const inner = middleware || ((req, res, next) => next())
    // bulwark's tracing ends its span from Node's 'http.server.response.finish' diagnostics
    // channel: the channel's publish (its subscribers' work, which exists only because the
    // middleware subscribes) is timed as part of the response's end. The channel object is the
    // one Node's HTTP server publishes on; once subscribed, its prototype's publish calls the
    // subscribers, so the own property looks it up there on every call.
    const finishChannel = require('node:diagnostics_channel').channel('http.server.response.finish')
    finishChannel.publish = function timedPublish(message) {
      const c0 = process.hrtime.bigint()
      try {
        return Object.getPrototypeOf(this).publish.call(this, message)
      } finally {
        timing.closeNs += process.hrtime.bigint() - c0
      }
    }
    middleware = (req, res, next) => {
      // the response's 'close' listeners (where a middleware without the channel would end its
      // span, and where an aborted request's span ends), timed too
      const emit = res.emit
      res.emit = function timedEmit(event) {
        if (event !== 'close') return emit.apply(this, arguments)
        const c0 = process.hrtime.bigint()
        try {
          return emit.apply(this, arguments)
        } finally {
          timing.closeNs += process.hrtime.bigint() - c0
        }
      }
      const t0 = process.hrtime.bigint()
      inner(req, res, (error) => {
        timing.ns += process.hrtime.bigint() - t0
        timing.calls++
        next(error)
      })
    }
  }
  if (middleware) app.use(middleware)
  app.get('/', (req, res) => {
    res.send('Hello World!')
  })
  return app
}

function server(variant, timed, sink) {
  const timing = { ns: 0n, calls: 0, closeNs: 0n }
  const app = makeApp(variant, timed, timing, sink)
  let served = 0
  let start = null
  let first = 0n
  let last = 0n
  const listener = app.listen(0, '127.0.0.1', () => {
    process.send({ type: 'listening', port: listener.address().port })
  })
  listener.on('request', () => {
    last = process.hrtime.bigint()
    if (served++ === 0) first = last
  })
  process.on('message', (message) => {
    if (message === 'start') {
      served = 0
      timing.ns = 0n
      timing.calls = 0
      timing.closeNs = 0n
      start = { cpu: process.cpuUsage(), exportCpuMs: benchTracer ? benchTracer.metrics().exportCpuMs : 0 }
      process.send({ type: 'started' })
    } else if (message === 'snapshot') {
      const cpu = process.cpuUsage(start.cpu)
      snapshot(cpu)
    }
  })
  async function snapshot(cpu) {
    // the burst's spans are exported before the export thread's CPU is read
    if (benchTracer) await benchTracer.flush()
    const exportCpuMs = benchTracer ? benchTracer.metrics().exportCpuMs - start.exportCpuMs : 0
    {
      process.send({
        type: 'snapshot',
        userUs: cpu.user,
        systemUs: cpu.system,
        served,
        // from the first request of the burst to the last one (its response is not timed)
        activeSeconds: Number(last - first) / 1e9,
        ownNs: Number(timing.ns),
        ownCalls: timing.calls,
        closeNs: Number(timing.closeNs),
        exportCpuMs,
      })
    }
  }
}

function nextMessage(child, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message && message.type === type) {
        cleanup()
        resolve(message)
      }
    }
    const onExit = (code) => {
      cleanup()
      reject(new Error(`server exited with ${code} while waiting for ${type}`))
    }
    const cleanup = () => {
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    child.on('message', onMessage)
    child.on('exit', onExit)
  })
}

function headersOf(port) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
      res.resume()
      res.on('end', () => {
        const picked = {}
        for (const [name, value] of Object.entries(res.headers)) if (name.startsWith('ratelimit') || name.startsWith('x-ratelimit') || name === 'traceparent') picked[name] = value
        resolve({ status: res.statusCode, headers: picked })
      })
    }).on('error', reject)
  })
}

/** Starts the server of `variant` in a child process and warms it up. */
async function startServer(variant, warmup, timed, sink) {
  const autocannon = require('autocannon')
  const args = [`--server=${variant === 'bare (control)' ? 'bare' : variant}`, ...(timed ? ['--timed'] : []), ...(sink ? [`--sink=${sink}`] : [])]
  const child = fork(__filename, args, { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const { port } = await nextMessage(child, 'listening')
  const url = `http://127.0.0.1:${port}/`
  const sample = await headersOf(port)
  await autocannon({ url, connections: 10, amount: warmup, sampleInt: SAMPLE_MS })
  return { variant, child, url, sample }
}

/** Sends `requests` requests to `server` and returns what the server measured meanwhile. */
async function burst(server, requests) {
  const autocannon = require('autocannon')
  server.child.send('start')
  await nextMessage(server.child, 'started')
  const result = await autocannon({ url: server.url, connections: 10, amount: requests, sampleInt: SAMPLE_MS })
  server.child.send('snapshot')
  const snap = await nextMessage(server.child, 'snapshot')
  if (result['2xx'] !== requests || result.errors || result.timeouts || result.non2xx) {
    throw new Error(`${server.variant}: ${result['2xx']} 2xx of ${requests} (errors ${result.errors}, timeouts ${result.timeouts}, non2xx ${result.non2xx})`)
  }
  return {
    cpuUs: snap.userUs + snap.systemUs,
    userUs: snap.userUs,
    systemUs: snap.systemUs,
    served: snap.served,
    seconds: snap.activeSeconds,
    ownNs: snap.ownNs,
    ownCalls: snap.ownCalls,
    closeNs: snap.closeNs,
    exportCpuMs: snap.exportCpuMs,
  }
}

/**
 * One round: a fresh server per variant, each warmed up as it starts, then `warmBursts`
 * unmeasured and `bursts` measured bursts per variant, all in the same rotating order.
 *
 * The unmeasured bursts finish the warm-up in the rotation itself. V8 keeps optimizing a fresh
 * server's request path for its first ~10,000 requests; but warming every server that long up
 * front, one after the other, made the first one started measure about 20 µs a request above
 * its twin started later (it then idled longest). In the rotation every server warms as long
 * and waits as briefly before it is measured.
 */
async function runRound(round, variants, { bursts, warmBursts, burstRequests, warmup, timed = false, sink }) {
  const servers = []
  try {
    for (const variant of variants) servers.push(await startServer(variant, warmup, timed, sink))
    const totals = servers.map(() => ({ cpuUs: 0, userUs: 0, systemUs: 0, served: 0, seconds: 0, ownNs: 0, ownCalls: 0, closeNs: 0, exportCpuMs: 0 }))
    for (let b = 0; b < warmBursts + bursts; b++) {
      for (let j = 0; j < servers.length; j++) {
        const i = (round + b + j) % servers.length
        const r = await burst(servers[i], burstRequests)
        if (b < warmBursts) continue
        for (const k of Object.keys(r)) totals[i][k] += r[k]
      }
    }
    return Object.fromEntries(servers.map((s, i) => {
      const t = totals[i]
      return [s.variant, {
        cpuUsPerRequest: t.cpuUs / t.served,
        userUsPerRequest: t.userUs / t.served,
        systemUsPerRequest: t.systemUs / t.served,
        served: t.served,
        reqPerSec: t.served / t.seconds,
        ownUsPerCall: t.ownCalls ? t.ownNs / t.ownCalls / 1000 : null,
        closeUsPerCall: t.ownCalls ? t.closeNs / t.ownCalls / 1000 : null,
        exportCpuUsPerRequest: (t.exportCpuMs * 1000) / t.served,
        sample: s.sample,
      }]
    }))
  } finally {
    for (const s of servers) s.child.kill()
  }
}

const sd = (xs) => {
  if (xs.length < 2) return NaN
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length
  return Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1))
}
const r2 = (x) => (Number.isFinite(x) ? Math.round(x * 100) / 100 : null)

/** The fields of a report that describe the run itself, the same for both suites. */
function runFields({ quick, rounds, bursts, warmBursts, burstRequests, warmup, variants, noise, controlDiffs }) {
  return {
    date: new Date().toISOString(),
    node: process.version,
    quick,
    rounds,
    requestsPerRun: bursts * burstRequests,
    bursts,
    burstRequests,
    warmupRequests: warmup,
    warmBursts,
    connections: 10,
    variants,
    noiseUsPerRequest: r2(noise),
    controlDiffsUsPerRequest: controlDiffs.map(r2),
  }
}

/** The table of variants for the console: a header and a line per variant. */
function variantLines(variants, width) {
  const lines = [`${'variant'.padEnd(width)}${'CPU µs/req'.padStart(12)}${'over bare'.padStart(12)}${'user only'.padStart(12)}${'req/s'.padStart(10)}  rounds (µs/req)`]
  for (const [v, r] of Object.entries(variants)) {
    lines.push(`${v.padEnd(width)}${String(r.cpuUsPerRequest).padStart(12)}${String(r.overheadUsPerRequest).padStart(12)}${String(r.userOverheadUsPerRequest).padStart(12)}${String(r.reqPerSec).padStart(10)}  ${r.runs.map((x) => x.cpuUsPerRequest).join(' ')}`)
  }
  return lines
}

async function main(args) {
  const quick = args.includes('--quick')
  const outPath = args.find((a) => !a.startsWith('--'))
  // Two servers of the same code differ by several percent for the life of the process (code
  // and heap layout), so more rounds of fresh servers beat longer runs of the same ones.
  const rounds = quick ? 1 : 5
  const bursts = quick ? 3 : 4
  const burstRequests = quick ? 1_500 : 2_500
  // Each server takes `warmup` requests as it starts and `warmBursts` unmeasured bursts in the
  // rotation (see runRound): the first ~10,000 requests of a fresh server cost more each than
  // later ones (most for the servers with the most code on their request path), and a
  // long-running service's steady cost per request is what is measured.
  const warmup = quick ? 1_000 : 2_000
  const warmBursts = quick ? 2 : 4
  const suiteArg = args.find((a) => a.startsWith('--suite='))
  const suiteName = suiteArg ? suiteArg.slice('--suite='.length) : 'ratelimit'
  const suite = SUITES[suiteName]
  if (!suite) throw new Error(`unknown suite ${suiteName}; known: ${Object.keys(SUITES).join(', ')}`)
  const VARIANTS = suite.variants
  const MIDDLEWARES = suite.timed
  // the tracing suite's collector: it reads every export whole and answers 200
  const sink = suiteName === 'tracing' ? await require('./otel').startSink() : null

  const runs = Object.fromEntries(VARIANTS.map((v) => [v, []]))
  for (let round = 0; round < rounds; round++) {
    process.stderr.write(`express ${suiteName}: round ${round + 1} of ${rounds}\n`)
    const result = await runRound(round, VARIANTS, { bursts, warmBursts, burstRequests, warmup, sink: sink && sink.url })
    for (const v of VARIANTS) runs[v].push(result[v])
  }
  let timed = null
  if (MIDDLEWARES.length > 0) {
    process.stderr.write('express: the middlewares\' own time\n')
    timed = await runRound(0, ['bare', ...MIDDLEWARES], { bursts: quick ? 2 : 4, warmBursts, burstRequests, warmup, timed: true, sink: sink && sink.url })
  }
  if (sink) sink.server.close()

  const bare = runs.bare
  const variants = {}
  for (const v of VARIANTS) {
    const list = runs[v]
    variants[v] = {
      cpuUsPerRequest: r2(median(list.map((r) => r.cpuUsPerRequest))),
      overheadUsPerRequest: v === 'bare' ? 0 : r2(median(list.map((r, i) => r.cpuUsPerRequest - bare[i].cpuUsPerRequest))),
      userOverheadUsPerRequest: v === 'bare' ? 0 : r2(median(list.map((r, i) => r.userUsPerRequest - bare[i].userUsPerRequest))),
      reqPerSec: Math.round(median(list.map((r) => r.reqPerSec))),
      runs: list.map((r) => ({
        cpuUsPerRequest: r2(r.cpuUsPerRequest),
        userUsPerRequest: r2(r.userUsPerRequest),
        systemUsPerRequest: r2(r.systemUsPerRequest),
        served: r.served,
        reqPerSec: Math.round(r.reqPerSec),
      })),
      sample: list[0].sample,
    }
  }

  // The noise of an overhead: the standard error of a median of per-round differences, from
  // what the control (a second bare server) differs from bare by, round by round.
  const controlDiffs = runs['bare (control)'].map((r, i) => r.cpuUsPerRequest - bare[i].cpuUsPerRequest)
  const noise = (1.2533 * sd(controlDiffs)) / Math.sqrt(rounds)
  const overhead = (v) => variants[v].overheadUsPerRequest
  // A ratio is resolved when its target lies more than two of its standard errors away.
  const ratio = (num, den, target) => {
    const value = num / den
    if (!(den > 0) || !Number.isFinite(value)) return { value: null, target, met: false, resolved: false }
    const error = (noise / den) * Math.sqrt(1 + value * value)
    return { value: r2(value), error: r2(error), target, met: value <= target, resolved: Math.abs(value - target) > 2 * error }
  }
  if (suiteName === 'tracing') {
    tracingReport({ outPath, quick, rounds, bursts, warmBursts, burstRequests, warmup, variants, noise, controlDiffs, ratio, overhead, sink, timed })
    return
  }
  const own = Object.fromEntries(['bare', ...MIDDLEWARES].map((v) => [v === 'bare' ? 'empty (timing only)' : v, r2(timed[v].ownUsPerCall)]))
  const ownOver = (v) => timed[v].ownUsPerCall - timed.bare.ownUsPerCall
  const ownRatio = (num, den, target) => {
    const value = ownOver(num) / ownOver(den)
    return { value: r2(value), target, met: value <= target }
  }
  const report = {
    bench: 'express',
    ...runFields({ quick, rounds, bursts, warmBursts, burstRequests, warmup, variants, noise, controlDiffs }),
    ratios: {
      bulwarkVsFloorOverhead: ratio(Math.max(0, overhead('bulwark')), overhead('floor'), 1.3),
      bulwarkVsExpressRateLimitOverhead: ratio(Math.max(0, overhead('bulwark')), overhead('express-rate-limit'), 0.35),
    },
    ownTime: {
      usPerCall: own,
      usOverTiming: Object.fromEntries(MIDDLEWARES.map((v) => [v, r2(ownOver(v))])),
      requests: timed.bulwark.served,
      ratios: {
        bulwarkVsFloor: ownRatio('bulwark', 'floor', 1.3),
        bulwarkVsExpressRateLimit: ownRatio('bulwark', 'express-rate-limit', 0.35),
      },
    },
  }

  const lines = ['', `Express hello world, server CPU per request (${rounds} round(s); per variant and round ${bursts} bursts of ${burstRequests} requests, 10 connections)`]
  lines.push(...variantLines(variants, 22))
  lines.push(`noise (standard error of an overhead, from the control): ${report.noiseUsPerRequest} µs/req`)
  for (const [name, r] of Object.entries(report.ratios)) {
    lines.push(`${name.padEnd(36)} ${String(r.value).padStart(6)} ± ${r.error}  target <= ${r.target}  ${r.met ? 'met' : 'MISSED'}${r.resolved ? '' : ' (not resolved: within the noise)'}`)
  }
  lines.push('', `own time of each middleware inside the server, call to next (µs per request, ${report.ownTime.requests} requests each)`)
  for (const [name, us] of Object.entries(own)) lines.push(`${name.padEnd(22)}${String(us).padStart(10)}${name.startsWith('empty') ? '' : `   +${report.ownTime.usOverTiming[name]} over the timing alone`}`)
  for (const [name, r] of Object.entries(report.ownTime.ratios)) {
    lines.push(`${name.padEnd(36)} ${String(r.value).padStart(6)}  target <= ${r.target}  ${r.met ? 'met' : 'MISSED'}`)
  }
  lines.push('')
  for (const [v, r] of Object.entries(variants)) if (!v.startsWith('bare')) lines.push(`${v} headers: ${JSON.stringify(r.sample.headers)}`)
  writeReport(outPath, report, lines)
}

/** The tracing suite's report: overheads over bare, and the issue's targets. */
function tracingReport({ outPath, quick, rounds, bursts, warmBursts, burstRequests, warmup, variants, noise, controlDiffs, ratio, overhead, sink, timed }) {
  // bulwark's own cost, part by part, over the same timing of an empty middleware
  const traced = timed['bulwark tracing']
  const own = {
    requestUs: r2(traced.ownUsPerCall - timed.bare.ownUsPerCall),
    closeUs: r2(traced.closeUsPerCall - timed.bare.closeUsPerCall),
    exportThreadUs: r2(traced.exportCpuUsPerRequest),
    requests: traced.served,
  }
  own.totalUs = r2(own.requestUs + own.closeUs + own.exportThreadUs)
  // an absolute target is resolved when it lies more than two standard errors away
  const atMost = (value, target) => ({ value: r2(value), error: r2(noise), target, met: value <= target, resolved: Math.abs(value - target) > 2 * noise })
  const report = {
    bench: 'express-tracing',
    ...runFields({ quick, rounds, bursts, warmBursts, burstRequests, warmup, variants, noise, controlDiffs }),
    sink: { requests: sink.stats.requests, bytes: sink.stats.bytes },
    ownTime: own,
    targets: {
      bulwarkTracingOwnTime: { value: own.totalUs, target: 4, met: own.totalUs <= 4 },
      bulwarkTracingOverhead: atMost(overhead('bulwark tracing'), 4),
      bulwarkVsOtelOverhead: ratio(Math.max(0, overhead('bulwark tracing')), overhead('OTel JS tracing'), 0.25),
      bulwarkRateLimitAndTracingOverhead: atMost(overhead('bulwark rateLimit + tracing'), 12),
    },
  }
  const lines = ['', `Express hello world with tracing at 100% sampling, OTLP/protobuf to a local sink: server CPU per request (${rounds} round(s); per variant and round ${bursts} bursts of ${burstRequests} requests, 10 connections)`]
  lines.push(...variantLines(variants, 40))
  lines.push(`noise (standard error of an overhead, from the control): ${report.noiseUsPerRequest} µs/req; the sink received ${sink.stats.requests} exports, ${sink.stats.bytes} bytes`)
  lines.push(`bulwark tracing's own time per request: ${own.requestUs} µs on the request (call to next) + ${own.closeUs} µs at the response's end (the span ends) + ${own.exportThreadUs} µs of export-thread CPU = ${own.totalUs} µs (${own.requests} requests)`)
  for (const [name, r] of Object.entries(report.targets)) {
    const error = r.error === undefined ? '' : ` ± ${r.error}`
    const unresolved = r.resolved === false ? ' (not resolved: within the noise)' : ''
    lines.push(`${name.padEnd(40)} ${String(r.value).padStart(6)}${error}  target <= ${r.target}  ${r.met ? 'met' : 'MISSED'}${unresolved}`)
  }
  writeReport(outPath, report, lines)
}

const serverArg = process.argv.find((a) => a.startsWith('--server='))
if (serverArg) {
  // a server goes when its parent does
  process.on('disconnect', () => process.exit(0))
  const sinkArg = process.argv.find((a) => a.startsWith('--sink='))
  server(serverArg.slice('--server='.length), process.argv.includes('--timed'), sinkArg && sinkArg.slice('--sink='.length))
} else {
  main(process.argv.slice(2)).catch((error) => {
    console.error(error)
    process.exit(1)
  })
}
