//! Who is calling (a verified JWT) and which beneficiaries they may read or write.
//!
//! The data behind the gateway is personal health data, so every rule here fails closed: a
//! token is trusted only when its algorithm is one we configured, its key is one we hold, its
//! signature verifies, and its time, issuer, audience and subject claims check out. Keys come
//! from `AUTH_JWT_SECRET` (HS256 only) and `AUTH_JWKS_URL` (RS256 and ES256 only), never from
//! the token itself (`jku`, `jwk` and `x5u` headers are ignored).
//!
//! Verification runs once per token: a verified caller is remembered under a digest of its
//! token until the token expires, and each thread keeps the last few tokens it served, so a
//! hot path pays a constant-time comparison (a SHA-256 when another thread saw the token).
//!
//! - `caller`: the verified `Caller`, its `Scopes`, and whether it may read or write a
//!   beneficiary (`Refusal` when not).
//! - `verify`: the `Authenticator` that checks bearer tokens, and `AuthError`.
//! - `verified`: the cache of verified tokens, by digest, and each thread's memo of them.
//! - `jwks`: the identity provider's public keys, fetched, cached and refetched with limits.
//! - `mint`: [`mint_hs256`] and [`ClaimsBuilder`], tokens for the sandbox and tests.

mod caller;
mod jwks;
mod mint;
mod verified;
mod verify;

#[cfg(test)]
mod tests;

pub use crate::config::AuthSettings;

pub(crate) use caller::{Caller, Refusal, Scopes};
pub use caller::{SCOPE_READ, SCOPE_WRITE};
pub use mint::{ClaimsBuilder, mint_hs256};
pub(crate) use verify::{AuthError, Authenticator};
