#!/usr/bin/env node
// Compiles the addon with the napi CLI and writes bulwark.<platform>.node, binding.js and
// binding.d.ts beside Cargo.toml. `--release` selects the optimized (LTO) profile; without it a
// debug build is made, which compiles in a fraction of the time while iterating.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')
const release = process.argv.includes('--release')
// the CLI's package exports hide dist/cli.js, so it is found through its package.json
const cli = path.join(path.dirname(require.resolve('@napi-rs/cli/package.json', { paths: [root] })), 'dist', 'cli.js')
const args = [cli, 'build', '--platform', '--js', 'binding.js', '--dts', 'binding.d.ts', '--no-dts-header']
if (release) args.push('--release')
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' })
process.exit(result.status === null ? 1 : result.status)
