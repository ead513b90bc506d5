'use strict'
// `require('bulwark/express')`: Express glue.
//
// rateLimit(options) is a middleware around one RateLimiter. Per request it makes one native
// call (`limiter.check`) and sets the rate-limit headers from the decision; everything that does
// not change between requests (the policy header, the header prefixes, the callbacks chosen)
// is fixed when the middleware is built.
//
// tracing(options) runs each request in one server span of a DistributedTracer: one startSpan,
// attributes only when sampled, and no listener on the response: Node's diagnostics channel for
// finished responses, or the connection's close, names and ends it (see whenResponseDone).
//
// Header formats, as implemented here:
//
// 'draft-8': draft-ietf-httpapi-ratelimit-headers-08 (October 2024), sections 3 and 4, read in
//   https://github.com/ietf-wg-httpapi/ratelimit-headers/blob/main/draft-ietf-httpapi-ratelimit-headers-08/draft-ietf-httpapi-ratelimit-headers.txt
//   (also https://www.ietf.org/archive/id/draft-ietf-httpapi-ratelimit-headers-08.html):
//     RateLimit-Policy: "default";q=100;w=10   -- List of Items; the Item is a String (the
//                                                 policy name); q REQUIRED non-negative Integer
//                                                 (quota), w OPTIONAL Integer (window, seconds)
//     RateLimit: "default";r=50;t=30           -- r remaining quota units (non-negative Integer),
//                                                 t OPTIONAL seconds until the quota resets
//   and section 5: "If a response contains both the Retry-After and the RateLimit header
//   fields, the reset parameter value SHOULD reference the same point in time as the
//   Retry-After field value" -- so a refused request gets t = Retry-After.
// 'draft-6': draft-ietf-httpapi-ratelimit-headers-06 (December 2022): `RateLimit-Policy: 10;w=1`,
//   `RateLimit-Limit: 10`, `RateLimit-Remaining: 9`, `RateLimit-Reset: <delay seconds>` (the
//   same shapes express-rate-limit writes for its 'draft-6' option).
// 'legacy': the de facto X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (the
//   Unix time in seconds at which the client's bucket is full again).
//
// A token bucket has no fixed window; its window is the time an empty bucket takes to fill,
// ceil(capacity / refillPerSecond) seconds. Quotas are whole: q and the limit headers carry
// floor(capacity), as a bucket of 2.5 tokens admits two requests of cost 1.
const { RateLimiter } = require('./index.js')
const { kDecide, kDecision } = require('./lib/limiter')
const { RateLimitError, invalidOption, invalidArgument, describe } = require('./lib/errors')
const http = require('node:http')
const net = require('node:net')
const diagnosticsChannel = require('node:diagnostics_channel')
const { clientKey } = require('./lib/client-key')
const { kStartSpan, SpanKind } = require('./lib/tracer')
const { Observability, PROMETHEUS_CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE } = require('./lib/observability')

const SERVER_KIND = SpanKind.server

const OPTIONS = ['limiter', 'capacity', 'refillPerSecond', 'key', 'cost', 'skip', 'wait', 'headers', 'policyName', 'onLimited']
const KNOWN = new Set(OPTIONS)
const HEADER_FORMATS = ['draft-8', 'draft-6', 'legacy']

/**
 * The default key: the client address (`req.ip`, else the socket's), IPv6 grouped by /56.
 * With Express's 'trust proxy' off (its default), `req.ip` is the socket's address, so that is
 * read directly: the getter would parse X-Forwarded-For only to ignore it (about 2 us a request,
 * measured in benches/js/express.js's server).
 */
function addressKey(req) {
  const app = req.app
  let address = app !== undefined && app !== null && typeof app.get === 'function' && !app.get('trust proxy')
    ? undefined
    : req.ip
  if (typeof address !== 'string') {
    const socket = req.socket
    address = socket ? socket.remoteAddress : undefined
    if (typeof address !== 'string') return 'unknown'
  }
  return clientKey(address)
}

function isThenable(value) {
  return value !== null && typeof value === 'object' && typeof value.then === 'function'
}

/** Seconds, rounded up, of a number of milliseconds. */
function seconds(ms) {
  return Math.ceil(ms / 1000)
}

/** `name` as an RFC 8941 String (the Item of a draft-8 policy): quoted, `\` and `"` escaped. */
function sfString(name) {
  return `"${name.replace(/[\\"]/g, '\\$&')}"`
}

