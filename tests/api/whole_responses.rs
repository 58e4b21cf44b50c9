//! The whole-response cache from the outside: a warm query answered whole, never for another
//! caller's access, never after a mutation or a TTL it must see, never for a response with
//! errors, never for a mutation. Upstream calls are counted by the fakes themselves.

use protocol_graph::{auth::ClaimsBuilder, config::Secret};
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{header, method, path},
};

use crate::helpers::{
    API, LATEST, MOSIA_PATH, PROTOCOLS, TestApp, Upstreams, codes, fixture, mosia_get,
};

const SECRET: &str = "a-whole-response-secret-32-bytes!!!";
const OWN_KEY: &str = "13331584754";
const OWN_SUBSCRIBER: &str = "00011008000027010";
const OTHER_KEY: &str = "28476190350";
const PROTOCOL: &str = "41750520230601000030";
const LIST_STATUS: &str = r#"{ beneficiary(subscriberId: "00011008000027010") {
    authorizationProtocols { items { protocol status } } } }"#;
const ATTACH: &str = r#"mutation($input: AddAuthorizationAttachmentsInput!) {
    addAuthorizationAttachments(input: $input) { protocol status } }"#;

async fn app_with_auth(up: &Upstreams) -> TestApp {
    up.app_with(|settings| {
        settings.auth.disabled = false;
        settings.auth.jwt_secret = Some(Secret::new(SECRET));
    })
    .await
}

async fn post_as(app: &TestApp, token: &str, query: &str) -> Value {
    app.post_as(token, &json!({ "query": query }))
        .await
        .json()
        .await
        .unwrap()
}

/// Mosia answers its documented body for `key`, and counts the calls for it.
async fn mosia_for(up: &Upstreams, key: &str, times: u64) {
    mosia_get()
        .and(header("chaveUnica", key))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("mosia/ultimos-protocolos.200.json")),
        )
        .expect(times)
        .mount(&up.mosia)
        .await;
}

fn latest_of(key: &str) -> String {
    LATEST.replace(OWN_KEY, key)
}

#[tokio::test]
async fn a_cached_answer_is_only_given_to_a_caller_with_the_same_access() {
    let up = Upstreams::start().await;
    // One Mosia read for the beneficiary's key, however many callers ask; one for the other.
    mosia_for(&up, OWN_KEY, 1).await;
    mosia_for(&up, OTHER_KEY, 1).await;
    let app = app_with_auth(&up).await;
    let own = ClaimsBuilder::new("beneficiary-1")
        .unique_key(OWN_KEY)
        .subscriber_id(OWN_SUBSCRIBER)
        .mint_hs256(SECRET);
    let same_claims = ClaimsBuilder::new("beneficiary-1-other-device")
        .unique_key(OWN_KEY)
        .subscriber_id(OWN_SUBSCRIBER)
        .mint_hs256(SECRET);
    let other = ClaimsBuilder::new("beneficiary-2")
        .unique_key(OTHER_KEY)
        .mint_hs256(SECRET);
    let own_key_other_subscriber = ClaimsBuilder::new("beneficiary-3")
        .unique_key(OWN_KEY)
        .subscriber_id("00011008000031015")
        .mint_hs256(SECRET);
    let staff = ClaimsBuilder::new("staff-1").staff().mint_hs256(SECRET);

    let first = post_as(&app, &own, LATEST).await;
    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(post_as(&app, &own, LATEST).await, first);
    assert_eq!(app.counts().whole_response_hits, 1);
    assert_eq!(post_as(&app, &same_claims, LATEST).await, first);
    assert_eq!(
        app.counts().whole_response_hits,
        2,
        "same claims, same entry"
    );

    // Another beneficiary sending the very same request is refused, as without any cache.
    let refused = post_as(&app, &other, LATEST).await;
    assert_eq!(codes(&refused), ["FORBIDDEN"]);
    assert_eq!(refused["data"]["beneficiary"], Value::Null);
    // Its refusal is not kept either: asked again, it is decided again.
    assert_eq!(codes(&post_as(&app, &other, LATEST).await), ["FORBIDDEN"]);
    assert_eq!(app.counts().whole_response_hits, 2);

    // Other claims or staff scopes are other entries (built from the shared upstream cache).
    assert_eq!(
        post_as(&app, &own_key_other_subscriber, LATEST).await,
        first
    );
    assert_eq!(post_as(&app, &staff, LATEST).await, first);
    assert_eq!(app.counts().whole_response_hits, 2);

    // The other beneficiary's own read is its own.
    let theirs = post_as(&app, &other, &latest_of(OTHER_KEY)).await;
    assert!(theirs.get("errors").is_none(), "{theirs}");
    assert_ne!(theirs, first);
}

#[tokio::test]
async fn data_answered_whole_to_staff_is_refused_to_a_beneficiary() {
    let up = Upstreams::start().await;
    mosia_for(&up, OWN_KEY, 1).await;
    let app = app_with_auth(&up).await;
    let staff = ClaimsBuilder::new("staff-1").staff().mint_hs256(SECRET);
    let other = ClaimsBuilder::new("beneficiary-2")
        .unique_key(OTHER_KEY)
        .mint_hs256(SECRET);

    let answer = post_as(&app, &staff, LATEST).await;
    assert_eq!(post_as(&app, &staff, LATEST).await, answer);
    assert_eq!(app.counts().whole_response_hits, 1);

    let refused = post_as(&app, &other, LATEST).await;
    assert_eq!(codes(&refused), ["FORBIDDEN"]);
    assert_eq!(refused["data"]["beneficiary"], Value::Null);
}

