//! A real SMTP server: aiosmtpd with its Mailbox handler, delivering into a Maildir, run by
//! `smtp_server.py` beside this file — plain, STARTTLS or implicit TLS, with or without AUTH; a
//! few recipients get the refusals their names ask for (`rcpt-550@`, `data-550@`, `busy-451@`;
//! see the script). The Python is `$WATCHKEEPER_TEST_PYTHON` (`scripts/test.sh` sets it to one
//! that imports aiosmtpd), else `python3`.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::tls::TestCa;

/// How long the server may take to accept connections after starting.
const STARTUP: Duration = Duration::from_secs(15);

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/smtp_server.py");

/// aiosmtpd on `127.0.0.1:port`; killed on drop. Can be stopped and started again on the same
/// port and Maildir, to simulate an outage.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The script's TLS and AUTH arguments.
    security: Vec<String>,
}

/// One delivered message, parsed by Python's `email` package (headers decoded).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub content_type: String,
    /// The plain-text part (the whole body of a single-part message).
    pub body: String,
    /// The HTML part of a multipart message.
    pub html: Option<String>,
    /// File name and text of each attachment.
    pub attachments: Vec<(String, String)>,
    pub disposition_notification_to: Option<String>,
}

impl SmtpServer {
    /// Start on a free port and wait until it accepts connections.
    pub fn start() -> SmtpServer {
        let mut server = SmtpServer::reserve();
        server.resume();
        server
    }

    /// A server that is not running yet (`resume` starts it): its port refuses connections.
    pub fn reserve() -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir");
        SmtpServer { port: super::free_port(), dir, child: None, security: Vec::new() }
    }

    /// Start with TLS — `tls` is `starttls` (required before anything else) or `tls` (the whole
    /// connection) — on `ca`'s server certificate, accepting mail only after AUTH as `user`
    /// with `password`.
    pub fn start_secure(tls: &str, ca: &TestCa, user: &str, password: &str) -> SmtpServer {
        let mut server = SmtpServer::reserve();
        let (cert, key) = (ca.server_cert().display().to_string(), ca.server_key().display().to_string());
        server.security = ["--tls", tls, "--cert", &cert, "--key", &key, "--user", user, "--password", password].map(String::from).to_vec();
        server.resume();
        server
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    /// Start (again) on the same port and Maildir, and wait until it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "SMTP server already running");
        let log = File::create(self.dir.path().join("aiosmtpd.log")).expect("log file");
        let mut child = Command::new(python())
            .args([SCRIPT, "--port", &self.port.to_string(), "--maildir"])
            .arg(self.maildir())
            .args(&self.security)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {SCRIPT}: {e} (run the tests with `bash scripts/test.sh`)", python().to_string_lossy()));
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait for aiosmtpd") {
                panic!(
                    "aiosmtpd exited with {status} before accepting connections (run the tests with `bash scripts/test.sh`):\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if start.elapsed() > STARTUP {
                let _ = child.kill();
                let _ = child.wait();
                panic!("aiosmtpd did not accept connections within {STARTUP:?}:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(25));
        }
        self.child = Some(child);
    }

    /// Kill the server (an outage); its port refuses connections until `resume`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aiosmtpd.log")).unwrap_or_default()
    }

    /// The files of delivered messages, oldest first.
    pub fn message_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.maildir().join("new")) else { return Vec::new() };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
            .collect();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }

    /// Every delivered message, parsed.
    pub fn messages(&self) -> Vec<Mail> {
        self.message_files().iter().map(|p| parse(p)).collect()
    }

    /// Wait until at least `n` messages were delivered; panic after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let start = Instant::now();
        while self.message_files().len() < n {
            if start.elapsed() > timeout {
                panic!("expected {n} messages within {timeout:?}, got {}:\n{}", self.message_files().len(), self.log());
            }
            thread::sleep(Duration::from_millis(25));
        }
        self.messages()
    }
}

/// The Python that runs aiosmtpd and parses the messages.
fn python() -> std::ffi::OsString {
    std::env::var_os("WATCHKEEPER_TEST_PYTHON").unwrap_or_else(|| "python3".into())
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parse a delivered message with Python's standard `email` package: a real MIME decoder,
/// so encoded-word subjects and transfer encodings are checked independently of lettre.
fn parse(path: &Path) -> Mail {
    const SCRIPT: &str = r#"
import email, email.policy, json, sys
with open(sys.argv[1], "rb") as f:
    m = email.message_from_binary_file(f, policy=email.policy.default)
plain, html = m.get_body(preferencelist=("plain",)), m.get_body(preferencelist=("html",))
dnt = m["Disposition-Notification-To"]
print(json.dumps({
    "from": str(m["From"]), "to": str(m["To"]), "subject": str(m["Subject"]),
    "message_id": str(m["Message-ID"]), "content_type": m.get_content_type(),
    "body": m.get_body(preferencelist=("plain",)).get_content(),
    "html": (lambda part: part.get_content() if part is not None else None)(m.get_body(preferencelist=("html",))),
    "attachments": [[a.get_filename(), a.get_content()] for a in m.iter_attachments()],
    "disposition_notification_to": (lambda h: str(h) if h is not None else None)(m["Disposition-Notification-To"]),
}))
"#;
    let out = Command::new(python()).args(["-c", SCRIPT]).arg(path).output().expect("run python");
    assert!(out.status.success(), "python could not parse {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("parser output is JSON")
}
