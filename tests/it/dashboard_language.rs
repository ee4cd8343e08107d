//! The dashboard in the reader's language, and the down-check pairs, in a real browser
//! (headless Chromium) against the real serve binary with a real agent: a Korean user reads
//! Korean pages and an English user English ones (the operator: by `Accept-Language`); the
//! port monitors page shows each down-check pair's verdict as the detector's checks change it,
//! and the availability page the target's timeline. Screenshots land in `target/screenshots/`.

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
