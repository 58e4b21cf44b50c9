//! Parsed and checked documents, kept across requests: a client sends the same few operations
//! over and over, and parsing one (pest) costs more than executing it from warm caches.
//!
//! - by the document's text: the parsed document (a failed parse is not kept);
//! - by text, operation name and variables: the gateway's own checks (identifiers given as
//!   numbers, the cost estimate), and whether the engine's full validation passed, after
//!   which the same request runs on a schema that validates in async-graphql's `Fast` mode
//!   (the limits of depth and complexity are still checked there). Validation reads the
//!   variables' values, so a passed validation is only reused for the very same ones.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use async_graphql::{
    ServerError,
    parser::{parse_query, types::ExecutableDocument},
};
use moka::sync::Cache;

use super::{identifiers::ArgumentPositions, responses::RequestKey};

/// What the gateway's checks found for one request; see the module's documentation.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) positions: Arc<ArgumentPositions>,
    pub(crate) estimated: u64,
    validated: AtomicBool,
}

impl Checked {
    /// Whether the engine's full validation passed for this request before.
    pub(crate) fn validated(&self) -> bool {
        self.validated.load(Ordering::Relaxed)
    }

    pub(crate) fn set_validated(&self) {
        self.validated.store(true, Ordering::Relaxed);
    }
}

/// Bytes of parsed documents kept: a parsed document takes several times its text.
const PARSED_MAX_BYTES: u64 = 8 * 1024 * 1024;
const PARSED_BYTES_PER_CHAR: usize = 8;
const CHECKED_MAX_BYTES: u64 = 4 * 1024 * 1024;
const ENTRY_OVERHEAD: usize = 256;

pub(crate) struct Documents {
    parsed: Cache<Arc<str>, Arc<ExecutableDocument>>,
    checked: Cache<RequestKey, Arc<Checked>>,
}

impl Default for Documents {
    fn default() -> Self {
        let weight = |bytes: usize| u32::try_from(bytes + ENTRY_OVERHEAD).unwrap_or(u32::MAX);
        Self {
            parsed: Cache::builder()
                .max_capacity(PARSED_MAX_BYTES)
                .weigher(move |text: &Arc<str>, _: &Arc<ExecutableDocument>| {
                    weight(text.len().saturating_mul(PARSED_BYTES_PER_CHAR))
                })
                .build(),
            checked: Cache::builder()
                .max_capacity(CHECKED_MAX_BYTES)
                // The document's text is shared with the parsed cache's key.
                .weigher(move |key: &RequestKey, _: &Arc<Checked>| {
                    weight(key.variables.len() + key.operation_name.as_deref().map_or(0, str::len))
                })
                .build(),
        }
    }
}

impl Documents {
    /// The parsed document of `text`.
    pub(crate) fn parse(
        &self,
        text: &Arc<str>,
    ) -> Result<Arc<ExecutableDocument>, async_graphql::parser::Error> {
        if let Some(document) = self.parsed.get(text) {
            return Ok(document);
        }
        let document = Arc::new(parse_query(text.as_ref())?);
        self.parsed.insert(text.clone(), document.clone());
        Ok(document)
    }

    /// The checks of `key`, run by `check` the first time (a refusal is not kept).
    pub(crate) fn checked(
        &self,
        key: &RequestKey,
        check: impl FnOnce() -> Result<(ArgumentPositions, u64), ServerError>,
    ) -> Result<Arc<Checked>, ServerError> {
        if let Some(checked) = self.checked.get(key) {
            return Ok(checked);
        }
        let (positions, estimated) = check()?;
        let checked = Arc::new(Checked {
            positions: Arc::new(positions),
            estimated,
            validated: AtomicBool::new(false),
        });
        self.checked.insert(key.clone(), checked.clone());
        Ok(checked)
    }
}
