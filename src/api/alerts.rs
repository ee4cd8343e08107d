//! `/api/v1/projects/{p}/alerts` (history, filtered) and `/alerts/{id}` (detail with snapshot,
//! the server's metrics around the alert, top processes and, for admins, the notifications and
//! their delivery attempts); `POST /alerts/{id}/acks`, the one write a person makes: an
//! acknowledgement note, recorded with who wrote it.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::{Access, Role};
use super::params::Params;
use super::{ApiError, ApiState, project_tz, rfc3339};
use crate::alert::{RuleId, Severity};
use crate::clock::now_ms;
use crate::config::model::Project;
use crate::notification::{DeliveryStatus, Medium, MessageKind};
use crate::store::{Ack, AckRefused, AlertFilter, AlertRow, AlertStatus, Attempt, OutboxRow, Store};

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
    /// Someone acknowledged it (reminders and escalation stop).
    acknowledged: bool,
    /// Its acknowledgement notes, oldest first.
    acks: Vec<AckView>,
    /// It changed state too often while it was open: its notifications were held back (one
    /// "flapping" notification instead) until it was stable. For a firing alert: it flaps now.
    flapping: bool,
}

/// One acknowledgement note as the API shows it.
#[derive(Serialize)]
pub struct AckView {
    at_ms: i64,
    at: Option<String>,
    /// The user's e-mail, or `operator`.
    by: String,
    note: String,
}

impl AckView {
    fn new(ack: Ack, tz: &jiff::tz::TimeZone) -> AckView {
        AckView { at_ms: ack.at_ms, at: rfc3339(ack.at_ms, tz), by: ack.by, note: ack.note }
    }
}

impl AlertView {
    /// `acks`: the alert's acknowledgements, oldest first.
    fn new(row: AlertRow, acks: Vec<Ack>, tz: &jiff::tz::TimeZone, with_snapshot: bool) -> AlertView {
        AlertView {
            acknowledged: row.acknowledged_at_ms.is_some(),
            flapping: row.flapping,
            acks: acks.into_iter().map(|a| AckView::new(a, tz)).collect(),
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
        offset: 0,
    };
    let tz = project_tz(&p.timezone);
    let rows = state.store.list_alerts(&filter).await?;
    let alerts = with_acks(&state.store, rows, &tz).await?;
    Ok(Json(serde_json::json!({ "timezone": p.timezone, "alerts": alerts })))
}

/// Alert rows as the API shows them, with their acknowledgements (one query for all).
pub(super) async fn with_acks(store: &Store, rows: Vec<AlertRow>, tz: &jiff::tz::TimeZone) -> Result<Vec<AlertView>, ApiError> {
    let acked: Vec<i64> = rows.iter().filter(|r| r.acknowledged_at_ms.is_some()).map(|r| r.id).collect();
    let mut acks: BTreeMap<i64, Vec<Ack>> = BTreeMap::new();
    for ack in store.acks_for(&acked).await? {
        acks.entry(ack.alert_id).or_default().push(ack);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let notes = acks.remove(&row.id).unwrap_or_default();
            AlertView::new(row, notes, tz, false)
        })
        .collect())
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
    /// `pending`, `sent`, `not_sent`, `failed` (given up, bounced, or reported undelivered by
    /// the SMS gateway: `last_error` says which), `delivered` (the SMS gateway reported it).
    status: DeliveryStatus,
    /// Why a `not_sent` notification was not sent: "maintenance `name`", "parent `db-01` is
    /// down", "outside notify hours".
    reason: Option<String>,
    last_error: Option<String>,
    created_ms: i64,
    sent_ms: Option<i64>,
    /// Whether the mail's read-receipt image was fetched, and when first.
    read: bool,
    read_ms: Option<i64>,
    /// When a bounce or the SMS gateway's delivery report set the status.
    receipt_ms: Option<i64>,
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
            reason: row.reason,
            last_error: row.last_error,
            created_ms: row.created_ms,
            sent_ms: row.sent_ms,
            read: row.read_ms.is_some(),
            read_ms: row.read_ms,
            receipt_ms: row.receipt_ms,
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

/// One alert of a project in the caller's scope, as its detail reads it (the API's and the
/// dashboard's alert page).
pub struct AlertOf<'a> {
    pub project: &'a Project,
    pub role: Role,
    pub row: AlertRow,
    /// Its acknowledgement notes, oldest first.
    pub acks: Vec<Ack>,
    /// Every notification with its delivery attempts, for roles that see contacts; `None` for
    /// the others (the delivery log names recipients).
    pub notifications: Option<Vec<(OutboxRow, Vec<Attempt>)>>,
}

