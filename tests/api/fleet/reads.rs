//! Reads across replicas: one upstream call per resource fleet-wide, for the resource's TTL,
//! and never an answer older than a mutation made on another replica.

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use super::{RedisServer, calls, replica_settings, replicas};
use crate::helpers::{
    API, LIST, MOSIA_PATH, PROTOCOLS, TestApp, Upstreams, fixture, list_get, mosia_get,
};

/// Mosia's latest protocols and the TOTVS list of the documented beneficiary, in one query.
const BOTH: &str = r#"{
    m: beneficiary(uniqueKey: "13331584754") { latestProtocols { number } }
    t: beneficiary(subscriberId: "00011008000027010") { authorizationProtocols { items { protocol } } }
}"#;
const PROTOCOL: &str = "41750520230601000030";
/// The documented subscriber's list, and the interactions of the protocol on it.
const LIST_AND_INTERACTIONS: &str = r#"{ beneficiary(subscriberId: "00011008000027010") {
    authorizationProtocols { items { protocol interactions { hasNext } } } } }"#;
const ATTACH: &str = r#"mutation($input: AddAuthorizationAttachmentsInput!) {
    addAuthorizationAttachments(input: $input) { protocol status } }"#;

fn interactions_path() -> String {
    format!("{API}/protocols/{PROTOCOL}/interactions")
}

/// Both upstreams answer their documented bodies, slowly enough that a burst overlaps.
async fn slow_upstreams() -> Upstreams {
    let up = Upstreams::start().await;
    let delay = Duration::from_millis(300);
    mosia_get()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("mosia/ultimos-protocolos.200.json"))
                .set_delay(delay),
        )
        .mount(&up.mosia)
        .await;
    list_get()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("totvs/protocols.200.json"))
                .set_delay(delay),
        )
        .mount(&up.totvs)
        .await;
    up
}

/// TOTVS answers interactions of [`PROTOCOL`], and an attachment to it (naming its
/// subscriber unless `omit_subscriber`).
async fn mutable_protocol(up: &Upstreams, omit_subscriber: bool) {
    Mock::given(method("GET"))
        .and(path(interactions_path()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("totvs/interactions.200.json")),
        )
        .mount(&up.totvs)
        .await;
    let mut answer = fixture("totvs/attachments.201.json");
    answer["protocol"] = json!(PROTOCOL);
    if omit_subscriber {
        answer.as_object_mut().unwrap().remove("subscriberId");
    }
    Mock::given(method("POST"))
        .and(path(format!("{API}/protocols/attachments")))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer))
        .mount(&up.totvs)
        .await;
}

fn attachment() -> serde_json::Value {
    json!({ "input": { "protocol": PROTOCOL, "attachments": [{ "href": "https://files.example/laudo.pdf" }] } })
}

#[tokio::test]
async fn a_burst_across_three_replicas_calls_each_upstream_resource_once() {
    let redis = RedisServer::start().await;
    let up = slow_upstreams().await;
    let fleet = replicas(&up, &redis, 3).await;

    let burst = fleet
        .iter()
        .flat_map(|app| (0..4).map(move |_| app.query(BOTH)));
    let answers = join_all(burst).await;

    for answer in &answers {
        assert!(answer.get("errors").is_none(), "{answer}");
        assert_eq!(answer, &answers[0]);
    }
    assert_eq!(calls(&up.mosia, MOSIA_PATH).await, 1, "Mosia, fleet-wide");
    assert_eq!(
        calls(&up.totvs, PROTOCOLS).await,
        1,
        "TOTVS list, fleet-wide"
    );

    // A replica started later reads the shared answers: no upstream call at all.
    let late = TestApp::spawn(replica_settings(&up, &redis)).await;
    assert_eq!(late.query(BOTH).await, answers[0]);
    assert_eq!(calls(&up.mosia, MOSIA_PATH).await, 1);
    assert_eq!(calls(&up.totvs, PROTOCOLS).await, 1);
    assert_eq!(late.counts().fleet_hits, 2);
    assert_eq!(late.counts().cache_misses, 0);
}

#[tokio::test]
async fn a_shared_answer_lives_for_its_ttl_and_no_longer() {
    let redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    up.list_documented(None).await;
    let settings = || {
        let mut settings = replica_settings(&up, &redis);
        settings.cache.totvs_protocols_ttl_secs = 1;
        settings
    };
    let (a, b) = (
        TestApp::spawn(settings()).await,
        TestApp::spawn(settings()).await,
    );

    a.query(LIST).await;
    b.query(LIST).await;
    assert_eq!(calls(&up.totvs, PROTOCOLS).await, 1);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    b.query(LIST).await;
    a.query(LIST).await;
    assert_eq!(
        calls(&up.totvs, PROTOCOLS).await,
        2,
        "expired in Redis as in moka"
    );
}

