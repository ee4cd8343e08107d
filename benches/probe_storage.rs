//! Benchmark: probe results on disk, and the queries that read them back, against the targets
//! (README, "Performance targets") — at most 2 bytes per check averaged over a day, at most 50 ms
//! for a monitor's disconnect log by year and by hour.
//!
//! Run with `cargo bench --bench probe_storage`. It prints figures and asserts nothing about
//! size or time.
//!
//! Per backend (a SQLite file in a temporary directory; a PostgreSQL database
//! `wk_bench_probe_storage_<pid>` created on `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, and dropped after):
//! 1. a day (`WK_BENCH_HOURS`, 24) of checks of `WK_BENCH_MONITORS` (10 000) PortMonitors of
//!    3 ports each in 100 projects, every 3 minutes at each monitor's own phase, goes through
//!    `Store::insert_probe_results` — the write serve's engine makes — one batch per
//!    `WK_BENCH_BATCH_S` (10) seconds of checks. About 0.1 % of the checks fail: single timeouts
//!    and refusals, and outages of 1–20 checks in a row of one port (refused) or of a whole host
//!    (timeouts). Latencies are a mix of LAN (0–2 ms), regional (5–30 ms) and distant
//!    (50–200 ms) hosts with ±20 % jitter. The day is then rolled up as serve does once it is over;
//! 2. prints what each probe table takes on disk (SQLite: the pages `dbstat` counts, free space
//!    in them included; PostgreSQL: `pg_total_relation_size` as written, and after VACUUM FULL),
//!    per check and per day, and the disk each retention setting costs at 30 000 checks every
//!    3 minutes; beside it, the same stream's first hour in the per-check rows of the layout before
//!    (`probe_results`), measured the same way;
//! 3. gives a past made of that day — to the ports of the project with the most failures, their
//!    failures and recoveries copied back over a year and their hourly rollups over 30 days; to
//!    every port, its daily rollup over 30 days — and times, median of
//!    `WK_BENCH_RUNS` (5), the store reads behind the status API: a monitor's log `by=year` and
//!    `by=hour` (the monitor with the most failures: its failures counted per period, the newest
//!    1 000 listed), the 30-day availability of one project
//!    (`availability?days=30`: hourly buckets and latency of its 300 ports), and the 30-day
//!    uptime of all 30 000 ports from the daily rollups.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, Row, SqliteConnection};
use watchkeeper::api::{By, failure_counts};
use watchkeeper::store::{ProbeRecord, Store};

use common::{env_u64, ms, verdict};

const TARGET_BYTES_PER_CHECK: f64 = 2.0;
const TARGET_QUERY: Duration = Duration::from_millis(50);
/// Failures a monitor's log lists by default (the API's `limit`).
const LOG_LIST: u32 = 1000;
/// Bytes per check of the one-row-per-check layout, measured on SQLite before the change.
const OLD_BYTES_PER_CHECK: f64 = 113.0;

const SECOND: i64 = 1_000;
const HOUR: i64 = 3_600 * SECOND;
const DAY: i64 = 24 * HOUR;
const INTERVAL: i64 = 180 * SECOND;
const PORTS: [u16; 3] = [22, 80, 443];
const PROJECTS: usize = 100;
/// The scale the README's disk figures are for: 30 000 checks every 3 minutes.
const SCALE_CHECKS_PER_DAY: f64 = 30_000.0 * (DAY / INTERVAL) as f64;
const PROBE_TABLES: [&str; 5] = ["probe_targets", "probe_reasons", "probe_events", "probe_hours", "probe_days"];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run());
}

struct Settings {
    monitors: usize,
    hours: i64,
    batch_ms: i64,
    runs: usize,
}

async fn run() {
    let settings = Settings {
        monitors: env_u64("WK_BENCH_MONITORS", 10_000).max(PROJECTS as u64) as usize,
        hours: env_u64("WK_BENCH_HOURS", 24).clamp(1, 24) as i64,
        batch_ms: env_u64("WK_BENCH_BATCH_S", 10).clamp(1, 180) as i64 * SECOND,
        runs: env_u64("WK_BENCH_RUNS", 5).max(1) as usize,
    };
    println!(
        "probe storage: {} monitors × {} ports in {PROJECTS} projects, every 3 minutes, {} h simulated, a write per {} s of checks",
        settings.monitors,
        PORTS.len(),
        settings.hours,
        settings.batch_ms / SECOND
    );
    let tmp = tempfile::Builder::new().prefix("wk-bench-probe-storage-").tempdir().expect("temporary directory");
    let sqlite = format!("sqlite://{}", tmp.path().join("wk.db").display());
    bench_backend("SQLite", &sqlite, &settings).await;

    common::on_throwaway_postgres("probe_storage", |url| async move { bench_backend("PostgreSQL", &url, &settings).await }).await;
}

