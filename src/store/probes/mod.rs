//! Probe results (port monitors, down-checks) stored as what users read, not as one row per check:
//!
//! - `probe_targets` — one row per (project, monitor, host, port), with its newest check;
//! - `probe_events` — every failed check (with its error kind and message, interned in
//!   `probe_reasons`) and every recovery: the disconnect log, kept for years;
//! - `probe_hours` — per target and hour: checks, failures, latency of the good checks (min, max,
//!   sum, a histogram) and the checks per 5-minute slot ([`rollup`]); with the failure events they
//!   give the 5-minute and hourly availability buckets exactly;
//! - `probe_days` — the same per UTC day, rolled up from the hours once a day is over.
//!
//! A good check adds to its hour's row and nothing else. The hour rows being filled are kept in
//! memory ([`ProbeCache`]) and written whole, so a write never reads first; rows the cache does
//! not know (written before this store was opened) are read once. One process writes probe
//! results to a database (two would overwrite each other's hour rows).
//!
//! Reads let the database do the counting where they can: the disconnect log's counts per
//! period are `COUNT`s on the events' (target, time, reason) index, halving ranges that hold
//! failures and skipping those that hold none; hourly and longer buckets are sums of hour or day
//! rows; latency over a window reads day rows for its whole days and hour rows only at its ends.
//!
//! Databases from before keep their `probe_results` until [`Store::convert_probe_results`] has
//! turned them into the tables above (see `convert`).

mod convert;
mod rollup;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use sqlx::{Postgres, QueryBuilder, Sqlite, Transaction};

use self::rollup::{DAY_MS, FIVE_MINUTES_MS, HOUR_MS, Rollup};
use super::rows::{Columns, narrow};
use super::{BeginWrite, Result, Store, StoreError, sql_limit};
use crate::lease::Fence;

pub use self::rollup::LatencySummary;

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

/// The latency of one monitor port's good checks over a window (from the rollups).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeLatency {
    pub monitor: String,
    pub host: String,
    pub port: u16,
    pub latency: LatencySummary,
}

/// How long each kind of probe data is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRetention {
    /// Failures and recoveries (the disconnect log).
    pub events_ms: i64,
    /// Hourly rollups with their 5-minute slots (availability for a day, a week, a month).
    pub hours_ms: i64,
    /// Daily rollups.
    pub days_ms: i64,
}

const YEAR_MS: i64 = 365 * DAY_MS;

impl Default for ProbeRetention {
    fn default() -> ProbeRetention {
        ProbeRetention { events_ms: 5 * YEAR_MS, hours_ms: 35 * DAY_MS, days_ms: 5 * YEAR_MS }
    }
}

/// A day is rolled up once this long has passed since its end, for results that arrive late.
const DAY_GRACE_MS: i64 = HOUR_MS;

/// (project, monitor, host, port).
type TargetKey = (String, String, String, u16);

/// What a process knows of the probe tables without reading them back.
#[derive(Debug, Default)]
pub(super) struct ProbeCache {
    targets: HashMap<TargetKey, i64>,
    reasons: HashMap<(String, String), i64>,
    /// The hour rows written lately, as they are in the database.
    hours: HashMap<(i64, i64), Rollup>,
    /// Whether a target's newest check failed (a good check after it is a recovery).
    down: HashMap<i64, bool>,
    /// The same for the conversion of old rows, which runs through the past on its own.
    converting_down: HashMap<i64, bool>,
    /// Hours below this may have rows the cache does not hold: read before writing them.
    cold_below: i64,
    newest_hour: i64,
}

impl ProbeCache {
    pub(super) fn new(opened_ms: i64) -> ProbeCache {
        ProbeCache { cold_below: opened_ms.div_euclid(HOUR_MS) + 1, ..ProbeCache::default() }
    }

    /// Take in what a committed write learnt, and forget hours older than the one before the newest.
    fn absorb(&mut self, pending: Pending, converting: bool) {
        self.targets.extend(pending.targets);
        self.reasons.extend(pending.reasons);
        if converting {
            self.converting_down.extend(pending.down);
        } else {
            self.down.extend(pending.down);
            self.newest_hour = self.newest_hour.max(pending.newest_hour);
        }
        self.hours.extend(pending.hours);
        let keep_from = self.newest_hour - 1;
        if self.hours.keys().any(|&(_, hour)| hour < keep_from) {
            self.hours.retain(|&(_, hour), _| hour >= keep_from);
            self.cold_below = self.cold_below.max(keep_from);
        }
    }
}

/// What one write adds, taken into the cache only once its transaction committed.
#[derive(Default)]
struct Pending {
    targets: HashMap<TargetKey, i64>,
    reasons: HashMap<(String, String), i64>,
    hours: HashMap<(i64, i64), Rollup>,
    down: HashMap<i64, bool>,
    newest_hour: i64,
}

