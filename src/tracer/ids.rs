//! Trace and span ids, and the generator that makes new ones.
//!
//! A trace id is 16 bytes and a span id 8; on the wire both are lowercase hex, and an id of all
//! zero bytes means "no id" (W3C Trace Context: "All bytes as zero ... is considered an invalid
//! value"), so the generator never hands one out.
//!
//! Ids need to be unique, not secret: a tracer makes one or two per request, so the generator is
//! xoshiro256++ (four words of state, a handful of instructions per 64 bits) rather than a
//! cryptographic RNG. It is seeded from the operating system through std's `RandomState`, whose
//! SipHash keys std draws from the OS entropy source once per thread. That gives every generator
//! an unpredictable, distinct start without adding a dependency such as `getrandom`; the only
//! thing lost is a direct error if the OS has no entropy, which no platform Node runs on lacks.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` to `out` as lowercase hex.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
}

/// The value of one lowercase hex digit, `None` for anything else (uppercase included: the spec's
/// `HEXDIGLC` is lowercase only).
#[inline]
pub(crate) fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Decodes exactly `N` bytes from `2 * N` lowercase hex characters.
pub(crate) fn decode_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

/// A 16-byte trace id; all zero bytes is the invalid id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id (the `parent-id` of `traceparent`); all zero bytes is the invalid id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId([u8; 8]);

