//! The dashboard's tables in a real browser (headless Chromium) against the real serve binary:
//! the port monitors' yearly table of e-mails and SMS, read from a database the test filled
//! with known counts. Screenshots land in `target/screenshots/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use watchkeeper::alert::{AlertChange, AlertState, Phase, Severity};
use watchkeeper::notification::{DeliveryStatus, NewNotification};
use watchkeeper::store::{DeliveryOutcome, DeliveryReport, Store, Tracking};

use crate::store::{email, key, sms};
use crate::support::browser::Browser;
use crate::support::serve::{Listener, Serve};
use crate::support::{free_port, install_crypto};

const ALICE: &str = "alice-token-for-dashboard-lists";

/// `shop` (alice's, in Seoul) with two port monitors on an open port: `web`, which the test
/// gives notifications, and `mail`, which has none.
fn write_tree(dir: &Path, port: u16) {
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {}\n---\n\
             kind: Group\nname: web-team\nowner: alice@example.com\n---\n\
             kind: Project\nname: shop\ngroup: web-team\ntimezone: Asia/Seoul\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nhost: 127.0.0.1\nports: [{port}]\ninterval: 1m\n---\n\
             kind: PortMonitor\nname: mail\nproject: shop\nhost: 127.0.0.1\nports: [{port}]\ninterval: 1m\n",
            watchkeeper::token::sha256_hex(ALICE)
        ),
    )
    .unwrap();
}

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// An alert of port monitor `web` (on `port`) from `at_ms`, resolved a minute later, with
/// `notes`; the ids of its notifications.
async fn alert(store: &Store, port: &str, at_ms: i64, notes: &[NewNotification]) -> Vec<i64> {
    let k = key("shop", "", "port:web", port);
    let firing = AlertState { phase: Phase::Firing { since_ms: at_ms, severity: Severity::Fatal }, failures: 3, ..AlertState::default() };
    let open = AlertChange::Open {
        severity: Severity::Fatal,
        started_at_ms: at_ms,
        message: "connection refused".into(),
        host: "127.0.0.1".into(),
        snapshot: json!({}),
    };
    let id = store.apply_alert(&k, &firing, None, Some(&open), notes, at_ms).await.unwrap().expect("an alert id");
    let resolve = AlertChange::Resolve { at_ms: at_ms + 60_000, reason: "recovered".into() };
    store.apply_alert(&k, &AlertState::default(), Some(id), Some(&resolve), &[], at_ms + 60_000).await.unwrap();
    store.notifications_for_alert(id).await.unwrap().into_iter().map(|(n, _)| n.id).collect()
}

/// Port monitor `web`'s notifications in 2025: in March (Seoul), two e-mails sent (one read),
/// one held back by maintenance and an SMS the gateway reported delivered; in July an e-mail
/// and an SMS given up.
async fn fill(store: &Store) {
    let sent = |gateway: Option<&str>, read: Option<&str>| {
        DeliveryOutcome::Sent(Tracking { message_id: None, gateway_id: gateway.map(Into::into), read_token_sha256: read.map(Into::into) })
    };
    let given_up = DeliveryOutcome::Failed { error: "550 no such user".into(), retry_at_ms: None };
    // 2025-03-01 00:30 in Seoul, still February in UTC.
    let march = ms("2025-02-28T15:30:00Z");
    let held = NewNotification { status: DeliveryStatus::NotSent, reason: Some("maintenance".into()), ..email("d@example.com", "fired") };
    let notes = [email("a@example.com", "fired"), email("b@example.com", "fired"), held, sms("+82101", "fired")];
    let ids = alert(store, "443", march, &notes).await;
    store.record_delivery(ids[0], march + 1_000, &sent(None, Some("read-1"))).await.unwrap();
    store.record_delivery(ids[1], march + 1_000, &sent(None, None)).await.unwrap();
    store.record_delivery(ids[3], march + 1_000, &sent(Some("gw-1"), None)).await.unwrap();
    assert!(store.mark_read("read-1", march + 3_600_000).await.unwrap());
    assert!(store.record_delivery_report("ops-sms", "gw-1", &DeliveryReport::Delivered, march + 5_000).await.unwrap());

    let july = ms("2025-07-20T03:00:00Z");
    let ids = alert(store, "80", july, &[email("a@example.com", "fired"), sms("+82101", "fired")]).await;
    store.record_delivery(ids[0], july + 1_000, &given_up).await.unwrap();
    store.record_delivery(ids[1], july + 1_000, &given_up).await.unwrap();
}

