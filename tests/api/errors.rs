//! Failures: each upstream outcome has its code, one failing upstream nulls only its fields,
//! bad arguments never reach an upstream, and no secret ever reaches a client.

use std::time::Duration;

use serde_json::json;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{any, method, path},
};

use crate::helpers::{
    API, LIST, TOKEN_PATH, Upstreams, assert_no_secrets, codes, error_at, fixture, list_get,
    mosia_get,
};

const BOTH: &str = r#"{ beneficiary(uniqueKey: "13331584754", subscriberId: "00011008000027010") {
    uniqueKey latestProtocols { number } authorizationProtocols { items { protocol } } } }"#;

async fn mosia_answers(up: &Upstreams, template: ResponseTemplate) {
    mosia_get().respond_with(template).mount(&up.mosia).await;
}

async fn totvs_answers(up: &Upstreams, template: ResponseTemplate) {
    list_get().respond_with(template).mount(&up.totvs).await;
}

#[tokio::test]
async fn a_failing_totvs_nulls_only_its_field() {
    let up = Upstreams::start().await;
    mosia_answers(
        &up,
        ResponseTemplate::new(200).set_body_json(fixture("mosia/ultimos-protocolos.200.json")),
    )
    .await;
    totvs_answers(
        &up,
        ResponseTemplate::new(503).set_body_string("<html>down</html>"),
    )
    .await;
    let app = up.app().await;

    let response = app.query(BOTH).await;

    let b = &response["data"]["beneficiary"];
    assert_eq!(b["uniqueKey"], "13331584754");
    assert_eq!(b["latestProtocols"].as_array().unwrap().len(), 3);
    assert_eq!(b["authorizationProtocols"], json!(null));
    insta::assert_json_snapshot!(error_at(&response, &["beneficiary", "authorizationProtocols"]), @r#"
    {
      "extensions": {
        "code": "UPSTREAM_UNAVAILABLE",
        "service": "totvs",
        "status": 503
      },
      "locations": [
        {
          "column": 42,
          "line": 2
        }
      ],
      "message": "TOTVS is unavailable",
      "path": [
        "beneficiary",
        "authorizationProtocols"
      ]
    }
    "#);
}

#[tokio::test]
async fn latest_protocols_returns_not_found_when_mosia_404s() {
    let up = Upstreams::start().await;
    mosia_answers(
        &up,
        ResponseTemplate::new(404).set_body_json(json!({"status": false, "message": "x"})),
    )
    .await;
    totvs_answers(
        &up,
        ResponseTemplate::new(200).set_body_json(fixture("totvs/protocols.200.json")),
    )
    .await;
    let app = up.app().await;

    let response = app.query(BOTH).await;

    assert_eq!(
        response["data"]["beneficiary"]["latestProtocols"],
        json!(null)
    );
    assert_eq!(
        response["data"]["beneficiary"]["authorizationProtocols"]["items"][0]["protocol"],
        "41750520230601000030"
    );
    let err = error_at(&response, &["beneficiary", "latestProtocols"]);
    assert_eq!(
        err["extensions"],
        json!({"code": "NOT_FOUND", "service": "mosia", "status": 404})
    );
}

#[tokio::test]
async fn a_mosia_envelope_with_status_false_is_an_upstream_error() {
    let up = Upstreams::start().await;
    mosia_answers(
        &up,
        ResponseTemplate::new(200).set_body_json(json!({
            "status": false, "data": null, "message": "Falha", "critical": [], "statusCode": 200
        })),
    )
    .await;
    let app = up.app().await;

    let response = app
        .query(r#"{ beneficiary(uniqueKey: "1") { latestProtocols { number } } }"#)
        .await;

    assert_eq!(codes(&response), ["UPSTREAM_ERROR"]);
    assert_eq!(
        response["data"]["beneficiary"]["latestProtocols"],
        json!(null)
    );
}

#[tokio::test]
async fn a_malformed_totvs_body_is_an_upstream_error_not_a_panic() {
    let up = Upstreams::start().await;
    totvs_answers(
        &up,
        ResponseTemplate::new(200).set_body_string(r#"{"items": "oops""#),
    )
    .await;
    let app = up.app().await;

    let response = app
        .query(r#"{ beneficiary(subscriberId: "00011008000027010") { authorizationProtocols { items { protocol } } } }"#)
        .await;

    assert_eq!(
        error_at(&response, &["beneficiary", "authorizationProtocols"])["extensions"],
        json!({"code": "UPSTREAM_ERROR", "service": "totvs", "status": 200})
    );
}

#[tokio::test]
async fn totvs_404_keeps_the_totvs_code_and_406_keeps_its_details() {
    let up = Upstreams::start().await;
    totvs_answers(
        &up,
        ResponseTemplate::new(404).set_body_json(fixture("totvs/protocols.404.json")),
    )
    .await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/2/protocols")))
        .respond_with(ResponseTemplate::new(406).set_body_json(fixture("totvs/protocols.406.json")))
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app
        .query(r#"{ a: beneficiary(subscriberId: "00011008000027010") { authorizationProtocols { hasNext } }
                   b: beneficiary(subscriberId: "2") { authorizationProtocols { hasNext } } }"#)
        .await;

    insta::assert_json_snapshot!(error_at(&response, &["a", "authorizationProtocols"]), @r#"
    {
      "extensions": {
        "code": "NOT_FOUND",
        "service": "totvs",
        "status": 404,
        "upstreamCode": "E001"
      },
      "locations": [
        {
          "column": 55,
          "line": 1
        }
      ],
      "message": "TOTVS found nothing for this request: Usuário não encontrado",
      "path": [
        "a",
        "authorizationProtocols"
      ]
    }
    "#);
    insta::assert_json_snapshot!(error_at(&response, &["b", "authorizationProtocols"]), @r#"
    {
      "extensions": {
        "code": "BAD_USER_INPUT",
        "details": [
          {
            "code": "E001-406",
            "message": "Chave subscriberId obrigatória"
          }
        ],
        "service": "totvs",
        "status": 406,
        "upstreamCode": "E001"
      },
      "locations": [
        {
          "column": 56,
          "line": 2
        }
      ],
      "message": "TOTVS rejected the request as invalid: Existem chaves obrigatórias que não foram informadas.",
      "path": [
        "b",
        "authorizationProtocols"
      ]
    }
    "#);
}

#[tokio::test]
async fn a_slow_upstream_times_out_with_its_own_code() {
    let up = Upstreams::start().await;
    mosia_answers(
        &up,
        ResponseTemplate::new(200)
            .set_body_json(fixture("mosia/ultimos-protocolos.200.json"))
            .set_delay(Duration::from_secs(10)),
    )
    .await;
    totvs_answers(
        &up,
        ResponseTemplate::new(200).set_body_json(fixture("totvs/protocols.200.json")),
    )
    .await;
    let app = up.app_with(|s| s.upstream.timeout_ms = 300).await;

    let response = app.query(BOTH).await;

    assert_eq!(
        error_at(&response, &["beneficiary", "latestProtocols"])["extensions"],
        json!({"code": "UPSTREAM_TIMEOUT", "service": "mosia"})
    );
    assert_eq!(
        response["data"]["beneficiary"]["authorizationProtocols"]["items"][0]["protocol"],
        "41750520230601000030"
    );
    assert_eq!(
        app.counts().mosia_calls,
        1,
        "a timed-out GET is not retried"
    );
}

#[tokio::test]
async fn a_dead_upstream_is_unavailable() {
    let up = Upstreams::start().await;
    // Nothing listens on port 9 of loopback (discard), so the connection is refused.
    let app = up
        .app_with(|s| s.mosia.base_url = "http://127.0.0.1:9".parse().unwrap())
        .await;

    let response = app
        .query(r#"{ beneficiary(uniqueKey: "1") { latestProtocols { number } } }"#)
        .await;

    assert_eq!(
        response["errors"][0]["extensions"],
        json!({"code": "UPSTREAM_UNAVAILABLE", "service": "mosia"})
    );
    assert_eq!(
        app.counts().mosia_calls,
        3,
        "a refused GET is tried twice more"
    );
}

#[tokio::test]
async fn a_get_answered_503_is_retried_twice_then_reported() {
    let up = Upstreams::start().await;
    list_get()
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app.query(LIST).await;

    assert_eq!(codes(&response), ["UPSTREAM_UNAVAILABLE"]);
}

#[tokio::test]
async fn a_get_answered_502_or_504_is_retried_as_configured() {
    for status in [502, 504] {
        let up = Upstreams::start().await;
        list_get()
            .respond_with(ResponseTemplate::new(status))
            .expect(2)
            .mount(&up.totvs)
            .await;
        let app = up.app_with(|s| s.upstream.get_retries = 1).await;

        let response = app.query(LIST).await;

        assert_eq!(codes(&response), ["UPSTREAM_UNAVAILABLE"], "{status}");
    }
}

#[tokio::test]
async fn a_get_answered_500_is_not_retried() {
    let up = Upstreams::start().await;
    list_get()
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app.query(LIST).await;

    assert_eq!(codes(&response), ["UPSTREAM_UNAVAILABLE"]);
}

#[tokio::test]
async fn one_token_request_serves_many_concurrent_resolvers() {
    let up = Upstreams::start().await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(r"/protocols$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("totvs/protocols.200.json"))
                .set_delay(Duration::from_millis(20)),
        )
        .expect(6)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let query = (0..6)
        .map(|i| format!(r#"b{i}: beneficiary(subscriberId: "0001100800002701{i}") {{ authorizationProtocols {{ hasNext }} }}"#))
        .collect::<String>();
    let response = app.query(&format!("{{ {query} }}")).await;

    assert!(response.get("errors").is_none(), "{response}");
    let token_calls = up
        .totvs
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == TOKEN_PATH)
        .count();
    assert_eq!(token_calls, 1);
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_and_the_call_retried() {
    let up = Upstreams::start().await;
    // The first protocols call is refused; the retry with a fresh token succeeds.
    list_get()
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"code": "401", "message": "expired"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&up.totvs)
        .await;
    up.list_documented(1).await;
    let app = up.app().await;

    let response = app
        .query(r#"{ beneficiary(subscriberId: "00011008000027010") { authorizationProtocols { items { protocol } } } }"#)
        .await;

    assert!(response.get("errors").is_none(), "{response}");
    let logins = up
        .totvs
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            r.url.path() == TOKEN_PATH
                && r.url.query().unwrap_or("").contains("grant_type=password")
        })
        .count();
    assert_eq!(logins, 2, "logged in, then logged in again after the 401");
}

#[tokio::test]
async fn credentials_refused_after_one_renewal_are_upstream_auth_failed_without_secrets() {
    let up = Upstreams::start().await;
    list_get()
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"code": "401", "message": "Token inválido"})),
        )
        .expect(2)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app.query(LIST).await;

    assert_eq!(codes(&response), ["UPSTREAM_AUTH_FAILED"]);
    assert_no_secrets(&response.to_string());
}

#[tokio::test]
async fn a_refused_login_is_upstream_auth_failed_and_names_no_secret() {
    let up = Upstreams::start().await;
    up.totvs.reset().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"code": "401", "message": "Usuário ou senha inválidos"})),
        )
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app.query(LIST).await;

    assert_eq!(
        response["errors"][0]["extensions"],
        json!({"code": "UPSTREAM_AUTH_FAILED", "service": "totvs", "status": 401})
    );
    assert_no_secrets(&response.to_string());
    let login = &up.totvs.received_requests().await.unwrap()[0];
    assert!(login.url.query().unwrap().contains("grant_type=password"));
    assert!(login.url.query().unwrap().contains("username=gateway"));
}

