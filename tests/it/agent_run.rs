//! `watchkeeper agent`, the real binary, against a stand-in collector on 127.0.0.1: reports every
//! interval with this machine's values, a bounded backlog through outages, what each error status
//! does to a batch, assigned down-checks against real ports, assigned log rules across a restart,
//! and SIGTERM.
#![cfg(target_os = "linux")]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use watchkeeper::protocol::Report;
use watchkeeper::protocol::{Assignments, CheckResult, DownCheckAssignment, IngestRequest, LogAssignment, LogHit};

use crate::common;
use crate::support::collector::{Collector, Mode, Received};

const KEY: &str = "agent-test-key-7c1e9d";
const PROJECT: &str = "shop";
const SERVER: &str = "web-01";
/// Generous: the waits poll and return as soon as what they wait for happened.
const WAIT: Duration = Duration::from_secs(40);

/// A running `watchkeeper agent`; its log goes to a file. Killed on drop.
struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    /// `watchkeeper agent --server URL --project shop --name web-01 EXTRA…` in `dir`, with the key
    /// in the environment (as an operator should give it).
    fn start(url: &str, extra: &[&str], dir: &Path) -> Agent {
        let log = unique(dir.join("agent.log"));
        let file = OpenOptions::new().create(true).append(true).open(&log).expect("agent log file");
        let child = Command::new(common::bin_path())
            .args(["agent", "--server", url, "--project", PROJECT, "--name", SERVER])
            .args(extra)
            .env("WATCHKEEPER_INGEST_KEY", KEY)
            .env("WATCHKEEPER_LOG", "info")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn watchkeeper agent");
        Agent { child: Some(child), log }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    async fn wait_for_log(&self, text: &str) {
        let start = Instant::now();
        while !self.log().contains(text) {
            assert!(start.elapsed() < WAIT, "the agent's log never said {text:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, and its exit status (killed after [`WAIT`]).
    async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        crate::support::sigterm(&child);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > WAIT {
                let _ = child.kill();
                panic!("the agent did not stop within {WAIT:?} of SIGTERM:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `path`, or `path` with a counter when it exists (two agents in one directory).
fn unique(path: PathBuf) -> PathBuf {
    (0..).map(|i| path.with_extension(format!("{i}.log"))).find(|p| !p.exists()).expect("a free name")
}

fn accepted(received: &[Received]) -> Vec<&IngestRequest> {
    received.iter().filter_map(Received::accepted).collect()
}

fn reports(received: &[Received]) -> Vec<&Report> {
    accepted(received).into_iter().flat_map(|r| &r.reports).collect()
}

fn report_count(received: &[Received]) -> usize {
    reports(received).len()
}

fn checks(received: &[Received]) -> Vec<&CheckResult> {
    accepted(received).into_iter().flat_map(|r| &r.checks).collect()
}

fn hits(received: &[Received]) -> Vec<&LogHit> {
    accepted(received).into_iter().flat_map(|r| &r.log_hits).collect()
}

/// Report times in arrival order must be strictly increasing: in order, none twice.
fn assert_in_order(received: &[Received]) {
    let times: Vec<i64> = reports(received).iter().map(|r| r.at_ms).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "reports out of order or repeated: {times:?}");
}

fn meminfo_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/meminfo"))
}

#[tokio::test]
async fn reports_arrive_every_interval_with_this_machines_values_and_sigterm_exits_0() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(&collector.url(), &["--interval", "200ms"], dir.path());
    let received = collector.wait_until("6 reports", WAIT, |r| report_count(r) >= 6).await;

    for r in &received {
        assert_eq!(r.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
        let request = r.accepted().expect("every request accepted");
        assert_eq!((request.project.as_str(), request.server.as_str(), request.dropped), (PROJECT, SERVER, 0));
    }
    assert_in_order(&received);
    let reports = reports(&received);
    let span = (reports[reports.len() - 1].at_ms - reports[0].at_ms) as f64 / (reports.len() - 1) as f64;
    assert!(span >= 100.0, "{} reports {span:.0} ms apart on average at --interval 200ms", reports.len());

    let last = reports[reports.len() - 1];
    assert_eq!(last.facts.ram_total_bytes, meminfo_kib("MemTotal") * 1024);
    assert!(last.facts.cpu_count >= 1);
    let memory = last.value("memory.usage", None).expect("memory.usage");
    assert!(memory > 0.0 && memory <= 100.0, "memory.usage {memory}");
    let cpu = last.value("cpu.usage", None).expect("cpu.usage from the second sample on");
    assert!((0.0..=100.0).contains(&cpu), "cpu.usage {cpu}");
    let me = last.processes.iter().find(|p| p.pid == agent.pid()).expect("the agent sees itself among the processes");
    assert_eq!(me.name, "watchkeeper");
    assert!(me.rss_bytes > 0);

    let status = agent.terminate().await;
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    let log = agent.log();
    assert!(log.contains("agent stopped"), "{log}");
    assert!(!log.contains(KEY), "the key must never be logged:\n{log}");
}

#[tokio::test]
async fn through_an_outage_the_newest_reports_are_kept_and_the_dropped_counted() {
    let mut collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&collector.url(), &["--interval", "200ms", "--backlog", "5"], dir.path());
    collector.wait_until("2 reports", WAIT, |r| report_count(r) >= 2).await;

    collector.stop().await;
    let before = collector.received();
    tokio::time::sleep(Duration::from_millis(2_400)).await; // about 12 intervals
    collector.restart().await;
    let received = collector.wait_until("a request after the outage", WAIT, |r| r.len() > before.len()).await;

    let after = received[before.len()].accepted().expect("accepted after the outage");
    assert_eq!(after.reports.len(), 5, "a full backlog of 5 arrives at once");
    assert_in_order(&received);
    // Every sample between the last report before the outage and the first after it was dropped,
    // and only those: at most one per interval in that gap, at least half as many (ticks a busy
    // machine skipped are not samples).
    let last_before = reports(&before).last().expect("reports before the outage").at_ms;
    let gap = (after.reports[0].at_ms - last_before) as f64 / 200.0;
    let dropped = after.dropped as f64;
    assert!(dropped >= 1.0 && dropped <= gap.round() && dropped >= (gap - 1.0) / 2.0, "dropped {dropped} for a gap of {gap:.1} intervals");
    assert!(agent.log().contains("the report backlog is full"), "{}", agent.log());
    let later = collector.wait_until("more reports", WAIT, |r| r.len() > before.len() + 2).await;
    assert!(accepted(&later[before.len() + 1..]).iter().all(|r| r.dropped == 0), "the count is sent once");
}

#[tokio::test]
async fn while_the_collector_answers_503_the_backlog_is_kept_and_then_sent_in_full_batches() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&collector.url(), &["--interval", "100ms"], dir.path());
    collector.wait_until("a report", WAIT, |r| report_count(r) >= 1).await;

    collector.set_mode(Mode::Fail(503, "shutting down".into()));
    let failing_from = collector.received().len();
    // Until a refused request carried a full batch of 60: more than one batch is waiting (a
    // fixed sleep is not enough on a loaded machine, where the agent may sample more slowly).
    collector
        .wait_until("a full batch refused", WAIT, |r| {
            r[failing_from..].iter().any(|r| r.status == 503 && r.request.as_ref().is_some_and(|q| q.reports.len() >= 60))
        })
        .await;
    agent.wait_for_log("the collector is unavailable").await;
    collector.set_mode(Mode::Accept);
    let received = collector
        .wait_until("two batches after the outage", WAIT, |r| r[failing_from..].iter().filter(|r| r.status == 200).count() >= 2)
        .await;

    let batches: Vec<&IngestRequest> = accepted(&received[failing_from..]);
    assert_eq!(batches[0].reports.len(), 60, "the first batch after the outage is a full one");
    assert!(!batches[1].reports.is_empty(), "the rest follows at once");
    assert!(received.iter().all(|r| r.accepted().is_none_or(|a| a.dropped == 0)), "nothing dropped");
    assert_in_order(&received);
    // No report was lost: those refused with 503 all arrive later.
    let delivered: Vec<i64> = reports(&received).iter().map(|r| r.at_ms).collect();
    let refused: Vec<i64> = received[failing_from..]
        .iter()
        .filter(|r| r.status == 503)
        .flat_map(|r| r.request.as_ref().map(|q| q.reports.iter().map(|x| x.at_ms).collect::<Vec<_>>()).unwrap_or_default())
        .collect();
    assert!(refused.iter().all(|t| delivered.contains(t)), "every refused report is delivered later");
    assert!(agent.log().contains("the collector accepts reports again"), "{}", agent.log());
}

#[tokio::test]
async fn a_batch_the_collector_calls_invalid_is_dropped_and_the_agent_goes_on() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&collector.url(), &["--interval", "200ms"], dir.path());
    collector.wait_until("2 reports", WAIT, |r| report_count(r) >= 2).await;
    collector.script([Mode::Fail(400, "report 1: unknown metric `cpu.bogus`".into())]);
    let received = collector
        .wait_until("3 requests after a 400", WAIT, |r| r.iter().position(|x| x.status == 400).is_some_and(|i| r.len() >= i + 4))
        .await;

    let bad = received.iter().position(|r| r.status == 400).unwrap();
    let poisoned: Vec<i64> = received[bad].request.as_ref().unwrap().reports.iter().map(|r| r.at_ms).collect();
    assert!(!poisoned.is_empty());
    let later = &received[bad + 1..];
    assert!(later.iter().all(|r| r.status == 200));
    assert!(reports(later).iter().all(|r| !poisoned.contains(&r.at_ms)), "the invalid batch is not sent again");
    assert_eq!(later[0].accepted().unwrap().dropped, poisoned.len() as u64, "its reports count as dropped");
    assert!(report_count(later) >= 2, "sampling and pushing go on");
    assert!(agent.log().contains("unknown metric `cpu.bogus`"), "the collector's error is logged:\n{}", agent.log());
}

