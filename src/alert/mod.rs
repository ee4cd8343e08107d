//! The pure alert core — no I/O, no clock, no runtime; time is passed in:
//!
//! - the state machine here: (state, rule, observation, now) → (state, transition);
//! - [`rule`] — an instance's identity ([`RuleId`], [`InstanceKey`]);
//! - [`rules`] — what a port check, a down-check verdict, a host report, a log hit or silence
//!   means for which instance;
//! - [`suppress`] — maintenance windows and `depends_on`: they decide whether a transition is
//!   notified, never whether it happens, so state and history stay true during a window;
//! - [`decide`] — the one decision serve's engine and `watchkeeper test` both run: new state,
//!   history change and notifications; and what time alone decides (reminders);
//! - [`retire`] — which instances a configuration keeps alive.

pub mod decide;
pub mod retire;
pub mod rule;
pub mod rules;
pub mod suppress;

pub use decide::{AlertChange, Decision, Instance, Scene, decide};
pub use rule::{InstanceKey, RuleId};

use serde::{Deserialize, Serialize};

pub use crate::config::raw::Severity;
use crate::notification::MessageKind;

/// How a rule turns observations into alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Port monitors and down-checks: fires on the `failures`-th consecutive failed check,
    /// resolves after `recoveries` consecutive good ones.
    Counted { failures: u32, recoveries: u32 },
    /// Metric thresholds: a level must hold for `for_ms` before the alert fires; a pending
    /// alert whose condition clears is dropped silently.
    Threshold { for_ms: i64 },
    /// Log keywords, restarts: every event notifies, at most once per `rate_limit_ms`.
    Event { rate_limit_ms: i64 },
}

/// One thing observed for an alert instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A check result: `None` passed, `Some(severity)` failed at that severity.
    Check(Option<Severity>),
    /// The level a metric value reaches now (`None`: below every threshold).
    Level(Option<Severity>),
    /// An event happened (a keyword matched, the server rebooted).
    Event(Severity),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Inactive,
    /// The condition holds but has not held long enough (or often enough) to fire.
    Pending {
        since_ms: i64,
        severity: Severity,
    },
    Firing {
        since_ms: i64,
        severity: Severity,
    },
}

/// Everything the machine remembers about one alert instance; persisted by the store so a
/// restart neither forgets a firing alert nor fires it twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AlertState {
    pub phase: Phase,
    /// Consecutive failed checks (counted rules).
    pub failures: u32,
    /// Consecutive good checks while firing (counted rules).
    pub recoveries: u32,
    /// When the last event was notified (event rules), for rate limiting.
    pub last_event_ms: Option<i64>,
    /// While firing: its `fired` (or a later `escalated`) notification went out, not held back
    /// by maintenance or a parent that is down — so its resolve is never held back either.
    #[serde(default)]
    pub announced: bool,
    /// When the instance fired, i.e. was first notified; reminders count from here.
    #[serde(default)]
    pub fired_at_ms: Option<i64>,
    /// Reminders sent since it fired (or reminder slots passed while serve was down).
    #[serde(default)]
    pub reminders: u32,
    /// Someone acknowledged its alert: no more reminders or escalation steps until it resolves.
    #[serde(default)]
    pub acknowledged: bool,
    /// Escalation steps that reached their people since it fired.
    #[serde(default)]
    pub escalations: u32,
    /// When it fired or resolved lately, oldest first: the changes within its flapping window
    /// (at most its flapping `changes` + 1), to tell when it flaps and when it is stable again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<i64>,
    /// `Some` while it is flapping — its transitions are recorded but not notified until it is
    /// stable; the highest severity it reached meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flapping: Option<Severity>,
}

/// What changed, for the caller to record and, unless suppressed, notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "transition", rename_all = "lowercase")]
pub enum Transition {
    Fired {
        severity: Severity,
        since_ms: i64,
    },
    Escalated {
        from: Severity,
        to: Severity,
    },
    Resolved {
        since_ms: i64,
        severity: Severity,
    },
    /// An event rule's event, not rate-limited.
    Event {
        severity: Severity,
    },
}

impl Transition {
    /// What the transition's notifications say.
    pub fn kind(&self) -> MessageKind {
        match self {
            Transition::Fired { .. } => MessageKind::Fired,
            Transition::Escalated { .. } => MessageKind::Escalated,
            Transition::Resolved { .. } => MessageKind::Resolved,
            Transition::Event { .. } => MessageKind::Event,
        }
    }

    /// The severity it is at (an escalation: the new one).
    pub fn severity(&self) -> Severity {
        match *self {
            Transition::Fired { severity, .. } | Transition::Resolved { severity, .. } | Transition::Event { severity } => severity,
            Transition::Escalated { to, .. } => to,
        }
    }
}

