//! The typed settings, and the only module that reads the environment.
//!
//! Deploy-critical settings come from flat environment variables (`LISTEN_ADDR`, `MOSIA_BASE_URL`,
//! `MOSIA_TOKEN`, `TOTVS_BASE_URL`, `TOTVS_USERNAME`, `TOTVS_PASSWORD`); everything else has a
//! default and may be overridden by the TOML file named by `CONFIG_FILE`. Environment variables
//! win over the file. A missing or malformed setting is one [`ConfigError`] whose message names it.
//! `REDIS_URL` (optional) lets replicas share a Redis tier; see [`RedisSettings`].

mod fleet;

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use url::Url;

pub use fleet::RedisSettings;

/// Why the settings could not be read. The message is one line that names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("CONFIG_FILE {path}: {reason}")]
    File { path: String, reason: String },
}

/// A string that never appears in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The raw value, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything the gateway needs to run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub mosia: MosiaSettings,
    pub totvs: TotvsSettings,
    pub upstream: UpstreamSettings,
    pub cache: CacheSettings,
    pub server: ServerSettings,
    pub limits: LimitsSettings,
    pub auth: AuthSettings,
    pub csrf: CsrfSettings,
    pub rate_limit: RateLimitSettings,
    pub redis: RedisSettings,
}

#[derive(Clone, Debug)]
pub struct MosiaSettings {
    pub base_url: Url,
    pub token: Secret,
}

#[derive(Clone, Debug)]
pub struct TotvsSettings {
    /// The Protheus REST root, e.g. `https://host:port/rest`.
    pub base_url: Url,
    pub username: Secret,
    pub password: Secret,
}

/// How upstream calls behave; the `[upstream]` table of the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    /// Deadline for one upstream HTTP call, in milliseconds.
    pub timeout_ms: u64,
    /// Most upstream calls one request keeps in flight per upstream.
    pub max_concurrency: usize,
    /// How many times (0 to 2) a GET is sent again after a connection refused or reset before
    /// any answer, or a 502, 503 or 504; never after a timeout or another status.
    pub get_retries: u32,
    /// Base of the jittered backoff between GET attempts, in milliseconds.
    pub retry_backoff_ms: u64,
    /// The TOTVS access token is renewed this many seconds before it expires.
    pub token_refresh_margin_secs: u64,
    /// Idle pooled connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            timeout_ms: 5_000,
            max_concurrency: 16,
            get_retries: 2,
            retry_backoff_ms: 50,
            token_refresh_margin_secs: 60,
            pool_max_idle_per_host: 256,
        }
    }
}

impl UpstreamSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The shared response cache; the `[cache]` table of the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    pub enabled: bool,
    /// Freshness of Mosia's latest protocols, in seconds.
    pub mosia_ttl_secs: u64,
    /// Freshness of TOTVS protocol lists, in seconds.
    pub totvs_protocols_ttl_secs: u64,
    /// Freshness of TOTVS interactions, in seconds.
    pub totvs_interactions_ttl_secs: u64,
    /// How long an upstream 404 is remembered (at most 5 s).
    pub not_found_ttl_secs: u64,
    /// Size bound of the cache, weighed by upstream body size.
    pub max_bytes: u64,
    /// When an upstream fails, an entry at most this old is served with a warning (0 disables).
    pub stale_for_secs: u64,
    /// An identical mutation within this window after a success gets the same answer.
    pub mutation_dedupe_secs: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            mosia_ttl_secs: 30,
            totvs_protocols_ttl_secs: 60,
            totvs_interactions_ttl_secs: 60,
            not_found_ttl_secs: 5,
            max_bytes: 64 * 1024 * 1024,
            stale_for_secs: 600,
            mutation_dedupe_secs: 10,
        }
    }
}

/// The GraphQL server; the `[server]` table of the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Deepest accepted query.
    pub max_depth: usize,
    /// Highest accepted query complexity (fields counted, lists weighed by their size argument).
    pub max_complexity: usize,
    /// Serve GraphiQL and allow introspection.
    pub graphiql: bool,
    /// Browser origins allowed to call `/graphql` (CORS), e.g. `["https://app.example.com"]`;
    /// empty sends no CORS headers, `["*"]` allows any origin.
    pub cors_allowed_origins: Vec<String>,
    /// Headers GraphiQL opens with (the sandbox's staff token); never from the config file.
    #[serde(skip)]
    pub graphiql_headers: Option<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_depth: 32,
            max_complexity: 5_000,
            graphiql: true,
            cors_allowed_origins: Vec::new(),
            graphiql_headers: None,
        }
    }
}

