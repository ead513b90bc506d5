//! The optimizer's state: the statistics table and the N+1 detector, fed together by batches
//! of recorded calls (the binding sends one batch per event-loop turn or per few hundred calls).

use super::fingerprint::Dialect;
use super::nplusone::{Detector, NPlusOne, NPlusOneConfig};
use super::stats::{Call, StatsTable};

/// One recorded call.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// The fingerprint.
    pub id: u64,
    /// The call.
    pub call: Call,
    /// The trace it ran in.
    pub trace_id: Option<&'a str>,
}

/// Statistics and N+1 detection together.
#[derive(Debug)]
pub struct Recorder {
    /// Per-fingerprint statistics.
    pub stats: StatsTable,
    /// The N+1 detector.
    pub n_plus_one: Detector,
}

impl Recorder {
    /// A recorder of at most `max_fingerprints` fingerprints.
    pub fn new(
        max_fingerprints: usize,
        slow_ms: Option<f64>,
        n_plus_one: NPlusOneConfig,
        dialect: Dialect,
    ) -> Self {
        Recorder {
            stats: StatsTable::new(max_fingerprints, slow_ms),
            n_plus_one: Detector::new(n_plus_one, dialect),
        }
    }

    /// Records one call; `normalized` gives the statement's text when it is needed (a
    /// fingerprint new to the table, or a new finding). Returns a new N+1 finding, if any.
    pub fn record(
        &mut self,
        record: Record<'_>,
        normalized: &mut dyn FnMut() -> String,
    ) -> Option<NPlusOne> {
        let mut known: Option<String> = None;
        self.stats.record(
            record.id,
            || {
                let text = normalized();
                known = Some(text.clone());
                text
            },
            record.call,
        );
        let trace_id = record.trace_id?;
        let stats = &self.stats;
        let finding = self.n_plus_one.record(
            trace_id,
            record.id,
            || match (known, stats.get(record.id)) {
                (Some(text), _) => text,
                (None, Some(entry)) => entry.normalized.to_string(),
                (None, None) => normalized(),
            },
            record.call.duration_ms,
        );
        if finding.is_some() {
            self.stats.note_n_plus_one(record.id);
        }
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_findings_together() {
        let config = NPlusOneConfig {
            threshold: 3,
            ..NPlusOneConfig::default()
        };
        let mut r = Recorder::new(100, Some(5.0), config, Dialect::Postgres);
        let mut asked = 0;
        let mut text = || {
            asked += 1;
            "SELECT name FROM users WHERE id = ?".to_string()
        };
        let mut found = Vec::new();
        for i in 0..5 {
            let call = Call {
                duration_ms: i as f64 + 1.0,
                rows: Some(1),
                error: false,
                rules: 0,
            };
            found.extend(r.record(
                Record {
                    id: 42,
                    call,
                    trace_id: Some("trace"),
                },
                &mut text,
            ));
        }
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].normalized, "SELECT name FROM users WHERE id = ?");
        assert_eq!(
            asked, 1,
            "the text is read once, when the fingerprint is new"
        );
        let e = r.stats.get(42).unwrap();
        assert_eq!((e.calls, e.slow, e.n_plus_one, e.rows), (5, 1, 1, 5));
    }
}
