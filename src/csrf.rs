//! Apollo Router's CSRF rule: run an operation only if a browser would have preflighted it.
//!
//! A cross-site page can make a browser send a "simple" request (no preflight) with the user's
//! cookies or ambient credentials; CORS then only hides the answer, after the side effects. A
//! request is simple when its `Content-Type` is absent or one of the three CORS-safelisted
//! types and it carries no custom header. So a request passes when its `Content-Type` is some
//! other type (JSON, say), or when it carries a header a browser never adds on its own.
//!
//! Like the Router (`apollo-router/src/plugins/csrf.rs`), a `Content-Type` that cannot be
//! parsed, or that is not valid visible ASCII, counts as not preflighted: better to ask the
//! client for a preflight header than to guess what a browser did with it.

use axum::http::{HeaderMap, HeaderName, header::CONTENT_TYPE};

use crate::config::{ConfigError, CsrfSettings};

/// The content types a browser sends without a preflight (the fetch standard's CORS-safelisted
/// `Content-Type` values), in the order Apollo lists them in its refusal.
pub(crate) const NON_PREFLIGHTED_CONTENT_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "text/plain",
];

/// The headers Apollo clients send to prove a preflight (the default of `csrf.required_headers`).
#[cfg(test)]
pub(crate) const DEFAULT_REQUIRED_HEADERS: [&str; 2] =
    ["x-apollo-operation-name", "apollo-require-preflight"];

impl CsrfSettings {
    /// The required headers as names, or an error naming `csrf.required_headers`.
    pub fn header_names(&self) -> Result<Vec<HeaderName>, ConfigError> {
        self.required_headers
            .iter()
            .map(|name| {
                HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| ConfigError::Invalid {
                    name: "csrf.required_headers",
                    reason: format!("{name:?} is not a header name"),
                })
            })
            .collect()
    }
}

/// The check built once from [`CsrfSettings`], with its refusal message ready.
#[derive(Clone, Debug)]
pub(crate) struct Csrf {
    enabled: bool,
    required_headers: Vec<HeaderName>,
    refusal: String,
}

impl Csrf {
    pub(crate) fn new(settings: &CsrfSettings) -> Result<Self, ConfigError> {
        let required_headers = settings.header_names()?;
        let names: Vec<&str> = required_headers.iter().map(HeaderName::as_str).collect();
        // Apollo's wording, so that clients and their docs recognize it.
        let refusal = format!(
            "This operation has been blocked as a potential Cross-Site Request Forgery (CSRF). \
             Please either specify a 'content-type' header (with a mime-type that is not one of {}) \
             or provide one of the following headers: {}",
            NON_PREFLIGHTED_CONTENT_TYPES.join(", "),
            names.join(", ")
        );
        Ok(Self {
            enabled: settings.enabled,
            required_headers,
            refusal,
        })
    }

    /// Whether the request may run: always when the check is off.
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        !self.enabled || is_preflighted(headers, &self.required_headers)
    }

    /// The client-facing message of a refusal (`CSRF_ERROR`).
    pub(crate) fn refusal_message(&self) -> &str {
        &self.refusal
    }
}

/// Whether a browser would have preflighted a request with these headers.
pub(crate) fn is_preflighted(headers: &HeaderMap, required_headers: &[HeaderName]) -> bool {
    content_type_requires_preflight(headers) || has_required_header(headers, required_headers)
}

/// True when a `Content-Type` is present, parses, and its essence is not CORS-safelisted.
fn content_type_requires_preflight(headers: &HeaderMap) -> bool {
    // Several `Content-Type` fields are combined as the fetch standard does (", "); the result
    // then fails to parse as one MIME type, which counts as not preflighted, as in the Router.
    let mut values = Vec::new();
    for value in headers.get_all(CONTENT_TYPE) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        values.push(value.trim().replace('\t', " "));
    }
    if values.is_empty() {
        return false;
    }
    let combined = values.join(", ");
    match mime_essence(&combined) {
        Some(essence) => !NON_PREFLIGHTED_CONTENT_TYPES
            .iter()
            .any(|safelisted| essence.eq_ignore_ascii_case(safelisted)),
        None => false,
    }
}

/// The `type/subtype` part of a MIME type, or `None` when it is not `token/token`.
fn mime_essence(value: &str) -> Option<&str> {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let (kind, subtype) = essence.split_once('/')?;
    let is_token = |part: &str| !part.is_empty() && part.bytes().all(is_token_byte);
    (is_token(kind) && is_token(subtype)).then_some(essence)
}

/// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn has_required_header(headers: &HeaderMap, required_headers: &[HeaderName]) -> bool {
    required_headers.iter().any(|name| {
        headers
            .get_all(name)
            .iter()
            .any(|value| !value.as_bytes().trim_ascii().is_empty())
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn defaults() -> Vec<HeaderName> {
        CsrfSettings::default().header_names().unwrap()
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    fn preflighted(pairs: &[(&str, &[u8])]) -> bool {
        is_preflighted(&headers(pairs), &defaults())
    }

    #[test]
    fn a_request_without_content_type_or_header_is_refused() {
        assert!(!preflighted(&[]));
        assert!(!preflighted(&[("accept", b"application/json")]));
    }

    #[test]
    fn each_safelisted_content_type_is_refused_alone_and_passes_with_a_preflight_header() {
        for content_type in NON_PREFLIGHTED_CONTENT_TYPES {
            let ct = content_type.as_bytes();
            assert!(!preflighted(&[("content-type", ct)]), "{content_type}");
            for header in DEFAULT_REQUIRED_HEADERS {
                assert!(
                    preflighted(&[("content-type", ct), (header, b"op")]),
                    "{content_type} with {header}"
                );
            }
        }
    }

    #[test]
    fn safelisted_types_are_recognized_with_parameters_case_and_spaces() {
        for value in [
            "text/plain; charset=utf-8",
            "TEXT/PLAIN",
            "Text/Plain;charset=UTF-8",
            "  text/plain  ",
            "text/plain ; charset=utf-8",
            "text/plain\t;charset=utf-8",
            "application/X-WWW-Form-Urlencoded; charset=utf-8",
            "multipart/form-data; boundary=----x",
        ] {
            assert!(
                !preflighted(&[("content-type", value.as_bytes())]),
                "{value}"
            );
        }
    }

    #[test]
    fn other_content_types_are_preflighted() {
        for value in [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/graphql-response+json",
            "text/html",
            "text/plainx",
            "multipart/mixed; boundary=x",
        ] {
            assert!(
                preflighted(&[("content-type", value.as_bytes())]),
                "{value}"
            );
        }
    }

    #[test]
    fn an_unparseable_content_type_is_not_preflighted_as_in_apollo() {
        for value in [
            b"".as_slice(),
            b"json",
            b"application/",
            b"/json",
            b"application/json/extra",
            b"appli cation/json",
            b"application/js\xc3\xa9on",
        ] {
            assert!(
                !preflighted(&[("content-type", value)]),
                "{}",
                String::from_utf8_lossy(value)
            );
            // The preflight header still lets it through.
            assert!(preflighted(&[
                ("content-type", value),
                ("apollo-require-preflight", b"true")
            ]));
        }
    }

    #[test]
    fn two_content_type_fields_are_combined_and_fail_to_parse() {
        assert!(!preflighted(&[
            ("content-type", b"application/json"),
            ("content-type", b"text/plain"),
        ]));
    }

    #[test]
    fn an_empty_preflight_header_does_not_count() {
        assert!(!preflighted(&[("apollo-require-preflight", b"")]));
        assert!(!preflighted(&[("x-apollo-operation-name", b"  ")]));
        assert!(!preflighted(&[
            ("content-type", b"text/plain"),
            ("x-apollo-operation-name", b"")
        ]));
        assert!(preflighted(&[("x-apollo-operation-name", b"GetProtocols")]));
        assert!(preflighted(&[
            ("apollo-require-preflight", b""),
            ("apollo-require-preflight", b"1")
        ]));
    }

    #[test]
    fn only_the_configured_headers_count() {
        let custom = CsrfSettings {
            enabled: true,
            required_headers: vec!["X-Requested-By".into()],
        };
        let names = custom.header_names().unwrap();
        assert_eq!(names[0].as_str(), "x-requested-by");
        assert!(is_preflighted(
            &headers(&[("x-requested-by", b"app")]),
            &names
        ));
        assert!(!is_preflighted(
            &headers(&[("apollo-require-preflight", b"true")]),
            &names
        ));
        assert!(is_preflighted(
            &headers(&[("content-type", b"application/json")]),
            &[]
        ));
    }

    #[test]
    fn a_disabled_check_allows_everything() {
        let on = Csrf::new(&CsrfSettings::default()).unwrap();
        let off = Csrf::new(&CsrfSettings {
            enabled: false,
            ..CsrfSettings::default()
        })
        .unwrap();
        let simple = headers(&[("content-type", b"text/plain")]);
        assert!(!on.allows(&simple));
        assert!(off.allows(&simple));
        assert!(on.allows(&headers(&[("content-type", b"application/json")])));
    }

    #[test]
    fn the_refusal_names_the_types_and_headers_like_apollo() {
        let csrf = Csrf::new(&CsrfSettings::default()).unwrap();
        assert_eq!(
            csrf.refusal_message(),
            "This operation has been blocked as a potential Cross-Site Request Forgery (CSRF). \
             Please either specify a 'content-type' header (with a mime-type that is not one of \
             application/x-www-form-urlencoded, multipart/form-data, text/plain) or provide one \
             of the following headers: x-apollo-operation-name, apollo-require-preflight"
        );
    }

    #[test]
    fn settings_default_on_refuse_unknown_keys_and_bad_header_names() {
        let parsed: CsrfSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, CsrfSettings::default());
        assert!(parsed.enabled);
        assert!(serde_json::from_str::<CsrfSettings>(r#"{"enable": false}"#).is_err());
        let bad = CsrfSettings {
            enabled: true,
            required_headers: vec!["bad header".into()],
        };
        let err = bad.header_names().unwrap_err().to_string();
        assert!(err.starts_with("csrf.required_headers is invalid"), "{err}");
        assert!(Csrf::new(&bad).is_err());
    }
}
