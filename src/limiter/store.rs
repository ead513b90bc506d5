//! Where bucket state lives: the store boundary, and the bounded in-memory store.
//!
//! The limiter asks its store for the state of one key at a time. [`MemoryStore`] keeps that
//! state in this process, bounded by `maxKeys`. A shared store (Redis, for several processes)
//! answers the same questions remotely and asynchronously, so it sits behind the same decision
//! logic with an async entry point; the JS API does not change.
//!
//! Memory: a key's whole state is a 40-byte slot (the key inline when it is at most 24 bytes,
//! the bucket's `full_at`, and two 32-bit millisecond stamps), in an open-addressing table with
//! one control byte per slot. When a shard is full, buckets that have refilled to full are
//! dropped first (they carry no state), then the least recently used sixteenth of the shard is
//! evicted and counted. Sharding keeps each sweep short: a sweep touches one shard, never the
//! whole store.

use std::hash::BuildHasher;

use compact_str::CompactString;
use hashbrown::hash_table::{Entry, HashTable};
use hashbrown::DefaultHashBuilder;

use super::bucket::Bucket;

/// Milliseconds as kept in a slot: 32 bits, wrapping every 49.7 days. Only differences of
/// less than 24.8 days are ever compared, so the wrap is harmless.
#[inline]
pub fn stamp_ms(now_nanos: u64) -> u32 {
    (now_nanos / 1_000_000) as u32
}

/// `later - earlier` for wrapping millisecond stamps, as a signed number.
#[inline]
pub fn stamp_diff(later: u32, earlier: u32) -> i32 {
    later.wrapping_sub(earlier) as i32
}

/// Everything the limiter keeps for one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    /// The token bucket.
    pub bucket: Bucket,
    /// Millisecond stamp until which the key is blocked; 0 when it is not.
    pub blocked_until_ms: u32,
    /// Millisecond stamp of the last use, kept by the store for eviction.
    last_seen_ms: u32,
}

impl KeyState {
    /// Milliseconds the key remains blocked at `now_ms` (0 when not blocked).
    #[inline]
    pub fn blocked_for_ms(&self, now_ms: u32) -> u32 {
        if self.blocked_until_ms == 0 {
            return 0;
        }
        stamp_diff(self.blocked_until_ms, now_ms).max(0) as u32
    }

    /// Whether dropping this state would change nothing: the bucket is full and no block holds.
    #[inline]
    pub fn carries_nothing(&self, now: u64) -> bool {
        self.bucket.is_full(now) && self.blocked_for_ms(stamp_ms(now)) == 0
    }
}

/// The questions a limiter asks of the place its buckets live.
pub trait BucketStore {
    /// The state of `key`, created (full, unblocked) when absent, and marked as used at `now`.
    fn state(&mut self, key: &str, now: u64) -> &mut KeyState;
    /// The state of `key` if it is held, without creating or touching it.
    fn existing(&mut self, key: &str) -> Option<&mut KeyState>;
    /// Forgets `key`; true when it was held.
    fn remove(&mut self, key: &str) -> bool;
    /// Number of keys held.
    fn len(&self) -> usize;
    /// Whether no key is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of keys evicted (with state lost) to stay within bounds.
    fn evicted(&self) -> u64;
}

struct Slot {
    key: CompactString,
    state: KeyState,
}

struct Shard {
    table: HashTable<Slot>,
    capacity: usize,
}

/// A bounded in-process bucket store.
pub struct MemoryStore {
    shards: Box<[Shard]>,
    shard_mask: u64,
    hasher: DefaultHashBuilder,
    len: usize,
    evicted: u64,
}

/// Keys per shard below which a single shard is used (eviction is then exact to the sixteenth).
const KEYS_PER_SHARD: usize = 16_384;
const MAX_SHARDS: usize = 64;

impl MemoryStore {
    /// A store holding at most `max_keys` keys (at least 1).
    pub fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let shards = (max_keys / KEYS_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two()
            .min(MAX_SHARDS);
        let per_shard = max_keys.div_ceil(shards);
        MemoryStore {
            shards: (0..shards)
                .map(|_| Shard {
                    table: HashTable::new(),
                    capacity: per_shard,
                })
                .collect(),
            shard_mask: shards as u64 - 1,
            hasher: DefaultHashBuilder::default(),
            len: 0,
            evicted: 0,
        }
    }

    #[inline]
    fn locate(&self, key: &str) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        // The table uses the low bits and the top seven; the shard takes bits from the middle.
        (hash, ((hash >> 32) & self.shard_mask) as usize)
    }
}

