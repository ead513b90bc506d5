//! The OTLP/HTTP span exporter: each batch is one `POST` of an `ExportTraceServiceRequest`, as
//! protobuf or OTLP/JSON, to the collector's traces URL, with OpenTelemetry's retry rules.
//!
//! It runs on the [`BatchProcessor`](super::export::BatchProcessor)'s own thread, so it uses a
//! blocking client (`ureq`) rather than an async runtime. Per the OTLP/HTTP specification a 2xx
//! is success (a partial success is still a 2xx, and its rejected spans are not retryable);
//! only 429, 502, 503 and 504 are retried, after the server's `Retry-After` (in seconds) or an
//! exponential backoff with jitter, and never past the export's deadline. Any other status, and a
//! connection or TLS failure, fails the batch at once: the next scheduled export tries again
//! with new spans, which bounds what a dead collector can cost.
//!
//! [`traces_endpoint`] resolves the URL the way the OTLP exporter specification says
//! (<https://opentelemetry.io/docs/specs/otel/protocol/exporter/>): "When using
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, exporters MUST construct per-signal URLs [...]. The per-signal
//! endpoint configuration options take precedence and can be used to override this behavior (the
//! URL is used as-is for them, without any modifications)", with `http://localhost:4318` as the
//! default base, so `http://localhost:4318/v1/traces` for traces.

use std::thread;
use std::time::{Duration, Instant};

use super::export::{ExportResult, SpanBatch, SpanExporter};
use super::ids::IdGenerator;
use super::otlp::{encode_json, OtlpResource, ProtobufEncoder};

/// The traces URL when neither an option nor the environment names one.
pub const DEFAULT_TRACES_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// The path appended to `OTEL_EXPORTER_OTLP_ENDPOINT` for traces.
const TRACES_PATH: &str = "v1/traces";

/// The traces URL: the `explicit` option, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended, else the default. The environment
/// values are arguments so that the rule is testable; an empty or blank value counts as unset, as
/// the SDK configuration specification says of every variable.
pub fn traces_endpoint(
    explicit: Option<&str>,
    traces_env: Option<&str>,
    base_env: Option<&str>,
) -> String {
    fn set(value: Option<&str>) -> Option<&str> {
        value.map(str::trim).filter(|v| !v.is_empty())
    }
    if let Some(url) = set(explicit).or(set(traces_env)) {
        return url.to_owned();
    }
    match set(base_env) {
        // One slash between base and path, whether or not the base ends with one.
        Some(base) => format!("{}/{TRACES_PATH}", base.trim_end_matches('/')),
        None => DEFAULT_TRACES_ENDPOINT.to_owned(),
    }
}

/// The body encoding of an OTLP/HTTP request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `application/x-protobuf`, the OTLP/HTTP default.
    #[default]
    Protobuf,
    /// `application/json`, OTLP/JSON.
    Json,
}

impl Protocol {
    /// The `Content-Type` of a request body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::Protobuf => "application/x-protobuf",
            Protocol::Json => "application/json",
        }
    }
}

/// What an [`OtlpHttpExporter`] sends, where, and how long it may take.
#[derive(Clone, Debug)]
pub struct OtlpHttpConfig {
    /// The full traces URL (see [`traces_endpoint`]).
    pub url: String,
    /// Extra request headers (an API key, say), sent on every request.
    pub headers: Vec<(String, String)>,
    /// The body encoding.
    pub protocol: Protocol,
    /// The longest one request may take; the export's own deadline also applies.
    pub timeout: Duration,
    /// The resource the spans are reported under.
    pub resource: OtlpResource,
}

/// First backoff before retrying a throttled or unavailable collector.
const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest backoff between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Sends batches to an OTLP/HTTP collector (see the module documentation for the rules).
pub struct OtlpHttpExporter {
    config: OtlpHttpConfig,
    agent: ureq::Agent,
    jitter: IdGenerator,
    /// Encodes each protobuf batch in the memory of the one before.
    encoder: ProtobufEncoder,
}

