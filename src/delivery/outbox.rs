//! The outbox worker: claim due notifications, send them, record each attempt, retry with backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::send::{SendError, Senders};
use crate::clock::now_ms;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{DeliveryOutcome, OutboxRow, Store};

/// Notifications claimed per round.
pub const BATCH: u32 = 50;
/// How long a claim is ours; an unrecorded claim (a crash mid-send) is retried after it.
pub const LEASE_MS: i64 = 60_000;
/// Sends in flight at once, across channels.
const CONCURRENCY: usize = 8;
/// A notification still failing this long after it was queued is given up (status `failed`).
pub const GIVE_UP_MS: i64 = 24 * 60 * 60 * 1000;
/// The longest the worker sleeps between rounds when nobody wakes it.
const IDLE: Duration = Duration::from_secs(1);
/// On shutdown, sends already in flight get this long to finish and be recorded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Delays after the 1st, 2nd, … failed attempt; the last repeats.
const DELAYS_MS: [i64; 7] = [5_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000];

/// When to retry a notification queued at `created_ms` that has now failed `attempts` times
/// (counting the attempt that just failed): 5 s, 15 s, 30 s, 1 m, 2 m, 5 m, then every 10 m.
/// `None` — give up — once [`GIVE_UP_MS`] (24 h) have passed since it was queued.
pub fn backoff(attempts: u32, created_ms: i64, now_ms: i64) -> Option<i64> {
    if now_ms.saturating_sub(created_ms) >= GIVE_UP_MS {
        return None;
    }
    let index = (attempts.max(1) as usize - 1).min(DELAYS_MS.len() - 1);
    Some(now_ms + DELAYS_MS[index])
}

/// Send what the outbox holds until `cancel` fires: claim up to [`BATCH`] due notifications
/// for `holder` (so replicas never send the same one), send them [`CONCURRENCY`] at a time,
/// record each attempt, then sleep until `wake` is notified (call `notify_one` after
/// enqueueing) or a second passes. A full batch is followed at once by the next.
///
/// Failures are retried by [`backoff`]. Decisions made here (also in the README):
/// - A row whose channel no longer exists in the config fails at once, without retry: the
///   channel was removed on purpose, and a renamed channel is a new destination.
/// - A missing `${ENV}` is retried like any failure and logged at ERROR: serve's environment
///   only changes by a restart, and a restart with the variable set then delivers the rows
///   still pending instead of losing them.
/// - SMTP 5xx answers, HTTP 4xx answers but 408 and 429, bad addresses and a channel whose
///   type changed fail at once ([`SendError::is_permanent`]).
/// - Delivery is at least once: a send the server accepted but that could not be recorded
///   (database down, shutdown after the grace period) is sent again when its lease expires.
///   E-mails carry a stable Message-ID so mail systems can drop such a duplicate.
pub async fn run_outbox(
    store: Store,
    config: watch::Receiver<Arc<Config>>,
    senders: Senders,
    metrics: Arc<Metrics>,
    holder: String,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let span = tracing::info_span!("outbox", holder = %holder);
    async move {
        let senders = Arc::new(senders);
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        tracing::debug!("outbox worker started");
        loop {
            let claimed = tokio::select! {
                _ = cancel.cancelled() => break,
                claimed = store.claim_due_notifications(now_ms(), BATCH, &holder, LEASE_MS) => claimed,
            };
            let full = match claimed {
                Ok(rows) => {
                    let full = rows.len() as u32 >= BATCH;
                    if !rows.is_empty() {
                        let config = config.borrow().clone();
                        deliver_batch(&store, &config, &senders, &metrics, &limit, rows, &cancel).await;
                    }
                    full
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim notifications from the outbox; retrying");
                    false
                }
            };
            if cancel.is_cancelled() {
                break;
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(IDLE) => {}
            }
        }
        tracing::debug!("outbox worker stopped");
    }
    .instrument(span)
    .await
}

