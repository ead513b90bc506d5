//! W3C Trace Context: the `traceparent` and `tracestate` headers, parsed and written.
//!
//! This follows W3C Trace Context Level 1 (<https://www.w3.org/TR/trace-context/>), plus the
//! Level 2 `random` trace flag. Both parsers take every value the header arrived with, because
//! the two headers treat repetition differently: two `traceparent` values are an invalid request
//! (the trace restarts), while several `tracestate` values are one list split across fields and
//! "MUST be combined into a single header according to RFC7230".
//!
//! Parsing works on bytes and never indexes past what it has checked, so no input panics; a bad
//! `traceparent` is `None` and a bad `tracestate` is empty, which is what a caller needs to
//! restart a trace or carry on without vendor state. The spec orders the two: "If the vendor
//! failed to parse `traceparent`, it MUST NOT attempt to parse `tracestate`", which
//! [`SpanContext::from_headers`] does for the caller.
//!
//! Judgement calls, each with the spec sentence it rests on:
//!
//! - A `tracestate` with an invalid member, a duplicate key or more than 32 members is discarded
//!   whole. §4.3: "The vendor MAY validate the `tracestate` header. If the `tracestate` header
//!   cannot be parsed the vendor MAY discard the entire header. Invalid `tracestate` entries MAY
//!   also be discarded." Discarding the whole header is what the W3C test suite checks at its
//!   strict level, and a list that is malformed in one place may be truncated or spliced
//!   elsewhere, so keeping "the valid rest" could forward a half-understood state.
//! - Truncation for propagation removes entries longer than 128 characters first, right to left,
//!   only as many as needed, then entries from the right: "the vendor MUST truncate whole
//!   entries. Entries larger than `128` characters long SHOULD be removed first. Then entries
//!   SHOULD be removed starting from the end of `tracestate`."

use std::fmt;

use super::ids::{decode_hex, hex_digit, push_hex, SpanId, TraceId};

/// Length of a version `00` `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
pub const TRACEPARENT_LEN: usize = 55;

/// Most list members a `tracestate` may hold ("There can be a maximum of 32 list-members in a
/// list.").
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Characters of `tracestate` always propagated: "Vendors SHOULD propagate at least 512
/// characters of a combined header."
pub const MIN_PROPAGATED_TRACESTATE: usize = 512;

/// Entries longer than this are the first to go when `tracestate` is truncated.
pub const LARGE_TRACESTATE_ENTRY: usize = 128;