/// A target's newest check.
#[derive(Debug, Clone, Copy)]
struct Last {
    at_ms: i64,
    ok: bool,
    latency_ms: Option<i64>,
    reason: Option<i64>,
}

/// A failure (reason set) or a recovery.
struct Event {
    target: i64,
    at_ms: i64,
    reason: Option<i64>,
}

/// Rows per multi-row statement (at most 9 parameters each, well under both backends' limits).
const INSERT_CHUNK: usize = 1000;

/// The statements a write needs, on either backend's transaction.
trait ProbeTx {
    /// The target's id, made if new.
    async fn target_id(&mut self, key: &TargetKey) -> Result<i64>;
    async fn reason_id(&mut self, kind: &str, message: &str) -> Result<i64>;
    /// Whether the target's newest event at or before `at_ms` is a failure.
    async fn down_before(&mut self, target: i64, at_ms: i64) -> Result<bool>;
    async fn load_hour(&mut self, target: i64, hour: i64) -> Result<Option<Rollup>>;
    async fn insert_events(&mut self, events: &[Event]) -> Result<()>;
    async fn upsert_hours(&mut self, rows: &[(&(i64, i64), &Rollup)]) -> Result<()>;
    /// Each target's newest check, unless a newer one is stored already.
    async fn update_last(&mut self, last: &[(&i64, &Last)]) -> Result<()>;
}

macro_rules! probe_tx {
    ($db:ty) => {
        impl<'c> ProbeTx for Transaction<'c, $db> {
            async fn target_id(&mut self, key: &TargetKey) -> Result<i64> {
                let (project, monitor, host, port) = key;
                sqlx::query(
                    "INSERT INTO probe_targets (project, monitor, host, port) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (project, monitor, port, host) DO NOTHING",
                )
                .bind(project)
                .bind(monitor)
                .bind(host)
                .bind(i64::from(*port))
                .execute(&mut **self)
                .await?;
                let row = sqlx::query("SELECT id FROM probe_targets WHERE project = $1 AND monitor = $2 AND port = $3 AND host = $4")
                    .bind(project)
                    .bind(monitor)
                    .bind(i64::from(*port))
                    .bind(host)
                    .fetch_one(&mut **self)
                    .await?;
                row.col("id")
            }

            async fn reason_id(&mut self, kind: &str, message: &str) -> Result<i64> {
                sqlx::query("INSERT INTO probe_reasons (kind, message) VALUES ($1, $2) ON CONFLICT (kind, message) DO NOTHING")
                    .bind(kind)
                    .bind(message)
                    .execute(&mut **self)
                    .await?;
                let row = sqlx::query("SELECT id FROM probe_reasons WHERE kind = $1 AND message = $2")
                    .bind(kind)
                    .bind(message)
                    .fetch_one(&mut **self)
                    .await?;
                row.col("id")
            }

            async fn down_before(&mut self, target: i64, at_ms: i64) -> Result<bool> {
                let row =
                    sqlx::query("SELECT reason FROM probe_events WHERE target = $1 AND at_ms <= $2 ORDER BY at_ms DESC, id DESC LIMIT 1")
                        .bind(target)
                        .bind(at_ms)
                        .fetch_optional(&mut **self)
                        .await?;
                match row {
                    Some(row) => Ok(row.col::<Option<i64>>("reason")?.is_some()),
                    None => Ok(false),
                }
            }

            async fn load_hour(&mut self, target: i64, hour: i64) -> Result<Option<Rollup>> {
                let row = sqlx::query(concat!("SELECT ", rollup_columns!(), ", slots FROM probe_hours WHERE target = $1 AND hour = $2"))
                    .bind(target)
                    .bind(hour)
                    .fetch_optional(&mut **self)
                    .await?;
                row.map(|row| rollup_of(&row, true)).transpose()
            }

            async fn insert_events(&mut self, events: &[Event]) -> Result<()> {
                for chunk in events.chunks(INSERT_CHUNK) {
                    let mut insert = QueryBuilder::new("INSERT INTO probe_events (target, at_ms, reason) ");
                    insert.push_values(chunk, |mut row, e| {
                        row.push_bind(e.target).push_bind(e.at_ms).push_bind(e.reason);
                    });
                    insert.build().execute(&mut **self).await?;
                }
                Ok(())
            }

            async fn upsert_hours(&mut self, rows: &[(&(i64, i64), &Rollup)]) -> Result<()> {
                for chunk in rows.chunks(INSERT_CHUNK) {
                    let mut insert = QueryBuilder::new(
                        "INSERT INTO probe_hours (target, hour, checks, failures, lat_min, lat_max, lat_sum, hist, slots) ",
                    );
                    insert.push_values(chunk, |mut row, ((target, hour), r)| {
                        let (checks, failures, lat_min, lat_max, lat_sum) = r.columns();
                        row.push_bind(*target)
                            .push_bind(*hour)
                            .push_bind(checks)
                            .push_bind(failures)
                            .push_bind(lat_min)
                            .push_bind(lat_max)
                            .push_bind(lat_sum)
                            .push_bind(r.hist_blob())
                            .push_bind(r.slots_blob());
                    });
                    insert.push(
                        " ON CONFLICT (target, hour) DO UPDATE SET checks = excluded.checks, failures = excluded.failures,
                          lat_min = excluded.lat_min, lat_max = excluded.lat_max, lat_sum = excluded.lat_sum,
                          hist = excluded.hist, slots = excluded.slots",
                    );
                    insert.build().execute(&mut **self).await?;
                }
                Ok(())
            }

            async fn update_last(&mut self, last: &[(&i64, &Last)]) -> Result<()> {
                for chunk in last.chunks(INSERT_CHUNK) {
                    let mut update = QueryBuilder::new("WITH v (id, at_ms, ok, latency_ms, reason) AS (");
                    update.push_values(chunk, |mut row, (target, l)| {
                        row.push_bind(**target).push_bind(l.at_ms).push_bind(l.ok).push_bind(l.latency_ms).push_bind(l.reason);
                    });
                    update.push(
                        ") UPDATE probe_targets SET last_at_ms = v.at_ms, last_ok = v.ok, last_latency_ms = v.latency_ms, last_reason = v.reason
                         FROM v WHERE probe_targets.id = v.id AND (probe_targets.last_at_ms IS NULL OR probe_targets.last_at_ms <= v.at_ms)",
                    );
                    update.build().execute(&mut **self).await?;
                }
                Ok(())
            }
        }
    };
}

