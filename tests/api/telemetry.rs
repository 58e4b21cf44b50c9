//! Request ids, log lines and traces. The tests that need a subscriber install theirs for their
//! own thread only (`#[tokio::test]` runs the app on the test's thread), so they neither see nor
//! disturb the other tests.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use axum::{Router, body::Bytes, http::StatusCode, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::Span,
};
use prost::Message;
use protocol_graph::{
    config::TelemetrySettings,
    telemetry::{self, LogFormat, Telemetry},
};
use serde_json::{Value, json};
use wiremock::{ResponseTemplate, matchers::header_exists};

use crate::helpers::{LATEST, LIST, Upstreams, list_get};

const ID: &str = "req-4f1c.9_a";

async fn get_healthz(app: &crate::helpers::TestApp, id: Option<&str>) -> String {
    let mut request = app.client.get(format!("{}/healthz", app.address));
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    let response = request.send().await.unwrap();
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_fit_request_id_is_echoed_and_any_other_replaced_by_a_fresh_one() {
    let up = Upstreams::start().await;
    let app = up.app().await;

    assert_eq!(get_healthz(&app, Some(ID)).await, ID);
    let generated = get_healthz(&app, None).await;
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    assert_ne!(get_healthz(&app, None).await, generated);
    for unfit in ["two words", &"a".repeat(65), "quote\"d"] {
        let replaced = get_healthz(&app, Some(unfit)).await;
        assert_ne!(replaced, unfit);
        assert_eq!(replaced.len(), 36);
    }
    // Refusals carry it too.
    let refused = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("x-request-id", ID)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.headers()["x-request-id"], ID);
}

