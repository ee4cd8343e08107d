//! The one decision: given an alert instance's state and one observation of it, what is its
//! new state, what changes in the alert history, and which notifications go out (or are held
//! back, and why). Pure — the configuration, the time and whether a parent server is down are
//! passed in. serve's engine stores what [`decide`] returns; `watchkeeper test` compares it with
//! what a test file expects; so a policy test cannot pass while serve does something else.

use super::rule::{InstanceKey, RuleId};
use super::rules::{Observed, snapshot};
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
