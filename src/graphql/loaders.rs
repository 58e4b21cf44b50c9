//! Per-request DataLoaders: whatever a query names, each distinct upstream resource is read once
//! per request, and distinct resources are read concurrently (at most `max_concurrency` at a
//! time per upstream; across requests, `upstream::http` caps each upstream at `max_in_flight`,
//! and a load waits for that permit within the request's deadline like any other wait).
//!
//! A loader's value is the per-key `Result`, so one failing key (a 404 for one protocol's
//! interactions) fails only the fields that need it, not the whole batch.
//!
//! Batches run on the request's own task ([`Batches::drive`]), right after each pass of the
//! executor over the fields, instead of on a spawned task after a timer: every key one level
//! of the query names is in the batch, deterministically, and no batch waits for a timer tick
//! (tokio's 1 ms granularity made DataLoader's default 1 ms delay cost about 2 ms per level).
//! Within a batch, a call the cache cannot answer here runs on a task of its own ([`Spawned`]),
//! so that a fan-out's calls go out from every worker at once.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    hash::Hash,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use tokio::time::Instant;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use futures::{
    StreamExt,
    channel::mpsc,
    future::{BoxFuture, Either},
    stream::FuturesUnordered,
    task::ArcWake,
};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::{identifiers::ArgumentPositions, responses::Record};
use crate::{
    model::{
        AuthorizationProtocolPage, InteractionPage, InteractionQuery, ProtocolQuery, Service,
        ServiceProtocol,
    },
    upstream::{Fetched, UpstreamError, Upstreams},
};

type Loaded<T> = Result<Arc<T>, LoadError>;

/// Why a load gave no value.
#[derive(Clone, Debug)]
pub enum LoadError {
    Upstream(UpstreamError),
    /// The request already made as many upstream calls as it may.
    TooExpensive {
        limit: u64,
    },
    /// The request's deadline passed before the upstream answered.
    Deadline,
}

impl From<UpstreamError> for LoadError {
    fn from(err: UpstreamError) -> Self {
        Self::Upstream(err)
    }
}

/// What one request may still spend: upstream calls and time.
#[derive(Debug)]
pub struct Budget {
    calls: AtomicU64,
    max_calls: u64,
    pub deadline: Instant,
}

impl Budget {
    pub fn new(max_calls: u64, deadline: Instant) -> Self {
        Self {
            calls: AtomicU64::new(0),
            max_calls,
            deadline,
        }
    }

    /// Takes one call from the budget, or says the request has spent it all.
    pub fn take_call(&self) -> Result<(), LoadError> {
        let before = self.calls.fetch_add(1, Ordering::Relaxed);
        if before < self.max_calls {
            Ok(())
        } else {
            Err(LoadError::TooExpensive {
                limit: self.max_calls,
            })
        }
    }

    /// Runs `work` until the request's deadline.
    pub async fn within_deadline<T>(&self, work: impl Future<Output = T>) -> Result<T, LoadError> {
        tokio::time::timeout_at(self.deadline, work)
            .await
            .map_err(|_| LoadError::Deadline)
    }
}

/// What one GraphQL request carries: its loaders and the warnings it collects.
pub struct RequestContext {
    pub latest: DataLoader<MosiaLoader, HashMapCache>,
    pub protocols: DataLoader<ProtocolsLoader, HashMapCache>,
    pub interactions: DataLoader<InteractionsLoader, HashMapCache>,
    pub warnings: Arc<Warnings>,
    /// Set once the engine starts executing: the request parsed and validated.
    pub executed: Arc<AtomicBool>,
    /// Where the operation names its arguments, to tell input errors from others.
    pub argument_positions: Arc<ArgumentPositions>,
    pub budget: Arc<Budget>,
    /// What the request read, for the whole-response cache.
    pub record: Arc<Record>,
}

