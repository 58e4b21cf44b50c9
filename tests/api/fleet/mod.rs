//! Several gateways in one test process over one real Redis (`redis-server`, started and
//! stopped by the tests; `.ci/run` installs it): what the fleet shares, counted at the fake
//! upstreams, and what a slow, stopped or restarted Redis costs the clients (nothing).

mod limits;
mod outages;
mod reads;
mod writes;

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use protocol_graph::config::{Secret, Settings};
use wiremock::MockServer;

use crate::helpers::{TestApp, Upstreams};

/// A `redis-server` of its own on a free loopback port, without persistence, so that a
/// restart is a new, empty Redis (a new epoch). Killed on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        // Redis needs a fixed port: take a free one from the kernel and give it back.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = Self { port, child: None };
        server.launch().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it when missing)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..500 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not answer PING on port {}", self.port);
    }

    /// Kills the server; its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new, empty Redis on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    /// Every key name in the server, for tests that look inside.
    pub async fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

impl RedisServer {
    /// How many times Redis has run `command` (from `INFO commandstats`).
    pub async fn calls_of(&self, command: &str) -> u64 {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().unwrap())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Settings of a replica over `redis`, with a Redis budget generous enough for a busy CI
/// machine: these tests count upstream calls, and a spurious timeout would add one.
pub fn replica_settings(up: &Upstreams, redis: &RedisServer) -> Settings {
    let mut settings = up.settings();
    settings.redis.url = Some(Secret::new(redis.url()));
    settings.redis.command_timeout_ms = 2_000;
    settings.redis.probe_interval_ms = 50;
    settings
}

/// `n` replicas over one Redis in front of the same upstreams.
pub async fn replicas(up: &Upstreams, redis: &RedisServer, n: usize) -> Vec<TestApp> {
    let mut apps = Vec::with_capacity(n);
    for _ in 0..n {
        apps.push(TestApp::spawn(replica_settings(up, redis)).await);
    }
    apps
}

/// How many requests `server` received on `path`.
pub async fn calls(server: &MockServer, path: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path() == path)
        .count()
}

/// Waits (up to 10 s) until `app` shares the tier again after an outage.
pub async fn wait_until_shared(app: &TestApp) {
    for _ in 0..1000 {
        if app.counts().redis_degraded == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the replica did not get back to Redis");
}
