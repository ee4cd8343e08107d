//! Host-metric storage on both backends (`samples::sqlite::…`, `samples::postgres::…`, with the
//! store suite's fresh-database helper): raw samples, rollups, late reports, retention, server
//! state and chart series.

use sqlx::{Connection, PgConnection, SqliteConnection};
use watchkeeper::protocol::{Facts, MetricValue, ProcessInfo, Report};
use watchkeeper::store::{GRACE_MS, Resolution, RollupStats, SampleRetention, SeriesPoint, Store, StoreError, StoredReport, SubjectSeries};

use crate::store::{TestDb, both_backends};

/// 2026-03-01T00:00:00Z, on an hour boundary.
const T0: i64 = 1_772_323_200_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
/// Reports per 5-minute bucket at the agents' 5 s interval.
const PER_BUCKET: i64 = 60;

both_backends!(
    series_at_every_resolution_have_exact_statistics,
    late_reports_aggregate_their_bucket_and_hour_again,
    roll_up_twice_changes_nothing,
    roll_up_resumes_from_its_watermark_after_a_restart,
    prune_keeps_what_is_not_rolled_up_and_refuses_older_reports,
    server_state_keeps_the_newest_report,
    no_subject_gives_the_worst_subject,
    each_subject_has_its_own_series_from_one_read,
    a_report_without_metrics_is_stored_without_values,
    non_finite_values_are_refused_and_huge_sums_saturate,
    a_report_sent_twice_is_stored_once,
    a_server_state_that_does_not_decode_is_left_out,
    concurrent_roll_ups_agree_with_one,
    reports_read_whole_days_from_daily_rollups_with_the_newest_hour_as_last,
    a_database_from_before_daily_rollups_gets_its_days_a_month_a_run,
);

// ---- helpers ----

fn value(name: &'static str, subject: Option<&str>, value: f64) -> MetricValue {
    MetricValue { name, subject: subject.map(str::to_string), value }
}

fn report(at_ms: i64, metrics: Vec<MetricValue>) -> Report {
    Report {
        facts: Facts { os: "Debian GNU/Linux 12 (bookworm)".into(), cpu_count: 2, boot_time: 1_772_000_000, ..Facts::default() },
        metrics,
        processes: vec![ProcessInfo {
            pid: 42,
            name: "nginx".into(),
            user: "www-data".into(),
            cpu: Some(1.5),
            memory: 0.25,
            rss_bytes: 4096,
        }],
        process_counts: [("nginx".to_string(), 1)].into(),
        skipped_mounts: Vec::new(),
        at_ms,
    }
}

fn cpu(at_ms: i64, cpu: f64) -> Report {
    report(at_ms, vec![value("cpu.usage", None, cpu)])
}

/// cpu.usage every 5 s in [from, to): the k-th report since T0 has (k mod 60) + 100 (k div 60),
/// so 5-minute bucket b holds 100b, 100b+1, …, 100b+59.
fn cpu_reports(from: i64, to: i64) -> Vec<Report> {
    (from..to)
        .step_by(5_000)
        .map(|at| {
            let k = (at - T0) / 5_000;
            cpu(at, (k % PER_BUCKET + 100 * (k / PER_BUCKET)) as f64)
        })
        .collect()
}

/// The statistics of that pattern over 5-minute buckets [first, last].
fn cpu_point(at_ms: i64, first: i64, last: i64) -> SeriesPoint {
    let mean_bucket = (first + last) as f64 / 2.0;
    SeriesPoint { at_ms, avg: 29.5 + 100.0 * mean_bucket, min: 100.0 * first as f64, max: 100.0 * last as f64 + 59.0 }
}

async fn insert(store: &Store, server: &str, reports: &[Report]) {
    for chunk in reports.chunks(200) {
        let batch: Vec<StoredReport> = chunk.iter().map(|report| StoredReport { project: "shop", server, report }).collect();
        store.insert_reports(&batch).await.expect("insert reports");
    }
}

async fn series(store: &Store, server: &str, from: i64, to: i64, resolution: Resolution) -> Vec<SeriesPoint> {
    store.metric_series("shop", server, "cpu.usage", None, from, to, resolution).await.expect("series")
}

fn stats(five_minute_rows: u64, hour_rows: u64, late_buckets: u64) -> RollupStats {
    RollupStats { five_minute_rows, hour_rows, day_rows: 0, late_buckets, superseded: false }
}

fn stats_with_days(five_minute_rows: u64, hour_rows: u64, day_rows: u64, late_buckets: u64) -> RollupStats {
    RollupStats { day_rows, ..stats(five_minute_rows, hour_rows, late_buckets) }
}

/// The first moment at which every bucket before `end` is complete.
fn after(end: i64) -> i64 {
    end + GRACE_MS
}

/// Every rollup row as stored, in key order.
async fn rollup_rows(db: &TestDb) -> Vec<(String, String, i64, i64, String)> {
    const ALL: &str =
        "SELECT project, server, resolution_ms, bucket_ms, vals FROM metric_rollups ORDER BY project, server, resolution_ms, bucket_ms";
    if db.url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_as(ALL).fetch_all(&mut conn).await.unwrap()
    } else {
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as(ALL).fetch_all(&mut conn).await.unwrap()
    }
}

