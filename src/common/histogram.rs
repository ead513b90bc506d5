//! A fixed-size latency histogram good enough for p50/p95/p99.
//!
//! Values (in any unit; blocks use microseconds) fall into log-linear buckets: each power of two
//! is split into 16 equal sub-buckets, so a reported percentile is within 1/16 (6.25%) of the
//! true value, recording is O(1) with no allocation, and the whole histogram is a few KiB however
//! many values it has seen. This is the layout HdrHistogram popularised, cut down to what stats
//! endpoints need.
//!
//! Prometheus histograms need counts at round decimal bounds (1 ms, 2.5 ms, ...), which never
//! fall on those sub-bucket edges; [`BoundCounts`] counts beside the histogram at such bounds,
//! exactly, for the blocks that show durations on `/metrics`.

const SUB_BUCKET_BITS: u32 = 4;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Values up to 2^48 are kept exactly in range; larger ones land in the last bucket.
const MAX_EXPONENT: usize = 48;
const BUCKETS: usize = (MAX_EXPONENT + 1) * SUB_BUCKETS;

/// The upper bounds, in microseconds, of the buckets a duration histogram shows to Prometheus:
/// its default latency buckets, from 1 ms to 10 s. Span durations and rate-limiter waits.
pub const DURATION_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Finer bounds, in microseconds, from 0.1 ms to 10 s, for durations that are often under a
/// millisecond: statements run against a nearby database. The ConnectionPool's acquire waits use
/// the same (`lib/pool.js`).
pub const FINE_DURATION_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Exact counts of values at fixed upper bounds: the buckets of a Prometheus histogram. A value
/// counts in the first bucket whose bound is at or above it (bounds are inclusive, as `le` is),
/// and in none when it is above the last bound (the `+Inf` bucket is the owner's total count).
#[derive(Clone, Debug)]
pub struct BoundCounts<const N: usize> {
    bounds: &'static [u64; N],
    counts: [u64; N],
}

impl<const N: usize> BoundCounts<N> {
    /// No values yet, counted at `bounds` (ascending).
    pub const fn new(bounds: &'static [u64; N]) -> Self {
        BoundCounts {
            bounds,
            counts: [0; N],
        }
    }

    /// Counts `value` in its bucket.
    #[inline]
    pub fn record(&mut self, value: u64) {
        // The bounds below `value`, counted without branches: every comparison is independent,
        // where a binary search chains a load, a compare and a conditional move per step (about
        // 10 ns of every span's end, in a profile of unsampled spans).
        let index: usize = self
            .bounds
            .iter()
            .map(|&bound| usize::from(bound < value))
            .sum();
        if let Some(count) = self.counts.get_mut(index) {
            *count += 1;
        }
    }

    /// The bounds, in microseconds when the values are.
    pub fn bounds(&self) -> &'static [u64; N] {
        self.bounds
    }

    /// For each bound, how many values were at most that bound.
    pub fn cumulative(&self) -> Vec<u64> {
        self.counts
            .iter()
            .scan(0u64, |seen, &count| {
                *seen += count;
                Some(*seen)
            })
            .collect()
    }
}

impl Default for BoundCounts<13> {
    /// Counts at [`DURATION_BOUNDS_US`].
    fn default() -> Self {
        BoundCounts::new(&DURATION_BOUNDS_US)
    }
}

impl Default for BoundCounts<16> {
    /// Counts at [`FINE_DURATION_BOUNDS_US`].
    fn default() -> Self {
        BoundCounts::new(&FINE_DURATION_BOUNDS_US)
    }
}

