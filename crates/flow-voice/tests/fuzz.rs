//! `parse` must never panic, whatever it is given.

mod common;

use flow_voice::{parse, ParseContext};
use proptest::prelude::*;

const VOCAB: &[&str] = &[
    "show",
    "vis",
    "new",
    "nye",
    "leads",
    "lead",
    "for",
    "med",
    "til",
    "to",
    "at",
    "kl.",
    "klokken",
    "halv",
    "kvart",
    "i",
    "morgen",
    "tomorrow",
    "dag",
    "mandag",
    "friday",
    "den",
    "the",
    "25.",
    "25th",
    "10",
    "14:30",
    "+45",
    "12",
    "34",
    "et",
    "to",
    "tre",
    "fem",
    "fireogtyve",
    "twenty",
    "five",
    "snabel-a",
    "punktum",
    "dot",
    "john",
    "Mette",
    "Hansen's",
    "anna@example.com",
    "@",
    "plus",
    "phone",
    "telefon",
    "mark",
    "as",
    "qualified",
    "tabt",
    "assign",
    "tildel",
    "note",
    "noter",
    "at",
    ":",
    ",",
    "log",
    "call",
    "book",
    "møde",
    "meeting",
    "how",
    "many",
    "hvor",
    "mange",
    "help",
    "hjælp",
    "øh",
    "um",
    "please",
    "search",
    "søg",
    "contacts",
    "next",
    "week",
    "om",
    "in",
    "an",
    "hour",
    "for",
    "30",
    "minutes",
    "half",
    "past",
    "quarter",
    "noon",
    "den",
    "december",
    "31st",
    "feb",
    "30.",
];

fn word_salad() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(VOCAB), 0..30).prop_map(|w| w.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        let _ = parse(&text, &ParseContext::new(common::reference_now()));
    }

    #[test]
    fn never_panics_on_word_salad(text in word_salad()) {
        let _ = parse(&text, &ParseContext::new(common::reference_now()));
    }

    #[test]
    fn never_panics_on_long_text(text in "[a-zæøå0-9@:.+ ,'-]{1000,4000}") {
        let _ = parse(&text, &ParseContext::new(common::reference_now()));
    }
}

#[test]
fn never_panics_on_edge_cases() {
    let ctx = ParseContext::new(common::reference_now());
    for text in [
        "",
        " ",
        "\u{0}",
        "'s",
        "’",
        "-",
        "@",
        "a@b",
        "@.",
        "x at y dot",
        "at",
        "kl",
        "halv",
        "kvart i",
        "quarter to",
        "den 31. februar",
        "the 0th",
        "at 99:99",
        "klokken 25",
        "+",
        "+45",
        "phone plus",
        "snabel",
        "\u{200b}",
        "ÆØÅ",
        "İ",
        "ß",
        "ǅ",
        "🙂 leads",
    ] {
        let _ = parse(text, &ctx);
    }
}
