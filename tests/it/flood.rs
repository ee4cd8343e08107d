//! serve under a connection flood, over real sockets: connections over a cap (per client
//! address, in all) are reset at once, counted and logged once; slow and silent clients are cut
//! by the header, body and idle timeouts; a flood from one address leaves /healthz answering
//! other clients, and no amount of API connections takes the descriptors the prober needs.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::serve::{Listener, Serve, connect_from};

/// The address floods come from, and two others for the clients that must still get in.
const FLOODER: Ipv4Addr = Ipv4Addr::LOCALHOST;
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const THIRD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// The project's ingest key: a request with it has its body read.
const INGEST_KEY: &str = "flood-test-ingest-key";

/// A tree with one port monitor checking `port` every second.
fn tree(dir: &Path, port: u16) -> Vec<String> {
    fs::create_dir_all(dir.join("tree")).unwrap();
    fs::write(
        dir.join("tree/shop.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\n---\n\
             kind: Project\nname: shop\nmembers: [{{ user: alice@example.com, role: admin }}]\nchannels: []\ningest_key_sha256: {}\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nhost: 127.0.0.1\nports: [{port}]\ninterval: 1s\ntimeout: 900ms\nfailures: 1\n",
            watchkeeper::token::sha256_hex(INGEST_KEY)
        ),
    )
    .unwrap();
    vec!["--config".into(), dir.join("tree").display().to_string(), "--db".into(), format!("sqlite://{}", dir.join("wk.db").display())]
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

/// Whether serve has closed (or reset) this connection; never blocks.
fn closed_by_serve(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 64];
    let closed = match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// Connections that send nothing, some of which serve may have reset.
struct Flood {
    streams: Vec<TcpStream>,
    /// Reset by serve so fast that `connect` itself said so.
    reset_at_connect: usize,
}

impl Flood {
    /// Open `n` connections from `from`, one after the other.
    fn open(from: Ipv4Addr, port: u16, n: usize) -> Flood {
        let mut flood = Flood { streams: Vec::with_capacity(n), reset_at_connect: 0 };
        for i in 0..n {
            match connect_from(from, port) {
                Ok(stream) => flood.streams.push(stream),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => flood.reset_at_connect += 1,
                Err(e) => panic!("connection {i} from {from}: {e}"),
            }
        }
        flood
    }

    /// How many serve has closed or reset.
    fn closed(&self) -> usize {
        self.reset_at_connect + self.streams.iter().filter(|s| closed_by_serve(s)).count()
    }

    /// How many serve keeps open.
    fn held(&self) -> usize {
        self.streams.iter().filter(|s| !closed_by_serve(s)).count()
    }

    /// Close one that serve keeps open.
    fn close_one(&mut self) {
        let open = self.streams.iter().position(|s| !closed_by_serve(s)).expect("an open connection");
        drop(self.streams.remove(open));
    }
}

/// A metric's value read from `from`, retrying while serve is full; 0 when it has no sample.
fn metric_from(serve: &Serve, from: Ipv4Addr, sample: &str) -> f64 {
    metrics_from(serve, from).lines().find_map(|l| l.strip_prefix(&format!("{sample} "))).map_or(0.0, |v| v.trim().parse().unwrap())
}

fn metrics_from(serve: &Serve, from: Ipv4Addr) -> String {
    let start = Instant::now();
    loop {
        if let Some(text) = get_from(from, serve.port, "/metrics").filter(|(status, _)| *status == 200).map(|(_, body)| body) {
            return text;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "/metrics never answered from {from}\n{}", serve.log());
        thread::sleep(Duration::from_millis(100));
    }
}

/// GET `path` from `from` on a fresh connection: the status and body, or `None` if the
/// connection was refused or reset.
fn get_from(from: Ipv4Addr, port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = connect_from(from, port).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).to_string();
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_string()))
}

/// Lines of serve's log saying that connections were refused.
fn refused_lines(serve: &Serve) -> Vec<String> {
    serve.log().lines().filter(|l| l.contains("refused ") && l.contains(" connections: ")).map(str::to_string).collect()
}

