//! Who may see and change which beneficiary, decided in the resolvers before any cache read or
//! upstream call, and the audit log of every decision (log target `audit`: identifiers only,
//! never names, tokens or health content).
//!
//! A refusal is the same `FORBIDDEN` whether or not the other beneficiary exists: it is
//! decided from the token and the keys the operation names, never from data.

use std::sync::Arc;

use async_graphql::Context;

use super::{errors::GatewayError, loaders::RequestContext};
use crate::auth::Caller;

/// A beneficiary read that was allowed, as its audit line names it: kept with a cached
/// response so that serving that response again is audited like the read itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReadFact {
    operation: &'static str,
    unique_key: Option<String>,
    subscriber_id: Option<String>,
}

/// The authenticated caller of the request. A request that reaches a resolver without one
/// (which `execute` never lets happen) is refused, never run as someone.
pub fn caller<'a>(ctx: &'a Context<'_>) -> Result<&'a Caller, GatewayError> {
    ctx.data_opt::<Arc<Caller>>()
        .map(Arc::as_ref)
        .ok_or(GatewayError::Forbidden)
}

/// May the caller read the beneficiary these keys name? Audited either way.
pub fn check_read(
    ctx: &Context<'_>,
    operation: &'static str,
    unique_key: Option<&str>,
    subscriber_id: Option<&str>,
) -> Result<(), GatewayError> {
    let caller = caller(ctx)?;
    let decision = caller.may_read(unique_key, subscriber_id);
    audit(
        caller,
        operation,
        unique_key,
        subscriber_id,
        None,
        &decision,
    );
    if decision.is_ok()
        && let Some(context) = ctx.data_opt::<RequestContext>()
    {
        context.record.read_allowed(ReadFact {
            operation,
            unique_key: unique_key.map(str::to_owned),
            subscriber_id: subscriber_id.map(str::to_owned),
        });
    }
    decision.map_err(|_| GatewayError::Forbidden)
}

/// The audit line of `read` for `caller`, answered from the whole-response cache.
pub(crate) fn audit_cached_read(caller: &Caller, read: &ReadFact) {
    let keys = Keys {
        unique_key: read.unique_key.as_deref(),
        subscriber_id: read.subscriber_id.as_deref(),
        protocol: None,
    };
    access_line(
        caller,
        read.operation,
        keys,
        "allowed",
        None,
        Some("response"),
    );
}

/// May the caller write for the beneficiary these keys name? Audited either way.
pub fn check_write(
    ctx: &Context<'_>,
    operation: &'static str,
    subscriber_id: Option<&str>,
    protocol: Option<&str>,
) -> Result<(), GatewayError> {
    let caller = caller(ctx)?;
    let decision = caller.may_write(None, subscriber_id);
    audit(caller, operation, None, subscriber_id, protocol, &decision);
    decision.map_err(|_| GatewayError::Forbidden)
}

/// Records a refusal decided elsewhere (a protocol that is not the caller's own).
pub fn refuse(
    caller: &Caller,
    operation: &'static str,
    subscriber_id: Option<&str>,
    protocol: Option<&str>,
    reason: &'static str,
) -> GatewayError {
    let keys = Keys {
        unique_key: None,
        subscriber_id,
        protocol,
    };
    access_line(caller, operation, keys, "refused", Some(reason), None);
    GatewayError::Forbidden
}

/// The outcome of a mutation, once TOTVS answered.
pub fn audit_write_outcome(
    ctx: &Context<'_>,
    operation: &'static str,
    subscriber_id: Option<&str>,
    protocol: Option<&str>,
    outcome: &'static str,
) {
    if let Ok(caller) = caller(ctx) {
        tracing::info!(
            target: "audit",
            sub = &*caller.sub,
            operation,
            subscriber_id,
            protocol,
            outcome,
            "mutation"
        );
    }
}

fn audit(
    caller: &Caller,
    operation: &'static str,
    unique_key: Option<&str>,
    subscriber_id: Option<&str>,
    protocol: Option<&str>,
    decision: &Result<(), crate::auth::Refusal>,
) {
    let (outcome, reason) = match decision {
        Ok(()) => ("allowed", None),
        Err(refusal) => ("refused", Some(refusal.reason())),
    };
    let keys = Keys {
        unique_key,
        subscriber_id,
        protocol,
    };
    access_line(caller, operation, keys, outcome, reason, None);
}

/// What an access line names besides the caller and the operation.
struct Keys<'a> {
    unique_key: Option<&'a str>,
    subscriber_id: Option<&'a str>,
    protocol: Option<&'a str>,
}

/// The one shape of an access line; absent keys are left out of it.
fn access_line(
    caller: &Caller,
    operation: &'static str,
    keys: Keys<'_>,
    outcome: &'static str,
    reason: Option<&'static str>,
    cache: Option<&'static str>,
) {
    tracing::info!(
        target: "audit",
        sub = &*caller.sub,
        operation,
        unique_key = keys.unique_key,
        subscriber_id = keys.subscriber_id,
        protocol = keys.protocol,
        outcome,
        reason,
        cache,
        "access"
    );
}
