//! Flow on PostgreSQL: the backend for running several `flow serve` processes on one
//! database.
//!
//! Tenant isolation has two walls. Every tenant query carries `tenant_id = $1` (the same
//! discipline as the embedded backend), and every tenant table has forced row-level
//! security keyed on `app.tenant_id`, which [`PgStore::begin`] and [`PgStore::read`] set
//! for their transaction and nothing else sets. Operations that must span tenants (key
//! lookup, the job queue, retention) go through a handful of `SECURITY DEFINER`
//! functions in the schema, never around it.
//!
//! Commits that append events are followed by `NOTIFY flow_events`, enqueues by `NOTIFY
//! flow_jobs` (sent after commit by one task, see `Wakeups`). One listener per process
//! turns those into local wake-ups. They are only wake-ups: the event log and the jobs
//! table stay the source, so a missed notification loses nothing.

mod key_cache;
mod rows;
mod tenant;
#[cfg(feature = "testing")]
pub mod testing;

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flow_store::{
    now, ApiKeyId, ApiKeyWithTenant, ClaimRequest, CommitNotice, Constraint, Job, JobId,
    JobSettlement, Settlement, Store, StoreError, StoreResult, Tenant, TenantId, TenantRead,
    TenantSlots, TenantTx,
};
use flow_store::{
    Invitation, Membership, NewRefreshToken, NewUser, RefreshToken, RefreshTokenUse, User,
    UserCredentials, UserId,
};
use sqlx::{
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    ConnectOptions, Executor, PgPool, Row,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::tenant::PgTenant;

/// Schema migrations, applied in order and recorded in `flow_migrations`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_schema.sql"),
    include_str!("../migrations/0002_conversations.sql"),
    include_str!("../migrations/0003_settle_batch.sql"),
    include_str!("../migrations/0004_users.sql"),
    include_str!("../migrations/0005_key_notices.sql"),
    include_str!("../migrations/0006_stable_job_plans.sql"),
    include_str!("../migrations/0007_job_owner.sql"),
    include_str!("../migrations/0008_functions_not_public.sql"),
    include_str!("../migrations/0009_lookup_indexes.sql"),
    include_str!("../migrations/0010_checked_platform_functions.sql"),
    include_str!("../migrations/0011_invitations.sql"),
    include_str!("../migrations/0012_refresh_token_seal.sql"),
];

/// What the serving role may do to each table: what `serve` uses and no more. Row-level
/// security narrows the rows further. The audit trail and the event log are append-only
/// for it (pruning runs in `flow_prune_events`); accounts cannot be deleted or changed,
/// and of a tenant, a key or a refresh token only the columns that change in use.
const TABLE_GRANTS: &[(&str, &str)] = &[
    ("tenants", "SELECT, INSERT, UPDATE (active)"),
    ("users", "SELECT, INSERT"),
    ("memberships", "SELECT, INSERT, UPDATE (role), DELETE"),
    (
        "invitations",
        "SELECT, INSERT, UPDATE (accepted_at), DELETE",
    ),
    (
        "refresh_tokens",
        "SELECT, INSERT, UPDATE (used_at, revoked_at), DELETE",
    ),
    ("api_keys", "SELECT, INSERT, UPDATE (active)"),
    ("event_counters", "SELECT, UPDATE (seq)"),
    ("events", "SELECT, INSERT"),
    ("audit_log", "SELECT, INSERT"),
    ("jobs", "SELECT, INSERT, UPDATE, DELETE"),
    ("contacts", "SELECT, INSERT, UPDATE, DELETE"),
    ("leads", "SELECT, INSERT, UPDATE, DELETE"),
    ("deals", "SELECT, INSERT, UPDATE"),
    ("activities", "SELECT, INSERT, UPDATE"),
    ("incidents", "SELECT, INSERT, UPDATE"),
    ("conversations", "SELECT, INSERT, UPDATE"),
    ("daily_rollups", "SELECT, INSERT, UPDATE (data)"),
    ("flow_migrations", "SELECT"),
];

/// Serialises concurrent `migrate` calls (several instances starting at once).
const MIGRATION_LOCK: i64 = 0x0066_6c6f_776d_6967; // "flowmig"

