//! The cache block: a memory tier with W-TinyLFU eviction over an optional persistent disk
//! tier, absolute TTLs, compression, tags and prefixes.
pub mod clock;
pub mod codec;
pub mod error;
pub mod key;
pub mod memory;
pub mod sketch;
