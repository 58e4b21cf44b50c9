//! protocol-graph: one GraphQL endpoint (and Apollo Federation subgraph) over two health-plan
//! REST APIs, Mosia Omnichannel and TOTVS Health Plans.
//!
//! A tour, from the outside in:
//! - [`cli`]: the `serve`, `sandbox`, `schema` and `upstreams` commands `main` dispatches to.
//! - [`config`]: the typed settings; the only module that reads the environment.
//! - [`server`]: the axum app (`/graphql` GET and POST, GraphiQL, `/healthz`, `/readyz`,
//!   `/metrics`, CORS), built by [`server::Application::build`] for `main` and the tests alike.
//! - `media`, `params`: GraphQL over HTTP: the media type of the answer (`Accept`), the JSON
//!   body a POST must be, and the request parameters checked before anything runs.
//! - `graphiql`: the GraphiQL page and its vendored files.
//! - `connections`: the accept loop under the server: request-head and idle deadlines, the
//!   connection cap, and a graceful shutdown bounded by a grace period.
//! - `graphql`: the schema, per-request DataLoaders and the driver that runs their batches,
//!   argument checks, error codes, response field order.
//! - `upstream`: the Mosia and TOTVS clients (wire types private to each), the TOTVS token
//!   manager, the shared moka cache and the mutation guard; with `REDIS_URL`, the fleet's
//!   Redis tier under them (`upstream::fleet`).
//! - [`auth`], [`csrf`], [`ratelimit`]: who the caller is and what it may touch, Apollo's CSRF
//!   rule, and the per-caller and failed-authentication token buckets.
//! - `model`: plain domain types (protocols, interactions, codes, dates) below both layers.
//! - [`metrics`]: the Prometheus registry: request and upstream call durations, upstream calls,
//!   cache outcomes and size, refusals, breaker states.
//! - [`telemetry`]: JSON or readable logs, OpenTelemetry traces over OTLP, request ids;
//!   `logformat`: the JSON shape of a line, written in one pass; `logqueue`: the non-blocking
//!   writer under the logs, many lines per write.
//! - `readiness`: what `/readyz` answers.
//! - [`sandbox`]: in-process fake upstreams speaking the documented HTTP and JSON.

pub mod auth;
pub mod cli;
pub mod config;
pub(crate) mod connections;
pub mod csrf;
pub(crate) mod gate;
pub(crate) mod graphiql;
pub(crate) mod graphql;
pub(crate) mod logformat;
pub(crate) mod logqueue;
pub(crate) mod media;
pub mod metrics;
pub(crate) mod model;
pub(crate) mod params;
pub mod ratelimit;
pub(crate) mod readiness;
pub mod sandbox;
pub mod server;
pub mod telemetry;
pub(crate) mod upstream;
pub use graphql::{persisted::sha256_hex as persisted_query_hash, sdl};
