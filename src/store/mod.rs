//! Durable state: applied/rejected revisions, probe results, alert instance state and history,
//! the notification outbox and its delivery log — on SQLite (embedded default, WAL) or
//! PostgreSQL, through one API. Runtime `sqlx::query` only (no macros, no `Any` driver);
//! timestamps are epoch milliseconds (BIGINT); migrations per backend are embedded.

mod rows;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder, SqlSafeStr, Sqlite, Transaction};

use self::rows::{Columns, Text};
pub use self::samples::{GRACE_MS, Resolution, RollupStats, SampleRetention, SeriesPoint, ServerStateRow, StoredReport};
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
    #[error("refused to store {0}")]
    Refused(String),
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

/// An alert firing now, without its message and snapshot: what state colours and counters need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiringAlert {
    pub id: i64,
    pub key: InstanceKey,
    pub severity: Severity,
    pub started_at_ms: i64,
}

/// What a transition does to the alert history.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    Open {
        severity: Severity,
        started_at_ms: i64,
        message: String,
        host: String,
        snapshot: serde_json::Value,
    },
    Escalate {
        severity: Severity,
    },
    Resolve {
        at_ms: i64,
        reason: String,
    },
    /// An event rule's event (a log keyword, a restart): recorded as an alert that starts and
    /// resolves at `at_ms` (reason `event`), so the history shows it but nothing stays firing.
    Event {
        severity: Severity,
        at_ms: i64,
        message: String,
        host: String,
        snapshot: serde_json::Value,
    },
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
    Failed {
        error: String,
        retry_at_ms: Option<i64>,
    },
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

/// Run the same code on whichever pool the store has. The body is compiled once per arm, so
/// `$pool` is a `SqlitePool` in one copy and a `PgPool` in the other; the SQL text is shared
/// (`$1`-style placeholders work on both).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}
mod samples; // declared after on_pool!, which it uses

// Column lists shared by several queries (macros, so `concat!` can splice them into SQL text).
macro_rules! probe_columns {
    () => {
        "project, monitor, host, port, at_ms, ok, latency_ms, error_kind, error"
    };
}
macro_rules! alert_columns {
    () => {
        "id, project, server, rule, subject, severity, status, started_at_ms, resolved_at_ms, resolve_reason, message, host, snapshot"
    };
}
macro_rules! outbox_columns {
    () => {
        "id, alert_id, channel, medium, recipient, subject, body, kind, status, attempts, next_attempt_ms, last_error, created_ms, sent_ms"
    };
}

/// Claim due notifications: pick them, lease them to a holder, return them. `$lock` is the one
/// dialect difference: PostgreSQL locks the picked rows and skips rows another replica is
/// claiming right now; SQLite needs nothing, since the single UPDATE holds the write lock.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "WITH due AS (SELECT id FROM outbox",
            " WHERE status = 'pending' AND next_attempt_ms <= $1 AND (claimed_until_ms IS NULL OR claimed_until_ms <= $1)",
            " ORDER BY id LIMIT $2 ",
            $lock,
            ") UPDATE outbox SET claimed_by = $3, claimed_until_ms = $4 WHERE id IN (SELECT id FROM due) RETURNING ",
            outbox_columns!()
        )
    };
}
const CLAIM_SQLITE: &str = claim_sql!("");
const CLAIM_POSTGRES: &str = claim_sql!("FOR UPDATE SKIP LOCKED");

/// The firing alerts of a project (`$1`), or of all, as one JSON array of
/// `[id, project, server, rule, subject, severity, started_at_ms]`. `status = 'firing'` is
/// spelled out so both planners match the partial index's predicate.
macro_rules! firing_sql {
    ($array:literal, $where:literal) => {
        concat!("SELECT ", $array, " AS alerts FROM alerts WHERE status = 'firing'", $where)
    };
}
const FIRING_SQLITE: &str =
    firing_sql!("json_group_array(json_array(id, project, server, rule, subject, severity, started_at_ms))", " AND project = $1");
const FIRING_ANY_SQLITE: &str =
    firing_sql!("json_group_array(json_array(id, project, server, rule, subject, severity, started_at_ms))", "");
