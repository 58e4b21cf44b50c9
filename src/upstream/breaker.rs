//! A circuit breaker per upstream, so that an upstream that is down costs callers nothing but a
//! fast `UPSTREAM_UNAVAILABLE` (or a stale cached answer) instead of a timeout each, and the
//! upstream gets room to recover instead of a queue of retries.
//!
//! Closed, it counts consecutive failed calls (connection error, timeout, 5xx, malformed or
//! oversized answer); a call the upstream answered (a 4xx included: the upstream is up and
//! judging the request) resets the count. After `failures_to_open` of them it opens: calls
//! fail without being sent for `cooldown`. Then the first call is let through as a probe while
//! every other one still fails fast; the probe's success closes the breaker, its failure opens
//! it for another cooldown.
//!
//! Time is read from a [`Clock`], so tests cross the cooldown without sleeping.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::clock::Clock;
use crate::{metrics::Metrics, model::Service};

/// Where a breaker stands, for metrics and readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the cooldown ends.
    Open,
    /// The cooldown ended: the next call (or the one in flight) is the probe.
    HalfOpen,
}

/// What one admitted call says about the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The upstream answered usably, whatever the answer (a 4xx included).
    Success,
    /// No usable answer: a connection error, a timeout, a 5xx, a malformed or oversized body.
    Failure,
}

impl Outcome {
    /// What an answer's status says: only a 5xx is the upstream failing. A 4xx (429 included)
    /// is the upstream up and judging the request.
    pub(crate) fn of_status(status: u16) -> Self {
        if (500..600).contains(&status) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

pub(crate) struct Breaker {
    service: Service,
    failures_to_open: u32,
    cooldown: Duration,
    clock: Clock,
    metrics: Arc<Metrics>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
enum Inner {
    /// `epoch` tells this closed spell from earlier ones: a call admitted before the breaker
    /// last opened says nothing about the upstream since it closed again.
    Closed { failures: u32, epoch: u64 },
    /// Calls fail fast until `until`; the first one after it is the probe.
    Open { until: Instant, epoch: u64 },
    /// The probe is in flight; every other call fails fast.
    Probing { epoch: u64 },
}

impl Breaker {
    pub(crate) fn new(
        service: Service,
        failures_to_open: u32,
        cooldown: Duration,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            service,
            // Zero would open on no failure at all; config refuses it, this keeps it harmless.
            failures_to_open: failures_to_open.max(1),
            cooldown,
            clock,
            metrics,
            inner: Mutex::new(Inner::Closed {
                failures: 0,
                epoch: 0,
            }),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until, .. } if self.clock.now() < until => BreakerState::Open,
            Inner::Open { .. } | Inner::Probing { .. } => BreakerState::HalfOpen,
        }
    }

    /// Lets a call through, or `None` when it must fail fast without being sent.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admission> {
        let mut inner = self.lock();
        let (probe, epoch) = match *inner {
            Inner::Closed { epoch, .. } => (false, epoch),
            Inner::Open { until, epoch } if self.clock.now() >= until => {
                *inner = Inner::Probing { epoch };
                info!(
                    service = self.service.as_str(),
                    "circuit breaker lets a probe through"
                );
                (true, epoch)
            }
            Inner::Open { .. } | Inner::Probing { .. } => {
                drop(inner);
                self.metrics.breaker_rejected(self.service);
                return None;
            }
        };
        Some(Admission {
            breaker: self.clone(),
            probe,
            epoch,
            settled: false,
        })
    }

    fn settle(&self, probe: bool, admitted_in: u64, outcome: Outcome) {
        let mut inner = self.lock();
        match (&mut *inner, outcome) {
            (Inner::Probing { epoch }, Outcome::Success) if probe => {
                let epoch = epoch.wrapping_add(1);
                *inner = Inner::Closed { failures: 0, epoch };
                self.metrics.breaker_closed(self.service);
                info!(service = self.service.as_str(), "circuit breaker closed");
            }
            (Inner::Probing { epoch }, Outcome::Failure) if probe => {
                let epoch = *epoch;
                self.open(&mut inner, epoch);
            }
            (Inner::Closed { failures, epoch }, outcome) if !probe && *epoch == admitted_in => {
                match outcome {
                    Outcome::Success => *failures = 0,
                    Outcome::Failure => {
                        *failures = failures.saturating_add(1);
                        if *failures >= self.failures_to_open {
                            let epoch = *epoch;
                            self.open(&mut inner, epoch);
                        }
                    }
                }
            }
            // A call admitted before the breaker last changed state: stale news.
            _ => {}
        }
    }