// The rollup columns shared by several queries (a macro, so `concat!` can splice it into SQL).
macro_rules! rollup_columns {
    () => {
        "checks, failures, lat_min, lat_max, lat_sum, hist"
    };
}

probe_tx!(Sqlite);
probe_tx!(Postgres);

/// A latency column narrowed to the API's type.
fn latency_of(row: &impl Columns, name: &str) -> Result<Option<u32>> {
    match row.col::<Option<i64>>(name)? {
        Some(ms) => Ok(Some(u32::try_from(ms).map_err(|_| StoreError::Corrupt(format!("{name} {ms} is out of range")))?)),
        None => Ok(None),
    }
}

fn rollup_of(row: &impl Columns, with_slots: bool) -> Result<Rollup> {
    let slots: Vec<u8> = if with_slots { row.col("slots")? } else { Vec::new() };
    Rollup::from_row(
        row.col("checks")?,
        row.col("failures")?,
        (row.col("lat_min")?, row.col("lat_max")?, row.col("lat_sum")?),
        &row.col::<Vec<u8>>("hist")?,
        &slots,
    )
}

/// Add `batch` to the events, hour rows and newest checks, in the caller's transaction;
/// `down` is what is known of which targets are down (the live or the conversion's view).
async fn write_records(
    tx: &mut impl ProbeTx,
    cache: &ProbeCache,
    down: &HashMap<i64, bool>,
    pending: &mut Pending,
    batch: &[ProbeRecord],
) -> Result<()> {
    let mut events = Vec::new();
    let mut last: HashMap<i64, Last> = HashMap::new();
    let mut touched: Vec<(i64, i64)> = Vec::new();
    for r in batch {
        let key = (r.project.clone(), r.monitor.clone(), r.host.clone(), r.port);
        let target = match cache.targets.get(&key).or_else(|| pending.targets.get(&key)) {
            Some(&id) => id,
            None => {
                let id = tx.target_id(&key).await?;
                pending.targets.insert(key, id);
                id
            }
        };
        let reason = if r.ok {
            None
        } else {
            let words = (r.error_kind.clone().unwrap_or_default(), r.error.clone().unwrap_or_default());
            Some(match cache.reasons.get(&words).or_else(|| pending.reasons.get(&words)) {
                Some(&id) => id,
                None => {
                    let id = tx.reason_id(&words.0, &words.1).await?;
                    pending.reasons.insert(words, id);
                    id
                }
            })
        };

        let hour = r.at_ms.div_euclid(HOUR_MS);
        pending.newest_hour = pending.newest_hour.max(hour);
        let rollup = match pending.hours.entry((target, hour)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let base = match cache.hours.get(&(target, hour)) {
                    Some(known) => known.clone(),
                    None if hour < cache.cold_below => tx.load_hour(target, hour).await?.unwrap_or_default(),
                    None => Rollup::default(),
                };
                touched.push((target, hour));
                e.insert(base)
            }
        };
        rollup.add(r.at_ms, r.ok, r.latency_ms);

        let was_down = match pending.down.get(&target).or_else(|| down.get(&target)) {
            Some(&d) => d,
            None => tx.down_before(target, r.at_ms).await?,
        };
        if !r.ok || was_down {
            events.push(Event { target, at_ms: r.at_ms, reason });
        }
        pending.down.insert(target, !r.ok);

        let newest = Last { at_ms: r.at_ms, ok: r.ok, latency_ms: r.latency_ms.map(i64::from), reason };
        match last.entry(target) {
            Entry::Occupied(mut e) if e.get().at_ms <= r.at_ms => {
                e.insert(newest);
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(e) => {
                e.insert(newest);
            }
        }
    }
    tx.insert_events(&events).await?;
    let rows: Vec<(&(i64, i64), &Rollup)> = touched.iter().filter_map(|k| pending.hours.get_key_value(k)).collect();
    tx.upsert_hours(&rows).await?;
    tx.update_last(&last.iter().collect::<Vec<_>>()).await?;
    Ok(())
}

