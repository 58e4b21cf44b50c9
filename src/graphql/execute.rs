//! The GraphQL request path, whole: answer from the whole-response cache when it can, else
//! parse once (or take the parsed document from the document cache), pick the operation,
//! check it, run it with the request's loaders, shape the response (field order, codes,
//! warnings) and keep it when it may be kept. `server.rs` hands requests here and knows
//! nothing of GraphQL beyond the outcome's kind.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use async_graphql::{
    Response, ServerError, Value,
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};
use bytes::Bytes;
use tokio::time::Instant;
use tracing::Instrument;

use super::{
    AppSchema, build_schema_for_checked, codes, cost,
    documents::Documents,
    identifiers,
    loaders::{Budget, RequestContext, Warning},
    order,
    persisted::{ManifestError, PersistedQueries},
    responses::{RequestKey, ResponseKey, WholeResponses},
};
use crate::{
    auth::Caller,
    config::{LimitsSettings, Settings},
    metrics::{Metrics, Refusal},
    upstream::Upstreams,
};

/// Runs GraphQL requests against the schema and the upstreams.
#[derive(Clone)]
pub struct Executor {
    schema: AppSchema,
    /// For requests that passed full validation before (see `build_schema_for_checked`).
    checked_schema: AppSchema,
    upstreams: Arc<Upstreams>,
    max_concurrency: usize,
    limits: LimitsSettings,
    persisted: Arc<PersistedQueries>,
    metrics: Arc<Metrics>,
    documents: Arc<Documents>,
    responses: Option<Arc<WholeResponses>>,
}

/// How a request ended, for the HTTP layer to choose a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The operation ran (its fields may still have errors).
    Executed,
    /// The request failed before execution: syntax, validation, unknown operation, bad input.
    Rejected,
    /// A mutation arrived by a method that may not run one (GET).
    MutationNotAllowed,
}

pub struct Executed {
    pub response: Response,
    pub outcome: Outcome,
    /// The response as JSON, when the executor has it already: answered from the
    /// whole-response cache (then `response` is empty), or serialized to be stored there.
    pub body: Option<Bytes>,
}

impl Executed {
    fn rejected(error: ServerError) -> Self {
        Self {
            response: Response::from_errors(vec![error]),
            outcome: Outcome::Rejected,
            body: None,
        }
    }
}

