//! Upgrading in place: the rows of the old `probe_results` table (one per check) become events,
//! hour rows and newest checks through the same write as live results, oldest first, a chunk
//! per transaction that also deletes the rows it converted — so an interrupted conversion
//! resumes where it stopped, and nothing is counted twice.

use sqlx::QueryBuilder;

use super::super::rows::{Columns, narrow};
use super::super::{BeginWrite, Result, Store};
use super::{Pending, ProbeRecord, latency_of, write_records};

impl Store {
    /// Convert up to `rows` of the oldest old-style probe results; returns how many were
    /// converted (0 once none are left).
    pub async fn convert_probe_results(&self, rows: u32) -> Result<u64> {
        const OLDEST: &str = "SELECT id, project, monitor, host, port, at_ms, ok, latency_ms, error_kind, error
            FROM probe_results ORDER BY at_ms, id LIMIT $1";
        let mut cache = self.probes.lock().await;
        let mut pending = Pending::default();
        let converted = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query(OLDEST).bind(i64::from(rows.max(1))).fetch_all(&mut *tx).await?;
            if found.is_empty() {
                tx.rollback().await?;
                return Ok(0);
            }
            let mut ids = Vec::with_capacity(found.len());
            let mut batch = Vec::with_capacity(found.len());
            for row in &found {
                ids.push(row.col::<i64>("id")?);
                batch.push(ProbeRecord {
                    project: row.col("project")?,
                    monitor: row.col("monitor")?,
                    host: row.col("host")?,
                    port: narrow(row, "port")?,
                    at_ms: row.col("at_ms")?,
                    ok: row.col("ok")?,
                    latency_ms: latency_of(row, "latency_ms")?,
                    error_kind: row.col("error_kind")?,
                    error: row.col("error")?,
                });
            }
            write_records(&mut tx, &cache, &cache.converting_down, &mut pending, &batch).await?;
            for chunk in ids.chunks(super::INSERT_CHUNK) {
                let mut delete = QueryBuilder::new("DELETE FROM probe_results WHERE id IN (");
                let mut list = delete.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                delete.push(")");
                delete.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            ids.len() as u64
        });
        cache.absorb(pending, true);
        Ok(converted)
    }
}
