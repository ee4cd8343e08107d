//! With replicas on PostgreSQL, each replica follows the reports the others stored: an agent
//! reports to whichever replica a load balancer picks, and every replica must show the same
//! server list and server pages, and the shard's holder must decide on the report.
//!
//! Every second it asks the store which servers reported lately (by the reports' own time; a
//! small read), reads in one query the newest report of each server newer than this replica's
//! [`LiveServers`] has, puts it there, and hands it to the alert engine, which decides on it
//! when this replica holds the server's shard and has not decided it yet. Reports this replica
//! received itself are in its live view already and are not read again. Only a server's newest
//! report travels (log hits and down-check results stay with the replica that received them).
//! A single serve on SQLite receives every report itself and runs no follower.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::live::LiveServers;
use super::writer::HostInput;
use crate::clock::now_ms;
use crate::store::Store;

/// How often the store is asked.
const EVERY: Duration = Duration::from_secs(1);

/// Reports older than this (by their own time) are not looked for in the store any more.
const WINDOW_MS: i64 = 10 * 60_000;

/// Follow the store until `cancel` (or until the engine is gone).
pub async fn run(store: Store, live: LiveServers, engine: mpsc::Sender<HostInput>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match once(&store, &live, &engine).await {
            Ok(true) => failing = false,
            Ok(false) => return, // the engine stopped: serve is stopping
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the reports other replicas stored; will try again every second");
                }
                failing = true;
            }
        }
    }
}

/// One look at the store. `Ok(false)` when the engine is gone.
async fn once(store: &Store, live: &LiveServers, engine: &mpsc::Sender<HostInput>) -> crate::store::Result<bool> {
    let now = now_ms();
    let newer: Vec<(String, String)> = store
        .servers_reported_since(now - WINDOW_MS)
        .await?
        .into_iter()
        .filter(|(project, server, at_ms)| live.get(project, server).is_none_or(|l| l.report.at_ms < *at_ms))
        .map(|(project, server, _)| (project, server))
        .collect();
    if newer.is_empty() {
        return Ok(true);
    }
    for state in store.server_states_of(&newer).await? {
        let report = Arc::new(state.report);
        live.update(&state.project, &state.server, Arc::clone(&report), now);
        let input = HostInput {
            project: state.project,
            server: state.server,
            reports: vec![report],
            checks: Vec::new(),
            log_hits: Vec::new(),
            received_ms: now,
        };
        if engine.send(input).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}
