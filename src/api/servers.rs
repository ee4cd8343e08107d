//! `/api/v1/projects/{p}/servers` (the seed's server list columns, paged), `/servers/{s}` (one
//! server: configuration, facts, latest values, processes, alerts) and `/servers/{s}/metrics`
//! (one metric's series at the resolution its range calls for).
//!
//! The live columns come from the newest report in [`crate::collect::live::LiveServers`]; a server that never reported
//! shows them as `null`. The state stays what the alerts say (a silent server is `no_data` only
//! through its policy's `nodata` alert), and `reporting` tells whether reports still arrive.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::alerts::AlertView;
use super::auth::Access;
use super::params::Params;
use super::projects::{Firing, firing_alerts};
use super::{ALL, ApiError, ApiState, project_tz, rfc3339};
use crate::agent::host::{EXTRA_METRICS, Facts, MetricValue, ProcessInfo, Report, metric_name};
use crate::clock::now_ms;
use crate::collect::live::ServerLive;
use crate::collect::wire::MAX_PROCESSES_PER_REPORT;
use crate::config::model::{METRICS, PolicyRef, Project, Server};
use crate::config::raw::{MetricsKind, Os};
use crate::store::{AlertFilter, AlertStatus, Resolution, SeriesPoint};

/// A server whose newest report arrived longer ago than this is not `reporting`: three
/// intervals of a node_exporter scrape or a slow agent (10 s), six of the agent's default 5 s.
const REPORTING_WINDOW_MS: i64 = 30_000;

/// What a metric has one value per: the host, a mount point, a block device or an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Per {
    Host,
    Mount,
    Device,
    Interface,
}

impl Per {
    /// From the metric's name, as the agent and the node_exporter reduction name them.
    fn of(metric: &str) -> Per {
        if metric.starts_with("network.") {
            Per::Interface
        } else if matches!(metric, "disk.usage" | "disk.used_bytes" | "disk.free_bytes") {
            Per::Mount
        } else if metric.starts_with("disk.") {
            Per::Device
        } else {
            Per::Host
        }
    }

    /// Whether `m` has a subject exactly when its metric is per subject. Values that do not fit
    /// (a subject on `cpu.usage`, none on `disk.io`) are left out rather than misfiled.
    fn fits(m: &MetricValue) -> bool {
        (Per::of(m.name) == Per::Host) == m.subject.is_none()
    }

    fn word(self) -> &'static str {
        match self {
            Per::Host => "host-wide",
            Per::Mount => "per mount point",
            Per::Device => "per device",
            Per::Interface => "per interface",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum ServerState {
    /// Worst first, so sorting by state shows trouble on top.
    Fatal,
    Warning,
    Ok,
    Paused,
}

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
struct AllMax {
    all: Option<f64>,
    max: Option<f64>,
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

/// The seed's list columns computed from one report, in one pass over its values.
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
}

impl Columns {
    /// Every request computes these for the rows it shows: one pass, no allocation but for
    /// devices and interfaces. A value that does not fit its metric (a subject on `cpu.usage`,
    /// none on `disk.io`) counts for nothing, as in [`Per::fits`].
    fn of(report: &Report) -> Columns {
        let (mut cpu, mut memory) = (None, None);
        let (mut used, mut free, mut usage) = (0.0, 0.0, Over::default());
        let (mut io, mut iops) = (Over::default(), Over::default());
        let (mut network, mut disk_bps) = (PairSums::default(), PairSums::default());
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
                ("network.in_bps" | "network.out_bps", Some(s)) => network.add(s, m.value),
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
        }
    }
}

/// One row of the server list. Configuration first, then what the newest report says (all
/// `null` for a server that never reported).
#[derive(Serialize)]
struct ServerView<'a> {
    name: &'a str,
    os: Os,
    host: &'a str,
    private_ip: Option<IpAddr>,
    tags: &'a [String],
    paused: bool,
    policy: Option<&'a PolicyRef>,
    depends_on: &'a [String],
    /// `paused` (grey), `fatal`, `warning` or `ok`, from the alerts firing on it.
    state: ServerState,
    alerts_firing: Firing,
    /// The operating system the agent found (`Debian GNU/Linux 12 (bookworm)`).
    os_name: Option<&'a str>,
    ips: Option<&'a [IpAddr]>,
    cpu_percent: Option<f64>,
    memory_percent: Option<f64>,
    disk_percent: Option<AllMax>,
    network_bps: Option<AllMax>,
    cpu_vendor: Option<&'a str>,
    ram_bytes: Option<u64>,
    /// Whole days.
    uptime_days: Option<u64>,
    disk_io_percent: Option<AllMax>,
    disk_iops: Option<AllMax>,
    disk_bps: Option<AllMax>,
    /// When serve received the newest report.
    last_report_at_ms: Option<i64>,
    last_report_at: Option<String>,
    /// A report arrived within the last [`REPORTING_WINDOW_MS`].
    reporting: bool,
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

/// The answer of `…/servers`, serialized straight from the rows: with 10 000 servers, building
/// a `serde_json::Value` first (and freeing it again) took most of the request's time.
#[derive(Serialize)]
struct ServerList<'a> {
    /// Servers matching the filters, of which this page is `offset..offset + limit`.
    total: usize,
    offset: usize,
    limit: usize,
    servers: Vec<ServerView<'a>>,
}

