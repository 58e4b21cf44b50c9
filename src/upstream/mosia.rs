//! Mosia Omnichannel: a beneficiary's latest service protocols.
//!
//! `GET {mosia}/clientes/ocorrencias/ultimosProtocolos` with everything in headers: the raw
//! client token in `Authorization`, `chaveUnica`, `totalProtocolos`. The answer is an envelope
//! whose HTTP status and `status` flag are trusted; its `statusCode` is not (public examples say
//! 403 on success).

use std::sync::Arc;

use reqwest::{
    StatusCode,
    header::{AUTHORIZATION, HeaderValue},
};
use serde::Deserialize;

use super::{
    cache::Decoded,
    decode,
    error::{UpstreamError, UpstreamErrorKind},
    http::{HttpUpstream, Idempotency, Route},
};
use crate::{
    config::Settings,
    metrics::{Metrics, Series},
    model::{Code, Person, Service, ServiceProtocol, strip_key_suffix},
};

/// The most protocols Mosia lists at once (`totalProtocolos` is 1..10).
pub(crate) const MAX_LIMIT: u8 = 10;

const LATEST_ROUTE: Route = Route {
    series: Series::Mosia,
    template: "/clientes/ocorrencias/ultimosProtocolos",
};

pub(crate) struct MosiaClient {
    pub(super) http: HttpUpstream,
    token: HeaderValue,
    metrics: Arc<Metrics>,
}

impl MosiaClient {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let mut token = HeaderValue::from_bytes(settings.mosia.token.expose().as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        token.set_sensitive(true);
        Ok(Self {
            http: HttpUpstream::new(
                Service::Mosia,
                settings.mosia.base_url.clone(),
                &settings.upstream,
                metrics.clone(),
            )?,
            token,
            metrics,
        })
    }

    /// The newest `limit` (1..10) protocols of the beneficiary with this unique key.
    pub async fn latest_protocols(
        &self,
        unique_key: &str,
        limit: u8,
    ) -> Result<Decoded<Vec<ServiceProtocol>>, UpstreamError> {
        // Validated upstream of here to be free of control characters; bytes >= 0x80 are legal.
        let key = HeaderValue::from_bytes(unique_key.as_bytes())
            .map_err(|_| UpstreamError::new(Service::Mosia, UpstreamErrorKind::BadRequest))?;
        let url = self
            .http
            .url(&["clientes", "ocorrencias", "ultimosProtocolos"]);
        let answer = self
            .http
            .send(Idempotency::Read, LATEST_ROUTE, |client| {
                client
                    .get(url.clone())
                    .header(AUTHORIZATION, self.token.clone())
                    .header("chaveUnica", key.clone())
                    .header("totalProtocolos", limit.to_string())
                    .header("Accept", "application/json")
            })
            .await?;
        let status = answer.status;
        let kind = match status {
            StatusCode::OK => None,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Some(UpstreamErrorKind::AuthFailed),
            StatusCode::NOT_FOUND => Some(UpstreamErrorKind::NotFound),
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                Some(UpstreamErrorKind::BadRequest)
            }
            _ if status.is_success() => None,
            _ => Some(UpstreamErrorKind::Malformed),
        };
        if let Some(kind) = kind {
            tracing::warn!(
                service = "mosia",
                status = status.as_u16(),
                "upstream error"
            );
            if kind == UpstreamErrorKind::Malformed {
                answer.unusable();
            }
            return Err(UpstreamError::new(Service::Mosia, kind).with_status(status.as_u16()));
        }
        let latest = decode_latest(&answer.body, unique_key, limit)
            .map_err(|err| self.http.malformed(&answer, &err))?;
        if latest.beyond_limit > 0 {
            // Mosia documents newest first; a longer answer than asked for is cut, not trusted.
            self.metrics
                .items_dropped(Service::Mosia, latest.beyond_limit);
        }
        if latest.foreign > 0 {
            tracing::warn!(
                service = "mosia",
                dropped = latest.foreign,
                "answer held protocols of another beneficiary"
            );
            self.metrics.items_dropped(Service::Mosia, latest.foreign);
        }
        Ok(Decoded {
            value: latest.protocols,
            bytes: answer.body.len(),
        })
    }
}

