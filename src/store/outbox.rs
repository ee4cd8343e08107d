//! The notification outbox and its delivery log: rows claimed with leases, every attempt
//! recorded, delivery receipts (a read-receipt image fetched, a bounce, an SMS gateway's
//! delivery report), yearly counts of what was sent, read and delivered.

use std::collections::BTreeMap;

use serde::Serialize;

use super::rows::{Columns, narrow, text};
use super::{Backend, BeginWrite, Result, Store, month_starts_ms};
use crate::notification::{DeliveryStatus, Medium, MessageKind, NewNotification};

// The column list shared by several queries (a macro, so `concat!` can splice it into SQL text).
macro_rules! outbox_columns {
    () => {
        "id, alert_id, channel, medium, recipient, subject, body, kind, status, reason, attempts, next_attempt_ms, last_error, created_ms, sent_ms, read_ms, receipt_ms, html, attachment_name, attachment"
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub alert_id: Option<i64>,
    pub channel: String,
    pub medium: Medium,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub kind: MessageKind,
    pub status: DeliveryStatus,
    /// Why a `not_sent` notification was not sent (maintenance, a parent down, notify hours).
    pub reason: Option<String>,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub sent_ms: Option<i64>,
    /// When the mail's read-receipt image was first fetched.
    pub read_ms: Option<i64>,
    /// When a bounce or a gateway's delivery report last changed the status.
    pub receipt_ms: Option<i64>,
    /// A report mail's HTML part (the body is then its plain-text part).
    #[serde(skip)]
    pub html: Option<String>,
    /// A report mail's attachment: file name and text.
    #[serde(skip)]
    pub attachment: Option<(String, String)>,
}

/// A report e-mail to queue: the notification (its body the plain-text part), the same in
/// HTML, and the report as a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportMail {
    pub notification: NewNotification,
    pub html: String,
    pub attachment_name: String,
    pub attachment: String,
}

/// One try to send one notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub at_ms: i64,
    pub ok: bool,
    pub error: Option<String>,
}

/// What a sent notification can later be recognised by; each is stored when the send is
/// recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracking {
    /// The Message-ID an e-mail went out with: a bounce names it.
    pub message_id: Option<String>,
    /// The id an SMS gateway answered with: its delivery reports name it.
    pub gateway_id: Option<String>,
    /// SHA-256 of the id in the mail's read-receipt image URL (the id is only in the mail).
    pub read_token_sha256: Option<String>,
}

/// What an SMS gateway reported about a message it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryReport {
    Delivered,
    Failed { error: String },
}

/// The result of one send attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Sent(Tracking),
    /// Failed; retry at `retry_at_ms`, or give up (status `failed`) when `None`.
    Failed {
        error: String,
        retry_at_ms: Option<i64>,
    },
}

/// How the notifications about one port monitor's (or one host's other) alerts in one medium
/// and month ended: the port-monitoring service's yearly statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentCount {
    /// The port monitor whose alerts they were about; `None` for any other alert (a server's
    /// metrics, a down-check).
    pub monitor: Option<String>,
    /// The alert's host.
    pub host: String,
    pub medium: Medium,
    /// 1–12, in the time zone the counts were asked for.
    pub month: u8,
    /// Sent (a gateway's report of delivery included).
    pub sent: i64,
    /// Not sent on purpose: maintenance, a parent down, outside the recipient's hours, a storm digest.
    pub not_sent: i64,
    /// Given up, bounced or reported undelivered.
    pub failed: i64,
    /// Of the sent, e-mails whose read-receipt image was fetched.
    pub read: i64,
    /// Of the sent, SMS the gateway reported delivered.
    pub delivered: i64,
}

