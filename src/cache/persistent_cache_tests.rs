//! Tests of the cache as a whole: both tiers, TTLs on a manual clock, restarts, locking and
//! disk failures. Directories are unique subfolders of the system temp dir, removed after.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::cache::codec::tests::pseudo_random_bytes;
use crate::cache::disk::FlushTicket;
use crate::cache::error::{ERR_CACHE_CLOSED, ERR_CACHE_LOCKED};
use crate::common::clock::NANOS_PER_MS;
use crate::common::ManualClock;

/// A unique temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "bulwark-cache-test-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 2023-11-14 in ms: a manual wall clock well after the epoch.
const START_MS: u64 = 1_700_000_000_000;

fn manual_clock() -> (ManualClock, Clock) {
    let manual = ManualClock::new(START_MS * NANOS_PER_MS);
    (manual.clone(), Clock::Manual(manual))
}

fn advance_ms(clock: &ManualClock, ms: u64) {
    clock.advance(ms * NANOS_PER_MS);
}

fn entries(n: u64) -> CacheOptions {
    CacheOptions {
        max_entries: Some(n),
        ..CacheOptions::default()
    }
}

fn on_disk(dir: &TempDir, max_entries: u64) -> CacheOptions {
    CacheOptions {
        dir: Some(dir.path().to_path_buf()),
        ..entries(max_entries)
    }
}

fn set(cache: &mut Cache, key: &str, value: &str) {
    cache
        .set(
            key.as_bytes(),
            ValueKind::String,
            value.as_bytes(),
            &SetOptions::default(),
        )
        .unwrap();
}

fn set_with(cache: &mut Cache, key: &str, value: &str, ttl_ms: Option<u64>, tags: &[&str]) {
    let options = SetOptions {
        ttl_ms,
        tags: tags.iter().map(|t| t.as_bytes().to_vec()).collect(),
        ..SetOptions::default()
    };
    cache
        .set(
            key.as_bytes(),
            ValueKind::String,
            value.as_bytes(),
            &options,
        )
        .unwrap();
}

fn get(cache: &mut Cache, key: &str) -> Option<String> {
    cache
        .get(key.as_bytes())
        .unwrap()
        .map(|s| String::from_utf8(s.bytes).unwrap())
}

fn compressible(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"0123456789abcdef"[i % 16 / 2]).collect()
}

#[test]
fn kinds_round_trip_from_memory() {
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(entries(10), clock).unwrap();
    let values = [
        (ValueKind::String, &b"h\xc3\xa9llo"[..]),
        (ValueKind::Bytes, &[0u8, 255, 1][..]),
        (ValueKind::Json, &br#"{"a":[1,2]}"#[..]),
    ];
    for (i, (kind, payload)) in values.iter().enumerate() {
        let key = format!("k{i}");
        cache
            .set(key.as_bytes(), *kind, payload, &SetOptions::default())
            .unwrap();
        let got = cache.get(key.as_bytes()).unwrap().unwrap();
        assert_eq!(
            (got.kind, &got.bytes[..], got.tier),
            (*kind, *payload, Tier::Memory)
        );
    }
    assert_eq!(cache.get(b"absent").unwrap(), None);
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.sets, stats.entries),
        (3, 1, 3, 3)
    );
}

#[test]
fn compression_on_off_threshold_and_non_shrinking() {
    for compression in [Compression::Lz4, Compression::Zstd, Compression::None] {
        let (_, clock) = manual_clock();
        let options = CacheOptions {
            compression,
            compress_min_bytes: 100,
            ..entries(10)
        };
        let mut cache = Cache::open(options, clock).unwrap();
        let big = compressible(10_000);
        cache
            .set(b"big", ValueKind::Bytes, &big, &SetOptions::default())
            .unwrap();
        assert_eq!(cache.get(b"big").unwrap().unwrap().bytes, big);
        let stats = cache.stats().compression;
        assert_eq!(stats.raw_bytes, 10_000);
        if compression == Compression::None {
            assert_eq!(stats.stored_bytes, 10_000);
        } else {
            assert!(stats.stored_bytes < 2_000, "{compression:?}: {stats:?}");
        }
        // below the threshold: raw
        let small = compressible(99);
        cache
            .set(b"small", ValueKind::Bytes, &small, &SetOptions::default())
            .unwrap();
        let after = cache.stats().compression;
        assert_eq!(after.stored_bytes - stats.stored_bytes, 99);
        // above it but incompressible: raw
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        cache
            .set(b"noise", ValueKind::Bytes, &noise, &SetOptions::default())
            .unwrap();
        assert_eq!(
            cache.stats().compression.stored_bytes - after.stored_bytes,
            1000
        );
        assert_eq!(cache.get(b"noise").unwrap().unwrap().bytes, noise);
    }
}

#[test]
fn options_are_validated_naming_the_option() {
    let (_, clock) = manual_clock();
    let message = |options: CacheOptions| match Cache::open(options, clock.clone()) {
        Err(CacheError::Invalid(invalid)) => invalid.message,
        other => panic!("expected an invalid option, got {:?}", other.map(|_| ())),
    };
    assert!(message(CacheOptions::default()).contains("maxEntries or maxBytes"));
    assert!(message(entries(0)).starts_with("maxEntries"));
    let bytes = CacheOptions {
        max_bytes: Some(0),
        ..CacheOptions::default()
    };
    assert!(message(bytes).starts_with("maxBytes"));
    assert!(message(CacheOptions {
        ttl_ms: Some(0),
        ..entries(1)
    })
    .starts_with("ttlMs"));
    assert!(message(CacheOptions {
        disk_max_bytes: Some(10),
        ..entries(1)
    })
    .starts_with("diskMaxBytes"));
    assert!(message(CacheOptions {
        dir: Some(PathBuf::new()),
        ..entries(1)
    })
    .starts_with("dir"));
    assert!(message(CacheOptions {
        compress_min_bytes: u64::MAX,
        ..entries(1)
    })
    .starts_with("compressMinBytes"));
}

