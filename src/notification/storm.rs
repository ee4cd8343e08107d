//! Storm control (pure): when many alerts of one project change at once, the first notifications
//! go out one by one and the rest reach each recipient as one digest message.
//!
//! [`StormControl`] counts, per project and kind of message (fired, resolved, …), the alert
//! transitions told one by one within the last window. Up to the limit, a transition's
//! notifications go out as usual; beyond it they are recorded as not sent ([`held`]) and
//! [`Digests`] collects them into one message per recipient (channel, address, project, kind),
//! sent one window after its first entry: how many, and the subject line of each.

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::{DeliveryStatus, Medium, MessageKind, NewNotification};

/// How many alert transitions of one project and kind are told one by one per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StormSettings {
    /// At least 1.
    pub limit: usize,
    pub window_ms: i64,
}

impl Default for StormSettings {
    /// 10 per 5 minutes.
    fn default() -> StormSettings {
        StormSettings { limit: 10, window_ms: 5 * 60_000 }
    }
}

/// The most subject lines one digest lists; beyond them it counts.
pub const DIGEST_LINES: usize = 1_000;

/// Which transitions were told one by one lately.
#[derive(Debug, Default)]
pub struct StormControl {
    settings: StormSettings,
    /// (project, kind) → when transitions were told one by one within the window, oldest first
    /// (at most `limit` of them).
    told: HashMap<(String, MessageKind), VecDeque<i64>>,
}

impl StormControl {
    pub fn new(settings: StormSettings) -> StormControl {
        StormControl { settings, told: HashMap::new() }
    }

    pub fn settings(&self) -> StormSettings {
        self.settings
    }

    /// Whether a transition of `kind` in `project` at `now_ms` is told one by one (`true`, and
    /// counted) or goes into the digest (`false`): one by one while fewer than `limit` were told
    /// within the last window.
    pub fn admit(&mut self, project: &str, kind: MessageKind, now_ms: i64) -> bool {
        let told = self.told.entry((project.to_string(), kind)).or_default();
        while told.front().is_some_and(|&t| t <= now_ms - self.settings.window_ms) {
            told.pop_front();
        }
        if told.len() < self.settings.limit.max(1) {
            told.push_back(now_ms);
            true
        } else {
            false
        }
    }
}

/// Take a transition's pending notifications out of individual delivery: each is kept as not
/// sent, with the reason, and the originals are returned for the digest.
pub fn held(notifications: &mut [NewNotification], project: &str, settings: StormSettings) -> Vec<NewNotification> {
    let reason =
        format!("in a digest: more than {} alerts of project {project} changed within {}", settings.limit, minutes(settings.window_ms));
    let mut out = Vec::new();
    for n in notifications.iter_mut().filter(|n| n.status == DeliveryStatus::Pending) {
        out.push(n.clone());
        n.status = DeliveryStatus::NotSent;
        n.reason = Some(reason.clone());
    }
    out
}

/// One recipient's digest of one project and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// The outbox row holding it, once written.
    pub id: Option<i64>,
    /// When it goes out.
    pub due_ms: i64,
    pub project: String,
    channel: String,
    medium: Medium,
    recipient: String,
    kind: MessageKind,
    /// Notifications collected.
    count: usize,
    /// The first [`DIGEST_LINES`] subjects.
    lines: Vec<String>,
}

impl Digest {
    /// The digest as a notification for the outbox, in its current state.
    pub fn notification(&self, settings: StormSettings) -> NewNotification {
        let what = match self.kind {
            MessageKind::Fired => "alerts fired",
            MessageKind::Resolved => "alerts resolved",
            MessageKind::Escalated => "alerts escalated",
            MessageKind::Event => "events",
            MessageKind::Reminder => "reminders of firing alerts",
            MessageKind::Escalation => "escalations of unacknowledged alerts",
            MessageKind::Flapping => "flapping alerts",
            MessageKind::Settled => "alerts settled after flapping",
            MessageKind::Report => "daily reports",
        };
        let subject = format!("[watchkeeper] {} more {what} in {}", self.count, self.project);
        let unlisted = self.count - self.lines.len();
        let body = match self.medium {
            Medium::Sms => subject.clone(),
            Medium::Webhook => json!({
                "kind": "digest",
                "of": self.kind.as_str(),
                "project": self.project,
                "count": self.count,
                "subjects": self.lines,
                "unlisted": unlisted,
                "text": subject,
            })
            .to_string(),
            Medium::Email => {
                let mut text = format!(
                    "More than {} {what} in project {} within {}: the first went out one by one, and these {} are collected here.\n\n",
                    settings.limit,
                    self.project,
                    minutes(settings.window_ms),
                    self.count
                );
                for line in &self.lines {
                    text.push_str(&format!("- {line}\n"));
                }
                if unlisted > 0 {
                    text.push_str(&format!("- … and {unlisted} more, not listed: see the project's alerts\n"));
                }
                text.push_str("\n-- \nwatchkeeper\n");
                text
            }
        };
        NewNotification {
            channel: self.channel.clone(),
            medium: self.medium,
            recipient: self.recipient.clone(),
            subject,
            body,
            kind: self.kind,
            status: DeliveryStatus::Pending,
            reason: None,
        }
    }
}

/// The digests being collected, one per (project, channel, recipient, kind).
#[derive(Debug, Default)]
pub struct Digests {
    open: HashMap<(String, String, String, MessageKind), Digest>,
}

