//! The JS-thread half of a limiter whose buckets live in Redis: batching, the local refusal
//! cache, and what happens while Redis cannot be reached.
//!
//! Decisions asked for in one tick are queued by [`RemoteLimiter::submit`] and sent together by
//! [`RemoteLimiter::flush`] to the store thread ([`RedisBucketStore`]), which runs them as one
//! pipeline; [`RemoteLimiter::complete`] turns the batch's replies into decisions.
//!
//! Two kinds of decisions never leave the process:
//!
//! - a key that Redis refused with a retry time is refused here until that time (and only for
//!   costs at least as large as the refused one), counted as a local refusal: it could not be
//!   admitted before then anyway, so the round trip would only load Redis. Redis is asked again
//!   after at most [`LOCAL_REFUSAL_MAX_NANOS`], so that a `reset` or `unblock` made by another
//!   process is seen here within that time even when the key was blocked for long;
//! - while the breaker is open (Redis failed, for `retry` after the failure) every decision is
//!   made by the `onStoreError` policy at once: `local` decides with the in-process limiter (same
//!   limits, its own buckets), `allow` admits, `deny` refuses until the breaker closes.
//!
//! A failed batch is decided by the same policy, so a request never waits for more than one
//! failure; the breaker then spares the following ones even that.

use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashMap;

use super::bucket::Limits;
use super::rate_limiter::{Decision, RateLimiter, Refusal};
use super::redis_store::{Completion, KeyNaming, Op, RedisBucketStore, Reply, Request};
use crate::common::clock::NANOS_PER_MS;
use crate::common::error::InvalidInput;
use crate::common::redis::{RedisSettings, StoreError};

/// What a limiter with a remote store does when the store cannot answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStoreError {
    /// Refuse every request until Redis answers again.
    Deny,
    /// Admit every request until Redis answers again.
    Allow,
    /// Decide with an in-process limiter with the same limits until Redis answers again.
    Local,
}

impl OnStoreError {
    /// The policy named `name` (`deny`, `allow`, `local`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "deny" => Some(OnStoreError::Deny),
            "allow" => Some(OnStoreError::Allow),
            "local" => Some(OnStoreError::Local),
            _ => None,
        }
    }
}

/// The outcome of `submit`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Submitted {
    /// Decided in this process (refusal cache, or the breaker is open).
    Now(Decision),
    /// Queued for the next batch.
    Pending,
}

/// The outcome of `flush`.
#[derive(Debug)]
pub enum Flushed {
    /// Nothing was queued.
    Empty,
    /// The batch went to the store thread under this id.
    Sent(u64),
    /// The store thread could not take it; the batch is answered with this failure.
    Failed(Completion),
}

/// Counters of the remote half, reported with the limiter's own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteStats {
    /// Requests Redis admitted.
    pub allowed: u64,
    /// Requests Redis refused.
    pub rejected: u64,
    /// Refusals because the key was blocked (in Redis or known blocked here).
    pub blocked: u64,
    /// Refusals made here from the refusal cache, without a round trip.
    pub local_refusals: u64,
    /// Decisions made by the `onStoreError` policy (batch failed, or breaker open).
    pub fallback_decisions: u64,
    /// Requests whose batch (or own reply) failed.
    pub store_errors: u64,
    /// Batches sent to the store thread.
    pub batches: u64,
    /// Pipelines the thread sent (batches queued together share one).
    pub round_trips: u64,
    /// Script calls sent (one per batch of up to `MAX_PER_CALL` requests).
    pub commands: u64,
    /// Times the script was loaded again after a `NOSCRIPT` reply.
    pub script_reloads: u64,
    /// Connections made to Redis.
    pub connects: u64,
    /// Whether the breaker is open now.
    pub breaker_open: bool,
    /// The last store error, if any.
    pub last_error: Option<String>,
}

/// Longest a refusal is repeated here without asking Redis, whatever its retry time: a `reset`
/// or `unblock` made by another process is seen here within this time.
pub const LOCAL_REFUSAL_MAX_NANOS: u64 = 1_000 * NANOS_PER_MS;

#[derive(Clone, Copy, Debug)]
struct Refused {
    /// Until when this process refuses without asking Redis.
    until: u64,
    /// When the request may be admitted, as Redis said.
    retry_at: u64,
    cost: f64,
    remaining: f64,
    full_at: u64,
    blocked: bool,
}

