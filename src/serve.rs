//! `watchkeeper serve`: open the store, start every task — source, reconciler (with the
//! prober), alert engine, collector writer, outbox, daily report mails, status API, rollups and
//! retention, this replica's heartbeat and (on PostgreSQL) its shard leases — wire them with channels, and on
//! shutdown signal them all and wait for each.

pub mod fds;
pub mod http;
pub mod leases;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::ApiState;
use crate::clock::now_ms;
use crate::collect::caps::SubjectCaps;
use crate::collect::live::LiveServers;
use crate::collect::{follow, scrape, writer};
use crate::config::{Config, Library};
use crate::delivery::{self, Senders};
use crate::engine::Engine;
use crate::lease::Ownership;
use crate::metrics::Metrics;
use crate::notification::storm::StormSettings;
use crate::probe::Prober;
use crate::reconcile::source::{self, SourceSpec};
use crate::reconcile::{MassRemoval, Reconciler};
use crate::report;
use crate::store::{self, ProbeRetention, SampleRetention, Store};
use crate::web::{self, WebState};
use http::HttpLimits;

pub struct ServeOptions {
    pub source: SourceSpec,
    pub library: Library,
    /// `sqlite://PATH` or `postgres://…`.
    pub db_url: String,
    pub listen: String,
    /// Cap on TCP connects in flight.
    pub max_in_flight: usize,
    /// How long probe events and rollups are kept.
    pub probe_retention: ProbeRetention,
    /// SHA-256 of the operator token (from `WATCHKEEPER_TOKEN`), if set.
    pub admin_token_sha256: Option<String>,
    /// This replica's id (`--replica-id`): its heartbeat row and its outbox leases.
    pub replica_id: String,
    /// How long a replica's heartbeat keeps it alive (`--lease-ttl`); it heartbeats every third.
    pub lease_ttl: Duration,
    /// How often node_exporter servers are scraped.
    pub scrape_interval: Duration,
    /// How long a dashboard sign-in lasts.
    pub session_ttl: Duration,
    /// The address users open (`--public-url`); an https one makes the session cookie `Secure`.
    /// Mails of channels with `track_reads` carry read-receipt images under it.
    pub public_url: Option<String>,
    /// How often e-mail channels' `bounces` Maildirs are scanned.
    pub bounce_interval: Duration,
    /// The HTTP listener's timeouts and connection caps (the caps lowered at start to fit the
    /// open-files limit).
    pub http: HttpLimits,
    /// How many alert transitions of one project are told one by one per window; the rest go
    /// out as digests.
    pub storm: StormSettings,
    /// Which revisions remove too much at once, and whether they are held.
    pub mass_removal: MassRemoval,
    /// How many probe results wait for the store at most while it is unreachable.
    pub probe_buffer: usize,
    /// How many mounts, devices, interfaces and process names one server may have.
    pub subject_caps: SubjectCaps,
}

