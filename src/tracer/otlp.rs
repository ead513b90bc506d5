//! A batch of finished spans as an OTLP `ExportTraceServiceRequest`, encoded as protobuf (the
//! OTLP/HTTP default, `application/x-protobuf`) or as OTLP/JSON (`application/json`).
//!
//! The message types are the registry's, from `opentelemetry-proto` (prost code generated from
//! the official `.proto` files), so the wire format is never hand-written. Only the message
//! features are enabled: `gen-tonic-messages` + `trace` give the prost types without tonic or a
//! gRPC client (`trace` does pull in the `opentelemetry` and `opentelemetry_sdk` crates for the
//! crate's own conversions, which we do not use), and `with-serde` gives the JSON mapping.
//!
//! OTLP/JSON is not protobuf's standard JSON mapping. The OTLP specification (section "JSON
//! Protobuf Encoding", <https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>) says:
//!
//! > The `traceId` and `spanId` byte arrays are represented as case-insensitive hex-encoded
//! > strings; they are not base64-encoded as is defined in the standard Protobuf JSON Mapping.
//! > [...] Values of enum fields MUST be encoded as integer values. [...] The keys of JSON objects
//! > are field names converted to lowerCamelCase. [...] 64-bit integer numbers in JSON-encoded
//! > payloads are encoded as decimal strings.
//!
//! `opentelemetry-proto`'s `with-serde` serializers implement exactly that (hex ids through
//! `const-hex`, which writes lowercase; `kind` and `code` are `i32` fields; camelCase names;
//! `u64` times and `intValue` as strings), and the tests below check each rule on the output
//! rather than trusting the feature's name.
//!
//! One gap of that mapping is closed here: `serde_json` writes a non-finite `doubleValue` (NaN,
//! ±Infinity) as `null`, where proto3 JSON wants the strings `"NaN"`, `"Infinity"` and
//! `"-Infinity"`; [`encode_json`] patches those values in (only when a batch has any).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status as ProtoStatus,
};
use prost::Message;
use std::borrow::Borrow;

use super::span::{AttributeValue, Attributes, SpanData, SpanKind, Status};

/// The instrumentation scope every span is reported under.
pub const SCOPE_NAME: &str = "bulwark";

/// The process that produced the spans: `service.name` and any other resource attributes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtlpResource {
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// More resource attributes (`service.version`, `deployment.environment`, ...), in order.
    /// A `service.name` here is ignored: [`Self::service_name`] wins, as it is the dedicated
    /// option.
    pub attributes: Vec<(String, AttributeValue)>,
}

/// An attribute value as OTLP's `AnyValue`. Its strings are copied: the export thread allocates
/// and frees its own memory, and the span goes back to the JS thread to be reused (see
/// `export`), so no allocation made on one thread is freed on the other.
fn any_value(value: &AttributeValue) -> AnyValue {
    use any_value::Value;
    fn array<T>(items: &[T], f: impl Fn(&T) -> Value) -> Value {
        Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|item| AnyValue {
                    value: Some(f(item)),
                })
                .collect(),
        })
    }
    let value = match value {
        AttributeValue::String(s) => Value::StringValue(s.clone()),
        AttributeValue::Bool(b) => Value::BoolValue(*b),
        AttributeValue::I64(i) => Value::IntValue(*i),
        AttributeValue::F64(f) => Value::DoubleValue(*f),
        AttributeValue::StringArray(v) => array(v, |s| Value::StringValue(s.clone())),
        AttributeValue::BoolArray(v) => array(v, |b| Value::BoolValue(*b)),
        AttributeValue::I64Array(v) => array(v, |i| Value::IntValue(*i)),
        AttributeValue::F64Array(v) => array(v, |f| Value::DoubleValue(*f)),
    };
    AnyValue { value: Some(value) }
}

/// `attributes` as OTLP key-value pairs.
fn key_values(attributes: &Attributes) -> Vec<KeyValue> {
    let mut list = Vec::with_capacity(attributes.len());
    set_key_values(&mut list, attributes);
    list
}

