//! The HTTP surface: GET and POST, GraphiQL, health, federation, the checked-in SDL, and
//! start-up configuration errors.

use std::process::Command;

use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{Upstreams, codes, fixture, mosia_get};

#[tokio::test]
async fn get_runs_queries_from_the_query_string() {
    let up = Upstreams::start().await;
    up.mosia_documented(1).await;
    let app = up.app().await;

    let response = app
        .get("/graphql?query=query%20Q(%24k%3A%20ID)%7Bbeneficiary(uniqueKey%3A%24k)%7BlatestProtocols(limit%3A1)%7Bnumber%7D%7D%7D&variables=%7B%22k%22%3A%2213331584754%22%7D")
        .await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["data"]["beneficiary"]["latestProtocols"],
        json!([{ "number": "1111120240710000017" }])
    );
}

#[tokio::test]
async fn a_mutation_over_get_is_refused_and_reaches_no_upstream() {
    let up = Upstreams::start().await;
    let app = up.app().await;

    let response = app
        .get("/graphql?query=mutation%7BaddAuthorizationAttachments(input%3A%7Bprotocol%3A%221%22%2Cattachments%3A%5B%7Bhref%3A%22https%3A%2F%2Fa.b%2Fc%22%7D%5D%7D)%7Bprotocol%7D%7D")
        .await;

    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "METHOD_NOT_ALLOWED"
    );
    assert_eq!(up.totvs_resource_requests().await, 0);
}

#[tokio::test]
async fn browsers_get_graphiql_and_probes_get_health() {
    let up = Upstreams::start().await;
    let app = up.app().await;

    let page = app
        .client
        .get(format!("{}/graphql", app.address))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("/graphiql/graphiql.min.js"), "GraphiQL page");
    let script = app.get("/graphiql/graphiql.min.js").await;
    assert_eq!(script.status(), 200);
    assert!(
        script.bytes().await.unwrap().len() > 100_000,
        "GraphiQL is served from the binary"
    );
    assert!(html.contains("/graphql"));

    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn a_body_that_is_not_graphql_gets_a_graphql_error() {
    let up = Upstreams::start().await;
    let app = up.app().await;

    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST");
}