/// Run until `shutdown` is cancelled; returns once every task has stopped. The caller installs
/// the process's TLS crypto provider first (every TLS client here uses it).
pub async fn run(options: ServeOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Held until serve returns: a second serve on the same SQLite file is refused.
    let _sqlite_claim = store::claim_sqlite(&options.db_url).context("opening the database")?;
    let store = Store::connect(&options.db_url).await.context("opening the database")?;
    let listener = http::bind(&options.listen).await.with_context(|| format!("listening on {}", options.listen))?;
    let address = listener.local_addr().context("reading the listen address")?;
    tracing::info!(
        listen = %address,
        db = store.backend(),
        "serve started: dashboard at {}, status API at {}",
        base_url(address),
        status_url(address)
    );
    let http_limits = fit_open_files(options.http, options.max_in_flight, &store);

    let metrics = Arc::new(Metrics::new());
    let outbox_wake = Arc::new(Notify::new());
    let (config_tx, config_rx) = watch::channel(Arc::new(Config::default()));
    let (results_tx, results_rx) = mpsc::channel(256);
    let (applied_tx, applied_rx) = mpsc::channel(4);
    let (revisions_tx, revisions_rx) = mpsc::channel(1);
    let cancel = shutdown.child_token();
    let mut tasks = JoinSet::new();

    let (hosts_tx, hosts_rx) = mpsc::channel(1024);
    let (batches_tx, batches_rx) = mpsc::channel(1024);

    // On PostgreSQL the work is divided among the replicas by shard leases; a SQLite file has one
    // serve, which owns every shard.
    let ownership = Arc::new(match store.backend() {
        "postgres" => Ownership::leased(&options.replica_id),
        _ => Ownership::everything(&options.replica_id),
    });
    let mut engine = Engine::load(store.clone(), Arc::clone(&metrics), Arc::clone(&outbox_wake)).await.context("loading alert state")?;
    engine.set_ownership(Arc::clone(&ownership));
    engine.set_storm_control(options.storm);
    engine.set_probe_buffer(options.probe_buffer);
    // The newest report of every server, as it was before the restart.
    let live = LiveServers::default();
    for state in store.load_server_states().await.context("loading the servers' last reports")? {
        engine.restore_server(&state.project, &state.server, state.last_report_ms, state.report.facts.boot_time);
        live.update(&state.project, &state.server, Arc::new(state.report), state.last_report_ms);
    }
    tasks.spawn(engine.run(applied_rx, results_rx, hosts_rx, cancel.clone()));
    if ownership.is_leased() {
        // Replicas: every one shows, and the shard's holder decides on, what any of them received.
        tasks.spawn(follow::run(store.clone(), live.clone(), hosts_tx.clone(), cancel.clone()));
    }
    tasks.spawn(writer::run(store.clone(), live.clone(), batches_rx, hosts_tx, Arc::clone(&metrics), options.subject_caps, cancel.clone()));
    tasks.spawn(scrape::run(
        config_rx.clone(),
        batches_tx.clone(),
        Arc::clone(&metrics),
        options.scrape_interval,
        Some(Arc::clone(&ownership)),
        cancel.clone(),
    ));

    let prober = Prober::start_divided(options.max_in_flight, results_tx, Some(Arc::clone(&ownership)), cancel.child_token());
    let reconciler =
        Reconciler::new(store.clone(), Arc::clone(&metrics), prober, applied_tx, config_tx).with_mass_removal(options.mass_removal);
    tasks.spawn(reconciler.run(revisions_rx, cancel.clone()));
    tasks.spawn(source::follow(options.source, options.library, revisions_tx, cancel.clone()));

    tasks.spawn(delivery::run_outbox(
        store.clone(),
        config_rx.clone(),
        Senders::new().with_public_url(options.public_url.as_deref()),
        Arc::clone(&metrics),
        options.replica_id.clone(),
        Arc::clone(&outbox_wake),
        cancel.clone(),
    ));
    tasks.spawn(delivery::run_bounces(store.clone(), config_rx.clone(), options.bounce_interval, cancel.clone()));
    tasks.spawn(untracked_reads_notice(config_rx.clone(), options.public_url.is_some(), cancel.clone()));

    tasks.spawn(report::mail::run(store.clone(), config_rx.clone(), Arc::clone(&outbox_wake), cancel.clone()));

    let lease_ttl_ms = i64::try_from(options.lease_ttl.as_millis()).unwrap_or(i64::MAX);
    if ownership.is_leased() {
        tasks.spawn(leases::keep(store.clone(), Arc::clone(&metrics), Arc::clone(&ownership), options.lease_ttl, cancel.clone()));
    }
    tasks.spawn(membership(store.clone(), Arc::clone(&metrics), options.replica_id, options.lease_ttl, cancel.clone()));

    let locked_out = no_way_in_notice(config_rx.clone(), options.admin_token_sha256.is_some(), cancel.clone());
    let state = ApiState {
        store: store.clone(),
        config: config_rx,
        metrics,
        admin_token_sha256: options.admin_token_sha256,
        started_at_ms: now_ms(),
        lease_ttl_ms,
        live,
        collector: Some(batches_tx),
    };
    let api_metrics = Arc::clone(&state.metrics);
    let app = web::router(WebState::new(state, options.session_ttl, options.public_url.as_deref()));
    let api_cancel = cancel.clone();
    // The notice ends early; the listener's task is the pair, which ends when the listener does.
    tasks.spawn(async move {
        tokio::join!(http::serve(listener, app, http_limits, api_metrics, api_cancel), locked_out);
    });

    tasks.spawn(probe_upkeep(store.clone(), options.probe_retention, cancel.clone()));
    let upkeep_cancel = cancel.clone();
    let upkeep_store = store.clone();
    tasks.spawn(async move {
        let store = upkeep_store;
        // Roll host samples up every minute; prune what is past their retention every hour.
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        for minute in 0u64.. {
            tokio::select! {
                _ = upkeep_cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            if let Err(e) = store.roll_up(now).await {
                tracing::warn!(error = %e, "cannot roll up host samples; will try again in a minute");
            }

            if minute % 60 != 0 {
                continue;
            }
            match store.prune_samples(now, &SampleRetention::default()).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned host samples and rollups past retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot prune host samples"),
            }
        }
    });

    // A task that ends on its own (a panic, a closed channel) takes the others down with it.
    let first = tasks.join_next().await;
    if !cancel.is_cancelled() {
        tracing::error!("a serve task stopped unexpectedly; shutting down");
    }
    cancel.cancel();
    if let Some(Err(e)) = first {
        tracing::error!(error = %e, "serve task failed");
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            tracing::error!(error = %e, "serve task failed");
        }
    }
    store.close().await;
    tracing::info!("serve stopped");
    Ok(())
}

