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
use crate::catalog;
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

/// Bounds on what one request may carry, each refused with the field, the value and the bound;
/// log lines are cut rather than refused.
fn validate(request: &mut IngestRequest, now_ms: i64) -> Result<(), String> {
    use protocol::*;
    at_most("reports in one request", request.reports.len(), MAX_REPORTS_PER_REQUEST)?;
    at_most("down-check results in one request", request.checks.len(), MAX_EVENTS_PER_REQUEST)?;
    at_most("log hits in one request", request.log_hits.len(), MAX_EVENTS_PER_REQUEST)?;
    if request.dropped > MAX_DROPPED_PER_REQUEST {
        return Err(format!("dropped {} is more than an agent can lose; at most {MAX_DROPPED_PER_REQUEST}", request.dropped));
    }
    let time_ok = |at_ms: i64| (now_ms - MAX_AGE_MS..=now_ms + MAX_AHEAD_MS).contains(&at_ms);
    for (i, r) in request.reports.iter().enumerate() {
        if !time_ok(r.at_ms) {
            return Err(format!("reports[{i}].at_ms {} is more than 25 h old or 10 min ahead of serve's clock", r.at_ms));
        }
        at_most(&format!("metrics in reports[{i}]"), r.metrics.len(), MAX_METRICS_PER_REPORT)?;
        at_most(&format!("processes in reports[{i}]"), r.processes.len(), MAX_PROCESSES_PER_REPORT)?;
        at_most(&format!("process_counts entries in reports[{i}]"), r.process_counts.len(), MAX_PROCESS_COUNTS_PER_REPORT)?;
        at_most(&format!("facts.ips in reports[{i}]"), r.facts.ips.len(), MAX_IPS_PER_REPORT)?;
        at_most(&format!("skipped_mounts in reports[{i}]"), r.skipped_mounts.len(), MAX_SKIPPED_MOUNTS_PER_REPORT)?;
        let f = &r.facts;
        for (field, text) in [("os", &f.os), ("kernel", &f.kernel), ("cpu_vendor", &f.cpu_vendor), ("cpu_model", &f.cpu_model)] {
            short(&format!("reports[{i}].facts.{field}"), text, MAX_FACT_BYTES)?;
        }
        for m in &r.metrics {
            // Every name is the catalog's: deserializing refused any other.
            if let Some(metric) = catalog::lookup(m.name)
                && !metric.unit.admits(m.value)
            {
                let subject = m.subject.as_deref().map(|s| format!(" of `{s}`")).unwrap_or_default();
                return Err(format!("reports[{i}]: metric `{}`{subject} is {}; it must be {}", m.name, m.value, metric.unit.range_words()));
            }
            if let Some(subject) = &m.subject {
                short(&format!("reports[{i}]: the subject of metric `{}`", m.name), subject, MAX_SUBJECT_BYTES)?;
            }
        }
        for (j, p) in r.processes.iter().enumerate() {
            short(&format!("reports[{i}].processes[{j}].name"), &p.name, MAX_NAME_BYTES)?;
            short(&format!("reports[{i}].processes[{j}].user"), &p.user, MAX_NAME_BYTES)?;
            if !catalog::Unit::Percent.admits(p.memory) || p.cpu.is_some_and(|c| !(0.0..=f64::MAX).contains(&c)) {
                return Err(format!(
                    "reports[{i}].processes[{j}] (`{}`): cpu {:?} or memory {} is not a share (cpu 0 or more % of a core, memory 0–100 %)",
                    p.name, p.cpu, p.memory
                ));
            }
        }
        for name in r.process_counts.keys() {
            short(&format!("reports[{i}]: a process_counts name"), name, MAX_NAME_BYTES)?;
        }
        for (j, m) in r.skipped_mounts.iter().enumerate() {
            short(&format!("reports[{i}].skipped_mounts[{j}].mount_point"), &m.mount_point, MAX_SUBJECT_BYTES)?;
            short(&format!("reports[{i}].skipped_mounts[{j}].fs_type"), &m.fs_type, MAX_SUBJECT_BYTES)?;
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

/// `Err` naming `what` when there are more than `max` of it.
fn at_most(what: &str, count: usize, max: usize) -> Result<(), String> {
    if count > max { Err(format!("{count} {what}; at most {max}")) } else { Ok(()) }
}

/// `Err` naming `what` when `text` is longer than `max` bytes.
fn short(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max { Err(format!("{what} is {} bytes long; at most {max}", text.len())) } else { Ok(()) }
}
