//! Benchmark: the monthly report of a project of `WK_BENCH_SERVERS` (1 000) servers with a month
//! of rollups, against its target (README, "Performance targets") — ≤ 2 s on SQLite.
//!
//! Run with `cargo bench --bench reports`. It prints figures and asserts nothing about time.
//!
//! Per backend (a SQLite file in a temporary directory; a PostgreSQL database
//! `wk_bench_reports_<pid>` created on `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, and dropped after): writes March 2026 in Asia/Seoul
//! (744 hours) of hourly rollups for every server, each row with 36 series as an agent reports
//! them (17 host-wide, 2 mounts, 1 disk, 1 interface), marks them rolled up, rolls their UTC days
//! up as serve does (timed: the cost of a month's days at once; serve rolls one day a day), then
//! builds the monthly summary and the monthly application report `WK_BENCH_RUNS` (3) times each
//! and prints the median time and the peak memory the process grew by while building one (VmHWM
//! after resetting it through /proc/self/clear_refs).

mod common;

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, QueryBuilder};
use watchkeeper::config::{Library, load_dir, model::Project};
use watchkeeper::report::{self, Kind, Period, Request};
use watchkeeper::store::Store;

use common::{Spread, env_u64, ms, verdict};

const TARGET: Duration = Duration::from_secs(2);
const HOUR: i64 = 3_600_000;
/// 2026-03-01T00:00:00+09:00.
const MONTH_START: i64 = 1_772_290_800_000;
const HOURS: i64 = 31 * 24;
const ROWS_PER_INSERT: usize = 500;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let servers = env_u64("WK_BENCH_SERVERS", 1_000).max(1) as usize;
    let runs = env_u64("WK_BENCH_RUNS", 3).max(1) as usize;
    let tmp = tempfile::Builder::new().prefix("wk-bench-reports-").tempdir().expect("temporary directory");
    let project = project(tmp.path(), servers);
    println!(
        "reports: monthly report of {servers} servers, {HOURS} hourly rollups each with {} series",
        vals(0, 0).matches("],[").count() + 1
    );

    let sqlite = format!("sqlite://{}", tmp.path().join("wk.db").display());
    bench_backend("SQLite", &sqlite, &project, runs).await;

    common::on_throwaway_postgres("reports", |url| async move { bench_backend("PostgreSQL", &url, &project, runs).await }).await;
}

/// A tree of one project in Asia/Seoul with `servers` servers, compiled.
fn project(dir: &std::path::Path, servers: usize) -> Project {
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).expect("tree directory");
    let mut yaml = String::from(
        "kind: User\nemail: ops@example.com\nname: Ops\n---\nkind: Project\nname: shop\ntimezone: Asia/Seoul\nmembers: [{ user: ops@example.com, role: admin }]\n",
    );
    for i in 0..servers {
        yaml.push_str(&format!("---\nkind: Server\nname: srv-{i:04}\nproject: shop\nhost: 10.0.{}.{}\nos: linux\n", i / 250, i % 250 + 1));
    }
    std::fs::write(tree.join("tree.yaml"), yaml).expect("write the tree");
    let loaded = load_dir(&tree, &Library::Builtin);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.config.projects["shop"].clone()
}

/// One hourly rollup's `vals`: 12 samples an hour (one per 5 minutes), values varying by server
/// and hour.
fn vals(server: usize, hour: i64) -> String {
    let v = ((server as i64 * 7 + hour * 13) % 90) as f64 + 0.5;
    let entry = |name: &str, subject: Option<&str>| {
        let subject = subject.map_or("null".to_string(), |s| format!("\"{s}\""));
        format!("[\"{name}\",{subject},12,{},{},{}]", v * 12.0, v - 0.5, v + 0.5)
    };
    let mut entries = Vec::new();
    for name in [
        "cpu.idle",
        "cpu.iowait",
        "cpu.irq",
        "cpu.nice",
        "cpu.softirq",
        "cpu.steal",
        "cpu.system",
        "cpu.usage",
        "cpu.user",
        "load.1",
        "load.15",
        "load.5",
        "memory.available",
        "memory.free",
        "memory.page_faults",
        "memory.usage",
        "swap.usage",
    ] {
        entries.push(entry(name, None));
    }
    for mount in ["/", "/data"] {
        for name in ["disk.free_bytes", "disk.usage", "disk.used_bytes"] {
            entries.push(entry(name, Some(mount)));
        }
    }
    for name in ["disk.io", "disk.iops", "disk.queue", "disk.read_bps", "disk.write_bps"] {
        entries.push(entry(name, Some("sda")));
    }
    for name in [
        "network.in_bps",
        "network.in_drops",
        "network.in_errors",
        "network.in_pps",
        "network.out_bps",
        "network.out_drops",
        "network.out_errors",
        "network.out_pps",
    ] {
        entries.push(entry(name, Some("eth0")));
    }
    entries.sort();
    format!("[{}]", entries.join(","))
}

