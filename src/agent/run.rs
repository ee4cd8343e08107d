//! The `agent` command: sample host metrics every interval into a bounded backlog, push it to the
//! collector (`POST /ingest/v1/report`), and run what the collector's answers assign — down-checks
//! and log keyword rules.
//!
//! One task owns the state — the three queues (reports, down-check results, log hits), the
//! running down-checks and the tailer — and selects over the sample tick, the push in flight, the
//! retry timer, down-check results and the tail poll. A push runs as its own task with its own
//! copy of the body, so sampling never waits for the network; a [`Queue`] forgets only what an
//! accepted request carried, never what arrived meanwhile.
//!
//! What the collector's answer does to the batch (see [`wire`]):
//! - 200: forgotten; the assignments replace the running ones (a keyed diff: unchanged
//!   down-checks keep running); more backlog is sent at once;
//! - no answer, 5xx, anything unexpected: kept, retried after [`Backoff`] (1 s doubling to 60 s,
//!   jittered), so a fleet cut off together does not return in step;
//! - 401/403 and 404: kept, logged as errors an operator must act on, retried every minute (a
//!   merge may fix them);
//! - 400: dropped and logged, so one poison batch cannot block the queue;
//! - 413: retried at half the size ([`BatchLimit`]); a single item still too large is dropped.
//!
//! Reports wait in the backlog as their JSON text — about half the memory of the parsed form —
//! and are spliced into the request body as they are; the backlog is bounded by count
//! (`--backlog`) and by bytes ([`BACKLOG_BYTES`]), so a busy host cannot grow the agent past its
//! memory target. Reports lost to a full backlog or a refused batch are counted in the next
//! accepted request's `dropped`. The ingest key is never logged.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::{Instant, Interval, MissedTickBehavior, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::agent::host::{HostError, HostSampler, Report};
use crate::agent::tail::{Hit, TailError, TailLimits, TailRule, Tailer};
use crate::clock::now_ms;
use crate::collect::wire::{self, Assignments, CheckResult, DownCheckAssignment, IngestResponse, LogAssignment, LogHit};
use crate::probe;

/// How often host metrics are sampled and pushed unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Reports kept while the collector does not accept them: an hour at the default interval.
pub const DEFAULT_BACKLOG: usize = 720;
/// The shortest sampling or down-check interval: shorter would make the agent a load on its host.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The most memory the reports waiting in the backlog may take, whatever `--backlog` says: a
/// host with many processes makes large reports, and the agent must stay small (SPEC: 20 MB).
/// A report of a host with 40 processes takes about 8 KB, so 720 of them fit.
pub const BACKLOG_BYTES: usize = 6 << 20;
/// Down-check results, and log hits, kept while the collector does not accept them (each).
const EVENT_BACKLOG: usize = wire::MAX_EVENTS_PER_REQUEST;
/// The most memory each of those two queues may take (log lines run up to 4 KiB).
const EVENT_BACKLOG_BYTES: usize = 1 << 20;
/// One request, from connecting to the end of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer that is read (assignments are small; anything bigger is not the collector).
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How long the last push on shutdown may take.
const LAST_PUSH: Duration = Duration::from_secs(2);
/// How often the tailer looks for appended lines.
const TAIL_POLL: Duration = Duration::from_secs(1);

/// What `watchkeeper agent` was told. (No `Debug`: it holds the key.)
#[derive(Clone)]
pub struct AgentOptions {
    /// The collector's base URL (where serve listens); reports go to `{server}/ingest/v1/report`.
    pub server: String,
    /// The project's ingest key, sent as a bearer token; never logged.
    pub key: String,
    pub project: String,
    /// This server's name in the project.
    pub name: String,
    /// How often host metrics are sampled and pushed.
    pub interval: Duration,
    /// Reports kept while the collector does not accept them (at most [`BACKLOG_BYTES`] of them);
    /// when full, the oldest is dropped.
    pub backlog: usize,
    /// Where the tailer keeps its offsets, so lines reported before a restart are not reported again.
    pub state_file: Option<PathBuf>,
}

/// Run the agent until `cancel` fires, then try one last push (at most 2 s) and return.
///
/// Fails at start only: an unusable option, or a system the host sampler does not support.
pub async fn run(options: AgentOptions, cancel: CancellationToken) -> anyhow::Result<()> {
    let url = ingest_url(&options.server)?;
    if options.key.is_empty() {
        bail!("the ingest key is empty");
    }
    if options.interval < MIN_INTERVAL {
        bail!("the interval must be at least {}ms", MIN_INTERVAL.as_millis());
    }
    if options.backlog == 0 {
        bail!("the backlog must hold at least one report");
    }
    let mut sampler = HostSampler::new().map_err(|e| match e {
        HostError::Unsupported => anyhow::anyhow!("host metrics are only supported on Linux; the agent cannot run on this system"),
        e => anyhow::Error::new(e).context("reading this machine's facts"),
    })?;
    // reqwest is built without a TLS crypto provider and panics without one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("watchkeeper-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    tracing::info!(
        collector = %url,
        project = %options.project,
        server = %options.name,
        interval = ?options.interval,
        backlog = options.backlog,
        "agent started"
    );

    let (check_tx, mut check_rx) = mpsc::channel(256);
    let mut agent = Agent::new(options, client, url, check_tx);
    let mut sample_tick = ticker(agent.options.interval);
    let mut tail_tick = ticker(TAIL_POLL);
    let mut push: Option<JoinHandle<Answer>> = None;
    let mut retry_at: Option<Instant> = None;
    let mut poll: Option<JoinHandle<(Tailer, Vec<Hit>)>> = None;
    let mut check_tasks: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sample_tick.tick() => {
                agent.sample(&mut sampler);
                if push.is_none() && retry_at.is_none() {
                    push = Some(agent.start_push(&mut check_rx));
                }
            }
            answer = join(&mut push) => {
                push = None;
                match agent.finish(answer, &mut check_tasks) {
                    Next::Now => push = Some(agent.start_push(&mut check_rx)),
                    Next::Later => {}
                    Next::RetryIn(delay) => retry_at = Some(Instant::now() + delay),
                }
            }
            _ = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                retry_at = None;
                push = Some(agent.start_push(&mut check_rx));
            }
            Some(result) = check_rx.recv() => agent.queue_check(result),
            _ = tail_tick.tick(), if poll.is_none() => poll = agent.tail.start_poll(),
            polled = join(&mut poll) => {
                poll = None;
                agent.polled(polled);
            }
            Some(done) = check_tasks.join_next(), if !check_tasks.is_empty() => {
                if let Err(error) = done {
                    tracing::error!(%error, "a down-check task failed");
                }
            }
        }
    }

    tracing::info!("shutting down: one last push");
    agent.stop_down_checks(&mut check_tasks).await;
    if let Some(handle) = poll.take() {
        agent.polled(handle.await);
    }
    while let Ok(result) = check_rx.try_recv() {
        agent.queue_check(result);
    }
    let last = timeout_at(Instant::now() + LAST_PUSH, async {
        if let Some(handle) = push.take() {
            agent.finish(handle.await, &mut check_tasks);
        }
        if !agent.is_empty() {
            let answer = agent.start_push(&mut check_rx).await;
            agent.finish(answer, &mut check_tasks);
        }
    })
    .await;
    if last.is_err() {
        tracing::warn!(timeout = ?LAST_PUSH, "the last push did not finish in time");
    }
    tracing::info!(undelivered_reports = agent.reports.len(), "agent stopped");
    Ok(())
}

