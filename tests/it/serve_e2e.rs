//! `watchkeeper serve` end to end, with real parts only: the real binary following a real git
//! repository, a real TCP listener the test stops and starts, aiosmtpd receiving mail, a local
//! HTTP server receiving SMS and webhooks, and the status API read over HTTP.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use crate::common::git;
use crate::store::TestDb;
use crate::support::http::HttpServer;
use crate::support::serve::{Listener, OPERATOR, Serve};
use crate::support::smtp::SmtpServer;
use crate::support::{free_port, install_crypto};

struct Ports {
    smtp: u16,
    http: u16,
    web: u16,
    other: u16,
}

fn tree(p: &Ports, other_interval: &str, policy: &str) -> Vec<(&'static str, String)> {
    let token_hash = watchkeeper::token::sha256_hex(OPERATOR);
    vec![
        (
            "users.yaml",
            format!(
                "kind: User\nemail: alice@example.com\nname: Alice\nphone: \"+82-10-1234-5678\"\nlanguage: en\n\
                 token_sha256: {token_hash}\nnotify: {{ email: true, sms: true }}\n"
            ),
        ),
        (
            "channels.yaml",
            format!(
                "kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {}, tls: none }}\n\
                 from: \"watchkeeper <alerts@example.com>\"\n---\n\
                 kind: Channel\nname: sms\ntype: sms\nurl: http://127.0.0.1:{}/sms\nheaders: {{ Authorization: \"Bearer ${{SMS_TOKEN}}\" }}\n---\n\
                 kind: Channel\nname: hook\ntype: webhook\nurl: http://127.0.0.1:{}/hook\nformat: json\n",
                p.smtp, p.http, p.http
            ),
        ),
        (
            "project.yaml",
            format!(
                "kind: Project\nname: shop\nmembers: [{{ user: alice@example.com, role: admin }}]\nchannels: [mail, sms, hook]\n---\n\
                 kind: Server\nname: web-01\nproject: shop\nhost: 127.0.0.1\npolicy: {policy}\n---\n\
                 kind: PortMonitor\nname: web\nproject: shop\nserver: web-01\nports: [{}]\ninterval: 1s\ntimeout: 500ms\nfailures: 3\n---\n\
                 kind: PortMonitor\nname: other\nproject: shop\nhost: 127.0.0.1\nports: [{}]\ninterval: {other_interval}\ntimeout: 500ms\n",
                p.web, p.other
            ),
        ),
    ]
}

