//! Batching and caching: each distinct upstream resource is read once per request, and the
//! shared cache serves repeated, concurrent and failing reads as the design says.

use std::time::Duration;

use serde_json::json;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{header, method, path, path_regex, query_param},
};

use crate::helpers::{API, LATEST, LIST, TestApp, Upstreams, fixture, list_get, mosia_get};

fn three_protocols() -> serde_json::Value {
    let item = |n: &str| {
        json!({"protocol": n, "name": "HERNANDES", "subscriberId": "00011008000027010",
                                 "professionalName": "ANDRE", "status": "9"})
    };
    json!({"items": [item("p1"), item("p2"), item("p3")], "hasNext": false, "remainingRecords": 0})
}

async fn mount_fan_out(up: &Upstreams, delay: Duration) {
    mosia_get()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("mosia/ultimos-protocolos.200.json"))
                .set_delay(delay),
        )
        .expect(1)
        .named("mosia")
        .mount(&up.mosia)
        .await;
    list_get()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(three_protocols())
                .set_delay(delay),
        )
        .expect(1)
        .named("protocol list")
        .mount(&up.totvs)
        .await;
    for p in ["p1", "p2", "p3"] {
        Mock::given(method("GET"))
            .and(path(format!("{API}/protocols/{p}/interactions")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(fixture("totvs/interactions.200.json"))
                    .set_delay(delay),
            )
            .expect(1)
            .named(format!("interactions of {p}"))
            .mount(&up.totvs)
            .await;
    }
}

const FAN_OUT: &str = r#"{ beneficiary(uniqueKey: "13331584754", subscriberId: "00011008000027010") {
    name latestProtocols { number }
    authorizationProtocols { items { protocol interactions { items { reason } } } } } }"#;

