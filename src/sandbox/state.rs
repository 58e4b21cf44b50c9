//! State shared by the handlers of both upstreams: call counters, issued tokens, the datasets
//! (TOTVS' is mutable), the configured latency and the slow-answer demo.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::SandboxOptions;
use super::mosia_data::{MosiaBeneficiary, mosia_seed};
use super::totvs::{Refusal, totvs_error};
use super::totvs_data::Totvs;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) mosia: AtomicU64,
    pub(super) totvs_token: AtomicU64,
    pub(super) totvs_protocols: AtomicU64,
    pub(super) totvs_interactions: AtomicU64,
    pub(super) totvs_attachments: AtomicU64,
    pub(super) totvs_requests: AtomicU64,
}

/// Issued tokens and when they stop working.
#[derive(Default)]
struct Tokens {
    access: HashMap<String, Instant>,
    refresh: HashMap<String, Instant>,
}

/// Process-wide so that a token issued by one sandbox never works on another.
static TOKEN_SEQ: AtomicU64 = AtomicU64::new(1);
const REFRESH_TTL: Duration = Duration::from_secs(24 * 3600);
const SLOW_ANSWER: Duration = Duration::from_secs(30);
/// How late tokio's millisecond timer may fire: the part of a delay it is not trusted with.
const COARSE_TIMER: Duration = Duration::from_millis(3);

pub(super) struct Shared {
    latency: Duration,
    token_ttl_secs: u64,
    pub(super) calls: Counters,
    tokens: RwLock<Tokens>,
    pub(super) mosia: HashMap<String, MosiaBeneficiary>,
    totvs: RwLock<Totvs>,
    stop: watch::Receiver<bool>,
}

impl Shared {
    pub(super) fn new(options: &SandboxOptions, stop: watch::Receiver<bool>) -> Shared {
        Shared {
            latency: options.latency,
            token_ttl_secs: if options.token_ttl_secs == 0 {
                3600
            } else {
                options.token_ttl_secs
            },
            calls: Counters::default(),
            tokens: RwLock::new(Tokens::default()),
            mosia: mosia_seed(),
            totvs: RwLock::new(Totvs::seed()),
            stop,
        }
    }

    pub(super) async fn delay(&self) {
        if self.latency.is_zero() {
            return;
        }
        // tokio's timer counts whole milliseconds and its wake-up rounds up again, so a plain
        // sleep(20 ms) ends anywhere from 20 to 22 ms later, by the phase of the request to the
        // timer's tick: a request that crossed a gateway lands in another phase than one sent
        // straight, and the benchmark's cold rows showed that tick as the gateway's cost. The
        // last stretch is slept on a blocking thread, whose timer has microseconds.
        let deadline = Instant::now() + self.latency;
        tokio::time::sleep(self.latency.saturating_sub(COARSE_TIMER)).await;
        let rest = deadline.saturating_duration_since(Instant::now());
        if !rest.is_zero() {
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
        }
    }

    /// The slow-upstream demo; `false` when the sandbox shut down meanwhile.
    pub(super) async fn slow(&self) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(SLOW_ANSWER) => true,
            _ = stop.wait_for(|stopped| *stopped) => false,
        }
    }

    pub(super) fn issue_tokens(&self) -> Value {
        let n = TOKEN_SEQ.fetch_add(1, Ordering::Relaxed);
        let access = format!("sandbox-access-{n}");
        let refresh = format!("sandbox-refresh-{n}");
        let now = Instant::now();
        {
            let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
            tokens.access.retain(|_, expiry| *expiry > now);
            tokens.refresh.retain(|_, expiry| *expiry > now);
            tokens.access.insert(
                access.clone(),
                now + Duration::from_secs(self.token_ttl_secs),
            );
            tokens.refresh.insert(refresh.clone(), now + REFRESH_TTL);
        }
        // Same keys as fixtures/totvs/token.201.json.
        json!({
            "access_token": access,
            "refresh_token": refresh,
            "scope": "default",
            "token_type": "Bearer",
            "expires_in": self.token_ttl_secs,
            "hasMFA": false,
        })
    }

    /// Refresh tokens work once.
    pub(super) fn redeem_refresh_token(&self, token: &str) -> bool {
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        tokens
            .refresh
            .remove(token)
            .is_some_and(|expiry| expiry > Instant::now())
    }

    pub(super) fn check_bearer(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let valid = token.is_some_and(|token| {
            let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
            tokens
                .access
                .get(token)
                .is_some_and(|expiry| *expiry > Instant::now())
        });
        if valid {
            Ok(())
        } else {
            Err(totvs_error(
                StatusCode::UNAUTHORIZED,
                "401",
                "Token inválido ou expirado",
                "O access_token informado no cabeçalho Authorization não é válido ou expirou; solicite um novo token.",
            ))
        }
    }

    pub(super) fn read_totvs(&self) -> std::sync::RwLockReadGuard<'_, Totvs> {
        self.totvs.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn write_totvs(&self) -> std::sync::RwLockWriteGuard<'_, Totvs> {
        self.totvs.write().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) type AppState = State<Arc<Shared>>;

pub(super) fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
