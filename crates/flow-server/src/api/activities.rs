//! `/activities`.

use axum::{extract::State, http::StatusCode, Json};
use flow_app::services::{
    activities::{self, CreateActivity, ListActivities},
    Page,
};
use flow_store::Activity;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Authenticated,
    error::{ErrorBody, HttpResult},
    extract::{ApiJson, ApiQuery},
    state::AppState,
};

/// The activity routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_activity, list_activities))
}

/// Log an activity on a lead, contact or deal of the tenant.
#[utoipa::path(post, path = "/activities", tag = "activities", request_body = CreateActivity,
    responses((status = 201, body = Activity), (status = "4XX", body = ErrorBody)))]
async fn create_activity(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(input): ApiJson<CreateActivity>,
) -> HttpResult<(StatusCode, Json<Activity>)> {
    let activity = activities::create(&*state.store, &caller, input).await?;
    Ok((StatusCode::CREATED, Json(activity)))
}

/// List activities, newest first, optionally for one entity and of one type.
#[utoipa::path(get, path = "/activities", tag = "activities", params(ListActivities),
    responses((status = 200, body = Page<Activity>), (status = "4XX", body = ErrorBody)))]
async fn list_activities(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<ListActivities>,
) -> HttpResult<Json<Page<Activity>>> {
    Ok(Json(activities::list(&*state.store, &caller, query).await?))
}
