//! The moka cache shared across requests, and the guard that keeps a mutation from reaching
//! TOTVS twice.
//!
//! Reads: a fresh entry answers at once; concurrent misses on one key share one upstream call
//! (`try_get_with`); upstream errors are not stored, except a 404 for a few seconds; when an
//! upstream is down, an answer younger than `stale_for_secs` is served and marked stale.
//! A mutation records the moment it changed a subscriber or a protocol, and any entry whose
//! fetch started before that moment is treated as absent, including one still in flight.
//!
//! Every one of those moments and ages is read from one [`Clock`], and freshness is decided
//! at read time by it; moka's own expiry uses the same TTLs but only frees memory.
//!
//! With a fleet tier (`REDIS_URL`), a read first checks the fleet's epoch and marks (one
//! round trip) and serves a local entry only when it is newer than them; a miss looks in
//! Redis and then goes upstream under a fleet-wide lease (`fleet.rs`).

mod fleet;
mod mutation;
mod source;
#[cfg(test)]
mod tests;

use std::{
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache};
use serde::Serialize;

use super::{
    clock::Clock,
    error::{UpstreamError, UpstreamErrorKind},
    fleet::{Fleet, Stamp, View},
    mosia,
};
use crate::{
    config::CacheSettings,
    metrics::Metrics,
    model::{
        AuthorizationProtocolPage, InteractionPage, InteractionQuery, ProtocolQuery, Service,
        ServiceProtocol,
    },
};
pub(crate) use mutation::{MutationGuard, MutationInput, MutationKey};
pub(crate) use source::Source;

/// A decoded upstream answer and the size of the body it came from (the cache's weight).
pub(crate) struct Decoded<T> {
    pub value: T,
    pub bytes: usize,
}

/// A read's value, and its age when it is a stale stand-in for a failed upstream.
#[derive(Debug)]
pub struct Fetched<T> {
    pub value: Arc<T>,
    pub stale_for: Option<Duration>,
    /// The fresh cache entry the value came from; `None` when it came from anywhere else (the
    /// cache is off, a stale copy, an answer too big to keep).
    pub(crate) source: Option<Source>,
}

impl<T> Clone for Fetched<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            stale_for: self.stale_for,
            source: self.source.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub(crate) enum CacheKey {
    Latest {
        unique_key: String,
        limit: u8,
    },
    Protocols {
        subscriber_id: String,
        query: ProtocolQuery,
    },
    Interactions(InteractionQuery),
}

#[derive(Clone, Debug)]
pub(crate) enum Value {
    Latest(Arc<Vec<ServiceProtocol>>),
    Protocols(Arc<AuthorizationProtocolPage>),
    Interactions(Arc<InteractionPage>),
    NotFound(UpstreamError),
}

#[derive(Clone, Debug)]
struct Entry {
    value: Value,
    /// When the upstream call that produced it started, by the cache's clock: its age, and
    /// whether it can show a change, count from there.
    started: Instant,
    weight: u32,
    /// The fleet's stamp of the same moment; `None` when fetched while Redis was out of reach
    /// (such an entry serves only while it still is).
    stamp: Option<Stamp>,
}

/// A type the cache can hold.
pub(crate) trait Cacheable: Sized + Send + Sync + 'static {
    fn wrap(value: Arc<Self>) -> Value;
    fn unwrap(value: &Value) -> Option<Arc<Self>>;
}

