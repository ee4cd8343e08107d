//! The status API over real HTTP (axum on 127.0.0.1:0, reqwest), reading a configuration compiled
//! by the real loader and a real SQLite store filled through the Store API.

use std::path::Path;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use watchkeeper::alert::{AlertChange, InstanceKey};
use watchkeeper::alert::{AlertState, Phase, Severity};
use watchkeeper::api::{ApiState, router};
use watchkeeper::collect::live::LiveServers;
use watchkeeper::config::{Config, Library};
use watchkeeper::metrics::Metrics;
use watchkeeper::notification::{DeliveryStatus, Medium, MessageKind, NewNotification};
use watchkeeper::protocol::{Facts, MetricValue, ProcessInfo, Report};
use watchkeeper::store::{DeliveryOutcome, ProbeRecord, RevisionRecord, Store, StoredReport};

const MIN: i64 = 60_000;

/// One token per kind of caller.
struct Tokens {
    operator: String,
    /// alice: owner of group `platform` (project `shop`).
    owner: String,
    /// bob: admin of group `platform`.
    admin: String,
    /// carol: plain user of group `platform`.
    user: String,
    /// erin: owner of group `payments` (project `billing`), nothing in `shop`.
    other: String,
    /// dave: in no group; a `user` member of project `billing` only.
    member: String,
}

/// Alert ids created by the fixture.
struct Ids {
    /// shop, web-01, port 80 of web-01-ports: fatal, firing, with notifications.
    port_down: i64,
    /// shop, db-01: warning, resolved in June 2025.
    resolved: i64,
    /// shop, db-01, the down-check: warning, firing.
    downcheck: i64,
    /// billing, pay-01: fatal, firing, one notification still pending and one held back.
    billing: i64,
}

struct Api {
    base: String,
    client: reqwest::Client,
    tokens: Tokens,
    ids: Ids,
    store: Store,
    /// The newest report of every server, as the collector's writer would keep it.
    live: LiveServers,
    config: watch::Sender<Arc<Config>>,
    now_ms: i64,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A response: status, JSON body (or the text as a JSON string) and headers.
struct Reply {
    status: StatusCode,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn tree(root: &Path, t: &Tokens) {
    let sha = watchkeeper::token::sha256_hex;
    write(
        root,
        "users.yaml",
        &format!(
            r#"kind: User
email: alice@example.com
name: Alice Owner
phone: "+82-10-1111-1111"
token_sha256: {}
---
kind: User
email: bob@example.com
name: Bob Admin
phone: "+82-10-2222-2222"
token_sha256: {}
---
kind: User
email: carol@example.com
name: Carol User
phone: "+82-10-3333-3333"
token_sha256: {}
---
kind: User
email: erin@example.com
name: Erin Payments
token_sha256: {}
---
kind: User
email: dave@example.com
name: Dave Member
token_sha256: {}
"#,
            sha(&t.owner),
            sha(&t.admin),
            sha(&t.user),
            sha(&t.other),
            sha(&t.member)
        ),
    );
    write(
        root,
        "groups.yaml",
        "kind: Group\nname: platform\nowner: alice@example.com\nadmins: [bob@example.com]\nusers: [carol@example.com]\n---\n\
         kind: Group\nname: payments\nowner: erin@example.com\n",
    );
    write(
        root,
        "channels.yaml",
        "kind: Channel\nname: ops-mail\ntype: email\nsmtp: { host: smtp.example.com, port: 587 }\nfrom: \"watchkeeper <alerts@example.com>\"\n",
    );
    write(
        root,
        "projects/shop/project.yaml",
        r#"kind: Project
name: shop
group: platform
description: Web shop
timezone: Asia/Seoul
channels: [ops-mail]
---
kind: Server
name: web-01
project: shop
host: 203.0.113.10
private_ip: 10.0.0.10
os: linux
tags: [web, prod]
policy: web-server
---
kind: Server
name: db-01
project: shop
host: 203.0.113.20
private_ip: 10.0.0.20
os: linux
tags: [db, prod]
policy: database
---
kind: Server
name: old-01
project: shop
host: 203.0.113.30
os: linux
tags: [web]
paused: true
---
kind: PortMonitor
name: web-01-ports
project: shop
server: web-01
ports: [22, 80]
interval: 1m
notify: [alice@example.com]
sms: true
---
kind: PortMonitor
name: stats
project: shop
host: 203.0.113.40
ports: [443]
---
kind: DownCheck
project: shop
detector: web-01
target: db-01
port: 5432
liveness_port: 22
"#,
    );
    write(
        root,
        "projects/billing/project.yaml",
        r#"kind: Project
name: billing
group: payments
timezone: UTC
members:
  - { user: dave@example.com, role: user }
channels: [ops-mail]
---
kind: Server
name: pay-01
project: billing
host: 198.51.100.10
os: linux
policy: linux-default
---
kind: PortMonitor
name: pay-01-ports
project: billing
server: pay-01
ports: [443]
"#,
    );
}

fn firing(severity: Severity, since_ms: i64) -> AlertState {
    AlertState { phase: Phase::Firing { since_ms, severity }, failures: 3, ..AlertState::default() }
}

fn key(project: &str, server: &str, rule: &str, subject: &str) -> InstanceKey {
    InstanceKey { project: project.into(), server: server.into(), rule: rule.parse().unwrap(), subject: subject.into() }
}

fn open(severity: Severity, started_at_ms: i64, message: &str, host: &str) -> AlertChange {
    AlertChange::Open { severity, started_at_ms, message: message.into(), host: host.into(), snapshot: json!({"cpu": {"usage": 12.5}}) }
}

fn note(channel: &str, medium: Medium, recipient: &str) -> NewNotification {
    NewNotification {
        channel: channel.into(),
        medium,
        recipient: recipient.into(),
        subject: "port 80 of web-01-ports is down".into(),
        body: "connection refused".into(),
        kind: MessageKind::Fired,
        status: DeliveryStatus::Pending,
        reason: None,
    }
}

fn probe(monitor: &str, host: &str, port: u16, at_ms: i64, error: Option<(&str, &str)>) -> ProbeRecord {
    ProbeRecord {
        project: "shop".into(),
        monitor: monitor.into(),
        host: host.into(),
        port,
        at_ms,
        ok: error.is_none(),
        latency_ms: if error.is_none() { Some(3) } else { None },
        error_kind: error.map(|(k, _)| k.to_string()),
        error: error.map(|(_, m)| m.to_string()),
    }
}

/// `2025-03-04T16:30:00Z` as epoch ms.
fn ms(rfc3339: &str) -> i64 {
    rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

impl Api {
    async fn start() -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let token = || watchkeeper::token::generate().unwrap();
        let tokens = Tokens { operator: token(), owner: token(), admin: token(), user: token(), other: token(), member: token() };
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        tree(&conf, &tokens);
        let loaded = watchkeeper::config::load_dir(&conf, &Library::Builtin);
        assert!(!loaded.has_errors(), "fixture tree has errors: {:#?}", loaded.diagnostics);
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("wk.db").display())).await.unwrap();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let ids = fill(&store, now_ms).await;

        let (config, config_rx) = watch::channel(Arc::new(loaded.config));
        let live = LiveServers::default();
        // This serve runs the revision `fill` recorded as applied.
        let metrics = Arc::new(Metrics::new());
        metrics.applied("aaaa111", now_ms - 60 * MIN);
        let state = ApiState {
            store: store.clone(),
            config: config_rx,
            metrics,
            admin_token_sha256: Some(watchkeeper::token::sha256_hex(&tokens.operator)),
            started_at_ms: now_ms,
            lease_ttl_ms: watchkeeper::store::DEFAULT_LEASE_TTL_MS,
            live: live.clone(),
            collector: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(state);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        crate::support::install_crypto();
        Api { base, client: reqwest::Client::new(), tokens, ids, store, live, config, now_ms, server: Some(server), _dir: dir }
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    async fn request(&self, method: reqwest::Method, path: &str, auth: Option<&str>) -> Reply {
        self.send(self.client.request(method, format!("{}{path}", self.base)), path, auth).await
    }

    /// Send `req` with an optional `Authorization` value.
    async fn send(&self, mut req: reqwest::RequestBuilder, path: &str, auth: Option<&str>) -> Reply {
        if let Some(value) = auth {
            req = req.header("authorization", value);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body, headers }
    }

    /// GET with `Bearer <token>`.
    async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(reqwest::Method::GET, path, Some(&format!("Bearer {token}"))).await
    }

    /// GET with a token that must succeed; the JSON body.
    async fn ok(&self, path: &str, token: &str) -> Value {
        let r = self.get(path, token).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.body);
        r.body
    }
}