/// The 8-bit `trace-flags` field, holding only the bits this implementation understands.
///
/// Unknown bits are dropped when parsing, since Level 1 says of them: "Vendors MUST set those to
/// zero." Keeping them would propagate meaning we cannot vouch for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The caller may have recorded trace data (bit 0).
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// Level 2: at least the right-most 7 bytes of the trace id are random (bit 1).
    pub const RANDOM: TraceFlags = TraceFlags(0x02);
    /// Every bit this implementation knows; the rest are dropped.
    pub const KNOWN: u8 = 0x03;

    /// No flags set.
    pub const fn empty() -> Self {
        TraceFlags(0)
    }

    /// Flags from a raw byte, dropping bits outside [`Self::KNOWN`].
    pub const fn from_bits_truncate(bits: u8) -> Self {
        TraceFlags(bits & Self::KNOWN)
    }

    /// The raw byte, as written in `traceparent`.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether the sampled bit is set.
    pub const fn is_sampled(self) -> bool {
        self.0 & Self::SAMPLED.0 != 0
    }

    /// Whether the Level 2 random bit is set.
    pub const fn is_random(self) -> bool {
        self.0 & Self::RANDOM.0 != 0
    }

    /// These flags with the sampled bit set or cleared.
    pub const fn with_sampled(self, sampled: bool) -> Self {
        if sampled {
            TraceFlags(self.0 | Self::SAMPLED.0)
        } else {
            TraceFlags(self.0 & !Self::SAMPLED.0)
        }
    }

    /// These flags with the random bit set or cleared.
    pub const fn with_random(self, random: bool) -> Self {
        if random {
            TraceFlags(self.0 | Self::RANDOM.0)
        } else {
            TraceFlags(self.0 & !Self::RANDOM.0)
        }
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

/// Spaces and horizontal tabs, the `OWS` of RFC 7230.
#[inline]
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// Parses the `traceparent` header, given every value it arrived with.
///
/// `None` means "restart the trace": no value, more than one value, any malformed field, version
/// `ff`, or an all-zero trace or parent id. Version `00` must be exactly 55 characters; a higher
/// version is read through the version `00` layout ("If a higher version is detected, the
/// implementation SHOULD try to parse it"): at least 55 characters, and the flags "either at the
/// end of the string or followed by a dash". Whatever the version, the result is re-emitted as
/// version `00` by [`format_traceparent`]. Spaces and tabs around the value are ignored.
pub fn parse_traceparent(values: &[&str]) -> Option<(TraceId, SpanId, TraceFlags)> {
    let [value] = values else {
        return None;
    };
    let s = trim_ows(value.as_bytes());
    if s.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = (hex_digit(s[0])? << 4) | hex_digit(s[1])?;
    match version {
        0xff => return None,
        0x00 if s.len() != TRACEPARENT_LEN => return None,
        // "Vendors MUST NOT parse or assume anything about unknown fields for this version."
        _ if s.len() > TRACEPARENT_LEN && s[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
        return None;
    }
    let trace_id = TraceId::from_bytes(decode_hex::<16>(&s[3..35])?);
    let span_id = SpanId::from_bytes(decode_hex::<8>(&s[36..52])?);
    let [flags] = decode_hex::<1>(&s[53..55])?;
    if !trace_id.is_valid() || !span_id.is_valid() {
        return None;
    }
    Some((trace_id, span_id, TraceFlags::from_bits_truncate(flags)))
}

/// Writes a version `00` `traceparent` value.
pub fn format_traceparent(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> String {
    let mut s = String::with_capacity(TRACEPARENT_LEN);
    s.push_str("00-");
    push_hex(&mut s, &trace_id.to_bytes());
    s.push('-');
    push_hex(&mut s, &span_id.to_bytes());
    s.push('-');
    push_hex(&mut s, &[flags.bits()]);
    s
}

/// Why a `tracestate` was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceStateError {
    /// More than 32 non-empty list members.
    TooManyMembers,
    /// A non-empty list member without `=`.
    MissingEquals,
    /// A key outside the key grammar (simple or `tenant@system`).
    InvalidKey,
    /// A value outside the value grammar (1 to 256 printable ASCII characters other than `,`
    /// and `=`, not ending in a space).
    InvalidValue,
    /// The same key twice ("Only one entry per key is allowed").
    DuplicateKey,
}

impl fmt::Display for TraceStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceStateError::TooManyMembers => "tracestate has more than 32 list members",
            TraceStateError::MissingEquals => "tracestate list member has no '='",
            TraceStateError::InvalidKey => "tracestate key is not a valid key",
            TraceStateError::InvalidValue => "tracestate value is not a valid value",
            TraceStateError::DuplicateKey => "tracestate has a duplicate key",
        })
    }
}

impl std::error::Error for TraceStateError {}

/// `lcalpha / DIGIT / "_" / "-" / "*" / "/"`: every key character after the first.
#[inline]
fn is_key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// `first` then `0*max_rest` key characters.
fn is_key_part(s: &[u8], first: fn(u8) -> bool, max_rest: usize) -> bool {
    match s.split_first() {
        Some((&head, rest)) => {
            first(head) && rest.len() <= max_rest && rest.iter().all(|&b| is_key_char(b))
        }
        None => false,
    }
}

/// The Level 1 key grammar:
///
/// ```text
/// key = simple-key / multi-tenant-key
/// simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
/// multi-tenant-key = tenant-id "@" system-id
/// tenant-id = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
/// system-id = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
/// ```
pub fn is_valid_key(key: &str) -> bool {
    let key = key.as_bytes();
    let lcalpha = |b: u8| b.is_ascii_lowercase();
    let lcalpha_or_digit = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match key.iter().position(|&b| b == b'@') {
        None => is_key_part(key, lcalpha, 255),
        // a second '@' fails is_key_char in the system id
        Some(at) => {
            is_key_part(&key[..at], lcalpha_or_digit, 240)
                && is_key_part(&key[at + 1..], lcalpha, 13)
        }
    }
}

/// The value grammar: `value = 0*255(chr) nblk-chr`, `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E`,
/// `chr = %x20 / nblk-chr`.
pub fn is_valid_value(value: &str) -> bool {
    let v = value.as_bytes();
    let nblk = |b: u8| matches!(b, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    match v.split_last() {
        Some((&last, rest)) => {
            nblk(last) && rest.len() <= 255 && rest.iter().all(|&b| b == 0x20 || nblk(b))
        }
        None => false,
    }
}

/// The `tracestate` list: vendor key/value members, left-most first, unique keys, at most 32.
///
/// The left-most member belongs to the vendor that wrote `traceparent`; mutations move a member
/// to the left, and truncation takes from the right.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceState {
    members: Vec<(String, String)>,
}

