//! The fake TOTVS: its router, its error answers (`Refusal`) and documented error bodies,
//! and the query-parameter helpers its handlers share.

use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::server::json_response;
use super::state::Shared;
use super::totvs_reads::{totvs_interactions, totvs_protocols};
use super::totvs_token::totvs_token;
use super::totvs_writes::{totvs_attachments, totvs_request_authorization};

pub(super) const PROTOCOLS_404: &str = include_str!("../../fixtures/totvs/protocols.404.json");
pub(super) const INTERACTIONS_404: &str =
    include_str!("../../fixtures/totvs/interactions.404.json");
pub(super) const ATTACHMENTS_404: &str = include_str!("../../fixtures/totvs/attachments.404.json");
pub(super) const ATTACHMENTS_400_STATUS: &str =
    include_str!("../../fixtures/totvs/attachments.400-status.json");

const AUTHORIZATIONS: &str = "/rest/totvsHealthPlans/attendance/v1/authorizations";

pub(super) fn totvs_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/rest/api/oauth2/v1/token", post(totvs_token))
        .route(
            &format!("{AUTHORIZATIONS}/{{subscriber_id}}/protocols"),
            get(totvs_protocols),
        )
        .route(
            &format!("{AUTHORIZATIONS}/protocols/{{protocol_id}}/interactions"),
            get(totvs_interactions),
        )
        .route(
            &format!("{AUTHORIZATIONS}/protocols/attachments"),
            post(totvs_attachments),
        )
        .route(
            &format!("{AUTHORIZATIONS}/protocols"),
            post(totvs_request_authorization),
        )
        .fallback(|method: Method, uri: Uri| async move {
            totvs_error(
                StatusCode::NOT_FOUND,
                "404",
                "Recurso não encontrado",
                &format!("{method} {} não existe neste servidor.", uri.path()),
            )
        })
        .with_state(shared)
}

/// A TOTVS error answer; small (unlike `Response`) so that `Result`s carrying it stay cheap.
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    body: Value,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

pub(super) fn totvs_error(
    status: StatusCode,
    code: &str,
    message: &str,
    detailed: &str,
) -> Refusal {
    Refusal {
        status,
        body: json!({ "code": code, "message": message, "detailedMessage": detailed }),
    }
}

pub(super) fn totvs_error_details(
    status: StatusCode,
    code: &str,
    message: &str,
    detailed: &str,
    details: Vec<Value>,
) -> Refusal {
    Refusal {
        status,
        body: json!({ "code": code, "message": message, "detailedMessage": detailed, "details": details }),
    }
}

pub(super) fn detail(code: &str, message: String, detailed: String) -> Value {
    json!({ "code": code, "message": message, "detailedMessage": detailed })
}

pub(super) fn query_params(uri: &Uri) -> Vec<(String, String)> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(params)| params)
        .unwrap_or_default()
}

/// The first non-empty value of a query parameter.
pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, value)| key == name && !value.trim().is_empty())
        .map(|(_, value)| value.trim())
}
