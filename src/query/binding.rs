//! The JS class `QueryOptimizer` (the native half; `lib/query.js` adds the fingerprint cache,
//! the record buffer, events, `instrument` and `loader`).
//!
//! The facade crosses into this class only when the work pays for it: the first sight of a
//! statement (`_learn`: lex, normalize and hash, and parse for the rules when asked; one string
//! back), `analyze`, and one `_flush` per batch of recorded calls. A batch is a `Float64Array`
//! of [`RECORD_WIDTH`] numbers per call, beside two arrays of the calls' normalized texts and
//! trace ids; a text is read only when its fingerprint is new to the statistics table, so a
//! batch of known statements converts no string but the trace ids.

use std::cell::RefCell;

use napi::bindgen_prelude::*;
use napi::{Env, JsValue, Unknown};
use napi_derive::napi;

use super::fingerprint::{
    fingerprint, fingerprint_with, hex, parse_with, Dialect, Fingerprint, Limits, NotParsed,
};
use super::nplusone::{NPlusOne, NPlusOneConfig};
use super::optimizer::{Record, Recorder};
use super::rules::{analyze, parse_error, Finding, RuleConfig};
use super::stats::{rule_ids, rule_mask, Call, SortBy};
use crate::common::binding::{throw_invalid, HistogramSnapshot, OptionsReader};
use crate::common::error::{describe_number, integer_at_least, InvalidInput};

/// Options the constructor accepts; `cacheSize` and `cacheBytes` are read by the facade.
const OPTIONS: &[&str] = &[
    "dialect",
    "slowQueryMs",
    "nPlusOne",
    "maxTraces",
    "maxFingerprints",
    "maxFindings",
    "largeOffset",
    "maxParseBytes",
    "cacheSize",
    "cacheBytes",
];
const N_PLUS_ONE_OPTIONS: &[&str] = &["threshold", "minTotalMs"];

/// Numbers per recorded call in a batch: fingerprint high and low 32 bits, duration in ms,
/// rows (NaN when unknown), flags (1: error), rule bit set.
pub const RECORD_WIDTH: usize = 6;

fn integer_in(
    reader: &OptionsReader,
    name: &str,
    min: u64,
    max: u64,
) -> std::result::Result<Option<u64>, InvalidInput> {
    let Some(value) = reader.number(name)? else {
        return Ok(None);
    };
    let n = integer_at_least(&reader.path_of(name), value, min)?;
    if n > max {
        return Err(InvalidInput::option_range(format!(
            "{} must be at most {max}, received {n}",
            reader.path_of(name)
        )));
    }
    Ok(Some(n))
}

fn millis(
    reader: &OptionsReader,
    name: &str,
    allow_zero: bool,
) -> std::result::Result<Option<f64>, InvalidInput> {
    let Some(value) = reader.number(name)? else {
        return Ok(None);
    };
    if value.is_finite() && (value > 0.0 || (allow_zero && value == 0.0)) && value <= 1e12 {
        Ok(Some(value))
    } else {
        Err(InvalidInput::option_range(format!(
            "{} must be a finite number of milliseconds {} 0, received {}",
            reader.path_of(name),
            if allow_zero { ">=" } else { ">" },
            describe_number(value)
        )))
    }
}

struct Config {
    dialect: Dialect,
    limits: Limits,
    rules: RuleConfig,
    slow_ms: Option<f64>,
    max_fingerprints: usize,
    n_plus_one: NPlusOneConfig,
}

