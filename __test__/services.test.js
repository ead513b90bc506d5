'use strict'
// The services the integration suites use are reachable the way those suites reach them, and the
// skip-or-fail switch behaves as documented.
const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { needService } = require('./helpers/services')

test('PostgreSQL answers at DATABASE_URL', async (t) => {
  const { skip } = await needService('postgres')
  if (skip) return t.skip(skip)
})

test('Redis answers at REDIS_URL', async (t) => {
  const { skip } = await needService('redis')
  if (skip) return t.skip(skip)
})

test('an unreachable service skips normally and fails when services are required', () => {
  const script = `require(${JSON.stringify(path.join(__dirname, 'helpers', 'services.js'))}).needService('redis').then(r => console.log('skip', Boolean(r.skip)), e => { console.log('failed', e.message); process.exit(3) })`
  const env = { ...process.env, REDIS_URL: 'redis://127.0.0.1:1' }
  const relaxed = spawnSync(process.execPath, ['-e', script], { env: { ...env, BULWARK_REQUIRE_SERVICES: '' }, encoding: 'utf8' })
  assert.equal(relaxed.status, 0)
  assert.match(relaxed.stdout, /skip true/)
  const strict = spawnSync(process.execPath, ['-e', script], { env: { ...env, BULWARK_REQUIRE_SERVICES: '1' }, encoding: 'utf8' })
  assert.equal(strict.status, 3)
  assert.match(strict.stdout, /failed redis is required/)
})