#[test]
fn bad_keys_tags_and_ttls_are_refused_naming_them() {
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(entries(10), clock).unwrap();
    let err = cache.get(b"").unwrap_err();
    assert!(err.to_string().starts_with("key") && err.code() == "ERR_BULWARK_INVALID_ARGUMENT");
    let long = vec![b'k'; 64 * 1024 + 1];
    assert!(cache
        .set(&long, ValueKind::String, b"v", &SetOptions::default())
        .is_err());
    let ok = vec![b'k'; 64 * 1024];
    cache
        .set(&ok, ValueKind::String, b"v", &SetOptions::default())
        .unwrap();
    assert!(cache.get(&ok).unwrap().is_some());
    let bad_tags = SetOptions {
        tags: vec![Vec::new()],
        ..SetOptions::default()
    };
    let err = cache
        .set(b"k", ValueKind::String, b"v", &bad_tags)
        .unwrap_err();
    assert!(err.to_string().starts_with("options.tags[0]"));
    let zero_ttl = SetOptions {
        ttl_ms: Some(0),
        ..SetOptions::default()
    };
    let err = cache
        .set(b"k", ValueKind::String, b"v", &zero_ttl)
        .unwrap_err();
    assert!(err.to_string().starts_with("ttlMs"));
    assert!(cache
        .invalidate_prefix(b"")
        .unwrap_err()
        .to_string()
        .starts_with("prefix"));
    assert!(cache
        .invalidate_tag(b"")
        .unwrap_err()
        .to_string()
        .starts_with("tag"));
}

#[test]
fn memory_bounds_by_entries_and_bytes() {
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(entries(50), clock.clone()).unwrap();
    for i in 0..500 {
        set(&mut cache, &format!("k{i}"), "v");
        assert!(cache.len() <= 50);
    }
    assert_eq!(cache.stats().evictions, 450);
    let max_bytes = 20_000;
    let options = CacheOptions {
        max_bytes: Some(max_bytes),
        ..CacheOptions::default()
    };
    let mut cache = Cache::open(options, clock).unwrap();
    for i in 0..500 {
        set(&mut cache, &format!("k{i}"), &"x".repeat(200));
        assert!(cache.stats().bytes <= max_bytes);
    }
    assert!(cache.stats().entries > 20);
}

#[test]
fn oversized_entry_is_refused_by_memory_but_kept_on_disk() {
    let dir = TempDir::new("oversized");
    let (_, clock) = manual_clock();
    let options = CacheOptions {
        max_bytes: Some(4_000),
        compression: Compression::None,
        dir: Some(dir.path().to_path_buf()),
        ..CacheOptions::default()
    };
    let mut cache = Cache::open(options, clock).unwrap();
    for i in 0..10 {
        set(&mut cache, &format!("small{i}"), "v");
    }
    let huge = "h".repeat(10_000);
    set(&mut cache, "huge", &huge);
    let stats = cache.stats();
    assert_eq!(stats.oversized, 1);
    assert_eq!(stats.memory.entries, 10, "nothing else was flushed");
    // served from disk (from the pending overlay: nothing was flushed yet)
    let got = cache.get(b"huge").unwrap().unwrap();
    assert_eq!((got.tier, got.bytes.len()), (Tier::Disk, 10_000));
    cache.flush().unwrap().wait().unwrap();
    assert_eq!(get(&mut cache, "huge").unwrap(), huge);
}

#[test]
fn ttl_entries_are_never_returned_after_expiry_and_are_reclaimed() {
    let (manual, clock) = manual_clock();
    let options = CacheOptions {
        ttl_ms: Some(1_000),
        ..entries(1_000)
    };
    let mut cache = Cache::open(options, clock).unwrap();
    set(&mut cache, "default", "d");
    set_with(&mut cache, "own", "o", Some(5_000), &[]);
    advance_ms(&manual, 999);
    assert_eq!(get(&mut cache, "default").as_deref(), Some("d"));
    advance_ms(&manual, 1);
    assert_eq!(get(&mut cache, "default"), None);
    assert!(!cache.has(b"default").unwrap());
    assert_eq!(get(&mut cache, "own").as_deref(), Some("o"));
    assert_eq!(cache.stats().expirations, 1);
    // reclaimed by the sweep of later calls, without being looked up
    for i in 0..100 {
        set(&mut cache, &format!("t{i}"), "v");
    }
    advance_ms(&manual, 10_000);
    for _ in 0..30 {
        assert!(!cache.has(b"other").unwrap());
    }
    let stats = cache.stats();
    assert_eq!(stats.memory.entries, 0);
    assert_eq!(stats.expirations, 102);
}

#[test]
fn stale_reads_return_an_expired_value_only_within_its_bound() {
    let (manual, clock) = manual_clock();
    let dir = TempDir::new("stale");
    let mut cache = Cache::open(on_disk(&dir, 100), clock).unwrap();
    let options = SetOptions {
        ttl_ms: Some(1_000),
        keep_stale_ms: 500,
        ..SetOptions::default()
    };
    cache
        .set(b"k", ValueKind::String, b"old", &options)
        .unwrap();
    let fresh = cache.lookup(b"k", 0, true).unwrap().unwrap();
    assert_eq!(fresh.stale_for_ms, None);
    assert_eq!(fresh.bytes.as_deref(), Some(&b"old"[..]));
    advance_ms(&manual, 1_200);
    // a plain read never returns it, and neither does has
    assert_eq!(get(&mut cache, "k"), None);
    assert!(!cache.has(b"k").unwrap());
    assert!(cache.lookup(b"k", 0, false).unwrap().is_none());
    // a stale read does, saying for how long it has been stale
    let stale = cache.lookup(b"k", 0, true).unwrap().unwrap();
    assert_eq!(stale.stale_for_ms, Some(200));
    assert_eq!(stale.bytes.as_deref(), Some(&b"old"[..]));
    assert_eq!(stale.tier, Tier::Memory);
    // past the bound it is gone for stale readers too
    advance_ms(&manual, 300);
    assert!(cache.lookup(b"k", 0, true).unwrap().is_none());
    // without keep_stale_ms an expired entry is not kept
    set_with(&mut cache, "plain", "p", Some(1_000), &[]);
    advance_ms(&manual, 1_000);
    assert!(cache.lookup(b"plain", 0, true).unwrap().is_none());
    assert!(cache
        .set(
            b"k",
            ValueKind::String,
            b"v",
            &SetOptions {
                keep_stale_ms: MAX_KEEP_STALE_MS + 1,
                ..SetOptions::default()
            }
        )
        .unwrap_err()
        .to_string()
        .starts_with("staleWhileRevalidateMs"));
}

