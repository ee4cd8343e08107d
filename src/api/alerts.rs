//! `/api/v1/projects/{p}/alerts` (history, filtered) and `/alerts/{id}` (detail with snapshot,
//! the server's metrics around the alert, top processes and, for admins, the notifications and
//! their delivery attempts).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::auth::Access;
use super::params::Params;
use super::{ApiError, ApiState, project_tz, rfc3339};
use crate::alert::{RuleId, Severity};
use crate::clock::now_ms;
use crate::notification::{DeliveryStatus, Medium, MessageKind};
use crate::store::{AlertFilter, AlertRow, AlertStatus, Attempt, OutboxRow, Store};

/// One alert as the API shows it; times in epoch ms and RFC 3339 in the project's timezone.
#[derive(Serialize)]
pub struct AlertView {
    id: i64,
    /// The server it concerns; `null` for a port monitor on a bare host.
    server: Option<String>,
    rule: RuleId,
    subject: String,
    severity: Severity,
    status: AlertStatus,
    started_at_ms: i64,
    started_at: Option<String>,
    resolved_at_ms: Option<i64>,
    resolved_at: Option<String>,
    resolve_reason: Option<String>,
    message: String,
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<serde_json::Value>,
}

impl AlertView {
    pub(super) fn new(row: AlertRow, tz: &jiff::tz::TimeZone, with_snapshot: bool) -> AlertView {
        AlertView {
            id: row.id,
            server: Some(row.key.server).filter(|s| !s.is_empty()),
            rule: row.key.rule,
            subject: row.key.subject,
            severity: row.severity,
            status: row.status,
            started_at_ms: row.started_at_ms,
            started_at: rfc3339(row.started_at_ms, tz),
            resolved_at_ms: row.resolved_at_ms,
            resolved_at: row.resolved_at_ms.and_then(|ms| rfc3339(ms, tz)),
            resolve_reason: row.resolve_reason,
            message: row.message,
            host: row.host,
            snapshot: with_snapshot.then_some(row.snapshot),
        }
    }
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// `?status=firing|resolved&severity=warning|fatal&server=&from=&to=&limit=`: newest first.
pub async fn list(
    State(state): State<ApiState>,
    access: Access,
    Path(project): Path<String>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&["status", "severity", "server", "from", "to", "limit"])?;
    let (p, _role) = access.project(&project)?;
    let status =
        params.one_of("status", &["firing", "resolved"])?.map(|s| if s == "firing" { AlertStatus::Firing } else { AlertStatus::Resolved });
    let severity =
        params.one_of("severity", &["warning", "fatal"])?.map(|s| if s == "fatal" { Severity::Fatal } else { Severity::Warning });
    let (from_ms, to_ms) = params.range_ms()?;
    let limit = params.int("limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    let filter = AlertFilter {
        project: Some(p.name.clone()),
        status,
        severity,
        // Not checked against the configuration: history outlives removed servers.
        server: params.str("server").map(str::to_string),
        from_ms,
        to_ms,
        limit: limit as u32,
    };
    let tz = project_tz(&p.timezone);
    let alerts: Vec<AlertView> = state.store.list_alerts(&filter).await?.into_iter().map(|row| AlertView::new(row, &tz, false)).collect();
    Ok(Json(serde_json::json!({ "timezone": p.timezone, "alerts": alerts })))
}

#[derive(Serialize)]
struct NotificationView {
    id: i64,
    channel: String,
    medium: Medium,
    recipient: String,
    subject: String,
    /// `fired`, `escalated`, `resolved`, `event`.
    kind: MessageKind,
    /// `pending`, `sent`, `not_sent`, `failed`, `delivered`.
    status: DeliveryStatus,
    last_error: Option<String>,
    created_ms: i64,
    sent_ms: Option<i64>,
    attempts: Vec<Attempt>,
}

impl NotificationView {
    fn new((row, attempts): (OutboxRow, Vec<Attempt>)) -> NotificationView {
        NotificationView {
            id: row.id,
            channel: row.channel,
            medium: row.medium,
            recipient: row.recipient,
            subject: row.subject,
            kind: row.kind,
            status: row.status,
            last_error: row.last_error,
            created_ms: row.created_ms,
            sent_ms: row.sent_ms,
            attempts,
        }
    }
}

