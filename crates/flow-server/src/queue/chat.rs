//! The spec's async AI job (003 "AI Processing Flow"): `POST /chat` answers 202 with a job;
//! a worker asks an OpenAI-compatible chat API, stores the reply as the job's result and
//! pushes it to the tenant's apps as JOB_COMPLETED.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use flow_store::{EventType, Job, NewEvent, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::worker::{JobError, Processor};
use crate::{
    auth::Caller,
    config::Config,
    error::{ApiError, ApiResult},
    validate,
};

/// The job kind (in the voice-processing queue, Flow's queue for AI work).
pub const KIND: &str = "chat";

/// How Flow reaches the chat API.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    model: String,
}

impl LlmClient {
    /// The configured client, if a base URL is set.
    pub fn from_config(config: &Config) -> Option<Self> {
        let base_url = config.llm_base_url.clone()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.llm_timeout_secs))
            .build()
            .ok()?;
        Some(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: config.llm_api_key.clone(),
            model: config.llm_model.clone(),
        })
    }

    /// One chat completion: the system prompt and the user's message in, the reply out.
    pub async fn complete(&self, system: &str, message: &str) -> Result<Completion, JobError> {
        let mut request = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .json(&json!({
                "model": self.model,
                "messages": [
                    { "role": "system", "content": system },
                    { "role": "user", "content": message },
                ],
            }));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| JobError::Retryable(format!("chat API unreachable: {e}")))?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(JobError::Retryable(format!("chat API answered {status}")));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(JobError::Permanent(format!(
                "chat API refused the request ({status}): {body}"
            )));
        }
        let body: ChatResponse = response
            .json()
            .await
            .map_err(|e| JobError::Retryable(format!("unreadable chat API answer: {e}")))?;
        let reply = body
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| JobError::Retryable("the chat API answered without a message".into()))?;
        Ok(Completion {
            reply,
            model: body.model,
            usage: body.usage,
        })
    }
}

impl LlmClient {
    /// Asks the model to pick one of `tools` (OpenAI function calling) for `message`;
    /// returns the function's name and arguments, or `None` when it called none.
    pub async fn choose_tool(
        &self,
        system: &str,
        message: &str,
        tools: &Value,
    ) -> Result<Option<(String, Value)>, String> {
        let mut request = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .json(&json!({
                "model": self.model,
                "messages": [
                    { "role": "system", "content": system },
                    { "role": "user", "content": message },
                ],
                "tools": tools,
                "tool_choice": "auto",
            }));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("chat API unreachable: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("chat API answered {status}"));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("unreadable chat API answer: {e}"))?;
        let call = &body["choices"][0]["message"]["tool_calls"][0]["function"];
        let Some(name) = call["name"].as_str() else {
            return Ok(None);
        };
        // The API sends the arguments as a JSON string.
        let arguments = match &call["arguments"] {
            Value::String(text) => serde_json::from_str(text)
                .map_err(|e| format!("tool arguments are not JSON: {e}"))?,
            Value::Null => json!({}),
            other => other.clone(),
        };
        Ok(Some((name.to_owned(), arguments)))
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
}

/// A chat API's answer.
#[derive(Debug, Serialize)]
pub struct Completion {
    pub reply: String,
    pub model: Option<String>,
    pub usage: Option<Value>,
}

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
    signal: &super::WorkSignal,
    llm_configured: bool,
    caller: &Caller,
    request: ChatRequest,
) -> ApiResult<Job> {
    caller.require("execute", "chat")?;
    if !llm_configured {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "llm_not_configured",
            "no chat API is configured (llm_base_url)",
        ));
    }
    let message = validate::text("message", Some(&request.message), 4_000)?
        .ok_or_else(|| ApiError::validation("message must not be empty"))?;
    let payload = json!({ "message": message, "sourceApp": caller.source_app });
    super::start(
        store,
        signal,
        caller,
        super::Enqueue::new("voice-processing", KIND, payload),
        "chat.ask",
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
        let completion = self.client.complete(SYSTEM_PROMPT, message).await?;
        let result =
            serde_json::to_value(&completion).map_err(|e| JobError::Permanent(e.to_string()))?;
        let source = job.payload["sourceApp"].as_str().unwrap_or("flow");
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
