//! Reports (`reports::sqlite::…`, `reports::postgres::…`): exact figures over a day with a DST
//! change, weekly disk and monthly summaries, an empty month, and the `report` command's output
//! (text, JSON, the golden CSV) and errors.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_json::json;
use watchkeeper::alert::{AlertChange, AlertState, InstanceKey, RuleId, Severity};
use watchkeeper::config::{self, Library, model::Project};
use watchkeeper::protocol::{Facts, MetricValue, Report as HostReport};
use watchkeeper::report::{self, Body, Change, DailyServer, Kind, Period, ReportError, Request};
use watchkeeper::store::{Store, StoredReport};

use crate::common::{repo_root, run};
use crate::store::{TestDb, both_backends};

both_backends!(
    daily_report_over_a_dst_change_has_the_hand_computed_figures,
    weekly_disk_and_monthly_summary_and_app_have_the_hand_computed_figures,
    a_month_without_data_lists_every_server_with_empty_values,
    a_day_starting_on_a_half_hour_reads_five_minute_rollups_at_its_ends,
);

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn at(text: &str) -> i64 {
    text.parse::<Timestamp>().unwrap().as_millisecond()
}

/// 2026-03-29 in Berlin: clocks go from 02:00 to 03:00, so the day has 23 hours.
fn day_start() -> i64 {
    at("2026-03-28T23:00:00Z")
}
fn day_end() -> i64 {
    at("2026-03-29T22:00:00Z")
}
/// After everything written: the reports are complete.
pub(crate) fn later() -> i64 {
    at("2026-04-05T12:00:00Z")
}

pub(crate) fn fixture() -> PathBuf {
    repo_root().join("tests/fixtures/reports")
}

pub(crate) fn shop() -> Project {
    let loaded = config::load_dir(&fixture(), &Library::Builtin);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.config.projects["shop"].clone()
}

fn value(name: &'static str, subject: Option<&str>, value: f64) -> MetricValue {
    MetricValue { name, subject: subject.map(str::to_string), value }
}

fn host_report(at_ms: i64, metrics: Vec<MetricValue>) -> HostReport {
    HostReport {
        facts: Facts::default(),
        metrics,
        processes: Vec::new(),
        process_counts: Default::default(),
        skipped_mounts: Vec::new(),
        at_ms,
    }
}

/// web-01 every 10 minutes from the day before to an hour after the day: the day before CPU 10,
/// memory 20, /data 70; the day CPU 30, memory 40, /data 70, but in its last hour CPU 53, memory
/// 63, /data 80; the hour after, 99 everywhere. `/` is 50, cpu.system 5, disk.io sda 10 and sdb
/// 30, network.in_bps eth0 1000 and eth1 500 throughout. db-01 reports CPU 10 the day before only.
/// cache-01 never reports.
pub(crate) async fn write_samples(store: &Store) {
    let (start, end) = (day_start(), day_end());
    let mut web = Vec::new();
    let mut db = Vec::new();
    let mut t = start - 24 * HOUR;
    while t < end + HOUR {
        let (cpu, memory, data) = if t < start {
            (10.0, 20.0, 70.0)
        } else if t < end - HOUR {
            (30.0, 40.0, 70.0)
        } else if t < end {
            (53.0, 63.0, 80.0)
        } else {
            (99.0, 99.0, 99.0)
        };
        web.push(host_report(
            t,
            vec![
                value("cpu.usage", None, cpu),
                value("memory.usage", None, memory),
                value("disk.usage", Some("/"), 50.0),
                value("disk.usage", Some("/data"), data),
                value("cpu.system", None, 5.0),
                value("disk.io", Some("sda"), 10.0),
                value("disk.io", Some("sdb"), 30.0),
                value("network.in_bps", Some("eth0"), 1000.0),
                value("network.in_bps", Some("eth1"), 500.0),
            ],
        ));
        if t < start {
            db.push(host_report(t, vec![value("cpu.usage", None, 10.0)]));
        }
        t += 10 * MIN;
    }
    let mut batch: Vec<StoredReport> = web.iter().map(|r| StoredReport { project: "shop", server: "web-01", report: r }).collect();
    batch.extend(db.iter().map(|r| StoredReport { project: "shop", server: "db-01", report: r }));
    store.insert_reports(&batch).await.unwrap();
}

