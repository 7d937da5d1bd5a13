//! `/voice/execute`, `/voice/test` and `/conversations`.

use axum::{extract::State, http::StatusCode, Json};
use flow_store::{Conversation, ConversationId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Caller,
    error::{ApiResult, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery},
    services::{
        voice::{self, Mode, VoiceAnswer, VoiceRequest},
        Page,
    },
    state::AppState,
};

/// The voice routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(execute))
        .routes(routes!(test))
        .routes(routes!(list_conversations, create_conversation))
        .routes(routes!(get_conversation))
}

/// Run a voice command: what was said (`text`, Danish or English) or a structured
/// `command`. Needs `execute:voice` plus the command's own permission. Answers with the
/// command understood, its result and a sentence to speak; unclear text is answered with
/// a question (`clarification`) and runs nothing.
#[utoipa::path(post, path = "/voice/execute", tag = "voice", request_body = VoiceRequest,
    responses((status = 200, body = VoiceAnswer), (status = "4XX", body = ErrorBody)))]
async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<VoiceRequest>,
) -> ApiResult<Json<VoiceAnswer>> {
    Ok(Json(
        voice::handle(&*state.store, &caller, request, Mode::Execute).await?,
    ))
}

/// Try a voice command without consequences: it is understood and checked, read-only
/// commands run, commands that would change something do not. Nothing is recorded.
#[utoipa::path(post, path = "/voice/test", tag = "voice", request_body = VoiceRequest,
    responses((status = 200, body = VoiceAnswer), (status = "4XX", body = ErrorBody)))]
async fn test(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<VoiceRequest>,
) -> ApiResult<Json<VoiceAnswer>> {
    Ok(Json(
        voice::handle(&*state.store, &caller, request, Mode::DryRun).await?,
    ))
}

/// Query of `GET /conversations`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListConversations {
    /// Page size, 1-100 (default 20).
    limit: Option<u32>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Conversations with the voice agent, newest first.
#[utoipa::path(get, path = "/conversations", tag = "voice", params(ListConversations),
    responses((status = 200, body = Page<Conversation>), (status = "4XX", body = ErrorBody)))]
async fn list_conversations(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListConversations>,
) -> ApiResult<Json<Page<Conversation>>> {
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
    caller: Caller,
    ApiJson(body): ApiJson<NewConversation>,
) -> ApiResult<(StatusCode, Json<Conversation>)> {
    let conversation =
        voice::create_conversation(&*state.store, &caller, body.title, body.transcript).await?;
    Ok((StatusCode::CREATED, Json(conversation)))
}

/// One conversation with its transcript.
#[utoipa::path(get, path = "/conversations/{id}", tag = "voice", params(("id" = ConversationId, Path)),
    responses((status = 200, body = Conversation), (status = "4XX", body = ErrorBody)))]
async fn get_conversation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<ConversationId>,
) -> ApiResult<Json<Conversation>> {
    Ok(Json(
        voice::get_conversation(&*state.store, &caller, id).await?,
    ))
}
