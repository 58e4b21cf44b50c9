//! Black-box tests of protocol-graph over real HTTP, against wiremock fakes of Mosia and TOTVS
//! and against the sandbox.

mod access;
mod batching;
mod errors;
mod fleet;
mod helpers;
mod http;
mod mutations;
mod reads;
