//! Voice commands: text in Danish or English to a structured command. Pure and deterministic.
//!
//! [`parse`] turns an utterance (typed, or from a speech recogniser, so often
//! lower-case and without punctuation) into a [`ParsedCommand`] or, when it is
//! not sure, a [`Clarification`] to ask back. No network, no model: keyword
//! cues pick the command and slot rules fill its parameters, so phrasings that
//! were never seen before still work as long as they use the usual words.
//!
//! # Commands and parameters
//!
//! | command | parameters |
//! |---|---|
//! | `get_leads` | `status`, `source`, `period`, `limit` |
//! | `get_lead` | `name` or `email` (one required) |
//! | `create_lead` | `first_name`, `last_name`, `email`, `phone`, `company`, `source` (a name, email, phone or company required) |
//! | `update_lead_status` | `target`, `status` (both required) |
//! | `assign_lead` | `target`, `assignee` (both required) |
//! | `search_contacts` | `query` (required) |
//! | `log_activity` | `activity_type` (required), `target`, `description` |
//! | `schedule_meeting` | `with`, `start`, `date`, `duration_minutes` |
//! | `get_summary` | `metric`, `status`, `period` |
//! | `help` | none |
//!
//! Value formats:
//! - `status`: `NEW`, `CONTACTED`, `QUALIFIED`, `CONVERTED`, `LOST`
//! - `period`: `today`, `yesterday`, `this_week`, `last_week`, `this_month`
//! - `source`: lower-case channel (`website`, `linkedin`, `facebook`, `google`, `instagram`, `referral`, `event`)
//! - `limit`, `duration_minutes`: positive integers
//! - `target`, `with`: a person's name or an email address; `assignee`: a name or `me`
//! - `activity_type`: `call`, `note`, `email`, `meeting`
//! - `start`: RFC 3339 date-time in the caller's offset; `date`: `YYYY-MM-DD` when no time was said
//! - `metric`: `lead_count`, `contact_count`, `meeting_count`
//! - `phone`: `+45XXXXXXXX` for Danish numbers, otherwise the digits as said
//! - `email`: lower-case address
//!
//! Names heard in lower case are title-cased; typed names keep their casing.
//! Bare hours 1–6 are read as afternoon ("at 3" is 15:00, "halv tre" 14:30).

#![warn(missing_docs)]

mod commands;
mod entities;
pub mod grammar;
mod language;
mod lexicon;
pub mod reply;
mod schema;
mod token;
mod tokens;

use std::str::FromStr;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use entities::Status;
pub use grammar::jsgf_grammar;
pub use schema::{function_schema, validate, ValidatedCommand};

/// Language of an utterance and of the replies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Danish.
    Da,
    /// English.
    En,
}

impl Language {
    /// ISO 639-1 code, as used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Da => "da",
            Language::En => "en",
        }
    }
}

impl FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "da" | "dk" | "danish" | "dansk" => Ok(Language::Da),
            "en" | "english" | "engelsk" => Ok(Language::En),
            _ => Err(format!("unknown language: {s}")),
        }
    }
}

/// What the parser needs to know about the caller.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// The caller's local time: relative dates ("tomorrow at 10") are resolved against it.
    pub now: DateTime<FixedOffset>,
    /// Language if the caller knows it; detected from the text otherwise.
    pub language: Option<Language>,
}

impl ParseContext {
    /// Context with language detection.
    pub fn new(now: DateTime<FixedOffset>) -> Self {
        ParseContext {
            now,
            language: None,
        }
    }

    /// Context with a fixed language.
    pub fn with_language(now: DateTime<FixedOffset>, language: Language) -> Self {
        ParseContext {
            now,
            language: Some(language),
        }
    }
}

flow_vocab::string_enum! {
    /// The commands the voice agent understands, in the order they are documented.
    #[derive(Hash)]
    pub enum CommandName {
        /// List leads, optionally filtered.
        GetLeads = "get_leads",
        /// Show one lead by name or email.
        GetLead = "get_lead",
        /// Create a lead.
        CreateLead = "create_lead",
        /// Change a lead's status.
        UpdateLeadStatus = "update_lead_status",
        /// Give a lead to a colleague.
        AssignLead = "assign_lead",
        /// Search contacts by name, company or email.
        SearchContacts = "search_contacts",
        /// Record a call, note, email or meeting.
        LogActivity = "log_activity",
        /// Book a meeting.
        ScheduleMeeting = "schedule_meeting",
        /// Counts and overviews.
        GetSummary = "get_summary",
        /// What the agent can do.
        Help = "help",
    }
}

/// Parameters of a command: a JSON object following the schema in the crate docs.
pub type Parameters = Map<String, Value>;

/// A command the parser is confident about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedCommand {
    /// Which command.
    pub command: CommandName,
    /// Its parameters.
    pub parameters: Parameters,
    /// 0.0–1.0: how clearly the wording pointed at this command.
    pub confidence: f32,
    /// Language of the utterance, for the spoken reply.
    pub language: Language,
}

/// A question to ask back instead of guessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clarification {
    /// The question, in the utterance's language.
    pub question: String,
    /// Commands the user may have meant (empty when there is no clue).
    pub candidates: Vec<CommandName>,
    /// Language of the utterance.
    pub language: Language,
}

/// Result of parsing one utterance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Parsed {
    /// Understood.
    Command(ParsedCommand),
    /// Not sure: ask the user.
    Clarify(Clarification),
}

impl Parsed {
    /// The command, if one was understood.
    pub fn command(&self) -> Option<&ParsedCommand> {
        match self {
            Parsed::Command(c) => Some(c),
            Parsed::Clarify(_) => None,
        }
    }

    /// Language of the utterance.
    pub fn language(&self) -> Language {
        match self {
            Parsed::Command(c) => c.language,
            Parsed::Clarify(c) => c.language,
        }
    }
}

/// Parse an utterance into a command or a clarification question. Never panics.
pub fn parse(text: &str, ctx: &ParseContext) -> Parsed {
    let utterance = tokens::utterance(text);
    let language = ctx
        .language
        .unwrap_or_else(|| language::detect(&utterance.all));
    commands::interpret(&utterance, language, ctx.now)
}

/// Guess whether a text is Danish or English (English when there is no clue).
pub fn detect_language(text: &str) -> Language {
    language::detect(&tokens::tokenize(text))
}
