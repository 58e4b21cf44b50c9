//! The fleet's shared tier: one Redis under every replica's moka cache (DESIGN.md, "Fleet").
//!
//! What lives in Redis, every key under `pg:v1:` and named by a digest, so that no beneficiary
//! key, subscriber id or protocol number appears in a key name:
//! - `epoch`: a random id set once per Redis lifetime (no TTL). A replica that sees it change
//!   (or vanish) drops every local entry: the marks below died with the old Redis.
//! - `mark:s:<h>` / `mark:p:<h>`: the Redis time (µs) a mutation last changed a subscriber's
//!   lists / a protocol, written with Redis's own clock by the mutating replica before it
//!   answers. An entry whose fetch started (by the same clock) at or before a mark it depends on
//!   is outdated everywhere. A version per subscriber and per protocol, and one clock for all.
//! - `val:<h>`: a decoded upstream answer with the epoch and Redis time its fetch started, kept
//!   for what is left of its TTL.
//! - `lease:<h>`: the single-flight lease of a cold miss (TTL = upstream timeout + 1 s).
//! - `mut:<h>`: a mutation in flight, then its answer for the dedupe window.
//! - `rl:<h>`: a caller's token bucket.
//!
//! Redis is never in the way: every command has a short budget; a failure marks the tier
//! degraded, after which every read is a miss and every write is dropped (marks are kept to
//! replay) until a background probe gets an answer again.

mod batch;
mod dedupe;
mod keys;
mod ratelimit;
#[cfg(test)]
mod tests;
mod tier;

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    RedisError, RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::{config::Settings, metrics::Metrics};
pub(crate) use keys::Mark;
pub(crate) use ratelimit::Rate;
pub(crate) use tier::{LeaseOutcome, Slot, Stamp, View};

/// Whether replicas share the Redis tier right now; what `/readyz` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisState {
    /// `REDIS_URL` is not set: one process alone.
    Disabled,
    Up,
    /// Redis is slow or down: local caches and buckets serve, nothing is shared.
    Degraded,
}

impl RedisState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Up => "up",
            Self::Degraded => "degraded",
        }
    }
}

/// Marks not recorded while Redis was down, replayed when it answers again; beyond this many
/// the oldest are forgotten (their entries' TTLs bound the harm).
const MAX_PENDING_MARKS: usize = 10_000;

/// The handle on the shared tier; one per replica.
pub(crate) struct Fleet {
    /// Replaced by a fresh one when a probe fails, so that a manager stuck on a dead
    /// connection can never keep the tier down after Redis is back.
    conn: RwLock<ConnectionManager>,
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    command_timeout: Duration,
    probe_every: Duration,
    max_value_bytes: usize,
    /// How long a cold miss holds its lease, and how long others wait for its value.
    lease_ttl: Duration,
    wait_for_value: Duration,
    /// Longer than any local entry (fresh or stale) can live.
    mark_ttl: Duration,
    up: AtomicBool,
    /// Set once the first probe has an outcome, up or not.
    probed: AtomicBool,
    epoch: Mutex<Option<Arc<str>>>,
    /// Bumped whenever the epoch changes; caches compare it to drop their entries.
    generation: AtomicU64,
    pending_marks: Mutex<VecDeque<Vec<Mark>>>,
    /// Checks waiting to share the next round trip.
    batches: batch::Queue,
    /// This handle, for the tasks that flush those checks.
    me: Weak<Fleet>,
    metrics: Arc<Metrics>,
}

impl Fleet {
    /// The tier named by `REDIS_URL`, connecting in the background; `None` without one. Must be
    /// called on a tokio runtime (it spawns the probe).
    pub(crate) fn start(settings: &Settings, metrics: Arc<Metrics>) -> Option<Arc<Self>> {
        let url = settings.redis.url.as_ref()?;
        let client = match redis::Client::open(url.expose()) {
            Ok(client) => client,
            Err(err) => {
                // The URL was checked with the settings; a client that still refuses it leaves
                // the replica alone rather than down.
                tracing::error!(reason = ?err.kind(), "redis url refused; running without the fleet tier");
                return None;
            }
        };
        let command_timeout = Duration::from_millis(settings.redis.command_timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(command_timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(command_timeout))
            // The probe retries; the manager's own retries would only keep callers waiting.
            .set_number_of_retries(0);
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone()).ok()?;
        let upstream_timeout = settings.upstream.timeout();
        let cache = &settings.cache;
        let longest = [
            cache.mosia_ttl_secs,
            cache.totvs_protocols_ttl_secs,
            cache.totvs_interactions_ttl_secs,
            cache.stale_for_secs,
        ]
        .into_iter()
        .max()
        .unwrap_or_default();
        let fleet = Arc::new_cyclic(|me| Self {
            conn: RwLock::new(conn),
            client,
            manager_config,
            command_timeout,
            probe_every: Duration::from_millis(settings.redis.probe_interval_ms),
            max_value_bytes: settings.redis.max_value_bytes,
            lease_ttl: upstream_timeout + Duration::from_secs(1),
            wait_for_value: upstream_timeout,
            mark_ttl: Duration::from_secs(longest + 60) + upstream_timeout,
            up: AtomicBool::new(false),
            probed: AtomicBool::new(false),
            epoch: Mutex::new(None),
            generation: AtomicU64::new(0),
            pending_marks: Mutex::new(VecDeque::new()),
            batches: batch::Queue::default(),
            me: me.clone(),
            metrics,
        });
        fleet.metrics.set_redis_degraded(true);
        tokio::spawn(probe_loop(Arc::downgrade(&fleet)));
        Some(fleet)
    }

