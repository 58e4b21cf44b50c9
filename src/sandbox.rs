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

use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

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

async fn serve(
    upstream: &'static str,
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    // Small request/response pairs on keep-alive connections: Nagle would only add latency.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::trace!(%error, "could not set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            // An error means the sender is gone, which is a shutdown as well.
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await;
    match result {
        Ok(()) => tracing::debug!(upstream, "sandbox upstream stopped"),
        Err(error) => tracing::warn!(upstream, %error, "sandbox upstream failed"),
    }
}

// ---------------------------------------------------------------------------------------------
// Dataset
// ---------------------------------------------------------------------------------------------

const BENEFICIARIES: &[SandboxBeneficiary] = &[
    person(
        Some("13331584754"),
        Some("00011008000031015"),
        "Patrick Oliveira Cabral",
    ),
    person(
        Some("28476190350"),
        Some("00011008000027010"),
        "Hernandes Alves da Silva",
    ),
    person(
        Some("45120987611"),
        Some("00011008000045002"),
        "Maria Aparecida Souza",
    ),
    person(
        Some("73019845620"),
        Some("00011008000045100"),
        "João Pedro Souza",
    ),
    person(
        Some("61234598702"),
        Some("00020015000112003"),
        "Ana Clara Ferreira Lima",
    ),
    person(Some("39857120466"), None, "Roberto Nunes Prado"),
    person(None, Some("00020015000198016"), "Carlos Eduardo Mendes"),
];

const fn person(
    unique_key: Option<&'static str>,
    subscriber_id: Option<&'static str>,
    name: &'static str,
) -> SandboxBeneficiary {
    SandboxBeneficiary {
        unique_key,
        subscriber_id,
        name,
    }
}

fn beneficiary_by_key(unique_key: &str) -> Option<&'static SandboxBeneficiary> {
    BENEFICIARIES
        .iter()
        .find(|b| b.unique_key == Some(unique_key))
}

// --- Mosia -----------------------------------------------------------------------------------

const MOSIA_FIXTURE: &str = include_str!("../fixtures/mosia/ultimos-protocolos.200.json");
const MOSIA_FIXTURE_KEY: &str = "13331584754";
/// Public examples answer `statusCode: 403` inside a successful envelope; this one does too.
const MOSIA_QUIRKY_403_KEY: &str = "39857120466";

