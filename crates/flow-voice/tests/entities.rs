//! Entity extraction through the public API: emails, phones, numbers, dates,
//! statuses, fillers, and the cases where the parser must ask back.

mod common;

use flow_voice::{detect_language, parse, CommandName, Language, ParseContext, Parsed};
use serde_json::Value;

fn ctx() -> ParseContext {
    ParseContext::new(common::reference_now())
}

fn param(text: &str, key: &str) -> Option<Value> {
    match parse(text, &ctx()) {
        Parsed::Command(c) => c.parameters.get(key).cloned(),
        Parsed::Clarify(c) => panic!("{text:?} asked back: {}", c.question),
    }
}

fn command(text: &str) -> CommandName {
    parse(text, &ctx())
        .command()
        .unwrap_or_else(|| panic!("{text:?} was not understood"))
        .command
}

fn is_clarify(text: &str) -> bool {
    matches!(parse(text, &ctx()), Parsed::Clarify(_))
}

#[test]
fn spoken_and_written_emails() {
    for (text, email) in [
        ("find lead anna@example.com", "anna@example.com"),
        ("find lead ANNA@Example.COM", "anna@example.com"),
        ("find lead john at example dot com", "john@example.com"),
        (
            "find lead john snabel-a example punktum dk",
            "john@example.dk",
        ),
        (
            "find lead john snabel a example punktum dk",
            "john@example.dk",
        ),
        (
            "find lead john dot smith at acme dot co dot uk",
            "john.smith@acme.co.uk",
        ),
        (
            "find lead john underscore smith at acme dot com",
            "john_smith@acme.com",
        ),
    ] {
        assert_eq!(param(text, "email").unwrap(), email, "{text}");
    }
}

#[test]
fn danish_phone_formats() {
    for text in [
        "opret et lead for Mette telefon +45 12 34 56 78",
        "opret et lead for Mette telefon 12345678",
        "opret et lead for Mette telefon 12 34 56 78",
        "opret et lead for Mette tlf. 1234 5678",
        "opret et lead for Mette telefon et to tre fire fem seks syv otte",
        "opret et lead for Mette telefon tolv fireogtredive seksoghalvtreds otteoghalvfjerds",
        "create a lead for Mette phone one two three four five six seven eight",
        "create a lead for Mette phone plus four five one two three four five six seven eight",
    ] {
        assert_eq!(param(text, "phone").unwrap(), "+4512345678", "{text}");
    }
}

#[test]
fn number_words_as_limits() {
    for (text, n) in [
        ("vis de fem nyeste leads", 5),
        ("show the five newest leads", 5),
        ("vis de tyve nyeste leads", 20),
        ("show the twenty newest leads", 20),
        ("vis de ti nyeste leads", 10),
        ("show the ten newest leads", 10),
        ("show the twenty five newest leads", 25),
        ("vis de femogtyve nyeste leads", 25),
        ("vis de syvoghalvfems nyeste leads", 97),
        ("show the ninety nine newest leads", 99),
        ("show a hundred leads", 100),
        ("vis hundrede leads", 100),
    ] {
        assert_eq!(param(text, "limit").unwrap(), n, "{text}");
    }
}

#[test]
fn relative_dates_and_times() {
    // Reference: Wednesday 2026-11-18 09:00 +01:00.
    for (text, start) in [
        (
            "book a meeting with Anna tomorrow at 10",
            "2026-11-19T10:00:00+01:00",
        ),
        (
            "book et møde med Anna i morgen klokken 10",
            "2026-11-19T10:00:00+01:00",
        ),
        (
            "book et møde med Anna i overmorgen kl. 14:30",
            "2026-11-20T14:30:00+01:00",
        ),
        (
            "book et møde med Anna i morgen klokken halv tre",
            "2026-11-19T14:30:00+01:00",
        ),
        (
            "book a meeting with Anna tomorrow at half past two",
            "2026-11-19T14:30:00+01:00",
        ),
        (
            "book et møde med Anna i morgen klokken halv ti",
            "2026-11-19T09:30:00+01:00",
        ),
        (
            "book et møde med Anna på fredag kvart over ti",
            "2026-11-20T10:15:00+01:00",
        ),
        (
            "book a meeting with Anna on Friday at quarter to eleven",
            "2026-11-20T10:45:00+01:00",
        ),
        (
            "book a meeting with Anna on Monday at 9",
            "2026-11-23T09:00:00+01:00",
        ),
        (
            "book et møde med Anna mandag kl 9",
            "2026-11-23T09:00:00+01:00",
        ),
        (
            "book a meeting with Anna on Wednesday at 9",
            "2026-11-25T09:00:00+01:00",
        ),
        (
            "book a meeting with Anna today at 4 pm",
            "2026-11-18T16:00:00+01:00",
        ),
        (
            "book a meeting with Anna at 10",
            "2026-11-18T10:00:00+01:00",
        ),
        ("book a meeting with Anna at 8", "2026-11-19T08:00:00+01:00"),
        (
            "book a meeting with Anna in two hours",
            "2026-11-18T11:00:00+01:00",
        ),
        (
            "book et møde med Anna den 1. december klokken 10",
            "2026-12-01T10:00:00+01:00",
        ),
        (
            "book et møde med Anna den 3. klokken 10",
            "2026-12-03T10:00:00+01:00",
        ),
    ] {
        assert_eq!(param(text, "start").unwrap(), start, "{text}");
    }
    assert_eq!(
        param("book a meeting with Anna next week", "date").unwrap(),
        "2026-11-23"
    );
    assert_eq!(
        param("book et møde med Anna i næste uge", "date").unwrap(),
        "2026-11-23"
    );
    assert_eq!(
        param(
            "book et møde med Anna i en halv time i morgen kl 10",
            "duration_minutes"
        )
        .unwrap(),
        30
    );
    assert_eq!(
        param(
            "book a meeting with Anna for an hour tomorrow at 10",
            "duration_minutes"
        )
        .unwrap(),
        60
    );
}