#[test]
fn versions_change_with_every_new_entry_and_spare_the_copy_when_known() {
    let dir = TempDir::new("versions");
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(on_disk(&dir, 2), clock).unwrap();
    let big = compressible(4096);
    cache
        .set(b"k", ValueKind::Json, &big, &SetOptions::default())
        .unwrap();
    let first = cache.lookup(b"k", 0, false).unwrap().unwrap();
    let v1 = first.version;
    assert_eq!(first.bytes.as_deref(), Some(&big[..]));
    // the same entry: no payload
    let same = cache.lookup(b"k", v1, false).unwrap().unwrap();
    assert_eq!((same.version, same.bytes), (v1, None));
    // a new set: a new version, and the payload again
    cache
        .set(b"k", ValueKind::Json, &big, &SetOptions::default())
        .unwrap();
    let second = cache.lookup(b"k", v1, false).unwrap().unwrap();
    assert!(second.version > v1);
    assert!(second.bytes.is_some());
    // brought back from disk into memory: the payload, then its version spares it again
    cache.flush().unwrap().wait().unwrap();
    cache.close();
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(on_disk(&dir, 2), clock).unwrap();
    let back = cache.lookup(b"k", 0, false).unwrap().unwrap();
    assert_eq!(back.tier, Tier::Disk);
    assert_eq!(back.bytes.as_deref(), Some(&big[..]));
    let version = back.version;
    let again = cache.lookup(b"k", version, false).unwrap().unwrap();
    assert_eq!((again.tier, again.bytes), (Tier::Memory, None));
}

#[test]
fn hot_set_survives_a_scan_through_the_cache() {
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(entries(1_000), clock).unwrap();
    for _ in 0..4 {
        for i in 0..300 {
            let key = format!("hot{i}");
            if get(&mut cache, &key).is_none() {
                set(&mut cache, &key, "h");
            }
        }
    }
    for i in 0..50_000 {
        let key = format!("scan{i}");
        if get(&mut cache, &key).is_none() {
            set(&mut cache, &key, "c");
        }
    }
    let survivors = (0..300)
        .filter(|i| cache.has(format!("hot{i}").as_bytes()).unwrap())
        .count();
    // the few hot keys in the 1% window when the scan starts may go; the rest stay
    assert!(survivors >= 285, "{survivors} of 300 survived");
}

#[test]
fn has_delete_clear_and_close() {
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(entries(10), clock).unwrap();
    set(&mut cache, "a", "1");
    set(&mut cache, "b", "2");
    assert!(cache.has(b"a").unwrap());
    assert!(cache.delete(b"a").unwrap());
    assert!(!cache.delete(b"a").unwrap());
    assert_eq!(cache.stats().deletes, 1);
    assert_eq!(cache.clear().unwrap(), 1);
    assert!(cache.is_empty());
    cache.flush().unwrap().wait().unwrap();
    cache.close();
    cache.close();
    assert_eq!(cache.get(b"a").unwrap_err().code(), ERR_CACHE_CLOSED);
    assert_eq!(cache.flush().unwrap_err().code(), ERR_CACHE_CLOSED);
}

#[test]
fn tags_and_prefixes_across_both_tiers_and_a_restart() {
    let dir = TempDir::new("tags");
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(on_disk(&dir, 3), clock.clone()).unwrap();
    for i in 0..10 {
        let tags: &[&str] = if i % 2 == 0 {
            &["even"]
        } else {
            &["odd", "all"]
        };
        set_with(&mut cache, &format!("user:{i}"), "u", None, tags);
        set_with(&mut cache, &format!("post:{i}"), "p", None, &["all"]);
    }
    assert!(cache.stats().memory.entries <= 3);
    assert_eq!(cache.stats().disk.entries, 20);
    assert_eq!(cache.invalidate_tag(b"even").unwrap(), 5);
    assert_eq!(get(&mut cache, "user:0"), None);
    assert_eq!(get(&mut cache, "user:1").as_deref(), Some("u"));
    assert_eq!(cache.invalidate_prefix(b"user:").unwrap(), 5);
    assert_eq!(get(&mut cache, "user:1"), None);
    assert_eq!(cache.len(), 10);
    cache.flush().unwrap().wait().unwrap();
    drop(cache);

    let mut cache = Cache::open(on_disk(&dir, 3), clock).unwrap();
    assert_eq!(cache.len(), 10);
    assert_eq!(cache.invalidate_tag(b"all").unwrap(), 10);
    assert_eq!(get(&mut cache, "post:3"), None);
    assert!(cache.is_empty());
}

#[test]
fn restart_serves_what_was_flushed_and_honours_ttls() {
    let dir = TempDir::new("restart");
    let (manual, clock) = manual_clock();
    let mut cache = Cache::open(on_disk(&dir, 100), clock.clone()).unwrap();
    set(&mut cache, "forever", "f");
    set_with(&mut cache, "short", "s", Some(1_000), &[]);
    set_with(&mut cache, "long", "l", Some(60_000), &[]);
    cache
        .set(
            b"bytes",
            ValueKind::Bytes,
            &compressible(5_000),
            &SetOptions::default(),
        )
        .unwrap();
    cache.flush().unwrap().wait().unwrap();
    assert_eq!(cache.stats().disk.writes, 4);
    drop(cache);

    advance_ms(&manual, 2_000);
    let mut cache = Cache::open(on_disk(&dir, 100), clock.clone()).unwrap();
    assert_eq!(cache.len(), 3, "the expired entry is dropped at open");
    let forever = cache.get(b"forever").unwrap().unwrap();
    assert_eq!(
        (forever.tier, forever.kind),
        (Tier::Disk, ValueKind::String)
    );
    assert_eq!(cache.get(b"forever").unwrap().unwrap().tier, Tier::Memory);
    assert_eq!(get(&mut cache, "short"), None);
    let bytes = cache.get(b"bytes").unwrap().unwrap();
    assert_eq!(
        (bytes.kind, bytes.bytes),
        (ValueKind::Bytes, compressible(5_000))
    );
    assert_eq!(get(&mut cache, "long").as_deref(), Some("l"));
    advance_ms(&manual, 58_000);
    assert_eq!(
        get(&mut cache, "long"),
        None,
        "the TTL still holds after a restart"
    );
    cache.close();

    // what was set but never flushed is still written by close
    let mut cache = Cache::open(on_disk(&dir, 100), clock.clone()).unwrap();
    set(&mut cache, "late", "x");
    cache.close();
    let mut cache = Cache::open(on_disk(&dir, 100), clock).unwrap();
    assert_eq!(get(&mut cache, "late").as_deref(), Some("x"));
}

