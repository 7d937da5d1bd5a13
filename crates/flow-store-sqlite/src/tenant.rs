//! One tenant's view of the database: every statement carries `tenant_id = $tenant`.

use async_trait::async_trait;
use flow_store::{
    Activity, ActivityFilter, ApiKey, ApiKeyId, AuditEntry, AuditFilter, AuditId, CommitNotice,
    Contact, ContactFilter, ContactId, CrossAppEvent, Deal, DealFilter, DealId, EventId, Lead,
    LeadFilter, LeadId, LoggedEvent, NewApiKey, NewAuditEntry, NewEvent, StoreError, StoreResult,
    TenantId, TenantRead, TenantTx,
};
use sqlx::{QueryBuilder, Sqlite, Transaction};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{
    internal, map_err, micros, now,
    rows::{ActivityRow, ApiKeyRow, AuditRow, ContactRow, DealRow, EventRow, LeadRow},
};

/// A transaction bound to one tenant; read-only when opened on the reader pool.
pub struct SqliteTenant {
    tenant: TenantId,
    tx: Transaction<'static, Sqlite>,
    /// Where write transactions announce the events they committed.
    notices: Option<broadcast::Sender<CommitNotice>>,
    appended: Vec<LoggedEvent>,
}

impl SqliteTenant {
    pub fn new(
        tenant: TenantId,
        tx: Transaction<'static, Sqlite>,
        notices: Option<broadcast::Sender<CommitNotice>>,
    ) -> Self {
        Self {
            tenant,
            tx,
            notices,
            appended: Vec::new(),
        }
    }

    /// Starts `SELECT * FROM table WHERE tenant_id = $tenant`, for filters to extend.
    fn select(&self, table: &str) -> QueryBuilder<'static, Sqlite> {
        let mut query = QueryBuilder::new(format!("SELECT * FROM {table} WHERE tenant_id = "));
        query.push_bind(self.tenant.0);
        query
    }

    async fn fetch_page<R, T>(
        &mut self,
        mut query: QueryBuilder<'static, Sqlite>,
        before: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<T>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        if let Some(before) = before {
            query.push(" AND id < ").push_bind(before);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        query
            .build_query_as::<R>()
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_err)?
            .into_iter()
            .map(T::try_from)
            .collect()
    }

    async fn fetch_one_by_id<R, T>(&mut self, table: &str, id: Uuid) -> StoreResult<T>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        let mut query = self.select(table);
        query.push(" AND id = ").push_bind(id);
        query
            .build_query_as::<R>()
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
            .and_then(T::try_from)
    }

    async fn execute_expecting_row<'q>(
        &mut self,
        query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> StoreResult<()> {
        let result = query.execute(&mut *self.tx).await.map_err(map_err)?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

fn push_text_search(query: &mut QueryBuilder<'static, Sqlite>, columns: &[&str], text: &str) {
    // LIKE with an explicit escape so user input never acts as a wildcard.
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    let pattern = format!("%{escaped}%");
    query.push(" AND (");
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        query.push(format!("{column} LIKE "));
        query.push_bind(pattern.clone());
        query.push(" ESCAPE '\\'");
    }
    query.push(")");
}

#[async_trait]
impl TenantRead for SqliteTenant {
    fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    async fn get_lead(&mut self, id: LeadId) -> StoreResult<Lead> {
        self.fetch_one_by_id::<LeadRow, _>("leads", id.0).await
    }

    async fn list_leads(&mut self, filter: &LeadFilter) -> StoreResult<Vec<Lead>> {
        let mut query = self.select("leads");
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(source) = &filter.source {
            query.push(" AND source = ").push_bind(source.clone());
        }
        if let Some(after) = filter.created_after {
            query.push(" AND created_at > ").push_bind(micros(after));
        }
        if let Some(text) = &filter.text {
            push_text_search(
                &mut query,
                &["first_name", "last_name", "email", "company", "phone"],
                text,
            );
        }
        self.fetch_page::<LeadRow, _>(query, filter.before.map(|id| id.0), filter.limit)
            .await
    }

