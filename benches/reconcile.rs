//! Benchmark: reconcile one changed server in a 10 000-server tree against its target (README, "Performance targets") — ≤ 200 ms,
//! and unchanged monitors keep their schedule and state.
//!
//! Run with `cargo bench --bench reconcile`. It prints figures; it asserts nothing about time,
//! only that the reloads kept every schedule and every firing alert (the property, not the speed).
//!
//! Steps:
//! 1. generate the target-size tree (`treegen`, 10 000 servers, 10 000 port monitors) with every
//!    address on 127.0.0.1: port monitors check one loopback listener this bench opens, and every
//!    hundredth monitor also a port nothing listens on (a down port);
//! 2. build what serve builds around the reconciler: a SQLite store in a temporary file, Metrics,
//!    the alert engine (running), a real Prober (running: it probes the listener throughout);
//!    seed a firing alert on every down port, so the engine resumes them firing;
//! 3. apply the initial revision, then `WK_BENCH_RUNS` times edit one Server document (its tags)
//!    in one project's servers.yaml and time `source::read_once` with serve's warm ParseCache plus
//!    `Reconciler::apply`; then `WK_BENCH_COLD_RUNS` times the same with an empty cache;
//! 4. check: every monitor kept its next due time across each apply (or ran in between), the
//!    prober holds as many monitors as before, and the same alerts (id and start time) are firing.
//!
//! Environment: `WK_BENCH_RUNS` (10), `WK_BENCH_COLD_RUNS` (3), `WK_BENCH_KEEP` (keep the tree).

mod common;
#[allow(dead_code)]
mod treegen;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watchkeeper::alert::retire::monitor_active;
use watchkeeper::alert::{AlertChange, InstanceKey, RuleId};
use watchkeeper::alert::{AlertState, Phase, Severity};
use watchkeeper::clock::now_ms;
use watchkeeper::config::diagnostic::SourceFile;
use watchkeeper::config::load::{self, ParseCache};
use watchkeeper::config::{self, Config, Diagnostics, Library, Sources, compile};
use watchkeeper::engine::Engine;
use watchkeeper::metrics::Metrics;
use watchkeeper::probe::{MonitorKey, Prober};
use watchkeeper::reconcile::source::{self, Revision, SourceSpec};
use watchkeeper::reconcile::{Reconciler, monitor_specs};
use watchkeeper::store::{AlertFilter, AlertStatus, RevisionRecord, Store};

use common::{Spread, ms, verdict};

/// The target for reconciling one changed server.
const TARGET: Duration = Duration::from_millis(200);

fn main() {
    let fd_limit = common::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(run(fd_limit));
}

/// One timed reload: reading (and parsing, compiling) the tree, then applying it.
struct Timing {
    read: Duration,
    apply: Duration,
}

/// What happened to the prober's schedule across one apply.
#[derive(Default)]
struct ScheduleCheck {
    kept: usize,
    /// Due inside the window, so it ran and legitimately has a new next due time.
    ran: usize,
    /// Moved although it was not due: the property is broken.
    moved: Vec<String>,
}

