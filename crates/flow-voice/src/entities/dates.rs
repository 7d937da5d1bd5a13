//! Relative and absolute dates, clock times and durations, resolved against
//! the caller's "now" so that the parser stays deterministic.
//!
//! Hours 1–6 without "am"/"pm" are read as afternoon: nobody books a sales
//! meeting at three in the night, and Danish "halv tre" (2:30) means 14:30.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, Timelike, Weekday};

use super::numbers::number_at;
use crate::token::Token;
use crate::Language;

/// Everything time-related found in an utterance.
#[derive(Debug, Default)]
pub(crate) struct Moment {
    /// Calendar day mentioned ("tomorrow", "on Friday", "den 25.").
    pub date: Option<NaiveDate>,
    /// Clock time in 24-hour form.
    pub time: Option<(u32, u32)>,
    /// "in an hour" / "om en time".
    pub offset_minutes: Option<i64>,
    /// "for 30 minutes" / "i en halv time".
    pub duration_minutes: Option<u32>,
    /// Tokens that belong to a date, time or duration (never part of a name).
    pub used: Vec<bool>,
}

/// When a meeting starts, as precisely as the utterance says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Start {
    /// Day and time known.
    At(DateTime<FixedOffset>),
    /// Only the day is known.
    Day(NaiveDate),
}

enum Found {
    Duration(u32),
    Offset(i64),
    Days(i64),
    Date(NaiveDate),
    Time(u32, u32, Option<bool>),
}

/// Named weekday in English or Danish.
pub(crate) fn weekday_of(word: &str) -> Option<Weekday> {
    Some(match word {
        "monday" | "mandag" => Weekday::Mon,
        "tuesday" | "tirsdag" => Weekday::Tue,
        "wednesday" | "onsdag" => Weekday::Wed,
        "thursday" | "torsdag" => Weekday::Thu,
        "friday" | "fredag" => Weekday::Fri,
        "saturday" | "lørdag" => Weekday::Sat,
        "sunday" | "søndag" => Weekday::Sun,
        _ => return None,
    })
}

/// Month number of an English or Danish month name.
pub(crate) fn month_of(word: &str) -> Option<u32> {
    Some(match word {
        "january" | "januar" | "jan" => 1,
        "february" | "februar" | "feb" => 2,
        "march" | "marts" => 3,
        "april" | "apr" => 4,
        "may" | "maj" => 5,
        "june" | "juni" | "jun" => 6,
        "july" | "juli" | "jul" => 7,
        "august" | "aug" => 8,
        "september" | "sep" | "sept" => 9,
        "october" | "oktober" | "oct" | "okt" => 10,
        "november" | "nov" => 11,
        "december" | "dec" => 12,
        _ => return None,
    })
}

/// Any word that only ever names a day, month or relative date.
pub(crate) fn is_date_word(word: &str) -> bool {
    weekday_of(word).is_some()
        || month_of(word).is_some()
        || matches!(
            word,
            "today" | "tomorrow" | "yesterday" | "overmorgen" | "tonight" | "weekend"
        )
}

fn is_afternoon_word(word: &str) -> bool {
    matches!(
        word,
        "afternoon" | "evening" | "tonight" | "eftermiddag" | "eftermiddagen" | "aften" | "aftenen"
    )
}

/// Find dates, times and durations; `today` anchors relative words.
pub(crate) fn scan(tokens: &[Token], today: NaiveDate, lang: Language) -> Moment {
    let mut m = Moment {
        used: vec![false; tokens.len()],
        ..Moment::default()
    };
    let mut ampm_time = None;
    let mut i = 0;
    while i < tokens.len() {
        let Some((found, len)) = match_at(tokens, i, today, lang) else {
            i += 1;
            continue;
        };
        match found {
            Found::Duration(d) => m.duration_minutes = Some(d),
            Found::Offset(o) => m.offset_minutes = Some(o),
            Found::Days(d) => m.date = Some(today + Duration::days(d)),
            Found::Date(d) => m.date = Some(d),
            Found::Time(h, min, ampm) => ampm_time = Some((h, min, ampm)),
        }
        m.used[i..i + len].fill(true);
        i += len;
    }
    let afternoon = tokens.iter().any(|t| is_afternoon_word(&t.norm));
    m.time = ampm_time.and_then(|(h, min, ampm)| to_24h(h, min, ampm, afternoon));
    m
}

