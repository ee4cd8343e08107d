//! Host metrics: raw samples (one row per report), 5-minute, hourly and daily rollups, the newest
//! report of every server, chart series read at the resolution their range needs, and a period's
//! statistics for reports.
//!
//! # Encoding
//!
//! A raw row's `vals` is JSON text: every metric value of the report as a `[name, subject, value]`
//! triple, subject `null` for host-wide metrics — `[["cpu.usage",null,12.5],["disk.usage","/",40.1]]`.
//! A rollup row's `vals` holds `[name, subject, count, sum, min, max]` per series, sorted by name and
//! subject; a daily row adds `last`, the average of the newest hour holding the series. JSON has no NaN or infinity (serde_json would write `null`), so reports carrying them
//! are refused; sums saturate at ±`f64::MAX` instead of overflowing. Names this version does not
//! know (data written by a newer one) are skipped when decoding raw samples.
//!
//! # Rolling up, late reports and pruning
//!
//! [`Store::roll_up`] aggregates every completed 5-minute bucket since the `rolled_5m` watermark
//! (a bucket is complete [`GRACE_MS`] after its end), for all servers, then every hour the
//! 5-minute buckets now cover, from the 5-minute rollups, then every UTC day the hours now cover,
//! from the hourly rollups (`rolled_1d`; at most [`DAYS_PER_RUN`] days a run, oldest first).
//! Days serve reports only: a month of a server is read from about 30 day rows and the hours
//! at either end (a project's days start at its own midnight), not from 744 hours. Before reading it raises `late_before`
//! to the end of the last bucket it will roll up; [`Store::insert_reports`] reads that mark (on
//! PostgreSQL under a share lock, so the raise waits for inserts in flight) and records a row in
//! `metric_late_buckets` for every report of an earlier bucket. The next run aggregates those
//! buckets again from raw samples, their hours from 5-minute rollups and their days from hours. Every write of a run
//! bumps `rollup_run` if it still has the value the run started with, so of two concurrent runs
//! (two serve replicas) one stops and neither overwrites fresher rollups with stale ones.
//!
//! [`Store::prune_samples`] never deletes raw samples that are not rolled up (nor those of late
//! buckets waiting), nor 5-minute rollups an hour still needs, and records how far raw samples
//! are pruned (`raw_from`): a report older than that is not stored, since its bucket could no
//! longer be aggregated whole.

mod encoding;
mod period;
mod rollup;
mod shared;

use std::collections::{BTreeMap, BTreeSet};

use encoding::*;
pub use period::{PeriodSeries, PeriodStats};

use serde::Serialize;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Postgres, QueryBuilder, Sqlite, Transaction};

use super::rows::Columns;
use super::{Backend, BeginWrite, Result, Store, StoreError, to_json};
use crate::catalog;
use crate::protocol::{MetricValue, Report};

/// The agents' reporting interval: the nominal step of raw series.
const RAW_STEP_MS: i64 = 5_000;
const FIVE_MINUTES_MS: i64 = 5 * 60_000;
const HOUR_MS: i64 = 60 * 60_000;
/// Daily rollups cover UTC days.
const DAY_MS: i64 = 24 * HOUR_MS;
/// At most this many days are rolled up in one run, so the first run over a database with a
/// long history of hours (one from before daily rollups) does not hold up the runs after it.
const DAYS_PER_RUN: i64 = 31;
/// How long after its end a 5-minute bucket is rolled up: reports in flight at the bucket's end
/// still land in it rather than making it late.
pub const GRACE_MS: i64 = 30_000;

/// Rows per multi-row INSERT of raw samples (4 parameters each).
const SAMPLE_INSERT_CHUNK: usize = 1_000;
/// Rows per multi-row upsert of server states (6 parameters each).
const STATE_UPSERT_CHUNK: usize = 1_000;
/// Rows per multi-row INSERT of late-bucket marks (3 parameters each).
const LATE_INSERT_CHUNK: usize = 1_000;
/// Late-bucket marks per DELETE.
const LATE_DELETE_CHUNK: usize = 1_000;
/// Rollup rows (a few KB each) that roll_up collects before writing them in one transaction.
const ROLLUP_WRITE_CHUNK: usize = 256;

