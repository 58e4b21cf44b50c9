//! Persisted queries: Apollo's automatic persisted queries (APQ: a client sends the SHA-256 of
//! its document, and the document itself only when the gateway does not know it yet; GET with
//! the hash makes a response cacheable by a CDN), and a safelist mode for production
//! frontends that runs only the operations of a manifest in Apollo's persisted-query manifest
//! format (`{"format": "apollo-persisted-query-manifest", "version": 1, "operations":
//! [{"id", "name", "type", "body"}]}`).
//!
//! Codes, as Apollo's: `PERSISTED_QUERY_NOT_FOUND` (send the document with the hash),
//! `PERSISTED_QUERY_NOT_SUPPORTED` (persisted queries are off), `PERSISTED_QUERY_NOT_IN_LIST`
//! (safelist mode: not an operation of the manifest), `PERSISTED_QUERY_HASH_MISMATCH`.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{ServerError, Value};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::PersistedQueriesSettings;

use super::codes;

/// Why the persisted-query manifest could not be used; stops the start.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("persisted_queries.safelist {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The documents the gateway knows by hash.
pub struct PersistedQueries {
    enabled: bool,
    /// Documents registered by clients (APQ), bounded in bytes.
    registered: moka::sync::Cache<String, Arc<str>>,
    /// Safelist mode: the manifest's operations by id; nothing else runs.
    safelist: Option<Safelist>,
}

struct Safelist {
    by_id: HashMap<String, Arc<str>>,
    /// The manifest's bodies, so a client sending a listed document in full may run it.
    bodies: std::collections::HashSet<Arc<str>>,
}

#[derive(Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    operations: Vec<ManifestOperation>,
}

#[derive(Deserialize)]
struct ManifestOperation {
    id: String,
    body: String,
}

impl PersistedQueries {
    pub fn new(settings: &PersistedQueriesSettings) -> Result<Self, ManifestError> {
        let safelist = match settings.safelist.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => Some(load_manifest(path)?),
            None => None,
        };
        Ok(Self {
            enabled: settings.enabled,
            registered: moka::sync::Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(|hash: &String, query: &Arc<str>| {
                    u32::try_from(hash.len() + query.len()).unwrap_or(u32::MAX)
                })
                .build(),
            safelist,
        })
    }

    /// The document `request` runs: its own, or the one its hash names. Registers a new
    /// document sent with its hash (APQ), unless in safelist mode.
    pub fn resolve(&self, request: &mut async_graphql::Request) -> Result<(), ServerError> {
        let hash = persisted_hash(request)?;
        if let Some(safelist) = &self.safelist {
            return match hash {
                Some(hash) if request.query.is_empty() => match safelist.by_id.get(&hash) {
                    Some(body) => {
                        request.query = body.to_string();
                        Ok(())
                    }
                    None => Err(not_in_list()),
                },
                _ if safelist.bodies.contains(request.query.as_str()) => Ok(()),
                _ => Err(not_in_list()),
            };
        }
        let Some(hash) = hash else {
            return Ok(());
        };
        if !self.enabled {
            return Err(error(
                "persisted queries are not supported here; send the document",
                "PERSISTED_QUERY_NOT_SUPPORTED",
            ));
        }
        if request.query.is_empty() {
            return match self.registered.get(&hash) {
                Some(query) => {
                    request.query = query.to_string();
                    Ok(())
                }
                // Apollo clients recognise this message and send the document.
                None => Err(error("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")),
            };
        }
        if sha256_hex(&request.query) != hash {
            return Err(error(
                "the document's SHA-256 does not match extensions.persistedQuery.sha256Hash",
                "PERSISTED_QUERY_HASH_MISMATCH",
            ));
        }
        self.registered
            .insert(hash, Arc::from(request.query.as_str()));
        Ok(())
    }
}

fn load_manifest(path: &str) -> Result<Safelist, ManifestError> {
    let invalid = |reason: String| ManifestError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|err| invalid(err.to_string()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|err| invalid(format!("not a manifest: {err}")))?;
    if manifest.format != "apollo-persisted-query-manifest" || manifest.version != 1 {
        return Err(invalid(
            "expected format apollo-persisted-query-manifest, version 1".into(),
        ));
    }
    let mut by_id = HashMap::new();
    let mut bodies = std::collections::HashSet::new();
    for operation in manifest.operations {
        let body: Arc<str> = Arc::from(operation.body);
        bodies.insert(body.clone());
        by_id.insert(operation.id, body);
    }
    Ok(Safelist { by_id, bodies })
}

