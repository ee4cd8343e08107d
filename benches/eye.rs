//! Benchmark: the dashboard's compound eye of 10 000 servers in one project — the 5 s refresh
//! (`GET /p/{project}/cells`) against its targets (README, "Performance targets": ≤ 50 ms of
//! server time and ≤ 200 KB on the wire), and the whole page (`GET /p/{project}`) beside it.
//!
//! Run with `cargo bench --bench eye`. It prints figures and asserts nothing about time.
//!
//! Steps:
//! 1. generate a tree with 10 000 servers in ONE project (`treegen`); load it through the
//!    library and require it to lint clean;
//! 2. a SQLite store in a temporary file with `WK_BENCH_FIRING` (200) alerts firing on servers
//!    of the project and `WK_BENCH_HISTORY` (2 000) resolved ones, and a live report for every
//!    server (the status API benchmark's fleet), so every cell has its five gauges;
//! 3. the real dashboard router (`web::router`, the status API beside it) served by axum on
//!    127.0.0.1:0 in this process, with a session for the operator token started as sign-in
//!    starts one;
//! 4. `WK_BENCH_REQUESTS` (200) refreshes one after another, each on a fresh connection as a
//!    browser's poll may be, timed from the client (loopback, so the time is the server's plus
//!    a connect); the answer's bytes (body and headers; the dashboard sends no compression);
//!    the same for the whole page a few times.
//!
//! Environment: `WK_BENCH_REQUESTS` (200), `WK_BENCH_FIRING` (200), `WK_BENCH_HISTORY` (2000).

mod common;
#[allow(dead_code)]
mod treegen;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use watchkeeper::api::ApiState;
use watchkeeper::clock::now_ms;
use watchkeeper::collect::live::LiveServers;
use watchkeeper::config::{self, Library};
use watchkeeper::metrics::Metrics;
use watchkeeper::store::Store;
use watchkeeper::web::{self, WebState};

use common::{cpu_time, env_u64, fleet, ms, verdict};

const TARGET_REFRESH_MS: f64 = 50.0;
const TARGET_REFRESH_BYTES: usize = 200_000;
const TOKEN: &str = "bench-operator-token";
const PROJECT: &str = "shop";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run());
}

/// Latencies of some requests, in milliseconds.
struct Timings(Vec<f64>);

impl Timings {
    fn at(&self, q: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }
}

/// GET `path` `n` times one after another with the session cookie; the latencies and the size
/// of the last answer (body, and body with headers).
async fn measure(port: u16, path: &str, cookie: &str, n: usize) -> (Timings, usize, usize) {
    let (path, cookie) = (path.to_string(), cookie.to_string());
    tokio::task::spawn_blocking(move || {
        let mut times = Vec::with_capacity(n);
        let mut sizes = (0, 0);
        for _ in 0..n {
            let started = Instant::now();
            let (status, head_bytes, body) = common::http_get_with(port, &path, &[("Cookie", &cookie)]).expect("GET");
            times.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(status, 200, "GET {path}: {body}");
            sizes = (body.len(), head_bytes + body.len());
        }
        (Timings(times), sizes.0, sizes.1)
    })
    .await
    .expect("client thread")
}