/// Raise the open-files limit and fit the HTTP connection caps into what it leaves after the
/// prober, the store and the configuration reader; say what was chosen.
fn fit_open_files(wanted: HttpLimits, max_in_flight: usize, store: &Store) -> HttpLimits {
    let Some(limit) = fds::raise_open_files_limit() else {
        return wanted;
    };
    let budget = fds::Budget::new(limit, max_in_flight, store.max_open_files());
    let (limits, lowered) = budget.fit(wanted);
    tracing::info!(
        open_files_limit = limit,
        reserved = budget.reserved(),
        probes = budget.probes,
        store = budget.store,
        config_reader = budget.config_reader,
        margin = budget.margin,
        max_connections = limits.max_connections,
        max_connections_per_client = limits.max_connections_per_client,
        "open files: limit {limit}, {} kept for probes, the database and the configuration reader; HTTP connections capped at {} ({} per client address)",
        budget.reserved(),
        limits.max_connections,
        limits.max_connections_per_client
    );
    if lowered {
        tracing::warn!(
            open_files_limit = limit,
            wanted = wanted.max_connections,
            max_connections = limits.max_connections,
            "the open-files limit leaves room for only {} of the {} HTTP connections asked for; raise it (ulimit -n, systemd's LimitNOFILE) to allow more",
            limits.max_connections,
            wanted.max_connections
        );
    }
    limits
}

/// Rows of a database from before events and rollups converted per transaction.
const CONVERT_CHUNK: u32 = 5_000;

/// Convert old per-check probe rows (if any) while serve runs, then every hour roll finished
/// days up and prune probe data past its retention. Runs until cancelled.
async fn probe_upkeep(store: Store, retention: ProbeRetention, cancel: CancellationToken) {
    let mut converted = 0u64;
    loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return,
            chunk = store.convert_probe_results(CONVERT_CHUNK) => chunk,
        };
        match chunk {
            Ok(0) => break,
            Ok(n) => {
                converted += n;
                if converted % (100 * u64::from(CONVERT_CHUNK)) < n {
                    tracing::info!(converted, "converting old probe results into events and rollups");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot convert old probe results; will try again in a minute");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        }
    }
    if converted > 0 {
        tracing::info!(converted, "old probe results converted into events and rollups");
    }
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        if let Err(e) = store.roll_up_probe_days(now).await {
            tracing::warn!(error = %e, "cannot roll up probe results per day; will try again in an hour");
        }
        match store.prune_probes(now, &retention).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned probe events and rollups past retention"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune probe events and rollups"),
        }
    }
}

