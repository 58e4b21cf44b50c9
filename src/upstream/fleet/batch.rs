//! The checks of concurrent reads, sent together: the reads of one DataLoader batch (and of
//! any request running at the same moment) share one pipelined round trip instead of one each.

use std::sync::{Arc, Mutex, PoisonError};

use redis::{Value, aio::ConnectionManager, from_redis_value};
use tokio::sync::oneshot;

use super::{Fleet, keys};

/// What one read asks of its check: the marks (by key name), and the shared value's key.
struct Request {
    marks: Vec<String>,
    value: Option<String>,
    reply: oneshot::Sender<Option<Answer>>,
}

/// Redis's answer to one read's check.
pub(super) struct Answer {
    pub now_us: u64,
    pub epoch: Option<String>,
    pub marks: Vec<Option<String>>,
    pub value: Option<Vec<u8>>,
}

/// The checks waiting for the next round trip, and whether one is on its way to Redis.
#[derive(Default)]
pub(super) struct Batches {
    waiting: Vec<Request>,
    flushing: bool,
}

impl Fleet {
    /// Redis's time, the epoch, `marks` and the value at `value`, in the next round trip that
    /// concurrent reads share; `None` when Redis did not answer.
    pub(super) async fn batched(
        &self,
        marks: Vec<String>,
        value: Option<String>,
    ) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        let flush = {
            let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
            batches.waiting.push(Request {
                marks,
                value,
                reply,
            });
            !std::mem::replace(&mut batches.flushing, true)
        };
        if flush {
            // A task of its own, so that a read cancelled mid-way (its request's deadline)
            // never strands the others waiting in its batch.
            let fleet = self.me.upgrade()?;
            tokio::spawn(async move { fleet.flush().await });
        }
        answer.await.ok().flatten()
    }

    async fn flush(self: Arc<Self>) {
        // The reads polled alongside the first one queue up meanwhile.
        tokio::task::yield_now().await;
        let requests = {
            let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
            batches.flushing = false;
            std::mem::take(&mut batches.waiting)
        };
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").cmd("MGET").arg(keys::EPOCH);
        for request in &requests {
            if !request.marks.is_empty() {
                pipe.cmd("MGET").arg(&request.marks);
            }
            if let Some(value) = &request.value {
                pipe.cmd("GET").arg(value);
            }
        }
        let pipe = &pipe;
        let answers = self
            .run("check", move |mut conn: ConnectionManager| async move {
                pipe.query_async::<Vec<Value>>(&mut conn).await
            })
            .await;
        let mut answers = answers.map(Vec::into_iter);
        let head = answers.as_mut().and_then(|answers| {
            let (secs, micros): (u64, u64) = from_redis_value(answers.next()?).ok()?;
            let (epoch,): (Option<String>,) = from_redis_value(answers.next()?).ok()?;
            Some((secs.saturating_mul(1_000_000).saturating_add(micros), epoch))
        });
        for request in requests {
            let answer = match (&head, answers.as_mut()) {
                (Some((now_us, epoch)), Some(answers)) => {
                    let marks = if request.marks.is_empty() {
                        Some(Vec::new())
                    } else {
                        answers
                            .next()
                            .and_then(|marks| from_redis_value::<Vec<Option<String>>>(marks).ok())
                            .filter(|marks| marks.len() == request.marks.len())
                    };
                    let value = match request.value {
                        Some(_) => answers
                            .next()
                            .and_then(|value| from_redis_value::<Option<Vec<u8>>>(value).ok()),
                        None => Some(None),
                    };
                    marks.zip(value).map(|(marks, value)| Answer {
                        now_us: *now_us,
                        epoch: epoch.clone(),
                        marks,
                        value,
                    })
                }
                _ => None,
            };
            // A read that stopped waiting dropped its receiver; nothing to tell it.
            let _ = request.reply.send(answer);
        }
    }
}

/// Keeps the pending checks of one replica.
pub(super) type Queue = Mutex<Batches>;
