//! The shared answers: the per-read check of epoch and marks, values, leases, and the marks a
//! mutation records.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use redis::aio::ConnectionManager;

use super::{Fleet, Mark, keys};

/// Which fetch an entry came from, by the fleet's one clock (Redis's): the epoch and the Redis
/// time, in microseconds, taken before its upstream call started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub epoch: Arc<str>,
    pub at_us: u64,
}

/// What one read learned from Redis in its check: the epoch, Redis's time, the marks it asked
/// for and, when it had no local entry, the shared value.
#[derive(Debug)]
pub(crate) struct View {
    pub epoch: Arc<str>,
    pub now_us: u64,
    /// When the check answered, by the cache's clock: Redis ages become local instants from it.
    pub taken: Instant,
    marks: HashMap<Mark, u64>,
    pub value: Option<Vec<u8>>,
}

impl View {
    /// A view as a check would have answered it.
    #[cfg(test)]
    pub(crate) fn answered(epoch: &str, now_us: u64, marks: &[(Mark, u64)]) -> View {
        View {
            epoch: Arc::from(epoch),
            now_us,
            taken: Instant::now(),
            marks: marks.iter().cloned().collect(),
            value: None,
        }
    }

    /// A copy to add marks to, without the shared value.
    pub(crate) fn without_value(&self) -> View {
        View {
            epoch: self.epoch.clone(),
            now_us: self.now_us,
            taken: self.taken,
            marks: self.marks.clone(),
            value: None,
        }
    }

    /// The stamp of a fetch starting now.
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp {
            epoch: self.epoch.clone(),
            at_us: self.now_us,
        }
    }

    /// The marks of `deps` this view did not fetch.
    pub(crate) fn missing(&self, deps: &[Mark]) -> Vec<Mark> {
        deps.iter()
            .filter(|mark| !self.marks.contains_key(*mark))
            .cloned()
            .collect()
    }

    /// Whether an entry stamped `stamp` shows every change to `deps` this view knows of: same
    /// epoch, and fetched after each mark. An entry fetched while Redis was out of reach has no
    /// stamp and cannot show that. Marks this view did not fetch count as absent.
    pub(crate) fn allows(&self, stamp: Option<&Stamp>, deps: &[Mark]) -> bool {
        let Some(stamp) = stamp else {
            return false;
        };
        stamp.epoch == self.epoch
            && deps
                .iter()
                .all(|mark| self.marks.get(mark).is_none_or(|&at| at < stamp.at_us))
    }
}

/// The outcome of asking for a cold miss's lease.
pub(crate) enum LeaseOutcome {
    Acquired(Lease),
    /// Another replica is fetching.
    Held,
    /// Redis did not answer: fetch without one.
    Unavailable,
}

/// A lease this replica holds; released (only if still its own) when its value is published.
pub(crate) struct Lease {
    token: String,
}

/// The Redis keys of one cached resource.
pub(crate) struct Slot {
    value: String,
    lease: String,
}

impl Slot {
    /// `material` is a canonical encoding of the cache key.
    pub(crate) fn new(material: &[u8]) -> Self {
        Self {
            value: keys::key("val", material),
            lease: keys::key("lease", material),
        }
    }
}

/// Sets the value (unless empty) and releases the lease if it is still the caller's.
static PUBLISH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if ARGV[1] ~= '' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
",
    )
});

