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
use crate::collect::live::ServerLive;
use crate::config::model::{PolicyRef, Project, Server};
use crate::config::raw::Os;
use crate::protocol::{MetricValue, Report};

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

/// A metric over the subjects that have it: the machine as a whole and the worst subject.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AllMax {
    pub all: Option<f64>,
    pub max: Option<f64>,
}

/// Running figures over the subjects of a metric: how many, their sum and the largest.
#[derive(Debug, Clone, Copy, Default)]
struct Over {
    n: u32,
    sum: f64,
    max: Option<f64>,
}

impl Over {
    fn add(&mut self, value: f64) {
        self.n += 1;
        self.sum += value;
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
    }

    /// `all` is the sum over the subjects.
    fn total(self) -> AllMax {
        AllMax { all: (self.n > 0).then_some(self.sum), max: self.max }
    }

    /// `all` is the mean over the subjects.
    fn mean(self) -> AllMax {
        AllMax { all: (self.n > 0).then(|| self.sum / f64::from(self.n)), max: self.max }
    }
}

/// Per subject, the sum of two metrics (in + out, read + write).
#[derive(Debug, Default)]
struct PairSums<'a>(Vec<(&'a str, f64)>);

impl<'a> PairSums<'a> {
    fn add(&mut self, subject: &'a str, value: f64) {
        match self.0.iter_mut().find(|(s, _)| *s == subject) {
            Some((_, total)) => *total += value,
            None => self.0.push((subject, value)),
        }
    }

    fn over(&self) -> Over {
        let mut over = Over::default();
        for (_, v) in &self.0 {
            over.add(*v);
        }
        over
    }
}

/// The list's columns computed from one report, in one pass over its values.
#[derive(Debug, Clone, Copy)]
struct Columns {
    cpu: Option<f64>,
    memory: Option<f64>,
    /// `all`: used over size of every mount together (df's arithmetic); `max`: the fullest mount.
    disk: AllMax,
    /// In + out, bits per second: `all` over every interface, `max` the busiest.
    network: AllMax,
    /// Busy %: `all` the mean over devices, `max` the busiest.
    disk_io: AllMax,
    /// `all` the sum over devices, `max` the busiest.
    disk_iops: AllMax,
    /// Read + write, bytes per second: `all` the sum over devices, `max` the busiest.
    disk_bps: AllMax,
    /// Received and sent, bits per second, summed over interfaces.
    rx: Option<f64>,
    tx: Option<f64>,
}

impl Columns {
    /// Every request computes these for the rows it shows: one pass, no allocation but for
    /// devices and interfaces. A value that does not fit its metric (a subject on `cpu.usage`,
    /// none on `disk.io`) counts for nothing, as in [`fits`].
    fn of(report: &Report) -> Columns {
        let (mut cpu, mut memory) = (None, None);
        let (mut used, mut free, mut usage) = (0.0, 0.0, Over::default());
        let (mut io, mut iops) = (Over::default(), Over::default());
        let (mut network, mut disk_bps) = (PairSums::default(), PairSums::default());
        let (mut rx, mut tx) = (Over::default(), Over::default());
        for m in &report.metrics {
            match (m.name, m.subject.as_deref()) {
                ("cpu.usage", None) => cpu = Some(m.value),
                ("memory.usage", None) => memory = Some(m.value),
                ("disk.usage", Some(_)) => usage.add(m.value),
                ("disk.used_bytes", Some(_)) => used += m.value,
                ("disk.free_bytes", Some(_)) => free += m.value,
                ("disk.io", Some(_)) => io.add(m.value),
                ("disk.iops", Some(_)) => iops.add(m.value),
                ("disk.read_bps" | "disk.write_bps", Some(s)) => disk_bps.add(s, m.value),
                ("network.in_bps", Some(s)) => {
                    network.add(s, m.value);
                    rx.add(m.value);
                }
                ("network.out_bps", Some(s)) => {
                    network.add(s, m.value);
                    tx.add(m.value);
                }
                _ => {}
            }
        }
        // node_exporter gives the percentage per mount but no byte counts: no `all` then.
        let space = used + free;
        Columns {
            cpu,
            memory,
            disk: AllMax { all: (space > 0.0).then(|| used * 100.0 / space), max: usage.max },
            network: network.over().total(),
            disk_io: io.mean(),
            disk_iops: iops.total(),
            disk_bps: disk_bps.over().total(),
            rx: rx.total().all,
            tx: tx.total().all,
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
/// state and columns as the server list; one read of the firing alerts for all of them.
pub async fn cells<'a>(state: &ApiState, projects: &[&'a Project]) -> Result<Vec<Cell<'a>>, ApiError> {
    let mut firing: HashMap<(String, String), Firing> = HashMap::new();
    for alert in super::projects::firing_alerts(&state.store, None).await? {
        if !alert.key.server.is_empty() {
            firing.entry((alert.key.project, alert.key.server)).or_default().add(alert.severity);
        }
    }
    let now = now_ms();
    let mut cells = Vec::with_capacity(projects.iter().map(|p| p.servers.len()).sum());
    for p in projects {
        let live = state.live.project(&p.name);
        let key = &mut (p.name.clone(), String::new());
        for s in p.servers.values() {
            key.1.clone_from(&s.name);
            let report = live.get(&s.name);
            let columns = report.map(|l| Columns::of(&l.report));
            let reporting = report.is_some_and(|l| now - l.received_ms <= REPORTING_WINDOW_MS);
            let state = match ServerState::of(s, firing.get(key).copied().unwrap_or_default()) {
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
