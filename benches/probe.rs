//! Benchmark: TCP checks on loopback against their targets (README, "Performance targets") — at
//! least 20 000 checks per CPU-second of the whole `watchkeeper serve` process (prober, engine,
//! store), and schedule lateness p99 ≤ 50 ms at 10 000 monitors — with Debian's
//! blackbox_exporter measured on the same listeners in the same run.
//!
//! Run with `cargo bench --bench probe`. It prints figures and asserts nothing about time.
//!
//! Steps:
//! 1. start `WK_BENCH_LISTENERS` loopback listeners in a child process (this binary re-run with
//!    `--listener-child`), which accepts and closes every connection — so the CPU this process
//!    uses (getrusage, user + sys) is the prober's alone; the child's is reported beside it;
//! 2. (a) throughput: a [`Prober`] saturated with due monitors (each one port, 100 ms interval)
//!    at `WK_BENCH_IN_FLIGHT` checks in flight, for `WK_BENCH_SECONDS`; then (a′) the same with
//!    bare `check()` calls in a loop, the floor the scheduler adds to;
//! 3. (b) lateness: `WK_BENCH_MONITORS` monitors of one port each on a `WK_BENCH_INTERVAL_S`
//!    interval for `WK_BENCH_LATENESS_SECONDS`: p50 / p99 / max of `at_ms - due_ms`, CPU %;
//! 4. (s) the whole of serve: the release `watchkeeper serve` (built by the bench, or
//!    `WK_BENCH_BIN`) on a SQLite file, following a tree of `WK_BENCH_SERVE_MONITORS` PortMonitors
//!    of one listener port each, every second — that many checks per second due. After the tree
//!    is applied and 5 s of warm-up, for `WK_BENCH_SERVE_SECONDS`: the checks serve recorded
//!    (`watchkeeper_probes_total` in its `/metrics`, counted after the store took them) and its
//!    CPU (/proc/PID/stat);
//! 5. (c) blackbox_exporter (`prometheus-blackbox-exporter` on PATH, or `WK_BENCH_BLACKBOX`):
//!    `/probe?module=tcp_connect&target=127.0.0.1:PORT` driven by concurrent HTTP clients for
//!    `WK_BENCH_SECONDS`; its CPU from /proc/PID/stat. Skipped, saying why, when it is missing
//!    (`apt-get install prometheus-blackbox-exporter`) or when `WK_BENCH_SKIP_BLACKBOX` is set.
//!
//! Environment (defaults in brackets): `WK_BENCH_LISTENERS` (64), `WK_BENCH_SECONDS` (5),
//! `WK_BENCH_IN_FLIGHT` (256), `WK_BENCH_MONITORS` (10000), `WK_BENCH_INTERVAL_S` (10),
//! `WK_BENCH_LATENESS_SECONDS` (40), `WK_BENCH_WORKERS` (tokio worker threads; all CPUs),
//! `WK_BENCH_SERVE_MONITORS` (10000), `WK_BENCH_SERVE_SECONDS` (20), `WK_BENCH_BLACKBOX_CLIENTS`
//! (32), `WK_BENCH_PARTS` (the parts to run, default `a,a',b,s,c`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use watchkeeper::probe::{self, MonitorKey, MonitorSpec, PortResult, Prober};

use common::{env_u64, raise_fd_limit};

/// The targets: checks per CPU-second of the whole serve process, and schedule lateness.
const TARGET_PER_CPU_SECOND: f64 = 20_000.0;
const TARGET_P99_MS: i64 = 50;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--listener-child") {
        let count = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(64);
        listener_child(count);
        return;
    }
    let fd_limit = raise_fd_limit();
    let workers = env_u64("WK_BENCH_WORKERS", 0) as usize;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    // On a worker thread, like serve's tasks: `block_on`'s own thread parks and wakes differently.
    runtime.block_on(async move { tokio::spawn(run(fd_limit)).await }).expect("the benchmark task");
}

