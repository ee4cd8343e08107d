//! Flapping end to end, with real parts only: the real `watchkeeper serve` on a configuration
//! directory, a TCP port the test opens and closes again and again, aiosmtpd receiving the
//! mail, the status API and the dashboard (headless Chromium) reading what happened. The
//! flapping window is seconds, not minutes.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::browser::Browser;
use crate::support::serve::{Listener, OPERATOR, Serve};
use crate::support::smtp::{Mail, SmtpServer};
use crate::support::{free_port, install_crypto};

const LONG: Duration = Duration::from_secs(60);
/// The flapping window: every change below falls well inside it, and the alert settles once
/// the port has kept its state this long.
const WITHIN_S: u64 = 20;

/// alice (admin of `shop`) is mailed; `web` checks `port` every second and alerts on the first
/// refused check. More than 3 changes within 20 s is flapping. `extra` is added to the monitor.
fn write_tree(dir: &Path, smtp: u16, port: u16, extra: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\n---\n\
             kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {smtp}, tls: none }}\n\
             from: \"watchkeeper <alerts@example.com>\"\n---\n\
             kind: Project\nname: shop\nchannels: [mail]\nmembers: [{{ user: alice@example.com, role: admin }}]\n\
             flapping: {{ changes: 3, within: {WITHIN_S}s }}\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nhost: 127.0.0.1\nports: [{port}]\ninterval: 1s\ntimeout: 500ms\n\
             failures: 1\n{extra}"
        ),
    )
    .unwrap();
}

fn start(work: &Path, smtp: u16, port: u16, extra: &str) -> Serve {
    let conf = work.join("conf");
    write_tree(&conf, smtp, port, extra);
    let args: Vec<String> =
        vec!["--config".into(), conf.display().to_string(), "--db".into(), format!("sqlite://{}", work.join("wk.db").display())];
    let serve = Serve::start(&args, &[], &work.join("serve.log"));
    serve.wait_until("the tree is applied", LONG, || serve.log().contains("revision applied"));
    serve
}

/// Every alert of `shop`, newest first.
fn alerts(serve: &Serve) -> Vec<Value> {
    serve.get("/api/v1/projects/shop/alerts?limit=1000")["alerts"].as_array().cloned().unwrap_or_default()
}

/// Whether the port's alert fires now.
fn firing(serve: &Serve) -> bool {
    alerts(serve).first().is_some_and(|a| a["status"] == "firing")
}