/// Alerts, notifications with deliveries, probes, and two revisions.
async fn fill(store: &Store, now: i64) -> Ids {
    // shop: port 80 of web-01 is down (fatal, firing) and notified by e-mail and SMS.
    let k = key("shop", "web-01", "port:web-01-ports", "80");
    let started = now - 3 * MIN;
    let notes = [note("ops-mail", Medium::Email, "alice@example.com"), note("ops-sms", Medium::Sms, "+821011111111")];
    let port_down = store
        .apply_alert(
            &k,
            &firing(Severity::Fatal, started),
            None,
            Some(&open(Severity::Fatal, started, "port 80 of web-01-ports: connection refused", "203.0.113.10")),
            &notes,
            started,
        )
        .await
        .unwrap()
        .unwrap();
    // The e-mail fails once and is retried; the SMS goes out at once.
    let claimed = store.claim_due_notifications(started + 1000, 10, "test", MIN).await.unwrap();
    assert_eq!(claimed.len(), 2);
    for row in &claimed {
        let outcome = match row.medium {
            Medium::Email => DeliveryOutcome::Failed { error: "smtp: connection refused".into(), retry_at_ms: Some(started + 2000) },
            _ => DeliveryOutcome::Sent(Default::default()),
        };
        store.record_delivery(row.id, started + 1000, &outcome).await.unwrap();
    }
    let retried = store.claim_due_notifications(started + 3000, 10, "test", MIN).await.unwrap();
    assert_eq!(retried.len(), 1);
    store.record_delivery(retried[0].id, started + 3000, &DeliveryOutcome::Sent(Default::default())).await.unwrap();

    // shop: db-01's CPU was high for an hour in June 2025 (warning, resolved).
    let k = key("shop", "db-01", "metric:database:cpu.usage", "");
    let (from, to) = (ms("2025-06-01T00:00:00Z"), ms("2025-06-01T01:00:00Z"));
    let resolved = store
        .apply_alert(
            &k,
            &firing(Severity::Warning, from),
            None,
            Some(&open(Severity::Warning, from, "cpu.usage 91% ≥ 80%", "203.0.113.20")),
            &[],
            from,
        )
        .await
        .unwrap()
        .unwrap();
    let change = AlertChange::Resolve { at_ms: to, reason: "recovered".into() };
    assert_eq!(store.apply_alert(&k, &AlertState::default(), Some(resolved), Some(&change), &[], to).await.unwrap(), None);

    // shop: the down-check of db-01's PostgreSQL is firing (warning).
    let k = key("shop", "db-01", "downcheck:web-01-to-db-01-5432", "");
    let started = now - 30 * MIN;
    let downcheck = store
        .apply_alert(
            &k,
            &firing(Severity::Warning, started),
            None,
            Some(&open(Severity::Warning, started, "service down", "10.0.0.20")),
            &[],
            started,
        )
        .await
        .unwrap()
        .unwrap();

    // billing: pay-01 is down; its e-mail is still in the outbox.
    let k = key("billing", "pay-01", "port:pay-01-ports", "443");
    let started = now - 10 * MIN;
    let billing = store
        .apply_alert(
            &k,
            &firing(Severity::Fatal, started),
            None,
            Some(&open(Severity::Fatal, started, "port 443 of pay-01-ports: timed out", "198.51.100.10")),
            &[
                note("ops-mail", Medium::Email, "erin@example.com"),
                NewNotification {
                    status: DeliveryStatus::NotSent,
                    reason: Some("parent `core-01` is down".into()),
                    ..note("ops-mail", Medium::Email, "dave@example.com")
                },
            ],
            started,
        )
        .await
        .unwrap()
        .unwrap();

    // Probes: port 22 always answers; port 80 answered once, then was refused three times.
    let mut probes = Vec::new();
    for i in 1..=3 {
        probes.push(probe("web-01-ports", "203.0.113.10", 22, now - i * MIN, None));
        probes.push(probe("web-01-ports", "203.0.113.10", 80, now - i * MIN, Some(("refused", "connection refused"))));
    }
    probes.push(probe("web-01-ports", "203.0.113.10", 80, now - 4 * MIN, None));
    // Older failures for the log, around midnight in Seoul (UTC+9).
    probes.push(probe("web-01-ports", "203.0.113.10", 80, ms("2025-03-04T14:00:00Z"), Some(("timeout", "timed out after 5s"))));
    probes.push(probe("web-01-ports", "203.0.113.10", 80, ms("2025-03-04T16:30:00Z"), Some(("refused", "connection refused"))));
    probes.push(probe("web-01-ports", "203.0.113.10", 22, ms("2025-03-05T02:00:00Z"), Some(("unreachable", "no route to host"))));
    probes.push(probe("web-01-ports", "203.0.113.10", 22, ms("2025-03-05T02:03:00Z"), None));
    probes.push(probe("stats", "203.0.113.40", 443, ms("2025-03-05T02:00:00Z"), Some(("refused", "connection refused"))));
    store.insert_probe_results(&probes).await.unwrap();

    // Revisions: one applied, then a newer one rejected.
    let applied =
        RevisionRecord { revision: "aaaa111".into(), at_ms: now - 60 * MIN, applied: true, diagnostics: json!([]), held_until_ms: None };
    store.record_revision(&applied).await.unwrap();
    // As the reconciler stores it: lint's JSON report.
    let diagnostic = json!({"diagnostics": [{"severity": "error", "rule": "unknown-reference", "file": "projects/billing/project.yaml",
        "line": 3, "column": 8, "message": "group `paymnts` is not defined", "hint": null}], "errors": 1, "warnings": 0, "files": 4});
    let rejected =
        RevisionRecord { revision: "bbbb222".into(), at_ms: now - 5 * MIN, applied: false, diagnostics: diagnostic, held_until_ms: None };
    store.record_revision(&rejected).await.unwrap();

    Ids { port_down, resolved, downcheck, billing }
}

/// Every endpoint of project `p`, for the auth and scope tests.
fn endpoints(p: &str, alert_id: i64) -> Vec<String> {
    [
        format!("/api/v1/projects/{p}"),
        format!("/api/v1/projects/{p}/servers"),
        format!("/api/v1/projects/{p}/servers/web-01"),
        format!("/api/v1/projects/{p}/servers/web-01/metrics?name=cpu.usage"),
        format!("/api/v1/projects/{p}/alerts"),
        format!("/api/v1/projects/{p}/alerts/{alert_id}"),
        format!("/api/v1/projects/{p}/monitors"),
        format!("/api/v1/projects/{p}/monitors/stats"),
        format!("/api/v1/projects/{p}/monitors/web-01-ports/log"),
        format!("/api/v1/projects/{p}/availability"),
    ]
    .into()
}

fn error_of(r: &Reply) -> &str {
    r.body["error"].as_str().unwrap_or_else(|| panic!("no JSON error in {}", r.body))
}

#[tokio::test]
async fn healthz_and_metrics_answer_without_a_token() {
    let api = Api::start().await;
    let r = api.request(reqwest::Method::GET, "/healthz", None).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, Some("ok")));

    let r = api.request(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.body.as_str().unwrap();
    // The outbox depth is read from the store: billing's e-mail is still pending.
    assert!(text.contains("watchkeeper_outbox_depth 1\n"), "{text}");
    assert!(text.contains("# TYPE watchkeeper_alerts_firing gauge"), "{text}");
    assert!(text.contains("# TYPE watchkeeper_reconcile_status gauge"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    api.stop().await;
}

#[tokio::test]
async fn every_api_endpoint_answers_401_without_a_valid_token() {
    let api = Api::start().await;
    let mut paths = endpoints("shop", api.ids.port_down);
    paths.extend(["/api/v1/status".to_string(), "/api/v1/projects".to_string()]);
    let hash_as_token = format!("Bearer {}", watchkeeper::token::sha256_hex(&api.tokens.user));
    for path in &paths {
        for auth in [None, Some("Basic Y2Fyb2w6c2VjcmV0"), Some("Bearer"), Some("Bearer wk_not-a-token"), Some(hash_as_token.as_str())] {
            let r = api.request(reqwest::Method::GET, path, auth).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "GET {path} with {auth:?}: {}", r.body);
            assert_eq!(r.headers["www-authenticate"], "Bearer", "GET {path} with {auth:?}");
            assert!(!error_of(&r).is_empty());
        }
    }
    api.stop().await;
}

#[tokio::test]
async fn a_project_outside_the_scope_answers_404_like_a_missing_one() {
    let api = Api::start().await;
    let t = &api.tokens;
    // erin (payments) on every shop endpoint, carol (platform) on billing's, anyone on a project
    // that does not exist: the same 404, and nothing of the project in it.
    for (token, project, alert) in
        [(&t.other, "shop", api.ids.port_down), (&t.user, "billing", api.ids.billing), (&t.member, "shop", api.ids.port_down)]
    {
        for path in endpoints(project, alert) {
            let r = api.get(&path, token).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "GET {path}: {}", r.body);
            assert_eq!(error_of(&r), format!("project `{project}` not found"), "GET {path}");
        }
    }
    for path in endpoints("nowhere", 1) {
        let r = api.get(&path, &t.operator).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "GET {path}");
        assert_eq!(error_of(&r), "project `nowhere` not found");
    }
    // Each caller lists exactly the projects in scope: groups and memberships.
    let names =
        |v: Value| -> Vec<String> { v["projects"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect() };
    assert_eq!(names(api.ok("/api/v1/projects", &t.user).await), ["shop"]);
    assert_eq!(names(api.ok("/api/v1/projects", &t.other).await), ["billing"]);
    assert_eq!(names(api.ok("/api/v1/projects", &t.member).await), ["billing"]);
    assert_eq!(names(api.ok("/api/v1/projects", &t.operator).await), ["billing", "shop"]);
    // And may read every endpoint of them.
    for (token, project, alert) in
        [(&t.user, "shop", api.ids.port_down), (&t.member, "billing", api.ids.billing), (&t.operator, "billing", api.ids.billing)]
    {
        for path in endpoints(project, alert) {
            let path = if project == "shop" { path } else { path.replace("web-01", "pay-01") };
            api.ok(&path, token).await;
        }
    }
    api.stop().await;
}