#[test]
fn a_second_open_of_the_same_dir_is_locked() {
    let dir = TempDir::new("locked");
    let (_, clock) = manual_clock();
    let mut first = Cache::open(on_disk(&dir, 10), clock.clone()).unwrap();
    let err = Cache::open(on_disk(&dir, 10), clock.clone()).err().unwrap();
    assert_eq!(err.code(), ERR_CACHE_LOCKED);
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    first.close();
    let second = Cache::open(on_disk(&dir, 10), clock.clone()).unwrap();
    drop(second);
    // dropping (not closing) releases the directory too
    Cache::open(on_disk(&dir, 10), clock).unwrap();
}

#[test]
fn an_unusable_dir_is_an_error_naming_dir() {
    let dir = TempDir::new("file");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let (_, clock) = manual_clock();
    let options = CacheOptions {
        dir: Some(file.clone()),
        ..entries(10)
    };
    let err = Cache::open(options, clock.clone()).err().unwrap();
    assert!(err.to_string().starts_with("dir "), "{err}");
    let nested = CacheOptions {
        dir: Some(file.join("below")),
        ..entries(10)
    };
    let err = Cache::open(nested, clock).err().unwrap();
    assert!(err.to_string().starts_with("dir "), "{err}");
}

#[test]
fn disk_max_bytes_evicts_expired_first_then_least_recent() {
    let dir = TempDir::new("diskmax");
    let (manual, clock) = manual_clock();
    let mut options = on_disk(&dir, 1_000);
    options.compression = Compression::None;
    // one entry: record 18 + 3 + 100 + 8, meta 36 + 3 + 8 (each with its checksum): 176
    // bytes; room for 10
    options.disk_max_bytes = Some(1_760);
    let mut cache = Cache::open(options.clone(), clock.clone()).unwrap();
    let value = "v".repeat(100);
    set_with(&mut cache, "e00", &value, Some(100), &[]);
    for i in 1..10 {
        set(&mut cache, &format!("k{i:02}"), &value);
    }
    assert_eq!(cache.stats().disk.entries, 10);
    assert_eq!(cache.stats().disk.bytes, 1_760);
    advance_ms(&manual, 200);
    set(&mut cache, "k10", &value);
    let stats = cache.stats();
    assert_eq!(stats.disk.entries, 10);
    assert_eq!(stats.disk.evictions, 0, "the expired entry made room");
    assert_eq!(stats.expirations, 1);
    // k01 is the least recent, unless used: use it, and k02 goes instead
    assert!(get(&mut cache, "k01").is_some());
    set(&mut cache, "k11", &value);
    assert_eq!(cache.stats().disk.evictions, 1);
    assert!(cache.disk().unwrap().contains(
        crate::cache::key::hash_key(cache.disk().unwrap().seed(), b"k01"),
        START_MS + 200
    ));
    assert!(!cache.disk().unwrap().contains(
        crate::cache::key::hash_key(cache.disk().unwrap().seed(), b"k02"),
        START_MS + 200
    ));
    for i in 12..100 {
        set(&mut cache, &format!("k{i:02}"), &value);
        assert!(cache.stats().disk.bytes <= 1_760);
    }
    cache.flush().unwrap().wait().unwrap();
    drop(cache);
    let cache = Cache::open(options, clock).unwrap();
    assert_eq!(cache.stats().disk.entries, 10);
}

#[test]
fn an_entry_larger_than_the_disk_bound_stays_in_memory_only() {
    let dir = TempDir::new("disk-oversized");
    let (_, clock) = manual_clock();
    let options = CacheOptions {
        disk_max_bytes: Some(1_000),
        compression: Compression::None,
        ..on_disk(&dir, 10)
    };
    let mut cache = Cache::open(options, clock).unwrap();
    set(&mut cache, "big", "old");
    set(&mut cache, "big", &"b".repeat(2_000));
    let stats = cache.stats();
    assert_eq!((stats.disk.oversized, stats.disk.entries), (1, 0));
    let got = cache.get(b"big").unwrap().unwrap();
    assert_eq!((got.tier, got.bytes.len()), (Tier::Memory, 2_000));
}

/// Sets `report` = old, `gone`, and `k0`..`k4` (a memory tier of 2 entries, so most live on
/// disk only), flushed; then makes the disk fail and overwrites `report` and deletes `gone`.
fn cache_with_a_failed_disk(dir: &std::path::Path, clock: Clock) -> Cache {
    let options = CacheOptions {
        dir: Some(dir.to_path_buf()),
        ..entries(2)
    };
    let mut cache = Cache::open(options, clock).unwrap();
    set(&mut cache, "report", "old");
    set(&mut cache, "gone", "g");
    for i in 0..5 {
        set(&mut cache, &format!("k{i}"), "v");
    }
    cache.flush().unwrap().wait().unwrap();
    cache.disk().unwrap().inject_failures(true);
    set(&mut cache, "report", "new");
    // whether it reports `gone` as there depends on whether the failure was noticed by now
    cache.delete(b"gone").unwrap();
    assert!(cache.flush().unwrap().wait().is_err());
    cache
}

