//! Benchmark: agent reports ingested by a real `watchkeeper serve`, against its target (README, "Performance targets") — ≥ 2 000
//! reports/s of 100 metrics on SQLite; the same measured on PostgreSQL.
//!
//! Run with `cargo bench --bench ingest`. It prints figures and asserts nothing about time.
//!
//! Steps, per backend:
//! 1. a tree with one project (ingest key) and `WK_BENCH_SERVERS` (1 000) servers using the
//!    built-in `linux-default` policy, so the alert engine evaluates every report as it would;
//! 2. the release binary serving it, on a fresh SQLite file or a fresh PostgreSQL database
//!    (server from `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`; the bench
//!    creates and drops `wk_bench_ingest_<pid>`);
//! 3. `WK_BENCH_CONNECTIONS` (64) clients in this process POST for `WK_BENCH_SECONDS` (10) s,
//!    each request one report (an agent's steady state) of exactly 100 metric values and 30
//!    processes, round-robin over the servers; then again with 20 reports per request (an
//!    agent catching up on its backlog). Only 200 answers count.
//!
//! 4. on PostgreSQL, 1, 2 and 3 serve replicas on the one database (`WK_BENCH_REPLICAS`, default
//!    3), each with its own listener, the clients spread over them (client i posts to replica
//!    i mod n), one report per request; printed beside SQLite's single-serve figure.
//!
//! Printed: reports/s, request latency p50/p99, and serve's CPU time per 1 000 reports. The
//! load generator runs on the same two cores, so the figure is a floor.

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use common::{Serve, cpu_time, env_u64, verdict};

const TARGET_REPORTS_PER_S: f64 = 2_000.0;
const KEY: &str = "bench-ingest-key";
const TOKEN: &str = "bench-operator-token";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin = common::release_binary();
    let servers = env_u64("WK_BENCH_SERVERS", 1_000) as usize;
    let tmp = tempfile::tempdir().expect("temp dir");
    let tree = tmp.path().join("tree");
    write_tree(&tree, servers);
    println!("ingest: {servers} servers, 100 metrics and 30 processes per report");

    let sqlite = format!("sqlite://{}", tmp.path().join("wk.db").display());
    let sqlite_rate = bench_backend(&bin, &tree, &sqlite, "SQLite", servers, tmp.path()).await;

    let replicas = env_u64("WK_BENCH_REPLICAS", 3) as usize;
    common::on_throwaway_postgres("ingest", |url| async move {
        bench_backend(&bin, &tree, &url, "PostgreSQL", servers, tmp.path()).await;
        println!("\nPostgreSQL replicas sharing the load, 1 report/request (SQLite, one serve: {sqlite_rate:.0} reports/s):");
        for n in 1..=replicas {
            bench_replicas(&bin, &tree, &url, n, servers, tmp.path()).await;
        }
    })
    .await;
}

