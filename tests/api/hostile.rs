//! Upstream answers are untrusted: a page far longer than asked for, items about someone
//! else, bodies past the size cap, absurd token lifetimes and error bodies full of internals
//! or control characters never reach a client, panic the gateway or grow its memory.

use axum::{Router, body::Body, routing::get};
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path, path_regex},
};

use crate::helpers::{
    API, LIST, TOKEN_PATH, Upstreams, codes, error_at, fixture, list_get, mosia_get,
};

const SUBSCRIBER: &str = "00011008000027010";
const UNIQUE_KEY: &str = "13331584754";

fn interactions_get() -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path_regex(format!("^{API}/protocols/[^/]+/interactions$")))
}

async fn interaction_calls(up: &Upstreams) -> usize {
    up.totvs
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path().ends_with("/interactions"))
        .count()
}

#[tokio::test]
async fn a_page_far_longer_than_page_size_is_cut_to_it_and_only_its_items_fan_out() {
    let up = Upstreams::start().await;
    // 10,000 items in about 200 KB: under the body cap, so trimmed rather than refused.
    let items: Vec<Value> = (0..10_000)
        .map(|i| json!({"protocol": format!("P{i}")}))
        .collect();
    list_get()
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"items": items, "hasNext": true})),
        )
        .expect(1)
        .mount(&up.totvs)
        .await;
    interactions_get()
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("totvs/interactions.200.json")),
        )
        .expect(3)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app
        .query(&format!(
            r#"{{ beneficiary(subscriberId: "{SUBSCRIBER}") {{ authorizationProtocols(pageSize: 3) {{
                items {{ protocol interactions {{ items {{ sector }} }} }} }} }} }}"#
        ))
        .await;

    assert!(response.get("errors").is_none(), "{response}");
    let items = response["data"]["beneficiary"]["authorizationProtocols"]["items"]
        .as_array()
        .unwrap();
    let protocols: Vec<&str> = items
        .iter()
        .map(|p| p["protocol"].as_str().unwrap())
        .collect();
    assert_eq!(protocols, ["P0", "P1", "P2"]);
    assert_eq!(interaction_calls(&up).await, 3);
    assert_eq!(app.counts().totvs_items_dropped, 9_997);
}

#[tokio::test]
async fn protocols_of_another_subscriber_in_a_list_are_dropped_and_never_shown() {
    let up = Upstreams::start().await;
    let foreign = |key: &str, protocol: &str| json!({"protocol": protocol, key: "99999999999999999", "name": "OUTRA PESSOA", "status": "1"});
    list_get()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [
                // First, where the beneficiary's name is taken from.
                foreign("subscriberId", "FOREIGN-1"),
                {"protocol": "OWN-1", "subscriber-_id": SUBSCRIBER, "name": "HERNANDES", "status": "7"},
                foreign("subscriber-id", "FOREIGN-2"),
                {"protocol": "OWN-2", "name": "HERNANDES", "status": "7"},
                foreign("subscriber_id", "FOREIGN-3"),
            ],
            "hasNext": false
        })))
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app
        .query(&format!(
            r#"{{ beneficiary(subscriberId: "{SUBSCRIBER}") {{ name
                authorizationProtocols {{ items {{ protocol subscriberId beneficiaryName }} }} }} }}"#
        ))
        .await;

    assert!(response.get("errors").is_none(), "{response}");
    let beneficiary = &response["data"]["beneficiary"];
    assert_eq!(beneficiary["name"], "HERNANDES");
    let items = beneficiary["authorizationProtocols"]["items"]
        .as_array()
        .unwrap();
    let protocols: Vec<&str> = items
        .iter()
        .map(|p| p["protocol"].as_str().unwrap())
        .collect();
    assert_eq!(protocols, ["OWN-1", "OWN-2"]);
    assert!(items.iter().all(|p| p["subscriberId"] == SUBSCRIBER));
    let text = response.to_string();
    for leak in ["FOREIGN", "OUTRA PESSOA", "99999999999999999"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
    assert_eq!(app.counts().totvs_items_dropped, 3);
}

#[tokio::test]
async fn protocols_of_another_beneficiary_in_a_mosia_answer_are_dropped_and_never_shown() {
    let up = Upstreams::start().await;
    let mut body = fixture("mosia/ultimos-protocolos.200.json");
    let data = body["data"].as_array_mut().unwrap();
    let mut stranger = data[0].clone();
    stranger["protocolo"] = json!("STRANGER-PROTOCOL");
    stranger["beneficiario"] =
        json!({"nome": "Outra Pessoa - 99988877766", "chaveUnica": "99988877766"});
    // First, where the beneficiary's name is taken from.
    data.insert(0, stranger);
    mosia_get()
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&up.mosia)
        .await;
    let app = up.app().await;

    let response = app
        .query(&format!(
            r#"{{ beneficiary(uniqueKey: "{UNIQUE_KEY}") {{ name
                latestProtocols {{ number beneficiary {{ uniqueKey name }} }} }} }}"#
        ))
        .await;

    assert!(response.get("errors").is_none(), "{response}");
    let beneficiary = &response["data"]["beneficiary"];
    assert_eq!(beneficiary["name"], "Patrick Oliveira Cabral");
    let latest = beneficiary["latestProtocols"].as_array().unwrap();
    assert_eq!(latest.len(), 3);
    assert!(
        latest
            .iter()
            .all(|p| p["beneficiary"]["uniqueKey"] == UNIQUE_KEY)
    );
    let text = response.to_string();
    for leak in ["STRANGER", "Outra Pessoa", "99988877766"] {
        assert!(!text.contains(leak), "{leak} leaked: {text}");
    }
    assert_eq!(app.counts().mosia_items_dropped, 1);
}

