//! The writer's group commit: units of work that share one outer transaction still
//! succeed or fail on their own, and a committed unit is visible as soon as `commit`
//! returns.

use std::sync::Arc;

use chrono::Utc;
use flow_store::{Lead, LeadId, LeadStatus, Store, StoreError, TenantId};
use flow_store_sqlite::{SqliteOptions, SqliteStore};

fn lead(tenant: TenantId, name: String) -> Lead {
    let now = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    Lead {
        id: LeadId::new(),
        tenant_id: tenant,
        contact_id: None,
        first_name: name,
        last_name: None,
        email: None,
        phone: None,
        company: None,
        source: "test".into(),
        status: LeadStatus::New,
        notes: None,
        assigned_to: None,
        created_at: now,
        updated_at: now,
    }
}

/// A migrated store in a temporary directory (kept while the first value lives), with a
/// tenant.
async fn migrated_store(options: SqliteOptions) -> (tempfile::TempDir, Arc<SqliteStore>, TenantId) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flow.db").display());
    let store = Arc::new(SqliteStore::open(&url, &options).await.unwrap());
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("T", "t").await.unwrap().id;
    (dir, store, tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_units_commit_or_roll_back_independently() {
    let (_dir, store, tenant) = migrated_store(SqliteOptions::default()).await;

    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let row = lead(tenant, format!("L{i}"));
                let mut tx = store.begin(tenant).await.unwrap();
                tx.insert_lead(&row).await.unwrap();
                if i % 5 == 0 {
                    // Abandoned: rolled back without touching the others in its batch.
                    drop(tx);
                    return (row.id, false);
                }
                if i % 7 == 0 {
                    // A failing statement inside a unit fails only that unit.
                    let duplicate = tx.insert_lead(&row).await;
                    assert!(
                        matches!(duplicate, Err(StoreError::Constraint(_))),
                        "{duplicate:?}"
                    );
                    drop(tx);
                    return (row.id, false);
                }
                tx.commit().await.unwrap();
                // Visible to readers the moment commit returns.
                let mut read = store.read(tenant).await.unwrap();
                assert_eq!(read.get_lead(row.id).await.unwrap().id, row.id);
                (row.id, true)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let mut read = store.read(tenant).await.unwrap();
    for (id, committed) in outcomes {
        let found = read.get_lead(id).await;
        assert_eq!(found.is_ok(), committed, "lead {id}: {found:?}");
    }
}

/// Checkpoints run beside the writer, so nothing forces the WAL back to its start: under
/// steady writes with readers always in a snapshot it grew by everything written (2.7 GB
/// in a one-minute import) until the checkpointer learned to restart it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_steady_writes_and_reads() {
    let (dir, store, tenant) = migrated_store(SqliteOptions {
        wal_restart_frames: 64,
        checkpoint_interval: std::time::Duration::from_millis(20),
        ..SqliteOptions::default()
    })
    .await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut read = store.read(tenant).await.unwrap();
                    read.list_leads(&Default::default()).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    // Each lead's notes fill most of a 4 KiB page, so every commit appends at least one
    // page to the WAL: a WAL never restarted is at least `commits` pages long. Two writers
    // keep the writer busy back to back, as an import beside other tenants' writes does.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let notes = "n".repeat(3_000);
                let started = std::time::Instant::now();
                let mut commits = 0u64;
                while started.elapsed() < std::time::Duration::from_secs(2) {
                    let mut row = lead(tenant, format!("W{w}L{commits}"));
                    row.notes = Some(notes.clone());
                    let mut tx = store.begin(tenant).await.unwrap();
                    tx.insert_lead(&row).await.unwrap();
                    tx.commit().await.unwrap();
                    commits += 1;
                }
                commits
            })
        })
        .collect();
    let mut commits = 0;
    for writer in writers {
        commits += writer.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("flow.db-wal"))
        .unwrap()
        .len();
    assert!(commits >= 1_000, "only {commits} commits, too few to tell");
    assert!(
        wal < commits * 4096 / 2,
        "the WAL is {wal} bytes after {commits} commits: it was not restarted"
    );
}

/// Bulk work (an import) ends its transaction early when another write queues for the
/// single writer: the transaction has to be able to tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_knows_when_another_write_waits_for_the_writer() {
    let (_dir, store, tenant) = migrated_store(SqliteOptions::default()).await;

    let mut bulk = store.begin(tenant).await.unwrap();
    bulk.insert_lead(&lead(tenant, "Bulk".into()))
        .await
        .unwrap();
    assert!(!bulk.writer_wanted(), "nobody is waiting yet");
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin(tenant).await.unwrap();
            tx.insert_lead(&lead(tenant, "Queued".into()))
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    };
    let mut noticed = false;
    for _ in 0..200 {
        if bulk.writer_wanted() {
            noticed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(noticed, "the queued write was never noticed");
    bulk.commit().await.unwrap();
    waiting.await.unwrap();
}
