//! The read-only status API (axum), the agents' ingest endpoint ([`ingest`]) and delivery
//! receipts ([`receipts`]: read-receipt images, SMS gateways' delivery reports): token auth and
//! scopes, JSON endpoints, /healthz, /metrics.
//!
//! Everything under `/api/v1` needs `Authorization: Bearer <token>` ([`auth`]); a project outside
//! the token's scope answers 404 exactly like a project that does not exist. The one thing a
//! person writes through it is an acknowledgement note on a firing alert, recorded with who wrote
//! it; nothing touches the configuration, which lives in git. Each request reads one snapshot of the configuration (`Arc<Config>` from the
//! reconciler's watch channel) and the store; handlers never hold the watch borrow across `.await`.

mod alerts;
mod auth;
mod ingest;
mod monitors;
mod objects;
mod params;
mod projects;
mod receipts;
mod reports;
mod servers;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::collect::live::LiveServers;
use crate::collect::writer::Batch;
use crate::config::Config;
use crate::metrics::{self, Metrics};
use crate::protocol::MAX_BODY_BYTES;
use crate::store::{Store, StoreError};

pub use alerts::{AlertOf, MAX_NOTE_CHARS, acknowledge_alert, alert_of};
pub use auth::{Access, Role};
pub use monitors::{
    BucketView, By, Delivery, DeliveryStats, DisconnectLog, DownCheckView, FailureView, LastCheck, MediaCounts, MonitorYear, Monitors,
    PeriodCount, PortMonitorView, PortView, TargetKind, TargetView, availability_of, delivery_stats, disconnect_log, failure_counts,
    monitors, this_year,
};
pub use objects::ObjectsDoc;
pub use projects::{Firing, ProjectSummary, Revision, Revisions, revisions, summaries};
pub use servers::{
    AllMax, Cell, CellState, ProcessItems, Processes, RECENT_ALERTS, SORTS, ServerPage, ServerQuery, ServerState, ServerView, cells,
    server_alerts, server_page,
};

/// What the API reads. Cheap to clone (handles only).
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The applied configuration; the reconciler sends each new revision it applies.
    pub config: watch::Receiver<Arc<Config>>,
    pub metrics: Arc<Metrics>,
    /// SHA-256 (hex) of the operator token (`WATCHKEEPER_TOKEN`); `None` disables it.
    pub admin_token_sha256: Option<String>,
    /// When serve started (epoch ms), for `/api/v1/status`.
    pub started_at_ms: i64,
    /// How long a replica's heartbeat keeps it alive (`--lease-ttl`), for the replicas
    /// `/api/v1/status` lists.
    pub lease_ttl_ms: i64,
    /// The newest report of every server.
    pub live: LiveServers,
    /// The collector's writer; `None` answers ingest requests with 503.
    pub collector: Option<mpsc::Sender<Batch>>,
}

/// Every route. Unknown paths answer 404 and other methods than GET/HEAD 405, both as JSON.
/// Writes: agents' ingest, authenticated by the project's ingest key; acknowledgements, by a
/// user token (or the operator's); SMS delivery reports, by the channel's secret; and the first
/// fetch of a read-receipt image, by its unguessable id.
pub fn router(state: ApiState) -> Router {
    routes(state).fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

/// Every route, without the answers for unknown paths and methods: for a router (the
/// dashboard's) that serves more paths and answers those itself, with [`not_found`] and
/// [`method_not_allowed`] for the API's own.
pub fn routes(state: ApiState) -> Router {
    Router::new()
        .route("/ingest/v1/report", post(ingest::report).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
        .route("/ingest/v1/delivery/{channel}", post(receipts::delivery_report).layer(DefaultBodyLimit::max(receipts::REPORT_BODY_BYTES)))
        .route("/r/{file}", get(receipts::read_image))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/status", get(projects::status))
        .route("/api/v1/objects", get(objects::list))
        .route("/api/v1/projects", get(projects::list))
        .route("/api/v1/projects/{project}", get(projects::detail))
        .route("/api/v1/projects/{project}/servers", get(servers::list))
        .route("/api/v1/projects/{project}/servers/{server}", get(servers::detail))
        .route("/api/v1/projects/{project}/servers/{server}/metrics", get(servers::metrics))
        .route("/api/v1/projects/{project}/alerts", get(alerts::list))
        .route("/api/v1/projects/{project}/alerts/{id}", get(alerts::detail))
        .route("/api/v1/projects/{project}/alerts/{id}/acks", post(alerts::acknowledge).layer(DefaultBodyLimit::max(ACK_BODY_BYTES)))
        .route("/api/v1/projects/{project}/monitors", get(monitors::list))
        // A static segment wins over `{name}` in axum's router, and `stats` has no `/log`
        // suffix, so a monitor named `stats` still has its log at `/monitors/stats/log`.
        .route("/api/v1/projects/{project}/monitors/stats", get(monitors::stats))
        .route("/api/v1/projects/{project}/monitors/{name}/log", get(monitors::log))
        .route("/api/v1/projects/{project}/availability", get(monitors::availability))
        .route("/api/v1/projects/{project}/reports/{period}", get(reports::get))
        .with_state(state)
}

/// An acknowledgement body: 2 000 characters of up to 4 bytes each, escaped, with room to spare.
const ACK_BODY_BYTES: usize = 64 * 1024;

async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus text. The outbox depth is read from the store here, so it is right even when
/// several replicas share one outbox.
async fn metrics_text(axum::extract::State(state): axum::extract::State<ApiState>) -> Response {
    match state.store.outbox_depth().await {
        Ok(n) => state.metrics.set_outbox_depth(n),
        Err(e) => tracing::warn!(error = %e, "could not read the outbox depth for /metrics"),
    }
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], state.metrics.render()).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: the status API is read-only (GET), apart from acknowledging an alert (POST …/alerts/{id}/acks)",
    )
}

/// An error answer: the status and `{"error": "…"}`; a 401 also carries `WWW-Authenticate`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, as the answer's `error` says it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        // The details are for the operator's log, not for API clients.
        tracing::error!(error = %e, "status API could not read the store");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error: the database could not be read")
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(ErrorBody { error: &self.message });
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// The store's "no limit" for queries that take one.
const ALL: u32 = 0;

/// Times in answers: epoch milliseconds, and RFC 3339 in the project's timezone.
pub fn project_tz(name: &str) -> jiff::tz::TimeZone {
    // compile validated the name; UTC only if the bundled database somehow lacks it.
    jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
}

pub fn zoned(ms: i64, tz: &jiff::tz::TimeZone) -> Option<jiff::Zoned> {
    jiff::Timestamp::from_millisecond(ms).ok().map(|t| t.to_zoned(tz.clone()))
}

/// `2026-03-05T14:00:00+09:00`.
fn rfc3339(ms: i64, tz: &jiff::tz::TimeZone) -> Option<String> {
    zoned(ms, tz).map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
}
