//! The validated model: what `compile` produces and the engine runs. Defaults are filled,
//! references resolved, and every object remembers where it was defined.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::diagnostic::Location;
use super::raw::{ChannelType, Language, MemberRole, MetricsKind, Os, ProcessMatch, Severity, SmtpTls, WebhookFormat, Weekday};
use super::values::{Cidr, Dur, JsonPath};

/// Where an object was defined; not part of its identity or of a plan's diff.
pub type Origin = Option<Location>;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    pub channels: BTreeMap<String, Channel>,
    /// Shared AlertPolicies: the tree's own and the built-in library's.
    pub shared_policies: BTreeMap<String, AlertPolicy>,
    pub projects: BTreeMap<String, Project>,
    /// SHA-256 of each ingest key → the projects that accept it (usually one), so the ingest
    /// endpoint knows which projects a request may be for from its key alone, before it reads
    /// the body. Derived from the projects' `ingest_key_sha256` by `compile`.
    #[serde(skip)]
    pub ingest_keys: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    #[serde(skip)]
    pub origin: Origin,
    pub email: String,
    pub name: String,
    /// E.164, separators removed.
    pub phone: Option<String>,
    pub github: Option<String>,
    pub language: Language,
    pub token_sha256: Option<String>,
    pub notify: NotifyPrefs,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifyPrefs {
    pub email: bool,
    pub sms: bool,
    pub mobile: bool,
    /// Minutes after midnight, project timezone; `from > to` wraps midnight. `None`: all day.
    pub hours: Option<(u16, u16)>,
    pub days: Vec<Weekday>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    pub description: Option<String>,
    pub owner: String,
    pub admins: Vec<String>,
    pub users: Vec<String>,
    pub networks: Vec<Cidr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub user: String,
    pub role: MemberRole,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Project {
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    pub group: Option<String>,
    pub description: Option<String>,
    pub timezone: String,
    pub members: Vec<Member>,
    pub ingest_key_sha256: Option<String>,
    pub channels: Vec<String>,
    pub networks: Vec<Cidr>,
    pub daily_email: bool,
    /// When the daily report is mailed: minutes after midnight in the project's timezone.
    pub daily_email_at: u16,
    /// Reminders of a firing, unacknowledged alert; `None`: never.
    pub repeat: Option<Dur>,
    /// Who else hears of a firing, unacknowledged alert: `after` strictly increasing.
    pub escalation: Vec<EscalationStep>,
    /// When its alerts count as flapping; default 5 changes within 30m.
    pub flapping: FlappingSetting,
    #[serde(skip)]
    pub servers: BTreeMap<String, Server>,
    #[serde(skip)]
    pub port_monitors: BTreeMap<String, PortMonitor>,
    #[serde(skip)]
    pub down_checks: BTreeMap<String, DownCheck>,
    #[serde(skip)]
    pub alert_policies: BTreeMap<String, AlertPolicy>,
    #[serde(skip)]
    pub process_policies: BTreeMap<String, ProcessPolicy>,
    #[serde(skip)]
    pub log_policies: BTreeMap<String, LogPolicy>,
    #[serde(skip)]
    pub maintenance: BTreeMap<String, Maintenance>,
}

/// One step of a project's escalation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EscalationStep {
    /// Counted from when the alert fired.
    pub after: Dur,
    /// Users' e-mail addresses, lower case.
    pub notify: Vec<String>,
    /// `email` and/or `sms`, each once.
    pub media: Vec<ChannelType>,
}

/// When an alert instance counts as flapping: more than `changes` fired or resolved
/// transitions within `within`; it is stable again once `within` passes without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Flapping {
    pub changes: u32,
    pub within: Dur,
}

impl Default for Flapping {
    fn default() -> Flapping {
        Flapping { changes: 5, within: Dur(std::time::Duration::from_secs(30 * 60)) }
    }
}

/// A `flapping:` setting: off (every change of an alert is notified), or on with its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlappingSetting {
    Off,
    On(Flapping),
}

impl Default for FlappingSetting {
    fn default() -> FlappingSetting {
        FlappingSetting::On(Flapping::default())
    }
}

