//! From tokens to a command: cues pick the command, slot rules fill it.
//!
//! The order of the cue checks matters and encodes which reading wins when an
//! utterance has several cues: "add a note" is logging, not creating; "how many
//! meetings" is a summary, not booking; "assign the new lead" is assigning.

use std::ops::Range;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use crate::entities::dates::{self, Moment, Start};
use crate::entities::{email, numbers, period_in, phone, source_of, Status};
use crate::tokens::{title_case, Token, Utterance};
use crate::{
    lexicon, reply, Clarification, CommandName, Language, Parameters, Parsed, ParsedCommand,
};

/// A stretch of words that is not vocabulary: a person's or company's name.
#[derive(Debug)]
struct Run {
    range: Range<usize>,
    words: Vec<String>,
}

impl Run {
    fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// Everything known about an utterance before deciding what it means.
struct Analysis<'a> {
    tokens: &'a [Token],
    text: &'a str,
    uncased: bool,
    lang: Language,
    words: Vec<&'a str>,
    used: Vec<bool>,
    email: Option<(String, Range<usize>)>,
    phone: Option<(String, Range<usize>)>,
    moment: Moment,
    runs: Vec<Run>,
    now: DateTime<FixedOffset>,
}

/// Why the parser asks back.
enum Unsure {
    Nothing,
    NameOnly(String),
    Missing(CommandName, &'static str),
}

type Decision = Result<(CommandName, Parameters, f32), Unsure>;

/// Decide what the utterance asks for.
pub(crate) fn interpret(u: &Utterance<'_>, lang: Language, now: DateTime<FixedOffset>) -> Parsed {
    if u.tokens.is_empty() {
        return clarify(Unsure::Nothing, lang);
    }
    let a = Analysis::new(u, lang, now);
    match a.decide() {
        Ok((command, parameters, confidence)) => Parsed::Command(ParsedCommand {
            command,
            parameters,
            confidence,
            language: lang,
        }),
        Err(unsure) => clarify(unsure, lang),
    }
}

fn clarify(unsure: Unsure, lang: Language) -> Parsed {
    let (question, candidates) = match unsure {
        Unsure::Nothing => (reply::didnt_understand(lang), Vec::new()),
        Unsure::NameOnly(name) => {
            let candidates = vec![CommandName::GetLead, CommandName::SearchContacts];
            (reply::what_about(lang, &name), candidates)
        }
        Unsure::Missing(command, slot) => (reply::ask_for(lang, command, slot), vec![command]),
    };
    Parsed::Clarify(Clarification {
        question,
        candidates,
        language: lang,
    })
}

// ---- word classes -------------------------------------------------------

fn is_lead_word(w: &str) -> bool {
    matches!(
        w,
        "lead"
            | "leads"
            | "leadet"
            | "leadsene"
            | "leadene"
            | "emne"
            | "emner"
            | "prospect"
            | "prospects"
    )
}

fn is_plural_lead(w: &str) -> bool {
    matches!(w, "leads" | "leadsene" | "leadene" | "emner" | "prospects")
}

fn is_contact_word(w: &str) -> bool {
    matches!(
        w,
        "contact"
            | "contacts"
            | "kontakt"
            | "kontakter"
            | "kontakten"
            | "kontakterne"
            | "kontaktoplysninger"
            | "people"
            | "folk"
            | "personer"
    )
}

fn is_create_verb(w: &str) -> bool {
    matches!(
        w,
        "create"
            | "enter"
            | "sign"
            | "add"
            | "make"
            | "register"
            | "opret"
            | "oprette"
            | "tilføj"
            | "tilføje"
            | "lav"
            | "lave"
            | "registrer"
            | "registrere"
    )
}

fn is_update_verb(w: &str) -> bool {
    matches!(
        w,
        "mark"
            | "switch"
            | "set"
            | "change"
            | "update"
            | "move"
            | "flag"
            | "put"
            | "qualify"
            | "marker"
            | "markere"
            | "ændr"
            | "ændre"
            | "opdater"
            | "opdatere"
            | "flyt"
            | "flytte"
            | "skift"
            | "skifte"
            | "sæt"
            | "sætte"
            | "kvalificer"
            | "kvalificere"
    )
}

fn is_assign_verb(w: &str) -> bool {
    matches!(
        w,
        "assign"
            | "reassign"
            | "allocate"
            | "transfer"
            | "hand"
            | "tildel"
            | "tildele"
            | "overdrag"
            | "overdrage"
            | "overfør"
            | "overføre"
    )
}

fn is_search_verb(w: &str) -> bool {
    matches!(
        w,
        "search"
            | "find"
            | "look"
            | "lookup"
            | "locate"
            | "søg"
            | "søge"
            | "søger"
            | "slå"
            | "led"
            | "kig"
            | "finde"
    )
}

fn is_schedule_verb(w: &str) -> bool {
    matches!(
        w,
        "book"
            | "booke"
            | "schedule"
            | "arrange"
            | "plan"
            | "organize"
            | "organise"
            | "planlæg"
            | "planlægge"
            | "aftal"
            | "indkald"
            | "meet"
            | "mødes"
    )
}

fn is_meeting_word(w: &str) -> bool {
    matches!(
        w,
        "meeting" | "meetings" | "appointment" | "møde" | "mødet" | "møder" | "aftale"
    )
}

fn is_summary_word(w: &str) -> bool {
    matches!(
        w,
        "summary"
            | "overview"
            | "stats"
            | "statistics"
            | "numbers"
            | "report"
            | "overblik"
            | "overblikket"
            | "oversigt"
            | "oversigten"
            | "opsummering"
            | "opsummeringen"
            | "statistik"
            | "statistikken"
            | "tal"
            | "tallene"
            | "rapport"
            | "rapporten"
            | "ugerapport"
            | "ugerapporten"
            | "ugeoverblik"
            | "månedsoverblik"
            | "dagsoverblik"
            | "månedsrapport"
    )
}

fn is_help_word(w: &str) -> bool {
    matches!(
        w,
        "help"
            | "hjælp"
            | "hjælpe"
            | "commands"
            | "command"
            | "kommandoer"
            | "kommandoerne"
            | "options"
            | "muligheder"
    )
}

/// The kind of activity a word names, including past-tense verbs ("called", "ringet").
fn activity_of(w: &str) -> Option<&'static str> {
    Some(match w {
        "call" | "calls" | "phone-call" | "phoned" | "rang" | "opkald" | "opkaldet"
        | "telefonopkald" | "called" | "ringet" | "ringede" | "spoke" | "talked" | "talte"
        | "talt" | "snakkede" | "snakket" => "call",
        "note" | "notes" | "notat" | "notatet" | "noter" => "note",
        "email" | "emails" | "e-mail" | "mail" | "mails" | "emailed" | "mailed" | "mailet"
        | "mailede" => "email",
        "meeting" | "meetings" | "møde" | "mødet" | "møder" => "meeting",
        _ => return None,
    })
}

