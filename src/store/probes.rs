//! Probe results: one row per check of one port (port monitors and down-checks), the
//! monitors' logs, latest results and availability buckets.

use serde::Serialize;
use sqlx::QueryBuilder;

use super::rows::{Columns, narrow};
use super::{BeginWrite, Result, Store, StoreError, sql_limit};

// The column list shared by several queries (a macro, so `concat!` can splice it into SQL text).
macro_rules! probe_columns {
    () => {
        "project, monitor, host, port, at_ms, ok, latency_ms, error_kind, error"
    };
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

/// Rows per multi-row INSERT of probe results (9 parameters each, well under both backends' limits).
const PROBE_INSERT_CHUNK: usize = 1000;

impl Store {
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
            found.iter().map(probe).collect()
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
            found.iter().map(probe).collect()
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
            found.iter().map(|row| probe_bucket(row, from_ms, bucket_ms)).collect()
        })
    }

    /// Delete raw probe results older than `before_ms`; returns how many.
    pub async fn prune_probe_results(&self, before_ms: i64) -> Result<u64> {
        on_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM probe_results WHERE at_ms < $1").bind(before_ms).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }
}

fn probe(row: &impl Columns) -> Result<ProbeRecord> {
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

/// A row of the bucket query: `bucket` is the bucket's index from `from_ms`.
fn probe_bucket(row: &impl Columns, from_ms: i64, bucket_ms: i64) -> Result<ProbeBucket> {
    Ok(ProbeBucket {
        monitor: row.col("monitor")?,
        host: row.col("host")?,
        port: narrow(row, "port")?,
        bucket_start_ms: from_ms + row.col::<i64>("bucket")? * bucket_ms,
        ok: row.col("ok")?,
        failed: row.col("failed")?,
    })
}
