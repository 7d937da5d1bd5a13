//! Contacts: uniqueness by email, sync (upsert) and merge.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn emails_are_unique_per_tenant() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let contact = app
        .post(
            "/contacts",
            key,
            json!({"firstName": "Ole", "email": "OLE@example.dk"}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(contact["email"], "ole@example.dk");
    app.post(
        "/contacts",
        key,
        json!({"firstName": "Ole 2", "email": "ole@EXAMPLE.dk "}),
    )
    .await
    .expect_error(409, "contact_email_exists");
    // The other tenant may have the same email: uniqueness is per tenant and leaks nothing.
    app.post(
        "/contacts",
        &app.b.key,
        json!({"firstName": "Ole", "email": "ole@example.dk"}),
    )
    .await
    .expect(201);
    let found = app
        .get("/contacts?email=ole@example.dk", key)
        .await
        .expect(200)
        .body;
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["id"], contact["id"]);
}

#[tokio::test]
async fn sync_creates_then_updates_by_email() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let created = app
        .post(
            "/contacts/sync",
            key,
            json!({"email": "kim@example.com", "firstName": "Kim"}),
        )
        .await
        .expect(201)
        .body;
    let updated = app
        .post(
            "/contacts/sync",
            key,
            json!({"email": "KIM@example.com", "phone": "+45 11 22 33 44", "consent": true}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["firstName"], "Kim", "fields not sent are kept");
    assert_eq!(updated["phone"], "+45 11 22 33 44");
    assert_eq!(updated["consent"], true);
    app.post("/contacts/sync", key, json!({"firstName": "No email"}))
        .await
        .expect_error(422, "validation_failed");
    let all = app.list_all("/contacts", key).await;
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn patch_updates_a_contact_and_keeps_emails_unique() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let one = app
        .post("/contacts", key, json!({"email": "one@example.com"}))
        .await
        .expect(201)
        .body;
    app.post("/contacts", key, json!({"email": "two@example.com"}))
        .await
        .expect(201);
    let path = format!("/contacts/{}", one["id"].as_str().unwrap());
    let patched = app
        .patch(
            &path,
            key,
            json!({"company": "Nordic A/S", "lastName": "Hansen"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(patched["company"], "Nordic A/S");
    app.patch(&path, key, json!({"email": "two@example.com"}))
        .await
        .expect_error(409, "contact_email_exists");
    assert_eq!(
        app.get(&path, key).await.expect(200).body["email"],
        "one@example.com"
    );
}

#[tokio::test]
async fn merge_moves_leads_activities_and_deals_and_removes_the_source() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let target = app
        .post(
            "/contacts",
            key,
            json!({"firstName": "Keep", "email": "keep@example.com"}),
        )
        .await
        .expect(201)
        .body;
    let lead = app.create_lead(key, "Dup", Some("dup@example.com")).await;
    let source_id = lead["contactId"].as_str().unwrap().to_owned();
    app.patch(
        &format!("/contacts/{source_id}"),
        key,
        json!({"phone": "+45 99 88 77 66"}),
    )
    .await
    .expect(200);
    app.post("/activities", key, json!({"type": "CALL", "entityType": "contact", "entityId": source_id, "description": "called"}))
        .await
        .expect(201);
    app.post(
        "/deals",
        key,
        json!({"title": "Big one", "amount": 100000, "contactId": source_id}),
    )
    .await
    .expect(201);

    let target_id = target["id"].as_str().unwrap();
    let merged = app
        .post(
            &format!("/contacts/{target_id}/merge"),
            key,
            json!({"sourceContactId": source_id}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(merged["movedLeads"], 1);
    assert_eq!(merged["movedActivities"], 1);
    assert_eq!(merged["movedDeals"], 1);
    assert_eq!(
        merged["contact"]["phone"], "+45 99 88 77 66",
        "missing fields come from the source"
    );
    assert_eq!(
        merged["contact"]["email"], "keep@example.com",
        "the target's own fields win"
    );

    app.get(&format!("/contacts/{source_id}"), key)
        .await
        .expect_error(404, "not_found");
    let lead_now = app
        .get(&format!("/leads/{}", lead["id"].as_str().unwrap()), key)
        .await
        .expect(200)
        .body;
    assert_eq!(lead_now["contactId"], target_id);
    let activities = app
        .get(&format!("/activities?entityId={target_id}"), key)
        .await
        .expect(200)
        .body;
    assert_eq!(activities["data"][0]["description"], "called");
    let deals = app
        .get(&format!("/deals?contactId={target_id}"), key)
        .await
        .expect(200)
        .body;
    assert_eq!(deals["data"].as_array().unwrap().len(), 1);

    let log = app.get("/events/log", key).await.expect(200).body;
    let merge_event = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["type"] == "CONTACT_MERGED")
        .expect("a CONTACT_MERGED event");
    assert_eq!(
        merge_event["event"]["data"]["mergedContactId"],
        source_id.as_str()
    );

    app.post(
        &format!("/contacts/{target_id}/merge"),
        key,
        json!({"sourceContactId": target_id}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.post(
        &format!("/contacts/{target_id}/merge"),
        key,
        json!({"sourceContactId": source_id}),
    )
    .await
    .expect_error(404, "not_found");
}
