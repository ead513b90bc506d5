//! The tracer block: W3C trace context, spans, sampling, span metrics and OTLP export, behind
//! the `DistributedTracer` JS class.
//!
//! This is its first part, trace context and ids, in plain Rust with no napi: `ids` (trace and
//! span ids, and the generator that makes them) and `context` (the `traceparent` and
//! `tracestate` headers, parsed and written exactly as W3C Trace Context Level 1 says), then
//! `sampler` (parent-based, trace-id ratio sampling that agrees with OpenTelemetry JS) and
//! `metrics` (per-name span counts and latencies, and the tracer's counters), `span` (the span
//! data model with OpenTelemetry's limits and status rules) and `otlp` (a batch of spans as an
//! OTLP `ExportTraceServiceRequest`, in protobuf or OTLP/JSON; `ProtobufEncoder` encodes batch
//! after batch in the memory of the one before), and last the export pipeline:
//! `export` (the batching span processor and its thread) and `otlp_http` (the OTLP/HTTP
//! exporter and endpoint resolution). `tracer_core` ties them together: the [`Tracer`] that the
//! binding wraps, holding live spans in a slab behind numeric [`SpanHandle`]s.

pub mod binding;
pub mod context;
pub mod export;
pub mod ids;
pub mod metrics;
pub mod otlp;
pub mod otlp_http;
pub mod sampler;
pub mod span;
pub mod tracer_core;

pub use context::{
    format_traceparent, parse_traceparent, parse_tracestate, SpanContext, TraceFlags, TraceState,
    TraceStateError,
};
pub use export::{
    BatchConfig, BatchProcessor, ConsoleExporter, ExportCounters, ExportResult, MemoryExporter,
    NoopExporter, ProcessorHandle, SpanExporter,
};
pub use ids::{IdGenerator, SpanId, TraceId};
pub use metrics::{SpanMetrics, SpanNameStats, TracerCounters, OVERFLOW_NAME};
pub use otlp::{encode_json, encode_protobuf, export_request, OtlpResource, ProtobufEncoder};
pub use otlp_http::{traces_endpoint, OtlpHttpConfig, OtlpHttpExporter, Protocol};
pub use sampler::{SampleRate, Sampler, SamplingRule, SpanMatcher};
pub use span::{AttributeValue, Attributes, Event, SpanData, SpanKind, SpanLimits, Status};
pub use tracer_core::{
    Parent, SpanHandle, Tracer, TracerConfig, TracerStats, MAX_LIVE_SPANS_LIMIT,
};
