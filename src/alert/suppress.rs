//! Why a notification is held back: a maintenance window covering the server, or a parent it
//! `depends_on` that is down. Pure: the time and the parents' state are passed in; windows
//! are evaluated in the project's timezone.

use crate::config::model::{Maintenance, MaintenanceScope, Project, Window};
use crate::config::raw::Weekday;

/// Why notifications about `server` (or the whole project) are suppressed at `now_ms`, if
/// they are. `parent_down` tells whether a server has a fatal alert firing; parents are
/// followed up the `depends_on` chain (a grandparent that is down suppresses too), nearest
/// first.
pub fn suppression(project: &Project, server: Option<&str>, now_ms: i64, parent_down: impl Fn(&str) -> bool) -> Option<String> {
    if let Some(window) = active_window(project, server, now_ms) {
        return Some(format!("maintenance `{}`", window.name));
    }
    let server = project.servers.get(server?)?;
    let mut seen: Vec<&str> = vec![&server.name];
    let mut next: Vec<&str> = server.depends_on.iter().map(String::as_str).collect();
    while !next.is_empty() {
        let mut further = Vec::new();
        for parent in next {
            if seen.contains(&parent) {
                continue; // a cycle (lint rejects those) or a parent reached twice
            }
            seen.push(parent);
            if parent_down(parent) {
                return Some(format!("parent `{parent}` is down"));
            }
            further.extend(project.servers.get(parent).iter().flat_map(|p| p.depends_on.iter().map(String::as_str)));
        }
        next = further;
    }
    None
}

/// The first window of `project` covering `server` (or the whole project when `server` is
/// `None` — only `all: true` windows apply then) at `now_ms`.
pub fn active_window<'a>(project: &'a Project, server: Option<&str>, now_ms: i64) -> Option<&'a Maintenance> {
    let tz = jiff::tz::TimeZone::get(&project.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let local = jiff::Timestamp::from_millisecond(now_ms).ok()?.to_zoned(tz);
    project.maintenance.values().find(|m| covers(project, m, server) && in_window(&m.window, now_ms, &local))
}

fn covers(project: &Project, m: &Maintenance, server: Option<&str>) -> bool {
    match (&m.scope, server) {
        (MaintenanceScope::All, _) => true,
        (MaintenanceScope::Servers(list), Some(s)) => list.iter().any(|x| x == s),
        (MaintenanceScope::Tags(tags), Some(s)) => project.servers.get(s).is_some_and(|srv| srv.tags.iter().any(|t| tags.contains(t))),
        (_, None) => false,
    }
}

fn weekday(day: jiff::civil::Weekday) -> Weekday {
    use jiff::civil::Weekday as W;
    match day {
        W::Monday => Weekday::Mon,
        W::Tuesday => Weekday::Tue,
        W::Wednesday => Weekday::Wed,
        W::Thursday => Weekday::Thu,
        W::Friday => Weekday::Fri,
        W::Saturday => Weekday::Sat,
        W::Sunday => Weekday::Sun,
    }
}

fn in_window(window: &Window, now_ms: i64, local: &jiff::Zoned) -> bool {
    match window {
        Window::Once { start_ms, end_ms } => (*start_ms..*end_ms).contains(&now_ms),
        Window::Weekly { days, from, to } => {
            let minute = local.hour() as u16 * 60 + local.minute() as u16;
            let today = weekday(local.weekday());
            if from < to {
                days.contains(&today) && (*from..*to).contains(&minute)
            } else {
                // Wraps midnight: the part after midnight belongs to the previous day's window.
                let yesterday = weekday(local.weekday().previous());
                (days.contains(&today) && minute >= *from) || (days.contains(&yesterday) && minute < *to)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Project;
    use std::collections::BTreeMap;

    fn project(windows: Vec<Maintenance>) -> Project {
        Project {
            origin: None,
            name: "shop".into(),
            group: None,
            description: None,
            timezone: "Asia/Seoul".into(),
            members: vec![],
            ingest_key_sha256: None,
            channels: vec![],
            networks: vec![],
            daily_email: false,
            daily_email_at: 8 * 60,
            repeat: None,
            escalation: vec![],
            flapping: Default::default(),
            servers: BTreeMap::new(),
            port_monitors: BTreeMap::new(),
            down_checks: BTreeMap::new(),
            alert_policies: BTreeMap::new(),
            process_policies: BTreeMap::new(),
            log_policies: BTreeMap::new(),
            maintenance: windows.into_iter().map(|m| (m.name.clone(), m)).collect(),
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn one_off_window_covers_listed_servers_between_start_and_end() {
        let p = project(vec![Maintenance {
            origin: None,
            name: "kernel".into(),
            scope: MaintenanceScope::Servers(vec!["web-01".into()]),
            window: Window::Once { start_ms: ms("2026-12-01T01:00:00+09:00"), end_ms: ms("2026-12-01T03:00:00+09:00") },
            reason: None,
        }]);
        assert!(active_window(&p, Some("web-01"), ms("2026-12-01T02:00:00+09:00")).is_some());
        assert!(active_window(&p, Some("web-01"), ms("2026-12-01T03:00:00+09:00")).is_none(), "end is exclusive");
        assert!(active_window(&p, Some("db-01"), ms("2026-12-01T02:00:00+09:00")).is_none());
        assert!(active_window(&p, None, ms("2026-12-01T02:00:00+09:00")).is_none());
    }

    #[test]
    fn weekly_window_in_the_project_timezone_including_past_midnight() {
        let p = project(vec![Maintenance {
            origin: None,
            name: "nightly".into(),
            scope: MaintenanceScope::All,
            window: Window::Weekly { days: vec![Weekday::Sun], from: 23 * 60, to: 60 },
            reason: None,
        }]);
        // 2026-12-06 is a Sunday. 23:30 Sunday and 00:30 Monday in Seoul are inside.
        assert!(active_window(&p, None, ms("2026-12-06T23:30:00+09:00")).is_some());
        assert!(active_window(&p, Some("x"), ms("2026-12-07T00:30:00+09:00")).is_some());
        assert!(active_window(&p, None, ms("2026-12-07T01:30:00+09:00")).is_none());
        assert!(active_window(&p, None, ms("2026-12-05T23:30:00+09:00")).is_none(), "Saturday");
        // The same instant seen from UTC is 14:30 Sunday: the window is the project's local time.
        assert!(active_window(&p, None, ms("2026-12-06T14:30:00Z")).is_some());
    }
}
