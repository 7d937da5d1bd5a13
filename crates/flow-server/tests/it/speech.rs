//! Spoken commands: eSpeak NG speaks, Flow transcribes locally (PocketSphinx with its
//! command grammar), executes and answers with speech; cloud providers are replaced by
//! local servers speaking the OpenAI and ElevenLabs wire formats.

use std::sync::{Arc, Mutex};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::HeaderMap,
    routing::post,
    Router,
};
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{close_frame, required_tool, send, spawn_app, spawn_app_with, Reply, TestApp};

/// `text` spoken by eSpeak NG as 16-bit mono WAV; `None` when eSpeak is missing outside CI.
fn spoken(text: &str, voice: &str) -> Option<Vec<u8>> {
    required_tool("espeak-ng")?;
    let file = tempfile::NamedTempFile::new().unwrap();
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(file.path())
        .arg(text)
        .status()
        .unwrap();
    assert!(status.success());
    Some(std::fs::read(file.path()).unwrap())
}

/// A WAV of `secs` seconds of silence at 16 kHz, with `channels` channels.
fn silence(secs: u32, channels: u16) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
    for _ in 0..secs * 16_000 * u32::from(channels) {
        writer.write_sample(0i16).unwrap();
    }
    writer.finalize().unwrap();
    out.into_inner()
}

async fn post_audio(app: &TestApp, query: &str, content_type: &str, body: Vec<u8>) -> Reply {
    send(
        app.client
            .post(app.url(&format!("/voice/execute{query}")))
            .header("x-tenant-key", &app.a.key)
            .header("content-type", content_type)
            .body(body),
    )
    .await
}

fn decoded_speech(answer: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(
            answer["speech"]["data"]
                .as_str()
                .expect("speech in the answer"),
        )
        .unwrap()
}

#[tokio::test]
async fn an_english_spoken_command_is_transcribed_locally_executed_and_answered_aloud() {
    if required_tool("pocketsphinx_continuous").is_none() {
        return;
    }
    let app = spawn_app().await;
    let key = &app.a.key;
    app.create_lead(key, "John", None).await;
    let Some(audio) = spoken("show new leads", "en-us") else {
        return;
    };
    let answer = post_audio(&app, "", "audio/wav", audio)
        .await
        .expect(200)
        .body;
    assert_eq!(answer["transcript"], "show new leads", "{answer}");
    assert_eq!(answer["command"], "get_leads");
    assert_eq!(answer["reply"], "You have one new lead: John Test.");
    assert_eq!(answer["speech"]["contentType"], "audio/wav");
    let wav = decoded_speech(&answer);
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
    assert!(
        reader.duration() > reader.spec().sample_rate / 2,
        "a real spoken reply"
    );

    // The tenant's own names are in the grammar: a status change by name.
    app.post(
        "/leads",
        key,
        json!({"firstName": "Peter", "lastName": "Smith", "source": "web"}),
    )
    .await
    .expect(201);
    let audio = spoken("mark peter smith as contacted", "en-us").unwrap();
    let answer = post_audio(&app, "?language=en", "audio/wav", audio)
        .await
        .expect(200)
        .body;
    assert_eq!(
        answer["transcript"], "mark peter smith as contacted",
        "{answer}"
    );
    assert_eq!(answer["data"]["status"], "CONTACTED");

    let log = app.list_all("/events/log", key).await;
    let types: Vec<&str> = log
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    for expected in [
        "VOICE_PROCESSING_STARTED",
        "VOICE_PROCESSING_COMPLETED",
        "VOICE_COMMAND_EXECUTED",
    ] {
        assert_eq!(
            types.iter().filter(|t| **t == expected).count(),
            2,
            "{expected}: {types:?}"
        );
    }
}

