//! What an observation means for which alert instance — pure, shared by the engine and
//! `watchkeeper test`: a port check, a down-check verdict, a host report (AlertPolicy metric
//! thresholds, ProcessPolicy limits, vanished subjects, restarts), a log hit, and silence
//! (`no_data`). Each becomes an [`Observed`]: the instance's rule and subject, how the rule
//! counts ([`RuleKind`]), the [`Observation`] for the state machine, and the words for messages.

use std::collections::BTreeSet;

use serde_json::json;

use super::rule::{ProcessAspect, RuleId};
use super::{Observation, RuleKind, Severity};
use crate::config::model::{
    AlertPolicy, Config, DownCheck, Limits, LogRule, MetricRule, PolicyRef, PortMonitor, ProcessPolicy, Project, Server,
};
use crate::protocol::{CheckResult, ProcessInfo, Report, Verdict};

/// Event rules (log keywords, restarts) notify at most once per rule in this window.
pub const EVENT_RATE_LIMIT_MS: i64 = 5 * 60_000;

/// A boot time that moved by more than this is a reboot (the kernel derives `btime` from the wall
/// clock, so an NTP step moves it a little without one).
pub const BOOT_TIME_TOLERANCE_SECS: u64 = 2;

/// How many processes a snapshot keeps, by CPU and by memory.
const SNAPSHOT_TOP: usize = 5;

/// What one check, report or log hit means for one alert instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub rule: RuleId,
    pub subject: String,
    pub kind: RuleKind,
    pub observation: Observation,
    /// What is being watched, for messages: `cpu.usage`, `disk.usage of /`, `process nginx count`.
    pub what: String,
    /// The value behind it: `cpu.usage 97.3 (warning 80, fatal 95)`.
    pub detail: String,
}

/// The AlertPolicy a server uses, if any.
pub fn server_policy<'a>(config: &'a Config, project: &'a Project, server: &Server) -> Option<&'a AlertPolicy> {
    match server.policy.as_ref()? {
        PolicyRef::Project(name) => project.alert_policies.get(name),
        PolicyRef::Shared(name) => config.shared_policies.get(name),
    }
}

/// A port monitor's check of `port`: passed, or failed with `error` (what the connect said).
/// Counted: fires on the `failures`-th consecutive failure, resolves after `recoveries` passes.
pub fn port_check(monitor: &PortMonitor, port: u16, error: Option<&str>) -> Observed {
    Observed {
        rule: RuleId::Port(monitor.name.clone()),
        subject: port.to_string(),
        kind: RuleKind::Counted { failures: monitor.failures, recoveries: monitor.recoveries },
        observation: Observation::Check(error.is_some().then_some(Severity::Fatal)),
        what: format!("port {port} of {} ({})", monitor.name, monitor.host),
        detail: error.map_or_else(|| "connection succeeded".to_string(), str::to_string),
    }
}

/// A down-check result from its detector, as an observation of the target's instance: a
/// warning when only the service port fails, fatal when the liveness port fails too.
pub fn down_check(check: &DownCheck, result: &CheckResult) -> Observed {
    let verdict = Verdict::of(result);
    let detail = match verdict {
        Verdict::Up => "port answers".to_string(),
        Verdict::ServiceDown => format!("service down: port {} fails, liveness port {} answers", check.port, check.liveness_port),
        _ => format!("host down: port {} and liveness port {} fail", check.port, check.liveness_port),
    };
    let detail = match &result.error {
        Some(e) if verdict != Verdict::Up => format!("{detail} ({e})"),
        _ => detail,
    };
    Observed {
        rule: RuleId::DownCheck(check.name.clone()),
        subject: check.port.to_string(),
        kind: RuleKind::Counted { failures: check.failures, recoveries: 1 },
        observation: Observation::Check(verdict.severity()),
        what: format!("port {} of {} ({}), checked from {}", check.port, check.target, check.ip, check.detector),
        detail,
    }
}

