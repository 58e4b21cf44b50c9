//! TOTVS reads: a subscriber's protocol list (filters, order, paging) and a protocol's
//! interactions.

use std::cmp::Ordering as CmpOrdering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::server::{json_response, raw_json, shutting_down};
use super::state::{AppState, count};
use super::totvs::{
    INTERACTIONS_404, PROTOCOLS_404, Refusal, detail, param, query_params, totvs_error_details,
};
use super::totvs_data::{PageBody, Protocol, StyledProtocol, Totvs, date_digits};

// --- protocol list ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SortField {
    Protocol,
    Status,
    SolicitationDate,
    AnalysisDate,
    Name,
    ProfessionalName,
    AuthType,
    IdOnHealthInsurer,
}

/// `order=-solicitationDate,protocol`; names in any of the documented styles, unknown ignored.
pub(super) fn parse_order(order: &str) -> Vec<(SortField, bool)> {
    order
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            let (descending, name) = match part.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, part.strip_prefix('+').unwrap_or(part)),
            };
            let normalized: String = name
                .chars()
                .filter(|c| *c != '-' && *c != '_')
                .map(|c| c.to_ascii_lowercase())
                .collect();
            let field = match normalized.as_str() {
                "protocol" => SortField::Protocol,
                "status" => SortField::Status,
                "solicitationdate" => SortField::SolicitationDate,
                "analysisdate" => SortField::AnalysisDate,
                "name" => SortField::Name,
                "professionalname" => SortField::ProfessionalName,
                "authtype" => SortField::AuthType,
                "idonhealthinsurer" => SortField::IdOnHealthInsurer,
                _ => return None,
            };
            Some((field, descending))
        })
        .collect()
}

fn compare(a: &Protocol, b: &Protocol, field: SortField) -> CmpOrdering {
    match field {
        SortField::Protocol => a.number.cmp(&b.number),
        SortField::Status => match (a.status.parse::<u32>(), b.status.parse::<u32>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.status.cmp(&b.status),
        },
        SortField::SolicitationDate => {
            date_digits(&a.requested_on).cmp(date_digits(&b.requested_on))
        }
        SortField::AnalysisDate => date_digits(&a.analyzed_on).cmp(date_digits(&b.analyzed_on)),
        SortField::Name => a.name.cmp(&b.name),
        SortField::ProfessionalName => a.professional_name.cmp(&b.professional_name),
        SortField::AuthType => a.auth_type.cmp(&b.auth_type),
        SortField::IdOnHealthInsurer => a.authorization.cmp(&b.authorization),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Paging {
    pub(super) page: u64,
    pub(super) page_size: u64,
}

impl Paging {
    pub(super) fn parse(params: &[(String, String)]) -> Result<Paging, Refusal> {
        Ok(Paging {
            page: positive(params, "page", 1)?,
            page_size: positive(params, "pageSize", 20)?,
        })
    }

    /// The slice for this page and `remainingRecords` after it.
    pub(super) fn slice<T>(self, items: &[T]) -> (&[T], u64) {
        let total = items.len() as u64;
        // Saturating: absurd page numbers mean "past the end", not an overflow.
        let start = self.page.saturating_sub(1).saturating_mul(self.page_size);
        let end = start.saturating_add(self.page_size);
        let remaining = total.saturating_sub(end);
        (
            &items[start.min(total) as usize..end.min(total) as usize],
            remaining,
        )
    }
}

fn positive(params: &[(String, String)], name: &str, default: u64) -> Result<u64, Refusal> {
    match param(params, name) {
        None => Ok(default),
        Some(value) => match value.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(invalid_parameter(
                name,
                "deve ser um valor numérico maior que zero",
            )),
        },
    }
}

fn invalid_parameter(name: &str, rule: &str) -> Refusal {
    totvs_error_details(
        StatusCode::NOT_ACCEPTABLE,
        "E001",
        "Existem parâmetros inválidos na requisição.",
        "Verifique a lista de erros no campo details para mais detalhes.",
        vec![detail(
            "E001-406",
            format!("Parâmetro {name} inválido"),
            format!("O parâmetro {name} informado no queryParams da requisição {rule}."),
        )],
    )
}

pub(super) struct ProtocolQuery {
    protocol: Option<String>,
    protocol_or_authorization: Option<String>,
    /// `YYYYMMDD`
    solicitation_date: Option<String>,
    statuses: Option<Vec<String>>,
    order: Vec<(SortField, bool)>,
    pub(super) paging: Paging,
}

impl ProtocolQuery {
    pub(super) fn parse(params: &[(String, String)]) -> Result<ProtocolQuery, Refusal> {
        let paging = Paging::parse(params)?;
        let solicitation_date = match param(params, "solicitationDate") {
            None => None,
            Some(value) => {
                let digits: String = date_digits(value).collect();
                if chrono::NaiveDate::parse_from_str(&digits, "%Y%m%d").is_err() {
                    return Err(invalid_parameter(
                        "solicitationDate",
                        "deve estar no formato AAAA-MM-DD ou AAAAMMDD",
                    ));
                }
                Some(digits)
            }
        };
        Ok(ProtocolQuery {
            protocol: param(params, "protocol").map(str::to_owned),
            protocol_or_authorization: param(params, "protocolOrAuthorization").map(str::to_owned),
            solicitation_date,
            statuses: param(params, "status").map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            order: param(params, "order").map(parse_order).unwrap_or_default(),
            paging,
        })
    }

    fn matches(&self, p: &Protocol) -> bool {
        self.protocol.as_ref().is_none_or(|n| *n == p.number)
            && self.protocol_or_authorization.as_ref().is_none_or(|n| {
                *n == p.number || (!p.authorization.is_empty() && *n == p.authorization)
            })
            && self.solicitation_date.as_ref().is_none_or(|d| {
                !p.requested_on.is_empty() && date_digits(&p.requested_on).eq(d.chars())
            })
            && self
                .statuses
                .as_ref()
                .is_none_or(|statuses| statuses.contains(&p.status))
    }
}

pub(super) async fn totvs_protocols(
    State(shared): AppState,
    Path(subscriber_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    count(&shared.calls.totvs_protocols);
    shared.delay().await;
    if let Err(refused) = shared.check_bearer(&headers) {
        return refused.into_response();
    }
    match subscriber_id.as_str() {
        "00000000000000500" => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain")],
                "Internal Server Error\r\nTHREAD ERROR ([12345], sandbox, SANDBOX)  \
                 variable does not exist BKU_NRPRO on PLSAUTHORIZATIONS:GETPROTOCOLS\r\n",
            )
                .into_response();
        }
        "00000000000000777" => {
            return raw_json(
                StatusCode::OK,
                r#"{"items":"oops","hasNext":false,"remainingRecords":0}"#,
            );
        }
        "00000000000000999" if !shared.slow().await => return shutting_down(),
        "00000000000000999" => {
            let empty = PageBody {
                items: [(); 0],
                has_next: false,
                remaining_records: 0,
            };
            return json_response(StatusCode::OK, &empty);
        }
        _ => {}
    }
    let params = query_params(&uri);
    match ProtocolQuery::parse(&params) {
        Ok(query) => list_protocols(&shared.read_totvs(), &subscriber_id, &query),
        Err(invalid) => invalid.into_response(),
    }
}

