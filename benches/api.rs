//! Benchmark: the status API's `GET /api/v1/projects/{p}/servers` with 10 000 servers in one
//! project, against its target (README, "Performance targets") — ≥ 2 000 requests/s, p99 ≤ 50 ms — for a page of 100 rows (what the
//! dashboard asks for), with the full list (`?limit=10000`) and the default page of 1 000 beside it.
//!
//! Run with `cargo bench --bench api`. It prints figures and asserts nothing about time.
//!
//! Steps:
//! 1. generate a tree with 10 000 servers in ONE project (`treegen`, one project in one group);
//!    load it through the library and require it to lint clean;
//! 2. a SQLite store in a temporary file with an alert history: `WK_BENCH_FIRING` (200) alerts
//!    firing on servers of the project (warning and fatal) and `WK_BENCH_HISTORY` (20 000)
//!    resolved ones, as a year of outages leaves them; and a live report for every server (facts,
//!    49 metric values over two mounts, two devices and two interfaces, 20 processes), so every
//!    row has its columns;
//! 3. the real `api::router` served by axum on 127.0.0.1:0 in this process's tokio runtime
//!    (`WK_BENCH_WORKERS` worker threads; default one per CPU);
//! 4. load it from a second process: `wrk -t2 -c32 -d10s --latency` with the operator token
//!    (Debian's `wrk`; `apt-get install wrk`), parsing its requests/s and latency percentiles. Without
//!    wrk, an in-process client loop (reqwest, 32 connections) stands in, and the output says so;
//! 5. the same for the full list, the default page, a page sorted by CPU (columns computed for
//!    every server), a filtered list (`?q=`, a handful of rows), an empty one (`?tag=` no server
//!    has: what every request costs before any row), and the full list one connection at a time
//!    (the service time of one request), which together say where the time goes; this process's
//!    CPU time per request is printed beside each.
//!
//! Environment: `WK_BENCH_SECONDS` (10), `WK_BENCH_CONNECTIONS` (32), `WK_BENCH_THREADS` (2, wrk's
//! threads), `WK_BENCH_FIRING` (200), `WK_BENCH_HISTORY` (20000), `WK_BENCH_WORKERS`,
//! `WK_BENCH_NO_WRK` (set: use the in-process client even when wrk is installed).

mod common;
#[allow(dead_code)]
mod treegen;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use watchkeeper::api::{self, ApiState};
use watchkeeper::clock::now_ms;
use watchkeeper::collect::live::LiveServers;
use watchkeeper::config::{self, Library};
use watchkeeper::metrics::Metrics;
use watchkeeper::store::{AlertFilter, AlertStatus, Store};

use common::{env_u64, fleet, ms, verdict};

/// The targets for the server list.
const TARGET_RPS: f64 = 2_000.0;
const TARGET_P99_MS: f64 = 50.0;
const TOKEN: &str = "bench-operator-token";
const PROJECT: &str = "shop";

fn main() {
    let workers = env_u64("WK_BENCH_WORKERS", 0) as usize;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    runtime.block_on(run());
}

/// One load run's figures.
struct Load {
    tool: &'static str,
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    /// CPU time of this (the serving) process per request.
    cpu_per_request: Duration,
}

impl Load {
    fn print(&self, what: &str) {
        println!(
            "  {what}: {:.0} req/s ({} requests), latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors; server CPU {:.2} ms/request [{}]",
            self.rps,
            self.requests,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.errors,
            self.cpu_per_request.as_secs_f64() * 1e3,
            self.tool
        );
    }
}

