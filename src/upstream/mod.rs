//! The two REST upstreams behind the graph, their errors, and the cache in front of them.
//!
//! [`Upstreams`] is what the GraphQL layer talks to: each read goes through the shared
//! [`cache::ResponseCache`] and then through a concrete client ([`mosia::MosiaClient`],
//! [`totvs::TotvsClient`]); each mutation goes straight to TOTVS, at most once per identical
//! input in flight, and invalidates what it changed.

pub(crate) mod cache;
pub(crate) mod decode;
pub(crate) mod http;
pub(crate) mod mosia;
pub(crate) mod totvs;

use std::{fmt, sync::Arc};

use crate::{
    config::Settings,
    graphql::types::{
        AuthorizationProtocol, AuthorizationProtocolPage, InteractionPage, ServiceProtocol,
    },
    metrics::Metrics,
};
pub(crate) use cache::{Fetched, ResponseCache};
pub(crate) use totvs::{AuthorizationRequest, InteractionQuery, ProtocolQuery};

/// Which upstream an error or a call belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Mosia,
    Totvs,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Mosia => "mosia",
            Service::Totvs => "totvs",
        }
    }
    fn display_name(self) -> &'static str {
        match self {
            Service::Mosia => "Mosia",
            Service::Totvs => "TOTVS",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// The error body TOTVS sends (`{code, message, detailedMessage, details}`), kept for the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    pub code: Option<String>,
    pub message: Option<String>,
    pub detailed_message: Option<String>,
    pub details: Vec<FaultDetail>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultDetail {
    pub code: Option<String>,
    pub message: Option<String>,
    pub detailed_message: Option<String>,
}

/// What went wrong with an upstream call, as the client of the graph needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamErrorKind {
    /// The upstream refused the input (TOTVS 406, or another 400).
    #[error("rejected the request as invalid")]
    BadRequest,
    #[error("found nothing for this request")]
    NotFound,
    /// TOTVS E003: the protocol's status does not accept attachments.
    #[error("does not accept attachments for this protocol in its current status")]
    AttachmentsNotAllowed,
    /// TOTVS E007: TOTVS could not download an attachment.
    #[error("could not download an attachment")]
    AttachmentDownloadFailed,
    /// The gateway's own credentials were refused, even after renewing them once.
    #[error("refused the gateway's credentials")]
    AuthFailed,
    #[error("did not answer in time")]
    Timeout,
    /// A write timed out: it may or may not have been applied.
    #[error("did not answer in time; the outcome is unknown, check before submitting again")]
    TimeoutOutcomeUnknown,
    #[error("is unavailable")]
    Unavailable,
    #[error("is limiting the gateway's request rate")]
    RateLimited,
    /// A body that does not decode, or an envelope with `status: false`.
    #[error("sent an unexpected answer")]
    Malformed,
}

/// One failed upstream call. `Clone` because batched and coalesced callers share one failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamError {
    pub service: Service,
    pub kind: UpstreamErrorKind,
    /// The upstream's HTTP status, when it answered.
    pub status: Option<u16>,
    /// TOTVS's error body, when it sent one.
    pub fault: Option<Arc<Fault>>,
}

impl std::error::Error for UpstreamError {}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.kind)?;
        if let Some(message) = self
            .fault
            .as_ref()
            .and_then(|fault| fault.message.as_deref())
        {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl UpstreamError {
    pub fn new(service: Service, kind: UpstreamErrorKind) -> Self {
        Self {
            service,
            kind,
            status: None,
            fault: None,
        }
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault.map(Arc::new);
        self
    }
    /// Whether a stale cached answer may stand in for this failure.
    pub fn is_outage(&self) -> bool {
        matches!(
            self.kind,
            UpstreamErrorKind::Timeout
                | UpstreamErrorKind::Unavailable
                | UpstreamErrorKind::RateLimited
                | UpstreamErrorKind::Malformed
        )
    }
}

/// The upstreams as the graph sees them: cached reads, guarded writes.
pub struct Upstreams {
    mosia: mosia::MosiaClient,
    totvs: totvs::TotvsClient,
    cache: ResponseCache,
    mutations: cache::MutationGuard,
}

impl Upstreams {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        Ok(Self {
            mosia: mosia::MosiaClient::new(settings, metrics.clone())?,
            totvs: totvs::TotvsClient::new(settings, metrics.clone())?,
            cache: ResponseCache::new(&settings.cache, metrics.clone()),
            mutations: cache::MutationGuard::new(&settings.cache, metrics),
        })
    }

    /// Mosia's newest `limit` service protocols of a beneficiary.
    pub async fn latest_protocols(
        &self,
        unique_key: &str,
        limit: u8,
    ) -> Result<Fetched<Vec<ServiceProtocol>>, UpstreamError> {
        let key = |limit| cache::CacheKey::Latest {
            unique_key: unique_key.into(),
            limit,
        };
        // Mosia answers newest first: a cached answer for this limit or a larger one holds it.
        for cached_limit in limit..=mosia::MAX_LIMIT {
            let Some(cached) = self
                .cache
                .get_fresh::<Vec<ServiceProtocol>>(&key(cached_limit))
                .await
            else {
                continue;
            };
            let value = if cached.len() > usize::from(limit) {
                Arc::new(cached[..usize::from(limit)].to_vec())
            } else {
                cached
            };
            return Ok(Fetched {
                value,
                stale_for: None,
            });
        }
        self.cache
            .get_or_fetch(key(limit), || {
                self.mosia.latest_protocols(unique_key, limit)
            })
            .await
    }

    /// One page of a subscriber's TOTVS authorization protocols.
    pub async fn authorization_protocols(
        &self,
        subscriber_id: &str,
        query: &ProtocolQuery,
    ) -> Result<Fetched<AuthorizationProtocolPage>, UpstreamError> {
        let key = cache::CacheKey::Protocols {
            subscriber_id: subscriber_id.into(),
            query: query.clone(),
        };
        self.cache
            .get_or_fetch(key, || self.totvs.protocols(subscriber_id, query))
            .await
    }

    /// One page of a protocol's TOTVS interactions.
    pub async fn interactions(
        &self,
        query: &InteractionQuery,
    ) -> Result<Fetched<InteractionPage>, UpstreamError> {
        let key = cache::CacheKey::Interactions(query.clone());
        self.cache
            .get_or_fetch(key, || self.totvs.interactions(query))
            .await
    }

    /// Attaches documents to a protocol. Never retried; an identical call in flight or just
    /// answered shares that answer.
    pub async fn add_attachments(
        &self,
        protocol: &str,
        hrefs: &[String],
    ) -> Result<AuthorizationProtocol, UpstreamError> {
        let fingerprint = cache::MutationGuard::fingerprint(&("attachments", protocol, hrefs));
        let result = self
            .mutations
            .run(fingerprint, || self.totvs.add_attachments(protocol, hrefs))
            .await;
        if let Ok(changed) = &result {
            self.cache
                .invalidate_protocol(&changed.subscriber_id, protocol);
        }
        result
    }

    /// Opens a new authorization request. Same guarantees as [`Self::add_attachments`].
    pub async fn request_authorization(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<AuthorizationProtocol, UpstreamError> {
        let fingerprint = cache::MutationGuard::fingerprint(&("request", request));
        let result = self
            .mutations
            .run(fingerprint, || self.totvs.request_authorization(request))
            .await;
        if let Ok(created) = &result {
            self.cache
                .invalidate_protocol(&request.subscriber_id, &created.protocol);
        }
        result
    }
}