fn list_protocols(totvs: &Totvs, subscriber_id: &str, query: &ProtocolQuery) -> Response {
    let Some(subscriber) = totvs.subscribers.get(subscriber_id) else {
        return raw_json(StatusCode::NOT_FOUND, PROTOCOLS_404);
    };
    let mut selected: Vec<&Protocol> = subscriber
        .protocols
        .iter()
        .map(|&i| &totvs.protocols[i])
        .filter(|p| query.matches(p))
        .collect();
    if !query.order.is_empty() {
        selected.sort_by(|a, b| {
            query
                .order
                .iter()
                .fold(CmpOrdering::Equal, |acc, &(field, descending)| {
                    acc.then_with(|| {
                        let ordering = compare(a, b, field);
                        if descending {
                            ordering.reverse()
                        } else {
                            ordering
                        }
                    })
                })
        });
    }
    let (page, remaining) = query.paging.slice(&selected);
    let names = subscriber.style.names();
    let items: Vec<StyledProtocol<'_>> = page
        .iter()
        .map(|protocol| StyledProtocol { protocol, names })
        .collect();
    json_response(
        StatusCode::OK,
        &PageBody {
            items,
            has_next: remaining > 0,
            remaining_records: remaining,
        },
    )
}

// --- interactions ----------------------------------------------------------------------------

pub(super) async fn totvs_interactions(
    State(shared): AppState,
    Path(protocol_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    count(&shared.calls.totvs_interactions);
    shared.delay().await;
    if let Err(refused) = shared.check_bearer(&headers) {
        return refused.into_response();
    }
    let paging = match Paging::parse(&query_params(&uri)) {
        Ok(paging) => paging,
        Err(invalid) => return invalid.into_response(),
    };
    let totvs = shared.read_totvs();
    let Some(&index) = totvs.by_number.get(&protocol_id) else {
        return raw_json(StatusCode::NOT_FOUND, INTERACTIONS_404);
    };
    let (items, remaining) = paging.slice(&totvs.protocols[index].interactions);
    json_response(
        StatusCode::OK,
        &PageBody {
            items,
            has_next: remaining > 0,
            remaining_records: remaining,
        },
    )
}
