'use strict'
// web-server (port 3000): the gateway. Every /api request is rate-limited per client (by API key,
// else by address) and traced; /api/<service>/<path> is proxied to that service's /api/v1/<path>
// with `tracer.fetch`, so the backend's spans join the gateway's trace.
//
//   GET  /                       an index of the platform, with links to try
//   GET  /api/dashboard/:teamId  one request, two backends: budget-server and reports-server
//   ANY  /api/<service>/<path>   training, meta, budget, coach, segmentation, reports, capabilities
const { RateLimiter } = require('bulwark')
const { rateLimit } = require('bulwark/express')
const config = require('./lib/config')
const { createService } = require('./lib/service')

const { app, tracer, obs, onClose, listen } = createService('web-server')

// each client may burst 20 requests, then 10 a second; with REDIS_URL the buckets are shared
// by every gateway of the fleet
const limiter = new RateLimiter({ capacity: 20, refillPerSecond: 10, ...config.limiterStore('gateway') })
onClose('limiter', () => limiter.close())
obs.add('gateway', limiter)
const limited = rateLimit({ limiter, policyName: 'gateway', key: (req) => req.get('x-api-key') || req.ip })

/** Service by gateway prefix: `budget` -> budget-server. */
const BACKENDS = new Map(config.SERVICES.filter((s) => s.prefix !== null).map((s) => [s.prefix, s.name]))

/** Headers worth passing back from a backend (its own RateLimit headers would hide ours). */
const PASSED_BACK = ['content-type', 'retry-after', 'x-cache', 'cache-control', 'location']

/** Calls `service`'s `path` inside the active span (a client span, its traceparent sent along). */
function callBackend(req, service, path, init = {}) {
  const headers = { accept: 'application/json', 'x-forwarded-for': forwardedFor(req) }
  const apiKey = req.get('x-api-key')
  if (apiKey !== undefined) headers['x-api-key'] = apiKey
  return tracer.fetch(`${config.urlOf(service)}${path}`, { ...init, headers: { ...headers, ...init.headers }, signal: AbortSignal.timeout(10_000) })
}

function forwardedFor(req) {
  const previous = req.get('x-forwarded-for')
  const address = req.socket.remoteAddress || ''
  return previous ? `${previous}, ${address}` : address
}

/** The answer when a backend could not be reached or did not answer in time. */
function badGateway(res, service, error) {
  const timeout = error.name === 'TimeoutError'
  res.status(timeout ? 504 : 502).json({ error: timeout ? 'backend_timeout' : 'backend_unavailable', service, message: error.message, traceId: tracer.currentTraceId() })
}

app.get('/', (req, res) => {
  const link = (href) => `<a href="${href}">${href}</a>`
  const rows = config.SERVICES.map((s) => `<tr><td>${s.name}</td><td>${link(config.urlOf(s.name) + '/api/v1/system/observability')}</td><td>${s.prefix ? `/api/${s.prefix}/…` : ''}</td><td>${s.blocks}</td></tr>`).join('\n')
  const tries = [
    '/api/dashboard/2', '/api/reports/teams/3/summary', '/api/reports/teams/3/activity', '/api/reports/teams/3/activity/batched',
    '/api/budget/budgets/1?currency=EUR', '/api/budget/providers/rates/JPY', '/api/training/courses', '/api/meta/services',
    '/api/coach/tips?topic=tracing', '/api/capabilities/capabilities?plan=enterprise', '/api/v1/system/observability', '/metrics',
  ]
  res.type('html').send(`<!doctype html><meta charset="utf-8"><title>bulwark platform</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:70em}td{padding:.2em 1em .2em 0}code{background:#eee;padding:0 .3em}</style>
<h1>bulwark platform</h1>
<p>Eight Express services using <code>require('bulwark')</code>. Everything under <code>/api</code> here is rate-limited per
client (20 at once, then 10 a second; send <code>x-api-key</code> to be a client of your own) and traced across services.</p>
<h2>Try</h2><ul>${tries.map((t) => `<li>${link(t)}</li>`).join('')}</ul>
<h2>Services</h2><table><tr><th>service</th><th>observability</th><th>through the gateway</th><th>blocks</th></tr>
${rows}</table>
<p><code>npm run load</code> drives traffic and prints a summary; N+1 findings and the slowest statements are in
${link(config.urlOf('reports-server') + '/api/v1/system/observability')} under <code>queries</code>.</p>`)
})

// One request, two backends, one trace: the two client spans are children of this request's
// server span, and each backend's server span is the child of one of them.
app.get('/api/dashboard/:teamId', limited, async (req, res) => {
  const teamId = encodeURIComponent(req.params.teamId)
  const parts = [
    ['budget', 'budget-server', `/api/v1/budgets/${teamId}`],
    ['report', 'reports-server', `/api/v1/teams/${teamId}/summary`],
  ]
  const answers = await Promise.all(parts.map(async ([key, service, path]) => {
    try {
      const response = await callBackend(req, service, path)
      return [key, { status: response.status, cache: response.headers.get('x-cache'), body: await response.json() }]
    } catch (error) {
      return [key, { status: 502, error: error.message }]
    }
  }))
  const body = Object.fromEntries(answers)
  const failed = answers.some(([, a]) => a.status >= 500)
  res.status(failed ? 502 : 200).json({ traceId: tracer.currentTraceId(), ...body })
})

// /api/<service>/<path>: to <service>'s /api/v1/<path>
app.use('/api', limited, async (req, res) => {
  const match = /^\/([a-z]+)(\/.*)?$/.exec(req.path)
  const service = match && BACKENDS.get(match[1])
  if (!service) return res.status(404).json({ error: 'not_found', message: `no service behind /api${req.path}; services: ${[...BACKENDS.keys()].join(', ')}` })
  const rest = match[2] || '/'
  if (rest.startsWith('/admin')) return res.status(403).json({ error: 'forbidden', message: 'admin endpoints are not reachable through the gateway' })
  // one span name per service, not per path (paths carry ids: unbounded names)
  if (req.span) req.span.updateName(`${req.method} /api/${match[1]}/*`)
  const query = req.originalUrl.indexOf('?')
  const init = { method: req.method }
  if (req.method !== 'GET' && req.method !== 'HEAD' && req.body !== undefined) {
    init.body = JSON.stringify(req.body)
    init.headers = { 'content-type': 'application/json' }
  }
  let response
  try {
    response = await callBackend(req, service, `/api/v1${rest}${query === -1 ? '' : req.originalUrl.slice(query)}`, init)
  } catch (error) {
    return badGateway(res, service, error)
  }
  res.status(response.status)
  for (const name of PASSED_BACK) {
    const value = response.headers.get(name)
    if (value !== null) res.set(name, value)
  }
  res.send(Buffer.from(await response.arrayBuffer()))
})

listen()