#[tokio::test]
async fn danish_audio_without_a_provider_says_so_and_text_still_works() {
    let app = spawn_app().await;
    let Some(audio) = spoken("vis nye leads", "da") else {
        return;
    };
    let refused = post_audio(&app, "?language=da", "audio/wav", audio)
        .await
        .expect_error(422, "speech_unsupported");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Danish") && message.contains("text"),
        "{message}"
    );
    // The graceful way round: the same command as text.
    let answer = app
        .post(
            "/voice/execute",
            &app.a.key,
            json!({"text": "vis nye leads", "speak": true}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(answer["command"], "get_leads");
    assert!(answer["reply"].as_str().unwrap().starts_with("Du har"));
    if required_tool("espeak-ng").is_some() {
        assert_eq!(&decoded_speech(&answer)[..4], b"RIFF");
    }
}

#[tokio::test]
async fn bad_audio_gets_a_clear_4xx_and_runs_nothing() {
    let app = spawn_app_with(|c| c.voice_max_audio_secs = 5).await;
    post_audio(&app, "", "audio/wav", Vec::new())
        .await
        .expect_error(422, "validation_failed");
    post_audio(
        &app,
        "",
        "audio/wav",
        b"RIFF but not really a wave file".to_vec(),
    )
    .await
    .expect_error(422, "validation_failed");
    post_audio(&app, "", "audio/wav", silence(1, 2))
        .await
        .expect_error(422, "validation_failed");
    post_audio(&app, "", "audio/wav", silence(6, 1))
        .await
        .expect_error(413, "audio_too_long");
    post_audio(&app, "", "audio/mpeg", vec![0xff, 0xfb, 0x90, 0x00])
        .await
        .expect_error(415, "unsupported_media_type");
    post_audio(&app, "", "audio/webm", b"not webm".to_vec())
        .await
        .expect_error(422, "validation_failed");
    post_audio(&app, "?language=fr", "audio/wav", silence(1, 1))
        .await
        .expect_error(422, "validation_failed");
    post_audio(
        &app,
        "",
        "audio/webm",
        vec![0x1a, 0x45, 0xdf, 0xa3, 1, 2, 3],
    )
    .await
    .expect_error(422, "speech_unsupported");
    if required_tool("pocketsphinx_continuous").is_some() {
        post_audio(&app, "", "audio/wav", silence(1, 1))
            .await
            .expect_error(422, "speech_not_recognised");
    }
    assert!(app.list_all("/leads", &app.a.key).await.is_empty());
    assert!(app.list_all("/conversations", &app.a.key).await.is_empty());
}

/// What the fake speech APIs saw.
#[derive(Default)]
struct Seen {
    transcriptions: Vec<(Option<String>, String)>,
    speech: Vec<Value>,
    elevenlabs: Vec<(String, Option<String>, Value)>,
}

/// Local stand-ins for the OpenAI audio API and ElevenLabs, in their wire formats.
async fn fake_speech_apis() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    async fn transcriptions(
        State(seen): State<Arc<Mutex<Seen>>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::Json<Value> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let form = String::from_utf8_lossy(&body).into_owned();
        seen.lock()
            .unwrap()
            .transcriptions
            .push((auth, form.clone()));
        // The real API answers in the language asked for.
        let text = if form.contains("name=\"language\"\r\n\r\nda") {
            "Vis nye leads"
        } else {
            "Show new leads"
        };
        axum::Json(json!({ "text": text }))
    }
    async fn speech(
        State(seen): State<Arc<Mutex<Seen>>>,
        axum::Json(body): axum::Json<Value>,
    ) -> ([(&'static str, &'static str); 1], Vec<u8>) {
        seen.lock().unwrap().speech.push(body);
        (
            [("content-type", "audio/wav")],
            b"RIFF....WAVEfake".to_vec(),
        )
    }
    async fn elevenlabs(
        State(seen): State<Arc<Mutex<Seen>>>,
        Path(voice): Path<String>,
        headers: HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> ([(&'static str, &'static str); 1], Vec<u8>) {
        let key = headers
            .get("xi-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        seen.lock().unwrap().elevenlabs.push((voice, key, body));
        (
            [("content-type", "audio/mpeg")],
            vec![0xff, 0xfb, 0x90, 0x00, 1, 2, 3],
        )
    }
    let app = Router::new()
        .route("/v1/audio/transcriptions", post(transcriptions))
        .route("/v1/audio/speech", post(speech))
        .route("/v1/text-to-speech/{voice}", post(elevenlabs))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), seen)
}

