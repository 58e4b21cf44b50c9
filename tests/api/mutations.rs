//! The two TOTVS mutations: every documented outcome, input refused before TOTVS, no blind
//! retries, one submission per double click, and fresh reads afterwards.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{body_json, method, path},
};

use crate::helpers::{
    API, LIST, PROTOCOLS, TestApp, Upstreams, assert_no_secrets, fixture, list_get,
};

const ATTACH: &str = r#"mutation($input: AddAuthorizationAttachmentsInput!) {
    addAuthorizationAttachments(input: $input) { protocol subscriberId beneficiaryName status statusCode
        professional { name council councilNumber councilState } authorizationNumber authType } }"#;
const REQUEST: &str = r#"mutation($input: RequestAuthorizationInput!) {
    requestAuthorization(input: $input) { protocol subscriberId status professional { name council councilState } } }"#;

fn attachments_path() -> String {
    format!("{API}/protocols/attachments")
}

fn documented_input() -> Value {
    json!({ "input": {
        "protocol": "41750520230620000004",
        "attachments": [{ "href": "https://img.olhardigital.com.br/wp-content/uploads/2019/01/20190115163721.jpg" }]
    }})
}

async fn totvs_attach_answers(up: &Upstreams, template: ResponseTemplate, calls: u64) {
    Mock::given(method("POST"))
        .and(path(attachments_path()))
        .respond_with(template)
        .expect(calls)
        .mount(&up.totvs)
        .await;
}

/// The documented attachment request, to a TOTVS that answers it once with `status` and the
/// fixture `body`: the gateway's response.
async fn attach_answered(status: u16, body: &str) -> Value {
    let up = Upstreams::start().await;
    totvs_attach_answers(
        &up,
        ResponseTemplate::new(status).set_body_json(fixture(body)),
        1,
    )
    .await;
    up.app().await.query_with(ATTACH, documented_input()).await
}

#[tokio::test]
async fn attachments_are_posted_as_documented_and_the_protocol_returned() {
    let up = Upstreams::start().await;
    Mock::given(method("POST"))
        .and(path(attachments_path()))
        .and(body_json(fixture("totvs/attachments.request.json")))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("totvs/attachments.201.json")),
        )
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app.query_with(ATTACH, documented_input()).await;

    insta::assert_json_snapshot!(response, @r#"
    {
      "data": {
        "addAuthorizationAttachments": {
          "authType": null,
          "authorizationNumber": null,
          "beneficiaryName": "HERNANDES ALVES DA SILVA",
          "professional": {
            "council": "CRM",
            "councilNumber": "1234567",
            "councilState": "SP",
            "name": "VINICIUS"
          },
          "protocol": "41750520230620000003",
          "status": "UNDER_ANALYSIS",
          "statusCode": "7",
          "subscriberId": "00011008000027010"
        }
      }
    }
    "#);
}

#[tokio::test]
async fn each_documented_totvs_refusal_has_its_own_code() {
    let cases = [
        (
            400,
            "totvs/attachments.400-status.json",
            "ATTACHMENTS_NOT_ALLOWED",
        ),
        (
            400,
            "totvs/attachments.400-download.json",
            "ATTACHMENT_DOWNLOAD_FAILED",
        ),
        (404, "totvs/attachments.404.json", "NOT_FOUND"),
        (406, "totvs/attachments.406-fields.json", "BAD_USER_INPUT"),
    ];
    for (status, body, code) in cases {
        let up = Upstreams::start().await;
        totvs_attach_answers(
            &up,
            ResponseTemplate::new(status).set_body_json(fixture(body)),
            1,
        )
        .await;
        let app = up.app().await;

        let response = app.query_with(ATTACH, documented_input()).await;

        assert_eq!(response["data"], json!(null), "{body}");
        let ext = &response["errors"][0]["extensions"];
        assert_eq!(ext["code"], code, "{body}: {response}");
        assert_eq!(ext["service"], "totvs");
        assert_eq!(ext["status"], status);
        assert_eq!(ext["upstreamCode"], fixture(body)["code"], "{body}");
    }
}

