'use strict'
// meta-server (port 3002): what the platform is made of, for the gateway's index and for
// operators. Traced at 20%.
//
//   GET /api/v1/services   the eight services, their URLs and what each shows
//   GET /api/v1/version    the package and runtime versions
const { createService } = require('./lib/service')
const config = require('./lib/config')

const { app, listen } = createService('meta-server', { sampleRate: 0.2 })

app.get('/api/v1/services', (req, res) => {
  res.json({
    services: config.SERVICES.map((s) => ({ name: s.name, url: config.urlOf(s.name), gatewayPrefix: s.prefix && `/api/${s.prefix}`, blocks: s.blocks })),
    database: config.databaseUrl ? 'postgresql' : 'sqlite',
    redis: Boolean(config.redisUrl),
  })
})

app.get('/api/v1/version', (req, res) => {
  res.json({ bulwark: require('bulwark/package.json').version, node: process.version, platform: `${process.platform}-${process.arch}` })
})

listen()
