//! TCP checks on schedule: jittered timers, a cap on connects in flight, results as observations (I/O only; no storage, no alert logic).
//!
//! [`check`] is one check of one port. [`Prober`] runs many PortMonitors on their intervals: one
//! scheduler task owns a timer queue (`schedule`, plain data tested without a runtime) rather than
//! a task and a timer per monitor; each due monitor's ports are checked concurrently, with at most
//! `max_in_flight` connects in flight across all monitors; a monitor's results leave as one
//! `Vec<PortResult>` once all its ports are done. The scheduler wakes on a 10 ms grid, starting
//! everything due by then. A full results channel slows the prober down — the scheduler waits —
//! and never drops a result.
//!
//! The process running a prober needs a file-descriptor limit above `max_in_flight` plus its
//! other sockets (each check holds one descriptor while it connects).

mod check;
mod schedule;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::values::Cidr;
use crate::lease::Ownership;
use schedule::{Due, Liveness, Schedule};

pub use check::{ErrorKind, LocalReason, Outcome, ProbeError, approved_addrs, check};
pub use schedule::Upsert;
pub(crate) use schedule::jitter;

/// A monitor's identity: project and PortMonitor name. Unchanged keys keep their schedule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MonitorKey {
    pub project: String,
    pub name: String,
}

impl fmt::Display for MonitorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.name)
    }
}

/// Everything the prober needs to run one PortMonitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSpec {
    pub key: MonitorKey,
    /// An IP literal or a DNS name, resolved at every check.
    pub host: String,
    pub ports: Vec<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    /// The approved networks of the monitor's project; empty means no restriction.
    pub approved: Vec<Cidr>,
    /// The shard the monitor belongs to (its server's, or its own when it names none): a
    /// prober that divides the work runs it only while its replica holds that shard.
    pub shard: usize,
}

/// One check of one port of a monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortResult {
    pub key: MonitorKey,
    pub host: String,
    pub port: u16,
    /// When the check started, epoch milliseconds.
    pub at_ms: i64,
    /// When the run was scheduled, epoch milliseconds; `at_ms - due_ms` is the lateness.
    pub due_ms: i64,
    pub outcome: Outcome,
    /// The lease the check was made under: its monitor's shard, and the epoch this replica
    /// held it at when the run started (0 without leases). A replica cut off from the database
    /// writes and decides the check later only if no other replica held the shard meanwhile.
    pub shard: usize,
    pub epoch: i64,
}

/// Runs PortMonitors on their intervals until shut down. Cheap to call from the reconciler:
/// `upsert` and `remove` only touch the timer queue and wake the scheduler.
pub struct Prober {
    shared: Arc<Shared>,
    /// A child of the caller's token: cancelled by `shutdown` (or drop) without touching the parent.
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

struct Shared {
    schedule: Mutex<Schedule>,
    /// Woken when the earliest deadline may have moved.
    wake: Notify,
}

impl Shared {
    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        // The schedule holds no invariant a panic elsewhere could leave half-made.
        self.schedule.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The scheduler wakes on a grid of this step and starts everything due by then, instead of
/// once per due monitor. Measured with `benches/probe.rs` (10 000 monitors on a 10 s interval,
/// 1 000 checks/s): a third less CPU than waking for every deadline, for a p99 lateness of about
/// 10 ms instead of 5 ms (the target is 50 ms at the 99th percentile).
const TICK: Duration = Duration::from_millis(10);

/// What every check task needs: where results go and how to turn instants into epoch time.
struct Context {
    results: mpsc::Sender<Vec<PortResult>>,
    clock: Clock,
    /// The shards this replica holds; `None` runs every monitor.
    ownership: Option<Arc<Ownership>>,
}

/// Maps the runtime's monotonic clock to epoch milliseconds, anchored once at start, so
/// lateness (`at_ms - due_ms`) is exact and unaffected by wall-clock steps.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base: Instant,
    base_ms: i64,
}

impl Clock {
    fn start() -> Clock {
        Clock { base: Instant::now(), base_ms: crate::clock::now_ms() }
    }

    /// The first point of the [`TICK`] grid at or after `at`.
    fn next_tick(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.base).as_nanos();
        let tick = TICK.as_nanos();
        let rounded = since.div_ceil(tick) * tick;
        self.base + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX / 2))
    }

    fn epoch_ms(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.base).as_millis();
        self.base_ms.saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

/// One run of one monitor: its ports' results gather here until the last one is in.
struct Run {
    spec: Arc<MonitorSpec>,
    due_ms: i64,
    /// The shard's epoch when the run started ([`PortResult::epoch`]).
    epoch: i64,
    live: Arc<Liveness>,
    remaining: AtomicUsize,
    results: Mutex<Vec<Option<PortResult>>>,
}

impl Prober {
    /// Start the scheduler task (call from inside a tokio runtime). At most `max_in_flight`
    /// checks run at once (at least 1). Each run of a monitor sends one `Vec` to `results`, in
    /// the spec's port order, waiting while the channel is full.
    /// Cancelling `cancel` stops the prober like [`Prober::shutdown`] does.
    pub fn start(max_in_flight: usize, results: mpsc::Sender<Vec<PortResult>>, cancel: CancellationToken) -> Prober {
        Prober::start_divided(max_in_flight, results, None, cancel)
    }

