//! The alert engine: the one writer of alert state. It turns probe results into observations
//! for the pure state machine in [`crate::alert`], and writes each transition, the instance's
//! new state and the notifications it causes to the store in one transaction; then wakes the
//! outbox. It also resolves the alerts of monitors a new revision removed or paused.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::alert::{self, AlertState, Observation, RuleKind, Severity, Transition};
use crate::config::model::{Config, PortMonitor, Project};
use crate::metrics::Metrics;
use crate::notify::{self, AlertMessage, MessageKind};
use crate::probe::PortResult;
use crate::store::{AlertChange, InstanceKey, ProbeRecord, Store, StoreError, StoredInstance};

/// A new configuration for the engine, with the revision that brought it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub config: Arc<Config>,
    pub revision: String,
}

/// What the engine remembers per alert instance.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Instance {
    state: AlertState,
    open_alert_id: Option<i64>,
}

pub struct Engine {
    store: Store,
    metrics: Arc<Metrics>,
    /// Woken whenever notifications were enqueued.
    outbox: Arc<Notify>,
    config: Arc<Config>,
    revision: String,
    instances: HashMap<InstanceKey, Instance>,
}

/// The rule id of a port monitor's instances.
pub fn port_rule(monitor: &str) -> String {
    format!("port:{monitor}")
}

/// Is this monitor probed? Not when the server it watches is paused.
pub fn monitor_active(project: &Project, monitor: &PortMonitor) -> bool {
    monitor.server.as_ref().is_none_or(|s| project.servers.get(s).is_none_or(|srv| !srv.paused))
}

/// Why a configuration retires a port-monitor alert instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// The monitor or the port is gone (or the whole project).
    Removed,
    /// The monitor watches a paused server.
    Paused,
}

impl Retired {
    pub fn as_str(self) -> &'static str {
        match self {
            Retired::Removed => "removed",
            Retired::Paused => "paused",
        }
    }
}

/// The port-monitor alert instances a configuration keeps alive. The engine retires every other
/// `port:` instance when it applies the configuration; `plan --against` uses the same rule to
/// list the firing alerts a change would drop, so the two cannot disagree.
#[derive(Debug, Default)]
pub struct PortInstances {
    /// (project, rule, subject = port) of every port of every active monitor.
    live: BTreeSet<(String, String, String)>,
    /// (project, rule) of the monitors whose server is paused.
    paused: BTreeSet<(String, String)>,
}

impl PortInstances {
    pub fn of(config: &Config) -> PortInstances {
        let mut out = PortInstances::default();
        for project in config.projects.values() {
            for monitor in project.port_monitors.values() {
                if !monitor_active(project, monitor) {
                    out.paused.insert((project.name.clone(), port_rule(&monitor.name)));
                    continue;
                }
                for port in &monitor.ports {
                    out.live.insert((project.name.clone(), port_rule(&monitor.name), port.to_string()));
                }
            }
        }
        out
    }

    /// Whether (and why) the instance (`project`, `rule`, `subject`) is retired under this
    /// configuration; `None` when it lives on or is not a port-monitor instance.
    pub fn retires(&self, project: &str, rule: &str, subject: &str) -> Option<Retired> {
        if !rule.starts_with("port:") || self.live.contains(&(project.to_string(), rule.to_string(), subject.to_string())) {
            return None;
        }
        Some(if self.paused.contains(&(project.to_string(), rule.to_string())) { Retired::Paused } else { Retired::Removed })
    }
}

impl Engine {
    /// Resume from the store: every persisted instance, with its counters and open alert.
    pub async fn load(store: Store, metrics: Arc<Metrics>, outbox: Arc<Notify>) -> Result<Engine, StoreError> {
        let instances = store
            .load_instances()
            .await?
            .into_iter()
            .map(|StoredInstance { key, state, open_alert_id }| (key, Instance { state, open_alert_id }))
            .collect();
        let engine = Engine { store, metrics, outbox, config: Arc::new(Config::default()), revision: String::new(), instances };
        engine.update_firing_gauge();
        Ok(engine)
    }

