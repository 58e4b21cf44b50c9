//! RS256 and ES256 tokens against the JWKS: fetching, caching, rotation, refetch limits,
//! provider failures, and which keys of a set are kept.

use std::time::Duration;

use super::*;
use crate::auth::jwks::{
    JWKS_MAX_AGE, JWKS_MAX_BYTES, JWKS_REFETCH_INTERVAL, JWKS_RETRY_WHILE_EMPTY, JwksError,
    find_key, parse_jwks, rsa_bits,
};

#[tokio::test]
async fn rs256_and_es256_verify_with_jwks_keys_fetched_once() {
    let server = jwks_server(vec![rsa_jwk("rsa-1"), ec_jwk("ec-1")], 1).await;
    let auth = authenticator(&jwks_settings(&server));
    for n in 0..3 {
        let claims = ClaimsBuilder::new(&format!("staff-{n}")).staff().build();
        let rs = sign_pem(Algorithm::RS256, Some("rsa-1"), RSA_PRIVATE, &claims);
        let es = sign_pem(Algorithm::ES256, Some("ec-1"), EC_PRIVATE, &claims);
        assert_eq!(*bearer(&auth, &rs).await.unwrap().sub, format!("staff-{n}"));
        assert_eq!(*bearer(&auth, &es).await.unwrap().sub, format!("staff-{n}"));
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
    let oct = json!({ "kty": "oct", "kid": "oct-1", "alg": "HS256", "k": b64(SECRET.as_bytes()) });
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
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({ "keys": [jwk(Algorithm::RS256, "2025", RSA_OTHER_PRIVATE)] }),
            ),
        )
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
