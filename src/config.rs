//! The typed settings, and the only module that reads the environment.
//!
//! Deploy-critical settings come from flat environment variables (`LISTEN_ADDR`, `MOSIA_BASE_URL`,
//! `MOSIA_TOKEN`, `TOTVS_BASE_URL`, `TOTVS_USERNAME`, `TOTVS_PASSWORD`); everything else has a
//! default and may be overridden by the TOML file named by `CONFIG_FILE`. Environment variables
//! win over the file. A missing or malformed setting is one [`ConfigError`] whose message names it.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use url::Url;

mod upstream;
pub use upstream::UpstreamSettings;
mod telemetry;
pub use telemetry::TelemetrySettings;

/// Why the settings could not be read. The message is one line that names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error(
        "{} not set (to try the gateway without real upstreams: protocol-graph sandbox)",
        list_missing(.0)
    )]
    MissingSeveral(Vec<&'static str>),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("CONFIG_FILE {path}: {reason}")]
    File { path: String, reason: String },
}

fn list_missing(names: &[&str]) -> String {
    match names {
        [one] => format!("{one} is"),
        names => format!("{} are", names.join(", ")),
    }
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
    pub persisted_queries: PersistedQueriesSettings,
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
    /// Allow introspection and serve GraphiQL. Off by default under `serve`: the schema of a
    /// health-data API is not for every visitor (the federation `_service` field stays, for
    /// routers). With it off, validation errors do not suggest field names either.
    pub introspection: bool,
    /// The old name of `introspection`, refused with a line naming the new one.
    #[serde(default, skip_serializing)]
    pub graphiql: Option<serde::de::IgnoredAny>,
    /// Browser origins allowed to call `/graphql` (CORS), e.g. `["https://app.example.com"]`;
    /// empty sends no CORS headers, `["*"]` allows any origin.
    pub cors_allowed_origins: Vec<String>,
    /// After a shutdown signal, how long `/readyz` answers 503 while requests are still served,
    /// before new connections are refused: the time a load balancer needs to notice.
    pub drain_delay_ms: u64,
    /// Headers GraphiQL opens with (the sandbox's staff token); never from the config file.
    #[serde(skip)]
    pub graphiql_headers: Option<String>,
    /// A request head (request line and headers) must arrive whole within this many
    /// milliseconds of the connection's opening, or of its first byte on a kept-alive one.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight is closed after this many milliseconds.
    pub idle_timeout_ms: u64,
    /// Most connections open at once; past it new ones wait in the listen backlog. Lowered at
    /// start to 3/4 of the file-descriptor limit when that is smaller.
    pub max_connections: usize,
    /// On shutdown, requests in flight get this many milliseconds to finish before the
    /// remaining connections are closed.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_depth: 32,
            max_complexity: 5_000,
            introspection: false,
            graphiql: None,
            cors_allowed_origins: Vec::new(),
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 16_384,
            shutdown_grace_ms: 30_000,
            drain_delay_ms: 0,
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

/// Persisted queries; the `[persisted_queries]` table of the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersistedQueriesSettings {
    /// Apollo's automatic persisted queries (a hash instead of the document).
    pub enabled: bool,
    /// Bound of the registered documents, in bytes.
    pub max_bytes: u64,
    /// A manifest in Apollo's persisted-query manifest format: when set, only its operations
    /// run (safelist mode), by id or by identical body.
    pub safelist: Option<String>,
}

impl Default for PersistedQueriesSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 16 * 1024 * 1024,
            safelist: None,
        }
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

/// Where `protocol-graph health` probes: `LISTEN_ADDR` (an unspecified address such as
/// `0.0.0.0` means this host's loopback), else the default.
pub fn health_addr() -> SocketAddr {
    let mut addr: SocketAddr = std::env::var("LISTEN_ADDR")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            DEFAULT_LISTEN_ADDR
                .parse()
                .expect("the default address parses")
        });
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
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
    persisted_queries: PersistedQueriesSettings,
}

/// `AUTH_*`: who may call. Deploy-critical, so flat environment names.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAuth {
    jwt_secret: Option<Secret>,
    jwks_url: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    #[serde(deserialize_with = "text_or_scalar")]
    disabled: Option<String>,
}

/// A setting read as text whatever its spelling: figment's environment provider turns
/// `AUTH_DISABLED=true` into a bool and `=1` into a number before serde sees it.
fn text_or_scalar<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Flag(bool),
        Signed(i64),
        Unsigned(u64),
    }
    Ok(
        Option::<Scalar>::deserialize(deserializer)?.map(|scalar| match scalar {
            Scalar::Text(text) => text,
            Scalar::Flag(flag) => flag.to_string(),
            Scalar::Signed(n) => n.to_string(),
            Scalar::Unsigned(n) => n.to_string(),
        }),
    )
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

