//! Alert instances (the state machine's persisted state) and the alert history: both written
//! in one transaction with the notifications a transition causes. Acknowledgements: the notes
//! people add to a firing alert.

use serde::Serialize;

use super::rows::{Columns, json, text};
use super::{Backend, BeginWrite, Result, Store, StoreError, sql_limit, to_json};
use crate::alert::{AlertChange, AlertState, Instance, InstanceKey, RuleId, Severity};
use crate::lease::Fence;
use crate::notification::NewNotification;

// The column list shared by several queries (a macro, so `concat!` can splice it into SQL text).
macro_rules! alert_columns {
    () => {
        "id, project, server, rule, subject, severity, status, started_at_ms, resolved_at_ms, resolve_reason, message, host, snapshot, \
         acknowledged_at_ms, flapping"
    };
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

words!(AlertStatus { Firing => "firing", Resolved => "resolved" });

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
    /// When someone first acknowledged it; `None` while nobody has.
    pub acknowledged_at_ms: Option<i64>,
    /// Its instance was flapping while it was open (its notifications held back); for a
    /// firing alert, it flaps now.
    pub flapping: bool,
}

/// One acknowledgement note on an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ack {
    pub alert_id: i64,
    pub at_ms: i64,
    /// The user's e-mail, or `operator` for the operator token.
    pub by: String,
    pub note: String,
}

/// Why an acknowledgement was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckRefused {
    /// No such alert in the project.
    NotFound,
    /// The alert has resolved: there is nothing left to acknowledge.
    Resolved,
}

/// An alert firing now, without its message and snapshot: what state colours and counters need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiringAlert {
    pub id: i64,
    pub key: InstanceKey,
    pub severity: Severity,
    pub started_at_ms: i64,
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
    /// Skip this many of the newest matches first (a page further back).
    pub offset: u32,
}

/// A persisted alert instance: its key, state machine and open alert row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInstance {
    pub key: InstanceKey,
    pub instance: Instance,
}

