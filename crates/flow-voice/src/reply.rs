//! Short sentences to speak back, in the caller's language.
//!
//! Kept deliberately small: one function per outcome, plain strings, no
//! templating engine, so the voice front end can call them directly.

use chrono::{DateTime, FixedOffset, Timelike};

use crate::{Clarification, CommandName, Language, Status};

const DA_WEEKDAYS: [&str; 7] = [
    "mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag",
];
const EN_WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn pick(lang: Language, da: impl Into<String>, en: impl Into<String>) -> String {
    match lang {
        Language::Da => da.into(),
        Language::En => en.into(),
    }
}

/// "Anna, Bo og Carl" / "Anna, Bo and Carl".
pub fn join_names(lang: Language, names: &[String]) -> String {
    let and = pick(lang, "og", "and");
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {and} {last}", init.join(", ")),
    }
}

/// Status adjective, singular or plural (Danish inflects, English does not).
fn status_word(lang: Language, status: &str, plural: bool) -> String {
    let Some(s) = Status::from_wire(status) else {
        return status.to_lowercase();
    };
    let (da_one, da_many, en) = match s {
        Status::New => ("nyt", "nye", "new"),
        Status::Contacted => ("kontaktet", "kontaktede", "contacted"),
        Status::Qualified => ("kvalificeret", "kvalificerede", "qualified"),
        Status::Converted => ("konverteret", "konverterede", "converted"),
        Status::Lost => ("tabt", "tabte", "lost"),
    };
    pick(lang, if plural { da_many } else { da_one }, en)
}

/// "3 nye leads" / "one new lead" / "ingen leads".
fn count_leads(lang: Language, count: usize, status: Option<&str>) -> String {
    let adjective = |plural| {
        status
            .map(|s| format!("{} ", status_word(lang, s, plural)))
            .unwrap_or_default()
    };
    match (lang, count) {
        (Language::Da, 0) => format!("ingen {}leads", adjective(true)),
        (Language::Da, 1) => format!("et {}lead", adjective(false)),
        (Language::Da, n) => format!("{n} {}leads", adjective(true)),
        (Language::En, 0) => format!("no {}leads", adjective(true)),
        (Language::En, 1) => format!("one {}lead", adjective(false)),
        (Language::En, n) => format!("{n} {}leads", adjective(true)),
    }
}

/// Answer to `get_leads`: how many and, when there are any, who.
pub fn leads_listed(
    lang: Language,
    count: usize,
    status: Option<&str>,
    names: &[String],
) -> String {
    let have = pick(lang, "Du har", "You have");
    let counted = count_leads(lang, count, status);
    if count == 0 || names.is_empty() {
        return format!("{have} {counted}.");
    }
    let partial = names.len() < count;
    let names = join_names(lang, names);
    if partial {
        let including = pick(lang, "blandt andre", "including");
        return format!("{have} {counted}, {including} {names}.");
    }
    format!("{have} {counted}: {names}.")
}

/// Answer to `create_lead`.
pub fn lead_created(lang: Language, name: &str) -> String {
    pick(
        lang,
        format!("Jeg har oprettet et lead for {name}."),
        format!("I created a lead for {name}."),
    )
}

/// Answer to `update_lead_status`.
pub fn status_updated(lang: Language, name: &str, status: &str) -> String {
    let s = status_word(lang, status, false);
    pick(
        lang,
        format!("{name} er nu {s}."),
        format!("{name} is now {s}."),
    )
}

/// Answer to `get_lead`: the lead's status.
pub fn lead_status(lang: Language, name: &str, status: &str) -> String {
    // Said of a named person, so the common gender ("ny"), not the neuter of "et lead".
    let s = match (lang, Status::from_wire(status)) {
        (Language::Da, Some(Status::New)) => "ny".to_owned(),
        _ => status_word(lang, status, false),
    };
    pick(lang, format!("{name} er {s}."), format!("{name} is {s}."))
}

/// Answer to a command that would change something, run as a dry run.
pub fn dry_run(lang: Language, command: &str) -> String {
    pick(
        lang,
        format!("Testkørsel: {command} blev forstået, men ikke udført."),
        format!("Dry run: understood {command}, nothing was changed."),
    )
}

