//! Which bearer tokens verify: the header, the signature and algorithm, and each claim.

use super::*;
use crate::auth::{Scopes, mint_hs256, verify::MAX_TOKEN_BYTES};

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
