//! Flow's embedded backend: one SQLite file in WAL mode.
//!
//! Statements run inline on the calling task (rusqlite), not on a worker thread: an
//! indexed SQLite statement takes microseconds, less than handing it to another thread
//! and back. Writers queue on one connection behind an async mutex (SQLite has one writer
//! anyway); readers use a small pool and never block the writer.

mod pool;
mod rows;
mod tenant;

use std::{path::PathBuf, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flow_store::{
    now, ApiKeyId, ApiKeyWithTenant, ClaimRequest, CommitNotice, Constraint, Job, JobId,
    JobSettlement, JobState, PlanLog, Settlement, Store, StoreError, StoreResult, Tenant, TenantId,
    TenantRead, TenantTx,
};
use flow_store::{
    Invitation, Membership, NewRefreshToken, NewUser, RefreshToken, RefreshTokenUse, User,
    UserCredentials, UserId,
};
use rusqlite::{params, OptionalExtension};
use tokio::sync::broadcast;

use crate::{
    pool::{Checkpoints, Pool},
    tenant::SqliteTenant,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_core.sql"),
    include_str!("../migrations/0002_jobs.sql"),
    include_str!("../migrations/0003_conversations.sql"),
    include_str!("../migrations/0004_users.sql"),
    include_str!("../migrations/0005_job_owner.sql"),
    include_str!("../migrations/0006_lookup_indexes.sql"),
    include_str!("../migrations/0007_invitations.sql"),
    include_str!("../migrations/0008_refresh_token_seal.sql"),
];

/// Tuning for [`SqliteStore::open`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Connections for readers; writers always share one.
    pub read_connections: u32,
    /// How long a request waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
    /// Test-only: record the plan of every list query here.
    pub plans_for_tests: Option<PlanLog>,
    /// WAL pages past which the checkpointer restarts the WAL (4000 pages: 16 MiB).
    pub wal_restart_frames: u32,
    /// How often the checkpointer copies the WAL back into the database.
    pub checkpoint_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            read_connections: 4,
            acquire_timeout: Duration::from_secs(5),
            plans_for_tests: None,
            wal_restart_frames: 4000,
            checkpoint_interval: Duration::from_millis(500),
        }
    }
}

