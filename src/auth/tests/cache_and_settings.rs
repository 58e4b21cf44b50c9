//! The verified-token cache, disabled authentication, settings checks and client messages.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::*;
use crate::auth::{
    mint_hs256,
    verified::VerifiedTokens,
    verify::{VERIFIED_CACHE_MAX_TTL, cache_ttl, now_unix},
};

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
    let mut stale = auth.verified.entry(&digest).unwrap();
    stale.valid_until = now_unix() - 1;
    auth.verified.insert(digest, stale, now_unix());
    // The thread's memo holds the entry as it was; time would age both alike.
    VerifiedTokens::forget_recent();
    assert!(bearer(&auth, &token).await.is_ok());
    assert_eq!(verifications(), 3);

    // Failures are not cached as successes.
    let bad = ClaimsBuilder::new("s").expires_in(-60).mint_hs256(SECRET);
    for _ in 0..2 {
        assert!(bearer(&auth, &bad).await.is_err());
    }
    assert_eq!(verifications(), 5);
}

#[tokio::test]
async fn a_token_one_authenticator_verified_is_refused_by_another_with_other_keys() {
    let ours = authenticator(&secret_settings());
    let theirs = authenticator(&AuthSettings {
        jwt_secret: Some(Secret::new("another-secret-of-at-least-thirty-two-bytes")),
        ..AuthSettings::default()
    });
    let token = mint_hs256(SECRET, &staff());
    // Both on this thread: the first fills the thread's memo, the second must not read it.
    assert!(bearer(&ours, &token).await.is_ok());
    assert_eq!(
        bearer(&theirs, &token).await.unwrap_err(),
        AuthError::BadSignature
    );
    assert!(bearer(&ours, &token).await.is_ok());
    assert_eq!(
        ours.verifications
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
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
