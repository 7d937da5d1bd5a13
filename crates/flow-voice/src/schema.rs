//! The command schema: one table drives both validation of structured
//! commands (from clients or an LLM fallback) and the OpenAI tool definitions,
//! so the two can never drift apart.

use serde_json::{json, Map, Value};

use crate::{CommandName, Parameters, Status};

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Status,
    Period,
    Activity,
    Metric,
    DateTime,
    Date,
}

const PARAMS: &[(&str, Kind, &str)] = &[
    ("status", Kind::Status, "Lead status"),
    (
        "source",
        Kind::Text,
        "Where the lead came from, lower-case (website, linkedin, referral, event, ...)",
    ),
    ("period", Kind::Period, "Reporting period"),
    ("limit", Kind::Integer, "Maximum number of leads to return"),
    ("name", Kind::Text, "Full name of the lead"),
    ("email", Kind::Text, "Email address"),
    ("first_name", Kind::Text, "First name"),
    ("last_name", Kind::Text, "Last name"),
    (
        "phone",
        Kind::Text,
        "Phone number, +45XXXXXXXX for Danish numbers",
    ),
    ("company", Kind::Text, "Company name"),
    (
        "assignee",
        Kind::Text,
        "Colleague who gets the lead, or \"me\"",
    ),
    ("query", Kind::Text, "Name, company or email to search for"),
    ("activity_type", Kind::Activity, "Kind of activity"),
    (
        "description",
        Kind::Text,
        "Free text of the note or activity",
    ),
    ("target", Kind::Text, "Name or email of the lead or contact"),
    ("with", Kind::Text, "Name or email of the person to meet"),
    ("start", Kind::DateTime, "Start time, RFC 3339 with offset"),
    (
        "date",
        Kind::Date,
        "Day of the meeting (YYYY-MM-DD) when no time is known",
    ),
    (
        "duration_minutes",
        Kind::Integer,
        "Length of the meeting in minutes",
    ),
    ("metric", Kind::Metric, "What to count"),
];

const PERIODS: [&str; 5] = ["today", "yesterday", "this_week", "last_week", "this_month"];
const ACTIVITIES: [&str; 4] = ["call", "note", "email", "meeting"];
const METRICS: [&str; 3] = ["lead_count", "contact_count", "meeting_count"];

/// Allowed parameters, the ones always required, and groups of which one is required.
struct Spec {
    description: &'static str,
    allowed: &'static [&'static str],
    required: &'static [&'static str],
    one_of: &'static [&'static str],
}

fn spec(command: CommandName) -> Spec {
    let (description, allowed, required, one_of): (_, &[&str], &[&str], &[&str]) = match command {
        CommandName::GetLeads => (
            "List leads, optionally filtered",
            &["status", "source", "period", "limit"],
            &[],
            &[],
        ),
        CommandName::GetLead => (
            "Show one lead by name or email",
            &["name", "email"],
            &[],
            &["name", "email"],
        ),
        CommandName::CreateLead => (
            "Create a new lead",
            &[
                "first_name",
                "last_name",
                "email",
                "phone",
                "company",
                "source",
            ],
            &[],
            &["first_name", "email", "phone", "company"],
        ),
        CommandName::UpdateLeadStatus => (
            "Change a lead's status",
            &["target", "status"],
            &["target", "status"],
            &[],
        ),
        CommandName::AssignLead => (
            "Assign a lead to a colleague",
            &["target", "assignee"],
            &["target", "assignee"],
            &[],
        ),
        CommandName::SearchContacts => ("Search contacts", &["query"], &["query"], &[]),
        CommandName::LogActivity => (
            "Log a call, note, email or meeting",
            &["activity_type", "target", "description"],
            &["activity_type"],
            &[],
        ),
        CommandName::ScheduleMeeting => (
            "Book a meeting",
            &["with", "start", "date", "duration_minutes"],
            &[],
            &[],
        ),
        CommandName::GetSummary => (
            "Counts and overview",
            &["metric", "status", "period"],
            &[],
            &[],
        ),
        CommandName::Help => ("Explain what the assistant can do", &[], &[], &[]),
    };
    Spec {
        description,
        allowed,
        required,
        one_of,
    }
}

fn param(name: &str) -> Option<(Kind, &'static str)> {
    PARAMS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, k, d)| (*k, *d))
}

/// A structured command that passed validation, with values normalised (e.g. status upper-cased).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCommand {
    /// Which command.
    pub command: CommandName,
    /// Its parameters, normalised.
    pub parameters: Parameters,
}

/// Check a structured command against the schema in the crate docs.
pub fn validate(command: &str, parameters: &Value) -> Result<ValidatedCommand, String> {
    let command: CommandName = command
        .parse()
        .map_err(|_| format!("unknown command: {command}"))?;
    let spec = spec(command);
    let given = match parameters {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        other => return Err(format!("parameters must be an object, got {other}")),
    };
    let mut out = Parameters::new();
    for (key, value) in given {
        if !spec.allowed.contains(&key.as_str()) {
            return Err(format!("unknown parameter for {command}: {key}"));
        }
        let (kind, _) = param(&key).ok_or_else(|| format!("unknown parameter: {key}"))?;
        out.insert(key.clone(), check(kind, &key, value)?);
    }
    if let Some(missing) = spec.required.iter().find(|r| !out.contains_key(**r)) {
        return Err(format!("{command} needs {missing}"));
    }
    if !spec.one_of.is_empty() && !spec.one_of.iter().any(|k| out.contains_key(*k)) {
        return Err(format!("{command} needs one of {}", spec.one_of.join(", ")));
    }
    Ok(ValidatedCommand {
        command,
        parameters: out,
    })
}

