//! Email addresses, written ("anna@example.com") or spoken
//! ("anna at example dot com", "anna snabel-a example punktum dk").

use std::ops::Range;

use crate::token::Token;

fn is_at(word: &str) -> bool {
    matches!(word, "at" | "snabel-a" | "snabela" | "@")
}

fn is_dot(word: &str) -> bool {
    matches!(word, "dot" | "punktum" | "prik")
}

fn joiner(word: &str) -> Option<char> {
    match word {
        "dot" | "punktum" | "prik" => Some('.'),
        "underscore" | "understreg" => Some('_'),
        "dash" | "hyphen" | "bindestreg" => Some('-'),
        _ => None,
    }
}

/// A piece of an address: letters, digits and the punctuation addresses allow.
fn is_part(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
        && word.chars().any(char::is_alphabetic)
}

/// The first email address in the tokens, lower-cased, with the tokens it spans.
pub(crate) fn find(tokens: &[Token]) -> Option<(String, Range<usize>)> {
    for (i, token) in tokens.iter().enumerate() {
        if let Some(email) = written(&token.norm) {
            return Some((email, i..i + 1));
        }
        if let Some(found) = spoken(tokens, i) {
            return Some(found);
        }
    }
    None
}

fn written(word: &str) -> Option<String> {
    let (local, domain) = word.split_once('@')?;
    let domain = domain.trim_end_matches('.');
    let ok =
        !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && is_part(domain);
    ok.then(|| format!("{local}@{domain}"))
}

/// "<local> at <domain> dot <tld>" with the "at" at token `i`.
fn spoken(tokens: &[Token], i: usize) -> Option<(String, Range<usize>)> {
    let at_len = at_marker(tokens, i)?;
    let (local, start) = local_part(tokens, i)?;
    let (domain, end) = domain_part(tokens, i + at_len)?;
    Some((format!("{local}@{domain}"), start..end))
}

fn at_marker(tokens: &[Token], i: usize) -> Option<usize> {
    let word = tokens.get(i)?.norm.as_str();
    if is_at(word) {
        return Some(1);
    }
    let next = tokens.get(i + 1).map(|t| t.norm.as_str());
    (word == "snabel" && next == Some("a")).then_some(2)
}

fn local_part(tokens: &[Token], at: usize) -> Option<(String, usize)> {
    let mut start = at.checked_sub(1)?;
    if !is_part(&tokens[start].norm) || tokens[start].clause_end {
        return None;
    }
    let mut local = tokens[start].norm.clone();
    while start >= 2 {
        let (sep, part) = (&tokens[start - 1].norm, &tokens[start - 2].norm);
        match joiner(sep) {
            Some(c) if is_part(part) && !tokens[start - 2].clause_end => {
                local = format!("{part}{c}{local}");
                start -= 2;
            }
            _ => break,
        }
    }
    Some((local, start))
}

fn domain_part(tokens: &[Token], from: usize) -> Option<(String, usize)> {
    let first = tokens.get(from)?;
    if !is_part(&first.norm) {
        return None;
    }
    let mut domain = first.norm.trim_end_matches('.').to_string();
    let mut end = from + 1;
    let mut last_clause_end = first.clause_end;
    while !last_clause_end {
        let (Some(sep), Some(part)) = (tokens.get(end), tokens.get(end + 1)) else {
            break;
        };
        match joiner(&sep.norm) {
            Some(c) if is_part(&part.norm) => {
                domain.push(c);
                domain.push_str(&part.norm);
                end += 2;
                last_clause_end = part.clause_end;
            }
            _ => break,
        }
    }
    let has_dot = domain.contains('.') && !domain.ends_with('.');
    (has_dot && (end > from + 1 || is_dot_free_tld(&first.norm))).then_some((domain, end))
}

/// A written domain ("example.com") after a spoken "at".
fn is_dot_free_tld(word: &str) -> bool {
    word.contains('.') && !is_dot(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::tokenize;

    fn email(text: &str) -> Option<String> {
        find(&tokenize(text)).map(|(e, _)| e)
    }

    #[test]
    fn written_emails() {
        assert_eq!(
            email("find lead Anna@Example.com.").unwrap(),
            "anna@example.com"
        );
        assert_eq!(
            email("mail jens.jensen@firma.dk").unwrap(),
            "jens.jensen@firma.dk"
        );
    }

    #[test]
    fn spoken_emails() {
        assert_eq!(
            email("email john at acme dot com").unwrap(),
            "john@acme.com"
        );
        assert_eq!(
            email("john snabel-a example punktum dk").unwrap(),
            "john@example.dk"
        );
        assert_eq!(
            email("bo snabel a firma punktum dk").unwrap(),
            "bo@firma.dk"
        );
        assert_eq!(
            email("tom dot hill at initech dot com").unwrap(),
            "tom.hill@initech.com"
        );
        assert_eq!(email("john at example.com").unwrap(), "john@example.com");
        assert_eq!(
            email("anne punktum berg snabel-a maersk punktum co punktum uk").unwrap(),
            "anne.berg@maersk.co.uk"
        );
    }

    #[test]
    fn at_without_domain_is_not_an_email() {
        assert_eq!(email("John Smith at Acme, email"), None);
        assert_eq!(email("meeting at 10"), None);
        assert_eq!(email("noter at peter vil have et tilbud"), None);
    }
}