/// `{server}/ingest/v1/report`, for an http(s) base URL.
fn ingest_url(server: &str) -> anyhow::Result<String> {
    let base = server.trim_end_matches('/');
    let parsed = reqwest::Url::parse(base).with_context(|| format!("--server `{server}` is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        bail!("--server `{server}` must be an http:// or https:// URL of the collector");
    }
    Ok(format!("{base}/ingest/v1/report"))
}

/// An interval whose first tick is now and that skips ticks it missed (after a suspend, say)
/// rather than bursting.
fn ticker(period: Duration) -> Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    tick
}

/// The task in `slot`, or forever when there is none (so a `select!` branch may wait on it).
async fn join<T>(slot: &mut Option<JoinHandle<T>>) -> Result<T, JoinError> {
    match slot {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// An error with its sources, `: `-joined.
fn chain(error: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(error))
}

/// A uniform number in [0, 1) for jitter (0.5 should the system's random source fail).
fn random_unit() -> f64 {
    getrandom::u64().map_or(0.5, |r| (r >> 11) as f64 / (1u64 << 53) as f64)
}

/// What the loop does once a push has finished.
#[derive(Debug, PartialEq)]
enum Next {
    /// Send the next batch at once (catching up on a backlog, or retrying smaller).
    Now,
    /// Wait for the next sample tick.
    Later,
    /// Wait this long, then send.
    RetryIn(Duration),
}

/// Where one request's batch ends in each queue.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    reports: Sent,
    checks: Sent,
    hits: Sent,
}

/// The running agent's state; owned by the loop in [`run`].
struct Agent {
    options: AgentOptions,
    client: reqwest::Client,
    url: String,
    reports: Queue<Box<str>>,
    checks: Queue<CheckResult>,
    hits: Queue<LogHit>,
    in_flight: Option<InFlight>,
    report_limit: BatchLimit,
    event_limit: BatchLimit,
    backoff: Backoff,
    /// Whether the last sample failed, so a failing sampler is logged once, not every interval.
    sampling_failed: bool,
    down_checks: BTreeMap<String, RunningCheck>,
    /// Shutting down: the last push's assignments start nothing.
    stopping: bool,
    check_tx: mpsc::Sender<CheckResult>,
    tail: Tail,
}

/// A down-check task and the assignment it runs.
struct RunningCheck {
    assignment: DownCheckAssignment,
    cancel: CancellationToken,
}

impl Agent {
    fn new(options: AgentOptions, client: reqwest::Client, url: String, check_tx: mpsc::Sender<CheckResult>) -> Agent {
        Agent {
            reports: Queue::new(options.backlog, BACKLOG_BYTES),
            checks: Queue::new(EVENT_BACKLOG, EVENT_BACKLOG_BYTES),
            hits: Queue::new(EVENT_BACKLOG, EVENT_BACKLOG_BYTES),
            in_flight: None,
            report_limit: BatchLimit::new(wire::MAX_REPORTS_PER_REQUEST),
            event_limit: BatchLimit::new(wire::MAX_EVENTS_PER_REQUEST),
            backoff: Backoff::default(),
            sampling_failed: false,
            down_checks: BTreeMap::new(),
            stopping: false,
            check_tx,
            tail: Tail::new(options.state_file.clone()),
            options,
            client,
            url,
        }
    }

    fn is_empty(&self) -> bool {
        self.reports.is_empty() && self.checks.is_empty() && self.hits.is_empty()
    }