#[tokio::test]
async fn a_batch_too_large_is_halved_and_a_single_report_too_large_is_dropped() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&collector.url(), &["--interval", "100ms"], dir.path());
    collector.wait_until("a report", WAIT, |r| report_count(r) >= 1).await;
    collector.set_mode(Mode::Fail(503, "busy".into()));
    collector.wait_until("a 503", WAIT, |r| r.iter().any(|x| x.status == 503)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await; // a backlog of more than 8
    let from = collector.received().len();
    collector.set_mode(Mode::MaxReports(3));
    let received = collector.wait_until("an accepted batch", WAIT, |r| r[from..].iter().any(|x| x.status == 200)).await;

    // Requests from the first 413 on: each the half of the one before, until one fits.
    let sizes: Vec<(usize, u16)> =
        received[from..].iter().map(|r| (r.request.as_ref().map_or(0, |q| q.reports.len()), r.status)).skip_while(|r| r.1 != 413).collect();
    assert!(sizes[0].0 > 3, "{sizes:?}");
    for pair in sizes.windows(2).take_while(|w| w[0].1 == 413) {
        assert_eq!(pair[1].0, pair[0].0 / 2, "halved after a 413: {sizes:?}");
    }
    let received = collector
        .wait_until("the backlog delivered", WAIT, |r| r.last().and_then(Received::accepted).is_some_and(|a| a.reports.len() <= 1))
        .await;
    assert_in_order(&received);
    assert!(received.iter().all(|r| r.accepted().is_none_or(|a| a.dropped == 0)), "halving loses nothing");

    // Not even one report fits: each is dropped (and counted) rather than retried for ever.
    collector.set_mode(Mode::MaxReports(0));
    agent.wait_for_log("the collector refuses even a single report as too large").await;
    let from = collector.received().len();
    collector.set_mode(Mode::Accept);
    let received = collector.wait_until("an accepted request", WAIT, |r| r[from..].iter().any(|x| x.status == 200)).await;
    let first = received[from..].iter().find_map(Received::accepted).unwrap();
    assert!(first.dropped >= 1, "the dropped reports are counted");
}

