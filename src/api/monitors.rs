//! Port monitors and down-checks: their state, a monitor's disconnect log, the year's
//! notifications per monitor and month (and per host), and availability timelines.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::auth::{Access, Role};
use super::params::Params;
use super::projects::firing_alerts;
use super::{ApiError, ApiState, project_tz, rfc3339, zoned};
use crate::alert::{RuleId, Severity};
use crate::clock::now_ms;
use crate::config::model::Project;
use crate::config::values::Dur;
use crate::notification::Medium;
use crate::protocol::Verdict;
use crate::store::{LatencySummary, ProbeRecord, SentCount, Store};

/// The alert rule of a port monitor, as the engine keys it (`InstanceKey::rule`); the subject
/// is the port.
/// A detector silent this long (or three of its check intervals, if longer) makes its
/// down-checks' verdict `unknown`.
const DETECTOR_SILENCE_MS: i64 = 15_000;

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/monitors

/// A port's newest check.
#[derive(Serialize)]
pub struct LastCheck {
    pub at_ms: i64,
    pub ok: bool,
    pub latency_ms: Option<u32>,
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

impl LastCheck {
    fn of(r: ProbeRecord) -> LastCheck {
        LastCheck { at_ms: r.at_ms, ok: r.ok, latency_ms: r.latency_ms, error_kind: r.error_kind, error: r.error }
    }
}

#[derive(Serialize)]
pub struct PortView {
    pub port: u16,
    /// The newest check of this port; `null` before the first.
    pub last: Option<LastCheck>,
    /// The severity of the alert firing on this port, if any.
    pub firing: Option<Severity>,
}

#[derive(Serialize)]
pub struct PortMonitorView<'a> {
    pub name: &'a str,
    pub server: Option<&'a str>,
    pub host: &'a str,
    pub interval: Dur,
    pub timeout: Dur,
    pub failures: u32,
    pub recoveries: u32,
    pub email: bool,
    pub sms: bool,
    /// Who is notified (e-mail addresses): admins and the operator only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<&'a [String]>,
    /// Whether an alert is firing on any of its ports.
    pub alert_firing: bool,
    pub ports: Vec<PortView>,
}

#[derive(Serialize)]
pub struct DownCheckView<'a> {
    pub name: &'a str,
    pub detector: &'a str,
    pub target: &'a str,
    pub ip: &'a str,
    pub port: u16,
    pub liveness_port: u16,
    pub interval: Dur,
    pub failures: u32,
    /// `up`, `service_down`, `host_down`, or `unknown` while the detector is not reporting
    /// (or before its first result).
    pub verdict: Verdict,
    /// The newest result the detector reported.
    pub last: Option<LastCheck>,
    /// The severity of the alert firing on it, if any (verdicts come with agent reports).
    pub firing: Option<Severity>,
}

pub async fn list(
    State(state): State<ApiState>,
    access: Access,
    Path(project): Path<String>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&[])?;
    let (p, role) = access.project(&project)?;
    Ok(Json(serde_json::json!(monitors(&state, p, role).await?)))
}

/// A project's port monitors and down-checks with their newest results, firing alerts and the
/// down-checks' verdicts: the `…/monitors` answer and the dashboard's port page.
#[derive(Serialize)]
pub struct Monitors<'a> {
    pub port_monitors: Vec<PortMonitorView<'a>>,
    pub down_checks: Vec<DownCheckView<'a>>,
}

