//! TOTVS Health Plans: authorization protocols, their interactions, attachments and new
//! authorization requests, behind a bearer token this module obtains and renews itself.
//!
//! Item field names differ between TOTVS doc versions (`subscriberId`, `subscriber-id`,
//! `subscriber-_id`, `subscriber_id`), so items are read through [`decode::Folded`] keys.

pub(super) mod token;

use std::sync::Arc;

use reqwest::{StatusCode, header::AUTHORIZATION};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::{
    cache::Decoded,
    clock::Clock,
    decode::{self, Folded},
    error::{UpstreamError, UpstreamErrorKind},
    http::{Answer, HttpUpstream, Idempotency, Route},
};
use crate::{
    config::Settings,
    metrics::{Metrics, Series},
    model::{
        AuthorizationProtocol, AuthorizationProtocolPage, AuthorizationRequest,
        AuthorizationStatus, AuthorizationType, Interaction, InteractionPage, InteractionQuery,
        Professional, ProtocolQuery, Service,
    },
};
use token::TokenManager;
pub(crate) use token::TokenStatus;

const API: [&str; 4] = ["totvsHealthPlans", "attendance", "v1", "authorizations"];

const fn route(template: &'static str) -> Route {
    Route {
        series: Series::Totvs,
        template,
    }
}
const PROTOCOLS_ROUTE: Route =
    route("/totvsHealthPlans/attendance/v1/authorizations/{subscriberId}/protocols");
const INTERACTIONS_ROUTE: Route =
    route("/totvsHealthPlans/attendance/v1/authorizations/protocols/{protocolId}/interactions");
const ATTACHMENTS_ROUTE: Route =
    route("/totvsHealthPlans/attendance/v1/authorizations/protocols/attachments");
const REQUESTS_ROUTE: Route = route("/totvsHealthPlans/attendance/v1/authorizations/protocols");

/// A protocol list's filters and paging as TOTVS's query string.
fn protocol_params(query: &ProtocolQuery) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("page", query.page.to_string()),
        ("pageSize", query.page_size.to_string()),
    ];
    let optional = [
        ("protocol", query.protocol.clone()),
        (
            "protocolOrAuthorization",
            query.protocol_or_authorization.clone(),
        ),
        (
            "solicitationDate",
            query
                .solicitation_date
                .map(|d| d.format("%Y-%m-%d").to_string()),
        ),
        ("order", query.order.clone()),
    ];
    params.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    if !query.status.is_empty() {
        let codes: Vec<String> = query.status.iter().map(u8::to_string).collect();
        params.push(("status", codes.join(",")));
    }
    params
}

/// The body of `POST …/protocols`, as TOTVS documents it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationRequestDto<'a> {
    subscriber_id: &'a str,
    professional_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_abbreviation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    professional_council: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    professional_council_number: Option<&'a str>,
    attachments: Vec<AttachmentDto<'a>>,
}

#[derive(Serialize)]
struct AttachmentDto<'a> {
    href: &'a str,
}

impl<'a> From<&'a AuthorizationRequest> for AuthorizationRequestDto<'a> {
    fn from(request: &'a AuthorizationRequest) -> Self {
        Self {
            subscriber_id: &request.subscriber_id,
            professional_name: &request.professional_name,
            state_abbreviation: request.state_abbreviation.as_deref(),
            professional_council: request.professional_council.as_deref(),
            professional_council_number: request.professional_council_number.as_deref(),
            attachments: request
                .attachments
                .iter()
                .map(|href| AttachmentDto { href })
                .collect(),
        }
    }
}

pub(crate) struct TotvsClient {
    pub(super) http: HttpUpstream,
    tokens: TokenManager,
    metrics: Arc<Metrics>,
}

