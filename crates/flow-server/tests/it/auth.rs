//! API keys: 401 for missing, unknown and inactive; 403 for permissions, apps and tenant
//! mismatch; 429 with headers when the key's rate limit is spent.

use flow_app::services::keys::KeySpec;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{send, spawn_app};

fn spec(permissions: &[&str], apps: &[&str], rate: u32) -> KeySpec {
    KeySpec {
        name: "test".into(),
        permissions: permissions.iter().map(|s| s.to_string()).collect(),
        allowed_apps: apps.iter().map(|s| s.to_string()).collect(),
        rate_limit_per_minute: rate,
    }
}

#[tokio::test]
async fn missing_unknown_and_revoked_keys_are_401() {
    let app = spawn_app().await;
    app.call(Method::GET, "/leads", None, None)
        .await
        .expect_error(401, "missing_api_key");
    app.get("/leads", "flow_sk_not-a-real-key")
        .await
        .expect_error(401, "invalid_api_key");
    app.get("/leads", "")
        .await
        .expect_error(401, "invalid_api_key");

    let key = app.key_for_a(spec(&["*"], &["*"], 1000)).await;
    app.get("/leads", &key).await.expect(200);
    let listed = {
        let mut tx = app.store.read(app.a.tenant.id).await.unwrap();
        tx.list_api_keys().await.unwrap()
    };
    let id = listed.iter().find(|k| k.name == "test").unwrap().id;
    flow_app::services::keys::revoke(
        &*app.store,
        &flow_app::auth::Caller::system(app.a.tenant.id),
        id,
    )
    .await
    .unwrap();
    app.get("/leads", &key)
        .await
        .expect_error(401, "inactive_api_key");
}

#[tokio::test]
async fn an_inactive_tenant_is_401() {
    let app = spawn_app().await;
    app.store
        .set_tenant_active(app.a.tenant.id, false)
        .await
        .unwrap();
    app.get("/leads", &app.a.key)
        .await
        .expect_error(401, "inactive_tenant");
    app.get("/leads", &app.b.key).await.expect(200);
    app.store
        .set_tenant_active(app.a.tenant.id, true)
        .await
        .unwrap();
    app.get("/leads", &app.a.key).await.expect(200);
}

#[tokio::test]
async fn permissions_follow_operation_and_resource() {
    let app = spawn_app().await;
    let reader = app.key_for_a(spec(&["read:leads"], &["*"], 1000)).await;
    app.get("/leads", &reader).await.expect(200);
    app.post("/leads", &reader, json!({"firstName": "Nope"}))
        .await
        .expect_error(403, "permission_denied");
    app.get("/contacts", &reader)
        .await
        .expect_error(403, "permission_denied");
    app.get("/audit", &reader)
        .await
        .expect_error(403, "permission_denied");

    let all_reads = app.key_for_a(spec(&["read:*"], &["*"], 1000)).await;
    for path in [
        "/leads",
        "/contacts",
        "/activities",
        "/deals",
        "/events/log",
        "/audit",
    ] {
        app.get(path, &all_reads).await.expect(200);
    }
    app.post("/deals", &all_reads, json!({"title": "x", "amount": 1}))
        .await
        .expect_error(403, "permission_denied");

    let writer = app
        .key_for_a(spec(&["write:leads", "read:leads"], &["*"], 1000))
        .await;
    app.post("/leads", &writer, json!({"firstName": "Yes"}))
        .await
        .expect(201);
    let leads = app.list_all("/leads", &app.a.key).await;
    assert_eq!(leads.len(), 1, "the refused create wrote nothing");
}

#[tokio::test]
async fn the_source_app_must_be_allowed_for_the_key() {
    let app = spawn_app().await;
    let key = app
        .key_for_a(spec(&["*"], &["crm-web", "flow-web"], 1000))
        .await;
    let with_app = |app_name: &'static str| {
        app.client
            .get(app.url("/leads"))
            .header("x-tenant-key", key.clone())
            .header("x-source-app", app_name)
    };
    send(with_app("crm-web")).await.expect(200);
    send(with_app("voice-agent"))
        .await
        .expect_error(403, "app_not_allowed");
    send(with_app("Not An App!"))
        .await
        .expect_error(400, "invalid_source_app");
    // A key limited to some apps cannot be used without saying which app is calling.
    app.get("/leads", &key)
        .await
        .expect_error(403, "app_not_allowed");
}

#[tokio::test]
async fn x_tenant_id_must_match_the_keys_tenant() {
    let app = spawn_app().await;
    let with_tenant = |tenant: String| {
        app.client
            .get(app.url("/leads"))
            .header("x-tenant-key", app.a.key.clone())
            .header("x-tenant-id", tenant)
    };
    send(with_tenant(app.a.tenant.id.to_string()))
        .await
        .expect(200);
    send(with_tenant(app.b.tenant.id.to_string()))
        .await
        .expect_error(403, "tenant_mismatch");
    send(with_tenant("not-a-uuid".into()))
        .await
        .expect_error(403, "tenant_mismatch");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_headers() {
    let app = spawn_app().await;
    let key = app.key_for_a(spec(&["*"], &["*"], 3)).await;
    for remaining in [2, 1, 0] {
        let reply = app.get("/leads", &key).await.expect(200);
        assert_eq!(reply.headers["ratelimit-limit"], "3");
        assert_eq!(
            reply.headers["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
        assert!(reply.headers.contains_key("ratelimit-reset"));
    }
    let refused = app
        .get("/leads", &key)
        .await
        .expect_error(429, "rate_limited");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&retry_after),
        "one token returns within 20 s at 3/min, got {retry_after}"
    );
    assert_eq!(refused.headers["ratelimit-remaining"], "0");
    // Another key of the same tenant has its own bucket.
    app.get("/leads", &app.a.key).await.expect(200);
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.cors_allowed_origins = vec!["https://app.example.com".into()]
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/leads"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "x-tenant-key,content-type",
            )
    };
    let allowed = send(preflight("https://app.example.com")).await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let refused = send(preflight("https://evil.example.com")).await;
    assert!(!refused.headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn a_keys_last_use_is_recorded() {
    let app = spawn_app().await;
    let key = app.key_for_a(spec(&["*"], &["*"], 1000)).await;
    let last_used = || async {
        let mut tx = app.store.read(app.a.tenant.id).await.unwrap();
        let keys = tx.list_api_keys().await.unwrap();
        keys.into_iter()
            .find(|k| k.name == "test")
            .unwrap()
            .last_used_at
    };
    assert!(last_used().await.is_none());
    app.get("/leads", &key).await.expect(200);
    for _ in 0..100 {
        if last_used().await.is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("last_used_at was not recorded");
}
