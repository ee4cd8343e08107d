//! Pieces the benchmark harnesses share: building the release binary, running `watchkeeper
//! serve` as a child process and talking to its status API, loopback listeners, and summaries.
//!
//! Everything here only ever talks to 127.0.0.1. Each bench uses a different subset of it.
#![allow(dead_code)]

pub mod fleet;

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A whole number from the environment (`_` separators allowed), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().replace('_', "").parse().unwrap_or_else(|_| panic!("{name}={v}: not a whole number")),
        Err(_) => default,
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "OVER TARGET" }
}

/// Min, median and max of some durations.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
}

impl Spread {
    pub fn of(samples: &[Duration]) -> Spread {
        assert!(!samples.is_empty(), "no samples");
        let mut sorted = samples.to_vec();
        sorted.sort();
        Spread { min: sorted[0], median: sorted[sorted.len() / 2], max: sorted[sorted.len() - 1] }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "min {} / median {} / max {}", ms(self.min), ms(self.median), ms(self.max))
    }
}

/// Build the `watchkeeper` binary in the release profile and return its path, as cargo
/// reports it (so `CARGO_TARGET_DIR` and the like are honoured). `WK_BENCH_BIN` names a
/// prebuilt binary instead.
pub fn release_binary() -> PathBuf {
    match std::env::var_os("WK_BENCH_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => build_release_binary(),
    }
}

/// `cargo build --release --bin watchkeeper`, and the path of the executable it made.
pub fn build_release_binary() -> PathBuf {
    // Cargo sets CARGO for the processes it runs; fall back to the one that compiled us, then PATH.
    let cargo = std::env::var_os("CARGO").or_else(|| option_env!("CARGO").map(Into::into)).unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let started = Instant::now();
    let output = Command::new(&cargo)
        .args(["build", "--release", "--bin", "watchkeeper", "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(output.status.success(), "cargo build --release --bin watchkeeper failed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let bin = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "watchkeeper")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no `watchkeeper` executable");
    println!("built release binary in {}", ms(started.elapsed()));
    bin
}

/// Raise the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// A TCP port on 127.0.0.1 that is open while this lives: a thread accepts and drops every
/// connection. Closing it makes the port refuse connections; [`Listener::open`] on the same port
/// opens it again.
pub struct Listener {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Listener {
    /// Listen on `port` (0: any free port).
    pub fn open(port: u16) -> Listener {
        let socket = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        let port = socket.local_addr().expect("listener address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for conn in socket.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                drop(conn);
            }
        });
        Listener { port, stop, thread: Some(thread) }
    }

    /// Stop listening; the port refuses connections once this returns.
    pub fn close(mut self) -> u16 {
        self.shutdown();
        self.port
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)); // wake the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One HTTP/1.1 GET to 127.0.0.1:`port` (a fresh connection, `Connection: close`), with a bearer
/// token if given: the status code and the body (de-chunked).
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.as_deref().map(|a| ("Authorization", a)).into_iter().collect();
    http_get_with(port, path, &headers).map(|(status, _, body)| (status, body))
}

/// [`http_get`] with any request headers (a dashboard session's `Cookie`): the status, the
/// size of the answer's head (status line and headers) in bytes, and the body.
pub fn http_get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> std::io::Result<(u16, usize, String)> {
    let mut stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let headers: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Ok((status, head.len() + 4, body))
}

/// [`http_get`] of a JSON document that must answer 200.
pub fn get_json(port: u16, path: &str, token: Option<&str>) -> Result<serde_json::Value, String> {
    let (status, body) = http_get(port, path, token).map_err(|e| format!("GET {path}: {e}"))?;
    if status != 200 {
        return Err(format!("GET {path}: status {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: not JSON ({e})"))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].strip_prefix("\r\n").unwrap_or(&tail[n..]);
    }
    out
}

/// `watchkeeper serve` as a child process listening on 127.0.0.1; its log (stderr) goes to a
/// file. Killed on drop.
pub struct Serve {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    pub token: String,
}

impl Serve {
    /// Start `bin serve ARGS --listen 127.0.0.1:PORT` with `token` as the operator token, and
    /// wait until its API answers.
    pub fn start(bin: &Path, args: &[String], token: &str, log: &Path) -> Serve {
        let port = free_port();
        let log_file = fs::OpenOptions::new().create(true).append(true).open(log).expect("serve log file");
        let child = Command::new(bin)
            .arg("serve")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("WATCHKEEPER_TOKEN", token)
            .env("WATCHKEEPER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} serve: {e}", bin.display()));
        let serve = Serve { child: Some(child), port, log: log.to_path_buf(), token: token.to_string() };
        serve.wait_until("the status API answers", Duration::from_secs(60), || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok());
        serve
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll `check` every 20 ms; panic with serve's log after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !check() {
            if start.elapsed() > timeout {
                let log = self.log_text();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!("timed out after {timeout:?} waiting until {what}\n--- serve log (last lines) ---\n{}", tail.join("\n"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// GET a JSON document from its API with the operator token; `Null` when it does not answer 200.
    pub fn get(&self, path: &str) -> serde_json::Value {
        get_json(self.port, path, Some(&self.token)).unwrap_or(serde_json::Value::Null)
    }

    /// The applied revision, per `/api/v1/status`.
    pub fn applied(&self) -> Option<String> {
        self.get("/api/v1/status")["applied"]["revision"].as_str().map(str::to_string)
    }

    /// Stop it (SIGKILL) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait up to 30 s for it to exit (SIGKILL after that); the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                return child.wait().ok();
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// From `/proc/<pid>/status`: resident set now and its high-water mark, KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|n| n.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// From `/proc/<pid>/stat`: user + system CPU time so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are space separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `) `.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Run `bench` with the URL of a throwaway PostgreSQL database, `wk_bench_<what>_<pid>`, created on
/// the server at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and dropped
/// after. When that server cannot be reached, say so and skip.
pub async fn on_throwaway_postgres<F: std::future::Future<Output = ()>>(what: &str, bench: impl FnOnce(String) -> F) {
    use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
    let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let name = format!("wk_bench_{what}_{}", std::process::id());
    let mut admin = match PgConnection::connect(&admin_url).await {
        Ok(admin) => admin,
        Err(e) => return println!("\nPostgreSQL at {admin_url}: {e}; skipped"),
    };
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create the bench database");
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("DATABASE_URL without a database: {admin_url}"),
    };
    bench(url).await;
    admin.execute(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).await.expect("drop the bench database");
}
