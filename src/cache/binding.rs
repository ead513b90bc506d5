//! The JS class `PersistentCache` (the native half; `lib/cache.js` adds the value encoding,
//! `getOrSet` with single flight and stale-while-revalidate, the JS-side hot objects, and the
//! error classes).
//!
//! Options are read and validated here into [`CacheOptions`], naming the option in every error.
//! The hot calls (`get`, the stale read behind `getOrSet`, `set`, `has`, `delete`) are plain
//! functions bound to the cache's state (see `common::binding::raw`), made once per cache by
//! `_fastPath()`. Each converts the key string once (into a buffer kept between calls) and at
//! most one value; every number (the value's kind, a TTL, the entry's version, how stale it
//! is) goes through a shared `Float64Array`, [`Io`]. A value crosses as a JS string (strings and
//! JSON text, made from the stored UTF-8), a Buffer or a Uint8Array, each built natively. A
//! `get` told the version of the decoded copy JS holds answers `true` while the entry is that
//! version, converting nothing. `flush` waits on the libuv pool (`AsyncTask`); the disk writer
//! is a plain Rust thread, which does not hold the event loop, and dropping the cache (when JS
//! collects it, or when the environment is torn down at exit) drains and stops it.

use std::cell::{RefCell, UnsafeCell};
use std::ffi::c_char;
use std::ptr;
use std::rc::Rc;

use napi::bindgen_prelude::*;
use napi::{sys, Env, JsValue, Unknown, ValueType};
use napi_derive::napi;

use super::codec::{Compression, ValueKind};
use super::disk::FlushTicket;
use super::error::CacheError;
use super::key::MAX_KEY_BYTES;
use super::persistent_cache::{Cache, CacheOptions, CacheStats, SetOptions, MAX_KEEP_STALE_MS};
use crate::common::binding::{
    describe_value, raw, read_clock, read_string, throw_invalid, value_type, Mailbox, OptionsReader,
};
use crate::common::error::{integer_at_least, InvalidInput};
use crate::common::wtf8;

const CACHE_OPTIONS: &[&str] = &[
    "maxEntries",
    "maxBytes",
    "ttlMs",
    "compression",
    "compressMinBytes",
    "dir",
    "diskMaxBytes",
    "hotObjects",
    "serveStaleOnError",
    "clock",
];

/// Slots of the shared `Float64Array` (`lib/cache.js` names them the same).
mod io {
    /// In (`get`): the version of the decoded copy JS holds, 0 for none.
    pub const KNOWN_VERSION: usize = 0;
    /// Out (`get`): the value's kind; in (`set`): the kind of the value given.
    pub const KIND: usize = 1;
    /// Out (`get`): the entry's version.
    pub const VERSION: usize = 2;
    /// Out (stale `get`): milliseconds since the entry expired, -1 when live.
    pub const STALE_FOR: usize = 3;
    /// Out (`get`): the key's estimated recent occurrences (0..=16).
    pub const FREQUENCY: usize = 4;
    /// In (`set`): the TTL in ms, -1 for the cache's default.
    pub const TTL: usize = 5;
    /// In (`set`): ms the memory tier keeps the entry past its expiry for stale reads.
    pub const KEEP_STALE: usize = 6;
    /// Length of the array.
    pub const LEN: usize = 8;
}

/// Strings longer than this are not kept in the conversion buffers between calls.
const KEEP_BUFFER_BYTES: usize = 1 << 20;

/// What the class and its fast-path functions share.
struct Shared {
    cache: RefCell<Cache>,
    io: UnsafeCell<[f64; io::LEN]>,
    /// The key of the current call, as UTF-8.
    key: RefCell<Vec<u8>>,
    /// The string value of the current `set`, as UTF-8.
    value: RefCell<Vec<u8>>,
}

/// The two ways a call fails: bad input (a `TypeError`/`RangeError`) or a cache error.
enum Failure {
    Invalid(InvalidInput),
    Cache(CacheError),
}

impl From<InvalidInput> for Failure {
    fn from(invalid: InvalidInput) -> Self {
        Failure::Invalid(invalid)
    }
}

impl From<CacheError> for Failure {
    fn from(err: CacheError) -> Self {
        match err {
            CacheError::Invalid(invalid) => Failure::Invalid(invalid),
            other => Failure::Cache(other),
        }
    }
}

/// Throws a cache error as a JS `Error` with its `code` (bad input as `TypeError` or
/// `RangeError`); returns the pending-exception marker.
fn throw_cache(env: sys::napi_env, failure: Failure) -> napi::Error {
    match failure {
        Failure::Invalid(invalid) => throw_invalid(env, invalid),
        Failure::Cache(err) => {
            let message = err.to_string();
            let c_message =
                std::ffi::CString::new(message.replace('\0', "\\0")).unwrap_or_default();
            let c_code = std::ffi::CString::new(err.code()).unwrap_or_default();
            unsafe { sys::napi_throw_error(env, c_code.as_ptr(), c_message.as_ptr()) };
            napi::Error::new(Status::PendingException, message)
        }
    }
}

