//! `/voice/execute`, `/voice/test` and `/conversations`.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use flow_app::services::{
    voice::{self, AudioQuery, Mode, VoiceAnswer, VoiceRequest},
    Page,
};
use flow_outbound::speech;
use flow_store::{Conversation, ConversationId};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Authenticated,
    error::{ErrorBody, ErrorCode, HttpError, HttpResult},
    extract::{ApiJson, ApiPath, ApiQuery},
    state::AppState,
};

/// Audio commands are larger than JSON ones: 30 s of 48 kHz WAV is ~2.8 MB.
const MAX_AUDIO_BYTES: usize = 8 * 1024 * 1024;

/// The voice routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(execute))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_AUDIO_BYTES))
        .routes(routes!(test))
        .routes(routes!(list_conversations, create_conversation))
        .routes(routes!(get_conversation))
}

/// Run a voice command: what was said (`text`, Danish or English), a structured
/// `command`, or the spoken command itself as the body (`audio/wav` 16-bit PCM mono,
/// `audio/webm` or `audio/ogg`, with `language`, `conversationId` in the query). Needs
/// `execute:voice` plus the command's own permission. Answers with the transcript, the
/// command understood, its result and a sentence to speak (as audio too for audio, or with
/// `"speak": true`); unclear speech is answered with a question (`clarification`) and
/// runs nothing.
#[utoipa::path(post, path = "/voice/execute", tag = "voice", request_body = VoiceRequest,
    params(AudioQuery),
    responses((status = 200, body = VoiceAnswer),
        (status = 202, description = "Audio with async=true: the job to follow"),
        (status = "4XX", body = ErrorBody)))]
async fn execute(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<AudioQuery>,
    request: Request,
) -> HttpResult<Response> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type.starts_with("audio/") {
        let body = Bytes::from_request(request, &state).await.map_err(|e| {
            let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorCode::PayloadTooLarge
            } else {
                ErrorCode::InvalidBody
            };
            HttpError::new(code, e.body_text())
        })?;
        let audio = speech::check_audio(&content_type, body.to_vec(), state.speech.max_audio_secs)
            .map_err(flow_app::ApiError::from)?;
        if query.run_async == Some(true) {
            let job = flow_app::processors::voice_audio::start(
                &*state.store,
                &state.work_signal,
                &caller,
                audio,
                &content_type,
                query,
            )
            .await?;
            let accepted = json!({ "jobId": job.id, "state": job.state, "statusUrl": format!("/jobs/{}", job.id) });
            return Ok((StatusCode::ACCEPTED, Json(accepted)).into_response());
        }
        return Ok(Json(
            voice::handle_audio(
                &*state.store,
                &caller,
                state.voice_llm.as_ref(),
                &state.speech,
                audio,
                query,
            )
            .await?,
        )
        .into_response());
    }
    if query.language.is_some()
        || query.conversation_id.is_some()
        || query.utc_offset_minutes.is_some()
        || query.run_async.is_some()
    {
        return Err(HttpError::validation(
            "query parameters are for audio; send them in the JSON body",
        ));
    }
    let ApiJson(request) = ApiJson::<VoiceRequest>::from_request(request, &state).await?;
    let speak = request.speak;
    let mut answer = voice::handle(
        &*state.store,
        &caller,
        state.voice_llm.as_ref(),
        request,
        Mode::Execute,
    )
    .await?;
    if speak {
        voice::attach_speech(&state.speech, &mut answer).await;
    }
    Ok(Json(answer).into_response())
}

/// Try a voice command without consequences: it is understood and checked, read-only
/// commands run, commands that would change something do not. Nothing is recorded.
#[utoipa::path(post, path = "/voice/test", tag = "voice", request_body = VoiceRequest,
    responses((status = 200, body = VoiceAnswer), (status = "4XX", body = ErrorBody)))]
async fn test(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<VoiceRequest>,
) -> HttpResult<Json<VoiceAnswer>> {
    Ok(Json(
        voice::handle(
            &*state.store,
            &caller,
            state.voice_llm.as_ref(),
            request,
            Mode::DryRun,
        )
        .await?,
    ))
}

/// Query of `GET /conversations`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListConversations {
    /// Page size, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Conversations with the voice agent, newest first.
#[utoipa::path(get, path = "/conversations", tag = "voice", params(ListConversations),
    responses((status = 200, body = Page<Conversation>), (status = "4XX", body = ErrorBody)))]
async fn list_conversations(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<ListConversations>,
) -> HttpResult<Json<Page<Conversation>>> {
    Ok(Json(
        voice::list_conversations(&*state.store, &caller, query.limit, query.cursor.as_deref())
            .await?,
    ))
}

/// Body of `POST /conversations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewConversation {
    title: Option<String>,
    /// Turns held elsewhere, as objects (`{role, text, ...}`).
    #[schema(value_type = Option<Vec<Object>>)]
    transcript: Option<serde_json::Value>,
}

/// Start a conversation; voice commands continue it with `conversationId`.
#[utoipa::path(post, path = "/conversations", tag = "voice", request_body = NewConversation,
    responses((status = 201, body = Conversation), (status = "4XX", body = ErrorBody)))]
async fn create_conversation(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<NewConversation>,
) -> HttpResult<(StatusCode, Json<Conversation>)> {
    let conversation =
        voice::create_conversation(&*state.store, &caller, body.title, body.transcript).await?;
    Ok((StatusCode::CREATED, Json(conversation)))
}

/// One conversation with its transcript.
#[utoipa::path(get, path = "/conversations/{id}", tag = "voice", params(("id" = ConversationId, Path)),
    responses((status = 200, body = Conversation), (status = "4XX", body = ErrorBody)))]
async fn get_conversation(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<ConversationId>,
) -> HttpResult<Json<Conversation>> {
    Ok(Json(
        voice::get_conversation(&*state.store, &caller, id).await?,
    ))
}