async fn run(fd_limit: u64) {
    let listeners = env_u64("WK_BENCH_LISTENERS", 64) as usize;
    let seconds = env_u64("WK_BENCH_SECONDS", 5);
    let in_flight = env_u64("WK_BENCH_IN_FLIGHT", 256) as usize;
    let monitors = env_u64("WK_BENCH_MONITORS", 10_000) as usize;
    let interval_s = env_u64("WK_BENCH_INTERVAL_S", 10);
    let lateness_seconds = env_u64("WK_BENCH_LATENESS_SECONDS", 40);
    let serve_monitors = env_u64("WK_BENCH_SERVE_MONITORS", 10_000).max(1) as usize;
    let serve_seconds = env_u64("WK_BENCH_SERVE_SECONDS", 20).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!("watchkeeper probe benchmark — loopback only, {cpus} CPUs, fd limit {fd_limit}");
    let child = ListenerChild::start(listeners);
    println!("listeners: {} ports on 127.0.0.1 in a child process (pid {})", child.ports.len(), child.pid());
    println!();

    let parts = std::env::var("WK_BENCH_PARTS").unwrap_or_else(|_| "a,a',b,s,c".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let mut summary: Vec<(&str, String, String, String)> = Vec::new();
    let mut ours = None;

    if part("a") {
        let a = throughput_prober(&child.ports, in_flight, seconds, &child).await;
        println!("(a) throughput, Prober saturated (one-port monitors every 100 ms), max_in_flight {in_flight}, {:.1} s", a.wall);
        a.print();
        summary.push(("checks per CPU-second of the prober alone (a)", fmt_n(a.per_cpu()), String::new(), String::new()));
        summary.push(("… counting both ends (prober + listeners)", fmt_n(a.per_cpu_both()), String::new(), String::new()));
        println!();
    }

    if part("a'") {
        let bare = throughput_bare(&child.ports, in_flight, seconds, &child).await;
        println!("(a′) throughput, bare check() loop, {in_flight} concurrent loops, {:.1} s", bare.wall);
        bare.print();
        summary.push(("checks per CPU-second, bare check() (a′)", fmt_n(bare.per_cpu()), String::new(), String::new()));
        println!();
    }

    if part("b") {
        let b = lateness(&child.ports, monitors, Duration::from_secs(interval_s), lateness_seconds, in_flight).await;
        println!(
            "(b) schedule lateness, {monitors} monitors × 1 port, interval {interval_s} s, {:.0} s, max_in_flight {in_flight}",
            b.wall
        );
        b.print();
        let ok = b.p99 <= TARGET_P99_MS && b.errors == 0 && b.checks > 0;
        summary.push(("lateness p99 (b)", format!("{} ms", b.p99), format!("≤ {TARGET_P99_MS} ms"), verdict(ok)));
        summary.push(("CPU while scheduling (b)", format!("{:.1} % of one CPU", b.cpu_percent), String::new(), String::new()));
        println!();
    }

    if part("s") {
        println!("(s) the whole serve process, {serve_monitors} one-port monitors every second, {serve_seconds} s");
        let ports = child.ports.clone();
        let pid = child.pid();
        match tokio::task::spawn_blocking(move || serve_throughput(&ports, pid, serve_monitors, serve_seconds)).await.expect("part (s)") {
            Ok(run) => {
                run.print(serve_monitors);
                let target = format!("≥ {}", fmt_n(TARGET_PER_CPU_SECOND));
                let met = run.per_cpu() >= TARGET_PER_CPU_SECOND;
                summary.push(("checks per CPU-second of serve (s)", fmt_n(run.per_cpu()), target, verdict(met)));
                summary.push((
                    "checks per second serve made (s)",
                    fmt_n(run.checks as f64 / run.wall),
                    format!("{serve_monitors} due"),
                    String::new(),
                ));
                ours = Some(run.per_cpu());
            }
            Err(why) => {
                println!("    failed: {why}");
                summary.push(("serve (s)", "failed".into(), why, String::new()));
            }
        }
        println!();
    }

    if part("c") {
        println!("(c) blackbox_exporter on the same listeners");
        match blackbox(&child.ports, seconds).await {
            Ok(bb) => {
                bb.print();
                summary.push(("blackbox_exporter checks per CPU-second (c)", fmt_n(bb.per_cpu()), String::new(), String::new()));
                if let Some(ours) = ours {
                    let ratio = ours / bb.per_cpu();
                    println!("    serve (s) / blackbox_exporter: {ratio:.1}× the checks per CPU-second");
                    summary.push(("serve (s) / blackbox_exporter", format!("{ratio:.1}×"), String::new(), String::new()));
                }
            }
            Err(why) => {
                println!("    skipped: {why}");
                summary.push(("blackbox_exporter (c)", "skipped".into(), why, String::new()));
            }
        }
        println!();
    }

    child.stop();

    println!("summary");
    for (what, measured, target, verdict) in &summary {
        println!("  {what:<44} {measured:>18}   {target:<20} {verdict}");
    }
}

fn verdict(ok: bool) -> String {
    if ok { "ok".into() } else { "BELOW TARGET".into() }
}

fn fmt_n(n: f64) -> String {
    let n = n.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Throughput

struct Throughput {
    checks: u64,
    ok: u64,
    wall: f64,
    cpu: Cpu,
    listener_cpu: f64,
}

impl Throughput {
    fn per_cpu(&self) -> f64 {
        self.checks as f64 / self.cpu.total()
    }

    fn per_cpu_both(&self) -> f64 {
        self.checks as f64 / (self.cpu.total() + self.listener_cpu)
    }

    fn print(&self) {
        println!(
            "    checks: {} ({} ok), {} checks/s",
            fmt_n(self.checks as f64),
            fmt_n(self.ok as f64),
            fmt_n(self.checks as f64 / self.wall)
        );
        println!(
            "    prober CPU: {:.2} s user + {:.2} s sys = {:.2} CPU-s  →  {} checks per CPU-second",
            self.cpu.user,
            self.cpu.sys,
            self.cpu.total(),
            fmt_n(self.per_cpu())
        );
        println!("    listener CPU: {:.2} CPU-s; both ends: {} checks per CPU-second", self.listener_cpu, fmt_n(self.per_cpu_both()));
    }
}

async fn throughput_prober(ports: &[u16], in_flight: usize, seconds: u64, child: &ListenerChild) -> Throughput {
    let (tx, mut rx) = mpsc::channel::<Vec<PortResult>>(1024);
    let cancel = CancellationToken::new();
    let prober = Prober::start(in_flight, tx, cancel.clone());
    // Far more demand than capacity: 4 096 monitors every 100 ms is 40 960 checks/s.
    for i in 0..4096 {
        prober.upsert(spec(i, ports[i % ports.len()], Duration::from_millis(100), Duration::from_secs(5)));
    }
    let checks = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (checks, ok) = (Arc::clone(&checks), Arc::clone(&ok));
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for r in &batch {
                    checks.fetch_add(1, Ordering::Relaxed);
                    if r.outcome.ok {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    let result = measure(seconds, child, &checks, &ok).await;
    prober.shutdown().await;
    consumer.await.expect("consumer task");
    result
}

async fn throughput_bare(ports: &[u16], in_flight: usize, seconds: u64, child: &ListenerChild) -> Throughput {
    let checks = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = tokio::task::JoinSet::new();
    for i in 0..in_flight {
        let (checks, ok, stop) = (Arc::clone(&checks), Arc::clone(&ok), Arc::clone(&stop));
        let ports = ports.to_vec();
        loops.spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let outcome = probe::check("127.0.0.1", ports[n % ports.len()], Duration::from_secs(5), &[]).await;
                checks.fetch_add(1, Ordering::Relaxed);
                if outcome.ok {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    let result = measure(seconds, child, &checks, &ok).await;
    stop.store(true, Ordering::Relaxed);
    while loops.join_next().await.is_some() {}
    result
}

async fn measure(seconds: u64, child: &ListenerChild, checks: &AtomicU64, ok: &AtomicU64) -> Throughput {
    let (c0, k0, cpu0, l0) = (checks.load(Ordering::Relaxed), ok.load(Ordering::Relaxed), Cpu::now(), child.cpu_seconds());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (c1, k1, cpu1, l1) = (checks.load(Ordering::Relaxed), ok.load(Ordering::Relaxed), Cpu::now(), child.cpu_seconds());
    Throughput { checks: c1 - c0, ok: k1 - k0, wall: t0.elapsed().as_secs_f64(), cpu: cpu1.since(&cpu0), listener_cpu: l1 - l0 }
}

fn spec(i: usize, port: u16, interval: Duration, timeout: Duration) -> MonitorSpec {
    MonitorSpec {
        key: MonitorKey { project: format!("p{}", i % 100), name: format!("m-{i}") },
        host: "127.0.0.1".into(),
        ports: vec![port],
        interval,
        timeout,
        approved: Vec::new(),
        shard: 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Lateness

struct Lateness {
    checks: usize,
    errors: usize,
    p50: i64,
    p99: i64,
    max: i64,
    wall: f64,
    cpu: Cpu,
    cpu_percent: f64,
    rss_mb: f64,
}

impl Lateness {
    fn print(&self) {
        println!("    checks: {} ({} failed), {:.0} checks/s", fmt_n(self.checks as f64), self.errors, self.checks as f64 / self.wall);
        println!(
            "    lateness (at_ms − due_ms): p50 {} ms, p99 {} ms, max {} ms   (target p99 ≤ {TARGET_P99_MS} ms)",
            self.p50, self.p99, self.max
        );
        println!(
            "    CPU: {:.2} CPU-s = {:.1} % of one CPU ({} checks per CPU-second); RSS of this process {:.0} MB",
            self.cpu.total(),
            self.cpu_percent,
            fmt_n(self.checks as f64 / self.cpu.total()),
            self.rss_mb
        );
    }
}

async fn lateness(ports: &[u16], monitors: usize, interval: Duration, seconds: u64, in_flight: usize) -> Lateness {
    let (tx, mut rx) = mpsc::channel::<Vec<PortResult>>(1024);
    let prober = Prober::start(in_flight, tx, CancellationToken::new());
    let cpu0 = Cpu::now();
    let t0 = Instant::now();
    for i in 0..monitors {
        prober.upsert(spec(i, ports[i % ports.len()], interval, Duration::from_secs(5)));
    }
    let mut late = Vec::with_capacity(monitors * (seconds as usize / interval.as_secs().max(1) as usize + 2));
    let mut errors = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while let Ok(Some(batch)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        for r in batch {
            late.push(r.at_ms - r.due_ms);
            if !r.outcome.ok {
                errors += 1;
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = Cpu::now().since(&cpu0);
    let rss_mb = rss_mb();
    prober.shutdown().await;
    late.sort_unstable();
    let pct = |p: f64| if late.is_empty() { 0 } else { late[((p * late.len() as f64).ceil() as usize).clamp(1, late.len()) - 1] };
    Lateness {
        checks: late.len(),
        errors,
        p50: pct(0.50),
        p99: pct(0.99),
        max: late.last().copied().unwrap_or(0),
        wall,
        cpu_percent: cpu.total() / wall * 100.0,
        cpu,
        rss_mb,
    }
}

// ---------------------------------------------------------------------------------------------
// The whole serve process

const SERVE_TOKEN: &str = "bench-operator-token";

struct ServeRun {
    checks: u64,
    ok: u64,
    wall: f64,
    cpu: f64,
    listener_cpu: f64,
}

impl ServeRun {
    fn per_cpu(&self) -> f64 {
        self.checks as f64 / self.cpu
    }

    fn print(&self, due_per_second: usize) {
        println!(
            "    checks recorded: {} ({} ok), {} checks/s of {} due",
            fmt_n(self.checks as f64),
            fmt_n(self.ok as f64),
            fmt_n(self.checks as f64 / self.wall),
            fmt_n(due_per_second as f64)
        );
        println!(
            "    serve CPU: {:.2} CPU-s in {:.1} s ({:.0} % of one CPU)  →  {} checks per CPU-second   (target ≥ {})",
            self.cpu,
            self.wall,
            self.cpu / self.wall * 100.0,
            fmt_n(self.per_cpu()),
            fmt_n(TARGET_PER_CPU_SECOND)
        );
        println!("    listener CPU: {:.2} CPU-s", self.listener_cpu);
    }
}

/// Run the release serve on a tree of `monitors` one-port PortMonitors (every second, on `ports`
/// in turn) and measure it once the tree is applied and 5 s have passed.
fn serve_throughput(ports: &[u16], listener_pid: u32, monitors: usize, seconds: u64) -> Result<ServeRun, String> {
    let tmp = tempfile::Builder::new().prefix("wk-bench-probe-").tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).map_err(|e| format!("tree directory: {e}"))?;
    let mut yaml = String::from(
        "kind: User\nemail: ops@example.com\nname: Ops\n---\nkind: Project\nname: bench\nmembers: [{ user: ops@example.com, role: admin }]\n",
    );
    for i in 0..monitors {
        yaml.push_str(&format!(
            "---\nkind: PortMonitor\nname: m-{i:05}\nproject: bench\nhost: 127.0.0.1\nports: [{}]\ninterval: 1s\ntimeout: 900ms\n",
            ports[i % ports.len()]
        ));
    }
    std::fs::write(tree.join("monitors.yaml"), yaml).map_err(|e| format!("writing the tree: {e}"))?;
    let loaded = watchkeeper::config::load_dir(&tree, &watchkeeper::config::Library::Builtin);
    if loaded.has_errors() {
        return Err(format!("the generated tree does not lint clean: {:?}", loaded.diagnostics.first()));
    }
    let bin = common::release_binary();
    let db = format!("sqlite://{}", tmp.path().join("wk.db").display());
    let args: Vec<String> = ["--config", &tree.display().to_string(), "--rescan", "10m", "--db", &db].map(String::from).to_vec();
    let mut serve = common::Serve::start(&bin, &args, SERVE_TOKEN, &tmp.path().join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(120), || serve.applied().is_some());
    std::thread::sleep(Duration::from_secs(5)); // every monitor has run a few times
    let pid = serve.pid();
    let sample = || -> Result<((u64, u64), f64, f64), String> {
        let counted = probes_counted(serve.port)?;
        let cpu = proc_cpu_seconds(pid).ok_or("cannot read serve's /proc stat")?;
        Ok((counted, cpu, proc_cpu_seconds(listener_pid).unwrap_or(f64::NAN)))
    };
    let ((c0, k0), cpu0, l0) = sample()?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let ((c1, k1), cpu1, l1) = sample()?;
    let wall = t0.elapsed().as_secs_f64();
    serve.terminate();
    Ok(ServeRun { checks: c1 - c0, ok: k1 - k0, wall, cpu: cpu1 - cpu0, listener_cpu: l1 - l0 })
}

/// Checks serve recorded so far, and how many of them were good: the sum of
/// `watchkeeper_probes_total` in its `/metrics`.
fn probes_counted(port: u16) -> Result<(u64, u64), String> {
    let (status, text) = common::http_get(port, "/metrics", None).map_err(|e| format!("GET /metrics: {e}"))?;
    if status != 200 {
        return Err(format!("GET /metrics answered {status}"));
    }
    let (mut all, mut ok) = (0, 0);
    for line in text.lines().filter(|l| l.starts_with("watchkeeper_probes_total{")) {
        let n: u64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).ok_or_else(|| format!("unreadable sample: {line}"))?;
        all += n;
        if line.contains("result=\"ok\"") {
            ok += n;
        }
    }
    Ok((all, ok))
}

// ---------------------------------------------------------------------------------------------
// blackbox_exporter

struct Blackbox {
    probes: u64,
    ok: u64,
    wall: f64,
    cpu: f64,
}

impl Blackbox {
    fn per_cpu(&self) -> f64 {
        self.probes as f64 / self.cpu
    }

    fn print(&self) {
        println!(
            "    probes: {} ({} with probe_success 1), {} probes/s",
            fmt_n(self.probes as f64),
            fmt_n(self.ok as f64),
            fmt_n(self.probes as f64 / self.wall)
        );
        println!("    blackbox_exporter CPU: {:.2} CPU-s  →  {} checks per CPU-second", self.cpu, fmt_n(self.per_cpu()));
    }
}

fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
}

async fn blackbox(ports: &[u16], seconds: u64) -> Result<Blackbox, String> {
    if std::env::var_os("WK_BENCH_SKIP_BLACKBOX").is_some() {
        return Err("WK_BENCH_SKIP_BLACKBOX is set".into());
    }
    let binary = match std::env::var_os("WK_BENCH_BLACKBOX") {
        Some(path) => std::path::PathBuf::from(path),
        None => find_on_path("prometheus-blackbox-exporter")
            .or_else(|| find_on_path("blackbox_exporter"))
            .ok_or("prometheus-blackbox-exporter is not installed (apt-get install prometheus-blackbox-exporter)")?,
    };
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let config = dir.path().join("blackbox.yml");
    std::fs::write(&config, "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n")
        .map_err(|e| format!("writing {}: {e}", config.display()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let mut exporter = Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = exporter.id();
    let result = drive_blackbox(port, pid, ports, seconds).await;
    let _ = exporter.kill();
    let _ = exporter.wait();
    result
}

async fn drive_blackbox(port: u16, pid: u32, ports: &[u16], seconds: u64) -> Result<Blackbox, String> {
    // reqwest is built without a default crypto provider; plain HTTP needs none, the builder does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| format!("HTTP client: {e}"))?;
    let base = format!("http://127.0.0.1:{port}");
    let ready = async {
        loop {
            if client.get(format!("{base}/metrics")).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), ready).await.map_err(|_| "blackbox_exporter did not answer within 10 s".to_string())?;

    let probes = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = env_u64("WK_BENCH_BLACKBOX_CLIENTS", 32) as usize;
    let mut loops = tokio::task::JoinSet::new();
    for i in 0..clients {
        let (client, base, ports) = (client.clone(), base.clone(), ports.to_vec());
        let (probes, ok, failed, stop) = (Arc::clone(&probes), Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&stop));
        loops.spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{base}/probe?module=tcp_connect&target=127.0.0.1:{}", ports[n % ports.len()]);
                n += 1;
                match client.get(&url).send().await {
                    Ok(response) => match response.text().await {
                        Ok(body) => {
                            probes.fetch_add(1, Ordering::Relaxed);
                            if body.lines().any(|l| l == "probe_success 1") {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    let (p0, k0, cpu0) = (probes.load(Ordering::Relaxed), ok.load(Ordering::Relaxed), proc_cpu_seconds(pid));
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (p1, k1, cpu1) = (probes.load(Ordering::Relaxed), ok.load(Ordering::Relaxed), proc_cpu_seconds(pid));
    let wall = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    while loops.join_next().await.is_some() {}
    let (cpu0, cpu1) = (cpu0.ok_or("cannot read the exporter's /proc stat")?, cpu1.ok_or("cannot read the exporter's /proc stat")?);
    if p1 == p0 {
        return Err(format!("no probe answered ({} HTTP errors)", failed.load(Ordering::Relaxed)));
    }
    Ok(Blackbox { probes: p1 - p0, ok: k1 - k0, wall, cpu: cpu1 - cpu0 })
}

// ---------------------------------------------------------------------------------------------
// The listener child process

struct ListenerChild {
    child: Child,
    ports: Vec<u16>,
}

impl ListenerChild {
    fn start(count: usize) -> ListenerChild {
        let exe = std::env::current_exe().expect("path of this benchmark binary");
        let mut child = Command::new(exe)
            .args(["--listener-child", &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the listener child process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("read the listener ports");
        let ports: Vec<u16> = line.split_whitespace().map(|p| p.parse().expect("a port number")).collect();
        assert_eq!(ports.len(), count, "the listener child printed {line:?}");
        ListenerChild { child, ports }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(self.child.id()).unwrap_or(f64::NAN)
    }

    fn stop(mut self) {
        drop(self.child.stdin.take()); // the child exits when its stdin closes
        let _ = self.child.wait();
    }
}

/// The child: `count` listeners on 127.0.0.1 that accept and close every connection, on one
/// thread; prints the ports on one line; exits when stdin closes.
fn listener_child(count: usize) {
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let mut ports = Vec::new();
        for _ in 0..count {
            let socket = TcpSocket::new_v4().expect("socket");
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("bind 127.0.0.1:0");
            let listener = socket.listen(4096).expect("listen");
            ports.push(listener.local_addr().expect("local address").port());
            tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => drop(stream),
                        // Out of descriptors or a connection reset before accept: carry on.
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
            });
        }
        let line: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{}", line.join(" ")).expect("print ports");
        stdout.flush().expect("flush ports");
        // Exit when the parent closes our stdin (or dies).
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await;
    });
}

// ---------------------------------------------------------------------------------------------
// CPU and memory accounting

#[derive(Debug, Clone, Copy)]
struct Cpu {
    user: f64,
    sys: f64,
}

impl Cpu {
    /// This process's CPU time so far (all threads).
    fn now() -> Cpu {
        // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Cpu { user: secs(usage.ru_utime), sys: secs(usage.ru_stime) }
    }

    fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu { user: self.user - earlier.user, sys: self.sys - earlier.sys }
    }

    fn total(&self) -> f64 {
        self.user + self.sys
    }
}

/// utime + stime of another process, from /proc/PID/stat.
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    common::cpu_time(pid).map(|d| d.as_secs_f64())
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