fn match_at(
    tokens: &[Token],
    i: usize,
    today: NaiveDate,
    lang: Language,
) -> Option<(Found, usize)> {
    duration_at(tokens, i, lang)
        .or_else(|| offset_at(tokens, i, lang))
        .or_else(|| relative_day_at(tokens, i, today))
        .or_else(|| weekday_at(tokens, i, today))
        .or_else(|| calendar_date_at(tokens, i, today))
        .or_else(|| time_at(tokens, i, lang))
}

fn word(tokens: &[Token], i: usize) -> &str {
    tokens.get(i).map(|t| t.norm.as_str()).unwrap_or("")
}

enum Amount {
    Minutes(u32),
    Days(u32),
}

/// "30 minutes", "an hour", "half an hour", "en halv time", "halvanden time", "two days".
fn amount_at(tokens: &[Token], i: usize, lang: Language) -> Option<(Amount, usize)> {
    let w = |k| word(tokens, i + k);
    match (w(0), w(1), w(2)) {
        ("half", "an" | "a", "hour") | ("en" | "et", "halv", "time") => {
            return Some((Amount::Minutes(30), 3))
        }
        ("half", "hour", _) | ("halv", "time", _) => return Some((Amount::Minutes(30), 2)),
        ("halvanden", "time" | "timer", _) => return Some((Amount::Minutes(90), 2)),
        _ => {}
    }
    let (n, len) = match w(0) {
        "a" | "an" | "en" | "et" | "one" => (1, 1),
        _ => number_at(tokens, i, lang)?,
    };
    let unit = match w(len) {
        "minute" | "minutes" | "min" | "mins" | "minut" | "minutter" | "minutters" => {
            Amount::Minutes(n)
        }
        "hour" | "hours" | "time" | "timer" | "timers" => Amount::Minutes(n * 60),
        "day" | "days" | "dag" | "dage" => Amount::Days(n),
        "week" | "weeks" | "uge" | "uger" => Amount::Days(n * 7),
        _ => return None,
    };
    Some((unit, len + 1))
}

fn is_meeting_noun(word: &str) -> bool {
    matches!(
        word,
        "meeting" | "call" | "appointment" | "møde" | "opkald" | "aftale" | "session" | "demo"
    )
}

fn duration_at(tokens: &[Token], i: usize, lang: Language) -> Option<(Found, usize)> {
    if matches!(word(tokens, i), "for" | "i" | "på" | "lasting" | "varighed") {
        if let Some((Amount::Minutes(m), len)) = amount_at(tokens, i + 1, lang) {
            return Some((Found::Duration(m), len + 1));
        }
    }
    match amount_at(tokens, i, lang)? {
        (Amount::Minutes(m), len) if is_meeting_noun(word(tokens, i + len)) => {
            Some((Found::Duration(m), len))
        }
        _ => None,
    }
}

fn offset_at(tokens: &[Token], i: usize, lang: Language) -> Option<(Found, usize)> {
    if !matches!(word(tokens, i), "in" | "om") {
        return None;
    }
    match amount_at(tokens, i + 1, lang)? {
        (Amount::Minutes(m), len) => Some((Found::Offset(i64::from(m)), len + 1)),
        (Amount::Days(d), len) => Some((Found::Days(i64::from(d)), len + 1)),
    }
}

fn relative_day_at(tokens: &[Token], i: usize, today: NaiveDate) -> Option<(Found, usize)> {
    let w = |k| word(tokens, i + k);
    let (days, len) = match (w(0), w(1), w(2)) {
        ("day", "after", "tomorrow") => (2, 3),
        ("i", "overmorgen", _) => (2, 2),
        ("overmorgen", _, _) => (2, 1),
        ("i", "morgen", _) => (1, 2),
        ("tomorrow", _, _) => (1, 1),
        ("i", "dag" | "eftermiddag" | "aften", _) => (0, 2),
        ("today" | "tonight", _, _) => (0, 1),
        ("this", "afternoon" | "evening" | "morning", _) => (0, 2),
        ("next" | "næste", "week" | "uge", _) => return Some((next_monday(today), 2)),
        ("i", "næste", "uge") => return Some((next_monday(today), 3)),
        _ => return None,
    };
    Some((Found::Days(days), len))
}

