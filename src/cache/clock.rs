//! Wall-clock time in milliseconds since the Unix epoch, for expiry times that survive a
//! restart.
//!
//! `common::clock::Clock` is monotonic: its origin is the moment it was created, which means
//! nothing to the next process. Expiry times written to disk must be absolute, so the cache reads
//! wall-clock milliseconds instead. A cache built on a manual `Clock` reads the manual time as
//! nanoseconds since the epoch, so tests (Rust ones, and JS ones through `TestClock`) move the
//! cache's wall clock by hand, across a restart too.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::clock::{Clock, ManualClock, NANOS_PER_MS};

/// How long the system wall clock is extrapolated from the monotonic clock before it is read
/// again.
const REANCHOR_NANOS: u64 = 1_000_000_000;

/// Milliseconds since the Unix epoch, from the system or from a manual clock.
#[derive(Clone, Debug)]
pub enum WallClock {
    /// The system's wall clock, read once a second and extrapolated in between on the block
    /// clock (a TSC read, where `SystemTime::now()` is a `clock_gettime` that cost 12% of a
    /// memory-tier hit); a system clock stepped backwards reads as no time passing.
    System(SystemWall),
    /// The manual clock's nanoseconds, read as nanoseconds since the epoch.
    Manual(ManualClock),
}

/// The system wall clock, extrapolated on a monotonic clock between readings.
#[derive(Clone, Debug)]
pub struct SystemWall {
    clock: Clock,
    /// The monotonic reading and the wall time (ms) at the last reading of the wall clock.
    anchor_nanos: Cell<u64>,
    anchor_ms: Cell<u64>,
}

fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SystemWall {
    fn new(clock: Clock) -> Self {
        let anchor_nanos = clock.now_nanos();
        SystemWall {
            clock,
            anchor_nanos: Cell::new(anchor_nanos),
            anchor_ms: Cell::new(system_now_ms()),
        }
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        let now = self.clock.now_nanos();
        let elapsed = now.saturating_sub(self.anchor_nanos.get());
        let extrapolated = self.anchor_ms.get() + elapsed / NANOS_PER_MS;
        if elapsed < REANCHOR_NANOS {
            return extrapolated;
        }
        // never backwards: a wall clock stepped back waits for the extrapolation to pass it
        let wall = system_now_ms().max(extrapolated);
        self.anchor_nanos.set(now);
        self.anchor_ms.set(wall);
        wall
    }
}

impl WallClock {
    /// The wall clock matching a block clock: the system's for a system clock, the same manual
    /// time for a manual one.
    pub fn from_clock(clock: &Clock) -> Self {
        match clock {
            Clock::System(_) => WallClock::System(SystemWall::new(clock.clone())),
            Clock::Manual(manual) => WallClock::Manual(manual.clone()),
        }
    }

    /// Milliseconds since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match self {
            WallClock::System(wall) => wall.now_ms(),
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

    #[test]
    fn the_extrapolated_wall_clock_stays_within_a_few_ms_of_the_system_clock() {
        let wall = WallClock::from_clock(&Clock::system());
        for _ in 0..1000 {
            let ours = wall.now_ms();
            let system = system_now_ms();
            assert!(ours.abs_diff(system) <= 5, "{ours} vs {system}");
        }
    }

    #[test]
    fn a_wall_clock_on_a_system_clock_never_goes_backwards() {
        let wall = WallClock::from_clock(&Clock::system());
        let mut last = wall.now_ms();
        for _ in 0..100_000 {
            let now = wall.now_ms();
            assert!(now >= last);
            last = now;
        }
    }
}
