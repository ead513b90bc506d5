//! Time for every block, injectable so that tests drive it by hand.
//!
//! Cores never call `Instant::now()` themselves: they hold a [`Clock`] and read
//! [`Clock::now_nanos`], a monotonic count of nanoseconds since the clock's origin. The system
//! clock is a thin wrapper over `Instant`; the manual clock only moves when told to, which is how
//! Rust tests (and JS tests, through the exported `TestClock`) check refills, timeouts and queue
//! order without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Nanoseconds in one millisecond.
pub const NANOS_PER_MS: u64 = 1_000_000;

/// A monotonic time source.
#[derive(Clone, Debug)]
pub enum Clock {
    /// Real time, measured from the moment the clock was created.
    System(Instant),
    /// Time that moves only when [`ManualClock::advance`] or [`ManualClock::set`] is called.
    Manual(ManualClock),
}

impl Clock {
    /// A real-time clock whose origin is now.
    pub fn system() -> Self {
        Clock::System(Instant::now())
    }

    /// Nanoseconds since the clock's origin.
    #[inline]
    pub fn now_nanos(&self) -> u64 {
        match self {
            Clock::System(origin) => origin.elapsed().as_nanos() as u64,
            Clock::Manual(manual) => manual.now_nanos(),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

/// A clock moved by hand; clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock that starts at `start_nanos`.
    pub fn new(start_nanos: u64) -> Self {
        ManualClock {
            nanos: Arc::new(AtomicU64::new(start_nanos)),
        }
    }

    /// The current manual time in nanoseconds.
    #[inline]
    pub fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }

    /// Moves time forward by `nanos`.
    pub fn advance(&self, nanos: u64) {
        self.nanos.fetch_add(nanos, Ordering::AcqRel);
    }

    /// Sets the time; a manual clock may be set backwards, which cores treat as no time passing.
    pub fn set(&self, nanos: u64) {
        self.nanos.store(nanos, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let manual = ManualClock::new(5);
        let clock = Clock::Manual(manual.clone());
        assert_eq!(clock.now_nanos(), 5);
        manual.advance(10);
        assert_eq!(clock.now_nanos(), 15);
        manual.set(3);
        assert_eq!(clock.now_nanos(), 3);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = Clock::system();
        let a = clock.now_nanos();
        let b = clock.now_nanos();
        assert!(b >= a);
    }
}