impl OtlpHttpExporter {
    /// An exporter for `config`; it connects on the first export, not here.
    pub fn new(config: OtlpHttpConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            // Statuses are ours to interpret (retryable or not), not errors.
            .http_status_as_error(false)
            // No `HTTP(S)_PROXY` from the environment: Node's own HTTP client and OpenTelemetry
            // JS's exporter ignore it too, and a collector is usually local or reached directly.
            .proxy(None)
            .user_agent(concat!("bulwark/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        OtlpHttpExporter {
            encoder: ProtobufEncoder::new(&config.resource),
            config,
            agent,
            jitter: IdGenerator::new(),
        }
    }

    /// The URL batches are sent to.
    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// One request, within `budget`.
    fn send_once(&self, body: &[u8], budget: Duration) -> ExportResult {
        let mut request = self
            .agent
            .post(&self.config.url)
            .config()
            .timeout_global(Some(budget))
            .build();
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        let response = request
            .header("Content-Type", self.config.protocol.content_type())
            .send(body);
        let mut response = match response {
            Ok(response) => response,
            Err(_) => {
                return ExportResult::Failed {
                    retryable: false,
                    retry_after: None,
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Reading the (small) body lets the connection be reused; its content does not matter:
        // a partial success's message is informational.
        let _ = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec();
        match status {
            200..=299 => ExportResult::Success,
            429 | 502 | 503 | 504 => ExportResult::Failed {
                retryable: true,
                retry_after,
            },
            _ => ExportResult::Failed {
                retryable: false,
                retry_after: None,
            },
        }
    }

    /// Sends `body`, retrying what may be retried, until it is taken, refused, or `deadline`
    /// (or the exporter's own timeout) comes.
    fn send(&mut self, body: &[u8], deadline: Instant) -> ExportResult {
        let failed = ExportResult::Failed {
            retryable: false,
            retry_after: None,
        };
        let deadline = deadline.min(Instant::now() + self.config.timeout);
        let mut attempt = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return failed;
            }
            let result = self.send_once(body, deadline - now);
            let ExportResult::Failed {
                retryable: true,
                retry_after,
            } = result
            else {
                return result;
            };
            let wait = match retry_after {
                Some(wait) => wait,
                None => self.backoff(attempt),
            };
            attempt += 1;
            // A wait that ends past the deadline could not be followed by a request anyway.
            if Instant::now() + wait >= deadline {
                return result;
            }
            // This is the export thread, whose job is to wait here; shutdown is bounded by its
            // own timeout and detaches rather than waiting for this.
            thread::sleep(wait);
        }
    }

    /// The wait before retry number `attempt` (0-based): base × 2^attempt, capped, less up to
    /// 20% jitter so that many processes do not retry in step.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let full = RETRY_BASE
            .saturating_mul(1u32 << attempt.min(16))
            .min(RETRY_MAX);
        let fraction = (self.jitter.next_u64() % 1000) as f64 / 5000.0;
        full.mul_f64(1.0 - fraction)
    }
}

impl SpanExporter for OtlpHttpExporter {
    fn export(&mut self, batch: &mut SpanBatch, deadline: Instant) -> ExportResult {
        match self.config.protocol {
            Protocol::Protobuf => {
                let body = self.encoder.encode(batch);
                let result = self.send(&body, deadline);
                self.encoder.recycle(body);
                result
            }
            Protocol::Json => match encode_json(&self.config.resource, batch) {
                Ok(body) => self.send(&body, deadline),
                Err(_) => ExportResult::Failed {
                    retryable: false,
                    retry_after: None,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracer::export::tests::{span, WAIT};
    use crate::tracer::export::{BatchConfig, BatchProcessor};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc::{self, Receiver};
    use std::sync::{Arc, Mutex};

    /// A request as the test server saw it.
    struct Received {
        request_line: String,
        content_type: String,
        api_key: Option<String>,
        body: Vec<u8>,
    }

    /// A one-thread HTTP/1.1 server on 127.0.0.1 that answers each request with the next scripted
    /// response (then `200`) and closes the connection. Returns its URL and the requests seen,
    /// each sent before the response, so a request is on the channel once the client has its
    /// answer.
    fn server(script: &[&str]) -> (String, Receiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let script: Arc<Mutex<VecDeque<String>>> =
            Arc::new(Mutex::new(script.iter().map(|s| s.to_string()).collect()));
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let (mut length, mut content_type, mut api_key) = (0, String::new(), None);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((&line, ""));
                    let value = value.trim().to_owned();
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.parse().unwrap_or(0),
                        "content-type" => content_type = value,
                        "x-api-key" => api_key = Some(value),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let status = script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| "200 OK".to_owned());
                let received = Received {
                    request_line: request_line.trim().to_owned(),
                    content_type,
                    api_key,
                    body,
                };
                if tx.send(received).is_err() {
                    break;
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (url, rx)
    }

    fn exporter(url: &str, protocol: Protocol) -> OtlpHttpExporter {
        OtlpHttpExporter::new(OtlpHttpConfig {
            url: url.to_owned(),
            headers: vec![("x-api-key".to_owned(), "secret".to_owned())],
            protocol,
            timeout: WAIT,
            resource: OtlpResource {
                service_name: "checkout".to_owned(),
                attributes: Vec::new(),
            },
        })
    }

    fn soon() -> Instant {
        Instant::now() + WAIT
    }

    #[test]
    fn endpoint_resolution_follows_the_spec() {
        let default = traces_endpoint(None, None, None);
        assert_eq!(default, "http://localhost:4318/v1/traces");
        assert_eq!(
            traces_endpoint(Some("http://a:1/x"), Some("http://b/y"), Some("http://c")),
            "http://a:1/x"
        );
        // The per-signal variable is used as is, with no path added.
        assert_eq!(
            traces_endpoint(None, Some("http://b:4318/custom"), Some("http://c")),
            "http://b:4318/custom"
        );
        assert_eq!(
            traces_endpoint(None, None, Some("http://c:4318")),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_endpoint(None, None, Some("https://c/collector/")),
            "https://c/collector/v1/traces"
        );
        // Empty values are unset.
        assert_eq!(traces_endpoint(Some(""), Some(" "), None), default);
        assert_eq!(
            traces_endpoint(Some(""), None, Some("http://c")),
            "http://c/v1/traces"
        );
    }

    #[test]
    fn protobuf_body_decodes_with_the_right_content_type() {
        let (url, requests) = server(&[]);
        let http = exporter(&url, Protocol::Protobuf);
        let mut processor = BatchProcessor::start(BatchConfig::default(), Box::new(http));
        processor.on_end(Box::new(span(1)));
        processor.on_end(Box::new(span(2)));
        assert!(processor.flush(WAIT));
        let request = requests.recv_timeout(WAIT).unwrap();
        assert_eq!(request.request_line, "POST /v1/traces HTTP/1.1");
        assert_eq!(request.content_type, "application/x-protobuf");
        assert_eq!(request.api_key.as_deref(), Some("secret"));
        let decoded = ExportTraceServiceRequest::decode(request.body.as_slice()).unwrap();
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["span-1", "span-2"]);
        assert_eq!(processor.counters().exported(), 2);
        assert_eq!(processor.counters().export_errors(), 0);
    }

    #[test]
    fn json_body_has_the_json_content_type() {
        let (url, requests) = server(&["202 Accepted"]);
        let mut exporter = exporter(&url, Protocol::Json);
        assert_eq!(
            exporter.export(&mut vec![Box::new(span(3))], soon()),
            ExportResult::Success
        );
        let request = requests.recv_timeout(WAIT).unwrap();
        assert_eq!(request.content_type, "application/json");
        let json: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"],
            "span-3"
        );
    }

    #[test]
    fn retries_a_503_after_its_retry_after() {
        let (url, requests) = server(&["503 Service Unavailable\r\nRetry-After: 0"]);
        let mut exporter = exporter(&url, Protocol::Protobuf);
        assert_eq!(
            exporter.export(&mut vec![Box::new(span(1))], soon()),
            ExportResult::Success
        );
        let first = requests.recv_timeout(WAIT).unwrap();
        let second = requests.recv_timeout(WAIT).unwrap();
        assert_eq!(first.body, second.body);
        assert!(requests.try_recv().is_err(), "no third request");
    }

    #[test]
    fn does_not_retry_a_400() {
        let (url, requests) = server(&["400 Bad Request"]);
        let mut exporter = exporter(&url, Protocol::Protobuf);
        assert_eq!(
            exporter.export(&mut vec![Box::new(span(1))], soon()),
            ExportResult::Failed {
                retryable: false,
                retry_after: None
            }
        );
        requests.recv_timeout(WAIT).unwrap();
        // The server logs a request before answering it, so a retry would be here by now.
        assert!(requests.try_recv().is_err(), "not retried");
    }

    #[test]
    fn gives_up_when_retry_after_passes_the_deadline() {
        let (url, requests) = server(&["429 Too Many Requests\r\nRetry-After: 60"]);
        let mut exporter = exporter(&url, Protocol::Protobuf);
        let before = Instant::now();
        assert_eq!(
            exporter.export(&mut vec![Box::new(span(1))], soon()),
            ExportResult::Failed {
                retryable: true,
                retry_after: Some(Duration::from_secs(60))
            }
        );
        assert!(before.elapsed() < WAIT);
        requests.recv_timeout(WAIT).unwrap();
        assert!(requests.try_recv().is_err());
    }

    #[test]
    fn connection_refused_counts_an_error_and_the_thread_survives() {
        // A port that was just free: nothing listens there.
        let url = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/v1/traces", listener.local_addr().unwrap())
        };
        let mut processor = BatchProcessor::start(
            BatchConfig::default(),
            Box::new(exporter(&url, Protocol::Protobuf)),
        );
        processor.on_end(Box::new(span(1)));
        assert!(processor.flush(WAIT));
        assert_eq!(processor.counters().export_errors(), 1);
        processor.on_end(Box::new(span(2)));
        assert!(processor.flush(WAIT));
        assert_eq!(processor.counters().export_errors(), 2);
        assert_eq!(processor.counters().exported(), 0);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let mut exporter = exporter("http://127.0.0.1:9/", Protocol::Protobuf);
        for (attempt, full_ms) in [(0, 1000), (1, 2000), (2, 4000), (3, 5000), (40, 5000)] {
            let wait = exporter.backoff(attempt).as_millis() as u64;
            assert!(
                wait <= full_ms && wait >= full_ms * 8 / 10,
                "attempt {attempt}: {wait} ms"
            );
        }
    }
}
