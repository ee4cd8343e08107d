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
//! What the collector's answer does to the batch (see [`super::push`]):
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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::{Instant, Interval, MissedTickBehavior, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backlog::{Queue, Sent};
use super::downcheck::run_down_check;
use super::logs::Tail;
use super::push::{Answer, Backoff, BatchLimit, fit_to_wire, random_unit, request_body, send};
use super::sampler::{HostError, HostSampler};
use super::sampling::Sampling;
use super::tail::{Hit, Tailer};
use crate::clock::now_ms;
use crate::errors::error_chain;
use crate::protocol::{self, Assignments, CheckResult, DownCheckAssignment, LogHit, Report};

/// How often host metrics are sampled and pushed unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Reports kept while the collector does not accept them: an hour at the default interval.
pub const DEFAULT_BACKLOG: usize = 720;
/// The shortest sampling or down-check interval: shorter would make the agent a load on its host.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The most memory the reports waiting in the backlog may take, whatever `--backlog` says: a
/// host with many processes makes large reports, and the agent must stay small (target: 20 MB).
/// A report of a host with 40 processes takes about 8 KB, so 720 of them fit.
pub const BACKLOG_BYTES: usize = 6 << 20;
/// Down-check results, and log hits, kept while the collector does not accept them (each).
const EVENT_BACKLOG: usize = protocol::MAX_EVENTS_PER_REQUEST;
/// The most memory each of those two queues may take (log lines run up to 4 KiB).
const EVENT_BACKLOG_BYTES: usize = 1 << 20;
/// One request, from connecting to the end of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
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
    let sampler = HostSampler::new().map_err(|e| match e {
        HostError::Unsupported => anyhow::anyhow!("host metrics are only supported on Linux; the agent cannot run on this system"),
        e => anyhow::Error::new(e).context("reading this machine's facts"),
    })?;
    let mut sampling = Sampling::start(sampler).context("starting the sampling thread")?;
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
            _ = sample_tick.tick() => sampling.request(now_ms(), Instant::now(), agent.options.interval),
            sampled = sampling.next() => {
                agent.sampled(sampled);
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
pub(super) fn ticker(period: Duration) -> Interval {
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
    /// The network filesystems the last report left out, so they are logged when they change.
    skipped_mounts: Vec<protocol::SkippedMount>,
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
            report_limit: BatchLimit::new(protocol::MAX_REPORTS_PER_REQUEST),
            event_limit: BatchLimit::new(protocol::MAX_EVENTS_PER_REQUEST),
            backoff: Backoff::default(),
            sampling_failed: false,
            skipped_mounts: Vec::new(),
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

    /// Queue a sample's report; a failure is logged (once until it recovers), and so are the
    /// network filesystems the sampler leaves out (once, and again when they change).
    fn sampled(&mut self, sampled: Result<Report, HostError>) {
        let report = match sampled {
            Ok(report) => report,
            Err(error) => {
                if !self.sampling_failed {
                    tracing::warn!(error = %error_chain(&error), "cannot sample host metrics; trying again every interval");
                }
                self.sampling_failed = true;
                return;
            }
        };
        if std::mem::take(&mut self.sampling_failed) {
            tracing::info!("sampling host metrics works again");
        }
        if report.skipped_mounts != self.skipped_mounts {
            for m in &report.skipped_mounts {
                tracing::info!(mount = %m.mount_point, fs_type = %m.fs_type, "not reading the space of a network filesystem");
            }
            self.skipped_mounts.clone_from(&report.skipped_mounts);
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

impl InFlight {
    fn is_empty(&self) -> bool {
        self.reports.count + self.checks.count + self.hits.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_must_be_http() {
        assert_eq!(ingest_url("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080/ingest/v1/report");
        assert_eq!(ingest_url("https://watch.example.com/base").unwrap(), "https://watch.example.com/base/ingest/v1/report");
        for bad in ["ftp://x", "127.0.0.1:8080", "", "http://"] {
            assert!(ingest_url(bad).is_err(), "{bad}");
        }
    }
}
