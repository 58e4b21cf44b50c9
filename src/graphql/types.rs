//! The graph's output types: the `model` types, exposed. Each resolver's doc comment is the
//! schema's description of that field.

use async_graphql::{Context, Enum, ID, Object};

use super::{
    errors::{GatewayError, nullable},
    loaders::{load_one, request},
    scalars::{Date, DateTime},
    validation,
};
use crate::model::{
    self, AuthorizationProtocol, AuthorizationProtocolPage, Code, Interaction, InteractionPage,
    InteractionQuery, Person, Professional, ServiceProtocol,
};

/// A service protocol (atendimento) opened with the health plan's customer service, from Mosia.
#[Object]
impl ServiceProtocol {
    /// The protocol number the beneficiary is told, e.g. `1111120240710000017`.
    async fn number(&self) -> ID {
        ID(self.number.clone())
    }
    /// What kind of contact this was (e.g. "Atendimento Ativo").
    async fn occurrence_type(&self) -> &Code {
        &self.occurrence_type
    }
    /// Where the protocol stands (e.g. "Em Atendimento (externo)").
    async fn status(&self) -> &Code {
        &self.status
    }
    /// The subject, when one was recorded.
    async fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// When the protocol was opened.
    async fn registered_at(&self) -> DateTime {
        DateTime(self.registered_at)
    }
    /// When the protocol last changed.
    async fn updated_at(&self) -> Option<DateTime> {
        self.updated_at.map(DateTime)
    }
    /// Whom the protocol is about.
    async fn beneficiary(&self) -> &Person {
        &self.beneficiary
    }
    /// Who opened it (the beneficiary, or e.g. a parent).
    async fn requester(&self) -> &Person {
        &self.requester
    }
}

/// A code from the upstream's own tables, with its description in Portuguese.
#[Object]
impl Code {
    async fn id(&self) -> i32 {
        self.id
    }
    async fn description(&self) -> &str {
        &self.description
    }
}

/// A person as Mosia names them.
#[Object]
impl Person {
    /// The name, without the `" - <uniqueKey>"` suffix Mosia sometimes appends.
    async fn name(&self) -> &str {
        &self.name
    }
    /// Mosia's unique key (chaveUnica) of the person.
    async fn unique_key(&self) -> ID {
        ID(self.unique_key.clone())
    }
}

/// A request for authorization of a procedure, from TOTVS Health Plans.
#[Object]
impl AuthorizationProtocol {
    /// The protocol number (BKU_NRPRO), e.g. `41750520230601000030`.
    async fn protocol(&self) -> ID {
        ID(self.protocol.clone())
    }
    /// The beneficiary's 17-digit subscriber id (matrícula).
    async fn subscriber_id(&self) -> ID {
        ID(self.subscriber_id.clone())
    }
    /// The beneficiary's name as TOTVS records it.
    async fn beneficiary_name(&self) -> &str {
        &self.beneficiary_name
    }
    /// The professional who asked for the authorization.
    async fn professional(&self) -> &Professional {
        &self.professional
    }
    /// Where the request stands. `UNKNOWN` when TOTVS sends a code this gateway does not know;
    /// `statusCode` then carries it.
    async fn status(&self) -> AuthorizationStatus {
        self.status.into()
    }
    /// The status code exactly as TOTVS sent it (`"1"`, `"7"`, ...).
    async fn status_code(&self) -> &str {
        &self.status_code
    }
    /// The authorization number, once the request is approved.
    async fn authorization_number(&self) -> Option<&str> {
        self.authorization_number.as_deref()
    }
    /// The kind of authorization, when TOTVS says.
    async fn auth_type(&self) -> Option<AuthorizationType> {
        self.auth_type.map(Into::into)
    }
    /// The day the authorization was requested.
    async fn requested_on(&self) -> Option<Date> {
        self.requested_on.map(Date)
    }
    /// The day TOTVS analyzed the request.
    async fn analyzed_on(&self) -> Option<Date> {
        self.analyzed_on.map(Date)
    }
    /// The health plan's contacts with the beneficiary about this protocol (e.g. a request for
    /// documents), one page at a time: `page` 1 or more, `pageSize` 1..100. Null, with an
    /// error, when TOTVS fails.
    async fn interactions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1)] page: i32,
        #[graphql(default = 20)] page_size: i32,
    ) -> Option<InteractionPage> {
        nullable(ctx, self.load_interactions(ctx, page, page_size).await)
    }
}

impl AuthorizationProtocol {
    async fn load_interactions(
        &self,
        ctx: &Context<'_>,
        page: i32,
        page_size: i32,
    ) -> Result<InteractionPage, GatewayError> {
        let query = InteractionQuery {
            protocol: self.protocol.clone(),
            page: validation::page("page", page)?,
            page_size: validation::range("pageSize", page_size, 1, 100)?,
        };
        let page = load_one(&request(ctx).interactions, query).await?;
        Ok(page.as_ref().clone())
    }
}

/// The professional (doctor, dentist...) behind an authorization request.
#[Object]
impl Professional {
    async fn name(&self) -> &str {
        &self.name
    }
    /// The regional council's acronym, e.g. `CRM`.
    async fn council(&self) -> Option<&str> {
        self.council.as_deref()
    }
    /// The registration number in that council.
    async fn council_number(&self) -> Option<&str> {
        self.council_number.as_deref()
    }
    /// The council's state, e.g. `SP`.
    async fn council_state(&self) -> Option<&str> {
        self.council_state.as_deref()
    }
}

/// The status of an authorization request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Enum)]
#[graphql(remote = "model::AuthorizationStatus")]
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

/// The kind of authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "model::AuthorizationType")]
pub enum AuthorizationType {
    /// 2 — SADT (exams and therapies).
    Sadt,
    /// 3 — Internação.
    Hospitalization,
    /// 4 — Odontológico.
    Dental,
}

/// One page of a beneficiary's authorization protocols.
#[Object]
impl AuthorizationProtocolPage {
    async fn items(&self) -> &[AuthorizationProtocol] {
        &self.items
    }
    /// Whether a next page exists.
    async fn has_next(&self) -> bool {
        self.has_next
    }
    /// How many records come after this page.
    async fn remaining_records(&self) -> i32 {
        self.remaining_records
    }
    /// The page number asked for.
    async fn page(&self) -> i32 {
        self.page
    }
    /// The page size asked for.
    async fn page_size(&self) -> i32 {
        self.page_size
    }
}

/// A contact between the health plan and the beneficiary about an authorization protocol.
#[Object]
impl Interaction {
    /// The health plan's department that wrote it.
    async fn sector(&self) -> &str {
        &self.sector
    }
    async fn beneficiary_name(&self) -> &str {
        &self.beneficiary_name
    }
    async fn date(&self) -> Option<Date> {
        self.date.map(Date)
    }
    /// The standard reason (e.g. "FALTA DE DOCUMENTAÇÃO DO BENEFICIÁRIO").
    async fn reason(&self) -> &str {
        &self.reason
    }
    /// Free text for the beneficiary.
    async fn observation(&self) -> &str {
        &self.observation
    }
}

/// One page of a protocol's interactions.
#[Object]
impl InteractionPage {
    async fn items(&self) -> &[Interaction] {
        &self.items
    }
    async fn has_next(&self) -> bool {
        self.has_next
    }
    async fn remaining_records(&self) -> i32 {
        self.remaining_records
    }
}
