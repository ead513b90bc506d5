'use strict'
// segmentation-server (port 3007): which segments a user belongs to. Traced at 15%.
//
//   GET  /api/v1/segments            the segments and their rules
//   POST /api/v1/segments/evaluate   { plan, seats, country } -> the matching segments
const { createService } = require('./lib/service')

const { app, tracer, listen } = createService('segmentation-server', { sampleRate: 0.15 })

const SEGMENTS = [
  { id: 'enterprise', rule: 'plan is enterprise', test: (u) => u.plan === 'enterprise' },
  { id: 'large-team', rule: 'seats >= 50', test: (u) => u.seats >= 50 },
  { id: 'eu', rule: 'country in the EU', test: (u) => ['DE', 'FR', 'IT', 'ES', 'NL', 'PL', 'SE'].includes(u.country) },
  { id: 'trial', rule: 'plan is trial', test: (u) => u.plan === 'trial' },
]

app.get('/api/v1/segments', (req, res) => {
  res.json({ segments: SEGMENTS.map(({ id, rule }) => ({ id, rule })) })
})

app.post('/api/v1/segments/evaluate', (req, res) => {
  const user = req.body
  if (user === null || typeof user !== 'object' || Array.isArray(user)) {
    return res.status(400).json({ error: 'bad_request', message: 'send a JSON object: { plan, seats, country }' })
  }
  const span = tracer.startSpan('evaluate segments')
  const matched = SEGMENTS.filter((s) => s.test(user)).map((s) => s.id)
  span.setAttribute('segments.matched', matched.length)
  span.end()
  res.json({ segments: matched })
})

listen()
