//! The alert engine: the one writer of alert state. It turns probe results into observations
//! for the pure state machine in [`crate::alert`], and writes each transition, the instance's
//! new state and the notifications it causes to the store in one transaction; then wakes the
//! outbox. Host reports, down-check results and log hits from the collector go the same way
//! through the pure rules of [`host`]. It also resolves the alerts of monitors, servers and
//! rules a new revision removed or paused.

pub mod host;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::agent::host::Report;
use crate::alert::{self, AlertState, Observation, RuleKind, Severity, Transition};
use crate::clock::now_ms;
use crate::collect::wire::{CheckResult, Verdict};
use crate::collect::writer::HostInput;
use crate::config::model::{Config, DownCheck, PortMonitor, Project, Server};
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

/// What a transition is about, for its alert row and messages.
struct About<'a> {
    /// The address concerned.
    host: String,
    what: String,
    detail: String,
    /// The port monitor, whose `notify` list adds recipients.
    monitor: Option<&'a PortMonitor>,
    /// The report behind a host observation: a fired alert's snapshot is taken from it.
    report: Option<&'a Report>,
}

pub struct Engine {
    store: Store,
    metrics: Arc<Metrics>,
    /// Woken whenever notifications were enqueued.
    outbox: Arc<Notify>,
    config: Arc<Config>,
    revision: String,
    instances: HashMap<InstanceKey, Instance>,
    /// (project, server) → the (rule, subject) of its instances: a report asks which of its
    /// server's instances it no longer mentions, and must not scan every instance to know.
    by_server: HashMap<(String, String), BTreeSet<(String, String)>>,
    /// When serve last received a report of each (project, server); `no_data` counts from here.
    last_seen: HashMap<(String, String), i64>,
    /// The last boot time each server reported, to see restarts.
    boot_times: HashMap<(String, String), u64>,
    /// Servers that never reported since start are silent since then.
    started_ms: i64,
}

/// How often silent servers are looked for (`no_data`).
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

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

/// The alert instances a configuration keeps alive. The engine retires every other instance
/// when it applies the configuration; `plan --against` uses the same rule to list the firing
/// alerts a change would drop, so the two cannot disagree.
#[derive(Debug)]
pub struct LiveInstances<'a> {
    config: &'a Config,
    /// (project, rule, subject = port) of every port of every active monitor.
    ports: BTreeSet<(String, String, String)>,
    /// (project, rule) of the monitors whose server is paused.
    paused_ports: BTreeSet<(String, String)>,
}

impl<'a> LiveInstances<'a> {
    pub fn of(config: &'a Config) -> LiveInstances<'a> {
        let mut out = LiveInstances { config, ports: BTreeSet::new(), paused_ports: BTreeSet::new() };
        for project in config.projects.values() {
            for monitor in project.port_monitors.values() {
                if !monitor_active(project, monitor) {
                    out.paused_ports.insert((project.name.clone(), port_rule(&monitor.name)));
                    continue;
                }
                for port in &monitor.ports {
                    out.ports.insert((project.name.clone(), port_rule(&monitor.name), port.to_string()));
                }
            }
        }
        out
    }

    /// Whether (and why) the instance is retired under this configuration; `None` when it
    /// lives on.
    pub fn retires(&self, project: &str, server: &str, rule: &str, subject: &str) -> Option<Retired> {
        if rule.starts_with("port:") {
            let key = (project.to_string(), rule.to_string(), subject.to_string());
            if self.ports.contains(&key) {
                return None;
            }
            return Some(if self.paused_ports.contains(&(key.0, key.1)) { Retired::Paused } else { Retired::Removed });
        }
        let Some(p) = self.config.projects.get(project) else { return Some(Retired::Removed) };
        if let Some(name) = rule.strip_prefix("downcheck:") {
            let Some(check) = p.down_checks.get(name).filter(|d| d.target == server && d.port.to_string() == subject) else {
                return Some(Retired::Removed);
            };
            let paused = [&check.detector, &check.target].iter().any(|s| p.servers.get(s.as_str()).is_none_or(|s| s.paused));
            return paused.then_some(Retired::Paused);
        }
        // Every other rule is about a server that must exist and not be paused.
        let Some(srv) = p.servers.get(server) else { return Some(Retired::Removed) };
        if srv.paused {
            return Some(Retired::Paused);
        }
        let policy = host::server_policy(self.config, p, srv);
        let kept = if let Some(metric) = rule.strip_prefix("metric:") {
            policy.is_some_and(|pol| pol.rules.iter().any(|r| r.metric == metric))
        } else if let Some(rest) = rule.strip_prefix("process:") {
            let name = rest.rsplit_once(':').map_or(rest, |(n, _)| n);
            p.process_policies.get(name).is_some_and(|pp| pp.applies_to(server))
        } else if let Some(rest) = rule.strip_prefix("log:") {
            let (name, index) = rest.rsplit_once(':').unwrap_or((rest, ""));
            p.log_policies
                .get(name)
                .is_some_and(|lp| lp.servers.iter().any(|s| s == server) && index.parse::<usize>().is_ok_and(|i| i < lp.rules.len()))
        } else if rule == host::NODATA_RULE {
            policy.is_some_and(|pol| pol.no_data.is_some())
        } else if rule == host::RESTART_RULE {
            policy.is_some_and(|pol| pol.restart)
        } else {
            false // a rule this version does not know
        };
        (!kept).then_some(Retired::Removed)
    }
}

impl Engine {
    /// Resume from the store: every persisted instance, with its counters and open alert.
    pub async fn load(store: Store, metrics: Arc<Metrics>, outbox: Arc<Notify>) -> Result<Engine, StoreError> {
        let stored = store.load_instances().await?;
        let mut engine = Engine {
            store,
            metrics,
            outbox,
            config: Arc::new(Config::default()),
            revision: String::new(),
            by_server: HashMap::new(),
            instances: HashMap::new(),
            last_seen: HashMap::new(),
            boot_times: HashMap::new(),
            started_ms: now_ms(),
        };
        for StoredInstance { key, state, open_alert_id } in stored {
            engine.remember(key, Instance { state, open_alert_id });
        }
        engine.update_firing_gauge();
        Ok(engine)
    }

