//! What both clients share: one pooled `reqwest::Client` per upstream, the deadline on every
//! call, the retry policy for reads, the bounds on what an upstream can cost (calls in flight,
//! body size, a circuit breaker) and the translation of transport failures.
//!
//! A read is sent again (at most `get_retries` times, after a jittered backoff) only when the
//! failure says the upstream is briefly unable to answer: the connection was refused or reset
//! before any answer, or the answer was 502, 503 or 504. Any other 5xx is the upstream's own
//! fault and would fail again; a timeout already spent the caller's time. A write is never
//! sent again here.
//!
//! Each attempt first asks the upstream's [`Breaker`], then waits for one of the upstream's
//! `max_in_flight` permits, shared by every request; the permit is held while the request is
//! sent and its body read, and never during a backoff. Waiting is bounded by the request's
//! deadline, which the loaders put around every fetch.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use reqwest::{RequestBuilder, StatusCode};
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, warn};
use url::Url;

use super::{
    breaker::{Admission, Breaker, BreakerState, Outcome},
    clock::Clock,
    error::{Fault, UpstreamError, UpstreamErrorKind},
};
use crate::{
    config::UpstreamSettings,
    metrics::{Metrics, Series},
    model::Service,
    telemetry,
};

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
///
/// Whether the answer was usable is only known once the client decoded it, so the breaker
/// hears of it when the answer is dropped: a success, unless [`HttpUpstream::malformed`] or
/// [`Answer::unusable`] said otherwise.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    verdict: Verdict,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body is upstream data about a beneficiary: its size is enough for a log.
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Answer {
    /// The answer arrived but cannot be used (an unexpected status, say): to the breaker, a
    /// failure. A 4xx is never one: the upstream is up and judging the request.
    pub(crate) fn unusable(&self) {
        if !self.status.is_client_error() {
            self.verdict.unusable.store(true, Ordering::Relaxed);
        }
    }
}

struct Verdict {
    admission: Option<Admission>,
    unusable: AtomicBool,
}

impl Drop for Verdict {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            admission.settle(if self.unusable.load(Ordering::Relaxed) {
                Outcome::Failure
            } else {
                Outcome::Success
            });
        }
    }
}

pub(crate) struct HttpUpstream {
    service: Service,
    client: reqwest::Client,
    base: Url,
    retries: u32,
    backoff: Duration,
    max_body_bytes: usize,
    /// Calls in flight to this upstream across all requests.
    in_flight: Semaphore,
    breaker: Arc<Breaker>,
    metrics: Arc<Metrics>,
}

impl HttpUpstream {
    pub fn new(
        service: Service,
        base: Url,
        settings: &UpstreamSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        Self::with_clock(service, base, settings, metrics, Clock::System)
    }

    /// As [`Self::new`], with the breaker's cooldown measured by `clock`.
    pub(crate) fn with_clock(
        service: Service,
        base: Url,
        settings: &UpstreamSettings,
        metrics: Arc<Metrics>,
        clock: Clock,
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
        let breaker = Breaker::new(
            service,
            settings.breaker_failures,
            settings.breaker_cooldown(),
            clock,
            metrics.clone(),
        );
        Ok(Self {
            service,
            client,
            base,
            retries: settings.get_retries,
            backoff: Duration::from_millis(settings.retry_backoff_ms),
            max_body_bytes: settings.max_response_bytes,
            // Zero permits would wait forever; config refuses it, this keeps it harmless.
            in_flight: Semaphore::new(settings.max_in_flight.clamp(1, Semaphore::MAX_PERMITS)),
            breaker: Arc::new(breaker),
            metrics,
        })
    }

