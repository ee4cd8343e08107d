//! The availability page (`/p/{project}/availability`): per port monitor port and down-check
//! target, an up/down timeline and the uptime over the range, times in the project's timezone.
//!
//! `?range=day` (the default) is one calendar day from 00:00 — today, or `&date=YYYY-MM-DD` —
//! in 5-minute buckets; `?range=1d|7d|30d` are the days up to `&end=<epoch ms>` (absent: now),
//! in 5-minute buckets for one day and hourly ones beyond. ◀ and ▶ move by the range.
//!
//! The buckets and uptime come from [`crate::api::availability_of`], as `GET …/availability`'s do.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use maud::{Markup, html};

use super::html::{self, Place, layout};
use super::pages::failed;
use super::server::bad;
use super::svg::{Span, Timeline};
use super::words::{Words, fill};
use super::{Signed, WebState, page};
use crate::api::{self, ApiError, TargetKind, TargetView};
use crate::clock::now_ms;
use crate::config::model::Project;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// The rolling ranges: (word, days, bucket).
const ROLLING: &[(&str, i64, i64)] = &[("1d", 1, 5 * MIN), ("7d", 7, HOUR), ("30d", 30, HOUR)];

/// A rolling range's name on the page.
fn rolling_label(w: &Words, word: &str) -> &'static str {
    match word {
        "1d" => w.hours_24,
        "7d" => w.days_7,
        _ => w.days_30,
    }
}

/// What the page shows.
#[derive(Debug, PartialEq)]
enum View {
    /// One calendar day in the project's timezone; `None` is today.
    Day(Option<Date>),
    /// `ROLLING[index]` up to `end` (`None`: now).
    Rolling { index: usize, end: Option<i64> },
}

/// The window a view covers: [from, to) in buckets of `bucket`.
struct Window {
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
}

impl View {
    fn parse(query: &HashMap<String, String>) -> Result<View, String> {
        if let Some(name) = query.keys().find(|k| !["range", "date", "end"].contains(&k.as_str())) {
            return Err(format!("unknown query parameter `{name}` (expected range, date, end)"));
        }
        let value = |name: &str| query.get(name).map(String::as_str).filter(|v| !v.is_empty());
        match value("range").unwrap_or("day") {
            "day" => {
                if value("end").is_some() {
                    return Err("`end` goes with range=1d, 7d or 30d; a day is chosen with `date`".to_string());
                }
                let date = value("date")
                    .map(|d| d.parse::<Date>().map_err(|_| format!("invalid `date`: `{d}` is not a date like 2026-03-05")))
                    .transpose()?;
                Ok(View::Day(date))
            }
            word => {
                let index = ROLLING
                    .iter()
                    .position(|r| r.0 == word)
                    .ok_or_else(|| format!("invalid `range`: `{word}` is not one of day, 1d, 7d, 30d"))?;
                if value("date").is_some() {
                    return Err("`date` goes with range=day; other ranges end at `end`".to_string());
                }
                let end = value("end")
                    .map(|e| e.parse::<i64>().map_err(|_| format!("invalid `end`: `{e}` is not a time in epoch milliseconds")))
                    .transpose()?;
                Ok(View::Rolling { index, end })
            }
        }
    }

    fn window(&self, now: i64, tz: &TimeZone) -> Result<Window, String> {
        match self {
            View::Day(date) => {
                let date = date.unwrap_or_else(|| api::zoned(now, tz).map_or(Date::ZERO, |z| z.date()));
                let start = |d: Date| {
                    d.to_zoned(tz.clone()).map(|z| z.timestamp().as_millisecond()).map_err(|_| format!("`{d}` has no start in {tz:?}"))
                };
                let next = date.tomorrow().map_err(|_| format!("invalid `date`: `{date}` is the last day there is"))?;
                Ok(Window { from_ms: start(date)?, to_ms: start(next)?, bucket_ms: 5 * MIN })
            }
            View::Rolling { index, end } => {
                let (_, days, bucket_ms) = ROLLING[*index];
                // Whole buckets: the window ends at the end of the bucket holding `end`.
                let to_ms = (end.unwrap_or(now).div_euclid(bucket_ms) + 1) * bucket_ms;
                Ok(Window { from_ms: to_ms - days * DAY, to_ms, bucket_ms })
            }
        }
    }

