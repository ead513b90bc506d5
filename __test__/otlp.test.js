'use strict'
// The OTLP/HTTP exporter against an independent OTLP implementation: a local receiver records
// what the tracer POSTs, and the body is decoded with the protobufjs code that
// @opentelemetry/otlp-transformer generated from the official opentelemetry-proto files
// (the `otlp-reference-decoder` devDependency), never with our own decoder. For http/json the
// OTLP/JSON rules (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding) are checked
// on the raw JSON first (hex ids, integer enums, lowerCamelCase names, 64-bit integers as decimal
// strings), then the ids are turned into bytes and the request is built with the reference
// `fromObject` + `verify`, so both protocols go through the same checks.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const { DistributedTracer } = require('..')
const otlp = require('otlp-reference-decoder/build/src/generated/root')

const { ExportTraceServiceRequest } = otlp.opentelemetry.proto.collector.trace.v1
const { SpanKind } = otlp.opentelemetry.proto.trace.v1.Span
const { StatusCode } = otlp.opentelemetry.proto.trace.v1.Status

const PROTOCOLS = ['http/protobuf', 'http/json']
const CONTENT_TYPES = { 'http/protobuf': 'application/x-protobuf', 'http/json': 'application/json' }
// Where each protocol's scenario posts: the default path, and a custom one used as is.
const PATHS = { 'http/protobuf': '/v1/traces', 'http/json': '/collector/v1/traces' }
const HEADERS = { 'x-api-key': 'secret-123', 'x-tenant': 'acme' }
const RESOURCE = {
  'service.version': '1.2.3',
  'deployment.environment': 'test',
  'host.cpu.count': 8,
  'feature.enabled': true,
  'sample.ratio': 0.5,
}
const CHILD_ATTRIBUTES = {
  'str': 'order ☃ "42"',
  'str.empty': '',
  'int': 42,
  'int.negative': -7,
  'int.large': 2 ** 40,
  'double': 3.25,
  'double.negative': -0.125,
  'bool.true': true,
  'bool.false': false,
  'array.strings': ['a', 'b', ''],
  'array.ints': [1, 2, 3],
  'array.doubles': [1.5, 2],
  'array.bools': [true, false],
}
// The typed AnyValue each of CHILD_ATTRIBUTES must arrive as (64-bit integers as strings).
const CHILD_ANY_VALUES = {
  'str': { stringValue: 'order ☃ "42"' },
  'str.empty': { stringValue: '' },
  'int': { intValue: '42' },
  'int.negative': { intValue: '-7' },
  'int.large': { intValue: '1099511627776' },
  'double': { doubleValue: 3.25 },
  'double.negative': { doubleValue: -0.125 },
  'bool.true': { boolValue: true },
  'bool.false': { boolValue: false },
  'array.strings': { arrayValue: { values: [{ stringValue: 'a' }, { stringValue: 'b' }, { stringValue: '' }] } },
  'array.ints': { arrayValue: { values: [{ intValue: '1' }, { intValue: '2' }, { intValue: '3' }] } },
  'array.doubles': { arrayValue: { values: [{ doubleValue: 1.5 }, { doubleValue: 2 }] } },
  'array.bools': { arrayValue: { values: [{ boolValue: true }, { boolValue: false }] } },
}
const REMOTE_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const REMOTE_PARENT = '00f067aa0ba902b7'
const TRACESTATE = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'
// How far an implicit (clock-read) time may sit outside the Date.now() window around the calls.
const CLOCK_SLACK_NS = 50_000_000n
const FLUSH_MS = 10_000

/** Milliseconds since the epoch (a number, maybe fractional, or a Date) as exact nanoseconds. */
function msToNs(ms) {
  if (ms instanceof Date) ms = ms.getTime()
  const whole = Math.floor(ms)
  return BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6))
}

function nowNs() {
  return BigInt(Date.now()) * 1_000_000n
}

function hex(bytes) {
  return Buffer.from(bytes).toString('hex')
}

/**
 * A local OTLP/HTTP collector on 127.0.0.1: records every request and answers 200 with an empty
 * ExportTraceServiceResponse (no bytes for protobuf, `{}` for JSON). Closed after the test.
 */
async function receiver(t, path = '/v1/traces') {
  const requests = []
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (chunk) => chunks.push(chunk))
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) })
      const json = req.headers['content-type'] === 'application/json'
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' })
      res.end(json ? '{}' : '')
    })
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise((resolve) => {
    server.closeAllConnections()
    server.close(resolve)
  }))
  return { requests, url: `http://127.0.0.1:${server.address().port}${path}` }
}