impl Store {
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
            found.iter().map(outbox).collect::<Result<_>>()?
        });
        // RETURNING promises no order.
        claimed.sort_by_key(|row| row.id);
        Ok(claimed)
    }

    /// Log an attempt and move the notification to sent, pending (retry) or failed; either way
    /// the claim on it is released. An unknown `id` is `sqlx::Error::RowNotFound`.
    pub async fn record_delivery(&self, id: i64, at_ms: i64, outcome: &DeliveryOutcome) -> Result<()> {
        const SENT: &str = "UPDATE outbox SET status = 'sent', sent_ms = $1, attempts = attempts + 1,
            message_id = $2, gateway_id = $3, read_token_sha256 = $4, claimed_by = NULL, claimed_until_ms = NULL WHERE id = $5";
        const RETRY: &str = "UPDATE outbox SET status = 'pending', next_attempt_ms = $1, attempts = attempts + 1, last_error = $2,
            claimed_by = NULL, claimed_until_ms = NULL WHERE id = $3";
        const GIVE_UP: &str = "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = $1,
            claimed_by = NULL, claimed_until_ms = NULL WHERE id = $2";
        const LOG: &str = "INSERT INTO delivery_attempts (outbox_id, at_ms, ok, error) VALUES ($1, $2, $3, $4)";

        let (ok, error) = match outcome {
            DeliveryOutcome::Sent(_) => (true, None),
            DeliveryOutcome::Failed { error, .. } => (false, Some(error)),
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let update = match outcome {
                DeliveryOutcome::Sent(t) => {
                    sqlx::query(SENT).bind(at_ms).bind(&t.message_id).bind(&t.gateway_id).bind(&t.read_token_sha256).bind(id)
                }
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
                notifications.iter().map(outbox).collect::<Result<Vec<_>>>()?,
                attempts.iter().map(attempt).collect::<Result<Vec<_>>>()?,
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

    /// Write a digest notification (storm control) that goes out at `due_ms`: rewrite row `id`
    /// while it still waits untouched (pending, never tried, not claimed, not due by `now_ms`),
    /// else insert it as a new row. Returns the id of the row that holds it.
    pub async fn write_digest(&self, id: Option<i64>, digest: &NewNotification, due_ms: i64, now_ms: i64) -> Result<i64> {
        const REWRITE: &str = "UPDATE outbox SET subject = $1, body = $2
            WHERE id = $3 AND status = 'pending' AND attempts = 0 AND claimed_by IS NULL AND next_attempt_ms > $4";
        const INSERT: &str = "INSERT INTO outbox
                (alert_id, channel, medium, recipient, subject, body, kind, status, reason, attempts, next_attempt_ms, created_ms)
            VALUES (NULL, $1, $2, $3, $4, $5, $6, 'pending', NULL, 0, $7, $8) RETURNING id";
        on_pool!(self, pool => {
            if let Some(id) = id {
                let rewritten = sqlx::query(REWRITE).bind(&digest.subject).bind(&digest.body).bind(id).bind(now_ms).execute(pool).await?;
                if rewritten.rows_affected() == 1 {
                    return Ok(id);
                }
            }
            let row = sqlx::query(INSERT)
                .bind(&digest.channel)
                .bind(digest.medium.as_str())
                .bind(&digest.recipient)
                .bind(&digest.subject)
                .bind(&digest.body)
                .bind(digest.kind.as_str())
                .bind(due_ms)
                .bind(now_ms)
                .fetch_one(pool)
                .await?;
            row.col("id")
        })
    }

    /// Whether the daily report of `project` for `day` (YYYY-MM-DD) was queued already.
    pub async fn daily_report_queued(&self, project: &str, day: &str) -> Result<bool> {
        const QUEUED: &str = "SELECT COUNT(*) AS n FROM daily_reports WHERE project = $1 AND day = $2";
        on_pool!(self, pool => Ok(sqlx::query(QUEUED).bind(project).bind(day).fetch_one(pool).await?.col::<i64>("n")? > 0))
    }

    /// Queue the daily report of `project` for `day` (YYYY-MM-DD): claim the day and write
    /// `mails` to the outbox in one transaction. A day claimed before (by an earlier run, or
    /// by another replica at the same moment) queues nothing and returns false.
    pub async fn queue_daily_report(&self, project: &str, day: &str, mails: &[ReportMail], now_ms: i64) -> Result<bool> {
        const CLAIM: &str =
            "INSERT INTO daily_reports (project, day, created_ms) VALUES ($1, $2, $3) ON CONFLICT (project, day) DO NOTHING";
        const ENQUEUE: &str = "INSERT INTO outbox
                (alert_id, channel, medium, recipient, subject, body, kind, status, reason, attempts, next_attempt_ms, created_ms,
                 html, attachment_name, attachment)
            VALUES (NULL, $1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9, $10, $11, $12)";
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if sqlx::query(CLAIM).bind(project).bind(day).bind(now_ms).execute(&mut *tx).await?.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            for mail in mails {
                let n = &mail.notification;
                sqlx::query(ENQUEUE)
                    .bind(&n.channel)
                    .bind(n.medium.as_str())
                    .bind(&n.recipient)
                    .bind(&n.subject)
                    .bind(&n.body)
                    .bind(n.kind.as_str())
                    .bind(n.status.as_str())
                    .bind(&n.reason)
                    .bind(now_ms)
                    .bind(&mail.html)
                    .bind(&mail.attachment_name)
                    .bind(&mail.attachment)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(true)
    }

    /// A mail's read-receipt image was fetched at `at_ms`: the first time is recorded, later ones
    /// change nothing. Whether this was the first time.
    pub async fn mark_read(&self, token_sha256: &str, at_ms: i64) -> Result<bool> {
        const READ: &str = "UPDATE outbox SET read_ms = $1 WHERE read_token_sha256 = $2 AND read_ms IS NULL";
        on_pool!(self, pool => {
            Ok(sqlx::query(READ).bind(at_ms).bind(token_sha256).execute(pool).await?.rows_affected() > 0)
        })
    }

    /// A bounce for the e-mail that `channel` sent with `message_id`: the notification is
    /// `failed` with `reason`. Whether such a notification exists.
    pub async fn mark_bounced(&self, channel: &str, message_id: &str, reason: &str, at_ms: i64) -> Result<bool> {
        const BOUNCED: &str = "UPDATE outbox SET status = 'failed', last_error = $1, receipt_ms = $2
            WHERE channel = $3 AND message_id = $4 AND medium = 'email' AND status IN ('sent', 'failed')";
        on_pool!(self, pool => {
            let done = sqlx::query(BOUNCED).bind(reason).bind(at_ms).bind(channel).bind(message_id).execute(pool).await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// A gateway's delivery report for the SMS that `channel` sent and the gateway called
    /// `gateway_id`: the notification becomes `delivered`, or `failed` with the gateway's error.
    /// Whether such a notification exists.
    pub async fn record_delivery_report(&self, channel: &str, gateway_id: &str, report: &DeliveryReport, at_ms: i64) -> Result<bool> {
        const DELIVERED: &str = "UPDATE outbox SET status = 'delivered', last_error = NULL, receipt_ms = $1
            WHERE channel = $2 AND gateway_id = $3 AND medium = 'sms' AND status IN ('sent', 'delivered', 'failed')";
        const FAILED: &str = "UPDATE outbox SET status = 'failed', last_error = $1, receipt_ms = $2
            WHERE channel = $3 AND gateway_id = $4 AND medium = 'sms' AND status IN ('sent', 'delivered', 'failed')";
        on_pool!(self, pool => {
            let query = match report {
                DeliveryReport::Delivered => sqlx::query(DELIVERED).bind(at_ms),
                DeliveryReport::Failed { error } => sqlx::query(FAILED).bind(error).bind(at_ms),
            };
            Ok(query.bind(channel).bind(gateway_id).execute(pool).await?.rows_affected() > 0)
        })
    }

    /// Notifications not yet sent or failed.
    pub async fn outbox_depth(&self) -> Result<i64> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT COUNT(*) AS depth FROM outbox WHERE status = 'pending'").fetch_one(pool).await?;
            row.col("depth")
        })
    }

    /// Notifications sent, not sent, failed, read and delivered per port monitor (or host),
    /// medium and month of the calendar `year` in `tz`, counted at the time each was sent (or
    /// made, when it never was); pending ones are not counted yet.
    pub async fn sent_counts(&self, project: &str, year: i32, tz: &jiff::tz::TimeZone) -> Result<Vec<SentCount>> {
        let Some(starts) = month_starts_ms(year, tz) else {
            return Ok(Vec::new());
        };
        on_pool!(self, pool => {
            let mut query = sqlx::query(SENT_COUNTS.as_str()).bind(project);
            for start in starts {
                query = query.bind(start);
            }
            let found = query.fetch_all(pool).await?;
            found.iter().map(sent_count).collect()
        })
    }
}

/// The query of [`Store::sent_counts`]: `$1` the project, `$2`..`$14` the month starts. The
/// month is a CASE over the starts (the same SQL on both backends, whatever the time zone);
/// COUNT of a CASE counts its non-NULL values: bigint on both backends, where SUM would be
/// numeric on PostgreSQL.
static SENT_COUNTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let at = "COALESCE(o.sent_ms, o.created_ms)";
    let months: String = (1..12).map(|m| format!(" WHEN {at} < ${} THEN {m}", m + 2)).collect();
    format!(
        "SELECT CASE WHEN a.rule LIKE 'port:%' THEN SUBSTR(a.rule, 6) END AS monitor, a.host, o.medium,
                CAST(CASE{months} ELSE 12 END AS BIGINT) AS month,
                COUNT(CASE WHEN o.status IN ('sent', 'delivered') THEN 1 END) AS sent,
                COUNT(CASE WHEN o.status = 'not_sent' THEN 1 END) AS not_sent,
                COUNT(CASE WHEN o.status = 'failed' THEN 1 END) AS failed,
                COUNT(CASE WHEN o.status IN ('sent', 'delivered') AND o.read_ms IS NOT NULL THEN 1 END) AS read,
                COUNT(CASE WHEN o.status = 'delivered' THEN 1 END) AS delivered
            FROM outbox o JOIN alerts a ON a.id = o.alert_id
            WHERE a.project = $1 AND o.status IN ('sent', 'delivered', 'failed', 'not_sent')
              AND {at} >= $2 AND {at} < $14
            GROUP BY 1, 2, 3, 4 ORDER BY 1 NULLS FIRST, 2, 3, 4"
    )
});

fn outbox(row: &impl Columns) -> Result<OutboxRow> {
    Ok(OutboxRow {
        id: row.col("id")?,
        alert_id: row.col("alert_id")?,
        channel: row.col("channel")?,
        medium: text(row, "medium")?,
        recipient: row.col("recipient")?,
        subject: row.col("subject")?,
        body: row.col("body")?,
        kind: text(row, "kind")?,
        status: text(row, "status")?,
        attempts: narrow(row, "attempts")?,
        next_attempt_ms: row.col("next_attempt_ms")?,
        reason: row.col("reason")?,
        last_error: row.col("last_error")?,
        created_ms: row.col("created_ms")?,
        sent_ms: row.col("sent_ms")?,
        read_ms: row.col("read_ms")?,
        receipt_ms: row.col("receipt_ms")?,
        html: row.col("html")?,
        attachment: match (row.col::<Option<String>>("attachment_name")?, row.col::<Option<String>>("attachment")?) {
            (Some(name), Some(text)) => Some((name, text)),
            _ => None,
        },
    })
}

/// A delivery attempt with the notification it belongs to.
fn attempt(row: &impl Columns) -> Result<(i64, Attempt)> {
    Ok((row.col("outbox_id")?, Attempt { at_ms: row.col("at_ms")?, ok: row.col("ok")?, error: row.col("error")? }))
}

fn sent_count(row: &impl Columns) -> Result<SentCount> {
    Ok(SentCount {
        monitor: row.col("monitor")?,
        host: row.col("host")?,
        medium: text(row, "medium")?,
        month: narrow(row, "month")?,
        sent: row.col("sent")?,
        not_sent: row.col("not_sent")?,
        failed: row.col("failed")?,
        read: row.col("read")?,
        delivered: row.col("delivered")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_differs_between_backends_only_in_row_locking() {
        assert_eq!(CLAIM_POSTGRES.replace("FOR UPDATE SKIP LOCKED", ""), CLAIM_SQLITE);
    }
}
