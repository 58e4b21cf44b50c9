//! A caller's rate limit holds across replicas while Redis answers, and falls back to each
//! replica's own bucket (never to an error) while it does not.

use protocol_graph::{auth::ClaimsBuilder, config::Secret};
use serde_json::json;

use super::{RedisServer, replica_settings};
use crate::helpers::{LATEST, TestApp, Upstreams};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

async fn replica(up: &Upstreams, redis: &RedisServer, command_timeout_ms: u64) -> TestApp {
    let mut settings = replica_settings(up, redis);
    settings.auth.disabled = false;
    settings.auth.jwt_secret = Some(Secret::new(SECRET));
    settings.rate_limit.per_caller_per_sec = 1;
    settings.rate_limit.per_caller_burst = 3;
    settings.redis.command_timeout_ms = command_timeout_ms;
    TestApp::spawn(settings).await
}

async fn status(app: &TestApp, token: &str) -> u16 {
    app.post_as(token, &json!({ "query": LATEST }))
        .await
        .status()
        .as_u16()
}

fn answered(statuses: &[u16]) -> usize {
    statuses.iter().filter(|&&s| s == 200).count()
}

#[tokio::test]
async fn a_callers_bucket_is_shared_by_every_replica() {
    let redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    up.mosia_documented(None).await;
    let (a, b) = (
        replica(&up, &redis, 2_000).await,
        replica(&up, &redis, 2_000).await,
    );
    let token = ClaimsBuilder::new("staff-1").staff().mint_hs256(SECRET);
    let other = ClaimsBuilder::new("staff-2").staff().mint_hs256(SECRET);

    let mut statuses = Vec::new();
    for app in [&a, &b, &a, &b, &a, &b] {
        statuses.push(status(app, &token).await);
    }

    // A burst of 3 fleet-wide (and perhaps one token more, on a machine slow enough to take a
    // second over this): alone, each replica would have let 3 through, 6 in all.
    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(answered(&statuses) <= 4, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(
        status(&b, &other).await,
        200,
        "another caller, another bucket"
    );
}

#[tokio::test]
async fn with_redis_down_each_replica_limits_with_its_own_bucket() {
    let mut redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    up.mosia_documented(None).await;
    let a = replica(&up, &redis, 100).await;
    let token = ClaimsBuilder::new("staff-1").staff().mint_hs256(SECRET);
    redis.stop();

    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(status(&a, &token).await);
    }

    assert_eq!(&statuses[..3], [200, 200, 200], "{statuses:?}");
    assert!(answered(&statuses) <= 4, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
}
