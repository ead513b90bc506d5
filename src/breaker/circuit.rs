//! The breaker's state machine: closed, open, half-open, and the two manual states.
//!
//! A call makes two steps: [`CircuitBreaker::acquire`] before it (may it pass?) and
//! [`CircuitBreaker::record`] after it (its outcome and duration). Both read the injected clock
//! and apply the transitions that time alone causes (open -> half-open after `open_nanos`,
//! half-open -> open after `half_open_max_wait_nanos`), so the breaker needs no timer: time-driven
//! transitions happen at the next call or look. Every operation makes at most one transition,
//! so the binding can report "the state changed" as one event.
//!
//! A permit carries a ticket: the generation of the state it was granted in. Every transition
//! starts a new generation, so an outcome that arrives after the state moved on (a closed-state
//! call that ends after the breaker opened, a probe that ends after half-open timed out) is
//! counted in the totals but not in the window or the probes of a state it was not admitted by.

use super::window::{rate, CountWindow, SlidingWindow, TimeWindow, WindowCounts};
use crate::common::Clock;

/// Which window the breaker measures over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// This many one-second buckets.
    Time {
        /// Buckets (seconds), >= 1.
        buckets: usize,
    },
    /// The last `size` calls.
    Count {
        /// Calls, >= 1.
        size: usize,
    },
}

/// A breaker's settings, validated by the binding.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Opens when the window's failure rate reaches this, in (0, 1].
    pub failure_rate_threshold: f64,
    /// Opens when the window's slow-call rate reaches this, in (0, 1] (only with `slow_call_nanos`).
    pub slow_call_rate_threshold: f64,
    /// Calls longer than this are slow; `None`: no call is slow.
    pub slow_call_nanos: Option<u64>,
    /// The window must hold at least this many calls before the rates can open the breaker.
    pub minimum_calls: u64,
    /// The sliding window.
    pub window: WindowKind,
    /// How long the breaker stays open before letting probes through.
    pub open_nanos: u64,
    /// Probe calls admitted per half-open spell.
    pub half_open_max_calls: u32,
    /// The longest a half-open spell lasts; then the breaker opens again.
    pub half_open_max_wait_nanos: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 1.0,
            slow_call_nanos: None,
            minimum_calls: 10,
            window: WindowKind::Time { buckets: 10 },
            open_nanos: 30_000_000_000,
            half_open_max_calls: 1,
            half_open_max_wait_nanos: 30_000_000_000,
        }
    }
}

/// The states, with the codes the binding shares with JS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Calls pass and are measured.
    Closed = 0,
    /// Calls are refused until `open_nanos` have passed.
    Open = 1,
    /// Up to `half_open_max_calls` probes pass; their outcome closes or reopens the breaker.
    HalfOpen = 2,
    /// Opened by hand: calls are refused until `reset()`.
    ForcedOpen = 3,
    /// Disabled by hand: calls always pass and are still measured, nothing opens it.
    Disabled = 4,
}

/// The outcome of a call, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded (or failed in a way that does not count, per `isFailure`).
    Success,
    /// It failed.
    Failure,
    /// It took longer than `timeoutMs`: a failure, also counted as a timeout.
    Timeout,
}

impl Outcome {
    /// From the code JS passes (0 success, 1 failure, 2 timeout); anything else is a failure.
    pub fn from_code(code: f64) -> Self {
        if code == 0.0 {
            Outcome::Success
        } else if code == 2.0 {
            Outcome::Timeout
        } else {
            Outcome::Failure
        }
    }

    fn failed(self) -> bool {
        self != Outcome::Success
    }
}

/// The answer of [`CircuitBreaker::acquire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// The call may go; hand `ticket` and `start_nanos` back to `record`.
    Allowed {
        /// The generation the permit was granted in (>= 1).
        ticket: u64,
        /// When the call started, on the breaker's clock.
        start_nanos: u64,
    },
    /// The call is refused.
    Refused {
        /// When trying again may succeed; `None` while forced open (only `reset` ends that).
        retry_after_nanos: Option<u64>,
    },
}

/// Counters since the breaker was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Calls that ran and were recorded.
    pub calls: u64,
    /// Of which failed (timeouts included).
    pub failures: u64,
    /// Of which were slow.
    pub slow_calls: u64,
    /// Of which timed out.
    pub timeouts: u64,
    /// Calls refused without running.
    pub rejected: u64,
}

