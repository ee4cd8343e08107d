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
//!
//! A valid revision that would remove more than a share of the running objects at once (a
//! project file emptied or deleted by mistake, a checkout gone wrong) is held instead: recorded
//! as held, shown in the status, and applied only once it has stayed the newest for the hold
//! period — a newer revision replaces it — or at once when the operator allows mass removals
//! ([`MassRemoval`]).

pub mod source;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::alert::retire::monitor_active;
use crate::clock::now_ms;
use crate::config::Config;
use crate::config::diff::object_keys;
use crate::engine::Applied;
use crate::lease::shard_of;
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
    mass_removal: MassRemoval,
    /// A revision held for removing too much, and when it is applied if nothing replaces it.
    held: Option<(Accepted, tokio::time::Instant)>,
}

/// When a revision removes "too much at once", and what then happens to it.
#[derive(Debug, Clone, Copy)]
pub struct MassRemoval {
    /// A revision removing more than this percentage of the running objects is held.
    pub share_percent: u8,
    /// How long a held revision must stay the newest before it is applied.
    pub hold: Duration,
    /// Apply such revisions at once (logged), holding nothing.
    pub allow: bool,
}

impl Default for MassRemoval {
    fn default() -> MassRemoval {
        MassRemoval { share_percent: 50, hold: Duration::from_secs(5 * 60), allow: false }
    }
}

/// A valid revision, compiled, not applied yet.
struct Accepted {
    revision: String,
    config: Arc<Config>,
    /// Lint's JSON report of its warnings.
    diagnostics: serde_json::Value,
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
                shard: shard_of(&project.name, monitor.server.as_deref().unwrap_or(&monitor.name)),
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
        Reconciler {
            store,
            metrics,
            prober,
            engine,
            config,
            running: HashSet::new(),
            applied: None,
            mass_removal: MassRemoval::default(),
            held: None,
        }
    }

    /// Hold (or allow) mass removals as `mass_removal` says, instead of the defaults.
    pub fn with_mass_removal(self, mass_removal: MassRemoval) -> Reconciler {
        Reconciler { mass_removal, ..self }
    }

    /// Apply revisions until cancelled, then stop the prober and wait for it.
    pub async fn run(mut self, mut revisions: mpsc::Receiver<Revision>, cancel: CancellationToken) {
        loop {
            let held_until = self.held.as_ref().map(|(_, until)| *until);
            tokio::select! {
                _ = cancel.cancelled() => break,
                revision = revisions.recv() => match revision {
                    Some(revision) => self.apply(revision).await,
                    None => break,
                },
                _ = tokio::time::sleep_until(held_until.unwrap_or_else(tokio::time::Instant::now)), if held_until.is_some() => {
                    if let Some((accepted, _)) = self.held.take() {
                        tracing::warn!(revision = %accepted.revision, hold = ?self.mass_removal.hold,
                            "applying the held revision: it stayed the newest for the hold period");
                        self.install(accepted).await;
                    }
                }
            }
        }
        self.prober.shutdown().await;
    }

    /// Validate and apply one revision — or hold it, when it removes too much at once. A newer
    /// revision replaces a held one, whatever becomes of it.
    pub async fn apply(&mut self, revision: Revision) {
        self.held = None;
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
            self.record(RevisionRecord { revision, at_ms, applied: false, diagnostics, held_until_ms: None }).await;
            return;
        }
        let accepted = Accepted { revision, config: Arc::new(loaded.config), diagnostics };
        let (removed, of) = self.removal(&accepted.config);
        let MassRemoval { share_percent, allow, .. } = self.mass_removal;
        if removed * 100 > usize::from(share_percent) * of {
            let share = removed * 100 / of;
            if allow {
                tracing::warn!(revision = %accepted.revision, removed, of, "applying a revision that removes {share} % of the objects at once, as --allow-mass-removal says");
            } else {
                self.hold(accepted, removed, of, at_ms).await;
                return;
            }
        }
        self.install(accepted).await;
    }

    /// How many of the running configuration's objects `config` no longer has, of how many.
    fn removal(&self, config: &Config) -> (usize, usize) {
        let before = object_keys(&self.config.borrow());
        let after = object_keys(config);
        (before.difference(&after).count(), before.len())
    }

    /// Keep a revision that removes too much from being applied for the hold period, and
    /// record that (with why) for the status.
    async fn hold(&mut self, mut accepted: Accepted, removed: usize, of: usize, at_ms: i64) {
        let hold = self.mass_removal.hold;
        let until_ms = at_ms.saturating_add(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX));
        let message = format!(
            "removes {removed} of the {of} running objects ({} %) at once, more than {} %: held, and applied once it has \
             stayed the newest revision for {hold:?} (serve --allow-mass-removal applies such revisions at once)",
            removed * 100 / of,
            self.mass_removal.share_percent,
        );
        tracing::warn!(revision = %accepted.revision, removed, of, keeping = self.applied.as_deref().unwrap_or("nothing"), "{message}");
        if let Some(list) = accepted.diagnostics.get_mut("diagnostics").and_then(serde_json::Value::as_array_mut) {
            list.push(serde_json::json!({ "severity": "warning", "rule": "mass-removal", "message": message }));
        }
        let record = RevisionRecord {
            revision: accepted.revision.clone(),
            at_ms,
            applied: false,
            diagnostics: accepted.diagnostics.clone(),
            held_until_ms: Some(until_ms),
        };
        self.record(record).await;
        self.held = Some((accepted, tokio::time::Instant::now() + hold));
    }

    /// Replace the running configuration with an accepted one.
    async fn install(&mut self, accepted: Accepted) {
        let Accepted { revision, config, diagnostics } = accepted;
        let at_ms = now_ms();
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
        self.record(RevisionRecord { revision, at_ms, applied: true, diagnostics, held_until_ms: None }).await;
    }

    async fn record(&self, record: RevisionRecord) {
        if let Err(e) = self.store.record_revision(&record).await {
            tracing::error!(error = %e, revision = %record.revision, "cannot record the revision in the store");
        }
    }
}
