//! Activities and deals.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn activities_are_logged_on_existing_entities_and_filtered() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let lead = app.create_lead(key, "Act", None).await;
    let lead_id = lead["id"].as_str().unwrap();
    let call = app
        .post(
            "/activities",
            key,
            json!({"type": "call", "entityType": "lead", "entityId": lead_id,
            "description": "Discussed pricing", "data": {"durationSeconds": 300}}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(call["type"], "CALL");
    assert_eq!(call["data"]["durationSeconds"], 300);
    app.post(
        "/activities",
        key,
        json!({"type": "NOTE", "entityType": "lead", "entityId": lead_id}),
    )
    .await
    .expect(201);

    let calls = app
        .get(&format!("/activities?entityId={lead_id}&type=CALL"), key)
        .await
        .expect(200)
        .body;
    assert_eq!(calls["data"].as_array().unwrap().len(), 1);
    let all = app
        .get(&format!("/activities?entityId={lead_id}"), key)
        .await
        .expect(200)
        .body;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        3,
        "CALL, NOTE and LEAD_CREATED"
    );

    let missing = uuid::Uuid::now_v7();
    app.post(
        "/activities",
        key,
        json!({"type": "CALL", "entityType": "lead", "entityId": missing}),
    )
    .await
    .expect_error(404, "not_found");
    app.post(
        "/activities",
        key,
        json!({"type": "CALL", "entityType": "contact", "entityId": lead_id}),
    )
    .await
    .expect_error(404, "not_found");
    app.post(
        "/activities",
        key,
        json!({"type": "CALL", "entityType": "lead", "entityId": lead_id, "data": [1]}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.post(
        "/activities",
        key,
        json!({"type": "not a type!", "entityType": "lead", "entityId": lead_id}),
    )
    .await
    .expect_error(422, "validation_failed");
}

#[tokio::test]
async fn deals_open_and_close_as_won_or_lost() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let lead = app
        .create_lead(key, "Buyer", Some("buyer@example.com"))
        .await;
    let deal = app
        .post(
            "/deals",
            key,
            json!({"title": "Annual plan", "amount": 1200000, "currency": "dkk",
            "contactId": lead["contactId"], "leadId": lead["id"], "stage": "proposal"}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(deal["status"], "OPEN");
    assert_eq!(deal["currency"], "DKK");
    let path = format!("/deals/{}", deal["id"].as_str().unwrap());

    let won = app
        .patch(&path, key, json!({"status": "WON"}))
        .await
        .expect(200)
        .body;
    assert_eq!(won["status"], "WON");
    assert!(won["closedAt"].is_string());
    app.patch(&path, key, json!({"status": "LOST"}))
        .await
        .expect_error(409, "invalid_status_transition");
    let reopened = app
        .patch(&path, key, json!({"status": "OPEN", "amount": 900000}))
        .await
        .expect(200)
        .body;
    assert!(reopened["closedAt"].is_null());
    assert_eq!(reopened["amount"], 900000);
    app.patch(&path, key, json!({"status": "LOST"}))
        .await
        .expect(200);

    let lost = app.get("/deals?status=LOST", key).await.expect(200).body;
    assert_eq!(lost["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/deals?status=OPEN", key).await.expect(200).body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let log = app.get("/events/log", key).await.expect(200).body;
    let types: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"DEAL_CREATED"));
    assert!(types.contains(&"DEAL_WON"));
    assert!(types.contains(&"DEAL_LOST"));

    app.post("/deals", key, json!({"title": "Negative", "amount": -1}))
        .await
        .expect_error(422, "validation_failed");
    app.post(
        "/deals",
        key,
        json!({"title": "Bad currency", "amount": 1, "currency": "KRONER"}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.post(
        "/deals",
        key,
        json!({"title": "Ghost contact", "amount": 1, "contactId": uuid::Uuid::now_v7()}),
    )
    .await
    .expect_error(404, "not_found");
}
