//! Notifications: recipients and templates (en, ko), e-mail / SMS / webhook senders, the outbox worker.
//!
//! The flow: the alert engine turns a [`Transition`] into an [`AlertMessage`];
//! [`build_notifications`] (pure) decides who hears about it through which channel and renders
//! each message in the recipient's language; the store writes those rows to the outbox in the
//! same transaction as the alert change; [`run_outbox`] claims due rows, sends them with
//! [`Senders`] and records every attempt, retrying with [`backoff`] while a channel fails.
//!
//! Channel settings may reference `${ENV_NAME}`: they are expanded by [`expand_env`] at send
//! time, never stored, and never logged.

mod outbox;
mod recipients;
mod send;
mod templates;

pub use outbox::{BATCH, LEASE_MS, backoff, run_outbox};
pub use recipients::build_notifications;
pub(crate) use send::error_chain;
pub use send::{SendError, Senders};
pub use templates::{Rendered, json_payload, render, render_sms, slack_payload};

use crate::alert::{Severity, Transition};

/// What happened to the alert a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Fired,
    /// Warning became fatal while firing.
    Escalated,
    Resolved,
    /// An event rule's event (log keyword, restart): notified once, never resolved.
    Event,
}

impl MessageKind {
    /// The word stored in the outbox (`kind`) and sent in JSON webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Fired => "fired",
            MessageKind::Escalated => "escalated",
            MessageKind::Resolved => "resolved",
            MessageKind::Event => "event",
        }
    }

    /// The kind, severity and start time a transition at `at_ms` notifies. An escalation
    /// does not carry its start; the caller knows it from the open alert (`started_at_ms`
    /// is `at_ms` here, override it).
    pub fn of(transition: &Transition, at_ms: i64) -> (MessageKind, Severity, i64) {
        match *transition {
            Transition::Fired { severity, since_ms } => (MessageKind::Fired, severity, since_ms),
            Transition::Escalated { to, .. } => (MessageKind::Escalated, to, at_ms),
            Transition::Resolved { since_ms, severity } => (MessageKind::Resolved, severity, since_ms),
            Transition::Event { severity } => (MessageKind::Event, severity, at_ms),
        }
    }
}

/// Everything a template needs to describe one alert transition; independent of recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertMessage {
    pub kind: MessageKind,
    pub severity: Severity,
    pub project: String,
    /// The server the alert concerns, when there is one (a port monitor may watch a bare host).
    pub server: Option<String>,
    /// The address concerned: the server's host or the monitor's host.
    pub host: String,
    /// What is wrong, e.g. `port 80 of web-01-ports`, `cpu.usage above 95 %`.
    pub what: String,
    /// The observation behind it, e.g. `connection refused`, `97.3 %`.
    pub detail: String,
    /// When the alert started (fired, or first failed for counted rules), epoch ms.
    pub started_at_ms: i64,
    /// When this transition happened, epoch ms.
    pub at_ms: i64,
    /// The alert history row, once the store assigned one.
    pub alert_id: Option<i64>,
}

/// A `${NAME}` a channel setting references is not in serve's environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable `{name}` is not set")]
pub struct MissingEnv {
    pub name: String,
}

/// Expand every `${NAME}` (`NAME` is `[A-Z0-9_]+`) in `text` through `lookup`. Anything else
/// — a lone `$`, `${lower}`, an unterminated `${` — is kept literally. The first missing
/// variable is the error; the expanded text is a secret and must not be logged.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, MissingEnv> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after.bytes().take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_').count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b'}') {
            let name = &after[..name_len];
            let value = lookup(name).ok_or_else(|| MissingEnv { name: name.to_string() })?;
            out.push_str(&value);
            rest = &after[name_len + 1..];
        } else {
            out.push_str("${");
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SMTP_PASSWORD" => Some("s3cret".into()),
            "A" => Some("x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expand_env_substitutes_and_keeps_everything_else() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("${SMTP_PASSWORD}", "s3cret"),
            ("Bearer ${A}${A}-${EMPTY}!", "Bearer xx-!"),
            ("cost $5 and ${lower} and ${A", "cost $5 and ${lower} and ${A"),
            ("${}", "${}"),
            ("한글 ${A} 끝", "한글 x 끝"),
            ("$${A}", "$x"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_env(input, env).as_deref(), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn expand_env_names_the_missing_variable_not_the_values() {
        let err = expand_env("user ${A} pass ${SMTP_PASSWORD} token ${SMS_TOKEN}", env).unwrap_err();
        assert_eq!(err.name, "SMS_TOKEN");
        assert_eq!(err.to_string(), "environment variable `SMS_TOKEN` is not set");
    }

    #[test]
    fn message_kind_of_transition() {
        let fired = Transition::Fired { severity: Severity::Fatal, since_ms: 10 };
        assert_eq!(MessageKind::of(&fired, 99), (MessageKind::Fired, Severity::Fatal, 10));
        let escalated = Transition::Escalated { from: Severity::Warning, to: Severity::Fatal };
        assert_eq!(MessageKind::of(&escalated, 99), (MessageKind::Escalated, Severity::Fatal, 99));
        let resolved = Transition::Resolved { since_ms: 5, severity: Severity::Warning };
        assert_eq!(MessageKind::of(&resolved, 99), (MessageKind::Resolved, Severity::Warning, 5));
        assert_eq!(MessageKind::Event.as_str(), "event");
    }
}