    async fn count_leads_by_contact(&mut self, contact: ContactId) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM leads WHERE tenant_id = $1 AND contact_id = $2")
            .bind(self.tenant.0)
            .bind(contact.0)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(map_err)
    }

    async fn get_contact(&mut self, id: ContactId) -> StoreResult<Contact> {
        self.fetch_one_by_id::<ContactRow, _>("contacts", id.0)
            .await
    }

    async fn find_contact_by_email(&mut self, email: &str) -> StoreResult<Option<Contact>> {
        sqlx::query_as::<_, ContactRow>(
            "SELECT * FROM contacts WHERE tenant_id = $1 AND email = $2",
        )
        .bind(self.tenant.0)
        .bind(email)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_err)?
        .map(Contact::try_from)
        .transpose()
    }

    async fn list_contacts(&mut self, filter: &ContactFilter) -> StoreResult<Vec<Contact>> {
        let mut query = self.select("contacts");
        if let Some(email) = &filter.email {
            query.push(" AND email = ").push_bind(email.clone());
        }
        if let Some(text) = &filter.text {
            push_text_search(
                &mut query,
                &["first_name", "last_name", "email", "company", "phone"],
                text,
            );
        }
        self.fetch_page::<ContactRow, _>(query, filter.before.map(|id| id.0), filter.limit)
            .await
    }

    async fn list_activities(&mut self, filter: &ActivityFilter) -> StoreResult<Vec<Activity>> {
        let mut query = self.select("activities");
        if let Some(entity) = filter.entity_id {
            query.push(" AND entity_id = ").push_bind(entity);
        }
        if let Some(kind) = &filter.activity_type {
            query.push(" AND type = ").push_bind(kind.clone());
        }
        self.fetch_page::<ActivityRow, _>(query, filter.before.map(|id| id.0), filter.limit)
            .await
    }

    async fn get_deal(&mut self, id: DealId) -> StoreResult<Deal> {
        self.fetch_one_by_id::<DealRow, _>("deals", id.0).await
    }

    async fn list_deals(&mut self, filter: &DealFilter) -> StoreResult<Vec<Deal>> {
        let mut query = self.select("deals");
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(contact) = filter.contact_id {
            query.push(" AND contact_id = ").push_bind(contact.0);
        }
        self.fetch_page::<DealRow, _>(query, filter.before.map(|id| id.0), filter.limit)
            .await
    }

    async fn list_api_keys(&mut self) -> StoreResult<Vec<ApiKey>> {
        sqlx::query_as::<_, ApiKeyRow>("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY id")
            .bind(self.tenant.0)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(map_err)?
            .into_iter()
            .map(ApiKeyRow::into_key)
            .collect()
    }

    async fn list_audit(&mut self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let mut query = self.select("audit_log");
        if let Some(entity) = &filter.entity_id {
            query.push(" AND entity_id = ").push_bind(entity.clone());
        }
        self.fetch_page::<AuditRow, _>(query, filter.before.map(|id| id.0), filter.limit)
            .await
    }

    async fn list_events(&mut self, since: i64, limit: u32) -> StoreResult<Vec<LoggedEvent>> {
        sqlx::query_as::<_, EventRow>(
            "SELECT * FROM events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(self.tenant.0)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(map_err)?
        .into_iter()
        .map(LoggedEvent::try_from)
        .collect()
    }

    async fn oldest_event_seq(&mut self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(seq) FROM events WHERE tenant_id = $1")
            .bind(self.tenant.0)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(map_err)
    }

    async fn last_event_seq(&mut self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT event_seq FROM tenants WHERE id = $1")
            .bind(self.tenant.0)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(map_err)
            .map(Option::unwrap_or_default)
    }
}

#[async_trait]
impl TenantTx for SqliteTenant {
    async fn lock_lead(&mut self, id: LeadId) -> StoreResult<Lead> {
        // The write transaction already holds SQLite's single write lock.
        self.get_lead(id).await
    }

    async fn insert_lead(&mut self, lead: &Lead) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO leads (id, tenant_id, contact_id, first_name, last_name, email, phone,
                company, source, status, notes, assigned_to, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(lead.id.0)
        .bind(self.tenant.0)
        .bind(lead.contact_id.map(|c| c.0))
        .bind(&lead.first_name)
        .bind(&lead.last_name)
        .bind(&lead.email)
        .bind(&lead.phone)
        .bind(&lead.company)
        .bind(&lead.source)
        .bind(lead.status.as_str())
        .bind(&lead.notes)
        .bind(&lead.assigned_to)
        .bind(micros(lead.created_at))
        .bind(micros(lead.updated_at))
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(map_err)
    }

