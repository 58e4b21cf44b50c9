//! The write side of the graph: attachments and new authorization requests, both to TOTVS.
//!
//! Input is checked in full before anything is sent. A write is never retried blindly: a
//! timeout answers `UPSTREAM_TIMEOUT` with `outcomeUnknown: true`. An identical write in flight,
//! or answered successfully in the last seconds, shares that answer instead of reaching TOTVS
//! again (a double click submits once).

use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Object};

use super::{errors::GatewayError, scalars::Url, validation};
use crate::{
    model::{AuthorizationProtocol, AuthorizationRequest},
    upstream::Upstreams,
};

pub struct Mutation;

/// A document for TOTVS to download and attach.
#[derive(InputObject)]
pub struct AttachmentInput {
    /// Where TOTVS downloads the file from: an absolute `http`/`https` URL with a host and no
    /// user-info, at most 2048 characters, reachable by TOTVS.
    pub href: Url,
}

/// Documents to attach to an existing authorization protocol.
#[derive(InputObject)]
pub struct AddAuthorizationAttachmentsInput {
    /// The authorization protocol number.
    pub protocol: ID,
    /// 1 to 20 documents.
    pub attachments: Vec<AttachmentInput>,
}

/// A new authorization request.
#[derive(InputObject)]
pub struct RequestAuthorizationInput {
    /// The beneficiary's subscriber id (matrícula).
    pub subscriber_id: ID,
    /// The requesting professional's name.
    pub professional_name: String,
    /// The professional's council acronym, e.g. `CRM`.
    pub professional_council: Option<String>,
    /// The professional's registration number in that council.
    pub professional_council_number: Option<String>,
    /// The council's state, a Brazilian state code such as `SP`.
    pub state_abbreviation: Option<String>,
    /// 1 to 20 documents (the medical request, exams...).
    pub attachments: Vec<AttachmentInput>,
}

#[Object]
impl Mutation {
    /// Attaches documents to an authorization protocol; TOTVS downloads each `href`. Returns
    /// the protocol as TOTVS reports it afterwards (a protocol awaiting documents usually moves
    /// to `UNDER_ANALYSIS`). Errors: `BAD_USER_INPUT` (with `argument`, e.g.
    /// `input.attachments[1].href`), `NOT_FOUND`, `ATTACHMENTS_NOT_ALLOWED` (the status does not
    /// accept documents), `ATTACHMENT_DOWNLOAD_FAILED` (with `failedUrl`), `UPSTREAM_TIMEOUT`
    /// (with `outcomeUnknown`: check the protocol before sending again), `UPSTREAM_UNAVAILABLE`,
    /// `UPSTREAM_AUTH_FAILED`, `UPSTREAM_ERROR`.
    async fn add_authorization_attachments(
        &self,
        ctx: &Context<'_>,
        input: AddAuthorizationAttachmentsInput,
    ) -> Result<AuthorizationProtocol, GatewayError> {
        let protocol = validation::identifier("input.protocol", &input.protocol)?;
        let hrefs = hrefs(&input.attachments)?;
        let upstreams = ctx.data_unchecked::<Arc<Upstreams>>();
        Ok(upstreams.add_attachments("", &protocol, &hrefs).await?)
    }

    /// Opens a new authorization request for a beneficiary, with its documents. Returns the new
    /// protocol. Errors as for `addAuthorizationAttachments`; `NOT_FOUND` when TOTVS does not
    /// know the subscriber.
    async fn request_authorization(
        &self,
        ctx: &Context<'_>,
        input: RequestAuthorizationInput,
    ) -> Result<AuthorizationProtocol, GatewayError> {
        let max = validation::MAX_TEXT_CHARS;
        let request = AuthorizationRequest {
            subscriber_id: validation::identifier("input.subscriberId", &input.subscriber_id)?,
            professional_name: validation::text(
                "input.professionalName",
                &input.professional_name,
                max,
            )?,
            professional_council: validation::optional_text(
                "input.professionalCouncil",
                input.professional_council.as_deref(),
                max,
            )?,
            professional_council_number: validation::optional_text(
                "input.professionalCouncilNumber",
                input.professional_council_number.as_deref(),
                max,
            )?,
            state_abbreviation: input
                .state_abbreviation
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(|s| validation::state("input.stateAbbreviation", s))
                .transpose()?,
            attachments: hrefs(&input.attachments)?,
        };
        let upstreams = ctx.data_unchecked::<Arc<Upstreams>>();
        Ok(upstreams.request_authorization("", &request).await?)
    }
}

fn hrefs(attachments: &[AttachmentInput]) -> Result<Vec<String>, GatewayError> {
    if attachments.is_empty() || attachments.len() > validation::MAX_ATTACHMENTS {
        return Err(GatewayError::bad_input(
            "input.attachments",
            format!(
                "input.attachments must hold 1 to {} documents, got {}",
                validation::MAX_ATTACHMENTS,
                attachments.len()
            ),
        ));
    }
    attachments
        .iter()
        .enumerate()
        .map(|(i, a)| validation::href(&format!("input.attachments[{i}].href"), &a.href.0))
        .collect()
}