impl AlertState {
    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }
}

/// Advance one instance by one observation at `now_ms`.
pub fn step(state: AlertState, rule: RuleKind, observation: Observation, now_ms: i64) -> (AlertState, Option<Transition>) {
    match (rule, observation) {
        (RuleKind::Counted { failures, recoveries }, Observation::Check(result)) => counted(state, failures, recoveries, result, now_ms),
        (RuleKind::Threshold { for_ms }, Observation::Level(level)) => threshold(state, for_ms, level, now_ms),
        (RuleKind::Event { rate_limit_ms }, Observation::Event(severity)) => {
            let limited = state.last_event_ms.is_some_and(|last| now_ms - last < rate_limit_ms);
            if limited {
                (state, None)
            } else {
                (AlertState { last_event_ms: Some(now_ms), ..state }, Some(Transition::Event { severity }))
            }
        }
        // An observation of the wrong shape for the rule changes nothing.
        _ => (state, None),
    }
}

fn counted(state: AlertState, failures: u32, recoveries: u32, result: Option<Severity>, now_ms: i64) -> (AlertState, Option<Transition>) {
    match (state.phase, result) {
        (Phase::Firing { since_ms, severity }, Some(now_severity)) => {
            let next = AlertState { failures: state.failures.saturating_add(1), recoveries: 0, ..state };
            if now_severity > severity {
                let phase = Phase::Firing { since_ms, severity: now_severity };
                (AlertState { phase, ..next }, Some(Transition::Escalated { from: severity, to: now_severity }))
            } else {
                (next, None)
            }
        }
        (Phase::Firing { since_ms, severity }, None) => {
            let oks = state.recoveries + 1;
            if oks >= recoveries {
                (AlertState::default(), Some(Transition::Resolved { since_ms, severity }))
            } else {
                (AlertState { recoveries: oks, ..state }, None)
            }
        }
        (phase, Some(severity)) => {
            let count = state.failures.saturating_add(1);
            let since_ms = match phase {
                Phase::Pending { since_ms, .. } => since_ms,
                _ => now_ms,
            };
            let severity = match phase {
                Phase::Pending { severity: previous, .. } => previous.max(severity),
                _ => severity,
            };
            if count >= failures {
                let phase = Phase::Firing { since_ms, severity };
                (AlertState { phase, failures: count, recoveries: 0, ..state }, Some(Transition::Fired { severity, since_ms }))
            } else {
                (AlertState { phase: Phase::Pending { since_ms, severity }, failures: count, ..state }, None)
            }
        }
        (_, None) => (AlertState { last_event_ms: state.last_event_ms, ..AlertState::default() }, None),
    }
}

