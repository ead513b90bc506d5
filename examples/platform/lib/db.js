'use strict'
// The small database of budget-server and reports-server, through the package's
// ConnectionPool and the QueryOptimizer's instrumentation, the way a service would wire them.
//
// Without DATABASE_URL it is embedded: one SQLite file per service under the data folder, the
// pool holding better-sqlite3 handles behind a `query(sql, params)` adapter (the shape of a pg
// client, so `qo.instrument` measures it the same way). With DATABASE_URL it is PostgreSQL
// through pg, each service in its own schema. SQL is written once, with $1 placeholders.
const fs = require('node:fs')
const path = require('node:path')
const { ConnectionPool, QueryOptimizer } = require('bulwark')
const config = require('./config')

/**
 * A better-sqlite3 connection with pg's `query(text, values)` shape: `{ rows, rowCount }`.
 * `$n` placeholders become `?` (values reordered to match), statements are prepared once.
 */
class SqliteClient {
  constructor(file) {
    const Database = require('better-sqlite3')
    this.db = new Database(file)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('busy_timeout = 5000')
    this.db.pragma('foreign_keys = ON')
    this.statements = new Map()
  }

  #prepare(sql) {
    let prepared = this.statements.get(sql)
    if (prepared === undefined) {
      const order = []
      const text = sql.replace(/\$(\d+)/g, (_, n) => {
        order.push(Number(n) - 1)
        return '?'
      })
      prepared = { statement: this.db.prepare(text), order }
      // IN lists of every length are distinct texts: keep the cache bounded
      if (this.statements.size >= 256) this.statements.clear()
      this.statements.set(sql, prepared)
    }
    return prepared
  }

  /** Runs one statement; a promise, like pg's, though better-sqlite3 answers at once. */
  async query(sql, values = []) {
    if (values.length === 0 && /^\s*(BEGIN|COMMIT|ROLLBACK)\b/i.test(sql)) {
      this.db.exec(sql)
      return { rows: [], rowCount: 0 }
    }
    const { statement, order } = this.#prepare(sql)
    const bound = order.map((i) => values[i])
    if (statement.reader) {
      const rows = statement.all(bound)
      return { rows, rowCount: rows.length }
    }
    const info = statement.run(bound)
    return { rows: [], rowCount: info.changes }
  }

  close() {
    this.db.close()
  }
}

/**
 * Opens the database of service `name`: a ConnectionPool (registered on `obs` as `db`), a
 * QueryOptimizer (registered as `queries`) and `db`, the pool instrumented with the service's
 * tracer: `db.use((client) => client.query(sql, values))` is fingerprinted, timed, checked for
 * N+1 per trace and run in a client span. `schema` is `{ sqlite, postgres }` (DDL statements),
 * `seed(client)` fills empty tables; both run once, at start, inside one transaction.
 */
async function openDatabase({ name, tracer, obs, schema, seed, isEmpty }) {
  const postgres = config.databaseUrl !== null
  const short = name.replace(/-server$/, '')
  let create
  let validate
  let location
  if (postgres) {
    const pg = require('pg')
    const schemaName = `${config.schemaPrefix}${short}`
    if (!/^[a-z_][a-z0-9_]*$/.test(schemaName)) throw new Error(`DB_SCHEMA_PREFIX must make a plain lower-case schema name, received ${JSON.stringify(schemaName)}`)
    create = async () => {
      const client = new pg.Client({ connectionString: config.databaseUrl, application_name: name })
      await client.connect()
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schemaName}`).catch((error) => {
        // two services creating it at once: the loser sees a unique violation, and the schema is there
        if (error.code !== '23505' && error.code !== '42P06') throw error
      })
      await client.query(`SET search_path TO ${schemaName}`)
      return client
    }
    validate = async (client) => (await client.query('SELECT 1')).rowCount === 1
    location = `PostgreSQL, schema ${schemaName}`
  } else {
    fs.mkdirSync(config.dataDir, { recursive: true })
    const file = path.join(config.dataDir, `${short}.sqlite`)
    create = () => new SqliteClient(file)
    validate = (client) => client.db.open
    location = `SQLite ${shown(file)}`
  }

  const pool = new ConnectionPool({
    name: `${short}-db`,
    create,
    destroy: (client) => (postgres ? client.end() : client.close()),
    validate,
    min: 1,
    max: 4,
    acquireTimeoutMs: 5000,
    idleTimeoutMs: 60_000,
    healthCheckIntervalMs: 30_000,
  })
  // a dead connection is destroyed and replaced by the pool; say so without crashing
  pool.on('error', (error, { source }) => console.error(`${name}: db pool ${source} error: ${error.message}`))

  const qo = new QueryOptimizer({ dialect: postgres ? 'postgres' : 'sqlite', nPlusOne: { threshold: 5 }, slowQueryMs: 250 })
  qo.on('nplusone', (finding) => {
    console.log(`${name}: N+1 in trace ${finding.traceId}: ${finding.normalized} x${finding.count}; ${finding.suggestion}`)
  })
  obs.add('db', pool).add('queries', qo)

  // schema and seed, on the raw pool (not measured: they are not the service's traffic)
  await pool.use(async (client) => {
    // one starter at a time (two fleets sharing a database start together)
    await client.query(postgres ? 'BEGIN' : 'BEGIN IMMEDIATE')
    try {
      if (postgres) await client.query('SELECT pg_advisory_xact_lock(hashtext(current_schema()))')
      for (const statement of postgres ? schema.postgres : schema.sqlite) await client.query(statement)
      if (await isEmpty(client)) await seed(client)
      await client.query('COMMIT')
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    }
  })

  const db = qo.instrument(pool, { tracer })
  return { db, pool, qo, location, dialect: postgres ? 'postgres' : 'sqlite' }
}

/** A path as short as it can be shown: relative to the working directory when inside it. */
function shown(file) {
  const relative = path.relative(process.cwd(), file)
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file
}

/** `$first, $first+1, ...` for an IN list of `count` values. */
function placeholders(count, first = 1) {
  return Array.from({ length: count }, (_, i) => `$${first + i}`).join(', ')
}

/** A small deterministic generator (mulberry32), so every fresh database is seeded alike. */
function seeded(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

module.exports = { openDatabase, placeholders, seeded, shown }
