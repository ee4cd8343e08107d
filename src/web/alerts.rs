//! The alert pages: a project's alert history (`/p/{project}/alerts`), searchable by server,
//! filtered by severity, state and dates, a page of [`PAGE`] at a time; and one alert
//! (`/p/{project}/alerts/{id}`) with its snapshot, the server's charts 5 minutes either side of
//! its start, the processes when it fired, its notifications and their delivery (for the roles
//! that see contacts) and its acknowledgements — with the form that adds one while it fires.
//!
//! The form posts to `/p/{project}/alerts/{id}/acks` and is recorded by
//! [`api::acknowledge_alert`], the API's own acknowledgement; the session's form token and the
//! request's `Origin` are checked first ([`Signed::form_allowed`]).

use std::collections::HashMap;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::html::{self, Place, layout};
use super::pages::failed;
use super::server::{Graph, Span, bad, graphs};
use super::words::{Words, fill};
use super::{Signed, WebState, page};
use crate::api::{self, AlertOf, ApiError, MAX_NOTE_CHARS};
use crate::clock::now_ms;
use crate::config::model::Project;
use crate::config::raw::Severity;
use crate::store::{AlertFilter, AlertRow, AlertStatus, Resolution};

/// Alerts on one page of the history.
const PAGE: u32 = 50;
/// The processes an alert page lists before "view all".
const TOP_PROCESSES: usize = 10;
/// How far either side of an alert's start its charts reach.
const AROUND_MS: i64 = 5 * 60_000;
/// The largest acknowledgement form body: the note's 2 000 characters of up to 4 bytes,
/// percent-encoded, and the form token.
pub const FORM_BYTES: usize = 32 * 1024;

/// The history page's query, checked.
struct ListQuery {
    server: Option<String>,
    severity: Option<Severity>,
    status: Option<AlertStatus>,
    from: Option<jiff::civil::Date>,
    to: Option<jiff::civil::Date>,
    page: u32,
}

const LIST_PARAMS: &[&str] = &["server", "severity", "status", "from", "to", "page"];

impl ListQuery {
    fn parse(query: &HashMap<String, String>) -> Result<ListQuery, String> {
        for name in query.keys() {
            if !LIST_PARAMS.contains(&name.as_str()) {
                return Err(format!("unknown query parameter `{name}` (expected {})", LIST_PARAMS.join(", ")));
            }
        }
        let get = |name: &str| query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let server = match get("server") {
            None => None,
            Some(s) if s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => Some(s.to_ascii_lowercase()),
            Some(s) => return Err(format!("invalid `server`: `{s}` is not a server name (letters, digits and `-`, at most 63)")),
        };
        let word = |name: &str, words: &[&str]| -> Result<Option<String>, String> {
            match get(name) {
                None => Ok(None),
                Some(w) if words.contains(&w) => Ok(Some(w.to_string())),
                Some(w) => Err(format!("invalid `{name}`: `{w}` is not one of {}", words.join(", "))),
            }
        };
        let severity = word("severity", &["warning", "fatal"])?.map(|w| if w == "fatal" { Severity::Fatal } else { Severity::Warning });
        let status =
            word("status", &["firing", "resolved"])?.map(|w| if w == "firing" { AlertStatus::Firing } else { AlertStatus::Resolved });
        let date = |name: &str| -> Result<Option<jiff::civil::Date>, String> {
            get(name)
                .map(|d| d.parse::<jiff::civil::Date>().map_err(|_| format!("invalid `{name}`: `{d}` is not a date like 2026-03-05")))
                .transpose()
        };
        let (from, to) = (date("from")?, date("to")?);
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            return Err(format!("invalid range: `to` ({to}) is before `from` ({from})"));
        }
        let page = match get("page") {
            None => 1,
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|p| (1..=100_000).contains(p))
                .ok_or_else(|| format!("invalid `page`: `{p}` is not a page number"))?,
        };
        Ok(ListQuery { server, severity, status, from, to, page })
    }

    /// The store's filter for this page (one alert more than a page, to know whether there is
    /// an older page), with dates as whole days in `tz`.
    fn filter(&self, project: &Project, tz: &jiff::tz::TimeZone) -> AlertFilter {
        let start = |d: jiff::civil::Date| d.to_zoned(tz.clone()).ok().map(|z| z.timestamp().as_millisecond());
        AlertFilter {
            project: Some(project.name.clone()),
            status: self.status,
            severity: self.severity,
            server: self.server.clone(),
            from_ms: self.from.and_then(start),
            to_ms: self.to.and_then(|d| d.tomorrow().ok()).and_then(start).map(|ms| ms - 1),
            limit: PAGE + 1,
            offset: (self.page - 1) * PAGE,
        }
    }

    /// This query's address on page `page`.
    fn href(&self, project: &str, page: u32) -> String {
        let mut q = Vec::new();
        if let Some(s) = &self.server {
            q.push(format!("server={s}"));
        }
        if let Some(s) = self.severity {
            q.push(format!("severity={s}"));
        }
        if let Some(s) = self.status {
            q.push(format!("status={s}"));
        }
        if let Some(d) = self.from {
            q.push(format!("from={d}"));
        }
        if let Some(d) = self.to {
            q.push(format!("to={d}"));
        }
        if page > 1 {
            q.push(format!("page={page}"));
        }
        if q.is_empty() { format!("/p/{project}/alerts") } else { format!("/p/{project}/alerts?{}", q.join("&")) }
    }
}