#[tokio::test]
async fn plain_users_see_no_contact_details_or_delivery_logs() {
    let api = Api::start().await;
    let t = &api.tokens;
    let detail = format!("/api/v1/projects/shop/alerts/{}", api.ids.port_down);
    for path in ["/api/v1/projects/shop", "/api/v1/projects/shop/monitors", detail.as_str()] {
        let body = api.ok(path, &t.user).await.to_string();
        assert!(!body.contains("@example.com") && !body.contains("+8210"), "GET {path} shows contacts to a plain user: {body}");
    }
    let project = api.ok("/api/v1/projects/shop", &t.user).await;
    assert_eq!(project["role"], "user");
    assert_eq!(
        project["members"],
        json!([{"name": "Alice Owner", "role": "owner"}, {"name": "Bob Admin", "role": "admin"}, {"name": "Carol User", "role": "user"}])
    );
    let alert = api.ok(&detail, &t.user).await;
    assert!(alert.get("notifications").is_none(), "{alert}");
    assert_eq!(alert["snapshot"], json!({"cpu": {"usage": 12.5}}));

    for (token, role) in [(&t.admin, "admin"), (&t.owner, "owner"), (&t.operator, "operator")] {
        let project = api.ok("/api/v1/projects/shop", token).await;
        assert_eq!(project["role"], role);
        assert_eq!(
            project["members"][0],
            json!({"name": "Alice Owner", "role": "owner", "email": "alice@example.com", "phone": "+821011111111"})
        );
        let monitors = api.ok("/api/v1/projects/shop/monitors", token).await;
        assert_eq!(monitors["port_monitors"][1]["notify"], json!(["alice@example.com"]), "{monitors}");
        let alert = api.ok(&detail, token).await;
        let notes = alert["notifications"].as_array().unwrap_or_else(|| panic!("{role} gets no delivery log: {alert}"));
        assert_eq!(notes.len(), 2);
        let mail = notes.iter().find(|n| n["medium"] == "email").unwrap();
        assert_eq!(
            (&mail["recipient"], &mail["status"], &mail["channel"]),
            (&json!("alice@example.com"), &json!("sent"), &json!("ops-mail"))
        );
        let attempts: Vec<(bool, Value)> =
            mail["attempts"].as_array().unwrap().iter().map(|a| (a["ok"].as_bool().unwrap(), a["error"].clone())).collect();
        assert_eq!(attempts, [(false, json!("smtp: connection refused")), (true, Value::Null)]);
        let sms = notes.iter().find(|n| n["medium"] == "sms").unwrap();
        assert_eq!((&sms["status"], sms["attempts"].as_array().unwrap().len()), (&json!("sent"), 1));
    }
    api.stop().await;
}

#[tokio::test]
async fn status_shows_revisions_and_counts_for_the_callers_scope() {
    let api = Api::start().await;
    let t = &api.tokens;
    let s = api.ok("/api/v1/status", &t.user).await;
    assert_eq!(s["reconcile"], "rejected");
    assert_eq!(s["applied"]["revision"], "aaaa111");
    assert_eq!(s["applied"]["at_ms"], api.now_ms - 60 * MIN);
    assert_eq!(s["rejected"]["revision"], "bbbb222");
    assert_eq!(s["rejected"]["diagnostic_count"], 1);
    assert_eq!((&s["rejected"]["errors"], &s["rejected"]["warnings"]), (&json!(1), &json!(0)));
    assert_eq!(s["applied"]["diagnostic_count"], 0);
    // Diagnostics name files and objects of every project: the operator's only.
    assert!(s["rejected"].get("diagnostics").is_none(), "{s}");
    assert_eq!(
        s["counts"],
        json!({"projects": 1, "servers": 3, "port_monitors": 2, "down_checks": 1, "alerts_firing": {"warning": 1, "fatal": 1}})
    );
    assert_eq!(s["started_at_ms"], api.now_ms);

    let s = api.ok("/api/v1/status", &t.operator).await;
    assert_eq!(s["rejected"]["diagnostics"][0]["rule"], "unknown-reference");
    assert_eq!(
        s["counts"],
        json!({"projects": 2, "servers": 4, "port_monitors": 3, "down_checks": 1, "alerts_firing": {"warning": 1, "fatal": 2}})
    );

    let s = api.ok("/api/v1/status", &t.member).await;
    assert_eq!(
        s["counts"],
        json!({"projects": 1, "servers": 1, "port_monitors": 1, "down_checks": 0, "alerts_firing": {"warning": 0, "fatal": 1}})
    );
    api.stop().await;
}

#[tokio::test]
async fn servers_are_filtered_searched_and_sorted_by_state() {
    let api = Api::start().await;
    let token = &api.tokens.user;
    let list = |v: Value| -> Vec<(String, String)> {
        v["servers"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap().into(), s["state"].as_str().unwrap().into())).collect()
    };
    let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> { items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect() };
    let all = api.ok("/api/v1/projects/shop/servers", token).await;
    assert_eq!(list(all.clone()), pairs(&[("db-01", "warning"), ("old-01", "paused"), ("web-01", "fatal")]));
    let web = &all["servers"][2];
    assert_eq!(web["host"], "203.0.113.10");
    assert_eq!(web["private_ip"], "10.0.0.10");
    assert_eq!(web["os"], "linux");
    assert_eq!(web["tags"], json!(["web", "prod"]));
    assert_eq!(web["paused"], false);
    assert_eq!(web["policy"], json!({"scope": "shared", "name": "web-server"}));
    assert_eq!(web["alerts_firing"], json!({"warning": 0, "fatal": 1}));

    let sorted = api.ok("/api/v1/projects/shop/servers?sort=state", token).await;
    assert_eq!(list(sorted), pairs(&[("web-01", "fatal"), ("db-01", "warning"), ("old-01", "paused")]));
    assert_eq!(list(api.ok("/api/v1/projects/shop/servers?tag=web", token).await), pairs(&[("old-01", "paused"), ("web-01", "fatal")]));
    assert_eq!(list(api.ok("/api/v1/projects/shop/servers?q=10.0.0.2", token).await), pairs(&[("db-01", "warning")]));
    assert_eq!(list(api.ok("/api/v1/projects/shop/servers?q=WEB&tag=prod", token).await), pairs(&[("web-01", "fatal")]));
    assert_eq!(list(api.ok("/api/v1/projects/shop/servers?q=203.0.113.3", token).await), pairs(&[("old-01", "paused")]));

    let r = api.get("/api/v1/projects/shop/servers?sort=size", token).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&r).starts_with("invalid `sort`"), "{}", r.body);
    let r = api.get("/api/v1/projects/shop/servers?colour=red", token).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&r).contains("`colour`"), "{}", r.body);
    api.stop().await;
}

#[tokio::test]
async fn alerts_are_filtered_and_bad_parameters_are_named() {
    let api = Api::start().await;
    let token = &api.tokens.user;
    let ids = |v: Value| -> Vec<i64> { v["alerts"].as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()).collect() };
    let (port, resolved, down) = (api.ids.port_down, api.ids.resolved, api.ids.downcheck);
    let base = "/api/v1/projects/shop/alerts";
    // Newest first; billing's alert never shows in shop.
    assert_eq!(ids(api.ok(base, token).await), [port, down, resolved]);
    assert_eq!(ids(api.ok(&format!("{base}?status=firing"), token).await), [port, down]);
    assert_eq!(ids(api.ok(&format!("{base}?status=resolved"), token).await), [resolved]);
    assert_eq!(ids(api.ok(&format!("{base}?severity=fatal"), token).await), [port]);
    assert_eq!(ids(api.ok(&format!("{base}?server=db-01"), token).await), [down, resolved]);
    assert_eq!(ids(api.ok(&format!("{base}?limit=1"), token).await), [port]);
    let june = format!("{base}?from=2025-05-31T00:00:00Z&to=2025-06-02T00:00:00%2B09:00");
    assert_eq!(ids(api.ok(&june, token).await), [resolved]);
    let last_hour = format!("{base}?from={}", api.now_ms - 60 * MIN);
    assert_eq!(ids(api.ok(&last_hour, token).await), [port, down]);

    let list = api.ok(&format!("{base}?status=resolved"), token).await;
    let a = &list["alerts"][0];
    assert_eq!(a["server"], "db-01");
    assert_eq!(a["severity"], "warning");
    assert_eq!(a["resolve_reason"], "recovered");
    // Times in the project's timezone (Asia/Seoul).
    assert_eq!(a["started_at"], "2025-06-01T09:00:00+09:00");
    assert_eq!(a["resolved_at"], "2025-06-01T10:00:00+09:00");
    assert!(a.get("snapshot").is_none(), "the list leaves snapshots to the detail");

    for (query, param) in [
        ("status=open", "status"),
        ("severity=critical", "severity"),
        ("from=yesterday", "from"),
        ("to=2025-13-01T00:00:00Z", "to"),
        ("from=2000&to=1000", "from"),
        ("limit=0", "limit"),
        ("sevrity=fatal", "sevrity"),
    ] {
        let r = api.get(&format!("{base}?{query}"), token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "?{query}: {}", r.body);
        assert!(error_of(&r).contains(&format!("`{param}`")), "?{query}: {}", r.body);
    }
    api.stop().await;
}

#[tokio::test]
async fn an_alert_of_another_project_is_404() {
    let api = Api::start().await;
    let op = &api.tokens.operator;
    let r = api.get(&format!("/api/v1/projects/shop/alerts/{}", api.ids.billing), op).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(!r.body.to_string().contains("pay-01"));
    for id in ["999999", "abc"] {
        let r = api.get(&format!("/api/v1/projects/shop/alerts/{id}"), op).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}: {}", r.body);
    }
    let a = api.ok(&format!("/api/v1/projects/billing/alerts/{}", api.ids.billing), op).await;
    assert_eq!(
        (&a["server"], &a["rule"], &a["subject"], &a["status"]),
        (&json!("pay-01"), &json!("port:pay-01-ports"), &json!("443"), &json!("firing"))
    );
    assert_eq!(a["notifications"][0]["status"], "pending");
    assert_eq!(a["notifications"][0]["attempts"], json!([]));
    assert_eq!(a["notifications"][0]["reason"], Value::Null);
    // A notification held back says why.
    let held = &a["notifications"][1];
    assert_eq!(
        (&held["recipient"], &held["status"], &held["reason"]),
        (&json!("dave@example.com"), &json!("not_sent"), &json!("parent `core-01` is down"))
    );
    api.stop().await;
}

