//! The open-files budget: the prober, the store and the configuration reader keep file
//! descriptors of their own, and the HTTP listener gets only what is left, so no number of
//! clients can make a check fail for want of a socket.

use super::http::HttpLimits;

/// What the configuration reader may hold at once: the directory watcher's inotify instance and
/// its poll, the files and directories of a walk, a git child's pipes.
const CONFIG_READER: u64 = 32;

/// Everything else: standard streams, the runtime's own, the listener and a connection being
/// refused, outgoing mail, webhooks and node_exporter scrapes.
const MARGIN: u64 = 96;

/// Fewer HTTP connections than this are not worth serving; a limit that leaves less gets this
/// many anyway, with a warning.
const MIN_HTTP_CONNECTIONS: u64 = 16;

/// Where serve's open files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The open-files limit (soft `RLIMIT_NOFILE`).
    pub limit: u64,
    /// Checks in flight, one socket each.
    pub probes: u64,
    /// The store's pool at its largest.
    pub store: u64,
    pub config_reader: u64,
    pub margin: u64,
}

impl Budget {
    pub fn new(limit: u64, max_in_flight: usize, store: u64) -> Budget {
        Budget { limit, probes: max_in_flight as u64, store, config_reader: CONFIG_READER, margin: MARGIN }
    }

    /// Descriptors kept from the HTTP listener.
    pub fn reserved(&self) -> u64 {
        self.probes + self.store + self.config_reader + self.margin
    }

    /// `wanted` with its connection caps lowered to what the limit leaves after the reserve;
    /// `true` when they had to be.
    pub fn fit(&self, wanted: HttpLimits) -> (HttpLimits, bool) {
        let room = self.limit.saturating_sub(self.reserved()).max(MIN_HTTP_CONNECTIONS);
        let max_connections = wanted.max_connections.min(usize::try_from(room).unwrap_or(usize::MAX));
        let fitted =
            HttpLimits { max_connections, max_connections_per_client: wanted.max_connections_per_client.min(max_connections), ..wanted };
        (fitted, max_connections < wanted.max_connections)
    }
}

/// Lift the soft open-files limit to the hard one (every probe in flight and every connection
/// holds a descriptor); the soft limit after it, or `None` where it cannot be read.
#[cfg(target_os = "linux")]
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let wanted = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                limit = wanted;
            }
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(target_os = "linux"))]
pub fn raise_open_files_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_caps_shrink_to_what_the_limit_leaves_after_probes_store_and_reader() {
        let wanted = HttpLimits::default();
        // 20 000 descriptors: room for everything.
        let (fitted, lowered) = Budget::new(20_000, 256, 30).fit(wanted);
        assert_eq!((fitted, lowered), (wanted, false));
        // 1 024 (a common default): 256 probes + 30 store + 32 reader + 96 margin leave 610.
        let budget = Budget::new(1024, 256, 30);
        assert_eq!(budget.reserved(), 414);
        let (fitted, lowered) = budget.fit(wanted);
        assert!(lowered);
        assert_eq!((fitted.max_connections, fitted.max_connections_per_client), (610, 128));
        assert_eq!(fitted.header_timeout, wanted.header_timeout);
        // A limit below the reserve still serves a few, and one client never gets more than all.
        let (fitted, lowered) = Budget::new(256, 256, 30).fit(wanted);
        assert!(lowered);
        assert_eq!((fitted.max_connections, fitted.max_connections_per_client), (16, 16));
        // No limit at all.
        assert_eq!(Budget::new(u64::MAX, 256, 30).fit(wanted), (wanted, false));
    }
}
