//! A tenant's unit of work on behalf of a caller, and the small helpers every use case
//! shares (pages and cursors, snapshots for the audit trail).
//!
//! A write runs in one [`Work`]: its rows, its audit entry and its event commit together
//! or not at all.

use flow_store::{AuditAction, LoggedEvent, NewAuditEntry, NewEvent, Store, TenantRead, TenantTx};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

pub use flow_store::now;

use crate::{
    auth::Caller,
    error::{ApiError, ApiResult, ErrorCode},
};

/// One tenant write transaction on behalf of a caller.
pub struct Work<'c> {
    tx: Box<dyn TenantTx>,
    caller: &'c Caller,
    /// Appended at commit: taking sequence numbers last keeps the tenant's log, which
    /// every event-writing transaction of the tenant passes through, locked the shortest.
    events: Vec<NewEvent>,
}

/// What a change records: the audit entry's facts and, usually, an event.
pub struct Record {
    pub action: AuditAction,
    pub entity_type: &'static str,
    pub entity_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub event: Option<NewEvent>,
}

impl<'c> Work<'c> {
    /// Opens the caller's tenant for writing.
    pub async fn begin(store: &dyn Store, caller: &'c Caller) -> ApiResult<Self> {
        Ok(Self {
            tx: store.begin(caller.tenant_id).await?,
            caller,
            events: Vec::new(),
        })
    }

    /// The transaction, for reads and writes of rows.
    pub fn tx(&mut self) -> &mut dyn TenantTx {
        &mut *self.tx
    }

    /// The caller this work is done for.
    pub fn caller(&self) -> &'c Caller {
        self.caller
    }

    /// Writes the audit entry and queues the event, inside this transaction.
    pub async fn record(&mut self, record: Record) -> ApiResult<()> {
        self.tx
            .insert_audit(&NewAuditEntry {
                actor: self.caller.actor.clone(),
                source_app: self.caller.source_app.clone(),
                action: record.action.as_str().to_owned(),
                entity_type: record.entity_type.to_owned(),
                entity_id: record.entity_id,
                before: record.before,
                after: record.after,
                request_id: self.caller.request_id.clone(),
            })
            .await?;
        if let Some(event) = record.event {
            self.events.push(event);
        }
        Ok(())
    }

    /// Commits, returning the events this work appended.
    pub async fn commit(mut self) -> ApiResult<Vec<LoggedEvent>> {
        let logged = if self.events.is_empty() {
            Vec::new()
        } else {
            self.tx.append_events(&self.events).await?
        };
        self.tx.commit().await?;
        Ok(logged)
    }
}

/// Opens the caller's tenant for reading.
pub async fn read(store: &dyn Store, caller: &Caller) -> ApiResult<Box<dyn TenantRead>> {
    Ok(store.read(caller.tenant_id).await?)
}

/// Serialises a row for the audit trail.
pub fn snapshot<T: Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

/// One page of a list, newest first, and where the next one starts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, id_of: impl Fn(&T) -> Uuid) -> Self {
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|row| encode_cursor(id_of(row)))
        } else {
            None
        };
        Self {
            data: rows,
            next_cursor,
        }
    }
}

/// Cursors are opaque to clients: the last id of a page, as hex.
pub fn encode_cursor(id: Uuid) -> String {
    id.simple().to_string()
}

/// Reads a cursor made by [`encode_cursor`]; anything else is 400 `invalid_cursor`.
pub fn decode_cursor(cursor: Option<&str>) -> ApiResult<Option<Uuid>> {
    cursor
        .map(|c| {
            if c.len() != 32 {
                return Err(());
            }
            Uuid::try_parse(c).map_err(|_| ())
        })
        .transpose()
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidCursor,
                "cursor is not one this API issued",
            )
        })
}

/// For PATCH bodies: tells a field sent as `null` (clear it) from one not sent (keep it).
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}
