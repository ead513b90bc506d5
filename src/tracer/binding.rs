//! The JS class `DistributedTracer` (the native half; `lib/tracer.js` adds the `Span` class,
//! header propagation and the active-span context).
//!
//! Options are read and validated here into a [`TracerConfig`], naming the option in every
//! error. The hot calls (`start`, `end`, the attribute setters) are plain functions (see
//! `common::binding::raw`) made once per thread by `_fastPath()` and shared by every tracer of
//! that thread ([`FastPath`]): the tracer a call is for is a number in their `io` array. They
//! take and return numbers (span handles) so that a span costs one cheap crossing per
//! operation. The rest are napi-rs methods. `flush` and `shutdown` wait on the libuv pool
//! (`AsyncTask`), never
//! on the JS thread; the export thread is a plain Rust thread, which does not hold the event loop.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::{sys, Env, JsValue, Unknown, ValueType};
use napi_derive::napi;

use super::context::{SpanContext, MIN_PROPAGATED_TRACESTATE};
use super::export::{
    BatchConfig, ConsoleExporter, MemoryExporter, NoopExporter, ProcessorHandle, SpanExporter,
};
use super::metrics::{SpanNameStats, DURATION_BOUNDS_US};
use super::otlp::OtlpResource;
use super::otlp_http::{traces_endpoint, OtlpHttpConfig, OtlpHttpExporter, Protocol};
use super::sampler::{SampleRate, Sampler, SamplingRule, SpanMatcher};
use super::span::{
    shared_key, AttributeKey, AttributeValue, Attributes, SpanData, SpanKind, SpanLimits, Status,
};
use super::tracer_core::{NameId, Parent, SpanHandle, Tracer, TracerConfig};
use crate::common::binding::{
    describe_value, raw, read_clock, read_string, throw_invalid, value_type, with_str,
    OptionsReader,
};
use crate::common::error::{integer_at_least, InvalidInput};
use crate::common::slots::SlotRegistry;

const TRACER_OPTIONS: &[&str] = &[
    "serviceName",
    "sampleRate",
    "sampling",
    "limits",
    "maxMetricNames",
    "batch",
    "exporter",
    "resource",
    "clock",
];
const SAMPLING_OPTIONS: &[&str] = &["rules"];
const RULE_OPTIONS: &[&str] = &["name", "rate"];
const LIMITS_OPTIONS: &[&str] = &["maxAttributes", "maxEvents", "maxAttributeValueLength"];
const BATCH_OPTIONS: &[&str] = &[
    "maxQueueSize",
    "maxExportBatchSize",
    "scheduledDelayMs",
    "exportTimeoutMs",
];
const EXPORTER_OPTIONS: &[&str] = &["otlp"];
const OTLP_OPTIONS: &[&str] = &["url", "headers", "protocol", "timeoutMs"];

/// Span kinds by the small integer the fast path takes (`lib/tracer.js` maps the names).
const KINDS: [SpanKind; 5] = [
    SpanKind::Internal,
    SpanKind::Server,
    SpanKind::Client,
    SpanKind::Producer,
    SpanKind::Consumer,
];

