//! The shards' leases on PostgreSQL: one row per shard with its owner, an epoch bumped at every
//! claim, and an expiry on the database's clock (`clock_timestamp()`), so the replicas' clocks
//! never decide who holds what. A SQLite file has one serve, which owns every shard without
//! rows; these functions refuse to run there.

use serde::Serialize;
use sqlx::PgPool;

use super::rows::Columns;
use super::{Backend, Result, Store, StoreError};

/// The lease check that opens every fenced write: it locks the lease row (`FOR SHARE`) for
/// the rest of the transaction, and finds it only while `$2` holds shard `$1` at epoch `$3`
/// and the lease has not expired.
pub(super) const FENCE_SQL: &str = "SELECT shard FROM shard_leases
    WHERE shard = $1 AND owner = $2 AND epoch = $3 AND expires_at > clock_timestamp() FOR SHARE";

/// One shard's lease as the database has it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardLease {
    pub shard: i32,
    /// The replica holding it; `None` when released (or never claimed).
    pub owner: Option<String>,
    pub epoch: i64,
    /// Whether the lease is still within its expiry (on the database's clock).
    pub live: bool,
}

impl Store {
    fn leases_pool(&self) -> Result<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Ok(pool),
            Backend::Sqlite(_) => Err(StoreError::Refused("shard leases on SQLite (its one serve owns every shard)".into())),
        }
    }

    /// Make sure shards `0..shards` have a lease row (free, epoch 0, when new).
    pub async fn ensure_shard_leases(&self, shards: usize) -> Result<()> {
        let pool = self.leases_pool()?;
        sqlx::query("INSERT INTO shard_leases (shard) SELECT generate_series(0, $1 - 1) ON CONFLICT (shard) DO NOTHING")
            .bind(i32::try_from(shards).unwrap_or(i32::MAX))
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Every shard's lease, by shard.
    pub async fn shard_leases(&self) -> Result<Vec<ShardLease>> {
        let pool = self.leases_pool()?;
        let rows = sqlx::query("SELECT shard, owner, epoch, expires_at > clock_timestamp() AS live FROM shard_leases ORDER BY shard")
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ShardLease { shard: row.col("shard")?, owner: row.col("owner")?, epoch: row.col("epoch")?, live: row.col("live")? })
            })
            .collect()
    }

    /// Claim `shard` for `owner` for `ttl_ms` if it is free or its lease has expired; returns
    /// the new epoch, or `None` when someone else holds it.
    pub async fn claim_shard(&self, shard: i32, owner: &str, ttl_ms: i64) -> Result<Option<i64>> {
        let pool = self.leases_pool()?;
        let epoch = sqlx::query_scalar(
            "UPDATE shard_leases SET owner = $2, epoch = epoch + 1, expires_at = clock_timestamp() + make_interval(secs => $3 / 1000.0)
             WHERE shard = $1 AND (owner IS NULL OR expires_at <= clock_timestamp()) RETURNING epoch",
        )
        .bind(shard)
        .bind(owner)
        .bind(ttl_ms as f64)
        .fetch_optional(pool)
        .await?;
        Ok(epoch)
    }

    /// Renew the leases `owner` holds, `(shard, epoch)`, for another `ttl_ms`; returns those
    /// renewed. A lease that expired, or was claimed by another replica since, is not renewed
    /// (an expired one is not revived: another replica may have acted on it already).
    pub async fn renew_shards(&self, owner: &str, held: &[(i32, i64)], ttl_ms: i64) -> Result<Vec<(i32, i64)>> {
        let pool = self.leases_pool()?;
        let (shards, epochs): (Vec<i32>, Vec<i64>) = held.iter().copied().unzip();
        let rows = sqlx::query(
            "UPDATE shard_leases AS l SET expires_at = clock_timestamp() + make_interval(secs => $4 / 1000.0)
             FROM unnest($2::int[], $3::bigint[]) AS h(shard, epoch)
             WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $1 AND l.expires_at > clock_timestamp()
             RETURNING l.shard, l.epoch",
        )
        .bind(owner)
        .bind(&shards)
        .bind(&epochs)
        .bind(ttl_ms as f64)
        .fetch_all(pool)
        .await?;
        let mut renewed: Vec<(i32, i64)> = rows.iter().map(|r| Ok((r.col("shard")?, r.col("epoch")?))).collect::<Result<_>>()?;
        renewed.sort_unstable();
        Ok(renewed)
    }

    /// Give up leases `owner` holds, `(shard, epoch)`, at once (owner cleared, expired now), so
    /// another replica can claim them without waiting for the expiry. Returns how many.
    pub async fn release_shards(&self, owner: &str, held: &[(i32, i64)]) -> Result<u64> {
        let pool = self.leases_pool()?;
        let (shards, epochs): (Vec<i32>, Vec<i64>) = held.iter().copied().unzip();
        let done = sqlx::query(
            "UPDATE shard_leases AS l SET owner = NULL, expires_at = clock_timestamp()
             FROM unnest($2::int[], $3::bigint[]) AS h(shard, epoch)
             WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $1",
        )
        .bind(owner)
        .bind(&shards)
        .bind(&epochs)
        .execute(pool)
        .await?;
        Ok(done.rows_affected())
    }
}
