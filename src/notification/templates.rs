//! Message templates: e-mail subject and text, short SMS, webhook payloads; English and Korean,
//! times in the project's timezone.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::{AlertMessage, MessageKind};
use crate::config::raw::Language;
use crate::config::raw::Severity;

/// An e-mail: subject line and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
}

/// The most an SMS may take, counted the way Korean carriers count a short message: ASCII one
/// byte, anything else two (KS X 1001). Longer texts become a pricier LMS, or are cut.
pub const SMS_MAX_UNITS: usize = 90;

const PREFIX: &str = "[watchkeeper]";

/// The e-mail for `msg` in `language`, times in `timezone` (an IANA name; UTC if unknown).
pub fn render(msg: &AlertMessage, language: Language, timezone: &str) -> Rendered {
    let tz = zone(timezone);
    let w = Words::of(language);
    let target = target(msg);
    let headline = headline(msg.kind, msg.severity, language);
    // ASCII punctuation only, so an English subject needs no encoded words.
    let subject = match language {
        Language::En => format!("{PREFIX} {headline}: {} on {target}", msg.what),
        Language::Ko => format!("{PREFIX} {headline}: {target} {}", msg.what),
    };

    let mut rows: Vec<(&str, String)> = vec![(w.project, msg.project.clone())];
    if let Some(server) = &msg.server {
        rows.push((w.server, server.clone()));
    }
    if !msg.host.is_empty() {
        rows.push((w.host, msg.host.clone()));
    }
    let severity = match language {
        Language::En => msg.severity.as_str().to_string(),
        Language::Ko => format!("{} ({})", severity_word(msg.severity, language), msg.severity.as_str()),
    };
    rows.push((w.severity, severity));
    if !msg.detail.is_empty() {
        rows.push((w.detail, msg.detail.clone()));
    }
    rows.push((w.started, local_time(msg.started_at_ms, &tz, "%Y-%m-%d %H:%M:%S %Z")));
    match msg.kind {
        MessageKind::Fired => {}
        MessageKind::Escalated => rows.push((w.escalated, local_time(msg.at_ms, &tz, "%Y-%m-%d %H:%M:%S %Z"))),
        MessageKind::Resolved => {
            rows.push((w.resolved, local_time(msg.at_ms, &tz, "%Y-%m-%d %H:%M:%S %Z")));
            rows.push((w.duration, duration(msg.at_ms - msg.started_at_ms, language)));
        }
        MessageKind::Event | MessageKind::Report => {}
        // How long it has been firing.
        MessageKind::Reminder | MessageKind::Escalation => rows.push((w.duration, duration(msg.at_ms - msg.started_at_ms, language))),
        MessageKind::Flapping | MessageKind::Settled => rows.push((w.at, local_time(msg.at_ms, &tz, "%Y-%m-%d %H:%M:%S %Z"))),
    }
    if let Some(id) = msg.alert_id {
        rows.push((w.alert, format!("#{id}")));
    }

    // Aligned for a monospace font, where Hangul takes two columns.
    let width = rows.iter().map(|(label, _)| sms_units(label)).max().unwrap_or(0);
    let mut text = format!("{}: {}\n\n", sentence(msg.kind, msg.severity, language), msg.what);
    for (label, value) in rows {
        let pad = width - sms_units(label);
        text.push_str(&format!("{label}:{:pad$} {value}\n", ""));
    }
    text.push('\n');
    text.push_str(&w.zone_note.replace("{tz}", tz_name(&tz, timezone)));
    text.push_str("\n-- \nwatchkeeper\n");
    Rendered { subject, text }
}

