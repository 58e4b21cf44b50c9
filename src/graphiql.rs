//! GraphiQL for browsers: the page on `GET /graphql` (`Accept: text/html`, no `query`) and its
//! scripts and styles under `/graphiql/`, vendored so the page works without internet access.

use std::sync::Arc;

use axum::{
    extract::Request,
    http::{Method, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

/// Whether GraphiQL is served, and the headers its Headers tab opens with.
#[derive(Clone)]
pub(crate) struct GraphiQL {
    enabled: bool,
    /// A JSON object as text (the sandbox's staff token).
    headers: Option<Arc<str>>,
}

impl GraphiQL {
    pub(crate) fn new(enabled: bool, headers: Option<&str>) -> Self {
        Self {
            enabled,
            headers: headers.map(Arc::from),
        }
    }

    /// The page, or `None` when GraphiQL is off.
    pub(crate) fn page(&self) -> Option<Response> {
        self.enabled
            .then(|| Html(page(self.headers.as_deref())).into_response())
    }

    /// One of the page's files, or `None` when GraphiQL is off or there is no such file.
    pub(crate) fn asset(&self, file: &str) -> Option<Response> {
        let (body, content_type): (&'static [u8], &str) = match file {
            "graphiql.min.js" => (
                include_bytes!("../assets/graphiql/graphiql.min.js"),
                "text/javascript",
            ),
            "graphiql.min.css" => (
                include_bytes!("../assets/graphiql/graphiql.min.css"),
                "text/css",
            ),
            "react.production.min.js" => (
                include_bytes!("../assets/graphiql/react.production.min.js"),
                "text/javascript",
            ),
            "react-dom.production.min.js" => (
                include_bytes!("../assets/graphiql/react-dom.production.min.js"),
                "text/javascript",
            ),
            _ => return None,
        };
        self.enabled.then(|| {
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, "public, max-age=86400"),
                ],
                body,
            )
                .into_response()
        })
    }
}

/// A browser asking for the page: it accepts HTML and names no operation. A GET with a `query`
/// parameter is an operation, whatever the browser accepts.
pub(crate) fn is_page_request(request: &Request) -> bool {
    request.method() == Method::GET
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
        && !request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("query=")))
}

/// The page, opening with `headers` (a JSON object as text) in its Headers tab.
fn page(headers: Option<&str>) -> String {
    let page = include_str!("../assets/graphiql/index.html");
    match headers {
        Some(headers) => page.replace(
            "const defaultHeaders = undefined;",
            // A JSON string is a JavaScript string literal; `<` escaped so that no value can
            // close the script element.
            &format!(
                "const defaultHeaders = {};",
                serde_json::Value::from(headers)
                    .to_string()
                    .replace('<', "\\u003c")
            ),
        ),
        None => page.to_owned(),
    }
}
