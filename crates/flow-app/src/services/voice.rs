//! Voice commands: understood by `flow-voice` (Danish and English, no cloud on this path),
//! executed through the same services as REST with the caller's own permissions, answered
//! with a sentence to speak, announced as VOICE_COMMAND_EXECUTED and kept as turns of a
//! conversation.

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone, Utc};
use flow_outbound::{
    speech::{Audio, Hints, SpeechServices},
    LlmClient,
};
use flow_store::Store;
use flow_store::{
    ActivityKind, AuditAction, Contact, Conversation, ConversationId, EntityType, EventType, Lead,
    LeadStatus, NewEvent, StoreError,
};
use flow_voice::{reply, CommandName, Language, ParseContext, Parsed};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    activities::{self, CreateActivity},
    contacts::{self, ListContacts},
    leads::{self, AssignLead, ChangeStatus, CreateLead, ListLeads},
    now, Record, Work,
};
use crate::{
    auth::Caller,
    error::{ApiError, ApiResult, ErrorCode},
    validate,
};

/// Longest utterance accepted, in characters.
const MAX_TEXT_CHARS: usize = 1000;

/// What to run: an utterance, or a structured command.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VoiceRequest {
    /// What the person said or typed, in Danish or English.
    pub text: Option<String>,
    /// `da` or `en`; detected from the text when absent.
    pub language: Option<String>,
    /// A structured command instead of text (`get_leads`, `create_lead`, ...).
    pub command: Option<String>,
    /// The structured command's parameters (snake_case or camelCase names).
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Continue this conversation; a new one is started when absent.
    pub conversation_id: Option<ConversationId>,
    /// The caller's offset from UTC in minutes, for "today" and "tomorrow at 10"
    /// (default 60, Danish winter time).
    pub utc_offset_minutes: Option<i32>,
    /// Also answer with the reply as speech (`speech` in the answer).
    #[serde(default)]
    pub speak: bool,
}

/// Query of an audio `POST /voice/execute`: what a JSON body would carry besides the text.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AudioQuery {
    /// `da` or `en` (default `en`): recognisers need the language up front.
    pub language: Option<String>,
    pub conversation_id: Option<ConversationId>,
    pub utc_offset_minutes: Option<i32>,
    /// `true`: answer 202 with a job on the voice-processing queue at once; the answer
    /// becomes the job's result (`GET /jobs/{id}`).
    #[serde(rename = "async")]
    #[param(rename = "async")]
    pub run_async: Option<bool>,
}

/// The reply as audio.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpokenReply {
    /// `audio/wav` from the local voice, the provider's type otherwise.
    pub content_type: String,
    /// The audio, base64.
    pub data: String,
}

/// How far a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Run the command, record it and announce it.
    Execute,
    /// Understand the command and run it only if it changes nothing (`/voice/test`).
    DryRun,
}

/// The answer to a voice command.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoiceAnswer {
    /// The command ran (or, in a dry run, would run) without error.
    pub success: bool,
    /// Whether it actually ran.
    pub executed: bool,
    /// `da` or `en`: the language of the reply.
    pub language: String,
    /// The text understood (also for audio).
    pub transcript: Option<String>,
    /// The command understood, absent when the agent asks back.
    pub command: Option<String>,
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// How sure the parser was, 0-1 (1 for structured commands).
    pub confidence: f32,
    /// The question to ask back when the utterance was unclear.
    pub clarification: Option<String>,
    /// The result: leads, a lead, contacts, counts, ...
    #[schema(value_type = Object)]
    pub data: Value,
    /// A short sentence to show and speak, in the caller's language.
    pub reply: String,
    /// The conversation this turn was stored in.
    pub conversation_id: Option<ConversationId>,
    /// The reply as speech, when asked for (always for audio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech: Option<SpokenReply>,
    /// Why there is no speech although it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_error: Option<String>,
}

/// A command ready to run.
struct Command {
    name: CommandName,
    parameters: Map<String, Value>,
    confidence: f32,
    language: Language,
}

