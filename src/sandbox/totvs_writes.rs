//! TOTVS writes: attaching documents to a protocol and creating a new authorization request,
//! with the upstream's body validation and download-failure answers.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::server::{json_response, raw_json};
use super::state::{AppState, count};
use super::totvs::{
    ATTACHMENTS_400_STATUS, ATTACHMENTS_404, PROTOCOLS_404, Refusal, detail, totvs_error,
    totvs_error_details,
};
use super::totvs_data::{Protocol, ProtocolReceipt, Totvs, interaction};

fn parse_body(body: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice(body).map_err(|error| {
        totvs_error(
            StatusCode::NOT_ACCEPTABLE,
            "E001",
            "JSON inválido",
            &format!("Json Error: {error}"),
        )
    })
}

fn missing_field(field: &str) -> Value {
    detail(
        "E002B-406",
        format!("Campo {field} obrigatório"),
        format!("Não foi informado valor do campo {field}."),
    )
}

/// `kind` is the Protheus type letter: C (character), A (array), J (object).
fn wrong_type(field: &str, kind: char) -> Value {
    detail(
        "E002D-406",
        format!("Tipo inválido para o campo {field}"),
        format!("O valor do campo {field} deve ser do tipo ({kind})."),
    )
}

fn required_str<'a>(body: &'a Value, field: &str, problems: &mut Vec<Value>) -> Option<&'a str> {
    match body.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            problems.push(missing_field(field));
            None
        }
        Some(_) => {
            problems.push(wrong_type(field, 'C'));
            None
        }
    }
}

fn optional_str<'a>(body: &'a Value, field: &str, problems: &mut Vec<Value>) -> &'a str {
    match body.get(field) {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => "",
        Some(_) => {
            problems.push(wrong_type(field, 'C'));
            ""
        }
    }
}

fn attachment_hrefs<'a>(body: &'a Value, problems: &mut Vec<Value>) -> Vec<&'a str> {
    let list = match body.get("attachments") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        None | Some(Value::Null) | Some(Value::Array(_)) => {
            problems.push(missing_field("attachments"));
            return Vec::new();
        }
        Some(_) => {
            problems.push(wrong_type("attachments", 'A'));
            return Vec::new();
        }
    };
    let mut hrefs = Vec::with_capacity(list.len());
    for (i, attachment) in list.iter().enumerate() {
        if !attachment.is_object() {
            problems.push(wrong_type(&format!("attachments[{i}]"), 'J'));
            continue;
        }
        if let Some(href) = required_str(attachment, "href", &mut Vec::new()) {
            hrefs.push(href);
        } else {
            let field = format!("attachments[{i}].href");
            problems.push(match attachment.get("href") {
                Some(Value::String(_)) | Some(Value::Null) | None => missing_field(&field),
                Some(_) => wrong_type(&field, 'C'),
            });
        }
    }
    hrefs
}

fn invalid_fields(problems: Vec<Value>) -> Refusal {
    totvs_error_details(
        StatusCode::NOT_ACCEPTABLE,
        "E002",
        "Os campos do json no body estão inválidos",
        "Verifique a lista de erros no campo details para mais detalhes.",
        problems,
    )
}

/// The sandbox "downloads" every attachment; URLs containing `missing` answer 404.
fn download_failures(hrefs: &[&str]) -> Option<Refusal> {
    let failures: Vec<Value> = hrefs
        .iter()
        .filter(|href| href.contains("missing"))
        .map(|href| {
            detail(
                "E006-1",
                "Erro ao realizar download do arquivo.".to_owned(),
                format!("Status code: 404; Erro: Not Found\r\n; Url: {href}"),
            )
        })
        .collect();
    (!failures.is_empty()).then(|| {
        totvs_error_details(
            StatusCode::BAD_REQUEST,
            "E007",
            "Erro ao incluir um anexo",
            "Verifique a lista de erros para mais detalhes",
            failures,
        )
    })
}

fn today() -> chrono::NaiveDate {
    chrono::Local::now().date_naive()
}

pub(super) async fn totvs_attachments(
    State(shared): AppState,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    count(&shared.calls.totvs_attachments);
    shared.delay().await;
    if let Err(refused) = shared.check_bearer(&headers) {
        return refused.into_response();
    }
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(invalid) => return invalid.into_response(),
    };
    let mut problems = Vec::new();
    let protocol = required_str(&body, "protocol", &mut problems);
    let hrefs = attachment_hrefs(&body, &mut problems);
    let Some(protocol) = protocol.filter(|_| problems.is_empty()) else {
        return invalid_fields(problems).into_response();
    };
    add_attachments(&mut shared.write_totvs(), protocol, &hrefs)
}

