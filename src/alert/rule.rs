//! The identity of an alert instance: which rule raised it ([`RuleId`]) and about what
//! ([`InstanceKey`]). The engine keys its state by it, the store keeps it as text
//! (`port:web-01-ports`), the API shows that text and `watchkeeper test` files name it.
//!
//! | rule | text | subject | server |
//! |---|---|---|---|
//! | [`RuleId::Port`] | `port:<monitor>` | the port | the monitor's server, or empty |
//! | [`RuleId::DownCheck`] | `downcheck:<name>` | the service port | the target |
//! | [`RuleId::Metric`] | `metric:<metric>` | mount point, device or interface; empty host-wide | the server |
//! | [`RuleId::Process`] | `process:<policy>:count\|cpu\|memory` | empty | the server |
//! | [`RuleId::Log`] | `log:<policy>:<rule index>` | empty | the server |
//! | [`RuleId::NoData`] | `nodata` | empty | the server |
//! | [`RuleId::Restart`] | `restart` | empty | the server |
//!
//! Metric instances are keyed by the metric, not by the policy's name, so renaming a policy or
//! moving a server to another policy with the same rule keeps an open alert open.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Which of a ProcessPolicy's limits an instance watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProcessAspect {
    Count,
    Cpu,
    Memory,
}

words!(ProcessAspect { Count => "count", Cpu => "cpu", Memory => "memory" });

/// What raised an alert instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// A PortMonitor's check of one port.
    Port(String),
    /// A DownCheck's verdict on its target.
    DownCheck(String),
    /// An AlertPolicy threshold on a metric.
    Metric(String),
    /// A ProcessPolicy limit.
    Process { policy: String, aspect: ProcessAspect },
    /// A LogPolicy rule, by its index in the policy's `rules`.
    Log { policy: String, index: usize },
    /// An AlertPolicy's `no_data`: the server stopped reporting.
    NoData,
    /// An AlertPolicy's `restart`: the server rebooted.
    Restart,
    /// A rule stored by another version of watchkeeper that this one cannot read; such
    /// instances are retired on the next revision.
    Unrecognized(String),
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleId::Port(monitor) => write!(f, "port:{monitor}"),
            RuleId::DownCheck(name) => write!(f, "downcheck:{name}"),
            RuleId::Metric(metric) => write!(f, "metric:{metric}"),
            RuleId::Process { policy, aspect } => write!(f, "process:{policy}:{aspect}"),
            RuleId::Log { policy, index } => write!(f, "log:{policy}:{index}"),
            RuleId::NoData => f.write_str("nodata"),
            RuleId::Restart => f.write_str("restart"),
            RuleId::Unrecognized(text) => f.write_str(text),
        }
    }
}

/// A rule text that names no rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a rule id: use `port:<monitor>`, `downcheck:<name>`, `metric:<metric>`, `process:<policy>:count|cpu|memory`, `log:<policy>:<index>`, `nodata` or `restart`"
)]
pub struct BadRuleId(pub String);

impl FromStr for RuleId {
    type Err = BadRuleId;

    fn from_str(text: &str) -> Result<RuleId, BadRuleId> {
        let bad = || BadRuleId(text.to_string());
        let named = |name: &str| if name.is_empty() { Err(bad()) } else { Ok(name.to_string()) };
        match text.split_once(':') {
            None if text == "nodata" => Ok(RuleId::NoData),
            None if text == "restart" => Ok(RuleId::Restart),
            Some(("port", monitor)) => named(monitor).map(RuleId::Port),
            Some(("downcheck", name)) => named(name).map(RuleId::DownCheck),
            Some(("metric", metric)) => named(metric).map(RuleId::Metric),
            Some(("process", rest)) => {
                let (policy, aspect) = rest.rsplit_once(':').ok_or_else(bad)?;
                Ok(RuleId::Process { policy: named(policy)?, aspect: aspect.parse().map_err(|_| bad())? })
            }
            Some(("log", rest)) => {
                let (policy, index) = rest.rsplit_once(':').ok_or_else(bad)?;
                Ok(RuleId::Log { policy: named(policy)?, index: index.parse().map_err(|_| bad())? })
            }
            _ => Err(bad()),
        }
    }
}

impl RuleId {
    /// The rule a stored text names; text this version cannot read is [`RuleId::Unrecognized`].
    pub fn from_stored(text: &str) -> RuleId {
        text.parse().unwrap_or_else(|_| RuleId::Unrecognized(text.to_string()))
    }

    /// Threshold rules whose instance clears when a report no longer mentions it (a mount that
    /// went away, a process rule removed from the policy); events and counted rules do not.
    pub fn clears_when_unreported(&self) -> bool {
        matches!(self, RuleId::Metric(_) | RuleId::Process { .. })
    }
}

impl Serialize for RuleId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The identity of an alert instance: survives reloads while these four are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct InstanceKey {
    pub project: String,
    /// The server the alert is about; empty when none (a port monitor on a bare host).
    pub server: String,
    pub rule: RuleId,
    /// What within the rule: a port, a mount, an interface; may be empty.
    pub subject: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_round_trip_through_their_text() {
        let all = [
            RuleId::Port("web-01-ports".into()),
            RuleId::DownCheck("web-01-to-db-01-5432".into()),
            RuleId::Metric("disk.usage".into()),
            RuleId::Process { policy: "nginx".into(), aspect: ProcessAspect::Cpu },
            RuleId::Log { policy: "app-errors".into(), index: 3 },
            RuleId::NoData,
            RuleId::Restart,
        ];
        for rule in all {
            let text = rule.to_string();
            assert_eq!(text.parse::<RuleId>(), Ok(rule.clone()), "{text}");
            assert_eq!(serde_json::to_value(&rule).unwrap(), text);
        }
        assert_eq!(RuleId::Log { policy: "a".into(), index: 0 }.to_string(), "log:a:0");
    }

    #[test]
    fn malformed_rule_texts_are_refused_and_stored_ones_kept() {
        for text in ["", "port:", "process:nginx", "process:nginx:disk", "log:x:y", "metric", "alarm:x", "nodata:x"] {
            assert!(text.parse::<RuleId>().is_err(), "{text}");
        }
        assert_eq!(RuleId::from_stored("alarm:x"), RuleId::Unrecognized("alarm:x".into()));
        assert_eq!(RuleId::from_stored("alarm:x").to_string(), "alarm:x");
    }
}
