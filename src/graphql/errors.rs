//! The one place errors become GraphQL errors with `extensions.code`.
//!
//! The codes and when each is answered are listed once, for clients, in README.md ("Errors");
//! the engine's own codes are set in `codes.rs`.

use async_graphql::{Context, ErrorExtensionValues, Value};

use super::loaders::LoadError;
use crate::upstream::{UpstreamError, UpstreamErrorKind};

/// Why a field could not be resolved: the error type of every resolver.
///
/// Deliberately not `Display`: async-graphql converts any `Display` error into a GraphQL error
/// without extensions, and this type must only ever become one through the `From` below.
#[derive(Debug)]
pub enum GatewayError {
    /// The client's input fails a check, before anything is sent upstream.
    BadUserInput {
        argument: String,
        message: String,
    },
    Upstream(UpstreamError),
    /// A write that failed; `sent_hrefs` are the caller's own documents, the only text of
    /// TOTVS's `detailedMessage` that may reach the caller (as `failedUrl`).
    Write {
        error: UpstreamError,
        sent_hrefs: Vec<String>,
    },
    /// The request spent its upstream calls.
    TooExpensive {
        limit: u64,
    },
    /// The request's deadline passed first.
    RequestTimeout {
        outcome_unknown: bool,
    },
    /// The caller may not touch this beneficiary (or protocol).
    Forbidden,
}

impl From<UpstreamError> for GatewayError {
    fn from(err: UpstreamError) -> Self {
        Self::Upstream(err)
    }
}

impl From<LoadError> for GatewayError {
    fn from(err: LoadError) -> Self {
        match err {
            LoadError::Upstream(err) => Self::Upstream(err),
            LoadError::TooExpensive { limit } => Self::TooExpensive { limit },
            LoadError::Deadline => Self::RequestTimeout {
                outcome_unknown: false,
            },
        }
    }
}

impl GatewayError {
    pub fn bad_input(argument: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            argument: argument.into(),
            message: message.into(),
        }
    }
}

/// The value of a nullable field: an error becomes `null` at this field plus an entry in
/// `errors`, as the GraphQL spec has it, instead of removing the field from its parent
/// (async-graphql 7.2 omits an errored field; see the test `an_errored_nullable_field_is_null`).
pub fn nullable<T>(ctx: &Context<'_>, result: Result<T, GatewayError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(err) => {
            let err = async_graphql::Error::from(err).into_server_error(ctx.item.pos);
            ctx.add_error(ctx.set_error_path(err));
            None
        }
    }
}

pub fn upstream_code(kind: UpstreamErrorKind) -> &'static str {
    use UpstreamErrorKind::*;
    match kind {
        BadRequest => "BAD_USER_INPUT",
        NotFound => "NOT_FOUND",
        AttachmentsNotAllowed => "ATTACHMENTS_NOT_ALLOWED",
        AttachmentDownloadFailed => "ATTACHMENT_DOWNLOAD_FAILED",
        AuthFailed => "UPSTREAM_AUTH_FAILED",
        Timeout | TimeoutOutcomeUnknown => "UPSTREAM_TIMEOUT",
        Unavailable => "UPSTREAM_UNAVAILABLE",
        RateLimited => "RATE_LIMITED",
        Malformed => "UPSTREAM_ERROR",
    }
}

impl From<GatewayError> for async_graphql::Error {
    fn from(err: GatewayError) -> Self {
        let mut ext = ErrorExtensionValues::default();
        let message = match err {
            GatewayError::BadUserInput { argument, message } => {
                ext.set("code", "BAD_USER_INPUT");
                ext.set("argument", argument);
                message
            }
            GatewayError::Upstream(err) => {
                upstream_extensions(&err, &mut ext);
                client_text(&err.to_string())
            }
            GatewayError::Write { error, sent_hrefs } => {
                upstream_extensions(&error, &mut ext);
                if error.kind == UpstreamErrorKind::AttachmentDownloadFailed
                    && let Some(url) = error
                        .fault
                        .as_deref()
                        .and_then(|fault| failed_url(fault, &sent_hrefs))
                {
                    ext.set("failedUrl", url);
                }
                client_text(&error.to_string())
            }
            GatewayError::TooExpensive { limit } => {
                ext.set("code", "COST_ACTUAL_TOO_EXPENSIVE");
                ext.set("limit", limit);
                format!(
                    "this request reached its limit of {limit} upstream calls; ask for fewer fields, aliases or a smaller pageSize"
                )
            }
            GatewayError::Forbidden => {
                ext.set("code", "FORBIDDEN");
                crate::auth::Refusal::MESSAGE.to_owned()
            }
            GatewayError::RequestTimeout { outcome_unknown } => {
                ext.set("code", "REQUEST_TIMEOUT");
                if outcome_unknown {
                    ext.set("outcomeUnknown", true);
                }
                "the request's time ran out before this field finished".to_owned()
            }
        };
        async_graphql::Error {
            message,
            source: None,
            extensions: Some(ext),
        }
    }
}

fn upstream_extensions(err: &UpstreamError, ext: &mut ErrorExtensionValues) {
    ext.set("code", upstream_code(err.kind));
    ext.set("service", err.service.as_str());
    if let Some(status) = err.status {
        ext.set("status", i32::from(status));
    }
    if err.kind == UpstreamErrorKind::TimeoutOutcomeUnknown {
        ext.set("outcomeUnknown", true);
    }
    let Some(fault) = &err.fault else { return };
    // TOTVS's code is upstream text like any other: an upstream can put anything in it.
    if let Some(code) = fault
        .code
        .as_deref()
        .map(client_text)
        .filter(|c| !c.is_empty())
    {
        ext.set("upstreamCode", code);
    }
    if !fault.details.is_empty() {
        // `detailedMessage` and `helpUrl` are TOTVS's technical text (stack traces, hosts):
        // logged where the answer is read, never sent.
        let details = fault
            .details
            .iter()
            .map(|detail| {
                let fields = [("code", &detail.code), ("message", &detail.message)];
                Value::Object(
                    fields
                        .into_iter()
                        .filter_map(|(key, value)| {
                            let text = client_text(value.as_deref()?);
                            Some((async_graphql::Name::new(key), Value::from(text)))
                        })
                        .collect(),
                )
            })
            .collect::<Vec<_>>();
        ext.set("details", Value::List(details));
    }
}

/// Upstream text as a client may see it: at most 300 characters, no control characters.
pub fn client_text(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_UPSTREAM_TEXT_CHARS)
        .collect()
}

const MAX_UPSTREAM_TEXT_CHARS: usize = 300;

/// The href TOTVS could not download: one the caller sent that TOTVS's text names. TOTVS
/// names it at the end of a detail (`...; Url: <href>`); nothing else of that text is passed on.
fn failed_url(fault: &crate::upstream::Fault, sent_hrefs: &[String]) -> Option<String> {
    let texts = fault
        .details
        .iter()
        .filter_map(|d| d.detailed_message.as_deref())
        .chain(fault.detailed_message.as_deref());
    texts
        .filter_map(|text| text.rsplit_once("Url:").map(|(_, url)| url.trim()))
        .find_map(|url| sent_hrefs.iter().find(|href| href.as_str() == url).cloned())
}
