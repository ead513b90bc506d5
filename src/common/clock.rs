//! Time for every block, injectable so that tests drive it by hand.
//!
//! Cores never call `Instant::now()` themselves: they hold a [`Clock`] and read
//! [`Clock::now_nanos`], a monotonic count of nanoseconds since the clock's origin. The system
//! clock is a thin wrapper over `Instant`; the manual clock only moves when told to, which is how
//! Rust tests (and JS tests, through the exported `TestClock`) check refills, timeouts and queue
//! order without sleeping.
//!
//! Reading the system clock (`Instant::now`, a vDSO `clock_gettime`) costs about 28 ns here,
//! more than half of a rate-limit decision. Where the processor has an invariant time-stamp
//! counter that the kernel itself uses as its clock source, [`SystemClock`] reads the counter
//! instead (about 10 ns) and converts ticks to nanoseconds with a rate it keeps measuring against
//! `Instant`: it re-anchors on the real clock every 2^23 ticks (a few milliseconds), and its rate
//! is measured over its whole life, so its error stays within microseconds. Elsewhere it reads `Instant`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Nanoseconds in one millisecond.
pub const NANOS_PER_MS: u64 = 1_000_000;

/// A monotonic time source.
#[derive(Clone, Debug)]
pub enum Clock {
    /// Real time, measured from the moment the clock was created.
    System(Arc<SystemClock>),
    /// Time that moves only when [`ManualClock::advance`] or [`ManualClock::set`] is called.
    Manual(ManualClock),
}

impl Clock {
    /// A real-time clock whose origin is now.
    pub fn system() -> Self {
        Clock::System(Arc::new(SystemClock::new()))
    }

    /// Nanoseconds since the clock's origin.
    #[inline]
    pub fn now_nanos(&self) -> u64 {
        match self {
            Clock::System(system) => system.now_nanos(),
            Clock::Manual(manual) => manual.now_nanos(),
        }
    }
}

/// Ticks between two re-anchorings on the real clock (about 3 ms at 3 GHz). The rate is
/// measured from the clock's first reading, so it only gets more exact as the clock ages; what
/// a re-anchoring bounds is the error of the first milliseconds' estimate.
const REANCHOR_TICKS: u64 = 1 << 23;

/// How far extrapolated time may run ahead of the real clock before a re-anchoring steps back.
const MAX_LEAD_NANOS: u64 = 1_000_000;

/// Real time since creation, from the time-stamp counter where that is safe, else `Instant`.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
    /// `None` where the counter is not known to be invariant and in use by the kernel.
    counter: Option<CounterState>,
}

#[derive(Debug)]
struct CounterState {
    /// Counter value and clock nanoseconds at the first reading.
    first_tick: u64,
    /// Counter value and nanoseconds of the last anchor on the real clock.
    anchor_tick: AtomicU64,
    anchor_nanos: AtomicU64,
    /// Nanoseconds per tick (f64 bits), measured from the first reading to the last anchor.
    nanos_per_tick: AtomicU64,
}

/// Whether the time-stamp counter can stand in for the system clock: it must run at a constant
/// rate in every power state, and the kernel must be using it as its own clock source (which
/// it only does when the counters of all cores agree).
fn counter_is_trustworthy() -> bool {
    static TRUSTED: OnceLock<bool> = OnceLock::new();
    *TRUSTED.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            return false;
        }
        let source = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let flags = cpuinfo
            .lines()
            .find(|line| line.starts_with("flags"))
            .unwrap_or_default();
        let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
        source.trim() == "tsc" && has("constant_tsc") && has("nonstop_tsc")
    })
}

#[inline]
fn read_counter() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions; it is only used where it was found trustworthy.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Reads the real clock between two counter readings and returns the nanoseconds with the
/// counter value at their midpoint; retried when something (preemption, an interrupt) came
/// between the readings, so that the pair is tight.
fn bracketed_pair(origin: Instant) -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..5 {
        let before = read_counter();
        let nanos = origin.elapsed().as_nanos() as u64;
        let after = read_counter();
        let width = after.wrapping_sub(before);
        if width < best.0 {
            best = (width, nanos, before.wrapping_add(width / 2));
        }
        if width < 200 {
            break;
        }
    }
    (best.1, best.2)
}

