//! The WebSocket gateway, with a real WebSocket client against the real server.

use std::{collections::HashSet, sync::Arc, time::Duration};

use flow_app::services::keys::KeySpec;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{self, client::IntoClientRequest, protocol::frame::coding::CloseCode, Message},
    MaybeTlsStream, WebSocketStream,
};

use crate::helpers::{close_frame, spawn_app, spawn_app_with, TestApp};

/// A test client on `/events`.
struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    welcome: Value,
}

enum Credential<'a> {
    Header(&'a str),
    Query(String),
    Protocol(&'a str),
}

async fn try_connect(
    app: &TestApp,
    credential: Credential<'_>,
    source_app: Option<&str>,
) -> Result<Client, tungstenite::Error> {
    let path = match &credential {
        Credential::Query(query) => format!("/events?{query}"),
        _ => "/events".to_owned(),
    };
    let mut request = format!("ws://{}{path}", app.address)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    match credential {
        Credential::Header(key) => {
            headers.insert("x-tenant-key", key.parse().unwrap());
        }
        Credential::Protocol(key) => {
            headers.insert(
                "sec-websocket-protocol",
                format!("flow.v1, flow-key.{key}").parse().unwrap(),
            );
        }
        Credential::Query(_) => {}
    }
    if let Some(source_app) = source_app {
        headers.insert("x-source-app", source_app.parse().unwrap());
    }
    let (ws, _response) = connect_async(request).await?;
    let mut client = Client {
        ws,
        welcome: Value::Null,
    };
    client.welcome = client.next_of_type("welcome").await;
    Ok(client)
}

async fn connect(app: &TestApp, key: &str, source_app: Option<&str>) -> Client {
    try_connect(app, Credential::Header(key), source_app)
        .await
        .expect("connects")
}

/// A client whose kernel receive buffer is tiny, so that not reading soon backs up the server.
async fn connect_with_small_buffer(app: &TestApp, key: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.address).await.unwrap();
    let mut request = format!("ws://{}/events", app.address)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-tenant-key", key.parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    let mut client = Client {
        ws,
        welcome: Value::Null,
    };
    client.welcome = client.next_of_type("welcome").await;
    client
}