#[tokio::test]
async fn a_failed_download_keeps_the_totvs_details_but_not_a_url_the_caller_did_not_send() {
    // The documented E007 body names `...2019011516321.jpg`, not the documented request's
    // `...20190115163721.jpg`: TOTVS's text is not the caller's, so no `failedUrl`.
    let response = attach_answered(400, "totvs/attachments.400-download.json").await;

    insta::assert_json_snapshot!(response["errors"][0], @r#"
    {
      "extensions": {
        "code": "ATTACHMENT_DOWNLOAD_FAILED",
        "details": [
          {
            "code": "E006-1",
            "message": "Erro ao realizar download do arquivo."
          }
        ],
        "service": "totvs",
        "status": 400,
        "upstreamCode": "E007"
      },
      "locations": [
        {
          "column": 5,
          "line": 2
        }
      ],
      "message": "TOTVS could not download an attachment: Erro ao incluir um anexo",
      "path": [
        "addAuthorizationAttachments"
      ]
    }
    "#);
}

#[tokio::test]
async fn a_failed_download_names_the_callers_href_that_totvs_could_not_download() {
    let href = "https://img.olhardigital.com.br/wp-content/uploads/2019/01/20190115163721.jpg";
    let mut body = fixture("totvs/attachments.400-download.json");
    body["details"][0]["detailedMessage"] = json!(format!(
        "Status code: 404; host=protheus-db01.corp.local\r\n; Url: {href}"
    ));
    let up = Upstreams::start().await;
    totvs_attach_answers(&up, ResponseTemplate::new(400).set_body_json(body), 1).await;
    let response = up.app().await.query_with(ATTACH, documented_input()).await;

    let extensions = &response["errors"][0]["extensions"];
    assert_eq!(extensions["code"], "ATTACHMENT_DOWNLOAD_FAILED");
    assert_eq!(extensions["failedUrl"], href);
    // Nothing else of TOTVS's technical text reaches the caller.
    assert!(
        !response.to_string().contains("protheus-db01"),
        "{response}"
    );
}

#[tokio::test]
async fn a_406_keeps_every_detail() {
    let response = attach_answered(406, "totvs/attachments.406-fields.json").await;

    assert_eq!(
        response["errors"][0]["extensions"]["details"],
        json!([
            { "code": "E002D-406", "message": "Tipo inválido para o campo protocol" },
            { "code": "E002B-406", "message": "Campo attachments obrigatório" }
        ])
    );
}

#[tokio::test]
async fn a_5xx_on_a_write_is_reported_and_never_retried() {
    let up = Upstreams::start().await;
    totvs_attach_answers(&up, ResponseTemplate::new(502), 1).await;
    let app = up.app().await;

    let response = app.query_with(ATTACH, documented_input()).await;

    assert_eq!(
        response["errors"][0]["extensions"]["code"],
        "UPSTREAM_UNAVAILABLE"
    );
}

#[tokio::test]
async fn a_write_that_times_out_says_the_outcome_is_unknown_and_is_not_retried() {
    let up = Upstreams::start().await;
    totvs_attach_answers(
        &up,
        ResponseTemplate::new(201)
            .set_body_json(fixture("totvs/attachments.201.json"))
            .set_delay(Duration::from_secs(5)),
        1,
    )
    .await;
    let app = up.app_with(|s| s.upstream.timeout_ms = 300).await;

    let response = app.query_with(ATTACH, documented_input()).await;

    let error = &response["errors"][0];
    assert_eq!(
        error["extensions"],
        json!({"code": "UPSTREAM_TIMEOUT", "service": "totvs", "outcomeUnknown": true})
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("outcome is unknown"),
        "{error}"
    );
}

#[tokio::test]
async fn a_401_on_a_write_renews_the_token_and_sends_once_more() {
    let up = Upstreams::start().await;
    Mock::given(method("POST"))
        .and(path(attachments_path()))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"code": "401", "message": "expirado"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&up.totvs)
        .await;
    totvs_attach_answers(
        &up,
        ResponseTemplate::new(201).set_body_json(fixture("totvs/attachments.201.json")),
        1,
    )
    .await;
    let app = up.app().await;

    let response = app.query_with(ATTACH, documented_input()).await;

    assert_eq!(
        response["data"]["addAuthorizationAttachments"]["protocol"],
        "41750520230620000003"
    );
    assert_no_secrets(&response.to_string());
}

