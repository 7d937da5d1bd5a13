//! The shared storage story on PostgreSQL, and row-level security checked at the SQL level
//! as the serving role.

use flow_store::{LeadFilter, Store, TenantId};
use flow_store_postgres::{testing::TestDatabase, PgOptions, PgStore};
use std::future::Future;

use sqlx::{Connection, Executor, PgConnection, Row};

async fn migrated(db: &TestDatabase) {
    let owner = PgStore::open(&db.owner_url, &PgOptions::default())
        .await
        .unwrap();
    owner.migrate().await.unwrap();
    owner.close().await;
}

/// A fresh database migrated by its owner; `None` when no test server is configured.
async fn migrated_database() -> Option<TestDatabase> {
    let db = TestDatabase::create().await?;
    migrated(&db).await;
    Some(db)
}

async fn app_store(db: &TestDatabase, options: PgOptions) -> PgStore {
    PgStore::open(&db.app_url, &options).await.unwrap()
}

#[tokio::test]
async fn postgres_passes_the_conformance_story() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let store = app_store(&db, PgOptions::default()).await;
    // Serving as the app role: migrate finds the schema current and changes nothing.
    store.migrate().await.unwrap();
    flow_store::conformance::run(&store).await;
    store.close().await;
}

#[tokio::test]
async fn no_flow_function_is_executable_by_every_role() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    let open: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'flow\\_%'
           AND p.proname <> 'flow_current_tenant'
           AND has_function_privilege('public', p.oid, 'EXECUTE')",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(open.is_empty(), "executable by PUBLIC: {open:?}");
    // The serving role still has what it needs.
    let granted: bool = sqlx::query_scalar(
        "SELECT has_function_privilege('flow_app', 'flow_user_memberships(uuid)', 'EXECUTE')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(granted);
    admin.close().await.ok();
}

