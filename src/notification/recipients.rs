//! Who hears about an alert, through which channel, in which language: pure, from the config.

use std::collections::HashSet;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::templates::{Rendered, json_payload, render, render_sms};
use super::{AlertMessage, DeliveryStatus, Medium, MessageKind, NewNotification};
use crate::config::model::{Channel, Config, EscalationStep, NotifyPrefs, PortMonitor, Project, User};
use crate::config::raw::{Language, Weekday};
use crate::config::values::normalize_phone;

/// The notifications one alert transition produces, ready for the outbox (README,
/// "Notifications"). For each of the project's channels, in the order the project lists them:
///
/// - **email** channel: one row per address — every user with a role on the project (group
///   owner, admins, users; project members) whose `notify.email` is on; the monitor's `notify`
///   users when `monitor.email`; then the channel's fixed `to:` list. An address appears once
///   per channel; each e-mail channel of the project sends its own copy.
/// - **sms** channel: the same with `notify.sms` / `monitor.sms`, for users with a `phone`
///   (users without one get no row), then the channel's `to:` numbers.
/// - **webhook** channel: one row, recipient = the channel name, body = [`json_payload`].
///
/// Decisions made here (also in the README):
/// - A monitor's `notify` list is an explicit subscription: its `email`/`sms` flags choose the
///   media for those users even when their own `notify.email`/`notify.sms` is off, but their
///   `hours` and `days` still apply — quiet hours are personal, and a pager at 3 a.m. that the
///   user asked not to get is worse than a visible "not sent" row.
/// - A user who turned a medium off gets no row for it (a standing choice, visible in the
///   config); a user outside their `hours`/`days` gets a `NotSent` row with the reason
///   `outside notify hours` / `outside notify days`, so the delivery log explains the silence.
/// - A wrapping window (`22:00-06:00`) belongs to the day it starts: with `days: [fri]`,
///   Saturday 02:00 is inside, Friday 02:00 is not.
/// - `to:` addresses and numbers, and webhooks, get English.
/// - `notify.mobile` does not gate webhook channels: a webhook is its own destination.
/// - With `suppressed = Some(reason)` (maintenance, a parent server down) every row is still
///   produced, as `NotSent` with that reason, so the alert's log shows who would have heard.
///
/// An unknown project yields nothing; an unknown channel or user name (impossible after
/// `compile`) is skipped.
pub fn build_notifications(
    config: &Config,
    project: &str,
    msg: &AlertMessage,
    monitor: Option<&PortMonitor>,
    suppressed: Option<&str>,
    now_ms: i64,
) -> Vec<NewNotification> {
    let listed = monitor.map(|m| Listed { users: &m.notify, email: m.email, sms: m.sms });
    build(config, project, msg, true, listed, suppressed, now_ms)
}

/// The notifications of one escalation step: its users only, through the project's channels of
/// the step's media. As for a monitor's `notify` list, the step chooses the media (the users'
/// own `notify.email`/`notify.sms` do not matter) while their `hours` and `days` still apply;
/// channels' `to:` lists and webhooks are the project's everyday recipients, not a step's.
pub fn build_escalation(
    config: &Config,
    project: &str,
    msg: &AlertMessage,
    step: &EscalationStep,
    suppressed: Option<&str>,
    now_ms: i64,
) -> Vec<NewNotification> {
    let listed = Listed { users: &step.notify, email: step.media.contains(&Medium::Email), sms: step.media.contains(&Medium::Sms) };
    build(config, project, msg, false, Some(listed), suppressed, now_ms)
}

/// Users named on a monitor or an escalation step, with the media they get.
struct Listed<'a> {
    users: &'a [String],
    email: bool,
    sms: bool,
}