    /// The address of this view moved by `steps` ranges (negative: back); the live view once
    /// less than a range is left before now; `None` past now.
    fn moved(&self, steps: i64, window: &Window, now: i64, tz: &TimeZone) -> Option<String> {
        match self {
            View::Day(_) => {
                let day = api::zoned(window.from_ms, tz)?.date().checked_add(jiff::Span::new().days(steps)).ok()?;
                let today = api::zoned(now, tz)?.date();
                (day <= today).then(|| if day == today { "?range=day".to_string() } else { format!("?range=day&date={day}") })
            }
            View::Rolling { index, end } => {
                let span = window.to_ms - window.from_ms;
                let word = ROLLING[*index].0;
                if steps > 0 && end.is_none() {
                    return None;
                }
                // Less than a whole range before now: the live view.
                let to = end.unwrap_or(now) + steps * span;
                Some(if to > now - span { format!("?range={word}") } else { format!("?range={word}&end={to}") })
            }
        }
    }

    fn is_live(&self) -> bool {
        matches!(self, View::Day(None) | View::Rolling { end: None, .. })
    }
}

/// `GET /p/{project}/availability`.
pub async fn page_of(
    State(state): State<WebState>,
    signed: Signed,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok((p, _)) = signed.access.project(&project) else { return html::missing(&signed) };
    let tz = api::project_tz(&p.timezone);
    let now = now_ms();
    let (view, window) = match View::parse(&query).and_then(|v| v.window(now, &tz).map(|w| (v, w))) {
        Ok(found) => found,
        Err(message) => return bad(message, &signed),
    };
    match render(&state, signed.w, p, &view, &window, now, &tz).await {
        Ok(body) => {
            page(StatusCode::OK, layout(signed.w, signed.w.availability, Some(&signed), Some(&Place::Project(p, "/availability")), body))
        }
        Err(e) => failed(e, &signed),
    }
}

