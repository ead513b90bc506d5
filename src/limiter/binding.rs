//! The JS class `RateLimiter` (the native half; `lib/limiter.js` adds `acquire` and `check`).
//!
//! Options are read and validated here into a [`LimiterConfig`], naming the option in every
//! error. The two hot calls (`tryConsume`, and the decision behind `check`) are plain functions
//! bound to the limiter's state (see `common::binding::raw`), made once per limiter by
//! `_fastPath()`: they skip napi-rs's per-call unwrap, and `check`'s figures come back through a
//! shared `Float64Array` so that JS builds the result object, which it does far faster than
//! N-API. The queue methods (`_enqueue`, `_pump`, `_cancel`, `_close`) are the internal
//! interface of the facade's promise-based `acquire`.
//!
//! With `store: { redis }` the buckets live in Redis (see `remote`): `_submit` (a fast-path
//! function) decides at once what this process already knows and queues the rest, `_flush`
//! sends the tick's queue as one batch, and the store thread wakes the facade through a weak
//! ThreadsafeFunction, referenced only while a batch is out (so a pending decision keeps Node
//! alive and an idle limiter never does); `_take` then hands over every completed batch's
//! figures in one `Float64Array`.

use std::cell::{RefCell, UnsafeCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::{Env, JsValue, Unknown};
use napi_derive::napi;

use super::rate_limiter::{block_millis, ceil_ms, Decision, Enqueued, LimiterConfig, RateLimiter};
use super::redis_store::{Completion, KeyNaming, Op};
use super::remote::{Flushed, OnStoreError, RemoteLimiter, Submitted};
use super::Limits;
use crate::common::binding::{
    raw, read_clock, read_cost, throw_coded, throw_invalid, HistogramSnapshot, JsCost, JsKey,
    Mailbox, OptionsReader,
};
use crate::common::clock::NANOS_PER_MS;
use crate::common::error::ErrorCode;
use crate::common::error::{integer_at_least, positive_finite, InvalidInput};
use crate::common::redis::{check_url, RedisSettings};

const LIMITER_OPTIONS: &[&str] = &[
    "capacity",
    "refillPerSecond",
    "weight",
    "tiers",
    "blockDurationMs",
    "global",
    "queue",
    "maxKeys",
    "clock",
    "store",
    "onStoreError",
];
const STORE_OPTIONS: &[&str] = &["redis"];
const REDIS_OPTIONS: &[&str] = &[
    "url",
    "keyPrefix",
    "connectTimeoutMs",
    "commandTimeoutMs",
    "retryMs",
];
const LIMITS_OPTIONS: &[&str] = &["capacity", "refillPerSecond", "weight"];
const GLOBAL_OPTIONS: &[&str] = &["capacity", "refillPerSecond"];
const QUEUE_OPTIONS: &[&str] = &["maxPerClient", "maxTotal", "maxWaitMs"];

/// Reads `capacity`, `refillPerSecond` and (when allowed) `weight` from `reader`; `inherit`
/// supplies values that may be left out.
fn read_limits(
    reader: &OptionsReader,
    inherit: Option<&Limits>,
    with_weight: bool,
) -> std::result::Result<Limits, InvalidInput> {
    let required = |name: &str, inherited: Option<f64>| match reader.number(name)? {
        Some(value) => positive_finite(&reader.path_of(name), value),
        None => inherited.ok_or_else(|| {
            InvalidInput::option_type(format!(
                "{} is required: a finite number greater than 0, received undefined",
                reader.path_of(name)
            ))
        }),
    };
    let capacity = required("capacity", inherit.map(|l| l.capacity))?;
    let refill = required("refillPerSecond", inherit.map(|l| l.refill_per_second))?;
    let weight = if with_weight {
        match reader.number("weight")? {
            Some(value) => positive_finite(&reader.path_of("weight"), value)?,
            None => inherit.map_or(1.0, |l| l.weight),
        }
    } else {
        1.0
    };
    Ok(Limits::new(capacity, refill, weight))
}

/// The Redis store as configured: where, how keys are named, and the failure policy.
struct RemoteConfig {
    settings: RedisSettings,
    prefix: String,
    on_error: OnStoreError,
}

fn read_millis(
    reader: &OptionsReader,
    name: &str,
    default: u64,
) -> std::result::Result<Duration, InvalidInput> {
    match reader.number(name)? {
        None => Ok(Duration::from_millis(default)),
        Some(ms) if (1.0..=3_600_000.0).contains(&ms) => {
            Ok(Duration::from_micros((ms * 1_000.0).round() as u64))
        }
        Some(ms) => Err(InvalidInput::option_range(format!(
            "{} must be a number of milliseconds from 1 to 3600000, received {}",
            reader.path_of(name),
            crate::common::error::describe_number(ms)
        ))),
    }
}

fn read_remote(reader: &OptionsReader) -> std::result::Result<Option<RemoteConfig>, InvalidInput> {
    let on_error = match reader.string("onStoreError")? {
        None => None,
        Some(name) => Some(OnStoreError::parse(&name).ok_or_else(|| {
            InvalidInput::option_range(format!(
                "options.onStoreError must be 'deny', 'allow' or 'local', received string \"{name}\""
            ))
        })?),
    };
    let Some(store) = reader.object("store", STORE_OPTIONS)? else {
        if on_error.is_some() {
            return Err(InvalidInput::option_type(
                "options.onStoreError applies to a remote store: set options.store.redis too",
            ));
        }
        return Ok(None);
    };
    let Some(redis) = store.object("redis", REDIS_OPTIONS)? else {
        return Err(InvalidInput::option_type(
            "options.store must name a store: { redis: { url, keyPrefix } }, received an object without redis",
        ));
    };
    let url = redis
        .string("url")?
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
    check_url(&url).map_err(|e| {
        InvalidInput::option_range(format!(
            "options.store.redis.url must be a Redis URL (redis://host:port), received string \"{url}\": {e}"
        ))
    })?;
    let prefix = redis
        .string("keyPrefix")?
        .unwrap_or_else(|| "bulwark:rl:".to_string());
    if prefix.contains('{') || prefix.contains('}') {
        return Err(InvalidInput::option_range(format!(
            "options.store.redis.keyPrefix must not contain braces (the limiter adds the hash tag itself), received string \"{prefix}\""
        )));
    }
    let mut settings = RedisSettings::new(url);
    settings.connect_timeout = read_millis(&redis, "connectTimeoutMs", 500)?;
    settings.command_timeout = read_millis(&redis, "commandTimeoutMs", 1_000)?;
    settings.retry = read_millis(&redis, "retryMs", 1_000)?;
    Ok(Some(RemoteConfig {
        settings,
        prefix,
        on_error: on_error.unwrap_or(OnStoreError::Local),
    }))
}

type Config = (LimiterConfig, crate::common::Clock, Option<RemoteConfig>);

fn read_config(env: Env, options: Unknown) -> std::result::Result<Config, InvalidInput> {
    let Some(reader) = OptionsReader::open(env.raw(), options.raw(), "options", LIMITER_OPTIONS)?
    else {
        return Err(InvalidInput::option_type(
            "options is required: an object with capacity and refillPerSecond, received undefined",
        ));
    };
    let mut config = LimiterConfig::new(read_limits(&reader, None, true)?);
    for (name, tier) in reader.named_objects("tiers", LIMITS_OPTIONS)? {
        config.tiers.insert(name, read_limits(&tier, None, true)?);
    }
    if let Some(ms) = reader.number("blockDurationMs")? {
        config.block_nanos = block_millis("options.blockDurationMs", ms, true)? * NANOS_PER_MS;
    }
    if let Some(global) = reader.object("global", GLOBAL_OPTIONS)? {
        config.global = Some(read_limits(&global, None, false)?);
    }
    if let Some(queue) = reader.object("queue", QUEUE_OPTIONS)? {
        if let Some(n) = queue.number("maxPerClient")? {
            config.queue.max_per_client =
                integer_at_least(&queue.path_of("maxPerClient"), n, 1)? as usize;
        }
        if let Some(n) = queue.number("maxTotal")? {
            config.queue.max_total = integer_at_least(&queue.path_of("maxTotal"), n, 1)? as usize;
        }
        if let Some(ms) = queue.number("maxWaitMs")? {
            config.queue.max_wait_nanos = wait_millis(&queue.path_of("maxWaitMs"), ms, true)?;
        }
    }
    if let Some(n) = reader.number("maxKeys")? {
        config.max_keys = integer_at_least("options.maxKeys", n, 1)? as usize;
    }
    let clock = read_clock(&reader)?;
    let remote = read_remote(&reader)?;
    Ok((config, clock, remote))
}

/// Validates a wait in milliseconds (finite, >= 0) and converts it to nanoseconds.
fn wait_millis(name: &str, ms: f64, option: bool) -> std::result::Result<u64, InvalidInput> {
    if ms.is_finite() && ms >= 0.0 && ms <= 2f64.powi(40) {
        Ok((ms * 1e6).round() as u64)
    } else {
        let message = format!(
            "{name} must be a finite number of milliseconds >= 0, received {}",
            crate::common::error::describe_number(ms)
        );
        Err(if option {
            InvalidInput::option_range(message)
        } else {
            InvalidInput::argument_range(message)
        })
    }
}

/// The result of `check`: the same decision as `tryConsume`, as an object.
#[napi(object)]
pub struct RateLimitDecision {
    /// Whether the request was admitted (and its tokens taken).
    pub allowed: bool,
    /// The key's capacity.
    pub limit: f64,
    /// Whole tokens the key holds after the decision.
    pub remaining: f64,
    /// Milliseconds until the key's bucket is full again.
    pub reset_ms: f64,
    /// Milliseconds until the same request would be admitted (0 when allowed).
    pub retry_after_ms: f64,
}

impl From<Decision> for RateLimitDecision {
    fn from(d: Decision) -> Self {
        RateLimitDecision {
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            reset_ms: ceil_ms(d.reset_nanos),
            retry_after_ms: if d.allowed {
                0.0
            } else {
                ceil_ms(d.retry_after_nanos).max(1.0)
            },
        }
    }
}

/// Wait times of granted `acquire` calls, in milliseconds.
#[napi(object)]
pub struct WaitSummary {
    /// Median wait.
    pub p50: f64,
    /// 95th percentile wait.
    pub p95: f64,
    /// 99th percentile wait.
    pub p99: f64,
    /// Longest wait.
    pub max: f64,
}

/// Counters of a limiter since it was created.
#[napi(object)]
pub struct RateLimiterStats {
    /// Requests admitted, at once or after waiting.
    pub allowed: f64,
    /// Requests refused, including blocked ones and `acquire` calls that were turned down.
    pub rejected: f64,
    /// Refusals because the key was blocked.
    pub blocked: f64,
    /// `acquire` calls waiting now.
    pub queued: f64,
    /// `acquire` calls granted after waiting.
    pub waited: f64,
    /// `acquire` calls that reached their deadline.
    pub timed_out: f64,
    /// Keys held in memory.
    pub keys: f64,
    /// Keys evicted to stay within `maxKeys`.
    pub evicted: f64,
    /// How long granted `acquire` calls waited.
    pub wait_ms: WaitSummary,
    /// The same waits as a histogram (bounds from 1 ms to 10 s).
    pub wait_histogram: HistogramSnapshot,
}

/// What `_enqueue` did: `granted` (with `decision`), `queued` (with `id`) or `rejected` (with
/// `reason` and `retryAfterMs`).
#[napi(object)]
pub struct EnqueueOutcome {
    /// `granted`, `queued` or `rejected`.
    pub status: String,
    /// The waiter id when queued.
    pub id: Option<f64>,
    /// The decision when granted.
    pub decision: Option<RateLimitDecision>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// When to try again, when rejected.
    pub retry_after_ms: Option<f64>,
}

/// One waiter granted by `_pump`.
#[napi(object)]
pub struct GrantedWaiter {
    /// The waiter id.
    pub id: f64,
    /// Its decision.
    pub decision: RateLimitDecision,
}

/// What `_pump` did.
#[napi(object)]
pub struct PumpOutcome {
    /// Waiters granted, in the order they were served.
    pub granted: Vec<GrantedWaiter>,
    /// Waiters that reached their deadline.
    pub expired: Vec<f64>,
    /// Milliseconds until the next pump is due; absent when nobody waits.
    pub next_wake_ms: Option<f64>,
}

/// The remote half and its plumbing.
struct Remote {
    core: RefCell<RemoteLimiter>,
    mailbox: Arc<Mailbox<Completion>>,
    /// Whether the wake-up function is referenced now.
    referenced: std::cell::Cell<bool>,
}

/// What the class and its fast-path functions share.
struct Shared {
    limiter: RefCell<RateLimiter>,
    /// The figures of the last `_decide`: limit, remaining, resetMs, retryAfterMs.
    decision: UnsafeCell<[f64; 4]>,
    /// The Redis half, when the store is remote.
    remote: Option<Remote>,
}

/// Figures per request in what `_take` returns: allowed, limit, remaining, resetMs,
/// retryAfterMs.
const TAKE_FIGURES: usize = 5;

/// 1 allowed, 0 refused, -1 refused because the key is blocked.
fn outcome_code(decision: &Decision) -> f64 {
    if decision.allowed {
        1.0
    } else if decision.refusal == Some(super::Refusal::Blocked) {
        -1.0
    } else {
        0.0
    }
}

fn push_figures(out: &mut Vec<f64>, decision: Decision) {
    let code = outcome_code(&decision);
    let d: RateLimitDecision = decision.into();
    out.extend_from_slice(&[code, d.limit, d.remaining, d.reset_ms, d.retry_after_ms]);
}

/// Counters of a Redis store.
#[napi(object)]
pub struct StoreStats {
    /// `redis`.
    pub kind: String,
    /// Batches sent (each tick's decisions form one).
    pub batches: f64,
    /// Pipelines sent to Redis (batches queued while one was out share the next).
    pub round_trips: f64,
    /// Script calls sent (one decides a whole batch, up to 512 requests).
    pub commands: f64,
    /// Refusals made in this process from the refusal cache, without a round trip.
    pub local_refusals: f64,
    /// Decisions made by the `onStoreError` policy because Redis failed or the breaker was open.
    pub fallback_decisions: f64,
    /// Requests whose batch or reply failed.
    pub errors: f64,
    /// Times the script was loaded again after a `NOSCRIPT` reply.
    pub script_reloads: f64,
    /// Connections made to Redis.
    pub connects: f64,
    /// Whether the breaker is open (decisions go to the policy without trying Redis).
    pub breaker_open: bool,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// `_submit(key, cost = 1)`: decided here and now, 1 allowed, 0 refused or -1 blocked (the
/// figures in the shared array); 2 queued for the next batch.
unsafe extern "C" fn submit(
    env: napi::sys::napi_env,
    info: napi::sys::napi_callback_info,
) -> napi::sys::napi_value {
    unsafe {
        with_limiter(env, info, |shared, limiter, key, cost| {
            let Some(remote) = &shared.remote else {
                return Err(InvalidInput::argument_type(
                    "the limiter has no remote store",
                ));
            };
            match remote.core.borrow_mut().submit(limiter, key, cost)? {
                Submitted::Pending => Ok(raw::number(env, 2.0)),
                Submitted::Now(decision) => {
                    let code = outcome_code(&decision);
                    let d: RateLimitDecision = decision.into();
                    *shared.decision.get() = [d.limit, d.remaining, d.reset_ms, d.retry_after_ms];
                    Ok(raw::number(env, code))
                }
            }
        })
    }
}

/// A token-bucket rate limiter keyed by client (the native class; see `index.d.ts`).
#[napi(js_name = "RateLimiter")]
pub struct RateLimiterBinding {
    shared: Rc<Shared>,
}

/// Runs `f` on the limiter behind a fast-path call, turning errors into JS exceptions.
#[inline]
unsafe fn with_limiter(
    env: napi::sys::napi_env,
    info: napi::sys::napi_callback_info,
    f: impl FnOnce(
        &Shared,
        &mut RateLimiter,
        &str,
        f64,
    ) -> std::result::Result<napi::sys::napi_value, InvalidInput>,
) -> napi::sys::napi_value {
    let (args, argc, shared) = unsafe { raw::args::<Shared, 2>(env, info) };
    let key = match unsafe { JsKey::read(env, args[0]) } {
        Ok(key) => key,
        Err(e) => {
            throw_invalid(env, e);
            return std::ptr::null_mut();
        }
    };
    let cost = match if argc < 2 {
        Ok(1.0)
    } else {
        read_cost(env, args[1])
    } {
        Ok(cost) => cost,
        Err(e) => {
            throw_invalid(env, e);
            return std::ptr::null_mut();
        }
    };
    let Ok(mut limiter) = shared.limiter.try_borrow_mut() else {
        throw_coded(
            env,
            ErrorCode::InvalidArgument,
            "the limiter was called re-entrantly",
        );
        return std::ptr::null_mut();
    };
    match f(shared, &mut limiter, key.as_str(), cost) {
        Ok(value) => value,
        Err(e) => {
            throw_invalid(env, e);
            std::ptr::null_mut()
        }
    }
}

/// `tryConsume(key, cost = 1)`: tokens left, or minus the milliseconds to wait.
unsafe extern "C" fn try_consume(
    env: napi::sys::napi_env,
    info: napi::sys::napi_callback_info,
) -> napi::sys::napi_value {
    unsafe {
        with_limiter(env, info, |_, limiter, key, cost| {
            Ok(raw::number(env, limiter.decide(key, cost)?.as_number()))
        })
    }
}

/// `_decide(key, cost = 1)`: whether allowed; the other figures go to the shared array.
unsafe extern "C" fn decide_into_shared(
    env: napi::sys::napi_env,
    info: napi::sys::napi_callback_info,
) -> napi::sys::napi_value {
    unsafe {
        with_limiter(env, info, |shared, limiter, key, cost| {
            let decision: RateLimitDecision = limiter.decide(key, cost)?.into();
            *shared.decision.get() = [
                decision.limit,
                decision.remaining,
                decision.reset_ms,
                decision.retry_after_ms,
            ];
            Ok(raw::boolean(env, decision.allowed))
        })
    }
}

#[napi]
impl RateLimiterBinding {
    /// Creates a limiter; every option is validated and unknown options are refused.
    #[napi(constructor, ts_args_type = "options: RateLimiterOptions")]
    pub fn new(env: Env, options: Unknown) -> Result<Self> {
        let (config, clock, remote) =
            read_config(env, options).map_err(|e| throw_invalid(env.raw(), e))?;
        let remote = remote.map(|remote| {
            let mailbox = Arc::new(Mailbox::default());
            let sink = mailbox.clone();
            Remote {
                core: RefCell::new(RemoteLimiter::new(
                    remote.settings,
                    KeyNaming {
                        prefix: remote.prefix,
                        shared_budget: config.global.is_some(),
                    },
                    config.global,
                    remote.on_error,
                    config.max_keys,
                    Arc::new(move |completion| sink.post(completion)),
                )),
                mailbox,
                referenced: std::cell::Cell::new(false),
            }
        });
        let is_remote = remote.is_some();
        let shared = Rc::new(Shared {
            limiter: RefCell::new(RateLimiter::new(config, clock)),
            decision: UnsafeCell::new([0.0; 4]),
            remote,
        });
        if is_remote {
            // a worker that exits stops the store thread even if the limiter was never closed
            let weak = Rc::downgrade(&shared);
            env.add_env_cleanup_hook(weak, |weak| {
                if let Some(shared) = weak.upgrade() {
                    if let Some(remote) = &shared.remote {
                        remote.core.borrow_mut().close();
                        remote.mailbox.detach();
                    }
                }
            })?;
        }
        Ok(RateLimiterBinding { shared })
    }

    /// Whether the buckets live in a remote store (Redis).
    #[napi(getter, js_name = "_remote")]
    pub fn is_remote(&self) -> bool {
        self.shared.remote.is_some()
    }

    /// Internal (used by the facade's constructor): the remote fast path,
    /// `{ submit, decision }`, where `submit(key, cost)` returns 1 (allowed), 0 (refused) or -1
    /// (blocked) when decided here, with the figures in `decision`, and 2 when queued for the
    /// next batch.
    #[napi(
        js_name = "_remoteFastPath",
        ts_return_type = "{ submit(key: string, cost?: number): number; decision: Float64Array }"
    )]
    pub fn remote_fast_path<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let decision = self.shared.decision.get() as *mut f64;
        // SAFETY: the callback reads its data as `Rc<Shared>`; `decision` is owned by it.
        unsafe {
            raw::fast_path_object(
                env,
                &self.shared,
                &[("submit", submit)],
                ("decision", decision, 4),
            )
        }
    }

    /// Internal: the function the store thread calls (with `id`) when batches complete.
    #[napi(
        js_name = "_attachStore",
        ts_args_type = "wake: (id: number) => void, id: number"
    )]
    pub fn attach_store(&self, wake: Function<u32, ()>, id: u32) -> Result<()> {
        let Some(remote) = &self.shared.remote else {
            return Ok(());
        };
        remote.mailbox.attach(wake, id)
    }

    /// Internal: sends the requests queued this tick as one batch; its id (0 when none).
    #[napi(js_name = "_flush")]
    pub fn flush(&self, env: Env) -> f64 {
        let Some(remote) = &self.shared.remote else {
            return 0.0;
        };
        let flushed = remote.core.borrow_mut().flush();
        match flushed {
            Flushed::Empty => 0.0,
            Flushed::Sent(id) => {
                self.reference(&env, remote, true);
                id as f64
            }
            Flushed::Failed(completion) => {
                let id = completion.batch as f64;
                self.reference(&env, remote, true);
                remote.mailbox.post(completion);
                id
            }
        }
    }

    fn reference(&self, env: &Env, remote: &Remote, on: bool) {
        if remote.referenced.get() != on && remote.mailbox.reference(env, on) {
            remote.referenced.set(on);
        }
    }

    /// Internal: every completed batch as `[id, n, ...n x (code, limit, remaining, resetMs,
    /// retryAfterMs)]`, batch after batch (code: 1 allowed, 0 refused, -1 blocked).
    #[napi(js_name = "_take")]
    pub fn take(&self, env: Env) -> Float64Array {
        let Some(remote) = &self.shared.remote else {
            return Float64Array::new(Vec::new());
        };
        let completions = remote.mailbox.take_all();
        let mut out = Vec::new();
        let mut limiter = self.shared.limiter.borrow_mut();
        let mut core = remote.core.borrow_mut();
        for completion in completions {
            out.push(completion.batch as f64);
            out.push(completion.requests.len() as f64);
            out.reserve(completion.requests.len() * TAKE_FIGURES);
            for decision in core.complete(&mut limiter, completion) {
                push_figures(&mut out, decision);
            }
        }
        let idle = core.in_flight() == 0;
        drop(core);
        if idle {
            self.reference(&env, remote, false);
        }
        Float64Array::new(out)
    }

    /// Internal: queues `reset` / `block` / `unblock` of a key for Redis and applies it here.
    #[napi(
        js_name = "_storeCommand",
        ts_args_type = "op: string, key: string, ms?: number"
    )]
    pub fn store_command(&self, env: Env, op: String, key: JsKey, ms: Option<f64>) -> Result<()> {
        let Some(remote) = &self.shared.remote else {
            return Ok(());
        };
        let (op, ms) = match op.as_str() {
            "reset" => (Op::Reset, 0),
            "unblock" => (Op::Block, 0),
            _ => (
                Op::Block,
                block_millis("ms", ms.unwrap_or(0.0), false)
                    .map_err(|e| throw_invalid(env.raw(), e))?,
            ),
        };
        let mut limiter = self.shared.limiter.borrow_mut();
        remote
            .core
            .borrow_mut()
            .command(&mut limiter, op, key.as_str(), ms);
        Ok(())
    }

    /// Internal (used by `close`): stops the store thread once it has answered what was sent.
    #[napi(js_name = "_closeStore")]
    pub fn close_store(&self) {
        if let Some(remote) = &self.shared.remote {
            remote.core.borrow_mut().close();
        }
    }

    /// Counters of the remote store; absent for an in-memory limiter.
    #[napi(js_name = "_storeStats")]
    pub fn store_stats(&self) -> Option<StoreStats> {
        let remote = self.shared.remote.as_ref()?;
        let now = self.shared.limiter.borrow().now();
        let s = remote.core.borrow().stats(now);
        Some(StoreStats {
            kind: "redis".into(),
            batches: s.batches as f64,
            round_trips: s.round_trips as f64,
            commands: s.commands as f64,
            local_refusals: s.local_refusals as f64,
            fallback_decisions: s.fallback_decisions as f64,
            errors: s.store_errors as f64,
            script_reloads: s.script_reloads as f64,
            connects: s.connects as f64,
            breaker_open: s.breaker_open,
            last_error: s.last_error,
        })
    }

    /// Internal (used by the facade's constructor): the hot-path functions bound to this
    /// limiter, `{ tryConsume, decide, decision }`, where `decide(key, cost)` returns whether
    /// the request was allowed and writes limit, remaining, resetMs and retryAfterMs into the
    /// `decision` Float64Array.
    #[napi(
        js_name = "_fastPath",
        ts_return_type = "{ tryConsume(key: string, cost?: number): number; decide(key: string, cost?: number): boolean; decision: Float64Array }"
    )]
    pub fn fast_path<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let decision = self.shared.decision.get() as *mut f64;
        // SAFETY: both callbacks read their data as `Rc<Shared>`; `decision` is owned by it.
        unsafe {
            raw::fast_path_object(
                env,
                &self.shared,
                &[("tryConsume", try_consume), ("decide", decide_into_shared)],
                ("decision", decision, 4),
            )
        }
    }

    /// Whole tokens the key holds now, without taking any.
    #[napi(ts_args_type = "key: string")]
    pub fn peek(&mut self, key: JsKey) -> f64 {
        self.shared.limiter.borrow_mut().peek(key.as_str())
    }

    /// Refills the key and lifts any block on it.
    #[napi(ts_args_type = "key: string")]
    pub fn reset(&mut self, key: JsKey) {
        self.shared.limiter.borrow_mut().reset(key.as_str())
    }

    /// Refuses every request of `key` for `ms` milliseconds.
    #[napi(ts_args_type = "key: string, ms: number")]
    pub fn block(&mut self, env: Env, key: JsKey, ms: f64) -> Result<()> {
        let ms = block_millis("ms", ms, false).map_err(|e| throw_invalid(env.raw(), e))?;
        self.shared.limiter.borrow_mut().block(key.as_str(), ms);
        Ok(())
    }

    /// Lifts a block on `key`.
    #[napi(ts_args_type = "key: string")]
    pub fn unblock(&mut self, key: JsKey) {
        self.shared.limiter.borrow_mut().unblock(key.as_str())
    }

    /// Puts `key` in the named tier from the next request on.
    #[napi(ts_args_type = "key: string, tier: string")]
    pub fn set_client_tier(&mut self, env: Env, key: JsKey, tier: Unknown) -> Result<()> {
        let raw = tier.raw();
        let Some(name) = crate::common::binding::read_string(env.raw(), raw) else {
            return Err(throw_invalid(
                env.raw(),
                InvalidInput::argument_type(format!(
                    "tier must be a string, received {}",
                    crate::common::binding::describe_value(env.raw(), raw)
                )),
            ));
        };
        self.shared
            .limiter
            .borrow_mut()
            .set_client_tier(key.as_str(), &name)
            .map_err(|e| throw_invalid(env.raw(), e))
    }

    /// Gives `key` its own limits from the next request on (omitted figures keep the
    /// defaults).
    #[napi(ts_args_type = "key: string, limits: ClientLimits")]
    pub fn set_client_limits(&mut self, env: Env, key: JsKey, limits: Unknown) -> Result<()> {
        let read = || {
            let reader = OptionsReader::open(env.raw(), limits.raw(), "limits", LIMITS_OPTIONS)?
                .ok_or_else(|| {
                    InvalidInput::argument_type("limits must be an object, received undefined")
                })?;
            read_limits(
                &reader,
                Some(&self.shared.limiter.borrow().config().limits),
                true,
            )
        };
        let limits = read().map_err(|e| throw_invalid(env.raw(), e))?;
        self.shared
            .limiter
            .borrow_mut()
            .set_client_limits(key.as_str(), limits);
        Ok(())
    }

    /// Returns `key` to the default limits.
    #[napi(ts_args_type = "key: string")]
    pub fn clear_client(&mut self, key: JsKey) {
        self.shared.limiter.borrow_mut().clear_client(key.as_str())
    }

    /// A snapshot of the counters.
    #[napi]
    pub fn stats(&self) -> RateLimiterStats {
        let mut s = self.shared.limiter.borrow_mut().stats();
        if let Some(remote) = &self.shared.remote {
            let r = remote.core.borrow().stats(0);
            s.allowed += r.allowed;
            s.rejected += r.rejected;
            s.blocked += r.blocked;
        }
        let ms = |micros: u64| micros as f64 / 1_000.0;
        RateLimiterStats {
            allowed: s.allowed as f64,
            rejected: s.rejected as f64,
            blocked: s.blocked as f64,
            queued: s.queued as f64,
            waited: s.waited as f64,
            timed_out: s.timed_out as f64,
            keys: s.keys as f64,
            evicted: s.evicted as f64,
            wait_ms: WaitSummary {
                p50: ms(s.wait_micros.p50),
                p95: ms(s.wait_micros.p95),
                p99: ms(s.wait_micros.p99),
                max: ms(s.wait_micros.max),
            },
            wait_histogram: HistogramSnapshot::of_micros(
                &s.wait_buckets,
                s.wait_sum_micros as f64 / 1_000.0,
                s.wait_micros.count,
            ),
        }
    }

    /// Internal (used by `acquire`): grants, queues or rejects a waiting request.
    #[napi(
        js_name = "_enqueue",
        ts_args_type = "key: string, cost?: number, maxWaitMs?: number"
    )]
    pub fn enqueue(
        &mut self,
        env: Env,
        key: JsKey,
        cost: JsCost,
        max_wait_ms: Option<f64>,
    ) -> Result<EnqueueOutcome> {
        let run = || {
            let max_wait = max_wait_ms
                .map(|ms| wait_millis("maxWaitMs", ms, false))
                .transpose()?;
            self.shared
                .limiter
                .borrow_mut()
                .enqueue(key.as_str(), cost.0, max_wait)
        };
        let outcome = run().map_err(|e| throw_invalid(env.raw(), e))?;
        Ok(match outcome {
            Enqueued::Granted(decision) => EnqueueOutcome {
                status: "granted".into(),
                id: None,
                decision: Some(decision.into()),
                reason: None,
                retry_after_ms: None,
            },
            Enqueued::Queued(id) => EnqueueOutcome {
                status: "queued".into(),
                id: Some(id as f64),
                decision: None,
                reason: None,
                retry_after_ms: None,
            },
            Enqueued::Rejected {
                reason,
                retry_after_nanos,
            } => EnqueueOutcome {
                status: "rejected".into(),
                id: None,
                decision: None,
                reason: Some(reason.as_str().into()),
                retry_after_ms: Some(ceil_ms(retry_after_nanos)),
            },
        })
    }

    /// Internal (used by `acquire`): grants what can be granted and expires what is due.
    #[napi(js_name = "_pump")]
    pub fn pump(&mut self) -> PumpOutcome {
        let pumped = self.shared.limiter.borrow_mut().pump();
        PumpOutcome {
            granted: pumped
                .granted
                .into_iter()
                .map(|(id, decision)| GrantedWaiter {
                    id: id as f64,
                    decision: decision.into(),
                })
                .collect(),
            expired: pumped.expired.into_iter().map(|id| id as f64).collect(),
            next_wake_ms: pumped.next_wake_nanos.map(|n| n as f64 / 1e6),
        }
    }

    /// Internal (used by `acquire`): removes an aborted waiter; true when it was queued.
    #[napi(js_name = "_cancel")]
    pub fn cancel(&mut self, id: f64) -> bool {
        self.shared.limiter.borrow_mut().cancel(id as u64)
    }

    /// Internal (used by `close`): refuses every waiter and later `acquire`; returns the ids.
    #[napi(js_name = "_close")]
    pub fn close_queue(&mut self) -> Vec<f64> {
        self.shared
            .limiter
            .borrow_mut()
            .close()
            .into_iter()
            .map(|id| id as f64)
            .collect()
    }

    /// The default capacity (tokens a key's bucket holds when full).
    #[napi(getter)]
    pub fn capacity(&self) -> f64 {
        self.shared.limiter.borrow().config().limits.capacity
    }

    /// The default refill rate, in tokens per second.
    #[napi(getter)]
    pub fn refill_per_second(&self) -> f64 {
        self.shared
            .limiter
            .borrow()
            .config()
            .limits
            .refill_per_second
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.shared.limiter.borrow_mut().is_closed()
    }
}
