//! The gateway's metrics: a `prometheus-client` registry owned by each [`Metrics`] (no global
//! recorder, so several apps in one process keep their own counts), rendered by `/metrics` in the
//! Prometheus text format and read by tests and the benchmark through [`Metrics::snapshot`].
//!
//! Every label value comes from a closed set, or is bounded: the operation name only when it
//! looks like a GraphQL name of at most 64 characters and is among the first
//! [`MAX_OPERATION_NAMES`] seen, else `other`; upstream routes are templates, never the path sent
//! (which carries identifiers, personal data).

use std::{
    collections::HashSet,
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicU8, Ordering::Relaxed},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::prometheus_text,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use crate::model::Service;

mod labels;
use labels::{BreakerLabels, ReasonLabel, RequestLabels, ServiceLabel, TierLabel, UpstreamLabels};
pub(crate) use labels::{BreakerState, Refusal, Series};

/// Distinct operation names kept as label values; later names count as `other`.
pub(crate) const MAX_OPERATION_NAMES: usize = 100;
const MAX_OPERATION_NAME_LEN: usize = 64;
/// Seconds. From a cached answer (a few ms) to the request deadline (15 s by default).
const DURATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0,
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The gateway's metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: HistogramFamily<RequestLabels>,
    refusals: Family<ReasonLabel, Counter>,
    upstream_calls: Family<ServiceLabel, Counter>,
    upstream_durations: HistogramFamily<UpstreamLabels>,
    upstream_errors: Counter,
    items_dropped: Family<ServiceLabel, Counter>,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_coalesced: Counter,
    stale_served: Counter,
    whole_response_hits: Counter,
    cache_entries: Family<TierLabel, Gauge>,
    cache_bytes: Family<TierLabel, Gauge>,
    mutations_deduplicated: Counter,
    breaker: Family<BreakerLabels, Gauge>,
    breaker_states: [AtomicU8; 2],
    breaker_open: Family<ServiceLabel, Gauge>,
    breaker_opened: Family<ServiceLabel, Counter>,
    breaker_rejected: Family<ServiceLabel, Counter>,
    operation_names: Mutex<HashSet<String>>,
    fleet_hits: Counter,
    redis_errors: Counter,
    redis_degraded_total: Counter,
    redis_degraded: Gauge,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub mosia_calls: u64,
    /// TOTVS calls for resources; token calls are in `totvs_token_calls` only.
    pub totvs_calls: u64,
    pub totvs_token_calls: u64,
    pub upstream_errors: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_coalesced: u64,
    pub stale_served: u64,
    /// Queries answered whole from the whole-response cache (their reads are not counted).
    pub whole_response_hits: u64,
    pub mutations_deduplicated: u64,
    pub mosia_items_dropped: u64,
    pub totvs_items_dropped: u64,
    /// Whether the upstream's breaker is open or half-open.
    pub mosia_breaker_open: bool,
    pub totvs_breaker_open: bool,
    pub mosia_breaker_opened: u64,
    pub totvs_breaker_opened: u64,
    pub mosia_breaker_rejected: u64,
    pub totvs_breaker_rejected: u64,
    pub fleet_hits: u64,
    pub redis_errors: u64,
    pub redis_degraded_total: u64,
    /// 1 while the Redis tier is degraded, else 0.
    pub redis_degraded: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            registry: Registry::default(),
            requests: Family::new_with_constructor(duration_histogram),
            refusals: Family::default(),
            upstream_calls: Family::default(),
            upstream_durations: Family::new_with_constructor(duration_histogram),
            upstream_errors: Counter::default(),
            items_dropped: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_coalesced: Counter::default(),
            stale_served: Counter::default(),
            whole_response_hits: Counter::default(),
            cache_entries: Family::default(),
            cache_bytes: Family::default(),
            mutations_deduplicated: Counter::default(),
            breaker: Family::default(),
            breaker_states: Default::default(),
            breaker_open: Family::default(),
            breaker_opened: Family::default(),
            breaker_rejected: Family::default(),
            fleet_hits: Counter::default(),
            redis_errors: Counter::default(),
            redis_degraded_total: Counter::default(),
            redis_degraded: Gauge::default(),
            operation_names: Mutex::default(),
        };
        metrics.register()
    }
}