/// Two tenants with one lead each, written through the store as the app role.
async fn two_tenants_with_leads(store: &PgStore) -> (TenantId, TenantId) {
    let a = store.create_tenant("A", "rls-a").await.unwrap().id;
    let b = store.create_tenant("B", "rls-b").await.unwrap().id;
    for (tenant, name) in [(a, "Ada"), (b, "Bob")] {
        let mut tx = store.begin(tenant).await.unwrap();
        let now =
            chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
        tx.insert_lead(&flow_store::Lead {
            id: flow_store::LeadId::new(),
            tenant_id: tenant,
            contact_id: None,
            first_name: name.into(),
            last_name: None,
            email: None,
            phone: None,
            company: None,
            source: "test".into(),
            status: flow_store::LeadStatus::New,
            notes: None,
            assigned_to: None,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    (a, b)
}

#[tokio::test]
async fn row_level_security_isolates_tenants_at_the_sql_level() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let store = app_store(&db, PgOptions::default()).await;
    let (a, b) = two_tenants_with_leads(&store).await;
    store.close().await;

    let mut app = PgConnection::connect(&db.app_url).await.unwrap();
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut app)
            .await
            .unwrap();
    assert!(!superuser && !bypass, "the app role must be subject to RLS");

    // No tenant set: nothing visible, nothing writable.
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(count, 0);
    let insert =
        "INSERT INTO leads (id, tenant_id, first_name, source, status, created_at, updated_at)
                  VALUES (gen_random_uuid(), $1, 'Eve', 'sql', 'NEW', now(), now())";
    let refused = sqlx::query(insert).bind(a.0).execute(&mut app).await;
    assert!(refused.is_err(), "insert without a tenant must be refused");

    // Tenant A set: only A's rows; B's rows neither visible nor writable.
    let mut tx = app.begin().await.unwrap();
    tx.execute(format!("SET LOCAL app.tenant_id = '{}'", a.0).as_str())
        .await
        .unwrap();
    let names: Vec<String> = sqlx::query_scalar("SELECT first_name FROM leads")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(names, ["Ada"]);
    let touched = sqlx::query("UPDATE leads SET notes = 'x' WHERE tenant_id = $1")
        .bind(b.0)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(touched, 0, "B's rows cannot be updated as A");
    let deleted = sqlx::query("DELETE FROM leads WHERE tenant_id = $1")
        .bind(b.0)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 0, "B's rows cannot be deleted as A");
    let mut sp = tx.begin().await.unwrap();
    let cross = sqlx::query(insert).bind(b.0).execute(&mut *sp).await;
    assert!(
        cross.is_err(),
        "inserting a row for B as A must fail WITH CHECK"
    );
    sp.rollback().await.unwrap();
    tx.commit().await.unwrap();

    // After the SET LOCAL transaction ended the setting reads '' and matches nothing.
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(count, 0);

    // The platform functions are the only way across tenants, and app.platform set by the
    // app role itself opens nothing: that policy applies to the owner only.
    app.execute("SET app.platform = 'on'").await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(count, 0);
    app.close().await.unwrap();
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_and_listed_policies() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let mut app = PgConnection::connect(&db.app_url).await.unwrap();
    let rows =
        sqlx::query("SELECT * FROM pg_policies WHERE tablename = 'leads' ORDER BY policyname")
            .fetch_all(&mut app)
            .await
            .unwrap();
    let policies: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get("policyname"), r.get("cmd")))
        .collect();
    assert_eq!(
        policies,
        [
            ("flow_platform".into(), "ALL".into()),
            ("tenant_isolation".into(), "ALL".into())
        ]
    );
    let qual: String = rows[1].get("qual");
    assert!(qual.contains("flow_current_tenant()"), "{qual}");
    let unprotected: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
           AND a.attname = 'tenant_id' AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
    )
    .fetch_all(&mut app)
    .await
    .unwrap();
    assert!(
        unprotected.is_empty(),
        "tables without forced RLS: {unprotected:?}"
    );
    let owner_is_app: bool = sqlx::query_scalar(
        "SELECT pg_get_userbyid(relowner) = 'flow_app' FROM pg_class WHERE relname = 'leads'",
    )
    .fetch_one(&mut app)
    .await
    .unwrap();
    assert!(!owner_is_app, "the serving role must not own the tables");
    app.close().await.unwrap();
}

#[tokio::test]
async fn rls_alone_isolates_when_the_application_filter_is_removed() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let unfiltered = PgOptions {
        unfiltered_lead_list_for_tests: true,
        ..PgOptions::default()
    };
    let store = app_store(&db, unfiltered).await;
    let (a, b) = two_tenants_with_leads(&store).await;
    for (tenant, name) in [(a, "Ada"), (b, "Bob")] {
        let leads = store
            .read(tenant)
            .await
            .unwrap()
            .list_leads(&LeadFilter {
                limit: 100,
                ..LeadFilter::default()
            })
            .await
            .unwrap();
        let names: Vec<_> = leads.iter().map(|l| l.first_name.as_str()).collect();
        assert_eq!(names, [name]);
    }
    store.close().await;

    // The same unfiltered query as the owner without FORCE would see both: prove the
    // switch really removes the filter by reading as the superuser, who bypasses RLS.
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(all, 2);
    admin.close().await.unwrap();
}

