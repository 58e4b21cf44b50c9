//! The cache's side of the fleet tier: which marks an entry depends on, the check before a
//! local entry is served, and a cold miss filled from Redis or under a fleet-wide lease.
//!
//! Without `REDIS_URL`, or while the tier is degraded, every function here steps aside and
//! the cache follows its single-process rules.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use super::{CacheKey, Cacheable, Decoded, Entry, ResponseCache, Value, weight};
use crate::{
    model::{AuthorizationProtocolPage, InteractionPage, Service, ServiceProtocol},
    upstream::{
        error::{Fault, UpstreamError, UpstreamErrorKind},
        fleet::{Fleet, LeaseOutcome, Mark, Slot, Stamp, View},
    },
};

/// The marks (versions) an entry of `key` holding `value` must postdate: a list's subscriber
/// and every protocol it shows, interactions' protocol; Mosia's answers change with no
/// mutation of ours.
pub(super) fn deps(key: &CacheKey, value: Option<&Value>) -> Vec<Mark> {
    match key {
        CacheKey::Latest { .. } => Vec::new(),
        CacheKey::Interactions(query) => vec![Mark::Protocol(query.protocol.clone())],
        CacheKey::Protocols { subscriber_id, .. } => {
            let mut marks = vec![Mark::Subscriber(subscriber_id.clone())];
            if let Some(Value::Protocols(page)) = value {
                marks.extend(
                    page.items
                        .iter()
                        .map(|item| Mark::Protocol(item.protocol.clone())),
                );
            }
            marks
        }
    }
}

fn slot(key: &CacheKey) -> Slot {
    // Field order is fixed by the types, so equal keys encode equally.
    Slot::new(&serde_json::to_vec(key).unwrap_or_default())
}

/// An answer as Redis holds it: what the entry holds, the body size it is weighed by, and the
/// stamp of the fetch that brought it.
#[derive(Serialize)]
struct Stored<'a> {
    epoch: &'a str,
    at_us: u64,
    bytes: u32,
    value: StoredRef<'a>,
}

