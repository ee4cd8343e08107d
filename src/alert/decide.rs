//! The one decision: given an alert instance's state and one observation of it, what is its
//! new state, what changes in the alert history, and which notifications go out (or are held
//! back, and why). Pure — the configuration, the time and whether a parent server is down are
//! passed in. serve's engine stores what [`decide`] returns; `watchkeeper test` compares it with
//! what a test file expects; so a policy test cannot pass while serve does something else.
//! [`timed`] is what time alone decides for an instance: the reminder every `repeat`, the
//! project's escalation steps, and the end of flapping.
//!
//! Flapping: an instance that fires or resolves more than its `flapping.changes` times within
//! `flapping.within` is marked flapping at that transition, whose notification becomes one
//! "flapping" notification. Its later transitions are recorded (state and history stay true)
//! and their notifications kept as not sent with the reason `flapping`; no reminders or
//! escalation steps go out. Once `within` passes without a change, one "settled" notification
//! tells the state it settled in, and a firing alert's reminders and escalation count afresh
//! from then.

use super::rule::{InstanceKey, RuleId};
use super::rules::{Observed, server_policy, snapshot};
use super::suppress::suppression;
use super::{AlertState, Phase, Severity, Transition, step};
use crate::config::model::{AlertPolicy, Config, Flapping, PortMonitor, Project};
use crate::notification::{AlertMessage, MessageKind, NewNotification, build_escalation, build_notifications};
use crate::protocol::Report;

/// What is remembered about one alert instance between observations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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

/// Something a decision told people beyond a transition: a reminder, an escalation step (its
/// number, from 1), the start or the end of flapping. `watchkeeper test` lists these beside
/// the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Told {
    pub kind: MessageKind,
    pub severity: Severity,
    pub step: Option<u32>,
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
    pub told: Vec<Told>,
}

impl Decision {
    /// Whether anything needs recording: a transition, or new counters.
    pub fn changes(&self, before: &Instance) -> bool {
        self.transition.is_some() || self.state != before.state
    }
}

fn millis(d: crate::config::values::Dur) -> i64 {
    i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX)
}

