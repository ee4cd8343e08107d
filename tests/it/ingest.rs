//! The ingest endpoint against hostile and careless clients, on the real serve binary over
//! loopback: the key is checked before the body is read, and what a report says is checked
//! before anything is stored.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::agent::KEY;
use crate::support::serve::{OPERATOR, Serve};

/// The ingest key of project `other`.
const OTHER_KEY: &str = "other-project-ingest-key";

/// Two projects with a server each and their own ingest keys; serve on it, once applied.
fn start(work: &Path, extra: &[&str]) -> Serve {
    let dir = work.join("tree");
    fs::create_dir_all(&dir).unwrap();
    let operator = watchkeeper::token::sha256_hex(OPERATOR);
    let (shop, other) = (watchkeeper::token::sha256_hex(KEY), watchkeeper::token::sha256_hex(OTHER_KEY));
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {operator}\n---\n\
             kind: Project\nname: shop\nmembers: [{{ user: alice@example.com, role: admin }}]\ningest_key_sha256: {shop}\n---\n\
             kind: Server\nname: web-01\nproject: shop\nhost: 127.0.0.1\n---\n\
             kind: Project\nname: other\nmembers: [{{ user: alice@example.com, role: admin }}]\ningest_key_sha256: {other}\n---\n\
             kind: Server\nname: app-01\nproject: other\nhost: 127.0.0.1\n"
        ),
    )
    .unwrap();
    let mut args =
        vec!["--config".to_string(), dir.display().to_string(), "--db".into(), format!("sqlite://{}", work.join("wk.db").display())];
    args.extend(extra.iter().map(|a| a.to_string()));
    crate::support::install_crypto();
    let serve = Serve::start(&args, &[], &work.join("serve.log"));
    serve.wait_until("the tree is applied", Duration::from_secs(30), || serve.applied().is_some());
    serve
}

/// One report of `server` in `project` with a cpu.usage of 12.5, sampled now.
fn report(project: &str, server: &str) -> Value {
    json!({
        "project": project,
        "server": server,
        "reports": [{
            "facts": { "os": "Debian", "kernel": "6.1", "cpu_vendor": "x", "cpu_model": "y", "cpu_count": 2,
                       "ram_total_bytes": 1024, "boot_time": 1, "uptime_secs": 1, "ips": [] },
            "metrics": [{ "name": "cpu.usage", "value": 12.5 }],
            "processes": [], "process_counts": {}, "at_ms": watchkeeper::clock::now_ms(),
        }],
    })
}

/// Connect and send only the request head of a POST to the ingest endpoint announcing
/// `content_length` bytes of body; the caller decides whether any body follows.
fn send_head(serve: &Serve, key: Option<&str>, content_length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", serve.port)).expect("connect to serve");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    write!(
        stream,
        "POST /ingest/v1/report HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {content_length}\r\n\r\n"
    )
    .unwrap();
    stream
}

/// Read one response: its status and body (by `Content-Length`), without waiting for the
/// connection to close.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                .unwrap_or(0);
            if body.len() >= length {
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return (status, body[..length].to_string());
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!("serve closed the connection before a whole response: {text:?}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("no response from serve ({e}); received so far: {text:?}"),
        }
    }
}

#[test]
fn a_bad_or_missing_ingest_key_is_refused_before_the_body_is_read() {
    let work = tempfile::tempdir().unwrap();
    let serve = start(work.path(), &[]);

    // The head announces 8 MB that never come: the 401 arrives anyway, so the body was not
    // waited for (serve would otherwise wait for it until the client gives up).
    let big = watchkeeper::protocol::MAX_BODY_BYTES - 1;
    for key in [Some("not-a-key-of-any-project"), None] {
        let mut stream = send_head(&serve, key, big);
        let (status, body) = read_response(&mut stream);
        assert_eq!(status, 401, "key {key:?}: {body}");
        let expected = if key.is_some() { "not valid for any project" } else { "missing ingest key" };
        assert!(body.contains(expected), "key {key:?}: {body}");
    }
    // A huge body trickling in slowly: refused after its first bytes, the rest never read.
    let mut stream = send_head(&serve, Some("not-a-key-of-any-project"), big);
    stream.write_all(b"{\"project\": \"shop\", ").unwrap();
    let (status, _) = read_response(&mut stream);
    assert_eq!(status, 401);

    // A valid key of another project does not let a report into `shop`.
    let body = report("shop", "web-01").to_string();
    let mut stream = send_head(&serve, Some(OTHER_KEY), body.len());
    stream.write_all(body.as_bytes()).unwrap();
    let (status, text) = read_response(&mut stream);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("not valid for project `shop`"), "{text}");
    assert!(serve.get("/api/v1/projects/shop/servers/web-01")["facts"].is_null(), "nothing of shop was stored");

    // A valid key: serve reads the body that follows the head and stores the report.
    let body = report("shop", "web-01").to_string();
    let mut stream = send_head(&serve, Some(KEY), body.len());
    std::thread::sleep(Duration::from_millis(200));
    stream.write_all(body.as_bytes()).unwrap();
    let (status, text) = read_response(&mut stream);
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["accepted"], 1);
    assert_eq!(serve.get("/api/v1/projects/shop/servers/web-01")["facts"]["os"], "Debian");
    // And the other project's key works for its own project.
    let (status, text) = serve.request(
        "POST",
        "/ingest/v1/report",
        &[("Authorization", &format!("Bearer {OTHER_KEY}")), ("Content-Type", "application/json")],
        report("other", "app-01").to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(serve.metric("watchkeeper_ingest_rejected_total{reason=\"unauthorized\"}"), Some(4.0));
}
