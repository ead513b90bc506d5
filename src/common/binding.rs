//! The napi side of `common`: reading arguments and options from JS, and turning core errors
//! into JS errors. This is the one file of `common` that imports napi; block bindings use it so
//! that every block reads keys and options and reports bad input the same way.
//!
//! Hot-path arguments (`JsKey`, `JsCost`) are read with a single N-API call each in the common
//! case, because every extra call costs tens of nanoseconds on paths that take a few hundred.

use std::ffi::CString;
use std::ptr;

use napi::bindgen_prelude::{FromNapiValue, TypeName, ValidateNapiValue};
use napi::{sys, Error, Result, Status, ValueType};

use super::error::{describe_number, ErrorCode, InvalidInput, InvalidKind};

/// Throws `err` as a JS `TypeError` or `RangeError` with its `code`, and returns the error value
/// napi-rs expects when an exception is already pending.
pub fn throw_invalid(env: sys::napi_env, err: InvalidInput) -> Error {
    let message = CString::new(err.message.replace('\0', "\\0")).unwrap_or_default();
    let code = CString::new(err.code.as_str()).unwrap_or_default();
    unsafe {
        match err.kind {
            InvalidKind::Type => sys::napi_throw_type_error(env, code.as_ptr(), message.as_ptr()),
            InvalidKind::Range => sys::napi_throw_range_error(env, code.as_ptr(), message.as_ptr()),
        };
    }
    Error::new(Status::PendingException, err.message)
}

/// Throws a plain `Error` carrying one of the package's codes (for failures that are not bad
/// input), and returns the pending-exception marker.
pub fn throw_coded(env: sys::napi_env, code: ErrorCode, message: &str) -> Error {
    let c_message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let c_code = CString::new(code.as_str()).unwrap_or_default();
    unsafe { sys::napi_throw_error(env, c_code.as_ptr(), c_message.as_ptr()) };
    Error::new(Status::PendingException, message.to_string())
}

/// The JS type of a value, as `typeof` (with `null` told apart).
pub fn value_type(env: sys::napi_env, value: sys::napi_value) -> ValueType {
    let mut kind = 0;
    if unsafe { sys::napi_typeof(env, value, &mut kind) } != sys::Status::napi_ok {
        return ValueType::Unknown;
    }
    ValueType::from(kind)
}

/// A short description of a JS value for error messages: `string "abc"`, `number NaN`,
/// `undefined`, `an object`.
pub fn describe_value(env: sys::napi_env, value: sys::napi_value) -> String {
    match value_type(env, value) {
        ValueType::Undefined => "undefined".into(),
        ValueType::Null => "null".into(),
        ValueType::Boolean => {
            let mut b = false;
            unsafe { sys::napi_get_value_bool(env, value, &mut b) };
            format!("boolean {b}")
        }
        ValueType::Number => {
            let mut n = 0.0;
            unsafe { sys::napi_get_value_double(env, value, &mut n) };
            format!("number {}", describe_number(n))
        }
        ValueType::String => match read_string(env, value) {
            Some(s) if s.chars().count() > 40 => {
                format!("string \"{}...\"", s.chars().take(40).collect::<String>())
            }
            Some(s) => format!("string \"{s}\""),
            None => "a string".into(),
        },
        ValueType::BigInt => "a bigint".into(),
        ValueType::Symbol => "a symbol".into(),
        ValueType::Function => "a function".into(),
        _ => "an object".into(),
    }
}

/// Strings up to about this many UTF-8 bytes are read in one N-API call, through the stack.
const STACK_STRING_BYTES: usize = 256;

/// Reads a JS string whole; `None` when the value is not a string. A short string takes one
/// N-API call, through a stack buffer; a longer one two (its length, then its bytes).
pub fn read_string(env: sys::napi_env, value: sys::napi_value) -> Option<String> {
    with_str(env, value, str::to_owned)
}