#[test]
fn periods() {
    for (text, period) in [
        ("show leads from today", "today"),
        ("vis leads fra i dag", "today"),
        ("vis leads fra idag", "today"),
        ("show leads from yesterday", "yesterday"),
        ("vis leads fra i går", "yesterday"),
        ("vis leads fra i gaar", "yesterday"),
        ("show leads this week", "this_week"),
        ("vis leads denne uge", "this_week"),
        ("show leads from last week", "last_week"),
        ("vis leads fra sidste uge", "last_week"),
        ("show leads this month", "this_month"),
        ("vis leads denne måned", "this_month"),
    ] {
        assert_eq!(param(text, "period").unwrap(), period, "{text}");
    }
}

#[test]
fn statuses_in_both_languages() {
    for (text, status) in [
        ("vis nye leads", "NEW"),
        ("vis kontaktede leads", "CONTACTED"),
        ("vis kvalificerede leads", "QUALIFIED"),
        ("vis konverterede leads", "CONVERTED"),
        ("vis vundne leads", "CONVERTED"),
        ("vis tabte leads", "LOST"),
        ("show new leads", "NEW"),
        ("show contacted leads", "CONTACTED"),
        ("show qualified leads", "QUALIFIED"),
        ("show converted leads", "CONVERTED"),
        ("show won leads", "CONVERTED"),
        ("show lost leads", "LOST"),
        ("sæt Mette Hansen til kontaktet", "CONTACTED"),
        ("marker Mette Hansen som vundet", "CONVERTED"),
        ("mark John Smith as lost", "LOST"),
    ] {
        assert_eq!(param(text, "status").unwrap(), status, "{text}");
    }
}

#[test]
fn fillers_case_and_punctuation_do_not_matter() {
    let plain = parse("vis nye leads", &ctx());
    for text in [
        "øh vis nye leads",
        "øhm altså vis lige nye leads",
        "Vis nye leads!",
        "VIS NYE LEADS",
        "kan du vise nye leads?",
        "vis, øh, nye leads.",
    ] {
        let p = parse(text, &ctx());
        assert_eq!(
            p.command().map(|c| &c.parameters),
            plain.command().map(|c| &c.parameters),
            "{text}"
        );
    }
    let en = parse("show new leads", &ctx());
    for text in [
        "um show new leads please",
        "uh could you show new leads",
        "Show new leads, please.",
    ] {
        assert_eq!(
            parse(text, &ctx()).command().map(|c| &c.parameters),
            en.command().map(|c| &c.parameters)
        );
    }
}

#[test]
fn names_are_title_cased_only_when_heard_in_lower_case() {
    assert_eq!(
        param("assign john smith to peter", "target").unwrap(),
        "John Smith"
    );
    assert_eq!(
        param("assign John McNeil to Peter", "target").unwrap(),
        "John McNeil"
    );
    assert_eq!(
        param("søg efter kontakter hos søren østergård", "query").unwrap(),
        "Søren Østergård"
    );
}

#[test]
fn ascii_fallbacks() {
    assert_eq!(
        command("soeg efter kontakter hos novo"),
        CommandName::SearchContacts
    );
    assert_eq!(command("hjaelp"), CommandName::Help);
    assert_eq!(
        param("book et moede med mette i morgen kl 10", "with").unwrap(),
        "Mette"
    );
}

#[test]
fn ambiguity_and_empty_input_ask_back() {
    for text in [
        "",
        "   ",
        "...",
        "John",
        "John Smith",
        "Mette",
        "øh",
        "um",
        "create a lead",
        "find contacts",
        "mark as qualified",
    ] {
        assert!(is_clarify(text), "{text:?} should ask back");
    }
    let Parsed::Clarify(c) = parse("John", &ctx()) else {
        unreachable!()
    };
    assert!(c.candidates.contains(&CommandName::GetLead));
    assert!(c.question.contains("John"));
    let Parsed::Clarify(c) = parse("opret et lead", &ctx()) else {
        unreachable!()
    };
    assert_eq!(c.language, Language::Da);
    assert_eq!(c.candidates, vec![CommandName::CreateLead]);
}

#[test]
fn language_detection_and_override() {
    assert_eq!(detect_language("vis nye leads"), Language::Da);
    assert_eq!(detect_language("show new leads"), Language::En);
    let forced = ParseContext::with_language(common::reference_now(), Language::Da);
    assert_eq!(parse("leads", &forced).language(), Language::Da);
}

#[test]
fn serialises_to_the_wire_format() {
    let p = parse("mark John Smith as qualified", &ctx());
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["type"], "command");
    assert_eq!(v["command"], "update_lead_status");
    assert_eq!(v["language"], "en");
    assert_eq!(v["parameters"]["status"], "QUALIFIED");
    let c = parse("update_lead_status", &ctx());
    let _ = serde_json::to_value(&c).unwrap();
    assert_eq!(
        "assign_lead".parse::<CommandName>().unwrap(),
        CommandName::AssignLead
    );
    assert!("nope".parse::<CommandName>().is_err());
}

#[test]
fn parsed_commands_pass_validation() {
    let ctx = ctx();
    for name in ["en.tsv", "da.tsv"] {
        for (text, _) in common::load_table(name) {
            if let Parsed::Command(c) = parse(&text, &ctx) {
                let params = Value::Object(c.parameters.clone());
                flow_voice::validate(c.command.as_str(), &params)
                    .unwrap_or_else(|e| panic!("{text:?} produced an invalid command: {e}"));
            }
        }
    }
}
