//! The dashboard in the reader's language, the down-check pairs and a server's detail views, in
//! a real browser (headless Chromium) against the real serve binary with a real agent: a Korean
//! user reads Korean pages and an English user English ones (the operator: by
//! `Accept-Language`); the port monitors page shows each down-check pair's verdict as the
//! detector's checks change it, and the availability page the target's timeline; the detail
//! views chart what the agent reports of this machine, interface by interface, mount by mount
//! and device by device. Screenshots land in `target/screenshots/`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::agent::{self, Agent};
use crate::support::browser::Browser;
use crate::support::serve::{Listener, OPERATOR, Serve};
use crate::support::{free_port, install_crypto};

const KIM: &str = "kim-token-for-dashboard-language";
const ALICE: &str = "alice-token-for-dashboard-language";

/// The ports the tree watches: the port monitor's, and the down-check's service and liveness.
struct Ports {
    web: u16,
    service: u16,
    liveness: u16,
}

/// `shop` (in Seoul), owned by kim (Korean) with alice (English) as its admin: web-01 with a
/// port monitor, db-01, and a down-check from web-01 to db-01.
fn write_tree(dir: &Path, ports: &Ports) {
    let hash = |t: &str| watchkeeper::token::sha256_hex(t);
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: kim@example.com\nname: Kim\nlanguage: ko\ntoken_sha256: {}\n---\n\
             kind: User\nemail: alice@example.com\nname: Alice\nlanguage: en\ntoken_sha256: {}\n---\n\
             kind: Group\nname: web-team\nowner: kim@example.com\nadmins: [alice@example.com]\n---\n\
             kind: Project\nname: shop\ngroup: web-team\ntimezone: Asia/Seoul\ningest_key_sha256: {}\n---\n\
             kind: Server\nname: web-01\nproject: shop\nhost: 127.0.0.1\n---\n\
             kind: Server\nname: db-01\nproject: shop\nhost: 127.0.0.1\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nserver: web-01\nports: [{}]\ninterval: 1s\ntimeout: 500ms\nfailures: 2\n---\n\
             kind: DownCheck\nproject: shop\ndetector: web-01\ntarget: db-01\nip: 127.0.0.1\nport: {}\nliveness_port: {}\n\
             interval: 1s\nfailures: 2\n",
            hash(KIM),
            hash(ALICE),
            hash(agent::KEY),
            ports.web,
            ports.service,
            ports.liveness
        ),
    )
    .unwrap();
}

/// The three ports open, serve following the tree, the agent of web-01 (the detector)
/// reporting every second.
struct Site {
    tmp: tempfile::TempDir,
    web: Listener,
    service: Listener,
    liveness: Listener,
    serve: Serve,
    /// `http://127.0.0.1:<port>`
    base: String,
    _agent: Agent,
}

