//! The `[upstream]` table: how the gateway calls Mosia and TOTVS, and the bounds that keep a
//! slow, failing or hostile upstream from taking the gateway down with it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// How upstream calls behave; the `[upstream]` table of the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    /// Deadline for one upstream HTTP call, in milliseconds.
    pub timeout_ms: u64,
    /// Most upstream calls one request keeps in flight per upstream.
    pub max_concurrency: usize,
    /// Most calls in flight per upstream across all requests; the others wait, within their
    /// request's deadline.
    pub max_in_flight: usize,
    /// Largest upstream body read, in bytes; a larger one is `UPSTREAM_ERROR`.
    pub max_response_bytes: usize,
    /// How many times (0 to 2) a GET is sent again after a connection refused or reset before
    /// any answer, or a 502, 503 or 504; never after a timeout or another status.
    pub get_retries: u32,
    /// Base of the jittered backoff between GET attempts, in milliseconds.
    pub retry_backoff_ms: u64,
    /// Consecutive failed calls after which an upstream's circuit breaker opens.
    pub breaker_failures: u32,
    /// How long an open breaker fails calls fast before it lets one probe through.
    pub breaker_cooldown_ms: u64,
    /// The TOTVS access token is renewed this many seconds before it expires.
    pub token_refresh_margin_secs: u64,
    /// Idle pooled connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 5_000,
            // A default page (20) of interactions goes out in one wave, not 16 + 4.
            max_concurrency: 32,
            max_in_flight: 64,
            // A real 100-item page is about 35 KB.
            max_response_bytes: 512 * 1024,
            get_retries: 2,
            retry_backoff_ms: 50,
            breaker_failures: 5,
            breaker_cooldown_ms: 5_000,
            token_refresh_margin_secs: 60,
            pool_max_idle_per_host: 256,
        }
    }
}

impl UpstreamSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn breaker_cooldown(&self) -> Duration {
        Duration::from_millis(self.breaker_cooldown_ms)
    }

    /// The first setting out of its range, by its config-file name.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, bool, &str); 7] = [
            (
                "upstream.timeout_ms",
                self.timeout_ms > 0,
                "must be greater than 0",
            ),
            (
                "upstream.max_concurrency",
                self.max_concurrency > 0,
                "must be greater than 0",
            ),
            (
                "upstream.max_in_flight",
                (1..=10_000).contains(&self.max_in_flight),
                "must be 1 to 10000",
            ),
            (
                "upstream.max_response_bytes",
                (1024..=64 * 1024 * 1024).contains(&self.max_response_bytes),
                "must be 1024 (1 KiB) to 67108864 (64 MiB)",
            ),
            (
                "upstream.get_retries",
                self.get_retries <= 2,
                "must be at most 2",
            ),
            (
                "upstream.breaker_failures",
                (1..=100).contains(&self.breaker_failures),
                "must be 1 to 100",
            ),
            (
                "upstream.breaker_cooldown_ms",
                (100..=600_000).contains(&self.breaker_cooldown_ms),
                "must be 100 to 600000",
            ),
        ];
        match checks.into_iter().find(|(_, ok, _)| !ok) {
            Some((name, _, reason)) => Err(ConfigError::Invalid {
                name,
                reason: reason.into(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tweak = fn(&mut UpstreamSettings);

    fn refusal(tweak: impl FnOnce(&mut UpstreamSettings)) -> Option<String> {
        let mut settings = UpstreamSettings::default();
        tweak(&mut settings);
        settings.check().err().map(|err| err.to_string())
    }

    #[test]
    fn the_defaults_are_in_range() {
        assert_eq!(refusal(|_| {}), None);
    }

    #[test]
    fn each_bound_is_refused_by_its_name_just_past_its_edge() {
        let cases: [(Tweak, &str); 8] = [
            (|s| s.max_in_flight = 0, "upstream.max_in_flight"),
            (|s| s.max_in_flight = 10_001, "upstream.max_in_flight"),
            (
                |s| s.max_response_bytes = 1023,
                "upstream.max_response_bytes",
            ),
            (
                |s| s.max_response_bytes = 64 * 1024 * 1024 + 1,
                "upstream.max_response_bytes",
            ),
            (|s| s.breaker_failures = 0, "upstream.breaker_failures"),
            (|s| s.breaker_failures = 101, "upstream.breaker_failures"),
            (
                |s| s.breaker_cooldown_ms = 99,
                "upstream.breaker_cooldown_ms",
            ),
            (
                |s| s.breaker_cooldown_ms = 600_001,
                "upstream.breaker_cooldown_ms",
            ),
        ];
        for (tweak, name) in cases {
            let message = refusal(tweak).unwrap_or_else(|| panic!("{name} accepted"));
            assert!(
                message.starts_with(&format!("{name} is invalid: ")),
                "{message}"
            );
        }
    }

    #[test]
    fn each_bound_accepts_its_edges() {
        let cases: [Tweak; 6] = [
            |s| s.max_in_flight = 1,
            |s| s.max_in_flight = 10_000,
            |s| s.max_response_bytes = 1024,
            |s| s.max_response_bytes = 64 * 1024 * 1024,
            |s| {
                s.breaker_failures = 100;
                s.breaker_cooldown_ms = 600_000;
            },
            |s| {
                s.breaker_failures = 1;
                s.breaker_cooldown_ms = 100;
            },
        ];
        for tweak in cases {
            assert_eq!(refusal(tweak), None);
        }
    }

    #[test]
    fn the_config_file_names_the_new_keys() {
        let settings: UpstreamSettings = toml_table(
            "max_in_flight = 8\nmax_response_bytes = 2048\nbreaker_failures = 3\nbreaker_cooldown_ms = 250",
        );
        assert_eq!(settings.max_in_flight, 8);
        assert_eq!(settings.max_response_bytes, 2048);
        assert_eq!(settings.breaker_failures, 3);
        assert_eq!(settings.breaker_cooldown(), Duration::from_millis(250));
        assert_eq!(settings.max_concurrency, 32);
    }

    fn toml_table(text: &str) -> UpstreamSettings {
        use figment::{
            Figment,
            providers::{Format, Toml},
        };
        Figment::from(Toml::string(text)).extract().unwrap()
    }
}
