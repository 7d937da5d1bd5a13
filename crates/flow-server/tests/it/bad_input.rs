//! A table of bad requests: each gets a 4xx JSON error with a stable code, and nothing
//! is written.

use reqwest::Method;

use crate::helpers::{send, spawn_app};

struct Case {
    method: Method,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(method: Method, path: &str, body: &str, status: u16, code: &'static str) -> Case {
    Case {
        method,
        path: path.into(),
        content_type: "application/json",
        body: body.as_bytes().to_vec(),
        status,
        code,
    }
}

#[tokio::test]
async fn bad_input_is_a_4xx_with_a_code_and_changes_nothing() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let missing = uuid::Uuid::now_v7();
    let seq_before = app.get("/events/log", key).await.expect(200).body["lastSeq"].clone();
    let audit_before = app.list_all("/audit", key).await.len();

    let long_name = format!(r#"{{"firstName":"{}"}}"#, "x".repeat(101));
    let huge_body = format!(
        r#"{{"firstName":"A","notes":"{}"}}"#,
        "n".repeat(2 * 1024 * 1024)
    );
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    use Method as M;
    let mut cases = vec![
        case(M::POST, "/leads", r#"{"firstName":"#, 400, "invalid_json"),
        case(M::POST, "/leads", "", 400, "invalid_json"),
        case(M::POST, "/leads", "[]", 422, "validation_failed"),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":5}"#,
            422,
            "validation_failed",
        ),
        case(M::POST, "/leads", "{}", 422, "validation_failed"),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":"A","bogus":1}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":"   "}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":"<script>alert(1)</script>"}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":"x'); DROP TABLE leads; --"}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":"A","email":"not-an-email"}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":"A","email":"a@b.c'; DELETE FROM leads"}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":"A","phone":"call me maybe"}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":"A","source":"Web Site!"}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/leads",
            r#"{"firstName":"A\u0000B"}"#,
            422,
            "validation_failed",
        ),
        case(M::POST, "/leads", &long_name, 422, "validation_failed"),
        case(M::POST, "/leads", &huge_body, 413, "payload_too_large"),
        case(M::POST, "/leads", &deep, 422, "validation_failed"),
        // serde_json's recursion limit stops a deeply nested value before it costs anything.
        case(
            M::POST,
            "/activities",
            &format!(
                r#"{{"type":"NOTE","entityType":"lead","entityId":"{missing}","data":{deep}}}"#
            ),
            400,
            "invalid_json",
        ),
        case(M::GET, "/leads/not-a-uuid", "", 400, "invalid_id"),
        case(M::GET, "/leads/123", "", 400, "invalid_id"),
        case(M::GET, "/leads?limit=100000", "", 400, "invalid_limit"),
        case(M::GET, "/leads?limit=0", "", 400, "invalid_limit"),
        case(M::GET, "/leads?limit=-1", "", 400, "invalid_query"),
        case(M::GET, "/leads?limit=abc", "", 400, "invalid_query"),
        case(M::GET, "/leads?cursor=garbage", "", 400, "invalid_cursor"),
        case(
            M::GET,
            "/leads?cursor=' OR 1=1 --",
            "",
            400,
            "invalid_cursor",
        ),
        case(M::GET, "/leads?status=WHATEVER", "", 400, "invalid_query"),
        case(
            M::GET,
            "/leads?createdAfter=yesterday",
            "",
            400,
            "invalid_query",
        ),
        case(M::GET, "/leads?stauts=NEW", "", 400, "invalid_query"),
        case(M::GET, "/contacts?email=nope", "", 422, "validation_failed"),
        case(
            M::GET,
            "/activities?entityId=nope",
            "",
            400,
            "invalid_query",
        ),
        case(
            M::PATCH,
            &format!("/leads/{missing}/status"),
            r#"{"status":"CONTACTED"}"#,
            404,
            "not_found",
        ),
        case(
            M::PATCH,
            &format!("/leads/{missing}"),
            r#"{"firstName":"B"}"#,
            404,
            "not_found",
        ),
        case(
            M::POST,
            "/contacts",
            r#"{"email":"a@example.com","consent":"yes"}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/contacts",
            r#"{"consent":true}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/contacts/not-a-uuid/merge",
            r#"{"sourceContactId":"x"}"#,
            400,
            "invalid_id",
        ),
        case(
            M::POST,
            "/deals",
            r#"{"title":"x","amount":1.5}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/deals",
            r#"{"title":"x","amount":99999999999999999999999}"#,
            422,
            "validation_failed",
        ),
        case(
            M::POST,
            "/activities",
            r#"{"type":"CALL","entityType":"planet","entityId":"x"}"#,
            422,
            "validation_failed",
        ),
        case(M::GET, "/no-such-route", "", 404, "route_not_found"),
        case(M::PUT, "/leads", "{}", 405, "method_not_allowed"),
    ];
    cases.push(Case {
        content_type: "text/plain",
        ..case(
            M::POST,
            "/leads",
            r#"{"firstName":"A"}"#,
            415,
            "unsupported_media_type",
        )
    });
    cases.push(Case {
        body: b"{\"firstName\":\"\xff\xfe\"}".to_vec(),
        ..case(M::POST, "/leads", "", 400, "invalid_json")
    });

    for case in cases {
        let mut request = app
            .client
            .request(case.method.clone(), app.url(&case.path))
            .header("x-tenant-key", key);
        if !case.body.is_empty() || case.method == M::POST {
            request = request
                .header("content-type", case.content_type)
                .body(case.body.clone());
        }
        let reply = send(request).await;
        assert_eq!(
            (reply.status.as_u16(), reply.code()),
            (case.status, case.code),
            "{} {} -> {}",
            case.method,
            case.path.chars().take(80).collect::<String>(),
            reply.body
        );
        assert!(
            reply.body["error"]["request_id"].is_string(),
            "{}",
            reply.body
        );
    }

    // SQL in a search string is only text to search for.
    let search = app
        .get("/leads?q=%27%20OR%201%3D1%20--", key)
        .await
        .expect(200);
    assert_eq!(search.body["data"].as_array().unwrap().len(), 0);

    assert!(
        app.list_all("/leads", key).await.is_empty(),
        "no lead was written"
    );
    assert!(
        app.list_all("/contacts", key).await.is_empty(),
        "no contact was written"
    );
    assert!(
        app.list_all("/deals", key).await.is_empty(),
        "no deal was written"
    );
    assert_eq!(
        app.get("/events/log", key).await.expect(200).body["lastSeq"],
        seq_before
    );
    assert_eq!(app.list_all("/audit", key).await.len(), audit_before);
}