/// `GET /p/{project}/alerts`.
pub async fn list(
    State(state): State<WebState>,
    signed: Signed,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok((p, _)) = signed.access.project(&project) else { return html::missing(&signed) };
    let query = match ListQuery::parse(&query) {
        Ok(q) => q,
        Err(message) => return bad(message, &signed),
    };
    let tz = api::project_tz(&p.timezone);
    let mut rows = match state.api.store.list_alerts(&query.filter(p, &tz)).await {
        Ok(rows) => rows,
        Err(e) => return failed(ApiError::from(e), &signed),
    };
    let older = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let w = signed.w;
    let body = history(w, p, &query, &rows, older, &tz);
    page(StatusCode::OK, layout(w, &format!("{} · {}", w.alerts, p.name), Some(&signed), Some(&Place::Project(p, "/alerts")), body))
}

fn history(w: &Words, p: &Project, query: &ListQuery, rows: &[AlertRow], older: bool, tz: &jiff::tz::TimeZone) -> Markup {
    let filtered =
        query.server.is_some() || query.severity.is_some() || query.status.is_some() || query.from.is_some() || query.to.is_some();
    let selected = |current: Option<&str>, word: &str| current == Some(word);
    let severity = query.severity.map(|s| s.as_str());
    let status = query.status.map(|s| s.as_str());
    html! {
        h1 { (w.alerts) }
        form.filters method="get" action={ "/p/" (p.name) "/alerts" } {
            label { (w.server) " " input name="server" list="servers" value=[query.server.as_deref()] placeholder=(w.any) size="14"; }
            datalist #servers { @for name in p.servers.keys() { option value=(name) {} } }
            label { (w.severity) " "
                select name="severity" {
                    option value="" { (w.any) }
                    @for word in ["warning", "fatal"] { option value=(word) selected[selected(severity, word)] { (w.word(word)) } }
                }
            }
            label { (w.state) " "
                select name="status" {
                    option value="" { (w.any) }
                    @for word in ["firing", "resolved"] { option value=(word) selected[selected(status, word)] { (w.word(word)) } }
                }
            }
            label { (w.from) " " input type="date" name="from" value=[query.from.map(|d| d.to_string())]; }
            label { (w.to) " " input type="date" name="to" value=[query.to.map(|d| d.to_string())]; }
            button type="submit" { (w.apply) }
            @if filtered { a href={ "/p/" (p.name) "/alerts" } { (w.clear) } }
        }
        p.meta { (fill(w.alerts_meta, &[&p.timezone])) }
        @if rows.is_empty() {
            p.empty { @if filtered { (w.no_alert_matches) } @else { (w.no_alerts_yet) } }
        } @else {
            div.scroll {
                table.alerts.history {
                    thead { tr {
                        th { (w.started) } th { (w.severity) } th { (w.server) } th { (w.description) }
                        th title=(w.snapshot_title) { (w.snapshot) }
                        th { (w.state) }
                    } }
                    tbody {
                        @for a in rows { (history_row(w, p, a, tz)) }
                    }
                }
            }
        }
        nav.pager aria-label=(w.nav_pages) {
            @if query.page > 1 { a rel="prev" href=(query.href(&p.name, query.page - 1)) { (w.newer) } }
            span.meta { (fill(w.page_n, &[&query.page])) }
            @if older { a rel="next" href=(query.href(&p.name, query.page + 1)) { (w.older) } }
        }
    }
}