#[tokio::test]
async fn invalid_input_is_refused_by_field_and_index_before_totvs() {
    let up = Upstreams::start().await;
    let app = up.app().await;
    let href = |h: &str| json!({ "href": h });
    let long = format!("https://files.example/{}", "a".repeat(2040));
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"protocol": "1", "attachments": []}),
            "input.attachments",
        ),
        (
            json!({"protocol": "1", "attachments": vec![href("https://a.example/x"); 21]}),
            "input.attachments",
        ),
        (
            json!({"protocol": " ", "attachments": [href("https://a.example/x")]}),
            "input.protocol",
        ),
        (
            json!({"protocol": "1", "attachments": [href("https://a.example/x"), href("ftp://a.example/x")]}),
            "input.attachments[1].href",
        ),
        (
            json!({"protocol": "1", "attachments": [href("/relative/x.pdf")]}),
            "input.attachments[0].href",
        ),
        (
            json!({"protocol": "1", "attachments": [href("https://user:pw@a.example/x")]}),
            "input.attachments[0].href",
        ),
        (
            json!({"protocol": "1", "attachments": [href("https://a.example/x"), href("https://a.example/y"), href(&long)]}),
            "input.attachments[2].href",
        ),
        (
            json!({"protocol": "1", "attachments": [href("https://")]}),
            "input.attachments[0].href",
        ),
    ];
    for (input, argument) in cases {
        let response = app.query_with(ATTACH, json!({ "input": input })).await;
        let ext = &response["errors"][0]["extensions"];
        assert_eq!(ext["code"], "BAD_USER_INPUT", "{input}: {response}");
        assert_eq!(ext["argument"], argument, "{input}: {response}");
    }
    let base = json!({"subscriberId": "00011008000027010", "professionalName": "ANDRE",
                      "attachments": [href("https://a.example/x")]});
    let with = |key: &str, value: Value| {
        let mut input = base.clone();
        input[key] = value;
        input
    };
    let cases = [
        (
            with("stateAbbreviation", json!("XX")),
            "input.stateAbbreviation",
        ),
        (
            with("professionalName", json!("  ")),
            "input.professionalName",
        ),
        (
            with("subscriberId", json!("00011\u{7}")),
            "input.subscriberId",
        ),
        (
            with("attachments", json!([href("mailto:a@b.c")])),
            "input.attachments[0].href",
        ),
    ];
    for (input, argument) in cases {
        let response = app.query_with(REQUEST, json!({ "input": input })).await;
        let ext = &response["errors"][0]["extensions"];
        assert_eq!(ext["code"], "BAD_USER_INPUT", "{input}: {response}");
        assert_eq!(ext["argument"], argument, "{input}: {response}");
    }
    assert_eq!(up.totvs_resource_requests().await, 0, "TOTVS heard nothing");
}

#[tokio::test]
async fn a_double_click_reaches_totvs_once() {
    let up = Upstreams::start().await;
    totvs_attach_answers(
        &up,
        ResponseTemplate::new(201)
            .set_body_json(fixture("totvs/attachments.201.json"))
            .set_delay(Duration::from_millis(300)),
        1,
    )
    .await;
    let app = up.app().await;

    let (first, second) = tokio::join!(
        app.query_with(ATTACH, documented_input()),
        app.query_with(ATTACH, documented_input())
    );
    // And once more, just after the first one succeeded.
    let third = app.query_with(ATTACH, documented_input()).await;

    assert!(first.get("errors").is_none(), "{first}");
    assert_eq!(first, second);
    assert_eq!(first, third);
    assert_eq!(app.counts().mutations_deduplicated, 2);
}

