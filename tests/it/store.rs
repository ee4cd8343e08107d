//! The store on both backends: every test listed in `both_backends!` runs once on a SQLite file
//! (`store::sqlite::…`) and once on a fresh PostgreSQL database (`store::postgres::…`; server
//! from `DATABASE_URL`, which `scripts/test.sh` sets; default `postgres://postgres@127.0.0.1:5432/test`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use watchkeeper::alert::{AlertChange, Instance, InstanceKey};
use watchkeeper::alert::{AlertState, Phase, Severity};
use watchkeeper::notification::{DeliveryStatus, Medium, NewNotification};
use watchkeeper::store::{
    AckRefused, AlertFilter, AlertRow, AlertStatus, Attempt, DeliveryOutcome, DeliveryReport, ProbeBucket, ProbeRecord, ProbeRetention,
    ReplicaRow, RevisionRecord, SentCount, Store, StoreError, StoredInstance, Tracking,
};

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;
const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One test's database: a SQLite file in a temporary directory, or a PostgreSQL database made
/// for the test and dropped afterwards (also when the test panics).
pub(crate) struct TestDb {
    pub(crate) url: String,
    kind: Kind,
}

enum Kind {
    /// Kept so the directory lives as long as the test.
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl TestDb {
    pub(crate) fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("watchkeeper.db").display());
        TestDb { url, kind: Kind::Sqlite { _dir: dir } }
    }

    pub(crate) async fn postgres() -> TestDb {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("wk_store_{}_{}_{nanos}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url}: {e} (run the tests with `bash scripts/test.sh`, or set DATABASE_URL)"));
        // Concurrent CREATE DATABASE can trip over the template being busy; try a few times.
        let mut tries = 0;
        loop {
            match sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await {
                Ok(_) => break,
                Err(e) if tries < 10 => {
                    tries += 1;
                    eprintln!("CREATE DATABASE {name}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("CREATE DATABASE {name}: {e}"),
            }
        }
        admin.close().await.expect("close admin connection");
        TestDb { url: with_database(&admin_url, &name), kind: Kind::Postgres { admin_url, name } }
    }

    /// The file of a SQLite database.
    pub(crate) fn sqlite_path(&self) -> std::path::PathBuf {
        match &self.kind {
            Kind::Sqlite { _dir } => _dir.path().join("watchkeeper.db"),
            Kind::Postgres { .. } => panic!("not a SQLite database"),
        }
    }

    /// A new Store on this database (runs the migrations again, as a restart would).
    pub(crate) async fn connect(&self) -> Store {
        Store::connect(&self.url).await.unwrap_or_else(|e| panic!("connect {}: {e}", self.url))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Kind::Postgres { admin_url, name } = &self.kind else { return };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs on the test's runtime, which cannot block on itself: use a thread of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await?;
                admin.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop the test database: {e}");
        }
    }
}

/// `postgres://user@host:port/db?params` with `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server = base[authority..].find('/').map_or(base, |slash| &base[..authority + slash]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// Generate `sqlite::NAME` and `postgres::NAME` for each `async fn NAME(db: TestDb)`.
macro_rules! both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::TestDb::sqlite()).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::TestDb::postgres().await).await
                }
            )+
        }
    };
}
pub(crate) use both_backends;

both_backends!(
    replicas_are_live_within_the_ttl_of_their_heartbeat_and_leave_when_released,
    migrations_run_twice_are_idempotent,
    latest_revisions_are_the_last_applied_and_the_last_rejected,
    probe_results_history_latest_buckets_and_prune,
    apply_alert_opens_escalates_and_resolves_with_notifications,
    a_failed_apply_alert_changes_nothing,
    a_firing_instance_survives_a_restart_with_its_start_time,
    claims_respect_due_time_and_leases,
    concurrent_claimers_never_get_the_same_notification,
    record_delivery_retries_sends_fails_and_logs_every_attempt,
    outbox_depth_counts_only_pending_notifications,
    sent_counts_are_per_monitor_medium_and_month_of_the_timezone,
    list_alerts_applies_every_filter,
    acknowledgements_append_to_a_firing_alert_only,
    an_alert_is_marked_flapping_while_its_instance_flaps,
);

// ---- helpers ----

pub(crate) fn key(project: &str, server: &str, rule: &str, subject: &str) -> InstanceKey {
    InstanceKey { project: project.into(), server: server.into(), rule: rule.parse().unwrap(), subject: subject.into() }
}

fn firing(severity: Severity, since_ms: i64) -> AlertState {
    AlertState { phase: Phase::Firing { since_ms, severity }, failures: 3, ..AlertState::default() }
}

pub(crate) fn email(to: &str, kind: &str) -> NewNotification {
    NewNotification {
        channel: "ops-mail".into(),
        medium: Medium::Email,
        recipient: to.into(),
        subject: format!("{kind}: web-01:443"),
        body: "web-01 port 443 is down".into(),
        kind: kind.parse().unwrap(),
        status: DeliveryStatus::Pending,
        reason: None,
    }
}

pub(crate) fn sms(to: &str, kind: &str) -> NewNotification {
    NewNotification { channel: "ops-sms".into(), medium: Medium::Sms, recipient: to.into(), ..email("", kind) }
}

fn open(severity: Severity, started_at_ms: i64, host: &str) -> AlertChange {
    AlertChange::Open { severity, started_at_ms, message: "port 443 refused".into(), host: host.into(), snapshot: json!({}) }
}

/// Fire an alert for `key` at `started_at_ms`; returns its id.
pub(crate) async fn fire(
    store: &Store,
    key: &InstanceKey,
    severity: Severity,
    started_at_ms: i64,
    host: &str,
    notes: &[NewNotification],
) -> i64 {
    let change = open(severity, started_at_ms, host);
    let id = store.apply_alert(key, &firing(severity, started_at_ms), None, Some(&change), notes, started_at_ms).await.expect("open");
    id.expect("an open alert id")
}