async fn run() {
    let seconds = env_u64("WK_BENCH_SECONDS", 10).max(1);
    let connections = env_u64("WK_BENCH_CONNECTIONS", 32).max(1);
    let threads = env_u64("WK_BENCH_THREADS", 2).max(1);
    let n_firing = env_u64("WK_BENCH_FIRING", 200) as usize;
    let n_history = env_u64("WK_BENCH_HISTORY", 20_000) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("watchkeeper status API benchmark — loopback only, {cpus} CPUs (server and load generator share them)");

    // 1. The tree: 10 000 servers in one project.
    let size = treegen::Size { projects: 1, groups: 1, ..treegen::Size::spec() };
    let tmp = tempfile::Builder::new().prefix("wk-bench-api-").tempdir().expect("temporary directory");
    let dir = tmp.path().join("tree");
    let stats = treegen::generate(&dir, &size).expect("writing the tree");
    let loaded = config::load_dir(&dir, &Library::Builtin);
    assert!(loaded.diagnostics.is_empty(), "the generated tree must lint clean: {} diagnostics", loaded.diagnostics.len());
    let project = loaded.config.projects.get(PROJECT).expect("the one project is `shop`");
    let servers: Vec<String> = project.servers.keys().cloned().collect();
    println!(
        "tree: {} servers, {} port monitors in project `{PROJECT}`; {} files",
        servers.len(),
        project.port_monitors.len(),
        stats.files
    );
    assert_eq!(servers.len(), 10_000.min(size.servers));

    // 2. The store and its alert history.
    let store = Store::connect(&format!("sqlite://{}", tmp.path().join("wk.db").display())).await.expect("SQLite store");
    let started = Instant::now();
    fleet::seed_alerts(&store, PROJECT, &servers, n_firing, n_history).await;
    let firing = store.firing_alerts(Some(PROJECT)).await.expect("firing alerts");
    println!("store: {} alerts firing, {n_history} resolved, written in {}", firing.len(), ms(started.elapsed()));
    let live = LiveServers::default();
    for (i, server) in servers.iter().enumerate() {
        live.update(PROJECT, server, Arc::new(fleet::report(i)), now_ms());
    }
    println!(
        "live: a report of {} metric values and {} processes for every server",
        fleet::report(0).metrics.len(),
        fleet::report(0).processes.len()
    );

    // 3. The API, as serve runs it.
    let (_config_tx, config_rx) = watch::channel(Arc::new(loaded.config));
    let state = ApiState {
        store: store.clone(),
        config: config_rx,
        metrics: Arc::new(Metrics::new()),
        admin_token_sha256: Some(watchkeeper::token::sha256_hex(TOKEN)),
        started_at_ms: now_ms(),
        lease_ttl_ms: watchkeeper::store::DEFAULT_LEASE_TTL_MS,
        live,
        collector: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    let cancel = tokio_util::sync::CancellationToken::new();
    let server_cancel = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, api::router(state)).with_graceful_shutdown(server_cancel.cancelled_owned()).await.expect("serving the API");
    });

    let list = format!("/api/v1/projects/{PROJECT}/servers");
    let page = format!("{list}?limit=100");
    let full = format!("{list}?limit=10000");
    let by_cpu = format!("{list}?sort=cpu&limit=100");
    let narrow = format!("{list}?q=web-00");
    let none = format!("{list}?tag=no-such-tag");
    let (rows, bytes) = check_answer(port, &full, servers.len()).await;
    assert_eq!(rows, servers.len(), "the full list has every server");
    let (page_rows, page_bytes) = check_answer(port, &page, servers.len()).await;
    assert_eq!(page_rows, 100);
    let (default_rows, default_bytes) = check_answer(port, &list, servers.len()).await;
    check_answer(port, &by_cpu, servers.len()).await;
    let (narrow_rows, narrow_bytes) = check_answer(port, &narrow, usize::MAX).await;
    assert_eq!(check_answer(port, &none, 0).await.0, 0, "no server has that tag");
    println!("GET {page}: 200, {page_rows} servers, {:.1} kB of JSON", page_bytes as f64 / 1e3);
    println!("GET {list}: 200, {default_rows} servers (the default page), {:.2} MB", default_bytes as f64 / 1e6);
    println!("GET {full}: 200, {rows} servers, {:.2} MB", bytes as f64 / 1e6);
    println!("GET {narrow}: 200, {narrow_rows} servers, {narrow_bytes} bytes");

    // 4–5. Load.
    let wrk = std::env::var_os("WK_BENCH_NO_WRK").is_none() && Command::new("wrk").arg("--version").output().is_ok();
    if !wrk {
        println!("wrk not found (apt-get install wrk) or WK_BENCH_NO_WRK set: using the in-process client loop");
    }
    let load = |path: String, conns: u64, threads: u64, secs: u64| async move {
        if wrk { run_wrk(port, &path, conns, threads, secs).await } else { run_in_process(port, &path, conns, secs).await }
    };
    println!();
    println!("load: {connections} connections, {seconds} s each (after a 2 s warm-up)");
    let _ = load(page.clone(), connections, threads, 2).await;
    let main = load(page.clone(), connections, threads, seconds).await;
    main.print("a page of 100 rows (?limit=100)");
    let whole = load(full.clone(), connections, threads, seconds.min(5)).await;
    whole.print("full list (?limit=10000, 10 000 rows)");
    let default_page = load(list.clone(), connections, threads, seconds.min(5)).await;
    default_page.print("default page (1 000 rows)");
    let sorted = load(by_cpu.clone(), connections, threads, seconds.min(5)).await;
    sorted.print("a page of 100 sorted by CPU (?sort=cpu&limit=100)");
    let filtered = load(narrow.clone(), connections, threads, seconds.min(5)).await;
    filtered.print(&format!("filtered (?q=web-00, {narrow_rows} rows)"));
    let empty = load(none.clone(), connections, threads, seconds.min(5)).await;
    empty.print("no rows (?tag=no-such-tag): the per-request floor");
    let serial = load(full.clone(), 1, 1, seconds.min(5)).await;
    serial.print("full list, 1 connection");

    println!();
    println!("where the time goes (one request at a time, in this process):");
    breakdown(&store, port, &full).await;

    println!();
    println!("summary — GET …/servers?limit=100, {} servers in one project, {} firing alerts", servers.len(), firing.len());
    println!(
        "  throughput  {:>9.0} req/s   target ≥ {TARGET_RPS:.0} req/s   {}",
        main.rps,
        verdict(main.rps >= TARGET_RPS && main.errors == 0)
    );
    println!("  latency p99 {:>9.2} ms      target ≤ {TARGET_P99_MS:.0} ms         {}", main.p99_ms, verdict(main.p99_ms <= TARGET_P99_MS));
    println!("  (p50 {:.2} ms; {:.1} kB per answer; load generator: {})", main.p50_ms, page_bytes as f64 / 1e3, main.tool);
    println!(
        "  full list: {:.0} req/s, p99 {:.2} ms, {:.2} MB per answer (not the target's shape: a client pages)",
        whole.rps,
        whole.p99_ms,
        bytes as f64 / 1e6
    );

    cancel.cancel();
    let _ = server.await;
}