#[tokio::test]
async fn danish_audio_goes_to_the_configured_provider_and_speech_comes_back_from_it() {
    let (base, seen) = fake_speech_apis().await;
    let api = format!("{base}/v1");
    let app = spawn_app_with(|c| {
        c.speech_api_url = Some(api.clone());
        c.speech_api_key = Some("sk-speech".into());
        c.text_to_speech = "openai".into();
    })
    .await;
    let answer = post_audio(&app, "?language=da", "audio/wav", silence(1, 1))
        .await
        .expect(200)
        .body;
    assert_eq!(answer["transcript"], "Vis nye leads", "{answer}");
    assert_eq!(answer["command"], "get_leads");
    assert_eq!(answer["language"], "da");
    assert_eq!(decoded_speech(&answer), b"RIFF....WAVEfake");
    // WebM, which the local recogniser cannot read, goes to the provider too.
    let webm = post_audio(
        &app,
        "",
        "audio/webm",
        vec![0x1a, 0x45, 0xdf, 0xa3, 1, 2, 3],
    )
    .await
    .expect(200)
    .body;
    assert_eq!(webm["transcript"], "Show new leads");
    let seen = seen.lock().unwrap();
    let (auth, form) = &seen.transcriptions[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-speech"));
    assert!(form.contains("name=\"model\"\r\n\r\nwhisper-1"), "{form}");
    assert!(form.contains("filename=\"command.wav\""), "{form}");
    assert!(seen.transcriptions[1]
        .1
        .contains("filename=\"command.webm\""));
    assert_eq!(seen.speech[0]["input"], answer["reply"]);
    assert_eq!(seen.speech[0]["response_format"], "wav");
}

#[tokio::test]
async fn elevenlabs_speaks_the_reply_when_configured() {
    let (base, seen) = fake_speech_apis().await;
    let app = spawn_app_with(|c| {
        c.text_to_speech = "elevenlabs".into();
        c.elevenlabs_url = base.clone();
        c.elevenlabs_api_key = Some("xi-key".into());
        c.elevenlabs_voice_id = "voice-7".into();
    })
    .await;
    let answer = app
        .post(
            "/voice/execute",
            &app.a.key,
            json!({"text": "hjælp", "speak": true}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(answer["speech"]["contentType"], "audio/mpeg");
    let seen = seen.lock().unwrap();
    let (voice, key, body) = &seen.elevenlabs[0];
    assert_eq!(voice, "voice-7");
    assert_eq!(key.as_deref(), Some("xi-key"));
    assert_eq!(body["language_code"], "da");
    assert_eq!(body["text"], answer["reply"]);
}

#[tokio::test]
async fn a_voice_session_streams_audio_in_and_speech_out_over_one_socket() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    if required_tool("pocketsphinx_continuous").is_none() {
        return;
    }
    let Some(audio) = spoken("show new leads", "en-us") else {
        return;
    };
    let app = spawn_app().await;
    let mut request = format!("ws://{}/voice/kitchen-1", app.address)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-tenant-key", app.a.key.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    async fn next(
        socket: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
                  + Unpin),
    ) -> Message {
        tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .unwrap()
            .unwrap()
    }
    async fn next_json(
        socket: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
                  + Unpin),
    ) -> Value {
        match next(socket).await {
            Message::Text(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected JSON, got {other:?}"),
        }
    }
    assert_eq!(next_json(&mut socket).await["type"], "ready");
    let send = |v: Value| Message::Text(v.to_string().into());

    // Audio in chunks, as a microphone stream would arrive.
    socket
        .send(send(
            json!({"type": "start", "format": "audio/wav", "language": "en"}),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "listening");
    for chunk in audio.chunks(4096) {
        socket
            .send(Message::Binary(chunk.to_vec().into()))
            .await
            .unwrap();
    }
    socket.send(send(json!({"type": "end"}))).await.unwrap();
    let result = next_json(&mut socket).await;
    assert_eq!(result["type"], "result", "{result}");
    assert_eq!(result["transcript"], "show new leads");
    assert_eq!(result["command"], "get_leads");
    let conversation = result["conversationId"].as_str().unwrap().to_owned();
    assert_eq!(next_json(&mut socket).await["type"], "speech");
    match next(&mut socket).await {
        Message::Binary(bytes) => assert_eq!(&bytes[..4], b"RIFF"),
        other => panic!("expected speech audio, got {other:?}"),
    }

    // Typed text in the same session continues the same conversation.
    socket
        .send(send(
            json!({"type": "text", "text": "vis kontaktede leads"}),
        ))
        .await
        .unwrap();
    let typed = next_json(&mut socket).await;
    assert_eq!(typed["conversationId"], conversation.as_str());
    assert_eq!(typed["language"], "da");
    assert_eq!(next_json(&mut socket).await["type"], "speech");
    assert!(matches!(next(&mut socket).await, Message::Binary(_)));

    // Mistakes are answered on the socket, which stays open.
    socket.send(send(json!({"type": "end"}))).await.unwrap();
    assert_eq!(next_json(&mut socket).await["code"], "no_utterance");
    socket
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["code"], "no_utterance");
    socket
        .send(send(json!({"type": "start", "format": "audio/wav"})))
        .await
        .unwrap();
    next_json(&mut socket).await;
    socket
        .send(Message::Binary(b"garbage".to_vec().into()))
        .await
        .unwrap();
    socket.send(send(json!({"type": "end"}))).await.unwrap();
    assert_eq!(next_json(&mut socket).await["code"], "validation_failed");
    socket
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["code"], "invalid_frame");

    let stored = app
        .get(&format!("/conversations/{conversation}"), &app.a.key)
        .await
        .expect(200)
        .body;
    assert_eq!(stored["transcript"].as_array().unwrap().len(), 4);

    // Without execute:voice, or with a bad session id, no socket opens.
    let reader = app
        .key_for_a(flow_app::services::keys::KeySpec {
            name: "reader".into(),
            permissions: vec!["read:leads".into(), "read:events".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    for (path, key) in [
        ("/voice/s1", reader.as_str()),
        ("/voice/bad%20id", app.a.key.as_str()),
    ] {
        let mut request = format!("ws://{}{path}", app.address)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("x-tenant-key", key.parse().unwrap());
        let refused = tokio_tungstenite::connect_async(request).await.unwrap_err();
        let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
            panic!("expected an HTTP refusal, got {refused:?}");
        };
        assert!(
            matches!(response.status().as_u16(), 403 | 422),
            "{path}: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn audio_can_run_as_a_job_on_the_voice_processing_queue() {
    if required_tool("pocketsphinx_continuous").is_none() {
        return;
    }
    let Some(audio) = spoken("show new leads", "en-us") else {
        return;
    };
    let app = spawn_app().await;
    let accepted = post_audio(&app, "?async=true", "audio/wav", audio)
        .await
        .expect(202)
        .body;
    let status_url = accepted["statusUrl"].as_str().unwrap().to_owned();
    let mut job = Value::Null;
    for _ in 0..100 {
        job = app.get(&status_url, &app.a.key).await.expect(200).body;
        if job["state"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(job["queue"], "voice-processing", "{job}");
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["result"]["transcript"], "show new leads");
    assert_eq!(job["result"]["command"], "get_leads");
    assert_eq!(job["result"]["speech"]["contentType"], "audio/wav");
    // Checked before it is queued: bad audio never becomes a job.
    post_audio(&app, "?async=true", "audio/wav", b"nope".to_vec())
        .await
        .expect_error(422, "validation_failed");
    // The query is for audio only.
    app.post(
        "/voice/execute?async=true",
        &app.a.key,
        json!({"text": "show new leads"}),
    )
    .await
    .expect_error(422, "validation_failed");
}

#[tokio::test]
async fn a_voice_session_closes_when_its_token_expires_or_its_key_is_revoked() {
    use tokio_tungstenite::tungstenite::{
        client::IntoClientRequest, protocol::frame::coding::CloseCode,
    };
    let app = spawn_app_with(|config| {
        config.access_token_ttl_secs = 2;
        config.ws_heartbeat_secs = 1;
    })
    .await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", flow_store::Role::User)
        .await;
    let session = app.sign_in("ada@example.com", &password).await;
    let token = session["accessToken"].as_str().unwrap();
    let request = format!("ws://{}/voice/desk?token={token}", app.address)
        .into_client_request()
        .unwrap();
    let (mut by_token, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    let key = app
        .key_for_a(flow_app::services::keys::KeySpec {
            name: "speaker".into(),
            permissions: vec!["execute:voice".into(), "read:leads".into()],
            allowed_apps: vec!["*".into()],
            rate_limit_per_minute: 1000,
        })
        .await;
    let mut request = format!("ws://{}/voice/kitchen", app.address)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-tenant-key", key.parse().unwrap());
    let (mut by_key, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let key_id = app.key_id(&key).await;
    flow_app::services::keys::revoke(
        &*app.store,
        &flow_app::auth::Caller::system(app.a.tenant.id),
        key_id,
    )
    .await
    .unwrap();

    let closed = close_frame(&mut by_key).await;
    assert_eq!(closed.code, CloseCode::Policy);
    assert!(closed.reason.contains("revoked"), "{}", closed.reason);
    let closed = close_frame(&mut by_token).await;
    assert_eq!(closed.code, CloseCode::Policy);
    assert!(closed.reason.contains("expired"), "{}", closed.reason);
}

#[tokio::test]
async fn a_key_holds_at_most_its_share_of_voice_sessions() {
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
    let app = spawn_app_with(|config| {
        config.voice_max_sessions_per_key = 2;
        config.voice_max_sessions_per_tenant = 10;
    })
    .await;
    let open = |name: &'static str| {
        let mut request = format!("ws://{}/voice/{name}", app.address)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("x-tenant-key", app.a.key.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let (first, _) = open("one").await.expect("within the cap");
    let (_second, _) = open("two").await.expect("within the cap");
    match open("three").await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("a third session was not refused: {:?}", other.map(|_| ())),
    }
    drop(first);
    let mut reopened = false;
    for _ in 0..100 {
        if open("three").await.is_ok() {
            reopened = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reopened, "the closed session's place was never freed");
}

/// A voice session opened with the tenant A key, past its `ready` frame.
async fn voice_session(
    app: &TestApp,
    name: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/voice/{name}", app.address)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-tenant-key", app.a.key.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let ready = socket.next().await.unwrap().unwrap();
    assert!(ready.to_text().unwrap().contains("ready"));
    socket
}

/// The next JSON frame of a voice session, within 10 s.
async fn voice_frame(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    use futures::StreamExt;
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("a frame within 10 s")
        .unwrap()
        .unwrap();
    serde_json::from_str(frame.to_text().unwrap()).unwrap()
}

#[tokio::test]
async fn voice_sessions_share_one_audio_budget_and_an_unended_utterance_is_dropped() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app_with(|config| {
        config.voice_max_buffered_mib = 1;
        config.voice_utterance_timeout_secs = 1;
    })
    .await;
    let start = || {
        Message::Text(
            json!({"type": "start", "format": "audio/wav"})
                .to_string()
                .into(),
        )
    };
    let chunk = || Message::Binary(vec![0u8; 600 * 1024].into());
    let mut first = voice_session(&app, "one").await;
    let mut second = voice_session(&app, "two").await;
    first.send(start()).await.unwrap();
    assert_eq!(voice_frame(&mut first).await["type"], "listening");
    first.send(chunk()).await.unwrap();
    // Frames are handled in order: an answer to a bad frame means the chunk is counted.
    first
        .send(Message::Text(
            json!({"type": "nonsense"}).to_string().into(),
        ))
        .await
        .unwrap();
    assert_eq!(voice_frame(&mut first).await["code"], "invalid_frame");
    second.send(start()).await.unwrap();
    assert_eq!(voice_frame(&mut second).await["type"], "listening");
    // 600 KiB held by the first session: 600 more would pass the 1 MiB budget.
    second.send(chunk()).await.unwrap();
    let refused = voice_frame(&mut second).await;
    assert_eq!(refused["code"], "server_busy", "{refused}");

    // The first never sends `end`: after a second its utterance is dropped, and its
    // audio with it.
    let dropped = voice_frame(&mut first).await;
    assert_eq!(dropped["code"], "utterance_timeout", "{dropped}");
    first
        .send(Message::Text(json!({"type": "end"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(voice_frame(&mut first).await["code"], "no_utterance");
    // The budget is free again.
    second.send(start()).await.unwrap();
    assert_eq!(voice_frame(&mut second).await["type"], "listening");
    second.send(chunk()).await.unwrap();
    second
        .send(Message::Text(json!({"type": "end"}).to_string().into()))
        .await
        .unwrap();
    let answered = voice_frame(&mut second).await;
    assert_ne!(answered["code"], "server_busy", "{answered}");
}

/// The budget counts the memory an utterance's buffer holds, not the bytes in it: the
/// buffer grows by doubling, and counting its length let 256 MiB of budget become
/// 514 MiB of memory.
#[tokio::test]
async fn the_audio_budget_counts_what_the_buffer_allocates() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app_with(|config| config.voice_max_buffered_mib = 1).await;
    let mut session = voice_session(&app, "growing").await;
    session
        .send(Message::Text(
            json!({"type": "start", "format": "audio/wav"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(voice_frame(&mut session).await["type"], "listening");
    // 300 KiB, then 600: the buffer holds 600. The third chunk makes 900 KiB of audio,
    // under the 1 MiB budget, but a buffer of 1,200 KiB: refused.
    for _ in 0..3 {
        session
            .send(Message::Binary(vec![0u8; 300 * 1024].into()))
            .await
            .unwrap();
    }
    let refused = voice_frame(&mut session).await;
    assert_eq!(refused["code"], "server_busy", "{refused}");
}
