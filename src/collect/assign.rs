//! What each agent is asked to run besides sampling: the down-checks its server is the
//! detector of and the log rules of the LogPolicies that name it, from the configuration serve
//! has applied — so a merged change reaches agents with their next push.

use crate::config::model::{Config, LogRule};
use crate::protocol::{Assignments, DownCheckAssignment, LogAssignment, downcheck_timeout_ms};

/// The assignments of `server` in `project` under `config`: none for an unknown or paused server.
pub fn assignments(config: &Config, project: &str, server: &str) -> Assignments {
    let Some(p) = config.projects.get(project) else { return Assignments::default() };
    if p.servers.get(server).is_none_or(|s| s.paused) {
        return Assignments::default();
    }
    let down_checks = p
        .down_checks
        .values()
        .filter(|d| d.detector == server && p.servers.get(&d.target).is_some_and(|t| !t.paused))
        .map(|d| {
            let interval_ms = d.interval.0.as_millis() as u64;
            DownCheckAssignment {
                name: d.name.clone(),
                ip: d.ip.clone(),
                port: d.port,
                liveness_port: d.liveness_port,
                interval_ms,
                timeout_ms: downcheck_timeout_ms(interval_ms),
            }
        })
        .collect();
    let log_rules = p
        .log_policies
        .values()
        .filter(|lp| lp.servers.iter().any(|s| s == server))
        .flat_map(|lp| {
            lp.rules.iter().enumerate().filter_map(|(rule, r)| match r {
                LogRule::File { file, keyword, .. } => {
                    Some(LogAssignment { policy: lp.name.clone(), rule, file: file.clone(), keyword: keyword.clone() })
                }
                LogRule::EventLog { .. } => None, // Windows event logs: not read by the Linux agent
            })
        })
        .collect();
    Assignments { down_checks, log_rules }
}