#[test]
fn disk_errors_are_counted_and_never_fail_get_or_set() {
    let dir = TempDir::new("errors");
    let (_, clock) = manual_clock();
    let mut cache = cache_with_a_failed_disk(dir.path(), clock.clone());
    // memory still serves; keys only on disk miss (the tier is offline), never an error
    assert_eq!(get(&mut cache, "report").as_deref(), Some("new"));
    assert_eq!(get(&mut cache, "gone"), None);
    assert_eq!(get(&mut cache, "k0"), None);
    let stats = cache.stats();
    assert!(stats.disk.errors >= 1, "{:?}", stats.disk);
    assert_eq!((stats.disk.entries, stats.disk.bytes), (0, 0));
    // while it is offline, sets live in memory only
    set(&mut cache, "during", "d");
    assert!(cache.stats().disk.skipped >= 1);
    assert_eq!(get(&mut cache, "during").as_deref(), Some("d"));

    // the disk works again: the writer's next reset attempt empties the file and the tier
    // takes writes again
    cache.disk().unwrap().inject_failures(false);
    let started = std::time::Instant::now();
    loop {
        set(&mut cache, "after", "a");
        if cache.stats().disk.entries == 1 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the tier never came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    cache.flush().unwrap().wait().unwrap();
    cache.close();
    drop(cache);

    // after a restart: what was written since the reset, and nothing from before the failure
    // (the overwritten value and the deleted one above all)
    let mut reopened = Cache::open(on_disk(&dir, 10), clock).unwrap();
    assert_eq!(get(&mut reopened, "after").as_deref(), Some("a"));
    assert_eq!(get(&mut reopened, "report"), None);
    assert_eq!(get(&mut reopened, "gone"), None);
    assert_eq!(get(&mut reopened, "k0"), None);
    assert_eq!(reopened.len(), 1);
}

#[test]
fn a_cache_closed_while_its_disk_fails_leaves_nothing_stale_behind() {
    let dir = TempDir::new("errors-close");
    let (_, clock) = manual_clock();
    let mut cache = cache_with_a_failed_disk(dir.path(), clock.clone());
    // the failure is not noticed by a lookup before the close; the reset at close cannot be
    // written either (the hook fails it), so the file goes
    cache.close();
    drop(cache);
    let mut reopened = Cache::open(on_disk(&dir, 10), clock).unwrap();
    assert_eq!(get(&mut reopened, "report"), None);
    assert_eq!(get(&mut reopened, "gone"), None);
    assert_eq!(reopened.len(), 0);
    // and the directory works as before
    set(&mut reopened, "fresh", "f");
    reopened.flush().unwrap().wait().unwrap();
    assert_eq!(get(&mut reopened, "fresh").as_deref(), Some("f"));
}

#[test]
fn writes_beyond_the_writer_queue_bound_stay_in_memory_and_drop_the_old_disk_copy() {
    let dir = TempDir::new("queue-bound");
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(on_disk(&dir, 100), clock.clone()).unwrap();
    set(&mut cache, "report", "old");
    cache.flush().unwrap().wait().unwrap();
    // a writer so far behind that nothing more fits in its queue
    cache.disk_mut().unwrap().set_pending_limit(0);
    set(&mut cache, "report", "new");
    set(&mut cache, "other", "x");
    let stats = cache.stats();
    assert_eq!(stats.disk.skipped, 2);
    // memory serves the new value
    assert_eq!(get(&mut cache, "report").as_deref(), Some("new"));
    cache.flush().unwrap().wait().unwrap();
    cache.close();
    drop(cache);
    // after a restart the old value does not come back in the new one's place
    let mut reopened = Cache::open(on_disk(&dir, 100), clock).unwrap();
    assert_eq!(get(&mut reopened, "report"), None);
    assert_eq!(get(&mut reopened, "other"), None);
}

/// Set by `a_crash_after_a_disk_failure_brings_back_nothing_overwritten_or_deleted` for the
/// copy of this test binary it starts.
const CRASH_PROBE_ENV: &str = "BULWARK_CACHE_CRASH_PROBE";

#[test]
fn a_crash_after_a_disk_failure_brings_back_nothing_overwritten_or_deleted() {
    let dir = TempDir::new("errors-crash");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cache::persistent_cache::tests::crash_probe",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(CRASH_PROBE_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the probe ends by aborting: {status}");
    assert!(
        dir.path().join(crate::cache::disk::LOCK_FILE).exists(),
        "the probe ran"
    );
    let (_, clock) = manual_clock();
    let mut reopened = Cache::open(on_disk(&dir, 10), clock).unwrap();
    assert_ne!(get(&mut reopened, "report").as_deref(), Some("old"));
    assert_eq!(get(&mut reopened, "gone"), None);
}

/// Run by `a_crash_after_a_disk_failure_brings_back_nothing_overwritten_or_deleted` in a child
/// process: fails the disk of a cache in the directory it is given, then aborts (a crash: no
/// drop, no close, no reset). Does nothing on its own.
#[test]
#[ignore = "a probe that a_crash_after_a_disk_failure_... starts in a child process"]
fn crash_probe() {
    let Some(dir) = std::env::var_os(CRASH_PROBE_ENV) else {
        return;
    };
    let cache = cache_with_a_failed_disk(std::path::Path::new(&dir), Clock::system());
    std::mem::forget(cache);
    std::process::abort();
}

/// Set by `a_second_process_is_locked_out` for the copy of this test binary it starts.
const PROBE_ENV: &str = "BULWARK_CACHE_LOCK_PROBE";

#[test]
fn a_second_process_is_locked_out() {
    let dir = TempDir::new("process-lock");
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(on_disk(&dir, 10), clock).unwrap();
    let probe = |expected: &str| {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cache::persistent_cache::tests::lock_probe",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROBE_ENV, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(&format!("probe: {expected}")),
            "expected {expected}: {stdout}"
        );
    };
    probe(ERR_CACHE_LOCKED);
    cache.close();
    probe("opened");
}

/// Run by `a_second_process_is_locked_out` in a child process: opens the cache directory it is
/// given and prints the outcome. Does nothing on its own.
#[test]
#[ignore = "a probe that a_second_process_is_locked_out starts in a child process"]
fn lock_probe() {
    let Some(dir) = std::env::var_os(PROBE_ENV) else {
        return;
    };
    let options = CacheOptions {
        dir: Some(PathBuf::from(dir)),
        ..entries(10)
    };
    match Cache::open(options, Clock::system()) {
        Ok(_) => println!("probe: opened"),
        Err(err) => println!("probe: {}", err.code()),
    }
}

