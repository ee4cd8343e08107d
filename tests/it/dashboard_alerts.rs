//! The dashboard's alert pages in a real browser (headless Chromium) against the real serve
//! binary, with a real agent, a really closed port and a real SMTP server (aiosmtpd): the
//! history and its filters, an alert's snapshot, charts, processes and delivery log, and the
//! acknowledgement form with its guard against other sites' posts. Screenshots land in
//! `target/screenshots/`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::Value;

use crate::support::agent::{self, Agent};
use crate::support::browser::Browser;
use crate::support::serve::{Listener, Serve};
use crate::support::smtp::SmtpServer;
use crate::support::{free_port, install_crypto};

const ALICE: &str = "alice-token-for-alert-pages";
const CAROL: &str = "carol-token-for-alert-pages";
const BOB: &str = "bob-token-for-alert-pages";

/// `shop` (group `web-team`: alice owns it, carol is a plain user) in Seoul time, mailing
/// through aiosmtpd; web-01 has an agent, a policy that fires a warning at its first report
/// (memory above 0.1 %) and a port monitor. `billing` is bob's.
fn write_tree(dir: &Path, smtp: u16, web_port: u16) {
    let hash = watchkeeper::token::sha256_hex;
    fs::write(
        dir.join("people.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {}\n---\n\
             kind: User\nemail: carol@example.com\nname: Carol\ntoken_sha256: {}\nnotify: {{ email: false }}\n---\n\
             kind: User\nemail: bob@example.com\nname: Bob\ntoken_sha256: {}\n---\n\
             kind: Group\nname: web-team\nowner: alice@example.com\nusers: [carol@example.com]\n---\n\
             kind: Group\nname: billing-team\nowner: bob@example.com\n---\n\
             kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {smtp}, tls: none }}\nfrom: \"wk <alerts@example.com>\"\ntrack_reads: true\n",
            hash(ALICE),
            hash(CAROL),
            hash(BOB)
        ),
    )
    .unwrap();
    fs::write(
        dir.join("projects.yaml"),
        format!(
            "kind: Project\nname: shop\ngroup: web-team\ntimezone: Asia/Seoul\nchannels: [mail]\ningest_key_sha256: {}\n---\n\
             kind: Server\nname: web-01\nproject: shop\nhost: 127.0.0.1\npolicy: busy\n---\n\
             kind: AlertPolicy\nname: busy\nproject: shop\nrules:\n  - {{ metric: memory.usage, warning: 0.1 }}\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nserver: web-01\nports: [{web_port}]\ninterval: 1s\ntimeout: 500ms\nfailures: 2\n---\n\
             kind: Project\nname: billing\ngroup: billing-team\n---\n\
             kind: Server\nname: pay-01\nproject: billing\nhost: 127.0.0.1\n",
            hash(agent::KEY)
        ),
    )
    .unwrap();
}

/// The project's alerts through the API (operator).
fn alerts(serve: &Serve) -> Vec<Value> {
    serve.get("/api/v1/projects/shop/alerts")["alerts"].as_array().cloned().unwrap_or_default()
}

fn alert_id(serve: &Serve, rule: &str, status: &str) -> Option<i64> {
    alerts(serve).into_iter().find(|a| a["rule"] == rule && a["status"] == status).and_then(|a| a["id"].as_i64())
}

async fn text(browser: &Browser, css: &str) -> String {
    browser.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
}

async fn script<T: serde::de::DeserializeOwned>(browser: &Browser, js: &str) -> T {
    serde_json::from_value(browser.client.execute(js, vec![]).await.unwrap()).unwrap()
}

