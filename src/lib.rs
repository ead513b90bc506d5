//! bulwark: the building blocks every production Node service ends up needing, as one addon.
pub mod breaker;
pub mod cache;
pub mod common;
pub mod limiter;
pub mod query;
pub mod tracer;
