//! A `watchkeeper serve` child process and a TCP port that can be opened and closed, for the
//! end-to-end tests.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::free_port;

/// The operator token every test serve runs with.
pub const OPERATOR: &str = "operator-token-for-tests";

/// A TCP port that is open while the listener runs: accepts and drops every connection.
pub struct Listener {
    pub port: u16,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Listener {
    pub fn open(port: u16) -> Listener {
        let socket = TcpListener::bind(("127.0.0.1", port)).expect("bind listener");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&accepted));
        let thread = thread::spawn(move || {
            for conn in socket.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                count.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Listener { port, accepted, stop, thread: Some(thread) }
    }

    /// Connections accepted so far (checks of the port, for a port monitor).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn close(mut self) -> u16 {
        self.shutdown();
        self.port
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
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

/// A `watchkeeper serve` child process; killed on drop. Its log is kept for failure messages.
pub struct Serve {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    /// The address this test's own requests come from (127.0.0.1 unless a test floods from it).
    pub client: Ipv4Addr,
}

impl Serve {
    pub fn start(args: &[String], env: &[(&str, String)], log: &Path) -> Serve {
        Serve::start_on(args, env, log, free_port())
    }

    /// Start on a given port: a restart where agents keep pushing to the same address.
    pub fn start_on(args: &[String], env: &[(&str, String)], log: &Path, port: u16) -> Serve {
        Serve::spawn(args, env, log, port, None, None)
    }

    /// Start with an open-files limit of `open_files` (soft and hard, so serve cannot raise it).
    pub fn start_with_open_files(args: &[String], env: &[(&str, String)], log: &Path, open_files: u64) -> Serve {
        Serve::spawn(args, env, log, free_port(), None, Some(open_files))
    }

    /// Start in the working directory `cwd`, where serve keeps what it keeps by default.
    pub fn start_in(args: &[String], env: &[(&str, String)], log: &Path, cwd: &Path) -> Serve {
        Serve::spawn(args, env, log, free_port(), Some(cwd), None)
    }

    /// Run `program ARGS` exactly, in `cwd`, with only `env` and systemd's default PATH — as a
    /// service manager starts it — and wait until port `port` answers.
    pub fn run_exact(program: &str, args: &[String], env: &BTreeMap<String, String>, cwd: &Path, log: &Path, port: u16) -> Serve {
        let log_file = fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn the service");
        let serve = Serve { child: Some(child), port, log: log.to_path_buf(), client: Ipv4Addr::LOCALHOST };
        serve.wait_until("the API answers", Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        serve
    }

    fn spawn(args: &[String], env: &[(&str, String)], log: &Path, port: u16, cwd: Option<&Path>, open_files: Option<u64>) -> Serve {
        let log_file = fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_watchkeeper"));
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        // Only what a test gives: not a database named in the environment that runs the tests.
        command.env_remove("WATCHKEEPER_DB");
        command
            .arg("serve")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("WATCHKEEPER_TOKEN", OPERATOR)
            .env("WATCHKEEPER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            command.env(k, v);
        }
        if let Some(n) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child's own limit.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
                });
            }
        }
        let child = command.spawn().expect("spawn watchkeeper serve");
        let serve = Serve { child: Some(child), port, log: log.to_path_buf(), client: Ipv4Addr::LOCALHOST };
        serve.wait_until("the API answers", Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        serve
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting until {what}\n--- serve log ---\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// A connection to serve from [`Serve::client`].
    pub fn connect(&self) -> std::io::Result<TcpStream> {
        connect_from(self.client, self.port)
    }

    pub fn get(&self, path: &str) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut stream = self.connect().expect("connect to serve");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {OPERATOR}\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(head.starts_with("HTTP/1.1 200"), "GET {url}: {head}\n{body}");
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
    }

    pub fn text(&self, path: &str) -> String {
        let mut stream = self.connect().expect("connect to serve");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// The text of `/metrics`.
    pub fn metrics_text(&self) -> String {
        let response = self.text("/metrics");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() }
    }

    /// The value of one sample of `/metrics`, e.g. `watchkeeper_reconcile_rejected_total`, or
    /// `None` when serve does not show it.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let prefix = format!("{sample} ");
        self.text("/metrics").lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().expect("a number"))
    }

    pub fn applied(&self) -> Option<String> {
        self.get("/api/v1/status")["applied"]["revision"].as_str().map(str::to_string)
    }

    pub fn firing(&self) -> Vec<Value> {
        self.get("/api/v1/projects/shop/alerts?status=firing")["alerts"].as_array().cloned().unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and the exit status once it stopped.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        super::sigterm(&child);
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("serve did not stop within 20 s of SIGTERM\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

impl Serve {
    /// POST `body` to the ingest endpoint with ingest key `key`; the status and the body.
    pub fn ingest(&self, key: &str, body: &Value) -> (u16, String) {
        let auth = format!("Bearer {key}");
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        self.request("POST", "/ingest/v1/report", &headers, body.to_string().as_bytes())
    }

    /// One HTTP request; the status and the (de-chunked) body, whatever the status.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let mut stream = self.connect().expect("connect to serve");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        // serve may answer (413) and close before reading a large body.
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response).to_string();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
        (status, body)
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from` (any of 127.0.0.0/8).
pub fn connect_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())?;
    Ok(socket.into())
}
