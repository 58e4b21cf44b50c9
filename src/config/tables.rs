//! The optional tables of the config file (`[cache]`, `[server]`, `[limits]`,
//! `[persisted_queries]`, `[csrf]`, `[rate_limit]`) and the `AUTH_*` settings, each with its
//! defaults. `[upstream]` is in `upstream.rs`, the telemetry settings in `telemetry.rs`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::Secret;

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
    /// Keep whole responses of queries, served while every cached answer they were built from
    /// is (needs `enabled`).
    pub whole_responses: bool,
    /// Size bound of the whole-response cache, weighed by response size.
    pub whole_response_max_bytes: u64,
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
            whole_responses: true,
            whole_response_max_bytes: 16 * 1024 * 1024,
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
