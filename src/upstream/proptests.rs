//! Every decoder of upstream answers, fed arbitrary JSON: whatever an upstream sends, decoding
//! answers a value or an error, never a panic, and what it answers keeps the bounds the
//! gateway promises (page sizes, the beneficiary asked for, token lifetimes).
//!
//! Wholly arbitrary JSON rarely gets past the first type check, so each decoder is also fed
//! its documented shape with every field's value arbitrary.

use std::time::{Duration, Instant};

use proptest::{collection::vec, prelude::*};
use serde_json::{Map, Value};

use super::{
    decode, mosia,
    totvs::{self, token},
};

const CASES: u32 = 256;
const UNIQUE_KEY: &str = "13331584754";
const SUBSCRIBER: &str = "00011008000027010";

/// Text as upstreams send it, and as they should not: numbers, dates, empty, control
/// characters, any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "-?[0-9]{0,25}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9:.]{0,12})?",
        "[0-9]{1,2}/[0-9]{1,2}/[0-9]{1,5}",
        "[0-9]{8}",
        Just(String::new()),
        Just(UNIQUE_KEY.to_owned()),
        Just(SUBSCRIBER.to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("-9223372036854775808".to_owned()),
    ]
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON numbers are finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        text().prop_map(Value::from),
    ]
    .boxed()
}

/// Any JSON value, its object keys often ones a decoder looks for.
fn json() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..8).prop_map(Value::Array),
                vec((key(), inner), 0..8)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
        .boxed()
}

const KEYS: &[&str] = &[
    // Mosia
    "status",
    "data",
    "message",
    "protocolo",
    "tipoOcorrencia",
    "id",
    "descricao",
    "data_registro",
    "data_atualizacao",
    "assunto",
    "beneficiario",
    "solicitante",
    "nome",
    "chaveUnica",
    // TOTVS
    "items",
    "hasNext",
    "remainingRecords",
    "protocol",
    "subscriberId",
    "subscriber-_id",
    "name",
    "authType",
    "solicitationDate",
    "analysisDate",
    "professionalName",
    "idOnHealthInsurer",
    "sector",
    "interactionDate",
    "defaultReason",
    "observation",
    "code",
    "detailedMessage",
    "helpUrl",
    "details",
    // the token
    "access_token",
    "refresh_token",
    "expires_in",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// An object with some of `keys`, each holding any value `value` makes.
fn shaped(
    keys: &'static [&'static str],
    value: impl Strategy<Value = Value> + Clone,
) -> impl Strategy<Value = Map<String, Value>> {
    keys.iter()
        .map(|key| proptest::option::of(value.clone()).prop_map(move |v| (*key, v)))
        .collect::<Vec<_>>()
        .prop_map(|fields| {
            fields
                .into_iter()
                .filter_map(|(key, value)| Some((key.to_owned(), value?)))
                .collect()
        })
}

fn mosia_person() -> impl Strategy<Value = Value> {
    prop_oneof![
        shaped(&["nome", "chaveUnica"], json()).prop_map(Value::Object),
        (text(), prop_oneof![Just(UNIQUE_KEY.to_owned()), text()])
            .prop_map(|(nome, key)| serde_json::json!({"nome": nome, "chaveUnica": key})),
    ]
}

fn mosia_code() -> impl Strategy<Value = Value> {
    prop_oneof![
        json(),
        (leaf(), leaf())
            .prop_map(|(id, descricao)| serde_json::json!({"id": id, "descricao": descricao})),
    ]
}

/// A documented protocol of `UNIQUE_KEY` or of someone else, with up to three of its fields
/// replaced by anything: most decode, so the bounds on what decodes are exercised too.
fn mosia_protocol() -> impl Strategy<Value = Value> {
    const FIELDS: &[&str] = &[
        "protocolo",
        "tipoOcorrencia",
        "data_registro",
        "data_atualizacao",
        "status",
        "assunto",
        "beneficiario",
        "solicitante",
    ];
    let replacement = prop_oneof![leaf(), json(), mosia_code(), mosia_person()];
    (
        prop_oneof![Just(UNIQUE_KEY), Just("99988877766")],
        vec((proptest::sample::select(FIELDS), replacement), 0..3),
    )
        .prop_map(|(key, replacements)| {
            let person = serde_json::json!({"nome": format!("Fulano - {key}"), "chaveUnica": key});
            let mut protocol = serde_json::json!({
                "protocolo": "1111120240710000017",
                "tipoOcorrencia": {"id": 171, "descricao": "Atendimento Ativo"},
                "data_registro": "1720625728313",
                "data_atualizacao": "1720625728896",
                "status": {"id": 386, "descricao": "Em Atendimento"},
                "assunto": null,
                "beneficiario": person,
                "solicitante": person,
            });
            for (field, value) in replacements {
                protocol[field] = value;
            }
            protocol
        })
}

fn mosia_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        json(),
        (
            prop_oneof![3 => Just(Value::Bool(true)), 1 => leaf()],
            prop_oneof![3 => vec(mosia_protocol(), 0..14).prop_map(Value::Array), 1 => json()],
            leaf(),
        )
            .prop_map(|(status, data, status_code)| {
                serde_json::json!({"status": status, "data": data, "statusCode": status_code})
            }),
    ]
}