fn read_config(env: Env, options: Unknown) -> std::result::Result<Config, InvalidInput> {
    let mut config = Config {
        dialect: Dialect::Postgres,
        limits: Limits::default(),
        rules: RuleConfig::default(),
        slow_ms: None,
        max_fingerprints: 1000,
        n_plus_one: NPlusOneConfig::default(),
    };
    let Some(reader) = OptionsReader::open(env.raw(), options.raw(), "options", OPTIONS)? else {
        return Ok(config);
    };
    if let Some(name) = reader.string("dialect")? {
        config.dialect = Dialect::from_name(&name).ok_or_else(|| {
            InvalidInput::option_range(format!(
                "options.dialect must be one of postgres, mysql, sqlite, generic, received string \"{name}\""
            ))
        })?;
    }
    config.slow_ms = millis(&reader, "slowQueryMs", false)?;
    if let Some(n) = integer_in(&reader, "maxFingerprints", 1, 1_000_000)? {
        config.max_fingerprints = n as usize;
    }
    if let Some(n) = integer_in(&reader, "maxTraces", 1, 10_000_000)? {
        config.n_plus_one.max_traces = n as usize;
    }
    if let Some(n) = integer_in(&reader, "maxFindings", 1, 1_000_000)? {
        config.n_plus_one.max_findings = n as usize;
    }
    if let Some(n) = integer_in(&reader, "largeOffset", 0, u32::MAX as u64)? {
        config.rules.large_offset = n;
    }
    if let Some(n) = integer_in(&reader, "maxParseBytes", 0, 1 << 30)? {
        config.limits.max_parse_bytes = n as usize;
    }
    if let Some(nested) = reader.object("nPlusOne", N_PLUS_ONE_OPTIONS)? {
        if let Some(n) = integer_in(&nested, "threshold", 2, 1_000_000)? {
            config.n_plus_one.threshold = n as u32;
        }
        if let Some(ms) = millis(&nested, "minTotalMs", true)? {
            config.n_plus_one.min_total_ms = ms;
        }
    }
    Ok(config)
}

/// Where the normalized text starts in what `_learn` returns: 16 hex digits of the
/// fingerprint, then 8 hex digits of the rule bit set (`--------` when not analyzed), then the
/// operation (`SELECT`, `INSERT`, ..., ASCII letters, possibly none) and one space.
///
/// One string, because a statement's first sight crosses back with everything the facade keeps
/// about it: an object of seven properties cost more to build than the rest of the crossing.
pub const LEARNED_HEADER: usize = 24;

/// One anti-pattern finding.
#[napi(object)]
pub struct QueryFinding {
    /// The rule's stable id (see the README's rules table).
    pub rule: String,
    /// `error`, `warning` or `info`.
    pub severity: String,
    /// What was found.
    pub message: String,
    /// What to do instead.
    pub suggestion: String,
}

impl From<Finding> for QueryFinding {
    fn from(f: Finding) -> Self {
        QueryFinding {
            rule: f.rule.to_string(),
            severity: f.severity.as_str().to_string(),
            message: f.message,
            suggestion: f.suggestion,
        }
    }
}

/// One N+1 finding.
#[napi(object)]
pub struct NPlusOneFinding {
    /// The trace in which the statement repeated.
    pub trace_id: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Its normalized text.
    pub normalized: String,
    /// Runs in that trace (so far).
    pub count: f64,
    /// Their total time, ms.
    pub total_ms: f64,
    /// The batched form to use instead.
    pub suggestion: String,
}

impl From<&NPlusOne> for NPlusOneFinding {
    fn from(f: &NPlusOne) -> Self {
        NPlusOneFinding {
            trace_id: f.trace_id.clone(),
            fingerprint: hex(f.fingerprint),
            normalized: f.normalized.clone(),
            count: f.count as f64,
            total_ms: f.total_ms,
            suggestion: f.suggestion.clone(),
        }
    }
}

/// The statistics of one fingerprint.
#[napi(object)]
pub struct QueryStats {
    /// 16 hex digits.
    pub fingerprint: String,
    /// The normalized statement (never a literal value).
    pub normalized: String,
    /// Calls recorded.
    pub calls: f64,
    /// Of which failed.
    pub errors: f64,
    /// Rows returned or affected (where the driver said).
    pub rows: f64,
    /// Total time, ms.
    pub total_ms: f64,
    /// Mean time, ms.
    pub mean_ms: f64,
    /// Median, ms (within 1/16).
    pub p50_ms: f64,
    /// 95th percentile, ms (within 1/16).
    pub p95_ms: f64,
    /// 99th percentile, ms (within 1/16).
    pub p99_ms: f64,
    /// Longest call, ms.
    pub max_ms: f64,
    /// Calls at or above `slowQueryMs`.
    pub slow: f64,
    /// N+1 findings for this statement.
    pub n_plus_one: f64,
    /// Ids of the rules the statement broke.
    pub findings: Vec<String>,
    /// Call durations as a histogram (bounds from 0.1 ms to 10 s; the sum is `totalMs`).
    pub duration_histogram: HistogramSnapshot,
}

