//! The port-monitoring pages, a hosting service's view of its customers' ports:
//!
//! - `/p/{project}/ports` — every port monitor (host, ports and their newest check, e-mail/SMS,
//!   state, the current error), the year's e-mails and SMS per monitor and month — sent, not
//!   sent, failed, read, delivered (`?year=`) — and the down-check pairs with their verdicts;
//! - `/p/{project}/ports/{monitor}` — one monitor: its settings and its disconnect log, counted
//!   per year, then (`?period=2026`) per month, day and hour, each a link to the next, with the
//!   failed checks of the period and their error messages.
//!
//! Both read through the same functions of [`crate::api`] as `GET …/monitors`, `…/log` and
//! `…/monitors/stats`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use maud::{Markup, html};

use super::html::{self, Place, layout};
use super::pages::failed;
use super::server::bad;
use super::words::{Words, fill};
use super::{Signed, WebState, page};
use crate::api::{self, ApiError, By, DeliveryStats, FailureView, LastCheck, MediaCounts, PortMonitorView};
use crate::clock::now_ms;
use crate::config::model::{PortMonitor, Project};

/// Failed checks listed under a period's counts.
const FAILURES: usize = 200;

/// The state of a port as its newest check says.
fn port_state(last: Option<&LastCheck>) -> &'static str {
    match last {
        Some(l) if l.ok => "up",
        Some(_) => "down",
        None => "unknown",
    }
}

/// A monitor is down when any of its ports is, up when all are, unknown before its checks.
fn monitor_state(m: &PortMonitorView) -> &'static str {
    let states: Vec<&str> = m.ports.iter().map(|p| port_state(p.last.as_ref())).collect();
    if states.contains(&"down") {
        "down"
    } else if !states.is_empty() && states.iter().all(|s| *s == "up") {
        "up"
    } else {
        "unknown"
    }
}

fn on_off(w: &Words, on: bool) -> Markup {
    html! { span.onoff data-on=(on) { (if on { w.on } else { w.off }) } }
}

/// `GET /p/{project}/ports?year=`.
pub async fn list(
    State(state): State<WebState>,
    signed: Signed,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok((p, role)) = signed.access.project(&project) else { return html::missing(&signed) };
    if let Some(name) = query.keys().find(|k| k.as_str() != "year") {
        return bad(format!("unknown query parameter `{name}` (expected year)"), &signed);
    }
    let this_year = api::this_year(&api::project_tz(&p.timezone));
    let year = match query.get("year").map(|y| y.parse::<i32>()) {
        None => this_year,
        Some(Ok(year)) if (1970..=9999).contains(&year) => year,
        Some(_) => return bad(format!("invalid `year`: `{}` is not a year from 1970 to 9999", query["year"]), &signed),
    };
    match render_list(&state, signed.w, p, role, year, this_year).await {
        Ok(body) => page(StatusCode::OK, layout(signed.w, signed.w.port_monitors, Some(&signed), Some(&Place::Project(p, "/ports")), body)),
        Err(e) => failed(e, &signed),
    }
}

