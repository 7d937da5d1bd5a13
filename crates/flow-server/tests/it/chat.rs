//! `POST /chat`: the async AI job against a local server speaking the OpenAI chat API.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, http::HeaderMap, routing::post, Json, Router};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// What the fake chat API saw.
#[derive(Default)]
struct Seen {
    requests: Vec<(Option<String>, Value)>,
}

/// A local stand-in for an OpenAI-compatible API: answers in its wire format, refuses
/// messages containing "refuse" with a 400 as the real one does for bad requests.
async fn fake_llm() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    async fn completions(
        State(seen): State<Arc<Mutex<Seen>>>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (axum::http::StatusCode, Json<Value>) {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        seen.lock().unwrap().requests.push((auth, body.clone()));
        let question = body["messages"][1]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if question.contains("refuse") {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                Json(
                    json!({"error": {"message": "content policy", "type": "invalid_request_error"}}),
                ),
            );
        }
        (
            axum::http::StatusCode::OK,
            Json(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("Svar: {question}")}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
            })),
        )
    }
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/v1"), seen)
}

async fn wait_for(app: &TestApp, id: &str) -> Value {
    for _ in 0..200 {
        let job = app
            .get(&format!("/jobs/{id}"), &app.a.key)
            .await
            .expect(200)
            .body;
        if job["state"] == "completed" || job["state"] == "dead" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("job {id} did not finish");
}

#[tokio::test]
async fn chat_answers_202_then_the_reply_arrives_as_result_and_event() {
    let (url, seen) = fake_llm().await;
    let app = spawn_app_with(|c| {
        c.llm_base_url = Some(url);
        c.llm_api_key = Some("sk-test".into());
        c.llm_model = "mock-model".into();
        c.worker_poll_ms = 20;
    })
    .await;
    let key = &app.a.key;
    let accepted = app
        .post(
            "/chat",
            key,
            json!({"message": "Hvor mange nye leads har vi?"}),
        )
        .await
        .expect(202)
        .body;
    let job = wait_for(&app, accepted["jobId"].as_str().unwrap()).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["result"]["reply"], "Svar: Hvor mange nye leads har vi?");
    assert_eq!(job["result"]["usage"]["total_tokens"], 15);
    {
        let seen = seen.lock().unwrap();
        let (auth, body) = &seen.requests[0];
        assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
        assert_eq!(body["model"], "mock-model");
        assert_eq!(body["messages"][0]["role"], "system");
    }
    let log = app.get("/events/log", key).await.expect(200).body;
    let done = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["type"] == "JOB_COMPLETED")
        .expect("event");
    assert_eq!(
        done["event"]["data"]["reply"],
        "Svar: Hvor mange nye leads har vi?"
    );

    // A request the API refuses is not retried.
    let refused = app
        .post("/chat", key, json!({"message": "please refuse this"}))
        .await
        .expect(202)
        .body;
    let job = wait_for(&app, refused["jobId"].as_str().unwrap()).await;
    assert_eq!(job["state"], "dead");
    assert_eq!(job["attempts"], 1);
    assert!(job["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("400"));

    app.post("/chat", key, json!({"message": ""}))
        .await
        .expect_error(422, "validation_failed");
}

#[tokio::test]
async fn chat_without_a_configured_api_is_503() {
    let app = spawn_app().await;
    app.post("/chat", &app.a.key, json!({"message": "hello"}))
        .await
        .expect_error(503, "llm_not_configured");
}
