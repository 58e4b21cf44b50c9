//! A mutation's double submit across replicas: the first replica to `SET NX` the mutation's
//! key sends it; an identical one on any replica waits for that answer, or gets it from Redis
//! for the dedupe window after.

use std::{sync::LazyLock, time::Duration};

use redis::aio::ConnectionManager;
use serde::{Serialize, de::DeserializeOwned};

use super::{Fleet, keys};

/// Deletes a key only if it still holds the caller's value.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

const DONE: &[u8] = b"d:";

/// What the shared guard decided for one mutation.
enum Claim {
    /// This replica sends; the key holds this pending value.
    Mine(String),
    /// Another replica sent it and this is its answer.
    Answered(Vec<u8>),
    /// Redis could not decide: send, as a single process would.
    Unknown,
}

impl Fleet {
    /// Runs `send` unless an identical mutation (`material`, a canonical encoding of caller and
    /// input) is in flight on another replica or succeeded within `window`: then that answer,
    /// and `true`. Failures are not remembered.
    pub(crate) async fn send_once<T, E, F, Fut>(
        &self,
        material: &[u8],
        window: Duration,
        send: F,
    ) -> (Result<T, E>, bool)
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = keys::key("mut", material);
        match self.claim(&key).await {
            Claim::Answered(bytes) => match serde_json::from_slice(&bytes) {
                Ok(answer) => return (Ok(answer), true),
                Err(_) => tracing::warn!("a shared mutation answer does not decode; sending"),
            },
            Claim::Mine(pending) => {
                let result = send().await;
                self.settle(&key, &pending, result.as_ref().ok(), window)
                    .await;
                return (result, false);
            }
            Claim::Unknown => {}
        }
        (send().await, false)
    }

    async fn claim(&self, key: &str) -> Claim {
        let pending = format!("p:{:016x}", fastrand::u64(..));
        let ttl = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let deadline = tokio::time::Instant::now() + self.lease_ttl + Duration::from_secs(1);
        let mut step = Duration::from_millis(10);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key)
            .arg(&pending)
            .arg("NX")
            .arg("PX")
            .arg(ttl)
            .cmd("GET")
            .arg(key);
        let pipe = &pipe;
        loop {
            let answer = self
                .run("mutation", move |mut conn: ConnectionManager| async move {
                    pipe.query_async::<(Option<String>, Option<Vec<u8>>)>(&mut conn)
                        .await
                })
                .await;
            match answer {
                None => return Claim::Unknown,
                Some((Some(_), _)) => return Claim::Mine(pending),
                Some((None, Some(current))) => {
                    if let Some(done) = current.strip_prefix(DONE) {
                        return Claim::Answered(done.to_vec());
                    }
                }
                // Released between the two commands: ask again at once.
                Some((None, None)) => continue,
            }
            // The holder's lease expires by then, so this only ends a wait on a lost replica.
            if tokio::time::Instant::now() >= deadline {
                return Claim::Unknown;
            }
            tokio::time::sleep(step).await;
            step = (step * 2).min(Duration::from_millis(100));
        }
    }

    /// Keeps a success for the window; releases the key after a failure so a retry is sent.
    async fn settle<T: Serialize>(
        &self,
        key: &str,
        pending: &str,
        success: Option<&T>,
        window: Duration,
    ) {
        let done = success.and_then(|answer| serde_json::to_vec(answer).ok());
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        match done {
            Some(answer) => {
                let mut value = DONE.to_vec();
                value.extend_from_slice(&answer);
                let set = redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(window)
                    .clone();
                let set = &set;
                self.run("mutation", move |mut conn: ConnectionManager| async move {
                    set.query_async::<()>(&mut conn).await
                })
                .await;
            }
            None => {
                let mut release = RELEASE.prepare_invoke();
                release.key(key).arg(pending);
                let release = &release;
                self.run("mutation", move |mut conn: ConnectionManager| async move {
                    release.invoke_async::<i64>(&mut conn).await
                })
                .await;
            }
        }
    }
}