impl Api {
    /// POST a body to `path` with an optional `Authorization` value.
    async fn post(&self, path: &str, auth: Option<&str>, body: &str) -> Reply {
        let req = self.client.post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body.to_string());
        self.send(req, path, auth).await
    }

    /// POST an acknowledgement note with `Bearer <token>`.
    async fn ack(&self, project: &str, alert: impl std::fmt::Display, token: &str, body: &str) -> Reply {
        self.post(&format!("/api/v1/projects/{project}/alerts/{alert}/acks"), Some(&format!("Bearer {token}")), body).await
    }
}

#[tokio::test]
async fn any_role_acknowledges_a_firing_alert_and_later_notes_append_with_who_and_when() {
    let api = Api::start().await;
    let t = &api.tokens;
    let path = format!("/api/v1/projects/shop/alerts/{}", api.ids.port_down);
    let before = api.ok(&path, &t.user).await;
    assert_eq!((&before["acknowledged"], &before["acks"]), (&json!(false), &json!([])));

    // carol is a plain user of the project's group: enough to acknowledge.
    let r = api.ack("shop", api.ids.port_down, &t.user, r#"{"note": "  restarted nginx on web-01  "}"#).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!((&r.body["by"], &r.body["note"]), (&json!("carol@example.com"), &json!("restarted nginx on web-01")));
    let first_at = r.body["at_ms"].as_i64().unwrap();
    assert!(first_at >= api.now_ms, "{}", r.body);
    assert!(r.body["at"].as_str().unwrap().ends_with("+09:00"), "in the project's timezone: {}", r.body);

    // A later note appends; the operator is recorded as `operator`; 2 000 characters of Hangul fit.
    let long = "가".repeat(2000);
    let r = api.ack("shop", api.ids.port_down, &t.operator, &json!({ "note": long }).to_string()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let after = api.ok(&path, &t.user).await;
    assert_eq!(after["acknowledged"], true);
    let acks: Vec<(&str, &str)> =
        after["acks"].as_array().unwrap().iter().map(|a| (a["by"].as_str().unwrap(), a["note"].as_str().unwrap())).collect();
    assert_eq!(acks, [("carol@example.com", "restarted nginx on web-01"), ("operator", long.as_str())]);
    assert_eq!(after["acks"][0]["at_ms"], first_at);

    // The list shows it too, and only on that alert.
    let list = api.ok("/api/v1/projects/shop/alerts?status=firing", &t.user).await;
    let shown: Vec<(i64, bool, usize)> = list["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_i64().unwrap(), a["acknowledged"].as_bool().unwrap(), a["acks"].as_array().unwrap().len()))
        .collect();
    assert_eq!(shown, [(api.ids.port_down, true, 2), (api.ids.downcheck, false, 0)]);
    // dave, a `user` member of billing (no group), acknowledges billing's alert.
    let r = api.ack("billing", api.ids.billing, &t.member, r#"{"note":"looking"}"#).await;
    assert_eq!((r.status, &r.body["by"]), (StatusCode::CREATED, &json!("dave@example.com")));
    api.stop().await;
}

#[tokio::test]
async fn acknowledging_refuses_resolved_alerts_bad_bodies_and_callers_outside_the_scope_and_records_nothing() {
    let api = Api::start().await;
    let t = &api.tokens;
    let port = api.ids.port_down;
    let good = r#"{"note": "on it"}"#;

    // A resolved alert: 409, and nothing recorded.
    let r = api.ack("shop", api.ids.resolved, &t.owner, good).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(error_of(&r).contains("resolved"), "{}", r.body);

    // Outside the scope or not in the project: the same 404 as for a missing project or alert.
    for (project, alert, token, error) in [
        ("shop", port.to_string(), &t.other, "project `shop` not found"),
        ("shop", port.to_string(), &t.member, "project `shop` not found"),
        ("billing", api.ids.billing.to_string(), &t.user, "project `billing` not found"),
        ("nowhere", port.to_string(), &t.operator, "project `nowhere` not found"),
        ("shop", api.ids.billing.to_string(), &t.operator, &*format!("alert `{}` not found in project `shop`", api.ids.billing)),
        ("shop", "999999".to_string(), &t.operator, "alert `999999` not found in project `shop`"),
        ("shop", "abc".to_string(), &t.operator, "alert `abc` not found in project `shop`"),
    ] {
        let r = api.ack(project, &alert, token, good).await;
        assert_eq!((r.status, error_of(&r)), (StatusCode::NOT_FOUND, error), "{project}/{alert}");
    }

    // Bad bodies: 400, saying what is wrong.
    let too_long = json!({ "note": "x".repeat(2001) }).to_string();
    for (body, says) in [
        ("", "JSON object"),
        ("note=on+it", "JSON object"),
        ("[\"on it\"]", "JSON object"),
        ("{}", "missing field `note`"),
        (r#"{"note": 5}"#, "invalid type"),
        (r#"{"note": "on it", "by": "mallory@example.com"}"#, "unknown field `by`"),
        (r#"{"note": "   "}"#, "`note` is empty"),
        (too_long.as_str(), "`note` has 2001 characters; at most 2000"),
    ] {
        let r = api.ack("shop", port, &t.user, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body:.40}: {}", r.body);
        assert!(error_of(&r).contains(says), "{body:.40}: {}", r.body);
    }

    // No token, a malformed or unknown one, a token's hash as the token: 401.
    let path = format!("/api/v1/projects/shop/alerts/{port}/acks");
    let hash_as_token = format!("Bearer {}", watchkeeper::token::sha256_hex(&t.user));
    for auth in [None, Some("Basic Y2Fyb2w6c2VjcmV0"), Some("Bearer"), Some("Bearer wk_not-a-token"), Some(hash_as_token.as_str())] {
        let r = api.post(&path, auth, good).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}: {}", r.body);
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }
    // Reading the note list is GET on the alert; the acks path itself takes POST only.
    let r = api.get(&path, &t.user).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);

    // None of that left a trace.
    for id in [port, api.ids.resolved, api.ids.billing] {
        let a = api.store.get_alert(id).await.unwrap().unwrap();
        assert_eq!(a.acknowledged_at_ms, None, "alert {id}");
    }
    assert!(api.store.acks_for(&[port, api.ids.resolved, api.ids.billing]).await.unwrap().is_empty());
    api.stop().await;
}

#[tokio::test]
async fn monitors_show_each_ports_last_check_and_firing_alerts() {
    let api = Api::start().await;
    let m = api.ok("/api/v1/projects/shop/monitors", &api.tokens.user).await;
    let monitors = m["port_monitors"].as_array().unwrap();
    assert_eq!(monitors.len(), 2);
    let stats = &monitors[0];
    assert_eq!((&stats["name"], &stats["host"], &stats["server"]), (&json!("stats"), &json!("203.0.113.40"), &Value::Null));
    // Its only check is from 2025: still the newest.
    assert_eq!(stats["ports"][0]["last"]["error_kind"], "refused");
    assert_eq!(stats["alert_firing"], false);

    let web = &monitors[1];
    assert_eq!(
        (&web["name"], &web["server"], &web["interval"], &web["timeout"]),
        (&json!("web-01-ports"), &json!("web-01"), &json!("1m"), &json!("5s"))
    );
    assert_eq!((&web["failures"], &web["recoveries"], &web["sms"]), (&json!(3), &json!(1), &json!(true)));
    assert_eq!(web["alert_firing"], true);
    let p22 = &web["ports"][0];
    assert_eq!(
        (&p22["port"], &p22["last"]["ok"], &p22["last"]["latency_ms"], &p22["firing"]),
        (&json!(22), &json!(true), &json!(3), &Value::Null)
    );
    assert_eq!(p22["last"]["at_ms"], api.now_ms - MIN);
    let p80 = &web["ports"][1];
    assert_eq!(
        (&p80["port"], &p80["last"]["ok"], &p80["last"]["error"], &p80["firing"]),
        (&json!(80), &json!(false), &json!("connection refused"), &json!("fatal"))
    );

    let down = &m["down_checks"][0];
    assert_eq!((&down["name"], &down["detector"], &down["target"]), (&json!("web-01-to-db-01-5432"), &json!("web-01"), &json!("db-01")));
    assert_eq!(
        (&down["ip"], &down["port"], &down["liveness_port"], &down["firing"]),
        (&json!("10.0.0.20"), &json!(5432), &json!(22), &json!("warning"))
    );
    api.stop().await;
}

#[tokio::test]
async fn a_monitor_log_counts_failures_per_period_in_the_project_timezone() {
    let api = Api::start().await;
    let token = &api.tokens.user;
    let range = "from=2025-03-01T00:00:00%2B09:00&to=2025-03-10T00:00:00%2B09:00";
    let log = api.ok(&format!("/api/v1/projects/shop/monitors/web-01-ports/log?by=day&{range}"), token).await;
    // 14:00Z and 16:30Z on the 4th are 23:00 on the 4th and 01:30 on the 5th in Seoul.
    assert_eq!(log["counts"], json!([{"period": "2025-03-04", "failures": 1}, {"period": "2025-03-05", "failures": 2}]));
    assert_eq!((&log["timezone"], &log["by"], &log["truncated"]), (&json!("Asia/Seoul"), &json!("day"), &json!(false)));
    let failures: Vec<(String, u64, String)> = log["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["at"].as_str().unwrap().into(), f["port"].as_u64().unwrap(), f["error"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        failures,
        [
            ("2025-03-05T11:00:00+09:00".to_string(), 22, "no route to host".to_string()),
            ("2025-03-05T01:30:00+09:00".to_string(), 80, "connection refused".to_string()),
            ("2025-03-04T23:00:00+09:00".to_string(), 80, "timed out after 5s".to_string()),
        ]
    );
    assert_eq!(log["failures"][2]["error_kind"], "timeout");

    let by = |period: &str| format!("/api/v1/projects/shop/monitors/web-01-ports/log?by={period}&{range}");
    assert_eq!(api.ok(&by("month"), token).await["counts"], json!([{"period": "2025-03", "failures": 3}]));
    assert_eq!(api.ok(&by("year"), token).await["counts"], json!([{"period": "2025", "failures": 3}]));
    assert_eq!(
        api.ok(&by("hour"), token).await["counts"],
        json!([{"period": "2025-03-04T23", "failures": 1}, {"period": "2025-03-05T01", "failures": 1}, {"period": "2025-03-05T11", "failures": 1}])
    );
    // Without a range: the last 31 days, where port 80 failed three times.
    let recent = api.ok("/api/v1/projects/shop/monitors/web-01-ports/log", token).await;
    assert_eq!(recent["failures"].as_array().unwrap().len(), 3, "{recent}");

    let r = api.get(&by("week"), token).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&r).starts_with("invalid `by`"));
    let r = api.get("/api/v1/projects/shop/monitors/nope/log", token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&r), "port monitor `nope` not found in project `shop`");
    api.stop().await;
}

#[tokio::test]
async fn stats_is_not_taken_for_a_monitor_name_and_a_monitor_named_stats_has_a_log() {
    let api = Api::start().await;
    let token = &api.tokens.user;
    // The e-mail and the SMS went out 3 minutes ago: counted in that month of the project's
    // timezone (Asia/Seoul).
    let sent_at =
        jiff::Timestamp::from_millisecond(api.now_ms - 3 * MIN + 3000).unwrap().to_zoned(jiff::tz::TimeZone::get("Asia/Seoul").unwrap());
    let (year, month) = (sent_at.year(), sent_at.month() as usize);
    let stats = api.ok(&format!("/api/v1/projects/shop/monitors/stats?year={year}"), token).await;
    assert_eq!((&stats["year"], &stats["timezone"]), (&json!(year), &json!("Asia/Seoul")));
    assert_eq!(
        stats["hosts"],
        json!([{"host": "203.0.113.10", "email": 1, "sms": 1, "webhook": 0, "not_sent": 0, "read": 0, "delivered": 0, "failed": 0}])
    );
    let none = json!({"sent": 0, "not_sent": 0, "failed": 0, "read": 0, "delivered": 0});
    let one = json!({"sent": 1, "not_sent": 0, "failed": 0, "read": 0, "delivered": 0});
    let quiet = json!({"email": none, "sms": none, "webhook": none});
    let notified = json!({"email": one, "sms": one, "webhook": none});
    let monitors = stats["monitors"].as_array().unwrap();
    let names: Vec<_> = monitors
        .iter()
        .map(|m| (m["monitor"].as_str().unwrap(), m["host"].as_str().unwrap(), m["configured"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("stats", "203.0.113.40", true), ("web-01-ports", "203.0.113.10", true)]);
    assert_eq!((&monitors[0]["total"], &monitors[1]["total"]), (&quiet, &notified));
    let months = monitors[1]["months"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    for (i, m) in months.iter().enumerate() {
        assert_eq!(m, if i + 1 == month { &notified } else { &quiet }, "month {}", i + 1);
    }
    assert_eq!(api.ok("/api/v1/projects/shop/monitors/stats?year=2020", token).await["hosts"], json!([]));
    let r = api.get("/api/v1/projects/shop/monitors/stats?year=twenty", token).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&r).starts_with("invalid `year`"));

    let log = api.ok("/api/v1/projects/shop/monitors/stats/log?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", token).await;
    assert_eq!(log["monitor"], "stats");
    assert_eq!(log["failures"][0]["port"], 443);
    api.stop().await;
}

#[tokio::test]
async fn availability_has_a_timeline_and_uptime_per_port() {
    let api = Api::start().await;
    let token = &api.tokens.user;
    let a = api.ok("/api/v1/projects/shop/availability?days=1", token).await;
    assert_eq!((&a["days"], &a["bucket_ms"]), (&json!(1), &json!(300_000)));
    assert_eq!(a["to_ms"].as_i64().unwrap() - a["from_ms"].as_i64().unwrap(), 86_400_000);
    let targets = a["targets"].as_array().unwrap();
    let row = |monitor: &str, port: u16| targets.iter().find(|t| t["monitor"] == monitor && t["port"] == port).unwrap();
    let p22 = row("web-01-ports", 22);
    assert_eq!((&p22["ok"], &p22["failed"], &p22["uptime_percent"]), (&json!(3), &json!(0), &json!(100.0)));
    assert_eq!(p22["latency_ms"], json!({"min_ms": 3, "avg_ms": 3.0, "max_ms": 3, "p50_ms": 3, "p95_ms": 3, "p99_ms": 3}));
    let p80 = row("web-01-ports", 80);
    assert_eq!((&p80["ok"], &p80["failed"], &p80["uptime_percent"]), (&json!(1), &json!(3), &json!(25.0)));
    let buckets = p80["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty() && buckets.len() <= 2, "four checks a minute apart fill one or two 5-minute buckets: {p80}");
    let starts: Vec<i64> = buckets.iter().map(|b| b["start_ms"].as_i64().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]) && starts.iter().all(|s| s % 300_000 == 0), "{starts:?}");
    // The 2025 check of `stats` is outside the window: no data, no uptime.
    let stats = row("stats", 443);
    assert_eq!((&stats["uptime_percent"], &stats["buckets"]), (&Value::Null, &json!([])));

    let week = api.ok("/api/v1/projects/shop/availability?days=7", token).await;
    assert_eq!((&week["bucket_ms"], &week["days"]), (&json!(3_600_000), &json!(7)));
    assert_eq!(api.ok("/api/v1/projects/shop/availability?days=30", token).await["bucket_ms"], 3_600_000);
    // A year in UTC days: the days not rolled up yet come from the hourly rollups.
    let year = api.ok("/api/v1/projects/shop/availability?days=365", token).await;
    assert_eq!(year["bucket_ms"], 86_400_000);
    assert_eq!(year["to_ms"].as_i64().unwrap() % 86_400_000, 0);
    let p80 = year["targets"].as_array().unwrap().iter().find(|t| t["monitor"] == "web-01-ports" && t["port"] == 80).unwrap();
    assert_eq!((&p80["ok"], &p80["failed"]), (&json!(1), &json!(3)), "{p80}");
    let r = api.get("/api/v1/projects/shop/availability?days=2", token).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&r).starts_with("invalid `days`"));
    api.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405_as_json() {
    let api = Api::start().await;
    let op = format!("Bearer {}", api.tokens.operator);
    for path in ["/nope", "/api/v1", "/api/v1/projects/shop/nope", "/api/v1/projects/shop/monitors/web-01-ports"] {
        let r = api.request(reqwest::Method::GET, path, Some(&op)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_of(&r), "no such endpoint");
    }
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/status"),
        (reqwest::Method::DELETE, "/api/v1/projects/shop"),
        (reqwest::Method::PUT, "/api/v1/projects/shop/servers"),
        (reqwest::Method::POST, "/healthz"),
    ] {
        let r = api.request(method.clone(), path, Some(&op)).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(error_of(&r).contains("read-only"), "{method} {path}: {}", r.body);
    }
    api.stop().await;
}

