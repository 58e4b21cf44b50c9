//! TOTVS' OAuth2 token endpoint: the password and refresh-token grants.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::server::json_response;
use super::state::{AppState, count};
use super::totvs::{param, query_params, totvs_error};
use super::{TOTVS_PASSWORD, TOTVS_USERNAME};

pub(super) async fn totvs_token(State(shared): AppState, uri: Uri) -> Response {
    count(&shared.calls.totvs_token);
    shared.delay().await;
    let params = query_params(&uri);
    match param(&params, "grant_type") {
        Some("password") => {
            let valid = param(&params, "username") == Some(TOTVS_USERNAME)
                && param(&params, "password") == Some(TOTVS_PASSWORD);
            if valid {
                json_response(StatusCode::CREATED, &shared.issue_tokens())
            } else {
                totvs_error(
                    StatusCode::UNAUTHORIZED,
                    "401",
                    "Usuário ou senha inválidos",
                    "Não foi possível autenticar com o usuário e a senha informados.",
                )
                .into_response()
            }
        }
        Some("refresh_token") => {
            let redeemed =
                param(&params, "refresh_token").is_some_and(|t| shared.redeem_refresh_token(t));
            if redeemed {
                json_response(StatusCode::CREATED, &shared.issue_tokens())
            } else {
                totvs_error(
                    StatusCode::UNAUTHORIZED,
                    "401",
                    "Refresh token inválido ou expirado",
                    "O refresh_token informado não foi emitido por este servidor, já foi utilizado ou expirou.",
                )
                .into_response()
            }
        }
        _ => totvs_error(
            StatusCode::BAD_REQUEST,
            "400",
            "grant_type inválido",
            "Informe grant_type=password ou grant_type=refresh_token.",
        )
        .into_response(),
    }
}
