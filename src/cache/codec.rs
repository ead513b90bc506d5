//! What a cache value is (its kind) and how it is stored (compressed or not).
//!
//! The binding hands the core an already-encoded payload (a string's UTF-8, a Buffer's bytes,
//! or JSON text) and its [`ValueKind`], which the core keeps so that `get` can rebuild the same
//! JS type. Payloads of at least `compress_min_bytes` are compressed with the configured
//! [`Compression`], and kept raw when compression does not shrink them; the stored flags say
//! which, so an entry written with one setting is read back under any other.

use crate::common::error::InvalidInput;

/// The JS type of a cached value, so that `get` returns what `set` was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ValueKind {
    /// A JS string, stored as UTF-8.
    String = 0,
    /// A Buffer, stored as is.
    Bytes = 1,
    /// Any other JSON-serialisable value, stored as its `JSON.stringify` text.
    Json = 2,
    /// A plain Uint8Array (not a Buffer), stored as is; `get` rebuilds a Uint8Array.
    Uint8Array = 3,
    /// A JS string with a lone surrogate, which UTF-8 cannot hold, stored as WTF-8 (see
    /// `common::wtf8`). The binding picks this kind itself when it reads such a string.
    IllFormedString = 4,
}

impl ValueKind {
    /// The kind stored as `byte`, if it is one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(ValueKind::String),
            1 => Some(ValueKind::Bytes),
            2 => Some(ValueKind::Json),
            3 => Some(ValueKind::Uint8Array),
            4 => Some(ValueKind::IllFormedString),
            _ => None,
        }
    }
}

/// The codec applied to large payloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// LZ4 block format: about 2 GB/s both ways, a modest ratio. The default.
    #[default]
    Lz4,
    /// Zstandard at level 3: a better ratio for several times the CPU.
    Zstd,
    /// Payloads are stored as given.
    None,
}

impl Compression {
    /// Parses the `compression` option (`"lz4"`, `"zstd"`, `"none"`); the error names it.
    pub fn parse(name: &str) -> Result<Self, InvalidInput> {
        match name {
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            "none" => Ok(Compression::None),
            other => Err(InvalidInput::option_range(format!(
                "compression must be \"lz4\", \"zstd\" or \"none\", received \"{other}\""
            ))),
        }
    }
}

/// Stored flag: the payload is LZ4-compressed (its raw length first, 4 bytes LE).
pub const FLAG_LZ4: u8 = 1;
/// Stored flag: the payload is a Zstandard frame (its raw length first, 4 bytes LE).
pub const FLAG_ZSTD: u8 = 2;

/// The zstd level: level 3 is zstd's own default, the usual speed/ratio balance.
const ZSTD_LEVEL: i32 = 3;

/// The cache's codec: the configured compression and threshold, with zstd contexts made once
/// and reused (a fresh context per call costs more than compressing a few KiB).
pub struct Codec {
    compression: Compression,
    min_bytes: usize,
    zstd_compressor: Option<zstd::bulk::Compressor<'static>>,
    zstd_decompressor: Option<zstd::bulk::Decompressor<'static>>,
    /// Where [`Self::decode_to_scratch`] decodes, reused from hit to hit.
    scratch: Vec<u8>,
    /// Where [`Self::encode_to_scratch`] compresses, reused from set to set.
    encoded: Vec<u8>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("compression", &self.compression)
            .field("min_bytes", &self.min_bytes)
            .finish()
    }
}

impl Codec {
    /// A codec compressing payloads of at least `min_bytes` with `compression`.
    pub fn new(compression: Compression, min_bytes: usize) -> Self {
        Codec {
            compression,
            min_bytes,
            zstd_compressor: None,
            zstd_decompressor: None,
            scratch: Vec::new(),
            encoded: Vec::new(),
        }
    }

    /// Encodes `payload` for storage: returns the stored flags and bytes. Payloads below the
    /// threshold, and payloads compression does not shrink, are stored raw (flags 0).
    pub fn encode(&mut self, payload: &[u8]) -> (u8, Vec<u8>) {
        if payload.len() < self.min_bytes || payload.len() > u32::MAX as usize {
            return (0, payload.to_vec());
        }
        let (flag, compressed) = match self.compression {
            Compression::None => return (0, payload.to_vec()),
            Compression::Lz4 => (FLAG_LZ4, lz4_flex::block::compress_prepend_size(payload)),
            Compression::Zstd => {
                if self.zstd_compressor.is_none() {
                    self.zstd_compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
                }
                let Some(compressor) = &mut self.zstd_compressor else {
                    return (0, payload.to_vec());
                };
                let mut out = (payload.len() as u32).to_le_bytes().to_vec();
                match compressor.compress(payload) {
                    Ok(frame) => out.extend_from_slice(&frame),
                    Err(_) => return (0, payload.to_vec()),
                }
                (FLAG_ZSTD, out)
            }
        };
        if compressed.len() < payload.len() {
            (flag, compressed)
        } else {
            (0, payload.to_vec())
        }
    }