/// Transcribes a spoken command, then handles it like text. VOICE_PROCESSING_STARTED and
/// VOICE_PROCESSING_COMPLETED frame the recognition for the voice agent and flow-web.
pub async fn handle_audio(
    store: &dyn Store,
    caller: &Caller,
    llm: Option<&LlmClient>,
    speech: &SpeechServices,
    audio: Audio,
    query: AudioQuery,
) -> ApiResult<VoiceAnswer> {
    caller.require("execute", "voice")?;
    let language = match query.language.as_deref() {
        None => Language::En,
        Some(l) => l
            .parse::<Language>()
            .map_err(|_| ApiError::validation("language must be da or en"))?,
    };
    let started = std::time::Instant::now();
    let details = json!({
        "format": audio.format.mime(), "bytes": audio.bytes.len(),
        "durationSecs": audio.duration_secs, "language": language,
    });
    publish(store, caller, EventType::VoiceProcessingStarted, details).await?;
    let hints = Hints {
        names: lead_names(store, caller).await,
    };
    let transcribed = speech.transcribe(&audio, language, &hints).await;
    let outcome = match &transcribed {
        Ok(text) => json!({ "success": true, "transcript": text }),
        Err(error) => json!({ "success": false, "error": error.to_string() }),
    };
    let mut outcome = outcome;
    outcome["elapsedMs"] = json!(started.elapsed().as_millis() as u64);
    publish(store, caller, EventType::VoiceProcessingCompleted, outcome).await?;
    let text = transcribed?;
    let request = VoiceRequest {
        text: Some(text),
        language: Some(language.as_str().to_owned()),
        conversation_id: query.conversation_id,
        utc_offset_minutes: query.utc_offset_minutes,
        speak: true,
        ..VoiceRequest::default()
    };
    let mut answer = handle(store, caller, llm, request, Mode::Execute).await?;
    attach_speech(speech, &mut answer).await;
    Ok(answer)
}

/// Speaks the answer's reply into it; a failure to speak does not undo the command.
pub async fn attach_speech(speech: &SpeechServices, answer: &mut VoiceAnswer) {
    let language = answer.language.parse().unwrap_or(Language::En);
    match speech.speak(&answer.reply, language).await {
        Ok(Some(spoken)) => {
            use base64::Engine;
            answer.speech = Some(SpokenReply {
                content_type: spoken.content_type,
                data: base64::engine::general_purpose::STANDARD.encode(spoken.bytes),
            });
        }
        Ok(None) => answer.speech_error = Some("speech output is switched off".into()),
        Err(error) => {
            tracing::warn!(%error, "speaking the reply failed");
            answer.speech_error = Some(error.to_string());
        }
    }
}

/// Names the recogniser should know: the tenant's most recent leads (none without
/// `read:leads`).
async fn lead_names(store: &dyn Store, caller: &Caller) -> Vec<String> {
    let query = ListLeads {
        limit: Some(100),
        ..ListLeads::default()
    };
    match leads::list(store, caller, query).await {
        Ok(page) => page.data.iter().map(lead_name).collect(),
        Err(_) => Vec::new(),
    }
}

async fn publish(
    store: &dyn Store,
    caller: &Caller,
    event_type: EventType,
    data: Value,
) -> ApiResult<()> {
    let mut work = Work::begin(store, caller).await?;
    work.tx()
        .append_event(&NewEvent::new(event_type, &caller.source_app, data))
        .await?;
    work.commit().await?;
    Ok(())
}