/// The level `value` reaches under warning/fatal thresholds (`below`: lower is worse).
pub fn level(value: f64, warning: Option<f64>, fatal: Option<f64>, below: bool) -> Option<Severity> {
    let crossed = |t: Option<f64>| t.is_some_and(|t| if below { value <= t } else { value >= t });
    if crossed(fatal) {
        Some(Severity::Fatal)
    } else if crossed(warning) {
        Some(Severity::Warning)
    } else {
        None
    }
}

fn thresholds_text(warning: Option<f64>, fatal: Option<f64>, below: bool) -> String {
    let side = if below { "at or below " } else { "" };
    match (warning, fatal) {
        (Some(w), Some(f)) => format!("warning {side}{w}, fatal {side}{f}"),
        (Some(w), None) => format!("warning {side}{w}"),
        (None, Some(f)) => format!("fatal {side}{f}"),
        (None, None) => String::new(),
    }
}

/// Rounded for messages: 97.3, 800000000.
fn show(value: f64) -> String {
    if value.abs() >= 1000.0 { format!("{value:.0}") } else { format!("{:.1}", value) }
}

/// Every threshold observation of `report` for a server under `policy` and the process
/// policies of its project. Subjects the report lacks produce nothing here; see [`vanished`].
pub fn observe_report(project: &Project, policy: Option<&AlertPolicy>, server: &str, report: &Report) -> Vec<Observed> {
    let mut out = Vec::new();
    if let Some(policy) = policy {
        for rule in &policy.rules {
            out.extend(metric_observations(rule, report));
        }
    }
    for pp in project.process_policies.values().filter(|pp| pp.applies_to(server)) {
        out.extend(process_observations(pp, report));
    }
    out
}

fn metric_observations<'a>(rule: &'a MetricRule, report: &'a Report) -> impl Iterator<Item = Observed> + 'a {
    report.metrics.iter().filter(move |m| m.name == rule.metric).map(move |m| {
        let subject = m.subject.clone().unwrap_or_default();
        let what = if subject.is_empty() { rule.metric.clone() } else { format!("{} of {subject}", rule.metric) };
        Observed {
            rule: RuleId::Metric(rule.metric.clone()),
            detail: format!("{what} is {} ({})", show(m.value), thresholds_text(rule.warning, rule.fatal, rule.below)),
            what,
            subject,
            kind: RuleKind::Threshold { for_ms: rule.for_.0.as_millis() as i64 },
            observation: Observation::Level(level(m.value, rule.warning, rule.fatal, rule.below)),
        }
    })
}

fn process_observations(pp: &ProcessPolicy, report: &Report) -> Vec<Observed> {
    let kind = RuleKind::Threshold { for_ms: pp.for_.0.as_millis() as i64 };
    let mut out = Vec::new();
    if pp.count_min.is_some() || pp.count_max.is_some() {
        let count: u32 = report.process_counts.iter().filter(|(name, _)| pp.matches(name)).map(|(_, n)| *n).sum();
        let low = pp.count_min.is_some_and(|min| count < min);
        let high = pp.count_max.is_some_and(|max| count > max);
        let bounds = match (pp.count_min, pp.count_max) {
            (Some(lo), Some(hi)) => format!("expected {lo}–{hi}"),
            (Some(lo), None) => format!("expected at least {lo}"),
            (None, Some(hi)) => format!("expected at most {hi}"),
            (None, None) => String::new(),
        };
        out.push(Observed {
            rule: RuleId::Process { policy: pp.name.clone(), aspect: ProcessAspect::Count },
            subject: String::new(),
            kind,
            observation: Observation::Level((low || high).then_some(pp.severity)),
            what: format!("process {} count", pp.process),
            detail: format!("{count} process(es) named {} running, {bounds}", pp.process),
        });
    }
    let matching: Vec<&ProcessInfo> = report.processes.iter().filter(|p| pp.matches(&p.name)).collect();
    let mut sum_of = |aspect: ProcessAspect, limits: &Option<Limits>, value: f64, unit: &str| {
        if let Some(limits) = limits {
            out.push(Observed {
                rule: RuleId::Process { policy: pp.name.clone(), aspect },
                subject: String::new(),
                kind,
                observation: Observation::Level(level(value, limits.warning, limits.fatal, false)),
                what: format!("process {} {aspect}", pp.process),
                detail: format!("{} {aspect} {}{unit} ({})", pp.process, show(value), thresholds_text(limits.warning, limits.fatal, false)),
            });
        }
    };
    let cpu: f64 = matching.iter().filter_map(|p| p.cpu).sum();
    let memory: f64 = matching.iter().map(|p| p.memory).sum();
    sum_of(ProcessAspect::Cpu, &pp.cpu, cpu, " % of one core");
    sum_of(ProcessAspect::Memory, &pp.memory, memory, " % of RAM");
    out
}