/// Reads a JS string as UTF-8 into `buf` (replacing its contents) with one N-API call when it
/// fits the buffer's capacity. `None` when the value is not a string; `Err(len)` when its UTF-8
/// length exceeds `limit` (nothing more is read).
///
/// # Safety
/// `env` and `value` must be live handles of the current call.
unsafe fn read_utf8_into(
    env: sys::napi_env,
    value: sys::napi_value,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Option<std::result::Result<(), usize>> {
    buf.clear();
    if buf.capacity() < 256 {
        buf.reserve(256);
    }
    let mut written = 0;
    let status = unsafe {
        sys::napi_get_value_string_utf8(
            env,
            value,
            buf.as_mut_ptr().cast::<c_char>(),
            buf.capacity(),
            &mut written,
        )
    };
    if status != sys::Status::napi_ok {
        return None;
    }
    // N-API leaves room for a NUL and never splits a character, so only a buffer filled to
    // within four bytes may have cut the string
    if written + 4 >= buf.capacity() {
        let mut full = 0;
        unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut full) };
        if full > limit {
            return Some(Err(full));
        }
        if full > written {
            buf.reserve(full + 1);
            unsafe {
                sys::napi_get_value_string_utf8(
                    env,
                    value,
                    buf.as_mut_ptr().cast::<c_char>(),
                    full + 1,
                    &mut written,
                )
            };
        }
    }
    if written > limit {
        return Some(Err(written));
    }
    // SAFETY: N-API wrote `written` bytes
    unsafe { buf.set_len(written) };
    Some(Ok(()))
}

/// Reads and checks a key: a non-empty string of at most 64 KiB of UTF-8.
unsafe fn read_key(
    env: sys::napi_env,
    value: sys::napi_value,
    buf: &mut Vec<u8>,
    name: &str,
) -> std::result::Result<(), InvalidInput> {
    match unsafe { read_utf8_into(env, value, buf, MAX_KEY_BYTES) } {
        None => Err(InvalidInput::argument_type(format!(
            "{name} must be a string, received {}",
            describe_value(env, value)
        ))),
        Some(Err(len)) => Err(InvalidInput::argument_range(format!(
            "{name} must be at most {MAX_KEY_BYTES} bytes, received {len} bytes"
        ))),
        Some(Ok(())) if buf.is_empty() => Err(InvalidInput::argument_range(format!(
            "{name} must be a non-empty string, received an empty string"
        ))),
        Some(Ok(())) => {
            // a key with a lone surrogate gets bytes of its own (WTF-8, as long as its UTF-8)
            unsafe { wtf8::keep_lone_surrogates(env, value, buf) };
            Ok(())
        }
    }
}

/// A string argument (a tag, a key prefix, a key for the Redis tier) as the bytes keys and tags
/// are stored as (WTF-8, see `common::wtf8`); `None` when it is not a string.
fn read_wtf8(env: sys::napi_env, value: sys::napi_value) -> Option<Vec<u8>> {
    let mut bytes = read_string(env, value)?.into_bytes();
    unsafe { wtf8::keep_lone_surrogates(env, value, &mut bytes) };
    Some(bytes)
}

/// [`read_wtf8`] of argument `name`, or a thrown `TypeError` naming it.
fn read_wtf8_arg(env: &Env, value: &Unknown, name: &str) -> Result<Vec<u8>> {
    read_wtf8(env.raw(), value.raw()).ok_or_else(|| {
        throw_invalid(
            env.raw(),
            InvalidInput::argument_type(format!(
                "{name} must be a string, received {}",
                describe_value(env.raw(), value.raw())
            )),
        )
    })
}

/// The bytes of a Uint8Array (or Buffer) argument; `None` for anything else.
unsafe fn typed_bytes<'a>(env: sys::napi_env, value: sys::napi_value) -> Option<&'a [u8]> {
    let mut kind = 0;
    let mut length = 0;
    let mut data = ptr::null_mut();
    let mut buffer = ptr::null_mut();
    let mut offset = 0;
    let status = unsafe {
        sys::napi_get_typedarray_info(
            env,
            value,
            &mut kind,
            &mut length,
            &mut data,
            &mut buffer,
            &mut offset,
        )
    };
    if status != sys::Status::napi_ok || kind != sys::TypedarrayType::uint8_array {
        return None;
    }
    if length == 0 || data.is_null() {
        return Some(&[]);
    }
    // SAFETY: N-API gives the view's data (already past its offset) and length; nothing runs
    // JS (which could detach the buffer) before the bytes are copied
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), length) })
}

fn undefined(env: sys::napi_env) -> sys::napi_value {
    let mut result = ptr::null_mut();
    unsafe { sys::napi_get_undefined(env, &mut result) };
    result
}

/// Whether every byte is below 0x80, eight bytes at a time. The standard library's check
/// scans what is left after its 64-byte blocks one byte at a time, which was most of the check
/// for a 100-byte value; here the last word overlaps the one before it instead.
#[inline]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let word = |chunk: &[u8]| u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
    if bytes.len() < 8 {
        return bytes.iter().all(|&b| b < 0x80);
    }
    let mut seen = word(&bytes[bytes.len() - 8..]);
    for chunk in bytes.chunks_exact(8) {
        seen |= word(chunk);
    }
    seen & HIGH_BITS == 0
}

/// A stored value as the JS type it was given as.
unsafe fn to_js(env: sys::napi_env, kind: ValueKind, bytes: &[u8]) -> sys::napi_value {
    let mut result = ptr::null_mut();
    match kind {
        // ASCII (all of most JSON, many strings) is also Latin-1, which V8 copies into a
        // one-byte string as it is, where UTF-8 must be decoded byte by byte
        ValueKind::String | ValueKind::Json if is_ascii(bytes) => unsafe {
            sys::napi_create_string_latin1(
                env,
                bytes.as_ptr().cast::<c_char>(),
                bytes.len() as isize,
                &mut result,
            );
        },
        ValueKind::String | ValueKind::Json => unsafe {
            sys::napi_create_string_utf8(
                env,
                bytes.as_ptr().cast::<c_char>(),
                bytes.len() as isize,
                &mut result,
            );
        },
        ValueKind::IllFormedString => result = unsafe { wtf8::create_string(env, bytes) },
        ValueKind::Bytes => unsafe {
            let mut data = ptr::null_mut();
            sys::napi_create_buffer_copy(
                env,
                bytes.len(),
                bytes.as_ptr().cast(),
                &mut data,
                &mut result,
            );
        },
        ValueKind::Uint8Array => unsafe {
            let mut data = ptr::null_mut();
            let mut buffer = ptr::null_mut();
            sys::napi_create_arraybuffer(env, bytes.len(), &mut data, &mut buffer);
            if !bytes.is_empty() {
                ptr::copy_nonoverlapping(bytes.as_ptr(), data.cast::<u8>(), bytes.len());
            }
            sys::napi_create_typedarray(
                env,
                sys::TypedarrayType::uint8_array,
                bytes.len(),
                buffer,
                0,
                &mut result,
            );
        },
    }
    result
}

