'use strict'
// TestClock: a clock for tests. Blocks given `clock: testClock` read their time from it, and
// moving it wakes them (a limiter grants or expires its waiters), so tests check time-dependent
// behaviour without sleeping. Not for production use.
const binding = require('../binding.js')
const { invalidArgument, describe } = require('./errors')

class TestClock extends binding.ManualClock {
  #listeners = new Set()

  /** A clock at `startMs` milliseconds (default 0). */
  constructor(startMs = 0) {
    super(startMs)
  }

  /** Moves the clock forward by `ms` and wakes the blocks that use it. */
  advance(ms) {
    super.advance(ms)
    this.#wake()
  }

  /** Sets the clock to `ms` and wakes the blocks that use it. */
  set(ms) {
    super.set(ms)
    this.#wake()
  }

  /**
   * Runs `listener` whenever the clock moves; returns a function that stops it. Blocks use
   * this to do at once what they would otherwise do on a timer.
   */
  onMove(listener) {
    if (typeof listener !== 'function') {
      throw invalidArgument(TypeError, `listener must be a function, received ${describe(listener)}`)
    }
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  #wake() {
    for (const listener of [...this.#listeners]) listener()
  }
}

module.exports = { TestClock }
