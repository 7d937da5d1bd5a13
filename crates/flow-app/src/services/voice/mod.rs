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

mod conversations;
mod execute;
mod understand;

use conversations::{announce, record};
pub use conversations::{create_conversation, get_conversation, list_conversations};
use execute::{lead_name, run};
use understand::{ask_model, is_read_only, offset, structured, understand, validate_text};

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