/// The counts of the row `tr` of monitor `monitor`'s table body: `data-count` → number.
async fn counts(browser: &Browser, monitor: &str, month: &str) -> BTreeMap<String, i64> {
    let js = format!(
        "const r = document.querySelector('table.sent-stats tbody[data-monitor={monitor}] tr[data-month=\"{month}\"]');\
         return r ? Object.fromEntries(Array.from(r.querySelectorAll('td[data-count]')).map(td => [td.dataset.count, +td.textContent])) : null;"
    );
    let value = browser.client.execute(&js, vec![]).await.unwrap();
    serde_json::from_value(value.clone()).unwrap_or_else(|_| panic!("no row for {monitor} {month}: {value}"))
}

fn expected(email: [i64; 4], sms: [i64; 4]) -> BTreeMap<String, i64> {
    let email = ["sent", "not_sent", "failed", "read"].iter().zip(email).map(|(k, n)| (format!("email-{k}"), n));
    let sms = ["sent", "not_sent", "failed", "delivered"].iter().zip(sms).map(|(k, n)| (format!("sms-{k}"), n));
    email.chain(sms).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_page_shows_each_monitors_mails_and_sms_per_month_of_the_year() {
    install_crypto();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let web = Listener::open(free_port());
    write_tree(&tree, web.port);
    let db = format!("sqlite://{}", tmp.path().join("db.sqlite").display());
    let store = Store::connect(&db).await.unwrap();
    fill(&store).await;
    store.close().await;

    let serve = Serve::start(&["--config".into(), tree.display().to_string(), "--db".into(), db], &[], &tmp.path().join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    let base = format!("http://127.0.0.1:{}", serve.port);
    let browser = Browser::start(1280, 1000).await;
    browser.sign_in(&base, ALICE).await;
    browser.client.goto(&format!("{base}/p/shop/ports?year=2025")).await.unwrap();
    assert_eq!(browser.text("section.sent-stats h2").await, "Notifications in 2025");

    let months: Vec<String> = serde_json::from_value(
        browser
            .client
            .execute("return Array.from(document.querySelectorAll('tbody[data-monitor=web] tr')).map(r => r.dataset.month);", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(months, ["3", "7", "year"], "a row for each month with notifications, in the project's timezone, and the year");
    assert_eq!(counts(&browser, "web", "3").await, expected([2, 1, 0, 1], [1, 0, 0, 1]));
    assert_eq!(counts(&browser, "web", "7").await, expected([0, 0, 1, 0], [0, 0, 1, 0]));
    assert_eq!(counts(&browser, "web", "year").await, expected([2, 1, 1, 1], [1, 0, 1, 1]));
    let mail = browser.text("tbody[data-monitor=mail]").await;
    assert!(mail.contains("none this year"), "{mail}");
    browser.client.execute("document.querySelector('#notifications').scrollIntoView();", vec![]).await.unwrap();
    browser.screenshot("ports-delivery-2025").await;

    // The API counts the same, through the same function.
    let stats = serve.get("/api/v1/projects/shop/monitors/stats?year=2025");
    let web_year = stats["monitors"].as_array().unwrap().iter().find(|m| m["monitor"] == "web").unwrap()["total"].clone();
    assert_eq!(web_year["email"], json!({"sent": 2, "not_sent": 1, "failed": 1, "read": 1, "delivered": 0}));
    assert_eq!(web_year["sms"], json!({"sent": 1, "not_sent": 0, "failed": 1, "read": 0, "delivered": 1}));

    // Another year has nothing; a bad year is a 400 page naming it.
    browser.client.goto(&format!("{base}/p/shop/ports?year=2024")).await.unwrap();
    assert!(browser.text("tbody[data-monitor=web]").await.contains("none this year"));
    browser.client.goto(&format!("{base}/p/shop/ports?year=twenty")).await.unwrap();
    assert!(browser.text("main").await.contains("invalid `year`"));
    browser.close().await;
}
