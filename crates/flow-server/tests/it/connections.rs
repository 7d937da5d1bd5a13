//! The listener's bounds: idle, slow and surplus connections are closed or refused, so
//! that one client cannot hold every file descriptor (issue 14, availability 1).

use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_tungstenite::{connect_async, tungstenite::client::IntoClientRequest};

use crate::helpers::{spawn_app_with, TestApp};

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: flow\r\n\r\n";

/// Reads until the server closes the connection; `None` if it is still open after `wait`.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let reading = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(wait, reading).await.ok()?;
    Some(received)
}

/// Sends one request with `connection: close` on a fresh connection and returns the
/// status and the JSON body.
async fn one_request(app: &TestApp) -> (u16, Value) {
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: flow\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let raw = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|c| c.http_header_timeout_ms = 300).await;
    let mut silent = TcpStream::connect(app.address).await.unwrap();
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(10))
            .await
            .is_some(),
        "a silent connection was kept open"
    );
}

#[tokio::test]
async fn a_request_head_sent_a_line_at_a_time_is_cut_off() {
    let app = spawn_app_with(|c| c.http_header_timeout_ms = 300).await;
    let mut slow = TcpStream::connect(app.address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    // A header line every 100 ms for up to 5 s: each arrives well within the timeout,
    // but the head as a whole never does.
    let mut cut_off = false;
    for _ in 0..50 {
        if slow.write_all(b"x-slow: 1\r\n").await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cut_off = cut_off
        || read_until_closed(&mut slow, Duration::from_millis(500))
            .await
            .is_some();
    assert!(cut_off, "a slowly sent head kept its connection for 5 s");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(|c| c.http_header_timeout_ms = 300).await;
    let mut idle = TcpStream::connect(app.address).await.unwrap();
    idle.write_all(HEALTH).await.unwrap();
    let mut buffer = [0u8; 1024];
    let n = idle.read(&mut buffer).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buffer[..n])
    );
    assert!(
        read_until_closed(&mut idle, Duration::from_secs(10))
            .await
            .is_some(),
        "an idle keep-alive connection was kept open"
    );
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections_websockets_included() {
    let app = spawn_app_with(|c| c.max_connections_per_address = 3).await;
    let mut socket = format!("ws://{}/events", app.address)
        .into_client_request()
        .unwrap();
    socket
        .headers_mut()
        .insert("x-tenant-key", app.a.key.parse().unwrap());
    let (websocket, _) = connect_async(socket)
        .await
        .expect("a socket within the cap");
    let idle: Vec<TcpStream> =
        futures::future::join_all((0..2).map(|_| TcpStream::connect(app.address)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();

    let (status, body) = one_request(&app).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
    assert!(body["error"]["request_id"].is_string(), "{body}");

    // A place frees when a connection closes; the upgraded socket still holds its own.
    drop(idle);
    let mut answered = 0;
    for _ in 0..100 {
        match one_request(&app).await.0 {
            200 => {
                answered += 1;
                break;
            }
            429 => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(answered, 1, "the freed places were never given back");
    let _held: Vec<TcpStream> =
        futures::future::join_all((0..2).map(|_| TcpStream::connect(app.address)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    // Give the server a moment to count the two new connections before the third.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(one_request(&app).await.0, 429);
    drop(websocket);
}

#[tokio::test]
async fn the_process_refuses_connections_over_its_cap_with_503() {
    let app = spawn_app_with(|c| {
        c.max_connections = 2;
        c.max_connections_per_address = 0;
    })
    .await;
    let _held: Vec<TcpStream> =
        futures::future::join_all((0..2).map(|_| TcpStream::connect(app.address)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = one_request(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "server_busy", "{body}");
}
