//! Which cached answer a value came from, and whether those answers are still the ones the
//! cache would give: what lets a layer above keep something built from cached answers (a
//! whole GraphQL response) exactly as long as every one of them stays fresh and current, with
//! the cache's own rules (TTL per kind, 404 TTL, marks left by mutations here and, with a
//! fleet tier, on other replicas) and nothing of its own.

use std::time::{Duration, Instant};

use super::{CacheKey, ResponseCache, fleet::deps};

/// One fresh cache entry: its key and the moment its fetch started, by the cache's clock.
///
/// The moment tells entries of one key apart: a refetch replaces the entry with one whose
/// fetch started later, and a mutation outdates entries by that same moment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Source {
    key: CacheKey,
    started: Instant,
}

impl Source {
    pub(super) fn new(key: CacheKey, started: Instant) -> Self {
        Self { key, started }
    }
}

impl ResponseCache {
    /// How much longer every entry `sources` names stays fresh (`Duration::MAX` for none), or
    /// `None` when one of them no longer answers reads: expired, evicted, replaced by a newer
    /// fetch, outdated by a mutation. With a fleet tier, the marks of all of them are checked
    /// in one round trip, as a read of each would. Reads nothing upstream, changes no entry
    /// and counts no hit.
    pub(crate) async fn freshness_left(&self, sources: &[Source]) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        let mut left = Duration::MAX;
        let mut entries = Vec::new();
        for source in sources {
            let entry = self.fresh.get(&source.key).await?;
            if entry.started != source.started || !self.is_current(&source.key, &entry) {
                return None;
            }
            let ttl = self.ttl.of(&source.key, &entry.value);
            let entry_left = ttl.checked_sub(self.clock.since(entry.started))?;
            if entry_left.is_zero() {
                return None;
            }
            left = left.min(entry_left);
            if self.fleet.is_some() {
                entries.push((deps(&source.key, Some(&entry.value)), entry));
            }
        }
        let Some(fleet) = &self.fleet else {
            return Some(left);
        };
        let mut all = Vec::new();
        for mark in entries.iter().flat_map(|(deps, _)| deps) {
            if !all.contains(mark) {
                all.push(mark.clone());
            }
        }
        // No tier, or a degraded one: the local rules above decide, as for any read.
        let Some(mut view) = fleet.check(&all, None, || self.clock.now()).await else {
            return Some(left);
        };
        if self.follow_epoch(fleet) {
            return None;
        }
        if !fleet.complete(&mut view, &all).await {
            return Some(left);
        }
        entries
            .iter()
            .all(|(deps, entry)| view.allows(entry.stamp.as_ref(), deps))
            .then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        config::CacheSettings,
        metrics::Metrics,
        model::{
            AuthorizationProtocolPage, InteractionQuery, ProtocolQuery, Service,
            sample_protocols as protocols,
        },
        upstream::{
            cache::{Decoded, Fetched, tests::authorization},
            clock::Clock,
            error::{UpstreamError, UpstreamErrorKind},
        },
    };

    const TTL: Duration = Duration::from_secs(60);
    const MS: Duration = Duration::from_millis(1);
    const SUBSCRIBER: &str = "00011008000027010";

    fn cache(clock: &Clock) -> ResponseCache {
        let settings = CacheSettings {
            mosia_ttl_secs: TTL.as_secs(),
            totvs_protocols_ttl_secs: TTL.as_secs(),
            totvs_interactions_ttl_secs: TTL.as_secs(),
            ..CacheSettings::default()
        };
        ResponseCache::with_clock(&settings, Arc::new(Metrics::default()), clock.clone())
    }

    fn list_key() -> CacheKey {
        CacheKey::Protocols {
            subscriber_id: SUBSCRIBER.into(),
            query: ProtocolQuery::first_page(),
        }
    }

    fn page(protocol: &str) -> AuthorizationProtocolPage {
        AuthorizationProtocolPage {
            items: vec![authorization(protocol)],
            has_next: false,
            remaining_records: 0,
            page: 1,
            page_size: 20,
        }
    }

    async fn read_list(cache: &ResponseCache) -> Fetched<AuthorizationProtocolPage> {
        cache
            .get_or_fetch(list_key(), || async {
                Ok(Decoded {
                    value: page("41750520230601000030"),
                    bytes: 100,
                })
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_source_is_live_until_its_ttl_and_counts_down() {
        let clock = Clock::manual();
        let cache = cache(&clock);
        let source = read_list(&cache).await.source.expect("a fresh entry");
        assert_eq!(
            cache.freshness_left(std::slice::from_ref(&source)).await,
            Some(TTL)
        );
        clock.advance(TTL - MS);
        assert_eq!(
            cache.freshness_left(std::slice::from_ref(&source)).await,
            Some(MS)
        );
        clock.advance(MS);
        assert_eq!(
            cache.freshness_left(std::slice::from_ref(&source)).await,
            None
        );
    }

    #[tokio::test]
    async fn a_mutation_of_a_listed_protocol_or_the_subscriber_ends_the_source() {
        for (subscriber, protocol) in [
            (SUBSCRIBER, "41750520230601000030"),
            (SUBSCRIBER, "99999999999999999999"),
            ("", "41750520230601000030"),
        ] {
            let clock = Clock::manual();
            let cache = cache(&clock);
            let source = read_list(&cache).await.source.unwrap();
            clock.advance(MS);
            cache.invalidate_protocol(subscriber, protocol);
            clock.advance(MS);
            assert_eq!(
                cache.freshness_left(std::slice::from_ref(&source)).await,
                None,
                "after a mutation of {subscriber:?} / {protocol}"
            );
        }
    }

    #[tokio::test]
    async fn a_refetched_entry_is_another_source() {
        let clock = Clock::manual();
        let cache = cache(&clock);
        let old = read_list(&cache).await.source.unwrap();
        clock.advance(TTL);
        let new = read_list(&cache).await.source.unwrap();
        assert_ne!(old, new);
        assert_eq!(cache.freshness_left(std::slice::from_ref(&old)).await, None);
        assert_eq!(
            cache.freshness_left(std::slice::from_ref(&new)).await,
            Some(TTL)
        );
    }

    #[tokio::test]
    async fn a_cut_from_a_larger_mosia_answer_names_that_answer() {
        let clock = Clock::manual();
        let cache = cache(&clock);
        let fetch = |limit: u8| async move {
            Ok(Decoded {
                value: protocols(usize::from(limit)),
                bytes: 100,
            })
        };
        let ten = cache
            .latest_or_fetch("13331584754", 10, || fetch(10))
            .await
            .unwrap();
        let three = cache
            .latest_or_fetch("13331584754", 3, || fetch(3))
            .await
            .unwrap();
        assert_eq!(three.value.len(), 3);
        assert_eq!(
            three.source, ten.source,
            "the limit-3 read came from the limit-10 entry"
        );
        assert!(
            cache
                .freshness_left(&[three.source.unwrap()])
                .await
                .is_some()
        );
    }

    #[tokio::test]
    async fn no_source_for_a_disabled_cache_a_404_or_a_stale_copy() {
        let clock = Clock::manual();
        let off = ResponseCache::with_clock(
            &CacheSettings {
                enabled: false,
                ..CacheSettings::default()
            },
            Arc::new(Metrics::default()),
            clock.clone(),
        );
        assert!(read_list(&off).await.source.is_none());

        let cache = cache(&clock);
        let key = CacheKey::Interactions(InteractionQuery {
            protocol: "41750520230601000030".into(),
            page: 1,
            page_size: 20,
        });
        let missing = cache
            .get_or_fetch::<crate::model::InteractionPage, _, _>(key, || async {
                Err(UpstreamError::new(
                    Service::Totvs,
                    UpstreamErrorKind::NotFound,
                ))
            })
            .await;
        assert!(missing.is_err(), "a 404 is an error, never a source");

        read_list(&cache).await;
        clock.advance(TTL);
        let stale = cache
            .get_or_fetch::<AuthorizationProtocolPage, _, _>(list_key(), || async {
                Err(UpstreamError::new(
                    Service::Totvs,
                    UpstreamErrorKind::Unavailable,
                ))
            })
            .await
            .unwrap();
        assert!(stale.stale_for.is_some());
        assert!(stale.source.is_none(), "a stale copy is no fresh entry");
    }
}
