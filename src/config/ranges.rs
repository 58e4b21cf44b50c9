//! The range of every number in the settings.

use super::{ConfigError, Settings};

impl Settings {
    /// Every number in range, or one error naming the first setting that is not: no value can
    /// panic the process (a TTL of 9.2e18 s once panicked moka) or silently switch a feature
    /// off (`max_bytes = 0` once disabled the cache; `cache.enabled = false` is the way).
    pub(super) fn check_ranges(&self) -> Result<(), ConfigError> {
        // The upstream table checks its own keys first (config/upstream.rs).
        self.upstream.check()?;
        const DAY: u64 = 86_400;
        const MIB: u64 = 1024 * 1024;
        let (u, c, s, l) = (&self.upstream, &self.cache, &self.server, &self.limits);
        let int = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let checks: [(&'static str, u64, u64, u64, &str); 25] = [
            ("upstream.timeout_ms", u.timeout_ms, 1, 120_000, ""),
            (
                "upstream.max_concurrency",
                int(u.max_concurrency),
                1,
                1_000,
                "",
            ),
            ("upstream.get_retries", u64::from(u.get_retries), 0, 2, ""),
            (
                "upstream.retry_backoff_ms",
                u.retry_backoff_ms,
                0,
                10_000,
                "",
            ),
            (
                "upstream.token_refresh_margin_secs",
                u.token_refresh_margin_secs,
                0,
                3_600,
                "",
            ),
            (
                "upstream.pool_max_idle_per_host",
                int(u.pool_max_idle_per_host),
                0,
                10_000,
                "",
            ),
            ("cache.mosia_ttl_secs", c.mosia_ttl_secs, 0, DAY, ""),
            (
                "cache.totvs_protocols_ttl_secs",
                c.totvs_protocols_ttl_secs,
                0,
                DAY,
                "",
            ),
            (
                "cache.totvs_interactions_ttl_secs",
                c.totvs_interactions_ttl_secs,
                0,
                DAY,
                "",
            ),
            ("cache.not_found_ttl_secs", c.not_found_ttl_secs, 0, 5, ""),
            (
                "cache.max_bytes",
                c.max_bytes,
                MIB,
                64 * 1024 * MIB,
                "; to turn the cache off set cache.enabled = false",
            ),
            ("cache.stale_for_secs", c.stale_for_secs, 0, 7 * DAY, ""),
            (
                "cache.mutation_dedupe_secs",
                c.mutation_dedupe_secs,
                0,
                3_600,
                "",
            ),
            (
                "cache.whole_response_max_bytes",
                c.whole_response_max_bytes,
                MIB,
                64 * 1024 * MIB,
                "; to turn it off set cache.whole_responses = false",
            ),
            (
                "server.max_body_bytes",
                int(s.max_body_bytes),
                1024,
                16 * MIB,
                "",
            ),
            ("server.max_depth", int(s.max_depth), 4, 256, ""),
            (
                "server.max_complexity",
                int(s.max_complexity),
                1,
                1_000_000,
                "",
            ),
            (
                "server.header_read_timeout_ms",
                s.header_read_timeout_ms,
                100,
                600_000,
                "",
            ),
            (
                "server.idle_timeout_ms",
                s.idle_timeout_ms,
                1_000,
                3_600_000,
                "",
            ),
            (
                "server.max_connections",
                int(s.max_connections),
                1,
                1_000_000,
                "",
            ),
            (
                "server.shutdown_grace_ms",
                s.shutdown_grace_ms,
                0,
                600_000,
                "",
            ),
            (
                "persisted_queries.max_bytes",
                self.persisted_queries.max_bytes,
                1024,
                1024 * MIB,
                "",
            ),
            (
                "limits.max_upstream_calls",
                l.max_upstream_calls,
                1,
                10_000,
                "",
            ),
            (
                "limits.request_timeout_ms",
                l.request_timeout_ms,
                100,
                600_000,
                "",
            ),
            // The deadline must leave room for at least one whole upstream call.
            (
                "limits.request_timeout_ms",
                l.request_timeout_ms,
                u.timeout_ms,
                u64::MAX,
                " (at least upstream.timeout_ms)",
            ),
        ];
        for (name, value, min, max, hint) in checks {
            if !(min..=max).contains(&value) {
                let reason = match (min, max) {
                    (0, max) => format!("must be at most {max}{hint}"),
                    (min, u64::MAX) => format!("must be at least {min}{hint}"),
                    (min, max) => format!("must be between {min} and {max}{hint}"),
                };
                return Err(ConfigError::Invalid { name, reason });
            }
        }
        Ok(())
    }
}