/// A Mosia answer as the gateway passes it on, and what it left out.
#[derive(Debug)]
pub(super) struct Latest {
    pub protocols: Vec<ServiceProtocol>,
    /// Items past the `limit` asked for.
    pub beyond_limit: usize,
    /// Items about another beneficiary than the one asked for.
    pub foreign: usize,
}

/// Decodes Mosia's envelope for `unique_key`: at most `limit` protocols, none of another
/// beneficiary's.
pub(super) fn decode_latest(body: &[u8], unique_key: &str, limit: u8) -> Result<Latest, String> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|err| err.to_string())?;
    if envelope.status != Some(true) {
        return Err("envelope status is not true".into());
    }
    let items = envelope.data.unwrap_or_default();
    let limit = usize::from(limit);
    let beyond_limit = items.len().saturating_sub(limit);
    let protocols = items
        .into_iter()
        .take(limit)
        .map(ServiceProtocol::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    // The gateway's token reads every beneficiary: a protocol about another one in this
    // answer is Mosia's mistake, and must not reach a caller allowed to see only this one.
    let (protocols, foreign): (Vec<_>, Vec<_>) = protocols
        .into_iter()
        .partition(|p| p.beneficiary.unique_key == unique_key);
    Ok(Latest {
        protocols,
        beyond_limit,
        foreign: foreign.len(),
    })
}

#[derive(Deserialize)]
struct Envelope {
    status: Option<bool>,
    data: Option<Vec<ProtocolDto>>,
}

#[derive(Deserialize)]
struct ProtocolDto {
    #[serde(deserialize_with = "decode::string_or_number")]
    protocolo: String,
    #[serde(rename = "tipoOcorrencia")]
    tipo_ocorrencia: CodeDto,
    #[serde(deserialize_with = "decode::string_or_number")]
    data_registro: String,
    #[serde(default)]
    data_atualizacao: Option<serde_json::Value>,
    status: CodeDto,
    #[serde(default)]
    assunto: Option<String>,
    beneficiario: PersonDto,
    solicitante: PersonDto,
}

#[derive(Deserialize)]
struct CodeDto {
    #[serde(deserialize_with = "decode::int_lenient")]
    id: i64,
    #[serde(default)]
    descricao: Option<String>,
}

#[derive(Deserialize)]
struct PersonDto {
    #[serde(default)]
    nome: Option<String>,
    #[serde(rename = "chaveUnica", deserialize_with = "decode::string_or_number")]
    chave_unica: String,
}

impl TryFrom<ProtocolDto> for ServiceProtocol {
    type Error = String;

    fn try_from(dto: ProtocolDto) -> Result<Self, Self::Error> {
        let registered_at = decode::epoch_millis(&dto.data_registro).ok_or_else(|| {
            format!(
                "data_registro is not epoch milliseconds: {:?}",
                dto.data_registro
            )
        })?;
        let updated_at = decode::text(dto.data_atualizacao.as_ref())
            .as_deref()
            .and_then(decode::epoch_millis);
        Ok(ServiceProtocol {
            number: dto.protocolo,
            occurrence_type: dto.tipo_ocorrencia.try_into()?,
            status: dto.status.try_into()?,
            subject: dto.assunto.filter(|s| !s.trim().is_empty()),
            registered_at,
            updated_at,
            beneficiary: dto.beneficiario.into(),
            requester: dto.solicitante.into(),
        })
    }
}

impl TryFrom<CodeDto> for Code {
    type Error = String;

    fn try_from(dto: CodeDto) -> Result<Self, Self::Error> {
        Ok(Code {
            id: i32::try_from(dto.id).map_err(|_| format!("code id out of range: {}", dto.id))?,
            description: dto.descricao.unwrap_or_default(),
        })
    }
}

impl From<PersonDto> for Person {
    fn from(dto: PersonDto) -> Self {
        let name = dto.nome.unwrap_or_default();
        Person {
            name: strip_key_suffix(&name, &dto.chave_unica).to_owned(),
            unique_key: dto.chave_unica,
        }
    }
}