/// Log lines in memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, for this thread, the subscriber `serve` installs, logging into the returned lines.
fn subscribe(
    settings: &TelemetrySettings,
) -> (Lines, Telemetry, tracing::dispatcher::DefaultGuard) {
    // With a single dispatcher registered, tracing decides whether a callsite is enabled from
    // the default of the thread that reaches it first: another test's thread, without a
    // subscriber, would switch this test's spans off for good. A second one that lives as
    // long as the process makes it ask every registered dispatcher.
    static BYSTANDER: OnceLock<tracing::Dispatch> = OnceLock::new();
    BYSTANDER.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::new()));
    let lines = Lines::default();
    let writer = lines.clone();
    let (dispatch, telemetry) =
        telemetry::dispatch(settings, LogFormat::Json, move || writer.clone(), false).unwrap();
    (
        lines,
        telemetry,
        tracing::dispatcher::set_default(&dispatch),
    )
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id() {
    let (lines, _telemetry, _guard) = subscribe(&TelemetrySettings::default());
    let up = Upstreams::start().await;
    up.mosia_documented(1).await;
    let app = up.app().await;

    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("x-request-id", ID)
        .json(&json!({ "query": LATEST }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let of_the_request: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            line["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["name"] == "request"))
        })
        .collect();
    assert!(
        of_the_request.iter().any(|line| line["target"] == "audit"),
        "the read was audited within the request: {text}"
    );
    for line in of_the_request {
        assert_eq!(line["spans"][0]["request_id"], ID, "{line}");
        assert_eq!(line["spans"][0]["path"], "/graphql", "{line}");
    }
}

/// An OTLP/HTTP collector on a thread and runtime of its own, so that a test can block its own
/// thread on [`Telemetry::flush`] while the exporter sends here.
fn otlp_receiver() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let received = bodies.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let router = Router::new().route(
                "/v1/traces",
                post(move |body: Bytes| async move {
                    received.lock().unwrap().push(body);
                    StatusCode::OK
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    (url, bodies)
}

fn tracing_to(endpoint: &str) -> TelemetrySettings {
    TelemetrySettings {
        otlp_traces_endpoint: Some(endpoint.parse().unwrap()),
        ..TelemetrySettings::default()
    }
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|AnyValue { value }| value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> &'a str {
    match attribute(span, key) {
        Some(any_value::Value::StringValue(value)) => value,
        other => panic!("{key} of {} is {other:?}", span.name),
    }
}

/// The spans in the OTLP bodies received, by name; each resource is the gateway.
fn exported(bodies: &[Bytes]) -> HashMap<String, Span> {
    let mut spans = HashMap::new();
    for body in bodies {
        let export = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value);
            assert_eq!(
                service,
                Some(any_value::Value::StringValue("protocol-graph".into()))
            );
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.insert(span.name.clone(), span);
            }
        }
    }
    spans
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn spans_of_the_request_and_its_upstream_calls_go_out_over_otlp() {
    let (endpoint, bodies) = otlp_receiver();
    let (_lines, telemetry, _guard) = subscribe(&tracing_to(&endpoint));
    let up = Upstreams::start().await;
    up.list_documented(1).await;
    let app = up.app().await;

    let response = app.query(&format!("query Protocols {LIST}")).await;
    assert!(response.get("errors").is_none(), "{response}");
    // The request's span ends once its answer's body is dropped, which may come just after the
    // client has read it: flush until it is there.
    let mut spans = HashMap::new();
    for _ in 0..200 {
        telemetry.flush();
        spans = exported(&bodies.lock().unwrap());
        if spans.contains_key("POST /graphql") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let request = &spans["POST /graphql"];
    let operation = &spans["query Protocols"];
    let list = &spans["/totvsHealthPlans/attendance/v1/authorizations/{subscriberId}/protocols"];
    let token = &spans["/api/oauth2/v1/token"];

    assert_eq!(text(request, "path"), "/graphql");
    assert_eq!(text(request, "request_id").len(), 36);
    assert_eq!(text(operation, "graphql.operation.name"), "Protocols");
    assert_eq!(text(operation, "graphql.operation.type"), "query");
    assert_eq!(operation.parent_span_id, request.span_id);
    assert_eq!(list.trace_id, request.trace_id, "one trace per request");
    assert_eq!(text(list, "service"), "totvs");
    assert_eq!(text(list, "status"), "200");
    assert_eq!(
        attribute(list, "retry"),
        Some(&any_value::Value::IntValue(0))
    );
    assert_eq!(text(token, "service"), "totvs_token");
    assert_eq!(text(token, "status"), "201");
    for span in spans.values() {
        for kv in &span.attributes {
            let value = format!("{:?}", kv.value);
            assert!(
                !value.contains("00011008000027010"),
                "personal data in {kv:?}"
            );
        }
    }

    // The upstream saw the list call's own span as its parent.
    let requests = up.totvs.received_requests().await.unwrap();
    let to_list = requests
        .iter()
        .find(|r| r.url.path().ends_with("/protocols"))
        .unwrap();
    assert_eq!(
        to_list.headers["traceparent"].to_str().unwrap(),
        format!("00-{}-{}-01", hex(&list.trace_id), hex(&list.span_id))
    );
}

#[tokio::test]
async fn traceparent_goes_upstream_only_when_tracing_is_on() {
    let up = Upstreams::start().await;
    list_get()
        .and(header_exists("traceparent"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(crate::helpers::fixture("totvs/protocols.200.json")),
        )
        .expect(1)
        .mount(&up.totvs)
        .await;
    up.list_documented(1).await;

    {
        // Off: nothing to propagate, so the header-less mock answers.
        let app = up.app().await;
        let response = app.query(LIST).await;
        assert!(response.get("errors").is_none(), "{response}");
    }
    let (endpoint, _bodies) = otlp_receiver();
    let (_lines, _telemetry, _guard) = subscribe(&tracing_to(&endpoint));
    let app = up.app().await;
    let response = app.query(LIST).await;
    assert!(response.get("errors").is_none(), "{response}");
}

#[tokio::test]
async fn audit_lines_name_the_caller_keys_and_outcome_but_no_name_token_or_health_content() {
    use protocol_graph::{auth::ClaimsBuilder, config::Secret};
    const SECRET: &str = "an-audit-test-secret-of-32-bytes!!";
    let (lines, _telemetry, _guard) = subscribe(&TelemetrySettings::default());
    let up = Upstreams::start().await;
    up.mosia_documented(1).await;
    let app = up
        .app_with(|settings| {
            settings.auth.disabled = false;
            settings.auth.jwt_secret = Some(Secret::new(SECRET));
        })
        .await;
    let staff = ClaimsBuilder::new("staff-7").staff().mint_hs256(SECRET);
    let other = ClaimsBuilder::new("beneficiary-9")
        .unique_key("28476190350")
        .mint_hs256(SECRET);
    for token in [&staff, &staff, &other] {
        let response = app.post_as(token, &json!({ "query": LATEST })).await;
        assert_eq!(response.status(), 200);
    }

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let audit: Vec<Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "audit")
        .collect();
    let allowed: Vec<&Value> = audit
        .iter()
        .filter(|l| l["fields"]["outcome"] == "allowed")
        .collect();
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|l| l["fields"]["outcome"] == "refused")
        .collect();
    // Both staff reads are audited, the second (a cache hit) too, and the refusal.
    assert_eq!(allowed.len(), 2, "{text}");
    assert_eq!(refused.len(), 1, "{text}");
    assert_eq!(allowed[0]["fields"]["sub"], "staff-7");
    assert_eq!(allowed[0]["fields"]["unique_key"], "13331584754");
    // The second read was answered whole: its line is logged all the same, for its caller.
    assert_eq!(allowed[1]["fields"]["sub"], "staff-7");
    assert_eq!(allowed[1]["fields"]["unique_key"], "13331584754");
    assert_eq!(allowed[1]["fields"]["cache"], "response");
    assert_eq!(refused[0]["fields"]["sub"], "beneficiary-9");
    for line in &audit {
        let line = line.to_string();
        for secret in [
            staff.as_str(),
            other.as_str(),
            "Patrick",
            "PATRICK",
            "Cabral",
            "Atendimento",
        ] {
            assert!(!line.contains(secret), "{secret} in an audit line: {line}");
        }
    }
}
