//! The gateway's JSON text frames (documented in docs/PROTOCOL.md).

use axum::extract::ws::Utf8Bytes;
use flow_store::{EventType, LoggedEvent, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Narrow delivery to these event types and/or join rooms of the caller's tenant.
    Subscribe {
        #[serde(default, rename = "eventTypes")]
        event_types: Vec<EventType>,
        #[serde(default)]
        rooms: Vec<String>,
    },
    /// Stop receiving these event types (removing the filter entry) and/or leave rooms.
    Unsubscribe {
        #[serde(default, rename = "eventTypes")]
        event_types: Vec<EventType>,
        #[serde(default)]
        rooms: Vec<String>,
    },
    /// Replay everything after `since` from the durable log, then continue live.
    Resume { since: i64 },
    /// Application-level keep-alive; answered with `pong`.
    Ping {
        #[serde(default)]
        id: Option<Value>,
    },
    /// Runs a voice command; answered with `voice_command_response` carrying the same id.
    /// A structured `command` or the `text` said, as `POST /voice/execute` takes them.
    #[serde(rename_all = "camelCase")]
    ExecuteVoiceCommand {
        id: Value,
        command: Option<String>,
        #[serde(default)]
        parameters: Value,
        text: Option<String>,
        language: Option<String>,
        conversation_id: Option<flow_store::ConversationId>,
    },
}

/// `{"type":"event","seq":N,"event":{...}}`, serialised once for every socket.
pub fn event_frame(logged: &LoggedEvent) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Frame<'a> {
        r#type: &'static str,
        seq: i64,
        event: &'a flow_store::CrossAppEvent,
    }
    let text = serde_json::to_string(&Frame {
        r#type: "event",
        seq: logged.seq,
        event: &logged.event,
    })
    .expect("events serialise");
    Utf8Bytes::from(text)
}

/// The first frame on every connection.
pub fn welcome(seq: i64, tenant: TenantId, app: &str, rooms: &[String]) -> Utf8Bytes {
    frame(json!({
        "type": "welcome",
        "protocol": "flow.v1",
        "seq": seq,
        "tenantId": tenant,
        "appId": app,
        "rooms": rooms,
    }))
}

/// An error about the client's last frame; `id` echoes the request's id when it had one.
pub fn error(code: &str, message: impl Into<String>, id: Option<&Value>) -> Utf8Bytes {
    let mut body = json!({ "type": "error", "code": code, "message": message.into() });
    if let Some(id) = id {
        body["id"] = id.clone();
    }
    frame(body)
}

/// Confirms the socket's subscription after a change.
pub fn subscribed(rooms: &[String], event_types: Option<&[EventType]>) -> Utf8Bytes {
    frame(json!({ "type": "subscribed", "rooms": rooms, "eventTypes": event_types }))
}

/// Answers `ping`.
pub fn pong(id: Option<&Value>) -> Utf8Bytes {
    frame(json!({ "type": "pong", "id": id }))
}

/// The events after `since` are gone from the log: refetch state, then resume at `seq`.
pub fn resync_required(since: i64, oldest: i64, seq: i64) -> Utf8Bytes {
    frame(json!({ "type": "resync_required", "since": since, "oldestSeq": oldest, "seq": seq }))
}

/// The result of `execute_voice_command`: the answer's fields (`data`, `reply`, `command`,
/// `language`, `conversationId`, ...) beside `type` and `id`; `success` is false when the
/// agent asks back (`clarification`).
pub fn voice_response(
    id: &Value,
    result: Result<flow_app::services::voice::VoiceAnswer, (String, String)>,
) -> Utf8Bytes {
    match result.map(|answer| {
        serde_json::to_value(answer).map_err(|e| ("internal_error".to_owned(), e.to_string()))
    }) {
        Ok(Ok(Value::Object(mut answer))) => {
            answer.insert("type".into(), json!("voice_command_response"));
            answer.insert("id".into(), id.clone());
            frame(Value::Object(answer))
        }
        Ok(Ok(_)) | Ok(Err(_)) => frame(json!({
            "type": "voice_command_response",
            "id": id,
            "success": false,
            "error": { "code": "internal_error", "message": "the answer could not be encoded" },
        })),
        Err((code, message)) => frame(json!({
            "type": "voice_command_response",
            "id": id,
            "success": false,
            "error": { "code": code, "message": message },
        })),
    }
}

fn frame(value: Value) -> Utf8Bytes {
    Utf8Bytes::from(value.to_string())
}