#[tokio::test]
async fn a_refused_key_and_an_unknown_server_are_logged_with_their_cause_and_retried_slowly() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (401, "wrong ingest key", "the collector refused the ingest key"),
        (404, "no server web-01 in project shop", "the collector does not know server web-01 in project shop — add it to the tree"),
    ];
    for (status, error, logged) in cases {
        let collector = Collector::start().await;
        collector.set_mode(Mode::Fail(status, error.into()));
        let mut agent = Agent::start(&collector.url(), &["--interval", "100ms"], dir.path());
        agent.wait_for_log(logged).await;
        assert!(agent.log().contains(error), "the collector's words are logged too:\n{}", agent.log());
        // The next attempt is at least 30 s away (the longest backoff step, jittered); meanwhile
        // the agent keeps sampling.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(collector.received().len(), 1, "status {status}: retried at the longest backoff");
        assert!(agent.running());
        assert_eq!(agent.terminate().await.code(), Some(0));
        assert!(!agent.log().contains(KEY));
    }
}

/// A port on 127.0.0.1 that accepts connections while the returned task runs.
async fn open_port() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    (port, task)
}

fn down_check(name: &str, port: u16, liveness_port: u16) -> DownCheckAssignment {
    DownCheckAssignment { name: name.into(), ip: "127.0.0.1".into(), port, liveness_port, interval_ms: 200, timeout_ms: 2_000 }
}