impl Executor {
    pub fn new(
        schema: AppSchema,
        upstreams: Arc<Upstreams>,
        settings: &Settings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ManifestError> {
        Ok(Self {
            schema,
            checked_schema: build_schema_for_checked(&settings.server, Some(upstreams.clone())),
            responses: WholeResponses::new(&settings.cache, upstreams.clone(), metrics.clone())
                .map(Arc::new),
            upstreams,
            max_concurrency: settings.upstream.max_concurrency,
            limits: settings.limits.clone(),
            persisted: Arc::new(PersistedQueries::new(&settings.persisted_queries)?),
            metrics,
            documents: Arc::default(),
        })
    }

    /// Runs `request`; `allow_mutation` is false for methods that must not change anything.
    pub async fn execute(
        &self,
        caller: Arc<Caller>,
        request: async_graphql::Request,
        allow_mutation: bool,
    ) -> Executed {
        let started = std::time::Instant::now();
        let mut seen = Seen::default();
        let executed = self.run(caller, request, allow_mutation, &mut seen).await;
        let outcome = match executed.outcome {
            Outcome::Executed if executed.response.errors.is_empty() => "ok",
            Outcome::Executed => "error",
            Outcome::Rejected | Outcome::MutationNotAllowed => "rejected",
        };
        self.metrics
            .request(seen.name.as_deref(), seen.kind, outcome, started.elapsed());
        for (code, refusal) in [
            ("FORBIDDEN", Refusal::Forbidden),
            ("COST_ESTIMATED_TOO_EXPENSIVE", Refusal::CostEstimated),
            ("COST_ACTUAL_TOO_EXPENSIVE", Refusal::CostActual),
        ] {
            if executed.response.errors.iter().any(|e| has_code(e, code)) {
                self.metrics.refusal(refusal);
            }
        }
        executed
    }

    async fn run(
        &self,
        caller: Arc<Caller>,
        mut request: async_graphql::Request,
        allow_mutation: bool,
        seen: &mut Seen,
    ) -> Executed {
        let deadline = Instant::now() + self.limits.request_timeout();
        if let Err(err) = self.persisted.resolve(&mut request) {
            return Executed::rejected(err);
        }
        let request_key = RequestKey::new(&request);
        // Only what executed without errors is stored, so an entry for this key is what the
        // checks and the execution below would answer (see `responses.rs`).
        let response_key = match &self.responses {
            Some(responses) => {
                let key = ResponseKey::new(request_key.clone(), &caller);
                if let Some(hit) = responses.get(&key, &caller).await {
                    seen.kind = "query";
                    seen.name = hit.operation_name.as_deref().map(str::to_owned);
                    return Executed {
                        response: Response::default(),
                        outcome: Outcome::Executed,
                        body: Some(hit.body),
                    };
                }
                Some(key)
            }
            None => None,
        };
        let document = match self.documents.parse(&request_key.document) {
            Ok(document) => document,
            Err(err) => {
                let err = codes::with_default_code(ServerError::from(err), codes::PARSE_FAILED);
                return Executed::rejected(err);
            }
        };
        let operation_name = request.operation_name.clone();
        let Some(operation) = order::selected_operation(&document, operation_name.as_deref())
        else {
            let message = match &operation_name {
                Some(name) => format!("the document has no operation named {name:?}"),
                None => "the document has several operations: name one in operationName".into(),
            };
            let err = ServerError::new(message, None);
            return Executed::rejected(codes::with_default_code(err, codes::VALIDATION_FAILED));
        };
        seen.kind = match operation.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        seen.name = chosen_name(&document, operation_name.as_deref()).map(str::to_owned);
        if operation.ty == OperationType::Mutation && !allow_mutation {
            return Executed {
                response: Response::from_errors(vec![codes::with_default_code(
                    ServerError::new(
                        "mutations are not allowed over GET; send them with POST",
                        None,
                    ),
                    "METHOD_NOT_ALLOWED",
                )]),
                outcome: Outcome::MutationNotAllowed,
                body: None,
            };
        }
        let is_query = operation.ty == OperationType::Query;
        let checked = self.documents.checked(&request_key, || {
            let positions = identifiers::check(&document, operation, &request.variables)?;
            // Before validation and before any upstream call: a document of aliases costs
            // its parse and this walk, nothing more.
            let estimated =
                cost::estimate(&document, operation_name.as_deref(), &request.variables);
            Ok((positions, estimated))
        });
        let checked = match checked {
            Ok(checked) => checked,
            Err(err) => return Executed::rejected(err),
        };
        if checked.estimated > self.limits.max_upstream_calls {
            return Executed::rejected(too_expensive(
                checked.estimated,
                self.limits.max_upstream_calls,
            ));
        }

        let span = tracing::info_span!(
            "graphql",
            otel.name = %match &seen.name {
                Some(name) => format!("{} {name}", seen.kind),
                None => seen.kind.to_owned(),
            },
            graphql.operation.name = seen.name.as_deref(),
            graphql.operation.type = seen.kind,
        );
        let (context, batches) = RequestContext::new(
            self.upstreams.clone(),
            self.max_concurrency,
            checked.positions.clone(),
            Budget::new(self.limits.max_upstream_calls, deadline),
        );
        let warnings = context.warnings.clone();
        let executed = context.executed.clone();
        let record = context.record.clone();
        request.set_parsed_query(ExecutableDocument::clone(&document));
        let validated_before = checked.validated();
        let schema = if validated_before {
            &self.checked_schema
        } else {
            &self.schema
        };
        // Every upstream wait is bounded by the deadline already; this bound is for the rest.
        let last_resort = deadline + Duration::from_secs(1);
        let execution = batches.drive(schema.execute(request.data(context).data(caller)));
        let Ok(mut response) = tokio::time::timeout_at(last_resort, execution)
            .instrument(span)
            .await
        else {
            let err = codes::with_default_code(
                ServerError::new("the request's time ran out", None),
                "REQUEST_TIMEOUT",
            );
            return Executed {
                response: Response::from_errors(vec![err]),
                outcome: Outcome::Executed,
                body: None,
            };
        };
        let outcome = if validated_before {
            // The same document, operation and variables passed the same checks before.
            codes::code_field_errors(&mut response);
            Outcome::Executed
        } else if executed.load(Ordering::Relaxed) {
            checked.set_validated();
            Outcome::Executed
        } else {
            Outcome::Rejected
        };
        if matches!(response.data, Value::Object(_)) {
            order::order_like_document(&mut response.data, &document, operation_name.as_deref());
        }
        for error in &mut response.errors {
            // Anything the hooks left uncoded failed outside them (e.g. the operation lookup of
            // a validated document, which cannot fail here): the gateway's fault.
            codes::set_default_code(error, codes::INTERNAL);
        }
        add_warnings(&mut response, warnings.take());
        let mut body = None;
        if let (Some(responses), Some(key)) = (&self.responses, response_key)
            && outcome == Outcome::Executed
            && is_query
            && response.errors.is_empty()
            && response.extensions.is_empty()
            && response.http_headers.is_empty()
            && let Ok(json) = serde_json::to_vec(&response)
        {
            let json = Bytes::from(json);
            let name = seen.name.as_deref().map(Arc::from);
            responses.put(key, json.clone(), name, record.take()).await;
            body = Some(json);
        }
        Executed {
            response,
            outcome,
            body,
        }
    }
}

/// What the request turned out to be, for its metrics: unknown until its operation is found.
struct Seen {
    name: Option<String>,
    kind: &'static str,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            name: None,
            kind: "unknown",
        }
    }
}