/// Instances of `server` that a report no longer mentions — a mount that was unmounted, an
/// interface that went away, a rule removed from the policy: their condition is gone, so they
/// observe "clear" (a pending one is dropped, a firing one resolves).
pub fn vanished<'a>(existing: impl IntoIterator<Item = (&'a RuleId, &'a str)>, observed: &[Observed]) -> Vec<(RuleId, String)> {
    let seen: BTreeSet<(&RuleId, &str)> = observed.iter().map(|o| (&o.rule, o.subject.as_str())).collect();
    existing
        .into_iter()
        .filter(|(rule, _)| rule.clears_when_unreported())
        .filter(|key| !seen.contains(key))
        .map(|(r, s)| (r.clone(), s.to_string()))
        .collect()
}

/// Everything one report means for its server, in the order serve applies it: the threshold
/// observations of [`observe_report`], a "clear" for each `existing` instance the report no
/// longer mentions ([`vanished`]), and a [`restart`] event. Serve and `watchkeeper test` both go
/// through here.
pub fn report_observations<'a>(
    project: &Project,
    policy: Option<&AlertPolicy>,
    server: &str,
    report: &Report,
    existing: impl IntoIterator<Item = (&'a RuleId, &'a str)>,
    previous_boot: Option<u64>,
) -> Vec<Observed> {
    let mut observed = observe_report(project, policy, server, report);
    let cleared = vanished(existing, &observed);
    observed.extend(cleared.into_iter().map(|(rule, subject)| Observed {
        what: rule.to_string(),
        rule,
        subject,
        // Only threshold rules vanish; clearing them is kind-independent.
        kind: RuleKind::Threshold { for_ms: 0 },
        observation: Observation::Level(None),
        detail: "no longer reported".into(),
    }));
    observed.extend(restart(policy, previous_boot, report));
    observed
}

/// A restart event when the boot time moved (AlertPolicy `restart: true`).
pub fn restart(policy: Option<&AlertPolicy>, previous_boot: Option<u64>, report: &Report) -> Option<Observed> {
    let previous = previous_boot?;
    let now = report.facts.boot_time;
    if !policy.is_some_and(|p| p.restart) || previous == 0 || now == 0 || now.abs_diff(previous) <= BOOT_TIME_TOLERANCE_SECS {
        return None;
    }
    let at = |secs: u64| jiff::Timestamp::from_second(secs as i64).map(|t| t.to_string()).unwrap_or_else(|_| secs.to_string());
    Some(Observed {
        rule: RuleId::Restart,
        subject: String::new(),
        kind: RuleKind::Event { rate_limit_ms: EVENT_RATE_LIMIT_MS },
        observation: Observation::Event(Severity::Warning),
        what: "server restart".to_string(),
        detail: format!("booted at {} (before: {})", at(now), at(previous)),
    })
}

/// The event a log hit raises, if the rule it names exists and is a file rule.
pub fn log_hit(project: &Project, server: &str, policy: &str, index: usize, file: &str, line: &str) -> Option<Observed> {
    let lp = project.log_policies.get(policy).filter(|lp| lp.servers.iter().any(|s| s == server))?;
    let LogRule::File { keyword, severity, .. } = lp.rules.get(index)? else { return None };
    if !line.contains(keyword.as_str()) {
        return None; // not what the rule asks for: an agent with stale rules, or a forged hit
    }
    Some(Observed {
        rule: RuleId::Log { policy: policy.to_string(), index },
        subject: String::new(),
        kind: RuleKind::Event { rate_limit_ms: EVENT_RATE_LIMIT_MS },
        observation: Observation::Event(*severity),
        what: format!("`{keyword}` in {file}"),
        detail: line.to_string(),
    })
}

