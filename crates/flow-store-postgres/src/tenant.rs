//! One tenant's transaction: `app.tenant_id` set for RLS, and `tenant_id = $1` in every
//! statement as well.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flow_store::{
    like_contains, now, Activity, ActivityFilter, ApiKey, ApiKeyId, AuditEntry, AuditFilter,
    AuditId, CommitNotice, Contact, ContactFilter, ContactId, Conversation, ConversationId,
    CrossAppEvent, DailyRollup, Deal, DealFilter, DealId, DealStatus, Incident, IncidentId, Job,
    JobId, JobState, Lead, LeadFilter, LeadId, LoggedEvent, NewApiKey, NewAuditEntry, NewEvent,
    NewJob, QueueCounts, RollupCounts, StoreError, StoreResult, TenantId, TenantRead, TenantTx,
    LIKE_ESCAPE,
};
use flow_store::{InvitationId, Member, NewInvitation, Role, TenantSlot, UserId};
use sqlx::{postgres::PgRow, Postgres, QueryBuilder, Transaction};
use uuid::Uuid;

use crate::{map_err, rows, PgStore};

/// A tenant's members: memberships (under RLS) joined with the platform's users.
const MEMBER_SELECT: &str = "SELECT u.id, u.email, u.name, m.role, m.created_at AS joined_at
     FROM memberships m JOIN users u ON u.id = m.user_id";

type Map<T> = fn(&PgRow) -> StoreResult<T>;

/// A transaction bound to one tenant.
pub struct PgTenant {
    tenant: TenantId,
    tx: Option<Transaction<'static, Postgres>>,
    store: PgStore,
    appended: Vec<LoggedEvent>,
    /// A key was revoked: the store's key cache is dropped once this commits.
    keys_changed: bool,
    /// Jobs became ready: the other instances' workers are woken once this commits.
    jobs_ready: bool,
    /// The tenant's share of the pool, held as long as the connection.
    _slot: TenantSlot,
}

impl PgTenant {
    /// Opens the tenant's transaction. `BEGIN` and setting the tenant travel in one round
    /// trip; `set_config(..., true)` lasts until the transaction ends, so a pooled
    /// connection never carries a tenant into its next use.
    pub async fn begin(store: &PgStore, tenant: TenantId, read_only: bool) -> StoreResult<Self> {
        // A read view is one snapshot, as on the embedded backend (a backup export relies on it).
        let mode = if read_only {
            " ISOLATION LEVEL REPEATABLE READ READ ONLY"
        } else {
            ""
        };
        let slot = store.slots.acquire(tenant).await?;
        // Within a request, a statement may not outlive the request: it gets what is left
        // of the request's time (at least 1 ms), if that is less than the usual bound.
        let statement_timeout = flow_store::time_left()
            .filter(|left| *left < store.options.statement_timeout)
            .map(|left| {
                format!(
                    ", set_config('statement_timeout', '{}ms', true)",
                    left.as_millis().max(1)
                )
            })
            .unwrap_or_default();
        // A Uuid formats as hex and dashes only: safe to inline.
        let begin = format!(
            "BEGIN{mode}; SELECT set_config('app.tenant_id', '{}', true){statement_timeout}",
            tenant.0
        );
        // In its own task: a request dropped while BEGIN is in flight would otherwise
        // return the connection to the pool inside a transaction sqlx does not know of
        // (the next user then fails on "read-only transaction" or an aborted one). The
        // task always finishes, and a Transaction it hands back to nobody rolls back.
        let pool = store.pool.clone();
        let tx = tokio::spawn(async move { pool.begin_with(begin).await })
            .await
            .map_err(|e| StoreError::Internal(format!("begin task failed: {e}")))?
            .map_err(map_err)?;
        Ok(Self {
            tenant,
            tx: Some(tx),
            store: store.clone(),
            appended: Vec::new(),
            keys_changed: false,
            jobs_ready: false,
            _slot: slot,
        })
    }

    fn conn(&mut self) -> &mut sqlx::PgConnection {
        self.tx
            .as_deref_mut()
            .expect("a committed transaction is not used again")
    }

