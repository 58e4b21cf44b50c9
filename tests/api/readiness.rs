//! `/readyz`: 503 until the TOTVS token request at start has been answered, and while draining.

use std::sync::Arc;

use axum::{Json, Router, http::StatusCode, routing::post};
use protocol_graph::config::Settings;
use serde_json::json;
use tokio::sync::Semaphore;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{
    LATEST, MOSIA_TOKEN, TOKEN_PATH, TOTVS_PASSWORD, TOTVS_USERNAME, TestApp, Upstreams, fixture,
};

/// A fake TOTVS whose token endpoint answers only once the returned gate has a permit.
async fn totvs_with_gated_token() -> (String, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let router = Router::new().route(
        TOKEN_PATH,
        post(move || {
            let gate = held.clone();
            async move {
                let _permit = gate.acquire().await;
                (StatusCode::CREATED, Json(fixture("totvs/token.201.json")))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, gate)
}

#[tokio::test]
async fn readyz_is_503_until_the_token_is_obtained() {
    let mosia = MockServer::start().await;
    let (totvs, gate) = totvs_with_gated_token().await;
    let settings = Settings::for_upstreams(
        &mosia.uri(),
        MOSIA_TOKEN,
        &totvs,
        TOTVS_USERNAME,
        TOTVS_PASSWORD,
    )
    .unwrap();
    let app = TestApp::spawn(settings).await;

    let starting = app.get("/readyz").await;
    assert_eq!(starting.status(), 503);
    assert_eq!(starting.headers()["cache-control"], "no-store");
    assert_eq!(
        starting.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "starting", "upstreams": {"mosia": "ok", "totvs": "starting"}})
    );

    gate.add_permits(1);
    assert_eq!(
        app.readyz_until(200).await,
        json!({"status": "ready", "upstreams": {"mosia": "ok", "totvs": "ok"}})
    );
    assert_eq!(app.counts().totvs_token_calls, 1);
}

#[tokio::test]
async fn readyz_is_200_once_the_token_was_refused_and_says_so() {
    let up = Upstreams::start().await;
    up.totvs.reset().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(401))
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    assert_eq!(
        app.readyz_until(200).await,
        json!({"status": "ready", "upstreams": {"mosia": "ok", "totvs": "auth_failed"}})
    );
}

#[tokio::test]
async fn readyz_is_503_while_draining_and_requests_are_still_served() {
    let up = Upstreams::start().await;
    up.mosia_documented(1).await;
    // Longer than any test: the app drains until the test ends.
    let mut app = up.app_with(|s| s.server.drain_delay_ms = 600_000).await;
    app.readyz_until(200).await;

    app.begin_shutdown();

    let draining = app.readyz_until(503).await;
    assert_eq!(draining["status"], "draining");
    let response = app.query(LATEST).await;
    assert!(response.get("errors").is_none(), "{response}");
}
