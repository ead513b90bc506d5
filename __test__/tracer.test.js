'use strict'
// DistributedTracer from the user's side: ids, W3C propagation, parent/child and the active
// span, sampling, attributes and limits, status and exceptions, the memory and OTLP/HTTP
// exporters, shutdown, and bad options.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const { DistributedTracer, Span, codes } = require('..')

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

function memoryTracer(options = {}) {
  return new DistributedTracer({ serviceName: 'test', exporter: 'memory', ...options })
}

async function finished(tracer) {
  assert.equal(await tracer.flush(), true)
  return tracer.finishedSpans()
}

test('ids are lowercase hex of the W3C lengths and the traceparent carries them', () => {
  const tracer = memoryTracer()
  const span = tracer.startSpan('op')
  assert.ok(span instanceof Span)
  assert.match(span.traceId, /^[0-9a-f]{32}$/)
  assert.match(span.spanId, /^[0-9a-f]{16}$/)
  assert.notEqual(span.traceId, '0'.repeat(32))
  assert.equal(span.sampled, true)
  assert.equal(span.parentSpanId, undefined)
  assert.match(span.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]$/)
  assert.equal(span.traceparent.slice(3, 35), span.traceId)
  assert.equal(span.traceparent.slice(36, 52), span.spanId)
  const other = tracer.startSpan('op')
  assert.notEqual(other.traceId, span.traceId)
  span.end()
  other.end()
})

test('the ids a Span shows are the ids exported, for every bit pattern of the words', async () => {
  // the JS side keeps each 32-bit id word as a signed integer: words with the top bit set
  // (about half of them) must print as the same hex as the exporter's
  const tracer = memoryTracer()
  const shown = new Map()
  for (let i = 0; i < 400; i++) {
    const span = tracer.startSpan(`s${i}`)
    shown.set(`s${i}`, [span.traceId, span.spanId])
    span.end()
  }
  const exported = await finished(tracer)
  assert.equal(exported.length, 400)
  let highWords = 0
  for (const s of exported) {
    assert.deepEqual(shown.get(s.name), [s.traceId, s.spanId], s.name)
    for (const hex of s.traceId.match(/.{8}/g).concat(s.spanId.match(/.{8}/g))) if (parseInt(hex[0], 16) >= 8) highWords++
  }
  assert.ok(highWords > 400, `words with the top bit set: ${highWords}`)
})

test('ids read after end() are the span\'s own, and a child of an ended span joins its trace', async () => {
  for (const sampleRate of [1, 0]) {
    const tracer = memoryTracer({ sampleRate })
    const parent = tracer.startSpan('parent')
    const other = tracer.startSpan('other') // a later start must not change parent's ids
    parent.end()
    other.end()
    assert.match(parent.traceId, /^[0-9a-f]{32}$/)
    assert.notEqual(parent.traceId, '0'.repeat(32))
    assert.notEqual(parent.traceId, other.traceId)
    const child = tracer.startSpan('child', { parent })
    assert.equal(child.traceId, parent.traceId)
    assert.equal(child.parentSpanId, parent.spanId)
    assert.equal(parent.traceparent, `00-${parent.traceId}-${parent.spanId}-0${sampleRate ? 3 : 2}`)
    child.end()
    if (sampleRate) {
      const spans = await finished(tracer)
      const exported = spans.find((s) => s.name === 'parent')
      assert.equal(exported.traceId, parent.traceId)
      assert.equal(exported.spanId, parent.spanId)
    }
  }
})