type Code = (i64, &'static str);
const ATIVO: Code = (171, "Atendimento Ativo");
const AUTO: Code = (155, "Auto-atendimento");
const RECEPTIVO: Code = (160, "Atendimento Receptivo");
const OUVIDORIA: Code = (182, "Ouvidoria");
const EM_ATENDIMENTO: Code = (386, "Em Atendimento (externo)");
const REALIZADO: Code = (310, "Realizado");
const ABERTO: Code = (301, "Aberto");
const CANCELADO: Code = (315, "Cancelado");
const AGUARDANDO: Code = (392, "Aguardando Beneficiário");

struct MosiaRow {
    key: &'static str,
    /// Local time in Brazil (UTC-3), `YYYY-MM-DD HH:MM:SS`.
    registered: &'static str,
    /// 0 keeps `data_atualizacao` equal to `data_registro`, as Mosia does for untouched items.
    updated_after_min: i64,
    kind: Code,
    status: Code,
    subject: Option<&'static str>,
    /// Whether names carry the `" - <chaveUnica>"` suffix Mosia sometimes appends.
    suffix: bool,
    /// Someone else opened it (a parent), by unique key.
    requester: Option<&'static str>,
}

const fn mosia(
    key: &'static str,
    registered: &'static str,
    updated_after_min: i64,
    (kind, status): (Code, Code),
    subject: Option<&'static str>,
    suffix: bool,
    requester: Option<&'static str>,
) -> MosiaRow {
    MosiaRow {
        key,
        registered,
        updated_after_min,
        kind,
        status,
        subject,
        suffix,
        requester,
    }
}

const HERNANDES_KEY: &str = "28476190350";
const MARIA_KEY: &str = "45120987611";
const JOAO_KEY: &str = "73019845620";
const ROBERTO_KEY: &str = "39857120466";

#[rustfmt::skip]
const MOSIA_ROWS: &[MosiaRow] = &[
    mosia(HERNANDES_KEY, "2023-04-15 16:30:00", 60, (RECEPTIVO, REALIZADO), Some("Autorização de exame"), false, None),
    mosia(HERNANDES_KEY, "2023-06-01 08:45:50", 0, (AUTO, REALIZADO), None, true, None),
    mosia(HERNANDES_KEY, "2023-06-20 10:02:11", 35, (RECEPTIVO, REALIZADO), Some("Envio de documentos"), true, None),
    mosia(HERNANDES_KEY, "2023-06-21 14:10:07", 1440, (ATIVO, EM_ATENDIMENTO), Some("Autorização de exame"), true, None),
    mosia(MARIA_KEY, "2024-01-09 09:12:40", 25, (RECEPTIVO, REALIZADO), Some("Segunda via de boleto"), true, None),
    mosia(MARIA_KEY, "2024-02-14 15:03:22", 0, (AUTO, REALIZADO), None, false, None),
    mosia(MARIA_KEY, "2024-03-02 11:47:05", 180, (ATIVO, REALIZADO), Some("Autorização de exame"), true, None),
    mosia(MARIA_KEY, "2024-03-28 08:20:13", 0, (AUTO, REALIZADO), Some("Carteirinha digital"), false, None),
    mosia(MARIA_KEY, "2024-04-11 13:55:48", 2880, (RECEPTIVO, CANCELADO), Some("Reembolso consulta"), true, None),
    mosia(MARIA_KEY, "2024-05-06 10:30:31", 45, (RECEPTIVO, REALIZADO), None, true, None),
    mosia(MARIA_KEY, "2024-05-23 17:08:09", 0, (AUTO, REALIZADO), Some("Rede credenciada"), false, None),
    mosia(MARIA_KEY, "2024-06-10 09:41:57", 1440, (OUVIDORIA, REALIZADO), Some("Reclamação de atendimento"), true, None),
    mosia(MARIA_KEY, "2024-06-27 14:16:26", 90, (ATIVO, AGUARDANDO), Some("Envio de documentos"), false, None),
    mosia(MARIA_KEY, "2024-07-03 08:05:44", 0, (AUTO, ABERTO), None, true, None),
    mosia(MARIA_KEY, "2024-07-15 16:22:18", 30, (RECEPTIVO, EM_ATENDIMENTO), Some("Reembolso exame"), true, None),
    mosia(MARIA_KEY, "2024-07-18 11:02:51", 5, (ATIVO, EM_ATENDIMENTO), Some("Autorização de exame"), false, None),
    mosia(JOAO_KEY, "2024-03-27 10:15:00", 60, (RECEPTIVO, REALIZADO), Some("Autorização de exame"), true, Some(MARIA_KEY)),
    mosia(JOAO_KEY, "2024-06-14 09:00:12", 0, (AUTO, REALIZADO), None, false, None),
    mosia(JOAO_KEY, "2024-07-09 14:40:36", 120, (RECEPTIVO, EM_ATENDIMENTO), Some("Tratamento odontológico"), true, Some(MARIA_KEY)),
    mosia(ROBERTO_KEY, "2024-05-02 09:30:00", 15, (RECEPTIVO, REALIZADO), Some("Alteração cadastral"), true, None),
    mosia(ROBERTO_KEY, "2024-05-20 12:12:12", 0, (AUTO, REALIZADO), Some("Carteirinha digital"), true, None),
    mosia(ROBERTO_KEY, "2024-06-05 16:45:27", 240, (OUVIDORIA, CANCELADO), None, false, None),
    mosia(ROBERTO_KEY, "2024-06-30 10:05:09", 30, (RECEPTIVO, REALIZADO), Some("Segunda via de boleto"), true, None),
    mosia(ROBERTO_KEY, "2024-07-16 08:58:41", 0, (AUTO, ABERTO), Some("Reembolso consulta"), false, None),
];

struct MosiaBeneficiary {
    /// Newest first, ready to be sliced by `totalProtocolos`.
    items: Vec<Value>,
    envelope_status: u16,
}

fn mosia_seed() -> HashMap<String, MosiaBeneficiary> {
    let mut by_key: HashMap<String, Vec<Value>> = HashMap::new();

    let fixture: Value = serde_json::from_str(MOSIA_FIXTURE).expect("Mosia fixture is JSON");
    let fixture_items = fixture["data"]
        .as_array()
        .cloned()
        .expect("Mosia fixture has a data array");
    by_key.insert(MOSIA_FIXTURE_KEY.to_owned(), fixture_items);

    let brazil = chrono::FixedOffset::west_opt(3 * 3600).expect("valid offset");
    for (seq, row) in MOSIA_ROWS.iter().enumerate() {
        let local = chrono::NaiveDateTime::parse_from_str(row.registered, "%Y-%m-%d %H:%M:%S")
            .expect("dataset dates are valid");
        let at = local
            .and_local_timezone(brazil)
            .single()
            .expect("fixed offsets are unambiguous");
        // Milliseconds make the numbers look like the real ones and keep them distinct.
        let registered = at.timestamp_millis() + (seq as i64 * 137) % 1000;
        let updated = if row.updated_after_min == 0 {
            registered
        } else {
            registered + row.updated_after_min * 60_000 + 517
        };
        let holder = mosia_person(row.key, row.suffix);
        let requester = row
            .requester
            .map_or_else(|| holder.clone(), |key| mosia_person(key, row.suffix));
        let item = json!({
            "protocolo": format!("11111{}{:06}", local.format("%Y%m%d"), 101 + seq),
            "tipoOcorrencia": { "id": row.kind.0, "descricao": row.kind.1 },
            "data_registro": registered.to_string(),
            "data_atualizacao": updated.to_string(),
            "status": { "id": row.status.0, "descricao": row.status.1 },
            "assunto": row.subject,
            "beneficiario": holder,
            "solicitante": requester,
        });
        by_key.entry(row.key.to_owned()).or_default().push(item);
    }

    by_key
        .into_iter()
        .map(|(key, mut items)| {
            items.sort_by_key(|item| std::cmp::Reverse(epoch_ms(&item["data_registro"])));
            let envelope_status = if key == MOSIA_QUIRKY_403_KEY {
                403
            } else {
                200
            };
            let beneficiary = MosiaBeneficiary {
                items,
                envelope_status,
            };
            (key, beneficiary)
        })
        .collect()
}

fn mosia_person(unique_key: &str, suffix: bool) -> Value {
    let name = beneficiary_by_key(unique_key).map_or("", |b| b.name);
    let name = if suffix {
        format!("{name} - {unique_key}")
    } else {
        name.to_owned()
    };
    json!({ "nome": name, "chaveUnica": unique_key })
}

fn epoch_ms(value: &Value) -> i64 {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

// --- TOTVS -----------------------------------------------------------------------------------

/// The item field names differ between TOTVS doc versions; each subscriber answers in one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldStyle {
    /// The seed's `subscriber-_id` (a Confluence rendering artefact that clients meet anyway).
    Seed,
    Camel,
    Hyphen,
    Snake,
}

struct FieldNames {
    subscriber_id: &'static str,
    professional_name: &'static str,
    professional_council: &'static str,
    professional_council_number: &'static str,
    /// The seed documents no state field.
    state_abbreviation: Option<&'static str>,
    id_on_health_insurer: &'static str,
    auth_type: &'static str,
    solicitation_date: &'static str,
    analysis_date: &'static str,
}

impl FieldStyle {
    fn names(self) -> &'static FieldNames {
        match self {
            FieldStyle::Seed => &FieldNames {
                subscriber_id: "subscriber-_id",
                professional_name: "professional-_name",
                professional_council: "professional-_council",
                professional_council_number: "professional-_council-_number",
                state_abbreviation: None,
                id_on_health_insurer: "id-_on-_health-_insurer",
                auth_type: "auth-_type",
                solicitation_date: "solicitation_date",
                analysis_date: "analysis_date",
            },
            FieldStyle::Camel => &FieldNames {
                subscriber_id: "subscriberId",
                professional_name: "professionalName",
                professional_council: "professionalCouncil",
                professional_council_number: "professionalCouncilNumber",
                state_abbreviation: Some("stateAbbreviation"),
                id_on_health_insurer: "idOnHealthInsurer",
                auth_type: "authType",
                solicitation_date: "solicitationDate",
                analysis_date: "analysisDate",
            },
            FieldStyle::Hyphen => &FieldNames {
                subscriber_id: "subscriber-id",
                professional_name: "professional-name",
                professional_council: "professional-council",
                professional_council_number: "professional-council-number",
                state_abbreviation: Some("state-abbreviation"),
                id_on_health_insurer: "id-on-health-insurer",
                auth_type: "auth-type",
                solicitation_date: "solicitation-date",
                analysis_date: "analysis-date",
            },
            FieldStyle::Snake => &FieldNames {
                subscriber_id: "subscriber_id",
                professional_name: "professional_name",
                professional_council: "professional_council",
                professional_council_number: "professional_council_number",
                state_abbreviation: Some("state_abbreviation"),
                id_on_health_insurer: "id_on_health_insurer",
                auth_type: "auth_type",
                solicitation_date: "solicitation_date",
                analysis_date: "analysis_date",
            },
        }
    }
}

/// (name, council, council number, state); empty strings where the upstream has nothing.
const PROFESSIONALS: &[(&str, &str, &str, &str)] = &[
    ("ANDRE", "CRM", "334455", "SP"),
    ("VINICIUS", "CRM", "1234567", "SP"),
    ("MARINA COSTA REIS", "CRM", "98231", "RJ"),
    ("FERNANDO TAKAHASHI", "CRO", "45120", "SP"),
    ("LUCIANA PRATES", "CRM", "55873", "MG"),
    ("RAFAEL ANTUNES", "CREFITO", "112233-F", "PR"),
    ("CLINICA SAO LUCAS", "", "", ""),
];

