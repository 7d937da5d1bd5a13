//! `/admin/backups`: tenant exports.

use axum::{extract::State, http::StatusCode, Json};
use flow_app::processors;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::jobs::Accepted;
use crate::{
    auth::Authenticated,
    error::{ErrorBody, HttpResult},
    state::AppState,
};

/// The backups routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(start_backup))
}

/// Back up this tenant: a consistent JSON-lines export with a SHA-256 checksum file,
/// written under the data dir by the backup-operations queue; BACKUP_COMPLETED follows.
/// `flow restore` loads such a file into an empty tenant.
#[utoipa::path(post, path = "/admin/backups", tag = "admin",
    responses((status = 202, body = Accepted), (status = "4XX", body = ErrorBody)))]
async fn start_backup(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> HttpResult<(StatusCode, Json<Accepted>)> {
    let job = processors::backup::start(&*state.store, &state.work_signal, &caller).await?;
    Ok(Accepted::response(&job, format!("/jobs/{}", job.id)))
}