/// One report of one server, to store.
#[derive(Debug, Clone, Copy)]
pub struct StoredReport<'a> {
    pub project: &'a str,
    pub server: &'a str,
    pub report: &'a Report,
}

/// The newest stored report of a server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStateRow {
    pub project: String,
    pub server: String,
    pub last_report_ms: i64,
    pub report: Report,
}

/// The spacing of a chart's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Every report (nominally every 5 s).
    Raw,
    FiveMinutes,
    Hour,
}

impl Resolution {
    /// The chart resolutions: raw up to 1 h, 5 minutes up to 24 h, 1 hour beyond.
    pub fn for_range(range_ms: i64) -> Resolution {
        if range_ms <= HOUR_MS {
            Resolution::Raw
        } else if range_ms <= 24 * HOUR_MS {
            Resolution::FiveMinutes
        } else {
            Resolution::Hour
        }
    }

    /// Milliseconds between points (for raw, the agents' nominal interval).
    pub fn step_ms(self) -> i64 {
        match self {
            Resolution::Raw => RAW_STEP_MS,
            Resolution::FiveMinutes => FIVE_MINUTES_MS,
            Resolution::Hour => HOUR_MS,
        }
    }
}

/// One point of a chart: the values in one bucket (for raw points all three are the value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// The bucket's start, or the report's time for raw points.
    pub at_ms: i64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

/// One series of [`Store::subject_series`]: a metric of one subject (`None` for a host-wide
/// metric) and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectSeries {
    pub name: &'static str,
    pub subject: Option<String>,
    pub points: Vec<SeriesPoint>,
}

/// A stored row a chart reads: the chart bucket it falls in, its `vals`, and whether they are a
/// rollup's.
struct ChartRow {
    bucket_ms: i64,
    vals: String,
    rollup: bool,
}

/// What one [`Store::roll_up`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupStats {
    /// 5-minute rollup rows written (one per server and bucket with samples).
    pub five_minute_rows: u64,
    pub hour_rows: u64,
    /// Daily rollup rows written (one per server and UTC day).
    pub day_rows: u64,
    /// 5-minute buckets aggregated again because late reports arrived for them.
    pub late_buckets: u64,
    /// Another run wrote meanwhile, so this one stopped (it did no harm; the next run goes on).
    pub superseded: bool,
}

/// How long samples are kept, per resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRetention {
    pub raw_ms: i64,
    pub five_min_ms: i64,
    pub hour_ms: i64,
}

impl Default for SampleRetention {
    /// Raw 6 h, 5-minute rollups 8 days, hourly rollups 400 days: each comfortably more than the
    /// longest range charted at that resolution (1 h, 24 h, 30 days) and a year of hours. Daily
    /// rollups are kept as long as hourly ones.
    fn default() -> SampleRetention {
        SampleRetention { raw_ms: 6 * HOUR_MS, five_min_ms: 8 * 24 * HOUR_MS, hour_ms: 400 * 24 * HOUR_MS }
    }
}

/// The start of the bucket of `step` that holds `at_ms`.
fn floor_to(at_ms: i64, step: i64) -> i64 {
    at_ms.div_euclid(step).saturating_mul(step)
}

// ---- SQL ----

/// A condition that takes the PostgreSQL advisory lock [`MARKS_QUEUE`] (with `$lock`,
/// `pg_advisory_xact_lock` or `…_shared`) once, before any row of the statement is read: an
/// uncorrelated subquery is evaluated first, and the lock is held until the commit.
macro_rules! marks_queue {
    ($lock:literal) => {
        concat!("(SELECT count(*) FROM (SELECT ", $lock, "(", "8605091778320364289", ")) AS queue) = 1")
    };
}

/// The advisory lock that queues the writers of the marks on PostgreSQL in turn (see
/// [`INSERT_REPORTS_POSTGRES`]): "wkmarks" and 1, as a number. [`marks_queue!`] writes it out.
#[cfg(test)]
const MARKS_QUEUE: i64 = 8_605_091_778_320_364_289;

/// What insert_reports needs to know on SQLite, read inside its write transaction (whose lock
/// makes roll_up's raise of `late_before` wait for an insert in flight).
const INGEST_MARKS_SQLITE: &str = "SELECT name, value FROM metric_marks WHERE name IN ('late_before', 'raw_from')";

