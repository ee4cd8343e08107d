//! The node_exporter scraper: serve fetches the page of every server whose `metrics.source` is
//! node_exporter and hands the collector's writer a report, exactly as if an agent had sent it.
//!
//! [`run`] keeps one loop per target (project + server, not paused) and follows the configuration
//! by keyed diff: a new target gets a loop, a removed or paused one is stopped, and a changed URL
//! or approved networks are handed to the running loop, which keeps its timer and — unless the
//! URL changed — its previous snapshot, so rates need two scrapes only for a new target. Each
//! loop first scrapes at a deterministic offset within the interval (the prober's spread, keyed by
//! project and server), so a thousand targets do not fire at once, then every interval.
//!
//! A scrape is one GET with [`SCRAPE_TIMEOUT`] (or the interval, if shorter) for the whole of it, no redirects and no proxy;
//! the body is read in chunks and abandoned past [`MAX_PAGE_BYTES`], whatever Content-Length says.
//! `${ENV}` in the URL is expanded from serve's environment. The URL's host must lie in the
//! project's approved networks, checked like the prober's addresses ([`probe::approved_addrs`]):
//! an IP literal as it is, a DNS name at every scrape and again by the client's resolver for every
//! connection it opens, so a name that changes its answer cannot lead elsewhere.
//!
//! A scrape that fails — refused, unreachable, timed out, not HTTP 200, too large, not a
//! node_exporter page — sends nothing: the alert engine's `no_data` rule notices the silence.
//! Each failure counts in `watchkeeper_ingest_rejected` (reason `unapproved` for a refused
//! target, else `scrape`); the log says it once per change of state (a warning when a target
//! starts failing or fails differently, an info line when it answers again), not every interval.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::node_exporter::{self, Snapshot};
use super::prom::{self, Lenient};
use super::writer::{Batch, Source};
use crate::config::Config;
use crate::config::expand_env;
use crate::config::raw::MetricsKind;
use crate::config::values::{Cidr, Dur};
use crate::errors::error_chain;
use crate::lease::Ownership;
use crate::metrics::Metrics;
use crate::probe::{self, ErrorKind, MonitorKey};
use crate::protocol::Report;

/// How often each target is scraped in production.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(15);

/// Overrides [`SCRAPE_INTERVAL`] (whole milliseconds) through [`interval_from`], so end-to-end
/// tests of the serve binary need not wait 15 s per scrape.
pub const INTERVAL_ENV: &str = "WATCHKEEPER_SCRAPE_INTERVAL_MS";

/// The longest one scrape may take, name resolution to the last byte; a shorter interval is the
/// limit instead (as in Prometheus, a scrape never runs into the next).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest page read. node_exporter's is 50–500 KiB; a bigger one is not node_exporter, or a
/// misconfigured one (textfile collector run wild), and is refused rather than buffered.
pub const MAX_PAGE_BYTES: usize = 16 << 20;

/// The scrape interval serve uses, from the value of [`INTERVAL_ENV`] (read once, at start): a
/// positive number of milliseconds, else [`SCRAPE_INTERVAL`] (anything else set there is logged
/// and ignored).
pub fn interval_from(value: Option<&str>) -> Duration {
    let Some(text) = value else { return SCRAPE_INTERVAL };
    match text.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Duration::from_millis(ms),
        _ => {
            tracing::warn!(variable = INTERVAL_ENV, value = text, default = %Dur(SCRAPE_INTERVAL), "not a positive number of milliseconds; using the default scrape interval");
            SCRAPE_INTERVAL
        }
    }
}