/// Runs `f` for a fast-path call on the cache with the key (the first argument) read,
/// turning failures into JS exceptions.
#[inline]
unsafe fn with_cache<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    f: impl FnOnce(
        &Shared,
        &[sys::napi_value; N],
        usize,
        &mut Cache,
        &[u8],
    ) -> std::result::Result<sys::napi_value, Failure>,
) -> sys::napi_value {
    let (args, argc, shared) = unsafe { raw::args::<Shared, N>(env, info) };
    let (Ok(mut key), Ok(mut cache)) = (shared.key.try_borrow_mut(), shared.cache.try_borrow_mut())
    else {
        throw_cache(
            env,
            Failure::Invalid(InvalidInput::argument_type(
                "the cache was called re-entrantly",
            )),
        );
        return ptr::null_mut();
    };
    let outcome = match unsafe { read_key(env, args[0], &mut key, "key") } {
        Ok(()) => f(shared, &args, argc, &mut cache, &key),
        Err(e) => Err(e.into()),
    };
    if key.capacity() > KEEP_BUFFER_BYTES {
        *key = Vec::new();
    }
    match outcome {
        Ok(value) => value,
        Err(failure) => {
            throw_cache(env, failure);
            ptr::null_mut()
        }
    }
}

/// A lookup: the value, `true` when the caller's copy (`io[KNOWN_VERSION]`) is current, or
/// `undefined`; kind, version, staleness and frequency go to the shared array.
#[inline]
unsafe fn lookup(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    allow_stale: bool,
) -> sys::napi_value {
    unsafe {
        with_cache::<1>(env, info, |shared, _, _, cache, key| {
            let io = &mut *shared.io.get();
            let known = io[io::KNOWN_VERSION];
            let known = if known >= 1.0 { known as u64 } else { 0 };
            let Some(found) = cache.lookup(key, known, allow_stale)? else {
                return Ok(undefined(env));
            };
            io[io::KIND] = found.kind as u8 as f64;
            io[io::VERSION] = found.version as f64;
            io[io::STALE_FOR] = found.stale_for_ms.map_or(-1.0, |ms| ms as f64);
            io[io::FREQUENCY] = found.frequency as f64;
            Ok(match &found.bytes {
                None => raw::boolean(env, true),
                Some(bytes) => to_js(env, found.kind, bytes),
            })
        })
    }
}

/// `get(key)`: a live value only.
unsafe extern "C" fn get(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe { lookup(env, info, false) }
}

/// `getStale(key)`: like `get`, also finding an entry kept past its expiry for stale reads.
unsafe extern "C" fn get_stale(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    unsafe { lookup(env, info, true) }
}

fn read_tags(
    env: sys::napi_env,
    value: sys::napi_value,
) -> std::result::Result<Vec<Vec<u8>>, InvalidInput> {
    let mut is_array = false;
    unsafe { sys::napi_is_array(env, value, &mut is_array) };
    if !is_array {
        return Err(InvalidInput::argument_type(format!(
            "options.tags must be an array of strings, received {}",
            describe_value(env, value)
        )));
    }
    let mut len = 0;
    unsafe { sys::napi_get_array_length(env, value, &mut len) };
    (0..len)
        .map(|i| {
            let mut item = ptr::null_mut();
            unsafe { sys::napi_get_element(env, value, i, &mut item) };
            read_wtf8(env, item).ok_or_else(|| {
                InvalidInput::argument_type(format!(
                    "options.tags[{i}] must be a string, received {}",
                    describe_value(env, item)
                ))
            })
        })
        .collect()
}

/// `set(key, value, tags?)`: kind, TTL and stale window come from the shared array.
unsafe extern "C" fn set(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe {
        with_cache::<3>(env, info, |shared, args, argc, cache, key| {
            let io = &*shared.io.get();
            let kind = ValueKind::from_byte(io[io::KIND] as u8).unwrap_or(ValueKind::Json);
            let ttl = io[io::TTL];
            let ttl_ms = if ttl == -1.0 {
                None
            } else if ttl.is_finite() && ttl >= 1.0 && ttl.fract() == 0.0 && ttl <= 2f64.powi(52) {
                Some(ttl as u64)
            } else {
                return Err(InvalidInput::argument_range(format!(
                    "options.ttlMs must be an integer >= 1, received {}",
                    crate::common::error::describe_number(ttl)
                ))
                .into());
            };
            let keep = io[io::KEEP_STALE];
            let keep_stale_ms = if keep.is_finite() && keep >= 0.0 {
                (keep as u64).min(MAX_KEEP_STALE_MS)
            } else {
                0
            };
            let tags = if argc >= 3 && value_type(env, args[2]) != ValueType::Undefined {
                read_tags(env, args[2])?
            } else {
                Vec::new()
            };
            let options = SetOptions {
                ttl_ms,
                tags,
                keep_stale_ms,
            };
            match kind {
                ValueKind::String | ValueKind::Json | ValueKind::IllFormedString => {
                    let mut buf = shared.value.borrow_mut();
                    let read = read_utf8_into(env, args[1], &mut buf, usize::MAX);
                    // JSON text is always well-formed (JSON.stringify escapes lone surrogates); a
                    // string with one is kept as WTF-8 under a kind of its own
                    let mut kind = if kind == ValueKind::IllFormedString {
                        ValueKind::String
                    } else {
                        kind
                    };
                    if read.is_some()
                        && kind == ValueKind::String
                        && wtf8::keep_lone_surrogates(env, args[1], &mut buf)
                    {
                        kind = ValueKind::IllFormedString;
                    }
                    let outcome = match read {
                        Some(_) => cache.set(key, kind, &buf, &options).map_err(Failure::from),
                        None => Err(InvalidInput::argument_type(format!(
                            "value must be a string here, received {}",
                            describe_value(env, args[1])
                        ))
                        .into()),
                    };
                    if buf.capacity() > KEEP_BUFFER_BYTES {
                        *buf = Vec::new();
                    }
                    outcome?;
                }
                ValueKind::Bytes | ValueKind::Uint8Array => {
                    let Some(bytes) = typed_bytes(env, args[1]) else {
                        return Err(InvalidInput::argument_type(format!(
                            "value must be a Buffer or Uint8Array here, received {}",
                            describe_value(env, args[1])
                        ))
                        .into());
                    };
                    cache.set(key, kind, bytes, &options)?;
                }
            }
            Ok(undefined(env))
        })
    }
}