#[tokio::test]
async fn a_mutation_on_one_replica_is_seen_by_the_next_read_on_another() {
    let redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    up.list_documented(None).await;
    mutable_protocol(&up, false).await;
    let fleet = replicas(&up, &redis, 2).await;
    let (a, b) = (&fleet[0], &fleet[1]);

    a.query(LIST_AND_INTERACTIONS).await;
    b.query(LIST_AND_INTERACTIONS).await;
    a.query(LIST_AND_INTERACTIONS).await;
    assert_eq!(calls(&up.totvs, PROTOCOLS).await, 1);
    assert_eq!(calls(&up.totvs, &interactions_path()).await, 1);

    let attached = b.query_with(ATTACH, attachment()).await;
    assert!(attached.get("errors").is_none(), "{attached}");

    // A holds both answers locally, fetched before the mutation: it must not serve them.
    a.query(LIST_AND_INTERACTIONS).await;
    assert_eq!(calls(&up.totvs, PROTOCOLS).await, 2, "the list, read fresh");
    assert_eq!(calls(&up.totvs, &interactions_path()).await, 2);
    // The fresh answers are shared again.
    b.query(LIST_AND_INTERACTIONS).await;
    a.query(LIST_AND_INTERACTIONS).await;
    assert_eq!(calls(&up.totvs, PROTOCOLS).await, 2);
    assert_eq!(calls(&up.totvs, &interactions_path()).await, 2);
}

#[tokio::test]
async fn a_list_showing_a_protocol_changed_on_another_replica_is_read_again() {
    let redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    up.list_documented(None).await;
    // TOTVS's answer does not name the subscriber: only the protocol's version moves.
    mutable_protocol(&up, true).await;
    let fleet = replicas(&up, &redis, 2).await;
    let (a, b) = (&fleet[0], &fleet[1]);

    a.query(LIST).await;
    b.query(LIST).await;
    assert_eq!(calls(&up.totvs, PROTOCOLS).await, 1);

    b.query_with(ATTACH, attachment()).await;
    a.query(LIST).await;
    assert_eq!(calls(&up.totvs, PROTOCOLS).await, 2);
}

#[tokio::test]
async fn a_redis_restart_drops_every_local_entry() {
    let mut redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    up.list_documented(None).await;
    mutable_protocol(&up, false).await;
    let fleet = replicas(&up, &redis, 2).await;
    let (a, b) = (&fleet[0], &fleet[1]);
    a.query(LIST).await;
    b.query_with(ATTACH, attachment()).await;

    // The mark B recorded dies with this Redis; A never saw it, and still holds its list.
    redis.restart().await;
    let answer = a.query(LIST).await;

    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(
        calls(&up.totvs, PROTOCOLS).await,
        2,
        "the new epoch dropped A's entry"
    );
}

#[tokio::test]
async fn redis_holds_no_identifier_in_its_key_names() {
    let redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    up.list_documented(None).await;
    up.mosia_documented(None).await;
    mutable_protocol(&up, false).await;
    let fleet = replicas(&up, &redis, 1).await;

    fleet[0].query(BOTH).await;
    fleet[0].query_with(ATTACH, attachment()).await;

    let keys = redis.keys().await;
    assert!(keys.len() >= 5, "{keys:?}");
    for key in keys {
        assert!(key.starts_with("pg:v1:"), "{key}");
        for identifier in ["13331584754", "00011008000027010", PROTOCOL, "anonymous"] {
            assert!(!key.contains(identifier), "{key}");
        }
    }
}

/// A list of five protocols and their interactions, answered by TOTVS.
async fn five_protocols(up: &Upstreams) {
    let mut list = fixture("totvs/protocols.200.json");
    let item = list["items"][0].clone();
    list["items"] = (0..5)
        .map(|n| {
            let mut item = item.clone();
            item["protocol"] = json!(format!("4175052023060100003{n}"));
            item
        })
        .collect();
    list_get()
        .respond_with(ResponseTemplate::new(200).set_body_json(list))
        .mount(&up.totvs)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(format!("{API}/protocols/[0-9]+/interactions")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("totvs/interactions.200.json")),
        )
        .mount(&up.totvs)
        .await;
}

#[tokio::test]
async fn a_warm_query_checks_its_versions_in_one_round_trip_per_level() {
    let redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    five_protocols(&up).await;
    // The cached answers' own checks, as a query that is not answered whole makes them.
    let mut settings = replica_settings(&up, &redis);
    settings.cache.whole_responses = false;
    let app = TestApp::spawn(settings).await;
    let cold = app.query(LIST_AND_INTERACTIONS).await;
    assert!(cold.get("errors").is_none(), "{cold}");

    // Each check starts with Redis's TIME: count the checks of one warm query.
    let before = redis.calls_of("time").await;
    let warm = app.query(LIST_AND_INTERACTIONS).await;
    let checks = redis.calls_of("time").await - before;

    assert_eq!(warm, cold);
    assert_eq!(app.counts().cache_hits, 6, "{:?}", app.counts());
    assert_eq!(
        checks, 2,
        "the list's check, then one shared by its five protocols' interactions"
    );
}

#[tokio::test]
async fn a_whole_response_checks_the_versions_of_all_its_answers_in_one_round_trip() {
    let redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    five_protocols(&up).await;
    let fleet = replicas(&up, &redis, 1).await;
    let cold = fleet[0].query(LIST_AND_INTERACTIONS).await;
    assert!(cold.get("errors").is_none(), "{cold}");

    let before = redis.calls_of("time").await;
    let warm = fleet[0].query(LIST_AND_INTERACTIONS).await;
    let checks = redis.calls_of("time").await - before;

    assert_eq!(warm, cold);
    assert_eq!(fleet[0].counts().whole_response_hits, 1);
    assert_eq!(checks, 1, "the list and five interactions, in one check");
}
