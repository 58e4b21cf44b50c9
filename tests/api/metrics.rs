//! `/metrics`: the Prometheus text parsed after known traffic.

use std::collections::BTreeMap;

use protocol_graph::{auth::ClaimsBuilder, config::Secret};
use serde_json::{Value, json};

use crate::helpers::{LATEST, LIST, Upstreams, codes};

/// One sample: its metric name and labels, and its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a Prometheus text exposition (the subset the gateway writes: no escapes in
/// label values, no timestamps).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap_or_else(|_| panic!("{line}")),
            }
        })
        .collect()
}

fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("key=\"value\"");
        let (value, after) = after.split_once('"').expect("a closing quote");
        labels.insert(key.to_owned(), value.to_owned());
        rest = after.strip_prefix(',').unwrap_or(after);
    }
    labels
}

/// The value of the one sample named `name` with exactly these labels.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == wanted)
        .collect();
    match found.as_slice() {
        [one] => one.value,
        _ => panic!("{} samples {name}{wanted:?} in {samples:#?}", found.len()),
    }
}

const PROTOCOLS_ROUTE: &str =
    "/totvsHealthPlans/attendance/v1/authorizations/{subscriberId}/protocols";

#[tokio::test]
async fn metrics_count_requests_upstream_calls_token_calls_cache_and_refusals() {
    let up = Upstreams::start().await;
    up.mosia_documented(1).await;
    up.list_documented(1).await;
    let app = up.app().await;
    let long_name = "A".repeat(65);

    let named = |name: &str, query: &str| format!("query {name} {}", query);
    app.query(&named("Latest", LATEST)).await;
    app.query(&named("Latest", LATEST)).await;
    app.query(&named("Protocols", LIST)).await;
    app.query(&named(&long_name, "{ __typename }")).await;
    let parse_failure = app.post(&json!({ "query": "{" })).await;
    assert_eq!(parse_failure.status(), 200);
    let csrf = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", "text/plain")
        .body(r#"{"query":"{ __typename }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(csrf.status(), 400);

    let response = app.get("/metrics").await;
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    for identifier in ["13331584754", "00011008000027010"] {
        assert!(!text.contains(identifier), "personal data in a label");
    }
    let samples = parse(&text);
    let requests = |operation, kind, outcome| {
        value(
            &samples,
            "protocol_graph_request_duration_seconds_count",
            &[
                ("operation", operation),
                ("type", kind),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(requests("Latest", "query", "ok"), 2.0);
    assert_eq!(requests("Protocols", "query", "ok"), 1.0);
    assert_eq!(
        requests("other", "query", "ok"),
        1.0,
        "a name over 64 characters"
    );
    assert_eq!(requests("anonymous", "unknown", "rejected"), 1.0);
    let buckets = [
        ("operation", "Latest"),
        ("type", "query"),
        ("outcome", "ok"),
    ];
    let mut inf = buckets.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        value(
            &samples,
            "protocol_graph_request_duration_seconds_bucket",
            &inf
        ),
        2.0
    );

    let calls = |service| {
        value(
            &samples,
            "protocol_graph_upstream_calls_total",
            &[("service", service)],
        )
    };
    assert_eq!(calls("mosia"), 1.0);
    assert_eq!(calls("totvs"), 1.0, "the list; the token call is apart");
    assert_eq!(calls("totvs_token"), 1.0);
    let timed = |service, route, status| {
        value(
            &samples,
            "protocol_graph_upstream_call_duration_seconds_count",
            &[("service", service), ("route", route), ("status", status)],
        )
    };
    assert_eq!(timed("totvs", PROTOCOLS_ROUTE, "200"), 1.0);
    assert_eq!(timed("totvs_token", "/api/oauth2/v1/token", "201"), 1.0);
    assert_eq!(
        timed("mosia", "/clientes/ocorrencias/ultimosProtocolos", "200"),
        1.0
    );

    let plain = |name| value(&samples, name, &[]);
    assert_eq!(
        plain("protocol_graph_whole_response_hits_total"),
        1.0,
        "the second Latest, answered whole"
    );
    assert_eq!(plain("protocol_graph_cache_hits_total"), 0.0);
    assert_eq!(plain("protocol_graph_cache_misses_total"), 2.0);
    assert_eq!(plain("protocol_graph_cache_coalesced_total"), 0.0);
    assert_eq!(plain("protocol_graph_stale_served_total"), 0.0);
    let fresh = [("tier", "fresh")];
    assert_eq!(value(&samples, "protocol_graph_cache_entries", &fresh), 2.0);
    assert!(value(&samples, "protocol_graph_cache_bytes", &fresh) > 0.0);

    let refusals = |reason| {
        value(
            &samples,
            "protocol_graph_refusals_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(refusals("csrf"), 1.0);
    assert_eq!(refusals("unauthenticated"), 0.0);
    assert_eq!(
        value(
            &samples,
            "protocol_graph_upstream_breaker_state",
            &[("service", "totvs"), ("state", "closed")]
        ),
        1.0
    );
}

#[tokio::test]
async fn refusals_of_authentication_access_and_cost_are_counted_by_reason() {
    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
    let up = Upstreams::start().await;
    up.mosia_documented(0).await;
    let app = up
        .app_with(|s| {
            s.auth.disabled = false;
            s.auth.jwt_secret = Some(Secret::new(SECRET));
            s.limits.max_upstream_calls = 1;
        })
        .await;
    let beneficiary = ClaimsBuilder::new("b")
        .unique_key("13331584754")
        .mint_hs256(SECRET);
    let latest = |key: &str| {
        format!(r#"beneficiary(uniqueKey: "{key}") {{ latestProtocols {{ number }} }}"#)
    };

    let unauthenticated = app.post(&json!({ "query": "{ __typename }" })).await;
    assert_eq!(unauthenticated.status(), 401);
    let other = format!("{{ {} }}", latest("28476190350"));
    let forbidden: Value = app
        .post_as(&beneficiary, &json!({ "query": other }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(codes(&forbidden), ["FORBIDDEN"]);
    let two = format!("{{ a: {} b: {} }}", latest("1"), latest("2"));
    let expensive: Value = app
        .post_as(&beneficiary, &json!({ "query": two }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(codes(&expensive), ["COST_ESTIMATED_TOO_EXPENSIVE"]);

    let samples = parse(&app.get("/metrics").await.text().await.unwrap());
    let refusals = |reason| {
        value(
            &samples,
            "protocol_graph_refusals_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(refusals("unauthenticated"), 1.0);
    assert_eq!(refusals("forbidden"), 1.0);
    assert_eq!(refusals("cost_estimated"), 1.0);
    assert_eq!(refusals("csrf"), 0.0);
    assert_eq!(refusals("rate_limited"), 0.0);
}