#[tokio::test]
async fn cancelled_requests_never_leave_a_transaction_open_on_a_pooled_connection() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let store = app_store(
        &db,
        PgOptions {
            max_connections: 2,
            ..PgOptions::default()
        },
    )
    .await;
    let (a, _) = two_tenants_with_leads(&store).await;
    // Requests dropped at every point of opening their transaction, as a client that
    // hangs up does.
    // Dropped after k wake-ups, k = 0..8: each wake-up is progress on the wire (timers
    // are too coarse to land inside a round trip).
    for i in 0..400usize {
        let limit = i % 9;
        let mut polls = 0;
        let mut opening = std::pin::pin!(store.read(a));
        std::future::poll_fn(|cx| {
            polls += 1;
            match opening.as_mut().poll(cx) {
                std::task::Poll::Pending if polls <= limit => std::task::Poll::Pending,
                _ => std::task::Poll::Ready(()),
            }
        })
        .await;
    }
    // Every connection of the pool is clean: writes work and see only their tenant.
    for _ in 0..10 {
        let mut tx = store.begin(a).await.unwrap();
        tx.append_event(&flow_store::NewEvent::new(
            flow_store::EventType::LeadCreated,
            "test",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    store.close().await;
}

#[tokio::test]
async fn migrating_leaves_functions_of_others_in_the_schema_alone() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // What an extension installed by a superuser looks like to the owner.
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    admin
        .execute("CREATE FUNCTION public.someone_elses() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        .await
        .unwrap();
    admin.close().await.unwrap();
    migrated(&db).await;
    let store = app_store(&db, PgOptions::default()).await;
    store.create_tenant("T", "t").await.unwrap();
    store.close().await;
}

/// The key cache: a revoked key or a deactivated tenant is refused at once by the
/// instance that made the change and, through the NOTIFY, shortly by every other.
#[tokio::test]
async fn cached_keys_are_forgotten_when_revoked_here_or_elsewhere() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let here = app_store(&db, PgOptions::default()).await;
    let elsewhere = app_store(&db, PgOptions::default()).await;
    // Both listen; a listener drops the cache when it connects, so give them time to
    // connect before the changes: what follows must come from the notices.
    here.listen();
    elsewhere.listen();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let tenant = here.create_tenant("Keys", "keys").await.unwrap().id;
    let mut tx = here.begin(tenant).await.unwrap();
    let key = tx
        .insert_api_key(&flow_store::NewApiKey {
            name: "k".into(),
            prefix: "flow_sk_k".into(),
            key_hash: [3; 32],
            permissions: vec!["*".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 60,
        })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let active = |store: PgStore| async move {
        let found = store.find_api_key(&[3; 32]).await.unwrap().unwrap();
        found.key.active && found.tenant_active
    };
    // Both instances have looked the key up (and cached it).
    assert!(active(here.clone()).await && active(elsewhere.clone()).await);
    let eventually_refused = |store: PgStore| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while active(store.clone()).await {
            assert!(
                std::time::Instant::now() < deadline,
                "the change never arrived"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };

    let mut tx = here.begin(tenant).await.unwrap();
    tx.revoke_api_key(key.id).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        !active(here.clone()).await,
        "the revoking instance refuses at once"
    );
    eventually_refused(elsewhere.clone()).await;

    // A deactivated tenant likewise, changed the other way round: the key row itself is
    // unchanged, the tenants trigger sends the notice.
    let mut tx = here.begin(tenant).await.unwrap();
    tx.insert_api_key(&flow_store::NewApiKey {
        name: "k2".into(),
        prefix: "flow_sk_k2".into(),
        key_hash: [4; 32],
        permissions: vec!["*".into()],
        allowed_apps: vec!["*".into()],
        rate_limit_per_minute: 60,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let second_active = |store: PgStore| async move {
        let found = store.find_api_key(&[4; 32]).await.unwrap().unwrap();
        found.tenant_active
    };
    assert!(second_active(here.clone()).await && second_active(elsewhere.clone()).await);
    elsewhere.set_tenant_active(tenant, false).await.unwrap();
    assert!(!second_active(elsewhere.clone()).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while second_active(here.clone()).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the change never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    here.close().await;
    elsewhere.close().await;
}

/// Regression (bench, 2026-11-28): plpgsql caches a plan per connection, and one made
/// while `jobs` was empty turned claims and settlements into scans of the whole table.
/// On one connection that first claims from an empty queue (so any cached plan is an
/// empty-table plan), then fills it, a claim and a settlement must still touch only the
/// rows they take: no sequential scan, and index fetches in proportion to the batch, not
/// to the queue or to the jobs already running.
#[tokio::test]
async fn claims_and_settlements_stay_on_their_indexes_as_the_queue_grows() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let store = app_store(&db, PgOptions::default()).await;
    let tenant = store.create_tenant("Q", "plans").await.unwrap().id;
    store.close().await;

    const BATCH: i64 = 256;
    let claim = "SELECT id, attempts FROM flow_claim_jobs(ARRAY['analytics-processing'], $1, now(), now() + interval '60 seconds')";
    let mut app = PgConnection::connect(&db.app_url).await.unwrap();
    for _ in 0..8 {
        let taken = sqlx::query(claim)
            .bind(BATCH as i32)
            .fetch_all(&mut app)
            .await
            .unwrap();
        assert!(taken.is_empty());
    }
    let mut tx = app.begin().await.unwrap();
    tx.execute(format!("SET LOCAL app.tenant_id = '{}'", tenant.0).as_str())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, tenant_id, queue, kind, payload, priority, queue_priority, state,
                           max_attempts, run_at, created_at, updated_at)
         SELECT gen_random_uuid(), $1, 'analytics-processing', 'ping', '{}', 0, 1, 'ready', 3,
                now() - interval '1 second', now(), now()
         FROM generate_series(1, 4000)",
    )
    .bind(tenant.0)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Jobs already running make a settlement that scans running jobs expensive.
    for _ in 0..4 {
        let taken = sqlx::query(claim)
            .bind(BATCH as i32)
            .fetch_all(&mut app)
            .await
            .unwrap();
        assert_eq!(taken.len() as i64, BATCH);
    }

    // PostgreSQL 15's per-transaction counters also hold the session's earlier, not yet
    // flushed transactions; inside one transaction nothing is flushed, so a difference
    // is exact.
    let counters = "SELECT seq_scan, COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
                    WHERE relname = 'jobs'";
    let mut tx = app.begin().await.unwrap();
    let (seq_before, fetched_before): (i64, i64) =
        sqlx::query_as(counters).fetch_one(&mut *tx).await.unwrap();
    let taken = sqlx::query(claim)
        .bind(BATCH as i32)
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(taken.len() as i64, BATCH);
    let ids: Vec<uuid::Uuid> = taken.iter().map(|row| row.get("id")).collect();
    let attempts: Vec<i32> = taken.iter().map(|row| row.get("attempts")).collect();
    let n = ids.len();
    let settled: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT * FROM flow_settle_jobs($1, $2, $3, $4, $5, $6, now())")
            .bind(&ids)
            .bind(&attempts)
            .bind(vec!["completed"; n])
            .bind(vec![None::<serde_json::Value>; n])
            .bind(vec![None::<chrono::DateTime<chrono::Utc>>; n])
            .bind(vec![None::<serde_json::Value>; n])
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    assert_eq!(settled.len(), n);
    let (seq_after, fetched_after): (i64, i64) =
        sqlx::query_as(counters).fetch_one(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let fetched = fetched_after - fetched_before;
    assert_eq!(
        seq_after, seq_before,
        "a claim or settlement scanned the jobs table"
    );
    assert!(
        fetched <= 4 * BATCH,
        "claiming and settling {BATCH} jobs fetched {fetched} rows through indexes"
    );
}

/// Events and jobs committed through one instance wake the other's dispatchers and
/// workers. The notices are sent after commit by a task of their own; without them the
/// other instance would find the work only at its next poll, which the store never does.
#[tokio::test]
async fn commits_on_one_instance_wake_the_others() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let here = app_store(&db, PgOptions::default()).await;
    let elsewhere = app_store(&db, PgOptions::default()).await;
    let mut notices = elsewhere.commit_notices();
    let mut work = elsewhere.work_notices().expect("PostgreSQL wakes workers");
    elsewhere.listen();
    let tenant = here.create_tenant("Wake", "wake").await.unwrap().id;
    // The listener wakes everyone once when it connects: wait for that, then forget it.
    tokio::time::timeout(std::time::Duration::from_secs(10), work.recv())
        .await
        .expect("the listener connected")
        .unwrap();
    while notices.try_recv().is_ok() {}
    while work.try_recv().is_ok() {}

    let mut tx = here.begin(tenant).await.unwrap();
    tx.enqueue_job(&flow_store::NewJob {
        queue: "analytics-processing".into(),
        queue_priority: 1,
        kind: "ping".into(),
        payload: serde_json::json!({}),
        priority: 0,
        run_at: chrono::Utc::now(),
        max_attempts: 3,
        idempotency_key: None,
        owner: None,
    })
    .await
    .unwrap();
    tx.append_events(&[flow_store::NewEvent::new(
        flow_store::EventType::LeadCreated,
        "crm-web",
        serde_json::json!({}),
    )])
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let within = std::time::Duration::from_secs(10);
    let notice = tokio::time::timeout(within, async {
        loop {
            let notice = notices.recv().await.unwrap();
            if notice.tenant_id == tenant {
                return notice;
            }
        }
    })
    .await
    .expect("the other instance heard of the tenant's events");
    assert!(
        notice.events.is_empty(),
        "another instance reads the events from the log"
    );
    tokio::time::timeout(within, work.recv())
        .await
        .expect("the other instance's workers were woken")
        .unwrap();
    here.close().await;
    elsewhere.close().await;
}

/// PostgreSQL's plan names the index condition, `Index Cond: ((tenant_id = '…'::uuid) AND
/// (email = '…'::text))`; a `Seq Scan` reads the table whole.
fn postgres_uses_index(plan: &str, table: &str, column: &str) -> bool {
    let searched = plan
        .lines()
        .any(|step| step.contains("Index Cond:") && step.contains(&format!("({column} = ")));
    searched && !plan.contains(&format!("Seq Scan on {table}"))
}

#[tokio::test]
async fn postgres_answers_every_hot_lookup_from_an_index() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let store = app_store(&db, PgOptions::default()).await;
    let tenants = flow_store::conformance::seed_for_plans(&store).await;
    store.close().await;
    // Statistics as autovacuum keeps them in production.
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    admin.execute("ANALYZE").await.unwrap();
    admin.close().await.unwrap();
    let plans = flow_store::PlanLog::default();
    let store = app_store(
        &db,
        PgOptions {
            plans_for_tests: Some(plans.clone()),
            ..PgOptions::default()
        },
    )
    .await;
    flow_store::conformance::query_plans(&store, tenants, &plans, postgres_uses_index).await;
    store.close().await;
}

#[tokio::test]
async fn a_deal_names_only_a_lead_of_its_own_tenant_in_sql_too() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let store = app_store(&db, PgOptions::default()).await;
    let (a, b) = two_tenants_with_leads(&store).await;
    let lead_of = |tenant: TenantId| {
        let store = store.clone();
        async move {
            let mut read = store.read(tenant).await.unwrap();
            let filter = LeadFilter {
                limit: 1,
                ..LeadFilter::default()
            };
            read.list_leads(&filter).await.unwrap().remove(0).id
        }
    };
    let (lead_a, lead_b) = (lead_of(a).await, lead_of(b).await);
    let deal = |lead| flow_store::Deal {
        id: flow_store::DealId::new(),
        tenant_id: a,
        title: "Deal".into(),
        amount: 100,
        currency: "DKK".into(),
        stage: None,
        status: flow_store::DealStatus::Open,
        contact_id: None,
        lead_id: Some(lead),
        closed_at: None,
        created_at: flow_store::now(),
        updated_at: flow_store::now(),
    };
    let mut tx = store.begin(a).await.unwrap();
    let refused = tx.insert_deal(&deal(lead_b)).await;
    assert!(
        matches!(
            refused,
            Err(flow_store::StoreError::Constraint(
                flow_store::Constraint::ForeignKey
            ))
        ),
        "{refused:?}"
    );
    drop(tx);

    // Its own lead is fine; deleting that lead unlinks the deal and keeps it.
    let own = deal(lead_a);
    let mut tx = store.begin(a).await.unwrap();
    tx.insert_deal(&own).await.unwrap();
    tx.delete_lead(lead_a).await.unwrap();
    tx.commit().await.unwrap();
    let kept = store.read(a).await.unwrap().get_deal(own.id).await.unwrap();
    assert_eq!(kept.lead_id, None);
    store.close().await;
}

