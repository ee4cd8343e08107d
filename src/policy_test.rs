//! `watchkeeper test`: policy unit tests. A `*.test.yaml` file gives synthetic probe results for
//! a port monitor, or synthetic host reports and log hits for a server, and the alert
//! transitions and notifications expected; the run feeds them, on a virtual clock, through the
//! same observations ([`crate::alert::rules`]) and the same decision ([`crate::alert::decide`])
//! serve's engine stores — state machine, suppression and recipients included.
//!
//! ```yaml
//! tests:
//!   - name: web-01 port 80 pages after three failed checks
//!     monitor: shop/web-01-ports          # project/name
//!     start: 2026-12-01T10:00:00+09:00     # optional; default 2026-01-05T00:00:00Z
//!     ports:
//!       80: "ok down*4 ok"                 # one result per interval: ok|up|. or down|fail|x, `*N` repeats
//!     acks: [12m]                          # optional: someone acknowledges every firing alert then
//!     expect:                              # every transition, and what time decides
//!       - { at: 9m, port: 80, alert: fired, severity: fatal }
//!       - { at: 11m, port: 80, alert: escalation, step: 1 }   # the project's `escalation` step 1
//!       - { at: 15m, port: 80, alert: resolved }
//!     notifications:                       # optional: then every notification, in order
//!       - { at: 9m, to: alice@example.com, medium: email, status: pending }
//!
//!   - name: cpu above 90 for 3 minutes pages fatal
//!     server: shop/web-01                  # project/name; instead of `monitor`
//!     interval: 1m                         # spacing of the values below; default 1m
//!     series:                              # one value per interval, promtool's expanding notation:
//!       cpu.usage: "50 96x4 40"            #   `axN` a, N more times; `a+bxN`/`a-bxN` a, then N more stepping by b
//!       disk.usage{/data}: "91x3"          #   `_` no value, `_xN` N of them; `{subject}`: mount, device, interface
//!     processes:                           # optional: per process name, count and summed cpu / memory %
//!       nginx: { count: "1 0x3 1", cpu: "5x5" }
//!     boot_times: "1000x3 2000"            # optional: the report's boot time (s); `_` keeps the last one
//!     silent: [{ from: 6m, to: 9m }]       # optional: no report at the steps in [from, to)
//!     logs:                                # optional: log hits, at any time
//!       - { at: 3m, policy: app-errors, rule: 0, line: "java.lang.OutOfMemoryError" }
//!     parents_down:                        # optional (either kind of test): servers of the project
//!       - { server: db-01, from: 2m, to: 5m } #   with a fatal alert firing in [from, to) (`to`: the end)
//!     expect:                              # every transition: rule id, `subject` when the rule has one
//!       - { at: 4m, rule: "metric:cpu.usage", alert: fired, severity: fatal }
//!       - { at: 6m, rule: "metric:cpu.usage", alert: resolved }
//!       - { at: 3m, rule: "log:app-errors:0", alert: event }
//! ```
//!
//! A server test is what serve's engine does with the same reports:
//! - each step whose values are not all `_` (and is not `silent`) is one report with those values;
//!   a metric subject or process absent from a report is gone (its alert clears; a process
//!   count rule sees 0);
//! - `no_data` counts from `start` and from every report or log hit, and fires the moment the
//!   policy's window passes without one; the next report or hit resolves it;
//! - a log hit whose line lacks the rule's keyword is ignored; events are rate-limited per rule
//!   ([`crate::alert::rules::EVENT_RATE_LIMIT_MS`]);
//! - a paused server produces nothing.
//!
//! `parents_down` stands in for the rest of the project, which a test does not simulate: while a
//! server listed there is down, notifications of a server that `depends_on` it (directly or
//! through other parents) are held back as serve holds them back.
//!
//! Besides transitions, `expect` lists what serve tells people without one, from the same
//! decisions: `reminder`, `escalation` (with its `step`, from 1), `flapping` (at the transition
//! that made the alert flap) and `settled` (when a flapping alert has been stable for its
//! window). Time runs to the last step or the latest `at` the test expects, whichever is later;
//! what time decides at an instant comes before the observations of that instant.
//!
//! Transitions are compared in time order (at one instant, by instance, then kind), notifications
//! in the order they were made.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::Path;

use serde::Deserialize;

use crate::alert::decide::{Told, next_due_ms, timed};
use crate::alert::rule::ProcessAspect;
use crate::alert::rules::{self, Observed};
use crate::alert::{AlertState, Decision, Instance, InstanceKey, Observation, RuleId, Scene, Severity, Transition, decide};
use crate::catalog;
use crate::config::diagnostic::FileId;
use crate::config::load::{self, Doc, is_test_file};
use crate::config::model::{AlertPolicy, Config, LogRule, PortMonitor, Project, Server};
use crate::config::raw::Sp;
use crate::config::suggest::did_you_mean;
use crate::config::values::Dur;
use crate::config::{Diagnostics, Sources};
use crate::lint;
use crate::notification::MessageKind;
use crate::protocol::{Facts, MetricValue, ProcessInfo, Report as HostReport};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: Sp<String>,
    /// `project/name` of a port monitor …
    monitor: Option<String>,
    /// … or of a server.
    server: Option<String>,
    start: Option<String>,
    ports: Option<BTreeMap<u16, String>>,
    interval: Option<String>,
    #[serde(default)]
    series: BTreeMap<String, String>,
    #[serde(default)]
    processes: BTreeMap<String, ProcessSeries>,
    boot_times: Option<String>,
    #[serde(default)]
    silent: Vec<Silence>,
    #[serde(default)]
    logs: Vec<LogLine>,
    #[serde(default)]
    parents_down: Vec<ParentDown>,
    /// Offsets at which someone acknowledges every alert of the test that fires then.
    #[serde(default)]
    acks: Vec<String>,
    #[serde(default)]
    expect: Vec<ExpectAlert>,
    notifications: Option<Vec<ExpectNotification>>,
}

