//! The span data model: what a span records between its start and its end, with the
//! OpenTelemetry limits enforced as it is written.
//!
//! A [`SpanData`] is both the live span (its mutating methods are what `Span.setAttribute`,
//! `addEvent`, `recordException`, `setStatus`, `updateName` and `end` call) and the finished
//! record the exporter encodes (`otlp`). Every rule lives in a method so that the binding cannot
//! bypass it:
//!
//! - Limits follow the OpenTelemetry SDK defaults (128 attributes, 128 events, 128 attributes
//!   per event, no value length limit). What goes over a limit is dropped and counted, because
//!   OTLP carries the counts (`dropped_attributes_count`, `dropped_events_count`) and a backend
//!   can then say "this span lost data" instead of silently showing less.
//! - Setting an existing key replaces its value in place, even when the span is full: the key is
//!   already counted, and the spec says "Setting an attribute with the same key as an existing
//!   attribute SHOULD overwrite the existing attribute's value".
//! - A string longer than `max_value_length` is cut to that many characters (Unicode scalar
//!   values, never inside one), each element of a string array likewise; the OTel SDK spec counts
//!   "any character in it as 1".
//! - Status: `Unset` is ignored, `Ok` is final, `Error` may be replaced by `Ok` or by a later
//!   `Error` ("When span status is set to Ok it SHOULD be considered final and any further
//!   attempts to change it SHOULD be ignored").
//! - After `end`, every mutation is ignored, a second `end` included, as the spec asks of ended
//!   spans; the `ended` flag is what makes that cheap to check.

use compact_str::CompactString;

use super::context::{TraceFlags, TraceState};
use super::ids::{SpanId, TraceId};

/// What role a span plays in a trace, as OTLP's `Span.SpanKind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SpanKind {
    /// An operation inside the application (the default).
    #[default]
    Internal,
    /// The handling of a synchronous incoming request.
    Server,
    /// A synchronous outgoing request.
    Client,
    /// The start of an asynchronous message (enqueue, publish).
    Producer,
    /// The handling of an asynchronous message.
    Consumer,
}

/// An attribute value: a primitive or a homogeneous array of one, which is all OTel's attribute
/// type allows.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// A string.
    String(String),
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    I64(i64),
    /// A double.
    F64(f64),
    /// An array of strings.
    StringArray(Vec<String>),
    /// An array of booleans.
    BoolArray(Vec<bool>),
    /// An array of integers.
    I64Array(Vec<i64>),
    /// An array of doubles.
    F64Array(Vec<f64>),
}

impl AttributeValue {
    /// This value with every string cut to at most `max_chars` characters.
    fn truncated(mut self, max_chars: Option<usize>) -> Self {
        if let Some(max) = max_chars {
            match &mut self {
                AttributeValue::String(s) => truncate_chars(s, max),
                AttributeValue::StringArray(items) => {
                    for s in items {
                        truncate_chars(s, max);
                    }
                }
                _ => {}
            }
        }
        self
    }
}

