//! Delivery receipts with real parts, on both backends: mails through aiosmtpd whose
//! read-receipt image is fetched from the real API listener; a DSN bounce dropped into a real
//! Maildir; an SMS gateway stand-in that posts delivery reports back to the API.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use watchkeeper::alert::Severity;
use watchkeeper::api::{self, ApiState};
use watchkeeper::collect::live::LiveServers;
use watchkeeper::config::model::{Channel, Config, DeliveryReports, SmtpSettings};
use watchkeeper::config::raw::{ChannelType, SmtpTls};
use watchkeeper::config::values::JsonPath;
use watchkeeper::delivery::{Senders, run_bounces, run_outbox};
use watchkeeper::metrics::Metrics;
use watchkeeper::notification::{DeliveryStatus, Medium};
use watchkeeper::store::{OutboxRow, SentCount, Store};

use crate::notify::channel;
use crate::store::{TestDb, both_backends, email, fire, key, sms};
use crate::support::http::{HttpServer, Recorded};
use crate::support::install_crypto;
use crate::support::smtp::SmtpServer;

both_backends!(
    a_read_receipt_image_marks_the_mail_read_once_and_unknown_ids_look_the_same,
    a_dsn_in_the_maildir_fails_the_notification_with_its_reason,
    sms_delivery_reports_mark_delivered_or_failed_and_forgeries_change_nothing,
);

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000;
const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "dr-secret-for-tests";

fn mail_channel(smtp_port: u16) -> Channel {
    Channel {
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp_port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            ca_file: None,
        }),
        from: Some("Watchkeeper <alerts@example.com>".into()),
        ..channel("ops-mail", ChannelType::Email)
    }
}