#[tokio::test]
async fn assigned_down_checks_report_open_and_closed_ports_and_follow_changes() {
    let (open, listener) = open_port().await;
    let (closed, other_closed) = (crate::support::free_port(), crate::support::free_port());
    let collector = Collector::start().await;
    let first = collector.assign(Assignments {
        down_checks: vec![
            down_check("web-01-to-db-01-5432", open, open),
            down_check("web-01-to-db-02-5432", closed, open),
            down_check("web-01-to-db-03-5432", closed, other_closed),
        ],
        log_rules: vec![],
    });
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&collector.url(), &["--interval", "200ms"], dir.path());
    let received = collector
        .wait_until("a result of each down-check", WAIT, |r| {
            let names: Vec<&str> = checks(r).iter().map(|c| c.name.as_str()).collect();
            ["web-01-to-db-01-5432", "web-01-to-db-02-5432", "web-01-to-db-03-5432"].iter().all(|n| names.contains(n))
        })
        .await;
    assert!(received.iter().all(|r| r.assignments_version == first));
    for check in checks(&received) {
        match check.name.as_str() {
            "web-01-to-db-01-5432" => assert_eq!((check.port_ok, check.liveness_ok, check.error.as_deref()), (true, true, None)),
            "web-01-to-db-02-5432" => {
                assert_eq!((check.port_ok, check.liveness_ok), (false, true));
                assert_eq!(check.error.as_deref(), Some("connection refused"));
            }
            "web-01-to-db-03-5432" => {
                assert_eq!((check.port_ok, check.liveness_ok), (false, false));
                assert_eq!(
                    check.error.as_deref(),
                    Some(format!("connection refused; liveness port {other_closed}: connection refused").as_str())
                );
            }
            other => panic!("unexpected down-check {other}"),
        }
        assert!(check.at_ms > 0);
    }

    // db-02's service comes up on another port, db-03's check is removed.
    let second = collector.assign(Assignments {
        down_checks: vec![down_check("web-01-to-db-01-5432", open, open), down_check("web-01-to-db-02-5432", open, open)],
        log_rules: vec![],
    });
    let received = collector
        .wait_until("db-02 up under the new assignment", WAIT, |r| {
            let Some(k) = r.iter().position(|x| x.assignments_version == second) else { return false };
            r.len() > k + 3 && checks(&r[k + 2..]).iter().any(|c| c.name == "web-01-to-db-02-5432" && c.port_ok)
        })
        .await;
    let k = received.iter().position(|x| x.assignments_version == second).unwrap();
    let after = checks(&received[k + 2..]);
    assert!(after.iter().all(|c| c.name != "web-01-to-db-03-5432"), "a removed down-check stops");
    assert!(after.iter().any(|c| c.name == "web-01-to-db-01-5432" && c.port_ok), "an unchanged one keeps running");
    assert!(after.iter().filter(|c| c.name == "web-01-to-db-02-5432").all(|c| c.port_ok), "a changed one runs as changed");
    drop(agent);
    listener.abort();
}

