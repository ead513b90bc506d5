'use strict'
// coach-server (port 3004): coaching tips. Traced at 10%.
//
//   GET /api/v1/tips?topic=limits   tips, by topic
//   GET /api/v1/tips/random         one tip
const { createService, sleep } = require('./lib/service')

const { app, tracer, listen } = createService('coach-server', { sampleRate: 0.1 })

const TIPS = [
  { id: 1, topic: 'limits', text: 'Key limits by API key, not by address, when clients share a NAT.' },
  { id: 2, topic: 'limits', text: 'Send Retry-After: well-behaved clients wait exactly as long as needed.' },
  { id: 3, topic: 'tracing', text: 'Sample roots, never children: a trace is whole or absent.' },
  { id: 4, topic: 'tracing', text: 'Name spans after routes, not paths, or the metrics explode.' },
  { id: 5, topic: 'caching', text: 'Tag cached reports by what invalidates them.' },
  { id: 6, topic: 'queries', text: 'A loop of identical queries is a batch waiting to happen.' },
]

app.get('/api/v1/tips', async (req, res) => {
  const topic = typeof req.query.topic === 'string' ? req.query.topic : undefined
  const tips = await tracer.startActiveSpan('rank tips', async () => {
    await sleep(1 + Math.random() * 3)
    return TIPS.filter((t) => topic === undefined || t.topic === topic)
  })
  res.json({ tips })
})

app.get('/api/v1/tips/random', (req, res) => {
  res.json(TIPS[Math.floor(Math.random() * TIPS.length)])
})

listen()