#[tokio::test]
async fn different_inputs_are_separate_submissions() {
    let up = Upstreams::start().await;
    totvs_attach_answers(
        &up,
        ResponseTemplate::new(201).set_body_json(fixture("totvs/attachments.201.json")),
        2,
    )
    .await;
    let app = up.app().await;
    let mut other = documented_input();
    other["input"]["attachments"][0]["href"] = json!("https://files.example/other.pdf");

    app.query_with(ATTACH, documented_input()).await;
    app.query_with(ATTACH, other).await;
}

#[tokio::test]
async fn a_failed_submission_can_be_sent_again() {
    let up = Upstreams::start().await;
    totvs_attach_answers(
        &up,
        ResponseTemplate::new(400).set_body_json(fixture("totvs/attachments.400-download.json")),
        2,
    )
    .await;
    let app = up.app().await;

    for _ in 0..2 {
        let response = app.query_with(ATTACH, documented_input()).await;
        assert_eq!(
            response["errors"][0]["extensions"]["code"],
            "ATTACHMENT_DOWNLOAD_FAILED"
        );
    }
}

#[tokio::test]
async fn request_authorization_posts_the_documented_body() {
    let up = Upstreams::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{API}/protocols")))
        .and(body_json(json!({
            "subscriberId": "00011008000027010", "professionalName": "VINICIUS",
            "stateAbbreviation": "SP", "professionalCouncil": "CRM", "professionalCouncilNumber": "1234567",
            "attachments": [{ "href": "https://files.example/pedido.pdf" }]
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("totvs/attachments.201.json")))
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app
        .query_with(REQUEST, json!({ "input": {
            "subscriberId": "00011008000027010", "professionalName": "VINICIUS", "stateAbbreviation": "sp",
            "professionalCouncil": "CRM", "professionalCouncilNumber": "1234567",
            "attachments": [{ "href": "https://files.example/pedido.pdf" }]
        }}))
        .await;

    assert_eq!(
        response["data"]["requestAuthorization"],
        json!({ "protocol": "41750520230620000003", "subscriberId": "00011008000027010", "status": "UNDER_ANALYSIS",
                "professional": { "name": "VINICIUS", "council": "CRM", "councilState": "SP" } })
    );
}

#[tokio::test]
async fn after_a_mutation_the_protocol_and_its_lists_are_read_fresh() {
    let up = Upstreams::start().await;
    up.list_documented(2).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "{API}/protocols/41750520230601000030/interactions"
        )))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("totvs/interactions.200.json")),
        )
        .expect(2)
        .mount(&up.totvs)
        .await;
    let mut answer = fixture("totvs/attachments.201.json");
    answer["protocol"] = json!("41750520230601000030");
    totvs_attach_answers(&up, ResponseTemplate::new(201).set_body_json(answer), 1).await;
    let app = up.app().await;
    let read = r#"{ beneficiary(subscriberId: "00011008000027010") { authorizationProtocols { items { protocol interactions { hasNext } } } } }"#;

    app.query(read).await;
    app.query(read).await; // cached
    let mut input = documented_input();
    input["input"]["protocol"] = json!("41750520230601000030");
    app.query_with(ATTACH, input).await;
    app.query(read).await; // fresh: list and interactions go upstream again
    app.query(read).await; // cached again
}

#[tokio::test]
async fn the_sandbox_moves_a_protocol_awaiting_documents_on_and_the_graph_shows_it() {
    let (app, _sandbox) = TestApp::with_sandbox().await;
    let read = r#"{ authorizationProtocol(subscriberId: "00011008000027010", protocol: "41750520230620000004") {
        status interactions { remainingRecords items { reason } } } }"#;
    let before = app.query(read).await;
    assert_eq!(
        before["data"]["authorizationProtocol"]["status"], "AWAITING_DOCUMENT",
        "{before}"
    );

    let attached = app.query_with(ATTACH, documented_input()).await;
    assert_eq!(
        attached["data"]["addAuthorizationAttachments"]["status"], "UNDER_ANALYSIS",
        "{attached}"
    );

    let after = app.query(read).await;
    assert_eq!(
        after["data"]["authorizationProtocol"]["status"], "UNDER_ANALYSIS",
        "{after}"
    );
    let before_count = before["data"]["authorizationProtocol"]["interactions"]["items"]
        .as_array()
        .unwrap()
        .len();
    let after_count = after["data"]["authorizationProtocol"]["interactions"]["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        after_count,
        before_count + 1,
        "the attachment shows as an interaction"
    );
}

