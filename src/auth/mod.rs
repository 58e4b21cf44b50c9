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
//!
//! - `caller`: the verified `Caller`, its `Scopes`, and whether it may read or write a
//!   beneficiary (`Refusal` when not).
//! - `verify`: the `Authenticator` that checks bearer tokens, the verified-token cache, and
//!   `AuthError`.
//! - `jwks`: the identity provider's public keys, fetched, cached and refetched with limits.
//! - `mint`: [`mint_hs256`] and [`ClaimsBuilder`], tokens for the sandbox and tests.

mod caller;
mod jwks;
mod mint;
mod verify;

#[cfg(test)]
mod tests;

use url::Url;

use crate::config::Secret;

// Some of these are not used outside this module until it is wired in (see `lib.rs`); the
// re-exports keep every `crate::auth::X` path.
#[allow(unused_imports)]
pub(crate) use caller::{BeneficiaryKey, Caller, Refusal, Scopes};
pub use caller::{SCOPE_READ, SCOPE_WRITE};
pub use mint::{ClaimsBuilder, mint_hs256};
#[allow(unused_imports)]
pub(crate) use verify::{AuthError, Authenticator};

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
