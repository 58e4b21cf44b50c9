//! The cache's rules, each checked against a manual clock and a fake upstream whose calls are
//! counted and whose answers can be held back, so that no test sleeps or races.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::Semaphore;

use super::*;
use crate::{
    model::sample_protocols as protocols,
    model::{AuthorizationProtocol, AuthorizationStatus, Professional},
};

const MS: Duration = Duration::from_millis(1);
const MOSIA_TTL: Duration = Duration::from_secs(30);
const PROTOCOLS_TTL: Duration = Duration::from_secs(60);
const INTERACTIONS_TTL: Duration = Duration::from_secs(90);
const NOT_FOUND_TTL: Duration = Duration::from_secs(5);
const STALE_FOR: Duration = Duration::from_secs(600);

/// A cache whose TTLs all differ, so that a rule applying the wrong one fails, on a clock
/// that moves only when a test says so.
struct Harness {
    cache: ResponseCache,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Harness {
    fn new() -> Self {
        let settings = CacheSettings {
            mosia_ttl_secs: MOSIA_TTL.as_secs(),
            totvs_protocols_ttl_secs: PROTOCOLS_TTL.as_secs(),
            totvs_interactions_ttl_secs: INTERACTIONS_TTL.as_secs(),
            not_found_ttl_secs: NOT_FOUND_TTL.as_secs(),
            stale_for_secs: STALE_FOR.as_secs(),
            ..CacheSettings::default()
        };
        let metrics = Arc::new(Metrics::default());
        let clock = Clock::manual();
        Self {
            cache: ResponseCache::with_clock(&settings, metrics.clone(), clock.clone()),
            clock,
            metrics,
        }
    }

    async fn read<T: Cacheable + Clone>(
        &self,
        key: &CacheKey,
        upstream: &Fake<T>,
    ) -> Result<Fetched<T>, UpstreamError> {
        self.cache
            .get_or_fetch(key.clone(), || upstream.fetch())
            .await
    }

    /// A mutation of `protocol`, with the clock moving on either side of it as it always
    /// does in production between a read, a mutation and the next read.
    fn mutate(&self, subscriber_id: &str, protocol: &str) {
        self.clock.advance(MS);
        self.cache.invalidate_protocol(subscriber_id, protocol);
        self.clock.advance(MS);
    }
}

/// A fake upstream: counts its calls, answers what it was last told to (as of the call's
/// start), and holds every answer back until [`Fake::release`] when built with [`Fake::held`].
struct Fake<T> {
    calls: AtomicUsize,
    answer: Mutex<Result<T, UpstreamErrorKind>>,
    gate: Semaphore,
}

impl<T: Clone> Fake<T> {
    fn answering(answer: Result<T, UpstreamErrorKind>) -> Self {
        Self {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(answer),
            gate: Semaphore::new(Semaphore::MAX_PERMITS),
        }
    }

    fn held(answer: Result<T, UpstreamErrorKind>) -> Self {
        Self {
            gate: Semaphore::new(0),
            ..Self::answering(answer)
        }
    }