/// "Next week" without a day means its Monday.
fn next_monday(today: NaiveDate) -> Found {
    Found::Days(7 - i64::from(today.weekday().num_days_from_monday()))
}

fn weekday_at(tokens: &[Token], i: usize, today: NaiveDate) -> Option<(Found, usize)> {
    let prefixed = matches!(
        word(tokens, i),
        "on" | "på" | "next" | "næste" | "this" | "coming" | "om"
    );
    let at = if prefixed { i + 1 } else { i };
    let target = weekday_of(word(tokens, at))?;
    let ahead = (7 + target.num_days_from_monday() as i64
        - today.weekday().num_days_from_monday() as i64)
        % 7;
    let ahead = if ahead == 0 { 7 } else { ahead };
    Some((Found::Days(ahead), at - i + 1))
}

fn ordinal(word: &str) -> Option<u32> {
    let digits = word
        .strip_suffix("st")
        .or_else(|| word.strip_suffix("nd"))
        .or_else(|| word.strip_suffix("rd"))
        .or_else(|| word.strip_suffix("th"))
        .unwrap_or(word);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

fn calendar_date_at(tokens: &[Token], i: usize, today: NaiveDate) -> Option<(Found, usize)> {
    let w = |k| word(tokens, i + k);
    let (day, month, len) = if let Some(month) = month_of(w(0)) {
        (ordinal(w(1))?, Some(month), 2)
    } else {
        let lead = usize::from(matches!(w(0), "den" | "the"));
        let lead = lead + usize::from(w(0) == "on" && w(1) == "the") * 2;
        let day = ordinal(w(lead))?;
        let explicit = w(0) == "den" || w(lead) != day.to_string();
        let (month, extra) = match (w(lead + 1), w(lead + 2)) {
            ("of", m) if month_of(m).is_some() => (month_of(m), 2),
            (m, _) if month_of(m).is_some() => (month_of(m), 1),
            _ if explicit => (None, 0),
            _ => return None,
        };
        (day, month, lead + 1 + extra)
    };
    Some((Found::Date(resolve_day(today, day, month)?), len))
}

fn resolve_day(today: NaiveDate, day: u32, month: Option<u32>) -> Option<NaiveDate> {
    match month {
        Some(month) => {
            let this_year = NaiveDate::from_ymd_opt(today.year(), month, day)?;
            if this_year >= today {
                Some(this_year)
            } else {
                NaiveDate::from_ymd_opt(today.year() + 1, month, day)
            }
        }
        None if day >= today.day() => NaiveDate::from_ymd_opt(today.year(), today.month(), day),
        None => {
            let next = today.checked_add_months(chrono::Months::new(1))?;
            NaiveDate::from_ymd_opt(next.year(), next.month(), day)
        }
    }
}

fn is_time_marker(word: &str) -> bool {
    matches!(
        word,
        "at" | "kl" | "klokken" | "around" | "omkring" | "by" | "ved"
    )
}

fn time_at(tokens: &[Token], i: usize, lang: Language) -> Option<(Found, usize)> {
    if is_time_marker(word(tokens, i)) {
        if let Some((h, m, ampm, len, _)) = time_expr(tokens, i + 1, lang) {
            return Some((Found::Time(h, m, ampm), len + 1));
        }
        return None;
    }
    match time_expr(tokens, i, lang)? {
        (h, m, ampm, len, true) => Some((Found::Time(h, m, ampm), len)),
        _ => None,
    }
}

/// Hour, minute, am/pm, tokens used, and whether the form is unmistakably a time.
type TimeExpr = (u32, u32, Option<bool>, usize, bool);

fn time_expr(tokens: &[Token], i: usize, lang: Language) -> Option<TimeExpr> {
    let w = |k| word(tokens, i + k);
    let hour_at = |k: usize| number_at(tokens, i + k, lang).filter(|(h, _)| (1..=12).contains(h));
    match (w(0), w(1)) {
        ("noon" | "midday" | "middag" | "middagstid" | "frokost", _) => {
            return Some((12, 0, Some(true), 1, true))
        }
        ("half", "past") => return hour_at(2).map(|(h, l)| (h, 30, None, l + 2, true)),
        ("quarter", "past") => return hour_at(2).map(|(h, l)| (h, 15, None, l + 2, true)),
        ("quarter", "to") => return hour_at(2).map(|(h, l)| (prev_hour(h), 45, None, l + 2, true)),
        ("kvart", "over") => return hour_at(2).map(|(h, l)| (h, 15, None, l + 2, true)),
        ("kvart", "i") => return hour_at(2).map(|(h, l)| (prev_hour(h), 45, None, l + 2, true)),
        ("halv", _) => return hour_at(1).map(|(h, l)| (prev_hour(h), 30, None, l + 1, true)),
        _ => {}
    }
    if let Some((h, m, ampm)) = clock_token(w(0)) {
        let (ampm2, extra) = ampm_at(tokens, i + 1);
        return Some((h, m, ampm.or(ampm2), 1 + extra, true));
    }
    let (h, len) = number_at(tokens, i, lang).filter(|(h, _)| *h <= 24)?;
    let (m, len) = match minutes_word(tokens, i + len, lang) {
        Some((m, l)) => (m, len + l),
        None => (0, len),
    };
    let (ampm, extra) = ampm_at(tokens, i + len);
    Some((h, m, ampm, len + extra, extra > 0))
}

/// The hour before `h` on a 12-hour dial ("quarter to one" is 12:45).
fn prev_hour(h: u32) -> u32 {
    if h <= 1 {
        12
    } else {
        h - 1
    }
}

/// "14:30", "14.30", "10am", "3pm".
fn clock_token(word: &str) -> Option<(u32, u32, Option<bool>)> {
    if let Some((h, m)) = word.split_once([':', '.']) {
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        return (h < 24 && m < 60).then_some((h, m, None));
    }
    let (digits, pm) = if let Some(d) = word.strip_suffix("am") {
        (d, false)
    } else {
        (word.strip_suffix("pm")?, true)
    };
    let h = digits
        .parse::<u32>()
        .ok()
        .filter(|h| (1..=12).contains(h))?;
    Some((h, 0, Some(pm)))
}

fn minutes_word(tokens: &[Token], i: usize, lang: Language) -> Option<(u32, usize)> {
    let (m, len) = number_at(tokens, i, lang)?;
    let unit_follows = matches!(
        word(tokens, i + len),
        "minutes" | "minutter" | "min" | "hours" | "timer"
    );
    ((10..60).contains(&m) && !unit_follows).then_some((m, len))
}

fn ampm_at(tokens: &[Token], i: usize) -> (Option<bool>, usize) {
    let w = |k| word(tokens, i + k);
    match (w(0), w(1), w(2)) {
        ("am" | "a.m", _, _) => (Some(false), 1),
        ("pm" | "p.m", _, _) => (Some(true), 1),
        ("o'clock", _, _) => (None, 1),
        ("in", "the", "morning") => (Some(false), 3),
        ("in", "the", "afternoon" | "evening") => (Some(true), 3),
        ("om", "morgenen" | "formiddagen", _) => (Some(false), 2),
        ("om", "eftermiddagen" | "aftenen", _) => (Some(true), 2),
        _ => (None, 0),
    }
}

fn to_24h(h: u32, m: u32, ampm: Option<bool>, afternoon: bool) -> Option<(u32, u32)> {
    let h = match ampm {
        Some(true) if h < 12 => h + 12,
        Some(false) if h == 12 => 0,
        None if h < 12 && (afternoon || (1..=6).contains(&h)) => h + 12,
        _ => h,
    };
    (h < 24 && m < 60).then_some((h, m))
}

/// Combine day, time and offset into a start, picking the next occurrence of a bare time.
pub(crate) fn resolve(m: &Moment, now: DateTime<FixedOffset>) -> Option<Start> {
    let now = now.with_second(0)?.with_nanosecond(0)?;
    if let Some(offset) = m.offset_minutes {
        return Some(Start::At(now + Duration::minutes(offset)));
    }
    let today = now.date_naive();
    match (m.date, m.time) {
        (date, Some((h, min))) => {
            let time = NaiveTime::from_hms_opt(h, min, 0)?;
            let date = date.unwrap_or(if time > now.time() {
                today
            } else {
                today + Duration::days(1)
            });
            let local = date.and_time(time);
            Some(Start::At(local.and_local_timezone(*now.offset()).single()?))
        }
        (Some(date), None) => Some(Start::Day(date)),
        (None, None) => None,
    }
}