pub async fn monitors<'a>(state: &ApiState, p: &'a Project, role: Role) -> Result<Monitors<'a>, ApiError> {
    let mut latest: HashMap<(String, u16), ProbeRecord> = HashMap::new();
    for rec in state.store.latest_probes(&p.name).await? {
        latest.insert((rec.monitor.clone(), rec.port), rec);
    }
    // (rule, subject) → the worst severity firing.
    let mut firing: HashMap<(RuleId, String), Severity> = HashMap::new();
    for alert in firing_alerts(&state.store, Some(&p.name)).await? {
        let e = firing.entry((alert.key.rule, alert.key.subject)).or_insert(alert.severity);
        *e = (*e).max(alert.severity);
    }
    let port_monitors: Vec<PortMonitorView> = p
        .port_monitors
        .values()
        .map(|m| {
            let rule = RuleId::Port(m.name.clone());
            let ports: Vec<PortView> = m
                .ports
                .iter()
                .map(|&port| PortView {
                    port,
                    last: latest.remove(&(m.name.clone(), port)).map(LastCheck::of),
                    firing: firing.get(&(rule.clone(), port.to_string())).copied(),
                })
                .collect();
            PortMonitorView {
                name: &m.name,
                server: m.server.as_deref(),
                host: &m.host,
                interval: m.interval,
                timeout: m.timeout,
                failures: m.failures,
                recoveries: m.recoveries,
                email: m.email,
                sms: m.sms,
                notify: role.sees_contacts().then_some(m.notify.as_slice()),
                alert_firing: firing.keys().any(|(r, _)| *r == rule),
                ports,
            }
        })
        .collect();
    let now = now_ms();
    let down_checks: Vec<DownCheckView> = p
        .down_checks
        .values()
        .map(|d| {
            let rule = RuleId::DownCheck(d.name.clone());
            let last = latest.remove(&(d.name.clone(), d.port));
            let interval_ms = d.interval.0.as_millis() as i64;
            let detector_live =
                state.live.get(&p.name, &d.detector).is_some_and(|l| now - l.received_ms <= (3 * interval_ms).max(DETECTOR_SILENCE_MS));
            let verdict = match &last {
                Some(r) if detector_live && now - r.at_ms <= (3 * interval_ms).max(DETECTOR_SILENCE_MS) => {
                    Verdict::of_record(r.error_kind.as_deref())
                }
                _ => Verdict::Unknown,
            };
            DownCheckView {
                verdict,
                last: last.map(LastCheck::of),
                name: &d.name,
                detector: &d.detector,
                target: &d.target,
                ip: &d.ip,
                port: d.port,
                liveness_port: d.liveness_port,
                interval: d.interval,
                failures: d.failures,
                firing: firing.iter().filter(|((r, _), _)| *r == rule).map(|(_, s)| *s).max(),
            }
        })
        .collect();
    Ok(Monitors { port_monitors, down_checks })
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/monitors/{name}/log

const DAY_MS: i64 = 86_400_000;
/// The most failures a log lists (`limit`); every failure is counted whatever the limit.
const COUNT_ROWS: u32 = 100_000;
const DEFAULT_LOG_LIMIT: i64 = 1000;

/// One failed check in the disconnect log.
#[derive(Serialize)]
pub struct FailureView {
    pub at_ms: i64,
    pub at: Option<String>,
    pub port: u16,
    pub error_kind: Option<String>,
    pub error: Option<String>,
}

/// Failed checks in one period.
#[derive(Serialize)]
pub struct PeriodCount {
    /// `2026`, `2026-03`, `2026-03-05` or `2026-03-05T14`, in the project's timezone.
    pub period: String,
    pub failures: i64,
}

/// The periods a disconnect log is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Year,
    Month,
    Day,
    Hour,
}

impl By {
    /// The period key of `z`, as [`PeriodCount::period`] writes it.
    pub fn key(self, z: &jiff::Zoned) -> String {
        z.strftime(self.format()).to_string()
    }

