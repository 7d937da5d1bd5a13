//! Health, metrics, request ids, OpenAPI and the docs page.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{send, spawn_app};

#[tokio::test]
async fn health_reports_each_check_and_validates_a_key_when_given() {
    let app = spawn_app().await;
    let health = app
        .call(Method::GET, "/health", None, None)
        .await
        .expect(200)
        .body;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["checks"]["database"]["status"], "ok");
    assert_eq!(health["backend"], app.store.backend());
    assert!(health["checks"]["database"]["latencyMs"].is_number());
    assert!(health.get("auth").is_none());

    let with_key = app.get("/health", &app.a.key).await.expect(200).body;
    assert_eq!(with_key["auth"]["tenantId"], app.a.tenant.id.to_string());
    app.get("/health", "wrong-key")
        .await
        .expect_error(401, "invalid_api_key");
}

#[tokio::test]
async fn health_is_503_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.store.close().await;
    let reply = app
        .call(Method::GET, "/health", None, None)
        .await
        .expect(503);
    assert_eq!(reply.body["status"], "degraded");
    assert_eq!(reply.body["checks"]["database"]["status"], "error");
    // Requests that need the database fail cleanly, not with a 500.
    app.get("/leads", &app.a.key)
        .await
        .expect_error(503, "service_unavailable");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = spawn_app().await;
    let lead = app.create_lead(&app.a.key, "Metric", None).await;
    app.get(
        &format!("/leads/{}", lead["id"].as_str().unwrap()),
        &app.a.key,
    )
    .await
    .expect(200);
    app.get("/leads/not-a-uuid", &app.a.key).await.expect(400);
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="POST",route="/leads",status_code="201"} 1"#,
        r#"http_requests_total{method="GET",route="/leads/{id}",status_code="200"} 1"#,
        r#"http_requests_total{method="GET",route="/leads/{id}",status_code="400"} 1"#,
        "# TYPE http_request_duration_seconds histogram",
        r#"http_request_duration_seconds_bucket{method="POST",route="/leads",le="+Inf"} 1"#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains(lead["id"].as_str().unwrap()),
        "ids must not become labels"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let given = send(
        app.client
            .get(app.url("/leads"))
            .header("x-request-id", "trace-me-42"),
    )
    .await;
    assert_eq!(given.headers["x-request-id"], "trace-me-42");
    assert_eq!(
        given.body["error"]["request_id"], "trace-me-42",
        "401 body names the request"
    );
    let generated = app.get("/leads", &app.a.key).await.expect(200);
    let id = generated.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

#[tokio::test]
async fn openapi_document_covers_every_route_and_docs_render_offline() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let expected = [
        ("/leads", &["get", "post"][..]),
        ("/leads/{id}", &["get", "patch", "delete"]),
        ("/leads/{id}/status", &["patch"]),
        ("/leads/{id}/assign", &["post"]),
        ("/contacts", &["get", "post"]),
        ("/contacts/{id}", &["get", "patch"]),
        ("/contacts/sync", &["post"]),
        ("/contacts/{id}/merge", &["post"]),
        ("/activities", &["get", "post"]),
        ("/deals", &["get", "post"]),
        ("/deals/{id}", &["get", "patch"]),
        ("/events/log", &["get"]),
        ("/events", &["get"]),
        ("/events/token", &["post"]),
        ("/jobs/{id}", &["get"]),
        ("/leads/import", &["post"]),
        ("/admin/queues", &["get"]),
        ("/admin/queues/{name}/jobs", &["get", "post"]),
        ("/admin/queues/{name}/jobs/{id}/retry", &["post"]),
        ("/admin/queues/{name}/jobs/{id}", &["delete"]),
        ("/compliance/report", &["post"]),
        ("/incidents", &["get"]),
        ("/incidents/{id}", &["get", "patch"]),
        ("/metrics/security", &["get"]),
        ("/compliance/checks", &["post"]),
        ("/compliance/checks/{id}", &["get"]),
        ("/contacts/email-sync", &["post"]),
        ("/admin/backups", &["post"]),
        ("/metrics/business", &["get"]),
        ("/metrics/business/rollup", &["post"]),
        ("/chat", &["post"]),
        ("/voice/execute", &["post"]),
        ("/voice/test", &["post"]),
        ("/voice/{sessionId}", &["get"]),
        ("/conversations", &["get", "post"]),
        ("/conversations/{id}", &["get"]),
        ("/audit", &["get"]),
        ("/auth/login", &["post"]),
        ("/auth/refresh", &["post"]),
        ("/auth/logout", &["post"]),
        ("/auth/invitations/accept", &["post"]),
        ("/auth/app-token", &["post"]),
        ("/users/profile", &["get"]),
        ("/users", &["get", "post"]),
        ("/users/{id}", &["patch", "delete"]),
        ("/api-keys", &["get", "post"]),
        ("/api-keys/{id}", &["delete"]),
        ("/health", &["get"]),
        ("/metrics", &["get"]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in expected {
        for method in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} missing from OpenAPI"
            );
        }
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    let listed: usize = expected.iter().map(|(_, m)| m.len()).sum();
    assert_eq!(
        documented, listed,
        "a route is documented that this test does not know: update the list"
    );
    assert!(doc["components"]["securitySchemes"]["tenant_key"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for src in html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
    {
        assert!(
            !src.starts_with("http"),
            "the docs page loads {src} from the internet"
        );
        let asset = app
            .client
            .get(app.url(&format!("/docs/{}", src.trim_start_matches("./"))))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200, "docs asset {src} is not served");
    }
}

#[tokio::test]
async fn metrics_pass_promtool_check() {
    let Some(promtool) = crate::helpers::required_tool("promtool") else {
        return;
    };
    let app = spawn_app().await;
    app.create_lead(&app.a.key, "Prom", None).await;
    app.get("/leads?limit=0", &app.a.key).await.expect(400);
    let text = app.metrics().await;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool rejects /metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn metrics_can_require_a_token_and_leave_tenants_unnamed() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.metrics_token = Some("scrape-token-0123456789".into());
        c.metrics_tenant_label = false;
    })
    .await;
    let scrape = |token: Option<&str>| {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        crate::helpers::send(request)
    };
    scrape(None).await.expect_error(401, "invalid_token");
    scrape(Some("wrong-token-0123456789"))
        .await
        .expect_error(401, "invalid_token");
    // An open socket shows in the gauge without its tenant's id.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/events",
            app.address
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("x-tenant-key", app.a.key.parse().unwrap());
    let (_socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut text = String::new();
    for _ in 0..50 {
        let reply = app
            .client
            .get(app.url("/metrics"))
            .bearer_auth("scrape-token-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        text = reply.text().await.unwrap();
        if text.contains("websocket_connections_active{") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(text.contains(r#"tenant_id="""#), "{text}");
    assert!(
        !text.contains(&app.a.tenant.id.to_string()),
        "the tenant id is shown"
    );
}
