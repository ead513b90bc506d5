//! The memory tier and its eviction policy, W-TinyLFU (Einziger, Eytan, Friedman, Manes:
//! "Adaptive Software Cache Management", the policy of Caffeine and moka).
//!
//! A new entry enters a small LRU *window* (1% of the bounds). When the window overflows, its
//! least recent entry becomes a *candidate* for the *main* space, a segmented LRU whose
//! *probation* segment holds entries seen once in main and whose *protected* segment (80% of
//! main) holds entries hit again there. While the tier is over its bounds, the candidate and the
//! *victim* (the least recent entry of probation) are compared by their estimated frequency in a
//! [`FrequencySketch`] that counts every lookup, hits and misses alike: the one seen less often
//! goes. A one-off scan therefore flows through the window and is turned away at the door,
//! while the hot set sits in protected; the window keeps bursts of recency (a key requested
//! twice in quick succession) from being refused before the sketch has seen them.
//!
//! A candidate seen only once (its frequency is 1, from the sketch's doorkeeper) is never
//! admitted over a victim, even one of frequency 0: a new key earns its place in main by a
//! second request while it is in the window. This, and the doorkeeper, are what keep a scan
//! out; the parameters are Caffeine's (window 1%, protected 80% of main, halving after
//! `10 × max_entries` counted occurrences).
//!
//! Measured by the trace replay in `simulation.rs` (`cargo test --release --lib
//! cache::simulation -- --ignored --nocapture`, about 15 s): 1,000,000 distinct keys with
//! Zipf(0.9) popularity, a cache of 100,000 entries (10%), 1,000,000 warm-up requests then
//! 4,000,000 measured ones; every request a `get`, and an insert on a miss. Hit ratios over the
//! Zipf requests (a scan's own requests always miss, in both policies):
//!
//! | trace | LRU | W-TinyLFU | W-TinyLFU / LRU |
//! |---|---|---|---|
//! | Zipf(0.9) | 63.68% | 70.35% | 1.105 |
//! | + a scan of 200,000 new keys after every 200,000 requests | 53.54% | 69.66% | 1.301 |
//! | + a scan of 100,000 new keys after every 100,000 requests | 47.37% | 69.74% | 1.472 |
//! | + a scan of 100,000 new keys after every 50,000 requests | 41.60% | 68.26% | 1.641 |
//!
//! For scale: an oracle holding the 100,000 most popular keys would hit 73.0%, so the first
//! scan trace leaves at most 1.36x to gain over LRU. Scans cost W-TinyLFU under one point;
//! the same replay at a tenth of the size runs with the unit tests.
//!
//! # Memory
//!
//! Entries live in one slab (`Vec<Slot>`) and link into their segment's list by `u32` index;
//! the key index is a `hashbrown::HashTable<u32>` of slab indices; an entry's key, stored
//! payload and tags share one allocation. Fixed cost per entry: the 72-byte slot (with the
//! entry's version and its stale-read deadline), about 6 bytes of index (a `u32` and a control
//! byte, at a load factor up to 7/8), about 12 bytes of sketch and doorkeeper, 16 bytes of
//! allocator header for its one allocation, and 16 bytes in the expiry heap when it has a TTL:
//! 106 bytes without a TTL, 122 with one. [`ENTRY_OVERHEAD_BYTES`] (112) is what `max_bytes`
//! counts for each entry beyond its bytes.
//!
//! # Stale reads
//!
//! An entry may be kept past its expiry until [`NewEntry::keep_until`], for callers that
//! serve a stale value while they refresh it (stale-while-revalidate). Such an entry is never
//! returned by [`MemoryTier::get`] or counted by [`MemoryTier::contains`] once its time is up;
//! only [`MemoryTier::lookup`] with `allow_stale` finds it, and its storage is reclaimed at
//! `keep_until`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::HashTable;

use super::codec::ValueKind;
use super::sketch::FrequencySketch;

/// What one entry costs beyond its key, stored payload and tags, in bytes: the slot, the
/// index, the sketch, the allocator header and (with a TTL) the expiry heap, 90 to 106 bytes
/// (see the module doc). Counted in the weight that `max_bytes` bounds.
pub const ENTRY_OVERHEAD_BYTES: u64 = 112;

