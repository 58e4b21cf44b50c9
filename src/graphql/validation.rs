//! Argument checks that run before any upstream call. Each failure names the argument.

use super::errors::GatewayError;

/// Identifiers travel in URL paths and HTTP headers: nothing invisible, nothing endless.
pub const MAX_IDENTIFIER_CHARS: usize = 64;
pub const MAX_TEXT_CHARS: usize = 200;
pub const MAX_HREF_CHARS: usize = 2048;
pub const MAX_ATTACHMENTS: usize = 20;

const STATES: [&str; 27] = [
    "AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA", "PB", "PR",
    "PE", "PI", "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO",
];

/// A non-empty identifier without control characters or surrounding blanks, that cannot
/// move the URL path it travels in: no `/` or `\\`, and not only dots (`..` once reached
/// `…/authorizations/protocols` with the gateway's own token).
pub fn identifier(argument: &str, value: &str) -> Result<String, GatewayError> {
    let value = text(argument, value, MAX_IDENTIFIER_CHARS)?;
    if value.contains(['/', '\\']) || value.chars().all(|c| c == '.') {
        return Err(GatewayError::bad_input(
            argument,
            format!("{argument} must not contain path separators or be only dots"),
        ));
    }
    Ok(value)
}

/// A non-empty, printable text of at most `max` characters, trimmed.
pub fn text(argument: &str, value: &str, max: usize) -> Result<String, GatewayError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(GatewayError::bad_input(
            argument,
            format!("{argument} must not be empty"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(GatewayError::bad_input(
            argument,
            format!("{argument} must not contain control characters"),
        ));
    }
    if trimmed.chars().count() > max {
        return Err(GatewayError::bad_input(
            argument,
            format!("{argument} must be at most {max} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// An optional text: absent or blank is `None`, otherwise checked as [`text`].
pub fn optional_text(
    argument: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, GatewayError> {
    match value {
        Some(v) if !v.trim().is_empty() => text(argument, v, max).map(Some),
        _ => Ok(None),
    }
}

/// An integer within `min..=max`.
pub fn range(argument: &str, value: i32, min: i32, max: i32) -> Result<u32, GatewayError> {
    if (min..=max).contains(&value) {
        Ok(value.unsigned_abs())
    } else {
        Err(GatewayError::bad_input(
            argument,
            format!("{argument} must be between {min} and {max}, got {value}"),
        ))
    }
}

/// A page number: 1 or more.
pub fn page(argument: &str, value: i32) -> Result<u32, GatewayError> {
    if value >= 1 {
        Ok(value.unsigned_abs())
    } else {
        Err(GatewayError::bad_input(
            argument,
            format!("{argument} must be 1 or more, got {value}"),
        ))
    }
}

/// An absolute http(s) URL with a host and no user-info, at most 2048 characters.
pub fn href(argument: &str, value: &str) -> Result<String, GatewayError> {
    let bad = |why: &str| GatewayError::bad_input(argument, format!("{argument} {why}"));
    let value = value.trim();
    if value.chars().count() > MAX_HREF_CHARS {
        return Err(bad("must be at most 2048 characters"));
    }
    let url = url::Url::parse(value).map_err(|_| bad("must be an absolute http or https URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    Ok(value.to_owned())
}

/// A Brazilian state code (UF), e.g. `SP`; case is normalized.
pub fn state(argument: &str, value: &str) -> Result<String, GatewayError> {
    let upper = value.trim().to_ascii_uppercase();
    if STATES.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(GatewayError::bad_input(
            argument,
            format!("{argument} must be a Brazilian state code such as SP or RJ"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argument_of(err: GatewayError) -> String {
        match err {
            GatewayError::BadUserInput { argument, .. } => argument,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn identifiers_refuse_blank_and_control_characters() {
        assert_eq!(identifier("uniqueKey", " 123 ").unwrap(), "123");
        assert_eq!(
            argument_of(identifier("uniqueKey", "  ").unwrap_err()),
            "uniqueKey"
        );
        assert!(identifier("uniqueKey", "12\r\nX-Evil: 1").is_err());
        assert!(identifier("uniqueKey", &"9".repeat(65)).is_err());
    }

    #[test]
    fn identifiers_cannot_move_the_url_path() {
        for bad in [
            ".",
            "..",
            "...",
            "a/b",
            "../protocols",
            "a\\b",
            "%2e%2e/x/..",
        ] {
            if bad.contains(['/', '\\']) || bad.chars().all(|c| c == '.') {
                assert!(identifier("subscriberId", bad).is_err(), "{bad}");
            }
        }
        // Dots inside an identifier are not a path step.
        assert!(identifier("protocol", "1.2").is_ok());
        assert!(
            identifier("protocol", "%2e%2e").is_ok(),
            "percent-encoded again on the way out"
        );
    }

    #[test]
    fn hrefs_must_be_absolute_http_with_a_host_and_no_user_info() {
        assert!(href("h", "https://files.example/a.pdf").is_ok());
        for bad in [
            "ftp://x/a",
            "/relative",
            "https://user:pw@host/a",
            "http://",
            "file:///etc/passwd",
        ] {
            assert!(href("h", bad).is_err(), "{bad}");
        }
        let long = format!("https://h/{}", "a".repeat(2040));
        assert!(href("h", &long).is_err());
    }

    #[test]
    fn states_are_brazilian_codes() {
        assert_eq!(state("s", "sp").unwrap(), "SP");
        assert!(state("s", "XX").is_err());
    }
}