    /// `SELECT * FROM table WHERE tenant_id = $1`, ready for more conditions.
    fn select(&self, table: &str) -> QueryBuilder<'static, Postgres> {
        let mut query = QueryBuilder::new(format!("SELECT * FROM {table} WHERE tenant_id = "));
        query.push_bind(self.tenant.0);
        query
    }

    async fn one<T>(&mut self, table: &str, id: Uuid, map: Map<T>) -> StoreResult<T> {
        self.fetch_row(table, id, "", map).await
    }

    /// Locks the row for the rest of the transaction (read-modify-write).
    async fn lock<T>(&mut self, table: &str, id: Uuid, map: Map<T>) -> StoreResult<T> {
        self.fetch_row(table, id, " FOR UPDATE", map).await
    }

    async fn fetch_row<T>(
        &mut self,
        table: &str,
        id: Uuid,
        locking: &str,
        map: Map<T>,
    ) -> StoreResult<T> {
        let sql = format!("SELECT * FROM {table} WHERE tenant_id = $1 AND id = $2{locking}");
        let tenant = self.tenant.0;
        let row = sqlx::query(&sql)
            .bind(tenant)
            .bind(id)
            .fetch_one(self.conn())
            .await
            .map_err(map_err)?;
        map(&row)
    }

    /// Newest first, keyset paged by id.
    async fn page<T>(
        &mut self,
        mut query: QueryBuilder<'static, Postgres>,
        before: Option<Uuid>,
        limit: u32,
        map: Map<T>,
    ) -> StoreResult<Vec<T>> {
        if let Some(before) = before {
            query.push(" AND id < ").push_bind(before);
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        self.all(query, map).await
    }

    async fn all<T>(
        &mut self,
        mut query: QueryBuilder<'static, Postgres>,
        map: Map<T>,
    ) -> StoreResult<Vec<T>> {
        if let Some(plans) = self.store.options.plans_for_tests.clone() {
            let sql = query.sql().to_owned();
            let mut built = query.build();
            let arguments = sqlx::Execute::take_arguments(&mut built)
                .map_err(|e| StoreError::Internal(e.to_string()))?
                .unwrap_or_default();
            let plan: Vec<String> =
                sqlx::query_scalar_with(&format!("EXPLAIN {sql}"), arguments.clone())
                    .fetch_all(self.conn())
                    .await
                    .map_err(map_err)?;
            plans.record(plan.join("\n"));
            let rows = sqlx::query_with(&sql, arguments)
                .fetch_all(self.conn())
                .await
                .map_err(map_err)?;
            return rows.iter().map(map).collect();
        }
        let rows = query
            .build()
            .fetch_all(self.conn())
            .await
            .map_err(map_err)?;
        rows.iter().map(map).collect()
    }

    /// Runs a write; returns how many rows it touched.
    async fn execute(
        &mut self,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> StoreResult<u64> {
        query
            .execute(self.conn())
            .await
            .map(|done| done.rows_affected())
            .map_err(map_err)
    }

    /// Runs an UPDATE or DELETE that must hit a row of this tenant.
    async fn execute_one(
        &mut self,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> StoreResult<()> {
        match self.execute(query).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn grouped(
        &mut self,
        sql: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<std::collections::BTreeMap<String, u64>> {
        let tenant = self.tenant.0;
        let rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(tenant)
            .bind(from)
            .bind(to)
            .fetch_all(self.conn())
            .await
            .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .map(|(k, n)| (k, n.max(0) as u64))
            .collect())
    }

    /// Counts rows of the window; `value`, if any, is bound as `$4`.
    async fn count(
        &mut self,
        sql: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        value: Option<&'static str>,
    ) -> StoreResult<u64> {
        let tenant = self.tenant.0;
        let mut query = sqlx::query_scalar(sql).bind(tenant).bind(from).bind(to);
        if let Some(value) = value {
            query = query.bind(value);
        }
        let n: i64 = query.fetch_one(self.conn()).await.map_err(map_err)?;
        Ok(n.max(0) as u64)
    }
}

/// Matches `text` in any of `columns`, ignoring case like SQLite's LIKE, never as a
/// pattern (see `like_contains`).
fn text_search(query: &mut QueryBuilder<'static, Postgres>, columns: &[&str], text: &str) {
    let pattern = like_contains(text);
    query.push(" AND (");
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        query
            .push(format!("{column} ILIKE "))
            .push_bind(pattern.clone())
            .push(format!(" ESCAPE '{LIKE_ESCAPE}'"));
    }
    query.push(")");
}

#[async_trait]
impl TenantRead for PgTenant {
    fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    async fn get_lead(&mut self, id: LeadId) -> StoreResult<Lead> {
        self.one("leads", id.0, rows::lead).await
    }

    async fn list_leads(&mut self, filter: &LeadFilter) -> StoreResult<Vec<Lead>> {
        let mut query = if self.store.options.unfiltered_lead_list_for_tests {
            QueryBuilder::new("SELECT * FROM leads WHERE true")
        } else {
            self.select("leads")
        };
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(source) = &filter.source {
            query.push(" AND source = ").push_bind(source.clone());
        }
        if let Some(email) = &filter.email {
            query.push(" AND email = ").push_bind(email.clone());
        }
        if let Some(after) = filter.created_after {
            query.push(" AND created_at > ").push_bind(after);
        }
        if let Some(text) = &filter.text {
            text_search(&mut query, LeadFilter::TEXT_FIELDS, text);
        }
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::lead,
        )
        .await
    }

    async fn get_contact(&mut self, id: ContactId) -> StoreResult<Contact> {
        self.one("contacts", id.0, rows::contact).await
    }

    async fn find_contact_by_email(&mut self, email: &str) -> StoreResult<Option<Contact>> {
        let tenant = self.tenant.0;
        let row = sqlx::query("SELECT * FROM contacts WHERE tenant_id = $1 AND email = $2")
            .bind(tenant)
            .bind(email)
            .fetch_optional(self.conn())
            .await
            .map_err(map_err)?;
        row.map(|row| rows::contact(&row)).transpose()
    }

    async fn list_contacts(&mut self, filter: &ContactFilter) -> StoreResult<Vec<Contact>> {
        let mut query = self.select("contacts");
        if let Some(email) = &filter.email {
            query.push(" AND email = ").push_bind(email.clone());
        }
        if let Some(text) = &filter.text {
            text_search(&mut query, ContactFilter::TEXT_FIELDS, text);
        }
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::contact,
        )
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
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::activity,
        )
        .await
    }

    async fn get_deal(&mut self, id: DealId) -> StoreResult<Deal> {
        self.one("deals", id.0, rows::deal).await
    }

    async fn list_deals(&mut self, filter: &DealFilter) -> StoreResult<Vec<Deal>> {
        let mut query = self.select("deals");
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(contact) = filter.contact_id {
            query.push(" AND contact_id = ").push_bind(contact.0);
        }
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::deal,
        )
        .await
    }

    async fn list_api_keys(&mut self) -> StoreResult<Vec<ApiKey>> {
        let mut query = self.select("api_keys");
        query.push(" ORDER BY id");
        self.all(query, rows::api_key).await
    }

    async fn list_members(&mut self) -> StoreResult<Vec<Member>> {
        let mut query = QueryBuilder::new(format!("{MEMBER_SELECT} WHERE m.tenant_id = "));
        query
            .push_bind(self.tenant.0)
            .push(" ORDER BY m.created_at, u.id");
        self.all(query, rows::member).await
    }

    async fn get_member(&mut self, user: UserId) -> StoreResult<Member> {
        let tenant = self.tenant.0;
        let row = sqlx::query(&format!(
            "{MEMBER_SELECT} WHERE m.tenant_id = $1 AND m.user_id = $2"
        ))
        .bind(tenant)
        .bind(user.0)
        .fetch_one(self.conn())
        .await
        .map_err(map_err)?;
        rows::member(&row)
    }

    async fn list_audit(&mut self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let mut query = self.select("audit_log");
        if let Some(entity) = &filter.entity_id {
            query.push(" AND entity_id = ").push_bind(entity.clone());
        }
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::audit,
        )
        .await
    }

    async fn list_events(&mut self, since: i64, limit: u32) -> StoreResult<Vec<LoggedEvent>> {
        let mut query = self.select("events");
        query
            .push(" AND seq > ")
            .push_bind(since)
            .push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(limit));
        self.all(query, rows::event).await
    }

    async fn last_event_seq(&mut self) -> StoreResult<i64> {
        let tenant = self.tenant.0;
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM event_counters WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_optional(self.conn())
                .await
                .map_err(map_err)?;
        Ok(seq.unwrap_or_default())
    }

    async fn oldest_event_seq(&mut self) -> StoreResult<Option<i64>> {
        let tenant = self.tenant.0;
        sqlx::query_scalar("SELECT MIN(seq) FROM events WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(self.conn())
            .await
            .map_err(map_err)
    }

    async fn get_incident(&mut self, id: IncidentId) -> StoreResult<Incident> {
        self.one("incidents", id.0, rows::incident).await
    }

    async fn list_incidents(
        &mut self,
        status: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Incident>> {
        let mut query = self.select("incidents");
        if let Some(status) = status {
            query.push(" AND status = ").push_bind(status.to_owned());
        }
        self.page(query, None, limit, rows::incident).await
    }

    async fn compute_rollup(
        &mut self,
        day: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<DailyRollup> {
        let leads_by_status = self
            .grouped(
                "SELECT status, COUNT(*) FROM leads WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 GROUP BY status",
                from,
                to,
            )
            .await?;
        let leads_by_source = self
            .grouped(
                "SELECT source, COUNT(*) FROM leads WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 GROUP BY source",
                from,
                to,
            )
            .await?;
        let activities = self
            .count(
                "SELECT COUNT(*) FROM activities WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3",
                from,
                to,
                None,
            )
            .await?;
        // Names from flow-store are bound as `$4`, not spelled into the SQL, so the rollup
        // counts what the rest of Flow writes.
        let voice_commands = self
            .count(
                "SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND action = $4",
                from,
                to,
                Some(DailyRollup::VOICE_COMMAND_ACTION),
            )
            .await?;
        let deals_won = self
            .count(
                "SELECT COUNT(*) FROM deals WHERE tenant_id = $1 AND closed_at >= $2 AND closed_at < $3 AND status = $4",
                from,
                to,
                Some(DealStatus::Won.as_str()),
            )
            .await?;
        let counts = RollupCounts {
            leads_by_status,
            leads_by_source,
            activities,
            voice_commands,
            deals_won,
        };
        Ok(DailyRollup::from_counts(day, counts))
    }

    async fn list_rollups(&mut self, from: &str, to: &str) -> StoreResult<Vec<DailyRollup>> {
        let mut query = self.select("daily_rollups");
        query
            .push(" AND day >= ")
            .push_bind(from.to_owned())
            .push(" AND day <= ")
            .push_bind(to.to_owned())
            .push(" ORDER BY day");
        self.all(query, rows::rollup).await
    }

    async fn get_conversation(&mut self, id: ConversationId) -> StoreResult<Conversation> {
        self.one("conversations", id.0, rows::conversation).await
    }

    async fn list_conversations(
        &mut self,
        before: Option<ConversationId>,
        limit: u32,
    ) -> StoreResult<Vec<Conversation>> {
        let query = self.select("conversations");
        self.page(query, before.map(|id| id.0), limit, rows::conversation)
            .await
    }

    async fn get_job(&mut self, id: JobId) -> StoreResult<Job> {
        self.one("jobs", id.0, rows::job).await
    }

    async fn list_jobs(
        &mut self,
        queue: &str,
        state: Option<JobState>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let mut query = self.select("jobs");
        query.push(" AND queue = ").push_bind(queue.to_owned());
        if let Some(state) = state {
            query.push(" AND state = ").push_bind(state.as_str());
        }
        self.page(query, None, limit, rows::job).await
    }

    async fn queue_counts(&mut self, now: DateTime<Utc>) -> StoreResult<Vec<QueueCounts>> {
        let tenant = self.tenant.0;
        let minute_ago = QueueCounts::last_minute_start(now);
        let rows = sqlx::query(
            "SELECT queue,
                COUNT(*) FILTER (WHERE state = 'ready' AND run_at <= $2) AS ready,
                COUNT(*) FILTER (WHERE state = 'ready' AND run_at > $2) AS delayed,
                COUNT(*) FILTER (WHERE state = 'running') AS running,
                COUNT(*) FILTER (WHERE state = 'completed') AS completed,
                COUNT(*) FILTER (WHERE state = 'dead') AS dead,
                COUNT(*) FILTER (WHERE state = 'completed' AND finished_at >= $3) AS completed_last_minute,
                EXTRACT(EPOCH FROM ($2 - MIN(run_at) FILTER (WHERE state = 'ready' AND run_at <= $2)))::float8
                    AS oldest_ready_age
             FROM jobs WHERE tenant_id = $1 GROUP BY queue ORDER BY queue",
        )
        .bind(tenant)
        .bind(now)
        .bind(minute_ago)
        .fetch_all(self.conn())
        .await
        .map_err(map_err)?;
        rows.iter().map(rows::queue_counts).collect()
    }
}

#[async_trait]
impl TenantTx for PgTenant {
    async fn lock_lead(&mut self, id: LeadId) -> StoreResult<Lead> {
        self.lock("leads", id.0, rows::lead).await
    }

    async fn insert_lead(&mut self, lead: &Lead) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "INSERT INTO leads (id, tenant_id, contact_id, first_name, last_name, email, phone,
                    company, source, status, notes, assigned_to, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(lead.id.0)
            .bind(tenant)
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
            .bind(lead.created_at)
            .bind(lead.updated_at),
        )
        .await
        .map(drop)
    }

    async fn update_lead(&mut self, lead: &Lead) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
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
            .bind(lead.updated_at)
            .bind(tenant)
            .bind(lead.id.0),
        )
        .await
    }

    async fn delete_lead(&mut self, id: LeadId) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
            sqlx::query("DELETE FROM leads WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id.0),
        )
        .await
    }

    async fn move_leads(&mut self, from: ContactId, to: ContactId) -> StoreResult<u64> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "UPDATE leads SET contact_id = $1 WHERE tenant_id = $2 AND contact_id = $3",
            )
            .bind(to.0)
            .bind(tenant)
            .bind(from.0),
        )
        .await
    }

    async fn lock_contact(&mut self, id: ContactId) -> StoreResult<Contact> {
        self.lock("contacts", id.0, rows::contact).await
    }

    async fn insert_contact(&mut self, contact: &Contact) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "INSERT INTO contacts (id, tenant_id, first_name, last_name, email, phone, company,
                    source, consent, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(contact.id.0)
            .bind(tenant)
            .bind(&contact.first_name)
            .bind(&contact.last_name)
            .bind(&contact.email)
            .bind(&contact.phone)
            .bind(&contact.company)
            .bind(&contact.source)
            .bind(contact.consent)
            .bind(contact.created_at)
            .bind(contact.updated_at),
        )
        .await
        .map(drop)
    }

    async fn update_contact(&mut self, contact: &Contact) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
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
            .bind(contact.updated_at)
            .bind(tenant)
            .bind(contact.id.0),
        )
        .await
    }

    async fn delete_contact(&mut self, id: ContactId) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
            sqlx::query("DELETE FROM contacts WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id.0),
        )
        .await
    }

    async fn insert_activity(&mut self, activity: &Activity) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "INSERT INTO activities (id, tenant_id, type, entity_type, entity_id, description,
                    data, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(activity.id.0)
            .bind(tenant)
            .bind(&activity.activity_type)
            .bind(activity.entity_type.as_str())
            .bind(activity.entity_id)
            .bind(&activity.description)
            .bind(&activity.data)
            .bind(activity.created_at),
        )
        .await
        .map(drop)
    }

    async fn move_activities(&mut self, from: Uuid, to: Uuid) -> StoreResult<u64> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "UPDATE activities SET entity_id = $1 WHERE tenant_id = $2 AND entity_id = $3",
            )
            .bind(to)
            .bind(tenant)
            .bind(from),
        )
        .await
    }

    async fn lock_deal(&mut self, id: DealId) -> StoreResult<Deal> {
        self.lock("deals", id.0, rows::deal).await
    }

    async fn insert_deal(&mut self, deal: &Deal) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "INSERT INTO deals (id, tenant_id, title, amount, currency, stage, status, contact_id,
                    lead_id, closed_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(deal.id.0)
            .bind(tenant)
            .bind(&deal.title)
            .bind(deal.amount)
            .bind(&deal.currency)
            .bind(&deal.stage)
            .bind(deal.status.as_str())
            .bind(deal.contact_id.map(|c| c.0))
            .bind(deal.lead_id.map(|l| l.0))
            .bind(deal.closed_at)
            .bind(deal.created_at)
            .bind(deal.updated_at),
        )
        .await
        .map(drop)
    }

    async fn update_deal(&mut self, deal: &Deal) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
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
            .bind(deal.closed_at)
            .bind(deal.updated_at)
            .bind(tenant)
            .bind(deal.id.0),
        )
        .await
    }

    async fn move_deals(&mut self, from: ContactId, to: ContactId) -> StoreResult<u64> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "UPDATE deals SET contact_id = $1 WHERE tenant_id = $2 AND contact_id = $3",
            )
            .bind(to.0)
            .bind(tenant)
            .bind(from.0),
        )
        .await
    }

    async fn insert_api_key(&mut self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let stored = ApiKey::new(self.tenant, key);
        let rate = i32::try_from(stored.rate_limit_per_minute).map_err(StoreError::internal)?;
        self.execute(
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, permissions,
                    allowed_apps, rate_limit_per_minute, active, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9)",
            )
            .bind(stored.id.0)
            .bind(stored.tenant_id.0)
            .bind(&stored.name)
            .bind(&stored.prefix)
            .bind(&key.key_hash[..])
            .bind(&stored.permissions)
            .bind(&stored.allowed_apps)
            .bind(rate)
            .bind(stored.created_at),
        )
        .await?;
        Ok(stored)
    }

    async fn revoke_api_key(&mut self, id: ApiKeyId) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
            sqlx::query("UPDATE api_keys SET active = false WHERE tenant_id = $1 AND id = $2")
                .bind(tenant)
                .bind(id.0),
        )
        .await?;
        self.keys_changed = true;
        Ok(())
    }

    async fn insert_audit(&mut self, entry: &NewAuditEntry) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "INSERT INTO audit_log (id, tenant_id, actor_type, actor_id, source_app, action,
                    entity_type, entity_id, before, after, request_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(AuditId::new().0)
            .bind(tenant)
            .bind(entry.actor.kind.as_str())
            .bind(&entry.actor.id)
            .bind(&entry.source_app)
            .bind(&entry.action)
            .bind(&entry.entity_type)
            .bind(&entry.entity_id)
            .bind(&entry.before)
            .bind(&entry.after)
            .bind(&entry.request_id)
            .bind(now()),
        )
        .await
        .map(drop)
    }

    async fn upsert_member(&mut self, user: UserId, role: Role) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
            )
            .bind(tenant)
            .bind(user.0)
            .bind(role.as_str())
            .bind(now()),
        )
        .await
        .map(drop)
    }

    async fn lock_members(&mut self) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query("SELECT 1 FROM memberships WHERE tenant_id = $1 FOR UPDATE").bind(tenant),
        )
        .await
        .map(drop)
    }

    async fn replace_invitation(&mut self, new: &NewInvitation) -> StoreResult<()> {
        let tenant = self.tenant.0;
        let invitation = &new.invitation;
        self.execute(
            sqlx::query(
                "DELETE FROM invitations WHERE tenant_id = $1 AND email = $2 AND accepted_at IS NULL",
            )
            .bind(tenant)
            .bind(&invitation.email),
        )
        .await?;
        self.execute(
            sqlx::query(
                "INSERT INTO invitations (id, tenant_id, email, role, invited_by, token_hash,
                                          created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(invitation.id.0)
            .bind(tenant)
            .bind(&invitation.email)
            .bind(invitation.role.as_str())
            .bind(&invitation.invited_by)
            .bind(&new.token_hash[..])
            .bind(invitation.created_at)
            .bind(invitation.expires_at),
        )
        .await
        .map(drop)
    }

    async fn accept_invitation(&mut self, id: InvitationId) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
            sqlx::query(
                "UPDATE invitations SET accepted_at = $3
                 WHERE tenant_id = $1 AND id = $2 AND accepted_at IS NULL AND expires_at > $3",
            )
            .bind(tenant)
            .bind(id.0)
            .bind(now()),
        )
        .await
    }

    async fn delete_member(&mut self, user: UserId) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
            sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant)
                .bind(user.0),
        )
        .await
    }

    async fn save_rollup(&mut self, rollup: &DailyRollup) -> StoreResult<()> {
        let tenant = self.tenant.0;
        let data = serde_json::to_value(rollup).map_err(StoreError::internal)?;
        self.execute(
            sqlx::query(
                "INSERT INTO daily_rollups (tenant_id, day, data) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id, day) DO UPDATE SET data = excluded.data",
            )
            .bind(tenant)
            .bind(&rollup.day)
            .bind(data),
        )
        .await
        .map(drop)
    }

    async fn lock_conversation(&mut self, id: ConversationId) -> StoreResult<Conversation> {
        self.lock("conversations", id.0, rows::conversation).await
    }

    async fn insert_conversation(&mut self, conversation: &Conversation) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "INSERT INTO conversations (id, tenant_id, title, language, transcript, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(conversation.id.0)
            .bind(tenant)
            .bind(&conversation.title)
            .bind(&conversation.language)
            .bind(&conversation.transcript)
            .bind(conversation.created_at)
            .bind(conversation.updated_at),
        )
        .await
        .map(drop)
    }

    async fn update_conversation(&mut self, conversation: &Conversation) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
            sqlx::query(
                "UPDATE conversations SET title = $1, language = $2, transcript = $3, updated_at = $4
                 WHERE tenant_id = $5 AND id = $6",
            )
            .bind(&conversation.title)
            .bind(&conversation.language)
            .bind(&conversation.transcript)
            .bind(conversation.updated_at)
            .bind(tenant)
            .bind(conversation.id.0),
        )
        .await
    }

    async fn insert_incident(&mut self, incident: &Incident) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute(
            sqlx::query(
                "INSERT INTO incidents (id, tenant_id, type, severity, description, status,
                    reported_by, resolution, created_at, updated_at, resolved_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(incident.id.0)
            .bind(tenant)
            .bind(&incident.incident_type)
            .bind(incident.severity.as_str())
            .bind(&incident.description)
            .bind(incident.status.as_str())
            .bind(&incident.reported_by)
            .bind(&incident.resolution)
            .bind(incident.created_at)
            .bind(incident.updated_at)
            .bind(incident.resolved_at),
        )
        .await
        .map(drop)
    }

    async fn update_incident(&mut self, incident: &Incident) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
            sqlx::query(
                "UPDATE incidents SET status = $1, resolution = $2, updated_at = $3, resolved_at = $4
                 WHERE tenant_id = $5 AND id = $6",
            )
            .bind(incident.status.as_str())
            .bind(&incident.resolution)
            .bind(incident.updated_at)
            .bind(incident.resolved_at)
            .bind(tenant)
            .bind(incident.id.0),
        )
        .await
    }

    async fn enqueue_job(&mut self, job: &NewJob) -> StoreResult<(Job, bool)> {
        let tenant = self.tenant.0;
        let at = now();
        // ON CONFLICT DO NOTHING returns no row for a repeated idempotency key; the
        // earlier job is then read back.
        let inserted = sqlx::query(
            "WITH inserted AS (
                INSERT INTO jobs (id, tenant_id, queue, kind, payload, priority, queue_priority,
                    state, max_attempts, run_at, idempotency_key, created_at, updated_at, owner)
                VALUES ($1, $2, $3, $4, $5, $6, $7, 'ready', $8, $9, $10, $11, $11, $12)
                ON CONFLICT (tenant_id, queue, idempotency_key) WHERE idempotency_key IS NOT NULL
                    DO NOTHING
                RETURNING *
             )
             SELECT * FROM inserted",
        )
        .bind(JobId::new().0)
        .bind(tenant)
        .bind(&job.queue)
        .bind(&job.kind)
        .bind(&job.payload)
        .bind(job.priority)
        .bind(job.queue_priority)
        .bind(job.max_attempts as i32)
        .bind(job.run_at)
        .bind(&job.idempotency_key)
        .bind(at)
        .bind(owner_json(job)?)
        .fetch_optional(self.conn())
        .await
        .map_err(map_err)?;
        if let Some(row) = inserted {
            self.jobs_ready = true;
            return Ok((rows::job(&row)?, true));
        }
        let row = sqlx::query(
            "SELECT * FROM jobs WHERE tenant_id = $1 AND queue = $2 AND idempotency_key = $3",
        )
        .bind(tenant)
        .bind(&job.queue)
        .bind(&job.idempotency_key)
        .fetch_one(self.conn())
        .await
        .map_err(map_err)?;
        Ok((rows::job(&row)?, false))
    }

    async fn enqueue_jobs(&mut self, jobs: &[NewJob]) -> StoreResult<Vec<(Job, bool)>> {
        if jobs.len() < 2 {
            let mut enqueued = Vec::with_capacity(1);
            for job in jobs {
                enqueued.push(self.enqueue_job(job).await?);
            }
            return Ok(enqueued);
        }
        let tenant = self.tenant.0;
        let at = now();
        let ids: Vec<Uuid> = jobs.iter().map(|_| JobId::new().0).collect();
        // One statement for the whole batch: columns as arrays, unnested into rows.
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, tenant_id, queue, kind, payload, priority, queue_priority,
                 state, max_attempts, run_at, idempotency_key, created_at, updated_at, owner)
             SELECT t.id, $1, t.queue, t.kind, t.payload, t.priority, t.queue_priority, 'ready',
                    t.max_attempts, t.run_at, t.idempotency_key, $2, $2, t.owner
             FROM unnest($3::uuid[], $4::text[], $5::text[], $6::jsonb[], $7::int[], $8::int[],
                         $9::int[], $10::timestamptz[], $11::text[], $12::jsonb[])
                  WITH ORDINALITY AS t(id, queue, kind, payload, priority, queue_priority,
                                       max_attempts, run_at, idempotency_key, owner, ord)
             ORDER BY t.ord
             ON CONFLICT (tenant_id, queue, idempotency_key) WHERE idempotency_key IS NOT NULL
                 DO NOTHING
             RETURNING *",
        )
        .bind(tenant)
        .bind(at)
        .bind(&ids)
        .bind(jobs.iter().map(|j| j.queue.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.kind.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.payload.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.queue_priority).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.max_attempts as i32)
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.idempotency_key.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(owner_json)
                .collect::<StoreResult<Vec<_>>>()?,
        )
        .fetch_all(self.conn())
        .await
        .map_err(map_err)?;
        let mut by_id: std::collections::HashMap<Uuid, Job> = inserted
            .iter()
            .map(|row| rows::job(row).map(|job| (job.id.0, job)))
            .collect::<StoreResult<_>>()?;
        self.jobs_ready |= !by_id.is_empty();
        let mut enqueued = Vec::with_capacity(jobs.len());
        for (job, id) in jobs.iter().zip(ids) {
            match by_id.remove(&id) {
                Some(created) => enqueued.push((created, true)),
                // An idempotency key seen before (possibly earlier in this batch).
                None => {
                    let row = sqlx::query(
                        "SELECT * FROM jobs WHERE tenant_id = $1 AND queue = $2 AND idempotency_key = $3",
                    )
                    .bind(tenant)
                    .bind(&job.queue)
                    .bind(&job.idempotency_key)
                    .fetch_one(self.conn())
                    .await
                    .map_err(map_err)?;
                    enqueued.push((rows::job(&row)?, false));
                }
            }
        }
        Ok(enqueued)
    }

    async fn set_job_progress(
        &mut self,
        id: JobId,
        attempt: u32,
        progress: &serde_json::Value,
    ) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
            sqlx::query(
                "UPDATE jobs SET progress = $1, updated_at = $2
                 WHERE tenant_id = $3 AND id = $4 AND state = 'running' AND attempts = $5",
            )
            .bind(progress)
            .bind(now())
            .bind(tenant)
            .bind(id.0)
            .bind(attempt as i32),
        )
        .await
    }

    async fn requeue_job(&mut self, id: JobId, run_at: DateTime<Utc>) -> StoreResult<Job> {
        let tenant = self.tenant.0;
        let row = sqlx::query(
            "UPDATE jobs SET state = 'ready', attempts = 0, run_at = $1, finished_at = NULL,
                updated_at = $2
             WHERE tenant_id = $3 AND id = $4 AND state = 'dead'
             RETURNING *",
        )
        .bind(run_at)
        .bind(now())
        .bind(tenant)
        .bind(id.0)
        .fetch_one(self.conn())
        .await
        .map_err(map_err)?;
        self.jobs_ready = true;
        rows::job(&row)
    }

    async fn delete_dead_job(&mut self, id: JobId) -> StoreResult<()> {
        let tenant = self.tenant.0;
        self.execute_one(
            sqlx::query("DELETE FROM jobs WHERE tenant_id = $1 AND id = $2 AND state = 'dead'")
                .bind(tenant)
                .bind(id.0),
        )
        .await
    }

    async fn append_event(&mut self, event: &NewEvent) -> StoreResult<LoggedEvent> {
        let mut logged = self.append_events(std::slice::from_ref(event)).await?;
        logged.pop().ok_or(StoreError::NotFound)
    }

    async fn append_events(&mut self, events: &[NewEvent]) -> StoreResult<Vec<LoggedEvent>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let tenant = self.tenant.0;
        let at = now();
        let mut logged: Vec<LoggedEvent> = events
            .iter()
            .map(|event| LoggedEvent {
                // Numbered below, once the counter has moved.
                seq: 0,
                event: CrossAppEvent::new(self.tenant, event, at),
            })
            .collect();
        let column = |f: fn(&LoggedEvent) -> String| logged.iter().map(f).collect::<Vec<_>>();
        let ids: Vec<Uuid> = logged.iter().map(|l| l.event.id.0).collect();
        let types = column(|l| l.event.event_type.as_str().to_owned());
        let sources = column(|l| l.event.source.clone());
        let targets: Vec<serde_json::Value> = logged
            .iter()
            .map(|l| serde_json::json!(l.event.target))
            .collect();
        let data: Vec<serde_json::Value> = logged.iter().map(|l| l.event.data.clone()).collect();
        let priorities = logged
            .iter()
            .map(|l| l.event.priority.as_str())
            .collect::<Vec<_>>();
        // Counter and rows in one round trip. The counter row stays locked until this
        // transaction ends, so sequence order is commit order; the wake-up for the other
        // instances is sent after commit (see `Wakeups`), outside that lock.
        let last: Option<i64> = sqlx::query_scalar(
            "WITH next AS (
                UPDATE event_counters SET seq = seq + cardinality($2::uuid[])
                WHERE tenant_id = $1 RETURNING seq
             ), inserted AS (
                INSERT INTO events (tenant_id, seq, id, type, source, target, data, priority, created_at)
                SELECT $1, next.seq - cardinality($2::uuid[]) + e.n, e.id, e.type, e.source,
                       ARRAY(SELECT jsonb_array_elements_text(e.target)), e.data, e.priority, $8
                FROM next, unnest($2::uuid[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::text[])
                    WITH ORDINALITY AS e(id, type, source, target, data, priority, n)
                RETURNING seq
             )
             SELECT MAX(seq) FROM inserted",
        )
        .bind(tenant)
        .bind(&ids)
        .bind(&types)
        .bind(&sources)
        .bind(&targets)
        .bind(&data)
        .bind(&priorities)
        .bind(at)
        .fetch_one(self.conn())
        .await
        .map_err(map_err)?;
        let last = last.ok_or(StoreError::NotFound)?;
        let first = last - logged.len() as i64 + 1;
        for (i, event) in logged.iter_mut().enumerate() {
            event.seq = first + i as i64;
        }
        self.appended.extend(logged.iter().cloned());
        Ok(logged)
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        tx.commit().await.map_err(map_err)?;
        if self.keys_changed {
            // This instance's next request must not find the old key in its cache; the
            // trigger's notice does the same for the other instances.
            self.store.keys.invalidate();
        }
        if self.jobs_ready {
            self.store.announce_jobs();
        }
        let appended = std::mem::take(&mut self.appended);
        if !appended.is_empty() {
            self.store.announce(CommitNotice {
                tenant_id: self.tenant,
                events: Arc::new(appended),
            });
        }
        Ok(())
    }
}

/// A job's owner as the JSON its column holds.
fn owner_json(job: &NewJob) -> StoreResult<Option<serde_json::Value>> {
    job.owner
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(StoreError::internal)
}