/// `has(key)`: whether a live value is held (no recency or stats change).
unsafe extern "C" fn has(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe {
        with_cache::<1>(env, info, |_, _, _, cache, key| {
            Ok(raw::boolean(env, cache.has(key)?))
        })
    }
}

/// `delete(key)`: whether an entry was removed.
unsafe extern "C" fn delete(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    unsafe {
        with_cache::<1>(env, info, |_, _, _, cache, key| {
            Ok(raw::boolean(env, cache.delete(key)?))
        })
    }
}

fn read_bool(
    env: sys::napi_env,
    reader: &OptionsReader,
    name: &str,
) -> std::result::Result<bool, InvalidInput> {
    let value = reader.raw(name);
    match value_type(env, value) {
        ValueType::Undefined => Ok(false),
        ValueType::Boolean => {
            let mut b = false;
            unsafe { sys::napi_get_value_bool(env, value, &mut b) };
            Ok(b)
        }
        _ => Err(InvalidInput::option_type(format!(
            "{} must be a boolean, received {}",
            reader.path_of(name),
            describe_value(env, value)
        ))),
    }
}

/// The options the JS side uses (validated here with the rest).
struct JsSide {
    hot_objects: u32,
    serve_stale_on_error: bool,
}

fn read_options(
    env: Env,
    options: Unknown,
) -> std::result::Result<(CacheOptions, crate::common::Clock, JsSide), InvalidInput> {
    let Some(reader) = OptionsReader::open(env.raw(), options.raw(), "options", CACHE_OPTIONS)?
    else {
        return Err(InvalidInput::option_type(
            "options is required: an object with maxEntries or maxBytes, received undefined",
        ));
    };
    let integer = |name: &str, min: u64| -> std::result::Result<Option<u64>, InvalidInput> {
        reader
            .number(name)?
            .map(|n| integer_at_least(&reader.path_of(name), n, min))
            .transpose()
    };
    let mut config = CacheOptions {
        max_entries: integer("maxEntries", 1)?,
        max_bytes: integer("maxBytes", 1)?,
        ttl_ms: integer("ttlMs", 1)?,
        ..CacheOptions::default()
    };
    if config.max_entries.is_none() && config.max_bytes.is_none() {
        return Err(InvalidInput::option_type(
            "options.maxEntries or options.maxBytes is required: the memory tier needs a bound",
        ));
    }
    if let Some(name) = reader.string("compression")? {
        config.compression = Compression::parse(&name)
            .map_err(|e| InvalidInput::option_range(format!("options.{}", e.message)))?;
    }
    if let Some(n) = integer("compressMinBytes", 0)? {
        config.compress_min_bytes = n;
    }
    if let Some(dir) = reader.string("dir")? {
        if dir.is_empty() {
            return Err(InvalidInput::option_range(
                "options.dir must be a non-empty path, received an empty string",
            ));
        }
        config.dir = Some(dir.into());
    }
    config.disk_max_bytes = integer("diskMaxBytes", 1)?;
    if config.disk_max_bytes.is_some() && config.dir.is_none() {
        return Err(InvalidInput::option_type(
            "options.diskMaxBytes needs options.dir: there is no disk tier without a directory",
        ));
    }
    let hot_objects = integer("hotObjects", 0)?.unwrap_or(0);
    if hot_objects > u32::MAX as u64 {
        return Err(InvalidInput::option_range(format!(
            "options.hotObjects must be an integer from 0 to {}, received {hot_objects}",
            u32::MAX
        )));
    }
    let serve_stale_on_error = read_bool(env.raw(), &reader, "serveStaleOnError")?;
    let clock = read_clock(&reader)?;
    config.validate().map_err(|mut e| {
        if !e.message.starts_with("options.") {
            e.message = format!("options.{}", e.message);
        }
        e
    })?;
    Ok((
        config,
        clock,
        JsSide {
            hot_objects: hot_objects as u32,
            serve_stale_on_error,
        },
    ))
}

/// Stats of the memory tier.
#[napi(object)]
pub struct CacheMemoryStats {
    /// Entries held.
    pub entries: f64,
    /// Weight held (stored bytes, key and tags, plus a fixed overhead per entry).
    pub bytes: f64,
    /// Lookups served from memory.
    pub hits: f64,
    /// Entries evicted from memory (they may still be on disk).
    pub evictions: f64,
}