impl Metrics {
    fn register(mut self) -> Self {
        // Series that exist from the start read 0 instead of missing, which keeps rates and
        // alerts simple.
        for series in [Series::Mosia, Series::Totvs, Series::TotvsToken] {
            self.upstream_calls.get_or_create_owned(&ServiceLabel {
                service: series.as_str(),
            });
        }
        for service in [Service::Mosia, Service::Totvs] {
            self.items_dropped.get_or_create_owned(&ServiceLabel {
                service: service.as_str(),
            });
            self.breaker_state(service, BreakerState::Closed);
            let label = ServiceLabel {
                service: service.as_str(),
            };
            self.breaker_open.get_or_create_owned(&label);
            self.breaker_opened.get_or_create_owned(&label);
            self.breaker_rejected.get_or_create_owned(&label);
        }
        for reason in Refusal::ALL {
            self.refusals.get_or_create_owned(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        let r = &mut self.registry;
        let prefixed = |name: &str| format!("protocol_graph_{name}");
        r.register_with_unit(
            prefixed("request_duration"),
            "GraphQL requests by operation name, type (query, mutation, unknown when unparsed) and outcome (ok, error: some field failed, rejected: nothing ran)",
            Unit::Seconds,
            self.requests.clone(),
        );
        r.register(
            prefixed("refusals"),
            "Requests or fields refused by the gateway, by reason",
            self.refusals.clone(),
        );
        r.register(
            prefixed("upstream_calls"),
            "Upstream HTTP calls attempted, retries included; service=\"totvs_token\" counts the TOTVS token calls, which service=\"totvs\" does not",
            self.upstream_calls.clone(),
        );
        r.register_with_unit(
            prefixed("upstream_call_duration"),
            "Upstream HTTP calls by service, route template and status (the HTTP status, or timeout, or error when there was no answer)",
            Unit::Seconds,
            self.upstream_durations.clone(),
        );
        r.register(
            prefixed("upstream_errors"),
            "Upstream calls that failed",
            self.upstream_errors.clone(),
        );
        r.register(
            prefixed("upstream_items_dropped"),
            "Items of upstream answers not passed on: beyond the page size asked for, or about another beneficiary",
            self.items_dropped.clone(),
        );
        r.register(
            prefixed("upstream_breaker_state"),
            "1 for the state each upstream's circuit breaker is in, 0 for the others",
            self.breaker.clone(),
        );
        r.register(
            prefixed("breaker_open"),
            "Whether the upstream's circuit breaker is open or half-open (1) or closed (0)",
            self.breaker_open.clone(),
        );
        r.register(
            prefixed("breaker_opened"),
            "Times the upstream's circuit breaker opened, a failed probe included",
            self.breaker_opened.clone(),
        );
        r.register(
            prefixed("breaker_rejected"),
            "Upstream calls failed fast, unsent, because the breaker was open",
            self.breaker_rejected.clone(),
        );
        r.register(
            prefixed("fleet_hits"),
            "Reads answered from the fleet's shared Redis tier",
            self.fleet_hits.clone(),
        );
        r.register(
            prefixed("redis_errors"),
            "Redis commands that failed, timed out or were refused (each a cache miss or a dropped write)",
            self.redis_errors.clone(),
        );
        r.register(
            prefixed("redis_degraded_transitions"),
            "Times the Redis tier went from up to degraded",
            self.redis_degraded_total.clone(),
        );
        r.register(
            prefixed("redis_degraded"),
            "1 while the Redis tier is slow or down (local caches serve)",
            self.redis_degraded.clone(),
        );
        r.register(
            prefixed("cache_hits"),
            "Reads answered from the shared cache",
            self.cache_hits.clone(),
        );
        r.register(
            prefixed("cache_misses"),
            "Reads that went upstream",
            self.cache_misses.clone(),
        );
        r.register(
            prefixed("cache_coalesced"),
            "Reads that waited for an identical read in flight",
            self.cache_coalesced.clone(),
        );
        r.register(
            prefixed("stale_served"),
            "Stale answers served while an upstream failed",
            self.stale_served.clone(),
        );
        r.register(
            prefixed("whole_response_hits"),
            "Queries answered whole from the whole-response cache, without execution; their reads are not counted as cache hits",
            self.whole_response_hits.clone(),
        );
        r.register(
            prefixed("cache_entries"),
            "Entries in the shared cache at the last scrape: tier=\"fresh\" serves reads, tier=\"stale\" stands in during outages",
            self.cache_entries.clone(),
        );
        r.register_with_unit(
            prefixed("cache"),
            "Weighed size of the shared cache at the last scrape (upstream body bytes plus a fixed overhead per entry); the tiers share their values",
            Unit::Bytes,
            self.cache_bytes.clone(),
        );
        r.register(
            prefixed("mutations_deduplicated"),
            "Identical mutations answered without a second upstream call",
            self.mutations_deduplicated.clone(),
        );
        self
    }

    /// One GraphQL request, timed from its arrival at the executor.
    pub(crate) fn request(
        &self,
        operation: Option<&str>,
        kind: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let labels = RequestLabels {
            operation: self.operation_label(operation),
            r#type: kind,
            outcome,
        };
        self.requests
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    fn operation_label(&self, name: Option<&str>) -> String {
        let Some(name) = name else {
            return "anonymous".into();
        };
        if !is_label_worthy(name) {
            return "other".into();
        }
        let mut names = self
            .operation_names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if names.contains(name) {
            return name.into();
        }
        if names.len() < MAX_OPERATION_NAMES {
            names.insert(name.into());
            return name.into();
        }
        "other".into()
    }

    pub(crate) fn refusal(&self, reason: Refusal) {
        self.refusals
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// One upstream HTTP attempt: `status` is the HTTP status, or `timeout`, or `error`.
    pub(crate) fn upstream_call(
        &self,
        series: Series,
        route: &'static str,
        status: String,
        elapsed: Duration,
    ) {
        let service = series.as_str();
        self.upstream_calls
            .get_or_create(&ServiceLabel { service })
            .inc();
        self.upstream_durations
            .get_or_create(&UpstreamLabels {
                service,
                route,
                status,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Items of an upstream answer not passed on: beyond the page asked for, or about another
    /// beneficiary than the one asked for.
    pub(crate) fn items_dropped(&self, service: Service, count: usize) {
        self.items_dropped
            .get_or_create(&ServiceLabel {
                service: service.as_str(),
            })
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }
    pub(crate) fn upstream_error(&self) {
        self.upstream_errors.inc();
    }
    pub(crate) fn cache_hit(&self) {
        self.cache_hits.inc();
    }
    pub(crate) fn cache_miss(&self) {
        self.cache_misses.inc();
    }
    pub(crate) fn cache_coalesced(&self) {
        self.cache_coalesced.inc();
    }
    pub(crate) fn stale_served(&self) {
        self.stale_served.inc();
    }
    pub(crate) fn whole_response_hit(&self) {
        self.whole_response_hits.inc();
    }
    pub(crate) fn mutation_deduplicated(&self) {
        self.mutations_deduplicated.inc();
    }

    /// The size of one cache tier (`fresh` or `stale`), measured when `/metrics` is read.
    pub(crate) fn cache_size(&self, tier: &'static str, entries: u64, bytes: u64) {
        let label = TierLabel { tier };
        let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.cache_entries
            .get_or_create(&label)
            .set(as_gauge(entries));
        self.cache_bytes.get_or_create(&label).set(as_gauge(bytes));
    }

    /// Reads answered from the fleet's Redis tier instead of upstream.
    pub(crate) fn fleet_hit(&self) {
        self.fleet_hits.inc();
    }
    /// Redis commands that failed, timed out or were refused.
    pub(crate) fn redis_error(&self) {
        self.redis_errors.inc();
    }
    /// The Redis tier went from up to degraded.
    pub(crate) fn redis_degraded(&self) {
        self.redis_degraded_total.inc();
    }
    pub(crate) fn set_redis_degraded(&self, degraded: bool) {
        self.redis_degraded.set(i64::from(degraded));
    }

    /// The upstream's breaker opened (from closed, or again after a failed probe).
    pub(crate) fn breaker_opened(&self, service: Service) {
        let label = ServiceLabel {
            service: service.as_str(),
        };
        self.breaker_open.get_or_create(&label).set(1);
        self.breaker_opened.get_or_create(&label).inc();
        self.breaker_state(service, BreakerState::Open);
    }

    /// A probe succeeded: the upstream's breaker lets calls through again.
    pub(crate) fn breaker_closed(&self, service: Service) {
        let label = ServiceLabel {
            service: service.as_str(),
        };
        self.breaker_open.get_or_create(&label).set(0);
        self.breaker_state(service, BreakerState::Closed);
    }

    /// A call failed fast because the upstream's breaker is open.
    pub(crate) fn breaker_rejected(&self, service: Service) {
        self.breaker_rejected
            .get_or_create(&ServiceLabel {
                service: service.as_str(),
            })
            .inc();
    }

    /// The hook for the circuit breaker: call it on every state change of `service`'s breaker.
    /// `/metrics` shows the state, `/readyz` names it for that upstream when it is not closed.
    pub(crate) fn breaker_state(&self, service: Service, state: BreakerState) {
        self.breaker_states[breaker_index(service)].store(state as u8, Relaxed);
        for each in BreakerState::ALL {
            self.breaker
                .get_or_create(&BreakerLabels {
                    service: service.as_str(),
                    state: each.as_str(),
                })
                .set(i64::from(each == state));
        }
    }

    /// The state `service`'s breaker last reported (closed when it never did).
    pub(crate) fn breaker(&self, service: Service) -> BreakerState {
        BreakerState::from_u8(self.breaker_states[breaker_index(service)].load(Relaxed))
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let calls = |series: Series| {
            self.upstream_calls
                .get_or_create(&ServiceLabel {
                    service: series.as_str(),
                })
                .get()
        };
        let dropped = |service: Service| {
            self.items_dropped
                .get_or_create(&ServiceLabel {
                    service: service.as_str(),
                })
                .get()
        };
        let label = |service: Service| ServiceLabel {
            service: service.as_str(),
        };
        MetricsSnapshot {
            mosia_calls: calls(Series::Mosia),
            totvs_calls: calls(Series::Totvs),
            totvs_token_calls: calls(Series::TotvsToken),
            upstream_errors: self.upstream_errors.get(),
            cache_hits: self.cache_hits.get(),
            cache_misses: self.cache_misses.get(),
            cache_coalesced: self.cache_coalesced.get(),
            stale_served: self.stale_served.get(),
            whole_response_hits: self.whole_response_hits.get(),
            mutations_deduplicated: self.mutations_deduplicated.get(),
            mosia_items_dropped: dropped(Service::Mosia),
            totvs_items_dropped: dropped(Service::Totvs),
            mosia_breaker_open: self
                .breaker_open
                .get_or_create(&label(Service::Mosia))
                .get()
                == 1,
            totvs_breaker_open: self
                .breaker_open
                .get_or_create(&label(Service::Totvs))
                .get()
                == 1,
            mosia_breaker_opened: self
                .breaker_opened
                .get_or_create(&label(Service::Mosia))
                .get(),
            totvs_breaker_opened: self
                .breaker_opened
                .get_or_create(&label(Service::Totvs))
                .get(),
            mosia_breaker_rejected: self
                .breaker_rejected
                .get_or_create(&label(Service::Mosia))
                .get(),
            totvs_breaker_rejected: self
                .breaker_rejected
                .get_or_create(&label(Service::Totvs))
                .get(),
            fleet_hits: self.fleet_hits.get(),
            redis_errors: self.redis_errors.get(),
            redis_degraded_total: self.redis_degraded_total.get(),
            redis_degraded: u64::try_from(self.redis_degraded.get()).unwrap_or(0),
        }
    }

    /// Every metric in the Prometheus text exposition format (0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        if prometheus_text::encode(&mut out, &self.registry).is_err() {
            // Writing to a String cannot fail; say so in the text rather than panic.
            let _ = writeln!(out, "# encoding failed");
        }
        // The log writer is the process's, not this app's: one counter for all.
        let _ = writeln!(
            out,
            "# HELP protocol_graph_log_lines_dropped Log lines (audit lines included) dropped because the log queue was full.\n# TYPE protocol_graph_log_lines_dropped counter\nprotocol_graph_log_lines_dropped_total {}",
            crate::telemetry::dropped_log_lines()
        );
        out
    }

    /// The `Content-Type` of [`Self::render_prometheus`].
    pub const CONTENT_TYPE: &'static str = prometheus_text::CONTENT_TYPE;
}

fn breaker_index(service: Service) -> usize {
    match service {
        Service::Mosia => 0,
        Service::Totvs => 1,
    }
}

/// A GraphQL name short enough to be a label value; anything else would be a way for callers
/// to grow the series without bound.
fn is_label_worthy(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_OPERATION_NAME_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
