//! The HTTP side: `/graphql` (POST for everything, GET for queries, GraphiQL for browsers),
//! `/healthz`, `/readyz`, `/metrics`; bound by [`Application::build`], which `main` and the tests
//! share. Every request gets an `x-request-id` (the caller's, when it is fit) and a span.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    extract::{Path, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use tokio::net::TcpListener;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

pub use crate::upstream::RedisState;
use crate::{
    auth::Caller,
    config::Settings,
    connections::{self, Limits},
    gate::{self, Gate},
    graphiql::{self, GraphiQL},
    graphql::{
        self,
        execute::{Executor, Outcome},
    },
    media::{self, MediaType},
    metrics::Metrics,
    params::{self, BadParams},
    readiness::Readiness,
    telemetry::{self, REQUEST_ID},
    upstream::Upstreams,
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot listen on {addr}: {source} (choose another address: LISTEN_ADDR for serve, --listen for sandbox)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the upstream HTTP clients: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Manifest(#[from] crate::graphql::persisted::ManifestError),
}

#[derive(Clone)]
struct AppState {
    executor: Executor,
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    graphiql: GraphiQL,
}

/// A bound, not yet serving, gateway.
pub struct Application {
    listener: TcpListener,
    router: Router,
    metrics: Arc<Metrics>,
    limits: Limits,
    readiness: Arc<Readiness>,
    drain_delay: Duration,
    upstreams: Arc<Upstreams>,
}

impl Application {
    /// Builds the gateway from `settings` and binds `settings.listen_addr` (port 0 picks one).
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::default());
        let upstreams = Arc::new(Upstreams::new(&settings, metrics.clone())?);
        let schema = graphql::build_schema(&settings.server, Some(upstreams.clone()));
        let readiness = Arc::new(Readiness::new(upstreams.clone(), metrics.clone()));
        let state = AppState {
            executor: Executor::new(schema, upstreams.clone(), &settings, metrics.clone())?,
            upstreams: upstreams.clone(),
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            graphiql: GraphiQL::new(
                settings.server.introspection,
                settings.server.graphiql_headers.as_deref(),
            ),
        };
        let gate = Arc::new(Gate::new(
            &settings,
            reqwest::Client::builder().build()?,
            metrics.clone(),
            upstreams.fleet(),
        )?);
        gate.warm_up().await;
        // In the background: the replica binds at once and says it is starting until then.
        upstreams.wait_for_fleet().await;
        let warming = upstreams.clone();
        tokio::spawn(async move { warming.warm_up().await });
        let graphql_route = get(graphql_get)
            .post(graphql_post)
            .route_layer(axum::middleware::from_fn_with_state(gate, gate::gate));
        let router = Router::new()
            .route("/graphql", graphql_route)
            .route("/", get(|| async { Redirect::temporary("/graphql") }))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/graphiql/{file}", get(graphiql_asset))
            .route("/metrics", get(metrics_text))
            .fallback(not_found)
            .with_state(state)
            .layer(RequestBodyLimitLayer::new(settings.server.max_body_bytes))
            .layer(axum::middleware::from_fn(too_large_as_graphql))
            .layer(cors(&settings.server.cors_allowed_origins))
            .layer(CatchPanicLayer::custom(|_| internal_error()))
            // Inside the span and the id, so that every answer, refusals and panics included,
            // carries the id and is logged under it.
            .layer(PropagateRequestIdLayer::new(
                REQUEST_ID.parse().expect("a header name"),
            ))
            .layer(TraceLayer::new_for_http().make_span_with(telemetry::request_span))
            .layer(SetRequestIdLayer::new(
                REQUEST_ID.parse().expect("a header name"),
                MakeRequestUuid,
            ))
            .layer(axum::middleware::map_request(
                telemetry::drop_unfit_request_id,
            ));
        let addr = settings.listen_addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Self {
            listener,
            router,
            metrics,
            limits: Limits::from(&settings.server),
            readiness,
            drain_delay: Duration::from_millis(settings.server.drain_delay_ms),
            upstreams,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Whether this replica shares the fleet's Redis tier right now (`/readyz` detail).
    pub fn redis_state(&self) -> RedisState {
        self.upstreams.redis_state()
    }

    /// The counters `/metrics` shows.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves until `shutdown` completes, then drains: `/readyz` answers 503 while requests
    /// are still served for `server.drain_delay_ms` (so that load balancers stop sending
    /// first), then new connections are refused, the requests in flight finish within
    /// `server.shutdown_grace_ms`, and whatever connections are left are closed.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (readiness, delay) = (self.readiness, self.drain_delay);
        let drained = async move {
            shutdown.await;
            readiness.drain();
            tracing::info!(
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "draining"
            );
            tokio::time::sleep(delay).await;
        };
        connections::serve(self.listener, self.router, self.limits, drained).await;
        Ok(())
    }
}

async fn graphql_post(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    request: Request,
) -> Response {
    let Some(media) = media::negotiate(request.headers()) else {
        return not_acceptable();
    };
    // The CSRF check before this let only preflighted requests through; of those, only JSON
    // is a GraphQL request.
    if !media::is_json_body(request.headers()) {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the request as Content-Type: application/json",
        );
    }
    // The body limit layer bounds what this buffers.
    let body = match axum::body::to_bytes(request.into_body(), usize::MAX).await {
        Ok(body) => body,
        Err(err) if is_length_limit(&err) => return too_large(media),
        Err(_) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                "BAD_REQUEST",
                "the request body could not be read",
            );
        }
    };
    match params::from_json_body(&body) {
        Ok(request) => execute(&state, caller, request, true, media).await,
        Err(BadParams(message)) => {
            request_error(StatusCode::BAD_REQUEST, media, "BAD_REQUEST", &message)
        }
    }
}

