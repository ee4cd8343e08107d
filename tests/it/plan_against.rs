//! `plan --against URL` over real HTTP: the status API router on 127.0.0.1:0 over a real SQLite
//! store holding firing port alerts, a configuration compiled by the real loader, and the real
//! binary comparing a changed tree with it. Also `GET /api/v1/objects` and its token scopes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use watchkeeper::alert::retire::{LiveInstances, Retired};
use watchkeeper::alert::{AlertChange, InstanceKey};
use watchkeeper::alert::{AlertState, Phase, Severity};
use watchkeeper::api::{ApiState, router};
use watchkeeper::config::diff::{self, ObjectKey};
use watchkeeper::config::{Config, Library};
use watchkeeper::metrics::Metrics;
use watchkeeper::store::{RevisionRecord, Store};

use crate::common::{self, Run};

const MIN: i64 = 60_000;
const REVISION: &str = "sha256:0123abcd";

struct Tokens {
    operator: String,
    /// alice: owner of group `platform` (project `shop`).
    owner: String,
    /// bob: the admin member of the group-less project `billing`.
    billing_admin: String,
    /// carol: plain user of group `platform`.
    user: String,
}

/// Alert ids the fixture opened.
struct Ids {
    /// shop, web-01, port 80 of web-01-ports: fatal, firing.
    web_80: i64,
    /// shop, db-01, port 5432 of db-01-ports: warning, firing.
    db_5432: i64,
    /// billing, pay-01, port 443 of pay-01-ports: fatal, firing.
    pay_443: i64,
}