/// (protocol, professional index, status, auth type, authorization number, requested, analyzed)
type TotvsRow = (
    &'static str,
    usize,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const HERNANDES_SUBSCRIBER: &str = "00011008000027010";
/// The documented protocol list item, served verbatim as Hernandes' first item.
const FIXTURE_PROTOCOL: &str = "41750520230601000030";
/// The documented attachments request targets this one; it waits for a document.
const FIXTURE_ATTACHMENT_PROTOCOL: &str = "41750520230620000004";

#[rustfmt::skip]
const SUBSCRIBERS: &[(&str, FieldStyle, &[TotvsRow])] = &[
    (HERNANDES_SUBSCRIBER, FieldStyle::Seed, &[
        (FIXTURE_PROTOCOL, 0, "7", "", "", "", ""),
        ("41750520230620000003", 1, "7", "", "", "2023-06-20", ""),
        (FIXTURE_ATTACHMENT_PROTOCOL, 1, "9", "", "", "2023-06-20", ""),
        ("41750520230415000012", 0, "1", "2", "000120230400000871", "2023-04-15", "2023-04-17"),
    ]),
    ("00011008000031015", FieldStyle::Camel, &[
        ("41750520240108000011", 2, "1", "2", "000120240100000112", "2024-01-08", "2024-01-09"),
        ("41750520240115000027", 4, "8", "3", "", "2024-01-15", "2024-01-19"),
        ("41750520240122000008", 3, "1", "4", "000120240100000257", "2024-01-22", "2024-01-22"),
        ("41750520240205000014", 2, "9", "2", "", "2024-02-05", ""),
        ("41750520240212000031", 5, "6", "2", "", "2024-02-12", ""),
        ("41750520240219000005", 4, "2", "3", "000120240200000398", "2024-02-19", "2024-02-23"),
        ("41750520240304000019", 6, "7", "", "", "2024-03-04", ""),
        ("41750520240311000022", 2, "3", "2", "", "2024-03-11", "2024-03-12"),
        ("41750520240318000003", 3, "1", "4", "000120240300000541", "2024-03-18", "2024-03-18"),
        ("41750520240401000016", 4, "9", "3", "", "2024-04-01", ""),
        ("41750520240408000029", 5, "8", "2", "", "2024-04-08", "2024-04-10"),
        ("41750520240415000007", 2, "5", "2", "", "2024-04-15", ""),
        ("41750520240422000012", 1, "1", "2", "000120240400000733", "2024-04-22", "2024-04-23"),
        ("41750520240506000024", 6, "6", "3", "", "2024-05-06", ""),
        ("41750520240513000001", 2, "9", "", "", "2024-05-13", ""),
        ("41750520240520000018", 4, "8", "3", "", "2024-05-20", "2024-05-24"),
        ("41750520240603000009", 3, "2", "4", "000120240600000845", "2024-06-03", "2024-06-04"),
        ("41750520240610000033", 5, "7", "2", "", "2024-06-10", ""),
        ("41750520240617000015", 2, "1", "2", "000120240600000902", "2024-06-17", "2024-06-17"),
        ("41750520240624000006", 1, "3", "3", "", "2024-06-24", "2024-06-28"),
        ("41750520240701000021", 4, "9", "2", "", "2024-07-01", ""),
        ("41750520240708000010", 6, "6", "2", "", "2024-07-08", ""),
        ("41750520240710000017", 3, "8", "4", "", "2024-07-10", "2024-07-11"),
        ("41750520240715000004", 5, "7", "", "", "", ""),
        ("41750520240722000028", 2, "9", "3", "", "2024-07-22", ""),
        ("41750520240729000013", 4, "1", "3", "000120240700001077", "2024-07-29", "2024-07-30"),
        ("41750520240805000002", 1, "7", "2", "", "2024-08-05", ""),
    ]),
    ("00011008000045002", FieldStyle::Hyphen, &[
        ("41750520230905000041", 4, "1", "2", "000120230900000618", "2023-09-05", "2023-09-06"),
        ("41750520231002000017", 2, "8", "3", "", "2023-10-02", "2023-10-04"),
        ("41750520231106000009", 6, "9", "2", "", "2023-11-06", ""),
        ("41750520231204000026", 5, "3", "2", "", "2023-12-04", "2023-12-05"),
        ("41750520240108000035", 2, "5", "", "", "2024-01-08", ""),
        ("41750520240311000040", 4, "7", "2", "", "", ""),
    ]),
    // Protheus' native date format leaks through for this one.
    ("00011008000045100", FieldStyle::Snake, &[
        ("41750520240220000044", 3, "1", "4", "000120240200000466", "20240220", "20240221"),
        ("41750520240327000038", 2, "9", "2", "", "20240327", ""),
        ("41750520240503000046", 4, "6", "3", "", "20240503", ""),
        ("41750520240614000032", 3, "8", "4", "", "20240614", "20240618"),
        ("41750520240709000043", 2, "2", "2", "000120240700001012", "20240709", "20240710"),
    ]),
    ("00020015000112003", FieldStyle::Camel, &[
        ("41750520240402000051", 4, "1", "2", "000120240400000705", "2024-04-02", "2024-04-02"),
        ("41750520240516000052", 2, "9", "2", "", "2024-05-16", ""),
        ("41750520240628000053", 6, "7", "3", "", "2024-06-28", ""),
        ("41750520240730000054", 5, "3", "2", "", "2024-07-30", "2024-08-01"),
    ]),
    ("00020015000198016", FieldStyle::Hyphen, &[]),
];

#[derive(Clone, Debug, Serialize)]
struct Interaction {
    sector: String,
    name: String,
    interaction_date: String,
    default_reason: String,
    observation: String,
}

/// One authorization protocol, independent of the field style it is sent in.
#[derive(Clone, Debug)]
struct Protocol {
    number: String,
    subscriber_id: String,
    name: String,
    professional_name: String,
    professional_council: String,
    professional_council_number: String,
    state_abbreviation: String,
    status: String,
    authorization: String,
    auth_type: String,
    requested_on: String,
    analyzed_on: String,
    interactions: Vec<Interaction>,
    attachments: Vec<String>,
}

struct Subscriber {
    name: String,
    style: FieldStyle,
    /// `YYYYMMDD` instead of `YYYY-MM-DD` for dates of protocols created here.
    compact_dates: bool,
    /// Indexes into `Totvs::protocols`, in storage order.
    protocols: Vec<usize>,
}

struct Totvs {
    subscribers: HashMap<String, Subscriber>,
    protocols: Vec<Protocol>,
    by_number: HashMap<String, usize>,
    next_seq: u32,
}

const DEFAULT_SECTOR: &str = "DEPARTAMENTO PADRAO";
/// For interactions of protocols that carry no date at all.
const FALLBACK_DATE: &str = "2023-06-20";

impl Totvs {
    fn seed() -> Totvs {
        let mut totvs = Totvs {
            subscribers: HashMap::new(),
            protocols: Vec::new(),
            by_number: HashMap::new(),
            next_seq: 900_001,
        };
        for &(subscriber_id, style, rows) in SUBSCRIBERS {
            let name = BENEFICIARIES
                .iter()
                .find(|b| b.subscriber_id == Some(subscriber_id))
                .map_or_else(String::new, |b| b.name.to_uppercase());
            let compact_dates = rows.iter().any(|row| is_compact_date(row.5));
            let mut subscriber = Subscriber {
                name: name.clone(),
                style,
                compact_dates,
                protocols: Vec::with_capacity(rows.len()),
            };
            for &(number, professional, status, auth_type, authorization, requested, analyzed) in
                rows
            {
                let (prof_name, council, council_number, state) = PROFESSIONALS[professional];
                let mut protocol = Protocol {
                    number: number.to_owned(),
                    subscriber_id: subscriber_id.to_owned(),
                    name: name.clone(),
                    professional_name: prof_name.to_owned(),
                    professional_council: council.to_owned(),
                    professional_council_number: council_number.to_owned(),
                    state_abbreviation: state.to_owned(),
                    status: status.to_owned(),
                    authorization: authorization.to_owned(),
                    auth_type: auth_type.to_owned(),
                    requested_on: requested.to_owned(),
                    analyzed_on: analyzed.to_owned(),
                    interactions: Vec::new(),
                    attachments: Vec::new(),
                };
                protocol.interactions = seed_interactions(&protocol, totvs.protocols.len());
                subscriber.protocols.push(totvs.insert(protocol));
            }
            totvs
                .subscribers
                .insert(subscriber_id.to_owned(), subscriber);
        }
        totvs
    }

    fn insert(&mut self, protocol: Protocol) -> usize {
        let index = self.protocols.len();
        self.by_number.insert(protocol.number.clone(), index);
        self.protocols.push(protocol);
        index
    }

    /// A fresh 20-digit number in the upstream's shape: prefix, request date, sequence.
    fn new_protocol_number(&mut self, today: chrono::NaiveDate) -> String {
        loop {
            let number = format!("417505{}{:06}", today.format("%Y%m%d"), self.next_seq);
            self.next_seq = if self.next_seq >= 999_999 {
                1
            } else {
                self.next_seq + 1
            };
            if !self.by_number.contains_key(&number) {
                return number;
            }
        }
    }
}

/// 0..4 interactions per protocol, varied by position; status 9 always asks for a document.
fn seed_interactions(p: &Protocol, index: usize) -> Vec<Interaction> {
    if p.number == FIXTURE_PROTOCOL || p.number == FIXTURE_ATTACHMENT_PROTOCOL {
        return vec![interaction(
            &p.name,
            "2023-06-20",
            "FALTA DE DOCUMENTAÇÃO DO BENEFICIÁRIO",
            "Encaminhar a documentação do beneficiário",
        )];
    }
    let requested = iso_date(&p.requested_on).unwrap_or_else(|| FALLBACK_DATE.to_owned());
    let analyzed = iso_date(&p.analyzed_on).unwrap_or_else(|| requested.clone());
    let mut out = Vec::new();
    if index.is_multiple_of(2) {
        out.push(interaction(
            &p.name,
            &requested,
            "SOLICITAÇÃO RECEBIDA",
            "Solicitação registrada pelo aplicativo do beneficiário.",
        ));
    }
    if index.is_multiple_of(3) {
        out.push(interaction(
            &p.name,
            &requested,
            "CONTATO COM BENEFICIÁRIO",
            "Contato telefônico realizado para confirmar os dados da solicitação.",
        ));
    }
    let outcome = match p.status.as_str() {
        "1" => Some((
            "AUTORIZAÇÃO LIBERADA",
            "Procedimento autorizado conforme solicitação.",
        )),
        "2" => Some((
            "AUTORIZAÇÃO PARCIAL",
            "Parte dos procedimentos solicitados foi autorizada; consulte a guia.",
        )),
        "3" => Some((
            "PROCEDIMENTO SEM COBERTURA",
            "O procedimento solicitado não possui cobertura contratual.",
        )),
        "6" => Some((
            "ENCAMINHADO PARA AUDITORIA",
            "Solicitação encaminhada para auditoria médica.",
        )),
        "8" => Some((
            "NEGATIVA POR CARÊNCIA",
            "Beneficiário em período de carência para o procedimento solicitado.",
        )),
        "9" if index.is_multiple_of(2) => Some((
            "FALTA DE DOCUMENTAÇÃO DO BENEFICIÁRIO",
            "Encaminhar a documentação do beneficiário",
        )),
        "9" => Some((
            "PEDIDO MÉDICO ILEGÍVEL",
            "Encaminhar novamente o pedido médico legível, com carimbo e assinatura do profissional.",
        )),
        _ => None,
    };
    if let Some((reason, observation)) = outcome {
        out.push(interaction(&p.name, &analyzed, reason, observation));
    }
    if p.status == "6" {
        out.push(interaction(
            &p.name,
            &analyzed,
            "AGUARDANDO PARECER",
            "Aguardando parecer do médico auditor.",
        ));
    }
    out
}

fn interaction(name: &str, date: &str, reason: &str, observation: &str) -> Interaction {
    Interaction {
        sector: DEFAULT_SECTOR.to_owned(),
        name: name.to_owned(),
        interaction_date: date.to_owned(),
        default_reason: reason.to_owned(),
        observation: observation.to_owned(),
    }
}

fn is_compact_date(date: &str) -> bool {
    date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD` for either stored shape; `None` for `""`.
fn iso_date(date: &str) -> Option<String> {
    if is_compact_date(date) {
        Some(format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..]))
    } else if date.is_empty() {
        None
    } else {
        Some(date.to_owned())
    }
}

/// Dates compared digit by digit, so `2024-02-20` equals `20240220`.
fn date_digits(date: &str) -> impl Iterator<Item = char> + '_ {
    date.chars().filter(|c| *c != '-')
}

/// A protocol as a list item, in its subscriber's field style.
struct StyledProtocol<'a> {
    protocol: &'a Protocol,
    names: &'static FieldNames,
}

impl Serialize for StyledProtocol<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (p, n) = (self.protocol, self.names);
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("protocol", &p.number)?;
        map.serialize_entry("name", &p.name)?;
        map.serialize_entry(n.subscriber_id, &p.subscriber_id)?;
        map.serialize_entry(n.professional_name, &p.professional_name)?;
        if let Some(key) = n.state_abbreviation {
            map.serialize_entry(key, &p.state_abbreviation)?;
        }
        map.serialize_entry(n.professional_council, &p.professional_council)?;
        map.serialize_entry(
            n.professional_council_number,
            &p.professional_council_number,
        )?;
        map.serialize_entry("status", &p.status)?;
        map.serialize_entry(n.id_on_health_insurer, &p.authorization)?;
        map.serialize_entry(n.auth_type, &p.auth_type)?;
        map.serialize_entry(n.solicitation_date, &p.requested_on)?;
        map.serialize_entry(n.analysis_date, &p.analyzed_on)?;
        map.end()
    }
}

/// The 201 body of the attachments and request endpoints (always camelCase, no dates).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProtocolReceipt<'a> {
    protocol: &'a str,
    name: &'a str,
    subscriber_id: &'a str,
    professional_name: &'a str,
    state_abbreviation: &'a str,
    professional_council: &'a str,
    professional_council_number: &'a str,
    status: &'a str,
    id_on_health_insurer: &'a str,
    auth_type: &'a str,
}

impl<'a> From<&'a Protocol> for ProtocolReceipt<'a> {
    fn from(p: &'a Protocol) -> Self {
        ProtocolReceipt {
            protocol: &p.number,
            name: &p.name,
            subscriber_id: &p.subscriber_id,
            professional_name: &p.professional_name,
            state_abbreviation: &p.state_abbreviation,
            professional_council: &p.professional_council,
            professional_council_number: &p.professional_council_number,
            status: &p.status,
            id_on_health_insurer: &p.authorization,
            auth_type: &p.auth_type,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageBody<T> {
    items: T,
    has_next: bool,
    remaining_records: u64,
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Counters {
    mosia: AtomicU64,
    totvs_token: AtomicU64,
    totvs_protocols: AtomicU64,
    totvs_interactions: AtomicU64,
    totvs_attachments: AtomicU64,
    totvs_requests: AtomicU64,
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

struct Shared {
    latency: Duration,
    token_ttl_secs: u64,
    calls: Counters,
    tokens: RwLock<Tokens>,
    mosia: HashMap<String, MosiaBeneficiary>,
    totvs: RwLock<Totvs>,
    stop: watch::Receiver<bool>,
}

impl Shared {
    fn new(options: &SandboxOptions, stop: watch::Receiver<bool>) -> Shared {
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

    async fn delay(&self) {
        if !self.latency.is_zero() {
            // tokio's timer fires on the first millisecond tick after the deadline, so a plain
            // sleep(20 ms) takes about 21 ms; aim one tick early so the added latency is the
            // configured one, not a millisecond more.
            let tick = Duration::from_millis(1);
            tokio::time::sleep(self.latency.saturating_sub(tick).max(tick)).await;
        }
    }

    /// The slow-upstream demo; `false` when the sandbox shut down meanwhile.
    async fn slow(&self) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(SLOW_ANSWER) => true,
            _ = stop.wait_for(|stopped| *stopped) => false,
        }
    }

    fn issue_tokens(&self) -> Value {
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
    fn redeem_refresh_token(&self, token: &str) -> bool {
        let mut tokens = self.tokens.write().unwrap_or_else(PoisonError::into_inner);
        tokens
            .refresh
            .remove(token)
            .is_some_and(|expiry| expiry > Instant::now())
    }

    fn check_bearer(&self, headers: &HeaderMap) -> Result<(), Refusal> {
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

    fn read_totvs(&self) -> std::sync::RwLockReadGuard<'_, Totvs> {
        self.totvs.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_totvs(&self) -> std::sync::RwLockWriteGuard<'_, Totvs> {
        self.totvs.write().unwrap_or_else(PoisonError::into_inner)
    }
}

type AppState = State<Arc<Shared>>;

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            bytes,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "sandbox could not serialize a body");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A body sent exactly as written, for the documented fixtures and the malformed demos.
fn raw_json(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

fn shutting_down() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "sandbox shutting down").into_response()
}

// ---------------------------------------------------------------------------------------------
// Mosia
// ---------------------------------------------------------------------------------------------

const MOSIA_PATH: &str = "/clientes/ocorrencias/ultimosProtocolos";

fn mosia_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(MOSIA_PATH, get(mosia_latest_protocols))
        .fallback(|| async {
            mosia_envelope(StatusCode::NOT_FOUND, false, None, "Rota não encontrada")
        })
        .with_state(shared)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MosiaEnvelope<'a> {
    status: bool,
    data: Option<&'a [Value]>,
    message: &'a str,
    critical: [&'a str; 0],
    status_code: u16,
    timestamp: i64,
}

fn mosia_envelope(
    http: StatusCode,
    status: bool,
    data: Option<&[Value]>,
    message: &str,
) -> Response {
    mosia_body(http, status, data, message, http.as_u16())
}

fn mosia_body(
    http: StatusCode,
    status: bool,
    data: Option<&[Value]>,
    message: &str,
    status_code: u16,
) -> Response {
    let body = MosiaEnvelope {
        status,
        data,
        message,
        critical: [],
        status_code,
        timestamp: chrono::Utc::now().timestamp_millis(),
    };
    json_response(http, &body)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

const MOSIA_LOADED: &str = "Ocorrências carregadas com sucesso.";

async fn mosia_latest_protocols(State(shared): AppState, headers: HeaderMap) -> Response {
    count(&shared.calls.mosia);
    shared.delay().await;

    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == MOSIA_TOKEN.as_bytes());
    if !authorized {
        return mosia_envelope(StatusCode::UNAUTHORIZED, false, None, "Token inválido");
    }
    let Some(key) = header_str(&headers, "chaveUnica") else {
        return mosia_envelope(
            StatusCode::BAD_REQUEST,
            false,
            None,
            "O header chaveUnica é obrigatório.",
        );
    };
    let limit = match header_str(&headers, "totalProtocolos").map(str::parse::<u8>) {
        None => 5,
        Some(Ok(n)) if (1..=10).contains(&n) => usize::from(n),
        Some(_) => {
            return mosia_envelope(
                StatusCode::BAD_REQUEST,
                false,
                None,
                "O header totalProtocolos deve ser um número entre 1 e 10.",
            );
        }
    };
    tracing::trace!(key, limit, "mosia ultimosProtocolos");

    match key {
        "00000000500" => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html")],
                "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n\
                 <center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n\
                 </body>\r\n</html>\r\n",
            )
                .into_response();
        }
        "00000000000" => {
            return mosia_body(
                StatusCode::OK,
                false,
                None,
                "Falha ao carregar ocorrências",
                500,
            );
        }
        "00000000777" => return raw_json(StatusCode::OK, r#"{"status":true,"data":"oops""#),
        "00000000999" if !shared.slow().await => return shutting_down(),
        _ => {}
    }

    let (items, status_code) = shared.mosia.get(key).map_or((&[][..], 200), |b| {
        (&b.items[..b.items.len().min(limit)], b.envelope_status)
    });
    mosia_body(StatusCode::OK, true, Some(items), MOSIA_LOADED, status_code)
}

// ---------------------------------------------------------------------------------------------
// TOTVS
// ---------------------------------------------------------------------------------------------

const PROTOCOLS_404: &str = include_str!("../fixtures/totvs/protocols.404.json");
const INTERACTIONS_404: &str = include_str!("../fixtures/totvs/interactions.404.json");
const ATTACHMENTS_404: &str = include_str!("../fixtures/totvs/attachments.404.json");
const ATTACHMENTS_400_STATUS: &str = include_str!("../fixtures/totvs/attachments.400-status.json");

const AUTHORIZATIONS: &str = "/rest/totvsHealthPlans/attendance/v1/authorizations";

fn totvs_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/rest/api/oauth2/v1/token", post(totvs_token))
        .route(
            &format!("{AUTHORIZATIONS}/{{subscriber_id}}/protocols"),
            get(totvs_protocols),
        )
        .route(
            &format!("{AUTHORIZATIONS}/protocols/{{protocol_id}}/interactions"),
            get(totvs_interactions),
        )
        .route(
            &format!("{AUTHORIZATIONS}/protocols/attachments"),
            post(totvs_attachments),
        )
        .route(
            &format!("{AUTHORIZATIONS}/protocols"),
            post(totvs_request_authorization),
        )
        .fallback(|method: Method, uri: Uri| async move {
            totvs_error(
                StatusCode::NOT_FOUND,
                "404",
                "Recurso não encontrado",
                &format!("{method} {} não existe neste servidor.", uri.path()),
            )
        })
        .with_state(shared)
}

/// A TOTVS error answer; small (unlike `Response`) so that `Result`s carrying it stay cheap.
struct Refusal {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

fn totvs_error(status: StatusCode, code: &str, message: &str, detailed: &str) -> Refusal {
    Refusal {
        status,
        body: json!({ "code": code, "message": message, "detailedMessage": detailed }),
    }
}

fn totvs_error_details(
    status: StatusCode,
    code: &str,
    message: &str,
    detailed: &str,
    details: Vec<Value>,
) -> Refusal {
    Refusal {
        status,
        body: json!({ "code": code, "message": message, "detailedMessage": detailed, "details": details }),
    }
}

fn detail(code: &str, message: String, detailed: String) -> Value {
    json!({ "code": code, "message": message, "detailedMessage": detailed })
}

fn query_params(uri: &Uri) -> Vec<(String, String)> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(params)| params)
        .unwrap_or_default()
}

/// The first non-empty value of a query parameter.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, value)| key == name && !value.trim().is_empty())
        .map(|(_, value)| value.trim())
}

// --- token -----------------------------------------------------------------------------------

async fn totvs_token(State(shared): AppState, uri: Uri) -> Response {
    count(&shared.calls.totvs_token);
    shared.delay().await;
    let params = query_params(&uri);
    match param(&params, "grant_type") {
        Some("password") => {
            let valid = param(&params, "username") == Some(TOTVS_USERNAME)
                && param(&params, "password") == Some(TOTVS_PASSWORD);
            if valid {
                json_response(StatusCode::CREATED, &shared.issue_tokens())
            } else {
                totvs_error(
                    StatusCode::UNAUTHORIZED,
                    "401",
                    "Usuário ou senha inválidos",
                    "Não foi possível autenticar com o usuário e a senha informados.",
                )
                .into_response()
            }
        }
        Some("refresh_token") => {
            let redeemed =
                param(&params, "refresh_token").is_some_and(|t| shared.redeem_refresh_token(t));
            if redeemed {
                json_response(StatusCode::CREATED, &shared.issue_tokens())
            } else {
                totvs_error(
                    StatusCode::UNAUTHORIZED,
                    "401",
                    "Refresh token inválido ou expirado",
                    "O refresh_token informado não foi emitido por este servidor, já foi utilizado ou expirou.",
                )
                .into_response()
            }
        }
        _ => totvs_error(
            StatusCode::BAD_REQUEST,
            "400",
            "grant_type inválido",
            "Informe grant_type=password ou grant_type=refresh_token.",
        )
        .into_response(),
    }
}

// --- protocol list ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortField {
    Protocol,
    Status,
    SolicitationDate,
    AnalysisDate,
    Name,
    ProfessionalName,
    AuthType,
    IdOnHealthInsurer,
}

/// `order=-solicitationDate,protocol`; names in any of the documented styles, unknown ignored.
fn parse_order(order: &str) -> Vec<(SortField, bool)> {
    order
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            let (descending, name) = match part.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, part.strip_prefix('+').unwrap_or(part)),
            };
            let normalized: String = name
                .chars()
                .filter(|c| *c != '-' && *c != '_')
                .map(|c| c.to_ascii_lowercase())
                .collect();
            let field = match normalized.as_str() {
                "protocol" => SortField::Protocol,
                "status" => SortField::Status,
                "solicitationdate" => SortField::SolicitationDate,
                "analysisdate" => SortField::AnalysisDate,
                "name" => SortField::Name,
                "professionalname" => SortField::ProfessionalName,
                "authtype" => SortField::AuthType,
                "idonhealthinsurer" => SortField::IdOnHealthInsurer,
                _ => return None,
            };
            Some((field, descending))
        })
        .collect()
}

fn compare(a: &Protocol, b: &Protocol, field: SortField) -> CmpOrdering {
    match field {
        SortField::Protocol => a.number.cmp(&b.number),
        SortField::Status => match (a.status.parse::<u32>(), b.status.parse::<u32>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.status.cmp(&b.status),
        },
        SortField::SolicitationDate => {
            date_digits(&a.requested_on).cmp(date_digits(&b.requested_on))
        }
        SortField::AnalysisDate => date_digits(&a.analyzed_on).cmp(date_digits(&b.analyzed_on)),
        SortField::Name => a.name.cmp(&b.name),
        SortField::ProfessionalName => a.professional_name.cmp(&b.professional_name),
        SortField::AuthType => a.auth_type.cmp(&b.auth_type),
        SortField::IdOnHealthInsurer => a.authorization.cmp(&b.authorization),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Paging {
    page: u64,
    page_size: u64,
}

impl Paging {
    fn parse(params: &[(String, String)]) -> Result<Paging, Refusal> {
        Ok(Paging {
            page: positive(params, "page", 1)?,
            page_size: positive(params, "pageSize", 20)?,
        })
    }

    /// The slice for this page and `remainingRecords` after it.
    fn slice<T>(self, items: &[T]) -> (&[T], u64) {
        let total = items.len() as u64;
        // Saturating: absurd page numbers mean "past the end", not an overflow.
        let start = self.page.saturating_sub(1).saturating_mul(self.page_size);
        let end = start.saturating_add(self.page_size);
        let remaining = total.saturating_sub(end);
        (
            &items[start.min(total) as usize..end.min(total) as usize],
            remaining,
        )
    }
}

fn positive(params: &[(String, String)], name: &str, default: u64) -> Result<u64, Refusal> {
    match param(params, name) {
        None => Ok(default),
        Some(value) => match value.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(invalid_parameter(
                name,
                "deve ser um valor numérico maior que zero",
            )),
        },
    }
}

fn invalid_parameter(name: &str, rule: &str) -> Refusal {
    totvs_error_details(
        StatusCode::NOT_ACCEPTABLE,
        "E001",
        "Existem parâmetros inválidos na requisição.",
        "Verifique a lista de erros no campo details para mais detalhes.",
        vec![detail(
            "E001-406",
            format!("Parâmetro {name} inválido"),
            format!("O parâmetro {name} informado no queryParams da requisição {rule}."),
        )],
    )
}

struct ProtocolQuery {
    protocol: Option<String>,
    protocol_or_authorization: Option<String>,
    /// `YYYYMMDD`
    solicitation_date: Option<String>,
    statuses: Option<Vec<String>>,
    order: Vec<(SortField, bool)>,
    paging: Paging,
}

impl ProtocolQuery {
    fn parse(params: &[(String, String)]) -> Result<ProtocolQuery, Refusal> {
        let paging = Paging::parse(params)?;
        let solicitation_date = match param(params, "solicitationDate") {
            None => None,
            Some(value) => {
                let digits: String = date_digits(value).collect();
                if chrono::NaiveDate::parse_from_str(&digits, "%Y%m%d").is_err() {
                    return Err(invalid_parameter(
                        "solicitationDate",
                        "deve estar no formato AAAA-MM-DD ou AAAAMMDD",
                    ));
                }
                Some(digits)
            }
        };
        Ok(ProtocolQuery {
            protocol: param(params, "protocol").map(str::to_owned),
            protocol_or_authorization: param(params, "protocolOrAuthorization").map(str::to_owned),
            solicitation_date,
            statuses: param(params, "status").map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            order: param(params, "order").map(parse_order).unwrap_or_default(),
            paging,
        })
    }

    fn matches(&self, p: &Protocol) -> bool {
        self.protocol.as_ref().is_none_or(|n| *n == p.number)
            && self.protocol_or_authorization.as_ref().is_none_or(|n| {
                *n == p.number || (!p.authorization.is_empty() && *n == p.authorization)
            })
            && self.solicitation_date.as_ref().is_none_or(|d| {
                !p.requested_on.is_empty() && date_digits(&p.requested_on).eq(d.chars())
            })
            && self
                .statuses
                .as_ref()
                .is_none_or(|statuses| statuses.contains(&p.status))
    }
}

async fn totvs_protocols(
    State(shared): AppState,
    Path(subscriber_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    count(&shared.calls.totvs_protocols);
    shared.delay().await;
    if let Err(refused) = shared.check_bearer(&headers) {
        return refused.into_response();
    }
    match subscriber_id.as_str() {
        "00000000000000500" => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain")],
                "Internal Server Error\r\nTHREAD ERROR ([12345], sandbox, SANDBOX)  \
                 variable does not exist BKU_NRPRO on PLSAUTHORIZATIONS:GETPROTOCOLS\r\n",
            )
                .into_response();
        }
        "00000000000000777" => {
            return raw_json(
                StatusCode::OK,
                r#"{"items":"oops","hasNext":false,"remainingRecords":0}"#,
            );
        }
        "00000000000000999" if !shared.slow().await => return shutting_down(),
        "00000000000000999" => {
            let empty = PageBody {
                items: [(); 0],
                has_next: false,
                remaining_records: 0,
            };
            return json_response(StatusCode::OK, &empty);
        }
        _ => {}
    }
    let params = query_params(&uri);
    match ProtocolQuery::parse(&params) {
        Ok(query) => list_protocols(&shared.read_totvs(), &subscriber_id, &query),
        Err(invalid) => invalid.into_response(),
    }
}

fn list_protocols(totvs: &Totvs, subscriber_id: &str, query: &ProtocolQuery) -> Response {
    let Some(subscriber) = totvs.subscribers.get(subscriber_id) else {
        return raw_json(StatusCode::NOT_FOUND, PROTOCOLS_404);
    };
    let mut selected: Vec<&Protocol> = subscriber
        .protocols
        .iter()
        .map(|&i| &totvs.protocols[i])
        .filter(|p| query.matches(p))
        .collect();
    if !query.order.is_empty() {
        selected.sort_by(|a, b| {
            query
                .order
                .iter()
                .fold(CmpOrdering::Equal, |acc, &(field, descending)| {
                    acc.then_with(|| {
                        let ordering = compare(a, b, field);
                        if descending {
                            ordering.reverse()
                        } else {
                            ordering
                        }
                    })
                })
        });
    }
    let (page, remaining) = query.paging.slice(&selected);
    let names = subscriber.style.names();
    let items: Vec<StyledProtocol<'_>> = page
        .iter()
        .map(|protocol| StyledProtocol { protocol, names })
        .collect();
    json_response(
        StatusCode::OK,
        &PageBody {
            items,
            has_next: remaining > 0,
            remaining_records: remaining,
        },
    )
}

// --- interactions ----------------------------------------------------------------------------

async fn totvs_interactions(
    State(shared): AppState,
    Path(protocol_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    count(&shared.calls.totvs_interactions);
    shared.delay().await;
    if let Err(refused) = shared.check_bearer(&headers) {
        return refused.into_response();
    }
    let paging = match Paging::parse(&query_params(&uri)) {
        Ok(paging) => paging,
        Err(invalid) => return invalid.into_response(),
    };
    let totvs = shared.read_totvs();
    let Some(&index) = totvs.by_number.get(&protocol_id) else {
        return raw_json(StatusCode::NOT_FOUND, INTERACTIONS_404);
    };
    let (items, remaining) = paging.slice(&totvs.protocols[index].interactions);
    json_response(
        StatusCode::OK,
        &PageBody {
            items,
            has_next: remaining > 0,
            remaining_records: remaining,
        },
    )
}

// --- attachments and new requests ------------------------------------------------------------

fn parse_body(body: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice(body).map_err(|error| {
        totvs_error(
            StatusCode::NOT_ACCEPTABLE,
            "E001",
            "JSON inválido",
            &format!("Json Error: {error}"),
        )
    })
}

fn missing_field(field: &str) -> Value {
    detail(
        "E002B-406",
        format!("Campo {field} obrigatório"),
        format!("Não foi informado valor do campo {field}."),
    )
}

/// `kind` is the Protheus type letter: C (character), A (array), J (object).
fn wrong_type(field: &str, kind: char) -> Value {
    detail(
        "E002D-406",
        format!("Tipo inválido para o campo {field}"),
        format!("O valor do campo {field} deve ser do tipo ({kind})."),
    )
}

fn required_str<'a>(body: &'a Value, field: &str, problems: &mut Vec<Value>) -> Option<&'a str> {
    match body.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            problems.push(missing_field(field));
            None
        }
        Some(_) => {
            problems.push(wrong_type(field, 'C'));
            None
        }
    }
}

fn optional_str<'a>(body: &'a Value, field: &str, problems: &mut Vec<Value>) -> &'a str {
    match body.get(field) {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => "",
        Some(_) => {
            problems.push(wrong_type(field, 'C'));
            ""
        }
    }
}

fn attachment_hrefs<'a>(body: &'a Value, problems: &mut Vec<Value>) -> Vec<&'a str> {
    let list = match body.get("attachments") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        None | Some(Value::Null) | Some(Value::Array(_)) => {
            problems.push(missing_field("attachments"));
            return Vec::new();
        }
        Some(_) => {
            problems.push(wrong_type("attachments", 'A'));
            return Vec::new();
        }
    };
    let mut hrefs = Vec::with_capacity(list.len());
    for (i, attachment) in list.iter().enumerate() {
        if !attachment.is_object() {
            problems.push(wrong_type(&format!("attachments[{i}]"), 'J'));
            continue;
        }
        if let Some(href) = required_str(attachment, "href", &mut Vec::new()) {
            hrefs.push(href);
        } else {
            let field = format!("attachments[{i}].href");
            problems.push(match attachment.get("href") {
                Some(Value::String(_)) | Some(Value::Null) | None => missing_field(&field),
                Some(_) => wrong_type(&field, 'C'),
            });
        }
    }
    hrefs
}

fn invalid_fields(problems: Vec<Value>) -> Refusal {
    totvs_error_details(
        StatusCode::NOT_ACCEPTABLE,
        "E002",
        "Os campos do json no body estão inválidos",
        "Verifique a lista de erros no campo details para mais detalhes.",
        problems,
    )
}

/// The sandbox "downloads" every attachment; URLs containing `missing` answer 404.
fn download_failures(hrefs: &[&str]) -> Option<Refusal> {
    let failures: Vec<Value> = hrefs
        .iter()
        .filter(|href| href.contains("missing"))
        .map(|href| {
            detail(
                "E006-1",
                "Erro ao realizar download do arquivo.".to_owned(),
                format!("Status code: 404; Erro: Not Found\r\n; Url: {href}"),
            )
        })
        .collect();
    (!failures.is_empty()).then(|| {
        totvs_error_details(
            StatusCode::BAD_REQUEST,
            "E007",
            "Erro ao incluir um anexo",
            "Verifique a lista de erros para mais detalhes",
            failures,
        )
    })
}

fn today() -> chrono::NaiveDate {
    chrono::Local::now().date_naive()
}

async fn totvs_attachments(State(shared): AppState, headers: HeaderMap, body: Bytes) -> Response {
    count(&shared.calls.totvs_attachments);
    shared.delay().await;
    if let Err(refused) = shared.check_bearer(&headers) {
        return refused.into_response();
    }
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(invalid) => return invalid.into_response(),
    };
    let mut problems = Vec::new();
    let protocol = required_str(&body, "protocol", &mut problems);
    let hrefs = attachment_hrefs(&body, &mut problems);
    let Some(protocol) = protocol.filter(|_| problems.is_empty()) else {
        return invalid_fields(problems).into_response();
    };
    add_attachments(&mut shared.write_totvs(), protocol, &hrefs)
}

fn add_attachments(totvs: &mut Totvs, number: &str, hrefs: &[&str]) -> Response {
    let Some(&index) = totvs.by_number.get(number) else {
        return raw_json(StatusCode::NOT_FOUND, ATTACHMENTS_404);
    };
    let protocol = &mut totvs.protocols[index];
    if protocol.status == "1" || protocol.status == "8" {
        return raw_json(StatusCode::BAD_REQUEST, ATTACHMENTS_400_STATUS);
    }
    if let Some(failed) = download_failures(hrefs) {
        return failed.into_response();
    }
    protocol
        .attachments
        .extend(hrefs.iter().map(|h| (*h).to_owned()));
    // The missing document arrived: the insurer analyses the request again.
    if protocol.status == "9" {
        protocol.status = "7".to_owned();
    }
    let received = interaction(
        &protocol.name,
        &today().format("%Y-%m-%d").to_string(),
        "DOCUMENTO ANEXADO",
        &format!("{} anexo(s) recebido(s)", hrefs.len()),
    );
    protocol.interactions.push(received);
    tracing::debug!(
        protocol = number,
        attachments = protocol.attachments.len(),
        status = %protocol.status,
        "sandbox recorded attachments"
    );
    json_response(StatusCode::CREATED, &ProtocolReceipt::from(&*protocol))
}

struct NewRequest<'a> {
    subscriber_id: &'a str,
    professional_name: &'a str,
    state_abbreviation: &'a str,
    professional_council: &'a str,
    professional_council_number: &'a str,
    hrefs: Vec<&'a str>,
}

async fn totvs_request_authorization(
    State(shared): AppState,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    count(&shared.calls.totvs_requests);
    shared.delay().await;
    if let Err(refused) = shared.check_bearer(&headers) {
        return refused.into_response();
    }
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(invalid) => return invalid.into_response(),
    };
    let mut problems = Vec::new();
    let subscriber_id = required_str(&body, "subscriberId", &mut problems);
    let professional_name = required_str(&body, "professionalName", &mut problems);
    let state_abbreviation = optional_str(&body, "stateAbbreviation", &mut problems);
    let professional_council = optional_str(&body, "professionalCouncil", &mut problems);
    let professional_council_number =
        optional_str(&body, "professionalCouncilNumber", &mut problems);
    let hrefs = attachment_hrefs(&body, &mut problems);
    let (Some(subscriber_id), Some(professional_name), true) =
        (subscriber_id, professional_name, problems.is_empty())
    else {
        return invalid_fields(problems).into_response();
    };
    let request = NewRequest {
        subscriber_id,
        professional_name,
        state_abbreviation,
        professional_council,
        professional_council_number,
        hrefs,
    };
    create_protocol(&mut shared.write_totvs(), &request)
}

fn create_protocol(totvs: &mut Totvs, request: &NewRequest<'_>) -> Response {
    let Some(subscriber) = totvs.subscribers.get(request.subscriber_id) else {
        return raw_json(StatusCode::NOT_FOUND, PROTOCOLS_404);
    };
    if let Some(failed) = download_failures(&request.hrefs) {
        return failed.into_response();
    }
    let today = today();
    let requested_on = if subscriber.compact_dates {
        today.format("%Y%m%d").to_string()
    } else {
        today.format("%Y-%m-%d").to_string()
    };
    let name = subscriber.name.clone();
    let number = totvs.new_protocol_number(today);
    let received = interaction(
        &name,
        &today.format("%Y-%m-%d").to_string(),
        "SOLICITAÇÃO RECEBIDA",
        &format!(
            "Solicitação registrada com {} anexo(s).",
            request.hrefs.len()
        ),
    );
    let protocol = Protocol {
        number,
        subscriber_id: request.subscriber_id.to_owned(),
        name,
        professional_name: request.professional_name.to_owned(),
        professional_council: request.professional_council.to_owned(),
        professional_council_number: request.professional_council_number.to_owned(),
        state_abbreviation: request.state_abbreviation.to_owned(),
        status: "7".to_owned(),
        authorization: String::new(),
        auth_type: String::new(),
        requested_on,
        analyzed_on: String::new(),
        interactions: vec![received],
        attachments: request.hrefs.iter().map(|h| (*h).to_owned()).collect(),
    };
    let index = totvs.insert(protocol);
    if let Some(subscriber) = totvs.subscribers.get_mut(request.subscriber_id) {
        subscriber.protocols.push(index);
    }
    let created = &totvs.protocols[index];
    tracing::debug!(protocol = %created.number, "sandbox created an authorization request");
    json_response(StatusCode::CREATED, &ProtocolReceipt::from(created))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_covers_what_the_gateway_must_handle() {
        let totvs = Totvs::seed();
        assert!(totvs.protocols.len() >= 30);
        assert_eq!(
            totvs.by_number.len(),
            totvs.protocols.len(),
            "protocol numbers are unique"
        );
        for status in ["1", "2", "3", "5", "6", "7", "8", "9"] {
            assert!(
                totvs.protocols.iter().any(|p| p.status == status),
                "status {status}"
            );
        }
        for auth_type in ["", "2", "3", "4"] {
            assert!(totvs.protocols.iter().any(|p| p.auth_type == auth_type));
        }
        for p in &totvs.protocols {
            assert_eq!(p.number.len(), 20, "{}", p.number);
            assert_eq!(p.subscriber_id.len(), 17);
            assert!(!p.name.is_empty());
            assert!(p.interactions.len() <= 4);
            if p.status == "1" || p.status == "2" {
                assert!(!p.authorization.is_empty(), "{}", p.number);
            }
            if p.status == "9" {
                assert!(!p.interactions.is_empty(), "{}", p.number);
            }
        }
        assert!(totvs.subscribers.values().any(|s| s.protocols.len() >= 25));
        let example = Sandbox::examples();
        let awaiting = &totvs.protocols[totvs.by_number[example.protocol_awaiting_document]];
        assert_eq!(awaiting.status, "9");
        assert_eq!(awaiting.subscriber_id, example.subscriber_id);

        let mosia = mosia_seed();
        assert!(mosia.values().any(|b| b.items.len() == 12));
        assert!(mosia[example.unique_key].items.len() == 3);
        for beneficiary in mosia.values() {
            let dates: Vec<i64> = beneficiary
                .items
                .iter()
                .map(|i| epoch_ms(&i["data_registro"]))
                .collect();
            assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first");
        }
    }

    #[test]
    fn documented_bodies_are_reproduced() {
        let totvs = Totvs::seed();
        let fixture: Value =
            serde_json::from_str(include_str!("../fixtures/totvs/protocols.200.json")).unwrap();
        let query =
            ProtocolQuery::parse(&[("page".into(), "1".into()), ("pageSize".into(), "1".into())])
                .unwrap_or_else(|_| panic!("valid query"));
        let subscriber = &totvs.subscribers[HERNANDES_SUBSCRIBER];
        let first = &totvs.protocols[subscriber.protocols[0]];
        let item = serde_json::to_value(StyledProtocol {
            protocol: first,
            names: subscriber.style.names(),
        })
        .unwrap();
        assert_eq!(item, fixture["items"][0]);
        let (page, remaining) = query.paging.slice(&subscriber.protocols);
        assert_eq!((page.len(), remaining), (1, 3));

        let interactions: Value =
            serde_json::from_str(include_str!("../fixtures/totvs/interactions.200.json")).unwrap();
        assert_eq!(
            serde_json::to_value(&first.interactions).unwrap(),
            interactions["items"]
        );

        let token: Value =
            serde_json::from_str(include_str!("../fixtures/totvs/token.201.json")).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let issued = Shared::new(&SandboxOptions::default(), stop).issue_tokens();
        drop(stop_tx);
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&issued), keys(&token));
        assert_eq!(issued["expires_in"], 3600);

        let mosia: Value = serde_json::from_str(MOSIA_FIXTURE).unwrap();
        assert_eq!(
            Value::Array(mosia_seed()[MOSIA_FIXTURE_KEY].items.clone()),
            mosia["data"]
        );
    }

    #[test]
    fn paging_and_order() {
        let items: Vec<u32> = (0..27).collect();
        let page = |page, page_size| Paging { page, page_size }.slice(&items);
        assert_eq!(page(1, 20), (&items[..20], 7));
        assert_eq!(page(2, 20), (&items[20..], 0));
        assert_eq!(page(3, 20), (&[][..], 0));
        assert_eq!(page(u64::MAX, u64::MAX), (&[][..], 0));
        assert_eq!(
            parse_order("-solicitation-date, status,bogus,+protocol"),
            vec![
                (SortField::SolicitationDate, true),
                (SortField::Status, false),
                (SortField::Protocol, false),
            ]
        );
        let bad = Paging::parse(&[("pageSize".into(), "0".into())]).unwrap_err();
        assert_eq!(bad.status, StatusCode::NOT_ACCEPTABLE);
    }
}