    /// Sample the host and queue the report; a failure is logged (once until it recovers).
    fn sample(&mut self, sampler: &mut HostSampler) {
        let report = match sampler.sample(std::time::Instant::now(), now_ms()) {
            Ok(report) => report,
            Err(error) => {
                if !self.sampling_failed {
                    tracing::warn!(error = %chain(error), "cannot sample host metrics; trying again every interval");
                }
                self.sampling_failed = true;
                return;
            }
        };
        if std::mem::take(&mut self.sampling_failed) {
            tracing::info!("sampling host metrics works again");
        }
        match serde_json::to_string(&fit_to_wire(report)) {
            Ok(json) => {
                if self.reports.push(json.into_boxed_str()) {
                    tracing::warn!(
                        backlog = self.options.backlog,
                        "the report backlog is full; dropping the oldest reports until the collector accepts them again"
                    );
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode a report; it is skipped"),
        }
    }

    fn queue_check(&mut self, result: CheckResult) {
        if self.checks.push(result) {
            tracing::warn!(kept = EVENT_BACKLOG, "too many undelivered down-check results; dropping the oldest");
        }
    }

    fn queue_hit(&mut self, hit: LogHit) {
        if self.hits.push(hit) {
            tracing::warn!(kept = EVENT_BACKLOG, "too many undelivered log hits; dropping the oldest");
        }
    }

    /// Send the oldest batch of each queue; the task answers what the collector said.
    fn start_push(&mut self, check_rx: &mut mpsc::Receiver<CheckResult>) -> JoinHandle<Answer> {
        // Results already waiting go with this request (and a stopped down-check's last result
        // cannot trail into a later one).
        while let Ok(result) = check_rx.try_recv() {
            self.queue_check(result);
        }
        let sent = InFlight {
            reports: self.reports.start(self.report_limit.get()),
            checks: self.checks.start(self.event_limit.get()),
            hits: self.hits.start(self.event_limit.get()),
        };
        self.in_flight = Some(sent);
        let reports: Vec<&str> = self.reports.front(sent.reports.count).map(|r| &**r).collect();
        let checks: Vec<&CheckResult> = self.checks.front(sent.checks.count).collect();
        let hits: Vec<&LogHit> = self.hits.front(sent.hits.count).collect();
        let body = request_body(&self.options.project, &self.options.name, &reports, &checks, &hits, sent.reports.dropped);
        let request = self.client.post(&self.url).bearer_auth(&self.options.key).header(reqwest::header::CONTENT_TYPE, "application/json");
        tokio::spawn(async move {
            match body {
                Ok(body) => send(request.body(body)).await,
                Err(error) => Answer::Invalid(format!("cannot encode the request: {error}")),
            }
        })
    }

    /// Act on the answer to the request in flight.
    fn finish(&mut self, answer: Result<Answer, JoinError>, check_tasks: &mut JoinSet<()>) -> Next {
        let Some(sent) = self.in_flight.take() else { return Next::Later };
        let answer = answer.unwrap_or_else(|e| Answer::Unavailable(format!("the push task failed: {e}")));
        let (project, server) = (&self.options.project, &self.options.name);
        match answer {
            Answer::Accepted(assignments) => {
                self.reports.accepted(sent.reports);
                let lost_checks = self.checks.accepted(sent.checks);
                let lost_hits = self.hits.accepted(sent.hits);
                if lost_checks + lost_hits > 0 {
                    tracing::warn!(
                        lost_checks,
                        lost_hits,
                        "down-check results or log hits were dropped while the collector did not accept them"
                    );
                }
                self.report_limit.accepted();
                self.event_limit.accepted();
                let failures = self.backoff.succeeded();
                if failures > 0 {
                    tracing::info!(failed_attempts = failures, backlog = self.reports.len(), "the collector accepts reports again");
                }
                match assignments {
                    Some(assignments) => self.assign(assignments, check_tasks),
                    None => tracing::warn!("the collector's answer has no readable assignments; keeping the current ones"),
                }
                if self.reports.is_empty() { Next::Later } else { Next::Now }
            }
            Answer::Invalid(error) => {
                tracing::error!(
                    %error,
                    reports = sent.reports.count,
                    checks = sent.checks.count,
                    log_hits = sent.hits.count,
                    "the collector refused a batch as invalid; dropping it"
                );
                self.discard(sent);
                self.backoff.succeeded();
                if sent.is_empty() || self.is_empty() { Next::Later } else { Next::Now }
            }
            Answer::TooLarge => {
                let events = sent.checks.count.max(sent.hits.count);
                // Both limits shrink: `|`, not `||`.
                if self.report_limit.too_large(sent.reports.count) | self.event_limit.too_large(events) {
                    tracing::warn!(
                        reports = self.report_limit.get(),
                        events = self.event_limit.get(),
                        "the collector found a batch too large; sending smaller ones"
                    );
                    self.kept(sent);
                } else {
                    tracing::error!(
                        reports = sent.reports.count,
                        checks = sent.checks.count,
                        log_hits = sent.hits.count,
                        "the collector refuses even a single report as too large; dropping it"
                    );
                    self.discard(sent);
                }
                self.backoff.succeeded();
                if self.is_empty() { Next::Later } else { Next::Now }
            }
            Answer::KeyRefused(error) => {
                tracing::error!(
                    %error,
                    "the collector refused the ingest key; check --key (or WATCHKEEPER_INGEST_KEY) against the project's ingest_key_sha256"
                );
                self.kept(sent);
                Next::RetryIn(self.backoff.refused(random_unit()))
            }
            Answer::UnknownServer(error) => {
                tracing::error!(%error, "the collector does not know server {server} in project {project} — add it to the tree");
                self.kept(sent);
                Next::RetryIn(self.backoff.refused(random_unit()))
            }
            Answer::Unavailable(error) => {
                self.kept(sent);
                let delay = self.backoff.failed(random_unit());
                if self.backoff.failures == 1 {
                    tracing::warn!(%error, retry_in = ?delay, "the collector is unavailable; keeping reports in the backlog");
                } else {
                    tracing::debug!(%error, retry_in = ?delay, backlog = self.reports.len(), "the collector is still unavailable");
                }
                Next::RetryIn(delay)
            }
        }
    }

    /// The batch stays queued for the next attempt.
    fn kept(&mut self, sent: InFlight) {
        self.reports.failed(sent.reports);
        self.checks.failed(sent.checks);
        self.hits.failed(sent.hits);
    }

    /// The batch is given up; its reports count as dropped.
    fn discard(&mut self, sent: InFlight) {
        self.reports.discard(sent.reports);
        self.checks.discard(sent.checks);
        self.hits.discard(sent.hits);
    }

    /// Make the running down-checks and log rules what the collector assigned: unchanged
    /// down-checks keep running, changed ones restart, missing ones stop.
    fn assign(&mut self, assignments: Assignments, check_tasks: &mut JoinSet<()>) {
        if self.stopping {
            return;
        }
        let wanted: BTreeMap<String, DownCheckAssignment> = assignments.down_checks.into_iter().map(|d| (d.name.clone(), d)).collect();
        self.down_checks.retain(|name, running| {
            let keep = wanted.get(name) == Some(&running.assignment);
            if !keep {
                tracing::info!(down_check = %name, "stopping down-check");
                running.cancel.cancel();
            }
            keep
        });
        for (name, assignment) in wanted {
            if self.down_checks.contains_key(&name) {
                continue;
            }
            tracing::info!(
                down_check = %name,
                ip = %assignment.ip,
                port = assignment.port,
                liveness_port = assignment.liveness_port,
                interval_ms = assignment.interval_ms,
                "running down-check"
            );
            let cancel = CancellationToken::new();
            let span = tracing::info_span!("down_check", name = %name);
            check_tasks.spawn(run_down_check(assignment.clone(), self.check_tx.clone(), cancel.clone()).instrument(span));
            self.down_checks.insert(name, RunningCheck { assignment, cancel });
        }
        self.tail.assign(assignments.log_rules);
    }

    /// Stop every down-check task and wait for each; assignments are ignored from now on.
    async fn stop_down_checks(&mut self, check_tasks: &mut JoinSet<()>) {
        self.stopping = true;
        for check in std::mem::take(&mut self.down_checks).into_values() {
            check.cancel.cancel();
        }
        while check_tasks.join_next().await.is_some() {}
    }

    /// A tail poll finished: queue its hits and take the tailer back.
    fn polled(&mut self, polled: Result<(Tailer, Vec<Hit>), JoinError>) {
        for hit in self.tail.polled(polled, now_ms()) {
            self.queue_hit(hit);
        }
    }
}

/// A report, as the host sampler makes it, cut to what the collector accepts: the busiest
/// processes, the first metrics, and finite numbers only (JSON has no NaN, and one such value
/// would make the collector refuse the whole batch).
fn fit_to_wire(mut report: Report) -> Report {
    report.metrics.retain(|m| m.value.is_finite());
    report.metrics.truncate(wire::MAX_METRICS_PER_REPORT);
    report.processes.truncate(wire::MAX_PROCESSES_PER_REPORT);
    for p in &mut report.processes {
        p.cpu = p.cpu.filter(|c| c.is_finite());
        if !p.memory.is_finite() {
            p.memory = 0.0;
        }
    }
    report
}

/// The JSON of an [`wire::IngestRequest`] with `reports` already encoded.
fn request_body(
    project: &str,
    server: &str,
    reports: &[&str],
    checks: &[&CheckResult],
    hits: &[&LogHit],
    dropped: u64,
) -> serde_json::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(256 + reports.iter().map(|r| r.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"project\":");
    serde_json::to_writer(&mut body, project)?;
    body.extend_from_slice(b",\"server\":");
    serde_json::to_writer(&mut body, server)?;
    body.extend_from_slice(b",\"reports\":[");
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(report.as_bytes());
    }
    body.extend_from_slice(b"],\"checks\":");
    serde_json::to_writer(&mut body, checks)?;
    body.extend_from_slice(b",\"log_hits\":");
    serde_json::to_writer(&mut body, hits)?;
    write!(body, ",\"dropped\":{dropped}}}").map_err(serde_json::Error::io)?;
    Ok(body)
}

/// What the collector's answer means for the batch it was given.
#[derive(Debug, PartialEq)]
enum Answer {
    /// Stored; the assignments, when the answer could be read.
    Accepted(Option<Assignments>),
    /// 400/422: the batch itself is wrong; sending it again cannot help.
    Invalid(String),
    /// 413.
    TooLarge,
    /// 401/403.
    KeyRefused(String),
    /// 404: the project or server is not in the applied tree.
    UnknownServer(String),
    /// No answer, 5xx, or anything else: try again later.
    Unavailable(String),
}

/// POST the request and classify the answer.
async fn send(request: reqwest::RequestBuilder) -> Answer {
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Answer::Unavailable(chain(error.without_url())),
    };
    let status = response.status().as_u16();
    // A body that breaks off or runs long classifies as unreadable: for 200 the batch was still stored.
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    classify(status, &body)
}

