//! The serve replicas on one database: each heartbeats its row; rows not renewed within the
//! lease TTL are dead and deleted. How the revisions they run compare ([`RevisionSkew`]).

use serde::Serialize;

use super::rows::Columns;
use super::{BeginWrite, Result, Store};
use crate::lease::RevisionSkew;

/// How long a replica's heartbeat keeps it alive unless `serve --lease-ttl` says otherwise.
pub const DEFAULT_LEASE_TTL_MS: i64 = 15_000;

/// A replica as its last heartbeat left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaRow {
    pub id: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    /// The revision it runs; `None` until it has applied one.
    pub revision: Option<String>,
}

impl Store {
    /// Write `replica`'s row (insert or renew), and delete the rows of replicas whose heartbeat
    /// is older than `ttl_ms` before it: they are dead. One transaction.
    pub async fn heartbeat_replica(&self, replica: &ReplicaRow, ttl_ms: i64) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO replicas (id, started_ms, heartbeat_ms, revision) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms,
                 revision = excluded.revision",
            )
            .bind(&replica.id)
            .bind(replica.started_ms)
            .bind(replica.heartbeat_ms)
            .bind(&replica.revision)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM replicas WHERE heartbeat_ms < $1").bind(replica.heartbeat_ms.saturating_sub(ttl_ms)).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Delete `id`'s row: a replica that stops says so at once rather than waiting to expire.
    pub async fn release_replica(&self, id: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM replicas WHERE id = $1").bind(id).execute(pool).await?;
        });
        Ok(())
    }

    /// The replicas whose heartbeat is at most `ttl_ms` older than `now_ms`, by id.
    pub async fn live_replicas(&self, now_ms: i64, ttl_ms: i64) -> Result<Vec<ReplicaRow>> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT id, started_ms, heartbeat_ms, revision FROM replicas WHERE heartbeat_ms >= $1 ORDER BY id")
                .bind(now_ms.saturating_sub(ttl_ms))
                .fetch_all(pool)
                .await?;
            rows.iter().map(replica).collect()
        })
    }
}

impl Store {
    /// How `revisions` (those the live replicas run) compare: each with when it was first
    /// applied on this database, by any replica.
    pub async fn revision_skew<'a>(&self, revisions: impl IntoIterator<Item = &'a str>) -> Result<RevisionSkew> {
        const FIRST: &str = "SELECT MIN(at_ms) FROM revisions WHERE revision = $1 AND applied = $2 AND held_until_ms IS NULL";
        let mut distinct: Vec<&str> = revisions.into_iter().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut first = Vec::with_capacity(distinct.len());
        for revision in distinct {
            let at: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(FIRST).bind(revision).bind(true).fetch_one(pool).await?);
            first.push((revision.to_string(), at));
        }
        Ok(RevisionSkew::new(first))
    }
}

fn replica(row: &impl Columns) -> Result<ReplicaRow> {
    Ok(ReplicaRow {
        id: row.col("id")?,
        started_ms: row.col("started_ms")?,
        heartbeat_ms: row.col("heartbeat_ms")?,
        revision: row.col("revision")?,
    })
}
