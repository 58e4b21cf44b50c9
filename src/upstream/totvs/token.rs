//! The TOTVS access token: obtained with the password grant, renewed before it expires with
//! the refresh token, one renewal at a time however many calls need it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::{
    config::{Secret, Settings},
    metrics::Series,
    model::Service,
    upstream::{
        clock::Clock,
        decode,
        error::{UpstreamError, UpstreamErrorKind},
        http::{HttpUpstream, Idempotency, Route},
    },
};

const TOKEN_ROUTE: Route = Route {
    series: Series::TotvsToken,
    template: "/api/oauth2/v1/token",
};

/// The TOTVS access token: one renewal at a time, renewed before it expires, refreshed with the
/// refresh token when possible, and discarded when TOTVS refuses it.
pub(super) struct TokenManager {
    url: url::Url,
    username: Secret,
    password: Secret,
    margin: Duration,
    state: Mutex<Option<Token>>,
    /// The outcome of the latest token request, a [`TokenStatus`]: read by `/readyz` without
    /// waiting for the lock a renewal holds.
    status: AtomicU8,
    clock: Clock,
}

/// What became of the latest attempt to obtain a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenStatus {
    NotTried,
    Obtained,
    /// TOTVS refused the credentials.
    Refused,
    /// TOTVS could not be reached, or answered something else than a token.
    Failed,
}

impl TokenStatus {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => TokenStatus::Obtained,
            2 => TokenStatus::Refused,
            3 => TokenStatus::Failed,
            _ => TokenStatus::NotTried,
        }
    }
}

struct Token {
    bearer: Arc<str>,
    refresh: Option<Secret>,
    renew_at: Instant,
    refresh_until: Instant,
    generation: u64,
}

#[derive(Debug, Deserialize)]
pub(in crate::upstream) struct TokenDto {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub expires_in: Option<u64>,
}

fn lenient_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(decode::int_lenient(d)
        .ok()
        .and_then(|n| u64::try_from(n).ok()))
}

