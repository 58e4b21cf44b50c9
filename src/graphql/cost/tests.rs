use std::fmt::Write;

use async_graphql::parser::parse_query;

use super::*;

fn cost_with(query: &str, operation_name: Option<&str>, variables: serde_json::Value) -> u64 {
    let document = parse_query(query).expect("the test query parses");
    estimate(&document, operation_name, &Variables::from_json(variables))
}

fn cost(query: &str) -> u64 {
    cost_with(query, None, serde_json::json!({}))
}

fn try_cost(query: &str) -> Result<u64, CostError> {
    let document = parse_query(query).expect("the test query parses");
    try_estimate(&document, None, &Variables::default())
}

#[test]
fn readme_beneficiary_across_both_upstreams() {
    let query = r#"{
      beneficiary(uniqueKey: "13331584754", subscriberId: "00011008000031015") {
        name
        latestProtocols(limit: 3) { number subject registeredAt status { id description } }
        authorizationProtocols(status: [AWAITING_DOCUMENT, UNDER_ANALYSIS], page: 1, pageSize: 10) {
          hasNext remainingRecords page pageSize
          items {
            protocol status statusCode authType requestedOn analyzedOn authorizationNumber
            professional { name council councilNumber councilState }
            interactions { items { date sector reason observation } }
          }
        }
      }
    }"#;
    // name 2 + latestProtocols 1 + authorizationProtocols 1 + 10 × interactions 1.
    assert_eq!(cost(query), 14);
}

#[test]
fn readme_one_protocol() {
    let query = r#"{ authorizationProtocol(subscriberId: "00011008000027010", protocol: "41750520230601000030") { status interactions { items { reason } } } }"#;
    assert_eq!(cost(query), 2);
}

#[test]
fn readme_partial_results() {
    let query = r#"{ beneficiary(uniqueKey: "00000000500", subscriberId: "00011008000027010") { latestProtocols { number } authorizationProtocols { hasNext } } }"#;
    assert_eq!(cost(query), 2);
}

#[test]
fn readme_mutations() {
    let attach = r#"mutation {
      addAuthorizationAttachments(input: {
        protocol: "41750520230620000004"
        attachments: [{ href: "https://files.example/pedido-medico.pdf" }]
      }) { protocol status statusCode }
    }"#;
    assert_eq!(cost(attach), 2);
    let request = r#"mutation {
      requestAuthorization(input: {
        subscriberId: "00020015000112003"
        professionalName: "DRA. LUCIA"
        professionalCouncil: "CRM"
        professionalCouncilNumber: "123456"
        stateAbbreviation: "RJ"
        attachments: [{ href: "https://files.example/pedido.pdf" }]
      }) { protocol status statusCode professional { name council councilState } }
    }"#;
    assert_eq!(cost(request), 1);
    // The returned protocol's interactions are one more read; aliases count apart.
    let both = "mutation { a: requestAuthorization(input: {}) { interactions { hasNext } } \
                b: addAuthorizationAttachments(input: {}) { protocol } }";
    assert_eq!(cost(both), 1 + 1 + 2);
}

#[test]
fn benchmark_fan_out() {
    let query = r#"{ beneficiary(uniqueKey: "1", subscriberId: "2") { name latestProtocols { number }
        authorizationProtocols(pageSize: 20) { items { protocol status interactions { items { date reason } } } } } }"#;
    assert_eq!(cost(query), 2 + 1 + 1 + 20);
}

#[test]
fn page_size_defaults_to_20_and_is_clamped() {
    let query = |args: &str| {
        format!(
            "{{ beneficiary(subscriberId: \"1\") {{ authorizationProtocols{args} \
             {{ items {{ interactions {{ hasNext }} }} }} }} }}"
        )
    };
    assert_eq!(cost(&query("")), 1 + 20);
    assert_eq!(cost(&query("(pageSize: 7)")), 1 + 7);
    assert_eq!(cost(&query("(pageSize: 0)")), 1 + 1);
    assert_eq!(cost(&query("(pageSize: -5)")), 1 + 1);
    assert_eq!(cost(&query("(pageSize: 100000)")), 1 + 100);
    assert_eq!(cost(&query("(pageSize: \"lots\")")), 1 + 100);
    // Without interactions the page size multiplies nothing.
    assert_eq!(
        cost(
            "{ beneficiary(subscriberId: \"1\") { authorizationProtocols(pageSize: 100) { items { protocol } } } }"
        ),
        1
    );
}

#[test]
fn page_size_from_a_variable_or_its_default() {
    let query = "query Q($n: Int!) { beneficiary(subscriberId: \"1\") { \
                 authorizationProtocols(pageSize: $n) { items { interactions { hasNext } } } } }";
    assert_eq!(
        cost_with(query, None, serde_json::json!({ "n": 42 })),
        1 + 42
    );
    assert_eq!(
        cost_with(query, None, serde_json::json!({ "n": 1000 })),
        1 + 100
    );
    // A variable nobody gave: the argument's default (20) applies.
    assert_eq!(cost_with(query, None, serde_json::json!({})), 1 + 20);
    let with_default = "query Q($n: Int = 55) { beneficiary(subscriberId: \"1\") { \
                        authorizationProtocols(pageSize: $n) { items { interactions { hasNext } } } } }";
    assert_eq!(cost_with(with_default, None, serde_json::json!({})), 1 + 55);
    assert_eq!(
        cost_with(with_default, None, serde_json::json!({ "n": 3 })),
        1 + 3
    );
}

