//! `POST /ingest/v1/report`: agents push host reports, down-check results and log hits.
//!
//! Order of checks, each with its own answer: no bearer key, or a key no project accepts → 401,
//! decided from the headers alone (the key's SHA-256 is looked up in
//! [`Config::ingest_keys`](crate::config::Config::ingest_keys)), so the body of a client
//! without a valid key is never read; body over [`protocol::MAX_BODY_BYTES`] → 413; unparsable
//! JSON → 400 with serde's message (line and column); a key that is not the named project's (or
//! a project that does not exist — the same answer, so a key cannot probe for project names),
//! compared in constant time with its `ingest_key_sha256` → 401; a server the project does not
//! have → 404 naming it (never created); out-of-range contents → 400 naming the field; the
//! writer not accepting within [`ACCEPT_TIMEOUT`] or the store failing → 503, and the agent
//! keeps its backlog. A 200 means the reports are committed.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use tokio::sync::oneshot;

use super::{ApiError, ApiState, auth};
use crate::collect::assign::assignments;
use crate::collect::writer::{Batch, Source};
use crate::protocol::{self, IngestRequest, IngestResponse};
use crate::token;

/// How long a request waits for the writer to take and commit its batch.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(20);
/// Reports older than this are refused: raw samples are not kept much longer.
const MAX_AGE_MS: i64 = 25 * 3_600_000;
/// Agent clocks may run ahead this much.
const MAX_AHEAD_MS: i64 = 10 * 60_000;
/// Log lines longer than this are cut (the agent cuts too; this bounds what is stored).
const MAX_LINE_CHARS: usize = 4096;

pub async fn report(State(state): State<ApiState>, request: Request) -> Result<Json<IngestResponse>, ApiError> {
    let metrics = &state.metrics;
    let Some(key) = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(auth::bearer) else {
        metrics.ingest_rejected("unauthorized");
        return Err(ApiError::unauthorized("missing ingest key: send `Authorization: Bearer <key>`"));
    };
    let digest = token::sha256_hex(key);
    let config = state.config.borrow().clone();
    // A key no project accepts is refused here, before a byte of the body is read. (Looking the
    // digest up tells a timing observer at most about SHA-256 values, never about a key.)
    if !config.ingest_keys.contains_key(&digest) {
        metrics.ingest_rejected("unauthorized");
        return Err(ApiError::unauthorized("the ingest key is not valid for any project"));
    }
    let body = Bytes::from_request(request, &state).await.map_err(|e| {
        metrics.ingest_rejected("too_large");
        ApiError::new(e.status(), format!("{}; at most {} bytes per request", e.body_text(), protocol::MAX_BODY_BYTES))
    })?;
    let mut request: IngestRequest = serde_json::from_slice(&body).map_err(|e| {
        metrics.ingest_rejected("malformed");
        ApiError::bad_request(format!("malformed report: {e}"))
    })?;
    let expected = config.projects.get(&request.project).and_then(|p| p.ingest_key_sha256.as_deref());
    if !expected.is_some_and(|e| token::digest_matches(&digest, e)) {
        metrics.ingest_rejected("unauthorized");
        return Err(ApiError::unauthorized(format!("the ingest key is not valid for project `{}`", request.project)));
    }
    let project = &config.projects[&request.project];
    if !project.servers.contains_key(&request.server) {
        metrics.ingest_rejected("unknown_server");
        tracing::warn!(project = %request.project, server = %request.server, "report from a server the configuration does not have");
        return Err(ApiError::not_found(format!(
            "unknown server `{}` in project `{}`: add a Server object to the configuration tree",
            request.server, request.project
        )));
    }
    validate(&mut request, crate::clock::now_ms()).map_err(|e| {
        metrics.ingest_rejected("invalid");
        ApiError::bad_request(e)
    })?;
    if request.dropped > 0 {
        metrics.agent_dropped(request.dropped);
        tracing::warn!(project = %request.project, server = %request.server, dropped = request.dropped,
            "the agent lost reports (full backlog or refused batches)");
    }
    let Some(collector) = state.collector.as_ref() else {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this server does not collect host metrics"));
    };
    let assignments = assignments(&config, &request.project, &request.server);
    let accepted = request.reports.len();
    let (done, stored) = oneshot::channel();
    let batch = Batch {
        project: request.project,
        server: request.server,
        source: Source::Agent,
        reports: request.reports,
        checks: request.checks,
        log_hits: request.log_hits,
        done: Some(done),
    };
    let outcome = tokio::time::timeout(ACCEPT_TIMEOUT, async {
        collector.send(batch).await.map_err(|_| "serve is shutting down".to_string())?;
        stored.await.map_err(|_| "serve is shutting down".to_string())?
    })
    .await;
    match outcome {
        Ok(Ok(())) => Ok(Json(IngestResponse { accepted, assignments })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "report not stored; the agent will send it again");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the report could not be stored now; send it again later"))
        }
        Err(_) => {
            metrics.ingest_rejected("overloaded");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the collector is busy; send the report again later"))
        }
    }
}

/// Bounds on what one request may carry; log lines are cut rather than refused.
fn validate(request: &mut IngestRequest, now_ms: i64) -> Result<(), String> {
    if request.reports.len() > protocol::MAX_REPORTS_PER_REQUEST {
        return Err(format!("{} reports in one request; at most {}", request.reports.len(), protocol::MAX_REPORTS_PER_REQUEST));
    }
    if request.checks.len() > protocol::MAX_EVENTS_PER_REQUEST || request.log_hits.len() > protocol::MAX_EVENTS_PER_REQUEST {
        return Err(format!("more than {} down-check results or log hits in one request", protocol::MAX_EVENTS_PER_REQUEST));
    }
    let time_ok = |at_ms: i64| (now_ms - MAX_AGE_MS..=now_ms + MAX_AHEAD_MS).contains(&at_ms);
    for (i, r) in request.reports.iter().enumerate() {
        if !time_ok(r.at_ms) {
            return Err(format!("reports[{i}].at_ms {} is more than 25 h old or 10 min ahead of serve's clock", r.at_ms));
        }
        if r.metrics.len() > protocol::MAX_METRICS_PER_REPORT {
            return Err(format!("reports[{i}] has {} metrics; at most {}", r.metrics.len(), protocol::MAX_METRICS_PER_REPORT));
        }
        if r.processes.len() > protocol::MAX_PROCESSES_PER_REPORT {
            return Err(format!("reports[{i}] has {} processes; at most {}", r.processes.len(), protocol::MAX_PROCESSES_PER_REPORT));
        }
        if let Some(m) = r.metrics.iter().find(|m| !m.value.is_finite()) {
            return Err(format!("reports[{i}]: metric `{}` is not a finite number", m.name));
        }
        if r.processes.iter().any(|p| !p.memory.is_finite() || p.cpu.is_some_and(|c| !c.is_finite())) {
            return Err(format!("reports[{i}]: a process has a cpu or memory value that is not a finite number"));
        }
    }
    for (i, c) in request.checks.iter().enumerate() {
        if !time_ok(c.at_ms) {
            return Err(format!("checks[{i}].at_ms {} is out of range", c.at_ms));
        }
    }
    for (i, hit) in request.log_hits.iter_mut().enumerate() {
        if !time_ok(hit.at_ms) {
            return Err(format!("log_hits[{i}].at_ms {} is out of range", hit.at_ms));
        }
        if let Some((cut, _)) = hit.line.char_indices().nth(MAX_LINE_CHARS) {
            hit.line.truncate(cut);
        }
    }
    Ok(())
}
