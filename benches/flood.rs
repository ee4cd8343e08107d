//! Benchmark: `watchkeeper serve` under a connection flood from one address while its port
//! monitors run — /healthz latency for another client, probe false failures (must be 0),
//! connections refused, and serve's memory before, during and after.
//!
//! Run with `cargo bench --bench flood`. It prints figures and asserts nothing.
//!
//! Steps:
//! 1. open `WK_BENCH_PORTS` (16, the most one monitor checks) TCP listeners on 127.0.0.1 (threads here accept and drop every
//!    connection); a tree with one project (an ingest key, 50 servers) and one PortMonitor
//!    checking all of those ports every second;
//! 2. the release `watchkeeper serve` on a fresh SQLite file, with its default caps and timeouts;
//!    wait until the tree is applied and the ports have been checked;
//! 3. the flood, for `WK_BENCH_SECONDS` (30), all from 127.0.0.1, in child processes (this
//!    program run again: one process cannot hold 21 000 sockets under a 20 000 open-files
//!    limit): `WK_BENCH_IDLE` (20 000) idle connections that send nothing and `WK_BENCH_SLOW`
//!    (1 000) slow ones — half trickle a request head, half a POST body to ingest with the valid
//!    key, a byte a second. Whatever serve closes is opened again every `WK_BENCH_REOPEN_MS`
//!    (5 000), so the flood is held, not sent once. Meanwhile, from 127.0.0.2 (another client):
//!    GET /healthz every 50 ms, and `WK_BENCH_INGESTERS` (4) clients POST valid agent reports
//!    back to back;
//! 4. after the flood, wait 10 s and read serve's /metrics.
//!
//! Printed: /healthz p50/p99/max (and failures) during the flood, the checks of the open ports
//! by result (anything but `ok` is a false failure) and the prober's own errors, connections
//! refused by cap and closed by timeout, ingest reports accepted, and serve's resident memory
//! before, at its highest during, and after the flood. Environment: as above, plus `WK_BENCH_BIN`
//! (a prebuilt `watchkeeper`) and `WK_BENCH_SERVE_ARGS` (more serve flags, e.g.
//! `--max-connections 30000 --max-connections-per-client 30000` to see serve without the caps).

mod common;

use std::fmt::Write as _;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Listener, Serve, env_u64, ms, rss_kib};