    async fn update_lead(&mut self, lead: &Lead) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_expecting_row(
            sqlx::query(
                "UPDATE leads SET contact_id = $1, first_name = $2, last_name = $3, email = $4,
                    phone = $5, company = $6, source = $7, status = $8, notes = $9,
                    assigned_to = $10, updated_at = $11
                 WHERE tenant_id = $12 AND id = $13",
            )
            .bind(lead.contact_id.map(|c| c.0))
            .bind(&lead.first_name)
            .bind(&lead.last_name)
            .bind(&lead.email)
            .bind(&lead.phone)
            .bind(&lead.company)
            .bind(&lead.source)
            .bind(lead.status.as_str())
            .bind(&lead.notes)
            .bind(&lead.assigned_to)
            .bind(micros(lead.updated_at))
            .bind(tenant)
            .bind(lead.id.0),
        )
        .await
    }

    async fn delete_lead(&mut self, id: LeadId) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_expecting_row(
            sqlx::query("DELETE FROM leads WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id.0),
        )
        .await
    }

    async fn move_leads(&mut self, from: ContactId, to: ContactId) -> StoreResult<u64> {
        sqlx::query("UPDATE leads SET contact_id = $1 WHERE tenant_id = $2 AND contact_id = $3")
            .bind(to.0)
            .bind(self.tenant.0)
            .bind(from.0)
            .execute(&mut *self.tx)
            .await
            .map(|r| r.rows_affected())
            .map_err(map_err)
    }

    async fn lock_contact(&mut self, id: ContactId) -> StoreResult<Contact> {
        self.get_contact(id).await
    }

    async fn insert_contact(&mut self, contact: &Contact) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO contacts (id, tenant_id, first_name, last_name, email, phone, company,
                source, consent, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(contact.id.0)
        .bind(self.tenant.0)
        .bind(&contact.first_name)
        .bind(&contact.last_name)
        .bind(&contact.email)
        .bind(&contact.phone)
        .bind(&contact.company)
        .bind(&contact.source)
        .bind(contact.consent)
        .bind(micros(contact.created_at))
        .bind(micros(contact.updated_at))
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(map_err)
    }

    async fn update_contact(&mut self, contact: &Contact) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_expecting_row(
            sqlx::query(
                "UPDATE contacts SET first_name = $1, last_name = $2, email = $3, phone = $4,
                    company = $5, source = $6, consent = $7, updated_at = $8
                 WHERE tenant_id = $9 AND id = $10",
            )
            .bind(&contact.first_name)
            .bind(&contact.last_name)
            .bind(&contact.email)
            .bind(&contact.phone)
            .bind(&contact.company)
            .bind(&contact.source)
            .bind(contact.consent)
            .bind(micros(contact.updated_at))
            .bind(tenant)
            .bind(contact.id.0),
        )
        .await
    }

    async fn delete_contact(&mut self, id: ContactId) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_expecting_row(
            sqlx::query("DELETE FROM contacts WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id.0),
        )
        .await
    }

    async fn insert_activity(&mut self, activity: &Activity) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO activities (id, tenant_id, type, entity_type, entity_id, description,
                data, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(activity.id.0)
        .bind(self.tenant.0)
        .bind(&activity.activity_type)
        .bind(activity.entity_type.as_str())
        .bind(activity.entity_id)
        .bind(&activity.description)
        .bind(activity.data.to_string())
        .bind(micros(activity.created_at))
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(map_err)
    }

    async fn move_activities(&mut self, from: Uuid, to: Uuid) -> StoreResult<u64> {
        sqlx::query("UPDATE activities SET entity_id = $1 WHERE tenant_id = $2 AND entity_id = $3")
            .bind(to)
            .bind(self.tenant.0)
            .bind(from)
            .execute(&mut *self.tx)
            .await
            .map(|r| r.rows_affected())
            .map_err(map_err)
    }

    async fn lock_deal(&mut self, id: DealId) -> StoreResult<Deal> {
        self.get_deal(id).await
    }

    async fn insert_deal(&mut self, deal: &Deal) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO deals (id, tenant_id, title, amount, currency, stage, status, contact_id,
                lead_id, closed_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(deal.id.0)
        .bind(self.tenant.0)
        .bind(&deal.title)
        .bind(deal.amount)
        .bind(&deal.currency)
        .bind(&deal.stage)
        .bind(deal.status.as_str())
        .bind(deal.contact_id.map(|c| c.0))
        .bind(deal.lead_id.map(|l| l.0))
        .bind(deal.closed_at.map(micros))
        .bind(micros(deal.created_at))
        .bind(micros(deal.updated_at))
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(map_err)
    }

    async fn update_deal(&mut self, deal: &Deal) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_expecting_row(
            sqlx::query(
                "UPDATE deals SET title = $1, amount = $2, currency = $3, stage = $4, status = $5,
                    contact_id = $6, lead_id = $7, closed_at = $8, updated_at = $9
                 WHERE tenant_id = $10 AND id = $11",
            )
            .bind(&deal.title)
            .bind(deal.amount)
            .bind(&deal.currency)
            .bind(&deal.stage)
            .bind(deal.status.as_str())
            .bind(deal.contact_id.map(|c| c.0))
            .bind(deal.lead_id.map(|l| l.0))
            .bind(deal.closed_at.map(micros))
            .bind(micros(deal.updated_at))
            .bind(tenant)
            .bind(deal.id.0),
        )
        .await
    }

    async fn move_deals(&mut self, from: ContactId, to: ContactId) -> StoreResult<u64> {
        sqlx::query("UPDATE deals SET contact_id = $1 WHERE tenant_id = $2 AND contact_id = $3")
            .bind(to.0)
            .bind(self.tenant.0)
            .bind(from.0)
            .execute(&mut *self.tx)
            .await
            .map(|r| r.rows_affected())
            .map_err(map_err)
    }

    async fn insert_api_key(&mut self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let stored = ApiKey {
            id: ApiKeyId::new(),
            tenant_id: self.tenant,
            name: key.name.clone(),
            prefix: key.prefix.clone(),
            permissions: key.permissions.clone(),
            allowed_apps: key.allowed_apps.clone(),
            rate_limit_per_minute: key.rate_limit_per_minute,
            active: true,
            created_at: now(),
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, permissions,
                allowed_apps, rate_limit_per_minute, active, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9)",
        )
        .bind(stored.id.0)
        .bind(self.tenant.0)
        .bind(&stored.name)
        .bind(&stored.prefix)
        .bind(&key.key_hash[..])
        .bind(serde_json::to_string(&stored.permissions).map_err(internal)?)
        .bind(serde_json::to_string(&stored.allowed_apps).map_err(internal)?)
        .bind(i64::from(stored.rate_limit_per_minute))
        .bind(micros(stored.created_at))
        .execute(&mut *self.tx)
        .await
        .map_err(map_err)?;
        Ok(stored)
    }

    async fn revoke_api_key(&mut self, id: ApiKeyId) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_expecting_row(
            sqlx::query("UPDATE api_keys SET active = 0 WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id.0),
        )
        .await
    }

    async fn insert_audit(&mut self, entry: &NewAuditEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, tenant_id, actor_type, actor_id, source_app, action,
                entity_type, entity_id, before, after, request_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(AuditId::new().0)
        .bind(self.tenant.0)
        .bind(&entry.actor.kind)
        .bind(&entry.actor.id)
        .bind(&entry.source_app)
        .bind(&entry.action)
        .bind(&entry.entity_type)
        .bind(&entry.entity_id)
        .bind(entry.before.as_ref().map(|v| v.to_string()))
        .bind(entry.after.as_ref().map(|v| v.to_string()))
        .bind(&entry.request_id)
        .bind(micros(now()))
        .execute(&mut *self.tx)
        .await
        .map(|_| ())
        .map_err(map_err)
    }

    async fn append_event(&mut self, event: &NewEvent) -> StoreResult<LoggedEvent> {
        // The counter row serialises a tenant's writers, so sequence order is commit order.
        let seq: i64 = sqlx::query_scalar(
            "UPDATE tenants SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
        )
        .bind(self.tenant.0)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
        let logged = LoggedEvent {
            seq,
            event: CrossAppEvent {
                id: EventId::new(),
                event_type: event.event_type,
                source: event.source.clone(),
                target: event
                    .event_type
                    .target_apps()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                tenant_id: self.tenant,
                timestamp: now(),
                data: event.data.clone(),
                priority: event.priority,
            },
        };
        let priority = serde_json::to_value(logged.event.priority).map_err(internal)?;
        sqlx::query(
            "INSERT INTO events (tenant_id, seq, id, type, source, target, data, priority, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(self.tenant.0)
        .bind(seq)
        .bind(logged.event.id.0)
        .bind(event.event_type.as_str())
        .bind(&event.source)
        .bind(serde_json::to_string(&logged.event.target).map_err(internal)?)
        .bind(event.data.to_string())
        .bind(priority.as_str().unwrap_or("medium"))
        .bind(micros(logged.event.timestamp))
        .execute(&mut *self.tx)
        .await
        .map_err(map_err)?;
        self.appended.push(logged.clone());
        Ok(logged)
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        let this = *self;
        this.tx.commit().await.map_err(map_err)?;
        if let (Some(notices), false) = (this.notices, this.appended.is_empty()) {
            // No receiver (no gateway running) is not an error.
            let _ = notices.send(CommitNotice {
                tenant_id: this.tenant,
                events: std::sync::Arc::new(this.appended),
            });
        }
        Ok(())
    }
}