/// What one request may cost; the `[limits]` table of the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// Most upstream calls one request may make: estimated from the document before anything
    /// runs (`COST_ESTIMATED_TOO_EXPENSIVE`), and counted while it runs
    /// (`COST_ACTUAL_TOO_EXPENSIVE`).
    pub max_upstream_calls: u64,
    /// A request ends within this many milliseconds; what did not finish answers
    /// `REQUEST_TIMEOUT`.
    pub request_timeout_ms: u64,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        Self {
            max_upstream_calls: 128,
            request_timeout_ms: 15_000,
        }
    }
}

impl LimitsSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// How callers are authenticated; filled from `AUTH_*` settings.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    /// Verifies HS256 tokens (at least 32 bytes).
    pub jwt_secret: Option<Secret>,
    /// Where the RS256/ES256 public keys are published.
    pub jwks_url: Option<Url>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    pub audience: Option<String>,
    /// Every request is the anonymous staff caller.
    pub disabled: bool,
}

/// The CSRF check; the `[csrf]` table of the config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsrfSettings {
    /// Refuse requests a browser would not have preflighted (on by default, as in the Router).
    pub enabled: bool,
    /// Any one of these headers, present and non-empty, proves a preflight.
    pub required_headers: Vec<String>,
}

impl Default for CsrfSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            required_headers: ["x-apollo-operation-name", "apollo-require-preflight"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The buckets' sizes; the `[rate_limit]` table of the config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Sustained requests per second per caller (`sub`).
    pub per_caller_per_sec: u32,
    /// Requests a caller may send at once after being idle.
    pub per_caller_burst: u32,
    /// Sustained failed authentications per second per client IP (IPv6: per /64).
    pub failed_auth_per_ip_per_sec: u32,
    /// Failed authentications a client IP may have at once after being quiet.
    pub failed_auth_per_ip_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_caller_per_sec: 200,
            per_caller_burst: 400,
            failed_auth_per_ip_per_sec: 20,
            failed_auth_per_ip_burst: 100,
        }
    }
}

/// The shape of the figment: optional where the value is required but has no default, so that
/// a missing one is reported by its environment name rather than by a serde path.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    listen_addr: Option<String>,
    mosia: RawMosia,
    totvs: RawTotvs,
    upstream: UpstreamSettings,
    cache: CacheSettings,
    server: ServerSettings,
    limits: LimitsSettings,
    auth: RawAuth,
    csrf: CsrfSettings,
    rate_limit: RateLimitSettings,
    redis: RedisSettings,
}

