'use strict'
// Everything the platform reads from the environment, in one place. Each service and the
// supervisor, the load driver and the tests read it from here, so a port or a switch is
// defined once.
//
//   PORT_OFFSET        added to every port (run `npm start` twice: PORT_OFFSET=100 for the second)
//   HOST               the address every service listens on (default 127.0.0.1)
//   DATABASE_URL       PostgreSQL through pg; unset, each service has its own SQLite file
//   DB_SCHEMA_PREFIX   PostgreSQL only: schemas are <prefix>budget and <prefix>reports (default platform_)
//   REDIS_URL          the gateway's limiter and the budget and reports caches use Redis
//   PLATFORM_DATA_DIR  where SQLite files and the reports cache's disk tier go (default examples/platform/.data)
//   PLATFORM_SPANS     pretty (default) | json | off: how the console exporter's spans are shown
//   OTEL_EXPORTER_OTLP_ENDPOINT  spans go to that collector instead of the console
//   PROVIDER_FAILURE_RATE        budget's simulated provider fails this fraction of calls (default 0)
//   BREAKER_OPEN_MS    how long budget's provider breaker stays open before probing (default 5000)
const path = require('node:path')

/** The eight services: name, script, base port, what it shows. */
const SERVICES = [
  { name: 'web-server', script: 'web-server.js', port: 3000, prefix: null, blocks: 'rateLimit + tracing, proxies /api/<service>/...' },
  { name: 'training-server', script: 'training-server.js', port: 3001, prefix: 'training', blocks: 'tracer (15% sampled)' },
  { name: 'meta-server', script: 'meta-server.js', port: 3002, prefix: 'meta', blocks: 'tracer (20% sampled)' },
  { name: 'budget-server', script: 'budget-server.js', port: 3003, prefix: 'budget', blocks: 'cache, limiter, breaker, pool + queries' },
  { name: 'coach-server', script: 'coach-server.js', port: 3004, prefix: 'coach', blocks: 'tracer (10% sampled)' },
  { name: 'segmentation-server', script: 'segmentation-server.js', port: 3007, prefix: 'segmentation', blocks: 'tracer (15% sampled)' },
  { name: 'reports-server', script: 'reports-server.js', port: 3008, prefix: 'reports', blocks: 'disk-backed cache, pool + queries, N+1' },
  { name: 'capabilities-server', script: 'capabilities-server.js', port: 3009, prefix: 'capabilities', blocks: 'tracer (10% sampled)' },
]

function integer(name, fallback) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value)) throw new Error(`${name} must be an integer, received ${JSON.stringify(raw)}`)
  return value
}

function fraction(name, fallback) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!(value >= 0 && value <= 1)) throw new Error(`${name} must be a number from 0 to 1, received ${JSON.stringify(raw)}`)
  return value
}

const portOffset = integer('PORT_OFFSET', 0)
const host = process.env.HOST || '127.0.0.1'

/** The port of a service by name, PORT_OFFSET applied. */
function portOf(name) {
  const service = SERVICES.find((s) => s.name === name)
  if (service === undefined) throw new Error(`no service named ${name}`)
  return service.port + portOffset
}

/** The base URL the platform's own processes use to reach a service. */
function urlOf(name) {
  const address = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  return `http://${address.includes(':') ? `[${address}]` : address}:${portOf(name)}`
}

const redisUrl = process.env.REDIS_URL || null
const databaseUrl = process.env.DATABASE_URL || null

const SPAN_MODES = ['pretty', 'json', 'off']
const spans = process.env.PLATFORM_SPANS || 'pretty'
if (!SPAN_MODES.includes(spans)) throw new Error(`PLATFORM_SPANS must be one of ${SPAN_MODES.join(', ')}, received ${JSON.stringify(spans)}`)

const config = {
  SERVICES,
  portOffset,
  host,
  portOf,
  urlOf,
  databaseUrl,
  schemaPrefix: process.env.DB_SCHEMA_PREFIX || 'platform_',
  redisUrl,
  dataDir: path.resolve(process.env.PLATFORM_DATA_DIR || path.join(__dirname, '..', '.data')),
  spans,
  otlp: Boolean(process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_ENDPOINT),
  traceDelayMs: integer('TRACE_DELAY_MS', 1000),
  providerFailureRate: fraction('PROVIDER_FAILURE_RATE', 0),
  breakerOpenMs: integer('BREAKER_OPEN_MS', 5000),

  /**
   * Extra RateLimiter options: with REDIS_URL, the buckets live in Redis under `keyPrefix`, so
   * every instance of the fleet (`npm start` twice, PORT_OFFSET apart) shares one limit.
   */
  limiterStore(name) {
    return redisUrl === null ? {} : { store: { redis: { url: redisUrl, keyPrefix: `bulwark:platform:${name}:` } } }
  },

  /**
   * Extra PersistentCache options: with REDIS_URL, a shared Redis tier under `keyPrefix`, and
   * invalidations published on `channel` to the other instances' memory tiers.
   */
  cacheRedis(name) {
    return redisUrl === null ? {} : { redis: { url: redisUrl, keyPrefix: `bulwark:platform:${name}:`, channel: `bulwark:platform:${name}:invalidate` } }
  },
}

module.exports = config
