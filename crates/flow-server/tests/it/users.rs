//! Users: sign-in, refresh rotation and reuse detection, roles, tenant switching,
//! admin pages, cross-app tokens and brute-force slowing.

use std::time::Duration;

use flow_app::services::keys::KeySpec;
use flow_store::Role;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{send, spawn_app, spawn_app_with, TestApp};

fn access(session: &Value) -> &str {
    session["accessToken"].as_str().expect("accessToken")
}

fn refresh_token(session: &Value) -> &str {
    session["refreshToken"].as_str().expect("refreshToken")
}

/// `POST /auth/invitations/accept`, which needs no credentials.
async fn accept(app: &TestApp, body: Value) -> crate::helpers::Reply {
    app.post("/auth/invitations/accept", "", body).await
}

async fn refresh(app: &TestApp, token: &str, tenant: Option<&str>) -> crate::helpers::Reply {
    let mut body = json!({ "refreshToken": token });
    if let Some(tenant) = tenant {
        body["tenantId"] = json!(tenant);
    }
    app.call(Method::POST, "/auth/refresh", None, Some(body))
        .await
}

#[tokio::test]
async fn sign_in_returns_tokens_and_a_profile_and_wrong_passwords_do_not() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;

    let session = app.sign_in("Ada@Example.com", &password).await;
    assert_eq!(session["tokenType"], "Bearer");
    assert_eq!(session["expiresIn"], 900);
    assert_eq!(session["user"]["email"], "ada@example.com");
    assert_eq!(session["tenant"]["id"], app.a.tenant.id.to_string());
    assert_eq!(session["role"], "admin");
    assert_eq!(session["permissions"], json!(["*"]));
    assert_eq!(session["tenants"].as_array().unwrap().len(), 1);
    assert!(session["user"].get("passwordHash").is_none());

    let profile = app
        .bearer(Method::GET, "/users/profile", access(&session), None)
        .await
        .expect(200);
    assert_eq!(profile.body["user"]["email"], "ada@example.com");
    assert_eq!(profile.body["role"], "admin");
    // The spec's path works too.
    app.bearer(Method::GET, "/api/v1/users/profile", access(&session), None)
        .await
        .expect(200);

    app.login("ada@example.com", "not the password at all")
        .await
        .expect_error(401, "invalid_credentials");
    app.login("nobody@example.com", "not the password at all")
        .await
        .expect_error(401, "invalid_credentials");
    app.call(
        Method::POST,
        "/auth/login",
        None,
        Some(json!({ "email": "ada@example.com" })),
    )
    .await
    .expect_error(422, "validation_failed");
    app.bearer(
        Method::GET,
        "/leads",
        "eyJhbGciOiJIUzI1NiJ9.e30.forged",
        None,
    )
    .await
    .expect_error(401, "invalid_token");
    // A key is not a user: the profile needs a user's token.
    app.get("/users/profile", &app.a.key)
        .await
        .expect_error(403, "not_a_user");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_ends_the_whole_session() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::User)
        .await;
    let first = app.sign_in("ada@example.com", &password).await;

    let second = refresh(&app, refresh_token(&first), None)
        .await
        .expect(200)
        .body;
    assert_ne!(refresh_token(&first), refresh_token(&second));
    app.bearer(Method::GET, "/leads", access(&second), None)
        .await
        .expect(200);
    let third = refresh(&app, refresh_token(&second), None)
        .await
        .expect(200)
        .body;

    // The first token was spent: presenting it again means a copy exists somewhere.
    refresh(&app, refresh_token(&first), None)
        .await
        .expect_error(401, "refresh_token_reused");
    // ... so the whole family is revoked, including the newest token.
    refresh(&app, refresh_token(&third), None)
        .await
        .expect_error(401, "invalid_refresh_token");
    refresh(&app, "flow_rt_made_up", None)
        .await
        .expect_error(401, "invalid_refresh_token");

    // Two sessions are independent; logout ends one.
    let laptop = app.sign_in("ada@example.com", &password).await;
    let phone = app.sign_in("ada@example.com", &password).await;
    app.call(
        Method::POST,
        "/auth/logout",
        None,
        Some(json!({ "refreshToken": refresh_token(&laptop) })),
    )
    .await
    .expect(204);
    refresh(&app, refresh_token(&laptop), None)
        .await
        .expect_error(401, "invalid_refresh_token");
    // The signed-out laptop's access token ends with it, not 15 minutes later; the
    // phone's sign-in is untouched.
    app.bearer(Method::GET, "/leads", access(&laptop), None)
        .await
        .expect_error(401, "invalid_token");
    app.bearer(Method::GET, "/leads", access(&phone), None)
        .await
        .expect(200);
    refresh(&app, refresh_token(&phone), None).await.expect(200);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_through() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::User)
        .await;
    let session = app.sign_in("ada@example.com", &password).await;
    let token = refresh_token(&session).to_owned();
    let attempts = (0..8).map(|_| refresh(&app, &token, None));
    let replies = futures::future::join_all(attempts).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert!(replies
        .iter()
        .filter(|r| r.status != 200)
        .all(|r| r.status == 401));
}