async fn resolve(store: &Store, key: &InstanceKey, id: i64, at_ms: i64) {
    let change = AlertChange::Resolve { at_ms, reason: "recovered".into() };
    let after = store.apply_alert(key, &AlertState::default(), Some(id), Some(&change), &[], at_ms).await.expect("resolve");
    assert_eq!(after, None);
}

pub(crate) fn probe(monitor: &str, port: u16, at_ms: i64, ok: bool) -> ProbeRecord {
    ProbeRecord {
        project: "shop".into(),
        monitor: monitor.into(),
        host: "10.0.0.1".into(),
        port,
        at_ms,
        ok,
        latency_ms: ok.then_some(12),
        error_kind: (!ok).then(|| "refused".into()),
        error: (!ok).then(|| "connection refused".into()),
    }
}

fn ids(alerts: &[AlertRow]) -> Vec<i64> {
    alerts.iter().map(|a| a.id).collect()
}

// ---- tests on both backends ----

async fn migrations_run_twice_are_idempotent(db: TestDb) {
    let first = db.connect().await;
    let rev = RevisionRecord { revision: "abc123".into(), at_ms: T0, applied: true, diagnostics: json!([]), held_until_ms: None };
    first.record_revision(&rev).await.unwrap();
    // Migrate again while the first store is still open, then again after it is gone.
    let second = db.connect().await;
    drop(first);
    drop(second);
    let third = db.connect().await;
    assert_eq!(third.latest_revisions().await.unwrap().0, Some(rev));
    assert!(["sqlite", "postgres"].contains(&third.backend()));
}

async fn latest_revisions_are_the_last_applied_and_the_last_rejected(db: TestDb) {
    let store = db.connect().await;
    assert_eq!(store.latest_revisions().await.unwrap(), (None, None));
    assert_eq!(store.latest_held_revision().await.unwrap(), None);

    let diagnostics = json!([{ "rule": "unknown-field", "file": "servers.yaml", "line": 3, "column": 5 }]);
    let record = |revision: &str, at_ms: i64, applied: bool, diagnostics: serde_json::Value, held_until_ms: Option<i64>| RevisionRecord {
        revision: revision.into(),
        at_ms,
        applied,
        diagnostics,
        held_until_ms,
    };
    let revisions = [
        record("r1", T0, true, json!([]), None),
        record("r2", T0 + MIN, false, diagnostics.clone(), None),
        record("r3", T0 + 2 * MIN, true, json!([{ "severity": "warning" }]), None),
        record("r4", T0 + 3 * MIN, false, diagnostics, None),
        // Held for removing too much: neither applied nor rejected.
        record("r5", T0 + 4 * MIN, false, json!([{ "rule": "mass-removal" }]), Some(T0 + 9 * MIN)),
    ];
    for rev in &revisions {
        store.record_revision(rev).await.unwrap();
    }
    let (applied, rejected) = store.latest_revisions().await.unwrap();
    assert_eq!(applied.as_ref(), Some(&revisions[2]));
    assert_eq!(rejected.as_ref(), Some(&revisions[3]));
    assert_eq!(store.latest_held_revision().await.unwrap().as_ref(), Some(&revisions[4]));
}

