'use strict'
// Where suites find PostgreSQL and Redis, and what they do when one is unreachable: skip with a
// line saying so, or fail when BULWARK_REQUIRE_SERVICES=1 (as CI sets it), so CI never passes
// by skipping.
const net = require('node:net')

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379'
const required = process.env.BULWARK_REQUIRE_SERVICES === '1'

/** Opens a TCP connection, sends `probe`, and resolves with the first bytes answered. */
function ask(url, defaultPort, probe, timeoutMs = 2000) {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname || '127.0.0.1', port: Number(port) || defaultPort })
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)), timeoutMs)
    socket.once('connect', () => socket.write(probe))
    socket.once('data', (data) => { clearTimeout(timer); socket.end(); resolve(data) })
    socket.once('error', (error) => { clearTimeout(timer); reject(error) })
  })
}

/** Resolves when Redis answers PING with PONG. */
async function pingRedis(url = REDIS_URL) {
  const answer = (await ask(url, 6379, 'PING\r\n')).toString()
  if (!answer.startsWith('+PONG')) throw new Error(`Redis at ${url} answered ${JSON.stringify(answer)}`)
}

/** Resolves when PostgreSQL answers an SSLRequest (with 'S' or 'N'), i.e. speaks its protocol. */
async function pingPostgres(url = DATABASE_URL) {
  const sslRequest = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
  const answer = await ask(url, 5432, sslRequest)
  if (answer.length !== 1 || (answer[0] !== 0x53 && answer[0] !== 0x4e)) {
    throw new Error(`PostgreSQL at ${url} answered ${answer.toString('hex')}`)
  }
}

/**
 * For a suite that needs a service: resolves to `{ skip: false }` when it answers, to
 * `{ skip: 'reason' }` when it does not (printing the reason), and throws instead when services
 * are required.
 */
async function needService(name) {
  const ping = { redis: pingRedis, postgres: pingPostgres }[name]
  try {
    await ping()
    return { skip: false }
  } catch (error) {
    const reason = `${name} unreachable (${error.message}); set BULWARK_REQUIRE_SERVICES=1 to fail instead of skipping`
    if (required) throw new Error(`${name} is required (BULWARK_REQUIRE_SERVICES=1) but unreachable: ${error.message}`)
    console.log(`# skipping: ${reason}`)
    return { skip: reason }
  }
}

/** Deletes every key matching `pattern` (a SCAN pattern) through an ioredis `client`. */
async function deleteKeys(client, pattern) {
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    if (keys.length) await client.del(...keys)
    cursor = next
  } while (cursor !== '0')
}

module.exports = { DATABASE_URL, REDIS_URL, required, pingRedis, pingPostgres, needService, deleteKeys }
