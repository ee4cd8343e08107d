//! The daily report e-mail: once a project's `reports.at` has passed in its timezone, the
//! previous day's summary goes to the group owner, the group's admins and the project's admins,
//! each in their language, as text and HTML with the CSV attached — queued through the outbox
//! once per project and day, however often serve restarts (the day is claimed in the same
//! transaction as the outbox rows).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::render;
use super::{Kind, Period, Report, Request, Result, build, timezone};
use crate::clock::now_ms;
use crate::config::model::{Config, Project, User};
use crate::config::raw::{Language, MemberRole, Severity};
use crate::notification::{DeliveryStatus, Medium, MessageKind, NewNotification, severity_word};
use crate::store::{ReportMail, Store};

/// How often serve looks whether a project's report is due (and at once when the tree changes).
const CHECK_EVERY: Duration = Duration::from_secs(20);

/// The day whose report is due at `now_ms`: yesterday, once today's `reports.at` has passed in
/// the project's timezone; `None` before that.
pub fn due_day(project: &Project, now_ms: i64) -> Result<Option<Date>> {
    let now = Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned(timezone(project)?);
    let minute = now.hour() as u16 * 60 + now.minute() as u16;
    Ok(if minute < project.daily_email_at { None } else { now.date().yesterday().ok() })
}

/// Who gets the daily report: the group's owner and admins, then the project's admins, each
/// once; users who turned e-mail off (`notify.email: false`) are left out.
pub fn recipients<'a>(config: &'a Config, project: &Project) -> Vec<&'a User> {
    let mut emails: Vec<&str> = Vec::new();
    if let Some(group) = project.group.as_ref().and_then(|g| config.groups.get(g)) {
        emails.push(&group.owner);
        emails.extend(group.admins.iter().map(String::as_str));
    }
    emails.extend(project.members.iter().filter(|m| m.role == MemberRole::Admin).map(|m| m.user.as_str()));
    let mut seen = HashSet::new();
    emails
        .into_iter()
        .filter_map(|email| config.users.get(&email.to_ascii_lowercase()))
        .filter(|u| u.notify.email && seen.insert(u.email.to_ascii_lowercase()))
        .collect()
}

/// The report's mails, one per recipient, through the project's first e-mail channel (none
/// without one).
pub fn mails(config: &Config, project: &Project, report: &Report) -> Vec<ReportMail> {
    let Some(channel) = project.channels.iter().filter_map(|name| config.channels.get(name)).find(|c| c.type_ == Medium::Email) else {
        return Vec::new();
    };
    let (csv, file_name) = (render::to_csv(report), render::csv_file_name(report));
    recipients(config, project)
        .into_iter()
        .map(|user| {
            let words = Words::of(user.language);
            ReportMail {
                notification: NewNotification {
                    channel: channel.name.clone(),
                    medium: Medium::Email,
                    recipient: user.email.clone(),
                    subject: (words.subject)(report),
                    body: text(report, &words),
                    kind: MessageKind::Report,
                    status: DeliveryStatus::Pending,
                    reason: None,
                },
                html: html(report, &words),
                attachment_name: file_name.clone(),
                attachment: csv.clone(),
            }
        })
        .collect()
}

/// The texts of a report mail in one language.
struct Words {
    language: Language,
    subject: fn(&Report) -> String,
    intro: fn(&Report) -> String,
    /// The line above the tables of the plain-text part.
    title: fn(&Report) -> String,
}

