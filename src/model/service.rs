//! Mosia's service protocols (atendimentos) and the people on them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A service protocol opened with the health plan's customer service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceProtocol {
    pub number: String,
    pub occurrence_type: Code,
    pub status: Code,
    pub subject: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub beneficiary: Person,
    pub requester: Person,
}

/// A code from the upstream's own tables, with its description in Portuguese.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    pub id: i32,
    pub description: String,
}

/// A person as Mosia names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Without the `" - <uniqueKey>"` suffix Mosia sometimes appends.
    pub name: String,
    pub unique_key: String,
}

/// Mosia sometimes sends a name as `"<name> - <chaveUnica>"`; the key is not part of the name.
pub fn strip_key_suffix<'a>(name: &'a str, unique_key: &str) -> &'a str {
    let name = name.trim();
    name.strip_suffix(unique_key)
        .map(str::trim_end)
        .and_then(|rest| rest.strip_suffix('-'))
        .map(str::trim_end)
        .filter(|rest| !rest.is_empty())
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::strip_key_suffix;

    #[test]
    fn the_unique_key_suffix_is_dropped_from_names() {
        assert_eq!(
            strip_key_suffix("Patrick Oliveira Cabral - 13331584754", "13331584754"),
            "Patrick Oliveira Cabral"
        );
        assert_eq!(
            strip_key_suffix("Patrick Oliveira Cabral", "13331584754"),
            "Patrick Oliveira Cabral"
        );
        // Only the beneficiary's own key is a suffix to drop.
        assert_eq!(strip_key_suffix("Ana - 999", "13331584754"), "Ana - 999");
    }
}
