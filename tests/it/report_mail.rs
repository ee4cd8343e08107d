//! The daily report e-mail end to end: the real serve binary mails the previous day's report
//! to aiosmtpd — to the group owner, the group's admins and the project's admins, each in their
//! language, as text and HTML with the CSV attached — once, whether its time comes while serve
//! runs or passed while it was down, and not again after a restart.

use std::fs;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;

use crate::support::serve::{OPERATOR, Serve};
use crate::support::smtp::{Mail, SmtpServer};

/// A fixed-offset timezone in which it is about noon now, and the local time there: far from
/// midnight, so "yesterday" does not change while a test runs.
fn noon_zone() -> (String, jiff::Zoned) {
    let now = Timestamp::now();
    let utc_hour = i32::from(now.to_zoned(jiff::tz::TimeZone::UTC).hour());
    let offset = 12 - utc_hour;
    // IANA's Etc zones have the sign inverted: Etc/GMT-3 is UTC+3.
    let zone = match offset {
        0 => "UTC".to_string(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    let local = now.to_zoned(jiff::tz::TimeZone::get(&zone).unwrap());
    (zone, local)
}

/// A tree: the group `ops` (owner Alice, Korean; admin Bob) holding project `shop` (admin
/// Carol; plain user Dave, who gets no report; one paused server) with the report mailed at `at`.
fn write_tree(dir: &Path, smtp_port: u16, zone: &str, at: &str) {
    let operator = watchkeeper::token::sha256_hex(OPERATOR);
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice Kim\nlanguage: ko\ntoken_sha256: {operator}\n---\n\
             kind: User\nemail: bob@example.com\nname: Bob Lee\n---\n\
             kind: User\nemail: carol@example.com\nname: Carol Park\n---\n\
             kind: User\nemail: dave@example.com\nname: Dave Choi\n---\n\
             kind: Group\nname: ops\nowner: alice@example.com\nadmins: [bob@example.com]\n---\n\
             kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none }}\nfrom: \"wk <reports@example.com>\"\n---\n\
             kind: Project\nname: shop\ngroup: ops\ntimezone: {zone}\nchannels: [mail]\n\
             members: [{{ user: carol@example.com, role: admin }}, {{ user: dave@example.com, role: user }}]\n\
             reports: {{ daily_email: true, at: \"{at}\" }}\n---\n\
             kind: Server\nname: db-01\nproject: shop\nhost: 127.0.0.1\npaused: true\n"
        ),
    )
    .unwrap();
}

fn args(work: &Path) -> Vec<String> {
    vec!["--config".into(), work.join("tree").display().to_string(), "--db".into(), format!("sqlite://{}", work.join("wk.db").display())]
}

/// One mail per recipient, each with the day's report in its language and the CSV attached.
fn check_mails(mails: &[Mail], yesterday: &str) {
    let mut to: Vec<&str> = mails.iter().map(|m| m.to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["alice@example.com", "bob@example.com", "carol@example.com"], "owner, group admin, project admin; not the plain user");
    for mail in mails {
        let korean = mail.to == "alice@example.com";
        let subject = if korean {
            format!("[watchkeeper] shop 일일 보고서, {yesterday}")
        } else {
            format!("[watchkeeper] Daily report of shop, {yesterday}")
        };
        assert_eq!(mail.subject, subject);
        assert_eq!(mail.content_type, "multipart/mixed", "{mail:#?}");
        let intro = if korean { "shop 프로젝트의" } else { "The daily report of shop" };
        let title = if korean { "shop 일일 보고서 (요약)" } else { "Daily report (summary) of shop" };
        assert!(mail.body.contains(intro) && mail.body.contains(title), "the text part: {}", mail.body);
        // The plain-text part is headed like the HTML part, in the recipient's language.
        let headings: &[&str] =
            if korean { &["CPU 평균 %", "메모리 평균 %", "전날", "(없음)"] } else { &["CPU avg %", "Day before", "(none)"] };
        for heading in headings {
            assert!(mail.body.contains(heading), "{heading:?} in the text part: {}", mail.body);
        }
        assert!(!mail.body.contains("cpu_avg"), "the text part: {}", mail.body);
        let html = mail.html.as_deref().unwrap_or_else(|| panic!("an HTML part: {mail:#?}"));
        assert!(html.contains(if korean { "<th>CPU 평균 %</th>" } else { "<th>CPU avg %</th>" }), "{html}");
        // The cells' own words too: the summary's rows, the paused server's flag.
        let cells: &[&str] =
            if korean { &["<td>서버</td>", "<td>알림</td>", "<td>예</td>"] } else { &["<td>Servers</td>", "<td>yes</td>"] };
        for cell in cells {
            assert!(html.contains(cell), "{cell} in the HTML part: {html}");
        }
        if korean {
            for english in ["<td>servers</td>", "<td>alerts</td>", "<td>yes</td>"] {
                assert!(!html.contains(english), "{english} in the Korean HTML part: {html}");
            }
        }
        let [(name, csv)] = mail.attachments.as_slice() else { panic!("one attachment: {mail:#?}") };
        assert_eq!(name, &format!("shop-daily-{yesterday}.csv"));
        assert!(csv.starts_with("\u{feff}figure,count,previous,change,change_pct"), "{csv:?}");
    }
}

