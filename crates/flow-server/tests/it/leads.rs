//! Leads: the lead-to-contact flow, the status machine, updates, assignment, deletion.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn creating_a_lead_links_a_new_contact_and_logs_an_activity() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let lead = app
        .post(
            "/leads",
            key,
            json!({"firstName": "Jane", "lastName": "Doe", "email": " Jane.Doe@Example.COM ",
                   "phone": "+45 12 34 56 78", "company": "Acme", "source": "Website"}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(lead["status"], "NEW");
    assert_eq!(
        lead["email"], "jane.doe@example.com",
        "emails are normalised"
    );
    assert_eq!(lead["source"], "website");
    let contact_id = lead["contactId"]
        .as_str()
        .expect("response carries the contact id");

    let contact = app
        .get(&format!("/contacts/{contact_id}"), key)
        .await
        .expect(200)
        .body;
    assert_eq!(contact["email"], "jane.doe@example.com");
    assert_eq!(contact["firstName"], "Jane");
    assert_eq!(contact["phone"], "+45 12 34 56 78");

    let lead_id = lead["id"].as_str().unwrap();
    let activities = app
        .get(
            &format!("/activities?entityId={lead_id}&type=LEAD_CREATED"),
            key,
        )
        .await
        .expect(200)
        .body;
    let activities = activities["data"].as_array().unwrap();
    assert_eq!(activities.len(), 1);
    assert_eq!(activities[0]["entityType"], "lead");
    assert_eq!(activities[0]["data"]["contactId"], contact_id);
}

#[tokio::test]
async fn a_second_lead_with_the_same_email_reuses_the_contact() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let first = app.create_lead(key, "Jane", Some("jane@example.com")).await;
    let second = app
        .create_lead(key, "Janet", Some("JANE@example.com"))
        .await;
    assert_eq!(first["contactId"], second["contactId"]);
    let contacts = app
        .get("/contacts?email=Jane@Example.com", key)
        .await
        .expect(200)
        .body;
    assert_eq!(contacts["data"].as_array().unwrap().len(), 1);
    // A lead without email still gets a contact of its own.
    let third = app.create_lead(key, "Nomail", None).await;
    assert!(third["contactId"].is_string());
    assert_ne!(third["contactId"], first["contactId"]);
}