/// `everyone`: the project's role users, channels' `to:` lists and webhooks too; else only
/// the `listed` users.
fn build(
    config: &Config,
    project: &str,
    msg: &AlertMessage,
    everyone: bool,
    listed: Option<Listed>,
    suppressed: Option<&str>,
    now_ms: i64,
) -> Vec<NewNotification> {
    let Some(p) = config.projects.get(project) else {
        return Vec::new();
    };
    let tz = TimeZone::get(&p.timezone).unwrap_or(TimeZone::UTC);
    let clock = local_clock(now_ms, &tz);
    let role_users = if everyone { role_users(config, p) } else { Vec::new() };
    let (listed_email, listed_sms) = listed.as_ref().map_or((false, false), |l| (l.email, l.sms));
    let listed: Vec<&User> = listed.map_or_else(Vec::new, |l| l.users.iter().filter_map(|e| user(config, e)).collect());
    let texts = Texts::new(msg, &p.timezone);
    let kind = msg.kind;

    let status = |prefs: Option<&NotifyPrefs>| -> (DeliveryStatus, Option<String>) {
        if let Some(reason) = suppressed {
            return (DeliveryStatus::NotSent, Some(reason.to_string()));
        }
        match prefs.map(|prefs| allowed_at(prefs, clock)) {
            Some(Err(reason)) => (DeliveryStatus::NotSent, Some(reason.to_string())),
            _ => (DeliveryStatus::Pending, None),
        }
    };

    let mut out = Vec::new();
    for channel in p.channels.iter().filter_map(|name| config.channels.get(name)) {
        match channel.type_ {
            Medium::Email => {
                let users = role_users.iter().filter(|u| u.notify.email).chain(listed.iter().filter(|_| listed_email));
                let mut seen = HashSet::new();
                for u in users {
                    if seen.insert(u.email.to_ascii_lowercase()) {
                        let mail = texts.mail(u.language);
                        let (status, reason) = status(Some(&u.notify));
                        out.push(row(channel, Medium::Email, &u.email, &mail.subject, &mail.text, kind, status, reason));
                    }
                }
                for address in channel.to.iter().filter(|_| everyone) {
                    if seen.insert(address.to_ascii_lowercase()) {
                        let mail = texts.mail(Language::En);
                        let (status, reason) = status(None);
                        out.push(row(channel, Medium::Email, address, &mail.subject, &mail.text, kind, status, reason));
                    }
                }
            }
            Medium::Sms => {
                let users = role_users.iter().filter(|u| u.notify.sms).chain(listed.iter().filter(|_| listed_sms));
                let mut seen = HashSet::new();
                for u in users {
                    let Some(phone) = &u.phone else { continue };
                    if seen.insert(phone.clone()) {
                        let (status, reason) = status(Some(&u.notify));
                        let subject = &texts.mail(u.language).subject;
                        out.push(row(channel, Medium::Sms, phone, subject, texts.sms(u.language), kind, status, reason));
                    }
                }
                for number in channel.to.iter().filter(|_| everyone) {
                    let phone = normalize_phone(number).unwrap_or_else(|_| number.clone());
                    if seen.insert(phone.clone()) {
                        let (status, reason) = status(None);
                        let subject = &texts.mail(Language::En).subject;
                        out.push(row(channel, Medium::Sms, &phone, subject, texts.sms(Language::En), kind, status, reason));
                    }
                }
            }
            Medium::Webhook if everyone => {
                let (status, reason) = status(None);
                let subject = &texts.mail(Language::En).subject;
                out.push(row(channel, Medium::Webhook, &channel.name, subject, &texts.json, kind, status, reason));
            }
            Medium::Webhook => {}
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn row(
    channel: &Channel,
    medium: Medium,
    recipient: &str,
    subject: &str,
    body: &str,
    kind: MessageKind,
    status: DeliveryStatus,
    reason: Option<String>,
) -> NewNotification {
    NewNotification {
        channel: channel.name.clone(),
        medium,
        recipient: recipient.to_string(),
        subject: subject.to_string(),
        body: body.to_string(),
        kind,
        status,
        reason,
    }
}

/// The message rendered once per language.
struct Texts {
    mail: [Rendered; 2],
    sms: [String; 2],
    json: String,
}

impl Texts {
    fn new(msg: &AlertMessage, timezone: &str) -> Texts {
        let langs = [Language::En, Language::Ko];
        Texts {
            mail: langs.map(|l| render(msg, l, timezone)),
            sms: langs.map(|l| render_sms(msg, l, timezone)),
            json: json_payload(msg, timezone).to_string(),
        }
    }

    fn index(language: Language) -> usize {
        match language {
            Language::En => 0,
            Language::Ko => 1,
        }
    }

    fn mail(&self, language: Language) -> &Rendered {
        &self.mail[Self::index(language)]
    }

    fn sms(&self, language: Language) -> &str {
        &self.sms[Self::index(language)]
    }
}

fn user<'a>(config: &'a Config, email: &str) -> Option<&'a User> {
    config.users.get(&email.to_ascii_lowercase())
}

/// Everyone with a role on the project, each once: the group's owner, admins and users, then
/// the project's members.
fn role_users<'a>(config: &'a Config, project: &Project) -> Vec<&'a User> {
    let mut emails: Vec<&str> = Vec::new();
    if let Some(group) = project.group.as_ref().and_then(|g| config.groups.get(g)) {
        emails.push(&group.owner);
        emails.extend(group.admins.iter().map(String::as_str));
        emails.extend(group.users.iter().map(String::as_str));
    }
    emails.extend(project.members.iter().map(|m| m.user.as_str()));
    let mut seen = HashSet::new();
    emails.into_iter().filter_map(|e| user(config, e)).filter(|u| seen.insert(u.email.to_ascii_lowercase())).collect()
}

