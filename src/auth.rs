//! Who is calling (a verified JWT) and which beneficiaries they may read or write.
//!
//! The data behind the gateway is personal health data, so every rule here fails closed: a
//! token is trusted only when its algorithm is one we configured, its key is one we hold, its
//! signature verifies, and its time, issuer, audience and subject claims check out. Keys come
//! from `AUTH_JWT_SECRET` (HS256 only) and `AUTH_JWKS_URL` (RS256 and ES256 only), never from
//! the token itself (`jku`, `jwk` and `x5u` headers are ignored).
//!
//! Verification runs once per token: a verified caller is remembered under a digest of its
//! token until the token expires, so a hot path pays one SHA-256.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use moka::sync::Cache;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use url::{Host, Url};

use crate::config::{ConfigError, Secret};

/// Reads any beneficiary (staff).
pub const SCOPE_READ: &str = "protocols:read";
/// Runs mutations for any beneficiary (staff).
pub const SCOPE_WRITE: &str = "protocols:write";

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 30;
/// An HS256 secret shorter than the hash is guessable offline from any token it signed.
const MIN_SECRET_BYTES: usize = 32;
/// Far above any real token; bounds the work a garbage header costs.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
const JWKS_MAX_BYTES: usize = 64 * 1024;
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// A token with an unknown `kid` triggers a JWKS fetch at most this often, so forged `kid`s
/// cannot turn the gateway into a flood of requests to the identity provider.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// While no JWKS was ever loaded (the provider was down at start), retry sooner.
const JWKS_RETRY_WHILE_EMPTY: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again on next use, so a key the provider withdrew stops
/// verifying; if that fetch fails the old keys keep serving.
const JWKS_MAX_AGE: Duration = Duration::from_secs(15 * 60);
const JWKS_MAX_KEYS: usize = 64;
const MIN_RSA_BITS: usize = 2048;
const VERIFIED_CACHE_CAPACITY: u64 = 10_000;
/// A cached verification is redone at least this often, whatever the token's `exp`.
const VERIFIED_CACHE_MAX_TTL: Duration = Duration::from_secs(300);

/// How callers are authenticated; filled from `AUTH_*` settings.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    /// Verifies HS256 tokens (at least 32 bytes).
    pub jwt_secret: Option<Secret>,
    /// Where the RS256/ES256 public keys are published.
    pub jwks_url: Option<Url>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    pub audience: Option<String>,
    /// Every request is the anonymous staff caller.
    pub disabled: bool,
}

/// The scopes a token grants; other scopes are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scopes {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

impl Scopes {
    /// The space-separated `scope` claim.
    fn parse(scope: &str) -> Self {
        let mut scopes = Self::default();
        for scope in scope.split_ascii_whitespace() {
            match scope {
                SCOPE_READ => scopes.read = true,
                SCOPE_WRITE => scopes.write = true,
                _ => {}
            }
        }
        scopes
    }
}

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The caller in logs and rate limits.
    pub(crate) sub: String,
    pub(crate) scopes: Scopes,
    /// The Mosia chaveUnica of the beneficiary the token is for (claim `unique_key`).
    pub(crate) unique_key: Option<String>,
    /// The TOTVS matrícula of the beneficiary the token is for (claim `subscriber_id`).
    pub(crate) subscriber_id: Option<String>,
}

/// A beneficiary key an operation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BeneficiaryKey {
    UniqueKey,
    SubscriberId,
}

impl BeneficiaryKey {
    /// The GraphQL argument name, for the audit log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::UniqueKey => "uniqueKey",
            Self::SubscriberId => "subscriberId",
        }
    }
}

impl std::fmt::Display for BeneficiaryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a caller may not touch a beneficiary. The client sees only [`Refusal::MESSAGE`], the
/// same whether or not the other beneficiary exists; the variant is for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the token has neither a staff scope nor beneficiary claims")]
    NoGrant,
    #[error("a beneficiary token must name its own beneficiary")]
    NoBeneficiaryNamed,
    #[error("the token has no claim for the {0} named")]
    NoClaim(BeneficiaryKey),
    #[error("the {0} named is not the token's own")]
    NotOwn(BeneficiaryKey),
}

impl Refusal {
    pub(crate) const MESSAGE: &'static str = "this caller may not access this beneficiary";

    /// A short code for the audit log.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::NoGrant => "no_grant",
            Self::NoBeneficiaryNamed => "no_beneficiary_named",
            Self::NoClaim(_) => "no_claim",
            Self::NotOwn(_) => "not_own",
        }
    }
}

impl Caller {
    /// The caller of every request when authentication is off: full read and write.
    pub(crate) fn anonymous_staff() -> Self {
        Self {
            sub: "anonymous".into(),
            scopes: Scopes {
                read: true,
                write: true,
            },
            unique_key: None,
            subscriber_id: None,
        }
    }

    /// Whether the token names a beneficiary it is for.
    pub(crate) fn is_beneficiary(&self) -> bool {
        self.unique_key.is_some() || self.subscriber_id.is_some()
    }

    /// Runs mutations for any beneficiary.
    pub(crate) fn is_staff_writer(&self) -> bool {
        self.scopes.write
    }

    /// The caller's own TOTVS matrícula, to prove that a protocol is its own.
    pub(crate) fn own_subscriber_id(&self) -> Option<&str> {
        self.subscriber_id.as_deref()
    }

    /// May the caller read the beneficiary named by these keys (those the operation names)?
    pub(crate) fn may_read(
        &self,
        unique_key: Option<&str>,
        subscriber_id: Option<&str>,
    ) -> Result<(), Refusal> {
        self.may_access(self.scopes.read, unique_key, subscriber_id)
    }

    /// May the caller run a mutation for the beneficiary named by these keys?
    pub(crate) fn may_write(
        &self,
        unique_key: Option<&str>,
        subscriber_id: Option<&str>,
    ) -> Result<(), Refusal> {
        self.may_access(self.scopes.write, unique_key, subscriber_id)
    }

    fn may_access(
        &self,
        staff: bool,
        unique_key: Option<&str>,
        subscriber_id: Option<&str>,
    ) -> Result<(), Refusal> {
        if staff {
            return Ok(());
        }
        if !self.is_beneficiary() {
            return Err(Refusal::NoGrant);
        }
        // With no key named there is nothing to prove ownership of.
        if unique_key.is_none() && subscriber_id.is_none() {
            return Err(Refusal::NoBeneficiaryNamed);
        }
        owns(
            BeneficiaryKey::UniqueKey,
            unique_key,
            self.unique_key.as_deref(),
        )?;
        owns(
            BeneficiaryKey::SubscriberId,
            subscriber_id,
            self.subscriber_id.as_deref(),
        )
    }
}