/// Past-tense verbs that report an activity that already happened.
fn is_past_activity(w: &str) -> bool {
    matches!(
        w,
        "called"
            | "phoned"
            | "rang"
            | "emailed"
            | "mailed"
            | "spoke"
            | "talked"
            | "ringet"
            | "ringede"
            | "talte"
            | "talt"
            | "snakkede"
            | "snakket"
            | "mailet"
            | "mailede"
            | "met"
            | "mødtes"
    )
}

fn is_had_or_sent(w: &str) -> bool {
    matches!(w, "had" | "sent" | "haft" | "havde" | "sendt" | "sendte")
}

fn is_me(w: &str) -> bool {
    matches!(w, "me" | "myself" | "mig")
}

fn is_company_marker(w: &str) -> bool {
    matches!(
        w,
        "at" | "from"
            | "fra"
            | "hos"
            | "company"
            | "firma"
            | "firmaet"
            | "virksomhed"
            | "virksomheden"
    )
}

fn is_description_marker(w: &str) -> bool {
    matches!(
        w,
        "about" | "regarding" | "saying" | "re" | "angående" | "vedrørende" | "om" | "that"
    )
}

// ---- analysis -----------------------------------------------------------

impl<'a> Analysis<'a> {
    fn new(u: &'a Utterance<'a>, lang: Language, now: DateTime<FixedOffset>) -> Self {
        let tokens = &u.tokens[..];
        let words: Vec<&str> = tokens.iter().map(|t| t.norm.as_str()).collect();
        let mut used = vec![false; tokens.len()];
        let email = email::find(tokens);
        if let Some((_, r)) = &email {
            used[r.clone()].fill(true);
        }
        let phone = phone::find(tokens).filter(|(_, r)| !used[r.clone()].iter().any(|u| *u));
        if let Some((_, r)) = &phone {
            used[r.clone()].fill(true);
        }
        let moment = dates::scan(tokens, now.date_naive(), lang);
        for (u, m) in used.iter_mut().zip(&moment.used) {
            *u |= *m;
        }
        let runs = find_runs(tokens, &used, u.uncased);
        Analysis {
            tokens,
            text: u.text,
            uncased: u.uncased,
            lang,
            words,
            used,
            email,
            phone,
            moment,
            runs,
            now,
        }
    }

