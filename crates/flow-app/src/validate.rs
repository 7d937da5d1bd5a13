//! Input rules applied at the edge, before anything is written.

use crate::error::{ApiError, ApiResult, ErrorCode};

/// Characters that have no business in a name and mark injection attempts (`<script>`,
/// `'; DROP TABLE`): refused rather than stored, so no consumer has to escape them.
const FORBIDDEN_IN_NAMES: &[char] = &['<', '>', ';', '{', '}', '"', '\\', '`', '|', '$', '='];

// The rules below as OpenAPI `pattern`s (ECMA-262 regexes), for the request structs'
// `#[schema(pattern = ..)]` and `#[param(pattern = ..)]`. utoipa takes only a literal
// there, so each attribute repeats its pattern, and the `schema` integration test checks
// the document carries exactly these strings.
//
// A pattern accepts nothing the server refuses (together with the field's `maxLength`,
// which, like the server, counts characters). It can be stricter than the server where
// the server is lenient in ways a client has no reason to rely on: the server trims
// surrounding whitespace and lower- or upper-cases codes before checking them, so it also
// takes `" website "`, a tab after a name, or `ß` in a code (upper-cased to `SS`); the
// patterns describe the value as a client should send it. "Control characters" are
// Rust's `char::is_control`: U+0000-U+001F and U+007F-U+009F.

/// A required name ([`name`]): no control character and none of ``< > ; { } " \ ` | $ =``
/// anywhere, and not blank: the lookahead `(?=\s*\S)` asks for one non-whitespace
/// character, and the class after it still has to cover every character.
pub const NAME_PATTERN: &str = r#"^(?=\s*\S)[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#;

/// An optional name ([`opt_name`]): as [`NAME_PATTERN`], but blank is allowed (the
/// server treats an empty or blank value as absent).
pub const OPTIONAL_NAME_PATTERN: &str = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#;

/// Free text ([`text`]): no control characters other than tab, line feed and carriage
/// return.
pub const TEXT_PATTERN: &str = r#"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"#;

/// Search text ([`search_text`]) and id filters ([`filter_id`]): no control characters.
pub const PRINTABLE_PATTERN: &str = r#"^[^\u0000-\u001f\u007f-\u009f]*$"#;

/// An email address ([`email`]): a local part of 1-64 of the characters RFC 5322 allows
/// unquoted (letters, digits, ``.!#$%&'*+/=?^_`{|}~-``), `@`, and a domain of dot-separated
/// labels of letters, digits and `-` with at least one dot. ASCII only: the server also
/// takes non-ASCII letters (`søren@firma.dk`), but it counts the 64 and 254 in bytes, which
/// a pattern cannot, and `format: email` refuses them anyway.
pub const EMAIL_PATTERN: &str =
    r#"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$"#;

/// A phone number ([`opt_phone`]): 6-15 digits, with spaces and `+ ( ) - .` anywhere
/// between and around them. (Send no phone rather than an empty one.)
pub const PHONE_PATTERN: &str = r#"^(?:[ +().-]*[0-9]){6,15}[ +().-]*$"#;

/// A source or tag ([`slug`]): 1-64 of letters, digits, `.`, `_` and `-` (stored
/// lower-cased).
pub const SLUG_PATTERN: &str = r#"^[A-Za-z0-9._-]{1,64}$"#;

/// A required name-like field: trimmed, 1..=max characters, no control or markup characters.
pub fn name(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::validation(format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(ApiError::validation(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() || FORBIDDEN_IN_NAMES.contains(&c))
    {
        return Err(ApiError::validation(format!(
            "{field} contains characters that are not allowed (control characters or any of {})",
            FORBIDDEN_IN_NAMES.iter().collect::<String>()
        )));
    }
    Ok(value.to_owned())
}

/// An optional name-like field; an empty string counts as absent.
pub fn opt_name(field: &str, value: Option<&str>, max: usize) -> ApiResult<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => name(field, v, max).map(Some),
    }
}

/// Free text (notes, descriptions): anything printable, newlines and tabs included.
pub fn text(field: &str, value: Option<&str>, max: usize) -> ApiResult<Option<String>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > max {
        return Err(ApiError::validation(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ApiError::validation(format!(
            "{field} contains control characters"
        )));
    }
    Ok(Some(value.to_owned()))
}