struct Serve {
    base: String,
    tokens: Tokens,
    ids: Ids,
    config: Config,
    dir: tempfile::TempDir,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const SHOP: &str = r#"kind: Project
name: shop
group: platform
description: Web shop
timezone: Asia/Seoul
---
kind: Server
name: web-01
project: shop
host: 203.0.113.10
os: linux
tags: [web]
---
kind: Server
name: db-01
project: shop
host: 203.0.113.20
os: linux
tags: [db]
---
kind: PortMonitor
name: web-01-ports
project: shop
server: web-01
ports: [22, 80]
notify: [alice@example.com]
---
kind: PortMonitor
name: db-01-ports
project: shop
server: db-01
ports: [5432]
"#;

/// The tree the running serve applied.
fn tree(root: &Path, t: &Tokens) {
    let sha = watchkeeper::token::sha256_hex;
    write(
        root,
        "users.yaml",
        &format!(
            "kind: User\nemail: alice@example.com\nname: Alice Owner\ntoken_sha256: {}\n---\n\
             kind: User\nemail: bob@example.com\nname: Bob Billing\ntoken_sha256: {}\n---\n\
             kind: User\nemail: carol@example.com\nname: Carol User\ntoken_sha256: {}\n",
            sha(&t.owner),
            sha(&t.billing_admin),
            sha(&t.user)
        ),
    );
    write(root, "groups.yaml", "kind: Group\nname: platform\nowner: alice@example.com\nusers: [carol@example.com]\n");
    write(root, "projects/shop/project.yaml", SHOP);
    write(
        root,
        "projects/billing/project.yaml",
        "kind: Project\nname: billing\ntimezone: UTC\nmembers:\n  - { user: bob@example.com, role: admin }\n---\n\
         kind: Server\nname: pay-01\nproject: billing\nhost: 198.51.100.10\nos: linux\n---\n\
         kind: PortMonitor\nname: pay-01-ports\nproject: billing\nserver: pay-01\nports: [443]\n",
    );
}

fn key(project: &str, server: &str, rule: &str, subject: &str) -> InstanceKey {
    InstanceKey { project: project.into(), server: server.into(), rule: rule.parse().unwrap(), subject: subject.into() }
}

/// Open a firing alert through the store, as the engine does.
async fn fire(store: &Store, key: &InstanceKey, severity: Severity, started_at_ms: i64, message: &str) -> i64 {
    let state = AlertState { phase: Phase::Firing { since_ms: started_at_ms, severity }, failures: 3, ..AlertState::default() };
    let open = AlertChange::Open { severity, started_at_ms, message: message.into(), host: "203.0.113.10".into(), snapshot: json!({}) };
    store.apply_alert(key, &state, None, Some(&open), &[], started_at_ms).await.unwrap().unwrap()
}

impl Serve {
    async fn start() -> Serve {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let token = || watchkeeper::token::generate().unwrap();
        let tokens = Tokens { operator: token(), owner: token(), billing_admin: token(), user: token() };
        let dir = tempfile::tempdir().unwrap();
        tree(&dir.path().join("running"), &tokens);
        let loaded = watchkeeper::config::load_dir(&dir.path().join("running"), &Library::Builtin);
        assert!(!loaded.has_errors(), "fixture tree has errors: {:#?}", loaded.diagnostics);

        let store = Store::connect(&format!("sqlite://{}", dir.path().join("wk.db").display())).await.unwrap();
        let now = jiff::Timestamp::now().as_millisecond();
        store
            .record_revision(&RevisionRecord {
                revision: REVISION.into(),
                at_ms: now - 60 * MIN,
                applied: true,
                diagnostics: json!([]),
                held_until_ms: None,
            })
            .await
            .unwrap();
        let ids = Ids {
            web_80: fire(
                &store,
                &key("shop", "web-01", "port:web-01-ports", "80"),
                Severity::Fatal,
                now - 5 * MIN,
                "port 80 of web-01-ports is down: connection refused",
            )
            .await,
            db_5432: fire(
                &store,
                &key("shop", "db-01", "port:db-01-ports", "5432"),
                Severity::Warning,
                now - 20 * MIN,
                "port 5432 of db-01-ports is down: timed out",
            )
            .await,
            pay_443: fire(
                &store,
                &key("billing", "pay-01", "port:pay-01-ports", "443"),
                Severity::Fatal,
                now - 9 * MIN,
                "port 443 of pay-01-ports is down: timed out",
            )
            .await,
        };
        // A resolved alert of a monitor the change removes: history, never "dropped".
        let k = key("shop", "web-01", "port:web-01-ports", "22");
        let old = fire(&store, &k, Severity::Fatal, now - 50 * MIN, "port 22 of web-01-ports is down").await;
        let resolve = AlertChange::Resolve { at_ms: now - 40 * MIN, reason: "recovered".into() };
        store.apply_alert(&k, &AlertState::default(), Some(old), Some(&resolve), &[], now - 40 * MIN).await.unwrap();

        let config = loaded.config.clone();
        let (_config_tx, config_rx) = watch::channel(Arc::new(loaded.config));
        // This serve runs the revision recorded above.
        let metrics = Arc::new(Metrics::new());
        metrics.applied(REVISION, now);
        let state = ApiState {
            store,
            config: config_rx,
            metrics,
            admin_token_sha256: Some(watchkeeper::token::sha256_hex(&tokens.operator)),
            started_at_ms: now,
            lease_ttl_ms: watchkeeper::store::DEFAULT_LEASE_TTL_MS,
            live: Default::default(),
            collector: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = router(state);
        let server = tokio::spawn(async move {
            // The watch sender lives as long as the server, like the reconciler's.
            let _config_tx = _config_tx;
            axum::serve(listener, app).await.unwrap();
        });
        Serve { base, tokens, ids, config, dir, server: Some(server) }
    }

    /// A copy of the running tree under `name`, with `edit` applied to the shop project file.
    fn changed_tree(&self, name: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
        let root = self.dir.path().join(name);
        tree(&root, &self.tokens);
        write(&root, "projects/shop/project.yaml", &edit(SHOP.to_string()));
        root
    }

    async fn objects(&self, token: &str) -> (StatusCode, Value) {
        crate::support::install_crypto();
        let resp = reqwest::Client::new().get(format!("{}/api/v1/objects", self.base)).bearer_auth(token).send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap())
    }
}

/// `watchkeeper ARGS…` with `WATCHKEEPER_TOKEN` set to `env_token` (or unset), off the runtime's
/// threads so the API it talks to keeps serving.
async fn watchkeeper(args: &[&str], env_token: Option<&str>) -> Run {
    watchkeeper_with(args, "WATCHKEEPER_TOKEN", env_token).await
}

/// Like [`watchkeeper`], with the token in the environment variable `var`.
async fn watchkeeper_with(args: &[&str], var: &'static str, env_token: Option<&str>) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env_token = env_token.map(str::to_string);
    let run = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(common::bin_path());
        command.args(&args).stdin(Stdio::null()).env_remove("WATCHKEEPER_TOKEN").env_remove("WATCHKEEPER_ADMIN_TOKEN");
        if let Some(token) = &env_token {
            command.env(var, token);
        }
        let out = command.output().expect("run watchkeeper");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    });
    tokio::time::timeout(common::DEADLINE, run).await.expect("watchkeeper plan hung").unwrap()
}