macro_rules! cacheable {
    ($ty:ty, $variant:ident) => {
        impl Cacheable for $ty {
            fn wrap(value: Arc<Self>) -> Value {
                Value::$variant(value)
            }
            fn unwrap(value: &Value) -> Option<Arc<Self>> {
                match value {
                    Value::$variant(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }
    };
}
cacheable!(Vec<ServiceProtocol>, Latest);
cacheable!(AuthorizationProtocolPage, Protocols);
cacheable!(InteractionPage, Interactions);

#[derive(Clone, Copy)]
struct Ttl {
    mosia: Duration,
    protocols: Duration,
    interactions: Duration,
    not_found: Duration,
}

impl Ttl {
    fn of(&self, key: &CacheKey, value: &Value) -> Duration {
        match (value, key) {
            (Value::NotFound(_), _) => self.not_found,
            (_, CacheKey::Latest { .. }) => self.mosia,
            (_, CacheKey::Protocols { .. }) => self.protocols,
            (_, CacheKey::Interactions(_)) => self.interactions,
        }
    }
}

/// moka's expiry only frees memory: it counts from insertion, which is never before the fetch
/// started, so the clock-checked rule of [`ResponseCache::is_fresh`] always ends an entry first.
impl Expiry<CacheKey, Entry> for Ttl {
    fn expire_after_create(&self, key: &CacheKey, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(self.of(key, &entry.value))
    }
}

pub struct ResponseCache {
    enabled: bool,
    max_bytes: u64,
    fresh: Cache<CacheKey, Entry>,
    /// The last good answer per key, for outages. `None` when stale serving is off.
    stale: Option<Cache<CacheKey, Entry>>,
    ttl: Ttl,
    stale_for: Duration,
    clock: Clock,
    /// When each subscriber was last changed by a mutation (a protocol added or changed).
    changed_subscribers: moka::sync::Cache<String, Instant>,
    /// When each protocol was last changed by a mutation.
    changed_protocols: moka::sync::Cache<String, Instant>,
    metrics: Arc<Metrics>,
    /// The shared tier, when replicas share one.
    fleet: Option<Arc<Fleet>>,
    /// The fleet's epoch generation these entries belong to.
    generation: AtomicU64,
}

fn latest_key(unique_key: &str, limit: u8) -> CacheKey {
    CacheKey::Latest {
        unique_key: unique_key.into(),
        limit,
    }
}

/// Entries are weighed by body size plus this, for the key and bookkeeping.
const ENTRY_OVERHEAD: usize = 256;

impl ResponseCache {
    pub fn new(settings: &CacheSettings, metrics: Arc<Metrics>) -> Self {
        Self::with_clock(settings, metrics, Clock::System)
    }

    pub(crate) fn with_clock(
        settings: &CacheSettings,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        let secs = Duration::from_secs;
        let ttl = Ttl {
            mosia: secs(settings.mosia_ttl_secs),
            protocols: secs(settings.totvs_protocols_ttl_secs),
            interactions: secs(settings.totvs_interactions_ttl_secs),
            not_found: secs(settings.not_found_ttl_secs),
        };
        let longest = ttl.mosia.max(ttl.protocols).max(ttl.interactions);
        let stale_for = secs(settings.stale_for_secs);
        let weigher = |_: &CacheKey, entry: &Entry| entry.weight;
        let fresh = Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(weigher)
            .expire_after(ttl)
            .build();
        // The stale copies share their values with the fresh ones (`Arc`), so memory stays
        // within one budget; the second bound only caps how long outdated answers are kept.
        let stale = (settings.enabled && !stale_for.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(weigher)
                .time_to_live(stale_for)
                .build()
        });
        // Remembered as long as any entry fetched before the change could still be served.
        let changes = || {
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(
                    longest
                        .max(stale_for)
                        .saturating_add(Duration::from_secs(1)),
                )
                .build()
        };
        Self {
            enabled: settings.enabled,
            max_bytes: settings.max_bytes,
            fresh,
            stale,
            ttl,
            stale_for,
            clock,
            changed_subscribers: changes(),
            changed_protocols: changes(),
            metrics,
            fleet: None,
            generation: AtomicU64::new(0),
        }
    }

    /// The cache under a fleet's shared tier (none: one process alone).
    pub(crate) fn with_fleet(mut self, fleet: Option<Arc<Fleet>>) -> Self {
        self.fleet = fleet;
        self
    }

    /// The cached answer for `key`, or the one `fetch` brings (shared with any concurrent
    /// caller of the same key).
    pub async fn get_or_fetch<T, F, Fut>(
        &self,
        key: CacheKey,
        fetch: F,
    ) -> Result<Fetched<T>, UpstreamError>
    where
        T: Cacheable,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Decoded<T>, UpstreamError>>,
    {
        if !self.enabled {
            self.metrics.cache_miss();
            let decoded = fetch().await?;
            return Ok(Fetched {
                value: Arc::new(decoded.value),
                stale_for: None,
                source: None,
            });
        }
        let local = self.current(&key).await;
        let mut view = self.view(&key, local.as_ref()).await;
        self.read(key, local, &mut view, &fetch).await
    }

    /// A read of `key` after its fleet check: `local` (fresh and current by the local rules)
    /// when the fleet allows it, else one shared fetch.
    async fn read<T, F, Fut>(
        &self,
        key: CacheKey,
        local: Option<Entry>,
        view: &mut Option<View>,
        fetch: &F,
    ) -> Result<Fetched<T>, UpstreamError>
    where
        T: Cacheable,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Decoded<T>, UpstreamError>>,
    {
        if let Some(entry) = local {
            if self.fleet_allows(&key, &entry, view).await {
                self.metrics.cache_hit();
                return answer(&key, &entry);
            }
            self.fresh.invalidate(&key).await;
        }
        let prefetched = view.as_mut().and_then(|view| view.value.take());
        let mut result = self
            .fetch_coalesced(&key, fetch, view.as_ref(), prefetched)
            .await;
        // A read that joined a fetch started before a mutation it must see: read once more.
        if let Ok((entry, false)) = &result
            && !(self.is_current(&key, entry) && self.fleet_allows(&key, entry, view).await)
        {
            self.fresh.invalidate(&key).await;
            result = self.fetch_coalesced(&key, fetch, view.as_ref(), None).await;
        }
        let ran = matches!(result, Ok((_, true)));
        let result = result.map(|(entry, _)| entry);
        match result {
            Ok(entry) => {
                if u64::from(entry.weight) > self.max_bytes {
                    // moka would evict it at its next housekeeping; an answer bigger than the
                    // whole budget is not worth keeping even that long.
                    self.fresh.invalidate(&key).await;
                    return answer(&key, &entry).map(|fetched| Fetched {
                        source: None,
                        ..fetched
                    });
                }
                if ran
                    && !matches!(entry.value, Value::NotFound(_))
                    && let Some(stale) = &self.stale
                {
                    stale.insert(key.clone(), entry.clone()).await;
                }
                answer(&key, &entry)
            }
            Err(err) => {
                if err.is_outage()
                    && let Some(fetched) = self.stale_answer(&key, view).await
                {
                    return Ok(fetched);
                }
                Err(err)
            }
        }
    }

    /// Sets the cache's size gauges. moka counts lazily: its pending work is done first, so the
    /// numbers are those of the entries inserted so far.
    pub async fn measure(&self) {
        let tiers = [("fresh", Some(&self.fresh)), ("stale", self.stale.as_ref())];
        for (tier, cache) in tiers {
            let (entries, bytes) = match cache {
                Some(cache) => {
                    cache.run_pending_tasks().await;
                    (cache.entry_count(), cache.weighted_size())
                }
                None => (0, 0),
            };
            self.metrics.cache_size(tier, entries, bytes);
        }
    }

    /// Whether this replica holds an entry for `key`, current or not: a hint of whether a read
    /// will wait on the network, nothing a read relies on.
    pub fn holds(&self, key: &CacheKey) -> bool {
        self.enabled && self.fresh.contains_key(key)
    }

    /// [`Self::holds`] for what [`Self::latest_or_fetch`] can cut from: an answer for `limit`
    /// or a larger one.
    pub fn holds_latest(&self, unique_key: &str, limit: u8) -> bool {
        (limit..=mosia::MAX_LIMIT).any(|limit| self.holds(&latest_key(unique_key, limit)))
    }

    /// The entry for `key`, unless its TTL is over or a mutation outdated it (then it is
    /// dropped).
    async fn current(&self, key: &CacheKey) -> Option<Entry> {
        let entry = self.fresh.get(key).await?;
        if self.is_fresh(key, &entry) && self.is_current(key, &entry) {
            return Some(entry);
        }
        self.fresh.invalidate(key).await;
        None
    }

    fn is_fresh(&self, key: &CacheKey, entry: &Entry) -> bool {
        self.clock.since(entry.started) < self.ttl.of(key, &entry.value)
    }

    /// Mosia's newest `limit` protocols of a beneficiary: cut from a cached answer for this
    /// limit or a larger one, else the answer `fetch` brings for `limit`.
    pub async fn latest_or_fetch<F, Fut>(
        &self,
        unique_key: &str,
        limit: u8,
        fetch: F,
    ) -> Result<Fetched<Vec<ServiceProtocol>>, UpstreamError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Decoded<Vec<ServiceProtocol>>, UpstreamError>>,
    {
        let key = |limit| latest_key(unique_key, limit);
        if !self.enabled {
            return self.get_or_fetch(key(limit), fetch).await;
        }
        let mut cached = Vec::new();
        for cached_limit in limit..=mosia::MAX_LIMIT {
            if let Some(entry) = self.current(&key(cached_limit)).await {
                cached.push((cached_limit, entry));
            }
        }
        // Mosia's answers depend on no mark: the check is the epoch, and the shared value
        // when nothing local can answer.
        let mut view = self
            .view(&key(limit), cached.first().map(|(_, entry)| entry))
            .await;
        let mut exact = None;
        for (cached_limit, entry) in cached {
            if !self
                .fleet_allows(&key(cached_limit), &entry, &mut view)
                .await
            {
                self.fresh.invalidate(&key(cached_limit)).await;
                continue;
            }
            if let Some(list) = <Vec<ServiceProtocol> as Cacheable>::unwrap(&entry.value)
                && let Some(value) = crate::model::newest_of(&list, cached_limit, limit)
            {
                self.metrics.cache_hit();
                return Ok(Fetched {
                    value,
                    stale_for: None,
                    source: Some(Source::new(key(cached_limit), entry.started)),
                });
            }
            if cached_limit == limit {
                // A remembered 404 for exactly this limit answers as one.
                exact = Some(entry);
            }
        }
        self.read(key(limit), exact, &mut view, &fetch).await
    }

    /// The entry for `key` from one upstream call shared by every concurrent caller, and
    /// whether this caller's `fetch` was the one that ran.
    async fn fetch_coalesced<T, F, Fut>(
        &self,
        key: &CacheKey,
        fetch: &F,
        view: Option<&View>,
        prefetched: Option<Vec<u8>>,
    ) -> Result<(Entry, bool), UpstreamError>
    where
        T: Cacheable,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Decoded<T>, UpstreamError>>,
    {
        let ran = AtomicBool::new(false);
        let started = self.clock.now();
        let result = self
            .fresh
            .try_get_with(key.clone(), async {
                ran.store(true, Ordering::Relaxed);
                match view {
                    Some(view) => self.fill(key, fetch, view, prefetched, started).await,
                    None => self.fetch_entry(fetch, started, None).await,
                }
            })
            .await;
        let ran = ran.load(Ordering::Relaxed);
        if !ran {
            self.metrics.cache_coalesced();
        }
        result
            .map(|entry| (entry, ran))
            .map_err(|err| UpstreamError::clone(&err))
    }

    /// The upstream's answer as an entry (a 404 too, briefly); other errors are not kept.
    async fn fetch_entry<T, F, Fut>(
        &self,
        fetch: &F,
        started: Instant,
        stamp: Option<Stamp>,
    ) -> Result<Entry, UpstreamError>
    where
        T: Cacheable,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Decoded<T>, UpstreamError>>,
    {
        self.metrics.cache_miss();
        match fetch().await {
            Ok(decoded) => Ok(Entry {
                value: T::wrap(Arc::new(decoded.value)),
                started,
                weight: weight(decoded.bytes),
                stamp,
            }),
            Err(err) if err.kind == UpstreamErrorKind::NotFound => Ok(Entry {
                value: Value::NotFound(err),
                started,
                weight: weight(0),
                stamp,
            }),
            Err(err) => Err(err),
        }
    }

    async fn stale_answer<T: Cacheable>(
        &self,
        key: &CacheKey,
        view: &mut Option<View>,
    ) -> Option<Fetched<T>> {
        let entry = self.stale.as_ref()?.get(key).await?;
        let age = self.clock.since(entry.started);
        if age > self.stale_for
            || !self.is_current(key, &entry)
            || !self.fleet_allows(key, &entry, view).await
        {
            return None;
        }
        let value = T::unwrap(&entry.value)?;
        self.metrics.stale_served();
        tracing::warn!(
            age_secs = age.as_secs(),
            "serving a stale answer during an upstream failure"
        );
        Some(Fetched {
            value,
            stale_for: Some(age),
            source: None,
        })
    }

    /// Whether no mutation changed what the entry shows after its fetch started: the
    /// subscriber of a list, any protocol in a list (so a list stays fresh even when a
    /// mutation's answer did not name the subscriber), the protocol of interactions.
    fn is_current(&self, key: &CacheKey, entry: &Entry) -> bool {
        let before = |changed_at: Instant| entry.started > changed_at;
        let protocol_unchanged =
            |protocol: &str| self.changed_protocols.get(protocol).is_none_or(before);
        match (key, &entry.value) {
            (CacheKey::Latest { .. }, _) => true,
            (CacheKey::Interactions(query), _) => protocol_unchanged(&query.protocol),
            (CacheKey::Protocols { subscriber_id, .. }, value) => {
                self.changed_subscribers
                    .get(subscriber_id)
                    .is_none_or(before)
                    && match value {
                        Value::Protocols(page) => page
                            .items
                            .iter()
                            .all(|item| protocol_unchanged(&item.protocol)),
                        _ => true,
                    }
            }
        }
    }

    /// Forgets what a mutation of `protocol` (of `subscriber_id`) made outdated: the
    /// subscriber's protocol lists and the protocol's interactions.
    pub fn invalidate_protocol(&self, subscriber_id: &str, protocol: &str) {
        let now = self.clock.now();
        if !subscriber_id.is_empty() {
            self.changed_subscribers
                .insert(subscriber_id.to_owned(), now);
        }
        self.changed_protocols.insert(protocol.to_owned(), now);
    }
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes.saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
}

fn answer<T: Cacheable>(key: &CacheKey, entry: &Entry) -> Result<Fetched<T>, UpstreamError> {
    match &entry.value {
        Value::NotFound(err) => Err(err.clone()),
        value => T::unwrap(value)
            .map(|value| Fetched {
                value,
                stale_for: None,
                source: Some(Source::new(key.clone(), entry.started)),
            })
            // Keys determine the value's type, so a mismatch cannot happen; fail safe if it did.
            .ok_or_else(|| UpstreamError::new(Service::Totvs, UpstreamErrorKind::Malformed)),
    }
}