/// A list body of a little over the default cap (512 KiB), valid JSON all the same.
fn oversized_list() -> String {
    let padding = " ".repeat(512 * 1024);
    format!(r#"{{"items": [], "hasNext": false{padding}}}"#)
}

#[tokio::test]
async fn a_body_past_max_response_bytes_with_a_content_length_is_an_upstream_error() {
    let up = Upstreams::start().await;
    list_get()
        .respond_with(ResponseTemplate::new(200).set_body_raw(oversized_list(), "application/json"))
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app.query(LIST).await;

    let error = error_at(&response, &["beneficiary", "authorizationProtocols"]);
    assert_eq!(error["extensions"]["code"], "UPSTREAM_ERROR");
    assert_eq!(error["extensions"]["service"], "totvs");
    assert_eq!(
        response["data"]["beneficiary"]["authorizationProtocols"],
        Value::Null
    );
}

#[tokio::test]
async fn a_chunked_body_past_max_response_bytes_is_an_upstream_error() {
    // Streamed in 8 KiB chunks without a Content-Length: only counting while reading stops it.
    let chunks = || {
        let body = oversized_list().into_bytes();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(8 * 1024).map(|c| Ok(c.to_vec())).collect();
        Body::from_stream(futures::stream::iter(chunks))
    };
    let router = Router::new().route(
        "/clientes/ocorrencias/ultimosProtocolos",
        get(move || async move { chunks() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mosia_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let up = Upstreams::start().await;
    let app = up
        .app_with(|s| s.mosia.base_url = mosia_url.parse().unwrap())
        .await;

    let response = app.query(crate::helpers::LATEST).await;

    let error = error_at(&response, &["beneficiary", "latestProtocols"]);
    assert_eq!(error["extensions"]["code"], "UPSTREAM_ERROR");
    assert_eq!(error["extensions"]["service"], "mosia");
}

#[tokio::test]
async fn absurd_token_lifetimes_neither_panic_nor_fail_the_request() {
    for expires_in in [
        json!(9_223_372_036_854_775_807_i64),
        json!(u64::MAX),
        json!(-3600),
        json!("forever"),
        json!(3600.5),
        json!(null),
    ] {
        let up = Upstreams::start().await;
        up.totvs.reset().await;
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "access_token": "t", "refresh_token": "r", "token_type": "Bearer",
                "expires_in": expires_in
            })))
            .mount(&up.totvs)
            .await;
        up.list_documented(2).await;
        let app = up.app().await;

        // Two requests, two reads (a new page is not in the cache), one token.
        let first = app.query(LIST).await;
        let second = app
            .query(&format!(
                r#"{{ beneficiary(subscriberId: "{SUBSCRIBER}") {{
                    authorizationProtocols(page: 2) {{ hasNext }} }} }}"#
            ))
            .await;

        for response in [first, second] {
            assert!(response.get("errors").is_none(), "{expires_in}: {response}");
        }
    }
}

/// The field's error for a TOTVS 400 answering `fault`.
async fn error_for_fault(fault: Value) -> Value {
    let up = Upstreams::start().await;
    list_get()
        .respond_with(ResponseTemplate::new(400).set_body_json(fault))
        .mount(&up.totvs)
        .await;
    let app = up.app().await;
    let response = app.query(LIST).await;
    assert_eq!(codes(&response), ["BAD_USER_INPUT"], "{response}");
    let error = error_at(&response, &["beneficiary", "authorizationProtocols"]).clone();
    let text = response.to_string();
    for secret in [
        "NullPointerException",
        "protheus-db01",
        "corp.local",
        "1521",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    error
}

#[tokio::test]
async fn a_totvs_fault_shows_its_code_and_message_but_never_its_technical_text() {
    let error = error_for_fault(json!({
        "code": "E001",
        "message": "Chave subscriberId inválida",
        "detailedMessage": "java.lang.NullPointerException at BKU.prw:42 host=protheus-db01.corp.local:1521",
        "helpUrl": "https://wiki.corp.local/protheus?db=protheus-db01.corp.local:1521",
        "details": [{
            "code": "E001-400",
            "message": "Matrícula inválida",
            "detailedMessage": "SELECT * FROM BA1010 @ protheus-db01.corp.local:1521",
            "helpUrl": "https://wiki.corp.local/E001"
        }]
    }))
    .await;

    assert_eq!(error["extensions"]["upstreamCode"], "E001");
    assert_eq!(error["extensions"]["status"], 400);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .ends_with("Chave subscriberId inválida"),
        "{error}"
    );
    assert_eq!(
        error["extensions"]["details"],
        json!([{"code": "E001-400", "message": "Matrícula inválida"}])
    );
}

fn assert_client_text(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not text: {value}"));
    assert!(
        text.chars().count() <= 300,
        "{} chars",
        text.chars().count()
    );
    assert!(!text.chars().any(char::is_control), "{text:?}");
}

#[tokio::test]
async fn long_upstream_text_with_control_characters_is_cut_to_300_without_them() {
    let hostile = |seed: &str| {
        format!(
            "{seed}\u{0}\u{1b}[31m\r\n\u{7f}\u{85}{}",
            "x\t".repeat(2_500)
        )
    };
    let error = error_for_fault(json!({
        "code": hostile("E\u{8}001"),
        "message": hostile("Mensagem"),
        "details": [{"code": hostile("D"), "message": hostile("Detalhe")}]
    }))
    .await;

    assert_client_text(&error["message"]);
    assert!(error["message"].as_str().unwrap().contains("Mensagem"));
    assert_client_text(&error["extensions"]["upstreamCode"]);
    let detail = &error["extensions"]["details"][0];
    assert_client_text(&detail["code"]);
    assert_client_text(&detail["message"]);
}