/// The "no data" observation for a server last heard from at `last_seen_ms`: failed (fatal)
/// once the policy's `no_data` window has passed, good otherwise. `None` when the policy has no
/// `no_data`.
pub fn no_data(policy: Option<&AlertPolicy>, last_seen_ms: i64, now_ms: i64) -> Option<Observed> {
    let window = policy?.no_data?.0.as_millis() as i64;
    let silent = now_ms - last_seen_ms;
    let failed = silent >= window;
    Some(Observed {
        rule: RuleId::NoData,
        subject: String::new(),
        kind: RuleKind::Counted { failures: 1, recoveries: 1 },
        observation: Observation::Check(failed.then_some(Severity::Fatal)),
        what: "no data (communication failure)".to_string(),
        detail: if failed {
            format!("no report for {} s (no_data: {} s)", silent / 1000, window / 1000)
        } else {
            "reports arrive again".to_string()
        },
    })
}

/// What a fired alert keeps of the moment: CPU, memory, load, disks, network, the top processes
/// by CPU and by memory, and every process of the report (`processes`, busiest CPU first; the
/// ingest caps a report at 1 000), so the alert's page can list them all as they were.
pub fn snapshot(report: &Report) -> serde_json::Value {
    let value = |name: &str| report.value(name, None);
    let per = |name: &str| -> serde_json::Map<String, serde_json::Value> {
        report.metrics.iter().filter(|m| m.name == name).map(|m| (m.subject.clone().unwrap_or_default(), json!(m.value))).collect()
    };
    let mut by_cpu: Vec<&ProcessInfo> = report.processes.iter().collect();
    by_cpu.sort_by(|a, b| b.cpu.unwrap_or(0.0).total_cmp(&a.cpu.unwrap_or(0.0)));
    let mut by_memory: Vec<&ProcessInfo> = report.processes.iter().collect();
    by_memory.sort_by(|a, b| b.memory.total_cmp(&a.memory));
    json!({
        "at_ms": report.at_ms,
        "cpu": { "usage": value("cpu.usage"), "iowait": value("cpu.iowait"), "steal": value("cpu.steal") },
        "load": { "1": value("load.1"), "5": value("load.5"), "15": value("load.15") },
        "memory": { "usage": value("memory.usage"), "available": value("memory.available"), "swap_usage": value("swap.usage") },
        "disk": { "usage": per("disk.usage"), "io": per("disk.io") },
        "network": { "in_bps": per("network.in_bps"), "out_bps": per("network.out_bps") },
        "top_processes": {
            "cpu": by_cpu.iter().take(SNAPSHOT_TOP).collect::<Vec<_>>(),
            "memory": by_memory.into_iter().take(SNAPSHOT_TOP).collect::<Vec<_>>(),
        },
        "processes": by_cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::Dur;
    use crate::protocol::{Facts, MetricValue};
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn report(metrics: &[(&'static str, Option<&str>, f64)]) -> Report {
        Report {
            facts: Facts::default(),
            metrics: metrics.iter().map(|&(name, s, value)| MetricValue { name, subject: s.map(str::to_string), value }).collect(),
            processes: Vec::new(),
            process_counts: BTreeMap::new(),
            skipped_mounts: Vec::new(),
            at_ms: 0,
        }
    }

    #[test]
    fn a_snapshot_keeps_the_top_processes_and_every_process_busiest_first() {
        let mut r = report(&[("cpu.usage", None, 42.0)]);
        r.processes = (0..12)
            .map(|i| ProcessInfo { pid: i, name: format!("p{i}"), user: "root".into(), cpu: Some(f64::from(i)), memory: 1.0, rss_bytes: 1 })
            .collect();
        let s = snapshot(&r);
        assert_eq!(s["cpu"]["usage"], 42.0);
        assert_eq!(s["top_processes"]["cpu"].as_array().map(Vec::len), Some(SNAPSHOT_TOP));
        let pids: Vec<u64> = s["processes"].as_array().unwrap().iter().map(|p| p["pid"].as_u64().unwrap()).collect();
        assert_eq!(pids, (0..12).rev().collect::<Vec<u64>>());
    }

    fn policy(rules: Vec<MetricRule>) -> AlertPolicy {
        AlertPolicy {
            origin: None,
            name: "p".into(),
            description: None,
            builtin: false,
            no_data: Some(Dur(Duration::from_secs(120))),
            restart: true,
            rules,
            repeat: None,
            flapping: None,
        }
    }

    fn rule(metric: &str, warning: Option<f64>, fatal: Option<f64>, below: bool) -> MetricRule {
        MetricRule { metric: metric.into(), warning, fatal, below, for_: Dur(Duration::from_secs(60)) }
    }

    #[test]
    fn levels_follow_the_thresholds_in_both_directions() {
        assert_eq!(level(79.9, Some(80.0), Some(95.0), false), None);
        assert_eq!(level(80.0, Some(80.0), Some(95.0), false), Some(Severity::Warning));
        assert_eq!(level(99.0, Some(80.0), Some(95.0), false), Some(Severity::Fatal));
        assert_eq!(level(99.0, None, Some(95.0), false), Some(Severity::Fatal));
        assert_eq!(level(15.0, Some(20.0), Some(10.0), true), Some(Severity::Warning));
        assert_eq!(level(5.0, Some(20.0), Some(10.0), true), Some(Severity::Fatal));
        assert_eq!(level(50.0, Some(20.0), Some(10.0), true), None);
    }

    #[test]
    fn each_mount_is_its_own_instance() {
        let p = policy(vec![rule("disk.usage", Some(80.0), Some(90.0), false)]);
        let r = report(&[("disk.usage", Some("/"), 50.0), ("disk.usage", Some("/data"), 93.0), ("cpu.usage", None, 99.0)]);
        let project = Project::default();
        let got = observe_report(&project, Some(&p), "web-01", &r);
        let got: Vec<(String, String, Observation)> = got.into_iter().map(|o| (o.rule.to_string(), o.subject, o.observation)).collect();
        assert_eq!(
            got,
            vec![
                ("metric:disk.usage".into(), "/".into(), Observation::Level(None)),
                ("metric:disk.usage".into(), "/data".into(), Observation::Level(Some(Severity::Fatal))),
            ]
        );
    }

    #[test]
    fn vanished_subjects_and_removed_rules_clear_but_events_stay() {
        let observed = vec![Observed {
            rule: RuleId::Metric("disk.usage".into()),
            subject: "/".into(),
            kind: RuleKind::Threshold { for_ms: 0 },
            observation: Observation::Level(None),
            what: String::new(),
            detail: String::new(),
        }];
        let ids: Vec<RuleId> = ["metric:disk.usage", "metric:disk.usage", "restart", "process:x:count"].map(|r| r.parse().unwrap()).into();
        let existing = ids.iter().zip(["/", "/old", "", ""]);
        let cleared: Vec<(String, String)> = vanished(existing, &observed).into_iter().map(|(r, s)| (r.to_string(), s)).collect();
        assert_eq!(cleared, vec![("metric:disk.usage".to_string(), "/old".to_string()), ("process:x:count".to_string(), String::new())]);
    }

    #[test]
    fn restart_needs_a_moved_boot_time_and_the_policy_flag() {
        let p = policy(vec![]);
        let mut r = report(&[]);
        r.facts.boot_time = 1_000_000;
        assert!(restart(Some(&p), Some(1_000_001), &r).is_none(), "NTP jitter is not a reboot");
        assert!(restart(Some(&p), None, &r).is_none(), "first report ever");
        assert!(restart(Some(&p), Some(900_000), &r).is_some());
        let quiet = AlertPolicy { restart: false, ..p };
        assert!(restart(Some(&quiet), Some(900_000), &r).is_none());
    }

    #[test]
    fn no_data_fails_once_the_window_passed() {
        let p = policy(vec![]);
        let o = no_data(Some(&p), 0, 119_999).unwrap();
        assert_eq!(o.observation, Observation::Check(None));
        let o = no_data(Some(&p), 0, 120_000).unwrap();
        assert_eq!(o.observation, Observation::Check(Some(Severity::Fatal)));
        assert!(no_data(None, 0, 1_000_000).is_none());
    }
}
