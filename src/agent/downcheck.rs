//! Down-checks assigned to this agent: connect to the target's service port and liveness port
//! every interval and send each result to the push loop.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::run::{MIN_INTERVAL, ticker};
use crate::clock::now_ms;
use crate::metrics::LogThrottle;
use crate::probe;
use crate::protocol::{self, CheckResult, DownCheckAssignment};

/// Run one down-check every `interval_ms` until cancelled, sending each result.
pub(super) async fn run_down_check(assignment: DownCheckAssignment, results: mpsc::Sender<CheckResult>, cancel: CancellationToken) {
    let period = Duration::from_millis(assignment.interval_ms).max(MIN_INTERVAL);
    let timeout = match assignment.timeout_ms {
        0 => Duration::from_millis(protocol::downcheck_timeout_ms(assignment.interval_ms)),
        ms => Duration::from_millis(ms),
    }
    .min(period);
    let mut tick = ticker(period);
    loop {
        let step = async {
            tick.tick().await;
            match down_check(&assignment, timeout).await {
                Some(result) => results.send(result).await.is_ok(),
                None => true,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            sent = step => if !sent { return },
        }
    }
}

/// Connect to the service port and the liveness port at once. `None` when either check could not
/// run because this machine ran out of something (file descriptors, local ports, …): that says
/// nothing about the target, so no result is sent (logged once a minute at most).
async fn down_check(a: &DownCheckAssignment, timeout: Duration) -> Option<CheckResult> {
    let at_ms = now_ms();
    let (port, liveness) = tokio::join!(probe::check(&a.ip, a.port, timeout, &[]), probe::check(&a.ip, a.liveness_port, timeout, &[]));
    if let Some(e) = [&port.error, &liveness.error].into_iter().flatten().find(|e| matches!(e.kind, probe::ErrorKind::Local(_))) {
        if let Some(checks) = LOCAL_ERRORS.hit() {
            tracing::warn!(down_check = %a.name, checks, error = %e, "a down-check could not run: this machine ran out of a local resource; no result sent");
        }
        return None;
    }
    let mut errors = Vec::new();
    if let Some(e) = &port.error {
        errors.push(e.message.clone());
    }
    if let Some(e) = &liveness.error {
        errors.push(format!("liveness port {}: {}", a.liveness_port, e.message));
    }
    Some(CheckResult {
        name: a.name.clone(),
        at_ms,
        port_ok: port.ok,
        liveness_ok: liveness.ok,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    })
}

static LOCAL_ERRORS: LogThrottle = LogThrottle::new(Duration::from_secs(60));