const FIRING_POSTGRES: &str = firing_sql!(
    "COALESCE(json_agg(json_build_array(id, project, server, rule, subject, severity, started_at_ms)), '[]')::text",
    " AND project = $1"
);
const FIRING_ANY_POSTGRES: &str =
    firing_sql!("COALESCE(json_agg(json_build_array(id, project, server, rule, subject, severity, started_at_ms)), '[]')::text", "");

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/sqlite/0001_init.sql")),
    (2, "samples", include_str!("migrations/sqlite/0002_samples.sql")),
    (3, "alerts_firing", include_str!("migrations/sqlite/0003_alerts_firing.sql")),
    (4, "alerts_by_server", include_str!("migrations/sqlite/0004_alerts_by_server.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/postgres/0001_init.sql")),
    (2, "samples", include_str!("migrations/postgres/0002_samples.sql")),
    (3, "alerts_firing", include_str!("migrations/postgres/0003_alerts_firing.sql")),
    (4, "alerts_by_server", include_str!("migrations/postgres/0004_alerts_by_server.sql")),
];

/// How long SQLite waits for another writer before giving up with "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to PostgreSQL may take at startup, and waiting for a pooled connection later.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows per multi-row INSERT of probe results (9 parameters each, well under both backends' limits).
const PROBE_INSERT_CHUNK: usize = 1000;

fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(version, description.into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

/// Starting a transaction that will write.
trait BeginWrite {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Self::Db>>;
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    /// Take the write lock up front: a deferred transaction that reads first and then writes
    /// fails with SQLITE_BUSY when another connection wrote meanwhile, instead of waiting.
    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        self.begin().await
    }
}

/// A limit of 0 means "no limit".
fn sql_limit(limit: u32) -> i64 {
    if limit == 0 { i64::MAX } else { i64::from(limit) }
}

fn to_json(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// [start, end) of a calendar year in UTC, in epoch milliseconds; `None` outside the years jiff knows.
fn year_range_ms(year: i32) -> Option<(i64, i64)> {
    let start = |year: i32| -> Option<i64> {
        let date = jiff::civil::Date::new(i16::try_from(year).ok()?, 1, 1).ok()?;
        Some(date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_millisecond())
    };
    Some((start(year)?, start(year.checked_add(1)?)?))
}

/// The URL without a password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}://…{}", &url[..scheme_end], &url[at..]),
        _ => url.to_string(),
    }
}