/// The SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
    notices: broadcast::Sender<CommitNotice>,
    plans: Option<PlanLog>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or a plain path).
    pub async fn open(url: &str, options: &SqliteOptions) -> StoreResult<Self> {
        let path = PathBuf::from(
            url.strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url),
        );
        let (notices, _) = broadcast::channel(1024);
        let pool = Pool::open(
            &path,
            options.read_connections.max(1) as usize,
            options.acquire_timeout,
            Checkpoints {
                every: options.checkpoint_interval,
                restart_frames: i64::from(options.wal_restart_frames.max(1)),
            },
            notices.clone(),
        )?;
        Ok(Self {
            pool: Arc::new(pool),
            notices,
            plans: options.plans_for_tests.clone(),
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn writes_share_one_writer(&self) -> bool {
        true
    }

    async fn migrate(&self) -> StoreResult<()> {
        let writer = self.pool.writer_autocommit().await?;
        let applied: i64 = writer
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(map_err)?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            let version = index + 1;
            writer
                .execute_batch(&format!(
                    "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
                ))
                .map_err(|e| {
                    let _ = writer.execute_batch("ROLLBACK");
                    StoreError::Internal(format!("migration {version} failed: {e}"))
                })?;
            tracing::info!(version, "applied migration");
        }
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        let reader = self.pool.reader().await?;
        reader
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(map_err)
    }

    async fn create_tenant(&self, name: &str, slug: &str) -> StoreResult<Tenant> {
        let tenant = Tenant::new(name, slug);
        let writer = self.pool.writer_autocommit().await?;
        writer
            .prepare_cached("INSERT INTO tenants (id, name, slug, active, created_at) VALUES (?1, ?2, ?3, 1, ?4)")
            .and_then(|mut s| s.execute(params![tenant.id.0, tenant.name, tenant.slug, micros(tenant.created_at)]))
            .map_err(map_err)?;
        Ok(tenant)
    }

    async fn get_tenant(&self, id: TenantId) -> StoreResult<Tenant> {
        self.query_tenant("SELECT * FROM tenants WHERE id = ?1", id.0)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn find_tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>> {
        self.query_tenant("SELECT * FROM tenants WHERE slug = ?1", slug.to_owned())
            .await
    }

    async fn set_tenant_active(&self, id: TenantId, active: bool) -> StoreResult<()> {
        let writer = self.pool.writer_autocommit().await?;
        let changed = writer
            .prepare_cached("UPDATE tenants SET active = ?1 WHERE id = ?2")
            .and_then(|mut s| s.execute(params![active, id.0]))
            .map_err(map_err)?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let reader = self.pool.reader().await?;
        let mut statement = reader
            .prepare_cached("SELECT * FROM tenants ORDER BY id")
            .map_err(map_err)?;
        let rows = statement.query_map([], rows::tenant).map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyWithTenant>> {
        self.query_key("k.key_hash = ?1", key_hash.to_vec()).await
    }

    async fn find_api_key_by_id(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyWithTenant>> {
        self.query_key("k.id = ?1", id.0).await
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()> {
        let writer = self.pool.writer_autocommit().await?;
        writer
            .prepare_cached("UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2")
            .and_then(|mut s| s.execute(params![micros(at), id.0]))
            .map(drop)
            .map_err(map_err)
    }

    async fn create_user(&self, user: &NewUser) -> StoreResult<User> {
        let created = User::new(user);
        let writer = self.pool.writer_autocommit().await?;
        writer
            .prepare_cached(
                "INSERT INTO users (id, email, name, password_hash, active, created_at)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    created.id.0,
                    created.email,
                    created.name,
                    user.password_hash,
                    micros(created.created_at)
                ])
            })
            .map_err(map_err)?;
        Ok(created)
    }

    async fn find_user_credentials(&self, email: &str) -> StoreResult<Option<UserCredentials>> {
        let reader = self.pool.reader().await?;
        reader
            .prepare_cached("SELECT * FROM users WHERE email = ?1")
            .and_then(|mut s| {
                s.query_row([User::normalize_email(email)], |row| {
                    Ok(UserCredentials {
                        user: rows::user(row)?,
                        password_hash: row.get("password_hash")?,
                    })
                })
                .optional()
            })
            .map_err(map_err)
    }

    async fn session_active(&self, family_id: uuid::Uuid) -> StoreResult<bool> {
        let reader = self.pool.reader().await?;
        reader
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM refresh_tokens
                                WHERE family_id = ?1 AND revoked_at IS NULL)",
            )
            .and_then(|mut s| s.query_row([family_id], |row| row.get(0)))
            .map_err(map_err)
    }

    async fn find_invitation(&self, token_hash: &[u8; 32]) -> StoreResult<Option<Invitation>> {
        let reader = self.pool.reader().await?;
        reader
            .prepare_cached(
                "SELECT * FROM invitations
                 WHERE token_hash = ?1 AND accepted_at IS NULL AND expires_at > ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![&token_hash[..], micros(now())], rows::invitation)
                    .optional()
            })
            .map_err(map_err)
    }

    async fn get_user(&self, id: UserId) -> StoreResult<User> {
        let reader = self.pool.reader().await?;
        reader
            .prepare_cached("SELECT * FROM users WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.0], rows::user))
            .map_err(map_err)
    }

    async fn user_memberships(&self, id: UserId) -> StoreResult<Vec<Membership>> {
        let reader = self.pool.reader().await?;
        let mut statement = reader
            .prepare_cached(
                "SELECT t.*, m.role FROM memberships m JOIN tenants t ON t.id = m.tenant_id
                 WHERE m.user_id = ?1 ORDER BY m.created_at, t.id",
            )
            .map_err(map_err)?;
        let rows = statement
            .query_map([id.0], rows::membership)
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    async fn insert_refresh_token(&self, token: &NewRefreshToken) -> StoreResult<()> {
        let writer = self.pool.writer_autocommit().await?;
        writer
            .prepare_cached(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at, seal)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    &token.token_hash[..],
                    token.family_id,
                    token.user_id.0,
                    micros(now()),
                    micros(token.expires_at),
                    &token.seal[..]
                ])
            })
            .map(drop)
            .map_err(map_err)
    }

    async fn find_refresh_token(
        &self,
        token_hash: &[u8; 32],
        at: DateTime<Utc>,
    ) -> StoreResult<Option<RefreshToken>> {
        let reader = self.pool.reader().await?;
        reader
            .prepare_cached(
                "SELECT * FROM refresh_tokens WHERE token_hash = ?1
                 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![&token_hash[..], micros(at)], rows::refresh_token)
                    .optional()
            })
            .map_err(map_err)
    }

    async fn use_refresh_token(
        &self,
        token_hash: &[u8; 32],
        at: DateTime<Utc>,
    ) -> StoreResult<RefreshTokenUse> {
        // One writer at a time: the UPDATE decides which of two concurrent uses wins.
        let writer = self.pool.writer_autocommit().await?;
        let spent = writer
            .prepare_cached(
                "UPDATE refresh_tokens SET used_at = ?2
                 WHERE token_hash = ?1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?2
                 RETURNING *",
            )
            .and_then(|mut s| {
                s.query_row(params![&token_hash[..], micros(at)], rows::refresh_token)
                    .optional()
            })
            .map_err(map_err)?;
        if let Some(token) = spent {
            return Ok(RefreshTokenUse::Fresh(token));
        }
        let previously_spent = writer
            .prepare_cached(
                "SELECT * FROM refresh_tokens
                 WHERE token_hash = ?1 AND used_at IS NOT NULL AND revoked_at IS NULL",
            )
            .and_then(|mut s| {
                s.query_row([&token_hash[..]], rows::refresh_token)
                    .optional()
            })
            .map_err(map_err)?;
        Ok(previously_spent.map_or(RefreshTokenUse::Invalid, RefreshTokenUse::Reused))
    }

    async fn prune_refresh_tokens(&self, at: DateTime<Utc>) -> StoreResult<u64> {
        let writer = self.pool.writer_autocommit().await?;
        writer
            .prepare_cached("DELETE FROM refresh_tokens WHERE expires_at < ?1")
            .and_then(|mut s| s.execute(params![micros(at)]))
            .map(|n| n as u64)
            .map_err(map_err)
    }

    async fn revoke_refresh_family(
        &self,
        family_id: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let writer = self.pool.writer_autocommit().await?;
        writer
            .prepare_cached(
                "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL",
            )
            .and_then(|mut s| s.execute(params![family_id, micros(at)]))
            .map(drop)
            .map_err(map_err)
    }

    async fn prune_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        let writer = self.pool.writer_autocommit().await?;
        writer
            .prepare_cached("DELETE FROM events WHERE created_at < ?1")
            .and_then(|mut s| s.execute(params![micros(older_than)]))
            .map(|n| n as u64)
            .map_err(map_err)
    }

    async fn claim_jobs(&self, request: &ClaimRequest) -> StoreResult<Vec<Job>> {
        if request.is_empty() {
            return Ok(Vec::new());
        }
        let queues = vec!["?"; request.queues.len()].join(", ");
        let claim = |condition: &str, order: &str| {
            format!(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = ?, updated_at = ?
                 WHERE id IN (SELECT id FROM jobs WHERE {condition} AND queue IN ({queues}) {order} LIMIT ?)
                 RETURNING *"
            )
        };
        // Jobs whose worker died first, then due ones in priority order.
        let expired = claim("state = 'running' AND lease_until < ?", "");
        let due = claim(
            "state = 'ready' AND run_at <= ?",
            "ORDER BY queue_priority DESC, priority DESC, run_at, id",
        );
        let now = micros(request.now);
        let lease = micros(request.lease_until);
        self.unit(move |conn| {
            let mut jobs = Vec::new();
            for sql in [&expired, &due] {
                let want = i64::from(request.limit) - jobs.len() as i64;
                if want <= 0 {
                    break;
                }
                let mut values: Vec<rusqlite::types::Value> =
                    vec![lease.into(), now.into(), now.into()];
                values.extend(request.queues.iter().map(|q| q.clone().into()));
                values.push(want.into());
                let numbered = tenant::number_placeholders(sql);
                let mut statement = conn.prepare_cached(&numbered).map_err(map_err)?;
                let rows = statement
                    .query_map(rusqlite::params_from_iter(values.iter()), rows::job)
                    .map_err(map_err)?;
                for job in rows {
                    jobs.push(job.map_err(map_err)?);
                }
            }
            jobs.sort_by(Job::claim_order);
            Ok(jobs)
        })
        .await
    }

    async fn settle_job(
        &self,
        id: JobId,
        attempt: u32,
        settlement: &Settlement,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let row = SettleRow::new(id, attempt, settlement, now)?;
        self.unit(move |conn| match row.write(conn)? {
            true => Ok(()),
            false => Err(StoreError::NotFound),
        })
        .await
    }

    async fn settle_jobs(&self, settlements: &[JobSettlement]) -> StoreResult<Vec<bool>> {
        // One unit for the whole group: settling them one unit at a time made the settler
        // wait for a commit per job, which cut the embedded queue to a third (issue 22).
        let rows = settlements
            .iter()
            .map(|s| SettleRow::new(s.id, s.attempt, &s.settlement, s.now))
            .collect::<StoreResult<Vec<_>>>()?;
        self.unit(move |conn| rows.iter().map(|row| row.write(conn)).collect())
            .await
    }

    async fn extend_lease(&self, id: JobId, attempt: u32, until: DateTime<Utc>) -> StoreResult<()> {
        let until = micros(until);
        self.unit(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE jobs SET lease_until = ?1 WHERE id = ?2 AND state = 'running' AND attempts = ?3",
                )
                .and_then(|mut s| s.execute(params![until, id.0, attempt]))
                .map_err(map_err)?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<(String, u64)>> {
        let reader = self.pool.reader().await?;
        let mut statement = reader
            .prepare_cached("SELECT queue, COUNT(*) FROM jobs WHERE state = 'ready' GROUP BY queue")
            .map_err(map_err)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?.max(0) as u64,
                ))
            })
            .map_err(map_err)?;
        rows.collect::<Result<_, _>>().map_err(map_err)
    }

    async fn prune_jobs(&self, finished_before: DateTime<Utc>) -> StoreResult<u64> {
        let writer = self.pool.writer_autocommit().await?;
        writer
            .prepare_cached("DELETE FROM jobs WHERE state = 'completed' AND finished_at < ?1")
            .and_then(|mut s| s.execute(params![micros(finished_before)]))
            .map(|n| n as u64)
            .map_err(map_err)
    }

    fn commit_notices(&self) -> broadcast::Receiver<CommitNotice> {
        self.notices.subscribe()
    }

    async fn read(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantRead>> {
        let reader = self.pool.reader().await?;
        Ok(Box::new(
            SqliteTenant::read(tenant, reader)?.with_plans(self.plans.clone()),
        ))
    }

    async fn begin(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantTx>> {
        let writer = self.pool.writer().await?;
        Ok(Box::new(
            SqliteTenant::write(tenant, writer)?.with_plans(self.plans.clone()),
        ))
    }

    async fn close(&self) {
        self.pool.close();
    }
}

impl SqliteStore {
    /// Runs `work` as a unit of the writer's group commit: it shares a COMMIT with other
    /// units, and returns once that COMMIT is done.
    async fn unit<T>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut writer = self.pool.writer().await?;
        writer.begin_unit()?;
        match work(&writer) {
            Ok(value) => {
                writer.finish_unit(None).await?;
                Ok(value)
            }
            Err(error) => {
                writer.abandon_unit();
                Err(error)
            }
        }
    }

    async fn query_tenant(
        &self,
        sql: &str,
        key: impl rusqlite::ToSql,
    ) -> StoreResult<Option<Tenant>> {
        let reader = self.pool.reader().await?;
        reader
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row([key], rows::tenant).optional())
            .map_err(map_err)
    }

    async fn query_key(
        &self,
        condition: &str,
        key: impl rusqlite::ToSql,
    ) -> StoreResult<Option<ApiKeyWithTenant>> {
        let reader = self.pool.reader().await?;
        let sql = format!(
            "SELECT k.*, t.active AS tenant_active FROM api_keys k
             JOIN tenants t ON t.id = k.tenant_id WHERE {condition}"
        );
        let row = reader
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row([key], rows::api_key_row).optional())
            .map_err(map_err)?;
        row.map(rows::ApiKeyRow::into_with_tenant).transpose()
    }
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The one place where SQLite's errors become [`StoreError`]s.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    match &e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.as_deref().unwrap_or_default();
            match failure.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    let constraint = if message.contains("contacts.email") {
                        Constraint::ContactEmailUnique
                    } else if message.contains("tenants.slug") {
                        Constraint::TenantSlugUnique
                    } else if message.contains("api_keys.key_hash") {
                        Constraint::ApiKeyUnique
                    } else if message.contains("users.email") {
                        Constraint::UserEmailUnique
                    } else {
                        Constraint::Other("unique")
                    };
                    StoreError::Constraint(constraint)
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::Constraint(Constraint::ForeignKey),
                _ if matches!(
                    failure.code,
                    ffi::ErrorCode::DatabaseBusy
                        | ffi::ErrorCode::DatabaseLocked
                        | ffi::ErrorCode::CannotOpen
                ) =>
                {
                    StoreError::Unavailable(e.to_string())
                }
                _ => StoreError::Internal(e.to_string()),
            }
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// One attempt's settlement in the columns it writes.
struct SettleRow {
    id: JobId,
    attempt: u32,
    state: &'static str,
    result: Option<String>,
    run_at: Option<i64>,
    error: Option<String>,
    finished: Option<i64>,
    now: i64,
}

