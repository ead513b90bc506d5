//! The export pipeline behind the tracer: finished spans go into a bounded queue, and one
//! background thread per processor (`bulwark-export`) hands them to a [`SpanExporter`] in
//! batches, with OpenTelemetry's `BatchSpanProcessor` semantics and defaults.
//!
//! The JS thread pushes onto the queue without a lock ([`BatchProcessor::on_end`]); a full
//! queue drops the span and counts it rather than blocking. The thread exports when a
//! full batch is waiting or when the scheduled delay has passed since its last export, and on
//! [`BatchProcessor::flush`] and [`BatchProcessor::shutdown`]. Both of those wait for a bounded
//! time only, and dropping a processor signals the thread and detaches it without waiting, so
//! no export ever holds the JS thread or keeps Node alive.
//!
//! The queue is a single-producer single-consumer ring (`rtrb`): the JS thread is its only
//! producer and the export thread its only consumer, so a push is a write into the slot and
//! one releasing store, with no read-modify-write for the other core to contend on. A mutex
//! and condvar remain for what is rare: waking the thread (once per batch pushed, not per
//! span), flush and stop requests, and their completion. An earlier `Mutex<VecDeque>` cost
//! 15-26 ns per push in isolation, but about 40 ns inside the tracer's sampled span (start,
//! one attribute, end), where the exporting thread kept taking the same lock: the lock's
//! cache line travelled between the two cores on every push (perf: 86% of the push on the
//! lock's compare-exchange and release). Flush's "everything queued at call time" holds
//! because the flush request reaches the thread through the mutex after the pushes it follows,
//! and the thread then drains what the ring holds.
//! Spans go back too: after an export, the thread pushes the batch's spans onto a second ring,
//! and the tracer makes its next sampled spans in them ([`BatchProcessor::reusable_span`]), so
//! that memory allocated on the JS thread is also freed there (see `RETURNED_SPANS`).
//! Exports use real time (`Instant` deadlines are what the HTTP client takes); tests wait on
//! channels with timeouts, never on sleeps.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::InvalidInput;

use super::span::{AttributeValue, Attributes, SpanData, Status};

/// How a [`BatchProcessor`] batches, with OpenTelemetry's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Spans held at most; a span ended while the queue is full is dropped. Default 2048.
    pub max_queue_size: usize,
    /// Spans sent in one export at most; a queue this long triggers an export. Default 512.
    pub max_export_batch_size: usize,
    /// Milliseconds between two scheduled exports. Default 5000.
    pub scheduled_delay_ms: u64,
    /// Milliseconds one export may take, retries included. Default 30000.
    pub export_timeout_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay_ms: 5000,
            export_timeout_ms: 30000,
        }
    }
}

impl BatchConfig {
    /// Checks every field: each at least 1, and a batch no larger than the queue. Errors name the
    /// JS option (`options.batch.maxExportBatchSize`) and the value received.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let at_least_one = |name: &str, value: u64| {
            if value >= 1 {
                Ok(())
            } else {
                Err(InvalidInput::option_range(format!(
                    "options.batch.{name} must be an integer >= 1, received {value}"
                )))
            }
        };
        at_least_one("maxQueueSize", self.max_queue_size as u64)?;
        at_least_one("maxExportBatchSize", self.max_export_batch_size as u64)?;
        // A zero delay would make the thread spin; OpenTelemetry JS also needs a positive one.
        at_least_one("scheduledDelayMillis", self.scheduled_delay_ms)?;
        at_least_one("exportTimeoutMillis", self.export_timeout_ms)?;
        if self.max_export_batch_size > self.max_queue_size {
            return Err(InvalidInput::option_range(format!(
                "options.batch.maxExportBatchSize must be <= options.batch.maxQueueSize ({}), \
                 received {}",
                self.max_queue_size, self.max_export_batch_size
            )));
        }
        Ok(())
    }
}

/// The outcome of one export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportResult {
    /// The backend accepted the batch (an OTLP partial success counts as success).
    Success,
    /// The batch was not delivered.
    Failed {
        /// Whether the backend said to try again (HTTP 429/502/503/504).
        retryable: bool,
        /// How long the backend asked to wait before retrying, if it said.
        retry_after: Option<Duration>,
    },
}

/// A batch of finished spans, each in the box it lived in from its start: spans move between the
/// JS thread and the export thread as pointers, and their boxes go back to be reused (see
/// [`BatchProcessor::reusable_span`]).
#[allow(
    clippy::vec_box,
    reason = "the boxes are what the tracer reuses, and what the rings move"
)]
pub type SpanBatch = Vec<Box<SpanData>>;

/// Where batches go. Called only from the processor's own thread, so it may block, but never
/// past `deadline`.
pub trait SpanExporter: Send {
    /// Delivers one batch, retrying as the exporter sees fit until `deadline`. The spans it
    /// leaves in `batch` go back to the tracer, which reuses their memory for new spans; an
    /// exporter that keeps spans takes them out.
    fn export(&mut self, batch: &mut SpanBatch, deadline: Instant) -> ExportResult;