/// Every notification of every alert, as (created_ms, kind, status), oldest first.
fn notifications(serve: &Serve) -> Vec<(i64, String, String)> {
    let mut all: Vec<(i64, String, String)> = alerts(serve)
        .iter()
        .flat_map(|a| {
            let detail = serve.get(&format!("/api/v1/projects/shop/alerts/{}", a["id"]));
            detail["notifications"].as_array().cloned().unwrap_or_default()
        })
        .map(|n| (n["created_ms"].as_i64().unwrap(), n["kind"].as_str().unwrap().to_string(), n["status"].as_str().unwrap().to_string()))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Open the port (an open listener) or close it, and wait until serve's alert says so: each
/// call is one change of the alert.
fn set_port(serve: &Serve, port: u16, listener: &mut Option<Listener>, open: bool) {
    if open {
        *listener = Some(Listener::open(port));
        serve.wait_until("the alert resolves", LONG, || !firing(serve));
    } else {
        listener.take();
        serve.wait_until("the alert fires", LONG, || firing(serve));
    }
}

fn subjects(mails: &[Mail]) -> Vec<&str> {
    mails.iter().map(|m| m.subject.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_port_mails_flapping_once_keeps_quiet_then_mails_where_it_settled() {
    install_crypto();
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let port = free_port();
    let serve = start(work.path(), smtp.port, port, "");
    let mut listener = None;

    // Change 1: nothing listens, it fires. Changes 2 and 3: open, closed — told as usual.
    serve.wait_until("the alert fires", LONG, || firing(&serve));
    set_port(&serve, port, &mut listener, true);
    set_port(&serve, port, &mut listener, false);
    // Change 4 is one too many: it is told as "flapping", instead of as resolved.
    set_port(&serve, port, &mut listener, true);
    serve.wait_until("the flapping notification", LONG, || notifications(&serve).iter().any(|n| n.1 == "flapping"));
    // Five more changes, ending closed: recorded, not told.
    for open in [false, true, false, true, false] {
        set_port(&serve, port, &mut listener, open);
    }
    let history = alerts(&serve);
    assert_eq!(history.len(), 5, "every firing is in the history");
    assert_eq!(history[0]["status"], "firing");
    // The API marks every alert opened or resolved while it flapped (the second resolved with
    // the change that made it flap); the first was before.
    let marks: Vec<bool> = history.iter().map(|a| a["flapping"].as_bool().unwrap()).collect();
    assert_eq!(marks, [true, true, true, true, false], "{history:#?}");
    let detail = serve.get(&format!("/api/v1/projects/shop/alerts/{}", history[0]["id"]));
    assert_eq!(detail["flapping"], true);

    // The dashboard shows the mark as a word on the history page and on the alert's page.
    let browser = Browser::start(1280, 800).await;
    let base = format!("http://127.0.0.1:{}", serve.port);
    browser.sign_in(&base, OPERATOR).await;
    browser.client.goto(&format!("{base}/p/shop/alerts")).await.unwrap();
    let js = "return Array.from(document.querySelectorAll('table.history tbody tr')).map(r => r.querySelector('.flapping') ? r.querySelector('.flapping').textContent : '');";
    let badges: Vec<String> = serde_json::from_value(browser.client.execute(js, vec![]).await.unwrap()).unwrap();
    // (The firing one may have settled by now; the resolved ones keep their mark.)
    assert!(badges[1..].iter().map(|b| b.contains("flapping")).eq([true, true, true, false]), "{badges:?}");
    browser.screenshot("flapping-history").await;
    browser.client.goto(&format!("{base}/p/shop/alerts/{}", history[2]["id"])).await.unwrap();
    assert!(browser.text("dd .flapping").await.contains("flapping"));
    browser.screenshot("flapping-alert").await;
    browser.close().await;

    // It stays closed: once the window passes without a change, one "settled" notification.
    serve.wait_until("the settled notification", LONG + Duration::from_secs(WITHIN_S), || {
        notifications(&serve).iter().any(|n| n.1 == "settled")
    });
    serve.wait_until("the outbox is empty", LONG, || serve.metric("watchkeeper_outbox_depth") == Some(0.0));
    let told = notifications(&serve);
    let flapped = told.iter().find(|n| n.1 == "flapping").unwrap().0;
    let settled = told.iter().find(|n| n.1 == "settled").unwrap().0;
    // Silence in between: everything between the two was kept, not sent, as flapping.
    let between: Vec<_> = told.iter().filter(|n| n.0 > flapped && n.0 < settled).collect();
    assert!(!between.is_empty() && between.iter().all(|n| n.2 == "not_sent"), "{told:?}");
    let sent: Vec<&str> = told.iter().filter(|n| n.2 == "sent").map(|n| n.1.as_str()).collect();
    assert_eq!(sent, ["fired", "resolved", "fired", "flapping", "settled"], "{told:?}");

    let mails = smtp.wait_for(5, LONG);
    assert_eq!(mails.len(), 5, "{:?}", subjects(&mails));
    assert_eq!(mails.iter().filter(|m| m.subject.contains("Flapping")).count(), 1, "{:?}", subjects(&mails));
    let settled: Vec<&Mail> = mails.iter().filter(|m| m.subject.contains("Settled")).collect();
    assert_eq!(settled.len(), 1, "{:?}", subjects(&mails));
    assert!(settled[0].body.contains("still failing after flapping"), "{}", settled[0].body);
    // The settled alert fires on, no longer flapping; the ones in between keep their mark.
    let after = alerts(&serve);
    assert_eq!((after[0]["status"].as_str(), after[0]["flapping"].as_bool()), (Some("firing"), Some(false)));
    assert_eq!(after.iter().map(|a| a["flapping"].as_bool().unwrap()).collect::<Vec<_>>(), [false, true, true, true, false]);
}