/// The remote half of a limiter (see the module documentation).
pub struct RemoteLimiter {
    settings: RedisSettings,
    naming: KeyNaming,
    global: Option<Limits>,
    on_error: OnStoreError,
    notify: Arc<dyn Fn(Completion) + Send + Sync>,
    store: Option<RedisBucketStore>,
    pending: Vec<Request>,
    next_batch: u64,
    in_flight: usize,
    refused: HashMap<CompactString, Refused>,
    max_refused: usize,
    shared_refused: Option<Refused>,
    breaker_until: Option<u64>,
    closed: bool,
    stats: RemoteStats,
}

impl RemoteLimiter {
    /// A remote half that starts its store thread on the first flush; `notify` is called on
    /// that thread with each completed batch.
    pub fn new(
        settings: RedisSettings,
        naming: KeyNaming,
        global: Option<Limits>,
        on_error: OnStoreError,
        max_keys: usize,
        notify: Arc<dyn Fn(Completion) + Send + Sync>,
    ) -> Self {
        RemoteLimiter {
            settings,
            naming,
            global,
            on_error,
            notify,
            store: None,
            pending: Vec::new(),
            next_batch: 1,
            in_flight: 0,
            refused: HashMap::new(),
            max_refused: max_keys.max(1),
            shared_refused: None,
            breaker_until: None,
            closed: false,
            stats: RemoteStats::default(),
        }
    }

    /// Batches flushed and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Requests queued for the next flush.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The policy in force when Redis fails.
    pub fn on_error(&self) -> OnStoreError {
        self.on_error
    }

    fn breaker_open(&self, now: u64) -> bool {
        self.breaker_until.is_some_and(|until| now < until)
    }

    /// Decides `key` at once when this process already knows the answer; queues it otherwise.
    pub fn submit(
        &mut self,
        local: &mut RateLimiter,
        key: &str,
        cost: f64,
    ) -> Result<Submitted, InvalidInput> {
        let limits = local.admissible(key, cost)?;
        let now = local.now();
        if self.breaker_open(now) {
            return Ok(Submitted::Now(
                self.fallback(local, key, cost, &limits, now),
            ));
        }
        if let Some(refused) = self.refused.get(key) {
            if refused.until > now && (refused.blocked || cost >= refused.cost) {
                let refused = *refused;
                return Ok(Submitted::Now(self.local_refusal(&limits, &refused, now)));
            }
            if refused.until <= now {
                self.refused.remove(key);
            }
        }
        if let Some(shared) = self.shared_refused {
            if shared.until > now && cost >= shared.cost {
                return Ok(Submitted::Now(self.local_refusal(&limits, &shared, now)));
            }
            if shared.until <= now {
                self.shared_refused = None;
            }
        }
        self.pending.push(Request {
            op: Op::Take,
            key: CompactString::from(key),
            cost,
            limits,
            block_ms: local.config().block_nanos.div_ceil(NANOS_PER_MS),
        });
        Ok(Submitted::Pending)
    }

    fn local_refusal(&mut self, limits: &Limits, refused: &Refused, now: u64) -> Decision {
        self.stats.local_refusals += 1;
        self.stats.rejected += 1;
        if refused.blocked {
            self.stats.blocked += 1;
        }
        Decision {
            allowed: false,
            limit: limits.capacity,
            remaining: refused.remaining,
            reset_nanos: refused.full_at.saturating_sub(now),
            retry_after_nanos: refused.retry_at.saturating_sub(now).max(1),
            refusal: Some(if refused.blocked {
                Refusal::Blocked
            } else {
                Refusal::KeyLimit
            }),
        }
    }

    /// Queues a key command (`reset`, or `block` for `ms`, 0 lifting a block) and applies it to
    /// what this process knows of the key at once.
    pub fn command(&mut self, local: &mut RateLimiter, op: Op, key: &str, ms: u64) {
        let now = local.now();
        let limits = local.limits_for(key);
        match op {
            Op::Block if ms > 0 => {
                self.refused.insert(
                    CompactString::from(key),
                    Refused {
                        until: now + ms * NANOS_PER_MS,
                        retry_at: now + ms * NANOS_PER_MS,
                        cost: 0.0,
                        remaining: 0.0,
                        full_at: now,
                        blocked: true,
                    },
                );
            }
            _ => {
                self.refused.remove(key);
            }
        }
        // the in-process limiter follows too, for when it has to stand in
        match op {
            Op::Reset => local.reset(key),
            Op::Block => local.block(key, ms),
            Op::Take => {}
        }
        self.pending.push(Request {
            op,
            key: CompactString::from(key),
            cost: 0.0,
            limits,
            block_ms: ms,
        });
    }