#[tokio::test]
async fn roles_map_onto_permissions_and_tenants_stay_apart() {
    let app = spawn_app().await;
    let viewer = app
        .user_in(&app.a.tenant, "vic@example.com", Role::Viewer)
        .await;
    let user = app
        .user_in(&app.a.tenant, "uma@example.com", Role::User)
        .await;
    let admin = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;
    let viewer = app.sign_in("vic@example.com", &viewer).await;
    let user = app.sign_in("uma@example.com", &user).await;
    let admin = app.sign_in("ada@example.com", &admin).await;
    let lead = json!({ "firstName": "Bo", "lastName": "Lind" });

    // A viewer reads and cannot write.
    app.bearer(Method::GET, "/leads", access(&viewer), None)
        .await
        .expect(200);
    app.bearer(Method::POST, "/leads", access(&viewer), Some(lead.clone()))
        .await
        .expect_error(403, "permission_denied");
    // A user writes, and the audit trail names the user.
    let created = app
        .bearer(Method::POST, "/leads", access(&user), Some(lead.clone()))
        .await
        .expect(201)
        .body;
    let audit = app
        .get(
            &format!("/audit?entityId={}", created["id"].as_str().unwrap()),
            &app.a.key,
        )
        .await
        .expect(200)
        .body;
    let entry = &audit["data"][0];
    assert_eq!(entry["actor"]["type"], "user", "{audit}");
    assert_eq!(entry["actor"]["id"], user["user"]["id"]);
    // ... but does not manage people or keys.
    let newcomer = json!({ "email": "new@example.com", "role": "viewer" });
    app.bearer(
        Method::POST,
        "/users",
        access(&user),
        Some(newcomer.clone()),
    )
    .await
    .expect_error(403, "permission_denied");
    app.bearer(Method::GET, "/api-keys", access(&user), None)
        .await
        .expect_error(403, "permission_denied");
    app.bearer(Method::GET, "/admin/queues", access(&user), None)
        .await
        .expect_error(403, "permission_denied");
    // An admin does (an invitation: the newcomer is a member once they accept).
    app.bearer(Method::POST, "/users", access(&admin), Some(newcomer))
        .await
        .expect(202);
    app.bearer(Method::GET, "/admin/queues", access(&admin), None)
        .await
        .expect(200);

    // An admin of A cannot touch B: B's rows are 404, B's members are 404, claiming B is 403.
    let b_lead = app.create_lead(&app.b.key, "Bea", None).await;
    let b_password = app
        .user_in(&app.b.tenant, "bob@example.com", Role::Admin)
        .await;
    let bob = app.sign_in("bob@example.com", &b_password).await;
    let b_lead_path = format!("/leads/{}", b_lead["id"].as_str().unwrap());
    app.bearer(Method::GET, &b_lead_path, access(&admin), None)
        .await
        .expect_error(404, "not_found");
    app.bearer(Method::DELETE, &b_lead_path, access(&admin), None)
        .await
        .expect_error(404, "not_found");
    let bob_path = format!("/users/{}", bob["user"]["id"].as_str().unwrap());
    app.bearer(
        Method::PATCH,
        &bob_path,
        access(&admin),
        Some(json!({ "role": "viewer" })),
    )
    .await
    .expect_error(404, "not_found");
    app.bearer(Method::DELETE, &bob_path, access(&admin), None)
        .await
        .expect_error(404, "not_found");
    let claimed_b = app
        .client
        .get(app.url("/leads"))
        .bearer_auth(access(&admin))
        .header("x-tenant-id", app.b.tenant.id.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(claimed_b.status(), 403);
    let members = app
        .bearer(Method::GET, "/users", access(&admin), None)
        .await
        .expect(200)
        .body;
    let emails: Vec<_> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert!(!emails.contains(&"bob@example.com"), "{emails:?}");
    assert_eq!(emails.len(), 3, "{emails:?}");
}

#[tokio::test]
async fn a_user_of_two_tenants_switches_with_a_refresh() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;
    app.user_in(&app.b.tenant, "ada@example.com", Role::Viewer)
        .await;
    app.create_lead(&app.a.key, "OnlyInA", None).await;
    app.create_lead(&app.b.key, "OnlyInB", None).await;

    let in_a = app.sign_in("ada@example.com", &password).await;
    assert_eq!(in_a["tenant"]["id"], app.a.tenant.id.to_string());
    assert_eq!(in_a["tenants"].as_array().unwrap().len(), 2);
    let b_id = app.b.tenant.id.to_string();
    let in_b = refresh(&app, refresh_token(&in_a), Some(&b_id))
        .await
        .expect(200)
        .body;
    assert_eq!(in_b["tenant"]["id"], b_id);
    assert_eq!(in_b["role"], "viewer");
    let leads = app
        .bearer(Method::GET, "/leads", access(&in_b), None)
        .await
        .expect(200)
        .body;
    let names: Vec<_> = leads["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["firstName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["OnlyInB"]);
    app.bearer(
        Method::POST,
        "/leads",
        access(&in_b),
        Some(json!({ "firstName": "X" })),
    )
    .await
    .expect_error(403, "permission_denied");

    // A tenant the user does not belong to cannot be switched to.
    let other = app.store.create_tenant("C", "tenant-c").await.unwrap();
    refresh(&app, refresh_token(&in_b), Some(&other.id.to_string()))
        .await
        .expect_error(403, "not_a_member");
    // ... and the refused switch did not spend the token: the session goes on.
    refresh(
        &app,
        refresh_token(&in_b),
        Some(&app.a.tenant.id.to_string()),
    )
    .await
    .expect(200);
    // Sign-in straight into B works too.
    let direct = app
        .call(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({ "email": "ada@example.com", "password": password, "tenantId": b_id })),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(direct["role"], "viewer");
}