/// `n` serves on the PostgreSQL at `db`, the clients spread over them, one report per request.
async fn bench_replicas(bin: &Path, tree: &Path, db: &str, n: usize, servers: usize, tmp: &Path) {
    let serves: Vec<Serve> = (0..n)
        .map(|i| {
            let args = vec!["--config".to_string(), tree.display().to_string(), "--db".to_string(), db.to_string()];
            Serve::start(bin, &args, TOKEN, &tmp.join(format!("serve-replica-{n}-{i}.log")))
        })
        .collect();
    // The status shows the database's applied revision, which an earlier serve wrote: wait
    // until each replica takes a report itself.
    let client = reqwest::Client::new();
    for serve in &serves {
        let url = format!("http://127.0.0.1:{}/ingest/v1/report", serve.port);
        let started = Instant::now();
        while !client.post(&url).bearer_auth(KEY).body(body(0, 1)).send().await.is_ok_and(|r| r.status() == 200) {
            assert!(started.elapsed() < Duration::from_secs(60), "replica {} took no report within 60 s", serve.log.display());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let seconds = env_u64("WK_BENCH_SECONDS", 10);
    let connections = env_u64("WK_BENCH_CONNECTIONS", 64) as usize;
    let ports: Vec<u16> = serves.iter().map(|s| s.port).collect();
    let before: Vec<Duration> = serves.iter().map(|s| cpu_time(s.pid()).unwrap_or_default()).collect();
    let run = load(&ports, servers, connections, 1, Duration::from_secs(seconds)).await;
    let cpu: Duration = serves.iter().zip(&before).map(|(s, b)| cpu_time(s.pid()).unwrap_or_default().saturating_sub(*b)).sum();
    let rate = run.reports as f64 / run.elapsed.as_secs_f64();
    println!(
        "PostgreSQL, {n} replica(s): {rate:>7.0} reports/s ({} requests, {} refused), latency p50 {:.1} ms p99 {:.1} ms, serve CPU {:.0} ms per 1 000 reports (all replicas) [target ≥ {TARGET_REPORTS_PER_S:.0}: {}]",
        run.requests,
        run.refused,
        run.p50_ms,
        run.p99_ms,
        cpu.as_secs_f64() * 1e6 / run.reports.max(1) as f64,
        verdict(rate >= TARGET_REPORTS_PER_S),
    );
}

/// Both runs (1 and 20 reports per request) on one serve; returns the rate of the first.
async fn bench_backend(bin: &Path, tree: &Path, db: &str, label: &str, servers: usize, tmp: &Path) -> f64 {
    let args = vec!["--config".to_string(), tree.display().to_string(), "--db".to_string(), db.to_string()];
    let serve = Serve::start(bin, &args, TOKEN, &tmp.join(format!("serve-{label}.log")));
    serve.wait_until("the tree is applied", Duration::from_secs(60), || serve.applied().is_some());
    let seconds = env_u64("WK_BENCH_SECONDS", 10);
    let connections = env_u64("WK_BENCH_CONNECTIONS", 64) as usize;
    let mut single = 0.0;
    for per_request in [1usize, 20] {
        let before = cpu_time(serve.pid()).unwrap_or_default();
        let run = load(&[serve.port], servers, connections, per_request, Duration::from_secs(seconds)).await;
        let cpu = cpu_time(serve.pid()).unwrap_or_default().saturating_sub(before);
        let rate = run.reports as f64 / run.elapsed.as_secs_f64();
        println!(
            "{label:<10} {per_request:>2} report(s)/request: {rate:>7.0} reports/s ({} requests, {} refused), latency p50 {:.1} ms p99 {:.1} ms, serve CPU {:.0} ms per 1 000 reports{}",
            run.requests,
            run.refused,
            run.p50_ms,
            run.p99_ms,
            cpu.as_secs_f64() * 1e6 / run.reports.max(1) as f64,
            if per_request == 1 {
                format!(" [target ≥ {TARGET_REPORTS_PER_S:.0}: {}]", verdict(rate >= TARGET_REPORTS_PER_S))
            } else {
                String::new()
            }
        );
        if per_request == 1 {
            single = rate;
        }
    }
    drop(serve);
    single
}

struct Run {
    reports: u64,
    requests: u64,
    refused: u64,
    elapsed: Duration,
    p50_ms: f64,
    p99_ms: f64,
}

/// `connections` clients posting to `ports` (client i to `ports[i % len]`) for `duration`.
async fn load(ports: &[u16], servers: usize, connections: usize, per_request: usize, duration: Duration) -> Run {
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build().expect("HTTP client");
    let reports = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let url = format!("http://127.0.0.1:{}/ingest/v1/report", ports[c % ports.len()]);
        let (client, reports, refused, next) = (client.clone(), reports.clone(), refused.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let body = body(n % servers, per_request);
                let sent = Instant::now();
                let answer = client.post(&url).bearer_auth(KEY).header("content-type", "application/json").body(body).send().await;
                latencies.push(sent.elapsed());
                match answer {
                    Ok(r) if r.status() == 200 => {
                        reports.fetch_add(per_request as u64, Ordering::Relaxed);
                    }
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Run {
        reports: reports.load(Ordering::Relaxed),
        requests: latencies.len() as u64,
        refused: refused.load(Ordering::Relaxed),
        elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

/// One request of `count` reports for server `i`: 100 metric values each, as an agent on a
/// machine with 4 mounts, 3 disks and 7 interfaces sends them, and 30 processes.
fn body(i: usize, count: usize) -> String {
    let now = watchkeeper::clock::now_ms();
    let mut metrics = Vec::with_capacity(100);
    let host = [
        "cpu.usage",
        "cpu.iowait",
        "cpu.steal",
        "cpu.irq",
        "cpu.softirq",
        "cpu.idle",
        "cpu.user",
        "cpu.system",
        "cpu.nice",
        "load.1",
        "load.5",
        "load.15",
        "memory.usage",
        "memory.available",
        "memory.free",
        "swap.usage",
        "memory.page_faults",
    ];
    for (k, name) in host.iter().enumerate() {
        metrics.push(json!({ "name": name, "value": (i + k) as f64 % 90.0 + 0.5 }));
    }
    for mount in ["/", "/var", "/home", "/data"] {
        for name in ["disk.usage", "disk.used_bytes", "disk.free_bytes"] {
            metrics.push(json!({ "name": name, "subject": mount, "value": 42.0 }));
        }
    }
    for dev in ["sda", "sdb", "nvme0n1"] {
        for name in ["disk.io", "disk.iops", "disk.read_bps", "disk.write_bps", "disk.queue"] {
            metrics.push(json!({ "name": name, "subject": dev, "value": 3.0 }));
        }
    }
    for iface in ["eth0", "eth1", "eth2", "eth3", "bond0", "docker0", "wg0"] {
        for name in [
            "network.in_bps",
            "network.out_bps",
            "network.in_pps",
            "network.out_pps",
            "network.in_errors",
            "network.out_errors",
            "network.in_drops",
            "network.out_drops",
        ] {
            metrics.push(json!({ "name": name, "subject": iface, "value": 1_000_000.0 }));
        }
    }
    assert_eq!(metrics.len(), 100);
    let processes: Vec<_> = (0..30)
        .map(|p| json!({ "pid": 1000 + p, "name": format!("proc-{p}"), "user": "www-data", "cpu": 1.5, "memory": 0.4, "rss_bytes": 4_000_000 }))
        .collect();
    let reports: Vec<_> = (0..count)
        .map(|r| {
            json!({
                "facts": { "os": "Debian GNU/Linux 12", "kernel": "6.1.0", "cpu_vendor": "GenuineIntel", "cpu_model": "Xeon", "cpu_count": 8,
                           "ram_total_bytes": 16_000_000_000u64, "boot_time": 1_700_000_000u64, "uptime_secs": 1000, "ips": ["10.0.0.1"] },
                "metrics": metrics,
                "processes": processes,
                "process_counts": { "nginx": 4, "postgres": 9 },
                "at_ms": now - (count - 1 - r) as i64 * 5_000,
            })
        })
        .collect();
    json!({ "project": "shop", "server": format!("srv-{i:05}"), "reports": reports }).to_string()
}

fn write_tree(dir: &Path, servers: usize) {
    fs::create_dir_all(dir).unwrap();
    let key_hash = watchkeeper::token::sha256_hex(KEY);
    let token_hash = watchkeeper::token::sha256_hex(TOKEN);
    let mut text = format!(
        "kind: User\nemail: ops@example.com\nname: Ops\ntoken_sha256: {token_hash}\n---\n\
         kind: Project\nname: shop\nmembers: [{{ user: ops@example.com, role: admin }}]\ningest_key_sha256: {key_hash}\n"
    );
    for i in 0..servers {
        let _ = write!(text, "---\nkind: Server\nname: srv-{i:05}\nproject: shop\nhost: 127.0.0.1\npolicy: linux-default\n");
    }
    fs::write(dir.join("tree.yaml"), text).unwrap();
}
