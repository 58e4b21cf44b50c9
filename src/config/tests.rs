use super::*;

#[test]
fn auth_disabled_reads_as_the_environment_provider_types_it() {
    let disabled = |value: figment::value::Value| {
        let raw: RawSettings = Figment::from(Serialized::defaults(complete_raw()))
            .merge(("auth.disabled", value))
            .extract()
            .unwrap();
        auth_settings(raw.auth).map(|auth| auth.disabled)
    };
    assert!(disabled(true.into()).unwrap());
    assert!(disabled(1u8.into()).unwrap());
    assert!(disabled("true".into()).unwrap());
    // Not disabled, and no key configured: refused for want of one.
    let enabled = disabled(false.into()).unwrap_err().to_string();
    assert!(enabled.contains("AUTH_JWT_SECRET"), "{enabled}");
    let unreadable = disabled("maybe".into()).unwrap_err().to_string();
    assert!(unreadable.starts_with("AUTH_DISABLED"), "{unreadable}");
}

/// Every required setting present, every other one at its default.
fn complete_raw() -> RawSettings {
    RawSettings {
        mosia: RawMosia {
            base_url: Some("http://m".into()),
            token: Some(Secret::new("t")),
        },
        totvs: RawTotvs {
            base_url: Some("http://t/rest".into()),
            username: Some(Secret::new("u")),
            password: Some(Secret::new("p")),
        },
        auth: RawAuth {
            disabled: Some("true".into()),
            ..RawAuth::default()
        },
        ..RawSettings::default()
    }
}

#[test]
fn a_base_url_loses_its_trailing_slash() {
    let url = base_url("X", Some("https://host:8080/rest/".into())).unwrap();
    assert_eq!(url.as_str(), "https://host:8080/rest");
}

#[test]
fn a_base_url_with_credentials_is_refused_by_name() {
    let err = base_url("TOTVS_BASE_URL", Some("https://u:p@host/rest".into())).unwrap_err();
    assert!(err.to_string().starts_with("TOTVS_BASE_URL is invalid"));
}

#[test]
fn cors_origins_must_be_bare_origins() {
    let settings = |origins: &[&str]| {
        let mut raw = complete_raw();
        raw.server.cors_allowed_origins = origins.iter().map(|o| o.to_string()).collect();
        Settings::from_raw(raw)
    };
    assert!(settings(&["https://app.example.com", "*"]).is_ok());
    let err = settings(&["https://app.example.com/path"]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("server.cors_allowed_origins is invalid")
    );
}

#[test]
fn numbers_that_would_panic_or_switch_a_feature_off_are_refused_by_name() {
    let refused = |tweak: fn(&mut RawSettings)| {
        let mut raw = complete_raw();
        tweak(&mut raw);
        Settings::from_raw(raw).unwrap_err().to_string()
    };
    assert!(
        refused(|r| r.cache.mosia_ttl_secs = 9_200_000_000_000_000_000)
            .starts_with("cache.mosia_ttl_secs is invalid")
    );
    assert_eq!(
        refused(|r| r.cache.max_bytes = 0),
        "cache.max_bytes is invalid: must be between 1048576 and 68719476736; to turn the cache off set cache.enabled = false"
    );
    assert!(refused(|r| r.server.max_complexity = 0).starts_with("server.max_complexity"));
    assert!(
        refused(|r| r.upstream.retry_backoff_ms = u64::MAX)
            .starts_with("upstream.retry_backoff_ms")
    );
    assert!(refused(|r| r.limits.request_timeout_ms = 1_000).starts_with(
        "limits.request_timeout_ms is invalid: must be at least 5000 (at least upstream.timeout_ms)"
    ));
    assert_eq!(
        refused(|r| r.mosia.token = Some(Secret::new("token\n"))),
        "MOSIA_TOKEN is invalid: contains a control character (a newline?)"
    );
}

#[test]
fn every_missing_setting_is_named_at_once_with_a_pointer_to_the_sandbox() {
    let err = Settings::from_raw(RawSettings::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "MOSIA_BASE_URL, MOSIA_TOKEN, TOTVS_BASE_URL, TOTVS_USERNAME, TOTVS_PASSWORD, \
         AUTH_JWT_SECRET or AUTH_JWKS_URL (or AUTH_DISABLED=true) are not set \
         (to try the gateway without real upstreams: protocol-graph sandbox)"
    );
}

#[test]
fn get_retries_above_two_are_refused_by_name() {
    let settings = |retries| {
        let mut raw = complete_raw();
        raw.upstream.get_retries = retries;
        Settings::from_raw(raw)
    };
    assert_eq!(settings(2).unwrap().upstream.get_retries, 2);
    let err = settings(3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstream.get_retries is invalid: must be at most 2"
    );
}

#[test]
fn connection_bounds_are_range_checked_by_name() {
    let settings = |tweak: fn(&mut ServerSettings)| {
        let mut raw = complete_raw();
        tweak(&mut raw.server);
        Settings::from_raw(raw)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(settings(|_| {}), Ok(()));
    let refused = [
        settings(|s| s.header_read_timeout_ms = 99),
        settings(|s| s.idle_timeout_ms = 3_600_001),
        settings(|s| s.max_connections = 0),
        settings(|s| s.shutdown_grace_ms = 600_001),
    ];
    let names = [
        "server.header_read_timeout_ms is invalid",
        "server.idle_timeout_ms is invalid",
        "server.max_connections is invalid",
        "server.shutdown_grace_ms is invalid",
    ];
    for (result, name) in refused.into_iter().zip(names) {
        assert!(result.as_ref().unwrap_err().starts_with(name), "{result:?}");
    }
}

#[test]
fn secrets_do_not_print() {
    assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
}