/// The metrics an alert's page charts around it (±5 min of metrics).
const AROUND_METRICS: &[&str] = &["cpu.usage", "memory.usage", "disk.usage", "disk.io", "network.in_bps", "network.out_bps", "load.1"];
/// How far before its start and after its end (or now) an alert's metrics reach.
const AROUND_MS: i64 = 5 * 60_000;
/// The longest window of raw samples an alert's page gets (1 440 reports at 5 s); a longer alert
/// shows its first two hours, and the server's metrics endpoint has the rest at coarser resolutions.
const MAX_AROUND_MS: i64 = 2 * 60 * 60_000;

/// A host alert's metrics: raw samples of [`AROUND_METRICS`] in [from, to).
#[derive(Serialize)]
struct AroundMetrics {
    from_ms: i64,
    to_ms: i64,
    /// The window was cut at [`MAX_AROUND_MS`].
    truncated: bool,
    /// One per metric and subject, in the order of [`AROUND_METRICS`], then by subject.
    series: Vec<RawSeries>,
}

#[derive(Serialize)]
struct RawSeries {
    name: &'static str,
    subject: Option<String>,
    points: Vec<RawPoint>,
}

#[derive(Serialize)]
struct RawPoint {
    at_ms: i64,
    value: f64,
}

/// The raw samples of the alert's server around the alert, or `None` for an alert on no server
/// (a port monitor on a bare host).
async fn around(store: &Store, row: &AlertRow, now_ms: i64) -> Result<Option<AroundMetrics>, ApiError> {
    if row.key.server.is_empty() {
        return Ok(None);
    }
    let from_ms = row.started_at_ms - AROUND_MS;
    let end = row.resolved_at_ms.unwrap_or(now_ms).max(row.started_at_ms) + AROUND_MS;
    let to_ms = end.min(from_ms + MAX_AROUND_MS);
    let mut series: BTreeMap<(usize, Option<String>), Vec<RawPoint>> = BTreeMap::new();
    for (at_ms, values) in store.raw_samples(&row.key.project, &row.key.server, from_ms, to_ms).await? {
        for m in values {
            if let Some(i) = AROUND_METRICS.iter().position(|name| *name == m.name) {
                series.entry((i, m.subject)).or_default().push(RawPoint { at_ms, value: m.value });
            }
        }
    }
    let series = series.into_iter().map(|((i, subject), points)| RawSeries { name: AROUND_METRICS[i], subject, points }).collect();
    Ok(Some(AroundMetrics { from_ms, to_ms, truncated: to_ms < end, series }))
}

#[derive(Serialize)]
struct AlertDetail {
    #[serde(flatten)]
    alert: AlertView,
    /// Host alerts: the server's metrics around the alert; `null` for an alert on no server.
    metrics: Option<AroundMetrics>,
    /// The busiest processes by CPU and by memory when it fired (from the snapshot).
    top_processes: Option<serde_json::Value>,
    /// Admins, owners and the operator only: the delivery log names recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    notifications: Option<Vec<NotificationView>>,
}

pub async fn detail(
    State(state): State<ApiState>,
    access: Access,
    Path((project, id)): Path<(String, String)>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&[])?;
    let (p, role) = access.project(&project)?;
    let not_found = || ApiError::not_found(format!("alert `{id}` not found in project `{}`", p.name));
    let id: i64 = id.parse().map_err(|_| not_found())?;
    // An alert of another project is answered exactly like one that does not exist.
    let row = state.store.get_alert(id).await?.filter(|row| row.key.project == p.name).ok_or_else(not_found)?;
    let notifications = if role.sees_contacts() {
        Some(state.store.notifications_for_alert(id).await?.into_iter().map(NotificationView::new).collect())
    } else {
        None
    };
    let metrics = around(&state.store, &row, now_ms()).await?;
    let top_processes = row.snapshot.get("top_processes").cloned();
    let body = AlertDetail { alert: AlertView::new(row, &project_tz(&p.timezone), true), metrics, top_processes, notifications };
    Ok(Json(serde_json::to_value(body).unwrap_or_default()))
}
