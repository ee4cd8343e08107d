//! Benchmark: the prober on loopback against its target (README, "Performance targets") — at least 13 000 TCP checks per CPU-second
//! of the probing process, and schedule lateness p99 ≤ 50 ms at 10 000 monitors — with Debian's
//! blackbox_exporter measured on the same listeners for comparison.
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
//! 4. (c) blackbox_exporter (`prometheus-blackbox-exporter` on PATH, or `WK_BENCH_BLACKBOX`):
//!    `/probe?module=tcp_connect&target=127.0.0.1:PORT` driven by concurrent HTTP clients for
//!    `WK_BENCH_SECONDS`; its CPU from /proc/PID/stat. Skipped, saying why, when it is missing
//!    (`apt-get install prometheus-blackbox-exporter`) or when `WK_BENCH_SKIP_BLACKBOX` is set.
//!
//! Environment (defaults in brackets): `WK_BENCH_LISTENERS` (64), `WK_BENCH_SECONDS` (5),
//! `WK_BENCH_IN_FLIGHT` (256), `WK_BENCH_MONITORS` (10000), `WK_BENCH_INTERVAL_S` (10),
//! `WK_BENCH_LATENESS_SECONDS` (40), `WK_BENCH_WORKERS` (tokio worker threads; all CPUs),
//! `WK_BENCH_BLACKBOX_CLIENTS` (32), `WK_BENCH_PARTS` (the parts to run, default `a,a',b,c`).

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

/// The targets for probing.
const TARGET_PER_CPU_SECOND: f64 = 13_000.0;
const TARGET_P99_MS: i64 = 50;
/// Reference figures from SPEC §5 for this 2-core machine.
const SPEC_BLACKBOX_PER_CPU_SECOND: f64 = 2_600.0;
const SPEC_C_LOOP_PER_CPU_SECOND: f64 = 22_000.0;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().replace('_', "").parse().unwrap_or_else(|_| panic!("{name}={v}: not a whole number")),
        Err(_) => default,
    }
}

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
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!("watchkeeper probe benchmark — loopback only, {cpus} CPUs, fd limit {fd_limit}");
    let child = ListenerChild::start(listeners);
    println!("listeners: {} ports on 127.0.0.1 in a child process (pid {})", child.ports.len(), child.pid());
    println!();

    let parts = std::env::var("WK_BENCH_PARTS").unwrap_or_else(|_| "a,a',b,c".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let mut summary: Vec<(&str, String, String, String)> = Vec::new();
    let mut ours = None;

    if part("a") {
        let a = throughput_prober(&child.ports, in_flight, seconds, &child).await;
        println!("(a) throughput, Prober saturated (one-port monitors every 100 ms), max_in_flight {in_flight}, {:.1} s", a.wall);
        a.print();
        let target = format!("≥ {}", fmt_n(TARGET_PER_CPU_SECOND));
        summary.push((
            "checks per CPU-second of the prober (a)",
            fmt_n(a.per_cpu()),
            target,
            verdict(a.per_cpu() >= TARGET_PER_CPU_SECOND),
        ));
        let c_loop = format!("C loop ≈ {}", fmt_n(SPEC_C_LOOP_PER_CPU_SECOND));
        summary.push(("… counting both ends (prober + listeners)", fmt_n(a.per_cpu_both()), c_loop, String::new()));
        ours = Some(a.per_cpu());
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

    if part("c") {
        println!("(c) blackbox_exporter on the same listeners");
        match blackbox(&child.ports, seconds).await {
            Ok(bb) => {
                bb.print();
                let spec = format!("SPEC ≈ {}", fmt_n(SPEC_BLACKBOX_PER_CPU_SECOND));
                summary.push(("blackbox_exporter checks per CPU-second (c)", fmt_n(bb.per_cpu()), spec, String::new()));
                if let Some(ours) = ours {
                    let ratio = ours / bb.per_cpu();
                    println!("    ours (a) / blackbox: {ratio:.1}×");
                    summary.push(("ours (a) / blackbox_exporter", format!("{ratio:.1}×"), String::new(), String::new()));
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
            "    prober CPU: {:.2} s user + {:.2} s sys = {:.2} CPU-s  →  {} checks per CPU-second   (target ≥ {})",
            self.cpu.user,
            self.cpu.sys,
            self.cpu.total(),
            fmt_n(self.per_cpu()),
            fmt_n(TARGET_PER_CPU_SECOND)
        );
        println!(
            "    listener CPU: {:.2} CPU-s; both ends: {} checks per CPU-second   (bare C connect loop ≈ {})",
            self.listener_cpu,
            fmt_n(self.per_cpu_both()),
            fmt_n(SPEC_C_LOOP_PER_CPU_SECOND)
        );
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
        println!(
            "    blackbox_exporter CPU: {:.2} CPU-s  →  {} checks per CPU-second   (SPEC ≈ {})",
            self.cpu,
            fmt_n(self.per_cpu()),
            fmt_n(SPEC_BLACKBOX_PER_CPU_SECOND)
        );
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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3, `state`.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the limit in force.
fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur
    }
}