async fn run(fd_limit: u64) {
    let warm_runs = common::env_u64("WK_BENCH_RUNS", 10).max(1) as usize;
    let cold_runs = common::env_u64("WK_BENCH_COLD_RUNS", 3) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("watchkeeper reconcile benchmark — loopback only, {cpus} CPUs, fd limit {fd_limit}");

    // 1. The tree: every probe goes to 127.0.0.1, to a port that is up or (1 %) one that is down.
    let up = common::Listener::open(0);
    let down = common::free_port();
    let mut ports = vec![vec![up.port]; 100];
    ports[0] = vec![up.port, down];
    let options = treegen::Options { loopback: true, ports, interval: None };
    let size = treegen::Size::spec();
    let tmp = tempfile::Builder::new().prefix("wk-bench-reconcile-").tempdir().expect("temporary directory");
    let dir = tmp.path().join("tree");
    let started = std::time::Instant::now();
    let stats = treegen::generate_with(&dir, &size, &options).expect("writing the tree");
    println!(
        "tree: {} servers, {} port monitors, {} alert policies, {} projects; {} files, {:.1} MB, generated in {}",
        stats.servers,
        stats.monitors,
        stats.alert_policies,
        size.projects,
        stats.files,
        stats.bytes as f64 / 1e6,
        ms(started.elapsed())
    );
    println!("probes: 127.0.0.1:{} (listening) on every monitor, 127.0.0.1:{down} (closed) also on every 100th", up.port);

    // The first revision, read the way serve's source reads it (this fills the parse cache).
    let spec = SourceSpec::Dir { dir: dir.clone(), rescan: Duration::from_secs(30), settle: Duration::ZERO };
    let library = Library::Builtin;
    let (first, mut cache, initial_read) = read(&spec, &library, ParseCache::default()).await;
    require_clean(&first);
    let specs = monitor_specs(&first.loaded.config);
    let keys: Vec<MonitorKey> = specs.iter().map(|s| s.key.clone()).collect();
    let probes: usize = specs.iter().map(|s| s.ports.len()).sum();
    println!(
        "initial read_once (cold cache): {}; {} monitors probed ({probes} ports), paused servers' monitors not",
        ms(initial_read),
        keys.len()
    );

    // 2. Store, seeded with a firing alert on every down port; engine, prober, reconciler.
    let store = Store::connect(&format!("sqlite://{}", tmp.path().join("wk.db").display())).await.expect("SQLite store");
    let seeded = seed_firing(&store, &first.loaded.config, down).await;
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::load(store.clone(), Arc::clone(&metrics), Arc::new(Notify::new())).await.expect("engine state");
    let cancel = CancellationToken::new();
    let (applied_tx, applied_rx) = mpsc::channel(4);
    let (results_tx, results_rx) = mpsc::channel(256);
    let (_hosts_tx, hosts_rx) = mpsc::channel(1);
    let engine_task = tokio::spawn(engine.run(applied_rx, results_rx, hosts_rx, cancel.clone()));
    let prober = Prober::start(256, results_tx, cancel.child_token());
    let (config_tx, config_rx) = watch::channel(Arc::new(Config::default()));
    let mut reconciler = Reconciler::new(store.clone(), Arc::clone(&metrics), prober, applied_tx, config_tx);

    let t = Instant::now();
    reconciler.apply(first).await;
    println!("initial apply ({} monitors added): {}", keys.len(), ms(t.elapsed()));
    assert_eq!(reconciler.prober.len(), keys.len(), "the prober runs every active monitor");
    // Let the engine take the first revision (it would retire anything the tree does not have).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let firing_before = firing(&store).await;
    assert_eq!(firing_before, seeded, "the engine resumed the seeded alerts firing");
    println!("state: {} alerts firing on down ports (seeded before the engine started)", seeded.len());
    println!();

    // 3. Timed reloads, one changed server each.
    let servers_files = servers_files(&dir);
    let mut schedule = ScheduleCheck::default();
    let mut warm = Vec::with_capacity(warm_runs);
    let mut cold = Vec::with_capacity(cold_runs);
    for k in 0..warm_runs + cold_runs {
        let file = &servers_files[(k * 37) % servers_files.len()];
        let server = edit_one_server(file, k);
        let is_cold = k >= warm_runs;
        let before: Vec<Option<Instant>> = keys.iter().map(|key| reconciler.prober.next_due(key)).collect();
        let monitors_before = reconciler.prober.len();

        let (snapshot, used, read_time) = read(&spec, &library, if is_cold { ParseCache::default() } else { cache }).await;
        // After a cold run the fresh cache has seen every file, this run's edit included: serve would keep it.
        cache = used;
        require_clean(&snapshot);
        assert_eq!(monitor_specs(&snapshot.loaded.config), specs, "editing a server's tags changes no monitor");
        let t = Instant::now();
        reconciler.apply(snapshot).await;
        let apply_time = t.elapsed();
        let window_end = Instant::now();

        assert_eq!(reconciler.prober.len(), monitors_before, "no monitor added or removed");
        for (key, was) in keys.iter().zip(&before) {
            let now = reconciler.prober.next_due(key);
            match (was, now) {
                (Some(a), Some(b)) if *a == b => schedule.kept += 1,
                (Some(a), Some(_)) if *a <= window_end => schedule.ran += 1,
                _ => schedule.moved.push(format!("{key}: {was:?} → {now:?}")),
            }
        }
        let timing = Timing { read: read_time, apply: apply_time };
        let total = timing.read + timing.apply;
        println!(
            "run {:>2} ({}): edited {} in {} — read_once {}, apply {}, total {}",
            k + 1,
            if is_cold { "cold cache" } else { "warm cache" },
            server,
            file.strip_prefix(&dir).unwrap_or(file).display(),
            ms(timing.read),
            ms(timing.apply),
            ms(total)
        );
        if is_cold { cold.push(timing) } else { warm.push(timing) }
    }

    // 4. State: after the engine has taken every revision, the same alerts fire.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let firing_after = firing(&store).await;
    let resolved = resolved_by_reload(&store).await;
    drop(config_rx);

    println!();
    where_time_goes(&dir, &store).await;
    println!();
    let spread = |runs: &[Timing], f: fn(&Timing) -> Duration| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
    let warm_total = spread(&warm, |t| t.read + t.apply);
    println!("summary — reconcile one changed server, {} servers / {} monitors (target ≤ {})", stats.servers, stats.monitors, ms(TARGET));
    println!("  warm cache (serve's path), {} runs:", warm.len());
    println!("    read_once  {}", spread(&warm, |t| t.read));
    println!("    apply      {}", spread(&warm, |t| t.apply));
    println!("    total      {}   → {}", warm_total, verdict(warm_total.median <= TARGET));
    if !cold.is_empty() {
        let cold_total = spread(&cold, |t| t.read + t.apply);
        println!("  cold cache (every file parsed again), {} runs:", cold.len());
        println!("    read_once  {}", spread(&cold, |t| t.read));
        println!("    apply      {}", spread(&cold, |t| t.apply));
        println!("    total      {}   ({} against the target)", cold_total, verdict(cold_total.median <= TARGET));
    }
    let checks = schedule.kept + schedule.ran + schedule.moved.len();
    println!(
        "  schedule: {checks} monitor×apply checks — {} kept their next due time, {} ran during the apply window, {} moved → {}",
        schedule.kept,
        schedule.ran,
        schedule.moved.len(),
        verdict(schedule.moved.is_empty())
    );
    let same = firing_after == firing_before;
    println!(
        "  state: {} alerts firing before, {} after, same ids and start times: {}; {} resolved by a reload → {}",
        firing_before.len(),
        firing_after.len(),
        same,
        resolved,
        verdict(same && resolved == 0)
    );
    assert!(
        schedule.moved.is_empty(),
        "monitors rescheduled by a reload of an unrelated change: {:?}",
        &schedule.moved[..5.min(schedule.moved.len())]
    );
    assert!(same && resolved == 0, "firing alerts changed across reloads: before {firing_before:?}, after {firing_after:?}");

    let prober = reconciler.prober;
    prober.shutdown().await;
    cancel.cancel();
    let _ = engine_task.await;
    drop(up);
    if std::env::var_os("WK_BENCH_KEEP").is_some() {
        println!("tree kept at {}", tmp.keep().display());
    }
}