/// Runs `f` on a JS string's text; `None` when the value is not a string. A short string is read
/// into a stack buffer in one N-API call and allocates nothing; a longer one takes two (its
/// length, then its bytes) and a heap buffer.
pub fn with_str<R>(
    env: sys::napi_env,
    value: sys::napi_value,
    f: impl FnOnce(&str) -> R,
) -> Option<R> {
    let mut stack = [0u8; STACK_STRING_BYTES];
    let mut written = 0;
    let status = unsafe {
        sys::napi_get_value_string_utf8(
            env,
            value,
            stack.as_mut_ptr().cast(),
            STACK_STRING_BYTES,
            &mut written,
        )
    };
    if status != sys::Status::napi_ok {
        return None;
    }
    // N-API writes at most size - 1 bytes and never splits a character, so with room left for
    // the longest character (4 bytes) the string was not cut short.
    if written + 4 < STACK_STRING_BYTES {
        return std::str::from_utf8(&stack[..written]).ok().map(f);
    }
    let mut len = 0;
    let status =
        unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut len) };
    if status != sys::Status::napi_ok {
        return None;
    }
    let mut buf = vec![0u8; len + 1];
    let mut written = 0;
    unsafe {
        sys::napi_get_value_string_utf8(env, value, buf.as_mut_ptr().cast(), len + 1, &mut written)
    };
    buf.truncate(written);
    std::str::from_utf8(&buf).ok().map(f)
}

/// The longest key, in UTF-8 bytes, that the blocks accept.
pub const MAX_KEY_BYTES: usize = 1024;
/// Keys up to this many bytes are read into the stack without allocating.
const INLINE_KEY_BYTES: usize = 128;

/// A key argument: a non-empty string of at most 1024 UTF-8 bytes, validated on the way in.
/// A wrong type is a `TypeError`, an empty or too long key a `RangeError`, both naming `key`.
pub struct JsKey {
    inline: [std::mem::MaybeUninit<u8>; INLINE_KEY_BYTES],
    len: usize,
    heap: Option<String>,
}

impl JsKey {
    /// The key as text.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.heap {
            // SAFETY: N-API writes valid UTF-8 (it replaces lone surrogates) and stops at a
            // character boundary when the buffer is short, which `read` rules out anyway.
            None => unsafe {
                // the first `len` bytes were written by N-API
                let bytes = std::slice::from_raw_parts(self.inline.as_ptr().cast::<u8>(), self.len);
                std::str::from_utf8_unchecked(bytes)
            },
            Some(s) => s,
        }
    }

    /// Reads and validates a key argument.
    ///
    /// # Safety
    /// `env` and `value` must be live handles of the current call.
    pub unsafe fn read(
        env: sys::napi_env,
        value: sys::napi_value,
    ) -> std::result::Result<Self, InvalidInput> {
        let mut key = JsKey {
            inline: [std::mem::MaybeUninit::uninit(); INLINE_KEY_BYTES],
            len: 0,
            heap: None,
        };
        let mut written = 0;
        let status = unsafe {
            sys::napi_get_value_string_utf8(
                env,
                value,
                key.inline.as_mut_ptr().cast(),
                INLINE_KEY_BYTES,
                &mut written,
            )
        };
        if status != sys::Status::napi_ok {
            return Err(InvalidInput::argument_type(format!(
                "key must be a string, received {}",
                describe_value(env, value)
            )));
        }
        // N-API leaves room for a NUL and never splits a character, so a buffer short by up to
        // four bytes may have cut the string: only then is the full length asked for.
        if written + 4 >= INLINE_KEY_BYTES {
            let mut full = 0;
            unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &mut full) };
            if full > MAX_KEY_BYTES {
                return Err(InvalidInput::argument_range(format!(
                    "key must be at most {MAX_KEY_BYTES} UTF-8 bytes, received {full} bytes"
                )));
            }
            if full > written {
                key.heap = read_string(env, value);
            }
        }
        key.len = written;
        if written == 0 {
            return Err(InvalidInput::argument_range(
                "key must be a non-empty string, received an empty string",
            ));
        }
        Ok(key)
    }
}