#[tokio::test]
async fn a_new_revision_changes_what_a_token_sees_without_a_restart() {
    let api = Api::start().await;
    let t = &api.tokens;
    api.ok("/api/v1/projects/shop", &t.user).await;
    // The next revision drops carol from the platform group and makes dave a shop admin.
    let mut next = (**api.config.borrow()).clone();
    next.groups.get_mut("platform").unwrap().users.clear();
    let shop = next.projects.get_mut("shop").unwrap();
    shop.members
        .push(watchkeeper::config::model::Member { user: "dave@example.com".into(), role: watchkeeper::config::raw::MemberRole::Admin });
    api.config.send(Arc::new(next)).unwrap();

    assert_eq!(api.get("/api/v1/projects/shop", &t.user).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.ok("/api/v1/projects", &t.user).await["projects"], json!([]));
    let shop = api.ok("/api/v1/projects/shop", &t.member).await;
    assert_eq!(shop["role"], "admin");
    let dave = shop["members"].as_array().unwrap().iter().find(|m| m["name"] == "Dave Member").unwrap().clone();
    assert_eq!(dave, json!({"name": "Dave Member", "role": "admin", "email": "dave@example.com"}));
    // The store is shared with the rest of serve: a new alert shows at once.
    let k = key("shop", "old-01", "port:legacy", "21");
    let change = open(Severity::Warning, api.now_ms, "port 21 refused", "203.0.113.30");
    api.store.apply_alert(&k, &firing(Severity::Warning, api.now_ms), None, Some(&change), &[], api.now_ms).await.unwrap();
    let firing_now = api.ok("/api/v1/projects/shop/alerts?status=firing", &t.member).await;
    assert_eq!(firing_now["alerts"].as_array().unwrap().len(), 3);
    api.stop().await;
}