/// `AUTH_*`: who may call. Deploy-critical, so flat environment names.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAuth {
    jwt_secret: Option<Secret>,
    jwks_url: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    disabled: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMosia {
    base_url: Option<String>,
    token: Option<Secret>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTotvs {
    base_url: Option<String>,
    username: Option<Secret>,
    password: Option<Secret>,
}

const ENV_KEYS: [(&str, &str); 12] = [
    ("AUTH_JWT_SECRET", "auth.jwt_secret"),
    ("AUTH_JWKS_URL", "auth.jwks_url"),
    ("AUTH_ISSUER", "auth.issuer"),
    ("AUTH_AUDIENCE", "auth.audience"),
    ("AUTH_DISABLED", "auth.disabled"),
    ("LISTEN_ADDR", "listen_addr"),
    ("MOSIA_BASE_URL", "mosia.base_url"),
    ("MOSIA_TOKEN", "mosia.token"),
    ("TOTVS_BASE_URL", "totvs.base_url"),
    ("TOTVS_USERNAME", "totvs.username"),
    ("TOTVS_PASSWORD", "totvs.password"),
    ("REDIS_URL", "redis.url"),
];

pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";

impl Settings {
    /// Reads `CONFIG_FILE` (when set) and the flat environment variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let file = std::env::var_os("CONFIG_FILE").map(PathBuf::from);
        let mut figment = Figment::from(Serialized::defaults(RawSettings::default()));
        if let Some(path) = &file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.display().to_string(),
                    reason: "no such file".into(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let names: Vec<&str> = ENV_KEYS.iter().map(|(env, _)| *env).collect();
        figment = figment.merge(
            Env::raw()
                .only(&names)
                .map(|name| {
                    ENV_KEYS
                        .iter()
                        .find(|(env, _)| name == *env)
                        .map_or_else(|| name.into(), |(_, key)| (*key).into())
                })
                .split("."),
        );
        let raw: RawSettings = figment.extract().map_err(|err| ConfigError::File {
            path: file
                .as_ref()
                .map_or_else(|| "(environment)".into(), |p| p.display().to_string()),
            reason: err.to_string().replace('\n', " "),
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawSettings) -> Result<Self, ConfigError> {
        let listen_addr = raw
            .listen_addr
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN_ADDR)
            .parse()
            .map_err(|_| ConfigError::Invalid {
                name: "LISTEN_ADDR",
                reason: "expected an address like 0.0.0.0:8080".into(),
            })?;
        let settings = Self {
            listen_addr,
            mosia: MosiaSettings {
                base_url: base_url("MOSIA_BASE_URL", raw.mosia.base_url)?,
                token: secret("MOSIA_TOKEN", raw.mosia.token)?,
            },
            totvs: TotvsSettings {
                base_url: base_url("TOTVS_BASE_URL", raw.totvs.base_url)?,
                username: secret("TOTVS_USERNAME", raw.totvs.username)?,
                password: secret("TOTVS_PASSWORD", raw.totvs.password)?,
            },
            upstream: raw.upstream,
            cache: raw.cache,
            server: raw.server,
            limits: raw.limits,
            auth: auth_settings(raw.auth)?,
            csrf: raw.csrf,
            rate_limit: raw.rate_limit,
            redis: raw.redis.checked()?,
        };
        settings.rate_limit.validate()?;
        settings.csrf.header_names()?;
        settings.check_ranges()?;
        for origin in &settings.server.cors_allowed_origins {
            let valid = origin == "*"
                || Url::parse(origin).is_ok_and(|url| {
                    matches!(url.scheme(), "http" | "https")
                        && url.path() == "/"
                        && !origin.ends_with('/')
                });
            if !valid {
                return Err(ConfigError::Invalid {
                    name: "server.cors_allowed_origins",
                    reason: format!("{origin:?} is not an origin like https://app.example.com"),
                });
            }
        }
        Ok(settings)
    }

    /// Settings for the given upstream base URLs and credentials, with every default.
    pub fn for_upstreams(
        mosia_url: &str,
        mosia_token: &str,
        totvs_url: &str,
        totvs_username: &str,
        totvs_password: &str,
    ) -> Result<Self, ConfigError> {
        Self::from_raw(RawSettings {
            listen_addr: Some("127.0.0.1:0".into()),
            mosia: RawMosia {
                base_url: Some(mosia_url.into()),
                token: Some(Secret::new(mosia_token)),
            },
            totvs: RawTotvs {
                base_url: Some(totvs_url.into()),
                username: Some(Secret::new(totvs_username)),
                password: Some(Secret::new(totvs_password)),
            },
            // Callers are the tests and tools on this machine; `serve` reads AUTH_* instead.
            auth: RawAuth {
                disabled: Some("true".into()),
                ..RawAuth::default()
            },
            ..RawSettings::default()
        })
    }

    fn check_ranges(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, bool, &str); 8] = [
            (
                "upstream.timeout_ms",
                self.upstream.timeout_ms > 0,
                "must be greater than 0",
            ),
            (
                "upstream.max_concurrency",
                self.upstream.max_concurrency > 0,
                "must be greater than 0",
            ),
            (
                "upstream.get_retries",
                self.upstream.get_retries <= 2,
                "must be at most 2",
            ),
            (
                "cache.not_found_ttl_secs",
                self.cache.not_found_ttl_secs <= 5,
                "must be at most 5",
            ),
            (
                "server.max_body_bytes",
                self.server.max_body_bytes >= 1024,
                "must be at least 1024",
            ),
            (
                "server.max_depth",
                self.server.max_depth >= 4,
                "must be at least 4",
            ),
            (
                "limits.max_upstream_calls",
                (1..=10_000).contains(&self.limits.max_upstream_calls),
                "must be 1 to 10000",
            ),
            (
                "limits.request_timeout_ms",
                (100..=600_000).contains(&self.limits.request_timeout_ms),
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

fn auth_settings(raw: RawAuth) -> Result<AuthSettings, ConfigError> {
    let disabled = match raw.disabled.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return Err(ConfigError::Invalid {
                name: "AUTH_DISABLED",
                reason: "expected true or false".into(),
            });
        }
    };
    let jwks_url = raw
        .jwks_url
        .filter(|url| !url.trim().is_empty())
        .map(|url| {
            Url::parse(url.trim()).map_err(|_| ConfigError::Invalid {
                name: "AUTH_JWKS_URL",
                reason: "not an absolute URL".into(),
            })
        })
        .transpose()?;
    let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let settings = AuthSettings {
        jwt_secret: raw.jwt_secret.filter(|s| !s.expose().is_empty()),
        jwks_url,
        issuer: non_empty(raw.issuer),
        audience: non_empty(raw.audience),
        disabled,
    };
    if !settings.disabled && settings.jwt_secret.is_none() && settings.jwks_url.is_none() {
        return Err(ConfigError::Missing(
            "AUTH_JWT_SECRET or AUTH_JWKS_URL (or AUTH_DISABLED=true behind an authenticating proxy)",
        ));
    }
    Ok(settings)
}

fn secret(name: &'static str, value: Option<Secret>) -> Result<Secret, ConfigError> {
    match value {
        Some(secret) if !secret.expose().trim().is_empty() => Ok(secret),
        _ => Err(ConfigError::Missing(name)),
    }
}

fn base_url(name: &'static str, value: Option<String>) -> Result<Url, ConfigError> {
    let value = value
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(name))?;
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        reason: reason.into(),
    };
    let mut url = Url::parse(value.trim()).map_err(|_| invalid("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("expected an http(s) URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials do not belong in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("expected no query or fragment"));
    }
    // Paths are appended segment by segment, so the base must not end in an empty segment.
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

/// The log filter (`RUST_LOG` syntax), `info` when unset.
pub fn log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info,tower_http=warn".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every required setting present, every other one at its default.
    fn complete_raw() -> RawSettings {
        RawSettings {
            mosia: RawMosia {
                base_url: Some("http://m".into()),
                token: Some(Secret::new("t")),
            },
            totvs: RawTotvs {
                base_url: Some("http://t/rest".into()),
                username: Some(Secret::new("u")),
                password: Some(Secret::new("p")),
            },
            auth: RawAuth {
                disabled: Some("true".into()),
                ..RawAuth::default()
            },
            ..RawSettings::default()
        }
    }

    #[test]
    fn a_base_url_loses_its_trailing_slash() {
        let url = base_url("X", Some("https://host:8080/rest/".into())).unwrap();
        assert_eq!(url.as_str(), "https://host:8080/rest");
    }

    #[test]
    fn a_base_url_with_credentials_is_refused_by_name() {
        let err = base_url("TOTVS_BASE_URL", Some("https://u:p@host/rest".into())).unwrap_err();
        assert!(err.to_string().starts_with("TOTVS_BASE_URL is invalid"));
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        let settings = |origins: &[&str]| {
            let mut raw = complete_raw();
            raw.server.cors_allowed_origins = origins.iter().map(|o| o.to_string()).collect();
            Settings::from_raw(raw)
        };
        assert!(settings(&["https://app.example.com", "*"]).is_ok());
        let err = settings(&["https://app.example.com/path"]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("server.cors_allowed_origins is invalid")
        );
    }

    #[test]
    fn get_retries_above_two_are_refused_by_name() {
        let settings = |retries| {
            let mut raw = complete_raw();
            raw.upstream.get_retries = retries;
            Settings::from_raw(raw)
        };
        assert_eq!(settings(2).unwrap().upstream.get_retries, 2);
        let err = settings(3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "upstream.get_retries is invalid: must be at most 2"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
