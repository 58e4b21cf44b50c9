//! Mosia's service protocols (atendimentos) and the people on them.

use std::sync::Arc;

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

/// The answer for `limit` taken from Mosia's answer for `answered`, when it holds it.
///
/// Mosia answers newest first, so its answer for a limit starts with its answer for every
/// smaller one: the answer for `limit <= answered` is the first `limit` items. Every reuse of
/// an answer for another limit (one request's loads, the cache across requests) goes through
/// here, so the rule has one home.
pub fn newest_of(
    answer: &Arc<Vec<ServiceProtocol>>,
    answered: u8,
    limit: u8,
) -> Option<Arc<Vec<ServiceProtocol>>> {
    if limit > answered {
        return None;
    }
    let limit = usize::from(limit);
    Some(if answer.len() > limit {
        Arc::new(answer[..limit].to_vec())
    } else {
        answer.clone()
    })
}

#[cfg(test)]
/// `count` protocols, newest first, as Mosia would answer them.
pub(crate) fn sample_protocols(count: usize) -> Vec<ServiceProtocol> {
    let person = Person {
        name: "HERNANDES".into(),
        unique_key: "13331584754".into(),
    };
    let code = Code {
        id: 1,
        description: "Aberto".into(),
    };
    (0..count)
        .map(|i| ServiceProtocol {
            number: format!("p{i}"),
            occurrence_type: code.clone(),
            status: code.clone(),
            subject: None,
            registered_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: None,
            beneficiary: person.clone(),
            requester: person.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_answer_for_a_limit_serves_a_smaller_one_as_its_first_items() {
        let ten = Arc::new(sample_protocols(10));

        let three = newest_of(&ten, 10, 3).unwrap();

        assert_eq!(*three, ten[..3]);
    }

    #[test]
    fn a_short_answer_serves_a_smaller_limit_whole() {
        let two = Arc::new(sample_protocols(2));

        assert!(Arc::ptr_eq(&newest_of(&two, 10, 5).unwrap(), &two));
    }

    #[test]
    fn an_answer_never_serves_a_larger_limit() {
        let three = Arc::new(sample_protocols(3));

        assert_eq!(newest_of(&three, 3, 5), None);
        assert_eq!(*newest_of(&three, 3, 3).unwrap(), *three);
    }
}
