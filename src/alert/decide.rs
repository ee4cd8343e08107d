//! The one decision: given an alert instance's state and one observation of it, what is its
//! new state, what changes in the alert history, and which notifications go out (or are held
//! back, and why). Pure — the configuration, the time and whether a parent server is down are
//! passed in. serve's engine stores what [`decide`] returns; `watchkeeper test` compares it with
//! what a test file expects; so a policy test cannot pass while serve does something else.
//! [`remind`] is the decision time alone makes for a firing alert: the reminder every `repeat`.

use super::rule::{InstanceKey, RuleId};
use super::rules::{Observed, server_policy, snapshot};
use super::suppress::suppression;
use super::{AlertState, Phase, Severity, Transition, step};
use crate::config::model::{Config, PortMonitor, Project};
use crate::notification::{AlertMessage, MessageKind, NewNotification, build_notifications};
use crate::protocol::Report;

/// What is remembered about one alert instance between observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Instance {
    pub state: AlertState,
    /// The alert history row while the instance fires.
    pub open_alert_id: Option<i64>,
}

/// What a transition does to the alert history.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    Open {
        severity: Severity,
        started_at_ms: i64,
        message: String,
        host: String,
        snapshot: serde_json::Value,
    },
    Escalate {
        severity: Severity,
    },
    Resolve {
        at_ms: i64,
        reason: String,
    },
    /// An event rule's event (a log keyword, a restart): recorded as an alert that starts and
    /// resolves at `at_ms` (reason `event`), so the history shows it but nothing stays firing.
    Event {
        severity: Severity,
        at_ms: i64,
        message: String,
        host: String,
        snapshot: serde_json::Value,
    },
}

/// Where an observation comes from: the configuration it is judged under and what it is about.
#[derive(Debug, Clone, Copy)]
pub struct Scene<'a> {
    pub config: &'a Config,
    pub project: &'a Project,
    /// The server the instance belongs to; empty for a port monitor of a bare host.
    pub server: &'a str,
    /// The address concerned: the server's or the monitor's host (messages, per-host statistics).
    pub host: &'a str,
    /// A port monitor's `notify` list adds recipients.
    pub monitor: Option<&'a PortMonitor>,
    /// The report behind a host observation: a fired alert's snapshot is taken from it.
    pub report: Option<&'a Report>,
}

impl Scene<'_> {
    /// The key of the instance `observed` is about.
    pub fn key(&self, rule: RuleId, subject: String) -> InstanceKey {
        InstanceKey { project: self.project.name.clone(), server: self.server.to_string(), rule, subject }
    }
}

/// Everything one observation decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub key: InstanceKey,
    pub state: AlertState,
    pub transition: Option<Transition>,
    /// What to write to the alert history, with the state and the notifications, at once.
    pub change: Option<AlertChange>,
    /// Every notification the transition causes, suppressed ones included (as not sent).
    pub notifications: Vec<NewNotification>,
}

impl Decision {
    /// Whether anything needs recording: a transition, or new counters.
    pub fn changes(&self, before: &Instance) -> bool {
        self.transition.is_some() || self.state != before.state
    }
}

