//! The dashboard's views that a person sees and no other test looks at, in a real browser
//! (headless Chromium) against the real serve binary, with reports sent to serve's ingest
//! endpoint as an agent sends them: the compound eye's warning and no-data cells and its
//! traffic-max control, the server page's process table in each sort, the print style sheet,
//! the 7- and 30-day availability ranges with their arrows, the alert history's date filter,
//! the projects page's banner for a rejected revision; and over plain HTTP the session cookie's
//! `Secure` flag and `--session-ttl`. Screenshots land in `target/screenshots/`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use watchkeeper::store::Store;

use crate::dashboard_language::set_cookie;
use crate::dashboard_lists::alert;
use crate::support::agent;
use crate::support::browser::Browser;
use crate::support::serve::{Listener, OPERATOR, Serve};
use crate::support::{free_port, install_crypto};

const ALICE: &str = "alice-token-for-dashboard-views";

/// `shop` (alice's, in Seoul): `web-01` with a port monitor on `port`, `cache-01` whose policy
/// warns above 50 % CPU, and `db-01`, which never reports.
fn write_tree(dir: &Path, port: u16) {
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {}\n---\n\
             kind: Group\nname: web-team\nowner: alice@example.com\n---\n\
             kind: Project\nname: shop\ngroup: web-team\ntimezone: Asia/Seoul\ningest_key_sha256: {}\n---\n\
             kind: Server\nname: web-01\nproject: shop\nhost: 127.0.0.1\n---\n\
             kind: Server\nname: cache-01\nproject: shop\nhost: 127.0.0.1\npolicy: hot\n---\n\
             kind: AlertPolicy\nname: hot\nproject: shop\nrules:\n  - {{ metric: cpu.usage, warning: 50, fatal: 99 }}\n---\n\
             kind: Server\nname: db-01\nproject: shop\nhost: 127.0.0.1\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nserver: web-01\nports: [{port}]\ninterval: 1s\ntimeout: 500ms\n",
            watchkeeper::token::sha256_hex(ALICE),
            watchkeeper::token::sha256_hex(agent::KEY)
        ),
    )
    .unwrap();
}

/// A process of a report: (pid, name, CPU %, memory %).
type Process = (u32, &'static str, f64, f64);

/// web-01's processes: nginx twice, then one each of postgres, bash and cron.
const PROCESSES: &[Process] =
    &[(10, "nginx", 30.0, 5.0), (11, "nginx", 10.0, 6.0), (20, "postgres", 5.0, 30.0), (30, "bash", 1.0, 0.5), (40, "cron", 0.2, 0.1)];

/// A report of `server` as the agent sends it: CPU, memory, a disk and an interface receiving
/// `rx` and sending `tx` bits per second, and `processes`.
fn report(server: &str, cpu: f64, rx: f64, tx: f64, processes: &[Process]) -> Value {
    let mut counts = serde_json::Map::new();
    for (_, name, _, _) in processes {
        let n = counts.get(*name).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(name.to_string(), json!(n + 1));
    }
    let processes: Vec<Value> = processes
        .iter()
        .map(|(pid, name, cpu, memory)| json!({ "pid": pid, "name": name, "user": "www-data", "cpu": cpu, "memory": memory, "rss_bytes": 1 << 20 }))
        .collect();
    json!({
        "project": "shop",
        "server": server,
        "reports": [{
            "facts": { "os": "Debian GNU/Linux 12", "kernel": "6.1", "cpu_vendor": "GenuineIntel", "cpu_model": "Xeon", "cpu_count": 2,
                       "ram_total_bytes": 4_294_967_296u64, "boot_time": 1, "uptime_secs": 3 * 86_400, "ips": ["10.0.0.1"] },
            "metrics": [
                { "name": "cpu.usage", "value": cpu }, { "name": "memory.usage", "value": 40.0 },
                { "name": "disk.usage", "subject": "/", "value": 70.0 },
                { "name": "network.in_bps", "subject": "eth0", "value": rx }, { "name": "network.out_bps", "subject": "eth0", "value": tx },
            ],
            "processes": processes, "process_counts": counts, "at_ms": watchkeeper::clock::now_ms(),
        }],
    })
}

/// Reports for web-01 and cache-01 every 2 s, as their agents would send them, until dropped.
struct Reporting {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Reporting {
    fn start(port: u16) -> Reporting {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                // web-01 receives 5 Mb/s and sends 50 Mb/s; cache-01 runs hot.
                for body in [report("web-01", 20.0, 5e6, 50e6, PROCESSES), report("cache-01", 60.0, 1e6, 1e6, &[])] {
                    let (status, answer) = post(port, "/ingest/v1/report", agent::KEY, &body);
                    assert!(status == 200 || status == 202, "ingest: {status} {answer}");
                }
                thread::sleep(Duration::from_secs(2));
            }
        });
        Reporting { stop, thread: Some(thread) }
    }
}

