//! A `watchkeeper agent` child process reporting this machine to a test serve as a server of
//! project `shop`, with the ingest key [`KEY`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::serve::Serve;

/// The ingest key of project `shop` in the tests' trees.
pub const KEY: &str = "ingest-key-for-tests";

/// A `watchkeeper agent` child process; killed on drop.
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    pub fn start(serve: &Serve, name: &str, work: &Path, extra: &[&str]) -> Agent {
        let log = work.join(format!("agent-{name}.log"));
        let log_file = fs::OpenOptions::new().create(true).append(true).open(&log).expect("agent log");
        let child = Command::new(env!("CARGO_BIN_EXE_watchkeeper"))
            .arg("agent")
            .args(["--server", &format!("http://127.0.0.1:{}", serve.port), "--project", "shop", "--name", name])
            .args(["--state-file", &work.join(format!("agent-{name}.state")).display().to_string()])
            .args(extra)
            .env("WATCHKEEPER_INGEST_KEY", KEY)
            .env("WATCHKEEPER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn watchkeeper agent");
        Agent { child: Some(child), log }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::support::sigterm(&child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
