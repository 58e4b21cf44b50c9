//! GraphQL over HTTP as the `graphql-http` 1.23 server audit checks it (`bench/http-audit.sh`
//! runs the audit itself): the same requests, so that CI keeps the behaviour without node.
//! Every request carries Apollo's preflight header, as the audit's does, so that the CSRF
//! check lets through what the audit probes.

use reqwest::{Method, header::HeaderMap};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, Upstreams, codes};

const NEW: &str = "application/graphql-response+json";
const LEGACY: &str = "application/json";

/// What came back: status, `Content-Type`, the body as JSON (`Null` when it is not JSON).
struct Answer {
    status: u16,
    content_type: String,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        Self {
            status,
            content_type,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// A request the gateway would not run: `{"errors": [...]}` with `code`, no `data` entry.
    fn assert_request_error(&self, status: u16, content_type: &str, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(
            self.content_type.starts_with(content_type),
            "{} for {}",
            self.content_type,
            self.body
        );
        assert_eq!(codes(&self.body), [code], "{}", self.body);
        assert!(self.body.get("data").is_none(), "{}", self.body);
    }

    /// An operation that ran: 200, `data`, and no errors.
    fn assert_ran(&self, content_type: &str) {
        assert_eq!(self.status, 200, "{}", self.body);
        assert!(
            self.content_type.starts_with(content_type),
            "{} for {}",
            self.content_type,
            self.body
        );
        assert!(self.body["data"].is_object(), "{}", self.body);
        assert!(self.body.get("errors").is_none(), "{}", self.body);
    }
}

/// A POST of `body` as it is, with `content_type` and `accept` when given.
async fn post_raw(
    app: &TestApp,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = app
        .client
        .request(Method::POST, format!("{}/graphql", app.address))
        .header("apollo-require-preflight", "true")
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    Answer::from(request.send().await.unwrap()).await
}

/// A POST of `body` as JSON, accepting `accept`.
async fn post(app: &TestApp, accept: Option<&str>, body: Value) -> Answer {
    post_raw(app, Some(LEGACY), accept, body.to_string()).await
}

/// A GET of `/graphql` with `params` in its query string, accepting `accept`.
async fn get(app: &TestApp, accept: Option<&str>, params: &[(&str, &str)]) -> Answer {
    let mut request = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(params)
        .header("apollo-require-preflight", "true");
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    Answer::from(request.send().await.unwrap()).await
}

/// A POST with no `Accept` field at all (reqwest always adds `Accept: */*`): the status line
/// and the body.
async fn post_without_accept(app: &TestApp, body: &str) -> (String, String) {
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

fn typename() -> Value {
    json!({ "query": "{ __typename }" })
}

#[tokio::test]
async fn the_answer_is_in_the_media_type_the_client_accepts() {
    let up = Upstreams::start().await;
    let app = up.app().await;

    // 22EB, 4655, 47DE: each type as asked; legacy clients' `*/*` gets application/json.
    post(&app, Some(NEW), typename()).await.assert_ran(NEW);
    post(&app, Some(LEGACY), typename())
        .await
        .assert_ran(LEGACY);
    post(&app, Some("*/*"), typename()).await.assert_ran(LEGACY);
    // Apollo Client's and browsers' Accept.
    let apollo = "application/graphql-response+json,application/json;q=0.9";
    post(&app, Some(apollo), typename()).await.assert_ran(NEW);
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    post(&app, Some(browser), typename())
        .await
        .assert_ran(LEGACY);
    // 82A3: UTF-8, said in the content type.
    let utf8 = post(&app, Some(NEW), typename()).await;
    assert_eq!(
        utf8.content_type,
        "application/graphql-response+json; charset=utf-8"
    );

    // 80D8: no Accept at all is a legacy client.
    let (head, body) = post_without_accept(&app, &typename().to_string()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/json; charset=utf-8"),
        "{head}"
    );
    assert_eq!(body, r#"{"data":{"__typename":"Query"}}"#);

    // Neither type acceptable: 406, said in application/json.
    for refused in ["text/html", "application/xml", "application/json;q=0"] {
        post(&app, Some(refused), typename())
            .await
            .assert_request_error(406, LEGACY, "NOT_ACCEPTABLE");
    }
    get(&app, Some("text/csv"), &[("query", "{ __typename }")])
        .await
        .assert_request_error(406, LEGACY, "NOT_ACCEPTABLE");
}

#[tokio::test]
async fn requests_that_fail_before_execution_are_400_only_in_the_new_media_type() {
    let up = Upstreams::start().await;
    let app = up.app().await;
    let failures = [
        // 556A, 572B, D586: the document does not parse.
        (json!({ "query": "{" }), "GRAPHQL_PARSE_FAILED"),
        // 74FF, FDE2, 5E5B: a field name cannot start with a digit.
        (
            json!({ "query": "{ 8f31403dfe404bccbb0e835f2629c6a7 }" }),
            "GRAPHQL_PARSE_FAILED",
        ),
        (json!({ "query": "{ nope }" }), "GRAPHQL_VALIDATION_FAILED"),
        // 86EE, 7B9B: a variable that does not coerce.
        (
            json!({ "query": "query CoerceFailure($id: ID!){ __typename }", "variables": { "id": null } }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            json!({ "query": "query A { __typename } query B { __typename }", "operationName": "C" }),
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ];
    for (body, code) in failures {
        // The status says it: 400, and no `data` entry, as a request error has none.
        post(&app, Some(NEW), body.clone())
            .await
            .assert_request_error(400, NEW, code);
        // Legacy clients take any status but 200 for a transport failure: 200, still no `data`.
        post(&app, Some(LEGACY), body.clone())
            .await
            .assert_request_error(200, LEGACY, code);
        post(&app, Some("*/*"), body)
            .await
            .assert_request_error(200, LEGACY, code);
    }
}

#[tokio::test]
async fn an_operation_that_ran_is_200_in_either_type_even_with_field_errors() {
    let up = Upstreams::start().await;
    // No Mosia mock is mounted: Mosia answers 404, an error of the field, not of the request.
    let app = up.app().await;
    let query = json!({ "query": r#"{ beneficiary(uniqueKey: "13331584754") { uniqueKey latestProtocols { number } } }"# });

    for accept in [NEW, LEGACY] {
        let answer = post(&app, Some(accept), query.clone()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.content_type.starts_with(accept));
        assert_eq!(
            answer.body["data"]["beneficiary"]["uniqueKey"],
            "13331584754"
        );
        assert!(!codes(&answer.body).is_empty(), "{}", answer.body);
    }
}

#[tokio::test]
async fn a_post_body_must_be_declared_json() {
    let up = Upstreams::start().await;
    let app = up.app().await;
    let body = typename().to_string();

    // 9ABE: no content type (the preflight header passes the CSRF check), then other types.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/graphql"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
    ] {
        for (accept, answered_in) in [(NEW, NEW), (LEGACY, LEGACY)] {
            post_raw(&app, content_type, Some(accept), body.clone())
                .await
                .assert_request_error(415, answered_in, "UNSUPPORTED_MEDIA_TYPE");
        }
    }
    // BF61, 78D5: UTF-8 whether said or not.
    let emoji = json!({ "query": r#"{ __type(name: "Run🏃Swim🏊") { name } }"# }).to_string();
    for content_type in ["application/json", "application/json; charset=utf-8"] {
        let answer = post_raw(&app, Some(content_type), None, emoji.clone()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, json!({ "data": { "__type": null } }));
    }
    // Without the preflight header the CSRF check answers first, as before.
    let csrf = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    Answer::from(csrf)
        .await
        .assert_request_error(400, LEGACY, "CSRF_ERROR");
}

#[tokio::test]
async fn parameters_of_the_wrong_type_are_400_bad_request() {
    let up = Upstreams::start().await;
    let app = up.app().await;
    let invalid_strings = [
        json!({ "obj": "ect" }),
        json!(0),
        json!(false),
        json!(["array"]),
    ];
    let invalid_maps = [json!("string"), json!(0), json!(false), json!(["array"])];

    let mut bodies = vec![
        // 423L, 8764, 3E3A: no query, or a typo for it.
        json!({ "notquery": "{ __typename }" }),
        json!({ "qeury": "{ __typename }" }),
        json!({ "query": null }),
        // Not one request.
        json!([{ "query": "{ __typename }" }]),
        json!("{ __typename }"),
    ];
    for invalid in &invalid_strings {
        // LKJ0..3, 6C00..3
        bodies.push(json!({ "query": invalid }));
        bodies.push(json!({ "query": "{ __typename }", "operationName": invalid }));
    }
    for invalid in &invalid_maps {
        // 4760..3, 58B0..3
        bodies.push(json!({ "query": "{ __typename }", "variables": invalid }));
        bodies.push(json!({ "query": "{ __typename }", "extensions": invalid }));
    }
    for body in bodies {
        for (accept, answered_in) in [(Some(NEW), NEW), (Some(LEGACY), LEGACY), (None, LEGACY)] {
            post(&app, accept, body.clone()).await.assert_request_error(
                400,
                answered_in,
                "BAD_REQUEST",
            );
        }
    }
    // B6DC, BCF8, B7N8: not JSON; A5BF: no body.
    for raw in ["{ \"not a JSON", ""] {
        for (accept, answered_in) in [(NEW, NEW), (LEGACY, LEGACY)] {
            post_raw(&app, Some(LEGACY), Some(accept), raw)
                .await
                .assert_request_error(400, answered_in, "BAD_REQUEST");
        }
    }
    let named = post(&app, Some(NEW), json!({ "query": 0 })).await;
    assert_eq!(
        named.body["errors"][0]["message"],
        "`query` must be a string"
    );
}

#[tokio::test]
async fn null_and_well_typed_parameters_are_accepted() {
    let up = Upstreams::start().await;
    let app = up.app().await;
    let mut bodies = Vec::new();
    // 94B0..2, 0220..2
    for parameter in ["variables", "operationName", "extensions"] {
        bodies.push(json!({ "query": "{ __typename }", parameter: null }));
    }
    // 8161, B8B3, 2EA1, 28B9, 428F, 1B7A
    bodies.push(json!({ "query": "query Query { __typename }", "operationName": "Query" }));
    bodies.push(json!({
        "query": "query Type($name: String!) { __type(name: $name) { name } }",
        "variables": { "name": "sometype" }
    }));
    bodies.push(json!({ "query": "{ __typename }", "extensions": { "some": "value" } }));
    for body in bodies {
        for accept in [NEW, LEGACY] {
            post(&app, Some(accept), body.clone())
                .await
                .assert_ran(accept);
        }
    }
}

#[tokio::test]
async fn get_runs_queries_with_json_parameters_and_never_mutations() {
    let up = Upstreams::start().await;
    let app = up.app().await;
    let type_query = "query Type($name: String!) { __type(name: $name) { name } }";

    // 5A70: a plain GET; D6D5, 6A70: variables as JSON text, in either type.
    get(&app, None, &[("query", "{ __typename }")])
        .await
        .assert_ran(LEGACY);
    for accept in [NEW, LEGACY] {
        let answer = get(
            &app,
            Some(accept),
            &[
                ("query", type_query),
                ("variables", r#"{"name":"sometype"}"#),
            ],
        )
        .await;
        answer.assert_ran(accept);
        assert_eq!(answer.body["data"]["__type"], Value::Null);
    }
    // `operationName` picks the operation.
    let picked = get(
        &app,
        Some(NEW),
        &[
            (
                "query",
                "query A { a: __typename } query B { b: __typename }",
            ),
            ("operationName", "B"),
        ],
    )
    .await;
    picked.assert_ran(NEW);
    assert_eq!(picked.body["data"], json!({ "b": "Query" }));

    // 9C48: a mutation is 405, with the method that would run it.
    for accept in [NEW, LEGACY] {
        let mutation = get(&app, Some(accept), &[("query", "mutation { __typename }")]).await;
        mutation.assert_request_error(405, accept, "METHOD_NOT_ALLOWED");
        assert_eq!(mutation.headers["allow"], "POST");
    }

    // Parameters of the wrong type, or none.
    for params in [
        &[][..],
        &[("variables", "{}")],
        &[("query", "{ __typename }"), ("variables", "not json")],
        &[("query", "{ __typename }"), ("variables", "[1]")],
        &[("query", "{ __typename }"), ("extensions", "0")],
        &[
            ("query", "{ a: __typename }"),
            ("query", "{ b: __typename }"),
        ],
    ] {
        for accept in [NEW, LEGACY] {
            get(&app, Some(accept), params)
                .await
                .assert_request_error(400, accept, "BAD_REQUEST");
        }
    }
    // A parse failure over GET is a request error like over POST.
    get(&app, Some(NEW), &[("query", "{")])
        .await
        .assert_request_error(400, NEW, "GRAPHQL_PARSE_FAILED");
}

#[tokio::test]
async fn refusals_of_size_are_graphql_errors_in_the_accepted_type() {
    let up = Upstreams::start().await;
    let app = up.app().await;
    let big = json!({ "query": "{ __typename }", "variables": { "x": "a".repeat(100_000) } });

    for (accept, answered_in) in [(NEW, NEW), (LEGACY, LEGACY), ("*/*", LEGACY)] {
        post(&app, Some(accept), big.clone())
            .await
            .assert_request_error(413, answered_in, "PAYLOAD_TOO_LARGE");
    }
}
