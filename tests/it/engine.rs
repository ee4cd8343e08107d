//! The alert engine as serve runs it — its task, fed through its channels, writing to a real
//! store — and its error policy: a retirement the database refuses is retried until it lands.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use watchkeeper::clock::now_ms;
use watchkeeper::collect::writer::HostInput;
use watchkeeper::config::{self, Config, Library};
use watchkeeper::engine::{Applied, Engine};
use watchkeeper::metrics::Metrics;
use watchkeeper::notification::{DeliveryStatus, MessageKind};
use watchkeeper::probe::{ErrorKind, LocalReason, MonitorKey, Outcome, PortResult, ProbeError};
use watchkeeper::store::{AlertFilter, AlertRow, AlertStatus, Store};

use crate::store::TestDb;

/// A tree with the files given (path, YAML), compiled; panics on errors.
pub(crate) fn compile(files: &[(&str, &str)]) -> Arc<Config> {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let loaded = config::load_dir(dir.path(), &Library::Builtin);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Arc::new(loaded.config)
}

/// The engine task of a serve, with its channels.
pub(crate) struct Running {
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
    configs: mpsc::Sender<Applied>,
    results: mpsc::Sender<Vec<PortResult>>,
    /// Held so the engine keeps waiting for host input (nothing here sends any yet).
    _hosts: mpsc::Sender<HostInput>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub(crate) async fn start(store: Store) -> Running {
        let metrics = Arc::new(Metrics::new());
        let engine = Engine::load(store.clone(), Arc::clone(&metrics), Arc::new(Notify::new())).await.expect("load the engine");
        let (configs, configs_rx) = mpsc::channel(4);
        let (results, results_rx) = mpsc::channel(16);
        let (hosts, hosts_rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(engine.run(configs_rx, results_rx, hosts_rx, cancel.clone()));
        Running { store, metrics, configs, results, _hosts: hosts, cancel, task }
    }

    pub(crate) async fn apply(&self, config: &Arc<Config>, revision: &str) {
        self.configs.send(Applied { config: Arc::clone(config), revision: revision.into() }).await.expect("engine running");
    }

    /// One check of `project/monitor` `port` at `at_ms`: passed, or refused.
    pub(crate) async fn check(&self, project: &str, monitor: &str, port: u16, at_ms: i64, ok: bool) {
        let error = (!ok).then(|| ProbeError { kind: ErrorKind::Refused, message: "connection refused".into() });
        self.check_with(project, monitor, port, at_ms, error).await;
    }

    /// One check of `project/monitor` `port` at `at_ms` that found `error` (or passed).
    pub(crate) async fn check_with(&self, project: &str, monitor: &str, port: u16, at_ms: i64, error: Option<ProbeError>) {
        let outcome = Outcome { ok: error.is_none(), latency: Duration::from_millis(1), error };
        let result = PortResult {
            key: MonitorKey { project: project.into(), name: monitor.into() },
            host: "127.0.0.1".into(),
            port,
            at_ms,
            due_ms: at_ms,
            outcome,
            shard: 0,
            epoch: 0,
        };
        self.results.send(vec![result]).await.expect("engine running");
    }

    /// Wait until `/metrics` shows `line` (e.g. `watchkeeper_alert_retirements_pending 1`).
    pub(crate) async fn wait_for_metric(&self, line: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.metrics.render().lines().any(|l| l == line) {
            assert!(tokio::time::Instant::now() < deadline, "no `{line}` within {within:?}:\n{}", self.metrics.render());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn stop(self) -> Store {
        self.cancel.cancel();
        self.task.await.expect("engine task");
        self.store
    }
}

/// Poll the store until `pick` finds what it wants among the project's alerts, or panic after
/// `within` (a bound a loaded machine meets; the condition usually holds within a second).
pub(crate) async fn wait_for_alert(store: &Store, within: Duration, pick: impl Fn(&AlertRow) -> bool) -> AlertRow {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let alerts = store.list_alerts(&AlertFilter::default()).await.expect("list alerts");
        if let Some(found) = alerts.into_iter().find(|a| pick(a)) {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "no such alert within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const PEOPLE: &str = "kind: User\nemail: alice@example.com\nname: Alice\n";
const PROJECT: &str = "kind: Project\nname: shop\nmembers: [{ user: alice@example.com, role: admin }]\nchannels: [mail]\n";
const CHANNEL: &str = "kind: Channel\nname: mail\ntype: email\nsmtp: { host: 127.0.0.1, port: 2525, tls: none }\nfrom: wk@example.com\n";
const MONITOR: &str =
    "kind: PortMonitor\nname: demo\nproject: shop\nhost: 127.0.0.1\nports: [9000]\ninterval: 10s\ntimeout: 2s\nfailures: 1\n";

/// Make the alert history refuse updates, as a database that fails would: every `UPDATE alerts`
/// aborts until [`heal`] drops the trigger. (A real SQLite error through a second connection.)
async fn break_alert_updates(db_path: &Path) -> SqliteConnection {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db_path.display())).await.expect("second connection");
    sqlx::query("CREATE TRIGGER refuse_alert_updates BEFORE UPDATE ON alerts BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        .execute(&mut conn)
        .await
        .expect("create trigger");
    conn
}

async fn heal(conn: &mut SqliteConnection) {
    sqlx::query("DROP TRIGGER refuse_alert_updates").execute(conn).await.expect("drop trigger");
}

#[tokio::test]
async fn a_retirement_the_store_refuses_is_retried_until_the_removed_monitors_alert_resolves() {
    let db = TestDb::sqlite();
    let running = Running::start(db.connect().await).await;
    let with_monitor = compile(&[("people.yaml", PEOPLE), ("project.yaml", PROJECT), ("channel.yaml", CHANNEL), ("checks.yaml", MONITOR)]);
    let without = compile(&[("people.yaml", PEOPLE), ("project.yaml", PROJECT), ("channel.yaml", CHANNEL)]);
    running.apply(&with_monitor, "rev-1").await;
    let t0 = now_ms();
    running.check("shop", "demo", 9000, t0, false).await;
    let fired = wait_for_alert(&running.store, Duration::from_secs(10), |a| a.status == AlertStatus::Firing).await;

    // The database refuses the retirement's write: the alert stays firing, nothing is lost.
    let mut broken = break_alert_updates(&db.sqlite_path()).await;
    running.apply(&without, "rev-2").await;
    running.wait_for_metric("watchkeeper_alert_retirements_pending 1", Duration::from_secs(10)).await;
    let still = running.store.get_alert(fired.id).await.unwrap().unwrap();
    assert_eq!(still.status, AlertStatus::Firing, "a refused write changes nothing");

    // Once the database takes writes again, the queued retirement lands with its reason and
    // its resolve notification.
    heal(&mut broken).await;
    let resolved = wait_for_alert(&running.store, Duration::from_secs(30), |a| a.id == fired.id && a.status == AlertStatus::Resolved).await;
    assert_eq!(resolved.resolve_reason.as_deref(), Some("removed in rev-2"));
    let notes = running.store.notifications_for_alert(fired.id).await.unwrap();
    let kinds: Vec<(MessageKind, DeliveryStatus)> = notes.iter().map(|(n, _)| (n.kind, n.status)).collect();
    assert_eq!(kinds, [(MessageKind::Fired, DeliveryStatus::Pending), (MessageKind::Resolved, DeliveryStatus::Pending)]);
    running.wait_for_metric("watchkeeper_alert_retirements_pending 0", Duration::from_secs(10)).await;
    let store = running.stop().await;
    assert!(store.load_instances().await.unwrap().is_empty(), "the retired instance is forgotten");
}

#[tokio::test]
async fn a_revision_that_brings_a_monitor_back_cancels_its_pending_retirement() {
    let db = TestDb::sqlite();
    let running = Running::start(db.connect().await).await;
    let with_monitor = compile(&[("people.yaml", PEOPLE), ("project.yaml", PROJECT), ("channel.yaml", CHANNEL), ("checks.yaml", MONITOR)]);
    let without = compile(&[("people.yaml", PEOPLE), ("project.yaml", PROJECT), ("channel.yaml", CHANNEL)]);
    running.apply(&with_monitor, "rev-1").await;
    running.check("shop", "demo", 9000, now_ms(), false).await;
    let fired = wait_for_alert(&running.store, Duration::from_secs(10), |a| a.status == AlertStatus::Firing).await;
    let mut broken = break_alert_updates(&db.sqlite_path()).await;
    running.apply(&without, "rev-2").await;
    running.wait_for_metric("watchkeeper_alert_retirements_pending 1", Duration::from_secs(10)).await;
    running.apply(&with_monitor, "rev-3").await;
    running.wait_for_metric("watchkeeper_alert_retirements_pending 0", Duration::from_secs(10)).await;
    heal(&mut broken).await;
    // A failed check after rev-3 is counted on the same instance (the store takes it: only
    // the alert history refused writes), so the engine has seen rev-3 when it is in.
    running.check("shop", "demo", 9000, now_ms(), false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while running.store.load_instances().await.unwrap().first().is_none_or(|s| s.instance.state.failures < 2) {
        assert!(tokio::time::Instant::now() < deadline, "the second failure was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alert = running.store.get_alert(fired.id).await.unwrap().unwrap();
    assert_eq!(alert.status, AlertStatus::Firing, "rev-3 keeps the monitor, so its alert stays open: {alert:?}");
    // And it goes on as before: the next good check resolves it as recovered.
    running.check("shop", "demo", 9000, now_ms(), true).await;
    let resolved = wait_for_alert(&running.store, Duration::from_secs(10), |a| a.id == fired.id && a.status == AlertStatus::Resolved).await;
    assert_eq!(resolved.resolve_reason.as_deref(), Some("recovered"));
    running.stop().await;
}

/// Every notification of an alert as (kind, status, reason).
async fn notes(store: &Store, alert_id: i64) -> Vec<(MessageKind, DeliveryStatus, Option<String>)> {
    store.notifications_for_alert(alert_id).await.unwrap().into_iter().map(|(n, _)| (n.kind, n.status, n.reason)).collect()
}

/// The alert of `rule` (e.g. `port:web`) in `status`, waiting for it.
async fn alert_of(store: &Store, rule: &str, status: AlertStatus) -> AlertRow {
    wait_for_alert(store, Duration::from_secs(10), |a| a.key.rule.to_string() == rule && a.status == status).await
}

const FATAL_PARENT: &str = "parent `core-01` is down";

/// Servers of project shop, each `(name, a line of YAML of its own, port)`, each with a port
/// monitor named after it without `-01` (`failures: 1`).
fn servers_with_monitors(servers: &[(&str, &str, u16)]) -> String {
    let mut yaml = String::new();
    for (name, extra, port) in servers {
        let monitor = name.trim_end_matches("-01");
        yaml.push_str(&format!(
            "---\nkind: Server\nname: {name}\nproject: shop\nhost: 127.0.0.1\n{extra}\n\
             ---\nkind: PortMonitor\nname: {monitor}\nproject: shop\nserver: {name}\nports: [{port}]\ninterval: 10s\nfailures: 1\n"
        ));
    }
    yaml
}

/// web-01 depends on db-01, which depends on core-01; one port monitor on each (`failures: 1`).
fn chain() -> Arc<Config> {
    let servers = servers_with_monitors(&[
        ("core-01", "depends_on: []", 9001),
        ("db-01", "depends_on: [core-01]", 9002),
        ("web-01", "depends_on: [db-01]", 9003),
    ]);
    compile(&[("people.yaml", PEOPLE), ("project.yaml", PROJECT), ("channel.yaml", CHANNEL), ("servers.yaml", &servers)])
}

#[tokio::test]
async fn a_grandparent_down_holds_back_a_childs_notifications_but_not_its_alert_nor_a_resolve_whose_fire_went_out() {
    let db = TestDb::sqlite();
    let running = Running::start(db.connect().await).await;
    running.apply(&chain(), "rev-1").await;
    let t0 = now_ms();
    let pending = |kind| (kind, DeliveryStatus::Pending, None);

    // core-01 goes down (fatal): its own alert notifies.
    running.check("shop", "core", 9001, t0, false).await;
    let core = alert_of(&running.store, "port:core", AlertStatus::Firing).await;
    assert_eq!(notes(&running.store, core.id).await, [pending(MessageKind::Fired)]);

    // web-01's port fails: the alert is recorded, its notification is not sent and names the
    // grandparent (db-01, in between, is up).
    running.check("shop", "web", 9003, t0 + 1_000, false).await;
    let web = alert_of(&running.store, "port:web", AlertStatus::Firing).await;
    assert_eq!((web.key.server.as_str(), web.started_at_ms), ("web-01", t0 + 1_000));
    let held = (MessageKind::Fired, DeliveryStatus::NotSent, Some(FATAL_PARENT.to_string()));
    assert_eq!(notes(&running.store, web.id).await, std::slice::from_ref(&held));
    let instances = running.store.load_instances().await.unwrap();
    assert!(instances.iter().any(|i| i.key.rule.to_string() == "port:web" && i.instance.state.is_firing()), "{instances:?}");

    // core-01 recovers; then web-01 does: its resolve goes out (nothing suppresses it now).
    running.check("shop", "core", 9001, t0 + 2_000, true).await;
    alert_of(&running.store, "port:core", AlertStatus::Resolved).await;
    running.check("shop", "web", 9003, t0 + 3_000, true).await;
    let resolved = alert_of(&running.store, "port:web", AlertStatus::Resolved).await;
    assert_eq!(resolved.id, web.id);
    assert_eq!(notes(&running.store, web.id).await, [held, pending(MessageKind::Resolved)]);

    // With every parent up, web-01 fires and notifies; core-01 then goes down; web-01's resolve
    // still goes out, since the people told it fired must hear it resolved.
    running.check("shop", "web", 9003, t0 + 4_000, false).await;
    let again = wait_for_alert(&running.store, Duration::from_secs(10), |a| a.key.rule.to_string() == "port:web" && a.id != web.id).await;
    running.check("shop", "core", 9001, t0 + 5_000, false).await;
    wait_for_alert(&running.store, Duration::from_secs(10), |a| a.key.rule.to_string() == "port:core" && a.id != core.id).await;
    running.check("shop", "web", 9003, t0 + 6_000, true).await;
    wait_for_alert(&running.store, Duration::from_secs(10), |a| a.id == again.id && a.status == AlertStatus::Resolved).await;
    assert_eq!(notes(&running.store, again.id).await, [pending(MessageKind::Fired), pending(MessageKind::Resolved)]);

    // And while core-01 is down, a new failure of db-01 (its direct child) is held back too.
    running.check("shop", "db", 9002, t0 + 7_000, false).await;
    let db_alert = alert_of(&running.store, "port:db", AlertStatus::Firing).await;
    assert_eq!(notes(&running.store, db_alert.id).await, [(MessageKind::Fired, DeliveryStatus::NotSent, Some(FATAL_PARENT.into()))]);
    running.stop().await;
}

#[tokio::test]
async fn a_check_this_machine_could_not_run_is_the_probers_error_not_a_failure_of_the_target() {
    let db = TestDb::sqlite();
    let running = Running::start(db.connect().await).await;
    let config = compile(&[("people.yaml", PEOPLE), ("project.yaml", PROJECT), ("channel.yaml", CHANNEL), ("monitor.yaml", MONITOR)]);
    running.apply(&config, "rev-1").await;
    let t0 = now_ms();
    // `failures: 1`: one counted failure would fire. Out of file descriptors, out of local ports.
    for (i, reason) in [LocalReason::Emfile, LocalReason::Emfile, LocalReason::Eaddrnotavail].into_iter().enumerate() {
        let error = ProbeError { kind: ErrorKind::Local(reason), message: "too many open files (os error 24)".into() };
        running.check_with("shop", "demo", 9000, t0 + i as i64 * 1_000, Some(error)).await;
    }
    running.wait_for_metric(r#"watchkeeper_prober_errors_total{reason="emfile"} 2"#, Duration::from_secs(10)).await;
    running.wait_for_metric(r#"watchkeeper_prober_errors_total{reason="eaddrnotavail"} 1"#, Duration::from_secs(10)).await;
    // A real refusal after them is the first failure: the alert starts there, not at the local errors.
    running.check("shop", "demo", 9000, t0 + 5_000, false).await;
    let alert = alert_of(&running.store, "port:demo", AlertStatus::Firing).await;
    assert_eq!(alert.started_at_ms, t0 + 5_000);
    let stored = running.store.probe_history("shop", "demo", t0 - 1, t0 + 60_000, false, 0).await.unwrap();
    assert_eq!(stored.iter().map(|r| (r.at_ms, r.error_kind.as_deref())).collect::<Vec<_>>(), [(t0 + 5_000, Some("refused"))]);
    let text = running.metrics.render();
    assert!(!text.contains(r#"result="local""#) && !text.contains(r#"result="other""#), "{text}");
    running.stop().await;
}

/// 2026-12-06 is a Sunday. `local` is a time in Seoul (+09:00).
fn seoul(local: &str) -> i64 {
    format!("2026-12-{local}+09:00").parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

#[tokio::test]
async fn weekly_maintenance_by_tag_and_by_server_crosses_midnight_in_the_projects_timezone() {
    let project = PROJECT.replace("channels: [mail]", "channels: [mail]\ntimezone: Asia/Seoul");
    let servers = servers_with_monitors(&[("web-01", "tags: [web]", 9003), ("db-01", "tags: [db]", 9002), ("app-01", "tags: []", 9004)]);
    let windows = "kind: Maintenance\nname: nightly\nproject: shop\ntags: [web]\nschedule: { days: [sun], from: \"23:00\", to: \"01:00\" }\n\
                   ---\nkind: Maintenance\nname: db-upgrade\nproject: shop\nservers: [db-01]\nschedule: { days: [sun], from: \"23:30\", to: \"00:45\" }\n";
    let config = compile(&[
        ("people.yaml", PEOPLE),
        ("project.yaml", &project),
        ("channel.yaml", CHANNEL),
        ("servers.yaml", &servers),
        ("maintenance.yaml", windows),
    ]);
    let db = TestDb::sqlite();
    let running = Running::start(db.connect().await).await;
    running.apply(&config, "rev-1").await;
    let sent = |kind| (kind, DeliveryStatus::Pending, None);
    let held = |window: &str| (MessageKind::Fired, DeliveryStatus::NotSent, Some(format!("maintenance `{window}`")));

    // Sunday 23:30 UTC is Monday 08:30 in Seoul: outside the window, web-01's alert notifies.
    let monday_morning = "2026-12-06T23:30:00Z".parse::<jiff::Timestamp>().unwrap().as_millisecond();
    running.check("shop", "web", 9003, monday_morning, false).await;
    let web = alert_of(&running.store, "port:web", AlertStatus::Firing).await;
    running.check("shop", "web", 9003, monday_morning + 10_000, true).await;
    alert_of(&running.store, "port:web", AlertStatus::Resolved).await;
    assert_eq!(notes(&running.store, web.id).await, [sent(MessageKind::Fired), sent(MessageKind::Resolved)]);

    // Monday 00:30 in Seoul, after midnight within Sunday's windows: web-01 (tag `web`) and
    // db-01 (listed) are silenced, each by its window; app-01 is in neither and notifies.
    let after_midnight = seoul("07T00:30:00");
    running.check("shop", "web", 9003, after_midnight, false).await;
    running.check("shop", "db", 9002, after_midnight, false).await;
    running.check("shop", "app", 9004, after_midnight, false).await;
    let web = wait_for_alert(&running.store, Duration::from_secs(10), |a| {
        a.key.rule.to_string() == "port:web" && a.status == AlertStatus::Firing
    })
    .await;
    let db_alert = alert_of(&running.store, "port:db", AlertStatus::Firing).await;
    let app = alert_of(&running.store, "port:app", AlertStatus::Firing).await;
    assert_eq!(notes(&running.store, web.id).await, [held("nightly")]);
    assert_eq!(notes(&running.store, db_alert.id).await, [held("db-upgrade")]);
    assert_eq!(notes(&running.store, app.id).await, [sent(MessageKind::Fired)]);

    // 00:50: db-01's window ended at 00:45 and web-01's runs to 01:00. db-01 recovers and its
    // resolve goes out; web-01's would be held back, so it recovers at 01:00 exactly, when
    // the window is over (the end is exclusive).
    running.check("shop", "db", 9002, seoul("07T00:50:00"), true).await;
    alert_of(&running.store, "port:db", AlertStatus::Resolved).await;
    assert_eq!(notes(&running.store, db_alert.id).await, [held("db-upgrade"), sent(MessageKind::Resolved)]);
    running.check("shop", "web", 9003, seoul("07T01:00:00"), true).await;
    wait_for_alert(&running.store, Duration::from_secs(10), |a| a.id == web.id && a.status == AlertStatus::Resolved).await;
    assert_eq!(notes(&running.store, web.id).await, [held("nightly"), sent(MessageKind::Resolved)]);

    // The same clock time a week day later (Monday night into Tuesday) is not in a Sunday window.
    running.check("shop", "web", 9003, seoul("08T00:30:00"), false).await;
    let tuesday = wait_for_alert(&running.store, Duration::from_secs(10), |a| {
        a.key.rule.to_string() == "port:web" && a.status == AlertStatus::Firing
    })
    .await;
    assert_eq!(notes(&running.store, tuesday.id).await, [sent(MessageKind::Fired)]);
    running.stop().await;
}

#[tokio::test]
async fn a_revision_resolves_what_it_removes_or_pauses_and_tells_whoever_heard_it_fired() {
    let lab = "kind: Project\nname: lab\nmembers: [{ user: alice@example.com, role: admin }]\nchannels: [mail]\n---\n\
               kind: PortMonitor\nname: bench\nproject: lab\nhost: 127.0.0.1\nports: [9005]\ninterval: 10s\nfailures: 1\n";
    let tree = |servers: &[(&str, &str, u16)], with_lab: bool| {
        let servers = servers_with_monitors(servers);
        let mut files = vec![("people.yaml", PEOPLE), ("project.yaml", PROJECT), ("channel.yaml", CHANNEL), ("servers.yaml", &servers)];
        if with_lab {
            files.push(("lab.yaml", lab));
        }
        compile(&files)
    };
    let before = tree(&[("web-01", "", 9003), ("db-01", "", 9002), ("app-01", "", 9004)], true);
    // rev-2: web-01 stays without its monitor; db-01 is paused; app-01 and project lab are gone.
    let web_only = "kind: Server\nname: web-01\nproject: shop\nhost: 127.0.0.1\n";
    let db_paused = servers_with_monitors(&[("db-01", "paused: true", 9002)]);
    let after = compile(&[
        ("people.yaml", PEOPLE),
        ("project.yaml", PROJECT),
        ("channel.yaml", CHANNEL),
        ("web.yaml", web_only),
        ("db.yaml", &db_paused),
    ]);

    let db = TestDb::sqlite();
    let running = Running::start(db.connect().await).await;
    running.apply(&before, "rev-1").await;
    let t0 = now_ms();
    for (project, monitor, port) in [("shop", "web", 9003), ("shop", "db", 9002), ("shop", "app", 9004), ("lab", "bench", 9005)] {
        running.check(project, monitor, port, t0, false).await;
    }
    let mut firing = Vec::new();
    for rule in ["port:web", "port:db", "port:app", "port:bench"] {
        firing.push(alert_of(&running.store, rule, AlertStatus::Firing).await);
    }

    running.apply(&after, "rev-2").await;
    let sent = |kind| (kind, DeliveryStatus::Pending, None);
    for (alert, reason, told) in [
        (&firing[0], "removed in rev-2", true),
        (&firing[1], "paused in rev-2", true),
        (&firing[2], "removed in rev-2", true),
        // A project that is gone: its members, who heard it fire, hear it resolve.
        (&firing[3], "removed in rev-2", true),
    ] {
        let resolved =
            wait_for_alert(&running.store, Duration::from_secs(10), |a| a.id == alert.id && a.status == AlertStatus::Resolved).await;
        assert_eq!(resolved.resolve_reason.as_deref(), Some(reason), "{resolved:?}");
        let expected = if told { vec![sent(MessageKind::Fired), sent(MessageKind::Resolved)] } else { vec![sent(MessageKind::Fired)] };
        assert_eq!(notes(&running.store, alert.id).await, expected, "{resolved:?}");
    }
    running.wait_for_metric("watchkeeper_alert_retirements_pending 0", Duration::from_secs(10)).await;
    let store = running.stop().await;
    assert!(store.load_instances().await.unwrap().is_empty(), "every retired instance is forgotten");
    let open = store.list_alerts(&AlertFilter { status: Some(AlertStatus::Firing), ..AlertFilter::default() }).await.unwrap();
    assert!(open.is_empty(), "{open:?}");
}

#[tokio::test]
async fn a_full_probe_buffer_drops_the_oldest_results_and_counts_them() {
    let db = TestDb::sqlite();
    let store = db.connect().await;
    let metrics = Arc::new(Metrics::new());
    let mut engine = Engine::load(store.clone(), Arc::clone(&metrics), Arc::new(Notify::new())).await.unwrap();
    engine.set_probe_buffer(3);
    let refused = |at_ms: i64| PortResult {
        key: MonitorKey { project: "shop".into(), name: "demo".into() },
        host: "127.0.0.1".into(),
        port: 9000,
        at_ms,
        due_ms: at_ms,
        outcome: Outcome {
            ok: false,
            latency: Duration::from_millis(1),
            error: Some(ProbeError { kind: ErrorKind::Refused, message: "connection refused".into() }),
        },
        shard: 0,
        epoch: 0,
    };
    let t0 = now_ms();
    // Five results arrive before any is written: the buffer holds the newest three.
    engine.take_results((0..5).map(|i| refused(t0 + i * 1000)).collect());
    let text = metrics.render();
    assert!(text.lines().any(|l| l == "watchkeeper_probe_results_dropped_total 2"), "{text}");
    assert!(text.lines().any(|l| l == "watchkeeper_probe_results_waiting 3"), "{text}");
    engine.flush_results().await.unwrap();
    let stored: Vec<i64> = store.probe_history("shop", "demo", t0, t0 + 10_000, true, 0).await.unwrap().iter().map(|r| r.at_ms).collect();
    assert_eq!(stored, [t0 + 4000, t0 + 3000, t0 + 2000], "the newest three, each once");
    assert!(metrics.render().lines().any(|l| l == "watchkeeper_probe_results_waiting 0"));
}

#[tokio::test]
async fn a_probe_result_whose_decision_the_store_refuses_is_decided_again_once_it_takes_writes() {
    let db = TestDb::sqlite();
    let store = db.connect().await;
    let mut engine = Engine::load(store.clone(), Arc::new(Metrics::new()), Arc::new(Notify::new())).await.unwrap();
    let config = compile(&[("people.yaml", PEOPLE), ("project.yaml", PROJECT), ("channel.yaml", CHANNEL), ("checks.yaml", MONITOR)]);
    engine.apply_config(Applied { config, revision: "rev-1".into() }).await;
    let check = |at_ms: i64, ok: bool| PortResult {
        key: MonitorKey { project: "shop".into(), name: "demo".into() },
        host: "127.0.0.1".into(),
        port: 9000,
        at_ms,
        shard: 0,
        epoch: 0,
        due_ms: at_ms,
        outcome: Outcome {
            ok,
            latency: Duration::from_millis(1),
            error: (!ok).then(|| ProbeError { kind: ErrorKind::Refused, message: "connection refused".into() }),
        },
    };
    let t0 = now_ms();
    engine.observe(vec![check(t0, false)]).await.unwrap();
    let fired = alert_of(&store, "port:demo", AlertStatus::Firing).await;

    // The good check is stored, but the database refuses its decision (the resolve).
    let mut broken = break_alert_updates(&db.sqlite_path()).await;
    assert!(engine.observe(vec![check(t0 + 10_000, true)]).await.is_err(), "the refused write is reported");
    assert_eq!(store.get_alert(fired.id).await.unwrap().unwrap().status, AlertStatus::Firing);

    // The result waited: once the database takes writes, the same check resolves the alert.
    heal(&mut broken).await;
    engine.flush_results().await.unwrap();
    let resolved = store.get_alert(fired.id).await.unwrap().unwrap();
    assert_eq!((resolved.status, resolved.resolve_reason.as_deref()), (AlertStatus::Resolved, Some("recovered")), "{resolved:?}");
    let stored = store.probe_history("shop", "demo", t0, t0 + 20_000, false, 0).await.unwrap();
    assert_eq!(stored.iter().map(|r| (r.at_ms, r.ok)).collect::<Vec<_>>(), [(t0 + 10_000, true), (t0, false)], "each check stored once");
}
