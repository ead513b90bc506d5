//! The sliding windows a breaker measures its calls over, with O(1) updates and snapshots.
//!
//! Each window keeps running totals beside its slots, so recording a call and reading the
//! counts never walk the window:
//!
//! - [`CountWindow`]: the last `size` calls, one byte of flags per call in a ring; recording a
//!   call into a full ring subtracts the call it replaces.
//! - [`TimeWindow`]: one bucket per second; the window is the current second's bucket and the
//!   `buckets - 1` before it. Moving into a new second clears the buckets that fell out, which
//!   costs one step per second that passed (at most the bucket count, after a long idle spell),
//!   so a call costs O(1) amortized.

/// Calls, failures and slow calls in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Calls recorded.
    pub calls: u64,
    /// Of which failed (including timeouts).
    pub failures: u64,
    /// Of which took longer than the slow-call threshold.
    pub slow: u64,
}

impl WindowCounts {
    /// Failures over calls; 0 for an empty window.
    pub fn failure_rate(&self) -> f64 {
        rate(self.failures, self.calls)
    }

    /// Slow calls over calls; 0 for an empty window.
    pub fn slow_rate(&self) -> f64 {
        rate(self.slow, self.calls)
    }

    pub(crate) fn add(&mut self, failed: bool, slow: bool) {
        self.calls += 1;
        self.failures += failed as u64;
        self.slow += slow as u64;
    }
}

/// `part / whole`, 0 when `whole` is 0.
pub fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

const FAILED: u8 = 1;
const SLOW: u8 = 2;

/// The last `size` calls.
#[derive(Clone, Debug)]
pub struct CountWindow {
    /// Flags of each call (`FAILED`, `SLOW`), oldest overwritten first.
    slots: Box<[u8]>,
    /// Where the next call goes.
    next: usize,
    /// Slots in use (grows to `slots.len()`, then stays).
    filled: usize,
    counts: WindowCounts,
}

impl CountWindow {
    /// A window of the last `size` calls (`size` >= 1).
    pub fn new(size: usize) -> Self {
        CountWindow {
            slots: vec![0; size.max(1)].into_boxed_slice(),
            next: 0,
            filled: 0,
            counts: WindowCounts::default(),
        }
    }

    /// Records one call.
    pub fn record(&mut self, failed: bool, slow: bool) {
        if self.filled == self.slots.len() {
            let old = self.slots[self.next];
            self.counts.calls -= 1;
            self.counts.failures -= (old & FAILED != 0) as u64;
            self.counts.slow -= (old & SLOW != 0) as u64;
        } else {
            self.filled += 1;
        }
        self.slots[self.next] = (failed as u8 * FAILED) | (slow as u8 * SLOW);
        self.next += 1;
        if self.next == self.slots.len() {
            self.next = 0;
        }
        self.counts.add(failed, slow);
    }

    /// The counts over the window.
    pub fn counts(&self) -> WindowCounts {
        self.counts
    }

    /// Forgets every call.
    pub fn clear(&mut self) {
        self.slots.fill(0);
        self.next = 0;
        self.filled = 0;
        self.counts = WindowCounts::default();
    }
}

/// Calls in one second.
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    calls: u32,
    failures: u32,
    slow: u32,
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The calls of the current second and the `buckets - 1` seconds before it.
#[derive(Clone, Debug)]
pub struct TimeWindow {
    buckets: Box<[Bucket]>,
    /// The latest second (since the clock's origin) the window has moved to.
    head: u64,
    counts: WindowCounts,
}

impl TimeWindow {
    /// A window of `buckets` one-second buckets (`buckets` >= 1).
    pub fn new(buckets: usize) -> Self {
        TimeWindow {
            buckets: vec![Bucket::default(); buckets.max(1)].into_boxed_slice(),
            head: 0,
            counts: WindowCounts::default(),
        }
    }

    /// Moves the window to the second holding `now_nanos`, dropping the seconds that fell out.
    /// Time going backwards (a manual clock set back) counts as no time passing.
    fn advance(&mut self, now_nanos: u64) {
        let second = now_nanos / NANOS_PER_SECOND;
        if second <= self.head {
            return;
        }
        let len = self.buckets.len() as u64;
        if second - self.head >= len {
            self.buckets.fill(Bucket::default());
            self.counts = WindowCounts::default();
        } else {
            for s in self.head + 1..=second {
                let bucket = &mut self.buckets[(s % len) as usize];
                self.counts.calls -= bucket.calls as u64;
                self.counts.failures -= bucket.failures as u64;
                self.counts.slow -= bucket.slow as u64;
                *bucket = Bucket::default();
            }
        }
        self.head = second;
    }

    /// Records one call that ended at `now_nanos`.
    pub fn record(&mut self, now_nanos: u64, failed: bool, slow: bool) {
        self.advance(now_nanos);
        let len = self.buckets.len() as u64;
        let bucket = &mut self.buckets[(self.head % len) as usize];
        bucket.calls = bucket.calls.saturating_add(1);
        bucket.failures = bucket.failures.saturating_add(failed as u32);
        bucket.slow = bucket.slow.saturating_add(slow as u32);
        self.counts.add(failed, slow);
    }

