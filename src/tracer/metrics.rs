//! Span metrics: count, errors and a latency histogram per span name, plus the tracer's counters.
//!
//! Every span that ends feeds [`SpanMetrics`], sampled or not, so request rates and latencies stay
//! exact whatever the sampling rate. Names come from user code (and often from routes), so their
//! number must be bounded: once `max_names` distinct names are tracked, spans with a new name are
//! aggregated under the single overflow name [`OVERFLOW_NAME`] (`"_other"`), which does not count
//! toward `max_names`. A span whose own name is `"_other"` lands in that same entry, so the
//! snapshot never shows the name twice.
//!
//! Both types are plain, unsynchronised state: a tracer belongs to one JS environment and is
//! driven from its thread only, so there is nothing to contend with. Work done off that thread
//! (the exporter) reports its results back to it, or its owner wraps these types in a lock.

use compact_str::CompactString;
use hashbrown::HashMap;

use crate::common::histogram::BoundCounts;
use crate::common::Histogram;

/// The name under which spans with a name beyond `max_names` are aggregated.
pub const OVERFLOW_NAME: &str = "_other";

/// The upper bounds, in microseconds, of the cumulative duration counts each name reports.
pub use crate::common::histogram::DURATION_BOUNDS_US;

/// One name's aggregate.
#[derive(Clone, Debug, Default)]
struct NameStats {
    count: u64,
    errors: u64,
    /// Durations in microseconds: the histogram's 1/16 precision is plenty at that unit, and it
    /// keeps values of up to 2^48 µs (about 9 years) in range.
    durations_us: Histogram,
    /// The same, counted at [`DURATION_BOUNDS_US`].
    buckets: BoundCounts<13>,
}

impl NameStats {
    #[inline]
    fn record(&mut self, duration_nanos: u64, error: bool) {
        self.count += 1;
        self.errors += u64::from(error);
        // Truncated to whole microseconds: a sub-microsecond span reports 0 ms.
        let micros = duration_nanos / 1_000;
        self.durations_us.record(micros);
        self.buckets.record(micros);
    }

    fn stats(&self, name: &str) -> SpanNameStats {
        let s = self.durations_us.summary();
        let ms = |us: u64| us as f64 / 1_000.0;
        SpanNameStats {
            name: name.to_string(),
            count: self.count,
            errors: self.errors,
            p50_ms: ms(s.p50),
            p95_ms: ms(s.p95),
            p99_ms: ms(s.p99),
            max_ms: ms(s.max),
            sum_ms: self.durations_us.sum() as f64 / 1_000.0,
            bucket_counts: self.buckets.cumulative(),
        }
    }
}

/// One span name's numbers in a [`SpanMetrics::snapshot`].
#[derive(Clone, Debug, PartialEq)]
pub struct SpanNameStats {
    /// The span name, or [`OVERFLOW_NAME`] for the overflow entry.
    pub name: String,
    /// Spans ended with this name.
    pub count: u64,
    /// Of those, spans that ended with an error status.
    pub errors: u64,
    /// Median duration in milliseconds, within 6.25%.
    pub p50_ms: f64,
    /// 95th percentile duration in milliseconds, within 6.25%.
    pub p95_ms: f64,
    /// 99th percentile duration in milliseconds, within 6.25%.
    pub p99_ms: f64,
    /// Longest duration in milliseconds (exact to the microsecond).
    pub max_ms: f64,
    /// Sum of the durations in milliseconds (each truncated to the microsecond).
    pub sum_ms: f64,
    /// For each of [`DURATION_BOUNDS_US`], the spans that took at most that long (cumulative).
    pub bucket_counts: Vec<u64>,
}

/// Where one name's aggregate lives in a [`SpanMetrics`]: an index into its entries, or the
/// overflow entry. Got once with [`SpanMetrics::slot`] (a hash lookup), then used with
/// [`SpanMetrics::record_at`] for every span of that name (no hashing at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricSlot(u32);

impl MetricSlot {
    /// The overflow entry's slot.
    pub const OVERFLOW: MetricSlot = MetricSlot(u32::MAX);
}

/// Per-name span counts and latencies, with a bounded number of names.
#[derive(Clone, Debug)]
pub struct SpanMetrics {
    max_names: usize,
    /// Name to its index in `entries`.
    index: HashMap<CompactString, u32>,
    entries: Vec<(CompactString, NameStats)>,
    /// Kept apart from `entries` so that it never counts toward `max_names`; `None` until used.
    overflow: Option<NameStats>,
}

impl SpanMetrics {
    /// Metrics that track at most `max_names` distinct names, plus the overflow entry.
    pub fn new(max_names: usize) -> Self {
        SpanMetrics {
            max_names,
            index: HashMap::new(),
            entries: Vec::new(),
            overflow: None,
        }
    }