impl FromNapiValue for JsKey {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        unsafe { JsKey::read(env, value) }.map_err(|e| throw_invalid(env, e))
    }
}

impl TypeName for JsKey {
    fn type_name() -> &'static str {
        "string"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ValidateNapiValue for JsKey {}

/// A cost argument: a finite number >= 0, 1 when omitted.
#[derive(Clone, Copy, Debug)]
pub struct JsCost(pub f64);

/// Reads a cost argument: a finite number >= 0, 1 when `undefined`. One N-API call when it is a
/// number.
pub fn read_cost(
    env: sys::napi_env,
    value: sys::napi_value,
) -> std::result::Result<f64, InvalidInput> {
    let mut cost = 0.0;
    if unsafe { sys::napi_get_value_double(env, value, &mut cost) } != sys::Status::napi_ok {
        if value_type(env, value) == ValueType::Undefined {
            return Ok(1.0);
        }
        return Err(InvalidInput::argument_type(format!(
            "cost must be a number, received {}",
            describe_value(env, value)
        )));
    }
    if !(cost.is_finite() && cost >= 0.0) {
        return Err(InvalidInput::argument_range(format!(
            "cost must be a finite number >= 0, received {}",
            describe_number(cost)
        )));
    }
    Ok(cost)
}

impl FromNapiValue for JsCost {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        read_cost(env, value)
            .map(JsCost)
            .map_err(|e| throw_invalid(env, e))
    }
}

impl TypeName for JsCost {
    fn type_name() -> &'static str {
        "number"
    }

    fn value_type() -> ValueType {
        ValueType::Number
    }
}

impl ValidateNapiValue for JsCost {}

/// A JS options object being read, with its path for messages (`options.global`) and the
/// names it may hold, so that a misspelt option is refused instead of silently ignored.
pub struct OptionsReader {
    env: sys::napi_env,
    object: sys::napi_value,
    path: String,
}

impl OptionsReader {
    /// Starts reading `value` as the options object at `path`. `undefined` reads as `None`;
    /// anything but an object is a `TypeError`. Every own key must be in `known`.
    pub fn open(
        env: sys::napi_env,
        value: sys::napi_value,
        path: &str,
        known: &[&str],
    ) -> std::result::Result<Option<Self>, InvalidInput> {
        let Some(reader) = Self::open_any(env, value, path)? else {
            return Ok(None);
        };
        for key in reader.keys() {
            if !known.contains(&key.as_str()) {
                return Err(InvalidInput::option_type(format!(
                    "{path} has an unknown option \"{key}\"; known options are: {}",
                    known.join(", ")
                )));
            }
        }
        Ok(Some(reader))
    }

    /// Like `open`, for an object whose keys are free-form names (no key check).
    pub fn open_any(
        env: sys::napi_env,
        value: sys::napi_value,
        path: &str,
    ) -> std::result::Result<Option<Self>, InvalidInput> {
        match value_type(env, value) {
            ValueType::Undefined => Ok(None),
            ValueType::Object => Ok(Some(OptionsReader {
                env,
                object: value,
                path: path.to_string(),
            })),
            _ => Err(InvalidInput::option_type(format!(
                "{path} must be an object, received {}",
                describe_value(env, value)
            ))),
        }
    }

    /// The full path of option `name`, for messages.
    pub fn path_of(&self, name: &str) -> String {
        format!("{}.{}", self.path, name)
    }