fn add_attachments(totvs: &mut Totvs, number: &str, hrefs: &[&str]) -> Response {
    let Some(&index) = totvs.by_number.get(number) else {
        return raw_json(StatusCode::NOT_FOUND, ATTACHMENTS_404);
    };
    let protocol = &mut totvs.protocols[index];
    if protocol.status == "1" || protocol.status == "8" {
        return raw_json(StatusCode::BAD_REQUEST, ATTACHMENTS_400_STATUS);
    }
    if let Some(failed) = download_failures(hrefs) {
        return failed.into_response();
    }
    protocol
        .attachments
        .extend(hrefs.iter().map(|h| (*h).to_owned()));
    // The missing document arrived: the insurer analyses the request again.
    if protocol.status == "9" {
        protocol.status = "7".to_owned();
    }
    let received = interaction(
        &protocol.name,
        &today().format("%Y-%m-%d").to_string(),
        "DOCUMENTO ANEXADO",
        &format!("{} anexo(s) recebido(s)", hrefs.len()),
    );
    protocol.interactions.push(received);
    tracing::debug!(
        protocol = number,
        attachments = protocol.attachments.len(),
        status = %protocol.status,
        "sandbox recorded attachments"
    );
    json_response(StatusCode::CREATED, &ProtocolReceipt::from(&*protocol))
}

struct NewRequest<'a> {
    subscriber_id: &'a str,
    professional_name: &'a str,
    state_abbreviation: &'a str,
    professional_council: &'a str,
    professional_council_number: &'a str,
    hrefs: Vec<&'a str>,
}

pub(super) async fn totvs_request_authorization(
    State(shared): AppState,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    count(&shared.calls.totvs_requests);
    shared.delay().await;
    if let Err(refused) = shared.check_bearer(&headers) {
        return refused.into_response();
    }
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(invalid) => return invalid.into_response(),
    };
    let mut problems = Vec::new();
    let subscriber_id = required_str(&body, "subscriberId", &mut problems);
    let professional_name = required_str(&body, "professionalName", &mut problems);
    let state_abbreviation = optional_str(&body, "stateAbbreviation", &mut problems);
    let professional_council = optional_str(&body, "professionalCouncil", &mut problems);
    let professional_council_number =
        optional_str(&body, "professionalCouncilNumber", &mut problems);
    let hrefs = attachment_hrefs(&body, &mut problems);
    let (Some(subscriber_id), Some(professional_name), true) =
        (subscriber_id, professional_name, problems.is_empty())
    else {
        return invalid_fields(problems).into_response();
    };
    let request = NewRequest {
        subscriber_id,
        professional_name,
        state_abbreviation,
        professional_council,
        professional_council_number,
        hrefs,
    };
    create_protocol(&mut shared.write_totvs(), &request)
}

fn create_protocol(totvs: &mut Totvs, request: &NewRequest<'_>) -> Response {
    let Some(subscriber) = totvs.subscribers.get(request.subscriber_id) else {
        return raw_json(StatusCode::NOT_FOUND, PROTOCOLS_404);
    };
    if let Some(failed) = download_failures(&request.hrefs) {
        return failed.into_response();
    }
    let today = today();
    let requested_on = if subscriber.compact_dates {
        today.format("%Y%m%d").to_string()
    } else {
        today.format("%Y-%m-%d").to_string()
    };
    let name = subscriber.name.clone();
    let number = totvs.new_protocol_number(today);
    let received = interaction(
        &name,
        &today.format("%Y-%m-%d").to_string(),
        "SOLICITAÇÃO RECEBIDA",
        &format!(
            "Solicitação registrada com {} anexo(s).",
            request.hrefs.len()
        ),
    );
    let protocol = Protocol {
        number,
        subscriber_id: request.subscriber_id.to_owned(),
        name,
        professional_name: request.professional_name.to_owned(),
        professional_council: request.professional_council.to_owned(),
        professional_council_number: request.professional_council_number.to_owned(),
        state_abbreviation: request.state_abbreviation.to_owned(),
        status: "7".to_owned(),
        authorization: String::new(),
        auth_type: String::new(),
        requested_on,
        analyzed_on: String::new(),
        interactions: vec![received],
        attachments: request.hrefs.iter().map(|h| (*h).to_owned()).collect(),
    };
    let index = totvs.insert(protocol);
    if let Some(subscriber) = totvs.subscribers.get_mut(request.subscriber_id) {
        subscriber.protocols.push(index);
    }
    let created = &totvs.protocols[index];
    tracing::debug!(protocol = %created.number, "sandbox created an authorization request");
    json_response(StatusCode::CREATED, &ProtocolReceipt::from(created))
}
