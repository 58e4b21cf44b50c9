//! Token buckets: one per caller (`sub`) and one per client network that only failed
//! authentications draw from.
//!
//! The caller bucket keeps one token (or one runaway client) from taking the upstreams' whole
//! capacity; the failed-authentication bucket slows down token guessing and garbage floods
//! without ever refusing a request that carries a valid token.
//!
//! With a fleet tier (`REDIS_URL`) the buckets live in Redis, so a quota holds across
//! replicas; while Redis is slow or down the local buckets below decide.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

use crate::{
    config::{ConfigError, RateLimitSettings},
    upstream::fleet::{Fleet, Rate},
};

impl RateLimitSettings {
    /// Refuses a zero, which would make a bucket that never fills; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.quotas().map(|_| ())
    }

    fn quotas(&self) -> Result<(Quota, Quota), ConfigError> {
        let positive = |name: &'static str, value: u32| {
            NonZeroU32::new(value).ok_or(ConfigError::Invalid {
                name,
                reason: "must be greater than 0".into(),
            })
        };
        let caller = Quota::per_second(positive(
            "rate_limit.per_caller_per_sec",
            self.per_caller_per_sec,
        )?)
        .allow_burst(positive(
            "rate_limit.per_caller_burst",
            self.per_caller_burst,
        )?);
        let failed_auth = Quota::per_second(positive(
            "rate_limit.failed_auth_per_ip_per_sec",
            self.failed_auth_per_ip_per_sec,
        )?)
        .allow_burst(positive(
            "rate_limit.failed_auth_per_ip_burst",
            self.failed_auth_per_ip_burst,
        )?);
        Ok((caller, failed_auth))
    }
}

/// Keys whose bucket has filled up again are forgotten after this many checks of a limiter, so
/// memory follows the number of recently active keys rather than every key ever seen.
const SWEEP_EVERY: u64 = 1024;

type KeyedLimiter<K, C> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One keyed limiter and the count of checks since it was last swept.
struct Buckets<K: std::hash::Hash + Eq + Clone, C: Clock> {
    limiter: KeyedLimiter<K, C>,
    checks: AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone, C: Clock> Buckets<K, C> {
    fn new(quota: Quota, clock: C) -> Self {
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota, clock),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            // Never zero, so a Retry-After derived from it is never "now".
            not_until
                .wait_time_from(self.limiter.clock().now())
                .max(Duration::from_millis(1))
        })
    }
}

/// The per-caller and per-IP buckets, shared by every request.
pub(crate) struct RateLimits<C: Clock = DefaultClock> {
    callers: Buckets<Arc<str>, C>,
    failed_auth: Buckets<IpAddr, C>,
    /// The fleet-wide buckets, when replicas share a Redis tier.
    fleet: Option<(Arc<Fleet>, Rate, Rate)>,
}

