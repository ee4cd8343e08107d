//! Notifications against real servers: e-mail into aiosmtpd, SMS and webhooks into a recording
//! HTTP server, and the outbox worker riding out an SMTP outage.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use watchkeeper::alert::{AlertChange, InstanceKey};
use watchkeeper::alert::{AlertState, Phase, Severity};
use watchkeeper::config::model::{Channel, Config, SmtpSettings};
use watchkeeper::config::raw::{ChannelType, Language, SmtpTls, WebhookFormat};
use watchkeeper::delivery::{SendError, Senders, run_outbox};
use watchkeeper::metrics::Metrics;
use watchkeeper::notification::{
    AlertMessage, DeliveryStatus, Medium, MessageKind, NewNotification, build_notifications, json_payload, render,
};
use watchkeeper::store::{Attempt, OutboxRow, Store};

use crate::support::http::{FAILURE_BODY, HttpServer};
use crate::support::smtp::SmtpServer;
use crate::support::tls::TestCa;
use crate::support::{free_port, install_crypto};

/// The environment the senders see in these tests (never the process's).
fn env(name: &str) -> Option<String> {
    match name {
        "WK_IT_FROM" => Some("Watchkeeper <alerts@example.com>".into()),
        "WK_IT_SMS_TOKEN" => Some("tok-123".into()),
        "WK_IT_SMTP_PASSWORD" => Some("hunter2-smtp".into()),
        _ => None,
    }
}

fn message(kind: MessageKind) -> AlertMessage {
    AlertMessage {
        kind,
        severity: Severity::Fatal,
        project: "shop".into(),
        server: Some("web-01".into()),
        host: "203.0.113.10".into(),
        what: "port 80 of web-01-ports".into(),
        detail: "connection refused".into(),
        started_at_ms: 1_796_054_400_000,
        at_ms: 1_796_054_400_000,
        alert_id: Some(42),
    }
}

pub(crate) fn channel(name: &str, type_: ChannelType) -> Channel {
    Channel {
        origin: None,
        name: name.into(),
        type_,
        smtp: None,
        from: None,
        to: Vec::new(),
        url: None,
        headers: BTreeMap::new(),
        body: None,
        format: WebhookFormat::Json,
        track_reads: false,
        read_receipt_to: None,
        bounces: None,
        delivery_reports: None,
    }
}

fn email_channel(port: u16, tls: SmtpTls) -> Channel {
    Channel {
        smtp: Some(SmtpSettings { host: "127.0.0.1".into(), port, tls, username: None, password: None, ca_file: None }),
        from: Some("${WK_IT_FROM}".into()),
        ..channel("ops-mail", ChannelType::Email)
    }
}

fn row(channel: &str, medium: Medium, recipient: &str, subject: &str, body: &str) -> OutboxRow {
    OutboxRow {
        id: 7,
        alert_id: Some(42),
        channel: channel.into(),
        medium,
        recipient: recipient.into(),
        subject: subject.into(),
        body: body.into(),
        kind: MessageKind::Fired,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_ms: 0,
        reason: None,
        last_error: None,
        created_ms: 1234,
        sent_ms: None,
        html: None,
        attachment: None,
        read_ms: None,
        receipt_ms: None,
    }
}

