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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_units_commit_or_roll_back_independently() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("flow.db").display());
    let store = Arc::new(
        SqliteStore::open(&url, &SqliteOptions::default())
            .await
            .unwrap(),
    );
    store.migrate().await.unwrap();
    let tenant = store.create_tenant("T", "t").await.unwrap().id;

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
