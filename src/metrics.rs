//! Prometheus metrics serve exposes on /metrics: probes, alerts firing, reconcile status, outbox depth, HTTP connections.
//!
//! One [`Metrics`] per serve, shared as `Arc<Metrics>`: the engine records into it, the API
//! renders it. Label sets of a removed monitor are removed too ([`Metrics::forget_monitor`]),
//! so a long-running serve does not report monitors its configuration no longer has.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `result` label values of `watchkeeper_probes_total`: `ok`, or a probe's error kind.
pub const PROBE_RESULTS: &[&str] = &["ok", "refused", "timeout", "unreachable", "dns", "unapproved", "other"];

type Labels = Vec<(&'static str, String)>;

/// The Content-Type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric serve exports, in one registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    probes: Family<Labels, Counter>,
    probe_duration: Histogram,
    alerts_firing: Family<Labels, Gauge>,
    retirements_pending: Gauge,
    last_applied: Gauge<f64, AtomicU64>,
    rejected: Counter,
    revision_info: Family<Labels, Gauge>,
    reconcile_status: Gauge,
    outbox_depth: Gauge,
    notifications: Family<Labels, Counter>,
    ingest_reports: Family<Labels, Counter>,
    ingest_rejected: Family<Labels, Counter>,
    ingest_dropped: Counter,
    subjects_dropped: Family<Labels, Counter>,
    prober_errors: Family<Labels, Counter>,
    probe_results_waiting: Gauge,
    probe_results_dropped: Counter,
    probe_results_superseded: Counter,
    http_connections: Gauge,
    http_refused: Family<Labels, Counter>,
    http_accept_errors: Family<Labels, Counter>,
    http_timeouts: Family<Labels, Counter>,
    replicas_live: Gauge,
    replica_info: Family<Labels, Gauge>,
    replica_behind: Family<Labels, Gauge>,
    replica_shards: Family<Labels, Gauge>,
    shard_epoch: Family<Labels, Gauge>,
    /// The revision whose `watchkeeper_revision_info` label set is present, to remove it when
    /// the next one is applied.
    current_revision: Mutex<Option<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let probes = Family::<Labels, Counter>::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register("watchkeeper_probes", "TCP checks by project, monitor and result", probes.clone());
        // 1 ms … ~16 s: loopback connects to timeouts.
        let probe_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register("watchkeeper_probe_duration_seconds", "Time a TCP check took", probe_duration.clone());
        let alerts_firing = Family::<Labels, Gauge>::default();
        registry.register("watchkeeper_alerts_firing", "Alert instances firing, by severity", alerts_firing.clone());
        // Both severities are always present, so a dashboard sees 0 rather than no series.
        for severity in ["warning", "fatal"] {
            alerts_firing.get_or_create(&vec![("severity", severity.to_string())]).set(0);
        }
        let retirements_pending = Gauge::default();
        registry.register(
            "watchkeeper_alert_retirements_pending",
            "Alert instances a revision retired whose resolution the store has not accepted yet (retried)",
            retirements_pending.clone(),
        );
        let last_applied = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "watchkeeper_reconcile_last_applied_timestamp_seconds",
            "When the running configuration revision was applied (Unix time)",
            last_applied.clone(),
        );
        let rejected = Counter::default();
        registry.register("watchkeeper_reconcile_rejected", "Configuration revisions rejected as invalid", rejected.clone());
        let revision_info = Family::<Labels, Gauge>::default();
        registry.register("watchkeeper_revision_info", "The applied configuration revision (value 1)", revision_info.clone());
        let replicas_live = Gauge::default();
        registry.register(
            "watchkeeper_replicas_live",
            "serve replicas on this database whose heartbeat is within the lease TTL",
            replicas_live.clone(),
        );
        let replica_info = Family::<Labels, Gauge>::default();
        registry.register(
            "watchkeeper_replica_info",
            "Each live serve replica on this database and the revision it runs (value 1; revision \"\" before its first)",
            replica_info.clone(),
        );
        let replica_behind = Family::<Labels, Gauge>::default();
        registry.register(
            "watchkeeper_replica_behind",
            "1 for each live replica whose revision is older than the newest a live replica runs (it takes no new shards), 0 for the others",
            replica_behind.clone(),
        );
        let replica_shards = Family::<Labels, Gauge>::default();
        registry.register(
            "watchkeeper_replica_shards",
            "How many of the 64 shards each replica holds a live lease on (PostgreSQL), as this replica last read the leases",
            replica_shards.clone(),
        );
        let shard_epoch = Family::<Labels, Gauge>::default();
        registry.register(
            "watchkeeper_shard_epoch",
            "Each shard this replica holds, with the epoch of its lease (PostgreSQL; on SQLite the one serve holds all, unleased)",
            shard_epoch.clone(),
        );
        let reconcile_status = Gauge::default();
        registry.register(
            "watchkeeper_reconcile_status",
            "1 when the last configuration revision was applied, 0 when it was rejected (or none applied yet)",
            reconcile_status.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register("watchkeeper_outbox_depth", "Notifications waiting to be sent or retried", outbox_depth.clone());
        let notifications = Family::<Labels, Counter>::default();
        registry.register("watchkeeper_notifications", "Notification send attempts by medium and result", notifications.clone());
        let ingest_reports = Family::<Labels, Counter>::default();
        registry.register("watchkeeper_ingest_reports", "Host reports stored, by source (agent, node_exporter)", ingest_reports.clone());
        let ingest_rejected = Family::<Labels, Counter>::default();
        registry.register(
            "watchkeeper_ingest_rejected",
            "Ingest requests and scrapes refused or failed, by reason",
            ingest_rejected.clone(),
        );
        let ingest_dropped = Counter::default();
        registry.register(
            "watchkeeper_ingest_agent_dropped",
            "Reports agents lost to a full backlog or a refused batch (as they told us)",
            ingest_dropped.clone(),
        );
        let probe_results_waiting = Gauge::default();
        registry.register(
            "watchkeeper_probe_results_waiting",
            "Probe results not recorded yet: waiting for the store (see --probe-buffer)",
            probe_results_waiting.clone(),
        );
        let probe_results_dropped = Counter::default();
        registry.register(
            "watchkeeper_probe_results_dropped",
            "Probe results dropped, oldest first, because more waited for the store than --probe-buffer holds",
            probe_results_dropped.clone(),
        );
        let probe_results_superseded = Counter::default();
        registry.register(
            "watchkeeper_probe_results_superseded",
            "Probe results neither stored nor decided because another replica held their shard after they were checked (this replica was cut off from the database, or gave the shard away)",
            probe_results_superseded.clone(),
        );
        let subjects_dropped = Family::<Labels, Counter>::default();
        registry.register(
            "watchkeeper_ingest_subjects_dropped",
            "Subjects (mount, device, interface, process_name) dropped from reports because their server had its cap of them, by kind; counted once per report",
            subjects_dropped.clone(),
        );
        let prober_errors = Family::<Labels, Counter>::default();
        registry.register(
            "watchkeeper_prober_errors",
            "Checks that could not run because this machine ran out of something (file descriptors, buffers, local ports, memory), by errno; not counted as failures",
            prober_errors.clone(),
        );
        let http_connections = Gauge::default();
        registry.register(
            "watchkeeper_http_connections",
            "HTTP connections open now (status API, dashboard, ingest)",
            http_connections.clone(),
        );
        let http_refused = Family::<Labels, Counter>::default();
        registry.register(
            "watchkeeper_http_connections_refused",
            "HTTP connections reset right after accept because a cap was reached, by cap (total, per_client)",
            http_refused.clone(),
        );
        let http_accept_errors = Family::<Labels, Counter>::default();
        registry.register(
            "watchkeeper_http_accept_errors",
            "Failed accepts of HTTP connections, by errno (emfile: out of file descriptors, …); each is followed by a backoff",
            http_accept_errors.clone(),
        );
        let http_timeouts = Family::<Labels, Counter>::default();
        registry.register(
            "watchkeeper_http_timeouts",
            "HTTP connections closed by a timeout, by timeout (header, body, idle)",
            http_timeouts.clone(),
        );
        Metrics {
            registry,
            prober_errors,
            probe_results_waiting,
            probe_results_dropped,
            probe_results_superseded,
            http_connections,
            http_refused,
            http_accept_errors,
            http_timeouts,
            ingest_reports,
            ingest_rejected,
            ingest_dropped,
            subjects_dropped,
            probes,
            probe_duration,
            alerts_firing,
            retirements_pending,
            last_applied,
            rejected,
            revision_info,
            reconcile_status,
            outbox_depth,
            notifications,
            replicas_live,
            replica_info,
            replica_behind,
            replica_shards,
            shard_epoch,
            current_revision: Mutex::new(None),
        }
    }

    /// One TCP check: `result` is `ok` or the error kind (see [`PROBE_RESULTS`]); anything
    /// else is counted as `other` so a typo cannot grow the label space.
    pub fn record_probe(&self, project: &str, monitor: &str, result: &str, seconds: f64) {
        let result = if PROBE_RESULTS.contains(&result) { result } else { "other" };
        self.probes.get_or_create(&probe_labels(project, monitor, result)).inc();
        self.probe_duration.observe(seconds);
    }

    pub fn set_alerts_firing(&self, warning: i64, fatal: i64) {
        self.alerts_firing.get_or_create(&vec![("severity", "warning".to_string())]).set(warning);
        self.alerts_firing.get_or_create(&vec![("severity", "fatal".to_string())]).set(fatal);
    }

    /// Retirements waiting for the store to accept them.
    pub fn set_retirements_pending(&self, pending: usize) {
        self.retirements_pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// A revision was applied at `at_ms` (epoch milliseconds).
    pub fn applied(&self, revision: &str, at_ms: i64) {
        self.last_applied.set(at_ms as f64 / 1000.0);
        self.reconcile_status.set(1);
        let mut current = self.current_revision.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = current.take()
            && old != revision
        {
            self.revision_info.remove(&vec![("revision", old)]);
        }
        self.revision_info.get_or_create(&vec![("revision", revision.to_string())]).set(1);
        *current = Some(revision.to_string());
    }

    /// The revision this serve runs, once it has applied one.
    pub fn applied_revision(&self) -> Option<String> {
        self.current_revision.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The live replicas, `(id, revision, behind)`, as this replica's last heartbeat read them:
    /// replaces the previous set, so a replica gone is no longer shown.
    pub fn set_replicas<'a>(&self, replicas: impl IntoIterator<Item = (&'a str, Option<&'a str>, bool)>) {
        self.replica_info.clear();
        self.replica_behind.clear();
        let mut live = 0;
        for (id, revision, behind) in replicas {
            live += 1;
            self.replica_behind.get_or_create(&vec![("replica", id.to_string())]).set(i64::from(behind));
            self.replica_info
                .get_or_create(&vec![("replica", id.to_string()), ("revision", revision.unwrap_or_default().to_string())])
                .set(1);
        }
        self.replicas_live.set(live);
    }

    /// The shards each replica holds (`(id, count)`) and this replica's own with their epochs:
    /// replaces the previous figures.
    pub fn set_shards<'a>(&self, per_replica: impl IntoIterator<Item = (&'a str, usize)>, mine: &[(usize, i64)]) {
        self.replica_shards.clear();
        for (id, count) in per_replica {
            self.replica_shards.get_or_create(&vec![("replica", id.to_string())]).set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.shard_epoch.clear();
        for (shard, epoch) in mine {
            self.shard_epoch.get_or_create(&vec![("shard", shard.to_string())]).set(*epoch);
        }
    }

    /// A revision was rejected; the previous one keeps running (and keeps its revision_info).
    pub fn rejected(&self) {
        self.rejected.inc();
        self.reconcile_status.set(0);
    }

    pub fn set_outbox_depth(&self, n: i64) {
        self.outbox_depth.set(n);
    }

    /// One send attempt over `medium` (`email`, `sms`, `webhook`).
    pub fn notification(&self, medium: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.notifications.get_or_create(&vec![("medium", medium.to_string()), ("result", result.to_string())]).inc();
    }

    /// Host reports stored from `source` (`agent`, `node_exporter`).
    pub fn ingested(&self, source: &'static str, reports: u64) {
        self.ingest_reports.get_or_create(&vec![("source", source.to_string())]).inc_by(reports);
    }

    /// An ingest request or scrape refused or failed; `reason` is one of a fixed set of words.
    pub fn ingest_rejected(&self, reason: &'static str) {
        self.ingest_rejected.get_or_create(&vec![("reason", reason.to_string())]).inc();
    }

    /// Reports an agent says it lost (full backlog, refused batches). The total stops at
    /// `u64::MAX` instead of wrapping to a small number.
    pub fn agent_dropped(&self, n: u64) {
        let add = |total: u64| Some(total.saturating_add(n));
        let _ = self.ingest_dropped.inner().fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, add);
    }

    /// How many probe results wait for the store.
    pub fn set_probe_results_waiting(&self, waiting: usize) {
        self.probe_results_waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// One probe result dropped from a full buffer.
    pub fn probe_results_dropped(&self) {
        self.probe_results_dropped.inc();
    }

    /// `n` probe results dropped because another replica held their shard since.
    pub fn probe_results_superseded(&self, n: usize) {
        self.probe_results_superseded.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// `n` subjects of `kind` dropped from one report by the per-server caps.
    pub fn subjects_dropped(&self, kind: &'static str, n: u64) {
        self.subjects_dropped.get_or_create(&vec![("kind", kind.to_string())]).inc_by(n);
    }

    /// A check that could not run for a local reason (an errno word such as `emfile`).
    pub fn prober_error(&self, reason: &'static str) {
        self.prober_errors.get_or_create(&vec![("reason", reason.to_string())]).inc();
    }

    /// HTTP connections open now.
    pub fn set_http_connections(&self, open: usize) {
        self.http_connections.set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// A connection refused by the cap `limit` (`total`, `per_client`).
    pub fn http_refused(&self, limit: &'static str) {
        self.http_refused.get_or_create(&vec![("limit", limit.to_string())]).inc();
    }

    /// A failed accept; `reason` is an errno word (`emfile`, …) or `other`.
    pub fn http_accept_error(&self, reason: &'static str) {
        self.http_accept_errors.get_or_create(&vec![("reason", reason.to_string())]).inc();
    }

    /// A connection closed by the `timeout` (`header`, `body`, `idle`).
    pub fn http_timeout(&self, timeout: &'static str) {
        self.http_timeouts.get_or_create(&vec![("timeout", timeout.to_string())]).inc();
    }

    /// Drop every label set of a monitor that was removed from the configuration.
    pub fn forget_monitor(&self, project: &str, monitor: &str) {
        for result in PROBE_RESULTS {
            self.probes.remove(&probe_labels(project, monitor, result));
        }
    }

    /// The OpenMetrics text exposition (Prometheus scrapes it; see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; the encoder's only errors are the writer's.
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        out
    }
}

/// Events that are counted in a metric but logged at most once per interval: the first at once,
/// the ones after it summed into the next line. A flood of refused connections or failed
/// accepts then costs a log line per interval, not one per event.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    /// When the last line was logged, and the events since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub const fn new(interval: Duration) -> LogThrottle {
        LogThrottle { interval, state: Mutex::new((None, 0)) }
    }

    /// Count one event. `Some(n)` when a line is due: `n` events since the last one, this one
    /// included.
    pub fn hit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last, pending) = &mut *state;
        *pending += 1;
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.interval) {
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(pending))
    }
}

