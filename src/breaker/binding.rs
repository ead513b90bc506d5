//! The JS class `CircuitBreaker` (the native half; `lib/breaker.js` adds `fire`, timeouts,
//! the fallback and the events).
//!
//! Options are read and validated here into a [`BreakerConfig`], naming the option in every
//! error. A call through the breaker makes two crossings, both plain functions bound to the
//! breaker's state (see `common::binding::raw`), made once per breaker by `_fastPath()`:
//!
//! - `acquire()` returns a ticket (> 0) when the call may go, 0 when it is refused;
//! - `record(ticket, startNanos, outcome)` returns whether the state changed.
//!
//! The other figures go through one shared `Float64Array` (see [`Figures`]), so that neither
//! crossing builds an object: retryAfterMs of a refusal, the start time of an admitted call,
//! the state code and transition count after every crossing, and the last call's duration.

use std::cell::{RefCell, UnsafeCell};
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::{sys, Env, JsValue, Unknown};
use napi_derive::napi;

use super::circuit::{BreakerConfig, CircuitBreaker, Outcome, Permit, WindowKind};
use crate::common::binding::{raw, read_clock, throw_coded, throw_invalid, OptionsReader};
use crate::common::clock::NANOS_PER_MS;
use crate::common::error::{describe_number, integer_at_least, ErrorCode, InvalidInput};
use crate::common::Clock;

/// Options the constructor accepts; `name`, `critical`, `fallback` and `isFailure` are read by
/// the facade, the rest here.
const BREAKER_OPTIONS: &[&str] = &[
    "name",
    "failureRateThreshold",
    "slowCallRateThreshold",
    "slowCallMs",
    "minimumCalls",
    "windowMs",
    "windowSize",
    "openMs",
    "halfOpenMaxCalls",
    "halfOpenMaxWaitMs",
    "timeoutMs",
    "isFailure",
    "fallback",
    "critical",
    "clock",
];

/// The longest time window: one bucket per second, so this bounds its memory.
const MAX_WINDOW_MS: f64 = 3_600_000.0;
/// The largest count window.
const MAX_WINDOW_SIZE: u64 = 1_000_000;
/// The longest `timeoutMs`: what `setTimeout` accepts.
const MAX_TIMEOUT_MS: f64 = 2_147_483_647.0;
/// The longest of the other durations (about 35 years).
const MAX_DURATION_MS: f64 = 1e12;

/// Indices into the shared `Float64Array`.
struct Figures;
impl Figures {
    /// Milliseconds until a refused call may succeed (`Infinity` while forced open).
    const RETRY_AFTER_MS: usize = 0;
    /// Start of the admitted call on the breaker's clock, in nanoseconds.
    const START_NANOS: usize = 1;
    /// The state code (see `State`).
    const STATE: usize = 2;
    /// Transitions since creation.
    const TRANSITIONS: usize = 3;
    /// Duration of the last recorded call, in milliseconds.
    const DURATION_MS: usize = 4;
    // Written by `_stats()` only, read by the facade's `stats()`: the counters since creation,
    // the window's rates and counts, and when the state last changed.
    const CALLS: usize = 5;
    const FAILURES: usize = 6;
    const SLOW_CALLS: usize = 7;
    const REJECTED: usize = 8;
    const TIMEOUTS: usize = 9;
    const FAILURE_RATE: usize = 10;
    const SLOW_CALL_RATE: usize = 11;
    const LAST_TRANSITION_AT: usize = 12;
    const WINDOW_CALLS: usize = 13;
    const WINDOW_FAILURES: usize = 14;
    const WINDOW_SLOW_CALLS: usize = 15;
    const LEN: usize = 16;
}

fn threshold(reader: &OptionsReader, name: &str) -> std::result::Result<Option<f64>, InvalidInput> {
    let Some(value) = reader.number(name)? else {
        return Ok(None);
    };
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(Some(value))
    } else {
        Err(InvalidInput::option_range(format!(
            "{} must be a number in (0, 1], received {}",
            reader.path_of(name),
            describe_number(value)
        )))
    }
}

