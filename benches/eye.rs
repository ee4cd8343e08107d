//! Benchmark: the dashboard's compound eye of 10 000 servers in one project — the 5 s refresh
//! (`GET /p/{project}/cells`) against its targets (README, "Performance targets": ≤ 50 ms of
//! server time and ≤ 200 KB on the wire), the whole page (`GET /p/{project}`) beside it, the
//! time until headless Chromium has drawn that page (≤ 1 s), and a server page over 30 days
//! (`GET /p/{project}/s/{server}?range=30d`, ≤ 300 ms of server time) with its four detail
//! views over the same 30 days (`…&detail=cpu|memory|network|disk`, held to the same target).
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
//!    the same for the whole page a few times;
//! 5. the page in headless Chromium (Debian's `chromium` and `chromedriver`, driven over
//!    WebDriver as the browser tests drive it; skipped with a note when they are missing):
//!    signed in through the form, the page opened `WK_BENCH_LOADS` (5) times; each time the
//!    page's own Performance API says, from navigation start, when the answer had arrived, when
//!    the document with every cell was parsed and the script had set their gauges
//!    (DOMContentLoaded), when it had loaded, its first contentful paint, and the second
//!    animation frame after the benchmark's script found every cell (an upper bound: it
//!    includes the WebDriver round trip);
//! 6. one server's 30 days of history — a report every 5 minutes, rolled up as serve rolls
//!    them up — and its page over 30 days (hourly points), `WK_BENCH_PAGES` (20) times; then
//!    each detail view over 30 days as many times (the fleet's report has two mounts, two
//!    devices and two interfaces).
//!
//! Environment: `WK_BENCH_REQUESTS` (200), `WK_BENCH_FIRING` (200), `WK_BENCH_HISTORY` (2000),
//! `WK_BENCH_LOADS` (5), `WK_BENCH_PAGES` (20).

/// The browser tests' WebDriver support, as they use it.
#[allow(dead_code)]
#[path = "../tests/it/support/browser.rs"]
mod browser;
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
use watchkeeper::store::{Store, StoredReport};
use watchkeeper::web::{self, WebState};

use common::{cpu_time, env_u64, fleet, free_port, ms, verdict};

const TARGET_REFRESH_MS: f64 = 50.0;
const TARGET_REFRESH_BYTES: usize = 200_000;
const TARGET_DRAWN_MS: f64 = 1_000.0;
const TARGET_SERVER_PAGE_MS: f64 = 300.0;
const MIN: i64 = 60_000;
const DAY: i64 = 24 * 60 * MIN;
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
    let drawn = drawn_in_chromium(port, &page, env_u64("WK_BENCH_LOADS", 5).max(1) as usize).await;
    let charted = &servers[0];
    let history = thirty_days(&store, charted).await;
    let server_page = format!("/p/{PROJECT}/s/{charted}?range=30d");
    let pages = env_u64("WK_BENCH_PAGES", 20).max(1) as usize;
    let (month, month_body, _) = measure(port, &server_page, &cookie, pages).await;
    let mut details = Vec::new();
    for detail in ["cpu", "memory", "network", "disk"] {
        let path = format!("{server_page}&detail={detail}");
        let (timings, body, _) = measure(port, &path, &cookie, pages).await;
        details.push((path, timings, body));
    }

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
    if let Some(d) = &drawn {
        println!("GET {page} in headless Chromium ({} loads; ms from navigation start, median / max):", d.loads);
        for (what, t) in [
            ("answer received (responseEnd)", &d.response),
            ("first contentful paint", &d.fcp),
            ("every cell parsed, gauges set (DOMContentLoaded end)", &d.dcl),
            ("loaded (load event end)", &d.load),
            ("2nd frame after the cells were found (upper bound)", &d.frame),
        ] {
            println!("  {what:<54} {:>8.0} / {:>8.0}", t.at(0.5), t.at(1.0));
        }
        println!("  cells on the page: {}", d.cells);
    }
    println!("{history}");
    println!(
        "GET {server_page} ({} requests): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms; {month_body} bytes of HTML",
        month.0.len(),
        month.at(0.5),
        month.at(0.9),
        month.at(1.0)
    );
    for (path, timings, body) in &details {
        println!(
            "GET {path} ({} requests): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms; {body} bytes of HTML",
            timings.0.len(),
            timings.at(0.5),
            timings.at(0.9),
            timings.at(1.0)
        );
    }

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
    match &drawn {
        Some(d) => println!(
            "  drawn in Chromium {:>8.0} ms   target ≤ {TARGET_DRAWN_MS:.0} ms  {} (median, DOMContentLoaded end)",
            d.dcl.at(0.5),
            verdict(d.dcl.at(0.5) <= TARGET_DRAWN_MS)
        ),
        None => println!("  drawn in Chromium  not measured: /usr/bin/chromium and /usr/bin/chromedriver are needed"),
    }
    println!(
        "  30-day server page p90 {:>5.1} ms   target ≤ {TARGET_SERVER_PAGE_MS:.0} ms   {}",
        month.at(0.9),
        verdict(month.at(0.9) <= TARGET_SERVER_PAGE_MS)
    );
    let slowest = details.iter().map(|(_, t, _)| t.at(0.9)).fold(0.0, f64::max);
    println!(
        "  slowest 30-day detail view p90 {:>5.1} ms   target ≤ {TARGET_SERVER_PAGE_MS:.0} ms   {}",
        slowest,
        verdict(slowest <= TARGET_SERVER_PAGE_MS)
    );
    cancel.cancel();
    let _ = server.await;
}

