//! From what was said (or sent as a structured command) to a validated command: the
//! parser first, the chat model only when the parser is not sure.

use super::*;

pub(super) fn offset(minutes: Option<i32>) -> ApiResult<FixedOffset> {
    let minutes = minutes.unwrap_or(60);
    if !(-14 * 60..=14 * 60).contains(&minutes) {
        return Err(ApiError::validation("utcOffsetMinutes must be within ±840"));
    }
    FixedOffset::east_opt(minutes * 60).ok_or_else(|| ApiError::validation("bad utcOffsetMinutes"))
}

pub(super) fn validate_text(text: &str) -> ApiResult<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::validation("text is empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::validation(format!(
            "text is longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(text.to_owned())
}

/// Parses an utterance; a clarification when the parser is not sure.
pub(super) fn understand(
    text: &str,
    now: DateTime<FixedOffset>,
    language: Option<Language>,
) -> Result<Command, flow_voice::Clarification> {
    let context = ParseContext { now, language };
    match flow_voice::parse(text, &context) {
        Parsed::Command(parsed) => Ok(Command {
            name: parsed.command,
            parameters: parsed.parameters,
            confidence: parsed.confidence,
            language: parsed.language,
        }),
        Parsed::Clarify(clarification) => Err(clarification),
    }
}

/// The fallback for utterances the parser is unsure of: an OpenAI-compatible model picks a
/// command through function calling, and its choice must pass the same schema check as
/// any structured command. Any failure leaves the parser's question standing.
pub(super) async fn ask_model(
    llm: &LlmClient,
    text: &str,
    language: Language,
    now: DateTime<FixedOffset>,
) -> Option<Command> {
    let system = format!(
        "You turn a business user's spoken request (Danish or English) into one call of the \
         given functions for Flow, a CRM. Call no function if none fits. The time now is {}.",
        now.to_rfc3339()
    );
    let (name, arguments) = match llm
        .choose_tool(&system, text, &flow_voice::function_schema())
        .await
    {
        Ok(Some(call)) => call,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(%error, "voice fallback model failed");
            return None;
        }
    };
    match flow_voice::validate(&name, &arguments) {
        Ok(validated) => Some(Command {
            name: validated.command,
            parameters: validated.parameters,
            // Below the parser's sure answers: the model's reading is a guess.
            confidence: 0.7,
            language,
        }),
        Err(error) => {
            tracing::warn!(%name, %error, "voice fallback model chose an invalid command");
            None
        }
    }
}

/// A structured command, checked against the same schema the parser produces.
pub(super) fn structured(
    command: &str,
    parameters: Option<Value>,
    language: Language,
) -> ApiResult<Command> {
    if command.parse::<CommandName>().is_err() {
        let known: Vec<&str> = CommandName::ALL.iter().map(|c| c.as_str()).collect();
        return Err(ApiError::new(
            ErrorCode::UnknownCommand,
            format!(
                "unknown voice command {command:?}; known: {}",
                known.join(", ")
            ),
        ));
    }
    let parameters = match parameters {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(key, value)| (snake_case(&key), value))
            // A lead id names the lead as well as a name or an email does.
            .map(|(key, value)| match key.as_str() {
                "lead_id" => ("target".to_owned(), value),
                _ => (key, value),
            })
            .collect(),
        Some(_) => return Err(ApiError::validation("parameters must be an object")),
    };
    let validated =
        flow_voice::validate(command, &Value::Object(parameters)).map_err(|message| {
            ApiError::validation(format!("invalid parameters for {command}: {message}"))
        })?;
    Ok(Command {
        name: validated.command,
        parameters: validated.parameters,
        confidence: 1.0,
        language,
    })
}

pub(super) fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Commands that change nothing, which a dry run may execute.
pub(super) fn is_read_only(name: CommandName) -> bool {
    matches!(
        name,
        CommandName::GetLeads
            | CommandName::GetLead
            | CommandName::SearchContacts
            | CommandName::GetSummary
            | CommandName::Help
    )
}
