//! Turning rows of either backend into the store's types, and the enums' text in the database.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Postgres, Row, Sqlite, Type};

use super::{
    AlertRow, AlertStatus, Attempt, DeliveryStatus, FiringAlert, InstanceKey, Medium, OutboxRow, ProbeBucket, ProbeRecord, Result,
    RevisionRecord, SentCount, StoreError, StoredInstance,
};
use crate::alert::Severity;

/// A Rust type both backends can decode a column into.
pub(super) trait Column: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

impl<T> Column for T where T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres> {}

/// Read a named column from a row of either backend, so each conversion below is written once.
pub(super) trait Columns {
    fn col<T: Column>(&self, name: &str) -> Result<T>;
}

impl Columns for SqliteRow {
    fn col<T: Column>(&self, name: &str) -> Result<T> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for PgRow {
    fn col<T: Column>(&self, name: &str) -> Result<T> {
        Ok(self.try_get(name)?)
    }
}

/// An enum stored as lowercase text (the same words as its serde form).
pub(super) trait Text: Sized {
    fn text(&self) -> &'static str;
    fn parse(text: &str) -> Result<Self>;
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl Text for $ty {
            fn text(&self) -> &'static str {
                match self {
                    $($ty::$variant => $text,)+
                }
            }

            fn parse(text: &str) -> Result<Self> {
                match text {
                    $($text => Ok($ty::$variant),)+
                    other => Err(StoreError::Corrupt(format!(concat!("unknown ", stringify!($ty), " `{}`"), other))),
                }
            }
        }
    };
}

text_enum!(Severity { Warning => "warning", Fatal => "fatal" });
text_enum!(AlertStatus { Firing => "firing", Resolved => "resolved" });
text_enum!(Medium { Email => "email", Sms => "sms", Webhook => "webhook" });
text_enum!(DeliveryStatus { Pending => "pending", Sent => "sent", NotSent => "not_sent", Failed => "failed", Delivered => "delivered" });

fn text<T: Text>(row: &impl Columns, name: &str) -> Result<T> {
    T::parse(&row.col::<String>(name)?)
}

/// A JSON column (stored as text on both backends).
pub(super) fn json<T: serde::de::DeserializeOwned>(row: &impl Columns, name: &str) -> Result<T> {
    let raw: String = row.col(name)?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
}

/// An integer column narrowed to the type the API uses (ports, latencies, counts).
fn narrow<T: TryFrom<i64>>(row: &impl Columns, name: &str) -> Result<T> {
    let wide: i64 = row.col(name)?;
    T::try_from(wide).map_err(|_| StoreError::Corrupt(format!("{name} {wide} is out of range")))
}

pub(super) fn revision(row: &impl Columns) -> Result<RevisionRecord> {
    Ok(RevisionRecord {
        revision: row.col("revision")?,
        at_ms: row.col("at_ms")?,
        applied: row.col("applied")?,
        diagnostics: json(row, "diagnostics")?,
    })
}

pub(super) fn probe(row: &impl Columns) -> Result<ProbeRecord> {
    let latency_ms = match row.col::<Option<i64>>("latency_ms")? {
        Some(ms) => Some(u32::try_from(ms).map_err(|_| StoreError::Corrupt(format!("latency_ms {ms} is out of range")))?),
        None => None,
    };
    Ok(ProbeRecord {
        project: row.col("project")?,
        monitor: row.col("monitor")?,
        host: row.col("host")?,
        port: narrow(row, "port")?,
        at_ms: row.col("at_ms")?,
        ok: row.col("ok")?,
        latency_ms,
        error_kind: row.col("error_kind")?,
        error: row.col("error")?,
    })
}

fn key(row: &impl Columns) -> Result<InstanceKey> {
    Ok(InstanceKey { project: row.col("project")?, server: row.col("server")?, rule: row.col("rule")?, subject: row.col("subject")? })
}

pub(super) fn instance(row: &impl Columns) -> Result<StoredInstance> {
    Ok(StoredInstance { key: key(row)?, state: json(row, "state")?, open_alert_id: row.col("open_alert_id")? })
}

pub(super) fn alert(row: &impl Columns) -> Result<AlertRow> {
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
    })
}

/// The `alerts` column of the firing-alert query: a JSON array of
/// `[id, project, server, rule, subject, severity, started_at_ms]`.
pub(super) fn firing(row: &impl Columns) -> Result<Vec<FiringAlert>> {
    let list: Vec<(i64, String, String, String, String, String, i64)> = json(row, "alerts")?;
    list.into_iter()
        .map(|(id, project, server, rule, subject, severity, started_at_ms)| {
            Ok(FiringAlert {
                id,
                key: InstanceKey { project, server, rule, subject },
                severity: Severity::parse(&severity)?,
                started_at_ms,
            })
        })
        .collect()
}

pub(super) fn outbox(row: &impl Columns) -> Result<OutboxRow> {
    Ok(OutboxRow {
        id: row.col("id")?,
        alert_id: row.col("alert_id")?,
        channel: row.col("channel")?,
        medium: text(row, "medium")?,
        recipient: row.col("recipient")?,
        subject: row.col("subject")?,
        body: row.col("body")?,
        kind: row.col("kind")?,
        status: text(row, "status")?,
        attempts: narrow(row, "attempts")?,
        next_attempt_ms: row.col("next_attempt_ms")?,
        last_error: row.col("last_error")?,
        created_ms: row.col("created_ms")?,
        sent_ms: row.col("sent_ms")?,
    })
}

/// A delivery attempt with the notification it belongs to.
pub(super) fn attempt(row: &impl Columns) -> Result<(i64, Attempt)> {
    Ok((row.col("outbox_id")?, Attempt { at_ms: row.col("at_ms")?, ok: row.col("ok")?, error: row.col("error")? }))
}

/// A row of the bucket query: `bucket` is the bucket's index from `from_ms`.
pub(super) fn probe_bucket(row: &impl Columns, from_ms: i64, bucket_ms: i64) -> Result<ProbeBucket> {
    Ok(ProbeBucket {
        monitor: row.col("monitor")?,
        host: row.col("host")?,
        port: narrow(row, "port")?,
        bucket_start_ms: from_ms + row.col::<i64>("bucket")? * bucket_ms,
        ok: row.col("ok")?,
        failed: row.col("failed")?,
    })
}

pub(super) fn sent_count(row: &impl Columns) -> Result<SentCount> {
    Ok(SentCount { host: row.col("host")?, medium: text(row, "medium")?, count: row.col("sent")? })
}