/// Wait until serve has applied its tree and no connection but our own is open.
fn settle(serve: &Serve) {
    serve.wait_until("the tree is applied", Duration::from_secs(60), || serve.applied().is_some());
    serve.wait_until("only our own connection is open", Duration::from_secs(30), || {
        metric_from(serve, THIRD, "watchkeeper_http_connections") == 1.0
    });
}

#[test]
fn connections_over_a_cap_are_reset_at_once_counted_and_logged_once_not_per_connection() {
    let work = tempfile::tempdir().unwrap();
    let port = Listener::open(crate::support::free_port());
    let args =
        with(tree(work.path(), port.port), &["--max-connections", "30", "--max-connections-per-client", "20", "--header-timeout", "5m"]);
    let serve = Serve::start(&args, &[], &work.path().join("serve.log"));
    settle(&serve);

    // 50 idle connections from one address: 20 are kept, 30 reset right away.
    let mut flood = Flood::open(FLOODER, serve.port, 50);
    serve.wait_until("30 connections are reset", Duration::from_secs(30), || flood.closed() >= 30);
    // Another address still gets in, up to the total cap: 10 more, then resets.
    let other = Flood::open(OTHER, serve.port, 20);
    serve.wait_until("10 of the other's are reset", Duration::from_secs(30), || other.closed() >= 10);
    assert_eq!(flood.closed(), 30, "20 of the flood are served");
    assert_eq!(other.closed(), 10, "10 of the other address are served");

    // Full: a third address is refused too, until one connection goes.
    assert_eq!(get_from(THIRD, serve.port, "/healthz"), None, "serve is at its total cap");
    flood.close_one();
    let metrics = metrics_from(&serve, THIRD);
    assert!(metrics.contains(r#"watchkeeper_http_connections_refused_total{limit="per_client"} 30"#), "{metrics}");
    assert!(metrics.contains(r#"watchkeeper_http_connections_refused_total{limit="total"} "#), "{metrics}");
    assert!(metrics.contains("watchkeeper_http_connections 30"), "{metrics}");

    // One line per cap so far, not one per refused connection.
    let lines = refused_lines(&serve);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains("refused 1 connections: their address had 20 open connections") && lines[0].contains("127.0.0.1"),
        "{lines:#?}"
    );
    assert!(lines[1].contains("refused 1 connections: 30 connections were open"), "{lines:#?}");
}

#[test]
fn slow_and_silent_clients_are_cut_by_the_header_body_and_idle_timeouts_and_busy_ones_are_not() {
    let work = tempfile::tempdir().unwrap();
    let port = Listener::open(crate::support::free_port());
    let args = with(tree(work.path(), port.port), &["--header-timeout", "1s", "--body-timeout", "1s", "--idle-timeout", "3s"]);
    let serve = Serve::start(&args, &[], &work.path().join("serve.log"));
    settle(&serve);
    let port = serve.port;
    let limit = Duration::from_secs(20);

    // Each client runs on its own thread; each returns how long serve kept it and what it read.
    let silent = thread::spawn(move || {
        let start = Instant::now();
        let mut stream = connect_from(FLOODER, port).unwrap();
        held(&mut stream, start, limit, |_| {})
    });
    let trickling_head = thread::spawn(move || {
        let start = Instant::now();
        let mut stream = connect_from(FLOODER, port).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
        held(&mut stream, start, limit, |s| {
            let _ = s.write_all(b"X-Slow: 1\r\n");
        })
    });
    let trickling_body = thread::spawn(move || {
        let start = Instant::now();
        let mut stream = connect_from(FLOODER, port).unwrap();
        stream.write_all(format!("POST /ingest/v1/report HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {INGEST_KEY}\r\nContent-Length: 1000\r\n\r\n{{\"project\":").as_bytes()).unwrap();
        held(&mut stream, start, limit, |s| {
            let _ = s.write_all(b" ");
        })
    });
    let idle_after_answer = thread::spawn(move || {
        let start = Instant::now();
        let mut stream = connect_from(FLOODER, port).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        held(&mut stream, start, limit, |_| {})
    });
    // Busy: a request every 600 ms for 5 s on one connection — past every timeout, never idle
    // or slow for as long as one; serve keeps it.
    let busy = thread::spawn(move || {
        let mut stream = connect_from(FLOODER, port).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let start = Instant::now();
        let mut answered = 0;
        while start.elapsed() < Duration::from_secs(5) {
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "request {answered} on a busy connection");
            answered += 1;
            thread::sleep(Duration::from_millis(600));
        }
        answered
    });

    let (silent, _) = silent.join().unwrap();
    let (head, _) = trickling_head.join().unwrap();
    let (body, body_answer) = trickling_body.join().unwrap();
    let (idle, idle_answer) = idle_after_answer.join().unwrap();
    let busy = busy.join().unwrap();
    // Never before the timeout (the lower bounds are exact); well within the test's bound.
    assert!(silent >= Duration::from_secs(1) && silent < limit, "silent client held {silent:?}");
    assert!(head >= Duration::from_secs(1) && head < limit, "trickled head held {head:?}");
    assert!(body >= Duration::from_secs(1) && body < limit, "trickled body held {body:?}");
    assert!(body_answer.starts_with("HTTP/1.1 400") && body_answer.contains("the request body did not arrive within 1s"), "{body_answer}");
    assert!(idle >= Duration::from_secs(3) && idle < limit, "idle keep-alive held {idle:?}: the idle timeout, not the header's");
    assert!(idle_answer.starts_with("HTTP/1.1 200"), "{idle_answer}");
    assert!(busy >= 5, "a busy connection was cut after {busy} requests");

    let metrics = metrics_from(&serve, THIRD);
    for (timeout, n) in [("header", 2), ("body", 1), ("idle", 1)] {
        assert!(metrics.contains(&format!("watchkeeper_http_timeouts_total{{timeout=\"{timeout}\"}} {n}\n")), "{timeout}: {metrics}");
    }
}

/// Keep `stream` open, calling `tick` on it every 200 ms, until serve closes it or `limit`
/// passes: how long that took since `start` and everything read. `start` is taken before the
/// connect, so serve's timer (which starts at its accept) can never have run longer than the
/// figure returned: a loaded machine may delay the client thread after the connect, not before.
fn held(stream: &mut TcpStream, start: Instant, limit: Duration, mut tick: impl FnMut(&mut TcpStream)) -> (Duration, String) {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut read = Vec::new();
    while start.elapsed() < limit {
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => read.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => tick(stream),
            Err(_) => break,
        }
    }
    (start.elapsed(), String::from_utf8_lossy(&read).to_string())
}

/// `probe_counts` once at least `ok` checks are counted or something went wrong: a check is
/// counted after it ends, a moment after the open port saw its connection.
fn counted_checks(serve: &Serve, ok: f64) -> (f64, Vec<String>) {
    serve.wait_until("the checks are counted", Duration::from_secs(60), || {
        let (counted, bad) = probe_counts(serve);
        counted >= ok || !bad.is_empty()
    });
    probe_counts(serve)
}

/// The counts of the `web` monitor's checks by result, and the prober's own errors, from /metrics.
fn probe_counts(serve: &Serve) -> (f64, Vec<String>) {
    let metrics = metrics_from(serve, THIRD);
    let ok = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"watchkeeper_probes_total{project="shop",monitor="web",result="ok"} "#))
        .map_or(0.0, |v| v.trim().parse().unwrap());
    let bad = metrics
        .lines()
        .filter(|l| {
            (l.starts_with("watchkeeper_probes_total{") && !l.contains(r#"result="ok""#))
                || l.starts_with("watchkeeper_prober_errors_total")
        })
        .map(str::to_string)
        .collect();
    (ok, bad)
}

#[test]
fn a_flood_from_one_address_leaves_healthz_answering_others_and_probes_of_an_open_port_ok() {
    let work = tempfile::tempdir().unwrap();
    let port = Listener::open(crate::support::free_port());
    // 1 024 open files, a common default: 3 000 connections would exhaust it without the caps.
    // The header timeout outlasts the test, so the flood is held until the test lets it go.
    let args = with(tree(work.path(), port.port), &["--header-timeout", "5m"]);
    let serve = Serve::start_with_open_files(&args, &[], &work.path().join("serve.log"), 1024);
    settle(&serve);

    let flood = Flood::open(FLOODER, serve.port, 3000);
    // While it is held: /healthz answers another address every time, and the checks of the
    // open port go on (three more reach it).
    let checked = port.accepted();
    let mut answered = 0;
    serve.wait_until("three more checks reach the open port", Duration::from_secs(60), || {
        match get_from(OTHER, serve.port, "/healthz") {
            Some((200, body)) if body == "ok" => answered += 1,
            other => panic!("/healthz from another address during the flood: {other:?}\n{}", serve.log()),
        }
        port.accepted() >= checked + 3
    });
    assert!(answered >= 3, "{answered}");
    assert_eq!(flood.held(), 128, "serve keeps the per-address cap's worth of the flood, the rest is reset");
    let (ok, bad) = counted_checks(&serve, 3.0);
    assert!(ok >= 3.0 && bad.is_empty(), "no check failed and the prober ran out of nothing: {ok} ok, {bad:?}");
    let refused = metric_from(&serve, THIRD, r#"watchkeeper_http_connections_refused_total{limit="per_client"}"#);
    assert_eq!(refused, 3000.0 - 128.0);
    assert_eq!(metric_from(&serve, THIRD, "watchkeeper_http_accept_errors_total"), 0.0);
    drop(flood);
    let log = serve.log();
    assert!(
        log.contains("open files: limit 1024, 414 kept for probes, the database and the configuration reader; HTTP connections capped at 610 (128 per client address)"),
        "{log}"
    );
    assert_eq!(refused_lines(&serve).len(), 1, "{:#?}", refused_lines(&serve));
}

#[test]
fn api_connections_cannot_take_the_descriptors_the_prober_needs_whatever_the_caps_asked_for() {
    let work = tempfile::tempdir().unwrap();
    let port = Listener::open(crate::support::free_port());
    // Caps far above what 1 024 open files allow: serve lowers them to what the prober, the
    // store and the configuration reader leave, and says so.
    let args = with(
        tree(work.path(), port.port),
        &["--max-connections", "5000", "--max-connections-per-client", "5000", "--header-timeout", "5m"],
    );
    let serve = Serve::start_with_open_files(&args, &[], &work.path().join("serve.log"), 1024);
    settle(&serve);
    let log = serve.log();
    assert!(log.contains("HTTP connections capped at 610 (610 per client address)"), "{log}");
    assert!(log.contains("the open-files limit leaves room for only 610 of the 5000 HTTP connections asked for"), "{log}");

    // 1 500 connections from one address take every place serve has; the checks of the open
    // port still reach it, three more while the flood is held.
    let flood = Flood::open(FLOODER, serve.port, 1500);
    let checked = port.accepted();
    serve.wait_until("three more checks reach the open port", Duration::from_secs(60), || port.accepted() >= checked + 3);
    let held = flood.held();
    // Our last /metrics request may still have been counted for a moment after its answer.
    assert!((609..=610).contains(&held), "the cap holds: {held} held");
    drop(flood);

    let (ok, bad) = counted_checks(&serve, 3.0);
    assert!(ok >= 3.0 && bad.is_empty(), "no check failed and the prober ran out of nothing: {ok} ok, {bad:?}");
    assert_eq!(metric_from(&serve, THIRD, "watchkeeper_http_accept_errors_total"), 0.0, "accept never ran out of descriptors either");
}
