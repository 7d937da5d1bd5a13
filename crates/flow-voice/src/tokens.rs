//! Tokenizing and normalising utterances.
//!
//! Speech-to-text output and typed text differ in casing, punctuation and
//! spelling (ASCII fallbacks such as "soeg" for "søg"), so everything later in
//! the pipeline works on a normalised form while keeping the original spelling
//! and byte offsets for names and free-text descriptions.

use crate::lexicon;
pub(crate) use crate::token::Token;

/// The tokens of one utterance plus facts about how it was written.
#[derive(Debug)]
pub(crate) struct Utterance<'a> {
    /// The caller's text, for slicing free-text descriptions.
    pub text: &'a str,
    /// Tokens with filler words removed.
    pub tokens: Vec<Token>,
    /// Every token, fillers included (language detection uses them).
    pub all: Vec<Token>,
    /// No mixed casing: names must be title-cased because casing tells nothing.
    pub uncased: bool,
}

const LEADING_PUNCT: &[char] = &['"', '\'', '(', '[', '{', '¡', '¿', '“', '‘', '«', '-', '*'];
const TRAILING_PUNCT: &[char] = &[
    '"', '\'', ')', ']', '}', ',', '.', '!', '?', ';', ':', '”', '’', '»', '…', '*',
];

/// Split, normalise and drop fillers.
pub(crate) fn utterance(text: &str) -> Utterance<'_> {
    let all = tokenize(text);
    let tokens = strip_fillers(&all);
    let uncased = is_uncased(text, &all);
    Utterance {
        text,
        tokens,
        all,
        uncased,
    }
}

/// Casing says nothing about names: all lower, all upper, or only the first word and "I" capitalised.
fn is_uncased(text: &str, all: &[Token]) -> bool {
    if !text.chars().any(char::is_lowercase) {
        return true;
    }
    !all.iter()
        .skip(1)
        .any(|t| t.capitalized && !matches!(t.norm.as_str(), "i" | "i'm" | "i've" | "i'd" | "i'll"))
}

/// Split on whitespace, strip punctuation (keeping it inside emails, times and numbers).
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    for (start, chunk) in split_whitespace_indices(text) {
        push_chunk(&mut out, start, chunk);
    }
    out
}

fn split_whitespace_indices(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_whitespace()
        .map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

fn push_chunk(out: &mut Vec<Token>, start: usize, chunk: &str) {
    let lead = chunk.len() - chunk.trim_start_matches(LEADING_PUNCT).len();
    let body = &chunk[lead..];
    let core = body.trim_end_matches(TRAILING_PUNCT);
    let tail = &body[core.len()..];
    let (core, possessive) = strip_possessive(core);
    if core.is_empty() || !core.chars().any(char::is_alphanumeric) {
        mark_previous(out, tail);
        return;
    }
    let norm = normalise(core);
    let mut token = Token {
        norm,
        raw: core.to_string(),
        start: start + lead,
        capitalized: core.chars().next().is_some_and(char::is_uppercase),
        clause_end: false,
        colon: false,
        possessive,
    };
    set_flags(&mut token, tail);
    if let Some((first, second)) = lexicon::split_compound(&token.norm) {
        let mut head = token.clone();
        head.norm = first.to_string();
        head.clause_end = false;
        head.colon = false;
        token.norm = second.to_string();
        out.push(head);
    }
    out.push(token);
}

fn strip_possessive(core: &str) -> (&str, bool) {
    for suffix in ["'s", "’s", "'"] {
        if let Some(stem) = core.strip_suffix(suffix) {
            if !stem.is_empty() && !core.contains('@') {
                return (stem, true);
            }
        }
    }
    (core, false)
}

fn mark_previous(out: &mut [Token], tail: &str) {
    if let Some(prev) = out.last_mut() {
        set_flags(prev, tail);
    }
}

fn set_flags(token: &mut Token, tail: &str) {
    if tail.contains([',', ';', '!', '?', ':']) {
        token.clause_end = true;
    }
    if tail.contains(':') {
        token.colon = true;
    }
}

/// Lower-case, fold accents that Danish spelling treats as optional, resolve ASCII fallbacks.
pub(crate) fn normalise(word: &str) -> String {
    let lower: String = word
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'é' | 'è' | 'ê' => 'e',
            'á' | 'à' => 'a',
            '’' => '\'',
            _ => c,
        })
        .collect();
    if lexicon::is_vocab(&lower) || !lower.contains(['a', 'e', 'o']) {
        return lower;
    }
    let folded = lower
        .replace("aa", "å")
        .replace("ae", "æ")
        .replace("oe", "ø");
    if folded != lower && lexicon::is_vocab(&folded) {
        folded
    } else {
        lower
    }
}

fn strip_fillers(all: &[Token]) -> Vec<Token> {
    let mut tokens: Vec<Token> = all
        .iter()
        .filter(|t| !lexicon::is_filler(&t.norm))
        .cloned()
        .collect();
    loop {
        let words: Vec<&str> = tokens.iter().take(4).map(|t| t.norm.as_str()).collect();
        match lexicon::leading_filler_len(&words) {
            Some(n) => {
                tokens.drain(..n.min(tokens.len()));
            }
            None => break,
        }
    }
    tokens
}

/// Upper-case the first letter of each word, for names heard in lower case.
pub(crate) fn title_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at_word_start = true;
    for c in text.chars() {
        if at_word_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
            at_word_start = false;
        } else {
            out.push(c);
            if c == ' ' || c == '-' {
                at_word_start = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_email_and_time_punctuation() {
        let t = tokenize("Email anna@example.com, at 14:30.");
        let norms: Vec<&str> = t.iter().map(|t| t.norm.as_str()).collect();
        assert_eq!(norms, ["email", "anna@example.com", "at", "14:30"]);
        assert!(t[1].clause_end);
    }

    #[test]
    fn possessive_and_colon() {
        let t = tokenize("John Smith's lead: hot");
        assert!(t[1].possessive);
        assert_eq!(t[1].raw, "Smith");
        assert!(t[2].colon);
    }

    #[test]
    fn ascii_fallbacks() {
        assert_eq!(normalise("soeg"), "søg");
        assert_eq!(normalise("maaned"), "måned");
        assert_eq!(normalise("Notér"), "noter");
        assert_eq!(normalise("Jensen"), "jensen");
    }

    #[test]
    fn fillers_removed() {
        let u = utterance("øh kan du lige vise mig nye leads");
        let norms: Vec<&str> = u.tokens.iter().map(|t| t.norm.as_str()).collect();
        assert_eq!(norms, ["vise", "mig", "nye", "leads"]);
    }

    #[test]
    fn title_cases() {
        assert_eq!(title_case("anne-marie jensen"), "Anne-Marie Jensen");
    }
}