/// Run one statement on the test database, behind the store's back.
async fn execute(db: &TestDb, sql: &'static str) {
    if db.url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
}

// ---- tests on both backends ----

async fn series_at_every_resolution_have_exact_statistics(db: TestDb) {
    let store = db.connect().await;
    assert_eq!(store.roll_up(T0).await.unwrap(), stats(0, 0, 0), "an empty store has nothing to roll up");
    insert(&store, "web-01", &cpu_reports(T0, T0 + 2 * HOUR)).await;
    insert(&store, "db-01", &cpu_reports(T0, T0 + 2 * HOUR)).await;

    // Two hours of two servers: 24 five-minute buckets and 2 hours each.
    assert_eq!(store.roll_up(after(T0 + 2 * HOUR)).await.unwrap(), stats(48, 4, 0));

    let fives = series(&store, "web-01", T0, T0 + 2 * HOUR, Resolution::FiveMinutes).await;
    assert_eq!(fives, (0..24).map(|b| cpu_point(T0 + b * 5 * MIN, b, b)).collect::<Vec<_>>());
    let hours = series(&store, "web-01", T0, T0 + 2 * HOUR, Resolution::Hour).await;
    assert_eq!(hours, vec![cpu_point(T0, 0, 11), cpu_point(T0 + HOUR, 12, 23)]);
    // A range starting inside a bucket gets that whole bucket.
    let inside = series(&store, "web-01", T0 + 7 * MIN, T0 + 12 * MIN, Resolution::FiveMinutes).await;
    assert_eq!(inside, vec![cpu_point(T0 + 5 * MIN, 1, 1), cpu_point(T0 + 10 * MIN, 2, 2)]);

    // Raw: one point per report in [from, to).
    let raw = series(&store, "web-01", T0 + 5 * MIN, T0 + 5 * MIN + 15 * SEC, Resolution::Raw).await;
    let expected: Vec<SeriesPoint> = [100.0, 101.0, 102.0]
        .iter()
        .enumerate()
        .map(|(i, &v)| SeriesPoint { at_ms: T0 + 5 * MIN + i as i64 * 5 * SEC, avg: v, min: v, max: v })
        .collect();
    assert_eq!(raw, expected);

    // Ten more minutes, not rolled up: the charts reach them from raw samples.
    insert(&store, "web-01", &cpu_reports(T0 + 2 * HOUR, T0 + 2 * HOUR + 10 * MIN)).await;
    let fives = series(&store, "web-01", T0 + HOUR, T0 + 2 * HOUR + 10 * MIN, Resolution::FiveMinutes).await;
    assert_eq!(fives.len(), 14);
    assert_eq!(fives[12..], [cpu_point(T0 + 2 * HOUR, 24, 24), cpu_point(T0 + 2 * HOUR + 5 * MIN, 25, 25)]);
    let hours = series(&store, "web-01", T0, T0 + 3 * HOUR, Resolution::Hour).await;
    assert_eq!(hours[2], cpu_point(T0 + 2 * HOUR, 24, 25));

    // Those two buckets rolled up (no hour complete yet), five more minutes raw: the current
    // hour is built from both.
    assert_eq!(store.roll_up(after(T0 + 2 * HOUR + 10 * MIN)).await.unwrap(), stats(2, 0, 0));
    insert(&store, "web-01", &cpu_reports(T0 + 2 * HOUR + 10 * MIN, T0 + 2 * HOUR + 15 * MIN)).await;
    let hours = series(&store, "web-01", T0, T0 + 3 * HOUR, Resolution::Hour).await;
    assert_eq!(hours, vec![cpu_point(T0, 0, 11), cpu_point(T0 + HOUR, 12, 23), cpu_point(T0 + 2 * HOUR, 24, 26)]);

    // Another server, another metric, an empty range: nothing.
    assert!(series(&store, "web-02", T0, T0 + 3 * HOUR, Resolution::Hour).await.is_empty());
    let memory = store.metric_series("shop", "web-01", "memory.usage", None, T0, T0 + 3 * HOUR, Resolution::Hour).await.unwrap();
    assert!(memory.is_empty());
    assert!(series(&store, "web-01", T0 + HOUR, T0, Resolution::Raw).await.is_empty());

    // The raw samples around a moment, decoded.
    let samples = store.raw_samples("shop", "web-01", T0 + 10 * SEC, T0 + 20 * SEC).await.unwrap();
    assert_eq!(samples, vec![(T0 + 10 * SEC, vec![value("cpu.usage", None, 2.0)]), (T0 + 15 * SEC, vec![value("cpu.usage", None, 3.0)])]);
}

