//! Durable state: applied/rejected revisions, probe results, alert instance state and history,
//! the notification outbox and its delivery log — on SQLite (embedded default, WAL) or
//! PostgreSQL, through one API. Runtime `sqlx::query` only (no macros, no `Any` driver);
//! timestamps are epoch milliseconds (BIGINT); migrations per backend are embedded.

use serde::Serialize;

use crate::alert::{AlertState, Severity};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    Url(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A configuration revision serve applied or rejected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevisionRecord {
    /// A git commit, or `sha256:<hex>` of a directory's content.
    pub revision: String,
    pub at_ms: i64,
    pub applied: bool,
    /// The diagnostics (lint's JSON form) that rejected it, or warnings of an applied one.
    pub diagnostics: serde_json::Value,
}

/// One TCP check of one port.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeRecord {
    pub project: String,
    pub monitor: String,
    pub host: String,
    pub port: u16,
    pub at_ms: i64,
    pub ok: bool,
    pub latency_ms: Option<u32>,
    /// `refused`, `timeout`, `unreachable`, `dns`, `unapproved`, `other`.
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

/// Probe results of one monitor port counted over one time bucket (availability charts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeBucket {
    pub monitor: String,
    pub host: String,
    pub port: u16,
    pub bucket_start_ms: i64,
    pub ok: i64,
    pub failed: i64,
}

/// The identity of an alert instance: survives reloads while these four are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct InstanceKey {
    pub project: String,
    /// The server the alert is about; empty when none (a port monitor on a bare host).
    pub server: String,
    /// What raised it: `port:<monitor>`, `downcheck:<name>`, `metric:<policy>:<metric>`, …
    pub rule: String,
    /// What within the rule: a port, a mount, an interface, a process name; may be empty.
    pub subject: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// One alert in the history: opened when an instance fires, closed when it resolves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub key: InstanceKey,
    pub severity: Severity,
    pub status: AlertStatus,
    pub started_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
    /// Why it resolved: `recovered`, `removed in <revision>`, `paused`.
    pub resolve_reason: Option<String>,
    pub message: String,
    /// The host the alert concerns (for per-host statistics).
    pub host: String,
    /// CPU, memory, disk, network, top processes at firing time (JSON; empty object for probes).
    pub snapshot: serde_json::Value,
}

/// What a transition does to the alert history.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    Open { severity: Severity, started_at_ms: i64, message: String, host: String, snapshot: serde_json::Value },
    Escalate { severity: Severity },
    Resolve { at_ms: i64, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    Email,
    Sms,
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting to be sent, or to be retried.
    Pending,
    Sent,
    /// Deliberately not sent (maintenance, outside the user's hours, medium disabled).
    NotSent,
    /// Gave up after retrying; `last_error` says why.
    Failed,
    /// The gateway confirmed delivery.
    Delivered,
}

/// A notification to write to the outbox in the same transaction as its alert change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub channel: String,
    pub medium: Medium,
    /// An address, a phone number, or the channel name for webhooks.
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// `fired`, `escalated`, `resolved`, `event`.
    pub kind: String,
    /// `Pending` to send; `NotSent` with `reason` to record a suppressed one.
    pub status: DeliveryStatus,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub alert_id: Option<i64>,
    pub channel: String,
    pub medium: Medium,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub kind: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub sent_ms: Option<i64>,
}

/// One try to send one notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub at_ms: i64,
    pub ok: bool,
    pub error: Option<String>,
}

/// The result of one send attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Sent,
    /// Failed; retry at `retry_at_ms`, or give up (status `failed`) when `None`.
    Failed { error: String, retry_at_ms: Option<i64> },
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub project: Option<String>,
    pub status: Option<AlertStatus>,
    pub severity: Option<Severity>,
    pub server: Option<String>,
    /// Alerts active at any time in [from, to].
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: u32,
}

/// Notifications sent per host and medium in a year (the port-monitoring manual's statistics).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentCount {
    pub host: String,
    pub medium: Medium,
    pub count: i64,
}

/// A persisted alert instance: its state machine and the open alert row, if firing.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInstance {
    pub key: InstanceKey,
    pub state: AlertState,
    pub open_alert_id: Option<i64>,
}

