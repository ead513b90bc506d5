//! One token bucket, kept as a single timestamp.
//!
//! A bucket of capacity `C` refilling at `r` tokens per second is fully described by the moment
//! it will be full again (`full_at`): at time `t` it holds `C - max(0, full_at - t) * r` tokens.
//! Taking `c` tokens moves `full_at` forward by `c / r`; the request is allowed when the bucket
//! holds at least `c`. This is the token bucket written the way GCRA writes it, so a bucket costs
//! eight bytes, and a bucket whose `full_at` has passed is indistinguishable from a missing one,
//! which is what lets the store drop it without asking for its limits.
//!
//! Decisions are made on whole nanoseconds: a cost becomes `round(c / r)` ns and the capacity
//! `round(C / r)` ns, so "is it allowed" and "how long to wait" are exact integer comparisons
//! that always agree with each other, whatever the rate.

/// Reported token counts are floored with this slack, so that rounding costs to whole
/// nanoseconds never shows 99 tokens as 98.
const TOKEN_EPSILON: f64 = 1e-6;

/// The limits of one bucket, with the derived figures the hot path needs precomputed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Tokens the bucket holds when full.
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
    /// Share of a shared budget this client gets relative to others when requests queue.
    pub weight: f64,
    nanos_per_token: f64,
    tokens_per_nano: f64,
    capacity_nanos: u64,
}

impl Limits {
    /// Limits from already validated figures (finite and > 0).
    pub fn new(capacity: f64, refill_per_second: f64, weight: f64) -> Self {
        Limits {
            capacity,
            refill_per_second,
            weight,
            nanos_per_token: 1e9 / refill_per_second,
            tokens_per_nano: refill_per_second / 1e9,
            capacity_nanos: (capacity * 1e9 / refill_per_second).round() as u64,
        }
    }

    /// A cost (>= 0) in whole nanoseconds of refill, rounded to the nearest (with a cast rather
    /// than `round()`, which is a library call on baseline x86-64).
    #[inline]
    pub fn cost_nanos(&self, cost: f64) -> u64 {
        (cost * self.nanos_per_token + 0.5) as u64
    }

    /// Nanoseconds it takes to refill `tokens`.
    #[inline]
    pub fn nanos_for(&self, tokens: f64) -> f64 {
        tokens * self.nanos_per_token
    }

    /// Nanoseconds an empty bucket takes to fill.
    #[inline]
    pub fn window_nanos(&self) -> f64 {
        self.nanos_for(self.capacity)
    }
}

/// The state of one bucket: when it will be full again, on the limiter's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Nanoseconds (clock time) at which the bucket is full; at or before now means full.
    pub full_at: u64,
}

impl Bucket {
    /// A full bucket.
    pub const FULL: Bucket = Bucket { full_at: 0 };

    /// Tokens the bucket holds at `now` (never negative, never above capacity).
    #[inline]
    pub fn tokens(&self, limits: &Limits, now: u64) -> f64 {
        let deficit = self.full_at.saturating_sub(now) as f64;
        (limits.capacity - deficit * limits.tokens_per_nano).max(0.0)
    }

    /// Whether the bucket is full at `now` (it then carries no information).
    #[inline]
    pub fn is_full(&self, now: u64) -> bool {
        self.full_at <= now
    }

    /// Nanoseconds until the bucket holds `cost` tokens (0 when it already does).
    #[inline]
    pub fn wait_nanos(&self, limits: &Limits, cost: f64, now: u64) -> u64 {
        self.wait_for_nanos(limits, limits.cost_nanos(cost), now)
    }

    /// `wait_nanos` for a cost already converted with [`Limits::cost_nanos`].
    #[inline]
    pub fn wait_for_nanos(&self, limits: &Limits, cost_nanos: u64, now: u64) -> u64 {
        let deficit = self.full_at.saturating_sub(now);
        (deficit + cost_nanos).saturating_sub(limits.capacity_nanos)
    }

    /// Takes `cost` tokens; the caller has checked that `wait_nanos` is 0.
    #[inline]
    pub fn take(&mut self, limits: &Limits, cost: f64, now: u64) {
        self.take_nanos(limits.cost_nanos(cost), now);
    }

    /// `take` for a cost already converted with [`Limits::cost_nanos`].
    #[inline]
    pub fn take_nanos(&mut self, cost_nanos: u64, now: u64) {
        self.full_at = self.full_at.max(now) + cost_nanos;
    }