fn classify(status: u16, body: &[u8]) -> Answer {
    match status {
        200..=299 => Answer::Accepted(serde_json::from_slice::<IngestResponse>(body).ok().map(|r| r.assignments)),
        400 | 422 => Answer::Invalid(error_message(status, body)),
        401 | 403 => Answer::KeyRefused(error_message(status, body)),
        404 => Answer::UnknownServer(error_message(status, body)),
        413 => Answer::TooLarge,
        _ => Answer::Unavailable(error_message(status, body)),
    }
}

/// `status 400: <the collector's "error">`, or a short single-line excerpt of a body that is not
/// the collector's `{"error": …}`.
fn error_message(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) => String::from_utf8_lossy(body).split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect(),
    };
    if text.is_empty() { format!("status {status}") } else { format!("status {status}: {text}") }
}

/// Run one down-check every `interval_ms` until cancelled, sending each result.
async fn run_down_check(assignment: DownCheckAssignment, results: mpsc::Sender<CheckResult>, cancel: CancellationToken) {
    let period = Duration::from_millis(assignment.interval_ms).max(MIN_INTERVAL);
    let timeout = match assignment.timeout_ms {
        0 => Duration::from_millis(wire::downcheck_timeout_ms(assignment.interval_ms)),
        ms => Duration::from_millis(ms),
    }
    .min(period);
    let mut tick = ticker(period);
    loop {
        let step = async {
            tick.tick().await;
            results.send(down_check(&assignment, timeout).await).await.is_ok()
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = step => if !sent { return },
        }
    }
}

