//! Fleet-wide token buckets: the same GCRA that governor runs locally, run by Redis with its
//! own clock, so that a caller's quota holds across replicas.

use std::{sync::LazyLock, time::Duration};

use redis::aio::ConnectionManager;

use super::{Fleet, keys};

/// GCRA: the bucket is the theoretical arrival time of the next request (µs, Redis's clock).
/// Answers 0 when a token was taken, else how many µs until one is available.
static GCRA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
if tat - now > tolerance then return tat - now - tolerance end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000) + 1)
return 0
",
    )
});

/// A bucket's size, as the governor quota it mirrors: `per_sec` tokens a second, `burst` at
/// once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

impl Fleet {
    /// Takes a token from the fleet-wide bucket `kind` of `id`: `Err` carries the wait until
    /// one is available. `None` when Redis cannot say: the caller's local bucket decides.
    pub(crate) async fn take_token(
        &self,
        kind: &str,
        id: &[u8],
        rate: Rate,
    ) -> Option<Result<(), Duration>> {
        let interval = 1_000_000 / u64::from(rate.per_sec.max(1));
        let tolerance = interval.saturating_mul(u64::from(rate.burst.max(1) - 1));
        let mut invocation = GCRA.prepare_invoke();
        invocation
            .key(keys::key(kind, id))
            .arg(interval.max(1))
            .arg(tolerance);
        let invocation = &invocation;
        let wait_us = self
            .run(
                "rate_limit",
                move |mut conn: ConnectionManager| async move {
                    invocation.invoke_async::<u64>(&mut conn).await
                },
            )
            .await?;
        Some(match wait_us {
            0 => Ok(()),
            wait => Err(Duration::from_micros(wait)),
        })
    }
}
