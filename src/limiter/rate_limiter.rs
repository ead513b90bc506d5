//! The rate limiter: per-key token buckets, per-client limits, a penalty box, an optional shared
//! budget, and the fair wait queue of `acquire`, all on an injectable clock.
//!
//! Every decision takes the key's bucket, and the shared bucket when there is one: a request is
//! allowed only when both hold its cost, and then both pay. Requests that wait (`acquire`) queue
//! in [`FairQueue`] and are granted by [`RateLimiter::pump`] in weighted fair order across
//! clients; while anyone waits, immediate requests do not jump the queue.

use std::collections::HashMap;

use compact_str::CompactString;

use super::bucket::{Bucket, Limits};
use super::fair_queue::FairQueue;
use super::store::{stamp_ms, BucketStore, MemoryStore};
use crate::common::clock::NANOS_PER_MS;
use crate::common::error::{describe_number, InvalidInput};
use crate::common::{Clock, Histogram};

/// The longest block (`blockDurationMs`, `block(key, ms)`): 2^31 - 1 ms, about 24.8 days.
pub const MAX_BLOCK_MS: f64 = 2_147_483_647.0;

/// Limits on the wait queue of `acquire`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueueLimits {
    /// Waiters one client may have queued.
    pub max_per_client: usize,
    /// Waiters queued in all.
    pub max_total: usize,
    /// Longest wait, in nanoseconds, when the call gives none.
    pub max_wait_nanos: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_per_client: 100,
            max_total: 10_000,
            max_wait_nanos: 10_000 * NANOS_PER_MS,
        }
    }
}

/// A validated limiter configuration.
#[derive(Clone, Debug)]
pub struct LimiterConfig {
    /// Limits of a key without per-client limits.
    pub limits: Limits,
    /// Named sets of limits clients can be assigned to.
    pub tiers: HashMap<String, Limits>,
    /// How long a refused key stays refused, in nanoseconds (0: no penalty box).
    pub block_nanos: u64,
    /// The service-wide budget every admitted request also draws from.
    pub global: Option<Limits>,
    /// Wait queue limits.
    pub queue: QueueLimits,
    /// Keys held at most.
    pub max_keys: usize,
}

impl LimiterConfig {
    /// A configuration with the given default limits and every other setting at its default.
    pub fn new(limits: Limits) -> Self {
        LimiterConfig {
            limits,
            tiers: HashMap::new(),
            block_nanos: 0,
            global: None,
            queue: QueueLimits::default(),
            max_keys: 1_000_000,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The key's own bucket lacks the tokens.
    KeyLimit,
    /// The shared budget lacks the tokens (or others are queued for it).
    SharedBudget,
    /// The key is in the penalty box.
    Blocked,
}

/// The outcome of one decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// Whether the request was admitted (and its tokens taken).
    pub allowed: bool,
    /// The key's capacity.
    pub limit: f64,
    /// Whole tokens the key holds after the decision.
    pub remaining: f64,
    /// Nanoseconds until the key's bucket is full again.
    pub reset_nanos: u64,
    /// Nanoseconds until the same request would be admitted (0 when allowed).
    pub retry_after_nanos: u64,
    /// Why it was refused, when it was.
    pub refusal: Option<Refusal>,
}

impl Decision {
    /// The fast-path encoding: tokens left (>= 0, floored) when allowed, minus the milliseconds
    /// to wait (ceil, <= -1) when refused.
    #[inline]
    pub fn as_number(&self) -> f64 {
        if self.allowed {
            self.remaining
        } else {
            -(ceil_ms(self.retry_after_nanos).max(1.0))
        }
    }
}

/// Nanoseconds to whole milliseconds, rounded up.
#[inline]
pub fn ceil_ms(nanos: u64) -> f64 {
    nanos.div_ceil(NANOS_PER_MS) as f64
}

/// Why an `acquire` was turned down without being granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcquireRejection {
    /// The key is blocked.
    Blocked,
    /// The wait would exceed `maxWaitMs`.
    WaitTooLong,
    /// The client's or the whole queue is full.
    QueueFull,
    /// It waited `maxWaitMs` and was not served.
    TimedOut,
    /// The limiter was closed.
    Closed,
}