#[tokio::test]
async fn aliases_and_repeats_of_one_resource_reach_each_upstream_once() {
    let up = Upstreams::start().await;
    mount_fan_out(&up, Duration::ZERO).await;
    list_get()
        .and(query_param("protocol", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(three_protocols()))
        .with_priority(1)
        .expect(1)
        .named("list filtered by protocol")
        .mount(&up.totvs)
        .await;
    let app = up.app_with(|s| s.cache.enabled = false).await;

    let response = app
        .query(
            r#"{
              a: beneficiary(uniqueKey: "13331584754", subscriberId: "00011008000027010") {
                name
                one: latestProtocols(limit: 1) { number }
                three: latestProtocols(limit: 3) { number }
                latestProtocols { number }
                authorizationProtocols { items { protocol interactions { items { reason } } } }
                again: authorizationProtocols { items { protocol interactions { hasNext } } }
              }
              b: beneficiary(uniqueKey: "13331584754", subscriberId: "00011008000027010") {
                name latestProtocols(limit: 2) { number }
                authorizationProtocols(page: 1, pageSize: 20) { items { interactions { items { date } } } }
              }
              c: authorizationProtocol(subscriberId: "00011008000027010", protocol: "p2") { interactions { hasNext } }
            }"#,
        )
        .await;

    assert!(response.get("errors").is_none(), "{response}");
    let a = &response["data"]["a"];
    assert_eq!(
        a["one"].as_array().unwrap().len(),
        1,
        "a smaller limit is a prefix of the larger"
    );
    assert_eq!(a["three"].as_array().unwrap().len(), 3);
    assert_eq!(
        response["data"]["b"]["latestProtocols"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // `c` filters by protocol: a different TOTVS list resource, read on its own.
    let counts = app.counts();
    assert_eq!(
        counts.totvs_calls,
        1 + 1 + 3,
        "list, filtered list, 3 interactions"
    );
    assert_eq!(counts.totvs_token_calls, 1);
}

#[tokio::test]
async fn a_second_request_is_served_from_the_shared_cache() {
    let up = Upstreams::start().await;
    mount_fan_out(&up, Duration::ZERO).await;
    let app = up
        .app_with(|settings| settings.cache.whole_responses = false)
        .await;

    let first = app.query(FAN_OUT).await;
    let second = app.query(FAN_OUT).await;

    assert_eq!(first, second);
    assert!(first.get("errors").is_none(), "{first}");
    let counts = app.counts();
    assert_eq!(counts.cache_misses, 5);
    assert_eq!(counts.cache_hits, 5);
}

#[tokio::test]
async fn a_second_identical_request_is_answered_whole() {
    let up = Upstreams::start().await;
    mount_fan_out(&up, Duration::ZERO).await;
    let app = up.app().await;

    let first = app.query(FAN_OUT).await;
    let second = app.query(FAN_OUT).await;

    assert_eq!(first, second);
    assert!(first.get("errors").is_none(), "{first}");
    let counts = app.counts();
    assert_eq!(counts.cache_misses, 5);
    assert_eq!(counts.whole_response_hits, 1);
    assert_eq!(counts.cache_hits, 0, "no read of the shared cache at all");
}

#[tokio::test]
async fn without_the_cache_every_request_goes_upstream() {
    let up = Upstreams::start().await;
    up.mosia_documented(2).await;
    let app = up.app_with(|s| s.cache.enabled = false).await;

    for _ in 0..2 {
        app.query(LATEST).await;
    }
}

#[tokio::test]
async fn concurrent_identical_cold_queries_share_one_call_per_resource() {
    let up = Upstreams::start().await;
    mount_fan_out(&up, Duration::from_millis(200)).await;
    let app = up.app().await;

    let responses = futures::future::join_all((0..50).map(|_| app.query(FAN_OUT))).await;

    for response in &responses {
        assert_eq!(response, &responses[0]);
    }
    assert!(responses[0].get("errors").is_none(), "{}", responses[0]);
    let counts = app.counts();
    assert_eq!(counts.mosia_calls, 1);
    assert_eq!(counts.totvs_calls, 1 + 3, "list, interactions");
    assert_eq!(counts.totvs_token_calls, 1);
    assert!(counts.cache_coalesced > 0);
}

#[tokio::test]
async fn upstream_errors_are_not_cached() {
    let up = Upstreams::start().await;
    up.mosia_fails_once_then_documented().await;
    let app = up.app_with(|s| s.upstream.get_retries = 0).await;
    let query = LATEST;

    let failed = app.query(query).await;
    let recovered = app.query(query).await;

    assert_eq!(
        failed["errors"][0]["extensions"]["code"],
        "UPSTREAM_UNAVAILABLE"
    );
    assert_eq!(
        recovered["data"]["beneficiary"]["latestProtocols"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

// How long a 404 is remembered, and that it is then fetched again, is a unit test of the
// cache (`upstream::cache::tests`) on a manual clock; this one checks the wiring.
#[tokio::test]
async fn a_404_is_remembered() {
    let up = Upstreams::start().await;
    list_get()
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture("totvs/protocols.404.json")))
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    for _ in 0..3 {
        assert_eq!(
            app.query(LIST).await["errors"][0]["extensions"]["code"],
            "NOT_FOUND"
        );
    }
}

/// Mosia answers the documented body once, then 503 for ever.
async fn mosia_answers_once_then_fails(up: &Upstreams) {
    mosia_get()
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("mosia/ultimos-protocolos.200.json")),
        )
        .up_to_n_times(1)
        .mount(&up.mosia)
        .await;
    mosia_get()
        .respond_with(ResponseTemplate::new(503))
        .mount(&up.mosia)
        .await;
}

// The stale window's bounds and the age reported are unit tests of the cache on a manual
// clock; these check that a stale answer reaches the client with its warning, and the switch.
// A 0 s TTL makes every read go upstream without waiting for an entry to expire.
#[tokio::test]
async fn a_stale_answer_stands_in_for_a_failing_upstream_with_a_warning() {
    let up = Upstreams::start().await;
    mosia_answers_once_then_fails(&up).await;
    let app = up.app_with(|s| s.cache.mosia_ttl_secs = 0).await;
    let query = LATEST;

    let fresh = app.query(query).await;
    assert!(fresh.get("extensions").is_none(), "{fresh}");
    let stale = app.query(query).await;

    assert_eq!(stale["data"], fresh["data"]);
    assert!(stale.get("errors").is_none(), "{stale}");
    let warning = &stale["extensions"]["warnings"][0];
    assert_eq!(warning["code"], "STALE_DATA");
    assert_eq!(warning["service"], "mosia");
    assert_eq!(app.counts().stale_served, 1);
}

#[tokio::test]
async fn without_a_stale_window_a_failing_upstream_is_an_error() {
    let up = Upstreams::start().await;
    mosia_answers_once_then_fails(&up).await;
    let app = up
        .app_with(|s| {
            s.cache.mosia_ttl_secs = 0;
            s.cache.stale_for_secs = 0;
        })
        .await;
    let query = LATEST;

    app.query(query).await;
    let response = app.query(query).await;

    assert_eq!(
        response["errors"][0]["extensions"]["code"],
        "UPSTREAM_UNAVAILABLE"
    );
}

#[tokio::test]
async fn distinct_beneficiaries_load_concurrently_in_one_batch() {
    let up = Upstreams::start().await;
    mosia_get()
        .and(header("totalProtocolos", "5"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("mosia/ultimos-protocolos.200.json")),
        )
        .expect(4)
        .mount(&up.mosia)
        .await;
    let app = up.app().await;

    let query = (0..4)
        .map(|i| {
            format!(r#"b{i}: beneficiary(uniqueKey: "k{i}") {{ latestProtocols {{ number }} }} "#)
        })
        .collect::<String>();
    let response = app.query(&format!("{{ {query} }}")).await;

    assert!(response.get("errors").is_none(), "{response}");
}

#[tokio::test]
async fn metrics_expose_upstream_and_cache_counters() {
    let up = Upstreams::start().await;
    Mock::given(method("GET"))
        .and(path_regex("ultimosProtocolos$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("mosia/ultimos-protocolos.200.json")),
        )
        .mount(&up.mosia)
        .await;
    let app = up
        .app_with(|settings| settings.cache.whole_responses = false)
        .await;
    let query = LATEST;
    app.query(query).await;
    app.query(query).await;

    let text = app.get("/metrics").await.text().await.unwrap();

    assert!(
        text.contains("protocol_graph_upstream_calls_total{service=\"mosia\"} 1"),
        "{text}"
    );
    assert!(text.contains("protocol_graph_cache_hits_total 1"), "{text}");
    assert!(
        text.contains("protocol_graph_cache_misses_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn the_sandbox_fan_out_costs_one_call_per_resource() {
    let (app, sandbox) = TestApp::with_sandbox().await;
    let query = r#"{ beneficiary(uniqueKey: "13331584754", subscriberId: "00011008000031015") {
        name latestProtocols { number }
        authorizationProtocols(pageSize: 20) { items { protocol interactions { items { date } } } } } }"#;

    let cold = app.query(query).await;
    let after_cold = sandbox.calls();
    let warm = app.query(query).await;

    assert_eq!(cold, warm);
    assert_eq!(after_cold.mosia, 1);
    assert_eq!(after_cold.totvs_protocols, 1);
    assert_eq!(after_cold.totvs_interactions, 20);
    assert_eq!(
        sandbox.calls(),
        after_cold,
        "a warm query reaches no upstream"
    );
}

#[tokio::test]
async fn distinct_keys_load_concurrently_but_within_the_bound() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    #[derive(Clone, Default)]
    struct InFlight {
        now: Arc<AtomicUsize>,
        max: Arc<AtomicUsize>,
    }
    // An upstream that remembers how many requests it held at once.
    async fn slow_mosia(
        axum::extract::State(state): axum::extract::State<InFlight>,
    ) -> axum::Json<serde_json::Value> {
        let now = state.now.fetch_add(1, Ordering::SeqCst) + 1;
        state.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        state.now.fetch_sub(1, Ordering::SeqCst);
        axum::Json(fixture("mosia/ultimos-protocolos.200.json"))
    }
    let state = InFlight::default();
    let router = axum::Router::new()
        .route(
            "/clientes/ocorrencias/ultimosProtocolos",
            axum::routing::get(slow_mosia),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mosia_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let up = Upstreams::start().await;
    let app = up
        .app_with(|s| {
            s.mosia.base_url = mosia_url.parse().unwrap();
            s.upstream.max_concurrency = 2;
        })
        .await;

    let query = (0..6)
        .map(|i| {
            format!(r#"b{i}: beneficiary(uniqueKey: "k{i}") {{ latestProtocols {{ number }} }} "#)
        })
        .collect::<String>();
    let response = app.query(&format!("{{ {query} }}")).await;

    assert!(response.get("errors").is_none(), "{response}");
    assert_eq!(app.counts().mosia_calls, 6);
    assert_eq!(
        state.max.load(Ordering::SeqCst),
        2,
        "two at a time, never more, never one by one"
    );
}

#[tokio::test]
async fn the_cache_is_bounded_by_body_size() {
    let up = Upstreams::start().await;
    up.mosia_documented(2).await;
    // The documented body is about 1.5 KB: it does not fit in a 1 KB cache.
    let app = up.app_with(|s| s.cache.max_bytes = 1024).await;
    let query = LATEST;

    for _ in 0..2 {
        let response = app.query(query).await;
        assert_eq!(
            response["data"]["beneficiary"]["latestProtocols"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }
}

#[tokio::test]
async fn a_cached_longer_list_of_latest_protocols_serves_a_shorter_one() {
    let up = Upstreams::start().await;
    mosia_get()
        .and(header("totalProtocolos", "10"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("mosia/ultimos-protocolos.200.json")),
        )
        .expect(1)
        .mount(&up.mosia)
        .await;
    let app = up.app().await;

    let ten = app
        .query(r#"{ beneficiary(uniqueKey: "13331584754") { latestProtocols(limit: 10) { number } } }"#)
        .await;
    let two = app
        .query(
            r#"{ beneficiary(uniqueKey: "13331584754") { latestProtocols(limit: 2) { number } } }"#,
        )
        .await;

    let ten = ten["data"]["beneficiary"]["latestProtocols"]
        .as_array()
        .unwrap()
        .clone();
    let two = two["data"]["beneficiary"]["latestProtocols"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ten.len(), 3, "the documented body has three");
    assert_eq!(two, ten[..2]);
}
