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
    let (status, text) = serve.ingest(OTHER_KEY, &report("other", "app-01"));
    assert_eq!(status, 200, "{text}");
    assert_eq!(serve.metric("watchkeeper_ingest_rejected_total{reason=\"unauthorized\"}"), Some(4.0));
}

#[test]
fn impossible_values_and_oversized_reports_get_a_400_naming_them_and_store_nothing() {
    let work = tempfile::tempdir().unwrap();
    let serve = start(work.path(), &[]);
    let now = watchkeeper::clock::now_ms();
    let long = |n: usize| "x".repeat(n);
    let many_names: serde_json::Map<String, Value> = (0..4_097).map(|i| (format!("p{i}"), json!(1))).collect();
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change, String)> = vec![
        ("negative percent", Box::new(|r| r["metrics"][0]["value"] = json!(-50.0)), "metric `cpu.usage` is -50; it must be 0–100 %".into()),
        ("huge percent", Box::new(|r| r["metrics"][0]["value"] = json!(1.7e308)), "metric `cpu.usage` is 170000000000000000".into()),
        (
            "negative rate",
            Box::new(|r| r["metrics"] = json!([{ "name": "network.in_bps", "subject": "eth0", "value": -1.0 }])),
            "metric `network.in_bps` of `eth0` is -1; it must be 0 or more bit/s".into(),
        ),
        (
            "long subject",
            Box::new(move |r| r["metrics"] = json!([{ "name": "disk.usage", "subject": long(1_025), "value": 1.0 }])),
            "1025 bytes long; at most 1024".into(),
        ),
        ("too far ahead", Box::new(move |r| r["at_ms"] = json!(now + 11 * 60_000)), "10 min ahead".into()),
        (
            "process_counts",
            Box::new(move |r| r["process_counts"] = Value::Object(many_names.clone())),
            "4097 process_counts entries in reports[0]; at most 4096".into(),
        ),
        (
            "facts.os",
            Box::new(move |r| r["facts"]["os"] = json!(long(7 << 20))),
            "reports[0].facts.os is 7340032 bytes long; at most 256".into(),
        ),
        (
            "process name",
            Box::new(move |r| {
                r["processes"] = json!([{ "pid": 1, "name": long(100_000), "user": "root", "cpu": 1.0, "memory": 1.0, "rss_bytes": 1 }])
            }),
            "reports[0].processes[0].name is 100000 bytes long; at most 256".into(),
        ),
        (
            "process memory",
            Box::new(|r| {
                r["processes"] = json!([{ "pid": 1, "name": "java", "user": "root", "cpu": 1.0, "memory": 150.0, "rss_bytes": 1 }])
            }),
            "processes[0] (`java`): cpu Some(1.0) or memory 150 is not a share".into(),
        ),
        ("ips", Box::new(|r| r["facts"]["ips"] = json!(vec!["192.0.2.1"; 257])), "257 facts.ips in reports[0]; at most 256".into()),
    ];
    for (what, change, expected) in &cases {
        let mut body = report("shop", "web-01");
        change(&mut body["reports"][0]);
        let (status, text) = serve.ingest(KEY, &body);
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.contains(expected.as_str()), "{what}: expected {expected:?} in {text}");
    }
    let mut body = report("shop", "web-01");
    body["dropped"] = json!(u64::MAX);
    let (status, text) = serve.ingest(KEY, &body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("dropped 18446744073709551615 is more than an agent can lose; at most 1000000000"), "{text}");
    assert!(serve.get("/api/v1/projects/shop/servers/web-01")["facts"].is_null(), "nothing was stored");
    let rejected = serve.metric("watchkeeper_ingest_rejected_total{reason=\"invalid\"}");
    assert_eq!(rejected, Some((cases.len() + 1) as f64));

    // At the bounds, accepted: the largest share, the largest number of lost reports, twice.
    let mut body = report("shop", "web-01");
    body["reports"][0]["metrics"][0]["value"] = json!(100.0);
    body["dropped"] = json!(1_000_000_000u64);
    for _ in 0..2 {
        let (status, text) = serve.ingest(KEY, &body);
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(serve.metric("watchkeeper_ingest_agent_dropped_total"), Some(2e9));
}

#[test]
fn a_report_dated_ahead_within_the_skew_does_not_stay_the_servers_latest() {
    let work = tempfile::tempdir().unwrap();
    let serve = start(work.path(), &[]);
    // An agent whose clock runs 9 minutes fast reports; then its clock is put right.
    let mut ahead = report("shop", "web-01");
    ahead["reports"][0]["at_ms"] = json!(watchkeeper::clock::now_ms() + 9 * 60_000);
    ahead["reports"][0]["facts"]["os"] = json!("from the fast clock");
    assert_eq!(serve.ingest(KEY, &ahead).0, 200);
    let mut corrected = report("shop", "web-01");
    corrected["reports"][0]["facts"]["os"] = json!("from the corrected clock");
    assert_eq!(serve.ingest(KEY, &corrected).0, 200);
    let detail = serve.get("/api/v1/projects/shop/servers/web-01");
    assert_eq!(detail["facts"]["os"], "from the corrected clock", "{detail:#}");
}

#[test]
fn mounts_and_process_names_beyond_a_servers_caps_are_dropped_counted_and_warned_about_once() {
    let work = tempfile::tempdir().unwrap();
    // Caps of 100 mounts and 300 process names, so the test's requests stay small.
    let serve = start(work.path(), &["--max-mounts", "100", "--max-process-names", "300"]);
    // One request of 10 reports, each naming 50 mounts no earlier one named: the storm.
    let mut body = report("shop", "web-01");
    let one = body["reports"][0].clone();
    body["reports"] = (0..10)
        .map(|r| {
            let mut report = one.clone();
            report["metrics"] =
                (0..50).map(|i| json!({ "name": "disk.usage", "subject": format!("/mnt/r{r}-{i}"), "value": 95.0 })).collect();
            report["process_counts"] = (0..40).map(|i| (format!("proc-{r}-{i}"), json!(1))).collect();
            report
        })
        .collect();
    let (status, text) = serve.ingest(KEY, &body);
    assert_eq!(status, 200, "{text}");
    let dropped = |kind: &str| serve.metric(&format!("watchkeeper_ingest_subjects_dropped_total{{kind=\"{kind}\"}}"));
    assert_eq!(dropped("mount"), Some(400.0), "500 mounts, 100 kept");
    assert_eq!(dropped("process_name"), Some(100.0), "400 names, 300 kept");
    // The same again: known ones stay, new ones are still dropped; one warning in all.
    let (status, _) = serve.ingest(KEY, &body);
    assert_eq!(status, 200);
    assert_eq!(dropped("mount"), Some(800.0));
    let log = serve.log();
    assert_eq!(log.matches("than serve keeps for one server").count(), 1, "{log}");
    assert!(log.contains("dropped=400 mount, 100 process_name"), "{log}");
}