#[test]
fn cache_and_flush_ticket_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Cache>();
    assert_send::<FlushTicket>();
}

#[test]
fn flush_ticket_can_be_polled_and_completes() {
    let dir = TempDir::new("poll");
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(on_disk(&dir, 10), clock).unwrap();
    set(&mut cache, "a", "1");
    let ticket = cache.flush().unwrap();
    let outcome = ticket
        .wait_timeout(std::time::Duration::from_secs(30))
        .expect("a flush of one entry completes");
    outcome.unwrap();
    assert!(FlushTicket::done().wait().is_ok());
}

mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Clone, Debug)]
    enum Op {
        Set(u8, u16),
        Get(u8),
        Delete(u8),
        Flush,
        Reopen,
        InvalidatePrefix(u8),
        /// Makes the disk tier's writes, reads and resets fail (true) or work again (false).
        FailDisk(bool),
        /// Makes the disk tier's reads panic inside redb, as on a damaged page (true), or not.
        PanicReads(bool),
        /// Closes the cache, overwrites 64 bytes of its file (at this fraction of its length, in
        /// 1/256ths) with garbage, and opens it again: the open must succeed.
        DamageFile(u8, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0..24u8, 0..3000u16).prop_map(|(k, len)| Op::Set(k, len)),
            5 => (0..24u8).prop_map(Op::Get),
            1 => (0..24u8).prop_map(Op::Delete),
            1 => Just(Op::Flush),
            1 => Just(Op::Reopen),
            1 => (0..3u8).prop_map(Op::InvalidatePrefix),
            1 => any::<bool>().prop_map(Op::FailDisk),
            1 => any::<bool>().prop_map(Op::PanicReads),
            1 => (any::<u8>(), any::<u64>()).prop_map(|(at, seed)| Op::DamageFile(at, seed)),
        ]
    }

    fn key(k: u8) -> Vec<u8> {
        format!("{}:{k}", k % 3).into_bytes()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// With a disk tier and no disk bound, the cache loses nothing: every `get` returns
        /// the last value set, across memory evictions, pending writes and restarts. Once the
        /// disk has failed, a read has panicked, or the file was damaged while closed, entries
        /// may be lost (the tier resets), but the cache opens, and a `get` never returns
        /// anything but the last value set, in this process or after a restart.
        #[test]
        fn a_disk_backed_cache_returns_exactly_the_last_value(
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let dir = TempDir::new("model");
            let (_, clock) = manual_clock();
            let options = CacheOptions {
                max_bytes: Some(8_000),
                compress_min_bytes: 500,
                ..on_disk(&dir, 4)
            };
            let mut cache = Some(Cache::open(options.clone(), clock.clone()).unwrap());
            let mut model: HashMap<u8, Vec<u8>> = HashMap::new();
            // whether the disk has failed in this case so far: from then on, entries may go
            let mut lossy = false;
            for (step, op) in ops.into_iter().enumerate() {
                let c = cache.as_mut().unwrap();
                match op {
                    Op::Set(k, len) => {
                        let value: Vec<u8> = (0..len).map(|i| (i as usize / 7 + step) as u8).collect();
                        c.set(&key(k), ValueKind::Bytes, &value, &SetOptions::default()).unwrap();
                        model.insert(k, value);
                    }
                    Op::Get(k) => {
                        let got = c.get(&key(k)).unwrap().map(|s| s.bytes);
                        if lossy {
                            prop_assert!(got.is_none() || got.as_ref() == model.get(&k));
                        } else {
                            prop_assert_eq!(got.as_ref(), model.get(&k));
                        }
                    }
                    Op::Delete(k) => {
                        let removed = c.delete(&key(k)).unwrap();
                        let was = model.remove(&k).is_some();
                        if !lossy {
                            prop_assert_eq!(removed, was);
                        }
                    }
                    Op::Flush => {
                        let flushed = c.flush().unwrap().wait();
                        prop_assert!(lossy || flushed.is_ok());
                    }
                    Op::Reopen => {
                        drop(cache.take());
                        cache = Some(Cache::open(options.clone(), clock.clone()).unwrap());
                    }
                    Op::InvalidatePrefix(p) => {
                        let prefix = format!("{p}:");
                        let expected = model.keys().filter(|k| *k % 3 == p).count();
                        let removed = c.invalidate_prefix(prefix.as_bytes()).unwrap();
                        if !lossy {
                            prop_assert_eq!(removed, expected);
                        }
                        model.retain(|k, _| k % 3 != p);
                    }
                    Op::FailDisk(fail) => {
                        c.disk().unwrap().inject_failures(fail);
                        lossy |= fail;
                    }
                    Op::PanicReads(panic) => {
                        c.disk().unwrap().inject_read_panics(panic);
                        lossy |= panic;
                    }
                    Op::DamageFile(at, seed) => {
                        drop(cache.take());
                        let path = dir.path().join(crate::cache::disk::DB_FILE);
                        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                        if len > 64 {
                            overwrite(&dir, (len - 64) * u64::from(at) / 256, &pseudo_random_bytes(64, seed));
                        }
                        let reopened = Cache::open(options.clone(), clock.clone());
                        prop_assert!(reopened.is_ok(), "a damaged file refused to open");
                        cache = reopened.ok();
                        lossy = true;
                    }
                }
                if !lossy {
                    prop_assert_eq!(cache.as_ref().unwrap().len(), model.len());
                }
            }
        }
    }
}

