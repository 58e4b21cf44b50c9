//! What both clients share: one pooled `reqwest::Client` per upstream, the deadline on every
//! call, the retry policy for reads, body size limits and the translation of transport failures.
//!
//! A read is sent again (at most `get_retries` times, after a jittered backoff) only when the
//! failure says the upstream is briefly unable to answer: the connection was refused or reset
//! before any answer, or the answer was 502, 503 or 504. Any other 5xx is the upstream's own
//! fault and would fail again; a timeout already spent the caller's time. A write is never
//! sent again here.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use reqwest::{RequestBuilder, StatusCode};
use tracing::{Instrument, warn};
use url::Url;

use super::error::{Fault, UpstreamError, UpstreamErrorKind};
use crate::{
    config::UpstreamSettings,
    metrics::{Metrics, Series},
    model::Service,
    telemetry,
};

/// Upstream bodies larger than this are refused rather than buffered.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Whether a call may be sent again after a failure that left its outcome unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// A read: retried on a connection refused or reset before any answer, and on 502/503/504.
    Read,
    /// A write: never retried; a timeout leaves the outcome unknown.
    Write,
}

/// An upstream endpoint as metrics and traces name it: the series its calls count in and its
/// route template. Never the path sent, which carries identifiers (personal data).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub series: Series,
    pub template: &'static str,
}

/// An upstream's answer with any status below 500 (and not 429), body read in full.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

pub(crate) struct HttpUpstream {
    service: Service,
    client: reqwest::Client,
    base: Url,
    retries: u32,
    backoff: Duration,
    metrics: Arc<Metrics>,
}