/// Heartbeat this replica's row every third of `lease_ttl` (with the revision it runs), delete
/// the rows of replicas dead for longer, and show the live ones in `/metrics` (with which are
/// behind the newest revision); on shutdown,
/// delete its own row so the others see it gone at once. A heartbeat the database refuses is
/// logged and tried again at the next tick.
async fn membership(store: Store, metrics: Arc<Metrics>, replica_id: String, lease_ttl: Duration, cancel: CancellationToken) {
    let ttl_ms = i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX);
    let mut row = store::ReplicaRow { id: replica_id, started_ms: now_ms(), heartbeat_ms: 0, revision: None };
    tracing::info!(replica = %row.id, lease_ttl_ms = ttl_ms, "replica {} joins; its heartbeat keeps it alive for {lease_ttl:?}", row.id);
    let mut tick = tokio::time::interval(lease_ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        row.heartbeat_ms = now_ms();
        row.revision = metrics.applied_revision();
        if let Err(e) = store.heartbeat_replica(&row, ttl_ms).await {
            tracing::warn!(replica = %row.id, error = %e, "cannot write this replica's heartbeat; will try again");
            continue;
        }
        let live = match store.live_replicas(row.heartbeat_ms, ttl_ms).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the live replicas");
                continue;
            }
        };
        match store.revision_skew(live.iter().filter_map(|r| r.revision.as_deref())).await {
            Ok(skew) => metrics.set_replicas(
                live.iter().map(|r| (r.id.as_str(), r.revision.as_deref(), r.revision.as_deref().is_some_and(|v| skew.is_behind(v)))),
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read when the replicas' revisions were applied"),
        }
    }
    if let Err(e) = store.release_replica(&row.id).await {
        tracing::warn!(replica = %row.id, error = %e, "cannot remove this replica's row; it expires after the lease TTL");
    }
}

/// Without `--public-url`, say at ERROR — for each revision that has them — which channels ask
/// for read receipts (`track_reads`) that their mails cannot carry: those mails go out without
/// the image. Mail is never held back for it: an alert matters more than knowing it was read.
async fn untracked_reads_notice(mut config: watch::Receiver<Arc<Config>>, public_url: bool, cancel: CancellationToken) {
    if public_url {
        // Nothing to say; end with the others, not before (a task that ends early stops serve).
        cancel.cancelled().await;
        return;
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = config.changed() => if changed.is_err() { return },
        }
        let tracking: Vec<String> =
            config.borrow_and_update().channels.values().filter(|c| c.track_reads).map(|c| c.name.clone()).collect();
        if !tracking.is_empty() {
            tracing::error!(
                channels = %tracking.join(", "),
                "channels with track_reads need serve's --public-url (the address mail readers fetch the read-receipt image from); \
                 their mails go out without one until serve is restarted with it"
            );
        }
    }
}

/// Once the first revision is applied, say so if nobody can read the status API — no operator
/// token and no User with a `token_sha256` — and how to make a token. Said once: a later
/// revision does not repeat it.
async fn no_way_in_notice(mut config: watch::Receiver<Arc<Config>>, operator_token: bool, cancel: CancellationToken) {
    if operator_token {
        return;
    }
    tokio::select! {
        _ = cancel.cancelled() => return,
        changed = config.changed() => if changed.is_err() { return },
    }
    if config.borrow().users.values().all(|u| u.token_sha256.is_none()) {
        tracing::warn!(
            "nobody can read the status API: no operator token and no User with a token_sha256; make a token with \
             `watchkeeper token`, then restart serve with WATCHKEEPER_TOKEN=<token>, or put its token_sha256 line on a User"
        );
    }
}

/// The dashboard's URL for a listener on `address`: an unspecified address (all interfaces) is
/// reached as `localhost`.
fn base_url(address: std::net::SocketAddr) -> String {
    let host = match address.ip() {
        ip if ip.is_unspecified() => "localhost".to_string(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{host}:{}/", address.port())
}

/// The URL to open for the status API listening on `address`.
fn status_url(address: std::net::SocketAddr) -> String {
    format!("{}api/v1/status", base_url(address))
}

#[cfg(test)]
mod tests {
    use super::status_url;

    #[test]
    fn the_status_url_is_one_a_browser_on_this_machine_can_open() {
        for (listen, url) in [
            ("127.0.0.1:8080", "http://127.0.0.1:8080/api/v1/status"),
            ("0.0.0.0:9000", "http://localhost:9000/api/v1/status"),
            ("[::]:8080", "http://localhost:8080/api/v1/status"),
            ("[::1]:8080", "http://[::1]:8080/api/v1/status"),
            ("192.0.2.7:80", "http://192.0.2.7:80/api/v1/status"),
        ] {
            assert_eq!(status_url(listen.parse().unwrap()), url, "{listen}");
        }
    }
}
