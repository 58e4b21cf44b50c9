//! The fake Mosia: its router and the `ultimosProtocolos` route, failure demos included.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;

use super::MOSIA_TOKEN;
use super::server::{json_response, raw_json, shutting_down};
use super::state::{AppState, Shared, count};

const MOSIA_PATH: &str = "/clientes/ocorrencias/ultimosProtocolos";

pub(super) fn mosia_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(MOSIA_PATH, get(mosia_latest_protocols))
        .fallback(|| async {
            mosia_envelope(StatusCode::NOT_FOUND, false, None, "Rota não encontrada")
        })
        .with_state(shared)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MosiaEnvelope<'a> {
    status: bool,
    data: Option<&'a [Value]>,
    message: &'a str,
    critical: [&'a str; 0],
    status_code: u16,
    timestamp: i64,
}

fn mosia_envelope(
    http: StatusCode,
    status: bool,
    data: Option<&[Value]>,
    message: &str,
) -> Response {
    mosia_body(http, status, data, message, http.as_u16())
}

fn mosia_body(
    http: StatusCode,
    status: bool,
    data: Option<&[Value]>,
    message: &str,
    status_code: u16,
) -> Response {
    let body = MosiaEnvelope {
        status,
        data,
        message,
        critical: [],
        status_code,
        timestamp: chrono::Utc::now().timestamp_millis(),
    };
    json_response(http, &body)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

const MOSIA_LOADED: &str = "Ocorrências carregadas com sucesso.";

async fn mosia_latest_protocols(State(shared): AppState, headers: HeaderMap) -> Response {
    count(&shared.calls.mosia);
    shared.delay().await;

    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == MOSIA_TOKEN.as_bytes());
    if !authorized {
        return mosia_envelope(StatusCode::UNAUTHORIZED, false, None, "Token inválido");
    }
    let Some(key) = header_str(&headers, "chaveUnica") else {
        return mosia_envelope(
            StatusCode::BAD_REQUEST,
            false,
            None,
            "O header chaveUnica é obrigatório.",
        );
    };
    let limit = match header_str(&headers, "totalProtocolos").map(str::parse::<u8>) {
        None => 5,
        Some(Ok(n)) if (1..=10).contains(&n) => usize::from(n),
        Some(_) => {
            return mosia_envelope(
                StatusCode::BAD_REQUEST,
                false,
                None,
                "O header totalProtocolos deve ser um número entre 1 e 10.",
            );
        }
    };
    tracing::trace!(key, limit, "mosia ultimosProtocolos");

    match key {
        "00000000500" => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html")],
                "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n\
                 <center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n\
                 </body>\r\n</html>\r\n",
            )
                .into_response();
        }
        "00000000000" => {
            return mosia_body(
                StatusCode::OK,
                false,
                None,
                "Falha ao carregar ocorrências",
                500,
            );
        }
        "00000000777" => return raw_json(StatusCode::OK, r#"{"status":true,"data":"oops""#),
        "00000000999" if !shared.slow().await => return shutting_down(),
        _ => {}
    }

    let (items, status_code) = shared.mosia.get(key).map_or((&[][..], 200), |b| {
        (&b.items[..b.items.len().min(limit)], b.envelope_status)
    });
    mosia_body(StatusCode::OK, true, Some(items), MOSIA_LOADED, status_code)
}