async fn late_reports_aggregate_their_bucket_and_hour_again(db: TestDb) {
    let store = db.connect().await;
    insert(&store, "web-01", &cpu_reports(T0, T0 + 2 * HOUR)).await;
    assert_eq!(store.roll_up(after(T0 + 2 * HOUR)).await.unwrap(), stats(24, 2, 0));

    // An agent's backlog arrives: one report in bucket 1 (minute 7), long rolled up, and one in
    // the bucket not complete yet. Only the first is late.
    insert(&store, "web-01", &[cpu(T0 + 7 * MIN + 1, 1000.0), cpu(T0 + 2 * HOUR + 1, 7.0)]).await;
    assert_eq!(store.roll_up(after(T0 + 2 * HOUR)).await.unwrap(), stats(1, 1, 1));

    let bucket_one = SeriesPoint { at_ms: T0 + 5 * MIN, avg: (1770.0 + 6000.0 + 1000.0) / 61.0, min: 100.0, max: 1000.0 };
    let fives = series(&store, "web-01", T0, T0 + 15 * MIN, Resolution::FiveMinutes).await;
    assert_eq!(fives, vec![cpu_point(T0, 0, 0), bucket_one, cpu_point(T0 + 10 * MIN, 2, 2)]);
    let hours = series(&store, "web-01", T0, T0 + 2 * HOUR, Resolution::Hour).await;
    let hour_zero = cpu_point(T0, 0, 11);
    // 1000 is below the hour's maximum (1159, in bucket 11): only the average moves.
    let hour_zero = SeriesPoint { avg: (hour_zero.avg * 720.0 + 1000.0) / 721.0, ..hour_zero };
    assert_eq!(hours, vec![hour_zero, cpu_point(T0 + HOUR, 12, 23)]);

    // Done: nothing left to do at the same time.
    assert_eq!(store.roll_up(after(T0 + 2 * HOUR)).await.unwrap(), stats(0, 0, 0));
    // The report of the open bucket lands in its rollup when that completes.
    assert_eq!(store.roll_up(after(T0 + 2 * HOUR + 5 * MIN)).await.unwrap(), stats(1, 0, 0));
    let last = series(&store, "web-01", T0 + 2 * HOUR, T0 + 2 * HOUR + 5 * MIN, Resolution::FiveMinutes).await;
    assert_eq!(last, vec![SeriesPoint { at_ms: T0 + 2 * HOUR, avg: 7.0, min: 7.0, max: 7.0 }]);
}

async fn roll_up_twice_changes_nothing(db: TestDb) {
    let store = db.connect().await;
    // An hour and a half: 18 buckets, hour 0 complete and hour 1 partial (no more samples come).
    insert(&store, "web-01", &cpu_reports(T0, T0 + 90 * MIN)).await;
    assert_eq!(store.roll_up(after(T0 + 3 * HOUR)).await.unwrap(), stats(18, 2, 0));
    let once = rollup_rows(&db).await;
    assert_eq!(once.len(), 20);
    assert_eq!(store.roll_up(after(T0 + 3 * HOUR)).await.unwrap(), stats(0, 0, 0));
    // Later, with no new samples: still the same rows.
    assert_eq!(store.roll_up(after(T0 + 4 * HOUR)).await.unwrap(), stats(0, 0, 0));
    assert_eq!(rollup_rows(&db).await, once);
    // A late report aggregates its bucket again; the same report sent again changes nothing.
    insert(&store, "web-01", &[cpu(T0 + 1, 0.0)]).await;
    assert_eq!(store.roll_up(after(T0 + 4 * HOUR)).await.unwrap(), stats(1, 1, 1));
    let with_late = rollup_rows(&db).await;
    assert_ne!(with_late, once);
    insert(&store, "web-01", &[cpu(T0 + 1, 0.0)]).await;
    assert_eq!(store.roll_up(after(T0 + 4 * HOUR)).await.unwrap(), stats(1, 1, 1));
    assert_eq!(rollup_rows(&db).await, with_late);
}

async fn roll_up_resumes_from_its_watermark_after_a_restart(db: TestDb) {
    let store = db.connect().await;
    insert(&store, "web-01", &cpu_reports(T0, T0 + 30 * MIN)).await;
    assert_eq!(store.roll_up(after(T0 + 30 * MIN)).await.unwrap(), stats(6, 0, 0));
    drop(store);

    // A new process: it rolls up only what came since, and completes the hour from both.
    let store = db.connect().await;
    insert(&store, "web-01", &cpu_reports(T0 + 30 * MIN, T0 + HOUR)).await;
    assert_eq!(store.roll_up(after(T0 + HOUR)).await.unwrap(), stats(6, 1, 0));
    assert_eq!(series(&store, "web-01", T0, T0 + HOUR, Resolution::Hour).await, vec![cpu_point(T0, 0, 11)]);
    let fives = series(&store, "web-01", T0, T0 + HOUR, Resolution::FiveMinutes).await;
    assert_eq!(fives, (0..12).map(|b| cpu_point(T0 + b * 5 * MIN, b, b)).collect::<Vec<_>>());
}