/** A tracer exporting to `url` that only sends on flush/shutdown; shut down after the test. */
function otlpTracer(t, url, protocol, more = {}) {
  const tracer = new DistributedTracer({
    serviceName: 'checkout',
    resource: RESOURCE,
    exporter: { otlp: { url, protocol, headers: HEADERS, timeoutMs: 5000 } },
    batch: { scheduledDelayMs: 60_000 },
    ...more,
  })
  t.after(() => tracer.shutdown(FLUSH_MS))
  return tracer
}

// ---------------------------------------------------------------------------------------------
// OTLP/JSON encoding rules, checked on the raw JSON before the reference decoder sees it.

const ID_LENGTHS = { traceId: 32, spanId: 16, parentSpanId: 16 }
const INT64_KEYS = new Set(['startTimeUnixNano', 'endTimeUnixNano', 'timeUnixNano', 'intValue'])
const ENUM_KEYS = new Set(['kind', 'code'])

function checkInt64(value, where) {
  if (typeof value === 'string') {
    assert.match(value, /^-?(0|[1-9][0-9]*)$/, `${where} must be a decimal integer string, got ${JSON.stringify(value)}`)
  } else {
    assert.ok(Number.isSafeInteger(value), `${where} must be a decimal string (or an exact integer), got ${JSON.stringify(value)}`)
  }
}

/** Walks an OTLP/JSON body and asserts the spec's JSON rules on every field it knows. */
function checkOtlpJson(node, where = '$') {
  if (Array.isArray(node)) {
    node.forEach((item, i) => checkOtlpJson(item, `${where}[${i}]`))
    return
  }
  if (node === null || typeof node !== 'object') return
  for (const [key, value] of Object.entries(node)) {
    const at = `${where}.${key}`
    assert.match(key, /^[a-z][A-Za-z0-9]*$/, `${at}: field names must be lowerCamelCase`)
    if (key in ID_LENGTHS) {
      // Hex, not base64; lowercase as every SDK writes it (the spec reads it case-insensitively).
      const length = ID_LENGTHS[key]
      const pattern = key === 'parentSpanId' ? new RegExp(`^([0-9a-f]{${length}})?$`) : new RegExp(`^[0-9a-f]{${length}}$`)
      assert.match(value, pattern, `${at} must be ${length} lowercase hex digits, got ${JSON.stringify(value)}`)
    } else if (INT64_KEYS.has(key)) {
      checkInt64(value, at)
    } else if (ENUM_KEYS.has(key)) {
      assert.ok(Number.isInteger(value), `${at}: enum values must be integers, got ${JSON.stringify(value)}`)
    } else {
      checkOtlpJson(value, at)
    }
  }
}

/** The OTLP/JSON body with its hex ids as bytes, the shape the reference `fromObject` takes. */
function idsToBytes(node) {
  if (Array.isArray(node)) return node.map(idsToBytes)
  if (node === null || typeof node !== 'object') return node
  const out = {}
  for (const [key, value] of Object.entries(node)) {
    out[key] = key in ID_LENGTHS && typeof value === 'string' ? Buffer.from(value, 'hex') : idsToBytes(value)
  }
  return out
}

/**
 * The one request the receiver got, checked at the HTTP level and decoded by the reference
 * implementation into a plain object (ids as bytes, 64-bit integers as decimal strings, enums
 * as numbers, defaults filled in).
 */
function decodeRequest(requests, protocol, path) {
  assert.equal(requests.length, 1, 'one batch, one POST')
  const [request] = requests
  assert.equal(request.method, 'POST')
  assert.equal(request.url, path)
  assert.equal(request.headers['content-type'], CONTENT_TYPES[protocol])
  for (const [name, value] of Object.entries(HEADERS)) assert.equal(request.headers[name], value, `header ${name}`)
  let message
  if (protocol === 'http/protobuf') {
    message = ExportTraceServiceRequest.decode(request.body)
  } else {
    const json = JSON.parse(request.body.toString('utf8'))
    checkOtlpJson(json)
    message = ExportTraceServiceRequest.fromObject(idsToBytes(json))
  }
  assert.equal(ExportTraceServiceRequest.verify(message), null)
  return ExportTraceServiceRequest.toObject(message, { longs: String, enums: Number, defaults: true, arrays: true })
}