function readFunction(options, name) {
  const value = options[name]
  if (value === undefined) return null
  if (typeof value !== 'function') {
    throw invalidOption(TypeError, `options.${name} must be a function, received ${describe(value)}`)
  }
  return value
}

/** Validates the options; returns them normalized, with the limiter made when asked to. */
function readOptions(options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidOption(TypeError, `options must be an object with limiter, or capacity and refillPerSecond, received ${describe(options)}`)
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN.has(name)) {
      throw invalidOption(TypeError, `options has an unknown option "${name}" (received ${describe(options[name])}); known options are: ${OPTIONS.join(', ')}`)
    }
  }

  let limiter = options.limiter
  let capacity
  let refillPerSecond
  const ownsFigures = options.capacity !== undefined || options.refillPerSecond !== undefined
  if (limiter !== undefined) {
    if (ownsFigures) {
      throw invalidOption(TypeError, 'options.limiter cannot be combined with options.capacity or options.refillPerSecond: pass a RateLimiter, or the figures to make one')
    }
    if (limiter === null || typeof limiter !== 'object' || typeof limiter.check !== 'function') {
      throw invalidOption(TypeError, `options.limiter must be a RateLimiter, received ${describe(limiter)}`)
    }
    // Only known when the limiter tells; otherwise q comes from each decision and w is left out
    // (draft-8 makes it optional).
    if (Number.isFinite(limiter.capacity) && Number.isFinite(limiter.refillPerSecond)) {
      capacity = limiter.capacity
      refillPerSecond = limiter.refillPerSecond
    }
  } else if (ownsFigures) {
    // the RateLimiter validates both figures and names the option in its error
    limiter = new RateLimiter({ capacity: options.capacity, refillPerSecond: options.refillPerSecond })
    capacity = options.capacity
    refillPerSecond = options.refillPerSecond
  } else {
    throw invalidOption(TypeError, 'options.limiter or options.capacity and options.refillPerSecond are required, received neither')
  }

  const wait = options.wait === undefined ? false : options.wait
  if (typeof wait !== 'boolean') {
    throw invalidOption(TypeError, `options.wait must be a boolean, received ${describe(wait)}`)
  }
  if (wait && typeof limiter.acquire !== 'function') {
    throw invalidOption(TypeError, 'options.wait needs a limiter with an acquire method')
  }

  const headers = options.headers === undefined ? 'draft-8' : options.headers
  if (headers !== false && !HEADER_FORMATS.includes(headers)) {
    const ErrorClass = typeof headers === 'string' ? RangeError : TypeError
    throw invalidOption(ErrorClass, `options.headers must be 'draft-8', 'draft-6', 'legacy' or false, received ${describe(headers)}`)
  }

  const policyName = options.policyName === undefined ? 'default' : options.policyName
  if (typeof policyName !== 'string') {
    throw invalidOption(TypeError, `options.policyName must be a string, received ${describe(policyName)}`)
  }
  // an RFC 8941 String holds printable ASCII only
  if (!/^[\x20-\x7e]{1,256}$/.test(policyName)) {
    throw invalidOption(RangeError, `options.policyName must be 1 to 256 printable ASCII characters, received ${describe(policyName)}`)
  }

  return {
    limiter,
    capacity,
    refillPerSecond,
    key: readFunction(options, 'key'),
    cost: readFunction(options, 'cost'),
    skip: readFunction(options, 'skip'),
    onLimited: readFunction(options, 'onLimited'),
    wait,
    headers,
    policyName,
  }
}

/**
 * Builds the function that writes the rate-limit headers of a decision, or null for none.
 * `resetMs` is what the reset headers speak of: until the bucket is full when admitted, the
 * Retry-After wait when refused.
 */