fn history_row(w: &Words, p: &Project, a: &AlertRow, tz: &jiff::tz::TimeZone) -> Markup {
    let s = &a.snapshot;
    let link = format!("/p/{}/alerts/{}", p.name, a.id);
    html! {
        tr data-alert=(a.id) data-severity=(a.severity.as_str()) data-status=(a.status.as_str()) {
            td { a href=(link) { (html::time(a.started_at_ms, tz)) } }
            td { span class={ "sev " (a.severity.as_str()) } { (w.severity(a.severity)) } }
            td { (server_cell(p, a)) }
            td { a href=(link) { (a.message) } }
            td.snap {
                @if snapshot_empty(s) {
                    span.meta { "–" }
                } @else {
                    span title="CPU" { "CPU " (html::num(number(s, &["cpu", "usage"]), " %")) }
                    span title=(w.memory_word) { (w.mem_short) " " (html::num(number(s, &["memory", "usage"]), " %")) }
                    span title=(w.fullest_disk) { (w.disk_word) " " (html::num(largest(s, "disk", "usage"), " %")) }
                    span title=(w.busiest_interface) {
                        (w.net_short) " " (html::bps(largest(s, "network", "in_bps"))) " / " (html::bps(largest(s, "network", "out_bps")))
                    }
                }
            }
            td { (state_badges(w, a, tz)) }
        }
    }
}

/// The alert's server, linked to its page while the configuration has it; the host for an alert
/// on no server.
fn server_cell(p: &Project, a: &AlertRow) -> Markup {
    html! {
        @if a.key.server.is_empty() {
            span.meta { (a.host) }
        } @else if p.servers.contains_key(&a.key.server) {
            a href={ "/p/" (p.name) "/s/" (a.key.server) } { (a.key.server) }
        } @else {
            (a.key.server)
        }
    }
}

fn state_badges(w: &Words, a: &AlertRow, tz: &jiff::tz::TimeZone) -> Markup {
    html! {
        span class={ "status " (a.status.as_str()) } { (w.word(a.status.as_str())) }
        @if let Some(at) = a.resolved_at_ms { " " span.meta { (html::time(at, tz)) } }
        @if a.acknowledged_at_ms.is_some() { " " span.ack { (w.acknowledged) } }
        @if a.flapping {
            " " span.flapping title=(w.flapping_title) { (w.flapping) }
        }
    }
}

/// The number at `path` in a snapshot.
fn number(snapshot: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(snapshot, |v, key| v.get(key)).and_then(Value::as_f64)
}

/// The largest of a snapshot's per-subject values `group.name` (the fullest mount, the busiest
/// interface).
fn largest(snapshot: &Value, group: &str, name: &str) -> Option<f64> {
    snapshot.get(group)?.get(name)?.as_object()?.values().filter_map(Value::as_f64).reduce(f64::max)
}

/// Port checks and down-checks have no host report to keep.
fn snapshot_empty(snapshot: &Value) -> bool {
    snapshot.as_object().is_none_or(|o| o.is_empty())
}