/// The name of the operation that runs: the one asked for, or the document's only one when
/// that has a name (the parser keeps an anonymous operation without one).
fn chosen_name<'a>(
    document: &'a ExecutableDocument,
    requested: Option<&'a str>,
) -> Option<&'a str> {
    match &document.operations {
        DocumentOperations::Single(_) => None,
        DocumentOperations::Multiple(operations) => requested.or_else(|| {
            let mut names = operations.keys();
            match (names.next(), names.next()) {
                (Some(only), None) => Some(only.as_str()),
                _ => None,
            }
        }),
    }
}

fn has_code(error: &ServerError, code: &str) -> bool {
    error
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("code"))
        .is_some_and(|value| matches!(value, Value::String(c) if c == code))
}

fn too_expensive(estimated: u64, limit: u64) -> ServerError {
    let estimate = if estimated == u64::MAX {
        "unboundedly many".to_owned()
    } else {
        estimated.to_string()
    };
    let mut err = ServerError::new(
        format!(
            "this operation could make {estimate} upstream calls, more than the limit of {limit}; ask for fewer fields, aliases or a smaller pageSize"
        ),
        None,
    );
    let extensions = err.extensions.get_or_insert_with(Default::default);
    extensions.set("code", "COST_ESTIMATED_TOO_EXPENSIVE");
    extensions.set("estimated", estimated);
    extensions.set("limit", limit);
    err
}

fn add_warnings(response: &mut Response, warnings: Vec<Warning>) {
    if warnings.is_empty() {
        return;
    }
    let list = warnings
        .into_iter()
        .map(|w| {
            async_graphql::value!({
                "code": w.code,
                "service": w.service.as_str(),
                "message": w.message,
                "ageSeconds": w.age_secs,
            })
        })
        .collect();
    response
        .extensions
        .insert("warnings".into(), Value::List(list));
}