/// Scrape every node_exporter server of every project every `interval` (serve passes
/// [`interval_from`]) and send each page's report into `batches`, until `cancel`. Follows
/// `config` as described in the module doc; when its sender is gone the last configuration keeps
/// running. On cancellation every loop stops (an unfinished scrape is dropped) and is awaited.
///
/// With `ownership` (one replica of several), a server is scraped only while this replica holds
/// its shard; its loop keeps its timer and skips the ticks in between.
///
/// Needs a rustls crypto provider installed for the process (serve installs ring at start).
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    batches: mpsc::Sender<Batch>,
    metrics: Arc<Metrics>,
    interval: Duration,
    ownership: Option<Arc<Ownership>>,
    cancel: CancellationToken,
) {
    let mut scraper = Scraper { loops: BTreeMap::new(), clients: Vec::new(), tasks: JoinSet::new(), batches, metrics, interval, ownership };
    {
        // Cloned out first: applying under the borrow would block the sender.
        let first = config.borrow_and_update().clone();
        scraper.apply(&first, &cancel);
    }
    let mut following = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = config.changed(), if following => match changed {
                Ok(()) => {
                    let current = config.borrow_and_update().clone();
                    scraper.apply(&current, &cancel);
                }
                Err(_) => following = false,
            },
            Some(joined) = scraper.tasks.join_next_with_id(), if !scraper.tasks.is_empty() => {
                if let Err(e) = joined && e.is_panic() {
                    // Forget it, so that the next configuration change starts it again.
                    scraper.loops.retain(|key, running| {
                        let panicked = running.task == e.id();
                        if panicked {
                            tracing::error!(project = %key.project, server = %key.name, "a scrape loop panicked; it starts again with the next configuration change");
                        }
                        !panicked
                    });
                }
            }
        }
    }
    // The loops' tokens are children of `cancel`: they are stopping already.
    while scraper.tasks.join_next().await.is_some() {}
}

/// What a target's loop is given; compared to tell whether a configuration change touches it.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    /// As configured: `${ENV}` not yet expanded.
    url: String,
    /// The project's approved networks; empty means no restriction.
    approved: Vec<Cidr>,
}

/// A [`Spec`] made ready to scrape.
#[derive(Debug)]
struct Target {
    spec: Spec,
    /// The URL to fetch, or why there is none (a `${ENV}` not set, not an http(s) URL).
    url: Result<reqwest::Url, String>,
    /// A client whose resolver enforces `spec.approved`, or why it could not be built.
    client: Result<reqwest::Client, String>,
}

/// One running loop.
struct Running {
    spec: Spec,
    /// The loop reads its target from here at every tick.
    target: watch::Sender<Arc<Target>>,
    stop: CancellationToken,
    task: tokio::task::Id,
}

struct Scraper {
    loops: BTreeMap<MonitorKey, Running>,
    /// One client per distinct set of approved networks (in practice one per group): connections
    /// are pooled across the targets that share it.
    clients: Vec<(Vec<Cidr>, Result<reqwest::Client, String>)>,
    tasks: JoinSet<()>,
    batches: mpsc::Sender<Batch>,
    metrics: Arc<Metrics>,
    interval: Duration,
    ownership: Option<Arc<Ownership>>,
}

impl Scraper {
    /// Make the running loops those `config` asks for.
    fn apply(&mut self, config: &Config, cancel: &CancellationToken) {
        let wanted = targets(config);
        let before = self.loops.len();
        self.loops.retain(|key, running| {
            let keep = wanted.contains_key(key);
            if !keep {
                running.stop.cancel();
            }
            keep
        });
        let removed = before - self.loops.len();
        self.clients.retain(|(approved, _)| wanted.values().any(|spec| &spec.approved == approved));
        let (mut added, mut changed) = (0, 0);
        for (key, spec) in wanted {
            match self.loops.get_mut(&key) {
                Some(running) if running.spec == spec => {}
                Some(running) => {
                    running.target.send_replace(Arc::new(prepare(spec.clone(), &mut self.clients)));
                    running.spec = spec;
                    changed += 1;
                }
                None => {
                    let (target, target_rx) = watch::channel(Arc::new(prepare(spec.clone(), &mut self.clients)));
                    let stop = cancel.child_token();
                    let span = tracing::info_span!("scrape", project = %key.project, server = %key.name);
                    let scrape = Loop {
                        key: key.clone(),
                        batches: self.batches.clone(),
                        metrics: Arc::clone(&self.metrics),
                        ownership: self.ownership.clone(),
                    };
                    let task = self.tasks.spawn(scrape.run(target_rx, self.interval, stop.clone()).instrument(span)).id();
                    self.loops.insert(key, Running { spec, target, stop, task });
                    added += 1;
                }
            }
        }
        if added + changed + removed > 0 {
            tracing::info!(added, changed, removed, targets = self.loops.len(), "node_exporter targets updated");
        }
    }
}

