//! The collector's single writer: host reports from the ingest endpoint and the node_exporter
//! scraper are group-committed — every batch waiting in the queue goes into one store
//! transaction — then acknowledged, shown in the live view and handed to the alert engine.
//!
//! An agent forgets a report only after its request was acknowledged, and the acknowledgement
//! is sent only after the commit, so a serve crash loses nothing an agent still holds.
//!
//! On PostgreSQL a commit mostly waits for the database to flush its log, so up to
//! [`Store::concurrent_writes`] commits are in flight at once: while one waits, the next group
//! is collected and sent, and the database flushes several in one go. Their outcomes are taken
//! in the order they were sent, so the live view and the alert engine see every server's reports
//! in the order they arrived. (SQLite writes one transaction at a time, so there it is one.)

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::caps::{Caps, Dropped, SubjectCaps};
use super::live::LiveServers;
use crate::metrics::Metrics;
use crate::protocol::{CheckResult, LogHit, Report};
use crate::store::{Store, StoreError, StoredReport};

/// Where a batch came from (a label of `watchkeeper_ingest_reports_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Agent,
    NodeExporter,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Agent => "agent",
            Source::NodeExporter => "node_exporter",
        }
    }
}

/// What one request (or one scrape) delivers for one server.
#[derive(Debug)]
pub struct Batch {
    pub project: String,
    pub server: String,
    pub source: Source,
    /// Oldest first.
    pub reports: Vec<Report>,
    pub checks: Vec<CheckResult>,
    pub log_hits: Vec<LogHit>,
    /// Told when the batch is stored (`Ok`) or could not be (`Err`, the reason for the log).
    pub done: Option<oneshot::Sender<Result<(), String>>>,
}

/// A stored batch, for the alert engine.
#[derive(Debug, Clone)]
pub struct HostInput {
    pub project: String,
    pub server: String,
    pub reports: Vec<Arc<Report>>,
    pub checks: Vec<CheckResult>,
    pub log_hits: Vec<LogHit>,
    /// When serve received it.
    pub received_ms: i64,
}

/// Reports committed in one transaction at most; more waiting batches go into the next.
const MAX_REPORTS_PER_COMMIT: usize = 2_000;

/// Run until cancelled or until every sender is gone. Each report first loses the subjects
/// beyond its server's `caps`.
pub async fn run(
    store: Store,
    live: LiveServers,
    mut batches: mpsc::Receiver<Batch>,
    engine: mpsc::Sender<HostInput>,
    metrics: Arc<Metrics>,
    caps: SubjectCaps,
    cancel: CancellationToken,
) {
    let mut caps = Caps::new(caps);
    let most_in_flight = store.concurrent_writes().max(1);
    // Commits sent and not yet answered, oldest first.
    let mut in_flight: VecDeque<JoinHandle<Committed>> = VecDeque::new();
    let mut open = true;
    loop {
        if !open && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            done = async { in_flight.front_mut().expect("a commit in flight").await }, if !in_flight.is_empty() => {
                in_flight.pop_front();
                let Ok((pending, stored)) = done else { return }; // the runtime is shutting down
                if !finish(pending, stored, &live, &engine, &metrics).await {
                    return; // the engine stopped: serve is shutting down
                }
            }
            first = batches.recv(), if open && in_flight.len() < most_in_flight => {
                let Some(mut first) = first else {
                    open = false;
                    continue;
                };
                cap(&mut caps, &mut first, &metrics);
                let mut pending = vec![first];
                let mut reports = pending[0].reports.len();
                while reports < MAX_REPORTS_PER_COMMIT {
                    match batches.try_recv() {
                        Ok(mut b) => {
                            cap(&mut caps, &mut b, &metrics);
                            reports += b.reports.len();
                            pending.push(b);
                        }
                        Err(_) => break,
                    }
                }
                let store = store.clone();
                in_flight.push_back(tokio::spawn(async move {
                    let stored = commit(&store, &pending).await;
                    (pending, stored)
                }));
            }
        }
    }
}

/// A commit's batches and whether they were stored.
type Committed = (Vec<Batch>, Result<(), StoreError>);

/// Store the reports of `pending` in one transaction.
async fn commit(store: &Store, pending: &[Batch]) -> Result<(), StoreError> {
    let rows: Vec<StoredReport> = pending
        .iter()
        .flat_map(|b| b.reports.iter().map(|report| StoredReport { project: &b.project, server: &b.server, report }))
        .collect();
    if rows.is_empty() { Ok(()) } else { store.insert_reports(&rows).await }
}

/// Answer each batch of a commit and, when it was stored, show it in the live view and hand it
/// to the alert engine. Returns false once the engine is gone.
async fn finish(
    pending: Vec<Batch>,
    stored: Result<(), StoreError>,
    live: &LiveServers,
    engine: &mpsc::Sender<HostInput>,
    metrics: &Metrics,
) -> bool {
    let received_ms = crate::clock::now_ms();
    for batch in pending {
        let Batch { project, server, source, reports, checks, log_hits, done } = batch;
        if let Err(e) = &stored {
            metrics.ingest_rejected("store");
            if let Some(done) = done {
                let _ = done.send(Err(e.to_string()));
            }
            continue;
        }
        metrics.ingested(source.as_str(), reports.len() as u64);
        let reports: Vec<Arc<Report>> = reports.into_iter().map(Arc::new).collect();
        if let Some(newest) = reports.iter().max_by_key(|r| r.at_ms.min(received_ms)) {
            live.update(&project, &server, Arc::clone(newest), received_ms);
        }
        if let Some(done) = done {
            let _ = done.send(Ok(()));
        }
        let input = HostInput { project, server, reports, checks, log_hits, received_ms };
        if engine.send(input).await.is_err() {
            return false;
        }
    }
    if let Err(e) = stored {
        tracing::error!(error = %e, "could not store host reports; the agents will send them again");
    }
    true
}

/// Drop from `batch`'s reports the subjects beyond its server's caps: counted, and warned about
/// once per server per minute.
fn cap(caps: &mut Caps, batch: &mut Batch, metrics: &Metrics) {
    let now = crate::clock::now_ms();
    let mut dropped = [0u64; 4];
    for report in &mut batch.reports {
        let d = caps.apply(&batch.project, &batch.server, report, now);
        for (total, n) in dropped.iter_mut().zip(d.0) {
            *total += n;
        }
    }
    let dropped = Dropped(dropped);
    if !dropped.any() {
        return;
    }
    for (kind, n) in dropped.by_kind() {
        metrics.subjects_dropped(kind, n);
    }
    if caps.warn_due(&batch.project, &batch.server, now) {
        let counts: Vec<String> = dropped.by_kind().map(|(kind, n)| format!("{n} {kind}")).collect();
        tracing::warn!(project = %batch.project, server = %batch.server, dropped = %counts.join(", "),
            "a server reported more mounts, devices, interfaces or process names than serve keeps for one server; the rest were dropped (see --max-mounts and the like)");
    }
}
