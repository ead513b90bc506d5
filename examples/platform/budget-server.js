'use strict'
// budget-server (port 3003): team budgets in a small database, and exchange rates from an
// outside provider that is slow, rate-limited and sometimes down. The provider's answers are
// cached (PersistentCache, load-through), every provider call goes through a CircuitBreaker,
// and the service's endpoints are rate-limited per client.
//
//   GET  /api/v1/budgets                      every team's totals (one grouped query)
//   GET  /api/v1/budgets/:teamId?currency=EUR  a team's budget lines, converted with the provider's rate
//   POST /api/v1/budgets/:teamId/expenses     { category, amountCents, note } records an expense
//   GET  /api/v1/providers/rates/:currency    the provider's rate, cached (X-Cache: HIT or MISS)
//   GET  /api/v1/providers/resilience-status  the observability snapshot: breaker, cache, limiter, pool, queries
//   GET|POST /api/v1/admin/provider-failure   { rate: 0..1 }: make the simulated provider fail
const { RateLimiter, PersistentCache, CircuitBreaker, BreakerOpenError } = require('bulwark')
const { rateLimit } = require('bulwark/express')
const config = require('./lib/config')
const { createService, sleep } = require('./lib/service')
const { openDatabase, seeded } = require('./lib/db')

const { app, tracer, obs, onClose, listen, log } = createService('budget-server')

// -- the provider: a simulated exchange-rate API -------------------------------------------------

let failureRate = config.providerFailureRate

/** One provider call: 5 to 25 ms, and it fails `failureRate` of the time (HTTP 503). */
async function fetchRateFromProvider(currency, signal) {
  return tracer.startActiveSpan('provider GET /rates', { kind: 'client' }, async (span) => {
    span.setAttribute('provider.currency', currency)
    await sleep(5 + Math.random() * 20, signal)
    if (Math.random() < failureRate) throw Object.assign(new Error('rates provider answered 503'), { status: 503 })
    // a stable made-up rate per currency
    let hash = 0
    for (const c of currency) hash = (hash * 31 + c.charCodeAt(0)) >>> 0
    return { currency, perUsd: Number((0.5 + (hash % 1500) / 1000).toFixed(4)), fetchedAt: new Date().toISOString() }
  })
}

const breaker = new CircuitBreaker({
  name: 'rates-provider',
  failureRateThreshold: 0.5,
  minimumCalls: 5,
  windowMs: 10_000,
  openMs: config.breakerOpenMs,
  timeoutMs: 2000,
})
breaker.on('stateChange', (to, from) => log(`rates-provider breaker ${from} -> ${to}`))

const rates = new PersistentCache({ maxEntries: 1000, ttlMs: 60_000, serveStaleOnError: true, ...config.cacheRedis('budget-rates') })
onClose('rates cache', () => rates.close())

/** The rate of `currency`, from the cache or through the breaker; `hit` says which. */
async function rateOf(currency) {
  if (currency === 'USD') return { rate: { currency, perUsd: 1, fetchedAt: null }, hit: true }
  let loaded = false
  const rate = await rates.getOrSet(`rate:${currency}`, () => {
    loaded = true
    return breaker.fire((signal) => fetchRateFromProvider(currency, signal))
  }, { staleWhileRevalidateMs: 30_000 })
  return { rate, hit: !loaded }
}

/** Answers a refused or failed provider call: 503 with Retry-After while the breaker is open. */
function providerUnavailable(res, error) {
  const open = error instanceof BreakerOpenError
  const retryAfterMs = open ? error.retryAfterMs : 1000
  res.set('Retry-After', String(Math.max(1, Math.ceil(retryAfterMs / 1000))))
  // refused: the breaker did not let the call through (else the provider itself failed)
  res.status(503).json({ error: 'provider_unavailable', refused: open, breaker: breaker.state, message: error.message, retryAfterMs })
}

// -- limits: per client (the API key the gateway forwards, else the address) ---------------------

const limiter = new RateLimiter({ capacity: 60, refillPerSecond: 30, ...config.limiterStore('budget') })
onClose('limiter', () => limiter.close())
const limited = rateLimit({ limiter, policyName: 'budget', key: (req) => req.get('x-api-key') || req.ip })