/// The SQL optimizer (the native class; see `index.d.ts`).
#[napi(js_name = "QueryOptimizer")]
pub struct QueryOptimizerBinding {
    dialect: Dialect,
    limits: Limits,
    rules: RuleConfig,
    recorder: RefCell<Recorder>,
}

/// The string `_learn` returns (see [`LEARNED_HEADER`]).
fn learned(fp: &Fingerprint, rules: Option<u32>) -> String {
    use std::fmt::Write;
    let mut out =
        String::with_capacity(LEARNED_HEADER + fp.operation.len() + 1 + fp.normalized.len());
    let _ = write!(out, "{:016x}", fp.id);
    match rules {
        Some(mask) => {
            let _ = write!(out, "{mask:08x}");
        }
        None => out.push_str("--------"),
    }
    out.push_str(&fp.operation);
    out.push(' ');
    out.push_str(&fp.normalized);
    out
}

/// Reads a JS string element of `array`, or `None`.
fn string_at(array: &Array, index: u32) -> Option<String> {
    array.get::<String>(index).ok().flatten()
}

#[napi]
impl QueryOptimizerBinding {
    /// Creates an optimizer; every option is validated and unknown options are refused.
    #[napi(constructor, ts_args_type = "options?: QueryOptimizerOptions")]
    pub fn new(env: Env, options: Unknown) -> Result<Self> {
        let config = read_config(env, options).map_err(|e| throw_invalid(env.raw(), e))?;
        Ok(QueryOptimizerBinding {
            dialect: config.dialect,
            limits: config.limits,
            rules: config.rules,
            recorder: RefCell::new(Recorder::new(
                config.max_fingerprints,
                config.slow_ms,
                config.n_plus_one,
                config.dialect,
            )),
        })
    }

    /// Internal: fingerprints `sql` from its tokens and, when `analyzeToo`, parses it for the
    /// rules it breaks; returns the fingerprint, rules, operation and normalized text in one
    /// string (see `LEARNED_HEADER`).
    #[napi(js_name = "_learn")]
    pub fn learn(&self, sql: String, analyze_too: bool) -> String {
        if !analyze_too {
            return learned(&fingerprint(&sql, self.dialect), None);
        }
        let rules = &self.rules;
        let (fp, findings, _) = fingerprint_with(&sql, self.dialect, &self.limits, |statements| {
            analyze(statements, rules)
        });
        let mask = match findings {
            Some(findings) => rule_mask(findings.iter().map(|f| f.rule)),
            None => rule_mask(["parse-error"]),
        };
        learned(&fp, Some(mask))
    }

    /// Internal: what `_learn(sql, false)` returns, for the dialect of code `dialect` (see
    /// `Dialect::from_code`). Static: a fingerprint needs nothing of an optimizer's state, and
    /// a static call skips unwrapping and borrowing the instance.
    #[napi(js_name = "_fingerprint")]
    pub fn fingerprint_in(sql: String, dialect: u32) -> String {
        learned(
            &fingerprint(&sql, Dialect::from_code(dialect).unwrap_or_default()),
            None,
        )
    }

    /// The anti-pattern findings of `sql` (see the README's rules table).
    #[napi(js_name = "_analyze")]
    pub fn analyze_sql(&self, sql: String) -> Vec<QueryFinding> {
        let rules = &self.rules;
        match parse_with(&sql, self.dialect, &self.limits, |statements| {
            analyze(&statements, rules)
        }) {
            Ok(findings) => findings.into_iter().map(QueryFinding::from).collect(),
            Err((NotParsed::Rejected(reason) | NotParsed::TooComplex(reason), _)) => {
                vec![parse_error(&reason).into()]
            }
        }
    }

