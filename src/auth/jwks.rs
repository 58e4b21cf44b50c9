//! The identity provider's public keys (JWKS): fetched on first use, cached, fetched again
//! when old or when a token names an unknown `kid` (at most once a minute), and reduced to
//! the RS256 and ES256 signing keys.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;
use url::{Host, Url};

use super::AuthError;
use crate::config::ConfigError;

pub(super) const JWKS_MAX_BYTES: usize = 64 * 1024;
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// A token with an unknown `kid` triggers a JWKS fetch at most this often, so forged `kid`s
/// cannot turn the gateway into a flood of requests to the identity provider.
pub(super) const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// While no JWKS was ever loaded (the provider was down at start), retry sooner.
pub(super) const JWKS_RETRY_WHILE_EMPTY: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again on next use, so a key the provider withdrew stops
/// verifying; if that fetch fails the old keys keep serving.
pub(super) const JWKS_MAX_AGE: Duration = Duration::from_secs(15 * 60);
const JWKS_MAX_KEYS: usize = 64;
const MIN_RSA_BITS: usize = 2048;

pub(super) fn check_jwks_url(url: &Url) -> Result<(), ConfigError> {
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

/// The identity provider's public keys, fetched on first use and cached.
pub(super) struct Jwks {
    url: Url,
    client: reqwest::Client,
    pub(super) timeout: Duration,
    state: RwLock<JwksState>,
    /// One fetch at a time; the others wait for its keys.
    pub(super) fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
pub(super) struct JwksState {
    keys: Vec<JwksKey>,
    loaded_at: Option<Instant>,
    pub(super) last_attempt: Option<Instant>,
}

#[derive(Clone)]
pub(super) struct JwksKey {
    pub(super) kid: Option<String>,
    pub(super) alg: Algorithm,
    key: Arc<DecodingKey>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum JwksError {
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
    pub(super) fn new(url: Url, client: reqwest::Client) -> Self {
        Self {
            url,
            client,
            timeout: JWKS_TIMEOUT,
            state: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn is_loaded(&self) -> bool {
        self.read_state().loaded_at.is_some()
    }

    pub(super) fn read_state(&self) -> std::sync::RwLockReadGuard<'_, JwksState> {
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
    pub(super) async fn key(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Arc<DecodingKey>, AuthError> {
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
    pub(super) async fn refresh(&self) {
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

    pub(super) async fn fetch(&self) -> Result<Vec<JwksKey>, JwksError> {
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
    pub(super) fn backdate(&self, by: Duration) {
        let mut state = self.write_state();
        let earlier = |at: Instant| at.checked_sub(by).expect("the machine has been up longer");
        state.last_attempt = state.last_attempt.map(earlier);
        state.loaded_at = state.loaded_at.map(earlier);
    }
}

/// The key with this `kid` for this algorithm; without a `kid`, the only key for it.
pub(super) fn find_key(
    keys: &[JwksKey],
    alg: Algorithm,
    kid: Option<&str>,
) -> Option<Arc<DecodingKey>> {
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
pub(super) fn parse_jwks(body: &[u8]) -> Result<Vec<JwksKey>, JwksError> {
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

pub(super) fn rsa_bits(modulus: &[u8]) -> usize {
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
