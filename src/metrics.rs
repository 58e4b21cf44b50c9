//! Counters of upstream work and the upstreams' circuit breakers, read by `/metrics` (Prometheus text format), tests and the benchmark.

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use crate::model::Service;

/// Process-wide counters. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    mosia_calls: AtomicU64,
    totvs_calls: AtomicU64,
    totvs_token_calls: AtomicU64,
    upstream_errors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_coalesced: AtomicU64,
    stale_served: AtomicU64,
    mutations_deduplicated: AtomicU64,
    mosia_items_dropped: AtomicU64,
    totvs_items_dropped: AtomicU64,
    mosia_breaker: BreakerCounters,
    totvs_breaker: BreakerCounters,
}

/// One upstream's circuit breaker, as the breaker reports its transitions.
#[derive(Debug, Default)]
struct BreakerCounters {
    /// 1 from the moment it opens until a probe succeeds (half-open included), else 0.
    open: AtomicU64,
    opened: AtomicU64,
    rejected: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub mosia_calls: u64,
    pub totvs_calls: u64,
    pub totvs_token_calls: u64,
    pub upstream_errors: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_coalesced: u64,
    pub stale_served: u64,
    pub mutations_deduplicated: u64,
    pub mosia_items_dropped: u64,
    pub totvs_items_dropped: u64,
    pub mosia_breaker_open: bool,
    pub totvs_breaker_open: bool,
    pub mosia_breaker_opened: u64,
    pub totvs_breaker_opened: u64,
    pub mosia_breaker_rejected: u64,
    pub totvs_breaker_rejected: u64,
}