test('inject then extract round-trips the context through every header shape', () => {
  const tracer = memoryTracer()
  const span = tracer.startSpan('op')
  const plain = tracer.inject(span, {})
  assert.equal(plain.traceparent, span.traceparent)
  const ctx = tracer.extract(plain)
  assert.deepEqual(
    { traceId: ctx.traceId, spanId: ctx.spanId, sampled: (ctx.traceFlags & 1) === 1, isRemote: ctx.isRemote },
    { traceId: span.traceId, spanId: span.spanId, sampled: true, isRemote: true },
  )
  const headers = tracer.inject(span, new Headers())
  assert.equal(headers.get('traceparent'), span.traceparent)
  assert.equal(tracer.extract(headers).spanId, span.spanId)
  const outgoing = new http.OutgoingMessage()
  tracer.inject(span, outgoing)
  assert.equal(outgoing.getHeader('traceparent'), span.traceparent)
  // a context from extract can be injected as is, tracestate included
  const remote = tracer.extract({ traceparent: TP, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' })
  const forwarded = tracer.inject(remote, {})
  assert.deepEqual(forwarded, { traceparent: TP, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' })
  // header names are matched case-insensitively on plain objects; arrays are accepted
  assert.equal(tracer.extract({ TraceParent: [TP] }).traceId, '4bf92f3577b34da6a3ce929d0e0e4736')
  span.end()
})

test('extract follows W3C Trace Context and never throws', () => {
  const tracer = memoryTracer()
  // uppercase hex is invalid
  assert.equal(tracer.extract({ traceparent: TP.toUpperCase() }), null)
  // a repeated traceparent restarts the trace
  assert.equal(tracer.extract({ traceparent: [TP, TP] }), null)
  // an invalid traceparent makes tracestate irrelevant
  assert.equal(tracer.extract({ traceparent: '00-xyz', tracestate: 'a=1' }), null)
  // all-zero ids and version ff are invalid
  assert.equal(tracer.extract({ traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01` }), null)
  assert.equal(tracer.extract({ traceparent: 'ff' + TP.slice(2) }), null)
  // an invalid tracestate is dropped without affecting traceparent
  const ctx = tracer.extract({ traceparent: TP, tracestate: 'BAD KEY=1' })
  assert.equal(ctx.traceId, '4bf92f3577b34da6a3ce929d0e0e4736')
  assert.equal(ctx.traceState, undefined)
  // several tracestate values are combined
  assert.equal(tracer.extract({ traceparent: TP, tracestate: ['a=1', 'b=2'] }).traceState, 'a=1,b=2')
  for (const input of [undefined, null, 42, 'x', [], {}, { traceparent: 7 }, { get() { throw new Error('x') } }, new Map()]) {
    assert.equal(tracer.extract(input), null)
  }
})

test('a child of a remote context joins its trace and keeps its tracestate', async () => {
  const tracer = memoryTracer()
  const remote = tracer.extract({ traceparent: TP, tracestate: 'a=1' })
  const span = tracer.startSpan('server', { parent: remote, kind: 'server' })
  assert.equal(span.traceId, remote.traceId)
  assert.equal(span.parentSpanId, remote.spanId)
  assert.deepEqual(tracer.inject(span, {}).tracestate, 'a=1')
  const fromString = tracer.startSpan('other', { parent: TP })
  assert.equal(fromString.traceId, remote.traceId)
  span.end()
  fromString.end()
  const [first] = await finished(tracer)
  assert.equal(first.parentSpanId, '00f067aa0ba902b7')
  assert.equal(first.kind, 'server')
  assert.equal(first.traceState, 'a=1')
})

test('parent and child: explicit parent, active span across await, withSpan', async () => {
  const tracer = memoryTracer()
  const root = tracer.startSpan('root')
  const child = tracer.startSpan('child', { parent: root })
  assert.equal(child.traceId, root.traceId)
  assert.equal(child.parentSpanId, root.spanId)
  assert.equal(tracer.active(), undefined)
  assert.equal(tracer.currentTraceId(), undefined)

  const result = await tracer.startActiveSpan('request', async (request) => {
    assert.equal(tracer.active(), request)
    await new Promise((resolve) => setTimeout(resolve, 2))
    assert.equal(tracer.currentTraceId(), request.traceId)
    const inner = tracer.startSpan('db')
    assert.equal(inner.parentSpanId, request.spanId)
    inner.end()
    // an explicit null parent starts a new trace even with an active span
    const detached = tracer.startSpan('detached', { parent: null })
    assert.notEqual(detached.traceId, request.traceId)
    detached.end()
    return 'ok'
  })
  assert.equal(result, 'ok')
  tracer.withSpan(root, () => {
    assert.equal(tracer.startSpan('under-root').parentSpanId, root.spanId)
  })
  child.end()
  root.end()
  const spans = await finished(tracer)
  const request = spans.find((s) => s.name === 'request')
  assert.ok(request, 'startActiveSpan ended its span when the promise settled')
  assert.equal(spans.find((s) => s.name === 'db').parentSpanId, request.spanId)
})

test('startActiveSpan records a throw or rejection and rethrows it', async () => {
  const tracer = memoryTracer()
  await assert.rejects(tracer.startActiveSpan('async-fail', async () => {
    throw new RangeError('nope')
  }), RangeError)
  assert.throws(() => tracer.startActiveSpan('sync-fail', {}, () => {
    throw new TypeError('bad')
  }), TypeError)
  const spans = await finished(tracer)
  for (const [name, type, message] of [['async-fail', 'RangeError', 'nope'], ['sync-fail', 'TypeError', 'bad']]) {
    const span = spans.find((s) => s.name === name)
    assert.deepEqual(span.status, { code: 'error', message })
    assert.equal(span.events[0].name, 'exception')
    assert.equal(span.events[0].attributes['exception.type'], type)
    assert.equal(span.events[0].attributes['exception.message'], message)
  }
})

test('sampling: rate 0 and 1, parent-based, string and RegExp rules', async () => {
  const none = memoryTracer({ sampleRate: 0 })
  const all = memoryTracer({ sampleRate: 1 })
  for (let i = 0; i < 50; i++) {
    assert.equal(none.startSpan('x').sampled, false)
    assert.equal(all.startSpan('x').sampled, true)
  }
  // children follow a remote parent's flag, whatever the rate
  assert.equal(none.startSpan('c', { parent: TP }).sampled, true)
  assert.equal(all.startSpan('c', { parent: TP.slice(0, -2) + '00' }).sampled, false)
  // and a local parent's decision
  const root = none.startSpan('root')
  assert.equal(none.startSpan('child', { parent: root }).sampled, false)
  assert.match(root.traceparent, /-0[02]$/)

  const ruled = memoryTracer({ sampling: { rules: [{ name: 'GET /health', rate: 0 }, { name: /^db\./, rate: 0 }] } })
  assert.equal(ruled.startSpan('GET /health').sampled, false)
  assert.equal(ruled.startSpan('db.query').sampled, false)
  assert.equal(ruled.startSpan('GET /users').sampled, true)
  const stringOnly = memoryTracer({ sampleRate: 0, sampling: { rules: [{ name: 'checkout', rate: 1 }] } })
  assert.equal(stringOnly.startSpan('checkout').sampled, true)
  assert.equal(stringOnly.startSpan('other').sampled, false)
  // about half at rate 0.5
  const half = memoryTracer({ sampleRate: 0.5 })
  let sampled = 0
  for (let i = 0; i < 2000; i++) if (half.startSpan('h').sampled) sampled++
  assert.ok(sampled > 800 && sampled < 1200, `sampled ${sampled} of 2000`)
})

test('unsampled spans record nothing and are not exported, but count in metrics', async () => {
  const tracer = memoryTracer({ sampleRate: 0 })
  const span = tracer.startSpan('quiet', { attributes: { a: 1 } })
  assert.equal(span.isRecording(), false)
  span.setAttribute('b', 2).addEvent('e').recordException(new Error('x'))
  span.setStatus('error', 'failed')
  assert.match(span.traceId, /^[0-9a-f]{32}$/)
  span.end()
  assert.deepEqual(await finished(tracer), [])
  const metrics = tracer.metrics()
  assert.equal(metrics.started, 1)
  assert.equal(metrics.unsampled, 1)
  assert.equal(metrics.sampled, 0)
  assert.equal(metrics.exported, 0)
  assert.deepEqual(Object.entries(metrics.spans).map(([name, s]) => [name, s.count, s.errors]), [['quiet', 1, 1]])
})

test('attributes: types, limits, truncation and dropped counts', async () => {
  const tracer = memoryTracer({ limits: { maxAttributes: 4, maxEvents: 1, maxAttributeValueLength: 3 } })
  const span = tracer.startSpan('attrs')
  span.setAttributes({ s: 'abcdef', n: 1.5, i: 7, b: true })
  span.setAttribute('over', 'dropped')
  span.setAttribute('s', 'xy') // an existing key is replaced, not dropped
  span.setAttribute('bad', { nested: true })
  span.addEvent('first', { k: 'v' })
  span.addEvent('second')
  span.end()
  const [data] = await finished(tracer)
  assert.deepEqual(data.attributes, { s: 'xy', n: 1.5, i: 7, b: true })
  assert.equal(data.droppedAttributesCount, 2)
  assert.equal(data.events.length, 1)
  assert.deepEqual(data.events[0].attributes, { k: 'v' })
  assert.equal(data.droppedEventsCount, 1)
  assert.equal(tracer.metrics().unsupportedAttributes, 1)

  const arrays = memoryTracer()
  const a = arrays.startSpan('arrays')
  a.setAttributes({ strings: ['a', 'b'], numbers: [1, 2.5], bools: [true], mixed: [1, 'a'], long: 'abcdef' })
  a.end()
  const [arrayData] = await finished(arrays)
  assert.deepEqual(arrayData.attributes, { strings: ['a', 'b'], numbers: [1, 2.5], bools: [true], long: 'abcdef' })
  assert.equal(arrayData.droppedAttributesCount, 1)
})

test('setAttributes: many attributes of every kind, over several crossings, all arrive', async () => {
  // more than one crossing's worth (eight), with values that take the slow path in between
  const tracer = memoryTracer()
  const span = tracer.startSpan('many')
  const long = 'é'.repeat(300) // longer than the string read through the stack
  const input = {
    'http.request.method': 'GET',
    n1: 1,
    b1: false,
    list: ['x', 'y'],
    s2: 'two',
    f: 2.5,
    'http.response.status_code': 200,
    bad: { nested: true },
    s3: long,
    n4: -4,
    s5: '',
    b6: true,
  }
  span.setAttributes(input)
  span.setAttributes({ n1: 10, s7: 'seven' }) // a replaced key takes the new value
  span.end()
  const [data] = await finished(tracer)
  const expected = { ...input, n1: 10, s7: 'seven' }
  delete expected.bad
  assert.deepEqual(data.attributes, expected)
  assert.equal(data.droppedAttributesCount, 1)

  // only fast values: two full crossings and a part of a third
  const plain = {}
  for (let i = 0; i < 19; i++) plain[`k${i}`] = i % 3 === 0 ? `v${i}` : i % 3 === 1 ? i : i % 2 === 0
  const second = tracer.startSpan('plain')
  second.setAttributes(plain)
  second.end()
  const [plainData] = (await finished(tracer)).filter((s) => s.name === 'plain')
  assert.deepEqual(plainData.attributes, plain)
})

test('attributes set on spans in turn each reach their own span, in order, whichever ends first', async () => {
  // attributes wait on the JS side to cross with their span's end: interleaving spans,
  // ending them out of order and leaving one open must not move an attribute to another span
  const tracer = memoryTracer({ limits: { maxAttributes: 3 } })
  const a = tracer.startSpan('a')
  const b = tracer.startSpan('b')
  const open = tracer.startSpan('open')
  a.setAttribute('who', 'a')
  b.setAttribute('who', 'b')
  a.setAttribute('n', 1)
  a.setAttribute('n', 2) // replaced in place: the last value set wins
  open.setAttribute('who', 'open') // this span stays open while the others end
  b.setAttribute('list', [1, 2]) // an array crosses at once, after what waits
  b.setAttribute('n', 3)
  b.setAttribute('over', 'dropped') // the fourth key: over maxAttributes
  a.setAttribute('late', true)
  b.end()
  const c = tracer.startSpan('c')
  c.setAttribute('who', 'c')
  a.end()
  a.setAttribute('after', 'ignored') // calls on an ended span are ignored
  c.end()
  const byName = Object.fromEntries((await finished(tracer)).map((s) => [s.name, s]))
  assert.deepEqual(Object.keys(byName).sort(), ['a', 'b', 'c'])
  assert.deepEqual(byName.a.attributes, { who: 'a', n: 2, late: true })
  assert.deepEqual(byName.b.attributes, { who: 'b', list: [1, 2], n: 3 })
  assert.equal(byName.b.droppedAttributesCount, 1)
  assert.deepEqual(byName.c.attributes, { who: 'c' })
  assert.equal(byName.a.droppedAttributesCount, 0)
  tracer.resetFinishedSpans()
  open.end()
  const [openData] = await finished(tracer)
  assert.deepEqual(openData.attributes, { who: 'open' })

  // exactly eight attributes ride with the end; the ninth sends the first eight before it
  const roomy = memoryTracer()
  for (const count of [7, 8, 9, 17]) {
    const span = roomy.startSpan(`count-${count}`)
    const expected = {}
    for (let i = 0; i < count; i++) expected[`k${i}`] = i % 2 === 0 ? `v${i}` : i
    for (const [key, value] of Object.entries(expected)) span.setAttribute(key, value)
    span.end()
    const [data] = (await finished(roomy)).filter((s) => s.name === `count-${count}`)
    assert.deepEqual(data.attributes, expected, `${count} attributes`)
  }
})

test('tracers of one thread share the fast path: attributes, renames and ids stay with their own tracer', async () => {
  // every tracer of a thread calls the same native functions through one shared array; what
  // one tracer queues or holds back must survive another tracer's calls in between
  const first = memoryTracer()
  const second = memoryTracer()
  const unsampled = memoryTracer({ sampleRate: 0 })
  const a = first.startSpan('first')
  a.setAttribute('who', 'first')
  a.setAttribute('n', 1)
  a.updateName('first renamed')
  const b = second.startSpan('second')
  b.setAttribute('who', 'second')
  b.setAttribute('flag', true)
  b.updateName('second renamed')
  const u = unsampled.startSpan('u')
  u.setAttribute('ignored', 1)
  a.setAttribute('late', 'first again')
  const bIds = [b.traceId, b.spanId]
  b.end()
  u.end()
  a.end()
  const [aData] = await finished(first)
  const [bData] = await finished(second)
  assert.equal(aData.name, 'first renamed')
  assert.deepEqual(aData.attributes, { who: 'first', n: 1, late: 'first again' })
  assert.equal(bData.name, 'second renamed')
  assert.deepEqual(bData.attributes, { who: 'second', flag: true })
  assert.deepEqual([bData.traceId, bData.spanId], bIds)
  assert.deepEqual(await finished(unsampled), [])
  assert.equal(unsampled.metrics().spans.u.count, 1)
  assert.equal(first.metrics().spans['first renamed'].count, 1)
  assert.equal(second.metrics().spans.first, undefined)

})

test('tracers collected by V8 free their fast-path slot, and the tracers made after them work like the rest', async () => {
  // in a child with --expose-gc: each round uses a tracer last (so the fast path remembers it),
  // drops it, collects it, and makes the next, which may take its slot
  const script = `
    const { DistributedTracer } = require(${JSON.stringify(require.resolve('..'))})
    const settle = () => new Promise((resolve) => setImmediate(resolve))
    ;(async () => {
      const keep = new DistributedTracer({ serviceName: 'keep', exporter: 'memory' })
      for (let round = 0; round < 40; round++) {
        let gone = new DistributedTracer({ serviceName: 'gone', exporter: 'memory' })
        gone.startSpan('gone').end()
        gone = null
        global.gc()
        await settle()
        const next = new DistributedTracer({ serviceName: 'next', exporter: 'memory' })
        const span = next.startSpan('next-' + round)
        span.setAttribute('round', round)
        span.end()
        await next.flush()
        const spans = next.finishedSpans()
        if (spans.length !== 1 || spans[0].name !== 'next-' + round || spans[0].attributes.round !== round) {
          throw new Error('round ' + round + ': ' + JSON.stringify(spans))
        }
        keep.startSpan('keep').end()
        await next.shutdown()
      }
      await keep.flush()
      if (keep.finishedSpans().length !== 40) throw new Error('keep: ' + keep.finishedSpans().length)
      process.stdout.write('ok')
    })().catch((error) => { console.error(error); process.exit(1) })
  `
  const { spawnSync } = require('node:child_process')
  const child = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(child.status, 0, child.stderr)
  assert.equal(child.stdout, 'ok')
})

test('updateName on spans in turn: each span ends under its own last name, in export and metrics', async () => {
  // a rename waits on the JS side for its span's end; renames of other spans, ends of other
  // spans and unsampled spans must not move it
  const tracer = memoryTracer()
  const a = tracer.startSpan('a')
  const b = tracer.startSpan('b')
  a.updateName('a renamed')
  b.updateName('b renamed') // sends a's rename before holding b's
  a.updateName('a final') // the last name wins
  const c = tracer.startSpan('c')
  c.end() // another span's end leaves a's rename waiting
  b.end()
  a.end()
  a.updateName('ignored') // calls on an ended span are ignored
  const names = (await finished(tracer)).map((s) => s.name).sort()
  assert.deepEqual(names, ['a final', 'b renamed', 'c'])

  const unsampled = memoryTracer({ sampleRate: 0 })
  const u1 = unsampled.startSpan('GET')
  const u2 = unsampled.startSpan('GET')
  u1.updateName('GET /a')
  u2.updateName('GET /b')
  u2.end()
  u1.end()
  const spans = unsampled.metrics().spans
  assert.deepEqual(Object.keys(spans).sort(), ['GET /a', 'GET /b'])
  assert.equal(spans['GET /a'].count, 1)
  assert.equal(spans['GET /b'].count, 1)
})

test('recordException, setStatus, updateName, explicit times, end twice', async () => {
  const tracer = memoryTracer()
  const span = tracer.startSpan('named', { startTime: 1_700_000_000_000 })
  const error = new TypeError('wrong type')
  span.recordException(error)
  span.recordException('plain string')
  span.setStatus('ok')
  span.setStatus('error', 'ignored: ok is final')
  span.updateName('renamed')
  assert.throws(() => span.setStatus('failed'), { name: 'RangeError', code: codes.INVALID_ARGUMENT })
  span.end(1_700_000_000_250)
  span.end(1_700_000_009_999)
  assert.equal(span.ended, true)
  const [data] = await finished(tracer)
  assert.equal(data.name, 'renamed')
  assert.deepEqual(data.status, { code: 'ok' })
  assert.equal(data.startTimeUnixNano, '1700000000000000000')
  assert.equal(data.endTimeUnixNano, '1700000000250000000')
  assert.equal(data.durationMs, 250)
  assert.deepEqual(data.events[0].attributes, {
    'exception.type': 'TypeError',
    'exception.message': 'wrong type',
    'exception.stacktrace': error.stack,
  })
  assert.deepEqual(data.events[1].attributes, { 'exception.type': 'string', 'exception.message': 'plain string' })
  const metrics = tracer.metrics()
  assert.deepEqual(Object.keys(metrics.spans), ['renamed'])
  assert.equal(metrics.spans.renamed.count, 1)
  assert.deepEqual(Object.keys(metrics.spans.renamed), ['count', 'errors', 'p50Ms', 'p95Ms', 'p99Ms', 'maxMs', 'sumMs', 'buckets'])
  assert.equal(metrics.spans.renamed.buckets.length, metrics.durationBoundsMs.length)
  assert.equal(metrics.spans.renamed.buckets.at(-1), metrics.spans.renamed.count)
  assert.equal(metrics.spans.renamed.maxMs, 250)
  assert.equal(metrics.liveSpans, 0)
})

test('the memory exporter keeps spans until resetFinishedSpans', async () => {
  const tracer = memoryTracer()
  for (let i = 0; i < 3; i++) tracer.startSpan('s' + i).end()
  assert.deepEqual((await finished(tracer)).map((s) => s.name), ['s0', 's1', 's2'])
  tracer.resetFinishedSpans()
  assert.deepEqual(tracer.finishedSpans(), [])
  assert.equal(tracer.metrics().exported, 3)
})

function receiver() {
  const requests = []
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (chunk) => chunks.push(chunk))
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) })
      res.writeHead(200, { 'content-type': req.headers['content-type'] })
      res.end(req.headers['content-type'] === 'application/json' ? '{}' : '')
    })
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ server, requests, url: `http://127.0.0.1:${server.address().port}/v1/traces` })
  }))
}

test('OTLP/HTTP protobuf export posts one batch to the collector', async (t) => {
  const { server, requests, url } = await receiver()
  t.after(() => server.close())
  const tracer = new DistributedTracer({
    serviceName: 'otlp-test',
    exporter: { otlp: { url, headers: { 'x-api-key': 'secret' } } },
    resource: { 'service.version': '1.2.3' },
  })
  const span = tracer.startSpan('exported', { attributes: { a: 1 } })
  const traceId = span.traceId
  span.end()
  assert.equal(await tracer.flush(), true)
  assert.equal(requests.length, 1)
  assert.equal(requests[0].method, 'POST')
  assert.equal(requests[0].url, '/v1/traces')
  assert.equal(requests[0].headers['content-type'], 'application/x-protobuf')
  assert.equal(requests[0].headers['x-api-key'], 'secret')
  assert.ok(requests[0].body.length > 0)
  // the protobuf carries the raw 16 id bytes and the service name
  assert.ok(requests[0].body.includes(Buffer.from(traceId, 'hex')))
  assert.ok(requests[0].body.includes(Buffer.from('otlp-test')))
  assert.equal(tracer.metrics().exported, 1)
  assert.equal(await tracer.shutdown(), true)
})

test('OTLP/JSON export carries the span ids', async (t) => {
  const { server, requests, url } = await receiver()
  t.after(() => server.close())
  const tracer = new DistributedTracer({ serviceName: 'json-test', exporter: { otlp: { url, protocol: 'http/json' } } })
  const spans = [tracer.startSpan('a'), tracer.startSpan('b')]
  const traceIds = spans.map((s) => s.traceId)
  for (const span of spans) span.end()
  assert.equal(await tracer.flush(), true)
  assert.equal(requests.length, 1)
  assert.equal(requests[0].headers['content-type'], 'application/json')
  const body = JSON.parse(requests[0].body.toString('utf8'))
  const exported = body.resourceSpans[0].scopeSpans[0].spans
  assert.deepEqual(exported.map((s) => s.traceId), traceIds)
  assert.deepEqual(exported.map((s) => s.name), ['a', 'b'])
  await tracer.shutdown()
})

test('shutdown exports what ended before it and drops what ends after', async () => {
  const tracer = memoryTracer({ batch: { scheduledDelayMs: 60_000 } })
  tracer.startSpan('before').end()
  assert.equal(await tracer.shutdown(), true)
  assert.deepEqual(tracer.finishedSpans().map((s) => s.name), ['before'])
  tracer.startSpan('after').end()
  assert.equal(await tracer.flush(), true)
  assert.equal(tracer.finishedSpans().length, 1)
  assert.equal(tracer.metrics().dropped, 1)
  assert.equal(await tracer.shutdown(), true)
})

test('an unreachable collector counts an export error and never throws', async () => {
  const tracer = new DistributedTracer({ serviceName: 'down', exporter: { otlp: { url: 'http://127.0.0.1:1/v1/traces', timeoutMs: 1000 } } })
  tracer.startSpan('lost').end()
  await tracer.flush(5000)
  assert.equal(tracer.metrics().exportErrors, 1)
  await tracer.shutdown(5000)
})

test('bad options are refused with errors naming the option', () => {
  const bad = (options, name, pattern) => {
    assert.throws(() => new DistributedTracer(options), (error) => {
      assert.equal(error.name, name)
      assert.equal(error.code, codes.INVALID_OPTION)
      assert.match(error.message, pattern)
      return true
    })
  }
  bad(undefined, 'TypeError', /options is required/)
  bad({}, 'TypeError', /options\.serviceName is required/)
  bad({ serviceName: '' }, 'RangeError', /options\.serviceName must be a non-empty string/)
  bad({ serviceName: 1 }, 'TypeError', /options\.serviceName must be a string, received number 1/)
  bad({ serviceName: 's', sampleRate: 2 }, 'RangeError', /options\.sampleRate must be a number between 0 and 1, received 2/)
  bad({ serviceName: 's', sampleRate: NaN }, 'RangeError', /options\.sampleRate .* received NaN/)
  bad({ serviceName: 's', sampleRate: '1' }, 'TypeError', /options\.sampleRate must be a number/)
  bad({ serviceName: 's', sampel: 1 }, 'TypeError', /options has an unknown option "sampel"/)
  bad({ serviceName: 's', exporter: 'zipkin' }, 'RangeError', /options\.exporter must be 'none', 'memory', 'console'/)
  bad({ serviceName: 's', exporter: { otlp: { url: 'not a url' } } }, 'RangeError', /options\.exporter\.otlp\.url must be an absolute http/)
  bad({ serviceName: 's', exporter: { otlp: { url: 'ftp://x/v1/traces' } } }, 'RangeError', /options\.exporter\.otlp\.url/)
  // URLs a prefix check let through: the exporter's HTTP client refuses the first, and reads the
  // second's port as none (it would send to port 80)
  bad({ serviceName: 's', exporter: { otlp: { url: 'http://[::1:4318/v1/traces' } } }, 'RangeError', /options\.exporter\.otlp\.url .*received "http:\/\/\[::1:4318/)
  bad({ serviceName: 's', exporter: { otlp: { url: 'http://127.0.0.1:431800/v1/traces' } } }, 'RangeError', /a port from 1 to 65535/)
  bad({ serviceName: 's', exporter: { otlp: { protocol: 'grpc' } } }, 'RangeError', /options\.exporter\.otlp\.protocol/)
  bad({ serviceName: 's', exporter: { otlp: { headers: { a: 1 } } } }, 'TypeError', /options\.exporter\.otlp\.headers\.a must be a string/)
  bad({ serviceName: 's', exporter: { zipkin: {} } }, 'TypeError', /options\.exporter has an unknown option "zipkin"/)
  bad({ serviceName: 's', sampling: { rules: [{ name: 'x', rate: 1.5 }] } }, 'RangeError', /options\.sampling\.rules\[0\]\.rate/)
  bad({ serviceName: 's', sampling: { rules: [{ name: /x/, rate: -1 }] } }, 'RangeError', /options\.sampling\.rules\[0\]\.rate/)
  bad({ serviceName: 's', sampling: { rules: [{ name: 1, rate: 1 }] } }, 'TypeError', /options\.sampling\.rules\[0\]\.name/)
  bad({ serviceName: 's', sampling: { rules: 'x' } }, 'TypeError', /options\.sampling\.rules must be an array/)
  bad({ serviceName: 's', limits: { maxAttributes: -1 } }, 'RangeError', /options\.limits\.maxAttributes/)
  bad({ serviceName: 's', limits: { maxSpans: 1 } }, 'TypeError', /options\.limits has an unknown option "maxSpans"/)
  bad({ serviceName: 's', maxMetricNames: 0 }, 'RangeError', /options\.maxMetricNames/)
  bad({ serviceName: 's', batch: { maxQueueSize: 10, maxExportBatchSize: 20 } }, 'RangeError', /options\.batch\.maxExportBatchSize/)
  bad({ serviceName: 's', batch: { scheduledDelayMs: 0 } }, 'RangeError', /options\.batch\.scheduledDelayMs/)
  bad({ serviceName: 's', resource: { a: {} } }, 'TypeError', /options\.resource\.a/)
  bad({ serviceName: 's', clock: {} }, 'TypeError', /options\.clock must be a TestClock/)
})

test('bad arguments are refused with clear errors', () => {
  const tracer = memoryTracer()
  assert.throws(() => tracer.startSpan(1), { name: 'TypeError', code: codes.INVALID_ARGUMENT })
  assert.throws(() => tracer.startSpan('x', { kind: 'backend' }), { name: 'RangeError', code: codes.INVALID_ARGUMENT })
  assert.throws(() => tracer.startSpan('x', { parnet: null }), { name: 'TypeError', code: codes.INVALID_ARGUMENT })
  assert.throws(() => tracer.startSpan('x', { parent: 42 }), { name: 'TypeError', code: codes.INVALID_ARGUMENT })
  assert.throws(() => tracer.inject(undefined, 'headers'), { name: 'TypeError', code: codes.INVALID_ARGUMENT })
  assert.throws(() => tracer.startActiveSpan('x'), { name: 'TypeError', code: codes.INVALID_ARGUMENT })
})

/** A server on 127.0.0.1 that answers `status` with the traceparent it received as the body. */
async function echoServer(t, status = 200) {
  const server = http.createServer((req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' })
    res.end(req.headers.traceparent || '')
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise((resolve) => {
    server.closeAllConnections()
    server.close(resolve)
  }))
  return server.address().port
}

test('fetch: a client span, child of the active span, whose ids reach the server', async (t) => {
  const port = await echoServer(t)
  const tracer = memoryTracer()
  const init = { headers: { 'x-caller': 'yes' } }
  const { parent, received } = await tracer.startActiveSpan('parent', async (parent) => {
    const response = await tracer.fetch(`http://127.0.0.1:${port}/path?q=1`, init)
    assert.equal(response.status, 200)
    return { parent, received: await response.text() }
  })
  // the caller's init.headers object is left as it was
  assert.deepEqual(init, { headers: { 'x-caller': 'yes' } })
  const spans = await finished(tracer)
  const client = spans.find((s) => s.kind === 'client')
  assert.ok(client)
  assert.equal(client.name, 'GET')
  assert.equal(client.traceId, parent.traceId)
  assert.equal(client.parentSpanId, parent.spanId)
  assert.equal(received.slice(3, 35), client.traceId)
  assert.equal(received.slice(36, 52), client.spanId)
  assert.equal(client.attributes['http.request.method'], 'GET')
  assert.equal(client.attributes['url.full'], `http://127.0.0.1:${port}/path?q=1`)
  assert.equal(client.attributes['server.address'], '127.0.0.1')
  assert.equal(client.attributes['server.port'], port)
  assert.equal(client.attributes['http.response.status_code'], 200)
  assert.notEqual(client.status.code, 'error')
  // url.full never carries userinfo (Node's fetch refuses such a URL: the span still says where)
  tracer.resetFinishedSpans()
  await assert.rejects(tracer.fetch(`http://user:secret@127.0.0.1:${port}/x`), TypeError)
  const [refused] = await finished(tracer)
  assert.equal(refused.attributes['url.full'], `http://127.0.0.1:${port}/x`)
  assert.equal(refused.status.code, 'error')
})

test('fetch: the method comes from init or a Request, and Headers in init are not mutated', async (t) => {
  const port = await echoServer(t)
  const tracer = memoryTracer()
  const headers = new Headers({ 'x-caller': 'yes' })
  const response = await tracer.fetch(`http://127.0.0.1:${port}/`, { method: 'post', headers, body: 'x' })
  await response.text()
  assert.equal(headers.get('traceparent'), null)
  assert.deepEqual([...headers.keys()], ['x-caller'])
  const request = new Request(`http://127.0.0.1:${port}/`, { method: 'PUT', headers: { 'x-req': '1' }, body: 'y' })
  const received = await (await tracer.fetch(request)).text()
  assert.equal(request.headers.get('traceparent'), null)
  assert.match(received, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]$/)
  const names = (await finished(tracer)).map((s) => s.name)
  assert.deepEqual(names.sort(), ['POST', 'PUT'])
})

test('fetch: a 5xx response sets status error', async (t) => {
  const port = await echoServer(t, 503)
  const tracer = memoryTracer()
  const response = await tracer.fetch(`http://127.0.0.1:${port}/`)
  assert.equal(response.status, 503)
  await response.text()
  const [span] = await finished(tracer)
  assert.equal(span.attributes['http.response.status_code'], 503)
  assert.deepEqual(span.status, { code: 'error', message: 'HTTP 503' })
})

test('fetch: a refused connection rejects, and the span has status error and an exception', async () => {
  const tracer = memoryTracer()
  await assert.rejects(tracer.fetch('http://127.0.0.1:1/'), TypeError)
  const [span] = await finished(tracer)
  assert.equal(span.kind, 'client')
  assert.equal(span.status.code, 'error')
  assert.equal(span.attributes['server.port'], 1)
  assert.equal(span.attributes['http.response.status_code'], undefined)
  assert.ok(span.events.some((e) => e.name === 'exception'))
})

test('root sampling decisions equal OpenTelemetry JS TraceIdRatioBasedSampler for the same trace ids', () => {
  // The real OTel JS sampler (a devDependency), asked about each trace id our tracer generated:
  // a mixed fleet must agree on which traces are kept.
  const { TraceIdRatioBasedSampler, SamplingDecision } = require('@opentelemetry/sdk-trace-base')
  const { ROOT_CONTEXT, SpanKind: OtelKind } = require('@opentelemetry/api')
  for (const rate of [0.001, 0.1, 0.15, 0.5, 0.9, 0.999]) {
    const tracer = new DistributedTracer({ serviceName: 's', sampleRate: rate, exporter: 'none' })
    const otel = new TraceIdRatioBasedSampler(rate)
    let sampled = 0
    const n = 20_000
    for (let i = 0; i < n; i++) {
      const span = tracer.startSpan('root', { parent: null })
      const decision = otel.shouldSample(ROOT_CONTEXT, span.traceId, 'root', OtelKind.INTERNAL, {}, []).decision
      assert.equal(span.sampled, decision === SamplingDecision.RECORD_AND_SAMPLED, `rate ${rate}, trace id ${span.traceId}`)
      if (span.sampled) sampled++
      span.end()
    }
    // and the rate is what was asked for (binomial: within 5 standard deviations)
    const sd = Math.sqrt(n * rate * (1 - rate))
    assert.ok(Math.abs(sampled - n * rate) <= 5 * sd + 1, `rate ${rate}: ${sampled} of ${n} sampled`)
  }
})
