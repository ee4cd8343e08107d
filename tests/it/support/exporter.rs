//! Debian's real node_exporter (`prometheus-node-exporter`) on a free loopback port, for the
//! node_exporter mapping and scraper tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs it; the tests that need it skip (saying so) when it is missing.
pub const BINARY: &str = "/usr/bin/prometheus-node-exporter";

/// Whether [`BINARY`] is installed; prints why a test skips when not.
pub fn installed() -> bool {
    let installed = std::path::Path::new(BINARY).exists();
    if !installed {
        eprintln!("SKIPPED: {BINARY} is not installed (Debian package prometheus-node-exporter)");
    }
    installed
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

/// Start the exporter on a free port and wait until it answers (a few tries: the port is picked
/// by binding 127.0.0.1:0 and releasing it, so another process may take it first).
pub async fn start(client: &reqwest::Client) -> Exporter {
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = Command::new(BINARY)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus-node-exporter");
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
    panic!("prometheus-node-exporter did not start answering on 127.0.0.1");
}