/// GET serves GraphiQL to a browser, and runs queries (never mutations) from the query string.
async fn graphql_get(
    State(state): State<AppState>,
    caller: Option<Extension<Arc<Caller>>>,
    request: Request,
) -> Response {
    if graphiql::is_page_request(&request) {
        return match state.graphiql.page() {
            Some(page) => page,
            None => not_found().await.into_response(),
        };
    }
    let Some(media) = media::negotiate(request.headers()) else {
        return not_acceptable();
    };
    let request = match params::from_query_string(request.uri().query().unwrap_or_default()) {
        Ok(request) => request,
        Err(BadParams(message)) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                media,
                "BAD_REQUEST",
                &format!(
                    "{message} (a GET carries `query`, and optionally `operationName` and `variables` as JSON, in its query string)"
                ),
            );
        }
    };
    // The gate lets only the GraphiQL page through without a caller.
    let Some(Extension(caller)) = caller else {
        return not_found().await.into_response();
    };
    execute(&state, caller, request, false, media).await
}

async fn graphiql_asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    match state.graphiql.asset(&file) {
        Some(asset) => asset,
        None => not_found().await.into_response(),
    }
}

/// Runs `request` and answers it in `media`.
async fn execute(
    state: &AppState,
    caller: Arc<Caller>,
    request: async_graphql::Request,
    allow_mutation: bool,
    media: MediaType,
) -> Response {
    let executed = state
        .executor
        .execute(caller, request, allow_mutation)
        .await;
    let response = executed.response;
    match executed.outcome {
        Outcome::Executed => {
            let body = match executed.body {
                Some(body) => body,
                None => serde_json::to_vec(&response)
                    .unwrap_or_else(|_| internal_error_body())
                    .into(),
            };
            let mut answer = body_in(StatusCode::OK, media, body);
            answer.headers_mut().extend(response.http_headers);
            answer
        }
        Outcome::Rejected => {
            // Only the new media type may tell a request error by its status; legacy JSON
            // clients read any status but 200 as a transport failure.
            let status = match media {
                MediaType::GraphQLResponseJson => StatusCode::BAD_REQUEST,
                MediaType::Json => StatusCode::OK,
            };
            body_in(status, media, request_errors_body(&response))
        }
        Outcome::MutationNotAllowed => {
            let mut answer = body_in(
                StatusCode::METHOD_NOT_ALLOWED,
                media,
                request_errors_body(&response),
            );
            answer
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            answer
        }
    }
}

/// The body of a request that never ran: its errors and no `data` entry at all, which is how
/// GraphQL tells a request error from an execution that produced `null`.
fn request_errors_body(response: &async_graphql::Response) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct RequestErrors<'a> {
        errors: &'a [async_graphql::ServerError],
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
    }
    serde_json::to_vec(&RequestErrors {
        errors: &response.errors,
        extensions: &response.extensions,
    })
    .unwrap_or_else(|_| internal_error_body())
}

fn body_in(status: StatusCode, media: MediaType, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, media.content_type())],
        body.into(),
    )
        .into_response()
}

/// CORS for the configured browser origins; none configured, no CORS headers at all.
fn cors(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Origins are checked when the settings are read.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT])
        .max_age(std::time::Duration::from_secs(600))
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    state.upstreams.measure_cache().await;
    (
        [(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
        state.metrics.render_prometheus(),
    )
}

async fn readyz(State(state): State<AppState>) -> Response {
    let (ready, body) = state.readiness.check();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found; the graph is at /graphql\n",
    )
}

fn internal_error() -> Response {
    body_in(
        StatusCode::INTERNAL_SERVER_ERROR,
        MediaType::Json,
        internal_error_body(),
    )
}

fn internal_error_body() -> Vec<u8> {
    error_body("INTERNAL_SERVER_ERROR", "internal error")
}

fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    })
    .to_string()
    .into_bytes()
}

/// An answer to a request the gateway will not run: one error with a code, no `data`.
fn request_error(status: StatusCode, media: MediaType, code: &str, message: &str) -> Response {
    body_in(status, media, error_body(code, message))
}

/// Neither of the types the client accepts is one the gateway writes: the error is written in
/// `application/json`, as the spec has servers do when they answer anyway.
fn not_acceptable() -> Response {
    request_error(
        StatusCode::NOT_ACCEPTABLE,
        MediaType::Json,
        "NOT_ACCEPTABLE",
        "the gateway answers in application/graphql-response+json or application/json: accept one of them",
    )
}

fn too_large(media: MediaType) -> Response {
    request_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        media,
        "PAYLOAD_TOO_LARGE",
        "the request body is too large",
    )
}

/// Whether reading the body failed on the body limit. The limit's error arrives wrapped in
/// axum's, so its text along the chain of sources is all there is to go by.
fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.to_string().contains("length limit exceeded") {
            return true;
        }
        cause = err.source();
    }
    false
}

/// The body limit answers a declared length over the limit with a plain-text 413 before any
/// handler runs; answer it as GraphQL, in the type the client accepts.
async fn too_large_as_graphql(request: Request, next: Next) -> Response {
    let media = media::negotiate(request.headers()).unwrap_or(MediaType::Json);
    let response = next.run(request).await;
    let is_plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|ct| ct.to_str().ok())
        .is_none_or(|ct| !ct.contains("json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && is_plain {
        return too_large(media);
    }
    response
}