async fn probe_results_history_latest_buckets_and_prune(db: TestDb) {
    let store = db.connect().await;
    store.insert_probe_results(&[]).await.unwrap();

    // `web` checks ports 80 and 443 every minute for ten minutes; 443 fails at minutes 3 and 4.
    let mut batch = Vec::new();
    for minute in 0..10 {
        batch.push(probe("web", 80, T0 + minute * MIN, true));
        batch.push(probe("web", 443, T0 + minute * MIN, !(3..=4).contains(&minute)));
    }
    batch.push(probe("db", u16::MAX, T0 + 30 * SEC, true));
    batch.push(ProbeRecord { project: "other".into(), ..probe("web", 80, T0 + 20 * MIN, false) });
    store.insert_probe_results(&batch).await.unwrap();

    // The events: two failures and the recovery at minute 5, newest first.
    let recovered = ProbeRecord { latency_ms: None, ..probe("web", 443, T0 + 5 * MIN, true) };
    let failures = vec![probe("web", 443, T0 + 4 * MIN, false), probe("web", 443, T0 + 3 * MIN, false)];
    let all = store.probe_history("shop", "web", T0, T0 + 10 * MIN, false, 0).await.unwrap();
    assert_eq!(all, [vec![recovered], failures.clone()].concat());
    assert_eq!(store.probe_history("shop", "web", T0, T0 + 10 * MIN, true, 0).await.unwrap(), failures);
    assert_eq!(store.probe_history("shop", "web", T0, T0 + 10 * MIN, false, 2).await.unwrap().len(), 2);
    // [from, to): the check at `to` is not included.
    assert_eq!(store.probe_history("shop", "web", T0 + 3 * MIN, T0 + 4 * MIN, false, 0).await.unwrap().len(), 1);

    let latest = store.latest_probes("shop").await.unwrap();
    assert_eq!(
        latest,
        vec![probe("db", u16::MAX, T0 + 30 * SEC, true), probe("web", 80, T0 + 9 * MIN, true), probe("web", 443, T0 + 9 * MIN, true)]
    );

    let buckets = store.probe_buckets("shop", T0, T0 + 10 * MIN, 5 * MIN).await.unwrap();
    let bucket = |monitor: &str, port, start, ok, failed| ProbeBucket {
        monitor: monitor.into(),
        host: "10.0.0.1".into(),
        port,
        bucket_start_ms: start,
        ok,
        failed,
    };
    assert_eq!(
        buckets,
        vec![
            bucket("db", u16::MAX, T0, 1, 0),
            bucket("web", 80, T0, 5, 0),
            bucket("web", 80, T0 + 5 * MIN, 5, 0),
            bucket("web", 443, T0, 3, 2),
            bucket("web", 443, T0 + 5 * MIN, 5, 0),
        ]
    );
    let latency = store.probe_latency("shop", T0, T0 + 10 * MIN).await.unwrap();
    assert_eq!(latency.len(), 3);
    assert_eq!((latency[2].port, latency[2].latency.min_ms, latency[2].latency.max_ms, latency[2].latency.p99_ms), (443, 12, 12, 12));

    // Days roll up once over (an hour of grace); then the hours and events past retention go.
    assert_eq!(store.roll_up_probe_days(T0 + 24 * HOUR).await.unwrap(), 0);
    assert_eq!(store.roll_up_probe_days(T0 + 25 * HOUR).await.unwrap(), 1);
    assert_eq!(store.roll_up_probe_days(T0 + 25 * HOUR).await.unwrap(), 0);
    let days = store.probe_days("shop", T0, T0 + DAY).await.unwrap();
    assert_eq!(days.iter().map(|d| (d.port, d.ok, d.failed)).collect::<Vec<_>>(), vec![(u16::MAX, 1, 0), (80, 10, 0), (443, 8, 2)]);
    let daily = store.probe_buckets("shop", T0, T0 + DAY, DAY).await.unwrap();
    assert_eq!(daily.iter().map(|b| (b.port, b.ok, b.failed)).collect::<Vec<_>>(), vec![(u16::MAX, 1, 0), (80, 10, 0), (443, 8, 2)]);

    let retention = ProbeRetention { events_ms: 10 * DAY, hours_ms: DAY, days_ms: 20 * DAY };
    // 4 hour rows (db, 80, 443, other's 80) go after a day; the 4 events after ten; the days after twenty.
    assert_eq!(store.prune_probes(T0 + 2 * DAY, &retention).await.unwrap(), 4);
    assert_eq!(store.probe_buckets("shop", T0, T0 + 10 * MIN, 5 * MIN).await.unwrap(), vec![]);
    assert_eq!(store.probe_buckets("shop", T0, T0 + DAY, DAY).await.unwrap(), daily, "the days outlive the hours");
    assert_eq!(store.prune_probes(T0 + 11 * DAY, &retention).await.unwrap(), 4);
    assert_eq!(store.probe_history("shop", "web", T0, T0 + 10 * MIN, false, 0).await.unwrap(), vec![]);
    assert_eq!(store.prune_probes(T0 + 21 * DAY, &retention).await.unwrap(), 4);
    // The newest check of each port stays.
    assert_eq!(store.latest_probes("shop").await.unwrap(), latest);

    // A batch bigger than one multi-row INSERT is stored whole.
    let big: Vec<ProbeRecord> = (0..2_500).map(|i| probe("big", 8080, T0 + i, i % 10 != 0)).collect();
    store.insert_probe_results(&big).await.unwrap();
    assert_eq!(store.probe_history("shop", "big", T0, T0 + 2_500, true, 0).await.unwrap().len(), 250);
    assert_eq!(store.probe_history("shop", "big", T0, T0 + 2_500, false, 0).await.unwrap().len(), 500);
    let big_buckets = store.probe_buckets("shop", T0, T0 + 5 * MIN, 5 * MIN).await.unwrap();
    assert_eq!(big_buckets.iter().map(|b| (b.ok, b.failed)).collect::<Vec<_>>(), vec![(2_250, 250)]);
}

async fn apply_alert_opens_escalates_and_resolves_with_notifications(db: TestDb) {
    let store = db.connect().await;
    let k = key("shop", "web-01", "port:web-ports", "443");

    // Pending: state only, no alert, nothing to send.
    let pending = AlertState { phase: Phase::Pending { since_ms: T0, severity: Severity::Warning }, failures: 1, ..AlertState::default() };
    assert_eq!(store.apply_alert(&k, &pending, None, None, &[], T0).await.unwrap(), None);
    assert_eq!(
        store.load_instances().await.unwrap(),
        vec![StoredInstance { key: k.clone(), instance: Instance { state: pending, open_alert_id: None } }]
    );
    assert_eq!(store.outbox_depth().await.unwrap(), 0);

    // Fired: an alert row, the state pointing at it, a pending e-mail and a suppressed SMS.
    let snapshot = json!({ "cpu": 93.5, "top": [{ "pid": 1, "name": "nginx" }] });
    let opened = AlertChange::Open {
        severity: Severity::Warning,
        started_at_ms: T0,
        message: "port 443 refused".into(),
        host: "10.0.0.1".into(),
        snapshot: snapshot.clone(),
    };
    let suppressed =
        NewNotification { status: DeliveryStatus::NotSent, reason: Some("outside hours".into()), ..sms("+821012345678", "fired") };
    let state = firing(Severity::Warning, T0);
    let id = store
        .apply_alert(&k, &state, None, Some(&opened), &[email("ops@example.com", "fired"), suppressed], T0 + 2 * MIN)
        .await
        .unwrap()
        .expect("an alert id");
    let alert = store.get_alert(id).await.unwrap().expect("the alert");
    assert_eq!(
        alert,
        AlertRow {
            id,
            key: k.clone(),
            severity: Severity::Warning,
            status: AlertStatus::Firing,
            started_at_ms: T0,
            resolved_at_ms: None,
            resolve_reason: None,
            message: "port 443 refused".into(),
            host: "10.0.0.1".into(),
            snapshot,
            acknowledged_at_ms: None,
            flapping: false,
        }
    );
    assert_eq!(
        store.load_instances().await.unwrap(),
        vec![StoredInstance { key: k.clone(), instance: Instance { state, open_alert_id: Some(id) } }]
    );
    let notes = store.notifications_for_alert(id).await.unwrap();
    let statuses: Vec<_> = notes.iter().map(|(n, attempts)| (n.medium, n.status, n.kind.as_str(), attempts.len())).collect();
    assert_eq!(statuses, vec![(Medium::Email, DeliveryStatus::Pending, "fired", 0), (Medium::Sms, DeliveryStatus::NotSent, "fired", 0)]);
    assert!(notes.iter().all(|(n, _)| n.alert_id == Some(id) && n.created_ms == T0 + 2 * MIN && n.attempts == 0));
    assert_eq!(notes[0].0.next_attempt_ms, T0 + 2 * MIN);
    assert_eq!(store.outbox_depth().await.unwrap(), 1, "a suppressed notification is recorded, not queued");

    // Escalated: same alert, now fatal, one more notification.
    let fatal = firing(Severity::Fatal, T0);
    let escalated = AlertChange::Escalate { severity: Severity::Fatal };
    let after =
        store.apply_alert(&k, &fatal, Some(id), Some(&escalated), &[email("ops@example.com", "escalated")], T0 + 5 * MIN).await.unwrap();
    assert_eq!(after, Some(id));
    assert_eq!(store.get_alert(id).await.unwrap().unwrap().severity, Severity::Fatal);
    assert_eq!(store.load_instances().await.unwrap()[0].instance.state, fatal);
    assert_eq!(store.outbox_depth().await.unwrap(), 2);

    // Resolved: the alert closes, the instance row goes, the resolve notice links to the alert.
    let resolved = AlertChange::Resolve { at_ms: T0 + 9 * MIN, reason: "recovered".into() };
    let after = store
        .apply_alert(&k, &AlertState::default(), Some(id), Some(&resolved), &[email("ops@example.com", "resolved")], T0 + 9 * MIN)
        .await
        .unwrap();
    assert_eq!(after, None);
    let alert = store.get_alert(id).await.unwrap().unwrap();
    assert_eq!(
        (alert.status, alert.resolved_at_ms, alert.resolve_reason.as_deref()),
        (AlertStatus::Resolved, Some(T0 + 9 * MIN), Some("recovered"))
    );
    assert_eq!(store.load_instances().await.unwrap(), vec![]);
    let kinds: Vec<_> = store.notifications_for_alert(id).await.unwrap().into_iter().map(|(n, _)| n.kind.as_str()).collect();
    assert_eq!(kinds, ["fired", "fired", "escalated", "resolved"]);
    assert_eq!(store.outbox_depth().await.unwrap(), 3);
}