/// The number of rows in each of the disk tier's tables (`log`, `log_meta`), read from the file
/// of a closed cache, and whether the tables of the earlier layout exist.
fn disk_rows(dir: &TempDir) -> (u64, u64, bool) {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
    let db = redb::Database::open(dir.path().join(crate::cache::disk::DB_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let rows = |name: &str| {
        let table = txn
            .open_table(TableDefinition::<u64, &[u8]>::new(name))
            .unwrap();
        table.len().unwrap()
    };
    let old = txn
        .open_table(TableDefinition::<u64, &[u8]>::new("entries"))
        .is_ok();
    (rows("log"), rows("log_meta"), old)
}

#[test]
fn a_rewritten_key_leaves_one_record_and_positions_go_on_after_a_restart() {
    let dir = TempDir::new("append");
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(on_disk(&dir, 100), clock.clone()).unwrap();
    for round in 0..5 {
        set(&mut cache, "report", &format!("version {round}"));
        set(&mut cache, "other", "o");
    }
    set(&mut cache, "gone", "g");
    cache.delete(b"gone").unwrap();
    cache.close();
    assert_eq!(disk_rows(&dir), (2, 2, false), "one record per live key");

    // after a restart, new records go after the old ones instead of over them
    let mut cache = Cache::open(on_disk(&dir, 100), clock.clone()).unwrap();
    set(&mut cache, "third", "t");
    set(&mut cache, "other", "o2");
    cache.close();
    assert_eq!(disk_rows(&dir), (3, 3, false));
    let mut cache = Cache::open(on_disk(&dir, 100), clock).unwrap();
    assert_eq!(get(&mut cache, "report").as_deref(), Some("version 4"));
    assert_eq!(get(&mut cache, "other").as_deref(), Some("o2"));
    assert_eq!(get(&mut cache, "third").as_deref(), Some("t"));
    assert_eq!(get(&mut cache, "gone"), None);
    cache.close();
}

#[test]
fn a_directory_of_the_earlier_layout_is_emptied_on_open() {
    use redb::TableDefinition;
    let dir = TempDir::new("oldlayout");
    std::fs::create_dir_all(dir.path()).unwrap();
    {
        let db = redb::Database::create(dir.path().join(crate::cache::disk::DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        for name in ["entries", "meta"] {
            let mut table = txn
                .open_table(TableDefinition::<u64, &[u8]>::new(name))
                .unwrap();
            table
                .insert(42, &b"a record of the earlier layout"[..])
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let (_, clock) = manual_clock();
    let mut cache = Cache::open(on_disk(&dir, 100), clock.clone()).unwrap();
    assert_eq!(cache.len(), 0);
    set(&mut cache, "fresh", "f");
    cache.close();
    assert_eq!(disk_rows(&dir), (1, 1, false), "the old tables are gone");
    let mut cache = Cache::open(on_disk(&dir, 100), clock).unwrap();
    assert_eq!(get(&mut cache, "fresh").as_deref(), Some("f"));
    cache.close();
}

/// The value the damage tests store under `key-{i}`: text that can be found in the file.
fn marked_value(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(200))
}

/// Opens a cache on `dir`, stores `key-0`..`key-{n-1}` uncompressed, and closes it.
fn fill_and_close(dir: &TempDir, n: usize, clock: &Clock) {
    let mut options = on_disk(dir, 10);
    options.compression = Compression::None;
    let mut cache = Cache::open(options, clock.clone()).unwrap();
    for i in 0..n {
        set(&mut cache, &format!("key-{i}"), &marked_value(i));
    }
    cache.close();
}

/// Reads `key-0`..`key-{n-1}` back: how many came back as stored; panics on any other value.
fn read_back(cache: &mut Cache, n: usize) -> usize {
    let mut intact = 0;
    for i in 0..n {
        if let Some(value) = get(cache, &format!("key-{i}")) {
            assert_eq!(value, marked_value(i), "key-{i} came back changed");
            intact += 1;
        }
    }
    intact
}

/// Overwrites `bytes.len()` bytes of the cache's database file at `offset`.
fn overwrite(dir: &TempDir, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(crate::cache::disk::DB_FILE))
        .unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
}

/// Where `needle` first occurs in the cache's database file.
fn find_in_file(dir: &TempDir, needle: &[u8]) -> u64 {
    let bytes = std::fs::read(dir.path().join(crate::cache::disk::DB_FILE)).unwrap();
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the marked value is in the file") as u64
}

/// After the disk tier of `cache` (filled by [`fill_and_close`]) was reset: a value set now is
/// flushed, and a restart opens a sound file with that value and nothing from before the reset.
/// Returns the resets counted before the restart.
fn writes_after_the_reset_survive_a_restart(
    mut cache: Cache,
    dir: &TempDir,
    clock: &Clock,
    what: &str,
) -> u64 {
    set(&mut cache, "after", "a");
    cache.flush().unwrap().wait().unwrap();
    let resets = cache.stats().disk.resets;
    cache.close();
    let mut cache = Cache::open(on_disk(dir, 10), clock.clone()).unwrap();
    assert_eq!(
        cache.disk_damage_at_open(),
        None,
        "{what}: the new file is sound"
    );
    assert_eq!(get(&mut cache, "after").as_deref(), Some("a"), "{what}");
    assert_eq!(
        read_back(&mut cache, 300),
        0,
        "{what}: nothing from the damaged file"
    );
    cache.close();
    resets
}

/// Damages the database file of a closed cache, given the file's length.
type Damage = fn(&TempDir, u64);

#[test]
fn a_file_damaged_while_closed_is_replaced_by_an_empty_one_at_open() {
    let file_len = |dir: &TempDir| {
        std::fs::metadata(dir.path().join(crate::cache::disk::DB_FILE))
            .unwrap()
            .len()
    };
    let damages: [(&str, Damage); 3] = [
        ("truncated to half", |dir, len| {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join(crate::cache::disk::DB_FILE))
                .unwrap();
            file.set_len(len / 2).unwrap();
        }),
        ("header overwritten", |dir, _| {
            overwrite(dir, 0, &pseudo_random_bytes(4096, 7))
        }),
        ("not a database", |dir, _| {
            std::fs::write(
                dir.path().join(crate::cache::disk::DB_FILE),
                b"a file of some other program\n",
            )
            .unwrap();
        }),
    ];
    for (what, damage) in damages {
        let dir = TempDir::new("damaged");
        let (_, clock) = manual_clock();
        fill_and_close(&dir, 300, &clock);
        damage(&dir, file_len(&dir));
        let mut cache = Cache::open(on_disk(&dir, 10), clock.clone())
            .unwrap_or_else(|e| panic!("{what}: the cache refused to open: {e}"));
        assert!(cache.disk_damage_at_open().is_some(), "{what}");
        assert_eq!(cache.stats().disk.resets, 1, "{what}");
        assert_eq!(cache.stats().disk.entries, 0, "{what}");
        assert_eq!(read_back(&mut cache, 300), 0, "{what}");
        let resets = writes_after_the_reset_survive_a_restart(cache, &dir, &clock, what);
        assert_eq!(resets, 1, "{what}");
    }
}

#[test]
fn garbage_pages_anywhere_in_the_file_never_abort_and_are_never_served() {
    // every third page of the file overwritten: some of them are pages the open reads, others
    // only lookups reach (where redb may panic: the panic must not escape)
    let dir = TempDir::new("garbage");
    let (_, clock) = manual_clock();
    fill_and_close(&dir, 300, &clock);
    let len = std::fs::metadata(dir.path().join(crate::cache::disk::DB_FILE))
        .unwrap()
        .len();
    for (n, page) in (4096..len).step_by(3 * 4096).enumerate() {
        overwrite(&dir, page, &pseudo_random_bytes(4096, n as u64));
    }
    let mut cache = Cache::open(on_disk(&dir, 10), clock.clone()).unwrap();
    read_back(&mut cache, 300);
    let _ = cache.flush().unwrap().wait();
    let resets = writes_after_the_reset_survive_a_restart(cache, &dir, &clock, "garbage pages");
    assert!(resets >= 1);
}

#[test]
fn a_damaged_record_is_never_served_and_resets_the_tier() {
    let dir = TempDir::new("record");
    let (_, clock) = manual_clock();
    fill_and_close(&dir, 300, &clock);
    // one byte inside one value: redb's pages stay sound, only the record's checksum fails
    let at = find_in_file(&dir, marked_value(150).as_bytes());
    overwrite(&dir, at + 50, b"y");
    let mut cache = Cache::open(on_disk(&dir, 10), clock.clone()).unwrap();
    assert_eq!(cache.disk_damage_at_open(), None);
    assert_eq!(
        get(&mut cache, "key-149").as_deref(),
        Some(&*marked_value(149))
    );
    assert_eq!(
        get(&mut cache, "key-150"),
        None,
        "the damaged value is not served"
    );
    assert_eq!(cache.stats().disk.errors, 1);
    // the tier no longer trusts the file: it is emptied (key-149 was promoted to memory)
    assert_eq!(read_back(&mut cache, 300), 1);
    assert!(
        cache.flush().unwrap().wait().is_err(),
        "what was on the file is lost"
    );
    let resets = writes_after_the_reset_survive_a_restart(cache, &dir, &clock, "a damaged record");
    assert_eq!(resets, 1);
}

#[test]
fn a_damaged_index_record_drops_its_entry_and_is_counted() {
    let dir = TempDir::new("meta");
    let (_, clock) = manual_clock();
    fill_and_close(&dir, 300, &clock);
    // the key's copy in `log_meta` is the one not followed by its value
    let bytes = std::fs::read(dir.path().join(crate::cache::disk::DB_FILE)).unwrap();
    let key = b"key-150";
    let value = marked_value(150);
    let at = bytes
        .windows(key.len())
        .enumerate()
        .filter(|(_, w)| *w == key)
        .map(|(i, _)| i)
        .find(|&i| !bytes[i + key.len()..].starts_with(value.as_bytes()))
        .expect("the meta record holds the key") as u64;
    overwrite(&dir, at, b"K");
    let mut cache = Cache::open(on_disk(&dir, 10), clock.clone()).unwrap();
    assert_eq!(cache.disk_damage_at_open(), None, "the file itself opens");
    assert_eq!(cache.stats().disk.errors, 1);
    assert_eq!(cache.stats().disk.entries, 299);
    assert_eq!(get(&mut cache, "key-150"), None);
    assert_eq!(
        read_back(&mut cache, 300),
        299,
        "every other entry is served"
    );
    cache.close();
    // its records were deleted: the next open finds nothing damaged
    let mut cache = Cache::open(on_disk(&dir, 10), clock).unwrap();
    assert_eq!(cache.stats().disk.errors, 0);
    assert_eq!(read_back(&mut cache, 300), 299);
    cache.close();
}

#[test]
fn a_lookup_that_panics_inside_redb_resets_the_tier() {
    // redb panics on some damaged pages (in release builds, a lookup is the first to read a
    // record's page; debug builds of redb walk every page at open): the panic must become a
    // miss and a reset, never an abort
    let dir = TempDir::new("panic");
    let (_, clock) = manual_clock();
    fill_and_close(&dir, 300, &clock);
    let mut cache = Cache::open(on_disk(&dir, 10), clock.clone()).unwrap();
    cache.disk().unwrap().inject_read_panics(true);
    assert_eq!(get(&mut cache, "key-150"), None);
    cache.disk().unwrap().inject_read_panics(false);
    assert_eq!(cache.stats().disk.errors, 1);
    assert_eq!(read_back(&mut cache, 300), 0, "the tier was emptied");
    assert!(cache.flush().unwrap().wait().is_err());
    let resets =
        writes_after_the_reset_survive_a_restart(cache, &dir, &clock, "a read that panics");
    assert_eq!(resets, 1);
}

#[test]
fn records_of_the_layout_without_checksums_are_emptied_on_open() {
    use redb::TableDefinition;
    let dir = TempDir::new("layout1");
    let (_, clock) = manual_clock();
    fill_and_close(&dir, 10, &clock);
    {
        // a file written before records carried a checksum has no `layout` setting
        let db = redb::Database::open(dir.path().join(crate::cache::disk::DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TableDefinition::<&str, u64>::new("settings"))
            .unwrap()
            .remove("layout")
            .unwrap();
        txn.commit().unwrap();
    }
    let mut cache = Cache::open(on_disk(&dir, 10), clock.clone()).unwrap();
    assert_eq!(
        cache.disk_damage_at_open(),
        None,
        "an older layout is not damage"
    );
    assert_eq!(cache.stats().disk.resets, 0);
    assert_eq!(cache.len(), 0);
    set(&mut cache, "fresh", "f");
    cache.close();
    assert_eq!(disk_rows(&dir), (1, 1, false));
    let mut cache = Cache::open(on_disk(&dir, 10), clock).unwrap();
    assert_eq!(get(&mut cache, "fresh").as_deref(), Some("f"));
    cache.close();
}