#[tokio::test]
async fn one_tenant_cannot_hold_the_whole_pool() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let store = app_store(
        &db,
        PgOptions {
            max_connections: 4,
            connections_per_tenant: 2,
            acquire_timeout: std::time::Duration::from_millis(300),
            ..PgOptions::default()
        },
    )
    .await;
    let (a, b) = two_tenants_with_leads(&store).await;
    let held = [store.read(a).await.unwrap(), store.read(a).await.unwrap()];
    let started = std::time::Instant::now();
    let refused = store.read(a).await;
    assert!(
        matches!(refused, Err(flow_store::StoreError::Unavailable(_))),
        "a third connection for A: {:?}",
        refused.map(|_| ())
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // B still gets connections, for reading and for writing.
    let mut read_b = store.read(b).await.unwrap();
    read_b
        .list_leads(&LeadFilter {
            limit: 1,
            ..LeadFilter::default()
        })
        .await
        .unwrap();
    store.begin(b).await.unwrap().commit().await.unwrap();
    drop(held);
    store.read(a).await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn a_statement_ends_with_the_request_it_serves() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let store = app_store(&db, PgOptions::default()).await;
    let tenants = flow_store::conformance::seed_for_plans(&store).await;
    // A search no index serves, with a text far longer than the API lets through: slow
    // enough to outlast the short deadline below many times over.
    let slow = LeadFilter {
        text: Some("x".repeat(30_000)),
        limit: 20,
        ..LeadFilter::default()
    };
    let started = std::time::Instant::now();
    store
        .read(tenants.big)
        .await
        .unwrap()
        .list_leads(&slow)
        .await
        .unwrap();
    let unbounded = started.elapsed();
    let deadline = std::time::Instant::now() + unbounded / 10;
    let started = std::time::Instant::now();
    let cut = flow_store::with_deadline(deadline, async {
        store.read(tenants.big).await?.list_leads(&slow).await
    })
    .await;
    assert!(cut.is_err(), "the search outlived its request's deadline");
    assert!(
        started.elapsed() < unbounded / 2,
        "cut after {:?}; the search alone takes {unbounded:?}",
        started.elapsed()
    );
    store.close().await;
}

