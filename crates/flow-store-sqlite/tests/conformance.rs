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
