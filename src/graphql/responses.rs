//! The whole-response cache: a warm query answered with the bytes of an earlier identical one,
//! without parsing, validating or executing it again.
//!
//! What keeps it correct is that it holds nothing of its own about freshness. An entry names
//! the upstream cache entries its response was built from ([`Source`]s), and it is served only
//! while every one of them is still the entry the upstream cache would answer with: fresh by
//! its TTL, not outdated by a mutation, not replaced or evicted. So the TTLs, the 404 TTL, the
//! freshness after a mutation and the stale rules are the upstream cache's, by construction.
//!
//! Who may see an entry is part of its key ([`Access`]): everything of the caller's token that
//! access decisions read. A response is stored only when it has no errors and no warnings, so
//! a refusal is never stored, and an allowed answer is only ever given to a caller whose token
//! would be allowed the same reads. The audit line of each beneficiary read is kept with the
//! entry and logged again, for the caller at hand, on every hit.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use moka::{Expiry, sync::Cache};

use super::access::{self, ReadFact};

#[cfg(test)]
mod tests;
use crate::{
    auth::Caller,
    config::CacheSettings,
    metrics::Metrics,
    upstream::{Source, Upstreams},
};

/// A request as the caches above execution know it: the document as sent (byte for byte, so
/// two spellings of one operation are two keys: a cost in hit rate, never in correctness), the
/// operation picked, and the variables as canonical JSON (sorted names).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RequestKey {
    pub(crate) document: Arc<str>,
    pub(crate) operation_name: Option<Arc<str>>,
    pub(crate) variables: Arc<str>,
}

impl RequestKey {
    pub(crate) fn new(request: &async_graphql::Request) -> Self {
        // The variables are a map sorted by name, and every value serializes.
        let variables = serde_json::to_string(&request.variables).unwrap_or_default();
        Self {
            document: Arc::from(request.query.as_str()),
            operation_name: request.operation_name.as_deref().map(Arc::from),
            variables: Arc::from(variables),
        }
    }

    fn weight(&self) -> usize {
        self.document.len()
            + self.operation_name.as_deref().map_or(0, str::len)
            + self.variables.len()
    }
}

/// Everything of the caller that decides what it may read: the scopes, and the beneficiary
/// claims. `sub` is left out on purpose: two staff tokens share entries, two beneficiaries
/// never do (their claims differ), and the audit line still names the caller at hand.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Access {
    read: bool,
    write: bool,
    unique_key: Option<String>,
    subscriber_id: Option<String>,
}

