//! The HTTP side: `/graphql` (POST for everything, GET for queries, GraphiQL for browsers),
//! `/healthz`, `/metrics`; bound by [`Application::build`], which `main` and the tests share.

use std::{future::Future, net::SocketAddr, sync::Arc};

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
    trace::TraceLayer,
};

pub use crate::upstream::RedisState;
use crate::{
    auth::Caller,
    config::Settings,
    gate::{self, Gate},
    graphql::{
        self,
        execute::{Executor, Outcome},
    },
    metrics::Metrics,
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
    metrics: Arc<Metrics>,
    graphiql: bool,
    graphiql_headers: Option<Arc<str>>,
}

/// A bound, not yet serving, gateway.
pub struct Application {
    listener: TcpListener,
    router: Router,
    metrics: Arc<Metrics>,
    upstreams: Arc<Upstreams>,
}

impl Application {
    /// Builds the gateway from `settings` and binds `settings.listen_addr` (port 0 picks one).
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::default());
        let upstreams = Arc::new(Upstreams::new(&settings, metrics.clone())?);
        upstreams.warm_up().await;
        let schema = graphql::build_schema(&settings.server, Some(upstreams.clone()));
        let state = AppState {
            executor: Executor::new(schema, upstreams.clone(), &settings),
            metrics: metrics.clone(),
            graphiql: settings.server.graphiql,
            graphiql_headers: settings.server.graphiql_headers.as_deref().map(Arc::from),
        };
        let gate = Arc::new(Gate::new(
            &settings,
            reqwest::Client::builder().build()?,
            upstreams.fleet(),
        )?);
        gate.warm_up().await;
        let graphql_route = get(graphql_get)
            .post(graphql_post)
            .route_layer(axum::middleware::from_fn_with_state(gate, gate::gate));
        let router = Router::new()
            .route("/graphql", graphql_route)
            .route("/", get(|| async { Redirect::temporary("/graphql") }))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(|| async { "ok" }))
            .route("/graphiql/{file}", get(graphiql_asset))
            .route("/metrics", get(metrics_text))
            .fallback(not_found)
            .with_state(state)
            .layer(RequestBodyLimitLayer::new(settings.server.max_body_bytes))
            .layer(axum::middleware::map_response(too_large_as_graphql))
            .layer(cors(&settings.server.cors_allowed_origins))
            .layer(CatchPanicLayer::custom(|_| internal_error()))
            .layer(TraceLayer::new_for_http());
        let addr = settings.listen_addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Self {
            listener,
            router,
            metrics,
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

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render_prometheus(),
    )
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