#[tokio::test]
async fn admins_manage_members_and_api_keys_of_their_tenant() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;
    let admin = app.sign_in("ada@example.com", &password).await;
    let token = access(&admin);

    // An invitation, accepted; then a change of role, then removal.
    let invitation = app
        .bearer(
            Method::POST,
            "/users",
            token,
            Some(json!({ "email": "Cy@Example.com", "role": "user" })),
        )
        .await
        .expect(202)
        .body;
    assert_eq!(
        (invitation["email"].as_str(), invitation["role"].as_str()),
        (Some("cy@example.com"), Some("user"))
    );
    let invite = app
        .invitation_token(&app.a.tenant, "cy@example.com", Role::User)
        .await;
    accept(
        &app,
        json!({ "token": invite, "name": "Cy", "password": "short" }),
    )
    .await
    .expect_error(422, "validation_failed");
    let joined = accept(
        &app,
        json!({ "token": invite, "name": "Cy", "password": "cy's long password" }),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(joined["tenant"]["id"], app.a.tenant.id.to_string());
    let member = app
        .bearer(Method::GET, "/users", token, None)
        .await
        .expect(200)
        .body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "cy@example.com")
        .cloned()
        .expect("cy joined");
    assert_eq!(member["role"], "user");
    app.sign_in("cy@example.com", "cy's long password").await;
    app.bearer(
        Method::POST,
        "/users",
        token,
        Some(json!({ "email": "cy@example.com", "role": "viewer" })),
    )
    .await
    .expect_error(409, "already_a_member");
    app.bearer(
        Method::POST,
        "/users",
        token,
        Some(json!({ "email": "dee@example.com", "role": "owner" })),
    )
    .await
    .expect_error(422, "validation_failed");
    let cy_path = format!("/users/{}", member["id"].as_str().unwrap());
    let cy = app.sign_in("cy@example.com", "cy's long password").await;
    app.bearer(
        Method::POST,
        "/leads",
        access(&cy),
        Some(json!({ "firstName": "Cys" })),
    )
    .await
    .expect(201);
    let changed = app
        .bearer(
            Method::PATCH,
            &cy_path,
            token,
            Some(json!({ "role": "viewer" })),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(changed["role"], "viewer");
    // Demoted while signed in: the very next request has a viewer's rights.
    app.bearer(
        Method::POST,
        "/leads",
        access(&cy),
        Some(json!({ "firstName": "Cys" })),
    )
    .await
    .expect_error(403, "permission_denied");
    app.bearer(Method::DELETE, &cy_path, token, None)
        .await
        .expect(204);
    // Removed: the access token Cy still holds stops working at once.
    app.bearer(Method::GET, "/leads", access(&cy), None)
        .await
        .expect_error(401, "invalid_token");
    app.login("cy@example.com", "cy's long password")
        .await
        .expect_error(403, "no_tenant");
    // The last admin cannot leave or step down.
    let me = format!("/users/{}", admin["user"]["id"].as_str().unwrap());
    app.bearer(Method::PATCH, &me, token, Some(json!({ "role": "user" })))
        .await
        .expect_error(409, "last_admin");
    app.bearer(Method::DELETE, &me, token, None)
        .await
        .expect_error(409, "last_admin");

    // Keys: created with a secret shown once, listed without it, revoked.
    let created = app
        .bearer(
            Method::POST,
            "/api-keys",
            token,
            Some(json!({ "name": "crm sync", "permissions": ["read:leads"], "allowedApps": ["crm-web"] })),
        )
        .await
        .expect(201)
        .body;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let leads = app
        .client
        .get(app.url("/leads"))
        .header("x-tenant-key", &secret)
        .header("x-source-app", "crm-web")
        .send()
        .await
        .unwrap();
    assert_eq!(leads.status(), 200);
    let listed = app
        .bearer(Method::GET, "/api-keys", token, None)
        .await
        .expect(200)
        .body;
    let listed = listed["data"].as_array().unwrap();
    assert!(listed
        .iter()
        .all(|k| k.get("secret").is_none() && k.get("keyHash").is_none()));
    assert!(listed.iter().any(|k| k["id"] == created["id"]));
    app.bearer(
        Method::POST,
        "/api-keys",
        token,
        Some(json!({ "name": "bad", "permissions": ["READ leads"] })),
    )
    .await
    .expect_error(422, "validation_failed");
    let key_path = format!("/api-keys/{}", created["id"].as_str().unwrap());
    app.bearer(Method::DELETE, &key_path, token, None)
        .await
        .expect(204);
    app.get("/leads", &secret)
        .await
        .expect_error(401, "inactive_api_key");
    // B's admin cannot revoke A's keys.
    let b_password = app
        .user_in(&app.b.tenant, "bob@example.com", Role::Admin)
        .await;
    let bob = app.sign_in("bob@example.com", &b_password).await;
    let a_key_id = listed.iter().find(|k| k["id"] != created["id"]).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.bearer(
        Method::DELETE,
        &format!("/api-keys/{a_key_id}"),
        access(&bob),
        None,
    )
    .await
    .expect_error(404, "not_found");
    app.get("/leads", &app.a.key).await.expect(200);
}