#[tokio::test]
async fn the_serving_role_has_only_what_serve_uses_and_the_platform_functions_check_arguments() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let store = app_store(&db, PgOptions::default()).await;
    let (a, _) = two_tenants_with_leads(&store).await;
    store.close().await;
    let mut app = PgConnection::connect(&db.app_url).await.unwrap();
    let refused = |sql: &'static str| sql;
    for sql in [
        // The audit trail and the event log are append-only.
        refused("DELETE FROM audit_log"),
        refused("UPDATE audit_log SET action = 'x'"),
        refused("DELETE FROM events"),
        // Accounts cannot be changed or removed; tenants not removed.
        refused("UPDATE users SET password_hash = 'x'"),
        refused("DELETE FROM users"),
        refused("DELETE FROM tenants"),
        refused("UPDATE tenants SET slug = 'x'"),
        // A refresh token cannot be moved to another user, nor a key to another secret.
        refused("UPDATE refresh_tokens SET user_id = gen_random_uuid()"),
        refused("UPDATE api_keys SET key_hash = 'x'"),
        refused("INSERT INTO flow_migrations (version) VALUES (999)"),
    ] {
        let result = app.execute(sql).await;
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("permission denied"), "{sql}: {message:?}");
    }
    for (sql, expected) in [
        (
            "SELECT flow_settle_job(gen_random_uuid(), 1, 'running', NULL, NULL, NULL, now())",
            "settled as completed, dead or ready",
        ),
        (
            "SELECT flow_settle_jobs(ARRAY[gen_random_uuid()], ARRAY[1], ARRAY['bogus'], \
             ARRAY[NULL::jsonb], ARRAY[NULL::timestamptz], ARRAY[NULL::jsonb], now())",
            "settled as completed, dead or ready",
        ),
        (
            "SELECT * FROM flow_claim_jobs(ARRAY['q'], 1000000, now(), now() + interval '1 minute')",
            "1 to 1000 jobs",
        ),
        (
            "SELECT * FROM flow_claim_jobs(ARRAY['q'], 10, now(), now() + interval '1 year')",
            "within a day",
        ),
        (
            "SELECT * FROM flow_claim_jobs(ARRAY['q'], 10, now() + interval '1 day', \
             now() + interval '1 day 1 minute')",
            "from the database clock",
        ),
        (
            "SELECT flow_prune_events(now() + interval '1 hour')",
            "only past events",
        ),
        (
            "SELECT flow_touch_api_key(gen_random_uuid(), now() + interval '1 year')",
            "from the database clock",
        ),
    ] {
        let message = sqlx::query(sql)
            .execute(&mut app)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains(expected), "{sql}: {message:?}");
    }
    // What serving needs still works as this role.
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(a.0.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE leads SET notes = 'ok'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    app.close().await.unwrap();
}