impl Words {
    fn of(language: Language) -> Words {
        match language {
            Language::En => Words {
                language,
                subject: |r| format!("[watchkeeper] Daily report of {}, {}", r.project, r.date),
                intro: |r| {
                    format!(
                        "The daily report of {} for {} (from {} to {}, {}). The attached CSV file holds the same tables.",
                        r.project, r.date, r.from, r.to, r.timezone
                    )
                },
                title: render::title,
            },
            Language::Ko => Words {
                language,
                subject: |r| format!("[watchkeeper] {} 일일 보고서, {}", r.project, r.date),
                intro: |r| {
                    format!(
                        "{} 프로젝트의 {} 일일 보고서입니다 ({} ~ {}, {}). 첨부한 CSV 파일에 같은 표가 있습니다.",
                        r.project, r.date, r.from, r.to, r.timezone
                    )
                },
                title: |r| {
                    let period = match r.period {
                        Period::Daily => "일일",
                        Period::Weekly => "주간",
                        Period::Monthly => "월간",
                    };
                    let kind = match r.kind {
                        Kind::Summary => "요약",
                        Kind::Disk => "디스크",
                        Kind::App => "애플리케이션 상세",
                    };
                    let partial = if r.complete { "" } else { " (기간이 아직 끝나지 않음)" };
                    format!("{} {period} 보고서 ({kind}): {} – {}, {}{partial}", r.project, r.from, r.to, r.timezone)
                },
            },
        }
    }