async fn acknowledgements_append_to_a_firing_alert_only(db: TestDb) {
    let store = db.connect().await;
    let k = key("shop", "web-01", "port:web-ports", "443");
    let open = |at| AlertChange::Open {
        severity: Severity::Fatal,
        started_at_ms: at,
        message: "down".into(),
        host: "h".into(),
        snapshot: json!({}),
    };
    let first = store.apply_alert(&k, &firing(Severity::Fatal, T0), None, Some(&open(T0)), &[], T0).await.unwrap().unwrap();

    let ack = store.acknowledge("shop", first, "carol@example.com", "on it", T0 + MIN).await.unwrap().unwrap();
    assert_eq!(ack.by, "carol@example.com");
    store.acknowledge("shop", first, "operator", "fixed the firewall", T0 + 2 * MIN).await.unwrap().unwrap();
    // Another project's path to it, or an id that does not exist: not found, nothing written.
    assert_eq!(store.acknowledge("billing", first, "erin@example.com", "x", T0).await.unwrap(), Err(AckRefused::NotFound));
    assert_eq!(store.acknowledge("shop", first + 100, "operator", "x", T0).await.unwrap(), Err(AckRefused::NotFound));
    let notes: Vec<(i64, String, String)> = store.acks_for(&[first]).await.unwrap().into_iter().map(|a| (a.at_ms, a.by, a.note)).collect();
    assert_eq!(
        notes,
        [
            (T0 + MIN, "carol@example.com".to_string(), "on it".to_string()),
            (T0 + 2 * MIN, "operator".to_string(), "fixed the firewall".to_string())
        ]
    );
    // The alert keeps the time of the first one.
    assert_eq!(store.get_alert(first).await.unwrap().unwrap().acknowledged_at_ms, Some(T0 + MIN));

    // Resolved: refused. Firing again is a new alert, not acknowledged.
    let resolve = AlertChange::Resolve { at_ms: T0 + 3 * MIN, reason: "recovered".into() };
    store.apply_alert(&k, &AlertState::default(), Some(first), Some(&resolve), &[], T0 + 3 * MIN).await.unwrap();
    assert_eq!(store.acknowledge("shop", first, "operator", "late", T0 + 4 * MIN).await.unwrap(), Err(AckRefused::Resolved));
    let second = store
        .apply_alert(&k, &firing(Severity::Fatal, T0 + 5 * MIN), None, Some(&open(T0 + 5 * MIN)), &[], T0 + 5 * MIN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.get_alert(second).await.unwrap().unwrap().acknowledged_at_ms, None);
    assert_eq!(store.acks_for(&[first, second]).await.unwrap().len(), 2);
    assert_eq!(store.acks_for(&[]).await.unwrap(), []);
}

async fn an_alert_is_marked_flapping_while_its_instance_flaps(db: TestDb) {
    let store = db.connect().await;
    let k = key("shop", "web-01", "port:web-ports", "443");
    let flag = |id: i64| {
        let store = store.clone();
        async move { store.get_alert(id).await.unwrap().unwrap().flapping }
    };
    let flapping = |mut state: AlertState| {
        state.flapping = Some(Severity::Fatal);
        state
    };
    // Fired calmly: not flapping.
    let calm = fire(&store, &k, Severity::Fatal, T0, "h", &[]).await;
    assert!(!flag(calm).await);
    // Its resolve is the change that makes it flap: the alert resolved is marked.
    let resolve = |at_ms| AlertChange::Resolve { at_ms, reason: "recovered".into() };
    let rest = flapping(AlertState::default());
    assert_eq!(store.apply_alert(&k, &rest, Some(calm), Some(&resolve(T0 + MIN)), &[], T0 + MIN).await.unwrap(), None);
    assert!(flag(calm).await);
    // Fired again while flapping: the new alert is marked from its start.
    let state = flapping(firing(Severity::Fatal, T0 + 2 * MIN));
    let again = store.apply_alert(&k, &state, None, Some(&open(Severity::Fatal, T0 + 2 * MIN, "h")), &[], T0 + 2 * MIN).await.unwrap();
    let again = again.expect("an open alert");
    assert!(flag(again).await);
    // Time alone: still flapping keeps the mark; settled (firing) takes it off the open alert,
    // and the resolved one keeps its own.
    store.apply_alert(&k, &state, Some(again), None, &[], T0 + 3 * MIN).await.unwrap();
    assert!(flag(again).await);
    store.apply_alert(&k, &firing(Severity::Fatal, T0 + 2 * MIN), Some(again), None, &[], T0 + 40 * MIN).await.unwrap();
    assert!(!flag(again).await);
    assert!(flag(calm).await);
    let listed = store.list_alerts(&AlertFilter { project: Some("shop".into()), ..AlertFilter::default() }).await.unwrap();
    assert_eq!(listed.iter().map(|a| (a.id, a.flapping)).collect::<Vec<_>>(), [(again, false), (calm, true)]);
}

