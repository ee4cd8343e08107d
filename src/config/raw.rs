//! Raw serde types: the YAML exactly as written, unknown fields rejected, positions kept.
//!
//! Nothing here is validated beyond its YAML type; `compile` turns these into the model.
//! Every value a lint rule may point at is a [`Sp`] so a diagnostic can name its line and column.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// A value with the (document-relative) line and column it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Sp<T> {
    pub value: T,
    pub line: u32,
    pub col: u32,
}

impl<T> Sp<T> {
    pub fn as_ref(&self) -> Sp<&T> {
        Sp { value: &self.value, line: self.line, col: self.col }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Sp { value: s.value, line: s.referenced.line() as u32, col: s.referenced.column() as u32 })
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

pub type SpStr = Sp<String>;

/// `${NAME}`-expandable text used for channel settings and secrets.
pub type Text = Sp<String>;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// A person who can hold roles and receive notifications.
pub struct User {
    pub kind: SpStr,
    /// Identity; must be a valid address.
    pub email: SpStr,
    pub name: SpStr,
    /// E.164 once separators are removed; needed for SMS.
    pub phone: Option<SpStr>,
    /// GitHub handle, used by `watchkeeper codeowners`.
    pub github: Option<SpStr>,
    /// Language of the messages this user receives.
    pub language: Option<Sp<Language>>,
    /// SHA-256 (hex) of this user's read-only API token.
    pub token_sha256: Option<SpStr>,
    pub notify: Option<Sp<NotifyPrefs>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    Ko,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// When and how a user wants to hear about alerts. Defaults: e-mail on, SMS and mobile off, always.
pub struct NotifyPrefs {
    pub email: Option<bool>,
    pub sms: Option<Sp<bool>>,
    /// Push through the project's mobile/webhook channel.
    pub mobile: Option<bool>,
    /// `HH:MM-HH:MM` in the project's timezone; may wrap midnight.
    pub hours: Option<SpStr>,
    pub days: Option<Vec<Weekday>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// An organisational unit that owns projects; exactly one owner.
pub struct Group {
    pub kind: SpStr,
    pub name: SpStr,
    pub description: Option<String>,
    /// Role owner: everything, billing contact.
    pub owner: SpStr,
    /// Role admin: manage members, see contact details and delivery logs.
    #[serde(default)]
    pub admins: Vec<SpStr>,
    /// Role user: read-only view of the group's projects.
    #[serde(default)]
    pub users: Vec<SpStr>,
    /// Approved address ranges (CIDR or single addresses).
    #[serde(default)]
    pub networks: Vec<SpStr>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// The unit that servers, checks and policies belong to.
pub struct Project {
    pub kind: SpStr,
    pub name: SpStr,
    pub group: Option<SpStr>,
    pub description: Option<String>,
    /// IANA timezone name; alert and report times are shown in it. Default UTC.
    pub timezone: Option<SpStr>,
    #[serde(default)]
    pub members: Vec<Sp<Member>>,
    /// SHA-256 (hex) of the key this project's agents present.
    pub ingest_key_sha256: Option<SpStr>,
    /// Channel names used for this project's notifications.
    #[serde(default)]
    pub channels: Vec<SpStr>,
    /// Extra approved ranges (only for group-less projects).
    #[serde(default)]
    pub networks: Vec<SpStr>,
    pub reports: Option<Reports>,
    /// While an alert fires unacknowledged, notify again this often (e.g. 1h); default never.
    /// An AlertPolicy's or PortMonitor's own `repeat` wins for its alerts.
    pub repeat: Option<SpStr>,
    /// Who else hears of a firing alert nobody acknowledged, and when: steps in order, each
    /// `after` (counted from firing) longer than the one before.
    #[serde(default)]
    pub escalation: Vec<Sp<EscalationStep>>,
    /// When an alert counts as flapping; default 5 changes within 30m; `off`: never. An
    /// AlertPolicy's or PortMonitor's own `flapping` wins for its alerts.
    pub flapping: Option<Sp<Flapping>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// One step of a project's escalation.
pub struct EscalationStep {
    /// How long after firing, unacknowledged, the step's people hear of it (e.g. 15m).
    pub after: SpStr,
    /// Users (e-mail addresses) the step reaches.
    pub notify: Vec<SpStr>,
    /// Through which of the project's channels: `email`, `sms`; default `[email]`.
    pub media: Option<Vec<Sp<ChannelType>>>,
}

/// A `flapping:` setting: `off` (every change is notified), or a block saying when an alert
/// counts as flapping. A word other than `off` is kept for `compile` to report where it is.
#[derive(Debug, Clone)]
pub enum Flapping {
    /// A scalar: `off`, or `false` as YAML 1.1 habits write it; anything else is an error.
    Word(String),
    Block(FlappingBlock),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// An alert that fires or resolves more than `changes` times within `within` is flapping: one
/// notification says so, then its changes are not notified until it is stable for `within`.
pub struct FlappingBlock {
    /// Default 5 (1–100).
    pub changes: Option<Sp<i64>>,
    /// Default 30m.
    pub within: Option<SpStr>,
}

impl<'de> Deserialize<'de> for Flapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Setting;
        impl<'de> serde::de::Visitor<'de> for Setting {
            type Value = Flapping;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`off` or a mapping { changes, within }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Flapping, E> {
                Ok(Flapping::Word(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Flapping, E> {
                Ok(Flapping::Word(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Flapping, A::Error> {
                FlappingBlock::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Flapping::Block)
            }
        }
        d.deserialize_any(Setting)
    }
}

impl JsonSchema for Flapping {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Flapping".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let block = generator.subschema_for::<FlappingBlock>();
        schemars::json_schema!({
            "description": "When an alert counts as flapping: `off` (every change is notified), or more than `changes` fired or resolved within `within`.",
            "anyOf": [{ "const": "off" }, { "const": false }, block]
        })
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub user: SpStr,
    pub role: Sp<MemberRole>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Admin,
    User,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reports {
    /// Mail the previous day's report each morning to the group owner, the group's admins and
    /// the project's admins.
    #[serde(default)]
    pub daily_email: bool,
    /// When the daily report is mailed, `HH:MM` in the project's timezone; default 08:00.
    pub at: Option<SpStr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Windows,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// A monitored machine.
pub struct Server {
    pub kind: SpStr,
    pub name: SpStr,
    pub project: SpStr,
    /// Public address or DNS name.
    pub host: SpStr,
    pub private_ip: Option<SpStr>,
    pub os: Option<Sp<Os>>,
    #[serde(default)]
    pub tags: Vec<SpStr>,
    /// An AlertPolicy name: project-local, shared in the tree, or from the built-in library.
    pub policy: Option<SpStr>,
    /// Paused servers are shown grey and produce no alerts.
    #[serde(default)]
    pub paused: bool,
    /// If a parent is down, this server's alerts are suppressed as unreachable.
    #[serde(default)]
    pub depends_on: Vec<SpStr>,
    pub metrics: Option<Sp<MetricsSource>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSource {
    pub source: Sp<MetricsKind>,
    /// For node_exporter: the URL serve scrapes.
    pub url: Option<SpStr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricsKind {
    Agent,
    NodeExporter,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// TCP port checks run by serve itself.
pub struct PortMonitor {
    pub kind: SpStr,
    pub name: SpStr,
    pub project: SpStr,
    /// IP or DNS name; or use `server` to take that server's host.
    pub host: Option<SpStr>,
    pub server: Option<SpStr>,
    /// 1–16 ports, each 1–65535, no duplicates.
    pub ports: Sp<Vec<Sp<i64>>>,
    /// Default 3m.
    pub interval: Option<SpStr>,
    /// Default 5s; must be shorter than interval.
    pub timeout: Option<SpStr>,
    /// Consecutive failed checks before alerting; default 3.
    pub failures: Option<Sp<i64>>,
    /// Consecutive good checks before resolving; default 1.
    pub recoveries: Option<Sp<i64>>,
    /// Users to notify in addition to the project's recipients.
    #[serde(default)]
    pub notify: Vec<SpStr>,
    /// Send e-mail to the `notify` users; default true.
    pub email: Option<bool>,
    /// Send SMS to the `notify` users; default false.
    pub sms: Option<bool>,
    /// Remind of a firing, unacknowledged alert this often; default the project's `repeat`.
    pub repeat: Option<SpStr>,
    /// When its alerts count as flapping (`off`: never); default the project's `flapping`.
    pub flapping: Option<Sp<Flapping>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// One server (detector) checks another's port from inside the private network.
pub struct DownCheck {
    pub kind: SpStr,
    pub project: SpStr,
    pub detector: SpStr,
    pub target: SpStr,
    /// Default: the target's private_ip, else its host.
    pub ip: Option<SpStr>,
    pub port: Sp<i64>,
    /// A port always open while the machine runs; default 22, or 3389 for a Windows target.
    pub liveness_port: Option<Sp<i64>>,
    /// Default 30s.
    pub interval: Option<SpStr>,
    /// Default 3.
    pub failures: Option<Sp<i64>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// Thresholds on host metrics.
pub struct AlertPolicy {
    pub kind: SpStr,
    pub name: SpStr,
    /// Omit for a shared policy.
    pub project: Option<SpStr>,
    pub description: Option<String>,
    /// Agent silent this long: fatal "no data".
    pub no_data: Option<SpStr>,
    /// Server reboot (boot time changed): warning event.
    #[serde(default)]
    pub restart: bool,
    #[serde(default)]
    pub rules: Vec<Sp<MetricRule>>,
    /// Remind of a firing, unacknowledged alert this often; default the project's `repeat`.
    pub repeat: Option<SpStr>,
    /// When its alerts count as flapping (`off`: never); default the project's `flapping`.
    pub flapping: Option<Sp<Flapping>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricRule {
    pub metric: SpStr,
    pub warning: Option<Sp<f64>>,
    pub fatal: Option<Sp<f64>>,
    /// Lower is worse (e.g. `memory.available`): thresholds are minimums.
    #[serde(default)]
    pub below: bool,
    /// How long the condition must hold before firing; default 0.
    #[serde(rename = "for")]
    pub for_: Option<SpStr>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// Per-process rules.
pub struct ProcessPolicy {
    pub kind: SpStr,
    pub name: SpStr,
    pub project: SpStr,
    pub process: SpStr,
    /// `regex` to treat `process` as a regular expression.
    #[serde(rename = "match")]
    pub match_: Option<Sp<ProcessMatch>>,
    #[serde(default)]
    pub servers: Vec<SpStr>,
    #[serde(default)]
    pub project_wide: bool,
    pub count: Option<Sp<CountRange>>,
    /// % of one core summed over the matching processes.
    pub cpu: Option<Sp<Thresholds>>,
    /// % of RAM.
    pub memory: Option<Sp<Thresholds>>,
    #[serde(rename = "for")]
    pub for_: Option<SpStr>,
    /// Severity of count violations; default fatal.
    pub severity: Option<Sp<Severity>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProcessMatch {
    Exact,
    Regex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Fatal,
}

words!(Severity { Warning => "warning", Fatal => "fatal" });

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountRange {
    pub min: Option<Sp<i64>>,
    pub max: Option<Sp<i64>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub warning: Option<Sp<f64>>,
    pub fatal: Option<Sp<f64>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// Keyword rules on log files and Windows event logs.
pub struct LogPolicy {
    pub kind: SpStr,
    pub name: SpStr,
    pub project: SpStr,
    #[serde(default)]
    pub servers: Vec<SpStr>,
    pub rules: Vec<Sp<LogRule>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// Either `file` + `keyword`, or `event_log` (Windows servers only).
pub struct LogRule {
    /// A path or glob.
    pub file: Option<SpStr>,
    pub keyword: Option<SpStr>,
    pub event_log: Option<Sp<EventLogRule>>,
    pub severity: Sp<Severity>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventLogRule {
    pub log: String,
    pub level: Option<String>,
    pub source: Option<String>,
    pub id: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    Email,
    Sms,
    Webhook,
}

words!(ChannelType { Email => "email", Sms => "sms", Webhook => "webhook" });

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// How notifications leave. Secrets are written as `${ENV_NAME}`.
pub struct Channel {
    pub kind: SpStr,
    pub name: SpStr,
    #[serde(rename = "type")]
    pub type_: Sp<ChannelType>,
    pub smtp: Option<Sp<Smtp>>,
    pub from: Option<Text>,
    /// Fixed extra recipients: addresses for e-mail, phone numbers for SMS.
    #[serde(default)]
    pub to: Vec<SpStr>,
    pub url: Option<Text>,
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    /// SMS request body template: `{{phone}}`, `{{text}}`.
    pub body: Option<Text>,
    pub format: Option<Sp<WebhookFormat>>,
    /// E-mail: each mail carries an HTML part with a unique image under serve's `--public-url`;
    /// fetching it records the notification as read.
    pub track_reads: Option<Sp<bool>>,
    /// E-mail: ask the recipient's mail program for a read receipt to this address
    /// (`Disposition-Notification-To`).
    pub read_receipt_to: Option<Text>,
    /// E-mail: an absolute path to a Maildir where this channel's bounces arrive; serve scans
    /// its `new/` and marks bounced notifications failed.
    pub bounces: Option<SpStr>,
    /// SMS: receive the gateway's delivery reports at `POST /ingest/v1/delivery/<channel>`.
    pub delivery_reports: Option<Box<Sp<DeliveryReports>>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// How an SMS gateway's answers and delivery reports are read.
pub struct DeliveryReports {
    /// What the gateway sends as `Authorization: Bearer <secret>`; write `${ENV_NAME}`.
    pub secret: Text,
    /// JSON path (`$.a.b`) of the message id, in the gateway's answer to a send and in its reports.
    pub id: SpStr,
    /// JSON path of the status in a report.
    pub status: SpStr,
    /// JSON path of the gateway's error text in a report of failure (optional).
    pub error: Option<SpStr>,
    /// Statuses that mean delivered.
    pub delivered: Vec<SpStr>,
    /// Statuses that mean not delivered; other statuses are ignored.
    pub failed: Vec<SpStr>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: Option<Text>,
    pub port: Option<Sp<i64>>,
    pub tls: Option<Sp<SmtpTls>>,
    pub username: Option<Text>,
    pub password: Option<Text>,
    /// A PEM file of CA certificates to trust besides the public ones (a mail server with a
    /// certificate from a private CA); a relative path is read from the directory of the file
    /// that names it. Not with `tls: none`.
    pub ca_file: Option<SpStr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    Slack,
    Json,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// Notifications suppressed; state still recorded and shown as "maintenance".
pub struct Maintenance {
    pub kind: SpStr,
    pub name: SpStr,
    pub project: SpStr,
    #[serde(default)]
    pub servers: Vec<SpStr>,
    #[serde(default)]
    pub tags: Vec<SpStr>,
    #[serde(default)]
    pub all: bool,
    /// RFC 3339 timestamp of a one-off window's start.
    pub start: Option<SpStr>,
    pub end: Option<SpStr>,
    /// A recurring window in the project's timezone.
    pub schedule: Option<Sp<Schedule>>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub days: Vec<Weekday>,
    pub from: SpStr,
    pub to: SpStr,
}
