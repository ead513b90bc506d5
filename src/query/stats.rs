//! Per-fingerprint statistics, as pg_stat_statements keeps them, but in the service: calls,
//! errors, rows, total and maximum time, p50/p95/p99 from a log-linear histogram, slow calls,
//! N+1 findings and the rules the statement broke.
//!
//! Only the normalized text is kept: literal values never reach this table. The table is
//! bounded: past `max_fingerprints`, a new fingerprint replaces the least called one.

use hashbrown::HashMap;

use crate::common::histogram::BoundCounts;
use crate::common::Histogram;

use super::rules::RULES;

/// The figures of one fingerprint.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The normalized statement.
    pub normalized: Box<str>,
    /// Calls recorded.
    pub calls: u64,
    /// Of which failed.
    pub errors: u64,
    /// Rows returned or affected, summed over the calls that reported them.
    pub rows: u64,
    /// Total time, ms.
    pub total_ms: f64,
    /// Longest call, ms.
    pub max_ms: f64,
    /// Calls at or above the slow threshold.
    pub slow: u64,
    /// N+1 findings (traces in which it ran at least the threshold times).
    pub n_plus_one: u64,
    /// Bit i: rule `RULES[i]` found in the statement.
    pub rules: u32,
    /// Call durations in microseconds.
    histogram: Histogram,
    /// The same, counted at Prometheus bounds.
    buckets: BoundCounts<16>,
}

impl Entry {
    /// The rule ids of `rules`.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        rule_ids(self.rules)
    }

    /// p50, p95 and p99 in ms.
    pub fn percentiles_ms(&self) -> (f64, f64, f64) {
        let p = |q| self.histogram.percentile(q) as f64 / 1000.0;
        (p(0.5), p(0.95), p(0.99))
    }

    /// The call durations in microseconds, counted at bounds from 0.1 ms to 10 s.
    pub fn buckets(&self) -> &BoundCounts<16> {
        &self.buckets
    }
}

/// The rule ids of a bit set.
pub fn rule_ids(mask: u32) -> Vec<&'static str> {
    RULES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, r)| *r)
        .collect()
}

/// The bit set of rule ids.
pub fn rule_mask<'a>(ids: impl IntoIterator<Item = &'a str>) -> u32 {
    ids.into_iter()
        .filter_map(|id| RULES.iter().position(|r| *r == id))
        .fold(0, |mask, i| mask | (1 << i))
}

/// How `snapshot` sorts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Total time, largest first.
    TotalMs,
    /// Calls, most first.
    Calls,
    /// p95, largest first.
    P95Ms,
    /// Errors, most first.
    Errors,
}

impl SortBy {
    /// `totalMs`, `calls`, `p95Ms` or `errors`.
    pub fn from_name(name: &str) -> Option<SortBy> {
        match name {
            "totalMs" => Some(SortBy::TotalMs),
            "calls" => Some(SortBy::Calls),
            "p95Ms" => Some(SortBy::P95Ms),
            "errors" => Some(SortBy::Errors),
            _ => None,
        }
    }
}

/// One call to record.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    /// Duration in ms.
    pub duration_ms: f64,
    /// Rows, when known.
    pub rows: Option<u64>,
    /// Whether it failed.
    pub error: bool,
    /// The rules found in the statement (bit set).
    pub rules: u32,
}

/// The bounded table of fingerprints.
#[derive(Debug)]
pub struct StatsTable {
    entries: HashMap<u64, Entry>,
    max: usize,
    slow_ms: Option<f64>,
}

impl StatsTable {
    /// A table of at most `max` fingerprints; calls at or above `slow_ms` count as slow.
    pub fn new(max: usize, slow_ms: Option<f64>) -> Self {
        StatsTable {
            entries: HashMap::new(),
            max: max.max(1),
            slow_ms,
        }
    }