/// The weekday and minute after midnight at `now_ms` in the project's timezone.
#[derive(Debug, Clone, Copy)]
struct Clock {
    weekday: Weekday,
    minute: u16,
}

fn local_clock(now_ms: i64, tz: &TimeZone) -> Clock {
    let now = Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned(tz.clone());
    let weekday = match now.weekday() {
        jiff::civil::Weekday::Monday => Weekday::Mon,
        jiff::civil::Weekday::Tuesday => Weekday::Tue,
        jiff::civil::Weekday::Wednesday => Weekday::Wed,
        jiff::civil::Weekday::Thursday => Weekday::Thu,
        jiff::civil::Weekday::Friday => Weekday::Fri,
        jiff::civil::Weekday::Saturday => Weekday::Sat,
        jiff::civil::Weekday::Sunday => Weekday::Sun,
    };
    Clock { weekday, minute: now.hour() as u16 * 60 + now.minute() as u16 }
}

fn previous(day: Weekday) -> Weekday {
    match day {
        Weekday::Mon => Weekday::Sun,
        Weekday::Tue => Weekday::Mon,
        Weekday::Wed => Weekday::Tue,
        Weekday::Thu => Weekday::Wed,
        Weekday::Fri => Weekday::Thu,
        Weekday::Sat => Weekday::Fri,
        Weekday::Sun => Weekday::Sat,
    }
}

/// Whether a user's `hours` and `days` let them be notified at `clock`; the reason if not.
fn allowed_at(prefs: &NotifyPrefs, clock: Clock) -> Result<(), &'static str> {
    // The day the window containing `clock` started on.
    let window_day = match prefs.hours {
        None => clock.weekday,
        Some((from, to)) if from < to => {
            if (from..to).contains(&clock.minute) {
                clock.weekday
            } else {
                return Err("outside notify hours");
            }
        }
        Some((from, to)) => {
            if clock.minute >= from {
                clock.weekday
            } else if clock.minute < to {
                previous(clock.weekday)
            } else {
                return Err("outside notify hours");
            }
        }
    };
    if prefs.days.is_empty() || prefs.days.contains(&window_day) { Ok(()) } else { Err("outside notify days") }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::raw::Severity;

    use crate::config::compile_inline as compile_tree;

    const TREE: &str = r#"