impl From<&str> for AttributeValue {
    fn from(s: &str) -> Self {
        AttributeValue::String(s.to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(s: String) -> Self {
        AttributeValue::String(s)
    }
}

impl From<bool> for AttributeValue {
    fn from(b: bool) -> Self {
        AttributeValue::Bool(b)
    }
}

impl From<i64> for AttributeValue {
    fn from(i: i64) -> Self {
        AttributeValue::I64(i)
    }
}

impl From<f64> for AttributeValue {
    fn from(f: f64) -> Self {
        AttributeValue::F64(f)
    }
}

/// Cuts `s` to at most `max` characters; `char_indices` only yields boundaries, so the cut never
/// splits a multi-byte character.
fn truncate_chars(s: &mut String, max: usize) {
    if let Some((byte, _)) = s.char_indices().nth(max) {
        s.truncate(byte);
    }
}

/// An ordered attribute list: keys unique, in first-set order (the order OTLP will carry).
/// An attribute key: short keys (24 bytes or fewer, which is nearly all of them) are stored
/// inline, with no allocation.
pub type AttributeKey = CompactString;

/// Attributes in the order they were first set, keys unique.
pub type Attributes = Vec<(AttributeKey, AttributeValue)>;

/// Longest key [`shared_key`] keeps for the life of the process.
const SHARED_KEY_MAX_BYTES: usize = 256;
/// Most keys [`shared_key`] keeps for the life of the process, across all tracers.
const SHARED_KEYS_MAX: usize = 4096;

/// An attribute key whose copies allocate nothing, for keys that are set over and over (the
/// binding's interned keys). A key of 24 bytes or fewer is inline anyway. A longer one
/// (`http.response.status_code` is 25) would be a heap allocation on every span; it is kept
/// instead in a process-wide table of keys that are never freed, which every tracer shares,
/// and a copy points there. The table holds at most 4096 keys of at most 256 bytes (about
/// 1 MiB); past that a key is an ordinary allocated one.
pub fn shared_key(key: &str) -> AttributeKey {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static KEYS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    if key.len() <= 24 || key.len() > SHARED_KEY_MAX_BYTES {
        return AttributeKey::from(key);
    }
    let mut keys = KEYS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(&kept) = keys.get(key) {
        return AttributeKey::const_new(kept);
    }
    if keys.len() >= SHARED_KEYS_MAX {
        return AttributeKey::from(key);
    }
    let kept: &'static str = Box::leak(key.to_owned().into_boxed_str());
    keys.insert(kept);
    AttributeKey::const_new(kept)
}

/// Sets `key` in `attrs` under a count limit. Returns `false` (and counts a drop) when the key is
/// new and the list is full, or the key is empty (the spec: "The attribute key MUST be a non-null
/// and non-empty string").
fn set_limited<K: AsRef<str> + Into<AttributeKey>>(
    attrs: &mut Attributes,
    dropped: &mut u32,
    max: usize,
    max_value_length: Option<usize>,
    key: K,
    value: AttributeValue,
) -> bool {
    let text = key.as_ref();
    if text.is_empty() {
        *dropped = dropped.saturating_add(1);
        return false;
    }
    // Linear search: at most 128 entries of short keys, which beats hashing and keeps order.
    if let Some(slot) = attrs.iter_mut().find(|(k, _)| k == text) {
        slot.1 = value.truncated(max_value_length);
        return true;
    }
    if attrs.len() >= max {
        *dropped = dropped.saturating_add(1);
        return false;
    }
    attrs.push((key.into(), value.truncated(max_value_length)));
    true
}

/// The per-span limits; `Default` is the OpenTelemetry SDK's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanLimits {
    /// Most attributes on a span.
    pub max_attributes: usize,
    /// Most events on a span.
    pub max_events: usize,
    /// Most attributes on one event.
    pub max_attributes_per_event: usize,
    /// Longest string value, in characters; `None` is unlimited.
    pub max_value_length: Option<usize>,
}

impl Default for SpanLimits {
    fn default() -> Self {
        SpanLimits {
            max_attributes: 128,
            max_events: 128,
            max_attributes_per_event: 128,
            max_value_length: None,
        }
    }
}

/// A time-stamped annotation of a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event's name (`exception` for a recorded exception).
    pub name: String,
    /// When it happened, in nanoseconds since the Unix epoch.
    pub time_unix_nanos: u64,
    /// Its attributes, within `max_attributes_per_event`.
    pub attributes: Attributes,
    /// How many of its attributes were dropped.
    pub dropped: u32,
}

/// The outcome of a span's operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Status {
    /// Not set (the default): neither success nor failure was reported.
    #[default]
    Unset,
    /// Explicitly successful; final.
    Ok,
    /// Failed, with a description (possibly empty).
    Error(String),
}

/// A span: its identity, timing, attributes, events and status.
///
/// The fields are public for reading (the exporter walks them); write through the methods, which
/// apply the limits and ignore calls after [`SpanData::end`].
#[derive(Clone, Debug, PartialEq)]
pub struct SpanData {
    /// The trace the span belongs to.
    pub trace_id: TraceId,
    /// The span's own id.
    pub span_id: SpanId,
    /// The parent span, `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// The operation's name (inline, with no allocation, up to 24 bytes).
    pub name: CompactString,
    /// The span's role.
    pub kind: SpanKind,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// End time, nanoseconds since the Unix epoch; 0 until the span ends.
    pub end_unix_nanos: u64,
    /// The attributes, ordered, unique keys.
    pub attributes: Attributes,
    /// Attributes dropped by the limit or for an empty key.
    pub dropped_attributes: u32,
    /// The events, in the order added.
    pub events: Vec<Event>,
    /// Events dropped by the limit.
    pub dropped_events: u32,
    /// The outcome.
    pub status: Status,
    /// Vendor state of the span's context.
    pub trace_state: TraceState,
    /// Trace flags of the span's context (sampled, random).
    pub flags: TraceFlags,
    limits: SpanLimits,
    ended: bool,
    string_pool: StringPool,
}