const PROTOCOL_KEYS: &[&str] = &[
    "protocol",
    "subscriberId",
    "subscriber-_id",
    "name",
    "status",
    "authType",
    "solicitationDate",
    "analysisDate",
    "professionalName",
    "professionalCouncil",
    "idOnHealthInsurer",
];
const INTERACTION_KEYS: &[&str] = &[
    "sector",
    "name",
    "interactionDate",
    "defaultReason",
    "observation",
];

fn totvs_page(item_keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let item = prop_oneof![
        3 => shaped(item_keys, leaf()).prop_map(Value::Object),
        1 => json(),
    ];
    prop_oneof![
        json(),
        (
            prop_oneof![3 => vec(item, 0..12).prop_map(Value::Array), 1 => json()],
            leaf(),
            leaf(),
        )
            .prop_map(|(items, has_next, remaining)| {
                serde_json::json!({"items": items, "hasNext": has_next, "remainingRecords": remaining})
            }),
    ]
}

fn totvs_fault() -> impl Strategy<Value = Value> {
    let detail = prop_oneof![
        shaped(&["code", "message", "detailedMessage"], leaf()).prop_map(Value::Object),
        json(),
    ];
    prop_oneof![
        json(),
        (
            shaped(&["code", "message", "detailedMessage", "helpUrl"], leaf()),
            prop_oneof![vec(detail, 0..6).prop_map(Value::Array), json()],
        )
            .prop_map(|(mut fault, details)| {
                fault.insert("details".into(), details);
                Value::Object(fault)
            }),
    ]
}

fn token_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        json(),
        (text(), leaf(), leaf()).prop_map(|(access, refresh, expires_in)| {
            serde_json::json!({
                "access_token": access, "refresh_token": refresh,
                "token_type": "Bearer", "expires_in": expires_in
            })
        }),
    ]
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value serializes")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn mosia_answers_decode_to_at_most_the_limit_and_only_the_beneficiary_asked_for(
        body in mosia_body(),
        limit in 1..=mosia::MAX_LIMIT,
    ) {
        if let Ok(latest) = mosia::decode_latest(&bytes(&body), UNIQUE_KEY, limit) {
            prop_assert!(latest.protocols.len() <= usize::from(limit));
            prop_assert!(latest.protocols.iter().all(|p| p.beneficiary.unique_key == UNIQUE_KEY));
        }
    }

    #[test]
    fn totvs_protocol_pages_decode_to_at_most_the_page_size(
        body in totvs_page(PROTOCOL_KEYS),
        page_size in prop_oneof![1..=100u32, Just(u32::MAX)],
    ) {
        let decoded = totvs::page_from(&bytes(&body), page_size, |item| {
            totvs::protocol_from(item, Some(SUBSCRIBER))
        });
        if let Ok((page, _)) = decoded {
            prop_assert!(page.items.len() <= usize::try_from(page_size).unwrap_or(usize::MAX));
            prop_assert!(page.remaining_records >= 0);
            let (own, foreign) = totvs::own_items(page.items, SUBSCRIBER);
            prop_assert!(own.iter().all(|p| p.subscriber_id == SUBSCRIBER));
            prop_assert!(foreign <= 12);
        }
    }

    #[test]
    fn totvs_interaction_pages_decode_to_at_most_the_page_size(
        body in totvs_page(INTERACTION_KEYS),
        page_size in 1..=100u32,
    ) {
        if let Ok((page, _)) = totvs::page_from(&bytes(&body), page_size, totvs::interaction_from) {
            prop_assert!(page.items.len() <= usize::try_from(page_size).unwrap_or(usize::MAX));
            prop_assert!(page.remaining_records >= 0);
        }
    }

    #[test]
    fn a_totvs_protocol_decodes_from_any_object(
        item in prop_oneof![shaped(PROTOCOL_KEYS, leaf()), shaped(PROTOCOL_KEYS, json())],
    ) {
        let _ = totvs::protocol_from(item, None);
    }

    #[test]
    fn a_totvs_fault_decodes_from_any_body(body in totvs_fault()) {
        let _ = decode::fault(&bytes(&body));
    }

    #[test]
    fn a_token_answer_decodes_from_any_body_to_a_bounded_lifetime(
        body in token_body(),
        margin_secs in any::<u64>(),
    ) {
        let now = Instant::now();
        let expires_in = token::decode_token(&bytes(&body)).and_then(|dto| dto.expires_in);
        let (renew_at, refresh_until) =
            token::schedule(now, expires_in, Duration::from_secs(margin_secs));
        prop_assert!(renew_at > now);
        prop_assert!(renew_at <= refresh_until);
        prop_assert!(refresh_until <= now + Duration::from_secs(24 * 3600));
    }

    #[test]
    fn no_decoder_panics_on_any_bytes(body in vec(any::<u8>(), 0..256)) {
        let _ = mosia::decode_latest(&body, UNIQUE_KEY, 10);
        let _ = totvs::page_from(&body, 20, totvs::interaction_from);
        let _ = totvs::page_from(&body, 20, |item| totvs::protocol_from(item, None));
        let _ = decode::fault(&body);
        let _ = token::decode_token(&body);
    }
}