/// Advance one instance by one observation at `at_ms`. `parent_down` tells whether a server of
/// the project has a fatal alert firing (for `depends_on` suppression).
pub fn decide(scene: &Scene, observed: Observed, before: &Instance, at_ms: i64, parent_down: &dyn Fn(&str) -> bool) -> Decision {
    let (mut state, transition) = step(before.state.clone(), observed.kind, observed.observation, at_ms);
    // What the state machine does not own: the lifecycle of the alert around it.
    let flapping = flapping_of(scene, &observed.rule);
    state.changes.clone_from(&before.state.changes);
    state.flapping = before.state.flapping;
    if let Some(Transition::Fired { .. } | Transition::Resolved { .. }) = transition {
        // A new firing has its own reminders, acknowledgement and escalation; a resolve ends them.
        state.fired_at_ms = matches!(transition, Some(Transition::Fired { .. })).then_some(at_ms);
        (state.reminders, state.acknowledged, state.escalations) = (0, false, 0);
        match flapping {
            Some(flapping) => {
                state.changes.retain(|&t| at_ms - t < millis(flapping.within));
                state.changes.push(at_ms);
                let keep = flapping.changes as usize + 1;
                if state.changes.len() > keep {
                    state.changes.drain(..state.changes.len() - keep);
                }
            }
            // Off: nothing to count. (A flap begun before it was turned off ends at the next look.)
            None => state.changes.clear(),
        }
    }
    let starts_flapping = flapping.is_some_and(|f| before.state.flapping.is_none() && state.changes.len() > f.changes as usize);
    if let Some(t) = transition
        && (starts_flapping || state.flapping.is_some())
    {
        state.flapping = state.flapping.max(Some(t.severity()));
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
    let mut told = Vec::new();
    let notifications = match transition {
        None => Vec::new(),
        Some(t) => {
            let started_at_ms = match t {
                Transition::Fired { since_ms, .. } | Transition::Resolved { since_ms, .. } => since_ms,
                Transition::Escalated { .. } => firing_since(&before.state).unwrap_or(at_ms),
                Transition::Event { .. } => at_ms,
            };
            let server = (!scene.server.is_empty()).then_some(scene.server);
            let mut msg = AlertMessage {
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
            if let Some(flapping) = flapping.filter(|_| starts_flapping) {
                msg.kind = MessageKind::Flapping;
                msg.detail = format!("changed state {} times within {}", state.changes.len(), flapping.within);
                told.push(Told { kind: MessageKind::Flapping, severity: t.severity(), step: None });
            }
            // Whoever heard that it fired hears that it resolved — unless it flaps.
            let suppressed = match t {
                _ if before.state.flapping.is_some() => Some("flapping".to_string()),
                Transition::Resolved { .. } if before.state.announced => None,
                _ => suppression(scene.project, server, at_ms, parent_down),
            };
            state.announced = match t {
                _ if state.flapping.is_some() => false,
                Transition::Fired { .. } => suppressed.is_none(),
                Transition::Escalated { .. } => state.announced || suppressed.is_none(),
                Transition::Resolved { .. } | Transition::Event { .. } => false,
            };
            // A resolve also reaches the escalation steps' people who heard it fire.
            let reached = if matches!(t, Transition::Resolved { .. }) { before.state.escalations } else { 0 };
            audience(scene.config, &scene.project.name, scene.monitor, &msg, reached, suppressed.as_deref(), at_ms)
        }
    };
    Decision { key, state, transition, change, notifications, told }
}

/// The notifications of `msg`: the alert's recipients, then the people of the first `reached`
/// escalation steps, each once per channel.
fn audience(
    config: &Config,
    project: &str,
    monitor: Option<&PortMonitor>,
    msg: &AlertMessage,
    reached: u32,
    suppressed: Option<&str>,
    at_ms: i64,
) -> Vec<NewNotification> {
    let mut rows = build_notifications(config, project, msg, monitor, suppressed, at_ms);
    let steps = config.projects.get(project).map_or(&[][..], |p| &p.escalation[..]);
    for step in steps.iter().take(reached as usize) {
        for row in build_escalation(config, project, msg, step, suppressed, at_ms) {
            if !rows.iter().any(|r| r.channel == row.channel && r.recipient == row.recipient) {
                rows.push(row);
            }
        }
    }
    rows
}

/// How often a firing alert of `rule` is repeated, in ms: its port monitor's `repeat`, else (for
/// the rules of an alert policy: metrics, no data) its server's policy's, else the project's.
pub fn repeat_ms(scene: &Scene, rule: &RuleId) -> Option<i64> {
    own_setting(scene, rule, |m| m.repeat, |p| p.repeat).or(scene.project.repeat).map(millis)
}

/// When an instance of `rule` counts as flapping: its port monitor's `flapping`, else (for the
/// rules of an alert policy) its server's policy's, else the project's; `None` when that is off.
pub fn flapping_of(scene: &Scene, rule: &RuleId) -> Option<Flapping> {
    own_setting(scene, rule, |m| m.flapping, |p| p.flapping).unwrap_or(scene.project.flapping).limits()
}

/// A setting of `rule`'s own object, where one may set it instead of the project: a port rule's
/// monitor (`of_monitor`), or the policy of the server a policy rule belongs to (`of_policy`).
fn own_setting<T>(
    scene: &Scene,
    rule: &RuleId,
    of_monitor: impl FnOnce(&PortMonitor) -> Option<T>,
    of_policy: impl FnOnce(&AlertPolicy) -> Option<T>,
) -> Option<T> {
    match rule {
        RuleId::Port(_) => scene.monitor.and_then(of_monitor),
        RuleId::Metric(_) | RuleId::NoData | RuleId::Restart => scene
            .project
            .servers
            .get(scene.server)
            .and_then(|server| server_policy(scene.config, scene.project, server))
            .and_then(of_policy),
        _ => None,
    }
}

/// When an instance is stable: its last change has left the flapping window. With flapping off,
/// at once — what it remembers from before is let go at the next look.
fn quiet_from(flapping: Option<Flapping>, state: &AlertState) -> Option<i64> {
    match flapping {
        Some(f) => state.changes.last().map(|last| last.saturating_add(millis(f.within))),
        None => (state.flapping.is_some() || !state.changes.is_empty()).then(|| state.changes.last().copied().unwrap_or(i64::MIN)),
    }
}

/// When time alone next decides something for `state`: a reminder, an escalation step, the end
/// of flapping, or forgetting changes that left the flapping window.
pub fn next_due_ms(scene: &Scene, rule: &RuleId, state: &AlertState) -> Option<i64> {
    let quiet = quiet_from(flapping_of(scene, rule), state);
    [next_reminder_ms(scene, rule, state), next_step_ms(scene, state), quiet].into_iter().flatten().min()
}

fn next_reminder_ms(scene: &Scene, rule: &RuleId, state: &AlertState) -> Option<i64> {
    if !state.is_firing() || state.acknowledged || state.flapping.is_some() {
        return None;
    }
    let repeat = repeat_ms(scene, rule)?;
    Some(state.fired_at_ms?.saturating_add(repeat.saturating_mul(i64::from(state.reminders) + 1)))
}

fn next_step_ms(scene: &Scene, state: &AlertState) -> Option<i64> {
    if !state.is_firing() || state.acknowledged || state.flapping.is_some() {
        return None;
    }
    let step = scene.project.escalation.get(state.escalations as usize)?;
    Some(state.fired_at_ms?.saturating_add(millis(step.after)))
}

/// What time alone decides for an instance at `now_ms`, once [`next_due_ms`] has come:
///
/// - When its changes have all left the flapping window, it forgets them; a flapping instance
///   is stable then: one `settled` notification says whether it still fails, and a firing one
///   counts its reminders and escalation from now.
/// - When its alert was acknowledged (`acknowledged`), the state remembers it, and reminders
///   and escalation stop.
/// - Each escalation step whose `after` has passed since it fired reaches its people once —
///   every step due, in order: a restart neither skips a step nor repeats one.
/// - A reminder to the recipients of a new alert, saying how long it has been firing. Reminder
///   `n` is due `n × repeat` after the alert fired; the count is stored with the notification,
///   so a restart neither repeats a reminder nor skips one — a reminder due while serve was down
///   goes out once, at the first look after, and the count moves past every slot that went by.
///
/// `None`: nothing to record.
pub fn timed(
    scene: &Scene,
    key: &InstanceKey,
    before: &Instance,
    acknowledged: bool,
    now_ms: i64,
    parent_down: &dyn Fn(&str) -> bool,
) -> Option<Decision> {
    let due = next_due_ms(scene, &key.rule, &before.state)?;
    let mut state = before.state.clone();
    if acknowledged && state.is_firing() {
        state.acknowledged = true;
    }
    let mut notifications = Vec::new();
    let mut told = Vec::new();
    if now_ms >= due {
        let server = (!scene.server.is_empty()).then_some(scene.server);
        let suppressed = suppression(scene.project, server, now_ms, parent_down);
        let (severity, since_ms) = match state.phase {
            Phase::Firing { since_ms, severity } => (severity, since_ms),
            _ => (state.flapping.unwrap_or(Severity::Warning), now_ms),
        };
        let msg = |kind, detail: String| AlertMessage {
            kind,
            severity,
            project: scene.project.name.clone(),
            server: server.map(str::to_string),
            host: scene.host.to_string(),
            what: describe(key),
            detail,
            started_at_ms: since_ms,
            at_ms: now_ms,
            alert_id: before.open_alert_id,
        };
        let flapping = flapping_of(scene, &key.rule);
        if quiet_from(flapping, &state).is_some_and(|quiet| now_ms >= quiet) {
            state.changes.clear();
            if state.flapping.take().is_some() {
                let firing = state.is_firing();
                let how = flapping.map_or_else(|| "flapping is now off".to_string(), |f| format!("stable for {}", f.within));
                let detail =
                    if firing { format!("still failing after flapping; {how}") } else { format!("recovered after flapping; {how}") };
                let reached = if firing { 0 } else { state.escalations };
                let config = scene.config;
                notifications.extend(audience(
                    config,
                    &scene.project.name,
                    scene.monitor,
                    &msg(MessageKind::Settled, detail),
                    reached,
                    suppressed.as_deref(),
                    now_ms,
                ));
                told.push(Told { kind: MessageKind::Settled, severity, step: None });
                if firing {
                    (state.fired_at_ms, state.reminders, state.escalations) = (Some(now_ms), 0, 0);
                    state.announced = suppressed.is_none();
                }
            }
        }
        if state.is_firing() && !state.acknowledged && state.flapping.is_none() {
            let fired_at = state.fired_at_ms.unwrap_or(now_ms);
            let steps = &scene.project.escalation;
            let reached = steps.iter().take_while(|s| now_ms - fired_at >= millis(s.after)).count();
            for (index, step) in steps.iter().enumerate().take(reached).skip(state.escalations as usize) {
                let n = index as u32 + 1;
                let detail = format!("escalation step {n}: not acknowledged after {}", step.after);
                notifications.extend(build_escalation(
                    scene.config,
                    &scene.project.name,
                    &msg(MessageKind::Escalation, detail),
                    step,
                    suppressed.as_deref(),
                    now_ms,
                ));
                told.push(Told { kind: MessageKind::Escalation, severity, step: Some(n) });
            }
            state.escalations = state.escalations.max(reached as u32);
            if let Some(repeat) = repeat_ms(scene, &key.rule)
                && next_reminder_ms(scene, &key.rule, &state).is_some_and(|due| now_ms >= due)
            {
                let slots = u32::try_from((now_ms - fired_at) / repeat.max(1)).unwrap_or(u32::MAX);
                notifications.extend(build_notifications(
                    scene.config,
                    &scene.project.name,
                    &msg(MessageKind::Reminder, String::new()),
                    scene.monitor,
                    suppressed.as_deref(),
                    now_ms,
                ));
                told.push(Told { kind: MessageKind::Reminder, severity, step: None });
                state.reminders = slots.max(state.reminders + 1);
            }
            // Whoever heard a reminder or a step hears the resolve, as for the fired notification.
            state.announced |= !told.is_empty() && suppressed.is_none();
        }
    }
    if state == before.state && notifications.is_empty() {
        return None;
    }
    Some(Decision { key: key.clone(), state, transition: None, change: None, notifications, told })
}

/// Close an instance for good because a revision removed or paused what it watches: a firing
/// alert resolves with `reason` and notifies as a resolve (its escalation steps' people
/// included), unless its project is gone, when nobody is left to tell; anything else is simply
/// forgotten.
pub fn retire(config: &Config, key: &InstanceKey, before: &Instance, reason: &str, now_ms: i64) -> Decision {
    let Phase::Firing { since_ms, severity } = before.state.phase else {
        return Decision {
            key: key.clone(),
            state: AlertState::default(),
            transition: None,
            change: None,
            notifications: Vec::new(),
            told: Vec::new(),
        };
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
        notifications: audience(config, &key.project, None, &msg, before.state.escalations, None, now_ms),
        told: Vec::new(),
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
                next_due_ms(&scene, &key.rule, &instance.state).is_some_and(|due| t >= due),
                timed(&scene, &key, &instance, false, t, &|_| false).is_some()
            );
            if let Some(d) = timed(&scene, &key, &instance, acked, t, &|_| false) {
                assert!(d.notifications.iter().all(|n| n.kind == MessageKind::Reminder), "{d:?}");
                if !d.notifications.is_empty() || d.state.acknowledged != instance.state.acknowledged {
                    out.push((t, d.notifications.len()));
                }
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

    const LADDER: &str = r#"
kind: User
email: alice@example.com
name: Alice
---
kind: User
email: boss@example.com
name: Boss
phone: "+82-10-1111-1111"
notify: { email: false }
---
kind: User
email: ceo@example.com
name: Ceo
---
kind: Channel
name: ops-mail
type: email
smtp: { host: smtp.example.com, port: 587 }
from: "watchkeeper <alerts@example.com>"
---
kind: Channel
name: ops-sms
type: sms
url: https://sms.example.com/send
---
kind: Project
name: shop
members: [{ user: alice@example.com, role: admin }]
channels: [ops-mail, ops-sms]
escalation:
  - { after: 15m, notify: [boss@example.com], media: [email, sms] }
  - { after: 30m, notify: [ceo@example.com] }
flapping: { changes: 3, within: 10m }
---
kind: PortMonitor
name: web
project: shop
host: 192.0.2.1
ports: [80]
failures: 1
"#;

    /// Drive the `web` monitor of `config`: at each (time, check) a result (`Some(ok)`) or only
    /// time passing (`None`); acknowledged from `acked_from`. Returns what each decision told,
    /// as (time, kind, step), and the recipients of each time's notifications.
    #[allow(clippy::type_complexity)]
    fn drive(
        config: &Config,
        script: &[(i64, Option<bool>)],
        acked_from: Option<i64>,
    ) -> (Vec<(i64, MessageKind, Option<u32>)>, Vec<(i64, MessageKind, String, crate::notification::DeliveryStatus)>) {
        let project = &config.projects["shop"];
        let m = &project.port_monitors["web"];
        let scene = Scene { config, project, server: "", host: &m.host, monitor: Some(m), report: None };
        let mut instance = Instance::default();
        let (mut told, mut rows) = (Vec::new(), Vec::new());
        for &(t, check) in script {
            let acked = acked_from.is_some_and(|a| t >= a);
            let key = scene.key(RuleId::Port("web".into()), "80".into());
            let mut decisions = Vec::new();
            if let Some(d) = timed(&scene, &key, &instance, acked, t, &|_| false) {
                decisions.push(d);
            }
            if let Some(ok) = check {
                let before = Instance { state: decisions.last().map_or_else(|| instance.state.clone(), |d| d.state.clone()), ..instance };
                decisions.push(decide(&scene, port_check(m, 80, (!ok).then_some("refused")), &before, t, &|_| false));
            }
            for d in decisions {
                if let Some(tr) = d.transition {
                    told.push((t, tr.kind(), None));
                }
                told.extend(d.told.iter().map(|x| (t, x.kind, x.step)));
                rows.extend(d.notifications.iter().map(|n| (t, n.kind, n.recipient.clone(), n.status)));
                instance = Instance { state: d.state, open_alert_id: Some(1) };
            }
        }
        (told, rows)
    }

    #[test]
    fn escalation_steps_reach_their_people_in_order_once_each_and_the_resolve_reaches_them_too() {
        use crate::notification::DeliveryStatus::Pending;
        let config = compile_inline(LADDER);
        let script = [(0, Some(false)), (14 * MIN, None), (15 * MIN, None), (16 * MIN, None), (31 * MIN, None), (32 * MIN, Some(true))];
        let (told, rows) = drive(&config, &script, None);
        assert_eq!(
            told,
            [
                (0, MessageKind::Fired, None),
                (15 * MIN, MessageKind::Escalation, Some(1)),
                (31 * MIN, MessageKind::Escalation, Some(2)),
                (32 * MIN, MessageKind::Resolved, None)
            ]
        );
        let at = |t: i64| rows.iter().filter(|r| r.0 == t).map(|r| (r.1, r.2.as_str(), r.3)).collect::<Vec<_>>();
        // Step 1: the boss by e-mail and SMS, though his own e-mail is off; not alice again.
        assert_eq!(
            at(15 * MIN),
            [(MessageKind::Escalation, "boss@example.com", Pending), (MessageKind::Escalation, "+821011111111", Pending)]
        );
        assert_eq!(at(31 * MIN), [(MessageKind::Escalation, "ceo@example.com", Pending)]);
        // Everyone who heard of it hears the resolve.
        let resolve: Vec<&str> = at(32 * MIN).iter().map(|r| r.1).collect();
        assert_eq!(resolve, ["alice@example.com", "boss@example.com", "+821011111111", "ceo@example.com"]);
    }

    #[test]
    fn escalation_after_a_gap_sends_every_step_due_once_and_an_ack_stops_the_ladder() {
        let config = compile_inline(LADDER);
        // Nobody looked between 1 and 40 minutes (serve was down): both steps then, once.
        let (told, _) = drive(&config, &[(0, Some(false)), (MIN, None), (40 * MIN, None), (41 * MIN, None)], None);
        assert_eq!(
            told,
            [(0, MessageKind::Fired, None), (40 * MIN, MessageKind::Escalation, Some(1)), (40 * MIN, MessageKind::Escalation, Some(2))]
        );
        // Acknowledged at 20: step 1 went out, step 2 never does, and the resolve reaches step 1 only.
        let script = [(0, Some(false)), (15 * MIN, None), (20 * MIN, None), (31 * MIN, None), (45 * MIN, Some(true))];
        let (told, rows) = drive(&config, &script, Some(20 * MIN));
        assert_eq!(
            told,
            [(0, MessageKind::Fired, None), (15 * MIN, MessageKind::Escalation, Some(1)), (45 * MIN, MessageKind::Resolved, None)]
        );
        assert!(rows.iter().any(|r| r.0 == 45 * MIN && r.2 == "boss@example.com"));
        assert!(!rows.iter().any(|r| r.2 == "ceo@example.com"));
        // A restored state continues: step 1 already counted, the ladder goes on with step 2.
        let state = AlertState { escalations: 1, ..fired(&config, "web").1.state };
        let restored: AlertState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(restored.escalations, 1);
    }

    #[test]
    fn a_flapping_alert_says_so_once_keeps_quiet_then_tells_where_it_settled() {
        use crate::notification::DeliveryStatus::{NotSent, Pending};
        let config = compile_inline(LADDER);
        // changes: 3 within 10m — the 4th change (fired, resolved, fired, resolved) makes it flap.
        let mut script: Vec<(i64, Option<bool>)> = (0..8).map(|i| (i * MIN, Some(i % 2 == 1))).collect();
        script.extend([(16 * MIN, None), (17 * MIN, None), (18 * MIN, None)]);
        let (told, rows) = drive(&config, &script, None);
        let kinds: Vec<(i64, MessageKind)> =
            told.iter().map(|t| (t.0, t.1)).filter(|t| !matches!(t.1, MessageKind::Fired | MessageKind::Resolved)).collect();
        // Last change at 7m: stable for 10m at 17m, settled there as recovered (the last check was good).
        assert_eq!(kinds, [(3 * MIN, MessageKind::Flapping), (17 * MIN, MessageKind::Settled)]);
        let sent: Vec<(i64, MessageKind)> = rows.iter().filter(|r| r.3 == Pending).map(|r| (r.0, r.1)).collect();
        assert_eq!(
            sent,
            [
                (0, MessageKind::Fired),
                (MIN, MessageKind::Resolved),
                (2 * MIN, MessageKind::Fired),
                (3 * MIN, MessageKind::Flapping),
                (17 * MIN, MessageKind::Settled)
            ]
        );
        assert!(rows.iter().filter(|r| (4 * MIN..=7 * MIN).contains(&r.0)).all(|r| r.3 == NotSent));
        // Settling firing: the state keeps firing, and the ladder counts from the settle.
        let mut script: Vec<(i64, Option<bool>)> = (0..8).map(|i| (i * MIN, Some(i % 2 == 1))).collect();
        script.extend([(8 * MIN, Some(false)), (17 * MIN, None), (18 * MIN, None), (32 * MIN, None), (33 * MIN, None)]);
        let (told, _) = drive(&config, &script, None);
        let late: Vec<_> = told.into_iter().filter(|t| t.0 > 8 * MIN).collect();
        assert_eq!(late, [(18 * MIN, MessageKind::Settled, None), (33 * MIN, MessageKind::Escalation, Some(1))]);
    }

    #[test]
    fn flapping_off_tells_every_change_and_turning_it_off_ends_a_flap_at_once() {
        use crate::notification::DeliveryStatus::Pending;
        let script: Vec<(i64, Option<bool>)> = (0..8).map(|i| (i * MIN, Some(i % 2 == 1))).collect();
        let every: Vec<MessageKind> = (0..8).map(|i| if i % 2 == 0 { MessageKind::Fired } else { MessageKind::Resolved }).collect();
        // Off on the monitor (winning over the project's block), or on the project.
        for tree in [
            LADDER.replace("failures: 1\n", "failures: 1\nflapping: off\n"),
            LADDER.replace("flapping: { changes: 3, within: 10m }", "flapping: off"),
        ] {
            let (told, rows) = drive(&compile_inline(&tree), &script, None);
            assert_eq!(told.iter().map(|t| t.1).collect::<Vec<_>>(), every);
            assert!(rows.iter().all(|r| r.3 == Pending), "{rows:?}");
        }
        // Flapping under the project's block (from the 4th change at 3m), then a revision turns
        // it off: the next look settles it, and its changes are told again.
        let on = compile_inline(LADDER);
        let off = compile_inline(&LADDER.replace("failures: 1\n", "failures: 1\nflapping: off\n"));
        let (key, mut instance) = (RuleId::Port("web".into()), Instance::default());
        for (config, t, ok) in [(&on, 0, false), (&on, MIN, true), (&on, 2 * MIN, false), (&on, 3 * MIN, true), (&on, 4 * MIN, false)] {
            let (project, m) = (&config.projects["shop"], &config.projects["shop"].port_monitors["web"]);
            let scene = Scene { config, project, server: "", host: &m.host, monitor: Some(m), report: None };
            let d = decide(&scene, port_check(m, 80, (!ok).then_some("refused")), &instance, t, &|_| false);
            instance = Instance { state: d.state, open_alert_id: Some(1) };
        }
        assert_eq!(instance.state.flapping, Some(Severity::Fatal));
        let (project, m) = (&off.projects["shop"], &off.projects["shop"].port_monitors["web"]);
        let scene = Scene { config: &off, project, server: "", host: &m.host, monitor: Some(m), report: None };
        assert_eq!(next_due_ms(&scene, &key, &instance.state), Some(4 * MIN), "due at once");
        let settled = timed(&scene, &scene.key(key.clone(), "80".into()), &instance, false, 4 * MIN + 1, &|_| false).expect("a decision");
        assert_eq!(settled.told.iter().map(|t| t.kind).collect::<Vec<_>>(), [MessageKind::Settled]);
        assert!(settled.notifications.iter().all(|n| n.body.contains("flapping is now off")), "{:?}", settled.notifications);
        assert_eq!((settled.state.flapping, settled.state.changes.len()), (None, 0));
        let instance = Instance { state: settled.state, open_alert_id: Some(1) };
        let resolved = decide(&scene, port_check(m, 80, None), &instance, 5 * MIN, &|_| false);
        assert!(resolved.notifications.iter().all(|n| n.kind == MessageKind::Resolved && n.status == Pending));
        assert!(!resolved.notifications.is_empty());
    }

    #[test]
    fn changes_outside_the_window_do_not_count_and_are_forgotten() {
        let config = compile_inline(LADDER);
        // A change every 4 minutes: never more than 3 within 10m.
        let script: Vec<(i64, Option<bool>)> = (0..12).map(|i| (i * 4 * MIN, Some(i % 2 == 1))).collect();
        let (told, _) = drive(&config, &script, None);
        assert!(told.iter().all(|t| matches!(t.1, MessageKind::Fired | MessageKind::Resolved)), "{told:?}");
        // An instance at rest forgets its changes once they leave the window, and is dropped.
        let (key, instance) = fired(&config, "web");
        let project = &config.projects["shop"];
        let m = &project.port_monitors["web"];
        let scene = Scene { config: &config, project, server: "", host: &m.host, monitor: Some(m), report: None };
        let resolved = decide(&scene, port_check(m, 80, None), &instance, MIN, &|_| false);
        assert_eq!(resolved.state.changes, [0, MIN]);
        let rest = Instance { state: resolved.state, open_alert_id: None };
        assert_eq!(next_due_ms(&scene, &key.rule, &rest.state), Some(11 * MIN));
        let forgotten = timed(&scene, &key, &rest, false, 11 * MIN, &|_| false).expect("a decision");
        assert_eq!(forgotten.state, AlertState::default());
        assert!(forgotten.notifications.is_empty());
    }
}
