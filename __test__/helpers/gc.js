'use strict'
// A full garbage collection on demand, for tests that check what survives one: V8's `gc`
// function, exposed through its flag at run time (the test runner starts without --expose-gc).
const v8 = require('node:v8')
const vm = require('node:vm')

v8.setFlagsFromString('--expose-gc')
/** Runs a full, synchronous garbage collection. */
const collectGarbage = vm.runInNewContext('gc')

/** Resolves with what `promise` settles to, or with `timedOut` when it has not within `ms`. */
function settledWithin(promise, ms, timedOut = 'not settled') {
  let timer
  const deadline = new Promise((resolve) => { timer = setTimeout(resolve, ms, timedOut) })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

/** Resolves after the callbacks already queued with process.nextTick have run. */
const afterQueuedTicks = () => new Promise((resolve) => process.nextTick(resolve))

module.exports = { collectGarbage, settledWithin, afterQueuedTicks }