    /// Records a call of fingerprint `id`; `normalized` is asked for only when the fingerprint
    /// is new to the table. Returns whether the call was slow.
    pub fn record(&mut self, id: u64, normalized: impl FnOnce() -> String, call: Call) -> bool {
        if !self.entries.contains_key(&id) {
            if self.entries.len() >= self.max {
                if let Some(victim) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.calls)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&victim);
                }
            }
            self.entries.insert(
                id,
                Entry {
                    normalized: normalized().into_boxed_str(),
                    calls: 0,
                    errors: 0,
                    rows: 0,
                    total_ms: 0.0,
                    max_ms: 0.0,
                    slow: 0,
                    n_plus_one: 0,
                    rules: 0,
                    histogram: Histogram::new(),
                    buckets: BoundCounts::default(),
                },
            );
        }
        let entry = self.entries.get_mut(&id).expect("inserted above");
        let ms = if call.duration_ms.is_finite() && call.duration_ms > 0.0 {
            call.duration_ms
        } else {
            0.0
        };
        entry.calls += 1;
        entry.errors += call.error as u64;
        entry.rows += call.rows.unwrap_or(0);
        entry.total_ms += ms;
        entry.max_ms = entry.max_ms.max(ms);
        entry.rules |= call.rules;
        let micros = (ms * 1000.0).round() as u64;
        entry.histogram.record(micros);
        entry.buckets.record(micros);
        let slow = self.slow_ms.is_some_and(|limit| ms >= limit);
        entry.slow += slow as u64;
        slow
    }

    /// Counts an N+1 finding against fingerprint `id`.
    pub fn note_n_plus_one(&mut self, id: u64) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.n_plus_one += 1;
        }
    }

    /// The entry of `id`.
    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// Fingerprints held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no fingerprint is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `top` entries by `sort_by` (all when `top` is `None`), ties by fingerprint.
    pub fn snapshot(&self, top: Option<usize>, sort_by: SortBy) -> Vec<(u64, &Entry)> {
        let mut rows: Vec<(u64, &Entry, f64)> = self
            .entries
            .iter()
            .map(|(id, e)| {
                let key = match sort_by {
                    SortBy::TotalMs => e.total_ms,
                    SortBy::Calls => e.calls as f64,
                    SortBy::P95Ms => e.percentiles_ms().1,
                    SortBy::Errors => e.errors as f64,
                };
                (*id, e, key)
            })
            .collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        rows.truncate(top.unwrap_or(usize::MAX));
        rows.into_iter().map(|(id, e, _)| (id, e)).collect()
    }

    /// Forgets every fingerprint.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ms: f64) -> Call {
        Call {
            duration_ms: ms,
            rows: Some(1),
            error: false,
            rules: 0,
        }
    }

    #[test]
    fn figures_per_fingerprint() {
        let mut t = StatsTable::new(10, Some(100.0));
        for i in 1..=100 {
            t.record(1, || "SELECT ?".into(), call(i as f64));
        }
        assert!(t.record(
            1,
            || unreachable!(),
            Call {
                error: true,
                rows: None,
                ..call(250.0)
            }
        ));
        let e = t.get(1).unwrap();
        assert_eq!((e.calls, e.errors, e.rows, e.slow), (101, 1, 100, 2));
        assert_eq!(e.total_ms, 5050.0 + 250.0);
        assert_eq!(e.max_ms, 250.0);
        let (p50, p95, p99) = e.percentiles_ms();
        assert!((p50 - 51.0).abs() <= 51.0 / 16.0, "{p50}");
        assert!((p95 - 96.0).abs() <= 96.0 / 16.0, "{p95}");
        assert!((95.0..=106.0).contains(&p99), "{p99}");
    }

    #[test]
    fn bounded_least_called_dropped() {
        let mut t = StatsTable::new(2, None);
        t.record(1, || "a".into(), call(1.0));
        t.record(1, || "a".into(), call(1.0));
        t.record(2, || "b".into(), call(1.0));
        t.record(3, || "c".into(), call(1.0));
        assert_eq!(t.len(), 2);
        assert!(t.get(1).is_some() && t.get(2).is_none() && t.get(3).is_some());
    }

    #[test]
    fn sorted_snapshot() {
        let mut t = StatsTable::new(10, None);
        t.record(1, || "a".into(), call(50.0));
        t.record(2, || "b".into(), call(1.0));
        t.record(2, || "b".into(), call(1.0));
        t.record(
            3,
            || "c".into(),
            Call {
                error: true,
                ..call(5.0)
            },
        );
        let ids = |s: Vec<(u64, &Entry)>| s.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(t.snapshot(None, SortBy::TotalMs)), vec![1, 3, 2]);
        assert_eq!(ids(t.snapshot(Some(1), SortBy::Calls)), vec![2]);
        assert_eq!(ids(t.snapshot(Some(1), SortBy::Errors)), vec![3]);
        assert_eq!(ids(t.snapshot(None, SortBy::P95Ms))[0], 1);
    }

    #[test]
    fn rule_masks_round_trip() {
        let mask = rule_mask(["select-star", "large-offset", "no-such-rule"]);
        assert_eq!(rule_ids(mask), vec!["select-star", "large-offset"]);
    }
}
