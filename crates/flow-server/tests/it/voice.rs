//! Voice commands over HTTP: Danish and English text, structured commands, dry runs,
//! permissions, conversations and the VOICE_COMMAND_EXECUTED event.

use flow_app::services::keys::KeySpec;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

fn spec(permissions: &[&str]) -> KeySpec {
    KeySpec {
        name: "voice".into(),
        permissions: permissions.iter().map(|s| s.to_string()).collect(),
        allowed_apps: vec!["*".into()],
        rate_limit_per_minute: 10_000,
    }
}

async fn say(app: &TestApp, key: &str, body: Value) -> Value {
    app.post("/voice/execute", key, body).await.expect(200).body
}

async fn lead_names(app: &TestApp, key: &str) -> Vec<String> {
    app.list_all("/leads", key)
        .await
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["firstName"].as_str().unwrap(),
                l["lastName"].as_str().unwrap_or_default()
            )
            .trim()
            .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn danish_and_english_text_runs_against_the_api_and_answers_in_kind() {
    let app = spawn_app().await;
    let key = &app.a.key;

    let created = say(
        &app,
        key,
        json!({"text": "Opret et lead for Mette Hansen fra Novo, telefon 12 34 56 78"}),
    )
    .await;
    assert_eq!(created["command"], "create_lead", "{created}");
    assert_eq!(created["language"], "da");
    assert_eq!(created["executed"], true);
    assert_eq!(created["data"]["firstName"], "Mette");
    assert_eq!(created["data"]["company"], "Novo");
    assert_eq!(created["data"]["phone"], "+4512345678");
    assert!(
        created["reply"].as_str().unwrap().contains("Mette Hansen"),
        "{created}"
    );
    assert_eq!(lead_names(&app, key).await, ["Mette Hansen"]);

    let listed = say(&app, key, json!({"text": "show new leads"})).await;
    assert_eq!(listed["command"], "get_leads");
    assert_eq!(listed["parameters"]["status"], "NEW");
    assert_eq!(listed["language"], "en");
    assert_eq!(listed["data"]["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["reply"], "You have one new lead: Mette Hansen.");

    let danish = say(&app, key, json!({"text": "øh vis nye leads"})).await;
    assert!(
        danish["reply"].as_str().unwrap().starts_with("Du har"),
        "{danish}"
    );

    let changed = say(&app, key, json!({"text": "sæt Mette Hansen til kontaktet"})).await;
    assert_eq!(changed["command"], "update_lead_status", "{changed}");
    assert_eq!(changed["data"]["status"], "CONTACTED");

    let assigned = say(&app, key, json!({"text": "assign Mette Hansen to Peter"})).await;
    assert_eq!(assigned["data"]["assignedTo"], "Peter", "{assigned}");

    let logged = say(&app, key, json!({"text": "log a call with Mette Hansen"})).await;
    assert_eq!(logged["command"], "log_activity", "{logged}");
    assert_eq!(logged["data"]["type"], "CALL");

    let meeting = say(
        &app,
        key,
        json!({"text": "book et møde med Mette Hansen i morgen klokken 10", "utcOffsetMinutes": 60}),
    )
    .await;
    assert_eq!(meeting["command"], "schedule_meeting", "{meeting}");
    assert_eq!(meeting["data"]["type"], "MEETING");
    assert!(meeting["data"]["data"]["start"]
        .as_str()
        .unwrap()
        .contains("T10:00:00"));

    let summary = say(
        &app,
        key,
        json!({"text": "hvor mange nye leads har vi i dag"}),
    )
    .await;
    assert_eq!(summary["command"], "get_summary", "{summary}");
    assert_eq!(summary["data"]["newLeads"], 1);
    // The meeting booked above is tomorrow, not today; one starting now counts.
    assert_eq!(summary["data"]["meetings"], 0);
    let now = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339();
    say(
        &app,
        key,
        json!({"command": "schedule_meeting", "parameters": {"with": "Mette Hansen", "start": now}}),
    )
    .await;
    let summary = say(
        &app,
        key,
        json!({"command": "get_summary", "parameters": {"period": "today"}}),
    )
    .await;
    assert_eq!(summary["data"]["meetings"], 1, "{summary}");

    let found = say(&app, key, json!({"text": "search contacts for Novo"})).await;
    assert_eq!(found["command"], "search_contacts", "{found}");
    assert_eq!(found["data"]["data"].as_array().unwrap().len(), 1);

    let help = say(&app, key, json!({"text": "hjælp"})).await;
    assert_eq!(help["command"], "help");
    assert_eq!(help["language"], "da");

    // Every executed command reached the log, routed to flow-web and voice-agent.
    let log = app.list_all("/events/log", key).await;
    let executed: Vec<&Value> = log
        .iter()
        .filter(|e| e["event"]["type"] == "VOICE_COMMAND_EXECUTED")
        .collect();
    assert_eq!(executed.len(), 12);
    let targets = executed[0]["event"]["target"].as_array().unwrap();
    assert!(targets.contains(&json!("flow-web")) && targets.contains(&json!("voice-agent")));
}

#[tokio::test]
async fn unclear_text_asks_back_and_changes_nothing() {
    let app = spawn_app().await;
    let key = &app.a.key;
    for text in ["John", "lead", "blah blah"] {
        let answer = say(&app, key, json!({"text": text})).await;
        assert_eq!(answer["executed"], false, "{text}: {answer}");
        assert_eq!(answer["success"], false);
        assert!(
            answer["clarification"]
                .as_str()
                .is_some_and(|q| !q.is_empty()),
            "{answer}"
        );
        assert!(answer["command"].is_null());
    }
    assert!(lead_names(&app, key).await.is_empty());
    // Nothing ran, so nothing was announced.
    let log = app.list_all("/events/log", key).await;
    assert!(log
        .iter()
        .all(|e| e["event"]["type"] != "VOICE_COMMAND_EXECUTED"));
}

#[tokio::test]
async fn structured_commands_and_the_spec_test_endpoint() {
    let app = spawn_app().await;
    let key = &app.a.key;
    // The spec's troubleshooting call.
    let tested = app
        .post("/voice/test", key, json!({"command": "get_leads"}))
        .await
        .expect(200)
        .body;
    assert_eq!(tested["executed"], true);
    assert!(tested["data"]["data"].is_array());

    // A write in a dry run is understood and checked, not run.
    let dry = app
        .post(
            "/voice/test",
            key,
            json!({"command": "create_lead", "parameters": {"firstName": "Dry"}}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(dry["executed"], false);
    assert_eq!(dry["parameters"]["first_name"], "Dry");
    assert!(lead_names(&app, key).await.is_empty());
    assert!(app.list_all("/conversations", key).await.is_empty());

    let created = say(
        &app,
        key,
        json!({"command": "create_lead", "parameters": {"first_name": "Ada", "email": "ada@example.com"}, "language": "da"}),
    )
    .await;
    assert_eq!(created["data"]["email"], "ada@example.com");
    assert_eq!(created["language"], "da");
}

#[tokio::test]
async fn bad_voice_input_gets_clear_errors_and_changes_nothing() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let cases = [
        (json!({}), 422, "validation_failed"),
        (json!({"text": "   "}), 422, "validation_failed"),
        (json!({"text": "x".repeat(1001)}), 422, "validation_failed"),
        (
            json!({"text": "show leads", "language": "fr"}),
            422,
            "validation_failed",
        ),
        (json!({"command": "self_destruct"}), 400, "unknown_command"),
        (
            json!({"command": "get_leads", "parameters": {"status": "ASLEEP"}}),
            422,
            "validation_failed",
        ),
        (
            json!({"command": "get_leads", "parameters": {"colour": "red"}}),
            422,
            "validation_failed",
        ),
        (
            json!({"command": "get_leads", "parameters": [1, 2]}),
            422,
            "validation_failed",
        ),
        (
            json!({"text": "show leads", "utcOffsetMinutes": 100000}),
            422,
            "validation_failed",
        ),
        (
            json!({"text": "show leads", "extra": true}),
            422,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        app.post("/voice/execute", key, body.clone())
            .await
            .expect_error(status, code);
    }
    assert!(app.list_all("/conversations", key).await.is_empty());
}

#[tokio::test]
async fn voice_needs_its_permission_and_the_commands_own() {
    let app = spawn_app().await;
    let no_voice = app.key_for_a(spec(&["read:leads", "write:leads"])).await;
    app.post(
        "/voice/execute",
        &no_voice,
        json!({"text": "show new leads"}),
    )
    .await
    .expect_error(403, "permission_denied");
    let read_only = app.key_for_a(spec(&["execute:voice", "read:leads"])).await;
    say(&app, &read_only, json!({"text": "show new leads"})).await;
    app.post(
        "/voice/execute",
        &read_only,
        json!({"text": "create a lead for John Smith"}),
    )
    .await
    .expect_error(403, "permission_denied");
    assert!(lead_names(&app, &app.a.key).await.is_empty());
}

#[tokio::test]
async fn conversations_keep_the_turns_per_tenant() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let first = say(&app, key, json!({"text": "show new leads"})).await;
    let id = first["conversationId"].as_str().unwrap().to_owned();
    let second = say(
        &app,
        key,
        json!({"text": "vis kontaktede leads", "conversationId": id}),
    )
    .await;
    assert_eq!(second["conversationId"], id.as_str());
    let conversation = app
        .get(&format!("/conversations/{id}"), key)
        .await
        .expect(200)
        .body;
    let turns = conversation["transcript"].as_array().unwrap();
    let texts: Vec<&str> = turns.iter().map(|t| t["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), 4);
    assert_eq!(texts[0], "show new leads");
    assert_eq!(texts[2], "vis kontaktede leads");
    assert_eq!(turns[3]["command"], "get_leads");
    assert_eq!(conversation["language"], "da");

    let started = app
        .post(
            "/conversations",
            key,
            json!({"title": "Imported", "transcript": [{"role": "user", "text": "hej"}]}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(app.list_all("/conversations", key).await.len(), 2);
    app.post("/conversations", key, json!({"transcript": "not turns"}))
        .await
        .expect_error(422, "validation_failed");

    // Tenant B sees none of it, and cannot continue A's conversation.
    let b = &app.b.key;
    assert!(app.list_all("/conversations", b).await.is_empty());
    app.get(
        &format!("/conversations/{}", started["id"].as_str().unwrap()),
        b,
    )
    .await
    .expect_error(404, "not_found");
    app.post(
        "/voice/execute",
        b,
        json!({"text": "show new leads", "conversationId": id}),
    )
    .await
    .expect_error(404, "not_found");
}

/// A local stand-in for an OpenAI-compatible chat API with function calling: it answers
/// "take over" requests with an `assign_lead` call, "wipe" with a function Flow does not
/// have, and anything else without a call.
async fn fake_function_calling_llm() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::{extract::State, routing::post, Json, Router};
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    async fn completions(
        State(seen): State<Arc<Mutex<Vec<Value>>>>,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        seen.lock().unwrap().push(body.clone());
        let said = body["messages"][1]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let call = |name: &str, arguments: Value| {
            json!([{"id": "call_1", "type": "function",
                    "function": {"name": name, "arguments": arguments.to_string()}}])
        };
        let message = if said.contains("take over") {
            json!({"role": "assistant", "content": null,
                   "tool_calls": call("assign_lead", json!({"target": "John Smith", "assignee": "Lisa"}))})
        } else if said.contains("wipe") {
            json!({"role": "assistant", "content": null,
                   "tool_calls": call("delete_all_leads", json!({}))})
        } else {
            json!({"role": "assistant", "content": "I am not sure what you mean."})
        };
        Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]
        }))
    }
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/v1"), seen)
}

#[tokio::test]
async fn the_model_fallback_handles_what_the_parser_cannot_and_is_checked() {
    let (url, seen) = fake_function_calling_llm().await;
    let app = crate::helpers::spawn_app_with(|c| c.llm_base_url = Some(url.clone())).await;
    let key = &app.a.key;
    app.post(
        "/leads",
        key,
        json!({"firstName": "John", "lastName": "Smith", "source": "web"}),
    )
    .await
    .expect(201);

    // The parser's fast path never asks the model.
    say(&app, key, json!({"text": "show new leads"})).await;
    assert!(seen.lock().unwrap().is_empty());

    let answer = say(&app, key, json!({"text": "let Lisa take over John Smith"})).await;
    assert_eq!(answer["command"], "assign_lead", "{answer}");
    assert_eq!(answer["data"]["assignedTo"], "Lisa");
    assert!(answer["confidence"].as_f64().unwrap() < 1.0);
    let request = seen.lock().unwrap()[0].clone();
    let tools: Vec<&str> = request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"assign_lead") && tools.contains(&"get_leads"),
        "{tools:?}"
    );

    // A function Flow does not have, or no function at all: the question stands.
    for text in ["wipe it all", "what is the weather"] {
        let answer = say(&app, key, json!({"text": text})).await;
        assert_eq!(answer["executed"], false, "{answer}");
        assert!(answer["clarification"].is_string());
    }
    assert_eq!(app.list_all("/leads", key).await.len(), 1);
}

#[tokio::test]
async fn a_command_about_a_lead_that_is_not_there_does_not_report_success() {
    let app = spawn_app().await;
    let key = &app.a.key;
    for text in [
        "sæt Nobody Atall til kontaktet",
        "assign Nobody Atall to Peter",
    ] {
        let answer = say(&app, key, json!({ "text": text })).await;
        assert_eq!(answer["success"], false, "{answer}");
        assert_eq!(answer["executed"], false, "{answer}");
        assert!(answer["data"]["notFound"].is_string(), "{answer}");
    }
    // Nothing was announced as executed.
    let log = app.get("/events/log", key).await.expect(200).body;
    assert!(
        log["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["event"]["type"] != "VOICE_COMMAND_EXECUTED"),
        "{log}"
    );
}