    fn has(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.words.iter().any(|w| pred(w))
    }

    fn has_word(&self, w: &str) -> bool {
        self.words.contains(&w)
    }

    fn has_seq(&self, seq: &[&str]) -> bool {
        self.words.windows(seq.len()).any(|win| win == seq)
    }

    fn position(&self, pred: impl Fn(&str) -> bool) -> Option<usize> {
        self.words.iter().position(|w| pred(w))
    }

    fn has_object(&self) -> bool {
        !self.runs.is_empty()
            || self.email.is_some()
            || self.has(is_lead_word)
            || self.has(is_contact_word)
    }

    /// The word before token `i`, skipping articles.
    fn prev_word(&self, i: usize) -> &str {
        let mut j = i;
        while j > 0 {
            j -= 1;
            if !lexicon::is_article(self.words[j]) {
                return self.words[j];
            }
        }
        ""
    }

    fn statuses(&self) -> impl Iterator<Item = (usize, Status)> + '_ {
        self.words
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.used[*i])
            .filter_map(|(i, w)| Status::from_word(w).map(|s| (i, s)))
    }

    /// The status a list or count filters on; the last one said wins ("newest" is not a status word).
    fn filter_status(&self) -> Option<Status> {
        self.statuses().map(|(_, s)| s).last()
    }

    // ---- cue order ------------------------------------------------------

    fn decide(&self) -> Decision {
        if self.is_help() {
            return Ok((CommandName::Help, Parameters::new(), 0.9));
        }
        if self.is_summary() {
            return Ok(self.summary());
        }
        if self.is_log() {
            return self.log_activity();
        }
        if self.is_schedule() {
            return Ok(self.schedule());
        }
        if self.is_assign() {
            return self.assign();
        }
        if self.is_create() {
            return self.create();
        }
        if let Some(decision) = self.try_update() {
            return decision;
        }
        if self.is_search() {
            return self.search();
        }
        if self.has(is_lead_word) {
            return self.leads();
        }
        if self.has_word("status") && self.target().is_some() {
            return self.get_lead();
        }
        match self.target() {
            Some(name) => Err(Unsure::NameOnly(name)),
            None => Err(Unsure::Nothing),
        }
    }

    fn is_help(&self) -> bool {
        if self.has(is_help_word) {
            return self.runs.is_empty()
                && self.email.is_none()
                && !self.has(is_lead_word)
                && !self.has(is_contact_word);
        }
        let question = self.has_word("what") || self.has_word("hvad");
        let addressed = self.has(|w| matches!(w, "you" | "du" | "i" | "jeg"));
        let ability = self.has(|w| matches!(w, "do" | "say" | "sige" | "understand" | "forstår"));
        let works = self.has_seq(&["how", "does", "this", "work"])
            || self.has_seq(&["how", "does", "it", "work"])
            || self.has_seq(&["hvordan", "virker", "det"]);
        let can_you = self.has_seq(&["hvad", "kan", "du"]);
        ((question && addressed && ability) || works || can_you) && !self.has_object()
    }

    fn is_how_many(&self) -> bool {
        self.has_seq(&["how", "many"])
            || self.has_seq(&["hvor", "mange"])
            || self.has_seq(&["number", "of"])
            || self.has(|w| matches!(w, "count" | "tæl" | "tælle" | "antal" | "antallet"))
    }

    fn is_summary(&self) -> bool {
        let doing = self.has_seq(&["how", "are", "we", "doing"])
            || self.has_seq(&["hvordan", "går", "det"]);
        let bare_status = self.has(|w| w == "status" || w == "statussen")
            && self.runs.is_empty()
            && self.email.is_none()
            && !self.has(is_lead_word)
            && !self.has(is_update_verb);
        self.is_how_many() || self.has(is_summary_word) || doing || bare_status
    }

    fn is_log(&self) -> bool {
        let note =
            self.has(|w| matches!(w, "note" | "notes" | "notat" | "noter" | "notatet" | "jot"));
        let log_verb = self.has(|w| matches!(w, "log" | "logge" | "record"));
        let register_activity = self.has(|w| matches!(w, "register" | "registrer" | "registrere"))
            && self.has(|w| activity_of(w).is_some())
            && !self.has(is_lead_word);
        let had = self.words.windows(3).any(|win| {
            is_had_or_sent(win[0])
                && (activity_of(win[1]).is_some() || activity_of(win[2]).is_some())
        });
        let past = self.words.iter().enumerate().any(|(i, w)| {
            is_past_activity(w)
                && !(i > 0
                    && (is_lead_word(self.words[i - 1]) || is_contact_word(self.words[i - 1])))
        });
        note || log_verb || register_activity || had || past || self.note_that().is_some()
    }

    fn is_schedule(&self) -> bool {
        let set_up = (self.has(|w| matches!(w, "set" | "sæt" | "sætte"))
            && self.has(|w| w == "up" || w == "op"))
            && (self.has(|w| is_meeting_word(w) || w == "call"));
        self.has(is_schedule_verb) || self.has(is_meeting_word) || set_up
    }

    fn to_index(&self) -> Option<usize> {
        (0..self.words.len())
            .rev()
            .find(|i| !self.used[*i] && matches!(self.words[*i], "to" | "til"))
    }

    fn is_assign(&self) -> bool {
        if self.has(is_assign_verb) {
            return true;
        }
        let Some(to) = self.to_index() else {
            return self.is_put_on();
        };
        let after_is_person = self.runs.iter().any(|r| r.range.start > to)
            || self.words.get(to + 1).is_some_and(|w| is_me(w));
        let moves = self.has(|w| matches!(w, "give" | "giv" | "move" | "flyt"));
        moves
            && after_is_person
            && Status::from_word(self.words.get(to + 1).copied().unwrap_or("")).is_none()
    }

    /// Danish "sæt Lars på Mette Hansen": put a colleague on a lead.
    fn is_put_on(&self) -> bool {
        let Some(on) = self.position(|w| w == "på") else {
            return false;
        };
        self.words.first().is_some_and(|w| *w == "sæt")
            && self.statuses().next().is_none()
            && !self.has_word("status")
            && self.runs.iter().any(|r| r.range.end <= on)
            && self.runs.iter().any(|r| r.range.start > on)
    }

    fn is_create(&self) -> bool {
        let new_lead = self
            .words
            .windows(2)
            .any(|w| matches!(w[0], "new" | "ny" | "nyt") && matches!(w[1], "lead" | "leadet"));
        let verb = self.has(is_create_verb)
            && (self.has(is_lead_word) || (!self.runs.is_empty() && !self.has(is_contact_word)));
        (verb || new_lead) && !self.has(is_plural_lead)
    }

    fn is_search(&self) -> bool {
        let who_know = self.has(|w| w == "who" || w == "hvem")
            && self.has(|w| matches!(w, "know" | "kender" | "have" | "har"));
        !self.has(is_lead_word)
            && (self.has(is_search_verb) || self.has(is_contact_word) || who_know)
    }

    // ---- slots ----------------------------------------------------------

    fn first_run_after(&self, markers: impl Fn(&str) -> bool) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| markers(self.prev_word(r.range.start)))
    }

    /// The person or lead the utterance is about: an email, else the first name.
    fn target(&self) -> Option<String> {
        if let Some((e, _)) = &self.email {
            return Some(e.clone());
        }
        self.runs.first().map(Run::text)
    }

    fn source(&self) -> Option<&'static str> {
        self.words.iter().enumerate().find_map(|(i, w)| {
            let s = source_of(w)?;
            let from = matches!(self.prev_word(i), "from" | "fra" | "via" | "through");
            let before_leads = self.words.get(i + 1).is_some_and(|n| is_lead_word(n));
            (from || before_leads).then_some(s)
        })
    }

    fn period(&self) -> Option<&'static str> {
        period_in(&self.words)
    }

    fn limit(&self) -> Option<u32> {
        let mut i = 0;
        while i < self.words.len() {
            if !self.used[i] {
                if let Some((n, _)) = numbers::number_at(self.tokens, i, self.lang) {
                    if (1..=1000).contains(&n) {
                        return Some(n);
                    }
                }
            }
            i += 1;
        }
        None
    }

    fn leads(&self) -> Decision {
        let plural = self.has(is_plural_lead);
        let name = self.email.is_some() || !self.runs.is_empty();
        if !plural && name {
            return self.get_lead();
        }
        let mut p = Parameters::new();
        put(&mut p, "status", self.filter_status().map(Status::as_str));
        put(&mut p, "source", self.source());
        put(&mut p, "period", self.period());
        if let Some(limit) = self.limit() {
            p.insert("limit".into(), Value::from(limit));
        }
        if !plural && p.is_empty() {
            return Err(Unsure::Missing(CommandName::GetLead, "name"));
        }
        let bare = self.words.len() <= 2 && p.is_empty();
        Ok((CommandName::GetLeads, p, if bare { 0.6 } else { 0.9 }))
    }

    fn get_lead(&self) -> Decision {
        let mut p = Parameters::new();
        if let Some((e, _)) = &self.email {
            put(&mut p, "email", Some(e.as_str()));
        } else {
            let named = |w: &str| {
                matches!(
                    w,
                    "for"
                        | "of"
                        | "called"
                        | "named"
                        | "hedder"
                        | "navn"
                        | "navnet"
                        | "lead"
                        | "leadet"
                        | "på"
                        | "om"
                        | "about"
                )
            };
            let run = self.first_run_after(named).or(self.runs.first());
            let Some(run) = run else {
                return Err(Unsure::Missing(CommandName::GetLead, "name"));
            };
            p.insert("name".into(), Value::from(run.text()));
        }
        Ok((CommandName::GetLead, p, 0.9))
    }

    fn create(&self) -> Decision {
        let mut p = Parameters::new();
        let person = self
            .runs
            .iter()
            .find(|r| !is_company_marker(self.prev_word(r.range.start)));
        let company = self
            .runs
            .iter()
            .find(|r| is_company_marker(self.prev_word(r.range.start)));
        if let Some(person) = person {
            p.insert("first_name".into(), Value::from(person.words[0].clone()));
            if person.words.len() > 1 {
                p.insert("last_name".into(), Value::from(person.words[1..].join(" ")));
            }
        }
        put(&mut p, "company", company.map(Run::text).as_deref());
        put(
            &mut p,
            "email",
            self.email.as_ref().map(|(e, _)| e.as_str()),
        );
        put(
            &mut p,
            "phone",
            self.phone.as_ref().map(|(n, _)| n.as_str()),
        );
        if p.is_empty() {
            return Err(Unsure::Missing(CommandName::CreateLead, "name"));
        }
        put(&mut p, "source", self.source());
        Ok((CommandName::CreateLead, p, 0.9))
    }

    fn try_update(&self) -> Option<Decision> {
        let status = self.statuses().last().map(|(_, s)| s)?;
        let verb = self.has(is_update_verb);
        let plural = self.has(is_plural_lead);
        let target = self.target();
        match (target, verb, plural) {
            (Some(target), _, false) => {
                let mut p = Parameters::new();
                p.insert("target".into(), Value::from(target));
                p.insert("status".into(), Value::from(status.as_str()));
                Some(Ok((
                    CommandName::UpdateLeadStatus,
                    p,
                    if verb { 0.9 } else { 0.75 },
                )))
            }
            (None, true, false) => Some(Err(Unsure::Missing(
                CommandName::UpdateLeadStatus,
                "target",
            ))),
            _ => None,
        }
    }

    fn assign(&self) -> Decision {
        let split = if self.is_put_on() {
            self.position(|w| w == "på")
        } else {
            self.to_index()
        };
        let Some(split) = split else {
            return Err(Unsure::Missing(CommandName::AssignLead, "target"));
        };
        let put_on = self.words[split] == "på";
        let before = self.email_or_run(|r| r.end <= split);
        let after = if self.words.get(split + 1).is_some_and(|w| is_me(w)) {
            Some("me".to_string())
        } else {
            self.email_or_run(|r| r.start > split)
        };
        let (target, assignee) = if put_on {
            (after, before)
        } else {
            (before, after)
        };
        let target = target.ok_or(Unsure::Missing(CommandName::AssignLead, "target"))?;
        let assignee = assignee.ok_or(Unsure::Missing(CommandName::AssignLead, "assignee"))?;
        let mut p = Parameters::new();
        p.insert("target".into(), Value::from(target));
        p.insert("assignee".into(), Value::from(assignee));
        Ok((CommandName::AssignLead, p, 0.9))
    }

    fn email_or_run(&self, within: impl Fn(&Range<usize>) -> bool) -> Option<String> {
        if let Some((e, r)) = &self.email {
            if within(r) {
                return Some(e.clone());
            }
        }
        self.runs.iter().find(|r| within(&r.range)).map(Run::text)
    }

    fn search(&self) -> Decision {
        let query = self.target().or_else(|| {
            self.words
                .iter()
                .zip(self.tokens)
                .find_map(|(w, t)| source_of(w).map(|_| self.display(&t.raw)))
        });
        let query = query.ok_or(Unsure::Missing(CommandName::SearchContacts, "query"))?;
        let mut p = Parameters::new();
        p.insert("query".into(), Value::from(query));
        Ok((CommandName::SearchContacts, p, 0.9))
    }

    fn display(&self, raw: &str) -> String {
        if self.uncased {
            title_case(&raw.to_lowercase())
        } else {
            raw.to_string()
        }
    }

    fn summary(&self) -> (CommandName, Parameters, f32) {
        let mut p = Parameters::new();
        if self.is_how_many() {
            let metric = if self.has(is_lead_word) {
                "lead_count"
            } else if self.has(is_meeting_word) {
                "meeting_count"
            } else if self.has(is_contact_word) {
                "contact_count"
            } else {
                "lead_count"
            };
            p.insert("metric".into(), Value::from(metric));
            put(&mut p, "status", self.filter_status().map(Status::as_str));
        }
        put(&mut p, "period", self.period());
        (CommandName::GetSummary, p, 0.9)
    }

    fn schedule(&self) -> (CommandName, Parameters, f32) {
        let mut p = Parameters::new();
        let with = match &self.email {
            Some((e, _)) => Some(e.clone()),
            None => self
                .first_run_after(|w| matches!(w, "with" | "med"))
                .or(self.runs.first())
                .map(Run::text),
        };
        put(&mut p, "with", with.as_deref());
        match dates::resolve(&self.moment, self.now) {
            Some(Start::At(t)) => {
                p.insert(
                    "start".into(),
                    Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)),
                );
            }
            Some(Start::Day(d)) => {
                p.insert("date".into(), Value::from(d.format("%Y-%m-%d").to_string()));
            }
            None => {}
        }
        if let Some(d) = self.moment.duration_minutes {
            p.insert("duration_minutes".into(), Value::from(d));
        }
        (CommandName::ScheduleMeeting, p, 0.9)
    }

    fn log_activity(&self) -> Decision {
        let kind = self
            .words
            .iter()
            .find_map(|w| activity_of(w))
            .unwrap_or("note");
        let desc_start = self.description_start();
        let mut p = Parameters::new();
        p.insert("activity_type".into(), Value::from(kind));
        put(&mut p, "target", self.log_target(desc_start).as_deref());
        if let Some(d) = desc_start.and_then(|i| self.slice_from(i)) {
            p.insert("description".into(), Value::from(d));
        }
        Ok((CommandName::LogActivity, p, 0.9))
    }

    /// "note that Mette wants an offer": the note itself names who it is about.
    fn note_that(&self) -> Option<usize> {
        self.words
            .windows(2)
            .position(|w| {
                matches!(
                    w[0],
                    "note" | "noter" | "notat" | "down" | "skriv" | "write"
                ) && matches!(w[1], "that" | "at")
            })
            .map(|i| i + 2)
    }

    fn log_target(&self, desc_start: Option<usize>) -> Option<String> {
        let limit = desc_start.unwrap_or(usize::MAX);
        if let Some(at) = self.note_that() {
            if let Some(run) = self.runs.iter().find(|r| r.range.start == at) {
                return Some(run.text());
            }
        }
        self.email_or_run(|r| r.end <= limit)
    }

    fn description_start(&self) -> Option<usize> {
        if let Some(i) = self.tokens.iter().position(|t| t.colon) {
            return (i + 1 < self.tokens.len()).then_some(i + 1);
        }
        if let Some(i) = self.note_that() {
            return (i < self.tokens.len()).then_some(i);
        }
        let end = self.target_end()?;
        let mut i = end;
        while i < self.words.len()
            && (is_description_marker(self.words[i]) || self.words[i] == "at")
            && !self.used[i]
        {
            i += 1;
        }
        let rest_is_content =
            (i..self.words.len()).any(|j| !self.used[j] && !is_when_word(self.words[j]));
        (i < self.words.len() && rest_is_content).then_some(i)
    }

    fn target_end(&self) -> Option<usize> {
        let email_end = self.email.as_ref().map(|(_, r)| r.end);
        let run_end = self.runs.first().map(|r| r.range.end);
        match (email_end, run_end) {
            (Some(e), Some(r)) => Some(e.min(r)),
            (e, r) => e.or(r),
        }
    }

    fn slice_from(&self, i: usize) -> Option<String> {
        let start = self.tokens.get(i)?.start;
        let text = self
            .text
            .get(start..)?
            .trim()
            .trim_end_matches(['.', '!', '?', ',', ';', ' ']);
        (!text.is_empty()).then(|| text.to_string())
    }
}