async fn a_failed_apply_alert_changes_nothing(db: TestDb) {
    let store = db.connect().await;
    let k = key("shop", "web-01", "port:web-ports", "443");
    let id = fire(&store, &k, Severity::Fatal, T0, "10.0.0.1", &[email("ops@example.com", "fired")]).await;
    let before = store.load_instances().await.unwrap();

    // Deleting the instance succeeds inside the transaction, then the notification insert
    // fails (it names an alert that does not exist): nothing of it may remain.
    let bogus = AlertChange::Resolve { at_ms: T0 + MIN, reason: "recovered".into() };
    let result = store
        .apply_alert(&k, &AlertState::default(), Some(id + 1_000), Some(&bogus), &[email("ops@example.com", "resolved")], T0 + MIN)
        .await;
    assert!(matches!(result, Err(StoreError::Db(_))), "{result:?}");

    assert_eq!(store.load_instances().await.unwrap(), before);
    assert_eq!(store.outbox_depth().await.unwrap(), 1);
    assert_eq!(store.get_alert(id).await.unwrap().unwrap().status, AlertStatus::Firing);
}

async fn a_firing_instance_survives_a_restart_with_its_start_time(db: TestDb) {
    let k = key("shop", "web-01", "port:web-ports", "443");
    let event = key("shop", "web-01", "log:syslog:0", "oom-killer");
    let event_state = AlertState { last_event_ms: Some(T0 + 3 * MIN), ..AlertState::default() };
    let id = {
        let store = db.connect().await;
        let id = fire(&store, &k, Severity::Fatal, T0, "10.0.0.1", &[email("ops@example.com", "fired")]).await;
        // An event rule's rate-limit clock is state too, though nothing is firing.
        store.apply_alert(&event, &event_state, None, None, &[email("ops@example.com", "event")], T0 + 3 * MIN).await.unwrap();
        id
    };

    let restarted = db.connect().await;
    let instances = restarted.load_instances().await.unwrap();
    assert_eq!(
        instances,
        vec![
            StoredInstance { key: event, instance: Instance { state: event_state, open_alert_id: None } },
            StoredInstance { key: k, instance: Instance { state: firing(Severity::Fatal, T0), open_alert_id: Some(id) } },
        ]
    );
    assert_eq!(restarted.get_alert(id).await.unwrap().unwrap().started_at_ms, T0);
    assert_eq!(restarted.notifications_for_alert(id).await.unwrap().len(), 1, "one fired notification, not two");
    assert_eq!(restarted.outbox_depth().await.unwrap(), 2);
}

async fn claims_respect_due_time_and_leases(db: TestDb) {
    let store = db.connect().await;
    let k = key("shop", "web-01", "port:web-ports", "443");
    let notes = [
        email("a@example.com", "fired"),
        email("b@example.com", "fired"),
        NewNotification { status: DeliveryStatus::NotSent, reason: Some("sms disabled".into()), ..sms("+82101", "fired") },
        sms("+82102", "fired"),
    ];
    let id = fire(&store, &k, Severity::Fatal, T0, "10.0.0.1", &notes).await;
    let all: Vec<i64> = store.notifications_for_alert(id).await.unwrap().iter().map(|(n, _)| n.id).collect();
    let lease = 30 * SEC;

    assert!(store.claim_due_notifications(T0 - 1, 10, "a", lease).await.unwrap().is_empty(), "not due yet");

    let first = store.claim_due_notifications(T0, 2, "a", lease).await.unwrap();
    assert_eq!(first.iter().map(|n| n.id).collect::<Vec<_>>(), [all[0], all[1]], "oldest first, at most `limit`");
    assert_eq!(first[0].recipient, "a@example.com");
    let second = store.claim_due_notifications(T0, 10, "b", lease).await.unwrap();
    assert_eq!(second.iter().map(|n| n.id).collect::<Vec<_>>(), [all[3]], "claimed rows and not-sent rows are skipped");
    assert!(store.claim_due_notifications(T0 + lease - 1, 10, "b", lease).await.unwrap().is_empty(), "leases still held");

    // A sender that crashed holding a lease: once it expires, another sender takes over.
    store.record_delivery(all[3], T0 + SEC, &DeliveryOutcome::Sent(Tracking::default())).await.unwrap();
    let retaken = store.claim_due_notifications(T0 + lease, 10, "c", lease).await.unwrap();
    assert_eq!(retaken.iter().map(|n| n.id).collect::<Vec<_>>(), [all[0], all[1]], "sent rows are never claimed again");
    assert!(store.claim_due_notifications(T0 + lease, 10, "d", lease).await.unwrap().is_empty());
    assert!(store.claim_due_notifications(T0, 0, "e", lease).await.unwrap().is_empty());
}