fn senders() -> Senders {
    install_crypto();
    Senders::with_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn email_reaches_the_smtp_server_with_from_to_and_a_korean_subject() {
    let smtp = SmtpServer::start();
    let senders = senders();
    let channel = email_channel(smtp.port, SmtpTls::None);
    let ko = render(&message(MessageKind::Fired), Language::Ko, "Asia/Seoul");
    let en = render(&message(MessageKind::Resolved), Language::En, "Asia/Seoul");
    senders.send(&channel, &row("ops-mail", Medium::Email, "alice@example.com", &ko.subject, &ko.text), &env).await.expect("korean mail");
    senders.send(&channel, &row("ops-mail", Medium::Email, "bob@example.com", &en.subject, &en.text), &env).await.expect("english mail");

    let mails = smtp.wait_for(2, Duration::from_secs(10));
    let alice = mails.iter().find(|m| m.to == "alice@example.com").expect("alice's mail");
    assert_eq!(alice.from, "Watchkeeper <alerts@example.com>", "`from` is expanded from the environment");
    assert_eq!(alice.subject, "[watchkeeper] 장애 발생 (위험): shop/web-01 port 80 of web-01-ports");
    assert_eq!(alice.content_type, "text/plain");
    assert!(alice.body.contains("장애가 발생했습니다 (위험)"), "{}", alice.body);
    assert!(alice.body.contains("발생 시각: 2026-12-01 01:00:00 KST"), "{}", alice.body);
    assert_eq!(alice.message_id, "<notification.7.1234@example.com>");
    let bob = mails.iter().find(|m| m.to == "bob@example.com").expect("bob's mail");
    assert_eq!(bob.subject, en.subject);
    assert!(bob.body.contains("Duration:"), "{}", bob.body);
}

#[tokio::test]
async fn smtp_server_down_is_a_connection_refused_error() {
    let senders = senders();
    let channel = email_channel(free_port(), SmtpTls::None);
    let err = senders.send(&channel, &row("ops-mail", Medium::Email, "a@example.com", "s", "b"), &env).await.expect_err("nobody listens");
    assert!(matches!(err, SendError::Smtp { permanent: false, .. }), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    assert!(!err.is_permanent(), "an outage is retried");
}

#[tokio::test]
async fn starttls_is_never_downgraded_and_errors_hold_no_password() {
    // aiosmtpd here offers neither STARTTLS nor AUTH: a channel that requires them must fail
    // instead of sending the password or the mail in clear text.
    let smtp = SmtpServer::start();
    let senders = senders();
    let mut channel = email_channel(smtp.port, SmtpTls::Starttls);
    let settings = channel.smtp.as_mut().expect("smtp settings");
    settings.username = Some("alerts".into());
    settings.password = Some("${WK_IT_SMTP_PASSWORD}".into());
    let err = senders.send(&channel, &row("ops-mail", Medium::Email, "a@example.com", "s", "b"), &env).await.expect_err("no STARTTLS");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let mut plain = email_channel(smtp.port, SmtpTls::None);
    plain.smtp.as_mut().expect("smtp").password = Some("${WK_IT_SMTP_PASSWORD}".into());
    let err = senders.send(&plain, &row("ops-mail", Medium::Email, "a@example.com", "s", "b"), &env).await.expect_err("no AUTH");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(smtp.messages().is_empty(), "nothing may be delivered");
}

#[tokio::test]
async fn sms_body_template_is_filled_and_headers_sent() {
    let http = HttpServer::start().await;
    let senders = senders();
    let mut sms = channel("ops-sms", ChannelType::Sms);
    sms.url = Some(http.url("/send?from=wk"));
    sms.headers.insert("Authorization".into(), "Bearer ${WK_IT_SMS_TOKEN}".into());
    sms.body = Some(r#"{"to":"{{phone}}","text":"{{text}}","unit":"${WK_IT_SMS_TOKEN}"}"#.into());
    // Quotes, a newline, Korean and a `${…}` in the text must arrive as written.
    let text = "[watchkeeper] 장애(위험) \"web\"\n${WK_IT_SMS_TOKEN} {{phone}}";
    senders.send(&sms, &row("ops-sms", Medium::Sms, "+821011112222", "subject", text), &env).await.expect("sms sent");

    let requests = http.wait_for(1, Duration::from_secs(5)).await;
    let req = &requests[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/send?from=wk");
    assert_eq!(req.headers.get("authorization").map(String::as_str), Some("Bearer tok-123"));
    assert_eq!(req.headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(req.json(), json!({"to": "+821011112222", "text": text, "unit": "tok-123"}));
}

#[tokio::test]
async fn sms_form_template_is_percent_encoded() {
    let http = HttpServer::start().await;
    let senders = senders();
    let mut sms = channel("ops-sms", ChannelType::Sms);
    sms.url = Some(http.url("/send"));
    sms.headers.insert("Content-Type".into(), "application/x-www-form-urlencoded".into());
    sms.body = Some("to={{phone}}&msg={{text}}".into());
    senders.send(&sms, &row("ops-sms", Medium::Sms, "+821011112222", "s", "down & out 복구"), &env).await.expect("sms sent");
    let req = &http.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(req.body, "to=%2B821011112222&msg=down%20%26%20out%20%EB%B3%B5%EA%B5%AC");
    assert_eq!(req.headers.get("content-type").map(String::as_str), Some("application/x-www-form-urlencoded"));
}

#[tokio::test]
async fn slack_and_json_webhooks() {
    let http = HttpServer::start().await;
    let senders = senders();
    let payload = json_payload(&message(MessageKind::Fired), "Asia/Seoul");
    let hook_env = |name: &str| (name == "WK_IT_HOOK").then(|| http.url("/services/T000/B000/secret"));

    let mut slack = channel("ops-slack", ChannelType::Webhook);
    slack.url = Some("${WK_IT_HOOK}".into());
    slack.format = WebhookFormat::Slack;
    senders.send(&slack, &row("ops-slack", Medium::Webhook, "ops-slack", "s", &payload.to_string()), &hook_env).await.expect("slack");

    let mut generic = channel("ops-json", ChannelType::Webhook);
    generic.url = Some(http.url("/wk"));
    senders.send(&generic, &row("ops-json", Medium::Webhook, "ops-json", "s", &payload.to_string()), &hook_env).await.expect("json");

    let requests = http.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(requests[0].path, "/services/T000/B000/secret");
    assert_eq!(requests[0].headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(
        requests[0].json(),
        json!({"text": "[watchkeeper] Alert fired (fatal): port 80 of web-01-ports on shop/web-01 (connection refused)"})
    );
    assert_eq!(requests[1].path, "/wk");
    let body = requests[1].json();
    assert_eq!(body, payload);
    assert_eq!(body["kind"], "fired");
    assert_eq!(body["started_at"], "2026-12-01T01:00:00+09:00");
    assert_eq!(body["alert_id"], 42);
}

#[tokio::test]
async fn http_500_is_a_retryable_error_with_status_and_excerpt_but_no_secret() {
    let http = HttpServer::failing_first(1).await;
    let senders = senders();
    let hook_env = |name: &str| (name == "WK_IT_HOOK").then(|| http.url("/hook/secret-token"));
    let mut hook = channel("ops-json", ChannelType::Webhook);
    hook.url = Some("${WK_IT_HOOK}".into());
    let r = row("ops-json", Medium::Webhook, "ops-json", "s", "{}");

    let err = senders.send(&hook, &r, &hook_env).await.expect_err("first request fails");
    match &err {
        SendError::Status { status, excerpt } => {
            assert_eq!(*status, 500);
            assert_eq!(excerpt, &FAILURE_BODY.replace('\n', " "));
        }
        other => panic!("expected an HTTP status error, got {other:?}"),
    }
    assert!(!err.is_permanent());
    assert!(!err.to_string().contains("secret-token"), "{err}");
    senders.send(&hook, &r, &hook_env).await.expect("second request succeeds");
    assert_eq!(http.requests().len(), 2);

    // Nobody listening: the error names the failure, not the URL with its token.
    let closed = format!("http://127.0.0.1:{}/hook/secret-token", free_port());
    let err = senders.send(&hook, &r, &|name: &str| (name == "WK_IT_HOOK").then(|| closed.clone())).await.expect_err("refused");
    assert!(matches!(err, SendError::Http(_)), "{err:?}");
    assert!(!err.to_string().contains("secret-token"), "{err}");
}

#[tokio::test]
async fn missing_environment_variable_is_named_and_nothing_is_sent() {
    let http = HttpServer::start().await;
    let senders = senders();
    let mut sms = channel("ops-sms", ChannelType::Sms);
    sms.url = Some(http.url("/send"));
    sms.headers.insert("Authorization".into(), "Bearer ${WK_IT_UNSET_TOKEN}".into());
    let err = senders.send(&sms, &row("ops-sms", Medium::Sms, "+821011112222", "s", "t"), &env).await.expect_err("unset variable");
    assert_eq!(err.to_string(), "channel `ops-sms`: environment variable `WK_IT_UNSET_TOKEN` is not set");
    assert!(http.requests().is_empty());
}

/// A project with three members and one e-mail channel to `smtp_port`, compiled by the same
/// path serve uses.
fn outage_config(smtp_port: u16) -> (tempfile::TempDir, Config) {
    let tree = tempfile::tempdir().expect("temp dir");
    let files = [
        (
            "people.yaml",
            "kind: User\nemail: alice@example.com\nname: Alice\nlanguage: ko\n---\n\
             kind: User\nemail: bob@example.com\nname: Bob\n---\n\
             kind: User\nemail: carol@example.com\nname: Carol\n"
                .to_string(),
        ),
        (
            "project.yaml",
            "kind: Project\nname: shop\ntimezone: Asia/Seoul\nchannels: [ops-mail]\nmembers:\n\
             \x20 - { user: alice@example.com, role: admin }\n\
             \x20 - { user: bob@example.com, role: user }\n\
             \x20 - { user: carol@example.com, role: user }\n"
                .to_string(),
        ),
        (
            "channels.yaml",
            format!(
                "kind: Channel\nname: ops-mail\ntype: email\nsmtp: {{ host: 127.0.0.1, port: {smtp_port}, tls: none }}\n\
                 from: \"watchkeeper <alerts@example.com>\"\n"
            ),
        ),
    ];
    for (name, text) in files {
        std::fs::write(tree.path().join(name), text).expect("write tree");
    }
    let loaded = watchkeeper::config::load_dir(tree.path(), &watchkeeper::config::Library::Builtin);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    (tree, loaded.config)
}

/// Fire an alert on port `port` and enqueue its notifications for `config`'s project members.
async fn fire(store: &Store, config: &Config, port: u16) -> i64 {
    let now = jiff::Timestamp::now().as_millisecond();
    let notifications = build_notifications(config, "shop", &port_message(port, now), None, None, now);
    assert_eq!(notifications.len(), 3, "{notifications:#?}");
    open_alert(store, port, &notifications).await
}

fn port_message(port: u16, now: i64) -> AlertMessage {
    AlertMessage {
        what: format!("port {port} of web-01-ports"),
        started_at_ms: now,
        at_ms: now,
        alert_id: None,
        ..message(MessageKind::Fired)
    }
}

/// Open a firing alert on port `port` with `notifications` in the same transaction, as the
/// engine does; its id.
async fn open_alert(store: &Store, port: u16, notifications: &[NewNotification]) -> i64 {
    let now = jiff::Timestamp::now().as_millisecond();
    let key = InstanceKey {
        project: "shop".into(),
        server: String::new(),
        rule: "port:web-01-ports".parse().unwrap(),
        subject: port.to_string(),
    };
    let state = AlertState { phase: Phase::Firing { since_ms: now, severity: Severity::Fatal }, failures: 3, ..AlertState::default() };
    let open = AlertChange::Open {
        severity: Severity::Fatal,
        started_at_ms: now,
        message: port_message(port, now).what,
        host: "203.0.113.10".into(),
        snapshot: json!({}),
    };
    store.apply_alert(&key, &state, None, Some(&open), notifications, now).await.expect("apply alert").expect("an open alert id")
}

/// Poll `check` every 50 ms until it holds; panic after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outbox worker as serve runs it, over a fresh SQLite store.
struct Outbox {
    store: Store,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
    /// Ports of the alerts `queue` opened, so each is a new one.
    next_port: AtomicU16,
    _config: watch::Sender<Arc<Config>>,
    _db: tempfile::TempDir,
}

impl Outbox {
    async fn start(config: Arc<Config>) -> Outbox {
        let db = tempfile::tempdir().expect("temp dir");
        let store = Store::connect(&format!("sqlite://{}", db.path().join("wk.db").display())).await.expect("store");
        let (config_tx, config_rx) = watch::channel(config);
        let (wake, cancel, metrics) = (Arc::new(Notify::new()), CancellationToken::new(), Arc::new(Metrics::new()));
        let worker = tokio::spawn(run_outbox(
            store.clone(),
            config_rx,
            senders(),
            metrics.clone(),
            "replica-1".into(),
            wake.clone(),
            cancel.clone(),
        ));
        Outbox { store, wake, cancel, worker, metrics, next_port: AtomicU16::new(1), _config: config_tx, _db: db }
    }

    /// An outbox whose configuration holds `channels` and nothing else.
    async fn with_channels(channels: impl IntoIterator<Item = Channel>) -> Outbox {
        let channels = channels.into_iter().map(|c| (c.name.clone(), c)).collect();
        Outbox::start(Arc::new(Config { channels, ..Config::default() })).await
    }

    /// Queue one notification per recipient through `channel`, as one new alert's; the alert.
    async fn queue(&self, channel: &Channel, recipients: &[&str]) -> i64 {
        let notifications: Vec<NewNotification> = recipients
            .iter()
            .map(|to| NewNotification {
                channel: channel.name.clone(),
                medium: channel.type_,
                recipient: to.to_string(),
                subject: format!("port down for {to}"),
                body: "the port is down".into(),
                kind: MessageKind::Fired,
                status: DeliveryStatus::Pending,
                reason: None,
            })
            .collect();
        let alert = open_alert(&self.store, self.next_port.fetch_add(1, Ordering::Relaxed), &notifications).await;
        self.wake.notify_one();
        alert
    }

    /// `alert`'s notifications with their attempts, by recipient.
    async fn notifications(&self, alert: i64) -> BTreeMap<String, (OutboxRow, Vec<Attempt>)> {
        let rows = self.store.notifications_for_alert(alert).await.expect("notifications");
        rows.into_iter().map(|(row, attempts)| (row.recipient.clone(), (row, attempts))).collect()
    }

    /// Wait until none of `alert`'s notifications is pending; them, by recipient.
    async fn settled(&self, alert: i64, timeout: Duration) -> BTreeMap<String, (OutboxRow, Vec<Attempt>)> {
        let start = Instant::now();
        loop {
            let rows = self.notifications(alert).await;
            if rows.values().all(|(row, _)| row.status != DeliveryStatus::Pending) {
                return rows;
            }
            assert!(start.elapsed() < timeout, "notifications still pending after {timeout:?}: {rows:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.worker).await.expect("worker stops promptly").expect("worker did not panic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rides_out_an_smtp_outage_and_delivers_every_mail_exactly_once() {
    install_crypto();
    let mut smtp = SmtpServer::start();
    let (_tree, config) = outage_config(smtp.port);
    let config = Arc::new(config);
    let outbox = Outbox::start(config.clone()).await;
    let store = &outbox.store;
    let mail_count = |smtp: &SmtpServer| smtp.message_files().len();

    // 1. SMTP up: the first alert's three mails go out.
    let first = fire(store, &config, 80).await;
    outbox.wake.notify_one();
    eventually("the first three mails", Duration::from_secs(15), || async { mail_count(&smtp) == 3 }).await;

    // 2. SMTP down: the second alert's mails stay pending, each attempt logged with its error.
    smtp.stop();
    let second = fire(store, &config, 443).await;
    outbox.wake.notify_one();
    let attempted = || async {
        let rows = store.notifications_for_alert(second).await.expect("notifications");
        rows.len() == 3 && rows.iter().all(|(row, attempts)| row.status == DeliveryStatus::Pending && !attempts.is_empty())
    };
    eventually("failed attempts while SMTP is down", Duration::from_secs(15), attempted).await;
    for (row, attempts) in store.notifications_for_alert(second).await.expect("notifications") {
        assert_eq!(row.attempts as usize, attempts.len());
        assert!(attempts.iter().all(|a| !a.ok), "{attempts:?}");
        let error = row.last_error.expect("last error recorded").to_lowercase();
        assert!(error.contains("refused"), "{error}");
        assert!(row.next_attempt_ms > jiff::Timestamp::now().as_millisecond() - 1000, "a retry is scheduled");
    }
    assert_eq!(mail_count(&smtp), 3);

    // 3. SMTP back on the same port: the retry (5 s after the first failure) delivers them.
    smtp.resume();
    eventually("the second alert's mails after the outage", Duration::from_secs(30), || async { mail_count(&smtp) == 6 }).await;
    eventually("every notification recorded as sent", Duration::from_secs(10), || async {
        let mut all = store.notifications_for_alert(first).await.expect("first");
        all.extend(store.notifications_for_alert(second).await.expect("second"));
        all.iter().all(|(row, _)| row.status == DeliveryStatus::Sent)
    })
    .await;

    // Exactly once: nothing more arrives, and each (recipient, alert) got one mail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mails = smtp.messages();
    assert_eq!(mails.len(), 6, "{mails:#?}");
    let distinct: BTreeSet<(String, String)> = mails.iter().map(|m| (m.to.clone(), m.subject.clone())).collect();
    assert_eq!(distinct.len(), 6, "{mails:#?}");
    let alice = mails.iter().filter(|m| m.to == "alice@example.com").count();
    assert_eq!(alice, 2);
    assert!(mails.iter().any(|m| m.to == "alice@example.com" && m.subject.contains("장애 발생")), "alice reads Korean");
    assert_eq!(store.outbox_depth().await.expect("depth"), 0);

    let metrics = outbox.metrics.clone();
    outbox.stop().await;
    let rendered = metrics.render();
    assert!(rendered.contains(r#"watchkeeper_notifications_total{medium="email",result="ok"} 6"#), "{rendered}");
    assert!(rendered.contains(r#"watchkeeper_notifications_total{medium="email",result="failed"}"#), "{rendered}");
}

/// An e-mail channel for the outbox, which expands `${ENV}` from the process's environment:
/// settings written out.
fn outbox_email_channel(port: u16, tls: SmtpTls) -> Channel {
    Channel { from: Some("Watchkeeper <alerts@example.com>".into()), ..email_channel(port, tls) }
}

/// One attempt's error, which must be there.
fn error_of(attempt: &Attempt) -> &str {
    attempt.error.as_deref().unwrap_or_else(|| panic!("a failed attempt records its error: {attempt:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_550_fails_at_once_and_451_is_retried_until_delivered() {
    let smtp = SmtpServer::start();
    let channel = outbox_email_channel(smtp.port, SmtpTls::None);
    let outbox = Outbox::with_channels([channel.clone()]).await;
    // The server refuses `rcpt-550` at RCPT and `data-550`'s message at DATA with 550, answers
    // `busy-451`'s first RCPT with 451, and takes everything else.
    let recipients = ["rcpt-550@example.com", "data-550@example.com", "busy-451@example.com", "ok@example.com"];
    let alert = outbox.queue(&channel, &recipients).await;
    let rows = outbox.settled(alert, Duration::from_secs(60)).await;

    for (to, reply) in [("rcpt-550@example.com", "no such user here"), ("data-550@example.com", "message refused by policy")] {
        let (row, attempts) = &rows[to];
        assert_eq!(row.status, DeliveryStatus::Failed, "{to}: {row:#?}");
        assert_eq!((row.attempts, attempts.len()), (1, 1), "{to} is given up after its first attempt: {attempts:#?}");
        let error = row.last_error.as_deref().expect("the server's reply is stored");
        assert!(error.contains("550") && error.contains(reply), "{to}: {error}");
        assert_eq!(error_of(&attempts[0]), error);
    }
    let (busy, attempts) = &rows["busy-451@example.com"];
    assert_eq!(busy.status, DeliveryStatus::Sent, "{busy:#?}");
    assert_eq!(busy.attempts, 2, "one 451, then delivered: {attempts:#?}");
    assert!(!attempts[0].ok && error_of(&attempts[0]).contains("451"), "{attempts:#?}");
    assert!(attempts[1].ok, "{attempts:#?}");
    assert_eq!(rows["ok@example.com"].0.status, DeliveryStatus::Sent);
    assert_eq!(rows["ok@example.com"].0.attempts, 1);

    let mut delivered: Vec<String> = smtp.messages().into_iter().map(|m| m.to).collect();
    delivered.sort();
    assert_eq!(delivered, ["busy-451@example.com", "ok@example.com"], "one mail each, none for the refused");
    // The 451 retry came 5 s after its first attempt; the refused were not tried again meanwhile.
    let again = outbox.notifications(alert).await;
    assert_eq!((again["rcpt-550@example.com"].0.attempts, again["data-550@example.com"].0.attempts), (1, 1));
    outbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_gateway_4xx_fails_at_once_and_5xx_and_429_are_retried() {
    install_crypto();
    // Three gateways: each answers its first request with one status, then 200.
    let mut gateways = BTreeMap::new();
    for status in [400, 429, 503] {
        gateways.insert(status, HttpServer::answering_first(&[status]).await);
    }
    let sms_channel =
        |status: u16| Channel { url: Some(gateways[&status].url("/send")), ..channel(&format!("sms-{status}"), ChannelType::Sms) };
    let outbox = Outbox::with_channels([400, 429, 503].map(sms_channel)).await;
    let mut alerts = BTreeMap::new();
    for status in [400, 429, 503] {
        alerts.insert(status, outbox.queue(&sms_channel(status), &["+821011112222"]).await);
    }
    let mut settled = BTreeMap::new();
    for (status, alert) in alerts {
        let mut rows = outbox.settled(alert, Duration::from_secs(60)).await;
        settled.insert(status, rows.remove("+821011112222").expect("the notification"));
    }

    let (refused, attempts) = &settled[&400];
    assert_eq!(refused.status, DeliveryStatus::Failed, "{refused:#?}");
    assert_eq!((refused.attempts, attempts.len()), (1, 1), "a 4xx is not retried: {attempts:#?}");
    let error = refused.last_error.as_deref().expect("the error is stored");
    assert_eq!(error, format!("gateway answered HTTP 400: {}", FAILURE_BODY.replace('\n', " ")));
    for status in [429, 503] {
        let (row, attempts) = &settled[&status];
        assert_eq!(row.status, DeliveryStatus::Sent, "{status}: {row:#?}");
        assert_eq!(row.attempts, 2, "{status}, then 200: {attempts:#?}");
        assert!(error_of(&attempts[0]).contains(&format!("HTTP {status}")), "{attempts:#?}");
    }
    assert_eq!(gateways[&400].requests().len(), 1, "the refused SMS was not sent again");
    assert_eq!(gateways[&429].requests().len(), 2);
    assert_eq!(gateways[&503].requests().len(), 2);
    outbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_with_auth_deliver_to_a_server_trusted_through_the_channels_ca_file() {
    install_crypto();
    // Both servers have a certificate from a private CA and take mail only after AUTH (and,
    // the first, only after STARTTLS).
    let ca = TestCa::new();
    let starttls = SmtpServer::start_secure("starttls", &ca, "alerts", "s3cret-smtp");
    let implicit = SmtpServer::start_secure("tls", &ca, "alerts", "s3cret-smtp");

    // The channels as serve reads them: YAML whose `ca_file` is relative to the channel's file.
    let tree = tempfile::tempdir().expect("temp dir");
    let dir = tree.path().join("channels");
    std::fs::create_dir_all(&dir).expect("channels dir");
    std::fs::copy(ca.ca_file(), dir.join("internal-ca.pem")).expect("copy the CA certificate");
    let channel = |name: &str, port: u16, tls: &str, password: &str, ca_file: &str| {
        format!(
            "kind: Channel\nname: {name}\ntype: email\nfrom: \"watchkeeper <alerts@example.com>\"\n\
             smtp: {{ host: 127.0.0.1, port: {port}, tls: {tls}, username: alerts, password: {password}{ca_file} }}\n"
        )
    };
    let trusted = ", ca_file: internal-ca.pem";
    let yaml = [
        channel("mail-starttls", starttls.port, "starttls", "s3cret-smtp", trusted),
        channel("mail-tls", implicit.port, "tls", "s3cret-smtp", trusted),
        channel("mail-wrong-password", starttls.port, "starttls", "not-the-password", trusted),
        channel("mail-untrusted", starttls.port, "starttls", "s3cret-smtp", ""),
    ]
    .join("---\n");
    std::fs::write(dir.join("mail.yaml"), yaml).expect("write the channels");
    let loaded = watchkeeper::config::load_dir(tree.path(), &watchkeeper::config::Library::Builtin);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let config = loaded.config;
    let resolved = config.channels["mail-tls"].smtp.as_ref().and_then(|s| s.ca_file.clone());
    assert_eq!(resolved, Some(std::path::absolute(dir.join("internal-ca.pem")).unwrap()));

    let outbox = Outbox::start(Arc::new(config.clone())).await;
    let mut alerts = BTreeMap::new();
    for name in ["mail-starttls", "mail-tls", "mail-wrong-password", "mail-untrusted"] {
        alerts.insert(name, outbox.queue(&config.channels[name], &[&format!("{name}@example.com")]).await);
    }
    let mut settled = BTreeMap::new();
    for name in ["mail-starttls", "mail-tls", "mail-wrong-password"] {
        let mut rows = outbox.settled(alerts[name], Duration::from_secs(60)).await;
        settled.insert(name, rows.remove(&format!("{name}@example.com")).expect("the notification"));
    }

    for name in ["mail-starttls", "mail-tls"] {
        let (row, attempts) = &settled[name];
        assert_eq!(row.status, DeliveryStatus::Sent, "{name}: {attempts:#?}");
        assert_eq!(row.attempts, 1, "{name}");
    }
    let to = |server: &SmtpServer| server.messages().into_iter().map(|m| m.to).collect::<Vec<_>>();
    assert_eq!(to(&starttls), ["mail-starttls@example.com"], "only the right password and the trusted CA get mail through");
    assert_eq!(to(&implicit), ["mail-tls@example.com"]);

    let (refused, attempts) = &settled["mail-wrong-password"];
    assert_eq!(refused.status, DeliveryStatus::Failed, "a refused password is not retried: {attempts:#?}");
    assert_eq!(refused.attempts, 1);
    let error = refused.last_error.as_deref().expect("the error is stored");
    assert!(error.contains("535") && error.contains("Authentication credentials invalid"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");

    // Without the CA file the server's certificate is not trusted: nothing is sent in clear,
    // and the failure is retried (the file may be put in place).
    eventually("the untrusted channel's first attempt", Duration::from_secs(30), || async {
        outbox.notifications(alerts["mail-untrusted"]).await.values().all(|(row, _)| row.attempts >= 1)
    })
    .await;
    let (untrusted, _) = outbox.notifications(alerts["mail-untrusted"]).await.remove("mail-untrusted@example.com").expect("notification");
    assert_eq!(untrusted.status, DeliveryStatus::Pending, "{untrusted:#?}");
    let error = untrusted.last_error.expect("the error is stored");
    assert!(error.contains("UnknownIssuer"), "{error}");
    outbox.stop().await;
}
