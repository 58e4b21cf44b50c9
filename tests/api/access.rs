//! Access control from the outside: tokens forged every way, other beneficiaries' keys through
//! every way of naming them, cross-site requests, rate limits. Every refusal is decided before
//! the upstreams are called: the fakes' `.expect(0)` fails the test otherwise.

use protocol_graph::{auth::ClaimsBuilder, config::Secret};
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path_regex},
};

use crate::helpers::{API, LATEST, TestApp, Upstreams, codes};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const OWN_KEY: &str = "13331584754";
const OWN_SUBSCRIBER: &str = "00011008000027010";
const OTHER_KEY: &str = "28476190350";
const OTHER_SUBSCRIBER: &str = "00011008000031015";

async fn app_with_auth(up: &Upstreams) -> TestApp {
    up.app_with(|settings| {
        settings.auth.disabled = false;
        settings.auth.jwt_secret = Some(Secret::new(SECRET));
    })
    .await
}

fn beneficiary_token() -> String {
    ClaimsBuilder::new("beneficiary-1")
        .unique_key(OWN_KEY)
        .subscriber_id(OWN_SUBSCRIBER)
        .mint_hs256(SECRET)
}

fn staff_token() -> String {
    ClaimsBuilder::new("staff-1").staff().mint_hs256(SECRET)
}

/// No TOTVS resource of the other subscriber may be read.
async fn forbid_other_subscriber_reads(up: &Upstreams) {
    Mock::given(method("GET"))
        .and(path_regex(format!("{API}/{OTHER_SUBSCRIBER}/.*")))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&up.totvs)
        .await;
}

#[tokio::test]
async fn a_request_without_a_valid_token_is_401_with_no_data() {
    let up = Upstreams::start().await;
    up.mosia_documented(0).await;
    let app = app_with_auth(&up).await;
    let body = json!({ "query": LATEST });
    let wrong_secret = ClaimsBuilder::new("x")
        .staff()
        .mint_hs256("another-secret-that-is-32-bytes-long!!");
    let expired = ClaimsBuilder::new("x")
        .staff()
        .expires_in(-120)
        .mint_hs256(SECRET);
    let not_yet = ClaimsBuilder::new("x")
        .staff()
        .not_before_in(600)
        .mint_hs256(SECRET);
    let no_sub = ClaimsBuilder::new("x")
        .staff()
        .without("sub")
        .mint_hs256(SECRET);
    let alg_none = {
        let staff = staff_token();
        let payload = staff.split('.').nth(1).unwrap().to_owned();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
    };
    let tampered = {
        let staff = ClaimsBuilder::new("x")
            .unique_key(OTHER_KEY)
            .mint_hs256(SECRET);
        let parts: Vec<&str> = staff.split('.').collect();
        let forged_claims = ClaimsBuilder::new("x").staff().mint_hs256(SECRET);
        let forged_payload = forged_claims.split('.').nth(1).unwrap();
        format!("{}.{forged_payload}.{}", parts[0], parts[2])
    };
    for (why, header) in [
        ("none", None),
        ("garbage", Some("Bearer not-a-jwt".to_owned())),
        ("no Bearer prefix", Some(staff_token())),
        ("wrong secret", Some(format!("Bearer {wrong_secret}"))),
        ("expired", Some(format!("Bearer {expired}"))),
        ("not yet valid", Some(format!("Bearer {not_yet}"))),
        ("missing sub", Some(format!("Bearer {no_sub}"))),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        ("tampered claims", Some(format!("Bearer {tampered}"))),
    ] {
        let mut request = app
            .client
            .post(format!("{}/graphql", app.address))
            .json(&body);
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{why}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{why}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(codes(&body), ["UNAUTHENTICATED"], "{why}");
        assert!(body.get("data").is_none(), "{why}: {body}");
    }
}