/// insert_reports on PostgreSQL: the whole batch in one statement, so one round trip and one
/// commit however many reports it holds. The reports come as arrays (`$1`–`$4`: project,
/// server, time and `vals` of each) and so do the server states (`$5`–`$10`), so the text is the
/// same for every batch and is prepared once per connection. Rows are written in key order (the
/// states come sorted), so two batches in flight at once wait for each other, if at all, in
/// one order and never deadlock. The marks are read `FOR SHARE`:
/// the rows stay locked until the commit, so roll_up's raise of `late_before` waits for inserts
/// in flight, and an insert that waited reads the raised value. A report before `raw_from` is
/// not stored; one of a 5-minute bucket before `late_before` marks that bucket late.
///
/// Several of these commit at once (see the collector's writer), and row locks are not granted
/// in turn: shared lockers that keep overlapping could keep a raise waiting for as long as the
/// load lasts. So each first takes [`MARKS_QUEUE`] shared, and the raise and prune's hold take
/// it exclusively: that lock is granted in turn, so a raise waits only for the inserts already
/// in flight, and the ones that come after it wait for it.
const INSERT_REPORTS_POSTGRES: &str = concat!(
    "
WITH marks AS MATERIALIZED (
    SELECT max(value) FILTER (WHERE name = 'late_before') AS late_before,
           max(value) FILTER (WHERE name = 'raw_from') AS raw_from
    FROM (SELECT name, value FROM metric_marks WHERE name IN ('late_before', 'raw_from')
            AND ",
    marks_queue!("pg_advisory_xact_lock_shared"),
    "
          FOR SHARE) AS locked
),
kept AS MATERIALIZED (
    SELECT r.project, r.server, r.at_ms, r.vals, m.late_before
    FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[]) AS r(project, server, at_ms, vals), marks AS m
    WHERE m.raw_from IS NULL OR r.at_ms >= m.raw_from
),
samples AS (
    INSERT INTO metric_samples (project, server, at_ms, vals)
    SELECT project, server, at_ms, vals FROM kept ORDER BY project, server, at_ms
    ON CONFLICT (project, server, at_ms) DO NOTHING
),
late AS (
    INSERT INTO metric_late_buckets (project, server, bucket_ms)
    SELECT DISTINCT project, server, bucket_ms
    FROM (SELECT project, server, at_ms - mod(mod(at_ms, 300000) + 300000, 300000) AS bucket_ms, late_before FROM kept) AS b
    WHERE bucket_ms < late_before
)
INSERT INTO server_states (project, server, last_report_ms, boot_time, facts, latest)
SELECT * FROM unnest($5::text[], $6::text[], $7::int8[], $8::int8[], $9::text[], $10::text[])
ON CONFLICT (project, server) DO UPDATE SET last_report_ms = excluded.last_report_ms,
    boot_time = excluded.boot_time, facts = excluded.facts, latest = excluded.latest
  WHERE excluded.last_report_ms > server_states.last_report_ms"
);

/// Prune's hold on the raw horizon until it has written the new one: on PostgreSQL a lock that
/// waits for inserts in flight and holds up new ones (on SQLite the write lock does both).
/// Only this row: the watermarks are read unlocked, as an older one only prunes less.
macro_rules! hold_raw_from_sql {
    ($lock:expr) => {
        concat!("SELECT value FROM metric_marks WHERE name = 'raw_from'", $lock)
    };
}
const HOLD_RAW_FROM_SQLITE: &str = hold_raw_from_sql!("");
const HOLD_RAW_FROM_POSTGRES: &str = hold_raw_from_sql!(concat!(" AND ", marks_queue!("pg_advisory_xact_lock"), " FOR UPDATE"));

const ALL_MARKS: &str = "SELECT name, value FROM metric_marks";
/// Raise a mark, never lower it.
const RAISE_MARK: &str = "UPDATE metric_marks SET value = $2 WHERE name = $1 AND (value IS NULL OR value < $2)";
/// [`RAISE_MARK`] on PostgreSQL, in its turn behind the inserts in flight ([`MARKS_QUEUE`]).
const RAISE_MARK_POSTGRES: &str = concat!(
    "UPDATE metric_marks SET value = $2 WHERE name = $1 AND (value IS NULL OR value < $2) AND ",
    marks_queue!("pg_advisory_xact_lock")
);
/// The compare-and-set every roll_up write starts with.
const BUMP_RUN: &str = "UPDATE metric_marks SET value = value + 1 WHERE name = 'rollup_run' AND value = $1";
const SET_MARK: &str = "UPDATE metric_marks SET value = $2 WHERE name = $1";

