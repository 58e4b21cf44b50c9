//! protocol-graph: one GraphQL endpoint (and Apollo Federation subgraph) over two health-plan
//! REST APIs, Mosia Omnichannel and TOTVS Health Plans.
//!
//! A tour, from the outside in:
//! - [`cli`]: the `serve`, `sandbox`, `schema` and `upstreams` commands `main` dispatches to.
//! - [`config`]: the typed settings; the only module that reads the environment.
//! - [`server`]: the axum app (`/graphql` GET and POST, GraphiQL, `/healthz`, `/readyz`,
//!   `/metrics`, CORS), built by [`server::Application::build`] for `main` and the tests alike.
//! - `graphql`: the schema, per-request DataLoaders and the driver that runs their batches,
//!   argument checks, error codes, response field order.
//! - `upstream`: the Mosia and TOTVS clients (wire types private to each), the TOTVS token
//!   manager, the shared moka cache and the mutation guard; with `REDIS_URL`, the fleet's
//!   Redis tier under them (`upstream::fleet`).
//! - [`auth`], [`csrf`], [`ratelimit`]: who the caller is and what it may touch, Apollo's CSRF
//!   rule, and the per-caller and failed-authentication token buckets.
//! - `model`: plain domain types (protocols, interactions, codes, dates) below both layers.
//! - [`metrics`]: counters of upstream calls and cache outcomes.
//! - [`sandbox`]: in-process fake upstreams speaking the documented HTTP and JSON.

pub mod auth;
pub mod cli;
pub mod config;
pub mod csrf;
pub(crate) mod gate;
pub(crate) mod graphql;
pub mod metrics;
pub(crate) mod model;
pub mod ratelimit;
pub mod sandbox;
pub mod server;
pub(crate) mod upstream;
pub use graphql::sdl;