impl TotvsClient {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let metrics_for_client = metrics.clone();
        let http = HttpUpstream::new(
            Service::Totvs,
            settings.totvs.base_url.clone(),
            &settings.upstream,
            metrics.clone(),
        )?;
        let tokens = TokenManager::new(&http, settings, Clock::System);
        Ok(Self {
            http,
            tokens,
            metrics: metrics_for_client,
        })
    }

    /// Obtains the token now rather than on the first request, so that `/readyz` can tell
    /// whether the gateway holds one. A failure is logged where it happens, and the next call
    /// tries again.
    pub async fn warm_up(&self) {
        let _ = self.tokens.bearer(&self.http).await;
    }

    pub fn token_status(&self) -> TokenStatus {
        self.tokens.status()
    }

    pub async fn protocols(
        &self,
        subscriber_id: &str,
        query: &ProtocolQuery,
    ) -> Result<Decoded<AuthorizationProtocolPage>, UpstreamError> {
        let path = [API[0], API[1], API[2], API[3], subscriber_id, "protocols"];
        let page = self
            .get_page(
                PROTOCOLS_ROUTE,
                &path,
                &protocol_params(query),
                query.page_size,
                |item| protocol_from(item, Some(subscriber_id)),
            )
            .await?;
        let (items, foreign) = own_items(page.value.items, subscriber_id);
        if foreign > 0 {
            warn!(
                service = "totvs",
                dropped = foreign,
                "protocol list held items of another subscriber"
            );
            self.metrics.items_dropped(Service::Totvs, foreign);
        }
        Ok(Decoded {
            value: AuthorizationProtocolPage {
                items,
                has_next: page.value.has_next,
                remaining_records: page.value.remaining_records,
                page: clamp_i32(query.page),
                page_size: clamp_i32(query.page_size),
            },
            bytes: page.bytes,
        })
    }

    pub async fn interactions(
        &self,
        query: &InteractionQuery,
    ) -> Result<Decoded<InteractionPage>, UpstreamError> {
        let path = [
            API[0],
            API[1],
            API[2],
            API[3],
            "protocols",
            &query.protocol,
            "interactions",
        ];
        let params = [
            ("page", query.page.to_string()),
            ("pageSize", query.page_size.to_string()),
        ];
        let page = self
            .get_page(
                INTERACTIONS_ROUTE,
                &path,
                &params,
                query.page_size,
                interaction_from,
            )
            .await?;
        Ok(Decoded {
            value: InteractionPage {
                items: page.value.items,
                has_next: page.value.has_next,
                remaining_records: page.value.remaining_records,
            },
            bytes: page.bytes,
        })
    }

    /// GETs a paged list (`{items, hasNext, remainingRecords}`) and converts each item.
    async fn get_page<T>(
        &self,
        route: Route,
        path: &[&str],
        params: &[(&str, String)],
        page_size: u32,
        item_from: impl Fn(Map<String, Value>) -> Result<T, String>,
    ) -> Result<Decoded<Page<T>>, UpstreamError> {
        let url = self.http.url(path);
        let answer = self
            .authorized(Idempotency::Read, route, |client, bearer| {
                client
                    .get(url.clone())
                    .query(params)
                    .header(AUTHORIZATION, bearer)
            })
            .await?;
        let answer = self.expect(answer, StatusCode::OK)?;
        let (page, beyond_page) = page_from(&answer.body, page_size, item_from)
            .map_err(|err| self.http.malformed(&answer, &err))?;
        if beyond_page > 0 {
            warn!(
                service = "totvs",
                dropped = beyond_page,
                page_size,
                "page longer than asked for"
            );
            self.metrics.items_dropped(Service::Totvs, beyond_page);
        }
        Ok(Decoded {
            value: page,
            bytes: answer.body.len(),
        })
    }

    pub async fn add_attachments(
        &self,
        protocol: &str,
        hrefs: &[String],
    ) -> Result<AuthorizationProtocol, UpstreamError> {
        let url = self
            .http
            .url(&[API[0], API[1], API[2], API[3], "protocols", "attachments"]);
        let body = serde_json::json!({
            "protocol": protocol,
            "attachments": hrefs.iter().map(|href| AttachmentDto { href }).collect::<Vec<_>>(),
        });
        self.post_protocol(ATTACHMENTS_ROUTE, url, &body).await
    }

    pub async fn request_authorization(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<AuthorizationProtocol, UpstreamError> {
        let url = self
            .http
            .url(&[API[0], API[1], API[2], API[3], "protocols"]);
        self.post_protocol(REQUESTS_ROUTE, url, &AuthorizationRequestDto::from(request))
            .await
    }

    async fn post_protocol(
        &self,
        route: Route,
        url: url::Url,
        body: &impl Serialize,
    ) -> Result<AuthorizationProtocol, UpstreamError> {
        let answer = self
            .authorized(Idempotency::Write, route, |client, bearer| {
                client
                    .post(url.clone())
                    .json(body)
                    .header(AUTHORIZATION, bearer)
            })
            .await?;
        let answer = self.expect(answer, StatusCode::CREATED)?;
        let object = match serde_json::from_slice::<Value>(&answer.body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(self.http.malformed(&answer, &"expected an object")),
            Err(err) => return Err(self.http.malformed(&answer, &err)),
        };
        protocol_from(object, None).map_err(|err| self.http.malformed(&answer, &err))
    }

    /// Sends with the current bearer token; on a 401, renews the token once and tries once more
    /// (a 401 means TOTVS did not act on the request, so even a write may be sent again).
    async fn authorized(
        &self,
        idempotency: Idempotency,
        route: Route,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Answer, UpstreamError> {
        let (bearer, generation) = self.tokens.bearer(&self.http).await?;
        let answer = self
            .http
            .send(idempotency, route, |client| build(client, &bearer))
            .await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        // Settles the breaker's verdict on this call (answered: a success) before the next
        // one asks it, or a half-open breaker would refuse the retry as a second probe.
        drop(answer);
        debug!(service = "totvs", "access token refused, renewing it once");
        self.tokens.discard(generation).await;
        let (bearer, _) = self.tokens.bearer(&self.http).await?;
        let answer = self
            .http
            .send(idempotency, route, |client| build(client, &bearer))
            .await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            warn!(
                service = "totvs",
                status = 401,
                "upstream refused a renewed token"
            );
            return Err(
                UpstreamError::new(Service::Totvs, UpstreamErrorKind::AuthFailed)
                    .with_status(401)
                    .with_fault(decode::fault(&answer.body)),
            );
        }
        Ok(answer)
    }

    /// The answer when its status is the expected success, else the documented error for it.
    fn expect(&self, answer: Answer, success: StatusCode) -> Result<Answer, UpstreamError> {
        let status = answer.status;
        // TOTVS documents 201 for POSTs and 200 for GETs; accept either success for robustness.
        if status == success || status == StatusCode::OK || status == StatusCode::CREATED {
            return Ok(answer);
        }
        let fault = decode::fault(&answer.body);
        let code = fault.as_ref().and_then(|f| f.code.as_deref()).unwrap_or("");
        let kind = match status.as_u16() {
            400 if code.eq_ignore_ascii_case("E003") => UpstreamErrorKind::AttachmentsNotAllowed,
            400 if code.eq_ignore_ascii_case("E007") => UpstreamErrorKind::AttachmentDownloadFailed,
            400 | 406 | 409 | 422 => UpstreamErrorKind::BadRequest,
            404 => UpstreamErrorKind::NotFound,
            403 => UpstreamErrorKind::AuthFailed,
            _ => {
                answer.unusable();
                UpstreamErrorKind::Malformed
            }
        };
        warn!(
            service = "totvs",
            status = status.as_u16(),
            code,
            "upstream error"
        );
        Err(UpstreamError::new(Service::Totvs, kind)
            .with_status(status.as_u16())
            .with_fault(fault))
    }
}