fn owns(key: BeneficiaryKey, named: Option<&str>, claim: Option<&str>) -> Result<(), Refusal> {
    match (named, claim) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(Refusal::NoClaim(key)),
        (Some(named), Some(claim)) if named == claim => Ok(()),
        (Some(_), Some(_)) => Err(Refusal::NotOwn(key)),
    }
}

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
    jwks: Option<Jwks>,
    hs256: Validation,
    rs256: Validation,
    es256: Validation,
    /// Verified callers by SHA-256 of their token.
    verified: Cache<[u8; 32], Verified>,
    #[cfg(test)]
    verifications: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct Verified {
    caller: Arc<Caller>,
    /// Unix time after which the token is expired even with the leeway.
    valid_until: i64,
    ttl: Duration,
}

struct VerifiedExpiry;

impl moka::Expiry<[u8; 32], Verified> for VerifiedExpiry {
    fn expire_after_create(
        &self,
        _token: &[u8; 32],
        verified: &Verified,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(verified.ttl)
    }
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
            verified: Cache::builder()
                .max_capacity(VERIFIED_CACHE_CAPACITY)
                .expire_after(VerifiedExpiry)
                .build(),
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
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_unix();
        if let Some(hit) = self.verified.get(&digest)
            && now <= hit.valid_until
        {
            return Ok(hit.caller);
        }
        let (caller, valid_until) = self.verify(token, now).await?;
        let caller = Arc::new(caller);
        if let Some(ttl) = cache_ttl(valid_until, now) {
            self.verified.insert(
                digest,
                Verified {
                    caller: caller.clone(),
                    valid_until,
                    ttl,
                },
            );
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

fn check_jwks_url(url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(Host::Ipv4(ip)) => ip.is_loopback(),
                Some(Host::Ipv6(ip)) => ip.is_loopback(),
                Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if !loopback {
                tracing::warn!(
                    host = url.host_str(),
                    "AUTH_JWKS_URL is plain http: whoever can alter the answer can mint tokens"
                );
            }
            Ok(())
        }
        _ => Err(ConfigError::Invalid {
            name: "AUTH_JWKS_URL",
            reason: "expected an http(s) URL".into(),
        }),
    }
}