/// Stats of the disk tier (all zero without `dir`).
#[napi(object)]
pub struct CacheDiskStats {
    /// Entries on disk or queued for it.
    pub entries: f64,
    /// Bytes of their records.
    pub bytes: f64,
    /// Lookups served from disk.
    pub hits: f64,
    /// Read transactions run for lookups that missed memory.
    pub reads: f64,
    /// Entries written durably.
    pub writes: f64,
    /// Disk failures since open; the cache kept serving from memory.
    pub errors: f64,
    /// Entries evicted to stay within `diskMaxBytes`.
    pub evictions: f64,
    /// Entries not written because alone they exceed `diskMaxBytes`.
    pub oversized: f64,
    /// Writes not queued because the disk writer was too far behind or the tier was resetting
    /// after a disk error (those entries live in memory only).
    pub skipped: f64,
    /// Times the disk tier was emptied and made anew because its file was found damaged (at
    /// open or by a lookup) or a write to it failed.
    pub resets: f64,
}

/// Raw versus stored payload bytes.
#[napi(object)]
pub struct CacheCompressionStats {
    /// Payload bytes given to `set`.
    pub raw_bytes: f64,
    /// Payload bytes stored after compression.
    pub stored_bytes: f64,
}

/// The native counts behind `stats()` (the facade adds the rates and the loads).
#[napi(object)]
pub struct CacheNativeStats {
    pub hits: f64,
    pub misses: f64,
    pub sets: f64,
    pub deletes: f64,
    pub evictions: f64,
    pub expirations: f64,
    pub entries: f64,
    pub bytes: f64,
    /// Entries too large for the memory tier.
    pub oversized: f64,
    pub memory: CacheMemoryStats,
    pub disk: CacheDiskStats,
    pub compression: CacheCompressionStats,
}

impl From<CacheStats> for CacheNativeStats {
    fn from(s: CacheStats) -> Self {
        CacheNativeStats {
            hits: s.hits as f64,
            misses: s.misses as f64,
            sets: s.sets as f64,
            deletes: s.deletes as f64,
            evictions: s.evictions as f64,
            expirations: s.expirations as f64,
            entries: s.entries as f64,
            bytes: s.bytes as f64,
            oversized: s.oversized as f64,
            memory: CacheMemoryStats {
                entries: s.memory.entries as f64,
                bytes: s.memory.bytes as f64,
                hits: s.memory.hits as f64,
                evictions: s.memory.evictions as f64,
            },
            disk: CacheDiskStats {
                entries: s.disk.entries as f64,
                bytes: s.disk.bytes as f64,
                hits: s.disk.hits as f64,
                reads: s.disk.reads as f64,
                writes: s.disk.writes as f64,
                errors: s.disk.errors as f64,
                evictions: s.disk.evictions as f64,
                oversized: s.disk.oversized as f64,
                skipped: s.disk.skipped as f64,
                resets: s.disk.resets as f64,
            },
            compression: CacheCompressionStats {
                raw_bytes: s.compression.raw_bytes as f64,
                stored_bytes: s.compression.stored_bytes as f64,
            },
        }
    }
}

/// Waits off the JS thread until the writes before a flush are durable; resolves with `null`,
/// or with the failure's message (the facade rejects with `ERR_CACHE_DISK`).
pub struct FlushWait {
    ticket: Option<FlushTicket>,
}

impl Task for FlushWait {
    type Output = Option<String>;
    type JsValue = Option<String>;

    fn compute(&mut self) -> Result<Option<String>> {
        Ok(match self.ticket.take() {
            Some(ticket) => ticket.wait().err().map(|e| e.to_string()),
            None => None,
        })
    }

    fn resolve(&mut self, _env: Env, output: Option<String>) -> Result<Option<String>> {
        Ok(output)
    }
}

/// A two-tier cache: memory (W-TinyLFU) over an optional persistent disk tier (the native
/// class; see `index.d.ts`).
#[napi(js_name = "PersistentCache")]
pub struct PersistentCacheBinding {
    shared: Rc<Shared>,
    js_side: JsSide,
}

impl PersistentCacheBinding {
    fn with<R>(
        &self,
        env: &Env,
        f: impl FnOnce(&mut Cache) -> std::result::Result<R, CacheError>,
    ) -> Result<R> {
        let mut cache = self.shared.cache.try_borrow_mut().map_err(|_| {
            throw_cache(
                env.raw(),
                Failure::Invalid(InvalidInput::argument_type(
                    "the cache was called re-entrantly",
                )),
            )
        })?;
        f(&mut cache).map_err(|e| throw_cache(env.raw(), e.into()))
    }
}

#[napi]
impl PersistentCacheBinding {
    /// Opens a cache; every option is validated and unknown options are refused.
    #[napi(constructor, ts_args_type = "options: PersistentCacheOptions")]
    pub fn new(env: Env, options: Unknown) -> Result<Self> {
        let (config, clock, js_side) =
            read_options(env, options).map_err(|e| throw_invalid(env.raw(), e))?;
        let cache = Cache::open(config, clock).map_err(|e| throw_cache(env.raw(), e.into()))?;
        Ok(PersistentCacheBinding {
            shared: Rc::new(Shared {
                cache: RefCell::new(cache),
                io: UnsafeCell::new([0.0; io::LEN]),
                key: RefCell::new(Vec::new()),
                value: RefCell::new(Vec::new()),
            }),
            js_side,
        })
    }