/// `extensions.persistedQuery.sha256Hash` of a version-1 persisted query, if any.
fn persisted_hash(request: &async_graphql::Request) -> Result<Option<String>, ServerError> {
    let Some(persisted) = request.extensions.0.get("persistedQuery") else {
        return Ok(None);
    };
    let bad = || {
        error(
            "extensions.persistedQuery must be {\"version\": 1, \"sha256Hash\": \"<64 hex digits>\"}",
            codes::BAD_REQUEST,
        )
    };
    let Value::Object(fields) = persisted else {
        return Err(bad());
    };
    let version_1 =
        matches!(fields.get("version"), Some(Value::Number(n)) if n.as_u64() == Some(1));
    match fields.get("sha256Hash") {
        Some(Value::String(hash))
            if version_1 && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(Some(hash.to_ascii_lowercase()))
        }
        _ => Err(bad()),
    }
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn not_in_list() -> ServerError {
    error(
        "only the operations of this gateway's persisted-query list run here",
        "PERSISTED_QUERY_NOT_IN_LIST",
    )
}

fn error(message: &str, code: &'static str) -> ServerError {
    codes::with_default_code(ServerError::new(message, None), code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PersistedQueriesSettings {
        PersistedQueriesSettings::default()
    }

    fn with_hash(query: &str, hash: &str) -> async_graphql::Request {
        let mut request = async_graphql::Request::new(query);
        request.extensions.0.insert(
            "persistedQuery".into(),
            async_graphql::value!({ "version": 1, "sha256Hash": hash }),
        );
        request
    }

    fn code(err: ServerError) -> String {
        err.extensions.unwrap().get("code").unwrap().to_string()
    }

    #[test]
    fn a_hash_alone_is_unknown_until_its_document_is_sent_once() {
        let store = PersistedQueries::new(&settings()).unwrap();
        let query = "{ __typename }";
        let hash = sha256_hex(query);
        assert_eq!(
            code(store.resolve(&mut with_hash("", &hash)).unwrap_err()),
            "\"PERSISTED_QUERY_NOT_FOUND\""
        );
        store.resolve(&mut with_hash(query, &hash)).unwrap();
        let mut by_hash = with_hash("", &hash);
        store.resolve(&mut by_hash).unwrap();
        assert_eq!(by_hash.query, query);
    }

    #[test]
    fn a_document_with_another_documents_hash_is_refused_and_not_registered() {
        let store = PersistedQueries::new(&settings()).unwrap();
        let hash = sha256_hex("{ __typename }");
        assert_eq!(
            code(
                store
                    .resolve(&mut with_hash("{ evil }", &hash))
                    .unwrap_err()
            ),
            "\"PERSISTED_QUERY_HASH_MISMATCH\""
        );
        assert!(store.resolve(&mut with_hash("", &hash)).is_err());
    }

    #[test]
    fn with_persisted_queries_off_a_hash_is_not_supported() {
        let store = PersistedQueries::new(&PersistedQueriesSettings {
            enabled: false,
            ..settings()
        })
        .unwrap();
        let err = store
            .resolve(&mut with_hash("", &sha256_hex("{ a }")))
            .unwrap_err();
        assert_eq!(code(err), "\"PERSISTED_QUERY_NOT_SUPPORTED\"");
        store
            .resolve(&mut async_graphql::Request::new("{ a }"))
            .unwrap();
    }

    #[test]
    fn the_safelist_runs_only_its_operations_by_id_or_by_body() {
        let dir = std::env::temp_dir().join(format!("pq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("manifest.json");
        let listed = "query Latest { __typename }";
        std::fs::write(
            &path,
            serde_json::json!({
                "format": "apollo-persisted-query-manifest", "version": 1,
                "operations": [{ "id": sha256_hex(listed), "name": "Latest", "type": "query", "body": listed }]
            })
            .to_string(),
        )
        .unwrap();
        let store = PersistedQueries::new(&PersistedQueriesSettings {
            safelist: Some(path.display().to_string()),
            ..settings()
        })
        .unwrap();
        let mut by_id = with_hash("", &sha256_hex(listed));
        store.resolve(&mut by_id).unwrap();
        assert_eq!(by_id.query, listed);
        store
            .resolve(&mut async_graphql::Request::new(listed))
            .unwrap();
        let free_form = store.resolve(&mut async_graphql::Request::new("{ other }"));
        assert_eq!(
            code(free_form.unwrap_err()),
            "\"PERSISTED_QUERY_NOT_IN_LIST\""
        );
        // No registration in safelist mode: a client cannot add to the list.
        let other = "{ other }";
        assert!(
            store
                .resolve(&mut with_hash(other, &sha256_hex(other)))
                .is_err()
        );
        assert!(
            store
                .resolve(&mut with_hash("", &sha256_hex(other)))
                .is_err()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_malformed_manifest_stops_the_start_with_its_path() {
        let err = PersistedQueries::new(&PersistedQueriesSettings {
            safelist: Some("/nonexistent/manifest.json".into()),
            ..settings()
        })
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("persisted_queries.safelist /nonexistent/manifest.json")
        );
    }
}
