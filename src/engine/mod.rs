//! The alert engine: the one writer of alert state, a thin shell around [`alert::decide`]. It
//! turns probe results, host reports, down-check results, log hits and silence into
//! observations ([`alert::rules`]), asks [`alert::decide`] what they mean, and stores each
//! decision — the instance's new state, the alert history change and the notifications — in one
//! transaction; then wakes the outbox. A new revision retires the instances it no longer keeps
//! alive ([`alert::retire`]). Every second it also asks [`alert::decide::timed`] about the
//! instances time has something for — a reminder, an escalation step, the end of flapping —
//! reading which of them people acknowledged from the store.
//!
//! One replica of several (PostgreSQL) decides only for the shards it holds
//! ([`crate::lease::Ownership`]): observations of other shards are skipped; a shard gained has its
//! instances loaded from the store before anything is decided for it, one given up is forgotten;
//! every write carries the shard's lease, and a write the database refuses as made under a lost
//! lease is dropped (the new holder decides from the stored state). While the replica's leases
//! have lapsed, stored probe results wait for their decisions. Reports of its servers that other
//! replicas received come from the store, through [`crate::collect::follow`], every second.
//!
//! Error policy: state is kept in memory only once the store accepted it, so a failed write
//! leaves the instance as it was and the next observation continues from there. Retirements
//! that fail are kept in a queue and retried with backoff (1 s doubling to a minute) until they
//! are recorded — a removed monitor's alert always resolves in the end.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::alert::retire::{LiveInstances, monitor_active};
use crate::alert::rules::{self, Observed};
use crate::alert::{self, Decision, Instance, InstanceKey, RuleId, Scene, Severity, decide};
use crate::clock::now_ms;
use crate::collect::writer::HostInput;
use crate::config::model::{Config, DownCheck, Project, Server};
use crate::lease::{Fence, Ownership, SHARDS, shard_of};
use crate::metrics::{LogThrottle, Metrics};
use crate::notification::storm::{self, Digests, StormControl, StormSettings};
use crate::notification::{DeliveryStatus, NewNotification};
use crate::probe::{ErrorKind, PortResult};
use crate::protocol::{CheckResult, Verdict};
use crate::store::{ProbeRecord, Store, StoreError, StoredInstance};

/// A new configuration for the engine, with the revision that brought it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub config: Arc<Config>,
    pub revision: String,
}

/// Local probe errors are logged at most once a minute (a process out of file descriptors
/// would otherwise log every check).
static LOCAL_ERRORS: LogThrottle = LogThrottle::new(std::time::Duration::from_secs(60));

/// A retirement that could not be recorded yet.
#[derive(Debug, Clone)]
struct Retiring {
    reason: String,
    /// The configuration whose recipients hear of the resolve: the new one, or the one before
    /// it when the new one removed the instance's whole project (whose members heard it fire).
    told: Arc<Config>,
    attempts: u32,
    next_try_ms: i64,
}

pub struct Engine {
    store: Store,
    metrics: Arc<Metrics>,
    /// Woken whenever notifications were enqueued.
    outbox_wake: Arc<Notify>,
    config: Arc<Config>,
    revision: String,
    instances: HashMap<InstanceKey, Instance>,
    /// (project, server) → the (rule, subject) of its instances: a report asks which of its
    /// server's instances it no longer mentions, and must not scan every instance to know.
    by_server: HashMap<(String, String), BTreeSet<(RuleId, String)>>,
    /// Instances a revision retired whose resolution is not recorded yet, retried on every tick.
    retiring: BTreeMap<InstanceKey, Retiring>,
    /// When serve last received a report of each (project, server); `no_data` counts from here.
    last_seen: HashMap<(String, String), i64>,
    /// The last boot time each server reported, to see restarts.
    boot_times: HashMap<(String, String), u64>,
    /// Servers that never reported since start are silent since then.
    started_ms: i64,
    /// Which alert transitions are told one by one; the rest go into [`Engine::digests`].
    storm: StormControl,
    /// The digests being collected, each already written to the outbox as it grows.
    digests: Digests,
    /// Probe results not fully recorded yet, oldest first: the first `stored` of them are in
    /// the store and wait only for their decisions. They wait here while the store is
    /// unreachable; see [`Engine::observe`].
    pending: VecDeque<PortResult>,
    stored: usize,
    /// How many results `pending` holds at most; the oldest are dropped (and counted) beyond.
    pending_cap: usize,
    /// The last write of probe results failed: retry on the tick, not on every new result.
    store_failing: bool,
    /// The shards this replica holds; the engine decides only for those, and every write it
    /// makes for one carries the shard's lease ([`Ownership::fence`]).
    ownership: Arc<Ownership>,
    /// The shards (with epochs) the instances in memory are for, and the ownership generation
    /// they were taken at: when it moves, [`Engine::sync_ownership`] forgets the shards given
    /// up and loads the ones gained from the store.
    held: BTreeMap<usize, i64>,
    seen: Option<(u64, bool)>,
    /// (project, server) → the time of the newest report decided on (with leases only): a
    /// report may come twice (received here, and read back from the store by
    /// [`crate::collect::follow`]) and is decided once.
    decided_reports: HashMap<(String, String), i64>,
}

