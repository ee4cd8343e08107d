//! Benchmark: port down → e-mail accepted by the SMTP server, against its target (README, "Performance targets") — at most
//! interval × failures + 2 s.
//!
//! Run with `cargo bench --bench alert_latency`. It prints figures and asserts nothing about time.
//!
//! Everything is real and on 127.0.0.1: aiosmtpd (`python3 -m aiosmtpd`, Mailbox handler writing a
//! Maildir), a TCP listener this bench opens and closes, and the release `watchkeeper serve`
//! following a directory with one PortMonitor on that listener (interval `WK_BENCH_INTERVAL_MS`,
//! failures `WK_BENCH_FAILURES`), an e-mail channel to aiosmtpd (`tls: none`) and one admin with
//! an e-mail address.
//!
//! Each of `WK_BENCH_ROUNDS` rounds closes the listener and measures the time until the `fired`
//! mail's file appears in the Maildir's `new/`; then reopens it and waits for the `resolved`
//! mail. Rounds start at different phases of the probe schedule (round k waits k/ROUNDS of an
//! interval first), since when the port goes down relative to the next check is most of the spread.
//! Each round is broken down with the alert's own times from the status API: first failed check,
//! the failed check that fired it (when its notification was queued), and when the outbox sent it.
//!
//! Environment: `WK_BENCH_INTERVAL_MS` (1000), `WK_BENCH_FAILURES` (3), `WK_BENCH_ROUNDS` (5),
//! `WK_BENCH_BIN` (a prebuilt `watchkeeper`: skips the cargo build), `WATCHKEEPER_TEST_PYTHON`
//! (the Python that imports aiosmtpd, as for the tests; default `python3`).

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Listener, Serve, Spread, ms, verdict};