function headerWriter(format, policyName, capacity, refillPerSecond) {
  if (format === false) return null
  const known = capacity !== undefined
  const quota = known ? Math.floor(capacity) : -1
  const windowSeconds = known ? Math.ceil(capacity / refillPerSecond) : 0

  if (format === 'draft-8') {
    const name = sfString(policyName)
    const prefix = `${name};r=`
    const defaultPolicy = `${name};q=${quota};w=${windowSeconds}`
    // Per-client limits and tiers show in decision.limit. Their refill rate is not in the
    // decision, so their policy carries q alone; the last one is kept to spare the rebuild.
    let lastQuota = -1
    let lastPolicy = ''
    return function writeDraft8(res, limit, remaining, resetMs) {
      const q = Math.floor(limit)
      let policy = defaultPolicy
      if (q !== quota) {
        if (q !== lastQuota) {
          lastQuota = q
          lastPolicy = `${name};q=${q}`
        }
        policy = lastPolicy
      }
      res.setHeader('RateLimit-Policy', policy)
      res.setHeader('RateLimit', `${prefix}${remaining};t=${seconds(resetMs)}`)
    }
  }

  if (format === 'draft-6') {
    // draft-6 has no policy without a window, so the field is left out when w is not known
    const defaultPolicy = `${quota};w=${windowSeconds}`
    return function writeDraft6(res, limit, remaining, resetMs) {
      const q = Math.floor(limit)
      if (q === quota) res.setHeader('RateLimit-Policy', defaultPolicy)
      res.setHeader('RateLimit-Limit', q)
      res.setHeader('RateLimit-Remaining', remaining)
      res.setHeader('RateLimit-Reset', seconds(resetMs))
    }
  }

  return function writeLegacy(res, limit, remaining, resetMs) {
    res.setHeader('X-RateLimit-Limit', Math.floor(limit))
    res.setHeader('X-RateLimit-Remaining', remaining)
    res.setHeader('X-RateLimit-Reset', seconds(Date.now() + resetMs))
  }
}

/**
 * Express middleware that rate-limits requests with a RateLimiter (token bucket per key).
 * Admitted requests carry the rate-limit headers and go on; refused ones get 429 with
 * Retry-After and `{"error":"rate_limited","retryAfterMs":n}`, or whatever `onLimited` does.
 *
 * @param {import('./express').RateLimitOptions} options
 * @returns {import('./express').RateLimitMiddleware}
 */
function rateLimit(options) {
  const config = readOptions(options)
  const { limiter, wait, onLimited } = config
  const keyOf = config.key || addressKey
  const costOf = config.cost
  const skip = config.skip
  const writeHeaders = headerWriter(config.headers, config.policyName, config.capacity, config.refillPerSecond)
  // the limit to report when an `acquire` is refused, which comes without a decision
  const defaultLimit = config.capacity === undefined ? NaN : config.capacity
  // the fast path of a bulwark RateLimiter; other limiters (anything with `check`) use `check`
  const decide = limiter instanceof RateLimiter ? limiter[kDecide] : null
  const figures = decide !== null ? limiter[kDecision] : null
  // a limiter whose buckets are in Redis answers through a promise (`consume`)
  const remote = limiter instanceof RateLimiter && limiter.remote

  function decided(req, res, next, decision) {
    if (decision.allowed) {
      if (writeHeaders !== null) writeHeaders(res, decision.limit, decision.remaining, decision.resetMs)
      return next()
    }
    refuse(req, res, next, decision)
  }

  function refuse(req, res, next, decision) {
    const retryAfterMs = decision.retryAfterMs
    if (writeHeaders !== null && !Number.isNaN(decision.limit)) {
      // Nothing is left for this request, whatever the bucket holds (a blocked key, a global
      // budget); draft-8 section 5 lets a server lower the values it reports.
      writeHeaders(res, decision.limit, 0, retryAfterMs)
    }
    res.setHeader('Retry-After', Math.max(1, seconds(retryAfterMs)))
    if (onLimited !== null) {
      let result
      try {
        result = onLimited(req, res, next, decision)
      } catch (error) {
        next(error)
        return
      }
      if (isThenable(result)) result.then(undefined, next)
      return
    }
    res.statusCode = 429
    res.setHeader('Content-Type', 'application/json; charset=utf-8')
    res.end(`{"error":"rate_limited","retryAfterMs":${retryAfterMs}}`)
  }

  function waitFor(req, res, next, key, cost) {
    // a client that goes away gives its place in the queue back
    const controller = new AbortController()
    const onClose = () => controller.abort()
    res.once('close', onClose)
    limiter.acquire(key, cost, { signal: controller.signal }).then(
      (decision) => {
        res.removeListener('close', onClose)
        if (writeHeaders !== null) writeHeaders(res, decision.limit, decision.remaining, decision.resetMs)
        next()
      },
      (error) => {
        res.removeListener('close', onClose)
        if (!(error instanceof RateLimitError)) {
          next(error)
          return
        }
        if (error.reason === 'aborted') return // nobody is left to answer
        const decision = { allowed: false, limit: defaultLimit, remaining: 0, resetMs: error.retryAfterMs, retryAfterMs: error.retryAfterMs }
        refuse(req, res, next, decision)
      },
    )
  }

  return function bulwarkRateLimit(req, res, next) {
    let key
    let cost
    try {
      if (skip !== null) {
        const skipped = skip(req)
        if (isThenable(skipped)) throw invalidArgument(TypeError, 'options.skip must return a boolean synchronously, received a promise')
        if (skipped) return next()
      }
      key = keyOf(req)
      if (costOf !== null) cost = costOf(req)
    } catch (error) {
      return next(error)
    }
    if (wait) return waitFor(req, res, next, key, cost)
    if (remote) {
      limiter.consume(key, cost).then((decision) => decided(req, res, next, decision), next)
      return
    }
    if (figures !== null) {
      // a bulwark RateLimiter: one crossing, the figures left in a shared array, no object
      let allowed
      try {
        // without a cost the native side reads one argument only
        allowed = costOf === null ? decide(key) : decide(key, cost)
      } catch (error) {
        return next(error)
      }
      if (allowed) {
        if (writeHeaders !== null) writeHeaders(res, figures[0], figures[1], figures[2])
        return next()
      }
      return refuse(req, res, next, { allowed, limit: figures[0], remaining: figures[1], resetMs: figures[2], retryAfterMs: figures[3] })
    }
    let decision
    try {
      // one crossing: the key and cost are validated on the native side
      decision = limiter.check(key, cost)
    } catch (error) {
      return next(error)
    }
    if (decision.allowed) {
      if (writeHeaders !== null) writeHeaders(res, decision.limit, decision.remaining, decision.resetMs)
      return next()
    }
    refuse(req, res, next, decision)
  }
}


