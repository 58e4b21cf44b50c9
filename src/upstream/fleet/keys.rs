//! Redis key names: a fixed prefix, a kind, and a digest of what the key is about, so that
//! no personal identifier appears in a key (values still hold personal health data).

use sha2::{Digest, Sha256};

/// Bumped when the stored encoding changes, so that replicas of two versions never read each
/// other's values.
const PREFIX: &str = "pg:v1:";

pub(super) const EPOCH: &str = "pg:v1:epoch";

/// What a mutation changed; the version (mark) readers compare their entries against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Mark {
    /// A subscriber's protocol lists.
    Subscriber(String),
    /// A protocol: its interactions and every list that shows it.
    Protocol(String),
}

impl Mark {
    pub(super) fn key(&self) -> String {
        match self {
            Mark::Subscriber(id) => key("mark:s", id.as_bytes()),
            Mark::Protocol(id) => key("mark:p", id.as_bytes()),
        }
    }
}

/// `pg:v1:<kind>:<128 bits of SHA-256 over kind and material>`.
pub(super) fn key(kind: &str, material: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update([0]);
    hasher.update(material);
    let digest = hasher.finalize();
    let mut name = String::with_capacity(PREFIX.len() + kind.len() + 33);
    name.push_str(PREFIX);
    name.push_str(kind);
    name.push(':');
    for byte in &digest[..16] {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}