/// What the page's Performance API said over some loads.
struct Drawn {
    loads: usize,
    cells: usize,
    response: Timings,
    fcp: Timings,
    dcl: Timings,
    load: Timings,
    frame: Timings,
}

/// Open `path` in headless Chromium `loads` times, signed in as the operator through the form;
/// `None` when Chromium or chromedriver is not installed.
async fn drawn_in_chromium(port: u16, path: &str, loads: usize) -> Option<Drawn> {
    if !["/usr/bin/chromium", "/usr/bin/chromedriver"].iter().all(|p| std::path::Path::new(p).exists()) {
        return None;
    }
    let chromium = browser::Browser::start(1280, 900).await;
    let base = format!("http://127.0.0.1:{port}");
    chromium.sign_in(&base, TOKEN).await;
    let script = "const done = arguments[arguments.length - 1];
        const nav = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        const cells = document.querySelectorAll('#eye a.c').length;
        requestAnimationFrame(() => requestAnimationFrame(() => done([
            nav.responseEnd, fcp ? fcp.startTime : -1, nav.domContentLoadedEventEnd, nav.loadEventEnd, performance.now(), cells])));";
    let mut drawn = Drawn {
        loads,
        cells: 0,
        response: Timings(Vec::new()),
        fcp: Timings(Vec::new()),
        dcl: Timings(Vec::new()),
        load: Timings(Vec::new()),
        frame: Timings(Vec::new()),
    };
    for _ in 0..loads {
        chromium.client.goto(&format!("{base}{path}")).await.expect("open the compound eye");
        let value = chromium.client.execute_async(script, vec![]).await.expect("the page's timings");
        let t: Vec<f64> = serde_json::from_value(value).expect("numbers");
        drawn.response.0.push(t[0]);
        drawn.fcp.0.push(t[1]);
        drawn.dcl.0.push(t[2]);
        drawn.load.0.push(t[3]);
        drawn.frame.0.push(t[4]);
        drawn.cells = t[5] as usize;
    }
    chromium.screenshot("bench-eye-10000").await;
    chromium.close().await;
    Some(drawn)
}

/// 30 days of `server`'s history up to now, a report every 5 minutes, rolled up as serve does;
/// a line saying what was stored.
async fn thirty_days(store: &Store, server: &str) -> String {
    let started = Instant::now();
    let now = now_ms();
    let reports: Vec<watchkeeper::protocol::Report> = (now - 30 * DAY..now)
        .step_by(5 * MIN as usize)
        .enumerate()
        .map(|(n, at_ms)| watchkeeper::protocol::Report { at_ms, ..fleet::report(n) })
        .collect();
    for chunk in reports.chunks(200) {
        let batch: Vec<StoredReport> = chunk.iter().map(|report| StoredReport { project: PROJECT, server, report }).collect();
        store.insert_reports(&batch).await.expect("insert the history");
    }
    let stats = store.roll_up(now).await.expect("roll up the history");
    format!(
        "history of `{server}`: {} reports over 30 days, rolled up into {} 5-minute and {} hourly rows, in {}",
        reports.len(),
        stats.five_minute_rows,
        stats.hour_rows,
        ms(started.elapsed())
    )
}
