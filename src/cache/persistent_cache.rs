//! The cache: options, the two tiers put together, and its stats.
//!
//! A `set` encodes the payload once (compressing it when that pays), stores it in the memory
//! tier and queues it for the disk tier, which holds everything the memory tier holds and more.
//! A `get` tries memory, then disk, promoting a disk hit into memory. Every call first reclaims
//! a few expired entries of each tier ([`SWEEP_PER_CALL`]), so expired entries go without a
//! timer per entry; an expired entry is never returned either way.
//!
//! The cache is single-threaded (`&mut self`): the binding calls it from one JS thread. The
//! disk writer is the only other thread.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;

use super::clock::WallClock;
use super::codec::{Codec, Compression, ValueKind};
use super::disk::{DiskLookup, DiskTier, DiskWrite, FlushTicket, Selector};
use super::error::CacheError;
use super::key::{
    encode_tags, hash_key, random_seed, tags_contain, validate_key, validate_selector,
    validate_tags, MAX_KEY_BYTES, MAX_TAG_BYTES,
};
use super::memory::{MemoryLimits, MemoryTier, NewEntry, Probe};
use crate::common::error::InvalidInput;
use crate::common::Clock;

/// Expired entries reclaimed per tier per call at most.
pub const SWEEP_PER_CALL: usize = 4;
/// The largest `maxEntries`: the slab indexes entries with `u32`.
pub const MAX_ENTRIES_LIMIT: u64 = u32::MAX as u64 - 1;

/// Validated options of a cache. Messages name the JS option (`maxEntries`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheOptions {
    /// `maxEntries`: entries the memory tier holds at most.
    pub max_entries: Option<u64>,
    /// `maxBytes`: weight the memory tier holds at most (stored bytes + key + tags +
    /// [`super::memory::ENTRY_OVERHEAD_BYTES`] per entry). At least one bound is required.
    pub max_bytes: Option<u64>,
    /// `ttlMs`: time to live of entries set without their own; `None` for no expiry.
    pub ttl_ms: Option<u64>,
    /// `compression`: the codec of large payloads. Default lz4.
    pub compression: Compression,
    /// `compressMinBytes`: payloads shorter than this are stored raw. Default 1024.
    pub compress_min_bytes: u64,
    /// `dir`: the directory of the disk tier; `None` for a memory-only cache.
    pub dir: Option<PathBuf>,
    /// `diskMaxBytes`: bytes the disk tier holds at most; `None` for no bound. What is counted
    /// is each entry's records (stored payload, key and tags twice, 46 bytes of headers), not
    /// the size of the database file, which redb's pages and free space make larger.
    pub disk_max_bytes: Option<u64>,
}

impl Default for CacheOptions {
    /// No bound set (so not valid as is), no TTL, lz4 above 1024 bytes, no disk.
    fn default() -> Self {
        CacheOptions {
            max_entries: None,
            max_bytes: None,
            ttl_ms: None,
            compression: Compression::Lz4,
            compress_min_bytes: 1024,
            dir: None,
            disk_max_bytes: None,
        }
    }
}

impl CacheOptions {
    /// Checks the options; the error names the option at fault.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.max_entries.is_none() && self.max_bytes.is_none() {
            return Err(InvalidInput::option_type(
                "maxEntries or maxBytes must be set: the memory tier needs a bound",
            ));
        }
        if let Some(n) = self.max_entries {
            if n == 0 || n > MAX_ENTRIES_LIMIT {
                return Err(InvalidInput::option_range(format!(
                    "maxEntries must be an integer from 1 to {MAX_ENTRIES_LIMIT}, received {n}"
                )));
            }
        }
        if self.max_bytes == Some(0) {
            return Err(InvalidInput::option_range(
                "maxBytes must be an integer >= 1, received 0",
            ));
        }
        if self.ttl_ms == Some(0) {
            return Err(InvalidInput::option_range(
                "ttlMs must be an integer >= 1 (omit it for no expiry), received 0",
            ));
        }
        if self.compress_min_bytes > u32::MAX as u64 {
            return Err(InvalidInput::option_range(format!(
                "compressMinBytes must be an integer from 0 to {}, received {}",
                u32::MAX,
                self.compress_min_bytes
            )));
        }
        if let Some(dir) = &self.dir {
            if dir.as_os_str().is_empty() {
                return Err(InvalidInput::option_range(
                    "dir must be a non-empty path, received an empty string",
                ));
            }
        }
        match (self.disk_max_bytes, &self.dir) {
            (Some(0), _) => Err(InvalidInput::option_range(
                "diskMaxBytes must be an integer >= 1, received 0",
            )),
            (Some(_), None) => Err(InvalidInput::option_type(
                "diskMaxBytes needs dir: there is no disk tier without a directory",
            )),
            _ => Ok(()),
        }
    }
}

