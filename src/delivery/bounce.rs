//! Bounces: delivery status notifications (RFC 3464, `multipart/report`) that arrive in an e-mail
//! channel's Maildir, matched to the notification they report by the Message-ID it was sent with,
//! which then becomes `failed` with the bounce's Status and Diagnostic-Code. Parts encoded in
//! base64 or quoted-printable are decoded first.
//!
//! A Maildir rather than IMAP: the mail system already delivers there (a local alias, procmail,
//! fetchmail or an IMAP sync tool can fill one), each message is one file that is moved once
//! handled, and nothing needs a mail password or a network session kept alive. Handled mail is
//! moved to `cur/` (flagged seen); mail that is not a bounce of ours is left in `new/` and logged
//! once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::Config;
use crate::store::Store;

/// Mail larger than this is not read (a bounce of one of our messages is a few kilobytes).
const MAX_BOUNCE_BYTES: u64 = 1024 * 1024;

/// What a bounce says about one of our mails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The Message-ID of the mail that bounced.
    pub message_id: String,
    /// Why, as the delivery log shows it.
    pub reason: String,
}

/// Read a bounce: the original Message-ID from the report's `message/rfc822` or
/// `text/rfc822-headers` part (else the first `Message-ID:` line in the body, for bounces that
/// quote the original without a report), and the reason from its `message/delivery-status` part
/// (the failed recipient's Status and Diagnostic-Code). An error says why it is not one.
pub fn parse_bounce(raw: &[u8]) -> Result<Bounce, String> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let (headers, body) = split_headers(&text);
    let content_type = header(&headers, "content-type").unwrap_or_default();
    let mut status = None;
    let mut original = None;
    if let Some(boundary) = boundary(&content_type) {
        for part in parts(body, &boundary) {
            let (part_headers, part_body) = split_headers(part);
            let part_body = decoded(&part_headers, part_body);
            let part_type = header(&part_headers, "content-type").unwrap_or_default().to_ascii_lowercase();
            if part_type.starts_with("message/delivery-status") {
                status = delivery_status(&part_body);
            } else if part_type.starts_with("message/rfc822") || part_type.starts_with("text/rfc822-headers") {
                original = header(&split_headers(part_body.trim_start_matches('\n')).0, "message-id");
            }
        }
    }
    let message_id = original
        .or_else(|| quoted_message_id(&decoded(&headers, body)))
        .and_then(|id| angle_id(&id))
        .ok_or("it names no original Message-ID (neither in a report nor quoted in its body)")?;
    let reason = match status {
        Some(reason) => format!("bounced: {reason}"),
        None if content_type.to_ascii_lowercase().starts_with("multipart/report") => "bounced (the report gives no status)".to_string(),
        None => format!("bounced: {}", header(&headers, "subject").unwrap_or_else(|| "no delivery status".to_string())),
    };
    Ok(Bounce { message_id, reason })
}

/// Header fields (names lowercased, folded lines joined) and the body after the blank line.
fn split_headers(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match text.find("\n\n") {
        Some(at) => (&text[..at], &text[at + 2..]),
        None => (text, ""),
    };
    (fields(head), body)
}

/// `Name: value` lines, with continuation lines (starting with white space) joined.
fn fields(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

fn header(fields: &[(String, String)], name: &str) -> Option<String> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// The `boundary` parameter of a multipart Content-Type.
fn boundary(content_type: &str) -> Option<String> {
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_string())
    })
}

/// The parts of a multipart body (each with its own headers).
fn parts<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut sections = body.split(delimiter.as_str());
    sections.next(); // the preamble
    for section in sections {
        if section.starts_with("--") {
            break; // the closing delimiter
        }
        parts.push(section.trim_start_matches([' ', '\t']).strip_prefix('\n').unwrap_or(section));
    }
    parts
}

/// "status 5.1.1, smtp; 550 …" from a delivery-status body: its per-recipient groups follow the
/// per-message one; the first recipient whose Action is `failed` (else the first with a Status).
fn delivery_status(body: &str) -> Option<String> {
    let groups: Vec<Vec<(String, String)>> = body.split("\n\n").map(fields).filter(|g| !g.is_empty()).collect();
    let recipient = groups
        .iter()
        .find(|g| header(g, "action").is_some_and(|a| a.eq_ignore_ascii_case("failed")))
        .or_else(|| groups.iter().find(|g| header(g, "status").is_some()))?;
    let status = header(recipient, "status");
    let diagnostic = header(recipient, "diagnostic-code");
    match (status, diagnostic) {
        (Some(s), Some(d)) => Some(format!("status {s}, {d}")),
        (Some(s), None) => Some(format!("status {s}")),
        (None, Some(d)) => Some(d),
        (None, None) => None,
    }
}