impl TraceState {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses every `tracestate` value received, combined in order as if joined with `,`.
    ///
    /// Members are separated by `,` with optional spaces and tabs around them; empty members are
    /// skipped ("Empty and whitespace-only list members are allowed"). Any invalid member, a
    /// duplicate key or more than 32 members fails the whole list (see the module docs for why).
    pub fn parse(values: &[&str]) -> Result<Self, TraceStateError> {
        let mut members: Vec<(String, String)> = Vec::new();
        for value in values {
            for member in value.as_bytes().split(|&b| b == b',') {
                let member = trim_ows(member);
                if member.is_empty() {
                    continue;
                }
                if members.len() == MAX_TRACESTATE_MEMBERS {
                    return Err(TraceStateError::TooManyMembers);
                }
                let eq = member
                    .iter()
                    .position(|&b| b == b'=')
                    .ok_or(TraceStateError::MissingEquals)?;
                // Splitting UTF-8 at the ASCII bytes ',', '=', space and tab always lands on char
                // boundaries, so these conversions cannot fail; non-ASCII then fails the grammar.
                let (key, value) = (&member[..eq], &member[eq + 1..]);
                let key = std::str::from_utf8(key).map_err(|_| TraceStateError::InvalidKey)?;
                if !is_valid_key(key) {
                    return Err(TraceStateError::InvalidKey);
                }
                let value =
                    std::str::from_utf8(value).map_err(|_| TraceStateError::InvalidValue)?;
                if !is_valid_value(value) {
                    return Err(TraceStateError::InvalidValue);
                }
                if members.iter().any(|(k, _)| k == key) {
                    return Err(TraceStateError::DuplicateKey);
                }
                members.push((key.to_owned(), value.to_owned()));
            }
        }
        Ok(TraceState { members })
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The members, left-most first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets `key` to `value` and moves it to the left ("Modified keys MUST be moved to the
    /// beginning (left) of the list"; new keys "SHOULD be added to the beginning"). When that
    /// would make 33 members the right-most one is dropped, as truncation does.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), TraceStateError> {
        if !is_valid_key(key) {
            return Err(TraceStateError::InvalidKey);
        }
        if !is_valid_value(value) {
            return Err(TraceStateError::InvalidValue);
        }
        self.remove(key);
        self.members.insert(0, (key.to_owned(), value.to_owned()));
        self.members.truncate(MAX_TRACESTATE_MEMBERS);
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.members.iter().position(|(k, _)| k == key)?;
        Some(self.members.remove(i).1)
    }

    /// The header value to propagate, at most `max_len` characters, or `None` when nothing is
    /// left (the spec asks vendors to avoid sending an empty `tracestate`).
    ///
    /// A `max_len` below 512 is raised to 512: "Vendors SHOULD propagate at least 512 characters
    /// of a combined header." When the list is longer, whole entries are removed, never cut:
    /// entries over 128 characters first (right to left, only while still too long), then
    /// entries from the right. The length counts the separating commas; no whitespace is written.
    pub fn header_value(&self, max_len: usize) -> Option<String> {
        let limit = max_len.max(MIN_PROPAGATED_TRACESTATE);
        let entry_len = |(k, v): &(String, String)| k.len() + 1 + v.len();
        let mut keep = vec![true; self.members.len()];
        let mut chars: usize = self.members.iter().map(entry_len).sum();
        let mut count = self.members.len();
        let too_long = |chars: usize, count: usize| chars + count.saturating_sub(1) > limit;
        // first pass: large entries; second pass: anything, both from the right
        for large_only in [true, false] {
            for (i, member) in self.members.iter().enumerate().rev() {
                if !too_long(chars, count) {
                    break;
                }
                let len = entry_len(member);
                if keep[i] && (!large_only || len > LARGE_TRACESTATE_ENTRY) {
                    keep[i] = false;
                    chars -= len;
                    count -= 1;
                }
            }
        }
        if count == 0 {
            return None;
        }
        let mut out = String::with_capacity(chars + count - 1);
        for ((k, v), _) in self.members.iter().zip(&keep).filter(|(_, &kept)| kept) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        Some(out)
    }
}

/// Parses every `tracestate` value received; an invalid list comes back empty (see
/// [`TraceState::parse`] for the reason it was dropped).
pub fn parse_tracestate(values: &[&str]) -> TraceState {
    TraceState::parse(values).unwrap_or_default()
}

/// The identity of a span as seen across process boundaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace this span belongs to.
    pub trace_id: TraceId,
    /// This span (for a remote context: the caller's span, our parent).
    pub span_id: SpanId,
    /// Sampling and randomness flags.
    pub flags: TraceFlags,
    /// Vendor state carried along the trace.
    pub trace_state: TraceState,
    /// Whether the context arrived from another process rather than being created here.
    pub remote: bool,
}

