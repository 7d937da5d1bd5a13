//! Activities: calls, notes, meetings and system entries on leads, contacts and deals.

use flow_store::{
    Activity, ActivityFilter, ActivityId, AuditAction, EntityType, EventType, NewEvent, Store,
    TenantRead,
};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{decode_cursor, now, read, snapshot, Page, Record, Work};
use crate::{
    auth::Caller,
    error::{ApiError, ApiResult},
    validate,
};

/// The rule of [`activity_type`] as an OpenAPI `pattern` (ECMA-262), repeated in the
/// attributes below: a letter, then up to 39 letters, digits or `_`. The server also
/// upper-cases it (and so takes a few non-ASCII letters whose upper case is ASCII, `ß`
/// as `SS`), which the pattern does not describe.
pub const ACTIVITY_TYPE_PATTERN: &str = r#"^[A-Za-z][A-Za-z0-9_]{0,39}$"#;

/// Body of `POST /activities`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateActivity {
    /// Kind of activity, e.g. `CALL`, `EMAIL`, `MEETING`, `NOTE` (case-insensitive).
    /// 1-40 letters, digits or `_`, starting with a letter.
    #[serde(rename = "type")]
    #[schema(
        min_length = 1,
        max_length = 40,
        pattern = r#"^[A-Za-z][A-Za-z0-9_]{0,39}$"#
    )]
    pub activity_type: String,
    pub entity_type: EntityType,
    /// The lead, contact or deal the activity is about; it must exist in the tenant.
    pub entity_id: Uuid,
    /// At most 10,000 characters; line breaks and tabs are the only control characters.
    // The pattern is `validate::TEXT_PATTERN`.
    #[schema(
        max_length = 10000,
        pattern = r#"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"#
    )]
    pub description: Option<String>,
    /// Free-form details (a JSON object).
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// Query of `GET /activities`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListActivities {
    pub entity_id: Option<Uuid>,
    /// 1-40 letters, digits or `_`, starting with a letter (case-insensitive).
    #[serde(rename = "type")]
    #[param(
        rename = "type",
        min_length = 1,
        max_length = 40,
        pattern = r#"^[A-Za-z][A-Za-z0-9_]{0,39}$"#
    )]
    pub activity_type: Option<String>,
    /// Page size, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

fn activity_type(value: &str) -> ApiResult<String> {
    let value = value.trim().to_uppercase();
    let ok = (1..=40).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_uppercase())
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(ApiError::validation(
            "type must be 1-40 characters of A-Z, 0-9 and _, starting with a letter",
        ));
    }
    Ok(value)
}

/// 404 unless the entity exists in the caller's tenant.
pub async fn ensure_entity(
    tx: &mut dyn TenantRead,
    entity_type: EntityType,
    id: Uuid,
) -> ApiResult<()> {
    let found = match entity_type {
        EntityType::Lead => tx.get_lead(id.into()).await.map(drop),
        EntityType::Contact => tx.get_contact(id.into()).await.map(drop),
        EntityType::Deal => tx.get_deal(id.into()).await.map(drop),
        EntityType::Incident => tx.get_incident(id.into()).await.map(drop),
    };
    found.map_err(|e| ApiError::from_store(entity_type.as_str(), e))
}

/// Logs an activity on a lead, contact or deal.
pub async fn create(
    store: &dyn Store,
    caller: &Caller,
    input: CreateActivity,
) -> ApiResult<Activity> {
    caller.require("write", "activities")?;
    let data = match input.data {
        None => json!({}),
        Some(data @ Value::Object(_)) => data,
        Some(_) => return Err(ApiError::validation("data must be a JSON object")),
    };
    let activity = Activity {
        id: ActivityId::new(),
        tenant_id: caller.tenant_id,
        activity_type: activity_type(&input.activity_type)?,
        entity_type: input.entity_type,
        entity_id: input.entity_id,
        description: validate::text("description", input.description.as_deref(), 10_000)?,
        data,
        created_at: now(),
    };
    let mut work = Work::begin(store, caller).await?;
    ensure_entity(work.tx(), activity.entity_type, activity.entity_id).await?;
    work.tx().insert_activity(&activity).await?;
    work.record(Record {
        action: AuditAction::ActivityCreate,
        entity_type: "activity",
        entity_id: activity.id.to_string(),
        before: None,
        after: snapshot(&activity),
        event: Some(NewEvent::new(
            EventType::ActivityCreated,
            &caller.source_app,
            json!({ "activity": activity }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(activity)
}

/// A page of activities, newest first.
pub async fn list(
    store: &dyn Store,
    caller: &Caller,
    query: ListActivities,
) -> ApiResult<Page<Activity>> {
    caller.require("read", "activities")?;
    let limit = validate::limit(query.limit)?;
    let filter = ActivityFilter {
        entity_id: query.entity_id,
        activity_type: query
            .activity_type
            .as_deref()
            .map(activity_type)
            .transpose()?,
        before: decode_cursor(query.cursor.as_deref())?.map(ActivityId),
        limit: limit + 1,
    };
    let rows = read(store, caller).await?.list_activities(&filter).await?;
    Ok(Page::from_rows(rows, limit, |a| a.id.0))
}