    /// The counts over the window at `now_nanos`.
    pub fn counts(&mut self, now_nanos: u64) -> WindowCounts {
        self.advance(now_nanos);
        self.counts
    }

    /// Forgets every call.
    pub fn clear(&mut self) {
        self.buckets.fill(Bucket::default());
        self.counts = WindowCounts::default();
    }
}

/// The window a breaker was configured with.
#[derive(Clone, Debug)]
pub enum SlidingWindow {
    /// One-second buckets.
    Time(TimeWindow),
    /// The last N calls.
    Count(CountWindow),
}

impl SlidingWindow {
    /// Records one call that ended at `now_nanos`.
    #[inline]
    pub fn record(&mut self, now_nanos: u64, failed: bool, slow: bool) {
        match self {
            SlidingWindow::Time(w) => w.record(now_nanos, failed, slow),
            SlidingWindow::Count(w) => w.record(failed, slow),
        }
    }

    /// The counts over the window at `now_nanos`.
    #[inline]
    pub fn counts(&mut self, now_nanos: u64) -> WindowCounts {
        match self {
            SlidingWindow::Time(w) => w.counts(now_nanos),
            SlidingWindow::Count(w) => w.counts(),
        }
    }

    /// Forgets every call.
    pub fn clear(&mut self) {
        match self {
            SlidingWindow::Time(w) => w.clear(),
            SlidingWindow::Count(w) => w.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = NANOS_PER_SECOND;

    #[test]
    fn count_window_keeps_the_last_calls() {
        let mut w = CountWindow::new(3);
        w.record(true, false);
        w.record(false, true);
        assert_eq!(
            w.counts(),
            WindowCounts {
                calls: 2,
                failures: 1,
                slow: 1
            }
        );
        w.record(false, false);
        w.record(false, false); // replaces the failure
        assert_eq!(
            w.counts(),
            WindowCounts {
                calls: 3,
                failures: 0,
                slow: 1
            }
        );
        w.record(true, true); // replaces the slow call
        assert_eq!(
            w.counts(),
            WindowCounts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        assert!((w.counts().failure_rate() - 1.0 / 3.0).abs() < 1e-12);
        w.clear();
        assert_eq!(w.counts(), WindowCounts::default());
        assert_eq!(w.counts().failure_rate(), 0.0);
    }

    #[test]
    fn time_window_drops_seconds_that_fall_out() {
        let mut w = TimeWindow::new(3);
        w.record(0, true, false); // second 0
        w.record(S + 10, false, false); // second 1
        w.record(2 * S, false, true); // second 2
        assert_eq!(w.counts(2 * S + S / 2).calls, 3);
        // at second 3, second 0 (the failure) falls out
        let c = w.counts(3 * S);
        assert_eq!((c.calls, c.failures, c.slow), (2, 0, 1));
        // at second 5, only second 3.. remain: nothing recorded there
        assert_eq!(w.counts(5 * S).calls, 0);
        // a long idle spell clears everything at once
        w.record(5 * S, true, true);
        assert_eq!(w.counts(1_000 * S), WindowCounts::default());
    }

    #[test]
    fn time_window_ignores_time_going_back() {
        let mut w = TimeWindow::new(2);
        w.record(10 * S, true, false);
        w.record(3 * S, false, false); // counted in the current second
        assert_eq!(w.counts(10 * S).calls, 2);
        assert_eq!(w.counts(11 * S).calls, 2);
        assert_eq!(w.counts(12 * S).calls, 0);
    }

    proptest! {
        /// A count window's counts equal those of the last `size` calls.
        #[test]
        fn count_window_matches_a_naive_list(
            size in 1usize..20,
            calls in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..200),
        ) {
            let mut w = CountWindow::new(size);
            for (i, &(failed, slow)) in calls.iter().enumerate() {
                w.record(failed, slow);
                let from = (i + 1).saturating_sub(size);
                let last = &calls[from..=i];
                let expected = WindowCounts {
                    calls: last.len() as u64,
                    failures: last.iter().filter(|c| c.0).count() as u64,
                    slow: last.iter().filter(|c| c.1).count() as u64,
                };
                prop_assert_eq!(w.counts(), expected);
            }
        }

        /// A time window's counts equal those of the calls in the current second and the
        /// `buckets - 1` before it.
        #[test]
        fn time_window_matches_a_naive_list(
            buckets in 1usize..8,
            steps in proptest::collection::vec((0u64..3_000, any::<bool>(), any::<bool>()), 0..200),
        ) {
            let mut w = TimeWindow::new(buckets);
            let mut now = 0u64;
            let mut seen: Vec<(u64, bool, bool)> = Vec::new();
            for &(advance_ms, failed, slow) in &steps {
                now += advance_ms * 1_000_000;
                w.record(now, failed, slow);
                seen.push((now / S, failed, slow));
                let head = now / S;
                let inside = seen.iter().filter(|c| c.0 + buckets as u64 > head);
                let expected = inside.fold(WindowCounts::default(), |mut acc, c| {
                    acc.add(c.1, c.2);
                    acc
                });
                prop_assert_eq!(w.counts(now), expected);
            }
        }
    }
}