fn check(kind: Kind, key: &str, value: Value) -> Result<Value, String> {
    let text = || {
        value
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{key} must be a non-empty string"))
    };
    let one_of = |list: &[&str]| {
        let s = text()?;
        list.iter()
            .find(|v| v.eq_ignore_ascii_case(s))
            .map(|v| Value::from(*v))
            .ok_or_else(|| format!("{key} must be one of {}", list.join(", ")))
    };
    match kind {
        Kind::Text => text().map(Value::from),
        Kind::Integer => value
            .as_u64()
            .filter(|n| *n > 0)
            .map(Value::from)
            .ok_or_else(|| format!("{key} must be a positive integer")),
        Kind::Status => Status::from_wire(text()?)
            .map(|s| Value::from(s.as_str()))
            .ok_or_else(|| {
                format!("{key} must be one of NEW, CONTACTED, QUALIFIED, CONVERTED, LOST")
            }),
        Kind::Period => one_of(&PERIODS),
        Kind::Activity => one_of(&ACTIVITIES),
        Kind::Metric => one_of(&METRICS),
        Kind::DateTime => chrono::DateTime::parse_from_rfc3339(text()?)
            .map(|_| value.clone())
            .map_err(|e| format!("{key} must be an RFC 3339 date-time: {e}")),
        Kind::Date => chrono::NaiveDate::parse_from_str(text()?, "%Y-%m-%d")
            .map(|_| value.clone())
            .map_err(|e| format!("{key} must be a YYYY-MM-DD date: {e}")),
    }
}

fn json_type(kind: Kind) -> Value {
    let strings = |list: &[&str]| json!({"type": "string", "enum": list});
    match kind {
        Kind::Text => json!({"type": "string"}),
        Kind::Integer => json!({"type": "integer", "minimum": 1}),
        Kind::Status => strings(&Status::ALL.map(Status::as_str)),
        Kind::Period => strings(&PERIODS),
        Kind::Activity => strings(&ACTIVITIES),
        Kind::Metric => strings(&METRICS),
        Kind::DateTime => json!({"type": "string", "format": "date-time"}),
        Kind::Date => json!({"type": "string", "format": "date"}),
    }
}

/// OpenAI function-calling `tools` array for every command.
pub fn function_schema() -> Value {
    let tools: Vec<Value> = CommandName::ALL
        .iter()
        .map(|command| {
            let spec = spec(*command);
            let mut properties = Map::new();
            for name in spec.allowed {
                if let Some((kind, description)) = param(name) {
                    let mut p = json_type(kind);
                    p["description"] = Value::from(description);
                    properties.insert(name.to_string(), p);
                }
            }
            let mut description = spec.description.to_string();
            if !spec.one_of.is_empty() {
                description.push_str(&format!(
                    " (give at least one of: {})",
                    spec.one_of.join(", ")
                ));
            }
            json!({
                "type": "function",
                "function": {
                    "name": command.as_str(),
                    "description": description,
                    "parameters": {
                        "type": "object",
                        "properties": properties,
                        "required": spec.required,
                        "additionalProperties": false,
                    }
                }
            })
        })
        .collect();
    Value::Array(tools)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_normalises() {
        let ok = validate(
            "update_lead_status",
            &json!({"target": "John", "status": "qualified"}),
        )
        .unwrap();
        assert_eq!(ok.parameters["status"], "QUALIFIED");
        assert!(validate(
            "update_lead_status",
            &json!({"target": "John", "status": "hot"})
        )
        .is_err());
        assert!(validate("update_lead_status", &json!({"target": "John"})).is_err());
        assert!(validate("get_leads", &json!({"limit": "five"})).is_err());
        assert!(validate("get_leads", &json!({"colour": "red"})).is_err());
        assert!(validate("fly_to_moon", &json!({})).is_err());
        assert!(validate("get_lead", &json!({})).is_err());
        assert!(validate("help", &Value::Null).is_ok());
        assert!(validate(
            "schedule_meeting",
            &json!({"start": "2026-11-19T10:00:00+01:00"})
        )
        .is_ok());
        assert!(validate("schedule_meeting", &json!({"start": "tomorrow"})).is_err());
    }

    #[test]
    fn schema_lists_every_command() {
        let tools = function_schema();
        let names: Vec<&str> = tools
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), CommandName::ALL.len());
        assert!(names.contains(&"schedule_meeting"));
        let update = &tools[3]["function"]["parameters"];
        assert_eq!(update["properties"]["status"]["enum"][2], "QUALIFIED");
    }
}