/// Per step: how many processes of one name run, and their summed CPU (% of one core) and
/// memory (% of RAM).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessSeries {
    count: Option<String>,
    cpu: Option<String>,
    memory: Option<String>,
}

/// Steps at `from` ≤ t < `to` carry no report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Silence {
    from: String,
    to: String,
}

/// A server of the project with a fatal alert firing at `from` ≤ t < `to` (no `to`: to the end).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParentDown {
    server: String,
    from: String,
    to: Option<String>,
}

/// A line an agent's log rule matched.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogLine {
    at: String,
    policy: String,
    rule: usize,
    line: String,
    /// The file it was read from; default: the rule's `file`.
    file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectAlert {
    at: String,
    /// For a `monitor` test.
    port: Option<u16>,
    /// For a `server` test: a rule id such as `metric:cpu.usage`.
    rule: Option<String>,
    /// The mount, device or interface of a per-subject rule; default: none.
    subject: Option<String>,
    alert: MessageKind,
    severity: Option<Severity>,
    /// The step of an `escalation`, from 1.
    step: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectNotification {
    at: String,
    /// An address, a phone number, or a webhook channel's name.
    to: String,
    medium: String,
    kind: Option<String>,
    /// `pending` (to be sent) or `not_sent` (suppressed, outside hours).
    status: Option<String>,
}

/// Which alert instance of the test's monitor or server a transition belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Watched {
    Port(u16),
    Rule { rule: RuleId, subject: String },
}

impl fmt::Display for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Watched::Port(port) => write!(f, "port {port}"),
            Watched::Rule { rule, subject } if subject.is_empty() => write!(f, "{rule}"),
            Watched::Rule { rule, subject } => write!(f, "{rule}{{{subject}}}"),
        }
    }
}

/// What one transition looked like, for comparison and printing.
#[derive(Debug, Clone, PartialEq)]
struct GotAlert {
    at_ms: i64,
    instance: Watched,
    kind: MessageKind,
    severity: Severity,
    step: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
struct GotNotification {
    at_ms: i64,
    to: String,
    medium: &'static str,
    kind: MessageKind,
    status: &'static str,
}

/// The outcome of every test in a tree.
pub struct Report {
    pub text: String,
    pub passed: usize,
    pub failed: usize,
}

/// Run every `*.test.yaml` under `dir` against `config` (the tree already compiled). A file or a
/// test that cannot run is reported as lint reports a problem (`file:line:col: error[rule]`, the
/// line, a hint), counts as one failure, and the other files and tests still run.
pub fn run(dir: &Path, config: &Config) -> Report {
    let mut report = Report { text: String::new(), passed: 0, failed: 0 };
    let mut problems = Diagnostics::default();
    let sources: Sources = load::read_matching(dir, is_test_file, &mut problems);
    // Files that could not be read (unreadable, too large, not UTF-8) are reported and skipped.
    let unreadable: BTreeSet<FileId> = problems.items.iter().filter_map(|d| d.location.map(|l| l.file)).collect();
    report.failed += problems.items.len();
    report.text.push_str(&lint::human_diagnostics(&problems.items, &sources));
    for (index, source) in sources.files.iter().enumerate() {
        let id = FileId(index as u32);
        if unreadable.contains(&id) {
            continue;
        }
        let shown = sources.display(id);
        let doc = Doc { file: id, first_line: 1, value: () };
        let mut problems = Diagnostics::default();
        let Some(file) = load::deserialize::<TestFile>(&doc, &source.text, &mut problems) else {
            report.failed += 1;
            report.text.push_str(&lint::human_diagnostics(&problems.items, &sources));
            continue;
        };
        for case in &file.tests {
            let name = &case.name.value;
            match run_case(case, config) {
                Ok(None) => {
                    report.passed += 1;
                    let _ = writeln!(report.text, "PASS {name} ({shown})");
                }
                Ok(Some(failure)) => {
                    report.failed += 1;
                    let _ = writeln!(report.text, "FAIL {name} ({shown})\n{failure}");
                }
                Err(message) => {
                    report.failed += 1;
                    let mut problem = Diagnostics::default();
                    problem.error("bad-test", doc.at(&case.name), format!("test `{name}`: {message}"));
                    report.text.push_str(&lint::human_diagnostics(&problem.items, &sources));
                }
            }
        }
    }
    let _ = writeln!(report.text, "{} passed, {} failed", report.passed, report.failed);
    report
}

/// A series like `ok down*3 .` as one boolean (ok) per check.
fn parse_series(series: &str) -> Result<Vec<bool>, String> {
    let mut out = Vec::new();
    for token in series.split_whitespace() {
        let (word, count) = match token.split_once('*') {
            Some((w, n)) => (w, n.parse::<usize>().map_err(|_| format!("bad repeat count in `{token}`"))?),
            None => (token, 1),
        };
        let ok = match word {
            "ok" | "up" | "." => true,
            "down" | "fail" | "x" => false,
            other => return Err(format!("unknown result `{other}`: use ok/up/. or down/fail/x")),
        };
        if out.len().saturating_add(count) > MAX_VALUES {
            return Err(format!("more than {MAX_VALUES} results"));
        }
        out.extend(std::iter::repeat_n(ok, count));
    }
    Ok(out)
}

/// A series cannot be longer than this (a guard against `1x999999999`).
const MAX_VALUES: usize = 100_000;

/// Values in promtool's expanding notation, one per step; `None` is no value (`_`).
/// `a+bxN` is a, a+b, … a+N·b; `a-bxN` steps down; `axN` is a, N+1 times; `_xN` is N gaps.
fn parse_values(series: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for token in series.split_whitespace() {
        let bad = |why: &str| format!("bad token `{token}`: {why}");
        let (head, repeat) = match token.rsplit_once('x') {
            Some((head, n)) => (head, Some(n.parse::<usize>().map_err(|_| bad("the count after `x` must be a whole number"))?)),
            None => (token, None),
        };
        let (count, first, step) = if head == "_" {
            (repeat.unwrap_or(1), None, 0.0)
        } else {
            let number = |text: &str| {
                text.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| bad("expected a number, `_`, `axN`, `a+bxN` or `a-bxN`"))
            };
            let (a, b) = match split_step(head) {
                Some((a, sign, b)) if repeat.is_some() => (number(a)?, sign * number(b)?),
                Some(_) => return Err(bad("a step needs a count: `a+bxN`")),
                None => (number(head)?, 0.0),
            };
            (repeat.map_or(1, |n| n.saturating_add(1)), Some(a), b)
        };
        if out.len().saturating_add(count) > MAX_VALUES {
            return Err(format!("more than {MAX_VALUES} values (at `{token}`)"));
        }
        out.extend((0..count).map(|i| first.map(|a| a + step * i as f64)));
    }
    Ok(out)
}