fn kind(kind: SpanKind) -> span::SpanKind {
    match kind {
        SpanKind::Internal => span::SpanKind::Internal,
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Producer => span::SpanKind::Producer,
        SpanKind::Consumer => span::SpanKind::Consumer,
    }
}

fn status(status: &Status) -> ProtoStatus {
    let (code, message) = match status {
        Status::Unset => (StatusCode::Unset, String::new()),
        Status::Ok => (StatusCode::Ok, String::new()),
        Status::Error(message) => (StatusCode::Error, message.clone()),
    };
    ProtoStatus {
        message,
        code: code as i32,
    }
}

/// `data` as an OTLP span message.
fn proto_span(data: &SpanData) -> Span {
    let mut message = Span::default();
    set_span(&mut message, data);
    message
}

/// The request carrying `spans`: one resource, one scope (`bulwark` at this crate's version).
pub fn export_request(
    resource: &OtlpResource,
    spans: &[impl Borrow<SpanData>],
) -> ExportTraceServiceRequest {
    let mut attributes = vec![KeyValue {
        key: "service.name".to_owned(),
        value: Some(any_value(&AttributeValue::String(
            resource.service_name.clone(),
        ))),
        ..KeyValue::default()
    }];
    attributes.extend(
        resource
            .attributes
            .iter()
            .filter(|(key, _)| key != "service.name")
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: Some(any_value(value)),
                ..KeyValue::default()
            }),
    );
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans: spans.iter().map(|span| proto_span(span.borrow())).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The request as protobuf bytes, the body of an OTLP/HTTP `application/x-protobuf` POST.
pub fn encode_protobuf(resource: &OtlpResource, spans: &[impl Borrow<SpanData>]) -> Vec<u8> {
    export_request(resource, spans).encode_to_vec()
}

/// A body larger than this is not kept for the next batch (nor the spans that made it), so one
/// batch of huge attributes does not pin its memory for the life of the exporter.
const KEEP_BODY_BYTES: usize = 4 << 20;

/// Encodes batch after batch as protobuf, as [`encode_protobuf`] does, in the memory of the
/// batch before: the request's span messages, their strings and attribute lists, and the body.
///
/// The export thread encodes a batch of up to 512 spans every few milliseconds under load.
/// Building a fresh request each time made about twenty allocations per span (every key and
/// string value is its own `String` inside prost's types) and a body over glibc's mmap
/// threshold, which the kernel mapped and zeroed page by page and unmapped again: measured on
/// a span of nine attributes, malloc and free took half of the export thread's CPU and page
/// faults a fifth. Here a span message is filled field by field, every field every time, so
/// nothing of the span before it remains (a test compares with fresh encodings).
pub struct ProtobufEncoder {
    request: ExportTraceServiceRequest,
    /// Span messages not needed by the current batch, kept for a larger one.
    spare: Vec<Span>,
    body: Vec<u8>,
}

impl ProtobufEncoder {
    /// An encoder whose requests carry `resource` and the `bulwark` scope.
    pub fn new(resource: &OtlpResource) -> Self {
        ProtobufEncoder {
            request: export_request(resource, &[] as &[SpanData]),
            spare: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The request carrying `spans`, as protobuf bytes. Hand the bytes back with
    /// [`Self::recycle`] once sent, for the next batch to be encoded in.
    pub fn encode(&mut self, spans: &[impl Borrow<SpanData>]) -> Vec<u8> {
        let Self { request, spare, .. } = self;
        let list = &mut request.resource_spans[0].scope_spans[0].spans;
        while list.len() > spans.len() {
            spare.extend(list.pop());
        }
        while list.len() < spans.len() {
            list.push(spare.pop().unwrap_or_default());
        }
        for (message, data) in list.iter_mut().zip(spans) {
            set_span(message, data.borrow());
        }
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        // A Vec grows as needed, so encoding into one cannot run out of room.
        let _ = self.request.encode(&mut body);
        body
    }

    /// Takes back the bytes [`Self::encode`] returned. After a batch whose body grew past
    /// `KEEP_BODY_BYTES`, the body and the span messages are let go instead.
    pub fn recycle(&mut self, body: Vec<u8>) {
        if body.capacity() > KEEP_BODY_BYTES {
            self.spare = Vec::new();
            *self.spans_mut() = Vec::new();
        } else {
            self.body = body;
        }
    }

    fn spans_mut(&mut self) -> &mut Vec<Span> {
        &mut self.request.resource_spans[0].scope_spans[0].spans
    }
}

/// Sets `to` to `from`, in the memory `to` has.
fn set_string(to: &mut String, from: &str) {
    to.clear();
    to.push_str(from);
}

/// Sets `to` to the bytes of `from`, in the memory `to` has.
fn set_bytes(to: &mut Vec<u8>, from: &[u8]) {
    to.clear();
    to.extend_from_slice(from);
}

/// Sets `slot` to `value` as OTLP's `AnyValue`, keeping a string value's memory for a string.
fn set_any_value(slot: &mut Option<AnyValue>, value: &AttributeValue) {
    if let (
        AttributeValue::String(text),
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(kept)),
        }),
    ) = (value, slot.as_mut())
    {
        set_string(kept, text);
        return;
    }
    *slot = Some(any_value(value));
}

