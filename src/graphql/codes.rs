//! `extensions.code` for the errors the GraphQL engine raises itself, set where it raises them
//! (async-graphql's extension hooks), never by reading their text.
//!
//! - the parse hook: what async-graphql checks right after parsing (nesting of the document,
//!   directives per field) is a validation failure: `GRAPHQL_VALIDATION_FAILED`;
//! - the validation hook: `BAD_USER_INPUT` for a value of the wrong type given to an argument
//!   (as a literal or through a variable; the engine reports it at the argument's name), else
//!   `GRAPHQL_VALIDATION_FAILED`;
//! - the resolve hook: a field error without a code can only come from the engine coercing the
//!   client's arguments and variables (every resolver error of ours carries a code, see
//!   `errors.rs`): `BAD_USER_INPUT`.
//!
//! Syntax errors never reach the engine: `execute` parses the document once, itself, and
//! answers `GRAPHQL_PARSE_FAILED`.

use std::sync::{Arc, atomic::Ordering};

use async_graphql::{
    Response, ServerError, ServerResult, ValidationResult, Value,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextResolve,
        NextValidation, ResolveInfo,
    },
    parser::types::ExecutableDocument,
};

use super::loaders::RequestContext;

pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
pub const INTERNAL: &str = "INTERNAL_SERVER_ERROR";
pub const BAD_REQUEST: &str = "BAD_REQUEST";

/// Gives `error` `code` unless it already has one.
pub fn with_default_code(mut error: ServerError, code: &'static str) -> ServerError {
    set_default_code(&mut error, code);
    error
}

pub fn set_default_code(error: &mut ServerError, code: &'static str) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
}

/// What the resolve hook below does, for a response of the schema without the extension
/// (see `build_schema_for_checked`): a field error (it has a path) without a code came from
/// the engine coercing the client's arguments.
pub fn code_field_errors(response: &mut Response) {
    for error in &mut response.errors {
        if !error.path.is_empty() {
            set_default_code(error, BAD_USER_INPUT);
        }
    }
}

/// The extension that codes the engine's own errors.
pub struct EngineCodes;

impl ExtensionFactory for EngineCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(EngineCodesExtension)
    }
}

struct EngineCodesExtension;

#[async_graphql::async_trait::async_trait]
impl Extension for EngineCodesExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &async_graphql::Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|err| with_default_code(err, VALIDATION_FAILED))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let arguments = ctx
            .data_opt::<RequestContext>()
            .map(|context| &context.argument_positions);
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|err| {
                    let at_argument = arguments.is_some_and(|arguments| {
                        err.locations.iter().any(|pos| arguments.contains(*pos))
                    });
                    let code = if at_argument {
                        BAD_USER_INPUT
                    } else {
                        VALIDATION_FAILED
                    };
                    with_default_code(err, code)
                })
                .collect()
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        // Reached only once the request parsed and validated: from here on, errors are the
        // fields' own and the request as a whole was acceptable.
        if let Some(context) = ctx.data_opt::<RequestContext>() {
            context.executed.store(true, Ordering::Relaxed);
        }
        next.run(ctx, operation_name).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        next.run(ctx, info)
            .await
            .map_err(|err| with_default_code(err, BAD_USER_INPUT))
    }
}
