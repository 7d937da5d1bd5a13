//! Spoken commands as jobs (voice-processing queue): for clients that would rather not
//! hold a request open while audio is recognised. The job carries the audio and the
//! caller's identity and grants, and runs the same path as `POST /voice/execute`.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use flow_store::{AuditAction, ConversationId, Job, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    auth::Caller,
    error::{ApiError, ApiResult},
    services::voice::{self, AudioQuery},
};
use flow_jobs::{JobError, Processor};
use flow_outbound::speech::{Audio, SpeechServices};
use flow_outbound::LlmClient;

/// The job kind.
pub const KIND: &str = crate::jobs::JobKind::VoiceAudio.as_str();

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AudioJob {
    /// The upload, base64.
    audio: String,
    content_type: String,
    language: Option<String>,
    conversation_id: Option<ConversationId>,
    utc_offset_minutes: Option<i32>,
    request_id: Option<String>,
}

/// Enqueues a checked upload; answers with the job.
pub async fn start(
    store: &dyn Store,
    signal: &flow_jobs::WorkSignal,
    caller: &Caller,
    audio: Audio,
    content_type: &str,
    query: AudioQuery,
) -> ApiResult<Job> {
    caller.require("execute", "voice")?;
    let payload = AudioJob {
        audio: base64::engine::general_purpose::STANDARD.encode(&audio.bytes),
        content_type: content_type.to_owned(),
        language: query.language,
        conversation_id: query.conversation_id,
        utc_offset_minutes: query.utc_offset_minutes,
        request_id: caller.request_id.clone(),
    };
    let payload = serde_json::to_value(payload).map_err(ApiError::internal)?;
    let request = crate::jobs::JobKind::VoiceAudio.job(payload);
    crate::jobs::start(store, signal, caller, request, AuditAction::VoiceAudio).await
}

/// Runs queued spoken commands.
pub struct TranscribeAndRun {
    pub speech: SpeechServices,
    pub llm: Option<LlmClient>,
}

#[async_trait]
impl Processor for TranscribeAndRun {
    async fn process(&self, store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        let payload: AudioJob = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::Permanent(format!("bad voice job payload: {e}")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&payload.audio)
            .map_err(|e| JobError::Permanent(format!("bad audio in the job: {e}")))?;
        let permanent_or_retry = |e: ApiError| {
            if e.code.is_server_side() {
                JobError::Retryable(e.message)
            } else {
                JobError::Permanent(format!("{}: {}", e.code, e.message))
            }
        };
        let audio = flow_outbound::speech::check_audio(
            &payload.content_type,
            bytes,
            self.speech.max_audio_secs,
        )
        .map_err(|e| permanent_or_retry(e.into()))?;
        // The command runs with exactly the grants its owner had when it asked.
        let caller = Caller {
            request_id: payload.request_id,
            ..crate::jobs::owner_of(job)?
        };
        let query = AudioQuery {
            language: payload.language,
            conversation_id: payload.conversation_id,
            utc_offset_minutes: payload.utc_offset_minutes,
            run_async: None,
        };
        let answer = voice::handle_audio(
            &**store,
            &caller,
            self.llm.as_ref(),
            &self.speech,
            audio,
            query,
        )
        .await
        .map_err(permanent_or_retry)?;
        serde_json::to_value(answer).map_err(|e| JobError::Permanent(e.to_string()))
    }
}