/// The `(id, severity)` of every row of the history page.
async fn rows(browser: &Browser) -> Vec<(i64, String)> {
    let js = "return Array.from(document.querySelectorAll('table.history tbody tr')).map(r => [+r.dataset.alert, r.dataset.severity]);";
    script(browser, js).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_pages_show_history_snapshot_and_delivery_and_take_a_note_only_from_the_dashboards_own_form() {
    install_crypto();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let smtp = SmtpServer::start();
    let web = Listener::open(free_port());
    write_tree(&tree, smtp.port, web.port);
    let db = format!("sqlite://{}", tmp.path().join("db.sqlite").display());
    let api_port = free_port();
    let public_url = format!("http://127.0.0.1:{api_port}");
    let args = ["--config".into(), tree.display().to_string(), "--db".into(), db, "--public-url".into(), public_url.clone()];
    let serve = Serve::start_on(&args, &[], &tmp.path().join("serve.log"), api_port);
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    let _agent = Agent::start(&serve, "web-01", tmp.path(), &["--interval", "1s"]);
    let base = format!("http://127.0.0.1:{}", serve.port);

    // The agent's first report fires the memory warning; the closed port fires a fatal alert,
    // mailed to alice through aiosmtpd.
    let port = web.close();
    serve.wait_until("both alerts fire", Duration::from_secs(60), || {
        alert_id(&serve, "metric:memory.usage", "firing").is_some() && alert_id(&serve, "port:web", "firing").is_some()
    });
    let memory = alert_id(&serve, "metric:memory.usage", "firing").unwrap();
    let port_alert = alert_id(&serve, "port:web", "firing").unwrap();
    let detail = |id: i64| serve.get(&format!("/api/v1/projects/shop/alerts/{id}"));
    serve.wait_until("the port alert's mail is sent", Duration::from_secs(60), || {
        detail(port_alert)["notifications"].as_array().is_some_and(|n| n.iter().any(|n| n["status"] == "sent"))
    });
    let mails = smtp.wait_for(1, Duration::from_secs(30));
    let mail = mails.iter().find(|m| m.to.contains("alice@example.com") && m.subject.contains("port ")).expect("alice's mail of the port");
    // alice's mail program shows the mail's images: her mail of the port is read.
    let html = mail.html.as_deref().expect("an HTML part (the channel tracks reads)");
    let image = format!("<img src=\"{public_url}");
    let start = html.find(&image).unwrap_or_else(|| panic!("no read-receipt image: {html}")) + image.len();
    let path = &html[start..start + html[start..].find('"').expect("end of src")];
    let fetched = reqwest::get(format!("{public_url}{path}")).await.expect("fetch the image");
    assert_eq!(fetched.status(), 200, "GET {path}");

    // The history: both alerts, in Seoul time, with the memory alert's snapshot.
    let browser = Browser::start(1280, 1000).await;
    browser.sign_in(&base, ALICE).await;
    browser.client.goto(&format!("{base}/p/shop")).await.unwrap();
    browser.client.find(Locator::Css("nav.project a[href='/p/shop/alerts']")).await.unwrap().click().await.unwrap();
    browser.wait_for("the history", Duration::from_secs(20), "return location.pathname === '/p/shop/alerts';").await;
    let listed = rows(&browser).await;
    assert!(listed.contains(&(port_alert, "fatal".into())) && listed.contains(&(memory, "warning".into())), "{listed:?}");
    let row = text(&browser, &format!("tr[data-alert='{port_alert}']")).await;
    assert!(row.contains("KST") && row.contains("web-01") && row.contains("firing"), "{row}");
    let row = text(&browser, &format!("tr[data-alert='{memory}'] td.snap")).await;
    // (The first report has no CPU or network rates yet: those need two samples.)
    assert!(row.contains("mem ") && row.contains(" %") && !row.contains("mem –"), "the memory alert's snapshot: {row}");
    browser.screenshot("alerts-history").await;

    // Filtered by severity through the form: only fatal alerts remain.
    browser.client.find(Locator::Css("form.filters select[name=severity]")).await.unwrap().select_by_value("fatal").await.unwrap();
    browser.client.find(Locator::Css("form.filters button")).await.unwrap().click().await.unwrap();
    browser.wait_for("the fatal filter", Duration::from_secs(20), "return location.search.includes('severity=fatal');").await;
    let listed = rows(&browser).await;
    assert!(listed.contains(&(port_alert, "fatal".into())), "{listed:?}");
    assert!(listed.iter().all(|(_, severity)| severity == "fatal"), "{listed:?}");
    browser.screenshot("alerts-history-fatal").await;
    // By server, and a bad parameter is named.
    let cookie = browser.session().await;
    let get = |path: &str| serve.request("GET", path, &[("Cookie", &cookie)], b"");
    let (status, body) = get("/p/shop/alerts?server=db-01");
    assert!(status == 200 && body.contains("No alert matches.") && !body.contains(&format!("data-alert=\"{port_alert}\"")), "{body}");
    let (status, body) = get("/p/shop/alerts?severity=critical");
    assert!(status == 400 && body.contains("invalid `severity`"), "{status} {body}");

    // The memory alert's page: overview, snapshot, charts with the start marked, processes.
    browser.client.goto(&format!("{base}/p/shop/alerts/{memory}")).await.unwrap();
    let snapshot = text(&browser, "dl.snapshot").await;
    assert!(snapshot.contains("CPU") && snapshot.contains("Memory") && snapshot.contains(" %"), "{snapshot}");
    let points: i64 = script(&browser, "return +document.querySelector('svg[aria-label=\"CPU usage\"]').dataset.points;").await;
    assert!(points > 0, "the CPU chart around the start has the agent's samples");
    let marks: usize = script(&browser, "return document.querySelectorAll('svg line.mark.warning').length;").await;
    assert_eq!(marks, 4, "each of the four charts marks the start in the warning colour");
    let processes: usize = script(&browser, "return document.querySelectorAll('#processes tbody tr').length;").await;
    assert!((1..=10).contains(&processes), "{processes}");
    browser.screenshot("alert-page-memory").await;
    // This machine runs more than ten processes: "view all" lists every one the report had.
    browser.client.find(Locator::Css("#processes a[href*='processes=all']")).await.expect("a link to every process").click().await.unwrap();
    browser.wait_for("every process", Duration::from_secs(20), "return location.search === '?processes=all';").await;
    let every: usize = script(&browser, "return document.querySelectorAll('#processes tbody tr').length;").await;
    assert!(every > 10, "{every}");

    // The port alert's page: no snapshot (a port check), its mail to alice sent.
    browser.client.goto(&format!("{base}/p/shop/alerts/{port_alert}")).await.unwrap();
    let delivery = text(&browser, "table.notifications").await;
    assert!(delivery.contains("alice@example.com") && delivery.contains("sent") && delivery.contains("fired"), "{delivery}");
    let sent: usize = script(&browser, "return document.querySelectorAll('table.notifications tr[data-status=sent]').length;").await;
    assert!(sent >= 1);
    let read = text(&browser, "table.notifications tr[data-status=sent] .read").await;
    assert!(read.starts_with("read ") && read.contains("KST"), "alice's mail shows when it was read: {read}");
    script::<Value>(&browser, "document.querySelector('#notifications').scrollIntoView(); return null;").await;
    browser.screenshot("alert-page-port-delivery").await;
    browser.screenshot("alert-page-port").await;

    // Acknowledged through the form: the page shows the note, the API's acks[] has it.
    let note = "Restarted the web server; watching it.";
    browser.client.find(Locator::Css("textarea[name=note]")).await.unwrap().send_keys(note).await.unwrap();
    browser.client.find(Locator::Css("form.ack button")).await.unwrap().click().await.unwrap();
    browser.wait_for("the note on the page", Duration::from_secs(20), "return document.querySelector('ol.acks') !== null;").await;
    assert!(browser.client.current_url().await.unwrap().path().ends_with(&format!("/alerts/{port_alert}")));
    let acks = text(&browser, "ol.acks").await;
    assert!(acks.contains(note) && acks.contains("alice@example.com"), "{acks}");
    browser.screenshot("alert-page-acknowledged").await;
    let stored = || detail(port_alert)["acks"].as_array().cloned().unwrap_or_default();
    let acked = stored();
    assert_eq!((acked.len(), acked[0]["note"].as_str(), acked[0]["by"].as_str()), (1, Some(note), Some("alice@example.com")));
    assert_eq!(detail(port_alert)["acknowledged"], true);

    // Forged posts with alice's cookie: no form token, a wrong one, or the right one from another
    // site's page — each 403, and nothing stored.
    let csrf: String = script(&browser, "return document.querySelector('input[name=csrf]').value;").await;
    let path = format!("/p/shop/alerts/{port_alert}/acks");
    let form = |extra: &[(&'static str, &str)]| {
        let mut h = vec![("Cookie", cookie.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
        h.extend_from_slice(extra);
        h.into_iter().map(|(k, v)| (k, v.to_string())).collect::<Vec<_>>()
    };
    let post = |headers: Vec<(&str, String)>, body: String| {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        serve.request("POST", &path, &headers, body.as_bytes())
    };
    for (headers, body) in [
        (form(&[]), "note=forged".to_string()),
        (form(&[]), "csrf=wk_not-the-token&note=forged".to_string()),
        (form(&[("Origin", "http://evil.example")]), format!("csrf={csrf}&note=forged")),
        (
            vec![("Cookie", cookie.clone()), ("Content-Type", "application/json".to_string())],
            format!("{{\"csrf\":\"{csrf}\",\"note\":\"forged\"}}"),
        ),
    ] {
        let (status, page) = post(headers, body);
        assert!(status == 403 && page.contains("Form refused"), "{status} {page}");
    }
    assert_eq!(stored().len(), 1, "no forged note was stored");
    // The same form with the session's token is recorded (a second note appends); `Origin`
    // names the address the request went to (this client sends `Host: 127.0.0.1`).
    let (status, _) = post(form(&[("Origin", "http://127.0.0.1")]), format!("csrf={csrf}&note=second+note"));
    assert_eq!(status, 303);
    assert_eq!(stored().len(), 2);
    // An empty note is refused on the page, with the API's reason.
    let (status, page) = post(form(&[]), format!("csrf={csrf}&note=+++"));
    assert!(status == 400 && page.contains("The note was not recorded: note is empty"), "{status} {page}");

    // A plain user of the group sees the alert but not who was told.
    let carol = Browser::start(1280, 900).await;
    carol.sign_in(&base, CAROL).await;
    carol.client.goto(&format!("{base}/p/shop/alerts/{port_alert}")).await.unwrap();
    let section = text(&carol, "#notifications").await;
    assert!(section.contains("shown to project admins") && !section.contains("alice@example.com"), "{section}");
    carol.close().await;

    // The port opens again: the alert resolves, the form is gone, and a post is a clear 409.
    let web = Listener::open(port);
    serve.wait_until("the port alert resolves", Duration::from_secs(60), || alert_id(&serve, "port:web", "resolved") == Some(port_alert));
    let (status, page) = post(form(&[]), format!("csrf={csrf}&note=too+late"));
    assert!(status == 409 && page.contains("This alert has resolved, so the note was not recorded"), "{status} {page}");
    assert!(!page.contains("<textarea"), "no form on a resolved alert");
    assert_eq!(stored().len(), 2);
    drop(web);

    // Bob's group does not have the project: the 404 page, as for one that does not exist.
    let bob = Browser::start(1280, 900).await;
    bob.sign_in(&base, BOB).await;
    for path in ["/p/shop/alerts".to_string(), format!("/p/shop/alerts/{port_alert}"), "/p/shop/alerts/999999".to_string()] {
        bob.client.goto(&format!("{base}{path}")).await.unwrap();
        assert_eq!(text(&bob, "h1").await, "Not found", "{path}");
    }
    let bob_cookie = bob.session().await;
    let (status, _) = serve.request(
        "POST",
        &path,
        &[("Cookie", &bob_cookie), ("Content-Type", "application/x-www-form-urlencoded")],
        format!("csrf={csrf}&note=not+mine").as_bytes(),
    );
    assert_eq!(status, 403, "alice's form token is not bob's");
    assert_eq!(stored().len(), 2);
    bob.screenshot("alert-page-other-group").await;
    bob.close().await;
    browser.close().await;
}
