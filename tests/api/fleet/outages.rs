//! Redis slow, stopped, restarted or never there: the clients see no error, replicas serve
//! from their local caches meanwhile, and share again once Redis answers.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::future::join_all;
use protocol_graph::config::Secret;
use serde_json::json;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use super::{RedisServer, calls, replica_settings, wait_until_shared};
use crate::helpers::{API, LIST, PROTOCOLS, TestApp, Upstreams, fixture};

const ATTACH: &str = r#"mutation($input: AddAuthorizationAttachmentsInput!) {
    addAuthorizationAttachments(input: $input) { protocol status } }"#;

async fn documented_upstreams() -> Upstreams {
    let up = Upstreams::start().await;
    up.mosia_documented(None).await;
    up.list_documented(None).await;
    Mock::given(method("POST"))
        .and(path(format!("{API}/protocols/attachments")))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("totvs/attachments.201.json")),
        )
        .mount(&up.totvs)
        .await;
    up
}

/// One request of a mixed load: reads of distinct cache keys, now and then a mutation.
fn operation(n: usize) -> (String, serde_json::Value) {
    if n % 10 == 9 {
        let href = format!("https://files.example/{n}.pdf");
        let input = json!({ "input": { "protocol": "41750520230620000004", "attachments": [{ "href": href }] } });
        return (ATTACH.into(), input);
    }
    let query = format!(
        r#"{{ m: beneficiary(uniqueKey: "13331584754") {{ latestProtocols(limit: {}) {{ number }} }}
             t: beneficiary(subscriberId: "00011008000027010") {{ authorizationProtocols(page: {}) {{ hasNext }} }} }}"#,
        n % 10 + 1,
        n % 7 + 1
    );
    (query, json!({}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_under_load_costs_no_client_error() {
    let mut redis = RedisServer::start().await;
    let up = documented_upstreams().await;
    let settings = || {
        let mut settings = replica_settings(&up, &redis);
        // The production budget: an outage must cost little time as well as no error.
        settings.redis.command_timeout_ms = 100;
        settings
    };
    let fleet = [
        TestApp::spawn(settings()).await,
        TestApp::spawn(settings()).await,
    ];
    let done = Arc::new(AtomicBool::new(false));

    let load = async {
        let mut sent = 0;
        while !done.load(Ordering::SeqCst) && sent < 20_000 {
            let round = (0..8).map(|i| {
                let app = &fleet[i % 2];
                let (query, variables) = operation(sent + i);
                async move {
                    let response = app
                        .post(&json!({ "query": query, "variables": variables }))
                        .await;
                    assert_eq!(response.status(), 200);
                    let body: serde_json::Value = response.json().await.unwrap();
                    assert!(body.get("errors").is_none(), "{body}");
                }
            });
            join_all(round).await;
            sent += 8;
        }
        sent
    };
    let chaos = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        redis.stop();
        tokio::time::sleep(Duration::from_millis(800)).await;
        redis.restart().await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        done.store(true, Ordering::SeqCst);
    };
    let (sent, ()) = tokio::join!(load, chaos);

    assert!(sent >= 40, "the load kept going: {sent} requests");
    let degraded: u64 = fleet
        .iter()
        .map(|app| app.counts().redis_degraded_total)
        .sum();
    assert!(degraded >= 1, "the replicas saw Redis go away");
    for app in &fleet {
        wait_until_shared(app).await;
    }
    // Shared again: a resource neither replica has read costs one call between them.
    let page = r#"{ beneficiary(subscriberId: "00011008000027010") { authorizationProtocols(page: 99) { hasNext } } }"#;
    let before = calls(&up.totvs, PROTOCOLS).await;
    fleet[0].query(page).await;
    fleet[1].query(page).await;
    assert_eq!(calls(&up.totvs, PROTOCOLS).await, before + 1);
}

#[tokio::test]
async fn a_redis_that_never_answers_costs_no_client_error() {
    // Accepts connections and never says a word: every command runs into its budget.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let up = documented_upstreams().await;
    let mut settings = up.settings();
    settings.redis.url = Some(Secret::new(format!("redis://127.0.0.1:{port}")));
    let app = TestApp::spawn(settings).await;

    let started = std::time::Instant::now();
    for _ in 0..3 {
        let read = app.query(LIST).await;
        assert!(read.get("errors").is_none(), "{read}");
    }
    let attached = app
        .query_with(
            ATTACH,
            json!({ "input": { "protocol": "41750520230620000004", "attachments": [{ "href": "https://files.example/a.pdf" }] } }),
        )
        .await;
    assert!(attached.get("errors").is_none(), "{attached}");

    assert_eq!(app.counts().redis_degraded, 1);
    assert_eq!(
        calls(&up.totvs, PROTOCOLS).await,
        1,
        "the local cache serves as in a single process"
    );
    // Degraded means skipped: no request waits for Redis's budget again and again.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_replica_started_while_redis_is_down_shares_once_it_is_back() {
    let mut redis = RedisServer::start().await;
    redis.stop();
    let up = documented_upstreams().await;
    let a = TestApp::spawn(replica_settings(&up, &redis)).await;
    assert_eq!(a.counts().redis_degraded, 1);
    assert!(a.query(LIST).await.get("errors").is_none());

    redis.restart().await;
    wait_until_shared(&a).await;
    let b = TestApp::spawn(replica_settings(&up, &redis)).await;
    // A's entry was fetched unseen by the fleet: A reads again and shares; B reads that.
    a.query(LIST).await;
    b.query(LIST).await;

    assert_eq!(calls(&up.totvs, PROTOCOLS).await, 2);
    assert_eq!(b.counts().fleet_hits, 1);
}

/// A TCP proxy in front of Redis that a test can cut (every connection dropped, new ones
/// refused) and restore: one replica loses Redis while the others keep it.
struct Proxy {
    url: String,
    open: Arc<AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(redis: &RedisServer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let target = redis.url().trim_start_matches("redis://").to_owned();
        let open = Arc::new(AtomicBool::new(true));
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (accepting, held) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accepting.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock().unwrap().push(link);
            }
        });
        Self { url, open, links }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_change_made_while_cut_off_from_redis_is_recorded_when_it_is_back() {
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(&redis).await;
    let up = documented_upstreams().await;
    let a = TestApp::spawn(replica_settings(&up, &redis)).await;
    let mut settings = replica_settings(&up, &redis);
    settings.redis.url = Some(Secret::new(proxy.url.clone()));
    settings.redis.command_timeout_ms = 200;
    let b = TestApp::spawn(settings).await;
    assert_eq!(b.counts().redis_degraded, 0);
    a.query(LIST).await;

    // B alone loses Redis, and changes the subscriber A holds a list of.
    proxy.cut();
    let attached = b
        .query_with(
            ATTACH,
            json!({ "input": { "protocol": "41750520230620000004", "attachments": [{ "href": "https://files.example/a.pdf" }] } }),
        )
        .await;
    assert!(attached.get("errors").is_none(), "{attached}");
    assert_eq!(b.counts().redis_degraded, 1);

    // B records the change as soon as it reaches Redis again (before it shares anything).
    proxy.restore();
    wait_until_shared(&b).await;
    a.query(LIST).await;
    assert_eq!(
        calls(&up.totvs, PROTOCOLS).await,
        2,
        "A read the list again"
    );
}