async fn deliver_batch(
    store: &Store,
    config: &Arc<Config>,
    senders: &Arc<Senders>,
    metrics: &Arc<Metrics>,
    limit: &Arc<Semaphore>,
    rows: Vec<OutboxRow>,
    cancel: &CancellationToken,
) {
    let mut tasks = JoinSet::new();
    for row in rows {
        let (store, config, senders, metrics, limit) = (store.clone(), config.clone(), senders.clone(), metrics.clone(), limit.clone());
        let span = tracing::info_span!("notification", id = row.id, channel = %row.channel, medium = ?row.medium);
        tasks.spawn(
            async move {
                let Ok(_permit) = limit.acquire_owned().await else { return };
                deliver(&store, &config, &senders, &metrics, row).await;
            }
            .instrument(span),
        );
    }
    loop {
        tokio::select! {
            next = tasks.join_next() => {
                match next {
                    None => return,
                    Some(Err(e)) if e.is_panic() => tracing::error!(error = %e, "a notification send panicked"),
                    Some(_) => {}
                }
            }
            _ = cancel.cancelled() => {
                let in_flight = tasks.len();
                let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
                if drained.is_err() {
                    tracing::warn!(in_flight, "shutting down with notifications still sending; they are retried after their lease");
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                }
                return;
            }
        }
    }
}

/// Send one row and record the attempt.
async fn deliver(store: &Store, config: &Config, senders: &Senders, metrics: &Metrics, row: OutboxRow) {
    let outcome = match config.channels.get(&row.channel) {
        None => {
            DeliveryOutcome::Failed { error: format!("channel `{}` no longer exists in the configuration", row.channel), retry_at_ms: None }
        }
        Some(channel) => match senders.send(channel, &row, &process_env).await {
            Ok(tracking) => DeliveryOutcome::Sent(tracking),
            Err(e) => failed(&row, &e, now_ms()),
        },
    };
    metrics.notification(row.medium.as_str(), matches!(outcome, DeliveryOutcome::Sent(_)));
    match &outcome {
        DeliveryOutcome::Sent(_) => tracing::info!(recipient = %row.recipient, "notification sent"),
        DeliveryOutcome::Failed { error, retry_at_ms: Some(at) } => {
            tracing::warn!(attempts = row.attempts + 1, retry_in_ms = at - now_ms(), %error, "notification failed; will retry")
        }
        DeliveryOutcome::Failed { error, retry_at_ms: None } => {
            tracing::error!(attempts = row.attempts + 1, %error, "notification failed; giving up")
        }
    }
    if let Err(e) = store.record_delivery(row.id, now_ms(), &outcome).await {
        tracing::warn!(error = %e, "could not record a delivery attempt; the notification is retried after its lease");
    }
}

/// The outcome of a failed send: retried by [`backoff`] unless the error is permanent.
fn failed(row: &OutboxRow, error: &SendError, now_ms: i64) -> DeliveryOutcome {
    if let SendError::Env { .. } = error {
        tracing::error!(%error, "a channel references an environment variable serve does not have; set it and restart");
    }
    let retry_at_ms = if error.is_permanent() { None } else { backoff(row.attempts.saturating_add(1), row.created_ms, now_ms) };
    DeliveryOutcome::Failed { error: error.to_string(), retry_at_ms }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    #[test]
    fn backoff_grows_then_repeats_every_ten_minutes() {
        let created = 1_000_000;
        let cases: &[(u32, i64)] =
            &[(0, 5 * S), (1, 5 * S), (2, 15 * S), (3, 30 * S), (4, M), (5, 2 * M), (6, 5 * M), (7, 10 * M), (8, 10 * M), (500, 10 * M)];
        for &(attempts, delay) in cases {
            let now = created + 10 * S;
            assert_eq!(backoff(attempts, created, now), Some(now + delay), "attempts {attempts}");
        }
    }

    #[test]
    fn backoff_gives_up_after_a_day() {
        let created = 5_000;
        assert_eq!(backoff(150, created, created + 24 * H - 1), Some(created + 24 * H - 1 + 10 * M));
        assert_eq!(backoff(150, created, created + 24 * H), None);
        assert_eq!(backoff(1, created, created + 30 * H), None);
    }
}
