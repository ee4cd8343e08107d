//! Benchmark: `watchkeeper agent` at its default 5 s interval, against its target (README, "Performance targets") — at most 1 % of one
//! core and 20 MB resident.
//!
//! Run with `cargo bench --bench agent`. It prints figures and asserts nothing.
//!
//! Steps:
//! 1. start a stand-in collector on 127.0.0.1 (the one the agent tests use) that accepts every
//!    report and assigns one down-check (to a listener here, every 30 s) and one log rule (on a
//!    file this bench appends a matching line to every 10 s), so the agent does all its work;
//! 2. run the release `watchkeeper agent` with its defaults; after its first two reports, for
//!    `WK_BENCH_SECONDS` (60) read its CPU time (utime + stime, /proc/PID/stat) and VmRSS/VmHWM
//!    (/proc/PID/status) every second;
//! 3. print CPU % of one core, peak and steady RSS, what the collector received, the size of one
//!    report on the wire and what a full default backlog (720 reports) of them holds; stop the
//!    agent with SIGTERM;
//! 4. memory with a full backlog: stop the collector, run a second agent at `--interval 100ms`
//!    for `WK_BENCH_OUTAGE_SECONDS` (80: more than the 720 reports of the default backlog), print
//!    its peak RSS, then start the collector again and time the delivery of the backlog.
//!
//! Environment: `WK_BENCH_SECONDS` (60), `WK_BENCH_OUTAGE_SECONDS` (80; 0 skips step 4),
//! `WK_BENCH_BIN` (a prebuilt `watchkeeper`: skips the cargo build).

#[path = "../tests/it/support/collector.rs"]
mod collector;
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use collector::{Collector, Received};
use common::{Listener, verdict};
use watchkeeper::protocol::{Assignments, DownCheckAssignment, LogAssignment};

