//! Keys, tags and prefixes: their validation, the seeded hash every index uses, and the compact
//! encoding of an entry's tags.
//!
//! A key is a non-empty byte string (the binding passes UTF-8) of at most [`MAX_KEY_BYTES`].
//! The hash is seeded: a memory-only cache draws a random seed, a disk cache keeps its seed in
//! its database so that the hashes its disk tables are keyed by stay valid across restarts,
//! while no one outside can predict them (so keys chosen by a client cannot flood one bucket).

use crate::common::error::InvalidInput;

/// The longest key, in bytes: 64 KiB.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// The longest tag, in bytes (tags are stored with a 16-bit length).
pub const MAX_TAG_BYTES: usize = u16::MAX as usize;

/// Checks a key: non-empty and at most [`MAX_KEY_BYTES`]; the error names `key`.
pub fn validate_key(key: &[u8]) -> Result<(), InvalidInput> {
    if key.is_empty() {
        return Err(InvalidInput::argument_range(
            "key must be a non-empty string, received an empty string",
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(InvalidInput::argument_range(format!(
            "key must be at most {MAX_KEY_BYTES} bytes, received {} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Checks the tags of a `set`: each non-empty and at most [`MAX_TAG_BYTES`]; the error names
/// `tags`.
pub fn validate_tags<T: AsRef<[u8]>>(tags: &[T]) -> Result<(), InvalidInput> {
    if tags.len() > u16::MAX as usize {
        return Err(InvalidInput::argument_range(format!(
            "options.tags must hold at most {} tags, received {}",
            u16::MAX,
            tags.len()
        )));
    }
    for (i, tag) in tags.iter().enumerate() {
        let len = tag.as_ref().len();
        if len == 0 || len > MAX_TAG_BYTES {
            return Err(InvalidInput::argument_range(format!(
                "options.tags[{i}] must be a non-empty string of at most {MAX_TAG_BYTES} bytes, received {len} bytes"
            )));
        }
    }
    Ok(())
}

/// Checks the argument of `invalidate_tag` (`name` is `tag`) or `invalidate_prefix` (`prefix`):
/// non-empty and bounded, so that an empty string never clears the whole cache by accident.
pub fn validate_selector(name: &str, value: &[u8], max: usize) -> Result<(), InvalidInput> {
    if value.is_empty() || value.len() > max {
        return Err(InvalidInput::argument_range(format!(
            "{name} must be a non-empty string of at most {max} bytes, received {} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// The tags of an entry as one byte string: a 16-bit length before each tag. An entry without
/// tags costs nothing.
pub fn encode_tags<T: AsRef<[u8]>>(tags: &[T]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(tags.iter().map(|t| t.as_ref().len() + 2).sum());
    for tag in tags {
        let tag = tag.as_ref();
        blob.extend_from_slice(&(tag.len() as u16).to_le_bytes());
        blob.extend_from_slice(tag);
    }
    blob
}

/// Whether an encoded tag blob holds `tag`.
pub fn tags_contain(mut blob: &[u8], tag: &[u8]) -> bool {
    while blob.len() >= 2 {
        let len = u16::from_le_bytes([blob[0], blob[1]]) as usize;
        let Some(item) = blob.get(2..2 + len) else {
            return false;
        };
        if item == tag {
            return true;
        }
        blob = &blob[2 + len..];
    }
    false
}

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

/// A seeded 64-bit hash of `bytes` (the wyhash construction: 16 bytes per folded multiply).
/// Stable for a given seed on every platform, since disk tables are keyed by it.
#[inline]
pub fn hash_key(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ P0 ^ (bytes.len() as u64).wrapping_mul(P1);
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        let a = u64::from_le_bytes(chunk[..8].try_into().unwrap());
        let b = u64::from_le_bytes(chunk[8..].try_into().unwrap());
        h = folded_multiply(a ^ P1 ^ h, b ^ P2 ^ seed);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 16];
        tail[..rest.len()].copy_from_slice(rest);
        let a = u64::from_le_bytes(tail[..8].try_into().unwrap());
        let b = u64::from_le_bytes(tail[8..].try_into().unwrap());
        h = folded_multiply(a ^ P1 ^ h, b ^ P2 ^ seed);
    }
    folded_multiply(h ^ P3, (bytes.len() as u64) ^ P0)
}

/// A random seed for a new cache.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x6275_6c77_6172_6b21);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated_naming_key() {
        assert!(validate_key(b"a").is_ok());
        assert!(validate_key(&vec![b'x'; MAX_KEY_BYTES]).is_ok());
        let empty = validate_key(b"").unwrap_err();
        assert!(empty.message.starts_with("key "));
        let long = validate_key(&vec![b'x'; MAX_KEY_BYTES + 1]).unwrap_err();
        assert!(long.message.contains("key") && long.message.contains("65537"));
    }

    #[test]
    fn tags_round_trip_through_their_blob() {
        let blob = encode_tags(&["user:1", "", "team"][..1]);
        assert!(tags_contain(&blob, b"user:1"));
        let blob = encode_tags(&["user:1", "team"]);
        assert!(tags_contain(&blob, b"team"));
        assert!(!tags_contain(&blob, b"user"));
        assert!(encode_tags::<&str>(&[]).is_empty());
        assert!(validate_tags(&[""])
            .unwrap_err()
            .message
            .contains("tags[0]"));
    }

    /// `hash_key(0, b"bulwark")`: disk tables are keyed by this function, so a change to it
    /// would orphan every existing cache directory; this value makes such a change visible.
    const PINNED: u64 = 0xa0d8_91bb_9ad5_c5e4;

    #[test]
    fn hash_depends_on_seed_and_every_byte() {
        let a = hash_key(1, b"hello world, a key of some length");
        assert_eq!(a, hash_key(1, b"hello world, a key of some length"));
        assert_ne!(a, hash_key(2, b"hello world, a key of some length"));
        assert_ne!(a, hash_key(1, b"hello world, a key of some lengtH"));
        assert_ne!(hash_key(1, b"a"), hash_key(1, b"a\0"));
        assert_eq!(hash_key(0, b"bulwark"), PINNED);
    }
}