    /// Releases the exporter's resources; called once, when the processor's thread stops.
    fn shutdown(&mut self) {}
}

/// An exporter that discards every batch, for a tracer with export turned off.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopExporter;

impl SpanExporter for NoopExporter {
    fn export(&mut self, _batch: &mut SpanBatch, _deadline: Instant) -> ExportResult {
        ExportResult::Success
    }
}

/// An exporter that keeps every span in memory, shared with whoever holds a clone: for tests
/// and for the tracer's `'memory'` exporter.
#[derive(Clone, Debug, Default)]
pub struct MemoryExporter {
    spans: Arc<Mutex<Vec<SpanData>>>,
}

impl MemoryExporter {
    /// An empty exporter.
    pub fn new() -> Self {
        MemoryExporter::default()
    }

    /// The store the spans go to, shared with every clone of this exporter.
    pub fn spans(&self) -> Arc<Mutex<Vec<SpanData>>> {
        Arc::clone(&self.spans)
    }

    /// A copy of the spans exported so far.
    pub fn snapshot(&self) -> Vec<SpanData> {
        lock(&self.spans).clone()
    }

    /// Removes and returns the spans exported so far.
    pub fn take(&self) -> Vec<SpanData> {
        std::mem::take(&mut *lock(&self.spans))
    }
}

impl SpanExporter for MemoryExporter {
    fn export(&mut self, batch: &mut SpanBatch, _deadline: Instant) -> ExportResult {
        lock(&self.spans).extend(batch.drain(..).map(|span| *span));
        ExportResult::Success
    }
}

/// The processor's counters, shared with the caller (the tracer's `stats()`).
#[derive(Debug, Default)]
pub struct ExportCounters {
    exported: AtomicU64,
    dropped: AtomicU64,
    export_errors: AtomicU64,
    /// The export thread's CPU time so far, as it last read it.
    thread_cpu_nanos: AtomicU64,
}

impl ExportCounters {
    /// Spans in batches the exporter accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans that were not exported: the queue was full, the processor had shut down, or their
    /// batch failed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Exports that failed (one per batch, after the exporter's own retries).
    pub fn export_errors(&self) -> u64 {
        self.export_errors.load(Ordering::Relaxed)
    }

    /// CPU time the export thread has used, in nanoseconds: encoding, sending, waiting for
    /// batches. Read by the thread after each export and before each sleep (0 where the
    /// platform has no per-thread CPU clock).
    pub fn thread_cpu_nanos(&self) -> u64 {
        self.thread_cpu_nanos.load(Ordering::Relaxed)
    }
}

/// CPU time used by the calling thread, in nanoseconds (0 where there is no such clock).
#[cfg(unix)]
fn thread_cpu_nanos() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// CPU time used by the calling thread: not measured on this platform.
#[cfg(not(unix))]
fn thread_cpu_nanos() -> u64 {
    0
}

/// A poisoned lock only means a panic elsewhere; the queue itself is always consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct State {
    /// Flushes asked for and flushes done, as generations: a waiter waits for `flushed` to
    /// reach the number its request got.
    flush_requested: u64,
    flushed: u64,
    /// Set by shutdown and drop; the thread exports what is left and exits.
    stopping: bool,
    /// Set by the thread as it exits, so that waiters stop waiting.
    exited: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the thread: a full batch, a flush or a stop.
    work: Condvar,
    /// Wakes flush and shutdown waiters: a flush done or the thread gone.
    done: Condvar,
    counters: Arc<ExportCounters>,
    config: BatchConfig,
    /// `state.stopping`, readable without the lock by `on_end`.
    stopping: AtomicBool,
    /// Set by the thread while it sleeps on `work` waiting for a batch, so that `on_end` only
    /// pays for a wake-up (a futex call, and on a VM an interrupt to another core: measured at
    /// about 14% of a sampled span when done for every batch) when someone is asleep to get it.
    parked: AtomicBool,
}

/// While spans keep filling batches, the thread checks the queue on its own timer instead of
/// sleeping until `on_end` wakes it: every quarter of the time the last batch took to fill,
/// but at least this often...
const BUSY_POLL_MIN: Duration = Duration::from_millis(1);
/// ... and at most this long, so that a queue of four batches does not overflow unless the
/// rate of spans jumps several times over within one wait.
const BUSY_POLL_MAX: Duration = Duration::from_millis(10);
/// Checks in a row that find less than a batch before the thread goes back to sleeping until
/// woken: about two batches' time at the last rate. Each check is a sleep and a wake-up of the
/// thread (about 10-25 µs of CPU on a VM here), which is why the interval follows the rate: at
/// 10,000 spans a second, a check every millisecond cost about 0.8 µs of export-thread CPU per
/// span, more than encoding it.
const BUSY_POLLS_BEFORE_PARKING: u32 = 8;

