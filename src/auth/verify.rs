//! Bearer-token verification: the [`Authenticator`], the checks on a token's header and
//! claims, the cache of verified tokens, and [`AuthError`].

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    AuthSettings, Caller, Scopes,
    jwks::{Jwks, check_jwks_url},
    verified::{Verified, VerifiedTokens},
};
use crate::config::ConfigError;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 30;
/// An HS256 secret shorter than the hash is guessable offline from any token it signed.
const MIN_SECRET_BYTES: usize = 32;
/// Far above any real token; bounds the work a garbage header costs.
pub(super) const MAX_TOKEN_BYTES: usize = 8 * 1024;
const VERIFIED_CACHE_CAPACITY: usize = 10_000;
/// A cached verification is redone at least this often, whatever the token's `exp`.
pub(super) const VERIFIED_CACHE_MAX_TTL: Duration = Duration::from_secs(300);

/// Why a request is not authenticated. [`AuthError::message`] is safe for clients: it never
/// carries the token or any of its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("{}", self.message())]
    MissingHeader,
    #[error("{}", self.message())]
    NotBearer,
    #[error("{}", self.message())]
    Malformed,
    #[error("{}", self.message())]
    BadSignature,
    #[error("{}", self.message())]
    Expired,
    #[error("{}", self.message())]
    NotYetValid,
    #[error("{}", self.message())]
    MissingExp,
    #[error("{}", self.message())]
    WrongIssuer,
    #[error("{}", self.message())]
    WrongAudience,
    #[error("{}", self.message())]
    UnknownKey,
    #[error("{}", self.message())]
    AlgorithmNotAllowed,
    #[error("{}", self.message())]
    MissingSub,
    /// The identity provider's keys could not be fetched: not the caller's fault.
    #[error("{}", self.message())]
    JwksUnavailable,
}

impl AuthError {
    /// The client-facing message.
    pub(crate) fn message(&self) -> &'static str {
        match self {
            Self::MissingHeader => "an Authorization: Bearer token is required",
            Self::NotBearer => "the Authorization scheme must be Bearer",
            Self::Malformed => "the token is malformed",
            Self::BadSignature => "the token signature is invalid",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::MissingExp => "the token has no expiry (exp)",
            Self::WrongIssuer => "the token issuer is not accepted",
            Self::WrongAudience => "the token audience is not accepted",
            Self::UnknownKey => "the token signing key is unknown",
            Self::AlgorithmNotAllowed => "the token algorithm is not accepted",
            Self::MissingSub => "the token has no subject (sub)",
            Self::JwksUnavailable => "the token signing keys are unavailable; try again later",
        }
    }

    /// A short code for logs and metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::NotBearer => "not_bearer",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingExp => "missing_exp",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::UnknownKey => "unknown_key",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::MissingSub => "missing_sub",
            Self::JwksUnavailable => "jwks_unavailable",
        }
    }

    fn from_jwt(err: &jsonwebtoken::errors::Error) -> Self {
        match err.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => Self::BadSignature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Self::AlgorithmNotAllowed,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "exp" => Self::MissingExp,
                "iss" => Self::WrongIssuer,
                "aud" => Self::WrongAudience,
                _ => Self::Malformed,
            },
            _ => Self::Malformed,
        }
    }
}

/// Verifies bearer tokens; built once at start and shared by every request.
pub(crate) struct Authenticator {
    disabled: bool,
    anonymous: Arc<Caller>,
    hmac: Option<Arc<DecodingKey>>,
    pub(super) jwks: Option<Jwks>,
    hs256: Validation,
    rs256: Validation,
    es256: Validation,
    /// Verified callers by SHA-256 of their token.
    pub(super) verified: VerifiedTokens,
    #[cfg(test)]
    pub(super) verifications: std::sync::atomic::AtomicU64,
}

