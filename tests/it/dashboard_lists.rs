//! The dashboard's tables in a real browser (headless Chromium) against the real serve binary:
//! the port monitors' yearly table of e-mails and SMS, read from a database the test filled
//! with known counts; the server list with its columns and sort kept in the browser, its tag
//! filter, search and pages. Screenshots land in `target/screenshots/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};
use watchkeeper::alert::{AlertChange, AlertState, Phase, Severity};
use watchkeeper::notification::{DeliveryStatus, NewNotification};
use watchkeeper::store::{DeliveryOutcome, DeliveryReport, Store, Tracking};

use crate::store::{email, key, sms};
use crate::support::agent;
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

/// A tree and a SQLite database in a temporary directory.
struct Site {
    tmp: tempfile::TempDir,
    db: String,
}

impl Site {
    /// `write` writes the tree into its directory.
    fn new(write: impl FnOnce(&Path)) -> Site {
        install_crypto();
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("tree")).unwrap();
        write(&tmp.path().join("tree"));
        let db = format!("sqlite://{}", tmp.path().join("db.sqlite").display());
        Site { tmp, db }
    }

    /// serve following the tree, once it is applied.
    fn serve(&self) -> Serve {
        let tree = self.tmp.path().join("tree").display().to_string();
        let serve = Serve::start(&["--config".into(), tree, "--db".into(), self.db.clone()], &[], &self.tmp.path().join("serve.log"));
        serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
        serve
    }
}

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// An alert of port monitor `web` (on `port`) from `at_ms`, resolved a minute later, with
/// `notes`; the ids of its notifications.
pub(crate) async fn alert(store: &Store, port: &str, at_ms: i64, notes: &[NewNotification]) -> Vec<i64> {
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
    let web = Listener::open(free_port());
    let site = Site::new(|tree| write_tree(tree, web.port));
    let store = Store::connect(&site.db).await.unwrap();
    fill(&store).await;
    store.close().await;
    let serve = site.serve();
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

/// `shop` with 241 servers: `srv-000` … `srv-239` on 10.1.0.N, tagged `web` (even) or `db`
/// (odd), and `edge-01` on 198.51.100.7 tagged `edge`.
fn write_fleet(dir: &Path) {
    let mut yaml = format!(
        "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {}\n---\n\
         kind: Group\nname: web-team\nowner: alice@example.com\n---\n\
         kind: Project\nname: shop\ngroup: web-team\ntimezone: Asia/Seoul\ningest_key_sha256: {}\n---\n\
         kind: Server\nname: edge-01\nproject: shop\nhost: 198.51.100.7\ntags: [edge]\n",
        watchkeeper::token::sha256_hex(ALICE),
        watchkeeper::token::sha256_hex(agent::KEY)
    );
    for i in 0..240 {
        let tag = if i % 2 == 0 { "web" } else { "db" };
        yaml.push_str(&format!("---\nkind: Server\nname: srv-{i:03}\nproject: shop\nhost: 10.1.0.{i}\ntags: [{tag}]\n"));
    }
    fs::write(dir.join("tree.yaml"), yaml).unwrap();
}

/// A report of `server` with its CPU at `cpu` % and the agent's addresses `ips`.
fn report(server: &str, cpu: f64, ips: &[&str]) -> Value {
    json!({
        "project": "shop",
        "server": server,
        "reports": [{
            "facts": { "os": "Debian GNU/Linux 12", "kernel": "6.1", "cpu_vendor": "GenuineIntel", "cpu_model": "Xeon", "cpu_count": 2,
                       "ram_total_bytes": 4_294_967_296u64, "boot_time": 1, "uptime_secs": 3 * 86_400, "ips": ips },
            "metrics": [{ "name": "cpu.usage", "value": cpu }, { "name": "memory.usage", "value": 40.0 }],
            "processes": [], "process_counts": {}, "at_ms": watchkeeper::clock::now_ms(),
        }],
    })
}

/// The server names of the list's rows, in order.
async fn listed(browser: &Browser) -> Vec<String> {
    let js = "return Array.from(document.querySelectorAll('#servers tbody tr')).map(r => r.dataset.server);";
    serde_json::from_value(browser.client.execute(js, vec![]).await.unwrap()).unwrap()
}

/// Whether the column `col`'s heading shows.
async fn column_shown(browser: &Browser, col: &str) -> bool {
    let js = format!("return !document.querySelector('#servers th[data-col={col}]').hidden;");
    browser.client.execute(&js, vec![]).await.unwrap() == json!(true)
}

/// Wait until the page's address has `search` and its list starts with `first`.
async fn wait_list(browser: &Browser, search: &str, first: &str) {
    let js = format!(
        "const r = document.querySelector('#servers tbody tr'); return location.search === '{search}' && r !== null && r.dataset.server === '{first}';"
    );
    browser.wait_for(&format!("the list at {search} starting with {first}"), Duration::from_secs(30), &js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_list_keeps_the_chosen_columns_and_sort_filters_by_tag_searches_by_ip_and_pages() {
    let site = Site::new(write_fleet);
    let serve = site.serve();
    for (server, cpu, ips) in [("srv-005", 90.0, &[][..]), ("edge-01", 70.0, &[]), ("srv-100", 50.0, &["192.0.2.55"][..])] {
        let (status, body) = serve.ingest(agent::KEY, &report(server, cpu, ips));
        assert_eq!(status, 200, "{body}");
    }
    let base = format!("http://127.0.0.1:{}", serve.port);
    let browser = Browser::start(1280, 900).await;
    browser.sign_in(&base, ALICE).await;

    // From the project's menu: the first page in name order, the default columns.
    browser.client.goto(&format!("{base}/p/shop")).await.unwrap();
    browser.click("nav.project a[href='/p/shop/servers']").await;
    browser.wait_for("the server list", Duration::from_secs(30), "return location.pathname === '/p/shop/servers';").await;
    assert_eq!(browser.text("#count").await, "Servers 1–100 of 241");
    let rows = listed(&browser).await;
    assert_eq!((rows.len(), rows[0].as_str(), rows[1].as_str(), rows[99].as_str()), (100, "edge-01", "srv-000", "srv-098"));
    assert!(column_shown(&browser, "os").await && !column_shown(&browser, "vendor").await);
    browser.screenshot("servers-default").await;

    // Choose columns: the CPU vendor on, the OS off.
    browser.click("#columns summary").await;
    browser.click("#columns input[data-col=vendor]").await;
    browser.click("#columns input[data-col=os]").await;
    assert!(column_shown(&browser, "vendor").await && !column_shown(&browser, "os").await);
    assert_eq!(browser.text("#servers tr[data-server=srv-005] td[data-col=vendor]").await, "GenuineIntel");
    browser.screenshot("servers-columns").await;

    // Sort by CPU, busiest first; servers without a report follow in name order.
    browser.click("#servers th a[data-sort=cpu]").await;
    wait_list(&browser, "?sort=cpu", "srv-005").await;
    assert_eq!(listed(&browser).await[..4], ["srv-005", "edge-01", "srv-100", "srv-000"]);
    assert!(column_shown(&browser, "vendor").await && !column_shown(&browser, "os").await, "the columns stay chosen on the next page");

    // Back later, without the sort in the address: the sort and the columns are kept.
    browser.client.goto(&format!("{base}/p/shop/servers")).await.unwrap();
    wait_list(&browser, "?sort=cpu", "srv-005").await;
    assert!(column_shown(&browser, "vendor").await && !column_shown(&browser, "os").await);
    let checked = "return [document.querySelector('#columns input[data-col=vendor]').checked, document.querySelector('#columns input[data-col=os]').checked];";
    assert_eq!(browser.client.execute(checked, vec![]).await.unwrap(), json!([true, false]));
    browser.screenshot("servers-chosen-columns-by-cpu").await;

    // Filter by tag.
    browser.element("select[name=tag]").await.select_by_value("edge").await.unwrap();
    browser.click("form.filters button[type=submit]").await;
    wait_list(&browser, "?tag=edge&q=&sort=cpu", "edge-01").await;
    assert_eq!(listed(&browser).await, ["edge-01"]);
    assert_eq!(browser.text("#count").await, "Servers 1–1 of 1");

    // Search by an address the agent reported, then by a configured one.
    browser.element("select[name=tag]").await.select_by_value("").await.unwrap();
    let q = browser.client.find(Locator::Css("input[name=q]")).await.unwrap();
    q.send_keys("192.0.2.55").await.unwrap();
    browser.click("form.filters button[type=submit]").await;
    wait_list(&browser, "?tag=&q=192.0.2.55&sort=cpu", "srv-100").await;
    assert_eq!(listed(&browser).await, ["srv-100"]);
    browser.screenshot("servers-search-ip").await;
    let q = browser.client.find(Locator::Css("input[name=q]")).await.unwrap();
    q.clear().await.unwrap();
    q.send_keys("10.1.0.42").await.unwrap();
    browser.click("form.filters button[type=submit]").await;
    wait_list(&browser, "?tag=&q=10.1.0.42&sort=cpu", "srv-042").await;
    assert_eq!(listed(&browser).await, ["srv-042"]);

    // Pages of 100: the last one holds the rest, and goes back.
    browser.client.goto(&format!("{base}/p/shop/servers?sort=name&page=3")).await.unwrap();
    wait_list(&browser, "?sort=name&page=3", "srv-199").await;
    assert_eq!(listed(&browser).await.len(), 41);
    assert_eq!(browser.text("#count").await, "Servers 201–241 of 241");
    assert!(browser.client.find(Locator::Css("nav.pages a[rel=next]")).await.is_err());
    browser.click("nav.pages a[rel=prev]").await;
    wait_list(&browser, "?sort=name&page=2", "srv-099").await;

    // A bad sort is a 400 page naming it.
    let (status, body) = serve.request("GET", "/p/shop/servers?sort=ram", &[("Cookie", &browser.session().await)], b"");
    assert_eq!(status, 400);
    assert!(body.contains("invalid `sort`"), "{body}");
    browser.close().await;
}