const TOKEN: &str = "bench-operator-token";
const KEY: &str = "bench-flood-ingest-key";
const SERVERS: usize = 50;
/// Where the flood comes from, and where everyone else does.
const FLOODER: Ipv4Addr = Ipv4Addr::LOCALHOST;
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn main() {
    common::raise_fd_limit();
    if let Ok(role) = std::env::var("WK_FLOOD_ROLE") {
        return flood_child(&role);
    }
    let ports_n = env_u64("WK_BENCH_PORTS", 16).min(16) as usize;
    let seconds = env_u64("WK_BENCH_SECONDS", 30);
    let idle = env_u64("WK_BENCH_IDLE", 20_000);
    let slow = env_u64("WK_BENCH_SLOW", 1_000);
    let ingesters = env_u64("WK_BENCH_INGESTERS", 4) as usize;
    let bin = common::release_binary();

    let listeners: Vec<Listener> = (0..ports_n).map(|_| Listener::open(0)).collect();
    let ports: Vec<u16> = listeners.iter().map(|l| l.port).collect();
    let tmp = tempfile::Builder::new().prefix("wk-bench-flood-").tempdir().expect("temporary directory");
    write_tree(&tmp.path().join("tree"), &ports);
    let mut args = vec![
        "--config".to_string(),
        tmp.path().join("tree").display().to_string(),
        "--db".to_string(),
        format!("sqlite://{}", tmp.path().join("wk.db").display()),
    ];
    let extra = std::env::var("WK_BENCH_SERVE_ARGS").unwrap_or_default();
    args.extend(extra.split_whitespace().map(str::to_string));
    let serve = Serve::start(&bin, &args, TOKEN, &tmp.path().join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(60), || serve.applied().is_some());
    serve.wait_until("the ports are checked", Duration::from_secs(60), || probe_results(serve.port).0 >= 3 * ports_n as u64);
    thread::sleep(Duration::from_secs(3));
    let before = rss_kib(serve.pid()).map_or(0, |(rss, _)| rss);
    let (ok_before, bad_before) = probe_results(serve.port);
    println!(
        "serve: {ports_n} open ports checked every 1 s, caps and timeouts {}; flood from {FLOODER} for {seconds} s: {idle} idle + {slow} slow connections",
        if extra.trim().is_empty() {
            "by default (1 024 connections, 128 per address)".to_string()
        } else {
            format!("by default but for `{}`", extra.trim())
        }
    );

    // 3. The flood, and another client's requests and serve's memory while it lasts.
    let stop = Arc::new(AtomicBool::new(false));
    let mut children = Vec::new();
    let per_child = 9_000;
    let mut left = idle;
    while left > 0 {
        children.push(spawn_flood("idle", left.min(per_child), serve.port, seconds));
        left = left.saturating_sub(per_child);
    }
    if slow > 0 {
        children.push(spawn_flood("slow", slow, serve.port, seconds));
    }
    let started = Instant::now();
    let health = {
        let stop = Arc::clone(&stop);
        let port = serve.port;
        thread::spawn(move || {
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            while !stop.load(Ordering::SeqCst) {
                let sent = Instant::now();
                match request(CLIENT, port, "GET", "/healthz", "") {
                    Some((200, _)) => latencies.push(sent.elapsed()),
                    _ => failures += 1,
                }
                thread::sleep(Duration::from_millis(50));
            }
            (latencies, failures)
        })
    };
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let ingest: Vec<_> = (0..ingesters)
        .map(|i| {
            let (stop, accepted, rejected, port) = (Arc::clone(&stop), Arc::clone(&accepted), Arc::clone(&rejected), serve.port);
            thread::spawn(move || {
                let mut n = i;
                while !stop.load(Ordering::SeqCst) {
                    match request(CLIENT, port, "POST", "/ingest/v1/report", &report(n % SERVERS)) {
                        Some((200, _)) => accepted.fetch_add(1, Ordering::Relaxed),
                        _ => rejected.fetch_add(1, Ordering::Relaxed),
                    };
                    n += ingesters;
                }
            })
        })
        .collect();
    let mut peak = before;
    while started.elapsed() < Duration::from_secs(seconds) {
        peak = peak.max(rss_kib(serve.pid()).map_or(0, |(rss, _)| rss));
        thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::SeqCst);
    let (mut latencies, health_failures) = health.join().expect("healthz thread");
    for t in ingest {
        t.join().expect("ingest thread");
    }
    let mut flood = String::new();
    for child in children {
        let output = child.wait_with_output().expect("flood child");
        flood.push_str(String::from_utf8_lossy(&output.stdout).trim());
        flood.push_str("; ");
    }

    // 4. After.
    thread::sleep(Duration::from_secs(10));
    let after = rss_kib(serve.pid()).map_or(0, |(rss, _)| rss);
    let metrics = metrics(serve.port);
    let (ok_after, bad_after) = probe_results(serve.port);
    latencies.sort();
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
    println!("flood: {flood}");
    println!(
        "/healthz from {CLIENT} during the flood: {} answered, {health_failures} failed; p50 {} p99 {} max {}",
        latencies.len(),
        ms(pct(0.5)),
        ms(pct(0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "checks of the open ports during the flood: {} ok, {} false failures (must be 0); prober errors: {}",
        ok_after - ok_before,
        bad_after.saturating_sub(bad_before),
        sum(&metrics, "watchkeeper_prober_errors_total")
    );
    println!(
        "connections refused: {} over the per-address cap, {} over the total cap; closed by timeout: {} header, {} body, {} idle; accept errors: {}",
        sum(&metrics, r#"watchkeeper_http_connections_refused_total{limit="per_client"}"#),
        sum(&metrics, r#"watchkeeper_http_connections_refused_total{limit="total"}"#),
        sum(&metrics, r#"watchkeeper_http_timeouts_total{timeout="header"}"#),
        sum(&metrics, r#"watchkeeper_http_timeouts_total{timeout="body"}"#),
        sum(&metrics, r#"watchkeeper_http_timeouts_total{timeout="idle"}"#),
        sum(&metrics, "watchkeeper_http_accept_errors_total"),
    );
    println!(
        "ingest from {CLIENT}: {} reports accepted, {} requests not ({:.0} reports/s)",
        accepted.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed) as f64 / seconds as f64
    );
    println!("serve resident memory: before {:.1} MB, peak during {:.1} MB, 10 s after {:.1} MB", mb(before), mb(peak), mb(after));
    drop(serve);
    drop(listeners);
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Run this program again as a flood of `n` connections of `role` (`idle`, `slow`).
fn spawn_flood(role: &str, n: u64, port: u16, seconds: u64) -> std::process::Child {
    Command::new(std::env::current_exe().expect("this benchmark's path"))
        .env("WK_FLOOD_ROLE", role)
        .env("WK_FLOOD_COUNT", n.to_string())
        .env("WK_FLOOD_PORT", port.to_string())
        .env("WK_FLOOD_SECONDS", seconds.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a flood process")
}

/// A flood process: hold `WK_FLOOD_COUNT` connections from 127.0.0.1 for `WK_FLOOD_SECONDS`,
/// opening again every `WK_BENCH_REOPEN_MS` what serve closed; print what happened.
fn flood_child(role: &str) {
    let n = env_u64("WK_FLOOD_COUNT", 0) as usize;
    let port = env_u64("WK_FLOOD_PORT", 0) as u16;
    let seconds = env_u64("WK_FLOOD_SECONDS", 30);
    let reopen = Duration::from_millis(env_u64("WK_BENCH_REOPEN_MS", 5_000));
    let slow = role == "slow";
    let started = Instant::now();
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let (mut opened, mut closed, mut most_open, mut last_open) = (0u64, 0u64, 0usize, Instant::now() - reopen);
    while started.elapsed() < Duration::from_secs(seconds) {
        if last_open.elapsed() >= reopen {
            last_open = Instant::now();
            for (i, slot) in conns.iter_mut().enumerate().filter(|(_, s)| s.is_none()) {
                if started.elapsed() >= Duration::from_secs(seconds) {
                    break;
                }
                if let Ok(mut stream) = TcpStream::connect((FLOODER, port)) {
                    opened += 1;
                    let head = match (slow, i % 2) {
                        (false, _) => String::new(),
                        (true, 0) => "GET /healthz HTTP/1.1\r\n".to_string(),
                        (true, _) => format!(
                            "POST /ingest/v1/report HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
                        ),
                    };
                    if stream.write_all(head.as_bytes()).is_ok() && stream.set_nonblocking(true).is_ok() {
                        *slot = Some(stream);
                    }
                }
            }
        }
        // Once a second: a byte from each slow one; drop what serve closed.
        for (i, slot) in conns.iter_mut().enumerate() {
            let Some(stream) = slot else { continue };
            let mut buf = [0u8; 1024];
            let gone = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            let gone = gone || (slow && stream.write_all(if i % 2 == 0 { b"X" } else { b" " }).is_err());
            if gone {
                *slot = None;
                closed += 1;
            }
        }
        let open = conns.iter().filter(|s| s.is_some()).count();
        most_open = most_open.max(open);
        thread::sleep(Duration::from_secs(1));
    }
    println!("{role}: {n} held, {opened} opened in all, {closed} closed by serve, at most {most_open} open at once");
}

/// One request from `from` on a fresh connection: the status and the body, or `None` when the
/// connection failed.
fn request(from: Ipv4Addr, port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::from((from, 0)).into()).ok()?;
    socket.connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into()).ok()?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let auth = if method == "POST" { format!("Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n") } else { String::new() };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).to_string();
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_string()))
}

fn metrics(port: u16) -> String {
    request(CLIENT, port, "GET", "/metrics", "").map(|(_, body)| body).unwrap_or_default()
}

/// The sum of the samples whose name and labels start with `prefix`.
fn sum(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

/// Checks of the `ports` monitor: (ok, anything else).
fn probe_results(port: u16) -> (u64, u64) {
    let metrics = metrics(port);
    let ok = sum(&metrics, r#"watchkeeper_probes_total{project="shop",monitor="ports",result="ok"}"#);
    (ok, sum(&metrics, r#"watchkeeper_probes_total{project="shop",monitor="ports""#) - ok)
}

/// One agent report for server `i`: a few host metrics and processes.
fn report(i: usize) -> String {
    let now = watchkeeper::clock::now_ms();
    serde_json::json!({
        "project": "shop",
        "server": format!("srv-{i:03}"),
        "reports": [{
            "facts": { "os": "Debian GNU/Linux 12", "kernel": "6.1.0", "cpu_vendor": "GenuineIntel", "cpu_model": "Xeon", "cpu_count": 8,
                       "ram_total_bytes": 16_000_000_000u64, "boot_time": 1_700_000_000u64, "uptime_secs": 1000, "ips": ["10.0.0.1"] },
            "metrics": [
                { "name": "cpu.usage", "value": (i % 90) as f64 + 0.5 },
                { "name": "memory.usage", "value": 40.0 },
                { "name": "load.1", "value": 0.5 },
                { "name": "disk.usage", "subject": "/", "value": 42.0 },
                { "name": "network.in_bps", "subject": "eth0", "value": 1_000_000.0 },
            ],
            "processes": [{ "pid": 1000, "name": "nginx", "user": "www-data", "cpu": 1.5, "memory": 0.4, "rss_bytes": 4_000_000 }],
            "process_counts": { "nginx": 4 },
            "at_ms": now,
        }],
    })
    .to_string()
}

fn write_tree(dir: &Path, ports: &[u16]) {
    fs::create_dir_all(dir).unwrap();
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut text = format!(
        "kind: User\nemail: ops@example.com\nname: Ops\ntoken_sha256: {}\n---\n\
         kind: Project\nname: shop\nmembers: [{{ user: ops@example.com, role: admin }}]\ningest_key_sha256: {}\n---\n\
         kind: PortMonitor\nname: ports\nproject: shop\nhost: 127.0.0.1\nports: [{}]\ninterval: 1s\ntimeout: 900ms\nfailures: 1\n",
        watchkeeper::token::sha256_hex(TOKEN),
        watchkeeper::token::sha256_hex(KEY),
        ports.join(", ")
    );
    for i in 0..SERVERS {
        let _ = write!(text, "---\nkind: Server\nname: srv-{i:03}\nproject: shop\nhost: 127.0.0.1\n");
    }
    fs::write(dir.join("tree.yaml"), text).unwrap();
}
