//! Criterion benches of the cache core, one thread, no N-API: what a `get` or `set` costs
//! before the crossing is paid.

use std::hint::black_box;

use bulwark::cache::{Cache, CacheOptions, Compression, SetOptions, ValueKind};
use bulwark::common::Clock;
use criterion::{criterion_group, criterion_main, Criterion};

fn memory_cache(compression: Compression) -> Cache {
    let options = CacheOptions {
        max_entries: Some(100_000),
        compression,
        ..CacheOptions::default()
    };
    Cache::open(options, Clock::system()).unwrap()
}

fn bench_cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache");
    let plain = SetOptions::default();

    // A hit on a small string in the memory tier: hash, probe, policy update, copy out.
    let mut cache = memory_cache(Compression::Lz4);
    let keys: Vec<String> = (0..10_000).map(|i| format!("user:{i}")).collect();
    for key in &keys {
        cache
            .set(
                key.as_bytes(),
                ValueKind::String,
                b"a small cached value",
                &plain,
            )
            .unwrap();
    }
    let mut i = 0;
    group.bench_function("get hit, memory, 20 B", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(cache.get(black_box(keys[i].as_bytes())).unwrap())
        })
    });
    group.bench_function("get miss, memory", |b| {
        b.iter(|| black_box(cache.get(black_box(b"absent-key")).unwrap()))
    });
    group.bench_function("set, memory, 20 B", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            cache
                .set(
                    keys[i].as_bytes(),
                    ValueKind::String,
                    b"a small cached value",
                    &plain,
                )
                .unwrap()
        })
    });

    // 4 KiB of JSON-like text, compressed with each codec on the way in.
    let template = br#"{"id":12345,"name":"bulwark","tags":["a","b"]}"#;
    let json: Vec<u8> = (0..4096).map(|n| template[n % template.len()]).collect();
    for (name, compression) in [
        ("none", Compression::None),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let mut cache = memory_cache(compression);
        group.bench_function(format!("set + get, memory, 4 KiB, {name}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                cache
                    .set(keys[i].as_bytes(), ValueKind::Json, &json, &plain)
                    .unwrap();
                black_box(cache.get(keys[i].as_bytes()).unwrap())
            })
        });
    }

    // A set with a disk tier: the memory insert plus encoding the record and queueing it for
    // the writer thread (which writes concurrently, in batches).
    let dir = std::env::temp_dir().join(format!("bulwark-cache-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = CacheOptions {
        max_entries: Some(100_000),
        dir: Some(dir.clone()),
        ..CacheOptions::default()
    };
    let mut disk_cache = Cache::open(options, Clock::system()).unwrap();
    group.bench_function("set, memory + disk queue, 20 B", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            disk_cache
                .set(
                    keys[i].as_bytes(),
                    ValueKind::String,
                    b"a small cached value",
                    &plain,
                )
                .unwrap()
        })
    });
    disk_cache.close();
    let _ = std::fs::remove_dir_all(&dir);
    group.finish();
}

criterion_group!(benches, bench_cache);
criterion_main!(benches);
