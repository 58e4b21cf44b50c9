//! The two REST upstreams behind the graph, their errors, and the cache in front of them.
//!
//! [`Upstreams`] is what the GraphQL layer talks to: each read goes through the shared
//! [`cache::ResponseCache`] and then through a concrete client ([`mosia::MosiaClient`],
//! [`totvs::TotvsClient`]); each mutation goes straight to TOTVS, at most once per caller and
//! identical input in flight, and invalidates what it changed.
//!
//! With `REDIS_URL`, [`fleet::Fleet`] shares the cache, the mutation guard and the
//! invalidations with the other replicas (DESIGN.md, "Fleet").

pub(crate) mod breaker;
pub(crate) mod cache;
pub(crate) mod clock;
pub(crate) mod decode;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod http;
pub(crate) mod mosia;
#[cfg(test)]
mod proptests;
pub(crate) mod totvs;

use std::sync::Arc;

use crate::{
    config::Settings,
    metrics::Metrics,
    model::{
        AuthorizationProtocol, AuthorizationProtocolPage, AuthorizationRequest, InteractionPage,
        InteractionQuery, ProtocolQuery, Service, ServiceProtocol,
    },
};
pub(crate) use breaker::BreakerState;
pub(crate) use cache::{Fetched, ResponseCache, Source};
use cache::{MutationGuard, MutationInput, MutationKey};
pub(crate) use error::{Fault, UpstreamError, UpstreamErrorKind};
use fleet::Fleet;
pub use fleet::RedisState;

pub(crate) use totvs::TokenStatus;

/// The upstreams as the graph sees them: cached reads, guarded writes.
pub struct Upstreams {
    mosia: mosia::MosiaClient,
    totvs: totvs::TotvsClient,
    cache: ResponseCache,
    mutations: MutationGuard,
    fleet: Option<Arc<Fleet>>,
}

