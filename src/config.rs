//! The typed settings, and the only module that reads the environment.
//!
//! Deploy-critical settings come from flat environment variables (`LISTEN_ADDR`, `MOSIA_BASE_URL`,
//! `MOSIA_TOKEN`, `TOTVS_BASE_URL`, `TOTVS_USERNAME`, `TOTVS_PASSWORD`); everything else has a
//! default and may be overridden by the TOML file named by `CONFIG_FILE`. Environment variables
//! win over the file. A missing or malformed setting is one [`ConfigError`] whose message names it.
//! `REDIS_URL` (optional) lets replicas share a Redis tier; see [`RedisSettings`].

mod fleet;

use std::{fmt, net::SocketAddr, path::PathBuf};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use url::Url;

mod ranges;
mod tables;
mod upstream;
pub use tables::{
    AuthSettings, CacheSettings, CsrfSettings, LimitsSettings, PersistedQueriesSettings,
    RateLimitSettings, ServerSettings,
};
pub use upstream::UpstreamSettings;
mod telemetry;
pub use fleet::RedisSettings;
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
            redis: raw.redis.checked()?,
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
mod tests;