impl SpanContext {
    /// The remote context carried by incoming headers, or `None` when `traceparent` is missing
    /// or invalid and the trace must restart. `tracestate` is parsed only after `traceparent`
    /// succeeds, and its failure leaves the state empty without affecting `traceparent`
    /// ("failure to parse `tracestate` MUST NOT affect the parsing of `traceparent`").
    pub fn from_headers(traceparent: &[&str], tracestate: &[&str]) -> Option<Self> {
        let (trace_id, span_id, flags) = parse_traceparent(traceparent)?;
        Some(SpanContext {
            trace_id,
            span_id,
            flags,
            trace_state: parse_tracestate(tracestate),
            remote: true,
        })
    }

    /// Whether both ids are valid.
    pub fn is_valid(&self) -> bool {
        self.trace_id.is_valid() && self.span_id.is_valid()
    }

    /// This context as a version `00` `traceparent` value.
    pub fn traceparent(&self) -> String {
        format_traceparent(self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TID: &str = "12345678901234567890123456789012";

    fn tp(s: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
        parse_traceparent(&[s])
    }

    fn ts(values: &[&str]) -> Result<Vec<(String, String)>, TraceStateError> {
        TraceState::parse(values).map(|s| s.members)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // ---- traceparent ----

    #[test]
    fn parses_the_spec_examples() {
        let (t, s, f) = tp(TP).unwrap();
        assert_eq!(t.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.to_hex(), "00f067aa0ba902b7");
        assert!(f.is_sampled());
        let (_, _, f) = tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!f.is_sampled());
        assert_eq!(format_traceparent(t, s, TraceFlags::SAMPLED), TP);
    }

    #[test]
    fn uppercase_hex_is_rejected_everywhere() {
        assert_eq!(
            tp("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"),
            None
        );
        assert_eq!(
            tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"),
            None
        );
        assert_eq!(
            tp("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        assert!(tp("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0a").is_some());
    }

    #[test]
    fn version_ff_is_invalid() {
        assert_eq!(tp(&format!("ff-{TID}-1234567890123456-01")), None);
        assert_eq!(tp(&format!("ff-{TID}-1234567890123456-01-more")), None);
    }

    #[test]
    fn version_00_must_be_exactly_55_characters() {
        assert!(tp(&format!("00-{TID}-1234567890123456-01")).is_some());
        assert_eq!(tp(&format!("00-{TID}-1234567890123456-01.")), None);
        assert_eq!(
            tp(&format!(
                "00-{TID}-1234567890123456-01-what-the-future-will-be-like"
            )),
            None
        );
        assert_eq!(tp(&format!("00-{TID}-1234567890123456-1")), None);
        assert_eq!(tp(&format!("00-{TID}-1234567890123456-001")), None);
        assert_eq!(tp(""), None);
    }

    #[test]
    fn a_future_version_is_read_through_the_00_layout_and_re_emitted_as_00() {
        let exact = tp(&format!("cc-{TID}-1234567890123456-01")).unwrap();
        let suffixed = tp(&format!(
            "cc-{TID}-1234567890123456-01-what-the-future-will-be-like"
        ))
        .unwrap();
        assert_eq!(exact, suffixed);
        assert_eq!(exact.0.to_hex(), TID);
        assert_eq!(
            format_traceparent(exact.0, exact.1, exact.2),
            format!("00-{TID}-1234567890123456-01")
        );
        // a bare trailing dash: the flags are "followed by a dash"
        assert!(tp(&format!("cc-{TID}-1234567890123456-01-")).is_some());
        // the future fields are not looked at, even when they are not ASCII
        assert!(tp(&format!("cc-{TID}-1234567890123456-01-é\u{0}")).is_some());
    }

    #[test]
    fn a_future_version_without_a_dash_at_56_is_rejected() {
        assert_eq!(
            tp(&format!(
                "cc-{TID}-1234567890123456-01.what-the-future-will-be-like"
            )),
            None
        );
        assert_eq!(tp(&format!("cc-{TID}-1234567890123456-010")), None);
        assert_eq!(tp(&format!("cc-{TID}-1234567890123456-1")), None);
        assert_eq!(tp(&format!("cc-{TID}-123456789012345-01-")), None);
    }

    #[test]
    fn malformed_versions_are_rejected() {
        for v in [".0", "0.", "000", "0000", "0", "g0", " 0"] {
            assert_eq!(
                tp(&format!("{v}-{TID}-1234567890123456-01")),
                None,
                "version {v:?}"
            );
        }
    }

    #[test]
    fn malformed_ids_and_flags_are_rejected() {
        let bad = [
            "00-.2345678901234567890123456789012-1234567890123456-01",
            "00-1234567890123456789012345678901.-1234567890123456-01",
            "00-123456789012345678901234567890123-1234567890123456-01",
            "00-1234567890123456789012345678901-1234567890123456-01",
            "00-12345678901234567890123456789012-.234567890123456-01",
            "00-12345678901234567890123456789012-123456789012345.-01",
            "00-12345678901234567890123456789012-12345678901234567-01",
            "00-12345678901234567890123456789012-123456789012345-01",
            "00-12345678901234567890123456789012-1234567890123456-.0",
            "00-12345678901234567890123456789012-1234567890123456-0.",
            "00_12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012_1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456_01",
        ];
        for s in bad {
            assert_eq!(tp(s), None, "{s}");
        }
    }

    #[test]
    fn all_zero_ids_are_invalid() {
        assert_eq!(
            tp("00-00000000000000000000000000000000-1234567890123456-01"),
            None
        );
        assert_eq!(tp(&format!("00-{TID}-0000000000000000-01")), None);
        assert_eq!(
            tp("cc-00000000000000000000000000000000-1234567890123456-01-x"),
            None
        );
    }

    #[test]
    fn surrounding_spaces_and_tabs_are_tolerated() {
        let want = tp(&format!("00-{TID}-1234567890123456-01")).unwrap();
        for pad in [" {}", "\t{}", "{} ", "{}\t", "\t {} \t"] {
            let s = pad.replace("{}", &format!("00-{TID}-1234567890123456-01"));
            assert_eq!(tp(&s), Some(want), "{s:?}");
        }
        // but not inside, and not other whitespace
        assert_eq!(tp(&format!("00- {TID}-1234567890123456-01")), None);
        assert_eq!(tp(&format!("\n00-{TID}-1234567890123456-01")), None);
    }

    #[test]
    fn more_than_one_traceparent_value_restarts_the_trace() {
        let a = format!("00-{TID}-1234567890123456-01");
        let b = "00-12345678901234567890123456789011-1234567890123456-01";
        assert_eq!(parse_traceparent(&[&a, b]), None);
        assert_eq!(parse_traceparent(&[&a, &a]), None);
        assert_eq!(parse_traceparent(&[]), None);
        // two values folded into one field are not one valid value either
        assert_eq!(tp(&format!("{a},{b}")), None);
        assert_eq!(tp(&format!("cc-{TID}-1234567890123456-01,{b}")), None);
    }

    #[test]
    fn unknown_flag_bits_are_dropped() {
        let (_, _, f) = tp(&format!("00-{TID}-1234567890123456-ff")).unwrap();
        assert_eq!(f.bits(), 0x03);
        assert!(f.is_sampled() && f.is_random());
        let (_, _, f) = tp(&format!("00-{TID}-1234567890123456-08")).unwrap();
        assert_eq!(f, TraceFlags::empty());
        let (_, _, f) = tp(&format!("00-{TID}-1234567890123456-09")).unwrap();
        assert_eq!(f, TraceFlags::SAMPLED);
        let (t, s, f) = tp(&format!("00-{TID}-1234567890123456-fe")).unwrap();
        assert_eq!(
            format_traceparent(t, s, f),
            format!("00-{TID}-1234567890123456-02")
        );
    }

    #[test]
    fn flags_builders() {
        let f = TraceFlags::empty().with_sampled(true).with_random(true);
        assert_eq!(f.bits(), 3);
        assert_eq!(f.with_sampled(false), TraceFlags::RANDOM);
        assert_eq!(f.with_random(false), TraceFlags::SAMPLED);
        assert_eq!(TraceFlags::from_bits_truncate(0xfd), TraceFlags::SAMPLED);
        assert_eq!(format!("{f:?}"), "TraceFlags(03)");
    }

    // ---- tracestate ----

    #[test]
    fn parses_members_in_order_with_ows() {
        assert_eq!(
            ts(&["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]).unwrap(),
            pairs(&[("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")])
        );
        let want = pairs(&[("foo", "1"), ("bar", "2"), ("baz", "3")]);
        assert_eq!(ts(&["foo=1 \t , \t bar=2, \t baz=3"]).unwrap(), want);
        assert_eq!(ts(&["foo=1\t \t,\t \tbar=2,\t \tbaz=3"]).unwrap(), want);
        for s in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
            assert_eq!(ts(&[s]).unwrap(), pairs(&[("foo", "1")]), "{s:?}");
        }
    }

    #[test]
    fn empty_members_and_headers_are_ignored() {
        assert_eq!(ts(&[""]).unwrap(), vec![]);
        assert_eq!(ts(&[]).unwrap(), vec![]);
        assert_eq!(ts(&[" , ,\t,"]).unwrap(), vec![]);
        assert_eq!(ts(&["foo=1", ""]).unwrap(), pairs(&[("foo", "1")]));
        assert_eq!(ts(&["", "foo=1"]).unwrap(), pairs(&[("foo", "1")]));
        assert_eq!(
            ts(&[",foo=1,,bar=2,"]).unwrap(),
            pairs(&[("foo", "1"), ("bar", "2")])
        );
    }

    #[test]
    fn several_headers_combine_in_order() {
        let got = ts(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]).unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("foo", "1"),
                ("bar", "2"),
                ("rojo", "1"),
                ("congo", "2"),
                ("baz", "3")
            ])
        );
    }

    #[test]
    fn thirty_two_members_pass_and_thirty_three_discard_the_header() {
        let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        let headers32 = [
            members[..10].join(","),
            members[10..20].join(","),
            members[20..30].join(","),
            members[30..32].join(","),
        ];
        let refs: Vec<&str> = headers32.iter().map(String::as_str).collect();
        let state = TraceState::parse(&refs).unwrap();
        assert_eq!(state.len(), 32);
        assert_eq!(state.get("bar01"), Some("01"));

        let all = members.join(",");
        assert_eq!(ts(&[&all]), Err(TraceStateError::TooManyMembers));
        assert!(parse_tracestate(&[&all]).is_empty());
        // empty members do not count towards the 32
        let padded = format!("{},,,", members[..32].join(", ,"));
        assert_eq!(ts(&[&padded]).unwrap().len(), 32);
    }

    #[test]
    fn invalid_keys_discard_the_header() {
        for s in [
            "foo =1",
            "FOO=1",
            "foo.bar=1",
            "=1",
            "1foo=1",
            "_foo=1",
            "foo@=1,bar=2",
            "@foo=1,bar=2",
            "foo@@bar=1,bar=2",
            "foo@bar@baz=1,bar=2",
            "foo@1ar=1",
            "fé=1",
        ] {
            assert_eq!(ts(&[s]), Err(TraceStateError::InvalidKey), "{s:?}");
            assert!(parse_tracestate(&[s]).is_empty());
        }
        assert_eq!(ts(&["foo"]), Err(TraceStateError::MissingEquals));
        assert_eq!(ts(&["foo=1,bar"]), Err(TraceStateError::MissingEquals));
    }

    #[test]
    fn key_grammar_accepts_every_allowed_character_and_length() {
        let simple = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
        assert!(is_valid_key(simple));
        assert!(is_valid_key(&format!("{simple}@a-z0-9_-*/")));
        assert!(is_valid_key("1tenant@vendor"));
        assert!(is_valid_key(&"z".repeat(256)));
        assert!(!is_valid_key(&"z".repeat(257)));
        assert!(is_valid_key(&format!(
            "{}@{}",
            "t".repeat(241),
            "v".repeat(14)
        )));
        assert!(!is_valid_key(&format!("{}@v", "t".repeat(242))));
        assert!(!is_valid_key(&format!("t@{}", "v".repeat(15))));
        assert!(!is_valid_key("t@1v"));
        // the W3C suite: one bad key drops the good one beside it
        assert!(parse_tracestate(&["foo=1", &format!("{}=1", "z".repeat(257))]).is_empty());
        assert_eq!(
            parse_tracestate(&["foo=1", &format!("{}=1", "z".repeat(256))]).get("foo"),
            Some("1")
        );
    }

    #[test]
    fn invalid_values_discard_the_header() {
        for s in [
            "foo=bar=baz",
            "foo=,bar=3",
            "foo=",
            "foo=  ",
            "foo=a\tb",
            "foo=caf\u{e9}",
            "foo=\u{7f}",
        ] {
            assert_eq!(ts(&[s]), Err(TraceStateError::InvalidValue), "{s:?}");
        }
        assert_eq!(
            ts(&[&format!("foo={}", "v".repeat(257))]),
            Err(TraceStateError::InvalidValue)
        );
        assert_eq!(
            ts(&[&format!("foo={}", "v".repeat(256))]).unwrap()[0]
                .1
                .len(),
            256
        );
    }

    #[test]
    fn value_grammar_keeps_leading_spaces_and_drops_trailing_ones() {
        let all: String = (0x20u8..=0x7e)
            .filter(|&b| b != b',' && b != b'=')
            .map(char::from)
            .collect();
        assert!(is_valid_value(&all));
        assert_eq!(
            ts(&[&format!("foo={all}")]).unwrap(),
            pairs(&[("foo", &all)])
        );
        assert_eq!(ts(&["foo= 1 "]).unwrap(), pairs(&[("foo", " 1")]));
        assert_eq!(ts(&["foo=a b"]).unwrap(), pairs(&[("foo", "a b")]));
        assert!(!is_valid_value("a "));
    }

    #[test]
    fn duplicate_keys_discard_the_header() {
        for values in [
            &["foo=1,foo=1"][..],
            &["foo=1,foo=2"],
            &["foo=1", "foo=1"],
            &["foo=1", "foo=2"],
        ] {
            assert_eq!(ts(values), Err(TraceStateError::DuplicateKey), "{values:?}");
            assert!(parse_tracestate(values).get("foo").is_none());
        }
        // same tenant under two systems is two keys
        assert_eq!(ts(&["t@a=1,t@b=2"]).unwrap().len(), 2);
    }

    #[test]
    fn insert_moves_to_the_left_and_caps_at_32() {
        let mut s = parse_tracestate(&["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]);
        s.insert("congo", "ucfJifl5GOE").unwrap();
        assert_eq!(
            s.header_value(512).unwrap(),
            "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7"
        );
        assert_eq!(s.insert("Bad", "x"), Err(TraceStateError::InvalidKey));
        assert_eq!(s.insert("ok", "x,y"), Err(TraceStateError::InvalidValue));
        assert_eq!(s.remove("rojo").as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(s.remove("rojo"), None);
        for i in 0..40 {
            s.insert(&format!("k{i}"), "v").unwrap();
        }
        assert_eq!(s.len(), MAX_TRACESTATE_MEMBERS);
        assert_eq!(s.iter().next(), Some(("k39", "v")));
        assert_eq!(s.get("congo"), None, "the right-most went first");
    }

    #[test]
    fn header_value_keeps_everything_that_fits() {
        assert_eq!(TraceState::new().header_value(512), None);
        let s = parse_tracestate(&["foo=1 , bar=2"]);
        assert_eq!(s.header_value(0).unwrap(), "foo=1,bar=2");
    }

    #[test]
    fn truncation_drops_large_entries_first_then_from_the_right_keeping_512() {
        // 20 entries of 24 chars ("kNN=" + 20 chars) = 480 + 19 commas = 499, then one large one
        let small: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}={}", "v".repeat(20)))
            .collect();
        let large = format!("big={}", "x".repeat(200));
        let mut members = small.clone();
        members.insert(5, large.clone());
        let s = parse_tracestate(&[&members.join(",")]);
        assert_eq!(
            s.header_value(512).unwrap(),
            small.join(","),
            "only the large entry goes"
        );
        // a lower limit is raised to the 512 the spec asks for
        assert_eq!(s.header_value(100).unwrap(), small.join(","));
        // a higher limit keeps it
        assert_eq!(s.header_value(1000).unwrap(), members.join(","));

        // with no large entries, they go from the right: 32 entries of 24 chars = 799
        let many: Vec<String> = (0..32)
            .map(|i| format!("k{i:02}={}", "v".repeat(20)))
            .collect();
        let s = parse_tracestate(&[&many.join(",")]);
        let out = s.header_value(512).unwrap();
        // 20 entries take 499 characters, 21 would take 524
        assert_eq!(out, many[..20].join(","));
        assert!(out.len() <= 512 && out.len() + 25 > 512);
    }

    #[test]
    fn truncation_removes_only_as_many_large_entries_as_needed() {
        let a = format!("a={}", "x".repeat(200));
        let b = format!("b={}", "y".repeat(200));
        let c = format!("c={}", "z".repeat(200));
        let s = parse_tracestate(&[&format!("{a},small=1,{b},{c}")]);
        // 611 + 7 + 3 commas: dropping c (right-most large) leaves 202+7+202+2 = 413
        assert_eq!(s.header_value(512).unwrap(), format!("{a},small=1,{b}"));
        // a single 513-character entry can never fit 512 and is dropped
        let huge = format!("{}={}", "k".repeat(256), "v".repeat(256));
        assert_eq!(huge.len(), 513);
        assert_eq!(parse_tracestate(&[&huge]).header_value(512), None);
        assert_eq!(parse_tracestate(&[&huge]).header_value(513).unwrap(), huge);
    }

    #[test]
    fn from_headers_parses_tracestate_only_after_traceparent() {
        let ctx = SpanContext::from_headers(&[TP], &["congo=t61rcWkgMzE"]).unwrap();
        assert!(ctx.remote && ctx.is_valid() && ctx.flags.is_sampled());
        assert_eq!(ctx.trace_state.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(ctx.traceparent(), TP);
        // a bad tracestate leaves traceparent alone
        let ctx = SpanContext::from_headers(&[TP], &["foo=1,foo=2"]).unwrap();
        assert!(ctx.trace_state.is_empty());
        // no traceparent: nothing, whatever tracestate says
        assert_eq!(SpanContext::from_headers(&[], &["foo=1"]), None);
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            TraceStateError::DuplicateKey.to_string(),
            "tracestate has a duplicate key"
        );
    }

    // ---- properties ----

    fn key_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9_*/-]{0,30}",
            "[a-z0-9][a-z0-9_*/-]{0,20}@[a-z][a-z0-9_*/-]{0,13}",
        ]
    }

