//! Phone numbers: written ("+45 12 34 56 78", "12345678") or spoken digit by
//! digit or in Danish pairs ("tolv fireogtredive ...").

use std::ops::Range;

use super::numbers;
use crate::token::Token;

/// Danish subscriber numbers have eight digits.
const DANISH_DIGITS: usize = 8;
const MAX_DIGITS: usize = 15;

fn is_marker(word: &str) -> bool {
    matches!(
        word,
        "phone"
            | "telephone"
            | "mobile"
            | "cell"
            | "telefon"
            | "tlf"
            | "mobil"
            | "telefonnummer"
            | "mobilnummer"
            | "phone-number"
    )
}

fn is_marker_filler(word: &str) -> bool {
    matches!(word, "number" | "nummer" | "nr" | "is" | "er" | "på" | "no")
}

/// The first phone number in the tokens, formatted E.164-style for Danish numbers.
pub(crate) fn find(tokens: &[Token]) -> Option<(String, Range<usize>)> {
    let mut i = 0;
    while i < tokens.len() {
        let word = tokens[i].norm.as_str();
        let start = if is_marker(word) || (word == "number" && i > 0) {
            skip_fillers(tokens, i + 1)
        } else if looks_written(word) {
            i
        } else {
            i += 1;
            continue;
        };
        if let Some((number, end)) = collect(tokens, start) {
            return Some((number, i..end));
        }
        i += 1;
    }
    None
}

fn skip_fillers(tokens: &[Token], mut j: usize) -> usize {
    while tokens.get(j).is_some_and(|t| is_marker_filler(&t.norm)) {
        j += 1;
    }
    j
}

/// A token that is a phone number on its own, without a marker word before it.
fn looks_written(word: &str) -> bool {
    let digits = word.trim_start_matches('+');
    (word.starts_with('+') && digits.len() >= 2 && digits.bytes().all(|b| b.is_ascii_digit()))
        || (word.len() == DANISH_DIGITS && word.bytes().all(|b| b.is_ascii_digit()))
}

fn collect(tokens: &[Token], start: usize) -> Option<(String, usize)> {
    let mut digits = String::new();
    let mut plus = false;
    let mut j = start;
    while let Some(token) = tokens.get(j) {
        if digits.len() >= limit(plus, &digits) {
            break;
        }
        let word = token.norm.as_str();
        if digits.is_empty() && !plus && (word == "plus" || word == "+") {
            plus = true;
        } else if let Some(d) = written_digits(word) {
            plus |= word.starts_with('+') && digits.is_empty();
            digits.push_str(&d);
        } else if let Some(v) = spoken_digit_value(word) {
            digits.push_str(&v.to_string());
        } else {
            break;
        }
        j += 1;
        if token.clause_end {
            break;
        }
    }
    (digits.len() >= 6).then(|| (format_number(plus, &digits), j))
}

fn limit(plus: bool, digits: &str) -> usize {
    match (plus, digits.starts_with("45")) {
        (true, true) => DANISH_DIGITS + 2,
        (true, false) => MAX_DIGITS,
        (false, _) => DANISH_DIGITS,
    }
}

fn written_digits(word: &str) -> Option<String> {
    let body = word.trim_start_matches('+');
    let ok = !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && body.bytes().any(|b| b.is_ascii_digit());
    ok.then(|| body.replace('-', ""))
}

fn spoken_digit_value(word: &str) -> Option<u32> {
    match word {
        "en" | "et" => Some(1),
        "oh" | "o" => Some(0),
        _ => numbers::word_value(word).filter(|v| *v < 100),
    }
}

fn format_number(plus: bool, digits: &str) -> String {
    if plus {
        format!("+{digits}")
    } else if digits.len() == DANISH_DIGITS {
        format!("+45{digits}")
    } else {
        digits.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::tokenize;

    fn phone(text: &str) -> Option<String> {
        find(&tokenize(text)).map(|(p, _)| p)
    }

    #[test]
    fn written_danish_formats() {
        assert_eq!(phone("telefon +45 12 34 56 78").unwrap(), "+4512345678");
        assert_eq!(phone("phone 12345678").unwrap(), "+4512345678");
        assert_eq!(phone("tlf. 12 34 56 78").unwrap(), "+4512345678");
        assert_eq!(phone("mobil 2233 4455").unwrap(), "+4522334455");
        assert_eq!(phone("call +4512345678").unwrap(), "+4512345678");
        assert_eq!(phone("ring 12345678 i morgen").unwrap(), "+4512345678");
    }

    #[test]
    fn spoken_digits() {
        assert_eq!(
            phone("telefon et to tre fire fem seks syv otte").unwrap(),
            "+4512345678"
        );
        assert_eq!(
            phone("phone one two three four five six seven eight").unwrap(),
            "+4512345678"
        );
        assert_eq!(
            phone("telefon tolv fireogtredive seksoghalvtreds otteoghalvfjerds").unwrap(),
            "+4512345678"
        );
        assert_eq!(
            phone("phone plus four five one two three four five six seven eight").unwrap(),
            "+4512345678"
        );
    }

    #[test]
    fn stops_at_eight_digits_and_ignores_short_numbers() {
        assert_eq!(phone("phone 12 34 56 78 90").unwrap(), "+4512345678");
        assert_eq!(phone("phone 12"), None);
        assert_eq!(phone("at 10"), None);
    }
}