/// Channel for "a tenant's event log grew"; payload `instance tag`, where the tag stands
/// for the tenant (see [`NoticeKey`]).
const EVENTS_CHANNEL: &str = "flow_events";
/// Channel for "jobs were enqueued"; payload `instance`.
const JOBS_CHANNEL: &str = "flow_jobs";
/// Sent by triggers when an API key or a tenant changes (see `key_cache`).
const KEYS_CHANNEL: &str = "flow_keys";

/// The key that turns a tenant id into the tag its event notices carry. Any role that can
/// connect may LISTEN on Flow's channels and NOTIFY on them, which PostgreSQL cannot
/// restrict; with tags, a listener without the key learns no tenant ids, and a forged
/// notice names no tenant an instance knows (it is dropped, or at worst makes one tenant's
/// log be read again). Every instance of a cluster needs the same key: Flow derives it
/// from `secret_key`.
#[derive(Clone, Default)]
pub struct NoticeKey(pub Vec<u8>);

impl std::fmt::Debug for NoticeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoticeKey(<redacted>)")
    }
}

impl NoticeKey {
    /// The tag standing for `tenant` in event notices: 128 bits of HMAC-SHA256, in hex.
    fn tag(&self, tenant: TenantId) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.0)
            .expect("HMAC takes keys of any length");
        mac.update(tenant.0.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// Tenants by the tag of their event notices; refreshed from the tenant registry when a
/// tag is unknown, at most every [`TagMap::REFRESH_EVERY`], so that forged notices cannot
/// make an instance query the database at will.
#[derive(Default)]
struct TagMap {
    tenants: HashMap<String, TenantId>,
    refreshed: Option<std::time::Instant>,
}

impl TagMap {
    const REFRESH_EVERY: Duration = Duration::from_millis(100);
}

/// Tuning for [`PgStore::open`].
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Most connections this process holds.
    pub max_connections: u32,
    /// How long a request waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Longest a single statement may run before the database cancels it; within a
    /// request, also no longer than what is left of the request's time.
    pub statement_timeout: Duration,
    /// Connections one tenant may hold at once; 0: half of `max_connections`.
    pub connections_per_tenant: u32,
    /// Tags the tenant in event notices between instances.
    pub notice_key: NoticeKey,
    /// The role `flow serve` connects as; `migrate` grants it what it needs.
    pub app_role: String,
    /// Test-only: leave the application's own tenant filter out of `list_leads`, so a
    /// test can show that row-level security alone still isolates tenants.
    pub unfiltered_lead_list_for_tests: bool,
    /// Test-only: record the plan of every list query here.
    pub plans_for_tests: Option<flow_store::PlanLog>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            connections_per_tenant: 0,
            notice_key: NoticeKey::default(),
            app_role: "flow_app".into(),
            unfiltered_lead_list_for_tests: false,
            plans_for_tests: None,
        }
    }
}

/// The PostgreSQL implementation of [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    options: Arc<PgOptions>,
    notices: broadcast::Sender<CommitNotice>,
    work: broadcast::Sender<()>,
    /// Tells this process's own notifications apart from other instances'.
    instance: Uuid,
    keys: Arc<key_cache::KeyCache>,
    wakeups: Arc<Wakeups>,
    slots: Arc<TenantSlots>,
    tags: Arc<tokio::sync::Mutex<TagMap>>,
}

/// Wake-ups for the other instances, sent after commit. A NOTIFY inside the writing
/// transaction would hold PostgreSQL's database-wide notify lock through that commit's
/// WAL flush, serialising the commits of every event-writing transaction of every tenant
/// (pgbench here: 11,300 tps without, 4,200 with). Sent afterwards by one task, the
/// notices of many commits share one statement. They are only wake-ups: a notice lost
/// (a crashed process, a pool with no free connection for 5 s) delays the other instances
/// to their next poll (dispatchers every second, workers every `worker_poll_ms`); the log
/// and the jobs table keep everything.
#[derive(Default)]
struct Wakeups {
    /// (channel, payload) pairs not yet sent; a set, so repeats coalesce.
    pending: std::sync::Mutex<std::collections::BTreeSet<(&'static str, String)>>,
    ready: tokio::sync::Notify,
    /// Held from taking a batch to sending it, so `close` waits for a send under way
    /// instead of closing the pool under it.
    sending: tokio::sync::Mutex<()>,
}

impl Wakeups {
    fn add(&self, channel: &'static str, payload: String) {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((channel, payload));
        self.ready.notify_one();
    }