    /// The object's own enumerable string keys, in order.
    pub fn keys(&self) -> Vec<String> {
        let mut names = ptr::null_mut();
        let status = unsafe {
            sys::napi_get_all_property_names(
                self.env,
                self.object,
                sys::KeyCollectionMode::own_only,
                sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
                sys::KeyConversion::numbers_to_strings,
                &mut names,
            )
        };
        if status != sys::Status::napi_ok {
            return Vec::new();
        }
        let mut len = 0;
        unsafe { sys::napi_get_array_length(self.env, names, &mut len) };
        (0..len)
            .filter_map(|i| {
                let mut item = ptr::null_mut();
                unsafe { sys::napi_get_element(self.env, names, i, &mut item) };
                read_string(self.env, item)
            })
            .collect()
    }

    /// The raw value of option `name` (`undefined` when absent).
    pub fn raw(&self, name: &str) -> sys::napi_value {
        let mut value = ptr::null_mut();
        let c_name = CString::new(name).unwrap_or_default();
        unsafe { sys::napi_get_named_property(self.env, self.object, c_name.as_ptr(), &mut value) };
        value
    }

    /// Option `name` as a string; `None` when absent or `undefined`.
    pub fn string(&self, name: &str) -> std::result::Result<Option<String>, InvalidInput> {
        let value = self.raw(name);
        match value_type(self.env, value) {
            ValueType::Undefined => Ok(None),
            ValueType::String => Ok(read_string(self.env, value)),
            _ => Err(InvalidInput::option_type(format!(
                "{} must be a string, received {}",
                self.path_of(name),
                describe_value(self.env, value)
            ))),
        }
    }

    /// Option `name` as a number; `None` when absent or `undefined`.
    pub fn number(&self, name: &str) -> std::result::Result<Option<f64>, InvalidInput> {
        let value = self.raw(name);
        match value_type(self.env, value) {
            ValueType::Undefined => Ok(None),
            ValueType::Number => {
                let mut n = 0.0;
                unsafe { sys::napi_get_value_double(self.env, value, &mut n) };
                Ok(Some(n))
            }
            _ => Err(InvalidInput::option_type(format!(
                "{} must be a number, received {}",
                self.path_of(name),
                describe_value(self.env, value)
            ))),
        }
    }

    /// Option `name` as a nested options object with its own known names.
    pub fn object(
        &self,
        name: &str,
        known: &[&str],
    ) -> std::result::Result<Option<OptionsReader>, InvalidInput> {
        OptionsReader::open(self.env, self.raw(name), &self.path_of(name), known)
    }

    /// Option `name` as an object whose keys are free-form names (such as tier names), each
    /// mapping to an options object with the `known` names.
    pub fn named_objects(
        &self,
        name: &str,
        known: &[&str],
    ) -> std::result::Result<Vec<(String, OptionsReader)>, InvalidInput> {
        let Some(map) = OptionsReader::open_any(self.env, self.raw(name), &self.path_of(name))?
        else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for key in map.keys() {
            let path = map.path_of(&key);
            match OptionsReader::open(self.env, map.raw(&key), &path, known)? {
                Some(reader) => entries.push((key, reader)),
                None => {
                    return Err(InvalidInput::option_type(format!(
                        "{path} must be an object, received undefined"
                    )))
                }
            }
        }
        Ok(entries)
    }
}

/// A clock for tests that moves only when told to. Pass it as the `clock` option of a block to
/// drive that block's time by hand; the package exports it as `TestClock`, which also wakes the
/// blocks using it when it moves.
#[napi_derive::napi(js_name = "ManualClock")]
pub struct ManualClockBinding {
    pub(crate) clock: super::ManualClock,
}

fn clock_millis(name: &str, ms: Option<f64>) -> std::result::Result<u64, InvalidInput> {
    let ms = ms.unwrap_or(0.0);
    if ms.is_finite() && ms >= 0.0 {
        Ok((ms * 1e6).round() as u64)
    } else {
        Err(InvalidInput::argument_range(format!(
            "{name} must be a finite number of milliseconds >= 0, received {}",
            describe_number(ms)
        )))
    }
}

