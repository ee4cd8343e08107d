//! The newest report of every server, in memory: what the server list and detail pages show
//! and what a fired alert's snapshot is taken from. The writer updates it after the store has
//! accepted a batch; serve fills it from the store's `server_states` at start, so a restart
//! shows the last known values at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::protocol::Report;

/// One server's newest report.
#[derive(Debug, Clone)]
pub struct ServerLive {
    /// When serve received it (serve's clock; `no_data` and down-check `unknown` use this, so an
    /// agent's wrong clock cannot hide a silence).
    pub received_ms: i64,
    pub report: Arc<Report>,
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

    /// Every server of `project` that reported, by name.
    pub fn project(&self, project: &str) -> ProjectServers {
        self.read().get(project).cloned().unwrap_or_default()
    }

    /// Keep `report` as the server's newest unless a newer one is there already (a backlog
    /// arriving after fresher reports must not move the page back in time).
    pub fn update(&self, project: &str, server: &str, report: Arc<Report>, received_ms: i64) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let slot = map.entry(project.to_string()).or_default();
        match slot.get(server) {
            Some(old) if old.report.at_ms > report.at_ms => {
                let kept = ServerLive { received_ms: received_ms.max(old.received_ms), report: Arc::clone(&old.report) };
                slot.insert(server.to_string(), Arc::new(kept));
            }
            _ => {
                slot.insert(server.to_string(), Arc::new(ServerLive { received_ms, report }));
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
        live.update("shop", "web-01", report(2_000), 10);
        live.update("shop", "web-01", report(1_000), 20);
        let got = live.get("shop", "web-01").unwrap();
        assert_eq!((got.report.at_ms, got.received_ms), (2_000, 20));
        assert!(live.get("shop", "db-01").is_none());
        assert_eq!(live.project("shop").len(), 1);
        assert!(live.project("other").is_empty());
    }
}
