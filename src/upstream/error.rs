//! What can go wrong with an upstream call, as the client of the graph needs to know it.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::model::Service;

/// The error body TOTVS sends (`{code, message, detailedMessage, details}`), kept for the client
/// (and in the fleet's Redis tier with a remembered 404).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub code: Option<String>,
    pub message: Option<String>,
    pub detailed_message: Option<String>,
    pub details: Vec<FaultDetail>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultDetail {
    pub code: Option<String>,
    pub message: Option<String>,
    pub detailed_message: Option<String>,
}

/// What went wrong with an upstream call, as the client of the graph needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamErrorKind {
    /// The upstream refused the input (TOTVS 406, or another 400).
    #[error("rejected the request as invalid")]
    BadRequest,
    #[error("found nothing for this request")]
    NotFound,
    /// TOTVS E003: the protocol's status does not accept attachments.
    #[error("does not accept attachments for this protocol in its current status")]
    AttachmentsNotAllowed,
    /// TOTVS E007: TOTVS could not download an attachment.
    #[error("could not download an attachment")]
    AttachmentDownloadFailed,
    /// The gateway's own credentials were refused, even after renewing them once.
    #[error("refused the gateway's credentials")]
    AuthFailed,
    #[error("did not answer in time")]
    Timeout,
    /// A write timed out: it may or may not have been applied.
    #[error("did not answer in time; the outcome is unknown, check before submitting again")]
    TimeoutOutcomeUnknown,
    #[error("is unavailable")]
    Unavailable,
    #[error("is limiting the gateway's request rate")]
    RateLimited,
    /// A body that does not decode, or an envelope with `status: false`.
    #[error("sent an unexpected answer")]
    Malformed,
}

/// One failed upstream call. `Clone` because batched and coalesced callers share one failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamError {
    pub service: Service,
    pub kind: UpstreamErrorKind,
    /// The upstream's HTTP status, when it answered.
    pub status: Option<u16>,
    /// TOTVS's error body, when it sent one.
    pub fault: Option<Arc<Fault>>,
}

impl std::error::Error for UpstreamError {}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.kind)?;
        if let Some(message) = self
            .fault
            .as_ref()
            .and_then(|fault| fault.message.as_deref())
        {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl UpstreamError {
    pub fn new(service: Service, kind: UpstreamErrorKind) -> Self {
        Self {
            service,
            kind,
            status: None,
            fault: None,
        }
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault.map(Arc::new);
        self
    }
    /// Whether a stale cached answer may stand in for this failure.
    pub fn is_outage(&self) -> bool {
        matches!(
            self.kind,
            UpstreamErrorKind::Timeout
                | UpstreamErrorKind::Unavailable
                | UpstreamErrorKind::RateLimited
                | UpstreamErrorKind::Malformed
        )
    }
}