/// Connect to the service port and the liveness port at once.
async fn down_check(a: &DownCheckAssignment, timeout: Duration) -> CheckResult {
    let at_ms = now_ms();
    let (port, liveness) = tokio::join!(probe::check(&a.ip, a.port, timeout, &[]), probe::check(&a.ip, a.liveness_port, timeout, &[]));
    let mut errors = Vec::new();
    if let Some(e) = &port.error {
        errors.push(e.message.clone());
    }
    if let Some(e) = &liveness.error {
        errors.push(format!("liveness port {}: {}", a.liveness_port, e.message));
    }
    CheckResult {
        name: a.name.clone(),
        at_ms,
        port_ok: port.ok,
        liveness_ok: liveness.ok,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// The tailer for the assigned log rules: rebuilt, with the same state file (so offsets are
/// kept), when the rules change; polled on a blocking thread.
struct Tail {
    state_file: Option<PathBuf>,
    /// What the collector assigned last.
    wanted: Vec<LogAssignment>,
    /// What the tailer was built from.
    built_from: Vec<LogAssignment>,
    /// The valid rules of `built_from`, in the tailer's rule order (a hit's `rule_index`).
    rules: Vec<LogAssignment>,
    /// None without rules, and while a poll has it.
    tailer: Option<Tailer>,
    polling: bool,
}

impl Tail {
    fn new(state_file: Option<PathBuf>) -> Tail {
        Tail { state_file, wanted: Vec::new(), built_from: Vec::new(), rules: Vec::new(), tailer: None, polling: false }
    }

    fn assign(&mut self, rules: Vec<LogAssignment>) {
        self.wanted = rules;
        self.rebuild();
    }

    /// Build the tailer again if the wanted rules changed (after the poll in flight, if any).
    fn rebuild(&mut self) {
        if self.polling || self.wanted == self.built_from {
            return;
        }
        self.tailer = None; // its place was saved by its last poll
        self.built_from = self.wanted.clone();
        let (rules, tailer) = build_tailer(self.wanted.clone(), self.state_file.clone());
        if !self.wanted.is_empty() {
            tracing::info!(rules = rules.len(), "following the assigned log rules");
        }
        self.rules = rules;
        self.tailer = tailer;
    }

    /// Hand the tailer to a blocking thread for one poll.
    fn start_poll(&mut self) -> Option<JoinHandle<(Tailer, Vec<Hit>)>> {
        let mut tailer = self.tailer.take()?;
        self.polling = true;
        Some(tokio::task::spawn_blocking(move || {
            let hits = tailer.poll();
            (tailer, hits)
        }))
    }

    /// Take the tailer back; its hits, in wire form (mapped before any rebuild changes the rules).
    /// A poll that panicked loses the tailer: it is rebuilt.
    fn polled(&mut self, polled: Result<(Tailer, Vec<Hit>), JoinError>, at_ms: i64) -> Vec<LogHit> {
        self.polling = false;
        let hits = match polled {
            Ok((tailer, hits)) => {
                self.tailer = Some(tailer);
                hits.into_iter().filter_map(|hit| self.log_hit(hit, at_ms)).collect()
            }
            Err(error) => {
                tracing::error!(%error, "the log tailer failed; starting it again");
                self.built_from.clear();
                Vec::new()
            }
        };
        self.rebuild();
        hits
    }

    /// The wire form of a hit of the current rules.
    fn log_hit(&self, hit: Hit, at_ms: i64) -> Option<LogHit> {
        let rule = self.rules.get(hit.rule_index)?;
        Some(LogHit { policy: rule.policy.clone(), rule: rule.rule, file: hit.file.to_string_lossy().into_owned(), line: hit.line, at_ms })
    }
}

/// A tailer for the valid ones of `rules` (an invalid glob or an empty keyword is logged and
/// skipped), and those rules. A state file that cannot be used is logged; a corrupt one is
/// replaced, an unreadable one is not used.
fn build_tailer(mut rules: Vec<LogAssignment>, mut state_file: Option<PathBuf>) -> (Vec<LogAssignment>, Option<Tailer>) {
    loop {
        if rules.is_empty() {
            return (rules, None);
        }
        let tail_rules = rules.iter().map(|r| TailRule { pattern: r.file.clone(), keyword: r.keyword.clone() }).collect();
        match Tailer::new(tail_rules, TailLimits::default(), state_file.clone()) {
            Ok(tailer) => return (rules, Some(tailer)),
            Err(error @ (TailError::Pattern { index, .. } | TailError::EmptyKeyword { index })) => {
                let rule = rules.remove(index);
                tracing::warn!(policy = %rule.policy, rule = rule.rule, file = %rule.file, error = %chain(error), "skipping an invalid log rule");
            }
            Err(error) => {
                let replaced = matches!(error, TailError::ParseState { .. })
                    && state_file.as_ref().is_some_and(|path| std::fs::remove_file(path).is_ok());
                tracing::warn!(
                    error = %chain(error),
                    "cannot use the tail state file; lines appended while the agent was down may be missed"
                );
                if !replaced {
                    state_file = None;
                }
            }
        }
    }
}

/// How much one queue's part of a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    /// Sequence number just past the batch's last item.
    end: u64,
    count: usize,
    /// The drop count the request reports.
    dropped: u64,
}

impl InFlight {
    fn is_empty(&self) -> bool {
        self.reports.count + self.checks.count + self.hits.count == 0
    }
}

/// Roughly what an item costs to keep, in bytes: a queue bounds its memory as well as its length.
trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for Box<str> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weight for CheckResult {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.name.len() + self.error.as_ref().map_or(0, String::len)
    }
}

impl Weight for LogHit {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.policy.len() + self.file.len() + self.line.len()
    }
}

/// A bounded FIFO that drops its oldest items when full (by count or by bytes) and counts what
/// it dropped. Items carry sequence numbers, so that after a request only the items it carried
/// are forgotten — not those pushed meanwhile — even when the queue overflowed while the request
/// was in flight.
#[derive(Debug)]
struct Queue<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// The most bytes the items may weigh; a single heavier item is still kept, alone.
    max_bytes: usize,
    bytes: usize,
    /// Sequence number of `items[0]`.
    head: u64,
    /// Dropped since the last accepted request, not counting those of the batch in flight.
    dropped: u64,
    /// The end of the batch in flight.
    in_flight: Option<u64>,
    /// Items of the batch in flight dropped from the queue meanwhile: delivered if the request
    /// is accepted, lost otherwise.
    dropped_in_flight: u64,
    /// Dropping since the queue was last full, so the caller warns once per episode.
    overflowing: bool,
}

