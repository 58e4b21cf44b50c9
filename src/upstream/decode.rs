//! Lenient readers for upstream values: the documents disagree on types and field names, and
//! the gateway reads every variant it has seen rather than failing on the first.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::error::{Fault, FaultDetail};

/// A scalar as text: strings as sent, numbers and booleans printed; `""`, `null`, arrays and
/// objects are absent.
pub(crate) fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Deserializes a string or a number into its text (`""` stays `""`).
pub(crate) fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, found {}",
            kind(&other)
        ))),
    }
}

/// Deserializes an integer sent as a number or as a numeric string.
pub(crate) fn int_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let text = string_or_number(d)?;
    text.trim()
        .parse()
        .map_err(|_| serde::de::Error::custom("expected an integer"))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Epoch milliseconds, as a number or a numeric string (what Mosia documents), or an RFC 3339
/// timestamp (in case a Mosia version sends one).
pub(crate) fn epoch_millis(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    match text.parse::<i64>() {
        Ok(millis) => DateTime::from_timestamp_millis(millis),
        Err(_) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| at.with_timezone(&Utc)),
    }
}

/// A calendar date in any of the shapes Protheus has been seen to send: `2023-06-20`,
/// `20230620`, `20/06/2023`, or a timestamp starting with a date.
pub(crate) fn date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    let head = text.get(..10).unwrap_or(text);
    if let Some(date) = iso_date(head) {
        return Some(date);
    }
    NaiveDate::parse_from_str(head, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(text, "%Y%m%d"))
        .or_else(|_| NaiveDate::parse_from_str(head, "%d/%m/%Y"))
        .ok()
}

/// `YYYY-MM-DD` read directly: most dates are in this shape, and chrono's `parse_from_str`
/// parses its format string again on every call.
fn iso_date(head: &str) -> Option<NaiveDate> {
    let bytes = head.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range].iter().try_fold(0_u32, |n, byte| {
            byte.is_ascii_digit()
                .then(|| n * 10 + u32::from(byte - b'0'))
        })
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)
}

/// An object whose keys are folded to one style: lowercase, without `-` and `_`, so that
/// `subscriberId`, `subscriber-id`, `subscriber-_id` and `subscriber_id` read the same.
pub(crate) struct Folded(Map<String, Value>);

impl Folded {
    pub fn new(object: Map<String, Value>) -> Self {
        Self(
            object
                .into_iter()
                .map(|(key, value)| (fold(&key), value))
                .collect(),
        )
    }
    pub fn get(&self, folded_key: &str) -> Option<&Value> {
        self.0.get(folded_key)
    }
    pub fn take(&mut self, folded_key: &str) -> Option<Value> {
        self.0.remove(folded_key)
    }
    /// An optional value: `""` is absent.
    pub fn text(&self, folded_key: &str) -> Option<String> {
        text(self.get(folded_key))
    }
    /// A value the upstream documents as required: kept as sent, `""` included.
    pub fn required(&self, folded_key: &str) -> Option<String> {
        match self.get(folded_key)? {
            Value::String(s) => Some(s.clone()),
            other => text(Some(other)),
        }
    }
}

fn fold(key: &str) -> String {
    if key.is_ascii() {
        // Every key either upstream has sent: byte by byte, without Unicode case tables.
        let mut folded = String::with_capacity(key.len());
        folded.extend(
            key.bytes()
                .filter(|byte| !matches!(byte, b'-' | b'_'))
                .map(|byte| char::from(byte.to_ascii_lowercase())),
        );
        return folded;
    }
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// TOTVS's error body, read leniently (`code` may be a string or a number).
pub(crate) fn fault(body: &[u8]) -> Option<Fault> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let object = Folded::new(object);
    let details = match object.get("details") {
        Some(Value::Array(details)) => details
            .iter()
            .filter_map(|detail| match detail {
                Value::Object(d) => {
                    let d = Folded::new(d.clone());
                    Some(FaultDetail {
                        code: d.text("code"),
                        message: d.text("message"),
                        detailed_message: d.text("detailedmessage"),
                    })
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let fault = Fault {
        code: object.text("code"),
        message: object.text("message"),
        detailed_message: object.text("detailedmessage"),
        details,
    };
    (fault != Fault::default()).then_some(fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_key_style_folds_to_one() {
        for key in [
            "subscriberId",
            "subscriber-id",
            "subscriber-_id",
            "subscriber_id",
        ] {
            assert_eq!(fold(key), "subscriberid", "{key}");
        }
    }

    #[test]
    fn dates_are_read_in_every_protheus_shape() {
        let want = NaiveDate::from_ymd_opt(2023, 6, 20);
        for text in [
            "2023-06-20",
            "20230620",
            "20/06/2023",
            "2023-06-20T10:00:00",
        ] {
            assert_eq!(date(text), want, "{text}");
        }
        assert_eq!(date(""), None);
        assert_eq!(date("2023-02-30"), None);
    }

    #[test]
    fn the_direct_iso_reading_agrees_with_chrono_on_every_shape_it_takes() {
        let chrono = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
        for year in (0..=9999).step_by(37).chain([2000, 2023, 2024, 2100]) {
            for month in 0..=13 {
                for day in 0..=32 {
                    let text = format!("{year:04}-{month:02}-{day:02}");
                    assert_eq!(iso_date(&text), chrono(&text), "{text}");
                }
            }
        }
        for text in [
            "+023-06-20",
            "2023-6-200",
            "2023/06/20",
            "2023-06-2a",
            "２０２３-06-20",
        ] {
            assert_eq!(iso_date(text), None, "{text}");
            assert_eq!(date(text), chrono(text.get(..10).unwrap_or(text)), "{text}");
        }
    }

    #[test]
    fn keys_fold_alike_whatever_their_case_or_alphabet() {
        assert_eq!(fold("SubScriber-_ID"), "subscriberid");
        assert_eq!(fold("DATA_Solicitação"), "datasolicitação");
    }

    #[test]
    fn empty_strings_are_absent() {
        assert_eq!(text(Some(&Value::String(String::new()))), None);
        assert_eq!(text(Some(&serde_json::json!(7))), Some("7".into()));
    }

    #[test]
    fn epoch_millis_become_utc() {
        let at = epoch_millis("1720625728313").unwrap();
        assert_eq!(at.to_rfc3339(), "2024-07-10T15:35:28.313+00:00");
        assert_eq!(epoch_millis("2024-07-10T12:35:28.313-03:00"), Some(at));
        assert_eq!(epoch_millis("yesterday"), None);
    }
}