fn kind_name(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

/// The elements of a JS array; `None` when `value` is not an array.
fn array_elements(env: sys::napi_env, value: sys::napi_value) -> Option<Vec<sys::napi_value>> {
    let mut is_array = false;
    unsafe { sys::napi_is_array(env, value, &mut is_array) };
    if !is_array {
        return None;
    }
    let mut len = 0;
    unsafe { sys::napi_get_array_length(env, value, &mut len) };
    Some(
        (0..len)
            .map(|i| {
                let mut item = std::ptr::null_mut();
                unsafe { sys::napi_get_element(env, value, i, &mut item) };
                item
            })
            .collect(),
    )
}

fn number_of(env: sys::napi_env, value: sys::napi_value) -> Option<f64> {
    let mut n = 0.0;
    (unsafe { sys::napi_get_value_double(env, value, &mut n) } == sys::Status::napi_ok).then_some(n)
}

fn bool_of(env: sys::napi_env, value: sys::napi_value) -> Option<bool> {
    let mut b = false;
    (unsafe { sys::napi_get_value_bool(env, value, &mut b) } == sys::Status::napi_ok).then_some(b)
}

/// A JS number as an attribute: an integer (within 2^53) is an `int`, as OpenTelemetry JS
/// exports it; anything else a `double`.
fn number_attribute(n: f64) -> AttributeValue {
    if n.is_finite() && n.fract() == 0.0 && n.abs() <= 2f64.powi(53) {
        AttributeValue::I64(n as i64)
    } else {
        AttributeValue::F64(n)
    }
}

/// A JS value as an attribute value: a string, number, boolean, or an array of one of them
/// (homogeneous; an array of numbers is ints only when every number is an integer). `None` for
/// anything else, which the caller drops and counts.
fn read_attribute(env: sys::napi_env, value: sys::napi_value) -> Option<AttributeValue> {
    match value_type(env, value) {
        ValueType::String => read_string(env, value).map(AttributeValue::String),
        ValueType::Number => number_of(env, value).map(number_attribute),
        ValueType::Boolean => bool_of(env, value).map(AttributeValue::Bool),
        ValueType::Object => {
            let items = array_elements(env, value)?;
            let Some(first) = items.first() else {
                return Some(AttributeValue::StringArray(Vec::new()));
            };
            match value_type(env, *first) {
                ValueType::String => items
                    .iter()
                    .map(|v| {
                        (value_type(env, *v) == ValueType::String)
                            .then(|| read_string(env, *v))
                            .flatten()
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(AttributeValue::StringArray),
                ValueType::Boolean => items
                    .iter()
                    .map(|v| {
                        (value_type(env, *v) == ValueType::Boolean)
                            .then(|| bool_of(env, *v))
                            .flatten()
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(AttributeValue::BoolArray),
                ValueType::Number => {
                    let numbers = items
                        .iter()
                        .map(|v| {
                            (value_type(env, *v) == ValueType::Number)
                                .then(|| number_of(env, *v))
                                .flatten()
                        })
                        .collect::<Option<Vec<_>>>()?;
                    if numbers
                        .iter()
                        .all(|n| matches!(number_attribute(*n), AttributeValue::I64(_)))
                    {
                        Some(AttributeValue::I64Array(
                            numbers.iter().map(|n| *n as i64).collect(),
                        ))
                    } else {
                        Some(AttributeValue::F64Array(numbers))
                    }
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// The attributes of a plain object (an event's, the resource's); values that are not
/// attribute values are skipped and counted.
fn read_attributes(
    env: sys::napi_env,
    value: sys::napi_value,
    path: &str,
) -> std::result::Result<(Attributes, u32), InvalidInput> {
    let mut attributes = Attributes::new();
    let mut skipped = 0;
    if let Some(reader) = OptionsReader::open_any(env, value, path)? {
        for key in reader.keys() {
            match read_attribute(env, reader.raw(&key)) {
                Some(v) => attributes.push((key.into(), v)),
                None => skipped += 1,
            }
        }
    }
    Ok((attributes, skipped))
}

/// Validates a duration option in milliseconds: an integer >= 1.
fn millis_option(
    reader: &OptionsReader,
    name: &str,
) -> std::result::Result<Option<u64>, InvalidInput> {
    reader
        .number(name)?
        .map(|ms| integer_at_least(&reader.path_of(name), ms, 1))
        .transpose()
}

/// Everything the constructor reads.
struct Settings {
    config: TracerConfig,
    clock: crate::common::Clock,
    exporter: ExporterChoice,
    resource: OtlpResource,
}

enum ExporterChoice {
    None,
    Memory,
    Console,
    Otlp {
        url: String,
        headers: Vec<(String, String)>,
        protocol: Protocol,
        timeout: Duration,
    },
}

fn read_rules(
    env: sys::napi_env,
    reader: &OptionsReader,
) -> std::result::Result<Vec<SamplingRule>, InvalidInput> {
    let Some(sampling) = reader.object("sampling", SAMPLING_OPTIONS)? else {
        return Ok(Vec::new());
    };
    let value = sampling.raw("rules");
    if value_type(env, value) == ValueType::Undefined {
        return Ok(Vec::new());
    }
    let path = sampling.path_of("rules");
    let items = array_elements(env, value).ok_or_else(|| {
        InvalidInput::option_type(format!(
            "{path} must be an array, received {}",
            describe_value(env, value)
        ))
    })?;
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let rule = OptionsReader::open(env, item, &item_path, RULE_OPTIONS)?.ok_or_else(|| {
            InvalidInput::option_type(format!("{item_path} must be an object, received undefined"))
        })?;
        let name = rule.string("name")?.ok_or_else(|| {
            InvalidInput::option_type(format!(
                "{} must be a string or a RegExp, received {}",
                rule.path_of("name"),
                describe_value(env, rule.raw("name"))
            ))
        })?;
        let rate = rule.number("rate")?.ok_or_else(|| {
            InvalidInput::option_type(format!(
                "{} is required: a number between 0 and 1, received undefined",
                rule.path_of("rate")
            ))
        })?;
        rules.push(SamplingRule {
            matcher: SpanMatcher::Exact(name),
            rate: SampleRate::new(&rule.path_of("rate"), rate)?,
        });
    }
    Ok(rules)
}

fn read_limits(reader: &OptionsReader) -> std::result::Result<SpanLimits, InvalidInput> {
    let mut limits = SpanLimits::default();
    let Some(l) = reader.object("limits", LIMITS_OPTIONS)? else {
        return Ok(limits);
    };
    if let Some(n) = l.number("maxAttributes")? {
        limits.max_attributes = integer_at_least(&l.path_of("maxAttributes"), n, 0)? as usize;
        limits.max_attributes_per_event = limits.max_attributes;
    }
    if let Some(n) = l.number("maxEvents")? {
        limits.max_events = integer_at_least(&l.path_of("maxEvents"), n, 0)? as usize;
    }
    if let Some(n) = l.number("maxAttributeValueLength")? {
        limits.max_value_length =
            Some(integer_at_least(&l.path_of("maxAttributeValueLength"), n, 1)? as usize);
    }
    Ok(limits)
}

fn read_batch(reader: &OptionsReader) -> std::result::Result<BatchConfig, InvalidInput> {
    let mut batch = BatchConfig::default();
    let Some(b) = reader.object("batch", BATCH_OPTIONS)? else {
        return Ok(batch);
    };
    if let Some(n) = b.number("maxQueueSize")? {
        batch.max_queue_size = integer_at_least(&b.path_of("maxQueueSize"), n, 1)? as usize;
    }
    if let Some(n) = b.number("maxExportBatchSize")? {
        batch.max_export_batch_size =
            integer_at_least(&b.path_of("maxExportBatchSize"), n, 1)? as usize;
    }
    if let Some(ms) = millis_option(&b, "scheduledDelayMs")? {
        batch.scheduled_delay_ms = ms;
    }
    if let Some(ms) = millis_option(&b, "exportTimeoutMs")? {
        batch.export_timeout_ms = ms;
    }
    batch.validate()?;
    Ok(batch)
}

/// Checks that a traces URL is one the exporter's HTTP client can send to: an absolute `http:`
/// or `https:` URL, as `http::Uri` (the parser ureq sends with) reads it, with a host and, when
/// it names one, a port from 1 to 65535. `http::Uri` reads a port it cannot hold (`:99999`) as
/// no port, which would send to the scheme's default port instead: hence the port check.
fn check_url(option: &str, url: &str) -> std::result::Result<(), InvalidInput> {
    let valid = url.parse::<ureq::http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|host| !host.is_empty())
            && uri
                .authority()
                .is_some_and(|authority| port_is_valid(authority.as_str()))
    });
    if valid {
        Ok(())
    } else {
        Err(InvalidInput::option_range(format!(
            "{option} must be an absolute http:// or https:// URL with a host (and a port from 1 to 65535, if any), received \"{url}\""
        )))
    }
}

/// Whether the port of `authority` (`[user@]host[:port]`, the host maybe a bracketed IPv6
/// address) is absent, empty (the scheme's default) or a number from 1 to 65535.
fn port_is_valid(authority: &str) -> bool {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    let after_host = match host_port.rfind(']') {
        Some(end) => &host_port[end + 1..],
        None => host_port.find(':').map_or("", |colon| &host_port[colon..]),
    };
    let port = after_host.strip_prefix(':').unwrap_or(after_host);
    port.is_empty()
        || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0))
}

fn read_exporter(
    env: sys::napi_env,
    reader: &OptionsReader,
) -> std::result::Result<ExporterChoice, InvalidInput> {
    let value = reader.raw("exporter");
    let path = reader.path_of("exporter");
    match value_type(env, value) {
        ValueType::Undefined => Ok(ExporterChoice::None),
        ValueType::String => match read_string(env, value).as_deref() {
            Some("none") => Ok(ExporterChoice::None),
            Some("memory") => Ok(ExporterChoice::Memory),
            Some("console") => Ok(ExporterChoice::Console),
            _ => Err(InvalidInput::option_range(format!(
                "{path} must be 'none', 'memory', 'console' or {{ otlp: {{ ... }} }}, received {}",
                describe_value(env, value)
            ))),
        },
        ValueType::Object => {
            let outer = OptionsReader::open(env, value, &path, EXPORTER_OPTIONS)?
                .ok_or_else(|| InvalidInput::option_type(format!("{path} must be an object")))?;
            let otlp = match outer.object("otlp", OTLP_OPTIONS)? {
                Some(otlp) => otlp,
                None => {
                    return Err(InvalidInput::option_type(format!(
                        "{path}.otlp is required in an exporter object, received undefined"
                    )))
                }
            };
            let explicit = otlp.string("url")?;
            let env_var = |name: &str| std::env::var(name).ok();
            let url = traces_endpoint(
                explicit.as_deref(),
                env_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").as_deref(),
                env_var("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            );
            let url_option = if explicit.is_some() {
                otlp.path_of("url")
            } else {
                format!("{} (from the environment)", otlp.path_of("url"))
            };
            check_url(&url_option, &url)?;
            let mut headers = Vec::new();
            if let Some(h) =
                OptionsReader::open_any(env, otlp.raw("headers"), &otlp.path_of("headers"))?
            {
                for key in h.keys() {
                    let v = h.raw(&key);
                    match read_string(env, v) {
                        Some(text) => headers.push((key, text)),
                        None => {
                            return Err(InvalidInput::option_type(format!(
                                "{} must be a string, received {}",
                                h.path_of(&key),
                                describe_value(env, v)
                            )))
                        }
                    }
                }
            }
            let protocol = match otlp.string("protocol")?.as_deref() {
                None | Some("http/protobuf") => Protocol::Protobuf,
                Some("http/json") => Protocol::Json,
                Some(other) => {
                    return Err(InvalidInput::option_range(format!(
                        "{} must be 'http/protobuf' or 'http/json', received string \"{other}\"",
                        otlp.path_of("protocol")
                    )))
                }
            };
            let timeout = millis_option(&otlp, "timeoutMs")?.unwrap_or(10_000);
            Ok(ExporterChoice::Otlp {
                url,
                headers,
                protocol,
                timeout: Duration::from_millis(timeout),
            })
        }
        _ => Err(InvalidInput::option_type(format!(
            "{path} must be a string or an object, received {}",
            describe_value(env, value)
        ))),
    }
}

fn read_settings(env: Env, options: Unknown) -> std::result::Result<Settings, InvalidInput> {
    let env = env.raw();
    let Some(reader) = OptionsReader::open(env, options.raw(), "options", TRACER_OPTIONS)? else {
        return Err(InvalidInput::option_type(
            "options is required: an object with serviceName, received undefined",
        ));
    };
    let service_name = match reader.string("serviceName")? {
        Some(name) if !name.is_empty() => name,
        Some(_) => {
            return Err(InvalidInput::option_range(
                "options.serviceName must be a non-empty string, received an empty string",
            ))
        }
        None => {
            return Err(InvalidInput::option_type(
                "options.serviceName is required: a non-empty string, received undefined",
            ))
        }
    };
    let sample_rate = reader.number("sampleRate")?.unwrap_or(1.0);
    let sampler = Sampler::new(sample_rate, read_rules(env, &reader)?)?;
    let mut config = TracerConfig::new(service_name.clone(), sampler);
    config.limits = read_limits(&reader)?;
    if let Some(n) = reader.number("maxMetricNames")? {
        config.max_metric_names = integer_at_least("options.maxMetricNames", n, 1)? as usize;
    }
    config.batch = read_batch(&reader)?;
    let exporter = read_exporter(env, &reader)?;
    let mut resource = OtlpResource {
        service_name,
        attributes: Vec::new(),
    };
    if let Some(r) = OptionsReader::open_any(env, reader.raw("resource"), "options.resource")? {
        for key in r.keys() {
            let v = r.raw(&key);
            let value = match value_type(env, v) {
                ValueType::String | ValueType::Number | ValueType::Boolean => {
                    read_attribute(env, v)
                }
                _ => None,
            };
            match value {
                Some(value) => resource.attributes.push((key, value)),
                None => {
                    return Err(InvalidInput::option_type(format!(
                        "{} must be a string, number or boolean, received {}",
                        r.path_of(&key),
                        describe_value(env, v)
                    )))
                }
            }
        }
    }
    let clock = read_clock(&reader)?;
    Ok(Settings {
        config,
        clock,
        exporter,
        resource,
    })
}

/// What the class and its fast-path functions share.
struct Shared {
    tracer: RefCell<Tracer>,
    /// Attributes the fast path could not convert, counted here as well as on their span.
    unsupported_attributes: std::cell::Cell<u64>,
    /// Attribute keys interned for the fast path (`_internKey`), by id; copying one into a
    /// span allocates nothing (see [`shared_key`]).
    keys: RefCell<Vec<AttributeKey>>,
    /// Their ids, by key.
    key_ids: RefCell<HashMap<String, u32>>,
}

/// The fast-path functions' state, one per thread (so one per JS environment), shared by every
/// tracer made there.
///
/// Why shared: functions made per tracer are different functions to V8, so in a process with
/// two tracers (a sampled one and an unsampled one, say) the call sites in `lib/tracer.js` saw
/// several targets and V8 stopped inlining and calling them directly. An unsampled span cost
/// about 100 ns with one tracer in use and about 120 ns with two (measured 2026-11-28). With
/// these functions shared, and the JS side's per-tracer closures made methods of one class
/// (`TracerCore`), the spans bench (two bulwark tracers in one process) went from 121 to 105 ns
/// unsampled and from 215 to 180 ns sampled.
struct FastPath {
    /// The calls' arguments and results, shared with JS as one Float64Array (`io`; the `IO_*`
    /// constants name its cells). JS writes a call's numbers there, the tracer's slot in
    /// `IO_TRACER` first, and calls with no argument to convert; the start writes the new
    /// span's ids back and its handle, so a JS Span knows its ids without another crossing,
    /// also after `end()` frees its slot.
    io: std::cell::UnsafeCell<[f64; IO_LEN]>,
    /// The tracers of this thread by slot.
    tracers: SlotRegistry<Shared>,
}

thread_local! {
    /// This thread's fast path, made on first use.
    static FAST_PATH: Rc<FastPath> = Rc::new(FastPath {
        io: std::cell::UnsafeCell::new([0.0; IO_LEN]),
        tracers: SlotRegistry::default(),
    });
}

impl FastPath {
    /// Reads cell `i` of `io`.
    #[inline]
    fn io(&self, i: usize) -> f64 {
        // SAFETY: only this thread touches `io`; JS writes it between calls, never during one.
        unsafe { (*self.io.get())[i] }
    }

    /// The tracer whose slot is in `IO_TRACER`, if it is still alive.
    #[inline]
    fn tracer(&self) -> Option<&Shared> {
        self.tracers.get(self.io(IO_TRACER))
    }

    /// Writes the ids of `handle` (zeros for a span that was not started) and the handle into
    /// `io`.
    fn publish_ids(&self, tracer: &Tracer, handle: SpanHandle) {
        let mut words = [0.0; IO_ID_WORDS];
        if let Some((trace_id, span_id, flags)) = tracer.ids(handle) {
            let trace = trace_id.to_bytes();
            let span = span_id.to_bytes();
            for (word, bytes) in words
                .iter_mut()
                .zip(trace.chunks_exact(4).chain(span.chunks_exact(4)))
            {
                *word = f64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
            }
            words[IO_ID_WORDS - 1] = f64::from(flags.bits());
        }
        // SAFETY: only this thread touches `io`; JS reads it between calls.
        let io = unsafe { &mut *self.io.get() };
        io[IO_IDS..IO_IDS + IO_ID_WORDS].copy_from_slice(&words);
        io[IO_HANDLE] = f64::from(handle.0);
    }
}

/// `io` cells written by a start: the trace id as four big-endian 32-bit words, the span id as
/// two, then the flags. JS keeps each word as a signed 32-bit integer (`| 0`), which V8 holds as
/// a small integer on 64-bit builds, so a Span keeps them without allocating; seven words
/// rather than the ten of 24 bits an earlier layout used (each word read and stored is time on
/// every span, sampled or not).
const IO_IDS: usize = 0;
/// `io` cells written by a start: the number of id words.
const IO_ID_WORDS: usize = 7;
/// `io` cell written by a start: the new span's handle (0 when none started).
const IO_HANDLE: usize = 10;
/// `io` cell read by start: the interned name id, or -1 when the name is the call's argument.
const IO_NAME: usize = 11;
/// `io` cell read by start: the kind (an index into `KINDS`).
const IO_KIND: usize = 12;
/// `io` cell read by start: the parent's handle (0 for none).
const IO_PARENT: usize = 13;
/// `io` cell read by start: the start time in Unix ms, or NaN for now.
const IO_START_TIME: usize = 14;
/// `io` cell read by start: the root sampling rate chosen in JS, or NaN to let the tracer choose.
const IO_RATE: usize = 15;
/// `io` cell read by end: the span's handle.
const IO_END_HANDLE: usize = 16;
/// `io` cell read by end: the end time in Unix ms, or NaN for now.
const IO_END_TIME: usize = 17;
/// `io` cell read by rename: the span's handle.
const IO_RENAME_HANDLE: usize = 18;
/// `io` cell read by rename: the interned name id, or -1 when the name is the call's argument.
const IO_RENAME_NAME: usize = 19;
/// `io` cell read by setAttr: the span's handle.
const IO_ATTR_HANDLE: usize = 20;
/// `io` cell read by setAttr: the interned key id, or -1 when the key is the call's second
/// argument.
const IO_ATTR_KEY: usize = 21;
/// `io` cell read by setAttr: the value's type (`ATTR_NUMBER`, `ATTR_BOOLEAN`, or
/// `ATTR_STRING` with the string as the first argument).
const IO_ATTR_TYPE: usize = 22;
/// `io` cell read by setAttr: a number value, or a boolean as 0 or 1.
const IO_ATTR_VALUE: usize = 23;
/// `io` cell read by setAttrs: the span's handle.
const IO_ATTRS_HANDLE: usize = 24;
/// `io` cell read by setAttrs: how many attributes (1 to `ATTRS_PER_CALL`).
const IO_ATTRS_COUNT: usize = 25;
/// `io` cells read by setAttrs: each attribute's interned key id.
const IO_ATTRS_KEYS: usize = 26;
/// `io` cells read by setAttrs: each attribute's value type, as `IO_ATTR_TYPE`.
const IO_ATTRS_TYPES: usize = IO_ATTRS_KEYS + ATTRS_PER_CALL;
/// `io` cells read by setAttrs: each number value, or boolean as 0 or 1.
const IO_ATTRS_VALUES: usize = IO_ATTRS_TYPES + ATTRS_PER_CALL;
/// Most attributes one setAttrs call sets.
const ATTRS_PER_CALL: usize = 8;
/// `io` cell read by end and endWithAttrs: an interned name to rename the span to as it ends
/// (the JS side holds a rename back until the end, one crossing fewer), or -1 for none.
const IO_END_NAME: usize = IO_ATTRS_VALUES + ATTRS_PER_CALL;
/// `io` cell read by every fast-path call: the slot of the tracer the call is for.
const IO_TRACER: usize = IO_END_NAME + 1;
/// Cells in `io`.
const IO_LEN: usize = IO_TRACER + 1;

/// `IO_ATTR_TYPE` of a number value.
const ATTR_NUMBER: f64 = 0.0;
/// `IO_ATTR_TYPE` of a boolean value.
const ATTR_BOOLEAN: f64 = 1.0;

/// How many attribute keys a tracer interns for the fast path; keys past it cross as text.
const MAX_INTERNED_KEYS: usize = 1024;

/// A span handle argument: a number that is a `u32`; anything else reads as no span (0).
fn handle_of(env: sys::napi_env, value: sys::napi_value) -> SpanHandle {
    match number_of(env, value) {
        Some(n) if n >= 0.0 && n <= f64::from(u32::MAX) && n.fract() == 0.0 => SpanHandle(n as u32),
        _ => SpanHandle::NONE,
    }
}

/// Unix milliseconds as nanoseconds, exactly for whole milliseconds (`ms * 1e6` in f64 would
/// round today's times to 256 ns); `None` unless finite and >= 0.
fn nanos_of_ms(ms: f64) -> Option<u64> {
    (0.0..1.8e13).contains(&ms).then(|| {
        let whole = ms.trunc();
        whole as u64 * 1_000_000 + ((ms - whole) * 1e6).round() as u64
    })
}

fn name_of(
    env: sys::napi_env,
    value: sys::napi_value,
) -> std::result::Result<String, InvalidInput> {
    read_string(env, value).ok_or_else(|| {
        InvalidInput::argument_type(format!(
            "name must be a string, received {}",
            describe_value(env, value)
        ))
    })
}

/// A fast-path call's arguments, the thread's [`FastPath`] and the tracer the call is for;
/// `None` when that tracer is gone.
///
/// # Safety
/// `info` must be the callback info of a function made by `_fastPath()` (its data is the
/// thread's `Rc<FastPath>`).
#[inline]
unsafe fn fast_call<'a, const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> Option<([sys::napi_value; N], &'a FastPath, &'a Shared)> {
    let (args, _, fast) = unsafe { raw::args::<FastPath, N>(env, info) };
    let fast: &'a FastPath = fast;
    Some((args, fast, fast.tracer()?))
}

/// Borrows the tracer for a fast-path call; `None` (and a thrown error) on re-entry.
fn borrow_tracer<'a>(
    env: sys::napi_env,
    shared: &'a Shared,
) -> Option<std::cell::RefMut<'a, Tracer>> {
    let tracer = shared.tracer.try_borrow_mut().ok();
    if tracer.is_none() {
        crate::common::binding::throw_coded(
            env,
            crate::common::ErrorCode::InvalidArgument,
            "the tracer was called re-entrantly",
        );
    }
    tracer
}

/// A handle read from `io`: a `u32` number, anything else no span (0).
fn handle_in(n: f64) -> SpanHandle {
    // `as` saturates (NaN to 0); the round trip rejects fractions and out-of-range values
    // without a call to `trunc`.
    let handle = n as u32;
    if f64::from(handle) == n {
        SpanHandle(handle)
    } else {
        SpanHandle::NONE
    }
}

/// `start(name?)`: starts a span from the numbers in `io` (name id, kind, parent handle, start
/// time, rate); the name is the argument when the id cell is -1. Writes the ids and the handle
/// (0 when the live-span bound is reached) into `io` and returns nothing.
unsafe extern "C" fn start(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let Some((args, fast, shared)) = (unsafe { fast_call::<1>(env, info) }) else {
        return std::ptr::null_mut();
    };
    let name_id = fast.io(IO_NAME);
    let parent = handle_in(fast.io(IO_PARENT));
    let parent = if parent.is_none() {
        Parent::None
    } else {
        Parent::Local(parent)
    };
    let kind = fast.io(IO_KIND);
    let kind = if kind >= 0.0 && (kind as usize) < KINDS.len() {
        KINDS[kind as usize]
    } else {
        SpanKind::Internal
    };
    let time = nanos_of_ms(fast.io(IO_START_TIME));
    // NaN (no rate) is checked first: a refused rate would build an error message.
    let rate = fast.io(IO_RATE);
    let rate = if rate.is_nan() {
        None
    } else {
        SampleRate::new("rate", rate).ok()
    };
    if name_id >= 0.0 {
        let Some(mut tracer) = borrow_tracer(env, shared) else {
            return std::ptr::null_mut();
        };
        let handle = tracer.start_interned(NameId(name_id as u32), kind, parent, time, rate);
        fast.publish_ids(&tracer, handle);
    } else {
        let name = match name_of(env, args[0]) {
            Ok(name) => name,
            Err(e) => {
                throw_invalid(env, e);
                return std::ptr::null_mut();
            }
        };
        let Some(mut tracer) = borrow_tracer(env, shared) else {
            return std::ptr::null_mut();
        };
        let handle = tracer.start_span_with_rate(&name, kind, parent, time, rate);
        fast.publish_ids(&tracer, handle);
    }
    std::ptr::null_mut()
}

/// `rename(name?)`: renames the span whose handle is in `io` to the interned name in `io`, or
/// to the argument when the id cell is -1. Returns nothing.
unsafe extern "C" fn rename(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let Some((args, fast, shared)) = (unsafe { fast_call::<1>(env, info) }) else {
        return std::ptr::null_mut();
    };
    let handle = handle_in(fast.io(IO_RENAME_HANDLE));
    let name_id = fast.io(IO_RENAME_NAME);
    if name_id >= 0.0 {
        if let Some(mut tracer) = borrow_tracer(env, shared) {
            tracer.update_name_interned(handle, NameId(name_id as u32));
        }
    } else {
        match name_of(env, args[0]) {
            Ok(name) => {
                if let Some(mut tracer) = borrow_tracer(env, shared) {
                    tracer.update_name(handle, &name);
                }
            }
            Err(e) => {
                throw_invalid(env, e);
            }
        }
    }
    std::ptr::null_mut()
}

/// `end()`: ends the span whose handle is in `io` (at the time in `io`, NaN for now; renamed
/// first when `IO_END_NAME` holds a name). A stale or ended handle changes nothing. Returns
/// nothing.
unsafe extern "C" fn end(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let Some((_, fast, shared)) = (unsafe { fast_call::<0>(env, info) }) else {
        return std::ptr::null_mut();
    };
    let Some(mut tracer) = borrow_tracer(env, shared) else {
        return std::ptr::null_mut();
    };
    end_from_io(fast, &mut tracer);
    std::ptr::null_mut()
}

/// Ends the span whose handle is in `IO_END_HANDLE` at the time in `IO_END_TIME`, renamed first
/// to the interned name in `IO_END_NAME` when that is not -1.
fn end_from_io(fast: &FastPath, tracer: &mut Tracer) {
    let handle = handle_in(fast.io(IO_END_HANDLE));
    let time = nanos_of_ms(fast.io(IO_END_TIME));
    let name_id = fast.io(IO_END_NAME);
    if name_id >= 0.0 {
        tracer.update_name_interned(handle, NameId(name_id as u32));
    }
    tracer.end(handle, time);
}

/// `setAttribute(handle, key, value)`: whether the attribute was stored. A value that is not an
/// attribute value is dropped and counted on the span.
unsafe extern "C" fn set_attribute(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let Some((args, _, shared)) = (unsafe { fast_call::<3>(env, info) }) else {
        return std::ptr::null_mut();
    };
    let handle = handle_of(env, args[0]);
    if !handle.is_recording() {
        return raw::boolean(env, false);
    }
    let Some(key) = read_string(env, args[1]) else {
        throw_invalid(
            env,
            InvalidInput::argument_type(format!(
                "key must be a string, received {}",
                describe_value(env, args[1])
            )),
        );
        return std::ptr::null_mut();
    };
    let value = read_attribute(env, args[2]);
    let Some(mut tracer) = borrow_tracer(env, shared) else {
        return std::ptr::null_mut();
    };
    let stored = match value {
        Some(value) => tracer.set_attribute(handle, &key, value),
        None => {
            if tracer.count_dropped_attribute(handle) {
                shared
                    .unsupported_attributes
                    .set(shared.unsupported_attributes.get() + 1);
            }
            false
        }
    };
    raw::boolean(env, stored)
}

/// A number or boolean attribute value passed through `io`: `kind` is its `IO_ATTR_TYPE` cell
/// and `number` its value cell; `None` for a string, which comes as a call argument instead.
fn io_scalar(kind: f64, number: f64) -> Option<AttributeValue> {
    if kind == ATTR_NUMBER {
        Some(number_attribute(number))
    } else if kind == ATTR_BOOLEAN {
        Some(AttributeValue::Bool(number != 0.0))
    } else {
        None
    }
}

/// Sets one attribute passed through `io` on span `handle`: a number or boolean from its cells
/// (`kind`, `number`, see [`io_scalar`]), or a string from the call argument `string`, read
/// through the stack into a string the span kept (see `SpanData::set_attribute_str`: no
/// allocation on a reused span). An argument that is not a string sets nothing.
fn set_io_attribute(
    env: sys::napi_env,
    tracer: &mut Tracer,
    handle: SpanHandle,
    key: AttributeKey,
    kind: f64,
    number: f64,
    string: sys::napi_value,
) {
    match io_scalar(kind, number) {
        Some(value) => {
            tracer.set_attribute(handle, key, value);
        }
        None => {
            with_str(env, string, |text| {
                tracer.set_attribute_str(handle, key, text)
            });
        }
    }
}

/// `setAttr(value?, key?)`: sets one attribute on the span whose handle is in `io`. The key is
/// the interned id in `io`, or the second argument when that is -1; a number or boolean value
/// is in `io` too, a string value (`IO_ATTR_TYPE` any other number) is the first argument.
/// Returns nothing; an unsampled span is left alone without reading anything.
unsafe extern "C" fn set_attr(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let Some((args, fast, shared)) = (unsafe { fast_call::<2>(env, info) }) else {
        return std::ptr::null_mut();
    };
    let handle = handle_in(fast.io(IO_ATTR_HANDLE));
    if !handle.is_recording() {
        return std::ptr::null_mut();
    }
    let key_id = fast.io(IO_ATTR_KEY);
    let key = if key_id >= 0.0 {
        match shared.keys.borrow().get(key_id as usize) {
            Some(key) => key.clone(),
            None => return std::ptr::null_mut(),
        }
    } else {
        match read_string(env, args[1]) {
            Some(key) => AttributeKey::from(key),
            None => return std::ptr::null_mut(),
        }
    };
    if let Some(mut tracer) = borrow_tracer(env, shared) {
        let (kind, number) = (fast.io(IO_ATTR_TYPE), fast.io(IO_ATTR_VALUE));
        set_io_attribute(env, &mut tracer, handle, key, kind, number, args[0]);
    }
    std::ptr::null_mut()
}

/// `setAttrs(s0, ..., s7)`: sets up to `ATTRS_PER_CALL` attributes on the span whose handle is
/// in `io`, in one crossing: their count, interned key ids, types and number values are in
/// `io`, and a string value is the argument at its position. An unknown key id or a string
/// value that is not a string skips that attribute. Returns nothing.
unsafe extern "C" fn set_attrs(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let Some((args, fast, shared)) = (unsafe { fast_call::<ATTRS_PER_CALL>(env, info) }) else {
        return std::ptr::null_mut();
    };
    if let Some(mut tracer) = borrow_tracer(env, shared) {
        set_io_attributes(env, fast, shared, &mut tracer, &args);
    }
    std::ptr::null_mut()
}

/// `endWithAttrs(s0, ..., s7)`: what `setAttrs` and then `end` do, in one crossing. The JS side
/// queues attributes and sends them with the next end, which saves a crossing per span: the
/// attributes go to the span in `IO_ATTRS_HANDLE`, usually but not always the one ended (the
/// handle in `IO_END_HANDLE`). Returns nothing.
unsafe extern "C" fn end_with_attrs(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let Some((args, fast, shared)) = (unsafe { fast_call::<ATTRS_PER_CALL>(env, info) }) else {
        return std::ptr::null_mut();
    };
    let Some(mut tracer) = borrow_tracer(env, shared) else {
        return std::ptr::null_mut();
    };
    set_io_attributes(env, fast, shared, &mut tracer, &args);
    end_from_io(fast, &mut tracer);
    std::ptr::null_mut()
}

/// Sets the attributes described by the `IO_ATTRS_*` cells, string values from `strings`, on
/// the span whose handle is in `IO_ATTRS_HANDLE` (nothing for an unsampled or stale handle).
fn set_io_attributes(
    env: sys::napi_env,
    fast: &FastPath,
    shared: &Shared,
    tracer: &mut Tracer,
    strings: &[sys::napi_value; ATTRS_PER_CALL],
) {
    let handle = handle_in(fast.io(IO_ATTRS_HANDLE));
    if !handle.is_recording() {
        return;
    }
    let count = (fast.io(IO_ATTRS_COUNT).max(0.0) as usize).min(ATTRS_PER_CALL);
    let keys = shared.keys.borrow();
    for (i, &string) in strings.iter().enumerate().take(count) {
        let key_id = fast.io(IO_ATTRS_KEYS + i);
        let Some(key) = (key_id >= 0.0).then(|| keys.get(key_id as usize)).flatten() else {
            continue;
        };
        let (kind, number) = (fast.io(IO_ATTRS_TYPES + i), fast.io(IO_ATTRS_VALUES + i));
        set_io_attribute(env, tracer, handle, key.clone(), kind, number, string);
    }
}

/// A span context as JS sees it (from `extract`, or a live span's `context`).
#[napi(object)]
pub struct SpanContextObject {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The W3C trace flags (bit 0: sampled).
    pub trace_flags: u32,
    /// The `tracestate` header value, when there is one.
    pub trace_state: Option<String>,
    /// Whether the context came from another process.
    pub is_remote: bool,
}

impl From<&SpanContext> for SpanContextObject {
    fn from(ctx: &SpanContext) -> Self {
        SpanContextObject {
            trace_id: ctx.trace_id.to_hex(),
            span_id: ctx.span_id.to_hex(),
            trace_flags: u32::from(ctx.flags.bits()),
            trace_state: ctx.trace_state.header_value(MIN_PROPAGATED_TRACESTATE),
            is_remote: ctx.remote,
        }
    }
}

/// How many figures each span name has in [`TracerMetrics::span_figures`] before its buckets:
/// count, errors, p50, p95, p99, max and sum (durations in ms).
const SPAN_FIGURES_BEFORE_BUCKETS: usize = 7;

/// The figures of `names` laid out as [`TracerMetrics::span_figures`] describes.
fn span_figures(names: &[SpanNameStats]) -> Vec<f64> {
    let mut out =
        Vec::with_capacity(names.len() * (SPAN_FIGURES_BEFORE_BUCKETS + DURATION_BOUNDS_US.len()));
    for s in names {
        out.extend_from_slice(&[
            s.count as f64,
            s.errors as f64,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.max_ms,
            s.sum_ms,
        ]);
        out.extend(s.bucket_counts.iter().map(|&c| c as f64));
    }
    out
}

/// The tracer's counters and per-name span metrics.
#[napi(object)]
pub struct TracerMetrics {
    /// Spans started.
    pub started: f64,
    /// Spans started sampled.
    pub sampled: f64,
    /// Spans started unsampled.
    pub unsampled: f64,
    /// Starts refused because too many spans were live.
    pub rejected_spans: f64,
    /// Spans live now.
    pub live_spans: f64,
    /// Spans the exporter accepted.
    pub exported: f64,
    /// Sampled spans lost before export (full queue, after shutdown).
    pub dropped: f64,
    /// Failed export batches.
    pub export_errors: f64,
    /// CPU time the export thread has used, in milliseconds (encoding and sending batches).
    pub export_cpu_ms: f64,
    /// Attribute values of an unsupported type, dropped.
    pub unsupported_attributes: f64,
    /// The span names with metrics, sorted (`_other` once `maxMetricNames` names are tracked).
    pub span_names: Vec<String>,
    /// Per name, in `spanNames` order, a run of figures: count, errors (spans that ended with
    /// status error), p50, p95, p99, max and sum of the durations in ms, then for each of
    /// `durationBoundsMs` how many spans took at most that long (cumulative, the shape of a
    /// Prometheus histogram). One array instead of an object per name: the facade builds the
    /// objects, which costs a fraction of building them through the crossing.
    pub span_figures: Float64Array,
    /// The upper bounds (ms) of each name's cumulative `buckets`.
    pub duration_bounds_ms: Vec<f64>,
}

type AttributeJs = Either6<String, bool, f64, Vec<String>, Vec<bool>, Vec<f64>>;

fn attributes_js(attributes: &Attributes) -> HashMap<String, AttributeJs> {
    attributes
        .iter()
        .map(|(k, v)| {
            let value = match v {
                AttributeValue::String(s) => Either6::A(s.clone()),
                AttributeValue::Bool(b) => Either6::B(*b),
                AttributeValue::I64(i) => Either6::C(*i as f64),
                AttributeValue::F64(f) => Either6::C(*f),
                AttributeValue::StringArray(a) => Either6::D(a.clone()),
                AttributeValue::BoolArray(a) => Either6::E(a.clone()),
                AttributeValue::I64Array(a) => Either6::F(a.iter().map(|i| *i as f64).collect()),
                AttributeValue::F64Array(a) => Either6::F(a.clone()),
            };
            (k.to_string(), value)
        })
        .collect()
}

/// An event of a finished span.
#[napi(object)]
pub struct FinishedEvent {
    /// The event name (`exception` for a recorded exception).
    pub name: String,
    /// Unix time in nanoseconds, as a decimal string (exact).
    pub time_unix_nano: String,
    /// Its attributes.
    pub attributes: HashMap<String, AttributeJs>,
}

/// A span's status.
#[napi(object)]
pub struct FinishedStatus {
    /// `unset`, `ok` or `error`.
    pub code: String,
    /// The error description, when there is one.
    pub message: Option<String>,
}

/// A span the memory exporter received. Times are Unix nanoseconds as decimal strings (exact;
/// a JS number cannot hold them), plus the duration in ms as a number.
#[napi(object)]
pub struct FinishedSpan {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// Absent for a root span.
    pub parent_span_id: Option<String>,
    /// The span's name.
    pub name: String,
    /// `internal`, `server`, `client`, `producer` or `consumer`.
    pub kind: String,
    /// Start, Unix nanoseconds as a decimal string.
    pub start_time_unix_nano: String,
    /// End, Unix nanoseconds as a decimal string.
    pub end_time_unix_nano: String,
    /// End minus start, in ms.
    pub duration_ms: f64,
    /// Its attributes (within the limits).
    pub attributes: HashMap<String, AttributeJs>,
    /// Attributes dropped by the limits or for an unsupported value.
    pub dropped_attributes_count: u32,
    /// Its events (within the limits).
    pub events: Vec<FinishedEvent>,
    /// Events dropped by the limits.
    pub dropped_events_count: u32,
    /// Its status.
    pub status: FinishedStatus,
    /// The W3C trace flags.
    pub trace_flags: u32,
    /// The `tracestate` it carries, when there is one.
    pub trace_state: Option<String>,
}

impl From<&SpanData> for FinishedSpan {
    fn from(span: &SpanData) -> Self {
        let status = match &span.status {
            Status::Unset => FinishedStatus {
                code: "unset".into(),
                message: None,
            },
            Status::Ok => FinishedStatus {
                code: "ok".into(),
                message: None,
            },
            Status::Error(message) => FinishedStatus {
                code: "error".into(),
                message: (!message.is_empty()).then(|| message.clone()),
            },
        };
        FinishedSpan {
            trace_id: span.trace_id.to_hex(),
            span_id: span.span_id.to_hex(),
            parent_span_id: span.parent_span_id.map(|id| id.to_hex()),
            name: span.name.to_string(),
            kind: kind_name(span.kind).into(),
            start_time_unix_nano: span.start_unix_nanos.to_string(),
            end_time_unix_nano: span.end_unix_nanos.to_string(),
            duration_ms: span.end_unix_nanos.saturating_sub(span.start_unix_nanos) as f64 / 1e6,
            attributes: attributes_js(&span.attributes),
            dropped_attributes_count: span.dropped_attributes,
            events: span
                .events
                .iter()
                .map(|e| FinishedEvent {
                    name: e.name.clone(),
                    time_unix_nano: e.time_unix_nanos.to_string(),
                    attributes: attributes_js(&e.attributes),
                })
                .collect(),
            dropped_events_count: span.dropped_events,
            status,
            trace_flags: u32::from(span.flags.bits()),
            trace_state: span.trace_state.header_value(MIN_PROPAGATED_TRACESTATE),
        }
    }
}

/// Waits for the export pipeline off the JS thread: a flush, or a shutdown.
pub struct ExportWait {
    handle: ProcessorHandle,
    timeout: Duration,
    shutdown: bool,
}

impl Task for ExportWait {
    type Output = bool;
    type JsValue = bool;

    fn compute(&mut self) -> Result<bool> {
        Ok(if self.shutdown {
            self.handle.shutdown(self.timeout)
        } else {
            self.handle.flush(self.timeout)
        })
    }

    fn resolve(&mut self, _env: Env, output: bool) -> Result<bool> {
        Ok(output)
    }
}

/// Spans, W3C trace context, sampling, span metrics and export (the native class; see
/// `index.d.ts`).
#[napi(js_name = "DistributedTracer")]
pub struct DistributedTracerBinding {
    shared: Rc<Shared>,
    /// This tracer's slot in the thread's [`FastPath`].
    slot: u32,
    memory: Option<MemoryExporter>,
    handle: ProcessorHandle,
    export_timeout: Duration,
}

impl Drop for DistributedTracerBinding {
    fn drop(&mut self) {
        // before `shared` goes: the fast path must not hand it out again. A thread that is
        // ending may have dropped its fast path already, which then remembers nothing.
        let _ = FAST_PATH.try_with(|fast| fast.tracers.forget(self.slot));
    }
}

impl DistributedTracerBinding {
    fn with<R>(&self, f: impl FnOnce(&mut Tracer) -> R) -> R {
        f(&mut self.shared.tracer.borrow_mut())
    }
}

fn wait_timeout(default: Duration, timeout_ms: Option<f64>) -> Duration {
    timeout_ms
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map_or(default, |ms| Duration::from_millis(ms as u64))
}

#[napi]
impl DistributedTracerBinding {
    /// Creates a tracer; every option is validated and unknown options are refused.
    #[napi(constructor, ts_args_type = "options: DistributedTracerOptions")]
    pub fn new(env: Env, options: Unknown) -> Result<Self> {
        let settings = read_settings(env, options).map_err(|e| throw_invalid(env.raw(), e))?;
        let mut memory = None;
        let exporter: Box<dyn SpanExporter> = match settings.exporter {
            ExporterChoice::None => Box::new(NoopExporter),
            ExporterChoice::Console => {
                Box::new(ConsoleExporter::new(settings.config.service_name.clone()))
            }
            ExporterChoice::Memory => {
                let exporter = MemoryExporter::new();
                memory = Some(exporter.clone());
                Box::new(exporter)
            }
            ExporterChoice::Otlp {
                url,
                headers,
                protocol,
                timeout,
            } => Box::new(OtlpHttpExporter::new(OtlpHttpConfig {
                url,
                headers,
                protocol,
                timeout,
                resource: settings.resource,
            })),
        };
        let export_timeout = Duration::from_millis(settings.config.batch.export_timeout_ms);
        let tracer = Tracer::start(settings.config, settings.clock, exporter)
            .map_err(|e| throw_invalid(env.raw(), e))?;
        let handle = tracer.processor_handle();
        let shared = Rc::new(Shared {
            tracer: RefCell::new(tracer),
            unsupported_attributes: std::cell::Cell::new(0),
            keys: RefCell::new(Vec::new()),
            key_ids: RefCell::new(HashMap::new()),
        });
        let slot = FAST_PATH.with(|fast| fast.tracers.register(&shared));
        Ok(DistributedTracerBinding {
            shared,
            slot,
            memory,
            handle,
            export_timeout,
        })
    }

    /// Internal (used by the facade, once per thread): the hot-path functions, shared by every
    /// tracer of this thread, and their `io` array. Each call is for the tracer whose slot
    /// (`_fastSlot()`) is in the array's `IO_TRACER` cell.
    #[napi(
        js_name = "_fastPath",
        ts_return_type = "{ start(name?: string): void; end(): void; rename(name?: string): void; setAttr(value?: string, key?: string): void; setAttrs(...values: Array<string | undefined>): void; endWithAttrs(...values: Array<string | undefined>): void; setAttribute(handle: number, key: string, value: unknown): boolean; io: Float64Array }"
    )]
    pub fn fast_path<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let fast = FAST_PATH.with(Rc::clone);
        let io = fast.io.get() as *mut f64;
        // SAFETY: the callbacks read their data as `Rc<FastPath>`; `io` is owned by it.
        unsafe {
            raw::fast_path_object(
                env,
                &fast,
                &[
                    ("start", start),
                    ("end", end),
                    ("setAttr", set_attr),
                    ("setAttrs", set_attrs),
                    ("endWithAttrs", end_with_attrs),
                    ("rename", rename),
                    ("setAttribute", set_attribute),
                ],
                ("io", io, IO_LEN),
            )
        }
    }

    /// Internal: this tracer's slot, for the fast path's `IO_TRACER` cell.
    #[napi(js_name = "_fastSlot")]
    pub fn fast_slot(&self) -> u32 {
        self.slot
    }

    /// Internal: the id of span name `name` for the fast path (interned once; the same name
    /// gets the same id), or -1 once the tracer interns no more names (pass the name instead).
    #[napi(js_name = "_internName")]
    pub fn intern_name(&self, name: String) -> i32 {
        self.with(|t| t.intern_name(&name))
            .map_or(-1, |id| id.0 as i32)
    }

    /// Internal: the id of attribute key `key` for the fast path (interned once), or -1 once
    /// the tracer interns no more keys (pass the key instead).
    #[napi(js_name = "_internKey")]
    pub fn intern_key(&self, key: String) -> i32 {
        if let Some(&id) = self.shared.key_ids.borrow().get(&key) {
            return id as i32;
        }
        let mut keys = self.shared.keys.borrow_mut();
        if keys.len() >= MAX_INTERNED_KEYS {
            return -1;
        }
        let id = keys.len() as u32;
        keys.push(shared_key(&key));
        self.shared.key_ids.borrow_mut().insert(key, id);
        id as i32
    }

    /// Internal: starts a span whose parent is the context in `traceparent`/`tracestate` (a new
    /// trace when `traceparent` is invalid). Returns the handle.
    #[napi(js_name = "_startRemote")]
    pub fn start_remote(
        &self,
        name: String,
        kind: u32,
        traceparent: String,
        tracestate: Option<String>,
        start_time_ms: Option<f64>,
        rate: Option<f64>,
    ) -> f64 {
        let states: Vec<&str> = tracestate.as_deref().into_iter().collect();
        let parent = match SpanContext::from_headers(&[traceparent.as_str()], &states) {
            Some(ctx) => Parent::Remote(ctx),
            None => Parent::None,
        };
        let kind = KINDS.get(kind as usize).copied().unwrap_or_default();
        let start = start_time_ms.and_then(nanos_of_ms);
        let rate = rate.and_then(|r| SampleRate::new("rate", r).ok());
        let handle = self.with(|t| t.start_span_with_rate(&name, kind, parent, start, rate));
        FAST_PATH.with(|fast| fast.publish_ids(&self.shared.tracer.borrow(), handle));
        f64::from(handle.0)
    }

    /// Internal: the remote context in incoming header values, or null when `traceparent` is
    /// missing, repeated or invalid (the trace restarts; `tracestate` is then ignored).
    #[napi(js_name = "_extract")]
    pub fn extract(
        &self,
        traceparent_values: Vec<String>,
        tracestate_values: Vec<String>,
    ) -> Option<SpanContextObject> {
        let tp: Vec<&str> = traceparent_values.iter().map(String::as_str).collect();
        let ts: Vec<&str> = tracestate_values.iter().map(String::as_str).collect();
        SpanContext::from_headers(&tp, &ts).map(|ctx| SpanContextObject::from(&ctx))
    }

    /// Internal: the live span's `traceparent`, or null once it has ended.
    #[napi(js_name = "_traceparent")]
    pub fn traceparent(&self, handle: u32) -> Option<String> {
        self.with(|t| t.traceparent(SpanHandle(handle)))
    }

    /// Internal: the live span's `tracestate`, or null when empty or ended.
    #[napi(js_name = "_tracestate")]
    pub fn tracestate(&self, handle: u32) -> Option<String> {
        self.with(|t| t.context(SpanHandle(handle)))
            .and_then(|ctx| ctx.trace_state.header_value(MIN_PROPAGATED_TRACESTATE))
    }

    /// Internal: the live span's context, or null once it has ended.
    #[napi(js_name = "_context")]
    pub fn context(&self, handle: u32) -> Option<SpanContextObject> {
        self.with(|t| t.context(SpanHandle(handle)))
            .map(|ctx| SpanContextObject::from(&ctx))
    }

    /// Internal: adds an event; whether it was stored.
    #[napi(
        js_name = "_addEvent",
        ts_args_type = "handle: number, name: string, attributes?: Record<string, unknown>, timeMs?: number"
    )]
    pub fn add_event(
        &self,
        env: Env,
        handle: u32,
        name: String,
        attributes: Unknown,
        time_ms: Option<f64>,
    ) -> Result<bool> {
        let handle = SpanHandle(handle);
        if !handle.is_recording() {
            return Ok(false);
        }
        let (attributes, _) = read_attributes(env.raw(), attributes.raw(), "attributes")
            .map_err(|e| throw_invalid(env.raw(), e))?;
        let time = time_ms.and_then(nanos_of_ms);
        Ok(self.with(|t| t.add_event(handle, &name, attributes, time)))
    }

    /// Internal: records an `exception` event; whether it was stored.
    #[napi(js_name = "_recordException")]
    pub fn record_exception(
        &self,
        handle: u32,
        exception_type: String,
        message: String,
        stack: Option<String>,
    ) -> bool {
        self.with(|t| {
            t.record_exception(
                SpanHandle(handle),
                &exception_type,
                &message,
                stack.as_deref(),
                None,
            )
        })
    }

    /// Internal: sets the status (`ok`, `error` or `unset`); whether the span was live.
    #[napi(js_name = "_setStatus")]
    pub fn set_status(
        &self,
        env: Env,
        handle: u32,
        code: String,
        message: Option<String>,
    ) -> Result<bool> {
        let status = match code.as_str() {
            "ok" => Status::Ok,
            "error" => Status::Error(message.unwrap_or_default()),
            "unset" => Status::Unset,
            other => {
                return Err(throw_invalid(
                    env.raw(),
                    InvalidInput::argument_range(format!(
                        "code must be 'ok', 'error' or 'unset', received string \"{other}\""
                    )),
                ))
            }
        };
        Ok(self.with(|t| t.set_status(SpanHandle(handle), status)))
    }

    /// Internal: renames the span; whether it was live.
    #[napi(js_name = "_updateName")]
    pub fn update_name(&self, handle: u32, name: String) -> bool {
        self.with(|t| t.update_name(SpanHandle(handle), &name))
    }

    /// The tracer's counters and per-name span metrics (sampled and unsampled spans alike).
    #[napi]
    pub fn metrics(&self) -> TracerMetrics {
        let (stats, names) = self.with(|t| (t.stats(), t.metrics_snapshot()));
        TracerMetrics {
            started: stats.started as f64,
            sampled: stats.sampled as f64,
            unsampled: stats.unsampled as f64,
            rejected_spans: stats.rejected_spans as f64,
            live_spans: stats.live_spans as f64,
            exported: stats.exported as f64,
            dropped: stats.dropped as f64,
            export_errors: stats.export_errors as f64,
            export_cpu_ms: stats.export_cpu_nanos as f64 / 1e6,
            unsupported_attributes: self.shared.unsupported_attributes.get() as f64,
            span_names: names.iter().map(|s| s.name.clone()).collect(),
            span_figures: Float64Array::new(span_figures(&names)),
            duration_bounds_ms: DURATION_BOUNDS_US
                .iter()
                .map(|&bound| bound as f64 / 1_000.0)
                .collect(),
        }
    }

    /// The spans the `'memory'` exporter has received (after a flush, or a scheduled export),
    /// oldest first. Empty with any other exporter.
    #[napi]
    pub fn finished_spans(&self) -> Vec<FinishedSpan> {
        self.memory.as_ref().map_or_else(Vec::new, |m| {
            m.snapshot().iter().map(FinishedSpan::from).collect()
        })
    }

    /// Forgets the spans the `'memory'` exporter has received.
    #[napi]
    pub fn reset_finished_spans(&self) {
        if let Some(m) = &self.memory {
            m.take();
        }
    }

    /// Exports every span ended so far; resolves with whether it finished within `timeoutMs`
    /// (default: the batch export timeout). The wait happens off the JS thread.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn flush(&self, timeout_ms: Option<f64>) -> AsyncTask<ExportWait> {
        AsyncTask::new(ExportWait {
            handle: self.handle.clone(),
            timeout: wait_timeout(self.export_timeout, timeout_ms),
            shutdown: false,
        })
    }

    /// Flushes and stops the export thread; spans ended later are dropped and counted. Resolves
    /// with whether everything finished within `timeoutMs` (default: the batch export timeout).
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn shutdown(&self, timeout_ms: Option<f64>) -> AsyncTask<ExportWait> {
        AsyncTask::new(ExportWait {
            handle: self.handle.clone(),
            timeout: wait_timeout(self.export_timeout, timeout_ms),
            shutdown: true,
        })
    }

    /// The `service.name` spans are exported under.
    #[napi(getter)]
    pub fn service_name(&self) -> String {
        self.with(|t| t.service_name().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(check_url("u", "http://127.0.0.1:4318/v1/traces").is_ok());
        assert!(check_url("u", "https://collector/v1/traces").is_ok());
        assert!(check_url("u", "ftp://x").is_err());
        assert!(check_url("u", "http://").is_err());
        assert!(check_url("u", "not a url").is_err());
        assert!(check_url("u", "http://a b").is_err());
        assert!(check_url("u", "http://[::1]:4318/v1/traces").is_ok());
        assert!(check_url("u", "http://localhost").is_ok());
        assert!(check_url("u", "http://host:/v1/traces").is_ok());
        assert!(check_url("u", "https://u:p@collector.example.com:443/v1/traces?x=1").is_ok());
        // what the parser ureq sends with refuses, or reads as another address
        for url in [
            "http://[::1",
            "http://host:99999/x",
            "http://host:0/x",
            "http://[::1]:70000/x",
            "http://user@:80/",
            "http://:80/",
            "http://h%zz/",
            "http://h\u{e9}/x",
        ] {
            let err = check_url("options.exporter.otlp.url", url).unwrap_err();
            assert!(err.message.contains(url), "{url}: {}", err.message);
        }
    }

    #[test]
    fn millis_become_exact_nanos() {
        assert_eq!(
            nanos_of_ms(1_700_000_000_250.0),
            Some(1_700_000_000_250_000_000)
        );
        assert_eq!(nanos_of_ms(1.5), Some(1_500_000));
        assert_eq!(nanos_of_ms(-1.0), None);
        assert_eq!(nanos_of_ms(f64::NAN), None);
    }

    #[test]
    fn numbers_become_ints_when_integral() {
        assert_eq!(number_attribute(3.0), AttributeValue::I64(3));
        assert_eq!(number_attribute(1.5), AttributeValue::F64(1.5));
        assert!(matches!(number_attribute(f64::NAN), AttributeValue::F64(_)));
    }
}
