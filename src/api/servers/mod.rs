//! `/api/v1/projects/{p}/servers` (the server list's columns, paged), `/servers/{s}` (one
//! server: configuration, facts, latest values, processes, alerts) and `/servers/{s}/metrics`
//! (one metric's series at the resolution its range calls for).
//!
//! The live columns come from the newest report in [`crate::collect::live::LiveServers`]; a server that never reported
//! shows them as `null`. The state stays what the alerts say (a silent server is `no_data` only
//! through its policy's `nodata` alert), and `reporting` tells whether reports still arrive.

mod detail;
mod list;
mod series;

use std::cmp::Ordering;
use std::net::IpAddr;

use serde::Serialize;

use std::collections::HashMap;

use super::projects::Firing;
use super::{ApiError, ApiState, rfc3339};
use crate::catalog::{self, Per};
use crate::clock::now_ms;
pub use crate::collect::columns::{AllMax, Columns};
use crate::collect::live::ServerLive;
use crate::config::model::{PolicyRef, Project, Server};
use crate::config::raw::Os;
use crate::protocol::MetricValue;

pub use detail::{ProcessItems, Processes, RECENT_ALERTS, detail, server_alerts};
pub use list::{SORTS, ServerPage, ServerQuery, list, server_page};
pub use series::metrics;

/// A server whose newest report arrived longer ago than this is not `reporting`: three
/// intervals of a node_exporter scrape or a slow agent (10 s), six of the agent's default 5 s.
const REPORTING_WINDOW_MS: i64 = 30_000;

/// What `name` has one value per (every stored name is in the catalog).
fn per(name: &str) -> Per {
    catalog::lookup(name).map_or(Per::Host, |m| m.per)
}

/// Whether `m` has a subject exactly when its metric is per subject. Values that do not fit (a
/// subject on `cpu.usage`, none on `disk.io`) are left out rather than misfiled.
fn fits(m: &MetricValue) -> bool {
    (per(m.name) == Per::Host) == m.subject.is_none()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerState {
    /// Worst first, so sorting by state shows trouble on top.
    Fatal,
    Warning,
    Ok,
    Paused,
}

words!(ServerState { Fatal => "fatal", Warning => "warning", Ok => "ok", Paused => "paused" });

impl ServerState {
    fn of(server: &Server, firing: Firing) -> ServerState {
        if server.paused {
            ServerState::Paused
        } else if firing.fatal > 0 {
            ServerState::Fatal
        } else if firing.warning > 0 {
            ServerState::Warning
        } else {
            ServerState::Ok
        }
    }
}

/// One row of the server list. Configuration first, then what the newest report says (all
/// `null` for a server that never reported).
#[derive(Serialize)]
pub struct ServerView<'a> {
    pub name: &'a str,
    pub os: Os,
    pub host: &'a str,
    pub private_ip: Option<IpAddr>,
    pub tags: &'a [String],
    pub paused: bool,
    pub policy: Option<&'a PolicyRef>,
    pub depends_on: &'a [String],
    /// `paused` (grey), `fatal`, `warning` or `ok`, from the alerts firing on it.
    pub state: ServerState,
    pub alerts_firing: Firing,
    /// The operating system the agent found (`Debian GNU/Linux 12 (bookworm)`).
    pub os_name: Option<&'a str>,
    pub ips: Option<&'a [IpAddr]>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub disk_percent: Option<AllMax>,
    pub network_bps: Option<AllMax>,
    pub cpu_vendor: Option<&'a str>,
    pub ram_bytes: Option<u64>,
    /// Whole days.
    pub uptime_days: Option<u64>,
    pub disk_io_percent: Option<AllMax>,
    pub disk_iops: Option<AllMax>,
    pub disk_bps: Option<AllMax>,
    /// When serve received the newest report.
    pub last_report_at_ms: Option<i64>,
    pub last_report_at: Option<String>,
    /// A report arrived within the last [`REPORTING_WINDOW_MS`].
    pub reporting: bool,
}

