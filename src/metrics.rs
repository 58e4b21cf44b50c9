//! Counters of upstream work, read by `/metrics` (Prometheus text format), tests and the benchmark.

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
    fleet_hits: AtomicU64,
    redis_errors: AtomicU64,
    redis_degraded_total: AtomicU64,
    redis_degraded: AtomicU64,
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
    pub fleet_hits: u64,
    pub redis_errors: u64,
    pub redis_degraded_total: u64,
    /// 1 while the Redis tier is degraded, else 0.
    pub redis_degraded: u64,
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

    /// Reads answered from the fleet's Redis tier instead of upstream.
    pub(crate) fn fleet_hit(&self) {
        self.fleet_hits.fetch_add(1, Relaxed);
    }
    /// Redis commands that failed, timed out or were refused.
    pub(crate) fn redis_error(&self) {
        self.redis_errors.fetch_add(1, Relaxed);
    }
    /// The Redis tier went from up to degraded.
    pub(crate) fn redis_degraded(&self) {
        self.redis_degraded_total.fetch_add(1, Relaxed);
    }
    pub(crate) fn set_redis_degraded(&self, degraded: bool) {
        self.redis_degraded.store(u64::from(degraded), Relaxed);
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
            fleet_hits: self.fleet_hits.load(Relaxed),
            redis_errors: self.redis_errors.load(Relaxed),
            redis_degraded_total: self.redis_degraded_total.load(Relaxed),
            redis_degraded: self.redis_degraded.load(Relaxed),
        }
    }

    /// The counters in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let rows: [(&str, &str, &str, u64); 14] = [
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
            (
                "protocol_graph_fleet_hits_total",
                "",
                "Reads answered from the fleet's shared Redis tier.",
                s.fleet_hits,
            ),
            (
                "protocol_graph_redis_errors_total",
                "",
                "Redis commands that failed, timed out or were refused (each a cache miss or a dropped write).",
                s.redis_errors,
            ),
            (
                "protocol_graph_redis_degraded_total",
                "",
                "Times the Redis tier went from up to degraded.",
                s.redis_degraded_total,
            ),
        ];
        let mut out = String::new();
        for (name, labels, help, value) in rows {
            if !help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            }
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        // A gauge, unlike the rows above.
        let _ = writeln!(
            out,
            "# HELP protocol_graph_redis_degraded 1 while the Redis tier is slow or down (local caches serve).\n# TYPE protocol_graph_redis_degraded gauge\nprotocol_graph_redis_degraded {}",
            s.redis_degraded
        );
        out
    }
}
