//! What bounds the gateway's use of an upstream across requests: calls in flight per upstream
//! (`upstream.max_in_flight`), the per-request wave (`upstream.max_concurrency`), and the
//! circuit breaker that stops calling an upstream that keeps failing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::sync::Notify;
use wiremock::ResponseTemplate;

use crate::helpers::{LATEST, TestApp, Upstreams, codes, fixture, mosia_get};

/// Counts the requests a fake holds at once. Each request waits until `release_at` are
/// inside (then all go) or until `hold` passes: calls that the gateway lets overlap are
/// certain to be seen overlapping, however slow the machine, and none waits forever.
#[derive(Clone)]
struct Gate {
    inside: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    interactions: Arc<AtomicUsize>,
    all_in: Arc<Notify>,
    release_at: usize,
    hold: Duration,
}

impl Gate {
    fn new(release_at: usize, hold: Duration) -> Self {
        Self {
            inside: Arc::default(),
            peak: Arc::default(),
            interactions: Arc::default(),
            all_in: Arc::default(),
            release_at,
            hold,
        }
    }

    async fn pass(&self) {
        let all_in = self.all_in.notified();
        tokio::pin!(all_in);
        // Registered before counting in, so a release between the two is not missed.
        all_in.as_mut().enable();
        let inside = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(inside, Ordering::SeqCst);
        if inside >= self.release_at {
            self.all_in.notify_waiters();
        } else {
            let _ = tokio::time::timeout(self.hold, all_in).await;
        }
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// A TOTVS whose list of any subscriber has `per_list` protocols, each with one interaction;
/// interactions pass through `gate` (a list is alone in its wave, nothing to overlap with).
/// Its base URL.
async fn gated_totvs(gate: Gate, per_list: usize) -> String {
    async fn token() -> (axum::http::StatusCode, Json<Value>) {
        (
            axum::http::StatusCode::CREATED,
            Json(fixture("totvs/token.201.json")),
        )
    }
    let list = move |Path(subscriber): Path<String>| async move {
        let items: Vec<Value> = (0..per_list)
            .map(|i| json!({"protocol": format!("{subscriber}-{i}"), "name": "A", "status": "7"}))
            .collect();
        Json(json!({"items": items, "hasNext": false, "remainingRecords": 0}))
    };
    let interactions = |State(gate): State<Gate>| async move {
        gate.interactions.fetch_add(1, Ordering::SeqCst);
        gate.pass().await;
        Json(fixture("totvs/interactions.200.json"))
    };
    let api = "/rest/totvsHealthPlans/attendance/v1/authorizations";
    let router = Router::new()
        .route("/rest/api/oauth2/v1/token", post(token))
        .route(&format!("{api}/{{subscriber}}/protocols"), get(list))
        .route(
            &format!("{api}/protocols/{{protocol}}/interactions"),
            get(interactions),
        )
        .with_state(gate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn fan_out(subscriber: &str, page_size: usize) -> String {
    format!(
        r#"{{ beneficiary(subscriberId: "{subscriber}") {{
            authorizationProtocols(pageSize: {page_size}) {{ items {{ interactions {{ items {{ sector }} }} }} }} }} }}"#
    )
}

fn assert_complete(response: &Value, interactions: usize) {
    assert!(response.get("errors").is_none(), "{response}");
    let items = response["data"]["beneficiary"]["authorizationProtocols"]["items"]
        .as_array()
        .unwrap();
    assert_eq!(items.len(), interactions, "{response}");
    assert!(
        items
            .iter()
            .all(|p| p["interactions"]["items"][0]["sector"] == "DEPARTAMENTO PADRAO")
    );
}

#[tokio::test]
async fn calls_in_flight_to_an_upstream_stay_within_max_in_flight_across_requests() {
    // Each call waits for a third to arrive: a cap of 2 that leaked would show 3 at once.
    let gate = Gate::new(3, Duration::from_millis(200));
    let totvs = gated_totvs(gate.clone(), 8).await;
    let up = Upstreams::start().await;
    let app = up
        .app_with(|s| {
            s.totvs.base_url = totvs.parse().unwrap();
            s.upstream.max_in_flight = 2;
        })
        .await;

    let (one, two) = (
        fan_out("00000000000000001", 8),
        fan_out("00000000000000002", 8),
    );
    let (first, second) = tokio::join!(app.query(&one), app.query(&two));

    assert_complete(&first, 8);
    assert_complete(&second, 8);
    assert_eq!(gate.interactions.load(Ordering::SeqCst), 16);
    assert_eq!(
        gate.peak(),
        2,
        "two at a time, never more, never one by one"
    );
}