#[tokio::test]
async fn a_key_holder_mints_a_cross_app_token_with_a_subset_of_its_rights() {
    let app = spawn_app().await;
    let key = app
        .key_for_a(KeySpec {
            name: "voice".into(),
            permissions: vec![
                "read:leads".into(),
                "write:leads".into(),
                "execute:voice".into(),
            ],
            allowed_apps: vec!["voice-agent".into(), "flow-web".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    let mint = |body: Value| {
        let request = app
            .client
            .post(app.url("/auth/app-token"))
            .header("x-tenant-key", &key)
            .header("x-source-app", "flow-web")
            .json(&body);
        crate::helpers::send(request)
    };
    let minted = mint(json!({ "sourceApp": "voice-agent", "permissions": ["read:leads"] }))
        .await
        .expect(201)
        .body;
    let token = minted["token"].as_str().unwrap().to_owned();
    assert_eq!(minted["permissions"], json!(["read:leads"]));
    app.bearer(Method::GET, "/leads", &token, None)
        .await
        .expect(200);
    app.bearer(
        Method::POST,
        "/leads",
        &token,
        Some(json!({ "firstName": "X" })),
    )
    .await
    .expect_error(403, "permission_denied");
    // The token is bound to its app.
    let as_other_app = app
        .client
        .get(app.url("/leads"))
        .bearer_auth(&token)
        .header("x-source-app", "crm-web")
        .send()
        .await
        .unwrap();
    assert_eq!(as_other_app.status(), 403);
    // Nothing beyond the key's own rights, nor for apps the key may not serve.
    mint(json!({ "sourceApp": "voice-agent", "permissions": ["read:*"] }))
        .await
        .expect_error(403, "permission_denied");
    mint(json!({ "sourceApp": "voice-agent", "permissions": ["*"] }))
        .await
        .expect_error(403, "permission_denied");
    mint(json!({ "sourceApp": "crm-web" }))
        .await
        .expect_error(403, "app_not_allowed");
    mint(json!({ "sourceApp": "voice-agent", "expiresInSecs": 86400 }))
        .await
        .expect_error(422, "validation_failed");
    // A token cannot mint tokens (it would hand out the key's full rights).
    let full = mint(json!({ "sourceApp": "voice-agent" }))
        .await
        .expect(201)
        .body;
    app.bearer(
        Method::POST,
        "/auth/app-token",
        full["token"].as_str().unwrap(),
        Some(json!({ "sourceApp": "voice-agent" })),
    )
    .await
    .expect_error(403, "permission_denied");
    app.bearer(
        Method::POST,
        "/events/token",
        full["token"].as_str().unwrap(),
        None,
    )
    .await
    .expect_error(403, "permission_denied");

    // Revoking the key ends its tokens at once.
    let key_id = app.key_id(&key).await;
    flow_app::services::keys::revoke(
        &*app.store,
        &flow_app::auth::Caller::system(app.a.tenant.id),
        key_id,
    )
    .await
    .unwrap();
    app.bearer(Method::GET, "/leads", &token, None)
        .await
        .expect_error(401, "invalid_token");
}

#[tokio::test]
async fn password_guessing_is_slowed_and_raises_a_security_incident() {
    let app = spawn_app_with(|config| config.login_failures_per_account = 3).await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;
    // An admin of B invites Ada; until she accepts, B is none of her tenants and hears
    // nothing of attacks on her account.
    app.invitation_token(&app.b.tenant, "ada@example.com", Role::Viewer)
        .await;
    for _ in 0..3 {
        app.login("ada@example.com", "guess guess guess")
            .await
            .expect_error(401, "invalid_credentials");
    }
    // Locked now, even for the right password.
    let locked = app
        .login("ada@example.com", &password)
        .await
        .expect_error(429, "too_many_attempts");
    let wait: u64 = locked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "retry-after {wait}");
    // Another account is not affected.
    let other = app
        .user_in(&app.a.tenant, "uma@example.com", Role::User)
        .await;
    app.sign_in("uma@example.com", &other).await;

    let incidents = app.get("/incidents", &app.a.key).await.expect(200).body;
    let incidents = incidents.as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["type"], "login_brute_force");
    assert_eq!(incidents[0]["severity"], "high");
    assert!(incidents[0]["description"]
        .as_str()
        .unwrap()
        .contains("ada@example.com"));
    let events = app
        .get("/events/log?since=0", &app.a.key)
        .await
        .expect(200)
        .body;
    assert!(events.to_string().contains("SECURITY_INCIDENT"), "{events}");
    // B, which invited Ada but which she has not joined, hears nothing.
    let b_incidents = app.get("/incidents", &app.b.key).await.expect(200).body;
    assert_eq!(b_incidents, json!([]));

    tokio::time::sleep(Duration::from_secs(wait)).await;
    app.sign_in("ada@example.com", &password).await;
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary() {
    let app = spawn_app().await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.headers().contains_key("content-security-policy"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/assets/app.js") && html.contains("/assets/app.css"));
    let mut total = html.len();
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let asset = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(asset.status(), 200);
        assert!(asset.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        let body = asset.text().await.unwrap();
        assert!(body.len() > 1000, "{path} is suspiciously small");
        total += body.len();
    }
    assert!(total < 300 * 1024, "the dashboard weighs {total} bytes");
}

#[tokio::test]
async fn a_key_hands_on_no_more_apps_or_rate_than_it_has_and_revokes_only_what_it_covers() {
    let app = spawn_app().await;
    let narrow = app
        .key_for_a(KeySpec {
            name: "crm key admin".into(),
            permissions: vec!["admin:keys".into(), "read:leads".into()],
            allowed_apps: vec!["crm-web".into()],
            rate_limit_per_minute: 10,
        })
        .await;
    let create = |body: Value| {
        app.client
            .post(app.url("/api-keys"))
            .header("x-tenant-key", &narrow)
            .header("x-source-app", "crm-web")
            .json(&body)
    };
    for wider in [
        json!({ "name": "any app", "permissions": ["read:leads"] }),
        json!({ "name": "other app", "permissions": ["read:leads"], "allowedApps": ["flow-web"] }),
        json!({ "name": "faster", "permissions": ["read:leads"], "allowedApps": ["crm-web"], "rateLimitPerMinute": 1000000 }),
    ] {
        send(create(wider.clone()))
            .await
            .expect_error(403, "permission_denied");
    }
    send(create(json!({ "name": "same", "permissions": ["read:leads"], "allowedApps": ["crm-web"], "rateLimitPerMinute": 10 })))
        .await
        .expect(201);

    // Revoking needs the target's grants: a key with admin:keys and read:leads cannot
    // revoke a `*` key, but can revoke one it covers.
    let key_admin = app
        .key_for_a(KeySpec {
            name: "key admin".into(),
            permissions: vec!["admin:keys".into(), "read:leads".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    let strong = app.key_id(&app.a.key).await;
    app.delete(&format!("/api-keys/{strong}"), &key_admin)
        .await
        .expect_error(403, "permission_denied");
    app.get("/leads", &app.a.key).await.expect(200);
    let covered = app.key_id(&narrow).await;
    app.delete(&format!("/api-keys/{covered}"), &key_admin)
        .await
        .expect(204);
}

#[tokio::test]
async fn nobody_grants_rights_they_do_not_hold() {
    let app = spawn_app().await;
    let keys_only = app
        .key_for_a(KeySpec {
            name: "key admin".into(),
            permissions: vec!["admin:keys".into(), "read:leads".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    let wider = json!({ "name": "wider", "permissions": ["*"] });
    app.post("/api-keys", &keys_only, wider.clone())
        .await
        .expect_error(403, "permission_denied");
    app.post(
        "/api-keys",
        &keys_only,
        json!({ "name": "same", "permissions": ["read:leads"] }),
    )
    .await
    .expect(201);
    // Nor through a short-lived token minted from it.
    let minted = app
        .post(
            "/auth/app-token",
            &keys_only,
            json!({ "sourceApp": "flow-web" }),
        )
        .await
        .expect(201)
        .body;
    app.bearer(
        Method::POST,
        "/api-keys",
        minted["token"].as_str().unwrap(),
        Some(wider),
    )
    .await
    .expect_error(403, "permission_denied");

    let users_only = app
        .key_for_a(KeySpec {
            name: "people".into(),
            permissions: vec![
                "admin:users".into(),
                "read:*".into(),
                "write:*".into(),
                "execute:*".into(),
            ],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    let admin = json!({ "email": "root@example.com", "role": "admin" });
    app.post("/users", &users_only, admin)
        .await
        .expect_error(403, "permission_denied");
    app.post(
        "/users",
        &users_only,
        json!({ "email": "u@example.com", "role": "user" }),
    )
    .await
    .expect(202);
    let invite = app
        .invitation_token(&app.a.tenant, "u@example.com", Role::User)
        .await;
    let added = accept(
        &app,
        json!({ "token": invite, "name": "U", "password": "long enough pw" }),
    )
    .await
    .expect(200)
    .body;
    let path = format!("/users/{}", added["user"]["id"].as_str().unwrap());
    app.patch(&path, &users_only, json!({ "role": "admin" }))
        .await
        .expect_error(403, "permission_denied");
    // An admin cannot be demoted or removed by someone less than admin.
    let boss_password = app
        .user_in(&app.a.tenant, "boss@example.com", Role::Admin)
        .await;
    let boss = app.sign_in("boss@example.com", &boss_password).await;
    let boss_path = format!("/users/{}", boss["user"]["id"].as_str().unwrap());
    app.delete(&boss_path, &users_only)
        .await
        .expect_error(403, "permission_denied");
}

#[tokio::test]
async fn a_suspended_tenant_refuses_its_users_tokens_at_once() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;
    let session = app.sign_in("ada@example.com", &password).await;
    app.store
        .set_tenant_active(app.a.tenant.id, false)
        .await
        .unwrap();
    app.bearer(Method::GET, "/leads", access(&session), None)
        .await
        .expect_error(401, "inactive_tenant");
    refresh(&app, refresh_token(&session), None)
        .await
        .expect_error(403, "no_tenant");
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = spawn_app().await;
    let mut sessions = Vec::new();
    for email in ["one@example.com", "two@example.com"] {
        let password = app.user_in(&app.a.tenant, email, Role::Admin).await;
        sessions.push(app.sign_in(email, &password).await);
    }
    let path = |session: &Value| format!("/users/{}", session["user"]["id"].as_str().unwrap());
    let (one_path, two_path) = (path(&sessions[0]), path(&sessions[1]));
    let demote_one = app.bearer(
        Method::PATCH,
        &one_path,
        access(&sessions[1]),
        Some(json!({ "role": "user" })),
    );
    let demote_two = app.bearer(
        Method::PATCH,
        &two_path,
        access(&sessions[0]),
        Some(json!({ "role": "user" })),
    );
    let (one, two) = tokio::join!(demote_one, demote_two);
    let mut statuses = [one.status.as_u16(), two.status.as_u16()];
    statuses.sort();
    // The loser is refused either as the last admin or, demoted already, as a non-admin.
    assert!(
        statuses == [200, 403] || statuses == [200, 409],
        "{statuses:?}: {} / {}",
        one.body,
        two.body
    );
    let members = app.get("/users", &app.a.key).await.expect(200).body;
    let admins = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "admin")
        .count();
    assert_eq!(admins, 1, "{members}");
}

/// `POST /users` once answered 201 with an existing account's id and name and put the
/// account in the admin's tenant, and 422 "password is required" for an unknown email:
/// an admin could list accounts platform-wide and add people without their consent.
#[tokio::test]
async fn an_invitation_answers_alike_for_any_email_and_joins_only_with_consent() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;
    let admin = app.sign_in("ada@example.com", &password).await;
    let token = access(&admin);
    // Bo has an account, in tenant B only.
    let bo_password = app
        .user_in(&app.b.tenant, "bo@example.com", Role::Admin)
        .await;

    let invite = |email: &'static str| {
        app.bearer(
            Method::POST,
            "/users",
            token,
            Some(json!({ "email": email, "role": "user" })),
        )
    };
    let existing = invite("bo@example.com").await.expect(202).body;
    let unknown = invite("nobody@example.com").await.expect(202).body;
    let shape = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        (keys, v["role"].clone(), v["invitedBy"].clone())
    };
    assert_eq!(shape(&existing), shape(&unknown), "{existing} vs {unknown}");
    assert!(!existing.to_string().contains("Test User"), "{existing}");

    // Bo is not in A until Bo accepts.
    let members = app
        .bearer(Method::GET, "/users", token, None)
        .await
        .expect(200)
        .body;
    assert!(!members.to_string().contains("bo@example.com"), "{members}");
    let bo_token = app
        .invitation_token(&app.a.tenant, "bo@example.com", Role::User)
        .await;
    // Whoever holds the token without Bo's password cannot accept for Bo.
    accept(
        &app,
        json!({ "token": bo_token, "password": "not bo's password", "name": "Mallory" }),
    )
    .await
    .expect_error(401, "invalid_credentials");
    let bo = app.sign_in("bo@example.com", &bo_password).await;
    assert_eq!(bo["tenants"].as_array().unwrap().len(), 1, "{bo}");
    // Bo accepts, and is signed in to A with the invited role.
    let joined = accept(&app, json!({ "token": bo_token, "password": bo_password }))
        .await
        .expect(200)
        .body;
    assert_eq!(joined["tenant"]["id"], app.a.tenant.id.to_string());
    assert_eq!(joined["role"], "user");
    assert_eq!(
        joined["user"]["name"], "Test User",
        "the account keeps its name"
    );
    // A token works once.
    accept(&app, json!({ "token": bo_token, "password": bo_password }))
        .await
        .expect_error(404, "not_found");

    // A new person sets their own password; the admin's earlier token was replaced.
    let new_token = app
        .invitation_token(&app.a.tenant, "nobody@example.com", Role::Viewer)
        .await;
    accept(
        &app,
        json!({ "token": new_token, "password": "a password of mine" }),
    )
    .await
    .expect_error(422, "validation_failed");
    let newcomer = accept(
        &app,
        json!({ "token": new_token, "password": "a password of mine", "name": "Nob" }),
    )
    .await
    .expect(200)
    .body;
    assert_eq!(newcomer["role"], "viewer");
    app.sign_in("nobody@example.com", "a password of mine")
        .await;
}

/// The dashboard's refresh token is an httpOnly, SameSite=Strict cookie (it was kept in
/// localStorage, in reach of any script on the page), accepted only with a header that
/// another site's page cannot send.
#[tokio::test]
async fn a_browser_session_keeps_its_refresh_token_in_a_cookie_scripts_cannot_read() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;
    let post = |path: &'static str, cookie: Option<String>, header: bool, body: Value| {
        let mut request = app.client.post(app.url(path)).json(&body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("flow_refresh={cookie}"));
        }
        if header {
            request = request.header("x-flow-refresh", "cookie");
        }
        request.send()
    };
    let set_cookie = |response: &reqwest::Response| {
        response
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let token_of = |set_cookie: &str| {
        set_cookie
            .strip_prefix("flow_refresh=")
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_default()
            .to_owned()
    };

    let signed_in = post(
        "/auth/login",
        None,
        true,
        json!({ "email": "ada@example.com", "password": password }),
    )
    .await
    .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = set_cookie(&signed_in);
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let body: Value = signed_in.json().await.unwrap();
    assert!(body.get("refreshToken").is_none(), "{body}");
    assert!(body["accessToken"].is_string());
    let first = token_of(&cookie);

    // The cookie alone, as a cross-site form would send it, is refused.
    let forged = post("/auth/refresh", Some(first.clone()), false, json!({}))
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // With the header it rotates, into a new cookie.
    let refreshed = post("/auth/refresh", Some(first.clone()), true, json!({}))
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let second = token_of(&set_cookie(&refreshed));
    assert!(!second.is_empty() && second != first);
    // Signing out ends it and clears the cookie.
    let out = post("/auth/logout", Some(second.clone()), true, json!({}))
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(set_cookie(&out).contains("Max-Age=0"));
    let after = post("/auth/refresh", Some(second), true, json!({}))
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
}

/// Write access to the database is not a session: a refresh-token row inserted for another
/// user (as the serving role on PostgreSQL could) is refused, for want of the seal only
/// Flow's secret makes.
#[tokio::test]
async fn a_refresh_token_row_written_without_flows_secret_opens_no_session() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;
    let ada = app.sign_in("ada@example.com", &password).await;
    let ada_id: flow_store::UserId = ada["user"]["id"].as_str().unwrap().parse().unwrap();
    let forged = "flow_rt_forged-by-someone-with-database-access";
    use sha2::Digest;
    app.store
        .insert_refresh_token(&flow_store::NewRefreshToken {
            family_id: uuid::Uuid::now_v7(),
            user_id: ada_id,
            token_hash: sha2::Sha256::digest(forged.as_bytes()).into(),
            expires_at: chrono::Utc::now() + chrono::Duration::days(1),
            seal: [7; 32],
        })
        .await
        .unwrap();
    refresh(&app, forged, None)
        .await
        .expect_error(401, "invalid_refresh_token");
    // Ada's own sign-in is untouched.
    refresh(&app, refresh_token(&ada), None).await.expect(200);
}