    /// Nanoseconds until the bucket is full again.
    #[inline]
    pub fn nanos_until_full(&self, now: u64) -> u64 {
        self.full_at.saturating_sub(now)
    }

    /// Whole tokens held at `now`, as reported to users (floored, tolerant of rounding).
    #[inline]
    pub fn whole_tokens(&self, limits: &Limits, now: u64) -> f64 {
        // tokens are never negative, so truncating is flooring (and avoids a library call)
        (self.tokens(limits, now) + TOKEN_EPSILON) as u64 as f64
    }

    /// The same bucket under new limits, keeping the tokens already used (so an upgrade to a
    /// larger capacity takes effect at once, and a downgrade never hands out more than before).
    pub fn convert(&self, old: &Limits, new: &Limits, now: u64) -> Bucket {
        let used = old.capacity - self.tokens(old, now);
        let tokens = (new.capacity - used).clamp(0.0, new.capacity);
        let deficit = new.cost_nanos(new.capacity - tokens);
        Bucket {
            full_at: if deficit == 0 { 0 } else { now + deficit },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_new_bucket_is_full_and_refills_continuously() {
        let limits = Limits::new(10.0, 2.0, 1.0);
        let mut bucket = Bucket::FULL;
        let now = 5 * SECOND;
        assert_eq!(bucket.tokens(&limits, now), 10.0);
        bucket.take(&limits, 10.0, now);
        assert_eq!(bucket.whole_tokens(&limits, now), 0.0);
        // two tokens per second: after 1.5 s three tokens are back
        assert_eq!(bucket.whole_tokens(&limits, now + 3 * SECOND / 2), 3.0);
        assert_eq!(bucket.wait_nanos(&limits, 1.0, now), SECOND / 2);
        assert_eq!(bucket.nanos_until_full(now), 5 * SECOND);
        assert!(bucket.is_full(now + 5 * SECOND));
        assert_eq!(bucket.tokens(&limits, now + 60 * SECOND), 10.0);
    }

    #[test]
    fn fractional_rates_do_not_lose_a_token_to_rounding() {
        let limits = Limits::new(100.0, 3.0, 1.0);
        let mut bucket = Bucket::FULL;
        for taken in 1..=100 {
            bucket.take(&limits, 1.0, 0);
            assert_eq!(bucket.whole_tokens(&limits, 0), 100.0 - taken as f64);
        }
        assert!(bucket.wait_nanos(&limits, 1.0, 0) > 0);
    }

    #[test]
    fn conversion_keeps_the_tokens_used() {
        let free = Limits::new(10.0, 1.0, 1.0);
        let pro = Limits::new(100.0, 10.0, 1.0);
        let mut bucket = Bucket::FULL;
        bucket.take(&free, 10.0, 0);
        let upgraded = bucket.convert(&free, &pro, 0);
        assert_eq!(upgraded.whole_tokens(&pro, 0), 90.0);
        let downgraded = upgraded.convert(&pro, &free, 0);
        assert_eq!(downgraded.whole_tokens(&free, 0), 0.0);
        assert_eq!(Bucket::FULL.convert(&free, &pro, 7), Bucket::FULL);
    }

    proptest! {
        #[test]
        fn never_above_capacity_nor_below_zero(
            capacity in 1.0f64..1000.0,
            rate in 0.01f64..10_000.0,
            steps in proptest::collection::vec((0u64..5 * SECOND, 0.0f64..1.0), 1..100),
        ) {
            let limits = Limits::new(capacity, rate, 1.0);
            let mut bucket = Bucket::FULL;
            let mut now = 0;
            for (dt, fraction) in steps {
                now += dt;
                let cost = capacity * fraction;
                if bucket.wait_nanos(&limits, cost, now) == 0 {
                    bucket.take(&limits, cost, now);
                }
                let tokens = bucket.tokens(&limits, now);
                prop_assert!((0.0..=capacity).contains(&tokens));
            }
        }

        #[test]
        fn waiting_the_reported_time_is_always_enough(
            capacity in 1.0f64..1000.0,
            rate in 0.01f64..10_000.0,
            cost_fraction in 0.0f64..=1.0,
        ) {
            let limits = Limits::new(capacity, rate, 1.0);
            let mut bucket = Bucket::FULL;
            bucket.take(&limits, capacity, 0);
            let cost = capacity * cost_fraction;
            let wait = bucket.wait_nanos(&limits, cost, 0);
            prop_assert_eq!(bucket.wait_nanos(&limits, cost, wait), 0);
        }
    }
}
