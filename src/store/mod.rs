//! Durable state on SQLite (the embedded default, WAL) or PostgreSQL, through one API — one file
//! per table group:
//!
//! - [`revisions`] — revisions applied, rejected or held, with their diagnostics;
//! - [`probes`] — probe results (port monitors, down-checks) as events and hourly/daily rollups:
//!   disconnect logs, latest, availability, latency;
//! - [`alerts`] — alert instance state, the alert history and its acknowledgements;
//! - [`outbox`] — the notification outbox, its delivery log and delivery receipts (reads,
//!   bounces, SMS delivery reports);
//! - [`samples`] — host reports and their 5-minute and hourly rollups;
//! - [`replicas`] — the serve replicas on one database and their heartbeats;
//! - [`leases`] — the shards' leases (PostgreSQL), and the fence every write of alert state,
//!   notifications and probe results made on behalf of a shard passes;
//! - [`lock`] — one serve per SQLite file.
//!
//! Runtime `sqlx::query` only (no macros, no `Any` driver); timestamps are epoch milliseconds
//! (BIGINT); migrations per backend are embedded.

use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Connection, PgConnection, Postgres, SqlSafeStr, Sqlite, Transaction};

pub use self::alerts::{Ack, AckRefused, AlertFilter, AlertRow, AlertStatus, FiringAlert, StoredInstance};
pub use self::leases::ShardLease;
pub use self::lock::{SqliteClaim, claim_sqlite, sqlite_file};
pub use self::outbox::{Attempt, DeliveryOutcome, DeliveryReport, OutboxRow, ReportMail, SentCount, Tracking};
pub use self::probes::{LatencySummary, ProbeBucket, ProbeDay, ProbeLatency, ProbeRecord, ProbeRetention};
pub use self::replicas::{DEFAULT_LEASE_TTL_MS, ReplicaRow};
pub use self::revisions::RevisionRecord;
pub use self::samples::{
    GRACE_MS, PeriodSeries, PeriodStats, Resolution, RollupStats, SampleRetention, SeriesPoint, ServerStateRow, StoredReport, SubjectSeries,
};

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
    #[error("the lease on shard {shard} (epoch {epoch}) is no longer held by {owner}: the write was refused")]
    LeaseLost { shard: i32, owner: String, epoch: i64 },
    #[error(
        "another serve{who} already runs on the SQLite database {database} (it holds {lock}); a SQLite database takes one serve \
         at a time: stop the other one, or run several replicas on PostgreSQL (--db postgres://…)",
        who = if holder.is_empty() { String::new() } else { format!(" ({holder})") },
        database = database.display(),
        lock = lock.display()
    )]
    InUse { database: std::path::PathBuf, lock: std::path::PathBuf, holder: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The database. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// What this process wrote of the probe tables lately (see [`probes`]).
    probes: std::sync::Arc<tokio::sync::Mutex<probes::ProbeCache>>,
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
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
/// Open a fenced write: in the transaction `$tx`, lock the lease row of each of `$fences`
/// (an iterator of [`Fence`](crate::lease::Fence)s, in shard order) with [`leases::FENCE_SQL`],
/// or return [`StoreError::LeaseLost`] for the first lease this replica no longer holds.
macro_rules! hold_leases {
    ($tx:expr, $fences:expr) => {
        for fence in $fences {
            let held: Option<i32> = sqlx::query_scalar($crate::store::leases::FENCE_SQL)
                .bind(fence.shard)
                .bind(&fence.owner)
                .bind(fence.epoch)
                .fetch_optional(&mut *$tx)
                .await?;
            if held.is_none() {
                return Err($crate::store::StoreError::LeaseLost { shard: fence.shard, owner: fence.owner.clone(), epoch: fence.epoch });
            }
        }
    };
}
// Declared after on_pool! and hold_leases!, which they use.
mod alerts;
mod leases;
mod lock;
mod outbox;
mod probes;
mod replicas;
mod revisions;
mod rows;
mod samples;

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/sqlite/0001_init.sql")),
    (2, "samples", include_str!("migrations/sqlite/0002_samples.sql")),
    (3, "alerts_firing", include_str!("migrations/sqlite/0003_alerts_firing.sql")),
    (4, "alerts_by_server", include_str!("migrations/sqlite/0004_alerts_by_server.sql")),
    (5, "alert_acks", include_str!("migrations/sqlite/0005_alert_acks.sql")),
    (6, "probe_rollups", include_str!("migrations/sqlite/0006_probe_rollups.sql")),
    (7, "held_revisions", include_str!("migrations/sqlite/0007_held_revisions.sql")),
    (8, "replicas", include_str!("migrations/sqlite/0008_replicas.sql")),
    (9, "daily_reports", include_str!("migrations/sqlite/0009_daily_reports.sql")),
    (10, "receipts", include_str!("migrations/sqlite/0010_receipts.sql")),
    (11, "alert_flapping", include_str!("migrations/sqlite/0011_alert_flapping.sql")),
    (12, "daily_rollups", include_str!("migrations/sqlite/0012_daily_rollups.sql")),
    (14, "probe_reads", include_str!("migrations/sqlite/0014_probe_reads.sql")),
    (15, "probe_hist", include_str!("migrations/sqlite/0015_probe_hist.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/postgres/0001_init.sql")),
    (2, "samples", include_str!("migrations/postgres/0002_samples.sql")),
    (3, "alerts_firing", include_str!("migrations/postgres/0003_alerts_firing.sql")),
    (4, "alerts_by_server", include_str!("migrations/postgres/0004_alerts_by_server.sql")),
    (5, "alert_acks", include_str!("migrations/postgres/0005_alert_acks.sql")),
    (6, "probe_rollups", include_str!("migrations/postgres/0006_probe_rollups.sql")),
    (7, "held_revisions", include_str!("migrations/postgres/0007_held_revisions.sql")),
    (8, "replicas", include_str!("migrations/postgres/0008_replicas.sql")),
    (9, "daily_reports", include_str!("migrations/postgres/0009_daily_reports.sql")),
    (10, "receipts", include_str!("migrations/postgres/0010_receipts.sql")),
    (11, "alert_flapping", include_str!("migrations/postgres/0011_alert_flapping.sql")),
    (12, "daily_rollups", include_str!("migrations/postgres/0012_daily_rollups.sql")),
    (13, "shard_leases", include_str!("migrations/postgres/0013_shard_leases.sql")),
    (14, "probe_reads", include_str!("migrations/postgres/0014_probe_reads.sql")),
    (15, "probe_hist", include_str!("migrations/postgres/0015_probe_hist.sql")),
];