/// Sets `to` to the key-value list of `from`, reusing the entries `to` has.
fn set_key_values(to: &mut Vec<KeyValue>, from: &Attributes) {
    to.truncate(from.len());
    for (i, (key, value)) in from.iter().enumerate() {
        match to.get_mut(i) {
            Some(kv) => {
                set_string(&mut kv.key, key);
                set_any_value(&mut kv.value, value);
            }
            None => to.push(KeyValue {
                key: key.to_string(),
                value: Some(any_value(value)),
                // Profiles-only string-table reference; 0 is left off the wire and out of the
                // JSON.
                ..KeyValue::default()
            }),
        }
    }
}

/// Sets every field of `message` from `data`, in the memory `message` already has (a fresh
/// message for [`proto_span`], the batch before's for [`ProtobufEncoder`]).
fn set_span(message: &mut Span, data: &SpanData) {
    set_bytes(&mut message.trace_id, &data.trace_id.to_bytes());
    set_bytes(&mut message.span_id, &data.span_id.to_bytes());
    if data.trace_state.is_empty() {
        message.trace_state.clear();
    } else {
        message.trace_state = data
            .trace_state
            .header_value(usize::MAX)
            .unwrap_or_default();
    }
    match data.parent_span_id {
        Some(id) => set_bytes(&mut message.parent_span_id, &id.to_bytes()),
        None => message.parent_span_id.clear(),
    }
    message.flags = u32::from(data.flags.bits());
    set_string(&mut message.name, &data.name);
    message.kind = kind(data.kind) as i32;
    message.start_time_unix_nano = data.start_unix_nanos;
    message.end_time_unix_nano = data.end_unix_nanos;
    set_key_values(&mut message.attributes, &data.attributes);
    message.dropped_attributes_count = data.dropped_attributes;
    // Events are rare: rebuilt, not reused.
    message.events.clear();
    message
        .events
        .extend(data.events.iter().map(|event| span::Event {
            time_unix_nano: event.time_unix_nanos,
            name: event.name.clone(),
            attributes: key_values(&event.attributes),
            dropped_attributes_count: event.dropped,
        }));
    message.dropped_events_count = data.dropped_events;
    message.links.clear();
    message.dropped_links_count = 0;
    match (&data.status, message.status.as_mut()) {
        (Status::Error(text), Some(kept)) => {
            set_string(&mut kept.message, text);
            kept.code = StatusCode::Error as i32;
        }
        (status_now, _) => message.status = Some(status(status_now)),
    }
}