fn sms_channel(gateway_url: String) -> Channel {
    Channel {
        url: Some(gateway_url),
        body: Some(r#"{"to":"{{phone}}","text":"{{text}}"}"#.into()),
        delivery_reports: Some(DeliveryReports {
            // Written inline here; a tree would say `${ENV}` (serve expands it per report).
            secret: SECRET.into(),
            id: JsonPath::parse("$.msg_id").unwrap(),
            status: JsonPath::parse("$.result.status").unwrap(),
            error: Some(JsonPath::parse("$.result.error").unwrap()),
            delivered: vec!["DELIVRD".into(), "delivered".into()],
            failed: vec!["UNDELIV".into(), "failed".into()],
        }),
        ..channel("ops-sms", ChannelType::Sms)
    }
}

fn config_with(channels: Vec<Channel>) -> Config {
    Config { channels: channels.into_iter().map(|c| (c.name.clone(), c)).collect(), ..Config::default() }
}

/// The API (with the read-receipt and delivery-report routes) on a real listener, and the
/// outbox worker sending through `senders`, both until the returned token is cancelled.
struct Running {
    base: String,
    cancel: CancellationToken,
    config: watch::Sender<Arc<Config>>,
}

impl Running {
    async fn api(store: &Store) -> Running {
        let (config, config_rx) = watch::channel(Arc::new(Config::default()));
        let state = ApiState {
            store: store.clone(),
            config: config_rx,
            metrics: Arc::new(Metrics::new()),
            admin_token_sha256: None,
            started_at_ms: 0,
            live: LiveServers::default(),
            collector: None,
            lease_ttl_ms: watchkeeper::store::DEFAULT_LEASE_TTL_MS,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, api::router(state)).with_graceful_shutdown(stop.cancelled_owned()).await;
        });
        Running { base, cancel, config }
    }

    fn send_with(&self, store: &Store, config: Config, senders: Senders) {
        self.config.send_replace(Arc::new(config));
        let wake = Arc::new(Notify::new());
        let outbox =
            run_outbox(store.clone(), self.config.subscribe(), senders, Arc::new(Metrics::new()), "it".into(), wake, self.cancel.clone());
        tokio::spawn(outbox);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn senders(public_url: Option<&str>) -> Senders {
    install_crypto();
    Senders::with_timeout(Duration::from_secs(10)).with_public_url(public_url)
}

async fn notifications(store: &Store, alert: i64) -> Vec<OutboxRow> {
    store.notifications_for_alert(alert).await.expect("notifications").into_iter().map(|(n, _)| n).collect()
}

/// Poll the alert's notifications until `done` holds; panic after [`WAIT`].
async fn wait_for(store: &Store, alert: i64, what: &str, done: impl Fn(&[OutboxRow]) -> bool) -> Vec<OutboxRow> {
    let start = Instant::now();
    loop {
        let rows = notifications(store, alert).await;
        if done(&rows) {
            return rows;
        }
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}: {rows:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The project's notifications this year (UTC), each month's count without its month (the
/// month the test runs in).
async fn counts_this_year(store: &Store) -> Vec<SentCount> {
    let year = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).year().into();
    let counts = store.sent_counts("shop", year, &jiff::tz::TimeZone::UTC).await.expect("counts");
    counts.into_iter().map(|c| SentCount { month: 0, ..c }).collect()
}

/// A count of port monitor `web`'s notifications to `10.0.0.1`.
fn web_count(medium: Medium, [sent, not_sent, failed, read, delivered]: [i64; 5]) -> SentCount {
    SentCount { monitor: Some("web".into()), host: "10.0.0.1".into(), medium, month: 0, sent, not_sent, failed, read, delivered }
}

async fn a_read_receipt_image_marks_the_mail_read_once_and_unknown_ids_look_the_same(db: TestDb) {
    let store = db.connect().await;
    let smtp = SmtpServer::start();
    let running = Running::api(&store).await;
    let mut tracked = mail_channel(smtp.port);
    tracked.track_reads = true;
    tracked.read_receipt_to = Some("Receipts <receipts@example.com>".into());
    let alert =
        fire(&store, &key("shop", "web-01", "port:web", "443"), Severity::Fatal, T0, "10.0.0.1", &[email("alice@example.com", "fired")])
            .await;
    // The public URL with a trailing slash: the image URL has no `//`.
    running.send_with(&store, config_with(vec![tracked]), senders(Some(&format!("{}/", running.base))));

    let mail = smtp.wait_for(1, WAIT).remove(0);
    assert_eq!(mail.content_type, "multipart/alternative");
    assert_eq!(mail.body.trim_end(), "web-01 port 443 is down", "the plain part is the text as it was");
    assert_eq!(mail.disposition_notification_to.as_deref(), Some("Receipts <receipts@example.com>"));
    let html = mail.html.expect("an HTML part");
    assert!(html.contains("web-01 port 443 is down"), "{html}");
    let prefix = format!("<img src=\"{}/r/", running.base);
    let start = html.find(&prefix).unwrap_or_else(|| panic!("no read-receipt image under the public URL: {html}")) + 10;
    let url = &html[start..start + html[start..].find('"').expect("end of src")];
    assert!(url.ends_with(".png"), "{url}");
    let sent = wait_for(&store, alert, "recorded as sent", |rows| rows[0].status == DeliveryStatus::Sent).await;
    assert_eq!(sent[0].read_ms, None, "not read before the image is fetched");

    let client = reqwest::Client::new();
    let fetch = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(&url).send().await.expect("fetch the image");
            let status = response.status().as_u16();
            let headers = (response.headers().get("content-type").cloned(), response.headers().get("cache-control").cloned());
            (status, headers, response.bytes().await.expect("image bytes").to_vec())
        }
    };
    let first = fetch(url.to_string()).await;
    assert_eq!(first.0, 200);
    assert!(first.2.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let read = notifications(&store, alert).await;
    let read_ms = read[0].read_ms.expect("the first fetch marks the mail read");
    assert_eq!(read[0].status, DeliveryStatus::Sent, "reading does not change the delivery status");

    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = fetch(url.to_string()).await;
    assert_eq!(second, first, "the second fetch answers the same");
    assert_eq!(notifications(&store, alert).await[0].read_ms, Some(read_ms), "only the first fetch is recorded");

    // Ids nobody was given, malformed or not: the very same answer, and nothing recorded.
    let unknown_id = format!("{}/r/wk_{}.png", running.base, "A".repeat(43));
    for probe in [unknown_id, format!("{}/r/x", running.base), format!("{}/r/.png", running.base)] {
        assert_eq!(fetch(probe.clone()).await, first, "{probe}");
    }
    assert_eq!(counts_this_year(&store).await, vec![web_count(Medium::Email, [1, 0, 0, 1, 0])]);
}

/// A DSN as Postfix writes one, reporting the mail whose headers are `original`.
fn dsn(original_headers: &str) -> String {
    format!(
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\nTo: alerts@example.com\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nMessage-Id: <20261203.bounce@mx.example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"8F3A.1764756000/mx.example.org\"\r\n\r\n\
         This is a MIME-encapsulated message.\r\n\r\n--8F3A.1764756000/mx.example.org\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n\
         --8F3A.1764756000/mx.example.org\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\
         Arrival-Date: Thu,  3 Dec 2026 10:00:00 +0000 (UTC)\r\n\r\nFinal-Recipient: rfc822; alice@example.com\r\n\
         Original-Recipient: rfc822;alice@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Remote-MTA: dns; mail.example.com\r\nDiagnostic-Code: smtp; 550 5.1.1 <alice@example.com>: Recipient address\r\n    rejected: User unknown\r\n\r\n\
         --8F3A.1764756000/mx.example.org\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n\
         {original_headers}\r\n--8F3A.1764756000/mx.example.org--\r\n"
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read Maildir folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn a_dsn_in_the_maildir_fails_the_notification_with_its_reason(db: TestDb) {
    let store = db.connect().await;
    let smtp = SmtpServer::start();
    let running = Running::api(&store).await;
    let bounces = tempfile::tempdir().expect("temp dir");
    for folder in ["new", "cur", "tmp"] {
        std::fs::create_dir(bounces.path().join(folder)).expect("Maildir folder");
    }
    let mut channel = mail_channel(smtp.port);
    channel.bounces = Some(bounces.path().to_path_buf());
    let notes = [email("alice@example.com", "fired"), email("bob@example.com", "fired")];
    let alert = fire(&store, &key("shop", "web-01", "port:web", "443"), Severity::Fatal, T0, "10.0.0.1", &notes).await;
    running.send_with(&store, config_with(vec![channel]), senders(None));
    smtp.wait_for(2, WAIT);
    wait_for(&store, alert, "both recorded as sent", |rows| rows.iter().all(|r| r.status == DeliveryStatus::Sent)).await;

    // Alice's mail bounces: the DSN quotes the headers of the very mail aiosmtpd received.
    let alice = smtp.message_files().into_iter().find(|p| std::fs::read_to_string(p).unwrap().contains("To: alice@example.com")).unwrap();
    let raw = std::fs::read_to_string(&alice).expect("alice's mail").replace("\r\n", "\n");
    let headers = raw.split("\n\n").next().expect("headers").replace('\n', "\r\n");
    std::fs::write(bounces.path().join("new/1764756000.V801.mx"), dsn(&headers)).expect("drop the DSN");
    // A letter that is no bounce, and a bounce of a mail watchkeeper never sent: both stay.
    std::fs::write(bounces.path().join("new/1764756001.V802.mx"), "From: someone@example.org\r\nSubject: hi\r\n\r\nhello\r\n").unwrap();
    let stranger = dsn("From: alerts@example.com\r\nMessage-ID: <notification.999.1@example.com>\r\nSubject: old");
    std::fs::write(bounces.path().join("new/1764756002.V803.mx"), stranger).unwrap();

    let cancel = running.cancel.clone();
    tokio::spawn(run_bounces(store.clone(), running.config.subscribe(), Duration::from_millis(100), cancel));
    let rows = wait_for(&store, alert, "alice's mail marked failed", |rows| rows.iter().any(|r| r.status == DeliveryStatus::Failed)).await;
    let failed = rows.iter().find(|r| r.recipient == "alice@example.com").expect("alice");
    assert_eq!(failed.status, DeliveryStatus::Failed);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("bounced: status 5.1.1, smtp; 550 5.1.1 <alice@example.com>: Recipient address rejected: User unknown")
    );
    assert!(failed.receipt_ms.is_some());
    let bob = rows.iter().find(|r| r.recipient == "bob@example.com").expect("bob");
    assert_eq!(bob.status, DeliveryStatus::Sent, "only the bounced mail fails");

    let start = Instant::now();
    while files_in(&bounces.path().join("cur")).is_empty() {
        assert!(start.elapsed() < WAIT, "the handled DSN was not moved to cur/");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(files_in(&bounces.path().join("cur")), vec!["1764756000.V801.mx:2,S"], "handled and flagged seen");
    // Several more scans leave the others where they are.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(files_in(&bounces.path().join("new")), vec!["1764756001.V802.mx", "1764756002.V803.mx"]);
    assert_eq!(counts_this_year(&store).await, vec![web_count(Medium::Email, [1, 0, 1, 0, 0])]);
}

/// The gateway reports every message delivered but those to a number ending in 0000.
fn gateway_report(request: &Recorded, id: &str) -> serde_json::Value {
    if request.body.contains("0000\"") {
        json!({ "msg_id": id, "result": { "status": "UNDELIV", "error": "absent subscriber\n(code 27)" } })
    } else {
        json!({ "msg_id": id, "result": { "status": "DELIVRD" } })
    }
}

async fn sms_delivery_reports_mark_delivered_or_failed_and_forgeries_change_nothing(db: TestDb) {
    let store = db.connect().await;
    let running = Running::api(&store).await;
    let callback = format!("{}/ingest/v1/delivery/ops-sms", running.base);
    let gateway = HttpServer::sms_gateway(&callback, SECRET, Arc::new(gateway_report)).await;
    let notes = [sms("+821011112222", "fired"), sms("+821000000000", "fired")];
    let alert = fire(&store, &key("shop", "web-01", "port:web", "443"), Severity::Fatal, T0, "10.0.0.1", &notes).await;
    let smtp_port = crate::support::free_port();
    running.send_with(&store, config_with(vec![sms_channel(gateway.url("/send")), mail_channel(smtp_port)]), senders(None));

    let rows = wait_for(&store, alert, "both reports recorded", |rows| {
        rows.iter().all(|r| matches!(r.status, DeliveryStatus::Delivered | DeliveryStatus::Failed))
    })
    .await;
    let by_phone = |phone: &str| rows.iter().find(|r| r.recipient == phone).expect("notification").clone();
    let delivered = by_phone("+821011112222");
    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(delivered.last_error, None);
    assert!(delivered.receipt_ms.is_some());
    let undelivered = by_phone("+821000000000");
    assert_eq!(undelivered.status, DeliveryStatus::Failed);
    assert_eq!(undelivered.last_error.as_deref(), Some("gateway reported UNDELIV: absent subscriber (code 27)"));
    let start = Instant::now();
    while gateway.callback_answers().len() < 2 {
        assert!(start.elapsed() < WAIT, "the gateway's reports were not answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.callback_answers(), vec![200, 200]);
    // Which gateway id the delivered message got.
    let requests = gateway.requests();
    let index = requests.iter().position(|r| r.body.contains("+821011112222")).expect("its request");
    let delivered_id = format!("gw-{}", index + 1);

    let client = reqwest::Client::new();
    let post = |url: String, secret: Option<&'static str>, body: Vec<u8>| {
        let client = client.clone();
        async move {
            let mut request = client.post(&url).header("content-type", "application/json").body(body);
            if let Some(secret) = secret {
                request = request.bearer_auth(secret);
            }
            let response = request.send().await.expect("post a report");
            (response.status().as_u16(), response.text().await.unwrap_or_default())
        }
    };
    let forged = json!({ "msg_id": delivered_id, "result": { "status": "UNDELIV", "error": "forged" } }).to_string().into_bytes();
    let (status, body) = post(callback.clone(), Some("not-the-secret"), forged.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(post(callback.clone(), None, forged.clone()).await.0, 401);
    let unknown_channel = format!("{}/ingest/v1/delivery/nope", running.base);
    assert_eq!(post(unknown_channel, Some(SECRET), forged.clone()).await.0, 404);
    let no_reports = format!("{}/ingest/v1/delivery/ops-mail", running.base);
    assert_eq!(post(no_reports, Some(SECRET), forged.clone()).await.0, 404, "a channel without delivery_reports");
    let (status, body) = post(callback.clone(), Some(SECRET), b"msg_id=gw-1&status=UNDELIV".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not JSON"), "{body}");
    let (status, body) = post(callback.clone(), Some(SECRET), json!({ "id": delivered_id }).to_string().into_bytes()).await;
    assert_eq!((status, body.contains("$.msg_id")), (400, true), "{body}");
    let huge =
        json!({ "msg_id": delivered_id, "result": { "status": "UNDELIV", "error": "x".repeat(64 * 1024) } }).to_string().into_bytes();
    assert_eq!(post(callback.clone(), Some(SECRET), huge).await.0, 413);
    let unknown_id = json!({ "msg_id": "gw-unknown", "result": { "status": "UNDELIV" } }).to_string().into_bytes();
    assert_eq!(post(callback.clone(), Some(SECRET), unknown_id).await.0, 404);
    let (status, body) =
        post(callback.clone(), Some(SECRET), json!({ "msg_id": delivered_id, "result": { "status": "ACCEPTD" } }).to_string().into_bytes())
            .await;
    assert_eq!(status, 200, "an intermediate status is accepted");
    assert!(body.contains("\"changed\":false"), "{body}");
    let after = notifications(&store, alert).await;
    assert_eq!(after.iter().find(|r| r.recipient == "+821011112222").expect("row"), &delivered, "forged and bad reports changed nothing");

    assert_eq!(counts_this_year(&store).await, vec![web_count(Medium::Sms, [1, 0, 1, 0, 1])]);
}
