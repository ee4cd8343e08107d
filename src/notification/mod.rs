//! What a notification says and who gets it — pure, from the configuration: the words shared by
//! every layer that handles notifications ([`MessageKind`], [`Medium`], [`DeliveryStatus`]), the
//! [`AlertMessage`] a transition produces, [`build_notifications`] (recipients, media, language,
//! quiet hours, suppression) and the templates (en, ko). Sending is [`crate::delivery`]'s job.
//!
//! The flow: the alert core turns a transition into an [`AlertMessage`]; [`build_notifications`]
//! decides who hears about it through which channel and renders each message in the recipient's
//! language; the store writes those rows to the outbox in the same transaction as the alert
//! change; the delivery worker claims due rows and sends them.

mod recipients;
pub mod storm;
mod templates;

pub use recipients::{build_escalation, build_notifications};
pub use templates::{Rendered, json_payload, render, render_sms, severity_word, slack_payload};

pub use crate::config::raw::ChannelType as Medium;
use crate::config::raw::Severity;

/// What happened to the alert a message is about — or, for [`MessageKind::Report`], that the
/// message is a project's daily report rather than about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Fired,
    /// Warning became fatal while firing.
    Escalated,
    Resolved,
    /// An event rule's event (log keyword, restart): notified once, never resolved.
    Event,
    /// Still firing and nobody acknowledged it: sent every `repeat`.
    Reminder,
    /// Still firing and nobody acknowledged it: a step of the project's `escalation` reaches
    /// its people.
    Escalation,
    /// It changes state too often: its further transitions are not notified until it is stable.
    Flapping,
    /// A flapping alert has been stable for its window: the state it settled in.
    Settled,
    /// The daily report e-mail (no alert).
    Report,
}

words!(MessageKind {
    Fired => "fired",
    Escalated => "escalated",
    Resolved => "resolved",
    Event => "event",
    Reminder => "reminder",
    Escalation => "escalation",
    Flapping => "flapping",
    Settled => "settled",
    Report => "report",
});

/// Where a notification stands in the delivery log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting to be sent, or to be retried.
    Pending,
    Sent,
    /// Deliberately not sent (maintenance, outside the user's hours, medium disabled).
    NotSent,
    /// Gave up after retrying; `last_error` says why.
    Failed,
    /// The gateway confirmed delivery.
    Delivered,
}

words!(DeliveryStatus { Pending => "pending", Sent => "sent", NotSent => "not_sent", Failed => "failed", Delivered => "delivered" });

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

/// A notification to write to the outbox in the same transaction as its alert change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub channel: String,
    pub medium: Medium,
    /// An address, a phone number, or the channel name for webhooks.
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub kind: MessageKind,
    /// `Pending` to send; `NotSent` with `reason` to record a suppressed one.
    pub status: DeliveryStatus,
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serde form the API shows and the words the database stores are the same.
    #[test]
    fn serde_words_match_the_stored_words() {
        for kind in MessageKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for status in DeliveryStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(*status));
        }
        for medium in Medium::ALL {
            assert_eq!(serde_json::to_value(medium).unwrap(), medium.as_str());
        }
        for severity in Severity::ALL {
            assert_eq!(serde_json::to_value(severity).unwrap(), severity.as_str());
        }
        assert!("maybe".parse::<DeliveryStatus>().unwrap_err().to_string().contains("unknown DeliveryStatus `maybe`"));
    }
}
