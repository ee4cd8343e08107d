//! Benchmark: host-metric storage at the store's API, against its target (README, "Performance targets") — ≥ 2 000 reports/s of
//! 100 metrics ingested on SQLite — and the chart queries the server pages make.
//!
//! Run with `cargo bench --bench samples`. It prints figures and asserts nothing about time.
//!
//! Per backend (a SQLite file in a temporary directory; a PostgreSQL database `wk_bench_samples_<pid>`
//! created on `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`, and dropped after):
//! 1. insert: `WK_BENCH_REPORTS` (12 000) reports from `WK_BENCH_SERVERS` (1 000) servers, each of
//!    exactly 100 metric values (5 mounts, 4 disks, 6 interfaces) and `WK_BENCH_PROCESSES` (50)
//!    processes, one `insert_reports` transaction per batch of 50, 100 and 200 reports, one
//!    after another as the collector's single writer commits them; then `roll_up` over what
//!    that stored;
//! 2. charts: one server with 30 days of hourly rollups, 24 h of 5-minute rollups and 1 h of
//!    raw samples (made through insert_reports, roll_up and prune_samples: one report per
//!    5 minutes for 30 days, every 5 s in the last hour), its rollups copied to
//!    `WK_BENCH_CHART_SERVERS` (200) other servers so the tables are not trivially small;
//!    then the median of `WK_BENCH_QUERIES` (20) `metric_series` calls over 30 days (hourly
//!    points), 24 h (5-minute points) and 1 h (raw points).

mod common;

use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use watchkeeper::protocol::{Facts, MetricValue, ProcessInfo, Report};
use watchkeeper::store::{GRACE_MS, Resolution, SampleRetention, Store, StoredReport};

use common::{Spread, env_u64, ms, verdict};

const TARGET_REPORTS_PER_S: f64 = 2_000.0;
/// 2026-03-01T00:00:00Z: the simulated now of the charts.
const T0: i64 = 1_772_323_200_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// When the inserted reports start: before the charted history, so that is not late.
const INSERT_T0: i64 = T0 - 31 * DAY;
/// The server whose charts are timed.
const CHARTED: &str = "charted";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run());
}

struct Settings {
    reports: usize,
    servers: usize,
    processes: usize,
    chart_servers: usize,
    queries: usize,
}

