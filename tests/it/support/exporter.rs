//! Debian's real node_exporter (`prometheus-node-exporter`) on a free loopback port, for the
//! node_exporter mapping and scraper tests.
//!
//! A test that needs it fails when it is not installed (`scripts/test.sh` installs it), unless
//! [`SKIP_ENV`] is `1`: then the test says SKIPPED and passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `WATCHKEEPER_SKIP_NODE_EXPORTER=1` skips, rather than fails, the tests that need node_exporter,
/// for machines where it cannot be installed.
pub const SKIP_ENV: &str = "WATCHKEEPER_SKIP_NODE_EXPORTER";

/// The names it goes by on PATH: Debian's, and that of the upstream release.
const NAMES: [&str; 2] = ["prometheus-node-exporter", "node_exporter"];

/// The installed exporter, for a test that needs it. `None` (saying so) when it is missing and
/// [`SKIP_ENV`] is `1`; the test should return. Panics when it is missing otherwise.
pub fn required() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).flat_map(|dir| NAMES.map(|name| dir.join(name))).find(|p| p.is_file());
    if found.is_none() {
        let skip = std::env::var(SKIP_ENV).is_ok_and(|v| v == "1");
        assert!(
            skip,
            "node_exporter is not installed (no {} on PATH): install Debian's prometheus-node-exporter \
             (`bash scripts/test.sh` does, as root), or set {SKIP_ENV}=1 to skip the tests that need it",
            NAMES.join(" or ")
        );
        eprintln!("SKIPPED: node_exporter is not installed and {SKIP_ENV}=1");
    }
    found
}

/// A running exporter; killed on drop.
pub struct Exporter {
    child: Child,
    pub url: String,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `binary` (from [`required`]) on a free port and wait until it answers (a few tries: the
/// port is free when picked, but another process may take it before the exporter binds it).
pub async fn start(client: &reqwest::Client, binary: &Path) -> Exporter {
    for _ in 0..3 {
        let port = super::free_port();
        let child = Command::new(binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let mut exporter = Exporter { child, url: format!("http://127.0.0.1:{port}/metrics") };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if exporter.child.try_wait().expect("exporter status").is_some() {
                break;
            }
            if client.get(&exporter.url).send().await.is_ok_and(|r| r.status().is_success()) {
                return exporter;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("{} did not start answering on 127.0.0.1", binary.display());
}
