//! `watchkeeper test`: policy unit tests. A `*.test.yaml` file gives synthetic probe results for
//! a port monitor of the tree and the alert transitions and notifications expected; the run
//! drives the same state machine, suppression and recipient logic serve uses, on a virtual clock.
//!
//! ```yaml
//! tests:
//!   - name: web-01 port 80 pages after three failed checks
//!     monitor: shop/web-01-ports          # project/name
//!     start: 2026-12-01T10:00:00+09:00     # optional; default 2026-01-05T00:00:00Z
//!     ports:
//!       80: "ok down*4 ok"                 # one result per interval: ok|up|. or down|fail|x, `*N` repeats
//!     expect:                              # every transition, in order
//!       - { at: 9m, port: 80, alert: fired, severity: fatal }
//!       - { at: 15m, port: 80, alert: resolved }
//!     notifications:                       # optional: then every notification, in order
//!       - { at: 9m, to: alice@example.com, medium: email, status: pending }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::alert::{self, AlertState, Observation, RuleKind, Severity, Transition};
use crate::config::load::{self, is_test_file};
use crate::config::model::Config;
use crate::config::values::Dur;
use crate::config::{Diagnostics, Sources};
use crate::notify::{self, AlertMessage, MessageKind};
use crate::store::{DeliveryStatus, Medium};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    monitor: String,
    start: Option<String>,
    ports: BTreeMap<u16, String>,
    #[serde(default)]
    expect: Vec<ExpectAlert>,
    notifications: Option<Vec<ExpectNotification>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectAlert {
    at: String,
    port: u16,
    alert: TransitionKind,
    severity: Option<Severity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TransitionKind {
    Fired,
    Escalated,
    Resolved,
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

/// What one transition looked like, for comparison and printing.
#[derive(Debug, Clone, PartialEq)]
struct GotAlert {
    at_ms: i64,
    port: u16,
    kind: TransitionKind,
    severity: Severity,
}

#[derive(Debug, Clone, PartialEq)]
struct GotNotification {
    at_ms: i64,
    to: String,
    medium: &'static str,
    kind: String,
    status: &'static str,
}

/// The outcome of every test in a tree.
pub struct Report {
    pub text: String,
    pub passed: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// Run every `*.test.yaml` under `dir` against `config` (the tree already compiled).
pub fn run(dir: &Path, config: &Config) -> Result<Report, TestError> {
    let mut diags = Diagnostics::default();
    let sources: Sources = load::read_matching(dir, is_test_file, &mut diags);
    if let Some(d) = diags.items.first() {
        let file = d.location.map(|l| sources.display(l.file)).unwrap_or_default();
        return Err(TestError::Invalid { file, message: d.message.clone() });
    }
    let mut report = Report { text: String::new(), passed: 0, failed: 0 };
    for (index, source) in sources.files.iter().enumerate() {
        let shown = sources.display(crate::config::diagnostic::FileId(index as u32));
        let file: TestFile = serde_saphyr::from_str(&source.text)
            .map_err(|e| TestError::Invalid { file: shown.clone(), message: e.without_snippet().to_string() })?;
        for case in &file.tests {
            let invalid = |message: String| TestError::Invalid { file: shown.clone(), message: format!("test `{}`: {message}", case.name) };
            match run_case(case, config).map_err(invalid)? {
                None => {
                    report.passed += 1;
                    let _ = writeln!(report.text, "PASS {} ({shown})", case.name);
                }
                Some(failure) => {
                    report.failed += 1;
                    let _ = writeln!(report.text, "FAIL {} ({shown})\n{failure}", case.name);
                }
            }
        }
    }
    let _ = writeln!(report.text, "{} passed, {} failed", report.passed, report.failed);
    Ok(report)
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
        out.extend(std::iter::repeat_n(ok, count));
    }
    Ok(out)
}

fn offset(at: &str) -> Result<i64, String> {
    Dur::parse(at).map(|d| d.0.as_millis() as i64)
}

fn medium_name(m: Medium) -> &'static str {
    match m {
        Medium::Email => "email",
        Medium::Sms => "sms",
        Medium::Webhook => "webhook",
    }
}

fn status_name(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::NotSent => "not_sent",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Delivered => "delivered",
    }
}