/// About the JSON of one row with every column, to size the answer's buffer once.
const ROW_BYTES: usize = 1_024;

/// `body` as JSON in a buffer of `size_hint` bytes: growing one from empty to a page of rows
/// copied it a dozen times over.
fn json_response(body: &impl Serialize, size_hint: usize) -> Response {
    let mut buf = Vec::with_capacity(size_hint.max(128));
    match serde_json::to_writer(&mut buf, body) {
        Ok(()) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], buf).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: the answer could not be written: {e}"))
            .into_response(),
    }
}

const DEFAULT_LIMIT: i64 = 1_000;
const MAX_LIMIT: i64 = 10_000;

/// Firing alerts per server of `project`.
async fn firing_by_server(state: &ApiState, project: &str) -> Result<HashMap<String, Firing>, ApiError> {
    let mut firing: HashMap<String, Firing> = HashMap::new();
    for alert in firing_alerts(&state.store, Some(project)).await? {
        if !alert.key.server.is_empty() {
            firing.entry(alert.key.server).or_default().add(alert.severity);
        }
    }
    Ok(firing)
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

/// Does `q` (lowercase) occur in the server's name or configured addresses?
fn matches_configured(s: &Server, q: &str) -> bool {
    s.name.to_lowercase().contains(q) || s.host.to_lowercase().contains(q) || s.private_ip.is_some_and(|ip| ip.to_string().contains(q))
}

/// `?tag=&q=&sort=name|state|cpu|memory|disk|network&limit=&offset=`. `q` matches the name, the
/// configured addresses and the addresses the agent reported. Numbers sort largest first with
/// servers lacking the value last (`disk` by the fullest mount, `network` by the whole machine);
/// ties keep name order.
///
/// Most requests show a page of a long list, so reports are read and columns computed for the
/// page only, unless a search or a sort needs them for every server.
pub async fn list(
    State(state): State<ApiState>,
    access: Access,
    Path(project): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["tag", "q", "sort", "limit", "offset"])?;
    let (p, _role) = access.project(&project)?;
    let tag = params.str("tag");
    let q = params.str("q").map(str::to_lowercase);
    let sort = params.one_of("sort", &["name", "state", "cpu", "memory", "disk", "network"])?.unwrap_or("name");
    let limit = params.int("limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT) as usize;
    let offset = params.int("offset", 0, i64::MAX)?.unwrap_or(0);
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let firing = firing_by_server(&state, &p.name).await?;
    let firing_of = |s: &Server| firing.get(&s.name).copied().unwrap_or_default();
    let live_of = |s: &Server| state.live.get(&p.name, &s.name);
    let matching = p.servers.values().filter(|s| tag.is_none_or(|t| s.tags.iter().any(|x| x == t))).filter(|s| {
        q.as_deref().is_none_or(|q| {
            matches_configured(s, q) || live_of(s).is_some_and(|l| l.report.facts.ips.iter().any(|ip| ip.to_string().contains(q)))
        })
    });
    let key: Option<fn(&Columns) -> Option<f64>> = match sort {
        "cpu" => Some(|c| c.cpu),
        "memory" => Some(|c| c.memory),
        "disk" => Some(|c| c.disk.max),
        "network" => Some(|c| c.network.all),
        _ => None,
    };
    // The map is ordered by name already; stable sorts keep names in order among equals. In
    // name order nothing is collected but the page.
    let (total, page): (usize, Vec<&Server>) = if let Some(key) = key {
        let mut keyed: Vec<(Option<f64>, &Server)> = matching.map(|s| (live_of(s).and_then(|l| key(&Columns::of(&l.report))), s)).collect();
        keyed.sort_by(|a, b| desc(a.0, b.0));
        (keyed.len(), keyed.into_iter().skip(offset).take(limit).map(|(_, s)| s).collect())
    } else if sort == "state" {
        let mut all: Vec<&Server> = matching.collect();
        all.sort_by_cached_key(|s| ServerState::of(s, firing_of(s)));
        (all.len(), all.into_iter().skip(offset).take(limit).collect())
    } else if tag.is_none() && q.is_none() {
        (p.servers.len(), p.servers.values().skip(offset).take(limit).collect())
    } else {
        let mut total = 0;
        let mut page = Vec::new();
        for s in matching {
            if total >= offset && page.len() < limit {
                page.push(s);
            }
            total += 1;
        }
        (total, page)
    };
    // With the newest report and the columns of each.
    let page: Vec<_> = page
        .into_iter()
        .map(|s| {
            let live = live_of(s);
            let columns = live.as_ref().map(|l| Columns::of(&l.report));
            (s, live, columns)
        })
        .collect();
    let (now, tz) = (now_ms(), project_tz(&p.timezone));
    let servers =
        page.iter().map(|(s, live, columns)| ServerView::new(s, firing_of(s), live.as_deref(), columns.as_ref(), now, &tz)).collect();
    // Serialized here, while the rows can still borrow from the configuration and the reports.
    Ok(json_response(&ServerList { total, offset, limit, servers }, ROW_BYTES * page.len()))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/servers/{s}

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
        for m in report.metrics.iter().filter(|m| Per::fits(m)) {
            let subject = m.subject.as_deref().unwrap_or_default();
            let group = match Per::of(m.name) {
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
struct ProcessGroup<'a> {
    name: &'a str,
    /// Every process of the name on the machine (the report lists the busiest only).
    count: u32,
    /// Sums over the listed processes of the name.
    cpu: f64,
    memory: f64,
    rss_bytes: u64,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ProcessItems<'a> {
    Each(Vec<&'a ProcessInfo>),
    ByName(Vec<ProcessGroup<'a>>),
}

#[derive(Serialize)]
struct Processes<'a> {
    sort: &'static str,
    /// Every process on the machine, listed or not.
    total: u64,
    items: ProcessItems<'a>,
}

impl<'a> Processes<'a> {
    fn of(report: &'a Report, sort: &'static str, limit: usize) -> Self {
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

const RECENT_ALERTS: u32 = 20;
const DEFAULT_PROCESSES: i64 = 20;

/// A server of a project in scope; 404 for a name the project does not have.
fn server_of<'a>(p: &'a Project, name: &str) -> Result<&'a Server, ApiError> {
    p.servers.get(name).ok_or_else(|| ApiError::not_found(format!("server `{name}` not found in project `{}`", p.name)))
}

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
    let filter = |status, limit| AlertFilter {
        project: Some(p.name.clone()),
        server: Some(s.name.clone()),
        status,
        limit,
        ..AlertFilter::default()
    };
    let firing_rows = state.store.list_alerts(&filter(Some(AlertStatus::Firing), ALL)).await?;
    let recent_rows = state.store.list_alerts(&filter(None, RECENT_ALERTS)).await?;
    let mut firing = Firing::default();
    for row in &firing_rows {
        firing.add(row.severity);
    }
    let live = state.live.get(&p.name, &s.name);
    let report = live.as_ref().map(|l| l.report.as_ref());
    let columns = report.map(Columns::of);
    let body = ServerDetail {
        row: ServerView::new(s, firing, live.as_deref(), columns.as_ref(), now_ms(), &tz),
        timezone: &p.timezone,
        metrics_source: s.metrics,
        metrics_url: s.metrics_url.as_deref().filter(|_| role.sees_contacts()),
        facts: report.map(|r| &r.facts),
        report_at_ms: report.map(|r| r.at_ms),
        latest: report.map(Latest::of),
        processes: report.map(|r| Processes::of(r, sort, limit)),
        firing_alerts: firing_rows.into_iter().map(|row| AlertView::new(row, &tz, false)).collect(),
        recent_alerts: recent_rows.into_iter().map(|row| AlertView::new(row, &tz, false)).collect(),
    };
    Ok(Json(body).into_response())
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/servers/{s}/metrics

/// The most points one series answer may have at the resolution asked for (27 h of raw points,
/// 69 days of 5-minute ones); a longer range needs a coarser resolution.
const MAX_POINTS: i64 = 20_000;
/// `?resolution=` words, as [`Resolution`] serializes them.
const RESOLUTIONS: [(&str, Resolution); 3] =
    [("raw", Resolution::Raw), ("five_minutes", Resolution::FiveMinutes), ("hour", Resolution::Hour)];
/// The range without `from` and `to`.
const DEFAULT_RANGE_MS: i64 = 60 * 60_000;

#[derive(Serialize)]
struct Series<'a> {
    name: &'static str,
    /// The mount, device or interface; `null` for a host-wide metric, or for the worst subject
    /// of a per-subject one at each point.
    subject: Option<&'a str>,
    resolution: Resolution,
    resolution_ms: i64,
    from_ms: i64,
    to_ms: i64,
    points: Vec<SeriesPoint>,
}

/// `?name=cpu.usage&subject=/&from=&to=&resolution=raw|five_minutes|hour`: [from, to), by
/// default the last hour; the resolution by default from the range's length.
pub async fn metrics(
    State(state): State<ApiState>,
    access: Access,
    Path((project, server)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["name", "subject", "from", "to", "resolution"])?;
    let (p, _role) = access.project(&project)?;
    let s = server_of(p, &server)?;
    let known = || METRICS.iter().chain(EXTRA_METRICS).copied().collect::<Vec<_>>().join(", ");
    let name = match params.str("name") {
        None => return Err(ApiError::bad_request(format!("missing `name`: one of {}", known()))),
        Some(n) => metric_name(n).ok_or_else(|| ApiError::bad_request(format!("invalid `name`: `{n}` is not one of {}", known())))?,
    };
    let subject = params.str("subject");
    let per = Per::of(name);
    if per == Per::Host && subject.is_some() {
        return Err(ApiError::bad_request(format!("invalid `subject`: `{name}` is {}, it has none", per.word())));
    }
    let (from, to) = params.range_ms()?;
    let (from_ms, to_ms) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, now_ms().max(f)),
        (None, Some(t)) => (t.saturating_sub(DEFAULT_RANGE_MS), t),
        (None, None) => {
            let now = now_ms();
            (now - DEFAULT_RANGE_MS, now)
        }
    };
    let range_ms = to_ms.saturating_sub(from_ms);
    let names = RESOLUTIONS.map(|(word, _)| word);
    let (word, resolution) = match params.one_of("resolution", &names)? {
        Some(word) => RESOLUTIONS.into_iter().find(|(w, _)| *w == word).unwrap_or(RESOLUTIONS[0]),
        None => RESOLUTIONS.into_iter().find(|(_, r)| *r == Resolution::for_range(range_ms)).unwrap_or(RESOLUTIONS[0]),
    };
    let step = resolution.step_ms();
    if range_ms / step > MAX_POINTS {
        return Err(ApiError::bad_request(format!(
            "range too long for `resolution` {word}: {} points, at most {MAX_POINTS}; ask for a coarser resolution or a shorter range",
            range_ms / step
        )));
    }
    let points = state.store.metric_series(&p.name, &s.name, name, subject, from_ms, to_ms, resolution).await?;
    Ok(Json(Series { name, subject, resolution, resolution_ms: step, from_ms, to_ms, points }).into_response())
}