/// `a+b` or `a-b` (not the sign of `a`, nor an exponent's) as (a, ±1, b).
fn split_step(head: &str) -> Option<(&str, f64, &str)> {
    let bytes = head.as_bytes();
    let at = (1..bytes.len()).find(|&i| matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E'))?;
    Some((&head[..at], if bytes[at] == b'-' { -1.0 } else { 1.0 }, &head[at + 1..]))
}

/// A whole number ≥ 0 from a series value (process counts, boot times).
fn whole(value: f64, what: &str) -> Result<u64, String> {
    if value < 0.0 || value.fract() != 0.0 || value > u64::MAX as f64 {
        return Err(format!("{what}: `{value}` is not a whole number ≥ 0"));
    }
    Ok(value as u64)
}

fn offset(at: &str) -> Result<i64, String> {
    Dur::parse(at).map(|d| d.0.as_millis() as i64)
}

/// An offset from the test's start as written in test files: `0s`, `90s`, `4m`.
fn show_ms(ms: i64) -> String {
    if ms <= 0 { "0s".to_string() } else { Dur(std::time::Duration::from_millis(ms as u64)).to_string() }
}

/// Collects the transitions of one test and the notifications serve would enqueue for them.
struct Recorder<'a> {
    config: &'a Config,
    project: &'a Project,
    start_ms: i64,
    /// (server, from, to) in epoch ms: when a server stands for a parent that is down.
    down: Vec<(&'a str, i64, i64)>,
    /// When someone acknowledges what fires then (epoch ms, in order), not yet reached.
    acks: Vec<i64>,
    /// Instances whose alert was acknowledged, until it resolves or fires anew.
    acked: BTreeSet<Watched>,
    alerts: Vec<GotAlert>,
    notes: Vec<GotNotification>,
}

impl<'a> Recorder<'a> {
    /// Decide one observation as serve's engine does, keep the new state in `states`, and record
    /// the transition and its notifications.
    fn decide(&mut self, scene: &Scene, observed: Observed, states: &mut BTreeMap<Watched, AlertState>, watched: Watched, at_ms: i64) {
        let before = Instance { state: states.get(&watched).cloned().unwrap_or_default(), open_alert_id: None };
        let decision = decide(scene, observed, &before, at_ms, &|server| self.parent_down(server, at_ms));
        if let Some(t) = decision.transition {
            if matches!(t, Transition::Fired { .. } | Transition::Resolved { .. }) {
                self.acked.remove(&watched);
            }
            let got =
                GotAlert { at_ms: at_ms - self.start_ms, instance: watched.clone(), kind: t.kind(), severity: t.severity(), step: None };
            self.alerts.push(got);
        }
        self.record(decision, states, watched, at_ms);
    }

    /// One server or monitor is simulated; its parents are down when the test says so.
    fn parent_down(&self, server: &str, at_ms: i64) -> bool {
        self.down.iter().any(|&(s, from, to)| s == server && (from..to).contains(&at_ms))
    }

    /// Keep a decision's state and record what it told and its notifications.
    fn record(&mut self, decision: Decision, states: &mut BTreeMap<Watched, AlertState>, watched: Watched, at_ms: i64) {
        let Decision { state, notifications, told, .. } = decision;
        if state == AlertState::default() {
            states.remove(&watched);
        } else {
            states.insert(watched.clone(), state);
        }
        for Told { kind, severity, step } in told {
            self.alerts.push(GotAlert { at_ms: at_ms - self.start_ms, instance: watched.clone(), kind, severity, step });
        }
        for n in notifications {
            self.notes.push(GotNotification {
                at_ms: at_ms - self.start_ms,
                to: n.recipient,
                medium: n.medium.as_str(),
                kind: n.kind,
                status: n.status.as_str(),
            });
        }
    }

    /// Let time pass up to `until_ms` (or to just before it, unless `inclusive`): the
    /// acknowledgements, and what time decides for each instance (reminders, escalation steps,
    /// the end of flapping), in time order.
    fn pass_time(&mut self, scene: &Scene, states: &mut BTreeMap<Watched, AlertState>, until_ms: i64, inclusive: bool) {
        let reached = |t: i64| t < until_ms || (inclusive && t == until_ms);
        loop {
            let due = states.iter().filter_map(|(w, s)| Some((next_due_ms(scene, &key_of(scene, w).rule, s)?, w.clone()))).min();
            match (self.acks.first().copied(), due) {
                (Some(ack), due) if reached(ack) && due.as_ref().is_none_or(|(t, _)| ack <= *t) => {
                    self.acks.remove(0);
                    self.acked.extend(states.iter().filter(|(_, s)| s.is_firing()).map(|(w, _)| w.clone()));
                }
                (_, Some((at_ms, watched))) if reached(at_ms) => {
                    let before = Instance { state: states[&watched].clone(), open_alert_id: None };
                    let acked = self.acked.contains(&watched);
                    let parent_down = |server: &str| self.parent_down(server, at_ms);
                    let Some(decision) = timed(scene, &key_of(scene, &watched), &before, acked, at_ms, &parent_down) else { break };
                    self.record(decision, states, watched, at_ms);
                }
                _ => break,
            }
        }
    }

    fn scene(&self, server: &'a str, host: &'a str, monitor: Option<&'a PortMonitor>, report: Option<&'a HostReport>) -> Scene<'a> {
        Scene { config: self.config, project: self.project, server, host, monitor, report }
    }
}

