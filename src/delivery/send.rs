//! Senders: one outbox row out through its channel — SMTP (lettre), an HTTP SMS gateway, or a
//! webhook (reqwest) — returning what the notification can later be recognised by (its
//! Message-ID, the gateway's message id, its read-receipt image). `${ENV}` references are
//! expanded here, at send time, and never appear in errors or logs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rustls::pki_types::CertificateDer;
use serde_json::Value;

use crate::config::model::{Channel, DEFAULT_SMS_BODY};
use crate::config::raw::{SmtpTls, WebhookFormat};
use crate::config::{MissingEnv, expand_env, read_ca_file};
use crate::errors::{error_chain, one_line};
use crate::notification::{Medium, slack_payload};
use crate::store::{OutboxRow, Tracking};
use crate::token;

/// The type of a report's attachment.
fn text_csv() -> ContentType {
    ContentType::parse("text/csv; charset=utf-8").unwrap_or(ContentType::TEXT_PLAIN)
}

/// How long one network operation may take (connect, one SMTP command, one HTTP exchange).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this much of an HTTP error response is kept in the delivery log.
const EXCERPT_CHARS: usize = 200;
/// At most this much of an SMS gateway's answer is read for its message id.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a send failed. Every message is safe to store and show: it names channels, settings and
/// environment variables, never their expanded values.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("channel `{channel}`: {source}")]
    Env {
        channel: String,
        #[source]
        source: MissingEnv,
    },
    /// The row was queued for another medium than the channel now has (the config changed).
    #[error("channel `{channel}` is now a {actual} channel, not {wanted}")]
    WrongMedium { channel: String, actual: &'static str, wanted: &'static str },
    #[error("channel `{channel}` has no {what}")]
    Incomplete { channel: String, what: &'static str },
    #[error("invalid {what} `{value}`: {reason}")]
    Address { what: &'static str, value: String, reason: String },
    #[error("smtp: {message}")]
    Smtp {
        message: String,
        /// The server answered 5xx: retrying the same message cannot succeed.
        permanent: bool,
    },
    #[error("http: {0}")]
    Http(String),
    #[error("gateway answered HTTP {status}: {excerpt}")]
    Status { status: u16, excerpt: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot make a read-receipt id: {0}")]
    Random(String),
}

impl SendError {
    /// Whether retrying this row can never help (the outbox then gives up at once): an SMTP 5xx
    /// reply, an HTTP 4xx answer other than 408 (timeout) and 429 (too many requests) — the
    /// gateway refused this request as it is — a bad address, a changed channel. A missing
    /// `${ENV}`, a bad URL, an unreachable server, an SMTP 4xx and an HTTP 5xx, 408 or 429 are
    /// retried: a restart with the variable set, or the server coming back, delivers what is
    /// still pending.
    pub fn is_permanent(&self) -> bool {
        match self {
            SendError::WrongMedium { .. } | SendError::Incomplete { .. } | SendError::Address { .. } => true,
            SendError::Smtp { permanent, .. } => *permanent,
            SendError::Status { status, .. } => (400..500).contains(status) && !matches!(status, 408 | 429),
            SendError::Env { .. } | SendError::Http(_) | SendError::Timeout(_) | SendError::Random(_) => false,
        }
    }
}

/// The network clients: one HTTP client for SMS gateways and webhooks, one pooled SMTP
/// transport per e-mail channel (rebuilt when the channel's expanded settings change).
pub struct Senders {
    /// The HTTP client, or why it could not be built (then SMS and webhooks fail with that
    /// error in the delivery log, and e-mail still works).
    http: Result<reqwest::Client, String>,
    smtp: Mutex<HashMap<String, CachedSmtp>>,
    timeout: Duration,
    /// serve's `--public-url`, without a trailing `/`: read-receipt images live under it.
    public_url: Option<String>,
}

impl std::fmt::Debug for Senders {
    // Hand-written: the cached settings hold expanded passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channels: Vec<String> = self.smtp.lock().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("Senders").field("smtp_channels", &channels).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Default for Senders {
    fn default() -> Senders {
        Senders::new()
    }
}

struct CachedSmtp {
    settings: SmtpKey,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// Expanded SMTP settings: what a cached transport was built from.
#[derive(PartialEq, Eq)]
struct SmtpKey {
    host: String,
    port: u16,
    tls: SmtpTls,
    username: Option<String>,
    password: Option<String>,
    /// The channel's CA file's certificates, as read for this send.
    ca: Vec<CertificateDer<'static>>,
}

type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

impl Senders {
    /// Senders with [`DEFAULT_TIMEOUT`].
    pub fn new() -> Senders {
        Senders::with_timeout(DEFAULT_TIMEOUT)
    }

    /// `timeout` bounds each network operation; a whole SMTP transaction gets three times it.
    /// Never fails: should the HTTP client not build (no usable TLS roots), that is logged
    /// once at ERROR and every SMS and webhook attempt records it, while e-mail keeps working.
    pub fn with_timeout(timeout: Duration) -> Senders {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("watchkeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e.without_url())));
        if let Err(error) = &http {
            tracing::error!(%error, "SMS and webhook notifications cannot be sent");
        }
        Senders { http, smtp: Mutex::new(HashMap::new()), timeout, public_url: None }
    }

    /// Read-receipt images (channels with `track_reads`) are `<public_url>/r/<id>.png`. Without
    /// a public URL, such channels send their mails without one.
    pub fn with_public_url(mut self, public_url: Option<&str>) -> Senders {
        self.public_url = public_url.map(|u| u.trim_end_matches('/').to_string());
        self
    }

    fn http(&self) -> Result<&reqwest::Client, SendError> {
        self.http.as_ref().map_err(|e| SendError::Http(e.clone()))
    }

    /// Send one outbox row through `channel`, expanding `${ENV}` in the channel's settings
    /// through `env` (serve passes the process environment). Returns what the notification can
    /// be recognised by later, to be stored with it.
    pub async fn send(&self, channel: &Channel, row: &OutboxRow, env: Env<'_>) -> Result<Tracking, SendError> {
        let (actual, wanted) = (channel.type_.as_str(), row.medium.as_str());
        if actual != wanted {
            return Err(SendError::WrongMedium { channel: channel.name.clone(), actual, wanted });
        }
        match row.medium {
            Medium::Email => self.send_email(channel, row, env).await,
            Medium::Sms => self.send_sms(channel, row, env).await,
            Medium::Webhook => self.send_webhook(channel, row, env).await.map(|_| Tracking::default()),
        }
    }

    async fn send_email(&self, channel: &Channel, row: &OutboxRow, env: Env<'_>) -> Result<Tracking, SendError> {
        let expand = |text: &str| expand_env(text, env).map_err(|source| SendError::Env { channel: channel.name.clone(), source });
        let smtp = channel.smtp.as_ref().ok_or_else(|| SendError::Incomplete { channel: channel.name.clone(), what: "smtp settings" })?;
        let from_text = channel.from.as_deref().ok_or_else(|| SendError::Incomplete { channel: channel.name.clone(), what: "`from`" })?;
        let key = SmtpKey {
            host: expand(&smtp.host)?,
            port: smtp.port,
            tls: smtp.tls,
            username: smtp.username.as_deref().map(expand).transpose()?,
            password: smtp.password.as_deref().map(expand).transpose()?,
            // Read at every send: a renewed CA file is used at once. A file gone since the tree
            // was checked is retried, like an outage, until someone puts it back.
            ca: match &smtp.ca_file {
                Some(path) => read_ca_file(path)
                    .map_err(|e| SendError::Smtp { message: format!("channel `{}`: {e}", channel.name), permanent: false })?,
                None => Vec::new(),
            },
        };
        let from: Mailbox = expand(from_text)?.parse().map_err(|e: lettre::address::AddressError| SendError::Address {
            what: "from address",
            value: from_text.to_string(),
            reason: e.to_string(),
        })?;
        let to: Mailbox = row.recipient.parse().map_err(|e: lettre::address::AddressError| SendError::Address {
            what: "recipient",
            value: row.recipient.clone(),
            reason: e.to_string(),
        })?;
        let receipt_to = match &channel.read_receipt_to {
            Some(written) => Some(expand(written)?.parse::<Mailbox>().map_err(|e| SendError::Address {
                what: "read_receipt_to address",
                value: written.clone(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        // A stable Message-ID per notification lets mail systems drop a duplicate should a
        // send be retried after the server accepted it but before we recorded that; a bounce
        // names it too.
        let message_id = format!("<notification.{}.{}@{}>", row.id, row.created_ms, from.email.domain());
        let mut builder = Message::builder().from(from).to(to).subject(row.subject.clone()).message_id(Some(message_id.clone()));
        if let Some(receipt_to) = receipt_to {
            builder = builder.header(DispositionNotificationTo(receipt_to));
        }
        let mut tracking = Tracking { message_id: Some(message_id), ..Tracking::default() };
        let built = match (&row.html, &row.attachment) {
            (None, None) => match self.read_receipt_url(channel)? {
                Some((url, token_sha256)) => {
                    tracking.read_token_sha256 = Some(token_sha256);
                    builder.multipart(MultiPart::alternative_plain_html(row.body.clone(), html_with_image(&row.body, &url)))
                }
                None => builder.header(ContentType::TEXT_PLAIN).body(row.body.clone()),
            },
            (html, attachment) => {
                // A report: the text and its HTML as alternatives, then the attachment.
                let text = match html {
                    Some(html) => MultiPart::alternative_plain_html(row.body.clone(), html.clone()),
                    None => MultiPart::mixed().singlepart(SinglePart::plain(row.body.clone())),
                };
                let mut mixed = MultiPart::mixed().multipart(text);
                if let Some((name, content)) = attachment {
                    mixed = mixed.singlepart(Attachment::new(name.clone()).body(content.clone(), text_csv()));
                }
                builder.multipart(mixed)
            }
        };
        let message =
            built.map_err(|e| SendError::Address { what: "message", value: format!("notification {}", row.id), reason: e.to_string() })?;

        let transport = self.transport(&channel.name, key)?;
        let total = self.timeout * 3;
        match tokio::time::timeout(total, transport.send(message)).await {
            Err(_) => Err(SendError::Timeout(total)),
            Ok(Ok(_response)) => Ok(tracking),
            Ok(Err(e)) if e.is_timeout() => Err(SendError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(SendError::Smtp { message: e.to_string(), permanent: e.is_permanent() }),
        }
    }

    /// A fresh read-receipt image URL and the SHA-256 of its id, when the channel tracks reads
    /// and serve has a public URL. The id is a 256-bit random token: unguessable, and only its
    /// hash is stored.
    fn read_receipt_url(&self, channel: &Channel) -> Result<Option<(String, String)>, SendError> {
        let Some(base) = self.public_url.as_deref().filter(|_| channel.track_reads) else {
            return Ok(None);
        };
        let id = token::generate().map_err(|e| SendError::Random(e.to_string()))?;
        Ok(Some((format!("{base}/r/{id}.png"), token::sha256_hex(&id))))
    }

    /// The channel's pooled transport, rebuilt when its expanded settings changed.
    fn transport(&self, channel: &str, key: SmtpKey) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let mut cache = self.smtp.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cached) = cache.get(channel).filter(|c| c.settings == key) {
            return Ok(cached.transport.clone());
        }
        let tls_params = || {
            let setup = |e: lettre::transport::smtp::Error| SendError::Smtp {
                message: format!("tls setup for `{}`: {e}", key.host),
                permanent: false,
            };
            let mut builder = TlsParameters::builder(key.host.clone());
            for certificate in &key.ca {
                builder = builder.add_root_certificate(Certificate::from_der(certificate.to_vec()).map_err(setup)?);
            }
            builder.build().map_err(setup)
        };
        let tls = match key.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_params()?),
            SmtpTls::Tls => Tls::Wrapper(tls_params()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(key.host.clone())
            .port(key.port)
            .tls(tls)
            .timeout(Some(self.timeout))
            .pool_config(PoolConfig::new().max_size(4).idle_timeout(Duration::from_secs(60)));
        if key.username.is_some() || key.password.is_some() {
            let credentials = Credentials::new(key.username.clone().unwrap_or_default(), key.password.clone().unwrap_or_default());
            builder = builder.credentials(credentials);
        }
        let transport = builder.build();
        cache.insert(channel.to_string(), CachedSmtp { settings: key, transport: transport.clone() });
        Ok(transport)
    }

    async fn send_sms(&self, channel: &Channel, row: &OutboxRow, env: Env<'_>) -> Result<Tracking, SendError> {
        let expand = |text: &str| expand_env(text, env).map_err(|source| SendError::Env { channel: channel.name.clone(), source });
        let url_template = channel.url.as_deref().ok_or_else(|| SendError::Incomplete { channel: channel.name.clone(), what: "`url`" })?;
        let template = expand(channel.body.as_deref().unwrap_or(DEFAULT_SMS_BODY))?;
        let headers = self.headers(channel, env)?;
        let content_type = headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let json_like = template.trim_start().starts_with(['{', '[']);
        let form = content_type.contains("x-www-form-urlencoded");
        // Only the channel's own settings are expanded: `${…}` in the message text stays text.
        let values = |name: &str| match name {
            "phone" => Some(row.recipient.as_str()),
            "text" => Some(row.body.as_str()),
            _ => None,
        };
        let body = fill(&template, |name| {
            values(name).map(|v| {
                if json_like {
                    json_escape(v)
                } else if form {
                    percent_encode(v)
                } else {
                    v.to_string()
                }
            })
        });
        let url = fill(&expand(url_template)?, |name| values(name).map(percent_encode));
        let mut request = self.http()?.post(url).headers(headers);
        if content_type.is_empty() {
            request =
                request.header(reqwest::header::CONTENT_TYPE, if json_like { "application/json" } else { "text/plain; charset=utf-8" });
        }
        let answer = self.execute(request.body(body)).await?;
        let Some(reports) = &channel.delivery_reports else {
            return Ok(Tracking::default());
        };
        let gateway_id = serde_json::from_str::<Value>(&answer).ok().and_then(|answer| reports.id.get(&answer));
        if gateway_id.is_none() {
            tracing::warn!(path = %reports.id, answer = %excerpt(&answer),
                "the SMS gateway's answer has no message id at the channel's delivery_reports.id; its delivery reports for this message cannot be matched");
        }
        Ok(Tracking { gateway_id, ..Tracking::default() })
    }

    async fn send_webhook(&self, channel: &Channel, row: &OutboxRow, env: Env<'_>) -> Result<(), SendError> {
        let url = channel.url.as_deref().ok_or_else(|| SendError::Incomplete { channel: channel.name.clone(), what: "`url`" })?;
        let url = expand_env(url, env).map_err(|source| SendError::Env { channel: channel.name.clone(), source })?;
        // The outbox stores the generic JSON payload; a Slack channel sends its `text`.
        let payload: Value = serde_json::from_str(&row.body).unwrap_or_else(|_| serde_json::json!({ "text": row.body }));
        let body = match channel.format {
            WebhookFormat::Json => payload,
            WebhookFormat::Slack => slack_payload(&payload),
        };
        let headers = self.headers(channel, env)?;
        self.execute(self.http()?.post(url).headers(headers).json(&body)).await.map(drop)
    }

    /// The channel's `headers`, expanded. Errors name the header, never its value.
    fn headers(&self, channel: &Channel, env: Env<'_>) -> Result<reqwest::header::HeaderMap, SendError> {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in &channel.headers {
            let value = expand_env(value, env).map_err(|source| SendError::Env { channel: channel.name.clone(), source })?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::Http(format!("channel `{}`: invalid header name `{name}`", channel.name)))?;
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| SendError::Http(format!("channel `{}`: header `{name}` has an invalid value", channel.name)))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        Ok(map)
    }

    /// Send the request; a 2xx answer's body (its first [`MAX_ANSWER_BYTES`], or nothing should
    /// it not arrive in time: the send itself succeeded).
    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<String, SendError> {
        let mut response = request.send().await.map_err(|e| self.http_error(e))?;
        let status = response.status();
        if status.is_success() {
            let mut answer = Vec::new();
            let read = tokio::time::timeout(self.timeout, async {
                while let Ok(Some(chunk)) = response.chunk().await {
                    answer.extend_from_slice(&chunk);
                    if answer.len() >= MAX_ANSWER_BYTES {
                        break;
                    }
                }
            });
            let _ = read.await;
            answer.truncate(MAX_ANSWER_BYTES);
            return Ok(String::from_utf8_lossy(&answer).into_owned());
        }
        let text = match tokio::time::timeout(self.timeout, response.text()).await {
            Ok(Ok(text)) => text,
            _ => String::new(),
        };
        Err(SendError::Status { status: status.as_u16(), excerpt: excerpt(&text) })
    }

    fn http_error(&self, e: reqwest::Error) -> SendError {
        if e.is_timeout() { SendError::Timeout(self.timeout) } else { SendError::Http(error_chain(&e.without_url())) }
    }
}

/// `Disposition-Notification-To` (RFC 8098): the address a recipient's mail program may send a
/// read receipt to, if its user agrees.
#[derive(Debug, Clone)]
struct DispositionNotificationTo(Mailbox);

impl Header for DispositionNotificationTo {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Disposition-Notification-To")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(DispositionNotificationTo(s.parse()?))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.to_string())
    }
}

/// The HTML part of a mail with a read-receipt image: the text as it is, and the image.
fn html_with_image(text: &str, image_url: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><body><pre style=\"font-family: inherit; white-space: pre-wrap\">{}</pre>\n<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\"></body></html>\n",
        html_escape(text),
        html_escape(image_url)
    )
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Replace `{{name}}` placeholders in one pass (a value containing `{{…}}` stays as it is);
/// unknown names are kept.
fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| value(after[..end].trim()).map(|v| (end, v))) {
            Some((end, v)) => {
                out.push_str(&v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `s` as the inside of a JSON string literal.
fn json_escape(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A short, single-line piece of an error response for the delivery log.
fn excerpt(text: &str) -> String {
    one_line(text, EXCERPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_substitutes_known_placeholders_once() {
        let v = |name: &str| match name {
            "phone" => Some("+8210".to_string()),
            "text" => Some("say {{phone}}".to_string()),
            _ => None,
        };
        assert_eq!(fill("{{phone}}|{{ text }}|{{other}}|{{", v), "+8210|say {{phone}}|{{other}}|{{");
    }

    #[test]
    fn escaping_for_json_and_forms() {
        assert_eq!(json_escape("a \"b\"\n한글\\"), "a \\\"b\\\"\\n한글\\\\");
        assert_eq!(percent_encode("+82 10&x=한"), "%2B82%2010%26x%3D%ED%95%9C");
    }

    #[test]
    fn the_html_part_escapes_the_text_and_carries_the_image() {
        let html = html_with_image("port <80> & \"web\"", "https://wk.example/r/abc.png");
        assert!(html.contains("port &lt;80&gt; &amp; &quot;web&quot;"), "{html}");
        assert!(html.contains(r#"<img src="https://wk.example/r/abc.png" width="1" height="1" alt="">"#), "{html}");
    }

    #[test]
    fn excerpt_is_short_and_single_line() {
        assert_eq!(excerpt("  oops\n\tbad  gateway \r\n"), "oops bad gateway");
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS + 1);
    }
}
