//! The one place errors become GraphQL errors with `extensions.code`.
//!
//! The codes and when each is answered are listed once, for clients, in README.md ("Errors");
//! the engine's own codes are set in `codes.rs`.

use async_graphql::{Context, ErrorExtensionValues, Value};

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
}

impl From<UpstreamError> for GatewayError {
    fn from(err: UpstreamError) -> Self {
        Self::Upstream(err)
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
                err.to_string()
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
    if let Some(code) = &fault.code {
        ext.set("upstreamCode", code.as_str());
    }
    if !fault.details.is_empty() {
        let details = fault
            .details
            .iter()
            .map(|detail| {
                let fields = [
                    ("code", &detail.code),
                    ("message", &detail.message),
                    ("detailedMessage", &detail.detailed_message),
                ];
                Value::Object(
                    fields
                        .into_iter()
                        .filter_map(|(key, value)| {
                            Some((async_graphql::Name::new(key), Value::from(value.clone()?)))
                        })
                        .collect(),
                )
            })
            .collect::<Vec<_>>();
        ext.set("details", Value::List(details));
    }
    if err.kind == UpstreamErrorKind::AttachmentDownloadFailed
        && let Some(url) = failed_url(fault)
    {
        ext.set("failedUrl", url);
    }
}

/// TOTVS names the URL it could not download at the end of a detail: `...; Url: <href>`.
fn failed_url(fault: &crate::upstream::Fault) -> Option<String> {
    let texts = fault
        .details
        .iter()
        .filter_map(|d| d.detailed_message.as_deref())
        .chain(fault.detailed_message.as_deref());
    texts
        .filter_map(|text| {
            text.rsplit_once("Url:")
                .map(|(_, url)| url.trim().to_owned())
        })
        .find(|url| !url.is_empty())
}