/// The key of a watched instance in `scene` (a port's needs the scene's monitor).
fn key_of(scene: &Scene, watched: &Watched) -> InstanceKey {
    match watched {
        Watched::Port(port) => scene.key(RuleId::Port(scene.monitor.map(|m| m.name.clone()).unwrap_or_default()), port.to_string()),
        Watched::Rule { rule, subject } => scene.key(rule.clone(), subject.clone()),
    }
}

/// The latest offset a test expects something at (transitions or notifications), in epoch ms:
/// time runs at least that far.
fn horizon(case: &TestCase, start_ms: i64) -> Result<i64, String> {
    let ats = case.expect.iter().map(|e| &e.at).chain(case.notifications.iter().flatten().map(|n| &n.at));
    let mut latest = start_ms;
    for at in ats {
        latest = latest.max(start_ms + offset(at).map_err(|e| format!("expect: {e}"))?);
    }
    Ok(latest)
}

/// Run one test; `Ok(None)` passed, `Ok(Some(explanation))` failed.
fn run_case(case: &TestCase, config: &Config) -> Result<Option<String>, String> {
    let start_ms = match &case.start {
        Some(s) => s.parse::<jiff::Timestamp>().map_err(|e| format!("bad start `{s}`: {e}"))?.as_millisecond(),
        None => DEFAULT_START_MS,
    };
    let (target, is_server) = match (&case.monitor, &case.server) {
        (Some(monitor), None) => (monitor, false),
        (None, Some(server)) => (server, true),
        (Some(_), Some(_)) => return Err("give `monitor` or `server`, not both".into()),
        (None, None) => return Err("a test needs `monitor` (a port monitor) or `server` (host reports)".into()),
    };
    let (project_name, name) = target.split_once('/').ok_or_else(|| format!("`{target}` must be `project/name`"))?;
    let project = config.projects.get(project_name).ok_or_else(|| format!("no project `{project_name}`"))?;
    let mut down = Vec::new();
    for d in &case.parents_down {
        if !project.servers.contains_key(&d.server) {
            let hint = did_you_mean(&d.server, project.servers.keys().map(String::as_str)).map_or(String::new(), |h| format!("; {h}"));
            return Err(format!("parents_down: no server `{}` in `{project_name}`{hint}", d.server));
        }
        let from = offset(&d.from).map_err(|e| format!("parents_down: {e}"))?;
        let to = d.to.as_deref().map(offset).transpose().map_err(|e| format!("parents_down: {e}"))?;
        down.push((d.server.as_str(), start_ms + from, to.map_or(i64::MAX, |to| start_ms + to)));
    }
    let mut acks = Vec::new();
    for at in &case.acks {
        acks.push(start_ms + offset(at).map_err(|e| format!("acks: {e}"))?);
    }
    acks.sort_unstable();
    let mut recorder = Recorder { config, project, start_ms, down, acks, acked: BTreeSet::new(), alerts: Vec::new(), notes: Vec::new() };
    let expected = if is_server {
        let server = project.servers.get(name).ok_or_else(|| {
            let hint = did_you_mean(name, project.servers.keys().map(String::as_str)).map_or(String::new(), |h| format!("; {h}"));
            format!("no server `{name}` in `{project_name}`{hint}")
        })?;
        run_server(case, &mut recorder, server)?
    } else {
        let monitor = project.port_monitors.get(name).ok_or_else(|| format!("no port monitor `{name}` in `{project_name}`"))?;
        run_monitor(case, &mut recorder, monitor)?
    };
    recorder.alerts.sort_by(|a, b| (a.at_ms, &a.instance, a.kind).cmp(&(b.at_ms, &b.instance, b.kind)));
    compare(case, expected, &recorder.alerts, &recorder.notes)
}

/// The expectations of a test, as (offset, instance) in time order.
type Expected<'a> = Vec<(i64, Watched, &'a ExpectAlert)>;

