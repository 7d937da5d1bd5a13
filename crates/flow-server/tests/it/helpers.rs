//! `spawn_app()` and a small typed client.

use std::{net::SocketAddr, sync::Arc};

use flow_app::services::{keys::KeySpec, tenants, users};
use flow_server::{config::Config, open_store, Server};
use flow_store::{Role, Store, Tenant};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// A running server with two tenants, each with an all-powerful key.
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub a: TestTenant,
    pub b: TestTenant,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// A tenant and a key for it.
pub struct TestTenant {
    pub tenant: Tenant,
    pub key: String,
}

/// A response: status, headers and JSON body (`Value::Null` when the body is not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts an error reply with this status and code.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        assert_eq!(
            self.code(),
            code,
            "unexpected error code; body: {}",
            self.body
        );
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error without message: {}",
            self.body
        );
        assert!(
            self.body["error"]["request_id"].is_string(),
            "error without request_id: {}",
            self.body
        );
        self
    }
}

/// Starts a server on a free port with a fresh database and two tenants.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with a chance to change the configuration first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.port = 0;
    config.data_dir = dir.path().to_owned();
    config.database_url = test_database_url().await;
    configure(&mut config);
    let store = open_store(&config).await.expect("store opens");
    let a = make_tenant(&*store, "Tenant A").await;
    let b = make_tenant(&*store, "Tenant B").await;
    let shutdown = CancellationToken::new();
    let server = Server::bind(store.clone(), config, shutdown.clone())
        .await
        .expect("binds");
    let address = server.local_addr();
    tokio::spawn(server.run());
    TestApp {
        address,
        client: reqwest::Client::new(),
        store,
        a,
        b,
        shutdown,
        _dir: dir,
    }
}

/// On the PostgreSQL run (`FLOW_TEST_BACKEND=postgres`): a fresh database, migrated by
/// its owner, and the URL Flow serves it with (a role subject to row-level security).
/// `None` on the default embedded run.
pub async fn test_database_url() -> Option<String> {
    if std::env::var("FLOW_TEST_BACKEND").as_deref() != Ok("postgres") {
        return None;
    }
    let server = flow_store_postgres::testing::server_url()
        .expect("FLOW_TEST_BACKEND=postgres needs FLOW_TEST_POSTGRES");
    let db = flow_store_postgres::testing::TestDatabase::create_on(&server).await;
    let owner = flow_store_postgres::PgStore::open(&db.owner_url, &Default::default())
        .await
        .expect("owner connects");
    owner.migrate().await.expect("owner migrates");
    owner.close().await;
    Some(db.app_url)
}

async fn make_tenant(store: &dyn Store, name: &str) -> TestTenant {
    let (tenant, key) = tenants::create_tenant(store, name, None, 1_000_000)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {}", e.message));
    TestTenant {
        tenant,
        key: key.secret,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Stops the server as SIGTERM would.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Creates another key for tenant A.
    pub async fn key_for_a(&self, spec: KeySpec) -> String {
        flow_app::services::keys::create(
            &*self.store,
            &flow_app::auth::Caller::system(self.a.tenant.id),
            &spec,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("creating key: {}", e.message))
        .secret
    }

    /// The id of the API key whose secret is `key`.
    pub async fn key_id(&self, key: &str) -> flow_store::ApiKeyId {
        self.store
            .find_api_key(&flow_app::auth::hash_key(key))
            .await
            .unwrap()
            .expect("a stored key")
            .key
            .id
    }

    /// The id of the account signed up as `email`.
    pub async fn user_id(&self, email: &str) -> flow_store::UserId {
        self.store
            .find_user_credentials(email)
            .await
            .unwrap()
            .expect("an account")
            .user
            .id
    }

    /// Sends a request with `key` (if any) and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.header("x-tenant-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(key), Some(body)).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Reply {
        self.call(Method::DELETE, path, Some(key), None).await
    }

    /// Makes `email` a member of `tenant` with `role` (creating the account the first
    /// time) and returns the password.
    pub async fn user_in(&self, tenant: &Tenant, email: &str, role: Role) -> String {
        let password = format!("pw-{email}-long-enough");
        match self.store.find_user_credentials(email).await.unwrap() {
            Some(existing) => {
                let mut tx = self.store.begin(tenant.id).await.unwrap();
                tx.upsert_member(existing.user.id, role).await.unwrap();
                tx.commit().await.unwrap();
            }
            None => {
                users::create_account(&*self.store, tenant.id, email, "Test User", &password, role)
                    .await
                    .unwrap_or_else(|e| panic!("creating user: {}", e.message));
            }
        }
        password
    }

    /// `POST /auth/login`.
    pub async fn login(&self, email: &str, password: &str) -> Reply {
        let body = json!({ "email": email, "password": password });
        self.call(Method::POST, "/auth/login", None, Some(body))
            .await
    }

    /// Signs in and returns the session (access and refresh tokens, profile).
    /// Invites `email` to `tenant` as Flow itself and returns the invitation's token, as
    /// `flow user invite` prints it for the operator (this replaces a pending invitation
    /// for the same email, and with it the token an admin's `POST /users` made).
    pub async fn invitation_token(&self, tenant: &Tenant, email: &str, role: Role) -> String {
        let invite = users::AddMember {
            email: email.into(),
            role,
        };
        users::invite(
            &*self.store,
            &flow_app::auth::Caller::system(tenant.id),
            invite,
        )
        .await
        .unwrap_or_else(|e| panic!("inviting {email}: {}", e.message))
        .1
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Value {
        self.login(email, password).await.expect(200).body
    }

    /// Sends a request with `Authorization: Bearer token`.
    pub async fn bearer(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    /// Creates a lead in the tenant of `key` and returns it.
    pub async fn create_lead(&self, key: &str, first_name: &str, email: Option<&str>) -> Value {
        let mut body = json!({ "firstName": first_name, "lastName": "Test", "source": "website" });
        if let Some(email) = email {
            body["email"] = json!(email);
        }
        self.post("/leads", key, body).await.expect(201).body
    }

    /// Every item of a paginated list, following cursors.
    pub async fn list_all(&self, path: &str, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let separator = if path.contains('?') { '&' } else { '?' };
        for _ in 0..1000 {
            let url = match &cursor {
                Some(c) => format!("{path}{separator}limit=100&cursor={c}"),
                None => format!("{path}{separator}limit=100"),
            };
            let reply = self.get(&url, key).await.expect(200);
            items.extend(
                reply.body["data"]
                    .as_array()
                    .expect("data array")
                    .iter()
                    .cloned(),
            );
            match reply.body["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
        panic!("pagination of {path} did not end");
    }
}

/// Sends a prepared request and reads the reply.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request reaches the server");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// The ids of a list of JSON objects.
pub fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The path of an external tool a test needs. Under CI (`CI=true`) a missing tool fails
/// the test; elsewhere the test is skipped with a note.
pub fn required_tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "{name} is required under CI=true; scripts/test installs it"
        );
        eprintln!("SKIPPED: {name} is not installed (scripts/test installs it)");
    }
    found
}

/// The close frame that ends `socket`, skipping the frames before it; panics if the socket
/// ends without one or stays open for 10 s.
pub async fn close_frame(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.expect("a close frame"),
                Some(Ok(_)) => continue,
                other => panic!("socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed within 10 s")
}