/// The longest attribute or event list a reused span keeps the memory of (see
/// [`SpanData::reuse`]): a span with hundreds of attributes does not pin that much memory in
/// every span made after it.
pub const REUSED_LIST_CAPACITY: usize = 32;

/// The longest string value a reused span keeps the memory of (see [`StringPool`]).
const REUSED_STRING_CAPACITY: usize = 1024;

/// Emptied strings of the attribute values of the span this one reuses, kept for its own string
/// values (see [`SpanData::set_attribute_str`]): a span made for a request in the memory of an
/// exported one sets its method, path and address in strings it already holds, where each used
/// to be allocated on the JS thread and freed there at the next reuse (measured in an Express
/// server at about 0.8 µs a request of malloc and free). Spare capacity, not data: it takes no
/// part in a span's equality, and its `Debug` shows only its length.
#[derive(Clone, Default)]
struct StringPool(Vec<String>);

impl PartialEq for StringPool {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for StringPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StringPool({})", self.0.len())
    }
}

impl SpanData {
    /// A started span with no attributes, events or status; kind, trace state and flags take
    /// their defaults and may be set through the public fields before the span is shared.
    pub fn new(
        trace_id: TraceId,
        span_id: SpanId,
        parent_span_id: Option<SpanId>,
        name: impl Into<CompactString>,
        start_unix_nanos: u64,
        limits: SpanLimits,
    ) -> Self {
        SpanData {
            trace_id,
            span_id,
            parent_span_id,
            name: name.into(),
            kind: SpanKind::Internal,
            start_unix_nanos,
            end_unix_nanos: 0,
            attributes: Vec::new(),
            dropped_attributes: 0,
            events: Vec::new(),
            dropped_events: 0,
            status: Status::Unset,
            trace_state: TraceState::new(),
            flags: TraceFlags::empty(),
            limits,
            ended: false,
            string_pool: StringPool::default(),
        }
    }

    /// Makes this (ended, exported) span a new started span, as [`Self::new`] would, keeping
    /// the attribute and event lists' capacity (up to [`REUSED_LIST_CAPACITY`] entries) and,
    /// emptied, the strings of its string values (see [`StringPool`]), so that a span like the
    /// one before it allocates nothing. The old values are dropped here, on the thread that made
    /// them. Field by field rather than `*self = SpanData { attributes, events, ..new(..) }`:
    /// that built and moved a whole new span and cost 30-40 ns more per sampled span. A field
    /// added to the span must be reset here too (the tracer test
    /// `a_reused_span_carries_nothing_of_the_span_before_it` checks the ones a span can carry).
    pub fn reuse(
        &mut self,
        trace_id: TraceId,
        span_id: SpanId,
        parent_span_id: Option<SpanId>,
        name: &str,
        start_unix_nanos: u64,
        limits: SpanLimits,
    ) {
        self.trace_id = trace_id;
        self.span_id = span_id;
        self.parent_span_id = parent_span_id;
        self.name.clear();
        self.name.push_str(name);
        self.kind = SpanKind::Internal;
        self.start_unix_nanos = start_unix_nanos;
        self.end_unix_nanos = 0;
        let pool = &mut self.string_pool.0;
        for (_, value) in self.attributes.drain(..) {
            if let AttributeValue::String(mut text) = value {
                if pool.len() < REUSED_LIST_CAPACITY && text.capacity() <= REUSED_STRING_CAPACITY {
                    text.clear();
                    pool.push(text);
                }
            }
        }
        if self.attributes.capacity() > REUSED_LIST_CAPACITY {
            self.attributes = Vec::new();
        }
        self.dropped_attributes = 0;
        self.events.clear();
        if self.events.capacity() > REUSED_LIST_CAPACITY {
            self.events = Vec::new();
        }
        self.dropped_events = 0;
        self.status = Status::Unset;
        self.trace_state = TraceState::new();
        self.flags = TraceFlags::empty();
        self.limits = limits;
        self.ended = false;
    }

