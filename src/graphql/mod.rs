//! The GraphQL schema: types, resolvers, loaders and the mapping of errors to `extensions.code`.

pub(crate) mod access;
pub(crate) mod codes;
pub(crate) mod cost;
pub(crate) mod documents;
pub(crate) mod errors;
pub(crate) mod execute;
pub(crate) mod identifiers;
pub(crate) mod loaders;
pub(crate) mod mutation;
pub(crate) mod order;
pub(crate) mod persisted;
pub(crate) mod query;
pub(crate) mod responses;
pub(crate) mod scalars;
pub(crate) mod types;
pub(crate) mod validation;

use std::sync::Arc;

use async_graphql::{EmptySubscription, SDLExportOptions, Schema, ValidationMode};

use crate::{config::ServerSettings, upstream::Upstreams};

pub type AppSchema = Schema<query::Query, mutation::Mutation, EmptySubscription>;

/// The schema served at `/graphql`, a federation subgraph.
pub fn build_schema(settings: &ServerSettings, upstreams: Option<Arc<Upstreams>>) -> AppSchema {
    build(settings, upstreams, true)
}

/// The same schema for requests that passed its full validation before (see `documents.rs`):
/// validation in async-graphql's `Fast` mode, and no `EngineCodes` extension, whose hooks
/// would only code errors such a request cannot raise (parse and validation) or that
/// `execute.rs` codes afterwards (argument coercion). Without any extension the engine skips
/// the extension chain around every field.
pub(crate) fn build_schema_for_checked(
    settings: &ServerSettings,
    upstreams: Option<Arc<Upstreams>>,
) -> AppSchema {
    build(settings, upstreams, false)
}

fn build(settings: &ServerSettings, upstreams: Option<Arc<Upstreams>>, full: bool) -> AppSchema {
    let mut builder = Schema::build(query::Query, mutation::Mutation, EmptySubscription)
        .enable_federation()
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity);
    builder = if full {
        builder.extension(codes::EngineCodes)
    } else {
        builder.validation_mode(ValidationMode::Fast)
    };
    if !settings.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    if let Some(upstreams) = upstreams {
        builder = builder.data(upstreams);
    }
    builder.finish()
}

/// The subgraph SDL, as `protocol-graph schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    build_schema(&ServerSettings::default(), None)
        .sdl_with_options(SDLExportOptions::new().federation())
}