fn clamp_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The items of a protocol list that belong to `subscriber_id`, and how many did not.
///
/// The gateway's credentials read every subscriber: an item of another one in this list is
/// TOTVS's mistake, and must not reach a caller allowed to see only this one.
pub(super) fn own_items(
    items: Vec<AuthorizationProtocol>,
    subscriber_id: &str,
) -> (Vec<AuthorizationProtocol>, usize) {
    let (own, foreign): (Vec<_>, Vec<_>) = items
        .into_iter()
        .partition(|item| item.subscriber_id == subscriber_id);
    (own, foreign.len())
}

/// A page of TOTVS items, of either list.
#[derive(Debug)]
pub(super) struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
    pub remaining_records: i32,
}

/// A paged list (`{items, hasNext, remainingRecords}`) with at most `page_size` items, each
/// converted by `item_from`, and how many items it had past `page_size`.
///
/// A page that ignores `pageSize` is cut, not refused: what was asked for is in it. It is cut
/// before converting, so a long page costs no more work.
pub(super) fn page_from<T>(
    body: &[u8],
    page_size: u32,
    item_from: impl Fn(Map<String, Value>) -> Result<T, String>,
) -> Result<(Page<T>, usize), String> {
    let page = decode_page(body)?;
    let size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let beyond_page = page.items.len().saturating_sub(size);
    let items = page
        .items
        .into_iter()
        .take(size)
        .map(item_from)
        .collect::<Result<_, _>>()?;
    Ok((
        Page {
            items,
            has_next: page.has_next,
            remaining_records: page.remaining_records,
        },
        beyond_page,
    ))
}

