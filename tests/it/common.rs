//! Helpers shared by the integration tests: run the real `watchkeeper` binary with a hang guard.

// Not every test module uses every helper.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The binary cargo built for this test run.
pub fn bin_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_watchkeeper"))
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    /// `None` when the process was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together, for failure messages.
    pub fn output(&self) -> String {
        format!("exit code: {:?}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("output is not JSON ({e}):\n{}", self.output()))
    }
}

/// How long any one run may take before it counts as hung. A hang guard, not a benchmark.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Run `watchkeeper ARGS…`; kill it and panic if it has not finished within [`DEADLINE`].
pub fn run(args: &[&str]) -> Run {
    run_in(args, None)
}

/// Like [`run`], in the working directory `cwd` when given.
pub fn run_in(args: &[&str], cwd: Option<&Path>) -> Run {
    let mut command = Command::new(bin_path());
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let mut child = command.spawn().expect("spawn watchkeeper");
    // Drain both pipes on threads so a chatty child never blocks on a full pipe while we poll.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for watchkeeper") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`watchkeeper {}` did not finish within {DEADLINE:?}; killed", args.join(" "));
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run { code: status.code(), stdout: out.join().expect("stdout reader"), stderr: err.join().expect("stderr reader") }
}

/// `watchkeeper lint . EXTRA…` run inside DIR, so diagnostics show tree-relative paths.
pub fn lint(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["lint", "."];
    args.extend_from_slice(extra);
    run_in(&args, Some(dir))
}

/// Copy a directory tree (files and folders).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Run git in `dir` with a fixed identity; panic with its stderr on failure; return stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The CPUs the kernel lists in /proc/stat (`cpu0`, `cpu1`, …): the machine's count, which a CPU
/// quota or affinity mask (what `available_parallelism` reports) does not change.
pub fn proc_stat_cpu_count() -> usize {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count()
}