    /// Run until cancelled: configurations first (so results of a new monitor find it), then
    /// probe results. Store errors are logged and the batch retried later by the next results;
    /// the state machine's state is only kept in memory once the store accepted it.
    pub async fn run(
        mut self,
        mut configs: mpsc::Receiver<Applied>,
        mut results: mpsc::Receiver<Vec<PortResult>>,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(applied) = configs.recv() => {
                    if let Err(e) = self.apply_config(applied).await {
                        tracing::error!(error = %e, "could not record alerts resolved by the new revision");
                    }
                }
                Some(batch) = results.recv() => {
                    if let Err(e) = self.observe(batch).await {
                        tracing::error!(error = %e, "could not record probe results");
                    }
                }
                else => break,
            }
        }
    }

    /// Take a new configuration; resolve instances whose monitor or port is gone or paused.
    pub async fn apply_config(&mut self, applied: Applied) -> Result<(), StoreError> {
        self.config = applied.config;
        self.revision = applied.revision;
        let now_ms = now_ms();
        let ports = PortInstances::of(&self.config);
        let gone: Vec<(InstanceKey, Retired)> =
            self.instances.keys().filter_map(|k| ports.retires(&k.project, &k.rule, &k.subject).map(|why| (k.clone(), why))).collect();
        for (key, why) in gone {
            let reason = format!("{} in {}", why.as_str(), self.revision);
            self.retire(&key, &reason, now_ms).await?;
        }
        self.update_firing_gauge();
        Ok(())
    }

    /// Close an instance for good: resolve its open alert (notifying, as a resolve) and forget it.
    async fn retire(&mut self, key: &InstanceKey, reason: &str, now_ms: i64) -> Result<(), StoreError> {
        let Some(instance) = self.instances.get(key).copied() else { return Ok(()) };
        let (change, notifications) = match instance.state.phase {
            alert::Phase::Firing { since_ms, severity } => {
                let msg = AlertMessage {
                    kind: MessageKind::Resolved,
                    severity,
                    project: key.project.clone(),
                    server: (!key.server.is_empty()).then(|| key.server.clone()),
                    host: String::new(),
                    what: describe(key),
                    detail: reason.to_string(),
                    started_at_ms: since_ms,
                    at_ms: now_ms,
                    alert_id: instance.open_alert_id,
                };
                let notifications = if self.config.projects.contains_key(&key.project) {
                    notify::build_notifications(&self.config, &key.project, &msg, None, None, now_ms)
                } else {
                    Vec::new()
                };
                (Some(AlertChange::Resolve { at_ms: now_ms, reason: reason.to_string() }), notifications)
            }
            _ => (None, Vec::new()),
        };
        self.store.apply_alert(key, &AlertState::default(), instance.open_alert_id, change.as_ref(), &notifications, now_ms).await?;
        self.instances.remove(key);
        if !notifications.is_empty() {
            self.outbox.notify_one();
        }
        tracing::info!(project = %key.project, rule = %key.rule, subject = %key.subject, reason, "alert instance retired");
        Ok(())
    }

    /// Record a batch of probe results and advance their instances.
    pub async fn observe(&mut self, batch: Vec<PortResult>) -> Result<(), StoreError> {
        let records: Vec<ProbeRecord> = batch
            .iter()
            .map(|r| ProbeRecord {
                project: r.key.project.clone(),
                monitor: r.key.name.clone(),
                host: r.host.clone(),
                port: r.port,
                at_ms: r.at_ms,
                ok: r.outcome.ok,
                latency_ms: r.outcome.ok.then(|| r.outcome.latency.as_millis().min(u32::MAX as u128) as u32),
                error_kind: r.outcome.error.as_ref().map(|e| e.kind.as_str().to_string()),
                error: r.outcome.error.as_ref().map(|e| e.message.clone()),
            })
            .collect();
        self.store.insert_probe_results(&records).await?;
        let mut notified = false;
        for result in &batch {
            let kind = result.outcome.error.as_ref().map_or("ok", |e| e.kind.as_str());
            self.metrics.record_probe(&result.key.project, &result.key.name, kind, result.outcome.latency.as_secs_f64());
            notified |= self.observe_one(result).await?;
        }
        if notified {
            self.outbox.notify_one();
        }
        self.update_firing_gauge();
        Ok(())
    }

    async fn observe_one(&mut self, result: &PortResult) -> Result<bool, StoreError> {
        let config = Arc::clone(&self.config);
        let Some(project) = config.projects.get(&result.key.project) else { return Ok(false) };
        let Some(monitor) = project.port_monitors.get(&result.key.name) else { return Ok(false) };
        if !monitor.ports.contains(&result.port) || !monitor_active(project, monitor) {
            return Ok(false); // a result from before the revision that removed it
        }
        let key = InstanceKey {
            project: project.name.clone(),
            server: monitor.server.clone().unwrap_or_default(),
            rule: port_rule(&monitor.name),
            subject: result.port.to_string(),
        };
        let before = self.instances.get(&key).copied().unwrap_or(Instance { state: AlertState::default(), open_alert_id: None });
        let rule = RuleKind::Counted { failures: monitor.failures, recoveries: monitor.recoveries };
        let observation = Observation::Check((!result.outcome.ok).then_some(Severity::Fatal));
        let (state, transition) = alert::step(before.state, rule, observation, result.at_ms);
        if state == before.state && transition.is_none() {
            return Ok(false);
        }
        let detail = result.outcome.error.as_ref().map_or_else(|| "connection succeeded".to_string(), |e| e.message.clone());
        let what = format!("port {} of {} ({})", result.port, monitor.name, monitor.host);
        let (change, kind) = match transition {
            None => (None, None),
            Some(Transition::Fired { severity, since_ms }) => (
                Some(AlertChange::Open {
                    severity,
                    started_at_ms: since_ms,
                    message: format!("{what} is down: {detail}"),
                    host: monitor.host.clone(),
                    snapshot: serde_json::json!({}),
                }),
                Some((MessageKind::Fired, severity, since_ms)),
            ),
            Some(Transition::Escalated { to, .. }) => {
                (Some(AlertChange::Escalate { severity: to }), Some((MessageKind::Escalated, to, firing_since(&before.state))))
            }
            Some(Transition::Resolved { since_ms, severity }) => (
                Some(AlertChange::Resolve { at_ms: result.at_ms, reason: "recovered".into() }),
                Some((MessageKind::Resolved, severity, since_ms)),
            ),
            Some(Transition::Event { .. }) => (None, None),
        };
        let notifications = match kind {
            None => Vec::new(),
            Some((kind, severity, since_ms)) => {
                let msg = AlertMessage {
                    kind,
                    severity,
                    project: project.name.clone(),
                    server: monitor.server.clone(),
                    host: monitor.host.clone(),
                    what,
                    detail,
                    started_at_ms: since_ms,
                    at_ms: result.at_ms,
                    alert_id: before.open_alert_id,
                };
                let suppressed = self.suppression(project, monitor.server.as_deref(), result.at_ms);
                notify::build_notifications(&config, &project.name, &msg, Some(monitor), suppressed.as_deref(), result.at_ms)
            }
        };
        let open_alert_id =
            self.store.apply_alert(&key, &state, before.open_alert_id, change.as_ref(), &notifications, result.at_ms).await?;
        if state == AlertState::default() {
            self.instances.remove(&key);
        } else {
            self.instances.insert(key.clone(), Instance { state, open_alert_id });
        }
        if let Some(t) = transition {
            tracing::info!(project = %key.project, rule = %key.rule, port = %key.subject, transition = ?t, "alert transition");
        }
        Ok(!notifications.is_empty())
    }

    /// Why notifications about `server` are held back now, if they are.
    fn suppression(&self, project: &Project, server: Option<&str>, now_ms: i64) -> Option<String> {
        alert::suppress::suppression(project, server, now_ms, |parent| {
            self.instances.iter().any(|(k, i)| {
                k.project == project.name
                    && k.server == parent
                    && matches!(i.state.phase, alert::Phase::Firing { severity: Severity::Fatal, .. })
            })
        })
    }

    fn update_firing_gauge(&self) {
        let (mut warning, mut fatal) = (0, 0);
        for instance in self.instances.values() {
            match instance.state.phase {
                alert::Phase::Firing { severity: Severity::Warning, .. } => warning += 1,
                alert::Phase::Firing { severity: Severity::Fatal, .. } => fatal += 1,
                _ => {}
            }
        }
        self.metrics.set_alerts_firing(warning, fatal);
    }
}

fn firing_since(state: &AlertState) -> i64 {
    match state.phase {
        alert::Phase::Firing { since_ms, .. } | alert::Phase::Pending { since_ms, .. } => since_ms,
        alert::Phase::Inactive => 0,
    }
}

/// A human description of an instance from its key alone (used when its monitor is gone).
fn describe(key: &InstanceKey) -> String {
    match key.rule.strip_prefix("port:") {
        Some(monitor) => format!("port {} of {monitor}", key.subject),
        None => format!("{} {}", key.rule, key.subject),
    }
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