    fn format(self) -> &'static str {
        match self {
            By::Year => "%Y",
            By::Month => "%Y-%m",
            By::Day => "%Y-%m-%d",
            By::Hour => "%Y-%m-%dT%H",
        }
    }

    /// The periods that [from, to) touches in `tz`: their keys and their edges in epoch
    /// milliseconds — period `i` is [`edges[i]`, `edges[i + 1]`), the first starting at
    /// `from_ms` and the last ending at `to_ms`. Periods are stepped on the wall clock, so an
    /// hour repeated when clocks go back is one period and a skipped hour an empty one.
    fn periods(self, from_ms: i64, to_ms: i64, tz: &jiff::tz::TimeZone) -> (Vec<String>, Vec<i64>) {
        let (mut keys, mut edges) = (Vec::new(), vec![from_ms]);
        let Some(first) = zoned(from_ms, tz) else { return (keys, edges) };
        let dt = first.datetime();
        let mut start = match self {
            By::Year => jiff::civil::date(dt.year(), 1, 1).at(0, 0, 0, 0),
            By::Month => jiff::civil::date(dt.year(), dt.month(), 1).at(0, 0, 0, 0),
            By::Day => dt.date().at(0, 0, 0, 0),
            By::Hour => dt.date().at(dt.hour(), 0, 0, 0),
        };
        let step = match self {
            By::Year => jiff::Span::new().years(1),
            By::Month => jiff::Span::new().months(1),
            By::Day => jiff::Span::new().days(1),
            By::Hour => jiff::Span::new().hours(1),
        };
        loop {
            keys.push(start.strftime(self.format()).to_string());
            let Ok(next) = start.checked_add(step) else { break };
            let Ok(next_ms) = next.to_zoned(tz.clone()).map(|z| z.timestamp().as_millisecond()) else { break };
            if next_ms >= to_ms {
                break;
            }
            edges.push(next_ms.max(*edges.last().unwrap_or(&from_ms)));
            start = next;
        }
        edges.push(to_ms);
        (keys, edges)
    }
}

/// A monitor's disconnect log over [from, to): failed checks newest first (at most `limit`),
/// and their counts per period in the project's timezone, oldest first.
#[derive(Serialize)]
pub struct DisconnectLog {
    pub counts: Vec<PeriodCount>,
    pub failures: Vec<FailureView>,
}

pub async fn disconnect_log(
    store: &Store,
    p: &Project,
    monitor: &str,
    by: By,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
) -> Result<DisconnectLog, ApiError> {
    let tz = project_tz(&p.timezone);
    let counts = failure_counts(store, &p.name, monitor, by, from_ms, to_ms, &tz).await?;
    let rows = store.probe_history(&p.name, monitor, from_ms, to_ms, true, u32::try_from(limit).unwrap_or(u32::MAX).max(1)).await?;
    let failures = rows
        .into_iter()
        .map(|r| FailureView { at_ms: r.at_ms, at: rfc3339(r.at_ms, &tz), port: r.port, error_kind: r.error_kind, error: r.error })
        .collect();
    Ok(DisconnectLog { counts, failures })
}

/// A monitor's failed checks in [from, to) counted per period in `tz`, oldest first, periods
/// without failures left out. The database counts them (only the periods between the first
/// failure and the last are asked), so a year of failures is not read row by row.
pub async fn failure_counts(
    store: &Store,
    project: &str,
    monitor: &str,
    by: By,
    from_ms: i64,
    to_ms: i64,
    tz: &jiff::tz::TimeZone,
) -> Result<Vec<PeriodCount>, ApiError> {
    let Some((first, last)) = store.probe_failure_span(project, monitor, from_ms, to_ms).await? else { return Ok(Vec::new()) };
    let (keys, edges) = by.periods(first, last + 1, tz);
    let counted = store.probe_failure_counts(project, monitor, &edges).await?;
    Ok(keys
        .into_iter()
        .zip(counted)
        .filter(|&(_, failures)| failures > 0)
        .map(|(period, failures)| PeriodCount { period, failures })
        .collect())
}

