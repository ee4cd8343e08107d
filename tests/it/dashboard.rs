//! The web dashboard in a real browser: headless Chromium driven over WebDriver against the
//! real serve binary. Screenshots land in `target/screenshots/`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;

use crate::support::agent::{self, Agent};
use crate::support::browser::Browser;
use crate::support::serve::{Listener, OPERATOR, Serve};
use crate::support::{free_port, install_crypto};

const ALICE: &str = "alice-token-for-dashboard-tests";
const BOB: &str = "bob-token-for-dashboard-tests";

/// Two teams: `shop` (alice's, group `web-team`, in Seoul) with two servers and a port monitor on web-01,
/// and `billing` (bob's, group `billing-team`).
fn write_tree(dir: &Path, web_port: u16, bob_token: Option<&str>) {
    let hash = |t: &str| watchkeeper::token::sha256_hex(t);
    let bob_line = bob_token.map(|t| format!("token_sha256: {}\n", hash(t))).unwrap_or_default();
    fs::write(
        dir.join("people.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {}\n---\n\
             kind: User\nemail: bob@example.com\nname: Bob\n{bob_line}---\n\
             kind: Group\nname: web-team\nowner: alice@example.com\n---\n\
             kind: Group\nname: billing-team\nowner: bob@example.com\n",
            hash(ALICE)
        ),
    )
    .unwrap();
    fs::write(
        dir.join("projects.yaml"),
        format!(
            "kind: Project\nname: shop\ngroup: web-team\ndescription: The web shop\ntimezone: Asia/Seoul\ningest_key_sha256: {}\n---\n\
             kind: Server\nname: web-01\nproject: shop\nhost: 127.0.0.1\n---\n\
             kind: Server\nname: db-01\nproject: shop\nhost: 127.0.0.1\npaused: true\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nserver: web-01\nports: [{web_port}]\ninterval: 1s\ntimeout: 500ms\nfailures: 2\n---\n\
             kind: Project\nname: billing\ngroup: billing-team\n---\n\
             kind: Server\nname: pay-01\nproject: billing\nhost: 127.0.0.1\n",
            hash(agent::KEY)
        ),
    )
    .unwrap();
}

fn start_serve(dir: &Path, log: &Path) -> Serve {
    let db = format!("sqlite://{}", dir.parent().unwrap().join("db.sqlite").display());
    let serve = Serve::start(&["--config".into(), dir.display().to_string(), "--db".into(), db, "--rescan".into(), "1s".into()], &[], log);
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    serve
}

/// A tree in a temporary directory, its monitored port open, serve following it.
struct Setup {
    tmp: tempfile::TempDir,
    tree: std::path::PathBuf,
    web: Listener,
    serve: Serve,
    /// `http://127.0.0.1:<port>`
    base: String,
}

fn setup() -> Setup {
    install_crypto();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let web = Listener::open(free_port());
    write_tree(&tree, web.port, Some(BOB));
    let serve = start_serve(&tree, &tmp.path().join("serve.log"));
    let base = format!("http://127.0.0.1:{}", serve.port);
    Setup { tmp, tree, web, serve, base }
}

async fn cell_state(browser: &Browser, server: &str) -> Option<String> {
    browser.cell_states().await.into_iter().find(|(s, _)| s == server).map(|(_, state)| state)
}

