//! The shared storage story, on SQLite.

use flow_store::Store;
use flow_store_sqlite::{SqliteOptions, SqliteStore};

#[tokio::test]
async fn sqlite_passes_the_conformance_story() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flow.db").display());
    let store = SqliteStore::open(&url, &SqliteOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    flow_store::conformance::run(&store).await;
    store.close().await;
}

/// SQLite's plan lines read `SEARCH leads USING INDEX leads_tenant_email (tenant_id=? AND
/// email=?)`; a `SCAN` reads the table whole and a temporary B-tree sorts what it found.
fn sqlite_uses_index(plan: &str, table: &str, column: &str) -> bool {
    let searched = plan.lines().any(|step| {
        step.starts_with(&format!("SEARCH {table} USING "))
            && step.contains("INDEX")
            && step.contains(&format!("{column}=?"))
    });
    let scanned = plan
        .lines()
        .any(|step| step.starts_with(&format!("SCAN {table}")));
    searched && !scanned && !plan.contains("TEMP B-TREE")
}

#[tokio::test]
async fn sqlite_answers_every_hot_lookup_from_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flow.db").display());
    let plans = flow_store::PlanLog::default();
    let options = SqliteOptions {
        plans_for_tests: Some(plans.clone()),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(&url, &options).await.unwrap();
    store.migrate().await.unwrap();
    // No ANALYZE: Flow never runs it, so these are the plans it serves with.
    let tenants = flow_store::conformance::seed_for_plans(&store).await;
    flow_store::conformance::query_plans(&store, tenants, &plans, sqlite_uses_index).await;
    store.close().await;
}
