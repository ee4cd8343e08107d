//! Host sampling on a thread of its own. Reading /proc and calling statvfs can block — a slow
//! /proc walk on a host with a huge process table, a filesystem that stopped answering — and the
//! agent's one async thread must go on pushing, running down-checks and answering shutdown
//! meanwhile. The loop asks for a sample and goes on; the report arrives as a message. While a
//! sample is still running, later ticks are skipped, so a stuck read never piles up work; one
//! that runs past its deadline is logged once, and again when sampling recovers.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::sampler::{HostError, HostSampler};
use crate::protocol::Report;

/// The sampler's thread and the messages to and from it.
pub struct Sampling {
    /// When to sample (epoch ms of the report); dropping it ends the thread after its sample.
    requests: std::sync::mpsc::Sender<i64>,
    results: mpsc::Receiver<Result<Report, HostError>>,
    /// Since when a sample has been running, if one is.
    running_since: Option<Instant>,
    /// Ticks skipped while the running sample had not finished.
    skipped: u64,
    /// The running sample passed its deadline and was logged as stalled.
    stalled: bool,
}

impl Sampling {
    /// Move `sampler` onto a thread of its own.
    pub fn start(mut sampler: HostSampler) -> std::io::Result<Sampling> {
        Sampling::with(move |at_ms| sampler.sample(std::time::Instant::now(), at_ms))
    }

    /// Run `sample` (given the report's time) on a thread of its own.
    fn with(mut sample: impl FnMut(i64) -> Result<Report, HostError> + Send + 'static) -> std::io::Result<Sampling> {
        let (requests, asked) = std::sync::mpsc::channel::<i64>();
        let (answers, results) = mpsc::channel(1);
        std::thread::Builder::new().name("wk-sampler".into()).spawn(move || {
            while let Ok(at_ms) = asked.recv() {
                if answers.blocking_send(sample(at_ms)).is_err() {
                    return;
                }
            }
        })?;
        Ok(Sampling { requests, results, running_since: None, skipped: 0, stalled: false })
    }

    /// Ask for a sample stamped `at_ms`. While the previous one runs, the tick is skipped; one
    /// running longer than `deadline` is reported (once) as stalled.
    pub fn request(&mut self, at_ms: i64, now: Instant, deadline: Duration) {
        if let Some(since) = self.running_since {
            self.skipped += 1;
            if !self.stalled && now.saturating_duration_since(since) >= deadline {
                self.stalled = true;
                tracing::warn!(
                    running_for = ?now.saturating_duration_since(since),
                    "sampling host metrics has not finished (a hung filesystem or a very busy host?); skipping samples until it does"
                );
            }
            return;
        }
        if self.requests.send(at_ms).is_ok() {
            self.running_since = Some(now);
        }
    }

    /// The next finished sample; pending forever once the sampler thread is gone.
    pub async fn next(&mut self) -> Result<Report, HostError> {
        match self.results.recv().await {
            Some(result) => {
                self.running_since = None;
                let skipped = std::mem::take(&mut self.skipped);
                if std::mem::take(&mut self.stalled) {
                    tracing::info!(skipped, "sampling host metrics finished again");
                }
                result
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(at_ms: i64) -> Result<Report, HostError> {
        Ok(Report {
            facts: Default::default(),
            metrics: Vec::new(),
            processes: Vec::new(),
            process_counts: Default::default(),
            skipped_mounts: Vec::new(),
            at_ms,
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stuck_sample_blocks_neither_the_loop_nor_a_second_sample() {
        // The first sample hangs until released, like statvfs on a dead NFS server.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let mut calls = 0;
        let mut sampling = Sampling::with(move |at_ms| {
            calls += 1;
            if calls == 1 {
                let _ = hold.recv();
            }
            report(at_ms)
        })
        .unwrap();
        let start = Instant::now();
        sampling.request(1_000, start, Duration::from_millis(50));
        // The one async thread is free: a timer fires while the sample hangs.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(tokio::time::timeout(Duration::from_millis(50), sampling.next()).await.is_err(), "still running");
        // Ticks meanwhile are skipped, and the stall is noticed past the deadline.
        sampling.request(2_000, start + Duration::from_millis(100), Duration::from_millis(50));
        sampling.request(3_000, start + Duration::from_millis(150), Duration::from_millis(50));
        assert_eq!(sampling.skipped, 2);
        assert!(sampling.stalled);
        release.send(()).unwrap();
        assert_eq!(sampling.next().await.unwrap().at_ms, 1_000, "the stuck sample finishes");
        assert!(!sampling.stalled && sampling.skipped == 0, "recovery is logged and the counts reset");
        sampling.request(4_000, start + Duration::from_millis(200), Duration::from_millis(50));
        assert_eq!(sampling.next().await.unwrap().at_ms, 4_000, "the next tick samples again");
    }
}