/// Counts of recorded values by magnitude, with count, sum, min and max.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The percentiles every stats snapshot reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    /// Number of values recorded.
    pub count: u64,
    /// Arithmetic mean (0 when empty).
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value recorded (exact).
    pub max: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    fn index_of(value: u64) -> usize {
        if value < SUB_BUCKETS as u64 {
            return value as usize;
        }
        let exponent = 63 - value.leading_zeros(); // >= SUB_BUCKET_BITS
        let shift = exponent - SUB_BUCKET_BITS;
        let sub = ((value >> shift) as usize) & (SUB_BUCKETS - 1);
        let row = (exponent - SUB_BUCKET_BITS + 1) as usize;
        (row * SUB_BUCKETS + sub).min(BUCKETS - 1)
    }

    /// The largest value that falls into bucket `index`.
    fn upper_bound_of(index: usize) -> u64 {
        let row = index / SUB_BUCKETS;
        let sub = (index % SUB_BUCKETS) as u64;
        if row == 0 {
            return sub;
        }
        let shift = (row - 1) as u32;
        let low = (SUB_BUCKETS as u64 + sub) << shift;
        low + (1u64 << shift) - 1
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.counts[Self::index_of(value)] += 1;
        self.count += 1;
        self.sum += value as u128;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value below which `quantile` (0..=1) of the recorded values fall, to within 6.25%;
    /// never above the largest value recorded. 0 when empty.
    pub fn percentile(&self, quantile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper_bound_of(index).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Count, mean, p50, p95, p99 and max in one pass-friendly snapshot.
    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count,
            mean: if self.count == 0 {
                0.0
            } else {
                self.sum as f64 / self.count as f64
            },
            p50: self.percentile(0.50),
            p95: self.percentile(0.95),
            p99: self.percentile(0.99),
            max: self.max,
        }
    }

    /// Sum of the values recorded.
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// Forgets every value.
    pub fn clear(&mut self) {
        *self = Histogram::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bound_counts_are_exact_and_inclusive_at_every_bound() {
        let mut buckets = BoundCounts::<13>::default();
        // every bound itself, one above it, and one past the last bound
        for &bound in &DURATION_BOUNDS_US {
            buckets.record(bound);
            buckets.record(bound + 1);
        }
        buckets.record(0);
        let cumulative = buckets.cumulative();
        // at bound i: 0, the bounds 0..=i, and the values just above bounds 0..i
        for (i, &count) in cumulative.iter().enumerate() {
            assert_eq!(count, 1 + (i as u64 + 1) + i as u64, "bound {i}");
        }
        // the value above the last bound is in no bucket (only in the owner's count)
        assert_eq!(*cumulative.last().unwrap(), 26);
        assert_eq!(BoundCounts::<16>::default().bounds()[0], 100);
    }

    #[test]
    fn sum_is_exact() {
        let mut h = Histogram::new();
        for value in 0..10_000u64 {
            h.record(value);
        }
        assert_eq!(h.sum(), (0..10_000u128).sum::<u128>());
    }

    #[test]
    fn empty_histogram_reports_zeroes() {
        let h = Histogram::new();
        assert_eq!(h.summary(), Summary::default());
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.max, 10_000);
        for (got, want) in [(s.p50, 5_000.0), (s.p95, 9_500.0), (s.p99, 9_900.0)] {
            let error = (got as f64 - want).abs() / want;
            assert!(error <= 0.0625, "got {got}, want about {want}");
        }
        assert!((s.mean - 5_000.5).abs() < 1e-9);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in [3u64, 3, 3, 7] {
            h.record(v);
        }
        assert_eq!(h.percentile(0.5), 3);
        assert_eq!(h.percentile(1.0), 7);
    }

    proptest! {
        #[test]
        fn every_value_lands_in_a_bucket_that_contains_it(value in 0u64..(1u64 << 47)) {
            let index = Histogram::index_of(value);
            let upper = Histogram::upper_bound_of(index);
            prop_assert!(upper >= value);
            prop_assert!((upper - value) as f64 <= value as f64 / 16.0 + 1.0);
        }

        #[test]
        fn percentile_never_exceeds_max_nor_falls_below_min(values in proptest::collection::vec(0u64..1_000_000, 1..200), q in 0.0f64..=1.0) {
            let mut h = Histogram::new();
            for &v in &values { h.record(v); }
            let p = h.percentile(q);
            prop_assert!(p <= *values.iter().max().unwrap());
            prop_assert!(p >= *values.iter().min().unwrap());
        }
    }
}