/// Answer to `assign_lead`; `assignee` "me" reads as the speaker.
pub fn lead_assigned(lang: Language, name: &str, assignee: &str) -> String {
    if assignee == "me" {
        return pick(
            lang,
            format!("{name} er nu tildelt dig."),
            format!("{name} is now assigned to you."),
        );
    }
    pick(
        lang,
        format!("{name} er nu tildelt {assignee}."),
        format!("{name} is now assigned to {assignee}."),
    )
}

/// Answer to `search_contacts`.
pub fn contacts_found(lang: Language, query: &str, names: &[String]) -> String {
    match names.len() {
        0 => pick(
            lang,
            format!("Jeg fandt ingen kontakter for {query}."),
            format!("I found no contacts for {query}."),
        ),
        1 => pick(
            lang,
            format!("Jeg fandt én kontakt: {}.", names[0]),
            format!("I found one contact: {}.", names[0]),
        ),
        n => pick(
            lang,
            format!("Jeg fandt {n} kontakter: {}.", join_names(lang, names)),
            format!("I found {n} contacts: {}.", join_names(lang, names)),
        ),
    }
}

/// Answer to `log_activity`.
pub fn activity_logged(lang: Language, activity_type: &str, target: Option<&str>) -> String {
    let (da, en) = match activity_type {
        "call" => ("opkaldet", "the call"),
        "email" => ("mailen", "the email"),
        "meeting" => ("mødet", "the meeting"),
        _ => ("noten", "the note"),
    };
    match target {
        Some(t) => pick(
            lang,
            format!("Jeg har logget {da} med {t}."),
            format!("I logged {en} with {t}."),
        ),
        None => pick(
            lang,
            format!("Jeg har logget {da}."),
            format!("I logged {en}."),
        ),
    }
}

/// Answer to `schedule_meeting`, e.g. "Mødet med Mette er booket torsdag den 19. kl. 10:00."
pub fn meeting_scheduled(
    lang: Language,
    with: Option<&str>,
    start: DateTime<FixedOffset>,
) -> String {
    use chrono::Datelike;
    let day = start.weekday().num_days_from_monday() as usize;
    let (h, m, d) = (start.hour(), start.minute(), start.day());
    match (lang, with) {
        (Language::Da, Some(w)) => format!(
            "Mødet med {w} er booket {} den {d}. kl. {h:02}:{m:02}.",
            DA_WEEKDAYS[day]
        ),
        (Language::Da, None) => format!(
            "Mødet er booket {} den {d}. kl. {h:02}:{m:02}.",
            DA_WEEKDAYS[day]
        ),
        (Language::En, Some(w)) => format!(
            "The meeting with {w} is booked for {} the {d} at {h:02}:{m:02}.",
            EN_WEEKDAYS[day]
        ),
        (Language::En, None) => format!(
            "The meeting is booked for {} the {d} at {h:02}:{m:02}.",
            EN_WEEKDAYS[day]
        ),
    }
}

fn period_phrase(lang: Language, period: Option<&str>) -> String {
    let (da, en) = match period {
        Some("today") => ("I dag", "Today"),
        Some("yesterday") => ("I går", "Yesterday"),
        Some("this_week") => ("Denne uge", "This week"),
        Some("last_week") => ("Sidste uge", "Last week"),
        Some("this_month") => ("Denne måned", "This month"),
        _ => ("Lige nu", "Right now"),
    };
    pick(lang, da, en)
}

/// Answer to `get_summary`: new leads and meetings in the period.
pub fn summary(lang: Language, period: Option<&str>, new_leads: usize, meetings: usize) -> String {
    let when = period_phrase(lang, period);
    let leads = count_leads(lang, new_leads, Some("NEW"));
    let meetings = match (lang, meetings) {
        (Language::Da, 1) => "et møde".to_string(),
        (Language::Da, n) => format!("{n} møder"),
        (Language::En, 1) => "one meeting".to_string(),
        (Language::En, n) => format!("{n} meetings"),
    };
    format!("{when}: {leads} {} {meetings}.", pick(lang, "og", "and"))
}

/// Answer to `help`.
pub fn help_text(lang: Language) -> String {
    pick(
        lang,
        "Du kan fx sige: vis nye leads, opret et lead for Mette Hansen, marker Mette som kvalificeret, \
         tildel Mette til Lars, søg efter kontakter hos Novo, log et opkald med Mette, \
         book et møde med Mette i morgen klokken 10, eller hvor mange nye leads har vi i dag.",
        "You can say, for example: show new leads, create a lead for John Smith, mark John as qualified, \
         assign John to Peter, search contacts for Acme, log a call with John, \
         book a meeting with John tomorrow at 10, or how many new leads this week.",
    )
}

