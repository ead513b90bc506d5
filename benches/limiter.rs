//! Criterion benches of the limiter core, one thread, no N-API: what a decision costs before
//! the crossing is paid. `benches/run.js` parses the `time: [low mid high]` lines and puts the
//! figures in BENCHMARKS.md (target: a single key's check at most 50 ns).

use std::hint::black_box;

use bulwark::common::{Clock, ManualClock};
use bulwark::limiter::{Bucket, FairQueue, LimiterConfig, Limits, RateLimiter};
use criterion::{criterion_group, criterion_main, Criterion};

/// Limits so large that every request in a bench run is allowed: the allowed path is the one a
/// healthy service takes on almost every request.
fn roomy() -> Limits {
    Limits::new(1e12, 1e12, 1.0)
}

fn limiter() -> RateLimiter {
    let mut config = LimiterConfig::new(roomy());
    config.max_keys = 100_000;
    RateLimiter::new(config, Clock::system())
}

fn bench_limiter(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter");

    // One key, real clock: hash the key, find its slot, read the clock, decide, take.
    let mut single = limiter();
    group.bench_function("bucket check", |b| {
        b.iter(|| {
            let decision = single.decide(black_box("user-42"), black_box(1.0)).unwrap();
            black_box(decision.allowed)
        })
    });

    // The two halves of that figure: the clock read alone, and the decision on a clock that
    // costs an atomic load (a ManualClock moved forward by a nanosecond per call).
    let clock = Clock::system();
    group.bench_function("clock now_nanos", |b| {
        b.iter(|| black_box(clock.now_nanos()))
    });
    let manual = ManualClock::new(1);
    let mut config = LimiterConfig::new(roomy());
    config.max_keys = 100_000;
    let mut untimed = RateLimiter::new(config, Clock::Manual(manual.clone()));
    group.bench_function("bucket check, manual clock", |b| {
        b.iter(|| {
            manual.advance(1);
            let decision = untimed
                .decide(black_box("user-42"), black_box(1.0))
                .unwrap();
            black_box(decision.allowed)
        })
    });

    // 10,000 distinct keys in turn: the table no longer sits in L1.
    let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let mut many = limiter();
    for key in &keys {
        many.decide(key, 1.0).unwrap();
    }
    let mut next = 0usize;
    group.bench_function("decide 10k keys", |b| {
        b.iter(|| {
            let key = &keys[next];
            next += 1;
            if next == keys.len() {
                next = 0;
            }
            let decision = many.decide(black_box(key), black_box(1.0)).unwrap();
            black_box(decision.allowed)
        })
    });

    // The bucket arithmetic alone: no map, no clock read.
    let limits = roomy();
    let mut bucket = Bucket::FULL;
    let mut now = 1_000_000_000u64;
    group.bench_function("bucket wait_nanos+take", |b| {
        b.iter(|| {
            now += 1;
            let now = black_box(now);
            if bucket.wait_nanos(black_box(&limits), 1.0, now) == 0 {
                bucket.take(&limits, 1.0, now);
            }
            black_box(bucket.full_at)
        })
    });

    // One waiter in and out of the fair queue (what `acquire` adds to a decision when it waits).
    let mut queue = FairQueue::new();
    group.bench_function("fair queue push+grant", |b| {
        b.iter(|| {
            let id = queue.push(black_box("user-42"), 1.0, 1.0, u64::MAX, 0);
            black_box(queue.grant(id))
        })
    });

    // The same with 1,000 waiters of 100 clients already queued.
    let mut busy = FairQueue::new();
    for i in 0..1_000u64 {
        busy.push(&keys[(i % 100) as usize], 1.0, 1.0, u64::MAX - i, 0);
    }
    group.bench_function("fair queue push+grant, 1000 queued", |b| {
        b.iter(|| {
            let id = busy.push(black_box("user-late"), 1.0, 1.0, u64::MAX, 0);
            black_box(busy.grant(id))
        })
    });

    group.finish();
}

criterion_group!(benches, bench_limiter);
criterion_main!(benches);
