//! The OpenAI-compatible chat API: completions for `/chat` and function calling for voice
//! commands the parser is not sure of.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::OutboundError;

/// Where the chat API is and how long to wait for it.
#[derive(Clone)]
pub struct LlmConfig {
    /// Unset switches the chat API off.
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub model: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .finish()
    }
}

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
    pub fn from_config(config: &LlmConfig) -> Option<Self> {
        let base_url = config.base_url.clone()?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .ok()?;
        Some(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: config.api_key.clone(),
            model: config.model.clone(),
        })
    }

    /// A `POST /chat/completions` with `body`, signed with the API key when there is one.
    fn chat_request(&self, body: Value) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .json(&body);
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// One chat completion: the system prompt and the user's message in, the reply out.
    pub async fn complete(&self, system: &str, message: &str) -> Result<Completion, OutboundError> {
        let request = self.chat_request(json!({
            "model": self.model,
            "messages": [
                { "role": "system", "content": system },
                { "role": "user", "content": message },
            ],
        }));
        let response = request
            .send()
            .await
            .map_err(|e| OutboundError::Retryable(format!("chat API unreachable: {e}")))?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(OutboundError::Retryable(format!(
                "chat API answered {status}"
            )));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(OutboundError::Permanent(format!(
                "chat API refused the request ({status}): {body}"
            )));
        }
        let body: ChatResponse = response
            .json()
            .await
            .map_err(|e| OutboundError::Retryable(format!("unreadable chat API answer: {e}")))?;
        let reply = body
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| {
                OutboundError::Retryable("the chat API answered without a message".into())
            })?;
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
    ) -> Result<Option<(String, Value)>, OutboundError> {
        let request = self.chat_request(json!({
            "model": self.model,
            "messages": [
                { "role": "system", "content": system },
                { "role": "user", "content": message },
            ],
            "tools": tools,
            "tool_choice": "auto",
        }));
        let response = request.send().await.map_err(|e| {
            OutboundError::Retryable(format!("chat API unreachable: {}", e.without_url()))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(OutboundError::Retryable(format!(
                "chat API answered {status}"
            )));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| OutboundError::Retryable(format!("unreadable chat API answer: {e}")))?;
        let call = &body["choices"][0]["message"]["tool_calls"][0]["function"];
        let Some(name) = call["name"].as_str() else {
            return Ok(None);
        };
        // The API sends the arguments as a JSON string.
        let arguments = match &call["arguments"] {
            Value::String(text) => serde_json::from_str(text).map_err(|e| {
                OutboundError::Permanent(format!("tool arguments are not JSON: {e}"))
            })?,
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
