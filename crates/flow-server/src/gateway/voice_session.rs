//! `GET /voice/{sessionId}`: a conversation with the voice agent over one WebSocket. Audio
//! streams in as binary frames between `start` and `end`; each utterance is answered with
//! its transcript and result, then the spoken reply as a binary frame. Typed text works in
//! the same session. The turns form one stored conversation.

use std::time::Duration;

use axum::{
    extract::{
        ws::{rejection::WebSocketUpgradeRejection, Message, WebSocket, WebSocketUpgrade},
        State,
    },
    response::Response,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use flow_app::auth::Caller;
use flow_app::services::voice::{self, AudioQuery, Mode, VoiceAnswer, VoiceRequest};
use flow_outbound::speech;
use flow_store::ConversationId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{audio_budget::AudioBudget, SocketCaller};
use crate::{
    error::{ErrorBody, ErrorCode, HttpError, HttpResult},
    extract::ApiPath,
    state::AppState,
};

/// Audio one utterance may stream in (30 s of 48 kHz WAV is ~2.8 MB).
const MAX_UTTERANCE_BYTES: usize = 8 * 1024 * 1024;

/// Frames a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    /// Audio follows as binary frames, in `format` (`audio/wav` or `audio/webm`).
    #[serde(rename_all = "camelCase")]
    Start {
        format: String,
        language: Option<String>,
        utc_offset_minutes: Option<i32>,
    },
    /// The utterance is complete: transcribe and run it.
    End,
    /// A typed command in the same conversation.
    Text {
        text: String,
        language: Option<String>,
    },
}

/// Open a voice session (WebSocket; frames in docs/PROTOCOL.md). Credentials as for
/// `/events`; needs `execute:voice`.
#[utoipa::path(get, path = "/voice/{sessionId}", tag = "voice",
    params(("sessionId" = String, Path, description = "The client's name for the session, 1-64 letters, digits, - or _")),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
        (status = 426, body = ErrorBody), (status = "4XX", body = ErrorBody)))]
pub(super) async fn connect(
    State(state): State<AppState>,
    ApiPath(session_id): ApiPath<String>,
    SocketCaller(caller, expires_at): SocketCaller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> HttpResult<Response> {
    caller.require("execute", "voice")?;
    let valid = !session_id.is_empty()
        && session_id.len() <= 64
        && session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(HttpError::validation(
            "sessionId must be 1-64 letters, digits, - or _",
        ));
    }
    let place = state.voice_sessions.admit(&caller)?;
    let upgrade = upgrade.map_err(|rejection| {
        HttpError::new(
            ErrorCode::UpgradeRequired,
            format!("connect with a WebSocket client: {}", rejection.body_text()),
        )
    })?;
    Ok(upgrade
        .max_message_size(MAX_UTTERANCE_BYTES)
        .on_upgrade(move |socket| async move {
            Session::new(state, caller, session_id)
                .run(socket, expires_at)
                .await;
            drop(place);
        }))
}

struct Session {
    state: AppState,
    caller: Caller,
    id: String,
    conversation: Option<ConversationId>,
    /// The utterance being streamed: its format, language and audio so far.
    pending: Option<Pending>,
}

struct Pending {
    format: String,
    query: AudioQuery,
    audio: Vec<u8>,
    /// `audio`'s share of the process-wide budget, held until the utterance is answered
    /// or given up.
    reserved: Reservation,
    /// When the utterance is given up if `end` has not come.
    deadline: tokio::time::Instant,
}

/// Bytes taken from an [`AudioBudget`] (the capacity of the utterance's buffer); given
/// back when dropped.
struct Reservation {
    budget: std::sync::Arc<AudioBudget>,
    bytes: usize,
}

impl Reservation {
    /// Takes `bytes` more, unless that would overdraw the budget.
    fn grow(&mut self, bytes: usize) -> bool {
        let taken = self.budget.take(bytes);
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

impl Session {
    fn new(state: AppState, caller: Caller, id: String) -> Self {
        Self {
            state,
            caller,
            id,
            conversation: None,
            pending: None,
        }
    }

    /// Serves the session until the client leaves, the server shuts down, or the credential
    /// it was opened with expires or is revoked: a session must not outlive its credential.
    async fn run(mut self, mut socket: WebSocket, expires_at: Option<DateTime<Utc>>) {
        let hello = json!({ "type": "ready", "sessionId": self.id });
        if socket.send(text(hello)).await.is_err() {
            return;
        }
        let shutdown = self.state.shutdown.clone();
        let expiry = super::credential_expiry(expires_at);
        tokio::pin!(expiry);
        let mut recheck =
            tokio::time::interval(Duration::from_secs(self.state.config.ws_heartbeat_secs));
        // A long turn (speech to text, the command, text to speech) must not be followed
        // by a burst of checks.
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.tick().await;
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => {
                    return close(&mut socket, 1001, "server shutting down").await;
                }
                () = &mut expiry, if expires_at.is_some() => {
                    return close(&mut socket, 1008, "credential expired: reconnect with a fresh token").await;
                }
                _ = recheck.tick() => {
                    // A store error (the database restarting) is not a revocation.
                    match flow_app::auth::credential_still_valid(&*self.state.store, &self.caller).await {
                        Ok(true) => {}
                        Ok(false) => return close(&mut socket, 1008, "credential revoked").await,
                        // A store error (the database restarting) is not a revocation.
                        Err(error) => {
                            tracing::warn!(%error, "could not recheck a voice socket's credential");
                        }
                    }
                    continue;
                }
                () = utterance_deadline(self.pending.as_ref()), if self.pending.is_some() => {
                    // An utterance that never ends would hold its audio for good.
                    self.pending = None;
                    let reply = error("utterance_timeout", "the utterance did not end in time; start again");
                    if socket.send(reply).await.is_err() {
                        return;
                    }
                    continue;
                }
                message = socket.recv() => message,
            };
            let Some(Ok(message)) = message else { return };
            let replies = match message {
                Message::Binary(chunk) => self.on_audio(&chunk),
                Message::Text(frame) => self.on_frame(frame.as_str()).await,
                Message::Close(_) => return,
                _ => Vec::new(),
            };
            for reply in replies {
                if socket.send(reply).await.is_err() {
                    return;
                }
            }
        }
    }

