//! The graph's output types. Upstream clients convert their wire types into these.

use async_graphql::{Enum, ID, SimpleObject};

use super::scalars::{Date, DateTime};

/// A service protocol (atendimento) opened with the health plan's customer service, from Mosia.
#[derive(Clone, Debug, SimpleObject)]
pub struct ServiceProtocol {
    /// The protocol number the beneficiary is told, e.g. `1111120240710000017`.
    pub number: ID,
    /// What kind of contact this was (e.g. "Atendimento Ativo").
    pub occurrence_type: Code,
    /// Where the protocol stands (e.g. "Em Atendimento (externo)").
    pub status: Code,
    /// The subject, when one was recorded.
    pub subject: Option<String>,
    /// When the protocol was opened.
    pub registered_at: DateTime,
    /// When the protocol last changed.
    pub updated_at: Option<DateTime>,
    /// Whom the protocol is about.
    pub beneficiary: Person,
    /// Who opened it (the beneficiary, or e.g. a parent).
    pub requester: Person,
}

/// A code from the upstream's own tables, with its description in Portuguese.
#[derive(Clone, Debug, SimpleObject)]
pub struct Code {
    pub id: i32,
    pub description: String,
}

/// A person as Mosia names them.
#[derive(Clone, Debug, SimpleObject)]
pub struct Person {
    /// The name, without the `" - <uniqueKey>"` suffix Mosia sometimes appends.
    pub name: String,
    /// Mosia's unique key (chaveUnica) of the person.
    pub unique_key: ID,
}

/// A request for authorization of a procedure, from TOTVS Health Plans.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex)]
pub struct AuthorizationProtocol {
    /// The protocol number (BKU_NRPRO), e.g. `41750520230601000030`.
    pub protocol: ID,
    /// The beneficiary's 17-digit subscriber id (matrícula).
    pub subscriber_id: ID,
    /// The beneficiary's name as TOTVS records it.
    pub beneficiary_name: String,
    /// The professional who asked for the authorization.
    pub professional: Professional,
    /// Where the request stands. `UNKNOWN` when TOTVS sends a code this gateway does not know;
    /// `statusCode` then carries it.
    pub status: AuthorizationStatus,
    /// The status code exactly as TOTVS sent it (`"1"`, `"7"`, ...).
    pub status_code: String,
    /// The authorization number, once the request is approved.
    pub authorization_number: Option<String>,
    /// The kind of authorization, when TOTVS says.
    pub auth_type: Option<AuthorizationType>,
    /// The day the authorization was requested.
    pub requested_on: Option<Date>,
    /// The day TOTVS analyzed the request.
    pub analyzed_on: Option<Date>,
}

/// The professional (doctor, dentist...) behind an authorization request.
#[derive(Clone, Debug, SimpleObject)]
pub struct Professional {
    pub name: String,
    /// The regional council's acronym, e.g. `CRM`.
    pub council: Option<String>,
    /// The registration number in that council.
    pub council_number: Option<String>,
    /// The council's state, e.g. `SP`.
    pub council_state: Option<String>,
}

/// The status of an authorization request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Enum)]
pub enum AuthorizationStatus {
    /// 1 — Autorizada.
    Authorized,
    /// 2 — Autorizada parcialmente.
    PartiallyAuthorized,
    /// 3 — Não autorizada.
    NotAuthorized,
    /// 6 — Em auditoria.
    InAudit,
    /// 7 — Solicitação em análise.
    UnderAnalysis,
    /// 8 — Negado.
    Denied,
    /// 9 — Aguardando documento: attach documents to move it on.
    AwaitingDocument,
    /// A code this gateway does not know; see `statusCode`. Not accepted as a filter.
    Unknown,
}

impl AuthorizationStatus {
    /// TOTVS's code for the status, `None` for `Unknown`.
    pub fn code(self) -> Option<u8> {
        Some(match self {
            Self::Authorized => 1,
            Self::PartiallyAuthorized => 2,
            Self::NotAuthorized => 3,
            Self::InAudit => 6,
            Self::UnderAnalysis => 7,
            Self::Denied => 8,
            Self::AwaitingDocument => 9,
            Self::Unknown => return None,
        })
    }

    /// The status of a TOTVS code; `"07"` reads as `"7"`.
    pub fn from_code(code: &str) -> Self {
        match code.trim().parse::<u32>() {
            Ok(1) => Self::Authorized,
            Ok(2) => Self::PartiallyAuthorized,
            Ok(3) => Self::NotAuthorized,
            Ok(6) => Self::InAudit,
            Ok(7) => Self::UnderAnalysis,
            Ok(8) => Self::Denied,
            Ok(9) => Self::AwaitingDocument,
            _ => Self::Unknown,
        }
    }
}

/// The kind of authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum AuthorizationType {
    /// 2 — SADT (exams and therapies).
    Sadt,
    /// 3 — Internação.
    Hospitalization,
    /// 4 — Odontológico.
    Dental,
}

impl AuthorizationType {
    pub fn from_code(code: &str) -> Option<Self> {
        match code.trim().parse::<u32>() {
            Ok(2) => Some(Self::Sadt),
            Ok(3) => Some(Self::Hospitalization),
            Ok(4) => Some(Self::Dental),
            _ => None,
        }
    }
}

/// One page of a beneficiary's authorization protocols.
#[derive(Clone, Debug, SimpleObject)]
pub struct AuthorizationProtocolPage {
    pub items: Vec<AuthorizationProtocol>,
    /// Whether a next page exists.
    pub has_next: bool,
    /// How many records come after this page.
    pub remaining_records: i32,
    /// The page number asked for.
    pub page: i32,
    /// The page size asked for.
    pub page_size: i32,
}

/// A contact between the health plan and the beneficiary about an authorization protocol.
#[derive(Clone, Debug, SimpleObject)]
pub struct Interaction {
    /// The health plan's department that wrote it.
    pub sector: String,
    pub beneficiary_name: String,
    pub date: Option<Date>,
    /// The standard reason (e.g. "FALTA DE DOCUMENTAÇÃO DO BENEFICIÁRIO").
    pub reason: String,
    /// Free text for the beneficiary.
    pub observation: String,
}

/// One page of a protocol's interactions.
#[derive(Clone, Debug, SimpleObject)]
pub struct InteractionPage {
    pub items: Vec<Interaction>,
    pub has_next: bool,
    pub remaining_records: i32,
}
