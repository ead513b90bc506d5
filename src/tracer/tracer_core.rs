//! The tracer itself: starts spans, decides their sampling, holds them while they are live,
//! feeds every ended span into the span metrics and hands the sampled ones to the export
//! pipeline. The `DistributedTracer` binding wraps one [`Tracer`] and forwards to it.
//!
//! **Handles, not objects.** A JS `Span` holds a [`SpanHandle`], a `u32`, so that every span
//! call crosses a number rather than an object (the crossing-cost rule of ARCHITECTURE.md). The
//! handle indexes a slab: a `Vec` of slots plus a free list of vacant slot indices. Its bits:
//!
//! ```text
//!  31 30   29          28 ........ 18   17 ........... 0
//! [ 0  0 ][recording][generation 11][slot index 18 bits]
//! ```
//!
//! - 30 bits in all, so that a handle is a small integer in V8 (a Smi: below 2^30) and a JS
//!   `Span` keeps it without allocating a heap number.
//! - The slot index allows 2^18 = 262,144 slots, the ceiling (and default) of
//!   [`TracerConfig::max_live_spans`]: spans live at once, which is requests in flight times
//!   the spans each holds open.
//! - The generation is bumped every time a slot is freed, so the handle of an ended span stops
//!   matching its slot at once, and stays rejected after the slot is reused. It cycles through
//!   1..=2047 and is never 0, so no issued handle is 0 and [`SpanHandle::NONE`] (0) is never
//!   live. The residual risk is known and bounded: a stale handle kept while its slot is reused
//!   exactly a multiple of 2047 times would alias the live span; a 32-bit handle cannot close
//!   that window, only narrow it (a JS double could carry a 52-bit handle if it ever matters).
//! - The top bit says whether the span is recording (sampled). The binding can test it in JS
//!   (`h >= 0x20000000`) and skip the crossing entirely for `setAttribute` and `addEvent` on an
//!   unsampled span, which is most spans at a low sample rate. The tracer checks it too, so a
//!   binding that does not bother stays correct.
//!
//! **Sampled spans reuse exported ones.** A sampled slot holds a boxed [`SpanData`], which goes
//! to the export thread as a pointer and comes back once exported; the next sampled span is made
//! in it (`BatchProcessor::reusable_span`), keeping its lists' capacity.
//!
//! **Unsampled spans cost a slot and nothing else.** An
//! unsampled slot holds what metrics and propagation need (ids, flags, trace state, start time,
//! an error flag) and keeps its name in a buffer owned by the slot, which is cleared and refilled
//! rather than reallocated. Start and end of an unsampled span therefore allocate nothing once
//! the slab has grown to the peak number of live spans and each slot has seen a name as long,
//! with one exception: a parent that carries a non-empty `tracestate` is cloned into the child.
//! Metrics recording of a name already tracked is a hash lookup (see `metrics`). There is no
//! counting allocator in the tests (too invasive for a crate-wide test binary); instead a test
//! checks that the slot's name buffer keeps its address across start/end cycles.
//!
//! **Bounded live spans.** Spans that are started and never ended would otherwise hold their
//! slots forever. At most [`TracerConfig::max_live_spans`] spans are live at once; a start
//! beyond that returns [`SpanHandle::NONE`], which every operation ignores, and is counted in
//! [`TracerStats::rejected_spans`]. A dropped handle rather than an error, because tracing must
//! never break the request it observes: the user's code carries on, the span is simply absent
//! (from metrics too), and the counter shows the leak.
//!
//! **Time.** Span times are Unix nanoseconds, as OTLP wants, but read through the injected
//! monotonic [`Clock`]: the tracer reads `SystemTime` once at creation and adds the clock's
//! delta since then. A wall-clock step (NTP) therefore never makes a span negative or moves
//! spans relative to each other, and a test with a `ManualClock` (and
//! [`Tracer::with_wall_origin`]) gets exact, deterministic times.
//!
//! Like the metrics, the tracer is plain single-threaded state: it belongs to one JS environment
//! and is driven from its thread; only the export runs elsewhere (in the [`BatchProcessor`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use compact_str::CompactString;
use hashbrown::HashMap;

use crate::common::{Clock, InvalidInput};

use super::context::{format_traceparent, SpanContext, TraceFlags, TraceState};
use super::export::{BatchConfig, BatchProcessor, ProcessorHandle, SpanExporter};
use super::ids::{IdGenerator, SpanId, TraceId};
use super::metrics::{MetricSlot, SpanMetrics, SpanNameStats, TracerCounters};
use super::sampler::{SampleRate, Sampler};
use super::span::{
    AttributeKey, AttributeValue, Attributes, SpanData, SpanKind, SpanLimits, Status,
};

/// Bits of a handle that hold the slot index.
const INDEX_BITS: u32 = 18;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// Bits of a handle that hold the slot's generation.
const GENERATION_BITS: u32 = 11;
const GENERATION_MAX: u32 = (1 << GENERATION_BITS) - 1;
/// The handle bit that marks a recording (sampled) span.
const RECORDING_BIT: u32 = 1 << 29;

/// The most slots a tracer can address, and so the ceiling of
/// [`TracerConfig::max_live_spans`].
pub const MAX_LIVE_SPANS_LIMIT: usize = 1 << INDEX_BITS;

/// A slot's name buffer above this capacity is released when the slot is freed, so that one
/// huge span name does not pin its memory in the slab for good.
const NAME_BUFFER_KEEP: usize = 1024;
/// How many span names a tracer interns (see [`Tracer::intern_name`]); names past it still work,
/// passed as text.
pub const MAX_INTERNED_NAMES: usize = 4096;

/// A span name interned with [`Tracer::intern_name`]: starting or renaming a span by its id
/// crosses no string and hashes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameId(pub u32);

/// What an interned name needs on the hot path, worked out once.
#[derive(Clone, Debug)]
struct InternedName {
    name: String,
    /// Where its metrics go.
    metric: MetricSlot,
    /// The root sampling rate its rules give it.
    rate: SampleRate,
}

/// A span name as a caller gives it.
#[derive(Clone, Copy, Debug)]
enum SpanName<'a> {
    Text(&'a str),
    Interned(NameId),
}

/// A number that stands for one live span of a [`Tracer`]; see the module docs for its bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanHandle(pub u32);

impl SpanHandle {
    /// The handle of no span: returned when the live-span bound is reached, and ignored by every
    /// operation.
    pub const NONE: SpanHandle = SpanHandle(0);

    /// Whether the span was sampled when it started, read off the handle alone (the binding can
    /// do the same in JS without a crossing).
    pub const fn is_recording(self) -> bool {
        self.0 & RECORDING_BIT != 0
    }