/// `GET /p/{project}/alerts/{id}` (`?processes=all` lists every process).
pub async fn page_of(
    State(state): State<WebState>,
    signed: Signed,
    Path((project, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(name) = query.keys().find(|k| k.as_str() != "processes") {
        return bad(format!("unknown query parameter `{name}` (expected processes)"), &signed);
    }
    let all = match query.get("processes").map(String::as_str) {
        None | Some("") => false,
        Some("all") => true,
        Some(other) => return bad(format!("invalid `processes`: `{other}` is not `all`"), &signed),
    };
    alert_page(&state, &signed, &project, &id, all, StatusCode::OK, None).await
}

/// What the acknowledgement form says after a refused post: the message, and the note to keep
/// in the field.
struct FormError {
    message: String,
    note: String,
}

async fn alert_page(
    state: &WebState,
    signed: &Signed,
    project: &str,
    id: &str,
    all_processes: bool,
    status: StatusCode,
    error: Option<FormError>,
) -> Response {
    let alert = match api::alert_of(&state.api, &signed.access, project, id).await {
        Ok(a) => a,
        Err(e) => return failed(e, signed),
    };
    let p = alert.project;
    match render(state, signed, &alert, all_processes, error.as_ref()).await {
        Ok(body) => page(
            status,
            layout(signed.w, &fill(signed.w.alert_n, &[&alert.row.id]), Some(signed), Some(&Place::Project(p, "/alerts")), body),
        ),
        Err(e) => failed(e, signed),
    }
}

async fn render(
    state: &WebState,
    signed: &Signed,
    alert: &AlertOf<'_>,
    all_processes: bool,
    error: Option<&FormError>,
) -> Result<Markup, ApiError> {
    let (p, a) = (alert.project, &alert.row);
    let w = signed.w;
    let tz = api::project_tz(&p.timezone);
    let charts = if a.key.server.is_empty() { None } else { Some(around(state, w, p, a).await?) };
    let base = format!("/p/{}/alerts/{}", p.name, a.id);
    Ok(html! {
        p.crumbs { a href={ "/p/" (p.name) "/alerts" } { (fill(w.all_alerts_of_project, &[&p.name])) } }
        h1 { span class={ "sev " (a.severity.as_str()) } { (w.severity(a.severity)) } " " (a.message) }
        section.info {
            dl.overview {
                dt { (w.state) } dd { (state_badges(w, a, &tz)) }
                dt { (w.severity) } dd { span class={ "sev " (a.severity.as_str()) } { (w.severity(a.severity)) } }
                dt { (w.server) } dd { (server_cell(p, a)) }
                dt { (w.host) } dd { (a.host) }
                dt { (w.rule) } dd { code { (a.key.rule) } @if !a.key.subject.is_empty() { " " (a.key.subject) } }
                dt { (w.started) } dd { (html::time(a.started_at_ms, &tz)) }
                @if let Some(at) = a.resolved_at_ms {
                    dt { (w.resolved_at) } dd { (html::time(at, &tz)) @if let Some(r) = &a.resolve_reason { " (" (r) ")" } }
                }
                dt { (w.duration) } dd { (duration(w, a.resolved_at_ms.unwrap_or_else(now_ms) - a.started_at_ms)) @if a.resolved_at_ms.is_none() { (w.so_far) } }
            }
            (snapshot_list(w, &a.snapshot))
        }
        @if let Some(charts) = charts {
            section.charts {
                h2 { (w.around_start) " " span.meta { (w.around_meta) } }
                div.grid { (charts) }
            }
        }
        (processes(w, &a.snapshot, all_processes, &base))
        (notifications(w, alert, &tz))
        (acknowledgements(signed, alert, &tz, &base, error))
    })
}

/// The server's charts from 5 minutes before the alert's start to 5 minutes after, the start
/// marked in the severity's colour. Raw samples while they are kept (6 h), then 5-minute
/// rollups.
async fn around(state: &WebState, w: &Words, p: &Project, a: &AlertRow) -> Result<Markup, ApiError> {
    const WHICH: &[Graph] = &[Graph::Cpu, Graph::Memory, Graph::DiskUsage, Graph::Network];
    let (from_ms, to_ms) = (a.started_at_ms - AROUND_MS, a.started_at_ms + AROUND_MS);
    let tz = api::project_tz(&p.timezone);
    let label = format!(
        "{} {}",
        w.severity(a.severity),
        api::zoned(a.started_at_ms, &tz).map(|z| z.strftime("%H:%M:%S").to_string()).unwrap_or_default()
    );
    let marks = [(a.started_at_ms, a.severity.as_str(), label.as_str())];
    let raw = state.api.store.metric_series(&p.name, &a.key.server, "cpu.usage", None, from_ms, to_ms, Resolution::Raw).await?;
    let resolution = if raw.is_empty() { Resolution::FiveMinutes } else { Resolution::Raw };
    graphs(state, w, p, &a.key.server, WHICH, Span { from_ms, to_ms, resolution }, &marks, None).await
}

fn snapshot_list(w: &Words, s: &Value) -> Markup {
    let per = |group: &str, name: &str| -> Vec<(String, f64)> {
        let Some(map) = s.get(group).and_then(|g| g.get(name)).and_then(Value::as_object) else { return Vec::new() };
        map.iter().filter_map(|(k, v)| Some((k.clone(), v.as_f64()?))).collect()
    };
    html! {
        @if snapshot_empty(s) {
            dl.snapshot { dt { (w.snapshot) } dd.meta { (w.no_snapshot) } }
        } @else {
            dl.snapshot aria-label=(w.snapshot_at_firing) {
                dt { (w.cpu) } dd {
                    @if let Some(cpu) = number(s, &["cpu", "usage"]) {
                        (html::num(Some(cpu), " %"))
                        span.meta { " iowait " (html::num(number(s, &["cpu", "iowait"]), " %")) ", steal " (html::num(number(s, &["cpu", "steal"]), " %")) }
                    } @else {
                        span.meta { (w.no_cpu_yet) }
                    }
                }
                dt { (w.load) } dd { (html::num(number(s, &["load", "1"]), "")) " " (html::num(number(s, &["load", "5"]), "")) " " (html::num(number(s, &["load", "15"]), "")) }
                dt { (w.memory) } dd { (html::num(number(s, &["memory", "usage"]), " %"))
                    span.meta { " " (w.swap) " " (html::num(number(s, &["memory", "swap_usage"]), " %")) } }
                @for (mount, v) in per("disk", "usage") { dt { (fill(w.disk_of, &[&mount])) } dd { (html::num(Some(v), " %")) } }
                @for (device, v) in per("disk", "io") { dt { (fill(w.io_of, &[&device])) } dd { (html::num(Some(v), w.busy_pct)) } }
                @let out = per("network", "out_bps");
                @for (iface, v) in per("network", "in_bps") {
                    dt { (fill(w.net_of, &[&iface])) }
                    dd { (w.in_word) " " (html::bps(Some(v))) ", " (w.out_word) " " (html::bps(out.iter().find(|(i, _)| *i == iface).map(|(_, v)| *v))) }
                }
            }
        }
    }
}

/// The processes of the snapshot, busiest CPU first: the top ten, or all with `?processes=all`.
/// Snapshots from before every process was kept have only the top five by CPU.
fn processes(w: &Words, s: &Value, all: bool, base: &str) -> Markup {
    let list = s.get("processes").or_else(|| s.get("top_processes").and_then(|t| t.get("cpu"))).and_then(Value::as_array);
    let Some(list) = list.filter(|l| !l.is_empty()) else { return html! {} };
    let shown = if all { list.len() } else { list.len().min(TOP_PROCESSES) };
    html! {
        section #processes {
            h2 { (w.processes_at_firing) " " span.meta { (fill(w.n_busiest_first, &[&list.len()])) } }
            table.processes {
                thead { tr { th { (w.name) } th { (w.pid) } th { (w.user) } th { (w.col_cpu) } th { (w.memory_pct) } th { (w.rss) } } }
                tbody {
                    @for proc in &list[..shown] {
                        tr {
                            td { (proc["name"].as_str().unwrap_or("")) }
                            td { (proc["pid"]) }
                            td { (proc["user"].as_str().unwrap_or("")) }
                            td { (html::num(proc["cpu"].as_f64(), "")) }
                            td { (html::num(proc["memory"].as_f64(), "")) }
                            td { (html::bytes(proc["rss_bytes"].as_u64())) }
                        }
                    }
                }
            }
            @if shown < list.len() {
                p { a href={ (base) "?processes=all#processes" } { (fill(w.view_all_processes, &[&list.len()])) } }
            } @else if all && list.len() > TOP_PROCESSES {
                p { a href={ (base) "#processes" } { (fill(w.show_top, &[&TOP_PROCESSES])) } }
            }
        }
    }
}

fn notifications(w: &Words, alert: &AlertOf, tz: &jiff::tz::TimeZone) -> Markup {
    html! {
        section #notifications {
            h2 { (w.notifications) }
            @match &alert.notifications {
                None => p.meta { (w.notifications_hidden) },
                Some(list) if list.is_empty() => p.meta { (w.none_sent) },
                Some(list) => {
                    table.notifications {
                        thead { tr { th { (w.created) } th { (w.kind) } th { (w.medium) } th { (w.channel) } th { (w.recipient) } th { (w.delivery) } th { (w.attempts) } } }
                        tbody {
                            @for (n, attempts) in list {
                                tr data-status=(n.status.as_str()) {
                                    td { (html::time(n.created_ms, tz)) }
                                    td { (w.word(n.kind.as_str())) }
                                    td { (n.medium.as_str()) }
                                    td { (n.channel) }
                                    td { (n.recipient) }
                                    td {
                                        span class={ "delivery " (n.status.as_str()) } { (w.word(n.status.as_str())) }
                                        @if let Some(at) = n.sent_ms { " " span.meta { (html::time(at, tz)) } }
                                        @if let Some(at) = n.read_ms { div.read { (w.read_at) " " span.meta { (html::time(at, tz)) } } }
                                        @if let Some(r) = &n.reason { div.meta { (r) } }
                                        @if let Some(e) = &n.last_error { div.error { (e) } }
                                    }
                                    td {
                                        (attempts.len())
                                        @if !attempts.is_empty() {
                                            ol.attempts {
                                                @for t in attempts {
                                                    li { (html::time(t.at_ms, tz)) " " @if t.ok { (w.attempt_ok) } @else { span.error { (t.error.as_deref().unwrap_or(w.failed)) } } }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn acknowledgements(signed: &Signed, alert: &AlertOf, tz: &jiff::tz::TimeZone, base: &str, error: Option<&FormError>) -> Markup {
    let firing = alert.row.status == AlertStatus::Firing;
    let w = signed.w;
    html! {
        section #acks {
            h2 { (w.acknowledgements) }
            @if alert.acks.is_empty() {
                p.meta { (w.nobody_acknowledged) }
            } @else {
                ol.acks {
                    @for ack in &alert.acks {
                        li { span.meta { (html::time(ack.at_ms, tz)) " · " (ack.by) } p.note { (ack.note) } }
                    }
                }
            }
            @if let Some(e) = error { p.error role="alert" { (e.message) } }
            @if firing {
                form.ack method="post" action={ (base) "/acks" } {
                    input type="hidden" name="csrf" value=(signed.csrf);
                    label for="note" { (w.note) " " span.meta { (fill(w.note_hint, &[&MAX_NOTE_CHARS])) } }
                    textarea #note name="note" rows="3" maxlength=(MAX_NOTE_CHARS) required {
                        @if let Some(e) = error { (e.note) }
                    }
                    button type="submit" { (w.acknowledge) }
                }
            } @else {
                p.meta { (w.no_more_notes) }
            }
        }
    }
}

/// `3 h 12 min`, `4 min 5 s` (`3시간 12분`).
fn duration(w: &Words, ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (big, big_unit, small, small_unit) = match s {
        0..60 => return format!("{s}{}", w.unit_s),
        60..3600 => (s / 60, w.unit_min, s % 60, w.unit_s),
        3600..86_400 => (s / 3600, w.unit_h, s % 3600 / 60, w.unit_min),
        _ => (s / 86_400, w.unit_d, s % 86_400 / 3600, w.unit_h),
    };
    format!("{big}{big_unit} {small}{small_unit}")
}

#[derive(Deserialize)]
pub struct AckForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    note: String,
}

/// `POST /p/{project}/alerts/{id}/acks`: the form's note, recorded by the API's acknowledgement.
/// Without the session's form token, or from another origin, 403 and nothing is recorded.
/// Recorded: back to the alert page (303). Refused (a resolved alert, an empty or too long
/// note): the alert page again with the reason, under the API's status (409, 400).
pub async fn acknowledge(
    State(state): State<WebState>,
    signed: Signed,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
    form: Result<Form<AckForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.ok().map(|Form(f)| f);
    let presented = form.as_ref().and_then(|f| f.csrf.as_deref());
    if !signed.form_allowed(&headers, state.public_origin.as_deref(), presented) {
        tracing::warn!(project = %project, alert = %id, by = %signed.access.who(), "acknowledgement form refused: no valid form token or another origin");
        return forbidden(&signed);
    }
    let note = form.map(|f| f.note).unwrap_or_default();
    match api::acknowledge_alert(&state.api, &signed.access, &project, &id, &note).await {
        Ok(_) => Redirect::to(&format!("/p/{project}/alerts/{id}#acks")).into_response(),
        Err(e) if e.status() == StatusCode::NOT_FOUND => html::missing(&signed),
        Err(e) if e.status() == StatusCode::CONFLICT || e.status() == StatusCode::BAD_REQUEST => {
            let error = FormError { message: form_message(signed.w, &e), note };
            alert_page(&state, &signed, &project, &id, false, e.status(), Some(error)).await
        }
        Err(e) => failed(e, &signed),
    }
}

/// The API's refusal, as the form's reader needs it.
fn form_message(w: &Words, e: &ApiError) -> String {
    if e.status() == StatusCode::CONFLICT {
        w.note_after_resolve.to_string()
    } else {
        fill(w.note_not_recorded, &[&e.message().replace('`', "")])
    }
}

fn forbidden(signed: &Signed) -> Response {
    let w = signed.w;
    let body = html! {
        section {
            h1 { (w.form_refused) }
            p.error { (w.form_refused_text) }
            p { (w.form_refused_hint) }
        }
    };
    page(StatusCode::FORBIDDEN, layout(w, w.form_refused, Some(signed), None, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<ListQuery, String> {
        ListQuery::parse(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn the_history_query_is_checked_and_its_dates_are_whole_local_days() {
        let q = query(&[("server", "web-01"), ("severity", "fatal"), ("from", "2026-03-05"), ("to", "2026-03-05"), ("page", "2")]).unwrap();
        let seoul = jiff::tz::TimeZone::get("Asia/Seoul").unwrap();
        let project = Project { name: "shop".into(), ..Project::default() };
        let f = q.filter(&project, &seoul);
        // 2026-03-05 00:00 in Seoul is 2026-03-04 15:00 UTC; the day ends a millisecond before the next.
        assert_eq!(f.from_ms, Some(1_772_636_400_000));
        assert_eq!(f.to_ms, Some(1_772_636_400_000 + 86_400_000 - 1));
        assert_eq!((f.limit, f.offset, f.severity, f.server.as_deref()), (PAGE + 1, PAGE, Some(Severity::Fatal), Some("web-01")));
        assert_eq!(q.href("shop", 3), "/p/shop/alerts?server=web-01&severity=fatal&from=2026-03-05&to=2026-03-05&page=3");
        assert_eq!(query(&[("severity", "")]).unwrap().href("shop", 1), "/p/shop/alerts");

        for (pairs, error) in [
            (&[("severity", "critical")][..], "invalid `severity`: `critical` is not one of warning, fatal"),
            (&[("from", "05/03/2026")], "invalid `from`: `05/03/2026` is not a date like 2026-03-05"),
            (&[("from", "2026-03-06"), ("to", "2026-03-05")], "invalid range: `to` (2026-03-05) is before `from` (2026-03-06)"),
            (&[("page", "0")], "invalid `page`: `0` is not a page number"),
            (&[("server", "web 01<")], "invalid `server`: `web 01<` is not a server name (letters, digits and `-`, at most 63)"),
            (&[("sort", "x")], "unknown query parameter `sort` (expected server, severity, status, from, to, page)"),
        ] {
            assert_eq!(query(pairs).err().as_deref(), Some(error));
        }
    }

    #[test]
    fn durations_read_in_the_two_largest_units() {
        use super::super::words::{EN, KO};
        assert_eq!(duration(&EN, 42_000), "42 s");
        assert_eq!(duration(&EN, 245_000), "4 min 5 s");
        assert_eq!(duration(&EN, 3 * 3_600_000 + 12 * 60_000), "3 h 12 min");
        assert_eq!(duration(&EN, 2 * 86_400_000 + 3_600_000), "2 d 1 h");
        assert_eq!(duration(&KO, 3 * 3_600_000 + 12 * 60_000), "3시간 12분");
        assert_eq!(duration(&KO, 42_000), "42초");
    }
}
