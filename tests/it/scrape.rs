//! The node_exporter scraper against Debian's real `prometheus-node-exporter` on 127.0.0.1, with
//! a channel in place of the collector's writer: reports like an agent's, rates from the second
//! scrape, failing and refused targets, and configuration changes applied loop by loop. The
//! approved-network test needs no exporter: a local HTTP server serves it a fixed page.
//!
//! Time is real (the exporter is a real process), so nothing here asserts a duration: "a loop
//! has stopped" is judged by another target of the same interval scraping several times more.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use watchkeeper::collect::scrape;
use watchkeeper::collect::writer::{Batch, Source};
use watchkeeper::config::{Config, Library};
use watchkeeper::metrics::Metrics;
use watchkeeper::protocol::Report;

use crate::support::exporter::{self, Exporter};
use crate::support::http::HttpServer;

/// Short enough for a quick test, long enough that a node_exporter on a busy machine answers
/// within it (it is also the scrape timeout).
const INTERVAL: Duration = Duration::from_secs(1);

/// A hang guard for waiting on a batch, not a benchmark.
const PATIENCE: Duration = Duration::from_secs(60);

const HEAD: &str = r#"
kind: User
email: alice@example.com
name: Alice
---
kind: Group
name: locked
owner: alice@example.com
networks: [10.9.9.0/24]
---
kind: Project
name: shop
members: [{ user: alice@example.com, role: admin }]
---
kind: Project
name: vault
group: locked
"#;

/// One server document: scraped from `url`, or an agent's when `url` is `None`.
fn server(project: &str, name: &str, host: &str, url: Option<&str>, paused: bool) -> String {
    let metrics = url.map(|u| format!("metrics: {{ source: node_exporter, url: \"{u}\" }}\n")).unwrap_or_default();
    format!("---\nkind: Server\nname: {name}\nproject: {project}\nhost: {host}\npaused: {paused}\n{metrics}")
}

fn scraped(name: &str, url: &str) -> String {
    server("shop", name, "127.0.0.1", Some(url), false)
}

/// Compile a tree through the path serve uses; it must have no errors.
fn config(dir: &Path, servers: &[String]) -> Arc<Config> {
    std::fs::write(dir.join("tree.yaml"), format!("{HEAD}{}", servers.concat())).unwrap();
    let loaded = watchkeeper::config::load_dir(dir, &Library::Builtin);
    assert!(!loaded.has_errors(), "test tree has errors: {:#?}", loaded.diagnostics);
    Arc::new(loaded.config)
}

/// `scrape::run` with a channel where the writer would be.
struct Scraper {
    config: watch::Sender<Arc<Config>>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl Scraper {
    /// Start scraping the servers of the tree `HEAD` + `servers`; the reports arrive in the [`Received`].
    fn start(servers: &[String]) -> (Scraper, Received) {
        crate::support::install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let (config, config_rx) = watch::channel(self::config(dir.path(), servers));
        let (batches, rx) = mpsc::channel(64);
        let metrics = Arc::new(Metrics::new());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(scrape::run(config_rx, batches, Arc::clone(&metrics), INTERVAL, None, cancel.clone()));
        (Scraper { config, metrics, cancel, task, dir }, Received { rx, reports: BTreeMap::new(), taken: BTreeMap::new() })
    }

    fn reconfigure(&self, servers: &[String]) {
        self.config.send_replace(config(self.dir.path(), servers));
    }

    /// `watchkeeper_ingest_rejected_total{reason}` as `/metrics` shows it.
    fn rejected(&self, reason: &str) -> u64 {
        let prefix = format!("watchkeeper_ingest_rejected_total{{reason=\"{reason}\"}} ");
        let text = self.metrics.render();
        text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse().unwrap())
    }

    /// Cancel and wait: every loop must stop.
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(PATIENCE, self.task).await.expect("scrape::run stops when cancelled").unwrap();
    }
}

/// Every report received, by server.
struct Received {
    rx: mpsc::Receiver<Batch>,
    reports: BTreeMap<String, Vec<Report>>,
    /// How many of each server's reports [`Received::next`] has handed out.
    taken: BTreeMap<String, usize>,
}