/// `{items, hasNext, remainingRecords}`, with `hasNext` derived when absent.
fn decode_page(body: &[u8]) -> Result<Page<Map<String, Value>>, String> {
    let Value::Object(object) = serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())?
    else {
        return Err("expected an object".into());
    };
    let mut page = Folded::new(object);
    let Some(Value::Array(items)) = page.take("items") else {
        return Err("items is not an array".into());
    };
    let items = items
        .into_iter()
        .map(|item| match item {
            Value::Object(object) => Ok(object),
            _ => Err("an item is not an object".to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Any number (a negative one, one past i32, a float, a numeric string) reads as a count
    // within 0..=i32::MAX; anything else as 0.
    let remaining = page
        .text("remainingrecords")
        .and_then(|n| n.trim().parse::<i64>().ok())
        .map_or(0, |n| {
            i32::try_from(n.clamp(0, i64::from(i32::MAX))).unwrap_or(i32::MAX)
        });
    let has_next = match page.get("hasnext") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => remaining > 0,
    };
    Ok(Page {
        items,
        has_next,
        remaining_records: remaining,
    })
}

/// An authorization protocol from any documented field-name style. `subscriber_id` fills in
/// the subscriber when the item leaves it out (it is the list's own path parameter).
pub(super) fn protocol_from(
    item: Map<String, Value>,
    subscriber_id: Option<&str>,
) -> Result<AuthorizationProtocol, String> {
    let item = Folded::new(item);
    // Without its number a protocol cannot be told apart; any other documented-required field
    // that is missing reads as "" rather than failing the whole page.
    let required = |key: &str| item.required(key).unwrap_or_default();
    let protocol = item
        .required("protocol")
        .filter(|p| !p.trim().is_empty())
        .ok_or("missing protocol")?;
    let status_code = required("status");
    let auth_type = item.text("authtype");
    let auth_type_parsed = auth_type.as_deref().and_then(AuthorizationType::from_code);
    if auth_type.is_some() && auth_type_parsed.is_none() {
        debug!(service = "totvs", auth_type, "unknown auth type");
    }
    let date = |key: &str| {
        let text = item.text(key)?;
        let date = decode::date(&text);
        if date.is_none() {
            warn!(service = "totvs", field = key, "unreadable date");
        }
        date
    };
    Ok(AuthorizationProtocol {
        protocol,
        subscriber_id: item
            .text("subscriberid")
            .or_else(|| subscriber_id.map(str::to_owned))
            .unwrap_or_default(),
        beneficiary_name: required("name"),
        professional: Professional {
            name: required("professionalname"),
            council: item.text("professionalcouncil"),
            council_number: item.text("professionalcouncilnumber"),
            council_state: item.text("stateabbreviation"),
        },
        status: AuthorizationStatus::from_code(&status_code),
        status_code,
        authorization_number: item.text("idonhealthinsurer"),
        auth_type: auth_type_parsed,
        requested_on: date("solicitationdate"),
        analyzed_on: date("analysisdate"),
    })
}

pub(super) fn interaction_from(item: Map<String, Value>) -> Result<Interaction, String> {
    let item = Folded::new(item);
    Ok(Interaction {
        sector: item.required("sector").unwrap_or_default(),
        beneficiary_name: item.required("name").unwrap_or_default(),
        date: item
            .text("interactiondate")
            .as_deref()
            .and_then(decode::date),
        reason: item.required("defaultreason").unwrap_or_default(),
        observation: item.required("observation").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_seed_item_reads_with_empty_strings_as_absent() {
        let body: Value =
            serde_json::from_str(include_str!("../../../fixtures/totvs/protocols.200.json"))
                .unwrap();
        let item = object(body["items"][0].clone());
        let p = protocol_from(item, None).unwrap();
        assert_eq!(p.subscriber_id.as_str(), "00011008000027010");
        assert_eq!(p.professional.name, "ANDRE");
        assert_eq!(p.professional.council_number.as_deref(), Some("334455"));
        assert_eq!(p.status, AuthorizationStatus::UnderAnalysis);
        assert_eq!(p.authorization_number, None);
        assert_eq!(p.auth_type, None);
        assert_eq!(p.requested_on, None);
    }

    #[test]
    fn zero_padded_codes_read_as_their_number() {
        let item = object(json!({"protocol": "1", "name": "A", "status": "07", "authType": "02"}));
        let p = protocol_from(item, Some("2")).unwrap();
        assert_eq!(p.status, AuthorizationStatus::UnderAnalysis);
        assert_eq!(p.status_code, "07");
        assert_eq!(p.auth_type, Some(AuthorizationType::Sadt));
    }

    #[test]
    fn unknown_status_codes_keep_the_raw_code() {
        let item = object(json!({"protocol": "1", "name": "A", "subscriberId": "2", "status": 5}));
        let p = protocol_from(item, None).unwrap();
        assert_eq!(p.status, AuthorizationStatus::Unknown);
        assert_eq!(p.status_code, "5");
    }

    #[test]
    fn required_fields_carry_empty_strings_as_sent_but_a_protocol_needs_its_number() {
        let item = object(json!({"protocol": "1", "name": "", "status": "7"}));
        let p = protocol_from(item, Some("00011008000027010")).unwrap();
        assert_eq!(p.beneficiary_name, "");
        assert_eq!(p.professional.name, "");
        assert_eq!(p.subscriber_id.as_str(), "00011008000027010");
        assert!(protocol_from(object(json!({"protocol": "", "name": "A"})), None).is_err());
    }

    #[test]
    fn a_fault_reads_numeric_codes_and_details() {
        let fault =
            decode::fault(br#"{"code": 404, "message": "m", "details": [{"code": "D"}]}"#).unwrap();
        assert_eq!(fault.code.as_deref(), Some("404"));
        assert_eq!(fault.details[0].code.as_deref(), Some("D"));
        assert_eq!(decode::fault(b"<html>"), None);
    }
}