/// A body as text after its `Content-Transfer-Encoding`: `base64` and `quoted-printable` are
/// undone (some mail systems encode a report's parts, or a plain bounce's text, though the
/// standards ask for 7-bit there); anything else is the body as it is.
fn decoded<'a>(fields: &[(String, String)], body: &'a str) -> std::borrow::Cow<'a, str> {
    let encoding = header(fields, "content-transfer-encoding").unwrap_or_default().to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => base64(body),
        "quoted-printable" => quoted_printable(body),
        _ => return std::borrow::Cow::Borrowed(body),
    };
    std::borrow::Cow::Owned(String::from_utf8_lossy(&bytes).replace("\r\n", "\n"))
}

/// Standard base64, white space ignored; decoding stops at `=` or the first byte outside the
/// alphabet (a damaged bounce yields what came before it).
fn base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => break,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Quoted-printable: `=XX` is a byte, `=` at the end of a line joins it to the next.
fn quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < bytes.len() && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("3D");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'='));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The first `Message-ID:` header line quoted in a body.
fn quoted_message_id(body: &str) -> Option<String> {
    body.lines().find_map(|line| {
        let (name, value) = line.trim_start_matches(['>', ' ', '\t']).split_once(':')?;
        name.trim().eq_ignore_ascii_case("message-id").then(|| value.trim().to_string())
    })
}

/// `<id@host>` out of a header value.
fn angle_id(value: &str) -> Option<String> {
    let start = value.find('<')?;
    let end = start + value[start..].find('>')?;
    (end > start + 1).then(|| value[start..=end].to_string())
}

/// Scan every e-mail channel's `bounces` Maildir every `interval` until `cancel` fires.
pub async fn run_bounces(store: Store, config: watch::Receiver<Arc<Config>>, interval: Duration, cancel: CancellationToken) {
    let mut logged = HashSet::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let maildirs: Vec<(String, PathBuf)> =
            config.borrow().channels.values().filter_map(|c| c.bounces.clone().map(|dir| (c.name.clone(), dir))).collect();
        let mut seen = HashSet::new();
        for (channel, maildir) in maildirs {
            scan_maildir(&store, &channel, &maildir, &mut logged, &mut seen).await;
        }
        // Forget what is gone, so the set stays as small as the Maildirs' unhandled mail.
        logged.retain(|path| seen.contains(path));
    }
}

