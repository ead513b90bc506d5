'use strict'
// examples/gateway/server.js runs as a user would run it: a child process that resolves
// `bulwark` and `bulwark/express` by package name, answers with the rate-limit headers and
// exits 0 on SIGINT or SIGTERM.
const { test, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const { once } = require('node:events')
const net = require('node:net')
const path = require('node:path')

const root = path.join(__dirname, '..')
const server = path.join(root, 'examples', 'gateway', 'server.js')
const children = new Set()

after(() => {
  for (const child of children) child.kill('SIGKILL')
})

/** A port nobody listens on now: the OS picks it for a listener that is closed at once. */
async function freePort() {
  const probe = net.createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address()
  probe.close()
  await once(probe, 'close')
  return port
}

/** Starts the gateway and resolves with the child and its base URL once it says it listens. */
async function startGateway() {
  const port = await freePort()
  const child = spawn(process.execPath, [server], {
    cwd: root,
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  child.on('exit', () => children.delete(child))
  let stdout = ''
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk))
  const base = await new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      stdout += chunk
      const match = /bulwark gateway listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(stdout)
      if (match) resolve(match[1])
    })
    child.once('exit', (code, signal) => reject(new Error(`the gateway exited (${code ?? signal}) before listening:\n${stdout}${stderr}`)))
  })
  assert.equal(base, `http://127.0.0.1:${port}`)
  return { child, base, output: () => stdout + stderr }
}

/** Sends `signal` and resolves with the exit code; fails if the child is still up after 5 s. */
async function stop(child, signal) {
  const exited = once(child, 'exit')
  child.kill(signal)
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the gateway did not exit within 5 s of ${signal}`)), 5000)
  })
  try {
    const [code, killedBy] = await Promise.race([exited, timeout])
    return { code, signal: killedBy }
  } finally {
    clearTimeout(timer)
  }
}

test('the gateway answers /api/hello with the draft-8 headers and stops on SIGINT', async () => {
  const { child, base, output } = await startGateway()

  const hello = await fetch(`${base}/api/hello`)
  assert.equal(hello.status, 200, output())
  assert.deepEqual(await hello.json(), { hello: 'world' })
  assert.match(hello.headers.get('ratelimit-policy'), /^"gateway";q=20(;w=2)?$/)
  assert.match(hello.headers.get('ratelimit'), /^"gateway";r=19;t=\d+$/)

  const root = await fetch(`${base}/`)
  assert.equal(root.status, 200)
  assert.ok(root.headers.has('ratelimit'))

  const stats = await fetch(`${base}/api/limiter/stats`)
  assert.equal(stats.status, 200)
  const body = await stats.json()
  assert.equal(body.allowed, 2)
  assert.equal(body.keys, 1)
  assert.equal(stats.headers.has('ratelimit'), false)

  assert.deepEqual(await stop(child, 'SIGINT'), { code: 0, signal: null })
  assert.match(output(), /SIGINT, closing/)
})

test('the gateway stops on SIGTERM with exit code 0', async () => {
  const { child, base } = await startGateway()
  assert.equal((await fetch(`${base}/api/hello?name=bulwark`)).status, 200)
  assert.deepEqual(await stop(child, 'SIGTERM'), { code: 0, signal: null })
})