    /// The bound on distinct names, the overflow entry aside.
    pub fn max_names(&self) -> usize {
        self.max_names
    }

    /// The slot of `name`, tracking it if it is new and the bound allows (else the overflow
    /// slot). A slot stays valid until [`Self::clear`]. An entry made here and never recorded
    /// into is left out of snapshots.
    pub fn slot(&mut self, name: &str) -> MetricSlot {
        if let Some(&i) = self.index.get(name) {
            return MetricSlot(i);
        }
        if name == OVERFLOW_NAME || self.entries.len() >= self.max_names {
            return MetricSlot::OVERFLOW;
        }
        let i = self.entries.len() as u32;
        self.entries
            .push((CompactString::from(name), NameStats::default()));
        self.index.insert(CompactString::from(name), i);
        MetricSlot(i)
    }

    /// Records one ended span into `slot` (from [`Self::slot`] since the last clear).
    #[inline]
    pub fn record_at(&mut self, slot: MetricSlot, duration_nanos: u64, error: bool) {
        let stats = match self.entries.get_mut(slot.0 as usize) {
            Some((_, stats)) => stats,
            None => self.overflow.get_or_insert_with(NameStats::default),
        };
        stats.record(duration_nanos, error);
    }

    /// Records one ended span. A name already tracked costs one hash lookup and no allocation;
    /// only a new name within the bound allocates its key and histogram.
    pub fn record(&mut self, name: &str, duration_nanos: u64, error: bool) {
        let slot = self.slot(name);
        self.record_at(slot, duration_nanos, error);
    }

    /// Number of entries a snapshot would hold (the overflow entry included, once used).
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|(_, s)| s.count > 0).count()
            + usize::from(self.overflow.is_some())
    }

    /// Whether nothing has been recorded since creation or the last [`Self::clear`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry with at least one span, sorted by name (the overflow entry sorted in with
    /// the rest).
    pub fn snapshot(&self) -> Vec<SpanNameStats> {
        let mut out: Vec<SpanNameStats> = self
            .entries
            .iter()
            .filter(|(_, stats)| stats.count > 0)
            .map(|(name, stats)| stats.stats(name))
            .chain(self.overflow.iter().map(|stats| stats.stats(OVERFLOW_NAME)))
            .collect();
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Forgets every name and the overflow entry (every slot handed out is then stale); the
    /// bound stays.
    pub fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.overflow = None;
    }
}

/// The tracer's lifetime counters.
///
/// Plain `u64`s rather than atomics: the tracer is per JS environment and single-threaded (see
/// the module docs). `started` always equals `sampled + unsampled`, which [`Self::span_started`]
/// keeps true by counting both in one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracerCounters {
    started: u64,
    sampled: u64,
    unsampled: u64,
    exported: u64,
    dropped: u64,
    export_errors: u64,
}

impl TracerCounters {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a started span and its sampling decision.
    #[inline]
    pub fn span_started(&mut self, sampled: bool) {
        self.started += 1;
        if sampled {
            self.sampled += 1;
        } else {
            self.unsampled += 1;
        }
    }

    /// Counts `spans` sampled spans accepted by the collector.
    pub fn add_exported(&mut self, spans: u64) {
        self.exported += spans;
    }

    /// Counts `spans` sampled spans lost before export (a full queue, shutdown, a failed batch).
    pub fn add_dropped(&mut self, spans: u64) {
        self.dropped += spans;
    }

    /// Counts one failed export attempt (a batch, not its spans).
    pub fn add_export_error(&mut self) {
        self.export_errors += 1;
    }

    /// Spans started.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Spans started with a sampled decision.
    pub fn sampled(&self) -> u64 {
        self.sampled
    }

    /// Spans started with an unsampled decision.
    pub fn unsampled(&self) -> u64 {
        self.unsampled
    }

    /// Spans accepted by the collector.
    pub fn exported(&self) -> u64 {
        self.exported
    }