#[tokio::test]
async fn a_read_after_a_mutation_shows_the_mutation() {
    let up = Upstreams::start().await;
    let before = fixture("totvs/protocols.200.json");
    let mut after = before.clone();
    after["items"][0]["status"] = json!("1");
    // The list as it was, once; then as the mutation left it.
    Mock::given(method("GET"))
        .and(path(PROTOCOLS))
        .respond_with(ResponseTemplate::new(200).set_body_json(before))
        .up_to_n_times(1)
        .expect(1)
        .mount(&up.totvs)
        .await;
    Mock::given(method("GET"))
        .and(path(PROTOCOLS))
        .respond_with(ResponseTemplate::new(200).set_body_json(after))
        .expect(1)
        .mount(&up.totvs)
        .await;
    let mut attached = fixture("totvs/attachments.201.json");
    attached["protocol"] = json!(PROTOCOL);
    attached["status"] = json!("1");
    Mock::given(method("POST"))
        .and(path(format!("{API}/protocols/attachments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(attached))
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let read = app.query(LIST_STATUS).await;
    assert_eq!(
        read["data"]["beneficiary"]["authorizationProtocols"]["items"][0]["status"],
        "UNDER_ANALYSIS"
    );
    assert_eq!(app.query(LIST_STATUS).await, read);
    assert_eq!(app.counts().whole_response_hits, 1);

    let input = json!({ "input": { "protocol": PROTOCOL,
        "attachments": [{ "href": "https://files.example/laudo.pdf" }] } });
    let mutated = app.query_with(ATTACH, input).await;
    assert!(mutated.get("errors").is_none(), "{mutated}");

    let reread = app.query(LIST_STATUS).await;
    assert_eq!(
        reread["data"]["beneficiary"]["authorizationProtocols"]["items"][0]["status"], "AUTHORIZED",
        "{reread}"
    );
    assert_eq!(
        app.counts().whole_response_hits,
        1,
        "the old answer was not served"
    );
    // The new answer is kept in turn.
    assert_eq!(app.query(LIST_STATUS).await, reread);
    assert_eq!(app.counts().whole_response_hits, 2);
}

#[tokio::test]
async fn an_answer_past_its_ttl_is_never_answered_whole() {
    let up = Upstreams::start().await;
    up.mosia_documented(3).await;
    let app = up
        .app_with(|settings| settings.cache.mosia_ttl_secs = 0)
        .await;

    for _ in 0..3 {
        let answer = app.query(LATEST).await;
        assert!(answer.get("errors").is_none(), "{answer}");
    }
    assert_eq!(app.counts().whole_response_hits, 0);
}

#[tokio::test]
async fn a_response_with_errors_is_not_kept() {
    let up = Upstreams::start().await;
    up.mosia_fails_once_then_documented().await;
    let app = up.app().await;

    let failed = app.query(LATEST).await;
    assert_eq!(codes(&failed), ["UPSTREAM_UNAVAILABLE"]);
    let answered = app.query(LATEST).await;
    assert!(answered.get("errors").is_none(), "{answered}");
    assert_eq!(app.query(LATEST).await, answered);
    assert_eq!(app.counts().whole_response_hits, 1);
}

#[tokio::test]
async fn a_mutation_is_never_answered_whole() {
    let up = Upstreams::start().await;
    let mut attached = fixture("totvs/attachments.201.json");
    attached["protocol"] = json!(PROTOCOL);
    Mock::given(method("POST"))
        .and(path(format!("{API}/protocols/attachments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(attached))
        .expect(2)
        .mount(&up.totvs)
        .await;
    // No double-submit window: each identical mutation goes to TOTVS.
    let app = up
        .app_with(|settings| settings.cache.mutation_dedupe_secs = 0)
        .await;
    let input = json!({ "input": { "protocol": PROTOCOL,
        "attachments": [{ "href": "https://files.example/laudo.pdf" }] } });

    for _ in 0..2 {
        let answer = app.query_with(ATTACH, input.clone()).await;
        assert!(answer.get("errors").is_none(), "{answer}");
    }
    assert_eq!(app.counts().whole_response_hits, 0);
}

#[tokio::test]
async fn variables_and_operation_names_are_part_of_the_key() {
    let up = Upstreams::start().await;
    mosia_for(&up, OWN_KEY, 1).await;
    mosia_for(&up, OTHER_KEY, 1).await;
    let app = up.app().await;
    let query = r#"query A($key: ID) { beneficiary(uniqueKey: $key) { uniqueKey latestProtocols { number } } }
        query B($key: ID) { beneficiary(uniqueKey: $key) { uniqueKey } }"#;
    let run = |operation: &'static str, key: &'static str| {
        let app = &app;
        async move {
            app.post(
                &json!({ "query": query, "operationName": operation, "variables": { "key": key } }),
            )
            .await
            .json::<Value>()
            .await
            .unwrap()
        }
    };

    let own = run("A", OWN_KEY).await;
    let other = run("A", OTHER_KEY).await;
    assert_eq!(own["data"]["beneficiary"]["uniqueKey"], OWN_KEY);
    assert_eq!(other["data"]["beneficiary"]["uniqueKey"], OTHER_KEY);
    let short = run("B", OWN_KEY).await;
    assert_eq!(
        short,
        json!({ "data": { "beneficiary": { "uniqueKey": OWN_KEY } } })
    );
    assert_eq!(app.counts().whole_response_hits, 0);

    assert_eq!(run("A", OWN_KEY).await, own);
    assert_eq!(run("A", OTHER_KEY).await, other);
    assert_eq!(app.counts().whole_response_hits, 2);
    assert_eq!(
        up.mosia.received_requests().await.unwrap().len(),
        2,
        "{MOSIA_PATH}: one call per key"
    );
}