/// One pass over `maildir/new`: each bounce of one of `channel`'s mails marks its notification
/// failed and is moved to `cur/`. What cannot be read, is no bounce or matches nothing is left
/// and logged once (`logged` holds what was; `seen` collects what this pass looked at).
async fn scan_maildir(store: &Store, channel: &str, maildir: &Path, logged: &mut HashSet<PathBuf>, seen: &mut HashSet<PathBuf>) {
    let new = maildir.join("new");
    seen.insert(new.clone());
    let mut entries = match tokio::fs::read_dir(&new).await {
        Ok(entries) => entries,
        Err(e) => {
            if logged.insert(new.clone()) {
                tracing::warn!(channel, maildir = %maildir.display(), error = %e, "cannot read the channel's bounces Maildir; will keep trying");
            }
            return;
        }
    };
    logged.remove(&new);
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type().await.is_ok_and(|t| t.is_file()) {
            continue;
        }
        seen.insert(path.clone());
        let leave = |logged: &mut HashSet<PathBuf>, why: String| {
            if logged.insert(path.clone()) {
                tracing::warn!(channel, file = %path.display(), "left a mail in the bounces Maildir: {why}");
            }
        };
        let raw = match entry.metadata().await {
            Ok(meta) if meta.len() > MAX_BOUNCE_BYTES => {
                leave(logged, format!("it is larger than {MAX_BOUNCE_BYTES} bytes"));
                continue;
            }
            Ok(_) => match tokio::fs::read(&path).await {
                Ok(raw) => raw,
                Err(e) => {
                    leave(logged, format!("cannot read it: {e}"));
                    continue;
                }
            },
            Err(e) => {
                leave(logged, format!("cannot read it: {e}"));
                continue;
            }
        };
        let bounce = match parse_bounce(&raw) {
            Ok(bounce) => bounce,
            Err(why) => {
                leave(logged, format!("not a bounce watchkeeper can read: {why}"));
                continue;
            }
        };
        match store.mark_bounced(channel, &bounce.message_id, &bounce.reason, now_ms()).await {
            Ok(true) => {
                tracing::info!(channel, message_id = %bounce.message_id, reason = %bounce.reason, "a notification bounced");
                let handled = maildir.join("cur").join(if name.contains(":2,") { name.clone() } else { format!("{name}:2,S") });
                if let Err(e) = tokio::fs::rename(&path, &handled).await {
                    leave(logged, format!("handled, but cannot move it to cur/: {e}"));
                }
            }
            Ok(false) => leave(logged, format!("no notification of this channel was sent with Message-ID {}", bounce.message_id)),
            Err(e) => tracing::warn!(channel, error = %e, "cannot record a bounce; will try again at the next scan"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSN: &str = "Return-Path: <>\r\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n\
        Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce.1@mx.example.com>\r\n\
        Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"B0UND\"\r\nMIME-Version: 1.0\r\n\r\n\
        This is a MIME-encapsulated message.\r\n\r\n--B0UND\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n\
        Message-ID: <decoy@elsewhere.example>\r\n\r\n\
        --B0UND\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n\
        Final-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\
        Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>:\r\n    Recipient address rejected\r\n\r\n\
        --B0UND\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: alerts@example.com\r\nMessage-ID: <notification.7.1234@example.com>\r\n\
        Subject: [watchkeeper] down\r\n\r\n--B0UND--\r\n";

    #[test]
    fn a_dsn_gives_the_original_message_id_and_the_failed_recipients_status() {
        let bounce = parse_bounce(DSN.as_bytes()).unwrap();
        assert_eq!(bounce.message_id, "<notification.7.1234@example.com>");
        assert_eq!(bounce.reason, "bounced: status 5.1.1, smtp; 550 5.1.1 <nobody@example.org>: Recipient address rejected");
    }

    #[test]
    fn a_bounce_without_a_report_falls_back_to_the_quoted_message_id() {
        let plain = "From: MAILER-DAEMON@old.example\nSubject: failure notice\nMessage-ID: <own@old.example>\n\n\
            Sorry, I couldn't deliver.\n--- Below this line is a copy of the message.\n\n\
            Message-Id: <notification.9.5@example.com>\nSubject: x\n";
        let bounce = parse_bounce(plain.as_bytes()).unwrap();
        assert_eq!(bounce, Bounce { message_id: "<notification.9.5@example.com>".into(), reason: "bounced: failure notice".into() });
    }

    #[test]
    fn encoded_report_parts_and_bodies_are_decoded() {
        // The headers part in quoted-printable, its Message-ID line broken by a soft line break,
        // and the delivery status in base64.
        // "Reporting-MTA: dns; mx.example.org / Final-Recipient: rfc822; nobody@example.org,
        // Action: failed, Status: 5.1.1", as `base64` prints it.
        let encoded = "UmVwb3J0aW5nLU1UQTogZG5zOyBteC5leGFtcGxlLm9yZw0KDQpGaW5hbC1SZWNpcGllbnQ6IHJmYzgyMjsgbm9ib2R5QGV4YW1wbGUub3JnDQpBY3Rpb246IGZhaWxlZA0KU3RhdHVzOiA1LjEuMQ0K";
        let dsn = format!(
            "From: MAILER-DAEMON@mx.example.org\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
            --B\r\nContent-Type: text/plain\r\n\r\nUndeliverable.\r\n\
            --B\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n{}\r\n\
            --B\r\nContent-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
            From: alerts@example.com\r\nMessage-ID: <notification.7.1234=\r\n@example.com>\r\nSubject: =5Bwatchkeeper=5D\r\n\r\n--B--\r\n",
            &encoded[..40],
            &encoded[40..]
        );
        let bounce = parse_bounce(dsn.as_bytes()).unwrap();
        assert_eq!(bounce, Bounce { message_id: "<notification.7.1234@example.com>".into(), reason: "bounced: status 5.1.1".into() });
        // A bounce without a report whose text (quoting the original) is base64.
        let quoted = "Sorry.\n\nMessage-Id: <notification.9.5@example.com>\n";
        let b64: String = ["U29ycnkuCgpNZXNzYWdlLUlkOiA8bm90aWZpY2F0aW9uLjkuNUBleGFtcGxlLmNvbT4K"].concat();
        assert_eq!(String::from_utf8(base64(&b64)).unwrap(), quoted);
        let plain = format!("From: MAILER-DAEMON@old.example\nSubject: failure notice\nContent-Transfer-Encoding: base64\n\n{b64}\n");
        assert_eq!(parse_bounce(plain.as_bytes()).unwrap().message_id, "<notification.9.5@example.com>");
    }

    #[test]
    fn mail_naming_no_original_is_no_bounce() {
        assert!(parse_bounce(b"From: a@b.example\nSubject: hello\n\njust a letter\n").is_err());
        assert!(parse_bounce(b"").is_err());
        assert!(parse_bounce(b"Subject: x\n\nMessage-ID: <>\n").is_err());
    }
}