const TRACING_OPTIONS = ['tracer', 'ignore', 'spanName']
const TRACING_KNOWN = new Set(TRACING_OPTIONS)

/** Validates the options of `tracing`; returns the tracer and the callbacks (or null). */
function readTracingOptions(options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidOption(TypeError, `options must be an object with tracer, received ${describe(options)}`)
  }
  for (const name of Object.keys(options)) {
    if (!TRACING_KNOWN.has(name)) {
      throw invalidOption(TypeError, `options has an unknown option "${name}" (received ${describe(options[name])}); known options are: ${TRACING_OPTIONS.join(', ')}`)
    }
  }
  const tracer = options.tracer
  if (tracer === null || typeof tracer !== 'object' || typeof tracer.startSpan !== 'function' ||
      typeof tracer.extract !== 'function' || typeof tracer.withSpan !== 'function') {
    throw invalidOption(TypeError, `options.tracer must be a DistributedTracer, received ${describe(tracer)}`)
  }
  return { tracer, ignore: readFunction(options, 'ignore'), spanName: readFunction(options, 'spanName') }
}

/**
 * Where the tracing middleware keeps a request's server span: under this symbol in Express's
 * `res.locals` (a dictionary object Express makes for each request, where adding an entry is a
 * hash insert), or, for a response without `locals`, in `requestSpans`.
 */
const kServerSpan = Symbol('bulwark.serverSpan')
/** The server spans of requests whose response has no `res.locals`. */
const requestSpans = new WeakMap()

/** Express's `res.locals` of a response, or null when it has none. */
function localsOf(res) {
  const locals = res !== undefined && res !== null ? res.locals : undefined
  return locals !== null && typeof locals === 'object' ? locals : null
}

/** The server span the tracing middleware set for `req`, or undefined. */
function requestSpan(req) {
  const locals = localsOf(req.res)
  if (locals !== null) {
    const span = locals[kServerSpan]
    if (span !== undefined) return span
  }
  return requestSpans.get(req)
}

/** `req.span` on a request prototype: the middleware's span, or what was assigned. */
const spanProperty = {
  configurable: true,
  enumerable: false,
  get() {
    return requestSpan(this)
  },
  set(value) {
    Object.defineProperty(this, 'span', { value, writable: true, configurable: true, enumerable: true })
  },
}

