//! The JSON shape of a log line under `serve`, written in one pass into the line's buffer:
//! `{"timestamp", "level", "fields": {...}, "target", "spans": [{..., "name"}]}`, the shape of
//! tracing-subscriber's own JSON format with its span list.
//!
//! Why not that format: it writes each JSON token through an adaptor that checks it for UTF-8
//! and re-parses every span's stored fields for every line, about 2.6 µs a line on the bench
//! machine. With an audit line per beneficiary read that was the largest cost of turning the
//! audit log on (bench/last-run.md); this writer does the same line in a fraction of that.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
};

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
        push_timestamp(&mut line)?;
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

thread_local! {
    /// The second a thread last wrote a line in, and its text up to the seconds.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Now, as tracing-subscriber's `SystemTime` writes it (`2026-12-03T15:07:18.123456Z`); the
/// date and time of day are formatted once a second per thread.
fn push_timestamp(line: &mut String) -> fmt::Result {
    let now = std::time::SystemTime::now();
    let Ok(since_epoch) = now.duration_since(std::time::UNIX_EPOCH) else {
        return SystemTime.format_time(&mut Writer::new(line));
    };
    let secs = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            let at = i64::try_from(secs)
                .ok()
                .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
                .ok_or(fmt::Error)?;
            text.clear();
            write!(text, "{}", at.format("%Y-%m-%dT%H:%M:%S"))?;
            *second = secs;
        }
        line.push_str(text);
        Ok::<(), fmt::Error>(())
    })?;
    let micros = since_epoch.subsec_micros();
    line.push('.');
    for power in [100_000, 10_000, 1_000, 100, 10, 1] {
        // A single digit: `micros / power % 10` is below 10.
        line.push(char::from(b'0' + (micros / power % 10) as u8));
    }
    line.push('Z');
    Ok(())
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

/// The bytes a JSON string cannot hold as they are.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Identifiers, keys and names seldom need an escape: one pass over the bytes without
        // an early exit (so it runs many bytes at a time), then a single copy.
        let clean = !text.bytes().fold(false, |dirty, byte| {
            dirty | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
        });
        if clean {
            self.line.push_str(text);
            return Ok(());
        }
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            if !NEEDS_ESCAPE[usize::from(byte)] {
                continue;
            }
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                _ => "",
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
    use serde_json::{Value, json};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::tests::Lines;

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
                    .with_writer({
                        let ours = ours.clone();
                        move || ours.clone()
                    }),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_span_list(true)
                    .with_writer({
                        let theirs = theirs.clone();
                        move || theirs.clone()
                    }),
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
            let at = |line: &Value| {
                let text = line["timestamp"].as_str().unwrap().to_owned();
                let parsed = chrono::DateTime::parse_from_rfc3339(&text).unwrap();
                (text, parsed)
            };
            let ((our_text, our_at), (their_text, their_at)) = (at(&ours), at(&theirs));
            assert_eq!(our_text.len(), their_text.len(), "{our_text} {their_text}");
            assert!(our_text.ends_with('Z'), "{our_text}");
            assert!((their_at - our_at).num_milliseconds().abs() < 1000);
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
