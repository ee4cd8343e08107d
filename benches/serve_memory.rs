//! Benchmark: `watchkeeper serve`'s memory at 10 000 servers / 30 000 probes, against its target (README, "Performance targets") —
//! at most 300 MB resident.
//!
//! Run with `cargo bench --bench serve_memory`. It prints figures and asserts nothing about memory.
//!
//! Steps:
//! 1. open three TCP listeners on 127.0.0.1 (threads in this process accept and drop every
//!    connection), and raise the open-file limit (serve inherits it);
//! 2. generate the target-size tree (`treegen`: 10 000 servers, 10 000 port monitors) with every
//!    address on 127.0.0.1, every PortMonitor checking the three listeners' ports (30 000 probes,
//!    less the monitors of paused servers) every `WK_BENCH_INTERVAL` (30s: a whole round of
//!    probes every 30 s; the default 3m would probe a sixth as often);
//! 3. run the release `watchkeeper serve --config DIR` on a SQLite file, wait until it has applied
//!    the tree, then for `WK_BENCH_SECONDS` (75) sample VmRSS and VmHWM from /proc/PID/status and
//!    its CPU time from /proc/PID/stat every second;
//! 4. print startup time, peak and steady RSS, CPU %, and the probes serve recorded (from its
//!    database), then stop it with SIGTERM.
//!
//! Environment: `WK_BENCH_SECONDS` (75), `WK_BENCH_INTERVAL` (30s), `WK_BENCH_BIN` (a prebuilt
//! `watchkeeper`: skips the cargo build), `WK_BENCH_KEEP` (keep the tree and the database).

mod common;
#[allow(dead_code)]
mod treegen;

use std::thread;
use std::time::{Duration, Instant};

use common::{Listener, Serve, ms, verdict};

