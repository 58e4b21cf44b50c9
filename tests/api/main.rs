//! Black-box tests of protocol-graph over real HTTP, against wiremock fakes of Mosia and TOTVS
//! and against the sandbox.

mod access;
mod batching;
mod bounds;
mod conformance;
mod connections;
mod errors;
mod fleet;
mod helpers;
mod hostile;
mod http;
mod metrics;
mod mutations;
mod readiness;
mod reads;
mod telemetry;
mod whole_responses;