const RAW_RANGE: &str = "SELECT at_ms, vals FROM metric_samples
    WHERE project = $1 AND server = $2 AND at_ms >= $3 AND at_ms < $4 ORDER BY at_ms";
const ROLLUP_RANGE: &str = "SELECT bucket_ms, vals FROM metric_rollups
    WHERE project = $1 AND server = $2 AND resolution_ms = $3 AND bucket_ms >= $4 AND bucket_ms < $5 ORDER BY bucket_ms";

/// The `resolution_ms` that means raw samples to [`fetch_vals!`].
const RAW: i64 = 0;

/// Raw samples (`resolution_ms` [`RAW`]) or rollups of one server in [from, to), oldest first:
/// the time (bucket start) and `vals` of each. `$exec` is a pool or `&mut *tx` of either backend.
macro_rules! fetch_vals {
    ($exec:expr, $project:expr, $server:expr, $resolution_ms:expr, $from:expr, $to:expr) => {{
        let (project, server, resolution_ms, from, to): (&str, &str, i64, i64, i64) = ($project, $server, $resolution_ms, $from, $to);
        let (found, column) = if resolution_ms == RAW {
            (sqlx::query(RAW_RANGE).bind(project).bind(server).bind(from).bind(to).fetch_all($exec).await?, "at_ms")
        } else {
            (
                sqlx::query(ROLLUP_RANGE).bind(project).bind(server).bind(resolution_ms).bind(from).bind(to).fetch_all($exec).await?,
                "bucket_ms",
            )
        };
        found.iter().map(|row| Ok((row.col(column)?, row.col("vals")?))).collect::<Result<Vec<(i64, String)>>>()
    }};
}

/// The marks, by name.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    rolled_5m: Option<i64>,
    rolled_1h: Option<i64>,
    rolled_1d: Option<i64>,
    late_before: Option<i64>,
    raw_from: Option<i64>,
    rollup_run: i64,
}

impl Marks {
    fn from_rows(rows: &[impl Columns]) -> Result<Marks> {
        let mut marks = Marks::default();
        for row in rows {
            let value: Option<i64> = row.col("value")?;
            match row.col::<String>("name")?.as_str() {
                "rolled_5m" => marks.rolled_5m = value,
                "rolled_1h" => marks.rolled_1h = value,
                "rolled_1d" => marks.rolled_1d = value,
                "late_before" => marks.late_before = value,
                "raw_from" => marks.raw_from = value,
                "rollup_run" => marks.rollup_run = value.unwrap_or(0),
                other => return Err(StoreError::Corrupt(format!("unknown metric mark `{other}`"))),
            }
        }
        Ok(marks)
    }
}

/// A read that sees one snapshot across statements (PostgreSQL's default isolation takes a new
/// one per statement; a SQLite transaction in WAL mode keeps the first).
trait BeginRead {
    type Db: sqlx::Database;
    async fn begin_read(&self) -> sqlx::Result<Transaction<'static, Self::Db>>;
}

impl BeginRead for SqlitePool {
    type Db = Sqlite;
    async fn begin_read(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        self.begin().await
    }
}

impl BeginRead for PgPool {
    type Db = Postgres;
    async fn begin_read(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await
    }
}