    pub(crate) fn state(&self) -> RedisState {
        if self.is_up() {
            RedisState::Up
        } else {
            RedisState::Degraded
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Changes whenever the epoch does: a cache that saw another value drops its entries.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Waits (at most a few command budgets) for the first probe, so that a replica that can
    /// reach Redis shares the tier from its first request.
    pub(crate) async fn wait_until_up(&self) {
        let until = tokio::time::Instant::now() + self.command_timeout * 4;
        while !self.probed.load(Ordering::Acquire) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn connection(&self) -> ConnectionManager {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs one command or pipeline within the budget; `None` (and the tier degraded, when the
    /// connection is at fault) when it fails. Skipped at once while degraded.
    async fn run<T, F, Fut>(&self, op: &'static str, command: F) -> Option<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        self.run_anyway(op, command).await
    }

    /// [`Self::run`] even while degraded: the probe's way back.
    async fn run_anyway<T, F, Fut>(&self, op: &'static str, command: F) -> Option<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            match command(self.connection()).await {
                // A restarted Redis drops the connection; the manager reconnects on that error,
                // so one more try within the same budget usually reaches the new one (and sees
                // its new epoch) instead of counting as an outage.
                Err(err) if err.is_connection_dropped() || err.is_io_error() => {
                    command(self.connection()).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.command_timeout, attempts).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                self.failed(op, &err);
                None
            }
            Err(_) => {
                self.degrade(op, "timed out");
                None
            }
        }
    }

    fn failed(&self, op: &'static str, err: &RedisError) {
        if err.is_io_error() || err.is_unrecoverable_error() || err.is_timeout() {
            self.degrade(op, &format!("{:?}", err.kind()));
        } else {
            // An answer Redis gave (out of memory, loading, a wrong type): this command is a
            // miss, the connection is fine.
            self.metrics.redis_error();
            tracing::warn!(op, reason = ?err.kind(), "redis refused a command");
        }
    }

    fn degrade(&self, op: &'static str, reason: &str) {
        self.metrics.redis_error();
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.redis_degraded();
            self.metrics.set_redis_degraded(true);
            tracing::warn!(
                op,
                reason,
                "redis degraded; replicas serve from local caches until it answers"
            );
        }
    }

    /// One probe: the epoch (created when Redis has none), then the marks that could not be
    /// recorded, then the tier is up again.
    async fn probe(&self) -> bool {
        let Some(epoch) = self.read_or_create_epoch(true).await else {
            // A fresh manager for the next attempt: the old one may hold a dead connection.
            if let Ok(conn) = ConnectionManager::new_lazy_with_config(
                self.client.clone(),
                self.manager_config.clone(),
            ) {
                *self
                    .conn
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
            }
            return false;
        };
        self.adopt_epoch(epoch);
        self.replay_marks().await;
        if !self.up.swap(true, Ordering::AcqRel) {
            self.metrics.set_redis_degraded(false);
            tracing::info!("redis answers; replicas share the fleet tier");
        }
        true
    }

    /// The current epoch, set to a new random id when Redis has none (a new or emptied Redis).
    async fn read_or_create_epoch(&self, anyway: bool) -> Option<Arc<str>> {
        let fresh = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(keys::EPOCH)
            .arg(&fresh)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(keys::EPOCH);
        let pipe = &pipe;
        let command = move |mut conn: ConnectionManager| async move {
            pipe.query_async::<(Option<String>,)>(&mut conn).await
        };
        let (epoch,) = if anyway {
            self.run_anyway("epoch", command).await?
        } else {
            self.run("epoch", command).await?
        };
        epoch.map(Arc::from)
    }

    /// Takes `epoch` as the current one; a change from a known one drops every local entry.
    fn adopt_epoch(&self, epoch: Arc<str>) -> Arc<str> {
        let mut known = self
            .epoch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match known.as_ref() {
            Some(current) if *current == epoch => current.clone(),
            previous => {
                if previous.is_some() {
                    tracing::warn!(
                        "redis epoch changed (restarted or emptied); dropping every local entry"
                    );
                }
                self.generation.fetch_add(1, Ordering::AcqRel);
                *known = Some(epoch.clone());
                epoch
            }
        }
    }

    async fn replay_marks(&self) {
        let pending: Vec<Vec<Mark>> = self
            .pending_marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        for marks in pending {
            if !self.record_marks(&marks, true).await {
                self.keep_marks(marks);
            }
        }
    }

    fn keep_marks(&self, marks: Vec<Mark>) {
        let mut pending = self
            .pending_marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.len() == MAX_PENDING_MARKS {
            pending.pop_front();
        }
        pending.push_back(marks);
    }
}

async fn probe_loop(fleet: Weak<Fleet>) {
    loop {
        let Some(strong) = fleet.upgrade() else {
            return;
        };
        let every = strong.probe_every;
        if !strong.is_up() {
            strong.probe().await;
            strong.probed.store(true, Ordering::Release);
        }
        drop(strong);
        tokio::time::sleep(every).await;
    }
}