/// When a lookup found nothing; `what` is the name or query as said.
pub fn not_found(lang: Language, what: &str) -> String {
    pick(
        lang,
        format!("Jeg kunne ikke finde {what}."),
        format!("I couldn't find {what}."),
    )
}

/// The question to speak for a clarification.
pub fn clarify(clarification: &Clarification) -> String {
    clarification.question.clone()
}

pub(crate) fn didnt_understand(lang: Language) -> String {
    pick(
        lang,
        "Undskyld, det forstod jeg ikke. Hvad vil du gerne gøre? Sig hjælp for at høre mulighederne.",
        "Sorry, I didn't understand that. What would you like to do? Say help to hear the options.",
    )
}

pub(crate) fn what_about(lang: Language, name: &str) -> String {
    pick(
        lang,
        format!("Hvad vil du gøre med {name}? Jeg kan vise leadet eller søge i kontakterne."),
        format!("What would you like to do with {name}? I can show the lead or search contacts."),
    )
}

pub(crate) fn ask_for(lang: Language, command: CommandName, slot: &str) -> String {
    let (da, en) = match (command, slot) {
        (CommandName::CreateLead, _) => (
            "Hvem skal det nye lead oprettes for?",
            "Who should the new lead be for?",
        ),
        (CommandName::UpdateLeadStatus, _) => (
            "Hvilket lead skal jeg opdatere?",
            "Which lead should I update?",
        ),
        (CommandName::AssignLead, "assignee") => {
            ("Hvem skal have leadet?", "Who should get the lead?")
        }
        (CommandName::AssignLead, _) => (
            "Hvilket lead skal jeg tildele?",
            "Which lead should I assign?",
        ),
        (CommandName::SearchContacts, _) => (
            "Hvem eller hvad skal jeg søge efter?",
            "Who or what should I search for?",
        ),
        _ => ("Hvilket lead mener du?", "Which lead do you mean?"),
    };
    pick(lang, da, en)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists_leads_in_both_languages() {
        let abc = names(&["Anna", "Bo", "Carl"]);
        assert_eq!(
            leads_listed(Language::Da, 3, Some("NEW"), &abc),
            "Du har 3 nye leads: Anna, Bo og Carl."
        );
        assert_eq!(
            leads_listed(Language::En, 3, Some("NEW"), &abc),
            "You have 3 new leads: Anna, Bo and Carl."
        );
        assert_eq!(
            leads_listed(Language::Da, 0, Some("NEW"), &[]),
            "Du har ingen nye leads."
        );
        assert_eq!(
            leads_listed(Language::En, 1, Some("NEW"), &names(&["Anna"])),
            "You have one new lead: Anna."
        );
        assert_eq!(
            leads_listed(Language::Da, 1, Some("NEW"), &names(&["Anna"])),
            "Du har et nyt lead: Anna."
        );
        assert_eq!(
            leads_listed(Language::En, 5, None, &names(&["Anna"])),
            "You have 5 leads, including Anna."
        );
    }

    #[test]
    fn other_replies() {
        assert_eq!(
            status_updated(Language::Da, "Mette", "QUALIFIED"),
            "Mette er nu kvalificeret."
        );
        assert_eq!(lead_status(Language::Da, "Mette", "NEW"), "Mette er ny.");
        assert_eq!(lead_status(Language::Da, "Mette", "LOST"), "Mette er tabt.");
        assert_eq!(
            lead_status(Language::En, "Mette", "CONTACTED"),
            "Mette is contacted."
        );
        assert_eq!(
            dry_run(Language::En, "create_lead"),
            "Dry run: understood create_lead, nothing was changed."
        );
        assert_eq!(
            lead_assigned(Language::En, "John", "me"),
            "John is now assigned to you."
        );
        assert_eq!(
            summary(Language::En, Some("this_week"), 3, 1),
            "This week: 3 new leads and one meeting."
        );
        assert_eq!(
            contacts_found(Language::Da, "Novo", &[]),
            "Jeg fandt ingen kontakter for Novo."
        );
        assert!(help_text(Language::Da).contains("vis nye leads"));
        let start = DateTime::parse_from_rfc3339("2026-11-19T10:00:00+01:00").unwrap();
        assert_eq!(
            meeting_scheduled(Language::Da, Some("Mette"), start),
            "Mødet med Mette er booket torsdag den 19. kl. 10:00."
        );
    }
}
