//! Deals: opportunities with a value that end won or lost.

use flow_store::{
    AuditAction, ContactId, Deal, DealFilter, DealId, DealStatus, EntityType, EventType, LeadId,
    NewEvent, Store,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::{activities::ensure_entity, decode_cursor, now, read, snapshot, Page, Record, Work};
use crate::{
    auth::Caller,
    error::{ApiError, ApiResult, ErrorCode},
    validate,
};

// The name `pattern`s below are the constants of `validate.rs` (`NAME_PATTERN`, ...), which
// explain them; `tests/it/schema.rs` (flow-server) checks they stay the same.

/// The currency rule of [`currency`] as an OpenAPI `pattern` (ECMA-262), repeated in the
/// `currency` attributes below: three letters. The server also upper-cases them.
pub const CURRENCY_PATTERN: &str = r#"^[A-Za-z]{3}$"#;

/// Body of `POST /deals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDeal {
    /// 1-200 characters, none of them ``< > ; { } " \ ` | $ =`` or a control character.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r#"^(?=\s*\S)[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub title: String,
    /// Value in minor units (øre, cents); not negative, at most 10^15.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub amount: i64,
    /// ISO 4217 code; defaults to DKK.
    #[schema(min_length = 3, max_length = 3, pattern = r#"^[A-Za-z]{3}$"#)]
    pub currency: Option<String>,
    /// At most 64 characters, with the characters of `title`.
    #[schema(
        max_length = 64,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub stage: Option<String>,
    pub contact_id: Option<ContactId>,
    pub lead_id: Option<LeadId>,
}

/// Body of `PATCH /deals/{id}`; `status` WON or LOST closes the deal, OPEN reopens it.
/// Each field has the limits of `CreateDeal`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateDeal {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r#"^(?=\s*\S)[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub title: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub amount: Option<i64>,
    #[schema(min_length = 3, max_length = 3, pattern = r#"^[A-Za-z]{3}$"#)]
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 64,
        pattern = r#"^[^<>;{}"\\`|$=\u0000-\u001f\u007f-\u009f]*$"#
    )]
    pub stage: Option<Option<String>>,
    pub status: Option<DealStatus>,
}

/// Query of `GET /deals`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeals {
    pub status: Option<DealStatus>,
    pub contact_id: Option<ContactId>,
    /// Page size, 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

fn amount(value: i64) -> ApiResult<i64> {
    if !(0..=1_000_000_000_000_000).contains(&value) {
        return Err(ApiError::validation(
            "amount must be between 0 and 10^15 minor units",
        ));
    }
    Ok(value)
}

fn currency(value: Option<&str>) -> ApiResult<String> {
    let value = value.unwrap_or("DKK").trim().to_uppercase();
    if value.len() != 3 || !value.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(ApiError::validation(
            "currency must be a three-letter ISO 4217 code",
        ));
    }
    Ok(value)
}

/// Opens a deal, optionally tied to a contact and a lead of the same tenant.
pub async fn create(store: &dyn Store, caller: &Caller, input: CreateDeal) -> ApiResult<Deal> {
    caller.require("write", "deals")?;
    let at = now();
    let deal = Deal {
        id: DealId::new(),
        tenant_id: caller.tenant_id,
        title: validate::name("title", &input.title, 200)?,
        amount: amount(input.amount)?,
        currency: currency(input.currency.as_deref())?,
        stage: validate::opt_name("stage", input.stage.as_deref(), 64)?,
        status: DealStatus::Open,
        contact_id: input.contact_id,
        lead_id: input.lead_id,
        closed_at: None,
        created_at: at,
        updated_at: at,
    };
    let mut work = Work::begin(store, caller).await?;
    if let Some(contact) = deal.contact_id {
        ensure_entity(work.tx(), EntityType::Contact, contact.0).await?;
    }
    if let Some(lead) = deal.lead_id {
        ensure_entity(work.tx(), EntityType::Lead, lead.0).await?;
    }
    work.tx().insert_deal(&deal).await?;
    work.record(Record {
        action: AuditAction::DealCreate,
        entity_type: "deal",
        entity_id: deal.id.to_string(),
        before: None,
        after: snapshot(&deal),
        event: Some(NewEvent::new(
            EventType::DealCreated,
            &caller.source_app,
            json!({ "deal": deal }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(deal)
}

/// One deal of the caller's tenant.
pub async fn get(store: &dyn Store, caller: &Caller, id: DealId) -> ApiResult<Deal> {
    caller.require("read", "deals")?;
    read(store, caller)
        .await?
        .get_deal(id)
        .await
        .map_err(|e| ApiError::from_store("deal", e))
}

/// A page of deals, newest first.
pub async fn list(store: &dyn Store, caller: &Caller, query: ListDeals) -> ApiResult<Page<Deal>> {
    caller.require("read", "deals")?;
    let limit = validate::limit(query.limit)?;
    let filter = DealFilter {
        status: query.status,
        contact_id: query.contact_id,
        before: decode_cursor(query.cursor.as_deref())?.map(DealId),
        limit: limit + 1,
    };
    let rows = read(store, caller).await?.list_deals(&filter).await?;
    Ok(Page::from_rows(rows, limit, |d| d.id.0))
}

/// Changes a deal; closing it as WON or LOST emits DEAL_WON or DEAL_LOST.
pub async fn update(
    store: &dyn Store,
    caller: &Caller,
    id: DealId,
    patch: UpdateDeal,
) -> ApiResult<Deal> {
    caller.require("write", "deals")?;
    let mut work = Work::begin(store, caller).await?;
    let before = work
        .tx()
        .lock_deal(id)
        .await
        .map_err(|e| ApiError::from_store("deal", e))?;
    let mut deal = before.clone();
    if let Some(title) = &patch.title {
        deal.title = validate::name("title", title, 200)?;
    }
    if let Some(value) = patch.amount {
        deal.amount = amount(value)?;
    }
    if let Some(code) = &patch.currency {
        deal.currency = currency(Some(code))?;
    }
    if let Some(stage) = &patch.stage {
        deal.stage = validate::opt_name("stage", stage.as_deref(), 64)?;
    }
    if let Some(status) = patch.status {
        let allowed = status == before.status
            || matches!(
                (before.status, status),
                (DealStatus::Open, _) | (_, DealStatus::Open)
            );
        if !allowed {
            return Err(ApiError::new(
                ErrorCode::InvalidStatusTransition,
                format!(
                    "a {} deal cannot become {}; reopen it first",
                    before.status.as_str(),
                    status.as_str()
                ),
            ));
        }
        deal.status = status;
        deal.closed_at = match status {
            DealStatus::Open => None,
            _ if before.status == status => before.closed_at,
            _ => Some(now()),
        };
    }
    let unchanged = deal.title == before.title
        && deal.amount == before.amount
        && deal.currency == before.currency
        && deal.stage == before.stage
        && deal.status == before.status;
    if unchanged {
        return Ok(before);
    }
    deal.updated_at = now();
    work.tx().update_deal(&deal).await?;
    let event_type = match (before.status, deal.status) {
        (DealStatus::Open, DealStatus::Won) => EventType::DealWon,
        (DealStatus::Open, DealStatus::Lost) => EventType::DealLost,
        _ => EventType::DealUpdated,
    };
    work.record(Record {
        action: AuditAction::DealUpdate,
        entity_type: "deal",
        entity_id: deal.id.to_string(),
        before: snapshot(&before),
        after: snapshot(&deal),
        event: Some(NewEvent::new(
            event_type,
            &caller.source_app,
            json!({ "deal": deal }),
        )),
    })
    .await?;
    work.commit().await?;
    Ok(deal)
}
