//! The newest report of every server, in memory: what the server list and detail pages show
//! and what a fired alert's snapshot is taken from. The writer updates it after the store has
//! accepted a batch; serve fills it from the store's `server_states` at start, so a restart
//! shows the last known values at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::columns::Columns;
use crate::protocol::Report;

/// One server's newest report.
#[derive(Debug, Clone)]
pub struct ServerLive {
    /// When serve last received a report of the server (serve's clock; `no_data` and down-check
    /// `unknown` use this, so an agent's wrong clock cannot hide a silence).
    pub received_ms: i64,
    pub report: Arc<Report>,
    /// The report's figures as the pages show them, worked out when it arrived: every page
    /// and every refresh of the compound eye reads them, which would otherwise go over each
    /// report's values again and again.
    pub columns: Columns,
    /// What makes `report` the newest: its sample time, but never later than when serve
    /// received it, so a clock running ahead cannot keep a report on top of newer ones.
    newest_ms: i64,
}

/// server → newest report, of one project.
type ProjectServers = HashMap<String, Arc<ServerLive>>;

/// project → server → newest report. Cheap to clone (a handle).
#[derive(Debug, Clone, Default)]
pub struct LiveServers {
    inner: Arc<RwLock<HashMap<String, ProjectServers>>>,
}

impl LiveServers {
    /// The newest report of `server`, if it ever reported.
    pub fn get(&self, project: &str, server: &str) -> Option<Arc<ServerLive>> {
        self.read().get(project)?.get(server).cloned()
    }

    /// `read` over every server of `project` that reported, by name, without copying the map
    /// (reports keep arriving meanwhile; they wait for `read` to finish).
    pub fn with_project<T>(&self, project: &str, read: impl FnOnce(Option<&ProjectServers>) -> T) -> T {
        read(self.read().get(project))
    }

    /// Keep `report`, received at `received_ms`, as the server's newest unless a newer one is
    /// there already (a backlog arriving after fresher reports must not move the page back in
    /// time). A report dated ahead of its receipt (an agent's clock running fast) counts as
    /// sampled when it was received: the next report of a corrected clock replaces it.
    pub fn update(&self, project: &str, server: &str, report: Arc<Report>, received_ms: i64) {
        let newest_ms = report.at_ms.min(received_ms);
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let slot = map.entry(project.to_string()).or_default();
        match slot.get(server) {
            Some(old) if old.newest_ms > newest_ms => {
                let kept = ServerLive { received_ms: received_ms.max(old.received_ms), ..ServerLive::clone(old) };
                slot.insert(server.to_string(), Arc::new(kept));
            }
            _ => {
                let columns = Columns::of(&report);
                slot.insert(server.to_string(), Arc::new(ServerLive { received_ms, report, columns, newest_ms }));
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ProjectServers>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Facts;

    fn report(at_ms: i64) -> Arc<Report> {
        Arc::new(Report {
            facts: Facts::default(),
            metrics: vec![],
            processes: vec![],
            process_counts: Default::default(),
            skipped_mounts: vec![],
            at_ms,
        })
    }

    #[test]
    fn an_older_report_does_not_replace_a_newer_one_but_refreshes_liveness() {
        let live = LiveServers::default();
        live.update("shop", "web-01", report(2_000), 2_010);
        live.update("shop", "web-01", report(1_000), 2_020);
        let got = live.get("shop", "web-01").unwrap();
        assert_eq!((got.report.at_ms, got.received_ms), (2_000, 2_020));
        assert!(live.get("shop", "db-01").is_none());
        assert_eq!(live.with_project("shop", |servers| servers.map(HashMap::len)), Some(1));
        assert!(live.with_project("other", |servers| servers.is_none()));
    }

    #[test]
    fn a_report_from_a_clock_running_ahead_does_not_stay_newest_over_later_ones() {
        let live = LiveServers::default();
        // Dated 9 minutes ahead, received at 100 000: it counts as sampled at 100 000.
        live.update("shop", "web-01", report(100_000 + 540_000), 100_000);
        // The clock is corrected: the next report, sampled and received 5 s later, is newer.
        live.update("shop", "web-01", report(105_000), 105_010);
        assert_eq!(live.get("shop", "web-01").unwrap().report.at_ms, 105_000);
        // A backlog report sampled before it still does not replace it.
        live.update("shop", "web-01", report(104_000), 106_000);
        let got = live.get("shop", "web-01").unwrap();
        assert_eq!((got.report.at_ms, got.received_ms), (105_000, 106_000));
    }
}