#[tokio::test]
async fn the_sandbox_refuses_what_totvs_refuses() {
    let (app, _sandbox) = TestApp::with_sandbox().await;
    let attach = |protocol: &str, href: &str| json!({ "input": { "protocol": protocol, "attachments": [{ "href": href }] } });

    let cases = [
        // Status 1 (authorized) refuses documents: E003.
        (
            "41750520230415000012",
            "https://files.example/a.pdf",
            "code",
            "ATTACHMENTS_NOT_ALLOWED",
        ),
        // The sandbox cannot download an href containing "missing": E007.
        (
            "41750520230620000004",
            "https://files.example/missing.pdf",
            "failedUrl",
            "https://files.example/missing.pdf",
        ),
        // E004.
        (
            "00000000000000000000",
            "https://files.example/a.pdf",
            "code",
            "NOT_FOUND",
        ),
    ];
    for (protocol, href, key, want) in cases {
        let response = app.query_with(ATTACH, attach(protocol, href)).await;
        assert_eq!(response["errors"][0]["extensions"][key], want, "{response}");
    }
}

#[tokio::test]
async fn a_requested_authorization_appears_in_the_subscribers_list() {
    let (app, _sandbox) = TestApp::with_sandbox().await;
    let list = r#"{ beneficiary(subscriberId: "00020015000112003") { authorizationProtocols(pageSize: 100) { items { protocol status } } } }"#;
    let before = app.query(list).await;

    let created = app
        .query_with(REQUEST, json!({ "input": {
            "subscriberId": "00020015000112003", "professionalName": "DRA. LUCIA", "professionalCouncil": "CRM",
            "stateAbbreviation": "RJ", "attachments": [{ "href": "https://files.example/pedido.pdf" }]
        }}))
        .await;
    let protocol = created["data"]["requestAuthorization"]["protocol"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));

    let after = app.query(list).await;
    let items = |r: &Value| {
        r["data"]["beneficiary"]["authorizationProtocols"]["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(items(&after).len(), items(&before).len() + 1);
    assert!(items(&after).iter().any(|p| p["protocol"] == protocol));
}

#[tokio::test]
async fn a_list_holding_a_changed_protocol_is_fresh_even_when_totvs_omits_the_subscriber() {
    let up = Upstreams::start().await;
    up.list_documented(2).await;
    let mut answer = fixture("totvs/attachments.201.json");
    answer["protocol"] = json!("41750520230601000030");
    answer.as_object_mut().unwrap().remove("subscriberId");
    totvs_attach_answers(&up, ResponseTemplate::new(201).set_body_json(answer), 1).await;
    let app = up.app().await;
    let mut input = documented_input();
    input["input"]["protocol"] = json!("41750520230601000030");

    app.query(LIST).await;
    app.query(LIST).await; // cached
    app.query_with(ATTACH, input).await;
    app.query(LIST).await; // the list holds the changed protocol: read again
}

#[tokio::test]
async fn a_read_joining_a_fetch_older_than_a_mutation_reads_again() {
    let up = Upstreams::start().await;
    list_get()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("totvs/protocols.200.json"))
                .set_delay(Duration::from_millis(1000)),
        )
        .expect(2)
        .mount(&up.totvs)
        .await;
    totvs_attach_answers(
        &up,
        ResponseTemplate::new(201).set_body_json(fixture("totvs/attachments.201.json")),
        1,
    )
    .await;
    let app = up.app().await;

    // A read whose upstream fetch is in flight...
    let before = app.query(LIST);
    let mutate_then_read = async {
        while !up
            .totvs
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.url.path() == PROTOCOLS)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ...then a mutation of that subscriber, then a read that would join that fetch.
        app.query_with(ATTACH, documented_input()).await;
        app.query(LIST).await
    };
    let (before, after) = tokio::join!(before, mutate_then_read);

    assert!(before.get("errors").is_none(), "{before}");
    assert!(after.get("errors").is_none(), "{after}");
}