/// Alert `id` of `project`: 404 outside the caller's scope, for an id that is not a number, and
/// for an alert of another project, exactly as for one that does not exist.
pub async fn alert_of<'a>(state: &ApiState, access: &'a Access, project: &str, id: &str) -> Result<AlertOf<'a>, ApiError> {
    let (p, role) = access.project(project)?;
    let not_found = || ApiError::not_found(format!("alert `{id}` not found in project `{}`", p.name));
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let row = state.store.get_alert(id).await?.filter(|row| row.key.project == p.name).ok_or_else(not_found)?;
    let notifications = if role.sees_contacts() { Some(state.store.notifications_for_alert(id).await?) } else { None };
    let acks = state.store.acks_for(&[id]).await?;
    Ok(AlertOf { project: p, role, row, acks, notifications })
}

pub async fn detail(
    State(state): State<ApiState>,
    access: Access,
    Path((project, id)): Path<(String, String)>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    params.allow(&[])?;
    let AlertOf { project: p, row, acks, notifications, .. } = alert_of(&state, &access, &project, &id).await?;
    let notifications = notifications.map(|list| list.into_iter().map(NotificationView::new).collect());
    let metrics = around(&state.store, &row, now_ms()).await?;
    let top_processes = row.snapshot.get("top_processes").cloned();
    let body = AlertDetail { alert: AlertView::new(row, acks, &project_tz(&p.timezone), true), metrics, top_processes, notifications };
    Ok(Json(serde_json::to_value(body).unwrap_or_default()))
}

/// The longest acknowledgement note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    note: String,
}

/// The note of `{"note": "…"}`: an object only (serde would also take `["…"]` for the struct).
fn ack_body(body: &[u8]) -> Result<AckBody, ApiError> {
    const SHAPE: &str = r#"the body must be a JSON object {"note": "…"}"#;
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("{SHAPE}: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(SHAPE));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("{SHAPE}: {e}")))
}

/// `POST …/alerts/{id}/acks` with `{"note": "…"}`: any role on the project may acknowledge a
/// firing alert; 201 with the stored note; 404 outside the scope or for an unknown alert; 409 on
/// a resolved one; 400 on a body that is not that JSON object, or an empty or too long note.
pub async fn acknowledge(
    State(state): State<ApiState>,
    access: Access,
    Path((project, id)): Path<(String, String)>,
    params: Params,
    body: Bytes,
) -> Result<(StatusCode, Json<AckView>), ApiError> {
    params.allow(&[])?;
    // Outside the scope is 404 before the body is looked at, so a body cannot probe for names.
    let (p, _role) = access.project(&project)?;
    let AckBody { note } = ack_body(&body)?;
    let ack = acknowledge_alert(&state, &access, &project, &id, &note).await?;
    Ok((StatusCode::CREATED, Json(AckView::new(ack, &project_tz(&p.timezone)))))
}

/// Record the caller's `note` on firing alert `id` of `project`: the one way an acknowledgement
/// is made, for the API and the dashboard's form alike. The note is trimmed and must have 1 to
/// [`MAX_NOTE_CHARS`] characters (400); outside the scope or for an alert that is not the
/// project's, 404; a resolved alert, 409.
pub async fn acknowledge_alert(state: &ApiState, access: &Access, project: &str, id: &str, note: &str) -> Result<Ack, ApiError> {
    let (p, _role) = access.project(project)?;
    let not_found = || ApiError::not_found(format!("alert `{id}` not found in project `{}`", p.name));
    let alert_id: i64 = id.parse().map_err(|_| not_found())?;
    let note = note.trim();
    if note.is_empty() {
        return Err(ApiError::bad_request("`note` is empty: say what was done about the alert"));
    }
    let chars = note.chars().count();
    if chars > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(format!("`note` has {chars} characters; at most {MAX_NOTE_CHARS} are allowed")));
    }
    match state.store.acknowledge(&p.name, alert_id, access.who(), note, now_ms()).await? {
        Ok(ack) => {
            tracing::info!(project = %p.name, alert = alert_id, by = %ack.by, "alert acknowledged");
            Ok(ack)
        }
        Err(AckRefused::NotFound) => Err(not_found()),
        Err(AckRefused::Resolved) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("alert `{alert_id}` has resolved; if it fires again, acknowledge the new alert"),
        )),
    }
}