    /// The limits this span enforces.
    pub fn limits(&self) -> SpanLimits {
        self.limits
    }

    /// Whether [`Self::end`] has been called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Sets one attribute. Returns whether it was stored: `false` when the span has ended, or the
    /// attribute was dropped (new key over the limit, or empty key), which is also counted.
    /// The key is a `&str`, or an [`AttributeKey`] the caller already holds (an interned key,
    /// stored without copying it).
    pub fn set_attribute<K: AsRef<str> + Into<AttributeKey>>(
        &mut self,
        key: K,
        value: impl Into<AttributeValue>,
    ) -> bool {
        if self.ended {
            return false;
        }
        set_limited(
            &mut self.attributes,
            &mut self.dropped_attributes,
            self.limits.max_attributes,
            self.limits.max_value_length,
            key,
            value.into(),
        )
    }

    /// Sets a string attribute, as [`Self::set_attribute`] does, in a string kept from the span
    /// this one reuses when there is one (see [`SpanData::reuse`]): no allocation then.
    pub fn set_attribute_str<K: AsRef<str> + Into<AttributeKey>>(
        &mut self,
        key: K,
        value: &str,
    ) -> bool {
        if self.ended {
            return false;
        }
        let mut text = self.string_pool.0.pop().unwrap_or_default();
        text.push_str(value);
        self.set_attribute(key, AttributeValue::String(text))
    }

    /// Sets several attributes in order, as repeated [`Self::set_attribute`] calls.
    pub fn set_attributes<K: AsRef<str>>(
        &mut self,
        attributes: impl IntoIterator<Item = (K, AttributeValue)>,
    ) {
        for (key, value) in attributes {
            self.set_attribute(key.as_ref(), value);
        }
    }

    /// Counts an attribute the binding could not accept (a value of an unsupported type, a mixed
    /// array), so that the drop shows in `dropped_attributes_count` like a limit drop does.
    pub fn count_dropped_attribute(&mut self) {
        if !self.ended {
            self.dropped_attributes = self.dropped_attributes.saturating_add(1);
        }
    }

    /// Adds an event with its attributes (duplicate keys: the last wins). Returns whether it was
    /// stored; over `max_events` it is dropped and counted.
    pub fn add_event<K: AsRef<str>>(
        &mut self,
        name: impl Into<String>,
        time_unix_nanos: u64,
        attributes: impl IntoIterator<Item = (K, AttributeValue)>,
    ) -> bool {
        if self.ended {
            return false;
        }
        if self.events.len() >= self.limits.max_events {
            self.dropped_events = self.dropped_events.saturating_add(1);
            return false;
        }
        let mut event = Event {
            name: name.into(),
            time_unix_nanos,
            attributes: Vec::new(),
            dropped: 0,
        };
        for (key, value) in attributes {
            set_limited(
                &mut event.attributes,
                &mut event.dropped,
                self.limits.max_attributes_per_event,
                self.limits.max_value_length,
                key.as_ref(),
                value,
            );
        }
        self.events.push(event);
        true
    }

    /// Records an exception as an `exception` event with the semantic-convention attributes
    /// `exception.type`, `exception.message` and, when given, `exception.stacktrace`. It does not
    /// change the status: the spec leaves that to the caller, since a handled exception need not
    /// fail the operation. Returns whether the event was stored, as [`Self::add_event`].
    pub fn record_exception(
        &mut self,
        time_unix_nanos: u64,
        exception_type: &str,
        message: &str,
        stacktrace: Option<&str>,
    ) -> bool {
        let mut attributes: Attributes = vec![
            ("exception.type".into(), exception_type.into()),
            ("exception.message".into(), message.into()),
        ];
        if let Some(stack) = stacktrace {
            attributes.push(("exception.stacktrace".into(), stack.into()));
        }
        self.add_event("exception", time_unix_nanos, attributes)
    }