    /// A table's or column's heading, or a fixed word in a cell.
    fn label(&self, word: &'static str) -> &'static str {
        heading(self.language, word)
    }
}

/// A report table's or column's heading, or a fixed word in a cell (a severity as alert mails
/// name it), in `language` (the key itself when the language has no word for it): the mail's
/// words, and the dashboard's Korean ones.
pub fn heading(language: Language, word: &'static str) -> &'static str {
    if let Ok(severity) = word.parse::<Severity>() {
        return severity_word(severity, language);
    }
    let (en, ko) = match word {
        "summary" => ("Summary", "요약"),
        "servers" => ("Servers", "서버"),
        "alerts" => ("Alerts", "알림"),
        "figure" => ("", "항목"),
        "count" => ("Count", "수"),
        "previous" => ("Day before", "전날"),
        "change" => ("Change", "변화"),
        "change_pct" => ("Change %", "변화율 %"),
        "server" => ("Server", "서버"),
        "paused" => ("Paused", "일시 정지"),
        "cpu_avg" => ("CPU avg %", "CPU 평균 %"),
        "memory_avg" => ("Memory avg %", "메모리 평균 %"),
        "time" => ("Time", "시각"),
        "severity" => ("Severity", "위험도"),
        "description" => ("Description", "내용"),
        "cpu" => ("CPU %", "CPU %"),
        "memory" => ("Memory %", "메모리 %"),
        "disk" => ("Disk %", "디스크 %"),
        "network_in_bps" => ("In bit/s", "수신 bit/s"),
        "network_out_bps" => ("Out bit/s", "송신 bit/s"),
        "none" => ("(none)", "(없음)"),
        // Cells: paused or not.
        "yes" => ("yes", "예"),
        "no" => ("no", "아니요"),
        // The weekly, monthly and application tables (the dashboard's reports page).
        "cpu_max" => ("CPU max %", "CPU 최대 %"),
        "memory_max" => ("Memory max %", "메모리 최대 %"),
        "disks" => ("Disks", "디스크"),
        "mount" => ("Mount", "마운트"),
        "usage_avg" => ("Usage avg %", "사용률 평균 %"),
        "usage_last" => ("Usage last %", "마지막 사용률 %"),
        "swap" => ("Swap %", "스왑 %"),
        "disk_io" => ("Disk IO %", "디스크 IO %"),
        "disk_read_bps" => ("Disk read B/s", "디스크 읽기 B/s"),
        "disk_write_bps" => ("Disk write B/s", "디스크 쓰기 B/s"),
        other => (other, other),
    };
    match language {
        Language::En => en,
        Language::Ko => ko,
    }
}

/// The plain-text part: the intro, then the tables under a title, both in the recipient's
/// language, headed as the HTML part heads them.
fn text(report: &Report, words: &Words) -> String {
    let tables = render::to_text_with(report, &(words.title)(report), |word| words.label(word));
    format!("{}\n\n{tables}\n-- \nwatchkeeper\n", (words.intro)(report))
}

/// `&`, `<`, `>` and `"` as HTML writes them.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The HTML part: the intro, then each table with its headings in the recipient's language.
fn html(report: &Report, words: &Words) -> String {
    let lang = match words.language {
        Language::En => "en",
        Language::Ko => "ko",
    };
    let subject = escape(&(words.subject)(report));
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{subject}</title></head>\n<body style=\"font-family:sans-serif\">\n<p>{}</p>\n",
        escape(&(words.intro)(report))
    );
    for table in render::tables(report) {
        let _ = write!(
            out,
            "<h2>{}</h2>\n<table cellpadding=\"4\" style=\"border-collapse:collapse\" border=\"1\">\n<tr>",
            words.label(table.name)
        );
        for column in table.columns {
            let _ = write!(out, "<th>{}</th>", escape(words.label(column)));
        }
        out.push_str("</tr>\n");
        if table.rows.is_empty() {
            let _ = writeln!(out, "<tr><td colspan=\"{}\">—</td></tr>", table.columns.len());
        }
        for row in &table.rows {
            out.push_str("<tr>");
            for cell in row {
                let align = if cell.right_aligned() { " style=\"text-align:right\"" } else { "" };
                let _ = write!(out, "<td{align}>{}</td>", escape(&cell.show_with(|word| words.label(word))));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// Queue `project`'s daily report when it is due and was not queued before. Returns whether
/// this call queued it.
async fn queue_if_due(store: &Store, config: &Config, project: &Project, now_ms: i64, told: &mut HashSet<(String, Date)>) -> Result<bool> {
    let Some(day) = due_day(project, now_ms)? else { return Ok(false) };
    let day_text = day.to_string();
    let first_look = told.insert((project.name.clone(), day));
    if store.daily_report_queued(&project.name, &day_text).await? {
        if first_look {
            tracing::info!(project = %project.name, day = %day_text, "the daily report of this day was queued before; not again");
        }
        return Ok(false);
    }
    let report = build(store, Request { project, period: Period::Daily, kind: Kind::Summary, date: Some(day), now_ms }).await?;
    let mails = mails(config, project, &report);
    if !store.queue_daily_report(&project.name, &day_text, &mails, now_ms).await? {
        return Ok(false);
    }
    if mails.is_empty() {
        tracing::warn!(project = %project.name, day = %day_text,
            "the daily report has nobody to go to: the project needs an e-mail channel and an owner or admin with e-mail on");
    } else {
        tracing::info!(project = %project.name, day = %day_text, recipients = mails.len(), "queued the daily report");
    }
    Ok(true)
}

/// Serve's task: look every [`CHECK_EVERY`] (and whenever the tree changes) which projects'
/// daily reports are due, queue each once and wake the outbox worker, until `cancel` fires.
pub async fn run(store: Store, mut config: watch::Receiver<Arc<Config>>, outbox_wake: Arc<Notify>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let mut told = HashSet::new();
    let mut config_open = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            changed = config.changed(), if config_open => config_open = changed.is_ok(),
        }
        let current = Arc::clone(&config.borrow_and_update());
        let now = now_ms();
        for project in current.projects.values().filter(|p| p.daily_email) {
            match queue_if_due(&store, &current, project, now, &mut told).await {
                Ok(true) => outbox_wake.notify_one(),
                Ok(false) => {}
                Err(e) => tracing::warn!(project = %project.name, error = %e, "cannot queue the daily report; will try again"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily() -> Report {
        use super::super::{Body, Change, DailyAlert, DailyServer};
        Report {
            project: "shop".into(),
            period: Period::Daily,
            kind: Kind::Summary,
            date: "2026-03-29".into(),
            timezone: "Asia/Seoul".into(),
            from: "2026-03-29T00:00:00+09:00".into(),
            to: "2026-03-30T00:00:00+09:00".into(),
            complete: true,
            body: Body::Daily {
                server_count: Change::new(1, 1),
                alert_count: Change::new(0, 2),
                servers: vec![
                    DailyServer { server: "웹-01".into(), paused: false, cpu_avg: Some(12.5), memory_avg: None, alerts: 1 },
                    DailyServer { server: "alerts".into(), paused: true, cpu_avg: None, memory_avg: None, alerts: 0 },
                ],
                alerts: vec![DailyAlert {
                    time: "2026-03-29T03:15:00+09:00".into(),
                    severity: Severity::Fatal,
                    server: "웹-01".into(),
                    description: "no".into(),
                    cpu: Some(97.0),
                    memory: None,
                    disk: None,
                    network_in_bps: None,
                    network_out_bps: None,
                }],
            },
        }
    }

    #[test]
    fn the_plain_text_part_is_headed_in_the_recipients_language() {
        let report = daily();
        let korean = text(&report, &Words::of(Language::Ko));
        assert!(korean.starts_with("shop 프로젝트의 2026-03-29 일일 보고서입니다"), "{korean}");
        assert!(
            korean.contains("\nshop 일일 보고서 (요약): 2026-03-29T00:00:00+09:00 – 2026-03-30T00:00:00+09:00, Asia/Seoul\n"),
            "{korean}"
        );
        for heading in ["\n요약\n", "\n서버\n", "\n알림\n", "항목", "전날", "변화율 %", "CPU 평균 %", "메모리 평균 %", "일시 정지"]
        {
            assert!(korean.contains(heading), "{heading:?} in {korean}");
        }
        for english in ["Daily report", "cpu_avg", "memory_avg", "Servers", "previous", "change_pct", "fatal", "yes"] {
            assert!(!korean.contains(english), "{english:?} in {korean}");
        }
        // The cells' fixed words are Korean too; data (a server named `alerts`, a description
        // `no`) is shown as it is.
        let line = |start: &str| korean.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start:?} in {korean}"));
        let words = |line: &str| line.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let rows: Vec<Vec<String>> = korean.lines().map(words).collect();
        assert!(rows.contains(&words("서버 1 1 0 0.00")), "the summary's servers row: {korean}");
        assert!(rows.contains(&words("알림 0 2 -2 -100.00")), "the summary's alerts row: {korean}");
        assert!(line("웹-01 ").contains(" 아니요 "), "{korean}");
        assert!(line("alerts ").contains(" 예 "), "{korean}");
        let alert = line("2026-03-29T03:15:00+09:00 ");
        assert!(alert.contains(" 위험 ") && alert.contains(" no "), "{alert}");

        let html = html(&report, &Words::of(Language::Ko));
        for cell in ["<td>서버</td>", "<td>알림</td>", "<td>아니요</td>", "<td>예</td>", "<td>위험</td>", "<td>alerts</td>", "<td>no</td>"]
        {
            assert!(html.contains(cell), "{cell} in {html}");
        }
        for english in ["<td>servers</td>", "<td>yes</td>", "<td>fatal</td>"] {
            assert!(!html.contains(english), "{english} in {html}");
        }
        // The CSV stays in the export's own words, whoever it is mailed to.
        assert!(render::to_csv(&report).contains("\r\nservers,1,1,0,0.00\r\n"), "{}", render::to_csv(&report));

        // Hangul takes two columns: a number ends where its Korean heading ends.
        let header = korean.lines().find(|l| l.starts_with("서버  ") && l.contains("CPU 평균 %")).unwrap();
        let row = korean.lines().find(|l| l.starts_with("웹-01")).unwrap();
        let end = |line: &str, what: &str| line.find(what).map(|i| columns(&line[..i + what.len()]));
        assert_eq!(end(header, "CPU 평균 %"), end(row, "12.50"), "{header}\n{row}");

        let english = text(&report, &Words::of(Language::En));
        assert!(english.contains("\nDaily report (summary) of shop: "), "{english}");
        for heading in ["\nSummary\n", "Day before", "CPU avg %", "Memory avg %", " fatal ", " yes "] {
            assert!(english.contains(heading), "{heading:?} in {english}");
        }
    }

    /// Terminal columns, as the text tables count them.
    fn columns(text: &str) -> usize {
        text.chars().map(|c| if ('\u{AC00}'..='\u{D7A3}').contains(&c) { 2 } else { 1 }).sum()
    }

    #[test]
    fn html_escapes_what_it_shows() {
        assert_eq!(escape("<b>\"a\" & b</b>"), "&lt;b&gt;&quot;a&quot; &amp; b&lt;/b&gt;");
    }
}