    /// Sends what is pending in one statement.
    async fn send(&self, pool: &PgPool) {
        let _sending = self.sending.lock().await;
        let batch = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if batch.is_empty() {
            return;
        }
        let (channels, payloads): (Vec<&str>, Vec<String>) = batch.into_iter().unzip();
        let sent =
            sqlx::query("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)")
                .bind(&channels)
                .bind(&payloads)
                .execute(pool)
                .await;
        if let Err(error) = sent {
            tracing::warn!(%error, "could not wake the other instances; they catch up at their next wake-up");
        }
    }

    /// Sends wake-ups as they come until the pool closes.
    async fn run(self: Arc<Self>, pool: PgPool) {
        loop {
            self.ready.notified().await;
            if pool.is_closed() {
                return;
            }
            self.send(&pool).await;
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://...`). Connections are made lazily and remade after
    /// the database restarts; until then requests fail as unavailable.
    pub async fn open(url: &str, options: &PgOptions) -> StoreResult<Self> {
        let statement_timeout = format!("{}ms", options.statement_timeout.as_millis());
        let connect: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(|e| StoreError::Internal(format!("bad database URL: {e}")))?
            .options([("statement_timeout", statement_timeout.as_str())])
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            // A connection broken by a database restart is noticed before use.
            .test_before_acquire(true)
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        let (notices, _) = broadcast::channel(1024);
        let (work, _) = broadcast::channel(16);
        let store = Self {
            pool,
            options: Arc::new(options.clone()),
            notices,
            work,
            instance: Uuid::new_v4(),
            keys: Arc::default(),
            slots: Arc::new(TenantSlots::new(
                match options.connections_per_tenant {
                    0 => options.max_connections.max(2) / 2,
                    n => n,
                } as usize,
                options.acquire_timeout,
            )),
            wakeups: Arc::default(),
            tags: Arc::default(),
        };
        tokio::spawn(store.wakeups.clone().run(store.pool.clone()));
        Ok(store)
    }

    /// Starts the process's notification listener; it runs until the pool closes.
    pub fn listen(&self) {
        tokio::spawn(self.clone().listen_loop());
    }

    async fn listen_loop(self) {
        loop {
            match self.listen_once().await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, "notification listener lost its connection; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            if self.pool.is_closed() {
                return;
            }
        }
    }

    /// Listens until the pool closes (`Ok`) or the connection fails (`Err`). Anything
    /// missed while disconnected is recovered by waking every reader afterwards.
    async fn listen_once(&self) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener
            .listen_all([EVENTS_CHANNEL, JOBS_CHANNEL, KEYS_CHANNEL])
            .await?;
        self.wake_everyone();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    self.on_notification(notification.channel(), notification.payload())
                        .await
                }
                Ok(None) => self.wake_everyone(),
                Err(sqlx::Error::PoolClosed) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }

    async fn on_notification(&self, channel: &str, payload: &str) {
        if channel == KEYS_CHANNEL {
            self.keys.invalidate();
            return;
        }
        let mut parts = payload.split(' ');
        let from_us = parts.next() == Some(self.instance.to_string().as_str());
        if from_us {
            return;
        }
        match channel {
            EVENTS_CHANNEL => {
                let Some(tag) = parts.next() else { return };
                if let Some(tenant) = self.tenant_of_tag(tag).await {
                    // No events attached: the dispatcher reads them from the log.
                    let _ = self.notices.send(CommitNotice {
                        tenant_id: tenant,
                        events: Arc::new(Vec::new()),
                    });
                }
            }
            _ => {
                let _ = self.work.send(());
            }
        }
    }

