//! The time that lifetimes are measured by: the cache's freshness, stale window and change
//! marks, and the TOTVS token's renewal.
//!
//! moka keeps its own clock, which a test can only mock behind an internal feature; so the
//! cache stamps each entry and each change with this clock and decides at read time. In tests
//! it moves only when told, so a lifetime is crossed without sleeping.

use std::time::{Duration, Instant};

#[cfg(test)]
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    #[default]
    System,
    /// Starts at its creation and moves only by [`Clock::advance`].
    #[cfg(test)]
    Manual {
        start: Instant,
        elapsed_nanos: Arc<AtomicU64>,
    },
}

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            #[cfg(test)]
            Clock::Manual {
                start,
                elapsed_nanos,
            } => *start + Duration::from_nanos(elapsed_nanos.load(Ordering::SeqCst)),
        }
    }

    /// How long ago `earlier` was; zero for a moment not yet reached.
    pub(crate) fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

#[cfg(test)]
impl Clock {
    pub(crate) fn manual() -> Self {
        Clock::Manual {
            start: Instant::now(),
            elapsed_nanos: Arc::default(),
        }
    }

    /// Moves a manual clock (and every clone of it) forward.
    pub(crate) fn advance(&self, by: Duration) {
        match self {
            Clock::System => panic!("only a manual clock can be advanced"),
            Clock::Manual { elapsed_nanos, .. } => {
                let nanos = u64::try_from(by.as_nanos()).expect("a test-sized duration");
                elapsed_nanos.fetch_add(nanos, Ordering::SeqCst);
            }
        }
    }
}