impl Authenticator {
    /// Checks the settings (warning about risky ones); fetches nothing yet, see
    /// [`Authenticator::warm_up`]. `client` fetches the JWKS.
    pub(crate) fn new(
        settings: &AuthSettings,
        client: reqwest::Client,
    ) -> Result<Self, ConfigError> {
        if settings.disabled {
            tracing::warn!("authentication is disabled: every request runs as staff");
        }
        let hmac = match &settings.jwt_secret {
            Some(secret) if secret.expose().len() < MIN_SECRET_BYTES => {
                return Err(ConfigError::Invalid {
                    name: "AUTH_JWT_SECRET",
                    reason: format!("must be at least {MIN_SECRET_BYTES} bytes"),
                });
            }
            Some(secret) => Some(Arc::new(DecodingKey::from_secret(
                secret.expose().as_bytes(),
            ))),
            None => None,
        };
        let jwks = match &settings.jwks_url {
            Some(url) => {
                check_jwks_url(url)?;
                Some(Jwks::new(url.clone(), client))
            }
            None => None,
        };
        if !settings.disabled && hmac.is_none() && jwks.is_none() {
            return Err(ConfigError::Missing(
                "AUTH_JWT_SECRET or AUTH_JWKS_URL (or AUTH_DISABLED=true)",
            ));
        }
        Ok(Self {
            disabled: settings.disabled,
            anonymous: Arc::new(Caller::anonymous_staff()),
            hmac,
            jwks,
            hs256: validation(Algorithm::HS256, settings),
            rs256: validation(Algorithm::RS256, settings),
            es256: validation(Algorithm::ES256, settings),
            verified: VerifiedTokens::new(VERIFIED_CACHE_CAPACITY),
            #[cfg(test)]
            verifications: Default::default(),
        })
    }

    /// Fetches the JWKS now, so the first request does not wait for it. An error is worth a
    /// warning, not a refusal to start: keys are fetched again on use.
    pub(crate) async fn warm_up(&self) -> Result<(), AuthError> {
        match &self.jwks {
            Some(jwks) if !self.disabled => {
                jwks.refresh().await;
                if jwks.is_loaded() {
                    Ok(())
                } else {
                    Err(AuthError::JwksUnavailable)
                }
            }
            _ => Ok(()),
        }
    }

    /// The caller behind an `Authorization` header value.
    pub(crate) async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Arc<Caller>, AuthError> {
        if self.disabled {
            return Ok(self.anonymous.clone());
        }
        let result = self.authenticate_token(authorization).await;
        if let Err(err) = &result {
            tracing::debug!(reason = err.reason(), "authentication failed");
        }
        result
    }

    async fn authenticate_token(
        &self,
        authorization: Option<&str>,
    ) -> Result<Arc<Caller>, AuthError> {
        let token = bearer_token(authorization)?;
        let now = now_unix();
        if let Some(caller) = self.verified.recent(token, now) {
            return Ok(caller);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(verified) = self.verified.get(&digest, now) {
            self.verified.remember(token, &verified);
            return Ok(verified.caller);
        }
        well_formed(token)?;
        let (caller, valid_until) = self.verify(token, now).await?;
        let caller = Arc::new(caller);
        if let Some(ttl) = cache_ttl(valid_until, now) {
            let verified = Verified::new(caller.clone(), valid_until, now, ttl);
            self.verified.remember(token, &verified);
            self.verified.insert(digest, verified, now);
        }
        Ok(caller)
    }

    /// Verifies the token and reads the caller; also returns the last Unix second it is valid.
    async fn verify(&self, token: &str, now: i64) -> Result<(Caller, i64), AuthError> {
        #[cfg(test)]
        self.verifications
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let header = JoseHeader::read(token)?;
        // RFC 7515: extensions marked critical that we do not understand make the token invalid.
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let (key, validation) = match header.alg.as_str() {
            "HS256" => (
                self.hmac.clone().ok_or(AuthError::AlgorithmNotAllowed)?,
                &self.hs256,
            ),
            "RS256" | "ES256" => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::AlgorithmNotAllowed)?;
                let (alg, validation) = if header.alg == "RS256" {
                    (Algorithm::RS256, &self.rs256)
                } else {
                    (Algorithm::ES256, &self.es256)
                };
                (jwks.key(alg, header.kid.as_deref()).await?, validation)
            }
            _ => return Err(AuthError::AlgorithmNotAllowed),
        };
        let claims = jsonwebtoken::decode::<RawClaims>(token, &key, validation)
            .map_err(|err| AuthError::from_jwt(&err))?
            .claims;
        claims.into_caller(now)
    }
}