impl Digests {
    /// Add `n` (a notification of `project` held at `now_ms`) to its recipient's digest, starting
    /// one due a window from now when there is none still to go out; the digest to write back.
    pub fn add(&mut self, project: &str, n: &NewNotification, now_ms: i64, settings: StormSettings) -> &mut Digest {
        let key = (project.to_string(), n.channel.clone(), n.recipient.clone(), n.kind);
        let fresh = || Digest {
            id: None,
            due_ms: now_ms + settings.window_ms,
            project: project.to_string(),
            channel: n.channel.clone(),
            medium: n.medium,
            recipient: n.recipient.clone(),
            kind: n.kind,
            count: 0,
            lines: Vec::new(),
        };
        let digest = self.open.entry(key).or_insert_with(fresh);
        if digest.due_ms <= now_ms {
            *digest = fresh();
        }
        digest.count += 1;
        if digest.lines.len() < DIGEST_LINES {
            digest.lines.push(n.subject.clone());
        }
        digest
    }

    /// Forget digests that went out by `now_ms`.
    pub fn prune(&mut self, now_ms: i64) {
        self.open.retain(|_, d| d.due_ms > now_ms);
    }
}

/// `5 min`, `30 s`.
fn minutes(ms: i64) -> String {
    if ms % 60_000 == 0 { format!("{} min", ms / 60_000) } else { format!("{} s", ms / 1_000) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn mail(to: &str, subject: &str, kind: MessageKind) -> NewNotification {
        NewNotification {
            channel: "ops-mail".into(),
            medium: Medium::Email,
            recipient: to.into(),
            subject: subject.into(),
            body: "body".into(),
            kind,
            status: DeliveryStatus::Pending,
            reason: None,
        }
    }

    #[test]
    fn the_first_transitions_of_a_window_go_out_one_by_one_and_the_rest_wait() {
        let mut storm = StormControl::new(StormSettings { limit: 3, window_ms: 5 * MIN });
        let told: Vec<bool> = (0..6).map(|i| storm.admit("shop", MessageKind::Fired, i * 1_000)).collect();
        assert_eq!(told, [true, true, true, false, false, false]);
        // Other projects and other kinds count on their own.
        assert!(storm.admit("bank", MessageKind::Fired, 6_000));
        assert!(storm.admit("shop", MessageKind::Resolved, 6_000));
        // Once the first told one is a window old, one more goes out one by one.
        assert!(!storm.admit("shop", MessageKind::Fired, 5 * MIN - 1));
        assert!(storm.admit("shop", MessageKind::Fired, 5 * MIN));
        assert!(!storm.admit("shop", MessageKind::Fired, 5 * MIN + 1));
    }

    #[test]
    fn held_notifications_stay_as_not_sent_with_the_reason_and_suppressed_ones_are_left_alone() {
        let suppressed =
            NewNotification { status: DeliveryStatus::NotSent, reason: Some("maintenance".into()), ..mail("b@x", "s", MessageKind::Fired) };
        let mut ns = vec![mail("a@x", "s", MessageKind::Fired), suppressed.clone()];
        let out = held(&mut ns, "shop", StormSettings::default());
        assert_eq!(out, [mail("a@x", "s", MessageKind::Fired)]);
        assert_eq!(ns[0].status, DeliveryStatus::NotSent);
        assert_eq!(ns[0].reason.as_deref(), Some("in a digest: more than 10 alerts of project shop changed within 5 min"));
        assert_eq!(ns[1], suppressed);
    }

    #[test]
    fn a_digest_per_recipient_counts_and_lists_its_notifications_until_it_goes_out() {
        let settings = StormSettings { limit: 10, window_ms: 5 * MIN };
        let mut digests = Digests::default();
        for i in 0..3 {
            digests.add("shop", &mail("a@x", &format!("disk /m{i} full"), MessageKind::Fired), i, settings);
        }
        let other = digests.add("shop", &mail("b@x", "disk /m0 full", MessageKind::Fired), 3, settings).clone();
        assert_eq!(other.notification(settings).subject, "[watchkeeper] 1 more alerts fired in shop");
        let a = digests.add("shop", &mail("a@x", "disk /m3 full", MessageKind::Fired), 4, settings).clone();
        assert_eq!(a.due_ms, 5 * MIN);
        let n = a.notification(settings);
        assert_eq!((n.recipient.as_str(), n.kind, n.status), ("a@x", MessageKind::Fired, DeliveryStatus::Pending));
        assert_eq!(n.subject, "[watchkeeper] 4 more alerts fired in shop");
        assert!(n.body.contains("- disk /m0 full\n- disk /m1 full\n- disk /m2 full\n- disk /m3 full\n"), "{}", n.body);
        // Once it went out, the next held notification starts a new digest.
        digests.prune(5 * MIN);
        let next = digests.add("shop", &mail("a@x", "disk /m4 full", MessageKind::Fired), 5 * MIN, settings).clone();
        assert_eq!(
            (next.id, next.due_ms, next.notification(settings).subject.as_str()),
            (None, 10 * MIN, "[watchkeeper] 1 more alerts fired in shop")
        );
    }

    #[test]
    fn a_huge_digest_lists_a_bounded_number_and_counts_the_rest() {
        let settings = StormSettings::default();
        let mut digests = Digests::default();
        let mut last = None;
        for i in 0..DIGEST_LINES + 5 {
            last = Some(digests.add("shop", &mail("a@x", &format!("alert {i}"), MessageKind::Resolved), 0, settings).clone());
        }
        let n = last.unwrap().notification(settings);
        assert_eq!(n.body.lines().filter(|l| l.starts_with("- alert ")).count(), DIGEST_LINES);
        assert!(n.body.contains("… and 5 more, not listed"), "{}", n.body);
        assert_eq!(n.subject, format!("[watchkeeper] {} more alerts resolved in shop", DIGEST_LINES + 5));
    }
}