#[tokio::test]
async fn syntax_and_unknown_fields_get_codes_of_their_own() {
    let up = Upstreams::start().await;
    let app = up.app().await;

    let syntax = app.query("{ beneficiary(").await;
    assert_eq!(
        syntax["errors"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );
    let unknown = app.query("{ nope }").await;
    assert_eq!(
        unknown["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    let wrong_type = app
        .query(r#"{ beneficiary(uniqueKey: "1") { latestProtocols(limit: "x") { number } } }"#)
        .await;
    assert_eq!(
        wrong_type["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn the_subgraph_publishes_its_sdl_with_federation_keys() {
    let up = Upstreams::start().await;
    let app = up.app().await;

    let response = app.query("{ _service { sdl } }").await;
    let sdl = response["data"]["_service"]["sdl"].as_str().unwrap();

    assert!(
        sdl.contains(r#"type Beneficiary @key(fields: "uniqueKey") @key(fields: "subscriberId")"#),
        "{sdl}"
    );
    assert!(
        sdl.contains(r#"type AuthorizationProtocol @key(fields: "subscriberId protocol")"#),
        "{sdl}"
    );
    assert!(sdl.contains("specs.apollo.dev/federation"));
}

#[tokio::test]
async fn entities_resolve_by_each_key() {
    let up = Upstreams::start().await;
    up.mosia_documented(None).await;
    Mock::given(method("GET"))
        .and(path(
            "/rest/totvsHealthPlans/attendance/v1/authorizations/00011008000027010/protocols",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("totvs/protocols.200.json")))
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app
        .query_with(
            r#"query($r: [_Any!]!) { _entities(representations: $r) {
                __typename
                ... on Beneficiary { uniqueKey subscriberId name }
                ... on AuthorizationProtocol { protocol status professional { name } } } }"#,
            json!({ "r": [
                { "__typename": "Beneficiary", "uniqueKey": "13331584754" },
                { "__typename": "Beneficiary", "subscriberId": "00011008000027010" },
                { "__typename": "AuthorizationProtocol", "subscriberId": "00011008000027010", "protocol": "41750520230601000030" }
            ]}),
        )
        .await;

    insta::assert_json_snapshot!(response, @r#"
    {
      "data": {
        "_entities": [
          {
            "__typename": "Beneficiary",
            "name": "Patrick Oliveira Cabral",
            "subscriberId": null,
            "uniqueKey": "13331584754"
          },
          {
            "__typename": "Beneficiary",
            "name": "HERNANDES ALVES DA SILVA",
            "subscriberId": "00011008000027010",
            "uniqueKey": null
          },
          {
            "__typename": "AuthorizationProtocol",
            "professional": {
              "name": "ANDRE"
            },
            "protocol": "41750520230601000030",
            "status": "UNDER_ANALYSIS"
          }
        ]
      }
    }
    "#);
}

#[test]
fn schema_graphql_is_the_generated_sdl() {
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert!(
        checked_in == protocol_graph::sdl(),
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}

#[test]
fn serve_without_configuration_names_every_missing_setting_and_the_sandbox() {
    let output = Command::new(env!("CARGO_BIN_EXE_protocol-graph"))
        .arg("serve")
        .env_clear()
        .env("MOSIA_BASE_URL", "https://mosia.example")
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "protocol-graph: configuration error: MOSIA_TOKEN, TOTVS_BASE_URL, TOTVS_USERNAME, \
         TOTVS_PASSWORD, AUTH_JWT_SECRET or AUTH_JWKS_URL (or AUTH_DISABLED=true) are not set \
         (to try the gateway without real upstreams: protocol-graph sandbox)"
    );
}

#[test]
fn serve_with_a_malformed_setting_names_it_without_echoing_secrets() {
    let output = Command::new(env!("CARGO_BIN_EXE_protocol-graph"))
        .arg("serve")
        .env_clear()
        .env("MOSIA_BASE_URL", "https://mosia.example")
        .env("MOSIA_TOKEN", "t0ken-value")
        .env("TOTVS_BASE_URL", "not a url")
        .env("TOTVS_USERNAME", "u")
        .env("TOTVS_PASSWORD", "pa55word-value")
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("TOTVS_BASE_URL is invalid"), "{stderr}");
    assert!(!stderr.contains("pa55word") && !stderr.contains("t0ken"));
}

#[test]
fn a_config_file_with_a_bad_value_names_the_key() {
    let dir = std::env::temp_dir().join(format!("pg-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[cache]\nmosia_ttl_secs = \"soon\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_protocol-graph"))
        .arg("serve")
        .env_clear()
        .env("CONFIG_FILE", &file)
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("mosia_ttl_secs"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn graphiqls_introspection_query_passes_the_depth_and_complexity_limits() {
    let up = Upstreams::start().await;
    let app = up.app().await;

    let response = app.query(include_str!("introspection.graphql")).await;

    assert!(response.get("errors").is_none(), "{response}");
    let types = response["data"]["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "AuthorizationProtocol"));
}

#[tokio::test]
async fn fields_come_back_in_the_order_the_query_asked_for_them() {
    let up = Upstreams::start().await;
    mosia_get()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("mosia/ultimos-protocolos.200.json"))
                .set_delay(std::time::Duration::from_millis(200)),
        )
        .mount(&up.mosia)
        .await;
    let app = up.app().await;

    // `latestProtocols` waits for Mosia; `uniqueKey` is known at once.
    let body = app
        .post(&json!({ "query": r#"{ beneficiary(uniqueKey: "13331584754") { latestProtocols(limit: 1) { number } uniqueKey } }"# }))
        .await
        .text()
        .await
        .unwrap();

    assert_eq!(
        body,
        r#"{"data":{"beneficiary":{"latestProtocols":[{"number":"1111120240710000017"}],"uniqueKey":"13331584754"}}}"#
    );
}

#[tokio::test]
async fn only_configured_browser_origins_get_cors_headers() {
    let up = Upstreams::start().await;
    let app = up
        .app_with(|s| s.server.cors_allowed_origins = vec!["https://app.example.com".into()])
        .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.address))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };

    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn an_entity_representation_with_both_keys_keeps_both() {
    let up = Upstreams::start().await;
    let app = up.app().await;

    let response = app
        .query_with(
            r#"query($r: [_Any!]!) { _entities(representations: $r) { ... on Beneficiary { uniqueKey subscriberId } } }"#,
            json!({ "r": [{ "__typename": "Beneficiary", "uniqueKey": "13331584754", "subscriberId": "00011008000027010" }] }),
        )
        .await;

    assert_eq!(
        response["data"]["_entities"],
        json!([{ "uniqueKey": "13331584754", "subscriberId": "00011008000027010" }])
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_as_graphql_whether_sized_or_chunked() {
    let up = Upstreams::start().await;
    let app = up.app().await;
    let body = serde_json::to_vec(
        &json!({ "query": "{ __typename }", "variables": { "x": "a".repeat(100_000) } }),
    )
    .unwrap();

    let sized = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let chunks = futures::stream::iter(
        body.chunks(8192)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();

    for response in [sized, chunked] {
        assert_eq!(response.status(), 413);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
    }
}

#[tokio::test]
async fn client_mistakes_in_variables_get_client_codes_and_reach_no_upstream() {
    let up = Upstreams::start().await;
    // Any upstream call would fail these `.expect(0)`.
    up.mosia_documented(0).await;
    up.list_documented(0).await;
    let app = up.app().await;

    let undeclared = app
        .query(r#"{ beneficiary(uniqueKey: $k) { latestProtocols { number } } }"#)
        .await;
    assert_eq!(codes(&undeclared), ["GRAPHQL_VALIDATION_FAILED"]);

    let not_given = app
        .query_with(
            r#"query($k: ID!) { beneficiary(uniqueKey: $k) { latestProtocols { number } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(codes(&not_given), ["BAD_USER_INPUT"]);

    let wrong_type = app
        .query_with(
            r#"query($n: Int!) { beneficiary(uniqueKey: "13331584754") { latestProtocols(limit: $n) { number } } }"#,
            json!({ "n": "three" }),
        )
        .await;
    assert_eq!(codes(&wrong_type), ["BAD_USER_INPUT"]);

    let wrong_shape = app
        .query_with(
            r#"mutation($i: AddAuthorizationAttachmentsInput!) { addAuthorizationAttachments(input: $i) { status } }"#,
            json!({ "i": { "protocol": "41750520230620000004", "attachments": "not a list of objects" } }),
        )
        .await;
    assert_eq!(codes(&wrong_shape), ["BAD_USER_INPUT"]);
    let missing_field = app
        .query_with(
            r#"mutation($i: AddAuthorizationAttachmentsInput!) { addAuthorizationAttachments(input: $i) { status } }"#,
            json!({ "i": { "protocol": "41750520230620000004" } }),
        )
        .await;
    assert_eq!(codes(&missing_field), ["BAD_USER_INPUT"]);
}

#[tokio::test]
async fn an_identifier_sent_as_a_json_number_is_refused_as_bad_user_input() {
    let up = Upstreams::start().await;
    up.list_documented(0).await;
    let app = up.app().await;

    let as_variable = app
        .query_with(
            r#"query($s: ID!) { beneficiary(subscriberId: $s) { authorizationProtocols { hasNext } } }"#,
            json!({ "s": 11008000027010_u64 }),
        )
        .await;
    assert_eq!(codes(&as_variable), ["BAD_USER_INPUT"]);
    let message = as_variable["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("must be a string"), "{message}");
    assert!(as_variable.get("data").is_none_or(Value::is_null));

    let as_literal = app
        .query(r#"{ beneficiary(subscriberId: 11008000027010) { authorizationProtocols { hasNext } } }"#)
        .await;
    assert_eq!(codes(&as_literal), ["BAD_USER_INPUT"]);
    assert_eq!(
        as_literal["errors"][0]["extensions"]["argument"],
        "subscriberId"
    );

    let as_string = app
        .query_with(
            r#"query($s: ID!) { beneficiary(subscriberId: $s) { subscriberId } }"#,
            json!({ "s": "00011008000027010" }),
        )
        .await;
    assert_eq!(
        as_string["data"]["beneficiary"]["subscriberId"],
        "00011008000027010"
    );
}

#[tokio::test]
async fn an_apollo_client_registers_a_persisted_query_once_then_sends_only_its_hash_over_get() {
    let up = Upstreams::start().await;
    up.mosia_documented(1).await;
    let app = up.app().await;
    let query = r#"{ beneficiary(uniqueKey: "13331584754") { latestProtocols { number } } }"#;
    let hash = protocol_graph::persisted_query_hash(query);
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });

    // Apollo Client first sends the hash alone...
    let first = app.post(&json!({ "extensions": extensions })).await;
    let first: Value = first.json().await.unwrap();
    assert_eq!(codes(&first), ["PERSISTED_QUERY_NOT_FOUND"]);
    assert_eq!(first["errors"][0]["message"], "PersistedQueryNotFound");
    // ...then the document with it...
    let second: Value = app
        .post(&json!({ "query": query, "extensions": extensions }))
        .await
        .json()
        .await
        .unwrap();
    assert!(second.get("errors").is_none(), "{second}");
    // ...and from then on the hash alone, over GET, which a CDN can cache.
    let encoded: String =
        url::form_urlencoded::byte_serialize(extensions.to_string().as_bytes()).collect();
    let third: Value = app
        .get(&format!("/graphql?extensions={encoded}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(third["data"], second["data"]);
}

#[tokio::test]
async fn the_health_command_probes_the_gateway_at_listen_addr() {
    let up = Upstreams::start().await;
    let app = up.app().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let probe = |addr: String| {
        Command::new(env!("CARGO_BIN_EXE_protocol-graph"))
            .arg("health")
            .env_clear()
            .env("LISTEN_ADDR", addr)
            .output()
            .unwrap()
    };
    let up_answer = tokio::task::spawn_blocking(move || probe(addr))
        .await
        .unwrap();
    assert!(up_answer.status.success(), "{up_answer:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let down = tokio::task::spawn_blocking(move || probe(closed_addr))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(2));
}

#[test]
fn serve_help_lists_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_protocol-graph"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "MOSIA_BASE_URL",
        "TOTVS_PASSWORD",
        "AUTH_JWT_SECRET",
        "AUTH_DISABLED",
        "CONFIG_FILE",
        "sandbox",
    ] {
        assert!(help.contains(variable), "{variable} missing from:\n{help}");
    }
}

#[tokio::test]
async fn graphiql_opens_with_the_configured_headers_in_every_example_tab() {
    let up = Upstreams::start().await;
    let app = up
        .app_with(|settings| {
            settings.server.graphiql_headers =
                Some(r#"{"Authorization":"Bearer abc</script><script>alert(1)"}"#.into());
        })
        .await;
    let page = app
        .client
        .get(format!("{}/graphql", app.address))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"const defaultHeaders = "{\"Authorization\":\"Bearer abc\u003c/script>"#),
        "{page}"
    );
    assert!(!page.contains("</script><script>alert"));
    assert!(page.contains("headers: defaultHeaders"));
    assert!(page.contains("rel=\"icon\""));
}
