//! Media types of GraphQL over HTTP: which one a response is written in (from `Accept`), and
//! whether a POST body is one the gateway reads (from `Content-Type`).

use axum::http::{HeaderMap, header};

/// A media type the gateway answers `/graphql` in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MediaType {
    /// `application/graphql-response+json`: the status code tells request errors (4xx) from
    /// executed operations (2xx), so a request that fails before execution answers 400.
    GraphQLResponseJson,
    /// `application/json`, the legacy type: every well-formed GraphQL response answers 200.
    Json,
}

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

impl MediaType {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::GraphQLResponseJson => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}

/// The media type to answer in, or `None` when the client accepts neither (406).
///
/// No `Accept`, `*/*` and `application/*` get `application/json`: the spec asks servers to
/// keep legacy clients, which send those, on the type they know. The new type is chosen only
/// when the client names it and does not rate `application/json` higher.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<MediaType> {
    // Exactly one of the two types, alone: what the ranges below would decide, without them.
    let mut accepts = headers.get_all(header::ACCEPT).iter();
    if let (Some(only), None) = (accepts.next(), accepts.next()) {
        match only.as_bytes() {
            b"application/json" => return Some(MediaType::Json),
            b"application/graphql-response+json" => return Some(MediaType::GraphQLResponseJson),
            _ => {}
        }
    }
    let mut values = Vec::new();
    for value in headers.get_all(header::ACCEPT) {
        // A field that is not text cannot name either type; it is not a reason to refuse.
        if let Ok(value) = value.to_str() {
            values.push(value);
        }
    }
    let accept = values.join(",");
    if accept.trim().is_empty() {
        return Some(MediaType::Json);
    }
    let ranges: Vec<Range<'_>> = accept.split(',').filter_map(Range::parse).collect();
    let new = preference(&ranges, GRAPHQL_RESPONSE_JSON);
    let legacy = preference(&ranges, JSON);
    if new.named && new.quality > 0.0 && new.quality >= legacy.quality {
        Some(MediaType::GraphQLResponseJson)
    } else if legacy.quality > 0.0 {
        Some(MediaType::Json)
    } else if new.quality > 0.0 {
        Some(MediaType::GraphQLResponseJson)
    } else {
        None
    }
}

/// Whether a POST body is declared JSON in UTF-8, the one encoding of a request the spec
/// requires (an absent charset means UTF-8).
pub(crate) fn is_json_body(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(media) = value.to_str().ok().and_then(Media::parse) else {
        return false;
    };
    let charset_is_utf8 = media
        .param("charset")
        .is_none_or(|charset| charset.eq_ignore_ascii_case("utf-8"));
    media.kind.eq_ignore_ascii_case("application")
        && media.subtype.eq_ignore_ascii_case("json")
        && charset_is_utf8
}

/// A `type/subtype; name=value` media type (or media range).
struct Media<'a> {
    kind: &'a str,
    subtype: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> Media<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if !is_token(kind) || !is_token(subtype) {
            return None;
        }
        let params = parts
            .filter_map(|param| {
                let (name, value) = param.split_once('=')?;
                Some((name.trim(), value.trim().trim_matches('"')))
            })
            .collect();
        Some(Self {
            kind,
            subtype,
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// One media range of `Accept` with its quality.
struct Range<'a> {
    media: Media<'a>,
    quality: f32,
}

impl<'a> Range<'a> {
    /// `None` for a range that does not parse, or whose `q` is not a number in 0..=1: such a
    /// range says nothing usable, so it is skipped rather than guessed at.
    fn parse(text: &'a str) -> Option<Self> {
        let media = Media::parse(text)?;
        let quality = match media.param("q") {
            Some(q) => q.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q))?,
            None => 1.0,
        };
        Some(Self { media, quality })
    }

    /// How specifically this range names `kind/subtype`: 3 exactly, 2 by `kind/*`, 1 by
    /// `*/*`, 0 not at all.
    fn specificity(&self, kind: &str, subtype: &str) -> u8 {
        let (k, s) = (self.media.kind, self.media.subtype);
        if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) {
            3
        } else if k.eq_ignore_ascii_case(kind) && s == "*" {
            2
        } else if k == "*" && s == "*" {
            1
        } else {
            0
        }
    }
}

struct Preference {
    quality: f32,
    /// Named exactly rather than through a wildcard.
    named: bool,
}

/// The quality the client gives `media`: that of the most specific range matching it
/// (RFC 9110, 12.5.1).
fn preference(ranges: &[Range<'_>], media: &str) -> Preference {
    let (kind, subtype) = media.split_once('/').unwrap_or((media, ""));
    let best = ranges
        .iter()
        .map(|range| (range.specificity(kind, subtype), range.quality))
        .filter(|(specificity, _)| *specificity > 0)
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    match best {
        Some((specificity, quality)) => Preference {
            quality,
            named: specificity == 3,
        },
        None => Preference {
            quality: 0.0,
            named: false,
        },
    }
}

/// RFC 9110 `token` (with `*` among its characters, which wildcards need).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(name: header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn accept(values: &[&str]) -> Option<MediaType> {
        negotiate(&with(header::ACCEPT, values))
    }

    #[test]
    fn legacy_clients_get_application_json() {
        for legacy in [
            &[][..],
            &[""],
            &["*/*"],
            &["application/*"],
            &["application/json"],
            &["application/json; charset=utf-8"],
            &["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
        ] {
            assert_eq!(accept(legacy), Some(MediaType::Json), "{legacy:?}");
        }
    }

    #[test]
    fn clients_that_name_the_new_type_get_it_unless_they_prefer_json() {
        for new in [
            &["application/graphql-response+json"][..],
            &["application/graphql-response+json, application/json;q=0.9"],
            &["application/json, application/graphql-response+json"],
            &["application/json", "application/graphql-response+json"],
            &["APPLICATION/GRAPHQL-RESPONSE+JSON;charset=utf-8"],
            &["text/html;q=0.1, application/graphql-response+json;q=0.5"],
        ] {
            assert_eq!(accept(new), Some(MediaType::GraphQLResponseJson), "{new:?}");
        }
        assert_eq!(
            accept(&["application/graphql-response+json;q=0.5, application/json"]),
            Some(MediaType::Json)
        );
    }

    #[test]
    fn a_wildcard_stands_in_for_a_type_refused_by_name() {
        assert_eq!(
            accept(&["application/json;q=0, */*"]),
            Some(MediaType::GraphQLResponseJson)
        );
        assert_eq!(
            accept(&["application/graphql-response+json;q=0, */*"]),
            Some(MediaType::Json)
        );
    }

    #[test]
    fn nothing_acceptable_is_none() {
        for refused in [
            &["text/html"][..],
            &["application/xml, text/*"],
            &["application/json;q=0"],
            &["*/*;q=0"],
            &["application/json;q=0, application/graphql-response+json;q=0, */*"],
            &["nonsense"],
            &["application/json;q=2"],
        ] {
            assert_eq!(accept(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn json_bodies_in_utf8_are_read() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_json_body(&with(header::CONTENT_TYPE, &[json])), "{json}");
        }
        for other in [
            &[][..],
            &["text/plain"],
            &["application/graphql"],
            &["application/json; charset=latin1"],
            &["application/x-www-form-urlencoded"],
            &["multipart/form-data; boundary=x"],
            &["application/json", "application/json"],
            &["application"],
        ] {
            assert!(
                !is_json_body(&with(header::CONTENT_TYPE, other)),
                "{other:?}"
            );
        }
    }
}
