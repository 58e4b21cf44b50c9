//! The guard that keeps a mutation from reaching TOTVS twice: within one replica by moka's
//! coalescing, across the fleet by a shared key in Redis when there is one.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use moka::future::Cache;
use serde::Serialize;

use crate::{
    config::CacheSettings,
    metrics::Metrics,
    model::{AuthorizationProtocol, AuthorizationRequest},
    upstream::{UpstreamError, fleet::Fleet},
};

/// What makes two mutations one submission: the same caller sending the same input.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub(crate) struct MutationKey {
    /// Who sends it (the token's `sub`). A double click is one caller's; two callers sending
    /// the same input are two submissions, and neither may receive the other's answer.
    pub caller: String,
    pub input: MutationInput,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub(crate) enum MutationInput {
    Attachments {
        protocol: String,
        hrefs: Vec<String>,
    },
    Request(AuthorizationRequest),
}

/// Sends a mutation at most once per identical key in flight, and answers an identical key
/// arriving within the dedupe window after a success with that success (the double click).
pub(crate) struct MutationGuard {
    recent: Cache<MutationKey, AuthorizationProtocol>,
    window: Duration,
    metrics: Arc<Metrics>,
    fleet: Option<Arc<Fleet>>,
}

impl MutationGuard {
    pub fn new(settings: &CacheSettings, metrics: Arc<Metrics>) -> Self {
        let window =
            Duration::from_secs(settings.mutation_dedupe_secs).max(Duration::from_millis(1));
        Self {
            recent: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(window)
                .build(),
            window,
            metrics,
            fleet: None,
        }
    }

    /// The guard shared with the other replicas through the fleet's tier.
    pub(crate) fn with_fleet(mut self, fleet: Option<Arc<Fleet>>) -> Self {
        self.fleet = fleet;
        self
    }

    pub async fn run<F, Fut>(
        &self,
        key: MutationKey,
        send: F,
    ) -> Result<AuthorizationProtocol, UpstreamError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AuthorizationProtocol, UpstreamError>>,
    {
        let ran = AtomicBool::new(false);
        // Caller and input, canonically encoded: the fleet's key (hashed before it reaches Redis).
        let material = self
            .fleet
            .as_ref()
            .and_then(|_| serde_json::to_vec(&key).ok());
        let result = self
            .recent
            .try_get_with(key, async {
                ran.store(true, Ordering::Relaxed);
                match (&self.fleet, material) {
                    (Some(fleet), Some(material)) => {
                        let (result, shared) = fleet.send_once(&material, self.window, send).await;
                        if shared {
                            self.metrics.mutation_deduplicated();
                        }
                        result
                    }
                    _ => send().await,
                }
            })
            .await
            .map_err(|err| UpstreamError::clone(&err));
        if !ran.load(Ordering::Relaxed) {
            self.metrics.mutation_deduplicated();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::{model::Service, upstream::UpstreamErrorKind};

    fn attachments(caller: &str) -> MutationKey {
        MutationKey {
            caller: caller.into(),
            input: MutationInput::Attachments {
                protocol: "41750520230601000030".into(),
                hrefs: vec!["https://files.example/pedido.pdf".into()],
            },
        }
    }

    fn protocol() -> AuthorizationProtocol {
        super::super::tests::authorization("41750520230601000030")
    }

    /// A guard, and a send that counts its calls and answers once `open` has permits.
    struct Harness {
        guard: MutationGuard,
        sends: AtomicUsize,
        open: Semaphore,
        metrics: Arc<Metrics>,
    }

    impl Harness {
        fn new() -> Self {
            let metrics = Arc::new(Metrics::default());
            Self {
                guard: MutationGuard::new(&CacheSettings::default(), metrics.clone()),
                sends: AtomicUsize::new(0),
                open: Semaphore::new(0),
                metrics,
            }
        }

        async fn run(
            &self,
            key: MutationKey,
            answer: Result<AuthorizationProtocol, UpstreamError>,
        ) -> Result<AuthorizationProtocol, UpstreamError> {
            self.guard
                .run(key, || async {
                    self.sends.fetch_add(1, Ordering::SeqCst);
                    drop(self.open.acquire().await);
                    answer
                })
                .await
        }

        /// Lets every send held so far answer, once the sends polled before it are waiting.
        async fn release(&self) {
            tokio::task::yield_now().await;
            self.open.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    #[tokio::test]
    async fn identical_keys_in_flight_share_one_send() {
        let h = Harness::new();

        let (first, second, ()) = tokio::join!(
            h.run(attachments("staff"), Ok(protocol())),
            h.run(attachments("staff"), Ok(protocol())),
            h.release(),
        );

        assert_eq!(first.unwrap(), second.unwrap());
        assert_eq!(h.sends.load(Ordering::SeqCst), 1);
        assert_eq!(h.metrics.snapshot().mutations_deduplicated, 1);
    }

    #[tokio::test]
    async fn an_identical_key_after_a_success_gets_that_answer_without_a_send() {
        let h = Harness::new();
        h.release().await;

        h.run(attachments("staff"), Ok(protocol())).await.unwrap();
        h.run(attachments("staff"), Ok(protocol())).await.unwrap();

        assert_eq!(h.sends.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn different_callers_with_the_same_input_send_separately() {
        let h = Harness::new();

        let (first, second, ()) = tokio::join!(
            h.run(attachments("beneficiary-a"), Ok(protocol())),
            h.run(attachments("beneficiary-b"), Ok(protocol())),
            h.release(),
        );

        assert!(first.is_ok() && second.is_ok());
        assert_eq!(h.sends.load(Ordering::SeqCst), 2);
        assert_eq!(h.metrics.snapshot().mutations_deduplicated, 0);
    }

    #[tokio::test]
    async fn different_inputs_send_separately() {
        let h = Harness::new();
        h.release().await;
        let mut other = attachments("staff");
        other.input = MutationInput::Attachments {
            protocol: "41750520230601000030".into(),
            hrefs: vec!["https://files.example/laudo.pdf".into()],
        };

        h.run(attachments("staff"), Ok(protocol())).await.unwrap();
        h.run(other, Ok(protocol())).await.unwrap();

        assert_eq!(h.sends.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failure_is_not_remembered() {
        let h = Harness::new();
        h.release().await;
        let refused = UpstreamError::new(Service::Totvs, UpstreamErrorKind::Unavailable);

        h.run(attachments("staff"), Err(refused)).await.unwrap_err();
        h.run(attachments("staff"), Ok(protocol())).await.unwrap();

        assert_eq!(h.sends.load(Ordering::SeqCst), 2);
    }
}