/// The one variable the sandbox reads (beside `CONFIG_FILE`): where to listen.
const SANDBOX_ENV_KEYS: [(&str, &str); 1] = [("LISTEN_ADDR", "listen_addr")];

const ENV_KEYS: [(&str, &str); 11] = [
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
];

pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";

impl Settings {
    /// Reads `CONFIG_FILE` (when set) and the flat environment variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_raw(read_figment(RawSettings::default(), &ENV_KEYS)?)
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
        // Every missing deploy-critical setting at once: one run of `serve` tells a newcomer
        // all that is needed, not one variable per try.
        let auth_missing = !raw
            .auth
            .disabled
            .as_deref()
            .is_some_and(|d| d.trim() == "true" || d.trim() == "1")
            && raw
                .auth
                .jwt_secret
                .as_ref()
                .is_none_or(|s| s.expose().is_empty())
            && raw
                .auth
                .jwks_url
                .as_deref()
                .is_none_or(|u| u.trim().is_empty());
        let missing: Vec<&'static str> = [
            (
                "MOSIA_BASE_URL",
                raw.mosia
                    .base_url
                    .as_deref()
                    .is_none_or(|v| v.trim().is_empty()),
            ),
            (
                "MOSIA_TOKEN",
                raw.mosia
                    .token
                    .as_ref()
                    .is_none_or(|v| v.expose().trim().is_empty()),
            ),
            (
                "TOTVS_BASE_URL",
                raw.totvs
                    .base_url
                    .as_deref()
                    .is_none_or(|v| v.trim().is_empty()),
            ),
            (
                "TOTVS_USERNAME",
                raw.totvs
                    .username
                    .as_ref()
                    .is_none_or(|v| v.expose().trim().is_empty()),
            ),
            (
                "TOTVS_PASSWORD",
                raw.totvs
                    .password
                    .as_ref()
                    .is_none_or(|v| v.expose().trim().is_empty()),
            ),
            (
                "AUTH_JWT_SECRET or AUTH_JWKS_URL (or AUTH_DISABLED=true)",
                auth_missing,
            ),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
        if missing.len() > 1 {
            return Err(ConfigError::MissingSeveral(missing));
        }
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
            persisted_queries: raw.persisted_queries,
        };
        settings.rate_limit.validate()?;
        settings.csrf.header_names()?;
        if settings.server.graphiql.is_some() {
            return Err(ConfigError::Invalid {
                name: "server.graphiql",
                reason: "renamed: use server.introspection".into(),
            });
        }
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
        Self::from_raw(Self::raw_for_upstreams(
            mosia_url,
            mosia_token,
            totvs_url,
            totvs_username,
            totvs_password,
        ))
    }

    /// The sandbox's settings: those of [`Self::for_upstreams`] with any browser origin allowed
    /// (a frontend dev server on another port calls it), then `CONFIG_FILE` when set (so the
    /// sandbox can be tuned like `serve`), then `LISTEN_ADDR` when set (the Docker image sets
    /// `0.0.0.0:8080`). `listen` from the command line wins over all.
    pub fn for_sandbox(
        mosia_url: &str,
        totvs_url: &str,
        credentials: (&str, &str, &str),
        listen: Option<SocketAddr>,
    ) -> Result<Self, ConfigError> {
        let (mosia_token, username, password) = credentials;
        let mut defaults =
            Self::raw_for_upstreams(mosia_url, mosia_token, totvs_url, username, password);
        defaults.listen_addr = Some(DEFAULT_LISTEN_ADDR.into());
        defaults.server.cors_allowed_origins = vec!["*".into()];
        let mut raw = read_figment(defaults, &SANDBOX_ENV_KEYS)?;
        if let Some(listen) = listen {
            raw.listen_addr = Some(listen.to_string());
        }
        Self::from_raw(raw)
    }

    fn raw_for_upstreams(
        mosia_url: &str,
        mosia_token: &str,
        totvs_url: &str,
        totvs_username: &str,
        totvs_password: &str,
    ) -> RawSettings {
        RawSettings {
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
            // Development tools (sandbox, tests, benchmark) explore the schema; `serve` does not
            // unless told to.
            server: ServerSettings {
                introspection: true,
                ..ServerSettings::default()
            },
            // Callers are the tests and tools on this machine; `serve` reads AUTH_* instead.
            auth: RawAuth {
                disabled: Some("true".into()),
                ..RawAuth::default()
            },
            ..RawSettings::default()
        }
    }

    /// Every number in range, or one error naming the first setting that is not: no value can
    /// panic the process (a TTL of 9.2e18 s once panicked moka) or silently switch a feature
    /// off (`max_bytes = 0` once disabled the cache; `cache.enabled = false` is the way).
    fn check_ranges(&self) -> Result<(), ConfigError> {
        // The upstream table checks its own keys first (config/upstream.rs).
        self.upstream.check()?;
        const DAY: u64 = 86_400;
        const MIB: u64 = 1024 * 1024;
        let (u, c, s, l) = (&self.upstream, &self.cache, &self.server, &self.limits);
        let int = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let checks: [(&'static str, u64, u64, u64, &str); 24] = [
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

/// `defaults`, then the TOML file named by `CONFIG_FILE`, then the flat environment variables of
/// `env_keys`.
fn read_figment(
    defaults: RawSettings,
    env_keys: &'static [(&'static str, &'static str)],
) -> Result<RawSettings, ConfigError> {
    let file = std::env::var_os("CONFIG_FILE").map(PathBuf::from);
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = &file {
        if !path.is_file() {
            return Err(ConfigError::File {
                path: path.display().to_string(),
                reason: "no such file".into(),
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let names: Vec<&str> = env_keys.iter().map(|(env, _)| *env).collect();
    figment = figment.merge(
        Env::raw()
            .only(&names)
            .map(|name| {
                env_keys
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
    Ok(raw)
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
        // Secrets travel in HTTP headers and query strings: a newline or another control
        // character was once sent as an empty header, silently.
        Some(secret) if secret.expose().chars().any(char::is_control) => {
            Err(ConfigError::Invalid {
                name,
                reason: "contains a control character (a newline?)".into(),
            })
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_disabled_reads_as_the_environment_provider_types_it() {
        let disabled = |value: figment::value::Value| {
            let raw: RawSettings = Figment::from(Serialized::defaults(complete_raw()))
                .merge(("auth.disabled", value))
                .extract()
                .unwrap();
            auth_settings(raw.auth).map(|auth| auth.disabled)
        };
        assert!(disabled(true.into()).unwrap());
        assert!(disabled(1u8.into()).unwrap());
        assert!(disabled("true".into()).unwrap());
        // Not disabled, and no key configured: refused for want of one.
        let enabled = disabled(false.into()).unwrap_err().to_string();
        assert!(enabled.contains("AUTH_JWT_SECRET"), "{enabled}");
        let unreadable = disabled("maybe".into()).unwrap_err().to_string();
        assert!(unreadable.starts_with("AUTH_DISABLED"), "{unreadable}");
    }

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
    fn numbers_that_would_panic_or_switch_a_feature_off_are_refused_by_name() {
        let refused = |tweak: fn(&mut RawSettings)| {
            let mut raw = complete_raw();
            tweak(&mut raw);
            Settings::from_raw(raw).unwrap_err().to_string()
        };
        assert!(
            refused(|r| r.cache.mosia_ttl_secs = 9_200_000_000_000_000_000)
                .starts_with("cache.mosia_ttl_secs is invalid")
        );
        assert_eq!(
            refused(|r| r.cache.max_bytes = 0),
            "cache.max_bytes is invalid: must be between 1048576 and 68719476736; to turn the cache off set cache.enabled = false"
        );
        assert!(refused(|r| r.server.max_complexity = 0).starts_with("server.max_complexity"));
        assert!(
            refused(|r| r.upstream.retry_backoff_ms = u64::MAX)
                .starts_with("upstream.retry_backoff_ms")
        );
        assert!(refused(|r| r.limits.request_timeout_ms = 1_000).starts_with(
            "limits.request_timeout_ms is invalid: must be at least 5000 (at least upstream.timeout_ms)"
        ));
        assert_eq!(
            refused(|r| r.mosia.token = Some(Secret::new("token\n"))),
            "MOSIA_TOKEN is invalid: contains a control character (a newline?)"
        );
    }

    #[test]
    fn every_missing_setting_is_named_at_once_with_a_pointer_to_the_sandbox() {
        let err = Settings::from_raw(RawSettings::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "MOSIA_BASE_URL, MOSIA_TOKEN, TOTVS_BASE_URL, TOTVS_USERNAME, TOTVS_PASSWORD, \
             AUTH_JWT_SECRET or AUTH_JWKS_URL (or AUTH_DISABLED=true) are not set \
             (to try the gateway without real upstreams: protocol-graph sandbox)"
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
    fn connection_bounds_are_range_checked_by_name() {
        let settings = |tweak: fn(&mut ServerSettings)| {
            let mut raw = complete_raw();
            tweak(&mut raw.server);
            Settings::from_raw(raw)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(settings(|_| {}), Ok(()));
        let refused = [
            settings(|s| s.header_read_timeout_ms = 99),
            settings(|s| s.idle_timeout_ms = 3_600_001),
            settings(|s| s.max_connections = 0),
            settings(|s| s.shutdown_grace_ms = 600_001),
        ];
        let names = [
            "server.header_read_timeout_ms is invalid",
            "server.idle_timeout_ms is invalid",
            "server.max_connections is invalid",
            "server.shutdown_grace_ms is invalid",
        ];
        for (result, name) in refused.into_iter().zip(names) {
            assert!(result.as_ref().unwrap_err().starts_with(name), "{result:?}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
