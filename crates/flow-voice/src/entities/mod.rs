//! Entities found inside utterances: emails, phone numbers, numbers, dates and
//! times, lead statuses, lead sources and reporting periods.

pub(crate) mod dates;
pub(crate) mod email;
pub(crate) mod numbers;
pub(crate) mod phone;

use serde::{Deserialize, Serialize};

/// Lead status as stored by Flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Not yet touched.
    New,
    /// Someone has been in touch.
    Contacted,
    /// Judged a real opportunity.
    Qualified,
    /// Became a customer ("won").
    Converted,
    /// Gone.
    Lost,
}

impl Status {
    /// Every status, in pipeline order.
    pub const ALL: [Status; 5] = [
        Status::New,
        Status::Contacted,
        Status::Qualified,
        Status::Converted,
        Status::Lost,
    ];

    /// The wire value (`"QUALIFIED"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::Contacted => "CONTACTED",
            Status::Qualified => "QUALIFIED",
            Status::Converted => "CONVERTED",
            Status::Lost => "LOST",
        }
    }

    /// Parse the wire value, case-insensitively, because LLMs and clients vary.
    pub fn from_wire(value: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(value))
    }

    /// A spoken status word in Danish or English, including the verbs that imply one.
    pub(crate) fn from_word(word: &str) -> Option<Status> {
        Some(match word {
            "new" | "ny" | "nye" | "nyt" => Status::New,
            "contacted" | "kontaktet" | "kontaktede" => Status::Contacted,
            "qualified" | "qualify" | "kvalificeret" | "kvalificerede" | "kvalificer"
            | "kvalificere" => Status::Qualified,
            "converted" | "won" | "win" | "konverteret" | "konverterede" | "vundet" | "vundne"
            | "vandt" => Status::Converted,
            "lost" | "lose" | "tabt" | "tabte" | "mistet" | "mistede" => Status::Lost,
            _ => return None,
        })
    }
}

/// Where a lead came from, as a lower-case canonical name.
pub(crate) fn source_of(word: &str) -> Option<&'static str> {
    Some(match word {
        "website" | "web" | "site" | "hjemmeside" | "hjemmesiden" | "websitet" | "websiden"
        | "webside" => "website",
        "linkedin" => "linkedin",
        "facebook" => "facebook",
        "google" => "google",
        "instagram" => "instagram",
        "referral" | "referrals" | "anbefaling" | "anbefalinger" | "henvisning"
        | "henvisninger" => "referral",
        "event" | "events" | "messe" | "messer" | "messen" | "fair" | "arrangement" => "event",
        _ => return None,
    })
}

/// Reporting window for lists and summaries.
pub(crate) fn period_in(words: &[&str]) -> Option<&'static str> {
    let mut found = None;
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or("");
        let prev = if i > 0 { words[i - 1] } else { "" };
        let p = match *w {
            "today" | "dagens" | "daily" | "dagsoverblik" | "tonight" => Some("today"),
            "dag" if prev == "i" => Some("today"),
            "yesterday" | "gårsdagens" => Some("yesterday"),
            "går" if prev == "i" => Some("yesterday"),
            "this" | "denne" | "current" => match next {
                "week" | "uge" => Some("this_week"),
                "month" | "måned" => Some("this_month"),
                _ => None,
            },
            "last" | "sidste" | "forrige" | "past" | "previous" => match next {
                "week" | "uge" => Some("last_week"),
                _ => None,
            },
            "ugen" if matches!(prev, "i" | "for" | "denne") => Some("this_week"),
            "weekly" | "ugens" | "ugerapport" | "ugerapporten" | "ugeoverblik" => Some("this_week"),
            "monthly" | "månedens" | "månedsoverblik" | "månedsrapport" => Some("this_month"),
            _ => None,
        };
        if p.is_some() {
            found = p;
        }
    }
    found
}
