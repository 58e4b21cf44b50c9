//! The HTTP side: `/graphql` (POST for everything, GET for queries, GraphiQL for browsers),
//! `/healthz`, `/readyz`, `/metrics`; bound by [`Application::build`], which `main` and the tests
//! share. Every request gets an `x-request-id` (the caller's, when it is fit) and a span.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    Extension, Json, Router,
    extract::{Path, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
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

use crate::{
    auth::Caller,
    config::Settings,
    gate::{self, Gate},
    graphql::{
        self,
        execute::{Executor, Outcome},
    },
    metrics::Metrics,
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
}

#[derive(Clone)]
struct AppState {
    executor: Executor,
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    graphiql: bool,
    graphiql_headers: Option<Arc<str>>,
}

/// A bound, not yet serving, gateway.
pub struct Application {
    listener: TcpListener,
    router: Router,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    drain_delay: Duration,
}

impl Application {
    /// Builds the gateway from `settings` and binds `settings.listen_addr` (port 0 picks one).
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::default());
        let upstreams = Arc::new(Upstreams::new(&settings, metrics.clone())?);
        let schema = graphql::build_schema(&settings.server, Some(upstreams.clone()));
        let readiness = Arc::new(Readiness::new(upstreams.clone(), metrics.clone()));
        let state = AppState {
            executor: Executor::new(schema, upstreams.clone(), &settings, metrics.clone()),
            upstreams: upstreams.clone(),
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            graphiql: settings.server.graphiql,
            graphiql_headers: settings.server.graphiql_headers.as_deref().map(Arc::from),
        };
        let gate = Arc::new(Gate::new(
            &settings,
            reqwest::Client::builder().build()?,
            metrics.clone(),
        )?);
        gate.warm_up().await;
        // In the background: the replica binds at once and says it is starting until then.
        tokio::spawn(async move { upstreams.warm_up().await });
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
            .layer(axum::middleware::map_response(too_large_as_graphql))
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
            readiness,
            drain_delay: Duration::from_millis(settings.server.drain_delay_ms),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The counters `/metrics` shows.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves until `shutdown` completes, then drains: `/readyz` answers 503 while requests
    /// are still served for `server.drain_delay_ms` (so that load balancers stop sending
    /// first), then new connections are refused and the requests in flight finished.
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
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(drained)
            .await
    }
}

async fn graphql_post(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    request: GraphQLRequest<GraphQLRequestRejection>,
) -> Response {
    execute(&state, caller, request.into_inner(), true).await
}

/// GET serves GraphiQL to a browser, and runs queries (never mutations) from the query string.
async fn graphql_get(
    State(state): State<AppState>,
    caller: Option<Extension<Arc<Caller>>>,
    request: Request,
) -> Response {
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let has_query = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("query=")));
    if wants_html && !has_query {
        if !state.graphiql {
            return not_found().await.into_response();
        }
        return Html(graphiql_page(state.graphiql_headers.as_deref())).into_response();
    }
    let query = request.uri().query().unwrap_or_default();
    let request = match async_graphql::http::parse_query_string(query) {
        Ok(request) => request,
        Err(_) => {
            return graphql_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "a GET request needs a `query` parameter (and optionally `variables` as JSON and `operationName`)",
            );
        }
    };
    // The gate lets only the GraphiQL page through without a caller.
    let Some(Extension(caller)) = caller else {
        return not_found().await.into_response();
    };
    execute(&state, caller, request, false).await
}

/// The GraphiQL page, opening with `headers` (a JSON object as text) in its Headers tab.
fn graphiql_page(headers: Option<&str>) -> String {
    let page = include_str!("../assets/graphiql/index.html");
    match headers {
        // A JSON string literal is a valid JavaScript string literal.
        Some(headers) => page.replace(
            "defaultEditorToolsVisibility: true",
            &format!(
                "defaultEditorToolsVisibility: true, defaultHeaders: {}",
                serde_json::Value::from(headers)
            ),
        ),
        None => page.to_owned(),
    }
}

/// GraphiQL's scripts and styles, vendored so the page works without internet access.
async fn graphiql_asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.js" => (
            include_bytes!("../assets/graphiql/graphiql.min.js"),
            "text/javascript",
        ),
        "graphiql.min.css" => (
            include_bytes!("../assets/graphiql/graphiql.min.css"),
            "text/css",
        ),
        "react.production.min.js" => (
            include_bytes!("../assets/graphiql/react.production.min.js"),
            "text/javascript",
        ),
        "react-dom.production.min.js" => (
            include_bytes!("../assets/graphiql/react-dom.production.min.js"),
            "text/javascript",
        ),
        _ => return not_found().await.into_response(),
    };
    if !state.graphiql {
        return not_found().await.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// Runs `request` and answers it as GraphQL over HTTP.
async fn execute(
    state: &AppState,
    caller: Arc<Caller>,
    request: async_graphql::Request,
    allow_mutation: bool,
) -> Response {
    let executed = state
        .executor
        .execute(caller, request, allow_mutation)
        .await;
    match executed.outcome {
        Outcome::MutationNotAllowed => {
            let mut response = (
                StatusCode::METHOD_NOT_ALLOWED,
                GraphQLResponse::from(executed.response),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            response
        }
        Outcome::Executed | Outcome::Rejected => {
            GraphQLResponse::from(executed.response).into_response()
        }
    }
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
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "not found; the graph is at /graphql\n",
    )
}

fn internal_error() -> Response {
    graphql_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_SERVER_ERROR",
        "internal error",
    )
}

fn graphql_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    (status, Json(body)).into_response()
}

fn too_large() -> Response {
    graphql_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "the request body is too large",
    )
}

/// Whether reading the body failed on the body limit. The extractor flattens the body error
/// into an `io::Error` message, so its text is all there is to go by.
fn is_length_limit(err: &std::io::Error) -> bool {
    err.to_string().contains("length limit exceeded")
}

/// The body limit answers 413 in plain text before any handler runs; answer it as GraphQL.
async fn too_large_as_graphql(response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|ct| ct != "application/json")
    {
        return too_large();
    }
    response
}

/// A request body that is not a GraphQL request, answered as a GraphQL error instead of the
/// extractor's debug text.
pub struct GraphQLRequestRejection(async_graphql::ParseRequestError);

impl From<async_graphql::ParseRequestError> for GraphQLRequestRejection {
    fn from(err: async_graphql::ParseRequestError) -> Self {
        Self(err)
    }
}

impl IntoResponse for GraphQLRequestRejection {
    fn into_response(self) -> Response {
        use async_graphql::ParseRequestError as E;
        match self.0 {
            E::PayloadTooLarge => too_large(),
            // A chunked body over the limit fails while it is read.
            E::Io(err) if is_length_limit(&err) => too_large(),
            E::UnsupportedBatch => graphql_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "batched requests are not supported; send one operation per request",
            ),
            _ => graphql_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the body is not a GraphQL request: send JSON {\"query\": ..., \"variables\": {...}}",
            ),
        }
    }
}