/// Every server that is scraped under `config`, by project and name.
fn targets(config: &Config) -> BTreeMap<MonitorKey, Spec> {
    let mut out = BTreeMap::new();
    for project in config.projects.values() {
        let approved = config.approved_networks(project);
        for server in project.servers.values() {
            if server.metrics != MetricsKind::NodeExporter || server.paused {
                continue;
            }
            // compile refuses node_exporter without a URL; such a tree is never applied.
            let Some(url) = &server.metrics_url else { continue };
            let key = MonitorKey { project: project.name.clone(), name: server.name.clone() };
            out.insert(key, Spec { url: url.clone(), approved: approved.to_vec() });
        }
    }
    out
}

fn prepare(spec: Spec, clients: &mut Vec<(Vec<Cidr>, Result<reqwest::Client, String>)>) -> Target {
    // The expanded URL may hold a secret: the messages name the problem, never the URL.
    let url = expand_env(&spec.url, |name| std::env::var(name).ok()).map_err(|e| e.to_string()).and_then(|text| {
        let url = reqwest::Url::parse(&text).map_err(|e| format!("the metrics URL is not a URL: {e}"))?;
        match (url.scheme(), url.host_str()) {
            ("http" | "https", Some(_)) => Ok(url),
            _ => Err("the metrics URL is not an http:// or https:// URL with a host".to_owned()),
        }
    });
    let client = match clients.iter().find(|(approved, _)| *approved == spec.approved) {
        Some((_, client)) => client.clone(),
        None => {
            let client = build_client(&spec.approved);
            if let Err(error) = &client {
                tracing::error!(%error, "node_exporter targets cannot be scraped");
            }
            clients.push((spec.approved.clone(), client.clone()));
            client
        }
    };
    Target { spec, url, client }
}

fn build_client(approved: &[Cidr]) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(SCRAPE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(ApprovedResolver(approved.into()))
        .user_agent(concat!("watchkeeper/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e.without_url())))
}

/// Resolves names to their approved addresses only, through the prober's rule.
struct ApprovedResolver(Arc<[Cidr]>);

impl reqwest::dns::Resolve for ApprovedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let approved = Arc::clone(&self.0);
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port in.
            let addrs: Vec<SocketAddr> = probe::approved_addrs(name.as_str(), 0, SCRAPE_TIMEOUT, &approved).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why a scrape gave nothing. Compared to the previous one to log once per change of state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum ScrapeError {
    /// The host lies outside the project's approved networks; nothing was sent.
    #[error("{0}")]
    Unapproved(String),
    /// The URL or the client cannot be used (see [`Target`]).
    #[error("{0}")]
    Unusable(String),
    /// Name resolution, connection or transfer failed.
    #[error("{0}")]
    Request(String),
    #[error("no complete answer within {}", Dur(*.0))]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("the page is larger than {} MiB", MAX_PAGE_BYTES >> 20)]
    TooLarge,
    #[error("not a node_exporter page: no node_* series ({skipped} lines not understood)")]
    NotNodeExporter { skipped: usize },
}

impl ScrapeError {
    /// The `watchkeeper_ingest_rejected` reason.
    fn reason(&self) -> &'static str {
        if matches!(self, ScrapeError::Unapproved(_)) { "unapproved" } else { "scrape" }
    }
}

/// A page fetched and parsed.
struct Page {
    lenient: Lenient,
    /// When the answer came, on the loop's monotonic clock (rates are taken over it).
    at_mono_ms: i64,
    /// The same moment on the wall clock, for the report.
    at_ms: i64,
}

/// One target's loop.
struct Loop {
    key: MonitorKey,
    batches: mpsc::Sender<Batch>,
    metrics: Arc<Metrics>,
    ownership: Option<Arc<Ownership>>,
}

impl Loop {
    async fn run(self, mut target: watch::Receiver<Arc<Target>>, interval: Duration, stop: CancellationToken) {
        let started = Instant::now();
        let timeout = interval.min(SCRAPE_TIMEOUT);
        let mut ticks = tokio::time::interval_at(started + probe::jitter(&self.key, interval), interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The previous snapshot, and the URL it came from: a snapshot of another exporter is no base for rates.
        let mut previous: Option<(String, Snapshot)> = None;
        let mut failing: Option<ScrapeError> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if self.ownership.as_ref().is_some_and(|o| !o.owns_name(&self.key.project, &self.key.name)) {
                // Another replica scrapes it meanwhile; a snapshot from before is no base for rates later.
                previous = None;
                continue;
            }
            let current = Arc::clone(&target.borrow_and_update());
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = fetch(&current, started, timeout) => r,
            };
            let page = match result {
                Ok(page) => page,
                Err(error) => {
                    self.metrics.ingest_rejected(error.reason());
                    if failing.as_ref() != Some(&error) {
                        tracing::warn!(%error, "node_exporter scrape failed; nothing is recorded until it answers");
                        failing = Some(error);
                    }
                    continue;
                }
            };
            if failing.take().is_some() {
                tracing::info!("node_exporter answers again");
            }
            if page.lenient.skipped_lines > 0 {
                let first = page.lenient.errors.first().map(ToString::to_string).unwrap_or_default();
                tracing::debug!(
                    skipped = page.lenient.skipped_lines,
                    first,
                    "node_exporter page has lines that are not understood; they are ignored"
                );
            }
            let snapshot = Snapshot::new(&page.lenient.exposition, page.at_mono_ms);
            let base = previous.as_ref().filter(|(url, _)| *url == current.spec.url).map(|(_, s)| s);
            let report = report(base, &snapshot, page.at_ms);
            previous = Some((current.spec.url.clone(), snapshot));
            let batch = Batch {
                project: self.key.project.clone(),
                server: self.key.name.clone(),
                source: Source::NodeExporter,
                reports: vec![report],
                checks: vec![],
                log_hits: vec![],
                done: None,
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                sent = self.batches.send(batch) => {
                    if sent.is_err() {
                        return; // the writer stopped: serve is shutting down
                    }
                }
            }
        }
    }
}

