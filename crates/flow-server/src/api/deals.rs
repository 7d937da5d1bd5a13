//! `/deals`.

use axum::{extract::State, http::StatusCode, Json};
use flow_app::services::{
    deals::{self, CreateDeal, ListDeals, UpdateDeal},
    Page,
};
use flow_store::{Deal, DealId};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Authenticated,
    error::{ErrorBody, HttpResult},
    extract::{ApiJson, ApiPath, ApiQuery},
    state::AppState,
};

/// The deal routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_deal, list_deals))
        .routes(routes!(get_deal, update_deal))
}

/// Open a deal. Emits DEAL_CREATED.
#[utoipa::path(post, path = "/deals", tag = "deals", request_body = CreateDeal,
    responses((status = 201, body = Deal), (status = "4XX", body = ErrorBody)))]
async fn create_deal(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(input): ApiJson<CreateDeal>,
) -> HttpResult<(StatusCode, Json<Deal>)> {
    let deal = deals::create(&*state.store, &caller, input).await?;
    Ok((StatusCode::CREATED, Json(deal)))
}

/// List deals, newest first.
#[utoipa::path(get, path = "/deals", tag = "deals", params(ListDeals),
    responses((status = 200, body = Page<Deal>), (status = "4XX", body = ErrorBody)))]
async fn list_deals(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<ListDeals>,
) -> HttpResult<Json<Page<Deal>>> {
    Ok(Json(deals::list(&*state.store, &caller, query).await?))
}

/// Get one deal.
#[utoipa::path(get, path = "/deals/{id}", tag = "deals", params(("id" = DealId, Path)),
    responses((status = 200, body = Deal), (status = "4XX", body = ErrorBody)))]
async fn get_deal(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<DealId>,
) -> HttpResult<Json<Deal>> {
    Ok(Json(deals::get(&*state.store, &caller, id).await?))
}

/// Change a deal; `status` WON or LOST closes it (DEAL_WON / DEAL_LOST), OPEN reopens it.
#[utoipa::path(patch, path = "/deals/{id}", tag = "deals", params(("id" = DealId, Path)), request_body = UpdateDeal,
    responses((status = 200, body = Deal), (status = "4XX", body = ErrorBody)))]
async fn update_deal(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiPath(id): ApiPath<DealId>,
    ApiJson(patch): ApiJson<UpdateDeal>,
) -> HttpResult<Json<Deal>> {
    Ok(Json(
        deals::update(&*state.store, &caller, id, patch).await?,
    ))
}