fn run_monitor<'c, 'a>(case: &'c TestCase, recorder: &mut Recorder<'a>, monitor: &'a PortMonitor) -> Result<Expected<'c>, String> {
    let server_fields = [
        ("interval", case.interval.is_some()),
        ("series", !case.series.is_empty()),
        ("processes", !case.processes.is_empty()),
        ("boot_times", case.boot_times.is_some()),
        ("silent", !case.silent.is_empty()),
        ("logs", !case.logs.is_empty()),
    ];
    if let Some((field, _)) = server_fields.iter().find(|(_, used)| *used) {
        return Err(format!("`{field}` is for a `server` test; a `monitor` test has `ports`, checked at the monitor's interval"));
    }
    let ports = case.ports.as_ref().ok_or("a `monitor` test needs `ports`")?;
    let mut expected = Vec::new();
    for e in &case.expect {
        let port = match (e.port, &e.rule) {
            (Some(port), None) if e.subject.is_none() => port,
            _ => {
                return Err(format!("expect at {}: a `monitor` test expects a `port` (`rule`/`subject` are for a `server` test)", e.at));
            }
        };
        expected.push((offset(&e.at).map_err(|err| format!("expect: {err}"))?, Watched::Port(port), e));
    }
    let mut series = BTreeMap::new();
    for (port, text) in ports {
        if !monitor.ports.contains(port) {
            return Err(format!("port {port} is not one of the monitor's ports {:?}", monitor.ports));
        }
        series.insert(*port, parse_series(text).map_err(|e| format!("port {port}: {e}"))?);
    }
    let interval_ms = monitor.interval.0.as_millis() as i64;
    let steps = series.values().map(Vec::len).max().unwrap_or(0);
    let scene = recorder.scene(monitor.server.as_deref().unwrap_or_default(), &monitor.host, Some(monitor), None);
    let mut states = BTreeMap::new();
    for step in 0..steps {
        let at_ms = recorder.start_ms + step as i64 * interval_ms;
        recorder.pass_time(&scene, &mut states, at_ms, true);
        for (port, results) in &series {
            let Some(&ok) = results.get(step) else { continue };
            let observed = rules::port_check(monitor, *port, (!ok).then_some("connection refused"));
            recorder.decide(&scene, observed, &mut states, Watched::Port(*port), at_ms);
        }
    }
    let last_step_ms = recorder.start_ms + steps.saturating_sub(1) as i64 * interval_ms;
    recorder.pass_time(&scene, &mut states, last_step_ms.max(horizon(case, recorder.start_ms)?), true);
    Ok(expected)
}

/// Every rule id the server's policies can raise an alert under.
fn possible_rules(project: &Project, policy: Option<&AlertPolicy>, server: &str) -> BTreeSet<RuleId> {
    let mut ids = BTreeSet::new();
    if let Some(policy) = policy {
        ids.extend(policy.rules.iter().map(|r| RuleId::Metric(r.metric.clone())));
        if policy.no_data.is_some() {
            ids.insert(RuleId::NoData);
        }
        if policy.restart {
            ids.insert(RuleId::Restart);
        }
    }
    for pp in project.process_policies.values().filter(|pp| pp.applies_to(server)) {
        let aspects = [
            (ProcessAspect::Count, pp.count_min.is_some() || pp.count_max.is_some()),
            (ProcessAspect::Cpu, pp.cpu.is_some()),
            (ProcessAspect::Memory, pp.memory.is_some()),
        ];
        ids.extend(aspects.iter().filter(|(_, on)| *on).map(|(aspect, _)| RuleId::Process { policy: pp.name.clone(), aspect: *aspect }));
    }
    for lp in project.log_policies.values().filter(|lp| lp.servers.iter().any(|s| s == server)) {
        let files = lp.rules.iter().enumerate().filter(|(_, r)| matches!(r, LogRule::File { .. }));
        ids.extend(files.map(|(index, _)| RuleId::Log { policy: lp.name.clone(), index }));
    }
    ids
}

fn unknown_rule(rule: &RuleId, server: &str, possible: &BTreeSet<RuleId>) -> String {
    let mut list: Vec<String> = possible.iter().map(RuleId::to_string).collect();
    list.sort();
    let list = if list.is_empty() { "none".to_string() } else { list.join(", ") };
    format!("rule `{rule}` cannot fire on `{server}`: its policies give {list}")
}

/// What reaches serve from a server's agent, in the order serve handles it.
enum Contact<'a> {
    Report(Box<HostReport>),
    /// A log hit, with the file it names.
    Log(&'a LogLine, &'a str),
}