// ---------------------------------------------------------------------------------------------
// The check stream

/// xorshift64: deterministic, so every run and both backends see the same stream.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with a probability of `per_million` / 1 000 000.
    fn chance(&mut self, per_million: u64) -> bool {
        self.next() % 1_000_000 < per_million
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A single check fails with this chance (a timeout or a refusal).
const BLIP_PER_MILLION: u64 = 500;
/// A monitor's run starts an outage with this chance: 1–20 runs of one port refused, or of the
/// whole host timing out. With the blips, about 0.1 % of checks fail.
const OUTAGE_PER_MILLION: u64 = 70;

const TIMEOUT: (&str, &str) = ("timeout", "timed out after 5s");
const REFUSED: (&str, &str) = ("refused", "connection refused");

struct Monitor {
    project: String,
    name: String,
    host: String,
    /// Offset of its runs within the 3-minute interval.
    phase_ms: i64,
    /// Base latency per port, milliseconds.
    latency: [u32; 3],
    /// Runs left in the current outage, and which port (None: the whole host).
    outage: u32,
    outage_port: Option<usize>,
}

struct Stream {
    monitors: Vec<Monitor>,
    /// Monitors by the batch of the interval their runs fall in.
    by_slot: Vec<Vec<usize>>,
    random: Random,
    start_ms: i64,
    batch_ms: i64,
}

impl Stream {
    fn new(monitors: usize, start_ms: i64, batch_ms: i64) -> Stream {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let slots = (INTERVAL / batch_ms) as usize;
        let mut by_slot = vec![Vec::new(); slots];
        let list: Vec<Monitor> = (0..monitors)
            .map(|i| {
                let phase_ms = random.below(INTERVAL as u64) as i64;
                by_slot[((phase_ms / batch_ms) as usize).min(slots - 1)].push(i);
                let mut latency = [0; 3];
                for l in &mut latency {
                    *l = match random.below(3) {
                        0 => random.below(3) as u32,
                        1 => 5 + random.below(26) as u32,
                        _ => 50 + random.below(151) as u32,
                    };
                }
                Monitor {
                    project: format!("project-{:02}", i % PROJECTS),
                    name: format!("monitor-{i:05}"),
                    host: format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256),
                    phase_ms,
                    latency,
                    outage: 0,
                    outage_port: None,
                }
            })
            .collect();
        Stream { monitors: list, by_slot, random, start_ms, batch_ms }
    }

    /// The checks of batch `n`: [start + n × batch, start + (n + 1) × batch).
    fn batch(&mut self, n: i64) -> Vec<ProbeRecord> {
        let slots = self.by_slot.len() as i64;
        let interval_start = self.start_ms + n.div_euclid(slots) * INTERVAL;
        let mut out = Vec::with_capacity(self.by_slot[n.rem_euclid(slots) as usize].len() * PORTS.len());
        for &i in &self.by_slot[n.rem_euclid(slots) as usize] {
            let random = &mut self.random;
            let m = &mut self.monitors[i];
            if m.outage == 0 && random.chance(OUTAGE_PER_MILLION) {
                m.outage = 1 + random.below(20) as u32;
                m.outage_port = (random.below(2) == 0).then(|| random.below(PORTS.len() as u64) as usize);
            }
            let at = interval_start + m.phase_ms;
            for (p, &port) in PORTS.iter().enumerate() {
                let error = if m.outage > 0 && m.outage_port.is_none_or(|o| o == p) {
                    Some(if m.outage_port.is_none() { TIMEOUT } else { REFUSED })
                } else if random.chance(BLIP_PER_MILLION) {
                    Some(if random.below(2) == 0 { TIMEOUT } else { REFUSED })
                } else {
                    None
                };
                let base = m.latency[p];
                let jitter = (base / 5).max(1);
                out.push(ProbeRecord {
                    project: m.project.clone(),
                    monitor: m.name.clone(),
                    host: m.host.clone(),
                    port,
                    at_ms: at + random.below(15) as i64,
                    ok: error.is_none(),
                    latency_ms: error.is_none().then(|| base.saturating_sub(jitter) + random.below(2 * u64::from(jitter) + 1) as u32),
                    error_kind: error.map(|e| e.0.to_string()),
                    error: error.map(|e| e.1.to_string()),
                });
            }
            m.outage = m.outage.saturating_sub(1);
        }
        out.sort_by_key(|r| r.at_ms);
        out
    }

    fn batches(&self, hours: i64) -> i64 {
        hours * HOUR / self.batch_ms
    }
}

