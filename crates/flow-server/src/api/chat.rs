//! `/chat`: the async AI job.

use axum::{extract::State, http::StatusCode, Json};
use flow_app::processors;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::jobs::Accepted;
use crate::{
    auth::Authenticated,
    error::{ErrorBody, HttpResult},
    state::AppState,
};

/// The chat routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(chat))
}

/// Ask Flow's assistant (an OpenAI-compatible chat API). Answers 202 with a job; the reply
/// becomes the job's result and is pushed to the tenant's apps as JOB_COMPLETED.
#[utoipa::path(post, path = "/chat", tag = "jobs", request_body = processors::chat::ChatRequest,
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn chat(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    crate::extract::ApiJson(request): crate::extract::ApiJson<processors::chat::ChatRequest>,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let configured = state.config.llm_base_url.is_some();
    let job = processors::chat::start(
        &*state.store,
        &state.work_signal,
        configured,
        &caller,
        request,
    )
    .await?;
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
}