/// `99.994 %`, `100 %`: three decimals at most, so an outage of a few checks in a month still
/// shows below 100.
fn uptime(w: &Words, percent: Option<f64>) -> String {
    match percent {
        None => w.no_data.to_string(),
        Some(v) => {
            let text = format!("{v:.3}");
            format!("{} %", text.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// Adjacent buckets of one state become one span.
fn spans(w: &Words, t: &TargetView, bucket_ms: i64, tz: &TimeZone) -> Vec<Span> {
    let mut merged: Vec<(i64, i64, &'static str, i64, i64)> = Vec::new();
    for b in &t.buckets {
        match merged.last_mut() {
            Some(last) if last.1 == b.start_ms && last.2 == b.state => {
                last.1 += bucket_ms;
                last.3 += b.ok;
                last.4 += b.failed;
            }
            _ => merged.push((b.start_ms, b.start_ms + bucket_ms, b.state, b.ok, b.failed)),
        }
    }
    let hm = |ms: i64| api::zoned(ms, tz).map(|z| z.strftime("%m-%d %H:%M").to_string()).unwrap_or_default();
    merged
        .into_iter()
        .map(|(from_ms, to_ms, state, ok, failed)| Span {
            from_ms,
            to_ms,
            class: state,
            title: fill(w.span_title, &[&state_label(w, state), &hm(from_ms), &hm(to_ms), &ok, &failed]),
        })
        .collect()
}

/// A bucket's state (`up`, `partial`, `down`, `none`) as the page says it.
fn state_label(w: &Words, state: &str) -> &'static str {
    match state {
        "up" => w.up,
        "partial" => w.partly_down,
        "down" => w.down,
        _ => w.no_data,
    }
}

async fn render(
    state: &WebState,
    w: &Words,
    p: &Project,
    view: &View,
    window: &Window,
    now: i64,
    tz: &TimeZone,
) -> Result<Markup, ApiError> {
    let targets = api::availability_of(&state.api.store, p, window.from_ms, window.to_ms, window.bucket_ms).await?;
    let base = format!("/p/{}/availability", p.name);
    let back = view.moved(-1, window, now, tz);
    let forward = view.moved(1, window, now, tz);
    let current = match view {
        View::Day(_) => "day",
        View::Rolling { index, .. } => ROLLING[*index].0,
    };
    let section = |kind: TargetKind, title: &str| {
        let list: Vec<&TargetView> = targets.iter().filter(|t| t.kind == kind).collect();
        html! {
            @if !list.is_empty() {
                h2 { (title) }
                div.timelines {
                    @for t in list {
                        @let label = format!("{} {}:{}", t.monitor, t.host, t.port);
                        figure.availability data-target=(t.monitor) data-port=(t.port) data-uptime=[t.uptime_percent] {
                            figcaption {
                                @if kind == TargetKind::PortMonitor {
                                    a href={ "/p/" (p.name) "/ports/" (t.monitor) } { (t.monitor) }
                                } @else {
                                    (t.monitor)
                                }
                                " " span.meta { (t.host) ":" (t.port) }
                                span.uptime { (w.uptime_word) " " strong { (uptime(w, t.uptime_percent)) } }
                                span.meta.counts { (fill(w.n_good_failed, &[&t.ok, &t.failed])) }
                            }
                            (Timeline { label: &label, from_ms: window.from_ms, to_ms: window.to_ms, spans: &spans(w, t, window.bucket_ms, tz), now_ms: now, tz }.render())
                        }
                    }
                }
            }
        }
    };
    Ok(html! {
        h1 { (w.availability) }
        nav.range aria-label=(w.nav_range) {
            @match &back { Some(href) => a href={ (base) (href) } title=(w.earlier) { "◀" }, None => {} }
            a href={ (base) "?range=day" } aria-current=[(current == "day").then_some("page")] { (w.today) }
            @for (word, _, _) in ROLLING {
                a href={ (base) "?range=" (word) } aria-current=[(current == *word).then_some("page")] { (rolling_label(w, word)) }
            }
            @match &forward { Some(href) => a href={ (base) (href) } title=(w.later) { "▶" }, None => {} }
            @if !view.is_live() { a href={ (base) "?range=" (current) } { (w.now) } }
            span.meta { (html::time(window.from_ms, tz)) " – " (html::time(window.to_ms, tz)) }
        }
        p.legend {
            span.key.up { (w.up) } " " span.key.partial { (w.partly_down) } " " span.key.down { (w.down) } " " span.key.none { (w.no_data) }
        }
        p.meta { (fill(w.buckets_of, &[&(window.bucket_ms / MIN), &p.timezone])) }
        @if targets.is_empty() { p.meta { (w.no_targets) } }
        (section(TargetKind::PortMonitor, w.port_monitors))
        (section(TargetKind::DownCheck, w.down_checks))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn today_runs_from_local_midnight_and_the_arrows_move_by_whole_ranges() {
        let seoul = TimeZone::get("Asia/Seoul").unwrap();
        let now = ms("2026-03-05T05:07:00Z"); // 14:07 in Seoul
        let today = View::parse(&query(&[])).unwrap();
        let w = today.window(now, &seoul).unwrap();
        assert_eq!((w.from_ms, w.to_ms, w.bucket_ms), (ms("2026-03-04T15:00:00Z"), ms("2026-03-05T15:00:00Z"), 5 * MIN));
        assert_eq!(today.moved(-1, &w, now, &seoul).as_deref(), Some("?range=day&date=2026-03-04"));
        assert_eq!(today.moved(1, &w, now, &seoul), None, "no day after today");
        let yesterday = View::parse(&query(&[("date", "2026-03-04")])).unwrap();
        let w = yesterday.window(now, &seoul).unwrap();
        assert_eq!(yesterday.moved(1, &w, now, &seoul).as_deref(), Some("?range=day"));

        let week = View::parse(&query(&[("range", "7d")])).unwrap();
        let w = week.window(now, &seoul).unwrap();
        assert_eq!((w.to_ms, w.to_ms - w.from_ms, w.bucket_ms), (ms("2026-03-05T06:00:00Z"), 7 * DAY, HOUR));
        let back = week.moved(-1, &w, now, &seoul).unwrap();
        assert_eq!(back, format!("?range=7d&end={}", now - 7 * DAY));
        assert_eq!(week.moved(1, &w, now, &seoul), None);
        let earlier = View::Rolling { index: 1, end: Some(now - 7 * DAY) };
        assert_eq!(earlier.moved(1, &earlier.window(now, &seoul).unwrap(), now, &seoul).as_deref(), Some("?range=7d"));
    }

    #[test]
    fn bad_views_are_refused_with_the_parameter_named() {
        for (pairs, start) in [
            (vec![("range", "2d")], "invalid `range`"),
            (vec![("date", "2026-02-30")], "invalid `date`"),
            (vec![("range", "7d"), ("end", "soon")], "invalid `end`"),
            (vec![("range", "7d"), ("date", "2026-03-01")], "`date` goes with"),
            (vec![("end", "1")], "`end` goes with"),
            (vec![("days", "7")], "unknown query parameter `days`"),
        ] {
            let e = View::parse(&query(&pairs)).unwrap_err();
            assert!(e.starts_with(start), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn uptime_keeps_what_is_below_a_hundred_visible() {
        use super::super::words::{EN, KO};
        assert_eq!(uptime(&EN, Some(100.0)), "100 %");
        assert_eq!(uptime(&EN, Some(99.999)), "99.999 %");
        assert_eq!(uptime(&EN, Some(25.0)), "25 %");
        assert_eq!(uptime(&EN, None), "no data");
        assert_eq!(uptime(&KO, None), "데이터 없음");
    }
}