/// `source::read_once` on a blocking thread, as serve's source task runs it; the cache comes back.
async fn read(spec: &SourceSpec, library: &Library, mut cache: ParseCache) -> (Revision, ParseCache, Duration) {
    let (spec, library) = (spec.clone(), library.clone());
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let snapshot = source::read_once(&spec, &library, &mut cache).expect("reading the tree");
        (snapshot, cache, t.elapsed())
    })
    .await
    .expect("reader thread")
}

fn require_clean(snapshot: &Revision) {
    let loaded = &snapshot.loaded;
    if !loaded.diagnostics.is_empty() {
        let shown = &loaded.diagnostics[..loaded.diagnostics.len().min(10)];
        let report = watchkeeper::lint::render(shown, &loaded.sources, 0, watchkeeper::lint::Format::Human);
        panic!("the generated tree must lint clean, but has {} diagnostics; the first:\n{report}", loaded.diagnostics.len());
    }
}

/// Every project's servers.yaml, in a fixed order.
fn servers_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("projects"))
        .expect("projects folder")
        .map(|e| e.expect("directory entry").path().join("servers.yaml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Add a tag to one Server document of `file` (a different one for each `k`); its name.
fn edit_one_server(file: &Path, k: usize) -> String {
    let text = std::fs::read_to_string(file).expect("servers.yaml");
    let docs: Vec<usize> = text.match_indices("\nkind: Server\n").map(|(i, _)| i + 1).collect();
    let start = docs[(k * 7) % docs.len()];
    let name_at = start + text[start..].find("\nname: ").expect("a server name") + "\nname: ".len();
    let name = text[name_at..].lines().next().expect("name line").to_string();
    let tags_at = start + text[start..].find("\ntags: [").expect("server tags");
    let close = tags_at + text[tags_at..].find(']').expect("end of tags");
    let edited = format!("{}, bench-{k}{}", &text[..close], &text[close..]);
    std::fs::write(file, edited).expect("writing servers.yaml");
    name
}

/// Open a firing alert on every active monitor's `down` port, as a previous serve run would
/// have left it; returns (id, started_at_ms) of each.
async fn seed_firing(store: &Store, config: &Config, down: u16) -> BTreeSet<(i64, i64)> {
    let since = now_ms() - 10 * 60_000;
    let mut seeded = BTreeSet::new();
    for project in config.projects.values() {
        for monitor in project.port_monitors.values().filter(|m| m.ports.contains(&down) && monitor_active(project, m)) {
            let key = InstanceKey {
                project: project.name.clone(),
                server: monitor.server.clone().unwrap_or_default(),
                rule: RuleId::Port(monitor.name.clone()),
                subject: down.to_string(),
            };
            let state = AlertState {
                phase: Phase::Firing { since_ms: since, severity: Severity::Fatal },
                failures: monitor.failures,
                ..AlertState::default()
            };
            let open = AlertChange::Open {
                severity: Severity::Fatal,
                started_at_ms: since,
                message: format!("port {down} of {} is down: connection refused", monitor.name),
                host: monitor.host.clone(),
                snapshot: serde_json::json!({}),
            };
            let id = store.apply_alert(&key, &state, None, Some(&open), &[], since).await.expect("seeding an alert").expect("an alert id");
            seeded.insert((id, since));
        }
    }
    seeded
}

async fn firing(store: &Store) -> BTreeSet<(i64, i64)> {
    let filter = AlertFilter { status: Some(AlertStatus::Firing), ..AlertFilter::default() };
    store.list_alerts(&filter).await.expect("firing alerts").into_iter().map(|a| (a.id, a.started_at_ms)).collect()
}

/// Alerts a reload resolved (`removed in …`, `paused in …`).
async fn resolved_by_reload(store: &Store) -> usize {
    let filter = AlertFilter { status: Some(AlertStatus::Resolved), ..AlertFilter::default() };
    let resolved = store.list_alerts(&filter).await.expect("resolved alerts");
    resolved.iter().filter(|a| a.resolve_reason.as_deref().is_some_and(|r| r.contains(" in "))).count()
}

/// Where one warm reload's time goes, step by step as `read_once` and `Reconciler::apply` take
/// them (median of 5, in-process, with the prober and engine still running beside it).
async fn where_time_goes(dir: &Path, store: &Store) {
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let dir = dir.to_path_buf();
    let steps = tokio::task::spawn_blocking(move || {
        let mut cache = ParseCache::default();
        let _ = config::load_dir_cached(&dir, &Library::Builtin, &mut cache);
        let mut builtin = Sources::default();
        for (name, text) in config::BUILTIN_POLICIES {
            builtin.add(SourceFile { path: (*name).into(), text: text.to_string() });
        }
        let mut steps: [Vec<Duration>; 6] = Default::default();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let sources = load::read_dir(&dir, &mut Diagnostics::default());
            steps[0].push(t.elapsed());
            let t = std::time::Instant::now();
            let docs = load::parse_cached(&sources, &mut Diagnostics::default(), &mut cache);
            steps[1].push(t.elapsed());
            let t = std::time::Instant::now();
            let library = load::parse(&builtin, &mut Diagnostics::default());
            steps[2].push(t.elapsed());
            let t = std::time::Instant::now();
            let compiled = compile::compile(docs, library, &sources, now_ms(), &mut Diagnostics::default());
            steps[3].push(t.elapsed());
            let t = std::time::Instant::now();
            let specs = monitor_specs(&compiled);
            steps[4].push(t.elapsed());
            let t = std::time::Instant::now();
            drop((compiled, specs));
            steps[5].push(t.elapsed());
        }
        steps
    })
    .await
    .expect("breakdown thread");
    let mut record = Vec::new();
    for i in 0..5 {
        let rec = RevisionRecord {
            revision: format!("bench-{i}"),
            at_ms: now_ms(),
            applied: true,
            diagnostics: serde_json::json!([]),
            held_until_ms: None,
        };
        let t = Instant::now();
        store.record_revision(&rec).await.expect("recording a revision");
        record.push(t.elapsed());
    }
    let [read_dir, parse_cached, library, compile, specs, drop_config] = steps.map(median);
    println!("where a warm reload goes (nothing changed; median of 5, the prober and engine running beside):");
    println!(
        "  read_once:  read_dir (every file) {}, parse_cached (all hits: cloned from the cache) {}, built-in library parse {}, compile {}",
        ms(read_dir),
        ms(parse_cached),
        ms(library),
        ms(compile)
    );
    println!("              (read_once also hashes every file for the revision; parse of the one changed file comes on top)");
    println!(
        "  apply:      monitor_specs {}, dropping the previous Config {}, recording the revision in SQLite {}",
        ms(specs),
        ms(drop_config),
        ms(median(record))
    );
}
