//! The agent ↔ collector protocol: the body of `POST /ingest/v1/report` and its answer.
//!
//! An agent sends what it has gathered since its last accepted request — host reports (oldest
//! first, several when it is catching up on a backlog), down-check results and log keyword hits —
//! with `Authorization: Bearer <ingest key>`. The answer acknowledges the request (the agent may
//! forget what it sent only then) and carries the server's *assignments*: the down-checks this
//! server is the detector of, and the log rules of the LogPolicies that name it. Assignments come
//! from the configuration serve has applied, so a merged change reaches agents on their next push.

use serde::{Deserialize, Serialize};

use crate::agent::host::Report;
use crate::config::model::{Config, LogRule};
use crate::config::raw::Severity;

/// The largest request body the collector reads (a full backlog batch of reports with processes).
pub const MAX_BODY_BYTES: usize = 8 << 20;
/// The most host reports one request may carry; an agent catching up sends several requests.
pub const MAX_REPORTS_PER_REQUEST: usize = 60;
/// The most metric values one report may carry.
pub const MAX_METRICS_PER_REPORT: usize = 2_000;
/// The most processes one report may carry (the agent sends the busiest).
pub const MAX_PROCESSES_PER_REPORT: usize = 1_000;
/// The most down-check results or log hits one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 1_000;

/// `POST /ingest/v1/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    pub project: String,
    /// The Server's name in the project; an unknown name is refused, never created.
    pub server: String,
    /// Host reports, oldest first.
    #[serde(default)]
    pub reports: Vec<Report>,
    /// Results of the down-checks this server runs as detector.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
    /// Log lines that matched an assigned rule.
    #[serde(default)]
    pub log_hits: Vec<LogHit>,
    /// Reports the agent lost since its last accepted request: dropped from its full backlog, or
    /// in a batch the collector refused as invalid.
    #[serde(default)]
    pub dropped: u64,
}

/// One run of one down-check by the detector's agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    /// The DownCheck's name (`<detector>-to-<target>-<port>`).
    pub name: String,
    pub at_ms: i64,
    /// Whether the service port accepted a connection.
    pub port_ok: bool,
    /// Whether the liveness port accepted a connection.
    pub liveness_ok: bool,
    /// What the failed connect said (`connection refused`, `timed out` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a down-check result means for the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Up,
    /// The service port fails while the liveness port answers: the machine runs, the service does not.
    ServiceDown,
    /// Both fail: the machine is down (or cut off from its network).
    HostDown,
    /// The detector is not reporting, so nothing is known; no alert is raised on the target.
    Unknown,
}

impl Verdict {
    pub fn of(result: &CheckResult) -> Verdict {
        match (result.port_ok, result.liveness_ok) {
            (true, _) => Verdict::Up,
            (false, true) => Verdict::ServiceDown,
            (false, false) => Verdict::HostDown,
        }
    }

    /// The severity a failing verdict alerts at; `None` for up and unknown.
    pub fn severity(self) -> Option<Severity> {
        match self {
            Verdict::ServiceDown => Some(Severity::Warning),
            Verdict::HostDown => Some(Severity::Fatal),
            Verdict::Up | Verdict::Unknown => None,
        }
    }

    /// The verdict a stored down-check result stands for: its `error_kind` is the failing
    /// verdict's [`Verdict::as_str`], none when up.
    pub fn of_record(error_kind: Option<&str>) -> Verdict {
        match error_kind {
            None => Verdict::Up,
            Some(kind) if kind == Verdict::ServiceDown.as_str() => Verdict::ServiceDown,
            Some(_) => Verdict::HostDown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Up => "up",
            Verdict::ServiceDown => "service_down",
            Verdict::HostDown => "host_down",
            Verdict::Unknown => "unknown",
        }
    }
}

/// A log line that contains an assigned rule's keyword.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogHit {
    /// The LogPolicy's name.
    pub policy: String,
    /// The index of the rule in the policy's `rules`.
    pub rule: usize,
    /// The file the line was read from (a glob's match, not the glob).
    pub file: String,
    pub line: String,
    pub at_ms: i64,
}

/// The answer to an accepted request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestResponse {
    /// Reports stored from this request.
    pub accepted: usize,
    pub assignments: Assignments,
}

/// What this server's agent should run besides sampling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    pub down_checks: Vec<DownCheckAssignment>,
    pub log_rules: Vec<LogAssignment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownCheckAssignment {
    pub name: String,
    pub ip: String,
    pub port: u16,
    pub liveness_port: u16,
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogAssignment {
    pub policy: String,
    /// Index of the rule in the policy's `rules`; echoed in [`LogHit::rule`].
    pub rule: usize,
    /// A path or a glob.
    pub file: String,
    pub keyword: String,
}

/// How long a down-check connect may take: a third of the interval, at most 5 s.
pub fn downcheck_timeout_ms(interval_ms: u64) -> u64 {
    (interval_ms / 3).clamp(100, 5_000)
}

/// The assignments of `server` in `project` under `config`: none for an unknown or paused server.
pub fn assignments(config: &Config, project: &str, server: &str) -> Assignments {
    let Some(p) = config.projects.get(project) else { return Assignments::default() };
    if p.servers.get(server).is_none_or(|s| s.paused) {
        return Assignments::default();
    }
    let down_checks = p
        .down_checks
        .values()
        .filter(|d| d.detector == server && p.servers.get(&d.target).is_some_and(|t| !t.paused))
        .map(|d| {
            let interval_ms = d.interval.0.as_millis() as u64;
            DownCheckAssignment {
                name: d.name.clone(),
                ip: d.ip.clone(),
                port: d.port,
                liveness_port: d.liveness_port,
                interval_ms,
                timeout_ms: downcheck_timeout_ms(interval_ms),
            }
        })
        .collect();
    let log_rules = p
        .log_policies
        .values()
        .filter(|lp| lp.servers.iter().any(|s| s == server))
        .flat_map(|lp| {
            lp.rules.iter().enumerate().filter_map(|(rule, r)| match r {
                LogRule::File { file, keyword, .. } => {
                    Some(LogAssignment { policy: lp.name.clone(), rule, file: file.clone(), keyword: keyword.clone() })
                }
                LogRule::EventLog { .. } => None, // Windows event logs: not read by the Linux agent
            })
        })
        .collect();
    Assignments { down_checks, log_rules }
}