/// How long a verified token may be served from the cache, if at all.
fn cache_ttl(valid_until: i64, now: i64) -> Option<Duration> {
    let remaining = u64::try_from(valid_until - now)
        .ok()
        .filter(|secs| *secs > 0)?;
    Some(Duration::from_secs(remaining).min(VERIFIED_CACHE_MAX_TTL))
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// The token of a `Bearer` header value (the scheme is case-insensitive, RFC 9110).
fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or(AuthError::MissingHeader)?;
    let (scheme, token) = value
        .split_once([' ', '\t'])
        .map_or((value, ""), |(scheme, rest)| (scheme, rest.trim()));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let well_formed = !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token.bytes().filter(|byte| *byte == b'.').count() == 2
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    if well_formed {
        Ok(token)
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
            sub,
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

/// The identity provider's public keys, fetched on first use and cached.
struct Jwks {
    url: Url,
    client: reqwest::Client,
    timeout: Duration,
    state: RwLock<JwksState>,
    /// One fetch at a time; the others wait for its keys.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksState {
    keys: Vec<JwksKey>,
    loaded_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

#[derive(Clone)]
struct JwksKey {
    kid: Option<String>,
    alg: Algorithm,
    key: Arc<DecodingKey>,
}

#[derive(Debug, thiserror::Error)]
enum JwksError {
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answer larger than {JWKS_MAX_BYTES} bytes")]
    TooLarge,
    #[error("no answer within {JWKS_TIMEOUT:?}")]
    Timeout,
    #[error("not a JWK set")]
    NotJwks,
    #[error("no usable RS256 or ES256 signing key")]
    NoUsableKeys,
}

impl Jwks {
    fn new(url: Url, client: reqwest::Client) -> Self {
        Self {
            url,
            client,
            timeout: JWKS_TIMEOUT,
            state: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn is_loaded(&self) -> bool {
        self.read_state().loaded_at.is_some()
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, JwksState> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, JwksState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The key for a token's `alg` and `kid`, fetching the set again when the key is unknown
    /// or the set is old (both at most once a minute).
    async fn key(&self, alg: Algorithm, kid: Option<&str>) -> Result<Arc<DecodingKey>, AuthError> {
        let now = Instant::now();
        let (found, fresh) = {
            let state = self.read_state();
            let fresh = state
                .loaded_at
                .is_some_and(|at| now.saturating_duration_since(at) < JWKS_MAX_AGE);
            (find_key(&state.keys, alg, kid), fresh)
        };
        match found {
            Some(key) if fresh => return Ok(key),
            // An old set is renewed by one request; the others keep using it meanwhile rather
            // than wait on a provider that may be slow or down.
            Some(key) => match self.fetching.try_lock() {
                Ok(fetching) => self.refresh_locked(fetching).await,
                Err(_) => return Ok(key),
            },
            None => self.refresh().await,
        }
        let state = self.read_state();
        match find_key(&state.keys, alg, kid) {
            Some(key) => Ok(key),
            None if state.loaded_at.is_none() => Err(AuthError::JwksUnavailable),
            None => Err(AuthError::UnknownKey),
        }
    }

    /// Fetches the set unless it was tried too recently; a failure keeps the keys we had.
    async fn refresh(&self) {
        self.refresh_locked(self.fetching.lock().await).await;
    }

    async fn refresh_locked(&self, _fetching: tokio::sync::MutexGuard<'_, ()>) {
        let now = Instant::now();
        {
            let mut state = self.write_state();
            let interval = if state.loaded_at.is_some() {
                JWKS_REFETCH_INTERVAL
            } else {
                JWKS_RETRY_WHILE_EMPTY
            };
            if state
                .last_attempt
                .is_some_and(|at| now.saturating_duration_since(at) < interval)
            {
                return;
            }
            state.last_attempt = Some(now);
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS fetched");
                let mut state = self.write_state();
                state.keys = keys;
                state.loaded_at = Some(Instant::now());
            }
            Err(err) => {
                tracing::warn!(error = %err, host = self.url.host_str(), "JWKS fetch failed");
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<JwksKey>, JwksError> {
        let request = async {
            let mut response = self
                .client
                .get(self.url.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(self.timeout)
                .send()
                .await
                .map_err(reqwest::Error::without_url)?;
            let status = response.status();
            if !status.is_success() {
                return Err(JwksError::Status(status.as_u16()));
            }
            if response
                .content_length()
                .is_some_and(|length| length > JWKS_MAX_BYTES as u64)
            {
                return Err(JwksError::TooLarge);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(reqwest::Error::without_url)?
            {
                if body.len() + chunk.len() > JWKS_MAX_BYTES {
                    return Err(JwksError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            parse_jwks(&body)
        };
        tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| JwksError::Timeout)?
    }

    /// Pretends the last fetch (and load) happened `by` earlier.
    #[cfg(test)]
    fn backdate(&self, by: Duration) {
        let mut state = self.write_state();
        let earlier = |at: Instant| at.checked_sub(by).expect("the machine has been up longer");
        state.last_attempt = state.last_attempt.map(earlier);
        state.loaded_at = state.loaded_at.map(earlier);
    }
}

/// The key with this `kid` for this algorithm; without a `kid`, the only key for it.
fn find_key(keys: &[JwksKey], alg: Algorithm, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
    let mut candidates = keys.iter().filter(|key| key.alg == alg);
    let found = match kid {
        Some(kid) => candidates.find(|key| key.kid.as_deref() == Some(kid)),
        None => candidates.next().filter(|_| candidates.next().is_none()),
    };
    found.map(|key| key.key.clone())
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// The RS256 and ES256 (P-256) signing keys of a JWK set; other keys are skipped, so that
/// an `oct` key, say, can never become an HMAC secret.
fn parse_jwks(body: &[u8]) -> Result<Vec<JwksKey>, JwksError> {
    let raw: RawJwks = serde_json::from_slice(body).map_err(|_| JwksError::NotJwks)?;
    let total = raw.keys.len();
    let keys: Vec<JwksKey> = raw
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<RawJwk>(value).ok())
        .filter_map(usable_key)
        .take(JWKS_MAX_KEYS)
        .collect();
    if keys.len() < total {
        tracing::debug!(
            skipped = total - keys.len(),
            "JWKS keys skipped (not RS256/ES256 signing keys)"
        );
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(keys)
}

fn usable_key(jwk: RawJwk) -> Option<JwksKey> {
    if jwk.usage.as_deref().is_some_and(|usage| usage != "sig") {
        return None;
    }
    let (alg, key) = match jwk.kty.as_str() {
        "RSA" => {
            let (n, e) = (jwk.n.as_deref()?, jwk.e.as_deref()?);
            if rsa_bits(&URL_SAFE_NO_PAD.decode(n).ok()?) < MIN_RSA_BITS {
                return None;
            }
            (
                Algorithm::RS256,
                DecodingKey::from_rsa_components(n, e).ok()?,
            )
        }
        "EC" if jwk.crv.as_deref() == Some("P-256") => {
            let (x, y) = (jwk.x.as_deref()?, jwk.y.as_deref()?);
            let coordinate_ok = |c: &str| {
                URL_SAFE_NO_PAD
                    .decode(c)
                    .is_ok_and(|bytes| bytes.len() == 32)
            };
            if !coordinate_ok(x) || !coordinate_ok(y) {
                return None;
            }
            (
                Algorithm::ES256,
                DecodingKey::from_ec_components(x, y).ok()?,
            )
        }
        _ => return None,
    };
    let alg_name = match alg {
        Algorithm::RS256 => "RS256",
        _ => "ES256",
    };
    if jwk
        .alg
        .as_deref()
        .is_some_and(|declared| declared != alg_name)
    {
        return None;
    }
    Some(JwksKey {
        kid: jwk.kid,
        alg,
        key: Arc::new(key),
    })
}

fn rsa_bits(modulus: &[u8]) -> usize {
    let significant: Vec<u8> = modulus
        .iter()
        .copied()
        .skip_while(|byte| *byte == 0)
        .collect();
    match significant.first() {
        Some(first) => (significant.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// Signs `claims` as an HS256 token: for the sandbox and tests.
pub fn mint_hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HMAC signing of a JSON value cannot fail")
}

/// Claims for a test or sandbox token: issued now, expiring in an hour.
#[derive(Clone, Debug)]
pub struct ClaimsBuilder(Map<String, Value>);

impl ClaimsBuilder {
    pub fn new(sub: &str) -> Self {
        let now = now_unix();
        let mut claims = Map::new();
        claims.insert("sub".into(), sub.into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + 3600).into());
        Self(claims)
    }

    /// Reads and writes any beneficiary.
    pub fn staff(self) -> Self {
        self.scope(&format!("{SCOPE_READ} {SCOPE_WRITE}"))
    }

    /// The space-separated `scope` claim.
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", scope.into())
    }

    /// The beneficiary's Mosia chaveUnica.
    pub fn unique_key(self, unique_key: &str) -> Self {
        self.claim("unique_key", unique_key.into())
    }

    /// The beneficiary's TOTVS matrícula.
    pub fn subscriber_id(self, subscriber_id: &str) -> Self {
        self.claim("subscriber_id", subscriber_id.into())
    }

    pub fn issuer(self, issuer: &str) -> Self {
        self.claim("iss", issuer.into())
    }

    pub fn audience(self, audience: &str) -> Self {
        self.claim("aud", audience.into())
    }

    /// `exp` this many seconds from now (negative: in the past).
    pub fn expires_in(self, secs: i64) -> Self {
        self.claim("exp", (now_unix() + secs).into())
    }

    /// `nbf` this many seconds from now.
    pub fn not_before_in(self, secs: i64) -> Self {
        self.claim("nbf", (now_unix() + secs).into())
    }

    /// `iat` this many seconds from now.
    pub fn issued_in(self, secs: i64) -> Self {
        self.claim("iat", (now_unix() + secs).into())
    }

    /// Any claim, of any JSON type.
    pub fn claim(mut self, name: &str, value: Value) -> Self {
        self.0.insert(name.into(), value);
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.0.remove(name);
        self
    }

    pub fn build(self) -> Value {
        Value::Object(self.0)
    }

    pub fn mint_hs256(self, secret: &str) -> String {
        mint_hs256(secret, &self.build())
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::Jwk;
    use serde_json::json;
    use wiremock::{
        Mock, MockServer, ResponseTemplate,
        matchers::{method, path},
    };

    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes";
    const RSA_PRIVATE: &str = include_str!("../fixtures/auth/rsa-private.pem");
    const RSA_PUBLIC: &str = include_str!("../fixtures/auth/rsa-public.pem");
    const RSA_OTHER_PRIVATE: &str = include_str!("../fixtures/auth/rsa-other-private.pem");
    const EC_PRIVATE: &str = include_str!("../fixtures/auth/ec-p256-private.pem");

    fn secret_settings() -> AuthSettings {
        AuthSettings {
            jwt_secret: Some(Secret::new(SECRET)),
            ..AuthSettings::default()
        }
    }

    fn authenticator(settings: &AuthSettings) -> Authenticator {
        Authenticator::new(settings, reqwest::Client::new()).unwrap()
    }

    async fn bearer(auth: &Authenticator, token: &str) -> Result<Arc<Caller>, AuthError> {
        auth.authenticate(Some(&format!("Bearer {token}"))).await
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with this header and these claims, signed by `alg` with the given PEM key.
    fn sign_pem(alg: Algorithm, kid: Option<&str>, pem: &str, claims: &Value) -> String {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            other => panic!("no PEM signing for {other:?}"),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(String::from);
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn sign_hmac(alg: Algorithm, kid: Option<&str>, secret: &[u8], claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(String::from);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    /// The public JWK of a PEM private key, as an identity provider would publish it.
    fn jwk(alg: Algorithm, kid: &str, pem: &str) -> Value {
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        };
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
        jwk["kid"] = kid.into();
        jwk["use"] = "sig".into();
        jwk
    }

    fn rsa_jwk(kid: &str) -> Value {
        jwk(Algorithm::RS256, kid, RSA_PRIVATE)
    }

    fn ec_jwk(kid: &str) -> Value {
        jwk(Algorithm::ES256, kid, EC_PRIVATE)
    }

    fn staff() -> Value {
        ClaimsBuilder::new("staff-1").staff().build()
    }

    async fn jwks_server(keys: Vec<Value>, fetches: u64) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "keys": keys })))
            .expect(fetches)
            .mount(&server)
            .await;
        server
    }

    fn jwks_settings(server: &MockServer) -> AuthSettings {
        AuthSettings {
            jwks_url: Some(Url::parse(&format!("{}/jwks", server.uri())).unwrap()),
            ..AuthSettings::default()
        }
    }

    async fn fetches(server: &MockServer) -> usize {
        server.received_requests().await.unwrap().len()
    }

    fn jwks(auth: &Authenticator) -> &Jwks {
        auth.jwks.as_ref().unwrap()
    }

    #[tokio::test]
    async fn a_valid_hs256_token_yields_its_caller() {
        let auth = authenticator(&secret_settings());
        let token = ClaimsBuilder::new("beneficiary-7")
            .scope("openid protocols:read")
            .unique_key("UK-1")
            .subscriber_id("0001")
            .mint_hs256(SECRET);
        let caller = bearer(&auth, &token).await.unwrap();
        assert_eq!(
            *caller,
            Caller {
                sub: "beneficiary-7".into(),
                scopes: Scopes {
                    read: true,
                    write: false
                },
                unique_key: Some("UK-1".into()),
                subscriber_id: Some("0001".into()),
            }
        );
        let staff = bearer(&auth, &mint_hs256(SECRET, &staff())).await.unwrap();
        assert_eq!(
            staff.scopes,
            Scopes {
                read: true,
                write: true
            }
        );
        assert!(!staff.is_beneficiary());
    }

    #[tokio::test]
    async fn the_header_must_be_a_bearer_token_with_any_case_scheme() {
        let auth = authenticator(&secret_settings());
        let token = mint_hs256(SECRET, &staff());
        for header in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("BEARER  {token} "),
        ] {
            assert!(auth.authenticate(Some(&header)).await.is_ok(), "{header}");
        }
        let refusals = [
            (None, AuthError::MissingHeader),
            (Some(String::new()), AuthError::MissingHeader),
            (Some("   ".into()), AuthError::MissingHeader),
            (Some(token.clone()), AuthError::NotBearer),
            (Some(format!("Basic {token}")), AuthError::NotBearer),
            (Some(format!("Bearer{token}")), AuthError::NotBearer),
            (Some("Bearer".into()), AuthError::Malformed),
            (Some("Bearer   ".into()), AuthError::Malformed),
        ];
        for (header, expected) in refusals {
            assert_eq!(
                auth.authenticate(header.as_deref()).await.unwrap_err(),
                expected,
                "{header:?}"
            );
        }
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let auth = authenticator(&secret_settings());
        let token = mint_hs256(SECRET, &staff());
        let payload = token.split('.').nth(1).unwrap();
        let signature = token.split('.').nth(2).unwrap();
        for garbage in [
            "garbage".to_owned(),
            "a.b".into(),
            "a.b.c".into(),
            "...".into(),
            format!("{token}.extra"),
            format!("{token}="),
            token.replace('.', "%"),
            format!("{}.{payload}.{signature}", b64(b"not json")),
            format!("{}.{payload}.{signature}", b64(br#"{"typ":"JWT"}"#)),
            format!("{}.{payload}.{signature}", b64(br#"{"alg":256}"#)),
            "x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(
                bearer(&auth, &garbage).await.unwrap_err(),
                AuthError::Malformed,
                "{garbage}"
            );
        }
    }

    #[tokio::test]
    async fn exp_is_required_and_has_thirty_seconds_of_leeway() {
        let auth = authenticator(&secret_settings());
        let within = ClaimsBuilder::new("s").expires_in(-10).mint_hs256(SECRET);
        assert!(bearer(&auth, &within).await.is_ok());
        let expired = ClaimsBuilder::new("s").expires_in(-60).mint_hs256(SECRET);
        assert_eq!(
            bearer(&auth, &expired).await.unwrap_err(),
            AuthError::Expired
        );
        let without = ClaimsBuilder::new("s").without("exp").mint_hs256(SECRET);
        assert_eq!(
            bearer(&auth, &without).await.unwrap_err(),
            AuthError::MissingExp
        );
        // A string is not a NumericDate, however far in the future it reads.
        let string = ClaimsBuilder::new("s")
            .claim("exp", "99999999999".into())
            .mint_hs256(SECRET);
        assert!(bearer(&auth, &string).await.is_err());
    }

    #[tokio::test]
    async fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
        let auth = authenticator(&secret_settings());
        for (claims, expected) in [
            (ClaimsBuilder::new("s").not_before_in(10), None),
            (
                ClaimsBuilder::new("s").not_before_in(60),
                Some(AuthError::NotYetValid),
            ),
            (ClaimsBuilder::new("s").issued_in(10), None),
            (
                ClaimsBuilder::new("s").issued_in(60),
                Some(AuthError::NotYetValid),
            ),
            (
                ClaimsBuilder::new("s").claim("iat", "soon".into()),
                Some(AuthError::Malformed),
            ),
        ] {
            let token = claims.clone().mint_hs256(SECRET);
            assert_eq!(
                bearer(&auth, &token).await.err(),
                expected,
                "{:?}",
                claims.build()
            );
        }
        // The type confusion of GHSA-h395-gr6q-cpjc: a string nbf must not be skipped.
        let string_nbf = ClaimsBuilder::new("s")
            .claim("nbf", "99999999999".into())
            .mint_hs256(SECRET);
        assert!(bearer(&auth, &string_nbf).await.is_err());
    }

    #[tokio::test]
    async fn a_wrong_or_tampered_signature_is_refused() {
        let auth = authenticator(&secret_settings());
        let other = ClaimsBuilder::new("s")
            .staff()
            .mint_hs256("another-secret-of-at-least-thirty-two-bytes");
        assert_eq!(
            bearer(&auth, &other).await.unwrap_err(),
            AuthError::BadSignature
        );

        let token = ClaimsBuilder::new("beneficiary")
            .unique_key("UK-1")
            .mint_hs256(SECRET);
        let parts: Vec<&str> = token.split('.').collect();
        let escalated = serde_json::to_vec(
            &ClaimsBuilder::new("beneficiary")
                .unique_key("UK-1")
                .staff()
                .build(),
        )
        .unwrap();
        let tampered = format!("{}.{}.{}", parts[0], b64(&escalated), parts[2]);
        assert_eq!(
            bearer(&auth, &tampered).await.unwrap_err(),
            AuthError::BadSignature
        );
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(
            bearer(&auth, &unsigned).await.unwrap_err(),
            AuthError::BadSignature
        );
        let mut flipped = parts[2].to_owned().into_bytes();
        flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
        let flipped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(flipped).unwrap()
        );
        assert_eq!(
            bearer(&auth, &flipped).await.unwrap_err(),
            AuthError::BadSignature
        );
        assert!(bearer(&auth, &token[..token.len() - 4]).await.is_err());
    }

    #[tokio::test]
    async fn the_secret_verifies_hs256_only() {
        let auth = authenticator(&secret_settings());
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = sign_hmac(alg, None, SECRET.as_bytes(), &staff());
            assert_eq!(
                bearer(&auth, &token).await.unwrap_err(),
                AuthError::AlgorithmNotAllowed,
                "{alg:?}"
            );
        }
        // Without a JWKS, asymmetric tokens have no key.
        let rs256 = sign_pem(Algorithm::RS256, Some("rsa-1"), RSA_PRIVATE, &staff());
        assert_eq!(
            bearer(&auth, &rs256).await.unwrap_err(),
            AuthError::AlgorithmNotAllowed
        );
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let server = jwks_server(vec![rsa_jwk("rsa-1")], 0).await;
        let both = AuthSettings {
            jwt_secret: Some(Secret::new(SECRET)),
            ..jwks_settings(&server)
        };
        let auth = authenticator(&both);
        let payload = b64(&serde_json::to_vec(&staff()).unwrap());
        let valid_signature = mint_hs256(SECRET, &staff())
            .rsplit('.')
            .next()
            .unwrap()
            .to_owned();
        for alg in [
            "none", "None", "NONE", "nOnE", "HS256 ", "", "PS256", "EdDSA",
        ] {
            let header = b64(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes());
            for signature in ["", "c2ln", valid_signature.as_str()] {
                let token = format!("{header}.{payload}.{signature}");
                assert_eq!(
                    bearer(&auth, &token).await.unwrap_err(),
                    AuthError::AlgorithmNotAllowed,
                    "alg {alg:?}, signature {signature:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_subject_is_a_required_non_empty_string() {
        let auth = authenticator(&secret_settings());
        for sub in [
            None,
            Some(json!("")),
            Some(json!("  ")),
            Some(json!(42)),
            Some(Value::Null),
        ] {
            let mut claims = ClaimsBuilder::new("x").staff().without("sub");
            if let Some(sub) = sub.clone() {
                claims = claims.claim("sub", sub);
            }
            assert_eq!(
                bearer(&auth, &claims.mint_hs256(SECRET)).await.unwrap_err(),
                AuthError::MissingSub,
                "{sub:?}"
            );
        }
    }

    #[tokio::test]
    async fn claims_of_the_wrong_type_are_refused_and_empty_keys_are_absent() {
        let auth = authenticator(&secret_settings());
        for (name, value) in [
            ("scope", json!(["protocols:read"])),
            ("unique_key", json!(123)),
            ("subscriber_id", json!({ "id": "1" })),
        ] {
            let token = ClaimsBuilder::new("s")
                .claim(name, value)
                .mint_hs256(SECRET);
            assert_eq!(
                bearer(&auth, &token).await.unwrap_err(),
                AuthError::Malformed,
                "{name}"
            );
        }
        let token = ClaimsBuilder::new("s")
            .unique_key("")
            .subscriber_id("S-1")
            .mint_hs256(SECRET);
        let caller = bearer(&auth, &token).await.unwrap();
        assert_eq!(caller.unique_key, None);
        assert_eq!(caller.own_subscriber_id(), Some("S-1"));
    }

    #[tokio::test]
    async fn issuer_and_audience_are_checked_when_set() {
        let auth = authenticator(&AuthSettings {
            issuer: Some("https://idp.example".into()),
            audience: Some("protocol-graph".into()),
            ..secret_settings()
        });
        let good = || {
            ClaimsBuilder::new("s")
                .issuer("https://idp.example")
                .audience("protocol-graph")
        };
        assert!(bearer(&auth, &good().mint_hs256(SECRET)).await.is_ok());
        let among_audiences = good().claim("aud", json!(["other", "protocol-graph"]));
        assert!(
            bearer(&auth, &among_audiences.mint_hs256(SECRET))
                .await
                .is_ok()
        );
        for (claims, expected) in [
            (
                good().issuer("https://evil.example"),
                AuthError::WrongIssuer,
            ),
            (good().without("iss"), AuthError::WrongIssuer),
            (good().audience("other"), AuthError::WrongAudience),
            (
                good().claim("aud", json!(["a", "b"])),
                AuthError::WrongAudience,
            ),
            (good().without("aud"), AuthError::WrongAudience),
        ] {
            assert_eq!(
                bearer(&auth, &claims.clone().mint_hs256(SECRET))
                    .await
                    .unwrap_err(),
                expected,
                "{:?}",
                claims.build()
            );
        }

        // Unset, they are not checked at all.
        let lax = authenticator(&secret_settings());
        let token = ClaimsBuilder::new("s")
            .issuer("anyone")
            .audience("anything")
            .mint_hs256(SECRET);
        assert!(bearer(&lax, &token).await.is_ok());
    }

    #[tokio::test]
    async fn a_crit_header_is_refused() {
        let auth = authenticator(&secret_settings());
        let token = mint_hs256(SECRET, &staff());
        let (_, rest) = token.split_once('.').unwrap();
        let header = b64(br#"{"alg":"HS256","crit":["exp"]}"#);
        assert_eq!(
            bearer(&auth, &format!("{header}.{rest}"))
                .await
                .unwrap_err(),
            AuthError::Malformed
        );
    }

    #[tokio::test]
    async fn rs256_and_es256_verify_with_jwks_keys_fetched_once() {
        let server = jwks_server(vec![rsa_jwk("rsa-1"), ec_jwk("ec-1")], 1).await;
        let auth = authenticator(&jwks_settings(&server));
        for n in 0..3 {
            let claims = ClaimsBuilder::new(&format!("staff-{n}")).staff().build();
            let rs = sign_pem(Algorithm::RS256, Some("rsa-1"), RSA_PRIVATE, &claims);
            let es = sign_pem(Algorithm::ES256, Some("ec-1"), EC_PRIVATE, &claims);
            assert_eq!(bearer(&auth, &rs).await.unwrap().sub, format!("staff-{n}"));
            assert_eq!(bearer(&auth, &es).await.unwrap().sub, format!("staff-{n}"));
        }
        // An ES256 token must not verify against the RSA key of the same kid, nor the reverse.
        let es_as_rsa = sign_pem(Algorithm::ES256, Some("rsa-1"), EC_PRIVATE, &staff());
        assert_eq!(
            bearer(&auth, &es_as_rsa).await.unwrap_err(),
            AuthError::UnknownKey
        );
        // A key the set does not hold, under a kid it does.
        let impostor = sign_pem(Algorithm::RS256, Some("rsa-1"), RSA_OTHER_PRIVATE, &staff());
        assert_eq!(
            bearer(&auth, &impostor).await.unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(fetches(&server).await, 1);
    }

    #[tokio::test]
    async fn warm_up_fetches_the_keys_before_the_first_request() {
        let server = jwks_server(vec![rsa_jwk("rsa-1")], 1).await;
        let auth = authenticator(&jwks_settings(&server));
        auth.warm_up().await.unwrap();
        assert_eq!(fetches(&server).await, 1);
        let token = sign_pem(Algorithm::RS256, Some("rsa-1"), RSA_PRIVATE, &staff());
        assert!(bearer(&auth, &token).await.is_ok());
        assert_eq!(fetches(&server).await, 1);
    }

    #[tokio::test]
    async fn the_rs256_to_hs256_confusion_fails() {
        let server = jwks_server(vec![rsa_jwk("rsa-1")], 0).await;
        // The attacker signs HS256 with the public key (PEM, and JWK JSON) as the secret.
        let forgeries = [
            sign_hmac(
                Algorithm::HS256,
                Some("rsa-1"),
                RSA_PUBLIC.as_bytes(),
                &staff(),
            ),
            sign_hmac(
                Algorithm::HS256,
                Some("rsa-1"),
                rsa_jwk("rsa-1").to_string().as_bytes(),
                &staff(),
            ),
        ];
        let jwks_only = authenticator(&jwks_settings(&server));
        let both = authenticator(&AuthSettings {
            jwt_secret: Some(Secret::new(SECRET)),
            ..jwks_settings(&server)
        });
        for forged in &forgeries {
            assert_eq!(
                bearer(&jwks_only, forged).await.unwrap_err(),
                AuthError::AlgorithmNotAllowed
            );
            assert_eq!(
                bearer(&both, forged).await.unwrap_err(),
                AuthError::BadSignature
            );
        }
    }

    #[tokio::test]
    async fn an_oct_key_in_the_jwks_never_becomes_an_hmac_secret() {
        let oct =
            json!({ "kty": "oct", "kid": "oct-1", "alg": "HS256", "k": b64(SECRET.as_bytes()) });
        let server = jwks_server(vec![oct, rsa_jwk("rsa-1")], 0).await;
        let auth = authenticator(&jwks_settings(&server));
        let token = sign_hmac(Algorithm::HS256, Some("oct-1"), SECRET.as_bytes(), &staff());
        assert_eq!(
            bearer(&auth, &token).await.unwrap_err(),
            AuthError::AlgorithmNotAllowed
        );
    }

    #[tokio::test]
    async fn an_unknown_kid_fetches_again_at_most_once_a_minute() {
        let server = jwks_server(vec![rsa_jwk("rsa-1")], 3).await;
        let auth = authenticator(&jwks_settings(&server));
        let known = sign_pem(Algorithm::RS256, Some("rsa-1"), RSA_PRIVATE, &staff());
        let unknown = |kid: &str| sign_pem(Algorithm::RS256, Some(kid), RSA_PRIVATE, &staff());
        assert!(bearer(&auth, &known).await.is_ok());
        assert_eq!(fetches(&server).await, 1);
        // Within a minute of that fetch, an unknown kid fetches nothing.
        assert_eq!(
            bearer(&auth, &unknown("forged-0")).await.unwrap_err(),
            AuthError::UnknownKey
        );
        assert_eq!(fetches(&server).await, 1);

        jwks(&auth).backdate(JWKS_REFETCH_INTERVAL);
        assert_eq!(
            bearer(&auth, &unknown("forged-1")).await.unwrap_err(),
            AuthError::UnknownKey
        );
        assert_eq!(fetches(&server).await, 2);
        for n in 2..10 {
            assert_eq!(
                bearer(&auth, &unknown(&format!("forged-{n}")))
                    .await
                    .unwrap_err(),
                AuthError::UnknownKey
            );
        }
        assert_eq!(fetches(&server).await, 2);

        jwks(&auth).backdate(JWKS_REFETCH_INTERVAL);
        assert_eq!(
            bearer(&auth, &unknown("forged-10")).await.unwrap_err(),
            AuthError::UnknownKey
        );
        assert_eq!(fetches(&server).await, 3);
        // The known key kept working throughout, without a fetch.
        let known_again = sign_pem(
            Algorithm::RS256,
            Some("rsa-1"),
            RSA_PRIVATE,
            &ClaimsBuilder::new("again").staff().build(),
        );
        assert!(bearer(&auth, &known_again).await.is_ok());
        assert_eq!(fetches(&server).await, 3);
    }

    #[tokio::test]
    async fn a_rotated_key_is_picked_up_on_first_use() {
        let server = MockServer::start().await;
        let auth = authenticator(&jwks_settings(&server));
        {
            let _old = Mock::given(path("/jwks"))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(json!({ "keys": [rsa_jwk("2024")] })),
                )
                .expect(1)
                .mount_as_scoped(&server)
                .await;
            let token = sign_pem(Algorithm::RS256, Some("2024"), RSA_PRIVATE, &staff());
            assert!(bearer(&auth, &token).await.is_ok());
        }
        Mock::given(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({ "keys": [jwk(Algorithm::RS256, "2025", RSA_OTHER_PRIVATE)] }),
            ))
            .expect(1)
            .mount(&server)
            .await;
        jwks(&auth).backdate(JWKS_REFETCH_INTERVAL);
        let rotated = sign_pem(Algorithm::RS256, Some("2025"), RSA_OTHER_PRIVATE, &staff());
        assert!(bearer(&auth, &rotated).await.is_ok());
        // The withdrawn key is gone with the old set (a new token, so not from the cache).
        let withdrawn = sign_pem(
            Algorithm::RS256,
            Some("2024"),
            RSA_PRIVATE,
            &ClaimsBuilder::new("other").staff().build(),
        );
        assert_eq!(
            bearer(&auth, &withdrawn).await.unwrap_err(),
            AuthError::UnknownKey
        );
    }

    #[tokio::test]
    async fn an_old_set_is_fetched_again_and_serves_while_the_provider_is_down() {
        let server = MockServer::start().await;
        let auth = authenticator(&jwks_settings(&server));
        let token = |sub: &str| {
            sign_pem(
                Algorithm::RS256,
                Some("rsa-1"),
                RSA_PRIVATE,
                &ClaimsBuilder::new(sub).staff().build(),
            )
        };
        {
            let _up = Mock::given(path("/jwks"))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(json!({ "keys": [rsa_jwk("rsa-1")] })),
                )
                .expect(1)
                .mount_as_scoped(&server)
                .await;
            assert!(bearer(&auth, &token("a")).await.is_ok());
        }
        Mock::given(path("/jwks"))
            .respond_with(ResponseTemplate::new(503))
            .expect(1)
            .mount(&server)
            .await;
        jwks(&auth).backdate(JWKS_MAX_AGE);
        assert!(bearer(&auth, &token("b")).await.is_ok());
        assert!(bearer(&auth, &token("c")).await.is_ok());
    }

    #[tokio::test]
    async fn an_old_set_is_used_without_waiting_while_another_request_renews_it() {
        let server = jwks_server(vec![rsa_jwk("rsa-1")], 1).await;
        let auth = authenticator(&jwks_settings(&server));
        auth.warm_up().await.unwrap();
        jwks(&auth).backdate(JWKS_MAX_AGE);
        let renewing = jwks(&auth).fetching.lock().await;
        let token = sign_pem(Algorithm::RS256, Some("rsa-1"), RSA_PRIVATE, &staff());
        let answer = tokio::time::timeout(Duration::from_secs(1), bearer(&auth, &token)).await;
        assert!(answer.expect("did not wait for the renewal").is_ok());
        drop(renewing);
        assert_eq!(fetches(&server).await, 1);
    }

    #[tokio::test]
    async fn jwks_failures_are_auth_errors_and_are_not_retried_at_once() {
        let huge = json!({ "keys": [rsa_jwk("rsa-1")], "pad": "x".repeat(JWKS_MAX_BYTES) });
        let answers = [
            ResponseTemplate::new(500),
            ResponseTemplate::new(404),
            ResponseTemplate::new(200).set_body_string("<html>not json</html>"),
            ResponseTemplate::new(200).set_body_json(json!({ "keys": [] })),
            ResponseTemplate::new(200).set_body_json(huge),
            ResponseTemplate::new(200)
                .set_body_json(json!({ "keys": [rsa_jwk("rsa-1")] }))
                .set_delay(Duration::from_secs(5)),
        ];
        let token = sign_pem(Algorithm::RS256, Some("rsa-1"), RSA_PRIVATE, &staff());
        for answer in answers {
            let server = MockServer::start().await;
            Mock::given(path("/jwks"))
                .respond_with(answer)
                .expect(1)
                .mount(&server)
                .await;
            let mut auth = authenticator(&jwks_settings(&server));
            auth.jwks.as_mut().unwrap().timeout = Duration::from_millis(200);
            assert_eq!(
                bearer(&auth, &token).await.unwrap_err(),
                AuthError::JwksUnavailable
            );
            assert_eq!(auth.warm_up().await, Err(AuthError::JwksUnavailable));
            assert_eq!(
                bearer(&auth, &token).await.unwrap_err(),
                AuthError::JwksUnavailable
            );
            assert_eq!(fetches(&server).await, 1);
        }
    }

    #[tokio::test]
    async fn an_unreachable_provider_is_an_auth_error_retried_after_a_pause() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks", closed.local_addr().unwrap());
        drop(closed);
        let auth = authenticator(&AuthSettings {
            jwks_url: Some(Url::parse(&url).unwrap()),
            ..AuthSettings::default()
        });
        let token = sign_pem(Algorithm::RS256, Some("rsa-1"), RSA_PRIVATE, &staff());
        assert_eq!(
            bearer(&auth, &token).await.unwrap_err(),
            AuthError::JwksUnavailable
        );
        let attempted = jwks(&auth).read_state().last_attempt.unwrap();
        assert_eq!(
            bearer(&auth, &token).await.unwrap_err(),
            AuthError::JwksUnavailable
        );
        assert_eq!(jwks(&auth).read_state().last_attempt, Some(attempted));
        jwks(&auth).backdate(JWKS_RETRY_WHILE_EMPTY);
        let _ = bearer(&auth, &token).await;
        assert_ne!(jwks(&auth).read_state().last_attempt, Some(attempted));
    }

    #[tokio::test]
    async fn a_chunked_jwks_answer_is_cut_off_at_the_size_cap() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        // No Content-Length: only counting the chunks as they come can stop it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
            for _ in 0..(JWKS_MAX_BYTES / 0x4000 + 2) {
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        });
        let jwks = Jwks::new(
            Url::parse(&format!("http://{address}/jwks")).unwrap(),
            reqwest::Client::new(),
        );
        assert!(matches!(jwks.fetch().await, Err(JwksError::TooLarge)));
    }

    #[test]
    fn only_rs256_and_p256_signing_keys_are_kept() {
        let mut short_rsa = rsa_jwk("short");
        short_rsa["n"] = b64(&[0xff; 128]).into();
        let mut encryption = rsa_jwk("enc");
        encryption["use"] = "enc".into();
        let mut rs512 = rsa_jwk("rs512");
        rs512["alg"] = "RS512".into();
        let mut p384 = ec_jwk("p384");
        p384["crv"] = "P-384".into();
        let mut bad_point = ec_jwk("bad-point");
        bad_point["x"] = b64(&[1; 31]).into();
        let mut no_n = rsa_jwk("no-n");
        no_n.as_object_mut().unwrap().remove("n");
        let mut declared = rsa_jwk("declared");
        declared["alg"] = "RS256".into();
        let set = json!({ "keys": [
            rsa_jwk("rsa-1"), ec_jwk("ec-1"), declared, short_rsa, encryption, rs512, p384,
            bad_point, no_n, { "kty": "oct", "k": "c2VjcmV0" }, { "kty": "OKP", "crv": "Ed25519", "x": "AA" },
            "not an object",
        ] });
        let keys = parse_jwks(set.to_string().as_bytes()).unwrap();
        let kept: Vec<(Option<&str>, Algorithm)> =
            keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        assert_eq!(
            kept,
            [
                (Some("rsa-1"), Algorithm::RS256),
                (Some("ec-1"), Algorithm::ES256),
                (Some("declared"), Algorithm::RS256),
            ]
        );
        assert!(matches!(
            parse_jwks(br#"{"keys": []}"#),
            Err(JwksError::NoUsableKeys)
        ));
        assert!(matches!(
            parse_jwks(br#"{"keys": "x"}"#),
            Err(JwksError::NotJwks)
        ));
        assert!(matches!(parse_jwks(b"[]"), Err(JwksError::NotJwks)));
    }

    #[test]
    fn a_token_without_kid_needs_a_single_candidate_key() {
        let keys = parse_jwks(
            json!({ "keys": [rsa_jwk("a"), ec_jwk("e")] })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert!(find_key(&keys, Algorithm::RS256, None).is_some());
        assert!(find_key(&keys, Algorithm::RS256, Some("a")).is_some());
        assert!(find_key(&keys, Algorithm::RS256, Some("e")).is_none());
        let two = parse_jwks(
            json!({ "keys": [rsa_jwk("a"), jwk(Algorithm::RS256, "b", RSA_OTHER_PRIVATE)] })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert!(find_key(&two, Algorithm::RS256, None).is_none());
        assert!(find_key(&two, Algorithm::RS256, Some("b")).is_some());
    }

    #[test]
    fn rsa_key_sizes_count_significant_bits() {
        assert_eq!(rsa_bits(&[0, 0x80, 0]), 16);
        assert_eq!(rsa_bits(&[0x01, 0]), 9);
        assert_eq!(rsa_bits(&[0; 4]), 0);
        assert_eq!(rsa_bits(&[0xff; 256]), 2048);
    }

    #[tokio::test]
    async fn a_verified_token_is_served_from_the_cache_until_it_expires() {
        let auth = authenticator(&secret_settings());
        let verifications = || {
            auth.verifications
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let token = mint_hs256(SECRET, &staff());
        for _ in 0..5 {
            assert!(bearer(&auth, &token).await.is_ok());
        }
        assert_eq!(verifications(), 1);
        let other = ClaimsBuilder::new("other").mint_hs256(SECRET);
        assert!(bearer(&auth, &other).await.is_ok());
        assert_eq!(verifications(), 2);

        // An entry past its token's expiry is not trusted, whatever the cache still holds.
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut stale = auth.verified.get(&digest).unwrap();
        stale.valid_until = now_unix() - 1;
        auth.verified.insert(digest, stale);
        assert!(bearer(&auth, &token).await.is_ok());
        assert_eq!(verifications(), 3);

        // Failures are not cached as successes.
        let bad = ClaimsBuilder::new("s").expires_in(-60).mint_hs256(SECRET);
        for _ in 0..2 {
            assert!(bearer(&auth, &bad).await.is_err());
        }
        assert_eq!(verifications(), 5);
    }

    #[test]
    fn the_cache_keeps_a_token_no_longer_than_its_expiry_or_five_minutes() {
        assert_eq!(cache_ttl(100, 100), None);
        assert_eq!(cache_ttl(99, 100), None);
        assert_eq!(cache_ttl(130, 100), Some(Duration::from_secs(30)));
        assert_eq!(cache_ttl(100_000, 100), Some(VERIFIED_CACHE_MAX_TTL));
    }

    #[tokio::test]
    async fn disabled_authentication_is_the_anonymous_staff_caller() {
        let auth = authenticator(&AuthSettings {
            disabled: true,
            ..AuthSettings::default()
        });
        for header in [None, Some("garbage"), Some("Bearer a.b.c")] {
            let caller = auth.authenticate(header).await.unwrap();
            assert_eq!(*caller, Caller::anonymous_staff());
            assert!(caller.may_read(Some("any"), None).is_ok());
            assert!(caller.may_write(None, Some("any")).is_ok());
            assert!(caller.is_staff_writer());
        }
    }

    #[test]
    fn settings_are_checked_when_built() {
        let build = |settings: AuthSettings| {
            Authenticator::new(&settings, reqwest::Client::new())
                .err()
                .map(|err| err.to_string())
        };
        let none = build(AuthSettings::default()).unwrap();
        assert!(none.contains("AUTH_JWT_SECRET or AUTH_JWKS_URL"), "{none}");
        let short = build(AuthSettings {
            jwt_secret: Some(Secret::new("short")),
            ..AuthSettings::default()
        })
        .unwrap();
        assert!(short.starts_with("AUTH_JWT_SECRET is invalid"), "{short}");
        let ftp = build(AuthSettings {
            jwks_url: Some(Url::parse("ftp://idp.example/jwks").unwrap()),
            ..AuthSettings::default()
        })
        .unwrap();
        assert!(ftp.starts_with("AUTH_JWKS_URL is invalid"), "{ftp}");
        assert_eq!(
            build(AuthSettings {
                jwks_url: Some(Url::parse("http://idp.example/jwks").unwrap()),
                ..AuthSettings::default()
            }),
            None
        );
        assert_eq!(build(secret_settings()), None);
        assert_eq!(
            build(AuthSettings {
                disabled: true,
                ..AuthSettings::default()
            }),
            None
        );
    }

    #[test]
    fn client_messages_are_fixed_text() {
        for err in [
            AuthError::MissingHeader,
            AuthError::Malformed,
            AuthError::JwksUnavailable,
            AuthError::AlgorithmNotAllowed,
        ] {
            assert_eq!(err.to_string(), err.message());
            assert!(!err.reason().contains(' '));
        }
    }

    fn caller(scope: &str, unique_key: Option<&str>, subscriber_id: Option<&str>) -> Caller {
        Caller {
            sub: "s".into(),
            scopes: Scopes::parse(scope),
            unique_key: unique_key.map(String::from),
            subscriber_id: subscriber_id.map(String::from),
        }
    }

    #[test]
    fn staff_scopes_read_and_write_any_beneficiary_separately() {
        let reader = caller(SCOPE_READ, None, None);
        assert_eq!(reader.may_read(Some("UK-9"), Some("S-9")), Ok(()));
        assert_eq!(reader.may_read(None, None), Ok(()));
        assert_eq!(reader.may_write(Some("UK-9"), None), Err(Refusal::NoGrant));
        assert!(!reader.is_staff_writer());

        let writer = caller(SCOPE_WRITE, None, None);
        assert_eq!(writer.may_write(None, Some("S-9")), Ok(()));
        assert_eq!(writer.may_read(None, Some("S-9")), Err(Refusal::NoGrant));
        assert!(writer.is_staff_writer());

        let nobody = caller("openid protocols:admin PROTOCOLS:READ", None, None);
        assert_eq!(nobody.may_read(Some("UK-1"), None), Err(Refusal::NoGrant));
        assert_eq!(nobody.may_write(Some("UK-1"), None), Err(Refusal::NoGrant));
    }

    #[test]
    fn a_beneficiary_reads_and_writes_only_its_own_keys() {
        let both = caller("", Some("UK-1"), Some("S-1"));
        for check in [Caller::may_read, Caller::may_write] {
            assert_eq!(check(&both, Some("UK-1"), None), Ok(()));
            assert_eq!(check(&both, None, Some("S-1")), Ok(()));
            assert_eq!(check(&both, Some("UK-1"), Some("S-1")), Ok(()));
            assert_eq!(
                check(&both, Some("UK-2"), None),
                Err(Refusal::NotOwn(BeneficiaryKey::UniqueKey))
            );
            assert_eq!(
                check(&both, Some("UK-1"), Some("S-2")),
                Err(Refusal::NotOwn(BeneficiaryKey::SubscriberId))
            );
            assert_eq!(
                check(&both, Some("uk-1"), None).map_err(|r| r.reason()),
                Err("not_own")
            );
            assert_eq!(check(&both, None, None), Err(Refusal::NoBeneficiaryNamed));
        }

        let mosia_only = caller("", Some("UK-1"), None);
        assert_eq!(
            mosia_only.may_read(Some("UK-1"), Some("S-1")),
            Err(Refusal::NoClaim(BeneficiaryKey::SubscriberId))
        );
        assert_eq!(
            mosia_only.may_write(None, Some("S-1")),
            Err(Refusal::NoClaim(BeneficiaryKey::SubscriberId))
        );
        assert_eq!(mosia_only.own_subscriber_id(), None);

        let totvs_only = caller("", None, Some("S-1"));
        assert_eq!(
            totvs_only.may_read(Some("UK-1"), None),
            Err(Refusal::NoClaim(BeneficiaryKey::UniqueKey))
        );
        assert_eq!(totvs_only.own_subscriber_id(), Some("S-1"));
        assert!(!totvs_only.is_staff_writer());
    }

    #[test]
    fn a_beneficiary_with_a_read_scope_reads_anyone_but_writes_only_its_own() {
        let reader = caller(SCOPE_READ, Some("UK-1"), None);
        assert_eq!(reader.may_read(Some("UK-2"), None), Ok(()));
        assert_eq!(reader.may_write(Some("UK-1"), None), Ok(()));
        assert_eq!(
            reader.may_write(Some("UK-2"), None),
            Err(Refusal::NotOwn(BeneficiaryKey::UniqueKey))
        );
    }
}
