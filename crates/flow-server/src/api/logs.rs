//! `/events/log` and `/audit`: the tenant's event log and audit trail.

use axum::{extract::State, Json};
use flow_app::services::{decode_cursor, read, Page};
use flow_app::validate;
use flow_store::{AuditEntry, AuditFilter, AuditId, LoggedEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::Authenticated,
    error::{ErrorBody, ErrorCode, HttpError, HttpResult},
    extract::ApiQuery,
    state::AppState,
};

/// The log routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(event_log))
        .routes(routes!(audit_trail))
}

/// Query of `GET /events/log`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventLogQuery {
    /// Return events with a sequence number above this (default 0: from the start).
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// At most this many events, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A slice of the event log.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventLogPage {
    /// The events of the page the caller may see: those its grants let it read
    /// (`read:leads` for lead events, and so on) and those routed to its app.
    pub data: Vec<LoggedEvent>,
    /// The tenant's latest sequence number when this page was read.
    pub last_seq: i64,
    /// Pass as `since` for the next page: the last event this page covered, including
    /// events left out for want of a grant.
    pub next_since: i64,
    /// Events after `since` were pruned (retention) before they could be read: the page
    /// starts at `oldestSeq`, and state should be refetched over REST, as a socket's
    /// `resync_required` says.
    pub resync_required: bool,
    /// The oldest event the log still holds.
    pub oldest_seq: Option<i64>,
}

/// Read the tenant's event log in order, from `since` on.
#[utoipa::path(get, path = "/events/log", tag = "events", params(EventLogQuery),
    responses((status = 200, body = EventLogPage), (status = "4XX", body = ErrorBody)))]
async fn event_log(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<EventLogQuery>,
) -> HttpResult<Json<EventLogPage>> {
    caller.require("read", "events")?;
    let since = query.since.unwrap_or(0);
    if since < 0 {
        return Err(HttpError::new(
            ErrorCode::InvalidSince,
            "since must not be negative",
        ));
    }
    let limit = match query.limit {
        None => 100,
        Some(n @ 1..=1000) => n,
        Some(n) => {
            return Err(HttpError::new(
                ErrorCode::InvalidLimit,
                format!("limit must be between 1 and 1000, got {n}"),
            ))
        }
    };
    let mut tx = read(&*state.store, &caller).await?;
    let mut data = tx.list_events(since, limit).await?;
    let last_seq = tx.last_event_seq().await?;
    let oldest_seq = tx.oldest_event_seq().await?;
    let resync_required = since < last_seq && since + 1 < oldest_seq.unwrap_or(last_seq + 1);
    let next_since = data.last().map_or(since, |e| e.seq);
    // The same rule as the sockets': the grant to read the record, or the spec's
    // routing of the event to the caller's app.
    data.retain(|e| {
        caller
            .permissions
            .allows("read", e.event.event_type.resource())
            || e.event.target.contains(&caller.source_app)
    });
    Ok(Json(EventLogPage {
        data,
        last_seq,
        next_since,
        resync_required,
        oldest_seq,
    }))
}

/// Query of `GET /audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries about this entity (at most 128 characters, no control characters).
    // The pattern is `validate::PRINTABLE_PATTERN`.
    #[param(max_length = 128, pattern = r#"^[^\u0000-\u001f\u007f-\u009f]*$"#)]
    pub entity_id: Option<String>,
    /// Page size, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Read the tenant's audit trail, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = "4XX", body = ErrorBody)))]
async fn audit_trail(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> HttpResult<Json<Page<AuditEntry>>> {
    caller.require("read", "audit")?;
    let limit = validate::limit(query.limit)?;
    let filter = AuditFilter {
        entity_id: validate::filter_id("entityId", query.entity_id, 128)?,
        before: decode_cursor(query.cursor.as_deref())?.map(AuditId),
        limit: limit + 1,
    };
    let rows = read(&*state.store, &caller)
        .await?
        .list_audit(&filter)
        .await?;
    Ok(Json(Page::from_rows(rows, limit, |e| e.id.0)))
}