    /// Where this upstream's breaker stands.
    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
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
        let mut last_failure = None;
        loop {
            let Some(admission) = self.breaker.admit() else {
                debug!(
                    service = self.service.as_str(),
                    "circuit breaker open, call not sent"
                );
                // A retry cut short keeps the failure that was seen, with its status.
                return Err(last_failure.unwrap_or_else(|| {
                    UpstreamError::new(self.service, UpstreamErrorKind::Unavailable)
                }));
            };
            match self
                .observed(idempotency, route, attempt, build(&self.client), admission)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(failure)
                    if failure.transient
                        && idempotency == Idempotency::Read
                        && attempt < self.retries =>
                {
                    attempt += 1;
                    last_failure = Some(failure.error);
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
        let base = self
            .backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        // `mul_f64` panics past `Duration::MAX`; a configured backoff can be that large.
        Duration::try_from_secs_f64(base.as_secs_f64() * (0.5 + fastrand::f64())).unwrap_or(base)
    }

    /// One attempt in its own span, timed, with the trace context for the upstream.
    async fn observed(
        &self,
        idempotency: Idempotency,
        route: Route,
        attempt: u32,
        request: RequestBuilder,
        admission: Admission,
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
            .send_once(idempotency, request, admission)
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

    /// One attempt, holding an in-flight permit from before the request is sent until its
    /// body is read (dropped with the future when the request's deadline cancels it).
    async fn send_once(
        &self,
        idempotency: Idempotency,
        request: RequestBuilder,
        admission: Admission,
    ) -> Result<Answer, Failure> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.in_flight.acquire().await.ok();
        let result = self.exchange(idempotency, request).await;
        match result {
            Ok((status, body)) => Ok(Answer {
                status,
                body,
                verdict: Verdict {
                    admission: Some(admission),
                    unusable: AtomicBool::new(false),
                },
            }),
            Err(failure) => {
                admission.settle(failure.outcome);
                Err(failure)
            }
        }
    }

    async fn exchange(
        &self,
        idempotency: Idempotency,
        request: RequestBuilder,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let response = request.send().await.map_err(|err| Failure {
            transient: is_refused_or_reset(&err),
            outcome: Outcome::Failure,
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
                outcome: Outcome::of_status(status.as_u16()),
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            warn!(service = self.service.as_str(), "upstream rate limit");
            return Err(Failure {
                error: UpstreamError::new(self.service, UpstreamErrorKind::RateLimited)
                    .with_status(status.as_u16()),
                transient: false,
                outcome: Outcome::of_status(status.as_u16()),
            });
        }
        let body = self
            .read_body(response)
            .await
            .map_err(|err| Failure::from(err.with_status(status.as_u16())))?;
        Ok((status, body))
    }

    /// The body, refused past `max_response_bytes` whether its length is announced or not.
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        let limit = self.max_body_bytes;
        let announced = response.content_length();
        if announced.is_some_and(|len| usize::try_from(len).map_or(true, |len| len > limit)) {
            return Err(self.too_large(announced));
        }
        // The announced length (within the limit) sizes the buffer; a lie only costs a regrow.
        let capacity = announced
            .and_then(|len| usize::try_from(len).ok())
            .unwrap_or(0);
        let mut body = bytes::BytesMut::with_capacity(capacity);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.transport_error(Idempotency::Read, err))?
        {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(self.too_large(announced));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn too_large(&self, announced: Option<u64>) -> UpstreamError {
        warn!(
            service = self.service.as_str(),
            limit = self.max_body_bytes,
            announced,
            "upstream body too large"
        );
        UpstreamError::new(self.service, UpstreamErrorKind::Malformed)
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

    /// The error for a body that does not decode as documented; to the breaker, a failure.
    pub fn malformed(&self, answer: &Answer, err: &dyn std::fmt::Display) -> UpstreamError {
        let status = answer.status;
        warn!(
            service = self.service.as_str(),
            status = status.as_u16(),
            error = %err,
            "upstream body did not decode"
        );
        answer.verdict.unusable.store(true, Ordering::Relaxed);
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
    /// What the attempt tells the breaker.
    outcome: Outcome,
}

impl From<UpstreamError> for Failure {
    /// A body that could not be read in full, or was too large.
    fn from(error: UpstreamError) -> Self {
        Self {
            error,
            transient: false,
            outcome: Outcome::Failure,
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
mod tests;