async fn prune_keeps_what_is_not_rolled_up_and_refuses_older_reports(db: TestDb) {
    let store = db.connect().await;
    let retention = SampleRetention { raw_ms: 30 * MIN, five_min_ms: HOUR, hour_ms: 24 * HOUR };
    // Nothing rolled up yet: nothing may go, however old.
    insert(&store, "web-01", &cpu_reports(T0, T0 + 2 * HOUR)).await;
    assert_eq!(store.prune_samples(T0 + 30 * 24 * HOUR, &retention).await.unwrap(), 0);

    assert_eq!(store.roll_up(after(T0 + HOUR)).await.unwrap(), stats(12, 1, 0));
    // A late report in bucket 0 waits to be aggregated again: its bucket's raw samples stay.
    insert(&store, "web-01", &[cpu(T0 + 2 * MIN + 1, 0.0)]).await;
    assert_eq!(store.prune_samples(T0 + 2 * HOUR, &retention).await.unwrap(), 0);
    assert_eq!(store.roll_up(after(T0 + HOUR)).await.unwrap(), stats(1, 1, 1));

    // Raw samples before the 5-minute watermark (T0 + 1 h) go — not the un-rolled ones in
    // [T0 + 1 h, T0 + 1.5 h), although older than 30 minutes — and the 5-minute rollups of
    // hour 0, which is rolled into its hour.
    assert_eq!(store.prune_samples(T0 + 2 * HOUR, &retention).await.unwrap(), 721 + 12);
    let raw = store.raw_samples("shop", "web-01", T0, T0 + 2 * HOUR).await.unwrap();
    assert_eq!((raw.len(), raw[0].0), (720, T0 + HOUR));
    let fives = series(&store, "web-01", T0, T0 + 2 * HOUR, Resolution::FiveMinutes).await;
    assert_eq!(fives.first().map(|p| p.at_ms), Some(T0 + HOUR), "hour 0 has no 5-minute data left");
    let hours = series(&store, "web-01", T0, T0 + 2 * HOUR, Resolution::Hour).await;
    let hour_zero = cpu_point(T0, 0, 11);
    let hour_zero = SeriesPoint { avg: hour_zero.avg * 720.0 / 721.0, min: 0.0, ..hour_zero };
    assert_eq!(hours, vec![hour_zero, cpu_point(T0 + HOUR, 12, 23)]);

    // A report older than the pruned raw samples is not stored: its bucket cannot be whole again.
    insert(&store, "web-01", &[cpu(T0 + 30 * MIN + 1, 5.0)]).await;
    assert!(store.raw_samples("shop", "web-01", T0, T0 + HOUR).await.unwrap().is_empty());
    assert_eq!(store.roll_up(after(T0 + HOUR)).await.unwrap(), stats(0, 0, 0));

    // A day later everything is rolled up: raw and 5-minute data go by age, hourly rollups
    // older than a day too.
    assert_eq!(store.roll_up(after(T0 + 2 * HOUR)).await.unwrap(), stats(12, 1, 0));
    assert_eq!(store.prune_samples(T0 + 24 * HOUR + 90 * MIN, &retention).await.unwrap(), 720 + 12 + 1);
    assert!(store.raw_samples("shop", "web-01", T0, T0 + 3 * HOUR).await.unwrap().is_empty());
    assert_eq!(series(&store, "web-01", T0, T0 + 3 * HOUR, Resolution::Hour).await, vec![cpu_point(T0 + HOUR, 12, 23)]);
}

async fn server_state_keeps_the_newest_report(db: TestDb) {
    let store = db.connect().await;
    assert!(store.load_server_states().await.unwrap().is_empty());
    let (web_old, web_new, db_new) = (cpu(T0, 1.0), cpu(T0 + 5 * SEC, 2.0), cpu(T0 + 3 * SEC, 3.0));
    let batch = [
        StoredReport { project: "shop", server: "web-01", report: &web_new },
        StoredReport { project: "shop", server: "web-01", report: &web_old },
        StoredReport { project: "shop", server: "db-01", report: &db_new },
    ];
    store.insert_reports(&batch).await.unwrap();
    let states = store.load_server_states().await.unwrap();
    let summary: Vec<(&str, &str, i64)> = states.iter().map(|s| (s.project.as_str(), s.server.as_str(), s.last_report_ms)).collect();
    assert_eq!(summary, vec![("shop", "db-01", T0 + 3 * SEC), ("shop", "web-01", T0 + 5 * SEC)]);
    assert_eq!(states[1].report, web_new, "the whole report, with facts and processes");

    // An older report arriving later (a backlog) does not replace it; a newer one does.
    store.insert_reports(&[StoredReport { project: "shop", server: "web-01", report: &cpu(T0 + 4 * SEC, 9.0) }]).await.unwrap();
    assert_eq!(store.load_server_states().await.unwrap()[1].report, web_new);
    let newest = cpu(T0 + 10 * SEC, 4.0);
    store.insert_reports(&[StoredReport { project: "shop", server: "web-01", report: &newest }]).await.unwrap();
    assert_eq!(db.connect().await.load_server_states().await.unwrap()[1].report, newest, "kept across a restart");
}