impl RequestContext {
    /// The context of one request, and the batches its loaders will ask to run.
    pub fn new(
        upstreams: Arc<Upstreams>,
        max_concurrency: usize,
        argument_positions: Arc<ArgumentPositions>,
        budget: Budget,
    ) -> (Self, Batches) {
        let budget = Arc::new(budget);
        let (batches, queue) = mpsc::unbounded::<BoxFuture<'static, ()>>();
        let warnings = Arc::new(Warnings::default());
        let record = Arc::new(Record::default());
        let shared = Shared {
            upstreams,
            warnings: warnings.clone(),
            record: record.clone(),
            budget: budget.clone(),
            mosia_permits: Arc::new(Semaphore::new(max_concurrency)),
            totvs_permits: Arc::new(Semaphore::new(max_concurrency)),
        };
        fn loader<L>(inner: L, batches: &Queue) -> DataLoader<L, HashMapCache> {
            let batches = batches.clone();
            // A send fails only once the request is over, when nobody awaits the batch.
            let run_on_request_task = move |batch| drop(batches.unbounded_send(batch));
            DataLoader::with_cache(inner, run_on_request_task, HashMapCache::default())
                .delay(Duration::ZERO)
        }
        let context = Self {
            latest: loader(MosiaLoader(shared.clone()), &batches),
            protocols: loader(ProtocolsLoader(shared.clone()), &batches),
            interactions: loader(InteractionsLoader(shared), &batches),
            warnings,
            executed: Arc::default(),
            argument_positions,
            budget,
            record,
        };
        (context, Batches(queue))
    }
}

type Queue = mpsc::UnboundedSender<BoxFuture<'static, ()>>;

/// The batches a request's loaders asked to run.
pub struct Batches(mpsc::UnboundedReceiver<BoxFuture<'static, ()>>);

impl Batches {
    /// Runs `execution` and, on the same task, the batches it asks for; its output.
    ///
    /// A batch starts once the execution is idle, i.e. it returned `Pending` without waking
    /// itself: by then every field of the current level has named its keys. (The executor polls
    /// sibling fields through a `FuturesUnordered`, which yields after a share of them, so "the
    /// first `Pending`" would split a level into several batches.)
    pub async fn drive<T>(self, execution: impl Future<Output = T>) -> T {
        Drive {
            execution: Box::pin(execution),
            queue: self.0,
            running: FuturesUnordered::new(),
        }
        .await
    }
}

struct Drive<E> {
    execution: Pin<Box<E>>,
    queue: mpsc::UnboundedReceiver<BoxFuture<'static, ()>>,
    running: FuturesUnordered<BoxFuture<'static, ()>>,
}

/// How many times the execution may wake itself in one poll before batches run anyway, so a
/// field that keeps yielding cannot starve the loads the others wait for.
const MAX_EXECUTION_PASSES: usize = 256;

impl<E: Future> Future for Drive<E> {
    type Output = E::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<E::Output> {
        let this = self.get_mut();
        let flag = Arc::new(WakeFlag {
            woken: AtomicBool::new(false),
            task: cx.waker().clone(),
        });
        let waker = futures::task::waker(flag.clone());
        let mut execution_cx = Context::from_waker(&waker);
        loop {
            for _ in 0..MAX_EXECUTION_PASSES {
                flag.woken.store(false, Ordering::SeqCst);
                if let Poll::Ready(output) = this.execution.as_mut().poll(&mut execution_cx) {
                    return Poll::Ready(output);
                }
                if !flag.woken.load(Ordering::SeqCst) {
                    break;
                }
            }
            while let Poll::Ready(Some(batch)) = this.queue.poll_next_unpin(cx) {
                this.running.push(batch);
            }
            while let Poll::Ready(Some(())) = this.running.poll_next_unpin(cx) {}
            // A batch answered from the cache wakes the execution at once: go round again
            // rather than through the scheduler.
            if !flag.woken.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
    }
}

/// The task's waker, noting whether it was woken.
struct WakeFlag {
    woken: AtomicBool,
    task: Waker,
}

impl ArcWake for WakeFlag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.woken.store(true, Ordering::SeqCst);
        arc_self.task.wake_by_ref();
    }
}

/// Notes for the client that are not errors (e.g. a stale answer stood in for a failed upstream),
/// returned in the response's `extensions.warnings`.
#[derive(Debug, Default)]
pub struct Warnings(Mutex<Vec<Warning>>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub code: &'static str,
    pub service: Service,
    pub message: String,
    pub age_secs: u64,
}

impl Warnings {
    fn stale(&self, service: Service, age: Duration) {
        let warning = Warning {
            code: "STALE_DATA",
            service,
            message: format!(
                "{service} is failing; some data is a cached answer {} s old",
                age.as_secs()
            ),
            age_secs: age.as_secs(),
        };
        let mut warnings = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }

    pub fn take(&self) -> Vec<Warning> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[derive(Clone)]
struct Shared {
    upstreams: Arc<Upstreams>,
    warnings: Arc<Warnings>,
    record: Arc<Record>,
    budget: Arc<Budget>,
    // Per upstream and per request rather than per batch: a request's keys may reach a loader
    // in several batches, and the bound holds across all of them.
    mosia_permits: Arc<Semaphore>,
    totvs_permits: Arc<Semaphore>,
}

impl Shared {
    /// Loads every key with `fetch`, concurrently, within the request's bound for `service`.
    async fn load_all<K, T, F, Fut>(
        &self,
        service: Service,
        keys: Vec<K>,
        fetch: F,
    ) -> HashMap<K, Loaded<T>>
    where
        K: Eq + Hash + Clone,
        F: Fn(K) -> Fut,
        Fut: Future<Output = (K, Result<Fetched<T>, UpstreamError>)>,
    {
        let permits = match service {
            Service::Mosia => &self.mosia_permits,
            Service::Totvs => &self.totvs_permits,
        };
        let fetch = &fetch;
        let budget = &self.budget;
        keys.into_iter()
            .map(|key| async move {
                if let Err(err) = budget.take_call() {
                    return (key, Err(err));
                }
                let fetched = budget
                    .within_deadline(async {
                        // The semaphore is never closed, so acquiring only waits.
                        let _permit = permits.acquire().await.ok();
                        fetch(key.clone()).await
                    })
                    .await;
                match fetched {
                    Ok((key, result)) => (key, result.map_err(LoadError::from)),
                    Err(err) => (key, Err(err)),
                }
            })
            .collect::<FuturesUnordered<_>>()
            .map(|(key, result)| {
                let result = result.map(|fetched| {
                    if let Some(age) = fetched.stale_for {
                        self.warnings.stale(service, age);
                    }
                    self.record.loaded(fetched.source.as_ref());
                    fetched.value
                });
                if result.is_err() {
                    self.record.failed();
                }
                (key, result)
            })
            .collect()
            .await
    }
}

/// `call` on a task of its own unless its answer is `held` in the cache: see [`Spawned`].
fn dispatch<F>(held: bool, call: F) -> Either<F, Spawned<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if held {
        Either::Left(call)
    } else {
        Either::Right(Spawned::new(call))
    }
}

/// One upstream call on a task of its own. A request is one task: on it, the calls of a batch
/// were built and sent one after the other (a Mosia call first held a fan-out's TOTVS list
/// back by about 0.1 ms, and the twenty interaction calls took turns on one core). Only for
/// calls that will wait on the network: a spawn costs about 2 µs, more than a cache hit
/// itself, and a warm fan-out without the whole-response cache lost 10-15 % of its req/s when
/// every call was spawned (see the notes of issue 11). Dropped before it finishes (the request
/// ended or its deadline passed), it aborts the call, as dropping the call's future would.
struct Spawned<O>(tokio::task::JoinHandle<O>);

impl<O: Send + 'static> Spawned<O> {
    fn new(call: impl Future<Output = O> + Send + 'static) -> Self {
        // The call's spans stay children of the field that asked for it.
        Self(tokio::spawn(call.in_current_span()))
    }
}

impl<O> Future for Spawned<O> {
    type Output = O;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        Pin::new(&mut self.0).poll(cx).map(|joined| match joined {
            Ok(output) => output,
            // The task is aborted only by `drop` below, so this is a panic: let it unwind
            // into the request, as it would have on the request's own task.
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        })
    }
}

impl<O> Drop for Spawned<O> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Key of Mosia's latest protocols: a beneficiary and how many protocols.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LatestKey {
    pub unique_key: String,
    pub limit: u8,
}

pub struct MosiaLoader(Shared);

impl Loader<LatestKey> for MosiaLoader {
    type Value = Loaded<Vec<ServiceProtocol>>;
    type Error = Infallible;

    async fn load(
        &self,
        keys: &[LatestKey],
    ) -> Result<HashMap<LatestKey, Self::Value>, Infallible> {
        // One call per beneficiary, for the largest limit asked: its answer holds every
        // smaller one, so `name`, `latestProtocols(limit: 3)` and `latestProtocols(limit: 10)`
        // cost one call together.
        let mut largest: HashMap<String, u8> = HashMap::new();
        for key in keys {
            let limit = largest.entry(key.unique_key.clone()).or_default();
            *limit = (*limit).max(key.limit);
        }
        let upstreams = &self.0.upstreams;
        let loaded = self
            .0
            .load_all(
                Service::Mosia,
                largest.into_iter().collect(),
                |(unique_key, limit): (String, u8)| {
                    let held = upstreams.holds_latest(&unique_key, limit);
                    let upstreams = upstreams.clone();
                    dispatch(held, async move {
                        let result = upstreams.latest_protocols(&unique_key, limit).await;
                        ((unique_key, limit), result)
                    })
                },
            )
            .await;
        let by_beneficiary: HashMap<&str, (u8, &Loaded<Vec<ServiceProtocol>>)> = loaded
            .iter()
            .map(|((unique_key, limit), value)| (unique_key.as_str(), (*limit, value)))
            .collect();
        Ok(keys
            .iter()
            .filter_map(|key| {
                let (answered, loaded) = by_beneficiary.get(key.unique_key.as_str())?;
                let value = match loaded {
                    Ok(answer) => Ok(crate::model::newest_of(answer, *answered, key.limit)?),
                    Err(err) => Err(err.clone()),
                };
                Some((key.clone(), value))
            })
            .collect())
    }
}