async fn alert(store: &Store, server: &str, at_ms: i64, severity: Severity, message: &str, snapshot: serde_json::Value) {
    let key =
        InstanceKey { project: "shop".into(), server: server.into(), rule: RuleId::Metric("cpu.usage".into()), subject: String::new() };
    let change = AlertChange::Event { severity, at_ms, message: message.into(), host: "127.0.0.1".into(), snapshot };
    store.apply_alert(&key, &AlertState::default(), None, Some(&change), &[], at_ms).await.unwrap();
}

/// Three alerts on the day (two on web-01, one on db-01), two the day before, one on each side
/// outside both days.
pub(crate) async fn write_alerts(store: &Store) {
    let (start, end) = (day_start(), day_end());
    let snapshot = json!({
        "cpu": { "usage": 91.5 },
        "memory": { "usage": 45.25 },
        "disk": { "usage": { "/": 70.0, "/data": 88.5 } },
        "network": { "in_bps": { "eth0": 1000.0, "eth1": 500.5 }, "out_bps": { "eth0": 250.0 } },
    });
    alert(store, "web-01", start - 24 * HOUR - 30 * MIN, Severity::Warning, "before both days", json!({})).await;
    alert(store, "web-01", start - 23 * HOUR, Severity::Warning, "the day before, 1", json!({})).await;
    alert(store, "web-01", start - 22 * HOUR, Severity::Fatal, "the day before, 2", json!({})).await;
    alert(store, "web-01", start + 30 * MIN, Severity::Fatal, "cpu.usage 91.5 % > 90", snapshot).await;
    alert(store, "db-01", start + 3 * HOUR, Severity::Warning, "disk \"/data\" at 91 %, rising", json!({})).await;
    alert(store, "web-01", end - 10 * MIN, Severity::Warning, "메모리 사용량 높음", json!({ "memory": { "usage": 80.0 } })).await;
    alert(store, "web-01", end + 30 * MIN, Severity::Fatal, "the day after", json!({})).await;
}

fn request<'a>(project: &'a Project, period: Period, kind: Kind, date: &str) -> Request<'a> {
    Request { project, period, kind, date: Some(report::parse_date(date).unwrap()), now_ms: later() }
}