#[tokio::test]
async fn the_status_machine_allows_only_its_transitions() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let lead = app.create_lead(key, "Sam", Some("sam@example.com")).await;
    let path = format!("/leads/{}/status", lead["id"].as_str().unwrap());

    app.patch(&path, key, json!({"status": "QUALIFIED"}))
        .await
        .expect_error(409, "invalid_status_transition");
    app.patch(&path, key, json!({"status": "CONVERTED"}))
        .await
        .expect_error(409, "invalid_status_transition");
    app.patch(&path, key, json!({"status": "BOGUS"}))
        .await
        .expect_error(422, "validation_failed");

    for status in ["CONTACTED", "QUALIFIED", "CONVERTED"] {
        let lead = app
            .patch(&path, key, json!({"status": status}))
            .await
            .expect(200)
            .body;
        assert_eq!(lead["status"], status);
    }
    // Repeating the current status is a harmless no-op.
    app.patch(&path, key, json!({"status": "CONVERTED"}))
        .await
        .expect(200);
    app.patch(&path, key, json!({"status": "NEW"}))
        .await
        .expect_error(409, "invalid_status_transition");
    let lost = app
        .patch(
            &path,
            key,
            json!({"status": "LOST", "reason": "went with a competitor"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(lost["status"], "LOST");
    for status in ["NEW", "CONTACTED", "QUALIFIED", "CONVERTED"] {
        app.patch(&path, key, json!({"status": status}))
            .await
            .expect_error(409, "invalid_status_transition");
    }

    let changes = app
        .get(
            &format!(
                "/activities?entityId={}&type=STATUS_CHANGED",
                lead["id"].as_str().unwrap()
            ),
            key,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(
        changes["data"].as_array().unwrap().len(),
        4,
        "one activity per real change"
    );
    assert_eq!(
        changes["data"][0]["data"]["reason"],
        "went with a competitor"
    );
}

#[tokio::test]
async fn any_open_lead_can_be_lost() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let lead = app.create_lead(key, "Lou", None).await;
    let path = format!("/leads/{}/status", lead["id"].as_str().unwrap());
    app.patch(&path, key, json!({"status": "LOST"}))
        .await
        .expect(200);
}

#[tokio::test]
async fn patch_changes_only_the_fields_sent_and_null_clears() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let lead = app
        .post(
            "/leads",
            key,
            json!({"firstName": "Ann", "company": "Old Co", "notes": "hello"}),
        )
        .await
        .expect(201)
        .body;
    let path = format!("/leads/{}", lead["id"].as_str().unwrap());
    let updated = app
        .patch(&path, key, json!({"company": "New Co", "notes": null}))
        .await
        .expect(200)
        .body;
    assert_eq!(updated["company"], "New Co");
    assert_eq!(updated["notes"], serde_json::Value::Null);
    assert_eq!(updated["firstName"], "Ann");
    assert_eq!(
        app.get(&path, key).await.expect(200).body["company"],
        "New Co"
    );
    // The status is not a plain field.
    app.patch(&path, key, json!({"status": "LOST"}))
        .await
        .expect_error(422, "validation_failed");
}

#[tokio::test]
async fn assign_and_delete() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let lead = app.create_lead(key, "Bo", None).await;
    let id = lead["id"].as_str().unwrap();
    let assigned = app
        .post(
            &format!("/leads/{id}/assign"),
            key,
            json!({"assignee": "mette@example.com"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(assigned["assignedTo"], "mette@example.com");
    let unassigned = app
        .post(
            &format!("/leads/{id}/assign"),
            key,
            json!({"assignee": null}),
        )
        .await
        .expect(200)
        .body;
    assert!(unassigned["assignedTo"].is_null());

    app.delete(&format!("/leads/{id}"), key).await.expect(204);
    app.get(&format!("/leads/{id}"), key)
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/leads/{id}"), key)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn list_filters_by_status_source_text_and_date() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let web = app
        .post(
            "/leads",
            key,
            json!({"firstName": "Web", "company": "Fjord ApS", "source": "website"}),
        )
        .await
        .expect(201)
        .body;
    let cutoff = web["createdAt"].as_str().unwrap().to_owned();
    let voice = app
        .post(
            "/leads",
            key,
            json!({"firstName": "Voice", "email": "v@example.com", "source": "voice"}),
        )
        .await
        .expect(201)
        .body;
    app.patch(
        &format!("/leads/{}/status", voice["id"].as_str().unwrap()),
        key,
        json!({"status": "CONTACTED"}),
    )
    .await
    .expect(200);

    let only = |reply: crate::helpers::Reply| -> Vec<String> {
        reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["firstName"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        only(app.get("/leads?status=NEW", key).await.expect(200)),
        ["Web"]
    );
    assert_eq!(
        only(app.get("/leads?status=CONTACTED", key).await.expect(200)),
        ["Voice"]
    );
    assert_eq!(
        only(app.get("/leads?source=voice", key).await.expect(200)),
        ["Voice"]
    );
    assert_eq!(
        only(app.get("/leads?q=fjord", key).await.expect(200)),
        ["Web"]
    );
    assert_eq!(
        only(app.get("/leads?q=V%40EXAMPLE", key).await.expect(200)),
        ["Voice"]
    );
    // Wildcards in the search text are literal.
    assert!(only(app.get("/leads?q=%25", key).await.expect(200)).is_empty());
    assert!(only(app.get("/leads?q=_", key).await.expect(200)).is_empty());
    let after = format!("/leads?createdAfter={}", cutoff.replace('+', "%2B"));
    assert_eq!(only(app.get(&after, key).await.expect(200)), ["Voice"]);
    assert_eq!(
        only(app.get("/leads", key).await.expect(200)),
        ["Voice", "Web"],
        "newest first"
    );
}

#[tokio::test]
async fn the_api_is_also_mounted_under_api_v1() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let lead = app
        .post("/api/v1/leads", key, json!({"firstName": "Versioned"}))
        .await
        .expect(201)
        .body;
    let fetched = app
        .get(
            &format!("/api/v1/leads/{}", lead["id"].as_str().unwrap()),
            key,
        )
        .await
        .expect(200);
    assert_eq!(fetched.body["firstName"], "Versioned");
    let listed = app.get("/leads", key).await.expect(200);
    assert_eq!(listed.body["data"][0]["id"], lead["id"]);
}