/** key -> AnyValue of a KeyValue list, refusing duplicate keys. */
function attributeMap(list) {
  const map = {}
  for (const { key, value } of list) {
    assert.ok(!(key in map), `attribute ${key} sent twice`)
    map[key] = value
  }
  return map
}

function spansByName(request) {
  assert.equal(request.resourceSpans.length, 1)
  assert.equal(request.resourceSpans[0].scopeSpans.length, 1)
  const byName = {}
  for (const span of request.resourceSpans[0].scopeSpans[0].spans) {
    assert.ok(!(span.name in byName), `span ${span.name} exported twice`)
    byName[span.name] = span
  }
  return byName
}

function assertWithin(value, low, high, what) {
  const n = BigInt(value)
  assert.ok(n >= low && n <= high, `${what} ${n} is not within [${low}, ${high}]`)
}

// ---------------------------------------------------------------------------------------------
// The trace both protocols export.

/**
 * A `server` root (explicit fractional-ms start and end, status ok) with an `internal` child
 * (attributes of every type, an event, an exception, status error) that has a `client` child,
 * and a `producer` (Date start and end) with a `consumer` child.
 */
async function exportTrace(t, protocol) {
  const path = PATHS[protocol]
  const { requests, url } = await receiver(t, path)
  const tracer = otlpTracer(t, url, protocol)
  const before = nowNs()
  const rootStart = Date.now() - 100 + 0.5
  const root = tracer.startSpan('GET /orders/:id', {
    parent: null,
    kind: 'server',
    startTime: rootStart,
    attributes: { 'http.request.method': 'GET' },
  })
  const work = tracer.startSpan('load order', { parent: root, attributes: CHILD_ATTRIBUTES })
  work.addEvent('cache.miss', { 'cache.key': 'order:42', 'cache.shard': 3, 'cache.cold': true })
  const error = new TypeError('payment declined')
  work.recordException(error)
  work.setStatus('error', 'payment declined')
  const call = tracer.startSpan('POST /charge', { parent: work, kind: 'client' })
  call.end()
  work.end()
  const publishStart = new Date(Date.now() - 20)
  const publish = tracer.startSpan('orders publish', { parent: root, kind: 'producer', startTime: publishStart })
  const consume = tracer.startSpan('orders process', { parent: publish, kind: 'consumer' })
  consume.end()
  const publishEnd = new Date(Date.now() + 2)
  publish.end(publishEnd)
  root.setStatus('ok')
  const rootEnd = Date.now() + 10 + 0.25
  root.end(rootEnd)
  const after = nowNs()
  assert.equal(await tracer.flush(FLUSH_MS), true)
  return {
    request: decodeRequest(requests, protocol, path),
    spans: { root, work, call, publish, consume },
    error,
    times: { before, after, rootStart, rootEnd, publishStart, publishEnd },
  }
}

