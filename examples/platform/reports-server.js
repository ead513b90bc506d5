'use strict'
// reports-server (port 3008): activity reports of each team's members, rendered from a small
// database and kept in a PersistentCache whose disk tier lives under the data folder, so a
// restarted reports-server serves the reports it rendered before from disk.
//
//   GET  /api/v1/teams/:teamId/summary           the team's report, cached (X-Cache: HIT or MISS), tagged team:<id>
//   GET  /api/v1/teams/:teamId/activity          the same figures, the naive way: one query per member (an N+1,
//                                                on purpose: the QueryOptimizer reports it)
//   GET  /api/v1/teams/:teamId/activity/batched  the same figures through a loader: one query for all members
//   POST /api/v1/teams/:teamId/activities        { memberId, kind, minutes } records an activity and
//                                                invalidates the team's cached report
const path = require('node:path')
const { PersistentCache } = require('bulwark')
const config = require('./lib/config')
const { createService } = require('./lib/service')
const { openDatabase, placeholders, seeded, shown } = require('./lib/db')

const { app, tracer, obs, onClose, listen, log } = createService('reports-server')

// the disk tier: one directory per instance (two fleets on one machine each have their own)
const cacheDir = path.join(config.dataDir, `reports-cache-${config.portOf('reports-server')}`)
const reports = new PersistentCache({
  maxBytes: 16 << 20,
  dir: cacheDir,
  diskMaxBytes: 256 << 20,
  ttlMs: 60 * 60_000,
  ...config.cacheRedis('reports'),
})
onClose('reports cache', () => reports.close())
obs.add('reports', reports)

let db
let qo

function teamIdOf(req, res) {
  const id = Number(req.params.teamId)
  if (!Number.isInteger(id) || id < 1) {
    res.status(400).json({ error: 'bad_request', message: 'teamId must be a positive integer' })
    return null
  }
  return id
}

/** The team and its members, or null when there is no such team. */
async function membersOf(client, teamId) {
  const team = await client.query('SELECT id, name FROM teams WHERE id = $1', [teamId])
  if (team.rows.length === 0) return null
  const members = await client.query('SELECT id, name FROM members WHERE team_id = $1 ORDER BY id', [teamId])
  return { team: { id: Number(team.rows[0].id), name: team.rows[0].name }, members: members.rows }
}

/** The figures of one member, as both paths return them. */
function figures(member, row) {
  return { id: Number(member.id), name: member.name, sessions: Number(row ? row.sessions : 0), minutes: Number(row ? row.minutes : 0) }
}

/** The naive path: one query per member. */
async function activityOneByOne(teamId) {
  return db.use(async (client) => {
    const found = await membersOf(client, teamId)
    if (found === null) return null
    const members = []
    for (const member of found.members) {
      const { rows } = await client.query(
        'SELECT COUNT(*) AS sessions, COALESCE(SUM(minutes), 0) AS minutes FROM activities WHERE member_id = $1', [member.id])
      members.push(figures(member, rows[0]))
    }
    return { team: found.team, members }
  })
}

/**
 * The batched path: members' figures through a loader, so the lookups made in one tick become
 * one query. The loader is made per request (its memo must not outlive the request's data).
 */
async function activityBatched(teamId) {
  const found = await db.use((client) => membersOf(client, teamId))
  if (found === null) return null
  const activity = qo.loader(async (memberIds) => {
    const { rows } = await db.use((client) => client.query(
      `SELECT member_id, COUNT(*) AS sessions, COALESCE(SUM(minutes), 0) AS minutes
         FROM activities WHERE member_id IN (${placeholders(memberIds.length)})
        GROUP BY member_id`, memberIds))
    const byMember = new Map(rows.map((r) => [Number(r.member_id), r]))
    return memberIds.map((id) => byMember.get(id))
  })
  const rows = await Promise.all(found.members.map((m) => activity.load(Number(m.id))))
  return { team: found.team, members: found.members.map((m, i) => figures(m, rows[i])) }
}

app.get('/api/v1/teams/:teamId/summary', async (req, res) => {
  const teamId = teamIdOf(req, res)
  if (teamId === null) return
  let rendered = false
  const report = await reports.getOrSet(`report:team:${teamId}`, async () => {
    rendered = true
    const activity = await activityBatched(teamId)
    if (activity === null) return null
    const totals = activity.members.reduce((t, m) => ({ sessions: t.sessions + m.sessions, minutes: t.minutes + m.minutes }), { sessions: 0, minutes: 0 })
    await db.use((client) => client.query('INSERT INTO report_runs (team_id, kind, created_at) VALUES ($1, $2, $3)', [teamId, 'summary', Date.now()]))
    return { ...activity, totals, renderedAt: new Date().toISOString(), renderedBy: process.pid }
  }, { tags: [`team:${teamId}`] })
  if (report === null) return res.status(404).json({ error: 'not_found', message: `no team ${teamId}` })
  res.set('X-Cache', rendered ? 'MISS' : 'HIT').json(report)
})

app.get('/api/v1/teams/:teamId/activity', async (req, res) => {
  const teamId = teamIdOf(req, res)
  if (teamId === null) return
  const activity = await activityOneByOne(teamId)
  if (activity === null) return res.status(404).json({ error: 'not_found', message: `no team ${teamId}` })
  res.json({ ...activity, path: 'one query per member' })
})