/// The targets for the agent.
const TARGET_CPU_PERCENT: f64 = 1.0;
const TARGET_MB: f64 = 20.0;

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn main() {
    let seconds = common::env_u64("WK_BENCH_SECONDS", 60).max(10);
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let processes = std::fs::read_dir("/proc")
        .map_or(0, |d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok()).count());
    println!("watchkeeper agent benchmark — default interval (5s), loopback collector, {cpus} CPUs, {processes} processes on this machine");

    // 1. The collector, a listener for the down-check, a log file for the rule.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
    let mut collector = runtime.block_on(Collector::start());
    let listener = Listener::open(0);
    let tmp = tempfile::Builder::new().prefix("wk-bench-agent-").tempdir().expect("temporary directory");
    let log_file = tmp.path().join("app.log");
    std::fs::write(&log_file, "").expect("log file");
    collector.assign(Assignments {
        down_checks: vec![DownCheckAssignment {
            name: "bench-to-db-5432".into(),
            ip: "127.0.0.1".into(),
            port: listener.port,
            liveness_port: listener.port,
            interval_ms: 30_000,
            timeout_ms: 5_000,
        }],
        log_rules: vec![LogAssignment { policy: "app".into(), rule: 0, file: log_file.display().to_string(), keyword: "ERROR".into() }],
    });

    // 2. The agent.
    let bin = common::release_binary();
    let agent_log = tmp.path().join("agent.log");
    let mut child = start_agent(&bin, &collector.url(), tmp.path(), &[]);
    let pid = child.id();
    let started = Instant::now();
    while collector.received().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no reports from the agent:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let warmup = started.elapsed();
    let received_before = collector.received().len();

    let cpu_start = common::cpu_time(pid).expect("the agent's /proc stat");
    let measure_start = Instant::now();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut appended = 0;
    while measure_start.elapsed() < Duration::from_secs(seconds) {
        thread::sleep(Duration::from_secs(1));
        let Some(rss) = common::rss_kib(pid) else {
            panic!("the agent exited during the run:\n{}", std::fs::read_to_string(&agent_log).unwrap_or_default())
        };
        samples.push(rss);
        if samples.len().is_multiple_of(10) {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log_file).expect("log file");
            writeln!(f, "2026-01-01T00:00:00Z ERROR benchmark line {appended}").expect("append");
            appended += 1;
        }
    }
    let wall = measure_start.elapsed();
    let cpu = common::cpu_time(pid).expect("the agent's /proc stat") - cpu_start;

    // 3. Figures.
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let exit = child.wait().expect("wait for the agent");
    let received = collector.received();
    let during = &received[received_before..];
    let reports: usize = during.iter().filter_map(Received::accepted).map(|r| r.reports.len()).sum();
    let checks: usize = during.iter().filter_map(Received::accepted).map(|r| r.checks.len()).sum();
    let hits: usize = during.iter().filter_map(Received::accepted).map(|r| r.log_hits.len()).sum();
    let report_bytes =
        during.iter().filter(|r| r.accepted().is_some_and(|a| a.reports.len() == 1)).map(|r| r.body_bytes).max().unwrap_or(0);
    let processes_sent = received.iter().rev().find_map(|r| r.accepted()?.reports.last().map(|x| x.processes.len())).unwrap_or(0);

    let peak_hwm = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let mut steady: Vec<u64> = samples[samples.len() / 2..].iter().map(|s| s.0).collect();
    steady.sort();
    let steady_median = steady[steady.len() / 2];
    let cpu_percent = 100.0 * cpu.as_secs_f64() / wall.as_secs_f64();
    println!();
    println!(
        "summary — agent (pid {pid}) at the default 5s interval for {:.0} s, after {} of warm-up",
        wall.as_secs_f64(),
        common::ms(warmup)
    );
    println!(
        "  CPU                {cpu_percent:>7.2} %    of one core ({:.3} s CPU in {:.1} s)   target ≤ {TARGET_CPU_PERCENT:.0} %   {}",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        verdict(cpu_percent <= TARGET_CPU_PERCENT)
    );
    println!("  peak RSS (VmHWM)   {:>7.1} MB   target ≤ {TARGET_MB:.0} MB   {}", mb(peak_hwm), verdict(mb(peak_hwm) <= TARGET_MB));
    println!("  steady RSS         {:>7.1} MB   (median VmRSS over the second half)", mb(steady_median));
    println!(
        "  received           {} requests: {reports} reports, {checks} down-check results, {hits} log hits ({appended} lines appended)",
        during.len()
    );
    println!(
        "  one report         {:>7.1} KB on the wire ({processes_sent} processes); a full default backlog of 720 holds ≈ {:.1} MB of them",
        report_bytes as f64 / 1e3,
        report_bytes as f64 * 720.0 / 1e6
    );
    println!("  agent stopped on SIGTERM: {exit}");

    // 4. A full backlog.
    let outage = common::env_u64("WK_BENCH_OUTAGE_SECONDS", 80);
    if outage > 0 {
        runtime.block_on(collector.stop());
        let mut child = start_agent(&bin, &collector.url(), tmp.path(), &["--interval", "100ms"]);
        let pid = child.id();
        println!();
        println!("outage: the collector is down; a second agent samples every 100ms for {outage} s (backlog 720)");
        let mut peak = 0;
        for _ in 0..outage {
            thread::sleep(Duration::from_secs(1));
            peak = peak.max(common::rss_kib(pid).expect("the agent runs").1);
        }
        let before = collector.received().len();
        runtime.block_on(collector.restart());
        let restarted = Instant::now();
        let delivered = |r: &[Received]| r[before..].iter().filter_map(Received::accepted).map(|a| a.reports.len()).sum::<usize>();
        while delivered(&collector.received()) < 720 && restarted.elapsed() < Duration::from_secs(120) {
            thread::sleep(Duration::from_millis(20));
        }
        let took = restarted.elapsed();
        let received = collector.received();
        let dropped: u64 = received[before..].iter().filter_map(Received::accepted).map(|a| a.dropped).sum();
        println!(
            "  peak RSS (VmHWM)   {:>7.1} MB   with a full backlog   target ≤ {TARGET_MB:.0} MB   {}",
            mb(peak),
            verdict(mb(peak) <= TARGET_MB)
        );
        println!(
            "  after the outage   {} reports delivered in {} requests ({dropped} reported dropped), {} after the collector returned (includes the backoff wait)",
            delivered(&received),
            received.len() - before,
            common::ms(took)
        );
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let _ = child.wait();
    }
    drop(listener);
}

/// `bin agent` against `url` with the defaults and `extra`; its log is `agent.log` in `dir`.
fn start_agent(bin: &std::path::Path, url: &str, dir: &std::path::Path, extra: &[&str]) -> std::process::Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("agent.log")).expect("agent log");
    Command::new(bin)
        .args(["agent", "--server", url, "--project", "bench", "--name", "bench-01", "--state-file"])
        .arg(dir.join("agent.state"))
        .args(extra)
        .env("WATCHKEEPER_INGEST_KEY", "bench-ingest-key")
        .env("WATCHKEEPER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} agent: {e}", bin.display()))
}
