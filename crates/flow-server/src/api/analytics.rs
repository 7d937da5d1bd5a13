//! `/metrics/business`: the daily business rollups.

use axum::{extract::State, http::StatusCode, Json};
use chrono::Utc;
use flow_app::processors;
use flow_app::services::read;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::jobs::Accepted;
use crate::{
    auth::Authenticated,
    error::{ErrorBody, ErrorCode, HttpError, HttpResult},
    extract::ApiQuery,
    state::AppState,
};

/// The analytics routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(business_metrics))
        .routes(routes!(start_rollup))
}

/// Query of `GET /metrics/business`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BusinessQuery {
    /// First day, `YYYY-MM-DD` (default: six days before `to`).
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (default: today, UTC).
    #[param(format = Date)]
    pub to: Option<String>,
}

/// Daily business numbers (leads by status and source, conversion rate, activities, voice
/// commands, deals won) as rolled up by the analytics queue (hourly, and on demand).
#[utoipa::path(get, path = "/metrics/business", tag = "analytics", params(BusinessQuery),
    responses((status = 200, body = Vec<flow_store::DailyRollup>), (status = "4XX", body = ErrorBody)))]
async fn business_metrics(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<BusinessQuery>,
) -> HttpResult<Json<Vec<flow_store::DailyRollup>>> {
    if !caller.permissions.allows("read", "analytics") {
        caller.require("read", "metrics")?;
    }
    let to = match &query.to {
        Some(day) => processors::analytics::parse_day(day)?,
        None => Utc::now().date_naive(),
    };
    let from = match &query.from {
        Some(day) => processors::analytics::parse_day(day)?,
        None => to - chrono::Duration::days(6),
    };
    if from > to || (to - from).num_days() > 366 {
        return Err(HttpError::new(
            ErrorCode::InvalidRange,
            "from must be before to, at most a year apart",
        ));
    }
    let rollups = read(&*state.store, &caller)
        .await?
        .list_rollups(&from.to_string(), &to.to_string())
        .await?;
    Ok(Json(rollups))
}

/// Body of the rollup trigger.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollupRequest {
    /// The day to roll up, `YYYY-MM-DD` (default: today, UTC).
    pub day: Option<String>,
}

/// Roll up a day now instead of waiting for the hourly run. Answers 202 with the job.
#[utoipa::path(post, path = "/metrics/business/rollup", tag = "analytics", request_body = RollupRequest,
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn start_rollup(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    crate::extract::ApiJson(body): crate::extract::ApiJson<RollupRequest>,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    caller.require("write", "analytics")?;
    let day = match &body.day {
        Some(day) => processors::analytics::parse_day(day)?,
        None => Utc::now().date_naive(),
    };
    let job = processors::analytics::enqueue(&*state.store, caller.tenant_id, day).await?;
    state.work_signal.notify();
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
}