async fn no_subject_gives_the_worst_subject(db: TestDb) {
    let store = db.connect().await;
    // "/" fills up from 40 % while "/home" stays at 50 %.
    let reports: Vec<Report> = (0..120)
        .map(|i| {
            let at = T0 + i * 5 * SEC;
            report(at, vec![value("disk.usage", Some("/"), 40.0 + i as f64 / 4.0), value("disk.usage", Some("/home"), 50.0)])
        })
        .collect();
    insert(&store, "web-01", &reports).await;
    let disk = |subject, resolution| store.metric_series("shop", "web-01", "disk.usage", subject, T0, T0 + 10 * MIN, resolution);

    let worst = disk(None, Resolution::Raw).await.unwrap();
    assert_eq!(worst[0], SeriesPoint { at_ms: T0, avg: 50.0, min: 50.0, max: 50.0 });
    assert_eq!(worst[119], SeriesPoint { at_ms: T0 + 595 * SEC, avg: 69.75, min: 69.75, max: 69.75 });
    let root = disk(Some("/"), Resolution::Raw).await.unwrap();
    assert_eq!(root[0], SeriesPoint { at_ms: T0, avg: 40.0, min: 40.0, max: 40.0 });

    // Per statistic: bucket 0 of "/" runs 40 … 54.75 (avg 47.375), of "/home" 50 throughout.
    assert_eq!(store.roll_up(after(T0 + 10 * MIN)).await.unwrap(), stats(2, 0, 0));
    let worst = disk(None, Resolution::FiveMinutes).await.unwrap();
    assert_eq!(
        worst,
        vec![
            SeriesPoint { at_ms: T0, avg: 50.0, min: 50.0, max: 54.75 },
            SeriesPoint { at_ms: T0 + 5 * MIN, avg: 62.375, min: 55.0, max: 69.75 },
        ]
    );
    let home = disk(Some("/home"), Resolution::FiveMinutes).await.unwrap();
    assert!(home.iter().all(|p| (p.avg, p.min, p.max) == (50.0, 50.0, 50.0)) && home.len() == 2);
    assert!(disk(Some("/var"), Resolution::FiveMinutes).await.unwrap().is_empty());
}

async fn each_subject_has_its_own_series_from_one_read(db: TestDb) {
    let store = db.connect().await;
    // Two hours and a half of reports: two mounts, two interfaces, a host-wide metric and one
    // not asked for; then the first two hours rolled up, the rest still raw.
    let reports: Vec<Report> = (0..1_800)
        .map(|i| {
            let at = T0 + i * 5 * SEC;
            let x = i as f64;
            report(
                at,
                vec![
                    value("cpu.usage", None, 10.0),
                    value("load.1", None, x / 100.0),
                    value("disk.usage", Some("/"), 40.0 + x / 100.0),
                    value("disk.usage", Some("/home"), 50.0),
                    value("network.in_bps", Some("eth0"), x),
                    value("network.in_bps", Some("lo"), 2.0 * x),
                ],
            )
        })
        .collect();
    insert(&store, "web-01", &reports).await;
    store.roll_up(after(T0 + 2 * HOUR)).await.unwrap();
    let names = ["network.in_bps", "disk.usage", "load.1"];
    for (from, to, resolution) in [
        (T0 + 2 * HOUR, T0 + 3 * HOUR, Resolution::Raw),
        (T0, T0 + 3 * HOUR, Resolution::FiveMinutes),
        (T0, T0 + 3 * HOUR, Resolution::Hour),
    ] {
        let found = store.subject_series("shop", "web-01", &names, from, to, resolution).await.unwrap();
        let keys: Vec<(&str, Option<&str>)> = found.iter().map(|s| (s.name, s.subject.as_deref())).collect();
        assert_eq!(
            keys,
            [
                ("network.in_bps", Some("eth0")),
                ("network.in_bps", Some("lo")),
                ("disk.usage", Some("/")),
                ("disk.usage", Some("/home")),
                ("load.1", None)
            ],
            "{resolution:?}: in the order asked, then by subject; cpu.usage was not asked for"
        );
        // Each is the series of its own subject, point for point.
        for SubjectSeries { name, subject, points } in &found {
            let one = store.metric_series("shop", "web-01", name, subject.as_deref(), from, to, resolution).await.unwrap();
            assert!(!one.is_empty(), "{name} {subject:?} {resolution:?}");
            assert_eq!(points, &one, "{name} {subject:?} {resolution:?}");
        }
    }
    assert!(store.subject_series("shop", "web-01", &names, T0 - HOUR, T0, Resolution::Raw).await.unwrap().is_empty());
}

async fn a_report_without_metrics_is_stored_without_values(db: TestDb) {
    let store = db.connect().await;
    let empty = report(T0, Vec::new());
    store.insert_reports(&[StoredReport { project: "shop", server: "web-01", report: &empty }]).await.unwrap();
    assert_eq!(store.raw_samples("shop", "web-01", T0, T0 + 1).await.unwrap(), vec![(T0, Vec::new())]);
    assert!(series(&store, "web-01", T0, T0 + MIN, Resolution::Raw).await.is_empty());
    assert_eq!(store.load_server_states().await.unwrap()[0].report, empty);
    // No values, no rollup row.
    assert_eq!(store.roll_up(after(T0 + 5 * MIN)).await.unwrap(), stats(0, 0, 0));
    assert!(rollup_rows(&db).await.is_empty());
    store.insert_reports(&[]).await.unwrap();
}

