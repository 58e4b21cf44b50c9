//! Plain domain types that both the upstream clients and the GraphQL layer use: service
//! protocols (Mosia), authorization protocols and their interactions (TOTVS), codes and dates.
//!
//! Nothing here knows GraphQL or HTTP. Clients decode wire JSON into these types; the
//! `graphql` layer exposes them. Keeping them apart is what lets a client change its wire
//! types without touching the schema, and the schema change without touching a client.
//!
//! The types are serde-serializable because the fleet's Redis tier stores decoded answers;
//! that encoding is the gateway's own (never an upstream's wire format), versioned by the
//! Redis key prefix.

mod authorization;
mod service;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use authorization::{
    AuthorizationProtocol, AuthorizationProtocolPage, AuthorizationRequest, AuthorizationStatus,
    AuthorizationType, Interaction, InteractionPage, InteractionQuery, Professional, ProtocolQuery,
};
#[cfg(test)]
pub(crate) use service::sample_protocols;
pub use service::{Code, Person, ServiceProtocol, newest_of, strip_key_suffix};

/// Which upstream a call, an error or a metric belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    Mosia,
    Totvs,
}

impl Service {
    /// The lowercase name used in `extensions.service`, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Mosia => "mosia",
            Service::Totvs => "totvs",
        }
    }
    fn display_name(self) -> &'static str {
        match self {
            Service::Mosia => "Mosia",
            Service::Totvs => "TOTVS",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}
