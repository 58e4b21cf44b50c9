//! Serving a router on a loopback listener until the sandbox shuts down, and the response
//! helpers every handler uses.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(super) async fn serve(
    upstream: &'static str,
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    // Small request/response pairs on keep-alive connections: Nagle would only add latency.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::trace!(%error, "could not set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            // An error means the sender is gone, which is a shutdown as well.
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await;
    match result {
        Ok(()) => tracing::debug!(upstream, "sandbox upstream stopped"),
        Err(error) => tracing::warn!(upstream, %error, "sandbox upstream failed"),
    }
}

pub(super) fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            bytes,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "sandbox could not serialize a body");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A body sent exactly as written, for the documented fixtures and the malformed demos.
pub(super) fn raw_json(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(super) fn shutting_down() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "sandbox shutting down").into_response()
}