    /// The tenant an event notice's tag stands for; `None` for a tag of no tenant (a
    /// forged notice, or a tenant created since the last refresh less than
    /// [`TagMap::REFRESH_EVERY`] ago, whose events the next notice or poll delivers).
    async fn tenant_of_tag(&self, tag: &str) -> Option<TenantId> {
        let mut tags = self.tags.lock().await;
        if let Some(tenant) = tags.tenants.get(tag) {
            return Some(*tenant);
        }
        if tags
            .refreshed
            .is_some_and(|at| at.elapsed() < TagMap::REFRESH_EVERY)
        {
            return None;
        }
        tags.refreshed = Some(std::time::Instant::now());
        let ids: Vec<Uuid> = match sqlx::query_scalar("SELECT id FROM tenants")
            .fetch_all(&self.pool)
            .await
        {
            Ok(ids) => ids,
            Err(error) => {
                tracing::warn!(%error, "reading tenants for event notices failed");
                return None;
            }
        };
        let key = &self.options.notice_key;
        tags.tenants = ids
            .into_iter()
            .map(|id| (key.tag(id.into()), id.into()))
            .collect();
        tags.tenants.get(tag).copied()
    }

    /// After a gap in listening: workers look for jobs and every log is re-read.
    fn wake_everyone(&self) {
        self.keys.invalidate();
        let _ = self.work.send(());
        let _ = self.notices.send(CommitNotice::all_tenants());
    }

