//! `/readyz`: whether this replica should get traffic, and the state of what it depends on.
//!
//! Not ready while starting (no answer yet to the first TOTVS token request, which the
//! application sends at start) and while draining (shutdown has begun). An upstream that is
//! down does not make the replica unready: every replica shares its upstreams, so taking them
//! all out of the load balancer would turn a partial outage (GraphQL answers the other
//! upstream's fields) into a total one. Its state is reported in the body instead.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use serde_json::{Value, json};

use crate::{
    metrics::{BreakerState, Metrics},
    model::Service,
    upstream::{RedisState, TokenStatus, Upstreams},
};

pub(crate) struct Readiness {
    draining: AtomicBool,
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
    /// States reported by other parts (e.g. `redis: "degraded"`), shown beside the upstreams;
    /// never a reason to answer 503.
    reported: Mutex<BTreeMap<&'static str, &'static str>>,
}

impl Readiness {
    pub(crate) fn new(upstreams: Arc<Upstreams>, metrics: Arc<Metrics>) -> Self {
        Self {
            draining: AtomicBool::new(false),
            upstreams,
            metrics,
            reported: Mutex::default(),
        }
    }

    /// From now on `/readyz` answers 503: shutdown has begun.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The hook for a dependency other than the two upstreams: `name` shows `state` in the
    /// body of `/readyz` until reported again.
    #[allow(
        dead_code,
        reason = "a hook for dependencies beyond the upstreams and Redis"
    )]
    pub(crate) fn report(&self, name: &'static str, state: &'static str) {
        self.lock().insert(name, state);
    }

    /// Whether the replica is ready, and the body that says why.
    pub(crate) fn check(&self) -> (bool, Value) {
        let token = self.upstreams.token_status();
        let status = if self.draining.load(Ordering::Relaxed) {
            "draining"
        } else if token == TokenStatus::NotTried {
            "starting"
        } else {
            "ready"
        };
        let totvs = match token {
            TokenStatus::NotTried => "starting",
            TokenStatus::Obtained => "ok",
            TokenStatus::Refused => "auth_failed",
            TokenStatus::Failed => "unavailable",
        };
        let mut states = BTreeMap::from([
            ("mosia", self.with_breaker(Service::Mosia, "ok")),
            ("totvs", self.with_breaker(Service::Totvs, totvs)),
        ]);
        states.extend(self.lock().iter().map(|(k, v)| (*k, *v)));
        // Redis is never a reason to answer 503: a degraded tier costs hit rate, not answers.
        match self.upstreams.redis_state() {
            RedisState::Disabled => {}
            RedisState::Up => {
                states.insert("redis", "ok");
            }
            RedisState::Degraded => {
                states.insert("redis", "degraded");
            }
        }
        (
            status == "ready",
            json!({ "status": status, "upstreams": states }),
        )
    }

    /// An open or half-open breaker says more about the upstream than anything else.
    fn with_breaker(&self, service: Service, otherwise: &'static str) -> &'static str {
        match self.metrics.breaker(service) {
            BreakerState::Closed => otherwise,
            state => state.as_str(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, &'static str>> {
        self.reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn readiness() -> (Readiness, Arc<Metrics>) {
        // Nothing listens there: no test here sends a request.
        let settings = Settings::for_upstreams(
            "http://127.0.0.1:9",
            "m",
            "http://127.0.0.1:9/rest",
            "u",
            "p",
        )
        .unwrap();
        let metrics = Arc::new(Metrics::default());
        let upstreams = Arc::new(Upstreams::new(&settings, metrics.clone()).unwrap());
        (Readiness::new(upstreams, metrics.clone()), metrics)
    }

    #[test]
    fn starting_then_draining_with_breaker_and_reported_states() {
        let (readiness, metrics) = readiness();
        let (ready, body) = readiness.check();
        assert!(!ready);
        assert_eq!(
            body,
            json!({"status": "starting", "upstreams": {"mosia": "ok", "totvs": "starting"}})
        );

        metrics.breaker_state(Service::Mosia, BreakerState::Open);
        readiness.report("redis", "degraded");
        readiness.drain();
        let (ready, body) = readiness.check();
        assert!(!ready);
        assert_eq!(
            body,
            json!({"status": "draining", "upstreams": {"mosia": "open", "redis": "degraded", "totvs": "starting"}})
        );
    }
}