/// Understands, runs and records one voice command.
pub async fn handle(
    store: &dyn Store,
    caller: &Caller,
    llm: Option<&LlmClient>,
    request: VoiceRequest,
    mode: Mode,
) -> ApiResult<VoiceAnswer> {
    caller.require("execute", "voice")?;
    let offset = offset(request.utc_offset_minutes)?;
    let local_now = Utc::now().with_timezone(&offset);
    let language = request
        .language
        .as_deref()
        .map(|l| {
            l.parse::<Language>()
                .map_err(|_| ApiError::validation("language must be da or en"))
        })
        .transpose()?;
    let transcript = request.text.as_deref().map(validate_text).transpose()?;
    let understood = match (&request.command, &transcript) {
        (Some(command), _) => Ok(structured(
            command,
            request.parameters.clone(),
            language.unwrap_or(Language::En),
        )?),
        (None, Some(text)) => match (understand(text, local_now, language), llm) {
            (Err(clarification), Some(llm)) => {
                ask_model(llm, text, clarification.language, local_now)
                    .await
                    .ok_or(clarification)
            }
            (understood, _) => understood,
        },
        (None, None) => {
            return Err(ApiError::validation(
                "send text (what was said) or command (a structured command)",
            ))
        }
    };
    let mut answer = match understood {
        Ok(command) => run(store, caller, command, mode, local_now).await?,
        Err(clarification) => VoiceAnswer {
            success: false,
            executed: false,
            language: clarification.language.as_str().to_owned(),
            transcript: None,
            command: None,
            parameters: json!({}),
            confidence: 0.0,
            clarification: Some(clarification.question.clone()),
            data: json!({ "candidates": clarification.candidates }),
            reply: reply::clarify(&clarification),
            conversation_id: None,
            speech: None,
            speech_error: None,
        },
    };
    answer.transcript = transcript;
    if mode == Mode::Execute {
        answer.conversation_id =
            Some(record(store, caller, request.conversation_id, &answer).await?);
    }
    Ok(answer)
}

fn offset(minutes: Option<i32>) -> ApiResult<FixedOffset> {
    let minutes = minutes.unwrap_or(60);
    if !(-14 * 60..=14 * 60).contains(&minutes) {
        return Err(ApiError::validation("utcOffsetMinutes must be within ±840"));
    }
    FixedOffset::east_opt(minutes * 60).ok_or_else(|| ApiError::validation("bad utcOffsetMinutes"))
}

