//! The audit trail and the per-tenant event log.

use serde_json::json;

use crate::helpers::{send, spawn_app};

#[tokio::test]
async fn every_change_writes_an_audit_entry_with_who_and_what() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let request = app
        .client
        .post(app.url("/leads"))
        .header("x-tenant-key", key)
        .header("x-source-app", "crm-web")
        .header("x-request-id", "req-audit-1")
        .json(&json!({"firstName": "Audited", "email": "audited@example.com"}));
    let lead = send(request).await.expect(201).body;
    let lead_id = lead["id"].as_str().unwrap();
    app.patch(
        &format!("/leads/{lead_id}"),
        key,
        json!({"company": "Audit A/S"}),
    )
    .await
    .expect(200);

    let trail = app
        .get(&format!("/audit?entityId={lead_id}"), key)
        .await
        .expect(200)
        .body;
    let entries = trail["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let (update, create) = (&entries[0], &entries[1]);
    assert_eq!(create["action"], "lead.create");
    assert_eq!(create["actor"]["type"], "api_key");
    assert_eq!(create["sourceApp"], "crm-web");
    assert_eq!(create["requestId"], "req-audit-1");
    assert!(create["before"].is_null());
    assert_eq!(create["after"]["firstName"], "Audited");
    assert_eq!(update["action"], "lead.update");
    assert!(update["before"]["company"].is_null());
    assert_eq!(update["after"]["company"], "Audit A/S");
    assert_eq!(
        update["sourceApp"], "api",
        "no x-source-app header: the default app"
    );
}

#[tokio::test]
async fn the_event_log_is_gap_free_ordered_and_shaped_like_the_spec() {
    let app = spawn_app().await;
    let key = &app.a.key;
    for i in 0..5 {
        app.create_lead(key, &format!("Lead{i}"), Some(&format!("l{i}@example.com")))
            .await;
    }
    let log = app.get("/events/log", key).await.expect(200).body;
    let events = log["data"].as_array().unwrap();
    // TENANT_CREATED, then a CONTACT_CREATED and a LEAD_CREATED per lead.
    assert_eq!(events.len(), 11);
    for (i, entry) in events.iter().enumerate() {
        assert_eq!(
            entry["seq"],
            i as i64 + 1,
            "sequence numbers are 1, 2, 3, ..."
        );
    }
    assert_eq!(log["lastSeq"], 11);
    let created = &events[2]["event"];
    assert_eq!(created["type"], "LEAD_CREATED");
    assert_eq!(created["source"], "api");
    assert_eq!(created["target"], json!(["crm-web", "flow-web"]));
    assert_eq!(created["tenantId"], app.a.tenant.id.to_string());
    assert_eq!(created["priority"], "medium");
    assert!(created["id"].is_string() && created["timestamp"].is_string());
    assert_eq!(created["data"]["lead"]["firstName"], "Lead0");

    let tail = app
        .get("/events/log?since=9&limit=1", key)
        .await
        .expect(200)
        .body;
    assert_eq!(tail["data"].as_array().unwrap().len(), 1);
    assert_eq!(tail["data"][0]["seq"], 10);
    app.get("/events/log?since=-1", key)
        .await
        .expect_error(400, "invalid_since");
    app.get("/events/log?limit=5000", key)
        .await
        .expect_error(400, "invalid_limit");
}

#[tokio::test]
async fn a_failed_write_leaves_no_audit_entry_or_event() {
    let app = spawn_app().await;
    let key = &app.a.key;
    app.post("/contacts", key, json!({"email": "same@example.com"}))
        .await
        .expect(201);
    let before = app.get("/events/log", key).await.expect(200).body["lastSeq"].clone();
    app.post("/contacts", key, json!({"email": "same@example.com"}))
        .await
        .expect_error(409, "contact_email_exists");
    let after = app.get("/events/log", key).await.expect(200).body["lastSeq"].clone();
    assert_eq!(before, after);
    let audit = app.list_all("/audit", key).await;
    let creates = audit
        .iter()
        .filter(|e| e["action"] == "contact.create")
        .count();
    assert_eq!(creates, 1);
}

#[tokio::test]
async fn the_event_log_shows_only_what_the_callers_grants_let_it_read() {
    let app = spawn_app().await;
    let contacts_only = app
        .key_for_a(flow_app::services::keys::KeySpec {
            name: "contacts feed".into(),
            permissions: vec!["read:events".into(), "read:contacts".into()],
            allowed_apps: vec!["contacts-feed".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    app.create_lead(&app.a.key, "Ada", Some("ada@example.com"))
        .await;
    app.create_lead(&app.a.key, "Bo", None).await;
    let everything = app.get("/events/log", &app.a.key).await.expect(200).body;
    let types = |page: &serde_json::Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(types(&everything).contains(&"LEAD_CREATED".to_owned()));
    let reply = send(
        app.client
            .get(app.url("/events/log"))
            .header("x-tenant-key", &contacts_only)
            .header("x-source-app", "contacts-feed"),
    )
    .await
    .expect(200);
    let seen = types(&reply.body);
    assert_eq!(
        seen,
        ["CONTACT_CREATED", "CONTACT_CREATED"],
        "{}",
        reply.body
    );
    // Paging goes on past the events left out.
    assert_eq!(reply.body["nextSince"], everything["lastSeq"]);
}

#[tokio::test]
async fn reading_the_log_from_before_pruned_events_says_so() {
    let app = spawn_app().await;
    app.create_lead(&app.a.key, "Old", None).await;
    let before = app.get("/events/log", &app.a.key).await.expect(200).body;
    assert_eq!(before["resyncRequired"], false, "{before}");
    // Retention removes every event so far; new ones follow.
    app.store.prune_events(chrono::Utc::now()).await.unwrap();
    app.create_lead(&app.a.key, "New", None).await;
    let after = app
        .get("/events/log?since=0", &app.a.key)
        .await
        .expect(200)
        .body;
    assert_eq!(after["resyncRequired"], true, "{after}");
    let oldest = after["oldestSeq"].as_i64().unwrap();
    assert!(oldest > before["lastSeq"].as_i64().unwrap(), "{after}");
    assert_eq!(after["data"][0]["seq"], oldest);
    // Reading on from where the log now starts is no gap.
    let on = app
        .get(&format!("/events/log?since={}", oldest - 1), &app.a.key)
        .await
        .expect(200)
        .body;
    assert_eq!(on["resyncRequired"], false, "{on}");
}
