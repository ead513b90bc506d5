//! Criterion benches of the circuit breaker core, one thread, no N-API: what a call's two
//! decisions (admit it, then record its outcome) and a refusal cost before any crossing is paid.
//! `benches/run.js` runs them with the limiter's and shows them in BENCHMARKS.md.

use std::hint::black_box;

use bulwark::breaker::{BreakerConfig, CircuitBreaker, Outcome, Permit, WindowKind};
use bulwark::common::{Clock, ManualClock};
use criterion::{criterion_group, criterion_main, Criterion};

/// A breaker that stays closed through the bench: every call succeeds.
fn closed(window: WindowKind, clock: Clock) -> CircuitBreaker {
    let config = BreakerConfig {
        window,
        ..BreakerConfig::default()
    };
    CircuitBreaker::new(config, clock)
}

/// Admits one call and records it as a success; whether the state changed.
fn call(breaker: &mut CircuitBreaker) -> bool {
    match breaker.acquire() {
        Permit::Allowed {
            ticket,
            start_nanos,
        } => breaker.record(ticket, start_nanos, Outcome::Success),
        Permit::Refused { .. } => false,
    }
}

fn bench_breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker");

    // The time window (one-second buckets) on the system clock: two clock reads, the bucket
    // rotation check and the counts, as under `fire`.
    let mut timed = closed(WindowKind::Time { buckets: 10 }, Clock::system());
    group.bench_function("acquire+record, time window", |b| {
        b.iter(|| black_box(call(&mut timed)))
    });

    // The same on a clock that costs an atomic load: the state machine and window alone.
    let manual = ManualClock::new(1);
    let mut untimed = closed(
        WindowKind::Time { buckets: 10 },
        Clock::Manual(manual.clone()),
    );
    group.bench_function("acquire+record, time window, manual clock", |b| {
        b.iter(|| {
            manual.advance(1);
            black_box(call(&mut untimed))
        })
    });

    // The count window (the last 100 calls, a ring of outcomes).
    let mut counted = closed(WindowKind::Count { size: 100 }, Clock::system());
    group.bench_function("acquire+record, count window", |b| {
        b.iter(|| black_box(call(&mut counted)))
    });

    // A refusal: the decision a `fire` on an open breaker makes before answering.
    let mut open = closed(WindowKind::Time { buckets: 10 }, Clock::system());
    open.force_open();
    group.bench_function("acquire, forced open (a refusal)", |b| {
        b.iter(|| black_box(matches!(open.acquire(), Permit::Refused { .. })))
    });

    group.finish();
}

criterion_group!(benches, bench_breaker);
criterion_main!(benches);