impl Received {
    /// The next report of `server` not handed out yet, waiting for it; other servers' batches are
    /// kept as they come.
    async fn next(&mut self, server: &str) -> Report {
        let wanted = self.taken.get(server).copied().unwrap_or(0);
        while self.count(server) <= wanted {
            let batch = tokio::time::timeout(PATIENCE, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no report from {server} within {PATIENCE:?}; got {:?}", self.counts()))
                .expect("scrape::run ended");
            assert_eq!(batch.source, Source::NodeExporter);
            assert_eq!(batch.project, "shop", "only project shop's servers are scraped");
            assert!(batch.checks.is_empty() && batch.log_hits.is_empty() && batch.done.is_none());
            let [report] = <[Report; 1]>::try_from(batch.reports).expect("one report per scrape");
            self.reports.entry(batch.server).or_default().push(report);
        }
        self.taken.insert(server.to_owned(), wanted + 1);
        self.reports[server][wanted].clone()
    }

    fn count(&self, server: &str) -> usize {
        self.reports.get(server).map_or(0, Vec::len)
    }

    fn counts(&self) -> BTreeMap<&str, usize> {
        self.reports.iter().map(|(s, r)| (s.as_str(), r.len())).collect()
    }

    /// Let `clock` scrape `n` more times: every other loop had at least `n - 1` intervals to
    /// scrape in, too.
    async fn wait_on(&mut self, clock: &str, n: usize) {
        for _ in 0..n {
            self.next(clock).await;
        }
    }
}

/// A plain TCP listener that counts the connections made to it.
struct Listener {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Listener {
    async fn start() -> Listener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Listener { port, connections, task }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `N` real exporters; `None` when node_exporter is missing and its tests are skipped on purpose.
async fn exporters<const N: usize>() -> Option<[Exporter; N]> {
    let binary = exporter::required()?;
    crate::support::install_crypto();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let mut started = Vec::new();
    for _ in 0..N {
        started.push(exporter::start(&client, &binary).await);
    }
    started.try_into().ok()
}

fn btime() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok()).expect("btime in /proc/stat")
}

fn meminfo_kib(key: &str) -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    let line = meminfo.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key} in /proc/meminfo"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad /proc/meminfo line {line:?}"))
}

fn subjects(report: &Report, name: &str) -> Vec<(String, f64)> {
    report.metrics.iter().filter(|m| m.name == name).map(|m| (m.subject.clone().unwrap_or_default(), m.value)).collect()
}

#[tokio::test]
async fn a_scraped_server_reports_like_an_agent_with_rates_from_the_second_scrape() {
    let Some([a]) = exporters().await else { return };
    let (scraper, mut received) = Scraper::start(&[scraped("web-01", &a.url), server("shop", "agent-01", "127.0.0.1", None, false)]);

    let first = received.next("web-01").await;
    let facts = &first.facts;
    assert_eq!(facts.boot_time, btime(), "boot time is /proc/stat's btime, so `restart` works");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(facts.kernel, kernel.trim());
    assert!(!facts.os.is_empty());
    assert_eq!(facts.cpu_count as usize, crate::common::proc_stat_cpu_count(), "the CPUs /proc/stat lists");
    assert!((facts.ram_total_bytes as f64 - meminfo_kib("MemTotal") * 1024.0).abs() < 1.0);
    assert!(facts.uptime_secs > 0);
    assert!(first.processes.is_empty() && first.process_counts.is_empty(), "node_exporter lists no processes");

    // The first scrape has the gauges only.
    let memory = first.value("memory.usage", None).expect("memory.usage");
    let expected = 100.0 * (1.0 - meminfo_kib("MemAvailable") / meminfo_kib("MemTotal"));
    assert!((memory - expected).abs() < 5.0, "memory.usage {memory}, /proc/meminfo says {expected}");
    let disks = subjects(&first, "disk.usage");
    assert!(!disks.is_empty(), "disk.usage for each mount: {:#?}", first.metrics);
    assert!(disks.iter().all(|(mount, v)| mount.starts_with('/') && (0.0..=100.0).contains(v)), "{disks:?}");
    for rate in ["cpu.usage", "network.in_bps", "memory.page_faults"] {
        assert!(subjects(&first, rate).is_empty(), "{rate} needs two scrapes");
    }

    // The second has the rates too.
    let second = received.next("web-01").await;
    assert!(second.at_ms > first.at_ms);
    let cpu = second.value("cpu.usage", None).expect("cpu.usage from the second scrape");
    assert!((0.0..=100.0).contains(&cpu), "cpu.usage {cpu}");
    let network = subjects(&second, "network.in_bps");
    assert!(!network.is_empty(), "network.in_bps per interface: {:#?}", second.metrics);
    assert!(network.iter().all(|(interface, v)| interface != "lo" && v.is_finite() && *v >= 0.0), "{network:?}");
    assert!(!subjects(&second, "disk.usage").is_empty());
    assert_eq!(second.facts.boot_time, facts.boot_time);

    assert_eq!(received.count("agent-01"), 0, "an agent's server is not scraped");
    assert_eq!(scraper.rejected("scrape"), 0);
    scraper.stop().await;
}

