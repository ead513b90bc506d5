//! JS strings as bytes without losing any of them: WTF-8.
//!
//! A JS string is a sequence of UTF-16 code units, and it may hold a surrogate that is not half
//! of a pair (`'a\uD800'`). N-API's UTF-8 conversion turns each such lone surrogate into
//! U+FFFD, so `'a\uD800'`, `'a\uDBFF'` and `'a\uFFFD'` all read as the same bytes: as cache keys
//! they were one entry, and a string value came back changed. WTF-8
//! (<https://simonsapin.github.io/wtf-8/>) is UTF-8 extended to encode a lone surrogate like any
//! other code point (three bytes, `ED A0 80` to `ED BF BF`). A well-formed string's WTF-8 is its
//! UTF-8, byte for byte, so keys and values already stored keep their bytes; an ill-formed one
//! gets bytes of its own, and decodes back to the same code units.

use napi::sys;
use std::ffi::c_char;
use std::ptr;

/// The UTF-8 encoding of U+FFFD, which N-API writes for a lone surrogate (and for U+FFFD).
const REPLACEMENT: [u8; 3] = [0xEF, 0xBF, 0xBD];

/// Whether UTF-8 from N-API may stand for an ill-formed string: it holds U+FFFD, which N-API
/// also writes for a lone surrogate. A scan for the byte 0xEF, which every U+FFFD starts with,
/// answers for nearly every string; it has no early exit, so that it compiles to a few vector
/// compares for a key.
#[inline]
fn may_hide_lone_surrogates(utf8: &[u8]) -> bool {
    let lead = utf8
        .iter()
        .fold(false, |found, &b| found | (b == REPLACEMENT[0]));
    lead && utf8.windows(3).any(|w| w == REPLACEMENT)
}

/// Appends the WTF-8 of UTF-16 code units `units` to `out`; returns whether they were
/// well-formed (no lone surrogate).
pub fn encode_utf16(units: &[u16], out: &mut Vec<u8>) -> bool {
    let mut well_formed = true;
    for item in char::decode_utf16(units.iter().copied()) {
        match item {
            Ok(c) => {
                let mut bytes = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut bytes).as_bytes());
            }
            Err(lone) => {
                well_formed = false;
                let unit = lone.unpaired_surrogate();
                out.extend_from_slice(&[
                    0xE0 | (unit >> 12) as u8,
                    0x80 | ((unit >> 6) & 0x3F) as u8,
                    0x80 | (unit & 0x3F) as u8,
                ]);
            }
        }
    }
    well_formed
}

/// The UTF-16 code units that WTF-8 `bytes` encode. Total: a byte that starts no WTF-8
/// sequence (none that [`encode_utf16`] wrote) decodes as U+FFFD.
pub fn decode_to_utf16(bytes: &[u8]) -> Vec<u16> {
    let mut units = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (len, initial) = match b {
            0x00..=0x7F => (1, u32::from(b)),
            0xC2..=0xDF => (2, u32::from(b & 0x1F)),
            0xE0..=0xEF => (3, u32::from(b & 0x0F)),
            0xF0..=0xF4 => (4, u32::from(b & 0x07)),
            _ => (0, 0),
        };
        let continued = len > 0
            && i + len <= bytes.len()
            && bytes[i + 1..i + len].iter().all(|&c| c & 0xC0 == 0x80);
        if !continued {
            units.push(0xFFFD);
            i += 1;
            continue;
        }
        let code = bytes[i + 1..i + len]
            .iter()
            .fold(initial, |code, &c| (code << 6) | u32::from(c & 0x3F));
        let shortest = match len {
            1 => true,
            2 => code >= 0x80,
            3 => code >= 0x800,
            _ => (0x10000..=0x10FFFF).contains(&code),
        };
        if !shortest {
            units.push(0xFFFD);
            i += 1;
            continue;
        }
        if code >= 0x10000 {
            let c = code - 0x10000;
            units.push(0xD800 | (c >> 10) as u16);
            units.push(0xDC00 | (c & 0x3FF) as u16);
        } else {
            units.push(code as u16);
        }
        i += len;
    }
    units
}

/// Makes `utf8`, N-API's UTF-8 of JS string `value`, the string's WTF-8: it stays as it is
/// unless it holds U+FFFD (one byte scan), which may stand for a lone surrogate; then the
/// string is read again as UTF-16. Returns whether the string was ill-formed (its bytes were
/// replaced).
///
/// # Safety
/// `env` and `value` must be live N-API handles of the current call.
pub unsafe fn keep_lone_surrogates(
    env: sys::napi_env,
    value: sys::napi_value,
    utf8: &mut Vec<u8>,
) -> bool {
    may_hide_lone_surrogates(utf8) && unsafe { reread_as_wtf8(env, value, utf8) } == Some(false)
}