#[napi_derive::napi]
impl ManualClockBinding {
    /// A clock at `startMs` milliseconds (default 0).
    #[napi(constructor)]
    pub fn new(env: napi::Env, start_ms: Option<f64>) -> Result<Self> {
        let start = clock_millis("startMs", start_ms).map_err(|e| throw_invalid(env.raw(), e))?;
        Ok(ManualClockBinding {
            clock: super::ManualClock::new(start),
        })
    }

    /// Moves the clock forward by `ms` milliseconds.
    #[napi]
    pub fn advance(&self, env: napi::Env, ms: f64) -> Result<()> {
        let nanos = clock_millis("ms", Some(ms)).map_err(|e| throw_invalid(env.raw(), e))?;
        self.clock.advance(nanos);
        Ok(())
    }

    /// Sets the clock to `ms` milliseconds.
    #[napi]
    pub fn set(&self, env: napi::Env, ms: f64) -> Result<()> {
        let nanos = clock_millis("ms", Some(ms)).map_err(|e| throw_invalid(env.raw(), e))?;
        self.clock.set(nanos);
        Ok(())
    }

    /// The clock's time in milliseconds.
    #[napi]
    pub fn now(&self) -> f64 {
        self.clock.now_nanos() as f64 / 1e6
    }
}

/// Reads the `clock` option: absent means the system clock; otherwise it must be a
/// `TestClock` (`ManualClock`).
pub fn read_clock(reader: &OptionsReader) -> std::result::Result<super::Clock, InvalidInput> {
    let value = reader.raw("clock");
    if value_type(reader.env, value) == ValueType::Undefined {
        return Ok(super::Clock::system());
    }
    let instance = unsafe {
        <napi::bindgen_prelude::ClassInstance<ManualClockBinding> as FromNapiValue>::from_napi_value(
            reader.env, value,
        )
    };
    match instance {
        Ok(manual) => Ok(super::Clock::Manual(manual.clock.clone())),
        Err(_) => Err(InvalidInput::option_type(format!(
            "{} must be a TestClock, received {}",
            reader.path_of("clock"),
            describe_value(reader.env, value)
        ))),
    }
}

/// Hot paths without napi-rs's method wrapper.
///
/// A `#[napi]` method unwraps `this` and checks its type tag on every call, which costs several
/// hundred nanoseconds here (measured with callgrind: property lookups for the wrap and the tag,
/// and an allocation per call). For the few calls that must cost about as much as a `Map`
/// lookup, a block creates plain functions whose N-API `data` pointer is its state: a call reads
/// its arguments and runs, with nothing to unwrap. The state is reference-counted; each function
/// (and each shared buffer) holds one count, released by its finalizer, so the state lives
/// exactly as long as the last JS value that can reach it.
pub mod raw {
    use std::ffi::{c_void, CString};
    use std::ptr;
    use std::rc::Rc;

    use napi::sys;

    /// Finalizer of a function: its data is the boxed count.
    unsafe extern "C" fn release<T>(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
        drop(unsafe { Box::from_raw(data as *mut Rc<T>) });
    }

    /// Finalizer of an external buffer: its data is the memory, the hint the boxed count.
    unsafe extern "C" fn release_hint<T>(
        _env: sys::napi_env,
        _memory: *mut c_void,
        hint: *mut c_void,
    ) {
        drop(unsafe { Box::from_raw(hint as *mut Rc<T>) });
    }