/// The request as OTLP/JSON, the body of an OTLP/HTTP `application/json` POST.
///
/// # Errors
///
/// Only if `serde_json` fails, which these types (string keys, no custom failures) do not cause;
/// it stays a `Result` so that an exporter reports rather than panics should that change.
pub fn encode_json(
    resource: &OtlpResource,
    spans: &[impl Borrow<SpanData>],
) -> serde_json::Result<Vec<u8>> {
    let request = export_request(resource, spans);
    if !has_non_finite(&request) {
        return serde_json::to_vec(&request);
    }
    let mut json = serde_json::to_value(&request)?;
    for (r, resource_spans) in request.resource_spans.iter().enumerate() {
        let rj = &mut json["resourceSpans"][r];
        if let Some(resource) = &resource_spans.resource {
            patch_key_values(&mut rj["resource"]["attributes"], &resource.attributes);
        }
        for (s, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            for (i, span) in scope_spans.spans.iter().enumerate() {
                let sj = &mut rj["scopeSpans"][s]["spans"][i];
                patch_key_values(&mut sj["attributes"], &span.attributes);
                for (e, event) in span.events.iter().enumerate() {
                    patch_key_values(&mut sj["events"][e]["attributes"], &event.attributes);
                }
            }
        }
    }
    serde_json::to_vec(&json)
}

/// Whether any attribute value in `request` is a non-finite double (the rare case that needs
/// [`patch_key_values`]).
fn has_non_finite(request: &ExportTraceServiceRequest) -> bool {
    fn any(kvs: &[KeyValue]) -> bool {
        kvs.iter()
            .any(|kv| kv.value.as_ref().is_some_and(non_finite_inside))
    }
    request.resource_spans.iter().any(|rs| {
        rs.resource.as_ref().is_some_and(|r| any(&r.attributes))
            || rs.scope_spans.iter().any(|ss| {
                ss.spans.iter().any(|span| {
                    any(&span.attributes) || span.events.iter().any(|e| any(&e.attributes))
                })
            })
    })
}

fn non_finite_inside(value: &AnyValue) -> bool {
    match &value.value {
        Some(any_value::Value::DoubleValue(d)) => !d.is_finite(),
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().any(non_finite_inside),
        _ => false,
    }
}

/// proto3 JSON's spelling of a non-finite double.
fn non_finite_json(d: f64) -> serde_json::Value {
    let text = if d.is_nan() {
        "NaN"
    } else if d > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    };
    serde_json::Value::String(text.to_owned())
}

/// Rewrites, in `json` (the serialized form of `kvs`), every non-finite `doubleValue` that
/// `serde_json` wrote as `null`.
fn patch_key_values(json: &mut serde_json::Value, kvs: &[KeyValue]) {
    for (i, kv) in kvs.iter().enumerate() {
        if let Some(value) = &kv.value {
            patch_any_value(&mut json[i]["value"], value);
        }
    }
}

