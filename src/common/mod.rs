//! Infrastructure shared by every block: injectable time, a latency histogram, the error kinds
//! with their stable JS codes, and (in `binding`) the one place where core errors become JS
//! errors and where JS arguments and options are read.

pub(crate) mod binding;
pub mod clock;
pub mod error;
pub mod histogram;
pub mod redis;
pub(crate) mod slots;
pub(crate) mod wtf8;

pub use clock::{Clock, ManualClock};
pub use error::{ErrorCode, InvalidInput, InvalidKind};
pub use histogram::Histogram;
