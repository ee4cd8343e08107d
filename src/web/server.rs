//! The server page: what the agent says about the machine, charts of CPU, memory, network and
//! disk IO over a chosen range, its processes, its recent alerts and its policy; and its detail
//! views ([`detail`](super::detail)), each chart's title leading to its own.
//!
//! `?range=30m|1h|3h|12h|24h|7d|30d` (default 1h) and `?end=<epoch ms>` (absent: the live view,
//! which redraws every 5 s from `…/charts`); `?sort=cpu|memory|name|count` for the processes;
//! `?detail=cpu|memory|network|disk` for a detail view over the same range.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};

use super::detail::Detail;
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
    /// `None`: the page itself.
    detail: Option<Detail>,
}

pub(super) fn bad(message: String, signed: &Signed) -> Response {
    let w = signed.w;
    let body = html! { section { h1 { (w.bad_request) } p.error { (message) } } };
    page(StatusCode::BAD_REQUEST, layout(w, w.bad_request, Some(signed), None, body))
}

impl View {
    fn parse(query: &HashMap<String, String>) -> Result<View, String> {
        for name in query.keys() {
            if !["range", "end", "sort", "detail"].contains(&name.as_str()) {
                return Err(format!("unknown query parameter `{name}` (expected range, end, sort, detail)"));
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
        let detail = match query.get("detail").map(String::as_str) {
            None | Some("") => None,
            Some(d) => Some(
                Detail::parse(d)
                    .ok_or_else(|| format!("invalid `detail`: `{d}` is not one of {}", Detail::ALL.map(Detail::word).join(", ")))?,
            ),
        };
        Ok(View { range, end, sort, detail })
    }

    /// This view's address (its detail view, if any) with another range, end or sort.
    fn href(&self, range: &str, end: Option<i64>, sort: &str) -> String {
        self.link(range, end, sort, self.detail)
    }

    fn link(&self, range: &str, end: Option<i64>, sort: &str, detail: Option<Detail>) -> String {
        let mut q = format!("?range={range}");
        if let Some(end) = end {
            q.push_str(&format!("&end={end}"));
        }
        if sort != "cpu" {
            q.push_str(&format!("&sort={sort}"));
        }
        if let Some(detail) = detail {
            q.push_str(&format!("&detail={}", detail.word()));
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
    let rendered = match view.detail {
        Some(detail) => render_detail(&state, signed.w, p, s, &view, detail).await,
        None => render(&state, signed.w, p, s, &view).await,
    };
    let title = match view.detail {
        Some(detail) => format!("{} · {}", s.name, detail.label(signed.w)),
        None => s.name.clone(),
    };
    match rendered {
        Ok(body) => page(StatusCode::OK, layout(signed.w, &title, Some(&signed), Some(&Place::Project(p, "")), body)),
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

/// The charts of the view: the page's four, each titled with a link to its detail view, or a
/// detail view's.
async fn charts(state: &WebState, w: &Words, p: &Project, s: &Server, view: &View) -> Result<Markup, ApiError> {
    let to_ms = view.end.unwrap_or_else(now_ms);
    let from_ms = to_ms - view.range.1;
    let span = Span { from_ms, to_ms, resolution: Resolution::for_range(view.range.1) };
    match view.detail {
        Some(detail) => {
            let series = state.api.store.subject_series(&p.name, &s.name, &detail.metrics(), from_ms, to_ms, span.resolution).await?;
            Ok(super::detail::render(w, detail, &series, span, &api::project_tz(&p.timezone)))
        }
        None => {
            let details = format!("/p/{}/s/{}{}&detail=", p.name, s.name, view.link(view.range.0, view.end, view.sort, None));
            graphs(state, w, p, &s.name, &[Graph::Cpu, Graph::Memory, Graph::Network, Graph::DiskIo], span, &[], Some(&details)).await
        }
    }
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

impl Graph {
    /// The detail view that shows more of it.
    fn detail(self) -> Detail {
        match self {
            Graph::Cpu => Detail::Cpu,
            Graph::Memory => Detail::Memory,
            Graph::DiskUsage | Graph::DiskIo => Detail::Disk,
            Graph::Network => Detail::Network,
        }
    }
}

/// The charts `which` of `server` over `span`, with `marks` (time, CSS class, label) across each:
/// the server page's charts, and an alert page's around its start. With `details` (an address
/// ending in `detail=`), each chart's title leads to its detail view.
#[allow(clippy::too_many_arguments)]
pub async fn graphs(
    state: &WebState,
    w: &Words,
    p: &Project,
    server: &str,
    which: &[Graph],
    span: Span,
    marks: &[(i64, &str, &str)],
    details: Option<&str>,
) -> Result<Markup, ApiError> {
    let Span { from_ms, to_ms, resolution } = span;
    let series = |name: &'static str| state.api.store.metric_series(&p.name, server, name, None, from_ms, to_ms, resolution);
    let tz = api::project_tz(&p.timezone);
    let chart = |graph: &Graph, title, fixed_max, format: fn(f64) -> String, lines: &[Line]| {
        let href = details.map(|prefix| format!("{prefix}{}", graph.detail().word()));
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
            href: href.as_deref(),
        }
        .render()
    };
    let percent: fn(f64) -> String = |v| format!("{v:.0}%");
    let bits: fn(f64) -> String = |v| html::bps(Some(v));
    let mut out = Vec::with_capacity(which.len());
    for graph in which {
        // Every chart but the network's: one percentage, on a 0–100 axis.
        let (title, label, name) = match graph {
            Graph::Cpu => (w.chart_cpu, w.line_usage, "cpu.usage"),
            Graph::Memory => (w.chart_memory, w.line_usage, "memory.usage"),
            Graph::DiskUsage => (w.chart_disk, w.line_used, "disk.usage"),
            Graph::DiskIo => (w.chart_io, w.line_busy, "disk.io"),
            Graph::Network => {
                let (rx, tx) = (series("network.in_bps").await?, series("network.out_bps").await?);
                let lines = [Line { label: w.in_word, class: "a", points: &rx }, Line { label: w.out_word, class: "b", points: &tx }];
                out.push(chart(graph, w.chart_network, None, bits, &lines));
                continue;
            }
        };
        out.push(chart(graph, title, Some(100.0), percent, &[Line { label, class: "a", points: &series(name).await? }]));
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
            (range_nav(w, view, &base, &tz))
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

/// A detail view of the server: links to the page and the other views, the range selector, and
/// the view's charts, which redraw every 5 s in the live view as the page's do.
async fn render_detail(state: &WebState, w: &Words, p: &Project, s: &Server, view: &View, detail: Detail) -> Result<Markup, ApiError> {
    let charts = charts(state, w, p, s, view).await?;
    let tz = api::project_tz(&p.timezone);
    let base = format!("/p/{}/s/{}", p.name, s.name);
    let live = format!("{base}/charts?range={}&detail={}", view.range.0, detail.word());
    Ok(html! {
        h1 { (s.name) " · " (detail.label(w)) }
        nav.details aria-label=(w.nav_details) {
            a href={ (base) (view.link(view.range.0, view.end, view.sort, None)) } { "← " (w.overview) }
            @for d in Detail::ALL {
                a href={ (base) (view.link(view.range.0, view.end, view.sort, Some(d))) } aria-current=[(d == detail).then_some("page")] { (d.label(w)) }
            }
        }
        section.charts {
            (range_nav(w, view, &base, &tz))
            div #charts .details data-live=[view.end.is_none().then_some(live)] { (charts) }
        }
    })
}

/// The range selector: ◀ one range back, the ranges, ▶ one range forward and "now" (or "live"),
/// and the times shown.
fn range_nav(w: &Words, view: &View, base: &str, tz: &jiff::tz::TimeZone) -> Markup {
    let now = now_ms();
    let end = view.end.unwrap_or(now);
    let later = end + view.range.1;
    html! {
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
            span.meta { (html::time(end - view.range.1, tz)) " – " (html::time(end, tz)) }
        }
    }
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