/// The bounds of the memory tier; at least one must be set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Entries held at most.
    pub max_entries: Option<usize>,
    /// Total weight held at most: stored bytes + key + tags + [`ENTRY_OVERHEAD_BYTES`] each.
    pub max_bytes: Option<u64>,
}

/// Counts kept by the memory tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryCounters {
    /// Entries dropped to stay within the bounds.
    pub evictions: u64,
    /// Entries dropped because their time was up (on access or by the sweep).
    pub expirations: u64,
    /// Entries refused because they alone outweigh `max_bytes`.
    pub oversized: u64,
}

/// An entry as handed to [`MemoryTier::insert`].
#[derive(Clone, Copy, Debug)]
pub struct NewEntry<'a> {
    /// The key (validated by the caller).
    pub key: &'a [u8],
    /// The key's hash (`key::hash_key` with the cache's seed).
    pub hash: u64,
    /// The value's JS type.
    pub kind: ValueKind,
    /// Codec flags of `stored`.
    pub flags: u8,
    /// The payload as stored (compressed or not).
    pub stored: &'a [u8],
    /// The entry's tags, encoded by `key::encode_tags`.
    pub tags: &'a [u8],
    /// Wall-clock expiry in ms since the epoch; 0 for none.
    pub expires_at: u64,
    /// Wall-clock time in ms until which the entry is kept after `expires_at`, for stale reads
    /// ([`MemoryTier::lookup`] with `allow_stale`); 0 (or anything up to `expires_at`) to drop
    /// it at expiry.
    pub keep_until: u64,
    /// The entry's version, chosen by the caller; [`EntryView::version`] returns it, so that a
    /// caller holding a decoded copy can tell whether the entry is still the same one.
    pub version: u64,
}

/// A live entry, borrowed from the tier.
#[derive(Clone, Copy, Debug)]
pub struct EntryView<'a> {
    /// The value's JS type.
    pub kind: ValueKind,
    /// Codec flags of `stored`.
    pub flags: u8,
    /// The payload as stored.
    pub stored: &'a [u8],
    /// Wall-clock expiry in ms; 0 for none.
    pub expires_at: u64,
    /// The version given at insertion.
    pub version: u64,
}

/// The result of a lookup by [`MemoryTier::lookup`]: a slot to read with
/// [`MemoryTier::entry`], so that the caller holds no borrow while it decides what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Present: live, or (only when stale reads were allowed) expired but still kept.
    Found {
        /// The slot, valid until the next call that changes the tier.
        slot: u32,
        /// Whether the entry's time is up (a stale read).
        stale: bool,
    },
    /// Present but its time was up; removed unless it is kept for stale reads.
    Expired,
    /// Not present.
    Miss,
}

/// The result of a lookup.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The key is present and live.
    Hit(EntryView<'a>),
    /// The key was present but its time was up; it has been removed (or is kept for stale
    /// reads only).
    Expired,
    /// The key is not present.
    Miss,
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    Window = 0,
    Probation = 1,
    Protected = 2,
}

/// One slab slot: a live entry, or (with empty `data`) a free slot whose `next` links the free
/// list.
struct Slot {
    /// key | stored payload | tags.
    data: Box<[u8]>,
    hash: u64,
    expires_at: u64,
    /// Kept for stale reads until then (never before `expires_at`).
    keep_until: u64,
    version: u64,
    key_len: u32,
    payload_len: u32,
    prev: u32,
    next: u32,
    /// Bumped when the slot is freed, so stale expiry-heap items are recognised.
    generation: u32,
    kind: ValueKind,
    flags: u8,
    region: Region,
}

impl Slot {
    #[inline]
    fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    #[inline]
    fn stored(&self) -> &[u8] {
        let start = self.key_len as usize;
        &self.data[start..start + self.payload_len as usize]
    }

    #[inline]
    fn tags(&self) -> &[u8] {
        &self.data[(self.key_len + self.payload_len) as usize..]
    }

    #[inline]
    fn weight(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES
    }

    #[inline]
    fn is_live(&self) -> bool {
        !self.data.is_empty()
    }