    /// Internal: records a batch of `count` calls (see the module documentation); returns the
    /// N+1 findings the batch made.
    #[napi(js_name = "_flush")]
    pub fn flush(
        &self,
        records: Float64ArraySlice,
        count: u32,
        texts: Array,
        traces: Array,
    ) -> Vec<NPlusOneFinding> {
        let mut recorder = self.recorder.borrow_mut();
        let mut found = Vec::new();
        let numbers: &[f64] = &records;
        for i in 0..(count as usize).min(numbers.len() / RECORD_WIDTH) {
            let r = &numbers[i * RECORD_WIDTH..(i + 1) * RECORD_WIDTH];
            let id = ((r[0] as u64) << 32) | (r[1] as u64 & 0xffff_ffff);
            let rows = if r[3].is_finite() && r[3] >= 0.0 {
                Some(r[3] as u64)
            } else {
                None
            };
            let trace = string_at(&traces, i as u32).filter(|t| !t.is_empty());
            let call = Call {
                duration_ms: r[2],
                rows,
                error: r[4] as u32 & 1 != 0,
                rules: if r[5] >= 0.0 { r[5] as u32 } else { 0 },
            };
            let mut text = || string_at(&texts, i as u32).unwrap_or_default();
            if let Some(finding) = recorder.record(
                Record {
                    id,
                    call,
                    trace_id: trace.as_deref(),
                },
                &mut text,
            ) {
                found.push(NPlusOneFinding::from(&finding));
            }
        }
        found
    }

    /// Internal: per-fingerprint statistics, `top` of them by `sortBy`.
    #[napi(js_name = "_stats")]
    pub fn stats(&self, top: Option<u32>, sort_by: String) -> Vec<QueryStats> {
        let recorder = self.recorder.borrow();
        let sort = SortBy::from_name(&sort_by).unwrap_or(SortBy::TotalMs);
        recorder
            .stats
            .snapshot(top.map(|t| t as usize), sort)
            .into_iter()
            .map(|(id, e)| {
                let (p50, p95, p99) = e.percentiles_ms();
                QueryStats {
                    fingerprint: hex(id),
                    normalized: e.normalized.to_string(),
                    calls: e.calls as f64,
                    errors: e.errors as f64,
                    rows: e.rows as f64,
                    total_ms: e.total_ms,
                    mean_ms: if e.calls == 0 {
                        0.0
                    } else {
                        e.total_ms / e.calls as f64
                    },
                    p50_ms: p50,
                    p95_ms: p95,
                    p99_ms: p99,
                    max_ms: e.max_ms,
                    slow: e.slow as f64,
                    n_plus_one: e.n_plus_one as f64,
                    findings: rule_ids(e.rules).into_iter().map(str::to_string).collect(),
                    duration_histogram: HistogramSnapshot::of_micros(
                        e.buckets(),
                        e.total_ms,
                        e.calls,
                    ),
                }
            })
            .collect()
    }

    /// Internal: the N+1 findings kept, oldest first.
    #[napi(js_name = "_nPlusOne")]
    pub fn n_plus_one(&self) -> Vec<NPlusOneFinding> {
        self.recorder
            .borrow()
            .n_plus_one
            .findings()
            .map(NPlusOneFinding::from)
            .collect()
    }

    /// Internal: counts for the facade's `size` figures: fingerprints held, traces followed.
    #[napi(js_name = "_sizes")]
    pub fn sizes(&self) -> Vec<u32> {
        let recorder = self.recorder.borrow();
        vec![
            recorder.stats.len() as u32,
            recorder.n_plus_one.traces() as u32,
        ]
    }

    /// Internal: forgets statistics, traces and findings.
    #[napi(js_name = "_reset")]
    pub fn reset(&self) {
        let mut recorder = self.recorder.borrow_mut();
        recorder.stats.clear();
        recorder.n_plus_one.clear();
    }
}