/// A short SMS for `msg`: at most [`SMS_MAX_UNITS`] (the `what`/`detail` part is cut to fit).
pub fn render_sms(msg: &AlertMessage, language: Language, timezone: &str) -> String {
    let tz = zone(timezone);
    let tag = match (msg.kind, language) {
        (MessageKind::Fired, Language::En) => msg.severity.as_str().to_ascii_uppercase(),
        (MessageKind::Escalated, Language::En) => format!("ESCALATED {}", msg.severity.as_str().to_ascii_uppercase()),
        (MessageKind::Resolved, Language::En) => "RESOLVED".to_string(),
        (MessageKind::Event, Language::En) => format!("EVENT {}", msg.severity.as_str().to_ascii_uppercase()),
        (MessageKind::Reminder, Language::En) => format!("STILL {}", msg.severity.as_str().to_ascii_uppercase()),
        (MessageKind::Fired, Language::Ko) => format!("장애({})", severity_word(msg.severity, language)),
        (MessageKind::Escalated, Language::Ko) => format!("상승({})", severity_word(msg.severity, language)),
        (MessageKind::Resolved, Language::Ko) => "복구".to_string(),
        (MessageKind::Event, Language::Ko) => format!("이벤트({})", severity_word(msg.severity, language)),
        (MessageKind::Reminder, Language::Ko) => format!("지속({})", severity_word(msg.severity, language)),
        (MessageKind::Escalation, Language::En) => format!("UNACKED {}", msg.severity.as_str().to_ascii_uppercase()),
        (MessageKind::Escalation, Language::Ko) => format!("미확인({})", severity_word(msg.severity, language)),
        (MessageKind::Flapping, Language::En) => "FLAPPING".to_string(),
        (MessageKind::Flapping, Language::Ko) => "반복변동".to_string(),
        (MessageKind::Settled, Language::En) => "SETTLED".to_string(),
        (MessageKind::Settled, Language::Ko) => "안정".to_string(),
        (MessageKind::Report, Language::En) => "REPORT".to_string(),
        (MessageKind::Report, Language::Ko) => "보고서".to_string(),
    };
    let head = format!("{PREFIX} {tag} {} ", target(msg));
    let when = match msg.kind {
        MessageKind::Fired => msg.started_at_ms,
        _ => msg.at_ms,
    };
    let tail = format!(" {}", local_time(when, &tz, "%H:%M"));
    let middle = match msg.kind {
        MessageKind::Resolved | MessageKind::Reminder | MessageKind::Escalation => {
            format!("{} ({})", msg.what, duration(msg.at_ms - msg.started_at_ms, language))
        }
        _ if msg.detail.is_empty() => msg.what.clone(),
        _ => format!("{}: {}", msg.what, msg.detail),
    };
    let budget = SMS_MAX_UNITS.saturating_sub(sms_units(&head) + sms_units(&tail));
    format!("{head}{}{tail}", cut(&middle, budget))
}

/// The generic JSON webhook body; also what the outbox stores for every webhook notification
/// (a Slack channel sends its `text`). Times are RFC 3339 in the project's timezone.
pub fn json_payload(msg: &AlertMessage, timezone: &str) -> Value {
    let tz = zone(timezone);
    let rfc3339 = "%Y-%m-%dT%H:%M:%S%:z";
    let text = format!(
        "{PREFIX} {}: {} on {}{}",
        headline(msg.kind, msg.severity, Language::En),
        msg.what,
        target(msg),
        if msg.detail.is_empty() { String::new() } else { format!(" ({})", msg.detail) },
    );
    json!({
        "kind": msg.kind.as_str(),
        "severity": msg.severity.as_str(),
        "project": msg.project,
        "server": msg.server,
        "host": msg.host,
        "what": msg.what,
        "detail": msg.detail,
        "started_at": local_time(msg.started_at_ms, &tz, rfc3339),
        "at": local_time(msg.at_ms, &tz, rfc3339),
        "timezone": tz_name(&tz, timezone),
        "alert_id": msg.alert_id,
        "text": text,
    })
}

/// A Slack incoming-webhook body from a [`json_payload`]: `{"text": …}`.
pub fn slack_payload(payload: &Value) -> Value {
    let text = payload.get("text").and_then(Value::as_str).map_or_else(|| payload.to_string(), str::to_string);
    json!({ "text": text })
}

/// Resolve an IANA name; the config was validated, so UTC only covers a zone database gap.
fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap_or(TimeZone::UTC)
}

fn tz_name<'a>(tz: &TimeZone, name: &'a str) -> &'a str {
    if tz.iana_name().is_some() { name } else { "UTC" }
}

fn local_time(ms: i64, tz: &TimeZone, format: &str) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime(format).to_string(),
        Err(_) => format!("@{ms}ms"),
    }
}

/// `project/server`, else `project/host`, else just the project.
fn target(msg: &AlertMessage) -> String {
    match msg.server.as_deref().or((!msg.host.is_empty()).then_some(msg.host.as_str())) {
        Some(t) => format!("{}/{t}", msg.project),
        None => msg.project.clone(),
    }
}

