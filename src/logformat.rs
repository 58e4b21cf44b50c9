//! The JSON shape of a log line under `serve`, written in one pass into the line's buffer:
//! `{"timestamp", "level", "fields": {...}, "target", "spans": [{..., "name"}]}`, the shape of
//! tracing-subscriber's own JSON format with its span list.
//!
//! Why not that format: it writes each JSON token through an adaptor that checks it for UTF-8
//! and re-parses every span's stored fields for every line, about 2.6 µs a line on the bench
//! machine. With an audit line per beneficiary read that was the largest cost of turning the
//! audit log on (bench/last-run.md); this writer does the same line in a fraction of that.

use std::fmt::{self, Write as _};

use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormattedFields,
        format::{JsonFields, Writer},
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

/// The event formatter of JSON log lines; spans' fields must be stored by [`JsonFields`].
pub(crate) struct JsonLine;

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        SystemTime.format_time(&mut Writer::new(&mut line))?;
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push_str("\",\"fields\":{");
        let mut fields = FieldsVisitor {
            line: &mut line,
            first: true,
        };
        event.record(&mut fields);
        line.push_str("},\"target\":");
        push_json_str(&mut line, meta.target());
        if let Some(scope) = ctx.event_scope() {
            line.push_str(",\"spans\":[");
            for (n, span) in scope.from_root().enumerate() {
                if n > 0 {
                    line.push(',');
                }
                let extensions = span.extensions();
                // JsonFields stores a span's fields as one JSON object: splice its members in.
                let stored = extensions
                    .get::<FormattedFields<JsonFields>>()
                    .map(|fields| fields.fields.as_str())
                    .and_then(|object| object.strip_prefix('{')?.strip_suffix('}'))
                    .filter(|members| !members.is_empty());
                line.push('{');
                if let Some(members) = stored {
                    line.push_str(members);
                    line.push(',');
                }
                line.push_str("\"name\":");
                push_json_str(&mut line, span.name());
                line.push('}');
            }
            line.push(']');
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// Writes an event's fields as JSON object members.
struct FieldsVisitor<'a> {
    line: &'a mut String,
    first: bool,
}

impl FieldsVisitor<'_> {
    fn key(&mut self, field: &Field) {
        if !std::mem::take(&mut self.first) {
            self.line.push(',');
        }
        push_json_str(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for FieldsVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.line, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.line, "{value}");
        } else {
            // JSON has no NaN or infinity; serde_json writes null for them too.
            self.line.push_str("null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.line.push('"');
        let _ = write!(
            Escaping {
                line: &mut *self.line
            },
            "{value:?}"
        );
        self.line.push('"');
    }
}

fn push_json_str(line: &mut String, value: &str) {
    line.push('"');
    let _ = Escaping { line: &mut *line }.write_str(value);
    line.push('"');
}

/// Appends text JSON-escaped (inside a string's quotes).
struct Escaping<'a> {
    line: &'a mut String,
}

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.line.push_str(&text[plain..at]);
            if escape.is_empty() {
                let _ = write!(self.line, "\\u{byte:04x}");
            } else {
                self.line.push_str(escape);
            }
            plain = at + 1;
        }
        self.line.push_str(&text[plain..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};
    use tracing_subscriber::{fmt::MakeWriter, layer::SubscriberExt};

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    /// The lines `log` writes, each parsed, under this formatter and under tracing-subscriber's
    /// own JSON format with its span list.
    fn both(log: impl Fn()) -> (Vec<Value>, Vec<Value>) {
        let ours = Lines::default();
        let theirs = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLine)
                    .with_writer(ours.clone()),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_span_list(true)
                    .with_writer(theirs.clone()),
            );
        tracing::subscriber::with_default(subscriber, log);
        let parse = |lines: Lines| {
            let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
                .collect::<Vec<Value>>()
        };
        (parse(ours), parse(theirs))
    }

    fn without_timestamp(mut line: Value) -> Value {
        line.as_object_mut().unwrap().remove("timestamp");
        line
    }

    #[test]
    fn lines_have_the_shape_and_content_of_tracing_subscribers_json_lines() {
        let (ours, theirs) = both(|| {
            let span = tracing::info_span!("request", request_id = "r-1", path = "/graphql");
            let _in_request = span.enter();
            let inner = tracing::info_span!("upstream", service = "totvs", attempt = 2_u64);
            let _in_upstream = inner.enter();
            tracing::info!(
                target: "audit",
                sub = %"staff-7",
                operation = "latestProtocols",
                unique_key = Some("13331584754"),
                absent = None::<&str>,
                count = 3_i64,
                ok = true,
                ratio = 0.5,
                "access"
            );
            drop(_in_upstream);
            drop(_in_request);
            tracing::warn!(status = 503_u64, error = ?"a \"quoted\"\nline\t\u{1}", "upstream error");
        });
        assert_eq!(ours.len(), 2);
        assert_eq!(ours.len(), theirs.len());
        for (ours, theirs) in ours.into_iter().zip(theirs) {
            assert!(ours["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
            assert_eq!(without_timestamp(ours), without_timestamp(theirs));
        }
    }

    #[test]
    fn a_line_outside_any_span_has_no_span_list() {
        let (ours, _) = both(|| tracing::info!(answer = 42_u64, "alone"));
        assert_eq!(
            without_timestamp(ours[0].clone()),
            json!({"level": "INFO", "fields": {"message": "alone", "answer": 42}, "target": "protocol_graph::logformat::tests"})
        );
    }
}