    /// Sends the queued requests as one batch (starting the store thread on first use).
    pub fn flush(&mut self) -> Flushed {
        if self.pending.is_empty() {
            return Flushed::Empty;
        }
        let requests = std::mem::take(&mut self.pending);
        let batch = self.next_batch;
        self.next_batch += 1;
        self.stats.batches += 1;
        // every batch flushed is completed once, sent or failed here
        self.in_flight += 1;
        if self.store.is_none() && !self.closed {
            let notify = self.notify.clone();
            match RedisBucketStore::start(
                self.settings.clone(),
                self.naming.clone(),
                self.global,
                Box::new(move |completion| notify(completion)),
            ) {
                Ok(store) => self.store = Some(store),
                Err(e) => {
                    return Flushed::Failed(Completion {
                        batch,
                        requests,
                        outcome: Err(StoreError::new(format!(
                            "cannot start the Redis thread: {e}"
                        ))),
                    })
                }
            }
        }
        let refused = match &self.store {
            Some(store) => match store.send(batch, requests) {
                Ok(()) => return Flushed::Sent(batch),
                Err(requests) => requests,
            },
            None => requests,
        };
        Flushed::Failed(Completion {
            batch,
            requests: refused,
            outcome: Err(StoreError::new("the limiter is closed")),
        })
    }

    /// A completed batch (from the store thread, or a failed flush) as one decision per
    /// request, in order.
    pub fn complete(&mut self, local: &mut RateLimiter, completion: Completion) -> Vec<Decision> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let now = local.now();
        let Completion {
            requests, outcome, ..
        } = completion;
        match outcome {
            Ok(replies) => {
                let mut decisions = Vec::with_capacity(requests.len());
                let mut any_ok = false;
                for (request, reply) in requests.iter().zip(replies) {
                    match reply {
                        Ok(reply) => {
                            any_ok = true;
                            decisions.push(self.decided(request, &reply, now));
                        }
                        Err(error) => {
                            self.stats.store_errors += 1;
                            self.stats.last_error = Some(error.message);
                            decisions.push(self.fallback(
                                local,
                                &request.key,
                                request.cost,
                                &request.limits,
                                now,
                            ));
                        }
                    }
                }
                if any_ok {
                    self.breaker_until = None;
                }
                decisions
            }
            Err(error) => {
                self.stats.store_errors += requests.len() as u64;
                self.stats.last_error = Some(error.message);
                self.breaker_until = Some(now + self.settings.retry.as_nanos() as u64);
                requests
                    .iter()
                    .map(|r| self.fallback(local, &r.key, r.cost, &r.limits, now))
                    .collect()
            }
        }
    }

    fn decided(&mut self, request: &Request, reply: &Reply, now: u64) -> Decision {
        let limits = &request.limits;
        let nanos = |ms: f64| (ms as u64).saturating_mul(NANOS_PER_MS);
        let mut decision = Decision {
            allowed: reply.code == 1,
            limit: limits.capacity,
            remaining: reply.remaining,
            reset_nanos: nanos(reply.reset_ms),
            retry_after_nanos: 0,
            refusal: None,
        };
        if request.op != Op::Take {
            return decision;
        }
        if decision.allowed {
            self.stats.allowed += 1;
            return decision;
        }
        self.stats.rejected += 1;
        decision.retry_after_nanos = nanos(reply.retry_after_ms.max(1.0));
        let refused = Refused {
            until: now + decision.retry_after_nanos.min(LOCAL_REFUSAL_MAX_NANOS),
            retry_at: now + decision.retry_after_nanos,
            cost: request.cost,
            remaining: reply.remaining,
            full_at: now + decision.reset_nanos,
            blocked: reply.code == 3,
        };
        decision.refusal = Some(match reply.code {
            2 => Refusal::SharedBudget,
            3 => Refusal::Blocked,
            _ => Refusal::KeyLimit,
        });
        if reply.code == 3 {
            self.stats.blocked += 1;
        }
        if reply.code == 2 {
            self.shared_refused = Some(refused);
        } else {
            if self.refused.len() >= self.max_refused {
                self.refused.retain(|_, r| r.until > now);
                if self.refused.len() >= self.max_refused {
                    self.refused.clear();
                }
            }
            self.refused.insert(request.key.clone(), refused);
        }
        decision
    }

    fn fallback(
        &mut self,
        local: &mut RateLimiter,
        key: &str,
        cost: f64,
        limits: &Limits,
        now: u64,
    ) -> Decision {
        self.stats.fallback_decisions += 1;
        match self.on_error {
            OnStoreError::Local => match local.decide(key, cost) {
                Ok(decision) => decision,
                // the cost was checked against these limits when the request was made; a tier
                // change since then can make it too large, which refuses it
                Err(_) => refusal_for(limits, NANOS_PER_MS),
            },
            OnStoreError::Allow => Decision {
                allowed: true,
                limit: limits.capacity,
                remaining: limits.capacity.floor(),
                reset_nanos: 0,
                retry_after_nanos: 0,
                refusal: None,
            },
            OnStoreError::Deny => refusal_for(
                limits,
                self.breaker_until
                    .map_or(self.settings.retry.as_nanos() as u64, |until| {
                        until.saturating_sub(now)
                    })
                    .max(NANOS_PER_MS),
            ),
        }
    }

    /// Stops the store thread once it has answered what was sent; later flushes fail (and are
    /// decided by the policy).
    pub fn close(&mut self) {
        self.closed = true;
        if let Some(store) = &mut self.store {
            store.stop();
        }
    }

    /// The counters, with the store thread's.
    pub fn stats(&self, now: u64) -> RemoteStats {
        let mut stats = self.stats.clone();
        if let Some(store) = &self.store {
            use std::sync::atomic::Ordering::Relaxed;
            let c = store.counters();
            stats.round_trips = c.round_trips.load(Relaxed);
            stats.commands = c.commands.load(Relaxed);
            stats.script_reloads = c.script_reloads.load(Relaxed);
            stats.connects = c.connects.load(Relaxed);
        }
        stats.breaker_open = self.breaker_open(now);
        stats
    }
}