impl AcquireRejection {
    /// The `reason` JS sees on the `RateLimitError`.
    pub fn as_str(self) -> &'static str {
        match self {
            AcquireRejection::Blocked => "blocked",
            AcquireRejection::WaitTooLong => "wait_too_long",
            AcquireRejection::QueueFull => "queue_full",
            AcquireRejection::TimedOut => "timed_out",
            AcquireRejection::Closed => "closed",
        }
    }
}

/// What `enqueue` did with an `acquire`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Enqueued {
    /// Granted at once.
    Granted(Decision),
    /// Queued under this id; `pump` will grant or expire it.
    Queued(u64),
    /// Turned down at once; `retry_after_nanos` is the best estimate of when to try again.
    Rejected {
        /// Why.
        reason: AcquireRejection,
        /// When to try again.
        retry_after_nanos: u64,
    },
}

/// What one `pump` did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pumped {
    /// Waiters granted now, with their decisions, in the order they were served.
    pub granted: Vec<(u64, Decision)>,
    /// Waiters whose deadline passed.
    pub expired: Vec<u64>,
    /// Nanoseconds until `pump` has something to do again; `None` when nobody waits.
    pub next_wake_nanos: Option<u64>,
}

/// Counters reported by `stats()`.
#[derive(Clone, Debug, Default)]
pub struct LimiterStats {
    /// Requests admitted (at once or after waiting).
    pub allowed: u64,
    /// Requests refused, including blocked ones and rejected `acquire` calls.
    pub rejected: u64,
    /// Refusals because the key was blocked.
    pub blocked: u64,
    /// Waiters queued now.
    pub queued: u64,
    /// `acquire` calls granted after waiting.
    pub waited: u64,
    /// `acquire` calls that gave up at their deadline.
    pub timed_out: u64,
    /// Keys held.
    pub keys: u64,
    /// Keys evicted to stay within `maxKeys`.
    pub evicted: u64,
    /// How long granted waiters waited, in microseconds.
    pub wait_micros: crate::common::histogram::Summary,
}

/// A keyed token-bucket rate limiter.
pub struct RateLimiter<S: BucketStore = MemoryStore> {
    config: LimiterConfig,
    clock: Clock,
    store: S,
    /// Per-client limits set by `set_client_limits` / `set_client_tier`.
    clients: HashMap<CompactString, Limits>,
    global: Bucket,
    queue: FairQueue,
    allowed: u64,
    rejected: u64,
    blocked: u64,
    waited: u64,
    timed_out: u64,
    wait_micros: Histogram,
    closed: bool,
}

fn cost_above_capacity(cost: f64, capacity: f64, what: &str) -> InvalidInput {
    InvalidInput::argument_range(format!(
        "cost {} is above the {what} capacity {}: such a request could never be served",
        describe_number(cost),
        describe_number(capacity)
    ))
}

/// Validates a duration in milliseconds given to `block` or as `blockDurationMs`.
pub fn block_millis(name: &str, ms: f64, option: bool) -> Result<u64, InvalidInput> {
    if ms.is_finite() && (0.0..=MAX_BLOCK_MS).contains(&ms) {
        Ok(ms.ceil() as u64)
    } else {
        let message = format!(
            "{name} must be a number of milliseconds from 0 to {MAX_BLOCK_MS}, received {}",
            describe_number(ms)
        );
        Err(if option {
            InvalidInput::option_range(message)
        } else {
            InvalidInput::argument_range(message)
        })
    }
}

impl RateLimiter<MemoryStore> {
    /// A limiter keeping its buckets in memory.
    pub fn new(config: LimiterConfig, clock: Clock) -> Self {
        let store = MemoryStore::new(config.max_keys);
        RateLimiter::with_store(config, clock, store)
    }
}