/// How often to check the queue when the last batch took `fill_time` to fill.
fn busy_poll_interval(fill_time: Duration) -> Duration {
    (fill_time / 4).clamp(BUSY_POLL_MIN, BUSY_POLL_MAX)
}

/// Exported spans the thread gives back for reuse at most (fewer with a smaller queue: the ring
/// holds as many as the queue, so that every exported span comes back, up to this bound). The
/// rest are freed on the thread.
///
/// Why give them back: a span's lists and strings are allocated on the JS thread. Freed on the
/// export thread, they came back to the JS thread's allocator only through its arena lock,
/// which both threads then took for every span. A loop of sampled spans with one attribute
/// spent about 30% of its time in that lock (glibc malloc, perf) and cost 450 ns a span.
///
/// Why as many as the queue: while spans end faster than they are exported (the queue fills
/// and drops), each drain hands back a whole queue's worth at once. A ring of 1.5 batches took
/// 768 of the default queue's 2,048; the JS thread then made the other 1,280 anew and the
/// thread freed as many, about 8% of a sampled span's time in malloc and free (perf, 2026-11-28).
const RETURNED_SPANS: usize = 4096;

/// Spans dropped on a full queue that the processor keeps for reuse at most: while spans end
/// faster than they are exported, each dropped one is made again at the next start.
const SPARE_SPANS: usize = 64;

/// A bounded span queue drained by one background thread into a [`SpanExporter`].
pub struct BatchProcessor {
    shared: Arc<Shared>,
    /// The ring's producing end: only `on_end` pushes.
    queue: rtrb::Producer<Box<SpanData>>,
    /// Exported spans coming back from the thread, for [`Self::reusable_span`].
    returned: rtrb::Consumer<Box<SpanData>>,
    /// Spans dropped because the queue was full, kept (up to `SPARE_SPANS`) for reuse.
    spare: SpanBatch,
    /// Spans pushed since the thread was last woken for a full batch.
    pushed_since_wake: usize,
    thread: Option<thread::JoinHandle<()>>,
}

impl BatchProcessor {
    /// Starts the processor's thread. `config` should have passed [`BatchConfig::validate`];
    /// zero sizes are raised to 1 rather than trusted. Should the OS refuse a thread, the
    /// processor still works as a sink that drops and counts every span.
    pub fn start(config: BatchConfig, exporter: Box<dyn SpanExporter>) -> BatchProcessor {
        let config = BatchConfig {
            max_queue_size: config.max_queue_size.max(1),
            max_export_batch_size: config
                .max_export_batch_size
                .clamp(1, config.max_queue_size.max(1)),
            scheduled_delay_ms: config.scheduled_delay_ms.max(1),
            export_timeout_ms: config.export_timeout_ms.max(1),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            counters: Arc::new(ExportCounters::default()),
            config,
            stopping: AtomicBool::new(false),
            parked: AtomicBool::new(false),
        });
        let (queue, consumer) = rtrb::RingBuffer::new(config.max_queue_size);
        let (give_back, returned) =
            rtrb::RingBuffer::new(RETURNED_SPANS.min(config.max_queue_size));
        let worker = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("bulwark-export".to_owned())
            .spawn(move || run(&worker, consumer, give_back, exporter))
            .ok();
        if thread.is_none() {
            let mut state = lock(&shared.state);
            state.stopping = true;
            state.exited = true;
            shared.stopping.store(true, Ordering::Relaxed);
        }
        BatchProcessor {
            shared,
            queue,
            returned,
            spare: Vec::new(),
            pushed_since_wake: 0,
            thread,
        }
    }

    /// Queues a finished span; drops and counts it if the queue is full or the processor has
    /// shut down. Never blocks on an export.
    pub fn on_end(&mut self, span: Box<SpanData>) {
        let shared = &*self.shared;
        if shared.stopping.load(Ordering::Relaxed) {
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Err(rtrb::PushError::Full(span)) = self.queue.push(span) {
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            // a dropped span's memory serves the next span rather than going back to malloc
            if self.spare.len() < SPARE_SPANS {
                self.spare.push(span);
            }
            return;
        }
        // Every batch's worth of pushes wakes the thread once, if it is asleep: a thread that is
        // polling (spans are arriving fast) finds the batch by itself. The fence pairs with the
        // thread's between setting `parked` and its last look at the ring, so either it sees
        // this push or this sees it parked; the lock then orders the notify after its wait.
        self.pushed_since_wake += 1;
        if self.pushed_since_wake >= shared.config.max_export_batch_size {
            self.pushed_since_wake = 0;
            std::sync::atomic::fence(Ordering::SeqCst);
            if shared.parked.load(Ordering::Relaxed) {
                let _state = lock(&shared.state);
                shared.work.notify_one();
            }
        }
    }

    /// A finished span whose memory (its box, its attribute and event lists) a new span may
    /// reuse after [`SpanData::reuse`]: one dropped on a full queue, or one the thread gave back
    /// after exporting it; `None` when none is waiting.
    pub fn reusable_span(&mut self) -> Option<Box<SpanData>> {
        self.spare.pop().or_else(|| self.returned.pop().ok())
    }

    /// Spans waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.buffer().capacity() - self.queue.slots()
    }

    /// The counters, shared: they stay readable after the processor is gone.
    pub fn counters(&self) -> Arc<ExportCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// A handle that can flush and shut down from another thread.
    pub fn handle(&self) -> ProcessorHandle {
        ProcessorHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> BatchConfig {
        self.shared.config
    }

    /// Exports every span queued at the time of the call and waits for that, at most `timeout`.
    /// Returns whether it finished in time (a failed export still finishes the flush; it is
    /// counted in `export_errors`). After shutdown, returns whether the queue is empty.
    pub fn flush(&self, timeout: Duration) -> bool {
        flush_shared(&self.shared, timeout)
    }

    /// Flushes, then stops the thread and joins it, all within `timeout`; later spans are
    /// dropped and counted. Returns whether everything finished in time; if not, the thread is
    /// left to finish on its own. Calling it again does nothing and returns `true`.
    pub fn shutdown(&mut self, timeout: Duration) -> bool {
        let Some(handle) = self.thread.take() else {
            return true;
        };
        let (flushed, exited) = flush_and_stop(&self.shared, timeout);
        if !exited {
            // Detach: the thread exits by itself once its export returns.
            return false;
        }
        // The thread has said it is exiting, so this join is immediate.
        let _ = handle.join();
        flushed
    }
}