    /// [`Prober::start`] for one replica of several: a due monitor whose shard `ownership` does
    /// not hold is skipped (its schedule goes on, so it runs at its next due time once the
    /// shard is held). `None` runs everything.
    pub fn start_divided(
        max_in_flight: usize,
        results: mpsc::Sender<Vec<PortResult>>,
        ownership: Option<Arc<Ownership>>,
        cancel: CancellationToken,
    ) -> Prober {
        let shared = Arc::new(Shared { schedule: Mutex::new(Schedule::default()), wake: Notify::new() });
        let cancel = cancel.child_token();
        let context = Arc::new(Context { results, clock: Clock::start(), ownership });
        let limit = Arc::new(Semaphore::new(max_in_flight.clamp(1, Semaphore::MAX_PERMITS)));
        let task = tokio::spawn(
            scheduler(Arc::clone(&shared), limit, context, cancel.clone()).instrument(tracing::info_span!("prober", max_in_flight)),
        );
        Prober { shared, cancel, task: Some(task) }
    }

    /// Add a monitor, or update it in place.
    ///
    /// A new key first runs at a deterministic jittered offset within one interval. A spec
    /// identical to the running one changes nothing, its schedule included. A changed spec is
    /// used from the next run on; if its interval changed, the next run moves to
    /// `min(next due, now + new interval)`.
    pub fn upsert(&self, spec: MonitorSpec) -> Upsert {
        let (change, wake) = self.shared.schedule().upsert(spec, Instant::now());
        if wake {
            self.shared.wake.notify_one();
        }
        change
    }

    /// Stop running a monitor; returns whether it was there. A run already in flight finishes,
    /// and its results are dropped unless they were already being sent (consumers ignore
    /// results for keys they no longer know).
    pub fn remove(&self, key: &MonitorKey) -> bool {
        self.shared.schedule().remove(key)
    }

    /// How many monitors are scheduled.
    pub fn len(&self) -> usize {
        self.shared.schedule().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the monitor runs next, on the runtime's clock.
    pub fn next_due(&self, key: &MonitorKey) -> Option<Instant> {
        self.shared.schedule().next_due(key)
    }

    /// Stop scheduling, abandon the checks in flight (their results are not sent) and wait
    /// until the scheduler and every check task have finished.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the prober's scheduler task failed");
        }
    }
}

impl Drop for Prober {
    /// A prober dropped without `shutdown` still stops; it just is not waited for.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn scheduler(shared: Arc<Shared>, limit: Arc<Semaphore>, context: Arc<Context>, cancel: CancellationToken) {
    let mut checks = JoinSet::new();
    'schedule: loop {
        // Finished checks are reaped here rather than awaited in the `select!` below: waking
        // the scheduler once per finished check would cost more than the check itself.
        while let Some(done) = checks.try_join_next() {
            report_failed_task(done);
        }
        let now = Instant::now();
        let (due, deadline) = {
            let mut schedule = shared.schedule();
            match schedule.pop_due(now) {
                Some(due) => (Some(due), None),
                None => (None, schedule.next_deadline()),
            }
        };
        if let Some(Due { spec, due, live }) = due {
            if spec.ports.is_empty() || context.ownership.as_ref().is_some_and(|o| !o.owns(spec.shard)) {
                continue;
            }
            if live.running.swap(true, Ordering::AcqRel) {
                // Only when the results channel stayed full for a whole interval.
                tracing::warn!(monitor = %spec.key, "the previous run has not finished (results not consumed?); skipping this run");
                continue;
            }
            let ports = spec.ports.len();
            let run = Arc::new(Run {
                due_ms: context.clock.epoch_ms(due),
                epoch: context.ownership.as_ref().map_or(0, |o| o.epoch(spec.shard)),
                live,
                remaining: AtomicUsize::new(ports),
                results: Mutex::new(vec![None; ports]),
                spec,
            });
            for index in 0..ports {
                // Waiting for a permit here, not in the task, keeps the backlog in the timer
                // queue (where lateness shows it) instead of in a pile of parked tasks.
                let permit = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break 'schedule,
                    permit = Arc::clone(&limit).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break 'schedule, // never closed
                    },
                };
                checks.spawn(check_port(Arc::clone(&run), index, permit, Arc::clone(&context)));
            }
            continue;
        }
        let sleep = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(context.clock.next_tick(deadline)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = shared.wake.notified() => {}
            _ = sleep => {}
        }
    }
    checks.shutdown().await;
    tracing::debug!("prober stopped");
}

fn report_failed_task(done: Result<(), JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a probe check task panicked");
    }
}

/// Check one port of a run; the task that completes the run sends its results, holding its
/// permit until the channel takes them, so a full channel stalls the scheduler.
async fn check_port(run: Arc<Run>, index: usize, permit: OwnedSemaphorePermit, context: Arc<Context>) {
    let spec = &run.spec;
    let port = spec.ports[index];
    let started = Instant::now();
    let outcome = check(&spec.host, port, spec.timeout, &spec.approved).await;
    let result = PortResult {
        key: spec.key.clone(),
        host: spec.host.clone(),
        port,
        at_ms: context.clock.epoch_ms(started),
        due_ms: run.due_ms,
        outcome,
        shard: spec.shard,
        epoch: run.epoch,
    };
    run.results.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(result);
    if run.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
        return; // other ports of this run are still being checked
    }
    let batch: Vec<PortResult> =
        std::mem::take(&mut *run.results.lock().unwrap_or_else(PoisonError::into_inner)).into_iter().flatten().collect();
    if !run.live.removed.load(Ordering::Relaxed) && context.results.send(batch).await.is_err() {
        tracing::debug!(monitor = %spec.key, "the results receiver is gone; dropping results");
    }
    run.live.running.store(false, Ordering::Release);
    drop(permit);
}

#[cfg(test)]
mod tests;
