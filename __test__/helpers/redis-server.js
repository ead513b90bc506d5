'use strict'
// A private redis-server for fault tests: started on a free port of the loopback, killed and
// started again on the same port, so a suite can take Redis away under a running client without
// touching the shared one on 6379. Nothing is saved to disk.
const { spawn, spawnSync } = require('node:child_process')
const net = require('node:net')
const { pingRedis } = require('./services')

/** Whether a redis-server binary can be run here. */
function haveRedisServer() {
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  return probe.status === 0
}

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

class RedisServer {
  constructor(port) {
    this.port = port
    this.url = `redis://127.0.0.1:${port}`
    this.child = null
  }

  /** Starts redis-server and resolves once it answers PING (within 5 s). */
  async start() {
    if (this.child) return
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: 'ignore' })
    this.child = child
    child.once('exit', () => {
      if (this.child === child) this.child = null
    })
    const deadline = Date.now() + 5000
    for (;;) {
      try {
        await pingRedis(this.url)
        return
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not answer: ${error.message}`)
        await sleep(20)
      }
    }
  }

  /** Kills it (SIGKILL: no goodbye to the clients) and resolves once it has exited. */
  async kill() {
    const child = this.child
    if (!child) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    this.child = null
  }
}

/** A private server on a free port, started. */
async function startRedisServer() {
  const server = new RedisServer(await freePort())
  await server.start()
  return server
}

module.exports = { haveRedisServer, freePort, startRedisServer, RedisServer }