impl Store {
    /// Forget the probe rows this process wrote lately. When a replica gains a shard, another
    /// replica may have written its monitors' current hours and newest checks meanwhile: they
    /// are read again before they are written, rather than overwritten from an old copy.
    pub async fn forget_recent_probes(&self, now_ms: i64) {
        let mut cache = self.probes.lock().await;
        cache.hours.clear();
        cache.down.clear();
        cache.cold_below = cache.cold_below.max(now_ms.div_euclid(HOUR_MS) + 1);
    }
}

impl Store {
    /// Record a batch of checks in one transaction: failures and recoveries as events, every
    /// check in its hour's rollup, and each target's newest check.
    pub async fn insert_probe_results(&self, batch: &[ProbeRecord]) -> Result<()> {
        self.insert_probe_results_fenced(&[], batch).await
    }

    /// [`Store::insert_probe_results`] for the shards whose leases `fences` name, in shard
    /// order (PostgreSQL): the transaction first locks each lease row while this replica still
    /// holds it at that epoch and it has not expired, as every write of alert state does. A
    /// write that reaches the database after the lease was lost — sent before a network cut and
    /// delivered after it — is refused with [`StoreError::LeaseLost`] and writes nothing, so
    /// it cannot overwrite the hour rows of the replica that took the shard over.
    pub async fn insert_probe_results_fenced(&self, fences: &[Fence], batch: &[ProbeRecord]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut cache = self.probes.lock().await;
        let mut pending = Pending::default();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            hold_leases!(tx, fences);
            write_records(&mut tx, &cache, &cache.down, &mut pending, batch).await?;
            tx.commit().await?;
        });
        cache.absorb(pending, false);
        Ok(())
    }

    /// A monitor's events in [from, to), newest first: its failed checks, and with
    /// `failures_only` false its recoveries too (the first good check after a failure; good
    /// checks are otherwise only counted, in the rollups). A `limit` of 0 means no limit.
    pub async fn probe_history(
        &self,
        project: &str,
        monitor: &str,
        from_ms: i64,
        to_ms: i64,
        failures_only: bool,
        limit: u32,
    ) -> Result<Vec<ProbeRecord>> {
        const HISTORY: &str = "SELECT t.project, t.monitor, t.host, t.port, e.at_ms, r.kind, r.message
            FROM probe_targets t JOIN probe_events e ON e.target = t.id LEFT JOIN probe_reasons r ON r.id = e.reason
            WHERE t.project = $1 AND t.monitor = $2 AND e.at_ms >= $3 AND e.at_ms < $4 AND (NOT $5 OR e.reason IS NOT NULL)
            ORDER BY e.at_ms DESC, e.id DESC LIMIT $6";
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
            found
                .iter()
                .map(|row| {
                    let kind: Option<String> = row.col("kind")?;
                    Ok(ProbeRecord {
                        project: row.col("project")?,
                        monitor: row.col("monitor")?,
                        host: row.col("host")?,
                        port: narrow(row, "port")?,
                        at_ms: row.col("at_ms")?,
                        ok: kind.is_none(),
                        latency_ms: None,
                        error_kind: kind,
                        error: row.col("message")?,
                    })
                })
                .collect()
        })
    }

    /// The first and the last failed check of a monitor (every host and port) in [from, to).
    pub async fn probe_failure_span(&self, project: &str, monitor: &str, from_ms: i64, to_ms: i64) -> Result<Option<(i64, i64)>> {
        const FIRST: &str =
            "SELECT at_ms FROM probe_events WHERE target = $1 AND at_ms >= $2 AND at_ms < $3 AND reason IS NOT NULL ORDER BY at_ms LIMIT 1";
        const LAST: &str = "SELECT at_ms FROM probe_events WHERE target = $1 AND at_ms >= $2 AND at_ms < $3 AND reason IS NOT NULL ORDER BY at_ms DESC LIMIT 1";
        let targets = self.monitor_targets(project, monitor).await?;
        let mut span: Option<(i64, i64)> = None;
        on_pool!(self, pool => {
            for target in targets {
                let first = sqlx::query(FIRST).bind(target).bind(from_ms).bind(to_ms).fetch_optional(pool).await?;
                let Some(first) = first else { continue };
                let last = sqlx::query(LAST).bind(target).bind(from_ms).bind(to_ms).fetch_one(pool).await?;
                let (first, last): (i64, i64) = (first.col("at_ms")?, last.col("at_ms")?);
                span = Some(span.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
            }
        });
        Ok(span)
    }

    /// A monitor's failed checks (every host and port) counted in each period
    /// [`edges[i]`, `edges[i + 1]`), `edges` ascending. Counted by the database on the events'
    /// index, halving ranges that hold failures and skipping those that hold none, so a year
    /// of failures is never read row by row.
    pub async fn probe_failure_counts(&self, project: &str, monitor: &str, edges: &[i64]) -> Result<Vec<i64>> {
        const COUNT: &str = "SELECT COUNT(*) AS n FROM probe_events
            WHERE target IN (SELECT id FROM probe_targets WHERE project = $1 AND monitor = $2) AND at_ms >= $3 AND at_ms < $4 AND reason IS NOT NULL";
        let periods = edges.len().saturating_sub(1);
        let mut counts = vec![0; periods];
        if periods == 0 {
            return Ok(counts);
        }
        on_pool!(self, pool => {
            // (first period, end period, its count if known)
            let mut ranges: Vec<(usize, usize, Option<i64>)> = vec![(0, periods, None)];
            while let Some((lo, hi, known)) = ranges.pop() {
                let n = match known {
                    Some(n) => n,
                    None => sqlx::query(COUNT).bind(project).bind(monitor).bind(edges[lo]).bind(edges[hi]).fetch_one(pool).await?.col("n")?,
                };
                if n == 0 {
                    continue;
                }
                if hi - lo == 1 {
                    counts[lo] = n;
                    continue;
                }
                let mid = lo + (hi - lo) / 2;
                let left: i64 = sqlx::query(COUNT).bind(project).bind(monitor).bind(edges[lo]).bind(edges[mid]).fetch_one(pool).await?.col("n")?;
                ranges.push((mid, hi, Some(n - left)));
                ranges.push((lo, mid, Some(left)));
            }
        });
        Ok(counts)
    }

    /// The ids of a monitor's targets (one per host and port it has had).
    async fn monitor_targets(&self, project: &str, monitor: &str) -> Result<Vec<i64>> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT id FROM probe_targets WHERE project = $1 AND monitor = $2")
                .bind(project)
                .bind(monitor)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|row| row.col("id")).collect()
        })
    }

    /// The newest check of every (monitor, port) of a project.
    pub async fn latest_probes(&self, project: &str) -> Result<Vec<ProbeRecord>> {
        const LATEST: &str = "SELECT t.project, t.monitor, t.host, t.port, t.last_at_ms, t.last_ok, t.last_latency_ms, r.kind, r.message
            FROM probe_targets t LEFT JOIN probe_reasons r ON r.id = t.last_reason
            WHERE t.project = $1 AND t.last_at_ms IS NOT NULL ORDER BY t.monitor, t.port, t.last_at_ms";
        let found: Vec<ProbeRecord> = on_pool!(self, pool => {
            let rows = sqlx::query(LATEST).bind(project).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    let latency_ms = latency_of(row, "last_latency_ms")?;
                    Ok(ProbeRecord {
                        project: row.col("project")?,
                        monitor: row.col("monitor")?,
                        host: row.col("host")?,
                        port: narrow(row, "port")?,
                        at_ms: row.col("last_at_ms")?,
                        ok: row.col("last_ok")?,
                        latency_ms,
                        error_kind: row.col("kind")?,
                        error: row.col("message")?,
                    })
                })
                .collect::<Result<_>>()?
        });
        // A monitor whose host changed has a target per host: the newest check wins.
        let mut newest: Vec<ProbeRecord> = Vec::with_capacity(found.len());
        for rec in found {
            match newest.last_mut() {
                Some(prev) if prev.monitor == rec.monitor && prev.port == rec.port => *prev = rec,
                _ => newest.push(rec),
            }
        }
        Ok(newest)
    }

    /// Counts of good and failed checks per monitor port and bucket of `bucket_ms` (buckets start
    /// at `from_ms`; a `bucket_ms` below 1 counts as 1). Checks are counted by their 5-minute
    /// slot (failures by their exact time), so bucket edges on the 5-minute grid count exactly.
    /// Whole-day buckets from a UTC midnight read the daily rollups for the days rolled up, so
    /// they reach back as far as those are kept; buckets of whole hours sum the hour rows in the
    /// database; only what is left (buckets within an hour, an hour cut by `to_ms`) reads the
    /// 5-minute slots and the failures' times.
    pub async fn probe_buckets(&self, project: &str, from_ms: i64, to_ms: i64, bucket_ms: i64) -> Result<Vec<ProbeBucket>> {
        // $2: the first day (hour) of bucket 0, $3: days (hours) per bucket, [$4, $5): the rows read.
        const DAYS: &str = "SELECT target, (day - $2) / $3 AS bucket, CAST(SUM(checks) AS BIGINT) AS checks, CAST(SUM(failures) AS BIGINT) AS failures
            FROM probe_days WHERE target IN (SELECT id FROM probe_targets WHERE project = $1) AND day >= $4 AND day < $5 GROUP BY target, bucket";
        const HOURS: &str = "SELECT target, (hour - $2) / $3 AS bucket, CAST(SUM(checks) AS BIGINT) AS checks, CAST(SUM(failures) AS BIGINT) AS failures
            FROM probe_hours WHERE target IN (SELECT id FROM probe_targets WHERE project = $1) AND hour >= $4 AND hour < $5 GROUP BY target, bucket";
        const SLOTS: &str = "SELECT target, hour, slots FROM probe_hours WHERE target IN (SELECT id FROM probe_targets WHERE project = $1) AND hour >= $2 AND hour < $3";
        const FAILURES: &str = "SELECT target, at_ms FROM probe_events
            WHERE target IN (SELECT id FROM probe_targets WHERE project = $1) AND at_ms >= $2 AND at_ms < $3 AND reason IS NOT NULL";
        let bucket_ms = bucket_ms.max(1);
        let to_ms = to_ms.max(from_ms);
        let by_day = bucket_ms % DAY_MS == 0 && from_ms.rem_euclid(DAY_MS) == 0;
        let by_hour = bucket_ms % HOUR_MS == 0 && from_ms.rem_euclid(HOUR_MS) == 0;
        // [from, hours_from): days; [hours_from, slots_from): whole hours; [slots_from, to): slots.
        let hours_from = if by_day { self.days_rolled_until().await?.clamp(from_ms, to_ms) } else { from_ms };
        let slots_from = if by_hour { (to_ms.div_euclid(HOUR_MS) * HOUR_MS).max(hours_from) } else { hours_from };
        let names = self.target_names(project).await?;
        // (target, bucket) → (checks, failed)
        let mut counts: HashMap<(i64, i64), (i64, i64)> = HashMap::new();
        on_pool!(self, pool => {
            let mut sums = Vec::new();
            if hours_from > from_ms {
                let (first, per) = (from_ms.div_euclid(DAY_MS), bucket_ms / DAY_MS);
                sums.extend(sqlx::query(DAYS).bind(project).bind(first).bind(per).bind(first).bind(hours_from.div_euclid(DAY_MS)).fetch_all(pool).await?);
            }
            if slots_from > hours_from {
                let (first, per) = (from_ms.div_euclid(HOUR_MS), bucket_ms / HOUR_MS);
                let (lo, hi) = (hours_from.div_euclid(HOUR_MS), slots_from.div_euclid(HOUR_MS));
                sums.extend(sqlx::query(HOURS).bind(project).bind(first).bind(per).bind(lo).bind(hi).fetch_all(pool).await?);
            }
            for row in &sums {
                let counted = counts.entry((row.col("target")?, row.col("bucket")?)).or_default();
                counted.0 += row.col::<i64>("checks")?;
                counted.1 += row.col::<i64>("failures")?;
            }
            if to_ms > slots_from {
                let first_hour = slots_from.div_euclid(HOUR_MS);
                let end_hour = to_ms.div_euclid(HOUR_MS) + 1;
                // Failures count only where their hour's rollup is still kept (events outlive hours).
                let mut kept: HashSet<(i64, i64)> = HashSet::new();
                for row in sqlx::query(SLOTS).bind(project).bind(first_hour).bind(end_hour).fetch_all(pool).await? {
                    let (target, hour): (i64, i64) = (row.col("target")?, row.col("hour")?);
                    kept.insert((target, hour));
                    let rollup = Rollup::from_row(0, 0, (None, None, 0), &[], &row.col::<Vec<u8>>("slots")?)?;
                    for (i, &n) in rollup.slots.iter().enumerate() {
                        let at = hour * HOUR_MS + i as i64 * FIVE_MINUTES_MS;
                        // A slot partly before `slots_from` counts in the first bucket.
                        if n == 0 || at + FIVE_MINUTES_MS <= slots_from || at >= to_ms {
                            continue;
                        }
                        counts.entry((target, (at.max(slots_from) - from_ms) / bucket_ms)).or_default().0 += n as i64;
                    }
                }
                for row in sqlx::query(FAILURES).bind(project).bind(slots_from).bind(to_ms).fetch_all(pool).await? {
                    let (target, at): (i64, i64) = (row.col("target")?, row.col("at_ms")?);
                    if kept.contains(&(target, at.div_euclid(HOUR_MS))) {
                        counts.entry((target, (at - from_ms) / bucket_ms)).or_default().1 += 1;
                    }
                }
            }
        });
        let mut buckets: Vec<ProbeBucket> = counts
            .into_iter()
            .filter_map(|((target, bucket), (checks, failed))| {
                let (monitor, host, port) = names.get(&target)?;
                Some(ProbeBucket {
                    monitor: monitor.clone(),
                    host: host.clone(),
                    port: *port,
                    bucket_start_ms: from_ms + bucket * bucket_ms,
                    ok: (checks - failed).max(0),
                    failed,
                })
            })
            .collect();
        buckets.sort_unstable_by(|a, b| {
            (&a.monitor, &a.host, a.port, a.bucket_start_ms).cmp(&(&b.monitor, &b.host, b.port, b.bucket_start_ms))
        });
        Ok(buckets)
    }

    /// The latency of every monitor port's good checks in [from, to): the daily rollups for the
    /// whole UTC days in it that are rolled up, the hourly ones for the hours it touches around them.
    pub async fn probe_latency(&self, project: &str, from_ms: i64, to_ms: i64) -> Result<Vec<ProbeLatency>> {
        const HOURS: &str = concat!(
            "SELECT target, ",
            rollup_columns!(),
            " FROM probe_hours WHERE target IN (SELECT id FROM probe_targets WHERE project = $1) AND hour >= $2 AND hour < $3"
        );
        const DAYS: &str = concat!(
            "SELECT target, ",
            rollup_columns!(),
            " FROM probe_days WHERE target IN (SELECT id FROM probe_targets WHERE project = $1) AND day >= $2 AND day < $3"
        );
        let (first_hour, end_hour) = (from_ms.div_euclid(HOUR_MS), (to_ms - 1).div_euclid(HOUR_MS) + 1);
        // The whole days rolled up: [first_day, end_day), or none.
        let first_day = (from_ms + DAY_MS - 1).div_euclid(DAY_MS);
        let end_day = to_ms.div_euclid(DAY_MS).min(self.days_rolled_until().await?.div_euclid(DAY_MS)).max(first_day);
        let names = self.target_names(project).await?;
        let mut merged: HashMap<i64, Rollup> = HashMap::new();
        on_pool!(self, pool => {
            let mut rows = Vec::new();
            if end_day > first_day {
                rows.extend(sqlx::query(DAYS).bind(project).bind(first_day).bind(end_day).fetch_all(pool).await?);
                rows.extend(sqlx::query(HOURS).bind(project).bind(first_hour).bind(first_day * 24).fetch_all(pool).await?);
                rows.extend(sqlx::query(HOURS).bind(project).bind(end_day * 24).bind(end_hour).fetch_all(pool).await?);
            } else {
                rows.extend(sqlx::query(HOURS).bind(project).bind(first_hour).bind(end_hour).fetch_all(pool).await?);
            }
            for row in &rows {
                merged.entry(row.col("target")?).or_default().merge(&rollup_of(row, false)?, false);
            }
        });
        let mut latency: Vec<ProbeLatency> = merged
            .into_iter()
            .filter_map(|(target, r)| {
                let (monitor, host, port) = names.get(&target)?;
                Some(ProbeLatency { monitor: monitor.clone(), host: host.clone(), port: *port, latency: r.summary()? })
            })
            .collect();
        latency.sort_unstable_by(|a, b| (&a.monitor, &a.host, a.port).cmp(&(&b.monitor, &b.host, b.port)));
        Ok(latency)
    }

    /// Every target of a project by id: (monitor, host, port).
    async fn target_names(&self, project: &str) -> Result<HashMap<i64, (String, String, u16)>> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT id, monitor, host, port FROM probe_targets WHERE project = $1").bind(project).fetch_all(pool).await?;
            rows.iter().map(|row| Ok((row.col("id")?, (row.col("monitor")?, row.col("host")?, narrow(row, "port")?)))).collect()
        })
    }

    /// The start of the first UTC day not rolled up into `probe_days` (0 before the first roll-up).
    async fn days_rolled_until(&self) -> Result<i64> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT next_day FROM probe_rollup WHERE id = 1").fetch_optional(pool).await?;
            Ok(match row {
                Some(row) => row.col::<i64>("next_day")? * DAY_MS,
                None => 0,
            })
        })
    }

    /// Roll every finished UTC day (an hour of grace past its end) not rolled up yet into
    /// `probe_days`; returns how many days.
    pub async fn roll_up_probe_days(&self, now_ms: i64) -> Result<u32> {
        let last_day = (now_ms - DAY_GRACE_MS).div_euclid(DAY_MS); // the first day not finished
        let mut rolled = 0;
        loop {
            let done = on_pool!(self, pool => {
                let mut tx = pool.begin_write().await?;
                let next: Option<i64> = match sqlx::query("SELECT next_day FROM probe_rollup WHERE id = 1").fetch_optional(&mut *tx).await? {
                    Some(row) => Some(row.col("next_day")?),
                    None => sqlx::query("SELECT MIN(hour) AS first FROM probe_hours").fetch_one(&mut *tx).await?.col::<Option<i64>>("first")?.map(|hour| hour.div_euclid(24)),
                };
                let Some(day) = next.filter(|&d| d < last_day) else {
                    tx.rollback().await?;
                    break;
                };
                let rows = sqlx::query(concat!(
                    "SELECT h.target, ", rollup_columns!(),
                    " FROM probe_targets t JOIN probe_hours h ON h.target = t.id WHERE h.hour >= $1 AND h.hour < $2"
                ))
                .bind(day * 24)
                .bind(day * 24 + 24)
                .fetch_all(&mut *tx)
                .await?;
                let mut days: BTreeMap<i64, Rollup> = BTreeMap::new();
                for row in &rows {
                    days.entry(row.col("target")?).or_default().merge(&rollup_of(row, false)?, false);
                }
                let list: Vec<(i64, Rollup)> = days.into_iter().collect();
                for chunk in list.chunks(INSERT_CHUNK) {
                    let mut insert =
                        QueryBuilder::new("INSERT INTO probe_days (target, day, checks, failures, lat_min, lat_max, lat_sum, hist) ");
                    insert.push_values(chunk, |mut row, (target, r)| {
                        let (checks, failures, lat_min, lat_max, lat_sum) = r.columns();
                        row.push_bind(*target).push_bind(day).push_bind(checks).push_bind(failures).push_bind(lat_min)
                            .push_bind(lat_max).push_bind(lat_sum).push_bind(r.hist_blob());
                    });
                    insert.push(" ON CONFLICT (target, day) DO NOTHING");
                    insert.build().execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO probe_rollup (id, next_day) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET next_day = excluded.next_day")
                    .bind(day + 1)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                day
            });
            tracing::debug!(day = done, "probe results of a day rolled up");
            rolled += 1;
        }
        Ok(rolled)
    }

    /// Daily rollups of every monitor port of a project for the UTC days in [from, to):
    /// (monitor, host, port, day start, checks, failures, latency).
    pub async fn probe_days(&self, project: &str, from_ms: i64, to_ms: i64) -> Result<Vec<ProbeDay>> {
        const DAYS: &str = concat!(
            "SELECT t.monitor, t.host, t.port, d.day, ",
            rollup_columns!(),
            " FROM probe_targets t JOIN probe_days d ON d.target = t.id WHERE t.project = $1 AND d.day >= $2 AND d.day < $3",
            " ORDER BY t.monitor, t.host, t.port, d.day"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(DAYS).bind(project).bind(from_ms.div_euclid(DAY_MS)).bind(to_ms.div_euclid(DAY_MS)).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    let r = rollup_of(row, false)?;
                    Ok(ProbeDay {
                        monitor: row.col("monitor")?,
                        host: row.col("host")?,
                        port: narrow(row, "port")?,
                        day_start_ms: row.col::<i64>("day")? * DAY_MS,
                        ok: (r.checks - r.failures) as i64,
                        failed: r.failures as i64,
                        latency: r.summary(),
                    })
                })
                .collect()
        })
    }

    /// Delete what `retention` no longer keeps at `now_ms`; hour rows only once their day is
    /// rolled up. Returns how many rows.
    pub async fn prune_probes(&self, now_ms: i64, retention: &ProbeRetention) -> Result<u64> {
        let events_before = now_ms.saturating_sub(retention.events_ms);
        let hours_before = now_ms.saturating_sub(retention.hours_ms).div_euclid(HOUR_MS);
        let days_before = now_ms.saturating_sub(retention.days_ms).div_euclid(DAY_MS);
        on_pool!(self, pool => {
            let mut deleted = 0;
            deleted += sqlx::query("DELETE FROM probe_events WHERE target IN (SELECT id FROM probe_targets) AND at_ms < $1")
                .bind(events_before)
                .execute(pool)
                .await?
                .rows_affected();
            deleted += sqlx::query(
                "DELETE FROM probe_hours WHERE target IN (SELECT id FROM probe_targets) AND hour < $1
                 AND hour < 24 * COALESCE((SELECT next_day FROM probe_rollup WHERE id = 1), 0)",
            )
            .bind(hours_before)
            .execute(pool)
            .await?
            .rows_affected();
            deleted += sqlx::query("DELETE FROM probe_days WHERE target IN (SELECT id FROM probe_targets) AND day < $1")
                .bind(days_before)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(deleted)
        })
    }
}

/// One monitor port's checks on one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeDay {
    pub monitor: String,
    pub host: String,
    pub port: u16,
    pub day_start_ms: i64,
    pub ok: i64,
    pub failed: i64,
    pub latency: Option<LatencySummary>,
}
