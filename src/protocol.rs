//! The agent ↔ collector protocol, which both ends import: the body of
//! `POST /ingest/v1/report` (host reports, down-check results, log keyword hits) and its answer
//! (the server's assignments).
//!
//! An agent sends what it has gathered since its last accepted request — host reports (oldest
//! first, several when it is catching up on a backlog), down-check results and log keyword hits —
//! with `Authorization: Bearer <ingest key>`. The answer acknowledges the request (the agent may
//! forget what it sent only then) and carries the server's *assignments*: the down-checks this
//! server is the detector of, and the log rules of the LogPolicies that name it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::catalog;
use crate::config::raw::Severity;

/// What the machine is: shown in the server list and detail page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// `PRETTY_NAME` from os-release, e.g. "Debian GNU/Linux 12 (bookworm)".
    pub os: String,
    pub kernel: String,
    pub cpu_vendor: String,
    pub cpu_model: String,
    /// Online CPUs.
    pub cpu_count: u32,
    pub ram_total_bytes: u64,
    /// Seconds since the Unix epoch; a change means the server restarted (AlertPolicy `restart`).
    pub boot_time: u64,
    pub uptime_secs: u64,
    /// Global addresses: IPv4 without loopback, IPv6 without loopback and link-local.
    pub ips: Vec<IpAddr>,
}

/// A metric name from [`catalog::METRICS`]. (An alias rather than `&'static str` written out,
/// because serde's derive borrows any field spelled `&str` from the input.)
pub type MetricName = &'static str;

/// One value of one metric, for one subject (mount point, device or interface) where the metric
/// has several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    /// One of [`catalog::METRICS`]; any other name is refused when deserializing.
    #[serde(deserialize_with = "known_metric")]
    pub name: MetricName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub value: f64,
}

fn known_metric<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let name = String::deserialize(d)?;
    catalog::lookup(&name).map(|m| m.name).ok_or_else(|| serde::de::Error::custom(format!("unknown metric `{name}`")))
}

/// One process, as the server detail page and ProcessPolicy see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    /// The executable name (`comm`, at most 15 bytes), which ProcessPolicy `process` matches.
    pub name: String,
    /// The effective user's name, or the uid as a number when /etc/passwd does not know it.
    pub user: String,
    /// % of one core over the last interval; none on a process's first sample.
    pub cpu: Option<f64>,
    /// % of RAM (resident set).
    pub memory: f64,
    pub rss_bytes: u64,
}

/// One sample of one host: its facts, every metric value and its processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub facts: Facts,
    pub metrics: Vec<MetricValue>,
    /// User processes (no kernel threads), busiest first.
    pub processes: Vec<ProcessInfo>,
    /// Number of processes per name.
    pub process_counts: BTreeMap<String, u32>,
    /// Mounted network filesystems whose space the agent does not read (statvfs on one blocks
    /// while its server is away).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_mounts: Vec<SkippedMount>,
    /// Wall-clock time of the sample, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// A mount whose space was not read, and why: its filesystem type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedMount {
    pub mount_point: String,
    pub fs_type: String,
}

impl Report {
    /// The value of `name` for `subject`, if this report has it.
    pub fn value(&self, name: &str, subject: Option<&str>) -> Option<f64> {
        self.metrics.iter().find(|m| m.name == name && m.subject.as_deref() == subject).map(|m| m.value)
    }
}

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
/// The most process names one report may count (`process_counts`).
pub const MAX_PROCESS_COUNTS_PER_REPORT: usize = 4_096;
/// The most addresses one report's facts may list.
pub const MAX_IPS_PER_REPORT: usize = 256;
/// The most network filesystems one report may list as not read.
pub const MAX_SKIPPED_MOUNTS_PER_REPORT: usize = 1_024;
/// The longest text of a report's facts (OS, kernel, CPU vendor and model), in bytes.
pub const MAX_FACT_BYTES: usize = 256;
/// The longest process name or user name, in bytes (a Linux `comm` has at most 15).
pub const MAX_NAME_BYTES: usize = 256;
/// The longest subject (mount point, device, interface) or skipped mount's text, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 1_024;
/// The most lost reports one request may announce in `dropped`: more than an agent reporting
/// every second loses in thirty years, so a larger number is a broken or hostile client.
pub const MAX_DROPPED_PER_REQUEST: u64 = 1_000_000_000;

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
