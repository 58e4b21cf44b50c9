//! `TestApp`: the gateway built exactly as `main` builds it, bound to port 0, in front of fake
//! upstreams (wiremock servers, or the sandbox), and queried over real HTTP.

use std::{sync::Arc, time::Duration};

use protocol_graph::{
    config::Settings,
    metrics::{Metrics, MetricsSnapshot},
    sandbox::{self, Sandbox, SandboxOptions},
    server::Application,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use wiremock::{
    Mock, MockBuilder, MockServer, ResponseTemplate,
    matchers::{method, path},
};

pub const MOSIA_TOKEN: &str = "mosia-secret-token";
pub const TOTVS_USERNAME: &str = "gateway";
pub const TOTVS_PASSWORD: &str = "totvs-secret-password";
pub const ACCESS_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.sandbox.signature";
pub const TOKEN_PATH: &str = "/rest/api/oauth2/v1/token";
pub const API: &str = "/rest/totvsHealthPlans/attendance/v1/authorizations";
pub const MOSIA_PATH: &str = "/clientes/ocorrencias/ultimosProtocolos";
pub const PROTOCOLS: &str =
    "/rest/totvsHealthPlans/attendance/v1/authorizations/00011008000027010/protocols";
/// Mosia's latest protocols of the documented beneficiary.
pub const LATEST: &str =
    r#"{ beneficiary(uniqueKey: "13331584754") { latestProtocols { number } } }"#;
/// The documented TOTVS subscriber's first page of protocols.
pub const LIST: &str =
    r#"{ beneficiary(subscriberId: "00011008000027010") { authorizationProtocols { hasNext } } }"#;

/// A mock of Mosia's one route.
pub fn mosia_get() -> MockBuilder {
    Mock::given(method("GET")).and(path(MOSIA_PATH))
}

/// A mock of the documented subscriber's TOTVS protocol list.
pub fn list_get() -> MockBuilder {
    Mock::given(method("GET")).and(path(PROTOCOLS))
}

pub fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub metrics: Arc<Metrics>,
    /// Sending (or dropping) it begins the shutdown.
    shutdown: Option<oneshot::Sender<()>>,
}

/// Fake Mosia and TOTVS servers, with TOTVS's token endpoint answering the documented body.
pub struct Upstreams {
    pub mosia: MockServer,
    pub totvs: MockServer,
}

impl Upstreams {
    pub async fn start() -> Self {
        let upstreams = Self {
            mosia: MockServer::start().await,
            totvs: MockServer::start().await,
        };
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(201).set_body_json(fixture("totvs/token.201.json")))
            .named("token")
            .mount(&upstreams.totvs)
            .await;
        upstreams
    }

    pub fn settings(&self) -> Settings {
        Settings::for_upstreams(
            &self.mosia.uri(),
            MOSIA_TOKEN,
            &format!("{}/rest", self.totvs.uri()),
            TOTVS_USERNAME,
            TOTVS_PASSWORD,
        )
        .unwrap()
    }

    /// The gateway with default settings in front of these upstreams.
    pub async fn app(&self) -> TestApp {
        TestApp::spawn(self.settings()).await
    }

    /// The gateway with settings adjusted by `tweak`.
    pub async fn app_with(&self, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings();
        tweak(&mut settings);
        TestApp::spawn(settings).await
    }
}