/// The library checks `exp`, `nbf`, `iss` and `aud`; `sub` and `iat` are ours.
fn validation(alg: Algorithm, settings: &AuthSettings) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(issuer) = &settings.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &settings.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        // Otherwise the library refuses every token that carries an `aud`.
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// How long a verified token may be served from the cache, if at all.
pub(super) fn cache_ttl(valid_until: i64, now: i64) -> Option<Duration> {
    let remaining = u64::try_from(valid_until - now)
        .ok()
        .filter(|secs| *secs > 0)?;
    Some(Duration::from_secs(remaining).min(VERIFIED_CACHE_MAX_TTL))
}

pub(super) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// The token of a `Bearer` header value (the scheme is case-insensitive, RFC 9110).
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    // A header value that reached here is visible ASCII, spaces and tabs (`to_str`): ASCII
    // trimming is the whole of it, and byte loops beat char ones on every request.
    let value = authorization
        .map(str::trim_ascii)
        .filter(|value| !value.is_empty())
        .ok_or(AuthError::MissingHeader)?;
    let (scheme, token) = match value.bytes().position(|byte| matches!(byte, b' ' | b'\t')) {
        Some(at) => (&value[..at], value[at + 1..].trim_ascii()),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Three base64url parts: checked before a token is verified, not when the cache of verified
/// tokens already holds it (it was checked then; the loop over its bytes is most of a hit's
/// cost).
fn well_formed(token: &str) -> Result<(), AuthError> {
    let mut dots = 0;
    let well_formed = token.bytes().all(|byte| {
        dots += usize::from(byte == b'.');
        byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.')
    }) && dots == 2;
    if well_formed {
        Ok(())
    } else {
        Err(AuthError::Malformed)
    }
}

/// The JOSE header fields read before verification: which key, and whether to try at all.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl JoseHeader {
    fn read(token: &str) -> Result<Self, AuthError> {
        let encoded = token.split('.').next().unwrap_or_default();
        let json = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| AuthError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)
    }
}

/// The claims we read, each as raw JSON so that a wrong type is refused by us rather than
/// skipped (the type confusion of GHSA-h395-gr6q-cpjc).
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    iat: Option<Value>,
    #[serde(default)]
    scope: Option<Value>,
    #[serde(default)]
    unique_key: Option<Value>,
    #[serde(default)]
    subscriber_id: Option<Value>,
}

impl RawClaims {
    fn into_caller(self, now: i64) -> Result<(Caller, i64), AuthError> {
        let leeway = LEEWAY_SECS as i64;
        // The library checked `exp` (required) and `nbf`; their types are checked again here.
        let exp = self
            .exp
            .as_ref()
            .map(numeric_date)
            .ok_or(AuthError::MissingExp)??;
        if let Some(nbf) = &self.nbf {
            numeric_date(nbf)?;
        }
        if let Some(iat) = &self.iat
            && numeric_date(iat)? > now + leeway
        {
            return Err(AuthError::NotYetValid);
        }
        let sub = match self.sub {
            Some(Value::String(sub)) if !sub.trim().is_empty() => sub,
            _ => return Err(AuthError::MissingSub),
        };
        let scopes = match optional_string(self.scope)? {
            Some(scope) => Scopes::parse(&scope),
            None => Scopes::default(),
        };
        let caller = Caller {
            sub: sub.into(),
            scopes,
            unique_key: optional_string(self.unique_key)?,
            subscriber_id: optional_string(self.subscriber_id)?,
        };
        Ok((caller, exp.saturating_add(leeway)))
    }
}

/// A JSON NumericDate (seconds, possibly fractional) as whole seconds.
fn numeric_date(value: &Value) -> Result<i64, AuthError> {
    match value.as_i64() {
        Some(secs) => Ok(secs),
        None => value
            .as_f64()
            .filter(|secs| secs.is_finite() && secs.abs() < 1e15)
            .map(|secs| secs.round() as i64)
            .ok_or(AuthError::Malformed),
    }
}

/// A string claim; empty counts as absent, and any other type is refused.
fn optional_string(value: Option<Value>) -> Result<Option<String>, AuthError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(AuthError::Malformed),
    }
}