// ---------------------------------------------------------------------------------------------
// One backend

/// A plain connection beside the store, for sizes and for the history copied back.
enum Raw {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Raw {
    async fn connect(url: &str) -> Raw {
        if url.starts_with("sqlite:") {
            Raw::Sqlite(SqliteConnection::connect(url).await.expect("a second SQLite connection"))
        } else {
            Raw::Postgres(PgConnection::connect(url).await.expect("a second PostgreSQL connection"))
        }
    }

    async fn execute(&mut self, sql: &str) -> u64 {
        let sql = AssertSqlSafe(sql.to_string());
        match self {
            Raw::Sqlite(c) => c.execute(sql).await.expect("SQL").rows_affected(),
            Raw::Postgres(c) => c.execute(sql).await.expect("SQL").rows_affected(),
        }
    }

    async fn scalar(&mut self, sql: &str) -> i64 {
        let sql = AssertSqlSafe(sql.to_string());
        match self {
            Raw::Sqlite(c) => sqlx::query(sql).fetch_one(c).await.expect("SQL").get(0),
            Raw::Postgres(c) => sqlx::query(sql).fetch_one(c).await.expect("SQL").get(0),
        }
    }

    /// Bytes on disk of each table with its indexes: SQLite's pages after a checkpoint (the
    /// write-ahead log folded in), PostgreSQL's relation sizes.
    async fn sizes(&mut self, tables: &[&str]) -> HashMap<String, i64> {
        let mut out = HashMap::new();
        match self {
            Raw::Sqlite(c) => {
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)").await.expect("checkpoint");
                let rows = sqlx::query(
                    "SELECT m.tbl_name AS t, SUM(d.pgsize) AS bytes FROM dbstat d JOIN sqlite_master m ON m.name = d.name GROUP BY m.tbl_name",
                )
                .fetch_all(c)
                .await
                .expect("dbstat");
                for row in rows {
                    out.insert(row.get::<String, _>("t"), row.get::<i64, _>("bytes"));
                }
            }
            Raw::Postgres(c) => {
                for table in tables {
                    let bytes: i64 = sqlx::query(AssertSqlSafe(format!("SELECT pg_total_relation_size('{table}')")))
                        .fetch_one(&mut *c)
                        .await
                        .expect("relation size")
                        .get(0);
                    out.insert(table.to_string(), bytes);
                }
            }
        }
        tables.iter().map(|t| (t.to_string(), out.get(*t).copied().unwrap_or(0))).collect()
    }
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

async fn bench_backend(label: &str, url: &str, s: &Settings) {
    println!("\n== {label}");
    let store = Store::connect(url).await.expect("open the store");
    let mut raw = Raw::connect(url).await;
    // The simulated day starts at the next UTC midnight: every hour written is newer than the
    // store's start, as serve's are.
    let day0 = (watchkeeper::clock::now_ms() / DAY + 1) * DAY;
    let empty = raw.sizes(&PROBE_TABLES).await;

    // 1. A day of checks.
    let mut stream = Stream::new(s.monitors, day0, s.batch_ms);
    let (mut checks, mut failed) = (0u64, 0u64);
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    for n in 0..stream.batches(s.hours) {
        let batch = stream.batch(n);
        checks += batch.len() as u64;
        failed += batch.iter().filter(|r| !r.ok).count() as u64;
        store.insert_probe_results(&batch).await.expect("write a batch");
        if (n + 1) % (HOUR / s.batch_ms * 6) == 0 {
            println!("  {:>2} h written, {:.0} s", (n + 1) * s.batch_ms / HOUR, t0.elapsed().as_secs_f64());
        }
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let rolled = store.roll_up_probe_days(day0 + 2 * DAY).await.expect("roll the day up");
    let events = raw.scalar("SELECT COUNT(*) FROM probe_events").await;
    println!(
        "  {checks} checks, {failed} failed ({:.3} %), {events} events; written in {wall:.1} s ({:.0} checks/s, {:.0} checks per CPU-second of this process); {rolled} day rolled up",
        failed as f64 * 100.0 / checks as f64,
        checks as f64 / wall,
        checks as f64 / cpu
    );

    // 2. Bytes on disk.
    let written = raw.sizes(&PROBE_TABLES).await;
    let grown = |sizes: &HashMap<String, i64>, table: &str| (sizes[table] - empty[table]).max(0) as f64;
    let per_day = 24.0 / s.hours as f64;
    let day_bytes = |sizes: &HashMap<String, i64>| Bytes {
        fixed: grown(sizes, "probe_targets") + grown(sizes, "probe_reasons"),
        events: grown(sizes, "probe_events") * per_day,
        hours: grown(sizes, "probe_hours") * per_day,
        days: grown(sizes, "probe_days"),
    };
    let day_checks = checks as f64 * per_day;
    let bytes = day_bytes(&written);
    bytes.print("as written", day_checks);
    let bytes = if let Raw::Postgres(_) = raw {
        for table in PROBE_TABLES {
            raw.execute(&format!("VACUUM FULL {table}")).await;
        }
        let live = day_bytes(&raw.sizes(&PROBE_TABLES).await);
        live.print("after VACUUM FULL", day_checks);
        println!("    (autovacuum keeps a table between these two: the dead row versions of rewritten hour rows are reused)");
        live
    } else {
        bytes
    };
    let total = bytes.total();
    println!(
        "  bytes per check over the day: {:.2} ({:.2} of it grows with each day kept; targets and error texts are written once)   target ≤ {TARGET_BYTES_PER_CHECK}   {}",
        total / day_checks,
        (total - bytes.fixed) / day_checks,
        verdict(total / day_checks <= TARGET_BYTES_PER_CHECK)
    );
    retention_table(&bytes, day_checks);

    // 3. A past, then the reads. The queried project (the one with the most failures) gets a year
    // of events and 30 days of hourly rollups, copied from the day; every project gets 30 days of
    // daily rollups. Copying a year of every project's events (15 M rows) took longer than the rest
    // of the bench, and the reads only touch the queried project's rows, by index.
    let to = day0 + s.hours * HOUR;
    let busiest: String = {
        let sql = format!(
            "SELECT t.project || '/' || t.monitor FROM probe_events e JOIN probe_targets t ON t.id = e.target
             WHERE e.at_ms >= {day0} AND e.reason IS NOT NULL GROUP BY t.project, t.monitor ORDER BY COUNT(*) DESC, 1 LIMIT 1"
        );
        match &mut raw {
            Raw::Sqlite(c) => sqlx::query(AssertSqlSafe(sql)).fetch_one(c).await.expect("busiest monitor").get(0),
            Raw::Postgres(c) => sqlx::query(AssertSqlSafe(sql)).fetch_one(c).await.expect("busiest monitor").get(0),
        }
    };
    let (project, monitor) = busiest.split_once('/').expect("project/monitor");
    let first_hour = day0 / HOUR;
    let t = Instant::now();
    let of_project = format!("target IN (SELECT id FROM probe_targets WHERE project = '{project}')");
    let events_per_day =
        raw.scalar(&format!("SELECT COUNT(*) FROM probe_events WHERE {of_project} AND at_ms >= {day0} AND at_ms < {}", day0 + DAY)).await;
    for back in 1..365 {
        raw.execute(&format!(
            "INSERT INTO probe_events (target, at_ms, reason) SELECT target, at_ms - {}, reason FROM probe_events WHERE {of_project} AND at_ms >= {day0} AND at_ms < {}",
            back * DAY,
            day0 + DAY
        ))
        .await;
    }
    for back in 1..30 {
        raw.execute(&format!(
            "INSERT INTO probe_hours (target, hour, checks, failures, lat_min, lat_max, lat_sum, hist, slots)
             SELECT target, hour - {}, checks, failures, lat_min, lat_max, lat_sum, hist, slots FROM probe_hours WHERE {of_project} AND hour >= {first_hour} AND hour < {}",
            back * 24,
            first_hour + 24
        ))
        .await;
        raw.execute(&format!(
            "INSERT INTO probe_days (target, day, checks, failures, lat_min, lat_max, lat_sum, hist)
             SELECT target, day - {back}, checks, failures, lat_min, lat_max, lat_sum, hist FROM probe_days WHERE day = {}",
            day0 / DAY
        ))
        .await;
    }
    if let Raw::Postgres(c) = &mut raw {
        c.execute("ANALYZE").await.expect("analyze");
    }
    println!(
        "  history of {project}: its day's {events_per_day} events copied over a year ({} events in the table), its hourly rollups over 30 days ({} rows in the table); every project's daily rollups over 30 days; {:.0} s",
        raw.scalar("SELECT COUNT(*) FROM probe_events").await,
        raw.scalar("SELECT COUNT(*) FROM probe_hours").await,
        t.elapsed().as_secs_f64()
    );

    let project_ports = s.monitors.div_ceil(PROJECTS) * PORTS.len();
    let store = &store;
    println!("  reads (median of {} runs):", s.runs);
    // What the monitor's log answers: its failures counted per period (in UTC here) and the
    // newest LOG_LIST of them listed, the API's default.
    let log = |from: i64, by: By| async move {
        let counts = failure_counts(store, project, monitor, by, from, to + 1, &jiff::tz::TimeZone::UTC).await.expect("log counts");
        let listed = store.probe_history(project, monitor, from, to + 1, true, LOG_LIST).await.expect("log").len();
        (counts.len(), counts.iter().map(|c| c.failures).sum::<i64>(), listed)
    };
    let (by_year, (periods, failures, listed)) = time(s.runs, || log(to - 5 * 366 * DAY, By::Year)).await;
    println!(
        "    log?by=year of {project}/{monitor} (5 years back: {failures} failures counted in {periods} years, the newest {listed} listed)   {}   target ≤ {}   {}",
        ms(by_year),
        ms(TARGET_QUERY),
        verdict(by_year <= TARGET_QUERY)
    );
    let (by_hour, (periods, failures, listed)) = time(s.runs, || log(to - DAY, By::Hour)).await;
    println!(
        "    log?by=hour of {project}/{monitor} (24 hours back: {failures} failures counted in {periods} hours, {listed} listed)   {}   target ≤ {}   {}",
        ms(by_hour),
        ms(TARGET_QUERY),
        verdict(by_hour <= TARGET_QUERY)
    );
    let to_hour = (to / HOUR) * HOUR;
    let (availability, found) = time(s.runs, || async move {
        let buckets = store.probe_buckets(project, to_hour - 30 * DAY, to_hour, HOUR).await.expect("hourly buckets");
        store.probe_latency(project, to_hour - 30 * DAY, to_hour).await.expect("latency");
        buckets.len()
    })
    .await;
    println!(
        "    availability?days=30 of {project} ({project_ports} ports, {found} hourly buckets)   {}   target ≤ {}   {}",
        ms(availability),
        ms(TARGET_QUERY),
        verdict(availability <= TARGET_QUERY)
    );
    let uptime_to = day0 + DAY;
    let (uptime, found) = time(s.runs, || async move {
        let mut ports = 0;
        for p in 0..PROJECTS {
            ports +=
                store.probe_buckets(&format!("project-{p:02}"), uptime_to - 30 * DAY, uptime_to, 30 * DAY).await.expect("uptime").len();
        }
        ports
    })
    .await;
    println!(
        "    30-day uptime of every port ({found} ports in {PROJECTS} projects, from the daily rollups)   {}   target ≤ {}   {}",
        ms(uptime),
        ms(TARGET_QUERY),
        verdict(uptime <= TARGET_QUERY)
    );
    store.close().await;

    // 4. The layout before, for comparison: the first hour of the same stream as rows.
    let old = old_layout(&mut raw, s).await;
    println!(
        "  layout before (one row per check, measured on the first hour of the stream): {old:.1} bytes per check ({:.1}× this layout; {OLD_BYTES_PER_CHECK} measured on SQLite before the change)",
        old / (total / day_checks)
    );
}

/// Bytes of one day of probe results, by what keeps them.
struct Bytes {
    /// Targets and error texts: do not grow with time.
    fixed: f64,
    events: f64,
    hours: f64,
    days: f64,
}

impl Bytes {
    fn total(&self) -> f64 {
        self.fixed + self.events + self.hours + self.days
    }

    fn print(&self, when: &str, checks: f64) {
        let per = |b: f64| b / checks;
        println!(
            "  a day on disk, {when}: {:.1} MB = hourly rollups {:.1} MB ({:.2} B/check) + daily rollups {:.2} MB ({:.3} B/check) + events {:.2} MB ({:.3} B/check) + targets and error texts {:.2} MB ({:.3} B/check)",
            self.total() / 1e6,
            self.hours / 1e6,
            per(self.hours),
            self.days / 1e6,
            per(self.days),
            self.events / 1e6,
            per(self.events),
            self.fixed / 1e6,
            per(self.fixed)
        );
    }
}

/// Values of a retention setting and the days each keeps.
type Retentions = &'static [(&'static str, f64)];