obs.add('rates', rates).add('api', limiter).add('rates-provider', breaker)

// -- routes -------------------------------------------------------------------------------------

let db

const CURRENCY = /^[A-Z]{3}$/

function teamIdOf(req, res) {
  const id = Number(req.params.teamId)
  if (!Number.isInteger(id) || id < 1) {
    res.status(400).json({ error: 'bad_request', message: 'teamId must be a positive integer' })
    return null
  }
  return id
}

app.get('/api/v1/budgets', limited, async (req, res) => {
  const { rows } = await db.use((client) => client.query(
    `SELECT t.id, t.name, SUM(l.limit_cents) AS limit_cents,
            (SELECT COALESCE(SUM(e.amount_cents), 0) FROM expenses e JOIN budget_lines l2 ON l2.id = e.line_id WHERE l2.team_id = t.id) AS spent_cents
       FROM teams t JOIN budget_lines l ON l.team_id = t.id
      GROUP BY t.id, t.name ORDER BY t.id`))
  res.json({ teams: rows.map((r) => ({ id: Number(r.id), name: r.name, limitCents: Number(r.limit_cents), spentCents: Number(r.spent_cents) })) })
})

app.get('/api/v1/budgets/:teamId', limited, async (req, res) => {
  const teamId = teamIdOf(req, res)
  if (teamId === null) return
  const currency = typeof req.query.currency === 'string' ? req.query.currency.toUpperCase() : 'USD'
  if (!CURRENCY.test(currency)) return res.status(400).json({ error: 'bad_request', message: 'currency must be three letters' })
  const { rows } = await db.use((client) => client.query(
    `SELECT t.name AS team, l.category, l.limit_cents, COALESCE(SUM(e.amount_cents), 0) AS spent_cents, COUNT(e.id) AS expenses
       FROM teams t
       JOIN budget_lines l ON l.team_id = t.id
       LEFT JOIN expenses e ON e.line_id = l.id
      WHERE t.id = $1
      GROUP BY t.name, l.id, l.category, l.limit_cents
      ORDER BY l.category`, [teamId]))
  if (rows.length === 0) return res.status(404).json({ error: 'not_found', message: `no team ${teamId}` })
  let rate
  try {
    const answer = await rateOf(currency)
    rate = answer.rate
    res.set('X-Cache', answer.hit ? 'HIT' : 'MISS')
  } catch (error) {
    return providerUnavailable(res, error)
  }
  const convert = (cents) => Math.round(cents * rate.perUsd)
  res.json({
    teamId,
    team: rows[0].team,
    currency,
    lines: rows.map((r) => ({
      category: r.category,
      limit: convert(Number(r.limit_cents)),
      spent: convert(Number(r.spent_cents)),
      expenses: Number(r.expenses),
    })),
  })
})

app.post('/api/v1/budgets/:teamId/expenses', limited, async (req, res) => {
  const teamId = teamIdOf(req, res)
  if (teamId === null) return
  const { category, amountCents, note = '' } = req.body || {}
  if (typeof category !== 'string' || !Number.isInteger(amountCents) || amountCents <= 0 || typeof note !== 'string') {
    return res.status(400).json({ error: 'bad_request', message: 'send { category: string, amountCents: positive integer, note?: string }' })
  }
  const { rows } = await db.use((client) => client.query(
    `INSERT INTO expenses (line_id, amount_cents, note, created_at)
     SELECT id, $3, $4, $5 FROM budget_lines WHERE team_id = $1 AND category = $2
     RETURNING id`, [teamId, category, amountCents, note.slice(0, 200), Date.now()]))
  if (rows.length === 0) return res.status(404).json({ error: 'not_found', message: `team ${teamId} has no ${category} budget` })
  res.status(201).json({ id: Number(rows[0].id), teamId, category, amountCents })
})