/// The change most tests plan: web-01-ports is removed, web-01 gets a tag, web-02 is added.
fn remove_web_monitor(shop: String) -> String {
    let monitor =
        "kind: PortMonitor\nname: web-01-ports\nproject: shop\nserver: web-01\nports: [22, 80]\nnotify: [alice@example.com]\n---\n";
    assert!(shop.contains(monitor));
    shop.replace(monitor, "").replace("tags: [web]", "tags: [web, prod]")
        + "---\nkind: Server\nname: web-02\nproject: shop\nhost: 203.0.113.11\nos: linux\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_against_a_running_serve_lists_the_diff_and_the_firing_alerts_it_would_drop() {
    let serve = Serve::start().await;
    let change = serve.changed_tree("change", remove_web_monitor);
    let dir = change.to_str().unwrap();

    let run = watchkeeper(&["plan", "--against", &serve.base, "--token", &serve.tokens.operator, dir], None).await;
    assert_eq!(run.code, Some(0), "{}", run.output());
    let text = &run.stdout;
    assert!(text.starts_with("Plan: 1 to add, 1 to change, 1 to remove.\n"), "{text}");
    assert!(text.contains("\nproject shop\n  - PortMonitor web-01-ports\n  ~ Server web-01\n      tags: [\"web\"] → [\"web\",\"prod\"]\n  + Server web-02\n"), "{text}");
    assert!(!text.contains("project billing"), "billing is unchanged: {text}");
    assert!(!text.contains("shared ("), "shared objects are unchanged: {text}");
    let section = text.split_once("Firing alerts this change would drop:\n").map(|(_, s)| s).unwrap_or_else(|| panic!("{text}"));
    assert!(
        section.starts_with(&format!("  ! #{} fatal port:web-01-ports 80 (project shop, server web-01), firing since ", serve.ids.web_80)),
        "{section}"
    );
    assert!(section.contains("→ resolved: removed\n      port 80 of web-01-ports is down: connection refused\n"), "{section}");
    assert_eq!(section.matches("  ! #").count(), 1, "only the removed monitor's firing alert: {section}");
    assert!(run.stderr.contains(&format!("revision {REVISION}")), "{}", run.stderr);
    assert!(!run.stdout.contains(&serve.tokens.operator) && !run.stderr.contains(&serve.tokens.operator), "the token is never printed");

    // The token's old name is read too.
    let run = watchkeeper_with(&["plan", "--against", &serve.base, dir], "WATCHKEEPER_ADMIN_TOKEN", Some(&serve.tokens.operator)).await;
    assert_eq!(run.code, Some(0), "{}", run.output());

    // JSON, with the token from the environment.
    let run = watchkeeper(&["plan", "--format", "json", "--against", &serve.base, dir], Some(&serve.tokens.operator)).await;
    assert_eq!(run.code, Some(0), "{}", run.output());
    let v = run.json();
    assert_eq!((v["added"].as_u64(), v["changed"].as_u64(), v["removed"].as_u64()), (Some(1), Some(1), Some(1)), "{v}");
    assert_eq!(v["changes"][0], json!({"project": "shop", "kind": "PortMonitor", "name": "web-01-ports", "change": "removed"}));
    let dropped = v["dropped_alerts"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{v}");
    let started_at_ms = dropped[0]["started_at_ms"].as_i64().unwrap();
    assert_eq!(
        dropped[0],
        json!({
            "id": serve.ids.web_80,
            "project": "shop",
            "server": "web-01",
            "rule": "port:web-01-ports",
            "subject": "80",
            "severity": "fatal",
            "started_at_ms": started_at_ms,
            "message": "port 80 of web-01-ports is down: connection refused",
            "reason": "removed",
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_keeps_the_monitors_drops_no_alerts_and_a_paused_server_or_removed_port_does() {
    let serve = Serve::start().await;
    // Only a description changes: nothing firing is dropped.
    let keep = serve.changed_tree("keep", |shop| shop.replace("description: Web shop", "description: The web shop"));
    let run = watchkeeper(&["plan", "--against", &serve.base, "--token", &serve.tokens.operator, keep.to_str().unwrap()], None).await;
    assert_eq!(run.code, Some(0), "{}", run.output());
    assert!(run.stdout.starts_with("Plan: 0 to add, 1 to change, 0 to remove.\n"), "{}", run.stdout);
    assert!(run.stdout.contains("  ~ Project shop\n      description: \"Web shop\" → \"The web shop\"\n"), "{}", run.stdout);
    assert!(run.stdout.ends_with("\nFiring alerts this change would drop: none.\n"), "{}", run.stdout);
    let run = watchkeeper(
        &["plan", "--format", "json", "--against", &serve.base, "--token", &serve.tokens.operator, keep.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(run.json()["dropped_alerts"], json!([]));

    // Port 80 leaves web-01-ports and db-01 is paused: both firing alerts go, for the engine's reasons.
    let pause = serve.changed_tree("pause", |shop| {
        shop.replace("ports: [22, 80]", "ports: [22]")
            .replace("host: 203.0.113.20\nos: linux\n", "host: 203.0.113.20\nos: linux\npaused: true\n")
    });
    let run = watchkeeper(
        &["plan", "--format", "json", "--against", &serve.base, "--token", &serve.tokens.operator, pause.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.output());
    let v = run.json();
    let dropped: Vec<(i64, &str, &str)> = v["dropped_alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_i64().unwrap(), d["subject"].as_str().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    // Oldest first within a project.
    assert_eq!(dropped, [(serve.ids.db_5432, "5432", "paused"), (serve.ids.web_80, "80", "removed")], "{v}");
    assert!(dropped.iter().all(|(id, ..)| *id != serve.ids.pay_443));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_against_fails_clearly_on_a_wrong_token_an_unreachable_url_or_a_server_that_is_not_watchkeeper() {
    let serve = Serve::start().await;
    let change = serve.changed_tree("change", remove_web_monitor);
    let dir = change.to_str().unwrap();

    let wrong = "wk_not-a-token";
    let run = watchkeeper(&["plan", "--against", &serve.base, "--token", wrong, dir], None).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stdout.is_empty(), "{}", run.output());
    assert!(run.stderr.contains("refused the token (401 Unauthorized: unknown token)"), "{}", run.stderr);
    assert!(run.stderr.contains("--token or WATCHKEEPER_TOKEN"), "{}", run.stderr);
    assert!(!run.stderr.contains(wrong), "the token is never printed: {}", run.stderr);

    // No token at all.
    let run = watchkeeper(&["plan", "--against", &serve.base, dir], None).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("give --token or set WATCHKEEPER_TOKEN"), "{}", run.stderr);

    // Nothing listens there any more.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let run = watchkeeper(&["plan", "--against", &closed, "--token", &serve.tokens.operator, dir], None).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains(&format!("could not reach {closed}/api/v1/objects")), "{}", run.stderr);

    // The URL of something else on the serve: a 404.
    let run = watchkeeper(&["plan", "--against", &format!("{}/healthz", serve.base), "--token", &serve.tokens.operator, dir], None).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains("answered 404 (no such endpoint)"), "{}", run.stderr);

    // A web server that is not watchkeeper's status API answers HTML.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    let html = axum::Router::new().route("/api/v1/objects", axum::routing::get(|| async { axum::response::Html("<html>hello</html>") }));
    let web = tokio::spawn(async move { axum::serve(listener, html).await.unwrap() });
    let run = watchkeeper(&["plan", "--against", &other, "--token", &serve.tokens.operator, dir], None).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    assert!(run.stderr.contains(&format!("{other}/api/v1/objects did not answer with the expected JSON")), "{}", run.stderr);
    web.abort();

    // A broken tree is refused before anything is fetched, like `plan --base`.
    let broken = serve.changed_tree("broken", |shop| shop.replace("server: db-01", "server: db-99"));
    let run = watchkeeper(&["plan", "--against", &closed, "--token", &serve.tokens.operator, broken.to_str().unwrap()], None).await;
    assert_eq!(run.code, Some(1), "{}", run.output());
    assert!(run.stderr.contains("the change tree has errors"), "{}", run.stderr);

    // --base and --against exclude each other; one of them is needed.
    let run = watchkeeper(&["plan", "--base", dir, "--against", &serve.base, dir], None).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
    let run = watchkeeper(&["plan", dir], None).await;
    assert_eq!(run.code, Some(2), "{}", run.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_objects_endpoint_shows_a_user_token_only_the_projects_it_administers() {
    let serve = Serve::start().await;
    let t = &serve.tokens;
    let projects_of = |v: &Value| -> Vec<Option<String>> {
        let mut p: Vec<Option<String>> =
            v["objects"].as_array().unwrap().iter().map(|o| o["project"].as_str().map(str::to_string)).collect();
        p.dedup();
        p
    };

    // The operator: every object, exactly as `config::diff::objects` makes them, and the revision.
    let (status, v) = serve.objects(&t.operator).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["revision"], REVISION);
    assert_eq!(v["scope"], Value::Null);
    let wire: BTreeMap<ObjectKey, Value> = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let o: diff::Object = serde_json::from_value(o.clone()).unwrap();
            (o.key, o.value)
        })
        .collect();
    assert_eq!(wire, diff::objects(&serve.config));
    assert!(wire.keys().any(|k| k.project.is_none() && k.kind == "User"));

    // alice owns shop's group: shop's objects only, no users, groups or shared policies.
    let (status, v) = serve.objects(&t.owner).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], json!(["shop"]));
    assert_eq!(projects_of(&v), [Some("shop".to_string())]);
    let kinds: Vec<&str> = v["objects"].as_array().unwrap().iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["PortMonitor", "PortMonitor", "Project", "Server", "Server"]);

    // bob administers billing (a project member), nothing else.
    let (_, v) = serve.objects(&t.billing_admin).await;
    assert_eq!(v["scope"], json!(["billing"]));
    assert_eq!(projects_of(&v), [Some("billing".to_string())]);

    // carol is a plain user of shop: objects carry contact details (monitor notify lists,
    // member e-mails), so she gets none.
    let (status, v) = serve.objects(&t.user).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], json!([]));
    assert_eq!(v["objects"], json!([]));
    assert!(!v.to_string().contains("alice@example.com"));

    // No token, an unknown token: 401; a query parameter: 400.
    crate::support::install_crypto();
    let resp = reqwest::Client::new().get(format!("{}/api/v1/objects", serve.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = serve.objects("wk_unknown").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp =
        reqwest::Client::new().get(format!("{}/api/v1/objects?project=shop", serve.base)).bearer_auth(&t.operator).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_against_with_a_user_token_compares_only_the_projects_it_sees() {
    let serve = Serve::start().await;
    // The change also renames a user: shared objects are outside alice's view, so not compared.
    let change = serve.changed_tree("change", remove_web_monitor);
    let users = change.join("users.yaml");
    std::fs::write(&users, std::fs::read_to_string(&users).unwrap().replace("name: Carol User", "name: Carol Kim")).unwrap();

    let run = watchkeeper(&["plan", "--against", &serve.base, "--token", &serve.tokens.owner, change.to_str().unwrap()], None).await;
    assert_eq!(run.code, Some(0), "{}", run.output());
    assert!(run.stdout.starts_with("Plan: 1 to add, 1 to change, 1 to remove.\n"), "{}", run.stdout);
    assert!(!run.stdout.contains("User carol@example.com"), "{}", run.stdout);
    assert!(!run.stdout.contains("project billing"), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("  ! #{} fatal port:web-01-ports 80", serve.ids.web_80)), "{}", run.stdout);
    assert!(run.stderr.contains("the token sees 1 project(s) (shop)"), "{}", run.stderr);

    // The operator sees the rename.
    let run = watchkeeper(&["plan", "--against", &serve.base, "--token", &serve.tokens.operator, change.to_str().unwrap()], None).await;
    assert!(run.stdout.contains("  ~ User carol@example.com\n      name: \"Carol User\" → \"Carol Kim\"\n"), "{}", run.stdout);
}

/// The rule `plan --against` and the engine share, on compiled trees.
#[test]
fn live_instances_follow_monitors_servers_policies_and_pauses() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tokens { operator: "a".into(), owner: "b".into(), billing_admin: "c".into(), user: "d".into() };
    tree(dir.path(), &tokens);
    write(
        dir.path(),
        "projects/shop/project.yaml",
        &(SHOP
            .replace("ports: [22, 80]", "ports: [22]")
            .replace("host: 203.0.113.20\nos: linux\n", "host: 203.0.113.20\nos: linux\npaused: true\n")
            .replace("host: 203.0.113.10\nos: linux\n", "host: 203.0.113.10\nos: linux\npolicy: linux-default\n")
            + "---\nkind: DownCheck\nproject: shop\ndetector: web-01\ntarget: db-01\nport: 5432\nliveness_port: 22\n"),
    );
    let loaded = watchkeeper::config::load_dir(dir.path(), &Library::Builtin);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let ports = LiveInstances::of(&loaded.config);
    assert_eq!(ports.retires("shop", "", &"port:web-01-ports".parse().unwrap(), "22"), None);
    assert_eq!(ports.retires("shop", "", &"port:web-01-ports".parse().unwrap(), "80"), Some(Retired::Removed));
    assert_eq!(ports.retires("shop", "", &"port:db-01-ports".parse().unwrap(), "5432"), Some(Retired::Paused));
    assert_eq!(ports.retires("shop", "", &"port:gone".parse().unwrap(), "1"), Some(Retired::Removed));
    assert_eq!(ports.retires("gone", "", &"port:pay-01-ports".parse().unwrap(), "443"), Some(Retired::Removed));
    assert_eq!(ports.retires("billing", "", &"port:pay-01-ports".parse().unwrap(), "443"), None);
    // Host instances follow their server, its policy and the process/log policies.
    assert_eq!(
        ports.retires("shop", "db-01", &"downcheck:web-01-to-db-01-5432".parse().unwrap(), "5432"),
        Some(Retired::Paused),
        "db-01 is paused"
    );
    assert_eq!(ports.retires("shop", "db-01", &"downcheck:gone".parse().unwrap(), "5432"), Some(Retired::Removed));
    assert_eq!(ports.retires("shop", "web-01", &"metric:cpu.usage".parse().unwrap(), ""), None, "linux-default has cpu.usage");
    assert_eq!(ports.retires("shop", "web-01", &"metric:disk.usage".parse().unwrap(), "/data"), None);
    assert_eq!(
        ports.retires("shop", "web-01", &"metric:load.15".parse().unwrap(), ""),
        Some(Retired::Removed),
        "linux-default has no load.15 rule"
    );
    assert_eq!(ports.retires("shop", "web-01", &"nodata".parse().unwrap(), ""), None);
    assert_eq!(ports.retires("shop", "db-01", &"nodata".parse().unwrap(), ""), Some(Retired::Paused));
    assert_eq!(ports.retires("shop", "gone-01", &"restart".parse().unwrap(), ""), Some(Retired::Removed));
    assert_eq!(
        ports.retires("shop", "web-01", &"process:nginx:count".parse().unwrap(), ""),
        Some(Retired::Removed),
        "no such ProcessPolicy"
    );
}