/// Disk at 30 000 checks every 3 minutes for each retention, and for the defaults together.
fn retention_table(bytes: &Bytes, checks: f64) {
    let scale = SCALE_CHECKS_PER_DAY / checks;
    let gb = |b: f64| b * scale / 1e9;
    println!(
        "  at 30 000 checks every 3 minutes ({:.1} M checks a day): {:.3} GB a day; layout before: {:.2} GB a day",
        SCALE_CHECKS_PER_DAY / 1e6,
        gb(bytes.total()),
        OLD_BYTES_PER_CHECK * SCALE_CHECKS_PER_DAY / 1e9
    );
    println!("    {:<22} {:>8} {:>12}", "setting", "value", "disk");
    // (flag, bytes a day adds, values in days)
    let rows: [(&str, f64, Retentions); 3] = [
        ("--retention-hours", bytes.hours, &[("7d", 7.0), ("35d", 35.0), ("90d", 90.0)]),
        ("--retention-days", bytes.days, &[("1y", 365.0), ("5y", 5.0 * 365.0), ("10y", 3650.0)]),
        ("--retention-events", bytes.events, &[("1y", 365.0), ("5y", 5.0 * 365.0), ("10y", 3650.0)]),
    ];
    for (flag, per_day, values) in rows {
        for (value, days) in values {
            println!("    {flag:<22} {value:>8} {:>9.2} GB", gb(per_day * days));
        }
    }
    let defaults = bytes.fixed + 35.0 * bytes.hours + 5.0 * 365.0 * (bytes.days + bytes.events);
    println!(
        "    the defaults together (35d / 5y / 5y), with targets: {:.2} GB; the layout before kept 35 days in {:.0} GB",
        gb(defaults),
        OLD_BYTES_PER_CHECK * SCALE_CHECKS_PER_DAY * 35.0 / 1e9
    );
}