fn commit(repo: &Path, files: &[(&'static str, String)], message: &str) -> String {
    for (name, text) in files {
        fs::write(repo.join(name), text).unwrap();
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", message]);
    git(repo, &["rev-parse", "HEAD"])
}

fn fired_mails(smtp: &SmtpServer) -> usize {
    smtp.messages().iter().filter(|m| m.subject.contains("fired")).count()
}

/// Failed checks of the `web` monitor this serve process made (its counter starts at zero).
fn refused_checks(serve: &Serve) -> f64 {
    serve.metric(r#"watchkeeper_probes_total{project="shop",monitor="web",result="refused"}"#).unwrap_or(0.0)
}

/// The port is still down and `alert_id` fires: once this serve has made more failed checks than
/// the monitor's `failures` (3) — enough to fire again had it lost the alert — the alert is
/// still the one firing, with its start, its three `fired` notifications (mail, SMS, webhook)
/// and nothing else; and once the outbox is empty, one `fired` mail arrived in all.
fn assert_fires_once_more_than(serve: &Serve, smtp: &SmtpServer, alert_id: &serde_json::Value, started: &serde_json::Value, when: &str) {
    let from = refused_checks(serve);
    serve.wait_until("four more failed checks", Duration::from_secs(60), || refused_checks(serve) >= from + 4.0);
    let firing = serve.firing();
    assert_eq!((firing.len(), &firing[0]["id"], &firing[0]["started_at_ms"]), (1, alert_id, started), "{when}");
    let all = serve.get("/api/v1/projects/shop/alerts")["alerts"].as_array().unwrap().len();
    assert_eq!(all, 1, "no other alert {when}");
    let alert = serve.get(&format!("/api/v1/projects/shop/alerts/{alert_id}"));
    let fired = alert["notifications"].as_array().unwrap().iter().filter(|n| n["kind"] == "fired").count();
    assert_eq!(fired, 3, "one `fired` notification per medium {when}: {alert:#}");
    serve.wait_until("the outbox is empty", Duration::from_secs(60), || serve.metric("watchkeeper_outbox_depth") == Some(0.0));
    assert_eq!(fired_mails(smtp), 1, "no second mail {when}");
}

// The main scenario on each database serve supports: `sqlite::…` and `postgres::…`.
crate::store::both_backends!(a_port_down_mails_once_through_reloads_a_crash_and_an_smtp_outage);

async fn a_port_down_mails_once_through_reloads_a_crash_and_an_smtp_outage(db: TestDb) {
    install_crypto();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let mut smtp = SmtpServer::start();
    let http = HttpServer::start().await;
    let web = Listener::open(free_port());
    let other = Listener::open(free_port());
    let ports = Ports { smtp: smtp.port, http: http.addr.port(), web: web.port, other: other.port };
    let first = commit(&repo, &tree(&ports, "1s", "linux-default"), "first");

    let args: Vec<String> = vec![
        "--git".into(),
        format!("file://{}", repo.display()),
        "--branch".into(),
        "main".into(),
        "--poll".into(),
        "1s".into(),
        "--workdir".into(),
        work.path().join("checkout").display().to_string(),
        "--db".into(),
        db.url.clone(),
    ];
    let env = [("SMS_TOKEN", "sms-secret".to_string())];
    let log = work.path().join("serve.log");
    let mut serve = Serve::start(&args, &env, &log);
    serve.wait_until("the first commit is applied", Duration::from_secs(30), || serve.applied().as_deref() == Some(first.as_str()));

    // The port goes down: after 3 failed checks, one e-mail, one SMS, one webhook.
    let web_port = web.close();
    let mails = smtp.wait_for(1, Duration::from_secs(30));
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, "alice@example.com");
    assert!(mails[0].subject.contains("fired"), "{:?}\n{}", mails[0], serve.log());
    assert!(mails[0].body.contains(&format!("port {web_port}")), "{}", mails[0].body);
    let requests = http.wait_for(2, Duration::from_secs(15)).await;
    let sms = requests.iter().find(|r| r.path == "/sms").expect("an SMS request");
    assert_eq!(sms.headers.get("authorization").map(String::as_str), Some("Bearer sms-secret"));
    assert!(sms.body.contains("+821012345678"), "{}", sms.body);
    let hook = requests.iter().find(|r| r.path == "/hook").expect("a webhook request");
    assert_eq!(hook.json()["kind"], "fired");
    let firing = serve.firing();
    assert_eq!(firing.len(), 1, "{firing:?}");
    let (alert_id, started) = (firing[0]["id"].clone(), firing[0]["started_at_ms"].clone());

    // A broken commit is rejected with its diagnostics; the alert keeps firing.
    let broken = tree(&ports, "1s", "linux-defualt");
    let second = commit(&repo, &broken, "typo");
    serve.wait_until("the broken commit is rejected", Duration::from_secs(30), || {
        serve.get("/api/v1/status")["rejected"]["revision"].as_str() == Some(second.as_str())
    });
    let status = serve.get("/api/v1/status");
    assert_eq!(status["applied"]["revision"].as_str(), Some(first.as_str()));
    let diagnostics = status["rejected"]["diagnostics"].to_string();
    assert!(diagnostics.contains("unknown-reference") && diagnostics.contains("project.yaml"), "{diagnostics}");
    assert_eq!(serve.metric("watchkeeper_reconcile_rejected_total"), Some(1.0), "one revision rejected, counted once");

    // A commit changing only the other monitor leaves this alert alone.
    let third = commit(&repo, &tree(&ports, "2s", "linux-default"), "slower other");
    serve.wait_until("the fix is applied", Duration::from_secs(30), || serve.applied().as_deref() == Some(third.as_str()));
    assert_fires_once_more_than(&serve, &smtp, &alert_id, &started, "after reloads");

    // serve crashes and restarts during the outage: still firing, same start, no second mail.
    serve.kill();
    let mut serve = Serve::start(&args, &env, &log);
    serve
        .wait_until("the restarted serve applies the tree", Duration::from_secs(30), || serve.applied().as_deref() == Some(third.as_str()));
    assert_fires_once_more_than(&serve, &smtp, &alert_id, &started, "after a restart");

    // SMTP goes down, then the port recovers: the resolve mail waits in the outbox and is
    // delivered once SMTP is back — exactly once.
    smtp.stop();
    let web = Listener::open(web_port);
    serve.wait_until("the alert resolves", Duration::from_secs(30), || serve.firing().is_empty());
    let alert = serve.get(&format!("/api/v1/projects/shop/alerts/{alert_id}"));
    assert_eq!(alert["status"], "resolved");
    serve.wait_until("a failed attempt is logged", Duration::from_secs(30), || {
        let alert = serve.get(&format!("/api/v1/projects/shop/alerts/{alert_id}"));
        alert["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "resolved" && n["medium"] == "email" && n["attempts"].as_array().is_some_and(|a| !a.is_empty()))
    });
    smtp.resume();
    let mails = smtp.wait_for(2, Duration::from_secs(60));
    assert!(mails[1].subject.to_lowercase().contains("resolved"), "{:?}", mails[1]);
    serve.wait_until("the outbox is empty", Duration::from_secs(60), || serve.metric("watchkeeper_outbox_depth") == Some(0.0));
    assert_eq!(smtp.messages().len(), 2, "nothing lost, nothing doubled");

    // SIGTERM stops serve cleanly.
    let status = serve.terminate();
    assert!(status.success(), "exit status {status}\n{}", serve.log());
    assert!(serve.log().contains("serve stopped"));
    drop(web);
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_a_directory_and_rejects_a_bad_revision_without_stopping() {
    install_crypto();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("tree");
    fs::create_dir_all(&dir).unwrap();
    let smtp = SmtpServer::reserve();
    let other = Listener::open(free_port());
    let ports = Ports { smtp: smtp.port, http: free_port(), web: other.port, other: other.port };
    let mut files = tree(&ports, "1s", "linux-default");
    // One monitor is enough here; both point at the same open port.
    files[2].1 = files[2].1.replace("name: other", "name: other-port");
    for (name, text) in &files {
        fs::write(dir.join(name), text).unwrap();
    }
    let args: Vec<String> = vec![
        "--config".into(),
        dir.display().to_string(),
        "--rescan".into(),
        "1m".into(),
        "--db".into(),
        format!("sqlite://{}", work.path().join("wk.db").display()),
    ];
    let env = [("SMS_TOKEN", "x".to_string()), ("WATCHKEEPER_LOG", "info,watchkeeper::reconcile=debug".to_string())];
    let serve = Serve::start(&args, &env, &work.path().join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some_and(|r| r.starts_with("sha256:")));
    let first = serve.applied().unwrap();
    serve.wait_until("both monitors report up", Duration::from_secs(30), || {
        let monitors = serve.get("/api/v1/projects/shop/monitors");
        monitors["port_monitors"].as_array().unwrap().iter().all(|m| m["ports"][0]["last"]["ok"] == true)
    });

    // Idle, the tree is read once: serve's own reads of it are not changes (a regression: access
    // events once made every read trigger the next, a busy loop).
    thread::sleep(Duration::from_secs(3));
    let reads = serve.log().matches("configuration read revision=").count();
    assert_eq!(reads, 1, "the idle tree was read {reads} times\n{}", serve.log());

    // A change on disk is picked up through file events (the rescan is a minute away).
    fs::write(dir.join("project.yaml"), files[2].1.replace("ports: [", "ports: [1, ")).unwrap();
    serve.wait_until("the edit is applied", Duration::from_secs(20), || serve.applied().is_some_and(|r| r != first));
    // A broken edit is rejected; the last good revision keeps running.
    let good = serve.applied().unwrap();
    fs::write(dir.join("project.yaml"), "kind: Project\nname: shop\nchannels: [nope]\n").unwrap();
    serve.wait_until("the broken edit is rejected", Duration::from_secs(20), || !serve.get("/api/v1/status")["rejected"].is_null());
    assert_eq!(serve.applied(), Some(good));
    // The counts are the lists' lengths (a regression: lint's JSON object was counted as one).
    let status = serve.get("/api/v1/status");
    let applied = &status["applied"];
    assert_eq!(applied["diagnostics"], serde_json::json!([]), "{status}");
    assert_eq!(applied["diagnostic_count"], 0, "{status}");
    let rejected = &status["rejected"];
    let listed = rejected["diagnostics"].as_array().unwrap_or_else(|| panic!("a list of diagnostics: {status}"));
    assert!(listed.len() >= 2, "{status}");
    assert_eq!(rejected["diagnostic_count"], listed.len(), "{status}");
    assert_eq!(rejected["errors"], listed.iter().filter(|d| d["severity"] == "error").count(), "{status}");
    assert!(
        listed.iter().any(|d| d["rule"] == "unknown-reference" && d["file"].as_str().is_some_and(|f| f.ends_with("project.yaml"))),
        "{status}"
    );
    let metrics = serve.text("/metrics");
    assert!(metrics.contains("watchkeeper_reconcile_status 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_new_networks_no_longer_approve_is_refused_at_probe_time_and_shown_as_unapproved() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("tree");
    fs::create_dir_all(&dir).unwrap();
    let open = Listener::open(free_port());
    let token_hash = watchkeeper::token::sha256_hex(OPERATOR);
    fs::write(dir.join("users.yaml"), format!("kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {token_hash}\n")).unwrap();
    // `localhost` is a name: lint cannot check it, serve checks what it resolves to.
    let project = |networks: &str| {
        format!(
            "kind: Project\nname: shop\nmembers: [{{ user: alice@example.com, role: admin }}]\nnetworks: {networks}\n---\n\
             kind: PortMonitor\nname: local\nproject: shop\nhost: localhost\nports: [{}]\ninterval: 1s\ntimeout: 500ms\nfailures: 1\n",
            open.port
        )
    };
    fs::write(dir.join("project.yaml"), project("[127.0.0.0/8, \"::1/128\"]")).unwrap();
    let args: Vec<String> =
        vec!["--config".into(), dir.display().to_string(), "--db".into(), format!("sqlite://{}", work.path().join("wk.db").display())];
    let serve = Serve::start(&args, &[], &work.path().join("serve.log"));
    let last = || serve.get("/api/v1/projects/shop/monitors")["port_monitors"][0]["ports"][0]["last"].clone();
    // The project exists for the API once serve has read the tree (when it has settled).
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    serve.wait_until("localhost answers while loopback is approved", Duration::from_secs(30), || last()["ok"] == true);
    let first = serve.applied().unwrap();

    fs::write(dir.join("project.yaml"), project("[10.0.0.0/8]")).unwrap();
    serve.wait_until("the new networks are applied", Duration::from_secs(30), || serve.applied().is_some_and(|r| r != first));
    serve.wait_until("the check is refused as unapproved", Duration::from_secs(30), || last()["error_kind"] == "unapproved");
    let refused = last();
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("approved")), "the message says why: {refused}");
    // Refused, not merely failing: the monitor's alert fires like any failed check would.
    serve.wait_until("the alert fires", Duration::from_secs(30), || serve.firing().len() == 1);
    let alert = &serve.firing()[0];
    assert_eq!(alert["rule"], "port:local", "{alert}");
}