function checkTrace({ request, spans, error, times }) {
  const resource = attributeMap(request.resourceSpans[0].resource.attributes)
  assert.deepEqual(resource, {
    'service.name': { stringValue: 'checkout' },
    'service.version': { stringValue: '1.2.3' },
    'deployment.environment': { stringValue: 'test' },
    'host.cpu.count': { intValue: '8' },
    'feature.enabled': { boolValue: true },
    'sample.ratio': { doubleValue: 0.5 },
  })
  const scope = request.resourceSpans[0].scopeSpans[0].scope
  assert.equal(scope.name, 'bulwark')
  assert.equal(typeof scope.version, 'string')

  const exported = spansByName(request)
  assert.deepEqual(Object.keys(exported).sort(), [
    'GET /orders/:id', 'POST /charge', 'load order', 'orders process', 'orders publish',
  ])
  const root = exported['GET /orders/:id']
  const work = exported['load order']
  const call = exported['POST /charge']
  const publish = exported['orders publish']
  const consume = exported['orders process']
  const pairs = [[root, spans.root], [work, spans.work], [call, spans.call], [publish, spans.publish], [consume, spans.consume]]

  // ids and parent links
  const traceId = spans.root.traceId
  for (const [data, span] of pairs) {
    assert.equal(hex(data.traceId), traceId, `${data.name}: one trace`)
    assert.equal(data.traceId.length, 16)
    assert.equal(data.spanId.length, 8)
    assert.equal(hex(data.spanId), span.spanId, `${data.name}: span id`)
    assert.equal(data.parentSpanId.length === 0 ? undefined : hex(data.parentSpanId), span.parentSpanId, `${data.name}: parent`)
    assert.equal(data.traceState, '')
  }
  assert.equal(root.parentSpanId.length, 0, 'a root span has an empty parentSpanId')
  assert.equal(hex(work.parentSpanId), spans.root.spanId)
  assert.equal(hex(call.parentSpanId), spans.work.spanId)
  assert.equal(hex(publish.parentSpanId), spans.root.spanId)
  assert.equal(hex(consume.parentSpanId), spans.publish.spanId)
  assert.equal(new Set(pairs.map(([data]) => hex(data.spanId))).size, pairs.length, 'span ids are distinct')

  // kinds, by the proto's numbers
  assert.equal(root.kind, SpanKind.SPAN_KIND_SERVER)
  assert.equal(work.kind, SpanKind.SPAN_KIND_INTERNAL)
  assert.equal(call.kind, SpanKind.SPAN_KIND_CLIENT)
  assert.equal(publish.kind, SpanKind.SPAN_KIND_PRODUCER)
  assert.equal(consume.kind, SpanKind.SPAN_KIND_CONSUMER)

  // attributes with their typed values
  assert.deepEqual(attributeMap(work.attributes), CHILD_ANY_VALUES)
  assert.deepEqual(attributeMap(root.attributes), { 'http.request.method': { stringValue: 'GET' } })
  for (const data of [call, publish, consume]) assert.deepEqual(data.attributes, [])
  for (const [data] of pairs) {
    assert.equal(data.droppedAttributesCount, 0)
    assert.equal(data.droppedEventsCount, 0)
    assert.equal(data.droppedLinksCount, 0)
    assert.deepEqual(data.links, [])
  }

  // events: the added one, then the exception (OTel semantic conventions), inside the span
  assert.deepEqual(work.events.map((e) => e.name), ['cache.miss', 'exception'])
  const [miss, exception] = work.events
  assert.deepEqual(attributeMap(miss.attributes), {
    'cache.key': { stringValue: 'order:42' },
    'cache.shard': { intValue: '3' },
    'cache.cold': { boolValue: true },
  })
  assert.deepEqual(attributeMap(exception.attributes), {
    'exception.type': { stringValue: 'TypeError' },
    'exception.message': { stringValue: 'payment declined' },
    'exception.stacktrace': { stringValue: error.stack },
  })
  for (const event of work.events) {
    assert.equal(event.droppedAttributesCount, 0)
    assertWithin(event.timeUnixNano, BigInt(work.startTimeUnixNano), BigInt(work.endTimeUnixNano), `${event.name} time`)
  }
  assert.ok(BigInt(miss.timeUnixNano) <= BigInt(exception.timeUnixNano), 'events in the order they were added')
  for (const data of [root, call, publish, consume]) assert.deepEqual(data.events, [])

  // status: ok without a message, error with one, the rest unset
  assert.deepEqual({ ...root.status }, { code: StatusCode.STATUS_CODE_OK, message: '' })
  assert.deepEqual({ ...work.status }, { code: StatusCode.STATUS_CODE_ERROR, message: 'payment declined' })
  for (const data of [call, publish, consume]) {
    assert.equal(data.status === null ? StatusCode.STATUS_CODE_UNSET : data.status.code, StatusCode.STATUS_CODE_UNSET)
    assert.equal(data.status === null ? '' : data.status.message, '')
  }

  // timestamps: explicit ones exactly (fractional ms included), implicit ones near Date.now()
  assert.equal(root.startTimeUnixNano, String(msToNs(times.rootStart)))
  assert.equal(root.endTimeUnixNano, String(msToNs(times.rootEnd)))
  assert.equal(publish.startTimeUnixNano, String(msToNs(times.publishStart)))
  assert.equal(publish.endTimeUnixNano, String(msToNs(times.publishEnd)))
  const low = times.before - CLOCK_SLACK_NS
  const high = times.after + CLOCK_SLACK_NS
  for (const data of [work, call, consume]) {
    assertWithin(data.startTimeUnixNano, low, high, `${data.name} start`)
    assertWithin(data.endTimeUnixNano, low, high, `${data.name} end`)
  }
  for (const [data] of pairs) {
    assert.ok(BigInt(data.startTimeUnixNano) <= BigInt(data.endTimeUnixNano), `${data.name}: start <= end`)
  }
  // a child starts no earlier than its parent, and the client call sits inside its parent
  assert.ok(BigInt(work.startTimeUnixNano) >= BigInt(root.startTimeUnixNano))
  assert.ok(BigInt(call.startTimeUnixNano) >= BigInt(work.startTimeUnixNano))
  assert.ok(BigInt(call.endTimeUnixNano) <= BigInt(work.endTimeUnixNano))
  assert.ok(BigInt(consume.startTimeUnixNano) >= BigInt(publish.startTimeUnixNano))
}