/// `?by=year|month|day|hour&from=&to=&limit=` — failed checks newest first, and their counts per
/// period. Defaults: `by=day`; `to` now; `from` 24 hours (by hour), 31 days (by day), a year
/// (by month) or five years (by year) before `to`.
pub async fn log(
    State(state): State<ApiState>,
    access: Access,
    Path((project, name)): Path<(String, String)>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&["by", "from", "to", "limit"])?;
    let (p, _role) = access.project(&project)?;
    let monitor = p
        .port_monitors
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("port monitor `{name}` not found in project `{}`", p.name)))?;
    let by = match params.one_of("by", &["year", "month", "day", "hour"])? {
        Some("year") => By::Year,
        Some("month") => By::Month,
        Some("hour") => By::Hour,
        _ => By::Day,
    };
    let limit = params.int("limit", 1, COUNT_ROWS as i64)?.unwrap_or(DEFAULT_LOG_LIMIT) as usize;
    let (from, to) = params.range_ms()?;
    let to_ms = to.unwrap_or_else(now_ms);
    let span = match by {
        By::Hour => DAY_MS,
        By::Day => 31 * DAY_MS,
        By::Month => 366 * DAY_MS,
        By::Year => 5 * 366 * DAY_MS,
    };
    let from_ms = from.unwrap_or(to_ms - span);
    // The log's range is half-open; an explicit `to` is meant inclusively.
    let log = disconnect_log(&state.store, p, &monitor.name, by, from_ms, to_ms.saturating_add(1), limit).await?;
    Ok(Json(serde_json::json!({
        "monitor": monitor.name,
        "host": monitor.host,
        "timezone": p.timezone,
        "by": by,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "counts": log.counts,
        "failures": log.failures,
        // Every failure is counted now; kept for clients that read it.
        "truncated": false,
    })))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/monitors/stats

/// How the notifications of one medium ended.
#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Sent (a gateway's report of delivery included).
    pub sent: i64,
    /// Not sent on purpose: maintenance, a parent down, outside the recipient's hours, a storm
    /// digest.
    pub not_sent: i64,
    /// Given up, bounced or reported undelivered (the errors are in each alert's delivery log).
    pub failed: i64,
    /// Of the sent, e-mails whose read-receipt image was fetched.
    pub read: i64,
    /// Of the sent, SMS the gateway reported delivered.
    pub delivered: i64,
}

impl Delivery {
    fn add(&mut self, c: &SentCount) {
        self.sent += c.sent;
        self.not_sent += c.not_sent;
        self.failed += c.failed;
        self.read += c.read;
        self.delivered += c.delivered;
    }

    pub fn is_empty(&self) -> bool {
        *self == Delivery::default()
    }
}

/// A month's (or the year's) notifications, per medium.
#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaCounts {
    pub email: Delivery,
    pub sms: Delivery,
    pub webhook: Delivery,
}