fn site() -> Site {
    install_crypto();
    let tmp = tempfile::tempdir().unwrap();
    let (web, service, liveness) = (Listener::open(free_port()), Listener::open(free_port()), Listener::open(free_port()));
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    write_tree(&tree, &Ports { web: web.port, service: service.port, liveness: liveness.port });
    let db = format!("sqlite://{}", tmp.path().join("db.sqlite").display());
    let serve = Serve::start(&["--config".into(), tree.display().to_string(), "--db".into(), db], &[], &tmp.path().join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    let base = format!("http://127.0.0.1:{}", serve.port);
    let agent = Agent::start(&serve, "web-01", tmp.path(), &["--interval", "1s"]);
    Site { tmp, web, service, liveness, serve, base, _agent: agent }
}

async fn script<T: serde::de::DeserializeOwned>(browser: &Browser, js: &str) -> T {
    serde_json::from_value(browser.client.execute(js, vec![]).await.expect("run the script")).expect("its answer")
}

/// The page's `<html lang>`, its h1 and the labels of its project menu.
async fn page_words(browser: &Browser) -> (String, String, Vec<String>) {
    script(
        browser,
        "return [document.documentElement.lang, document.querySelector('h1').textContent.trim(), \
         Array.from(document.querySelectorAll('nav.project a, header.top nav a')).map(a => a.textContent.trim())];",
    )
    .await
}

/// Whether the page fits the window's width (a wide table scrolls inside its own box).
async fn fits(browser: &Browser) -> bool {
    script(browser, "return document.documentElement.scrollWidth <= window.innerWidth;").await
}

/// Open `path`, check that it fits at 1280 px and at phone width, and keep a screenshot of each.
async fn look(browser: &Browser, base: &str, path: &str, name: &str) {
    for (width, height, suffix) in [(1280, 900, ""), (390, 844, "-phone")] {
        browser.client.set_window_size(width, height).await.unwrap();
        browser.client.goto(&format!("{base}{path}")).await.unwrap();
        browser.element("main h1").await;
        assert!(fits(browser).await, "{path} spills over a {width} px window");
        browser.screenshot(&format!("{name}{suffix}")).await;
    }
    browser.client.set_window_size(1280, 900).await.unwrap();
}

/// The `wk_session` cookie serve sets for `token`, signing in over plain HTTP.
fn sign_in_over_http(port: u16, token: &str) -> String {
    set_cookie(port, token).split(';').next().unwrap().to_string()
}

/// The whole `Set-Cookie` header serve answers a sign-in with `token` over plain HTTP.
pub(crate) fn set_cookie(port: u16, token: &str) -> String {
    let body = format!("token={token}");
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /signin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .unwrap_or_else(|| panic!("no session cookie: {answer}"))
        .to_string()
}

/// `<html lang="…">` of a page's HTML.
fn lang_of(html: &str) -> &str {
    html.split("<html lang=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_korean_user_reads_korean_pages_and_an_english_user_english_ones() {
    let Site { tmp: _tmp, web, service, liveness, serve, base, _agent } = site();

    // The monitored port closes, so the pages have a firing alert to show.
    let closed = web.close();
    serve.wait_until("the port alert fires", Duration::from_secs(60), || {
        serve.get("/api/v1/projects/shop/alerts")["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["rule"] == "port:web" && a["status"] == "firing"))
    });

    // Kim's pages are in Korean, with the mails' words for states and severities.
    let kim = Browser::start(1280, 900).await;
    kim.sign_in(&base, KIM).await;
    let (lang, h1, menu) = page_words(&kim).await;
    assert_eq!((lang.as_str(), h1.as_str()), ("ko", "프로젝트"));
    assert_eq!(menu, ["프로젝트", "전체 서버"]);
    let card = kim.text("a.card[data-project=shop]").await;
    assert!(card.contains("서버 2대") && card.contains("위험 "), "the counts in Korean: {card}");

    kim.client.goto(&format!("{base}/p/shop")).await.unwrap();
    kim.wait_for(
        "web-01 is fatal in the eye",
        Duration::from_secs(60),
        "const a = document.querySelector('#eye a.c[data-server=\"web-01\"]'); return a !== null && a.dataset.state === 'fatal';",
    )
    .await;
    let (_, _, menu) = page_words(&kim).await;
    assert_eq!(menu, ["프로젝트", "전체 서버", "겹눈 보기", "서버 목록", "알림", "포트 감시", "가용성", "보고서"]);
    assert!(kim.text(".legend").await.contains("위험"), "{}", kim.text(".legend").await);
    kim.client.execute("document.querySelector('#eye a.c[data-server=web-01]').focus(); return true;", vec![]).await.unwrap();
    let tip = kim.text("#tip").await;
    assert!(tip.contains("web-01 — 위험") && tip.contains("메모리"), "the hover text in Korean: {tip}");
    look(&kim, &base, "/p/shop", "korean-eye").await;

    look(&kim, &base, "/p/shop/s/web-01", "korean-server").await;
    let charts: Vec<String> =
        script(&kim, "return Array.from(document.querySelectorAll('#charts svg')).map(s => s.getAttribute('aria-label'));").await;
    assert_eq!(charts, ["CPU 사용률", "메모리 사용률", "네트워크 (가장 바쁜 인터페이스)", "디스크 IO 사용률 (가장 바쁜 장치)"]);

    look(&kim, &base, "/p/shop/alerts", "korean-alerts").await;
    assert_eq!(kim.text("main h1").await, "알림");
    let rows = kim.text("table.history tbody").await;
    assert!(rows.contains("위험") && rows.contains("발생 중") && rows.contains("KST"), "the alert in Korean, in Seoul time: {rows}");

    look(&kim, &base, "/p/shop/ports", "korean-ports").await;
    assert_eq!(kim.text("main h1").await, "포트 감시");
    assert_eq!(kim.text("tr[data-monitor=web] .state").await, "다운");
    assert!(kim.text("table.downchecks thead").await.contains("판정"));
    look(&kim, &base, "/p/shop/availability", "korean-availability").await;
    assert_eq!(kim.text("main h1").await, "가용성");
    kim.close().await;

    // Alice, of the same project, reads it in English.
    let alice = Browser::start(1280, 900).await;
    alice.sign_in(&base, ALICE).await;
    let (lang, h1, _) = page_words(&alice).await;
    assert_eq!((lang.as_str(), h1.as_str()), ("en", "Projects"));
    alice.client.goto(&format!("{base}/p/shop/ports")).await.unwrap();
    let (_, h1, menu) = page_words(&alice).await;
    assert_eq!(h1, "Port monitors");
    assert_eq!(menu, ["Projects", "All servers", "Compound eye", "Servers", "Alerts", "Port monitors", "Availability", "Reports"]);
    assert_eq!(alice.text("tr[data-monitor=web] .state").await, "down");
    alice.close().await;

    // The operator token belongs to no user: its pages follow the browser's Accept-Language, as
    // does the sign-in page.
    let operator = sign_in_over_http(serve.port, OPERATOR);
    for (accept, lang, word) in [("ko-KR,ko;q=0.9,en;q=0.8", "ko", "포트 감시"), ("en-US,en;q=0.9,ko;q=0.5", "en", "Port monitors")] {
        let (status, html) = serve.request("GET", "/p/shop/ports", &[("Cookie", &operator), ("Accept-Language", accept)], b"");
        assert_eq!((status, lang_of(&html)), (200, lang), "{accept}");
        assert!(html.contains(word), "{accept}");
    }
    let (_, html) = serve.request("GET", "/", &[("Accept-Language", "ko")], b"");
    assert!(lang_of(&html) == "ko" && html.contains("API 토큰"), "the sign-in page in Korean");
    let (status, html) = serve.request("GET", "/no-such-page", &[("Accept-Language", "ko")], b"");
    assert!(status == 404 && html.contains("찾을 수 없음"), "{status}");
    drop((Listener::open(closed), service, liveness));
}

/// The down-check pair's row on the port monitors page: (`data-verdict`, the verdict's text).
async fn verdict(browser: &Browser) -> (String, String) {
    script(
        browser,
        "const r = document.querySelector('table.downchecks tr[data-downcheck]'); \
         return r ? [r.dataset.verdict, r.querySelector('.verdict').textContent] : ['', ''];",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_page_shows_each_down_check_pairs_verdict_and_availability_the_targets_timeline() {
    let Site { tmp: _tmp, web, service, liveness, serve, base, _agent } = site();
    let browser = Browser::start(1280, 900).await;
    browser.sign_in(&base, ALICE).await;
    let ports = format!("{base}/p/shop/ports");
    let long = Duration::from_secs(60);
    let has = |verdict: &str| format!("return document.querySelector('table.downchecks tr[data-verdict={verdict}]') !== null;");

    // Both ports answer the detector: the target is up.
    browser.wait_reloading("the down-check is up", long, &ports, &has("up")).await;
    assert_eq!(verdict(&browser).await, ("up".to_string(), "up".to_string()));
    let row = browser.text("table.downchecks tr[data-downcheck]").await;
    assert!(row.contains("web-01 → db-01") && row.contains(&format!("127.0.0.1:{}", service.port)), "{row}");
    browser.screenshot("downcheck-up").await;

    // The service port closes while the machine answers on its liveness port: service down.
    let service_port = service.close();
    browser.wait_reloading("the service is down", long, &ports, &has("service_down")).await;
    assert_eq!(verdict(&browser).await.1, "service down");
    let error = browser.text("table.downchecks tr[data-downcheck] td.error-text").await;
    assert!(error.to_lowercase().contains("refused"), "the detector's error: {error}");
    browser.screenshot("downcheck-service-down").await;

    // The liveness port closes too: the host is down.
    let liveness_port = liveness.close();
    browser.wait_reloading("the host is down", long, &ports, &has("host_down")).await;
    assert_eq!(verdict(&browser).await.1, "host down");
    browser.screenshot("downcheck-host-down").await;
    let (_service, _liveness) = (Listener::open(service_port), Listener::open(liveness_port));
    browser.wait_reloading("the target is up again", long, &ports, &has("up")).await;

    // The API says the same verdicts the page showed.
    let checks: Value = serve.get("/api/v1/projects/shop/monitors")["down_checks"].clone();
    assert_eq!(checks[0]["verdict"], "up");
    let name = checks[0]["name"].as_str().unwrap().to_string();

    // Availability: the target's timeline under "Down-checks", with the outage in it.
    browser.client.goto(&format!("{base}/p/shop/availability?range=1d")).await.unwrap();
    let figure = format!("document.querySelector('figure[data-target=\"{name}\"]')");
    browser
        .wait_for(
            "the down-check's timeline has its outage",
            Duration::from_secs(20),
            &format!("return {figure} !== null && {figure}.querySelector('rect.span.down, rect.span.partial') !== null;"),
        )
        .await;
    let (heading, uptime): (String, String) = script(
        &browser,
        &format!("const f = {figure}; return [f.closest('.timelines').previousElementSibling.textContent, f.dataset.uptime];"),
    )
    .await;
    assert_eq!(heading, "Down-checks");
    let uptime: f64 = uptime.parse().unwrap();
    assert!(uptime > 0.0 && uptime < 100.0, "uptime {uptime}");
    assert!(browser.text(&format!("figure[data-target=\"{name}\"] figcaption")).await.contains(&format!("127.0.0.1:{service_port}")));
    browser.screenshot("downcheck-availability").await;
    browser.close().await;
    drop(web);
}

/// Each chart of the open detail view: its instance (`""` for the host's), its metrics and its
/// number of points.
async fn detail_charts(browser: &Browser) -> Vec<(String, String, u64)> {
    script(
        browser,
        "return Array.from(document.querySelectorAll('#charts .cell')).map(c => { \
           const s = c.closest('section.instance'); \
           return [s ? s.dataset.instance : '', c.dataset.metrics, +c.querySelector('svg').dataset.points]; });",
    )
    .await
}

/// The instances of each kind the agent reported last, by the status API: `interfaces` →
/// `lo` → the metrics it has.
fn reported(serve: &Serve) -> Value {
    serve.get("/api/v1/projects/shop/servers/web-01")["latest"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servers_detail_views_chart_each_interface_mount_and_device_the_agent_reports() {
    let Site { tmp: _tmp, serve, base, _agent, web: _web, service: _service, liveness: _liveness } = site();
    let browser = Browser::start(1280, 900).await;
    browser.sign_in(&base, ALICE).await;
    let long = Duration::from_secs(60);

    // The server page's charts lead to the detail views: the CPU chart's title opens CPU's.
    browser.client.goto(&format!("{base}/p/shop/s/web-01")).await.unwrap();
    let cpu_points = "+document.querySelector('#charts svg[aria-label=\"CPU usage\"]').dataset.points";
    browser.wait_for("the agent's CPU figures", long, &format!("return {cpu_points} > 1;")).await;
    browser.click("#charts figure.chart figcaption a").await;
    browser.wait_for("the CPU details", Duration::from_secs(20), "return location.search === '?range=1h&detail=cpu';").await;

    let latest = reported(&serve);
    let names = |group: &str| -> Vec<String> {
        let mut names: Vec<String> = latest[group].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        names.sort();
        names
    };
    let interfaces = names("interfaces");
    // (The agent leaves the loopback out: this machine's own interfaces, then.)
    let first = interfaces.first().unwrap_or_else(|| panic!("the agent reports interfaces: {latest}")).clone();
    let section = format!("section.instance[data-instance=\"{first}\"]");
    let (mounts, devices) = (names("mounts"), names("devices"));
    assert!(!mounts.is_empty(), "the agent reports its mounts: {latest}");

    for detail in ["cpu", "memory", "network", "disk"] {
        let path = format!("/p/shop/s/web-01?range=1h&detail={detail}");
        browser.client.goto(&format!("{base}{path}")).await.unwrap();
        // Every chart of a metric the agent reported has points, in its instance's section; the
        // live view keeps redrawing, so the charts of rates (two samples) fill in without a reload.
        let wanted = |instance: &str, metrics: &str| -> bool {
            let values = if instance.is_empty() { &latest["host"] } else { &latest[group_of(detail, metrics)][instance] };
            metrics.split(' ').any(|m| values.get(m).is_some())
        };
        let started = std::time::Instant::now();
        let charts = loop {
            let charts = detail_charts(&browser).await;
            let empty: Vec<_> = charts.iter().filter(|(i, m, points)| *points == 0 && wanted(i, m)).collect();
            if !charts.is_empty() && empty.is_empty() {
                break charts;
            }
            assert!(started.elapsed() < long, "{detail}: charts without points: {empty:?} of {charts:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let instances = |metric: &str| -> Vec<String> {
            let mut found: Vec<String> = charts.iter().filter(|(_, m, _)| m.starts_with(metric)).map(|(i, _, _)| i.clone()).collect();
            found.dedup();
            found
        };
        match detail {
            "cpu" => {
                assert_eq!(charts.len(), 8, "{charts:?}");
                assert!(charts.iter().any(|(_, m, p)| m == "load.1 load.5 load.15" && *p > 0), "{charts:?}");
            }
            "memory" => assert_eq!(charts.len(), 5, "{charts:?}"),
            "network" => {
                assert_eq!(instances("network.in_bps"), interfaces, "a section per interface");
                assert_eq!(charts.len(), 4 * interfaces.len());
                let caption = browser.text(&format!("{section} figcaption")).await;
                assert!(caption.starts_with(&format!("{first}: Traffic")), "{caption}");
            }
            _ => {
                assert_eq!(instances("disk.usage"), mounts, "a section per mount");
                assert_eq!(instances("disk.io"), devices, "a section per device");
                if devices.is_empty() {
                    assert_eq!(browser.text("p[data-none=device]").await, "No device reported in this range.");
                }
            }
        }
        assert_eq!(
            browser.text("nav.details a[aria-current]").await,
            ["CPU", "Memory", "Network", "Disk"][["cpu", "memory", "network", "disk"].iter().position(|d| *d == detail).unwrap()]
        );
        look(&browser, &base, &path, &format!("server-detail-{detail}")).await;
    }

    // The range selector keeps the view; ◀ shows the hour before the agent started: no data.
    browser.client.goto(&format!("{base}/p/shop/s/web-01?range=1h&detail=network")).await.unwrap();
    browser.click("nav.range a[href$='range=30m&detail=network']").await;
    browser.wait_for("30 minutes of the network", Duration::from_secs(20), "return location.search === '?range=30m&detail=network';").await;
    browser.click("nav.range a[title='one range back']").await;
    browser
        .wait_for(
            "the half hour before",
            Duration::from_secs(20),
            "return location.search.includes('end=') && location.search.endsWith('detail=network') \
             && document.querySelector('p[data-none=interface]') !== null;",
        )
        .await;
    assert_eq!(browser.text("p[data-none=interface]").await, "No interface reported in this range.");

    // Printed: no menus or range links, two charts a row, every mount's heading with its charts.
    browser.client.goto(&format!("{base}/p/shop/s/web-01?range=1h&detail=disk")).await.unwrap();
    browser.element("section.instance").await;
    browser.emulate_media("print").await;
    let hidden: Vec<bool> = script(
        &browser,
        "return ['nav.details', 'nav.range a', 'header.top'].map(s => getComputedStyle(document.querySelector(s)).display === 'none');",
    )
    .await;
    assert_eq!(hidden, [true, true, true]);
    browser.screenshot("server-detail-disk-print").await;
    browser.emulate_media("").await;

    // Kim reads the same views in Korean.
    browser.click("form.signout button").await;
    browser.sign_in(&base, KIM).await;
    for detail in ["cpu", "network", "disk"] {
        let path = format!("/p/shop/s/web-01?range=1h&detail={detail}");
        look(&browser, &base, &path, &format!("server-detail-{detail}-ko")).await;
    }
    let (lang, h1, _) = page_words(&browser).await;
    assert_eq!((lang.as_str(), h1.as_str()), ("ko", "web-01 · 디스크"));
    browser.client.goto(&format!("{base}/p/shop/s/web-01?range=1h&detail=network")).await.unwrap();
    assert_eq!(browser.text(&format!("{section} h2")).await, format!("인터페이스 {first}"));
    assert!(browser.text(&format!("{section} figcaption")).await.starts_with(&format!("{first}: 트래픽")));
    let (status, body) = serve.request("GET", "/p/shop/s/web-01?detail=gpu", &[("Cookie", &browser.session().await)], b"");
    assert!(status == 400 && body.contains("invalid `detail`"), "{status} {body}");
    browser.close().await;
}

/// The status API's group of the instances a detail view's chart of `metrics` has one per.
fn group_of(detail: &str, metrics: &str) -> &'static str {
    match detail {
        "network" => "interfaces",
        _ if metrics.starts_with("disk.usage") || metrics.starts_with("disk.used_bytes") => "mounts",
        _ => "devices",
    }
}
