//! Logs and traces: one `tracing` subscriber with a log layer (JSON lines under `serve`,
//! readable ones under `sandbox`) and, when an OTLP endpoint is configured, an OpenTelemetry
//! layer exporting spans over OTLP/HTTP (protobuf). Also what ties a request together: its
//! `x-request-id`, its span, and the W3C trace context it passes to the upstreams.

use std::io::IsTerminal;

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue},
};
use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Dispatch, Level, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::filter_fn,
    fmt::{MakeWriter, format::JsonFields},
    layer::SubscriberExt,
};

use crate::{
    config::TelemetrySettings,
    logformat::JsonLine,
    logqueue::{LogQueue, LogQueueGuard},
};

/// The header a request's id travels in, both ways.
pub const REQUEST_ID: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 64;

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, with the fields of the spans it happened in (`serve`).
    Json,
    /// For people at a terminal (`sandbox` and the other commands).
    Readable,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot start the log writer thread: {0}")]
    LogWriter(std::io::Error),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the span exporter alive; dropping it sends the spans still buffered.
#[must_use = "dropping it stops the span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Writes the log lines still queued when dropped.
    log_writer: Option<LogQueueGuard>,
}

/// How many log lines (audit lines included) were dropped under overload so far.
pub fn dropped_log_lines() -> u64 {
    crate::logqueue::dropped_lines()
}

impl Telemetry {
    /// Sends the spans ended so far. Blocks until the exporter is done: call it outside the
    /// runtime that serves the collector, if that is in-process.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(err) = provider.force_flush()
        {
            tracing::warn!(error = %err, "could not flush the spans");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Bytes of log lines queued for stdout before new ones are dropped (some 65,000 lines).
const LOG_QUEUE_BYTES: usize = 16 << 20;

/// Installs the process-wide subscriber, logging to stdout (colours only on a terminal).
pub fn init(settings: &TelemetrySettings, format: LogFormat) -> Result<Telemetry, TelemetryError> {
    let ansi = std::io::stdout().is_terminal();
    // A request never waits on stdout (a slow `docker logs` reader, a full pipe): lines go
    // into a bounded queue, and past it they are dropped and counted, never blocking.
    let (writer, guard) =
        LogQueue::new(std::io::stdout(), LOG_QUEUE_BYTES).map_err(TelemetryError::LogWriter)?;
    let (dispatch, mut telemetry) = dispatch(settings, format, writer, ansi)?;
    telemetry.log_writer = Some(guard);
    tracing::dispatcher::set_global_default(dispatch)
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(telemetry)
}

/// The subscriber [`init`] installs, writing its log lines to `writer`, for a caller that
/// installs it itself (a test, with `tracing::dispatcher::set_default`).
pub fn dispatch<W>(
    settings: &TelemetrySettings,
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Result<(Dispatch, Telemetry), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&settings.log_filter)
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        // The span list holds the request's span first, whatever span the line was written in.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .with_ansi(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Readable => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let provider = settings
        .otlp_traces_endpoint
        .as_ref()
        .map(|endpoint| tracer_provider(endpoint.as_str(), &settings.service_name))
        .transpose()?;
    // Spans only: events (log lines) stay in the logs, where the audit lines' identifiers
    // already are; the trace backend gets no copy of them.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("protocol-graph"))
            .with_filter(
                filter_fn(|metadata| metadata.is_span() && *metadata.level() <= Level::INFO)
                    .with_max_level_hint(Level::INFO),
            )
    });
    // Not `.with(traces)` with `None`: an absent layer counts as interested in everything, so
    // every span the log filter turns off would still be built and tracked for nothing (with
    // `audit=info`, every request's spans: a few percent of a warm request).
    let dispatch = match traces {
        Some(traces) => Dispatch::new(Registry::default().with(logs).with(traces)),
        None => Dispatch::new(Registry::default().with(logs)),
    };
    Ok((
        dispatch,
        Telemetry {
            provider,
            log_writer: None,
        },
    ))
}

fn tracer_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}

/// Fresh request ids: UUID v4 text from the thread's own generator (seeded once from the
/// system) rather than `getrandom`, a system call on every request's path. An id tells requests
/// apart in the logs; nothing relies on it being unguessable.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MakeRequestId;