/**
 * Makes `req.span` return `span`. Adding a property to a request object costs about 5 µs a
 * request here (Express gives each request its app's prototype, and V8 then migrates the
 * object's hidden class), and a WeakMap entry keyed by a young request about 1 µs (the
 * collector's ephemeron work), so the span goes into `res.locals` and `req.span` is a getter on
 * the request's prototype (Express's per-app `app.request`), defined once. A request whose
 * prototype is Node's own IncomingMessage (no Express) gets a plain property.
 */
function setRequestSpan(req, res, span) {
  const locals = localsOf(res)
  if (locals !== null) locals[kServerSpan] = span
  else requestSpans.set(req, span)
  const proto = Object.getPrototypeOf(req)
  if (proto !== null && Object.prototype.hasOwnProperty.call(proto, 'span')) return
  if (proto === null || proto === http.IncomingMessage.prototype || proto === Object.prototype) {
    req.span = span
    return
  }
  Object.defineProperty(proto, 'span', spanProperty)
}

/** Span names by route template and method: made once, so a request builds no string. */
const routeNames = new Map()

/** `METHOD route`, cached (routes and methods are finite: the app defines them). */
function routeSpanName(method, route) {
  let byMethod = routeNames.get(route)
  if (byMethod === undefined) {
    byMethod = new Map()
    routeNames.set(route, byMethod)
  }
  let name = byMethod.get(method)
  if (name === undefined) {
    name = `${method} ${route}`
    byMethod.set(method, name)
  }
  return name
}

/** The route template of a request once routed (`req.baseUrl` + `req.route.path`), or undefined. */
function routeOf(req) {
  const route = req.route
  if (route === undefined || route === null || typeof route.path !== 'string') return undefined
  const base = req.baseUrl
  return typeof base === 'string' && base !== '' ? base + route.path : route.path
}

// How the tracing middleware learns that a response is done. In an Express 5 app every request
// and response object gets a hidden class of its own (measured: no two requests' `req` share
// one), so each property read or method call on them misses V8's caches: about 150 ns each in
// a live server (ten reads 1.5 us a request, `res.on('close', fn)` 0.54 us). So the middleware
// touches `req` and `res` as little as it can: each property it needs once, and no listener on
// the response. Node's HTTP server publishes every finished response on the diagnostics
// channel 'http.server.response.finish' (with its socket); a client that goes away first closes
// the socket, which is watched once per connection (a socket's hidden class is shared). Open
// requests wait in a list on their socket, in order (HTTP/1.1 answers in order, so the one
// that finishes is nearly always the first).

/** The traced requests of a connection still waiting for their response to finish. */
const kOpenRequests = Symbol('bulwark.openRequests')

/** One traced request waiting for its response: `end(finished)` names and ends its span. */
class OpenRequest {
  constructor(res, end) {
    this.res = res
    this.end = end
  }
}

let finishSubscribed = false

/** Ends an open request's span; a failure must not reach Node's HTTP code. */
function settle(open, finished) {
  try {
    open.end(finished)
  } catch {
    // the span stays as it was: tracing never takes a request down
  }
}

/**
 * Takes the open requests for which `matches(open, arg)` holds out of `waiting` and ends them,
 * finished.
 */
function settleFinished(waiting, matches, arg) {
  for (let i = 0; i < waiting.length;) {
    const open = waiting[i]
    if (!matches(open, arg)) {
      i++
      continue
    }
    if (i === waiting.length - 1) waiting.pop()
    else waiting.splice(i, 1)
    settle(open, true)
  }
}

const isOpenFor = (open, res) => open.res === res
const hasFinished = (open) => open.res.writableFinished === true

/** Node published a finished response: its open request (on its socket) ends, finished. */
function onResponseFinish(message) {
  const socket = message.socket
  const waiting = socket !== null && typeof socket === 'object' ? socket[kOpenRequests] : undefined
  if (waiting === undefined || waiting.length === 0) return
  settleFinished(waiting, isOpenFor, message.response)
}

/** A watched connection closed: its requests that did not finish were aborted. */
function onSocketClose() {
  const waiting = this[kOpenRequests]
  if (waiting === undefined || waiting.length === 0) return
  for (const open of waiting.splice(0)) settle(open, open.res.writableFinished === true)
}

