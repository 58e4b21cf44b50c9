//! The whole-response cache against a manual clock: an entry lives exactly as long as the
//! upstream answers it was built from, and a response with a warning is never kept.

use std::{sync::Arc, time::Duration};

use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

use super::*;
use crate::{
    auth::Scopes,
    config::Settings,
    graphql::{build_schema, execute::Executor},
    upstream::clock::Clock,
};

const LATEST: &str = r#"{ beneficiary(uniqueKey: "13331584754") { latestProtocols { number } } }"#;
const MOSIA_TTL: Duration = Duration::from_secs(30);
const MS: Duration = Duration::from_millis(1);

fn mosia_body() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/mosia/ultimos-protocolos.200.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

struct Harness {
    executor: Executor,
    clock: Clock,
    mosia: MockServer,
    metrics: Arc<Metrics>,
}

impl Harness {
    async fn new() -> Self {
        let mosia = MockServer::start().await;
        let totvs = MockServer::start().await;
        let mut settings = Settings::for_upstreams(
            &mosia.uri(),
            "mosia-token",
            &format!("{}/rest", totvs.uri()),
            "user",
            "password",
        )
        .unwrap();
        settings.cache.mosia_ttl_secs = MOSIA_TTL.as_secs();
        // A failing Mosia answers at once, without retries in the way of the count.
        settings.upstream.get_retries = 0;
        let metrics = Arc::new(Metrics::default());
        let clock = Clock::manual();
        let upstreams =
            Arc::new(Upstreams::with_clock(&settings, metrics.clone(), clock.clone()).unwrap());
        let schema = build_schema(&settings.server, Some(upstreams.clone()));
        let executor = Executor::new(schema, upstreams, &settings, metrics.clone()).unwrap();
        Self {
            executor,
            clock,
            mosia,
            metrics,
        }
    }

    async fn mosia_answers(&self, status: u16, times: u64) {
        let template = match status {
            200 => ResponseTemplate::new(200).set_body_json(mosia_body()),
            other => ResponseTemplate::new(other),
        };
        Mock::given(method("GET"))
            .respond_with(template)
            .up_to_n_times(times)
            .mount(&self.mosia)
            .await;
    }

    async fn mosia_calls(&self) -> usize {
        self.mosia.received_requests().await.unwrap().len()
    }

    /// Runs [`LATEST`] as staff; the response as JSON.
    async fn latest(&self) -> serde_json::Value {
        let executed = self
            .executor
            .execute(
                Arc::new(Caller::anonymous_staff()),
                async_graphql::Request::new(LATEST),
                true,
            )
            .await;
        match executed.body {
            Some(body) => serde_json::from_slice(&body).unwrap(),
            None => serde_json::to_value(&executed.response).unwrap(),
        }
    }

    fn hits(&self) -> u64 {
        self.metrics.snapshot().whole_response_hits
    }
}

#[tokio::test]
async fn an_entry_lives_as_long_as_the_answer_it_was_built_from() {
    let h = Harness::new().await;
    h.mosia_answers(200, 2).await;

    let first = h.latest().await;
    assert!(first.get("errors").is_none(), "{first}");
    h.clock.advance(MOSIA_TTL - MS);
    assert_eq!(h.latest().await, first);
    assert_eq!((h.mosia_calls().await, h.hits()), (1, 1));

    h.clock.advance(MS);
    assert_eq!(h.latest().await, first);
    assert_eq!(
        (h.mosia_calls().await, h.hits()),
        (2, 1),
        "at the TTL, read upstream again"
    );
    assert_eq!(h.latest().await, first);
    assert_eq!((h.mosia_calls().await, h.hits()), (2, 2), "kept anew");
}

#[tokio::test]
async fn a_response_with_a_stale_warning_is_not_kept() {
    let h = Harness::new().await;
    h.mosia_answers(200, 1).await;
    h.latest().await;
    h.clock.advance(MOSIA_TTL);
    h.mosia_answers(503, 1).await;

    let stale = h.latest().await;
    assert_eq!(
        stale["extensions"]["warnings"][0]["code"], "STALE_DATA",
        "{stale}"
    );
    h.mosia_answers(200, 1).await;
    let fresh = h.latest().await;

    assert!(fresh.get("extensions").is_none(), "{fresh}");
    assert_eq!(
        h.mosia_calls().await,
        3,
        "the stale answer was not served again"
    );
    assert_eq!(h.hits(), 0);
}

fn caller(scopes: Scopes, unique_key: Option<&str>, subscriber_id: Option<&str>) -> Caller {
    Caller {
        sub: "someone".into(),
        scopes,
        unique_key: unique_key.map(str::to_owned),
        subscriber_id: subscriber_id.map(str::to_owned),
    }
}

#[test]
fn keys_tell_apart_every_access_but_the_subject() {
    let request = RequestKey::new(&async_graphql::Request::new(LATEST));
    let key = |caller: &Caller| ResponseKey::new(request.clone(), caller);
    let staff = Scopes {
        read: true,
        write: false,
    };
    let none = Scopes::default();
    let mut other_sub = caller(staff, None, None);
    other_sub.sub = "someone-else".into();

    assert_eq!(key(&caller(staff, None, None)), key(&other_sub));
    let distinct = [
        key(&caller(staff, None, None)),
        key(&caller(
            Scopes {
                read: true,
                write: true,
            },
            None,
            None,
        )),
        key(&caller(none, Some("13331584754"), None)),
        key(&caller(none, Some("28476190350"), None)),
        key(&caller(
            none,
            Some("13331584754"),
            Some("00011008000027010"),
        )),
        key(&caller(none, None, Some("00011008000027010"))),
    ];
    for (i, a) in distinct.iter().enumerate() {
        for b in &distinct[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn variables_and_the_operation_name_are_part_of_the_request_key() {
    let request = |variables: serde_json::Value, name: Option<&str>| {
        let mut request = async_graphql::Request::new("query A($k: ID) { b(k: $k) } query B { c }")
            .variables(async_graphql::Variables::from_json(variables));
        request.operation_name = name.map(str::to_owned);
        RequestKey::new(&request)
    };
    let base = request(serde_json::json!({ "k": "1" }), Some("A"));
    assert_eq!(base, request(serde_json::json!({ "k": "1" }), Some("A")));
    assert_ne!(base, request(serde_json::json!({ "k": "2" }), Some("A")));
    assert_ne!(base, request(serde_json::json!({ "k": "1" }), Some("B")));
    assert_ne!(base, request(serde_json::json!({ "k": "1" }), None));
}
