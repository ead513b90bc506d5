'use strict'
// A small log-linear histogram of durations for JS-side blocks: values in microseconds fall in
// buckets of 1/16 of a power of two (about 6% wide), so a record is a few integer operations
// and a quantile a walk over at most a few hundred counters. The maximum is kept exactly.

const SUB_BITS = 4
const SUB_COUNT = 1 << SUB_BITS
// 2^31 us is about 36 minutes; longer values count in the last bucket
const MAX_US = 2 ** 31 - 1
const BUCKETS = (31 - SUB_BITS + 1) * SUB_COUNT + SUB_COUNT

/** The bucket of a value in whole microseconds (0 <= us <= MAX_US). */
function bucketOf(us) {
  if (us < SUB_COUNT) return us
  const exponent = 31 - Math.clz32(us)
  const shift = exponent - SUB_BITS
  return (shift + 1) * SUB_COUNT + ((us >>> shift) & (SUB_COUNT - 1))
}

/** The largest value in microseconds a bucket holds. */
function upperBoundOf(bucket) {
  if (bucket < SUB_COUNT) return bucket
  const shift = Math.floor(bucket / SUB_COUNT) - 1
  const sub = bucket % SUB_COUNT
  return (SUB_COUNT + sub + 1) * 2 ** shift - 1
}

/**
 * Durations in milliseconds, summarized as p50/p95/p99/max, and counted exactly at `boundsMs`
 * (ascending) when given: the buckets of a Prometheus histogram.
 */
class DurationHistogram {
  #counts = new Float64Array(BUCKETS)
  #total = 0
  #maxMs = 0
  #sumMs = 0
  #boundsMs
  #boundCounts

  constructor(boundsMs = []) {
    this.#boundsMs = boundsMs
    this.#boundCounts = new Float64Array(boundsMs.length)
  }

  /** Counts one duration of `ms` milliseconds (negative counts as 0). */
  record(ms) {
    const us = ms > 0 ? Math.min(MAX_US, Math.round(ms * 1000)) : 0
    this.#counts[bucketOf(us)]++
    this.#total++
    if (ms > 0) this.#sumMs += ms
    if (ms > this.#maxMs) this.#maxMs = ms
    const bounds = this.#boundsMs
    for (let i = 0; i < bounds.length; i++) {
      if (ms <= bounds[i]) {
        this.#boundCounts[i]++
        break
      }
    }
  }

  /** How many durations were counted. */
  get count() {
    return this.#total
  }

  /**
   * `{ p50, p95, p99, max }` in milliseconds; each quantile is the upper bound of its bucket
   * (within about 6%), never above the exact maximum. All zero before the first record.
   */
  summary() {
    if (this.#total === 0) return { p50: 0, p95: 0, p99: 0, max: 0 }
    return { p50: this.#quantile(0.5), p95: this.#quantile(0.95), p99: this.#quantile(0.99), max: this.#maxMs }
  }

  /** Sum of the durations in ms. */
  get sumMs() {
    return this.#sumMs
  }

  /** For each of the bounds given to the constructor, how many durations were at most that long. */
  cumulative() {
    const out = new Array(this.#boundCounts.length)
    let seen = 0
    for (let i = 0; i < out.length; i++) {
      seen += this.#boundCounts[i]
      out[i] = seen
    }
    return out
  }

  #quantile(q) {
    const rank = Math.max(1, Math.ceil(q * this.#total))
    let seen = 0
    for (let bucket = 0; bucket < BUCKETS; bucket++) {
      seen += this.#counts[bucket]
      if (seen >= rank) return Math.min(this.#maxMs, upperBoundOf(bucket) / 1000)
    }
    return this.#maxMs
  }
}

module.exports = { DurationHistogram, bucketOf, upperBoundOf }