/**
 * Arranges for `end(finished)` to be called once `res` finishes (true) or its connection closes
 * first (false). A response Node's HTTP server does not serve on a real socket (a test double,
 * HTTP/2's compatibility layer) gets a 'close' listener instead. Returns true when neither can
 * come any more (the client went away before the middleware ran): the caller ends the span.
 */
function whenResponseDone(res, socket, end) {
  if (!(socket instanceof net.Socket) || !(res instanceof http.ServerResponse)) {
    res.on('close', () => end(res.writableFinished === true))
    return false
  }
  if (socket.destroyed) return true
  if (!finishSubscribed) {
    finishSubscribed = true
    diagnosticsChannel.subscribe('http.server.response.finish', onResponseFinish)
  }
  let waiting = socket[kOpenRequests]
  if (waiting === undefined) {
    waiting = socket[kOpenRequests] = []
    socket.on('close', onSocketClose)
  } else if (waiting.length !== 0) {
    // an earlier request of this connection is still listed: pipelined and not answered yet,
    // or answered before a tracing middleware saw it (its finish was published already)
    settleFinished(waiting, hasFinished)
  }
  waiting.push(new OpenRequest(res, end))
  return false
}

/**
 * Express middleware that runs each request in one `server` span of a DistributedTracer,
 * parented on the incoming `traceparent` and active for the whole handler chain.
 *
 * @param {import('./express').TracingOptions} options
 * @returns {import('./express').TracingMiddleware}
 */
function tracing(options) {
  const { tracer, ignore, spanName } = readTracingOptions(options)

  /** Sets the attributes known when the request comes in (sampled spans only). */
  function startAttributes(span, req, method, headers, socket) {
    const url = req.originalUrl !== undefined ? req.originalUrl : req.url
    const query = url.indexOf('?')
    // Behind a trusted proxy, Express's getters read X-Forwarded-For/-Proto; a request without
    // either gets the socket's answers from them too, so the app's setting is only looked up
    // when one is there
    const forwarded = headers !== undefined && headers !== null &&
      (headers['x-forwarded-for'] !== undefined || headers['x-forwarded-proto'] !== undefined)
    let address
    let scheme
    if (forwarded) {
      const app = req.app
      if (app !== undefined && app !== null && typeof app.get === 'function' && app.get('trust proxy')) {
        address = req.ip
        scheme = req.protocol
      }
    }
    if (typeof address !== 'string' && socket) address = socket.remoteAddress
    if (typeof scheme !== 'string') scheme = socket && socket.encrypted ? 'https' : 'http'
    span.setAttribute('http.request.method', method)
    span.setAttribute('url.path', query === -1 ? url : url.slice(0, query))
    span.setAttribute('url.scheme', scheme)
    if (socket && typeof socket.localPort === 'number') span.setAttribute('server.port', socket.localPort)
    if (typeof address === 'string') span.setAttribute('client.address', address)
    const agent = headers !== undefined && headers !== null ? headers['user-agent'] : undefined
    if (typeof agent === 'string') span.setAttribute('user_agent.original', agent)
  }

  return function bulwarkTracing(req, res, next) {
    const method = req.method
    let name
    try {
      if (ignore !== null) {
        const ignored = ignore(req)
        if (isThenable(ignored)) throw invalidArgument(TypeError, 'options.ignore must return a boolean synchronously, received a promise')
        if (ignored) return next()
      }
      if (spanName !== null) {
        name = spanName(req)
        if (typeof name !== 'string') throw invalidArgument(TypeError, `options.spanName must return a string, received ${describe(name)}`)
      } else {
        name = method
      }
    } catch (error) {
      return next(error)
    }
    // extract never throws; null (no or a bad traceparent) starts a new trace. Node's parser
    // lowercases header names, so a request without `traceparent` skips extract altogether.
    const headers = req.headers
    const parent = headers !== undefined && headers !== null && headers.traceparent === undefined ? null : tracer.extract(headers)
    const span = typeof tracer[kStartSpan] === 'function'
      ? tracer[kStartSpan](name, SERVER_KIND, parent)
      : tracer.startSpan(name, { parent, kind: 'server' })
    const sampled = span.sampled
    const socket = req.socket
    if (sampled) startAttributes(span, req, method, headers, socket)
    setRequestSpan(req, res, span)

    /** Names the span by its route, sets the response's attributes and status, and ends it. */
    function done(finished) {
      if (span.ended) return
      const route = routeOf(req)
      if (spanName === null && route !== undefined) span.updateName(routeSpanName(method, route))
      const code = res.statusCode
      if (sampled) {
        if (route !== undefined) span.setAttribute('http.route', route)
        if (finished || res.headersSent) span.setAttribute('http.response.status_code', code)
      }
      if (!finished) span.setStatus('error', 'aborted')
      else if (code >= 500) span.setStatus('error', `HTTP ${code}`)
      span.end()
    }
    if (whenResponseDone(res, socket, done)) {
      // no response can reach this client: the span ends once the chain has run (its route
      // known if routing was synchronous)
      try {
        tracer.withSpan(span, next)
      } finally {
        done(false)
      }
      return
    }
    tracer.withSpan(span, next)
  }
}