/// Options of one `set`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Time to live in ms (`ttlMs`), overriding the cache's default; `None` takes the default.
    pub ttl_ms: Option<u64>,
    /// Tags `invalidate_tag` can remove the entry by.
    pub tags: Vec<Vec<u8>>,
    /// How long after its expiry the memory tier keeps the entry for stale reads
    /// ([`Cache::lookup`] with `allow_stale`); 0 to drop it at expiry. The disk tier drops it at
    /// expiry either way, so stale values are served from memory only.
    pub keep_stale_ms: u64,
}

/// The largest `keep_stale_ms`: about 136 years, so that expiry plus it never overflows.
pub const MAX_KEEP_STALE_MS: u64 = 1 << 52;

/// The tier a `get` was served from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// The memory tier.
    Memory,
    /// The disk tier (the entry is now in memory too).
    Disk,
}

/// A value read back: its kind, its payload (decompressed) and the tier that served it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The value's JS type.
    pub kind: ValueKind,
    /// The payload as `set` was given it.
    pub bytes: Vec<u8>,
    /// Where it was found.
    pub tier: Tier,
}

/// A value found by [`Cache::lookup`], borrowed from the cache until its next call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found<'a> {
    /// The value's JS type.
    pub kind: ValueKind,
    /// The payload as `set` was given it; `None` when the entry's version is the
    /// `known_version` the caller passed (its decoded copy is still the entry's value).
    pub bytes: Option<Cow<'a, [u8]>>,
    /// The entry's version: a number that changes whenever the entry in memory is replaced
    /// (by a `set`, or a disk hit brought back into memory), unique within this cache.
    pub version: u64,
    /// Where it was found.
    pub tier: Tier,
    /// Milliseconds since the entry expired, for a stale read; `None` when it is live.
    pub stale_for_ms: Option<u64>,
    /// The key's estimated recent occurrences (0..=16), as the memory tier's policy counts them.
    pub frequency: u8,
}

/// Stats of the memory tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Entries held.
    pub entries: u64,
    /// Weight held (see `maxBytes`).
    pub bytes: u64,
    /// Lookups served from memory.
    pub hits: u64,
    /// Entries evicted by the policy (they may still be on disk).
    pub evictions: u64,
}

/// Stats of the disk tier (all zero without one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Entries on disk or queued for it.
    pub entries: u64,
    /// Bytes of their records.
    pub bytes: u64,
    /// Lookups served from disk.
    pub hits: u64,
    /// Read transactions run for lookups that missed memory.
    pub reads: u64,
    /// Entries written durably.
    pub writes: u64,
    /// Disk failures since open; the cache kept serving from memory.
    pub errors: u64,
    /// Entries evicted to stay within `diskMaxBytes`.
    pub evictions: u64,
    /// Entries not written because alone they exceed `diskMaxBytes` (memory only, if they fit).
    pub oversized: u64,
    /// Writes not queued because the disk writer was too far behind or the tier was resetting
    /// after a disk error (memory only).
    pub skipped: u64,
    /// Times the disk tier was emptied and made anew: its file was found damaged, or a write
    /// to it failed.
    pub resets: u64,
}

/// Bytes given to `set` and bytes stored after compression, since open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompressionStats {
    /// Payload bytes as given.
    pub raw_bytes: u64,
    /// Payload bytes as stored.
    pub stored_bytes: u64,
}

/// A snapshot of the cache's counts. The whole-cache figures (`entries`, `bytes`,
/// `evictions`, `expirations`) are those of the disk tier when there is one, since it holds
/// everything the memory tier holds, and of the memory tier otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found a live value in either tier.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Calls of `set`.
    pub sets: u64,
    /// Calls of `delete` that removed an entry.
    pub deletes: u64,
    /// Entries dropped to stay within the bounds.
    pub evictions: u64,
    /// Entries dropped because their time was up.
    pub expirations: u64,
    /// Entries held.
    pub entries: u64,
    /// Bytes held.
    pub bytes: u64,
    /// The memory tier.
    pub memory: MemoryStats,
    /// The disk tier.
    pub disk: DiskStats,
    /// Raw versus stored payload bytes.
    pub compression: CompressionStats,
    /// Entries too large for the memory tier (kept on disk only, when there is a disk tier).
    pub oversized: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    hits: u64,
    misses: u64,
    sets: u64,
    deletes: u64,
    memory_hits: u64,
    raw_bytes: u64,
    stored_bytes: u64,
}