    /// Internal (used by the facade's constructor): the hot-path functions bound to this cache
    /// and the shared array they exchange numbers through (slots in `lib/cache.js`), the
    /// options the facade applies, and why the disk tier's file was replaced at open (or null).
    #[napi(
        js_name = "_fastPath",
        ts_return_type = "{ get(key: string): string | Buffer | Uint8Array | true | undefined; getStale(key: string): string | Buffer | Uint8Array | true | undefined; set(key: string, value: string | Uint8Array, tags?: string[]): void; has(key: string): boolean; delete(key: string): boolean; io: Float64Array; hotObjects: number; serveStaleOnError: boolean; diskDamageAtOpen: string | null }"
    )]
    pub fn fast_path<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let io = self.shared.io.get() as *mut f64;
        // SAFETY: the callbacks read their data as `Rc<Shared>`; `io` is owned by it.
        let mut object = unsafe {
            raw::fast_path_object(
                env,
                &self.shared,
                &[
                    ("get", get),
                    ("getStale", get_stale),
                    ("set", set),
                    ("has", has),
                    ("delete", delete),
                ],
                ("io", io, io::LEN),
            )?
        };
        object.set("hotObjects", self.js_side.hot_objects)?;
        object.set("serveStaleOnError", self.js_side.serve_stale_on_error)?;
        let damage = self
            .shared
            .cache
            .borrow()
            .disk_damage_at_open()
            .map(str::to_owned);
        object.set("diskDamageAtOpen", damage)?;
        Ok(object)
    }

    /// Removes every entry from both tiers; returns how many there were.
    #[napi]
    pub fn clear(&self, env: Env) -> Result<f64> {
        self.with(&env, |c| c.clear().map(|n| n as f64))
    }

    /// Removes every entry tagged `tag` from both tiers; returns how many.
    #[napi(ts_args_type = "tag: string")]
    pub fn invalidate_tag(&self, env: Env, tag: Unknown) -> Result<f64> {
        let tag = read_wtf8_arg(&env, &tag, "tag")?;
        self.with(&env, |c| c.invalidate_tag(&tag).map(|n| n as f64))
    }

    /// Removes every entry whose key starts with `prefix` from both tiers; returns how many.
    #[napi(ts_args_type = "prefix: string")]
    pub fn invalidate_prefix(&self, env: Env, prefix: Unknown) -> Result<f64> {
        let prefix = read_wtf8_arg(&env, &prefix, "prefix")?;
        self.with(&env, |c| c.invalidate_prefix(&prefix).map(|n| n as f64))
    }

    /// Entries held (on disk when there is a disk tier, else in memory).
    #[napi(getter)]
    pub fn size(&self) -> f64 {
        self.shared.cache.borrow().len() as f64
    }

    /// Internal (used by `stats()`): the native counts.
    #[napi(js_name = "_stats")]
    pub fn native_stats(&self) -> CacheNativeStats {
        self.shared.cache.borrow().stats().into()
    }

    /// Internal (used by `flush()` and `close()`): resolves when every write before it is
    /// durable, with `null`, or with why it is not. The wait happens off the JS thread.
    #[napi(js_name = "_flush", ts_return_type = "Promise<string | null>")]
    pub fn flush(&self, env: Env) -> Result<AsyncTask<FlushWait>> {
        let ticket = self.with(&env, |c| c.flush())?;
        Ok(AsyncTask::new(FlushWait {
            ticket: Some(ticket),
        }))
    }

    /// Internal (used by `close()` after a flush): stops the disk writer (its queue is then
    /// empty or nearly so) and refuses every later call.
    #[napi(js_name = "_close")]
    pub fn close(&self) {
        self.shared.cache.borrow_mut().close();
    }
}

// ---- the Redis tier and invalidation bus -----------------------------------------------------

use std::sync::Arc;
use std::time::Duration;

use super::redis_tier::{Command, Event, InvalidateOp, RedisTier, TierSettings};
use crate::common::redis::{check_url, RedisSettings};

const REDIS_TIER_OPTIONS: &[&str] = &[
    "url",
    "keyPrefix",
    "channel",
    "connectTimeoutMs",
    "commandTimeoutMs",
    "retryMs",
];

/// Internal (the cache's Redis tier): the string whose WTF-8 is `bytes` (keys, tags and values
/// with a lone surrogate come back from Redis so).
#[napi(js_name = "_decodeWtf8", ts_return_type = "string")]
pub fn decode_wtf8<'env>(env: &'env Env, bytes: Uint8Array) -> Unknown<'env> {
    // SAFETY: a string made in this call's environment
    unsafe { Unknown::from_raw_unchecked(env.raw(), wtf8::create_string(env.raw(), &bytes)) }
}

/// An invalidation from another instance (`invalidated`, with `op` and `arg`) or a flush of the
/// local tiers (`flush`, with the reason in `arg`).
#[napi(object)]
pub struct CacheTierEvent {
    /// `invalidated` or `flush`.
    pub kind: String,
    /// `delete`, `tag`, `prefix` or `clear` (`invalidated`).
    pub op: Option<String>,
    /// The key, tag or prefix as WTF-8 (`invalidated`; `_decodeWtf8` makes it a string); the
    /// reason (`flush`).
    pub arg: Option<Buffer>,
}

/// What `_take` hands over: lookups packed in `got` (id, ttlMs or -1, start and end in `data`
/// or -1 for a miss; a value is its kind byte, tags and payload, see `redis_tier`), then the
/// other events.
#[napi(object)]
pub struct TierTake {
    /// Four numbers per lookup answered.
    pub got: Float64Array,
    /// The values found, end to end.
    pub data: Buffer,
    /// Invalidations and flushes, in order.
    pub events: Vec<CacheTierEvent>,
}

/// Counters of the Redis tier.
#[napi(object)]
pub struct CacheRedisStats {
    /// Pipelines sent.
    pub round_trips: f64,
    /// Lookups that found a value in Redis.
    pub hits: f64,
    /// Lookups that found nothing (or failed).
    pub misses: f64,
    /// Values written through.
    pub sets: f64,
    /// Invalidations published.
    pub published: f64,
    /// Invalidations received from other instances.
    pub received: f64,
    /// Times the local tiers were dropped because messages may have been missed.
    pub flushes: f64,
    /// Pipelines (or removals) that failed.
    pub errors: f64,
    /// Whether the subscription is up.
    pub subscribed: bool,
}

