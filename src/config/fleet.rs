//! The settings of the fleet's shared Redis tier (`REDIS_URL` and the `[redis]` table).

use serde::{Deserialize, Serialize};
use url::Url;

use super::{ConfigError, Secret};

/// The Redis tier several replicas share; the `[redis]` table of the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` or `rediss://...` (TLS), from `REDIS_URL`;
    /// none (or empty) runs the replica alone, as a single process.
    pub url: Option<Secret>,
    /// Budget of one Redis round trip, in milliseconds; past it the tier counts as degraded.
    pub command_timeout_ms: u64,
    /// How often a replica whose tier is degraded tries Redis again, in milliseconds.
    pub probe_interval_ms: u64,
    /// Largest answer stored in (or read from) Redis, in bytes.
    pub max_value_bytes: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            command_timeout_ms: 100,
            probe_interval_ms: 500,
            max_value_bytes: 1024 * 1024,
        }
    }
}

impl RedisSettings {
    /// Drops an empty URL, and refuses one that is not `redis://` or `rediss://` with a host,
    /// or budgets out of range; the error names the setting, never the URL (it may hold a
    /// password).
    pub(super) fn checked(mut self) -> Result<Self, ConfigError> {
        self.url = self.url.filter(|url| !url.expose().trim().is_empty());
        if let Some(url) = &self.url {
            let valid = Url::parse(url.expose().trim()).is_ok_and(|url| {
                matches!(url.scheme(), "redis" | "rediss") && url.host_str().is_some()
            });
            if !valid {
                return Err(ConfigError::Invalid {
                    name: "REDIS_URL",
                    reason: "expected redis://host:port or rediss://host:port".into(),
                });
            }
        }
        let checks: [(&'static str, bool, &str); 3] = [
            (
                "redis.command_timeout_ms",
                (1..=10_000).contains(&self.command_timeout_ms),
                "must be 1 to 10000",
            ),
            (
                "redis.probe_interval_ms",
                (10..=60_000).contains(&self.probe_interval_ms),
                "must be 10 to 60000",
            ),
            (
                "redis.max_value_bytes",
                self.max_value_bytes >= 1024,
                "must be at least 1024",
            ),
        ];
        match checks.into_iter().find(|(_, ok, _)| !ok) {
            Some((name, _, reason)) => Err(ConfigError::Invalid {
                name,
                reason: reason.into(),
            }),
            None => Ok(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> Result<RedisSettings, ConfigError> {
        RedisSettings {
            url: Some(Secret::new(url)),
            ..RedisSettings::default()
        }
        .checked()
    }

    #[test]
    fn an_empty_url_means_no_fleet_tier() {
        assert!(with_url("  ").unwrap().url.is_none());
        assert!(RedisSettings::default().checked().unwrap().url.is_none());
    }

    #[test]
    fn redis_and_rediss_urls_are_accepted() {
        assert!(with_url("redis://127.0.0.1:6379").unwrap().url.is_some());
        assert!(with_url("rediss://user:pw@redis.internal:6380/2").is_ok());
    }

    #[test]
    fn other_urls_are_refused_by_name_without_echoing_them() {
        let err = with_url("http://user:hunter2@host")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("REDIS_URL is invalid"), "{err}");
        assert!(!err.contains("hunter2"));
        assert!(with_url("redis:///no-host").is_err());
    }

    #[test]
    fn budgets_out_of_range_are_refused_by_name() {
        let err = RedisSettings {
            command_timeout_ms: 0,
            ..RedisSettings::default()
        }
        .checked()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "redis.command_timeout_ms is invalid: must be 1 to 10000"
        );
    }
}