    fn set(&self, answer: Result<T, UpstreamErrorKind>) {
        *self.answer.lock().unwrap() = answer;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Lets held answers through, once every future polled before this one is waiting.
    async fn release(&self) {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        self.gate
            .add_permits(Semaphore::MAX_PERMITS - self.gate.available_permits());
    }

    async fn fetch(&self) -> Result<Decoded<T>, UpstreamError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer.lock().unwrap().clone();
        drop(self.gate.acquire().await);
        answer
            .map(|value| Decoded { value, bytes: 100 })
            .map_err(|kind| UpstreamError::new(Service::Totvs, kind))
    }
}

const SUBSCRIBER: &str = "00011008000027010";

fn latest_key(limit: u8) -> CacheKey {
    CacheKey::Latest {
        unique_key: "13331584754".into(),
        limit,
    }
}

fn list_key(subscriber_id: &str) -> CacheKey {
    CacheKey::Protocols {
        subscriber_id: subscriber_id.into(),
        query: ProtocolQuery::first_page(),
    }
}

fn interactions_key(protocol: &str) -> CacheKey {
    CacheKey::Interactions(InteractionQuery {
        protocol: protocol.into(),
        page: 1,
        page_size: 20,
    })
}

pub(super) fn authorization(protocol: &str) -> AuthorizationProtocol {
    AuthorizationProtocol {
        protocol: protocol.into(),
        subscriber_id: SUBSCRIBER.into(),
        beneficiary_name: "HERNANDES".into(),
        professional: Professional {
            name: "ANDRE".into(),
            council: None,
            council_number: None,
            council_state: None,
        },
        status: AuthorizationStatus::AwaitingDocument,
        status_code: "9".into(),
        authorization_number: None,
        auth_type: None,
        requested_on: None,
        analyzed_on: None,
    }
}

fn list(protocols: &[&str]) -> AuthorizationProtocolPage {
    AuthorizationProtocolPage {
        items: protocols.iter().map(|p| authorization(p)).collect(),
        has_next: false,
        remaining_records: 0,
        page: 1,
        page_size: 20,
    }
}

fn interactions() -> InteractionPage {
    InteractionPage {
        items: Vec::new(),
        has_next: false,
        remaining_records: 0,
    }
}

/// Reads `key` until just before `ttl` (from the cache) and at `ttl` (from the upstream).
async fn assert_fresh_for<T: Cacheable + Clone + std::fmt::Debug>(
    key: CacheKey,
    value: T,
    ttl: Duration,
) {
    let h = Harness::new();
    let upstream = Fake::answering(Ok(value));

    h.read(&key, &upstream).await.unwrap();
    h.clock.advance(ttl - MS);
    h.read(&key, &upstream).await.unwrap();
    assert_eq!(upstream.calls(), 1, "{key:?} is fresh until its TTL");
    h.clock.advance(MS);
    h.read(&key, &upstream).await.unwrap();
    assert_eq!(upstream.calls(), 2, "{key:?} is fetched again at its TTL");
    h.read(&key, &upstream).await.unwrap();
    assert_eq!(upstream.calls(), 2, "the new answer is fresh again");
}

#[tokio::test]
async fn mosia_answers_stay_fresh_for_the_mosia_ttl() {
    assert_fresh_for(latest_key(5), protocols(5), MOSIA_TTL).await;
}

#[tokio::test]
async fn totvs_protocol_lists_stay_fresh_for_their_ttl() {
    assert_fresh_for(list_key(SUBSCRIBER), list(&["P1"]), PROTOCOLS_TTL).await;
}

#[tokio::test]
async fn totvs_interactions_stay_fresh_for_their_ttl() {
    assert_fresh_for(interactions_key("P1"), interactions(), INTERACTIONS_TTL).await;
}

#[tokio::test]
async fn a_404_is_remembered_for_its_short_ttl_then_fetched_again() {
    let h = Harness::new();
    let upstream = Fake::<AuthorizationProtocolPage>::answering(Err(UpstreamErrorKind::NotFound));
    let key = list_key(SUBSCRIBER);

    for _ in 0..2 {
        let err = h.read(&key, &upstream).await.unwrap_err();
        assert_eq!(err.kind, UpstreamErrorKind::NotFound);
    }
    h.clock.advance(NOT_FOUND_TTL - MS);
    h.read(&key, &upstream).await.unwrap_err();
    assert_eq!(upstream.calls(), 1, "a 404 is remembered");
    h.clock.advance(MS);
    upstream.set(Ok(list(&["P1"])));
    let found = h.read(&key, &upstream).await.unwrap();

    assert_eq!(upstream.calls(), 2, "only for the 404 TTL, not the list's");
    assert_eq!(found.value.items.len(), 1);
}

#[tokio::test]
async fn errors_other_than_404_are_not_cached() {
    for kind in [
        UpstreamErrorKind::Unavailable,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::RateLimited,
        UpstreamErrorKind::Malformed,
        UpstreamErrorKind::BadRequest,
        UpstreamErrorKind::AuthFailed,
    ] {
        let h = Harness::new();
        let upstream = Fake::<AuthorizationProtocolPage>::answering(Err(kind));
        let key = list_key(SUBSCRIBER);

        assert_eq!(h.read(&key, &upstream).await.unwrap_err().kind, kind);
        upstream.set(Ok(list(&["P1"])));
        let recovered = h.read(&key, &upstream).await;

        assert!(recovered.is_ok(), "{kind:?} was cached");
        assert_eq!(upstream.calls(), 2);
    }
}

#[tokio::test]
async fn an_outage_within_the_stale_window_serves_the_last_answer_with_its_age() {
    let h = Harness::new();
    let upstream = Fake::answering(Ok(list(&["P1"])));
    let key = list_key(SUBSCRIBER);
    h.read(&key, &upstream).await.unwrap();

    h.clock.advance(Duration::from_secs(100));
    upstream.set(Err(UpstreamErrorKind::Unavailable));
    let stale = h.read(&key, &upstream).await.unwrap();

    assert_eq!(upstream.calls(), 2, "the upstream was asked first");
    assert_eq!(*stale.value, list(&["P1"]));
    assert_eq!(stale.stale_for, Some(Duration::from_secs(100)));
    assert_eq!(h.metrics.snapshot().stale_served, 1);
}

#[tokio::test]
async fn beyond_the_stale_window_an_outage_is_an_error() {
    let h = Harness::new();
    let upstream = Fake::answering(Ok(list(&["P1"])));
    let key = list_key(SUBSCRIBER);
    h.read(&key, &upstream).await.unwrap();
    upstream.set(Err(UpstreamErrorKind::Timeout));

    h.clock.advance(STALE_FOR);
    let last = h.read(&key, &upstream).await.unwrap();
    assert_eq!(
        last.stale_for,
        Some(STALE_FOR),
        "the window includes its end"
    );
    h.clock.advance(MS);
    let err = h.read(&key, &upstream).await.unwrap_err();

    assert_eq!(err.kind, UpstreamErrorKind::Timeout);
}

#[tokio::test]
async fn a_refusal_is_not_an_outage_and_gets_no_stale_answer() {
    let h = Harness::new();
    let upstream = Fake::answering(Ok(list(&["P1"])));
    let key = list_key(SUBSCRIBER);
    h.read(&key, &upstream).await.unwrap();

    h.clock.advance(PROTOCOLS_TTL);
    upstream.set(Err(UpstreamErrorKind::AuthFailed));

    assert_eq!(
        h.read(&key, &upstream).await.unwrap_err().kind,
        UpstreamErrorKind::AuthFailed
    );
}

#[tokio::test]
async fn an_entry_fetched_before_a_mutation_is_not_served_after_it() {
    let h = Harness::new();
    let lists = Fake::answering(Ok(list(&["P1"])));
    let pages = Fake::answering(Ok(interactions()));
    h.read(&list_key(SUBSCRIBER), &lists).await.unwrap();
    h.read(&interactions_key("P1"), &pages).await.unwrap();
    h.read(&interactions_key("P2"), &pages).await.unwrap();

    h.mutate(SUBSCRIBER, "P1");
    lists.set(Ok(list(&["P1", "P9"])));
    let after = h.read(&list_key(SUBSCRIBER), &lists).await.unwrap();
    h.read(&interactions_key("P1"), &pages).await.unwrap();
    h.read(&interactions_key("P2"), &pages).await.unwrap();

    assert_eq!(after.value.items.len(), 2);
    assert_eq!(lists.calls(), 2, "the subscriber's list is read again");
    assert_eq!(
        pages.calls(),
        3,
        "the protocol's interactions, not another's"
    );
    h.read(&list_key(SUBSCRIBER), &lists).await.unwrap();
    h.read(&interactions_key("P1"), &pages).await.unwrap();
    assert_eq!(
        (lists.calls(), pages.calls()),
        (2, 3),
        "what was fetched after the mutation is served"
    );
}

#[tokio::test]
async fn lists_holding_a_changed_protocol_are_read_again_even_when_the_subscriber_is_unknown() {
    let h = Harness::new();
    let holding = Fake::answering(Ok(list(&["P1", "P2"])));
    let other = Fake::answering(Ok(list(&["P3"])));
    h.read(&list_key(SUBSCRIBER), &holding).await.unwrap();
    h.read(&list_key("00011008000031015"), &other)
        .await
        .unwrap();

    // TOTVS's answer to a mutation did not name the subscriber.
    h.mutate("", "P2");
    h.read(&list_key(SUBSCRIBER), &holding).await.unwrap();
    h.read(&list_key("00011008000031015"), &other)
        .await
        .unwrap();

    assert_eq!(holding.calls(), 2);
    assert_eq!(other.calls(), 1, "a list without the protocol stays cached");
}

#[tokio::test]
async fn a_stale_answer_from_before_a_mutation_is_never_served() {
    let h = Harness::new();
    let upstream = Fake::answering(Ok(list(&["P1"])));
    let key = list_key(SUBSCRIBER);
    h.read(&key, &upstream).await.unwrap();

    h.mutate(SUBSCRIBER, "P1");
    upstream.set(Err(UpstreamErrorKind::Unavailable));

    assert_eq!(
        h.read(&key, &upstream).await.unwrap_err().kind,
        UpstreamErrorKind::Unavailable
    );
}

#[tokio::test]
async fn a_read_joining_a_fetch_started_before_a_mutation_reads_again() {
    let h = Harness::new();
    let upstream = Fake::held(Ok(list(&["P1"])));
    let key = list_key(SUBSCRIBER);

    let before = h.read(&key, &upstream);
    let mutate_then_read = async {
        // The first read's fetch is in flight, holding the list as it was...
        while upstream.calls() == 0 {
            tokio::task::yield_now().await;
        }
        // ...when a mutation adds a protocol to it; then a read that finds that fetch.
        h.mutate(SUBSCRIBER, "P9");
        upstream.set(Ok(list(&["P1", "P9"])));
        let (after, ()) = tokio::join!(h.read(&key, &upstream), upstream.release());
        after
    };
    let (before, after) = tokio::join!(before, mutate_then_read);

    assert_eq!(
        h.metrics.snapshot().cache_coalesced,
        1,
        "the second read joined the first fetch"
    );
    assert_eq!(before.unwrap().value.items.len(), 1);
    assert_eq!(
        after.unwrap().value.items.len(),
        2,
        "the second read shows the mutation"
    );
    assert_eq!(upstream.calls(), 2);
}

#[tokio::test]
async fn concurrent_misses_for_one_key_share_one_fetch() {
    let h = Harness::new();
    let upstream = Fake::held(Ok(list(&["P1"])));
    let key = list_key(SUBSCRIBER);

    let reads = futures::future::join_all((0..10).map(|_| h.read(&key, &upstream)));
    let (results, ()) = tokio::join!(reads, upstream.release());

    assert_eq!(upstream.calls(), 1);
    for result in results {
        assert_eq!(*result.unwrap().value, list(&["P1"]));
    }
    assert_eq!(h.metrics.snapshot().cache_coalesced, 9);
}

#[tokio::test]
async fn concurrent_misses_for_different_keys_fetch_separately() {
    let h = &Harness::new();
    let upstream = &Fake::held(Ok(list(&["P1"])));

    let reads = futures::future::join_all(
        ["00011008000027010", "00011008000031015"]
            .map(|subscriber| async move { h.read(&list_key(subscriber), upstream).await }),
    );
    let (results, ()) = tokio::join!(reads, upstream.release());

    assert!(results.iter().all(Result::is_ok));
    assert_eq!(upstream.calls(), 2);
}

async fn latest(
    h: &Harness,
    upstream: &Fake<Vec<ServiceProtocol>>,
    limit: u8,
) -> Arc<Vec<ServiceProtocol>> {
    h.cache
        .latest_or_fetch("13331584754", limit, || upstream.fetch())
        .await
        .unwrap()
        .value
}

#[tokio::test]
async fn a_cached_answer_for_a_larger_limit_serves_a_smaller_one_trimmed() {
    let h = Harness::new();
    let upstream = Fake::answering(Ok(protocols(10)));

    let ten = latest(&h, &upstream, 10).await;
    let three = latest(&h, &upstream, 3).await;

    assert_eq!(upstream.calls(), 1);
    assert_eq!(*three, ten[..3]);
    h.clock.advance(MOSIA_TTL);
    upstream.set(Ok(protocols(3)));
    latest(&h, &upstream, 3).await;
    assert_eq!(upstream.calls(), 2, "not once the larger answer expired");
}

#[tokio::test]
async fn a_cached_answer_for_a_smaller_limit_does_not_serve_a_larger_one() {
    let h = Harness::new();
    let upstream = Fake::answering(Ok(protocols(3)));

    latest(&h, &upstream, 3).await;
    upstream.set(Ok(protocols(5)));
    let five = latest(&h, &upstream, 5).await;

    assert_eq!(upstream.calls(), 2);
    assert_eq!(five.len(), 5);
}

#[tokio::test]
async fn the_cache_holds_a_key_once_an_answer_for_it_is_stored_and_never_when_it_is_off() {
    let h = Harness::new();
    let upstream = Fake::answering(Ok(interactions()));
    let key = interactions_key("P1");

    assert!(!h.cache.holds(&key), "nothing read yet");
    h.read(&key, &upstream).await.unwrap();
    assert!(h.cache.holds(&key));
    assert!(!h.cache.holds(&interactions_key("P2")), "another key");

    let off = ResponseCache::with_clock(
        &CacheSettings {
            enabled: false,
            ..CacheSettings::default()
        },
        h.metrics.clone(),
        h.clock.clone(),
    );
    let upstream = Fake::answering(Ok(interactions()));
    off.get_or_fetch(key.clone(), || upstream.fetch())
        .await
        .unwrap();
    assert!(!off.holds(&key), "a cache that is off holds nothing");
}
