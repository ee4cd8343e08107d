//! `GET /api/v1/projects/{p}/servers/{s}`: one server — configuration, facts, the latest value
//! of every metric, processes, alerts.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::super::alerts::{AlertView, with_acks};
use super::super::auth::Access;
use super::super::params::Params;
use super::super::projects::Firing;
use super::super::{ALL, ApiError, ApiState, project_tz};
use super::{Per, ServerView, desc, fits, per, server_of};
use crate::clock::now_ms;
use crate::config::raw::MetricsKind;
use crate::protocol::{Facts, MAX_PROCESSES_PER_REPORT, ProcessInfo, Report};
use crate::store::{AlertFilter, AlertRow, AlertStatus};

/// The newest value of every metric, grouped by what it is per; names as in the configuration.
#[derive(Serialize, Default)]
struct Latest<'a> {
    host: BTreeMap<&'a str, f64>,
    mounts: BTreeMap<&'a str, BTreeMap<&'a str, f64>>,
    devices: BTreeMap<&'a str, BTreeMap<&'a str, f64>>,
    interfaces: BTreeMap<&'a str, BTreeMap<&'a str, f64>>,
}

impl<'a> Latest<'a> {
    fn of(report: &'a Report) -> Self {
        let mut latest = Latest::default();
        for m in report.metrics.iter().filter(|m| fits(m)) {
            let subject = m.subject.as_deref().unwrap_or_default();
            let group = match per(m.name) {
                Per::Host => {
                    latest.host.insert(m.name, m.value);
                    continue;
                }
                Per::Mount => &mut latest.mounts,
                Per::Device => &mut latest.devices,
                Per::Interface => &mut latest.interfaces,
            };
            group.entry(subject).or_default().insert(m.name, m.value);
        }
        latest
    }
}

/// Processes with the same name together (`?sort=count`).
#[derive(Serialize)]
pub struct ProcessGroup<'a> {
    pub name: &'a str,
    /// Every process of the name on the machine (the report lists the busiest only).
    pub count: u32,
    /// Sums over the listed processes of the name.
    pub cpu: f64,
    pub memory: f64,
    pub rss_bytes: u64,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum ProcessItems<'a> {
    Each(Vec<&'a ProcessInfo>),
    ByName(Vec<ProcessGroup<'a>>),
}

#[derive(Serialize)]
pub struct Processes<'a> {
    pub sort: &'static str,
    /// Every process on the machine, listed or not.
    pub total: u64,
    pub items: ProcessItems<'a>,
}

impl<'a> Processes<'a> {
    /// The report's processes sorted by `sort` (`cpu`, `memory`, `name`, or `count`: per name),
    /// the first `limit`.
    pub fn of(report: &'a Report, sort: &'static str, limit: usize) -> Self {
        let total = report.process_counts.values().map(|&n| u64::from(n)).sum();
        let items = if sort == "count" {
            let mut groups: Vec<ProcessGroup> = report
                .process_counts
                .iter()
                .map(|(name, &count)| ProcessGroup { name, count, cpu: 0.0, memory: 0.0, rss_bytes: 0 })
                .collect();
            for p in &report.processes {
                if let Ok(i) = groups.binary_search_by(|g| g.name.cmp(p.name.as_str())) {
                    groups[i].cpu += p.cpu.unwrap_or(0.0);
                    groups[i].memory += p.memory;
                    groups[i].rss_bytes += p.rss_bytes;
                }
            }
            // From the name order of `process_counts`; the stable sort keeps it among equal counts.
            groups.sort_by_key(|g| Reverse(g.count));
            groups.truncate(limit);
            ProcessItems::ByName(groups)
        } else {
            let mut each: Vec<&ProcessInfo> = report.processes.iter().collect();
            match sort {
                "memory" => each.sort_by(|a, b| b.memory.total_cmp(&a.memory).then(a.pid.cmp(&b.pid))),
                "name" => each.sort_by(|a, b| a.name.cmp(&b.name).then(a.pid.cmp(&b.pid))),
                _ => each.sort_by(|a, b| desc(a.cpu, b.cpu).then(b.rss_bytes.cmp(&a.rss_bytes)).then(a.pid.cmp(&b.pid))),
            }
            each.truncate(limit);
            ProcessItems::Each(each)
        };
        Processes { sort, total, items }
    }
}

#[derive(Serialize)]
struct ServerDetail<'a> {
    #[serde(flatten)]
    row: ServerView<'a>,
    timezone: &'a str,
    metrics_source: MetricsKind,
    /// The node_exporter endpoint serve scrapes, for `metrics_source: node_exporter`; admins and
    /// up only, since a URL may carry credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_url: Option<&'a str>,
    facts: Option<&'a Facts>,
    /// The sample time of the newest report (the agent's clock).
    report_at_ms: Option<i64>,
    latest: Option<Latest<'a>>,
    processes: Option<Processes<'a>>,
    firing_alerts: Vec<AlertView>,
    /// The newest 20, firing or resolved.
    recent_alerts: Vec<AlertView>,
}

/// How many of a server's newest alerts its page shows.
pub const RECENT_ALERTS: u32 = 20;

/// A server's alerts, newest first: with `status` only, at most `limit` (0: all).
pub async fn server_alerts(
    state: &ApiState,
    project: &str,
    server: &str,
    status: Option<AlertStatus>,
    limit: u32,
) -> Result<Vec<AlertRow>, ApiError> {
    let filter =
        AlertFilter { project: Some(project.to_string()), server: Some(server.to_string()), status, limit, ..AlertFilter::default() };
    Ok(state.store.list_alerts(&filter).await?)
}
const DEFAULT_PROCESSES: i64 = 20;

/// `?sort=cpu|memory|name|count&limit=` for the process list.
pub async fn detail(
    State(state): State<ApiState>,
    access: Access,
    Path((project, server)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["sort", "limit"])?;
    let (p, role) = access.project(&project)?;
    let s = server_of(p, &server)?;
    let sort = params.one_of("sort", &["cpu", "memory", "name", "count"])?.unwrap_or("cpu");
    let limit = params.int("limit", 1, MAX_PROCESSES_PER_REPORT as i64)?.unwrap_or(DEFAULT_PROCESSES) as usize;
    let tz = project_tz(&p.timezone);
    let firing_rows = server_alerts(&state, &p.name, &s.name, Some(AlertStatus::Firing), ALL).await?;
    let recent_rows = server_alerts(&state, &p.name, &s.name, None, RECENT_ALERTS).await?;
    let mut firing = Firing::default();
    for row in &firing_rows {
        firing.add(row.severity);
    }
    let live = state.live.get(&p.name, &s.name);
    let report = live.as_ref().map(|l| l.report.as_ref());
    let columns = live.as_ref().map(|l| l.columns);
    let firing_alerts = with_acks(&state.store, firing_rows, &tz).await?;
    let recent_alerts = with_acks(&state.store, recent_rows, &tz).await?;
    let body = ServerDetail {
        row: ServerView::new(s, firing, live.as_deref(), columns.as_ref(), now_ms(), &tz),
        timezone: &p.timezone,
        metrics_source: s.metrics,
        metrics_url: s.metrics_url.as_deref().filter(|_| role.sees_contacts()),
        facts: report.map(|r| &r.facts),
        report_at_ms: report.map(|r| r.at_ms),
        latest: report.map(Latest::of),
        processes: report.map(|r| Processes::of(r, sort, limit)),
        firing_alerts,
        recent_alerts,
    };
    Ok(Json(body).into_response())
}