impl RateLimits<DefaultClock> {
    pub(crate) fn new(settings: &RateLimitSettings) -> Result<Self, ConfigError> {
        Self::with_clock(settings, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Buckets on the given clock (tests pass governor's `FakeRelativeClock`).
    pub(crate) fn with_clock(settings: &RateLimitSettings, clock: C) -> Result<Self, ConfigError> {
        let (caller, failed_auth) = settings.quotas()?;
        Ok(Self {
            callers: Buckets::new(caller, clock.clone()),
            failed_auth: Buckets::new(failed_auth, clock),
            fleet: None,
        })
    }

    /// Buckets shared through the fleet's Redis tier (none: local only).
    pub(crate) fn with_fleet(
        mut self,
        fleet: Option<Arc<Fleet>>,
        settings: &RateLimitSettings,
    ) -> Self {
        self.fleet = fleet.map(|fleet| {
            let caller = Rate {
                per_sec: settings.per_caller_per_sec,
                burst: settings.per_caller_burst,
            };
            let failed_auth = Rate {
                per_sec: settings.failed_auth_per_ip_per_sec,
                burst: settings.failed_auth_per_ip_burst,
            };
            (fleet, caller, failed_auth)
        });
        self
    }

    /// [`Self::check_caller`], fleet-wide when replicas share a Redis tier that answers.
    pub(crate) async fn check_caller_shared(&self, sub: &Arc<str>) -> Result<(), Duration> {
        if let Some((fleet, rate, _)) = &self.fleet
            && let Some(decided) = fleet.take_token("rl:c", sub.as_bytes(), *rate).await
        {
            return decided.map_err(|wait| wait.max(Duration::from_millis(1)));
        }
        self.check_caller(sub)
    }

    /// [`Self::check_failed_auth`], fleet-wide when replicas share a Redis tier that answers.
    pub(crate) async fn check_failed_auth_shared(&self, ip: IpAddr) -> Result<(), Duration> {
        let network = network_of(ip).to_string();
        if let Some((fleet, _, rate)) = &self.fleet
            && let Some(decided) = fleet.take_token("rl:ip", network.as_bytes(), *rate).await
        {
            return decided.map_err(|wait| wait.max(Duration::from_millis(1)));
        }
        self.check_failed_auth(ip)
    }

    /// Draws one token from the caller's bucket; `Err` carries how long until one is available.
    pub(crate) fn check_caller(&self, sub: &Arc<str>) -> Result<(), Duration> {
        // Keyed by the caller's own `Arc`: a check clones nothing, only a new key is stored.
        self.callers.check(sub)
    }

    /// Draws one token from the client's failed-authentication bucket; call it only when
    /// authentication failed. `Err` carries how long until the client may fail again.
    pub(crate) fn check_failed_auth(&self, ip: IpAddr) -> Result<(), Duration> {
        self.failed_auth.check(&network_of(ip))
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one host is routinely given a
/// whole /64, so per-address buckets would be free to multiply), IPv4-mapped IPv6 as IPv4.
fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limits(settings: RateLimitSettings) -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimits::with_clock(&settings, clock.clone()).unwrap(),
            clock,
        )
    }

    fn small() -> RateLimitSettings {
        RateLimitSettings {
            per_caller_per_sec: 2,
            per_caller_burst: 3,
            failed_auth_per_ip_per_sec: 1,
            failed_auth_per_ip_burst: 2,
        }
    }

    #[test]
    fn a_caller_gets_its_burst_then_a_retry_after_then_refills() {
        let (limits, clock) = limits(small());
        for _ in 0..3 {
            limits.check_caller(&"alice".into()).unwrap();
        }
        let wait = limits.check_caller(&"alice".into()).unwrap_err();
        // Two per second: the next token is half a second away.
        assert_eq!(wait, Duration::from_millis(500));
        clock.advance(Duration::from_millis(499));
        assert!(limits.check_caller(&"alice".into()).is_err());
        clock.advance(Duration::from_millis(1));
        limits.check_caller(&"alice".into()).unwrap();
        assert!(limits.check_caller(&"alice".into()).is_err());
    }

    #[test]
    fn callers_are_independent() {
        let (limits, _clock) = limits(small());
        for _ in 0..3 {
            limits.check_caller(&"alice".into()).unwrap();
        }
        assert!(limits.check_caller(&"alice".into()).is_err());
        for _ in 0..3 {
            limits.check_caller(&"bob".into()).unwrap();
        }
        assert!(limits.check_caller(&"bob".into()).is_err());
    }

    #[test]
    fn failed_authentications_have_their_own_bucket_per_ip() {
        let (limits, _clock) = limits(small());
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        limits.check_failed_auth(a).unwrap();
        limits.check_failed_auth(a).unwrap();
        let wait = limits.check_failed_auth(a).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        limits.check_failed_auth(b).unwrap();
        // The caller buckets are untouched by failures.
        for _ in 0..3 {
            limits.check_caller(&"alice".into()).unwrap();
        }
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64_and_mapped_v4_is_v4() {
        let (limits, _clock) = limits(small());
        let one: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let other_in_64: Ipv6Addr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let next_64: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        limits.check_failed_auth(one.into()).unwrap();
        limits.check_failed_auth(other_in_64.into()).unwrap();
        assert!(limits.check_failed_auth(one.into()).is_err());
        limits.check_failed_auth(next_64.into()).unwrap();

        let v4 = Ipv4Addr::new(198, 51, 100, 7);
        limits
            .check_failed_auth(v4.to_ipv6_mapped().into())
            .unwrap();
        limits.check_failed_auth(v4.into()).unwrap();
        assert!(limits.check_failed_auth(v4.into()).is_err());
    }

    #[test]
    fn idle_keys_are_forgotten_so_memory_stays_bounded() {
        let (limits, clock) = limits(small());
        for n in 0..SWEEP_EVERY - 1 {
            limits.check_caller(&format!("caller-{n}").into()).unwrap();
        }
        assert_eq!(limits.callers.limiter.len() as u64, SWEEP_EVERY - 1);
        // Long enough for every bucket to be full again.
        clock.advance(Duration::from_secs(5));
        limits.check_caller(&"last".into()).unwrap();
        assert_eq!(limits.callers.limiter.len(), 1);
    }

    #[test]
    fn a_key_still_drawn_down_survives_a_sweep() {
        let (limits, clock) = limits(small());
        for _ in 0..3 {
            limits.check_caller(&"busy".into()).unwrap();
        }
        clock.advance(Duration::from_millis(600));
        // Enough other checks to trigger a sweep.
        for n in 0..SWEEP_EVERY {
            limits.check_caller(&format!("caller-{n}").into()).unwrap();
        }
        // One token came back in 600 ms; a forgotten bucket would hand out three.
        limits.check_caller(&"busy".into()).unwrap();
        assert!(limits.check_caller(&"busy".into()).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_of_at_least_one() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[test]
    fn settings_have_the_documented_defaults_and_refuse_zero_by_name() {
        let parsed: RateLimitSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, RateLimitSettings::default());
        assert_eq!(
            (
                parsed.per_caller_per_sec,
                parsed.per_caller_burst,
                parsed.failed_auth_per_ip_per_sec,
                parsed.failed_auth_per_ip_burst
            ),
            (200, 400, 20, 100)
        );
        parsed.validate().unwrap();
        assert!(serde_json::from_str::<RateLimitSettings>(r#"{"per_caller": 1}"#).is_err());

        let zero = RateLimitSettings {
            failed_auth_per_ip_burst: 0,
            ..RateLimitSettings::default()
        };
        let err = zero.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "rate_limit.failed_auth_per_ip_burst is invalid: must be greater than 0"
        );
        assert!(RateLimits::new(&zero).is_err());
        let zero = RateLimitSettings {
            per_caller_per_sec: 0,
            ..RateLimitSettings::default()
        };
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .starts_with("rate_limit.per_caller_per_sec ")
        );
    }
}