/// The words operators of Korean monitoring consoles know: Fatal(위험), Warning(경고).
pub fn severity_word(severity: Severity, language: Language) -> &'static str {
    match (severity, language) {
        (Severity::Warning, Language::En) => "warning",
        (Severity::Fatal, Language::En) => "fatal",
        (Severity::Warning, Language::Ko) => "경고",
        (Severity::Fatal, Language::Ko) => "위험",
    }
}

fn headline(kind: MessageKind, severity: Severity, language: Language) -> String {
    let s = severity_word(severity, language);
    match (kind, language) {
        (MessageKind::Fired, Language::En) => format!("Alert fired ({s})"),
        (MessageKind::Escalated, Language::En) => format!("Escalated to {s}"),
        (MessageKind::Resolved, Language::En) => "Resolved".to_string(),
        (MessageKind::Event, Language::En) => format!("Event ({s})"),
        (MessageKind::Reminder, Language::En) => format!("Still firing ({s})"),
        (MessageKind::Fired, Language::Ko) => format!("장애 발생 ({s})"),
        (MessageKind::Escalated, Language::Ko) => format!("위험도 상승 ({s})"),
        (MessageKind::Resolved, Language::Ko) => "복구".to_string(),
        (MessageKind::Event, Language::Ko) => format!("이벤트 ({s})"),
        (MessageKind::Reminder, Language::Ko) => format!("장애 지속 ({s})"),
        (MessageKind::Escalation, Language::En) => format!("Unacknowledged ({s})"),
        (MessageKind::Escalation, Language::Ko) => format!("미확인 장애 ({s})"),
        (MessageKind::Flapping, Language::En) => "Flapping".to_string(),
        (MessageKind::Flapping, Language::Ko) => "상태 반복 변동".to_string(),
        (MessageKind::Settled, Language::En) => "Settled".to_string(),
        (MessageKind::Settled, Language::Ko) => "상태 안정".to_string(),
        (MessageKind::Report, Language::En) => "Daily report".to_string(),
        (MessageKind::Report, Language::Ko) => "일일 보고서".to_string(),
    }
}

fn sentence(kind: MessageKind, severity: Severity, language: Language) -> String {
    let s = severity_word(severity, language);
    match (kind, language) {
        (MessageKind::Fired, Language::En) => format!("An alert fired ({s})"),
        (MessageKind::Escalated, Language::En) => format!("An alert escalated to {s}"),
        (MessageKind::Resolved, Language::En) => "An alert resolved".to_string(),
        (MessageKind::Event, Language::En) => format!("An event happened ({s})"),
        (MessageKind::Reminder, Language::En) => format!("An alert is still firing, unacknowledged ({s})"),
        (MessageKind::Fired, Language::Ko) => format!("장애가 발생했습니다 ({s})"),
        (MessageKind::Escalated, Language::Ko) => format!("위험도가 올라갔습니다 ({s})"),
        (MessageKind::Resolved, Language::Ko) => "장애가 복구되었습니다".to_string(),
        (MessageKind::Event, Language::Ko) => format!("이벤트가 발생했습니다 ({s})"),
        (MessageKind::Reminder, Language::Ko) => format!("장애가 확인되지 않은 채 계속되고 있습니다 ({s})"),
        (MessageKind::Escalation, Language::En) => format!("An alert nobody acknowledged is escalated to you ({s})"),
        (MessageKind::Escalation, Language::Ko) => format!("아무도 확인하지 않은 장애가 전달되었습니다 ({s})"),
        (MessageKind::Flapping, Language::En) => {
            "An alert keeps changing state; its changes are not notified until it is stable".to_string()
        }
        (MessageKind::Flapping, Language::Ko) => "장애 상태가 계속 바뀌고 있어, 안정될 때까지 변동을 알리지 않습니다".to_string(),
        (MessageKind::Settled, Language::En) => "A flapping alert is stable again".to_string(),
        (MessageKind::Settled, Language::Ko) => "반복 변동하던 장애 상태가 안정되었습니다".to_string(),
        (MessageKind::Report, Language::En) => "The daily report".to_string(),
        (MessageKind::Report, Language::Ko) => "일일 보고서입니다".to_string(),
    }
}