    /// Whether this is [`Self::NONE`].
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }

    fn index(self) -> usize {
        (self.0 & INDEX_MASK) as usize
    }

    fn new(index: usize, generation: u32, recording: bool) -> Self {
        let recording = if recording { RECORDING_BIT } else { 0 };
        SpanHandle(recording | (generation << INDEX_BITS) | index as u32)
    }
}

/// The parent of a span about to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parent {
    /// No parent: the span starts a new trace.
    None,
    /// A live span of this tracer. If the handle is stale or ended, the span starts a new trace:
    /// its context is gone with its slot (a binding that must parent on an ended span keeps its
    /// [`Tracer::context`] and passes it as [`Parent::Remote`]).
    Local(SpanHandle),
    /// A context from another process (incoming headers) or kept from an ended span. An invalid
    /// context (zero ids) starts a new trace.
    Remote(SpanContext),
}

/// How a [`Tracer`] behaves.
#[derive(Clone, Debug)]
pub struct TracerConfig {
    /// The `service.name` the spans are exported under.
    pub service_name: String,
    /// Root sampling rate and rules; children follow their parent.
    pub sampler: Sampler,
    /// Per-span limits on attributes, events and value lengths.
    pub limits: SpanLimits,
    /// Distinct span names tracked by the metrics before the rest go to `_other`. Default 1000.
    pub max_metric_names: usize,
    /// How the export pipeline batches; used by [`Tracer::start`], which starts the processor.
    /// [`Tracer::new`] takes a processor already started with its own configuration.
    pub batch: BatchConfig,
    /// Most spans live (started, not ended) at once; starts beyond it are rejected and counted.
    /// Clamped to `1..=`[`MAX_LIVE_SPANS_LIMIT`], which is also the default.
    pub max_live_spans: usize,
}

impl TracerConfig {
    /// A configuration with this service name and sampler, and defaults for the rest.
    pub fn new(service_name: impl Into<String>, sampler: Sampler) -> Self {
        TracerConfig {
            service_name: service_name.into(),
            sampler,
            limits: SpanLimits::default(),
            max_metric_names: 1000,
            batch: BatchConfig::default(),
            max_live_spans: MAX_LIVE_SPANS_LIMIT,
        }
    }
}

/// The tracer's numbers, its own and the export pipeline's, read in one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracerStats {
    /// Spans started (`sampled + unsampled`); rejected starts are not included.
    pub started: u64,
    /// Spans started with a sampled decision.
    pub sampled: u64,
    /// Spans started with an unsampled decision.
    pub unsampled: u64,
    /// Starts refused because [`TracerConfig::max_live_spans`] spans were live.
    pub rejected_spans: u64,
    /// Spans live now.
    pub live_spans: u64,
    /// Spans the exporter accepted.
    pub exported: u64,
    /// Sampled spans lost before export (full queue, after shutdown).
    pub dropped: u64,
    /// Failed export batches.
    pub export_errors: u64,
    /// CPU time the export thread has used, in nanoseconds.
    pub export_cpu_nanos: u64,
}

/// What an unsampled span keeps: enough for metrics and for its children and `traceparent`.
#[derive(Clone, Debug)]
struct Unsampled {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
    trace_state: TraceState,
    start_unix_nanos: u64,
    /// OTel status rules reduced to what metrics need: `Some(true)` is Error, `Some(false)` is
    /// the final Ok, `None` is unset.
    error: Option<bool>,
}

#[derive(Clone, Debug)]
enum State {
    Free,
    Sampled(Box<SpanData>),
    Unsampled(Unsampled),
}

#[derive(Clone, Debug)]
struct Slot {
    /// The handle this slot answers to while live; 0 while free.
    handle: u32,
    /// The generation the next span in this slot gets.
    generation: u32,
    state: State,
    /// An unsampled span's name, kept here so that its storage is reused by the next span
    /// (unused while `metric` is set).
    name: String,
    /// The metric slot of the span's name when the name was interned; `None` means look it up
    /// by name at the end.
    metric: Option<MetricSlot>,
}

/// Starts, holds and ends spans; see the module docs.
pub struct Tracer {
    service_name: String,
    sampler: Sampler,
    limits: SpanLimits,
    max_live_spans: usize,
    clock: Clock,
    /// Clock reading and Unix time at creation: span times are `wall_origin + (now - clock_origin)`.
    clock_origin: u64,
    wall_origin_unix_nanos: u64,
    ids: IdGenerator,
    slots: Vec<Slot>,
    /// Vacant slot indices, used last-in first-out so that a hot slot stays in cache.
    free: Vec<u32>,
    live: usize,
    /// Never cleared: interned names keep slots into it.
    metrics: SpanMetrics,
    counters: TracerCounters,
    rejected: u64,
    processor: BatchProcessor,
    interned: Vec<InternedName>,
    interned_index: HashMap<CompactString, u32>,
}

