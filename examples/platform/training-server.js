'use strict'
// training-server (port 3001): the course catalog. Traced at 15%: root spans are sampled 15% of
// the time, requests that come with a sampled traceparent (through the gateway) always are, and
// every request counts in the span metrics.
//
//   GET /api/v1/courses?level=beginner   the catalog, filtered
//   GET /api/v1/courses/:id              one course
const { createService, sleep } = require('./lib/service')

const { app, tracer, listen } = createService('training-server', { sampleRate: 0.15 })

const COURSES = [
  { id: 1, title: 'Rate limits that users do not notice', level: 'beginner', minutes: 45 },
  { id: 2, title: 'Reading a trace across services', level: 'beginner', minutes: 30 },
  { id: 3, title: 'Caches with a disk tier', level: 'intermediate', minutes: 60 },
  { id: 4, title: 'Finding N+1 queries in production', level: 'intermediate', minutes: 50 },
  { id: 5, title: 'Circuit breakers and fallbacks', level: 'advanced', minutes: 75 },
  { id: 6, title: 'Pools that survive a database restart', level: 'advanced', minutes: 40 },
]

app.get('/api/v1/courses', async (req, res) => {
  const level = typeof req.query.level === 'string' ? req.query.level : undefined
  const courses = await tracer.startActiveSpan('search catalog', async (span) => {
    span.setAttribute('catalog.level', level ?? 'any')
    await sleep(1 + Math.random() * 4) // stands for a search index
    return COURSES.filter((c) => level === undefined || c.level === level)
  })
  res.json({ courses })
})

app.get('/api/v1/courses/:id', (req, res) => {
  const course = COURSES.find((c) => c.id === Number(req.params.id))
  if (course === undefined) return res.status(404).json({ error: 'not_found', message: `no course ${req.params.id}` })
  res.json(course)
})

listen()
