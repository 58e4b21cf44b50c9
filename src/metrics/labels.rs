//! The closed sets metric labels take their values from.

use prometheus_client::encoding::EncodeLabelSet;

use crate::model::Service;

/// Which series an upstream call counts in: token calls apart from the resource calls of TOTVS,
/// so that `service="totvs"` is what the graph asked TOTVS for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Series {
    Mosia,
    Totvs,
    TotvsToken,
}

impl Series {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Series::Mosia => "mosia",
            Series::Totvs => "totvs",
            Series::TotvsToken => "totvs_token",
        }
    }
}

impl From<Service> for Series {
    fn from(service: Service) -> Self {
        match service {
            Service::Mosia => Series::Mosia,
            Service::Totvs => Series::Totvs,
        }
    }
}

/// Why a request was refused, as `protocol_graph_refusals_total{reason}` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Csrf,
    Unauthenticated,
    Forbidden,
    RateLimited,
    CostEstimated,
    CostActual,
}

impl Refusal {
    pub(super) const ALL: [Refusal; 6] = [
        Refusal::Csrf,
        Refusal::Unauthenticated,
        Refusal::Forbidden,
        Refusal::RateLimited,
        Refusal::CostEstimated,
        Refusal::CostActual,
    ];
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Refusal::Csrf => "csrf",
            Refusal::Unauthenticated => "unauthenticated",
            Refusal::Forbidden => "forbidden",
            Refusal::RateLimited => "rate_limited",
            Refusal::CostEstimated => "cost_estimated",
            Refusal::CostActual => "cost_actual",
        }
    }
}

/// A circuit breaker's state, as the breaker reports it through [`Metrics::breaker_state`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum BreakerState {
    #[default]
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub(super) const ALL: [BreakerState; 3] = [
        BreakerState::Closed,
        BreakerState::HalfOpen,
        BreakerState::Open,
    ];
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
    pub(super) fn from_u8(value: u8) -> Self {
        match value {
            1 => BreakerState::HalfOpen,
            2 => BreakerState::Open,
            _ => BreakerState::Closed,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ServiceLabel {
    pub(super) service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct UpstreamLabels {
    pub(super) service: &'static str,
    pub(super) route: &'static str,
    pub(super) status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) operation: String,
    pub(super) r#type: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TierLabel {
    pub(super) tier: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BreakerLabels {
    pub(super) service: &'static str,
    pub(super) state: &'static str,
}
