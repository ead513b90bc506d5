'use strict'
// What the benchmark scripts share: finding the loaded addon and telling a debug build from a
// release one, and writing a report (JSON to a file or stdout, the human table beside it).
const fs = require('node:fs')
const path = require('node:path')

/** Names of the sections of an ELF file (empty for anything else). */
function elfSections(buf) {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2) return []
  const shoff = Number(buf.readBigUInt64LE(0x28))
  const size = buf.readUInt16LE(0x3a)
  const count = buf.readUInt16LE(0x3c)
  const strtab = Number(buf.readBigUInt64LE(shoff + buf.readUInt16LE(0x3e) * size + 0x18))
  const names = []
  for (let i = 0; i < count; i++) {
    const start = strtab + buf.readUInt32LE(shoff + i * size)
    names.push(buf.toString('latin1', start, buf.indexOf(0, start)))
  }
  return names
}

/** Whether an addon file is a debug build (it carries DWARF sections). */
const isDebugBuild = (file) => elfSections(fs.readFileSync(file)).includes('.debug_info')

/** Which addon file the package loads and whether it is a debug build (it has DWARF sections). */
function loadedAddon() {
  const root = path.join(__dirname, '..', '..')
  const file = process.env.NAPI_RS_NATIVE_LIBRARY_PATH
    || fs.readdirSync(root).filter((f) => f.endsWith('.node')).map((f) => path.join(root, f))[0]
  if (!file) return { file: null, build: 'unknown' }
  return { file: path.relative(root, file), build: isDebugBuild(file) ? 'debug' : 'release' }
}

/**
 * Writes a report: with `outPath`, the JSON goes to that file and the table to stdout;
 * without, the JSON goes to stdout and the table to stderr.
 */
function writeReport(outPath, report, lines) {
  const table = lines.join('\n') + '\n'
  const json = JSON.stringify(report, null, 2) + '\n'
  if (outPath) {
    fs.writeFileSync(outPath, json)
    process.stdout.write(table)
  } else {
    process.stderr.write(table)
    process.stdout.write(json)
  }
}

/** The median of a list of numbers. */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

module.exports = { elfSections, isDebugBuild, loadedAddon, writeReport, median }