impl tower_http::request_id::MakeRequestId for MakeRequestId {
    fn make_request_id<B>(
        &mut self,
        _: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let id = uuid_v4_text(fastrand::u128(..));
        HeaderValue::from_bytes(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// `bits` as the text of a version 4 UUID (`xxxxxxxx-xxxx-4xxx-Yxxx-xxxxxxxxxxxx`, Y one of
/// 8, 9, a, b), written digit by digit: `format!` took about 0.4 µs of every request.
fn uuid_v4_text(bits: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Version 4 in the third group, RFC 4122's variant in the fourth.
    let bits = bits & !(0xf << 76) | (0x4 << 76);
    let bits = bits & !(0x3 << 62) | (0x2 << 62);
    let mut text = [b'-'; 36];
    let mut digit = 0;
    for (at, byte) in text.iter_mut().enumerate() {
        if matches!(at, 8 | 13 | 18 | 23) {
            continue;
        }
        let nibble = (bits >> (124 - 4 * digit)) & 0xf;
        // A nibble is below 16.
        *byte = HEX[nibble as usize];
        digit += 1;
    }
    text
}

/// The span of one HTTP request: every log line of the request carries its `request_id`, and
/// its trace continues the caller's when the request has a `traceparent`. The path is logged
/// without its query, which may hold a GET request's variables.
pub(crate) fn request_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        method = %request.method(),
        path = request.uri().path(),
        request_id,
    );
    // A span filtered out (a quieter RUST_LOG) has no trace to continue.
    if !span.is_disabled() {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        // Without the OpenTelemetry layer there is no trace to continue.
        let _ = span.set_parent(parent);
    }
    span
}

/// Drops an incoming `x-request-id` that is too long or holds anything but letters, digits,
/// `.`, `_` and `-`: it goes into every log line and back to the caller, so it must not be a
/// way to forge log content. The layer after this one makes a fresh id for a request without.
pub(crate) async fn drop_unfit_request_id(mut request: Request) -> Request {
    let fit = request
        .headers()
        .get(REQUEST_ID)
        .is_none_or(|value| is_fit_request_id(value.as_bytes()));
    if !fit {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

fn is_fit_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `request` with the W3C `traceparent` (and `tracestate`) of `span`, when traces are on.
pub(crate) fn with_trace_context(
    request: reqwest::RequestBuilder,
    span: &Span,
) -> reqwest::RequestBuilder {
    let mut headers = HeaderMap::new();
    TraceContextPropagator::new()
        .inject_context(&span.context(), &mut HeaderInjector(&mut headers));
    if headers.is_empty() {
        request
    } else {
        request.headers(headers)
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn fresh_request_ids_are_version_4_uuids_of_every_bit_given() {
        let text = |bits| String::from_utf8(uuid_v4_text(bits).to_vec()).unwrap();
        assert_eq!(text(0), "00000000-0000-4000-8000-000000000000");
        assert_eq!(text(u128::MAX), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(
            text(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            "01234567-89ab-4def-bedc-ba9876543210"
        );
        let mut generator = MakeRequestId;
        let request = Request::new(axum::body::Body::empty());
        let ids: Vec<_> = (0..2)
            .map(|_| {
                let id = tower_http::request_id::MakeRequestId::make_request_id(
                    &mut generator,
                    &request,
                )
                .unwrap();
                id.header_value().to_str().unwrap().to_owned()
            })
            .collect();
        assert_ne!(ids[0], ids[1]);
        assert!(is_fit_request_id(ids[0].as_bytes()), "{}", ids[0]);
    }

    #[test]
    fn request_ids_are_short_and_plain() {
        assert!(is_fit_request_id(b"3f2a-9c_1.b"));
        assert!(is_fit_request_id("a".repeat(64).as_bytes()));
        assert!(!is_fit_request_id("a".repeat(65).as_bytes()));
        assert!(!is_fit_request_id(b""));
        assert!(!is_fit_request_id(b"two words"));
        assert!(!is_fit_request_id(b"line\nbreak"));
        assert!(!is_fit_request_id("ação".as_bytes()));
    }

    /// Log lines written to memory (the log writer of tests here and in `logformat`).
    #[derive(Clone, Default)]
    pub(crate) struct Lines(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat, ansi: bool) -> String {
        let lines = Lines::default();
        let writer = lines.clone();
        let (dispatch, _telemetry) = dispatch(
            &TelemetrySettings::default(),
            format,
            move || writer.clone(),
            ansi,
        )
        .unwrap();
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("request", request_id = "abc");
            let _entered = span.enter();
            tracing::info!(status = 200, "answered");
        });
        String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn spans_the_log_filter_turns_off_are_not_built() {
        let built = |filter: &str| {
            let settings = TelemetrySettings {
                log_filter: filter.into(),
                ..TelemetrySettings::default()
            };
            let (dispatch, _telemetry) =
                dispatch(&settings, LogFormat::Json, std::io::sink, false).unwrap();
            tracing::dispatcher::with_default(&dispatch, || {
                !tracing::info_span!("request", request_id = "abc").is_disabled()
            })
        };
        // Audit lines on, request spans off: the spans must cost nothing.
        assert!(!built("warn,audit=info"));
        assert!(built("info"));
    }

    #[test]
    fn json_lines_carry_the_fields_of_their_spans() {
        let text = logged(LogFormat::Json, false);
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["fields"]["message"], "answered");
        assert_eq!(line["fields"]["status"], 200);
        assert_eq!(line["spans"][0]["request_id"], "abc");
    }

    #[test]
    fn readable_lines_off_a_terminal_have_no_colour_codes() {
        let text = logged(LogFormat::Readable, false);
        assert!(text.contains("request_id"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }
}