impl Shard {
    /// Makes room for one more key: drops keys that carry nothing, then evicts the least
    /// recently used sixteenth. Returns how many keys were dropped and how many evicted.
    fn make_room(&mut self, now: u64) -> (usize, usize) {
        let before = self.table.len();
        self.table.retain(|slot| !slot.state.carries_nothing(now));
        let dropped = before - self.table.len();
        let target = self.capacity - (self.capacity / 16).max(1);
        if self.table.len() <= target {
            return (dropped, 0);
        }
        let excess = self.table.len() - target;
        let now_ms = stamp_ms(now);
        let mut ages: Vec<u32> = self
            .table
            .iter()
            .map(|slot| now_ms.wrapping_sub(slot.state.last_seen_ms))
            .collect();
        // The excess-th oldest age: everything at least that old goes (ties stop at `excess`).
        let pivot = ages.len() - excess;
        let (_, &mut threshold, _) = ages.select_nth_unstable(pivot);
        let mut evicted = 0;
        self.table.retain(|slot| {
            if evicted < excess && now_ms.wrapping_sub(slot.state.last_seen_ms) >= threshold {
                evicted += 1;
                false
            } else {
                true
            }
        });
        (dropped, evicted)
    }
}

impl BucketStore for MemoryStore {
    #[inline]
    fn state(&mut self, key: &str, now: u64) -> &mut KeyState {
        let (hash, index) = self.locate(key);
        let hasher = &self.hasher;
        let now_ms = stamp_ms(now);
        let shard = &mut self.shards[index];
        if shard.table.len() >= shard.capacity
            && shard.table.find(hash, |slot| slot.key == key).is_none()
        {
            let (dropped, evicted) = shard.make_room(now);
            self.len -= dropped + evicted;
            self.evicted += evicted as u64;
        }
        let slot = match shard.table.entry(
            hash,
            |slot| slot.key == key,
            |slot| hasher.hash_one(slot.key.as_str()),
        ) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.len += 1;
                entry
                    .insert(Slot {
                        key: CompactString::from(key),
                        state: KeyState::default(),
                    })
                    .into_mut()
            }
        };
        slot.state.last_seen_ms = now_ms;
        &mut slot.state
    }

    fn existing(&mut self, key: &str) -> Option<&mut KeyState> {
        let (hash, index) = self.locate(key);
        self.shards[index]
            .table
            .find_mut(hash, |slot| slot.key == key)
            .map(|slot| &mut slot.state)
    }

    fn remove(&mut self, key: &str) -> bool {
        let (hash, index) = self.locate(key);
        match self.shards[index]
            .table
            .find_entry(hash, |slot| slot.key == key)
        {
            Ok(entry) => {
                entry.remove();
                self.len -= 1;
                true
            }
            Err(_) => false,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn slots_stay_small() {
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }

    #[test]
    fn a_key_is_created_full_and_found_again() {
        let mut store = MemoryStore::new(10);
        store.state("a", 0).bucket.full_at = 5 * MS;
        assert_eq!(store.existing("a").unwrap().bucket.full_at, 5 * MS);
        assert!(store.existing("b").is_none());
        assert_eq!(store.len(), 1);
        assert!(store.remove("a"));
        assert!(!store.remove("a"));
        assert!(store.is_empty());
    }

    #[test]
    fn full_buckets_are_dropped_before_anything_is_evicted() {
        let mut store = MemoryStore::new(100);
        for i in 0..100 {
            // even keys hold state until t = 1 s, odd keys are full
            let full_at = if i % 2 == 0 { 1_000 * MS } else { 0 };
            store.state(&format!("k{i}"), 10 * MS).bucket.full_at = full_at;
        }
        store.state("new", 20 * MS);
        assert_eq!(store.evicted(), 0);
        assert_eq!(store.len(), 51);
        for i in (0..100).step_by(2) {
            assert!(store.existing(&format!("k{i}")).is_some());
        }
    }

    #[test]
    fn blocked_keys_are_not_dropped_as_full() {
        let mut store = MemoryStore::new(2);
        let state = store.state("blocked", 0);
        state.blocked_until_ms = 10_000;
        store.state("other", 0);
        store.state("third", MS);
        assert!(store.existing("blocked").is_some());
    }

    #[test]
    fn least_recently_used_keys_are_evicted_and_counted() {
        let mut store = MemoryStore::new(1_000);
        for i in 0..1_000u64 {
            store.state(&format!("k{i}"), i * MS).bucket.full_at = u64::MAX;
        }
        // touch the oldest hundred so they become the most recent
        for i in 0..100u64 {
            store.state(&format!("k{i}"), (2_000 + i) * MS);
        }
        store.state("fresh", 3_000 * MS).bucket.full_at = u64::MAX;
        assert!(store.evicted() > 0);
        assert!(store.len() <= 1_000);
        for i in 0..100u64 {
            assert!(
                store.existing(&format!("k{i}")).is_some(),
                "recent k{i} was evicted"
            );
        }
        assert!(
            store.existing("k100").is_none(),
            "the oldest untouched key survived"
        );
        assert!(store.existing("fresh").is_some());
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_bounded() {
        let max = 50_000;
        let mut store = MemoryStore::new(max);
        for i in 0..500_000u64 {
            store.state(&format!("flood-{i}"), i).bucket.full_at = u64::MAX;
            assert!(store.len() <= max);
        }
        assert!(store.evicted() >= 450_000);
    }

    #[test]
    fn long_keys_work_as_well_as_short_ones() {
        let mut store = MemoryStore::new(10);
        let long = "x".repeat(1024);
        store.state(&long, 0).bucket.full_at = 7;
        assert_eq!(store.existing(&long).unwrap().bucket.full_at, 7);
    }
}