/// A duration option in ms (finite, > 0, at most `max`), as nanoseconds.
fn millis(
    reader: &OptionsReader,
    name: &str,
    max: f64,
) -> std::result::Result<Option<u64>, InvalidInput> {
    let Some(value) = reader.number(name)? else {
        return Ok(None);
    };
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(Some((value * NANOS_PER_MS as f64).round().max(1.0) as u64))
    } else {
        Err(InvalidInput::option_range(format!(
            "{} must be a number of milliseconds greater than 0 and at most {}, received {}",
            reader.path_of(name),
            describe_number(max),
            describe_number(value)
        )))
    }
}

fn integer_in(
    reader: &OptionsReader,
    name: &str,
    max: u64,
) -> std::result::Result<Option<u64>, InvalidInput> {
    let Some(value) = reader.number(name)? else {
        return Ok(None);
    };
    let n = integer_at_least(&reader.path_of(name), value, 1)?;
    if n > max {
        return Err(InvalidInput::option_range(format!(
            "{} must be at most {max}, received {n}",
            reader.path_of(name)
        )));
    }
    Ok(Some(n))
}

fn read_config(
    env: Env,
    options: Unknown,
) -> std::result::Result<(BreakerConfig, Clock), InvalidInput> {
    let mut config = BreakerConfig::default();
    let Some(reader) = OptionsReader::open(env.raw(), options.raw(), "options", BREAKER_OPTIONS)?
    else {
        return Ok((config, Clock::system()));
    };
    if let Some(t) = threshold(&reader, "failureRateThreshold")? {
        config.failure_rate_threshold = t;
    }
    config.slow_call_nanos = millis(&reader, "slowCallMs", MAX_DURATION_MS)?;
    if let Some(t) = threshold(&reader, "slowCallRateThreshold")? {
        if config.slow_call_nanos.is_none() {
            return Err(InvalidInput::option_type(
                "options.slowCallRateThreshold needs options.slowCallMs (the duration above which a call is slow)",
            ));
        }
        config.slow_call_rate_threshold = t;
    }
    let window_ms = reader.number("windowMs")?;
    let window_size = integer_in(&reader, "windowSize", MAX_WINDOW_SIZE)?;
    config.window = match (window_ms, window_size) {
        (Some(_), Some(_)) => {
            return Err(InvalidInput::option_type(
                "options.windowMs and options.windowSize cannot both be set: a window is either time-based or count-based",
            ))
        }
        (Some(ms), None) => {
            if !(ms.is_finite() && (1000.0..=MAX_WINDOW_MS).contains(&ms) && ms % 1000.0 == 0.0) {
                return Err(InvalidInput::option_range(format!(
                    "options.windowMs must be a whole number of seconds (a multiple of 1000) from 1000 to {MAX_WINDOW_MS}, received {}",
                    describe_number(ms)
                )));
            }
            WindowKind::Time {
                buckets: (ms / 1000.0) as usize,
            }
        }
        (None, Some(size)) => WindowKind::Count {
            size: size as usize,
        },
        (None, None) => config.window,
    };
    if let Some(n) = integer_in(&reader, "minimumCalls", u32::MAX as u64)? {
        config.minimum_calls = n;
    }
    if let WindowKind::Count { size } = config.window {
        if config.minimum_calls > size as u64 {
            return Err(InvalidInput::option_range(format!(
                "options.minimumCalls ({}) must be at most options.windowSize ({size}), or the breaker could never open",
                config.minimum_calls
            )));
        }
    }
    if let Some(nanos) = millis(&reader, "openMs", MAX_DURATION_MS)? {
        config.open_nanos = nanos;
    }
    if let Some(n) = integer_in(&reader, "halfOpenMaxCalls", 1_000_000)? {
        config.half_open_max_calls = n as u32;
    }
    let timeout = millis(&reader, "timeoutMs", MAX_TIMEOUT_MS)?;
    config.half_open_max_wait_nanos = match millis(&reader, "halfOpenMaxWaitMs", MAX_DURATION_MS)? {
        Some(nanos) => nanos,
        None => config.open_nanos.max(timeout.unwrap_or(0)),
    };
    let clock = read_clock(&reader)?;
    Ok((config, clock))
}