fn validate_text(text: &str) -> ApiResult<String> {
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
fn understand(
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
async fn ask_model(
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
fn structured(command: &str, parameters: Option<Value>, language: Language) -> ApiResult<Command> {
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

fn snake_case(key: &str) -> String {
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
fn is_read_only(name: CommandName) -> bool {
    matches!(
        name,
        CommandName::GetLeads
            | CommandName::GetLead
            | CommandName::SearchContacts
            | CommandName::GetSummary
            | CommandName::Help
    )
}

async fn run(
    store: &dyn Store,
    caller: &Caller,
    command: Command,
    mode: Mode,
    now: DateTime<FixedOffset>,
) -> ApiResult<VoiceAnswer> {
    let parameters = Value::Object(command.parameters.clone());
    let mut answer = VoiceAnswer {
        success: true,
        executed: false,
        language: command.language.as_str().to_owned(),
        transcript: None,
        command: Some(command.name.as_str().to_owned()),
        parameters: parameters.clone(),
        confidence: command.confidence,
        clarification: None,
        data: Value::Null,
        reply: String::new(),
        conversation_id: None,
        speech: None,
        speech_error: None,
    };
    if mode == Mode::DryRun && !is_read_only(command.name) {
        answer.reply = match command.language {
            Language::Da => format!(
                "Testkørsel: {} blev forstået, men ikke udført.",
                command.name
            ),
            Language::En => format!("Dry run: understood {}, nothing was changed.", command.name),
        };
        return Ok(answer);
    }
    let (data, said) = execute(store, caller, &command, now).await?;
    answer.data = data;
    answer.reply = said;
    answer.executed = true;
    if mode == Mode::Execute {
        announce(store, caller, &command, &parameters).await?;
    }
    Ok(answer)
}

fn text<'a>(parameters: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    parameters.get(key).and_then(Value::as_str)
}

fn status_of(parameters: &Map<String, Value>) -> ApiResult<Option<LeadStatus>> {
    text(parameters, "status")
        .map(|s| {
            LeadStatus::parse(s).ok_or_else(|| ApiError::validation(format!("unknown status {s}")))
        })
        .transpose()
}

/// The start of the period in UTC, and its end.
fn period_range(
    period: Option<&str>,
    now: DateTime<FixedOffset>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    use chrono::Datelike;
    let midnight = |date: chrono::NaiveDate| {
        now.timezone()
            .from_local_datetime(&date.and_time(NaiveTime::MIN))
            .single()
            .map(|t| t.with_timezone(&Utc))
    };
    let today = now.date_naive();
    let monday = today - Duration::days(i64::from(now.weekday().num_days_from_monday()));
    let (from, to) = match period? {
        "today" => (today, today + Duration::days(1)),
        "yesterday" => (today - Duration::days(1), today),
        "this_week" => (monday, monday + Duration::days(7)),
        "last_week" => (monday - Duration::days(7), monday),
        "this_month" => (today.with_day(1)?, today + Duration::days(1)),
        _ => return None,
    };
    Some((midnight(from)?, midnight(to)?))
}

fn full_name(first: &str, last: Option<&str>) -> String {
    match last {
        Some(last) => format!("{first} {last}"),
        None => first.to_owned(),
    }
}

fn lead_name(lead: &Lead) -> String {
    full_name(&lead.first_name, lead.last_name.as_deref())
}

/// The lead a person meant: by id, by email, or by name (best match first).
async fn find_lead(store: &dyn Store, caller: &Caller, target: &str) -> ApiResult<Option<Lead>> {
    if let Ok(id) = target.parse::<Uuid>() {
        return match leads::get(store, caller, id.into()).await {
            Ok(lead) => Ok(Some(lead)),
            Err(e) if e.code == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        };
    }
    let wanted = target.to_lowercase();
    let first_word = target.split_whitespace().next().unwrap_or(target);
    let page = leads::list(
        store,
        caller,
        ListLeads {
            q: Some(
                if target.contains('@') {
                    target
                } else {
                    first_word
                }
                .to_owned(),
            ),
            limit: Some(50),
            ..ListLeads::default()
        },
    )
    .await?;
    let score = |lead: &Lead| {
        let name = lead_name(lead).to_lowercase();
        if lead
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(target))
            || name == wanted
        {
            2
        } else if wanted.split_whitespace().all(|w| name.contains(w)) {
            1
        } else {
            0
        }
    };
    Ok(page
        .data
        .into_iter()
        .filter(|lead| score(lead) > 0)
        .max_by_key(|lead| (score(lead), lead.id)))
}

/// Runs the command; returns its data and the sentence to say.
async fn execute(
    store: &dyn Store,
    caller: &Caller,
    command: &Command,
    now: DateTime<FixedOffset>,
) -> ApiResult<(Value, String)> {
    let lang = command.language;
    let p = &command.parameters;
    match command.name {
        CommandName::GetLeads => {
            let status = status_of(p)?;
            let limit = p
                .get("limit")
                .and_then(Value::as_u64)
                .map(|n| n.clamp(1, 100) as u32);
            let page = leads::list(
                store,
                caller,
                ListLeads {
                    status,
                    source: text(p, "source").map(str::to_owned),
                    created_after: period_range(text(p, "period"), now).map(|(from, _)| from),
                    limit: Some(limit.unwrap_or(10)),
                    ..ListLeads::default()
                },
            )
            .await?;
            let names: Vec<String> = page.data.iter().map(lead_name).collect();
            let said = reply::leads_listed(
                lang,
                page.data.len(),
                status.map(LeadStatus::as_str),
                &names,
            );
            Ok((to_json(&page)?, said))
        }
        CommandName::GetLead => {
            let target = text(p, "email")
                .or_else(|| text(p, "name"))
                .unwrap_or_default();
            match find_lead(store, caller, target).await? {
                Some(lead) => {
                    let said = match lang {
                        Language::Da => {
                            format!("{} er {}.", lead_name(&lead), danish_status(lead.status))
                        }
                        Language::En => format!(
                            "{} is {}.",
                            lead_name(&lead),
                            lead.status.as_str().to_lowercase()
                        ),
                    };
                    Ok((to_json(&lead)?, said))
                }
                None => Ok((Value::Null, reply::not_found(lang, target))),
            }
        }
        CommandName::CreateLead => {
            let first_name = text(p, "first_name")
                .or_else(|| text(p, "company"))
                .ok_or_else(|| ApiError::validation("a new lead needs a name"))?;
            let lead = leads::create(
                store,
                caller,
                CreateLead {
                    first_name: first_name.to_owned(),
                    last_name: text(p, "last_name").map(str::to_owned),
                    email: text(p, "email").map(str::to_owned),
                    phone: text(p, "phone").map(str::to_owned),
                    company: text(p, "company").map(str::to_owned),
                    source: Some(text(p, "source").unwrap_or("voice").to_owned()),
                    notes: None,
                    voice_notification_enabled: false,
                },
            )
            .await?;
            let said = reply::lead_created(lang, &lead_name(&lead));
            Ok((to_json(&lead)?, said))
        }
        CommandName::UpdateLeadStatus => {
            let target = text(p, "target").unwrap_or_default();
            let status = status_of(p)?.ok_or_else(|| ApiError::validation("status is required"))?;
            let Some(lead) = find_lead(store, caller, target).await? else {
                return Ok((Value::Null, reply::not_found(lang, target)));
            };
            let lead = leads::change_status(
                store,
                caller,
                lead.id,
                ChangeStatus {
                    status,
                    reason: None,
                },
            )
            .await?;
            let said = reply::status_updated(lang, &lead_name(&lead), status.as_str());
            Ok((to_json(&lead)?, said))
        }
        CommandName::AssignLead => {
            let target = text(p, "target").unwrap_or_default();
            let assignee = match text(p, "assignee") {
                Some("me") | None => caller.actor.id.clone(),
                Some(name) => name.to_owned(),
            };
            let Some(lead) = find_lead(store, caller, target).await? else {
                return Ok((Value::Null, reply::not_found(lang, target)));
            };
            let lead = leads::assign(
                store,
                caller,
                lead.id,
                AssignLead {
                    assignee: Some(assignee.clone()),
                },
            )
            .await?;
            let said = reply::lead_assigned(lang, &lead_name(&lead), &assignee);
            Ok((to_json(&lead)?, said))
        }
        CommandName::SearchContacts => {
            let query = text(p, "query").unwrap_or_default();
            let page = contacts::list(
                store,
                caller,
                ListContacts {
                    q: Some(query.to_owned()),
                    limit: Some(10),
                    ..ListContacts::default()
                },
            )
            .await?;
            let names: Vec<String> = page.data.iter().map(contact_name).collect();
            let said = reply::contacts_found(lang, query, &names);
            Ok((to_json(&page)?, said))
        }
        CommandName::LogActivity => {
            let kind = text(p, "activity_type").unwrap_or("note");
            let target = text(p, "target")
                .ok_or_else(|| ApiError::validation("say who the activity is about"))?;
            let Some(lead) = find_lead(store, caller, target).await? else {
                return Ok((Value::Null, reply::not_found(lang, target)));
            };
            let activity = activities::create(
                store,
                caller,
                CreateActivity {
                    activity_type: kind.to_uppercase(),
                    entity_type: EntityType::Lead,
                    entity_id: lead.id.0,
                    description: text(p, "description").map(str::to_owned),
                    data: Some(json!({ "via": "voice" })),
                },
            )
            .await?;
            let said = reply::activity_logged(lang, kind, Some(&lead_name(&lead)));
            Ok((to_json(&activity)?, said))
        }
        CommandName::ScheduleMeeting => schedule_meeting(store, caller, command, now).await,
        CommandName::GetSummary => {
            let period = text(p, "period").or(Some("today"));
            let (from, to) = period_range(period, now)
                .unwrap_or((now.with_timezone(&Utc), now.with_timezone(&Utc)));
            let new_leads = count_new_leads(store, caller, from, to).await?;
            // Meetings only for callers who may read activities; the rest hear about leads.
            let meetings = if caller.permissions.allows("read", "activities") {
                Some(count_meetings(store, caller, from, to).await?)
            } else {
                None
            };
            let said = match meetings {
                Some(meetings) => reply::summary(lang, period, new_leads, meetings),
                None => reply::leads_listed(lang, new_leads, Some("NEW"), &[]),
            };
            Ok((
                json!({ "period": period, "newLeads": new_leads, "meetings": meetings, "from": from, "to": to }),
                said,
            ))
        }
        CommandName::Help => {
            let commands: Vec<&str> = CommandName::ALL.iter().map(|c| c.as_str()).collect();
            Ok((json!({ "commands": commands }), reply::help_text(lang)))
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> ApiResult<Value> {
    serde_json::to_value(value).map_err(ApiError::internal)
}

fn contact_name(contact: &Contact) -> String {
    let first = contact.first_name.as_deref().unwrap_or_default();
    let name = full_name(first, contact.last_name.as_deref());
    if name.trim().is_empty() {
        contact.email.clone().unwrap_or_default()
    } else {
        name
    }
}

fn danish_status(status: LeadStatus) -> &'static str {
    match status {
        LeadStatus::New => "ny",
        LeadStatus::Contacted => "kontaktet",
        LeadStatus::Qualified => "kvalificeret",
        LeadStatus::Converted => "konverteret",
        LeadStatus::Lost => "tabt",
    }
}

/// Counts leads created in `[from, to)`, page by page (a summary is for people: it stops
/// counting at 1,000).
async fn count_new_leads(
    store: &dyn Store,
    caller: &Caller,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<usize> {
    let mut count = 0;
    let mut cursor = None;
    for _ in 0..10 {
        let page = leads::list(
            store,
            caller,
            ListLeads {
                created_after: Some(from - Duration::microseconds(1)),
                limit: Some(100),
                cursor: cursor.take(),
                ..ListLeads::default()
            },
        )
        .await?;
        count += page.data.iter().filter(|lead| lead.created_at < to).count();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(count)
}

/// Counts meetings (MEETING activities) that start in `[from, to)`, looking at the latest
/// 1,000 booked.
async fn count_meetings(
    store: &dyn Store,
    caller: &Caller,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<usize> {
    let mut count = 0;
    let mut cursor = None;
    for _ in 0..10 {
        let page = activities::list(
            store,
            caller,
            activities::ListActivities {
                entity_id: None,
                activity_type: Some(ActivityKind::Meeting.to_string()),
                limit: Some(100),
                cursor: cursor.take(),
            },
        )
        .await?;
        count += page
            .data
            .iter()
            .filter_map(|a| a.data["start"].as_str())
            .filter_map(|start| DateTime::parse_from_rfc3339(start).ok())
            .filter(|start| (from..to).contains(&start.with_timezone(&Utc)))
            .count();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(count)
}

/// Books a meeting as a MEETING activity on the lead it is with.
async fn schedule_meeting(
    store: &dyn Store,
    caller: &Caller,
    command: &Command,
    now: DateTime<FixedOffset>,
) -> ApiResult<(Value, String)> {
    let lang = command.language;
    let p = &command.parameters;
    let with =
        text(p, "with").ok_or_else(|| ApiError::validation("say who the meeting is with"))?;
    let start = match (text(p, "start"), text(p, "date")) {
        (Some(start), _) => DateTime::parse_from_rfc3339(start)
            .map_err(|_| ApiError::validation("start must be an RFC 3339 date-time"))?,
        // A day without a time: nine in the morning, said back as such.
        (None, Some(date)) => chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .ok()
            .and_then(|d| {
                now.timezone()
                    .from_local_datetime(&d.and_hms_opt(9, 0, 0)?)
                    .single()
            })
            .ok_or_else(|| ApiError::validation("date must be YYYY-MM-DD"))?,
        (None, None) => return Err(ApiError::validation("say when the meeting is")),
    };
    let Some(lead) = find_lead(store, caller, with).await? else {
        return Ok((Value::Null, reply::not_found(lang, with)));
    };
    let minutes = p
        .get("duration_minutes")
        .and_then(Value::as_u64)
        .unwrap_or(30);
    let activity = activities::create(
        store,
        caller,
        CreateActivity {
            activity_type: ActivityKind::Meeting.to_string(),
            entity_type: EntityType::Lead,
            entity_id: lead.id.0,
            description: Some(format!("Meeting with {}", lead_name(&lead))),
            data: Some(json!({ "start": start, "durationMinutes": minutes, "via": "voice" })),
        },
    )
    .await?;
    let said = reply::meeting_scheduled(lang, Some(&lead_name(&lead)), start);
    Ok((
        serde_json::to_value(&activity).map_err(ApiError::internal)?,
        said,
    ))
}

/// VOICE_COMMAND_EXECUTED to flow-web and voice-agent, with an audit entry.
async fn announce(
    store: &dyn Store,
    caller: &Caller,
    command: &Command,
    parameters: &Value,
) -> ApiResult<()> {
    let mut work = Work::begin(store, caller).await?;
    work.record(Record {
        action: AuditAction::VoiceExecute,
        entity_type: "voice_command",
        entity_id: command.name.as_str().to_owned(),
        before: None,
        after: Some(json!({ "command": command.name, "parameters": parameters })),
        event: Some(NewEvent::new(
            EventType::VoiceCommandExecuted,
            &caller.source_app,
            json!({
                "command": command.name,
                "parameters": parameters,
                "language": command.language,
                "success": true,
            }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(())
}

/// Appends the utterance and the answer to a conversation (a new one when `id` is
/// absent); returns its id.
async fn record(
    store: &dyn Store,
    caller: &Caller,
    id: Option<ConversationId>,
    answer: &VoiceAnswer,
) -> ApiResult<ConversationId> {
    let at = now();
    let user_text = answer
        .transcript
        .clone()
        .or_else(|| answer.command.clone())
        .unwrap_or_default();
    let turns = [
        json!({ "role": "user", "text": user_text, "at": at }),
        json!({
            "role": "assistant", "text": answer.reply, "at": at,
            "command": answer.command, "parameters": answer.parameters,
            "executed": answer.executed,
        }),
    ];
    let mut work = Work::begin(store, caller).await?;
    let conversation = match id {
        Some(id) => {
            let mut conversation = work
                .tx()
                .lock_conversation(id)
                .await
                .map_err(|e| ApiError::from_store("conversation", e))?;
            if let Value::Array(transcript) = &mut conversation.transcript {
                transcript.extend(turns);
            }
            conversation.language = Some(answer.language.clone());
            conversation.updated_at = at;
            work.tx().update_conversation(&conversation).await?;
            conversation
        }
        None => {
            let conversation = Conversation {
                id: ConversationId::new(),
                tenant_id: caller.tenant_id,
                title: Some(user_text.chars().take(80).collect()),
                language: Some(answer.language.clone()),
                transcript: Value::Array(turns.to_vec()),
                created_at: at,
                updated_at: at,
            };
            work.tx().insert_conversation(&conversation).await?;
            conversation
        }
    };
    work.commit().await?;
    Ok(conversation.id)
}

/// Starts a conversation, optionally with turns already held elsewhere.
pub async fn create_conversation(
    store: &dyn Store,
    caller: &Caller,
    title: Option<String>,
    transcript: Option<Value>,
) -> ApiResult<Conversation> {
    caller.require("execute", "voice")?;
    let transcript = match transcript {
        None => json!([]),
        Some(Value::Array(turns)) if turns.iter().all(Value::is_object) && turns.len() <= 1000 => {
            Value::Array(turns)
        }
        Some(_) => {
            return Err(ApiError::validation(
                "transcript must be an array of up to 1000 turn objects",
            ))
        }
    };
    let at = now();
    let conversation = Conversation {
        id: ConversationId::new(),
        tenant_id: caller.tenant_id,
        title: validate::text("title", title.as_deref(), 200)?,
        language: None,
        transcript,
        created_at: at,
        updated_at: at,
    };
    let mut work = Work::begin(store, caller).await?;
    work.tx().insert_conversation(&conversation).await?;
    work.commit().await?;
    Ok(conversation)
}

/// One conversation of the caller's tenant.
pub async fn get_conversation(
    store: &dyn Store,
    caller: &Caller,
    id: ConversationId,
) -> ApiResult<Conversation> {
    caller.require("execute", "voice")?;
    let mut tx = super::read(store, caller).await?;
    tx.get_conversation(id)
        .await
        .map_err(|e: StoreError| ApiError::from_store("conversation", e))
}

/// Conversations newest first.
pub async fn list_conversations(
    store: &dyn Store,
    caller: &Caller,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> ApiResult<super::Page<Conversation>> {
    caller.require("execute", "voice")?;
    let limit = validate::limit(limit)?;
    let before = super::decode_cursor(cursor)?.map(ConversationId::from);
    let mut tx = super::read(store, caller).await?;
    let rows = tx.list_conversations(before, limit + 1).await?;
    Ok(super::Page::from_rows(rows, limit, |c| c.id.0))
}
