//! Unit tests of the auth module, by topic; the fixtures and helpers they share are here.

mod access;
mod cache_and_settings;
mod jwks_keys;
mod tokens;

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use url::Url;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use super::{AuthError, AuthSettings, Authenticator, Caller, ClaimsBuilder, jwks::Jwks};
use crate::config::Secret;

const SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes";
const RSA_PRIVATE: &str = include_str!("../../../fixtures/auth/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../../../fixtures/auth/rsa-public.pem");
const RSA_OTHER_PRIVATE: &str = include_str!("../../../fixtures/auth/rsa-other-private.pem");
const EC_PRIVATE: &str = include_str!("../../../fixtures/auth/ec-p256-private.pem");

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