    /// What serve remembers of a server from before a restart: when it last reported and its
    /// boot time (so a reboot during the restart is still seen, and `no_data` counts on).
    pub fn restore_server(&mut self, project: &str, server: &str, last_report_ms: i64, boot_time: u64) {
        let key = (project.to_string(), server.to_string());
        self.last_seen.insert(key.clone(), last_report_ms);
        self.boot_times.insert(key, boot_time);
    }

    /// Run until cancelled: configurations first (so results of a new monitor find it), then
    /// probe results and host reports, and every [`TICK`] the `no_data` check. Store errors are
    /// logged and the batch retried later by the next results; the state machine's state is
    /// only kept in memory once the store accepted it.
    pub async fn run(
        mut self,
        mut configs: mpsc::Receiver<Applied>,
        mut results: mpsc::Receiver<Vec<PortResult>>,
        mut hosts: mpsc::Receiver<HostInput>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                Some(input) = hosts.recv() => {
                    if let Err(e) = self.observe_host(input).await {
                        tracing::error!(error = %e, "could not record alert changes from host reports");
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.tick(now_ms()).await {
                        tracing::error!(error = %e, "could not record no-data alerts");
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
        let config = Arc::clone(&self.config);
        let live = LiveInstances::of(&config);
        let gone: Vec<(InstanceKey, Retired)> = self
            .instances
            .keys()
            .filter_map(|k| live.retires(&k.project, &k.server, &k.rule, &k.subject).map(|why| (k.clone(), why)))
            .collect();
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
        self.forget(key);
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
        let rule = RuleKind::Counted { failures: monitor.failures, recoveries: monitor.recoveries };
        let observation = Observation::Check((!result.outcome.ok).then_some(Severity::Fatal));
        let about = About {
            host: monitor.host.clone(),
            what: format!("port {} of {} ({})", result.port, monitor.name, monitor.host),
            detail: result.outcome.error.as_ref().map_or_else(|| "connection succeeded".to_string(), |e| e.message.clone()),
            monitor: Some(monitor),
            report: None,
        };
        self.advance(&config, key, rule, observation, result.at_ms, about).await
    }

    /// Step one instance by one observation; record and notify what changed. Returns whether
    /// notifications were enqueued.
    async fn advance(
        &mut self,
        config: &Config,
        key: InstanceKey,
        rule: RuleKind,
        observation: Observation,
        at_ms: i64,
        about: About<'_>,
    ) -> Result<bool, StoreError> {
        let Some(project) = config.projects.get(&key.project) else { return Ok(false) };
        let before = self.instances.get(&key).copied().unwrap_or(Instance { state: AlertState::default(), open_alert_id: None });
        let (state, transition) = alert::step(before.state, rule, observation, at_ms);
        if state == before.state && transition.is_none() {
            return Ok(false);
        }
        let snapshot = || about.report.map_or_else(|| serde_json::json!({}), host::snapshot);
        let change = match transition {
            None => None,
            Some(Transition::Fired { severity, since_ms }) => Some(AlertChange::Open {
                severity,
                started_at_ms: since_ms,
                message: format!("{}: {}", about.what, about.detail),
                host: about.host.clone(),
                snapshot: snapshot(),
            }),
            Some(Transition::Escalated { to, .. }) => Some(AlertChange::Escalate { severity: to }),
            Some(Transition::Resolved { .. }) => Some(AlertChange::Resolve { at_ms, reason: "recovered".into() }),
            Some(Transition::Event { severity }) => Some(AlertChange::Event {
                severity,
                at_ms,
                message: format!("{}: {}", about.what, about.detail),
                host: about.host.clone(),
                snapshot: snapshot(),
            }),
        };
        let notifications = match transition {
            None => Vec::new(),
            Some(t) => {
                let (kind, severity, mut started_at_ms) = MessageKind::of(&t, at_ms);
                if kind == MessageKind::Escalated {
                    started_at_ms = firing_since(&before.state);
                }
                let server = (!key.server.is_empty()).then(|| key.server.clone());
                let msg = AlertMessage {
                    kind,
                    severity,
                    project: project.name.clone(),
                    server: server.clone(),
                    host: about.host.clone(),
                    what: about.what.clone(),
                    detail: about.detail.clone(),
                    started_at_ms,
                    at_ms,
                    alert_id: before.open_alert_id,
                };
                let suppressed = self.suppression(project, server.as_deref(), at_ms);
                notify::build_notifications(config, &project.name, &msg, about.monitor, suppressed.as_deref(), at_ms)
            }
        };
        let open_alert_id = self.store.apply_alert(&key, &state, before.open_alert_id, change.as_ref(), &notifications, at_ms).await?;
        if state == AlertState::default() {
            self.forget(&key);
        } else {
            self.remember(key.clone(), Instance { state, open_alert_id });
        }
        if let Some(t) = transition {
            tracing::info!(project = %key.project, server = %key.server, rule = %key.rule, subject = %key.subject, transition = ?t, "alert transition");
        }
        Ok(!notifications.is_empty())
    }

    /// A stored batch of host reports, down-check results and log hits from one server.
    pub async fn observe_host(&mut self, input: HostInput) -> Result<(), StoreError> {
        let config = Arc::clone(&self.config);
        let Some(project) = config.projects.get(&input.project) else { return Ok(()) };
        let Some(server) = project.servers.get(&input.server) else { return Ok(()) };
        let server_key = (input.project.clone(), input.server.clone());
        self.last_seen.insert(server_key.clone(), input.received_ms);
        let mut notified = false;
        if !server.paused {
            let policy = host::server_policy(&config, project, server);
            for report in &input.reports {
                let previous_boot = self.boot_times.insert(server_key.clone(), report.facts.boot_time);
                let existing: Vec<(String, String)> =
                    self.by_server.get(&server_key).map(|s| s.iter().cloned().collect()).unwrap_or_default();
                let existing = existing.iter().map(|(r, s)| (r.as_str(), s.as_str()));
                for o in host::report_observations(project, policy, &server.name, report, existing, previous_boot) {
                    let key = host_key(project, server, o.rule, o.subject);
                    let about =
                        About { host: server.host.clone(), what: o.what, detail: o.detail, monitor: None, report: Some(report.as_ref()) };
                    notified |= self.advance(&config, key, o.kind, o.observation, report.at_ms, about).await?;
                }
            }
            let newest = input.reports.iter().max_by_key(|r| r.at_ms).map(Arc::as_ref);
            for hit in &input.log_hits {
                if let Some(o) = host::log_hit(project, &server.name, &hit.policy, hit.rule, &hit.file, &hit.line) {
                    let key = host_key(project, server, o.rule, o.subject);
                    let about = About { host: server.host.clone(), what: o.what, detail: o.detail, monitor: None, report: newest };
                    notified |= self.advance(&config, key, o.kind, o.observation, hit.at_ms, about).await?;
                }
            }
            // "No data" ends with the first report.
            if let Some(o) = host::no_data(policy, input.received_ms, input.received_ms) {
                let key = host_key(project, server, o.rule, o.subject);
                let about = About { host: server.host.clone(), what: o.what, detail: o.detail, monitor: None, report: newest };
                notified |= self.advance(&config, key, o.kind, o.observation, input.received_ms, about).await?;
            }
        }
        notified |= self.observe_checks(&config, project, server, &input.checks).await?;
        if notified {
            self.outbox.notify_one();
        }
        self.update_firing_gauge();
        Ok(())
    }

    fn remember(&mut self, key: InstanceKey, instance: Instance) {
        self.by_server.entry((key.project.clone(), key.server.clone())).or_default().insert((key.rule.clone(), key.subject.clone()));
        self.instances.insert(key, instance);
    }

    fn forget(&mut self, key: &InstanceKey) {
        self.instances.remove(key);
        let server = (key.project.clone(), key.server.clone());
        if let Some(slot) = self.by_server.get_mut(&server) {
            slot.remove(&(key.rule.clone(), key.subject.clone()));
            if slot.is_empty() {
                self.by_server.remove(&server);
            }
        }
    }

    /// Down-check results from their detector: each becomes a probe record (the monitor log)
    /// and an observation of the target's `downcheck:` instance.
    async fn observe_checks(
        &mut self,
        config: &Config,
        project: &Project,
        detector: &Server,
        checks: &[CheckResult],
    ) -> Result<bool, StoreError> {
        let known: Vec<(&CheckResult, &DownCheck)> = checks
            .iter()
            .filter_map(|c| project.down_checks.get(&c.name).filter(|d| d.detector == detector.name).map(|d| (c, d)))
            .collect();
        if known.is_empty() {
            return Ok(false);
        }
        let records: Vec<ProbeRecord> = known
            .iter()
            .map(|(c, d)| {
                let verdict = Verdict::of(c);
                ProbeRecord {
                    project: project.name.clone(),
                    monitor: d.name.clone(),
                    host: d.ip.clone(),
                    port: d.port,
                    at_ms: c.at_ms,
                    ok: verdict == Verdict::Up,
                    latency_ms: None,
                    error_kind: (verdict != Verdict::Up).then(|| verdict.as_str().to_string()),
                    error: c.error.clone(),
                }
            })
            .collect();
        self.store.insert_probe_results(&records).await?;
        let mut notified = false;
        for (c, d) in known {
            let Some(target) = project.servers.get(&d.target).filter(|t| !t.paused && !detector.paused) else { continue };
            let verdict = Verdict::of(c);
            let key = host_key(project, target, host::downcheck_rule_id(&d.name), d.port.to_string());
            let detail = match verdict {
                Verdict::Up => "port answers".to_string(),
                Verdict::ServiceDown => format!("service down: port {} fails, liveness port {} answers", d.port, d.liveness_port),
                _ => format!("host down: port {} and liveness port {} fail", d.port, d.liveness_port),
            };
            let detail = match &c.error {
                Some(e) if verdict != Verdict::Up => format!("{detail} ({e})"),
                _ => detail,
            };
            let about = About {
                host: d.ip.clone(),
                what: format!("port {} of {} ({}), checked from {}", d.port, target.name, d.ip, d.detector),
                detail,
                monitor: None,
                report: None,
            };
            let rule = RuleKind::Counted { failures: d.failures, recoveries: 1 };
            notified |= self.advance(config, key, rule, Observation::Check(verdict.severity()), c.at_ms, about).await?;
        }
        Ok(notified)
    }

    /// The periodic part: servers silent past their policy's `no_data` window.
    pub async fn tick(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let config = Arc::clone(&self.config);
        let mut notified = false;
        for project in config.projects.values() {
            for server in project.servers.values().filter(|s| !s.paused) {
                let policy = host::server_policy(&config, project, server);
                let seen = self.last_seen.get(&(project.name.clone(), server.name.clone())).copied().unwrap_or(self.started_ms);
                let Some(o) = host::no_data(policy, seen, now_ms) else { continue };
                if o.observation == Observation::Check(None) {
                    continue; // reports clear it when they come
                }
                let key = host_key(project, server, o.rule, o.subject);
                if self.instances.get(&key).is_some_and(|i| i.state.is_firing()) {
                    continue; // already firing: counting more silent seconds would only rewrite its state
                }
                let about = About { host: server.host.clone(), what: o.what, detail: o.detail, monitor: None, report: None };
                notified |= self.advance(&config, key, o.kind, o.observation, now_ms, about).await?;
            }
        }
        if notified {
            self.outbox.notify_one();
        }
        self.update_firing_gauge();
        Ok(())
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

/// The key of a host instance of `server`.
fn host_key(project: &Project, server: &Server, rule: String, subject: String) -> InstanceKey {
    InstanceKey { project: project.name.clone(), server: server.name.clone(), rule, subject }
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