impl Metrics {
    pub(crate) fn upstream_call(&self, service: Service) {
        match service {
            Service::Mosia => &self.mosia_calls,
            Service::Totvs => &self.totvs_calls,
        }
        .fetch_add(1, Relaxed);
    }
    /// Items of an upstream answer not passed on: beyond the page asked for, or about another
    /// beneficiary than the one asked for.
    pub(crate) fn items_dropped(&self, service: Service, count: usize) {
        match service {
            Service::Mosia => &self.mosia_items_dropped,
            Service::Totvs => &self.totvs_items_dropped,
        }
        .fetch_add(u64::try_from(count).unwrap_or(u64::MAX), Relaxed);
    }
    fn breaker(&self, service: Service) -> &BreakerCounters {
        match service {
            Service::Mosia => &self.mosia_breaker,
            Service::Totvs => &self.totvs_breaker,
        }
    }
    /// The upstream's breaker opened (from closed, or again after a failed probe).
    pub(crate) fn breaker_opened(&self, service: Service) {
        let breaker = self.breaker(service);
        breaker.open.store(1, Relaxed);
        breaker.opened.fetch_add(1, Relaxed);
    }
    /// A probe succeeded: the upstream's breaker let calls through again.
    pub(crate) fn breaker_closed(&self, service: Service) {
        self.breaker(service).open.store(0, Relaxed);
    }
    /// A call failed fast because the upstream's breaker is open.
    pub(crate) fn breaker_rejected(&self, service: Service) {
        self.breaker(service).rejected.fetch_add(1, Relaxed);
    }
    pub(crate) fn token_call(&self) {
        self.totvs_token_calls.fetch_add(1, Relaxed);
    }
    pub(crate) fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Relaxed);
    }
    pub(crate) fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Relaxed);
    }
    pub(crate) fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Relaxed);
    }
    pub(crate) fn cache_coalesced(&self) {
        self.cache_coalesced.fetch_add(1, Relaxed);
    }
    pub(crate) fn stale_served(&self) {
        self.stale_served.fetch_add(1, Relaxed);
    }
    pub(crate) fn mutation_deduplicated(&self) {
        self.mutations_deduplicated.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            mosia_calls: self.mosia_calls.load(Relaxed),
            totvs_calls: self.totvs_calls.load(Relaxed),
            totvs_token_calls: self.totvs_token_calls.load(Relaxed),
            upstream_errors: self.upstream_errors.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            cache_coalesced: self.cache_coalesced.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            mutations_deduplicated: self.mutations_deduplicated.load(Relaxed),
            mosia_items_dropped: self.mosia_items_dropped.load(Relaxed),
            totvs_items_dropped: self.totvs_items_dropped.load(Relaxed),
            mosia_breaker_open: self.mosia_breaker.open.load(Relaxed) == 1,
            totvs_breaker_open: self.totvs_breaker.open.load(Relaxed) == 1,
            mosia_breaker_opened: self.mosia_breaker.opened.load(Relaxed),
            totvs_breaker_opened: self.totvs_breaker.opened.load(Relaxed),
            mosia_breaker_rejected: self.mosia_breaker.rejected.load(Relaxed),
            totvs_breaker_rejected: self.totvs_breaker.rejected.load(Relaxed),
        }
    }

    /// The counters in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let counters: [(&str, &str, &str, u64); 11] = [
            (
                "protocol_graph_upstream_calls_total",
                "service=\"mosia\"",
                "Upstream HTTP calls attempted, retries included; service=\"totvs_token\" is the part of service=\"totvs\" spent on tokens.",
                s.mosia_calls,
            ),
            (
                "protocol_graph_upstream_calls_total",
                "service=\"totvs\"",
                "",
                s.totvs_calls,
            ),
            (
                "protocol_graph_upstream_calls_total",
                "service=\"totvs_token\"",
                "",
                s.totvs_token_calls,
            ),
            (
                "protocol_graph_upstream_errors_total",
                "",
                "Upstream calls that failed.",
                s.upstream_errors,
            ),
            (
                "protocol_graph_cache_hits_total",
                "",
                "Reads answered from the shared cache.",
                s.cache_hits,
            ),
            (
                "protocol_graph_cache_misses_total",
                "",
                "Reads that went upstream.",
                s.cache_misses,
            ),
            (
                "protocol_graph_cache_coalesced_total",
                "",
                "Reads that waited for an identical read in flight.",
                s.cache_coalesced,
            ),
            (
                "protocol_graph_stale_served_total",
                "",
                "Stale answers served while an upstream failed.",
                s.stale_served,
            ),
            (
                "protocol_graph_mutations_deduplicated_total",
                "",
                "Identical mutations answered without a second upstream call.",
                s.mutations_deduplicated,
            ),
            (
                "protocol_graph_upstream_items_dropped_total",
                "service=\"mosia\"",
                "Items of upstream answers not passed on: beyond the page size asked for, or about another beneficiary.",
                s.mosia_items_dropped,
            ),
            (
                "protocol_graph_upstream_items_dropped_total",
                "service=\"totvs\"",
                "",
                s.totvs_items_dropped,
            ),
        ];
        let breakers: [(&str, &str, &str, &str, u64); 6] = [
            (
                "protocol_graph_breaker_open",
                "service=\"mosia\"",
                "Whether the upstream's circuit breaker is open or half-open (1) or closed (0).",
                "gauge",
                u64::from(s.mosia_breaker_open),
            ),
            (
                "protocol_graph_breaker_open",
                "service=\"totvs\"",
                "",
                "gauge",
                u64::from(s.totvs_breaker_open),
            ),
            (
                "protocol_graph_breaker_opened_total",
                "service=\"mosia\"",
                "Times the upstream's circuit breaker opened, a failed probe included.",
                "counter",
                s.mosia_breaker_opened,
            ),
            (
                "protocol_graph_breaker_opened_total",
                "service=\"totvs\"",
                "",
                "counter",
                s.totvs_breaker_opened,
            ),
            (
                "protocol_graph_breaker_rejected_total",
                "service=\"mosia\"",
                "Upstream calls failed fast, unsent, because the breaker was open.",
                "counter",
                s.mosia_breaker_rejected,
            ),
            (
                "protocol_graph_breaker_rejected_total",
                "service=\"totvs\"",
                "",
                "counter",
                s.totvs_breaker_rejected,
            ),
        ];
        let rows = counters
            .into_iter()
            .map(|(name, labels, help, value)| (name, labels, help, "counter", value))
            .chain(breakers);
        let mut out = String::new();
        for (name, labels, help, kind, value) in rows {
            if !help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            }
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        out
    }
}