async fn run() {
    let settings = Settings {
        reports: env_u64("WK_BENCH_REPORTS", 12_000) as usize,
        servers: env_u64("WK_BENCH_SERVERS", 1_000).max(1) as usize,
        processes: env_u64("WK_BENCH_PROCESSES", 50) as usize,
        chart_servers: env_u64("WK_BENCH_CHART_SERVERS", 200) as usize,
        queries: env_u64("WK_BENCH_QUERIES", 20).max(1) as usize,
    };
    let sample = report(0, 0, settings.processes);
    println!(
        "samples: {} reports from {} servers, {} metric values and {} processes each (report JSON {} bytes); {} CPUs",
        settings.reports,
        settings.servers,
        sample.metrics.len(),
        settings.processes,
        serde_json::to_string(&sample).map_or(0, |s| s.len()),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let tmp = tempfile::Builder::new().prefix("wk-bench-samples-").tempdir().expect("temporary directory");
    let sqlite = format!("sqlite://{}", tmp.path().join("wk.db").display());
    bench_backend("SQLite", &sqlite, &settings).await;

    common::on_throwaway_postgres("samples", |url| async move { bench_backend("PostgreSQL", &url, &settings).await }).await;
}

async fn bench_backend(label: &str, url: &str, settings: &Settings) {
    let store = Store::connect(url).await.unwrap_or_else(|e| panic!("{label}: {e}"));
    println!();
    println!("{label}");

    // 1. Insert throughput, then rolling up what it stored.
    let mut next = 0;
    for batch_size in [50, 100, 200] {
        let (rate, per_batch) = insert_run(&store, settings, batch_size, &mut next).await;
        let target = if label == "SQLite" {
            format!(" [target ≥ {TARGET_REPORTS_PER_S:.0}: {}]", verdict(rate >= TARGET_REPORTS_PER_S))
        } else {
            String::new()
        };
        println!("  insert, {batch_size:>3} reports per transaction: {rate:>7.0} reports/s; per transaction {per_batch}{target}");
    }
    let stored_until = INSERT_T0 + (next / settings.servers) as i64 * 5_000;
    let started = Instant::now();
    let stats = store.roll_up(stored_until + 5 * MIN + GRACE_MS).await.expect("roll_up");
    let took = started.elapsed();
    println!(
        "  roll_up of those {next} raw samples: {} ({:.1} µs per sample); {} 5-minute and {} hourly rows written",
        ms(took),
        took.as_secs_f64() * 1e6 / next.max(1) as f64,
        stats.five_minute_rows,
        stats.hour_rows
    );

    // 2. Charts.
    let now = fill_charted(&store, url, settings).await;
    for (range, resolution) in [(30 * DAY, Resolution::Hour), (DAY, Resolution::FiveMinutes), (HOUR, Resolution::Raw)] {
        let mut times = Vec::with_capacity(settings.queries);
        let mut points = 0;
        for _ in 0..settings.queries {
            let started = Instant::now();
            let series = store.metric_series("shop", CHARTED, "cpu.usage", None, now - range, now, resolution).await.expect("series");
            times.push(started.elapsed());
            points = series.len();
        }
        let worst = store.metric_series("shop", CHARTED, "disk.usage", None, now - range, now, resolution).await.expect("series");
        println!(
            "  chart {:>7} ({resolution:?}, {points} points; disk.usage worst mount {} points): {}",
            label_range(range),
            worst.len(),
            Spread::of(&times)
        );
    }
    drop(store);
}

fn label_range(range: i64) -> String {
    if range >= DAY { format!("{} days", range / DAY) } else { format!("{} h", range / HOUR) }
}

/// Insert `settings.reports` reports in batches of `batch_size`; reports/s and the spread of one
/// transaction. Reports are built outside the timed part.
async fn insert_run(store: &Store, settings: &Settings, batch_size: usize, next: &mut usize) -> (f64, Spread) {
    let mut busy = Duration::ZERO;
    let mut per_batch = Vec::new();
    let mut done = 0;
    while done < settings.reports {
        let count = batch_size.min(settings.reports - done);
        let reports: Vec<(String, Report)> = (*next..*next + count)
            .map(|n| {
                let server = n % settings.servers;
                (format!("srv-{server:05}"), report(INSERT_T0 + (n / settings.servers) as i64 * 5_000, n, settings.processes))
            })
            .collect();
        let batch: Vec<StoredReport> =
            reports.iter().map(|(server, report)| StoredReport { project: "shop", server: server.as_str(), report }).collect();
        let started = Instant::now();
        store.insert_reports(&batch).await.expect("insert_reports");
        let took = started.elapsed();
        busy += took;
        per_batch.push(took);
        done += count;
        *next += count;
    }
    (settings.reports as f64 / busy.as_secs_f64(), Spread::of(&per_batch))
}

/// The charted server's history (see the module docs) and copies of its rollups for other
/// servers; returns the simulated now.
async fn fill_charted(store: &Store, url: &str, settings: &Settings) -> i64 {
    let started = Instant::now();
    let start = T0 - 30 * DAY;
    let now = T0;
    let history: Vec<Report> = (start..now - HOUR)
        .step_by(5 * MIN as usize)
        .chain((now - HOUR..now).step_by(5_000))
        .enumerate()
        .map(|(n, at)| report(at, n, settings.processes))
        .collect();
    for chunk in history.chunks(200) {
        let batch: Vec<StoredReport> = chunk.iter().map(|report| StoredReport { project: "shop", server: CHARTED, report }).collect();
        store.insert_reports(&batch).await.expect("insert history");
    }
    let stats = store.roll_up(now).await.expect("roll_up history");
    let retention = SampleRetention { raw_ms: HOUR, five_min_ms: DAY, ..SampleRetention::default() };
    let pruned = store.prune_samples(now, &retention).await.expect("prune history");
    let filled = started.elapsed();

    let started = Instant::now();
    let copy = "INSERT INTO metric_rollups (project, server, resolution_ms, bucket_ms, vals)
        SELECT project, $1, resolution_ms, bucket_ms, vals FROM metric_rollups WHERE project = 'shop' AND server = 'charted'";
    if url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(url).await.expect("SQLite connection");
        for i in 0..settings.chart_servers {
            sqlx::query(copy).bind(format!("other-{i:04}")).execute(&mut conn).await.expect("copy rollups");
        }
    } else {
        let mut conn = PgConnection::connect(url).await.expect("PostgreSQL connection");
        for i in 0..settings.chart_servers {
            sqlx::query(copy).bind(format!("other-{i:04}")).execute(&mut conn).await.expect("copy rollups");
        }
        conn.execute("VACUUM ANALYZE metric_rollups").await.expect("analyze");
    }
    println!(
        "  chart data: {} reports of `{CHARTED}` rolled up into {} 5-minute and {} hourly rows and pruned ({} rows) in {}; copied to {} servers in {}",
        history.len(),
        stats.five_minute_rows,
        stats.hour_rows,
        pruned,
        ms(filled),
        settings.chart_servers,
        ms(started.elapsed())
    );
    now
}