impl SystemClock {
    /// A clock whose origin is now. Where the counter is used, this spends about 50 us
    /// measuring its first rate.
    pub fn new() -> Self {
        if !counter_is_trustworthy() {
            return SystemClock {
                origin: Instant::now(),
                counter: None,
            };
        }
        let origin = Instant::now();
        let (first_nanos, first_tick) = bracketed_pair(origin);
        // a first rate over a short spin, between two tight pairs; every re-anchoring refines it
        while origin.elapsed().as_nanos() < 50_000 {
            std::hint::spin_loop();
        }
        let (nanos, tick) = bracketed_pair(origin);
        let ticks = tick.wrapping_sub(first_tick).max(1);
        let rate = (nanos - first_nanos) as f64 / ticks as f64;
        SystemClock {
            origin,
            counter: Some(CounterState {
                first_tick: first_tick.wrapping_sub((first_nanos as f64 / rate) as u64),
                anchor_tick: AtomicU64::new(tick),
                anchor_nanos: AtomicU64::new(nanos),
                nanos_per_tick: AtomicU64::new(rate.to_bits()),
            }),
        }
    }

    /// Nanoseconds since creation.
    #[inline]
    pub fn now_nanos(&self) -> u64 {
        let Some(counter) = &self.counter else {
            return self.origin.elapsed().as_nanos() as u64;
        };
        let tick = read_counter();
        let since_anchor = tick.wrapping_sub(counter.anchor_tick.load(Ordering::Relaxed));
        if since_anchor < REANCHOR_TICKS {
            let rate = f64::from_bits(counter.nanos_per_tick.load(Ordering::Relaxed));
            counter.anchor_nanos.load(Ordering::Relaxed) + (since_anchor as f64 * rate) as u64
        } else {
            self.reanchor(counter, tick)
        }
    }

    #[cold]
    fn reanchor(&self, counter: &CounterState, _tick: u64) -> u64 {
        let (real, tick) = bracketed_pair(self.origin);
        // Readings since the last anchor were extrapolated with the rate known then; where that
        // ran ahead of the real clock, keep to it rather than step back. Only durations between
        // readings matter, so a small constant lead is harmless, and the refined rate stops it
        // from growing. The first rate comes from a 50 us spin and can be off by a few percent
        // on a loaded machine, so the lead may reach tens of microseconds over one anchor
        // period; only a lead beyond a millisecond (a counter that cannot be trusted after all)
        // gives way to the real clock.
        let rate = f64::from_bits(counter.nanos_per_tick.load(Ordering::Relaxed));
        let since_anchor = tick.wrapping_sub(counter.anchor_tick.load(Ordering::Relaxed));
        let extrapolated =
            counter.anchor_nanos.load(Ordering::Relaxed) + (since_anchor as f64 * rate) as u64;
        let nanos = if extrapolated > real && extrapolated - real < MAX_LEAD_NANOS {
            extrapolated
        } else {
            real
        };
        let ticks = tick.wrapping_sub(counter.first_tick);
        if ticks > 0 {
            counter
                .nanos_per_tick
                .store((nanos as f64 / ticks as f64).to_bits(), Ordering::Relaxed);
        }
        counter.anchor_nanos.store(nanos, Ordering::Relaxed);
        counter.anchor_tick.store(tick, Ordering::Relaxed);
        nanos
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
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
    fn system_clock_tracks_real_time_closely() {
        let clock = Clock::system();
        let origin = Instant::now();
        let mut previous = clock.now_nanos();
        let mut worst_gap = 0i64;
        while origin.elapsed().as_millis() < 30 {
            let reference_before = origin.elapsed().as_nanos() as i64;
            let now = clock.now_nanos();
            let reference_after = origin.elapsed().as_nanos() as i64;
            // never more than a microsecond backwards between readings
            assert!(
                now + 1_000 >= previous,
                "went back from {previous} to {now}"
            );
            assert!(now >= previous, "went back from {previous} to {now}");
            previous = now;
            // within 50 us of the real clock (the clock's origin is a little earlier)
            let gap = if (now as i64) < reference_before {
                reference_before - now as i64
            } else {
                (now as i64 - reference_after).max(0)
            };
            worst_gap = worst_gap.max(gap);
        }
        assert!(
            worst_gap < 50_000 + 100_000,
            "drifted {worst_gap} ns from Instant"
        );
    }
}
