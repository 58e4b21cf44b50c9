//! What the logs and traces need from the environment, read before the rest of the settings so
//! that start-up problems are logged in the chosen format.

use url::Url;

use super::ConfigError;

/// Logs and traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// The log filter (`RUST_LOG` syntax).
    pub log_filter: String,
    /// Where spans are sent over OTLP/HTTP (protobuf), the whole `…/v1/traces` URL; `None`
    /// turns tracing off.
    pub otlp_traces_endpoint: Option<Url>,
    /// `service.name` of the spans.
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_filter: DEFAULT_LOG_FILTER.into(),
            otlp_traces_endpoint: None,
            service_name: DEFAULT_SERVICE_NAME.into(),
        }
    }
}

const DEFAULT_LOG_FILTER: &str = "info,tower_http=warn";
const DEFAULT_SERVICE_NAME: &str = "protocol-graph";

impl TelemetrySettings {
    /// `RUST_LOG`, and the OpenTelemetry variables that decide whether and where spans go:
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (the collector's base URL, `/v1/traces` appended as the
    /// OTLP specification says), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the whole URL, used as it
    /// is, and preferred) and `OTEL_SERVICE_NAME`. The SDK reads its other `OTEL_*` variables
    /// itself (headers, timeout, batch sizes).
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self::from_vars(var)
    }

    fn from_vars(var: impl Fn(&'static str) -> Option<String>) -> Result<Self, ConfigError> {
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => Some(otlp_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces)?),
            (None, Some(base)) => {
                let base = otlp_url("OTEL_EXPORTER_OTLP_ENDPOINT", &base)?;
                let path = format!("{}/v1/traces", base.path().trim_end_matches('/'));
                let mut url = base;
                url.set_path(&path);
                Some(url)
            }
            (None, None) => None,
        };
        Ok(Self {
            log_filter: var("RUST_LOG").unwrap_or_else(|| DEFAULT_LOG_FILTER.into()),
            otlp_traces_endpoint: endpoint,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| DEFAULT_SERVICE_NAME.into()),
        })
    }
}

fn otlp_url(name: &'static str, value: &str) -> Result<Url, ConfigError> {
    Url::parse(value.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
        .ok_or_else(|| ConfigError::Invalid {
            name,
            reason: "expected an http(s) URL such as http://localhost:4318".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&'static str, &str)]) -> Result<TelemetrySettings, ConfigError> {
        TelemetrySettings::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn tracing_is_off_without_an_endpoint() {
        assert_eq!(settings(&[]).unwrap(), TelemetrySettings::default());
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_and_the_traces_endpoint_is_kept() {
        let base = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap();
        assert_eq!(
            base.otlp_traces_endpoint.unwrap().as_str(),
            "http://collector:4318/v1/traces"
        );
        let whole = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other:4318/custom",
            ),
        ])
        .unwrap();
        assert_eq!(
            whole.otlp_traces_endpoint.unwrap().as_str(),
            "http://other:4318/custom"
        );
    }

    #[test]
    fn a_bad_endpoint_is_refused_by_name() {
        let err = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_ENDPOINT is invalid"),
            "{err}"
        );
    }
}