impl Store {
    /// Store a batch of reports in one transaction: a raw row per report (a report already
    /// stored for the same server and time is skipped), a mark for each late bucket, and per
    /// server the newest report of the batch as its state when it is newer than the stored one.
    /// Reports older than the pruned raw horizon are not stored as samples. A non-finite value
    /// anywhere refuses the whole batch ([`StoreError::Refused`]).
    pub async fn insert_reports(&self, batch: &[StoredReport<'_>]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(batch.len());
        let mut newest: BTreeMap<(&str, &str), &Report> = BTreeMap::new();
        for r in batch {
            if let Some(problem) = non_finite(r.report) {
                return Err(StoreError::Refused(format!("report of {}/{} at {}: {problem}", r.project, r.server, r.report.at_ms)));
            }
            encoded.push(to_json(&RawVals(&r.report.metrics))?);
            let entry = newest.entry((r.project, r.server)).or_insert(r.report);
            if r.report.at_ms >= entry.at_ms {
                *entry = r.report;
            }
        }
        let states = newest
            .into_iter()
            .map(|((project, server), report)| {
                let boot_time = i64::try_from(report.facts.boot_time).unwrap_or(i64::MAX);
                Ok((project, server, report.at_ms, boot_time, to_json(&report.facts)?, to_json(report)?))
            })
            .collect::<Result<Vec<_>>>()?;
        match &self.backend {
            Backend::Sqlite(pool) => insert_reports_sqlite(pool, batch, &encoded, &states).await,
            Backend::Postgres(pool) => insert_reports_postgres(pool, batch, &encoded, &states).await,
        }
    }

    /// The newest report of every server, to restore the live view after a restart. A row that
    /// no longer decodes (written by a newer version, say) is left out with a warning rather
    /// than keeping serve from starting.
    pub async fn load_server_states(&self) -> Result<Vec<ServerStateRow>> {
        const ALL: &str = "SELECT project, server, last_report_ms, latest FROM server_states ORDER BY project, server";
        let found: Vec<(String, String, i64, String)> = on_pool!(self, pool => {
            let rows = sqlx::query(ALL).fetch_all(pool).await?;
            rows.iter()
                .map(|row| Ok((row.col("project")?, row.col("server")?, row.col("last_report_ms")?, row.col("latest")?)))
                .collect::<Result<_>>()?
        });
        Ok(found
            .into_iter()
            .filter_map(|(project, server, last_report_ms, latest)| match serde_json::from_str(&latest) {
                Ok(report) => Some(ServerStateRow { project, server, last_report_ms, report }),
                Err(e) => {
                    tracing::warn!(%project, %server, error = %e, "The stored state of a server does not decode; it is left out.");
                    None
                }
            })
            .collect())
    }

    /// Every raw sample of a server in [from, to), oldest first, decoded (the metrics around an
    /// alert). Names this version does not know are left out.
    pub async fn raw_samples(&self, project: &str, server: &str, from_ms: i64, to_ms: i64) -> Result<Vec<(i64, Vec<MetricValue>)>> {
        let rows = self.rows(project, server, RAW, from_ms, to_ms).await?;
        rows.iter()
            .map(|(at_ms, vals)| {
                let metrics = decode::<RawEntry>("metric_samples.vals", vals)?
                    .into_iter()
                    .filter_map(|RawEntry(name, subject, value)| {
                        Some(MetricValue { name: catalog::lookup(&name.0)?.name, subject: subject.map(|s| s.0.into_owned()), value })
                    })
                    .collect();
                Ok((*at_ms, metrics))
            })
            .collect()
    }

    /// A chart of one metric of one server over [from, to) at `resolution`. Rollup points sit at
    /// bucket starts and cover every bucket overlapping the range; the part of the range not
    /// rolled up yet is aggregated from finer data on the fly, so the last point reaches now
    /// (a partial bucket). `subject: None` on a per-subject metric (disk.usage per mount) gives
    /// at each point the highest of its subjects, statistic by statistic: the worst mount.
    #[allow(clippy::too_many_arguments)]
    pub async fn metric_series(
        &self,
        project: &str,
        server: &str,
        name: &str,
        subject: Option<&str>,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<SeriesPoint>> {
        let wanted = Wanted { name, subject };
        let mut buckets: BTreeMap<i64, SubjectAggs> = BTreeMap::new();
        for row in self.chart_rows(project, server, from_ms, to_ms, resolution).await? {
            wanted.fold(buckets.entry(row.bucket_ms).or_default(), &row.vals, row.rollup)?;
        }
        Ok(buckets.iter().filter_map(|(at_ms, aggs)| point(*at_ms, aggs)).collect())
    }

    /// Every series of the metrics `names` of one server over [from, to) at `resolution`, one per
    /// metric and subject found in the range (each interface, mount or device on its own), in
    /// the order of `names`, then by subject; points as [`Store::metric_series`] gives them.
    /// One read of the range, however many series it holds: a server's detail charts.
    pub async fn subject_series(
        &self,
        project: &str,
        server: &str,
        names: &[&str],
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<SubjectSeries>> {
        let mut sink = EachSeries::new(names);
        for row in self.chart_rows(project, server, from_ms, to_ms, resolution).await? {
            sink.bucket_ms = row.bucket_ms;
            fold(&mut sink, &row.vals, row.rollup)?;
        }
        let mut found: Vec<SubjectSeries> = sink
            .series
            .into_iter()
            .filter_map(|(key, buckets)| {
                let (name, subject) = split_key(&key);
                let metric = catalog::lookup(name)?;
                let points = buckets.iter().map(|(at_ms, a)| SeriesPoint { at_ms: *at_ms, avg: a.avg(), min: a.min, max: a.max }).collect();
                Some(SubjectSeries { name: metric.name, subject: subject.map(str::to_owned), points })
            })
            .collect();
        found.sort_by_key(|s| names.iter().position(|n| *n == s.name));
        Ok(found)
    }

    /// The rows a chart over [from, to) at `resolution` reads, oldest first, each with the start
    /// of the chart bucket it falls in (a raw chart: the report's own time). Coarsest first:
    /// hourly rollups up to their watermark, then 5-minute rollups up to theirs, then raw
    /// samples up to `to`, in one snapshot.
    async fn chart_rows(&self, project: &str, server: &str, from_ms: i64, to_ms: i64, resolution: Resolution) -> Result<Vec<ChartRow>> {
        if from_ms >= to_ms {
            return Ok(Vec::new());
        }
        let as_rows = |rows: Vec<(i64, String)>, step: Option<i64>, rollup: bool| {
            rows.into_iter().map(move |(at_ms, vals)| ChartRow { bucket_ms: step.map_or(at_ms, |s| floor_to(at_ms, s)), vals, rollup })
        };
        if resolution == Resolution::Raw {
            return Ok(as_rows(self.rows(project, server, RAW, from_ms, to_ms).await?, None, false).collect());
        }
        let step = resolution.step_ms();
        let lo = floor_to(from_ms, step);
        let (hour_rows, five_rows, raw_rows) = on_pool!(self, pool => {
            let mut tx = pool.begin_read().await?;
            let marks = Marks::from_rows(&sqlx::query(ALL_MARKS).fetch_all(&mut *tx).await?)?;
            let hour_until = match resolution {
                Resolution::Hour => marks.rolled_1h.unwrap_or(lo).clamp(lo, to_ms),
                _ => lo,
            };
            let five_until = marks.rolled_5m.unwrap_or(hour_until).clamp(hour_until, to_ms);
            let hours = fetch_vals!(&mut *tx, project, server, HOUR_MS, lo, hour_until)?;
            let fives = fetch_vals!(&mut *tx, project, server, FIVE_MINUTES_MS, hour_until, five_until)?;
            let raw = fetch_vals!(&mut *tx, project, server, RAW, five_until, to_ms)?;
            tx.commit().await?;
            (hours, fives, raw)
        });
        Ok(as_rows(hour_rows, Some(step), true)
            .chain(as_rows(five_rows, Some(step), true))
            .chain(as_rows(raw_rows, Some(step), false))
            .collect())
    }

    /// Delete what `retention` no longer keeps at `now_ms`; returns how many rows. Raw samples go
    /// only once rolled up (and their late buckets aggregated again), 5-minute rollups only once
    /// rolled into hours; cuts fall on bucket boundaries.
    pub async fn prune_samples(&self, now_ms: i64, retention: &SampleRetention) -> Result<u64> {
        const OLDEST_LATE: &str = "SELECT MIN(bucket_ms) AS oldest FROM metric_late_buckets";
        const DELETE_RAW: &str = "DELETE FROM metric_samples WHERE at_ms < $1";
        const DELETE_ROLLUPS: &str = "DELETE FROM metric_rollups WHERE resolution_ms = $1 AND bucket_ms < $2";

        let hold_sql = match self.backend {
            Backend::Sqlite(_) => HOLD_RAW_FROM_SQLITE,
            Backend::Postgres(_) => HOLD_RAW_FROM_POSTGRES,
        };
        on_pool!(self, pool => {
            // Move the raw horizon first, holding it so no insert in flight stores a sample
            // behind it (nor marks a late bucket meanwhile); delete afterwards, without holding
            // up inserts.
            let mut tx = pool.begin_write().await?;
            sqlx::query(hold_sql).fetch_all(&mut *tx).await?;
            let marks = Marks::from_rows(&sqlx::query(ALL_MARKS).fetch_all(&mut *tx).await?)?;
            let oldest_late: Option<i64> = sqlx::query(OLDEST_LATE).fetch_one(&mut *tx).await?.col("oldest")?;
            let raw_cut = marks.rolled_5m.map(|rolled| {
                let cut = floor_to(now_ms.saturating_sub(retention.raw_ms), FIVE_MINUTES_MS).min(rolled);
                oldest_late.map_or(cut, |late| cut.min(late))
            });
            let raw_from = match (marks.raw_from, raw_cut) {
                (Some(from), Some(cut)) => Some(from.max(cut)),
                (from, cut) => from.or(cut),
            };
            if raw_from != marks.raw_from {
                sqlx::query(SET_MARK).bind("raw_from").bind(raw_from).execute(&mut *tx).await?;
            }
            tx.commit().await?;

            let mut deleted = 0;
            if let Some(raw_from) = raw_from {
                deleted += sqlx::query(DELETE_RAW).bind(raw_from).execute(pool).await?.rows_affected();
                // 5-minute rollups stay while an hour that could still receive late reports
                // (from the raw horizon on) or is not rolled up yet needs them.
                if let Some(rolled_1h) = marks.rolled_1h {
                    let five_cut =
                        floor_to(now_ms.saturating_sub(retention.five_min_ms), HOUR_MS).min(floor_to(raw_from, HOUR_MS)).min(rolled_1h);
                    deleted += sqlx::query(DELETE_ROLLUPS).bind(FIVE_MINUTES_MS).bind(five_cut).execute(pool).await?.rows_affected();
                }
            }
            let hour_cut = floor_to(now_ms.saturating_sub(retention.hour_ms), HOUR_MS);
            deleted += sqlx::query(DELETE_ROLLUPS).bind(HOUR_MS).bind(hour_cut).execute(pool).await?.rows_affected();
            // A day goes with the last of its hours.
            deleted += sqlx::query(DELETE_ROLLUPS).bind(DAY_MS).bind(floor_to(hour_cut, DAY_MS)).execute(pool).await?.rows_affected();
            Ok(deleted)
        })
    }

    /// [`fetch_vals!`] on the pool.
    async fn rows(&self, project: &str, server: &str, resolution_ms: i64, from: i64, to: i64) -> Result<Vec<(i64, String)>> {
        on_pool!(self, pool => fetch_vals!(pool, project, server, resolution_ms, from, to))
    }
}

/// A server's newest report of a batch, as its `server_states` row: project, server, time,
/// boot time, facts and the whole report (JSON).
type StateRow<'a> = (&'a str, &'a str, i64, i64, String, String);

/// [`Store::insert_reports`] on SQLite: multi-row statements in one write transaction.
async fn insert_reports_sqlite(pool: &SqlitePool, batch: &[StoredReport<'_>], encoded: &[String], states: &[StateRow<'_>]) -> Result<()> {
    let mut tx = pool.begin_write().await?;
    let marks = Marks::from_rows(&sqlx::query(INGEST_MARKS_SQLITE).fetch_all(&mut *tx).await?)?;
    let kept: Vec<(&StoredReport, &String)> =
        batch.iter().zip(encoded).filter(|(r, _)| marks.raw_from.is_none_or(|from| r.report.at_ms >= from)).collect();

    for chunk in kept.chunks(SAMPLE_INSERT_CHUNK) {
        let mut insert = QueryBuilder::new("INSERT INTO metric_samples (project, server, at_ms, vals) ");
        insert.push_values(chunk, |mut row, (r, vals)| {
            row.push_bind(r.project).push_bind(r.server).push_bind(r.report.at_ms).push_bind(vals.as_str());
        });
        insert.push(" ON CONFLICT (project, server, at_ms) DO NOTHING");
        insert.build().execute(&mut *tx).await?;
    }

    if let Some(late_before) = marks.late_before {
        let late: BTreeSet<(&str, &str, i64)> = kept
            .iter()
            .map(|(r, _)| (r.project, r.server, floor_to(r.report.at_ms, FIVE_MINUTES_MS)))
            .filter(|&(_, _, bucket)| bucket < late_before)
            .collect();
        let late: Vec<_> = late.into_iter().collect();
        for chunk in late.chunks(LATE_INSERT_CHUNK) {
            let mut insert = QueryBuilder::new("INSERT INTO metric_late_buckets (project, server, bucket_ms) ");
            insert.push_values(chunk, |mut row, &(project, server, bucket)| {
                row.push_bind(project).push_bind(server).push_bind(bucket);
            });
            insert.build().execute(&mut *tx).await?;
        }
    }

    for chunk in states.chunks(STATE_UPSERT_CHUNK) {
        let mut upsert = QueryBuilder::new("INSERT INTO server_states (project, server, last_report_ms, boot_time, facts, latest) ");
        upsert.push_values(chunk, |mut row, (project, server, at_ms, boot_time, facts, latest)| {
            row.push_bind(*project)
                .push_bind(*server)
                .push_bind(*at_ms)
                .push_bind(*boot_time)
                .push_bind(facts.as_str())
                .push_bind(latest.as_str());
        });
        upsert.push(
            " ON CONFLICT (project, server) DO UPDATE SET last_report_ms = excluded.last_report_ms,
                boot_time = excluded.boot_time, facts = excluded.facts, latest = excluded.latest
              WHERE excluded.last_report_ms > server_states.last_report_ms",
        );
        upsert.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// [`Store::insert_reports`] on PostgreSQL: [`INSERT_REPORTS_POSTGRES`], one statement in a
/// transaction of its own.
async fn insert_reports_postgres(pool: &PgPool, batch: &[StoredReport<'_>], encoded: &[String], states: &[StateRow<'_>]) -> Result<()> {
    sqlx::query(INSERT_REPORTS_POSTGRES)
        .bind(batch.iter().map(|r| r.project).collect::<Vec<&str>>())
        .bind(batch.iter().map(|r| r.server).collect::<Vec<&str>>())
        .bind(batch.iter().map(|r| r.report.at_ms).collect::<Vec<i64>>())
        .bind(encoded.iter().map(String::as_str).collect::<Vec<&str>>())
        .bind(states.iter().map(|s| s.0).collect::<Vec<&str>>())
        .bind(states.iter().map(|s| s.1).collect::<Vec<&str>>())
        .bind(states.iter().map(|s| s.2).collect::<Vec<i64>>())
        .bind(states.iter().map(|s| s.3).collect::<Vec<i64>>())
        .bind(states.iter().map(|s| s.4.as_str()).collect::<Vec<&str>>())
        .bind(states.iter().map(|s| s.5.as_str()).collect::<Vec<&str>>())
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_follows_the_range() {
        assert_eq!(Resolution::for_range(HOUR_MS), Resolution::Raw);
        assert_eq!(Resolution::for_range(HOUR_MS + 1), Resolution::FiveMinutes);
        assert_eq!(Resolution::for_range(24 * HOUR_MS), Resolution::FiveMinutes);
        assert_eq!(Resolution::for_range(7 * 24 * HOUR_MS), Resolution::Hour);
        assert_eq!(Resolution::for_range(0), Resolution::Raw);
        assert_eq!([Resolution::Raw, Resolution::FiveMinutes, Resolution::Hour].map(Resolution::step_ms), [5_000, 300_000, 3_600_000]);
    }

    #[test]
    fn buckets_floor_negative_and_extreme_times() {
        assert_eq!(floor_to(299_999, FIVE_MINUTES_MS), 0);
        assert_eq!(floor_to(-1, FIVE_MINUTES_MS), -FIVE_MINUTES_MS);
        assert_eq!(floor_to(i64::MIN, HOUR_MS), i64::MIN);
        assert!((i64::MAX - HOUR_MS + 1..=i64::MAX).contains(&floor_to(i64::MAX, HOUR_MS)));
    }

    #[test]
    fn the_marks_queue_is_one_lock_everywhere() {
        assert_eq!(MARKS_QUEUE, i64::from_be_bytes(*b"wkmarks\x01"));
        for sql in [INSERT_REPORTS_POSTGRES, HOLD_RAW_FROM_POSTGRES, RAISE_MARK_POSTGRES] {
            assert!(sql.contains(&format!("({MARKS_QUEUE})")), "{sql}");
        }
    }
}