#[tokio::test]
async fn bad_arguments_are_refused_by_name_before_any_upstream_call() {
    let up = Upstreams::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&up.mosia)
        .await;
    let app = up.app().await;

    let cases = [
        (r#"{ beneficiary { name } }"#, "uniqueKey"),
        (r#"{ beneficiary(uniqueKey: "   ") { name } }"#, "uniqueKey"),
        (
            r#"{ beneficiary(uniqueKey: "1\r\nX-Injected: yes") { latestProtocols { number } } }"#,
            "uniqueKey",
        ),
        (
            r#"{ beneficiary(uniqueKey: "1") { latestProtocols(limit: 0) { number } } }"#,
            "limit",
        ),
        (
            r#"{ beneficiary(uniqueKey: "1") { latestProtocols(limit: 11) { number } } }"#,
            "limit",
        ),
        (
            r#"{ beneficiary(subscriberId: "1") { authorizationProtocols(page: 0) { hasNext } } }"#,
            "page",
        ),
        (
            r#"{ beneficiary(subscriberId: "1") { authorizationProtocols(pageSize: 101) { hasNext } } }"#,
            "pageSize",
        ),
        (
            r#"{ beneficiary(subscriberId: "1") { authorizationProtocols(status: [UNKNOWN]) { hasNext } } }"#,
            "status",
        ),
        (
            r#"{ beneficiary(subscriberId: "1") { latestProtocols { number } } }"#,
            "uniqueKey",
        ),
        (
            r#"{ beneficiary(uniqueKey: "1") { authorizationProtocols { hasNext } } }"#,
            "subscriberId",
        ),
        (
            r#"{ authorizationProtocol(subscriberId: "", protocol: "1") { protocol } }"#,
            "subscriberId",
        ),
    ];
    for (query, argument) in cases {
        let response = app.query(query).await;
        let error = &response["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{query}: {response}"
        );
        assert_eq!(
            error["extensions"]["argument"], argument,
            "{query}: {response}"
        );
    }
    assert_eq!(up.totvs_resource_requests().await, 0, "no TOTVS call");
}

#[tokio::test]
async fn identifiers_cannot_change_the_upstream_path() {
    let up = Upstreams::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{API}/x%3Fpage=9%23f/protocols")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"items": [], "hasNext": false, "remainingRecords": 0})),
        )
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app
        .query(
            r#"{ beneficiary(subscriberId: "x?page=9#f") { authorizationProtocols { hasNext } } }"#,
        )
        .await;

    assert_eq!(
        response["data"]["beneficiary"]["authorizationProtocols"]["hasNext"], false,
        "{response}"
    );
}

#[tokio::test]
async fn a_totvs_5xx_keeps_its_code_but_not_its_internals() {
    let up = Upstreams::start().await;
    list_get()
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "code": 500, "message": "ORA-00942: table or view does not exist"
        })))
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app.query(LIST).await;

    let error = &response["errors"][0];
    assert_eq!(
        error["extensions"],
        json!({"code": "UPSTREAM_UNAVAILABLE", "service": "totvs", "status": 500, "upstreamCode": "500"})
    );
    assert!(!response.to_string().contains("ORA-"), "{response}");
}

#[tokio::test]
async fn dot_only_and_path_separator_identifiers_are_refused_before_any_call() {
    let up = Upstreams::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;
    for id in ["..", ".", "../00011008000027010", "a\\b"] {
        let body = app
            .query_with(
                r#"query($s: ID!) { beneficiary(subscriberId: $s) { authorizationProtocols { hasNext } } }"#,
                serde_json::json!({ "s": id }),
            )
            .await;
        assert_eq!(codes(&body), ["BAD_USER_INPUT"], "{id}: {body}");
    }
}