    /// Creates a JS function named `name` that calls `callback` with `state` as its data.
    ///
    /// # Safety
    /// `env` must be the current environment; `callback` must read its data as `*const Rc<T>`
    /// (see [`args`]).
    pub unsafe fn bound_function<T: 'static>(
        env: sys::napi_env,
        name: &str,
        callback: unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value,
        state: &Rc<T>,
    ) -> napi::Result<sys::napi_value> {
        let data = Box::into_raw(Box::new(state.clone()));
        let c_name = CString::new(name).unwrap_or_default();
        let mut function = ptr::null_mut();
        let status = unsafe {
            sys::napi_create_function(
                env,
                c_name.as_ptr(),
                name.len() as isize,
                Some(callback),
                data as *mut c_void,
                &mut function,
            )
        };
        if status != sys::Status::napi_ok {
            drop(unsafe { Box::from_raw(data) });
            return Err(napi::Error::from_reason(format!("could not create {name}")));
        }
        unsafe {
            sys::napi_add_finalizer(
                env,
                function,
                data as *mut c_void,
                Some(release::<T>),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        Ok(function)
    }

    /// A raw N-API callback, as the blocks' fast-path functions are.
    pub type Callback =
        unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

    /// What a block's `_fastPath()` returns: every `(name, callback)` of `functions` as a
    /// function bound to `state` (see [`bound_function`]), and the `len` shared doubles at
    /// `memory` as a `Float64Array` named `array_name` (see [`shared_f64_array`]).
    ///
    /// # Safety
    /// As for [`bound_function`] (each callback) and [`shared_f64_array`] (`memory`, `len`).
    pub unsafe fn fast_path_object<'env, T: 'static>(
        env: &'env napi::Env,
        state: &Rc<T>,
        functions: &[(&str, Callback)],
        (array_name, memory, len): (&str, *mut f64, usize),
    ) -> napi::Result<napi::bindgen_prelude::Object<'env>> {
        use napi::Unknown;
        let mut object = napi::bindgen_prelude::Object::new(env)?;
        for &(name, callback) in functions {
            let function = unsafe { bound_function(env.raw(), name, callback, state)? };
            object.set(name, unsafe {
                Unknown::from_raw_unchecked(env.raw(), function)
            })?;
        }
        let array = unsafe { shared_f64_array(env.raw(), memory, len, state)? };
        object.set(array_name, unsafe {
            Unknown::from_raw_unchecked(env.raw(), array)
        })?;
        Ok(object)
    }

    /// A `Float64Array` over `len` doubles at `memory`, which `state` owns; the array keeps
    /// `state` alive.
    ///
    /// # Safety
    /// `memory` must point to `len` doubles owned by `state` that never move.
    pub unsafe fn shared_f64_array<T: 'static>(
        env: sys::napi_env,
        memory: *mut f64,
        len: usize,
        state: &Rc<T>,
    ) -> napi::Result<sys::napi_value> {
        let data = Box::into_raw(Box::new(state.clone()));
        let mut buffer = ptr::null_mut();
        let status = unsafe {
            sys::napi_create_external_arraybuffer(
                env,
                memory as *mut c_void,
                len * std::mem::size_of::<f64>(),
                Some(release_hint::<T>),
                data as *mut c_void,
                &mut buffer,
            )
        };
        if status != sys::Status::napi_ok {
            drop(unsafe { Box::from_raw(data) });
            return Err(napi::Error::from_reason("could not create a shared buffer"));
        }
        let mut array = ptr::null_mut();
        unsafe {
            sys::napi_create_typedarray(
                env,
                sys::TypedarrayType::float64_array,
                len,
                buffer,
                0,
                &mut array,
            )
        };
        Ok(array)
    }

    /// Reads up to `N` arguments (missing ones are `undefined`), how many were passed, and the
    /// state of a function made by [`bound_function`].
    ///
    /// # Safety
    /// Only inside a callback registered by [`bound_function`] with the same `T`.
    #[inline]
    pub unsafe fn args<'a, T, const N: usize>(
        env: sys::napi_env,
        info: sys::napi_callback_info,
    ) -> ([sys::napi_value; N], usize, &'a Rc<T>) {
        let mut argc = N;
        let mut argv = [ptr::null_mut(); N];
        let mut data = ptr::null_mut();
        unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                &mut data,
            )
        };
        (argv, argc, unsafe { &*(data as *const Rc<T>) })
    }

    /// A JS number.
    #[inline]
    pub fn number(env: sys::napi_env, value: f64) -> sys::napi_value {
        let mut result = ptr::null_mut();
        unsafe { sys::napi_create_double(env, value, &mut result) };
        result
    }

    /// A JS boolean.
    #[inline]
    pub fn boolean(env: sys::napi_env, value: bool) -> sys::napi_value {
        let mut result = ptr::null_mut();
        unsafe { sys::napi_get_boolean(env, value, &mut result) };
        result
    }
}