async fn render_list(state: &WebState, w: &Words, p: &Project, role: api::Role, year: i32, this_year: i32) -> Result<Markup, ApiError> {
    let monitors = api::monitors(&state.api, p, role).await?;
    let stats = api::delivery_stats(&state.api.store, p, year).await?;
    let tz = api::project_tz(&p.timezone);
    let base = format!("/p/{}/ports", p.name);
    Ok(html! {
        h1 { (w.port_monitors) }
        p.meta { (fill(w.times_in, &[&p.timezone])) " " a href={ "/p/" (p.name) "/availability" } { (w.availability_timelines) } }
        @if monitors.port_monitors.is_empty() {
            p.meta { (w.no_port_monitors) }
        } @else {
            div.scroll {
                table.ports {
                    thead { tr { th { (w.monitor) } th { (w.host) } th { (w.ports) } th { (w.email) } th { (w.sms) } th { (w.state) } th { (w.error) } } }
                    tbody {
                        @for m in &monitors.port_monitors {
                            @let state = monitor_state(m);
                            tr data-monitor=(m.name) data-state=(state) {
                                td { a href={ (base) "/" (m.name) } { (m.name) } }
                                td { (m.host) @if let Some(s) = m.server { br; a.meta href={ "/p/" (p.name) "/s/" (s) } { (s) } } }
                                td {
                                    @for port in &m.ports {
                                        @let last = port.last.as_ref();
                                        span.port data-state=(port_state(last)) title=(last.map_or(w.not_checked_yet.to_string(), |l| check_title(w, l, &tz))) { (port.port) }
                                        " "
                                    }
                                }
                                td { (on_off(w, m.email)) }
                                td { (on_off(w, m.sms)) }
                                td {
                                    span.state data-state=(state) { (w.word(state)) }
                                    @if let Some(sev) = m.ports.iter().filter_map(|p| p.firing).max() {
                                        " " span class={ "sev " (sev.as_str()) } { (fill(w.alert_of_severity, &[&w.severity(sev)])) }
                                    }
                                }
                                td.error-text {
                                    @for port in &m.ports {
                                        @if let Some(l) = port.last.as_ref().filter(|l| !l.ok) {
                                            div { strong { (port.port) } ": " (l.error.as_deref().or(l.error_kind.as_deref()).unwrap_or(w.failed)) " " span.meta { "(" (html::time(l.at_ms, &tz)) ")" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (delivery_table(w, &stats, &base, this_year))
        h2 { (w.down_checks) }
        @if monitors.down_checks.is_empty() {
            p.meta { (w.no_down_checks) }
        } @else {
            div.scroll {
                table.downchecks {
                    thead { tr { th { (w.detector_target) } th { (w.address) } th { (w.verdict) } th { (w.last_result) } th { (w.error) } } }
                    tbody {
                        @for d in &monitors.down_checks {
                            tr data-downcheck=(d.name) data-verdict=(d.verdict.as_str()) {
                                td { a href={ "/p/" (p.name) "/s/" (d.detector) } { (d.detector) } " → " a href={ "/p/" (p.name) "/s/" (d.target) } { (d.target) } }
                                td { (d.ip) ":" (d.port) " " span.meta { (fill(w.liveness, &[&d.liveness_port])) } }
                                td { span.verdict data-verdict=(d.verdict.as_str()) { (verdict(w, d.verdict.as_str())) } }
                                td { (d.last.as_ref().map_or(w.none_yet.to_string(), |l| html::time(l.at_ms, &tz))) }
                                td.error-text { @if let Some(l) = d.last.as_ref().filter(|l| !l.ok) { (l.error.as_deref().unwrap_or("")) } }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A down-check's verdict as the page says it (`up` is the target's, `unknown` the detector's).
fn verdict(w: &Words, verdict: &str) -> String {
    match verdict {
        "up" => w.verdict_up.to_string(),
        "unknown" => w.verdict_unknown.to_string(),
        other => w.word(other),
    }
}

/// The year's e-mails and SMS per port monitor: a row for each month that had any, and the
/// year's total; a quiet monitor gets one line.
fn delivery_table(w: &Words, stats: &DeliveryStats, base: &str, this_year: i32) -> Markup {
    let cells = |c: &MediaCounts| {
        let email = [("sent", c.email.sent), ("not_sent", c.email.not_sent), ("failed", c.email.failed), ("read", c.email.read)];
        let sms = [("sent", c.sms.sent), ("not_sent", c.sms.not_sent), ("failed", c.sms.failed), ("delivered", c.sms.delivered)];
        html! {
            @for (what, n) in email { td.num.zero[n == 0] data-count={ "email-" (what) } { (n) } }
            @for (what, n) in sms { td.num.zero[n == 0] data-count={ "sms-" (what) } { (n) } }
        }
    };
    html! {
        section.sent-stats #notifications {
            h2 { (fill(w.notifications_in, &[&stats.year])) }
            nav.years aria-label=(w.nav_year) {
                a href={ (base) "?year=" (stats.year - 1) "#notifications" } { "◀ " (stats.year - 1) }
                @if stats.year < this_year {
                    " " a href={ (base) "?year=" (stats.year + 1) "#notifications" } { (stats.year + 1) " ▶" }
                }
            }
            p.meta { (fill(w.stats_meta, &[&stats.timezone])) }
            @if stats.monitors.is_empty() {
                p.meta { (w.no_port_monitors) }
            } @else {
                div.scroll {
                    table.sent-stats {
                        thead {
                            tr { th rowspan="2" { (w.monitor) } th rowspan="2" { (w.month) } th.group colspan="4" { (w.email) } th.group colspan="4" { (w.sms) } }
                            tr {
                                th { (w.sent_h) } th { (w.not_sent_h) } th { (w.failed_h) } th { (w.read_h) }
                                th { (w.sent_h) } th { (w.not_sent_h) } th { (w.failed_h) } th { (w.delivered_h) }
                            }
                        }
                        @for m in &stats.monitors {
                            @let months: Vec<(usize, &MediaCounts)> = m.months.iter().enumerate().filter(|(_, c)| !(c.email.is_empty() && c.sms.is_empty())).map(|(i, c)| (i + 1, c)).collect();
                            @let name = html! {
                                @if m.configured { a href={ (base) "/" (m.monitor) } { (m.monitor) } } @else { (m.monitor) " " span.meta { (w.removed) } }
                                br; span.meta { (m.host) }
                            };
                            tbody data-monitor=(m.monitor) {
                                @if months.is_empty() {
                                    tr data-month="year" { th scope="row" { (name) } td.meta colspan="9" { (w.none_this_year) } }
                                } @else {
                                    @for (i, (month, c)) in months.iter().enumerate() {
                                        tr data-month=(month) {
                                            @if i == 0 { th scope="row" rowspan=(months.len() + 1) { (name) } }
                                            td { (w.month_name(*month)) }
                                            (cells(c))
                                        }
                                    }
                                    tr.total data-month="year" { td { (w.year_total) } (cells(&m.total)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check_title(w: &Words, l: &LastCheck, tz: &TimeZone) -> String {
    let at = html::time(l.at_ms, tz);
    match (l.ok, l.latency_ms) {
        (true, Some(ms)) => fill(w.check_up_ms, &[&ms, &at]),
        (true, None) => fill(w.check_up, &[&at]),
        (false, _) => fill(w.check_down, &[&l.error.as_deref().unwrap_or(w.failed), &at]),
    }
}

/// A period of the disconnect log, as `?period=` names it.
struct Period {
    /// `None`: every year.
    key: Option<String>,
    /// How the period's failures are counted: the next level down (hours are the last).
    by: By,
    from_ms: i64,
    to_ms: i64,
}

impl Period {
    /// `2026`, `2026-03`, `2026-03-05` or `2026-03-05T14` in `tz`; empty or absent for every year.
    fn parse(text: Option<&str>, tz: &TimeZone) -> Result<Period, String> {
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return Ok(Period { key: None, by: By::Year, from_ms: 0, to_ms: now_ms().saturating_add(1) });
        };
        let bad = || format!("invalid `period`: `{text}` is not a year (2026), month (2026-03), day (2026-03-05) or hour (2026-03-05T14)");
        let number = |s: &str, digits: usize| -> Result<i16, String> {
            if s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()) { s.parse().map_err(|_| bad()) } else { Err(bad()) }
        };
        let (date_part, hour) = match text.split_once('T') {
            Some((d, h)) => (d, Some(number(h, 2)?)),
            None => (text, None),
        };
        let parts: Vec<&str> = date_part.split('-').collect();
        let year = number(parts[0], 4)?;
        let month = parts.get(1).map(|m| number(m, 2)).transpose()?;
        let day = parts.get(2).map(|d| number(d, 2)).transpose()?;
        if parts.len() > 3 || (hour.is_some() && day.is_none()) {
            return Err(bad());
        }
        let date = Date::new(year, month.unwrap_or(1) as i8, day.unwrap_or(1) as i8).map_err(|_| bad())?;
        let start = |dt: DateTime| dt.to_zoned(tz.clone()).map(|z| z.timestamp().as_millisecond()).map_err(|_| bad());
        let (by, from, to) = match (month, day, hour) {
            (None, ..) => (By::Month, date, date.checked_add(jiff::Span::new().years(1))),
            (Some(_), None, _) => (By::Day, date, date.checked_add(jiff::Span::new().months(1))),
            (Some(_), Some(_), None) => (By::Hour, date, date.checked_add(jiff::Span::new().days(1))),
            (Some(_), Some(_), Some(h)) => {
                if h > 23 {
                    return Err(bad());
                }
                let from_ms = start(date.at(h as i8, 0, 0, 0))?;
                return Ok(Period { key: Some(text.to_string()), by: By::Hour, from_ms, to_ms: from_ms + 3_600_000 });
            }
        };
        let to = to.map_err(|_| bad())?;
        Ok(Period { key: Some(text.to_string()), by, from_ms: start(from.at(0, 0, 0, 0))?, to_ms: start(to.at(0, 0, 0, 0))? })
    }

    /// The period and each one above it, widest first: (key, label).
    fn trail(&self) -> Vec<(String, String)> {
        let Some(key) = &self.key else { return Vec::new() };
        let mut trail = Vec::new();
        for (len, label) in [(4, key.get(..4)), (7, key.get(5..7)), (10, key.get(8..10)), (13, key.get(11..13))] {
            if key.len() >= len
                && let Some(label) = label
            {
                let label = if len == 13 { format!("{label}:00") } else { label.to_string() };
                trail.push((key[..len].to_string(), label));
            }
        }
        trail
    }

    /// Whether the period is a single hour: its failures, and nothing below it to count.
    fn is_hour(&self) -> bool {
        self.key.as_ref().is_some_and(|k| k.len() == 13)
    }
}

/// `GET /p/{project}/ports/{monitor}?period=`.
pub async fn monitor(
    State(state): State<WebState>,
    signed: Signed,
    Path((project, monitor)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok((p, _)) = signed.access.project(&project) else { return html::missing(&signed) };
    let Some(m) = p.port_monitors.get(&monitor) else { return html::missing(&signed) };
    if let Some(name) = query.keys().find(|k| k.as_str() != "period") {
        return bad(format!("unknown query parameter `{name}` (expected period)"), &signed);
    }
    let tz = api::project_tz(&p.timezone);
    let period = match Period::parse(query.get("period").map(String::as_str), &tz) {
        Ok(period) => period,
        Err(message) => return bad(message, &signed),
    };
    match render_monitor(&state, signed.w, p, m, &period, &tz).await {
        Ok(body) => page(StatusCode::OK, layout(signed.w, &m.name, Some(&signed), Some(&Place::Project(p, "/ports")), body)),
        Err(e) => failed(e, &signed),
    }
}

async fn render_monitor(
    state: &WebState,
    w: &Words,
    p: &Project,
    m: &PortMonitor,
    period: &Period,
    tz: &TimeZone,
) -> Result<Markup, ApiError> {
    let log = api::disconnect_log(&state.api.store, p, &m.name, period.by, period.from_ms, period.to_ms, FAILURES).await?;
    let total: i64 = log.counts.iter().map(|c| c.failures).sum();
    let base = format!("/p/{}/ports/{}", p.name, m.name);
    let level = match period.by {
        By::Year => w.level_year,
        By::Month => w.level_month,
        By::Day => w.level_day,
        By::Hour => w.level_hour,
    };
    Ok(html! {
        h1 { (m.name) " " span.meta { (m.host) } }
        section.info {
            dl {
                dt { (w.host) } dd { (m.host) }
                @if let Some(s) = &m.server { dt { (w.server) } dd { a href={ "/p/" (p.name) "/s/" (s) } { (s) } } }
                dt { (w.ports) } dd { @for port in &m.ports { (port) " " } }
                dt { (w.checked) } dd { (fill(w.every_timeout, &[&m.interval, &m.timeout])) }
                dt { (w.alerts) } dd { (fill(w.alerts_after, &[&m.failures, &m.recoveries])) }
                dt { (w.email) } dd { (on_off(w, m.email)) }
                dt { (w.sms) } dd { (on_off(w, m.sms)) }
            }
        }
        section.log {
            h2 { (w.disconnect_log) }
            nav.trail aria-label=(w.nav_period) {
                a href=(base) aria-current=[period.key.is_none().then_some("page")] { (w.all_years) }
                @for (key, label) in period.trail() {
                    " › "
                    a href={ (base) "?period=" (key) } aria-current=[(Some(&key) == period.key.as_ref()).then_some("page")] { (label) }
                }
            }
            p.meta {
                (fill(if total == 1 { w.n_failed_check } else { w.n_failed_checks }, &[&total]))
                @if period.key.is_some() { ", " (html::time(period.from_ms, tz)) " – " (html::time(period.to_ms, tz)) }
                (fill(w.times_in_after, &[&p.timezone]))
            }
            @if !period.is_hour() && !log.counts.is_empty() {
                table.counts {
                    thead { tr { th { (level) } th { (w.failed_checks) } } }
                    tbody {
                        @for c in &log.counts {
                            tr data-period=(c.period) {
                                td { a href={ (base) "?period=" (c.period) } { (c.period.replace('T', " ")) @if c.period.len() == 13 { ":00" } } }
                                td { (c.failures) }
                            }
                        }
                    }
                }
            }
            @if !log.failures.is_empty() {
                h2 { (w.failed_checks) @if (total as usize) > log.failures.len() { " " span.meta { (fill(w.the_newest, &[&log.failures.len()])) } } }
                (failure_table(w, &log.failures, tz))
            }
        }
    })
}

fn failure_table(w: &Words, failures: &[FailureView], tz: &TimeZone) -> Markup {
    html! {
        div.scroll {
            table.failures {
                thead { tr { th { (w.time) } th { (w.port) } th { (w.kind) } th { (w.error) } } }
                tbody {
                    @for f in failures {
                        tr {
                            td { (html::time(f.at_ms, tz)) }
                            td { (f.port) }
                            td { (f.error_kind.as_deref().unwrap_or("")) }
                            td.error-text { (f.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn a_period_is_a_range_in_the_project_timezone_counted_one_level_down() {
        let seoul = TimeZone::get("Asia/Seoul").unwrap();
        let p = Period::parse(Some("2026"), &seoul).unwrap();
        assert_eq!((p.by, p.from_ms, p.to_ms), (By::Month, ms("2025-12-31T15:00:00Z"), ms("2026-12-31T15:00:00Z")));
        let p = Period::parse(Some("2026-02"), &seoul).unwrap();
        assert_eq!((p.by, p.from_ms, p.to_ms), (By::Day, ms("2026-01-31T15:00:00Z"), ms("2026-02-28T15:00:00Z")));
        let p = Period::parse(Some("2026-03-05"), &seoul).unwrap();
        assert_eq!((p.by, p.from_ms, p.to_ms), (By::Hour, ms("2026-03-04T15:00:00Z"), ms("2026-03-05T15:00:00Z")));
        let p = Period::parse(Some("2026-03-05T14"), &seoul).unwrap();
        assert_eq!((p.from_ms, p.to_ms), (ms("2026-03-05T05:00:00Z"), ms("2026-03-05T06:00:00Z")));
        assert!(p.is_hour());
        let trail: Vec<String> = p.trail().into_iter().map(|(k, l)| format!("{k}={l}")).collect();
        assert_eq!(trail, ["2026=2026", "2026-03=03", "2026-03-05=05", "2026-03-05T14=14:00"]);
        assert_eq!(Period::parse(None, &seoul).unwrap().by, By::Year);
        for bad in ["26", "2026-3", "2026-13", "2026-02-30", "2026-03-05T24", "2026T14", "2026-03-05-01", "x"] {
            let e = Period::parse(Some(bad), &seoul).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.starts_with("invalid `period`"), "{e}");
        }
    }
}
