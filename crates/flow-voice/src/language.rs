//! Danish or English, decided from the words used.
//!
//! Many words exist in both languages ("find", "leads", "status"), so the
//! decision counts words that only one of them uses and breaks ties with the
//! Danish letters æ, ø and å.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::token::Token;
use crate::Language;

const DANISH_ONLY: &str = "vis mig nye nyt ny og med til er har hvad hvilke hvor mange jeg vi et en de det den på fra dag går
morgen uge måned kontakter kontakt opret tilføj sæt marker tildel søg efter hos som møde klokken kl
hjælp kan du overblik leadet lige øh øhm altså noter giv hent denne sidste næste mine alle ring
ringet opkald tak hej om ikke nogen kom ind hedder firma telefon snabel-a punktum mandag tirsdag
onsdag torsdag fredag lørdag søndag dagens hvem hvordan vores aftale planlæg book ændr flyt
kvalificeret kvalificerede kontaktet kontaktede konverteret tabt tabte vundet halv kvart tre fire
fem seks syv otte ni ti tyve opsummering oversigt emner folk slå op bla vejret godt ja nej mail
skriv lav registrer oprette tildele markere vise finde hjælpe leads lead vil skal der af ham hun han
nu så være blevet også gerne ugen mødes ringede kender";

const ENGLISH_ONLY: &str = "show me new the a an and with to is are what which how many we my of from create add set mark assign
search contacts contact today tomorrow this week month meeting help can you do list lead leads
please um uh log call note give get for on last next all find email phone book schedule summary
overview qualified contacted converted lost won yesterday monday tuesday wednesday thursday friday
saturday sunday half past quarter one two three four five six seven eight nine ten twenty dot i it
hello thanks yes weather nice blah as that about have did does who people named called there our up
in";

static DANISH: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| DANISH_ONLY.split_whitespace().collect());
static ENGLISH: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| ENGLISH_ONLY.split_whitespace().collect());

/// Danish when Danish-only words (or æ/ø/å) outweigh English-only ones; English otherwise.
pub(crate) fn detect(tokens: &[Token]) -> Language {
    let mut da = 0i32;
    let mut en = 0i32;
    for t in tokens {
        let w = t.norm.as_str();
        // "lead(s)" and "book" are shared loanwords: they count for neither side.
        if matches!(w, "lead" | "leads" | "book" | "find" | "i" | "mail") {
            continue;
        }
        if DANISH.contains(w) {
            da += 2;
        }
        if ENGLISH.contains(w) {
            en += 2;
        }
        if w.contains(['æ', 'ø', 'å']) {
            da += 1;
        }
    }
    if da > en {
        Language::Da
    } else {
        Language::En
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::tokenize;

    fn lang(text: &str) -> Language {
        detect(&tokenize(text))
    }

    #[test]
    fn detects_both_languages() {
        assert_eq!(lang("vis nye leads"), Language::Da);
        assert_eq!(lang("show new leads"), Language::En);
        assert_eq!(lang("hjælp"), Language::Da);
        assert_eq!(lang("help"), Language::En);
        assert_eq!(
            lang("book et møde med Mette i morgen klokken 10"),
            Language::Da
        );
        assert_eq!(
            lang("book a meeting with John tomorrow at 10"),
            Language::En
        );
        assert_eq!(lang("søren"), Language::Da);
    }
}