/// The target for serve's resident memory.
const TARGET_MB: f64 = 300.0;
const TOKEN: &str = "bench-operator-token";

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn main() {
    let fd_limit = common::raise_fd_limit();
    let seconds = common::env_u64("WK_BENCH_SECONDS", 75).max(5);
    let interval = std::env::var("WK_BENCH_INTERVAL").unwrap_or_else(|_| "30s".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("watchkeeper serve memory benchmark — loopback only, {cpus} CPUs, fd limit {fd_limit}");

    // 1–2. Listeners and the tree.
    let listeners: Vec<Listener> = (0..3).map(|_| Listener::open(0)).collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.port).collect();
    let options = treegen::Options { loopback: true, ports: vec![ports.clone()], interval: Some((interval.clone(), "5s".into())) };
    let size = treegen::Size::spec();
    let tmp = tempfile::Builder::new().prefix("wk-bench-serve-").tempdir().expect("temporary directory");
    let dir = tmp.path().join("tree");
    let stats = treegen::generate_with(&dir, &size, &options).expect("writing the tree");
    let loaded = watchkeeper::config::load_dir(&dir, &watchkeeper::config::Library::Builtin);
    assert!(loaded.diagnostics.is_empty(), "the generated tree must lint clean: {} diagnostics", loaded.diagnostics.len());
    let specs = watchkeeper::reconcile::monitor_specs(&loaded.config);
    let probes: usize = specs.iter().map(|s| s.ports.len()).sum();
    drop(loaded);
    println!(
        "tree: {} servers, {} port monitors ({} probed, {probes} probes: the rest watch paused servers), every {interval}, on 127.0.0.1:{ports:?}; {:.1} MB",
        stats.servers,
        stats.monitors,
        specs.len(),
        stats.bytes as f64 / 1e6
    );

    // 3. serve.
    let bin = common::release_binary();
    let db = tmp.path().join("wk.db");
    let args: Vec<String> = vec![
        "--config".into(),
        dir.display().to_string(),
        "--rescan".into(),
        "10m".into(),
        "--db".into(),
        format!("sqlite://{}", db.display()),
    ];
    let started = Instant::now();
    let mut serve = Serve::start(&bin, &args, TOKEN, &tmp.path().join("serve.log"));
    let pid = serve.pid();
    serve.wait_until("the tree is applied", Duration::from_secs(120), || serve.applied().is_some());
    let startup = started.elapsed();
    let (rss_applied, hwm_applied) = common::rss_kib(pid).expect("serve's /proc status");
    println!(
        "serve (pid {pid}) applied the tree {} after start; RSS then {:.1} MB (high-water {:.1} MB)",
        ms(startup),
        mb(rss_applied),
        mb(hwm_applied)
    );

    let cpu_start = common::cpu_time(pid).expect("serve's /proc stat");
    let measure_start = Instant::now();
    let mut samples: Vec<(Duration, u64, u64)> = Vec::new();
    while measure_start.elapsed() < Duration::from_secs(seconds) {
        thread::sleep(Duration::from_secs(1));
        let Some((rss, hwm)) = common::rss_kib(pid) else { panic!("serve exited during the run:\n{}", serve.log_text()) };
        samples.push((measure_start.elapsed(), rss, hwm));
        if samples.len().is_multiple_of(15) {
            println!("  t+{:>3.0} s: RSS {:>6.1} MB, high-water {:>6.1} MB", measure_start.elapsed().as_secs_f64(), mb(rss), mb(hwm));
        }
    }
    let wall = measure_start.elapsed();
    let cpu = common::cpu_time(pid).expect("serve's /proc stat") - cpu_start;
    let status = serve.get("/api/v1/status");

    // 4. What serve did meanwhile, from its database (read while it runs: SQLite WAL).
    let (recorded, ok) = probe_counts(&db);
    let exit = serve.terminate();

    let peak_hwm = samples.iter().map(|s| s.2).max().unwrap_or(hwm_applied);
    let peak_rss = samples.iter().map(|s| s.1).max().unwrap_or(rss_applied);
    let mut steady: Vec<u64> = samples[samples.len() / 2..].iter().map(|s| s.1).collect();
    steady.sort();
    let steady_median = steady[steady.len() / 2];
    let cpu_percent = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
    println!();
    println!("summary — serve at {} servers / {probes} probes every {interval}, {:.0} s after applying", stats.servers, wall.as_secs_f64());
    println!("  peak RSS (VmHWM)   {:>7.1} MB   target ≤ {TARGET_MB:.0} MB   {}", mb(peak_hwm), verdict(mb(peak_hwm) <= TARGET_MB));
    println!(
        "  steady RSS         {:>7.1} MB   (median VmRSS over the second half; max sampled {:.1} MB, at applied {:.1} MB)",
        mb(steady_median),
        mb(peak_rss),
        mb(rss_applied)
    );
    println!(
        "  CPU                {cpu_percent:>7.1} %    of one core over the run ({:.1} s CPU in {:.1} s)",
        cpu.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "  probes recorded    {recorded:>7}      ({ok} ok; {:.0} per second since start; {:.0} expected per second)",
        recorded as f64 / (startup + wall).as_secs_f64(),
        probes as f64 / humantime_secs(&interval)
    );
    println!("  startup (to applied) {}; status counts {}", ms(startup), status["counts"]);
    println!("  serve stopped on SIGTERM: {}", exit.map_or("no status".to_string(), |s| s.to_string()));
    if std::env::var_os("WK_BENCH_KEEP").is_some() {
        println!("tree and database kept at {}", tmp.keep().display());
    }
    drop(listeners);
}

/// Checks serve recorded (counted in its hourly probe rollups), and how many of them succeeded.
fn probe_counts(db: &std::path::Path) -> (i64, i64) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        use sqlx::Row;
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("opening serve's database");
        let row = sqlx::query("SELECT coalesce(sum(checks), 0) AS n, coalesce(sum(checks - failures), 0) AS ok FROM probe_hours")
            .fetch_one(&pool)
            .await
            .expect("counting");
        let counts = (row.get::<i64, _>("n"), row.get::<i64, _>("ok"));
        pool.close().await;
        counts
    })
}

/// `30s`, `3m`, `1h` in seconds (for the expected probe rate).
fn humantime_secs(s: &str) -> f64 {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let n: f64 = s[..split].parse().unwrap_or(f64::NAN);
    match &s[split..] {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => f64::NAN,
    }
}