/// A snapshot for `stats()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    /// The state now.
    pub state: State,
    /// Counters since creation.
    pub totals: Totals,
    /// The window's counts now.
    pub window: WindowCounts,
    /// When the last transition happened (the creation time before any), on the clock.
    pub last_transition_nanos: u64,
    /// Transitions since creation.
    pub transitions: u64,
}

/// A circuit breaker's state and measurements.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Clock,
    state: State,
    /// Bumped on every transition; permits carry it as their ticket.
    generation: u64,
    window: SlidingWindow,
    /// Open: when the breaker half-opens.
    open_until: u64,
    /// Half-open: when the spell started, probes admitted, and the outcomes reported so far.
    half_open_since: u64,
    probes_admitted: u32,
    probe_outcomes: WindowCounts,
    totals: Totals,
    last_transition_nanos: u64,
    transitions: u64,
    /// Duration of the last recorded call.
    last_duration_nanos: u64,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, clock: Clock) -> Self {
        let window = match config.window {
            WindowKind::Time { buckets } => SlidingWindow::Time(TimeWindow::new(buckets)),
            WindowKind::Count { size } => SlidingWindow::Count(CountWindow::new(size)),
        };
        let now = clock.now_nanos();
        CircuitBreaker {
            config,
            clock,
            state: State::Closed,
            generation: 1,
            window,
            open_until: 0,
            half_open_since: 0,
            probes_admitted: 0,
            probe_outcomes: WindowCounts::default(),
            totals: Totals::default(),
            last_transition_nanos: now,
            transitions: 0,
            last_duration_nanos: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Transitions since creation (the binding compares it to see whether the state changed).
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// Duration of the last recorded call, in nanoseconds.
    pub fn last_duration_nanos(&self) -> u64 {
        self.last_duration_nanos
    }

    /// The state, without applying what time has done (see [`CircuitBreaker::sync`]).
    pub fn state(&self) -> State {
        self.state
    }

    fn transition(&mut self, to: State, now: u64) {
        self.state = to;
        self.generation += 1;
        self.transitions += 1;
        self.last_transition_nanos = now;
        match to {
            State::Open => self.open_until = now.saturating_add(self.config.open_nanos),
            State::HalfOpen => {
                self.half_open_since = now;
                self.probes_admitted = 0;
                self.probe_outcomes = WindowCounts::default();
            }
            State::Closed => self.window.clear(),
            State::ForcedOpen | State::Disabled => {}
        }
    }

    /// Applies the transitions time causes at `now`; true when the state changed.
    pub fn sync_at(&mut self, now: u64) -> bool {
        match self.state {
            State::Open if now >= self.open_until => {
                self.transition(State::HalfOpen, now);
                true
            }
            State::HalfOpen
                if now.saturating_sub(self.half_open_since)
                    >= self.config.half_open_max_wait_nanos =>
            {
                self.transition(State::Open, now);
                true
            }
            _ => false,
        }
    }

    /// [`CircuitBreaker::sync_at`] on the clock.
    pub fn sync(&mut self) -> bool {
        let now = self.clock.now_nanos();
        self.sync_at(now)
    }

    /// May a call start at `now`?
    pub fn acquire_at(&mut self, now: u64) -> Permit {
        self.sync_at(now);
        let allowed = match self.state {
            State::Closed | State::Disabled => true,
            State::HalfOpen if self.probes_admitted < self.config.half_open_max_calls => {
                self.probes_admitted += 1;
                true
            }
            _ => false,
        };
        if allowed {
            return Permit::Allowed {
                ticket: self.generation,
                start_nanos: now,
            };
        }
        self.totals.rejected += 1;
        let retry_after_nanos = match self.state {
            State::Open => Some(self.open_until - now),
            // the probes' outcome is known by the end of the spell at the latest
            State::HalfOpen => Some(
                (self.half_open_since + self.config.half_open_max_wait_nanos).saturating_sub(now),
            ),
            _ => None,
        };
        Permit::Refused { retry_after_nanos }
    }

    /// [`CircuitBreaker::acquire_at`] on the clock.
    #[inline]
    pub fn acquire(&mut self) -> Permit {
        let now = self.clock.now_nanos();
        self.acquire_at(now)
    }

    /// Records the outcome of a call that ends at `now`, admitted with `ticket` at
    /// `start_nanos`; true when the state changed.
    pub fn record_at(&mut self, ticket: u64, start_nanos: u64, outcome: Outcome, now: u64) -> bool {
        let changed = self.sync_at(now);
        let duration = now.saturating_sub(start_nanos);
        self.last_duration_nanos = duration;
        let failed = outcome.failed();
        let slow = self
            .config
            .slow_call_nanos
            .is_some_and(|limit| duration > limit);
        self.totals.calls += 1;
        self.totals.failures += failed as u64;
        self.totals.slow_calls += slow as u64;
        self.totals.timeouts += (outcome == Outcome::Timeout) as u64;
        if ticket != self.generation || changed {
            // admitted by an earlier state: counted above, and nowhere else
            return changed;
        }
        match self.state {
            State::Closed => {
                self.window.record(now, failed, slow);
                let counts = self.window.counts(now);
                if counts.calls >= self.config.minimum_calls && self.over_thresholds(&counts) {
                    self.transition(State::Open, now);
                    return true;
                }
                false
            }
            State::Disabled => {
                self.window.record(now, failed, slow);
                false
            }
            State::HalfOpen => {
                self.probe_outcomes.add(failed, slow);
                self.judge_probes(now)
            }
            State::Open | State::ForcedOpen => false,
        }
    }

    /// [`CircuitBreaker::record_at`] on the clock.
    #[inline]
    pub fn record(&mut self, ticket: u64, start_nanos: u64, outcome: Outcome) -> bool {
        let now = self.clock.now_nanos();
        self.record_at(ticket, start_nanos, outcome, now)
    }

    fn over_thresholds(&self, counts: &WindowCounts) -> bool {
        counts.failure_rate() >= self.config.failure_rate_threshold
            || (self.config.slow_call_nanos.is_some()
                && counts.slow_rate() >= self.config.slow_call_rate_threshold)
    }

    /// Decides a half-open spell as soon as its outcome is certain: the probes are judged as
    /// a window of `half_open_max_calls` calls, so the breaker reopens once the failed (or
    /// slow) probes reach the threshold share of them, and closes once they no longer can.
    fn judge_probes(&mut self, now: u64) -> bool {
        let max = self.config.half_open_max_calls as u64;
        let probes = self.probe_outcomes;
        let reaches = |count: u64, threshold: f64| rate(count.min(max), max) >= threshold;
        let slow_on = self.config.slow_call_nanos.is_some();
        let slow_threshold = self.config.slow_call_rate_threshold;
        if reaches(probes.failures, self.config.failure_rate_threshold)
            || (slow_on && reaches(probes.slow, slow_threshold))
        {
            self.transition(State::Open, now);
            return true;
        }
        let remaining = max.saturating_sub(probes.calls);
        let could_fail = reaches(
            probes.failures + remaining,
            self.config.failure_rate_threshold,
        );
        let could_be_slow = slow_on && reaches(probes.slow + remaining, slow_threshold);
        if !could_fail && !could_be_slow {
            self.transition(State::Closed, now);
            return true;
        }
        false
    }

    /// Opens the breaker until `reset()`; true when the state changed.
    pub fn force_open(&mut self) -> bool {
        self.manual(State::ForcedOpen)
    }

    /// Lets every call pass (still measuring) until `reset()`; true when the state changed.
    pub fn disable(&mut self) -> bool {
        self.manual(State::Disabled)
    }

    /// Closes the breaker with an empty window; true when the state changed. A closed breaker
    /// is left as it is, window included.
    pub fn reset(&mut self) -> bool {
        if self.state == State::Closed {
            return false;
        }
        self.manual(State::Closed)
    }

    fn manual(&mut self, to: State) -> bool {
        if self.state == to {
            return false;
        }
        let now = self.clock.now_nanos();
        self.transition(to, now);
        true
    }

    /// The state and counters at `now` (after applying what time has done).
    pub fn snapshot_at(&mut self, now: u64) -> Snapshot {
        self.sync_at(now);
        Snapshot {
            state: self.state,
            totals: self.totals,
            window: self.window.counts(now),
            last_transition_nanos: self.last_transition_nanos,
            transitions: self.transitions,
        }
    }

    /// [`CircuitBreaker::snapshot_at`] on the clock.
    pub fn snapshot(&mut self) -> Snapshot {
        let now = self.clock.now_nanos();
        self.snapshot_at(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::ManualClock;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    fn breaker(config: BreakerConfig) -> (ManualClock, CircuitBreaker) {
        let manual = ManualClock::new(0);
        let b = CircuitBreaker::new(config, Clock::Manual(manual.clone()));
        (manual, b)
    }

    fn counted(size: usize, minimum: u64, threshold: f64) -> BreakerConfig {
        BreakerConfig {
            failure_rate_threshold: threshold,
            minimum_calls: minimum,
            window: WindowKind::Count { size },
            open_nanos: 1_000 * MS,
            half_open_max_wait_nanos: 5_000 * MS,
            ..BreakerConfig::default()
        }
    }

    /// Runs one call with `outcome`, taking `ms`; returns whether the state changed.
    fn call(b: &mut CircuitBreaker, clock: &ManualClock, outcome: Outcome, ms: u64) -> bool {
        match b.acquire() {
            Permit::Allowed {
                ticket,
                start_nanos,
            } => {
                clock.advance(ms * MS);
                b.record(ticket, start_nanos, outcome)
            }
            Permit::Refused { .. } => panic!("refused in {:?}", b.state()),
        }
    }

    #[test]
    fn opens_only_once_minimum_calls_are_in_the_window() {
        let (clock, mut b) = breaker(counted(10, 4, 0.5));
        for _ in 0..3 {
            assert!(!call(&mut b, &clock, Outcome::Failure, 1));
        }
        assert_eq!(b.state(), State::Closed, "3 calls < minimumCalls");
        assert!(call(&mut b, &clock, Outcome::Failure, 1));
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn the_threshold_is_reached_at_equality_not_below() {
        let (clock, mut b) = breaker(counted(4, 4, 0.5));
        call(&mut b, &clock, Outcome::Success, 1);
        call(&mut b, &clock, Outcome::Success, 1);
        call(&mut b, &clock, Outcome::Success, 1);
        assert!(!call(&mut b, &clock, Outcome::Failure, 1), "1/4 < 0.5");
        // the window slides: s s f f -> 2/4 = 0.5 opens
        assert!(call(&mut b, &clock, Outcome::Failure, 1));
        // threshold 1: all must fail
        let (clock, mut b) = breaker(counted(3, 3, 1.0));
        call(&mut b, &clock, Outcome::Failure, 1);
        call(&mut b, &clock, Outcome::Failure, 1);
        assert!(!call(&mut b, &clock, Outcome::Success, 1));
        assert!(!call(&mut b, &clock, Outcome::Failure, 1), "f s f");
        assert!(!call(&mut b, &clock, Outcome::Failure, 1), "s f f");
        assert!(call(&mut b, &clock, Outcome::Failure, 1), "f f f");
    }

    #[test]
    fn slow_calls_open_it_when_configured() {
        let mut config = counted(4, 4, 0.5);
        config.slow_call_nanos = Some(100 * MS);
        config.slow_call_rate_threshold = 0.75;
        let (clock, mut b) = breaker(config);
        call(&mut b, &clock, Outcome::Success, 100); // not over the limit
        call(&mut b, &clock, Outcome::Success, 101);
        call(&mut b, &clock, Outcome::Success, 500);
        assert_eq!(b.state(), State::Closed);
        assert!(call(&mut b, &clock, Outcome::Success, 101), "3/4 slow");
        let s = b.snapshot();
        assert_eq!(s.totals.slow_calls, 3);
        assert_eq!(s.totals.failures, 0);
    }

    #[test]
    fn open_refuses_with_the_time_left_then_half_opens() {
        let (clock, mut b) = breaker(counted(2, 2, 0.5));
        call(&mut b, &clock, Outcome::Failure, 0);
        call(&mut b, &clock, Outcome::Failure, 0);
        assert_eq!(b.state(), State::Open);
        clock.advance(400 * MS);
        assert_eq!(
            b.acquire(),
            Permit::Refused {
                retry_after_nanos: Some(600 * MS)
            }
        );
        clock.advance(600 * MS);
        assert!(b.sync());
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.snapshot().totals.rejected, 1);
    }

    #[test]
    fn half_open_admits_its_probes_then_closes_or_reopens() {
        let mut config = counted(10, 2, 0.5);
        config.half_open_max_calls = 2;
        let (clock, mut b) = breaker(config);
        call(&mut b, &clock, Outcome::Failure, 0);
        call(&mut b, &clock, Outcome::Failure, 0);
        clock.advance(1_000 * MS);
        let p1 = b.acquire();
        let p2 = b.acquire();
        assert_eq!(b.state(), State::HalfOpen);
        assert!(
            matches!(b.acquire(), Permit::Refused { retry_after_nanos: Some(n) } if n == 5_000 * MS)
        );
        let (
            Permit::Allowed {
                ticket: t1,
                start_nanos: s1,
            },
            Permit::Allowed {
                ticket: t2,
                start_nanos: s2,
            },
        ) = (p1, p2)
        else {
            panic!("probes refused")
        };
        // 1 of 2 failing already reaches 0.5: reopens at once
        assert!(!b.record(t1, s1, Outcome::Success));
        assert!(b.record(t2, s2, Outcome::Failure));
        assert_eq!(b.state(), State::Open);
        // next spell: two successes close it, with an empty window
        clock.advance(1_000 * MS);
        assert!(
            !call(&mut b, &clock, Outcome::Success, 1),
            "one more could still fail"
        );
        assert!(call(&mut b, &clock, Outcome::Success, 1));
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot().window.calls, 0);
    }

    #[test]
    fn half_open_closes_as_soon_as_the_outcome_is_certain() {
        let mut config = counted(10, 2, 0.5);
        config.half_open_max_calls = 4;
        let (clock, mut b) = breaker(config);
        call(&mut b, &clock, Outcome::Failure, 0);
        call(&mut b, &clock, Outcome::Failure, 0);
        clock.advance(1_000 * MS);
        // 3 successes out of 4: even a failing 4th leaves 1/4 < 0.5
        assert!(!call(&mut b, &clock, Outcome::Success, 0));
        assert!(!call(&mut b, &clock, Outcome::Success, 0));
        assert!(call(&mut b, &clock, Outcome::Success, 0));
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn half_open_never_outlasts_its_max_wait() {
        let (clock, mut b) = breaker(counted(2, 2, 0.5));
        call(&mut b, &clock, Outcome::Failure, 0);
        call(&mut b, &clock, Outcome::Failure, 0);
        clock.advance(1_000 * MS);
        let Permit::Allowed {
            ticket,
            start_nanos,
        } = b.acquire()
        else {
            panic!("probe refused")
        };
        clock.advance(5_000 * MS);
        // the probe never reported: the spell ends, the breaker is open again
        assert!(b.sync());
        assert_eq!(b.state(), State::Open);
        // its late outcome counts in the totals only
        assert!(!b.record(ticket, start_nanos, Outcome::Success));
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.snapshot().totals.calls, 3);
    }

    #[test]
    fn late_outcomes_of_an_earlier_state_do_not_count_in_the_window() {
        let (clock, mut b) = breaker(counted(10, 2, 0.5));
        let Permit::Allowed {
            ticket,
            start_nanos,
        } = b.acquire()
        else {
            panic!()
        };
        call(&mut b, &clock, Outcome::Failure, 0);
        call(&mut b, &clock, Outcome::Failure, 0);
        b.reset();
        assert!(!b.record(ticket, start_nanos, Outcome::Failure));
        assert_eq!(b.snapshot().window.calls, 0);
        assert_eq!(b.snapshot().totals.failures, 3);
    }

    #[test]
    fn manual_states() {
        let (clock, mut b) = breaker(counted(2, 2, 0.5));
        assert!(b.force_open());
        assert!(!b.force_open(), "already forced open");
        clock.advance(1_000_000 * MS);
        assert_eq!(
            b.acquire(),
            Permit::Refused {
                retry_after_nanos: None
            }
        );
        assert_eq!(b.state(), State::ForcedOpen, "time does not end it");
        assert!(b.disable());
        for _ in 0..10 {
            assert!(!call(&mut b, &clock, Outcome::Failure, 0));
        }
        assert_eq!(b.state(), State::Disabled);
        assert_eq!(b.snapshot().window.failures, 2, "still measured");
        assert!(b.reset());
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot().window.calls, 0);
        assert!(!b.reset());
        assert_eq!(b.snapshot().transitions, 3);
    }

    #[test]
    fn time_window_forgets_old_failures() {
        let config = BreakerConfig {
            minimum_calls: 3,
            window: WindowKind::Time { buckets: 2 },
            ..BreakerConfig::default()
        };
        let (clock, mut b) = breaker(config);
        call(&mut b, &clock, Outcome::Failure, 0);
        call(&mut b, &clock, Outcome::Failure, 0);
        clock.advance(2_000 * MS);
        assert!(
            !call(&mut b, &clock, Outcome::Failure, 0),
            "the first two fell out"
        );
        assert_eq!(b.snapshot().window.calls, 1);
    }

    #[test]
    fn timeouts_are_failures_and_counted() {
        let (clock, mut b) = breaker(counted(2, 2, 0.5));
        call(&mut b, &clock, Outcome::Timeout, 5);
        assert_eq!(b.last_duration_nanos(), 5 * MS);
        let s = b.snapshot();
        assert_eq!((s.totals.failures, s.totals.timeouts), (1, 1));
    }

    #[derive(Clone, Debug)]
    enum Step {
        Acquire,
        /// Reports the outstanding permit at this index (modulo), with this outcome code.
        Report(usize, u8),
        Advance(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Acquire),
            3 => (any::<usize>(), 0u8..3).prop_map(|(i, o)| Step::Report(i, o)),
            2 => (0u64..3_000).prop_map(Step::Advance),
        ]
    }

    proptest! {
        /// Whatever the interleaving of permits, outcomes and time: the breaker is never seen
        /// half-open past `half_open_max_wait`, and no half-open spell admits more than
        /// `half_open_max_calls` probes.
        #[test]
        fn never_stuck_half_open_and_probes_bounded(
            max_calls in 1u32..5,
            max_wait_ms in 1u64..4_000,
            steps in proptest::collection::vec(step(), 1..300),
        ) {
            let config = BreakerConfig {
                failure_rate_threshold: 0.5,
                minimum_calls: 2,
                window: WindowKind::Count { size: 4 },
                open_nanos: 500 * MS,
                half_open_max_calls: max_calls,
                half_open_max_wait_nanos: max_wait_ms * MS,
                ..BreakerConfig::default()
            };
            let (clock, mut b) = breaker(config);
            let mut outstanding: Vec<(u64, u64)> = Vec::new();
            let mut spell_generation = 0u64;
            let mut admitted_in_spell = 0u32;
            for step in steps {
                match step {
                    Step::Acquire => {
                        if let Permit::Allowed { ticket, start_nanos } = b.acquire() {
                            if b.state() == State::HalfOpen {
                                if ticket != spell_generation {
                                    spell_generation = ticket;
                                    admitted_in_spell = 0;
                                }
                                admitted_in_spell += 1;
                                prop_assert!(admitted_in_spell <= max_calls);
                            }
                            outstanding.push((ticket, start_nanos));
                        }
                    }
                    Step::Report(i, code) => {
                        if !outstanding.is_empty() {
                            let (ticket, start) = outstanding.swap_remove(i % outstanding.len());
                            let before = b.transitions();
                            b.record(ticket, start, Outcome::from_code(code as f64));
                            prop_assert!(b.transitions() - before <= 1);
                        }
                    }
                    Step::Advance(ms) => clock.advance(ms * MS),
                }
                let now = clock.now_nanos();
                let before = b.transitions();
                b.sync();
                prop_assert!(b.transitions() - before <= 1);
                if b.state() == State::HalfOpen {
                    prop_assert!(now - b.half_open_since < max_wait_ms * MS);
                }
            }
            // with no outcome ever reported again, time alone gets it out of half-open
            if b.state() == State::HalfOpen {
                clock.advance(max_wait_ms * MS);
                b.sync();
                prop_assert_eq!(b.state(), State::Open);
            }
        }
    }
}
