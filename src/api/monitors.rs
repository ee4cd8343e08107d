//! Port monitors and down-checks: their state, a monitor's disconnect log, yearly statistics of
//! notifications sent per host, and availability timelines.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::auth::Access;
use super::params::Params;
use super::projects::firing_alerts;
use super::{ApiError, ApiState, project_tz, rfc3339, zoned};
use crate::alert::{RuleId, Severity};
use crate::clock::now_ms;
use crate::config::values::Dur;
use crate::notification::Medium;
use crate::protocol::Verdict;
use crate::store::{LatencySummary, ProbeRecord};

/// The alert rule of a port monitor, as the engine keys it (`InstanceKey::rule`); the subject
/// is the port.
/// A detector silent this long (or three of its check intervals, if longer) makes its
/// down-checks' verdict `unknown`.
const DETECTOR_SILENCE_MS: i64 = 15_000;

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/monitors

#[derive(Serialize)]
struct LastCheck {
    at_ms: i64,
    ok: bool,
    latency_ms: Option<u32>,
    error_kind: Option<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct PortView {
    port: u16,
    /// The newest check of this port; `null` before the first.
    last: Option<LastCheck>,
    /// The severity of the alert firing on this port, if any.
    firing: Option<Severity>,
}

#[derive(Serialize)]
struct PortMonitorView<'a> {
    name: &'a str,
    server: Option<&'a str>,
    host: &'a str,
    interval: Dur,
    timeout: Dur,
    failures: u32,
    recoveries: u32,
    email: bool,
    sms: bool,
    /// Who is notified (e-mail addresses): admins and the operator only.
    #[serde(skip_serializing_if = "Option::is_none")]
    notify: Option<&'a [String]>,
    /// Whether an alert is firing on any of its ports.
    alert_firing: bool,
    ports: Vec<PortView>,
}

#[derive(Serialize)]
struct DownCheckView<'a> {
    name: &'a str,
    detector: &'a str,
    target: &'a str,
    ip: &'a str,
    port: u16,
    liveness_port: u16,
    interval: Dur,
    failures: u32,
    /// `up`, `service_down`, `host_down`, or `unknown` while the detector is not reporting
    /// (or before its first result).
    verdict: Verdict,
    /// The newest result the detector reported.
    last: Option<LastCheck>,
    /// The severity of the alert firing on it, if any (verdicts come with agent reports).
    firing: Option<Severity>,
}

pub async fn list(
    State(state): State<ApiState>,
    access: Access,
    Path(project): Path<String>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&[])?;
    let (p, role) = access.project(&project)?;
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
                    last: latest.remove(&(m.name.clone(), port)).map(|r| LastCheck {
                        at_ms: r.at_ms,
                        ok: r.ok,
                        latency_ms: r.latency_ms,
                        error_kind: r.error_kind,
                        error: r.error,
                    }),
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
                last: last.map(|r| LastCheck {
                    at_ms: r.at_ms,
                    ok: r.ok,
                    latency_ms: r.latency_ms,
                    error_kind: r.error_kind,
                    error: r.error,
                }),
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
    Ok(Json(serde_json::json!({ "port_monitors": port_monitors, "down_checks": down_checks })))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/monitors/{name}/log

const DAY_MS: i64 = 86_400_000;
/// Failures read to count periods; the list returned is cut to `limit`.
const COUNT_ROWS: u32 = 100_000;
const DEFAULT_LOG_LIMIT: i64 = 1000;

#[derive(Serialize)]
struct FailureView {
    at_ms: i64,
    at: Option<String>,
    port: u16,
    error_kind: Option<String>,
    error: Option<String>,
}