async fn daily_report_over_a_dst_change_has_the_hand_computed_figures(db: TestDb) {
    let store = db.connect().await;
    write_samples(&store).await;
    write_alerts(&store).await;
    let shop = shop();
    // Before rolling up (raw samples) and after (hourly rollups): the same figures.
    for rolled_up in [false, true] {
        if rolled_up {
            store.roll_up(later()).await.unwrap();
        }
        let daily = report::build(&store, request(&shop, Period::Daily, Kind::Summary, "2026-03-29")).await.unwrap();
        assert_eq!((daily.from.as_str(), daily.to.as_str()), ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"));
        assert!(daily.complete);
        let Body::Daily { server_count, alert_count, servers, alerts } = &daily.body else { panic!("{daily:?}") };
        // web-01 reported on the day; web-01 and db-01 the day before.
        assert_eq!(*server_count, Change { count: 1, previous: 2, change: -1, change_pct: Some(-50.0) });
        assert_eq!(*alert_count, Change { count: 3, previous: 2, change: 1, change_pct: Some(50.0) });
        // 23 hours × 6 samples: 132 at CPU 30 and 6 at 53 → 4278 / 138 = 31; memory 5658 / 138 = 41.
        let server =
            |name: &str, paused, cpu_avg, memory_avg, alerts| DailyServer { server: name.into(), paused, cpu_avg, memory_avg, alerts };
        assert_eq!(
            servers,
            &vec![
                server("cache-01", false, None, None, 0),
                server("db-01", true, None, None, 1),
                server("web-01", false, Some(31.0), Some(41.0), 2)
            ],
            "rolled up: {rolled_up}"
        );
        let lines: Vec<(&str, &str, &str)> = alerts.iter().map(|a| (a.time.as_str(), a.server.as_str(), a.description.as_str())).collect();
        assert_eq!(
            lines,
            [
                ("2026-03-29T23:50:00+02:00", "web-01", "메모리 사용량 높음"),
                ("2026-03-29T04:00:00+02:00", "db-01", "disk \"/data\" at 91 %, rising"),
                ("2026-03-29T00:30:00+01:00", "web-01", "cpu.usage 91.5 % > 90"),
            ]
        );
        let fired = &alerts[2];
        assert_eq!(
            (fired.severity, fired.cpu, fired.memory, fired.disk, fired.network_in_bps, fired.network_out_bps),
            (Severity::Fatal, Some(91.5), Some(45.25), Some(88.5), Some(1500.5), Some(250.0))
        );
        assert_eq!((alerts[0].memory, alerts[0].cpu), (Some(80.0), None));
    }
}

async fn weekly_disk_and_monthly_summary_and_app_have_the_hand_computed_figures(db: TestDb) {
    let store = db.connect().await;
    write_samples(&store).await;
    let shop = shop();
    for rolled_up in [false, true] {
        if rolled_up {
            store.roll_up(later()).await.unwrap();
        }
        // The week from Monday 2026-03-23 ends with the DST day: /data has 276 samples at 70 and
        // 6 at 80 → 19800 / 282 = 70.2127…; its last hour is at 80.
        let weekly = report::build(&store, request(&shop, Period::Weekly, Kind::Disk, "2026-03-23")).await.unwrap();
        let json = serde_json::to_value(&weekly).unwrap();
        assert_eq!(
            json["disks"],
            json!([
                { "server": "cache-01", "paused": false, "mount": null, "usage_avg": null, "usage_last": null },
                { "server": "db-01", "paused": true, "mount": null, "usage_avg": null, "usage_last": null },
                { "server": "web-01", "paused": false, "mount": "/", "usage_avg": 50.0, "usage_last": 50.0 },
                { "server": "web-01", "paused": false, "mount": "/data", "usage_avg": 70.21, "usage_last": 80.0 },
            ]),
            "rolled up: {rolled_up}"
        );
        assert_eq!((json["from"].as_str(), json["to"].as_str()), (Some("2026-03-23T00:00:00+01:00"), Some("2026-03-30T00:00:00+02:00")));

        // March: web-01's CPU 144 × 10 + 4278 + 6 × 99 = 6312 over 288 samples = 21.9166…,
        // memory 2880 + 5658 + 594 = 9132 / 288 = 31.7083…
        let monthly = report::build(&store, request(&shop, Period::Monthly, Kind::Summary, "2026-03-01")).await.unwrap();
        assert_eq!(
            serde_json::to_value(&monthly).unwrap()["servers"],
            json!([
                { "server": "cache-01", "paused": false, "cpu_avg": null, "cpu_max": null, "memory_avg": null, "memory_max": null },
                { "server": "db-01", "paused": true, "cpu_avg": 10.0, "cpu_max": 10.0, "memory_avg": null, "memory_max": null },
                { "server": "web-01", "paused": false, "cpu_avg": 21.92, "cpu_max": 99.0, "memory_avg": 31.71, "memory_max": 99.0 },
            ])
        );

        let app = report::build(&store, request(&shop, Period::Monthly, Kind::App, "2026-03-01")).await.unwrap();
        let web = &serde_json::to_value(&app).unwrap()["servers"][2];
        assert_eq!(
            (&web["server"], &web["cpu_system"], &web["disk_io"], &web["network_in_bps"], &web["cpu_user"]),
            (&json!("web-01"), &json!(5.0), &json!(30.0), &json!(1500.0), &json!(null))
        );
    }
}

async fn a_month_without_data_lists_every_server_with_empty_values(db: TestDb) {
    let store = db.connect().await;
    write_samples(&store).await;
    let shop = shop();
    let january = report::build(&store, request(&shop, Period::Monthly, Kind::Summary, "2026-01-01")).await.unwrap();
    let json = serde_json::to_value(&january).unwrap();
    assert_eq!((json["from"].as_str(), json["to"].as_str()), (Some("2026-01-01T00:00:00+01:00"), Some("2026-02-01T00:00:00+01:00")));
    let servers: Vec<(&str, bool)> =
        json["servers"].as_array().unwrap().iter().map(|s| (s["server"].as_str().unwrap(), s["cpu_avg"].is_null())).collect();
    assert_eq!(servers, [("cache-01", true), ("db-01", true), ("web-01", true)]);
    let csv = report::render::to_csv(&january);
    assert_eq!(csv, "\u{feff}server,paused,cpu_avg,cpu_max,memory_avg,memory_max\r\ncache-01,no,,,,\r\ndb-01,yes,,,,\r\nweb-01,no,,,,\r\n");
    // A day with no data is well-formed too, and a date after today is refused.
    let daily = report::build(&store, request(&shop, Period::Daily, Kind::Summary, "2026-01-10")).await.unwrap();
    assert!(matches!(daily.body, Body::Daily { alert_count: Change { count: 0, previous: 0, change: 0, change_pct: None }, .. }));
    let future = Request { now_ms: at("2026-01-10T12:00:00Z"), ..request(&shop, Period::Daily, Kind::Summary, "2026-01-11") };
    assert!(matches!(report::build(&store, future).await, Err(ReportError::Future { .. })));
}

/// Kolkata is 5:30 ahead of UTC, so its days start and end in the middle of an hourly rollup:
/// pos-01 reports every 5 minutes CPU 10 in the hour before the day, 20 during it and 50 in the
/// hour after. Whole hourly rollups at either end would mix the neighbours' values in.
async fn a_day_starting_on_a_half_hour_reads_five_minute_rollups_at_its_ends(db: TestDb) {
    let store = db.connect().await;
    let (start, end) = (at("2026-03-28T18:30:00Z"), at("2026-03-29T18:30:00Z"));
    let reports: Vec<HostReport> = (0..)
        .map(|i| start - HOUR + i * 5 * MIN)
        .take_while(|t| *t < end + HOUR)
        .map(|t| {
            let cpu = if t < start {
                10.0
            } else if t < end {
                20.0
            } else {
                50.0
            };
            host_report(t, vec![value("cpu.usage", None, cpu)])
        })
        .collect();
    let batch: Vec<StoredReport> = reports.iter().map(|r| StoredReport { project: "kiosk", server: "pos-01", report: r }).collect();
    store.insert_reports(&batch).await.unwrap();
    let loaded = config::load_dir(&fixture(), &Library::Builtin);
    let kiosk = &loaded.config.projects["kiosk"];
    for rolled_up in [false, true] {
        if rolled_up {
            store.roll_up(later()).await.unwrap();
        }
        let daily = report::build(&store, request(kiosk, Period::Daily, Kind::Summary, "2026-03-29")).await.unwrap();
        assert_eq!((daily.from.as_str(), daily.to.as_str()), ("2026-03-29T00:00:00+05:30", "2026-03-30T00:00:00+05:30"));
        let Body::Daily { servers, .. } = &daily.body else { panic!("{daily:?}") };
        assert_eq!(servers[0].cpu_avg, Some(20.0), "rolled up: {rolled_up}");
        let weekly = report::build(&store, request(kiosk, Period::Weekly, Kind::Summary, "2026-03-23")).await.unwrap();
        let Body::Usage { servers } = &weekly.body else { panic!("{weekly:?}") };
        // The week ends with that day and holds the hour before it: 12 samples at 10 and 288 at 20.
        assert_eq!((servers[0].cpu_avg, servers[0].cpu_max), (Some(19.6), Some(20.0)));
    }
}

// ---- the command ----

/// A SQLite database with the samples (rolled up) and alerts above, for the CLI tests.
fn cli_database(dir: &Path) -> String {
    let url = format!("sqlite://{}", dir.join("watchkeeper.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Store::connect(&url).await.unwrap();
        write_samples(&store).await;
        write_alerts(&store).await;
        store.roll_up(later()).await.unwrap();
        store.close().await;
    });
    url
}

#[test]
fn report_command_prints_a_table_json_and_the_golden_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = cli_database(dir.path());
    let tree = fixture();
    let tree = tree.to_str().unwrap();
    let base = ["report", "daily", "--db", &db, "--config", tree, "--project", "shop", "--date", "2026-03-29"];

    let text = run(&base);
    assert_eq!(text.code, Some(0), "{}", text.output());
    assert!(
        text.stdout.starts_with("Daily report (summary) of shop: 2026-03-29T00:00:00+01:00 – 2026-03-30T00:00:00+02:00, Europe/Berlin\n"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("web-01    no        31.00       41.00       2"), "{}", text.stdout);

    let json = run(&[&base[..], &["--format", "json"]].concat());
    assert_eq!(json.json()["alert_count"], json!({ "count": 3, "previous": 2, "change": 1, "change_pct": 50.0 }));

    let out = dir.path().join("daily.csv");
    let csv = run(&[&base[..], &["--format", "csv", "--out", out.to_str().unwrap()]].concat());
    assert_eq!(csv.code, Some(0), "{}", csv.output());
    let golden = std::fs::read_to_string(fixture().join("daily-2026-03-29.csv")).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), golden);
}