impl MediaCounts {
    fn add(&mut self, c: &SentCount) {
        match c.medium {
            Medium::Email => self.email.add(c),
            Medium::Sms => self.sms.add(c),
            Medium::Webhook => self.webhook.add(c),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.email.is_empty() && self.sms.is_empty() && self.webhook.is_empty()
    }
}

/// One port monitor's year: its notifications per month and in all.
#[derive(Debug, Serialize)]
pub struct MonitorYear {
    pub monitor: String,
    pub host: String,
    /// Whether the monitor is in the applied configuration (notifications about one removed
    /// since are still counted).
    pub configured: bool,
    /// Twelve entries, January first.
    pub months: Vec<MediaCounts>,
    pub total: MediaCounts,
}

/// One host's notifications in a year, every alert about it together (port monitors, server
/// metrics, down-checks).
#[derive(Debug, Serialize, Default)]
pub struct HostCounts {
    pub host: String,
    /// Sent, per medium.
    pub email: i64,
    pub sms: i64,
    pub webhook: i64,
    /// Not sent on purpose, every medium together.
    pub not_sent: i64,
    /// E-mails whose read-receipt image was fetched.
    pub read: i64,
    /// SMS the gateway reported delivered.
    pub delivered: i64,
    /// Notifications given up, bounced or reported undelivered.
    pub failed: i64,
}

/// A project's notifications in a calendar year of its timezone: per port monitor and month,
/// and per host. What `GET …/monitors/stats` answers and the port monitors page shows.
#[derive(Debug, Serialize)]
pub struct DeliveryStats {
    pub year: i32,
    pub timezone: String,
    /// Every configured port monitor in name order (zeros for a quiet one), then any removed
    /// monitor that had notifications in the year.
    pub monitors: Vec<MonitorYear>,
    pub hosts: Vec<HostCounts>,
}

/// This year in `tz`.
pub fn this_year(tz: &jiff::tz::TimeZone) -> i32 {
    zoned(now_ms(), tz).map_or(1970, |z| i32::from(z.year()))
}

/// The notifications of `p` in `year` (of its timezone), counted once for the API and the
/// dashboard.
pub async fn delivery_stats(store: &Store, p: &Project, year: i32) -> Result<DeliveryStats, ApiError> {
    let tz = project_tz(&p.timezone);
    let mut monitors: BTreeMap<String, MonitorYear> = p
        .port_monitors
        .values()
        .map(|m| {
            let year = MonitorYear {
                monitor: m.name.clone(),
                host: m.host.clone(),
                configured: true,
                months: vec![MediaCounts::default(); 12],
                total: MediaCounts::default(),
            };
            (m.name.clone(), year)
        })
        .collect();
    let mut removed: BTreeMap<String, MonitorYear> = BTreeMap::new();
    let mut hosts: BTreeMap<String, HostCounts> = BTreeMap::new();
    for c in store.sent_counts(&p.name, year, &tz).await? {
        if let Some(name) = &c.monitor {
            let m = match monitors.get_mut(name) {
                Some(m) => m,
                None => removed.entry(name.clone()).or_insert_with(|| MonitorYear {
                    monitor: name.clone(),
                    host: c.host.clone(),
                    configured: false,
                    months: vec![MediaCounts::default(); 12],
                    total: MediaCounts::default(),
                }),
            };
            if let Some(month) = m.months.get_mut(usize::from(c.month.saturating_sub(1))) {
                month.add(&c);
            }
            m.total.add(&c);
        }
        let h = hosts.entry(c.host.clone()).or_insert_with(|| HostCounts { host: c.host.clone(), ..HostCounts::default() });
        match c.medium {
            Medium::Email => h.email += c.sent,
            Medium::Sms => h.sms += c.sent,
            Medium::Webhook => h.webhook += c.sent,
        }
        h.not_sent += c.not_sent;
        h.read += c.read;
        h.delivered += c.delivered;
        h.failed += c.failed;
    }
    Ok(DeliveryStats {
        year,
        timezone: p.timezone.clone(),
        monitors: monitors.into_values().chain(removed.into_values()).collect(),
        hosts: hosts.into_values().collect(),
    })
}

/// `?year=YYYY` (default: this year in the project's timezone) — notifications per port monitor
/// and month, and per host: sent, not sent, failed, read and delivered.
pub async fn stats(
    State(state): State<ApiState>,
    access: Access,
    Path(project): Path<String>,
    params: Params,
) -> Result<Json<DeliveryStats>, ApiError> {
    params.allow(&["year"])?;
    let (p, _role) = access.project(&project)?;
    let year = match params.int("year", 1970, 9999)? {
        Some(year) => year as i32,
        None => this_year(&project_tz(&p.timezone)),
    };
    Ok(Json(delivery_stats(&state.store, p, year).await?))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/availability

/// One bucket of an availability timeline.
#[derive(Serialize)]
pub struct BucketView {
    pub start_ms: i64,
    pub ok: i64,
    pub failed: i64,
    /// `up` (no failures), `down` (no good checks) or `partial`.
    pub state: &'static str,
}

/// What a timeline is of: a port monitor's port, or a down-check's target port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    PortMonitor,
    DownCheck,
}

/// One port's availability over a window.
#[derive(Serialize)]
pub struct TargetView<'a> {
    pub kind: TargetKind,
    /// The port monitor's or the down-check's name.
    pub monitor: &'a str,
    /// The address checked: the monitor's host, the down-check's IP.
    pub host: &'a str,
    pub port: u16,
    pub ok: i64,
    pub failed: i64,
    /// ok / (ok + failed) × 100, three decimals; `null` without checks.
    pub uptime_percent: Option<f64>,
    /// The good checks' latency over the window; `null` without any (down-checks report none).
    pub latency_ms: Option<LatencySummary>,
    /// Only buckets with checks, oldest first; gaps mean no data.
    pub buckets: Vec<BucketView>,
}