impl Store {
    /// Every persisted alert instance, to resume after a restart.
    pub async fn load_instances(&self) -> Result<Vec<StoredInstance>> {
        const ALL: &str =
            "SELECT project, server, rule, subject, state, open_alert_id FROM alert_instances ORDER BY project, server, rule, subject";
        on_pool!(self, pool => {
            let found = sqlx::query(ALL).fetch_all(pool).await?;
            found.iter().map(instance).collect()
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
        self.apply_alert_fenced(None, key, state, open_alert_id, change, notifications, now_ms).await
    }

    /// [`Store::apply_alert`] on behalf of a shard whose lease `fence` names (PostgreSQL): the
    /// transaction first takes a share lock on the shard's lease row, and only while the row
    /// still has this owner and epoch and has not expired on the database's clock. A claim by
    /// another replica waits for that lock, so every write either happens under the lease or
    /// not at all: a replica that lost its lease gets [`StoreError::LeaseLost`] and nothing of
    /// the decision — state, history or notification — is applied.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_alert_fenced(
        &self,
        fence: Option<&Fence>,
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
        const FLAPPING: &str = "UPDATE alerts SET flapping = $1 WHERE id = $2 AND flapping <> $1";
        const SAVE: &str = "INSERT INTO alert_instances (project, server, rule, subject, state, open_alert_id, updated_ms)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (project, server, rule, subject)
            DO UPDATE SET state = excluded.state, open_alert_id = excluded.open_alert_id, updated_ms = excluded.updated_ms";
        const FORGET: &str = "DELETE FROM alert_instances WHERE project = $1 AND server = $2 AND rule = $3 AND subject = $4";
        const ENQUEUE: &str = "INSERT INTO outbox
                (alert_id, channel, medium, recipient, subject, body, kind, status, reason, attempts, next_attempt_ms, created_ms)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10)";

        let rule = key.rule.to_string();
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
            hold_leases!(tx, fence.as_slice());
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
                        .bind(&rule)
                        .bind(&key.subject)
                        .bind(severity.as_str())
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
                        sqlx::query(ESCALATE).bind(severity.as_str()).bind(id).execute(&mut *tx).await?;
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
            // The alert this decision concerns is marked while its instance flaps; an open one
            // is unmarked once it settled (a decision of time alone, with no change).
            let flapping = state.flapping.is_some();
            let mark = match change {
                Some(AlertChange::Event { .. }) => None,
                Some(_) if flapping => alert_id,
                None => open_after,
                Some(_) => None,
            };
            if let Some(id) = mark {
                sqlx::query(FLAPPING).bind(flapping).bind(id).execute(&mut *tx).await?;
            }

            if at_rest {
                sqlx::query(FORGET).bind(&key.project).bind(&key.server).bind(&rule).bind(&key.subject).execute(&mut *tx).await?;
            } else {
                sqlx::query(SAVE)
                    .bind(&key.project)
                    .bind(&key.server)
                    .bind(&rule)
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
                    .bind(n.medium.as_str())
                    .bind(&n.recipient)
                    .bind(&n.subject)
                    .bind(&n.body)
                    .bind(n.kind.as_str())
                    .bind(n.status.as_str())
                    .bind(&n.reason)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(open_after)
        })
    }

    /// Alerts matching every filter that is set, newest first, after skipping `offset`. A
    /// `limit` of 0 means no limit.
    pub async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRow>> {
        const LIST: &str = concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts",
            " WHERE ($1 IS NULL OR project = $1) AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR severity = $3)",
            " AND ($4 IS NULL OR server = $4)",
            " AND ($5 IS NULL OR resolved_at_ms IS NULL OR resolved_at_ms >= $5) AND ($6 IS NULL OR started_at_ms <= $6)",
            " ORDER BY started_at_ms DESC, id DESC LIMIT $7 OFFSET $8"
        );
        on_pool!(self, pool => {
            let found = sqlx::query(LIST)
                .bind(&filter.project)
                .bind(filter.status.map(|s| s.as_str()))
                .bind(filter.severity.map(|s| s.as_str()))
                .bind(&filter.server)
                .bind(filter.from_ms)
                .bind(filter.to_ms)
                .bind(sql_limit(filter.limit))
                .bind(i64::from(filter.offset))
                .fetch_all(pool)
                .await?;
            found.iter().map(alert).collect()
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
            firing(&query.fetch_one(pool).await?)?
        });
        firing.sort_by_key(|a| a.id);
        Ok(firing)
    }

    /// Record `by`'s note on firing alert `alert_id` of `project`, in one transaction with the
    /// alert's first-acknowledgement time. A resolved alert refuses it: a later firing is a new
    /// alert that needs its own acknowledgement.
    pub async fn acknowledge(
        &self,
        project: &str,
        alert_id: i64,
        by: &str,
        note: &str,
        at_ms: i64,
    ) -> Result<std::result::Result<Ack, AckRefused>> {
        const MARK: &str = "UPDATE alerts SET acknowledged_at_ms = COALESCE(acknowledged_at_ms, $1)
            WHERE id = $2 AND project = $3 AND status = 'firing'";
        const EXISTS: &str = "SELECT status FROM alerts WHERE id = $1 AND project = $2";
        const INSERT: &str = "INSERT INTO alert_acks (alert_id, at_ms, by_user, note) VALUES ($1, $2, $3, $4)";
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let marked = sqlx::query(MARK).bind(at_ms).bind(alert_id).bind(project).execute(&mut *tx).await?.rows_affected();
            if marked == 0 {
                let found = sqlx::query(EXISTS).bind(alert_id).bind(project).fetch_optional(&mut *tx).await?;
                return Ok(Err(if found.is_some() { AckRefused::Resolved } else { AckRefused::NotFound }));
            }
            sqlx::query(INSERT).bind(alert_id).bind(at_ms).bind(by).bind(note).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Ok(Ack { alert_id, at_ms, by: by.to_string(), note: note.to_string() }))
        })
    }

    /// The acknowledgements of `alert_ids`, oldest first per alert (one query for a whole page).
    pub async fn acks_for(&self, alert_ids: &[i64]) -> Result<Vec<Ack>> {
        const SQLITE: &str = "SELECT alert_id, at_ms, by_user, note FROM alert_acks
            WHERE alert_id IN (SELECT value FROM json_each($1)) ORDER BY alert_id, id";
        const POSTGRES: &str = "SELECT alert_id, at_ms, by_user, note FROM alert_acks
            WHERE alert_id IN (SELECT value::bigint FROM json_array_elements_text($1::json)) ORDER BY alert_id, id";
        if alert_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = to_json(&alert_ids)?;
        let sql = match self.backend {
            Backend::Sqlite(_) => SQLITE,
            Backend::Postgres(_) => POSTGRES,
        };
        on_pool!(self, pool => {
            let found = sqlx::query(sql).bind(&ids).fetch_all(pool).await?;
            found.iter().map(ack).collect()
        })
    }

    /// The ids of firing alerts someone acknowledged (reminders stop for them).
    pub async fn acknowledged_firing_alerts(&self) -> Result<std::collections::HashSet<i64>> {
        const ACKED: &str = "SELECT id FROM alerts WHERE status = 'firing' AND acknowledged_at_ms IS NOT NULL";
        on_pool!(self, pool => {
            let found = sqlx::query(ACKED).fetch_all(pool).await?;
            found.iter().map(|row| row.col::<i64>("id")).collect()
        })
    }

    pub async fn get_alert(&self, id: i64) -> Result<Option<AlertRow>> {
        const GET: &str = concat!("SELECT ", alert_columns!(), " FROM alerts WHERE id = $1");
        on_pool!(self, pool => {
            let found = sqlx::query(GET).bind(id).fetch_optional(pool).await?;
            found.as_ref().map(alert).transpose()
        })
    }
}