    /// Sampled spans lost before export.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Failed export attempts.
    pub fn export_errors(&self) -> u64 {
        self.export_errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn find<'a>(snapshot: &'a [SpanNameStats], name: &str) -> &'a SpanNameStats {
        snapshot.iter().find(|s| s.name == name).unwrap()
    }

    fn within(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * 0.0625
    }

    #[test]
    fn counts_and_errors_per_name() {
        let mut m = SpanMetrics::new(10);
        for i in 0..10 {
            m.record("GET /users", 1_000_000, i % 3 == 0);
        }
        m.record("POST /users", 2_000_000, true);
        let snap = m.snapshot();
        assert_eq!(snap.len(), 2);
        let get = find(&snap, "GET /users");
        assert_eq!((get.count, get.errors), (10, 4));
        assert_eq!(get.max_ms, 1.0);
        let post = find(&snap, "POST /users");
        assert_eq!((post.count, post.errors), (1, 1));
        assert_eq!(post.p50_ms, 2.0);
    }

    #[test]
    fn percentiles_are_within_the_histogram_precision() {
        let mut m = SpanMetrics::new(10);
        // 1..=10_000 µs, so p50 is about 5 ms, p95 9.5 ms, p99 9.9 ms, max exactly 10 ms
        for us in 1..=10_000u64 {
            m.record("db.query", us * 1_000 + 999, false);
        }
        let s = &m.snapshot()[0];
        assert_eq!(s.count, 10_000);
        assert!(within(s.p50_ms, 5.0), "p50 {}", s.p50_ms);
        assert!(within(s.p95_ms, 9.5), "p95 {}", s.p95_ms);
        assert!(within(s.p99_ms, 9.9), "p99 {}", s.p99_ms);
        // sub-microsecond remainders are truncated
        assert_eq!(s.max_ms, 10.0);
    }

    #[test]
    fn snapshot_is_sorted_by_name() {
        let mut m = SpanMetrics::new(2);
        for name in ["b", "a", "c", "A"] {
            m.record(name, 0, false);
        }
        let names: Vec<_> = m.snapshot().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["_other", "a", "b"]);
    }

    #[test]
    fn ten_thousand_names_stay_within_the_bound() {
        let mut m = SpanMetrics::new(100);
        for i in 0..10_000 {
            m.record(&format!("span {i}"), 1_000, i % 2 == 0);
        }
        let snap = m.snapshot();
        assert!(snap.len() <= 101, "{} entries", snap.len());
        assert_eq!(snap.len(), 101);
        let other = find(&snap, OVERFLOW_NAME);
        assert_eq!(other.count, 9_900);
        assert_eq!(other.errors, 4_950);
        assert_eq!(snap.iter().map(|s| s.count).sum::<u64>(), 10_000);
        // a name tracked before the bound was reached keeps its own entry
        m.record("span 0", 1_000, false);
        assert_eq!(find(&m.snapshot(), "span 0").count, 2);
    }

    #[test]
    fn a_span_named_other_shares_the_overflow_entry() {
        let mut m = SpanMetrics::new(1);
        m.record(OVERFLOW_NAME, 0, false);
        m.record("a", 0, false);
        m.record("b", 0, false);
        let snap = m.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(find(&snap, OVERFLOW_NAME).count, 2);
        assert_eq!(find(&snap, "a").count, 1);
    }

    #[test]
    fn zero_names_sends_everything_to_the_overflow() {
        let mut m = SpanMetrics::new(0);
        m.record("a", 0, false);
        m.record("b", 0, true);
        let snap = m.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!((snap[0].count, snap[0].errors), (2, 1));
    }

    #[test]
    fn clear_forgets_everything_but_the_bound() {
        let mut m = SpanMetrics::new(1);
        assert!(m.is_empty());
        m.record("a", 5_000, false);
        m.record("b", 5_000, false);
        assert_eq!(m.len(), 2);
        m.clear();
        assert!(m.is_empty());
        assert!(m.snapshot().is_empty());
        assert_eq!(m.max_names(), 1);
        m.record("b", 5_000, false);
        assert_eq!(m.snapshot()[0].name, "b");
    }

    #[test]
    fn counters_count() {
        let mut c = TracerCounters::new();
        c.span_started(true);
        c.span_started(false);
        c.span_started(true);
        c.add_exported(2);
        c.add_dropped(1);
        c.add_export_error();
        assert_eq!((c.started(), c.sampled(), c.unsampled()), (3, 2, 1));
        assert_eq!((c.exported(), c.dropped(), c.export_errors()), (2, 1, 1));
    }

    proptest! {
        #[test]
        fn entries_are_bounded_and_counts_add_up(
            names in proptest::collection::vec(0u16..500, 0..2_000),
            max_names in 0usize..50,
        ) {
            let mut m = SpanMetrics::new(max_names);
            for n in &names {
                m.record(&n.to_string(), u64::from(*n) * 1_000, n % 7 == 0);
            }
            let snap = m.snapshot();
            prop_assert!(snap.len() <= max_names + 1);
            prop_assert_eq!(snap.iter().map(|s| s.count).sum::<u64>(), names.len() as u64);
            prop_assert_eq!(
                snap.iter().map(|s| s.errors).sum::<u64>(),
                names.iter().filter(|n| *n % 7 == 0).count() as u64
            );
            prop_assert!(snap.windows(2).all(|w| w[0].name < w[1].name));
        }

        #[test]
        fn started_is_sampled_plus_unsampled(decisions in proptest::collection::vec(any::<bool>(), 0..500)) {
            let mut c = TracerCounters::new();
            for &d in &decisions { c.span_started(d); }
            prop_assert_eq!(c.started(), decisions.len() as u64);
            prop_assert_eq!(c.started(), c.sampled() + c.unsampled());
        }
    }
}