struct Words {
    project: &'static str,
    server: &'static str,
    host: &'static str,
    severity: &'static str,
    detail: &'static str,
    started: &'static str,
    escalated: &'static str,
    resolved: &'static str,
    duration: &'static str,
    at: &'static str,
    alert: &'static str,
    zone_note: &'static str,
}

impl Words {
    fn of(language: Language) -> Words {
        match language {
            Language::En => Words {
                project: "Project",
                server: "Server",
                host: "Host",
                severity: "Severity",
                detail: "Detail",
                started: "Started",
                escalated: "Escalated",
                resolved: "Resolved",
                duration: "Duration",
                at: "At",
                alert: "Alert",
                zone_note: "Times are in {tz}.",
            },
            Language::Ko => Words {
                project: "프로젝트",
                server: "서버",
                host: "호스트",
                severity: "위험도",
                detail: "내용",
                started: "발생 시각",
                escalated: "상승 시각",
                resolved: "복구 시각",
                duration: "지속 시간",
                at: "시각",
                alert: "알림 번호",
                zone_note: "시각은 {tz} 기준입니다.",
            },
        }
    }
}

/// `1d 2h 5m` / `1일 2시간 5분`; seconds only under a minute.
fn duration(ms: i64, language: Language) -> String {
    let secs = ms.max(0) / 1000;
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let units: [&str; 4] = match language {
        Language::En => ["d", "h", "m", "s"],
        Language::Ko => ["일", "시간", "분", "초"],
    };
    let parts: Vec<String> = [d, h, m].iter().zip(units).filter(|(n, _)| **n > 0).map(|(n, unit)| format!("{n}{unit}")).collect();
    if parts.is_empty() { format!("{s}{}", units[3]) } else { parts.join(" ") }
}

/// Length in SMS units (and monospace columns): ASCII one, anything else two.
fn sms_units(s: &str) -> usize {
    s.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum()
}