/// The host reports of a server test, one per step that has a value and is not silent, and the
/// time of its last step.
fn reports(case: &TestCase, start_ms: i64) -> Result<(Vec<HostReport>, i64), String> {
    let interval_ms = match &case.interval {
        Some(text) => offset(text).map_err(|e| format!("interval: {e}"))?,
        None => 60_000,
    };
    if interval_ms == 0 {
        return Err("interval: must be longer than 0".into());
    }
    let mut metrics = Vec::new();
    for (key, text) in &case.series {
        let (name, subject) = match key.split_once('{') {
            Some((name, rest)) => {
                let subject = rest.strip_suffix('}').filter(|s| !s.is_empty() && !s.contains(['{', '}']));
                (name, Some(subject.ok_or_else(|| format!("series `{key}`: write a subject as `metric{{subject}}`"))?.to_string()))
            }
            None => (key.as_str(), None),
        };
        let name = catalog::lookup(name).map(|m| m.name).ok_or_else(|| {
            let hint = did_you_mean(name, catalog::METRICS.iter().map(|m| m.name)).map_or(String::new(), |h| format!("; {h}"));
            format!("series `{key}`: unknown metric `{name}`{hint}")
        })?;
        metrics.push((name, subject, parse_values(text).map_err(|e| format!("series `{key}`: {e}"))?));
    }
    let values = |text: &Option<String>, what: String| text.as_deref().map(parse_values).transpose().map_err(|e| format!("{what}: {e}"));
    let mut processes = Vec::new();
    for (name, p) in &case.processes {
        let field = |aspect: &str| format!("processes `{name}` {aspect}");
        let count = values(&p.count, field("count"))?;
        processes.push((name, count, values(&p.cpu, field("cpu"))?, values(&p.memory, field("memory"))?));
    }
    let boot_times = values(&case.boot_times, "boot_times".to_string())?.unwrap_or_default();
    let silences: Vec<(i64, i64)> = case
        .silent
        .iter()
        .map(|s| {
            let (from, to) = (offset(&s.from).map_err(|e| format!("silent: {e}"))?, offset(&s.to).map_err(|e| format!("silent: {e}"))?);
            if from < to { Ok((from, to)) } else { Err(format!("silent: `from: {}` must come before `to: {}`", s.from, s.to)) }
        })
        .collect::<Result<_, String>>()?;

    let lengths = metrics.iter().map(|m| m.2.len()).chain(std::iter::once(boot_times.len()));
    let lengths = lengths.chain(processes.iter().flat_map(|(_, c, cpu, mem)| [c, cpu, mem].map(|s| s.as_ref().map_or(0, Vec::len))));
    let steps = lengths.max().unwrap_or(0);
    let at = |values: &Option<Vec<Option<f64>>>, step: usize| values.as_ref().and_then(|v| v.get(step).copied().flatten());
    let mut out = Vec::new();
    let mut boot_time = 0;
    for step in 0..steps {
        let offset_ms = step as i64 * interval_ms;
        let mut report = HostReport {
            facts: Facts { boot_time, ..Facts::default() },
            metrics: Vec::new(),
            processes: Vec::new(),
            process_counts: BTreeMap::new(),
            skipped_mounts: Vec::new(),
            at_ms: start_ms + offset_ms,
        };
        let mut any = false;
        if let Some(value) = boot_times.get(step).copied().flatten() {
            boot_time = whole(value, &format!("boot_times at {}", show_ms(offset_ms)))?;
            report.facts.boot_time = boot_time;
            any = true;
        }
        for (name, subject, values) in &metrics {
            if let Some(value) = values.get(step).copied().flatten() {
                report.metrics.push(MetricValue { name, subject: subject.clone(), value });
                any = true;
            }
        }
        for (name, count, cpu, memory) in &processes {
            let (cpu, memory) = (at(cpu, step), at(memory, step));
            let count = match at(count, step) {
                Some(n) => whole(n, &format!("processes `{name}` count at {}", show_ms(offset_ms)))?,
                None if cpu.is_some() || memory.is_some() => 1,
                None => continue,
            };
            any = true;
            if count == 0 {
                if cpu.is_some() || memory.is_some() {
                    return Err(format!("processes `{name}` at {}: cpu or memory given while count is 0", show_ms(offset_ms)));
                }
                continue;
            }
            report
                .process_counts
                .insert(name.to_string(), u32::try_from(count).map_err(|_| format!("processes `{name}`: count {count} is too large"))?);
            if cpu.is_some() || memory.is_some() {
                // One entry with the sums: ProcessPolicy adds up the matching processes anyway.
                let info =
                    ProcessInfo { pid: 0, name: name.to_string(), user: String::new(), cpu, memory: memory.unwrap_or(0.0), rss_bytes: 0 };
                report.processes.push(info);
            }
        }
        if any && !silences.iter().any(|(from, to)| (*from..*to).contains(&offset_ms)) {
            out.push(report);
        }
    }
    Ok((out, start_ms + steps.saturating_sub(1) as i64 * interval_ms))
}

/// The log hits of a server test with the file each names, checked against the rules the
/// server's LogPolicies have (`possible`).
fn log_hits<'c>(
    case: &'c TestCase,
    project: &'c Project,
    server: &str,
    possible: &BTreeSet<RuleId>,
    start_ms: i64,
) -> Result<Vec<(i64, Contact<'c>)>, String> {
    let mut out = Vec::new();
    for line in &case.logs {
        let id = RuleId::Log { policy: line.policy.clone(), index: line.rule };
        if !possible.contains(&id) {
            let logs: BTreeSet<RuleId> = possible.iter().filter(|r| matches!(r, RuleId::Log { .. })).cloned().collect();
            return Err(format!("logs: {}", unknown_rule(&id, server, &logs)));
        }
        let default_file = project.log_policies.get(&line.policy).and_then(|lp| match lp.rules.get(line.rule) {
            Some(LogRule::File { file, .. }) => Some(file.as_str()),
            _ => None,
        });
        let file = line.file.as_deref().or(default_file).unwrap_or_default();
        out.push((start_ms + offset(&line.at).map_err(|e| format!("logs: {e}"))?, Contact::Log(line, file)));
    }
    Ok(out)
}