impl SettleRow {
    fn new(
        id: JobId,
        attempt: u32,
        settlement: &Settlement,
        now: DateTime<Utc>,
    ) -> StoreResult<Self> {
        let state = settlement.state();
        let now = micros(now);
        Ok(Self {
            id,
            attempt,
            state: state.as_str(),
            result: settlement.result().map(|result| result.to_string()),
            run_at: settlement.run_at().map(micros),
            error: settlement
                .error()
                .map(serde_json::to_string)
                .transpose()
                .map_err(StoreError::internal)?,
            finished: (state != JobState::Ready).then_some(now),
            now,
        })
    }

    /// Writes the settlement if this attempt still holds the job (fencing); false if not.
    fn write(&self, conn: &rusqlite::Connection) -> StoreResult<bool> {
        let changed = conn
            .prepare_cached(
                "UPDATE jobs SET state = ?1, result = COALESCE(?2, result), run_at = COALESCE(?3, run_at),
                    errors = CASE WHEN ?4 IS NULL THEN errors ELSE json_insert(errors, '$[#]', json(?4)) END,
                    lease_until = NULL, finished_at = ?5, updated_at = ?6
                 WHERE id = ?7 AND state = 'running' AND attempts = ?8",
            )
            .and_then(|mut s| {
                s.execute(params![
                    self.state,
                    self.result,
                    self.run_at,
                    self.error,
                    self.finished,
                    self.now,
                    self.id.0,
                    self.attempt
                ])
            })
            .map_err(map_err)?;
        Ok(changed == 1)
    }
}