impl FlappingSetting {
    /// The limits, or `None` when flapping is off.
    pub fn limits(self) -> Option<Flapping> {
        match self {
            FlappingSetting::Off => None,
            FlappingSetting::On(f) => Some(f),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    pub host: String,
    pub private_ip: Option<IpAddr>,
    pub os: Os,
    pub tags: Vec<String>,
    pub policy: Option<PolicyRef>,
    pub paused: bool,
    pub depends_on: Vec<String>,
    pub metrics: MetricsKind,
    /// The node_exporter URL when `metrics` is node_exporter.
    pub metrics_url: Option<String>,
}

/// Which AlertPolicy a server uses: its project's own, or a shared one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "scope", content = "name", rename_all = "lowercase")]
pub enum PolicyRef {
    Project(String),
    Shared(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct PortMonitor {
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    /// The address probed: the `host` given, or the named server's host.
    pub host: String,
    pub server: Option<String>,
    pub ports: Vec<u16>,
    pub interval: Dur,
    pub timeout: Dur,
    pub failures: u32,
    pub recoveries: u32,
    pub notify: Vec<String>,
    pub email: bool,
    pub sms: bool,
    /// Overrides the project's `repeat` for this monitor's alerts.
    pub repeat: Option<Dur>,
    /// Overrides the project's `flapping` for this monitor's alerts.
    pub flapping: Option<FlappingSetting>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownCheck {
    #[serde(skip)]
    pub origin: Origin,
    /// Identity: `<detector>-to-<target>-<port>`.
    pub name: String,
    pub detector: String,
    pub target: String,
    pub ip: String,
    pub port: u16,
    pub liveness_port: u16,
    pub interval: Dur,
    pub failures: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertPolicy {
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    pub description: Option<String>,
    /// From the built-in policy library rather than the tree.
    pub builtin: bool,
    pub no_data: Option<Dur>,
    pub restart: bool,
    pub rules: Vec<MetricRule>,
    /// Overrides the project's `repeat` for this policy's alerts.
    pub repeat: Option<Dur>,
    /// Overrides the project's `flapping` for this policy's alerts.
    pub flapping: Option<FlappingSetting>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRule {
    pub metric: String,
    pub warning: Option<f64>,
    pub fatal: Option<f64>,
    pub below: bool,
    #[serde(rename = "for")]
    pub for_: Dur,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessPolicy {
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    pub process: String,
    #[serde(rename = "match")]
    pub match_: ProcessMatch,
    /// With `match: regex`, the pattern compiled and anchored to the whole name.
    #[serde(skip)]
    pub regex: Option<regex::Regex>,
    /// Empty with `project_wide`.
    pub servers: Vec<String>,
    pub project_wide: bool,
    pub count_min: Option<u32>,
    pub count_max: Option<u32>,
    pub cpu: Option<Limits>,
    pub memory: Option<Limits>,
    #[serde(rename = "for")]
    pub for_: Dur,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    pub warning: Option<f64>,
    pub fatal: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogPolicy {
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    pub servers: Vec<String>,
    pub rules: Vec<LogRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogRule {
    File { file: String, keyword: String, severity: Severity },
    EventLog { log: String, level: Option<String>, source: Option<String>, id: Option<u32>, severity: Severity },
}

#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: ChannelType,
    pub smtp: Option<SmtpSettings>,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub url: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    pub format: WebhookFormat,
    /// E-mail: a read-receipt image in each mail (needs serve's `--public-url`).
    pub track_reads: bool,
    /// E-mail: the `Disposition-Notification-To` address, as written (`${ENV}` expanded at send).
    pub read_receipt_to: Option<String>,
    /// E-mail: the Maildir (absolute) where bounces of this channel's mails arrive.
    pub bounces: Option<PathBuf>,
    /// SMS: how the gateway's answers and delivery reports are read.
    pub delivery_reports: Option<DeliveryReports>,
}

/// An SMS channel's delivery reports, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryReports {
    /// As written (`${ENV}`), expanded when a report arrives.
    pub secret: String,
    pub id: JsonPath,
    pub status: JsonPath,
    pub error: Option<JsonPath>,
    pub delivered: Vec<String>,
    pub failed: Vec<String>,
}

/// SMTP settings as written: `${ENV}` references are expanded by serve, not here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The CA file to trust besides the public roots, as an absolute path (checked when the tree
    /// was compiled; read again at each send).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Maintenance {
    #[serde(skip)]
    pub origin: Origin,
    pub name: String,
    pub scope: MaintenanceScope,
    pub window: Window,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceScope {
    All,
    Servers(Vec<String>),
    Tags(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Epoch milliseconds.
    Once { start_ms: i64, end_ms: i64 },
    /// Minutes after midnight in the project timezone; `from > to` wraps midnight.
    Weekly { days: Vec<Weekday>, from: u16, to: u16 },
}

impl ProcessPolicy {
    /// Whether a process called `name` is one this policy watches.
    pub fn matches(&self, name: &str) -> bool {
        match &self.regex {
            Some(re) => re.is_match(name),
            None => self.process == name,
        }
    }

    /// Whether the policy applies to `server`.
    pub fn applies_to(&self, server: &str) -> bool {
        self.project_wide || self.servers.iter().any(|s| s == server)
    }
}

impl Config {
    /// The approved ranges monitored IP literals of this project must fall in; empty means
    /// no restriction. A project in a group uses the group's; a group-less project its own.
    pub fn approved_networks<'a>(&'a self, project: &'a Project) -> &'a [Cidr] {
        match &project.group {
            Some(group) => self.groups.get(group).map_or(&[], |g| &g.networks),
            None => &project.networks,
        }
    }
}

/// The request body of an SMS channel without `body`: JSON with the phone and the text.
pub const DEFAULT_SMS_BODY: &str = r#"{"to":"{{phone}}","text":"{{text}}"}"#;