macro_rules! id_impl {
    ($name:ident, $len:literal) => {
        impl $name {
            /// The all-zero id, which the spec forbids on the wire.
            pub const INVALID: $name = $name([0; $len]);

            /// The id made of these bytes (possibly the invalid one).
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }

            /// The id's bytes.
            pub const fn to_bytes(self) -> [u8; $len] {
                self.0
            }

            /// Whether the id is usable: not all zero.
            pub fn is_valid(&self) -> bool {
                self.0 != [0; $len]
            }

            /// Parses exactly
            #[doc = concat!(stringify!($len), " bytes")]
            /// of lowercase hex; uppercase, other lengths and non-hex are `None`. All zero parses
            /// (check [`Self::is_valid`]) so that the caller decides what "invalid" means.
            pub fn from_hex(hex: &str) -> Option<Self> {
                decode_hex::<$len>(hex.as_bytes()).map($name)
            }

            /// The id as lowercase hex.
            pub fn to_hex(&self) -> String {
                let mut s = String::with_capacity(2 * $len);
                push_hex(&mut s, &self.0);
                s
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        // Hex rather than the derived byte list, so test failures and logs read like headers.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }
    };
}

id_impl!(TraceId, 16);
id_impl!(SpanId, 8);

/// Makes fresh, never-zero trace and span ids: xoshiro256++ seeded from the OS.
///
/// Not `Sync` by design: give each thread (or each tracer behind its own lock) its own generator,
/// so the hot path never contends.
#[derive(Clone, Debug)]
pub struct IdGenerator {
    state: [u64; 4],
}

/// Distinguishes generators created in the same thread at the same instant; `RandomState` alone
/// would already differ, this is belt and braces for the seed mix.
static GENERATORS: AtomicU64 = AtomicU64::new(0);

impl IdGenerator {
    /// A generator seeded from the operating system's entropy (through `RandomState`).
    pub fn new() -> Self {
        let build = RandomState::new();
        let nonce = GENERATORS.fetch_add(1, Ordering::Relaxed);
        let mut words = [0u64; 4];
        for (i, word) in words.iter_mut().enumerate() {
            let mut h = build.build_hasher();
            h.write_u64(nonce);
            h.write_usize(i);
            *word = h.finish();
        }
        Self::from_state(words)
    }

    /// A deterministic generator, for tests and reproducible benchmarks; the seed is expanded with
    /// splitmix64 as the xoshiro authors recommend.
    pub fn from_seed(seed: u64) -> Self {
        let mut x = seed;
        let mut words = [0u64; 4];
        for word in &mut words {
            *word = splitmix64(&mut x);
        }
        Self::from_state(words)
    }

    fn from_state(state: [u64; 4]) -> Self {
        // xoshiro's one forbidden state: all zero would stay zero forever.
        if state == [0; 4] {
            return Self::from_seed(0x9e37_79b9_7f4a_7c15);
        }
        IdGenerator { state }
    }

    /// The next 64 pseudo-random bits (xoshiro256++).
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A new trace id; never the invalid one. All 16 bytes are random, so a tracer may set the
    /// Level 2 `random` trace flag on traces it starts.
    pub fn trace_id(&mut self) -> TraceId {
        loop {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&self.next_u64().to_be_bytes());
            bytes[8..].copy_from_slice(&self.next_u64().to_be_bytes());
            let id = TraceId(bytes);
            if id.is_valid() {
                return id;
            }
        }
    }

    /// A new span id; never the invalid one.
    pub fn span_id(&mut self) -> SpanId {
        loop {
            let id = SpanId(self.next_u64().to_be_bytes());
            if id.is_valid() {
                return id;
            }
        }
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn hundred_thousand_ids_are_unique_and_never_zero() {
        let mut g = IdGenerator::new();
        let mut traces = HashSet::new();
        let mut spans = HashSet::new();
        for _ in 0..100_000 {
            let t = g.trace_id();
            let s = g.span_id();
            assert!(t.is_valid() && s.is_valid());
            assert!(traces.insert(t), "duplicate trace id {t}");
            assert!(spans.insert(s), "duplicate span id {s}");
        }
    }

    #[test]
    fn two_os_seeded_generators_differ() {
        let (mut a, mut b) = (IdGenerator::new(), IdGenerator::new());
        assert_ne!(a.trace_id(), b.trace_id());
    }

    #[test]
    fn a_seed_reproduces_its_sequence() {
        let (mut a, mut b) = (IdGenerator::from_seed(7), IdGenerator::from_seed(7));
        for _ in 0..10 {
            assert_eq!(a.span_id(), b.span_id());
        }
    }

    #[test]
    fn xoshiro_matches_the_reference_implementation() {
        // State 1, 2, 3, 4: first outputs of the reference C code (xoshiro256plusplus.c).
        let mut g = IdGenerator {
            state: [1, 2, 3, 4],
        };
        assert_eq!(g.next_u64(), 41_943_041);
        assert_eq!(g.next_u64(), 58_720_359);
        assert_eq!(g.next_u64(), 3_588_806_011_781_223);
    }

    #[test]
    fn zero_state_is_replaced() {
        let mut g = IdGenerator::from_state([0; 4]);
        assert_ne!(g.next_u64(), 0);
    }

    #[test]
    fn hex_is_lowercase_and_exact() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(t.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.to_string(), t.to_hex());
        assert_eq!(
            format!("{t:?}"),
            "TraceId(4bf92f3577b34da6a3ce929d0e0e4736)"
        );
        assert_eq!(TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736"), None);
        assert_eq!(TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e473"), None);
        assert_eq!(TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e47360"), None);
        assert_eq!(SpanId::from_hex("00f067aa0ba902bg"), None);
        assert_eq!(
            SpanId::from_hex("00f067aa0ba902b7").unwrap().to_hex(),
            "00f067aa0ba902b7"
        );
        // multi-byte UTF-8 of the right byte length is still not hex
        assert_eq!(SpanId::from_hex("ééééééé00"), None);
        let zero = SpanId::from_hex("0000000000000000").unwrap();
        assert!(!zero.is_valid());
        assert_eq!(zero, SpanId::INVALID);
    }

    proptest! {
        #[test]
        fn hex_round_trips(t in any::<[u8; 16]>(), s in any::<[u8; 8]>()) {
            let (t, s) = (TraceId::from_bytes(t), SpanId::from_bytes(s));
            prop_assert_eq!(TraceId::from_hex(&t.to_hex()), Some(t));
            prop_assert_eq!(SpanId::from_hex(&s.to_hex()), Some(s));
            prop_assert_eq!(t.is_valid(), t.to_bytes() != [0; 16]);
        }

        #[test]
        fn from_hex_never_panics(s in ".{0,40}") {
            let _ = TraceId::from_hex(&s);
            let _ = SpanId::from_hex(&s);
        }

        #[test]
        fn seeded_generators_never_yield_zero(seed in any::<u64>()) {
            let mut g = IdGenerator::from_seed(seed);
            for _ in 0..32 {
                prop_assert!(g.trace_id().is_valid());
                prop_assert!(g.span_id().is_valid());
            }
        }
    }
}