/// Words that only say when something happened: a trailing "yesterday" is not a description.
fn is_when_word(w: &str) -> bool {
    dates::is_date_word(w)
        || matches!(
            w,
            "week"
                | "month"
                | "uge"
                | "måned"
                | "går"
                | "dag"
                | "this"
                | "last"
                | "denne"
                | "sidste"
                | "i"
                | "in"
                | "on"
                | "at"
                | "på"
        )
}

fn put(p: &mut Parameters, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        p.insert(key.to_string(), Value::from(v));
    }
}

// ---- names --------------------------------------------------------------

fn is_name_token(t: &Token, i: usize, uncased: bool) -> bool {
    if t.norm.bytes().any(|b| b.is_ascii_digit()) || t.norm.contains('@') {
        return false;
    }
    if !t.norm.chars().any(char::is_alphabetic) {
        return false;
    }
    if uncased {
        return !lexicon::is_vocab(&t.norm);
    }
    // Typed text: a name is written with a capital letter.
    t.capitalized && (!lexicon::is_vocab(&t.norm) || (i > 0 && lexicon::can_be_name(&t.norm)))
}

fn find_runs(tokens: &[Token], used: &[bool], uncased: bool) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if used[i] || !is_name_token(&tokens[i], i, uncased) {
            i += 1;
            continue;
        }
        let start = i;
        while i < tokens.len() && !used[i] && is_name_token(&tokens[i], i, uncased) {
            i += 1;
            if tokens[i - 1].clause_end || tokens[i - 1].possessive {
                break;
            }
        }
        runs.push(make_run(tokens, start..i, uncased));
    }
    runs
}

fn make_run(tokens: &[Token], range: Range<usize>, uncased: bool) -> Run {
    let mut words: Vec<String> = tokens[range.clone()]
        .iter()
        .map(|t| {
            if uncased {
                title_case(&t.raw.to_lowercase())
            } else {
                t.raw.clone()
            }
        })
        .collect();
    let next = tokens.get(range.end).map(|t| t.norm.as_str()).unwrap_or("");
    if matches!(next, "lead" | "leadet" | "status") {
        if let Some(last) = words.last_mut() {
            strip_danish_genitive(last);
        }
    }
    Run { range, words }
}

/// "Hansens lead" → "Hansen"; names that merely end in s ("Lars", "Jens") stay.
fn strip_danish_genitive(word: &mut String) {
    let Some(stem) = word.strip_suffix('s') else {
        return;
    };
    let vowel_end = stem.ends_with(['a', 'e', 'i', 'o', 'u', 'y', 'æ', 'ø', 'å']);
    if stem.chars().count() >= 3 && (vowel_end || stem.ends_with("en") || stem.ends_with('t')) {
        let len = stem.len();
        word.truncate(len);
    }
}