async fn concurrent_claimers_never_get_the_same_notification(db: TestDb) {
    const ROWS: usize = 300;
    let stores = [db.connect().await, db.connect().await];
    let notes: Vec<NewNotification> = (0..ROWS).map(|i| email(&format!("user{i}@example.com"), "fired")).collect();
    fire(&stores[0], &key("shop", "web-01", "port:web-ports", "443"), Severity::Fatal, T0, "10.0.0.1", &notes).await;

    // Two replicas (two pools), two senders each, claiming small batches until nothing is left.
    let mut senders = Vec::new();
    for (replica, store) in stores.iter().enumerate() {
        for sender in 0..2 {
            let store = store.clone();
            let holder = format!("replica-{replica}-sender-{sender}");
            senders.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = store.claim_due_notifications(T0, 7, &holder, 5 * MIN).await.expect("claim");
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|n| n.id));
                }
            }));
        }
    }
    let mut claimed = Vec::new();
    for sender in senders {
        claimed.extend(sender.await.expect("sender task"));
    }
    let distinct: BTreeSet<i64> = claimed.iter().copied().collect();
    assert_eq!(distinct.len(), claimed.len(), "a notification was claimed twice");
    assert_eq!(claimed.len(), ROWS, "every notification was claimed");
    assert!(stores[1].claim_due_notifications(T0 + MIN, 100, "late", 5 * MIN).await.unwrap().is_empty());
}

async fn record_delivery_retries_sends_fails_and_logs_every_attempt(db: TestDb) {
    let store = db.connect().await;
    let k = key("shop", "web-01", "port:web-ports", "443");
    let notes = [email("a@example.com", "fired"), email("b@example.com", "fired"), sms("+82101", "fired")];
    let id = fire(&store, &k, Severity::Fatal, T0, "10.0.0.1", &notes).await;
    let lease = 5 * MIN;
    let claimed: Vec<i64> = store.claim_due_notifications(T0, 10, "a", lease).await.unwrap().iter().map(|n| n.id).collect();
    let [retried, given_up, sent] = claimed[..] else { panic!("claimed {claimed:?}") };

    // A temporary failure: back to pending at the retry time, claim released.
    let refused = DeliveryOutcome::Failed { error: "connection refused".into(), retry_at_ms: Some(T0 + MIN) };
    store.record_delivery(retried, T0 + SEC, &refused).await.unwrap();
    assert!(store.claim_due_notifications(T0 + 30 * SEC, 10, "b", lease).await.unwrap().is_empty(), "not due before the retry time");
    let again = store.claim_due_notifications(T0 + MIN, 10, "b", lease).await.unwrap();
    assert_eq!(again.len(), 1);
    let row = &again[0];
    assert_eq!((row.id, row.status, row.attempts, row.next_attempt_ms), (retried, DeliveryStatus::Pending, 1, T0 + MIN));
    assert_eq!(row.last_error.as_deref(), Some("connection refused"));
    store.record_delivery(retried, T0 + MIN + SEC, &DeliveryOutcome::Sent(Tracking::default())).await.unwrap();

    // A permanent failure, and a plain success.
    let rejected = DeliveryOutcome::Failed { error: "550 mailbox unavailable".into(), retry_at_ms: None };
    store.record_delivery(given_up, T0 + 2 * SEC, &rejected).await.unwrap();
    store.record_delivery(sent, T0 + 3 * SEC, &DeliveryOutcome::Sent(Tracking::default())).await.unwrap();

    let log = store.notifications_for_alert(id).await.unwrap();
    let summary: Vec<_> = log.iter().map(|(n, a)| (n.id, n.status, n.attempts, n.sent_ms, n.last_error.as_deref(), a.clone())).collect();
    let ok = |at_ms| Attempt { at_ms, ok: true, error: None };
    let failed = |at_ms, error: &str| Attempt { at_ms, ok: false, error: Some(error.into()) };
    assert_eq!(
        summary,
        vec![
            (
                retried,
                DeliveryStatus::Sent,
                2,
                Some(T0 + MIN + SEC),
                Some("connection refused"),
                vec![failed(T0 + SEC, "connection refused"), ok(T0 + MIN + SEC)]
            ),
            (
                given_up,
                DeliveryStatus::Failed,
                1,
                None,
                Some("550 mailbox unavailable"),
                vec![failed(T0 + 2 * SEC, "550 mailbox unavailable")]
            ),
            (sent, DeliveryStatus::Sent, 1, Some(T0 + 3 * SEC), None, vec![ok(T0 + 3 * SEC)]),
        ]
    );
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    assert!(store.claim_due_notifications(T0 + 10 * MIN, 10, "c", lease).await.unwrap().is_empty());

    let missing = store.record_delivery(given_up + 1_000, T0, &DeliveryOutcome::Sent(Tracking::default())).await;
    assert!(matches!(missing, Err(StoreError::Db(sqlx::Error::RowNotFound))), "{missing:?}");
}

async fn outbox_depth_counts_only_pending_notifications(db: TestDb) {
    let store = db.connect().await;
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
    let notes = [
        email("a@example.com", "fired"),
        email("b@example.com", "fired"),
        email("c@example.com", "fired"),
        NewNotification { status: DeliveryStatus::NotSent, reason: Some("maintenance".into()), ..email("d@example.com", "fired") },
    ];
    let id = fire(&store, &key("shop", "web-01", "port:web-ports", "443"), Severity::Fatal, T0, "10.0.0.1", &notes).await;
    let ids: Vec<i64> = store.notifications_for_alert(id).await.unwrap().iter().map(|(n, _)| n.id).collect();
    assert_eq!(store.outbox_depth().await.unwrap(), 3);
    store.claim_due_notifications(T0, 10, "a", MIN).await.unwrap();
    assert_eq!(store.outbox_depth().await.unwrap(), 3, "claimed but unsent still counts");
    store.record_delivery(ids[0], T0, &DeliveryOutcome::Sent(Tracking::default())).await.unwrap();
    store.record_delivery(ids[1], T0, &DeliveryOutcome::Failed { error: "timeout".into(), retry_at_ms: Some(T0 + MIN) }).await.unwrap();
    assert_eq!(store.outbox_depth().await.unwrap(), 2, "a retry is still queued");
    store.record_delivery(ids[2], T0, &DeliveryOutcome::Failed { error: "rejected".into(), retry_at_ms: None }).await.unwrap();
    assert_eq!(store.outbox_depth().await.unwrap(), 1);
}