    fn view(&self) -> EntryView<'_> {
        EntryView {
            kind: self.kind,
            flags: self.flags,
            stored: self.stored(),
            expires_at: self.expires_at,
            version: self.version,
        }
    }

    /// When the entry's storage is reclaimed: its expiry, or later when kept for stale reads.
    #[inline]
    fn reclaim_at(&self) -> u64 {
        if self.expires_at == 0 {
            0
        } else {
            self.expires_at.max(self.keep_until)
        }
    }
}

/// A doubly linked list through the slab, least recent at `head`.
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
    bytes: u64,
}

const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
    len: 0,
    bytes: 0,
};

/// A share of the bounds: entries and bytes (`u64::MAX` / `usize::MAX` when unbounded).
#[derive(Clone, Copy, Debug)]
struct Share {
    entries: usize,
    bytes: u64,
}

impl Share {
    fn of(limits: MemoryLimits, percent: u64) -> Share {
        Share {
            entries: limits
                .max_entries
                .map_or(usize::MAX, |n| (n as u64 * percent / 100).max(1) as usize),
            bytes: limits.max_bytes.map_or(u64::MAX, |b| b * percent / 100),
        }
    }

    #[inline]
    fn exceeded_by(&self, list: &List) -> bool {
        list.len > self.entries || list.bytes > self.bytes
    }
}

/// The memory tier: a bounded map from key to stored value with W-TinyLFU eviction and
/// absolute expiry times. Single-threaded (`&mut self`); the cache owns it.
pub struct MemoryTier {
    slots: Vec<Slot>,
    free_head: u32,
    index: HashTable<u32>,
    lists: [List; 3],
    sketch: FrequencySketch,
    /// (reclaim time, slot, generation) of entries with a TTL, soonest first; stale items are
    /// skipped when popped.
    expiry: BinaryHeap<Reverse<(u64, u32, u32)>>,
    limits: MemoryLimits,
    window: Share,
    protected: Share,
    len: usize,
    bytes: u64,
    counters: MemoryCounters,
}

impl MemoryTier {
    /// An empty tier with the given bounds (the caller checks that one is set).
    pub fn new(limits: MemoryLimits) -> Self {
        let window = Share::of(limits, 1);
        let main = Share::of(limits, 99);
        let protected = Share {
            entries: if main.entries == usize::MAX {
                usize::MAX
            } else {
                (main.entries * 4 / 5).max(1)
            },
            bytes: if main.bytes == u64::MAX {
                u64::MAX
            } else {
                main.bytes / 5 * 4
            },
        };
        let sketch_size = limits.max_entries.unwrap_or(1024);
        MemoryTier {
            slots: Vec::new(),
            free_head: NIL,
            index: HashTable::new(),
            lists: [EMPTY_LIST; 3],
            sketch: FrequencySketch::new(sketch_size),
            expiry: BinaryHeap::new(),
            limits,
            window,
            protected,
            len: 0,
            bytes: 0,
            counters: MemoryCounters::default(),
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tier is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total weight held (see [`MemoryLimits::max_bytes`]).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Evictions, expirations and refusals so far.
    pub fn counters(&self) -> MemoryCounters {
        self.counters
    }

    /// The bounds.
    pub fn limits(&self) -> MemoryLimits {
        self.limits
    }

    fn find(&self, key: &[u8], hash: u64) -> Option<u32> {
        self.index
            .find(hash, |&i| self.slots[i as usize].key() == key)
            .copied()
    }

    /// Looks `key` up at wall time `now_ms`. A hit counts in the frequency sketch and refreshes
    /// the entry's recency (promoting it from probation to protected); an expired entry is
    /// removed and counted. A miss is not counted: the `insert` that follows it is, so that the
    /// usual get-or-load counts one occurrence per request.
    pub fn get(&mut self, key: &[u8], hash: u64, now_ms: u64) -> Lookup<'_> {
        match self.lookup(key, hash, now_ms, false) {
            Probe::Found { slot, .. } => Lookup::Hit(self.slots[slot as usize].view()),
            Probe::Expired => Lookup::Expired,
            Probe::Miss => Lookup::Miss,
        }
    }

    /// Like [`MemoryTier::get`], returning the slot to read with [`MemoryTier::entry`]. With
    /// `allow_stale`, an entry whose time is up but which is kept for stale reads (see
    /// [`NewEntry::keep_until`]) is found, marked stale; without it such an entry reads as
    /// expired but stays for the stale readers. A stale read counts as a hit for the policy.
    pub fn lookup(&mut self, key: &[u8], hash: u64, now_ms: u64, allow_stale: bool) -> Probe {
        let Some(index) = self.find(key, hash) else {
            return Probe::Miss;
        };
        let slot = &self.slots[index as usize];
        let expired = slot.expires_at != 0 && now_ms >= slot.expires_at;
        if expired {
            self.sketch.increment(hash);
            if now_ms >= slot.reclaim_at() {
                self.remove_slot(index);
                self.counters.expirations += 1;
                return Probe::Expired;
            }
            if !allow_stale {
                return Probe::Expired;
            }
        }
        self.on_hit(index);
        if !expired {
            // counted after the recency update, which gives the sketch's prefetched lines (see
            // `prefetch`) that much longer to arrive
            self.sketch.increment(hash);
        }
        Probe::Found {
            slot: index,
            stale: expired,
        }
    }

    /// The entry in `slot`, as returned by the last [`MemoryTier::lookup`].
    pub fn entry(&self, slot: u32) -> EntryView<'_> {
        self.slots[slot as usize].view()
    }

