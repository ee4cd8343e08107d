//! The one place that wires configuration to running tasks. Each new revision is compiled as a
//! whole (only the files that changed are parsed again). A rejected revision stops nothing: it
//! is recorded with its diagnostics and the last good one keeps running. An accepted one
//! replaces the running configuration, and running state is lined up with it by identity — no
//! separate diff is computed:
//!
//! - the engine gets it first and retires the alert instances it no longer keeps alive
//!   ([`crate::alert::retire`]); every other instance keeps its counters and open alert;
//! - the prober is given every active monitor: one whose spec is unchanged keeps its timer, a
//!   changed one is rescheduled, one no longer wanted is stopped;
//! - the API, the scraper and the outbox see the new configuration through a watch channel.

pub mod source;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::alert::retire::monitor_active;
use crate::clock::now_ms;
use crate::config::Config;
use crate::engine::Applied;
use crate::lint;
use crate::metrics::Metrics;
use crate::probe::{MonitorKey, MonitorSpec, Prober};
use crate::store::{RevisionRecord, Store};
use source::Revision;

pub struct Reconciler {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub prober: Prober,
    pub engine: mpsc::Sender<Applied>,
    pub config: watch::Sender<Arc<Config>>,
    /// The monitors the prober runs now.
    running: HashSet<MonitorKey>,
    applied: Option<String>,
}

/// Every monitor a configuration probes, with what the prober needs to run it.
pub fn monitor_specs(config: &Config) -> Vec<MonitorSpec> {
    let mut specs = Vec::new();
    for project in config.projects.values() {
        let approved = config.approved_networks(project).to_vec();
        for monitor in project.port_monitors.values().filter(|m| monitor_active(project, m)) {
            specs.push(MonitorSpec {
                key: MonitorKey { project: project.name.clone(), name: monitor.name.clone() },
                host: monitor.host.clone(),
                ports: monitor.ports.clone(),
                interval: monitor.interval.0,
                timeout: monitor.timeout.0,
                approved: approved.clone(),
            });
        }
    }
    specs
}

impl Reconciler {
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        prober: Prober,
        engine: mpsc::Sender<Applied>,
        config: watch::Sender<Arc<Config>>,
    ) -> Reconciler {
        Reconciler { store, metrics, prober, engine, config, running: HashSet::new(), applied: None }
    }

    /// Apply revisions until cancelled, then stop the prober and wait for it.
    pub async fn run(mut self, mut revisions: mpsc::Receiver<Revision>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                revision = revisions.recv() => match revision {
                    Some(revision) => self.apply(revision).await,
                    None => break,
                },
            }
        }
        self.prober.shutdown().await;
    }

    /// Validate and apply one revision.
    pub async fn apply(&mut self, revision: Revision) {
        let Revision { id: revision, loaded } = revision;
        let at_ms = now_ms();
        let diagnostics = lint::to_json(&loaded.diagnostics, &loaded.sources, loaded.sources.tree_files);
        if loaded.has_errors() {
            let (errors, _) = lint::counts(&loaded.diagnostics);
            let keeping = self.applied.as_deref().unwrap_or("nothing");
            tracing::warn!(%revision, errors, keeping, "revision rejected; the last good revision keeps running");
            for d in loaded.diagnostics.iter().filter(|d| d.level == crate::config::Level::Error).take(20) {
                let place = d.location.map(|l| format!("{}:{}:{}", loaded.sources.display(l.file), l.line, l.col)).unwrap_or_default();
                tracing::warn!(%revision, rule = d.rule, %place, "{}", d.message);
            }
            self.metrics.rejected();
            self.record(RevisionRecord { revision, at_ms, applied: false, diagnostics }).await;
            return;
        }
        let config = Arc::new(loaded.config);
        // The engine learns the new configuration before the prober can produce results for it.
        if self.engine.send(Applied { config: Arc::clone(&config), revision: revision.clone() }).await.is_err() {
            return; // shutting down
        }
        let specs = monitor_specs(&config);
        let wanted: HashSet<MonitorKey> = specs.iter().map(|s| s.key.clone()).collect();
        let removed: Vec<MonitorKey> = self.running.difference(&wanted).cloned().collect();
        let added = wanted.difference(&self.running).count();
        for key in &removed {
            self.prober.remove(key);
            self.metrics.forget_monitor(&key.project, &key.name);
        }
        for spec in specs {
            self.prober.upsert(spec); // unchanged specs keep their schedule
        }
        self.running = wanted;
        // Freeing a 10 000-server configuration takes tens of milliseconds: not on this path.
        let previous = self.config.send_replace(config);
        tokio::task::spawn_blocking(move || drop(previous));
        self.metrics.applied(&revision, at_ms);
        tracing::info!(%revision, monitors = self.running.len(), added, removed = removed.len(), "revision applied");
        self.applied = Some(revision.clone());
        self.record(RevisionRecord { revision, at_ms, applied: true, diagnostics }).await;
    }

    async fn record(&self, record: RevisionRecord) {
        if let Err(e) = self.store.record_revision(&record).await {
            tracing::error!(error = %e, revision = %record.revision, "cannot record the revision in the store");
        }
    }
}