/// Every port monitor port and down-check of a project over [from, to) in buckets of
/// `bucket_ms` starting at `from_ms`: port monitors first, each group by name.
pub async fn availability_of<'a>(
    store: &Store,
    p: &'a Project,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
) -> Result<Vec<TargetView<'a>>, ApiError> {
    let mut by_port: HashMap<(String, u16), Vec<BucketView>> = HashMap::new();
    for b in store.probe_buckets(&p.name, from_ms, to_ms, bucket_ms).await? {
        let state = match (b.ok, b.failed) {
            (_, 0) => "up",
            (0, _) => "down",
            _ => "partial",
        };
        by_port.entry((b.monitor, b.port)).or_default().push(BucketView { start_ms: b.bucket_start_ms, ok: b.ok, failed: b.failed, state });
    }
    let mut latency: HashMap<(String, u16), LatencySummary> = HashMap::new();
    for l in store.probe_latency(&p.name, from_ms, to_ms).await? {
        latency.insert((l.monitor, l.port), l.latency);
    }
    let ports = p.port_monitors.values().flat_map(|m| m.ports.iter().map(move |&port| (TargetKind::PortMonitor, &m.name, &m.host, port)));
    let checks = p.down_checks.values().map(|d| (TargetKind::DownCheck, &d.name, &d.ip, d.port));
    Ok(ports
        .chain(checks)
        .map(|(kind, name, host, port)| {
            let mut buckets = by_port.remove(&(name.clone(), port)).unwrap_or_default();
            buckets.sort_by_key(|b| b.start_ms);
            let ok: i64 = buckets.iter().map(|b| b.ok).sum();
            let failed: i64 = buckets.iter().map(|b| b.failed).sum();
            let uptime_percent = (ok + failed > 0).then(|| (ok as f64 * 100_000.0 / (ok + failed) as f64).round() / 1000.0);
            let latency_ms = latency.remove(&(name.clone(), port));
            TargetView { kind, monitor: name, host, port, ok, failed, uptime_percent, latency_ms, buckets }
        })
        .collect())
}

/// `?days=1|7|30|90|365` (default 1): 5-minute buckets for a day, hourly for 7 and 30 days, daily
/// (UTC) for 90 and 365.
pub async fn availability(
    State(state): State<ApiState>,
    access: Access,
    Path(project): Path<String>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&["days"])?;
    let (p, _role) = access.project(&project)?;
    let days: i64 = match params.one_of("days", &["1", "7", "30", "90", "365"])?.unwrap_or("1") {
        "7" => 7,
        "30" => 30,
        "90" => 90,
        "365" => 365,
        _ => 1,
    };
    let bucket_ms = match days {
        1 => 5 * 60_000,
        7 | 30 => 3_600_000,
        _ => DAY_MS,
    };
    // Whole buckets: the window ends at the end of the current one.
    let to_ms = (now_ms() / bucket_ms + 1) * bucket_ms;
    let from_ms = to_ms - days * DAY_MS;
    let targets = availability_of(&state.store, p, from_ms, to_ms, bucket_ms).await?;
    Ok(Json(serde_json::json!({
        "days": days,
        "bucket_ms": bucket_ms,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "targets": targets,
    })))
}