fn refusal_for(limits: &Limits, retry_after_nanos: u64) -> Decision {
    Decision {
        allowed: false,
        limit: limits.capacity,
        remaining: 0.0,
        reset_nanos: 0,
        retry_after_nanos,
        refusal: Some(Refusal::KeyLimit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::{Clock, ManualClock};
    use crate::limiter::redis_store::Outcome;
    use crate::limiter::LimiterConfig;
    use std::sync::Mutex;
    use std::time::Duration;

    const MS: u64 = NANOS_PER_MS;

    type Inbox = Arc<Mutex<Vec<Completion>>>;

    fn setup(
        on_error: OnStoreError,
        url: &str,
    ) -> (RemoteLimiter, RateLimiter, ManualClock, Inbox) {
        let clock = ManualClock::new(1_000_000 * MS);
        let local = RateLimiter::new(
            LimiterConfig::new(Limits::new(3.0, 1.0, 1.0)),
            Clock::Manual(clock.clone()),
        );
        let inbox: Inbox = Arc::default();
        let sink = inbox.clone();
        let mut settings = RedisSettings::new(url);
        settings.retry = Duration::from_secs(2);
        let remote = RemoteLimiter::new(
            settings,
            KeyNaming {
                prefix: "test:".into(),
                shared_budget: false,
            },
            None,
            on_error,
            100,
            Arc::new(move |c| sink.lock().unwrap().push(c)),
        );
        (remote, local, clock, inbox)
    }

    fn reply(code: i64, retry_after_ms: f64) -> Result<Reply, StoreError> {
        Ok(Reply {
            code,
            remaining: 0.0,
            reset_ms: 3_000.0,
            retry_after_ms,
        })
    }

    /// Completes everything pending as one batch that Redis answered with `outcome`.
    fn complete_pending(
        remote: &mut RemoteLimiter,
        local: &mut RateLimiter,
        outcome: Outcome,
    ) -> Vec<Decision> {
        let requests = std::mem::take(&mut remote.pending);
        remote.complete(
            local,
            Completion {
                batch: 0,
                requests,
                outcome,
            },
        )
    }

    #[test]
    fn a_refused_key_is_refused_here_until_its_retry_time() {
        let (mut remote, mut local, clock, _) = setup(OnStoreError::Deny, "redis://127.0.0.1:1/");
        assert_eq!(
            remote.submit(&mut local, "k", 1.0).unwrap(),
            Submitted::Pending
        );
        let decisions = complete_pending(&mut remote, &mut local, Ok(vec![reply(0, 500.0)]));
        assert!(!decisions[0].allowed);
        assert_eq!(decisions[0].retry_after_nanos, 500 * MS);
        // until then: refused without a round trip, with the time left
        clock.advance(200 * MS);
        match remote.submit(&mut local, "k", 1.0).unwrap() {
            Submitted::Now(d) => {
                assert!(!d.allowed);
                assert_eq!(d.retry_after_nanos, 300 * MS);
            }
            other => panic!("expected a local refusal, got {other:?}"),
        }
        // a smaller cost may fit earlier: it goes to Redis
        assert_eq!(
            remote.submit(&mut local, "k", 0.5).unwrap(),
            Submitted::Pending
        );
        // another key is unaffected
        assert_eq!(
            remote.submit(&mut local, "other", 1.0).unwrap(),
            Submitted::Pending
        );
        clock.advance(300 * MS);
        assert_eq!(
            remote.submit(&mut local, "k", 1.0).unwrap(),
            Submitted::Pending
        );
        let stats = remote.stats(local.now());
        assert_eq!(stats.local_refusals, 1);
        assert_eq!(stats.rejected, 2);
    }

    #[test]
    fn a_long_refusal_is_asked_again_after_a_second() {
        let (mut remote, mut local, clock, _) = setup(OnStoreError::Deny, "redis://127.0.0.1:1/");
        remote.submit(&mut local, "k", 1.0).unwrap();
        complete_pending(&mut remote, &mut local, Ok(vec![reply(3, 60_000.0)]));
        clock.advance(999 * MS);
        match remote.submit(&mut local, "k", 1.0).unwrap() {
            Submitted::Now(d) => {
                assert_eq!(d.refusal, Some(Refusal::Blocked));
                assert_eq!(d.retry_after_nanos, 59_001 * MS);
            }
            other => panic!("expected a local refusal, got {other:?}"),
        }
        clock.advance(MS);
        assert_eq!(
            remote.submit(&mut local, "k", 1.0).unwrap(),
            Submitted::Pending
        );
    }

    #[test]
    fn a_failed_batch_opens_the_breaker_and_each_policy_decides() {
        for policy in [OnStoreError::Deny, OnStoreError::Allow, OnStoreError::Local] {
            let (mut remote, mut local, clock, _) = setup(policy, "redis://127.0.0.1:1/");
            for _ in 0..4 {
                remote.submit(&mut local, "k", 1.0).unwrap();
            }
            let decisions = complete_pending(&mut remote, &mut local, Err(StoreError::new("down")));
            let allowed = decisions.iter().filter(|d| d.allowed).count();
            match policy {
                OnStoreError::Deny => assert_eq!(allowed, 0),
                OnStoreError::Allow => assert_eq!(allowed, 4),
                // the in-process limiter has the same limits: capacity 3
                OnStoreError::Local => assert_eq!(allowed, 3),
            }
            // while the breaker is open, decisions are made at once
            assert!(matches!(
                remote.submit(&mut local, "k", 1.0).unwrap(),
                Submitted::Now(_)
            ));
            let stats = remote.stats(local.now());
            assert!(stats.breaker_open);
            assert_eq!(stats.store_errors, 4);
            assert_eq!(stats.fallback_decisions, 5);
            // after the retry delay, decisions go to the store again
            clock.advance(2_000 * MS);
            assert_eq!(
                remote.submit(&mut local, "k", 1.0).unwrap(),
                Submitted::Pending
            );
        }
    }

    #[test]
    fn an_unreachable_redis_fails_the_batch_through_the_thread() {
        let (mut remote, mut local, _, inbox) = setup(OnStoreError::Deny, "redis://127.0.0.1:1/");
        remote.submit(&mut local, "k", 1.0).unwrap();
        let Flushed::Sent(batch) = remote.flush() else {
            panic!("the batch was not sent")
        };
        assert_eq!(remote.in_flight(), 1);
        let completion = loop {
            if let Some(c) = inbox.lock().unwrap().pop() {
                break c;
            }
            std::thread::yield_now();
        };
        assert_eq!(completion.batch, batch);
        assert!(completion.outcome.is_err());
        let decisions = remote.complete(&mut local, completion);
        assert!(!decisions[0].allowed);
        assert_eq!(remote.in_flight(), 0);
        remote.close();
        remote.submit(&mut local, "x", 0.0).unwrap();
    }

    #[test]
    fn commands_apply_here_at_once() {
        let (mut remote, mut local, _, _) = setup(OnStoreError::Deny, "redis://127.0.0.1:1/");
        remote.command(&mut local, Op::Block, "k", 1_000);
        match remote.submit(&mut local, "k", 0.0).unwrap() {
            Submitted::Now(d) => assert_eq!(d.refusal, Some(Refusal::Blocked)),
            other => panic!("expected blocked, got {other:?}"),
        }
        remote.command(&mut local, Op::Block, "k", 0);
        assert_eq!(
            remote.submit(&mut local, "k", 0.0).unwrap(),
            Submitted::Pending
        );
        assert_eq!(remote.pending_len(), 3);
    }
}