fn threshold(state: AlertState, for_ms: i64, level: Option<Severity>, now_ms: i64) -> (AlertState, Option<Transition>) {
    match (state.phase, level) {
        (Phase::Inactive, None) => (state, None),
        (Phase::Pending { .. }, None) => (AlertState { phase: Phase::Inactive, ..state }, None),
        (Phase::Firing { since_ms, severity }, None) => {
            (AlertState { phase: Phase::Inactive, ..state }, Some(Transition::Resolved { since_ms, severity }))
        }
        (Phase::Firing { since_ms, severity }, Some(now_severity)) => {
            if now_severity > severity {
                let phase = Phase::Firing { since_ms, severity: now_severity };
                (AlertState { phase, ..state }, Some(Transition::Escalated { from: severity, to: now_severity }))
            } else {
                (state, None)
            }
        }
        (phase, Some(severity)) => {
            let since_ms = match phase {
                Phase::Pending { since_ms, .. } => since_ms,
                _ => now_ms,
            };
            if now_ms - since_ms >= for_ms {
                (AlertState { phase: Phase::Firing { since_ms, severity }, ..state }, Some(Transition::Fired { severity, since_ms }))
            } else {
                (AlertState { phase: Phase::Pending { since_ms, severity }, ..state }, None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Severity::{Fatal, Warning};
    use super::*;

    /// Run a sequence of (time, observation) and collect the transitions with their times.
    fn run(rule: RuleKind, steps: &[(i64, Observation)]) -> (AlertState, Vec<(i64, Transition)>) {
        let mut state = AlertState::default();
        let mut out = Vec::new();
        for &(t, obs) in steps {
            let (next, transition) = step(state.clone(), rule, obs, t);
            state = next;
            out.extend(transition.map(|tr| (t, tr)));
        }
        (state, out)
    }

    const DOWN: Observation = Observation::Check(Some(Fatal));
    const UP: Observation = Observation::Check(None);

    #[test]
    fn counted_rule_fires_on_the_nth_consecutive_failure_with_the_first_failure_as_start() {
        let rule = RuleKind::Counted { failures: 3, recoveries: 1 };
        let (state, got) = run(rule, &[(0, DOWN), (180, DOWN), (360, DOWN), (540, DOWN)]);
        assert_eq!(got, vec![(360, Transition::Fired { severity: Fatal, since_ms: 0 })]);
        assert!(state.is_firing());
    }

    #[test]
    fn counted_rule_resets_on_a_good_check_before_firing() {
        let rule = RuleKind::Counted { failures: 3, recoveries: 1 };
        let (state, got) = run(rule, &[(0, DOWN), (1, DOWN), (2, UP), (3, DOWN), (4, DOWN)]);
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(state.failures, 2);
    }

    #[test]
    fn counted_rule_resolves_after_the_recoveries_count() {
        let rule = RuleKind::Counted { failures: 1, recoveries: 2 };
        let (state, got) = run(rule, &[(0, DOWN), (1, UP), (2, DOWN), (3, UP), (4, UP)]);
        assert_eq!(
            got,
            vec![(0, Transition::Fired { severity: Fatal, since_ms: 0 }), (4, Transition::Resolved { since_ms: 0, severity: Fatal })]
        );
        assert_eq!(state, AlertState::default());
    }

    #[test]
    fn counted_rule_escalates_once_from_warning_to_fatal() {
        // A down-check: service_down (warning) then host_down (fatal).
        let rule = RuleKind::Counted { failures: 2, recoveries: 1 };
        let warn = Observation::Check(Some(Warning));
        let (_, got) = run(rule, &[(0, warn), (1, warn), (2, DOWN), (3, DOWN), (4, warn)]);
        assert_eq!(
            got,
            vec![(1, Transition::Fired { severity: Warning, since_ms: 0 }), (2, Transition::Escalated { from: Warning, to: Fatal })]
        );
    }

    #[test]
    fn threshold_rule_fires_after_for_and_drops_a_pending_alert_silently() {
        let rule = RuleKind::Threshold { for_ms: 300 };
        let hot = Observation::Level(Some(Warning));
        let cool = Observation::Level(None);
        let (state, got) = run(rule, &[(0, hot), (200, hot), (250, cool), (400, hot), (699, hot)]);
        assert!(got.is_empty(), "pending never fired: {got:?}");
        assert_eq!(state.phase, Phase::Pending { since_ms: 400, severity: Warning });
        let (_, got) = run(rule, &[(0, hot), (300, hot), (400, Observation::Level(Some(Fatal))), (500, cool)]);
        assert_eq!(
            got,
            vec![
                (300, Transition::Fired { severity: Warning, since_ms: 0 }),
                (400, Transition::Escalated { from: Warning, to: Fatal }),
                (500, Transition::Resolved { since_ms: 0, severity: Fatal }),
            ]
        );
    }

    #[test]
    fn threshold_rule_with_no_for_fires_at_once_and_does_not_refire_while_firing() {
        let rule = RuleKind::Threshold { for_ms: 0 };
        let hot = Observation::Level(Some(Fatal));
        let (_, got) = run(rule, &[(5, hot), (6, hot), (7, Observation::Level(Some(Warning)))]);
        assert_eq!(got, vec![(5, Transition::Fired { severity: Fatal, since_ms: 5 })]);
    }

    #[test]
    fn event_rule_is_rate_limited_per_instance() {
        let rule = RuleKind::Event { rate_limit_ms: 60_000 };
        let hit = Observation::Event(Fatal);
        let (_, got) = run(rule, &[(0, hit), (10_000, hit), (59_999, hit), (60_000, hit)]);
        assert_eq!(got, vec![(0, Transition::Event { severity: Fatal }), (60_000, Transition::Event { severity: Fatal })]);
    }

    #[test]
    fn a_restored_firing_state_does_not_fire_again() {
        // What serve does after a restart: the persisted state continues.
        let rule = RuleKind::Counted { failures: 3, recoveries: 1 };
        let (state, _) = run(rule, &[(0, DOWN), (1, DOWN), (2, DOWN)]);
        let restored: AlertState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        let (next, transition) = step(restored, rule, DOWN, 3);
        assert_eq!(transition, None);
        assert_eq!(next.phase, Phase::Firing { since_ms: 0, severity: Fatal });
    }

    #[test]
    fn mismatched_observations_change_nothing() {
        let state = AlertState::default();
        assert_eq!(step(state.clone(), RuleKind::Threshold { for_ms: 0 }, DOWN, 0), (state.clone(), None));
        assert_eq!(step(state.clone(), RuleKind::Counted { failures: 1, recoveries: 1 }, Observation::Event(Fatal), 0), (state, None));
    }
}