impl HttpUpstream {
    pub fn new(
        service: Service,
        base: Url,
        settings: &UpstreamSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout())
            .connect_timeout(settings.timeout().min(Duration::from_secs(3)))
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("protocol-graph/", env!("CARGO_PKG_VERSION")))
            // Upstream redirects would carry our credentials to wherever they point.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            service,
            client,
            base,
            retries: settings.get_retries,
            backoff: Duration::from_millis(settings.retry_backoff_ms),
            metrics,
        })
    }

    /// The base URL with `segments` appended, each percent-encoded, so that an identifier can
    /// never change the path it travels in.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends the request `build` makes, retrying reads as the module says. Answers 5xx and
    /// 429 become errors here; other statuses are the caller's to interpret.
    pub async fn send(
        &self,
        idempotency: Idempotency,
        route: Route,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Answer, UpstreamError> {
        let mut attempt = 0;
        loop {
            match self
                .observed(idempotency, route, attempt, build(&self.client))
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(failure)
                    if failure.transient
                        && idempotency == Idempotency::Read
                        && attempt < self.retries =>
                {
                    attempt += 1;
                    tokio::time::sleep(self.jittered_backoff(attempt)).await;
                }
                Err(failure) => {
                    self.metrics.upstream_error();
                    return Err(failure.error);
                }
            }
        }
    }

    fn jittered_backoff(&self, attempt: u32) -> Duration {
        let base = self.backoff * 2u32.saturating_pow(attempt - 1);
        base.mul_f64(0.5 + fastrand::f64())
    }

    /// One attempt in its own span, timed, with the trace context for the upstream.
    async fn observed(
        &self,
        idempotency: Idempotency,
        route: Route,
        attempt: u32,
        request: RequestBuilder,
    ) -> Result<Answer, Failure> {
        let span = tracing::info_span!(
            "upstream_call",
            otel.name = route.template,
            otel.kind = "client",
            service = route.series.as_str(),
            route = route.template,
            retry = i64::from(attempt),
            status = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let request = telemetry::with_trace_context(request, &span);
        let started = Instant::now();
        let result = self
            .send_once(idempotency, request)
            .instrument(span.clone())
            .await;
        let status = match &result {
            Ok(answer) => answer.status.as_u16().to_string(),
            Err(failure) => match (failure.error.status, failure.error.kind) {
                (Some(status), _) => status.to_string(),
                (None, UpstreamErrorKind::Timeout | UpstreamErrorKind::TimeoutOutcomeUnknown) => {
                    "timeout".into()
                }
                (None, _) => "error".into(),
            },
        };
        span.record("status", status.as_str());
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        self.metrics
            .upstream_call(route.series, route.template, status, started.elapsed());
        result
    }

    async fn send_once(
        &self,
        idempotency: Idempotency,
        request: RequestBuilder,
    ) -> Result<Answer, Failure> {
        let response = request.send().await.map_err(|err| Failure {
            transient: is_refused_or_reset(&err),
            error: self.transport_error(idempotency, err),
        })?;
        let status = response.status();
        if status.is_server_error() {
            warn!(
                service = self.service.as_str(),
                status = status.as_u16(),
                "upstream error"
            );
            // TOTVS often explains a 5xx in its usual error body. Keep its code, not its text:
            // a server error's message may describe the upstream's internals.
            let fault = self
                .read_body(response)
                .await
                .ok()
                .and_then(|body| super::decode::fault(&body))
                .and_then(|fault| fault.code)
                .map(|code| Fault {
                    code: Some(code),
                    ..Fault::default()
                });
            let kind = if status == StatusCode::GATEWAY_TIMEOUT && idempotency == Idempotency::Write
            {
                UpstreamErrorKind::TimeoutOutcomeUnknown
            } else {
                UpstreamErrorKind::Unavailable
            };
            return Err(Failure {
                error: UpstreamError::new(self.service, kind)
                    .with_status(status.as_u16())
                    .with_fault(fault),
                transient: matches!(
                    status,
                    StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                ),
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            warn!(service = self.service.as_str(), "upstream rate limit");
            return Err(
                UpstreamError::new(self.service, UpstreamErrorKind::RateLimited)
                    .with_status(status.as_u16())
                    .into(),
            );
        }
        let body = self
            .read_body(response)
            .await
            .map_err(|err| Failure::from(err.with_status(status.as_u16())))?;
        Ok(Answer { status, body })
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            warn!(service = self.service.as_str(), "upstream body too large");
            return Err(UpstreamError::new(
                self.service,
                UpstreamErrorKind::Malformed,
            ));
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.transport_error(Idempotency::Read, err))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                warn!(service = self.service.as_str(), "upstream body too large");
                return Err(UpstreamError::new(
                    self.service,
                    UpstreamErrorKind::Malformed,
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn transport_error(&self, idempotency: Idempotency, err: reqwest::Error) -> UpstreamError {
        // The URL may carry credentials (the TOTVS token endpoint takes them in the query).
        let err = err.without_url();
        let kind = if err.is_timeout() {
            match idempotency {
                Idempotency::Read => UpstreamErrorKind::Timeout,
                Idempotency::Write => UpstreamErrorKind::TimeoutOutcomeUnknown,
            }
        } else if err.is_decode() {
            UpstreamErrorKind::Malformed
        } else {
            UpstreamErrorKind::Unavailable
        };
        warn!(service = self.service.as_str(), error = %err, ?kind, "upstream call failed");
        UpstreamError::new(self.service, kind)
    }

    /// The error for a body that does not decode as documented.
    pub fn malformed(&self, status: StatusCode, err: &dyn std::fmt::Display) -> UpstreamError {
        warn!(
            service = self.service.as_str(),
            status = status.as_u16(),
            error = %err,
            "upstream body did not decode"
        );
        self.metrics.upstream_error();
        UpstreamError::new(self.service, UpstreamErrorKind::Malformed).with_status(status.as_u16())
    }
}

/// A failed attempt, and whether it is worth sending again.
struct Failure {
    error: UpstreamError,
    /// The upstream said it is briefly unable to answer (502, 503, 504), or the connection
    /// failed before any answer.
    transient: bool,
}

impl From<UpstreamError> for Failure {
    fn from(error: UpstreamError) -> Self {
        Self {
            error,
            transient: false,
        }
    }
}

/// Whether the request failed before any answer because the connection could not be made
/// or was reset; never a timeout, which already spent the caller's time.
fn is_refused_or_reset(err: &reqwest::Error) -> bool {
    if err.is_timeout() {
        return false;
    }
    if err.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::{io::AsyncReadExt, net::TcpListener};

    use super::*;

    /// An upstream that resets every connection once it has read the request, and counts them.
    async fn resetting_upstream() -> (Url, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.read(&mut [0; 4096]).await;
                // A zero linger closes with RST instead of FIN.
                let _ = stream.set_zero_linger();
                drop(stream);
            }
        });
        (url, connections)
    }

    fn upstream(base: Url) -> HttpUpstream {
        let settings = UpstreamSettings {
            retry_backoff_ms: 1,
            ..UpstreamSettings::default()
        };
        HttpUpstream::new(Service::Mosia, base, &settings, Arc::default()).unwrap()
    }

    #[tokio::test]
    async fn a_read_reset_before_any_answer_is_retried_and_a_write_is_not() {
        let (base, connections) = resetting_upstream().await;
        let http = upstream(base);

        let route = Route {
            series: Series::Mosia,
            template: "/test",
        };
        let read = http
            .send(Idempotency::Read, route, |client| {
                client.get(http.url(&["read"]))
            })
            .await;
        assert!(matches!(read, Err(err) if err.kind == UpstreamErrorKind::Unavailable));
        assert_eq!(connections.swap(0, Ordering::SeqCst), 3);

        let write = http
            .send(Idempotency::Write, route, |client| {
                client.post(http.url(&["write"]))
            })
            .await;
        assert!(matches!(write, Err(err) if err.kind == UpstreamErrorKind::Unavailable));
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }
}