/// The database. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Store {
    /// Connect and migrate. `sqlite://PATH` creates the file (WAL, busy timeout);
    /// `postgres://…` must reach a running server.
    pub async fn connect(url: &str) -> Result<Store> {
        let _ = url;
        todo!("store: connect")
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    pub async fn record_revision(&self, rec: &RevisionRecord) -> Result<()> {
        let _ = rec;
        todo!()
    }

    /// The last applied and the last rejected revision.
    pub async fn latest_revisions(&self) -> Result<(Option<RevisionRecord>, Option<RevisionRecord>)> {
        todo!()
    }

    /// Insert a batch in one transaction.
    pub async fn insert_probe_results(&self, batch: &[ProbeRecord]) -> Result<()> {
        let _ = batch;
        todo!()
    }

    /// A monitor's results in [from, to), newest first; only failures when `failures_only`.
    pub async fn probe_history(
        &self,
        project: &str,
        monitor: &str,
        from_ms: i64,
        to_ms: i64,
        failures_only: bool,
        limit: u32,
    ) -> Result<Vec<ProbeRecord>> {
        let _ = (project, monitor, from_ms, to_ms, failures_only, limit);
        todo!()
    }

    /// The newest result of every (monitor, port) of a project.
    pub async fn latest_probes(&self, project: &str) -> Result<Vec<ProbeRecord>> {
        let _ = project;
        todo!()
    }

    /// Counts of good and failed checks per monitor port and bucket of `bucket_ms`.
    pub async fn probe_buckets(&self, project: &str, from_ms: i64, to_ms: i64, bucket_ms: i64) -> Result<Vec<ProbeBucket>> {
        let _ = (project, from_ms, to_ms, bucket_ms);
        todo!()
    }

    /// Delete raw probe results older than `before_ms`; returns how many.
    pub async fn prune_probe_results(&self, before_ms: i64) -> Result<u64> {
        let _ = before_ms;
        todo!()
    }

    /// Every persisted alert instance, to resume after a restart.
    pub async fn load_instances(&self) -> Result<Vec<StoredInstance>> {
        todo!()
    }

    /// In one transaction: save the instance's state (deleting it when inactive with no
    /// counters), apply `change` to the alert history, and enqueue `notifications` linked
    /// to the alert. Returns the instance's open alert id afterwards (new on `Open`, `None`
    /// after `Resolve`). `open_alert_id` is the id before.
    pub async fn apply_alert(
        &self,
        key: &InstanceKey,
        state: &AlertState,
        open_alert_id: Option<i64>,
        change: Option<&AlertChange>,
        notifications: &[NewNotification],
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let _ = (key, state, open_alert_id, change, notifications, now_ms);
        todo!()
    }

    pub async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRow>> {
        let _ = filter;
        todo!()
    }

    pub async fn get_alert(&self, id: i64) -> Result<Option<AlertRow>> {
        let _ = id;
        todo!()
    }

    /// Claim up to `limit` pending notifications due at `now_ms` for `holder` for `lease_ms`
    /// (so two serve replicas never send the same one); oldest first.
    pub async fn claim_due_notifications(&self, now_ms: i64, limit: u32, holder: &str, lease_ms: i64) -> Result<Vec<OutboxRow>> {
        let _ = (now_ms, limit, holder, lease_ms);
        todo!()
    }

    /// Log an attempt and move the notification to sent, pending (retry) or failed.
    pub async fn record_delivery(&self, id: i64, at_ms: i64, outcome: &DeliveryOutcome) -> Result<()> {
        let _ = (id, at_ms, outcome);
        todo!()
    }

    /// An alert's notifications with every attempt.
    pub async fn notifications_for_alert(&self, alert_id: i64) -> Result<Vec<(OutboxRow, Vec<Attempt>)>> {
        let _ = alert_id;
        todo!()
    }

    /// Notifications not yet sent or failed.
    pub async fn outbox_depth(&self) -> Result<i64> {
        todo!()
    }

    /// Sent notifications per host and medium for a project in a calendar year (UTC).
    pub async fn sent_counts(&self, project: &str, year: i32) -> Result<Vec<SentCount>> {
        let _ = (project, year);
        todo!()
    }
}