fn run_server<'c, 'a>(case: &'c TestCase, recorder: &mut Recorder<'a>, server: &'a Server) -> Result<Expected<'c>, String> {
    if case.ports.is_some() {
        return Err("`ports` is for a `monitor` test; a `server` test gives `series`".into());
    }
    let project = recorder.project;
    let policy = rules::server_policy(recorder.config, project, server);
    let possible = possible_rules(project, policy, &server.name);
    let mut expected = Vec::new();
    for e in &case.expect {
        let rule: RuleId = match (&e.rule, e.port) {
            (Some(rule), None) => rule.parse().map_err(|err| format!("expect at {}: {err}", e.at))?,
            _ => return Err(format!("expect at {}: a `server` test expects a `rule` (and a `subject` where it has one)", e.at)),
        };
        if !possible.contains(&rule) {
            return Err(format!("expect at {}: {}", e.at, unknown_rule(&rule, &server.name, &possible)));
        }
        let instance = Watched::Rule { rule, subject: e.subject.clone().unwrap_or_default() };
        expected.push((offset(&e.at).map_err(|err| format!("expect: {err}"))?, instance, e));
    }
    let (reports, last_step_ms) = reports(case, recorder.start_ms)?;
    let mut contacts = log_hits(case, project, &server.name, &possible, recorder.start_ms)?;
    contacts.extend(reports.into_iter().map(|r| (r.at_ms, Contact::Report(Box::new(r)))));
    // A report and a hit at one instant: serve handles a batch's reports before its hits.
    contacts.sort_by_key(|(at_ms, contact)| (*at_ms, matches!(contact, Contact::Log(..))));
    let end_ms = contacts.last().map_or(last_step_ms, |(at_ms, _)| last_step_ms.max(*at_ms)).max(horizon(case, recorder.start_ms)?);
    if server.paused {
        return Ok(expected); // serve takes nothing from a paused server
    }
    let last_seen_ms = recorder.start_ms;
    let mut sim = HostSim { recorder, server, policy, states: BTreeMap::new(), last_seen_ms, boot_time: None };
    for (at_ms, contact) in contacts {
        sim.pass_time(at_ms);
        sim.silence_until(at_ms, false);
        match contact {
            Contact::Report(report) => sim.report(&report),
            Contact::Log(line, file) => {
                if let Some(o) = rules::log_hit(project, &server.name, &line.policy, line.rule, file, &line.line) {
                    sim.observe(o, at_ms, None);
                }
            }
        }
        sim.heard_from(at_ms);
    }
    sim.pass_time(end_ms);
    sim.silence_until(end_ms, true);
    sim.pass_time(end_ms);
    Ok(expected)
}

/// One server's alert instances driven as serve's engine drives them.
struct HostSim<'r, 'a> {
    recorder: &'r mut Recorder<'a>,
    server: &'a Server,
    policy: Option<&'a AlertPolicy>,
    /// Instances not in their default state.
    states: BTreeMap<Watched, AlertState>,
    /// When serve last heard from the server; at first the test's start (serve's, so to speak).
    last_seen_ms: i64,
    /// The boot time of the last report.
    boot_time: Option<u64>,
}

impl HostSim<'_, '_> {
    /// Decide one observation at `at_ms` (with the report behind it, for the snapshot).
    fn observe(&mut self, o: Observed, at_ms: i64, report: Option<&HostReport>) {
        let scene = Scene { report, ..self.recorder.scene(&self.server.name, &self.server.host, None, None) };
        let watched = Watched::Rule { rule: o.rule.clone(), subject: o.subject.clone() };
        self.recorder.decide(&scene, o, &mut self.states, watched, at_ms);
    }

    /// What time decides up to `until_ms`, that instant included.
    fn pass_time(&mut self, until_ms: i64) {
        let scene = self.recorder.scene(&self.server.name, &self.server.host, None, None);
        self.recorder.pass_time(&scene, &mut self.states, until_ms, true);
    }

    /// One report: its thresholds, the instances it no longer mentions, a restart.
    fn report(&mut self, report: &HostReport) {
        let previous_boot = self.boot_time.replace(report.facts.boot_time);
        let project = self.recorder.project;
        let existing: Vec<(RuleId, String)> = self
            .states
            .keys()
            .filter_map(|w| match w {
                Watched::Rule { rule, subject } => Some((rule.clone(), subject.clone())),
                Watched::Port(_) => None,
            })
            .collect();
        let observed = rules::report_observations(
            project,
            self.policy,
            &self.server.name,
            report,
            existing.iter().map(|(r, s)| (r, s.as_str())),
            previous_boot,
        );
        for o in observed {
            self.observe(o, report.at_ms, Some(report));
        }
    }

    /// Any contact ends "no data" and restarts its window.
    fn heard_from(&mut self, at_ms: i64) {
        self.last_seen_ms = at_ms;
        if let Some(o) = rules::no_data(self.policy, at_ms, at_ms) {
            self.observe(o, at_ms, None);
        }
    }

    /// serve's periodic check: fire "no data" if the window since the last contact ends
    /// before `until_ms` (or at it, when `inclusive`).
    fn silence_until(&mut self, until_ms: i64, inclusive: bool) {
        let Some(window) = self.policy.and_then(|p| p.no_data) else { return };
        let seen = self.last_seen_ms;
        let deadline = seen + window.0.as_millis() as i64;
        if deadline > until_ms || (deadline == until_ms && !inclusive) {
            return;
        }
        if let Some(o) = rules::no_data(self.policy, seen, deadline).filter(|o| o.observation != Observation::Check(None)) {
            self.observe(o, deadline, None);
        }
    }
}

/// Compare what happened with what the test expects; `Some(explanation)` on a mismatch.
fn compare(case: &TestCase, mut expected: Expected, alerts: &[GotAlert], notes: &[GotNotification]) -> Result<Option<String>, String> {
    expected.sort_by(|a, b| (a.0, &a.1, a.2.alert).cmp(&(b.0, &b.1, b.2.alert)));
    let mut failure = String::new();
    let alerts_match = expected.len() == alerts.len()
        && expected.iter().zip(alerts).all(|((t, instance, e), g)| {
            *t == g.at_ms
                && *instance == g.instance
                && e.alert == g.kind
                && e.severity.is_none_or(|s| s == g.severity)
                && e.step.is_none_or(|n| Some(n) == g.step)
        });
    if !alerts_match {
        let _ = writeln!(failure, "  alerts expected:");
        for (t, instance, e) in &expected {
            let sev = e.severity.map_or(String::new(), |s| format!(" {s}"));
            let step = e.step.map_or(String::new(), |n| format!(" step {n}"));
            let _ = writeln!(failure, "    {} {instance} {}{step}{sev}", show_ms(*t), e.alert);
        }
        let _ = writeln!(failure, "  alerts got:");
        for g in alerts {
            let step = g.step.map_or(String::new(), |n| format!(" step {n}"));
            let _ = writeln!(failure, "    {} {} {}{step} {}", show_ms(g.at_ms), g.instance, g.kind, g.severity);
        }
    }
    if let Some(expected) = &case.notifications {
        let expected: Vec<(i64, &ExpectNotification)> = expected
            .iter()
            .map(|e| offset(&e.at).map(|t| (t, e)))
            .collect::<Result<_, _>>()
            .map_err(|err| format!("notifications: {err}"))?;
        let matches = expected.len() == notes.len()
            && expected.iter().zip(notes).all(|((t, e), g)| {
                *t == g.at_ms
                    && e.to == g.to
                    && e.medium == g.medium
                    && e.kind.as_ref().is_none_or(|k| k == g.kind.as_str())
                    && e.status.as_ref().is_none_or(|s| s == g.status)
            });
        if !matches {
            let _ = writeln!(failure, "  notifications expected:");
            for (t, e) in &expected {
                let (kind, status) = (e.kind.as_deref().unwrap_or("*"), e.status.as_deref().unwrap_or("*"));
                let _ = writeln!(failure, "    {} {} {} {kind} {status}", show_ms(*t), e.medium, e.to);
            }
            let _ = writeln!(failure, "  notifications got:");
            for g in notes {
                let _ = writeln!(failure, "    {} {} {} {} {}", show_ms(g.at_ms), g.medium, g.to, g.kind, g.status);
            }
        }
    }
    Ok((!failure.is_empty()).then_some(failure))
}

/// 2026-01-05T00:00:00Z, a Monday: the default start of a test's clock.
const DEFAULT_START_MS: i64 = 1_767_571_200_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_notation() {
        assert_eq!(parse_series("ok down*3 . x").unwrap(), vec![true, false, false, false, true, false]);
        assert!(parse_series("maybe").is_err());
        assert!(parse_series("ok*z").is_err());
        assert!(parse_series("ok*100001").is_err());
        assert_eq!(jiff::Timestamp::from_millisecond(DEFAULT_START_MS).unwrap().to_string(), "2026-01-05T00:00:00Z");
    }

    fn values(series: &str) -> Vec<Option<f64>> {
        parse_values(series).unwrap_or_else(|e| panic!("{series}: {e}"))
    }

    #[test]
    fn expanding_notation_like_promtool() {
        let some = |v: &[f64]| v.iter().copied().map(Some).collect::<Vec<_>>();
        assert_eq!(values("0+10x3"), some(&[0.0, 10.0, 20.0, 30.0]));
        assert_eq!(values("5x2"), some(&[5.0, 5.0, 5.0]));
        assert_eq!(values("-2+4x3"), some(&[-2.0, 2.0, 6.0, 10.0]));
        assert_eq!(values("1-2x4"), some(&[1.0, -1.0, -3.0, -5.0, -7.0]));
        assert_eq!(values("1.5e2 2e-1x1"), some(&[150.0, 0.2, 0.2]));
        assert_eq!(values("_"), vec![None]);
        assert_eq!(values("1 _x3 2"), vec![Some(1.0), None, None, None, Some(2.0)]);
        assert_eq!(values("50 96x2 _ 40"), vec![Some(50.0), Some(96.0), Some(96.0), Some(96.0), None, Some(40.0)]);
        assert_eq!(values("  "), vec![]);
    }

    #[test]
    fn malformed_tokens_are_named() {
        for (series, token) in [
            ("1 9z", "9z"),
            ("5x", "5x"),
            ("x3", "x3"),
            ("5+x3", "5+x3"),
            ("5+3", "5+3"),
            ("1xz", "1xz"),
            ("nan", "nan"),
            ("inf", "inf"),
            ("1e999", "1e999"),
            ("_+1x2", "_+1x2"),
            ("5x-1", "5x-1"),
        ] {
            let err = parse_values(series).expect_err(series);
            assert!(err.contains(&format!("`{token}`")), "{series}: {err}");
        }
        assert!(parse_values("1x99999").is_ok());
        assert!(parse_values("1x100000").unwrap_err().contains("more than 100000 values"));
        assert!(parse_values("1x18446744073709551615").is_err(), "a count near usize::MAX is refused, not allocated");
    }

    #[test]
    fn whole_numbers_for_counts_and_boot_times() {
        assert_eq!(whole(3.0, "count"), Ok(3));
        assert!(whole(1.5, "count").unwrap_err().contains("`1.5`"));
        assert!(whole(-1.0, "count").is_err());
    }

    #[test]
    fn instances_print_with_their_subject() {
        assert_eq!(Watched::Port(80).to_string(), "port 80");
        assert_eq!(Watched::Rule { rule: RuleId::Metric("cpu.usage".into()), subject: String::new() }.to_string(), "metric:cpu.usage");
        assert_eq!(
            Watched::Rule { rule: RuleId::Metric("disk.usage".into()), subject: "/data".into() }.to_string(),
            "metric:disk.usage{/data}"
        );
    }
}
