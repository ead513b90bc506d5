//! Trace replay that chose the memory tier's policy: W-TinyLFU against plain LRU on a Zipf(0.9)
//! trace, with and without one-off scans mixed in. The figures in the `memory` module doc come
//! from the ignored full-size test; a smaller replay runs with the unit tests and holds the
//! policy to the bar (at least LRU's hit ratio on Zipf, at least 1.3x with scans).

use hashbrown::HashMap;

use super::codec::ValueKind;
use super::key::hash_key;
use super::memory::{Lookup, MemoryLimits, MemoryTier, NewEntry};

/// splitmix64: a small, good, seedable generator, so the traces are the same on every run.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Samples key ranks 0..n with probability proportional to 1 / (rank + 1)^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 0..n {
            total += 1.0 / ((rank + 1) as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u64
    }
}

/// The policy under test or the baseline.
trait Policy {
    /// Looks `key` up and inserts it on a miss; returns whether it hit.
    fn access(&mut self, key: u64) -> bool;
}

/// Plain LRU over a slab with index links.
struct Lru {
    capacity: usize,
    map: HashMap<u64, usize>,
    nodes: Vec<(u64, usize, usize)>, // key, prev, next
    head: usize,                     // least recent
    tail: usize,
}

const NONE: usize = usize::MAX;

impl Lru {
    fn new(capacity: usize) -> Self {
        Lru {
            capacity,
            map: HashMap::with_capacity(capacity),
            nodes: Vec::with_capacity(capacity),
            head: NONE,
            tail: NONE,
        }
    }

    fn unlink(&mut self, i: usize) {
        let (_, prev, next) = self.nodes[i];
        if prev == NONE {
            self.head = next;
        } else {
            self.nodes[prev].2 = next;
        }
        if next == NONE {
            self.tail = prev;
        } else {
            self.nodes[next].1 = prev;
        }
    }

    fn push_tail(&mut self, i: usize) {
        self.nodes[i].1 = self.tail;
        self.nodes[i].2 = NONE;
        if self.tail == NONE {
            self.head = i;
        } else {
            self.nodes[self.tail].2 = i;
        }
        self.tail = i;
    }
}

impl Policy for Lru {
    fn access(&mut self, key: u64) -> bool {
        if let Some(&i) = self.map.get(&key) {
            self.unlink(i);
            self.push_tail(i);
            return true;
        }
        let i = if self.nodes.len() < self.capacity {
            self.nodes.push((key, NONE, NONE));
            self.nodes.len() - 1
        } else {
            let victim = self.head;
            self.unlink(victim);
            self.map.remove(&self.nodes[victim].0);
            self.nodes[victim].0 = key;
            victim
        };
        self.map.insert(key, i);
        self.push_tail(i);
        false
    }
}

/// The memory tier, bounded by entries, with empty values.
struct TinyLfu(MemoryTier);

impl Policy for TinyLfu {
    fn access(&mut self, key: u64) -> bool {
        let bytes = key.to_le_bytes();
        let hash = hash_key(11, &bytes);
        if let Lookup::Hit(_) = self.0.get(&bytes, hash, 0) {
            return true;
        }
        self.0.insert(NewEntry {
            key: &bytes,
            hash,
            kind: ValueKind::Bytes,
            flags: 0,
            stored: &[],
            tags: &[],
            expires_at: 0,
            keep_until: 0,
            version: 0,
        });
        false
    }
}

/// The shape of a replay.
#[derive(Clone, Copy)]
struct Trace {
    keys: usize,
    capacity: usize,
    warmup: usize,
    requests: usize,
    /// After every `scan_every` Zipf requests, `scan_len` keys never seen before or after.
    scan_every: usize,
    scan_len: usize,
}

/// Replays the trace against `policy`; returns the hit ratio of the measured Zipf requests.
fn replay(trace: Trace, zipf: &Zipf, policy: &mut dyn Policy) -> f64 {
    let mut rng = Rng(42);
    let mut next_cold = trace.keys as u64;
    let mut hits = 0usize;
    for n in 0..trace.warmup + trace.requests {
        if trace.scan_len > 0 && n > 0 && n % trace.scan_every == 0 {
            for _ in 0..trace.scan_len {
                policy.access(next_cold);
                next_cold += 1;
            }
        }
        let hit = policy.access(zipf.sample(&mut rng));
        if n >= trace.warmup && hit {
            hits += 1;
        }
    }
    hits as f64 / trace.requests as f64
}

/// Hit ratios (LRU, W-TinyLFU) of a trace.
fn compare(trace: Trace, zipf: &Zipf) -> (f64, f64) {
    let lru = replay(trace, zipf, &mut Lru::new(trace.capacity));
    let tier = MemoryTier::new(MemoryLimits {
        max_entries: Some(trace.capacity),
        max_bytes: None,
    });
    let tiny_lfu = replay(trace, zipf, &mut TinyLfu(tier));
    (lru, tiny_lfu)
}

fn check(name: &str, trace: Trace, min_ratio: f64) {
    let zipf = Zipf::new(trace.keys, 0.9);
    let (lru, tiny_lfu) = compare(trace, &zipf);
    println!(
        "{name}: LRU {:.2}%  W-TinyLFU {:.2}%  ratio {:.3}",
        lru * 100.0,
        tiny_lfu * 100.0,
        tiny_lfu / lru
    );
    assert!(
        tiny_lfu >= lru * min_ratio,
        "{name}: W-TinyLFU {tiny_lfu:.4} below {min_ratio} x LRU {lru:.4}"
    );
}

const SMALL: Trace = Trace {
    keys: 100_000,
    capacity: 10_000,
    warmup: 100_000,
    requests: 300_000,
    scan_every: 0,
    scan_len: 0,
};

#[test]
fn small_zipf_trace_beats_lru() {
    check("small zipf", SMALL, 1.0);
}

#[test]
fn small_zipf_trace_with_scans_beats_lru_by_a_third() {
    let trace = Trace {
        scan_every: 20_000,
        scan_len: 20_000,
        ..SMALL
    };
    check("small zipf + scans", trace, 1.3);
}

const FULL: Trace = Trace {
    keys: 1_000_000,
    capacity: 100_000,
    warmup: 1_000_000,
    requests: 4_000_000,
    scan_every: 0,
    scan_len: 0,
};

#[test]
#[ignore = "full-size replay (about 10 s in release); run with --release -- --ignored --nocapture"]
fn full_zipf_traces() {
    check("zipf", FULL, 1.0);
    for (scan_every, scan_len) in [(200_000, 200_000), (100_000, 100_000), (50_000, 100_000)] {
        let with_scans = Trace {
            scan_every,
            scan_len,
            ..FULL
        };
        check(
            &format!("zipf + a scan of {scan_len} every {scan_every}"),
            with_scans,
            1.3,
        );
    }
}
