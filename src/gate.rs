//! What stands between the network and `/graphql`, in this order: Apollo's CSRF rule, the
//! caller's token, and the rate limits. A request that passes carries its [`Caller`] in its
//! extensions; one that does not gets a GraphQL error body and the HTTP status of the refusal.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    Json,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    auth::{AuthError, Authenticator, Caller},
    config::{ConfigError, Settings},
    csrf::Csrf,
    metrics::{Metrics, Refusal},
    ratelimit::{RateLimits, retry_after_secs},
    upstream::fleet::Fleet,
};

/// The checks every `/graphql` request passes through.
pub(crate) struct Gate {
    csrf: Csrf,
    authenticator: Authenticator,
    /// None when authentication is off: there is no caller identity to count by.
    limits: Option<RateLimits>,
    metrics: Arc<Metrics>,
}

impl Gate {
    /// The gate; its rate limits are fleet-wide when `fleet` is given.
    pub(crate) fn new(
        settings: &Settings,
        client: reqwest::Client,
        metrics: Arc<Metrics>,
        fleet: Option<Arc<Fleet>>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            csrf: Csrf::new(&settings.csrf)?,
            authenticator: Authenticator::new(&settings.auth, client)?,
            limits: (!settings.auth.disabled)
                .then(|| {
                    RateLimits::new(&settings.rate_limit)
                        .map(|limits| limits.with_fleet(fleet, &settings.rate_limit))
                })
                .transpose()?,
            metrics,
        })
    }

    /// Fetches the JWKS, when one is configured, so the first caller does not wait for it.
    pub(crate) async fn warm_up(&self) {
        if let Err(err) = self.authenticator.warm_up().await {
            tracing::warn!(reason = err.reason(), "could not fetch the JWKS at start");
        }
    }

    /// CSRF first (a cross-site form must not even cost a token check), then the token, then
    /// the caller's bucket.
    async fn check(
        &self,
        headers: &HeaderMap,
        ip: Option<IpAddr>,
    ) -> Result<Arc<Caller>, Response> {
        if !self.csrf.allows(headers) {
            tracing::info!(target: "audit", outcome = "refused", reason = "csrf", "request");
            self.metrics.refusal(Refusal::Csrf);
            return Err(error(
                StatusCode::BAD_REQUEST,
                "CSRF_ERROR",
                self.csrf.refusal_message(),
            ));
        }
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        let caller = match self.authenticator.authenticate(authorization).await {
            Ok(caller) => caller,
            Err(err) => return Err(self.unauthenticated(ip, &err).await),
        };
        if let Some(limits) = &self.limits
            && let Err(wait) = limits.check_caller_shared(&caller.sub).await
        {
            tracing::info!(target: "audit", sub = &*caller.sub, outcome = "refused", reason = "rate_limited", "request");
            self.metrics.refusal(Refusal::RateLimited);
            return Err(rate_limited(wait));
        }
        Ok(caller)
    }

    async fn unauthenticated(&self, ip: Option<IpAddr>, err: &AuthError) -> Response {
        tracing::info!(target: "audit", outcome = "refused", reason = err.reason(), ip = ?ip, "request");
        // Only failed authentications draw from the address's bucket: guessing tokens is
        // slowed down, callers with a valid token never are.
        if let (Some(limits), Some(ip)) = (&self.limits, ip)
            && let Err(wait) = limits.check_failed_auth_shared(ip).await
        {
            self.metrics.refusal(Refusal::RateLimited);
            return rate_limited(wait);
        }
        self.metrics.refusal(Refusal::Unauthenticated);
        let mut response = error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", err.message());
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// The axum middleware in front of `/graphql`.
pub(crate) async fn gate(
    State(gate): State<Arc<Gate>>,
    mut request: Request,
    next: Next,
) -> Response {
    if crate::graphiql::is_page_request(&request) {
        // The page holds no data; its own requests carry the token pasted into it.
        return next.run(request).await;
    }
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    match gate.check(request.headers(), ip).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            let mut response = next.run(request).await;
            // Beneficiary data is personal health data: no cache on the way may keep it.
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
            response
        }
        Err(refusal) => refusal,
    }
}

fn rate_limited(wait: std::time::Duration) -> Response {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        "too many requests; retry after the time in Retry-After",
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs(wait)),
    );
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    (status, Json(body)).into_response()
}