#[test]
fn the_daily_report_is_mailed_once_when_its_time_comes_and_not_again_after_a_restart() {
    crate::support::install_crypto();
    let smtp = SmtpServer::start();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (zone, local) = noon_zone();
    // The next minute: serve starts before the report's time and mails it once that passes.
    let next = local.checked_add(jiff::SignedDuration::from_mins(1)).unwrap();
    write_tree(&work.join("tree"), smtp.port, &zone, &next.strftime("%H:%M").to_string());
    let yesterday = local.date().yesterday().unwrap().to_string();

    let serve = Serve::start(&args(work), &[], &work.join("serve.log"));
    let mails = smtp.wait_for(3, Duration::from_secs(180));
    check_mails(&mails, &yesterday);
    let korean = mails.iter().find(|m| m.to == "alice@example.com").and_then(|m| m.html.as_deref()).unwrap();
    look_at_in_chromium(korean, work);

    restart_mails_nothing(serve, work, &smtp);
}

/// Open the HTML part of a Korean mail in headless Chromium as a mail program would show it,
/// save a screenshot (`target/screenshots/report-mail-ko.png`) and read its tables back.
fn look_at_in_chromium(html: &str, work: &Path) {
    use crate::support::browser::Browser;
    let file = work.join("mail-ko.html");
    fs::write(&file, html).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let browser = Browser::start(1000, 700).await;
        browser.client.goto(&format!("file://{}", file.display())).await.unwrap();
        let rows = browser
            .client
            .execute("return Array.from(document.querySelectorAll('tr')).map(r => Array.from(r.cells).map(c => c.innerText));", vec![])
            .await
            .unwrap();
        let rows: Vec<Vec<String>> = serde_json::from_value(rows).unwrap();
        browser.screenshot("report-mail-ko").await;
        browser.close().await;
        assert!(rows.iter().any(|r| r.first().is_some_and(|c| c == "서버") && r.len() == 5), "the summary's servers row: {rows:?}");
        assert!(rows.iter().any(|r| r.first().is_some_and(|c| c == "db-01") && r.get(1).is_some_and(|c| c == "예")), "{rows:?}");
        assert!(!rows.iter().flatten().any(|c| ["yes", "no", "servers", "alerts"].contains(&c.as_str())), "English words: {rows:?}");
    });
}

/// Stop serve once its mails are recorded as sent, start it again later that morning: it finds
/// the day queued and mails nothing.
fn restart_mails_nothing(mut serve: Serve, work: &Path, smtp: &SmtpServer) {
    serve.wait_until("every mail is recorded as sent", Duration::from_secs(60), || serve.metric("watchkeeper_outbox_depth") == Some(0.0));
    serve.terminate();
    drop(serve);
    let serve = Serve::start(&args(work), &[], &work.join("serve-again.log"));
    serve.wait_until("serve finds the day's report queued before", Duration::from_secs(120), || {
        serve.log().contains("the daily report of this day was queued before")
    });
    assert_eq!(smtp.message_files().len(), 3, "no mail again after the restart");
    assert!(!serve.log().contains("queued the daily report"), "{}", serve.log());
}

#[test]
fn a_morning_missed_while_serve_was_down_is_mailed_once_when_it_starts() {
    crate::support::install_crypto();
    let smtp = SmtpServer::start();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let (zone, local) = noon_zone();
    // The report's time passed an hour ago, while serve was not running.
    let past = local.checked_sub(jiff::SignedDuration::from_hours(1)).unwrap();
    write_tree(&work.join("tree"), smtp.port, &zone, &past.strftime("%H:%M").to_string());
    let yesterday = local.date().yesterday().unwrap().to_string();

    let serve = Serve::start(&args(work), &[], &work.join("serve.log"));
    let mails = smtp.wait_for(3, Duration::from_secs(120));
    check_mails(&mails, &yesterday);
    assert_eq!(serve.log().matches("queued the daily report").count(), 1, "{}", serve.log());
    restart_mails_nothing(serve, work, &smtp);
}
