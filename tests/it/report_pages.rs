//! The dashboard's reports pages against the real serve binary: in headless Chromium (the
//! tables, previous and next, the period and kind selector, the CSV the API gives), and over
//! HTTP (another team's project is not found). Screenshots land in `target/screenshots/`.

use std::time::Duration;

use fantoccini::Locator;
use watchkeeper::store::Store;

use crate::reports::{later, tree_with_tokens, write_alerts, write_samples};
use crate::support::browser::Browser;
use crate::support::serve::Serve;

/// serve on the reports fixture (project `shop` in Europe/Berlin, Alice its admin; Eve in no
/// project) with the samples and alerts of the report tests written and rolled up beforehand.
async fn serve_with_samples(dir: &std::path::Path, alice: &str, eve: &str) -> Serve {
    crate::support::install_crypto();
    tree_with_tokens(dir, alice, eve);
    let db = format!("sqlite://{}", dir.join("wk.db").display());
    let store = Store::connect(&db).await.unwrap();
    write_samples(&store).await;
    write_alerts(&store).await;
    store.roll_up(later()).await.unwrap();
    store.close().await;
    let serve = Serve::start(&["--config".into(), dir.display().to_string(), "--db".into(), db], &[], &dir.join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(60), || serve.applied().is_some());
    serve
}

async fn cookie(browser: &Browser) -> String {
    format!("wk_session={}", browser.client.get_named_cookie("wk_session").await.expect("a session cookie").value())
}

