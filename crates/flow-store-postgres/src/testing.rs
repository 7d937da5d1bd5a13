//! Throwaway databases for tests, on the server that `FLOW_TEST_POSTGRES` names (a
//! superuser URL; `./scripts/test` starts one). Each database is owned by `flow_owner`,
//! which migrates it, while Flow serves as `flow_app`, which owns nothing, is no
//! superuser and so is subject to row-level security.

use sqlx::{Connection, Executor, PgConnection};

/// The variable naming the test server.
pub const SERVER_VAR: &str = "FLOW_TEST_POSTGRES";

/// A fresh, empty database and the two roles' URLs for it.
#[derive(Clone, Debug)]
pub struct TestDatabase {
    /// The name of the database.
    pub name: String,
    /// Connects as the owner (migrations, SQL-level checks).
    pub owner_url: String,
    /// Connects as the serving role.
    pub app_url: String,
    /// Connects as the superuser.
    pub admin_url: String,
}

/// The test server's superuser URL (`postgres://postgres@host:port`), or `None` where none is configured. Under `CI=true`
/// a missing server is a failure, never a silent skip.
pub fn server_url() -> Option<String> {
    match std::env::var(SERVER_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{SERVER_VAR} is not set: run the tests through ./scripts/test")
        }
        _ => {
            eprintln!(
                "skipping a PostgreSQL test: {SERVER_VAR} is not set (./scripts/test sets it)"
            );
            None
        }
    }
}

impl TestDatabase {
    /// Creates a fresh database; `None` when no test server is configured.
    pub async fn create() -> Option<Self> {
        let admin_url = server_url()?;
        Some(Self::create_on(&admin_url).await)
    }

    /// Creates a fresh database on the server at `admin_url`.
    pub async fn create_on(admin_url: &str) -> Self {
        let mut admin = PgConnection::connect(admin_url)
            .await
            .expect("connect to the test PostgreSQL server");
        for role in ["flow_owner", "flow_app"] {
            // Roles are per server; concurrent tests may race to create them.
            let _ = admin
                .execute(format!("CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS").as_str())
                .await;
        }
        let name = format!("flow_test_{}", uuid::Uuid::new_v4().simple());
        admin
            .execute(format!("CREATE DATABASE {name} OWNER flow_owner").as_str())
            .await
            .expect("create the test database");
        admin.close().await.ok();
        // `postgres://user@host:port[/db]` (trust authentication on a test server).
        let host = admin_url
            .split_once("://")
            .map_or(admin_url, |(_, rest)| rest)
            .rsplit_once('@')
            .map_or(admin_url, |(_, host)| host)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let url = |user: &str| format!("postgres://{user}@{host}/{name}");
        Self {
            owner_url: url("flow_owner"),
            app_url: url("flow_app"),
            admin_url: url("postgres"),
            name,
        }
    }
}
