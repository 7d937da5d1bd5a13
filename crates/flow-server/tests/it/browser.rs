//! The dashboard in headless Chromium (Debian's chromium + chromedriver) against the real
//! server: sign-in, leads live over the gateway, a network drop, voice, tenant switch,
//! sign-out. Screenshots of each page land in target/test-artifacts/dashboard/.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use flow_store::Role;
use serde_json::{json, Value};
use tokio::{net::TcpListener, process::Child, task::AbortHandle};

use crate::helpers::{required_tool, spawn_app, TestApp};

/// chromedriver on a free port, with one headless Chromium session.
struct Browser {
    client: Client,
    driver_url: String,
    session: String,
    _driver: Child,
}

impl Browser {
    async fn start(chromedriver: PathBuf, chromium: PathBuf) -> Self {
        let port = free_port().await;
        let driver = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let driver_url = format!("http://127.0.0.1:{port}");
        let status = format!("{driver_url}/status");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(&status).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1280,900"],
            }
        });
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&driver_url)
            .await
            .expect("a Chromium session opens");
        let session = client.session_id().await.unwrap().expect("session id");
        Self {
            client,
            driver_url,
            session,
            _driver: driver,
        }
    }

    /// Waits until the JavaScript expression is truthy (10 s), showing it when it never is.
    async fn until(&self, expression: &str) {
        let script = format!("return !!({expression});");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.client.execute(&script, vec![]).await.unwrap() == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                self.screenshot("failure").await;
                panic!("timed out waiting for: {expression}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn value(&self, expression: &str) -> Value {
        self.client
            .execute(&format!("return {expression};"), vec![])
            .await
            .unwrap()
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn select(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .select_by_value(value)
            .await
            .unwrap();
    }

    async fn screenshot(&self, name: &str) {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts/dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Chrome's network emulation (chromedriver's own endpoint).
    async fn throttle(&self, latency_ms: u64, bytes_per_sec: u64) {
        let url = format!(
            "{}/session/{}/chromium/network_conditions",
            self.driver_url, self.session
        );
        let conditions = json!({ "network_conditions": {
            "offline": false, "latency": latency_ms,
            "download_throughput": bytes_per_sec, "upload_throughput": bytes_per_sec,
        }});
        let reply = reqwest::Client::new()
            .post(url)
            .json(&conditions)
            .send()
            .await
            .unwrap();
        assert!(
            reply.status().is_success(),
            "{}",
            reply.text().await.unwrap()
        );
    }
}

async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP relay in front of the server that can drop every connection and refuse new
/// ones: a real network outage for the page, while the test still reaches the server.
struct Link {
    address: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Link {
    async fn to(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue;
                }
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                accept_connections
                    .lock()
                    .unwrap()
                    .push(relay.abort_handle());
            }
        });
        Self {
            address,
            up,
            connections,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn lead_row(first_name: &str) -> String {
    format!(
        "[...document.querySelectorAll('#leads-table tr[data-lead-id]')].some(r => r.textContent.includes('{first_name}'))"
    )
}

async fn sign_in(browser: &Browser, base: &str, email: &str, password: &str) {
    browser.client.goto(&format!("{base}/")).await.unwrap();
    browser.until(LOGIN_SHOWN).await;
    browser.fill("#login-email", email).await;
    browser.fill("#login-password", password).await;
    // Enter in the password field submits: the form works from the keyboard.
    browser
        .client
        .find(Locator::Css("#login-password"))
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    browser.until(APP_SHOWN).await;
    browser
        .until("document.querySelector('#leads-table')")
        .await;
    browser
        .until("document.querySelector('#conn-status')?.dataset.state === 'live'")
        .await;
}

/// The sign-in screen and the app are both in the page; `hidden` tells which one shows.
const LOGIN_SHOWN: &str = "document.querySelector('#login-view')?.hidden === false";
const APP_SHOWN: &str = "document.querySelector('#app-shell')?.hidden === false";

#[tokio::test]
async fn the_dashboard_works_end_to_end_in_a_real_browser() {
    let (Some(chromedriver), Some(chromium)) =
        (required_tool("chromedriver"), required_tool("chromium"))
    else {
        return;
    };
    let app = spawn_app().await;
    let password = app
        .user_in(&app.a.tenant, "ada@example.com", Role::Admin)
        .await;
    app.user_in(&app.b.tenant, "ada@example.com", Role::Viewer)
        .await;
    app.create_lead(&app.b.key, "OnlyInB", None).await;
    let link = Link::to(app.address).await;
    let base = format!("http://{}", link.address);
    let browser = Browser::start(chromedriver, chromium).await;

    // A wrong password shows an error and no dashboard.
    browser.client.goto(&format!("{base}/")).await.unwrap();
    browser.until(LOGIN_SHOWN).await;
    browser.screenshot("01-sign-in").await;
    browser.fill("#login-email", "ada@example.com").await;
    browser.fill("#login-password", "not the password").await;
    browser.click("#login-submit").await;
    browser
        .until("document.querySelector('#login-error')?.textContent.length > 0")
        .await;

    sign_in(&browser, &base, "ada@example.com", &password).await;
    assert_eq!(
        browser
            .value("document.querySelector('#current-user').textContent.trim()")
            .await,
        "ada@example.com"
    );
    browser
        .until("document.querySelector('#leads-table')?.textContent.length > 0")
        .await;
    browser.screenshot("02-leads-empty").await;

    // A lead created in the form appears and is stored.
    browser.fill("#new-lead-first-name", "Browsed").await;
    browser.fill("#new-lead-last-name", "Lead").await;
    browser.fill("#new-lead-email", "browsed@example.com").await;
    browser.fill("#new-lead-company", "Chromium ApS").await;
    browser.click("#new-lead-submit").await;
    browser.until(&lead_row("Browsed")).await;
    let stored = app
        .get("/leads?q=Browsed", &app.a.key)
        .await
        .expect(200)
        .body;
    assert_eq!(stored["data"][0]["company"], "Chromium ApS", "{stored}");

    // A lead created by another app shows up live, without a reload.
    let marker: Value = browser.value("window.performance.navigation.type").await;
    app.create_lead(&app.a.key, "FromAnotherApp", None).await;
    browser.until(&lead_row("FromAnotherApp")).await;
    assert_eq!(
        browser.value("window.performance.navigation.type").await,
        marker
    );
    browser.screenshot("03-leads-live").await;

    // A status change in the table is stored.
    let lead = app.create_lead(&app.a.key, "ToContact", None).await;
    let id = lead["id"].as_str().unwrap();
    browser.until(&lead_row("ToContact")).await;
    browser
        .select(&format!("select[data-status-for='{id}']"), "CONTACTED")
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = app
            .get(&format!("/leads/{id}"), &app.a.key)
            .await
            .expect(200)
            .body;
        if stored["status"] == "CONTACTED" {
            break;
        }
        assert!(Instant::now() < deadline, "status never changed: {stored}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The lead's page shows its timeline.
    browser
        .client
        .goto(&format!("{base}/#/leads/{id}"))
        .await
        .unwrap();
    browser
        .until("document.querySelector('#lead-detail')?.textContent.includes('ToContact')")
        .await;
    browser
        .until("document.querySelector('#lead-timeline')")
        .await;
    browser.screenshot("04-lead-detail").await;

    // The network drops: the page says so; leads created meanwhile arrive after it
    // comes back, with nothing missed.
    browser
        .client
        .goto(&format!("{base}/#/leads"))
        .await
        .unwrap();
    browser
        .until("document.querySelector('#conn-status')?.dataset.state === 'live'")
        .await;
    link.down();
    browser
        .until("document.querySelector('#conn-status')?.dataset.state !== 'live'")
        .await;
    for name in ["WhileAwayOne", "WhileAwayTwo"] {
        app.create_lead(&app.a.key, name, None).await;
    }
    browser
        .until("document.querySelector('#conn-status')?.dataset.state === 'offline'")
        .await;
    browser.screenshot("05-offline").await;
    link.restore();
    browser
        .until("document.querySelector('#conn-status')?.dataset.state === 'live'")
        .await;
    browser.until(&lead_row("WhileAwayOne")).await;
    browser.until(&lead_row("WhileAwayTwo")).await;

    // A voice command typed in the box runs and shows the parsed command and the answer.
    browser
        .client
        .goto(&format!("{base}/#/voice"))
        .await
        .unwrap();
    browser
        .until("document.querySelector('#voice-input')")
        .await;
    browser.fill("#voice-input", "show new leads").await;
    browser.click("#voice-submit").await;
    browser
        .until("document.querySelector('#voice-result')?.textContent.includes('get_leads')")
        .await;
    browser.screenshot("06-voice").await;
    // A lead created by voice appears in the leads table live.
    browser
        .fill("#voice-input", "create a lead for Vera Voice")
        .await;
    browser.click("#voice-submit").await;
    browser
        .until("document.querySelector('#voice-result')?.textContent.includes('create_lead')")
        .await;
    browser
        .client
        .goto(&format!("{base}/#/leads"))
        .await
        .unwrap();
    browser.until(&lead_row("Vera")).await;

    // The other pages render.
    for (page, marker) in [
        ("contacts", "#contacts-table"),
        ("deals", "#deals-table"),
        ("activity", "#activity-feed"),
        ("admin/users", "#users-table"),
        ("admin/keys", "#keys-table"),
        ("admin/queues", "#queues-table"),
    ] {
        browser
            .client
            .goto(&format!("{base}/#/{page}"))
            .await
            .unwrap();
        browser
            .until(&format!("document.querySelector('{marker}')"))
            .await;
        browser
            .screenshot(&format!("07-{}", page.replace('/', "-")))
            .await;
    }

    // Switching tenant shows B's leads only, read-only for a viewer.
    browser
        .client
        .goto(&format!("{base}/#/leads"))
        .await
        .unwrap();
    browser
        .until("document.querySelector('#tenant-switcher')")
        .await;
    browser
        .select("#tenant-switcher", &app.b.tenant.id.to_string())
        .await;
    browser.until(&lead_row("OnlyInB")).await;
    assert_eq!(browser.value(&lead_row("Browsed")).await, json!(false));
    // Ada is a viewer in B: nothing there can be changed.
    browser
        .until("document.querySelector('#new-lead-submit')?.disabled === true")
        .await;
    browser
        .until("[...document.querySelectorAll('select[data-status-for]')].every(s => s.disabled)")
        .await;
    browser.screenshot("08-tenant-b").await;

    // A phone-sized screen: no sideways scrolling of the page.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.until(&lead_row("OnlyInB")).await;
    let overflow = browser
        .value("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 1,
        "the page scrolls sideways by {overflow} px"
    );
    browser.screenshot("09-phone").await;
    browser.client.set_window_size(1280, 900).await.unwrap();

    // The refresh token lives in an httpOnly cookie: no page script can read it, and no
    // storage holds it.
    assert_eq!(
        browser
            .value("document.cookie.includes('flow_refresh') || JSON.stringify({ ...localStorage, ...sessionStorage }).includes('flow_rt_')")
            .await,
        json!(false)
    );
    let cookie = browser
        .client
        .get_named_cookie("flow_refresh")
        .await
        .expect("the refresh cookie is set");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()),
        Some("Strict".into())
    );
    let refresh = cookie.value().to_owned();
    // Signing out returns to the sign-in form and the refresh token no longer works.
    browser.click("#sign-out").await;
    browser.until(LOGIN_SHOWN).await;
    assert_eq!(browser.value(APP_SHOWN).await, json!(false));
    let after = app
        .call(
            reqwest::Method::POST,
            "/auth/refresh",
            None,
            Some(json!({ "refreshToken": refresh })),
        )
        .await;
    assert_eq!(after.status, 401, "{}", after.body);
    browser.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn the_first_load_is_fast_on_a_slow_connection() {
    let (Some(chromedriver), Some(chromium)) =
        (required_tool("chromedriver"), required_tool("chromium"))
    else {
        return;
    };
    let app: TestApp = spawn_app().await;
    let browser = Browser::start(chromedriver, chromium).await;
    // Chrome DevTools' "Slow 3G": 400 ms round trips, 400 kbit/s.
    browser.throttle(400, 50_000).await;
    browser
        .client
        .goto(&format!("http://{}/", app.address))
        .await
        .unwrap();
    // Usable: the script ran and showed the sign-in; loaded: the load event has ended.
    browser.until(LOGIN_SHOWN).await;
    browser
        .until("performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
        .await;
    let load_ms = browser
        .value("performance.getEntriesByType('navigation')[0].loadEventEnd")
        .await
        .as_f64()
        .unwrap();
    let bytes = browser
        .value("performance.getEntriesByType('resource').reduce((n, r) => n + r.transferSize, performance.getEntriesByType('navigation')[0].transferSize)")
        .await
        .as_f64()
        .unwrap();
    assert!(load_ms < 2000.0, "first load took {load_ms} ms");
    assert!(bytes < 300.0 * 1024.0, "first load moved {bytes} bytes");
    eprintln!("first load on Slow 3G: {load_ms:.0} ms, {bytes:.0} bytes");
    browser.client.clone().close().await.unwrap();
}
