//! One tenant's view of the database: every statement carries `tenant_id = ?1`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flow_store::{
    like_contains, now, Activity, ActivityFilter, ApiKey, ApiKeyId, AuditEntry, AuditFilter,
    AuditId, CommitNotice, Contact, ContactFilter, ContactId, CrossAppEvent, Deal, DealFilter,
    DealId, DealStatus, Job, JobId, JobState, Lead, LeadFilter, LeadId, LoggedEvent, NewApiKey,
    NewAuditEntry, NewEvent, NewJob, PlanLog, QueueCounts, RollupCounts, StoreError, StoreResult,
    TenantId, TenantRead, TenantTx, LIKE_ESCAPE,
};
use flow_store::{
    Conversation, ConversationId, DailyRollup, Incident, IncidentId, InvitationId, Member,
    NewInvitation, Role, UserId,
};
use rusqlite::{
    params, params_from_iter, types::Value as SqlValue, Connection, OptionalExtension, Row,
};

use uuid::Uuid;

use crate::{
    map_err, micros,
    pool::{Reader, WriterGuard},
    rows,
};

enum Conn {
    Read(Reader),
    Write(WriterGuard),
    /// Committed: the connection went back to its pool.
    Done,
}

/// A transaction bound to one tenant: read-only on a reader, a unit of work on the writer.
pub struct SqliteTenant {
    tenant: TenantId,
    conn: Conn,
    appended: Vec<LoggedEvent>,
    plans: Option<PlanLog>,
}

impl SqliteTenant {
    pub fn read(tenant: TenantId, reader: Reader) -> StoreResult<Self> {
        // One snapshot for all reads of this view.
        reader.execute_batch("BEGIN").map_err(map_err)?;
        Ok(Self {
            tenant,
            conn: Conn::Read(reader),
            appended: Vec::new(),
            plans: None,
        })
    }

    pub fn write(tenant: TenantId, mut writer: WriterGuard) -> StoreResult<Self> {
        writer.begin_unit()?;
        Ok(Self {
            tenant,
            conn: Conn::Write(writer),
            appended: Vec::new(),
            plans: None,
        })
    }

    /// Records the plan of every list query in `plans` (tests).
    pub fn with_plans(mut self, plans: Option<PlanLog>) -> Self {
        self.plans = plans;
        self
    }

    fn conn(&self) -> &Connection {
        match &self.conn {
            Conn::Read(reader) => reader,
            Conn::Write(writer) => writer,
            Conn::Done => unreachable!("a committed transaction is not used again"),
        }
    }

    fn tenant_id_value(&self) -> SqlValue {
        SqlValue::Blob(self.tenant.0.as_bytes().to_vec())
    }

    /// Runs `sql` (which must start `... WHERE tenant_id = ?1`) with extra conditions and
    /// keyset paging, newest first.
    fn page<T>(
        &self,
        mut query: Query,
        before: Option<Uuid>,
        limit: u32,
        map: fn(&Row) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        if let Some(before) = before {
            query.and("id < ?", uuid_value(before));
        }
        query.sql.push_str(" ORDER BY id DESC LIMIT ?");
        query.values.push(SqlValue::Integer(i64::from(limit)));
        let sql = query.numbered();
        if let Some(plans) = &self.plans {
            plans.record(self.explain(&sql, &query.values)?);
        }
        let mut statement = self.conn().prepare_cached(&sql).map_err(map_err)?;
        let rows = statement
            .query_map(params_from_iter(query.values.iter()), map)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    /// SQLite's plan for `sql`, one line per step (`SEARCH leads USING INDEX ...`).
    fn explain(&self, sql: &str, values: &[SqlValue]) -> StoreResult<String> {
        let mut statement = self
            .conn()
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .map_err(map_err)?;
        let steps = statement
            .query_map(params_from_iter(values.iter()), |row| {
                row.get::<_, String>(3)
            })
            .map_err(map_err)?;
        Ok(steps
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?
            .join("\n"))
    }

    fn one<T>(
        &self,
        table: &str,
        id: Uuid,
        map: fn(&Row) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        let sql = format!("SELECT * FROM {table} WHERE tenant_id = ?1 AND id = ?2");
        self.conn()
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row(params![self.tenant.0, id], map))
            .map_err(map_err)
    }