app.get('/api/v1/providers/rates/:currency', limited, async (req, res) => {
  const currency = req.params.currency.toUpperCase()
  if (!CURRENCY.test(currency)) return res.status(400).json({ error: 'bad_request', message: 'currency must be three letters' })
  try {
    const { rate, hit } = await rateOf(currency)
    res.set('X-Cache', hit ? 'HIT' : 'MISS').json({ ...rate, breaker: breaker.state })
  } catch (error) {
    providerUnavailable(res, error)
  }
})

// failure injection, for the demo and the tests: not reachable through the gateway
app.get('/api/v1/admin/provider-failure', (req, res) => res.json({ rate: failureRate, breaker: breaker.state }))
app.post('/api/v1/admin/provider-failure', (req, res) => {
  const rate = req.body && req.body.rate
  if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) return res.status(400).json({ error: 'bad_request', message: 'send { rate: a number from 0 to 1 }' })
  failureRate = rate
  log(`provider failure rate set to ${rate}`)
  res.json({ rate: failureRate, breaker: breaker.state })
})

// -- the database -------------------------------------------------------------------------------

const SCHEMA = {
  sqlite: [
    'CREATE TABLE IF NOT EXISTS teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL)',
    'CREATE TABLE IF NOT EXISTS budget_lines (id INTEGER PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id), category TEXT NOT NULL, limit_cents INTEGER NOT NULL, UNIQUE (team_id, category))',
    'CREATE TABLE IF NOT EXISTS expenses (id INTEGER PRIMARY KEY AUTOINCREMENT, line_id INTEGER NOT NULL REFERENCES budget_lines(id), amount_cents INTEGER NOT NULL, note TEXT NOT NULL, created_at INTEGER NOT NULL)',
    'CREATE INDEX IF NOT EXISTS expenses_line ON expenses (line_id)',
  ],
  postgres: [
    'CREATE TABLE IF NOT EXISTS teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL)',
    'CREATE TABLE IF NOT EXISTS budget_lines (id INTEGER PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id), category TEXT NOT NULL, limit_cents BIGINT NOT NULL, UNIQUE (team_id, category))',
    'CREATE TABLE IF NOT EXISTS expenses (id BIGSERIAL PRIMARY KEY, line_id INTEGER NOT NULL REFERENCES budget_lines(id), amount_cents BIGINT NOT NULL, note TEXT NOT NULL, created_at BIGINT NOT NULL)',
    'CREATE INDEX IF NOT EXISTS expenses_line ON expenses (line_id)',
  ],
}

const TEAMS = ['Platform', 'Payments', 'Search', 'Mobile', 'Data', 'Growth', 'Security', 'Support']
const CATEGORIES = ['compute', 'storage', 'training', 'travel']

async function seed(client) {
  const random = seeded(3003)
  let line = 0
  for (const [i, name] of TEAMS.entries()) {
    await client.query('INSERT INTO teams (id, name) VALUES ($1, $2)', [i + 1, name])
    for (const category of CATEGORIES) {
      line++
      await client.query('INSERT INTO budget_lines (id, team_id, category, limit_cents) VALUES ($1, $2, $3, $4)', [line, i + 1, category, 100_000 + Math.floor(random() * 900_000)])
      const count = 2 + Math.floor(random() * 6)
      for (let e = 0; e < count; e++) {
        await client.query('INSERT INTO expenses (line_id, amount_cents, note, created_at) VALUES ($1, $2, $3, $4)', [line, 1000 + Math.floor(random() * 50_000), `seed ${e + 1}`, Date.now()])
      }
    }
  }
}

async function main() {
  const opened = await openDatabase({
    name: 'budget-server',
    tracer,
    obs,
    schema: SCHEMA,
    seed,
    isEmpty: async (client) => Number((await client.query('SELECT COUNT(*) AS n FROM teams')).rows[0].n) === 0,
  })
  db = opened.db
  onClose('db pool', () => opened.pool.drain({ timeoutMs: 1000 }))
  log(`database: ${opened.location}; provider failure rate ${failureRate}; ${config.redisUrl ? `Redis ${config.redisUrl}` : 'embedded limiter and cache'}`)
  listen()
}

main().catch((error) => {
  console.error(`budget-server: cannot start: ${error.stack || error}`)
  process.exit(1)
})