/// Advance one instance by one observation at `at_ms`. `parent_down` tells whether a server of
/// the project has a fatal alert firing (for `depends_on` suppression).
pub fn decide(scene: &Scene, observed: Observed, before: &Instance, at_ms: i64, parent_down: &dyn Fn(&str) -> bool) -> Decision {
    let (mut state, transition) = step(before.state, observed.kind, observed.observation, at_ms);
    if matches!(transition, Some(Transition::Fired { .. })) {
        state.fired_at_ms = Some(at_ms);
    }
    let key = scene.key(observed.rule, observed.subject);
    let snapshot = || scene.report.map_or_else(|| serde_json::json!({}), snapshot);
    let message = || format!("{}: {}", observed.what, observed.detail);
    let change = transition.map(|t| match t {
        Transition::Fired { severity, since_ms } => {
            AlertChange::Open { severity, started_at_ms: since_ms, message: message(), host: scene.host.to_string(), snapshot: snapshot() }
        }
        Transition::Escalated { to, .. } => AlertChange::Escalate { severity: to },
        Transition::Resolved { .. } => AlertChange::Resolve { at_ms, reason: "recovered".into() },
        Transition::Event { severity } => {
            AlertChange::Event { severity, at_ms, message: message(), host: scene.host.to_string(), snapshot: snapshot() }
        }
    });
    let notifications = match transition {
        None => Vec::new(),
        Some(t) => {
            let started_at_ms = match t {
                Transition::Fired { since_ms, .. } | Transition::Resolved { since_ms, .. } => since_ms,
                Transition::Escalated { .. } => firing_since(&before.state).unwrap_or(at_ms),
                Transition::Event { .. } => at_ms,
            };
            let server = (!scene.server.is_empty()).then_some(scene.server);
            let msg = AlertMessage {
                kind: t.kind(),
                severity: t.severity(),
                project: scene.project.name.clone(),
                server: server.map(str::to_string),
                host: scene.host.to_string(),
                what: observed.what,
                detail: observed.detail,
                started_at_ms,
                at_ms,
                alert_id: before.open_alert_id,
            };
            // Whoever heard that it fired hears that it resolved.
            let suppressed = match t {
                Transition::Resolved { .. } if before.state.announced => None,
                _ => suppression(scene.project, server, at_ms, parent_down),
            };
            state.announced = match t {
                Transition::Fired { .. } => suppressed.is_none(),
                Transition::Escalated { .. } => state.announced || suppressed.is_none(),
                Transition::Resolved { .. } | Transition::Event { .. } => false,
            };
            build_notifications(scene.config, &scene.project.name, &msg, scene.monitor, suppressed.as_deref(), at_ms)
        }
    };
    Decision { key, state, transition, change, notifications }
}

/// How often a firing alert of `rule` is repeated, in ms: its port monitor's `repeat`, else (for
/// the rules of an alert policy: metrics, no data) its server's policy's, else the project's.
pub fn repeat_ms(scene: &Scene, rule: &RuleId) -> Option<i64> {
    let own = match rule {
        RuleId::Port(_) => scene.monitor.and_then(|m| m.repeat),
        RuleId::Metric(_) | RuleId::NoData | RuleId::Restart => scene
            .project
            .servers
            .get(scene.server)
            .and_then(|server| server_policy(scene.config, scene.project, server))
            .and_then(|policy| policy.repeat),
        _ => None,
    };
    own.or(scene.project.repeat).map(|d| i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX))
}

/// Whether a reminder of `before` is due at `now_ms`: it fires, nobody acknowledged it, and a
/// `repeat` has passed since it fired for every reminder it already had.
pub fn reminder_due(scene: &Scene, rule: &RuleId, before: &AlertState, now_ms: i64) -> bool {
    next_reminder_ms(scene, rule, before).is_some_and(|due| now_ms >= due)
}

fn next_reminder_ms(scene: &Scene, rule: &RuleId, state: &AlertState) -> Option<i64> {
    if !state.is_firing() || state.acknowledged {
        return None;
    }
    let repeat = repeat_ms(scene, rule)?;
    Some(state.fired_at_ms?.saturating_add(repeat.saturating_mul(i64::from(state.reminders) + 1)))
}