    fn select(&self, table: &str) -> Query {
        Query {
            sql: format!("SELECT * FROM {table} WHERE tenant_id = ?"),
            values: vec![self.tenant_id_value()],
        }
    }

    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> StoreResult<usize> {
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(params))
            .map_err(map_err)
    }

    /// Executes an UPDATE or DELETE that must hit a row of this tenant.
    fn execute_one(&self, sql: &str, params: impl rusqlite::Params) -> StoreResult<()> {
        match self.execute(sql, params)? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }
}

impl Drop for SqliteTenant {
    fn drop(&mut self) {
        match &mut self.conn {
            Conn::Read(reader) => {
                let _ = reader.execute_batch("ROLLBACK");
            }
            Conn::Write(writer) => writer.abandon_unit(),
            Conn::Done => {}
        }
    }
}

fn uuid_value(id: Uuid) -> SqlValue {
    SqlValue::Blob(id.as_bytes().to_vec())
}

/// Numbers the placeholders `?1, ?2, ...` so equal queries share a cached statement.
pub fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        out.push(c);
        if c == '?' {
            n += 1;
            out.push_str(&n.to_string());
        }
    }
    out
}

/// A SELECT being assembled from optional filters; `?` placeholders are numbered at the end.
struct Query {
    sql: String,
    values: Vec<SqlValue>,
}

impl Query {
    fn and(&mut self, condition: &str, value: SqlValue) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
        self.values.push(value);
    }

    /// Matches `text` in any of `columns`, never as a pattern (see `like_contains`).
    fn text_search(&mut self, columns: &[&str], text: &str) {
        let pattern = like_contains(text);
        let conditions: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} LIKE ? ESCAPE '{LIKE_ESCAPE}'"))
            .collect();
        self.sql
            .push_str(&format!(" AND ({})", conditions.join(" OR ")));
        for _ in columns {
            self.values.push(SqlValue::Text(pattern.clone()));
        }
    }

    fn numbered(&self) -> String {
        number_placeholders(&self.sql)
    }
}

#[async_trait]
impl TenantRead for SqliteTenant {
    fn tenant_id(&self) -> TenantId {
        self.tenant
    }

    async fn get_lead(&mut self, id: LeadId) -> StoreResult<Lead> {
        self.one("leads", id.0, rows::lead)
    }

