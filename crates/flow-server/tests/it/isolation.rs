//! Tenant isolation: for every endpoint, tenant B can neither read, change, list nor
//! infer tenant A's rows. Another tenant's id answers exactly like a missing one.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, Reply, TestApp};

struct RowsOfA {
    lead: String,
    contact: String,
    deal: String,
    activity: String,
}

async fn rows_of_a(app: &TestApp) -> RowsOfA {
    let key = &app.a.key;
    let lead = app
        .create_lead(key, "Secret", Some("secret@a.example"))
        .await;
    let deal = app
        .post(
            "/deals",
            key,
            json!({"title": "A's deal", "amount": 5, "contactId": lead["contactId"]}),
        )
        .await
        .expect(201)
        .body;
    let activity = app
        .post("/activities", key, json!({"type": "NOTE", "entityType": "lead", "entityId": lead["id"], "description": "secret note"}))
        .await
        .expect(201)
        .body;
    RowsOfA {
        lead: lead["id"].as_str().unwrap().into(),
        contact: lead["contactId"].as_str().unwrap().into(),
        deal: deal["id"].as_str().unwrap().into(),
        activity: activity["id"].as_str().unwrap().into(),
    }
}

/// The body without the request id, which differs per request.
fn normalized(reply: &Reply) -> (u16, Value) {
    let mut body = reply.body.clone();
    body["error"]["request_id"] = Value::Null;
    (reply.status.as_u16(), body)
}

#[tokio::test]
async fn tenant_b_cannot_read_change_or_use_tenant_a_rows() {
    let app = spawn_app().await;
    let a = rows_of_a(&app).await;
    let b = &app.b.key;
    let missing = uuid::Uuid::now_v7().to_string();
    let b_contact = app
        .post(
            "/contacts",
            b,
            json!({"firstName": "B", "email": "b@b.example"}),
        )
        .await
        .expect(201)
        .body;
    let b_contact = b_contact["id"].as_str().unwrap().to_owned();

    // Each request names A's row; the same request with a missing id must answer the same.
    let probes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/leads/{}", a.lead), None),
        (
            "PATCH",
            format!("/leads/{}", a.lead),
            Some(json!({"firstName": "Hacked"})),
        ),
        (
            "PATCH",
            format!("/leads/{}/status", a.lead),
            Some(json!({"status": "LOST"})),
        ),
        (
            "POST",
            format!("/leads/{}/assign", a.lead),
            Some(json!({"assignee": "mallory"})),
        ),
        ("DELETE", format!("/leads/{}", a.lead), None),
        ("GET", format!("/contacts/{}", a.contact), None),
        (
            "PATCH",
            format!("/contacts/{}", a.contact),
            Some(json!({"company": "Hacked"})),
        ),
        (
            "POST",
            format!("/contacts/{}/merge", a.contact),
            Some(json!({"sourceContactId": b_contact})),
        ),
        (
            "POST",
            format!("/contacts/{b_contact}/merge"),
            Some(json!({"sourceContactId": a.contact})),
        ),
        ("GET", format!("/deals/{}", a.deal), None),
        (
            "PATCH",
            format!("/deals/{}", a.deal),
            Some(json!({"status": "WON"})),
        ),
        (
            "POST",
            "/activities".into(),
            Some(json!({"type": "NOTE", "entityType": "lead", "entityId": a.lead})),
        ),
        (
            "POST",
            "/activities".into(),
            Some(json!({"type": "NOTE", "entityType": "contact", "entityId": a.contact})),
        ),
        (
            "POST",
            "/activities".into(),
            Some(json!({"type": "NOTE", "entityType": "deal", "entityId": a.deal})),
        ),
        (
            "POST",
            "/deals".into(),
            Some(json!({"title": "x", "amount": 1, "contactId": a.contact})),
        ),
        (
            "POST",
            "/deals".into(),
            Some(json!({"title": "x", "amount": 1, "leadId": a.lead})),
        ),
    ];
    for (method, path, body) in probes {
        let method: reqwest::Method = method.parse().unwrap();
        let as_b = app.call(method.clone(), &path, Some(b), body.clone()).await;
        assert_eq!(as_b.status.as_u16(), 404, "{method} {path}: {}", as_b.body);
        let swap = |s: &str| {
            s.replace(&a.lead, &missing)
                .replace(&a.contact, &missing)
                .replace(&a.deal, &missing)
        };
        let missing_body = body.map(|b| serde_json::from_str(&swap(&b.to_string())).unwrap());
        let as_missing = app
            .call(method.clone(), &swap(&path), Some(b), missing_body)
            .await;
        assert_eq!(
            normalized(&as_b),
            normalized(&as_missing),
            "{method} {path}: B can tell A's row from a missing one"
        );
    }

    // Lists and logs of B show nothing of A.
    let a_ids = [&a.lead, &a.contact, &a.deal, &a.activity];
    for path in [
        "/leads".to_owned(),
        "/leads?q=secret".to_owned(),
        "/contacts".to_owned(),
        "/contacts?email=secret@a.example".to_owned(),
        "/deals".to_owned(),
        "/activities".to_owned(),
        format!("/activities?entityId={}", a.lead),
        format!("/audit?entityId={}", a.lead),
        "/audit".to_owned(),
        "/events/log".to_owned(),
    ] {
        let reply = app.get(&path, b).await.expect(200);
        let text = reply.body.to_string();
        for id in a_ids {
            assert!(!text.contains(id.as_str()), "{path} leaks {id}: {text}");
        }
        assert!(!text.contains("secret"), "{path} leaks A's data: {text}");
        assert!(
            !text.contains(&app.a.tenant.id.to_string()),
            "{path} leaks A's tenant id"
        );
    }

    // B using A's email creates B's own contact: no conflict that would reveal A's data.
    let own = app.create_lead(b, "Mine", Some("secret@a.example")).await;
    assert_ne!(own["contactId"].as_str().unwrap(), a.contact);

    // And A's rows are untouched.
    let key = &app.a.key;
    let lead = app
        .get(&format!("/leads/{}", a.lead), key)
        .await
        .expect(200)
        .body;
    assert_eq!(lead["firstName"], "Secret");
    assert_eq!(lead["status"], "NEW");
    assert!(lead["assignedTo"].is_null());
    let contact = app
        .get(&format!("/contacts/{}", a.contact), key)
        .await
        .expect(200)
        .body;
    assert!(contact["company"].is_null());
    assert_eq!(
        app.get(&format!("/deals/{}", a.deal), key)
            .await
            .expect(200)
            .body["status"],
        "OPEN"
    );
    let notes = app
        .get(&format!("/activities?entityId={}", a.lead), key)
        .await
        .expect(200)
        .body;
    assert_eq!(
        notes["data"].as_array().unwrap().len(),
        2,
        "LEAD_CREATED and A's own note only"
    );
}
