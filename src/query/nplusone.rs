//! N+1 detection: the same statement shape run again and again within one trace (one request),
//! the signature of a loop that queries once per row.
//!
//! Per trace, a count and a total time per fingerprint. When a fingerprint reaches `threshold`
//! runs (and `min_total_ms`, when set), that trace and fingerprint become one finding, reported
//! once; later runs in the same trace update the finding's count and time. Memory is bounded:
//! at most `max_traces` traces are followed (the oldest dropped), at most
//! `MAX_FINGERPRINTS_PER_TRACE` fingerprints per trace, and the newest `max_findings` findings are
//! kept.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::fingerprint::Dialect;

/// Fingerprints followed per trace; a trace that runs more distinct statements is not an N+1
/// suspect for the ones past this.
const MAX_FINGERPRINTS_PER_TRACE: usize = 256;

/// The detector's settings.
#[derive(Clone, Copy, Debug)]
pub struct NPlusOneConfig {
    /// Runs of one fingerprint in one trace that make a finding.
    pub threshold: u32,
    /// And their total time must reach this, in ms.
    pub min_total_ms: f64,
    /// Traces followed at once.
    pub max_traces: usize,
    /// Findings kept for `findings()`.
    pub max_findings: usize,
}

impl Default for NPlusOneConfig {
    fn default() -> Self {
        NPlusOneConfig {
            threshold: 5,
            min_total_ms: 0.0,
            max_traces: 10_000,
            max_findings: 1_000,
        }
    }
}

/// One N+1 finding.
#[derive(Clone, Debug, PartialEq)]
pub struct NPlusOne {
    /// The trace.
    pub trace_id: String,
    /// The fingerprint.
    pub fingerprint: u64,
    /// Its normalized statement.
    pub normalized: String,
    /// Runs in the trace so far.
    pub count: u64,
    /// Their total time, ms.
    pub total_ms: f64,
    /// The batched form to use instead.
    pub suggestion: String,
}

#[derive(Debug, Default)]
struct Counter {
    count: u64,
    total_ms: f64,
    /// Sequence number of its finding, once reported.
    finding: Option<u64>,
}

#[derive(Debug, Default)]
struct TraceState {
    counters: HashMap<u64, Counter>,
}

/// The detector.
#[derive(Debug)]
pub struct Detector {
    config: NPlusOneConfig,
    dialect: Dialect,
    traces: HashMap<Box<str>, TraceState>,
    /// Trace ids in the order they were first seen.
    order: VecDeque<Box<str>>,
    findings: VecDeque<NPlusOne>,
    /// Sequence number of `findings[0]`.
    first_seq: u64,
}

impl Detector {
    /// A detector with `config`; suggestions are written for `dialect`.
    pub fn new(config: NPlusOneConfig, dialect: Dialect) -> Self {
        Detector {
            config,
            dialect,
            traces: HashMap::new(),
            order: VecDeque::new(),
            findings: VecDeque::new(),
            first_seq: 0,
        }
    }

    /// Records a run of fingerprint `id` in trace `trace_id`; returns the new finding when this
    /// run makes one.
    pub fn record(
        &mut self,
        trace_id: &str,
        id: u64,
        normalized: impl FnOnce() -> String,
        duration_ms: f64,
    ) -> Option<NPlusOne> {
        if !self.traces.contains_key(trace_id) {
            while self.traces.len() >= self.config.max_traces.max(1) {
                match self.order.pop_front() {
                    Some(old) => {
                        self.traces.remove(&old);
                    }
                    None => break,
                }
            }
            let key: Box<str> = trace_id.into();
            self.order.push_back(key.clone());
            self.traces.insert(key, TraceState::default());
        }
        let state = self.traces.get_mut(trace_id).expect("inserted above");
        if !state.counters.contains_key(&id) && state.counters.len() >= MAX_FINGERPRINTS_PER_TRACE {
            return None;
        }
        let counter = state.counters.entry(id).or_default();
        counter.count += 1;
        if duration_ms.is_finite() && duration_ms > 0.0 {
            counter.total_ms += duration_ms;
        }
        if let Some(seq) = counter.finding {
            if seq >= self.first_seq {
                if let Some(f) = self.findings.get_mut((seq - self.first_seq) as usize) {
                    f.count = counter.count;
                    f.total_ms = counter.total_ms;
                }
            }
            return None;
        }
        if counter.count < self.config.threshold as u64
            || counter.total_ms < self.config.min_total_ms
        {
            return None;
        }
        let normalized = normalized();
        let finding = NPlusOne {
            trace_id: trace_id.to_string(),
            fingerprint: id,
            suggestion: suggestion(&normalized, self.dialect),
            normalized,
            count: counter.count,
            total_ms: counter.total_ms,
        };
        counter.finding = Some(self.first_seq + self.findings.len() as u64);
        self.findings.push_back(finding.clone());
        while self.findings.len() > self.config.max_findings.max(1) {
            self.findings.pop_front();
            self.first_seq += 1;
        }
        Some(finding)
    }

