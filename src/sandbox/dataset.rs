//! The people of the dataset, shared by both fake upstreams (see the table in the module doc).

use super::SandboxBeneficiary;

pub(super) const BENEFICIARIES: &[SandboxBeneficiary] = &[
    person(
        Some("13331584754"),
        Some("00011008000031015"),
        "Patrick Oliveira Cabral",
    ),
    person(
        Some("28476190350"),
        Some("00011008000027010"),
        "Hernandes Alves da Silva",
    ),
    person(
        Some("45120987611"),
        Some("00011008000045002"),
        "Maria Aparecida Souza",
    ),
    person(
        Some("73019845620"),
        Some("00011008000045100"),
        "João Pedro Souza",
    ),
    person(
        Some("61234598702"),
        Some("00020015000112003"),
        "Ana Clara Ferreira Lima",
    ),
    person(Some("39857120466"), None, "Roberto Nunes Prado"),
    person(None, Some("00020015000198016"), "Carlos Eduardo Mendes"),
];

const fn person(
    unique_key: Option<&'static str>,
    subscriber_id: Option<&'static str>,
    name: &'static str,
) -> SandboxBeneficiary {
    SandboxBeneficiary {
        unique_key,
        subscriber_id,
        name,
    }
}

pub(super) fn beneficiary_by_key(unique_key: &str) -> Option<&'static SandboxBeneficiary> {
    BENEFICIARIES
        .iter()
        .find(|b| b.unique_key == Some(unique_key))
}