/// Key of a TOTVS protocol list page.
pub type ProtocolsKey = (String, ProtocolQuery);

pub struct ProtocolsLoader(Shared);

impl Loader<ProtocolsKey> for ProtocolsLoader {
    type Value = Loaded<AuthorizationProtocolPage>;
    type Error = Infallible;

    async fn load(
        &self,
        keys: &[ProtocolsKey],
    ) -> Result<HashMap<ProtocolsKey, Self::Value>, Infallible> {
        let upstreams = &self.0.upstreams;
        Ok(self
            .0
            .load_all(Service::Totvs, keys.to_vec(), |key| {
                let held = upstreams.holds_protocols(&key.0, &key.1);
                let upstreams = upstreams.clone();
                dispatch(held, async move {
                    let result = upstreams.authorization_protocols(&key.0, &key.1).await;
                    (key, result)
                })
            })
            .await)
    }
}

pub struct InteractionsLoader(Shared);

impl Loader<InteractionQuery> for InteractionsLoader {
    type Value = Loaded<InteractionPage>;
    type Error = Infallible;

    async fn load(
        &self,
        keys: &[InteractionQuery],
    ) -> Result<HashMap<InteractionQuery, Self::Value>, Infallible> {
        let upstreams = &self.0.upstreams;
        Ok(self
            .0
            .load_all(Service::Totvs, keys.to_vec(), |key| {
                let held = upstreams.holds_interactions(&key);
                let upstreams = upstreams.clone();
                dispatch(held, async move {
                    let result = upstreams.interactions(&key).await;
                    (key, result)
                })
            })
            .await)
    }
}

/// The loaders of the request a resolver runs in.
pub fn request<'a>(ctx: &'a async_graphql::Context<'_>) -> &'a RequestContext {
    ctx.data_unchecked::<RequestContext>()
}

/// Loads one key; the loader never fails as a whole, and always answers every key it is given.
pub async fn load_one<K, L, T>(loader: &DataLoader<L, HashMapCache>, key: K) -> Loaded<T>
where
    K: Send + Sync + Hash + Eq + Clone + 'static,
    L: Loader<K, Value = Loaded<T>, Error = Infallible>,
    T: Send + Sync + 'static,
{
    match loader.load_one(key).await {
        Ok(Some(value)) => value,
        // Every loader answers every key it is given; fail safe rather than panic if one did not.
        Ok(None) => Err(LoadError::Upstream(UpstreamError::new(
            Service::Totvs,
            crate::upstream::UpstreamErrorKind::Malformed,
        ))),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its drops: a task that is aborted drops the future it was running.
    struct Dropped(Arc<AtomicUsize>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_call_runs_on_the_request_task_only_when_its_answer_is_held() {
        assert!(matches!(dispatch(true, async { 7 }), Either::Left(_)));
        let spawned = dispatch(false, async { 7 });
        assert!(matches!(spawned, Either::Right(_)));
        assert_eq!(
            spawned.await,
            7,
            "a spawned call answers like the call itself"
        );
    }

    #[tokio::test]
    async fn dropping_a_spawned_call_aborts_its_task() {
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = Dropped(drops.clone());
        let call = Spawned::new(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        tokio::task::yield_now().await;
        assert_eq!(drops.load(Ordering::SeqCst), 0, "still running");
        // What a request that ends or runs out of time does to its calls.
        drop(call);
        for _ in 0..100 {
            if drops.load(Ordering::SeqCst) == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the task kept running after its call was dropped");
    }

    #[tokio::test]
    async fn a_panic_in_a_spawned_call_reaches_the_request() {
        let caught = tokio::spawn(Spawned::new(async {
            panic!("decoder bug");
        }))
        .await
        .unwrap_err();
        assert!(caught.is_panic());
    }
}