async fn wait_cell(browser: &Browser, server: &str, state: &str) {
    let script = format!(
        "const a = document.querySelector('#eye a.c[data-server=\"{server}\"]'); return a !== null && a.dataset.state === '{state}';"
    );
    browser.wait_for(&format!("cell {server} is {state}"), Duration::from_secs(60), &script).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_sees_only_their_projects_and_the_eye_follows_a_port_without_reload() {
    let Setup { tmp, web, serve, base, tree: _ } = setup();
    let _agent = Agent::start(&serve, "web-01", tmp.path(), &["--interval", "1s"]);
    let browser = Browser::start(1280, 900).await;

    // Alice signs in: her project only, grouped under her group.
    browser.sign_in(&base, ALICE).await;
    let projects: Vec<String> = serde_json::from_value(
        browser
            .client
            .execute("return Array.from(document.querySelectorAll('a.card')).map(a => a.dataset.project);", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(projects, ["shop"]);
    let text = browser.client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(text.contains("web-team") && !text.contains("billing"), "{text}");
    browser.screenshot("dashboard-projects").await;

    // Bob's project is the same 404 page as one that does not exist.
    for path in ["/p/billing", "/p/no-such-project", "/p/billing/s/pay-01"] {
        browser.client.goto(&format!("{base}{path}")).await.unwrap();
        let h1 = browser.client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
        assert_eq!(h1, "Not found", "{path}");
    }
    let (status, _) = serve.request("GET", "/p/billing", &[], b"");
    assert_eq!(status, 303, "without a session a page sends the browser to sign in");

    // The compound eye: one cell per server, the paused one grey, web-01 ok once its agent reports.
    browser.client.goto(&format!("{base}/p/shop")).await.unwrap();
    wait_cell(&browser, "web-01", "ok").await;
    let mut cells = browser.cell_states().await;
    cells.sort();
    assert_eq!(cells, [("db-01".to_string(), "paused".to_string()), ("web-01".to_string(), "ok".to_string())]);
    browser.screenshot("dashboard-eye").await;

    // The monitored port closes: web-01 turns fatal without a reload, then back when it opens.
    browser.client.execute("window.__notReloaded = true; return true;", vec![]).await.unwrap();
    let port = web.close();
    wait_cell(&browser, "web-01", "fatal").await;
    browser.screenshot("dashboard-eye-fatal").await;
    // Hover shows the numbers.
    browser.client.execute("document.querySelector('#eye a.c[data-server=web-01]').focus(); return true;", vec![]).await.unwrap();
    let tip = browser.client.find(Locator::Css("#tip")).await.unwrap().text().await.unwrap();
    assert!(tip.contains("web-01") && tip.contains("fatal") && tip.contains(" %"), "the agent's numbers: {tip}");
    browser.screenshot("dashboard-eye-hover").await;
    let web = Listener::open(port);
    wait_cell(&browser, "web-01", "ok").await;
    let same_page = browser.client.execute("return window.__notReloaded === true;", vec![]).await.unwrap();
    assert_eq!(same_page, serde_json::Value::Bool(true), "the page refreshed its cells without reloading");
    assert_eq!(cell_state(&browser, "db-01").await.as_deref(), Some("paused"));

    // Clicking a cell opens the server page.
    browser.client.find(Locator::Css("#eye a.c[data-server=web-01]")).await.unwrap().click().await.unwrap();
    browser.wait_for("the server page", Duration::from_secs(20), "return location.pathname === '/p/shop/s/web-01';").await;
    // Its charts have points from the agent, and the live view draws new ones without a reload.
    let points = "(+document.querySelector('#charts svg[aria-label=\"CPU usage\"]').dataset.points)";
    browser.wait_for("the CPU chart has points", Duration::from_secs(30), &format!("return {points} > 0;")).await;
    let first: i64 = browser.client.execute(&format!("return {points};"), vec![]).await.unwrap().as_i64().unwrap();
    browser.client.execute("window.__notReloaded = true; return true;", vec![]).await.unwrap();
    browser
        .wait_for(
            "the live charts move on",
            Duration::from_secs(30),
            &format!("return {points} > {first} && window.__notReloaded === true;"),
        )
        .await;
    let text = browser.client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    for expected in ["Memory usage", "Network (busiest interface)", "Disk IO busy", "Processes", "Recent alerts", "port:web"] {
        assert!(text.contains(expected), "missing {expected}: {text}");
    }
    browser.screenshot("dashboard-server").await;
    // The range selector: 30 minutes, one range back (no points yet), and back to now.
    browser.client.find(Locator::LinkText("30m")).await.unwrap().click().await.unwrap();
    browser.wait_for("the 30m view", Duration::from_secs(20), "return location.search === '?range=30m';").await;
    browser.client.find(Locator::Css("a[title='one range back']")).await.unwrap().click().await.unwrap();
    browser
        .wait_for("an earlier range", Duration::from_secs(20), &format!("return location.search.includes('end=') && {points} === 0;"))
        .await;
    browser.client.find(Locator::LinkText("now")).await.unwrap().click().await.unwrap();
    browser
        .wait_for("the live view again", Duration::from_secs(20), &format!("return location.search === '?range=30m' && {points} > 0;"))
        .await;
    let (status, body) =
        serve.request("GET", "/p/shop/s/web-01?range=2y", &[("Cookie", &format!("wk_session={}", session_cookie(&browser).await))], b"");
    assert!(status == 400 && body.contains("invalid `range`"), "{status} {body}");
    drop(web);

    // The operator sees both projects in the all-servers eye.
    let operator = Browser::start(1280, 900).await;
    operator.sign_in(&base, OPERATOR).await;
    operator.client.goto(&format!("{base}/eye")).await.unwrap();
    let mut servers: Vec<String> = operator.cell_states().await.into_iter().map(|(s, _)| s).collect();
    servers.sort();
    assert_eq!(servers, ["db-01", "pay-01", "web-01"]);
    operator.screenshot("dashboard-eye-all").await;
    operator.close().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_down_in_the_port_list_its_log_and_its_availability() {
    let Setup { tmp: _tmp, tree: _, web, serve, base } = setup();
    let browser = Browser::start(1280, 900).await;
    browser.sign_in(&base, ALICE).await;
    let long = Duration::from_secs(60);

    // From the project's pages to the port list, where the open port is up.
    browser.client.goto(&format!("{base}/p/shop")).await.unwrap();
    browser.click("nav.project a[href='/p/shop/ports']").await;
    let ports = format!("{base}/p/shop/ports");
    let row = "document.querySelector('tr[data-monitor=web]')";
    browser.wait_reloading("the port is up", long, &ports, &format!("return {row}.dataset.state === 'up';")).await;
    let text = browser.text("tr[data-monitor=web]").await;
    assert!(text.contains("127.0.0.1") && text.contains(&web.port.to_string()) && text.contains("web-01"), "{text}");
    browser.screenshot("ports-up").await;

    // The port really closes: down, with the prober's error, until it opens again.
    let port = web.close();
    browser.wait_reloading("the port is down", long, &ports, &format!("return {row}.dataset.state === 'down';")).await;
    let error = browser.text("tr[data-monitor=web] td.error-text").await;
    assert!(error.to_lowercase().contains("refused"), "the error of a closed port: {error}");
    assert_eq!(browser.text("tr[data-monitor=web] .port[data-state=down]").await, port.to_string());
    browser.screenshot("ports-down").await;
    let _web = Listener::open(port);
    browser.wait_reloading("the port is up again", long, &ports, &format!("return {row}.dataset.state === 'up';")).await;

    // The disconnect log, year → month → day → hour, each a click, down to the failed checks.
    browser.click("tr[data-monitor=web] a").await;
    browser.wait_for("the monitor page", Duration::from_secs(20), "return location.pathname === '/p/shop/ports/web';").await;
    let mut depth = 0;
    for (level, length) in [("Year", 4), ("Month", 7), ("Day", 10), ("Hour", 13)] {
        assert_eq!(browser.text("table.counts th").await, level);
        let period: String = serde_json::from_value(
            browser.client.execute("return document.querySelector('table.counts tr[data-period]').dataset.period;", vec![]).await.unwrap(),
        )
        .unwrap();
        assert_eq!(period.len(), length, "{period}");
        browser.screenshot(&format!("ports-log-{}", level.to_lowercase())).await;
        browser.click("table.counts tr[data-period] a").await;
        let expected = format!("?period={period}");
        browser
            .wait_for(&format!("the log of {period}"), Duration::from_secs(20), &format!("return location.search === '{expected}';"))
            .await;
        depth += 1;
    }
    assert_eq!(depth, 4);
    let failures = browser.text("table.failures").await;
    assert!(failures.to_lowercase().contains("refused") && failures.contains("KST"), "the hour's failures in Seoul time: {failures}");
    assert_eq!(browser.text("nav.trail a[aria-current]").await.len(), 5, "the hour is the current step: 14:00");
    browser.screenshot("ports-log-failures").await;

    // Availability: the last 24 hours show the down span and an uptime below 100 %.
    browser.click("nav.project a[href='/p/shop/availability']").await;
    browser
        .wait_for("today's availability", Duration::from_secs(20), "return document.querySelector('figure[data-target=web]') !== null;")
        .await;
    browser.screenshot("availability-today").await;
    browser.click("nav.range a[href$='range=1d']").await;
    let figure = "document.querySelector('figure[data-target=web]')";
    browser
        .wait_for(
            "a down span in the last 24 hours",
            Duration::from_secs(20),
            &format!("return location.search === '?range=1d' && {figure}.querySelector('rect.span.down, rect.span.partial') !== null;"),
        )
        .await;
    let percent: f64 =
        serde_json::from_value::<String>(browser.client.execute(&format!("return {figure}.dataset.uptime;"), vec![]).await.unwrap())
            .unwrap()
            .parse()
            .unwrap();
    assert!(percent > 0.0 && percent < 100.0, "uptime {percent}");
    let caption = browser.text("figure[data-target=web] figcaption").await;
    assert!(caption.contains("uptime") && caption.contains(" %") && !caption.contains("uptime 100 %"), "{caption}");
    browser.screenshot("availability-24h").await;
    // ◀ shows the 24 hours before, when serve was not running yet; ▶ comes back to now.
    browser.click("nav.range a[title=earlier]").await;
    browser
        .wait_for(
            "the 24 hours before",
            Duration::from_secs(20),
            &format!("return location.search.startsWith('?range=1d&end=') && {figure}.querySelector('rect.span') === null;"),
        )
        .await;
    assert!(browser.text("figure[data-target=web] figcaption").await.contains("no data"));
    browser.click("nav.range a[title=later]").await;
    browser
        .wait_for(
            "back to now",
            Duration::from_secs(20),
            &format!("return location.search === '?range=1d' && {figure}.querySelector('rect.span') !== null;"),
        )
        .await;
    // A day at a time: ◀ is the day before, ▶ today again.
    browser.client.goto(&format!("{base}/p/shop/availability")).await.unwrap();
    browser.click("nav.range a[title=earlier]").await;
    browser.wait_for("the day before", Duration::from_secs(20), "return location.search.startsWith('?range=day&date=');").await;
    browser.click("nav.range a[title=later]").await;
    browser.wait_for("today again", Duration::from_secs(20), "return location.search === '?range=day';").await;
    // At phone width the timelines stack and nothing spills over the page's width.
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.client.goto(&format!("{base}/p/shop/availability?range=1d")).await.unwrap();
    let overflow = browser.client.execute("return document.documentElement.scrollWidth <= window.innerWidth;", vec![]).await.unwrap();
    assert_eq!(overflow, serde_json::Value::Bool(true), "the availability page fits a phone");
    browser.screenshot("availability-phone").await;
    browser.client.goto(&ports).await.unwrap();
    let overflow = browser.client.execute("return document.documentElement.scrollWidth <= window.innerWidth;", vec![]).await.unwrap();
    assert_eq!(overflow, serde_json::Value::Bool(true), "the port list fits a phone (its table scrolls inside)");
    browser.screenshot("ports-phone").await;

    // Bad addresses are a 400 naming the parameter; another group's user gets the 404 page.
    let cookie = format!("wk_session={}", session_cookie(&browser).await);
    for (path, message) in [
        ("/p/shop/ports/web?period=2026-13", "invalid `period`"),
        ("/p/shop/availability?range=2d", "invalid `range`"),
        ("/p/shop/availability?range=7d&end=soon", "invalid `end`"),
    ] {
        let (status, body) = serve.request("GET", path, &[("Cookie", &cookie)], b"");
        assert!(status == 400 && body.contains(message), "{path}: {status} {body}");
    }
    let (status, _) = serve.request("GET", "/p/shop/ports/no-such-monitor", &[("Cookie", &cookie)], b"");
    assert_eq!(status, 404);
    browser.click("form.signout button").await;
    browser.sign_in(&base, BOB).await;
    for path in ["/p/shop/ports", "/p/shop/ports/web", "/p/shop/availability"] {
        browser.client.goto(&format!("{base}{path}")).await.unwrap();
        assert_eq!(browser.text("h1").await, "Not found", "{path}");
    }
    browser.close().await;
}

/// The `wk_session` cookie of the browser.
async fn session_cookie(browser: &Browser) -> String {
    let cookie = browser.client.get_named_cookie("wk_session").await.expect("a session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site().map(|s| format!("{s:?}")).as_deref(), Some("Strict"));
    cookie.value().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_or_losing_the_token_ends_the_session_and_a_stolen_cookie_with_it() {
    let Setup { tmp: _tmp, tree, web, serve, base } = setup();
    let browser = Browser::start(1280, 900).await;

    // A wrong token is refused on the page, and the token never shows in a URL.
    browser.client.goto(&base).await.unwrap();
    browser.client.find(Locator::Css("input[name=token]")).await.unwrap().send_keys("not-a-token").await.unwrap();
    browser.client.find(Locator::Css("form[action='/signin'] button")).await.unwrap().click().await.unwrap();
    let error = browser.element("p.error").await.text().await.unwrap();
    assert_eq!(error, "Unknown token.");
    browser.screenshot("dashboard-signin-refused").await;

    browser.sign_in(&base, ALICE).await;
    assert!(!browser.client.current_url().await.unwrap().as_str().contains(ALICE));
    let stolen = session_cookie(&browser).await;
    let with = |cookie: &str| format!("wk_session={cookie}");
    let (status, body) = serve.request("GET", "/p/shop", &[("Cookie", &with(&stolen))], b"");
    assert_eq!(status, 200, "the cookie works from elsewhere while the session lives");
    assert!(body.contains("data-server=\"web-01\""), "{body}");

    // Sign out: back to the sign-in page, and the copied cookie no longer opens anything.
    browser.client.find(Locator::Css("form.signout button")).await.unwrap().click().await.unwrap();
    browser.wait_for("the sign-in page", Duration::from_secs(20), "return document.querySelector('input[name=token]') !== null;").await;
    let (status, _) = serve.request("GET", "/p/shop", &[("Cookie", &with(&stolen))], b"");
    assert_eq!(status, 303, "the stolen cookie stopped working after sign-out");
    let (status, _) = serve.request("GET", "/p/shop/cells", &[("Cookie", &with(&stolen))], b"");
    assert_eq!(status, 401);

    // Bob signs in; then his token leaves the configuration, and his session ends with it.
    browser.sign_in(&base, BOB).await;
    let bobs = session_cookie(&browser).await;
    let (status, _) = serve.request("GET", "/p/billing", &[("Cookie", &with(&bobs))], b"");
    assert_eq!(status, 200);
    write_tree(&tree, web.port, None);
    serve.wait_until("bob's session ends with his token", Duration::from_secs(60), || {
        serve.request("GET", "/p/billing", &[("Cookie", &with(&bobs))], b"").0 == 303
    });
    browser.close().await;
}

#[test]
fn pages_carry_security_headers_and_sign_in_is_rate_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir(&tree).unwrap();
    write_tree(&tree, free_port(), None);
    let serve = start_serve(&tree, &tmp.path().join("serve.log"));
    let response = serve.text("/");
    let head = response.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'none'; script-src 'self';",
        "frame-ancestors 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
    ] {
        assert!(head.contains(header), "missing {header}:\n{head}");
    }
    assert!(!response.contains("<script>"), "no inline script");
    // Unknown API paths still answer the API's JSON; other paths the 404 page.
    let (status, body) = serve.request("GET", "/api/v1/nothing", &[], b"");
    assert_eq!((status, body.as_str()), (404, "{\"error\":\"no such endpoint\"}"));
    let (status, body) = serve.request("GET", "/nothing", &[], b"");
    assert!(status == 404 && body.contains("<h1>Not found</h1>"), "{status} {body}");

    // Ten attempts a minute from one address; the eleventh waits, even with the right token.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for _ in 0..10 {
        let (status, _) = serve.request("POST", "/signin", &form, b"token=wrong");
        assert_eq!(status, 401);
    }
    let right = format!("token={ALICE}");
    let (status, body) = serve.request("POST", "/signin", &form, right.as_bytes());
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("Too many sign-in attempts"), "{body}");
    assert!(!serve.log().contains(ALICE), "the token is never logged");
}
