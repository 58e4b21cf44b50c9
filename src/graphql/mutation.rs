//! The write side of the graph: attachments and new authorization requests, both to TOTVS.
//!
//! Input is checked in full before anything is sent. A write is never retried blindly: a
//! timeout answers `UPSTREAM_TIMEOUT` with `outcomeUnknown: true`. An identical write in flight,
//! or answered successfully in the last seconds, shares that answer instead of reaching TOTVS
//! again (a double click submits once).

use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Object};

use super::{
    access,
    errors::GatewayError,
    loaders::{LoadError, load_one, request},
    scalars::Url,
    validation,
};
use crate::{
    model::{AuthorizationProtocol, AuthorizationRequest, ProtocolQuery},
    upstream::{UpstreamError, UpstreamErrorKind, Upstreams},
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
        const OPERATION: &str = "addAuthorizationAttachments";
        let protocol = validation::identifier("input.protocol", &input.protocol)?;
        let hrefs = hrefs(&input.attachments)?;
        let owner = prove_own_protocol(ctx, OPERATION, &protocol).await?;
        // A double click is one caller's: two callers' identical inputs are two submissions.
        let caller_sub = access::caller(ctx)?.sub.clone();
        let upstreams = ctx.data_unchecked::<Arc<Upstreams>>();
        let result = write(
            ctx,
            &hrefs,
            upstreams.add_attachments(&caller_sub, &protocol, &hrefs),
        )
        .await;
        audit_outcome(ctx, OPERATION, owner.as_deref(), Some(&protocol), &result);
        result
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
        const OPERATION: &str = "requestAuthorization";
        access::check_write(ctx, OPERATION, Some(&request.subscriber_id), None)?;
        let caller_sub = access::caller(ctx)?.sub.clone();
        let upstreams = ctx.data_unchecked::<Arc<Upstreams>>();
        let result = write(
            ctx,
            &request.attachments,
            upstreams.request_authorization(&caller_sub, &request),
        )
        .await;
        let created = result.as_ref().ok().map(|p| p.protocol.as_str());
        audit_outcome(
            ctx,
            OPERATION,
            Some(&request.subscriber_id),
            created,
            &result,
        );
        result
    }
}

/// Staff writers may attach to any protocol. A beneficiary first proves the protocol is its
/// own: it must be in the beneficiary's own list (`…/{own subscriberId}/protocols?protocol=`,
/// read through the loaders and the cache like any read). Anything else is the same
/// `FORBIDDEN`, whether the protocol exists or not. Answers the owner when known.
async fn prove_own_protocol(
    ctx: &Context<'_>,
    operation: &'static str,
    protocol: &str,
) -> Result<Option<String>, GatewayError> {
    let caller = access::caller(ctx)?;
    if caller.is_staff_writer() {
        access::check_write(ctx, operation, None, Some(protocol))?;
        return Ok(None);
    }
    let Some(own) = caller.own_subscriber_id() else {
        return Err(access::refuse(
            caller,
            operation,
            None,
            Some(protocol),
            "no_claim",
        ));
    };
    let query = ProtocolQuery {
        protocol: Some(protocol.to_owned()),
        ..ProtocolQuery::first_page()
    };
    let owned = match load_one(&request(ctx).protocols, (own.to_owned(), query)).await {
        Ok(page) => page.items.iter().any(|item| item.protocol == protocol),
        Err(LoadError::Upstream(err)) if err.kind == UpstreamErrorKind::NotFound => false,
        Err(err) => return Err(err.into()),
    };
    if !owned {
        return Err(access::refuse(
            caller,
            operation,
            Some(own),
            Some(protocol),
            "not_own",
        ));
    }
    access::check_write(ctx, operation, Some(own), Some(protocol))?;
    Ok(Some(own.to_owned()))
}

fn audit_outcome(
    ctx: &Context<'_>,
    operation: &'static str,
    subscriber_id: Option<&str>,
    protocol: Option<&str>,
    result: &Result<AuthorizationProtocol, GatewayError>,
) {
    let outcome = if result.is_ok() {
        "succeeded"
    } else {
        "failed"
    };
    access::audit_write_outcome(ctx, operation, subscriber_id, protocol, outcome);
}

/// Sends a write within the request's budget and deadline. A write cut off by the deadline
/// may still be applied by TOTVS: the error says so.
async fn write(
    ctx: &Context<'_>,
    hrefs: &[String],
    send: impl Future<Output = Result<AuthorizationProtocol, UpstreamError>>,
) -> Result<AuthorizationProtocol, GatewayError> {
    let budget = &request(ctx).budget;
    budget.take_call()?;
    match budget.within_deadline(send).await {
        Ok(Ok(protocol)) => Ok(protocol),
        Ok(Err(error)) => Err(GatewayError::Write {
            error,
            sent_hrefs: hrefs.to_vec(),
        }),
        Err(_) => Err(GatewayError::RequestTimeout {
            outcome_unknown: true,
        }),
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