#[tokio::test]
async fn a_security_header_sent_twice_is_refused() {
    let app = spawn_app().await;
    let a_tenant = app.a.tenant.id.to_string();
    let b_tenant = app.b.tenant.id.to_string();
    for (name, first, second) in [
        ("x-source-app", "api", "crm-web"),
        ("x-tenant-id", a_tenant.as_str(), b_tenant.as_str()),
        ("x-tenant-key", app.a.key.as_str(), app.b.key.as_str()),
    ] {
        let mut request = app.client.get(app.url("/leads"));
        if name != "x-tenant-key" {
            request = request.header("x-tenant-key", &app.a.key);
        }
        let reply = send(request.header(name, first).header(name, second)).await;
        assert_eq!(reply.status, 400, "{name}: {}", reply.body);
        assert_eq!(reply.code(), "bad_request", "{name}");
    }
}

#[tokio::test]
async fn a_request_id_that_is_not_a_plain_identifier_is_replaced() {
    let app = spawn_app().await;
    let create = |id: String| {
        app.client
            .post(app.url("/leads"))
            .header("x-tenant-key", &app.a.key)
            .header("x-request-id", id)
            .json(&serde_json::json!({"firstName": "Rid", "lastName": "Test", "source": "web"}))
    };
    for bad in ["<script>alert(1)</script>".to_owned(), "x".repeat(5000)] {
        let reply = send(create(bad.clone())).await.expect(201);
        let echoed = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, bad);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
        let audit = app
            .get(
                &format!("/audit?entityId={}", reply.body["id"].as_str().unwrap()),
                &app.a.key,
            )
            .await
            .expect(200)
            .body;
        assert_eq!(audit["data"][0]["requestId"], echoed.as_str(), "{audit}");
    }
    let kept = send(create("order-42.retry:1".into())).await.expect(201);
    assert_eq!(kept.headers["x-request-id"], "order-42.retry:1");
}

/// Free text in a query is bounded: a 30,000-character search from one tenant once held a
/// PostgreSQL pool for 10 s.
#[tokio::test]
async fn search_text_and_query_strings_are_bounded() {
    let app = spawn_app().await;
    let key = &app.a.key;
    app.get(&format!("/leads?q={}", "a".repeat(100)), key)
        .await
        .expect(200);
    for path in ["/leads", "/contacts"] {
        let refused = app
            .get(&format!("{path}?q={}", "a".repeat(101)), key)
            .await
            .expect_error(422, "validation_failed");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("at most 100 characters"),
            "{}",
            refused.body
        );
    }
    app.get(&format!("/leads?q={}", "a".repeat(30_000)), key)
        .await
        .expect_error(400, "invalid_query");
    app.get(&format!("/audit?entityId={}", "e".repeat(129)), key)
        .await
        .expect_error(422, "validation_failed");
}