const TOKEN: &str = "bench-operator-token";
/// The slack the target allows on top of interval × failures.
const SLACK: Duration = Duration::from_secs(2);

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// aiosmtpd on 127.0.0.1:`port`, delivering into `maildir`; killed on drop.
struct Smtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Smtp {
    fn start(port: u16, maildir: &Path, log: &Path) -> Smtp {
        let log = fs::File::create(log).expect("aiosmtpd log");
        let python = std::env::var_os("WATCHKEEPER_TEST_PYTHON").unwrap_or_else(|| "python3".into());
        let mut child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} -m aiosmtpd: {e}", python.to_string_lossy()));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("aiosmtpd exited with {status}");
            }
            assert!(started.elapsed() < Duration::from_secs(20), "aiosmtpd did not listen within 20 s");
            thread::sleep(Duration::from_millis(20));
        }
        Smtp { child, port, maildir: maildir.to_path_buf() }
    }

    /// Delivered messages so far.
    fn count(&self) -> usize {
        fs::read_dir(self.maildir.join("new")).map_or(0, |d| d.count())
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tree: one admin, an e-mail channel to aiosmtpd, one project, one PortMonitor.
fn write_tree(dir: &Path, smtp_port: u16, port: u16, interval_ms: u64, failures: u64) {
    let duration = |ms: u64| if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") };
    let timeout = duration((interval_ms / 2).min(500));
    fs::create_dir_all(dir).expect("tree folder");
    let files = [
        ("users.yaml", "kind: User\nemail: alice@example.com\nname: Alice Kim\nlanguage: en\n".to_string()),
        (
            "channels.yaml",
            format!(
                "kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none }}\n\
                 from: \"watchkeeper <alerts@example.com>\"\n"
            ),
        ),
        (
            "project.yaml",
            format!(
                "kind: Project\nname: shop\ntimezone: UTC\nmembers: [{{ user: alice@example.com, role: admin }}]\nchannels: [mail]\n---\n\
                 kind: PortMonitor\nname: web\nproject: shop\nhost: 127.0.0.1\nports: [{port}]\ninterval: {}\ntimeout: {timeout}\n\
                 failures: {failures}\nrecoveries: 1\n",
                duration(interval_ms)
            ),
        ),
    ];
    for (name, text) in files {
        fs::write(dir.join(name), text).expect("writing the tree");
    }
}

/// One round's timeline, in milliseconds after the listener closed.
struct Round {
    total: Duration,
    first_failure_ms: Option<i64>,
    fired_ms: Option<i64>,
    sent_ms: Option<i64>,
}

fn main() {
    let interval_ms = common::env_u64("WK_BENCH_INTERVAL_MS", 1000).max(100);
    let failures = common::env_u64("WK_BENCH_FAILURES", 3).max(1);
    let rounds = common::env_u64("WK_BENCH_ROUNDS", 5).max(1) as usize;
    let interval = Duration::from_millis(interval_ms);
    let bound = interval * failures as u32 + SLACK;
    println!("watchkeeper alert latency benchmark — loopback only; interval {}, failures {failures}, bound {}", ms(interval), ms(bound));

    let bin = common::release_binary();
    let tmp = tempfile::Builder::new().prefix("wk-bench-alert-").tempdir().expect("temporary directory");
    let smtp = Smtp::start(common::free_port(), &tmp.path().join("Maildir"), &tmp.path().join("aiosmtpd.log"));
    let smtp_port = smtp.port;
    let mut listener = Listener::open(0);
    let port = listener.port;
    let tree = tmp.path().join("tree");
    write_tree(&tree, smtp_port, port, interval_ms, failures);
    let args: Vec<String> = vec![
        "--config".into(),
        tree.display().to_string(),
        "--rescan".into(),
        "10m".into(),
        "--db".into(),
        format!("sqlite://{}", tmp.path().join("wk.db").display()),
    ];
    let mut serve = Serve::start(&bin, &args, TOKEN, &tmp.path().join("serve.log"));
    println!("aiosmtpd on 127.0.0.1:{smtp_port}, listener on 127.0.0.1:{port}, serve (pid {}) on 127.0.0.1:{}", serve.pid(), serve.port);
    let monitors = "/api/v1/projects/shop/monitors";
    let port_up = |serve: &Serve| serve.get(monitors)["port_monitors"][0]["ports"][0]["last"]["ok"] == true;
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    serve.wait_until("the port is checked and up", Duration::from_secs(30), || port_up(&serve));
    println!("serve applied {} and reports the port up", serve.applied().unwrap_or_default());
    println!();

    let mut results = Vec::with_capacity(rounds);
    for k in 0..rounds {
        // A different phase of the probe schedule each round.
        thread::sleep(interval * k as u32 / rounds as u32);
        let before = smtp.count();
        let closed_at = Instant::now();
        let closed_ms = now_ms();
        let port = listener.close();
        let wait = bound * 3;
        while smtp.count() <= before {
            assert!(closed_at.elapsed() < wait, "no mail within {} of the port going down\n{}", ms(wait), serve.log_text());
            thread::sleep(Duration::from_millis(2));
        }
        let total = closed_at.elapsed();

        // The alert's own times, from the status API.
        let firing = serve.get("/api/v1/projects/shop/alerts?status=firing");
        let alert = &firing["alerts"][0];
        let detail = serve.get(&format!("/api/v1/projects/shop/alerts/{}", alert["id"]));
        let mail =
            detail["notifications"].as_array().and_then(|n| n.iter().find(|n| n["medium"] == "email" && n["kind"] == "fired")).cloned();
        let after = |v: &serde_json::Value| v.as_i64().map(|t| t - closed_ms);
        let round = Round {
            total,
            first_failure_ms: after(&alert["started_at_ms"]),
            fired_ms: mail.as_ref().and_then(|m| after(&m["created_ms"])),
            sent_ms: mail.as_ref().and_then(|m| after(&m["sent_ms"])),
        };
        let show = |v: Option<i64>| v.map_or("?".to_string(), |v| format!("{v} ms"));
        println!(
            "round {}: mail in Maildir after {} ({}) — first failed check at {}, fired (notification queued) at {}, sent at {}",
            k + 1,
            ms(round.total),
            verdict(round.total <= bound),
            show(round.first_failure_ms),
            show(round.fired_ms),
            show(round.sent_ms)
        );
        results.push(round);

        // Recover: reopen the port and wait for the resolve mail.
        listener = Listener::open(port);
        while smtp.count() <= before + 1 {
            assert!(closed_at.elapsed() < wait * 3, "no resolve mail\n{}", serve.log_text());
            thread::sleep(Duration::from_millis(10));
        }
        serve.wait_until("the alert resolves", Duration::from_secs(30), || {
            serve.get("/api/v1/projects/shop/alerts?status=firing")["alerts"].as_array().is_some_and(|a| a.is_empty())
        });
    }

    let totals: Vec<Duration> = results.iter().map(|r| r.total).collect();
    let spread = Spread::of(&totals);
    let median_of = |f: fn(&Round) -> Option<i64>| {
        let mut v: Vec<i64> = results.iter().filter_map(f).collect();
        v.sort();
        v.get(v.len() / 2).copied()
    };
    let status = serve.terminate();
    println!();
    println!("summary — port down → e-mail in the SMTP server's Maildir, {rounds} rounds");
    println!("  latency {spread}");
    println!(
        "  median {} against the bound interval × failures + 2 s = {} → {}",
        ms(spread.median),
        ms(bound),
        verdict(spread.median <= bound)
    );
    println!(
        "  worst {} → {}; median first failed check at {} ms, fired at {} ms, sent at {} ms after the port closed",
        ms(spread.max),
        verdict(spread.max <= bound),
        median_of(|r| r.first_failure_ms).unwrap_or(-1),
        median_of(|r| r.fired_ms).unwrap_or(-1),
        median_of(|r| r.sent_ms).unwrap_or(-1)
    );
    println!("  mails delivered: {} ({} fired + {} resolved expected)", smtp.count(), rounds, rounds);
    println!("  serve stopped on SIGTERM: {}", status.map_or("no status".to_string(), |s| s.to_string()));
    drop(listener);
}