impl Drop for Reporting {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// POST `body` as JSON with a bearer `key`; the status and the body.
fn post(port: u16, path: &str, key: &str, body: &Value) -> (u16, String) {
    let body = body.to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

/// A tree and a SQLite database in a temporary directory, and serve following the tree.
struct Site {
    tmp: tempfile::TempDir,
    _web: Listener,
    serve: Serve,
    base: String,
}

impl Site {
    /// `fill` runs on the database before serve starts.
    async fn start(extra: &[&str], fill: impl AsyncFnOnce(&Store)) -> Site {
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
        let mut args = vec!["--config".into(), tree.display().to_string(), "--db".into(), db, "--rescan".into(), "1s".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let serve = Serve::start(&args, &[], &tmp.path().join("serve.log"));
        serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
        let base = format!("http://127.0.0.1:{}", serve.port);
        Site { tmp, _web: web, serve, base }
    }
}

async fn script<T: serde::de::DeserializeOwned>(browser: &Browser, js: &str) -> T {
    let value = browser.client.execute(js, vec![]).await.unwrap();
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{js}: {e}: {value}"))
}

/// The cell of `server`: its state, its class (the gauges' fills) and the drawn height of its
/// rx and tx bars (`--i`, `--o`).
async fn cell(browser: &Browser, server: &str) -> (String, String, String, String) {
    script(
        browser,
        &format!(
            "const a = document.querySelector('#eye a.c[data-server=\"{server}\"]'); const s = getComputedStyle(a);
             return [a.dataset.state, a.className, s.getPropertyValue('--i').trim(), s.getPropertyValue('--o').trim()];"
        ),
    )
    .await
}

/// The corner mark and border style the page draws for `server`'s cell.
async fn mark(browser: &Browser, server: &str) -> (String, String) {
    script(
        browser,
        &format!(
            "const a = document.querySelector('#eye a.c[data-server=\"{server}\"]');
             return [getComputedStyle(a, '::before').content, getComputedStyle(a).borderTopStyle];"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eye_shows_warning_and_no_data_cells_and_the_traffic_max_rescales_the_network_gauges() {
    let site = Site::start(&[], async |_| {}).await;
    let _reports = Reporting::start(site.serve.port);
    let browser = Browser::start(1280, 900).await;
    browser.sign_in(&site.base, ALICE).await;
    browser.client.goto(&format!("{}/p/shop", site.base)).await.unwrap();
    let states = "const s = Object.fromEntries(Array.from(document.querySelectorAll('#eye a.c')).map(a => [a.dataset.server, a.dataset.state]));\
                  return s['web-01'] === 'ok' && s['cache-01'] === 'warning' && s['db-01'] === 'nodata';";
    browser.wait_for("web-01 ok, cache-01 warning, db-01 no data", Duration::from_secs(60), states).await;

    // Each state has its own mark and outline, not only a colour.
    assert_eq!(mark(&browser, "cache-01").await, ("\"!\"".to_string(), "solid".to_string()));
    assert_eq!(mark(&browser, "db-01").await, ("\"?\"".to_string(), "dashed".to_string()));
    assert_eq!(mark(&browser, "web-01").await, ("\"✓\"".to_string(), "solid".to_string()));
    let legend: Vec<String> =
        script(&browser, "return Array.from(document.querySelectorAll('.legend .key')).map(k => k.textContent);").await;
    assert!(legend.contains(&"warning 1".to_string()) && legend.contains(&"nodata 1".to_string()), "{legend:?}");
    browser.screenshot("eye-warning-nodata").await;

    // 100 Mb/s full scale: 5 Mb/s in is one tenth, 50 Mb/s out half.
    let (_, class, rx, tx) = cell(&browser, "web-01").await;
    assert!(class.contains(" i1") && class.contains(" o5"), "{class}");
    assert_eq!((rx.as_str(), tx.as_str()), ("10%", "50%"));
    // 10 Mb/s: in fills half, out is full — at once, and on the next visit (kept in the browser).
    let pick = "const t = document.getElementById('tmax'); t.value = '10000000'; t.dispatchEvent(new Event('change')); return true;";
    assert!(script::<bool>(&browser, pick).await);
    let (_, class, rx, tx) = cell(&browser, "web-01").await;
    assert!(class.contains(" i5") && class.contains(" o10"), "{class}");
    assert_eq!((rx.as_str(), tx.as_str()), ("50%", "100%"));
    browser.screenshot("eye-traffic-max-10mb").await;
    browser.client.goto(&format!("{}/p/shop", site.base)).await.unwrap();
    browser.wait_for("the page again", Duration::from_secs(20), "return document.getElementById('tmax') !== null;").await;
    assert_eq!(script::<String>(&browser, "return document.getElementById('tmax').value;").await, "10000000");
    let (_, _, rx, tx) = cell(&browser, "web-01").await;
    assert_eq!((rx.as_str(), tx.as_str()), ("50%", "100%"), "the chosen scale is drawn on a new visit");
    // CPU, memory and disk do not depend on it: 20 %, 40 % and 70 % fill 2, 4 and 7 tenths.
    let (_, class, _, _) = cell(&browser, "web-01").await;
    assert!(class.starts_with("c u2 m4 d7 "), "{class}");

    // Printed, the eye drops the menus and controls but keeps every cell and its mark.
    browser.emulate_media("print").await;
    let hidden: Vec<String> = script(
        &browser,
        "return ['header.top', 'nav.project', '.tmax', 'form.signout'].map(s => getComputedStyle(document.querySelector(s)).display);",
    )
    .await;
    assert_eq!(hidden, ["none"; 4]);
    assert_eq!(script::<String>(&browser, "return getComputedStyle(document.body).backgroundColor;").await, "rgb(255, 255, 255)");
    assert_eq!(
        script::<usize>(&browser, "return Array.from(document.querySelectorAll('#eye a.c')).filter(a => a.offsetWidth > 0).length;").await,
        3
    );
    browser.screenshot("eye-print").await;
    browser.emulate_media("").await;
    assert_eq!(script::<String>(&browser, "return getComputedStyle(document.querySelector('header.top')).display;").await, "flex");
    browser.close().await;
}

/// The process table's rows as (name, pid) — the pid is `None` for a row per name.
async fn process_rows(browser: &Browser) -> Vec<String> {
    script(browser, "return Array.from(document.querySelectorAll('table.processes tbody tr')).map(r => r.cells[0].textContent + ' ' + r.cells[3].textContent);")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_table_sorts_by_each_heading_and_the_longer_availability_ranges_step_back_and_forth() {
    let site = Site::start(&[], async |_| {}).await;
    let _reports = Reporting::start(site.serve.port);
    let browser = Browser::start(1280, 900).await;
    browser.sign_in(&site.base, ALICE).await;
    let page = format!("{}/p/shop/s/web-01", site.base);
    browser
        .wait_reloading(
            "web-01's processes",
            Duration::from_secs(30),
            &page,
            "return document.querySelector('table.processes tbody tr') !== null;",
        )
        .await;

    // CPU first by default; each heading sorts by its column, and marks itself.
    let cpu = ["nginx (10) 1", "nginx (11) 1", "postgres (20) 1", "bash (30) 1", "cron (40) 1"];
    assert_eq!(process_rows(&browser).await, cpu);
    for (heading, search, rows) in [
        ("memory", "?range=1h&sort=memory", vec!["postgres (20) 1", "nginx (11) 1", "nginx (10) 1", "bash (30) 1", "cron (40) 1"]),
        ("name", "?range=1h&sort=name", vec!["bash (30) 1", "cron (40) 1", "nginx (10) 1", "nginx (11) 1", "postgres (20) 1"]),
        ("count", "?range=1h&sort=count", vec!["nginx 2", "bash 1", "cron 1", "postgres 1"]),
        ("cpu", "?range=1h", cpu.to_vec()),
    ] {
        browser.click(&format!("table.processes th a[href$='{search}']")).await;
        browser
            .wait_for(&format!("sorted by {heading}"), Duration::from_secs(20), &format!("return location.search === '{search}';"))
            .await;
        assert_eq!(process_rows(&browser).await, rows, "sorted by {heading}");
        let current: String =
            script(&browser, "return document.querySelector('table.processes th a[aria-current]').getAttribute('href');").await;
        assert!(current.ends_with(search), "{heading}: {current}");
        if heading == "count" {
            browser.screenshot("server-processes-by-count").await;
        }
    }

    // 7 and 30 days: hourly buckets ending now, with a span for the port checked since serve
    // started; ◀ shows the range before (no data then), ▶ comes back to now.
    for (range, days) in [("7d", 7), ("30d", 30)] {
        browser.client.goto(&format!("{}/p/shop/availability?range={range}", site.base)).await.unwrap();
        let figure = "document.querySelector('figure[data-target=web]')";
        browser
            .wait_reloading(
                &format!("a span in the last {days} days"),
                Duration::from_secs(30),
                &format!("{}/p/shop/availability?range={range}", site.base),
                &format!("return {figure} !== null && {figure}.querySelector('rect.span.up') !== null;"),
            )
            .await;
        assert_eq!(browser.text("nav.range a[aria-current]").await, format!("{days} days"));
        assert!(browser.text("figure[data-target=web] figcaption").await.contains("uptime 100 %"));
        browser.screenshot(&format!("availability-{range}")).await;
        browser.click("nav.range a[title=earlier]").await;
        let before = format!("return location.search.startsWith('?range={range}&end=') && {figure}.querySelector('rect.span') === null;");
        browser.wait_for(&format!("the {days} days before"), Duration::from_secs(20), &before).await;
        let end: i64 = script::<String>(&browser, "return new URLSearchParams(location.search).get('end');").await.parse().unwrap();
        let behind = watchkeeper::clock::now_ms() - end;
        let range_ms = days * 24 * 3_600_000;
        assert!(behind >= range_ms && behind < range_ms + 600_000, "◀ steps back one range: {behind} ms");
        assert!(browser.text("figure[data-target=web] figcaption").await.contains("no data"));
        assert_eq!(browser.text("nav.range a[aria-current]").await, format!("{days} days"));
        browser.click("nav.range a[title=later]").await;
        let back = format!("return location.search === '?range={range}' && {figure}.querySelector('rect.span.up') !== null;");
        browser.wait_for("now again", Duration::from_secs(20), &back).await;
    }
    browser.close().await;
}

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// The ids of the history's rows.
async fn history(browser: &Browser) -> Vec<i64> {
    script(browser, "return Array.from(document.querySelectorAll('table.history tbody tr[data-alert]')).map(r => +r.dataset.alert);").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_history_filters_by_days_in_the_projects_timezone() {
    // Port `web` went down for a minute four times: early on 4 March in Seoul, at 00:30 on 5 March
    // in Seoul (still 4 March in UTC), at noon on 5 March, and on 9 March.
    let times = ["2026-03-03T20:00:00Z", "2026-03-04T15:30:00Z", "2026-03-05T03:00:00Z", "2026-03-09T03:00:00Z"].map(ms);
    let site = Site::start(&[], async |store: &Store| {
        for at in times {
            alert(store, "443", at, &[]).await;
        }
    })
    .await;
    // Their ids, oldest first, as the API names them.
    let listed = site.serve.get("/api/v1/projects/shop/alerts")["alerts"].as_array().cloned().unwrap();
    let ids: Vec<i64> = times
        .iter()
        .map(|at| {
            listed.iter().find(|a| a["started_at_ms"] == *at).unwrap_or_else(|| panic!("no alert at {at}: {listed:?}"))["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let browser = Browser::start(1280, 900).await;
    browser.sign_in(&site.base, ALICE).await;
    browser.client.goto(&format!("{}/p/shop/alerts", site.base)).await.unwrap();
    browser.wait_for("the history", Duration::from_secs(20), "return document.querySelector('table.history') !== null;").await;
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(history(&browser).await, newest_first);

    // The form's dates: 5 March alone is the alerts at 00:30 and noon, Seoul time.
    let set = |from: &str, to: &str| {
        format!(
            "document.querySelector('form.filters input[name=from]').value = '{from}';\
             document.querySelector('form.filters input[name=to]').value = '{to}'; return true;"
        )
    };
    assert!(script::<bool>(&browser, &set("2026-03-05", "2026-03-05")).await);
    browser.click("form.filters button[type=submit]").await;
    browser.wait_for("5 March", Duration::from_secs(20), "return location.search.includes('from=2026-03-05&to=2026-03-05');").await;
    assert_eq!(history(&browser).await, [ids[2], ids[1]]);
    browser.screenshot("alerts-history-5-march").await;
    // 4 March in Seoul is the early one alone; from 6 March on, the last.
    assert!(script::<bool>(&browser, &set("2026-03-04", "2026-03-04")).await);
    browser.click("form.filters button[type=submit]").await;
    browser.wait_for("4 March", Duration::from_secs(20), "return location.search.includes('from=2026-03-04&to=2026-03-04');").await;
    assert_eq!(history(&browser).await, [ids[0]]);
    assert!(script::<bool>(&browser, &set("2026-03-06", "")).await);
    browser.click("form.filters button[type=submit]").await;
    browser.wait_for("from 6 March on", Duration::from_secs(20), "return location.search.includes('from=2026-03-06');").await;
    assert_eq!(history(&browser).await, [ids[3]]);

    // Backwards, the page says what is wrong.
    browser.client.goto(&format!("{}/p/shop/alerts?from=2026-03-09&to=2026-03-05", site.base)).await.unwrap();
    let text = browser.text("main").await;
    assert!(text.contains("invalid range: `to` (2026-03-05) is before `from` (2026-03-09)"), "{text}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_revision_shows_a_banner_with_its_diagnostics_to_the_operator() {
    let site = Site::start(&[], async |_| {}).await;
    let applied = site.serve.applied().unwrap();
    fs::write(
        site.tmp.path().join("tree").join("broken.yaml"),
        "kind: Server\nname: app-01\nproject: shop\nhost: 127.0.0.1\npolicy: no-such-policy\n",
    )
    .unwrap();
    site.serve
        .wait_until("the revision is rejected", Duration::from_secs(30), || site.serve.get("/api/v1/status")["reconcile"] == "rejected");
    assert_eq!(site.serve.applied().unwrap(), applied, "the last good revision keeps running");

    let operator = Browser::start(1280, 900).await;
    operator.sign_in(&site.base, OPERATOR).await;
    let banner = operator.text("section.banner[role=alert]").await;
    assert!(banner.contains("rejected") && banner.contains("with 1 errors"), "{banner}");
    let diagnostics = operator.text("section.banner ul.diagnostics").await;
    assert!(
        diagnostics.contains("broken.yaml:5:9")
            && diagnostics.contains("error[unknown-reference]")
            && diagnostics.contains("no-such-policy"),
        "{diagnostics}"
    );
    operator.screenshot("projects-rejected-revision").await;
    operator.close().await;

    // A project's user is told too, without the operator's diagnostics.
    let alice = Browser::start(1280, 900).await;
    alice.sign_in(&site.base, ALICE).await;
    assert!(alice.text("section.banner[role=alert]").await.contains("rejected"));
    assert!(!script::<bool>(&alice, "return document.querySelector('section.banner ul.diagnostics') !== null;").await);

    // Fixed, the banner goes.
    fs::remove_file(site.tmp.path().join("tree").join("broken.yaml")).unwrap();
    alice
        .wait_reloading(
            "the banner is gone",
            Duration::from_secs(30),
            &format!("{}/", site.base),
            "return document.querySelector('section.banner') === null;",
        )
        .await;
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_secure_behind_https_and_a_session_ends_after_its_ttl() {
    // Reached over https (a proxy in front): the cookie is only sent over https.
    let secure = Site::start(&["--public-url", "https://dashboard.example.com"], async |_| {}).await;
    let cookie = set_cookie(secure.serve.port, ALICE);
    let attributes: Vec<&str> = cookie.split("; ").collect();
    assert!(attributes.contains(&"Secure") && attributes.contains(&"HttpOnly") && attributes.contains(&"SameSite=Strict"), "{cookie}");
    drop(secure);

    // Over plain http it could not be; and a session lasts --session-ttl, server side too.
    let site = Site::start(&["--public-url", "http://127.0.0.1:8080", "--session-ttl", "3s"], async |_| {}).await;
    let cookie = set_cookie(site.serve.port, ALICE);
    let attributes: Vec<&str> = cookie.split("; ").collect();
    assert!(!attributes.contains(&"Secure") && attributes.contains(&"Max-Age=3"), "{cookie}");
    let session = [("Cookie", attributes[0])];
    let (status, body) = site.serve.request("GET", "/p/shop", &session, b"");
    assert!(status == 200 && body.contains("data-server=\"web-01\""), "{status}");
    // A client that keeps the cookie past its Max-Age is still turned away.
    site.serve.wait_until("the session expires", Duration::from_secs(30), || site.serve.request("GET", "/p/shop", &session, b"").0 == 303);
    assert_eq!(site.serve.request("GET", "/p/shop/cells", &session, b"").0, 401);
}