/// A two-tier cache: memory (W-TinyLFU, bounded) over an optional persistent disk tier.
pub struct Cache {
    memory: MemoryTier,
    disk: Option<DiskTier>,
    wall: WallClock,
    seed: u64,
    default_ttl_ms: Option<u64>,
    codec: Codec,
    counters: Counters,
    closed: bool,
    /// The version of the next entry put into memory (versions start at 1).
    next_version: u64,
}

fn ttl_error(ttl: u64) -> InvalidInput {
    InvalidInput::argument_range(format!(
        "ttlMs must be an integer >= 1 (omit it for the default), received {ttl}"
    ))
}

impl Cache {
    /// Validates the options and opens the cache; with `dir`, opens (or creates) the disk tier
    /// there and serves what it holds. Time comes from `clock`: a manual clock's nanoseconds are
    /// read as wall-clock time since the epoch.
    pub fn open(options: CacheOptions, clock: Clock) -> Result<Cache, CacheError> {
        options.validate()?;
        let wall = WallClock::from_clock(&clock);
        let disk = match &options.dir {
            Some(dir) => Some(DiskTier::open(dir, options.disk_max_bytes, wall.now_ms())?),
            None => None,
        };
        let seed = disk.as_ref().map_or_else(random_seed, DiskTier::seed);
        Ok(Cache {
            memory: MemoryTier::new(MemoryLimits {
                max_entries: options.max_entries.map(|n| n as usize),
                max_bytes: options.max_bytes,
            }),
            disk,
            wall,
            seed,
            default_ttl_ms: options.ttl_ms,
            codec: Codec::new(options.compression, options.compress_min_bytes as usize),
            counters: Counters::default(),
            closed: false,
            next_version: 1,
        })
    }

    fn begin(&mut self) -> Result<u64, CacheError> {
        if self.closed {
            return Err(CacheError::Closed);
        }
        let now = self.wall.now_ms();
        self.memory.reclaim_expired(now, SWEEP_PER_CALL);
        if let Some(disk) = &mut self.disk {
            disk.reclaim_expired(now, SWEEP_PER_CALL);
        }
        Ok(now)
    }

