//! Headless Chromium from Debian driven over WebDriver (chromedriver on a free port, one per
//! test), and screenshots kept under `target/screenshots/` for a person to look at.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use super::free_port;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser: its chromedriver child (killed on drop) and the WebDriver session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

impl Browser {
    /// Start chromedriver and a headless Chromium with a fresh profile, `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(std::path::Path::new(program).exists(), "{program} is missing: install the chromium and chromium-driver packages");
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new()).capabilities(caps.clone()).connect(&url).await {
                Ok(client) => break client,
                Err(e) if start.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver on {url}: {e}"),
            }
        };
        Browser { client, driver, _profile: profile }
    }

    /// Save a PNG of the window as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Wait until `check` (run in the page) returns true; panics with `what` after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, script: &str) {
        self.poll(what, timeout, None, script).await
    }

    /// Run `script` until it returns true, opening `reload` before each run when given; panics
    /// with `what` and the page after `timeout`.
    async fn poll(&self, what: &str, timeout: Duration, reload: Option<&str>, script: &str) {
        let start = Instant::now();
        loop {
            if let Some(url) = reload {
                self.client.goto(url).await.expect("open the page");
            }
            // A script run while the page is being replaced can fail; that is "not yet".
            let value = self.client.execute(script, vec![]).await;
            if matches!(&value, Ok(serde_json::Value::Bool(true))) {
                return;
            }
            if start.elapsed() > timeout {
                let html = self.client.source().await.unwrap_or_default();
                panic!("timed out after {timeout:?} waiting until {what} (last answer: {value:?})\n--- page ---\n{html}");
            }
            tokio::time::sleep(Duration::from_millis(if reload.is_some() { 500 } else { 200 })).await;
        }
    }

    /// The first element matching `css`, once the page has one (a click that submits a form
    /// returns before the next page is there); panics after 30 s.
    pub async fn element(&self, css: &str) -> Element {
        let script = format!("return document.querySelector({}) !== null;", serde_json::Value::from(css));
        self.wait_for(&format!("the page has {css}"), Duration::from_secs(30), &script).await;
        self.client.find(Locator::Css(css)).await.expect("the element just seen")
    }

    /// Open `url` again and again until `script` (run in the page) returns true: for a page that
    /// does not refresh itself. Panics with `what` after `timeout`.
    pub async fn wait_reloading(&self, what: &str, timeout: Duration, url: &str, script: &str) {
        self.poll(what, timeout, Some(url), script).await
    }

    /// The text of the first element matching `css`, once the page has one.
    pub async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.expect("its text")
    }

    /// Click the first element matching `css`, once the page has one.
    pub async fn click(&self, css: &str) {
        self.element(css).await.click().await.expect("click");
    }

    /// Sign in at `base` with `token` through the sign-in form.
    pub async fn sign_in(&self, base: &str, token: &str) {
        self.client.goto(base).await.expect("open the dashboard");
        let field = self.client.find(Locator::Css("input[name=token]")).await.expect("the token field");
        field.send_keys(token).await.expect("type the token");
        self.client.find(Locator::Css("form[action='/signin'] button")).await.expect("sign-in button").click().await.expect("click");
        self.wait_for("the sign-in form is gone", Duration::from_secs(20), "return document.querySelector('input[name=token]') === null")
            .await;
    }

    /// The session cookie as a `Cookie` header's value (`wk_session=…`), for requests of the
    /// test's own made in this browser's session.
    pub async fn session(&self) -> String {
        format!("wk_session={}", self.client.get_named_cookie("wk_session").await.expect("a session cookie").value())
    }

    /// The `data-state` of every compound-eye cell, by `data-server`.
    pub async fn cell_states(&self) -> Vec<(String, String)> {
        let value = self
            .client
            .execute("return Array.from(document.querySelectorAll('#eye a.c')).map(a => [a.dataset.server, a.dataset.state]);", vec![])
            .await
            .expect("read the cells");
        serde_json::from_value(value).expect("pairs")
    }

    /// Lay the page out for `media` (`print`, or `""` for the screen again), as Chromium's
    /// DevTools emulate it: a screenshot then shows what printing gives.
    pub async fn emulate_media(&self, media: &str) {
        let params = serde_json::json!({ "media": media });
        self.client.issue_cmd(DevTools { cmd: "Emulation.setEmulatedMedia", params }).await.expect("emulate the media");
    }

    /// End the WebDriver session; chromedriver stops on drop.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A call to Chromium's DevTools through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct DevTools {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for DevTools {
    fn endpoint(&self, base: &reqwest::Url, session: Option<&str>) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(serde_json::json!({ "cmd": self.cmd, "params": self.params }).to_string()))
    }
}