impl Upstreams {
    /// Requests TOTVS received for anything but a token: the gateway logs in at start on its
    /// own, whatever the requests.
    pub async fn totvs_resource_requests(&self) -> usize {
        self.totvs
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() != TOKEN_PATH)
            .count()
    }

    /// Mosia answers its documented body: exactly `times` times, or any number with `None`.
    pub async fn mosia_documented(&self, times: impl Into<Option<u64>>) {
        let mock = mosia_get().respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("mosia/ultimos-protocolos.200.json")),
        );
        match times.into() {
            Some(n) => mock.expect(n).mount(&self.mosia).await,
            None => mock.mount(&self.mosia).await,
        }
    }

    /// Mosia fails the first read with a 500 (a status no retry repeats), then answers its
    /// documented body once.
    pub async fn mosia_fails_once_then_documented(&self) {
        mosia_get()
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(1)
            .expect(1)
            .mount(&self.mosia)
            .await;
        self.mosia_documented(1).await;
    }

    /// The documented subscriber's list answers its documented body, as [`Self::mosia_documented`].
    pub async fn list_documented(&self, times: impl Into<Option<u64>>) {
        let mock = list_get().respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("totvs/protocols.200.json")),
        );
        match times.into() {
            Some(n) => mock.expect(n).mount(&self.totvs).await,
            None => mock.mount(&self.totvs).await,
        }
    }
}

impl TestApp {
    pub async fn spawn(settings: Settings) -> TestApp {
        let app = Application::build(settings)
            .await
            .expect("the gateway builds");
        let address = format!("http://{}", app.local_addr());
        let metrics = app.metrics();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        TestApp {
            address,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            metrics,
            shutdown: Some(tx),
        }
    }

    /// Begins the shutdown: the app drains, then stops.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// The gateway in front of a fresh sandbox (the sandbox must outlive the app).
    pub async fn with_sandbox() -> (TestApp, Sandbox) {
        Self::with_sandbox_tweaked(|_| {}).await
    }

    pub async fn with_sandbox_tweaked(tweak: impl FnOnce(&mut Settings)) -> (TestApp, Sandbox) {
        let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
        let mut settings = Settings::for_upstreams(
            &sandbox.mosia_url(),
            sandbox::MOSIA_TOKEN,
            &sandbox.totvs_url(),
            sandbox::TOTVS_USERNAME,
            sandbox::TOTVS_PASSWORD,
        )
        .unwrap();
        tweak(&mut settings);
        (TestApp::spawn(settings).await, sandbox)
    }

    /// A POST with a bearer token.
    pub async fn post_as(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/graphql", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/graphql", self.address))
            .json(body)
            .send()
            .await
            .expect("the gateway answers")
    }

    /// Runs a GraphQL operation over POST and returns the whole response body.
    pub async fn query(&self, query: &str) -> Value {
        self.query_with(query, json!({})).await
    }

    pub async fn query_with(&self, query: &str, variables: Value) -> Value {
        let response = self
            .post(&json!({ "query": query, "variables": variables }))
            .await;
        assert_eq!(response.status(), 200, "GraphQL answers 200");
        response.json().await.unwrap()
    }

    /// A GET as a GraphQL client sends it: with Apollo's preflight header, which the CSRF
    /// check asks of any request without a JSON content type.
    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path_and_query}", self.address))
            .header("apollo-require-preflight", "true")
            .send()
            .await
            .unwrap()
    }

    pub fn counts(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// `/readyz` once it answers `status` (polled for at most ten seconds), as its JSON body.
    pub async fn readyz_until(&self, status: u16) -> Value {
        for _ in 0..400 {
            let response = self.get("/readyz").await;
            if response.status() == status {
                return response.json().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("/readyz never answered {status}");
    }
}

/// The `extensions.code` of each error, in order.
pub fn codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The one error whose path starts with `path`.
pub fn error_at<'a>(response: &'a Value, path: &[&str]) -> &'a Value {
    let errors = response["errors"].as_array().expect("errors");
    errors
        .iter()
        .find(|e| {
            let p: Vec<&str> = e["path"]
                .as_array()
                .map(|p| p.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            p == path
        })
        .unwrap_or_else(|| panic!("no error at {path:?} in {response}"))
}

/// Asserts no secret of the test configuration appears in `text`.
pub fn assert_no_secrets(text: &str) {
    for secret in [
        MOSIA_TOKEN,
        TOTVS_PASSWORD,
        ACCESS_TOKEN,
        "sandbox-refresh-token",
    ] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}