impl From<&Caller> for Access {
    fn from(caller: &Caller) -> Self {
        Self {
            read: caller.scopes.read,
            write: caller.scopes.write,
            unique_key: caller.unique_key.clone(),
            subscriber_id: caller.subscriber_id.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ResponseKey {
    request: RequestKey,
    access: Access,
}

impl ResponseKey {
    pub(crate) fn new(request: RequestKey, caller: &Caller) -> Self {
        Self {
            request,
            access: Access::from(caller),
        }
    }
}

/// What one request read while it ran: the cache entries behind its data, the beneficiary
/// reads it was allowed, and whether anything came from elsewhere (then it is not stored).
#[derive(Debug, Default)]
pub(crate) struct Record(Mutex<Recorded>);

#[derive(Debug, Default)]
pub(crate) struct Recorded {
    sources: Vec<Source>,
    reads: Vec<ReadFact>,
    /// A load failed, or its value came from no fresh cache entry (cache off, stale copy).
    incomplete: bool,
}

impl Record {
    fn with<R>(&self, f: impl FnOnce(&mut Recorded) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A load's value came from `source` (`None`: from no fresh cache entry).
    pub(crate) fn loaded(&self, source: Option<&Source>) {
        self.with(|r| match source {
            Some(source) if !r.sources.contains(source) => r.sources.push(source.clone()),
            Some(_) => {}
            None => r.incomplete = true,
        });
    }

    /// A load gave no value.
    pub(crate) fn failed(&self) {
        self.with(|r| r.incomplete = true);
    }

    pub(crate) fn read_allowed(&self, fact: ReadFact) {
        self.with(|r| r.reads.push(fact));
    }

    pub(crate) fn take(&self) -> Recorded {
        self.with(std::mem::take)
    }
}

struct Entry {
    body: Bytes,
    /// The operation's name, for the request metrics of a hit.
    operation_name: Option<Arc<str>>,
    sources: Box<[Source]>,
    reads: Box<[ReadFact]>,
    /// Until the first of its sources would expire: memory is freed then at the latest.
    ttl: Duration,
    weight: u32,
}

struct UntilFirstSourceExpires;

impl Expiry<ResponseKey, Arc<Entry>> for UntilFirstSourceExpires {
    fn expire_after_create(
        &self,
        _: &ResponseKey,
        entry: &Arc<Entry>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Entries are weighed by their bytes plus this, for the bookkeeping.
const ENTRY_OVERHEAD: usize = 256;
/// What one source costs in an entry (its key's strings are short).
const SOURCE_WEIGHT: usize = 160;

/// A stored response, for a request that may be answered with it.
pub(crate) struct Hit {
    pub(crate) body: Bytes,
    pub(crate) operation_name: Option<Arc<str>>,
}

/// The whole-response cache; see the module's documentation.
pub(crate) struct WholeResponses {
    entries: Cache<ResponseKey, Arc<Entry>>,
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
    /// A response bigger than this share of the budget is not stored: a few huge answers
    /// would only push out many small ones.
    max_entry_bytes: usize,
}

impl WholeResponses {
    /// The cache, or `None` when it is off (it never is when the upstream cache is off: there
    /// would be no sources to check).
    pub(crate) fn new(
        settings: &CacheSettings,
        upstreams: Arc<Upstreams>,
        metrics: Arc<Metrics>,
    ) -> Option<Self> {
        if !settings.enabled || !settings.whole_responses {
            return None;
        }
        let max_bytes = settings.whole_response_max_bytes;
        Some(Self {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_: &ResponseKey, entry: &Arc<Entry>| entry.weight)
                .expire_after(UntilFirstSourceExpires)
                .build(),
            upstreams,
            metrics,
            max_entry_bytes: usize::try_from(max_bytes / 16).unwrap_or(usize::MAX),
        })
    }

    /// The stored response for `key` while every source it was built from is live; logs the
    /// beneficiary reads it answers for `caller`.
    pub(crate) async fn get(&self, key: &ResponseKey, caller: &Caller) -> Option<Hit> {
        let entry = self.entries.get(key)?;
        if self
            .upstreams
            .freshness_left(&entry.sources)
            .await
            .is_none()
        {
            self.entries.invalidate(key);
            return None;
        }
        self.metrics.whole_response_hit();
        for read in &entry.reads {
            access::audit_cached_read(caller, read);
        }
        Some(Hit {
            body: entry.body.clone(),
            operation_name: entry.operation_name.clone(),
        })
    }

    /// Stores `body`, the response to `key` built from what `recorded` says, when it may be:
    /// complete, built from live sources only, within the size bound. The caller checks that
    /// it is a query's response without errors or warnings.
    pub(crate) async fn put(
        &self,
        key: ResponseKey,
        body: Bytes,
        operation_name: Option<Arc<str>>,
        recorded: Recorded,
    ) {
        if recorded.incomplete || body.len() > self.max_entry_bytes {
            return;
        }
        // A source that ended while the response was being built (a mutation, a TTL) makes
        // the response outdated before it is stored.
        let Some(left) = self.upstreams.freshness_left(&recorded.sources).await else {
            return;
        };
        // A response with no source (only `__typename`, say) would live as long as its key
        // stays in the cache; a minute bounds what it costs to keep.
        let ttl = left.min(Duration::from_secs(60));
        let weight = body.len()
            + key.request.weight()
            + ENTRY_OVERHEAD
            + recorded.sources.len() * SOURCE_WEIGHT
            + recorded.reads.len() * SOURCE_WEIGHT;
        let entry = Entry {
            body,
            operation_name,
            sources: recorded.sources.into_boxed_slice(),
            reads: recorded.reads.into_boxed_slice(),
            ttl,
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        };
        self.entries.insert(key, Arc::new(entry));
    }
}
