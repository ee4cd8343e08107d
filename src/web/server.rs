//! The server page: what the agent says about the machine, charts of CPU, memory, network and
//! disk IO over a chosen range, its processes, its recent alerts and its policy.
//!
//! `?range=30m|1h|3h|12h|24h|7d|30d` (default 1h) and `?end=<epoch ms>` (absent: the live view,
//! which redraws every 5 s from `…/charts`); `?sort=cpu|memory|name|count` for the processes.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};

use super::html::{self, Place, layout};
use super::pages::failed;
use super::svg::{Chart, Line};
use super::words::{Words, fill};
use super::{Signed, WebState, page};
use crate::api::{self, ApiError, ProcessItems, Processes};
use crate::clock::now_ms;
use crate::config::model::{PolicyRef, Project, Server};
use crate::config::raw::Os;
use crate::store::{AlertRow, Resolution};

const MIN: i64 = 60_000;
/// The ranges a page can show, shortest first.
const RANGES: &[(&str, i64)] = &[
    ("30m", 30 * MIN),
    ("1h", 60 * MIN),
    ("3h", 180 * MIN),
    ("12h", 720 * MIN),
    ("24h", 1440 * MIN),
    ("7d", 7 * 1440 * MIN),
    ("30d", 30 * 1440 * MIN),
];
const SORTS: &[&str] = &["cpu", "memory", "name", "count"];
const PROCESSES: usize = 30;

/// The page's query, checked.
struct View {
    range: (&'static str, i64),
    /// `None`: live, ending now.
    end: Option<i64>,
    sort: &'static str,
}

pub(super) fn bad(message: String, signed: &Signed) -> Response {
    let w = signed.w;
    let body = html! { section { h1 { (w.bad_request) } p.error { (message) } } };
    page(StatusCode::BAD_REQUEST, layout(w, w.bad_request, Some(signed), None, body))
}

impl View {
    fn parse(query: &HashMap<String, String>) -> Result<View, String> {
        for name in query.keys() {
            if !["range", "end", "sort"].contains(&name.as_str()) {
                return Err(format!("unknown query parameter `{name}` (expected range, end, sort)"));
            }
        }
        let range = match query.get("range").map(String::as_str) {
            None | Some("") => RANGES[1],
            Some(r) => *RANGES.iter().find(|(word, _)| *word == r).ok_or_else(|| {
                format!("invalid `range`: `{r}` is not one of {}", RANGES.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(", "))
            })?,
        };
        let end = match query.get("end").map(String::as_str) {
            None | Some("") => None,
            Some(e) => Some(e.parse::<i64>().map_err(|_| format!("invalid `end`: `{e}` is not a time in epoch milliseconds"))?),
        };
        let sort = match query.get("sort").map(String::as_str) {
            None | Some("") => "cpu",
            Some(s) => {
                *SORTS.iter().find(|w| **w == s).ok_or_else(|| format!("invalid `sort`: `{s}` is not one of {}", SORTS.join(", ")))?
            }
        };
        Ok(View { range, end, sort })
    }

    fn href(&self, range: &str, end: Option<i64>, sort: &str) -> String {
        let mut q = format!("?range={range}");
        if let Some(end) = end {
            q.push_str(&format!("&end={end}"));
        }
        if sort != "cpu" {
            q.push_str(&format!("&sort={sort}"));
        }
        q
    }
}

fn scope<'a>(signed: &'a Signed, project: &str, server: &str) -> Option<(&'a Project, &'a Server)> {
    let (p, _) = signed.access.project(project).ok()?;
    Some((p, p.servers.get(server)?))
}