    async fn list_leads(&mut self, filter: &LeadFilter) -> StoreResult<Vec<Lead>> {
        let mut query = self.select("leads");
        if let Some(status) = filter.status {
            query.and("status = ?", SqlValue::Text(status.as_str().into()));
        }
        if let Some(source) = &filter.source {
            query.and("source = ?", SqlValue::Text(source.clone()));
        }
        if let Some(email) = &filter.email {
            query.and("email = ?", SqlValue::Text(email.clone()));
        }
        if let Some(after) = filter.created_after {
            query.and("created_at > ?", SqlValue::Integer(micros(after)));
        }
        if let Some(text) = &filter.text {
            query.text_search(LeadFilter::TEXT_FIELDS, text);
        }
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::lead,
        )
    }

    async fn get_contact(&mut self, id: ContactId) -> StoreResult<Contact> {
        self.one("contacts", id.0, rows::contact)
    }

    async fn find_contact_by_email(&mut self, email: &str) -> StoreResult<Option<Contact>> {
        self.conn()
            .prepare_cached("SELECT * FROM contacts WHERE tenant_id = ?1 AND email = ?2")
            .and_then(|mut s| {
                s.query_row(params![self.tenant.0, email], rows::contact)
                    .optional()
            })
            .map_err(map_err)
    }

    async fn list_contacts(&mut self, filter: &ContactFilter) -> StoreResult<Vec<Contact>> {
        let mut query = self.select("contacts");
        if let Some(email) = &filter.email {
            query.and("email = ?", SqlValue::Text(email.clone()));
        }
        if let Some(text) = &filter.text {
            query.text_search(ContactFilter::TEXT_FIELDS, text);
        }
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::contact,
        )
    }

    async fn list_activities(&mut self, filter: &ActivityFilter) -> StoreResult<Vec<Activity>> {
        let mut query = self.select("activities");
        if let Some(entity) = filter.entity_id {
            query.and("entity_id = ?", uuid_value(entity));
        }
        if let Some(kind) = &filter.activity_type {
            query.and("type = ?", SqlValue::Text(kind.clone()));
        }
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::activity,
        )
    }

    async fn get_deal(&mut self, id: DealId) -> StoreResult<Deal> {
        self.one("deals", id.0, rows::deal)
    }

    async fn list_deals(&mut self, filter: &DealFilter) -> StoreResult<Vec<Deal>> {
        let mut query = self.select("deals");
        if let Some(status) = filter.status {
            query.and("status = ?", SqlValue::Text(status.as_str().into()));
        }
        if let Some(contact) = filter.contact_id {
            query.and("contact_id = ?", uuid_value(contact.0));
        }
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::deal,
        )
    }

    async fn list_api_keys(&mut self) -> StoreResult<Vec<ApiKey>> {
        let mut statement = self
            .conn()
            .prepare_cached("SELECT * FROM api_keys WHERE tenant_id = ?1 ORDER BY id")
            .map_err(map_err)?;
        let rows = statement
            .query_map(params![self.tenant.0], rows::api_key)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    async fn list_members(&mut self) -> StoreResult<Vec<Member>> {
        let mut statement = self
            .conn()
            .prepare_cached(
                "SELECT u.id, u.email, u.name, m.role, m.created_at AS joined_at
                 FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.tenant_id = ?1 ORDER BY m.created_at, u.id",
            )
            .map_err(map_err)?;
        let rows = statement
            .query_map(params![self.tenant.0], rows::member)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    async fn get_member(&mut self, user: UserId) -> StoreResult<Member> {
        self.conn()
            .prepare_cached(
                "SELECT u.id, u.email, u.name, m.role, m.created_at AS joined_at
                 FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.tenant_id = ?1 AND m.user_id = ?2",
            )
            .and_then(|mut s| s.query_row(params![self.tenant.0, user.0], rows::member))
            .map_err(map_err)
    }

    async fn list_audit(&mut self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let mut query = self.select("audit_log");
        if let Some(entity) = &filter.entity_id {
            query.and("entity_id = ?", SqlValue::Text(entity.clone()));
        }
        self.page(
            query,
            filter.before.map(|id| id.0),
            filter.limit,
            rows::audit,
        )
    }

    async fn list_events(&mut self, since: i64, limit: u32) -> StoreResult<Vec<LoggedEvent>> {
        let mut statement = self
            .conn()
            .prepare_cached(
                "SELECT * FROM events WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(map_err)?;
        let rows = statement
            .query_map(params![self.tenant.0, since, i64::from(limit)], rows::event)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    async fn last_event_seq(&mut self) -> StoreResult<i64> {
        self.conn()
            .prepare_cached("SELECT event_seq FROM tenants WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row(params![self.tenant.0], |r| r.get::<_, i64>(0))
                    .optional()
            })
            .map(Option::unwrap_or_default)
            .map_err(map_err)
    }

    async fn oldest_event_seq(&mut self) -> StoreResult<Option<i64>> {
        self.conn()
            .prepare_cached("SELECT MIN(seq) FROM events WHERE tenant_id = ?1")
            .and_then(|mut s| s.query_row(params![self.tenant.0], |r| r.get(0)))
            .map_err(map_err)
    }

    async fn get_incident(&mut self, id: IncidentId) -> StoreResult<Incident> {
        self.one("incidents", id.0, rows::incident)
    }

    async fn list_incidents(
        &mut self,
        status: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Incident>> {
        let mut query = self.select("incidents");
        if let Some(status) = status {
            query.and("status = ?", SqlValue::Text(status.to_owned()));
        }
        self.page(query, None, limit, rows::incident)
    }

    async fn compute_rollup(
        &mut self,
        day: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<DailyRollup> {
        let (from, to) = (micros(from), micros(to));
        let tenant = self.tenant.0;
        let grouped = |sql: &str| -> StoreResult<std::collections::BTreeMap<String, u64>> {
            let mut statement = self.conn().prepare_cached(sql).map_err(map_err)?;
            let rows = statement
                .query_map(params![tenant, from, to], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })
                .map_err(map_err)?;
            rows.collect::<Result<_, _>>().map_err(map_err)
        };
        // Names from flow-store are bound as `?4`, not spelled into the SQL, so the rollup
        // counts what the rest of Flow writes.
        let count = |sql: &str, value: Option<&str>| -> StoreResult<u64> {
            let mut statement = self.conn().prepare_cached(sql).map_err(map_err)?;
            match value {
                Some(value) => statement.query_row(params![tenant, from, to, value], |r| r.get(0)),
                None => statement.query_row(params![tenant, from, to], |r| r.get(0)),
            }
            .map(|n: i64| n.max(0) as u64)
            .map_err(map_err)
        };
        let counts = RollupCounts {
            leads_by_status: grouped(
                "SELECT status, COUNT(*) FROM leads WHERE tenant_id = ?1 AND created_at >= ?2 AND created_at < ?3 GROUP BY status",
            )?,
            leads_by_source: grouped(
                "SELECT source, COUNT(*) FROM leads WHERE tenant_id = ?1 AND created_at >= ?2 AND created_at < ?3 GROUP BY source",
            )?,
            activities: count(
                "SELECT COUNT(*) FROM activities WHERE tenant_id = ?1 AND created_at >= ?2 AND created_at < ?3",
                None,
            )?,
            voice_commands: count(
                "SELECT COUNT(*) FROM audit_log WHERE tenant_id = ?1 AND created_at >= ?2 AND created_at < ?3 AND action = ?4",
                Some(DailyRollup::VOICE_COMMAND_ACTION),
            )?,
            deals_won: count(
                "SELECT COUNT(*) FROM deals WHERE tenant_id = ?1 AND closed_at >= ?2 AND closed_at < ?3 AND status = ?4",
                Some(DealStatus::Won.as_str()),
            )?,
        };
        Ok(DailyRollup::from_counts(day, counts))
    }

    async fn list_rollups(&mut self, from: &str, to: &str) -> StoreResult<Vec<DailyRollup>> {
        let mut statement = self
            .conn()
            .prepare_cached("SELECT data FROM daily_rollups WHERE tenant_id = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day")
            .map_err(map_err)?;
        let rows = statement
            .query_map(params![self.tenant.0, from, to], |r| r.get::<_, String>(0))
            .map_err(map_err)?;
        rows.map(|row| serde_json::from_str(&row.map_err(map_err)?).map_err(StoreError::internal))
            .collect()
    }

    async fn get_conversation(&mut self, id: ConversationId) -> StoreResult<Conversation> {
        self.one("conversations", id.0, rows::conversation)
    }

    async fn list_conversations(
        &mut self,
        before: Option<ConversationId>,
        limit: u32,
    ) -> StoreResult<Vec<Conversation>> {
        let query = self.select("conversations");
        self.page(query, before.map(|id| id.0), limit, rows::conversation)
    }

    async fn get_job(&mut self, id: JobId) -> StoreResult<Job> {
        self.one("jobs", id.0, rows::job)
    }

    async fn list_jobs(
        &mut self,
        queue: &str,
        state: Option<JobState>,
        limit: u32,
    ) -> StoreResult<Vec<Job>> {
        let mut query = self.select("jobs");
        query.and("queue = ?", SqlValue::Text(queue.to_owned()));
        if let Some(state) = state {
            query.and("state = ?", SqlValue::Text(state.as_str().to_owned()));
        }
        self.page(query, None, limit, rows::job)
    }

    async fn queue_counts(&mut self, now: DateTime<Utc>) -> StoreResult<Vec<QueueCounts>> {
        let minute_ago = micros(QueueCounts::last_minute_start(now));
        let now = micros(now);
        let mut statement = self
            .conn()
            .prepare_cached(
                "SELECT queue,
                    SUM(state = 'ready' AND run_at <= ?2) AS ready,
                    SUM(state = 'ready' AND run_at > ?2) AS delayed,
                    SUM(state = 'running') AS running,
                    SUM(state = 'completed') AS completed,
                    SUM(state = 'dead') AS dead,
                    SUM(state = 'completed' AND finished_at >= ?3) AS completed_last_minute,
                    (?2 - MIN(CASE WHEN state = 'ready' AND run_at <= ?2 THEN run_at END)) / 1e6 AS oldest_ready_age
                 FROM jobs WHERE tenant_id = ?1 GROUP BY queue ORDER BY queue",
            )
            .map_err(map_err)?;
        let rows = statement
            .query_map(params![self.tenant.0, now, minute_ago], rows::queue_counts)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }
}

#[async_trait]
impl TenantTx for SqliteTenant {
    async fn lock_lead(&mut self, id: LeadId) -> StoreResult<Lead> {
        // The write transaction already holds SQLite's single write lock.
        self.get_lead(id).await
    }

    async fn insert_lead(&mut self, lead: &Lead) -> StoreResult<()> {
        self.execute(
            "INSERT INTO leads (id, tenant_id, contact_id, first_name, last_name, email, phone,
                company, source, status, notes, assigned_to, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                lead.id.0,
                self.tenant.0,
                lead.contact_id.map(|c| c.0),
                lead.first_name,
                lead.last_name,
                lead.email,
                lead.phone,
                lead.company,
                lead.source,
                lead.status.as_str(),
                lead.notes,
                lead.assigned_to,
                micros(lead.created_at),
                micros(lead.updated_at),
            ],
        )
        .map(drop)
    }

    async fn update_lead(&mut self, lead: &Lead) -> StoreResult<()> {
        self.execute_one(
            "UPDATE leads SET contact_id = ?1, first_name = ?2, last_name = ?3, email = ?4,
                phone = ?5, company = ?6, source = ?7, status = ?8, notes = ?9,
                assigned_to = ?10, updated_at = ?11
             WHERE tenant_id = ?12 AND id = ?13",
            params![
                lead.contact_id.map(|c| c.0),
                lead.first_name,
                lead.last_name,
                lead.email,
                lead.phone,
                lead.company,
                lead.source,
                lead.status.as_str(),
                lead.notes,
                lead.assigned_to,
                micros(lead.updated_at),
                self.tenant.0,
                lead.id.0,
            ],
        )
    }

    async fn delete_lead(&mut self, id: LeadId) -> StoreResult<()> {
        self.execute_one(
            "DELETE FROM leads WHERE tenant_id = ?1 AND id = ?2",
            params![self.tenant.0, id.0],
        )
    }

    async fn move_leads(&mut self, from: ContactId, to: ContactId) -> StoreResult<u64> {
        self.execute(
            "UPDATE leads SET contact_id = ?1 WHERE tenant_id = ?2 AND contact_id = ?3",
            params![to.0, self.tenant.0, from.0],
        )
        .map(|n| n as u64)
    }

    async fn lock_contact(&mut self, id: ContactId) -> StoreResult<Contact> {
        self.get_contact(id).await
    }

    async fn insert_contact(&mut self, contact: &Contact) -> StoreResult<()> {
        self.execute(
            "INSERT INTO contacts (id, tenant_id, first_name, last_name, email, phone, company,
                source, consent, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                contact.id.0,
                self.tenant.0,
                contact.first_name,
                contact.last_name,
                contact.email,
                contact.phone,
                contact.company,
                contact.source,
                contact.consent,
                micros(contact.created_at),
                micros(contact.updated_at),
            ],
        )
        .map(drop)
    }

    async fn update_contact(&mut self, contact: &Contact) -> StoreResult<()> {
        self.execute_one(
            "UPDATE contacts SET first_name = ?1, last_name = ?2, email = ?3, phone = ?4,
                company = ?5, source = ?6, consent = ?7, updated_at = ?8
             WHERE tenant_id = ?9 AND id = ?10",
            params![
                contact.first_name,
                contact.last_name,
                contact.email,
                contact.phone,
                contact.company,
                contact.source,
                contact.consent,
                micros(contact.updated_at),
                self.tenant.0,
                contact.id.0,
            ],
        )
    }

    async fn delete_contact(&mut self, id: ContactId) -> StoreResult<()> {
        self.execute_one(
            "DELETE FROM contacts WHERE tenant_id = ?1 AND id = ?2",
            params![self.tenant.0, id.0],
        )
    }

    async fn insert_activity(&mut self, activity: &Activity) -> StoreResult<()> {
        self.execute(
            "INSERT INTO activities (id, tenant_id, type, entity_type, entity_id, description,
                data, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                activity.id.0,
                self.tenant.0,
                activity.activity_type,
                activity.entity_type.as_str(),
                activity.entity_id,
                activity.description,
                activity.data.to_string(),
                micros(activity.created_at),
            ],
        )
        .map(drop)
    }

    async fn move_activities(&mut self, from: Uuid, to: Uuid) -> StoreResult<u64> {
        self.execute(
            "UPDATE activities SET entity_id = ?1 WHERE tenant_id = ?2 AND entity_id = ?3",
            params![to, self.tenant.0, from],
        )
        .map(|n| n as u64)
    }

    async fn lock_deal(&mut self, id: DealId) -> StoreResult<Deal> {
        self.get_deal(id).await
    }

    async fn insert_deal(&mut self, deal: &Deal) -> StoreResult<()> {
        self.execute(
            "INSERT INTO deals (id, tenant_id, title, amount, currency, stage, status, contact_id,
                lead_id, closed_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                deal.id.0,
                self.tenant.0,
                deal.title,
                deal.amount,
                deal.currency,
                deal.stage,
                deal.status.as_str(),
                deal.contact_id.map(|c| c.0),
                deal.lead_id.map(|l| l.0),
                deal.closed_at.map(micros),
                micros(deal.created_at),
                micros(deal.updated_at),
            ],
        )
        .map(drop)
    }

    async fn update_deal(&mut self, deal: &Deal) -> StoreResult<()> {
        self.execute_one(
            "UPDATE deals SET title = ?1, amount = ?2, currency = ?3, stage = ?4, status = ?5,
                contact_id = ?6, lead_id = ?7, closed_at = ?8, updated_at = ?9
             WHERE tenant_id = ?10 AND id = ?11",
            params![
                deal.title,
                deal.amount,
                deal.currency,
                deal.stage,
                deal.status.as_str(),
                deal.contact_id.map(|c| c.0),
                deal.lead_id.map(|l| l.0),
                deal.closed_at.map(micros),
                micros(deal.updated_at),
                self.tenant.0,
                deal.id.0,
            ],
        )
    }

    async fn move_deals(&mut self, from: ContactId, to: ContactId) -> StoreResult<u64> {
        self.execute(
            "UPDATE deals SET contact_id = ?1 WHERE tenant_id = ?2 AND contact_id = ?3",
            params![to.0, self.tenant.0, from.0],
        )
        .map(|n| n as u64)
    }

    async fn insert_api_key(&mut self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let stored = ApiKey::new(self.tenant, key);
        self.execute(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, permissions,
                allowed_apps, rate_limit_per_minute, active, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9)",
            params![
                stored.id.0,
                self.tenant.0,
                stored.name,
                stored.prefix,
                &key.key_hash[..],
                serde_json::to_string(&stored.permissions).map_err(StoreError::internal)?,
                serde_json::to_string(&stored.allowed_apps).map_err(StoreError::internal)?,
                i64::from(stored.rate_limit_per_minute),
                micros(stored.created_at),
            ],
        )?;
        Ok(stored)
    }

    async fn revoke_api_key(&mut self, id: ApiKeyId) -> StoreResult<()> {
        self.execute_one(
            "UPDATE api_keys SET active = 0 WHERE tenant_id = ?1 AND id = ?2",
            params![self.tenant.0, id.0],
        )
    }

    async fn upsert_member(&mut self, user: UserId, role: Role) -> StoreResult<()> {
        self.execute(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
            params![self.tenant.0, user.0, role.as_str(), micros(now())],
        )
        .map(drop)
    }

    async fn replace_invitation(&mut self, new: &NewInvitation) -> StoreResult<()> {
        let invitation = &new.invitation;
        self.execute(
            "DELETE FROM invitations WHERE tenant_id = ?1 AND email = ?2 AND accepted_at IS NULL",
            params![self.tenant.0, invitation.email],
        )?;
        self.execute(
            "INSERT INTO invitations (id, tenant_id, email, role, invited_by, token_hash,
                                      created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                invitation.id.0,
                self.tenant.0,
                invitation.email,
                invitation.role.as_str(),
                invitation.invited_by,
                &new.token_hash[..],
                micros(invitation.created_at),
                micros(invitation.expires_at)
            ],
        )
        .map(drop)
    }

    async fn accept_invitation(&mut self, id: InvitationId) -> StoreResult<()> {
        self.execute_one(
            "UPDATE invitations SET accepted_at = ?3
             WHERE tenant_id = ?1 AND id = ?2 AND accepted_at IS NULL AND expires_at > ?3",
            params![self.tenant.0, id.0, micros(now())],
        )
    }

    async fn delete_member(&mut self, user: UserId) -> StoreResult<()> {
        self.execute_one(
            "DELETE FROM memberships WHERE tenant_id = ?1 AND user_id = ?2",
            params![self.tenant.0, user.0],
        )
    }

    async fn save_rollup(&mut self, rollup: &DailyRollup) -> StoreResult<()> {
        self.execute(
            "INSERT INTO daily_rollups (tenant_id, day, data) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant_id, day) DO UPDATE SET data = excluded.data",
            params![
                self.tenant.0,
                rollup.day,
                serde_json::to_string(rollup).map_err(StoreError::internal)?
            ],
        )
        .map(drop)
    }

    async fn lock_conversation(&mut self, id: ConversationId) -> StoreResult<Conversation> {
        self.get_conversation(id).await
    }

    async fn insert_conversation(&mut self, conversation: &Conversation) -> StoreResult<()> {
        self.execute(
            "INSERT INTO conversations (id, tenant_id, title, language, transcript, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                conversation.id.0,
                self.tenant.0,
                conversation.title,
                conversation.language,
                conversation.transcript.to_string(),
                micros(conversation.created_at),
                micros(conversation.updated_at),
            ],
        )
        .map(drop)
    }

    async fn update_conversation(&mut self, conversation: &Conversation) -> StoreResult<()> {
        self.execute_one(
            "UPDATE conversations SET title = ?1, language = ?2, transcript = ?3, updated_at = ?4
             WHERE tenant_id = ?5 AND id = ?6",
            params![
                conversation.title,
                conversation.language,
                conversation.transcript.to_string(),
                micros(conversation.updated_at),
                self.tenant.0,
                conversation.id.0,
            ],
        )
    }

    async fn insert_incident(&mut self, incident: &Incident) -> StoreResult<()> {
        self.execute(
            "INSERT INTO incidents (id, tenant_id, type, severity, description, status, reported_by,
                resolution, created_at, updated_at, resolved_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                incident.id.0,
                self.tenant.0,
                incident.incident_type,
                incident.severity.as_str(),
                incident.description,
                incident.status.as_str(),
                incident.reported_by,
                incident.resolution,
                micros(incident.created_at),
                micros(incident.updated_at),
                incident.resolved_at.map(micros),
            ],
        )
        .map(drop)
    }

    async fn update_incident(&mut self, incident: &Incident) -> StoreResult<()> {
        self.execute_one(
            "UPDATE incidents SET status = ?1, resolution = ?2, updated_at = ?3, resolved_at = ?4
             WHERE tenant_id = ?5 AND id = ?6",
            params![
                incident.status.as_str(),
                incident.resolution,
                micros(incident.updated_at),
                incident.resolved_at.map(micros),
                self.tenant.0,
                incident.id.0,
            ],
        )
    }

    async fn enqueue_job(&mut self, job: &NewJob) -> StoreResult<(Job, bool)> {
        if let Some(key) = &job.idempotency_key {
            let existing = self
                .conn()
                .prepare_cached("SELECT * FROM jobs WHERE tenant_id = ?1 AND queue = ?2 AND idempotency_key = ?3")
                .and_then(|mut s| s.query_row(params![self.tenant.0, job.queue, key], rows::job).optional())
                .map_err(map_err)?;
            if let Some(existing) = existing {
                return Ok((existing, false));
            }
        }
        let at = now();
        let id = JobId::new();
        let owner = job
            .owner
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(StoreError::internal)?;
        self.execute(
            "INSERT INTO jobs (id, tenant_id, queue, kind, payload, priority, queue_priority, state,
                max_attempts, run_at, idempotency_key, created_at, updated_at, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'ready', ?8, ?9, ?10, ?11, ?11, ?12)",
            params![
                id.0,
                self.tenant.0,
                job.queue,
                job.kind,
                job.payload.to_string(),
                job.priority,
                job.queue_priority,
                job.max_attempts,
                micros(job.run_at),
                job.idempotency_key,
                micros(at),
                owner,
            ],
        )?;
        Ok((self.get_job(id).await?, true))
    }

    async fn set_job_progress(
        &mut self,
        id: JobId,
        attempt: u32,
        progress: &serde_json::Value,
    ) -> StoreResult<()> {
        self.execute_one(
            "UPDATE jobs SET progress = ?1, updated_at = ?2
             WHERE tenant_id = ?3 AND id = ?4 AND state = 'running' AND attempts = ?5",
            params![
                progress.to_string(),
                micros(now()),
                self.tenant.0,
                id.0,
                attempt
            ],
        )
    }

    async fn requeue_job(&mut self, id: JobId, run_at: DateTime<Utc>) -> StoreResult<Job> {
        self.execute_one(
            "UPDATE jobs SET state = 'ready', attempts = 0, run_at = ?1, finished_at = NULL, updated_at = ?2
             WHERE tenant_id = ?3 AND id = ?4 AND state = 'dead'",
            params![micros(run_at), micros(now()), self.tenant.0, id.0],
        )?;
        self.get_job(id).await
    }

    async fn delete_dead_job(&mut self, id: JobId) -> StoreResult<()> {
        self.execute_one(
            "DELETE FROM jobs WHERE tenant_id = ?1 AND id = ?2 AND state = 'dead'",
            params![self.tenant.0, id.0],
        )
    }

    async fn insert_audit(&mut self, entry: &NewAuditEntry) -> StoreResult<()> {
        self.execute(
            "INSERT INTO audit_log (id, tenant_id, actor_type, actor_id, source_app, action,
                entity_type, entity_id, before, after, request_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                AuditId::new().0,
                self.tenant.0,
                entry.actor.kind.as_str(),
                entry.actor.id,
                entry.source_app,
                entry.action,
                entry.entity_type,
                entry.entity_id,
                entry.before.as_ref().map(|v| v.to_string()),
                entry.after.as_ref().map(|v| v.to_string()),
                entry.request_id,
                micros(now()),
            ],
        )
        .map(drop)
    }

    async fn append_event(&mut self, event: &NewEvent) -> StoreResult<LoggedEvent> {
        // The counter row is written under the transaction's write lock, so sequence order
        // is commit order.
        let seq: i64 = self
            .conn()
            .prepare_cached(
                "UPDATE tenants SET event_seq = event_seq + 1 WHERE id = ?1 RETURNING event_seq",
            )
            .and_then(|mut s| s.query_row(params![self.tenant.0], |r| r.get(0)).optional())
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        let logged = LoggedEvent {
            seq,
            event: CrossAppEvent::new(self.tenant, event, now()),
        };
        self.execute(
            "INSERT INTO events (tenant_id, seq, id, type, source, target, data, priority, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                self.tenant.0,
                seq,
                logged.event.id.0,
                event.event_type.as_str(),
                event.source,
                serde_json::to_string(&logged.event.target).map_err(StoreError::internal)?,
                event.data.to_string(),
                logged.event.priority.as_str(),
                micros(logged.event.timestamp),
            ],
        )?;
        self.appended.push(logged.clone());
        Ok(logged)
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        match std::mem::replace(&mut self.conn, Conn::Done) {
            Conn::Write(writer) => {
                let appended = std::mem::take(&mut self.appended);
                let notice = (!appended.is_empty()).then(|| CommitNotice {
                    tenant_id: self.tenant,
                    events: Arc::new(appended),
                });
                writer.finish_unit(notice).await
            }
            Conn::Read(reader) => reader.execute_batch("COMMIT").map_err(map_err),
            Conn::Done => Ok(()),
        }
    }

    fn writer_wanted(&self) -> bool {
        matches!(&self.conn, Conn::Write(writer) if writer.others_waiting())
    }
}