#[tokio::test]
async fn an_assigned_log_rule_reports_appended_lines_once_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("app.log");
    std::fs::write(&log_path, "2026-01-01 ERROR old line, before the agent started\n").unwrap();
    let append = |line: &str| {
        let mut f = OpenOptions::new().append(true).open(&log_path).unwrap();
        writeln!(f, "{line}").unwrap();
    };
    let collector = Collector::start().await;
    collector.assign(Assignments {
        down_checks: vec![],
        log_rules: vec![
            LogAssignment { policy: "app-errors".into(), rule: 1, file: log_path.display().to_string(), keyword: "ERROR".into() },
            LogAssignment {
                policy: "app-errors".into(),
                rule: 2,
                file: dir.path().join("*.missing").display().to_string(),
                keyword: "x".into(),
            },
        ],
    });

    // The tailer starts at the end of the existing file once the assignment arrives: append
    // numbered lines until one is reported.
    let mut agent = Agent::start(&collector.url(), &["--interval", "200ms"], dir.path());
    let mut appended = Vec::new();
    let start = Instant::now();
    while hits(&collector.received()).is_empty() {
        assert!(start.elapsed() < WAIT, "no log hit reported:\n{}", agent.log());
        let line = format!("ERROR line {}", appended.len());
        append(&line);
        append("INFO nothing to see");
        appended.push(line);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(agent.terminate().await.code(), Some(0), "{}", agent.log());
    let state = dir.path().join(format!("watchkeeper-agent-{PROJECT}-{SERVER}.state"));
    assert!(state.exists(), "the default state file is in the working directory");

    append("ERROR written while the agent was down");
    let mut agent = Agent::start(&collector.url(), &["--interval", "200ms"], dir.path());
    collector
        .wait_until("the line written while down", WAIT, |r| hits(r).iter().any(|h| h.line.contains("while the agent was down")))
        .await;
    append("ERROR after the restart");
    let received =
        collector.wait_until("the line after the restart", WAIT, |r| hits(r).iter().any(|h| h.line == "ERROR after the restart")).await;
    assert_eq!(agent.terminate().await.code(), Some(0));

    let hits = hits(&received);
    let lines: Vec<&str> = hits.iter().map(|h| h.line.as_str()).collect();
    for line in &lines {
        assert_eq!(lines.iter().filter(|l| *l == line).count(), 1, "{line:?} reported more than once: {lines:?}");
    }
    assert!(!lines.iter().any(|l| l.contains("old line") || l.contains("INFO")), "{lines:?}");
    // From the first line reported on, every appended line is reported — before the restart too.
    let first = appended.iter().position(|l| lines.contains(&l.as_str())).expect("an appended line reported");
    assert!(appended[first..].iter().all(|l| lines.contains(&l.as_str())), "{lines:?} vs {appended:?}");
    for hit in &hits {
        assert_eq!((hit.policy.as_str(), hit.rule, hit.file.as_str()), ("app-errors", 1, log_path.to_str().unwrap()));
        assert!(hit.at_ms > 0);
    }
}

#[test]
fn unusable_options_are_refused_at_start() {
    let cases: &[(&[&str], &str)] = &[
        (&["--interval", "50ms"], "at least 100ms"),
        (&["--interval", "soon"], "not a duration"),
        (&["--backlog", "0"], "at least one report"),
        (&["--server", "ftp://127.0.0.1:1"], "http:// or https://"),
        (&["--server", "127.0.0.1:8080"], "is not a URL"),
        (&["--name", "Web_01"], "is not a slug"),
        (&["--key", ""], "the ingest key is empty"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["agent", "--server", "http://127.0.0.1:1", "--key", KEY, "--project", PROJECT, "--name", SERVER];
        // A later flag overrides an earlier one of the same name.
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| *a == pair[0]) {
                args[i + 1] = pair[1];
            } else {
                args.extend_from_slice(pair);
            }
        }
        let run = common::run(&args);
        assert_eq!(run.code, Some(2), "{extra:?}: {}", run.output());
        assert!(run.stderr.contains(expected), "{extra:?}: expected {expected:?} in\n{}", run.output());
        assert!(!run.stderr.contains(KEY), "the key is not echoed");
    }
    let run = common::run(&["agent", "--server", "http://127.0.0.1:1", "--project", PROJECT, "--name", SERVER]);
    assert_eq!(run.code, Some(2), "no key: {}", run.output());
    assert!(run.stderr.contains("--key"), "{}", run.output());
}