impl<T: Weight> Queue<T> {
    fn new(capacity: usize, max_bytes: usize) -> Queue<T> {
        Queue {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            head: 0,
            dropped: 0,
            in_flight: None,
            dropped_in_flight: 0,
            overflowing: false,
        }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Append `item`, dropping the oldest until it fits. True when this starts dropping (the
    /// first drop since an accepted request last made room).
    fn push(&mut self, item: T) -> bool {
        let weight = item.weight();
        let mut started = false;
        while !self.items.is_empty() && (self.items.len() >= self.capacity || self.bytes + weight > self.max_bytes) {
            if let Some(oldest) = self.items.pop_front() {
                self.bytes -= oldest.weight();
            }
            if self.in_flight.is_some_and(|end| self.head < end) {
                self.dropped_in_flight += 1;
            } else {
                self.dropped += 1;
            }
            self.head += 1;
            started |= !self.overflowing;
            self.overflowing = true;
        }
        self.bytes += weight;
        self.items.push_back(item);
        started
    }

    /// Mark the oldest `max` items (or fewer) as a request's batch.
    fn start(&mut self, max: usize) -> Sent {
        let count = self.items.len().min(max);
        let end = self.head + count as u64;
        self.in_flight = Some(end);
        Sent { end, count, dropped: self.dropped }
    }

    /// The oldest `n` items: right after [`start`](Self::start), the batch.
    fn front(&self, n: usize) -> impl Iterator<Item = &T> {
        self.items.iter().take(n)
    }

    /// Remove what is still queued of the batch; how many that was.
    fn remove_batch(&mut self, sent: Sent) -> usize {
        let n = (sent.end.saturating_sub(self.head) as usize).min(self.items.len());
        self.bytes -= self.items.drain(..n).map(|item| item.weight()).sum::<usize>();
        self.head += n as u64;
        self.in_flight = None;
        if n > 0 {
            self.overflowing = false;
        }
        n
    }

    /// The request was accepted: forget its batch and the drops it reported; returns those drops.
    fn accepted(&mut self, sent: Sent) -> u64 {
        self.remove_batch(sent);
        self.dropped -= sent.dropped.min(self.dropped);
        self.dropped_in_flight = 0;
        sent.dropped
    }

    /// The request failed: everything stays for the next attempt, except what overflowed meanwhile.
    fn failed(&mut self, _sent: Sent) {
        self.in_flight = None;
        self.dropped += std::mem::take(&mut self.dropped_in_flight);
    }

    /// The batch is given up: forget it and count it as dropped.
    fn discard(&mut self, sent: Sent) {
        let removed = self.remove_batch(sent) as u64;
        self.dropped += removed + std::mem::take(&mut self.dropped_in_flight);
    }
}

/// How many items of one kind a request may carry: halved when the collector answers 413, and
/// doubled back towards the maximum with each accepted request.
#[derive(Debug)]
struct BatchLimit {
    max: usize,
    current: usize,
}

impl BatchLimit {
    fn new(max: usize) -> BatchLimit {
        BatchLimit { max, current: max }
    }

    fn get(&self) -> usize {
        self.current
    }

    /// A batch with `sent` items was too large: false when it cannot be split (one item or none).
    fn too_large(&mut self, sent: usize) -> bool {
        if sent <= 1 {
            return false;
        }
        self.current = sent / 2;
        true
    }

    fn accepted(&mut self) {
        self.current = (self.current * 2).min(self.max);
    }
}

/// Delays between attempts while the collector does not answer: 1 s, doubling to 60 s.
#[derive(Debug, Default)]
struct Backoff {
    /// Consecutive failed attempts.
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);

    /// The delay after `failures` consecutive failures, before jitter.
    fn step(failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        Self::FIRST.saturating_mul(1u32 << (failures - 1).min(6)).min(Self::MAX)
    }

    /// The step, with `jitter` in [0, 1) choosing a point in its upper half.
    fn jittered(step: Duration, jitter: f64) -> Duration {
        step.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// One more failure: how long to wait.
    fn failed(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Self::jittered(Self::step(self.failures), jitter)
    }

    /// A refusal only an operator can fix: wait the longest step.
    fn refused(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Self::jittered(Self::MAX, jitter)
    }

    /// An answer: start again from the first step; the failures before it.
    fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use wire::IngestRequest;

    impl Weight for u32 {
        fn weight(&self) -> usize {
            1
        }
    }

    fn queue(capacity: usize, items: std::ops::Range<u32>) -> Queue<u32> {
        let mut q = Queue::new(capacity, usize::MAX);
        for i in items {
            q.push(i);
        }
        q
    }

    fn contents(q: &Queue<u32>) -> Vec<u32> {
        q.items.iter().copied().collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let mut q = Queue::new(3, usize::MAX);
        assert!(!q.push(1));
        assert!(!q.push(2));
        assert!(!q.push(3));
        assert!(q.push(4), "the first drop starts an episode");
        assert!(!q.push(5), "warned once per episode");
        assert_eq!(contents(&q), [3, 4, 5]);
        assert_eq!(q.dropped, 2);
    }

    #[test]
    fn the_drop_count_goes_with_the_next_accepted_request_then_resets() {
        let mut q = queue(3, 0..5);
        let sent = q.start(10);
        assert_eq!(sent.dropped, 2);
        q.failed(sent);
        assert_eq!(q.dropped, 2, "a failed request keeps the count");
        let sent = q.start(10);
        q.push(5); // overflows while the request is in flight: drops 2, which the request carries
        assert_eq!(q.accepted(sent), 2);
        assert_eq!(q.dropped, 0, "the dropped item of the batch was delivered by it");
        assert_eq!(contents(&q), [5]);
        assert!(!q.overflowing, "room again ends the episode");
        assert!(!q.push(6));
    }

    #[test]
    fn only_what_was_sent_is_removed() {
        let mut q = queue(10, 0..4);
        let sent = q.start(3);
        assert_eq!(sent.count, 3);
        assert_eq!(q.front(sent.count).copied().collect::<Vec<_>>(), [0, 1, 2]);
        q.push(4);
        q.push(5);
        q.accepted(sent);
        assert_eq!(contents(&q), [3, 4, 5]);
        let sent = q.start(10);
        assert_eq!(q.front(sent.count).copied().collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn items_of_a_failed_batch_that_overflowed_meanwhile_count_as_dropped() {
        let mut q = queue(3, 0..3);
        let sent = q.start(2); // 0, 1
        q.push(3); // drops 0 (in flight)
        q.push(4); // drops 1 (in flight)
        q.push(5); // drops 2 (not in flight)
        q.failed(sent);
        assert_eq!(q.dropped, 3);
        assert_eq!(contents(&q), [3, 4, 5]);
        let sent = q.start(10);
        assert_eq!(sent.dropped, 3);
        assert_eq!(q.accepted(sent), 3);
        assert!(q.is_empty());
    }

    #[test]
    fn an_accepted_batch_that_overflowed_meanwhile_removes_only_its_survivors() {
        let mut q = queue(3, 0..3);
        let sent = q.start(2); // 0, 1
        for i in 3..6 {
            q.push(i); // drops 0, 1 (delivered by the batch) and 2 (lost)
        }
        assert_eq!(q.accepted(sent), 0);
        assert_eq!(contents(&q), [3, 4, 5], "nothing pushed meanwhile is removed");
        assert_eq!(q.dropped, 1, "only the item outside the batch was lost");
    }

    #[test]
    fn a_discarded_batch_is_removed_and_counted_as_dropped() {
        let mut q = queue(10, 0..5);
        let sent = q.start(2);
        q.push(5);
        q.discard(sent);
        assert_eq!(contents(&q), [2, 3, 4, 5]);
        assert_eq!(q.dropped, 2);
        let sent = q.start(0);
        assert_eq!((sent.count, sent.dropped), (0, 2));
    }

    #[test]
    fn a_byte_budget_drops_the_oldest_too() {
        let mut q: Queue<Box<str>> = Queue::new(100, 10);
        assert!(!q.push("aaaa".into()));
        assert!(!q.push("bbbb".into()));
        assert!(q.push("cccc".into()), "12 bytes > 10: the oldest goes");
        assert_eq!((q.len(), q.bytes, q.dropped), (2, 8, 1));
        assert!(!q.push("0123456789ab".into()), "one episode");
        assert_eq!((q.len(), q.bytes, q.dropped), (1, 12, 3), "a single heavier item is kept alone");
        let sent = q.start(10);
        q.accepted(sent);
        assert_eq!((q.len(), q.bytes), (0, 0));
        let check = CheckResult { name: "n".repeat(10), at_ms: 0, port_ok: true, liveness_ok: true, error: None };
        assert!(check.weight() > 10);
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_newest() {
        let q = queue(0, 0..3);
        assert_eq!(contents(&q), [2]);
        assert_eq!(q.dropped, 2);
    }

    #[test]
    fn too_large_batches_halve_down_to_one_then_give_up_and_regrow() {
        let mut limit = BatchLimit::new(60);
        let mut sizes = vec![limit.get()];
        while limit.too_large(limit.get()) {
            sizes.push(limit.get());
        }
        assert_eq!(sizes, [60, 30, 15, 7, 3, 1], "a batch of one that is too large is dropped, not split");
        assert!(!limit.too_large(0));
        // A short batch halves from what was sent, not from the limit.
        let mut limit = BatchLimit::new(60);
        assert!(limit.too_large(10));
        assert_eq!(limit.get(), 5);
        let grown: Vec<usize> = (0..5)
            .map(|_| {
                limit.accepted();
                limit.get()
            })
            .collect();
        assert_eq!(grown, [10, 20, 40, 60, 60]);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute_and_resets() {
        let mut backoff = Backoff::default();
        let steps: Vec<u64> = (0..9).map(|_| backoff.failed(0.999_999).as_secs_f64().round() as u64).collect();
        assert_eq!(steps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff.succeeded(), 9);
        assert_eq!(backoff.failed(0.999_999).as_secs_f64().round(), 1.0, "an answer starts again from 1 s");
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_step() {
        for failures in 1..10 {
            let step = Backoff::step(failures);
            for jitter in [0.0, 0.25, 0.5, 0.999, -1.0, 2.0] {
                let delay = Backoff::jittered(step, jitter);
                assert!(delay >= step / 2 && delay <= step, "{failures} failures, jitter {jitter}: {delay:?} vs step {step:?}");
            }
        }
        assert_eq!(Backoff::step(0), Duration::ZERO);
        assert_eq!(Backoff::step(u32::MAX), Backoff::MAX);
        for _ in 0..100 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r));
        }
    }

    #[test]
    fn refusals_wait_the_longest_step() {
        let mut backoff = Backoff::default();
        let delay = backoff.refused(0.0);
        assert_eq!(delay, Backoff::MAX / 2);
        assert!(backoff.refused(0.999_999) <= Backoff::MAX);
    }

    #[test]
    fn answers_are_classified_by_status() {
        let accepted =
            br#"{"accepted":1,"assignments":{"down_checks":[],"log_rules":[{"policy":"p","rule":0,"file":"/f","keyword":"k"}]}}"#;
        let rules = vec![LogAssignment { policy: "p".into(), rule: 0, file: "/f".into(), keyword: "k".into() }];
        let cases: Vec<(u16, &[u8], Answer)> = vec![
            (200, accepted, Answer::Accepted(Some(Assignments { down_checks: vec![], log_rules: rules }))),
            (200, b"not json", Answer::Accepted(None)),
            (200, b"", Answer::Accepted(None)),
            (400, br#"{"error":"report 3: unknown metric `x`"}"#, Answer::Invalid("status 400: report 3: unknown metric `x`".into())),
            (422, b"", Answer::Invalid("status 422".into())),
            (401, br#"{"error":"wrong ingest key"}"#, Answer::KeyRefused("status 401: wrong ingest key".into())),
            (403, b"forbidden", Answer::KeyRefused("status 403: forbidden".into())),
            (404, br#"{"error":"unknown server web-9"}"#, Answer::UnknownServer("status 404: unknown server web-9".into())),
            (413, b"", Answer::TooLarge),
            (503, br#"{"error":"shutting down"}"#, Answer::Unavailable("status 503: shutting down".into())),
            (500, b"<html>\n  oops\n</html>", Answer::Unavailable("status 500: <html> oops </html>".into())),
            (302, b"", Answer::Unavailable("status 302".into())),
        ];
        for (status, body, expected) in cases {
            assert_eq!(classify(status, body), expected, "status {status}");
        }
        let long = vec![b'x'; 5000];
        let Answer::Unavailable(message) = classify(502, &long) else { panic!("502 is unavailable") };
        assert_eq!(message.len(), "status 502: ".len() + 200, "a long body is cut");
    }

    fn report(at_ms: i64) -> Report {
        let mut sampler = HostSampler::with_facts(Default::default(), 100, 4096);
        let snapshot = crate::agent::host::Snapshot {
            memory: crate::agent::host::parse::MemInfo { total: 1000, available: 250, ..Default::default() },
            ..Default::default()
        };
        sampler.observe(snapshot, std::time::Instant::now(), at_ms)
    }

    #[test]
    fn the_request_body_is_an_ingest_request() {
        let reports = [report(1_000), report(2_000)];
        let encoded: Vec<String> = reports.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
        let encoded: Vec<&str> = encoded.iter().map(String::as_str).collect();
        let check = CheckResult { name: "a-to-b-5432".into(), at_ms: 3, port_ok: false, liveness_ok: true, error: Some("refused".into()) };
        let hit = LogHit { policy: "app".into(), rule: 2, file: "/var/log/a \"b\".log".into(), line: "ERROR\tü\n".into(), at_ms: 4 };
        let body = request_body("shop", "web-01", &encoded, &[&check], &[&hit], 7).unwrap();
        let parsed: IngestRequest = serde_json::from_slice(&body).unwrap();
        let expected = IngestRequest {
            project: "shop".into(),
            server: "web-01".into(),
            reports: reports.to_vec(),
            checks: vec![check],
            log_hits: vec![hit],
            dropped: 7,
        };
        assert_eq!(parsed, expected);
        let empty: IngestRequest = serde_json::from_slice(&request_body("p", "s", &[], &[], &[], 0).unwrap()).unwrap();
        assert!(empty.reports.is_empty() && empty.checks.is_empty() && empty.log_hits.is_empty());
    }

    #[test]
    fn reports_are_cut_to_what_the_collector_accepts() {
        let mut r = report(1);
        let process =
            crate::agent::host::ProcessInfo { pid: 1, name: "x".into(), user: "root".into(), cpu: None, memory: 0.0, rss_bytes: 0 };
        r.processes = vec![process; wire::MAX_PROCESSES_PER_REPORT + 5];
        r.processes[0].cpu = Some(f64::NAN);
        r.processes[1].memory = f64::INFINITY;
        let metric = r.metrics[0].clone();
        r.metrics = vec![metric; wire::MAX_METRICS_PER_REPORT + 1];
        r.metrics[0].value = f64::NAN;
        let r = fit_to_wire(r);
        assert_eq!(r.processes.len(), wire::MAX_PROCESSES_PER_REPORT);
        assert_eq!(r.metrics.len(), wire::MAX_METRICS_PER_REPORT);
        assert!(r.metrics.iter().all(|m| m.value.is_finite()));
        assert_eq!((r.processes[0].cpu, r.processes[1].memory), (None, 0.0));
        let encoded = serde_json::to_string(&r).unwrap();
        assert!(serde_json::from_str::<Report>(&encoded).is_ok(), "the collector can read it");
    }

    #[test]
    fn server_urls_must_be_http() {
        assert_eq!(ingest_url("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080/ingest/v1/report");
        assert_eq!(ingest_url("https://watch.example.com/base").unwrap(), "https://watch.example.com/base/ingest/v1/report");
        for bad in ["ftp://x", "127.0.0.1:8080", "", "http://"] {
            assert!(ingest_url(bad).is_err(), "{bad}");
        }
    }

    fn rule(policy: &str, rule: usize, file: &str, keyword: &str) -> LogAssignment {
        LogAssignment { policy: policy.into(), rule, file: file.into(), keyword: keyword.into() }
    }

    #[test]
    fn invalid_log_rules_are_skipped_and_hits_name_their_policy_rule() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "").unwrap();
        let log = log.display().to_string();
        let rules = vec![rule("a", 0, "/tmp/[", "x"), rule("a", 1, &log, ""), rule("b", 3, &log, "ERROR")];
        let mut tail = Tail::new(Some(dir.path().join("state")));
        tail.assign(rules.clone());
        assert_eq!(tail.rules, [rules[2].clone()]);
        let mut handle = tail.tailer.take().expect("a tailer for the valid rule");
        assert!(handle.poll().is_empty());
        std::fs::write(&log, "fine\nERROR here\n").unwrap();
        let hits = handle.poll();
        let hit = tail.log_hit(hits.into_iter().next().expect("one hit"), 42).unwrap();
        assert_eq!(hit, LogHit { policy: "b".into(), rule: 3, file: log.clone(), line: "ERROR here".into(), at_ms: 42 });
        assert!(dir.path().join("state").exists());
    }

    #[test]
    fn a_corrupt_state_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::write(&state, "{not json").unwrap();
        let (rules, tailer) = build_tailer(vec![rule("a", 0, "/nonexistent/x.log", "k")], Some(state.clone()));
        assert_eq!(rules.len(), 1);
        tailer.expect("a tailer").poll();
        let text = std::fs::read_to_string(&state).unwrap();
        assert!(text.contains("\"version\""), "the state file was written again: {text}");
    }

    #[test]
    fn the_tailer_is_rebuilt_only_when_the_rules_change() {
        let mut tail = Tail::new(None);
        tail.assign(vec![rule("a", 0, "/nonexistent/x.log", "k")]);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _runtime = rt.enter();
        let handle = tail.start_poll().expect("polling");
        assert!(tail.tailer.is_none() && tail.polling);
        tail.assign(vec![rule("a", 0, "/nonexistent/y.log", "k")]);
        assert_eq!(tail.built_from[0].file, "/nonexistent/x.log", "not rebuilt during a poll");
        let polled = rt.block_on(handle);
        tail.polled(polled, 0);
        assert_eq!(tail.built_from[0].file, "/nonexistent/y.log", "rebuilt once the poll is back");
        assert!(tail.tailer.is_some());
        tail.assign(Vec::new());
        assert!(tail.tailer.is_none() && tail.rules.is_empty());
    }
}