/// What the engine's loop woke up for.
enum Event {
    Config(Applied),
    Results(Vec<PortResult>),
    Host(HostInput),
    Tick,
}

/// The shard an alert instance belongs to: its server's, or (for a port monitor that names no
/// server) its monitor's — as the prober and the lease keeper count it.
fn key_shard(key: &InstanceKey) -> usize {
    let name = match &key.rule {
        RuleId::Port(monitor) if key.server.is_empty() => monitor.as_str(),
        _ => key.server.as_str(),
    };
    shard_of(&key.project, name)
}

/// How many probe results wait for the store by default (`--probe-buffer`): a 20-minute
/// database outage of 10 000 checks a minute, some 200 bytes each.
pub const PROBE_BUFFER: usize = 200_000;

/// The scene of an instance from its key alone (for what time decides): its project, server and
/// port monitor in `config`; `None` when the project is gone.
fn scene_of<'a>(config: &'a Config, key: &'a InstanceKey) -> Option<Scene<'a>> {
    let project = config.projects.get(&key.project)?;
    let monitor = match &key.rule {
        RuleId::Port(name) => project.port_monitors.get(name),
        _ => None,
    };
    let host = monitor.map(|m| m.host.as_str()).or_else(|| project.servers.get(&key.server).map(|s| s.host.as_str())).unwrap_or_default();
    Some(Scene { config, project, server: &key.server, host, monitor, report: None })
}

/// How a probe result is stored.
fn probe_record(r: &PortResult) -> ProbeRecord {
    ProbeRecord {
        project: r.key.project.clone(),
        monitor: r.key.name.clone(),
        host: r.host.clone(),
        port: r.port,
        at_ms: r.at_ms,
        ok: r.outcome.ok,
        latency_ms: r.outcome.ok.then(|| r.outcome.latency.as_millis().min(u32::MAX as u128) as u32),
        error_kind: r.outcome.error.as_ref().map(|e| e.kind.as_str().to_string()),
        error: r.outcome.error.as_ref().map(|e| e.message.clone()),
    }
}

/// How often silent servers are looked for (`no_data`) and failed retirements retried.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// The first retry of a failed retirement comes this long after it; each later one doubles,
/// up to [`RETRY_MAX_MS`].
const RETRY_FIRST_MS: i64 = 1_000;
const RETRY_MAX_MS: i64 = 60_000;
/// Probe results recorded in one write at most. What the prober finished while the previous
/// write ran goes into the next one: a transaction per monitor run costs more than its checks.
const MAX_RESULTS_PER_WRITE: usize = 4096;

impl Engine {
    /// Resume from the store: every persisted instance, with its counters and open alert.
    pub async fn load(store: Store, metrics: Arc<Metrics>, outbox_wake: Arc<Notify>) -> Result<Engine, StoreError> {
        let stored = store.load_instances().await?;
        let mut engine = Engine {
            store,
            metrics,
            outbox_wake,
            config: Arc::new(Config::default()),
            revision: String::new(),
            by_server: HashMap::new(),
            instances: HashMap::new(),
            retiring: BTreeMap::new(),
            last_seen: HashMap::new(),
            boot_times: HashMap::new(),
            started_ms: now_ms(),
            storm: StormControl::new(StormSettings::default()),
            digests: Digests::default(),
            pending: VecDeque::new(),
            stored: 0,
            pending_cap: PROBE_BUFFER,
            store_failing: false,
            ownership: Arc::new(Ownership::everything("")),
            held: (0..SHARDS).map(|s| (s, 0)).collect(),
            seen: None,
            decided_reports: HashMap::new(),
        };
        for StoredInstance { key, instance } in stored {
            engine.remember(key, instance);
        }
        engine.update_firing_gauge();
        Ok(engine)
    }