/// Internal: the Redis tier of a `PersistentCache` (created by the facade for `redis`).
#[napi(js_name = "CacheRedisTier")]
pub struct CacheRedisTierBinding {
    tier: RefCell<Option<RedisTier>>,
    settings: TierSettings,
    mailbox: Arc<Mailbox<Event>>,
    pending: RefCell<Vec<Command>>,
    next_id: std::cell::Cell<u64>,
    lookups_out: std::cell::Cell<u64>,
    referenced: std::cell::Cell<bool>,
}

fn tier_millis(
    reader: &OptionsReader,
    name: &str,
    default: u64,
) -> std::result::Result<Duration, InvalidInput> {
    match reader.number(name)? {
        None => Ok(Duration::from_millis(default)),
        Some(ms) if (1.0..=3_600_000.0).contains(&ms) => Ok(Duration::from_millis(ms as u64)),
        Some(ms) => Err(InvalidInput::option_range(format!(
            "{} must be a number of milliseconds from 1 to 3600000, received {}",
            reader.path_of(name),
            crate::common::error::describe_number(ms)
        ))),
    }
}

fn read_tier(
    env: sys::napi_env,
    options: sys::napi_value,
) -> std::result::Result<TierSettings, InvalidInput> {
    let reader = OptionsReader::open(env, options, "options.redis", REDIS_TIER_OPTIONS)?
        .ok_or_else(|| {
            InvalidInput::option_type("options.redis must be an object, received undefined")
        })?;
    let url = reader
        .string("url")?
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
    check_url(&url).map_err(|e| {
        InvalidInput::option_range(format!(
            "options.redis.url must be a Redis URL (redis://host:port), received string \"{url}\": {e}"
        ))
    })?;
    let prefix = reader
        .string("keyPrefix")?
        .unwrap_or_else(|| "bulwark:cache:".to_string());
    let channel = reader
        .string("channel")?
        .unwrap_or_else(|| format!("{prefix}invalidate"));
    if channel.is_empty() {
        return Err(InvalidInput::option_range(
            "options.redis.channel must be a non-empty string, received an empty string",
        ));
    }
    let mut redis = RedisSettings::new(url);
    redis.connect_timeout = tier_millis(&reader, "connectTimeoutMs", 500)?;
    redis.command_timeout = tier_millis(&reader, "commandTimeoutMs", 1_000)?;
    redis.retry = tier_millis(&reader, "retryMs", 1_000)?;
    Ok(TierSettings {
        redis,
        prefix,
        channel,
    })
}

#[napi]
impl CacheRedisTierBinding {
    /// Validates the `redis` options of a PersistentCache; connects on first use.
    #[napi(constructor, ts_args_type = "options: object")]
    pub fn new(env: Env, options: Unknown) -> Result<Self> {
        let settings =
            read_tier(env.raw(), options.raw()).map_err(|e| throw_invalid(env.raw(), e))?;
        Ok(CacheRedisTierBinding {
            tier: RefCell::new(None),
            settings,
            mailbox: Arc::new(Mailbox::default()),
            pending: RefCell::new(Vec::new()),
            next_id: std::cell::Cell::new(1),
            lookups_out: std::cell::Cell::new(0),
            referenced: std::cell::Cell::new(false),
        })
    }