/// Bytes per check of the old `probe_results` rows (the table is still there until converted),
/// for the first hour of the same stream.
async fn old_layout(raw: &mut Raw, s: &Settings) -> f64 {
    let before = raw.sizes(&["probe_results"]).await["probe_results"];
    let mut stream = Stream::new(s.monitors, 0, s.batch_ms);
    let mut checks = 0;
    for n in 0..stream.batches(1) {
        let batch = stream.batch(n);
        checks += batch.len();
        for chunk in batch.chunks(1_000) {
            // The stream's texts are plain words and numbers: written into the SQL as they are.
            let text = |t: &Option<String>| t.as_ref().map_or("NULL".to_string(), |t| format!("'{t}'"));
            let rows: Vec<String> = chunk
                .iter()
                .map(|r| {
                    format!(
                        "('{}', '{}', '{}', {}, {}, {}, {}, {}, {})",
                        r.project,
                        r.monitor,
                        r.host,
                        r.port,
                        r.at_ms,
                        if r.ok { "TRUE" } else { "FALSE" },
                        r.latency_ms.map_or("NULL".to_string(), |l| l.to_string()),
                        text(&r.error_kind),
                        text(&r.error)
                    )
                })
                .collect();
            raw.execute(&format!(
                "INSERT INTO probe_results (project, monitor, host, port, at_ms, ok, latency_ms, error_kind, error) VALUES {}",
                rows.join(", ")
            ))
            .await;
        }
    }
    if let Raw::Postgres(c) = raw {
        c.execute("VACUUM FULL probe_results").await.expect("vacuum");
    }
    let after = raw.sizes(&["probe_results"]).await["probe_results"];
    (after - before) as f64 / checks as f64
}

/// The median wall time of `runs` calls (after one to warm up), and what the last one found.
async fn time<F, Fut, T>(runs: usize, mut f: F) -> (Duration, T)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut found = f().await;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        found = f().await;
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], found)
}