    /// Sets the status under the OTel rules: `Unset` is ignored, `Ok` is final, `Error` replaces
    /// `Unset` or an earlier `Error`.
    pub fn set_status(&mut self, status: Status) {
        if self.ended || status == Status::Unset || self.status == Status::Ok {
            return;
        }
        self.status = status;
    }

    /// Renames the span (a router often knows the route only after the span started).
    pub fn update_name(&mut self, name: impl Into<CompactString>) {
        if !self.ended {
            self.name = name.into();
        }
    }

    /// Ends the span at `end_unix_nanos`. Returns `true` on the call that ended it, `false` on
    /// every later call, which changes nothing.
    ///
    /// An end before the start is clamped to the start: wall clocks step backwards now and then,
    /// and a negative duration would break every latency figure downstream.
    pub fn end(&mut self, end_unix_nanos: u64) -> bool {
        if self.ended {
            return false;
        }
        self.end_unix_nanos = end_unix_nanos.max(self.start_unix_nanos);
        self.ended = true;
        true
    }

    /// How long the span lasted, once ended.
    pub fn duration_nanos(&self) -> Option<u64> {
        self.ended
            .then(|| self.end_unix_nanos - self.start_unix_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn span(limits: SpanLimits) -> SpanData {
        SpanData::new(
            TraceId::from_bytes([1; 16]),
            SpanId::from_bytes([2; 8]),
            None,
            "GET /",
            1_000,
            limits,
        )
    }

    fn no_attrs() -> Attributes {
        Vec::new()
    }

    #[test]
    fn defaults_are_otel_defaults() {
        let l = SpanLimits::default();
        assert_eq!(
            (l.max_attributes, l.max_events, l.max_attributes_per_event),
            (128, 128, 128)
        );
        assert_eq!(l.max_value_length, None);
        let s = span(l);
        assert_eq!(s.kind, SpanKind::Internal);
        assert_eq!(s.status, Status::Unset);
        assert!(!s.is_ended());
    }

    #[test]
    fn a_reused_span_sets_its_strings_in_the_memory_of_the_last_ones() {
        let mut s = span(SpanLimits::default());
        s.set_attribute_str("method", "GET");
        s.set_attribute_str("path", "/api/budget");
        s.set_attribute("n", 1i64);
        let kept: Vec<*const u8> = s
            .attributes
            .iter()
            .filter_map(|(_, v)| match v {
                AttributeValue::String(text) => Some(text.as_ptr()),
                _ => None,
            })
            .collect();
        s.end(2_000);
        let twin = s.clone();
        s.reuse(
            TraceId::from_bytes([3; 16]),
            SpanId::from_bytes([4; 8]),
            None,
            "GET /",
            3_000,
            SpanLimits::default(),
        );
        assert!(s.attributes.is_empty());
        assert_eq!(s.string_pool.0.len(), 2);
        // the pool is capacity, not data: a span with one equals one without
        assert_eq!(twin, twin.clone());
        s.set_attribute_str("address", "127.0.0.1");
        s.set_attribute_str("path", "/");
        s.set_attribute_str("third", "needs a new string");
        assert_eq!(
            s.attributes,
            vec![
                ("address".into(), AttributeValue::String("127.0.0.1".into())),
                ("path".into(), AttributeValue::String("/".into())),
                (
                    "third".into(),
                    AttributeValue::String("needs a new string".into())
                ),
            ]
        );
        let reused: Vec<*const u8> = s.attributes[..2]
            .iter()
            .filter_map(|(_, v)| match v {
                AttributeValue::String(text) => Some(text.as_ptr()),
                _ => None,
            })
            .collect();
        assert!(
            reused.iter().all(|p| kept.contains(p)),
            "the kept strings are reused"
        );
        assert!(s.string_pool.0.is_empty());

        // the span's limits still apply to a pooled string, and an ended span takes nothing
        let mut limited = span(SpanLimits {
            max_value_length: Some(3),
            ..SpanLimits::default()
        });
        assert!(limited.set_attribute_str("k", "abcdef"));
        assert_eq!(
            limited.attributes[0].1,
            AttributeValue::String("abc".into())
        );
        limited.end(2_000);
        assert!(!limited.set_attribute_str("late", "x"));
    }

    #[test]
    fn setting_a_key_again_replaces_in_place() {
        let mut s = span(SpanLimits::default());
        s.set_attribute("a", 1i64);
        s.set_attribute("b", true);
        s.set_attribute("a", "x");
        assert_eq!(
            s.attributes,
            vec![
                ("a".into(), AttributeValue::String("x".into())),
                ("b".into(), AttributeValue::Bool(true)),
            ]
        );
        assert_eq!(s.dropped_attributes, 0);
    }

    #[test]
    fn attributes_over_the_limit_are_dropped_and_counted_but_existing_keys_update() {
        let mut s = span(SpanLimits {
            max_attributes: 2,
            ..SpanLimits::default()
        });
        assert!(s.set_attribute("a", 1i64));
        assert!(s.set_attribute("b", 2i64));
        assert!(!s.set_attribute("c", 3i64));
        assert!(!s.set_attribute("d", 4i64));
        assert!(s.set_attribute("a", 10i64));
        assert_eq!(s.attributes.len(), 2);
        assert_eq!(s.attributes[0].1, AttributeValue::I64(10));
        assert_eq!(s.dropped_attributes, 2);
    }

    #[test]
    fn empty_keys_and_unsupported_values_are_counted() {
        let mut s = span(SpanLimits::default());
        assert!(!s.set_attribute("", 1i64));
        s.count_dropped_attribute();
        assert!(s.attributes.is_empty());
        assert_eq!(s.dropped_attributes, 2);
    }

    #[test]
    fn long_strings_are_cut_at_a_char_boundary() {
        let mut s = span(SpanLimits {
            max_value_length: Some(3),
            ..SpanLimits::default()
        });
        s.set_attribute("ascii", "abcdef");
        s.set_attribute("multi", "héé€x");
        s.set_attribute("short", "ab");
        s.set_attribute(
            "arr",
            AttributeValue::StringArray(vec!["€€€€".into(), "a".into()]),
        );
        s.set_attribute("num", 123_456i64);
        let get = |k: &str| {
            s.attributes
                .iter()
                .find(|(key, _)| key == k)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(get("ascii"), AttributeValue::String("abc".into()));
        assert_eq!(get("multi"), AttributeValue::String("héé".into()));
        assert_eq!(get("short"), AttributeValue::String("ab".into()));
        assert_eq!(
            get("arr"),
            AttributeValue::StringArray(vec!["€€€".into(), "a".into()])
        );
        assert_eq!(get("num"), AttributeValue::I64(123_456));
    }

    #[test]
    fn set_attributes_applies_in_order() {
        let mut s = span(SpanLimits::default());
        s.set_attributes(vec![
            ("a", AttributeValue::I64(1)),
            ("b", AttributeValue::F64(0.5)),
            ("a", AttributeValue::I64(2)),
        ]);
        assert_eq!(s.attributes.len(), 2);
        assert_eq!(s.attributes[0].1, AttributeValue::I64(2));
    }

    #[test]
    fn events_over_the_limit_are_dropped_and_counted() {
        let mut s = span(SpanLimits {
            max_events: 2,
            ..SpanLimits::default()
        });
        assert!(s.add_event("one", 1, no_attrs()));
        assert!(s.add_event("two", 2, no_attrs()));
        assert!(!s.add_event("three", 3, no_attrs()));
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.dropped_events, 1);
        assert_eq!(s.events[1].name, "two");
        assert_eq!(s.events[1].time_unix_nanos, 2);
    }

    #[test]
    fn event_attributes_have_their_own_limit_and_truncation() {
        let mut s = span(SpanLimits {
            max_attributes_per_event: 1,
            max_value_length: Some(2),
            ..SpanLimits::default()
        });
        s.add_event(
            "e",
            5,
            vec![
                ("k", AttributeValue::from("long")),
                ("other", AttributeValue::Bool(true)),
                ("k", AttributeValue::from("xyz")),
            ],
        );
        let e = &s.events[0];
        assert_eq!(
            e.attributes,
            vec![("k".into(), AttributeValue::String("xy".into()))]
        );
        assert_eq!(e.dropped, 1);
        assert_eq!(s.dropped_attributes, 0);
    }

    #[test]
    fn record_exception_uses_semantic_conventions() {
        let mut s = span(SpanLimits::default());
        s.record_exception(7, "TypeError", "boom", Some("at f (x.js:1:1)"));
        s.record_exception(8, "Error", "no stack", None);
        let e = &s.events[0];
        assert_eq!(e.name, "exception");
        assert_eq!(e.time_unix_nanos, 7);
        assert_eq!(
            e.attributes,
            vec![
                ("exception.type".into(), "TypeError".into()),
                ("exception.message".into(), "boom".into()),
                ("exception.stacktrace".into(), "at f (x.js:1:1)".into()),
            ]
        );
        assert_eq!(s.events[1].attributes.len(), 2);
        assert_eq!(s.status, Status::Unset, "recording does not set the status");
    }

    #[test]
    fn status_rules() {
        let mut s = span(SpanLimits::default());
        s.set_status(Status::Unset);
        assert_eq!(s.status, Status::Unset);
        s.set_status(Status::Error("first".into()));
        s.set_status(Status::Unset);
        assert_eq!(s.status, Status::Error("first".into()));
        s.set_status(Status::Error("second".into()));
        assert_eq!(s.status, Status::Error("second".into()));
        s.set_status(Status::Ok);
        assert_eq!(s.status, Status::Ok);
        s.set_status(Status::Error("late".into()));
        s.set_status(Status::Unset);
        assert_eq!(s.status, Status::Ok, "Ok is final");
    }

    #[test]
    fn end_is_idempotent_and_freezes_the_span() {
        let mut s = span(SpanLimits::default());
        s.set_attribute("before", 1i64);
        assert!(s.end(5_000));
        assert!(s.is_ended());
        assert!(!s.end(9_000));
        assert_eq!(s.end_unix_nanos, 5_000);
        assert_eq!(s.duration_nanos(), Some(4_000));

        let frozen = s.clone();
        assert!(!s.set_attribute("after", 2i64));
        s.set_attributes(vec![("x", AttributeValue::Bool(true))]);
        s.count_dropped_attribute();
        assert!(!s.add_event("e", 6_000, no_attrs()));
        assert!(!s.record_exception(6_000, "E", "m", None));
        s.set_status(Status::Error("late".into()));
        s.update_name("renamed");
        assert_eq!(s, frozen, "calls after end change nothing");
    }

    #[test]
    fn end_before_start_is_clamped_and_name_updates_before_end() {
        let mut s = span(SpanLimits::default());
        assert_eq!(s.duration_nanos(), None);
        s.update_name("GET /users/:id");
        assert_eq!(s.name, "GET /users/:id");
        s.end(10);
        assert_eq!(s.end_unix_nanos, 1_000);
        assert_eq!(s.duration_nanos(), Some(0));
    }

    proptest! {
        #[test]
        fn attribute_limits_hold(
            max in 0usize..8,
            ops in proptest::collection::vec((0u8..12, any::<i64>()), 0..40),
        ) {
            let mut s = span(SpanLimits { max_attributes: max, ..SpanLimits::default() });
            let mut last = std::collections::HashMap::new();
            let mut dropped = 0u32;
            for (k, v) in &ops {
                let key = format!("k{k}");
                if s.set_attribute(&key, *v) {
                    last.insert(key, *v);
                } else {
                    dropped += 1;
                }
            }
            prop_assert!(s.attributes.len() <= max);
            prop_assert_eq!(s.dropped_attributes, dropped);
            let mut keys: Vec<_> = s.attributes.iter().map(|(k, _)| k.clone()).collect();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), s.attributes.len(), "keys are unique");
            for (k, v) in &s.attributes {
                prop_assert_eq!(v, &AttributeValue::I64(last[k.as_str()]), "last write wins");
            }
        }

        #[test]
        fn truncation_keeps_a_prefix_of_at_most_max_chars(text in "\\PC{0,20}", max in 0usize..10) {
            let mut cut = text.clone();
            truncate_chars(&mut cut, max);
            prop_assert!(text.starts_with(&cut));
            prop_assert_eq!(cut.chars().count(), text.chars().count().min(max));
        }
    }
}
