//! An in-process fake of the two upstreams — Mosia Omnichannel and TOTVS Health Plans —
//! speaking real HTTP and the upstreams' own JSON.
//!
//! It backs `protocol-graph sandbox` (explore the gateway in GraphiQL without credentials),
//! the black-box integration tests and the load benchmark. It deliberately shares no type with
//! the gateway's clients: every body here is built from `serde_json` values or private structs,
//! so a decoding bug in a client cannot hide behind a shared type.
//!
//! Credentials: Mosia `Authorization: sandbox-mosia-token`; TOTVS user `sandbox`, password
//! `sandbox-password` (see [`MOSIA_TOKEN`], [`TOTVS_USERNAME`], [`TOTVS_PASSWORD`]).
//!
//! # Beneficiaries
//!
//! | uniqueKey (Mosia) | subscriberId (TOTVS) | name                     | Mosia protocols                  | TOTVS protocols | TOTVS field style                       |
//! |-------------------|----------------------|--------------------------|----------------------------------|-----------------|-----------------------------------------|
//! | `13331584754`     | `00011008000031015`  | Patrick Oliveira Cabral  | 3 (the documented example)       | 27 (2 pages)    | camelCase (`subscriberId`)              |
//! | `28476190350`     | `00011008000027010`  | Hernandes Alves da Silva | 4                                | 4 (documented)  | seed (`subscriber-_id`), no state field |
//! | `45120987611`     | `00011008000045002`  | Maria Aparecida Souza    | 12 (so `limit: 10` matters)      | 6               | lowercase-hyphen (`subscriber-id`)      |
//! | `73019845620`     | `00011008000045100`  | João Pedro Souza         | 3, 2 opened by his mother Maria  | 5               | snake (`subscriber_id`), `YYYYMMDD`     |
//! | `61234598702`     | `00020015000112003`  | Ana Clara Ferreira Lima  | 0                                | 4               | camelCase                               |
//! | `39857120466`     | —                    | Roberto Nunes Prado      | 5; envelope says `statusCode: 403` | —             | —                                       |
//! | —                 | `00020015000198016`  | Carlos Eduardo Mendes    | —                                | 0               | lowercase-hyphen                        |
//!
//! TOTVS names are upper case (`PATRICK OLIVEIRA CABRAL`); Mosia names sometimes carry the
//! `" - <chaveUnica>"` suffix.
//!
//! TOTVS lists come in storage order unless `order` is given (oldest first, except Hernandes,
//! whose first item is the documented `41750520230601000030`, so that `page=1&pageSize=1`
//! reproduces the documented body exactly). The documented interaction is the whole history of
//! `41750520230601000030` and `41750520230620000004`. Absent optional fields are `""`.
//! Every status appears: 1, 2, 3, 6, 7, 8, 9 and an undocumented `5` (shown as UNKNOWN) on
//! `41750520240415000007` and `41750520240108000035`.
//!
//! # Protocols awaiting a document (status 9) — attach to them to see 9 → 7
//!
//! | subscriberId        | protocols |
//! |---------------------|-----------|
//! | `00011008000027010` | `41750520230620000004` (the documented attachments example) |
//! | `00011008000031015` | `41750520240205000014`, `41750520240401000016`, `41750520240513000001`, `41750520240701000021`, `41750520240722000028` |
//! | `00011008000045002` | `41750520231106000009` |
//! | `00011008000045100` | `41750520240327000038` |
//! | `00020015000112003` | `41750520240516000052` |
//!
//! Attachments are refused (E003) on status 1 and 8, e.g. `41750520230415000012` (Hernandes)
//! or `41750520240115000027` (Patrick). Attaching to a status-9 protocol moves it to 7 and adds
//! a "DOCUMENTO ANEXADO" interaction; creating a request appends a status-7 protocol dated today.
//! State lives as long as the `Sandbox` value.
//!
//! # Failure demos
//!
//! | where | key | answer |
//! |-------|-----|--------|
//! | Mosia `chaveUnica` | `00000000500` | HTTP 500 with an HTML body |
//! | Mosia `chaveUnica` | `00000000000` | HTTP 200, `status: false`, "Falha ao carregar ocorrências" |
//! | Mosia `chaveUnica` | `00000000999` | answers after 30 s (timeouts) |
//! | Mosia `chaveUnica` | `00000000777` | HTTP 200 with truncated JSON |
//! | TOTVS `subscriberId` | `00000000000000500` | HTTP 500 with a plain-text body |
//! | TOTVS `subscriberId` | `00000000000000999` | answers after 30 s |
//! | TOTVS `subscriberId` | `00000000000000777` | HTTP 200 where `items` is a string |
//! | TOTVS attachment `href` | any URL containing `missing` | 400 E007 (download failed) |
//!
//! Unknown Mosia keys answer 200 with `data: []`; unknown TOTVS subscribers and protocols
//! answer the documented 404 bodies.