    /// Decodes stored bytes (written under any setting) back to the payload; `None` when they
    /// are corrupt.
    /// Decodes a compressed payload into the codec's scratch buffer (no allocation once it has
    /// held a payload this large) and returns it; `None` for a corrupt one. For a memory-tier
    /// hit, whose bytes are copied into a JS value at once.
    pub fn decode_to_scratch(&mut self, flags: u8, stored: &[u8]) -> Option<&[u8]> {
        let raw_len = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?) as usize;
        self.scratch.clear();
        if flags & FLAG_LZ4 != 0 {
            self.scratch.resize(raw_len, 0);
            let n = lz4_flex::block::decompress_into(&stored[4..], &mut self.scratch).ok()?;
            (n == raw_len).then_some(&self.scratch[..])
        } else if flags & FLAG_ZSTD != 0 {
            if self.zstd_decompressor.is_none() {
                self.zstd_decompressor = zstd::bulk::Decompressor::new().ok();
            }
            self.scratch.reserve(raw_len);
            let n = self
                .zstd_decompressor
                .as_mut()?
                .decompress_to_buffer(&stored[4..], &mut self.scratch)
                .ok()?;
            (n == raw_len).then_some(&self.scratch[..])
        } else {
            self.scratch.extend_from_slice(stored);
            Some(&self.scratch[..])
        }
    }

    /// Encodes `payload` as [`Self::encode`] does, into a buffer the codec keeps (or returns
    /// `payload` itself when it is stored raw), so that a set allocates nothing but the entry
    /// the tiers keep. A fresh buffer per set, freed right after the entry was copied out of
    /// it, fragmented the allocator's heap: 1,000,000 sets of 1.1 KiB JSON compressing to
    /// about 380 bytes grew RSS by 890 MB for 485 MB of entries.
    pub fn encode_to_scratch<'a>(&'a mut self, payload: &'a [u8]) -> (u8, &'a [u8]) {
        if payload.len() < self.min_bytes || payload.len() > u32::MAX as usize {
            return (0, payload);
        }
        let flag = match self.compression {
            Compression::None => return (0, payload),
            Compression::Lz4 => {
                let bound = lz4_flex::block::get_maximum_output_size(payload.len()) + 4;
                self.encoded.clear();
                self.encoded.resize(bound, 0);
                self.encoded[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
                match lz4_flex::block::compress_into(payload, &mut self.encoded[4..]) {
                    Ok(n) => self.encoded.truncate(4 + n),
                    Err(_) => return (0, payload),
                }
                FLAG_LZ4
            }
            Compression::Zstd => {
                if self.zstd_compressor.is_none() {
                    self.zstd_compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
                }
                let Some(compressor) = &mut self.zstd_compressor else {
                    return (0, payload);
                };
                self.encoded.clear();
                self.encoded
                    .extend_from_slice(&(payload.len() as u32).to_le_bytes());
                let bound = zstd::zstd_safe::compress_bound(payload.len());
                self.encoded.reserve(bound);
                let mut frame = std::mem::take(&mut self.encoded);
                let header = frame.len();
                frame.resize(header + bound, 0);
                let written = compressor.compress_to_buffer(payload, &mut frame[header..]);
                self.encoded = frame;
                match written {
                    Ok(n) => self.encoded.truncate(header + n),
                    Err(_) => return (0, payload),
                }
                FLAG_ZSTD
            }
        };
        if self.encoded.len() < payload.len() {
            (flag, &self.encoded)
        } else {
            (0, payload)
        }
    }

    /// What the last [`Self::decode_to_scratch`] decoded.
    pub fn scratch(&self) -> &[u8] {
        &self.scratch
    }

    /// Decodes a payload into a new buffer; `None` for a corrupt one.
    pub fn decode(&mut self, flags: u8, stored: &[u8]) -> Option<Vec<u8>> {
        if flags & FLAG_LZ4 != 0 {
            lz4_flex::block::decompress_size_prepended(stored).ok()
        } else if flags & FLAG_ZSTD != 0 {
            let raw_len = u32::from_le_bytes(stored.get(..4)?.try_into().ok()?) as usize;
            if self.zstd_decompressor.is_none() {
                self.zstd_decompressor = zstd::bulk::Decompressor::new().ok();
            }
            let raw = self
                .zstd_decompressor
                .as_mut()?
                .decompress(&stored[4..], raw_len)
                .ok()?;
            (raw.len() == raw_len).then_some(raw)
        } else {
            Some(stored.to_vec())
        }
    }
}

/// Encodes `payload` with a one-off [`Codec`].
pub fn encode(compression: Compression, min_bytes: usize, payload: &[u8]) -> (u8, Vec<u8>) {
    Codec::new(compression, min_bytes).encode(payload)
}