    /// Starts the threads (subscribing at once); `wake(id)` is called when events are ready.
    #[napi(
        js_name = "_start",
        ts_args_type = "wake: (id: number) => void, id: number"
    )]
    pub fn start(&self, env: Env, wake: Function<u32, ()>, id: u32) -> Result<()> {
        if self.tier.borrow().is_some() {
            return Ok(());
        }
        self.mailbox.attach(wake, id)?;
        let mailbox = self.mailbox.clone();
        let tier = RedisTier::start(self.settings.clone(), Arc::new(move |e| mailbox.post(e)))
            .map_err(|e| Error::from_reason(format!("cannot start the Redis threads: {e}")))?;
        let stop = tier.stop_flag();
        *self.tier.borrow_mut() = Some(tier);
        // a worker that exits stops the threads even if the cache was never closed
        let mailbox = self.mailbox.clone();
        env.add_env_cleanup_hook((mailbox, stop), |(mailbox, stop)| {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            mailbox.detach();
        })?;
        Ok(())
    }

    /// Queues a lookup of `key`; its id.
    #[napi(ts_args_type = "key: string")]
    pub fn get(&self, env: Env, key: Unknown) -> Result<f64> {
        let key = read_wtf8_arg(&env, &key, "key")?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.pending.borrow_mut().push(Command::Get { id, key });
        Ok(id as f64)
    }

    /// Queues a write-through: `kind` (the value's kind) and its payload.
    #[napi(
        ts_args_type = "key: string, kind: number, payload: string | Uint8Array, ttlMs?: number, tags?: string[]"
    )]
    pub fn set(
        &self,
        env: Env,
        key: Unknown,
        kind: u32,
        payload: Unknown,
        ttl_ms: Option<f64>,
        tags: Option<Unknown>,
    ) -> Result<()> {
        let key = read_wtf8_arg(&env, &key, "key")?;
        let mut kind = kind as u8;
        let bytes = if value_type(env.raw(), payload.raw()) == ValueType::String {
            let mut text = read_string(env.raw(), payload.raw())
                .unwrap_or_default()
                .into_bytes();
            // a string with a lone surrogate goes as WTF-8, under the kind the local tiers use
            if kind == ValueKind::String as u8
                && unsafe { wtf8::keep_lone_surrogates(env.raw(), payload.raw(), &mut text) }
            {
                kind = ValueKind::IllFormedString as u8;
            }
            text
        } else {
            unsafe { typed_bytes(env.raw(), payload.raw()) }
                .ok_or_else(|| {
                    throw_invalid(
                        env.raw(),
                        InvalidInput::argument_type("payload must be a string or a Uint8Array"),
                    )
                })?
                .to_vec()
        };
        let tags = match tags {
            Some(tags) if value_type(env.raw(), tags.raw()) != ValueType::Undefined => {
                read_tags(env.raw(), tags.raw()).map_err(|e| throw_invalid(env.raw(), e))?
            }
            _ => Vec::new(),
        };
        let joined = tags.join(&b'\0');
        let tags_len = joined.len().min(u16::MAX as usize);
        let mut value = Vec::with_capacity(bytes.len() + 3 + tags_len);
        value.push(kind);
        value.extend_from_slice(&(tags_len as u16).to_le_bytes());
        value.extend_from_slice(&joined[..tags_len]);
        value.extend_from_slice(&bytes);
        self.pending.borrow_mut().push(Command::Set {
            key,
            value,
            ttl_ms: ttl_ms.filter(|t| *t > 0.0).map(|t| t.ceil() as u64),
            tags,
        });
        Ok(())
    }

    /// Queues an invalidation (`delete`, `tag`, `prefix`, `clear`) for Redis and the others.
    #[napi(ts_args_type = "op: string, arg: string")]
    pub fn invalidate(&self, env: Env, op: String, arg: Unknown) -> Result<()> {
        let op = InvalidateOp::parse(&op)
            .ok_or_else(|| Error::from_reason(format!("unknown invalidation {op}")))?;
        let arg = read_wtf8_arg(&env, &arg, "arg")?;
        self.pending
            .borrow_mut()
            .push(Command::Invalidate { op, arg });
        Ok(())
    }

    /// Sends what was queued this tick as one batch.
    #[napi(js_name = "_flush")]
    pub fn flush(&self, env: Env) {
        let commands = std::mem::take(&mut *self.pending.borrow_mut());
        if commands.is_empty() {
            return;
        }
        let lookups = commands
            .iter()
            .filter(|c| matches!(c, Command::Get { .. }))
            .count() as u64;
        let refused = match self.tier.borrow().as_ref() {
            Some(tier) => tier.send(commands).err(),
            None => Some(commands),
        };
        if let Some(commands) = refused {
            // stopped: every lookup misses
            for command in commands {
                if let Command::Get { id, .. } = command {
                    self.mailbox.post(Event::Got { id, value: None });
                }
            }
        }
        if lookups > 0 {
            self.lookups_out.set(self.lookups_out.get() + lookups);
            self.reference(&env, true);
        }
    }

    fn reference(&self, env: &Env, on: bool) {
        if self.referenced.get() != on && self.mailbox.reference(env, on) {
            self.referenced.set(on);
        }
    }

    /// Every event ready: the lookups' answers packed (`got`: id, ttlMs or -1, and the value's
    /// start and end in `data`, -1 for a miss), then the invalidations and flushes in order.
    #[napi(js_name = "_take")]
    pub fn take(&self, env: Env) -> TierTake {
        let events = self.mailbox.take_all();
        let mut got = Vec::new();
        let mut data = Vec::new();
        let mut others = Vec::new();
        for event in events {
            match event {
                Event::Got { id, value } => {
                    self.lookups_out
                        .set(self.lookups_out.get().saturating_sub(1));
                    match value {
                        Some((bytes, ttl)) => {
                            let start = data.len();
                            data.extend_from_slice(&bytes);
                            got.extend_from_slice(&[
                                id as f64,
                                ttl.map_or(-1.0, |t| t as f64),
                                start as f64,
                                data.len() as f64,
                            ]);
                        }
                        None => got.extend_from_slice(&[id as f64, -1.0, -1.0, -1.0]),
                    }
                }
                Event::Invalidated { op, arg } => others.push(CacheTierEvent {
                    kind: "invalidated".into(),
                    op: Some(op.name().into()),
                    arg: Some(Buffer::from(arg)),
                }),
                Event::Flush { reason } => others.push(CacheTierEvent {
                    kind: "flush".into(),
                    op: None,
                    arg: Some(Buffer::from(reason.as_bytes())),
                }),
            }
        }
        if self.lookups_out.get() == 0 {
            self.reference(&env, false);
        }
        TierTake {
            got: Float64Array::new(got),
            data: Buffer::from(data),
            events: others,
        }
    }

    /// Stops both threads (what was queued is still sent).
    #[napi]
    pub fn close(&self, env: Env) {
        self.flush(env);
        if let Some(tier) = &mut *self.tier.borrow_mut() {
            tier.stop();
        }
        self.mailbox.detach();
    }

    /// The counters.
    #[napi]
    pub fn stats(&self) -> CacheRedisStats {
        use std::sync::atomic::Ordering::Relaxed;
        let tier = self.tier.borrow();
        let Some(c) = tier.as_ref().map(|t| t.counters()) else {
            return CacheRedisStats {
                round_trips: 0.0,
                hits: 0.0,
                misses: 0.0,
                sets: 0.0,
                published: 0.0,
                received: 0.0,
                flushes: 0.0,
                errors: 0.0,
                subscribed: false,
            };
        };
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64;
        CacheRedisStats {
            round_trips: n(&c.round_trips),
            hits: n(&c.hits),
            misses: n(&c.misses),
            sets: n(&c.sets),
            published: n(&c.published),
            received: n(&c.received),
            flushes: n(&c.flushes),
            errors: n(&c.errors),
            subscribed: c.subscribed.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_ascii;

    #[test]
    fn is_ascii_finds_a_high_byte_anywhere() {
        for len in 0..40 {
            let text = vec![b'a'; len];
            assert!(is_ascii(&text), "{len} ASCII bytes");
            for at in 0..len {
                let mut with_high = text.clone();
                with_high[at] = 0xC3;
                assert!(!is_ascii(&with_high), "a high byte at {at} of {len}");
            }
        }
    }
}
