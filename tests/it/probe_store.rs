//! Probe results as events and rollups, held to the old one-row-per-check table on both backends
//! (`probe_store::sqlite::…`, `probe_store::postgres::…`): one synthetic check stream goes into
//! the old `probe_results` rows, read with the queries serve used before, and through the new
//! store; the disconnect log, the newest checks and the availability buckets (uptime) must be
//! the same. An old database's rows are converted in chunks, interrupted and resumed, and must
//! give the same answers as the rows did.

use sqlx::{AssertSqlSafe, Connection, PgConnection, Row, SqliteConnection};
use watchkeeper::store::{ProbeBucket, ProbeRecord, Store};

use crate::store::{TestDb, both_backends};

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// The stream covers three days from T0.
const END: i64 = T0 + 3 * DAY;

both_backends!(
    old_and_new_give_the_same_answers,
    old_rows_convert_resumably_without_losing_history,
    the_log_counts_each_failed_check_in_its_period_in_any_timezone,
    histograms_written_before_read_the_same_after_the_upgrade
);

/// A deterministic stream: four monitors (one changes host halfway, one is a down-check without
/// latencies), checked every 3 minutes with a few seconds of jitter, failing in short outages
/// and alone, with two checks of one port at the same millisecond.
fn stream() -> Vec<ProbeRecord> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let targets: [(&str, &str, u16, bool); 6] = [
        ("web", "10.0.0.1", 22, true),
        ("web", "10.0.0.1", 80, true),
        ("web", "10.0.0.1", 443, true),
        ("db", "10.0.0.2", 5432, true),
        ("edge", "10.0.0.3", 443, true),
        ("down-web", "10.0.0.1", 80, false),
    ];
    let errors = [("refused", "connection refused"), ("timeout", "timed out after 5s"), ("unreachable", "no route to host")];
    let mut out = Vec::new();
    for (i, &(monitor, host, port, timed)) in targets.iter().enumerate() {
        let mut at = T0 + 17_000 + i as i64 * 7_000;
        let mut outage = 0;
        while at < END {
            if outage == 0 && next() % 1000 < 4 {
                outage = 1 + next() % 12; // up to 36 minutes down
            }
            let failed = outage > 0 || next() % 1000 < 10;
            outage = outage.saturating_sub(1);
            let host = if monitor == "edge" && at > T0 + 36 * HOUR { "10.0.0.4" } else { host };
            let error = failed.then(|| errors[(next() % 3) as usize]);
            out.push(ProbeRecord {
                project: "shop".into(),
                monitor: monitor.into(),
                host: host.into(),
                port,
                at_ms: at,
                ok: !failed,
                latency_ms: (!failed && timed).then(|| (next() % 40) as u32),
                error_kind: error.map(|e| e.0.to_string()),
                error: error.map(|e| e.1.to_string()),
            });
            at += 3 * MIN - 4_000 + (next() % 8_000) as i64;
        }
    }
    // The same port checked twice in one millisecond, failing both times.
    let twin =
        ProbeRecord { ok: false, latency_ms: None, error_kind: Some("other".into()), error: Some("reset".into()), ..out[100].clone() };
    out.push(twin.clone());
    out.push(ProbeRecord { error: Some("reset again".into()), ..twin });
    out.sort_by_key(|r| r.at_ms);
    out
}

/// A plain connection to the test database, for the old table and its queries.
enum Raw {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

macro_rules! on_raw {
    ($raw:expr, $c:ident => $body:expr) => {
        match $raw {
            Raw::Sqlite($c) => $body,
            Raw::Postgres($c) => $body,
        }
    };
}

fn quote(s: &Option<String>) -> String {
    s.as_ref().map_or("NULL".into(), |s| format!("'{}'", s.replace('\'', "''")))
}

impl Raw {
    async fn connect(db: &TestDb) -> Raw {
        if db.url.starts_with("sqlite:") {
            Raw::Sqlite(SqliteConnection::connect(&db.url).await.unwrap())
        } else {
            Raw::Postgres(PgConnection::connect(&db.url).await.unwrap())
        }
    }