// ---- host metrics: the server list's columns, the server page, series, an alert's metrics ----

const SEC: i64 = 1_000;

fn values(metrics: &[(&'static str, Option<&str>, f64)]) -> Vec<MetricValue> {
    metrics.iter().map(|&(name, subject, value)| MetricValue { name, subject: subject.map(str::to_string), value }).collect()
}

fn host_report(at_ms: i64, metrics: &[(&'static str, Option<&str>, f64)]) -> Report {
    Report {
        facts: Facts::default(),
        metrics: values(metrics),
        processes: Vec::new(),
        process_counts: Default::default(),
        skipped_mounts: Vec::new(),
        at_ms,
    }
}

fn process(pid: u32, name: &str, cpu: Option<f64>, memory: f64, rss_bytes: u64) -> ProcessInfo {
    ProcessInfo { pid, name: name.into(), user: "www-data".into(), cpu, memory, rss_bytes }
}

/// web-01's newest report: two mounts, two devices, two interfaces, four processes listed of six.
fn web_report(at_ms: i64) -> Report {
    let mut r = host_report(
        at_ms,
        &[
            ("cpu.usage", None, 37.5),
            ("cpu.idle", None, 62.5),
            ("memory.usage", None, 62.5),
            ("load.1", None, 1.25),
            ("disk.usage", Some("/"), 75.0),
            ("disk.used_bytes", Some("/"), 30e9),
            ("disk.free_bytes", Some("/"), 10e9),
            ("disk.usage", Some("/data"), 12.5),
            ("disk.used_bytes", Some("/data"), 10e9),
            ("disk.free_bytes", Some("/data"), 50e9),
            ("disk.io", Some("sda"), 20.0),
            ("disk.iops", Some("sda"), 100.0),
            ("disk.read_bps", Some("sda"), 1000.0),
            ("disk.write_bps", Some("sda"), 3000.0),
            ("disk.io", Some("sdb"), 60.0),
            ("disk.iops", Some("sdb"), 50.0),
            ("disk.read_bps", Some("sdb"), 500.0),
            ("disk.write_bps", Some("sdb"), 0.0),
            ("network.in_bps", Some("eth0"), 1e6),
            ("network.out_bps", Some("eth0"), 3e6),
            ("network.in_bps", Some("eth1"), 5e5),
            ("network.out_bps", Some("eth1"), 5e5),
            // Values that do not fit their metric are left out, not misfiled.
            ("cpu.usage", Some("cpu0"), 99.0),
            ("disk.io", None, 99.0),
        ],
    );
    r.facts = Facts {
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        kernel: "6.1.0-18-amd64".into(),
        cpu_vendor: "GenuineIntel".into(),
        cpu_model: "Intel(R) Xeon(R) E-2236".into(),
        cpu_count: 12,
        ram_total_bytes: 8 << 30,
        boot_time: 1_700_000_000,
        uptime_secs: 3 * 86_400 + 43_200,
        ips: vec!["203.0.113.10".parse().unwrap(), "2001:db8::10".parse().unwrap()],
    };
    r.processes = vec![
        process(10, "nginx", Some(5.0), 1.0, 100),
        process(11, "nginx", Some(2.5), 2.0, 200),
        process(20, "postgres", None, 4.0, 400),
        process(30, "bash", Some(0.5), 0.25, 25),
    ];
    r.process_counts = [("bash", 1), ("cron", 1), ("nginx", 3), ("postgres", 1)].into_iter().map(|(n, c)| (n.to_string(), c)).collect();
    r
}

impl Api {
    /// web-01 reported just now; db-01 last reported 31 s ago; old-01 never did.
    fn report_live(&self) {
        self.live.update("shop", "web-01", Arc::new(web_report(self.now_ms - 2 * SEC)), self.now_ms);
        let db = host_report(self.now_ms - 31 * SEC, &[("cpu.usage", None, 90.0), ("memory.usage", None, 10.0)]);
        self.live.update("shop", "db-01", Arc::new(db), self.now_ms - 31 * SEC);
    }

    /// Store `reports` of one server as raw samples, as the collector's writer does.
    async fn store_samples(&self, server: &str, reports: &[Report]) {
        let batch: Vec<StoredReport> = reports.iter().map(|report| StoredReport { project: "shop", server, report }).collect();
        self.store.insert_reports(&batch).await.unwrap();
    }
}

fn names(v: &Value) -> Vec<&str> {
    v["servers"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn server_list_columns_come_from_the_newest_report() {
    let api = Api::start().await;
    api.report_live();
    let all = api.ok("/api/v1/projects/shop/servers", &api.tokens.user).await;
    assert_eq!((&all["total"], &all["offset"], &all["limit"]), (&json!(3), &json!(0), &json!(1000)));
    assert_eq!(names(&all), ["db-01", "old-01", "web-01"]);
    let web = &all["servers"][2];
    assert_eq!(web["os_name"], "Debian GNU/Linux 12 (bookworm)");
    assert_eq!(web["ips"], json!(["203.0.113.10", "2001:db8::10"]));
    assert_eq!((&web["cpu_percent"], &web["memory_percent"]), (&json!(37.5), &json!(62.5)));
    // Space: 40 GB used of 100 GB over both mounts; the fullest mount is at 75 %.
    assert_eq!(web["disk_percent"], json!({"all": 40.0, "max": 75.0}));
    // In + out per interface: eth0 4 Mbit/s, eth1 1 Mbit/s.
    assert_eq!(web["network_bps"], json!({"all": 5e6, "max": 4e6}));
    assert_eq!((&web["cpu_vendor"], &web["ram_bytes"], &web["uptime_days"]), (&json!("GenuineIntel"), &json!(8u64 << 30), &json!(3)));
    // IO busy %: the mean over devices and the busiest; IOPS and bytes/s: the sum and the busiest.
    assert_eq!(web["disk_io_percent"], json!({"all": 40.0, "max": 60.0}));
    assert_eq!(web["disk_iops"], json!({"all": 150.0, "max": 100.0}));
    assert_eq!(web["disk_bps"], json!({"all": 4500.0, "max": 4000.0}));
    assert_eq!((&web["last_report_at_ms"], &web["reporting"]), (&json!(api.now_ms), &json!(true)));
    let seoul = jiff::Timestamp::from_millisecond(api.now_ms).unwrap().to_zoned(jiff::tz::TimeZone::get("Asia/Seoul").unwrap());
    assert_eq!(web["last_report_at"], seoul.strftime("%Y-%m-%dT%H:%M:%S+09:00").to_string());
    // The state stays what the alerts say.
    assert_eq!(web["state"], "fatal");

    // db-01 fell silent 31 s ago and reports neither disks nor interfaces.
    let db = &all["servers"][0];
    assert_eq!((&db["cpu_percent"], &db["reporting"], &db["state"]), (&json!(90.0), &json!(false), &json!("warning")));
    assert_eq!(db["disk_percent"], json!({"all": null, "max": null}));
    assert_eq!(db["network_bps"], json!({"all": null, "max": null}));
    assert_eq!(db["os_name"], "");
    // old-01 never reported: every column null, not reporting.
    let old = &all["servers"][1];
    for column in [
        "os_name",
        "ips",
        "cpu_percent",
        "memory_percent",
        "disk_percent",
        "network_bps",
        "cpu_vendor",
        "ram_bytes",
        "uptime_days",
        "disk_io_percent",
        "disk_iops",
        "disk_bps",
        "last_report_at_ms",
        "last_report_at",
    ] {
        assert_eq!(old[column], Value::Null, "{column} of a server that never reported");
    }
    assert_eq!(old["reporting"], false);
    api.stop().await;
}

#[tokio::test]
async fn server_list_sorts_by_numbers_with_missing_values_last_and_pages() {
    let api = Api::start().await;
    api.report_live();
    let token = &api.tokens.user;
    let a = &api;
    let list = |query: &'static str| async move { a.ok(&format!("/api/v1/projects/shop/servers?{query}"), token).await };
    assert_eq!(names(&list("sort=cpu").await), ["db-01", "web-01", "old-01"]);
    assert_eq!(names(&list("sort=memory").await), ["web-01", "db-01", "old-01"]);
    // Neither db-01 nor old-01 has a disk: both last, in name order.
    assert_eq!(names(&list("sort=disk").await), ["web-01", "db-01", "old-01"]);
    assert_eq!(names(&list("sort=network").await), ["web-01", "db-01", "old-01"]);
    assert_eq!(names(&list("sort=name").await), ["db-01", "old-01", "web-01"]);
    assert_eq!(names(&list("sort=state").await), ["web-01", "db-01", "old-01"]);
    // `q` also finds the addresses the agent reported.
    assert_eq!(names(&list("q=2001:DB8").await), ["web-01"]);

    let page = list("sort=cpu&limit=1&offset=1").await;
    assert_eq!((&page["total"], &page["offset"], &page["limit"]), (&json!(3), &json!(1), &json!(1)));
    assert_eq!(names(&page), ["web-01"]);
    let filtered = list("tag=web&limit=1").await;
    assert_eq!((names(&filtered), &filtered["total"]), (vec!["old-01"], &json!(2)));
    let past = list("offset=3").await;
    assert_eq!((names(&past).len(), &past["total"]), (0, &json!(3)));

    for (query, param) in [("limit=0", "limit"), ("limit=10001", "limit"), ("offset=-1", "offset"), ("sort=uptime", "sort")] {
        let r = api.get(&format!("/api/v1/projects/shop/servers?{query}"), token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "?{query}: {}", r.body);
        assert!(error_of(&r).contains(&format!("`{param}`")), "?{query}: {}", r.body);
    }
    api.stop().await;
}

#[tokio::test]
async fn server_detail_groups_the_latest_values_and_sorts_processes() {
    let api = Api::start().await;
    api.report_live();
    let token = &api.tokens.user;
    let web = api.ok("/api/v1/projects/shop/servers/web-01", token).await;
    assert_eq!(
        (&web["name"], &web["host"], &web["state"], &web["timezone"]),
        (&json!("web-01"), &json!("203.0.113.10"), &json!("fatal"), &json!("Asia/Seoul"))
    );
    assert_eq!((&web["metrics_source"], &web["metrics_url"]), (&json!("agent"), &Value::Null));
    assert_eq!(web["disk_percent"], json!({"all": 40.0, "max": 75.0}));
    assert_eq!((&web["facts"]["kernel"], &web["facts"]["cpu_count"]), (&json!("6.1.0-18-amd64"), &json!(12)));
    assert_eq!(web["report_at_ms"], api.now_ms - 2 * SEC);
    assert_eq!(web["latest"]["host"], json!({"cpu.idle": 62.5, "cpu.usage": 37.5, "load.1": 1.25, "memory.usage": 62.5}));
    assert_eq!(
        web["latest"]["mounts"],
        json!({"/": {"disk.free_bytes": 10e9, "disk.usage": 75.0, "disk.used_bytes": 30e9},
               "/data": {"disk.free_bytes": 50e9, "disk.usage": 12.5, "disk.used_bytes": 10e9}})
    );
    assert_eq!(web["latest"]["devices"]["sdb"], json!({"disk.io": 60.0, "disk.iops": 50.0, "disk.read_bps": 500.0, "disk.write_bps": 0.0}));
    assert_eq!(web["latest"]["interfaces"]["eth1"], json!({"network.in_bps": 5e5, "network.out_bps": 5e5}));
    assert_eq!(web["latest"]["devices"].as_object().unwrap().len(), 2, "the subject-less disk.io is left out");

    // Processes: by CPU by default (no CPU figure yet: last), six on the machine, four listed.
    assert_eq!((&web["processes"]["sort"], &web["processes"]["total"]), (&json!("cpu"), &json!(6)));
    let pids = |v: &Value| -> Vec<u64> { v["processes"]["items"].as_array().unwrap().iter().map(|p| p["pid"].as_u64().unwrap()).collect() };
    assert_eq!(pids(&web), [10, 11, 30, 20]);
    assert_eq!(
        web["processes"]["items"][0],
        json!({"pid": 10, "name": "nginx", "user": "www-data", "cpu": 5.0, "memory": 1.0, "rss_bytes": 100})
    );
    let a = &api;
    let detail = |query: &'static str| async move { a.ok(&format!("/api/v1/projects/shop/servers/web-01?{query}"), token).await };
    assert_eq!(pids(&detail("sort=memory").await), [20, 11, 10, 30]);
    assert_eq!(pids(&detail("sort=name").await), [30, 10, 11, 20]);
    assert_eq!(pids(&detail("sort=cpu&limit=2").await), [10, 11]);
    // Per name: every process counted (cron is not listed), CPU and memory summed over the listed.
    let by_name = detail("sort=count&limit=3").await;
    assert_eq!(
        by_name["processes"]["items"],
        json!([
            {"name": "nginx", "count": 3, "cpu": 7.5, "memory": 3.0, "rss_bytes": 300},
            {"name": "bash", "count": 1, "cpu": 0.5, "memory": 0.25, "rss_bytes": 25},
            {"name": "cron", "count": 1, "cpu": 0.0, "memory": 0.0, "rss_bytes": 0},
        ])
    );

    // Alerts: the firing ones, and the newest 20 of any status.
    let ids = |v: &Value| -> Vec<i64> { v.as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()).collect() };
    assert_eq!(ids(&web["firing_alerts"]), [api.ids.port_down]);
    assert_eq!(ids(&web["recent_alerts"]), [api.ids.port_down]);
    let db = api.ok("/api/v1/projects/shop/servers/db-01", token).await;
    assert_eq!(ids(&db["firing_alerts"]), [api.ids.downcheck]);
    assert_eq!(ids(&db["recent_alerts"]), [api.ids.downcheck, api.ids.resolved]);
    assert_eq!(db["recent_alerts"][1]["resolved_at"], "2025-06-01T10:00:00+09:00");
    assert_eq!((&db["reporting"], &db["latest"]["mounts"]), (&json!(false), &json!({})));

    // Never reported: the configuration and alerts, nothing live.
    let old = api.ok("/api/v1/projects/shop/servers/old-01", token).await;
    assert_eq!((&old["state"], &old["paused"]), (&json!("paused"), &json!(true)));
    for field in ["facts", "report_at_ms", "latest", "processes", "cpu_percent"] {
        assert_eq!(old[field], Value::Null, "{field}");
    }
    assert_eq!((&old["firing_alerts"], &old["recent_alerts"]), (&json!([]), &json!([])));

    for (query, param) in [("sort=pid", "sort"), ("limit=0", "limit"), ("limit=1001", "limit"), ("from=1", "from")] {
        let r = api.get(&format!("/api/v1/projects/shop/servers/web-01?{query}"), token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "?{query}: {}", r.body);
        assert!(error_of(&r).contains(&format!("`{param}`")), "?{query}: {}", r.body);
    }
    api.stop().await;
}

#[tokio::test]
async fn an_unknown_server_or_one_of_another_project_is_404() {
    let api = Api::start().await;
    api.report_live();
    let t = &api.tokens;
    for path in ["/api/v1/projects/shop/servers/nope", "/api/v1/projects/shop/servers/pay-01", "/api/v1/projects/billing/servers/web-01"] {
        for suffix in ["", "/metrics?name=cpu.usage"] {
            let r = api.get(&format!("{path}{suffix}"), &t.operator).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}{suffix}: {}", r.body);
            assert!(error_of(&r).starts_with("server `"), "{path}{suffix}: {}", r.body);
            assert!(!r.body.to_string().contains("GenuineIntel"));
        }
    }
    // A user outside the project learns nothing about its servers, real or not.
    for path in
        ["/api/v1/projects/shop/servers/web-01", "/api/v1/projects/shop/servers/nope", "/api/v1/projects/shop/servers/web-01/metrics"]
    {
        let r = api.get(path, &t.other).await;
        assert_eq!((r.status, error_of(&r)), (StatusCode::NOT_FOUND, "project `shop` not found"), "{path}");
    }
    api.stop().await;
}

/// A whole hour, three hours ago: series buckets are aligned to it.
fn hour_ago(now_ms: i64) -> i64 {
    (now_ms - 3 * 3_600_000) / 3_600_000 * 3_600_000
}

#[tokio::test]
async fn metric_series_come_at_the_resolution_of_their_range() {
    let api = Api::start().await;
    let h = hour_ago(api.now_ms);
    let sample = |at_ms: i64, cpu: f64, root: f64, data: f64| {
        host_report(at_ms, &[("cpu.usage", None, cpu), ("disk.usage", Some("/"), root), ("disk.usage", Some("/data"), data)])
    };
    let reports = [
        sample(h, 10.0, 50.0, 20.0),
        sample(h + 5 * SEC, 20.0, 50.0, 70.0),
        sample(h + 10 * SEC, 30.0, 50.0, 20.0),
        sample(h + 5 * MIN, 40.0, 51.0, 20.0),
        sample(h + 65 * MIN, 50.0, 52.0, 20.0),
    ];
    api.store_samples("web-01", &reports).await;
    let token = &api.tokens.user;
    let a = &api;
    let series = |query: String| async move { a.ok(&format!("/api/v1/projects/shop/servers/web-01/metrics?{query}"), token).await };
    let point = |at_ms: i64, avg: f64, min: f64, max: f64| json!({"at_ms": at_ms, "avg": avg, "min": min, "max": max});
    let raw = |at_ms: i64, v: f64| point(at_ms, v, v, v);

    // Ten minutes: raw points, each report as it came.
    let s = series(format!("name=cpu.usage&from={h}&to={}", h + 10 * MIN)).await;
    assert_eq!(
        (&s["name"], &s["subject"], &s["resolution"], &s["resolution_ms"]),
        (&json!("cpu.usage"), &Value::Null, &json!("raw"), &json!(5000))
    );
    assert_eq!((&s["from_ms"], &s["to_ms"]), (&json!(h), &json!(h + 10 * MIN)));
    assert_eq!(s["points"], json!([raw(h, 10.0), raw(h + 5 * SEC, 20.0), raw(h + 10 * SEC, 30.0), raw(h + 5 * MIN, 40.0)]));
    // Two hours: 5-minute buckets.
    let s = series(format!("name=cpu.usage&from={h}&to={}", h + 2 * 60 * MIN)).await;
    assert_eq!((&s["resolution"], &s["resolution_ms"]), (&json!("five_minutes"), &json!(300_000)));
    assert_eq!(s["points"], json!([point(h, 20.0, 10.0, 30.0), raw(h + 5 * MIN, 40.0), raw(h + 65 * MIN, 50.0)]));
    // The same range by the hour, when asked; RFC 3339 works as well as epoch ms.
    let rfc = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
    let s = series(format!("name=cpu.usage&from={}&to={}&resolution=hour", rfc(h), rfc(h + 2 * 60 * MIN))).await;
    assert_eq!((&s["resolution"], &s["resolution_ms"], &s["from_ms"]), (&json!("hour"), &json!(3_600_000), &json!(h)));
    assert_eq!(s["points"], json!([point(h, 25.0, 10.0, 40.0), raw(h + 60 * MIN, 50.0)]));
    // One mount, or without a subject the fullest mount at each point.
    let s = series(format!("name=disk.usage&subject=/&from={h}&to={}", h + 6 * MIN)).await;
    assert_eq!(s["subject"], "/");
    assert_eq!(s["points"], json!([raw(h, 50.0), raw(h + 5 * SEC, 50.0), raw(h + 10 * SEC, 50.0), raw(h + 5 * MIN, 51.0)]));
    let s = series(format!("name=disk.usage&from={h}&to={}", h + 6 * MIN)).await;
    assert_eq!(s["points"], json!([raw(h, 50.0), raw(h + 5 * SEC, 70.0), raw(h + 10 * SEC, 50.0), raw(h + 5 * MIN, 51.0)]));
    // Without a range: the last hour, where there is nothing.
    let s = series("name=cpu.usage".into()).await;
    assert_eq!((&s["resolution"], &s["points"]), (&json!("raw"), &json!([])));
    assert_eq!(s["to_ms"].as_i64().unwrap() - s["from_ms"].as_i64().unwrap(), 60 * MIN);
    api.stop().await;
}

#[tokio::test]
async fn metric_series_refuse_bad_parameters_by_name() {
    let api = Api::start().await;
    let token = &api.tokens.user;
    let day = 24 * 60 * MIN;
    for (query, param, says) in [
        ("", "name", "cpu.usage"),
        ("name=cpu.bogus", "name", "network.out_drops"),
        ("name=cpu.usage&subject=/", "subject", "host-wide"),
        ("name=cpu.usage&resolution=minute", "resolution", "five_minutes"),
        ("name=cpu.usage&from=2000&to=1000", "from", "after"),
        ("name=cpu.usage&from=yesterday", "from", "RFC 3339"),
        ("name=cpu.usage&from=0&to=172800000&resolution=raw", "resolution", "34560 points"),
        ("name=cpu.usage&from=0&to=3153600000000", "resolution", "coarser"),
        ("name=cpu.usage&step=5", "step", "expected"),
    ] {
        let r = api.get(&format!("/api/v1/projects/shop/servers/web-01/metrics?{query}"), token).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "?{query}: {}", r.body);
        assert!(error_of(&r).contains(&format!("`{param}`")) && error_of(&r).contains(says), "?{query}: {}", r.body);
    }
    // 27 hours of raw points is the most one answer holds.
    api.ok(&format!("/api/v1/projects/shop/servers/web-01/metrics?name=cpu.usage&from=0&to={}&resolution=raw", 20_000 * 5 * SEC), token)
        .await;
    api.ok(&format!("/api/v1/projects/shop/servers/web-01/metrics?name=cpu.usage&from=0&to={}", 30 * day), token).await;
    api.stop().await;
}

#[tokio::test]
async fn alert_detail_has_the_raw_metrics_five_minutes_around_the_alert() {
    let api = Api::start().await;
    let start = hour_ago(api.now_ms) + 30 * MIN;
    let end = start + 10 * MIN;
    let (from, to) = (start - 5 * MIN, end + 5 * MIN);
    let snapshot = json!({"cpu": {"usage": 97.0}, "top_processes": {"cpu": [{"pid": 10, "name": "nginx"}], "memory": []}});
    let k = key("shop", "web-01", "metric:cpu.usage", "");
    let change =
        AlertChange::Open { severity: Severity::Fatal, started_at_ms: start, message: "cpu".into(), host: "203.0.113.10".into(), snapshot };
    let id = api.store.apply_alert(&k, &firing(Severity::Fatal, start), None, Some(&change), &[], start).await.unwrap().unwrap();
    let resolve = AlertChange::Resolve { at_ms: end, reason: "recovered".into() };
    api.store.apply_alert(&k, &AlertState::default(), Some(id), Some(&resolve), &[], end).await.unwrap();
    // [from, to): the edges just outside are left out, the first and last millisecond kept.
    let sample = |at_ms: i64, cpu: f64| {
        host_report(at_ms, &[("cpu.usage", None, cpu), ("cpu.idle", None, 100.0 - cpu), ("network.in_bps", Some("eth0"), cpu * 1000.0)])
    };
    let reports = [sample(from - 1, 1.0), sample(from, 2.0), sample(start, 97.0), sample(end, 3.0), sample(to - 1, 4.0), sample(to, 5.0)];
    api.store_samples("web-01", &reports).await;

    let a = api.ok(&format!("/api/v1/projects/shop/alerts/{id}"), &api.tokens.user).await;
    let m = &a["metrics"];
    assert_eq!((&m["from_ms"], &m["to_ms"], &m["truncated"]), (&json!(from), &json!(to), &json!(false)));
    let pts = |pairs: &[(i64, f64)]| -> Value { pairs.iter().map(|&(at_ms, value)| json!({"at_ms": at_ms, "value": value})).collect() };
    assert_eq!(
        m["series"],
        json!([
            {"name": "cpu.usage", "subject": null, "points": pts(&[(from, 2.0), (start, 97.0), (end, 3.0), (to - 1, 4.0)])},
            {"name": "network.in_bps", "subject": "eth0", "points": pts(&[(from, 2000.0), (start, 97000.0), (end, 3000.0), (to - 1, 4000.0)])},
        ])
    );
    assert_eq!(a["top_processes"], json!({"cpu": [{"pid": 10, "name": "nginx"}], "memory": []}));

    // A firing alert reaches five minutes past now; a long one is cut at two hours.
    let port = api.ok(&format!("/api/v1/projects/shop/alerts/{}", api.ids.port_down), &api.tokens.user).await;
    assert!(port["metrics"]["to_ms"].as_i64().unwrap() >= api.now_ms + 5 * MIN, "{}", port["metrics"]);
    assert_eq!((&port["metrics"]["series"], &port["top_processes"]), (&json!([]), &Value::Null));
    let k = key("shop", "db-01", "metric:disk.usage", "/");
    let long_start = start - 24 * 60 * MIN;
    let change = open(Severity::Warning, long_start, "disk", "203.0.113.20");
    let long =
        api.store.apply_alert(&k, &firing(Severity::Warning, long_start), None, Some(&change), &[], long_start).await.unwrap().unwrap();
    let m = &api.ok(&format!("/api/v1/projects/shop/alerts/{long}"), &api.tokens.user).await["metrics"];
    assert_eq!(
        (&m["from_ms"], &m["to_ms"], &m["truncated"]),
        (&json!(long_start - 5 * MIN), &json!(long_start - 5 * MIN + 120 * MIN), &json!(true))
    );

    // An alert on no server (a port monitor on a bare host) has no metrics.
    let k = key("shop", "", "port:stats", "443");
    let change = open(Severity::Fatal, start, "port 443 of stats: refused", "203.0.113.40");
    let bare = api.store.apply_alert(&k, &firing(Severity::Fatal, start), None, Some(&change), &[], start).await.unwrap().unwrap();
    let a = api.ok(&format!("/api/v1/projects/shop/alerts/{bare}"), &api.tokens.user).await;
    assert_eq!((&a["server"], &a["metrics"], &a["top_processes"]), (&Value::Null, &Value::Null, &Value::Null));
    api.stop().await;
}

/// The query behind every firing-alert count and state colour, on both backends: it reads a
/// partial index (migration 3), so what it returns must still be exactly the open alerts.
mod firing_query {
    use watchkeeper::alert::AlertChange;
    use watchkeeper::alert::{AlertState, Severity};
    use watchkeeper::store::{FiringAlert, Store};

    use super::{firing, key, open};
    use crate::store::{TestDb, both_backends};

    both_backends!(firing_alerts_are_the_open_alerts_of_a_project_or_of_all);

    async fn fire(store: &Store, server: (&str, &str), severity: Severity, at_ms: i64) -> i64 {
        let k = key(server.0, server.1, "port:web", "443");
        store
            .apply_alert(&k, &firing(severity, at_ms), None, Some(&open(severity, at_ms, "down", "10.0.0.1")), &[], at_ms)
            .await
            .unwrap()
            .unwrap()
    }

    async fn firing_alerts_are_the_open_alerts_of_a_project_or_of_all(db: TestDb) {
        let store = db.connect().await;
        let web = fire(&store, ("shop", "web-01"), Severity::Warning, 1_000).await;
        let gone = fire(&store, ("shop", "web-02"), Severity::Fatal, 2_000).await;
        let pay = fire(&store, ("billing", "pay-01"), Severity::Fatal, 3_000).await;
        let bare = fire(&store, ("shop", ""), Severity::Fatal, 4_000).await;
        let resolve = AlertChange::Resolve { at_ms: 5_000, reason: "recovered".into() };
        store
            .apply_alert(&key("shop", "web-02", "port:web", "443"), &AlertState::default(), Some(gone), Some(&resolve), &[], 5_000)
            .await
            .unwrap();
        let escalate = AlertChange::Escalate { severity: Severity::Fatal };
        let k = key("shop", "web-01", "port:web", "443");
        store.apply_alert(&k, &firing(Severity::Fatal, 1_000), Some(web), Some(&escalate), &[], 6_000).await.unwrap();

        let shop = store.firing_alerts(Some("shop")).await.unwrap();
        assert_eq!(
            shop,
            [
                FiringAlert { id: web, key: k.clone(), severity: Severity::Fatal, started_at_ms: 1_000 },
                FiringAlert { id: bare, key: key("shop", "", "port:web", "443"), severity: Severity::Fatal, started_at_ms: 4_000 },
            ]
        );
        let ids = |rows: Vec<FiringAlert>| rows.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(ids(store.firing_alerts(None).await.unwrap()), [web, pay, bare]);
        assert_eq!(ids(store.firing_alerts(Some("nowhere")).await.unwrap()), Vec::<i64>::new());
    }
}