/**
 * The request with what legitimately differs between two runs taken out: ids become span
 * names, times become offsets from the root's start, and the stack trace a placeholder.
 */
function shape(request) {
  const spans = request.resourceSpans[0].scopeSpans[0].spans
  const names = new Map(spans.map((s) => [hex(s.spanId), s.name]))
  const origin = BigInt(spans.find((s) => s.parentSpanId.length === 0).startTimeUnixNano)
  const offset = (ns) => (BigInt(ns) - origin >= 0n ? 'after root start' : 'before root start')
  return {
    ...request,
    resourceSpans: request.resourceSpans.map((rs) => ({
      ...rs,
      scopeSpans: rs.scopeSpans.map((ss) => ({
        ...ss,
        spans: ss.spans.map((s) => ({
          ...s,
          traceId: 'trace',
          spanId: s.name,
          parentSpanId: s.parentSpanId.length === 0 ? '' : names.get(hex(s.parentSpanId)),
          startTimeUnixNano: offset(s.startTimeUnixNano),
          endTimeUnixNano: offset(s.endTimeUnixNano),
          events: s.events.map((e) => ({
            ...e,
            timeUnixNano: offset(e.timeUnixNano),
            attributes: e.attributes.map((kv) => (kv.key === 'exception.stacktrace' ? { key: kv.key, value: 'stack' } : kv)),
          })),
        })).sort((a, b) => (a.name < b.name ? -1 : 1)),
      })),
    })),
  }
}

// ---------------------------------------------------------------------------------------------

test('the reference decoder is the official proto code, with the spec\'s enum numbers', () => {
  assert.equal(typeof ExportTraceServiceRequest.decode, 'function')
  assert.equal(typeof ExportTraceServiceRequest.fromObject, 'function')
  assert.deepEqual({ ...SpanKind }, {
    SPAN_KIND_UNSPECIFIED: 0,
    SPAN_KIND_INTERNAL: 1,
    SPAN_KIND_SERVER: 2,
    SPAN_KIND_CLIENT: 3,
    SPAN_KIND_PRODUCER: 4,
    SPAN_KIND_CONSUMER: 5,
  })
  assert.deepEqual({ ...StatusCode }, { STATUS_CODE_UNSET: 0, STATUS_CODE_OK: 1, STATUS_CODE_ERROR: 2 })
})

for (const protocol of PROTOCOLS) {
  test(`${protocol}: a trace decodes with the reference OTLP implementation (ids, parents, kinds, attributes, events, status, times)`, { timeout: 30_000 }, async (t) => {
    checkTrace(await exportTrace(t, protocol))
  })

  test(`${protocol}: a span continuing a remote traceparent keeps its trace id, parent and tracestate`, { timeout: 30_000 }, async (t) => {
    const { requests, url } = await receiver(t)
    const tracer = otlpTracer(t, url, protocol)
    // parent as a traceparent string (no tracestate can come with it)
    const continued = tracer.startSpan('continued', { parent: `00-${REMOTE_TRACE}-${REMOTE_PARENT}-01`, kind: 'server' })
    // parent as an extracted context carrying a tracestate, and a local child of that span
    const ctx = tracer.extract({ traceparent: `00-${REMOTE_TRACE}-${REMOTE_PARENT}-01`, tracestate: TRACESTATE })
    assert.notEqual(ctx, null)
    const withState = tracer.startSpan('continued with state', { parent: ctx, kind: 'consumer' })
    const child = tracer.startSpan('local child', { parent: withState })
    // a remote parent that was not sampled: nothing of this trace is exported
    const unsampled = tracer.startSpan('not sampled', { parent: `00-${'1'.repeat(32)}-${'2'.repeat(16)}-00` })
    assert.equal(unsampled.sampled, false)
    for (const span of [child, withState, continued, unsampled]) span.end()
    assert.equal(await tracer.flush(FLUSH_MS), true)

    const exported = spansByName(decodeRequest(requests, protocol, '/v1/traces'))
    assert.deepEqual(Object.keys(exported).sort(), ['continued', 'continued with state', 'local child'])
    for (const [name, span] of [['continued', continued], ['continued with state', withState], ['local child', child]]) {
      const data = exported[name]
      assert.equal(hex(data.traceId), REMOTE_TRACE, `${name}: the remote trace`)
      assert.equal(hex(data.spanId), span.spanId)
      assert.equal(hex(data.parentSpanId), span.parentSpanId)
    }
    assert.equal(hex(exported.continued.parentSpanId), REMOTE_PARENT)
    assert.equal(hex(exported['continued with state'].parentSpanId), REMOTE_PARENT)
    assert.equal(hex(exported['local child'].parentSpanId), withState.spanId)
    assert.equal(exported.continued.kind, SpanKind.SPAN_KIND_SERVER)
    assert.equal(exported['continued with state'].kind, SpanKind.SPAN_KIND_CONSUMER)
    assert.equal(exported.continued.traceState, '')
    assert.equal(exported['continued with state'].traceState, TRACESTATE)
    assert.equal(exported['local child'].traceState, TRACESTATE, 'a child carries its parent\'s tracestate')
  })
}