async fn non_finite_values_are_refused_and_huge_sums_saturate(db: TestDb) {
    let store = db.connect().await;
    let good = cpu(T0, 1.0);
    for bad in [cpu(T0 + 5 * SEC, f64::NAN), cpu(T0 + 5 * SEC, f64::INFINITY), cpu(T0 + 5 * SEC, f64::NEG_INFINITY)] {
        let batch = [
            StoredReport { project: "shop", server: "web-01", report: &good },
            StoredReport { project: "shop", server: "web-01", report: &bad },
        ];
        let err = store.insert_reports(&batch).await.unwrap_err();
        assert!(matches!(&err, StoreError::Refused(m) if m.contains("cpu.usage")), "{err}");
    }
    let mut bad_process = cpu(T0 + 5 * SEC, 1.0);
    bad_process.processes[0].cpu = Some(f64::NAN);
    let err = store.insert_reports(&[StoredReport { project: "shop", server: "web-01", report: &bad_process }]).await.unwrap_err();
    assert!(matches!(&err, StoreError::Refused(m) if m.contains("process 42")), "{err}");
    // The whole batch was refused: nothing of it is stored.
    assert!(store.raw_samples("shop", "web-01", T0, T0 + HOUR).await.unwrap().is_empty());
    assert!(store.load_server_states().await.unwrap().is_empty());

    // The largest finite values are stored; their sum saturates instead of becoming infinite.
    insert(&store, "web-01", &[cpu(T0, f64::MAX), cpu(T0 + 5 * SEC, f64::MAX)]).await;
    assert_eq!(store.roll_up(after(T0 + 5 * MIN)).await.unwrap(), stats(1, 0, 0));
    let points = series(&store, "web-01", T0, T0 + 5 * MIN, Resolution::FiveMinutes).await;
    assert_eq!(points, vec![SeriesPoint { at_ms: T0, avg: f64::MAX / 2.0, min: f64::MAX, max: f64::MAX }]);
}

async fn a_report_sent_twice_is_stored_once(db: TestDb) {
    let store = db.connect().await;
    let (first, second) = (cpu(T0, 10.0), cpu(T0 + 5 * SEC, 20.0));
    insert(&store, "web-01", &[first.clone(), second]).await;
    // The agent did not see the answer and sends the first again, alone and within a batch.
    insert(&store, "web-01", std::slice::from_ref(&first)).await;
    insert(&store, "web-01", &[first.clone(), first]).await;
    assert_eq!(store.raw_samples("shop", "web-01", T0, T0 + MIN).await.unwrap().len(), 2);
    store.roll_up(after(T0 + 5 * MIN)).await.unwrap();
    let points = series(&store, "web-01", T0, T0 + 5 * MIN, Resolution::FiveMinutes).await;
    assert_eq!(points, vec![SeriesPoint { at_ms: T0, avg: 15.0, min: 10.0, max: 20.0 }]);
}

async fn a_server_state_that_does_not_decode_is_left_out(db: TestDb) {
    let store = db.connect().await;
    insert(&store, "web-01", &[cpu(T0, 1.0)]).await;
    insert(&store, "web-02", &[cpu(T0, 2.0)]).await;
    execute(&db, "UPDATE server_states SET latest = '{\"not\": \"a report\"}' WHERE server = 'web-01'").await;
    let states = store.load_server_states().await.unwrap();
    assert_eq!(states.iter().map(|s| s.server.as_str()).collect::<Vec<_>>(), vec!["web-02"]);
}

async fn concurrent_roll_ups_agree_with_one(db: TestDb) {
    let store = db.connect().await;
    for server in ["web-01", "web-02", "web-03"] {
        insert(&store, server, &cpu_reports(T0, T0 + 3 * HOUR)).await;
    }
    let other = db.connect().await;
    let (a, b) = tokio::join!(store.roll_up(after(T0 + 3 * HOUR)), other.roll_up(after(T0 + 3 * HOUR)));
    let (a, b) = (a.unwrap(), b.unwrap());
    // Whatever the interleaving, at most one run completes; one more finishes the work, and the
    // rows are those of a single run.
    assert!(a.superseded || b.superseded || a == RollupStats::default() || b == RollupStats::default(), "{a:?} {b:?}");
    store.roll_up(after(T0 + 3 * HOUR)).await.unwrap();
    let rows = rollup_rows(&db).await;
    assert_eq!(rows.len(), 3 * (36 + 3));
    for server in ["web-01", "web-02", "web-03"] {
        let hours = series(&store, server, T0, T0 + 3 * HOUR, Resolution::Hour).await;
        assert_eq!(hours, vec![cpu_point(T0, 0, 11), cpu_point(T0 + HOUR, 12, 23), cpu_point(T0 + 2 * HOUR, 24, 35)]);
    }
}