#[tokio::test]
async fn a_beneficiary_reads_its_own_data_with_no_store_caching() {
    let up = Upstreams::start().await;
    up.mosia_documented(1).await;
    let app = app_with_auth(&up).await;

    let response = app
        .post_as(&beneficiary_token(), &json!({ "query": LATEST }))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    let body: Value = response.json().await.unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        body["data"]["beneficiary"]["latestProtocols"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn another_beneficiarys_keys_are_forbidden_however_they_are_named() {
    let up = Upstreams::start().await;
    up.mosia_documented(0).await;
    forbid_other_subscriber_reads(&up).await;
    let app = app_with_auth(&up).await;
    let token = beneficiary_token();

    let attempts = [
        json!({ "query": format!(r#"{{ beneficiary(uniqueKey: "{OTHER_KEY}") {{ latestProtocols {{ number }} }} }}"#) }),
        json!({ "query": format!(r#"{{ mine: beneficiary(uniqueKey: "{OWN_KEY}") {{ uniqueKey }} theirs: beneficiary(subscriberId: "{OTHER_SUBSCRIBER}") {{ authorizationProtocols {{ hasNext }} }} }}"#) }),
        json!({ "query": r#"query($s: ID!) { beneficiary(subscriberId: $s) { authorizationProtocols { hasNext } } }"#, "variables": { "s": OTHER_SUBSCRIBER } }),
        json!({ "query": format!(r#"{{ ...F }} fragment F on Query {{ authorizationProtocol(subscriberId: "{OTHER_SUBSCRIBER}", protocol: "41750520240205000014") {{ status }} }}"#) }),
        json!({ "query": r#"query($r: [_Any!]!) { _entities(representations: $r) { ... on Beneficiary { latestProtocols { number } } } }"#,
                "variables": { "r": [{ "__typename": "Beneficiary", "uniqueKey": OTHER_KEY }] } }),
        // Its own unique key with another's subscriber id is still another beneficiary.
        json!({ "query": format!(r#"{{ beneficiary(uniqueKey: "{OWN_KEY}", subscriberId: "{OTHER_SUBSCRIBER}") {{ authorizationProtocols {{ hasNext }} }} }}"#) }),
    ];
    for attempt in attempts {
        let body: Value = app.post_as(&token, &attempt).await.json().await.unwrap();
        assert!(
            codes(&body).contains(&"FORBIDDEN".to_owned()),
            "{attempt}: {body}"
        );
        assert!(!body.to_string().contains("41750520"), "{attempt}: {body}");
    }
}

#[tokio::test]
async fn data_cached_for_staff_is_not_served_to_another_beneficiary() {
    let up = Upstreams::start().await;
    // One read, by staff; the beneficiary's attempt must not reach Mosia nor the cache.
    up.mosia_documented(1).await;
    let app = app_with_auth(&up).await;

    let staff: Value = app
        .post_as(&staff_token(), &json!({ "query": LATEST }))
        .await
        .json()
        .await
        .unwrap();
    assert!(staff.get("errors").is_none(), "{staff}");
    let other = ClaimsBuilder::new("beneficiary-2")
        .unique_key(OTHER_KEY)
        .mint_hs256(SECRET);
    let body: Value = app
        .post_as(&other, &json!({ "query": LATEST }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(codes(&body), ["FORBIDDEN"]);
    assert_eq!(body["data"]["beneficiary"], Value::Null);
}

#[tokio::test]
async fn a_beneficiary_cannot_attach_to_a_protocol_that_is_not_its_own() {
    let up = Upstreams::start().await;
    // The proof read: the beneficiary's own list, filtered by the protocol, holds nothing.
    Mock::given(method("GET"))
        .and(path_regex(format!("{API}/{OWN_SUBSCRIBER}/protocols")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "items": [], "hasNext": false, "remainingRecords": 0 })),
        )
        .expect(1)
        .mount(&up.totvs)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(".*/attachments"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&up.totvs)
        .await;
    let app = app_with_auth(&up).await;
    let body: Value = app
        .post_as(
            &beneficiary_token(),
            &json!({ "query": r#"mutation { addAuthorizationAttachments(input: { protocol: "41750520240205000014", attachments: [{ href: "https://files.example/a.pdf" }] }) { status } }"# }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(codes(&body), ["FORBIDDEN"]);

    let request_for_other: Value = app
        .post_as(
            &beneficiary_token(),
            &json!({ "query": format!(r#"mutation {{ requestAuthorization(input: {{ subscriberId: "{OTHER_SUBSCRIBER}", professionalName: "DR. X", attachments: [{{ href: "https://files.example/a.pdf" }}] }}) {{ status }} }}"#) }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(codes(&request_for_other), ["FORBIDDEN"]);
}

#[tokio::test]
async fn cross_site_simple_requests_are_refused_before_anything_runs() {
    let up = Upstreams::start().await;
    Mock::given(method("POST"))
        .and(path_regex(".*/attachments"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;
    let mutation = r#"{"query":"mutation { addAuthorizationAttachments(input: { protocol: \"41750520230620000004\", attachments: [{ href: \"https://files.example/a.pdf\" }] }) { status } }"}"#;
    for content_type in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = app
            .client
            .post(format!("{}/graphql", app.address))
            .body(mutation);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{content_type:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(codes(&body), ["CSRF_ERROR"], "{content_type:?}");
    }
    // A preflight header proves the request came from a page allowed to send it.
    let response = app
        .client
        .get(format!("{}/graphql?query={{__typename}}", app.address))
        .header("apollo-require-preflight", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_burst_over_the_callers_bucket_gets_429_with_retry_after() {
    let up = Upstreams::start().await;
    up.mosia_documented(None).await;
    let app = up
        .app_with(|settings| {
            settings.auth.disabled = false;
            settings.auth.jwt_secret = Some(Secret::new(SECRET));
            settings.rate_limit.per_caller_per_sec = 1;
            settings.rate_limit.per_caller_burst = 3;
        })
        .await;
    let token = staff_token();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let response = app.post_as(&token, &json!({ "query": LATEST })).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            retry_after = response.headers().get("retry-after").cloned();
            let body: Value = response.json().await.unwrap();
            assert_eq!(codes(&body), ["RATE_LIMITED"]);
            assert!(body["errors"][0]["extensions"].get("service").is_none());
        }
    }
    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let retry_after: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
}

#[tokio::test]
async fn failed_authentications_from_one_address_are_slowed_but_a_valid_token_is_not() {
    let up = Upstreams::start().await;
    up.mosia_documented(None).await;
    let app = up
        .app_with(|settings| {
            settings.auth.disabled = false;
            settings.auth.jwt_secret = Some(Secret::new(SECRET));
            settings.rate_limit.failed_auth_per_ip_per_sec = 1;
            settings.rate_limit.failed_auth_per_ip_burst = 2;
        })
        .await;
    let body = json!({ "query": LATEST });
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = app.post_as("not-a-token", &body).await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..2], [401, 401]);
    assert_eq!(&statuses[2..], [429, 429], "{statuses:?}");
    // The address's bucket is for failures only.
    let valid = app.post_as(&staff_token(), &body).await;
    assert_eq!(valid.status(), 200);
}