test('metrics().exportCpuMs counts the export thread\'s CPU, more after each export', { timeout: 30_000 }, async (t) => {
  const { requests, url } = await receiver(t, PATHS['http/protobuf'])
  const tracer = otlpTracer(t, url, 'http/protobuf')
  // (the thread may already have counted its start)
  let before = tracer.metrics().exportCpuMs
  assert.ok(before >= 0 && before < 1000, `exportCpuMs ${before} at start`)
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 2000; i++) tracer.startSpan('encode me', { attributes: { i, round, text: 'x'.repeat(50) } }).end()
    assert.equal(await tracer.flush(FLUSH_MS), true)
    const cpu = tracer.metrics().exportCpuMs
    assert.ok(Number.isFinite(cpu) && cpu > before, `round ${round}: exportCpuMs ${cpu} after ${before}`)
    before = cpu
  }
  assert.equal(tracer.metrics().exported, 4000)
  assert.ok(requests.length >= 2)
})

test('http/json and http/protobuf decode to the same request for the same trace', { timeout: 30_000 }, async (t) => {
  const [protobuf, json] = await Promise.all(PROTOCOLS.map((protocol) => exportTrace(t, protocol)))
  assert.deepEqual(shape(json.request), shape(protobuf.request))
})

test('http/protobuf: non-finite double attributes arrive as NaN and ±Infinity', { timeout: 30_000 }, async (t) => {
  const { requests, url } = await receiver(t)
  const tracer = otlpTracer(t, url, 'http/protobuf')
  tracer.startSpan('odd numbers', { attributes: { nan: NaN, inf: Infinity, ninf: -Infinity } }).end()
  assert.equal(await tracer.flush(FLUSH_MS), true)
  const span = spansByName(decodeRequest(requests, 'http/protobuf', '/v1/traces'))['odd numbers']
  assert.deepEqual(attributeMap(span.attributes), {
    nan: { doubleValue: NaN },
    inf: { doubleValue: Infinity },
    ninf: { doubleValue: -Infinity },
  })
})

// OTLP/JSON is the proto3 JSON mapping, where a double is a number or one of the strings "NaN",
// "Infinity" and "-Infinity" (serde_json alone would write null, a value-less AnyValue).
test('http/json: non-finite double attributes are written as "NaN", "Infinity", "-Infinity"', {
  timeout: 30_000,
}, async (t) => {
  const { requests, url } = await receiver(t)
  const tracer = otlpTracer(t, url, 'http/json')
  tracer.startSpan('odd numbers', { attributes: { nan: NaN, inf: Infinity, ninf: -Infinity } }).end()
  assert.equal(await tracer.flush(FLUSH_MS), true)
  assert.equal(requests.length, 1)
  const raw = JSON.parse(requests[0].body.toString('utf8')).resourceSpans[0].scopeSpans[0].spans[0]
  assert.deepEqual(attributeMap(raw.attributes), {
    nan: { doubleValue: 'NaN' },
    inf: { doubleValue: 'Infinity' },
    ninf: { doubleValue: '-Infinity' },
  })
  const span = spansByName(decodeRequest(requests, 'http/json', '/v1/traces'))['odd numbers']
  assert.deepEqual(attributeMap(span.attributes), {
    nan: { doubleValue: NaN },
    inf: { doubleValue: Infinity },
    ninf: { doubleValue: -Infinity },
  })
})
