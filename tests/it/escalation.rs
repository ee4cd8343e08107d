//! Escalation end to end, with real parts only: the real `watchkeeper serve` on a configuration
//! directory, a closed TCP port (later really opened), aiosmtpd receiving the mail, the status
//! API read and written over HTTP. Steps come after seconds, not minutes.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::support::serve::Serve;
use crate::support::smtp::SmtpServer;
use crate::support::{free_port, install_crypto};

/// alice's API token (the project's admin).
const ALICE: &str = "alice-token-for-escalation-tests";
/// When the two steps come after firing, in seconds: far enough apart for a restart between them.
const STEP_1_S: i64 = 3;
const STEP_2_S: i64 = 14;

fn write_tree(dir: &Path, smtp: u16, port: u16) {
    fs::create_dir_all(dir).unwrap();
    let alice = watchkeeper::token::sha256_hex(ALICE);
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {alice}\n---\n\
             kind: User\nemail: boss@example.com\nname: Boss\nnotify: {{ email: false }}\n---\n\
             kind: User\nemail: ceo@example.com\nname: Ceo\n---\n\
             kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {smtp}, tls: none }}\n\
             from: \"watchkeeper <alerts@example.com>\"\n---\n\
             kind: Project\nname: shop\nchannels: [mail]\n\
             members: [{{ user: alice@example.com, role: admin }}]\n\
             escalation:\n  - {{ after: {STEP_1_S}s, notify: [boss@example.com] }}\n  - {{ after: {STEP_2_S}s, notify: [ceo@example.com] }}\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nhost: 127.0.0.1\nports: [{port}]\ninterval: 1s\ntimeout: 500ms\n\
             failures: 1\n"
        ),
    )
    .unwrap();
}

/// The alert's notifications of `kind` to `recipient`, by creation time.
fn notified(serve: &Serve, alert: &Value, kind: &str, recipient: &str) -> Vec<i64> {
    let detail = serve.get(&format!("/api/v1/projects/shop/alerts/{alert}"));
    let mut times: Vec<i64> = detail["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == kind && n["recipient"] == recipient)
        .map(|n| n["created_ms"].as_i64().unwrap())
        .collect();
    times.sort();
    times
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn sleep_until(at_ms: i64) {
    let left = at_ms - now_ms();
    if left > 0 {
        thread::sleep(Duration::from_millis(left as u64));
    }
}

fn start(work: &Path, smtp: u16, port: u16) -> (Serve, Vec<String>) {
    let conf = work.join("conf");
    write_tree(&conf, smtp, port);
    let args: Vec<String> =
        vec!["--config".into(), conf.display().to_string(), "--db".into(), format!("sqlite://{}", work.join("wk.db").display())];
    let serve = Serve::start(&args, &[], &work.join("serve.log"));
    (serve, args)
}

const LONG: Duration = Duration::from_secs(60);

fn applied(serve: &Serve, times: usize) -> bool {
    serve.log().matches("revision applied").count() >= times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_steps_neither_skips_nor_doubles_and_the_resolve_mails_everyone_told() {
    install_crypto();
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let port = free_port(); // nothing listens until the end: every check is refused
    let (mut serve, args) = start(work.path(), smtp.port, port);
    serve.wait_until("the tree is applied", LONG, || applied(&serve, 1));
    serve.wait_until("the port's alert fires", LONG, || !serve.firing().is_empty());
    let alert = serve.firing()[0]["id"].clone();
    let fired = notified(&serve, &alert, "fired", "alice@example.com");
    assert_eq!(fired.len(), 1, "one fired notification to alice");

    // Step 1 reaches the boss (whose own e-mail is off: the step chooses the medium).
    serve.wait_until("step 1", LONG, || !notified(&serve, &alert, "escalation", "boss@example.com").is_empty());
    assert!(notified(&serve, &alert, "escalation", "ceo@example.com").is_empty(), "step 2 is not due yet");
    // serve is down while step 2 falls due.
    assert!(serve.terminate().success());
    sleep_until(fired[0] + STEP_2_S * 1000 + 1000);
    let serve = Serve::start_on(&args, &[], &work.path().join("serve.log"), serve.port);
    serve.wait_until("the tree is applied again", LONG, || applied(&serve, 2));
    serve.wait_until("step 2 after the restart", LONG, || !notified(&serve, &alert, "escalation", "ceo@example.com").is_empty());
    assert_eq!(notified(&serve, &alert, "escalation", "boss@example.com").len(), 1, "step 1 once");
    assert_eq!(notified(&serve, &alert, "escalation", "ceo@example.com").len(), 1, "step 2 once");
    assert!(notified(&serve, &alert, "escalation", "alice@example.com").is_empty(), "steps reach only their users");

    // The port really opens: the resolve reaches alice and both steps' people.
    let _listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    for who in ["alice@example.com", "boss@example.com", "ceo@example.com"] {
        serve.wait_until("the resolve", LONG, || !notified(&serve, &alert, "resolved", who).is_empty());
    }
    serve.wait_until("the outbox is empty", LONG, || serve.metric("watchkeeper_outbox_depth") == Some(0.0));
    let mails = smtp.messages();
    let count = |to: &str, subject: &str| mails.iter().filter(|m| m.to.contains(to) && m.subject.contains(subject)).count();
    assert_eq!(
        count("boss@example.com", "Unacknowledged (fatal)"),
        1,
        "{:?}",
        mails.iter().map(|m| (&m.to, &m.subject)).collect::<Vec<_>>()
    );
    assert_eq!(count("ceo@example.com", "Unacknowledged (fatal)"), 1);
    for who in ["alice@example.com", "boss@example.com", "ceo@example.com"] {
        assert_eq!(count(who, "Resolved"), 1, "{who}");
    }
    assert_eq!(count("boss@example.com", "Alert fired"), 0, "the boss is no recipient of the alert itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_stops_the_ladder_before_step_2() {
    install_crypto();
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let (serve, _) = start(work.path(), smtp.port, free_port());
    serve.wait_until("the tree is applied", LONG, || applied(&serve, 1));
    serve.wait_until("the port's alert fires", LONG, || !serve.firing().is_empty());
    let alert = serve.firing()[0]["id"].clone();
    let fired = notified(&serve, &alert, "fired", "alice@example.com")[0];
    serve.wait_until("step 1", LONG, || !notified(&serve, &alert, "escalation", "boss@example.com").is_empty());
    let path = format!("/api/v1/projects/shop/alerts/{alert}/acks");
    let auth = format!("Bearer {ALICE}");
    let (status, body) = serve.request("POST", &path, &[("Authorization", &auth)], br#"{"note": "on it"}"#);
    assert_eq!(status, 201, "{body}");
    // Well past step 2's time, serve has looked many times: nobody told the ceo.
    sleep_until(fired + STEP_2_S * 1000 + 4000);
    serve.wait_until("serve still runs", LONG, || serve.metric("watchkeeper_outbox_depth") == Some(0.0));
    assert!(notified(&serve, &alert, "escalation", "ceo@example.com").is_empty(), "{}", serve.log());
    assert!(!smtp.messages().iter().any(|m| m.to.contains("ceo@example.com")));
}