/// A report as an agent on a machine with 5 mounts, 4 disks and 6 interfaces sends it: exactly
/// 100 metric values with realistic magnitudes and full-precision fractions, and `processes`
/// processes. `n` varies the values.
fn report(at_ms: i64, n: usize, processes: usize) -> Report {
    let mut seed = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |scale: f64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64 * scale
    };
    let mut metrics = Vec::with_capacity(100);
    let host = [
        ("cpu.usage", 100.0),
        ("cpu.iowait", 10.0),
        ("cpu.steal", 2.0),
        ("cpu.irq", 1.0),
        ("cpu.softirq", 3.0),
        ("cpu.idle", 100.0),
        ("cpu.user", 80.0),
        ("cpu.system", 20.0),
        ("cpu.nice", 1.0),
        ("load.1", 8.0),
        ("load.5", 8.0),
        ("load.15", 8.0),
        ("memory.usage", 100.0),
        ("memory.available", 100.0),
        ("memory.free", 100.0),
        ("swap.usage", 30.0),
        ("memory.page_faults", 50_000.0),
    ];
    for (name, scale) in host {
        metrics.push(MetricValue { name, subject: None, value: next(scale) });
    }
    for mount in ["/", "/boot", "/var", "/home", "/data"] {
        for (name, scale) in [("disk.usage", 100.0), ("disk.used_bytes", 5e11), ("disk.free_bytes", 5e11)] {
            metrics.push(MetricValue { name, subject: Some(mount.to_string()), value: next(scale).round() });
        }
    }
    for device in ["sda", "sdb", "nvme0n1", "nvme1n1"] {
        for (name, scale) in
            [("disk.io", 100.0), ("disk.iops", 5_000.0), ("disk.read_bps", 2e8), ("disk.write_bps", 2e8), ("disk.queue", 4.0)]
        {
            metrics.push(MetricValue { name, subject: Some(device.to_string()), value: next(scale) });
        }
    }
    for iface in ["eth0", "eth1", "bond0", "docker0", "ens3", "wg0"] {
        for (name, scale) in [
            ("network.in_bps", 1e9),
            ("network.out_bps", 1e9),
            ("network.in_pps", 1e5),
            ("network.out_pps", 1e5),
            ("network.in_errors", 1.0),
            ("network.out_errors", 1.0),
            ("network.in_drops", 5.0),
            ("network.out_drops", 5.0),
        ] {
            metrics.push(MetricValue { name, subject: Some(iface.to_string()), value: next(scale) });
        }
    }
    assert_eq!(metrics.len(), 100, "a report of exactly 100 metric values");
    const NAMES: [&str; 8] = ["nginx", "postgres", "java", "node", "sshd", "systemd", "containerd", "python3"];
    let processes = (0..processes)
        .map(|p| ProcessInfo {
            pid: 1_000 + p as u32,
            name: NAMES[p % NAMES.len()].to_string(),
            user: if p % 3 == 0 { "root" } else { "www-data" }.to_string(),
            cpu: Some(next(100.0)),
            memory: next(10.0),
            rss_bytes: next(1e9) as u64,
        })
        .collect();
    Report {
        facts: Facts {
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.1.0-18-amd64".into(),
            cpu_vendor: "GenuineIntel".into(),
            cpu_model: "Intel(R) Xeon(R) Gold 6230R CPU @ 2.10GHz".into(),
            cpu_count: 8,
            ram_total_bytes: 33_554_432_000,
            boot_time: 1_771_000_000,
            uptime_secs: 1_323_200,
            ips: vec!["203.0.113.10".parse().expect("IP"), "10.0.0.10".parse().expect("IP")],
        },
        metrics,
        processes,
        process_counts: NAMES.iter().map(|name| (name.to_string(), 3)).collect(),
        skipped_mounts: Vec::new(),
        at_ms,
    }
}