    /// The findings kept, oldest first.
    pub fn findings(&self) -> impl Iterator<Item = &NPlusOne> {
        self.findings.iter()
    }

    /// Traces followed now.
    pub fn traces(&self) -> usize {
        self.traces.len()
    }

    /// Forgets every trace and finding.
    pub fn clear(&mut self) {
        self.traces.clear();
        self.order.clear();
        self.first_seq += self.findings.len() as u64;
        self.findings.clear();
    }
}

/// The batched form of a statement run once per key: `WHERE col = ANY($1)` (or `IN (...)`), or
/// a loader.
pub fn suggestion(normalized: &str, dialect: Dialect) -> String {
    let column = normalized.find(" WHERE ").and_then(|w| {
        let rest = &normalized[w + 7..];
        let eq = rest.find(" = ?")?;
        let column = rest[..eq].rsplit([' ', '(']).next()?;
        (!column.is_empty()).then_some(column)
    });
    let batched = match (column, dialect) {
        (Some(c), Dialect::Postgres) => format!("WHERE {c} = ANY($1) with an array of the values"),
        (Some(c), _) => format!("WHERE {c} IN (...) with all the values"),
        (None, Dialect::Postgres) => {
            "one query for all the keys (WHERE key = ANY($1) with an array)".to_string()
        }
        (None, _) => "one query for all the keys (WHERE key IN (...))".to_string(),
    };
    format!("run it once for the whole set: {batched}, or batch the lookups with qo.loader()")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(threshold: u32, min_total_ms: f64, max_traces: usize) -> Detector {
        Detector::new(
            NPlusOneConfig {
                threshold,
                min_total_ms,
                max_traces,
                max_findings: 3,
            },
            Dialect::Postgres,
        )
    }

    #[test]
    fn a_finding_once_per_trace_and_fingerprint() {
        let mut d = detector(3, 0.0, 10);
        let q = || "SELECT * FROM users WHERE id = ?".to_string();
        assert!(d.record("t1", 7, q, 1.0).is_none());
        assert!(d.record("t1", 7, q, 1.0).is_none());
        assert!(d.record("t2", 7, q, 1.0).is_none());
        let f = d.record("t1", 7, q, 1.0).expect("third run in t1");
        assert_eq!((f.count, f.total_ms, f.fingerprint), (3, 3.0, 7));
        assert!(
            f.suggestion.contains("WHERE id = ANY($1)"),
            "{}",
            f.suggestion
        );
        assert!(d.record("t1", 7, q, 2.0).is_none());
        let kept: Vec<_> = d.findings().collect();
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].count, kept[0].total_ms), (4, 5.0));
        // another fingerprint in the same trace is counted apart
        assert!(d.record("t1", 8, q, 1.0).is_none());
    }

    #[test]
    fn min_total_ms_holds_back_cheap_repeats() {
        let mut d = detector(2, 10.0, 10);
        let q = || "x".to_string();
        assert!(d.record("t", 1, q, 1.0).is_none());
        assert!(d.record("t", 1, q, 1.0).is_none());
        assert!(d.record("t", 1, q, 9.0).is_some());
    }

    #[test]
    fn bounded_traces_and_findings() {
        let mut d = detector(1, 0.0, 2);
        for t in 0..10 {
            d.record(&format!("t{t}"), 1, || "x".into(), 1.0);
        }
        assert_eq!(d.traces(), 2);
        let kept: Vec<_> = d.findings().map(|f| f.trace_id.clone()).collect();
        assert_eq!(kept, vec!["t7", "t8", "t9"]);
        // an evicted trace starts again from zero
        assert!(d.record("t0", 1, || "x".into(), 1.0).is_some());
    }

    #[test]
    fn suggestions_per_dialect() {
        assert!(
            suggestion("SELECT name FROM users WHERE users.id = ?", Dialect::MySql)
                .contains("WHERE users.id IN (...)")
        );
        assert!(
            suggestion("SELECT name FROM users WHERE (id = ?)", Dialect::Postgres)
                .contains("WHERE id = ANY($1)")
        );
        assert!(suggestion("SELECT ?", Dialect::Postgres).contains("loader"));
    }
}