    /// The value of `key`, or `None` when absent or expired.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Stored>, CacheError> {
        Ok(self.lookup(key, 0, false)?.map(|found| Stored {
            kind: found.kind,
            bytes: found.bytes.map(Cow::into_owned).unwrap_or_default(),
            tier: found.tier,
        }))
    }

    fn take_version(&mut self) -> u64 {
        let version = self.next_version;
        self.next_version += 1;
        version
    }

    /// The value of `key` as the binding reads it: borrowed from memory when it is stored raw,
    /// with its version, and without the payload when the entry's version is `known_version`
    /// (pass 0 for none), so that a caller keeping decoded values pays for no copy while its
    /// copy is current. With `allow_stale`, an entry kept past its expiry for stale reads (see
    /// [`SetOptions::keep_stale_ms`]) is returned with `stale_for_ms`; without it, an expired
    /// entry is never returned. Counts as `get` does.
    pub fn lookup(
        &mut self,
        key: &[u8],
        known_version: u64,
        allow_stale: bool,
    ) -> Result<Option<Found<'_>>, CacheError> {
        validate_key(key)?;
        let hash = hash_key(self.seed, key);
        // the sketch's lines load while the clock is read and the index is probed
        self.memory.prefetch(hash);
        let now = self.begin()?;
        // decide first and borrow the entry again to return it: a borrow returned on one path
        // cannot be followed by the disk path's mutable use of the tiers
        let in_memory = match self.memory.lookup(key, hash, now, allow_stale) {
            Probe::Found { slot, stale } => {
                let view = self.memory.entry(slot);
                if view.flags == 0 || (known_version != 0 && view.version == known_version) {
                    Some((slot, stale, false))
                } else {
                    self.codec
                        .decode_to_scratch(view.flags, view.stored)
                        .map(|_| (slot, stale, true))
                }
            }
            Probe::Expired | Probe::Miss => None,
        };
        if let Some((slot, stale, decoded)) = in_memory {
            if let Some(disk) = &mut self.disk {
                disk.touch(hash, now);
            }
            self.counters.hits += 1;
            self.counters.memory_hits += 1;
            let frequency = self.memory.frequency(hash);
            let view = self.memory.entry(slot);
            let unchanged = known_version != 0 && view.version == known_version;
            return Ok(Some(Found {
                kind: view.kind,
                bytes: if unchanged {
                    None
                } else {
                    Some(Cow::Borrowed(if decoded {
                        self.codec.scratch()
                    } else {
                        view.stored
                    }))
                },
                version: view.version,
                tier: Tier::Memory,
                stale_for_ms: stale.then(|| now.saturating_sub(view.expires_at)),
                frequency,
            }));
        }
        if let Some(disk) = &mut self.disk {
            if let DiskLookup::Hit(entry) = disk.get(key, hash, now) {
                if let Some(bytes) = self.codec.decode(entry.flags, &entry.stored) {
                    let version = self.take_version();
                    self.memory.insert(NewEntry {
                        key,
                        hash,
                        kind: entry.kind,
                        flags: entry.flags,
                        stored: &entry.stored,
                        tags: &entry.tags,
                        expires_at: entry.expires_at,
                        keep_until: 0,
                        version,
                    });
                    self.counters.hits += 1;
                    return Ok(Some(Found {
                        kind: entry.kind,
                        bytes: Some(Cow::Owned(bytes)),
                        version,
                        tier: Tier::Disk,
                        stale_for_ms: None,
                        frequency: self.memory.frequency(hash),
                    }));
                }
            }
        }
        self.counters.misses += 1;
        Ok(None)
    }

    /// Whether `key` holds a live value; touches neither recency nor the stats.
    pub fn has(&mut self, key: &[u8]) -> Result<bool, CacheError> {
        validate_key(key)?;
        let now = self.begin()?;
        let hash = hash_key(self.seed, key);
        Ok(self.memory.contains(key, hash, now)
            || self.disk.as_ref().is_some_and(|d| d.contains(hash, now)))
    }

    /// Stores `payload` (already encoded by the binding) as the value of `key`, with its
    /// `kind`, compressing it when that pays.
    pub fn set(
        &mut self,
        key: &[u8],
        kind: ValueKind,
        payload: &[u8],
        options: &SetOptions,
    ) -> Result<(), CacheError> {
        validate_key(key)?;
        validate_tags(&options.tags)?;
        if options.ttl_ms == Some(0) {
            return Err(ttl_error(0).into());
        }
        if options.keep_stale_ms > MAX_KEEP_STALE_MS {
            return Err(InvalidInput::argument_range(format!(
                "staleWhileRevalidateMs must be at most {MAX_KEEP_STALE_MS}, received {}",
                options.keep_stale_ms
            ))
            .into());
        }
        if payload.len() > u32::MAX as usize {
            return Err(InvalidInput::argument_range(format!(
                "value must be at most {} bytes once encoded, received {}",
                u32::MAX,
                payload.len()
            ))
            .into());
        }
        let hash = hash_key(self.seed, key);
        self.memory.prefetch(hash);
        let now = self.begin()?;
        let expires_at = options
            .ttl_ms
            .or(self.default_ttl_ms)
            .map_or(0, |ttl| now.saturating_add(ttl));
        let version = self.take_version();
        let (flags, stored) = self.codec.encode_to_scratch(payload);
        let tags = encode_tags(&options.tags);
        self.counters.sets += 1;
        self.counters.raw_bytes += payload.len() as u64;
        self.counters.stored_bytes += stored.len() as u64;
        self.memory.insert(NewEntry {
            key,
            hash,
            kind,
            flags,
            stored,
            tags: &tags,
            expires_at,
            keep_until: if expires_at == 0 {
                0
            } else {
                expires_at.saturating_add(options.keep_stale_ms)
            },
            version,
        });
        if let Some(disk) = &mut self.disk {
            disk.put(
                DiskWrite {
                    key,
                    hash,
                    kind,
                    flags,
                    stored,
                    tags: &tags,
                    expires_at,
                },
                now,
            );
        }
        Ok(())
    }

    /// Removes `key` from both tiers; returns whether it was present.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, CacheError> {
        validate_key(key)?;
        self.begin()?;
        let hash = hash_key(self.seed, key);
        let in_memory = self.memory.remove(key, hash);
        let on_disk = self.disk.as_mut().is_some_and(|d| d.remove(hash));
        let removed = in_memory || on_disk;
        if removed {
            self.counters.deletes += 1;
        }
        Ok(removed)
    }

    /// Removes everything from both tiers; returns how many entries the cache held.
    pub fn clear(&mut self) -> Result<usize, CacheError> {
        self.begin()?;
        let in_memory = self.memory.clear();
        Ok(match &mut self.disk {
            Some(disk) => disk.clear().max(in_memory),
            None => in_memory,
        })
    }

    /// Entries held (by the disk tier when there is one, else by memory).
    pub fn len(&self) -> usize {
        match &self.disk {
            Some(disk) => disk.len(),
            None => self.memory.len(),
        }
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry tagged `tag` from both tiers; returns how many keys.
    ///
    /// Tags are not indexed: the memory tier is scanned (time linear in its entries), and with
    /// a disk tier the call waits until the writer has applied every write queued before it and
    /// scanned the disk's `meta` table in the same transaction. Meant for occasional
    /// invalidations, not for every request.
    pub fn invalidate_tag(&mut self, tag: &[u8]) -> Result<usize, CacheError> {
        validate_selector("tag", tag, MAX_TAG_BYTES)?;
        self.invalidate(Selector::Tag(tag.to_vec()))
    }

    /// Removes every entry whose key starts with `prefix` from both tiers; returns how many
    /// keys. Costs what [`Cache::invalidate_tag`] costs.
    pub fn invalidate_prefix(&mut self, prefix: &[u8]) -> Result<usize, CacheError> {
        validate_selector("prefix", prefix, MAX_KEY_BYTES)?;
        self.invalidate(Selector::Prefix(prefix.to_vec()))
    }

    fn invalidate(&mut self, selector: Selector) -> Result<usize, CacheError> {
        self.begin()?;
        let mut removed: HashSet<u64> = match &selector {
            Selector::Tag(tag) => self.memory.remove_where(|_, tags| tags_contain(tags, tag)),
            Selector::Prefix(prefix) => self.memory.remove_where(|key, _| key.starts_with(prefix)),
        }
        .into_iter()
        .collect();
        if let Some(disk) = &mut self.disk {
            removed.extend(disk.invalidate(selector));
        }
        Ok(removed.len())
    }

    /// A ticket that completes when every write before it is durable (at once without a disk
    /// tier). The binding waits on it off the JS thread.
    pub fn flush(&mut self) -> Result<FlushTicket, CacheError> {
        if self.closed {
            return Err(CacheError::Closed);
        }
        Ok(match &mut self.disk {
            Some(disk) => disk.flush(),
            None => FlushTicket::done(),
        })
    }

    /// Writes everything queued, stops the disk writer and refuses later calls with
    /// `ERR_CACHE_CLOSED`. Closing twice is harmless.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(disk) = &mut self.disk {
            disk.close();
        }
        self.disk = None;
        self.memory.clear();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A snapshot of the counts.
    pub fn stats(&self) -> CacheStats {
        let memory = self.memory.counters();
        let memory_stats = MemoryStats {
            entries: self.memory.len() as u64,
            bytes: self.memory.bytes(),
            hits: self.counters.memory_hits,
            evictions: memory.evictions,
        };
        let (disk_stats, whole) = match &self.disk {
            Some(disk) => {
                let c = disk.counters();
                let stats = DiskStats {
                    entries: disk.len() as u64,
                    bytes: disk.bytes(),
                    hits: c.hits,
                    reads: c.reads,
                    writes: c.writes,
                    errors: c.errors,
                    evictions: c.evictions,
                    oversized: c.oversized,
                    skipped: c.skipped,
                    resets: c.resets,
                };
                let whole = (stats.entries, stats.bytes, c.evictions, c.expirations);
                (stats, whole)
            }
            None => (
                DiskStats::default(),
                (
                    memory_stats.entries,
                    memory_stats.bytes,
                    memory.evictions,
                    memory.expirations,
                ),
            ),
        };
        CacheStats {
            hits: self.counters.hits,
            misses: self.counters.misses,
            sets: self.counters.sets,
            deletes: self.counters.deletes,
            evictions: whole.2,
            expirations: whole.3,
            entries: whole.0,
            bytes: whole.1,
            memory: memory_stats,
            disk: disk_stats,
            compression: CompressionStats {
                raw_bytes: self.counters.raw_bytes,
                stored_bytes: self.counters.stored_bytes,
            },
            oversized: memory.oversized,
        }
    }

    /// Why the disk tier's file was found damaged at open and replaced by an empty one; `None`
    /// when it was read as it was, or without a disk tier.
    pub fn disk_damage_at_open(&self) -> Option<&str> {
        self.disk.as_ref().and_then(DiskTier::damage_at_open)
    }

    #[cfg(test)]
    pub(crate) fn disk(&self) -> Option<&DiskTier> {
        self.disk.as_ref()
    }

    #[cfg(test)]
    pub(crate) fn disk_mut(&mut self) -> Option<&mut DiskTier> {
        self.disk.as_mut()
    }
}

#[cfg(test)]
#[path = "persistent_cache_tests.rs"]
mod tests;