#[test]
fn every_alias_counts() {
    let mut aliases = String::new();
    for n in 1..=1785 {
        write!(aliases, " i{n}: interactions(page: {n}) {{ hasNext }}").unwrap();
    }
    let query = format!(
        "{{ beneficiary(subscriberId: \"1\") {{ authorizationProtocols(pageSize: 27) \
         {{ items {{ protocol{aliases} }} }} }} }}"
    );
    assert_eq!(cost(&query), 1 + 27 * 1785);
    // Two aliases of the page, and the same field twice under one key: each counts.
    let twice = "{ beneficiary(subscriberId: \"1\") { \
                 a: authorizationProtocols(pageSize: 2) { items { interactions { hasNext } interactions { hasNext } } } \
                 b: authorizationProtocols(pageSize: 3) { x: items { interactions { hasNext } } y: items { protocol } } \
                 name n2: name } }";
    assert_eq!(cost(twice), (1 + 2 * 2) + (1 + 3) + 2 + 2);
}

#[test]
fn named_and_inline_fragments_are_expanded() {
    let query = "query { beneficiary(subscriberId: \"1\") { ...B ... on Beneficiary { latestProtocols { number } } } \
                 ... { authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ...P } } }
                 fragment B on Beneficiary { authorizationProtocols(pageSize: 5) { ...Page } }
                 fragment Page on AuthorizationProtocolPage { items { ...P ...P } }
                 fragment P on AuthorizationProtocol { interactions { hasNext } }";
    // latestProtocols 1 + (1 + 5 × 2) + authorizationProtocol 1 + 1.
    assert_eq!(cost(query), 1 + (1 + 5 * 2) + 1 + 1);
    // A fragment on another type contributes nothing there.
    let other = "{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ... on Beneficiary { name } ...B } }
                 fragment B on Beneficiary { name }";
    assert_eq!(cost(other), 1);
}

#[test]
fn free_fields_cost_nothing() {
    let query = "{ __typename __schema { types { name } } _service { sdl } unknown { interactions { hasNext } } \
                 beneficiary(uniqueKey: \"1\") { __typename uniqueKey subscriberId \
                 latestProtocols { number beneficiary { name } requester { name } } } }";
    assert_eq!(cost(query), 1);
    assert_eq!(
        cost("subscription { anything { interactions { hasNext } } }"),
        0
    );
}

#[test]
fn entities_cost_per_representation() {
    let query = "query($r: [_Any!]!) { _entities(representations: $r) { \
                 ... on AuthorizationProtocol { status interactions { hasNext } } \
                 ... on Beneficiary { name latestProtocols { number } } } }";
    let three_protocols = serde_json::json!({ "r": [
        { "__typename": "AuthorizationProtocol", "subscriberId": "1", "protocol": "a" },
        { "__typename": "AuthorizationProtocol", "subscriberId": "1", "protocol": "b" },
        { "__typename": "AuthorizationProtocol", "subscriberId": "1", "protocol": "c" },
    ]});
    // Each: the lookup 1 + interactions 1.
    assert_eq!(cost_with(query, None, three_protocols), 3 * 2);
    let mixed = serde_json::json!({ "r": [
        { "__typename": "Beneficiary", "uniqueKey": "1" },
        { "__typename": "AuthorizationProtocol", "subscriberId": "1", "protocol": "a" },
        { "__typename": "Nope" },
    ]});
    // Beneficiary: name 2 + latestProtocols 1; protocol: 2; unknown: the dearer, 3.
    assert_eq!(cost_with(query, None, mixed), 3 + 2 + 3);
    assert_eq!(cost_with(query, None, serde_json::json!({ "r": [] })), 0);
    // A literal list, one item given by a variable.
    let literal = "query($p: _Any!) { _entities(representations: [\
                   { __typename: \"AuthorizationProtocol\", subscriberId: \"1\", protocol: \"a\" }, $p, \
                   { __typename: \"Beneficiary\", subscriberId: \"1\" }]) { \
                   ... on AuthorizationProtocol { interactions { hasNext } } \
                   ... on Beneficiary { authorizationProtocols(pageSize: 2) { items { interactions { hasNext } } } } } }";
    let p = serde_json::json!({ "p": { "__typename": "AuthorizationProtocol", "protocol": "b" } });
    assert_eq!(cost_with(literal, None, p), 2 + 2 + (1 + 2));
    // Representations of AuthorizationProtocol cost their lookup even with nothing costly.
    let bare = "{ _entities(representations: [{ __typename: \"AuthorizationProtocol\" }, \
                { __typename: \"AuthorizationProtocol\" }]) { __typename } }";
    assert_eq!(cost(bare), 2);
}