#[tokio::test]
async fn a_stopped_exporter_produces_nothing_and_the_others_go_on() {
    let Some([a, b]) = exporters().await else { return };
    let (scraper, mut received) = Scraper::start(&[scraped("web-01", &a.url), scraped("web-02", &b.url)]);
    received.next("web-01").await;
    received.next("web-02").await;

    drop(b); // killed and reaped
    // A scrape of web-02 in flight when it died may still arrive; after two more of web-01's it has.
    received.wait_on("web-01", 2).await;
    let before = received.count("web-02");
    received.wait_on("web-01", 3).await;
    assert_eq!(received.count("web-02"), before, "a dead exporter gives no reports");
    assert!(scraper.rejected("scrape") >= 2, "each failed scrape is counted");
    assert_eq!(scraper.rejected("unapproved"), 0);
    scraper.stop().await;
}

/// A page in node_exporter's format, just enough for a report: boot time and memory.
const FIXED_PAGE: &str = "\
# HELP node_boot_time_seconds Node boot time, in unixtime.
# TYPE node_boot_time_seconds gauge
node_boot_time_seconds 1.7e+09
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 8e+09
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 2e+09
";

#[tokio::test]
async fn targets_outside_the_approved_networks_are_never_fetched() {
    let page = HttpServer::serving(FIXED_PAGE).await;
    let listener = Listener::start().await;
    let port = listener.port;
    let (scraper, mut received) = Scraper::start(&[
        scraped("web-01", &page.url("/metrics")),
        // Project vault's group approves 10.9.9.0/24 only: neither the IP literal nor the name
        // (which resolves to loopback) may be fetched.
        server("vault", "db-01", "10.9.9.5", Some(&format!("http://127.0.0.1:{port}/metrics")), false),
        server("vault", "db-02", "10.9.9.6", Some(&format!("http://localhost:{port}/metrics")), false),
        // Paused: not scraped at all.
        server("shop", "idle", "127.0.0.1", Some(&format!("http://127.0.0.1:{port}/metrics")), true),
    ]);
    let report = received.next("web-01").await;
    assert_eq!(report.facts.boot_time, 1_700_000_000, "the report is made of the page served");
    let memory = report.value("memory.usage", None).expect("memory.usage");
    assert!((memory - 75.0).abs() < 1e-9, "memory.usage {memory}: 2 GB of 8 GB available");
    received.wait_on("web-01", 2).await;
    assert!(page.requests().len() >= 3, "web-01 is scraped from the page server");
    assert_eq!(listener.connections(), 0, "nothing connected to the refused URL");
    assert!(scraper.rejected("unapproved") >= 2, "each refused target is counted");
    assert_eq!(scraper.rejected("scrape"), 0);
    assert_eq!(received.counts().into_keys().collect::<Vec<_>>(), ["web-01"]);
    scraper.stop().await;
}

#[tokio::test]
async fn configuration_changes_start_stop_and_redirect_only_the_loops_they_touch() {
    let Some([a, b]) = exporters().await else { return };
    let clock = scraped("web-03", &a.url);
    let (scraper, mut received) = Scraper::start(&[clock.clone(), scraped("web-01", &a.url)]);
    received.next("web-01").await;

    // Added: web-02 starts; web-01's loop goes on with its previous snapshot, so every report
    // after its first has rates (a restarted loop's first report would not).
    scraper.reconfigure(&[clock.clone(), scraped("web-01", &a.url), scraped("web-02", &b.url)]);
    received.next("web-02").await;
    for _ in 0..2 {
        assert!(received.next("web-01").await.value("cpu.usage", None).is_some(), "web-01's loop kept its state");
    }

    // web-01 now scrapes b: its next reports start from a fresh snapshot (the previous one came
    // from another exporter). web-02 is paused.
    scraper.reconfigure(&[clock.clone(), scraped("web-01", &b.url), server("shop", "web-02", "127.0.0.1", Some(&b.url), true)]);
    let mut fresh = false;
    // A report scraped from a before the change may still come first.
    for _ in 0..5 {
        if received.next("web-01").await.value("cpu.usage", None).is_none() {
            fresh = true;
            break;
        }
    }
    assert!(fresh, "a changed URL does not take rates across two exporters");
    assert!(received.next("web-01").await.value("cpu.usage", None).is_some(), "and has rates again from its second scrape");
    received.wait_on("web-03", 2).await;
    let paused = received.count("web-02");

    // Removed: web-01's loop stops.
    scraper.reconfigure(std::slice::from_ref(&clock));
    received.wait_on("web-03", 2).await;
    let removed = received.count("web-01");
    received.wait_on("web-03", 3).await;
    assert_eq!(received.count("web-01"), removed, "a removed server is not scraped");
    assert_eq!(received.count("web-02"), paused, "a paused server is not scraped");
    scraper.stop().await;
}