/// The report for `current`; rates need `previous`.
fn report(previous: Option<&Snapshot>, current: &Snapshot, at_ms: i64) -> Report {
    let metrics = node_exporter::metrics(previous, current);
    // node_exporter lists no processes.
    Report { facts: current.facts().clone(), metrics, processes: vec![], process_counts: BTreeMap::new(), skipped_mounts: vec![], at_ms }
}

/// Fetch and parse `target`'s page within `timeout`; `started` is the loop's monotonic origin.
async fn fetch(target: &Target, started: Instant, timeout: Duration) -> Result<Page, ScrapeError> {
    tokio::time::timeout(timeout, fetch_page(target, started)).await.unwrap_or(Err(ScrapeError::Timeout(timeout)))
}

async fn fetch_page(target: &Target, started: Instant) -> Result<Page, ScrapeError> {
    let url = target.url.as_ref().map_err(|e| ScrapeError::Unusable(e.clone()))?;
    let client = target.client.as_ref().map_err(|e| ScrapeError::Unusable(e.clone()))?;
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Err(ScrapeError::Unusable("the metrics URL has no host".to_owned()));
    };
    // An IP literal is checked here (reqwest does not resolve it); a DNS name here and again
    // in the resolver, so an unapproved answer is told apart from a failing one.
    probe::approved_addrs(host, port, SCRAPE_TIMEOUT, &target.spec.approved).await.map_err(|e| match e.kind {
        ErrorKind::Unapproved => ScrapeError::Unapproved(e.message),
        _ => ScrapeError::Request(e.message),
    })?;
    let request_error = |e: reqwest::Error| ScrapeError::Request(error_chain(&e.without_url()));
    let mut response = client.get(url.clone()).send().await.map_err(request_error)?;
    let at_mono_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let at_ms = crate::clock::now_ms();
    if response.status() != reqwest::StatusCode::OK {
        return Err(ScrapeError::Status(response.status().as_u16()));
    }
    if response.content_length().is_some_and(|n| n > MAX_PAGE_BYTES as u64) {
        return Err(ScrapeError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(ScrapeError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    // The only error left is the size, checked above.
    let lenient = prom::parse_lenient(&body, MAX_PAGE_BYTES).map_err(|_| ScrapeError::TooLarge)?;
    if !lenient.exposition.samples.iter().any(|s| s.name.starts_with("node_")) {
        return Err(ScrapeError::NotNodeExporter { skipped: lenient.skipped_lines });
    }
    Ok(Page { lenient, at_mono_ms, at_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const PAGE: &str = "# TYPE node_load1 gauge\nnode_load1 0.5\nnode_boot_time_seconds 1.7e+09\n";
    const SECOND: Duration = Duration::from_secs(1);

    /// A real HTTP/1.1 server on 127.0.0.1 that answers every request with `answer` (or never
    /// answers, with `None`) and counts the connections it accepted.
    struct Canned {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
    }

    impl Canned {
        async fn start(answer: Option<Vec<u8>>) -> Canned {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let connections = Arc::new(AtomicUsize::new(0));
            let count = Arc::clone(&connections);
            let answer = answer.map(Arc::new);
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let answer = answer.clone();
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        match answer {
                            Some(answer) => {
                                let _ = stream.write_all(&answer).await;
                                let _ = stream.shutdown().await;
                            }
                            // Hold the connection open without a word until the client gives up.
                            None => while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {},
                        }
                    });
                }
            });
            Canned { addr, connections }
        }

        fn url(&self) -> String {
            format!("http://{}/metrics", self.addr)
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n").into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn ok(body: &[u8]) -> Vec<u8> {
        response("200 OK", &format!("Content-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n", body.len()), body)
    }

    fn target(url: &str, approved: &[&str]) -> Target {
        // As serve does at start; reqwest without a provider panics.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let approved = approved.iter().map(|c| Cidr::parse(c).unwrap()).collect();
        prepare(Spec { url: url.to_owned(), approved }, &mut Vec::new())
    }

    async fn fetch_from(target: &Target) -> Result<Page, ScrapeError> {
        fetch(target, Instant::now(), 5 * SECOND).await
    }

    #[tokio::test]
    async fn a_node_exporter_page_is_fetched_and_parsed_leniently() {
        let mut body = PAGE.as_bytes().to_vec();
        body.extend_from_slice(b"this line is not the text format\n");
        let server = Canned::start(Some(ok(&body))).await;
        let page = fetch_from(&target(&server.url(), &["127.0.0.0/8"])).await.unwrap();
        assert_eq!(page.lenient.exposition.samples.len(), 2);
        assert_eq!(page.lenient.skipped_lines, 1);
        let snapshot = Snapshot::new(&page.lenient.exposition, page.at_mono_ms);
        let report = report(None, &snapshot, page.at_ms);
        assert_eq!(report.value("load.1", None), Some(0.5));
        assert_eq!(report.facts.boot_time, 1_700_000_000);
        assert!(report.processes.is_empty() && report.process_counts.is_empty());
    }

    #[tokio::test]
    async fn answers_other_than_a_node_exporter_page_are_failures() {
        let cases: Vec<(Vec<u8>, ScrapeError)> = vec![
            (response("500 Internal Server Error", "Content-Length: 0\r\n", b""), ScrapeError::Status(500)),
            (response("404 Not Found", "Content-Length: 9\r\n", b"not found"), ScrapeError::Status(404)),
            (response("204 No Content", "", b""), ScrapeError::Status(204)),
            (ok(b"<html><body>Node Exporter</body></html>\n"), ScrapeError::NotNodeExporter { skipped: 1 }),
            (ok(b"# TYPE up gauge\nup 1\n"), ScrapeError::NotNodeExporter { skipped: 0 }),
            (ok(b""), ScrapeError::NotNodeExporter { skipped: 0 }),
            // A declared size over the limit is refused before reading.
            (response("200 OK", &format!("Content-Length: {}\r\n", MAX_PAGE_BYTES + 1), b"node_load1 1\n"), ScrapeError::TooLarge),
        ];
        for (answer, expected) in cases {
            let server = Canned::start(Some(answer)).await;
            let got = fetch_from(&target(&server.url(), &[])).await.err();
            assert_eq!(got, Some(expected));
        }
    }

    #[tokio::test]
    async fn a_page_over_the_limit_without_a_length_is_cut_off() {
        // Close-delimited: only the bytes read tell the size.
        let line = b"node_load1 1\n";
        let body: Vec<u8> = line.iter().copied().cycle().take(MAX_PAGE_BYTES + line.len()).collect();
        let server = Canned::start(Some(response("200 OK", "", &body))).await;
        assert_eq!(fetch_from(&target(&server.url(), &[])).await.err(), Some(ScrapeError::TooLarge));
        // Exactly at the limit is still a page.
        let body = &body[..MAX_PAGE_BYTES - MAX_PAGE_BYTES % line.len()];
        let server = Canned::start(Some(response("200 OK", "", body))).await;
        assert!(fetch_from(&target(&server.url(), &[])).await.is_ok());
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let elsewhere = Canned::start(Some(ok(PAGE.as_bytes()))).await;
        let redirect = response("302 Found", &format!("Location: {}\r\nContent-Length: 0\r\n", elsewhere.url()), b"");
        let server = Canned::start(Some(redirect)).await;
        assert_eq!(fetch_from(&target(&server.url(), &[])).await.err(), Some(ScrapeError::Status(302)));
        assert_eq!(elsewhere.connections(), 0);
    }

    #[tokio::test]
    async fn a_silent_exporter_times_out() {
        let server = Canned::start(None).await;
        let timeout = Duration::from_millis(200);
        let got = fetch(&target(&server.url(), &[]), Instant::now(), timeout).await.err();
        assert_eq!(got, Some(ScrapeError::Timeout(timeout)));
        assert_eq!(got.unwrap().to_string(), "no complete answer within 200ms");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_request_failure() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let got = fetch_from(&target(&format!("http://127.0.0.1:{port}/metrics"), &[])).await.err();
        match got {
            Some(ScrapeError::Request(message)) => assert!(message.contains("refused"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn hosts_outside_the_approved_networks_are_never_contacted() {
        let server = Canned::start(Some(ok(PAGE.as_bytes()))).await;
        let port = server.addr.port();
        for url in [server.url(), format!("http://localhost:{port}/metrics"), format!("http://[::ffff:127.0.0.1]:{port}/metrics")] {
            let got = fetch_from(&target(&url, &["10.9.9.0/24"])).await.err();
            assert!(matches!(&got, Some(e @ ScrapeError::Unapproved(_)) if e.reason() == "unapproved"), "{url}: {got:?}");
        }
        assert_eq!(server.connections(), 0);
        // The same URL inside the approved networks is fetched.
        assert!(fetch_from(&target(&server.url(), &["10.9.9.0/24", "127.0.0.1/32"])).await.is_ok());
        assert_eq!(server.connections(), 1);
    }

    #[tokio::test]
    async fn the_resolver_gives_approved_addresses_only() {
        use reqwest::dns::Resolve;
        let resolve = |approved: &[&str], name: &str| {
            let resolver = ApprovedResolver(approved.iter().map(|c| Cidr::parse(c).unwrap()).collect());
            resolver.resolve(name.parse().unwrap())
        };
        let addrs: Vec<SocketAddr> = resolve(&["127.0.0.0/8"], "localhost").await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback() && a.is_ipv4()), "{addrs:?}");
        let error = resolve(&["10.9.9.0/24"], "localhost").await.err().unwrap();
        assert!(error.to_string().contains("outside the approved networks"), "{error}");
    }

    #[test]
    fn a_url_that_cannot_be_used_is_a_failure_that_names_no_secret() {
        let unset = target("http://${WATCHKEEPER_TEST_UNSET_VARIABLE}:9100/metrics", &[]);
        assert_eq!(unset.url.unwrap_err(), "environment variable `WATCHKEEPER_TEST_UNSET_VARIABLE` is not set");
        // The message describes the problem without quoting the (expanded, maybe secret) URL.
        let error = target("http://user:s3cret@10.0.0.1:99999/metrics", &[]).url.unwrap_err();
        assert!(error.starts_with("the metrics URL is not a URL") && !error.contains("s3cret"), "{error}");
        assert!(target("ftp://10.0.0.1/metrics", &[]).url.is_err());
        assert!(target("http://10.0.0.1:9100/metrics", &[]).url.is_ok());
    }

    #[test]
    fn the_interval_comes_from_the_environment_only_when_it_is_a_positive_number() {
        assert_eq!(interval_from(None), SCRAPE_INTERVAL);
        assert_eq!(interval_from(Some("250")), Duration::from_millis(250));
        assert_eq!(interval_from(Some(" 1000 ")), Duration::from_secs(1));
        for bad in ["", "0", "-5", "1.5", "15s", "99999999999999999999999"] {
            assert_eq!(interval_from(Some(bad)), SCRAPE_INTERVAL, "{bad:?}");
        }
    }
}