impl Tracer {
    /// A tracer that sends its sampled spans to `processor` and whose span times are the Unix
    /// time now plus `clock`'s progress from now on.
    pub fn new(config: TracerConfig, clock: Clock, processor: BatchProcessor) -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self::with_wall_origin(config, clock, processor, wall)
    }

    /// As [`Self::new`], with the Unix time at creation given instead of read, so that tests get
    /// exact span times.
    pub fn with_wall_origin(
        config: TracerConfig,
        clock: Clock,
        processor: BatchProcessor,
        wall_origin_unix_nanos: u64,
    ) -> Self {
        Tracer {
            service_name: config.service_name,
            sampler: config.sampler,
            limits: config.limits,
            max_live_spans: config.max_live_spans.clamp(1, MAX_LIVE_SPANS_LIMIT),
            clock_origin: clock.now_nanos(),
            clock,
            wall_origin_unix_nanos,
            ids: IdGenerator::new(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            metrics: SpanMetrics::new(config.max_metric_names),
            counters: TracerCounters::new(),
            rejected: 0,
            processor,
            interned: Vec::new(),
            interned_index: HashMap::new(),
        }
    }

    /// A tracer with its own processor, started from `config.batch` (validated first, so a bad
    /// batch option is an error naming it) around `exporter`.
    pub fn start(
        config: TracerConfig,
        clock: Clock,
        exporter: Box<dyn SpanExporter>,
    ) -> Result<Self, InvalidInput> {
        config.batch.validate()?;
        let processor = BatchProcessor::start(config.batch, exporter);
        Ok(Self::new(config, clock, processor))
    }

    /// The service name spans are exported under.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Now, in Unix nanoseconds, on the tracer's clock. A clock set backwards counts as no time
    /// passing.
    pub fn now_unix_nanos(&self) -> u64 {
        let elapsed = self.clock.now_nanos().saturating_sub(self.clock_origin);
        self.wall_origin_unix_nanos.saturating_add(elapsed)
    }

    /// Starts a span and returns its handle, or [`SpanHandle::NONE`] when
    /// [`TracerConfig::max_live_spans`] spans are already live (counted in
    /// [`TracerStats::rejected_spans`]).
    ///
    /// A child inherits its parent's trace id, trace state and random flag, and its sampling
    /// decision; a root gets a new trace id, the random flag, and the sampler's ratio decision
    /// for its name. `start_unix_nanos` defaults to now.
    pub fn start_span(
        &mut self,
        name: &str,
        kind: SpanKind,
        parent: Parent,
        start_unix_nanos: Option<u64>,
    ) -> SpanHandle {
        self.start_span_with_rate(name, kind, parent, start_unix_nanos, None)
    }

    /// As [`Self::start_span`], with the root sampling rate chosen by the caller when `rate` is
    /// given (rules evaluated in JS, such as `RegExp` names); a child still follows its parent.
    pub fn start_span_with_rate(
        &mut self,
        name: &str,
        kind: SpanKind,
        parent: Parent,
        start_unix_nanos: Option<u64>,
        rate: Option<SampleRate>,
    ) -> SpanHandle {
        self.start_named(SpanName::Text(name), kind, parent, start_unix_nanos, rate)
    }

    /// The id of `name`, interning it if it is new: `None` once [`MAX_INTERNED_NAMES`] names
    /// are interned (such names are then passed as text). Interning works out the name's
    /// metric slot and sampling rate once, so that spans started by id pay for neither.
    pub fn intern_name(&mut self, name: &str) -> Option<NameId> {
        if let Some(&id) = self.interned_index.get(name) {
            return Some(NameId(id));
        }
        if self.interned.len() >= MAX_INTERNED_NAMES {
            return None;
        }
        let id = self.interned.len() as u32;
        self.interned.push(InternedName {
            name: name.to_owned(),
            metric: self.metrics.slot(name),
            rate: self.sampler.rate_for(name),
        });
        self.interned_index.insert(CompactString::from(name), id);
        Some(NameId(id))
    }

    /// As [`Self::start_span_with_rate`], for an interned name. An id this tracer did not hand
    /// out starts nothing ([`SpanHandle::NONE`]).
    pub fn start_interned(
        &mut self,
        name: NameId,
        kind: SpanKind,
        parent: Parent,
        start_unix_nanos: Option<u64>,
        rate: Option<SampleRate>,
    ) -> SpanHandle {
        if name.0 as usize >= self.interned.len() {
            return SpanHandle::NONE;
        }
        self.start_named(
            SpanName::Interned(name),
            kind,
            parent,
            start_unix_nanos,
            rate,
        )
    }

    fn start_named(
        &mut self,
        name: SpanName<'_>,
        kind: SpanKind,
        parent: Parent,
        start_unix_nanos: Option<u64>,
        rate: Option<SampleRate>,
    ) -> SpanHandle {
        if self.live >= self.max_live_spans {
            self.rejected += 1;
            return SpanHandle::NONE;
        }
        // (trace id, parent span id, parent flags, parent trace state) of a valid parent.
        let inherited = match parent {
            Parent::None => None,
            Parent::Local(h) => self.live_slot(h).and_then(|slot| match &slot.state {
                State::Free => None,
                State::Sampled(span) => Some((
                    span.trace_id,
                    span.span_id,
                    span.flags,
                    span.trace_state.clone(),
                )),
                State::Unsampled(u) => {
                    Some((u.trace_id, u.span_id, u.flags, u.trace_state.clone()))
                }
            }),
            Parent::Remote(ctx) => {
                ctx.is_valid()
                    .then_some((ctx.trace_id, ctx.span_id, ctx.flags, ctx.trace_state))
            }
        };
        let (trace_id, parent_span_id, flags, trace_state, sampled) = match inherited {
            Some((trace_id, span_id, flags, state)) => {
                let sampled = flags.is_sampled();
                (trace_id, Some(span_id), flags, state, sampled)
            }
            None => {
                let trace_id = self.ids.trace_id();
                let rate = rate.unwrap_or_else(|| match name {
                    SpanName::Text(name) => self.sampler.rate_for(name),
                    SpanName::Interned(id) => self.interned[id.0 as usize].rate,
                });
                let sampled = Sampler::decide_with_rate(rate, None, trace_id);
                // Every byte of our trace ids is random (see `ids`), which Level 2 lets us say.
                (
                    trace_id,
                    None,
                    TraceFlags::RANDOM,
                    TraceState::new(),
                    sampled,
                )
            }
        };
        let flags = flags.with_sampled(sampled);
        let span_id = self.ids.span_id();
        let start = start_unix_nanos.unwrap_or_else(|| self.now_unix_nanos());
        self.counters.span_started(sampled);

        let index = match self.free.pop() {
            Some(index) => index as usize,
            None => {
                self.slots.push(Slot {
                    handle: 0,
                    generation: 1,
                    state: State::Free,
                    name: String::new(),
                    metric: None,
                });
                self.slots.len() - 1
            }
        };
        let limits = self.limits;
        let (text, metric) = match name {
            SpanName::Text(text) => (text, None),
            SpanName::Interned(id) => {
                let interned = &self.interned[id.0 as usize];
                (interned.name.as_str(), Some(interned.metric))
            }
        };
        let slot = &mut self.slots[index];
        slot.metric = metric;
        slot.state = if sampled {
            let mut span = match self.processor.reusable_span() {
                Some(mut span) => {
                    span.reuse(trace_id, span_id, parent_span_id, text, start, limits);
                    span
                }
                None => Box::new(SpanData::new(
                    trace_id,
                    span_id,
                    parent_span_id,
                    text,
                    start,
                    limits,
                )),
            };
            span.kind = kind;
            span.flags = flags;
            span.trace_state = trace_state;
            State::Sampled(span)
        } else {
            // Reuses the buffer's capacity: no allocation once it has held a name this long.
            if metric.is_none() {
                slot.name.clear();
                slot.name.push_str(text);
            }
            State::Unsampled(Unsampled {
                trace_id,
                span_id,
                flags,
                trace_state,
                start_unix_nanos: start,
                error: None,
            })
        };
        let handle = SpanHandle::new(index, slot.generation, sampled);
        slot.handle = handle.0;
        self.live += 1;
        handle
    }

    /// The slot of a live handle; `None` for [`SpanHandle::NONE`], a stale or a forged handle.
    fn live_slot(&self, h: SpanHandle) -> Option<&Slot> {
        // `slot.handle` is 0 while free, and no live handle is 0, so one comparison checks
        // liveness, generation and the recording bit together.
        self.slots
            .get(h.index())
            .filter(|slot| h.0 != 0 && slot.handle == h.0)
    }

    fn live_slot_mut(&mut self, h: SpanHandle) -> Option<&mut Slot> {
        self.slots
            .get_mut(h.index())
            .filter(|slot| h.0 != 0 && slot.handle == h.0)
    }

    /// The sampled span behind `h`, if `h` is live and recording. The recording bit is checked
    /// first so that an unsampled span costs no memory access at all.
    fn recording_mut(&mut self, h: SpanHandle) -> Option<&mut SpanData> {
        if !h.is_recording() {
            return None;
        }
        match &mut self.live_slot_mut(h)?.state {
            State::Sampled(span) => Some(span),
            _ => None,
        }
    }

    /// Whether `h` is a live span of this tracer.
    pub fn is_live(&self, h: SpanHandle) -> bool {
        self.live_slot(h).is_some()
    }

    /// Whether `h` is a live, sampled span: one that records attributes and events.
    pub fn is_recording(&self, h: SpanHandle) -> bool {
        h.is_recording() && self.is_live(h)
    }

    /// Sets one attribute under the span limits. Returns whether it was stored: `false` for an
    /// unsampled, ended or stale span, and for an attribute dropped by the limits.
    pub fn set_attribute<K: AsRef<str> + Into<AttributeKey>>(
        &mut self,
        h: SpanHandle,
        key: K,
        value: AttributeValue,
    ) -> bool {
        self.recording_mut(h)
            .is_some_and(|span| span.set_attribute(key, value))
    }

    /// Sets a string attribute from `value` (see [`SpanData::set_attribute_str`]). Returns
    /// whether it was stored.
    pub fn set_attribute_str<K: AsRef<str> + Into<AttributeKey>>(
        &mut self,
        h: SpanHandle,
        key: K,
        value: &str,
    ) -> bool {
        self.recording_mut(h)
            .is_some_and(|span| span.set_attribute_str(key, value))
    }

    /// Counts an attribute the binding could not convert (an unsupported value), so that it
    /// shows in the exported dropped-attributes count. Returns whether the span records.
    pub fn count_dropped_attribute(&mut self, h: SpanHandle) -> bool {
        self.recording_mut(h)
            .map(SpanData::count_dropped_attribute)
            .is_some()
    }

    /// Adds an event at `time_unix_nanos` (default now). Returns whether it was stored.
    pub fn add_event(
        &mut self,
        h: SpanHandle,
        name: &str,
        attributes: Attributes,
        time_unix_nanos: Option<u64>,
    ) -> bool {
        // Checked before reading the clock, so an unsampled span pays for nothing.
        if !self.is_recording(h) {
            return false;
        }
        let time = time_unix_nanos.unwrap_or_else(|| self.now_unix_nanos());
        self.recording_mut(h)
            .is_some_and(|span| span.add_event(name, time, attributes))
    }

    /// Records an exception as an `exception` event (semantic conventions); the status is left
    /// to [`Self::set_status`], as in OpenTelemetry. Returns whether the event was stored.
    pub fn record_exception(
        &mut self,
        h: SpanHandle,
        exception_type: &str,
        message: &str,
        stacktrace: Option<&str>,
        time_unix_nanos: Option<u64>,
    ) -> bool {
        if !self.is_recording(h) {
            return false;
        }
        let time = time_unix_nanos.unwrap_or_else(|| self.now_unix_nanos());
        self.recording_mut(h)
            .is_some_and(|span| span.record_exception(time, exception_type, message, stacktrace))
    }

    /// Sets the status under the OTel rules (`Unset` ignored, `Ok` final). Applies to unsampled
    /// spans too, since their error count feeds the metrics. Returns whether `h` was live.
    pub fn set_status(&mut self, h: SpanHandle, status: Status) -> bool {
        let Some(slot) = self.live_slot_mut(h) else {
            return false;
        };
        match &mut slot.state {
            State::Sampled(span) => span.set_status(status),
            State::Unsampled(u) => match (status, u.error) {
                (Status::Unset, _) | (_, Some(false)) => {}
                (Status::Ok, _) => u.error = Some(false),
                (Status::Error(_), _) => u.error = Some(true),
            },
            State::Free => {}
        }
        true
    }

    /// Renames the span; for an unsampled span too, since the name keys its metrics (a router
    /// often learns the route after the span started). Returns whether `h` was live.
    pub fn update_name(&mut self, h: SpanHandle, name: &str) -> bool {
        let Some(slot) = self.live_slot_mut(h) else {
            return false;
        };
        slot.metric = None;
        match &mut slot.state {
            State::Sampled(span) => span.update_name(name),
            State::Unsampled(_) => {
                slot.name.clear();
                slot.name.push_str(name);
            }
            State::Free => {}
        }
        true
    }

    /// As [`Self::update_name`], to an interned name. Returns whether `h` was live (an id this
    /// tracer did not hand out changes nothing).
    pub fn update_name_interned(&mut self, h: SpanHandle, name: NameId) -> bool {
        let Some(interned) = self.interned.get(name.0 as usize) else {
            return false;
        };
        let Some(slot) = self
            .slots
            .get_mut(h.index())
            .filter(|slot| h.0 != 0 && slot.handle == h.0)
        else {
            return false;
        };
        slot.metric = Some(interned.metric);
        if let State::Sampled(span) = &mut slot.state {
            span.update_name(&interned.name);
        }
        true
    }

    /// The span's context (ids, flags with the sampled bit, trace state; `remote` false), or
    /// `None` for an ended or stale handle.
    pub fn context(&self, h: SpanHandle) -> Option<SpanContext> {
        let (trace_id, span_id, flags, trace_state) = match &self.live_slot(h)?.state {
            State::Sampled(span) => (span.trace_id, span.span_id, span.flags, &span.trace_state),
            State::Unsampled(u) => (u.trace_id, u.span_id, u.flags, &u.trace_state),
            State::Free => return None,
        };
        Some(SpanContext {
            trace_id,
            span_id,
            flags,
            trace_state: trace_state.clone(),
            remote: false,
        })
    }

    /// The span's ids and flags, without cloning its trace state.
    pub fn ids(&self, h: SpanHandle) -> Option<(TraceId, SpanId, TraceFlags)> {
        match &self.live_slot(h)?.state {
            State::Sampled(span) => Some((span.trace_id, span.span_id, span.flags)),
            State::Unsampled(u) => Some((u.trace_id, u.span_id, u.flags)),
            State::Free => None,
        }
    }

    /// The span's `traceparent` header value, without cloning its trace state.
    pub fn traceparent(&self, h: SpanHandle) -> Option<String> {
        match &self.live_slot(h)?.state {
            State::Sampled(span) => {
                Some(format_traceparent(span.trace_id, span.span_id, span.flags))
            }
            State::Unsampled(u) => Some(format_traceparent(u.trace_id, u.span_id, u.flags)),
            State::Free => None,
        }
    }

    /// Ends the span at `end_unix_nanos` (default now; an end before the start is clamped to it),
    /// records its metrics (name, duration, error = status Error), hands a sampled span to the
    /// processor and frees the slot. Returns `false`, changing nothing, for a span already ended
    /// or a stale handle.
    pub fn end(&mut self, h: SpanHandle, end_unix_nanos: Option<u64>) -> bool {
        if !self.is_live(h) {
            return false;
        }
        let end = end_unix_nanos.unwrap_or_else(|| self.now_unix_nanos());
        let index = h.index();
        let slot = &mut self.slots[index];
        let state = std::mem::replace(&mut slot.state, State::Free);
        slot.handle = 0;
        // Skips 0, so that no handle is ever 0 (`SpanHandle::NONE`).
        slot.generation = if slot.generation >= GENERATION_MAX {
            1
        } else {
            slot.generation + 1
        };
        match state {
            State::Sampled(mut span) => {
                span.end(end);
                let error = matches!(span.status, Status::Error(_));
                let metric = slot.metric.unwrap_or_else(|| self.metrics.slot(&span.name));
                self.metrics
                    .record_at(metric, span.duration_nanos().unwrap_or(0), error);
                self.processor.on_end(span);
            }
            State::Unsampled(u) => {
                let duration = end.saturating_sub(u.start_unix_nanos);
                let metric = slot.metric.unwrap_or_else(|| self.metrics.slot(&slot.name));
                self.metrics
                    .record_at(metric, duration, u.error == Some(true));
                if slot.name.capacity() > NAME_BUFFER_KEEP {
                    slot.name = String::new();
                }
            }
            State::Free => {}
        }
        self.free.push(index as u32);
        self.live -= 1;
        true
    }

    /// Per-name span counts and latencies, sampled and unsampled spans alike, sorted by name.
    pub fn metrics_snapshot(&self) -> Vec<SpanNameStats> {
        self.metrics.snapshot()
    }

    /// The tracer's and the export pipeline's counters.
    pub fn stats(&self) -> TracerStats {
        let export = self.processor.counters();
        TracerStats {
            started: self.counters.started(),
            sampled: self.counters.sampled(),
            unsampled: self.counters.unsampled(),
            rejected_spans: self.rejected,
            live_spans: self.live as u64,
            exported: export.exported(),
            dropped: export.dropped(),
            export_errors: export.export_errors(),
            export_cpu_nanos: export.thread_cpu_nanos(),
        }
    }

    /// Spans live now.
    pub fn live_spans(&self) -> usize {
        self.live
    }

    /// A `Send` handle on the export pipeline, to flush or shut down from another thread.
    pub fn processor_handle(&self) -> ProcessorHandle {
        self.processor.handle()
    }

    /// Exports every ended span queued so far, waiting at most `timeout`; whether it finished.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.processor.flush(timeout)
    }

    /// Flushes and stops the export thread within `timeout`; spans ended later are dropped and
    /// counted. Live spans are left as they are. Whether everything finished in time.
    pub fn shutdown(&mut self, timeout: Duration) -> bool {
        self.processor.shutdown(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::ManualClock;
    use crate::tracer::context::parse_tracestate;
    use crate::tracer::export::MemoryExporter;
    use crate::tracer::sampler::{SampleRate, SamplingRule, SpanMatcher};
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    const WALL: u64 = 1_700_000_000_000_000_000;
    const WAIT: Duration = Duration::from_secs(5);

    struct Fixture {
        tracer: Tracer,
        clock: ManualClock,
        exporter: MemoryExporter,
    }

    fn fixture_with(rate: f64, edit: impl FnOnce(&mut TracerConfig)) -> Fixture {
        let mut config = TracerConfig::new("svc", Sampler::new(rate, Vec::new()).unwrap());
        edit(&mut config);
        let clock = ManualClock::new(1_000);
        let exporter = MemoryExporter::new();
        let processor = BatchProcessor::start(config.batch, Box::new(exporter.clone()));
        let tracer =
            Tracer::with_wall_origin(config, Clock::Manual(clock.clone()), processor, WALL);
        Fixture {
            tracer,
            clock,
            exporter,
        }
    }

    fn fixture(rate: f64) -> Fixture {
        fixture_with(rate, |_| {})
    }

    fn exported(f: &Fixture) -> Vec<SpanData> {
        assert!(f.tracer.flush(WAIT));
        f.exporter.snapshot()
    }

    fn root(t: &mut Tracer, name: &str) -> SpanHandle {
        t.start_span(name, SpanKind::Internal, Parent::None, None)
    }

    fn remote(sampled: bool) -> SpanContext {
        let flags = TraceFlags::empty().with_sampled(sampled);
        SpanContext {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            flags,
            trace_state: parse_tracestate(&["congo=t61rcWkgMzE"]),
            remote: true,
        }
    }

    /// Records a copy of every span and leaves the spans in the batch, so that the processor
    /// gives them back to the tracer to be reused.
    struct CopyingExporter(Arc<Mutex<Vec<SpanData>>>);

    impl crate::tracer::export::SpanExporter for CopyingExporter {
        fn export(
            &mut self,
            batch: &mut crate::tracer::export::SpanBatch,
            _deadline: std::time::Instant,
        ) -> crate::tracer::export::ExportResult {
            let mut seen = self.0.lock().unwrap();
            seen.extend(batch.iter().map(|span| (**span).clone()));
            crate::tracer::export::ExportResult::Success
        }
    }

    #[test]
    fn a_reused_span_carries_nothing_of_the_span_before_it() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = TracerConfig::new("svc", Sampler::new(1.0, Vec::new()).unwrap());
        let processor =
            BatchProcessor::start(config.batch, Box::new(CopyingExporter(Arc::clone(&seen))));
        let mut t = Tracer::with_wall_origin(
            config,
            Clock::Manual(ManualClock::new(1_000)),
            processor,
            WALL,
        );
        let remote_parent = Parent::Remote(remote(true));
        let first = t.start_span("first", SpanKind::Server, remote_parent, None);
        assert!(t.set_attribute(first, "http.response.status_code", AttributeValue::I64(500)));
        assert!(t.set_attribute(first, "note", AttributeValue::String("x".repeat(40))));
        assert!(t.add_event(first, "retry", Vec::new(), None));
        assert!(t.set_status(first, Status::Error("boom".into())));
        assert!(t.end(first, None));
        assert!(t.flush(WAIT));
        // the exported span came back: the next sampled span is made in its box
        let second = root(&mut t, "second");
        assert!(t.end(second, None));
        assert!(t.flush(WAIT));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let (first, second) = (&seen[0], &seen[1]);
        assert_eq!(first.attributes.len(), 2);
        assert_eq!(first.events.len(), 1);
        assert!(!first.trace_state.is_empty());
        assert_eq!(second.name.as_str(), "second");
        assert_eq!(second.kind, SpanKind::Internal);
        assert!(second.attributes.is_empty());
        assert!(second.events.is_empty());
        assert_eq!(second.status, Status::Unset);
        assert!(second.trace_state.is_empty());
        assert_eq!(second.parent_span_id, None);
        assert_ne!(second.trace_id, first.trace_id);
        assert_eq!((second.dropped_attributes, second.dropped_events), (0, 0));
    }

    #[test]
    fn children_inherit_the_trace_and_point_at_their_parent() {
        let mut f = fixture(1.0);
        let t = &mut f.tracer;
        let a = root(t, "a");
        let b = t.start_span("b", SpanKind::Client, Parent::Local(a), None);
        let c = t.start_span("c", SpanKind::Internal, Parent::Local(b), None);
        let (ca, cb, cc) = (
            t.context(a).unwrap(),
            t.context(b).unwrap(),
            t.context(c).unwrap(),
        );
        assert_eq!(ca.trace_id, cb.trace_id);
        assert_eq!(cb.trace_id, cc.trace_id);
        assert_ne!(ca.span_id, cb.span_id);
        assert!(!ca.remote && ca.flags.is_sampled() && ca.flags.is_random());
        for h in [c, b, a] {
            assert!(t.end(h, None));
        }
        let spans = exported(&f);
        let by = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
        assert_eq!(by("a").parent_span_id, None);
        assert_eq!(by("b").parent_span_id, Some(ca.span_id));
        assert_eq!(by("c").parent_span_id, Some(cb.span_id));
        assert_eq!(by("b").kind, SpanKind::Client);
        // a second root starts a second trace
        let d = root(&mut f.tracer, "d");
        assert_ne!(f.tracer.context(d).unwrap().trace_id, ca.trace_id);
    }

    #[test]
    fn a_remote_parent_gives_its_trace_state_and_decision() {
        // rate 0: only the parent can make these spans sampled
        let mut f = fixture(0.0);
        let t = &mut f.tracer;
        let parent = remote(true);
        let h = t.start_span(
            "GET /",
            SpanKind::Server,
            Parent::Remote(parent.clone()),
            None,
        );
        assert!(h.is_recording());
        let ctx = t.context(h).unwrap();
        assert_eq!(ctx.trace_id, parent.trace_id);
        assert_eq!(ctx.trace_state.get("congo"), Some("t61rcWkgMzE"));
        assert!(ctx.flags.is_sampled() && !ctx.flags.is_random());
        assert_eq!(
            t.traceparent(h).unwrap(),
            format!("00-{}-{}-01", parent.trace_id, ctx.span_id)
        );
        t.end(h, None);
        let span = &exported(&f)[0];
        assert_eq!(span.parent_span_id, Some(parent.span_id));
        assert_eq!(span.trace_state, parent.trace_state);

        // rate 1, unsampled remote parent: unsampled, still in the caller's trace
        let mut f = fixture(1.0);
        let h = f.tracer.start_span(
            "GET /",
            SpanKind::Server,
            Parent::Remote(remote(false)),
            None,
        );
        assert!(!h.is_recording());
        let ctx = f.tracer.context(h).unwrap();
        assert_eq!(ctx.trace_id, remote(false).trace_id);
        assert_eq!(
            f.tracer.traceparent(h).unwrap(),
            format!("00-{}-{}-00", ctx.trace_id, ctx.span_id)
        );
        // an invalid remote context starts a new, ratio-sampled trace
        let mut bad = remote(false);
        bad.trace_id = TraceId::INVALID;
        let h = f
            .tracer
            .start_span("x", SpanKind::Server, Parent::Remote(bad), None);
        assert!(h.is_recording());
        assert!(f.tracer.context(h).unwrap().trace_id.is_valid());
    }

    #[test]
    fn sampling_at_zero_and_one_and_by_parent_and_rule() {
        let mut f = fixture(0.0);
        let t = &mut f.tracer;
        let a = root(t, "a");
        assert!(!a.is_recording() && !t.is_recording(a) && t.is_live(a));
        assert!(!t.context(a).unwrap().flags.is_sampled());
        let child = t.start_span("child", SpanKind::Internal, Parent::Local(a), None);
        assert!(!child.is_recording());

        let mut f = fixture(1.0);
        let t = &mut f.tracer;
        let a = root(t, "a");
        assert!(a.is_recording() && t.is_recording(a));
        let child = t.start_span("child", SpanKind::Internal, Parent::Local(a), None);
        assert!(child.is_recording());
        // an ended (or stale) local parent: a new trace, decided by ratio
        let ctx = t.context(a).unwrap();
        t.end(a, None);
        let orphan = t.start_span("o", SpanKind::Internal, Parent::Local(a), None);
        assert_ne!(t.context(orphan).unwrap().trace_id, ctx.trace_id);

        let rules = vec![SamplingRule {
            matcher: SpanMatcher::Prefix("GET /health".into()),
            rate: SampleRate::NEVER,
        }];
        let mut f = fixture_with(1.0, |c| c.sampler = Sampler::new(1.0, rules).unwrap());
        assert!(!root(&mut f.tracer, "GET /health").is_recording());
        assert!(root(&mut f.tracer, "GET /users").is_recording());
        let s = f.tracer.stats();
        assert_eq!((s.started, s.sampled, s.unsampled), (2, 1, 1));
    }

    #[test]
    fn metrics_count_unsampled_spans_with_durations_errors_and_renames() {
        let mut f = fixture(0.0);
        let t = &mut f.tracer;
        for i in 0..4u64 {
            let h = root(t, "GET /:id");
            if i == 0 {
                assert!(t.update_name(h, "GET /users/:id"));
            }
            if i == 1 {
                assert!(t.set_status(h, Status::Error("boom".into())));
            }
            if i == 2 {
                // Ok is final for the metrics too
                t.set_status(h, Status::Ok);
                t.set_status(h, Status::Error("late".into()));
            }
            f.clock.advance(2_000_000);
            assert!(t.end(h, None));
        }
        let snap = t.metrics_snapshot();
        assert_eq!(snap.len(), 2);
        let other = snap.iter().find(|s| s.name == "GET /:id").unwrap();
        assert_eq!((other.count, other.errors), (3, 1));
        assert_eq!(other.max_ms, 2.0);
        assert_eq!(
            snap.iter()
                .find(|s| s.name == "GET /users/:id")
                .unwrap()
                .count,
            1
        );
        let s = t.stats();
        assert_eq!(
            (s.started, s.sampled, s.unsampled, s.live_spans),
            (4, 0, 4, 0)
        );
        assert!(exported(&f).is_empty(), "unsampled spans are not exported");
    }

    #[test]
    fn sampled_span_errors_feed_the_metrics() {
        let mut f = fixture(1.0);
        let h = root(&mut f.tracer, "q");
        f.tracer.set_status(h, Status::Error("x".into()));
        f.tracer.end(h, Some(WALL + 5_000_000));
        let snap = f.tracer.metrics_snapshot();
        assert_eq!((snap[0].count, snap[0].errors), (1, 1));
        assert_eq!(snap[0].max_ms, 5.0);
    }

    #[test]
    fn unsampled_spans_ignore_attributes_and_events() {
        let mut f = fixture(0.0);
        let t = &mut f.tracer;
        let h = root(t, "a");
        assert!(!t.set_attribute(h, "k", 1i64.into()));
        assert!(!t.add_event(h, "e", Vec::new(), None));
        assert!(!t.record_exception(h, "E", "m", None, None));
        assert!(!t.count_dropped_attribute(h));
        assert!(t.set_status(h, Status::Ok), "status still applies");
        assert!(t.end(h, None));
    }

    #[test]
    fn ending_twice_and_ops_after_end_are_ignored() {
        let mut f = fixture(1.0);
        let t = &mut f.tracer;
        let h = root(t, "a");
        assert!(t.end(h, None));
        assert!(!t.end(h, None));
        assert!(!t.is_live(h));
        assert!(!t.set_attribute(h, "k", 1i64.into()));
        assert!(!t.add_event(h, "e", Vec::new(), None));
        assert!(!t.set_status(h, Status::Ok));
        assert!(!t.update_name(h, "b"));
        assert_eq!(t.context(h), None);
        assert_eq!(t.traceparent(h), None);
        assert_eq!(t.metrics_snapshot()[0].count, 1);
        assert_eq!(exported(&f).len(), 1);
        // NONE and forged handles are never live
        let t = &mut f.tracer;
        assert!(!t.end(SpanHandle::NONE, None));
        assert!(!t.set_attribute(SpanHandle(RECORDING_BIT | 7), "k", 1i64.into()));
        assert_eq!(t.context(SpanHandle(u32::MAX)), None);
    }

    #[test]
    fn a_stale_handle_is_rejected_after_its_slot_is_reused() {
        let mut f = fixture(1.0);
        let t = &mut f.tracer;
        let old = root(t, "old");
        t.end(old, None);
        let new = root(t, "new");
        assert_eq!(new.index(), old.index(), "the slot is reused");
        assert_ne!(new, old);
        assert!(!t.set_attribute(old, "k", 1i64.into()));
        assert!(!t.end(old, None));
        assert!(t.set_attribute(new, "k", 1i64.into()));
        // a recording bit flipped onto a live handle does not pass either
        let mut f = fixture(0.0);
        let u = root(&mut f.tracer, "u");
        let forged = SpanHandle(u.0 | RECORDING_BIT);
        assert!(!f.tracer.is_live(forged));
    }

    #[test]
    fn generations_cycle_without_ever_issuing_handle_zero() {
        let mut f = fixture(0.0);
        let t = &mut f.tracer;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(GENERATION_MAX as usize * 2 + 5) {
            let h = root(t, "a");
            assert!(!h.is_none() && h.index() == 0);
            seen.insert(h);
            t.end(h, None);
        }
        assert_eq!(seen.len(), GENERATION_MAX as usize);
    }

    #[test]
    fn attribute_limits_flow_through_to_the_exported_span() {
        let mut f = fixture_with(1.0, |c| {
            c.limits = SpanLimits {
                max_attributes: 2,
                max_events: 1,
                max_attributes_per_event: 1,
                max_value_length: Some(3),
            }
        });
        let t = &mut f.tracer;
        let h = root(t, "a");
        assert!(t.set_attribute(h, "a", "abcdef".into()));
        assert!(t.set_attribute(h, "b", 2i64.into()));
        assert!(!t.set_attribute(h, "c", 3i64.into()));
        assert!(t.count_dropped_attribute(h));
        let attrs: Attributes = vec![("x".into(), 1i64.into()), ("y".into(), 2i64.into())];
        assert!(t.add_event(h, "e1", attrs, None));
        assert!(!t.add_event(h, "e2", Vec::new(), None));
        t.end(h, None);
        let span = &exported(&f)[0];
        assert_eq!(span.attributes[0].1, AttributeValue::String("abc".into()));
        assert_eq!(span.attributes.len(), 2);
        assert_eq!(span.dropped_attributes, 2);
        assert_eq!((span.events.len(), span.dropped_events), (1, 1));
        assert_eq!(span.events[0].dropped, 1);
    }

    #[test]
    fn exported_spans_carry_everything_recorded() {
        let mut f = fixture(1.0);
        let t = &mut f.tracer;
        assert_eq!(t.service_name(), "svc");
        f.clock.advance(10);
        let h = t.start_span("GET /", SpanKind::Server, Parent::None, None);
        let ctx = t.context(h).unwrap();
        t.set_attribute(h, "http.method", "GET".into());
        f.clock.advance(500);
        t.add_event(h, "start", vec![("n".into(), 1i64.into())], None);
        t.record_exception(h, "TypeError", "bad", Some("at x"), Some(WALL + 42));
        t.update_name(h, "GET /users");
        t.set_status(h, Status::Error("bad".into()));
        f.clock.advance(1_000);
        assert!(t.end(h, None));
        let spans = exported(&f);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.name, "GET /users");
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!((s.trace_id, s.span_id), (ctx.trace_id, ctx.span_id));
        assert_eq!(s.start_unix_nanos, WALL + 10);
        assert_eq!(s.end_unix_nanos, WALL + 1_510);
        assert_eq!(
            s.attributes,
            vec![("http.method".into(), AttributeValue::String("GET".into()))]
        );
        assert_eq!(s.events[0].time_unix_nanos, WALL + 510);
        assert_eq!(s.events[1].name, "exception");
        assert_eq!(s.events[1].time_unix_nanos, WALL + 42);
        assert_eq!(s.status, Status::Error("bad".into()));
        assert!(s.flags.is_sampled() && s.is_ended());
        assert_eq!(f.tracer.stats().exported, 1);
    }

    #[test]
    fn explicit_times_win_and_an_early_end_is_clamped() {
        let mut f = fixture(1.0);
        let t = &mut f.tracer;
        let h = t.start_span("a", SpanKind::Internal, Parent::None, Some(5_000));
        t.end(h, Some(4_000));
        let u = t.start_span("b", SpanKind::Internal, Parent::None, Some(5_000));
        t.end(u, Some(9_000));
        let spans = exported(&f);
        assert_eq!(
            (spans[0].start_unix_nanos, spans[0].end_unix_nanos),
            (5_000, 5_000)
        );
        assert_eq!(spans[1].duration_nanos(), Some(4_000));
        // a manual clock set backwards is no time passing
        f.clock.set(0);
        assert_eq!(f.tracer.now_unix_nanos(), WALL);
    }

    #[test]
    fn the_live_span_bound_rejects_and_counts_then_recovers() {
        let mut f = fixture_with(0.0, |c| c.max_live_spans = 3);
        let t = &mut f.tracer;
        let hs: Vec<_> = (0..3).map(|_| root(t, "leak")).collect();
        let over = root(t, "over");
        assert_eq!(over, SpanHandle::NONE);
        assert!(!t.end(over, None) && t.context(over).is_none());
        let s = t.stats();
        assert_eq!((s.started, s.rejected_spans, s.live_spans), (3, 1, 3));
        t.end(hs[0], None);
        assert!(!root(t, "again").is_none());
        assert_eq!(t.live_spans(), 3);
        // the configured bound is clamped to what a handle can address
        let f = fixture_with(0.0, |c| c.max_live_spans = usize::MAX);
        assert_eq!(f.tracer.max_live_spans, MAX_LIVE_SPANS_LIMIT);
        let f = fixture_with(0.0, |c| c.max_live_spans = 0);
        assert_eq!(f.tracer.max_live_spans, 1);
    }

    #[test]
    fn unsampled_start_and_end_reuse_the_slot_storage() {
        // The structural no-allocation check: once warm, the slab does not grow and the slot's
        // name buffer keeps its address (no reallocation) across many unsampled spans.
        let mut f = fixture(0.0);
        let t = &mut f.tracer;
        let h = root(t, "GET /users/:id");
        t.end(h, None);
        let (slots, buffer) = (t.slots.capacity(), t.slots[0].name.as_ptr());
        for name in ["GET /a", "GET /users/:id", "POST /b"] {
            for _ in 0..100 {
                let h = root(t, name);
                t.end(h, None);
            }
        }
        assert_eq!(t.slots.capacity(), slots);
        assert_eq!(t.slots[0].name.as_ptr(), buffer);
        // a huge name is not kept once its span ends
        let big = "x".repeat(NAME_BUFFER_KEEP + 1);
        let h = root(t, &big);
        t.end(h, None);
        assert_eq!(t.slots[0].name.capacity(), 0);
    }

    #[test]
    fn shutdown_drops_and_counts_later_spans() {
        let mut f = fixture(1.0);
        let h = root(&mut f.tracer, "late");
        assert!(f.tracer.shutdown(WAIT));
        assert!(f.tracer.end(h, None));
        let s = f.tracer.stats();
        assert_eq!((s.exported, s.dropped), (0, 1));
        assert_eq!(
            f.tracer.metrics_snapshot()[0].count,
            1,
            "still in the metrics"
        );
    }

    #[test]
    fn start_validates_the_batch_config() {
        let clock = Clock::Manual(ManualClock::new(0));
        let mut config = TracerConfig::new("svc", Sampler::new(1.0, Vec::new()).unwrap());
        config.batch.max_queue_size = 0;
        let err = Tracer::start(
            config.clone(),
            clock.clone(),
            Box::new(MemoryExporter::new()),
        )
        .err()
        .unwrap();
        assert!(
            err.message.contains("options.batch.maxQueueSize"),
            "{}",
            err.message
        );
        config.batch = BatchConfig::default();
        let t = Tracer::start(config, clock, Box::new(MemoryExporter::new())).unwrap();
        assert!(t.now_unix_nanos() > WALL, "a real wall origin");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Start {
            parent: Option<usize>,
            sampled: bool,
        },
        End(usize),
        SetAttribute(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (proptest::option::of(0usize..64), any::<bool>())
                .prop_map(|(parent, sampled)| Op::Start { parent, sampled }),
            (0usize..64).prop_map(Op::End),
            (0usize..64).prop_map(Op::SetAttribute),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Against a model of which handles are live: only live handles are accepted, every
        /// ended handle stays rejected, the bound holds, and the counters add up.
        #[test]
        fn the_slab_agrees_with_a_model(ops in proptest::collection::vec(op(), 0..200)) {
            let mut f = fixture_with(0.5, |c| c.max_live_spans = 8);
            let t = &mut f.tracer;
            let mut issued: Vec<(SpanHandle, bool)> = Vec::new();
            let mut ended = 0u64;
            for op in ops {
                match op {
                    Op::Start { parent, sampled } => {
                        let parent = match parent.and_then(|i| issued.get(i % issued.len().max(1))) {
                            Some(&(h, _)) => Parent::Local(h),
                            None => Parent::Remote(remote(sampled)),
                        };
                        let h = t.start_span("s", SpanKind::Internal, parent, None);
                        if !h.is_none() {
                            prop_assert!(issued.iter().all(|&(o, live)| o != h || !live));
                            issued.push((h, true));
                        }
                    }
                    Op::End(i) if !issued.is_empty() => {
                        let i = i % issued.len();
                        let (h, live) = issued[i];
                        prop_assert_eq!(t.end(h, None), live);
                        ended += u64::from(live);
                        issued[i].1 = false;
                    }
                    Op::SetAttribute(i) if !issued.is_empty() => {
                        let (h, live) = issued[i % issued.len()];
                        prop_assert_eq!(t.set_attribute(h, "k", 1i64.into()), live && h.is_recording());
                    }
                    _ => {}
                }
                let live = issued.iter().filter(|(_, l)| *l).count();
                prop_assert_eq!(t.live_spans(), live);
                prop_assert!(live <= 8);
                for &(h, l) in &issued {
                    prop_assert_eq!(t.is_live(h), l);
                }
            }
            let s = t.stats();
            prop_assert_eq!(s.started, s.sampled + s.unsampled);
            prop_assert_eq!(s.started, issued.len() as u64);
            let recorded: u64 = t.metrics_snapshot().iter().map(|m| m.count).sum();
            prop_assert_eq!(recorded, ended);
        }
    }
}