/// The range an access token's `expires_in` is clamped to: a token said to live 0 s would be
/// renewed on every call, one said to live for years never.
const MIN_TOKEN_LIFETIME_SECS: u64 = 1;
const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;
/// TOTVS's documented `expires_in`, for an answer without a usable one.
const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3600;
/// TOTVS documents refresh tokens as living 24 h.
const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl TokenManager {
    pub(super) fn new(http: &HttpUpstream, settings: &Settings, clock: Clock) -> Self {
        Self {
            url: http.url(&["api", "oauth2", "v1", "token"]),
            username: settings.totvs.username.clone(),
            password: settings.totvs.password.clone(),
            margin: Duration::from_secs(settings.upstream.token_refresh_margin_secs),
            state: Mutex::new(None),
            status: AtomicU8::new(TokenStatus::NotTried as u8),
            clock,
        }
    }

    /// A valid `Bearer ...` header value and the generation it belongs to.
    pub(super) async fn bearer(
        &self,
        http: &HttpUpstream,
    ) -> Result<(Arc<str>, u64), UpstreamError> {
        // Holding the lock through the renewal is what makes it one token request at a time.
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        if let Some(token) = state.as_ref().filter(|t| t.renew_at > now) {
            return Ok((token.bearer.clone(), token.generation));
        }
        let generation = state.as_ref().map_or(1, |t| t.generation.wrapping_add(1));
        let refresh = state
            .as_ref()
            .filter(|t| t.refresh_until > now)
            .and_then(|t| t.refresh.clone());
        let mut renewed = None;
        if let Some(refresh) = refresh {
            match self
                .request(
                    http,
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh.expose()),
                    ],
                )
                .await
            {
                Ok(token) => renewed = Some(token),
                Err(err) if err.kind == UpstreamErrorKind::AuthFailed => {
                    debug!(service = "totvs", "refresh token refused, logging in again");
                }
                Err(err) => return Err(err),
            }
        }
        let dto = match renewed {
            Some(dto) => dto,
            None => {
                self.request(
                    http,
                    &[
                        ("grant_type", "password"),
                        ("username", self.username.expose()),
                        ("password", self.password.expose()),
                    ],
                )
                .await?
            }
        };
        let (renew_at, refresh_until) = schedule(now, dto.expires_in, self.margin);
        let token = Token {
            bearer: format!("Bearer {}", dto.access_token).into(),
            refresh: dto.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
            renew_at,
            refresh_until,
            generation,
        };
        let out = (token.bearer.clone(), generation);
        *state = Some(token);
        Ok(out)
    }

    pub(super) fn status(&self) -> TokenStatus {
        TokenStatus::from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Forgets the token of `generation`, unless another task already replaced it.
    pub(super) async fn discard(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if let Some(token) = state.as_mut().filter(|t| t.generation == generation) {
            token.renew_at = self.clock.now();
            // A refused access token says nothing good about its refresh token: log in afresh.
            token.refresh = None;
        }
    }

    async fn request(
        &self,
        http: &HttpUpstream,
        params: &[(&str, &str)],
    ) -> Result<TokenDto, UpstreamError> {
        let result = self.exchange(http, params).await;
        let status = match &result {
            Ok(_) => TokenStatus::Obtained,
            Err(err) if err.kind == UpstreamErrorKind::AuthFailed => TokenStatus::Refused,
            Err(_) => TokenStatus::Failed,
        };
        self.status.store(status as u8, Ordering::Relaxed);
        result
    }

    async fn exchange(
        &self,
        http: &HttpUpstream,
        params: &[(&str, &str)],
    ) -> Result<TokenDto, UpstreamError> {
        let answer = http
            .send(Idempotency::Read, TOKEN_ROUTE, |client| {
                client
                    .post(self.url.clone())
                    .query(params)
                    .header("Accept", "application/json")
            })
            .await?;
        let status = answer.status;
        if !status.is_success() {
            warn!(
                service = "totvs",
                status = status.as_u16(),
                "token request refused"
            );
            let kind = match status.as_u16() {
                400 | 401 | 403 => UpstreamErrorKind::AuthFailed,
                _ => UpstreamErrorKind::Malformed,
            };
            return Err(UpstreamError::new(Service::Totvs, kind).with_status(status.as_u16()));
        }
        decode_token(&answer.body)
            .ok_or_else(|| http.malformed(&answer, &"token body without access_token"))
    }
}

/// The token answer, when it carries an access token; any `expires_in` that is not a
/// non-negative integer (or numeric string) is absent.
pub(in crate::upstream) fn decode_token(body: &[u8]) -> Option<TokenDto> {
    serde_json::from_slice::<TokenDto>(body)
        .ok()
        .filter(|dto| !dto.access_token.is_empty())
}