async fn sent_counts_are_per_monitor_medium_and_month_of_the_timezone(db: TestDb) {
    const NEW_YEAR_2026: i64 = 1_767_225_600_000;
    let store = db.connect().await;
    let seoul = jiff::tz::TimeZone::get("Asia/Seoul").unwrap();
    let utc = jiff::tz::TimeZone::UTC;
    let sent = |gateway: Option<&str>, read: Option<&str>| {
        DeliveryOutcome::Sent(Tracking { message_id: None, gateway_id: gateway.map(Into::into), read_token_sha256: read.map(Into::into) })
    };
    let not_sent = |to: &str| NewNotification { status: DeliveryStatus::NotSent, reason: Some("maintenance".into()), ..email(to, "fired") };
    let ids = |id| {
        let store = store.clone();
        async move { store.notifications_for_alert(id).await.unwrap().into_iter().map(|(n, _)| n.id).collect::<Vec<_>>() }
    };

    // Port monitor `web`: an e-mail sent in the last millisecond of 2025 in UTC (08:59 on
    // January 1 in Seoul); in March one sent, an SMS the gateway reported delivered, one still
    // pending (not counted).
    let z = ids(fire(
        &store,
        &key("shop", "", "port:web", "22"),
        Severity::Fatal,
        NEW_YEAR_2026 - MIN,
        "10.0.0.1",
        &[email("a@example.com", "fired")],
    )
    .await)
    .await;
    store.record_delivery(z[0], NEW_YEAR_2026 - 1, &sent(None, None)).await.unwrap();
    let notes = [email("b@example.com", "fired"), sms("+82101", "fired"), email("c@example.com", "fired")];
    let a = ids(fire(&store, &key("shop", "", "port:web", "443"), Severity::Fatal, T0, "10.0.0.1", &notes).await).await;
    store.record_delivery(a[0], T0, &sent(None, None)).await.unwrap();
    store.record_delivery(a[1], T0, &sent(Some("gw-1"), None)).await.unwrap();
    assert!(store.record_delivery_report("ops-sms", "gw-1", &DeliveryReport::Delivered, T0 + MIN).await.unwrap());

    // April: one held back by maintenance, one given up (counted when it was made), one read.
    let april = T0 + 40 * DAY;
    let notes = [not_sent("d@example.com"), email("e@example.com", "fired"), email("f@example.com", "fired")];
    let b = ids(fire(&store, &key("shop", "", "port:web", "80"), Severity::Fatal, april, "10.0.0.1", &notes).await).await;
    store.record_delivery(b[1], april + MIN, &DeliveryOutcome::Failed { error: "550".into(), retry_at_ms: None }).await.unwrap();
    store.record_delivery(b[2], april, &sent(None, Some("read-token"))).await.unwrap();
    assert!(store.mark_read("read-token", april + HOUR).await.unwrap());

    // A server's alert (no monitor), and another project's.
    fire(&store, &key("shop", "web-02", "metric:cpu.usage", ""), Severity::Fatal, T0, "10.0.0.2", &[not_sent("g@example.com")]).await;
    let c =
        ids(fire(&store, &key("other", "", "port:web", "443"), Severity::Fatal, T0, "10.0.0.1", &[email("x@example.com", "fired")]).await)
            .await;
    store.record_delivery(c[0], T0, &sent(None, None)).await.unwrap();

    let count = |monitor: Option<&str>, host: &str, medium, month, [sent, not_sent, failed, read, delivered]: [i64; 5]| SentCount {
        monitor: monitor.map(Into::into),
        host: host.into(),
        medium,
        month,
        sent,
        not_sent,
        failed,
        read,
        delivered,
    };
    let web = Some("web");
    assert_eq!(
        store.sent_counts("shop", 2026, &seoul).await.unwrap(),
        vec![
            count(None, "10.0.0.2", Medium::Email, 3, [0, 1, 0, 0, 0]),
            count(web, "10.0.0.1", Medium::Email, 1, [1, 0, 0, 0, 0]),
            count(web, "10.0.0.1", Medium::Email, 3, [1, 0, 0, 0, 0]),
            count(web, "10.0.0.1", Medium::Email, 4, [1, 1, 1, 1, 0]),
            count(web, "10.0.0.1", Medium::Sms, 3, [1, 0, 0, 0, 1]),
        ]
    );
    assert_eq!(store.sent_counts("shop", 2025, &seoul).await.unwrap(), vec![]);
    assert_eq!(store.sent_counts("shop", 2025, &utc).await.unwrap(), vec![count(web, "10.0.0.1", Medium::Email, 12, [1, 0, 0, 0, 0])]);
    assert_eq!(store.sent_counts("shop", 2027, &seoul).await.unwrap(), vec![]);
    assert_eq!(store.sent_counts("other", 2026, &utc).await.unwrap(), vec![count(web, "10.0.0.1", Medium::Email, 3, [1, 0, 0, 0, 0])]);
}