impl Store {
    /// Connect and migrate. `sqlite://PATH` (or `sqlite:PATH`) creates the file (WAL, busy
    /// timeout 5 s, foreign keys on); `postgres://…` or `postgresql://…` must reach a running
    /// server within 10 s, and a refused connection fails at once. Anything else is
    /// [`StoreError::Url`] (with any password left out).
    pub async fn connect(url: &str) -> Result<Store> {
        let backend = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new().connect_with(options).await?;
            migrator(SQLITE_MIGRATIONS).run(&pool).await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            // Connect once directly first: the pool retries a refused connection until its
            // acquire timeout and then says only "timed out"; a direct attempt says why, at once.
            let mut conn = tokio::time::timeout(POSTGRES_CONNECT_TIMEOUT, PgConnection::connect_with(&options))
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
            migrator(POSTGRES_MIGRATIONS).run(&mut conn).await?;
            conn.close().await?;
            let pool = PgPoolOptions::new().acquire_timeout(POSTGRES_CONNECT_TIMEOUT).connect_with(options).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::Url(redact(url)));
        };
        Ok(Store { backend })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    pub async fn record_revision(&self, rec: &RevisionRecord) -> Result<()> {
        let diagnostics = to_json(&rec.diagnostics)?;
        on_pool!(self, pool => {
            sqlx::query("INSERT INTO revisions (revision, at_ms, applied, diagnostics) VALUES ($1, $2, $3, $4)")
                .bind(&rec.revision)
                .bind(rec.at_ms)
                .bind(rec.applied)
                .bind(&diagnostics)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The last applied and the last rejected revision.
    pub async fn latest_revisions(&self) -> Result<(Option<RevisionRecord>, Option<RevisionRecord>)> {
        const LATEST: &str =
            "SELECT revision, at_ms, applied, diagnostics FROM revisions WHERE applied = $1 ORDER BY at_ms DESC, id DESC LIMIT 1";
        on_pool!(self, pool => {
            let applied = sqlx::query(LATEST).bind(true).fetch_optional(pool).await?;
            let rejected = sqlx::query(LATEST).bind(false).fetch_optional(pool).await?;
            Ok((applied.as_ref().map(rows::revision).transpose()?, rejected.as_ref().map(rows::revision).transpose()?))
        })
    }

    /// Insert a batch in one transaction.
    pub async fn insert_probe_results(&self, batch: &[ProbeRecord]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for chunk in batch.chunks(PROBE_INSERT_CHUNK) {
                let mut insert = QueryBuilder::new(concat!("INSERT INTO probe_results (", probe_columns!(), ") "));
                insert.push_values(chunk, |mut row, r| {
                    row.push_bind(&r.project)
                        .push_bind(&r.monitor)
                        .push_bind(&r.host)
                        .push_bind(i64::from(r.port))
                        .push_bind(r.at_ms)
                        .push_bind(r.ok)
                        .push_bind(r.latency_ms.map(i64::from))
                        .push_bind(&r.error_kind)
                        .push_bind(&r.error);
                });
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A monitor's results in [from, to), newest first; only failures when `failures_only`.
    /// A `limit` of 0 means no limit.
    pub async fn probe_history(
        &self,
        project: &str,
        monitor: &str,
        from_ms: i64,
        to_ms: i64,
        failures_only: bool,
        limit: u32,
    ) -> Result<Vec<ProbeRecord>> {
        const HISTORY: &str = concat!(
            "SELECT ",
            probe_columns!(),
            " FROM probe_results WHERE project = $1 AND monitor = $2 AND at_ms >= $3 AND at_ms < $4 AND (NOT $5 OR NOT ok)",
            " ORDER BY at_ms DESC, id DESC LIMIT $6"
        );
        on_pool!(self, pool => {
            let found = sqlx::query(HISTORY)
                .bind(project)
                .bind(monitor)
                .bind(from_ms)
                .bind(to_ms)
                .bind(failures_only)
                .bind(sql_limit(limit))
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::probe).collect()
        })
    }

    /// The newest result of every (monitor, port) of a project.
    pub async fn latest_probes(&self, project: &str) -> Result<Vec<ProbeRecord>> {
        const LATEST: &str = concat!(
            "SELECT ",
            probe_columns!(),
            " FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY monitor, port ORDER BY at_ms DESC, id DESC) AS newest",
            " FROM probe_results WHERE project = $1) AS ranked",
            " WHERE newest = 1 ORDER BY monitor, port"
        );
        on_pool!(self, pool => {
            let found = sqlx::query(LATEST).bind(project).fetch_all(pool).await?;
            found.iter().map(rows::probe).collect()
        })
    }

    /// Counts of good and failed checks per monitor port and bucket of `bucket_ms`
    /// (buckets start at `from_ms`; a `bucket_ms` below 1 counts as 1).
    pub async fn probe_buckets(&self, project: &str, from_ms: i64, to_ms: i64, bucket_ms: i64) -> Result<Vec<ProbeBucket>> {
        const BUCKETS: &str = "SELECT monitor, host, port, (at_ms - $2) / $4 AS bucket,
                SUM(CASE WHEN ok THEN 1 ELSE 0 END) AS ok, SUM(CASE WHEN ok THEN 0 ELSE 1 END) AS failed
            FROM probe_results WHERE project = $1 AND at_ms >= $2 AND at_ms < $3
            GROUP BY monitor, host, port, bucket ORDER BY monitor, host, port, bucket";
        let bucket_ms = bucket_ms.max(1);
        on_pool!(self, pool => {
            let found = sqlx::query(BUCKETS).bind(project).bind(from_ms).bind(to_ms).bind(bucket_ms).fetch_all(pool).await?;
            found.iter().map(|row| rows::probe_bucket(row, from_ms, bucket_ms)).collect()
        })
    }

    /// Delete raw probe results older than `before_ms`; returns how many.
    pub async fn prune_probe_results(&self, before_ms: i64) -> Result<u64> {
        on_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM probe_results WHERE at_ms < $1").bind(before_ms).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }

    /// Every persisted alert instance, to resume after a restart.
    pub async fn load_instances(&self) -> Result<Vec<StoredInstance>> {
        const ALL: &str =
            "SELECT project, server, rule, subject, state, open_alert_id FROM alert_instances ORDER BY project, server, rule, subject";
        on_pool!(self, pool => {
            let found = sqlx::query(ALL).fetch_all(pool).await?;
            found.iter().map(rows::instance).collect()
        })
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
        // A new history row: a firing alert (Open), or an event that starts and resolves at once.
        const INSERT: &str = "INSERT INTO alerts
                (project, server, rule, subject, severity, status, started_at_ms, resolved_at_ms, resolve_reason, message, host, snapshot)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id";
        const ESCALATE: &str = "UPDATE alerts SET severity = $1 WHERE id = $2";
        const RESOLVE: &str =
            "UPDATE alerts SET status = 'resolved', resolved_at_ms = $1, resolve_reason = $2 WHERE id = $3 AND status = 'firing'";
        const SAVE: &str = "INSERT INTO alert_instances (project, server, rule, subject, state, open_alert_id, updated_ms)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (project, server, rule, subject)
            DO UPDATE SET state = excluded.state, open_alert_id = excluded.open_alert_id, updated_ms = excluded.updated_ms";
        const FORGET: &str = "DELETE FROM alert_instances WHERE project = $1 AND server = $2 AND rule = $3 AND subject = $4";
        const ENQUEUE: &str = "INSERT INTO outbox
                (alert_id, channel, medium, recipient, subject, body, kind, status, reason, attempts, next_attempt_ms, created_ms)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10)";

        let at_rest = *state == AlertState::default();
        let state_json = to_json(state)?;
        let snapshot_json = match change {
            Some(AlertChange::Open { snapshot, .. } | AlertChange::Event { snapshot, .. }) => to_json(snapshot)?,
            _ => String::new(),
        };
        let started_at_ms = match change {
            Some(AlertChange::Open { started_at_ms, .. }) => *started_at_ms,
            _ => now_ms,
        };
        if matches!(change, Some(AlertChange::Escalate { .. } | AlertChange::Resolve { .. })) && open_alert_id.is_none() {
            // The caller's bookkeeping is off; saving the state and the notifications still
            // matters more than the history row, so record what we can.
            tracing::warn!(project = %key.project, server = %key.server, rule = %key.rule, subject = %key.subject,
                "An alert change arrived for an instance with no open alert; the history is not updated.");
        }

        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // The alert the notifications belong to: the new one on Open, else the open one.
            let alert_id = match change {
                Some(AlertChange::Open { severity, message, host, .. } | AlertChange::Event { severity, message, host, .. }) => {
                    let (status, started, resolved, reason) = match change {
                        Some(AlertChange::Event { at_ms, .. }) => ("resolved", *at_ms, Some(*at_ms), Some("event")),
                        _ => ("firing", started_at_ms, None, None),
                    };
                    let row = sqlx::query(INSERT)
                        .bind(&key.project)
                        .bind(&key.server)
                        .bind(&key.rule)
                        .bind(&key.subject)
                        .bind(severity.text())
                        .bind(status)
                        .bind(started)
                        .bind(resolved)
                        .bind(reason)
                        .bind(message)
                        .bind(host)
                        .bind(&snapshot_json)
                        .fetch_one(&mut *tx)
                        .await?;
                    Some(row.col::<i64>("id")?)
                }
                Some(AlertChange::Escalate { severity }) => {
                    if let Some(id) = open_alert_id {
                        sqlx::query(ESCALATE).bind(severity.text()).bind(id).execute(&mut *tx).await?;
                    }
                    open_alert_id
                }
                Some(AlertChange::Resolve { at_ms, reason }) => {
                    if let Some(id) = open_alert_id {
                        sqlx::query(RESOLVE).bind(at_ms).bind(reason).bind(id).execute(&mut *tx).await?;
                    }
                    open_alert_id
                }
                None => open_alert_id,
            };
            let open_after = match change {
                Some(AlertChange::Resolve { .. }) => None,
                Some(AlertChange::Event { .. }) => open_alert_id,
                _ => alert_id,
            };

            if at_rest {
                sqlx::query(FORGET).bind(&key.project).bind(&key.server).bind(&key.rule).bind(&key.subject).execute(&mut *tx).await?;
            } else {
                sqlx::query(SAVE)
                    .bind(&key.project)
                    .bind(&key.server)
                    .bind(&key.rule)
                    .bind(&key.subject)
                    .bind(&state_json)
                    .bind(open_after)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }

            for n in notifications {
                sqlx::query(ENQUEUE)
                    .bind(alert_id)
                    .bind(&n.channel)
                    .bind(n.medium.text())
                    .bind(&n.recipient)
                    .bind(&n.subject)
                    .bind(&n.body)
                    .bind(&n.kind)
                    .bind(n.status.text())
                    .bind(&n.reason)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(open_after)
        })
    }

    /// Alerts matching every filter that is set, newest first. A `limit` of 0 means no limit.
    pub async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRow>> {
        const LIST: &str = concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts",
            " WHERE ($1 IS NULL OR project = $1) AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR severity = $3)",
            " AND ($4 IS NULL OR server = $4)",
            " AND ($5 IS NULL OR resolved_at_ms IS NULL OR resolved_at_ms >= $5) AND ($6 IS NULL OR started_at_ms <= $6)",
            " ORDER BY started_at_ms DESC, id DESC LIMIT $7"
        );
        on_pool!(self, pool => {
            let found = sqlx::query(LIST)
                .bind(&filter.project)
                .bind(filter.status.map(|s| s.text()))
                .bind(filter.severity.map(|s| s.text()))
                .bind(&filter.server)
                .bind(filter.from_ms)
                .bind(filter.to_ms)
                .bind(sql_limit(filter.limit))
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::alert).collect()
        })
    }

    /// The alerts firing now in `project`, or in every project with `None`; oldest first. Reads
    /// the partial index `alerts_firing` (migration 3), so the cost follows what is firing, not
    /// the length of the history. Every status API page asks, so the rows come back as one JSON
    /// array: sqlx's SQLite driver hands rows over one at a time from its worker thread, which
    /// made 200 firing alerts cost 3.5 ms as rows against a few tenths as one value.
    pub async fn firing_alerts(&self, project: Option<&str>) -> Result<Vec<FiringAlert>> {
        let sql = match (&self.backend, project) {
            (Backend::Sqlite(_), Some(_)) => FIRING_SQLITE,
            (Backend::Sqlite(_), None) => FIRING_ANY_SQLITE,
            (Backend::Postgres(_), Some(_)) => FIRING_POSTGRES,
            (Backend::Postgres(_), None) => FIRING_ANY_POSTGRES,
        };
        let mut firing = on_pool!(self, pool => {
            let query = match project {
                Some(p) => sqlx::query(sql).bind(p),
                None => sqlx::query(sql),
            };
            rows::firing(&query.fetch_one(pool).await?)?
        });
        firing.sort_by_key(|a| a.id);
        Ok(firing)
    }

    pub async fn get_alert(&self, id: i64) -> Result<Option<AlertRow>> {
        const GET: &str = concat!("SELECT ", alert_columns!(), " FROM alerts WHERE id = $1");
        on_pool!(self, pool => {
            let found = sqlx::query(GET).bind(id).fetch_optional(pool).await?;
            found.as_ref().map(rows::alert).transpose()
        })
    }

    /// Claim up to `limit` pending notifications due at `now_ms` for `holder` for `lease_ms`
    /// (so two serve replicas never send the same one); oldest first.
    pub async fn claim_due_notifications(&self, now_ms: i64, limit: u32, holder: &str, lease_ms: i64) -> Result<Vec<OutboxRow>> {
        let sql = match self.backend {
            Backend::Sqlite(_) => CLAIM_SQLITE,
            Backend::Postgres(_) => CLAIM_POSTGRES,
        };
        let mut claimed: Vec<OutboxRow> = on_pool!(self, pool => {
            let found = sqlx::query(sql)
                .bind(now_ms)
                .bind(i64::from(limit))
                .bind(holder)
                .bind(now_ms.saturating_add(lease_ms))
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::outbox).collect::<Result<_>>()?
        });
        // RETURNING promises no order.
        claimed.sort_by_key(|row| row.id);
        Ok(claimed)
    }

    /// Log an attempt and move the notification to sent, pending (retry) or failed; either way
    /// the claim on it is released. An unknown `id` is `sqlx::Error::RowNotFound`.
    pub async fn record_delivery(&self, id: i64, at_ms: i64, outcome: &DeliveryOutcome) -> Result<()> {
        const SENT: &str = "UPDATE outbox SET status = 'sent', sent_ms = $1, attempts = attempts + 1,
            claimed_by = NULL, claimed_until_ms = NULL WHERE id = $2";
        const RETRY: &str = "UPDATE outbox SET status = 'pending', next_attempt_ms = $1, attempts = attempts + 1, last_error = $2,
            claimed_by = NULL, claimed_until_ms = NULL WHERE id = $3";
        const GIVE_UP: &str = "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = $1,
            claimed_by = NULL, claimed_until_ms = NULL WHERE id = $2";
        const LOG: &str = "INSERT INTO delivery_attempts (outbox_id, at_ms, ok, error) VALUES ($1, $2, $3, $4)";

        let (ok, error) = match outcome {
            DeliveryOutcome::Sent => (true, None),
            DeliveryOutcome::Failed { error, .. } => (false, Some(error)),
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let update = match outcome {
                DeliveryOutcome::Sent => sqlx::query(SENT).bind(at_ms).bind(id),
                DeliveryOutcome::Failed { error, retry_at_ms: Some(retry_at_ms) } => sqlx::query(RETRY).bind(retry_at_ms).bind(error).bind(id),
                DeliveryOutcome::Failed { error, retry_at_ms: None } => sqlx::query(GIVE_UP).bind(error).bind(id),
            };
            if update.execute(&mut *tx).await?.rows_affected() == 0 {
                return Err(sqlx::Error::RowNotFound.into());
            }
            sqlx::query(LOG).bind(id).bind(at_ms).bind(ok).bind(error).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// An alert's notifications with every attempt.
    pub async fn notifications_for_alert(&self, alert_id: i64) -> Result<Vec<(OutboxRow, Vec<Attempt>)>> {
        const NOTIFICATIONS: &str = concat!("SELECT ", outbox_columns!(), " FROM outbox WHERE alert_id = $1 ORDER BY id");
        const ATTEMPTS: &str = "SELECT a.outbox_id, a.at_ms, a.ok, a.error FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id
            WHERE o.alert_id = $1 ORDER BY a.at_ms, a.id";
        let (notifications, attempts) = on_pool!(self, pool => {
            // One snapshot for both reads, so no attempt names a notification we did not read.
            let mut tx = pool.begin().await?;
            let notifications = sqlx::query(NOTIFICATIONS).bind(alert_id).fetch_all(&mut *tx).await?;
            let attempts = sqlx::query(ATTEMPTS).bind(alert_id).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            (
                notifications.iter().map(rows::outbox).collect::<Result<Vec<_>>>()?,
                attempts.iter().map(rows::attempt).collect::<Result<Vec<_>>>()?,
            )
        });
        let mut by_notification: BTreeMap<i64, Vec<Attempt>> = BTreeMap::new();
        for (outbox_id, attempt) in attempts {
            by_notification.entry(outbox_id).or_default().push(attempt);
        }
        Ok(notifications
            .into_iter()
            .map(|row| {
                let attempts = by_notification.remove(&row.id).unwrap_or_default();
                (row, attempts)
            })
            .collect())
    }

    /// Notifications not yet sent or failed.
    pub async fn outbox_depth(&self) -> Result<i64> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT COUNT(*) AS depth FROM outbox WHERE status = 'pending'").fetch_one(pool).await?;
            row.col("depth")
        })
    }

    /// Sent notifications per host and medium for a project in a calendar year (UTC).
    pub async fn sent_counts(&self, project: &str, year: i32) -> Result<Vec<SentCount>> {
        const COUNTS: &str = "SELECT a.host, o.medium, COUNT(*) AS sent FROM outbox o JOIN alerts a ON a.id = o.alert_id
            WHERE a.project = $1 AND o.status IN ('sent', 'delivered')
              AND COALESCE(o.sent_ms, o.created_ms) >= $2 AND COALESCE(o.sent_ms, o.created_ms) < $3
            GROUP BY a.host, o.medium ORDER BY a.host, o.medium";
        let Some((start_ms, end_ms)) = year_range_ms(year) else {
            return Ok(Vec::new());
        };
        on_pool!(self, pool => {
            let found = sqlx::query(COUNTS).bind(project).bind(start_ms).bind(end_ms).fetch_all(pool).await?;
            found.iter().map(rows::sent_count).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_range_is_the_utc_calendar_year() {
        assert_eq!(year_range_ms(1970), Some((0, 31_536_000_000)));
        // 2024 is a leap year: 366 days.
        let (start, end) = year_range_ms(2024).unwrap();
        assert_eq!((start, end - start), (1_704_067_200_000, 366 * 86_400_000));
        assert_eq!(year_range_ms(100_000), None);
    }

    #[test]
    fn redact_hides_credentials_only() {
        assert_eq!(redact("mysql://root:hunter2@db:3306/x"), "mysql://…@db:3306/x");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn the_claim_differs_between_backends_only_in_row_locking() {
        assert_eq!(CLAIM_POSTGRES.replace("FOR UPDATE SKIP LOCKED", ""), CLAIM_SQLITE);
    }
}