/// GET once (on a blocking thread: the client is synchronous); rows and body size. `total` is
/// the number of matching servers the answer must report (`usize::MAX`: any).
async fn check_answer(port: u16, path: &str, total: usize) -> (usize, usize) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let (status, body) = common::http_get(port, &path, Some(TOKEN)).expect("GET");
        assert_eq!(status, 200, "GET {path}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let servers = json["servers"].as_array().expect("a server list");
        assert!(total == usize::MAX || json["total"] == total, "GET {path}: total {}, expected {total}", json["total"]);
        assert!(servers.iter().all(|s| s["cpu_percent"].is_number()), "GET {path}: every server has its columns");
        (servers.len(), body.len())
    })
    .await
    .expect("client thread")
}

/// This process's user + system CPU time so far.
fn own_cpu() -> Duration {
    // SAFETY: a zeroed rusage is valid; getrusage writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `wrk` in a second process; its output parsed.
async fn run_wrk(port: u16, path: &str, connections: u64, threads: u64, seconds: u64) -> Load {
    let url = format!("http://127.0.0.1:{port}{path}");
    let cpu = own_cpu();
    let output = tokio::process::Command::new("wrk")
        .args(["-t", &threads.min(connections).to_string(), "-c", &connections.to_string(), "-d", &format!("{seconds}s")])
        .args(["--timeout", "10s", "--latency", "-H", &format!("Authorization: Bearer {TOKEN}"), &url])
        .output()
        .await
        .expect("running wrk");
    let cpu = own_cpu() - cpu;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    let requests: u64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    let rps = text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0.0);
    let percentile = |p: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(str::trim))
            .map(wrk_ms)
            .unwrap_or_else(|| panic!("no {p} percentile in wrk's output:\n{text}"))
    };
    let max_ms = text.lines().find(|l| l.trim().starts_with("Latency ")).and_then(|l| l.split_whitespace().nth(3)).map_or(0.0, wrk_ms);
    let non_2xx: u64 =
        text.lines().find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    let socket_errors: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|rest| rest.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Load {
        tool: "wrk",
        requests,
        rps,
        p50_ms: percentile("50%"),
        p90_ms: percentile("90%"),
        p99_ms: percentile("99%"),
        max_ms,
        errors: non_2xx + socket_errors,
        cpu_per_request: cpu / requests.max(1) as u32,
    }
}