fn patch_any_value(json: &mut serde_json::Value, value: &AnyValue) {
    match &value.value {
        Some(any_value::Value::DoubleValue(d)) if !d.is_finite() => {
            json["doubleValue"] = non_finite_json(*d);
        }
        Some(any_value::Value::ArrayValue(a)) => {
            for (i, item) in a.values.iter().enumerate() {
                patch_any_value(&mut json["arrayValue"]["values"][i], item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_spells_non_finite_doubles_as_proto3_json_does() {
        let resource = OtlpResource {
            service_name: "svc".to_owned(),
            attributes: Vec::new(),
        };
        let mut span = crate::tracer::export::tests::span(1);
        span.attributes = vec![
            ("nan".into(), AttributeValue::F64(f64::NAN)),
            ("inf".into(), AttributeValue::F64(f64::INFINITY)),
            ("ok".into(), AttributeValue::F64(0.5)),
            (
                "arr".into(),
                AttributeValue::F64Array(vec![1.5, f64::NEG_INFINITY]),
            ),
        ];
        let bytes = encode_json(&resource, &[span]).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let attrs = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"];
        assert_eq!(attrs[0]["value"]["doubleValue"], "NaN");
        assert_eq!(attrs[1]["value"]["doubleValue"], "Infinity");
        assert_eq!(attrs[2]["value"]["doubleValue"], 0.5);
        assert_eq!(
            attrs[3]["value"]["arrayValue"]["values"][1]["doubleValue"],
            "-Infinity"
        );
        assert_eq!(
            attrs[3]["value"]["arrayValue"]["values"][0]["doubleValue"],
            1.5
        );
    }

    use super::*;
    use crate::tracer::context::{TraceFlags, TraceState};
    use crate::tracer::ids::{SpanId, TraceId};
    use crate::tracer::span::SpanLimits;
    use serde_json::Value as Json;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";
    const PARENT: &str = "a3ce929d0e0e4736";

    fn resource() -> OtlpResource {
        OtlpResource {
            service_name: "checkout".into(),
            attributes: vec![
                ("service.version".into(), "1.2.3".into()),
                ("service.name".into(), "ignored".into()),
            ],
        }
    }

    /// A span with every field set.
    fn full_span() -> SpanData {
        let mut s = SpanData::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(SPAN).unwrap(),
            Some(SpanId::from_hex(PARENT).unwrap()),
            "GET /users/:id",
            1_700_000_000_000_000_000,
            SpanLimits {
                max_attributes: 8,
                max_events: 2,
                ..SpanLimits::default()
            },
        );
        s.kind = SpanKind::Server;
        s.flags = TraceFlags::SAMPLED.with_random(true);
        s.trace_state = TraceState::parse(&["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]).unwrap();
        s.set_attribute("http.method", "GET");
        s.set_attribute("http.status_code", 200i64);
        s.set_attribute("cache.hit", false);
        s.set_attribute("ratio", 0.25);
        s.set_attribute(
            "tags",
            AttributeValue::StringArray(vec!["a".into(), "b".into()]),
        );
        s.set_attribute("ids", AttributeValue::I64Array(vec![1, -2]));
        s.set_attribute("flags", AttributeValue::BoolArray(vec![true]));
        s.set_attribute("weights", AttributeValue::F64Array(vec![1.5]));
        s.set_attribute("over.limit", 1i64);
        s.add_event(
            "cache.miss",
            1_700_000_000_000_000_500,
            vec![("key", AttributeValue::from("u:1"))],
        );
        s.record_exception(1_700_000_000_000_000_900, "TypeError", "boom", Some("at f"));
        s.add_event(
            "dropped",
            1_700_000_000_000_000_950,
            Vec::<(&str, _)>::new(),
        );
        s.set_status(Status::Error("boom".into()));
        s.end(1_700_000_000_000_001_000);
        s
    }

    fn root_span() -> SpanData {
        let mut s = SpanData::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(PARENT).unwrap(),
            None,
            "root",
            10,
            SpanLimits::default(),
        );
        s.set_status(Status::Ok);
        s.end(20);
        s
    }

    fn str_value(v: &Option<AnyValue>) -> &str {
        match v.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn protobuf_round_trips_every_field() {
        let bytes = encode_protobuf(&resource(), &[full_span(), root_span()]);
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];

        let res = rs.resource.as_ref().unwrap();
        let res_attrs: Vec<_> = res
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), str_value(&kv.value)))
            .collect();
        assert_eq!(
            res_attrs,
            vec![("service.name", "checkout"), ("service.version", "1.2.3")]
        );

        let ss = &rs.scope_spans[0];
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!(scope.name, "bulwark");
        assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(ss.spans.len(), 2);

        let sp = &ss.spans[0];
        assert_eq!(sp.trace_id, TraceId::from_hex(TRACE).unwrap().to_bytes());
        assert_eq!(sp.span_id, SpanId::from_hex(SPAN).unwrap().to_bytes());
        assert_eq!(
            sp.parent_span_id,
            SpanId::from_hex(PARENT).unwrap().to_bytes()
        );
        assert_eq!(sp.trace_state, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        assert_eq!(sp.flags, 0x03);
        assert_eq!(sp.name, "GET /users/:id");
        // SPAN_KIND_SERVER = 2 in trace.proto.
        assert_eq!(sp.kind, 2);
        assert_eq!(sp.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(sp.end_time_unix_nano, 1_700_000_000_000_001_000);

        use any_value::Value as V;
        let attr = |k: &str| {
            sp.attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
                .unwrap()
        };
        assert_eq!(attr("http.method"), V::StringValue("GET".into()));
        assert_eq!(attr("http.status_code"), V::IntValue(200));
        assert_eq!(attr("cache.hit"), V::BoolValue(false));
        assert_eq!(attr("ratio"), V::DoubleValue(0.25));
        let V::ArrayValue(ids) = attr("ids") else {
            panic!("ids is not an array")
        };
        assert_eq!(
            ids.values,
            vec![
                AnyValue {
                    value: Some(V::IntValue(1))
                },
                AnyValue {
                    value: Some(V::IntValue(-2))
                }
            ]
        );
        assert_eq!(sp.attributes.len(), 8);
        assert_eq!(sp.dropped_attributes_count, 1);

        assert_eq!(sp.events.len(), 2);
        assert_eq!(sp.dropped_events_count, 1);
        assert_eq!(sp.events[0].name, "cache.miss");
        assert_eq!(sp.events[0].time_unix_nano, 1_700_000_000_000_000_500);
        let exc = &sp.events[1];
        assert_eq!(exc.name, "exception");
        let exc_attrs: Vec<_> = exc
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), str_value(&kv.value)))
            .collect();
        assert_eq!(
            exc_attrs,
            vec![
                ("exception.type", "TypeError"),
                ("exception.message", "boom"),
                ("exception.stacktrace", "at f"),
            ]
        );

        let st = sp.status.as_ref().unwrap();
        // STATUS_CODE_ERROR = 2.
        assert_eq!((st.code, st.message.as_str()), (2, "boom"));

        let root = &ss.spans[1];
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.kind, 1, "SPAN_KIND_INTERNAL");
        assert_eq!(root.status.as_ref().unwrap().code, 1, "STATUS_CODE_OK");
        assert!(root.trace_state.is_empty());
        assert_eq!(root.flags, 0);
    }

    #[test]
    fn every_kind_maps_to_its_proto_number() {
        for (k, n) in [
            (SpanKind::Internal, 1),
            (SpanKind::Server, 2),
            (SpanKind::Client, 3),
            (SpanKind::Producer, 4),
            (SpanKind::Consumer, 5),
        ] {
            assert_eq!(kind(k) as i32, n);
        }
        assert_eq!(status(&Status::Unset).code, 0);
    }

    #[test]
    fn an_empty_batch_still_names_the_resource() {
        let req = export_request(&resource(), &[] as &[SpanData]);
        assert!(req.resource_spans[0].scope_spans[0].spans.is_empty());
        let decoded = ExportTraceServiceRequest::decode(
            encode_protobuf(&resource(), &[] as &[SpanData]).as_slice(),
        )
        .unwrap();
        assert_eq!(decoded, req);
    }

    /// A span of its own shape: `n` picks the name, which attributes (and of which types, the
    /// same key taking a string in one and a number in another), status, parent and events.
    fn varied_span(n: u64) -> SpanData {
        let mut s = SpanData::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(&format!("{:016x}", n + 1)).unwrap(),
            n.is_multiple_of(2)
                .then(|| SpanId::from_hex(PARENT).unwrap()),
            if n.is_multiple_of(3) {
                "a fairly long span name, on the heap"
            } else {
                "short"
            },
            n,
            SpanLimits::default(),
        );
        for i in 0..(n % 5) {
            if (n + i).is_multiple_of(2) {
                s.set_attribute(
                    format!("key.{i}").as_str(),
                    format!("value {n}-{i}").as_str(),
                );
            } else {
                s.set_attribute(format!("key.{i}").as_str(), (n * 10 + i) as i64);
            }
        }
        if n % 4 == 1 {
            s.add_event("e", n + 1, vec![("k", AttributeValue::from("v"))]);
        }
        match n % 3 {
            0 => s.set_status(Status::Error(format!("failed {n}"))),
            1 => s.set_status(Status::Ok),
            _ => {}
        }
        s.end(n + 2);
        s
    }

    #[test]
    fn an_encoder_reused_batch_after_batch_encodes_each_as_a_fresh_one_would() {
        // Batches shrink and grow, and each position sees spans of another shape, so any
        // field left over from the batch before shows up as a difference.
        let mut encoder = ProtobufEncoder::new(&resource());
        let batches: Vec<Vec<SpanData>> = vec![
            vec![full_span(), root_span()],
            (0..7).map(varied_span).collect(),
            vec![root_span()],
            (3..12).map(varied_span).collect(),
            vec![],
            (12..15).map(varied_span).chain([full_span()]).collect(),
            (0..5).rev().map(varied_span).collect(),
        ];
        for (i, batch) in batches.iter().enumerate() {
            let reused = encoder.encode(batch);
            assert_eq!(reused, encode_protobuf(&resource(), batch), "batch {i}");
            encoder.recycle(reused);
        }
    }

    #[test]
    fn an_encoder_lets_go_of_a_body_too_large_to_keep() {
        let mut encoder = ProtobufEncoder::new(&resource());
        let mut huge = SpanData::new(
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(SPAN).unwrap(),
            None,
            "huge",
            1,
            SpanLimits::default(),
        );
        huge.set_attribute("blob", "x".repeat(KEEP_BODY_BYTES + 1).as_str());
        huge.end(2);
        let body = encoder.encode(&[huge]);
        assert!(body.capacity() > KEEP_BODY_BYTES);
        encoder.recycle(body);
        assert_eq!(encoder.body.capacity(), 0);
        assert!(encoder.spare.is_empty() && encoder.spans_mut().is_empty());
        let small = encoder.encode(&[root_span()]);
        assert_eq!(small, encode_protobuf(&resource(), &[root_span()]));
    }

    fn is_lower_hex(s: &str, len: usize) -> bool {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn json_follows_the_otlp_mapping() {
        let bytes = encode_json(&resource(), &[full_span(), root_span()]).unwrap();
        let json: Json = serde_json::from_slice(&bytes).unwrap();
        let rs = &json["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0],
            serde_json::json!({"key": "service.name", "value": {"stringValue": "checkout"}})
        );
        let ss = &rs["scopeSpans"][0];
        assert_eq!(ss["scope"]["name"], "bulwark");
        let sp = &ss["spans"][0];

        // Ids: lowercase hex, 32 and 16 characters, not base64.
        assert_eq!(sp["traceId"], TRACE);
        assert_eq!(sp["spanId"], SPAN);
        assert_eq!(sp["parentSpanId"], PARENT);
        assert!(is_lower_hex(sp["traceId"].as_str().unwrap(), 32));
        assert!(is_lower_hex(sp["spanId"].as_str().unwrap(), 16));

        // Enums are integers.
        assert_eq!(sp["kind"], 2);
        assert_eq!(sp["status"]["code"], 2);
        assert_eq!(sp["status"]["message"], "boom");

        // 64-bit integers are decimal strings.
        assert_eq!(sp["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(sp["endTimeUnixNano"], "1700000000000001000");
        assert_eq!(sp["events"][0]["timeUnixNano"], "1700000000000000500");

        // lowerCamelCase keys and typed attribute values.
        assert_eq!(sp["droppedAttributesCount"], 1);
        assert_eq!(sp["droppedEventsCount"], 1);
        assert_eq!(sp["traceState"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        let attr = |k: &str| {
            sp["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|kv| kv["key"] == k)
                .unwrap()["value"]
                .clone()
        };
        assert_eq!(
            attr("http.status_code"),
            serde_json::json!({"intValue": "200"})
        );
        assert_eq!(attr("cache.hit"), serde_json::json!({"boolValue": false}));
        assert_eq!(attr("ratio"), serde_json::json!({"doubleValue": 0.25}));
        assert_eq!(
            attr("ids"),
            serde_json::json!({"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "-2"}]}})
        );
        assert_eq!(
            attr("tags"),
            serde_json::json!({"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}})
        );
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(!text.contains("_unix_nano") && !text.contains("trace_id"));

        // A root span's parent is absent or empty, never a made-up id.
        let root = &ss["spans"][1];
        assert!(root["parentSpanId"].is_null() || root["parentSpanId"] == "");
        assert_eq!(root["kind"], 1);
    }
}