/// A duration histogram as Prometheus shows one: for each bound, how many values were at most
/// that long (cumulative), with their sum and count.
#[napi_derive::napi(object)]
pub struct HistogramSnapshot {
    /// The upper bounds of `counts`, in milliseconds, ascending.
    pub bounds_ms: Vec<f64>,
    /// For each bound, the values at most that long.
    pub counts: Vec<f64>,
    /// The sum of every value, in milliseconds.
    pub sum_ms: f64,
    /// How many values there were (the `+Inf` bucket).
    pub count: f64,
}

impl HistogramSnapshot {
    /// From buckets of microseconds, the sum of the values in milliseconds, and their count.
    pub fn of_micros<const N: usize>(
        buckets: &crate::common::histogram::BoundCounts<N>,
        sum_ms: f64,
        count: u64,
    ) -> Self {
        HistogramSnapshot {
            bounds_ms: buckets
                .bounds()
                .iter()
                .map(|&bound| bound as f64 / 1_000.0)
                .collect(),
            counts: buckets.cumulative().into_iter().map(|c| c as f64).collect(),
            sum_ms,
            count: count as f64,
        }
    }
}

/// The wake-up call a background thread makes on the JS thread with its owner's id. Weak: it
/// keeps Node alive only while [`Mailbox::reference`] has it referenced (while work is out).
pub type WakeFn = napi::threadsafe_function::ThreadsafeFunction<u32, (), u32, Status, false, true>;

/// Where a background thread (a Redis store, a cache tier) leaves what it finished for the JS
/// thread, waking it through a weak threadsafe function.
pub struct Mailbox<T> {
    items: std::sync::Mutex<std::collections::VecDeque<T>>,
    wake: std::sync::Mutex<Option<(WakeFn, u32)>>,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            items: std::sync::Mutex::new(std::collections::VecDeque::new()),
            wake: std::sync::Mutex::new(None),
        }
    }
}

impl<T> Mailbox<T> {
    fn wake_slot(&self) -> std::sync::MutexGuard<'_, Option<(WakeFn, u32)>> {
        self.wake.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `wake` (called with `id`) the wake-up call, weak and unreferenced.
    pub fn attach(&self, wake: napi::bindgen_prelude::Function<u32, ()>, id: u32) -> Result<()> {
        let wake: WakeFn = wake
            .build_threadsafe_function::<u32>()
            .callee_handled::<false>()
            .weak::<true>()
            .build()?;
        *self.wake_slot() = Some((wake, id));
        Ok(())
    }

    /// Drops the wake-up call: later posts are kept but wake nobody.
    pub fn detach(&self) {
        self.wake_slot().take();
    }

    /// Leaves `item` and wakes the JS thread (from any thread).
    pub fn post(&self, item: T) {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(item);
        if let Some((wake, id)) = &*self.wake_slot() {
            wake.call_with_return_value(
                *id,
                napi::threadsafe_function::ThreadsafeFunctionCallMode::NonBlocking,
                |_, _| Ok(()),
            );
        }
    }

    /// Everything posted so far, oldest first.
    pub fn take_all(&self) -> Vec<T> {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    /// Lets the wake-up call keep Node alive (`on`) or not; false when there is no wake-up
    /// call or napi refused.
    #[allow(deprecated)] // napi-rs keeps `refer`/`unref` for exactly this toggle
    pub fn reference(&self, env: &napi::Env, on: bool) -> bool {
        match &mut *self.wake_slot() {
            Some((wake, _)) => if on { wake.refer(env) } else { wake.unref(env) }.is_ok(),
            None => false,
        }
    }
}