fn probe_labels(project: &str, monitor: &str, result: &str) -> Labels {
    vec![("project", project.to_string()), ("monitor", monitor.to_string()), ("result", result.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines (not comments) of a rendering that start with `prefix`.
    fn samples(text: &str, prefix: &str) -> Vec<String> {
        text.lines().filter(|l| !l.starts_with('#') && l.starts_with(prefix)).map(str::to_string).collect()
    }

    #[test]
    fn every_family_is_rendered_with_help_and_type() {
        let m = Metrics::new();
        m.record_probe("shop", "web-ports", "ok", 0.002);
        m.notification("email", true);
        // A family without label sets has no samples and is left out of the rendering.
        m.applied("abc123", 1_700_000_000_000);
        let text = m.render();
        for (name, kind) in [
            ("watchkeeper_probes", "counter"),
            ("watchkeeper_probe_duration_seconds", "histogram"),
            ("watchkeeper_alerts_firing", "gauge"),
            ("watchkeeper_reconcile_last_applied_timestamp_seconds", "gauge"),
            ("watchkeeper_reconcile_rejected", "counter"),
            ("watchkeeper_revision_info", "gauge"),
            ("watchkeeper_reconcile_status", "gauge"),
            ("watchkeeper_outbox_depth", "gauge"),
            ("watchkeeper_notifications", "counter"),
            ("watchkeeper_http_connections", "gauge"),
            ("watchkeeper_replicas_live", "gauge"),
        ] {
            assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name} missing:\n{text}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name} has no help:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn replica_info_shows_only_the_replicas_of_the_last_heartbeat() {
        let m = Metrics::new();
        m.set_replicas([("a", Some("abc"), false), ("b", None, false)]);
        m.set_replicas([("a", Some("def"), true)]);
        let text = m.render();
        assert_eq!(samples(&text, "watchkeeper_replica_info"), [r#"watchkeeper_replica_info{replica="a",revision="def"} 1"#], "{text}");
        assert_eq!(samples(&text, "watchkeeper_replica_behind"), [r#"watchkeeper_replica_behind{replica="a"} 1"#], "{text}");
        assert_eq!(samples(&text, "watchkeeper_replicas_live"), ["watchkeeper_replicas_live 1"], "{text}");
    }

    #[test]
    fn the_agents_dropped_total_stops_at_the_largest_number_instead_of_wrapping() {
        let m = Metrics::new();
        m.agent_dropped(u64::MAX - 5);
        m.agent_dropped(1_000);
        m.agent_dropped(1);
        assert_eq!(
            samples(&m.render(), "watchkeeper_ingest_agent_dropped_total"),
            [format!("watchkeeper_ingest_agent_dropped_total {}", u64::MAX)]
        );
    }

    #[test]
    fn a_throttled_log_says_the_first_event_then_one_line_per_interval_with_the_count() {
        let throttle = LogThrottle::new(Duration::from_millis(300));
        assert_eq!(throttle.hit(), Some(1));
        for _ in 0..99 {
            assert_eq!(throttle.hit(), None);
        }
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(throttle.hit(), Some(100));
        assert_eq!(throttle.hit(), None);
    }

    #[test]
    fn probes_are_counted_per_result_and_unknown_results_become_other() {
        let m = Metrics::new();
        m.record_probe("shop", "web-ports", "ok", 0.002);
        m.record_probe("shop", "web-ports", "ok", 0.003);
        m.record_probe("shop", "web-ports", "refused", 0.001);
        m.record_probe("shop", "web-ports", "no such kind", 0.001);
        let text = m.render();
        assert!(text.contains(r#"watchkeeper_probes_total{project="shop",monitor="web-ports",result="ok"} 2"#), "{text}");
        assert!(text.contains(r#"watchkeeper_probes_total{project="shop",monitor="web-ports",result="refused"} 1"#), "{text}");
        assert!(text.contains(r#"watchkeeper_probes_total{project="shop",monitor="web-ports",result="other"} 1"#), "{text}");
        assert!(text.contains("watchkeeper_probe_duration_seconds_count 4"), "{text}");
    }

    #[test]
    fn a_forgotten_monitor_disappears_and_others_stay() {
        let m = Metrics::new();
        m.record_probe("shop", "old", "ok", 0.001);
        m.record_probe("shop", "old", "timeout", 5.0);
        m.record_probe("shop", "kept", "ok", 0.001);
        m.forget_monitor("shop", "old");
        let text = m.render();
        assert!(!text.contains(r#"monitor="old""#), "{text}");
        assert_eq!(samples(&text, "watchkeeper_probes_total").len(), 1, "{text}");
    }

    #[test]
    fn alerts_firing_shows_both_severities_from_the_start() {
        let m = Metrics::new();
        let text = m.render();
        assert!(text.contains(r#"watchkeeper_alerts_firing{severity="warning"} 0"#), "{text}");
        assert!(text.contains(r#"watchkeeper_alerts_firing{severity="fatal"} 0"#), "{text}");
        m.set_alerts_firing(3, 1);
        let text = m.render();
        assert!(text.contains(r#"watchkeeper_alerts_firing{severity="warning"} 3"#), "{text}");
        assert!(text.contains(r#"watchkeeper_alerts_firing{severity="fatal"} 1"#), "{text}");
    }

    #[test]
    fn revision_info_keeps_only_the_applied_revision() {
        let m = Metrics::new();
        m.applied("abc123", 1_700_000_000_500);
        m.applied("def456", 1_700_000_060_000);
        let text = m.render();
        assert_eq!(samples(&text, "watchkeeper_revision_info"), vec![r#"watchkeeper_revision_info{revision="def456"} 1"#], "{text}");
        assert!(text.contains("watchkeeper_reconcile_last_applied_timestamp_seconds 1700000060.0"), "{text}");
        assert!(text.contains("watchkeeper_reconcile_status 1"), "{text}");
        // Re-applying the same revision keeps exactly one label set.
        m.applied("def456", 1_700_000_120_000);
        assert_eq!(samples(&m.render(), "watchkeeper_revision_info").len(), 1);
    }

    #[test]
    fn a_rejection_flips_status_and_keeps_the_running_revision() {
        let m = Metrics::new();
        m.applied("abc123", 1_700_000_000_000);
        m.rejected();
        m.rejected();
        let text = m.render();
        assert!(text.contains("watchkeeper_reconcile_status 0"), "{text}");
        assert!(text.contains("watchkeeper_reconcile_rejected_total 2"), "{text}");
        assert!(text.contains(r#"watchkeeper_revision_info{revision="abc123"} 1"#), "{text}");
        m.applied("def456", 1_700_000_060_000);
        assert!(m.render().contains("watchkeeper_reconcile_status 1"));
    }

    #[test]
    fn outbox_depth_and_notifications() {
        let m = Metrics::new();
        m.set_outbox_depth(7);
        m.notification("email", true);
        m.notification("sms", false);
        m.notification("sms", false);
        let text = m.render();
        assert!(text.contains("watchkeeper_outbox_depth 7"), "{text}");
        assert!(text.contains(r#"watchkeeper_notifications_total{medium="email",result="ok"} 1"#), "{text}");
        assert!(text.contains(r#"watchkeeper_notifications_total{medium="sms",result="failed"} 2"#), "{text}");
    }
}