/// Replaces `buf`, which holds N-API's UTF-8 of JS string `value` and contains U+FFFD, with the
/// string's WTF-8; returns whether the string was well-formed (the bytes then stay as they
/// were). `None` when `value` cannot be read as a string.
///
/// # Safety
/// `env` and `value` must be live N-API handles of the current call.
unsafe fn reread_as_wtf8(
    env: sys::napi_env,
    value: sys::napi_value,
    buf: &mut Vec<u8>,
) -> Option<bool> {
    let mut len = 0;
    let status =
        unsafe { sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut len) };
    if status != sys::Status::napi_ok {
        return None;
    }
    let mut units = vec![0u16; len + 1];
    let mut written = 0;
    let status = unsafe {
        sys::napi_get_value_string_utf16(env, value, units.as_mut_ptr(), len + 1, &mut written)
    };
    if status != sys::Status::napi_ok {
        return None;
    }
    units.truncate(written);
    let mut wtf8 = Vec::with_capacity(buf.len() + 8);
    let well_formed = encode_utf16(&units, &mut wtf8);
    if !well_formed {
        *buf = wtf8;
    }
    Some(well_formed)
}

/// A JS string of WTF-8 `bytes` (as [`encode_utf16`] writes them for an ill-formed string).
///
/// # Safety
/// `env` must be the live N-API environment of the current call.
pub unsafe fn create_string(env: sys::napi_env, bytes: &[u8]) -> sys::napi_value {
    let mut result = ptr::null_mut();
    if std::str::from_utf8(bytes).is_ok() {
        unsafe {
            sys::napi_create_string_utf8(
                env,
                bytes.as_ptr().cast::<c_char>(),
                bytes.len() as isize,
                &mut result,
            )
        };
    } else {
        let units = decode_to_utf16(bytes);
        unsafe {
            sys::napi_create_string_utf16(env, units.as_ptr(), units.len() as isize, &mut result)
        };
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wtf8(units: &[u16]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let well_formed = encode_utf16(units, &mut out);
        (out, well_formed)
    }

    #[test]
    fn well_formed_strings_encode_as_their_utf8() {
        for text in ["", "key", "ключ 🔑", "\u{FFFD}", "a\u{10FFFF}z", "é€𝄞"] {
            let units: Vec<u16> = text.encode_utf16().collect();
            let (bytes, well_formed) = wtf8(&units);
            assert!(well_formed, "{text:?}");
            assert_eq!(bytes, text.as_bytes(), "{text:?}");
            assert_eq!(decode_to_utf16(&bytes), units, "{text:?}");
        }
    }

    #[test]
    fn lone_surrogates_get_bytes_of_their_own_and_decode_back() {
        let cases: [&[u16]; 6] = [
            &[0x61, 0xD800],
            &[0x61, 0xDBFF],
            &[0x61, 0xDC00],
            &[0xDC00, 0xD800],         // reversed pair: two lone surrogates
            &[0xD83D, 0xD83D, 0xDE00], // a lone high surrogate, then a pair
            &[0x61, 0xFFFD],
        ];
        let mut seen = std::collections::HashSet::new();
        for units in cases {
            let (bytes, well_formed) = wtf8(units);
            assert_eq!(well_formed, units == [0x61, 0xFFFD], "{units:x?}");
            assert_eq!(decode_to_utf16(&bytes), units, "{units:x?}");
            assert!(seen.insert(bytes), "{units:x?} shares its bytes");
        }
        assert_eq!(wtf8(&[0x61, 0xD800]).0, [0x61, 0xED, 0xA0, 0x80]);
    }

    #[test]
    fn the_scan_flags_replacement_characters_only() {
        assert!(!may_hide_lone_surrogates(b"plain key"));
        assert!(!may_hide_lone_surrogates("ключ é".as_bytes()));
        assert!(!may_hide_lone_surrogates(&[0xEF, 0xBF]));
        assert!(may_hide_lone_surrogates("a\u{FFFD}b".as_bytes()));
    }

    #[test]
    fn bytes_no_encoder_writes_decode_as_replacement_characters() {
        assert_eq!(decode_to_utf16(&[0x61, 0xFF, 0x62]), [0x61, 0xFFFD, 0x62]);
        assert_eq!(decode_to_utf16(&[0xE2, 0x82]), [0xFFFD, 0xFFFD]);
        // an overlong encoding of '/'
        assert_eq!(decode_to_utf16(&[0xC0, 0xAF]), [0xFFFD, 0xFFFD]);
        assert_eq!(
            decode_to_utf16(&[0xE0, 0x80, 0xAF]),
            [0xFFFD, 0xFFFD, 0xFFFD]
        );
    }
}