    fn value_strategy() -> impl Strategy<Value = String> {
        let nblk = prop_oneof![0x21u8..=0x2b, 0x2du8..=0x3c, 0x3eu8..=0x7e];
        let chr = prop_oneof![Just(0x20u8), nblk.clone()];
        (proptest::collection::vec(chr, 0..60), nblk).prop_map(|(mut v, last)| {
            v.push(last);
            v.into_iter().map(char::from).collect()
        })
    }

    fn state_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec((key_strategy(), value_strategy()), 0..=32).prop_map(|v| {
            let mut seen = HashSet::new();
            v.into_iter()
                .filter(|(k, _)| seen.insert(k.clone()))
                .collect()
        })
    }

    fn lossy(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_strings(a in "\\PC{0,80}", b in ".{0,80}") {
            let _ = parse_traceparent(&[&a]);
            let _ = parse_traceparent(&[&a, &b]);
            let _ = parse_tracestate(&[&a, &b]);
            let _ = SpanContext::from_headers(&[&b], &[&a]);
        }

        #[test]
        fn parsers_never_panic_on_bytes(a in proptest::collection::vec(any::<u8>(), 0..120), b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let (a, b) = (lossy(&a), lossy(&b));
            let _ = parse_traceparent(&[&a]);
            let state = parse_tracestate(&[&a, &b]);
            let _ = state.header_value(0);
        }

        #[test]
        fn near_miss_traceparents_never_panic_and_reparse_canonically(s in "[0-9a-fA-F \t.-]{50,62}") {
            if let Some((t, sp, f)) = parse_traceparent(&[&s]) {
                let out = format_traceparent(t, sp, f);
                prop_assert_eq!(out.len(), TRACEPARENT_LEN);
                prop_assert_eq!(parse_traceparent(&[&out]), Some((t, sp, f)));
            }
        }

        #[test]
        fn near_miss_tracestates_never_panic(s in "[a-zA-Z0-9 \t,=@_*/.-]{0,200}") {
            if let Ok(state) = TraceState::parse(&[&s]) {
                let out = state.header_value(usize::MAX).unwrap_or_default();
                prop_assert_eq!(parse_tracestate(&[&out]), state);
            }
        }

        #[test]
        fn valid_traceparents_round_trip(t in any::<[u8; 16]>(), s in any::<[u8; 8]>(), flags in any::<u8>(), version in 0u8..0xff, suffix in "(-[a-z0-9]{0,8})?") {
            let (t, s) = (TraceId::from_bytes(t), SpanId::from_bytes(s));
            prop_assume!(t.is_valid() && s.is_valid());
            let f = TraceFlags::from_bits_truncate(flags);
            let header = format_traceparent(t, s, f);
            prop_assert_eq!(parse_traceparent(&[&header]), Some((t, s, f)));
            // raw flag byte and any non-ff version, with a future suffix when not 00
            let mut raw = String::new();
            push_hex(&mut raw, &[version]);
            raw.push_str(&header[2..53]);
            push_hex(&mut raw, &[flags]);
            if version != 0 {
                raw.push_str(&suffix);
            }
            prop_assert_eq!(parse_traceparent(&[&raw]), Some((t, s, f)));
        }

        #[test]
        fn valid_tracestates_round_trip(members in state_strategy(), ows in "[ \t]{0,2}") {
            let header = members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(&format!("{ows},{ows}"));
            let state = TraceState::parse(&[&header]).unwrap();
            prop_assert_eq!(&state.members, &members);
            let out = state.header_value(usize::MAX);
            prop_assert_eq!(out.is_none(), members.is_empty());
            prop_assert_eq!(parse_tracestate(&[&out.unwrap_or_default()]), state);
        }

        #[test]
        fn truncation_keeps_whole_entries_in_order_within_the_limit(members in state_strategy(), max_len in 0usize..2000) {
            let state = TraceState { members };
            let limit = max_len.max(MIN_PROPAGATED_TRACESTATE);
            let full = state.header_value(usize::MAX);
            let out = state.header_value(max_len);
            match (&full, &out) {
                (Some(full), _) if full.len() <= limit => prop_assert_eq!(out.as_ref(), Some(full)),
                (None, _) => prop_assert!(out.is_none()),
                _ => {}
            }
            let kept = parse_tracestate(&[out.as_deref().unwrap_or("")]);
            prop_assert!(out.as_ref().map_or(0, String::len) <= limit);
            // every kept entry is unchanged and in its original relative order
            let mut original = state.iter();
            for (k, v) in kept.iter() {
                prop_assert!(original.any(|(ok, ov)| ok == k && ov == v));
            }
        }
    }
}