/// Run one test; `Ok(None)` passed, `Ok(Some(explanation))` failed.
fn run_case(case: &TestCase, config: &Config) -> Result<Option<String>, String> {
    let (project_name, monitor_name) = case.monitor.split_once('/').ok_or("`monitor` must be `project/name`")?;
    let project = config.projects.get(project_name).ok_or_else(|| format!("no project `{project_name}`"))?;
    let monitor = project.port_monitors.get(monitor_name).ok_or_else(|| format!("no port monitor `{monitor_name}` in `{project_name}`"))?;
    let start_ms = match &case.start {
        Some(s) => s.parse::<jiff::Timestamp>().map_err(|e| format!("bad start `{s}`: {e}"))?.as_millisecond(),
        None => DEFAULT_START_MS,
    };
    let mut series = BTreeMap::new();
    for (port, text) in &case.ports {
        if !monitor.ports.contains(port) {
            return Err(format!("port {port} is not one of the monitor's ports {:?}", monitor.ports));
        }
        series.insert(*port, parse_series(text)?);
    }
    let rule = RuleKind::Counted { failures: monitor.failures, recoveries: monitor.recoveries };
    let interval_ms = monitor.interval.0.as_millis() as i64;
    let steps = series.values().map(Vec::len).max().unwrap_or(0);
    let mut states: BTreeMap<u16, AlertState> = BTreeMap::new();
    let (mut alerts, mut notes) = (Vec::new(), Vec::new());
    for step in 0..steps {
        let at_ms = start_ms + step as i64 * interval_ms;
        for (port, results) in &series {
            let Some(&ok) = results.get(step) else { continue };
            let before = states.get(port).copied().unwrap_or_default();
            let (state, transition) = alert::step(before, rule, Observation::Check((!ok).then_some(Severity::Fatal)), at_ms);
            states.insert(*port, state);
            let Some(transition) = transition else { continue };
            let (kind, msg_kind, severity, since_ms) = match transition {
                Transition::Fired { severity, since_ms } => (TransitionKind::Fired, MessageKind::Fired, severity, since_ms),
                Transition::Escalated { to, .. } => (TransitionKind::Escalated, MessageKind::Escalated, to, at_ms),
                Transition::Resolved { severity, since_ms } => (TransitionKind::Resolved, MessageKind::Resolved, severity, since_ms),
                Transition::Event { .. } => continue,
            };
            alerts.push(GotAlert { at_ms: at_ms - start_ms, port: *port, kind, severity });
            let msg = AlertMessage {
                kind: msg_kind,
                severity,
                project: project.name.clone(),
                server: monitor.server.clone(),
                host: monitor.host.clone(),
                what: format!("port {port} of {} ({})", monitor.name, monitor.host),
                detail: if ok { "connection succeeded".into() } else { "connection refused".into() },
                started_at_ms: since_ms,
                at_ms,
                alert_id: None,
            };
            let suppressed = alert::suppress::suppression(project, monitor.server.as_deref(), at_ms, |_| false);
            for n in notify::build_notifications(config, &project.name, &msg, Some(monitor), suppressed.as_deref(), at_ms) {
                notes.push(GotNotification {
                    at_ms: at_ms - start_ms,
                    to: n.recipient,
                    medium: medium_name(n.medium),
                    kind: n.kind,
                    status: status_name(n.status),
                });
            }
        }
    }
    let mut failure = String::new();
    let expected: Vec<(i64, &ExpectAlert)> = case.expect.iter().map(|e| offset(&e.at).map(|t| (t, e))).collect::<Result<_, _>>()?;
    let alerts_match = expected.len() == alerts.len()
        && expected
            .iter()
            .zip(&alerts)
            .all(|((t, e), g)| *t == g.at_ms && e.port == g.port && e.alert == g.kind && e.severity.is_none_or(|s| s == g.severity));
    if !alerts_match {
        let _ = writeln!(failure, "  alerts expected:");
        for (t, e) in &expected {
            let sev = e.severity.map_or(String::new(), |s| format!(" {s:?}").to_lowercase());
            let _ = writeln!(failure, "    {} port {} {:?}{sev}", Dur(std::time::Duration::from_millis(*t as u64)), e.port, e.alert);
        }
        let _ = writeln!(failure, "  alerts got:");
        for g in &alerts {
            let _ = writeln!(
                failure,
                "    {} port {} {:?} {:?}",
                Dur(std::time::Duration::from_millis(g.at_ms as u64)),
                g.port,
                g.kind,
                g.severity
            );
        }
    }
    if let Some(expected) = &case.notifications {
        let expected: Vec<(i64, &ExpectNotification)> = expected.iter().map(|e| offset(&e.at).map(|t| (t, e))).collect::<Result<_, _>>()?;
        let matches = expected.len() == notes.len()
            && expected.iter().zip(&notes).all(|((t, e), g)| {
                *t == g.at_ms
                    && e.to == g.to
                    && e.medium == g.medium
                    && e.kind.as_ref().is_none_or(|k| *k == g.kind)
                    && e.status.as_ref().is_none_or(|s| s == g.status)
            });
        if !matches {
            let _ = writeln!(failure, "  notifications expected:");
            for (t, e) in &expected {
                let (kind, status) = (e.kind.as_deref().unwrap_or("*"), e.status.as_deref().unwrap_or("*"));
                let at = Dur(std::time::Duration::from_millis(*t as u64));
                let _ = writeln!(failure, "    {at} {} {} {kind} {status}", e.medium, e.to);
            }
            let _ = writeln!(failure, "  notifications got:");
            for g in &notes {
                let _ = writeln!(
                    failure,
                    "    {} {} {} {} {}",
                    Dur(std::time::Duration::from_millis(g.at_ms as u64)),
                    g.medium,
                    g.to,
                    g.kind,
                    g.status
                );
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
        assert_eq!(jiff::Timestamp::from_millisecond(DEFAULT_START_MS).unwrap().to_string(), "2026-01-05T00:00:00Z");
    }
}