impl<S: BucketStore> RateLimiter<S> {
    /// A limiter over the given store.
    pub fn with_store(config: LimiterConfig, clock: Clock, store: S) -> Self {
        RateLimiter {
            config,
            clock,
            store,
            clients: HashMap::new(),
            global: Bucket::FULL,
            queue: FairQueue::new(),
            allowed: 0,
            rejected: 0,
            blocked: 0,
            waited: 0,
            timed_out: 0,
            wait_micros: Histogram::new(),
            closed: false,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// Current clock time in nanoseconds.
    #[inline]
    pub fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// The limits that apply to `key`.
    #[inline]
    pub fn limits_for(&self, key: &str) -> Limits {
        if self.clients.is_empty() {
            return self.config.limits;
        }
        self.clients.get(key).copied().unwrap_or(self.config.limits)
    }

    fn check_cost(&self, limits: &Limits, cost: f64) -> Result<(), InvalidInput> {
        if cost > limits.capacity {
            return Err(cost_above_capacity(cost, limits.capacity, "key's"));
        }
        if let Some(global) = &self.config.global {
            if cost > global.capacity {
                return Err(cost_above_capacity(
                    cost,
                    global.capacity,
                    "shared budget's",
                ));
            }
        }
        Ok(())
    }

    /// Decides one request now: takes `cost` tokens from the key (and the shared budget) when
    /// both hold them, and otherwise takes nothing.
    #[inline]
    pub fn decide(&mut self, key: &str, cost: f64) -> Result<Decision, InvalidInput> {
        let now = self.now();
        let limits = self.limits_for(key);
        self.check_cost(&limits, cost)?;
        let someone_waits = !self.queue.is_empty();
        let key_has_waiters = someone_waits && self.queue.client_len(key) > 0;
        let global_limits = self.config.global;
        let block_nanos = self.config.block_nanos;
        let state = self.store.state(key, now);
        let now_ms = stamp_ms(now);

        let blocked_ms = state.blocked_for_ms(now_ms);
        if blocked_ms > 0 {
            self.rejected += 1;
            self.blocked += 1;
            return Ok(Decision {
                allowed: false,
                limit: limits.capacity,
                remaining: state.bucket.whole_tokens(&limits, now),
                reset_nanos: state.bucket.nanos_until_full(now),
                retry_after_nanos: blocked_ms as u64 * NANOS_PER_MS,
                refusal: Some(Refusal::Blocked),
            });
        }

        let mut key_wait = state.bucket.wait_nanos(&limits, cost, now);
        if key_has_waiters {
            // the key's earlier waiters come first
            key_wait = key_wait.max(limits.nanos_for(cost).ceil() as u64);
        }
        let global_wait = match &global_limits {
            Some(global) => {
                let wait = self.global.wait_nanos(global, cost, now);
                if someone_waits {
                    wait.max(global.nanos_for(cost).ceil() as u64)
                } else {
                    wait
                }
            }
            None => 0,
        };

        if key_wait == 0 && global_wait == 0 {
            state.bucket.take(&limits, cost, now);
            if let Some(global) = &global_limits {
                self.global.take(global, cost, now);
            }
            self.allowed += 1;
            return Ok(Decision {
                allowed: true,
                limit: limits.capacity,
                remaining: state.bucket.whole_tokens(&limits, now),
                reset_nanos: state.bucket.nanos_until_full(now),
                retry_after_nanos: 0,
                refusal: None,
            });
        }

        let mut retry_after_nanos = key_wait.max(global_wait);
        let refusal = if key_wait > 0 && !key_has_waiters {
            if block_nanos > 0 {
                state.blocked_until_ms = stamp_ms(now + block_nanos).max(1);
                retry_after_nanos = retry_after_nanos.max(block_nanos);
            }
            Refusal::KeyLimit
        } else if key_wait > 0 {
            Refusal::KeyLimit
        } else {
            Refusal::SharedBudget
        };
        self.rejected += 1;
        Ok(Decision {
            allowed: false,
            limit: limits.capacity,
            remaining: state.bucket.whole_tokens(&limits, now),
            reset_nanos: state.bucket.nanos_until_full(now),
            retry_after_nanos,
            refusal: Some(refusal),
        })
    }

    /// Whole tokens `key` holds now, without taking any.
    pub fn peek(&mut self, key: &str) -> f64 {
        let now = self.now();
        let limits = self.limits_for(key);
        match self.store.existing(key) {
            Some(state) => state.bucket.whole_tokens(&limits, now),
            None => limits.capacity.floor(),
        }
    }

    /// Refills `key` and lifts any block on it.
    pub fn reset(&mut self, key: &str) {
        self.store.remove(key);
    }

    /// Blocks `key` for `ms` milliseconds from now (0 lifts a block).
    pub fn block(&mut self, key: &str, ms: u64) {
        let now = self.now();
        let until = if ms == 0 {
            0
        } else {
            stamp_ms(now + ms * NANOS_PER_MS).max(1)
        };
        self.store.state(key, now).blocked_until_ms = until;
    }

    /// Lifts a block on `key`.
    pub fn unblock(&mut self, key: &str) {
        if let Some(state) = self.store.existing(key) {
            state.blocked_until_ms = 0;
        }
    }

    /// Gives `key` its own limits from the next request on, keeping the tokens it has used.
    pub fn set_client_limits(&mut self, key: &str, limits: Limits) {
        let old = self.limits_for(key);
        self.clients.insert(CompactString::from(key), limits);
        self.convert_bucket(key, &old, &limits);
    }

    /// Puts `key` in the named tier.
    pub fn set_client_tier(&mut self, key: &str, tier: &str) -> Result<(), InvalidInput> {
        let Some(&limits) = self.config.tiers.get(tier) else {
            let mut known: Vec<&str> = self.config.tiers.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(InvalidInput::argument_range(format!(
                "tier \"{tier}\" is not configured; configured tiers are: {}",
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        self.set_client_limits(key, limits);
        Ok(())
    }

    /// Returns `key` to the default limits.
    pub fn clear_client(&mut self, key: &str) {
        if let Some(old) = self.clients.remove(key) {
            let default = self.config.limits;
            self.convert_bucket(key, &old, &default);
        }
    }

    fn convert_bucket(&mut self, key: &str, old: &Limits, new: &Limits) {
        let now = self.now();
        if let Some(state) = self.store.existing(key) {
            state.bucket = state.bucket.convert(old, new, now);
        }
    }

    /// Starts an `acquire`: grants it at once when nothing stands in the way, queues it when it
    /// can be served within `max_wait_nanos`, and turns it down otherwise.
    pub fn enqueue(
        &mut self,
        key: &str,
        cost: f64,
        max_wait_nanos: Option<u64>,
    ) -> Result<Enqueued, InvalidInput> {
        let limits = self.limits_for(key);
        self.check_cost(&limits, cost)?;
        if self.closed {
            self.rejected += 1;
            return Ok(Enqueued::Rejected {
                reason: AcquireRejection::Closed,
                retry_after_nanos: 0,
            });
        }
        let max_wait = max_wait_nanos.unwrap_or(self.config.queue.max_wait_nanos);
        let now = self.now();
        let decision = self.decide(key, cost)?;
        if decision.allowed {
            return Ok(Enqueued::Granted(decision));
        }
        // `decide` counted a refusal; a queued request is not one.
        self.rejected -= 1;
        let reject = |this: &mut Self, reason, retry_after_nanos| {
            this.rejected += 1;
            Ok(Enqueued::Rejected {
                reason,
                retry_after_nanos,
            })
        };
        match decision.refusal {
            Some(Refusal::Blocked) => {
                return reject(self, AcquireRejection::Blocked, decision.retry_after_nanos)
            }
            Some(Refusal::KeyLimit) => {
                // waiting is not a refusal: undo the penalty `decide` may have applied
                if self.config.block_nanos > 0 && self.queue.client_len(key) == 0 {
                    if let Some(state) = self.store.existing(key) {
                        state.blocked_until_ms = 0;
                    }
                }
            }
            _ => {}
        }
        let own_wait = self
            .store
            .existing(key)
            .map_or(0, |s| s.bucket.wait_nanos(&limits, cost, now));
        let shared_wait = match &self.config.global {
            Some(global) => self.global.wait_nanos(global, cost, now),
            None => 0,
        };
        let least_wait = own_wait.max(shared_wait);
        if least_wait > max_wait {
            return reject(self, AcquireRejection::WaitTooLong, least_wait);
        }
        if self.queue.client_len(key) >= self.config.queue.max_per_client
            || self.queue.len() >= self.config.queue.max_total
        {
            return reject(self, AcquireRejection::QueueFull, least_wait);
        }
        let id = self
            .queue
            .push(key, cost, limits.weight, now.saturating_add(max_wait), now);
        Ok(Enqueued::Queued(id))
    }

    /// Grants every waiter that can be served now, in fair order, and expires those past their
    /// deadline. Call it when `next_wake_nanos` has passed (or the clock was moved).
    pub fn pump(&mut self) -> Pumped {
        let now = self.now();
        let mut pumped = Pumped::default();
        for waiter in self.queue.take_expired(now) {
            self.timed_out += 1;
            self.rejected += 1;
            pumped.expired.push(waiter.id);
        }
        loop {
            let mut served = None;
            for head in self.queue.heads() {
                let limits = self.limits_for(&head.key);
                let own_ready = self
                    .store
                    .existing(&head.key)
                    .is_none_or(|s| s.bucket.wait_nanos(&limits, head.cost, now) == 0);
                if !own_ready {
                    continue; // this client waits for its own bucket, not for the others
                }
                if let Some(global) = &self.config.global {
                    if self.global.wait_nanos(global, head.cost, now) > 0 {
                        // the fairest eligible waiter is next: the budget is held for it
                        break;
                    }
                }
                served = Some((head.id, head.key.clone(), head.cost, limits));
                break;
            }
            let Some((id, key, cost, limits)) = served else {
                break;
            };
            let state = self.store.state(&key, now);
            state.bucket.take(&limits, cost, now);
            let decision = Decision {
                allowed: true,
                limit: limits.capacity,
                remaining: state.bucket.whole_tokens(&limits, now),
                reset_nanos: state.bucket.nanos_until_full(now),
                retry_after_nanos: 0,
                refusal: None,
            };
            if let Some(global) = &self.config.global {
                self.global.take(global, cost, now);
            }
            if let Some(waiter) = self.queue.grant(id) {
                self.wait_micros
                    .record(now.saturating_sub(waiter.queued_at) / 1_000);
            }
            self.allowed += 1;
            self.waited += 1;
            pumped.granted.push((id, decision));
        }
        pumped.next_wake_nanos = self.next_wake(now);
        pumped
    }

    /// Nanoseconds from `now` until a waiter could be granted or expires.
    fn next_wake(&mut self, now: u64) -> Option<u64> {
        let mut wake = self.queue.next_deadline()?.saturating_sub(now);
        for head in self.queue.heads() {
            let limits = self.limits_for(&head.key);
            let own = self
                .store
                .existing(&head.key)
                .map_or(0, |s| s.bucket.wait_nanos(&limits, head.cost, now));
            let shared = match &self.config.global {
                Some(global) => self.global.wait_nanos(global, head.cost, now),
                None => 0,
            };
            wake = wake.min(own.max(shared));
        }
        Some(wake)
    }

    /// Takes a waiter out (its `acquire` was aborted); true when it was still queued.
    pub fn cancel(&mut self, id: u64) -> bool {
        let removed = self.queue.remove(id).is_some();
        if removed {
            self.rejected += 1;
        }
        removed
    }

    /// Refuses every waiter and every later `acquire`; returns the ids of the waiters.
    pub fn close(&mut self) -> Vec<u64> {
        self.closed = true;
        let drained: Vec<u64> = self.queue.drain().into_iter().map(|w| w.id).collect();
        self.rejected += drained.len() as u64;
        drained
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats {
            allowed: self.allowed,
            rejected: self.rejected,
            blocked: self.blocked,
            queued: self.queue.len() as u64,
            waited: self.waited,
            timed_out: self.timed_out,
            keys: self.store.len() as u64,
            evicted: self.store.evicted(),
            wait_micros: self.wait_micros.summary(),
        }
    }
}