kind: User
email: alice@example.com
name: Alice Kim
phone: "+82-10-1111-1111"
language: ko
notify: { email: true, sms: true }
---
kind: User
email: bob@example.com
name: Bob
phone: "+82-10-2222-2222"
notify: { email: true, sms: false, hours: "22:00-06:00", days: [fri] }
---
kind: User
email: carol@example.com
name: Carol
notify: { email: true, sms: true, days: [mon, tue, wed, thu, fri] }
---
kind: User
email: dave@example.com
name: Dave
phone: "+82-10-4444-4444"
notify: { email: false, sms: false, hours: "09:00-18:00" }
---
kind: User
email: erin@example.com
name: Erin
phone: "+82-10-5555-5555"
---
kind: Group
name: platform
owner: alice@example.com
admins: [bob@example.com]
users: [carol@example.com]
---
kind: Project
name: shop
group: platform
timezone: Asia/Seoul
members:
  - { user: dave@example.com, role: admin }
  - { user: alice@example.com, role: user }
channels: [ops-mail, ops-sms, ops-slack, backup-mail, ops-json]
---
kind: Channel
name: ops-mail
type: email
smtp: { host: smtp.example.com, port: 587, password: "${SMTP_PASSWORD}" }
from: "watchkeeper <alerts@example.com>"
to: [team@example.com, ALICE@example.com]
---
kind: Channel
name: backup-mail
type: email
smtp: { host: smtp2.example.com }
from: alerts@example.com
---
kind: Channel
name: ops-sms
type: sms
url: https://sms.example.com/send
to: ["+82-10-9999-9999", "+821011111111"]
---
kind: Channel
name: ops-slack
type: webhook
url: "${SLACK_WEBHOOK_URL}"
format: slack
---
kind: Channel
name: ops-json
type: webhook
url: https://hooks.example.com/wk
---
kind: PortMonitor
name: web-01-ports
project: shop
host: 203.0.113.10
ports: [80]
notify: [dave@example.com, erin@example.com, alice@example.com]
email: true
sms: true
"#;

    fn msg() -> AlertMessage {
        AlertMessage {
            kind: MessageKind::Fired,
            severity: Severity::Fatal,
            project: "shop".into(),
            server: None,
            host: "203.0.113.10".into(),
            what: "port 80 of web-01-ports".into(),
            detail: "connection refused".into(),
            started_at_ms: 0,
            at_ms: 0,
            alert_id: None,
        }
    }

    /// Epoch ms of a wall-clock time in Asia/Seoul.
    fn seoul(datetime: &str) -> i64 {
        let civil: jiff::civil::DateTime = datetime.parse().expect("datetime");
        civil.in_tz("Asia/Seoul").expect("zone").timestamp().as_millisecond()
    }

    /// (channel, recipient, status, reason) of every row, in order.
    fn table(rows: &[NewNotification]) -> Vec<(String, String, DeliveryStatus, Option<String>)> {
        rows.iter().map(|r| (r.channel.clone(), r.recipient.clone(), r.status, r.reason.clone())).collect()
    }

    fn find<'a>(rows: &'a [NewNotification], channel: &str, recipient: &str) -> Option<&'a NewNotification> {
        rows.iter().find(|r| r.channel == channel && r.recipient == recipient)
    }

    const PENDING: DeliveryStatus = DeliveryStatus::Pending;
    const NOT_SENT: DeliveryStatus = DeliveryStatus::NotSent;

    fn row(
        channel: &str,
        recipient: &str,
        status: DeliveryStatus,
        reason: Option<&str>,
    ) -> (String, String, DeliveryStatus, Option<String>) {
        (channel.into(), recipient.into(), status, reason.map(String::from))
    }

    #[test]
    fn roles_prefs_channels_on_a_weekday_afternoon() {
        let config = compile_tree(TREE);
        // Wednesday 2026-12-02 14:00 KST: Bob (22:00-06:00, fri) is outside his hours.
        let rows = build_notifications(&config, "shop", &msg(), None, None, seoul("2026-12-02T14:00"));
        assert_eq!(
            table(&rows),
            vec![
                row("ops-mail", "alice@example.com", PENDING, None),
                row("ops-mail", "bob@example.com", NOT_SENT, Some("outside notify hours")),
                row("ops-mail", "carol@example.com", PENDING, None),
                // dave: e-mail off → no row. team@ from `to:`; ALICE@ deduplicated.
                row("ops-mail", "team@example.com", PENDING, None),
                // alice has sms and a phone; carol has sms but no phone; `to:` +821011111111 is alice's.
                row("ops-sms", "+821011111111", PENDING, None),
                row("ops-sms", "+821099999999", PENDING, None),
                row("ops-slack", "ops-slack", PENDING, None),
                row("backup-mail", "alice@example.com", PENDING, None),
                row("backup-mail", "bob@example.com", NOT_SENT, Some("outside notify hours")),
                row("backup-mail", "carol@example.com", PENDING, None),
                row("ops-json", "ops-json", PENDING, None),
            ]
        );
        assert!(rows.iter().all(|r| r.kind == MessageKind::Fired));
        assert_eq!(rows.iter().filter(|r| r.medium == Medium::Webhook).count(), 2, "one row per webhook channel");
    }

    #[test]
    fn hours_wrapping_midnight_belong_to_the_day_they_start() {
        let config = compile_tree(TREE);
        let bob = |at: &str| {
            find(&build_notifications(&config, "shop", &msg(), None, None, seoul(at)), "ops-mail", "bob@example.com")
                .map(|r| (r.status, r.reason.clone()))
        };
        // Friday 23:00: inside, and Friday is allowed.
        assert_eq!(bob("2026-12-04T23:00"), Some((PENDING, None)));
        // Saturday 02:00: inside Friday night's window.
        assert_eq!(bob("2026-12-05T02:00"), Some((PENDING, None)));
        // Saturday 05:59 still inside, 06:00 outside.
        assert_eq!(bob("2026-12-05T05:59"), Some((PENDING, None)));
        assert_eq!(bob("2026-12-05T06:00"), Some((NOT_SENT, Some("outside notify hours".into()))));
        // Friday 02:00 belongs to Thursday night: Thursday is not in his days.
        assert_eq!(bob("2026-12-04T02:00"), Some((NOT_SENT, Some("outside notify days".into()))));
        // Saturday 23:00: inside the hours, but Saturday is not in his days.
        assert_eq!(bob("2026-12-05T23:00"), Some((NOT_SENT, Some("outside notify days".into()))));
    }

    #[test]
    fn hours_and_days_are_in_the_project_timezone() {
        let config = compile_tree(TREE);
        // Carol takes mon-fri. Friday 2026-12-04 23:30 UTC is Saturday 08:30 KST: the project's
        // Saturday, so she is off although it is still Friday in UTC.
        let utc_friday_night = jiff::Timestamp::from_second(1_796_427_000).expect("ts").as_millisecond();
        let rows = build_notifications(&config, "shop", &msg(), None, None, utc_friday_night);
        let carol = find(&rows, "ops-mail", "carol@example.com").expect("carol row");
        assert_eq!((carol.status, carol.reason.as_deref()), (NOT_SENT, Some("outside notify days")));
    }

    #[test]
    fn monitor_notify_list_adds_users_with_the_monitors_media() {
        let config = compile_tree(TREE);
        let monitor = &config.projects["shop"].port_monitors["web-01-ports"];
        // Wednesday 10:00: inside Dave's 09:00-18:00.
        let rows = build_notifications(&config, "shop", &msg(), Some(monitor), None, seoul("2026-12-02T10:00"));
        // Dave turned e-mail and SMS off himself, but the monitor lists him with email+sms.
        assert_eq!(find(&rows, "ops-mail", "dave@example.com").map(|r| r.status), Some(PENDING));
        assert_eq!(find(&rows, "ops-sms", "+821044444444").map(|r| r.status), Some(PENDING));
        // Erin has no role on the project: listed users are notified regardless of role.
        assert_eq!(find(&rows, "ops-mail", "erin@example.com").map(|r| r.status), Some(PENDING));
        assert_eq!(find(&rows, "ops-sms", "+821055555555").map(|r| r.status), Some(PENDING));
        // Alice is both a role user and listed: once per channel.
        assert_eq!(rows.iter().filter(|r| r.channel == "ops-sms" && r.recipient == "+821011111111").count(), 1);
        assert_eq!(rows.iter().filter(|r| r.channel == "ops-mail" && r.recipient == "alice@example.com").count(), 1);
        // At 20:00 Dave is outside his own hours, even though the monitor lists him.
        let late = build_notifications(&config, "shop", &msg(), Some(monitor), None, seoul("2026-12-02T20:00"));
        let dave = find(&late, "ops-mail", "dave@example.com").expect("dave row");
        assert_eq!((dave.status, dave.reason.as_deref()), (NOT_SENT, Some("outside notify hours")));
        // A monitor with sms: false adds no SMS for its list.
        let mut quiet = monitor.clone();
        quiet.sms = false;
        let rows = build_notifications(&config, "shop", &msg(), Some(&quiet), None, seoul("2026-12-02T10:00"));
        assert!(find(&rows, "ops-sms", "+821055555555").is_none());
        assert!(find(&rows, "ops-mail", "erin@example.com").is_some());
    }

    #[test]
    fn suppression_keeps_every_row_as_not_sent() {
        let config = compile_tree(TREE);
        let monitor = &config.projects["shop"].port_monitors["web-01-ports"];
        let at = seoul("2026-12-02T10:00");
        let normal = build_notifications(&config, "shop", &msg(), Some(monitor), None, at);
        let suppressed = build_notifications(&config, "shop", &msg(), Some(monitor), Some("maintenance kernel-upgrade"), at);
        assert_eq!(normal.len(), suppressed.len());
        for (n, s) in normal.iter().zip(&suppressed) {
            assert_eq!((&n.channel, &n.recipient), (&s.channel, &s.recipient));
            assert_eq!(s.status, NOT_SENT);
            assert_eq!(s.reason.as_deref(), Some("maintenance kernel-upgrade"));
        }
    }

    #[test]
    fn each_user_gets_their_language_and_to_lists_get_english() {
        let config = compile_tree(TREE);
        let rows = build_notifications(&config, "shop", &msg(), None, None, seoul("2026-12-02T10:00"));
        let alice = find(&rows, "ops-mail", "alice@example.com").expect("alice");
        assert!(alice.subject.starts_with("[watchkeeper] 장애 발생 (위험)"), "{}", alice.subject);
        assert!(alice.body.contains("장애가 발생했습니다"), "{}", alice.body);
        let carol = find(&rows, "ops-mail", "carol@example.com").expect("carol");
        assert!(carol.subject.starts_with("[watchkeeper] Alert fired (fatal)"), "{}", carol.subject);
        let team = find(&rows, "ops-mail", "team@example.com").expect("team");
        assert_eq!(team.subject, carol.subject);
        let alice_sms = find(&rows, "ops-sms", "+821011111111").expect("alice sms");
        assert!(alice_sms.body.contains("장애(위험)"), "{}", alice_sms.body);
        let to_sms = find(&rows, "ops-sms", "+821099999999").expect("to sms");
        assert!(to_sms.body.contains("FATAL"), "{}", to_sms.body);
        let hook = find(&rows, "ops-slack", "ops-slack").expect("webhook");
        let payload: serde_json::Value = serde_json::from_str(&hook.body).expect("webhook body is JSON");
        assert_eq!(payload["kind"], "fired");
        assert_eq!(payload["host"], "203.0.113.10");
    }

    #[test]
    fn unknown_project_and_project_without_group() {
        let config = compile_tree(TREE);
        assert!(build_notifications(&config, "nope", &msg(), None, None, 0).is_empty());
        let solo = compile_tree(&format!(
            "{TREE}\n---\nkind: Project\nname: solo\ntimezone: UTC\nmembers: [{{ user: erin@example.com, role: admin }}]\nchannels: [backup-mail]\n"
        ));
        let rows = build_notifications(&solo, "solo", &msg(), None, None, 0);
        assert_eq!(table(&rows), vec![row("backup-mail", "erin@example.com", PENDING, None)]);
    }
}
