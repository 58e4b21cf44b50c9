//! Tokens for the sandbox and tests: [`mint_hs256`] and the [`ClaimsBuilder`].

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use super::{SCOPE_READ, SCOPE_WRITE, verify::now_unix};

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
