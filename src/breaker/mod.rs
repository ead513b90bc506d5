//! The circuit breaker block: a state machine (closed, open, half-open, and the manual forced-open
//! and disabled states) over a sliding window of call outcomes, time-based or count-based.
//!
//! Read in this order: `window` (the two windows, O(1) per call), `circuit` (the state machine
//! and its thresholds), and last `binding` (the JS class and its two hot-path crossings).

pub(crate) mod binding;
pub mod circuit;
pub mod window;

pub use circuit::{
    BreakerConfig, CircuitBreaker, Outcome, Permit, Snapshot, State, Totals, WindowKind,
};
pub use window::{CountWindow, SlidingWindow, TimeWindow, WindowCounts};