async fn list_alerts_applies_every_filter(db: TestDb) {
    let store = db.connect().await;
    let web1 = key("shop", "web-01", "port:web", "443");
    let web2 = key("shop", "web-02", "port:web", "443");
    let db1 = key("other", "db-01", "port:db", "5432");
    let a1 = fire(&store, &web1, Severity::Warning, T0, "10.0.0.1", &[]).await;
    resolve(&store, &web1, a1, T0 + 10 * MIN).await;
    let a2 = fire(&store, &web2, Severity::Fatal, T0 + 20 * MIN, "10.0.0.2", &[]).await;
    let a3 = fire(&store, &web1, Severity::Fatal, T0 + 30 * MIN, "10.0.0.1", &[]).await;
    resolve(&store, &web1, a3, T0 + 40 * MIN).await;
    let a4 = fire(&store, &db1, Severity::Warning, T0 + 5 * MIN, "10.0.1.1", &[]).await;

    let list = |filter: AlertFilter| {
        let store = store.clone();
        async move { ids(&store.list_alerts(&filter).await.unwrap()) }
    };
    assert_eq!(list(AlertFilter::default()).await, [a3, a2, a4, a1], "no filter, no limit, newest first");
    assert_eq!(list(AlertFilter { project: Some("shop".into()), ..Default::default() }).await, [a3, a2, a1]);
    assert_eq!(list(AlertFilter { status: Some(AlertStatus::Firing), ..Default::default() }).await, [a2, a4]);
    assert_eq!(list(AlertFilter { severity: Some(Severity::Fatal), ..Default::default() }).await, [a3, a2]);
    assert_eq!(list(AlertFilter { server: Some("web-01".into()), ..Default::default() }).await, [a3, a1]);
    assert_eq!(list(AlertFilter { limit: 2, ..Default::default() }).await, [a3, a2]);
    // Pages further back: skip the newest, with and without a limit.
    assert_eq!(list(AlertFilter { limit: 2, offset: 2, ..Default::default() }).await, [a4, a1]);
    assert_eq!(list(AlertFilter { offset: 3, ..Default::default() }).await, [a1]);
    assert_eq!(list(AlertFilter { limit: 2, offset: 4, ..Default::default() }).await, Vec::<i64>::new());

    // Active at any time in [from, to]: started by `to`, not resolved before `from`.
    let window = |from_ms, to_ms| AlertFilter { from_ms: Some(from_ms), to_ms: Some(to_ms), ..Default::default() };
    assert_eq!(list(window(T0 + 15 * MIN, T0 + 25 * MIN)).await, [a2, a4]);
    assert_eq!(list(window(T0 + 10 * MIN, T0 + 10 * MIN)).await, [a4, a1], "both ends inclusive");
    assert_eq!(list(AlertFilter { to_ms: Some(T0 + 5 * MIN), ..Default::default() }).await, [a4, a1]);
    assert_eq!(list(AlertFilter { from_ms: Some(T0 + 41 * MIN), ..Default::default() }).await, [a2, a4]);

    let combined = AlertFilter {
        project: Some("shop".into()),
        status: Some(AlertStatus::Resolved),
        severity: Some(Severity::Fatal),
        server: Some("web-01".into()),
        ..Default::default()
    };
    assert_eq!(list(combined).await, [a3]);
    let rows = store.list_alerts(&AlertFilter { project: Some("other".into()), ..Default::default() }).await.unwrap();
    assert_eq!((rows[0].key.clone(), rows[0].host.as_str(), rows[0].resolved_at_ms), (db1, "10.0.1.1", None));
    assert_eq!(store.get_alert(a4 + 1_000).await.unwrap(), None);
}

// ---- tests of connecting ----

#[tokio::test]
async fn unsupported_urls_are_rejected_without_echoing_passwords() {
    for url in ["mysql://root:hunter2@localhost/watchkeeper", "redis://cache:6379", "", "watchkeeper.db", "postgres:/db", "file:x.db"] {
        match Store::connect(url).await {
            Err(err @ StoreError::Url(_)) => assert!(!err.to_string().contains("hunter2"), "{err}"),
            other => panic!("{url}: expected a URL error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sqlite_urls_with_and_without_slashes_create_a_wal_database() {
    let dir = tempfile::tempdir().unwrap();
    for (url, file) in [
        (format!("sqlite://{}", dir.path().join("a.db").display()), "a.db"),
        (format!("sqlite:{}", dir.path().join("b.db").display()), "b.db"),
    ] {
        let store = Store::connect(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(store.backend(), "sqlite");
        drop(store);
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
        assert_eq!(mode, "wal", "{file}");
    }
}

#[tokio::test]
async fn a_closed_postgres_port_is_an_error_not_a_hang() {
    let port = crate::support::free_port();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(20), Store::connect(&format!("postgres://postgres@127.0.0.1:{port}/test")))
        .await
        .expect("connect must not hang");
    assert!(matches!(result, Err(StoreError::Db(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

async fn replicas_are_live_within_the_ttl_of_their_heartbeat_and_leave_when_released(db: TestDb) {
    let store = db.connect().await;
    const TTL: i64 = 15 * SEC;
    let row = |id: &str, heartbeat_ms: i64, revision: Option<&str>| ReplicaRow {
        id: id.to_string(),
        started_ms: T0,
        heartbeat_ms,
        revision: revision.map(str::to_string),
    };
    store.heartbeat_replica(&row("a", T0, None), TTL).await.unwrap();
    store.heartbeat_replica(&row("b", T0 + SEC, Some("r1")), TTL).await.unwrap();
    assert_eq!(store.live_replicas(T0 + SEC, TTL).await.unwrap(), [row("a", T0, None), row("b", T0 + SEC, Some("r1"))]);
    // A replica silent for longer than the TTL is not live.
    assert_eq!(store.live_replicas(T0 + 15 * SEC, TTL).await.unwrap(), [row("a", T0, None), row("b", T0 + SEC, Some("r1"))]);
    assert_eq!(store.live_replicas(T0 + 16 * SEC, TTL).await.unwrap(), [row("b", T0 + SEC, Some("r1"))]);
    // A renewal replaces the row, and deletes the rows dead by then.
    store.heartbeat_replica(&row("b", T0 + 16 * SEC, Some("r2")), TTL).await.unwrap();
    // b's heartbeat deleted a's dead row: it does not come back when asked with an older clock.
    assert_eq!(store.live_replicas(T0, TTL).await.unwrap(), [row("b", T0 + 16 * SEC, Some("r2"))]);
    store.release_replica("b").await.unwrap();
    assert_eq!(store.live_replicas(T0 + 16 * SEC, TTL).await.unwrap(), []);
}
