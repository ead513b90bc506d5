'use strict'
// An Express gateway rate-limited by bulwark, written the way a service using the package
// would write it. Run it with `npm start` (or `PORT=8080 node examples/gateway/server.js`).
const express = require('express')
const { RateLimiter } = require('bulwark')
const { rateLimit } = require('bulwark/express')

const port = process.env.PORT === undefined ? 3000 : Number(process.env.PORT)

// One limiter for the whole gateway: each client (by address, IPv6 by /56) may burst 20
// requests and then make 10 a second.
const limiter = new RateLimiter({ capacity: 20, refillPerSecond: 10 })
const limited = rateLimit({ limiter, headers: 'draft-8', policyName: 'gateway' })

const app = express()
app.disable('x-powered-by')

app.get('/', limited, (req, res) => {
  res.json({ service: 'bulwark gateway', hello: 'world' })
})

app.get('/api/hello', limited, (req, res) => {
  res.json({ hello: req.query.name || 'world' })
})

// Not rate-limited, so that an operator can always look.
app.get('/api/limiter/stats', (req, res) => {
  res.json(limiter.stats())
})

const server = app.listen(port, '127.0.0.1', (error) => {
  if (error) throw error
  console.log(`bulwark gateway listening on http://127.0.0.1:${server.address().port}`)
})

function shutdown(signal) {
  console.log(`bulwark gateway: ${signal}, closing`)
  server.close(() => {
    limiter.close()
    process.exit(0)
  })
  // keep-alive connections would hold close() open; idle ones can go now
  server.closeIdleConnections()
}

process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