/// `s` cut to at most `budget` SMS units, ending in `..` when cut.
fn cut(s: &str, budget: usize) -> String {
    if sms_units(s) <= budget {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let n = if c.is_ascii() { 1 } else { 2 };
        if used + n + 2 > budget {
            break;
        }
        out.push(c);
        used += n;
    }
    if budget >= 2 {
        out.push_str("..");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T01:00:00+09:00.
    const STARTED: i64 = 1_796_054_400_000;

    fn msg(kind: MessageKind) -> AlertMessage {
        AlertMessage {
            kind,
            severity: Severity::Fatal,
            project: "shop".into(),
            server: Some("web-01".into()),
            host: "203.0.113.10".into(),
            what: "port 80 of web-01-ports".into(),
            detail: "connection refused".into(),
            started_at_ms: STARTED,
            at_ms: STARTED + 65 * 60_000,
            alert_id: Some(42),
        }
    }

    #[test]
    fn english_fired_mail_shows_local_time() {
        let r = render(&msg(MessageKind::Fired), Language::En, "Asia/Seoul");
        assert_eq!(r.subject, "[watchkeeper] Alert fired (fatal): port 80 of web-01-ports on shop/web-01");
        assert!(r.text.starts_with("An alert fired (fatal): port 80 of web-01-ports\n"), "{}", r.text);
        assert!(r.text.contains("Started:  2026-12-01 01:00:00 KST\n"), "{}", r.text);
        assert!(r.text.contains("Detail:   connection refused\n"), "{}", r.text);
        assert!(r.text.contains("Severity: fatal\n"), "{}", r.text);
        assert!(r.text.contains("Alert:    #42\n"), "{}", r.text);
        assert!(r.text.contains("Times are in Asia/Seoul."), "{}", r.text);
    }

    #[test]
    fn korean_mail_reads_naturally() {
        let fired = render(&msg(MessageKind::Fired), Language::Ko, "Asia/Seoul");
        assert_eq!(fired.subject, "[watchkeeper] 장애 발생 (위험): shop/web-01 port 80 of web-01-ports");
        assert!(fired.text.starts_with("장애가 발생했습니다 (위험): "), "{}", fired.text);
        assert!(fired.text.contains("발생 시각: 2026-12-01 01:00:00 KST\n"), "{}", fired.text);
        assert!(fired.text.contains("위험도:    위험 (fatal)\n"), "{}", fired.text);
        let resolved = render(&msg(MessageKind::Resolved), Language::Ko, "Asia/Seoul");
        assert_eq!(resolved.subject, "[watchkeeper] 복구: shop/web-01 port 80 of web-01-ports");
        assert!(resolved.text.contains("복구 시각: 2026-12-01 02:05:00 KST"), "{}", resolved.text);
        assert!(resolved.text.contains("지속 시간: 1시간 5분"), "{}", resolved.text);
    }

    #[test]
    fn times_follow_the_project_timezone() {
        let r = render(&msg(MessageKind::Fired), Language::En, "UTC");
        assert!(r.text.contains("2026-11-30 16:00:00 UTC"), "{}", r.text);
        let r = render(&msg(MessageKind::Fired), Language::En, "Not/AZone");
        assert!(r.text.contains("2026-11-30 16:00:00 UTC"), "{}", r.text);
    }

    #[test]
    fn sms_is_short_in_both_languages() {
        let mut long = msg(MessageKind::Fired);
        long.detail = "connection refused by a very long winded explanation that goes on and on".into();
        for kind in [MessageKind::Fired, MessageKind::Escalated, MessageKind::Resolved, MessageKind::Event] {
            for language in [Language::En, Language::Ko] {
                let sms = render_sms(&AlertMessage { kind, ..long.clone() }, language, "Asia/Seoul");
                assert!(sms_units(&sms) <= SMS_MAX_UNITS, "{sms:?} is {} units", sms_units(&sms));
                assert!(sms.starts_with("[watchkeeper] "), "{sms}");
            }
        }
        let ko = render_sms(&msg(MessageKind::Fired), Language::Ko, "Asia/Seoul");
        assert_eq!(ko, "[watchkeeper] 장애(위험) shop/web-01 port 80 of web-01-ports: connection refused 01:00");
        let en = render_sms(&msg(MessageKind::Resolved), Language::En, "Asia/Seoul");
        assert_eq!(en, "[watchkeeper] RESOLVED shop/web-01 port 80 of web-01-ports (1h 5m) 02:05");
        let cut_ko = render_sms(&long, Language::Ko, "Asia/Seoul");
        assert!(cut_ko.contains(".. 01:00"), "{cut_ko}");
    }

    #[test]
    fn json_and_slack_payloads() {
        let payload = json_payload(&msg(MessageKind::Resolved), "Asia/Seoul");
        assert_eq!(payload["kind"], "resolved");
        assert_eq!(payload["severity"], "fatal");
        assert_eq!(payload["project"], "shop");
        assert_eq!(payload["server"], "web-01");
        assert_eq!(payload["host"], "203.0.113.10");
        assert_eq!(payload["what"], "port 80 of web-01-ports");
        assert_eq!(payload["detail"], "connection refused");
        assert_eq!(payload["started_at"], "2026-12-01T01:00:00+09:00");
        assert_eq!(payload["at"], "2026-12-01T02:05:00+09:00");
        assert_eq!(payload["alert_id"], 42);
        let slack = slack_payload(&payload);
        assert_eq!(slack, json!({"text": "[watchkeeper] Resolved: port 80 of web-01-ports on shop/web-01 (connection refused)"}));
        let bare = json_payload(&AlertMessage { server: None, alert_id: None, ..msg(MessageKind::Fired) }, "UTC");
        assert_eq!(bare["server"], Value::Null);
        assert_eq!(bare["alert_id"], Value::Null);
        assert!(bare["text"].as_str().unwrap_or("").contains("shop/203.0.113.10"));
        let nowhere = AlertMessage { server: None, host: String::new(), ..msg(MessageKind::Resolved) };
        let r = render(&nowhere, Language::En, "UTC");
        assert_eq!(r.subject, "[watchkeeper] Resolved: port 80 of web-01-ports on shop");
        assert!(!r.text.contains("Host:"), "{}", r.text);
    }

    #[test]
    fn durations() {
        assert_eq!(duration(45_000, Language::En), "45s");
        assert_eq!(duration(0, Language::Ko), "0초");
        assert_eq!(duration((86_400 + 2 * 3600 + 5 * 60) * 1000, Language::En), "1d 2h 5m");
        assert_eq!(duration(3600 * 1000, Language::Ko), "1시간");
    }
}