/// Decodes stored bytes with a one-off [`Codec`].
pub fn decode(flags: u8, stored: &[u8]) -> Option<Vec<u8>> {
    Codec::new(Compression::None, 0).decode(flags, stored)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn encoding_to_scratch_matches_encoding_and_round_trips() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 11) as u8).collect();
        let noise: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for compression in [Compression::Lz4, Compression::Zstd, Compression::None] {
            let mut codec = Codec::new(compression, 1024);
            for input in [&payload[..], &payload[..100], &noise[..], &payload[..2000]] {
                let (flags, stored) = codec.encode(input);
                let (scratch_flags, scratch_stored) = codec.encode_to_scratch(input);
                let scratch_stored = scratch_stored.to_vec();
                assert_eq!(scratch_flags, flags, "{compression:?} {}", input.len());
                assert_eq!(scratch_stored, stored, "{compression:?} {}", input.len());
                assert_eq!(codec.decode(flags, &scratch_stored).as_deref(), Some(input));
            }
        }
    }

    #[test]
    fn decoding_to_scratch_matches_decoding_and_refuses_corrupt_payloads() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        for compression in [Compression::Lz4, Compression::Zstd] {
            let mut codec = Codec::new(compression, 16);
            let (flags, stored) = codec.encode(&payload);
            assert_ne!(flags, 0, "{compression:?} compressed");
            assert_eq!(codec.decode_to_scratch(flags, &stored), Some(&payload[..]));
            assert_eq!(codec.decode(flags, &stored).as_deref(), Some(&payload[..]));
            // a second, shorter value in the same scratch buffer
            let (flags2, stored2) = codec.encode(&payload[..100]);
            if flags2 != 0 {
                assert_eq!(
                    codec.decode_to_scratch(flags2, &stored2),
                    Some(&payload[..100])
                );
            }
            let mut corrupt = stored.clone();
            corrupt.truncate(stored.len() / 2);
            assert_eq!(codec.decode_to_scratch(flags, &corrupt), None);
            assert_eq!(codec.decode_to_scratch(flags, &[1, 2]), None);
        }
    }

    fn compressible(len: usize) -> Vec<u8> {
        (0..len).map(|i| b"abcabcabd"[i % 9]).collect()
    }

    /// `len` bytes of a xorshift sequence from `seed`: no codec shrinks them, and no file
    /// format reads them as its own.
    pub(crate) fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn incompressible(len: usize) -> Vec<u8> {
        pseudo_random_bytes(len, 0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn both_codecs_round_trip_and_shrink() {
        let payload = compressible(10_000);
        for (compression, flag) in [(Compression::Lz4, FLAG_LZ4), (Compression::Zstd, FLAG_ZSTD)] {
            let (flags, stored) = encode(compression, 1024, &payload);
            assert_eq!(flags, flag);
            assert!(stored.len() < payload.len() / 4, "{compression:?}");
            assert_eq!(decode(flags, &stored).unwrap(), payload);
        }
    }

    #[test]
    fn below_threshold_none_and_non_shrinking_are_stored_raw() {
        let small = compressible(1023);
        assert_eq!(encode(Compression::Lz4, 1024, &small), (0, small.clone()));
        let at = compressible(1024);
        assert_eq!(encode(Compression::Lz4, 1024, &at).0, FLAG_LZ4);
        let big = compressible(5000);
        assert_eq!(encode(Compression::None, 1024, &big), (0, big.clone()));
        let noise = incompressible(5000);
        for compression in [Compression::Lz4, Compression::Zstd] {
            assert_eq!(encode(compression, 1024, &noise), (0, noise.clone()));
        }
        assert_eq!(decode(0, &noise).unwrap(), noise);
    }

    #[test]
    fn a_codec_reuses_its_zstd_contexts() {
        let mut codec = Codec::new(Compression::Zstd, 16);
        for len in [100, 5_000, 300] {
            let payload = compressible(len);
            let (flags, stored) = codec.encode(&payload);
            assert_eq!(flags, FLAG_ZSTD);
            assert_eq!(codec.decode(flags, &stored).unwrap(), payload);
        }
        assert!(codec.decode(FLAG_ZSTD, &[9, 0, 0, 0, 1, 2]).is_none());
    }

    #[test]
    fn corrupt_bytes_decode_to_none() {
        assert!(decode(FLAG_ZSTD, &[1, 0, 0, 0, 9, 9]).is_none());
        assert!(decode(FLAG_LZ4, &[10, 0, 0, 0]).is_none());
        assert!(decode(FLAG_LZ4, &[1, 0]).is_none());
    }

    #[test]
    fn options_parse_and_name_compression() {
        assert_eq!(Compression::parse("zstd").unwrap(), Compression::Zstd);
        assert!(Compression::parse("gzip")
            .unwrap_err()
            .message
            .starts_with("compression"));
        assert_eq!(ValueKind::from_byte(2), Some(ValueKind::Json));
        assert_eq!(ValueKind::from_byte(3), Some(ValueKind::Uint8Array));
        assert_eq!(ValueKind::from_byte(4), Some(ValueKind::IllFormedString));
        assert_eq!(ValueKind::from_byte(5), None);
    }
}