    fn open(&self, inner: &mut Inner, epoch: u64) {
        let now = self.clock.now();
        *inner = Inner::Open {
            until: now.checked_add(self.cooldown).unwrap_or(now),
            epoch,
        };
        self.metrics.breaker_opened(self.service);
        warn!(
            service = self.service.as_str(),
            cooldown_ms = u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX),
            "circuit breaker opened"
        );
    }

    /// The probe ended without an outcome (its request was cancelled): that says nothing about
    /// the upstream, so the next call probes instead.
    fn abandon_probe(&self) {
        let mut inner = self.lock();
        if let Inner::Probing { epoch } = *inner {
            *inner = Inner::Open {
                until: self.clock.now(),
                epoch,
            };
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is a plain value, valid whatever a panicking holder was doing.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A call the breaker let through; it must report how the call went.
pub(crate) struct Admission {
    breaker: Arc<Breaker>,
    probe: bool,
    epoch: u64,
    settled: bool,
}

impl Admission {
    pub(crate) fn settle(mut self, outcome: Outcome) {
        self.settled = true;
        self.breaker.settle(self.probe, self.epoch, outcome);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.abandon_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(5);

    fn breaker() -> (Arc<Breaker>, Clock, Arc<Metrics>) {
        let clock = Clock::manual();
        let metrics = Arc::new(Metrics::default());
        let breaker = Breaker::new(Service::Totvs, 5, COOLDOWN, clock.clone(), metrics.clone());
        (Arc::new(breaker), clock, metrics)
    }

    fn call(breaker: &Arc<Breaker>, outcome: Outcome) {
        breaker.admit().expect("admitted").settle(outcome);
    }

    /// Opens the breaker with `failures` consecutive failures.
    fn opened(failures: u32) -> (Arc<Breaker>, Clock, Arc<Metrics>) {
        let (breaker, clock, metrics) = breaker();
        for _ in 0..failures {
            call(&breaker, Outcome::Failure);
        }
        (breaker, clock, metrics)
    }

    #[test]
    fn it_opens_after_the_configured_consecutive_failures_and_not_before() {
        let (breaker, _clock, metrics) = opened(4);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(!metrics.snapshot().totvs_breaker_open);

        call(&breaker, Outcome::Failure);

        assert_eq!(breaker.state(), BreakerState::Open);
        let counts = metrics.snapshot();
        assert!(counts.totvs_breaker_open);
        assert_eq!(counts.totvs_breaker_opened, 1);
    }

    #[test]
    fn a_success_restarts_the_count_of_consecutive_failures() {
        let (breaker, ..) = opened(4);

        call(&breaker, Outcome::Success);
        for _ in 0..4 {
            call(&breaker, Outcome::Failure);
        }

        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn open_it_fails_fast_until_the_cooldown_ends() {
        let (breaker, clock, metrics) = opened(5);

        assert!(breaker.admit().is_none());
        clock.advance(COOLDOWN - Duration::from_millis(1));
        assert!(breaker.admit().is_none());
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(metrics.snapshot().totvs_breaker_rejected, 2);

        clock.advance(Duration::from_millis(1));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(breaker.admit().is_some());
    }

    #[test]
    fn half_open_it_lets_exactly_one_probe_through_while_others_fail_fast() {
        let (breaker, clock, _metrics) = opened(5);
        clock.advance(COOLDOWN);

        let probe = breaker.admit().expect("the probe");
        let others: Vec<_> = (0..10).map(|_| breaker.admit()).collect();

        assert!(others.iter().all(Option::is_none));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        drop(probe);
    }

    #[test]
    fn a_successful_probe_closes_it() {
        let (breaker, clock, metrics) = opened(5);
        clock.advance(COOLDOWN);

        call(&breaker, Outcome::Success);

        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(!metrics.snapshot().totvs_breaker_open);
        // Closed afresh: it takes the full count again to open.
        for _ in 0..4 {
            call(&breaker, Outcome::Failure);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_it_for_another_cooldown() {
        let (breaker, clock, metrics) = opened(5);
        clock.advance(COOLDOWN);

        call(&breaker, Outcome::Failure);

        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.admit().is_none());
        assert_eq!(metrics.snapshot().totvs_breaker_opened, 2);
        clock.advance(COOLDOWN - Duration::from_millis(1));
        assert!(breaker.admit().is_none());
        clock.advance(Duration::from_millis(1));
        assert!(breaker.admit().is_some());
    }

    #[test]
    fn only_a_5xx_status_is_a_failure() {
        for status in [200, 201, 204, 400, 401, 403, 404, 406, 409, 422, 429, 499] {
            assert_eq!(Outcome::of_status(status), Outcome::Success, "{status}");
        }
        for status in [500, 502, 503, 504, 599] {
            assert_eq!(Outcome::of_status(status), Outcome::Failure, "{status}");
        }
    }

    #[test]
    fn a_4xx_never_opens_it_and_counts_as_a_success() {
        let (breaker, clock, _metrics) = opened(4);
        for _ in 0..100 {
            call(&breaker, Outcome::of_status(404));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        for _ in 0..4 {
            call(&breaker, Outcome::Failure);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);

        // A 4xx probe closes it too: the upstream answered.
        call(&breaker, Outcome::Failure);
        clock.advance(COOLDOWN);
        call(&breaker, Outcome::of_status(400));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_cancelled_probe_lets_the_next_call_probe() {
        let (breaker, clock, _metrics) = opened(5);
        clock.advance(COOLDOWN);

        drop(breaker.admit().expect("the probe"));

        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        call(&breaker, Outcome::Success);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn calls_admitted_before_it_opened_do_not_count_once_it_closed_again() {
        let (breaker, clock, _metrics) = opened(0);
        let late: Vec<_> = (0..5).map(|_| breaker.admit().unwrap()).collect();
        for _ in 0..5 {
            call(&breaker, Outcome::Failure);
        }
        clock.advance(COOLDOWN);
        call(&breaker, Outcome::Success);

        for admission in late {
            admission.settle(Outcome::Failure);
        }

        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_success_admitted_before_it_opened_does_not_close_it() {
        let (breaker, _clock, _metrics) = opened(0);
        let early = breaker.admit().unwrap();
        for _ in 0..5 {
            call(&breaker, Outcome::Failure);
        }

        early.settle(Outcome::Success);

        assert_eq!(breaker.state(), BreakerState::Open);
    }
}
