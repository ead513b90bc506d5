//! The query block: SQL fingerprints, anti-pattern rules, N+1 detection and per-query
//! statistics.
//!
//! Read in this order: `fingerprint` (normalize a statement's tokens and hash them; the
//! scanner and the normalization are in `tokens`; the parse the rules need), `rules` (the
//! anti-pattern rules over the syntax tree), `stats` (per-fingerprint figures), `nplusone` (the
//! same statement repeated within one trace), `optimizer` (the three together, fed by batches
//! of records), and last `binding` (the JS class).

pub(crate) mod binding;
pub mod fingerprint;
pub mod nplusone;
pub mod optimizer;
pub mod rules;
pub mod stats;
pub mod tokens;

pub use fingerprint::{
    fingerprint, fingerprint_with, hex, parse_with, Dialect, Fingerprint, Limits, NotParsed,
};
pub use nplusone::{Detector, NPlusOne, NPlusOneConfig};
pub use optimizer::{Record, Recorder};
pub use rules::{analyze, Finding, RuleConfig, Severity, RULES};
pub use stats::{Call, SortBy, StatsTable};