app.get('/api/v1/teams/:teamId/activity/batched', async (req, res) => {
  const teamId = teamIdOf(req, res)
  if (teamId === null) return
  const activity = await activityBatched(teamId)
  if (activity === null) return res.status(404).json({ error: 'not_found', message: `no team ${teamId}` })
  res.json({ ...activity, path: 'batched through a loader' })
})

const KINDS = ['course', 'coaching', 'workshop', 'reading']

app.post('/api/v1/teams/:teamId/activities', async (req, res) => {
  const teamId = teamIdOf(req, res)
  if (teamId === null) return
  const { memberId, kind = 'course', minutes } = req.body || {}
  if (!Number.isInteger(memberId) || !KINDS.includes(kind) || !Number.isInteger(minutes) || minutes <= 0 || minutes > 24 * 60) {
    return res.status(400).json({ error: 'bad_request', message: `send { memberId: integer, kind: one of ${KINDS.join(', ')}, minutes: 1..1440 }` })
  }
  const { rows } = await db.use((client) => client.query(
    `INSERT INTO activities (member_id, kind, minutes, created_at)
     SELECT id, $3, $4, $5 FROM members WHERE id = $1 AND team_id = $2
     RETURNING id`, [memberId, teamId, kind, minutes, Date.now()]))
  if (rows.length === 0) return res.status(404).json({ error: 'not_found', message: `team ${teamId} has no member ${memberId}` })
  // the team's figures changed: its cached reports go, on disk too
  const invalidated = reports.invalidateTag(`team:${teamId}`)
  res.status(201).json({ id: Number(rows[0].id), teamId, memberId, kind, minutes, invalidated })
})

// -- the database -------------------------------------------------------------------------------

const SCHEMA = {
  sqlite: [
    'CREATE TABLE IF NOT EXISTS teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL)',
    'CREATE TABLE IF NOT EXISTS members (id INTEGER PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id), name TEXT NOT NULL)',
    'CREATE INDEX IF NOT EXISTS members_team ON members (team_id)',
    'CREATE TABLE IF NOT EXISTS activities (id INTEGER PRIMARY KEY AUTOINCREMENT, member_id INTEGER NOT NULL REFERENCES members(id), kind TEXT NOT NULL, minutes INTEGER NOT NULL, created_at INTEGER NOT NULL)',
    'CREATE INDEX IF NOT EXISTS activities_member ON activities (member_id)',
    'CREATE TABLE IF NOT EXISTS report_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, team_id INTEGER NOT NULL, kind TEXT NOT NULL, created_at INTEGER NOT NULL)',
  ],
  postgres: [
    'CREATE TABLE IF NOT EXISTS teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL)',
    'CREATE TABLE IF NOT EXISTS members (id INTEGER PRIMARY KEY, team_id INTEGER NOT NULL REFERENCES teams(id), name TEXT NOT NULL)',
    'CREATE INDEX IF NOT EXISTS members_team ON members (team_id)',
    'CREATE TABLE IF NOT EXISTS activities (id BIGSERIAL PRIMARY KEY, member_id INTEGER NOT NULL REFERENCES members(id), kind TEXT NOT NULL, minutes INTEGER NOT NULL, created_at BIGINT NOT NULL)',
    'CREATE INDEX IF NOT EXISTS activities_member ON activities (member_id)',
    'CREATE TABLE IF NOT EXISTS report_runs (id BIGSERIAL PRIMARY KEY, team_id INTEGER NOT NULL, kind TEXT NOT NULL, created_at BIGINT NOT NULL)',
  ],
}

const TEAMS = ['Platform', 'Payments', 'Search', 'Mobile', 'Data', 'Growth', 'Security', 'Support']
const NAMES = ['Ada', 'Grace', 'Alan', 'Barbara', 'Edsger', 'Frances', 'Donald', 'Margaret', 'Ken', 'Radia', 'John', 'Lynn']

async function seed(client) {
  const random = seeded(3008)
  let member = 0
  for (const [i, name] of TEAMS.entries()) {
    await client.query('INSERT INTO teams (id, name) VALUES ($1, $2)', [i + 1, name])
    // 6 to 10 members: enough for the naive path to cross the N+1 threshold (5)
    const size = 6 + Math.floor(random() * 5)
    for (let m = 0; m < size; m++) {
      member++
      await client.query('INSERT INTO members (id, team_id, name) VALUES ($1, $2, $3)', [member, i + 1, `${NAMES[(member - 1) % NAMES.length]} ${String.fromCharCode(65 + i)}.`])
      const count = 2 + Math.floor(random() * 10)
      for (let a = 0; a < count; a++) {
        await client.query('INSERT INTO activities (member_id, kind, minutes, created_at) VALUES ($1, $2, $3, $4)', [member, KINDS[Math.floor(random() * KINDS.length)], 15 + Math.floor(random() * 105), Date.now()])
      }
    }
  }
}

async function main() {
  const opened = await openDatabase({
    name: 'reports-server',
    tracer,
    obs,
    schema: SCHEMA,
    seed,
    isEmpty: async (client) => Number((await client.query('SELECT COUNT(*) AS n FROM teams')).rows[0].n) === 0,
  })
  db = opened.db
  qo = opened.qo
  onClose('db pool', () => opened.pool.drain({ timeoutMs: 1000 }))
  const held = reports.size
  log(`database: ${opened.location}; report cache ${shown(cacheDir)} (${held} held)${config.redisUrl ? `, shared through Redis ${config.redisUrl}` : ''}`)
  listen()
}

main().catch((error) => {
  console.error(`reports-server: cannot start: ${error.stack || error}`)
  process.exit(1)
})