impl<'a> ServerView<'a> {
    fn new(
        server: &'a Server,
        firing: Firing,
        live: Option<&'a ServerLive>,
        columns: Option<&Columns>,
        now_ms: i64,
        tz: &jiff::tz::TimeZone,
    ) -> Self {
        let facts = live.map(|l| &l.report.facts);
        ServerView {
            name: &server.name,
            os: server.os,
            host: &server.host,
            private_ip: server.private_ip,
            tags: &server.tags,
            paused: server.paused,
            policy: server.policy.as_ref(),
            depends_on: &server.depends_on,
            state: ServerState::of(server, firing),
            alerts_firing: firing,
            os_name: facts.map(|f| f.os.as_str()),
            ips: facts.map(|f| f.ips.as_slice()),
            cpu_percent: columns.and_then(|c| c.cpu),
            memory_percent: columns.and_then(|c| c.memory),
            disk_percent: columns.map(|c| c.disk),
            network_bps: columns.map(|c| c.network),
            cpu_vendor: facts.map(|f| f.cpu_vendor.as_str()),
            ram_bytes: facts.map(|f| f.ram_total_bytes),
            uptime_days: facts.map(|f| f.uptime_secs / 86_400),
            disk_io_percent: columns.map(|c| c.disk_io),
            disk_iops: columns.map(|c| c.disk_iops),
            disk_bps: columns.map(|c| c.disk_bps),
            last_report_at_ms: live.map(|l| l.received_ms),
            last_report_at: live.and_then(|l| rfc3339(l.received_ms, tz)),
            reporting: live.is_some_and(|l| now_ms - l.received_ms <= REPORTING_WINDOW_MS),
        }
    }
}

/// How a server looks in the dashboard's compound eye: its alert state, and `nodata` for a
/// server that is not paused, has nothing firing and sends no reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    Ok,
    Warning,
    Fatal,
    Paused,
    NoData,
}

words!(CellState { Ok => "ok", Warning => "warning", Fatal => "fatal", Paused => "paused", NoData => "nodata" });

/// One server's cell: its state and five gauges — CPU %, memory %, the fullest disk %, and
/// network received and sent (bits per second over every interface).
#[derive(Debug, Clone, Copy)]
pub struct Cell<'a> {
    pub server: &'a Server,
    pub state: CellState,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub disk: Option<f64>,
    pub rx: Option<f64>,
    pub tx: Option<f64>,
}

/// The cells of every server of `projects`, project by project, each in name order. The same
/// state and columns as the server list; one read of the firing alerts for all of them. Each
/// cell is a few lookups: the figures were worked out when the report arrived.
pub async fn cells<'a>(state: &ApiState, projects: &[&'a Project]) -> Result<Vec<Cell<'a>>, ApiError> {
    let only = if let [p] = projects { Some(p.name.as_str()) } else { None };
    let alerts = super::projects::firing_alerts(&state.store, only).await?;
    let mut firing: HashMap<(&str, &str), Firing> = HashMap::new();
    for alert in &alerts {
        if !alert.key.server.is_empty() {
            firing.entry((&alert.key.project, &alert.key.server)).or_default().add(alert.severity);
        }
    }
    let now = now_ms();
    let mut cells = Vec::with_capacity(projects.iter().map(|p| p.servers.len()).sum());
    for p in projects {
        state.live.with_project(&p.name, |live| {
            for s in p.servers.values() {
                let report = live.and_then(|l| l.get(&s.name));
                let columns = report.map(|l| &l.columns);
                let reporting = report.is_some_and(|l| now - l.received_ms <= REPORTING_WINDOW_MS);
                let state = match ServerState::of(s, firing.get(&(p.name.as_str(), s.name.as_str())).copied().unwrap_or_default()) {
                    ServerState::Ok if !reporting => CellState::NoData,
                    ServerState::Ok => CellState::Ok,
                    ServerState::Warning => CellState::Warning,
                    ServerState::Fatal => CellState::Fatal,
                    ServerState::Paused => CellState::Paused,
                };
                cells.push(Cell {
                    server: s,
                    state,
                    cpu: columns.and_then(|c| c.cpu),
                    memory: columns.and_then(|c| c.memory),
                    disk: columns.and_then(|c| c.disk.max),
                    rx: columns.and_then(|c| c.rx),
                    tx: columns.and_then(|c| c.tx),
                });
            }
        });
    }
    Ok(cells)
}

/// A server of a project in scope; 404 for a name the project does not have.
fn server_of<'a>(p: &'a Project, name: &str) -> Result<&'a Server, ApiError> {
    p.servers.get(name).ok_or_else(|| ApiError::not_found(format!("server `{name}` not found in project `{}`", p.name)))
}

/// Larger first and `None` last: the order of the numeric sorts.
fn desc(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}
