//! The alert lifecycle end to end, with real parts only: the real `watchkeeper serve` binary on
//! a configuration directory, a closed TCP port, aiosmtpd receiving the mail, the status API
//! read and written over HTTP. Time is compressed: reminders every few seconds.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::support::serve::Serve;
use crate::support::smtp::SmtpServer;
use crate::support::{free_port, install_crypto};

/// A reminder interval short enough for a test, long enough for a restart to fit in one.
const REPEAT_MS: i64 = 6_000;
/// alice's API token (a plain member of the project).
const ALICE: &str = "alice-token-for-lifecycle-tests";

fn write_tree(dir: &Path, smtp: u16, closed: u16) {
    fs::create_dir_all(dir).unwrap();
    let alice = watchkeeper::token::sha256_hex(ALICE);
    fs::write(
        dir.join("tree.yaml"),
        format!(
            "kind: User\nemail: alice@example.com\nname: Alice\ntoken_sha256: {alice}\nnotify: {{ email: true }}\n---\n\
             kind: User\nemail: bob@example.com\nname: Bob\n---\n\
             kind: Channel\nname: mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {smtp}, tls: none }}\n\
             from: \"watchkeeper <alerts@example.com>\"\n---\n\
             kind: Project\nname: shop\nchannels: [mail]\nrepeat: 1h\n\
             members: [{{ user: bob@example.com, role: admin }}, {{ user: alice@example.com, role: user }}]\n---\n\
             kind: PortMonitor\nname: web\nproject: shop\nhost: 127.0.0.1\nports: [{closed}]\ninterval: 1s\ntimeout: 500ms\n\
             failures: 1\nrepeat: {}s\n",
            REPEAT_MS / 1000
        ),
    )
    .unwrap();
}

/// The alert's notifications of `kind`, by creation time.
fn notified(serve: &Serve, alert: &Value, kind: &str) -> Vec<i64> {
    let detail = serve.get(&format!("/api/v1/projects/shop/alerts/{alert}"));
    let mut times: Vec<i64> = detail["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == kind && n["recipient"] == "alice@example.com")
        .map(|n| n["created_ms"].as_i64().unwrap())
        .collect();
    times.sort();
    times
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Sleep until the wall clock passes `at_ms`.
fn sleep_until(at_ms: i64) {
    let left = at_ms - now_ms();
    if left > 0 {
        thread::sleep(Duration::from_millis(left as u64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_survive_a_restart_without_a_skip_or_a_double_and_an_ack_stops_them() {
    install_crypto();
    let work = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let closed = free_port(); // nothing listens: every check is refused
    let conf = work.path().join("conf");
    write_tree(&conf, smtp.port, closed);
    let args: Vec<String> =
        vec!["--config".into(), conf.display().to_string(), "--db".into(), format!("sqlite://{}", work.path().join("wk.db").display())];
    let log = work.path().join("serve.log");
    let mut serve = Serve::start(&args, &[], &log);
    let long = Duration::from_secs(60);
    // The API knows project shop once serve applied the tree (a directory settles first).
    let applied = |serve: &Serve, times: usize| serve.log().matches("revision applied").count() >= times;
    serve.wait_until("the tree is applied", long, || applied(&serve, 1));
    serve.wait_until("the port's alert fires", long, || !serve.firing().is_empty());
    let alert = serve.firing()[0]["id"].clone();
    let fired = notified(&serve, &alert, "fired");
    assert_eq!(fired.len(), 1, "one fired notification to alice");
    let f = fired[0];

    // Reminder 1 is due at F + R. Stop serve after it and stay down past reminder 2's slot.
    serve.wait_until("the first reminder", long, || !notified(&serve, &alert, "reminder").is_empty());
    assert!(serve.terminate().success());
    sleep_until(f + 2 * REPEAT_MS + 500);
    let serve = Serve::start_on(&args, &[], &log, serve.port);
    serve.wait_until("the tree is applied again", long, || applied(&serve, 2));
    // Reminder 2 goes out once, right after the restart; reminder 3 on schedule.
    serve.wait_until("the third reminder", long, || notified(&serve, &alert, "reminder").len() >= 3);
    let reminders = notified(&serve, &alert, "reminder");
    for (k, at) in reminders.iter().enumerate() {
        let n = k as i64 + 1;
        assert!(
            f + n * REPEAT_MS <= *at && *at < f + (n + 1) * REPEAT_MS,
            "reminder {n} at F+{} ms, not in [F+{}, F+{}): {reminders:?}\n{}",
            at - f,
            n * REPEAT_MS,
            (n + 1) * REPEAT_MS,
            serve.log()
        );
    }

    // alice acknowledges: no reminder after, though the port stays closed.
    let path = format!("/api/v1/projects/shop/alerts/{alert}/acks");
    let auth = format!("Bearer {ALICE}");
    let (status, body) = serve.request("POST", &path, &[("Authorization", &auth)], br#"{"note": "port closed on purpose, fixing"}"#);
    assert_eq!(status, 201, "{body}");
    let acked_at = now_ms();
    let before = notified(&serve, &alert, "reminder").len();
    sleep_until(acked_at + REPEAT_MS + 1500);
    let after = notified(&serve, &alert, "reminder");
    assert!(after.len() <= before + 1, "at most the reminder already due as the ack arrived: {after:?}");
    assert!(after.iter().all(|&at| at < acked_at + 1500), "no reminder after the ack: {after:?} (ack at {acked_at})");
    let detail = serve.get(&format!("/api/v1/projects/shop/alerts/{alert}"));
    assert_eq!((&detail["status"], &detail["acknowledged"]), (&Value::from("firing"), &Value::from(true)));
    assert_eq!(detail["acks"][0]["by"], "alice@example.com");

    // Every reminder reached the mailbox (none comes after the ack, so the count is final), saying
    // how long the alert has been firing.
    serve.wait_until("the outbox is empty", long, || serve.metric("watchkeeper_outbox_depth") == Some(0.0));
    let reminders = notified(&serve, &alert, "reminder");
    let mails: Vec<_> = smtp.messages().into_iter().filter(|m| m.to.contains("alice@example.com")).collect();
    let still: Vec<_> = mails.iter().filter(|m| m.subject.contains("Still firing (fatal)")).collect();
    assert_eq!(still.len(), reminders.len(), "{:?}", mails.iter().map(|m| &m.subject).collect::<Vec<_>>());
    assert!(still[0].body.contains("still firing, unacknowledged") && still[0].body.contains("Duration:"), "{}", still[0].body);
}