/// Write the month of hourly rollups and mark everything up to its end rolled up.
async fn fill(url: &str, servers: usize) {
    macro_rules! fill_on {
        ($conn:expr) => {{
            let mut conn = $conn;
            let rows: Vec<(usize, i64)> = (0..servers).flat_map(|s| (0..HOURS).map(move |h| (s, h))).collect();
            for chunk in rows.chunks(ROWS_PER_INSERT * 20) {
                let mut tx = conn.begin().await.expect("begin");
                for part in chunk.chunks(ROWS_PER_INSERT) {
                    let mut insert = QueryBuilder::new("INSERT INTO metric_rollups (project, server, resolution_ms, bucket_ms, vals) ");
                    insert.push_values(part, |mut row, &(s, h)| {
                        row.push_bind("shop")
                            .push_bind(format!("srv-{s:04}"))
                            .push_bind(HOUR)
                            .push_bind(MONTH_START + h * HOUR)
                            .push_bind(vals(s, h));
                    });
                    insert.build().execute(&mut *tx).await.expect("insert rollups");
                }
                tx.commit().await.expect("commit");
            }
            let end = MONTH_START + HOURS * HOUR;
            sqlx::query("UPDATE metric_marks SET value = $1 WHERE name IN ('rolled_5m', 'rolled_1h')")
                .bind(end)
                .execute(&mut conn)
                .await
                .expect("marks");
            // Servers that reported, last in the month's final hour (roll-ups go by these).
            for part in (0..servers).collect::<Vec<_>>().chunks(ROWS_PER_INSERT) {
                let mut insert =
                    QueryBuilder::new("INSERT INTO server_states (project, server, last_report_ms, boot_time, facts, latest) ");
                insert.push_values(part, |mut row, &s| {
                    row.push_bind("shop")
                        .push_bind(format!("srv-{s:04}"))
                        .push_bind(end - 1)
                        .push_bind(0_i64)
                        .push_bind("{}")
                        .push_bind("{}");
                });
                insert.build().execute(&mut conn).await.expect("insert server states");
            }
        }};
    }
    if url.starts_with("sqlite:") {
        fill_on!(sqlx::SqliteConnection::connect(url).await.expect("connect"));
    } else {
        fill_on!(PgConnection::connect(url).await.expect("connect"));
    }
}

/// VmHWM of this process, in KiB, after resetting it to the current RSS.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_kib() -> u64 {
    common::rss_kib(std::process::id()).map_or(0, |(_, hwm)| hwm)
}

async fn bench_backend(label: &str, url: &str, project: &Project, runs: usize) {
    let store = Store::connect(url).await.unwrap_or_else(|e| panic!("{label}: {e}"));
    println!();
    println!("{label}");
    let started = Instant::now();
    fill(url, project.servers.len()).await;
    println!("  wrote {} rollup rows in {}", project.servers.len() as i64 * HOURS, ms(started.elapsed()));

    let now_ms = MONTH_START + 40 * 24 * HOUR;
    let started = Instant::now();
    let mut days = 0;
    loop {
        let rolled = store.roll_up(now_ms).await.unwrap_or_else(|e| panic!("{label}: roll-up: {e}"));
        if rolled.day_rows == 0 {
            break;
        }
        days += rolled.day_rows;
    }
    println!("  rolled the hours up into {days} daily rollup rows in {}", ms(started.elapsed()));

    for kind in [Kind::Summary, Kind::App] {
        let mut times = Vec::new();
        let mut grew_kib = 0;
        for _ in 0..runs {
            reset_peak();
            let before = common::rss_kib(std::process::id()).map_or(0, |(rss, _)| rss);
            let started = Instant::now();
            let date = Some(report::parse_date("2026-03-01").expect("date"));
            let built = report::build(&store, Request { project, period: Period::Monthly, kind, date, now_ms }).await.expect("report");
            times.push(started.elapsed());
            grew_kib = grew_kib.max(peak_kib().saturating_sub(before));
            std::hint::black_box(built);
        }
        let spread = Spread::of(&times);
        let target =
            if label == "SQLite" { format!("   [target ≤ {}: {}]", ms(TARGET), verdict(spread.median <= TARGET)) } else { String::new() };
        println!("  monthly {kind:<7}: {spread}; peak memory +{:.1} MB{target}", grew_kib as f64 / 1024.0);
    }
    store.close().await;
}