/// How long SQLite waits for another writer before giving up with "database is locked".
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to PostgreSQL may take at startup, and waiting for a pooled connection later.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Commits of host reports in flight at once on PostgreSQL; four of the pool's ten connections,
/// so the alert engine, the prober and the API always find one.
const POSTGRES_CONCURRENT_WRITES: usize = 4;

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

/// The starts of the twelve months of a calendar year in `tz` and the start of the next year,
/// in epoch milliseconds: month `m` (1–12) is [`starts[m - 1]`, `starts[m]`). `None` outside
/// the years jiff knows.
fn month_starts_ms(year: i32, tz: &jiff::tz::TimeZone) -> Option<[i64; 13]> {
    let year = i16::try_from(year).ok()?;
    let mut starts = [0; 13];
    for (i, start) in starts.iter_mut().enumerate() {
        let (y, m) = if i == 12 { (year.checked_add(1)?, 1) } else { (year, i as i8 + 1) };
        let date = jiff::civil::Date::new(y, m, 1).ok()?;
        *start = date.to_zoned(tz.clone()).ok()?.timestamp().as_millisecond();
    }
    Some(starts)
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
            // The file is created on demand, and so is its directory (the default is data/…).
            if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
            }
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
        let probes = probes::ProbeCache::new(crate::clock::now_ms());
        Ok(Store { backend, probes: std::sync::Arc::new(tokio::sync::Mutex::new(probes)) })
    }

    /// Close every connection, waiting for those in use. On SQLite the last connection to close
    /// checkpoints the write-ahead log into the database file and removes the `-wal` and `-shm`
    /// files, so a cleanly stopped serve leaves one file.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// How many write transactions of host reports may be in flight at once: one on SQLite,
    /// which writes one transaction at a time; [`POSTGRES_CONCURRENT_WRITES`] on PostgreSQL,
    /// where a commit mostly waits for the log flush and concurrent commits share one.
    pub fn concurrent_writes(&self) -> usize {
        match self.backend {
            Backend::Sqlite(_) => 1,
            Backend::Postgres(_) => POSTGRES_CONCURRENT_WRITES,
        }
    }

    /// The most file descriptors the pool holds: a SQLite connection keeps the database, its
    /// write-ahead log and its shared-memory file open; a PostgreSQL connection, one socket.
    pub fn max_open_files(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite(pool) => 3 * u64::from(pool.options().get_max_connections()),
            Backend::Postgres(pool) => u64::from(pool.options().get_max_connections()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_starts_are_midnights_in_the_timezone() {
        let utc = jiff::tz::TimeZone::UTC;
        let starts = month_starts_ms(1970, &utc).unwrap();
        assert_eq!((starts[0], starts[1], starts[12]), (0, 31 * 86_400_000, 31_536_000_000));
        // 2024 is a leap year: 366 days, February 29 of them.
        let starts = month_starts_ms(2024, &utc).unwrap();
        assert_eq!((starts[0], starts[12] - starts[0], starts[2] - starts[1]), (1_704_067_200_000, 366 * 86_400_000, 29 * 86_400_000));
        // Seoul is 9 hours ahead of UTC: its year starts at 15:00 UTC the day before.
        let seoul = jiff::tz::TimeZone::get("Asia/Seoul").unwrap();
        assert_eq!(month_starts_ms(2024, &seoul).unwrap()[0], 1_704_067_200_000 - 9 * 3_600_000);
        assert_eq!(month_starts_ms(100_000, &utc), None);
    }

    #[test]
    fn redact_hides_credentials_only() {
        assert_eq!(redact("mysql://root:hunter2@db:3306/x"), "mysql://…@db:3306/x");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact("not a url"), "not a url");
    }
}
