//! Numbers written as digits or spoken as words, in English and Danish.
//!
//! Danish counts units before tens ("fireogtyve" = 24) and uses the old
//! vigesimal tens ("halvtreds" = 50), so the parser handles compounds rather
//! than a fixed list.

use crate::token::Token;
use crate::Language;

const EN_SMALL: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const EN_TENS: [(&str, u32); 8] = [
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];
const DA_SMALL: [&str; 20] = [
    "nul", "en", "to", "tre", "fire", "fem", "seks", "syv", "otte", "ni", "ti", "elleve", "tolv",
    "tretten", "fjorten", "femten", "seksten", "sytten", "atten", "nitten",
];
const DA_TENS: [(&str, u32); 14] = [
    ("tyve", 20),
    ("tredive", 30),
    ("tredve", 30),
    ("fyrre", 40),
    ("fyrretyve", 40),
    ("halvtreds", 50),
    ("halvtredsindstyve", 50),
    ("tres", 60),
    ("tresindstyve", 60),
    ("halvfjerds", 70),
    ("halvfjerdsindstyve", 70),
    ("firs", 80),
    ("firsindstyve", 80),
    ("halvfems", 90),
];

/// Words that are numbers in Danish but ordinary words in English text.
fn english_false_friend(word: &str) -> bool {
    matches!(
        word,
        "to" | "fire" | "ni" | "ti" | "tre" | "en" | "et" | "tres" | "firs"
    )
}

/// Value of a single token: digits, an English or Danish number word, or a Danish compound.
///
/// The articles "en"/"et"/"a"/"an" are not numbers here; callers that expect
/// a count ("en time") handle them.
pub(crate) fn word_value(word: &str) -> Option<u32> {
    if !word.is_empty() && word.len() <= 9 && word.bytes().all(|b| b.is_ascii_digit()) {
        return word.parse().ok();
    }
    if word == "en" {
        return None;
    }
    simple_value(word)
        .or_else(|| hyphenated(word))
        .or_else(|| danish_compound(word))
}

fn simple_value(word: &str) -> Option<u32> {
    let small = |list: &[&str]| list.iter().position(|w| *w == word).map(|v| v as u32);
    let tens = |list: &[(&str, u32)]| list.iter().find(|(w, _)| *w == word).map(|(_, v)| *v);
    small(&EN_SMALL)
        .or_else(|| small(&DA_SMALL))
        .or_else(|| tens(&EN_TENS))
        .or_else(|| tens(&DA_TENS))
        .or(match word {
            "hundred" | "hundrede" => Some(100),
            "dozen" => Some(12),
            _ => None,
        })
}

fn hyphenated(word: &str) -> Option<u32> {
    let (tens, unit) = word.split_once('-')?;
    let t = EN_TENS.iter().find(|(w, _)| *w == tens)?.1;
    let u = EN_SMALL[1..10].iter().position(|w| *w == unit)? as u32 + 1;
    Some(t + u)
}

fn danish_compound(word: &str) -> Option<u32> {
    let (unit, tens) = word.split_once("og")?;
    let u = match unit {
        "en" | "et" => 1,
        _ => DA_SMALL[2..10].iter().position(|w| *w == unit)? as u32 + 2,
    };
    let t = DA_TENS.iter().find(|(w, _)| *w == tens)?.1;
    Some(t + u)
}

/// Whether the token is a tens word (20, 30, ...) that a unit may follow.
fn is_tens(value: u32) -> bool {
    matches!(value, 20 | 30 | 40 | 50 | 60 | 70 | 80 | 90)
}

/// A number starting at token `i`, possibly spanning words ("twenty five",
/// "fire og tyve", "a hundred"): value and number of tokens used.
pub(crate) fn number_at(tokens: &[Token], i: usize, lang: Language) -> Option<(u32, usize)> {
    let word = tokens.get(i)?.norm.as_str();
    let next = |k: usize| tokens.get(i + k).map(|t| t.norm.as_str()).unwrap_or("");
    if lang == Language::En && english_false_friend(word) {
        return None;
    }
    if matches!(word, "a" | "one" | "et" | "en") && matches!(next(1), "hundred" | "hundrede") {
        return Some((100, 2));
    }
    let value = word_value(word)?;
    if is_tens(value) && !word.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(unit) = word_value(next(1)).filter(|u| (1..10).contains(u)) {
            if lang == Language::Da || !english_false_friend(next(1)) {
                return Some((value + unit, 2));
            }
        }
    }
    if (1..10).contains(&value) && next(1) == "og" {
        if let Some(tens) = word_value(next(2)).filter(|t| is_tens(*t)) {
            return Some((tens + value, 3));
        }
    }
    Some((value, 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::tokenize;

    fn parse(text: &str, lang: Language) -> Option<u32> {
        number_at(&tokenize(text), 0, lang).map(|(v, _)| v)
    }

    #[test]
    fn single_words() {
        assert_eq!(word_value("fem"), Some(5));
        assert_eq!(word_value("five"), Some(5));
        assert_eq!(word_value("tyve"), Some(20));
        assert_eq!(word_value("twenty"), Some(20));
        assert_eq!(word_value("ti"), Some(10));
        assert_eq!(word_value("ten"), Some(10));
        assert_eq!(word_value("42"), Some(42));
        assert_eq!(word_value("en"), None);
    }

    #[test]
    fn compounds() {
        assert_eq!(word_value("fireogtyve"), Some(24));
        assert_eq!(word_value("seksoghalvtreds"), Some(56));
        assert_eq!(word_value("otteoghalvfjerds"), Some(78));
        assert_eq!(word_value("enogtyve"), Some(21));
        assert_eq!(word_value("niogfirs"), Some(89));
        assert_eq!(word_value("twenty-five"), Some(25));
        assert_eq!(parse("twenty five", Language::En), Some(25));
        assert_eq!(parse("fire og tyve", Language::Da), Some(24));
        assert_eq!(parse("ninety nine", Language::En), Some(99));
        assert_eq!(parse("a hundred", Language::En), Some(100));
        assert_eq!(parse("hundrede", Language::Da), Some(100));
    }

    #[test]
    fn danish_false_friends_are_not_numbers_in_english() {
        assert_eq!(parse("to", Language::En), None);
        assert_eq!(parse("to", Language::Da), Some(2));
        assert_eq!(parse("fire", Language::En), None);
    }
}