    /// How many alert transitions of one project are told one by one per window (storm control).
    pub fn set_storm_control(&mut self, settings: StormSettings) {
        self.storm = StormControl::new(settings);
    }

    /// Decide only for the shards `ownership` holds (one replica of several). The instances
    /// loaded at start are kept only for the shards it holds, reloaded as they are gained.
    pub fn set_ownership(&mut self, ownership: Arc<Ownership>) {
        self.ownership = ownership;
        self.seen = None;
    }

    /// Follow the ownership: forget the instances (and queued retirements) of shards given up
    /// or re-claimed under a new epoch, and load the instances of shards gained from the store —
    /// the previous owner's decisions, counters of consecutive failures included. A load that
    /// fails is tried again at the next event.
    pub async fn sync_ownership(&mut self) {
        let generation = self.ownership.generation();
        if self.seen == Some(generation) {
            return;
        }
        let now: BTreeMap<usize, i64> = self.ownership.held().into_iter().collect();
        let lost: BTreeSet<usize> = self.held.iter().filter(|(s, e)| now.get(s) != Some(e)).map(|(s, _)| *s).collect();
        let gained: BTreeSet<usize> = now.iter().filter(|(s, e)| self.held.get(s) != Some(e)).map(|(s, _)| *s).collect();
        if !lost.is_empty() {
            let keys: Vec<InstanceKey> = self.instances.keys().filter(|k| lost.contains(&key_shard(k))).cloned().collect();
            for key in &keys {
                self.forget(key);
            }
            self.retiring.retain(|k, _| !lost.contains(&key_shard(k)));
            self.held.retain(|s, _| !lost.contains(s));
        }
        if !gained.is_empty() {
            let stored = match self.store.load_instances().await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::error!(error = %e, shards = gained.len(), "could not load the alert state of shards taken over; will try again");
                    self.update_firing_gauge();
                    return; // `seen` unchanged: tried again at the next event
                }
            };
            let config = Arc::clone(&self.config);
            let live = LiveInstances::of(&config);
            let now_ms = now_ms();
            let mut loaded = 0usize;
            for StoredInstance { key, instance } in stored.into_iter().filter(|s| gained.contains(&key_shard(&s.key))) {
                // What a revision removed while another replica held the shard retires here.
                if let Some(why) = live.retires(&key.project, &key.server, &key.rule, &key.subject)
                    && !config.projects.is_empty()
                {
                    let reason = format!("{why} in {}", self.revision);
                    self.retiring.insert(key.clone(), Retiring { reason, told: Arc::clone(&config), attempts: 0, next_try_ms: now_ms });
                }
                self.remember(key, instance);
                loaded += 1;
            }
            // The previous owner wrote these shards' probe rows meanwhile.
            self.store.forget_recent_probes(now_ms).await;
            self.held.extend(gained.iter().map(|s| (*s, now[s])));
            tracing::info!(shards = gained.len(), instances = loaded, "took over shards: their alert state is loaded from the store");
        }
        if !lost.is_empty() {
            tracing::info!(shards = lost.len(), "gave up shards: another replica decides for them now");
        }
        self.seen = Some(generation);
        self.update_firing_gauge();
    }

    /// How many probe results wait for the store at most (at least one).
    pub fn set_probe_buffer(&mut self, results: usize) {
        self.pending_cap = results.max(1);
    }

    /// What serve remembers of a server from before a restart: when it last reported and its
    /// boot time (so a reboot during the restart is still seen, and `no_data` counts on).
    pub fn restore_server(&mut self, project: &str, server: &str, last_report_ms: i64, boot_time: u64) {
        let key = (project.to_string(), server.to_string());
        self.last_seen.insert(key.clone(), last_report_ms);
        self.decided_reports.insert(key.clone(), last_report_ms);
        self.boot_times.insert(key, boot_time);
    }

    /// Run until cancelled: configurations first (so results of a new monitor find it), then
    /// probe results and host reports, and every [`TICK`] the `no_data` check and the retry of
    /// failed retirements. Store errors are logged; see the module's error policy.
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
            let event = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(applied) = configs.recv() => Event::Config(applied),
                Some(mut batch) = results.recv() => {
                    // A waiting configuration is applied first: results of the monitors it adds must find them.
                    while batch.len() < MAX_RESULTS_PER_WRITE && configs.is_empty() {
                        match results.try_recv() {
                            Ok(more) => batch.extend(more),
                            Err(_) => break,
                        }
                    }
                    Event::Results(batch)
                }
                Some(input) = hosts.recv() => Event::Host(input),
                _ = tick.tick() => Event::Tick,
                else => break,
            };
            // Shards gained or given up since the last event change what is decided here.
            self.sync_ownership().await;
            match event {
                Event::Config(applied) => self.apply_config(applied).await,
                Event::Results(batch) => {
                    self.take_results(batch);
                    if !self.store_failing {
                        self.record_results().await;
                    }
                }
                Event::Host(input) => {
                    if let Err(e) = self.observe_host(input).await {
                        tracing::error!(error = %e, "could not record alert changes from host reports");
                    }
                }
                Event::Tick => {
                    if !self.pending.is_empty() {
                        self.record_results().await;
                    }
                    let now = now_ms();
                    self.retry_retirements(now).await;
                    if let Err(e) = self.tick(now).await {
                        tracing::error!(error = %e, "could not record no-data alerts");
                    }
                    if let Err(e) = self.timed(now).await {
                        tracing::error!(error = %e, "could not record reminders, escalation steps or the end of flapping");
                    }
                }
            }
        }
    }

    /// Take a new configuration and retire the instances it no longer keeps alive. Retirements
    /// the store refuses stay queued and are retried on every tick until they are recorded.
    pub async fn apply_config(&mut self, applied: Applied) {
        let previous = std::mem::replace(&mut self.config, applied.config);
        self.revision = applied.revision;
        let now = now_ms();
        let config = Arc::clone(&self.config);
        let live = LiveInstances::of(&config);
        // A revision that brings back what an earlier one removed saves it from retirement.
        self.retiring.retain(|k, _| live.retires(&k.project, &k.server, &k.rule, &k.subject).is_some());
        for key in self.instances.keys() {
            if let Some(why) = live.retires(&key.project, &key.server, &key.rule, &key.subject) {
                let reason = format!("{why} in {}", self.revision);
                let told = if config.projects.contains_key(&key.project) { &config } else { &previous };
                self.retiring.insert(key.clone(), Retiring { reason, told: Arc::clone(told), attempts: 0, next_try_ms: now });
            }
        }
        self.retry_retirements(now).await;
    }

    /// Record every queued retirement that is due; the ones the store refuses wait longer.
    async fn retry_retirements(&mut self, now_ms: i64) {
        let due: Vec<InstanceKey> = self.retiring.iter().filter(|(_, r)| r.next_try_ms <= now_ms).map(|(k, _)| k.clone()).collect();
        if due.is_empty() {
            self.metrics.set_retirements_pending(self.retiring.len());
            return;
        }
        let mut notified = false;
        for key in due {
            let Some(retiring) = self.retiring.get(&key).cloned() else { continue };
            match self.retire(&key, &retiring, now_ms).await {
                Ok(sent) => {
                    notified |= sent;
                    self.retiring.remove(&key);
                }
                Err(e) => {
                    let attempts = retiring.attempts + 1;
                    let delay = RETRY_FIRST_MS.saturating_mul(1 << attempts.min(16)).min(RETRY_MAX_MS);
                    tracing::error!(project = %key.project, rule = %key.rule, subject = %key.subject, attempts, retry_in_ms = delay,
                        error = %e, "could not record a retired alert instance; will retry");
                    self.retiring.insert(key, Retiring { attempts, next_try_ms: now_ms + delay, ..retiring });
                }
            }
        }
        self.metrics.set_retirements_pending(self.retiring.len());
        self.finish(notified);
    }

    /// Close an instance for good: resolve its open alert (notifying, as a resolve) and forget
    /// it. Returns whether notifications were enqueued.
    async fn retire(&mut self, key: &InstanceKey, retiring: &Retiring, now_ms: i64) -> Result<bool, StoreError> {
        let Some(before) = self.instances.get(key).cloned() else { return Ok(false) };
        let reason = retiring.reason.as_str();
        let mut decision = alert::decide::retire(&retiring.told, key, &before, reason, now_ms);
        let Some(fence) = self.fence(key) else { return Ok(false) };
        let held = self.storm_hold(&key.project, &mut decision.notifications);
        let written = self
            .store
            .apply_alert_fenced(
                fence.as_ref(),
                key,
                &decision.state,
                before.open_alert_id,
                decision.change.as_ref(),
                &decision.notifications,
                now_ms,
            )
            .await;
        if self.lease_lost(key, &written) {
            return Ok(false);
        }
        written?;
        self.collect_digests(&key.project, held).await;
        self.forget(key);
        tracing::info!(project = %key.project, rule = %key.rule, subject = %key.subject, reason, "alert instance retired");
        Ok(!decision.notifications.is_empty())
    }

    /// Record a batch of probe results and advance their instances: [`Engine::take_results`],
    /// then [`Engine::flush_results`].
    pub async fn observe(&mut self, batch: Vec<PortResult>) -> Result<(), StoreError> {
        self.take_results(batch);
        self.flush_results().await
    }

    /// Queue probe results behind those still waiting. A check that could not run for a local
    /// reason ([`ErrorKind::Local`]) is the prober's error, not the target's: it is counted in
    /// `/metrics` and logged (once a minute at most), not stored and not counted toward an
    /// alert. When the queue is full the oldest result is dropped and counted.
    pub fn take_results(&mut self, batch: Vec<PortResult>) {
        for r in batch {
            let kind = match r.outcome.error.as_ref().map(|e| e.kind) {
                Some(ErrorKind::Local(reason)) => {
                    self.metrics.prober_error(reason.as_str());
                    if let Some(checks) = LOCAL_ERRORS.hit() {
                        tracing::warn!(monitor = %r.key, port = r.port, reason = %reason, checks, error = %r.outcome.error.as_ref().map_or("", |e| &e.message),
                            "checks could not run: this machine ran out of a local resource; not counted as failures of the targets");
                    }
                    continue;
                }
                Some(kind) => kind.as_str(),
                None => "ok",
            };
            self.metrics.record_probe(&r.key.project, &r.key.name, kind, r.outcome.latency.as_secs_f64());
            if self.pending.len() >= self.pending_cap {
                self.pending.pop_front();
                self.stored = self.stored.saturating_sub(1);
                self.metrics.probe_results_dropped();
            }
            self.pending.push_back(r);
        }
        self.metrics.set_probe_results_waiting(self.pending.len());
    }

    /// [`Engine::flush_results`], logging when the store fails and when it takes results again.
    async fn record_results(&mut self) {
        match self.flush_results().await {
            // While the leases have lapsed nothing was written: the store may still be out of reach.
            Ok(()) if self.store_failing && self.ownership.is_current() => {
                self.store_failing = false;
                tracing::info!("the store takes probe results again; every waiting result is recorded");
            }
            Ok(()) => {}
            Err(e) => {
                if !self.store_failing {
                    tracing::error!(error = %e, waiting = self.pending.len(), cap = self.pending_cap,
                        "could not record probe results; they wait and are retried every second, oldest first");
                }
                self.store_failing = true;
            }
        }
    }

    /// Store the waiting results in order, in writes of up to [`MAX_RESULTS_PER_WRITE`], and
    /// advance their instances in the same order (for each port, the order of its checks). A
    /// failure leaves what is not done waiting: results the store took are not written again,
    /// and a decision the store refused is made again from the same state.
    ///
    /// With replicas, each write carries the leases of its results' shards, and results wait —
    /// neither written nor decided — while this replica's leases have lapsed (the database out
    /// of reach): nobody can tell yet whether another replica takes their shards over. Once the
    /// lease keeper reaches the database again, the results of shards held without a break are
    /// written and decided; those of shards another replica held meanwhile are dropped
    /// ([`Engine::drop_superseded`]), since that replica checked and decided for the time.
    pub async fn flush_results(&mut self) -> Result<(), StoreError> {
        while !self.pending.is_empty() && self.ownership.is_current() {
            self.drop_superseded();
            let chunk = self.pending.len().min(MAX_RESULTS_PER_WRITE);
            if self.stored < chunk {
                let waiting = self.pending.range(self.stored..chunk);
                let records: Vec<ProbeRecord> = waiting.clone().map(probe_record).collect();
                let fences: BTreeMap<usize, Fence> =
                    waiting.filter_map(|r| Some((r.shard, self.ownership.fence(r.shard).ok()??))).collect();
                let fences: Vec<Fence> = fences.into_values().collect();
                match self.store.insert_probe_results_fenced(&fences, &records).await {
                    Err(StoreError::LeaseLost { shard, epoch, .. }) => {
                        tracing::warn!(shard, epoch, "the database refused probe results: this replica no longer holds the shard's lease");
                        self.ownership.drop_shard(usize::try_from(shard).unwrap_or(usize::MAX));
                        continue; // its results are dropped on the next pass
                    }
                    written => written?,
                }
                self.stored = chunk;
            }
            if !self.ownership.is_current() {
                break; // lapsed while writing: the stored results wait for their decisions
            }
            let mut notified = false;
            let decided = self.decide_stored(&mut notified).await;
            self.finish(notified);
            self.metrics.set_probe_results_waiting(self.pending.len());
            decided?;
        }
        Ok(())
    }

    /// Drop the waiting results (stored or not) that were checked under a lease this replica
    /// has not held without a break since ([`Ownership::held_since`]): another replica held
    /// their shard meanwhile, or holds it now. Writing them would overwrite that replica's hour
    /// rows with this replica's older copy, and deciding them would act on checks older than
    /// the state that replica left — a port down during a cut and up since would fire again.
    fn drop_superseded(&mut self) {
        let before = self.pending.len();
        let (ownership, stored) = (&self.ownership, self.stored);
        let (mut index, mut dropped_stored) = (0, 0);
        self.pending.retain(|r| {
            let keep = ownership.held_since(r.shard, r.epoch);
            dropped_stored += usize::from(!keep && index < stored);
            index += 1;
            keep
        });
        self.stored -= dropped_stored;
        let dropped = before - self.pending.len();
        if dropped > 0 {
            self.metrics.probe_results_superseded(dropped);
            self.metrics.set_probe_results_waiting(self.pending.len());
            tracing::info!(
                dropped,
                "dropped probe results checked under leases another replica held since; its own checks cover that time"
            );
        }
    }

    /// Advance the instances of the stored results, taking each off the queue once its
    /// decision is recorded.
    async fn decide_stored(&mut self, notified: &mut bool) -> Result<(), StoreError> {
        let config = Arc::clone(&self.config);
        while self.stored > 0 {
            // Taken off the queue (not copied) while it is decided; put back if that fails.
            let Some(result) = self.pending.pop_front() else { break };
            if let Some((project, monitor)) =
                config.projects.get(&result.key.project).and_then(|p| Some((p, p.port_monitors.get(&result.key.name)?)))
                && monitor.ports.contains(&result.port)
                && monitor_active(project, monitor)
            {
                let scene = Scene {
                    config: &config,
                    project,
                    server: monitor.server.as_deref().unwrap_or_default(),
                    host: &monitor.host,
                    monitor: Some(monitor),
                    report: None,
                };
                let error = result.outcome.error.as_ref().map(|e| e.message.as_str());
                match self.advance(&scene, rules::port_check(monitor, result.port, error), result.at_ms).await {
                    Ok(sent) => *notified |= sent,
                    Err(e) => {
                        self.pending.push_front(result);
                        return Err(e);
                    }
                }
            } // else a result from before the revision that removed its monitor
            self.stored -= 1;
        }
        Ok(())
    }

    /// Decide one observation and store the decision. Returns whether notifications were enqueued.
    async fn advance(&mut self, scene: &Scene<'_>, observed: Observed, at_ms: i64) -> Result<bool, StoreError> {
        let key = scene.key(observed.rule.clone(), observed.subject.clone());
        if !self.ownership.owns(key_shard(&key)) {
            return Ok(false); // another replica decides for this shard
        }
        if self.retiring.contains_key(&key) {
            return Ok(false); // a revision retired it; its resolution is being recorded
        }
        let before = self.instances.get(&key).cloned().unwrap_or_default();
        let decision = decide(scene, observed, &before, at_ms, &|parent| self.parent_down(&scene.project.name, parent));
        if !decision.changes(&before) {
            return Ok(false);
        }
        self.record(decision, before, at_ms).await
    }

    /// Store a decision and only then take its state as the instance's.
    async fn record(&mut self, decision: Decision, before: Instance, at_ms: i64) -> Result<bool, StoreError> {
        let Decision { key, state, transition, change, mut notifications, .. } = decision;
        let Some(fence) = self.fence(&key) else { return Ok(false) };
        let held = self.storm_hold(&key.project, &mut notifications);
        let written =
            self.store.apply_alert_fenced(fence.as_ref(), &key, &state, before.open_alert_id, change.as_ref(), &notifications, at_ms).await;
        if self.lease_lost(&key, &written) {
            return Ok(false);
        }
        let open_alert_id = written?;
        self.collect_digests(&key.project, held).await;
        if let Some(t) = transition {
            tracing::info!(project = %key.project, server = %key.server, rule = %key.rule, subject = %key.subject, transition = ?t, "alert transition");
        }
        if state == alert::AlertState::default() {
            self.forget(&key);
        } else {
            self.remember(key, Instance { state, open_alert_id });
        }
        Ok(!notifications.is_empty())
    }

    /// The lease a write for `key` is made under: `Some(None)` when nothing is fenced (one
    /// replica), `None` when this replica does not hold the key's shard (nothing is written).
    fn fence(&self, key: &InstanceKey) -> Option<Option<Fence>> {
        self.ownership.fence(key_shard(key)).ok()
    }

    /// Whether the store refused a write because the shard's lease was lost meanwhile: then
    /// this replica stops acting for the shard at once (the lease keeper confirms it at its next
    /// round) and the decision is dropped — the new owner decides from the stored state.
    fn lease_lost<T>(&self, key: &InstanceKey, written: &Result<T, StoreError>) -> bool {
        let Err(StoreError::LeaseLost { shard, epoch, .. }) = written else { return false };
        tracing::warn!(project = %key.project, server = %key.server, rule = %key.rule, shard, epoch,
            "the database refused a decision: this replica no longer holds the shard's lease; another replica decides for it");
        self.ownership.drop_shard(key_shard(key));
        true
    }

    /// Storm control on one transition's notifications, before they are stored: beyond the
    /// project's limit, its pending ones are kept as not sent (with the reason) and returned
    /// for the digests.
    fn storm_hold(&mut self, project: &str, notifications: &mut [NewNotification]) -> Vec<NewNotification> {
        let Some(kind) = notifications.iter().find(|n| n.status == DeliveryStatus::Pending).map(|n| n.kind) else {
            return Vec::new();
        };
        if self.storm.admit(project, kind, now_ms()) {
            return Vec::new();
        }
        storm::held(notifications, project, self.storm.settings())
    }

    /// Add held notifications to their recipients' digests and write each digest to the outbox,
    /// where it waits until it is due. The alert change is recorded already, so a digest that
    /// cannot be written is logged rather than undoing it.
    async fn collect_digests(&mut self, project: &str, held: Vec<NewNotification>) {
        if held.is_empty() {
            return;
        }
        let now = now_ms();
        let settings = self.storm.settings();
        self.digests.prune(now);
        for n in &held {
            let digest = self.digests.add(project, n, now, settings);
            if digest.id.is_none() {
                tracing::warn!(project, recipient = %n.recipient, kind = %n.kind, limit = settings.limit, window_ms = settings.window_ms,
                    "many alerts of one project at once: further notifications are collected into one digest per recipient");
            }
            match self.store.write_digest(digest.id, &digest.notification(settings), digest.due_ms, now).await {
                Ok(id) => digest.id = Some(id),
                Err(e) => tracing::error!(project, recipient = %n.recipient, error = %e, "could not write a notification digest"),
            }
        }
    }

    /// A stored batch of host reports, down-check results and log hits from one server.
    pub async fn observe_host(&mut self, input: HostInput) -> Result<(), StoreError> {
        let config = Arc::clone(&self.config);
        let Some(project) = config.projects.get(&input.project) else { return Ok(()) };
        let Some(server) = project.servers.get(&input.server) else { return Ok(()) };
        let server_key = (input.project.clone(), input.server.clone());
        self.last_seen.insert(server_key.clone(), input.received_ms);
        let mut input = input;
        if self.ownership.is_leased() {
            // With replicas a report may come twice: from this replica's collector and from the
            // store (stored by another). Each is decided once, and never after a newer one.
            let decided = self.decided_reports.get(&server_key).copied().unwrap_or(i64::MIN);
            input.reports.retain(|r| r.at_ms > decided);
            if let Some(newest) = input.reports.iter().map(|r| r.at_ms).max()
                && self.ownership.owns_name(&input.project, &input.server)
            {
                self.decided_reports.insert(server_key.clone(), newest);
            }
        }
        let mut notified = false;
        if !server.paused {
            let policy = rules::server_policy(&config, project, server);
            let scene = |report| Scene { config: &config, project, server: &server.name, host: &server.host, monitor: None, report };
            for report in &input.reports {
                let previous_boot = self.boot_times.insert(server_key.clone(), report.facts.boot_time);
                let existing: Vec<(RuleId, String)> =
                    self.by_server.get(&server_key).map(|s| s.iter().cloned().collect()).unwrap_or_default();
                let existing = existing.iter().map(|(r, s)| (r, s.as_str()));
                for o in rules::report_observations(project, policy, &server.name, report, existing, previous_boot) {
                    notified |= self.advance(&scene(Some(report.as_ref())), o, report.at_ms).await?;
                }
            }
            let newest = input.reports.iter().max_by_key(|r| r.at_ms).map(Arc::as_ref);
            for hit in &input.log_hits {
                if let Some(o) = rules::log_hit(project, &server.name, &hit.policy, hit.rule, &hit.file, &hit.line) {
                    notified |= self.advance(&scene(newest), o, hit.at_ms).await?;
                }
            }
            // "No data" ends with the first report.
            if let Some(o) = rules::no_data(policy, input.received_ms, input.received_ms) {
                notified |= self.advance(&scene(newest), o, input.received_ms).await?;
            }
        }
        notified |= self.observe_checks(&config, project, server, &input.checks).await?;
        self.finish(notified);
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
            let scene = Scene { config, project, server: &target.name, host: &d.ip, monitor: None, report: None };
            notified |= self.advance(&scene, rules::down_check(d, c), c.at_ms).await?;
        }
        Ok(notified)
    }

    /// The periodic part: servers silent past their policy's `no_data` window.
    pub async fn tick(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let config = Arc::clone(&self.config);
        let ownership = Arc::clone(&self.ownership);
        let mut notified = false;
        for project in config.projects.values() {
            for server in project.servers.values().filter(|s| !s.paused && ownership.owns_name(&project.name, &s.name)) {
                let policy = rules::server_policy(&config, project, server);
                let seen = self.last_seen.get(&(project.name.clone(), server.name.clone())).copied().unwrap_or(self.started_ms);
                let Some(o) = rules::no_data(policy, seen, now_ms) else { continue };
                if o.observation == alert::Observation::Check(None) {
                    continue; // reports clear it when they come
                }
                let scene = Scene { config: &config, project, server: &server.name, host: &server.host, monitor: None, report: None };
                if self.instances.get(&scene.key(RuleId::NoData, String::new())).is_some_and(|i| i.state.is_firing()) {
                    continue; // already firing: counting more silent seconds would only rewrite its state
                }
                notified |= self.advance(&scene, o, now_ms).await?;
            }
        }
        self.finish(notified);
        Ok(())
    }

    /// What time decides: every instance whose reminder, escalation step or end of flapping is
    /// due, unless its alert was acknowledged (which the store knows; it is read only when
    /// something is due).
    pub async fn timed(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let config = Arc::clone(&self.config);
        let due: Vec<(InstanceKey, Instance)> = self
            .instances
            .iter()
            .filter(|(key, i)| {
                scene_of(&config, key)
                    .and_then(|scene| alert::decide::next_due_ms(&scene, &key.rule, &i.state))
                    .is_some_and(|due| now_ms >= due)
            })
            .map(|(key, i)| (key.clone(), i.clone()))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let acknowledged = self.store.acknowledged_firing_alerts().await?;
        let mut notified = false;
        for (key, before) in due {
            let Some(scene) = scene_of(&config, &key) else { continue };
            let acked = before.open_alert_id.is_some_and(|id| acknowledged.contains(&id));
            let parent_down = |parent: &str| self.parent_down(&key.project, parent);
            if let Some(decision) = alert::decide::timed(&scene, &key, &before, acked, now_ms, &parent_down) {
                notified |= self.record(decision, before, now_ms).await?;
            }
        }
        self.finish(notified);
        Ok(())
    }

    /// Whether `parent` (a server of `project`) has a fatal alert firing.
    fn parent_down(&self, project: &str, parent: &str) -> bool {
        self.by_server.get(&(project.to_string(), parent.to_string())).is_some_and(|rules| {
            rules.iter().any(|(rule, subject)| {
                let key =
                    InstanceKey { project: project.to_string(), server: parent.to_string(), rule: rule.clone(), subject: subject.clone() };
                self.instances.get(&key).is_some_and(|i| matches!(i.state.phase, alert::Phase::Firing { severity: Severity::Fatal, .. }))
            })
        })
    }

    /// After a round of decisions: wake the outbox if something was enqueued; update the gauge.
    fn finish(&self, notified: bool) {
        if notified {
            self.outbox_wake.notify_one();
        }
        self.update_firing_gauge();
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