/// An email address, normalised to lower case: the key contacts are matched on.
pub fn email(value: &str) -> ApiResult<String> {
    let value = value.trim().to_lowercase();
    let invalid = || ApiError::validation(format!("email {value:?} is not a valid address"));
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.chars().any(|c| "<>()[]\\,;:\"@".contains(c));
    if !local_ok || !domain_ok {
        return Err(invalid());
    }
    Ok(value)
}

/// An optional email; an empty string counts as absent.
pub fn opt_email(value: Option<&str>) -> ApiResult<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => email(v).map(Some),
    }
}

/// A phone number as people write it (`+45 12 34 56 78`, `(555) 123-4567`).
pub fn opt_phone(value: Option<&str>) -> ApiResult<Option<String>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let shape_ok = value
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if !shape_ok || !(6..=15).contains(&digits) || value.len() > 32 {
        return Err(ApiError::validation(format!(
            "phone {value:?} is not a phone number (6-15 digits, optional + ( ) - . and spaces)"
        )));
    }
    Ok(Some(value.to_owned()))
}

/// A source or tag such as `website` or `voice-agent`: lower-cased slug.
pub fn slug(field: &str, value: &str) -> ApiResult<String> {
    let value = value.trim().to_lowercase();
    let ok = (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        return Err(ApiError::validation(format!(
            "{field} must be 1-64 characters of a-z, 0-9, '-', '_' or '.'"
        )));
    }
    Ok(value)
}

/// Longest search text (`q`), in characters. A search reads the tenant's rows with a
/// substring match that no index serves; its cost grows with the text, and 30,000
/// characters from one tenant once held a PostgreSQL pool for 10 s.
pub const MAX_SEARCH_CHARS: usize = 100;

/// Search text: trimmed, absent when empty, at most [`MAX_SEARCH_CHARS`] characters.
pub fn search_text(value: Option<String>) -> ApiResult<Option<String>> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > MAX_SEARCH_CHARS {
        return Err(ApiError::validation(format!(
            "q must be at most {MAX_SEARCH_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::validation("q contains control characters"));
    }
    Ok(Some(value))
}

/// An id-like filter value (`entityId`): 1..=`max` printable characters.
pub fn filter_id(field: &str, value: Option<String>, max: usize) -> ApiResult<Option<String>> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "{field} must be at most {max} printable characters"
        )));
    }
    Ok(Some(value))
}

/// Page size: 1..=100, default 20. A bigger one is an error, not silently clamped.
pub fn limit(value: Option<u32>) -> ApiResult<u32> {
    match value {
        None => Ok(20),
        Some(n @ 1..=100) => Ok(n),
        Some(n) => Err(ApiError::new(
            ErrorCode::InvalidLimit,
            format!("limit must be between 1 and 100, got {n}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            email("  Jane.Doe@Example.COM ").unwrap(),
            "jane.doe@example.com"
        );
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@example",
            "ja ne@example.com",
            "jane@exa mple.com",
            "jane@@example.com",
            "<script>@x.com",
            "jane@.example.com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_refuse_markup_and_injection() {
        assert_eq!(
            name("firstName", " O'Brien-Smith ", 100).unwrap(),
            "O'Brien-Smith"
        );
        assert_eq!(
            name("company", "Jensen & Søn ApS", 100).unwrap(),
            "Jensen & Søn ApS"
        );
        for bad in [
            "",
            "   ",
            "<script>alert(1)</script>",
            "x'; DROP TABLE leads; --",
            "a\u{0}b",
        ] {
            assert!(name("firstName", bad, 100).is_err(), "{bad:?}");
        }
        assert!(name("firstName", &"x".repeat(101), 100).is_err());
    }

    #[test]
    fn phones_and_limits() {
        assert!(opt_phone(Some("+45 12 34 56 78")).unwrap().is_some());
        assert!(opt_phone(Some("12")).is_err());
        assert!(opt_phone(Some("call me")).is_err());
        assert_eq!(limit(None).unwrap(), 20);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(101)).is_err());
    }
}