    fn on_audio(&mut self, chunk: &[u8]) -> Vec<Message> {
        let Some(pending) = &mut self.pending else {
            return vec![error(
                "no_utterance",
                "send {\"type\":\"start\"} before audio",
            )];
        };
        if pending.audio.len() + chunk.len() > MAX_UTTERANCE_BYTES {
            self.pending = None;
            return vec![error(
                "audio_too_long",
                "the utterance is too large; start again",
            )];
        }
        let needed = pending.audio.len() + chunk.len();
        if needed > pending.audio.capacity() {
            // The budget counts what is allocated, not what is filled: the buffer grows by
            // doubling, so counting its length let memory reach twice the budget.
            let capacity = needed
                .max(pending.audio.capacity() * 2)
                .min(MAX_UTTERANCE_BYTES);
            if !pending.reserved.grow(capacity - pending.reserved.bytes) {
                self.pending = None;
                return vec![error(
                    "server_busy",
                    "the server holds as much audio as it may; send the utterance again shortly",
                )];
            }
            pending.audio.reserve_exact(capacity - pending.audio.len());
        }
        pending.audio.extend_from_slice(chunk);
        Vec::new()
    }

    async fn on_frame(&mut self, frame: &str) -> Vec<Message> {
        let frame: ClientFrame = match serde_json::from_str(frame) {
            Ok(frame) => frame,
            Err(e) => return vec![error("invalid_frame", &e.to_string())],
        };
        match frame {
            ClientFrame::Start {
                format,
                language,
                utc_offset_minutes,
            } => {
                self.pending = Some(Pending {
                    format,
                    query: AudioQuery {
                        language,
                        conversation_id: None,
                        utc_offset_minutes,
                        run_async: None,
                    },
                    audio: Vec::new(),
                    reserved: Reservation {
                        budget: self.state.voice_audio.clone(),
                        bytes: 0,
                    },
                    deadline: tokio::time::Instant::now()
                        + Duration::from_secs(self.state.config.voice_utterance_timeout_secs),
                });
                vec![text(json!({ "type": "listening" }))]
            }
            ClientFrame::End => {
                let Some(pending) = self.pending.take() else {
                    return vec![error(
                        "no_utterance",
                        "send {\"type\":\"start\"} and audio first",
                    )];
                };
                self.answer_audio(pending).await
            }
            ClientFrame::Text {
                text: said,
                language,
            } => {
                let request = VoiceRequest {
                    text: Some(said),
                    language,
                    conversation_id: self.conversation,
                    speak: true,
                    ..VoiceRequest::default()
                };
                let answered = voice::handle(
                    &*self.state.store,
                    &self.caller,
                    self.state.voice_llm.as_ref(),
                    request,
                    Mode::Execute,
                )
                .await;
                match answered {
                    Ok(mut answer) => {
                        voice::attach_speech(&self.state.speech, &mut answer).await;
                        self.reply(answer)
                    }
                    Err(e) => vec![error(e.code.as_str(), &e.message)],
                }
            }
        }
    }

    async fn answer_audio(&mut self, mut pending: Pending) -> Vec<Message> {
        let audio = match speech::check_audio(
            &pending.format,
            pending.audio,
            self.state.speech.max_audio_secs,
        ) {
            Ok(audio) => audio,
            Err(e) => {
                let e = flow_app::ApiError::from(e);
                return vec![error(e.code.as_str(), &e.message)];
            }
        };
        pending.query.conversation_id = self.conversation;
        let answered = voice::handle_audio(
            &*self.state.store,
            &self.caller,
            self.state.voice_llm.as_ref(),
            &self.state.speech,
            audio,
            pending.query,
        )
        .await;
        match answered {
            Ok(answer) => self.reply(answer),
            Err(e) => vec![error(e.code.as_str(), &e.message)],
        }
    }

    /// The result as JSON, then the spoken reply: its type as JSON, its audio as binary.
    fn reply(&mut self, mut answer: VoiceAnswer) -> Vec<Message> {
        if answer.conversation_id.is_some() {
            self.conversation = answer.conversation_id;
        }
        let spoken = answer.speech.take();
        let mut result = serde_json::to_value(&answer).unwrap_or(Value::Null);
        result["type"] = json!("result");
        let mut out = vec![text(result)];
        if let Some(spoken) = spoken {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(spoken.data) {
                out.push(text(json!({ "type": "speech", "contentType": spoken.content_type, "bytes": bytes.len() })));
                out.push(Message::Binary(bytes.into()));
            }
        }
        out
    }
}

/// Fires when the pending utterance's time is up; never without one.
async fn utterance_deadline(pending: Option<&Pending>) {
    match pending {
        Some(pending) => tokio::time::sleep_until(pending.deadline).await,
        None => std::future::pending().await,
    }
}

fn text(value: Value) -> Message {
    Message::Text(value.to_string().into())
}

fn error(code: &str, message: &str) -> Message {
    text(json!({ "type": "error", "code": code, "message": message }))
}

/// Sends a close frame; the socket is being dropped, so a failure changes nothing.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = axum::extract::ws::CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