mod dataset;
mod mosia;
mod mosia_data;
mod server;
mod state;
mod totvs;
mod totvs_data;
mod totvs_reads;
mod totvs_token;
mod totvs_writes;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use self::dataset::BENEFICIARIES;
use self::mosia::mosia_router;
use self::server::serve;
use self::state::Shared;
use self::totvs::totvs_router;

/// Credentials the sandbox accepts.
pub const MOSIA_TOKEN: &str = "sandbox-mosia-token";
pub const TOTVS_USERNAME: &str = "sandbox";
pub const TOTVS_PASSWORD: &str = "sandbox-password";

#[derive(Clone, Debug, Default)]
pub struct SandboxOptions {
    /// Fixed delay added to every response (used by the benchmark), default zero.
    pub latency: Duration,
    /// Lifetime of issued access tokens in seconds (default 3600 when 0).
    pub token_ttl_secs: u64,
    /// Loopback ports of the fake Mosia and TOTVS; 0 picks a free one.
    pub mosia_port: u16,
    pub totvs_port: u16,
}

/// Requests served so far, by route kind (requests refused for auth included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SandboxCalls {
    pub mosia: u64,
    pub totvs_token: u64,
    pub totvs_protocols: u64,
    pub totvs_interactions: u64,
    pub totvs_attachments: u64,
    pub totvs_requests: u64,
}

/// Identifiers worth showing in the banner or a README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxExamples {
    /// A Mosia `chaveUnica` that has protocols.
    pub unique_key: &'static str,
    /// The TOTVS matrícula of the same person.
    pub subscriber_id: &'static str,
    /// A protocol of `subscriber_id` in status 9, ready for `addAuthorizationAttachments`.
    pub protocol_awaiting_document: &'static str,
    /// Every beneficiary of the dataset, with the keys it has on each upstream.
    pub beneficiaries: &'static [SandboxBeneficiary],
}

/// One person of the dataset; a key is `None` where that upstream does not know them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxBeneficiary {
    pub unique_key: Option<&'static str>,
    pub subscriber_id: Option<&'static str>,
    pub name: &'static str,
}

/// The two fake upstreams, served until this value is dropped.
pub struct Sandbox {
    mosia_addr: SocketAddr,
    totvs_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl Sandbox {
    /// Binds two loopback listeners (Mosia, TOTVS) on the ports of `options`, spawns them on
    /// the current tokio runtime, and returns.
    pub async fn start(options: SandboxOptions) -> std::io::Result<Sandbox> {
        let mosia_listener = TcpListener::bind(("127.0.0.1", options.mosia_port)).await?;
        let totvs_listener = TcpListener::bind(("127.0.0.1", options.totvs_port)).await?;
        let mosia_addr = mosia_listener.local_addr()?;
        let totvs_addr = totvs_listener.local_addr()?;

        let (shutdown, stop) = watch::channel(false);
        let shared = Arc::new(Shared::new(&options, stop.clone()));
        tokio::spawn(serve(
            "mosia",
            mosia_listener,
            mosia_router(shared.clone()),
            stop.clone(),
        ));
        tokio::spawn(serve(
            "totvs",
            totvs_listener,
            totvs_router(shared.clone()),
            stop,
        ));
        tracing::info!(mosia = %mosia_addr, totvs = %totvs_addr, "sandbox upstreams listening");
        Ok(Sandbox {
            mosia_addr,
            totvs_addr,
            shared,
            shutdown,
        })
    }

    /// The Mosia base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn mosia_url(&self) -> String {
        format!("http://{}", self.mosia_addr)
    }

    /// The TOTVS REST root, e.g. `http://127.0.0.1:41235/rest` (no trailing slash).
    pub fn totvs_url(&self) -> String {
        format!("http://{}/rest", self.totvs_addr)
    }

    /// Requests served so far, by route kind, for call counting in tests and the benchmark.
    pub fn calls(&self) -> SandboxCalls {
        let c = &self.shared.calls;
        SandboxCalls {
            mosia: c.mosia.load(Ordering::Relaxed),
            totvs_token: c.totvs_token.load(Ordering::Relaxed),
            totvs_protocols: c.totvs_protocols.load(Ordering::Relaxed),
            totvs_interactions: c.totvs_interactions.load(Ordering::Relaxed),
            totvs_attachments: c.totvs_attachments.load(Ordering::Relaxed),
            totvs_requests: c.totvs_requests.load(Ordering::Relaxed),
        }
    }

    /// A few example identifiers for the printed banner / README.
    pub fn examples() -> SandboxExamples {
        SandboxExamples {
            unique_key: "13331584754",
            subscriber_id: "00011008000031015",
            protocol_awaiting_document: "41750520240205000014",
            beneficiaries: BENEFICIARIES,
        }
    }
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("mosia", &self.mosia_url())
            .field("totvs", &self.totvs_url())
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Graceful shutdown closes idle keep-alive connections and wakes the 30 s "slow" demos,
        // so nothing outlives the sandbox for long.
        self.shutdown.send_replace(true);
    }
}