impl Upstreams {
    /// The clients, the cache and the guard; with `REDIS_URL`, shared with the fleet (this
    /// then needs a tokio runtime, and connects in the background).
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let fleet = Fleet::start(settings, metrics.clone());
        Ok(Self {
            mosia: mosia::MosiaClient::new(settings, metrics.clone())?,
            totvs: totvs::TotvsClient::new(settings, metrics.clone())?,
            cache: ResponseCache::new(&settings.cache, metrics.clone()).with_fleet(fleet.clone()),
            mutations: MutationGuard::new(&settings.cache, metrics).with_fleet(fleet.clone()),
            fleet,
        })
    }

    /// Where an upstream's circuit breaker stands.
    #[allow(dead_code, reason = "for /readyz, which the server wires")]
    pub(crate) fn breaker_state(&self, service: Service) -> BreakerState {
        match service {
            Service::Mosia => self.mosia.http.breaker_state(),
            Service::Totvs => self.totvs.http.breaker_state(),
        }
    }

    /// With a fleet tier, waits briefly for Redis so that the first requests share it; a Redis
    /// still out of reach is only a degraded start.
    pub async fn wait_for_fleet(&self) {
        if let Some(fleet) = &self.fleet {
            fleet.wait_until_up().await;
        }
    }

    /// Obtains what the upstreams need before the first request: the TOTVS token.
    pub async fn warm_up(&self) {
        self.totvs.warm_up().await;
    }

    pub(crate) fn token_status(&self) -> TokenStatus {
        self.totvs.token_status()
    }

    /// Measures the shared cache into the metrics (entries and bytes), for `/metrics`.
    pub async fn measure_cache(&self) {
        self.cache.measure().await;
    }

    /// The fleet's shared tier, for the rate limits; none without `REDIS_URL`.
    pub(crate) fn fleet(&self) -> Option<Arc<Fleet>> {
        self.fleet.clone()
    }

    /// Whether the replicas share the Redis tier right now (for `/readyz`).
    pub fn redis_state(&self) -> RedisState {
        self.fleet
            .as_ref()
            .map_or(RedisState::Disabled, |fleet| fleet.state())
    }

    /// As [`Self::new`], with the cache on `clock`.
    #[cfg(test)]
    pub(crate) fn with_clock(
        settings: &Settings,
        metrics: Arc<Metrics>,
        clock: clock::Clock,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            mosia: mosia::MosiaClient::new(settings, metrics.clone())?,
            totvs: totvs::TotvsClient::new(settings, metrics.clone())?,
            cache: ResponseCache::with_clock(&settings.cache, metrics.clone(), clock),
            mutations: MutationGuard::new(&settings.cache, metrics),
            fleet: None,
        })
    }

    /// How much longer every cached answer `sources` names stays fresh and current, if all do.
    pub(crate) async fn freshness_left(&self, sources: &[Source]) -> Option<std::time::Duration> {
        self.cache.freshness_left(sources).await
    }

    /// Mosia's newest `limit` service protocols of a beneficiary.
    pub async fn latest_protocols(
        &self,
        unique_key: &str,
        limit: u8,
    ) -> Result<Fetched<Vec<ServiceProtocol>>, UpstreamError> {
        self.cache
            .latest_or_fetch(unique_key, limit, || {
                self.mosia.latest_protocols(unique_key, limit)
            })
            .await
    }

    /// Whether an answer for these latest protocols is cached here, for this limit or any
    /// larger one (see `ResponseCache::holds`).
    pub fn holds_latest(&self, unique_key: &str, limit: u8) -> bool {
        self.cache.holds_latest(unique_key, limit)
    }

    /// Whether this page of protocols is cached here (see `ResponseCache::holds`).
    pub fn holds_protocols(&self, subscriber_id: &str, query: &ProtocolQuery) -> bool {
        self.cache.holds(&protocols_key(subscriber_id, query))
    }

    /// Whether these interactions are cached here (see `ResponseCache::holds`).
    pub fn holds_interactions(&self, query: &InteractionQuery) -> bool {
        self.cache
            .holds(&cache::CacheKey::Interactions(query.clone()))
    }

    /// One page of a subscriber's TOTVS authorization protocols.
    pub async fn authorization_protocols(
        &self,
        subscriber_id: &str,
        query: &ProtocolQuery,
    ) -> Result<Fetched<AuthorizationProtocolPage>, UpstreamError> {
        let key = protocols_key(subscriber_id, query);
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

    /// Attaches documents to a protocol for `caller` (the token's `sub`). Never retried; an
    /// identical call by the same caller in flight or just answered shares that answer.
    pub async fn add_attachments(
        &self,
        caller: &str,
        protocol: &str,
        hrefs: &[String],
    ) -> Result<AuthorizationProtocol, UpstreamError> {
        let key = MutationKey {
            caller: caller.into(),
            input: MutationInput::Attachments {
                protocol: protocol.into(),
                hrefs: hrefs.to_vec(),
            },
        };
        let result = self
            .mutations
            .run(key, || self.totvs.add_attachments(protocol, hrefs))
            .await;
        if let Ok(changed) = &result {
            self.cache
                .invalidate_everywhere(&changed.subscriber_id, protocol)
                .await;
        }
        result
    }

    /// Opens a new authorization request. Same guarantees as [`Self::add_attachments`].
    pub async fn request_authorization(
        &self,
        caller: &str,
        request: &AuthorizationRequest,
    ) -> Result<AuthorizationProtocol, UpstreamError> {
        let key = MutationKey {
            caller: caller.into(),
            input: MutationInput::Request(request.clone()),
        };
        let result = self
            .mutations
            .run(key, || self.totvs.request_authorization(request))
            .await;
        if let Ok(created) = &result {
            self.cache
                .invalidate_everywhere(&request.subscriber_id, &created.protocol)
                .await;
        }
        result
    }
}

fn protocols_key(subscriber_id: &str, query: &ProtocolQuery) -> cache::CacheKey {
    cache::CacheKey::Protocols {
        subscriber_id: subscriber_id.into(),
        query: query.clone(),
    }
}