#[derive(Serialize)]
struct PeriodCount {
    /// `2026`, `2026-03`, `2026-03-05` or `2026-03-05T14`, in the project's timezone.
    period: String,
    failures: i64,
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
    let by = params.one_of("by", &["year", "month", "day", "hour"])?.unwrap_or("day");
    let limit = params.int("limit", 1, COUNT_ROWS as i64)?.unwrap_or(DEFAULT_LOG_LIMIT) as usize;
    let (from, to) = params.range_ms()?;
    let to_ms = to.unwrap_or_else(now_ms);
    let span = match by {
        "hour" => DAY_MS,
        "day" => 31 * DAY_MS,
        "month" => 366 * DAY_MS,
        _ => 5 * 366 * DAY_MS,
    };
    let from_ms = from.unwrap_or(to_ms - span);
    // The store's range is half-open; an explicit `to` is meant inclusively.
    let rows = state.store.probe_history(&p.name, &monitor.name, from_ms, to_ms.saturating_add(1), true, COUNT_ROWS).await?;
    let truncated = rows.len() >= COUNT_ROWS as usize;
    let tz = project_tz(&p.timezone);
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for r in &rows {
        if let Some(z) = zoned(r.at_ms, &tz) {
            let key = match by {
                "year" => z.strftime("%Y"),
                "month" => z.strftime("%Y-%m"),
                "day" => z.strftime("%Y-%m-%d"),
                _ => z.strftime("%Y-%m-%dT%H"),
            };
            *counts.entry(key.to_string()).or_default() += 1;
        }
    }
    let failures: Vec<FailureView> = rows
        .into_iter()
        .take(limit)
        .map(|r| FailureView { at_ms: r.at_ms, at: rfc3339(r.at_ms, &tz), port: r.port, error_kind: r.error_kind, error: r.error })
        .collect();
    let counts: Vec<PeriodCount> = counts.into_iter().map(|(period, failures)| PeriodCount { period, failures }).collect();
    Ok(Json(serde_json::json!({
        "monitor": monitor.name,
        "host": monitor.host,
        "timezone": p.timezone,
        "by": by,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "counts": counts,
        "failures": failures,
        "truncated": truncated,
    })))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/monitors/stats

#[derive(Serialize, Default)]
struct HostCounts {
    host: String,
    email: i64,
    sms: i64,
    webhook: i64,
}

/// `?year=YYYY` (default: this year, UTC) — notifications sent per host and medium.
pub async fn stats(
    State(state): State<ApiState>,
    access: Access,
    Path(project): Path<String>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&["year"])?;
    let (p, _role) = access.project(&project)?;
    let this_year = jiff::Timestamp::from_millisecond(now_ms()).map_or(1970, |t| t.to_zoned(jiff::tz::TimeZone::UTC).year() as i64);
    let year = params.int("year", 1970, 9999)?.unwrap_or(this_year) as i32;
    let mut hosts: BTreeMap<String, HostCounts> = BTreeMap::new();
    for c in state.store.sent_counts(&p.name, year).await? {
        let h = hosts.entry(c.host.clone()).or_insert_with(|| HostCounts { host: c.host.clone(), ..HostCounts::default() });
        match c.medium {
            Medium::Email => h.email += c.count,
            Medium::Sms => h.sms += c.count,
            Medium::Webhook => h.webhook += c.count,
        }
    }
    let hosts: Vec<HostCounts> = hosts.into_values().collect();
    Ok(Json(serde_json::json!({ "year": year, "hosts": hosts })))
}

// ---------------------------------------------------------------------------------------------
// GET /api/v1/projects/{p}/availability

#[derive(Serialize)]
struct BucketView {
    start_ms: i64,
    ok: i64,
    failed: i64,
    /// `up` (no failures), `down` (no good checks) or `partial`.
    state: &'static str,
}

#[derive(Serialize)]
struct TargetView<'a> {
    monitor: &'a str,
    host: &'a str,
    port: u16,
    ok: i64,
    failed: i64,
    /// ok / (ok + failed) × 100, three decimals; `null` without checks.
    uptime_percent: Option<f64>,
    /// The good checks' latency over the window; `null` without any.
    latency_ms: Option<LatencySummary>,
    /// Only buckets with checks, oldest first; gaps mean no data.
    buckets: Vec<BucketView>,
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
    let mut by_port: HashMap<(String, u16), Vec<BucketView>> = HashMap::new();
    for b in state.store.probe_buckets(&p.name, from_ms, to_ms, bucket_ms).await? {
        let state = match (b.ok, b.failed) {
            (_, 0) => "up",
            (0, _) => "down",
            _ => "partial",
        };
        by_port.entry((b.monitor, b.port)).or_default().push(BucketView { start_ms: b.bucket_start_ms, ok: b.ok, failed: b.failed, state });
    }
    let mut latency: HashMap<(String, u16), LatencySummary> = HashMap::new();
    for l in state.store.probe_latency(&p.name, from_ms, to_ms).await? {
        latency.insert((l.monitor, l.port), l.latency);
    }
    let mut targets = Vec::new();
    for m in p.port_monitors.values() {
        for &port in &m.ports {
            let mut buckets = by_port.remove(&(m.name.clone(), port)).unwrap_or_default();
            buckets.sort_by_key(|b| b.start_ms);
            let ok: i64 = buckets.iter().map(|b| b.ok).sum();
            let failed: i64 = buckets.iter().map(|b| b.failed).sum();
            let uptime_percent = (ok + failed > 0).then(|| (ok as f64 * 100_000.0 / (ok + failed) as f64).round() / 1000.0);
            let latency_ms = latency.remove(&(m.name.clone(), port));
            targets.push(TargetView { monitor: &m.name, host: &m.host, port, ok, failed, uptime_percent, latency_ms, buckets });
        }
    }
    Ok(Json(serde_json::json!({
        "days": days,
        "bucket_ms": bucket_ms,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "targets": targets,
    })))
}
