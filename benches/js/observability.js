#!/usr/bin/env node
'use strict'
// Observability: how long a scrape takes with every kind of block registered and about 10,000
// series: a tracer with 350 span names (eighteen series each: two counters and a histogram of
// fourteen buckets, sum and count), 300 circuit breakers (thirteen each), caches, limiters,
// pools and a query optimizer with 20 statements. Each figure is the median of 21 calls after 5 warmup calls; a
// call runs on the event loop, so its time is also how long it blocks the loop.
//
//   node benches/js/observability.js [out.json] [--quick]
const { writeReport, median } = require('./common')
const { Observability, RateLimiter, DistributedTracer, PersistentCache, CircuitBreaker, ConnectionPool, QueryOptimizer } = require('../..')

function build() {
  const obs = new Observability({ service: 'budget-server' })
  const tracer = new DistributedTracer({ serviceName: 'budget-server', exporter: 'none', maxMetricNames: 1000 })
  for (let i = 0; i < 350; i++) tracer.startSpan(`GET /api/route-${i}`).end()
  obs.add('tracer', tracer)
  for (let i = 0; i < 300; i++) obs.add(`provider-${i}`, new CircuitBreaker({ name: `provider-${i}` }))
  for (let i = 0; i < 10; i++) {
    const cache = new PersistentCache({ maxEntries: 1000 })
    cache.set('k', 'v')
    obs.add(`cache-${i}`, cache)
    const limiter = new RateLimiter({ capacity: 10, refillPerSecond: 1 })
    limiter.tryConsume('a')
    obs.add(`limiter-${i}`, limiter)
    obs.add(`pool-${i}`, new ConnectionPool({ create: async () => ({}), destroy: () => {} }))
  }
  const qo = new QueryOptimizer()
  for (let i = 0; i < 20; i++) qo.record(`SELECT c${i} FROM t${i} WHERE id = ${i}`, i)
  obs.add('queries', qo)
  return obs
}

function time(fn, runs = 21, warmup = 5) {
  for (let i = 0; i < warmup; i++) fn()
  const samples = []
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint()
    fn()
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6)
  }
  return { medianMs: Math.round(median(samples) * 1000) / 1000, maxMs: Math.round(Math.max(...samples) * 1000) / 1000 }
}

function main(args) {
  const outPath = args.find((a) => !a.startsWith('--'))
  const obs = build()
  const text = obs.prometheus()
  const series = text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length
  const prometheus = time(() => obs.prometheus())
  const openMetrics = time(() => obs.prometheus({ openMetrics: true }))
  const snapshot = time(() => JSON.stringify(obs.snapshot()))
  const report = {
    bench: 'observability',
    date: new Date().toISOString(),
    node: process.version,
    series,
    bytes: text.length,
    prometheus,
    openMetrics,
    snapshotJson: snapshot,
    target: { ms: 10, met: prometheus.medianMs <= 10 && prometheus.maxMs <= 10 },
  }
  const lines = ['', `observability with ${series} series (${text.length} bytes of text)`]
  lines.push(`prometheus()            median ${prometheus.medianMs} ms, max ${prometheus.maxMs} ms`)
  lines.push(`prometheus(openMetrics) median ${openMetrics.medianMs} ms, max ${openMetrics.maxMs} ms`)
  lines.push(`snapshot() + stringify  median ${snapshot.medianMs} ms, max ${snapshot.maxMs} ms`)
  lines.push(`target: at most 10 ms: ${report.target.met ? 'met' : 'MISSED'}`)
  writeReport(outPath, report, lines)
}

main(process.argv.slice(2))