// ---- daily rollups ----

const DAY: i64 = 24 * HOUR;

/// One report per 5-minute bucket of web-01 over hours [from, to): cpu.usage is the hour's
/// index since T0; disk.usage of /data is 50 but 80 in hour 47 (day 1's last); /old exists only
/// in hours 0 to 10, at the hour's index.
fn daily_reports(from: i64, to: i64) -> Vec<Report> {
    (from * 12..to * 12)
        .map(|slot| {
            let hour = slot / 12;
            let mut metrics =
                vec![value("cpu.usage", None, hour as f64), value("disk.usage", Some("/data"), if hour == 47 { 80.0 } else { 50.0 })];
            if hour <= 10 {
                metrics.push(value("disk.usage", Some("/old"), hour as f64));
            }
            report(T0 + slot * 5 * MIN + SEC, metrics)
        })
        .collect()
}

async fn period(store: &Store, from: i64, to: i64) -> watchkeeper::store::PeriodStats {
    let mut all = store.period_stats("shop", &["web-01".to_string()], from, to, &["cpu.usage", "disk.usage"]).await.expect("period");
    all.pop().expect("one server")
}

fn figures(stats: &watchkeeper::store::PeriodStats, subject: Option<&str>) -> (u64, f64, f64, f64, f64) {
    let name = if subject.is_some() { "disk.usage" } else { "cpu.usage" };
    let s = stats[&(name.to_string(), subject.map(str::to_string))];
    (s.count, s.avg, s.min, s.max, s.last)
}

async fn reports_read_whole_days_from_daily_rollups_with_the_newest_hour_as_last(db: TestDb) {
    let store = db.connect().await;
    insert(&store, "web-01", &daily_reports(0, 50)).await;
    // 50 hours: 600 five-minute buckets, 50 hours, and the two whole UTC days in them.
    assert_eq!(store.roll_up(after(T0 + 50 * HOUR)).await.unwrap(), stats_with_days(600, 50, 2, 0));
    assert_eq!(store.roll_up(after(T0 + 50 * HOUR)).await.unwrap(), stats(0, 0, 0), "nothing twice");

    // Hours 22 to 49: two hours of day 0, day 1 whole, two hours of day 2.
    let offset = period(&store, T0 + 22 * HOUR, T0 + 50 * HOUR).await;
    assert_eq!(figures(&offset, None), (28 * 12, 35.5, 22.0, 49.0, 49.0));
    assert_eq!(figures(&offset, Some("/data")), (28 * 12, (27.0 * 50.0 + 80.0) / 28.0, 50.0, 80.0, 50.0));
    assert!(!offset.contains_key(&("disk.usage".to_string(), Some("/old".to_string()))), "{offset:?}");

    // Two whole days: the newest hour of each series is its last, also for /old, which ended in
    // hour 10 (the day's average is 5, its newest hour 10).
    let days = period(&store, T0, T0 + 2 * DAY).await;
    assert_eq!(figures(&days, None), (48 * 12, 23.5, 0.0, 47.0, 47.0));
    assert_eq!(figures(&days, Some("/data")), (48 * 12, (47.0 * 50.0 + 80.0) / 48.0, 50.0, 80.0, 80.0));
    assert_eq!(figures(&days, Some("/old")), (11 * 12, 5.0, 0.0, 10.0, 10.0));

    // A late report in hour 5 rolls its bucket, hour and day up again.
    insert(&store, "web-01", &[cpu(T0 + 5 * HOUR + 2 * SEC, 1000.0)]).await;
    assert_eq!(store.roll_up(after(T0 + 50 * HOUR)).await.unwrap(), stats_with_days(1, 1, 1, 1));
    let with_late = period(&store, T0, T0 + 2 * DAY).await;
    assert_eq!(figures(&with_late, None), (48 * 12 + 1, (12.0 * 1128.0 + 1000.0) / 577.0, 0.0, 1000.0, 47.0));

    // The whole days come from the daily rows: without the hours behind them, the same figures.
    execute(&db, "DELETE FROM metric_rollups WHERE resolution_ms = 3600000 AND bucket_ms < 1772496000000").await;
    assert_eq!(period(&store, T0, T0 + 2 * DAY).await, with_late);
}

