//! The spec's testSecurityEventPropagation, through the API, and the incident lifecycle.

use flow_app::services::keys::KeySpec;
use serde_json::{json, Value};

use crate::helpers::{send, spawn_app, TestApp};

async fn key(app: &TestApp, app_name: &str, permissions: &[&str]) -> String {
    app.key_for_a(KeySpec {
        name: app_name.into(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        allowed_apps: vec![app_name.into()],
        rate_limit_per_minute: 1000,
    })
    .await
}

async fn as_app(
    app: &TestApp,
    key: &str,
    source_app: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> crate::helpers::Reply {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("x-tenant-key", key)
        .header("x-source-app", source_app);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

#[tokio::test]
async fn security_event_propagation_as_the_spec_tests_it() {
    let app = spawn_app().await;
    let secure = key(
        &app,
        "secure-platform",
        &["write:incidents", "read:security"],
    )
    .await;
    let dashboard = key(
        &app,
        "business-dashboard",
        &["read:metrics", "read:analytics"],
    )
    .await;
    let flow_api = key(&app, "flow-web", &["read:activities", "read:events"]).await;

    // 1. The Secure Platform reports an incident.
    let incident = as_app(&app, &secure, "secure-platform", reqwest::Method::POST, "/compliance/report",
        Some(json!({"type": "data_breach", "severity": "high", "description": "Test security incident"})))
        .await
        .expect(201)
        .body;
    let incident_id = incident["id"].as_str().unwrap();
    assert_eq!(incident["status"], "open");
    assert_eq!(incident["reportedBy"], "secure-platform");

    // 2. The event went out, to the right rooms, with the severity's priority (read by
    // the tenant's admin key: flow-web's grants do not cover security events).
    let log = as_app(
        &app,
        &app.a.key,
        "flow-web",
        reqwest::Method::GET,
        "/events/log",
        None,
    )
    .await
    .expect(200)
    .body;
    let event = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event"])
        .find(|e| e["type"] == "SECURITY_INCIDENT")
        .expect("a SECURITY_INCIDENT event");
    assert_eq!(event["priority"], "high");
    assert_eq!(
        event["target"],
        json!(["secure-platform", "business-dashboard"])
    );
    assert_eq!(event["data"]["incident"]["id"], incident_id);

    // 3. The incident was logged as an activity in Flow.
    let activities = as_app(
        &app,
        &flow_api,
        "flow-web",
        reqwest::Method::GET,
        &format!("/activities?type=SECURITY_INCIDENT&entityId={incident_id}"),
        None,
    )
    .await
    .expect(200)
    .body;
    assert_eq!(activities["data"].as_array().unwrap().len(), 1);

    // 4. The dashboard's security metrics count it.
    let metrics = as_app(
        &app,
        &dashboard,
        "business-dashboard",
        reqwest::Method::GET,
        "/metrics/security",
        None,
    )
    .await
    .expect(200)
    .body;
    assert!(metrics["activeIncidents"].as_u64().unwrap() > 0);
    assert_eq!(metrics["activeBySeverity"]["high"], 1);
    assert_eq!(metrics["highestActiveSeverity"], "high");
}

#[tokio::test]
async fn incidents_resolve_and_stay_within_their_tenant() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let critical = app
        .post("/compliance/report", key, json!({"type": "brute_force", "severity": "critical", "description": "500 failed logins"}))
        .await
        .expect(201)
        .body;
    let id = critical["id"].as_str().unwrap();
    let log = app.get("/events/log", key).await.expect(200).body;
    let last = log["data"].as_array().unwrap().last().unwrap();
    assert_eq!(last["event"]["priority"], "critical");

    assert_eq!(
        app.get("/incidents?status=open", key)
            .await
            .expect(200)
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.get(&format!("/incidents/{id}"), &app.b.key)
        .await
        .expect_error(404, "not_found");
    app.patch(
        &format!("/incidents/{id}"),
        &app.b.key,
        json!({"status": "resolved"}),
    )
    .await
    .expect_error(404, "not_found");
    assert_eq!(
        app.get("/metrics/security", &app.b.key)
            .await
            .expect(200)
            .body["activeIncidents"],
        0
    );

    let resolved = app
        .patch(
            &format!("/incidents/{id}"),
            key,
            json!({"status": "resolved", "resolution": "IP blocked"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["resolvedAt"].is_string());
    assert_eq!(
        app.get("/metrics/security", key).await.expect(200).body["activeIncidents"],
        0
    );
    assert_eq!(
        app.get("/incidents?status=resolved", key)
            .await
            .expect(200)
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );

    app.post(
        "/compliance/report",
        key,
        json!({"type": "x", "severity": "apocalyptic", "description": "d"}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.post(
        "/compliance/report",
        key,
        json!({"type": "x", "severity": "low", "description": "  "}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.patch(&format!("/incidents/{id}"), key, json!({"status": "maybe"}))
        .await
        .expect_error(422, "validation_failed");
    let reader = app
        .key_for_a(KeySpec {
            name: "r".into(),
            permissions: vec!["read:*".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 100,
        })
        .await;
    app.post(
        "/compliance/report",
        &reader,
        json!({"type": "x", "severity": "low", "description": "d"}),
    )
    .await
    .expect_error(403, "permission_denied");
}

#[tokio::test]
async fn every_answer_carries_the_same_browser_protections() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", flow_store::Role::User)
        .await;
    let login = app.login("ada@example.com", &password).await.expect(200);
    assert_eq!(login.headers["cache-control"], "no-store");
    for path in [
        "/health",
        "/leads",
        "/docs/",
        "/",
        "/openapi.json",
        "/no-such-route",
    ] {
        let reply = send(
            app.client
                .get(app.url(path))
                .header("x-tenant-key", &app.a.key),
        )
        .await;
        let headers = &reply.headers;
        for (name, value) in [
            ("x-content-type-options", Some("nosniff")),
            ("x-frame-options", Some("DENY")),
            ("referrer-policy", Some("no-referrer")),
            ("content-security-policy", None),
        ] {
            let got = headers
                .get(name)
                .unwrap_or_else(|| panic!("{path}: no {name}"));
            if let Some(value) = value {
                assert_eq!(got, value, "{path}: {name}");
            }
            assert!(
                headers["content-security-policy"]
                    .to_str()
                    .unwrap()
                    .contains("frame-ancestors 'none'"),
                "{path}"
            );
        }
    }
}
