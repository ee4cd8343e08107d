//! One push to the collector: the request body (reports spliced in as the JSON they wait in),
//! what the answer means for the batch ([`Answer`]), and how the next push adapts — a smaller
//! batch after 413 ([`BatchLimit`]), a jittered delay while the collector is away ([`Backoff`]).

use std::io::Write;
use std::time::Duration;

use crate::errors::error_chain;
use crate::protocol::{self, Assignments, CheckResult, IngestResponse, LogHit, Report};

/// The most of an answer that is read (assignments are small; anything bigger is not the collector).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A report, as the host sampler makes it, cut to what the collector accepts: the busiest
/// processes, the first metrics, and finite numbers only (JSON has no NaN, and one such value
/// would make the collector refuse the whole batch).
pub(super) fn fit_to_wire(mut report: Report) -> Report {
    report.metrics.retain(|m| m.value.is_finite());
    report.metrics.truncate(protocol::MAX_METRICS_PER_REPORT);
    report.processes.truncate(protocol::MAX_PROCESSES_PER_REPORT);
    for p in &mut report.processes {
        p.cpu = p.cpu.filter(|c| c.is_finite());
        if !p.memory.is_finite() {
            p.memory = 0.0;
        }
    }
    report
}

/// The JSON of an [`protocol::IngestRequest`] with `reports` already encoded.
pub(super) fn request_body(
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
pub(super) enum Answer {
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
pub(super) async fn send(request: reqwest::RequestBuilder) -> Answer {
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Answer::Unavailable(error_chain(&error.without_url())),
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

/// How many items of one kind a request may carry: halved when the collector answers 413, and
/// doubled back towards the maximum with each accepted request.
#[derive(Debug)]
pub(super) struct BatchLimit {
    max: usize,
    current: usize,
}

impl BatchLimit {
    pub(super) fn new(max: usize) -> BatchLimit {
        BatchLimit { max, current: max }
    }

    pub(super) fn get(&self) -> usize {
        self.current
    }

    /// A batch with `sent` items was too large: false when it cannot be split (one item or none).
    pub(super) fn too_large(&mut self, sent: usize) -> bool {
        if sent <= 1 {
            return false;
        }
        self.current = sent / 2;
        true
    }

    pub(super) fn accepted(&mut self) {
        self.current = (self.current * 2).min(self.max);
    }
}

/// A uniform number in [0, 1) for jitter (0.5 should the system's random source fail).
pub(super) fn random_unit() -> f64 {
    getrandom::u64().map_or(0.5, |r| (r >> 11) as f64 / (1u64 << 53) as f64)
}

/// Delays between attempts while the collector does not answer: 1 s, doubling to 60 s.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    /// Consecutive failed attempts.
    pub(super) failures: u32,
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
    pub(super) fn failed(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Self::jittered(Self::step(self.failures), jitter)
    }

    /// A refusal only an operator can fix: wait the longest step.
    pub(super) fn refused(&mut self, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        Self::jittered(Self::MAX, jitter)
    }

    /// An answer: start again from the first step; the failures before it.
    pub(super) fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::sampler::HostSampler;
    use crate::protocol::{IngestRequest, LogAssignment};

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
        let snapshot = crate::agent::sampler::Snapshot {
            memory: crate::agent::sampler::parse::MemInfo { total: 1000, available: 250, ..Default::default() },
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
        let process = crate::protocol::ProcessInfo { pid: 1, name: "x".into(), user: "root".into(), cpu: None, memory: 0.0, rss_bytes: 0 };
        r.processes = vec![process; protocol::MAX_PROCESSES_PER_REPORT + 5];
        r.processes[0].cpu = Some(f64::NAN);
        r.processes[1].memory = f64::INFINITY;
        let metric = r.metrics[0].clone();
        r.metrics = vec![metric; protocol::MAX_METRICS_PER_REPORT + 1];
        r.metrics[0].value = f64::NAN;
        let r = fit_to_wire(r);
        assert_eq!(r.processes.len(), protocol::MAX_PROCESSES_PER_REPORT);
        assert_eq!(r.metrics.len(), protocol::MAX_METRICS_PER_REPORT);
        assert!(r.metrics.iter().all(|m| m.value.is_finite()));
        assert_eq!((r.processes[0].cpu, r.processes[1].memory), (None, 0.0));
        let encoded = serde_json::to_string(&r).unwrap();
        assert!(serde_json::from_str::<Report>(&encoded).is_ok(), "the collector can read it");
    }
}
