'use strict'
// capabilities-server (port 3009): what each plan may do. Traced at 10%.
//
//   GET /api/v1/capabilities?plan=pro   the plan's capabilities and limits
const { createService } = require('./lib/service')

const { app, listen } = createService('capabilities-server', { sampleRate: 0.1 })

const PLANS = {
  trial: { reports: true, exports: false, apiRequestsPerSecond: 2, seats: 5 },
  pro: { reports: true, exports: true, apiRequestsPerSecond: 10, seats: 50 },
  enterprise: { reports: true, exports: true, apiRequestsPerSecond: 100, seats: null, sso: true },
}

app.get('/api/v1/capabilities', (req, res) => {
  const plan = typeof req.query.plan === 'string' ? req.query.plan : 'pro'
  if (!Object.hasOwn(PLANS, plan)) return res.status(404).json({ error: 'not_found', message: `no plan ${plan}; plans: ${Object.keys(PLANS).join(', ')}` })
  res.json({ plan, capabilities: PLANS[plan] })
})

listen()