#[test]
fn the_operation_name_selects_the_operation() {
    let query = "query Cheap { beneficiary(uniqueKey: \"1\") { latestProtocols { number } } }
                 query Dear { beneficiary(subscriberId: \"1\") { authorizationProtocols(pageSize: 50) \
                 { items { interactions { hasNext } } } } }";
    let none = serde_json::json!({});
    assert_eq!(cost_with(query, Some("Cheap"), none.clone()), 1);
    assert_eq!(cost_with(query, Some("Dear"), none.clone()), 1 + 50);
    // Nothing selected (no name among several, or an unknown one): nothing runs.
    assert_eq!(cost_with(query, None, none.clone()), 0);
    assert_eq!(cost_with(query, Some("Other"), none), 0);
}

#[test]
fn a_fragment_cycle_terminates() {
    let direct = "{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ...A } }
                  fragment A on AuthorizationProtocol { interactions { hasNext } ...A }";
    assert_eq!(try_cost(direct), Err(CostError::FragmentCycle));
    let indirect = "{ beneficiary(subscriberId: \"1\") { ...A } }
                    fragment A on Beneficiary { name ...B }
                    fragment B on Beneficiary { authorizationProtocols { items { ...C } } }
                    fragment C on AuthorizationProtocol { interactions { hasNext } ... on AuthorizationProtocol { ...D } }
                    fragment D on AuthorizationProtocol { ...C }";
    assert_eq!(try_cost(indirect), Err(CostError::FragmentCycle));
    let document = parse_query(indirect).unwrap();
    assert_eq!(estimate(&document, None, &Variables::default()), u64::MAX);
}

#[test]
fn deep_documents_terminate() {
    // A chain of 2,000 fragments, each spreading the next.
    let mut query =
        String::from("{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ...F0 } }\n");
    for n in 0..2000 {
        writeln!(
            query,
            "fragment F{n} on AuthorizationProtocol {{ ...F{} }}",
            n + 1
        )
        .unwrap();
    }
    query.push_str("fragment F2000 on AuthorizationProtocol { interactions { hasNext } }");
    assert_eq!(try_cost(&query), Err(CostError::TooDeep));
    // As deep as the parser lets a selection set go, under a free type: walked no further.
    let depth = 60;
    let nested = format!(
        "{{ beneficiary(uniqueKey: \"1\") {{ latestProtocols {{ {}number{} }} }} }}",
        "beneficiary { ".repeat(depth),
        " }".repeat(depth)
    );
    assert_eq!(try_cost(&nested), Ok(1));
    // Inline fragments nested as deep as the parser allows, on a costly type.
    let inline = format!(
        "{{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") {{ {}interactions {{ hasNext }}{} }} }}",
        "... { ".repeat(depth),
        " }".repeat(depth)
    );
    assert_eq!(try_cost(&inline), Ok(2));
}

#[test]
fn fragments_doubling_saturate_without_walking_every_path() {
    // F0 spreads F1 twice, F1 spreads F2 twice, ...: 2^n paths, n fragments to price.
    let fragments = |levels: usize| {
        let mut query = String::from(
            "{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ...F0 } }\n",
        );
        for n in 0..levels {
            let m = n + 1;
            writeln!(
                query,
                "fragment F{n} on AuthorizationProtocol {{ ...F{m} ...F{m} }}"
            )
            .unwrap();
        }
        writeln!(
            query,
            "fragment F{levels} on AuthorizationProtocol {{ interactions {{ hasNext }} }}"
        )
        .unwrap();
        query
    };
    assert_eq!(try_cost(&fragments(40)), Ok(1 + (1u64 << 40)));
    assert_eq!(try_cost(&fragments(100)), Ok(u64::MAX));
}

#[test]
fn a_64_kib_document_is_priced() {
    // Aliases of interactions under one page of 100, as many as 64 KiB hold.
    let mut query = String::from(
        "{ beneficiary(subscriberId: \"1\") { authorizationProtocols(pageSize: 100) { items {",
    );
    let mut aliases = 0u64;
    while query.len() < 64 * 1024 - 40 {
        write!(query, " i{aliases}: interactions {{ hasNext }}").unwrap();
        aliases += 1;
    }
    query.push_str(" } } } }");
    assert!(query.len() <= 64 * 1024);
    assert_eq!(cost(&query), 1 + 100 * aliases);

    // 64 KiB of representations, each an AuthorizationProtocol with interactions.
    let mut representations = Vec::new();
    let mut size = 0;
    while size < 64 * 1024 {
        representations
            .push(serde_json::json!({ "__typename": "AuthorizationProtocol", "protocol": "1" }));
        size += 50;
    }
    let n = representations.len() as u64;
    let query = "query($r: [_Any!]!) { _entities(representations: $r) { \
                 ... on AuthorizationProtocol { a: interactions { hasNext } b: interactions { hasNext } } } }";
    assert_eq!(
        cost_with(query, None, serde_json::json!({ "r": representations })),
        n * 3
    );
}