/// `GET /p/{project}/s/{server}`.
pub async fn page_of(
    State(state): State<WebState>,
    signed: Signed,
    Path((project, server)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some((p, s)) = scope(&signed, &project, &server) else { return html::missing(&signed) };
    let view = match View::parse(&query) {
        Ok(v) => v,
        Err(message) => return bad(message, &signed),
    };
    match render(&state, signed.w, p, s, &view).await {
        Ok(body) => page(StatusCode::OK, layout(signed.w, &s.name, Some(&signed), Some(&Place::Project(p, "")), body)),
        Err(e) => failed(e, &signed),
    }
}

/// `GET /p/{project}/s/{server}/charts?range=`: the live charts alone, for the page's 5 s redraw.
pub async fn charts_of(
    State(state): State<WebState>,
    signed: Signed,
    Path((project, server)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some((p, s)) = scope(&signed, &project, &server) else { return StatusCode::NOT_FOUND.into_response() };
    let view = match View::parse(&query) {
        Ok(v) => v,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    match charts(&state, signed.w, p, s, &view).await {
        Ok(markup) => Html(markup.into_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn charts(state: &WebState, w: &Words, p: &Project, s: &Server, view: &View) -> Result<Markup, ApiError> {
    let to_ms = view.end.unwrap_or_else(now_ms);
    let from_ms = to_ms - view.range.1;
    let span = Span { from_ms, to_ms, resolution: Resolution::for_range(view.range.1) };
    graphs(state, w, p, &s.name, &[Graph::Cpu, Graph::Memory, Graph::Network, Graph::DiskIo], span, &[]).await
}

/// One chart a page can show of a server, from the samples store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Graph {
    Cpu,
    Memory,
    /// The fullest mount.
    DiskUsage,
    /// The busiest device.
    DiskIo,
    /// In and out of the busiest interface.
    Network,
}

/// The time a set of charts covers, [from_ms, to_ms), and the resolution of their points.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub from_ms: i64,
    pub to_ms: i64,
    pub resolution: Resolution,
}

/// The charts `which` of `server` over `span`, with `marks` (time, CSS class, label) across each:
/// the server page's charts, and an alert page's around its start.
pub async fn graphs(
    state: &WebState,
    w: &Words,
    p: &Project,
    server: &str,
    which: &[Graph],
    span: Span,
    marks: &[(i64, &str, &str)],
) -> Result<Markup, ApiError> {
    let Span { from_ms, to_ms, resolution } = span;
    let series = |name: &'static str| state.api.store.metric_series(&p.name, server, name, None, from_ms, to_ms, resolution);
    let tz = api::project_tz(&p.timezone);
    let chart = |title, fixed_max, format: fn(f64) -> String, lines: &[Line]| {
        Chart {
            title,
            from_ms,
            to_ms,
            fixed_max,
            gap_ms: resolution.step_ms() * 3,
            lines,
            marks,
            tz: &tz,
            format,
            no_data: w.no_data_in_range,
        }
        .render()
    };
    let percent: fn(f64) -> String = |v| format!("{v:.0}%");
    let bits: fn(f64) -> String = |v| html::bps(Some(v));
    let mut out = Vec::with_capacity(which.len());
    for graph in which {
        out.push(match graph {
            Graph::Cpu => {
                chart(w.chart_cpu, Some(100.0), percent, &[Line { label: w.line_usage, class: "a", points: &series("cpu.usage").await? }])
            }
            Graph::Memory => chart(
                w.chart_memory,
                Some(100.0),
                percent,
                &[Line { label: w.line_usage, class: "a", points: &series("memory.usage").await? }],
            ),
            Graph::DiskUsage => {
                chart(w.chart_disk, Some(100.0), percent, &[Line { label: w.line_used, class: "a", points: &series("disk.usage").await? }])
            }
            Graph::DiskIo => {
                chart(w.chart_io, Some(100.0), percent, &[Line { label: w.line_busy, class: "a", points: &series("disk.io").await? }])
            }
            Graph::Network => {
                let (rx, tx) = (series("network.in_bps").await?, series("network.out_bps").await?);
                chart(
                    w.chart_network,
                    None,
                    bits,
                    &[Line { label: w.in_word, class: "a", points: &rx }, Line { label: w.out_word, class: "b", points: &tx }],
                )
            }
        });
    }
    Ok(html! { @for c in &out { (c) } })
}

async fn render(state: &WebState, w: &Words, p: &Project, s: &Server, view: &View) -> Result<Markup, ApiError> {
    let cells = api::cells(&state.api, &[p]).await?;
    let cell = cells.iter().find(|c| c.server.name == s.name);
    let live = state.api.live.get(&p.name, &s.name);
    let report = live.as_ref().map(|l| l.report.as_ref());
    let facts = report.map(|r| &r.facts);
    let tz = api::project_tz(&p.timezone);
    let alerts = api::server_alerts(&state.api, &p.name, &s.name, None, api::RECENT_ALERTS).await?;
    let charts = charts(state, w, p, s, view).await?;
    let processes = report.map(|r| Processes::of(r, view.sort, PROCESSES));
    let now = now_ms();
    let end = view.end.unwrap_or(now);
    let later = end + view.range.1;
    let base = format!("/p/{}/s/{}", p.name, s.name);
    Ok(html! {
        h1 {
            (s.name) " "
            @if let Some(cell) = cell { span.state data-state=(cell.state.as_str()) { (w.cell_state(cell.state)) } }
        }
        section.info {
            dl {
                dt { (w.host) } dd { (s.host) }
                dt { (w.os) } dd { (facts.map_or(match s.os { Os::Linux => "Linux", Os::Windows => "Windows" }, |f| f.os.as_str())) }
                @if let Some(f) = facts {
                    dt { (w.kernel) } dd { (f.kernel) }
                    dt { (w.cpu) } dd { (f.cpu_vendor) " " (f.cpu_model) " × " (f.cpu_count) }
                    dt { (w.ram) } dd { (html::bytes(Some(f.ram_total_bytes))) }
                    dt { (w.addresses) } dd { @for ip in &f.ips { (ip) " " } }
                    dt { (w.uptime) } dd { (fill(w.n_days, &[&(f.uptime_secs / 86_400)])) }
                }
                dt { (w.tags) } dd { (s.tags.join(", ")) }
                dt { (w.policy) } dd { (s.policy.as_ref().map_or(w.none, |p| match p { PolicyRef::Project(n) | PolicyRef::Shared(n) => n.as_str() })) }
                dt { (w.last_report) } dd { (live.as_ref().map_or(w.never.to_string(), |l| html::time(l.received_ms, &tz))) }
            }
            @if let Some(cell) = cell {
                dl.now {
                    dt { (w.cpu) } dd { (html::num(cell.cpu, " %")) }
                    dt { (w.memory) } dd { (html::num(cell.memory, " %")) }
                    dt { (w.disk_fullest) } dd { (html::num(cell.disk, " %")) }
                    dt { (w.network_in) } dd { (html::bps(cell.rx)) }
                    dt { (w.network_out) } dd { (html::bps(cell.tx)) }
                }
            }
        }
        section.charts {
            nav.range aria-label=(w.nav_range) {
                a href={ (base) (view.href(view.range.0, Some(end - view.range.1), view.sort)) } title=(w.range_back) { "◀" }
                @for (word, _) in RANGES {
                    a href={ (base) (view.href(word, view.end, view.sort)) } aria-current=[(*word == view.range.0).then_some("page")] { (word) }
                }
                @if view.end.is_some() {
                    a href={ (base) (view.href(view.range.0, (later < now).then_some(later), view.sort)) } title=(w.range_forward) { "▶" }
                    a href={ (base) (view.href(view.range.0, None, view.sort)) } { (w.now) }
                } @else {
                    span.live { (w.live) }
                }
                span.meta { (html::time(end - view.range.1, &tz)) " – " (html::time(end, &tz)) }
            }
            div #charts .grid data-live=[view.end.is_none().then(|| format!("{base}/charts?range={}", view.range.0))] { (charts) }
        }
        @if let Some(processes) = processes {
            section {
                h2 { (w.processes) " " span.meta { (fill(w.n_running, &[&processes.total])) } }
                table.processes {
                    thead { tr {
                        @for (key, label) in [("name", w.name), ("cpu", w.col_cpu), ("memory", w.memory_pct), ("count", w.count)] {
                            th { a href={ (base) (view.href(view.range.0, view.end, key)) } aria-current=[(key == view.sort).then_some("true")] { (label) } }
                        }
                    } }
                    tbody {
                        @match &processes.items {
                            ProcessItems::Each(list) => {
                                @for p in list { tr { td { (p.name) " " span.meta { "(" (p.pid) ")" } } td { (html::num(p.cpu, "")) } td { (html::num(Some(p.memory), "")) } td { "1" } } }
                            }
                            ProcessItems::ByName(groups) => {
                                @for g in groups { tr { td { (g.name) } td { (html::num(Some(g.cpu), "")) } td { (html::num(Some(g.memory), "")) } td { (g.count) } } }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { (w.recent_alerts) " " a.more href={ "/p/" (p.name) "/alerts?server=" (s.name) } { (fill(w.all_alerts_of, &[&s.name])) } }
            (alert_table(w, &p.name, &alerts, &tz))
        }
    })
}

/// A server's alerts as a table: time, severity, state, what; each opens its alert page.
pub fn alert_table(w: &Words, project: &str, alerts: &[AlertRow], tz: &jiff::tz::TimeZone) -> Markup {
    html! {
        @if alerts.is_empty() {
            p.meta { (w.none_dot) }
        } @else {
            table.alerts {
                thead { tr { th { (w.started) } th { (w.severity) } th { (w.state) } th { (w.rule) } th { (w.message) } } }
                tbody {
                    @for a in alerts {
                        tr data-alert=(a.id) {
                            td { a href={ "/p/" (project) "/alerts/" (a.id) } { (html::time(a.started_at_ms, tz)) } }
                            td { span class={ "sev " (a.severity.as_str()) } { (w.severity(a.severity)) } }
                            td {
                                (w.word(a.status.as_str()))
                                @if a.acknowledged_at_ms.is_some() { " " span.ack { (w.acknowledged) } }
                                @if a.flapping { " " span.flapping { (w.flapping) } }
                            }
                            td { (a.key.rule) @if !a.key.subject.is_empty() { " " (a.key.subject) } }
                            td { (a.message) }
                        }
                    }
                }
            }
        }
    }
}
