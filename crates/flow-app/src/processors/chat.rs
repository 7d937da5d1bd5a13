//! The spec's async AI job (003 "AI Processing Flow"): `POST /chat` answers 202 with a job;
//! a worker asks an OpenAI-compatible chat API, stores the reply as the job's result and
//! pushes it to the tenant's apps as JOB_COMPLETED.

use std::sync::Arc;

use async_trait::async_trait;
use flow_store::{AuditAction, EventType, Job, NewEvent, Store};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use flow_jobs::{JobError, Processor};
use flow_outbound::LlmClient;

use crate::{
    auth::Caller,
    error::{ApiError, ApiResult, ErrorCode},
    validate,
};

/// The job kind (in the voice-processing queue, Flow's queue for AI work).
pub const KIND: &str = crate::jobs::JobKind::Chat.as_str();

/// Body of `POST /chat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatRequest {
    /// What the user asks, 1-4,000 characters.
    pub message: String,
}

const SYSTEM_PROMPT: &str = "You are Flow's assistant for a small business's sales team. \
Answer briefly and concretely, in the language of the question.";

/// Validates and enqueues a chat job; 503 when no chat API is configured.
pub async fn start(
    store: &dyn Store,
    signal: &flow_jobs::WorkSignal,
    llm_configured: bool,
    caller: &Caller,
    request: ChatRequest,
) -> ApiResult<Job> {
    caller.require("execute", "chat")?;
    if !llm_configured {
        return Err(ApiError::new(
            ErrorCode::LlmNotConfigured,
            "no chat API is configured (llm_base_url)",
        ));
    }
    let message = validate::text("message", Some(&request.message), 4_000)?
        .ok_or_else(|| ApiError::validation("message must not be empty"))?;
    let payload = json!({ "message": message });
    crate::jobs::start(
        store,
        signal,
        caller,
        crate::jobs::JobKind::Chat.job(payload),
        AuditAction::ChatAsk,
    )
    .await
}

/// Asks the chat API and publishes the reply.
pub struct Chat {
    pub client: LlmClient,
}

#[async_trait]
impl Processor for Chat {
    async fn process(&self, store: &Arc<dyn Store>, job: &Job) -> Result<Value, JobError> {
        let message = job.payload["message"]
            .as_str()
            .ok_or_else(|| JobError::Permanent("no message in the job".into()))?;
        let completion = self
            .client
            .complete(SYSTEM_PROMPT, message)
            .await
            .map_err(super::outbound_failure)?;
        let result =
            serde_json::to_value(&completion).map_err(|e| JobError::Permanent(e.to_string()))?;
        let owner = crate::jobs::owner_of(job)?;
        let source = owner.source_app.as_str();
        let mut tx = store.begin(job.tenant_id).await?;
        tx.append_event(&NewEvent::new(
            EventType::JobCompleted,
            source,
            json!({ "jobId": job.id, "kind": KIND, "reply": completion.reply }),
        ))
        .await?;
        tx.commit().await?;
        Ok(result)
    }
}