/// wrk's durations: `812.00us`, `23.45ms`, `1.20s`, `2.00m`; in milliseconds.
fn wrk_ms(s: &str) -> f64 {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let value: f64 = s[..split].parse().unwrap_or(f64::NAN);
    match &s[split..] {
        "us" => value / 1e3,
        "ms" => value,
        "s" => value * 1e3,
        "m" => value * 60e3,
        _ => f64::NAN,
    }
}

/// The fallback load generator: `connections` keep-alive clients in this process, each
/// sending requests back to back for `seconds`, every latency recorded.
async fn run_in_process(port: u16, path: &str, connections: u64, seconds: u64) -> Load {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("http://127.0.0.1:{port}{path}");
    let cpu = own_cpu();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("HTTP client");
        let url = url.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.get(&url).bearer_auth(TOKEN).send().await {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(_) => errors += 1,
                    },
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (latencies, e) = done.expect("client task");
        all.extend(latencies);
        errors += e;
    }
    let wall = started.elapsed();
    let cpu = own_cpu() - cpu;
    all.sort();
    let at =
        |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    Load {
        tool: "in-process reqwest (client CPU counted with the server's)",
        requests: all.len() as u64,
        rps: all.len() as f64 / wall.as_secs_f64(),
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: all.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        errors,
        cpu_per_request: cpu / all.len().max(1) as u32,
    }
}

/// The parts of one request that can be timed from outside the handler: the store query it
/// makes (firing alerts of the project, through the partial index; the generic alert list
/// query it used to make beside it), and turning an answer of this size into JSON text and back
/// (serde_json on a `Value`), against the whole request.
async fn breakdown(store: &Store, port: u16, path: &str) {
    let best = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let filter = AlertFilter { project: Some(PROJECT.into()), status: Some(AlertStatus::Firing), ..AlertFilter::default() };
    let (mut query, mut generic) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        let rows = store.firing_alerts(Some(PROJECT)).await.expect("firing alerts");
        query.push(t.elapsed());
        let t = Instant::now();
        let all = store.list_alerts(&filter).await.expect("firing alerts");
        generic.push(t.elapsed());
        assert_eq!(rows.len(), all.len());
    }
    let path = path.to_string();
    let (whole, body) = tokio::task::spawn_blocking(move || {
        let mut samples = Vec::new();
        let mut body = String::new();
        for _ in 0..20 {
            let t = Instant::now();
            let (_, b) = common::http_get(port, &path, Some(TOKEN)).expect("GET");
            samples.push(t.elapsed());
            body = b;
        }
        (samples, body)
    })
    .await
    .expect("client thread");
    let value: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let mut to_text = Vec::new();
    let mut to_value = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let text = serde_json::to_vec(&value).expect("serialising");
        to_text.push(t.elapsed());
        let t = Instant::now();
        let again = serde_json::to_value(&value).expect("a Value");
        to_value.push(t.elapsed());
        drop((text, again));
    }
    let (mut query, mut whole) = (query, whole);
    println!("  whole request, a new connection each (median of 20)      : {}", ms(best(&mut whole)));
    println!("  firing-alerts query (firing_alerts, the partial index)    : {}", ms(best(&mut query)));
    println!("  the same through list_alerts (the generic filter query)   : {}", ms(best(&mut generic)));
    println!("  serde_json::to_vec of a Value of the {:.1} MB answer       : {}", body.len() as f64 / 1e6, ms(best(&mut to_text)));
    println!("  serde_json::to_value of that Value (building one)         : {}", ms(best(&mut to_value)));
    println!("  (the handler now serializes its rows straight to JSON text; it used to build and free such a Value first)");
}