async fn run() {
    let requests = env_u64("WK_BENCH_REQUESTS", 200).max(1) as usize;
    let n_firing = env_u64("WK_BENCH_FIRING", 200) as usize;
    let n_history = env_u64("WK_BENCH_HISTORY", 2_000) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("watchkeeper compound-eye benchmark — loopback only, {cpus} CPUs (server and client share them)");

    // 1. The tree: 10 000 servers in one project.
    let size = treegen::Size { projects: 1, groups: 1, ..treegen::Size::spec() };
    let tmp = tempfile::Builder::new().prefix("wk-bench-eye-").tempdir().expect("temporary directory");
    let dir = tmp.path().join("tree");
    treegen::generate(&dir, &size).expect("writing the tree");
    let loaded = config::load_dir(&dir, &Library::Builtin);
    assert!(loaded.diagnostics.is_empty(), "the generated tree must lint clean: {} diagnostics", loaded.diagnostics.len());
    let project = loaded.config.projects.get(PROJECT).expect("the one project is `shop`");
    let servers: Vec<String> = project.servers.keys().cloned().collect();
    assert_eq!(servers.len(), 10_000.min(size.servers));

    // 2. The store, the alerts, a report for every server.
    let store = Store::connect(&format!("sqlite://{}", tmp.path().join("wk.db").display())).await.expect("SQLite store");
    fleet::seed_alerts(&store, PROJECT, &servers, n_firing, n_history).await;
    let live = LiveServers::default();
    for (i, server) in servers.iter().enumerate() {
        live.update(PROJECT, server, Arc::new(fleet::report(i)), now_ms());
    }
    println!("fleet: {} servers in `{PROJECT}`, {n_firing} alerts firing, {n_history} resolved, a report for each", servers.len());

    // 3. The dashboard, as serve runs it, and a signed-in session.
    let (_config_tx, config_rx) = watch::channel(Arc::new(loaded.config));
    let api = ApiState {
        store: store.clone(),
        config: config_rx,
        metrics: Arc::new(Metrics::new()),
        admin_token_sha256: Some(watchkeeper::token::sha256_hex(TOKEN)),
        started_at_ms: now_ms(),
        lease_ttl_ms: watchkeeper::store::DEFAULT_LEASE_TTL_MS,
        live,
        collector: None,
    };
    let state = WebState::new(api, Duration::from_secs(3600), None);
    let session = state.sessions.start(watchkeeper::token::sha256_hex(TOKEN), now_ms()).expect("a session id");
    let cookie = format!("wk_session={session}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    let cancel = tokio_util::sync::CancellationToken::new();
    let server_cancel = cancel.clone();
    let app = web::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(server_cancel.cancelled_owned()).await.expect("serving the dashboard");
    });

    // 4. The refresh, then the page.
    let cells = format!("/p/{PROJECT}/cells");
    let (_, body, _) = measure(port, &cells, &cookie, 3).await;
    let cpu = cpu_time(std::process::id()).expect("own CPU time");
    let started = Instant::now();
    let (refresh, refresh_body, refresh_wire) = measure(port, &cells, &cookie, requests).await;
    let wall = started.elapsed();
    let cpu = cpu_time(std::process::id()).expect("own CPU time") - cpu;
    assert_eq!(refresh_body, body, "every refresh answers the same size");
    let page = format!("/p/{PROJECT}");
    let (whole, page_body, page_wire) = measure(port, &page, &cookie, 5).await;

    println!();
    println!("GET {cells} ({requests} requests, one at a time, each on a new connection):");
    println!(
        "  latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} in all; this process's CPU {:.2} ms/request (server and client)",
        refresh.at(0.5),
        refresh.at(0.9),
        refresh.at(0.99),
        refresh.at(1.0),
        ms(wall),
        cpu.as_secs_f64() * 1e3 / requests as f64
    );
    println!(
        "  {refresh_body} bytes of JSON, {refresh_wire} bytes with the headers ({:.1} bytes a server)",
        refresh_body as f64 / servers.len() as f64
    );
    println!(
        "GET {page} (5 requests): p50 {:.1} ms, max {:.1} ms; {page_body} bytes of HTML, {page_wire} with the headers",
        whole.at(0.5),
        whole.at(1.0)
    );

    println!();
    println!("summary — the compound eye's 5 s refresh, {} servers", servers.len());
    println!(
        "  server time p99 {:>8.2} ms   target ≤ {TARGET_REFRESH_MS:.0} ms    {}",
        refresh.at(0.99),
        verdict(refresh.at(0.99) <= TARGET_REFRESH_MS)
    );
    println!(
        "  on the wire     {:>8.1} KB   target ≤ {} KB   {}",
        refresh_wire as f64 / 1e3,
        TARGET_REFRESH_BYTES / 1000,
        verdict(refresh_wire <= TARGET_REFRESH_BYTES)
    );
    cancel.cancel();
    let _ = server.await;
}