    /// The connection pool, for tests that check the database at the SQL level.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn platform_bool(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> StoreResult<()> {
        let found: bool = query
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?
            .try_get(0)
            .map_err(map_err)?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn find_key(
        &self,
        hash: Option<&[u8]>,
        id: Option<Uuid>,
    ) -> StoreResult<Option<ApiKeyWithTenant>> {
        let row = sqlx::query(
            "SELECT k.*, t.active AS tenant_active FROM flow_find_api_key($1, $2) k
             JOIN tenants t ON t.id = k.tenant_id",
        )
        .bind(hash)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|row| rows::api_key_with_tenant(&row)).transpose()
    }

    async fn apply_migrations(&self) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS flow_migrations (
                version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(migration_err)?;
        let applied: i32 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM flow_migrations")
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            let version = index as i32 + 1;
            tx.execute(*sql)
                .await
                .map_err(|e| StoreError::Internal(format!("migration {version} failed: {e}")))?;
            sqlx::query("INSERT INTO flow_migrations (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tracing::info!(version, "applied migration");
        }
        self.grant_app_role(&mut tx).await?;
        tx.commit().await.map_err(map_err)
    }

    /// Gives the serving role exactly what Flow uses: [`TABLE_GRANTS`] (RLS decides
    /// which) and the platform functions. Ownership stays with the migrating role.
    async fn grant_app_role(&self, tx: &mut sqlx::PgConnection) -> StoreResult<()> {
        let role = &self.options.app_role;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(role)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        let current: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        if !exists || current == *role {
            if !exists {
                tracing::warn!(%role, "the serving role does not exist; create it and run `flow migrate` again");
            }
            return Ok(());
        }
        // Only what this role owns: tables and functions that extensions keep in the
        // schema are not ours to grant. Every table first loses what earlier versions
        // granted, then gets what `serve` uses; a table missing from TABLE_GRANTS gets
        // nothing, so a new table fails its tests until it is listed.
        let role = quote_ident(role);
        let literal = role.replace('\'', "''");
        let mut grants = String::new();
        for (table, privileges) in TABLE_GRANTS {
            grants.push_str(&format!("GRANT {privileges} ON {table} TO {role};\n"));
        }
        tx.execute(
            format!(
                "GRANT USAGE ON SCHEMA public TO {role};
                 DO $grant$
                 DECLARE
                     r record;
                 BEGIN
                     FOR r IN SELECT c.oid::regclass AS t FROM pg_class c
                              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                                AND c.relowner = current_user::regrole
                     LOOP
                         EXECUTE format('REVOKE ALL ON %s FROM {literal}', r.t);
                     END LOOP;
                     FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p
                              WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'flow\\_%'
                     LOOP
                         EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO {literal}', r.f);
                     END LOOP;
                 END
                 $grant$;
                 {grants}"
            )
            .as_str(),
        )
        .await
        .map_err(migration_err)?;
        Ok(())
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn migration_err(e: sqlx::Error) -> StoreError {
    StoreError::Internal(format!("migrating: {e}"))
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> StoreResult<()> {
        let applied: Option<i32> = sqlx::query_scalar(
            "SELECT MAX(version) FROM flow_migrations WHERE to_regclass('flow_migrations') IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .or_else(|e| match e {
            // No migrations table yet: nothing applied.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(None),
            other => Err(other),
        })
        .map_err(map_err)?;
        if applied.unwrap_or(0) as usize >= MIGRATIONS.len() {
            return Ok(());
        }
        self.apply_migrations().await.map_err(|e| match e {
            StoreError::Internal(message)
                if message.contains("permission denied") || message.contains("must be owner") =>
            {
                StoreError::Internal(format!(
                    "{message}: the schema is behind; run `flow migrate` as the database owner"
                ))
            }
            other => other,
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        self.pool
            .execute("SELECT 1")
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn create_tenant(&self, name: &str, slug: &str) -> StoreResult<Tenant> {
        let tenant = Tenant::new(name, slug);
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("INSERT INTO tenants (id, name, slug, active, created_at) VALUES ($1, $2, $3, true, $4)")
            .bind(tenant.id.0)
            .bind(&tenant.name)
            .bind(&tenant.slug)
            .bind(tenant.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("SELECT flow_init_tenant($1)")
            .bind(tenant.id.0)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(tenant)
    }

    async fn get_tenant(&self, id: TenantId) -> StoreResult<Tenant> {
        let row = sqlx::query("SELECT * FROM tenants WHERE id = $1")
            .bind(id.0)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        rows::tenant(&row)
    }

    async fn find_tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT * FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|row| rows::tenant(&row)).transpose()
    }

    async fn set_tenant_active(&self, id: TenantId, active: bool) -> StoreResult<()> {
        let done = sqlx::query("UPDATE tenants SET active = $1 WHERE id = $2")
            .bind(active)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        self.keys.invalidate();
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(rows::tenant).collect()
    }

    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyWithTenant>> {
        if let Some(cached) = self.keys.get(key_hash) {
            return Ok(Some(cached));
        }
        let generation = self.keys.generation();
        let found = self.find_key(Some(key_hash), None).await?;
        if let Some(found) = &found {
            self.keys.insert(*key_hash, found.clone(), generation);
        }
        Ok(found)
    }

    async fn find_api_key_by_id(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyWithTenant>> {
        self.find_key(None, Some(id.0)).await
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("SELECT flow_touch_api_key($1, $2)")
            .bind(id.0)
            .bind(at)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map_err)
    }

    async fn create_user(&self, user: &NewUser) -> StoreResult<User> {
        let created = User::new(user);
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, active, created_at)
             VALUES ($1, $2, $3, $4, true, $5)",
        )
        .bind(created.id.0)
        .bind(&created.email)
        .bind(&created.name)
        .bind(&user.password_hash)
        .bind(created.created_at)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(created)
    }

    async fn find_user_credentials(&self, email: &str) -> StoreResult<Option<UserCredentials>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(User::normalize_email(email))
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|row| rows::user_credentials(&row)).transpose()
    }

    async fn session_active(&self, family_id: uuid::Uuid) -> StoreResult<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM refresh_tokens
                            WHERE family_id = $1 AND revoked_at IS NULL)",
        )
        .bind(family_id)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn find_invitation(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Invitation>> {
        let row = sqlx::query("SELECT * FROM flow_find_invitation($1)")
            .bind(&token_hash[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|row| rows::invitation(&row)).transpose()
    }

    async fn get_user(&self, id: UserId) -> StoreResult<User> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.0)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        rows::user(&row)
    }

    async fn user_memberships(&self, id: UserId) -> StoreResult<Vec<Membership>> {
        let rows = sqlx::query("SELECT * FROM flow_user_memberships($1)")
            .bind(id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(rows::membership).collect()
    }

    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at, seal)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.token_hash[..])
        .bind(token.family_id)
        .bind(token.user_id.0)
        .bind(now())
        .bind(token.expires_at)
        .bind(&token.seal[..])
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(map_err)
    }

    async fn find_refresh_token(
        &self,
        token_hash: &[u8; 32],
        at: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>> {
        let row = sqlx::query(
            "SELECT * FROM refresh_tokens WHERE token_hash = $1
             AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(&token_hash[..])
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|row| rows::refresh_token(&row)).transpose()
    }

    async fn use_refresh_token(
        &self,
        token_hash: &[u8; 32],
        at: DateTime<Utc>,
    ) -> StoreResult<RefreshTokenUse> {
        // The row lock taken by the UPDATE makes a concurrent second use wait and then
        // find used_at set: exactly one use is Fresh.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2
             WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2
             RETURNING *",
        )
        .bind(&token_hash[..])
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        if let Some(row) = spent {
            return rows::refresh_token(&row).map(RefreshTokenUse::Fresh);
        }
        let previously_spent = sqlx::query(
            "SELECT * FROM refresh_tokens
             WHERE token_hash = $1 AND used_at IS NOT NULL AND revoked_at IS NULL",
        )
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        match previously_spent {
            Some(row) => rows::refresh_token(&row).map(RefreshTokenUse::Reused),
            None => Ok(RefreshTokenUse::Invalid),
        }
    }

    async fn prune_refresh_tokens(&self, at: DateTime<Utc>) -> StoreResult<u64> {
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(at)
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(map_err)
    }

    async fn revoke_refresh_family(
        &self,
        family_id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .bind(at)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(map_err)
    }

    async fn read(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantRead>> {
        Ok(Box::new(PgTenant::begin(self, tenant, true).await?))
    }

    async fn begin(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantTx>> {
        Ok(Box::new(PgTenant::begin(self, tenant, false).await?))
    }

    async fn prune_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        self.platform_count("SELECT flow_prune_events($1)", older_than)
            .await
    }

    fn commit_notices(&self) -> broadcast::Receiver<CommitNotice> {
        self.notices.subscribe()
    }

    fn work_notices(&self) -> Option<broadcast::Receiver<()>> {
        Some(self.work.subscribe())
    }

    async fn claim_jobs(&self, request: &ClaimRequest) -> StoreResult<Vec<Job>> {
        if request.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT * FROM flow_claim_jobs($1, $2, $3, $4)")
            .bind(&request.queues)
            .bind(i32::try_from(request.limit).unwrap_or(i32::MAX))
            .bind(request.now)
            .bind(request.lease_until)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let mut jobs = rows
            .iter()
            .map(rows::job)
            .collect::<StoreResult<Vec<_>>>()?;
        jobs.sort_by(Job::claim_order);
        Ok(jobs)
    }

    async fn settle_job(
        &self,
        id: JobId,
        attempt: u32,
        settlement: &Settlement,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (state, result, run_at, error) = settlement_columns(settlement)?;
        self.platform_bool(
            sqlx::query("SELECT flow_settle_job($1, $2, $3, $4, $5, $6, $7)")
                .bind(id.0)
                .bind(attempt as i32)
                .bind(state)
                .bind(result)
                .bind(run_at)
                .bind(error)
                .bind(now),
        )
        .await
    }

    async fn settle_jobs(&self, settlements: &[JobSettlement]) -> StoreResult<Vec<bool>> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(settlements.len());
        let mut attempts = Vec::with_capacity(settlements.len());
        let mut states = Vec::with_capacity(settlements.len());
        let mut results: Vec<Option<serde_json::Value>> = Vec::with_capacity(settlements.len());
        let mut run_ats: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(settlements.len());
        let mut errors: Vec<Option<serde_json::Value>> = Vec::with_capacity(settlements.len());
        for s in settlements {
            let (state, result, run_at, error) = settlement_columns(&s.settlement)?;
            ids.push(s.id.0);
            attempts.push(s.attempt as i32);
            states.push(state);
            results.push(result);
            run_ats.push(run_at);
            errors.push(error);
        }
        // One `now` for the statement: the latest of the batch.
        let now = settlements.iter().map(|s| s.now).max().unwrap_or_else(now);
        let settled: Vec<Uuid> =
            sqlx::query_scalar("SELECT * FROM flow_settle_jobs($1, $2, $3, $4, $5, $6, $7)")
                .bind(&ids)
                .bind(&attempts)
                .bind(&states)
                .bind(&results)
                .bind(&run_ats)
                .bind(&errors)
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        let settled: std::collections::HashSet<Uuid> = settled.into_iter().collect();
        Ok(ids.iter().map(|id| settled.contains(id)).collect())
    }

    async fn extend_lease(&self, id: JobId, attempt: u32, until: DateTime<Utc>) -> StoreResult<()> {
        self.platform_bool(
            sqlx::query("SELECT flow_extend_lease($1, $2, $3)")
                .bind(id.0)
                .bind(attempt as i32)
                .bind(until),
        )
        .await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows = sqlx::query("SELECT queue, depth FROM flow_queue_depths()")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>(0).map_err(map_err)?,
                    row.try_get::<i64, _>(1).map_err(map_err)?.max(0) as u64,
                ))
            })
            .collect()
    }

    async fn prune_jobs(&self, finished_before: DateTime<Utc>) -> StoreResult<u64> {
        self.platform_count("SELECT flow_prune_jobs($1)", finished_before)
            .await
    }

    async fn privileged_role(&self) -> StoreResult<Option<String>> {
        let (role, superuser, bypass, owner): (String, bool, bool, bool) = sqlx::query_as(
            "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls,
                    EXISTS (SELECT 1 FROM pg_class c
                            WHERE c.relnamespace = 'public'::regnamespace AND c.relname = 'leads'
                              AND pg_has_role(current_user, c.relowner, 'USAGE'))
             FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(if superuser {
            Some(format!("role {role} is a superuser"))
        } else if bypass {
            Some(format!("role {role} has BYPASSRLS"))
        } else if owner {
            Some(format!("role {role} owns Flow's tables"))
        } else {
            None
        })
    }

    async fn close(&self) {
        // What this process committed last must still wake the others.
        self.wakeups.send(&self.pool).await;
        self.pool.close().await;
        self.wakeups.ready.notify_one();
    }
}