#[derive(Serialize)]
enum StoredRef<'a> {
    Latest(&'a [ServiceProtocol]),
    Protocols(&'a AuthorizationProtocolPage),
    Interactions(&'a InteractionPage),
    NotFound {
        service: Service,
        status: Option<u16>,
        fault: Option<&'a Fault>,
    },
}

#[derive(Deserialize)]
struct Loaded {
    epoch: String,
    at_us: u64,
    bytes: u32,
    value: LoadedValue,
}

#[derive(Deserialize)]
enum LoadedValue {
    Latest(Vec<ServiceProtocol>),
    Protocols(AuthorizationProtocolPage),
    Interactions(InteractionPage),
    NotFound {
        service: Service,
        status: Option<u16>,
        fault: Option<Fault>,
    },
}

fn encode(entry: &Entry, stamp: &Stamp) -> Option<Vec<u8>> {
    let value = match &entry.value {
        Value::Latest(list) => StoredRef::Latest(list),
        Value::Protocols(page) => StoredRef::Protocols(page),
        Value::Interactions(page) => StoredRef::Interactions(page),
        Value::NotFound(err) => StoredRef::NotFound {
            service: err.service,
            status: err.status,
            fault: err.fault.as_deref(),
        },
    };
    serde_json::to_vec(&Stored {
        epoch: &stamp.epoch,
        at_us: stamp.at_us,
        bytes: entry.weight,
        value,
    })
    .ok()
}

/// The value of `key` in `bytes`, when it decodes and is of the kind the key names.
fn decode(key: &CacheKey, bytes: &[u8]) -> Option<(Loaded, Value)> {
    let mut loaded: Loaded = serde_json::from_slice(bytes).ok()?;
    let value = match (
        key,
        std::mem::replace(&mut loaded.value, LoadedValue::Latest(Vec::new())),
    ) {
        (CacheKey::Latest { .. }, LoadedValue::Latest(list)) => Value::Latest(Arc::new(list)),
        (CacheKey::Protocols { .. }, LoadedValue::Protocols(page)) => {
            Value::Protocols(Arc::new(page))
        }
        (CacheKey::Interactions(_), LoadedValue::Interactions(page)) => {
            Value::Interactions(Arc::new(page))
        }
        (
            _,
            LoadedValue::NotFound {
                service,
                status,
                fault,
            },
        ) => {
            let mut err =
                UpstreamError::new(service, UpstreamErrorKind::NotFound).with_fault(fault);
            err.status = status;
            Value::NotFound(err)
        }
        _ => return None,
    };
    Some((loaded, value))
}

impl ResponseCache {
    /// The fleet check of a read of `key` (one round trip), with the shared value when there
    /// is no local entry; `None` without a tier or while it is degraded. An epoch change seen
    /// here drops every local entry first.
    pub(super) async fn view(&self, key: &CacheKey, local: Option<&Entry>) -> Option<View> {
        let fleet = self.fleet.as_ref()?;
        let deps = deps(key, local.map(|entry| &entry.value));
        let slot = local.is_none().then(|| slot(key));
        let view = fleet
            .check(&deps, slot.as_ref(), || self.clock.now())
            .await?;
        self.follow_epoch(fleet);
        Some(view)
    }

    /// Drops every local entry when the fleet's epoch changed since the last check; whether
    /// it did.
    pub(super) fn follow_epoch(&self, fleet: &Fleet) -> bool {
        let generation = fleet.generation();
        let changed = self
            .generation
            .swap(generation, std::sync::atomic::Ordering::AcqRel)
            != generation;
        if changed {
            self.fresh.invalidate_all();
            if let Some(stale) = &self.stale {
                stale.invalidate_all();
            }
        }
        changed
    }

    /// Whether the fleet lets `entry` be served: always without a view (no tier, or degraded:
    /// the local rules alone decide); else it must postdate every mark it depends on. Marks
    /// the view lacks (a list's protocols) cost one more round trip.
    pub(super) async fn fleet_allows(
        &self,
        key: &CacheKey,
        entry: &Entry,
        view: &mut Option<View>,
    ) -> bool {
        let (Some(fleet), Some(current)) = (&self.fleet, view.as_mut()) else {
            return true;
        };
        let deps = deps(key, Some(&entry.value));
        if !fleet.complete(current, &deps).await {
            // Redis stopped answering mid-read: from here on, one process's rules.
            *view = None;
            return true;
        }
        current.allows(entry.stamp.as_ref(), &deps)
    }

    /// A cold miss under the fleet: the value another replica shared, else the upstream's
    /// under a fleet-wide lease (waiting, up to the upstream timeout, for the holder's value),
    /// shared in turn for what is left of its TTL.
    pub(super) async fn fill<T, F, Fut>(
        &self,
        key: &CacheKey,
        fetch: &F,
        view: &View,
        prefetched: Option<Vec<u8>>,
        started: std::time::Instant,
    ) -> Result<Entry, UpstreamError>
    where
        T: Cacheable,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Decoded<T>, UpstreamError>>,
    {
        let Some(fleet) = &self.fleet else {
            return self.fetch_entry(fetch, started, None).await;
        };
        if let Some(entry) = self.shared_entry(key, view, prefetched).await {
            return Ok(entry);
        }
        let slot = slot(key);
        let give_up = tokio::time::Instant::now() + fleet.wait_for_value();
        let mut step = Duration::from_millis(5);
        let lease = 'lease: loop {
            match fleet.lease(&slot).await {
                LeaseOutcome::Acquired(lease) => break Some(lease),
                LeaseOutcome::Unavailable => break None,
                LeaseOutcome::Held => {}
            }
            loop {
                if tokio::time::Instant::now() >= give_up {
                    break 'lease None;
                }
                tokio::time::sleep(step).await;
                step = (step * 2).min(Duration::from_millis(50));
                match fleet.poll(&slot).await {
                    None => break 'lease None,
                    Some((Some(bytes), held)) => {
                        if let Some(entry) = self.shared_entry(key, view, Some(bytes)).await {
                            return Ok(entry);
                        }
                        if !held {
                            break;
                        }
                    }
                    Some((None, true)) => {}
                    // The holder failed (errors are not shared): take the lease.
                    Some((None, false)) => break,
                }
            }
        };
        let stamp = view.stamp();
        let result = self.fetch_entry(fetch, started, Some(stamp.clone())).await;
        let payload = result.as_ref().ok().and_then(|entry| {
            let ttl = self.ttl.of(key, &entry.value);
            let left = ttl.saturating_sub(self.clock.since(entry.started));
            encode(entry, &stamp).map(|bytes| (bytes, left))
        });
        let (payload, ttl) = match payload {
            Some((bytes, left)) => (Some(bytes), left),
            None => (None, Duration::ZERO),
        };
        fleet.publish(&slot, payload, ttl, lease).await;
        result
    }

    /// The entry another replica shared in `bytes`, when it is of this epoch, within its TTL
    /// and newer than every mark it depends on.
    async fn shared_entry(
        &self,
        key: &CacheKey,
        view: &View,
        bytes: Option<Vec<u8>>,
    ) -> Option<Entry> {
        let fleet = self.fleet.as_ref()?;
        let (loaded, value) = decode(key, &bytes?)?;
        let stamp = Stamp {
            epoch: Arc::from(loaded.epoch),
            at_us: loaded.at_us,
        };
        let age = Duration::from_micros(view.now_us.saturating_sub(stamp.at_us));
        if age >= self.ttl.of(key, &value) {
            return None;
        }
        let deps = deps(key, Some(&value));
        let mut view = view.without_value();
        if !fleet.complete(&mut view, &deps).await || !view.allows(Some(&stamp), &deps) {
            return None;
        }
        let started = view.taken.checked_sub(age)?;
        self.metrics.fleet_hit();
        Some(Entry {
            value,
            started,
            weight: loaded.bytes.max(weight(0)),
            stamp: Some(stamp),
        })
    }

    /// Records a mutation's change everywhere: locally at once, and in Redis before the
    /// mutating replica answers, so that no replica serves an answer older than it.
    pub(crate) async fn invalidate_everywhere(&self, subscriber_id: &str, protocol: &str) {
        self.invalidate_protocol(subscriber_id, protocol);
        if let Some(fleet) = &self.fleet {
            let mut marks = vec![Mark::Protocol(protocol.to_owned())];
            if !subscriber_id.is_empty() {
                marks.push(Mark::Subscriber(subscriber_id.to_owned()));
            }
            fleet.record_change(marks).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{InteractionQuery, ProtocolQuery},
        upstream::error::FaultDetail,
    };

    fn protocols_key() -> CacheKey {
        CacheKey::Protocols {
            subscriber_id: "00011008000027010".into(),
            query: ProtocolQuery::first_page(),
        }
    }

    fn entry(value: Value) -> Entry {
        Entry {
            value,
            started: std::time::Instant::now(),
            weight: 1_234,
            stamp: None,
        }
    }

    #[test]
    fn an_answer_round_trips_through_its_stored_form() {
        let page = AuthorizationProtocolPage {
            items: vec![super::super::tests::authorization("41750520230601000030")],
            has_next: true,
            remaining_records: 3,
            page: 1,
            page_size: 20,
        };
        let stamp = Stamp {
            epoch: Arc::from("e1"),
            at_us: 42,
        };
        let bytes = encode(&entry(Value::Protocols(Arc::new(page.clone()))), &stamp).unwrap();

        let (loaded, value) = decode(&protocols_key(), &bytes).unwrap();
        assert_eq!(
            (loaded.epoch.as_str(), loaded.at_us, loaded.bytes),
            ("e1", 42, 1_234)
        );
        assert!(matches!(value, Value::Protocols(decoded) if *decoded == page));
        // A value of another kind than the key names is refused, not served.
        let interactions = CacheKey::Interactions(InteractionQuery {
            protocol: "41750520230601000030".into(),
            page: 1,
            page_size: 20,
        });
        assert!(decode(&interactions, &bytes).is_none());
        assert!(decode(&protocols_key(), b"{not json").is_none());
    }

    #[test]
    fn a_remembered_404_keeps_its_status_and_totvs_fault() {
        let fault = Fault {
            code: Some("E004".into()),
            message: Some("Protocolo nao encontrado".into()),
            detailed_message: None,
            details: vec![FaultDetail {
                code: Some("1".into()),
                message: Some("x".into()),
                detailed_message: None,
            }],
        };
        let err = UpstreamError::new(Service::Totvs, UpstreamErrorKind::NotFound)
            .with_status(404)
            .with_fault(Some(fault));
        let stamp = Stamp {
            epoch: Arc::from("e1"),
            at_us: 1,
        };
        let bytes = encode(&entry(Value::NotFound(err.clone())), &stamp).unwrap();

        let (_, value) = decode(&protocols_key(), &bytes).unwrap();
        assert!(matches!(value, Value::NotFound(decoded) if decoded == err));
    }

    #[test]
    fn a_list_depends_on_its_subscriber_and_every_protocol_it_shows() {
        let page = AuthorizationProtocolPage {
            items: vec![super::super::tests::authorization("41750520230601000030")],
            has_next: false,
            remaining_records: 0,
            page: 1,
            page_size: 20,
        };
        assert_eq!(
            deps(&protocols_key(), Some(&Value::Protocols(Arc::new(page)))),
            [
                Mark::Subscriber("00011008000027010".into()),
                Mark::Protocol("41750520230601000030".into())
            ]
        );
        let latest = CacheKey::Latest {
            unique_key: "13331584754".into(),
            limit: 5,
        };
        assert!(deps(&latest, None).is_empty());
    }
}
