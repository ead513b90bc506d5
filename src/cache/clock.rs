//! Wall-clock time in milliseconds since the Unix epoch, for expiry times that survive a
//! restart.
//!
//! `common::clock::Clock` is monotonic: its origin is the moment it was created, which means
//! nothing to the next process. Expiry times written to disk must be absolute, so the cache reads
//! wall-clock milliseconds instead. A cache built on a manual `Clock` reads the manual time as
//! nanoseconds since the epoch, so tests (Rust ones, and JS ones through `TestClock`) move the
//! cache's wall clock by hand, across a restart too.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::clock::{Clock, ManualClock, NANOS_PER_MS};

/// Milliseconds since the Unix epoch, from the system or from a manual clock.
#[derive(Clone, Debug)]
pub enum WallClock {
    /// `SystemTime::now()`; a system clock stepped backwards reads as no time passing.
    System,
    /// The manual clock's nanoseconds, read as nanoseconds since the epoch.
    Manual(ManualClock),
}

impl WallClock {
    /// The wall clock matching a block clock: the system's for a system clock, the same manual
    /// time for a manual one.
    pub fn from_clock(clock: &Clock) -> Self {
        match clock {
            Clock::System(_) => WallClock::System,
            Clock::Manual(manual) => WallClock::Manual(manual.clone()),
        }
    }

    /// Milliseconds since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match self {
            WallClock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            WallClock::Manual(manual) => manual.now_nanos() / NANOS_PER_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_wall_clock_moves_with_the_manual_clock() {
        let manual = ManualClock::new(5 * NANOS_PER_MS);
        let wall = WallClock::from_clock(&Clock::Manual(manual.clone()));
        assert_eq!(wall.now_ms(), 5);
        manual.advance(10 * NANOS_PER_MS);
        assert_eq!(wall.now_ms(), 15);
    }

    #[test]
    fn system_wall_clock_is_after_2020() {
        assert!(WallClock::from_clock(&Clock::system()).now_ms() > 1_577_836_800_000);
    }
}