/// Stamps every key with Redis's clock, so that all replicas compare against one clock.
static MARK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local us = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
for _, key in ipairs(KEYS) do redis.call('SET', key, us, 'PX', ARGV[1]) end
return us
",
    )
});

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Fleet {
    /// The check a read makes before serving a local entry: Redis's time, the epoch, the
    /// marks of `deps`, and the shared value of `slot` when given, in one round trip shared
    /// with the reads running at the same moment. `None` while the tier is degraded: the read
    /// then follows the single-process rules.
    pub(crate) async fn check(
        &self,
        deps: &[Mark],
        slot: Option<&Slot>,
        taken: impl FnOnce() -> Instant,
    ) -> Option<View> {
        if !self.is_up() {
            return None;
        }
        let marks = deps.iter().map(Mark::key).collect();
        let answer = self
            .batched(marks, slot.map(|slot| slot.value.clone()))
            .await?;
        let taken = taken();
        let epoch = match answer.epoch {
            Some(epoch) => Arc::from(epoch),
            None => self.read_or_create_epoch(false).await?,
        };
        let epoch = self.adopt_epoch(epoch);
        Some(View {
            epoch,
            now_us: answer.now_us,
            taken,
            marks: deps
                .iter()
                .cloned()
                .zip(answer.marks)
                .map(mark_time)
                .collect(),
            value: answer
                .value
                .filter(|bytes| bytes.len() <= self.max_value_bytes),
        })
    }

    /// Fetches the marks of `deps` that `view` lacks; false when Redis did not answer.
    pub(crate) async fn complete(&self, view: &mut View, deps: &[Mark]) -> bool {
        let missing = view.missing(deps);
        if missing.is_empty() {
            return true;
        }
        let names: Vec<String> = missing.iter().map(Mark::key).collect();
        let mget = redis::cmd("MGET").arg(names).clone();
        let mget = &mget;
        let Some(found) = self
            .run("marks", move |mut conn: ConnectionManager| async move {
                mget.query_async::<Vec<Option<String>>>(&mut conn).await
            })
            .await
        else {
            return false;
        };
        if found.len() != missing.len() {
            return false;
        }
        view.marks
            .extend(missing.into_iter().zip(found).map(mark_time));
        true
    }

    /// Asks for the lease of a cold miss.
    pub(crate) async fn lease(&self, slot: &Slot) -> LeaseOutcome {
        let token = format!("{:016x}", fastrand::u64(..));
        let ttl = millis(self.lease_ttl);
        let set = redis::cmd("SET")
            .arg(&slot.lease)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl)
            .clone();
        let set = &set;
        let acquired = self
            .run("lease", move |mut conn: ConnectionManager| async move {
                set.query_async::<Option<String>>(&mut conn).await
            })
            .await;
        match acquired {
            Some(Some(_)) => LeaseOutcome::Acquired(Lease { token }),
            Some(None) => LeaseOutcome::Held,
            None => LeaseOutcome::Unavailable,
        }
    }

    /// The shared value and whether a lease is still held; `None` when Redis did not answer.
    pub(crate) async fn poll(&self, slot: &Slot) -> Option<(Option<Vec<u8>>, bool)> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET")
            .arg(&slot.value)
            .cmd("EXISTS")
            .arg(&slot.lease);
        let pipe = &pipe;
        let (value, leased) = self
            .run("poll", move |mut conn: ConnectionManager| async move {
                pipe.query_async::<(Option<Vec<u8>>, bool)>(&mut conn).await
            })
            .await?;
        Some((
            value.filter(|bytes| bytes.len() <= self.max_value_bytes),
            leased,
        ))
    }

    /// How long a replica waits for another one's fetch before fetching itself.
    pub(crate) fn wait_for_value(&self) -> Duration {
        self.wait_for_value
    }

    /// Stores `payload` for `ttl` (nothing when `None`, too big or expired) and releases
    /// `lease`. A write Redis does not take is dropped.
    pub(crate) async fn publish(
        &self,
        slot: &Slot,
        payload: Option<Vec<u8>>,
        ttl: Duration,
        lease: Option<Lease>,
    ) {
        let payload = payload
            .filter(|bytes| bytes.len() <= self.max_value_bytes && ttl >= Duration::from_millis(1))
            .unwrap_or_default();
        let token = lease.map(|lease| lease.token).unwrap_or_default();
        if payload.is_empty() && token.is_empty() {
            return;
        }
        let ttl = millis(ttl);
        let mut invocation = PUBLISH.prepare_invoke();
        invocation
            .key(&slot.value)
            .key(&slot.lease)
            .arg(payload)
            .arg(ttl)
            .arg(token);
        let invocation = &invocation;
        self.run("publish", move |mut conn: ConnectionManager| async move {
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await;
    }

    /// Records that a mutation changed `marks`, before the mutating replica answers. While
    /// Redis is out of reach they are kept and recorded when it answers again.
    pub(crate) async fn record_change(&self, marks: Vec<Mark>) {
        if marks.is_empty() {
            return;
        }
        if !self.record_marks(&marks, false).await {
            tracing::warn!(
                count = marks.len(),
                "could not record a change in redis; other replicas may serve older answers until it is back"
            );
            self.keep_marks(marks);
        }
    }

    pub(super) async fn record_marks(&self, marks: &[Mark], anyway: bool) -> bool {
        let mut invocation = MARK.prepare_invoke();
        for mark in marks {
            invocation.key(mark.key());
        }
        invocation.arg(millis(self.mark_ttl));
        let invocation = &invocation;
        let command = move |mut conn: ConnectionManager| async move {
            invocation.invoke_async::<String>(&mut conn).await
        };
        if anyway {
            self.run_anyway("mark", command).await.is_some()
        } else {
            self.run("mark", command).await.is_some()
        }
    }
}

/// A mark's time; one that does not parse counts as a change at the end of time, so that an
/// entry depending on it is never served (until the mark expires).
fn mark_time((mark, found): (Mark, Option<String>)) -> (Mark, u64) {
    let at = match found {
        Some(text) => text.parse().unwrap_or(u64::MAX),
        None => 0,
    };
    (mark, at)
}