/// What time alone decides for a firing instance at `now_ms`: when its alert was acknowledged
/// (`acknowledged`), the state remembers it and reminders stop; else, when a reminder is due, one
/// reminder to the recipients of a new alert, saying how long it has been firing. Reminder `n`
/// is due `n × repeat` after the alert fired; the count is stored with the notification, so a
/// restart neither repeats a reminder nor skips one — a reminder due while serve was down goes
/// out once, at the first look after, and the count moves past every slot that went by.
/// `None`: nothing to record.
pub fn remind(
    scene: &Scene,
    key: &InstanceKey,
    before: &Instance,
    acknowledged: bool,
    now_ms: i64,
    parent_down: &dyn Fn(&str) -> bool,
) -> Option<Decision> {
    let due = next_reminder_ms(scene, &key.rule, &before.state)?;
    let Phase::Firing { since_ms, severity } = before.state.phase else { return None };
    let quiet = |state| Decision { key: key.clone(), state, transition: None, change: None, notifications: Vec::new() };
    if acknowledged {
        return Some(quiet(AlertState { acknowledged: true, ..before.state }));
    }
    if now_ms < due {
        return None;
    }
    let (repeat, fired_at) = (repeat_ms(scene, &key.rule)?, before.state.fired_at_ms?);
    let slots = u32::try_from((now_ms - fired_at) / repeat.max(1)).unwrap_or(u32::MAX);
    let server = (!scene.server.is_empty()).then_some(scene.server);
    let msg = AlertMessage {
        kind: MessageKind::Reminder,
        severity,
        project: scene.project.name.clone(),
        server: server.map(str::to_string),
        host: scene.host.to_string(),
        what: describe(key),
        detail: String::new(),
        started_at_ms: since_ms,
        at_ms: now_ms,
        alert_id: before.open_alert_id,
    };
    let suppressed = suppression(scene.project, server, now_ms, parent_down);
    let notifications = build_notifications(scene.config, &scene.project.name, &msg, scene.monitor, suppressed.as_deref(), now_ms);
    // Whoever heard a reminder hears the resolve, as for the fired notification.
    let announced = before.state.announced || suppressed.is_none();
    Some(Decision { notifications, ..quiet(AlertState { reminders: slots.max(before.state.reminders + 1), announced, ..before.state }) })
}

/// Close an instance for good because a revision removed or paused what it watches: a firing
/// alert resolves with `reason` and notifies as a resolve (unless its project is gone, when
/// nobody is left to tell); anything else is simply forgotten.
pub fn retire(config: &Config, key: &InstanceKey, before: &Instance, reason: &str, now_ms: i64) -> Decision {
    let Phase::Firing { since_ms, severity } = before.state.phase else {
        return Decision { key: key.clone(), state: AlertState::default(), transition: None, change: None, notifications: Vec::new() };
    };
    let msg = AlertMessage {
        kind: MessageKind::Resolved,
        severity,
        project: key.project.clone(),
        server: (!key.server.is_empty()).then(|| key.server.clone()),
        host: String::new(),
        what: describe(key),
        detail: reason.to_string(),
        started_at_ms: since_ms,
        at_ms: now_ms,
        alert_id: before.open_alert_id,
    };
    Decision {
        key: key.clone(),
        state: AlertState::default(),
        transition: Some(Transition::Resolved { since_ms, severity }),
        change: Some(AlertChange::Resolve { at_ms: now_ms, reason: reason.to_string() }),
        notifications: build_notifications(config, &key.project, &msg, None, None, now_ms),
    }
}

/// Since when an instance has been failing (firing or pending), if it has.
fn firing_since(state: &AlertState) -> Option<i64> {
    match state.phase {
        Phase::Firing { since_ms, .. } | Phase::Pending { since_ms, .. } => Some(since_ms),
        Phase::Inactive => None,
    }
}