    /// The rows as the old store wrote them, in order.
    async fn insert_old(&mut self, records: &[ProbeRecord]) {
        for chunk in records.chunks(500) {
            let values: Vec<String> = chunk
                .iter()
                .map(|r| {
                    format!(
                        "('{}', '{}', '{}', {}, {}, {}, {}, {}, {})",
                        r.project,
                        r.monitor,
                        r.host,
                        r.port,
                        r.at_ms,
                        r.ok,
                        r.latency_ms.map_or("NULL".into(), |l| l.to_string()),
                        quote(&r.error_kind),
                        quote(&r.error)
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO probe_results (project, monitor, host, port, at_ms, ok, latency_ms, error_kind, error) VALUES {}",
                values.join(", ")
            );
            on_raw!(self, c => {
                sqlx::query(AssertSqlSafe(sql)).execute(&mut *c).await.unwrap();
            });
        }
    }

    async fn count_old(&mut self) -> i64 {
        on_raw!(self, c => sqlx::query("SELECT COUNT(*) AS n FROM probe_results").fetch_one(&mut *c).await.unwrap().get::<i64, _>("n"))
    }

    /// The old store's queries, word for word.
    async fn old_answers(&mut self) -> Answers {
        const HISTORY: &str = "SELECT project, monitor, host, port, at_ms, ok, latency_ms, error_kind, error FROM probe_results
            WHERE project = $1 AND monitor = $2 AND at_ms >= $3 AND at_ms < $4 AND (NOT $5 OR NOT ok) ORDER BY at_ms DESC, id DESC LIMIT $6";
        const LATEST: &str = "SELECT project, monitor, host, port, at_ms, ok, latency_ms, error_kind, error
            FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY monitor, port ORDER BY at_ms DESC, id DESC) AS newest
            FROM probe_results WHERE project = $1) AS ranked WHERE newest = 1 ORDER BY monitor, port";
        const BUCKETS: &str = "SELECT monitor, host, port, (at_ms - $2) / $4 AS bucket,
                SUM(CASE WHEN ok THEN 1 ELSE 0 END) AS ok, SUM(CASE WHEN ok THEN 0 ELSE 1 END) AS failed
            FROM probe_results WHERE project = $1 AND at_ms >= $2 AND at_ms < $3
            GROUP BY monitor, host, port, bucket ORDER BY monitor, host, port, bucket";
        let mut answers = Answers::default();
        on_raw!(self, c => {
            for monitor in MONITORS {
                let rows = sqlx::query(HISTORY).bind("shop").bind(monitor).bind(T0).bind(END).bind(true).bind(i64::MAX)
                    .fetch_all(&mut *c).await.unwrap();
                answers.logs.push(rows.iter().map(|row| ProbeRecord {
                    project: row.get("project"),
                    monitor: row.get("monitor"),
                    host: row.get("host"),
                    port: row.get::<i64, _>("port") as u16,
                    at_ms: row.get("at_ms"),
                    ok: row.get("ok"),
                    latency_ms: row.get::<Option<i64>, _>("latency_ms").map(|l| l as u32),
                    error_kind: row.get("error_kind"),
                    error: row.get("error"),
                }).collect());
            }
            let rows = sqlx::query(LATEST).bind("shop").fetch_all(&mut *c).await.unwrap();
            answers.latest = rows.iter().map(|row| (row.get("monitor"), row.get::<i64, _>("port") as u16, row.get("at_ms"), row.get("ok"))).collect();
            for (from, to, bucket) in WINDOWS {
                let rows = sqlx::query(BUCKETS).bind("shop").bind(from).bind(to).bind(bucket).fetch_all(&mut *c).await.unwrap();
                answers.buckets.push(rows.iter().map(|row| ProbeBucket {
                    monitor: row.get("monitor"),
                    host: row.get("host"),
                    port: row.get::<i64, _>("port") as u16,
                    bucket_start_ms: from + row.get::<i64, _>("bucket") * bucket,
                    ok: row.get("ok"),
                    failed: row.get("failed"),
                }).collect());
            }
        });
        answers
    }
}

const MONITORS: [&str; 4] = ["web", "db", "edge", "down-web"];
/// (from, to, bucket): the availability windows the API asks for — a day in 5-minute buckets,
/// a week in hours (reaching before the data), and whole days.
const WINDOWS: [(i64, i64, i64); 3] = [(END - DAY, END, 5 * MIN), (END - 7 * DAY, END, HOUR), (T0, END, DAY)];

#[derive(Debug, Default, PartialEq)]
struct Answers {
    /// Each monitor's failures, newest first.
    logs: Vec<Vec<ProbeRecord>>,
    /// (monitor, port, at_ms, ok) of each (monitor, port)'s newest check.
    latest: Vec<(String, u16, i64, bool)>,
    buckets: Vec<Vec<ProbeBucket>>,
}

async fn new_answers(store: &Store) -> Answers {
    let mut answers = Answers::default();
    for monitor in MONITORS {
        answers.logs.push(store.probe_history("shop", monitor, T0, END, true, 0).await.unwrap());
    }
    answers.latest = store.latest_probes("shop").await.unwrap().into_iter().map(|r| (r.monitor, r.port, r.at_ms, r.ok)).collect();
    for (from, to, bucket) in WINDOWS {
        answers.buckets.push(store.probe_buckets("shop", from, to, bucket).await.unwrap());
    }
    answers
}

/// Uptime % per (monitor, host, port) over a window's buckets.
fn uptimes(buckets: &[ProbeBucket]) -> Vec<((String, String, u16), f64)> {
    let mut sums: std::collections::BTreeMap<(String, String, u16), (i64, i64)> = Default::default();
    for b in buckets {
        let s = sums.entry((b.monitor.clone(), b.host.clone(), b.port)).or_default();
        s.0 += b.ok;
        s.1 += b.failed;
    }
    sums.into_iter().map(|(k, (ok, failed))| (k, ok as f64 * 100.0 / (ok + failed) as f64)).collect()
}

fn assert_same(old: &Answers, new: &Answers) {
    assert!(old.logs.iter().map(Vec::len).sum::<usize>() > 100, "the stream has failures to compare");
    for (i, monitor) in MONITORS.iter().enumerate() {
        assert_eq!(old.logs[i], new.logs[i], "the disconnect log of {monitor}");
    }
    assert_eq!(old.latest, new.latest, "the newest checks");
    for (i, window) in WINDOWS.iter().enumerate() {
        let (old_up, new_up) = (uptimes(&old.buckets[i]), uptimes(&new.buckets[i]));
        assert_eq!(old_up.len(), new_up.len(), "targets in {window:?}");
        for ((k, a), (_, b)) in old_up.iter().zip(&new_up) {
            assert!((a - b).abs() < 0.01, "uptime of {k:?} in {window:?}: old {a} %, new {b} %");
        }
        let differ = old.buckets[i].iter().zip(&new.buckets[i]).find(|(a, b)| a != b);
        assert_eq!(differ, None, "the first bucket that differs in {window:?}");
        assert_eq!(old.buckets[i].len(), new.buckets[i].len(), "buckets in {window:?}");
    }
}

/// Latency over windows that start and end inside days (whole days from the daily rollups,
/// the hours around them from the hourly ones): min, max and mean are those of the good checks.
async fn assert_latency_is_the_checks(store: &Store, checks: &[ProbeRecord]) {
    for (from, to) in [(T0 + 5 * HOUR, END), (T0 + 5 * HOUR, END - 3 * HOUR), (T0, END), (T0 + DAY + 2 * HOUR, T0 + DAY + 9 * HOUR)] {
        // (monitor, host, port) → (min, max, sum, count)
        let mut expected: std::collections::BTreeMap<(String, String, u16), [u64; 4]> = Default::default();
        for r in checks.iter().filter(|r| r.at_ms >= from && r.at_ms < to) {
            if let Some(ms) = r.latency_ms.map(u64::from) {
                let e = expected.entry((r.monitor.clone(), r.host.clone(), r.port)).or_insert([u64::MAX, 0, 0, 0]);
                *e = [e[0].min(ms), e[1].max(ms), e[2] + ms, e[3] + 1];
            }
        }
        let got = store.probe_latency("shop", from, to).await.unwrap();
        assert_eq!(got.len(), expected.len(), "ports with latency in [{from}, {to})");
        for (l, ((monitor, host, port), [min, max, sum, n])) in got.iter().zip(expected) {
            assert_eq!((&l.monitor, &l.host, l.port), (&monitor, &host, port));
            let avg = (sum as f64 / n as f64 * 10.0).round() / 10.0;
            assert_eq!((l.latency.min_ms, l.latency.max_ms, l.latency.avg_ms), (min, max, avg), "{monitor} {port} in [{from}, {to})");
        }
    }
}

async fn old_and_new_give_the_same_answers(db: TestDb) {
    let store = db.connect().await;
    let checks = stream();
    let mut raw = Raw::connect(&db).await;
    raw.insert_old(&checks).await;
    let old = raw.old_answers().await;
    on_raw!(&mut raw, c => {
        sqlx::query("DELETE FROM probe_results").execute(&mut *c).await.unwrap();
    });

    // As the engine writes them: a few results per transaction.
    for batch in checks.chunks(7) {
        store.insert_probe_results(batch).await.unwrap();
    }
    store.roll_up_probe_days(END + DAY).await.unwrap();
    assert_same(&old, &new_answers(&store).await);
    assert_latency_is_the_checks(&store, &checks).await;
    // A restarted store (an empty cache) answers the same.
    drop(store);
    assert_same(&old, &new_answers(&db.connect().await).await);
}

async fn old_rows_convert_resumably_without_losing_history(db: TestDb) {
    let store = db.connect().await;
    let checks = stream();
    let mut raw = Raw::connect(&db).await;
    raw.insert_old(&checks).await;
    let old = raw.old_answers().await;
    let total = raw.count_old().await;
    assert_eq!(total as usize, checks.len());

    // Three chunks, then the process "stops".
    for _ in 0..3 {
        assert_eq!(store.convert_probe_results(1_000).await.unwrap(), 1_000);
    }
    assert_eq!(raw.count_old().await, total - 3_000);
    drop(store);

    // A conversion cut off anywhere in its transaction leaves either all of its chunk or none.
    let store = db.connect().await;
    let cut = {
        let store = store.clone();
        tokio::spawn(async move { store.convert_probe_results(2_000).await })
    };
    tokio::task::yield_now().await;
    cut.abort();
    let _ = cut.await;
    let left = raw.count_old().await;
    assert!(left == total - 3_000 || left == total - 5_000, "{left} rows left");
    drop(store);

    // Resumed by a new process until nothing is left.
    let store = db.connect().await;
    let mut converted = 0;
    loop {
        match store.convert_probe_results(1_000).await.unwrap() {
            0 => break,
            n => converted += n as i64,
        }
    }
    assert_eq!(converted, left);
    assert_eq!(raw.count_old().await, 0);
    store.roll_up_probe_days(END + DAY).await.unwrap();
    assert_same(&old, &new_answers(&store).await);
}

/// The disconnect log's counts per year, month, day and hour, which the database now counts, are
/// what counting every failed check by its period's key gives (what the log did when it read
/// them all) — in timezones with half and quarter hours, and across both of New York's clock
/// changes (an hour skipped, an hour repeated), for whole and cut ranges.
async fn the_log_counts_each_failed_check_in_its_period_in_any_timezone(db: TestDb) {
    use watchkeeper::api::{By, failure_counts};
    let store = db.connect().await;
    let mut checks = stream();
    // 2026-03-08T06:00Z (New York skips 02:00–03:00 at 07:00Z) and 2026-11-01T04:30Z (it
    // repeats 01:00–02:00 from 06:00Z): a failure every 10 minutes for three hours.
    for start in [T0 + 7 * DAY + 6 * HOUR, T0 + 245 * DAY + 4 * HOUR + 30 * MIN] {
        for i in 0..18 {
            checks.push(ProbeRecord {
                project: "shop".into(),
                monitor: "web".into(),
                host: "10.0.0.1".into(),
                port: 80,
                at_ms: start + i * 10 * MIN,
                ok: false,
                latency_ms: None,
                error_kind: Some("refused".into()),
                error: Some("connection refused".into()),
            });
        }
    }
    checks.sort_by_key(|r| r.at_ms);
    for batch in checks.chunks(50) {
        store.insert_probe_results(batch).await.unwrap();
    }
    let end = T0 + 400 * DAY;
    let ranges = [(T0 - 400 * DAY, end), (T0 + 30 * HOUR + 7 * MIN, T0 + 50 * HOUR), (T0 + 245 * DAY + 5 * HOUR + 15 * MIN, end)];
    let mut compared = 0;
    for tz in ["UTC", "Asia/Seoul", "America/New_York", "Asia/Kathmandu", "Australia/Adelaide"] {
        let tz = jiff::tz::TimeZone::get(tz).unwrap();
        for by in [By::Year, By::Month, By::Day, By::Hour] {
            for monitor in MONITORS {
                for (from, to) in ranges {
                    let mut expected: std::collections::BTreeMap<String, i64> = Default::default();
                    for r in checks.iter().filter(|r| !r.ok && r.monitor == monitor && r.at_ms >= from && r.at_ms < to) {
                        *expected.entry(by.key(&jiff::Timestamp::from_millisecond(r.at_ms).unwrap().to_zoned(tz.clone()))).or_default() +=
                            1;
                    }
                    let counted = failure_counts(&store, "shop", monitor, by, from, to, &tz).await.unwrap();
                    let counted: Vec<(String, i64)> = counted.into_iter().map(|c| (c.period, c.failures)).collect();
                    assert_eq!(counted, expected.into_iter().collect::<Vec<_>>(), "{monitor} by {by:?} in {tz:?} over [{from}, {to})");
                    compared += counted.len();
                }
            }
        }
    }
    assert!(compared > 500, "periods compared: {compared}");
}

/// Rollup rows written before latency histograms left out their leading empty buckets read the
/// same once the upgrade's migration has rewritten them: the migration's SQL is run here over
/// rows in the old form, and the store's answers are those rows' latencies.
async fn histograms_written_before_read_the_same_after_the_upgrade(db: TestDb) {
    let store = db.connect().await;
    let mut raw = Raw::connect(&db).await;
    let migration = if db.url.starts_with("sqlite:") {
        include_str!("../../src/store/migrations/sqlite/0015_probe_hist.sql")
    } else {
        include_str!("../../src/store/migrations/postgres/0015_probe_hist.sql")
    };
    let (hour, day) = (T0 / HOUR, T0 / DAY);
    on_raw!(&mut raw, c => {
        for (monitor, port) in [("web", 80), ("db", 5432), ("down", 22)] {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO probe_targets (project, monitor, host, port) VALUES ('shop', '{monitor}', '10.0.0.1', {port})"
            )))
            .execute(&mut *c)
            .await
            .unwrap();
        }
        // Old form: every bucket up to the last with a count, as varints. web's hour: 3 checks in
        // 50–99 ms, 100 in 100–199 ms, 2 in 200–499 ms; db's day: 130 under 1 ms (a two-byte
        // varint) and 2 in 2–4 ms; down's hour: no latencies.
        let rows = [
            ("probe_hours", "web", hour, 105, 50, 250, 105 * 150, "000000000000036402"),
            ("probe_days", "db", day, 132, 0, 3, 6, "82010002"),
            ("probe_hours", "down", hour, 20, -1, -1, 0, ""),
        ];
        for (table, monitor, at, checks, min, max, sum, hist) in rows {
            let (time, slots) = if table == "probe_hours" { ("hour", ", slots") } else { ("day", "") };
            let slot_value = match (table, db.url.starts_with("sqlite:")) {
                ("probe_hours", true) => ", X'aaaaaa'",
                ("probe_hours", false) => ", '\\xaaaaaa'::bytea",
                _ => "",
            };
            let lat = |v: i64| if v < 0 { "NULL".to_string() } else { v.to_string() };
            let blob = if db.url.starts_with("sqlite:") { format!("X'{hist}'") } else { format!("'\\x{hist}'::bytea") };
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {table} (target, {time}, checks, failures, lat_min, lat_max, lat_sum, hist{slots})
                 SELECT id, {at}, {checks}, 0, {}, {}, {sum}, {blob}{slot_value} FROM probe_targets WHERE monitor = '{monitor}'",
                lat(min),
                lat(max)
            )))
            .execute(&mut *c)
            .await
            .unwrap();
        }
        sqlx::raw_sql(AssertSqlSafe(migration)).execute(&mut *c).await.unwrap();
    });
    let latency = store.probe_latency("shop", T0, T0 + HOUR).await.unwrap();
    assert_eq!(latency.len(), 1, "down has no latency: {latency:?}");
    let web = &latency[0].latency;
    assert_eq!((latency[0].monitor.as_str(), web.min_ms, web.max_ms, web.avg_ms), ("web", 50, 250, 150.0));
    assert_eq!((web.p50_ms, web.p95_ms, web.p99_ms), (199, 199, 250), "quantiles from buckets 6–8");
    let days = store.probe_days("shop", T0, T0 + DAY).await.unwrap();
    let db_day = days.iter().find(|d| d.monitor == "db").unwrap().latency.clone().unwrap();
    assert_eq!((db_day.min_ms, db_day.max_ms, db_day.p50_ms, db_day.p99_ms), (0, 3, 0, 3), "quantiles from buckets 0 and 2");
    assert_eq!(days.len(), 1);
}