/// A `Send` handle on a processor's queue and thread, so that flush and shutdown can wait on
/// another thread (the binding's `AsyncTask`) while the processor itself stays with its tracer.
#[derive(Clone)]
pub struct ProcessorHandle {
    shared: Arc<Shared>,
}

impl ProcessorHandle {
    /// As [`BatchProcessor::flush`].
    pub fn flush(&self, timeout: Duration) -> bool {
        flush_shared(&self.shared, timeout)
    }

    /// Flushes, then tells the thread to stop and waits for it to exit, all within `timeout`.
    /// Spans ended later are dropped and counted. The thread is not joined: it has exited (or
    /// exits on its own once its export returns), and the processor's drop detaches it.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let (flushed, exited) = flush_and_stop(&self.shared, timeout);
        flushed && exited
    }
}

/// Flushes, then tells the thread to stop and waits until it says it is exiting, all within
/// `timeout`. Returns whether the flush finished in time and whether the thread has exited (one
/// that has not exits by itself once its export returns).
fn flush_and_stop(shared: &Arc<Shared>, timeout: Duration) -> (bool, bool) {
    let deadline = Instant::now() + timeout;
    let flushed = flush_shared(shared, timeout);
    let mut state = lock(&shared.state);
    state.stopping = true;
    shared.stopping.store(true, Ordering::Relaxed);
    shared.work.notify_one();
    while !state.exited {
        let now = Instant::now();
        if now >= deadline {
            return (flushed, false);
        }
        state = shared
            .done
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    (flushed, true)
}

fn flush_shared(shared: &Shared, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut state = lock(&shared.state);
    if state.exited {
        // The thread drained the ring before it exited, and nothing is pushed after a stop.
        return true;
    }
    state.flush_requested += 1;
    let target = state.flush_requested;
    shared.work.notify_one();
    while state.flushed < target && !state.exited {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        state = shared
            .done
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    state.flushed >= target
}

/// An exporter that writes one JSON line per span to stdout (the tracer's `'console'`
/// exporter), from the processor's thread: the service, ids, name, kind, times, duration,
/// status, attributes and events, readable by a person and by `JSON.parse`.
#[derive(Clone, Debug, Default)]
pub struct ConsoleExporter {
    service_name: String,
}

impl ConsoleExporter {
    /// An exporter whose lines name `service_name`.
    pub fn new(service_name: impl Into<String>) -> Self {
        ConsoleExporter {
            service_name: service_name.into(),
        }
    }

    /// The JSON line of one span.
    pub fn line(&self, span: &SpanData) -> serde_json::Value {
        let status = match &span.status {
            Status::Unset => serde_json::json!({ "code": "unset" }),
            Status::Ok => serde_json::json!({ "code": "ok" }),
            Status::Error(message) => serde_json::json!({ "code": "error", "message": message }),
        };
        let events: Vec<serde_json::Value> = span
            .events
            .iter()
            .map(|event| {
                serde_json::json!({
                    "name": event.name,
                    "timeUnixNano": event.time_unix_nanos.to_string(),
                    "attributes": attributes_json(&event.attributes),
                })
            })
            .collect();
        let duration_ms = span.end_unix_nanos.saturating_sub(span.start_unix_nanos) as f64 / 1e6;
        serde_json::json!({
            "service": self.service_name,
            "traceId": span.trace_id.to_hex(),
            "spanId": span.span_id.to_hex(),
            "parentSpanId": span.parent_span_id.map(|id| id.to_hex()),
            "name": span.name.as_str(),
            "kind": format!("{:?}", span.kind).to_lowercase(),
            "startTimeUnixNano": span.start_unix_nanos.to_string(),
            "endTimeUnixNano": span.end_unix_nanos.to_string(),
            "durationMs": duration_ms,
            "status": status,
            "attributes": attributes_json(&span.attributes),
            "events": events,
        })
    }
}

/// Attributes as one JSON object; a non-finite double is written as its name (`"NaN"`,
/// `"Infinity"`, `"-Infinity"`), which JSON has no number for.
fn attributes_json(attributes: &Attributes) -> serde_json::Value {
    fn number(f: f64) -> serde_json::Value {
        serde_json::Number::from_f64(f).map_or_else(
            || {
                serde_json::Value::String(
                    if f.is_nan() {
                        "NaN"
                    } else if f > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    }
                    .to_owned(),
                )
            },
            serde_json::Value::Number,
        )
    }
    let map = attributes
        .iter()
        .map(|(key, value)| {
            let json = match value {
                AttributeValue::String(s) => serde_json::Value::from(s.as_str()),
                AttributeValue::Bool(b) => serde_json::Value::from(*b),
                AttributeValue::I64(i) => serde_json::Value::from(*i),
                AttributeValue::F64(f) => number(*f),
                AttributeValue::StringArray(v) => serde_json::Value::from(v.clone()),
                AttributeValue::BoolArray(v) => serde_json::Value::from(v.clone()),
                AttributeValue::I64Array(v) => serde_json::Value::from(v.clone()),
                AttributeValue::F64Array(v) => v.iter().copied().map(number).collect(),
            };
            (key.to_string(), json)
        })
        .collect();
    serde_json::Value::Object(map)
}

impl SpanExporter for ConsoleExporter {
    fn export(&mut self, batch: &mut SpanBatch, _deadline: Instant) -> ExportResult {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for span in batch.iter() {
            if writeln!(out, "{}", self.line(span)).is_err() {
                return ExportResult::Failed {
                    retryable: false,
                    retry_after: None,
                };
            }
        }
        ExportResult::Success
    }
}

impl Drop for BatchProcessor {
    /// Signals the thread to export what is left and exit, and detaches it: never waits.
    fn drop(&mut self) {
        if self.thread.take().is_some() {
            lock(&self.shared.state).stopping = true;
            self.shared.stopping.store(true, Ordering::Relaxed);
            self.shared.work.notify_one();
        }
    }
}

/// The thread's loop: wait for a full batch, a flush, a stop or the scheduled delay, then export.
fn run(
    shared: &Shared,
    mut queue: rtrb::Consumer<Box<SpanData>>,
    mut give_back: rtrb::Producer<Box<SpanData>>,
    mut exporter: Box<dyn SpanExporter>,
) {
    let delay = Duration::from_millis(shared.config.scheduled_delay_ms);
    let batch_size = shared.config.max_export_batch_size;
    let mut next_scheduled = Instant::now() + delay;
    // Polls left before parking; refilled whenever a full batch is found.
    let mut busy_polls = 0;
    let mut poll_interval = BUSY_POLL_MIN;
    // When the last full batch was found, to time how long the next one takes to fill.
    let mut last_full = Instant::now();
    let mut batch = SpanBatch::with_capacity(batch_size);
    loop {
        let mut state = lock(&shared.state);
        let (drain_all, flush_target, stopping) = loop {
            let flush_pending = state.flush_requested > state.flushed;
            if state.stopping || flush_pending {
                break (true, state.flush_requested, state.stopping);
            }
            if queue.slots() >= batch_size {
                let now = Instant::now();
                poll_interval = busy_poll_interval(now - last_full);
                last_full = now;
                busy_polls = BUSY_POLLS_BEFORE_PARKING;
                break (false, state.flush_requested, false);
            }
            let now = Instant::now();
            if now >= next_scheduled {
                break (true, state.flush_requested, false);
            }
            if busy_polls > 0 {
                // Spans were filling batches a moment ago: look again shortly, on this thread's
                // own timer, rather than have `on_end` wake it.
                busy_polls -= 1;
                drop(state);
                thread::sleep(poll_interval.min(next_scheduled - now));
                state = lock(&shared.state);
                continue;
            }
            shared
                .counters
                .thread_cpu_nanos
                .store(thread_cpu_nanos(), Ordering::Relaxed);
            shared.parked.store(true, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::SeqCst);
            if queue.slots() >= batch_size {
                shared.parked.store(false, Ordering::Relaxed);
                continue;
            }
            state = shared
                .work
                .wait_timeout(state, next_scheduled - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            shared.parked.store(false, Ordering::Relaxed);
        };
        // A flush or a scheduled export takes what is queued now, not what arrives during the
        // exports, so that it ends even under a steady stream of spans.
        let mut remaining = if drain_all { queue.slots() } else { batch_size };
        drop(state);
        while remaining > 0 {
            let n = remaining.min(batch_size).min(queue.slots());
            if let Ok(chunk) = queue.read_chunk(n) {
                batch.extend(chunk);
            }
            if batch.is_empty() {
                break;
            }
            remaining -= batch.len();
            export(shared, exporter.as_mut(), &mut batch);
            // what the ring cannot take is dropped with the drain, here
            for span in batch.drain(..) {
                if give_back.push(span).is_err() {
                    break;
                }
            }
        }
        next_scheduled = Instant::now() + delay;
        let mut state = lock(&shared.state);
        state.flushed = state.flushed.max(flush_target);
        if stopping {
            state.exited = true;
            drop(state);
            shared.done.notify_all();
            break;
        }
        drop(state);
        shared.done.notify_all();
    }
    let _ = catch_unwind(AssertUnwindSafe(|| exporter.shutdown()));
}

fn export(shared: &Shared, exporter: &mut dyn SpanExporter, batch: &mut SpanBatch) {
    let count = batch.len() as u64;
    let deadline = Instant::now() + Duration::from_millis(shared.config.export_timeout_ms);
    // A panicking exporter costs one batch, not the thread (flush waiters would hang on it).
    let result = catch_unwind(AssertUnwindSafe(|| exporter.export(batch, deadline)));
    match result {
        Ok(ExportResult::Success) => {
            shared.counters.exported.fetch_add(count, Ordering::Relaxed);
        }
        _ => {
            // The batch is lost: one export error, and its spans count as dropped.
            shared
                .counters
                .export_errors
                .fetch_add(1, Ordering::Relaxed);
            shared.counters.dropped.fetch_add(count, Ordering::Relaxed);
        }
    }
    shared
        .counters
        .thread_cpu_nanos
        .store(thread_cpu_nanos(), Ordering::Relaxed);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_busy_poll_follows_the_fill_time_within_its_bounds() {
        // a batch every 51 ms (10,000 spans a second): a check every 10 ms, not every 1
        assert_eq!(busy_poll_interval(Duration::from_millis(51)), BUSY_POLL_MAX);
        assert_eq!(
            busy_poll_interval(Duration::from_millis(20)),
            Duration::from_millis(5)
        );
        // batches back to back (a burst): the shortest interval
        assert_eq!(busy_poll_interval(Duration::ZERO), BUSY_POLL_MIN);
        assert_eq!(busy_poll_interval(Duration::from_secs(60)), BUSY_POLL_MAX);
    }

    #[test]
    fn a_console_line_carries_service_status_attributes_and_events() {
        let mut data = span(7);
        data.attributes = vec![
            (
                "http.route".into(),
                AttributeValue::String("/users/:id".into()),
            ),
            ("n".into(), AttributeValue::I64(3)),
            ("nan".into(), AttributeValue::F64(f64::NAN)),
        ];
        data.status = Status::Error("boom".into());
        data.events.push(crate::tracer::span::Event {
            name: "retry".into(),
            time_unix_nanos: 1_700_000_000_050_000_000,
            attributes: vec![("attempt".into(), AttributeValue::I64(2))],
            dropped: 0,
        });
        let line = ConsoleExporter::new("budget-server").line(&data);
        assert_eq!(line["service"], "budget-server");
        assert_eq!(line["name"], "span-7");
        assert_eq!(
            line["status"],
            serde_json::json!({"code": "error", "message": "boom"})
        );
        assert_eq!(
            line["attributes"],
            serde_json::json!({"http.route": "/users/:id", "n": 3, "nan": "NaN"})
        );
        assert_eq!(line["events"][0]["name"], "retry");
        assert_eq!(line["events"][0]["attributes"]["attempt"], 2);
        assert_eq!(line["durationMs"], 100.0);
    }
    use crate::tracer::ids::{SpanId, TraceId};
    use crate::tracer::span::SpanLimits;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc::{self, Receiver, Sender};

    /// A generous bound for a wake-up that should take microseconds; only reached on failure.
    pub(crate) const WAIT: Duration = Duration::from_secs(2);

    pub(crate) fn span(n: u8) -> SpanData {
        let mut span = SpanData::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex(&format!("00f067aa0ba902{n:02x}")).unwrap(),
            None,
            format!("span-{n}"),
            1_700_000_000_000_000_000,
            SpanLimits::default(),
        );
        span.end(1_700_000_000_100_000_000);
        span
    }

    /// Sends each batch's span names to the test, so it can wait on a channel.
    struct ChannelExporter {
        batches: Sender<Vec<String>>,
        shut: Arc<AtomicBool>,
    }

    impl SpanExporter for ChannelExporter {
        fn export(&mut self, batch: &mut SpanBatch, _deadline: Instant) -> ExportResult {
            let _ = self
                .batches
                .send(batch.iter().map(|s| s.name.to_string()).collect());
            ExportResult::Success
        }
        fn shutdown(&mut self) {
            self.shut.store(true, Ordering::SeqCst);
        }
    }

    fn channel_processor(config: BatchConfig) -> (BatchProcessor, Receiver<Vec<String>>) {
        let (tx, rx) = mpsc::channel();
        let exporter = ChannelExporter {
            batches: tx,
            shut: Arc::new(AtomicBool::new(false)),
        };
        (BatchProcessor::start(config, Box::new(exporter)), rx)
    }

    /// A config where only size, flush or shutdown can trigger an export during a test.
    fn no_timer(queue: usize, batch: usize) -> BatchConfig {
        BatchConfig {
            max_queue_size: queue,
            max_export_batch_size: batch,
            scheduled_delay_ms: 3_600_000,
            export_timeout_ms: 1000,
        }
    }

    /// Blocks its first export until released, telling the test when it has started.
    struct GateExporter {
        started: Sender<()>,
        release: Receiver<()>,
    }

    impl SpanExporter for GateExporter {
        fn export(&mut self, _batch: &mut SpanBatch, _deadline: Instant) -> ExportResult {
            let _ = self.started.send(());
            let _ = self.release.recv_timeout(WAIT);
            ExportResult::Success
        }
    }

    #[test]
    fn defaults_are_otel_defaults_and_valid() {
        let config = BatchConfig::default();
        assert_eq!(config.max_queue_size, 2048);
        assert_eq!(config.max_export_batch_size, 512);
        assert_eq!(config.scheduled_delay_ms, 5000);
        assert_eq!(config.export_timeout_ms, 30000);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_option_and_value() {
        let err = |config: BatchConfig| config.validate().unwrap_err().message;
        let base = BatchConfig::default();
        assert_eq!(
            err(BatchConfig {
                max_queue_size: 0,
                ..base
            }),
            "options.batch.maxQueueSize must be an integer >= 1, received 0"
        );
        assert!(err(BatchConfig {
            max_export_batch_size: 0,
            ..base
        })
        .starts_with("options.batch.maxExportBatchSize"));
        assert!(err(BatchConfig {
            scheduled_delay_ms: 0,
            ..base
        })
        .starts_with("options.batch.scheduledDelayMillis"));
        assert!(err(BatchConfig {
            export_timeout_ms: 0,
            ..base
        })
        .starts_with("options.batch.exportTimeoutMillis"));
        let too_big = BatchConfig {
            max_queue_size: 10,
            max_export_batch_size: 11,
            ..base
        };
        let e = too_big.validate().unwrap_err();
        assert_eq!(e.kind, crate::common::InvalidKind::Range);
        assert_eq!(
            e.message,
            "options.batch.maxExportBatchSize must be <= options.batch.maxQueueSize (10), \
             received 11"
        );
    }

    #[test]
    fn a_full_batch_is_exported_without_waiting_for_the_timer() {
        let (mut processor, rx) = channel_processor(no_timer(100, 4));
        for n in 0..3 {
            processor.on_end(Box::new(span(n)));
        }
        processor.on_end(Box::new(span(3)));
        let batch = rx.recv_timeout(WAIT).expect("a batch of 4");
        assert_eq!(batch, ["span-0", "span-1", "span-2", "span-3"]);
        assert_eq!(processor.queued(), 0);
    }

    #[test]
    fn the_timer_exports_a_partial_batch() {
        let (mut processor, rx) = channel_processor(BatchConfig {
            scheduled_delay_ms: 20,
            ..BatchConfig::default()
        });
        processor.on_end(Box::new(span(1)));
        processor.on_end(Box::new(span(2)));
        let batch = rx.recv_timeout(WAIT).expect("a scheduled export");
        assert_eq!(batch, ["span-1", "span-2"]);
        // An empty queue exports nothing on later ticks.
        assert!(rx.recv_timeout(Duration::from_millis(60)).is_err());
        // The counter moves after the exporter returns; a flush waits for that.
        assert!(processor.flush(WAIT));
        assert_eq!(processor.counters().exported(), 2);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let exporter = GateExporter {
            started: started_tx,
            release: release_rx,
        };
        let mut processor = BatchProcessor::start(no_timer(4, 2), Box::new(exporter));
        processor.on_end(Box::new(span(0)));
        processor.on_end(Box::new(span(1)));
        // The thread now holds that batch in a blocked export; the queue is empty again.
        started.recv_timeout(WAIT).expect("export started");
        for n in 2..9 {
            processor.on_end(Box::new(span(n)));
        }
        assert_eq!(processor.queued(), 4);
        assert_eq!(processor.counters().dropped(), 3);
        release.send(()).unwrap();
        // With the sender gone, the later batches pass the gate at once.
        drop(release);
        assert!(processor.shutdown(WAIT));
        assert_eq!(processor.counters().exported(), 6);
    }

    #[test]
    fn flush_exports_everything_queued() {
        let memory = MemoryExporter::new();
        let mut processor = BatchProcessor::start(no_timer(100, 4), Box::new(memory.clone()));
        for n in 0..10 {
            processor.on_end(Box::new(span(n)));
        }
        assert!(processor.flush(WAIT));
        assert_eq!(memory.snapshot().len(), 10);
        assert_eq!(processor.queued(), 0);
        assert_eq!(processor.counters().exported(), 10);
        // A flush with nothing queued returns at once.
        assert!(processor.flush(WAIT));
    }

    #[test]
    fn flush_times_out_on_a_stuck_exporter() {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let exporter = GateExporter {
            started: started_tx,
            release: release_rx,
        };
        let mut processor = BatchProcessor::start(no_timer(10, 2), Box::new(exporter));
        processor.on_end(Box::new(span(0)));
        processor.on_end(Box::new(span(1)));
        started.recv_timeout(WAIT).unwrap();
        assert!(!processor.flush(Duration::from_millis(20)));
        release.send(()).unwrap();
    }

    #[test]
    fn shutdown_exports_joins_and_then_drops() {
        let (tx, rx) = mpsc::channel();
        let shut = Arc::new(AtomicBool::new(false));
        let exporter = ChannelExporter {
            batches: tx,
            shut: Arc::clone(&shut),
        };
        let mut processor = BatchProcessor::start(no_timer(100, 50), Box::new(exporter));
        for n in 0..5 {
            processor.on_end(Box::new(span(n)));
        }
        assert!(processor.shutdown(WAIT));
        assert_eq!(rx.recv_timeout(WAIT).unwrap().len(), 5);
        assert!(shut.load(Ordering::SeqCst), "exporter shut down");
        assert!(processor.thread.is_none());
        processor.on_end(Box::new(span(9)));
        assert_eq!(processor.counters().dropped(), 1);
        assert_eq!(processor.queued(), 0);
        assert!(processor.shutdown(WAIT), "idempotent");
        assert!(processor.flush(WAIT));
    }

    #[test]
    fn drop_does_not_wait_for_a_stuck_export() {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let exporter = GateExporter {
            started: started_tx,
            release: release_rx,
        };
        let mut processor = BatchProcessor::start(no_timer(10, 1), Box::new(exporter));
        processor.on_end(Box::new(span(0)));
        started.recv_timeout(WAIT).unwrap();
        let before = Instant::now();
        drop(processor);
        assert!(before.elapsed() < Duration::from_millis(500));
        release.send(()).unwrap();
    }

    #[test]
    fn a_panicking_exporter_counts_an_error_and_the_thread_survives() {
        struct Panics(bool);
        impl SpanExporter for Panics {
            fn export(&mut self, _batch: &mut SpanBatch, _deadline: Instant) -> ExportResult {
                if std::mem::replace(&mut self.0, false) {
                    panic!("exporter bug");
                }
                ExportResult::Success
            }
        }
        let mut processor = BatchProcessor::start(no_timer(10, 5), Box::new(Panics(true)));
        processor.on_end(Box::new(span(0)));
        assert!(processor.flush(WAIT));
        processor.on_end(Box::new(span(1)));
        assert!(processor.flush(WAIT));
        let counters = processor.counters();
        assert_eq!((counters.export_errors(), counters.exported()), (1, 1));
    }

    #[test]
    fn noop_exporter_accepts_everything() {
        let mut processor = BatchProcessor::start(no_timer(10, 5), Box::new(NoopExporter));
        processor.on_end(Box::new(span(0)));
        assert!(processor.flush(WAIT));
        assert_eq!(processor.counters().exported(), 1);
    }

    #[test]
    fn a_handle_flushes_and_shuts_down_from_another_thread() {
        let exporter = MemoryExporter::new();
        let mut processor = BatchProcessor::start(
            BatchConfig {
                scheduled_delay_ms: 60_000,
                ..BatchConfig::default()
            },
            Box::new(exporter.clone()),
        );
        let handle = processor.handle();
        processor.on_end(Box::new(crate::tracer::span::SpanData::new(
            crate::tracer::ids::TraceId::from_bytes([1; 16]),
            crate::tracer::ids::SpanId::from_bytes([2; 8]),
            None,
            "s",
            1,
            crate::tracer::span::SpanLimits::default(),
        )));
        let waiter = handle.clone();
        let flushed = thread::spawn(move || waiter.flush(Duration::from_secs(5)));
        assert!(flushed.join().unwrap());
        assert_eq!(exporter.snapshot().len(), 1);
        assert!(
            thread::spawn(move || handle.shutdown(Duration::from_secs(5)))
                .join()
                .unwrap()
        );
        processor.on_end(Box::new(exporter.snapshot().remove(0)));
        assert_eq!(processor.counters().dropped(), 1);
    }
}