/// A human description of an instance from its key alone (its monitor or rule may be gone).
fn describe(key: &InstanceKey) -> String {
    match &key.rule {
        RuleId::Port(monitor) => format!("port {} of {monitor}", key.subject),
        rule if key.subject.is_empty() => rule.to_string(),
        rule => format!("{rule} {}", key.subject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::rules::port_check;
    use crate::config::compile_inline;

    const MIN: i64 = 60_000;

    const TREE: &str = r#"
kind: User
email: alice@example.com
name: Alice
---
kind: Channel
name: ops-mail
type: email
smtp: { host: smtp.example.com, port: 587 }
from: "watchkeeper <alerts@example.com>"
to: [team@example.com]
---
kind: Project
name: shop
members: [{ user: alice@example.com, role: admin }]
channels: [ops-mail]
repeat: 1h
---
kind: PortMonitor
name: web
project: shop
host: 192.0.2.1
ports: [80]
failures: 1
repeat: 10m
---
kind: PortMonitor
name: db
project: shop
host: 192.0.2.2
ports: [5432]
failures: 1
"#;

    /// Fire `monitor`'s port at 0 and return the scene's instance.
    fn fired(config: &Config, monitor: &str) -> (InstanceKey, Instance) {
        let project = &config.projects["shop"];
        let m = &project.port_monitors[monitor];
        let scene = Scene { config, project, server: "", host: &m.host, monitor: Some(m), report: None };
        let d = decide(&scene, port_check(m, m.ports[0], Some("refused")), &Instance::default(), 0, &|_| false);
        assert!(matches!(d.transition, Some(Transition::Fired { .. })));
        (d.key, Instance { state: d.state, open_alert_id: Some(7) })
    }

    /// Ask for reminders at each time; the (time, number of notifications) of each decision.
    fn reminders(config: &Config, monitor: &str, times: &[i64], acked_from: Option<i64>) -> Vec<(i64, usize)> {
        let (key, mut instance) = fired(config, monitor);
        let project = &config.projects["shop"];
        let m = &project.port_monitors[monitor];
        let scene = Scene { config, project, server: "", host: &m.host, monitor: Some(m), report: None };
        let mut out = Vec::new();
        for &t in times {
            let acked = acked_from.is_some_and(|a| t >= a);
            assert_eq!(
                reminder_due(&scene, &key.rule, &instance.state, t),
                remind(&scene, &key, &instance, false, t, &|_| false).is_some()
            );
            if let Some(d) = remind(&scene, &key, &instance, acked, t, &|_| false) {
                assert!(d.notifications.iter().all(|n| n.kind == MessageKind::Reminder), "{d:?}");
                out.push((t, d.notifications.len()));
                instance.state = d.state;
            }
        }
        out
    }

    #[test]
    fn reminders_come_every_repeat_after_firing_with_the_monitors_repeat_winning() {
        let config = compile_inline(TREE);
        let times: Vec<i64> = (0..=25).map(|m| m * MIN).collect();
        // The monitor's 10m wins over the project's 1h: at 10, 20 minutes; to alice and the team.
        assert_eq!(reminders(&config, "web", &times, None), [(10 * MIN, 2), (20 * MIN, 2)]);
        // db has no repeat of its own: the project's hour.
        let hours: Vec<i64> = (0..=5).map(|h| h * 30 * MIN).collect();
        assert_eq!(reminders(&config, "db", &hours, None), [(60 * MIN, 2), (120 * MIN, 2)]);
    }

    #[test]
    fn a_reminder_due_while_nobody_looked_goes_out_once_and_the_next_keeps_the_schedule() {
        let config = compile_inline(TREE);
        // Nobody looked from 1 to 34 minutes (serve was down): one reminder at 35, then 40, 50.
        assert_eq!(
            reminders(&config, "web", &[MIN, 35 * MIN, 36 * MIN, 39 * MIN, 40 * MIN, 50 * MIN], None),
            [(35 * MIN, 2), (40 * MIN, 2), (50 * MIN, 2)]
        );
    }

    #[test]
    fn an_acknowledgement_stops_reminders_until_the_alert_resolves() {
        let config = compile_inline(TREE);
        let times: Vec<i64> = (0..=60).map(|m| m * MIN).collect();
        // Acknowledged at 15: the reminder at 10 went out; the state takes the ack (nothing
        // sent), and nothing is due after.
        assert_eq!(reminders(&config, "web", &times, Some(15 * MIN)), [(10 * MIN, 2), (15 * MIN, 0)]);
        // Without `repeat` anywhere, never.
        let quiet = compile_inline(&TREE.replace("repeat: 1h\n", "").replace("repeat: 10m\n", ""));
        assert_eq!(reminders(&quiet, "web", &times, None), []);
    }
}