const OBSERVABILITY_OPTIONS = ['obs', 'paths']
const DEFAULT_PATHS = Object.freeze({
  snapshot: '/api/v1/system/observability',
  resilience: '/api/v1/providers/resilience-status',
  metrics: '/metrics',
  health: '/healthz',
  ready: '/readyz',
})

/**
 * Express middleware that serves an Observability: the JSON snapshot (also under the
 * resilience-status path budget-server's clients call), Prometheus text on /metrics
 * (OpenMetrics when the Accept header asks for it), /healthz and /readyz (503 with the reasons
 * when not ready). Other requests pass through. `paths` renames any of the five.
 *
 * @param {import('./express').ObservabilityMiddlewareOptions} options
 */
function observability(options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidOption(TypeError, `options must be an object with obs, received ${describe(options)}`)
  }
  for (const name of Object.keys(options)) {
    if (!OBSERVABILITY_OPTIONS.includes(name)) {
      throw invalidOption(TypeError, `options has an unknown option "${name}"; known options are: ${OBSERVABILITY_OPTIONS.join(', ')}`)
    }
  }
  const { obs } = options
  if (!(obs instanceof Observability)) {
    throw invalidOption(TypeError, `options.obs must be an Observability, received ${describe(obs)}`)
  }
  const paths = { ...DEFAULT_PATHS }
  if (options.paths !== undefined) {
    if (options.paths === null || typeof options.paths !== 'object') {
      throw invalidOption(TypeError, `options.paths must be an object, received ${describe(options.paths)}`)
    }
    for (const [name, path] of Object.entries(options.paths)) {
      if (!(name in DEFAULT_PATHS)) {
        throw invalidOption(TypeError, `options.paths has an unknown path "${name}"; known paths are: ${Object.keys(DEFAULT_PATHS).join(', ')}`)
      }
      if (typeof path !== 'string' || !path.startsWith('/')) {
        throw invalidOption(TypeError, `options.paths.${name} must be a path starting with /, received ${describe(path)}`)
      }
      paths[name] = path
    }
  }
  const routes = new Map([
    [paths.snapshot, 'snapshot'],
    [paths.resilience, 'snapshot'],
    [paths.metrics, 'metrics'],
    [paths.health, 'health'],
    [paths.ready, 'ready'],
  ])

  function send(res, status, type, body) {
    res.statusCode = status
    res.setHeader('content-type', type)
    res.setHeader('cache-control', 'no-store')
    res.end(body)
  }

  return function bulwarkObservability(req, res, next) {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next()
    const url = req.originalUrl !== undefined ? req.originalUrl : req.url
    const query = url.indexOf('?')
    const route = routes.get(query === -1 ? url : url.slice(0, query))
    if (route === undefined) return next()
    try {
      if (route === 'snapshot') return send(res, 200, 'application/json; charset=utf-8', JSON.stringify(obs.snapshot()))
      if (route === 'metrics') {
        const accept = req.headers.accept
        const openMetrics = typeof accept === 'string' && accept.includes('application/openmetrics-text')
        return send(res, 200, openMetrics ? OPENMETRICS_CONTENT_TYPE : PROMETHEUS_CONTENT_TYPE, obs.prometheus({ openMetrics }))
      }
      if (route === 'health') return send(res, 200, 'application/json; charset=utf-8', JSON.stringify(obs.health()))
      const ready = obs.ready()
      return send(res, ready.ready ? 200 : 503, 'application/json; charset=utf-8', JSON.stringify(ready))
    } catch (error) {
      return next(error)
    }
  }
}

module.exports = { rateLimit, tracing, observability, clientKey }
