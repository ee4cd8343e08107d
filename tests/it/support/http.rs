//! A real HTTP server (axum on 127.0.0.1:0) that records every request and can answer error
//! statuses to the first ones, for SMS gateway and webhook tests, or serve one page (a metrics
//! page to scrape) — or act as an SMS gateway that answers each message with an id and then
//! posts a delivery report about it to a callback URL, as real gateways do.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lowercase names.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.body))
    }
}

/// The delivery report an SMS gateway stand-in posts about a message: from the request that
/// sent it and the message id the gateway gave it.
pub type Report = Arc<dyn Fn(&Recorded, &str) -> serde_json::Value + Send + Sync>;

/// Where and how an SMS gateway stand-in posts its delivery reports.
struct Callback {
    url: String,
    secret: String,
    report: Report,
    /// The status of each report's final answer.
    answers: Mutex<Vec<u16>>,
}

/// How long a gateway stand-in keeps retrying a report answered 404 (its message not recorded
/// as sent yet), like real gateways retry.
const CALLBACK_RETRY_FOR: Duration = Duration::from_secs(60);

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    gateway: Option<Callback>,
    /// The statuses of the first requests, in order, each with [`FAILURE_BODY`].
    fail_first: Vec<StatusCode>,
    /// What a request that is not failed gets, with 200.
    body: String,
}

/// The server; stops on drop.
pub struct HttpServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Said by the server when it fails a request on purpose.
pub const FAILURE_BODY: &str = "gateway exploded\n(try again later)";

impl HttpServer {
    /// Answer 200 `ok` to everything.
    pub async fn start() -> HttpServer {
        HttpServer::failing_first(0).await
    }

    /// Answer 500 with [`FAILURE_BODY`] to the first `n` requests, then 200 `ok`.
    pub async fn failing_first(n: usize) -> HttpServer {
        HttpServer::answering_first(&vec![500; n]).await
    }

    /// Answer the first requests with `statuses` (one each, in order, with [`FAILURE_BODY`]),
    /// then 200 `ok`.
    pub async fn answering_first(statuses: &[u16]) -> HttpServer {
        let statuses = statuses.iter().map(|&s| StatusCode::from_u16(s).expect("an HTTP status")).collect();
        HttpServer::with(statuses, "ok").await
    }

    /// Answer 200 with `body` to everything.
    pub async fn serving(body: &str) -> HttpServer {
        HttpServer::with(Vec::new(), body).await
    }

    /// An SMS gateway: answers each request 200 `{"msg_id": "gw-<n>"}` (n counting from 1), then
    /// posts `report` about it to `callback` with `Authorization: Bearer <secret>`, retrying
    /// while that answers 404.
    pub async fn sms_gateway(callback: &str, secret: &str, report: Report) -> HttpServer {
        let gateway = Callback { url: callback.to_owned(), secret: secret.to_owned(), report, answers: Mutex::default() };
        HttpServer::start_with(Shared { requests: Mutex::default(), gateway: Some(gateway), fail_first: Vec::new(), body: String::new() })
            .await
    }

    /// The final answers to the delivery reports a gateway stand-in posted.
    pub fn callback_answers(&self) -> Vec<u16> {
        self.shared.gateway.as_ref().map(|g| g.answers.lock().expect("answers lock").clone()).unwrap_or_default()
    }

    async fn with(fail_first: Vec<StatusCode>, body: &str) -> HttpServer {
        HttpServer::start_with(Shared { requests: Mutex::default(), gateway: None, fail_first, body: body.to_owned() }).await
    }

    async fn start_with(shared: Shared) -> HttpServer {
        let shared = Arc::new(shared);
        let app = axum::Router::new().fallback(record).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpServer { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Wait until at least `n` requests arrived; panic after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let start = Instant::now();
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(start.elapsed() < timeout, "expected {n} requests within {timeout:?}, got {}", requests.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path_and_query().map_or_else(|| uri.path().to_string(), ToString::to_string),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let mut requests = shared.requests.lock().expect("requests lock");
    requests.push(recorded.clone());
    if shared.gateway.is_some() {
        let id = format!("gw-{}", requests.len());
        tokio::spawn(post_report(shared.clone(), recorded, id.clone()));
        return (StatusCode::OK, serde_json::json!({ "msg_id": id }).to_string());
    }
    match shared.fail_first.get(requests.len() - 1) {
        Some(&status) => (status, FAILURE_BODY.to_string()),
        None => (StatusCode::OK, shared.body.clone()),
    }
}

/// Post the gateway's delivery report about message `id`, again while it answers 404.
async fn post_report(shared: Arc<Shared>, request: Recorded, id: String) {
    let Some(gateway) = shared.gateway.as_ref() else { return };
    let body = (gateway.report)(&request, &id);
    let client = reqwest::Client::new();
    let start = Instant::now();
    loop {
        let answer = client.post(&gateway.url).bearer_auth(&gateway.secret).json(&body).send().await.map(|r| r.status().as_u16());
        match answer {
            Ok(404) if start.elapsed() < CALLBACK_RETRY_FOR => {}
            Ok(status) => {
                gateway.answers.lock().expect("answers lock").push(status);
                return;
            }
            Err(e) if start.elapsed() >= CALLBACK_RETRY_FOR => panic!("the delivery report could not be posted: {e}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