#[tokio::test]
async fn a_default_page_of_interactions_goes_out_in_one_wave() {
    // 1 list + 20 interactions: the wave is the 20 interactions, released once all are in.
    let gate = Gate::new(20, Duration::from_secs(5));
    let totvs = gated_totvs(gate.clone(), 20).await;
    let up = Upstreams::start().await;
    let app = up
        .app_with(|s| s.totvs.base_url = totvs.parse().unwrap())
        .await;

    let response = app
        .query(
            r#"{ beneficiary(subscriberId: "00011008000027010") {
                authorizationProtocols { items { interactions { items { sector } } } } } }"#,
        )
        .await;

    assert_complete(&response, 20);
    assert_eq!(gate.peak(), 20);
}

/// `count` queries of the documented beneficiary's latest protocols, one after another.
async fn latest_n_times(app: &TestApp, count: usize) -> Vec<Value> {
    let mut responses = Vec::new();
    for _ in 0..count {
        responses.push(app.query(LATEST).await);
    }
    responses
}

#[tokio::test]
async fn after_five_failed_calls_the_breaker_answers_unavailable_without_calling() {
    let up = Upstreams::start().await;
    mosia_get()
        .respond_with(ResponseTemplate::new(500))
        .expect(5)
        .mount(&up.mosia)
        .await;
    let app = up.app().await;

    let responses = latest_n_times(&app, 6).await;

    for failed in &responses[..5] {
        assert_eq!(codes(failed), ["UPSTREAM_UNAVAILABLE"]);
        assert_eq!(failed["errors"][0]["extensions"]["status"], 500);
    }
    let fast = &responses[5];
    assert_eq!(codes(fast), ["UPSTREAM_UNAVAILABLE"]);
    assert_eq!(fast["errors"][0]["extensions"]["service"], "mosia");
    assert_eq!(fast["errors"][0]["extensions"].get("status"), None);
    let counts = app.counts();
    assert_eq!(counts.mosia_calls, 5);
    assert!(counts.mosia_breaker_open);
    assert!(!counts.totvs_breaker_open);
    assert_eq!(counts.mosia_breaker_rejected, 1);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("protocol_graph_breaker_open{service=\"mosia\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("protocol_graph_breaker_opened_total{service=\"mosia\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_open_breaker_still_lets_a_stale_answer_stand_in() {
    let up = Upstreams::start().await;
    mosia_get()
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("mosia/ultimos-protocolos.200.json")),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&up.mosia)
        .await;
    mosia_get()
        .respond_with(ResponseTemplate::new(500))
        .expect(5)
        .mount(&up.mosia)
        .await;
    // A 0 s TTL sends every read upstream, so each is a call the breaker sees.
    let app = up.app_with(|s| s.cache.mosia_ttl_secs = 0).await;

    let responses = latest_n_times(&app, 7).await;

    assert!(app.counts().mosia_breaker_open);
    for stale in &responses[1..] {
        assert_eq!(stale["data"], responses[0]["data"]);
        assert_eq!(stale["extensions"]["warnings"][0]["code"], "STALE_DATA");
    }
    let other = app
        .query(r#"{ beneficiary(uniqueKey: "99999999999") { latestProtocols { number } } }"#)
        .await;
    assert_eq!(codes(&other), ["UPSTREAM_UNAVAILABLE"]);
}

#[tokio::test]
async fn a_64_kib_document_of_aliases_is_refused_before_any_upstream_call() {
    let up = Upstreams::start().await;
    // Neither upstream may hear a thing: no list, no interactions, no beneficiary.
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&up.totvs)
        .await;
    mosia_get()
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&up.mosia)
        .await;
    let app = up.app_with(|s| s.server.max_body_bytes = 64 * 1024).await;
    let mut aliases = String::new();
    let mut n = 0;
    while aliases.len() < 63 * 1024 {
        aliases.push_str(&format!("a{n}: interactions(page: {n}) {{ hasNext }} "));
        n += 1;
    }
    let query = format!(
        r#"{{ beneficiary(subscriberId: "00011008000031015") {{ authorizationProtocols(pageSize: 27) {{ items {{ {aliases} }} }} }} }}"#
    );
    assert!(query.len() <= 64 * 1024, "{}", query.len());
    let body = app.query(&query).await;
    assert_eq!(codes(&body), ["COST_ESTIMATED_TOO_EXPENSIVE"], "{body}");
    let extensions = &body["errors"][0]["extensions"];
    assert_eq!(extensions["limit"], 128);
    assert!(
        extensions["estimated"].as_u64().unwrap() > 40_000,
        "{extensions}"
    );
    assert_eq!(app.counts().totvs_calls + app.counts().mosia_calls, 0);

    // 200 aliased beneficiaries: refused the same way.
    let many: String = (0..200)
        .map(|i| {
            format!(
                r#"b{i}: beneficiary(uniqueKey: "{i:011}") {{ latestProtocols {{ number }} }} "#
            )
        })
        .collect();
    let body = app.query(&format!("{{ {many} }}")).await;
    assert_eq!(codes(&body), ["COST_ESTIMATED_TOO_EXPENSIVE"], "{body}");
}