fn http_status(error: tungstenite::Error) -> u16 {
    match error {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

impl Client {
    /// The next JSON text frame, within 10 s.
    async fn next(&mut self) -> Value {
        self.try_next(Duration::from_secs(10))
            .await
            .expect("a frame within 10 s")
    }

    async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match message.expect("socket stays healthy") {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"))
                }
                Message::Close(frame) => panic!("socket closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    async fn next_of_type(&mut self, kind: &str) -> Value {
        for _ in 0..10_000 {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
        panic!("no {kind} frame");
    }

    /// The next `n` event frames.
    async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            let frame = self.next().await;
            if frame["type"] == "event" {
                events.push(frame);
            }
        }
        events
    }

    /// Asserts that no event arrives within `wait`.
    async fn expect_no_event(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Some(frame) = self
            .try_next(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            assert_ne!(frame["type"], "event", "unexpected event: {frame}");
        }
    }

    async fn send(&mut self, value: Value) {
        self.ws
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    async fn call(&mut self, value: Value, reply_type: &str) -> Value {
        self.send(value).await;
        self.next_of_type(reply_type).await
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_connected_app_receives_its_tenants_events_in_order() {
    let app = spawn_app().await;
    let mut socket = connect(&app, &app.a.key, Some("flow-web")).await;
    let welcome = socket.welcome.clone();
    assert_eq!(welcome["tenantId"], app.a.tenant.id.to_string());
    assert_eq!(welcome["appId"], "flow-web");
    let start = welcome["seq"].as_i64().unwrap();
    assert_eq!(
        json!(start),
        app.get("/events/log", &app.a.key).await.body["lastSeq"]
    );
    let mut rooms: Vec<String> = serde_json::from_value(welcome["rooms"].clone()).unwrap();
    rooms.sort();
    assert_eq!(
        rooms,
        [
            "app:flow-web".to_string(),
            format!("tenant:{}", app.a.tenant.id)
        ]
    );

    let lead = app
        .create_lead(&app.a.key, "Live", Some("live@example.com"))
        .await;
    let events = socket.events(2).await;
    assert_eq!(types(&events), ["CONTACT_CREATED", "LEAD_CREATED"]);
    assert_eq!(events[0]["seq"], start + 1);
    assert_eq!(events[1]["seq"], start + 2);
    let event = &events[1]["event"];
    assert_eq!(event["data"]["lead"]["id"], lead["id"]);
    assert_eq!(event["tenantId"], app.a.tenant.id.to_string());
    assert_eq!(event["target"], json!(["crm-web", "flow-web"]));
}

#[tokio::test]
async fn tenant_b_sockets_never_see_tenant_a_events_under_load() {
    let app = Arc::new(spawn_app().await);
    let mut a_socket = connect(&app, &app.a.key, None).await;
    let mut b_socket = connect(&app, &app.b.key, None).await;
    let writers: Vec<_> = [app.a.key.clone(), app.b.key.clone()]
        .into_iter()
        .flat_map(|key| (0..4).map(move |w| (key.clone(), w)))
        .map(|(key, w)| {
            let app = app.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    app.post("/leads", &key, json!({"firstName": format!("W{w}I{i}")}))
                        .await
                        .expect(201);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    // 100 leads per tenant, each with its contact: 200 events each.
    for (socket, tenant) in [
        (&mut a_socket, &app.a.tenant),
        (&mut b_socket, &app.b.tenant),
    ] {
        let events = socket.events(200).await;
        let start = socket.welcome["seq"].as_i64().unwrap();
        for (i, frame) in events.iter().enumerate() {
            assert_eq!(
                frame["event"]["tenantId"],
                tenant.id.to_string(),
                "cross-tenant event: {frame}"
            );
            assert_eq!(frame["seq"], start + 1 + i as i64, "gap or reorder");
        }
        socket.expect_no_event(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn routing_follows_the_table_for_app_rooms() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let tenant_room = format!("tenant:{}", app.a.tenant.id);
    let mut crm = connect(&app, key, Some("crm-web")).await;
    let mut voice = connect(&app, key, Some("voice-agent")).await;
    let mut security = connect(&app, key, Some("secure-platform")).await;
    for socket in [&mut crm, &mut voice, &mut security] {
        // Leave the tenant room: only events routed to the app's own room arrive.
        let reply = socket
            .call(
                json!({"type": "unsubscribe", "rooms": [tenant_room]}),
                "subscribed",
            )
            .await;
        assert_eq!(reply["rooms"].as_array().unwrap().len(), 1);
    }

    app.create_lead(key, "Routed", Some("routed@example.com"))
        .await; // CONTACT_CREATED, LEAD_CREATED
    let mut commander = connect(&app, key, Some("voice-agent")).await;
    let reply = commander
        .call(json!({"type": "execute_voice_command", "id": 7, "command": "get_leads", "parameters": {}}), "voice_command_response")
        .await;
    assert_eq!(reply["success"], true, "{reply}");

    assert_eq!(
        types(&crm.events(2).await),
        ["CONTACT_CREATED", "LEAD_CREATED"]
    );
    assert_eq!(types(&voice.events(1).await), ["VOICE_COMMAND_EXECUTED"]);
    crm.expect_no_event(Duration::from_millis(300)).await;
    voice.expect_no_event(Duration::from_millis(100)).await;
    security.expect_no_event(Duration::from_millis(100)).await;

    // Joining another app's room of the same tenant is allowed; another tenant's room is not.
    security
        .call(
            json!({"type": "subscribe", "rooms": ["app:flow-web"]}),
            "subscribed",
        )
        .await;
    app.create_lead(key, "Again", None).await;
    assert_eq!(types(&security.events(1).await), ["LEAD_CREATED"]);
    let refused = security
        .call(
            json!({"type": "subscribe", "rooms": [format!("tenant:{}", app.b.tenant.id)]}),
            "error",
        )
        .await;
    assert_eq!(refused["code"], "forbidden_room");
}

#[tokio::test]
async fn subscribe_filters_event_types() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let mut socket = connect(&app, key, None).await;
    let reply = socket
        .call(
            json!({"type": "subscribe", "eventTypes": ["LEAD_STATUS_CHANGED"]}),
            "subscribed",
        )
        .await;
    assert_eq!(reply["eventTypes"], json!(["LEAD_STATUS_CHANGED"]));
    let lead = app.create_lead(key, "Filter", None).await;
    app.patch(
        &format!("/leads/{}/status", lead["id"].as_str().unwrap()),
        key,
        json!({"status": "CONTACTED"}),
    )
    .await
    .expect(200);
    let events = socket.events(1).await;
    assert_eq!(types(&events), ["LEAD_STATUS_CHANGED"]);
    assert_eq!(events[0]["event"]["data"]["to"], "CONTACTED");
    socket.expect_no_event(Duration::from_millis(200)).await;

    let reply = socket
        .call(
            json!({"type": "unsubscribe", "eventTypes": ["LEAD_STATUS_CHANGED"]}),
            "subscribed",
        )
        .await;
    assert_eq!(reply["eventTypes"], json!([]));
    app.patch(
        &format!("/leads/{}/status", lead["id"].as_str().unwrap()),
        key,
        json!({"status": "QUALIFIED"}),
    )
    .await
    .expect(200);
    socket.expect_no_event(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn resume_replays_without_gap_or_duplicate_while_events_are_written() {
    let app = Arc::new(spawn_app().await);
    let key = app.a.key.clone();
    for i in 0..20 {
        app.post("/leads", &key, json!({"firstName": format!("Early{i}")}))
            .await
            .expect(201);
    }
    let since = 5;
    let writer = {
        let (app, key) = (app.clone(), key.clone());
        tokio::spawn(async move {
            for i in 0..150 {
                app.post("/leads", &key, json!({"firstName": format!("During{i}")}))
                    .await
                    .expect(201);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut socket = connect(&app, &key, None).await;
    socket.send(json!({"type": "resume", "since": since})).await;
    writer.await.unwrap();
    let last: i64 = app.get("/events/log", &key).await.body["lastSeq"]
        .as_i64()
        .unwrap();
    let events = socket.events((last - since) as usize).await;
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (since + 1..=last).collect();
    assert_eq!(seqs, expected, "replay then live, no gap and no duplicate");
    socket.expect_no_event(Duration::from_millis(300)).await;

    let bad = socket
        .call(json!({"type": "resume", "since": last + 10}), "error")
        .await;
    assert_eq!(bad["code"], "invalid_since");
}

#[tokio::test]
async fn resuming_before_the_retained_log_asks_for_a_resync() {
    let app = spawn_app().await;
    let key = &app.a.key;
    app.create_lead(key, "Old", None).await;
    let pruned = app.store.prune_events(chrono::Utc::now()).await.unwrap();
    assert!(pruned >= 3);
    app.create_lead(key, "New", None).await;
    let mut socket = connect(&app, key, None).await;
    let current = socket.welcome["seq"].as_i64().unwrap();
    let reply = socket
        .call(json!({"type": "resume", "since": 0}), "resync_required")
        .await;
    assert_eq!(reply["since"], 0);
    assert_eq!(reply["seq"], current);
    assert_eq!(reply["oldestSeq"], current - 1);
    // From the resync point on, delivery is live.
    app.create_lead(key, "Live", None).await;
    let events = socket.events(2).await;
    assert_eq!(events[0]["seq"], current + 1);
    // A resume inside the retained window works.
    let mut other = connect(&app, key, None).await;
    other
        .send(json!({"type": "resume", "since": current - 1}))
        .await;
    let replayed = other.events(3).await;
    assert_eq!(replayed[0]["seq"], current);
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_while_others_keep_up() {
    let app = Arc::new(
        spawn_app_with(|c| {
            c.ws_buffer_events = 16;
            c.ws_send_timeout_secs = 1;
        })
        .await,
    );
    let key = app.a.key.clone();
    let mut fast = connect(&app, &key, Some("flow-web")).await;
    let mut slow = connect_with_small_buffer(&app, &key).await;
    let start = fast.welcome["seq"].as_i64().unwrap();
    // The slow client reads nothing from here on; big events fill the server's socket
    // buffer (at most 4 MiB here) after a few hundred.
    let notes = "x".repeat(9000);
    let total_leads = 800;
    let writer = {
        let (app, key) = (app.clone(), key.clone());
        tokio::spawn(async move {
            for i in 0..total_leads {
                app.post(
                    "/leads",
                    &key,
                    json!({"firstName": format!("Flood{i}"), "notes": notes}),
                )
                .await
                .expect(201);
            }
        })
    };
    let mut worst = Duration::ZERO;
    for i in 0..total_leads * 2 {
        let frame = fast.next_of_type("event").await;
        assert_eq!(frame["seq"], start + 1 + i as i64);
        let sent: chrono::DateTime<chrono::Utc> = frame["event"]["timestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        worst = worst.max((chrono::Utc::now() - sent).to_std().unwrap_or_default());
    }
    writer.await.unwrap();
    assert!(
        worst < Duration::from_secs(2),
        "the fast socket fell behind: worst latency {worst:?}"
    );

    // The slow socket is cut off within the send timeout (1 s here) of falling behind.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = app.metrics().await;
        if metrics.contains("websocket_slow_consumers_dropped_total 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("websocket_slow_consumers_dropped_total 1"),
        "the slow socket was not dropped:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("websocket"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The slow client finds its connection ended once it reads again.
    let mut ended = false;
    for _ in 0..100_000 {
        match tokio::time::timeout(Duration::from_secs(5), slow.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                if let Some(frame) = frame {
                    assert_eq!(frame.code, CloseCode::Again);
                }
                ended = true;
                break;
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    assert!(ended, "the slow socket is still open");
}

#[tokio::test]
async fn connections_without_valid_credentials_are_refused() {
    let app = spawn_app().await;
    let refused = |r: Result<Client, tungstenite::Error>| http_status(r.err().expect("refused"));
    assert_eq!(
        refused(try_connect(&app, Credential::Query(String::new()), None).await),
        401
    );
    assert_eq!(
        refused(try_connect(&app, Credential::Header("nope"), None).await),
        401
    );
    assert_eq!(
        refused(try_connect(&app, Credential::Query("token=forged.token".into()), None).await),
        401
    );
    let no_events = app
        .key_for_a(KeySpec {
            name: "w".into(),
            permissions: vec!["write:leads".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 100,
        })
        .await;
    assert_eq!(
        refused(try_connect(&app, Credential::Header(&no_events), None).await),
        403
    );
    let crm_only = app
        .key_for_a(KeySpec {
            name: "c".into(),
            permissions: vec!["*".into()],
            allowed_apps: vec!["crm-web".into()],
            rate_limit_per_minute: 100,
        })
        .await;
    assert_eq!(
        refused(try_connect(&app, Credential::Header(&crm_only), Some("voice-agent")).await),
        403
    );
    connect(&app, &crm_only, Some("crm-web")).await;

    // The spec's troubleshooting curl: a plain GET with the key explains what is missing.
    let plain = app
        .client
        .get(app.url("/events"))
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("x-tenant-key", &app.a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 426);
    let body: Value = plain.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&app.a.tenant.id.to_string()));
}

#[tokio::test]
async fn browsers_connect_with_a_token_the_subprotocol_or_a_query_key() {
    let app = spawn_app().await;
    let minted = crate::helpers::send(
        app.client
            .post(app.url("/events/token"))
            .header("x-tenant-key", &app.a.key)
            .header("x-source-app", "flow-web"),
    )
    .await
    .expect(201)
    .body;
    let token = minted["token"].as_str().unwrap();
    let with_token = try_connect(&app, Credential::Query(format!("token={token}")), None)
        .await
        .unwrap();
    assert_eq!(with_token.welcome["appId"], "flow-web");
    assert_eq!(with_token.welcome["tenantId"], app.a.tenant.id.to_string());
    let tampered = token.replacen("flow-web", "crm-web", 1);
    assert_eq!(
        http_status(
            try_connect(&app, Credential::Query(format!("token={tampered}")), None)
                .await
                .err()
                .unwrap()
        ),
        401
    );

    let with_protocol = try_connect(&app, Credential::Protocol(&app.b.key), None)
        .await
        .unwrap();
    assert_eq!(
        with_protocol.welcome["tenantId"],
        app.b.tenant.id.to_string()
    );
    let with_query = try_connect(
        &app,
        Credential::Query(format!("key={}&app=crm-web", app.a.key)),
        None,
    )
    .await
    .unwrap();
    assert_eq!(with_query.welcome["appId"], "crm-web");
}

#[tokio::test]
async fn a_signed_in_user_connects_with_the_access_token_and_sees_only_its_tenant() {
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", flow_store::Role::Viewer)
        .await;
    let session = app.sign_in("ada@example.com", &password).await;
    let token = session["accessToken"].as_str().unwrap();
    let mut dashboard = try_connect(
        &app,
        Credential::Query(format!("token={token}&app=flow-web")),
        None,
    )
    .await
    .expect("a user's access token opens the socket");
    assert_eq!(dashboard.welcome["appId"], "flow-web");
    assert_eq!(dashboard.welcome["tenantId"], app.a.tenant.id.to_string());
    app.create_lead(&app.b.key, "OtherTenant", None).await;
    let lead = app.create_lead(&app.a.key, "SeenLive", None).await;
    loop {
        let event = dashboard.next_of_type("event").await;
        assert_eq!(
            event["event"]["tenantId"],
            app.a.tenant.id.to_string(),
            "{event}"
        );
        if event["event"]["type"] == "LEAD_CREATED" {
            assert_eq!(event["event"]["data"]["lead"]["id"], lead["id"], "{event}");
            break;
        }
    }

    let (signed, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);
    let refused = try_connect(&app, Credential::Query(format!("token={forged}")), None)
        .await
        .err()
        .expect("a forged token is refused");
    assert_eq!(http_status(refused), 401);
}

#[tokio::test]
async fn a_socket_opened_with_a_token_closes_when_the_token_expires() {
    let app = spawn_app_with(|config| config.access_token_ttl_secs = 2).await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", flow_store::Role::Viewer)
        .await;
    let session = app.sign_in("ada@example.com", &password).await;
    let token = session["accessToken"].as_str().unwrap();
    let mut client = try_connect(&app, Credential::Query(format!("token={token}")), None)
        .await
        .unwrap();
    let closed = close_frame(&mut client.ws).await;
    assert_eq!(closed.code, CloseCode::Policy);
    assert!(closed.reason.contains("expired"), "{}", closed.reason);
}

#[tokio::test]
async fn malformed_frames_get_error_frames_and_the_socket_lives_on() {
    let app = spawn_app().await;
    let mut socket = connect(&app, &app.a.key, None).await;
    socket
        .ws
        .send(Message::Text("not json".into()))
        .await
        .unwrap();
    assert_eq!(
        socket.next_of_type("error").await["code"],
        "invalid_message"
    );
    socket.send(json!({"type": "launch_missiles"})).await;
    assert_eq!(
        socket.next_of_type("error").await["code"],
        "invalid_message"
    );
    socket.send(json!({"type": "resume"})).await;
    assert_eq!(
        socket.next_of_type("error").await["code"],
        "invalid_message"
    );
    socket
        .send(json!({"type": "subscribe", "eventTypes": ["NOT_A_TYPE"]}))
        .await;
    assert_eq!(
        socket.next_of_type("error").await["code"],
        "invalid_message"
    );
    socket
        .ws
        .send(Message::Binary(vec![0, 1, 2].into()))
        .await
        .unwrap();
    assert_eq!(
        socket.next_of_type("error").await["code"],
        "unsupported_frame"
    );
    let pong = socket
        .call(json!({"type": "ping", "id": "p1"}), "pong")
        .await;
    assert_eq!(pong["id"], "p1");
    // And it still delivers events.
    app.create_lead(&app.a.key, "Still", None).await;
    socket.events(2).await;
}

#[tokio::test]
async fn voice_commands_over_the_socket_answer_and_emit_an_event() {
    let app = spawn_app().await;
    let key = &app.a.key;
    let mut agent = connect(&app, key, Some("voice-agent")).await;
    let mut web = connect(&app, key, Some("flow-web")).await;

    let created = agent
        .call(
            json!({"type": "execute_voice_command", "id": "c1", "command": "create_lead",
                   "parameters": {"firstName": "Spoken", "email": "spoken@example.com", "source": "voice"}}),
            "voice_command_response",
        )
        .await;
    assert_eq!(created["id"], "c1");
    assert_eq!(created["success"], true, "{created}");
    let lead_id = created["data"]["id"].as_str().unwrap().to_owned();

    let listed = agent
        .call(
            json!({"type": "execute_voice_command", "id": "c2", "command": "get_leads", "parameters": {"status": "NEW", "limit": 5}}),
            "voice_command_response",
        )
        .await;
    assert_eq!(listed["data"]["data"][0]["id"], lead_id.as_str());

    let updated = agent
        .call(
            json!({"type": "execute_voice_command", "id": "c3", "command": "update_lead_status",
                   "parameters": {"leadId": lead_id, "status": "CONTACTED"}}),
            "voice_command_response",
        )
        .await;
    assert_eq!(updated["data"]["status"], "CONTACTED");

    let wrong = agent
        .call(
            json!({"type": "execute_voice_command", "id": "c4", "command": "self_destruct"}),
            "voice_command_response",
        )
        .await;
    assert_eq!(wrong["success"], false);
    assert_eq!(wrong["error"]["code"], "unknown_command");

    // flow-web sees the lead appear and every executed command.
    let events = web.events(6).await;
    let seen = types(&events);
    assert_eq!(
        seen.iter()
            .filter(|t| **t == "VOICE_COMMAND_EXECUTED")
            .count(),
        3,
        "{seen:?}"
    );
    assert!(seen.contains(&"LEAD_CREATED") && seen.contains(&"LEAD_STATUS_CHANGED"));
    let executed = events
        .iter()
        .find(|e| e["event"]["type"] == "VOICE_COMMAND_EXECUTED")
        .unwrap();
    assert_eq!(executed["event"]["source"], "voice-agent");
    assert_eq!(
        executed["event"]["target"],
        json!(["flow-web", "voice-agent"])
    );

    let no_voice = app
        .key_for_a(KeySpec {
            name: "r".into(),
            permissions: vec!["read:*".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 100,
        })
        .await;
    let mut reader = connect(&app, &no_voice, None).await;
    let denied = reader
        .call(
            json!({"type": "execute_voice_command", "id": 1, "command": "get_leads"}),
            "voice_command_response",
        )
        .await;
    assert_eq!(denied["error"]["code"], "permission_denied");
}

#[tokio::test]
async fn shutdown_closes_sockets_with_1001() {
    let app = spawn_app().await;
    let mut socket = connect(&app, &app.a.key, None).await;
    app.shutdown();
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed within 5 s");
    assert_eq!(close.expect("a close frame").code, CloseCode::Away);
}

#[tokio::test]
async fn gateway_metrics_count_connections_and_published_events() {
    let app = spawn_app().await;
    let mut live = connect(&app, &app.a.key, Some("flow-web")).await;
    app.create_lead(&app.a.key, "Metric", None).await;
    live.events(2).await;
    let mut socket = connect(&app, &app.a.key, None).await;
    socket.send(json!({"type": "resume", "since": 0})).await;
    socket.events(3).await;
    let text = app.metrics().await;
    let tenant = app.a.tenant.id;
    for expected in [
        format!(r#"websocket_connections_active{{app_id="flow-web",tenant_id="{tenant}"}} 1"#),
        r#"websocket_events_published_total{event_type="LEAD_CREATED",source_app="api",target_app="crm-web"} 1"#.to_owned(),
        r#"websocket_events_published_total{event_type="LEAD_CREATED",source_app="api",target_app="flow-web"} 1"#.to_owned(),
        "websocket_event_delivery_seconds_count".to_owned(),
    ] {
        assert!(text.contains(&expected), "missing {expected}:\n{text}");
    }
    let seen: HashSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("websocket_"))
        .collect();
    assert!(!seen.is_empty());
}

#[tokio::test]
async fn sockets_close_when_their_key_is_revoked_or_their_user_removed_demoted_or_signed_out() {
    let app = spawn_app_with(|config| config.ws_heartbeat_secs = 1).await;
    let key = app
        .key_for_a(KeySpec {
            name: "watcher".into(),
            permissions: vec!["read:events".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    let mut by_key = connect(&app, &key, None).await;
    let mut bystander = connect(&app, &app.a.key, None).await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", flow_store::Role::Viewer)
        .await;
    let session = app.sign_in("ada@example.com", &password).await;
    let token = session["accessToken"].as_str().unwrap();
    let mut by_user = try_connect(&app, Credential::Query(format!("token={token}")), None)
        .await
        .unwrap();
    let password = app
        .user_in(&app.a.tenant, "bo@example.com", flow_store::Role::User)
        .await;
    let session = app.sign_in("bo@example.com", &password).await;
    let token = session["accessToken"].as_str().unwrap();
    let mut by_demoted = try_connect(&app, Credential::Query(format!("token={token}")), None)
        .await
        .unwrap();
    // A user who then signs out: the sign-in's sockets end with it.
    let password = app
        .user_in(&app.a.tenant, "cy@example.com", flow_store::Role::User)
        .await;
    let session = app.sign_in("cy@example.com", &password).await;
    let token = session["accessToken"].as_str().unwrap();
    let mut by_signed_out = try_connect(&app, Credential::Query(format!("token={token}")), None)
        .await
        .unwrap();
    let refresh_token = session["refreshToken"].clone();
    // A socket opened with a connection token stands for the key that minted it.
    let minted = app.post("/events/token", &key, json!({})).await.expect(201);
    let mut by_key_token = try_connect(
        &app,
        Credential::Query(format!("token={}", minted.body["token"].as_str().unwrap())),
        None,
    )
    .await
    .unwrap();

    let key_id = app.key_id(&key).await;
    app.delete(&format!("/api-keys/{key_id}"), &app.a.key)
        .await
        .expect(204);
    let user_id = app.user_id("ada@example.com").await;
    app.delete(&format!("/users/{user_id}"), &app.a.key)
        .await
        .expect(204);
    let demoted_id = app.user_id("bo@example.com").await;
    app.patch(
        &format!("/users/{demoted_id}"),
        &app.a.key,
        json!({ "role": "viewer" }),
    )
    .await
    .expect(200);
    app.call(
        reqwest::Method::POST,
        "/auth/logout",
        None,
        Some(json!({ "refreshToken": refresh_token })),
    )
    .await
    .expect(204);

    for client in [
        &mut by_key,
        &mut by_key_token,
        &mut by_user,
        &mut by_demoted,
        &mut by_signed_out,
    ] {
        let closed = close_frame(&mut client.ws).await;
        assert_eq!(closed.code, CloseCode::Policy);
        assert!(closed.reason.contains("revoked"), "{}", closed.reason);
    }
    // A socket whose credential still holds lives on through the same heartbeats.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bystander.send(json!({"type": "ping"})).await;
    bystander.next_of_type("pong").await;
}

#[tokio::test]
async fn every_socket_credential_draws_on_the_same_rate_limit() {
    let app = spawn_app().await;
    let key = app
        .key_for_a(KeySpec {
            name: "tight".into(),
            permissions: vec!["*".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 4,
        })
        .await;
    // Minting takes one request from the key's bucket; each socket opened with the
    // token, the subprotocol or the query key takes one more.
    let minted = app.post("/events/token", &key, json!({})).await.expect(201);
    let token = minted.body["token"].as_str().unwrap().to_owned();
    try_connect(&app, Credential::Query(format!("token={token}")), None)
        .await
        .expect("the token opens a socket");
    try_connect(&app, Credential::Protocol(&key), None)
        .await
        .expect("the subprotocol key opens a socket");
    try_connect(&app, Credential::Query(format!("key={key}")), None)
        .await
        .expect("the query key opens a socket");
    for refused in [
        try_connect(&app, Credential::Protocol(&key), None).await,
        try_connect(&app, Credential::Query(format!("key={key}")), None).await,
    ] {
        // Refused the way HTTP refuses, with the headers that say when to come back.
        match refused.err().expect("rate limited") {
            tungstenite::Error::Http(response) => {
                assert_eq!(response.status().as_u16(), 429);
                let headers = response.headers();
                for name in [
                    "retry-after",
                    "ratelimit-limit",
                    "ratelimit-remaining",
                    "ratelimit-reset",
                ] {
                    assert!(headers.contains_key(name), "no {name} in {headers:?}");
                }
                assert_eq!(headers["ratelimit-limit"], "4");
            }
            other => panic!("expected an HTTP refusal, got {other:?}"),
        }
    }
    // Another key's bucket is untouched.
    connect(&app, &app.a.key, None).await;
}

#[tokio::test]
async fn a_connection_token_opens_one_socket() {
    let app = spawn_app().await;
    let minted = app
        .post("/events/token", &app.a.key, json!({}))
        .await
        .expect(201);
    let token = minted.body["token"].as_str().unwrap().to_owned();
    let first = try_connect(&app, Credential::Query(format!("token={token}")), None)
        .await
        .expect("the first use opens a socket");
    let again = try_connect(&app, Credential::Query(format!("token={token}")), None).await;
    assert_eq!(
        http_status(again.err().expect("a second use is refused")),
        401
    );
    // Closing the first socket does not make the token usable again.
    drop(first);
    let after = try_connect(&app, Credential::Query(format!("token={token}")), None).await;
    assert_eq!(http_status(after.err().expect("still spent")), 401);
    // A fresh token works.
    let minted = app
        .post("/events/token", &app.a.key, json!({}))
        .await
        .expect(201);
    try_connect(
        &app,
        Credential::Query(format!("token={}", minted.body["token"].as_str().unwrap())),
        None,
    )
    .await
    .expect("a new token opens a socket");
}

/// The error code of a refused upgrade, read from its JSON body.
fn refusal_code(error: tungstenite::Error) -> (u16, String) {
    match error {
        tungstenite::Error::Http(response) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .unwrap_or(Value::Null);
            (
                response.status().as_u16(),
                body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_key_and_a_tenant_hold_at_most_their_share_of_sockets() {
    let app = spawn_app_with(|c| {
        c.ws_max_sockets_per_key = 2;
        c.ws_max_sockets_per_tenant = 3;
    })
    .await;
    let first = connect(&app, &app.a.key, None).await;
    let _second = connect(&app, &app.a.key, None).await;
    let refused = try_connect(&app, Credential::Header(&app.a.key), None).await;
    assert_eq!(
        refusal_code(refused.err().expect("over the key's cap")),
        (429, "too_many_sockets".to_owned())
    );
    // Another key of the same tenant has its own share, up to the tenant's.
    let other = app
        .key_for_a(KeySpec {
            name: "second app".into(),
            permissions: vec!["*".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    let _third = connect(&app, &other, None).await;
    let refused = try_connect(&app, Credential::Header(&other), None).await;
    assert_eq!(
        refusal_code(refused.err().expect("over the tenant's cap")),
        (429, "too_many_sockets".to_owned())
    );
    // Another tenant is not affected.
    connect(&app, &app.b.key, None).await;
    // A closed socket gives its place back.
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(client) = try_connect(&app, Credential::Header(&app.a.key), None).await {
            reopened = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reopened.is_some(),
        "the closed socket's place was never freed"
    );
}

#[tokio::test]
async fn a_socket_carries_only_the_events_its_grants_let_it_read() {
    let app = spawn_app().await;
    // read:events and read:contacts, for an app no lead event is routed to.
    let contacts_only = app
        .key_for_a(KeySpec {
            name: "contacts feed".into(),
            permissions: vec!["read:events".into(), "read:contacts".into()],
            allowed_apps: vec!["contacts-feed".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    crate::helpers::send(
        app.client
            .get(app.url("/leads"))
            .header("x-tenant-key", &contacts_only)
            .header("x-source-app", "contacts-feed"),
    )
    .await
    .expect_error(403, "permission_denied");
    let mut feed = connect(&app, &contacts_only, Some("contacts-feed")).await;
    // A lead with an email makes a lead and a contact: only the contact's event arrives.
    app.create_lead(&app.a.key, "Ada", Some("ada@example.com"))
        .await;
    let mut types = Vec::new();
    while let Some(frame) = feed.try_next(Duration::from_millis(500)).await {
        if frame["type"] == "event" {
            types.push(frame["event"]["type"].as_str().unwrap().to_owned());
        }
    }
    assert!(types.contains(&"CONTACT_CREATED".to_owned()), "{types:?}");
    assert!(
        types.iter().all(|t| !t.starts_with("LEAD_")),
        "lead events reached a key without read:leads: {types:?}"
    );
    // Subscribing by name does not get around it.
    feed.send(json!({"type": "subscribe", "eventTypes": ["LEAD_CREATED"]}))
        .await;
    feed.next_of_type("subscribed").await;
    app.create_lead(&app.a.key, "Bo", None).await;
    while let Some(frame) = feed.try_next(Duration::from_millis(500)).await {
        assert_ne!(frame["type"], "event", "{frame}");
    }
}

#[tokio::test]
async fn a_tenants_fanout_is_paced_by_its_delivery_budget_and_loses_nothing() {
    // 20 deliveries a second: two sockets take one event each 100 ms.
    let app = spawn_app_with(|c| c.ws_deliveries_per_sec_per_tenant = 20).await;
    let mut first = connect(&app, &app.a.key, None).await;
    let mut second = connect(&app, &app.a.key, None).await;
    let mut other_tenant = connect(&app, &app.b.key, None).await;
    // Past the live-delivery grace after the welcome.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = first.welcome["seq"].as_i64().unwrap();

    let began = tokio::time::Instant::now();
    // Each lead makes two events (its contact's and its own): 20 events, 40 deliveries.
    for i in 0..10 {
        app.create_lead(&app.a.key, &format!("Paced{i}"), None)
            .await;
    }
    app.create_lead(&app.b.key, "Unpaced", None).await;
    // Tenant B's budget is its own: its events do not wait behind A's.
    let b_events = other_tenant.events(2).await;
    assert_eq!(types(&b_events), ["CONTACT_CREATED", "LEAD_CREATED"]);
    let b_arrived = began.elapsed();

    for socket in [&mut first, &mut second] {
        let events = socket.events(20).await;
        let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (start + 1..=start + 20).collect::<Vec<_>>());
    }
    let a_done = began.elapsed();
    // 40 deliveries at 20 a second, less the first burst's 2: at least 1.9 s.
    assert!(
        a_done >= Duration::from_millis(1_800),
        "A's 40 deliveries took only {a_done:?}: not paced"
    );
    assert!(
        b_arrived < a_done,
        "B's event ({b_arrived:?}) waited for A's fan-out ({a_done:?})"
    );
}