impl PgStore {
    async fn platform_count(&self, sql: &'static str, at: DateTime<Utc>) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar(sql)
            .bind(at)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(count.max(0) as u64)
    }

    /// Announces a commit: to this process's dispatchers at once (with its events), to the
    /// other instances through the wake-up task (they read the events from the log).
    pub(crate) fn announce(&self, notice: CommitNotice) {
        self.wakeups.add(
            EVENTS_CHANNEL,
            format!(
                "{} {}",
                self.instance,
                self.options.notice_key.tag(notice.tenant_id)
            ),
        );
        let _ = self.notices.send(notice);
    }

    /// Tells the other instances' workers that jobs were enqueued (this process's own
    /// workers are woken by the caller).
    pub(crate) fn announce_jobs(&self) {
        self.wakeups.add(JOBS_CHANNEL, self.instance.to_string());
    }
}

/// A settlement as the columns the settle functions take: state, result, next run, error.
type SettlementColumns = (
    &'static str,
    Option<serde_json::Value>,
    Option<DateTime<Utc>>,
    Option<serde_json::Value>,
);

fn settlement_columns(settlement: &Settlement) -> StoreResult<SettlementColumns> {
    let error = settlement
        .error()
        .map(serde_json::to_value)
        .transpose()
        .map_err(StoreError::internal)?;
    Ok((
        settlement.state().as_str(),
        settlement.result().cloned(),
        settlement.run_at(),
        error,
    ))
}

/// The one place where PostgreSQL's errors become [`StoreError`]s.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                "23505" => StoreError::Constraint(match db.constraint() {
                    Some("contacts_tenant_email") => Constraint::ContactEmailUnique,
                    Some("tenants_slug_key") => Constraint::TenantSlugUnique,
                    Some("api_keys_key_hash_key") => Constraint::ApiKeyUnique,
                    Some("users_email_key") => Constraint::UserEmailUnique,
                    _ => Constraint::Other("unique"),
                }),
                "23503" => StoreError::Constraint(Constraint::ForeignKey),
                // Connection failures, shutdown, too many connections, cancelled by the
                // statement timeout: worth retrying, answered as 503.
                c if c.starts_with("08") || c.starts_with("57") || c == "53300" => {
                    StoreError::Unavailable(e.to_string())
                }
                _ => StoreError::Internal(e.to_string()),
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}