/// The text of every cell of the report's table `name` (`data-table`, whatever the heading's
/// language), row by row.
async fn table(browser: &Browser, name: &str) -> Vec<Vec<String>> {
    let script = format!(
        "const t = document.querySelector('table.report[data-table={name}]');
         if (!t) return [];
         return Array.from(t.querySelectorAll('tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent));"
    );
    serde_json::from_value(browser.client.execute(&script, vec![]).await.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_admin_reads_steps_through_and_exports_reports_with_the_apis_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, eve) = (watchkeeper::token::generate().unwrap(), watchkeeper::token::generate().unwrap());
    let serve = serve_with_samples(dir.path(), &alice, &eve).await;
    let base = format!("http://127.0.0.1:{}", serve.port);
    let browser = Browser::start(1280, 1000).await;
    browser.sign_in(&base, &alice).await;

    // The daily summary of the DST day: the figures the report tests computed by hand.
    browser.client.goto(&format!("{base}/p/shop/reports?period=daily&date=2026-03-29")).await.unwrap();
    browser.wait_for("the report", Duration::from_secs(30), "return document.querySelector('section.report h2') !== null;").await;
    let servers = table(&browser, "servers").await;
    // Alice reads Korean (`language: ko`): the report mail's words, in the cells too.
    assert!(servers.contains(&vec!["web-01".into(), "아니요".into(), "31.00".into(), "41.00".into(), "2".into()]), "{servers:?}");
    assert!(servers.iter().any(|row| row[0] == "db-01" && row[1] == "예"), "paused servers are marked: {servers:?}");
    let summary = table(&browser, "summary").await;
    assert_eq!(summary.iter().map(|row| row[0].as_str()).collect::<Vec<_>>(), ["서버", "알림"], "{summary:?}");
    let alerts = table(&browser, "alerts").await;
    let severities: Vec<&str> = alerts.iter().map(|row| row[1].as_str()).collect();
    assert!(!severities.is_empty() && severities.iter().all(|s| ["위험", "경고"].contains(s)), "{severities:?}");
    assert_eq!(browser.text("section.report h2").await, "요약");
    assert!(browser.text("table.report[data-table=servers] thead").await.contains("메모리 평균 %"));
    browser.screenshot("reports-daily").await;

    // Export CSV is the API's CSV, byte for byte.
    let href = browser.client.find(Locator::Css("a.csv")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert_eq!(href, "/p/shop/reports.csv?period=daily&kind=summary&date=2026-03-29");
    let session = cookie(&browser).await;
    let (status, page_csv) = serve.request("GET", &href, &[("Cookie", &session)], b"");
    assert_eq!(status, 200);
    let bearer = format!("Bearer {alice}");
    let (status, api_csv) =
        serve.request("GET", "/api/v1/projects/shop/reports/daily?date=2026-03-29&format=csv", &[("Authorization", &bearer)], b"");
    assert_eq!(status, 200);
    assert_eq!(page_csv, api_csv);
    assert!(page_csv.contains("web-01,no,31.00,41.00,2"), "{page_csv}");

    // Previous and next day.
    browser.client.find(Locator::Css("a[rel=prev]")).await.unwrap().click().await.unwrap();
    browser
        .wait_for(
            "the day before",
            Duration::from_secs(30),
            "return location.search.includes('date=2026-03-28') && document.querySelector('section.report h2') !== null;",
        )
        .await;
    let before = table(&browser, "servers").await;
    assert!(before.iter().any(|row| row[0] == "web-01" && row[2] == "10.00"), "{before:?}");
    browser.client.find(Locator::Css("a[rel=next]")).await.unwrap().click().await.unwrap();
    browser
        .wait_for(
            "the day again",
            Duration::from_secs(30),
            "return location.search.includes('date=2026-03-29') && document.querySelector('section.report h2') !== null;",
        )
        .await;

    // Back a month at a time from a 31st: February ends on the 28th, January starts on the 31st again.
    browser.client.goto(&format!("{base}/p/shop/reports?period=monthly&date=2026-03-31")).await.unwrap();
    for (date, search) in [("2026-02-28", "date=2026-02-28&day=31"), ("2026-01-31", "date=2026-01-31")] {
        browser.client.find(Locator::Css("a[rel=prev]")).await.unwrap().click().await.unwrap();
        browser
            .wait_for(
                &format!("the month from {date}"),
                Duration::from_secs(30),
                &format!("return location.search.endsWith('{search}') && document.querySelector('p.period').textContent.startsWith('{date}T00:00:00');"),
            )
            .await;
        if date == "2026-02-28" {
            browser.screenshot("reports-monthly-clamped").await;
        }
    }

    // The selector: the weekly disk report of the week the day is in.
    browser
        .client
        .execute(
            "document.querySelector('select[name=period]').value = 'weekly';
             document.querySelector('select[name=kind]').value = 'disk';
             document.querySelector('input[name=date]').value = '2026-03-23';
             document.querySelector('form.report-controls').submit(); return true;",
            vec![],
        )
        .await
        .unwrap();
    browser
        .wait_for(
            "the weekly disk report",
            Duration::from_secs(30),
            "return location.search.includes('kind=disk') && document.querySelector('section.report h2') !== null;",
        )
        .await;
    let disks = table(&browser, "disks").await;
    assert!(disks.iter().any(|row| row[0] == "web-01" && row[2] == "/data" && row[3] == "70.21"), "{disks:?}");
    browser.screenshot("reports-weekly-disk").await;
    browser.close().await;

    // Eve, in no project, finds no report of shop; a wrong query is a clear 400.
    let eves = Browser::start(1280, 900).await;
    eves.sign_in(&base, &eve).await;
    let eve_session = cookie(&eves).await;
    for path in ["/p/shop/reports", "/p/shop/reports.csv?period=daily&date=2026-03-29", "/p/no-such/reports"] {
        let (status, body) = serve.request("GET", path, &[("Cookie", &eve_session)], b"");
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("web-01"), "{body}");
    }
    eves.close().await;
    let (status, _) = serve.request("GET", "/p/shop/reports", &[], b"");
    assert_eq!(status, 303, "without a session: to the sign-in page");
    for (query, says) in [("period=hourly", "invalid `period`"), ("date=2999-01-01", "is in the future"), ("kind=cpu", "invalid `kind`")] {
        let (status, body) = serve.request("GET", &format!("/p/shop/reports?{query}"), &[("Cookie", &session)], b"");
        assert!(status == 400 && body.contains(says), "{query}: {status} {body}");
    }
}
