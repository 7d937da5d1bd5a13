//! Flow's embedded backend: one SQLite file in WAL mode.
//!
//! Writes go through a single-connection pool, so writers queue in Rust instead of
//! spinning on SQLite's busy handler; reads use their own pool and never block writes.

mod rows;
mod tenant;

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flow_store::{
    ApiKeyId, ApiKeyWithTenant, CommitNotice, Constraint, Store, StoreError, StoreResult, Tenant,
    TenantId, TenantRead, TenantTx,
};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    SqlitePool,
};
use tokio::sync::broadcast;

use crate::{rows::TenantRow, tenant::SqliteTenant};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Tuning for [`SqliteStore::open`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Connections for readers; writers always share one.
    pub read_connections: u32,
    /// How long a request waits for a connection before failing as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            read_connections: 4,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The SQLite implementation of [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    notices: broadcast::Sender<CommitNotice>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or a plain path).
    pub async fn open(url: &str, options: &SqliteOptions) -> StoreResult<Self> {
        let base = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(internal)?
        } else {
            SqliteConnectOptions::new().filename(Path::new(url))
        };
        let base = base
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL keeps the database consistent after a crash and loses at
            // most the last transactions on power failure; FULL would fsync every commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .pragma("cache_size", "-16000")
            .pragma("temp_store", "memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.clone())
            .await
            .map_err(map_err)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(base.read_only(true));
        let (notices, _) = broadcast::channel(1024);
        Ok(Self {
            writer,
            reader,
            notices,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn create_tenant(&self, name: &str, slug: &str) -> StoreResult<Tenant> {
        let tenant = Tenant {
            id: TenantId::new(),
            name: name.to_owned(),
            slug: slug.to_owned(),
            active: true,
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO tenants (id, name, slug, active, created_at) VALUES ($1, $2, $3, 1, $4)",
        )
        .bind(tenant.id.0)
        .bind(&tenant.name)
        .bind(&tenant.slug)
        .bind(micros(tenant.created_at))
        .execute(&self.writer)
        .await
        .map_err(map_err)?;
        Ok(tenant)
    }

    async fn get_tenant(&self, id: TenantId) -> StoreResult<Tenant> {
        sqlx::query_as::<_, TenantRow>("SELECT * FROM tenants WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.reader)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
            .map(Into::into)
    }

    async fn find_tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>> {
        Ok(
            sqlx::query_as::<_, TenantRow>("SELECT * FROM tenants WHERE slug = $1")
                .bind(slug)
                .fetch_optional(&self.reader)
                .await
                .map_err(map_err)?
                .map(Into::into),
        )
    }

    async fn set_tenant_active(&self, id: TenantId, active: bool) -> StoreResult<()> {
        let result = sqlx::query("UPDATE tenants SET active = $1 WHERE id = $2")
            .bind(active)
            .bind(id.0)
            .execute(&self.writer)
            .await
            .map_err(map_err)?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        Ok(
            sqlx::query_as::<_, TenantRow>("SELECT * FROM tenants ORDER BY id")
                .fetch_all(&self.reader)
                .await
                .map_err(map_err)?
                .into_iter()
                .map(Into::into)
                .collect(),
        )
    }

    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyWithTenant>> {
        let row = sqlx::query_as::<_, rows::ApiKeyRow>(
            "SELECT k.*, t.active AS tenant_active FROM api_keys k
             JOIN tenants t ON t.id = k.tenant_id WHERE k.key_hash = $1",
        )
        .bind(&key_hash[..])
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.map(rows::ApiKeyRow::into_with_tenant).transpose()
    }

    async fn find_api_key_by_id(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyWithTenant>> {
        let row = sqlx::query_as::<_, rows::ApiKeyRow>(
            "SELECT k.*, t.active AS tenant_active FROM api_keys k
             JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await
        .map_err(map_err)?;
        row.map(rows::ApiKeyRow::into_with_tenant).transpose()
    }

    async fn prune_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        sqlx::query("DELETE FROM events WHERE created_at < $1")
            .bind(micros(older_than))
            .execute(&self.writer)
            .await
            .map(|r| r.rows_affected())
            .map_err(map_err)
    }

    fn commit_notices(&self) -> broadcast::Receiver<CommitNotice> {
        self.notices.subscribe()
    }

    async fn touch_api_key(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(micros(at))
            .bind(id.0)
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn read(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantRead>> {
        let tx = self.reader.begin().await.map_err(map_err)?;
        Ok(Box::new(SqliteTenant::new(tenant, tx, None)))
    }

    async fn begin(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantTx>> {
        // IMMEDIATE takes the write lock up front: a deferred transaction that reads and
        // then writes can fail with SQLITE_BUSY if another process (the CLI) wrote meanwhile.
        let tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)?;
        Ok(Box::new(SqliteTenant::new(
            tenant,
            tx,
            Some(self.notices.clone()),
        )))
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

pub(crate) fn now() -> DateTime<Utc> {
    // Stored with microsecond precision: truncate so what we return equals what we read back.
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now is in range")
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(value: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Internal(format!("timestamp out of range: {value}")))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// The one place where SQLite's errors become [`StoreError`]s.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let message = db.message();
            let constraint = if message.contains("contacts.email") {
                Constraint::ContactEmailUnique
            } else if message.contains("tenants.slug") {
                Constraint::TenantSlugUnique
            } else if message.contains("api_keys.key_hash") {
                Constraint::ApiKeyUnique
            } else {
                Constraint::Other("unique")
            };
            StoreError::Constraint(constraint)
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::Constraint(Constraint::ForeignKey)
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db) if db.message().contains("database is locked") => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}