async fn a_database_from_before_daily_rollups_gets_its_days_a_month_a_run(db: TestDb) {
    let store = db.connect().await;
    // 40 days of hourly rollups written by an earlier version, rolled up to their end, with no
    // daily rollup yet; then a report of the next hour.
    insert(&store, "web-01", &[cpu(T0 + 40 * DAY + SEC, 1.0)]).await;
    let url = db.url.clone();
    macro_rules! write_hours {
        ($conn:expr) => {{
            let mut conn = $conn;
            for h in 0..40 * 24 {
                sqlx::query(
                    "INSERT INTO metric_rollups (project, server, resolution_ms, bucket_ms, vals) VALUES ('shop', 'web-01', $1, $2, $3)",
                )
                .bind(HOUR)
                .bind(T0 + h * HOUR)
                .bind(format!("[[\"cpu.usage\",null,12,{},{h}.0,{h}.0]]", 12 * h))
                .execute(&mut conn)
                .await
                .unwrap();
            }
            sqlx::query("UPDATE metric_marks SET value = $1 WHERE name IN ('rolled_5m', 'rolled_1h')")
                .bind(T0 + 40 * DAY)
                .execute(&mut conn)
                .await
                .unwrap();
        }};
    }
    if url.starts_with("sqlite:") {
        write_hours!(SqliteConnection::connect(&url).await.unwrap());
    } else {
        write_hours!(PgConnection::connect(&url).await.unwrap());
    }
    // The first run rolls up the oldest 31 days, the next the other 9; then nothing is left.
    assert_eq!(store.roll_up(after(T0 + 40 * DAY)).await.unwrap(), stats_with_days(0, 0, 31, 0));
    let month = period(&store, T0, T0 + 31 * DAY).await;
    assert_eq!(figures(&month, None), (31 * 24 * 12, (31.0 * 24.0 - 1.0) / 2.0, 0.0, 743.0, 743.0));
    assert_eq!(store.roll_up(after(T0 + 40 * DAY)).await.unwrap(), stats_with_days(0, 0, 9, 0));
    assert_eq!(store.roll_up(after(T0 + 40 * DAY)).await.unwrap(), stats(0, 0, 0));
    let days = rollup_rows(&db).await.into_iter().filter(|row| row.2 == DAY).count();
    assert_eq!(days, 40);
    // Days and hours give one answer: over the 40 days, the mean hour index.
    let all = period(&store, T0, T0 + 40 * DAY).await;
    assert_eq!(figures(&all, None), (40 * 24 * 12, (40.0 * 24.0 - 1.0) / 2.0, 0.0, 959.0, 959.0));
}

// ---- PostgreSQL only ----

/// Several commits of host reports are in flight at once on PostgreSQL, each holding the marks
/// shared until it commits. A raise of `late_before` (roll_up) must wait only for the inserts
/// already in flight: an insert that comes after it waits its turn — and then, reading the
/// raised mark, marks its bucket late — rather than overtaking it, which under a steady load
/// of overlapping inserts would keep the raise (and every roll-up) waiting for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_insert_after_a_waiting_raise_waits_its_turn_and_marks_its_bucket_late() {
    use std::time::Duration;
    let db = TestDb::postgres().await;
    let store = db.connect().await;
    insert(&store, "web-01", &cpu_reports(T0, T0 + 10 * MIN)).await;
    assert_eq!(store.roll_up(after(T0 + 5 * MIN)).await.unwrap(), stats(1, 0, 0));

    // An insert in flight: the marks held as the store's insert holds them, not committed yet.
    let mut in_flight = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut in_flight).await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)").bind(MARKS_QUEUE).execute(&mut in_flight).await.unwrap();
    sqlx::query("SELECT value FROM metric_marks WHERE name IN ('late_before', 'raw_from') FOR SHARE")
        .fetch_all(&mut in_flight)
        .await
        .unwrap();

    // roll_up raises late_before to T0 + 10 min and waits for that insert.
    let rolling = tokio::spawn({
        let store = store.clone();
        async move { store.roll_up(after(T0 + 10 * MIN)).await.unwrap() }
    });
    let mut watch = PgConnection::connect(&db.url).await.unwrap();
    wait_for_lock_waiters(&mut watch, 1).await;

    // A report of minute 7 (bucket 1, which that raise makes late) arrives now.
    let late = tokio::spawn({
        let store = store.clone();
        async move { store.insert_reports(&[StoredReport { project: "shop", server: "web-01", report: &cpu(T0 + 7 * MIN + 1, 1000.0) }]).await }
    });
    // It queues behind the raise instead of going ahead of it.
    loop {
        assert!(!late.is_finished(), "the insert went ahead of the waiting raise: {:?}", late.await);
        if lock_waiters(&mut watch).await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("COMMIT").execute(&mut in_flight).await.unwrap();
    late.await.unwrap().unwrap();
    rolling.await.unwrap();
    // The report was of a bucket already rolled up: counted there by this roll-up or the next.
    store.roll_up(after(T0 + 10 * MIN)).await.unwrap();
    let bucket_one = series(&store, "web-01", T0 + 5 * MIN, T0 + 10 * MIN, Resolution::FiveMinutes).await;
    assert_eq!(bucket_one.iter().map(|p| p.max).collect::<Vec<_>>(), [1000.0], "{bucket_one:?}");
}

/// The advisory lock the store queues writers of the metric marks behind ("wkmarks" and 1).
const MARKS_QUEUE: i64 = i64::from_be_bytes(*b"wkmarks\x01");

/// How many sessions of this database wait for an advisory lock.
async fn lock_waiters(conn: &mut PgConnection) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(conn)
    .await
    .unwrap();
    n
}

async fn wait_for_lock_waiters(conn: &mut PgConnection, n: i64) {
    while lock_waiters(conn).await < n {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
