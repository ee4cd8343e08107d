//! Delivery receipts from outside: `GET /r/{id}.png`, the read-receipt image in a mail, and
//! `POST /ingest/v1/delivery/{channel}`, an SMS gateway's delivery report.
//!
//! The image answers every request alike — the same 1×1 PNG, status 200, no caching — whether
//! the id is known, already used, unknown or malformed, so ids cannot be probed; only the first
//! fetch of a known id is recorded.
//!
//! A delivery report is checked in this order, each with its own answer: a channel that does not
//! exist or takes no delivery reports → 404; no `Authorization: Bearer <secret>`, or another
//! secret than the channel's (their SHA-256 compared in constant time) → 401, before the body is
//! read; a body over [`REPORT_BODY_BYTES`] → 413; a body that is not JSON, or lacks the message
//! id or status at the channel's paths → 400; a status in neither the `delivered` nor the
//! `failed` list → 200 and nothing changes; a message id no notification of the channel was sent
//! with → 404 (a report may overtake the recording of its send; the gateway's retry then finds
//! it); else the notification is `delivered`, or `failed` with the gateway's error → 200.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, ApiState, auth};
use crate::clock::now_ms;
use crate::config::expand_env;
use crate::errors::one_line;
use crate::store::DeliveryReport;
use crate::token;

/// The largest delivery report body accepted.
pub const REPORT_BODY_BYTES: usize = 16 * 1024;
/// At most this much of a gateway's error text is kept.
const MAX_ERROR_CHARS: usize = 200;

/// A transparent 1×1 PNG.
const PIXEL: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63,
    0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60,
    0x82,
];

/// `GET /r/{id}.png`: record the first fetch of a known read-receipt id; the same image always.
pub async fn read_image(State(state): State<ApiState>, Path(file): Path<String>) -> Response {
    if let Some(id) = file.strip_suffix(".png").filter(|id| (1..=128).contains(&id.len())) {
        match state.store.mark_read(&token::sha256_hex(id), now_ms()).await {
            Ok(true) => tracing::info!("a notification e-mail was read"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot record a read receipt"),
        }
    }
    ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store, private")], PIXEL).into_response()
}

/// `POST /ingest/v1/delivery/{channel}`: an SMS gateway's delivery report (see the module doc).
pub async fn delivery_report(
    State(state): State<ApiState>,
    Path(channel_name): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let config = state.config.borrow().clone();
    let Some((channel, reports)) = config.channels.get(&channel_name).and_then(|c| c.delivery_reports.as_ref().map(|r| (c, r))) else {
        return Err(ApiError::not_found(format!("no channel `{channel_name}` takes delivery reports")));
    };
    let secret = expand_env(&reports.secret, process_env).map_err(|e| {
        tracing::error!(channel = %channel.name, error = %e, "a channel's delivery_reports.secret names an environment variable serve does not have; set it and restart");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this channel's delivery reports are not set up on this server")
    })?;
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(auth::bearer);
    if !presented.is_some_and(|p| token::digest_matches(&token::sha256_hex(p), &token::sha256_hex(&secret))) {
        tracing::warn!(channel = %channel.name, "refused a delivery report without the channel's secret");
        return Err(ApiError::unauthorized("send the channel's delivery report secret as `Authorization: Bearer <secret>`"));
    }
    let body = Bytes::from_request(request, &state)
        .await
        .map_err(|e| ApiError::new(e.status(), format!("{}; at most {REPORT_BODY_BYTES} bytes per report", e.body_text())))?;
    let report: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the report is not JSON: {e}")))?;
    let id = reports.id.get(&report).ok_or_else(|| ApiError::bad_request(format!("the report has no message id at `{}`", reports.id)))?;
    let status =
        reports.status.get(&report).ok_or_else(|| ApiError::bad_request(format!("the report has no status at `{}`", reports.status)))?;
    let outcome = if reports.delivered.contains(&status) {
        DeliveryReport::Delivered
    } else if reports.failed.contains(&status) {
        let error = reports.error.as_ref().and_then(|path| path.get(&report)).map(|e| short(&e));
        DeliveryReport::Failed {
            error: match error {
                Some(error) => format!("gateway reported {}: {error}", short(&status)),
                None => format!("gateway reported {}", short(&status)),
            },
        }
    } else {
        return Ok(Json(json!({ "changed": false, "reason": format!("status `{}` is neither delivered nor failed", short(&status)) })));
    };
    if !state.store.record_delivery_report(&channel.name, &id, &outcome, now_ms()).await? {
        return Err(ApiError::not_found(format!(
            "no notification of channel `{}` was sent with message id `{}`",
            channel.name,
            short(&id)
        )));
    }
    let status = match outcome {
        DeliveryReport::Delivered => "delivered",
        DeliveryReport::Failed { .. } => "failed",
    };
    tracing::info!(channel = %channel.name, gateway_id = %short(&id), status, "delivery report recorded");
    Ok(Json(json!({ "changed": true, "status": status })))
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Gateway text as one line of at most [`MAX_ERROR_CHARS`] characters.
fn short(text: &str) -> String {
    one_line(text, MAX_ERROR_CHARS)
}