/// What the class and its fast-path functions share.
struct Shared {
    breaker: RefCell<CircuitBreaker>,
    figures: UnsafeCell<[f64; Figures::LEN]>,
}

impl Shared {
    /// Writes the state code and the transition count for JS.
    #[inline]
    fn publish(&self, breaker: &CircuitBreaker) {
        let figures = unsafe { &mut *self.figures.get() };
        figures[Figures::STATE] = breaker.state() as u8 as f64;
        figures[Figures::TRANSITIONS] = breaker.transitions() as f64;
    }
}

/// A circuit breaker (the native class; see `index.d.ts`).
#[napi(js_name = "CircuitBreaker")]
pub struct CircuitBreakerBinding {
    shared: Rc<Shared>,
    /// For the system clock: epoch ms and clock nanos at creation, to report wall times.
    wall_origin: Option<(f64, u64)>,
}

/// Borrows the breaker behind a fast-path call; throws when called re-entrantly.
#[inline]
unsafe fn borrow<'a>(
    env: sys::napi_env,
    shared: &'a Shared,
) -> Option<std::cell::RefMut<'a, CircuitBreaker>> {
    match shared.breaker.try_borrow_mut() {
        Ok(b) => Some(b),
        Err(_) => {
            throw_coded(
                env,
                ErrorCode::InvalidArgument,
                "the breaker was called re-entrantly",
            );
            None
        }
    }
}

/// `acquire()`: a ticket (> 0) when the call may go, 0 when refused.
unsafe extern "C" fn acquire(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let (_, _, shared) = unsafe { raw::args::<Shared, 0>(env, info) };
    let Some(mut breaker) = (unsafe { borrow(env, shared) }) else {
        return std::ptr::null_mut();
    };
    let permit = breaker.acquire();
    shared.publish(&breaker);
    let figures = unsafe { &mut *shared.figures.get() };
    let ticket = match permit {
        Permit::Allowed {
            ticket,
            start_nanos,
        } => {
            figures[Figures::START_NANOS] = start_nanos as f64;
            ticket as f64
        }
        Permit::Refused { retry_after_nanos } => {
            figures[Figures::RETRY_AFTER_MS] = match retry_after_nanos {
                Some(nanos) => nanos.div_ceil(NANOS_PER_MS).max(1) as f64,
                None => f64::INFINITY,
            };
            0.0
        }
    };
    raw::number(env, ticket)
}

#[inline]
fn read_f64(env: sys::napi_env, value: sys::napi_value) -> f64 {
    let mut n = 0.0;
    unsafe { sys::napi_get_value_double(env, value, &mut n) };
    n
}

/// `record(ticket, startNanos, outcome)`: whether the state changed. Outcome: 0 success,
/// 1 failure, 2 timeout.
unsafe extern "C" fn record(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let (args, _, shared) = unsafe { raw::args::<Shared, 3>(env, info) };
    let ticket = read_f64(env, args[0]);
    let start = read_f64(env, args[1]);
    let outcome = Outcome::from_code(read_f64(env, args[2]));
    let Some(mut breaker) = (unsafe { borrow(env, shared) }) else {
        return std::ptr::null_mut();
    };
    let changed = breaker.record(ticket as u64, start as u64, outcome);
    shared.publish(&breaker);
    let figures = unsafe { &mut *shared.figures.get() };
    figures[Figures::DURATION_MS] = breaker.last_duration_nanos() as f64 / NANOS_PER_MS as f64;
    raw::boolean(env, changed)
}

/// `sync()`: applies what time has done; returns the state code.
unsafe extern "C" fn sync(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let (_, _, shared) = unsafe { raw::args::<Shared, 0>(env, info) };
    let Some(mut breaker) = (unsafe { borrow(env, shared) }) else {
        return std::ptr::null_mut();
    };
    breaker.sync();
    shared.publish(&breaker);
    raw::number(env, breaker.state() as u8 as f64)
}