#[tokio::test]
async fn roles_not_held_to_row_level_security_are_named() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let reason = |url: String| async move {
        let store = PgStore::open(&url, &PgOptions::default()).await.unwrap();
        let reason = store.privileged_role().await.unwrap();
        store.close().await;
        reason
    };
    assert_eq!(reason(db.app_url.clone()).await, None);
    let owner = reason(db.owner_url.clone()).await.unwrap_or_default();
    assert!(owner.contains("owns Flow's tables"), "{owner:?}");
    let superuser = reason(db.admin_url.clone()).await.unwrap_or_default();
    assert!(superuser.contains("superuser"), "{superuser:?}");
}

#[tokio::test]
async fn event_notices_name_no_tenant_and_forged_ones_are_dropped() {
    let Some(db) = migrated_database().await else {
        return;
    };
    let options = PgOptions {
        notice_key: flow_store_postgres::NoticeKey(b"a cluster's shared key".to_vec()),
        ..PgOptions::default()
    };
    let writer = app_store(&db, options.clone()).await;
    let reader = app_store(&db, options).await;
    let mut notices = reader.commit_notices();
    reader.listen();
    // The listener announces itself with a notice for every tenant once it listens.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.tenant_id,
        flow_store::CommitNotice::all_tenants().tenant_id
    );
    // Any role that can connect may listen: what it hears names no tenant.
    let mut spy = sqlx::postgres::PgListener::connect(&db.app_url)
        .await
        .unwrap();
    spy.listen("flow_events").await.unwrap();

    let (a, _) = two_tenants_with_leads(&writer).await;
    let mut tx = writer.begin(a).await.unwrap();
    tx.append_event(&flow_store::NewEvent::new(
        flow_store::EventType::LeadCreated,
        "crm-web",
        serde_json::json!({}),
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), spy.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !heard.payload().contains(&a.0.to_string()),
        "{}",
        heard.payload()
    );
    // Another instance with the key knows which tenant it was.
    let notice = tokio::time::timeout(std::time::Duration::from_secs(10), notices.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notice.tenant_id, a);

    // Forged notices, by tenant id or by a made-up tag, reach no one.
    let mut forger = PgConnection::connect(&db.app_url).await.unwrap();
    for payload in [
        format!("forger {}", a.0),
        "forger 00112233445566778899aabbccddeeff".to_owned(),
    ] {
        sqlx::query("SELECT pg_notify('flow_events', $1)")
            .bind(payload)
            .execute(&mut forger)
            .await
            .unwrap();
    }
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(500), notices.recv()).await;
    assert!(
        nothing.is_err(),
        "a forged notice went through: {nothing:?}"
    );
    forger.close().await.unwrap();
    writer.close().await;
    reader.close().await;
}