#[test]
fn report_command_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let db = cli_database(dir.path());
    let tree = fixture();
    let tree = tree.to_str().unwrap();
    let fails = |args: &[&str], expected: &str| {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{}", r.output());
        assert!(r.stderr.contains(expected), "expected `{expected}` in:\n{}", r.output());
    };
    fails(&["report", "daily", "--db", &db, "--config", tree, "--project", "shoe"], "unknown project `shoe`: the tree in");
    fails(
        &["report", "daily", "--db", &db, "--config", tree, "--project", "shop", "--date", "2999-01-01"],
        "2999-01-01 is in the future (today is",
    );
    fails(&["report", "daily", "--db", &db, "--config", tree, "--date", "29.03.2026"], "`29.03.2026` is not a date: write YYYY-MM-DD");
    fails(&["report", "hourly", "--db", &db, "--config", tree], "hourly");
    fails(
        &["report", "daily", "--db", &db, "--config", tree, "--format", "csv"],
        "--format csv makes one file per project: give --project",
    );
    let missing = format!("sqlite://{}", dir.path().join("nothing.db").display());
    fails(&["report", "daily", "--db", &missing, "--config", tree], "there is no database at");
    assert!(!dir.path().join("nothing.db").exists(), "a report creates no database");
    let empty = format!("sqlite://{}", dir.path().join("empty.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async { Store::connect(&empty).await.unwrap().close().await });
    fails(&["report", "daily", "--db", &empty, "--config", tree], "the database holds no host metrics and no alerts yet");
}

// ---- the API ----

/// The fixture tree with API tokens: alice (an admin of shop) and eve (in no project).
pub(crate) fn tree_with_tokens(root: &Path, alice: &str, eve: &str) {
    let sha = watchkeeper::token::sha256_hex;
    let text = std::fs::read_to_string(fixture().join("tree.yaml")).unwrap().replace(
        "email: alice@example.com\nname: Alice Kim\n",
        &format!("email: alice@example.com\nname: Alice Kim\ntoken_sha256: {}\n", sha(alice)),
    );
    let eve = format!("---\nkind: User\nemail: eve@example.com\nname: Eve Outside\ntoken_sha256: {}\n", sha(eve));
    std::fs::write(root.join("tree.yaml"), text + &eve).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_api_answers_json_and_csv_within_the_token_scope() {
    use std::sync::Arc;
    use watchkeeper::api::{ApiState, router};

    crate::support::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let (alice, eve) = (watchkeeper::token::generate().unwrap(), watchkeeper::token::generate().unwrap());
    tree_with_tokens(dir.path(), &alice, &eve);
    let loaded = config::load_dir(dir.path(), &Library::Builtin);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let shop = loaded.config.projects["shop"].clone();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("wk.db").display())).await.unwrap();
    write_samples(&store).await;
    write_alerts(&store).await;
    store.roll_up(later()).await.unwrap();
    let (_config, config_rx) = tokio::sync::watch::channel(Arc::new(loaded.config));
    let state = ApiState {
        store: store.clone(),
        config: config_rx,
        metrics: Arc::new(watchkeeper::metrics::Metrics::new()),
        admin_token_sha256: None,
        started_at_ms: 0,
        lease_ttl_ms: watchkeeper::store::DEFAULT_LEASE_TTL_MS,
        live: Default::default(),
        collector: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api/v1/projects", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let client = reqwest::Client::new();
    let get = |path: &str, token: &str| client.get(format!("{base}{path}")).bearer_auth(token).send();

    let answer = get("/shop/reports/daily?date=2026-03-29", &alice).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    // The same report the command and the e-mail compute.
    let now = watchkeeper::clock::now_ms();
    let expected =
        report::build(&store, Request { now_ms: now, ..request(&shop, Period::Daily, Kind::Summary, "2026-03-29") }).await.unwrap();
    assert_eq!(body, serde_json::to_value(&expected).unwrap());
    assert_eq!(body["servers"][2], json!({ "server": "web-01", "paused": false, "cpu_avg": 31.0, "memory_avg": 41.0, "alerts": 2 }));

    let answer = get("/shop/reports/daily?date=2026-03-29&format=csv", &alice).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(answer.headers()["content-disposition"], "attachment; filename=\"shop-daily-2026-03-29.csv\"");
    assert_eq!(answer.text().await.unwrap(), std::fs::read_to_string(fixture().join("daily-2026-03-29.csv")).unwrap());

    let disk: serde_json::Value = get("/shop/reports/weekly?date=2026-03-23&kind=disk", &alice).await.unwrap().json().await.unwrap();
    assert_eq!(disk["disks"][3]["usage_avg"], json!(70.21));
    let answer = get("/shop/reports/monthly?date=2026-03-01&kind=app&format=csv", &alice).await.unwrap();
    assert_eq!(answer.headers()["content-disposition"], "attachment; filename=\"shop-monthly-app-2026-03-01.csv\"");

    // Outside the token's scope a project does not exist; without a token nothing does.
    let outside = get("/shop/reports/daily?date=2026-03-29", &eve).await.unwrap();
    assert_eq!(outside.status(), 404);
    assert!(!outside.text().await.unwrap().contains("web-01"));
    assert_eq!(client.get(format!("{base}/shop/reports/daily")).send().await.unwrap().status(), 401);

    for (path, status, says) in [
        ("/shop/reports/hourly", 404, "no report `hourly`"),
        ("/shop/reports/daily?date=29.03.2026", 400, "invalid `date`"),
        ("/shop/reports/daily?date=2999-01-01", 400, "is in the future"),
        ("/shop/reports/daily?kind=cpu", 400, "invalid `kind`"),
        ("/shop/reports/daily?format=xlsx", 400, "invalid `format`"),
        ("/shop/reports/daily?day=1", 400, "unknown query parameter `day`"),
    ] {
        let answer = get(path, &alice).await.unwrap();
        assert_eq!(answer.status(), status, "{path}");
        let text = answer.text().await.unwrap();
        assert!(text.contains(says), "{path}: {text}");
    }
    server.abort();
}