fn key(row: &impl Columns) -> Result<InstanceKey> {
    Ok(InstanceKey {
        project: row.col("project")?,
        server: row.col("server")?,
        rule: RuleId::from_stored(&row.col::<String>("rule")?),
        subject: row.col("subject")?,
    })
}

fn instance(row: &impl Columns) -> Result<StoredInstance> {
    Ok(StoredInstance { key: key(row)?, instance: Instance { state: json(row, "state")?, open_alert_id: row.col("open_alert_id")? } })
}

fn alert(row: &impl Columns) -> Result<AlertRow> {
    Ok(AlertRow {
        id: row.col("id")?,
        key: key(row)?,
        severity: text(row, "severity")?,
        status: text(row, "status")?,
        started_at_ms: row.col("started_at_ms")?,
        resolved_at_ms: row.col("resolved_at_ms")?,
        resolve_reason: row.col("resolve_reason")?,
        message: row.col("message")?,
        host: row.col("host")?,
        snapshot: json(row, "snapshot")?,
        acknowledged_at_ms: row.col("acknowledged_at_ms")?,
        flapping: row.col("flapping")?,
    })
}

fn ack(row: &impl Columns) -> Result<Ack> {
    Ok(Ack { alert_id: row.col("alert_id")?, at_ms: row.col("at_ms")?, by: row.col("by_user")?, note: row.col("note")? })
}

/// The `alerts` column of the firing-alert query: a JSON array of
/// `[id, project, server, rule, subject, severity, started_at_ms]`.
fn firing(row: &impl Columns) -> Result<Vec<FiringAlert>> {
    let list: Vec<(i64, String, String, String, String, String, i64)> = json(row, "alerts")?;
    list.into_iter()
        .map(|(id, project, server, rule, subject, severity, started_at_ms)| {
            Ok(FiringAlert {
                id,
                key: InstanceKey { project, server, rule: RuleId::from_stored(&rule), subject },
                severity: severity.parse().map_err(|e: crate::errors::UnknownWord| StoreError::Corrupt(e.to_string()))?,
                started_at_ms,
            })
        })
        .collect()
}
