//! The cache block: a bounded memory tier with W-TinyLFU eviction over an optional persistent
//! disk tier (redb, written behind the caller), absolute TTLs, lz4/zstd compression, tags and
//! prefixes.
//!
//! Read in this order: `codec` (what a value is and how it is stored), `key` (keys, tags, the
//! seeded hash), `sketch` and `memory` (the memory tier and its policy, with the measured hit
//! ratios), `disk` (the disk tier and its writer thread), and `persistent_cache` (the two tiers
//! as one cache, its options and stats). `clock` turns the block clock into wall-clock time, for
//! expiry times that survive a restart. `redis_tier` is the shared tier in Redis and the
//! invalidation bus, for caches shared by many processes. `binding` is the JS class
//! `PersistentCache` and the only file of the block that imports napi.

pub mod binding;
pub mod clock;
pub mod codec;
pub mod disk;
pub mod error;
pub mod key;
pub mod memory;
pub mod persistent_cache;
pub mod redis_tier;
#[cfg(test)]
mod simulation;
pub mod sketch;

pub use clock::WallClock;
pub use codec::{Compression, ValueKind};
pub use disk::FlushTicket;
pub use error::{CacheError, ERR_CACHE_CLOSED, ERR_CACHE_LOCKED};
pub use memory::ENTRY_OVERHEAD_BYTES;
pub use persistent_cache::{
    Cache, CacheOptions, CacheStats, CompressionStats, DiskStats, Found, MemoryStats, SetOptions,
    Stored, Tier,
};