    /// Starts loading what a lookup or insert of `hash` will count in the frequency sketch
    /// (see [`FrequencySketch::prefetch`]); call it as soon as the hash is known.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.sketch.prefetch(hash);
    }

    /// The estimated recent occurrences of the key with `hash` (0..=16), as the policy sees
    /// them.
    pub fn frequency(&self, hash: u64) -> u8 {
        self.sketch.frequency(hash)
    }

    /// Whether `key` is present and live at `now_ms`, without touching recency or frequency.
    pub fn contains(&self, key: &[u8], hash: u64, now_ms: u64) -> bool {
        self.find(key, hash).is_some_and(|i| {
            let expires_at = self.slots[i as usize].expires_at;
            expires_at == 0 || now_ms < expires_at
        })
    }

    /// Stores an entry (replacing the key's previous one), then evicts by the policy until the
    /// tier is within its bounds. An entry that alone outweighs `max_bytes` is not stored (and
    /// the key's previous entry is dropped, so it cannot be served stale); returns whether it
    /// was stored.
    pub fn insert(&mut self, entry: NewEntry<'_>) -> bool {
        self.sketch.increment(entry.hash);
        let weight =
            (entry.key.len() + entry.stored.len() + entry.tags.len()) as u64 + ENTRY_OVERHEAD_BYTES;
        if let Some(existing) = self.find(entry.key, entry.hash) {
            self.remove_slot(existing);
        }
        if self.limits.max_bytes.is_some_and(|max| weight > max) {
            self.counters.oversized += 1;
            return false;
        }
        let mut data = Vec::with_capacity(weight as usize - ENTRY_OVERHEAD_BYTES as usize);
        data.extend_from_slice(entry.key);
        data.extend_from_slice(entry.stored);
        data.extend_from_slice(entry.tags);
        let slot = Slot {
            data: data.into_boxed_slice(),
            hash: entry.hash,
            expires_at: entry.expires_at,
            keep_until: entry.keep_until,
            version: entry.version,
            key_len: entry.key.len() as u32,
            payload_len: entry.stored.len() as u32,
            prev: NIL,
            next: NIL,
            generation: 0,
            kind: entry.kind,
            flags: entry.flags,
            region: Region::Window,
        };
        let index = self.allocate(slot);
        let slots = &self.slots;
        self.index
            .insert_unique(entry.hash, index, |&i| slots[i as usize].hash);
        self.len += 1;
        self.bytes += weight;
        self.push_tail(Region::Window, index);
        if entry.expires_at != 0 {
            let slot = &self.slots[index as usize];
            self.expiry
                .push(Reverse((slot.reclaim_at(), index, slot.generation)));
        }
        self.sketch.ensure_capacity(self.len);
        self.balance();
        true
    }

    /// Removes `key`; returns whether it was present (live or not).
    pub fn remove(&mut self, key: &[u8], hash: u64) -> bool {
        match self.find(key, hash) {
            Some(index) => {
                self.remove_slot(index);
                true
            }
            None => false,
        }
    }

    /// Removes every entry for which `matches(key, tags)` holds; returns their hashes.
    pub fn remove_where(&mut self, mut matches: impl FnMut(&[u8], &[u8]) -> bool) -> Vec<u64> {
        let doomed: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| {
                let slot = &self.slots[i as usize];
                slot.is_live() && matches(slot.key(), slot.tags())
            })
            .collect();
        doomed
            .into_iter()
            .map(|i| {
                let hash = self.slots[i as usize].hash;
                self.remove_slot(i);
                hash
            })
            .collect()
    }

    /// Removes everything; returns how many entries there were. Counters and the frequency
    /// sketch are kept.
    pub fn clear(&mut self) -> usize {
        let removed = self.len;
        self.slots.clear();
        self.free_head = NIL;
        self.index.clear();
        self.lists = [EMPTY_LIST; 3];
        self.expiry.clear();
        self.len = 0;
        self.bytes = 0;
        removed
    }

    /// Removes up to `budget` entries whose time is up at `now_ms`, soonest first; returns how
    /// many. Called a little on every operation, so expired entries are reclaimed without a
    /// timer per entry.
    pub fn reclaim_expired(&mut self, now_ms: u64, budget: usize) -> usize {
        let mut reclaimed = 0;
        let mut examined = 0;
        while examined < budget * 4 && reclaimed < budget {
            let Some(&Reverse((expires_at, index, generation))) = self.expiry.peek() else {
                break;
            };
            if expires_at > now_ms {
                break;
            }
            self.expiry.pop();
            examined += 1;
            let slot = &self.slots[index as usize];
            if slot.is_live() && slot.generation == generation && slot.reclaim_at() == expires_at {
                self.remove_slot(index);
                self.counters.expirations += 1;
                reclaimed += 1;
            }
        }
        // items of overwritten or removed entries pile up; rebuild when they dominate
        if self.expiry.len() > 2 * self.len + 1024 {
            self.expiry = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_live() && s.expires_at != 0)
                .map(|(i, s)| Reverse((s.reclaim_at(), i as u32, s.generation)))
                .collect();
        }
        reclaimed
    }

    fn allocate(&mut self, slot: Slot) -> u32 {
        if self.free_head != NIL {
            let index = self.free_head;
            let free = &mut self.slots[index as usize];
            self.free_head = free.next;
            let generation = free.generation;
            *free = slot;
            free.generation = generation;
            index
        } else {
            assert!(self.slots.len() < NIL as usize, "memory tier slab is full");
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        }
    }

    fn remove_slot(&mut self, index: u32) {
        let region = self.slots[index as usize].region;
        self.unlink(region, index);
        let slot = &mut self.slots[index as usize];
        let hash = slot.hash;
        let weight = slot.weight();
        slot.data = Box::default();
        slot.generation = slot.generation.wrapping_add(1);
        slot.next = self.free_head;
        self.free_head = index;
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == index) {
            entry.remove();
        }
        self.len -= 1;
        self.bytes -= weight;
    }

    fn unlink(&mut self, region: Region, index: u32) {
        let (prev, next, weight) = {
            let slot = &self.slots[index as usize];
            (slot.prev, slot.next, slot.weight())
        };
        let list = &mut self.lists[region as usize];
        if prev == NIL {
            list.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        list.len -= 1;
        list.bytes -= weight;
    }

    fn push_tail(&mut self, region: Region, index: u32) {
        let list = &mut self.lists[region as usize];
        let old_tail = list.tail;
        let slot = &mut self.slots[index as usize];
        slot.region = region;
        slot.prev = old_tail;
        slot.next = NIL;
        list.len += 1;
        list.bytes += slot.weight();
        if old_tail == NIL {
            list.head = index;
        } else {
            self.slots[old_tail as usize].next = index;
        }
        list.tail = index;
    }

    fn move_to(&mut self, region: Region, index: u32) {
        let from = self.slots[index as usize].region;
        self.unlink(from, index);
        self.push_tail(region, index);
    }

    fn on_hit(&mut self, index: u32) {
        match self.slots[index as usize].region {
            Region::Window => self.move_to(Region::Window, index),
            Region::Protected => self.move_to(Region::Protected, index),
            Region::Probation => {
                self.move_to(Region::Protected, index);
                while self
                    .protected
                    .exceeded_by(&self.lists[Region::Protected as usize])
                    && self.lists[Region::Protected as usize].len > 1
                {
                    let demoted = self.lists[Region::Protected as usize].head;
                    self.move_to(Region::Probation, demoted);
                }
            }
        }
    }

    fn over_bounds(&self) -> bool {
        self.limits.max_entries.is_some_and(|max| self.len > max)
            || self.limits.max_bytes.is_some_and(|max| self.bytes > max)
    }

    fn evict(&mut self, index: u32) {
        self.remove_slot(index);
        self.counters.evictions += 1;
    }

    /// Moves window overflow into probation, each mover contending with probation's least
    /// recent entry for room, then evicts whatever still exceeds the bounds.
    fn balance(&mut self) {
        while self
            .window
            .exceeded_by(&self.lists[Region::Window as usize])
        {
            let candidate = self.lists[Region::Window as usize].head;
            self.move_to(Region::Probation, candidate);
            while self.over_bounds() {
                let victim = self.lists[Region::Probation as usize].head;
                if victim == candidate {
                    break;
                }
                let candidate_frequency =
                    self.sketch.frequency(self.slots[candidate as usize].hash);
                let victim_frequency = self.sketch.frequency(self.slots[victim as usize].hash);
                if candidate_frequency > victim_frequency && candidate_frequency > 1 {
                    self.evict(victim);
                } else {
                    self.evict(candidate);
                    break;
                }
            }
        }
        while self.over_bounds() {
            let victim = [Region::Probation, Region::Protected, Region::Window]
                .iter()
                .map(|&r| self.lists[r as usize].head)
                .find(|&head| head != NIL)
                .expect("a tier over its bounds holds an entry");
            self.evict(victim);
        }
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        let mut len = 0;
        let mut bytes = 0;
        for region in [Region::Window, Region::Probation, Region::Protected] {
            let list = self.lists[region as usize];
            let (mut n, mut b, mut at, mut prev) = (0, 0, list.head, NIL);
            while at != NIL {
                let slot = &self.slots[at as usize];
                assert!(slot.is_live());
                assert_eq!(slot.region, region);
                assert_eq!(slot.prev, prev);
                n += 1;
                b += slot.weight();
                prev = at;
                at = slot.next;
            }
            assert_eq!(list.tail, prev);
            assert_eq!((n, b), (list.len, list.bytes));
            len += n;
            bytes += b;
        }
        assert_eq!((len, bytes), (self.len, self.bytes));
        assert_eq!(self.index.len(), self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::hash_key;
    use proptest::prelude::*;

    fn put(tier: &mut MemoryTier, key: &[u8], value: &[u8], expires_at: u64) -> bool {
        tier.insert(NewEntry {
            key,
            hash: hash_key(3, key),
            kind: ValueKind::Bytes,
            flags: 0,
            stored: value,
            tags: &[],
            expires_at,
            keep_until: 0,
            version: 0,
        })
    }

    fn get(tier: &mut MemoryTier, key: &[u8], now: u64) -> Option<Vec<u8>> {
        match tier.get(key, hash_key(3, key), now) {
            Lookup::Hit(view) => Some(view.stored.to_vec()),
            _ => None,
        }
    }

    #[test]
    fn slot_is_small() {
        assert!(
            // 56 bytes, plus the version and the stale-read deadline
            std::mem::size_of::<Slot>() <= 72,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }

    #[test]
    fn bounded_by_entries() {
        let mut tier = MemoryTier::new(MemoryLimits {
            max_entries: Some(10),
            max_bytes: None,
        });
        for i in 0..100u32 {
            put(&mut tier, &i.to_le_bytes(), b"v", 0);
            assert!(tier.len() <= 10);
        }
        assert_eq!(tier.len(), 10);
        assert_eq!(tier.counters().evictions, 90);
        tier.check_invariants();
    }

    #[test]
    fn bounded_by_bytes_and_oversized_is_refused_without_flushing() {
        let max_bytes = 10 * (ENTRY_OVERHEAD_BYTES + 104);
        let mut tier = MemoryTier::new(MemoryLimits {
            max_entries: None,
            max_bytes: Some(max_bytes),
        });
        for i in 0..50u32 {
            put(&mut tier, &i.to_le_bytes(), &[7; 100], 0);
            assert!(tier.bytes() <= max_bytes);
        }
        assert_eq!(tier.len(), 10);
        let before = tier.len();
        assert!(!put(&mut tier, b"huge", &vec![0; max_bytes as usize], 0));
        assert_eq!(tier.len(), before);
        assert_eq!(tier.counters().oversized, 1);
        // an oversized value replaces, so the old one is not served stale
        put(&mut tier, b"k", b"old", 0);
        assert!(!put(&mut tier, b"k", &vec![0; max_bytes as usize], 0));
        assert_eq!(get(&mut tier, b"k", 0), None);
        tier.check_invariants();
    }

    #[test]
    fn expired_entries_are_never_returned_and_are_reclaimed() {
        let mut tier = MemoryTier::new(MemoryLimits {
            max_entries: Some(100),
            max_bytes: None,
        });
        put(&mut tier, b"a", b"1", 1_000);
        put(&mut tier, b"b", b"2", 2_000);
        put(&mut tier, b"c", b"3", 0);
        assert_eq!(get(&mut tier, b"a", 999), Some(b"1".to_vec()));
        assert_eq!(get(&mut tier, b"a", 1_000), None);
        assert_eq!(tier.counters().expirations, 1);
        assert!(!tier.contains(b"b", hash_key(3, b"b"), 2_000));
        assert_eq!(tier.reclaim_expired(5_000, 8), 1);
        assert_eq!(tier.len(), 1);
        assert_eq!(tier.counters().expirations, 2);
        tier.check_invariants();
    }

    #[test]
    fn hot_set_survives_a_scan_of_many_cold_keys() {
        let mut tier = MemoryTier::new(MemoryLimits {
            max_entries: Some(1_000),
            max_bytes: None,
        });
        let hot: Vec<Vec<u8>> = (0..500u32)
            .map(|i| format!("hot{i}").into_bytes())
            .collect();
        for _ in 0..5 {
            for key in &hot {
                if get(&mut tier, key, 0).is_none() {
                    put(&mut tier, key, b"h", 0);
                }
            }
        }
        for i in 0..100_000u32 {
            let key = format!("cold{i}").into_bytes();
            if get(&mut tier, &key, 0).is_none() {
                put(&mut tier, &key, b"c", 0);
            }
        }
        let survivors = hot
            .iter()
            .filter(|k| tier.contains(k, hash_key(3, k), 0))
            .count();
        assert!(
            survivors >= 490,
            "only {survivors} of 500 hot keys survived the scan"
        );
        tier.check_invariants();
    }

    #[test]
    fn remove_where_matches_prefix_and_tags() {
        let mut tier = MemoryTier::new(MemoryLimits {
            max_entries: Some(100),
            max_bytes: None,
        });
        let tags = crate::cache::key::encode_tags(&["t1"]);
        for key in [&b"user:1"[..], b"user:2", b"post:1"] {
            tier.insert(NewEntry {
                key,
                hash: hash_key(3, key),
                kind: ValueKind::String,
                flags: 0,
                stored: b"x",
                tags: if key == b"post:1" { &tags } else { &[] },
                expires_at: 0,
                keep_until: 0,
                version: 0,
            });
        }
        assert_eq!(tier.remove_where(|k, _| k.starts_with(b"user:")).len(), 2);
        let tagged = tier.remove_where(|_, t| crate::cache::key::tags_contain(t, b"t1"));
        assert_eq!(tagged, vec![hash_key(3, b"post:1")]);
        assert!(tier.is_empty());
        tier.check_invariants();
    }

    #[derive(Clone, Debug)]
    enum Op {
        Set(u8, u16),
        Get(u8),
        Remove(u8),
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), 0..600u16).prop_map(|(k, len)| Op::Set(k % 64, len)),
            4 => any::<u8>().prop_map(|k| Op::Get(k % 64)),
            1 => any::<u8>().prop_map(|k| Op::Remove(k % 64)),
            1 => (0..500u16).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #[test]
        fn tier_matches_a_model_and_stays_in_bounds(
            max_entries in prop::option::of(1usize..40),
            max_bytes in prop::option::of(200u64..8_000),
            ops in prop::collection::vec(op(), 1..300),
        ) {
            let limits = MemoryLimits { max_entries, max_bytes: max_bytes.or(if max_entries.is_none() { Some(4_000) } else { None }) };
            let mut tier = MemoryTier::new(limits);
            // the model: the last value set for each key (with its expiry); the tier may have
            // dropped any entry, but never serves anything else
            let mut model: std::collections::HashMap<u8, (Vec<u8>, u64)> = Default::default();
            let mut now = 1u64;
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Set(k, len) => {
                        let value = vec![step as u8; len as usize];
                        let expires_at = if len % 3 == 0 { now + 300 } else { 0 };
                        put(&mut tier, &[k], &value, expires_at);
                        model.insert(k, (value, expires_at));
                    }
                    Op::Get(k) => {
                        if let Some(got) = get(&mut tier, &[k], now) {
                            let (value, expires_at) = model.get(&k).expect("served a key never set");
                            prop_assert_eq!(&got, value);
                            prop_assert!(*expires_at == 0 || now < *expires_at);
                        }
                    }
                    Op::Remove(k) => {
                        tier.remove(&[k], hash_key(3, &[k]));
                        model.remove(&k);
                    }
                    Op::Advance(ms) => {
                        now += ms as u64;
                        tier.reclaim_expired(now, 4);
                    }
                }
                if let Some(max) = limits.max_entries { prop_assert!(tier.len() <= max); }
                if let Some(max) = limits.max_bytes { prop_assert!(tier.bytes() <= max); }
            }
            tier.check_invariants();
        }
    }

    #[test]
    fn stale_reads_find_kept_entries_only_within_their_bound() {
        let mut tier = MemoryTier::new(MemoryLimits {
            max_entries: Some(100),
            max_bytes: None,
        });
        let hash = hash_key(3, b"k");
        tier.insert(NewEntry {
            key: b"k",
            hash,
            kind: ValueKind::String,
            flags: 0,
            stored: b"v",
            tags: &[],
            expires_at: 1_000,
            keep_until: 1_500,
            version: 7,
        });
        assert_eq!(
            tier.lookup(b"k", hash, 999, true),
            Probe::Found {
                slot: 0,
                stale: false
            }
        );
        assert_eq!(tier.entry(0).version, 7);
        // expired: a plain read misses but the entry stays for stale readers
        assert_eq!(get(&mut tier, b"k", 1_000), None);
        assert!(!tier.contains(b"k", hash, 1_000));
        assert_eq!(tier.reclaim_expired(1_200, 8), 0);
        assert_eq!(
            tier.lookup(b"k", hash, 1_499, true),
            Probe::Found {
                slot: 0,
                stale: true
            }
        );
        assert_eq!(tier.entry(0).stored, b"v");
        // past the bound it is gone for everyone
        assert_eq!(tier.lookup(b"k", hash, 1_500, true), Probe::Expired);
        assert_eq!(tier.len(), 0);
        assert_eq!(tier.counters().expirations, 1);
        // and the sweep reclaims kept entries at their bound, not at expiry
        put(&mut tier, b"a", b"1", 0);
        tier.insert(NewEntry {
            key: b"b",
            hash: hash_key(3, b"b"),
            kind: ValueKind::String,
            flags: 0,
            stored: b"2",
            tags: &[],
            expires_at: 2_000,
            keep_until: 3_000,
            version: 8,
        });
        assert_eq!(tier.reclaim_expired(2_500, 8), 0);
        assert_eq!(tier.reclaim_expired(3_000, 8), 1);
        assert_eq!(tier.len(), 1);
        tier.check_invariants();
    }
}
