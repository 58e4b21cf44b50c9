//! TOTVS's authorization protocols, their statuses and their interactions.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A request for authorization of a procedure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationProtocol {
    pub protocol: String,
    pub subscriber_id: String,
    pub beneficiary_name: String,
    pub professional: Professional,
    pub status: AuthorizationStatus,
    /// The status code exactly as TOTVS sent it.
    pub status_code: String,
    pub authorization_number: Option<String>,
    pub auth_type: Option<AuthorizationType>,
    pub requested_on: Option<NaiveDate>,
    pub analyzed_on: Option<NaiveDate>,
}

/// The professional (doctor, dentist...) behind an authorization request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Professional {
    pub name: String,
    pub council: Option<String>,
    pub council_number: Option<String>,
    pub council_state: Option<String>,
}

/// The status of an authorization request, after TOTVS's codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthorizationStatus {
    Authorized,
    PartiallyAuthorized,
    NotAuthorized,
    InAudit,
    UnderAnalysis,
    Denied,
    AwaitingDocument,
    /// A code this gateway does not know.
    Unknown,
}

impl AuthorizationStatus {
    /// TOTVS's code for the status, `None` for `Unknown`.
    pub fn code(self) -> Option<u8> {
        Some(match self {
            Self::Authorized => 1,
            Self::PartiallyAuthorized => 2,
            Self::NotAuthorized => 3,
            Self::InAudit => 6,
            Self::UnderAnalysis => 7,
            Self::Denied => 8,
            Self::AwaitingDocument => 9,
            Self::Unknown => return None,
        })
    }

    /// The status of a TOTVS code; `"07"` reads as `"7"`.
    pub fn from_code(code: &str) -> Self {
        match code.trim().parse::<u32>() {
            Ok(1) => Self::Authorized,
            Ok(2) => Self::PartiallyAuthorized,
            Ok(3) => Self::NotAuthorized,
            Ok(6) => Self::InAudit,
            Ok(7) => Self::UnderAnalysis,
            Ok(8) => Self::Denied,
            Ok(9) => Self::AwaitingDocument,
            _ => Self::Unknown,
        }
    }
}

/// The kind of authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthorizationType {
    Sadt,
    Hospitalization,
    Dental,
}

impl AuthorizationType {
    pub fn from_code(code: &str) -> Option<Self> {
        match code.trim().parse::<u32>() {
            Ok(2) => Some(Self::Sadt),
            Ok(3) => Some(Self::Hospitalization),
            Ok(4) => Some(Self::Dental),
            _ => None,
        }
    }
}

/// One page of a subscriber's authorization protocols.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationProtocolPage {
    pub items: Vec<AuthorizationProtocol>,
    pub has_next: bool,
    pub remaining_records: i32,
    pub page: i32,
    pub page_size: i32,
}

/// A contact between the health plan and the beneficiary about an authorization protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interaction {
    pub sector: String,
    pub beneficiary_name: String,
    pub date: Option<NaiveDate>,
    pub reason: String,
    pub observation: String,
}

/// One page of a protocol's interactions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionPage {
    pub items: Vec<Interaction>,
    pub has_next: bool,
    pub remaining_records: i32,
}

/// Filters and paging of a subscriber's protocol list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProtocolQuery {
    pub protocol: Option<String>,
    pub protocol_or_authorization: Option<String>,
    pub solicitation_date: Option<NaiveDate>,
    /// TOTVS status codes, sorted and without repeats so equal filters share a cache entry.
    pub status: Vec<u8>,
    pub page: u32,
    pub page_size: u32,
    pub order: Option<String>,
}

impl ProtocolQuery {
    /// The first page with TOTVS's own default size, unfiltered.
    pub fn first_page() -> Self {
        Self {
            page: 1,
            page_size: 20,
            ..Self::default()
        }
    }
}

/// A page of a protocol's interactions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InteractionQuery {
    pub protocol: String,
    pub page: u32,
    pub page_size: u32,
}

/// A new authorization request, already validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub subscriber_id: String,
    pub professional_name: String,
    pub state_abbreviation: Option<String>,
    pub professional_council: Option<String>,
    pub professional_council_number: Option<String>,
    /// The documents' URLs.
    pub attachments: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip_and_zero_padding_reads_as_the_code() {
        for status in [
            AuthorizationStatus::Authorized,
            AuthorizationStatus::PartiallyAuthorized,
            AuthorizationStatus::NotAuthorized,
            AuthorizationStatus::InAudit,
            AuthorizationStatus::UnderAnalysis,
            AuthorizationStatus::Denied,
            AuthorizationStatus::AwaitingDocument,
        ] {
            let code = status.code().unwrap().to_string();
            assert_eq!(AuthorizationStatus::from_code(&code), status);
        }
        assert_eq!(
            AuthorizationStatus::from_code("07"),
            AuthorizationStatus::UnderAnalysis
        );
        assert_eq!(
            AuthorizationStatus::from_code("5"),
            AuthorizationStatus::Unknown
        );
        assert_eq!(AuthorizationStatus::Unknown.code(), None);
    }
}