/// When a token obtained at `now` is renewed, and until when its refresh token may be used.
///
/// An upstream's number is not trusted with the clock: `expires_in: u64::MAX` once made every
/// request panic on `Instant + Duration` overflow. The lifetime is clamped, and every sum
/// checked; the margin never takes more than half of the lifetime.
pub(in crate::upstream) fn schedule(
    now: Instant,
    expires_in: Option<u64>,
    margin: Duration,
) -> (Instant, Instant) {
    let lifetime = Duration::from_secs(
        expires_in
            .unwrap_or(DEFAULT_TOKEN_LIFETIME_SECS)
            .clamp(MIN_TOKEN_LIFETIME_SECS, MAX_TOKEN_LIFETIME_SECS),
    );
    let renew_after = lifetime.saturating_sub(margin.min(lifetime / 2));
    let later = |by: Duration| now.checked_add(by).unwrap_or(now);
    (later(renew_after), later(REFRESH_TOKEN_LIFETIME))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{method, path, query_param},
    };

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A token manager on a manual clock in front of a fake TOTVS that logs in with a token
    /// of `lifetime_secs` and refreshes it with one that lasts an hour.
    async fn tokens(lifetime_secs: u64) -> (MockServer, HttpUpstream, TokenManager, Clock) {
        let server = MockServer::start().await;
        let token = |access: &str, refresh: &str, expires_in: u64| {
            ResponseTemplate::new(201).set_body_json(json!({
                "access_token": access, "refresh_token": refresh,
                "token_type": "Bearer", "expires_in": expires_in
            }))
        };
        Mock::given(method("POST"))
            .and(path("/rest/api/oauth2/v1/token"))
            .and(query_param("grant_type", "password"))
            .respond_with(token("first", "r1", lifetime_secs))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/rest/api/oauth2/v1/token"))
            .and(query_param("grant_type", "refresh_token"))
            .and(query_param("refresh_token", "r1"))
            .respond_with(token("second", "r2", 3600))
            .expect(1)
            .mount(&server)
            .await;
        let settings = Settings::for_upstreams(
            "http://mosia.invalid",
            "m",
            &format!("{}/rest", server.uri()),
            "gateway",
            "secret",
        )
        .unwrap();
        let http = HttpUpstream::new(
            Service::Totvs,
            settings.totvs.base_url.clone(),
            &settings.upstream,
            Arc::default(),
        )
        .unwrap();
        let clock = Clock::manual();
        let tokens = TokenManager::new(&http, &settings, clock.clone());
        (server, http, tokens, clock)
    }

    async fn bearer(http: &HttpUpstream, tokens: &TokenManager) -> String {
        tokens.bearer(http).await.unwrap().0.to_string()
    }

    #[test]
    fn an_expires_in_that_is_not_a_non_negative_integer_reads_as_absent() {
        let expires_in = |value: &str| {
            let body = format!(r#"{{"access_token": "a", "expires_in": {value}}}"#);
            decode_token(body.as_bytes()).expect("a token").expires_in
        };
        assert_eq!(expires_in("3600"), Some(3600));
        assert_eq!(expires_in(r#""3600""#), Some(3600));
        assert_eq!(expires_in("9223372036854775807"), Some(i64::MAX as u64));
        for absent in ["-1", r#""forever""#, "3600.5", "null", "[]", "{}"] {
            assert_eq!(expires_in(absent), None, "{absent}");
        }
        assert!(decode_token(br#"{"access_token": ""}"#).is_none());
    }

    #[test]
    fn absurd_lifetimes_and_margins_are_clamped_not_overflowed() {
        let now = Instant::now();
        let day = Duration::from_secs(24 * 3600);
        let huge = Duration::from_secs(u64::MAX);

        assert_eq!(
            schedule(now, Some(u64::MAX), huge),
            (now + day / 2, now + day)
        );
        assert_eq!(
            schedule(now, Some(0), Duration::ZERO).0,
            now + Duration::from_secs(1)
        );
        assert_eq!(
            schedule(now, None, Duration::from_secs(60)).0,
            now + Duration::from_secs(3540)
        );
    }

    #[tokio::test]
    async fn a_token_is_refreshed_the_margin_before_it_expires() {
        let (_server, http, tokens, clock) = tokens(3600).await;

        assert_eq!(bearer(&http, &tokens).await, "Bearer first");
        // The default margin is a minute.
        clock.advance(Duration::from_secs(3540) - MS);
        assert_eq!(bearer(&http, &tokens).await, "Bearer first");
        clock.advance(MS);
        assert_eq!(bearer(&http, &tokens).await, "Bearer second");
        assert_eq!(bearer(&http, &tokens).await, "Bearer second");
    }

    #[tokio::test]
    async fn a_token_shorter_lived_than_twice_the_margin_is_refreshed_half_way() {
        let (_server, http, tokens, clock) = tokens(1).await;

        assert_eq!(bearer(&http, &tokens).await, "Bearer first");
        clock.advance(Duration::from_millis(500) - MS);
        assert_eq!(bearer(&http, &tokens).await, "Bearer first");
        clock.advance(MS);
        assert_eq!(bearer(&http, &tokens).await, "Bearer second");
    }

    #[tokio::test]
    async fn the_status_says_whether_a_token_was_obtained_or_refused() {
        let (server, http, tokens, _clock) = tokens(3600).await;
        assert_eq!(tokens.status(), TokenStatus::NotTried);

        bearer(&http, &tokens).await;
        assert_eq!(tokens.status(), TokenStatus::Obtained);

        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let (_, generation) = tokens.bearer(&http).await.unwrap();
        tokens.discard(generation).await;
        assert!(tokens.bearer(&http).await.is_err());
        assert_eq!(tokens.status(), TokenStatus::Refused);
    }
}