#[napi]
impl CircuitBreakerBinding {
    /// Creates a closed breaker; every option is validated and unknown options are refused.
    #[napi(constructor, ts_args_type = "options?: CircuitBreakerOptions")]
    pub fn new(env: Env, options: Unknown) -> Result<Self> {
        let (config, clock) = read_config(env, options).map_err(|e| throw_invalid(env.raw(), e))?;
        let wall_origin = match clock {
            Clock::System(_) => {
                let epoch_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64() * 1000.0)
                    .unwrap_or(0.0);
                Some((epoch_ms, clock.now_nanos()))
            }
            Clock::Manual(_) => None,
        };
        let breaker = CircuitBreaker::new(config, clock);
        let shared = Rc::new(Shared {
            breaker: RefCell::new(breaker),
            figures: UnsafeCell::new([0.0; Figures::LEN]),
        });
        shared.publish(&shared.breaker.borrow());
        Ok(CircuitBreakerBinding {
            shared,
            wall_origin,
        })
    }

    /// Internal (used by the facade's constructor): the hot-path functions bound to this
    /// breaker, `{ acquire, record, sync, figures }`; `figures` holds retryAfterMs,
    /// startNanos, the state code, the transition count and the last duration in ms.
    #[napi(
        js_name = "_fastPath",
        ts_return_type = "{ acquire(): number; record(ticket: number, startNanos: number, outcome: number): boolean; sync(): number; figures: Float64Array }"
    )]
    pub fn fast_path<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let figures = self.shared.figures.get() as *mut f64;
        // SAFETY: the callbacks read their data as `Rc<Shared>`; `figures` is owned by it.
        unsafe {
            raw::fast_path_object(
                env,
                &self.shared,
                &[("acquire", acquire), ("record", record), ("sync", sync)],
                ("figures", figures, Figures::LEN),
            )
        }
    }

    /// Opens the breaker until `reset()`.
    #[napi(js_name = "_forceOpen")]
    pub fn force_open(&self) {
        let mut breaker = self.shared.breaker.borrow_mut();
        breaker.force_open();
        self.shared.publish(&breaker);
    }

    /// Lets every call pass, still measuring, until `reset()`.
    #[napi(js_name = "_disable")]
    pub fn disable(&self) {
        let mut breaker = self.shared.breaker.borrow_mut();
        breaker.disable();
        self.shared.publish(&breaker);
    }

    /// Closes the breaker with an empty window.
    #[napi(js_name = "_reset")]
    pub fn reset(&self) {
        let mut breaker = self.shared.breaker.borrow_mut();
        breaker.reset();
        self.shared.publish(&breaker);
    }

    /// Internal (used by `stats()`): writes the state, the counters, the window's rates and
    /// counts and the last transition time into the shared figures (indices 2, 3 and 5 to 15),
    /// so that a snapshot builds no object on this side of the crossing.
    #[napi(js_name = "_stats")]
    pub fn stats(&self) {
        let mut breaker = self.shared.breaker.borrow_mut();
        let s = breaker.snapshot();
        self.shared.publish(&breaker);
        let last_transition_at = match self.wall_origin {
            Some((epoch_ms, origin)) => {
                epoch_ms + (s.last_transition_nanos as f64 - origin as f64) / NANOS_PER_MS as f64
            }
            None => s.last_transition_nanos as f64 / NANOS_PER_MS as f64,
        };
        // SAFETY: JS is single-threaded and no fast-path call runs during this one.
        let figures = unsafe { &mut *self.shared.figures.get() };
        figures[Figures::CALLS] = s.totals.calls as f64;
        figures[Figures::FAILURES] = s.totals.failures as f64;
        figures[Figures::SLOW_CALLS] = s.totals.slow_calls as f64;
        figures[Figures::REJECTED] = s.totals.rejected as f64;
        figures[Figures::TIMEOUTS] = s.totals.timeouts as f64;
        figures[Figures::FAILURE_RATE] = s.window.failure_rate();
        figures[Figures::SLOW_CALL_RATE] = s.window.slow_rate();
        figures[Figures::LAST_TRANSITION_AT] = last_transition_at;
        figures[Figures::WINDOW_CALLS] = s.window.calls as f64;
        figures[Figures::WINDOW_FAILURES] = s.window.failures as f64;
        figures[Figures::WINDOW_SLOW_CALLS] = s.window.slow as f64;
    }
}
