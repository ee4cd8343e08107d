//! A stand-in collector for the agent tests and the agent benchmark: axum on 127.0.0.1 answering
//! `POST /ingest/v1/report` as serve's collector does — 200 with assignments, or the error status
//! a test asks for — and recording every request, parsed as the wire type. It can be stopped
//! (the port then refuses connections) and started again on the same port.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use watchkeeper::protocol::{self as wire, Assignments, IngestRequest, IngestResponse};

/// One request as received, and its answer.
#[derive(Debug, Clone)]
pub struct Received {
    pub authorization: Option<String>,
    /// The body as the wire type; `None` when it did not parse (it was answered 400).
    pub request: Option<IngestRequest>,
    pub body_bytes: usize,
    pub status: u16,
    /// Which [`Collector::assign`] call the answer's assignments came from (0: none yet).
    pub assignments_version: u64,
}

impl Received {
    pub fn accepted(&self) -> Option<&IngestRequest> {
        self.request.as_ref().filter(|_| self.status == 200)
    }
}

/// How the collector answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// 200 with the current assignments.
    Accept,
    /// This status with `{"error": message}`.
    Fail(u16, String),
    /// 413 for a request with more than this many reports; otherwise as [`Mode::Accept`].
    MaxReports(usize),
}

struct Shared {
    received: Mutex<Vec<Received>>,
    mode: Mutex<Mode>,
    /// Answers for the next requests, used before `mode`.
    script: Mutex<VecDeque<Mode>>,
    assignments: Mutex<(u64, Assignments)>,
}

/// The server; stops on drop.
pub struct Collector {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Collector {
    /// Listen on a free port of 127.0.0.1, accepting everything.
    pub async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Accept),
            script: Mutex::new(VecDeque::new()),
            assignments: Mutex::new((0, Assignments::default())),
        });
        let mut collector = Collector { addr, shared, running: None };
        collector.serve(listener);
        collector
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .route("/ingest/v1/report", axum::routing::post(ingest))
            .layer(axum::extract::DefaultBodyLimit::max(wire::MAX_BODY_BYTES))
            .with_state(Arc::clone(&self.shared));
        let stop = CancellationToken::new();
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(signal).await;
        });
        self.running = Some((stop, task));
    }

    /// The base URL to give `agent --server`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop listening and close every connection; the port refuses connections once this returns.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// Listen again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}; retrying", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("mode lock") = mode;
    }

    /// Answer the next requests like this, one each, before the mode applies again.
    pub fn script(&self, answers: impl IntoIterator<Item = Mode>) {
        self.shared.script.lock().expect("script lock").extend(answers);
    }

    /// Assignments for the answers from now on; returns their version.
    pub fn assign(&self, assignments: Assignments) -> u64 {
        let mut current = self.shared.assignments.lock().expect("assignments lock");
        current.0 += 1;
        current.1 = assignments;
        current.0
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("received lock").clone()
    }

    /// Poll what was received until `done` holds; panic after `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, mut done: impl FnMut(&[Received]) -> bool) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting until {what}; received {} requests", received.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            task.abort();
        }
    }
}

async fn ingest(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers.get("authorization").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let parsed = serde_json::from_slice::<IngestRequest>(&body);
    let mode = shared.script.lock().expect("script lock").pop_front().unwrap_or_else(|| shared.mode.lock().expect("mode lock").clone());
    let (version, assignments) = shared.assignments.lock().expect("assignments lock").clone();
    let failure = |status: u16, message: String| {
        let status = StatusCode::from_u16(status).expect("a valid status");
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    };
    let reports = parsed.as_ref().map_or(0, |r| r.reports.len());
    let response = match (&parsed, mode) {
        (Err(e), _) => failure(400, format!("invalid body: {e}")),
        (Ok(_), Mode::Fail(status, message)) => failure(status, message),
        (Ok(_), Mode::MaxReports(max)) if reports > max => failure(413, format!("{reports} reports; at most {max}")),
        (Ok(_), Mode::Accept | Mode::MaxReports(_)) => Json(IngestResponse { accepted: reports, assignments }).into_response(),
    };
    shared.received.lock().expect("received lock").push(Received {
        authorization,
        request: parsed.ok(),
        body_bytes: body.len(),
        status: response.status().as_u16(),
        assignments_version: version,
    });
    response
}
