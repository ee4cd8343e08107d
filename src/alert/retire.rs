//! Which alert instances a configuration keeps alive. The engine retires every other instance
//! when it applies a revision (its open alert resolves "removed in <revision>" or "paused in
//! <revision>"); `plan --against` uses the same rule to list the firing alerts a change would
//! drop, so the two cannot disagree.

use std::collections::BTreeSet;

use super::rule::{ProcessAspect, RuleId};
use super::rules::server_policy;
use crate::config::model::{Config, PortMonitor, Project};

/// Is this monitor probed? Not when the server it watches is paused.
pub fn monitor_active(project: &Project, monitor: &PortMonitor) -> bool {
    monitor.server.as_ref().is_none_or(|s| project.servers.get(s).is_none_or(|srv| !srv.paused))
}

/// Why a configuration retires an alert instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// Its monitor, port, server, rule or project is gone.
    Removed,
    /// Its server (or a down-check's detector or target) is paused.
    Paused,
}

words!(Retired { Removed => "removed", Paused => "paused" });

/// The alert instances a configuration keeps alive.
#[derive(Debug)]
pub struct LiveInstances<'a> {
    config: &'a Config,
    /// (project, monitor, port) of every port of every active monitor.
    ports: BTreeSet<(&'a str, &'a str, String)>,
    /// (project, monitor) of the monitors whose server is paused.
    paused_ports: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> LiveInstances<'a> {
    pub fn of(config: &'a Config) -> LiveInstances<'a> {
        let mut out = LiveInstances { config, ports: BTreeSet::new(), paused_ports: BTreeSet::new() };
        for project in config.projects.values() {
            for monitor in project.port_monitors.values() {
                if !monitor_active(project, monitor) {
                    out.paused_ports.insert((&project.name, &monitor.name));
                    continue;
                }
                for port in &monitor.ports {
                    out.ports.insert((&project.name, &monitor.name, port.to_string()));
                }
            }
        }
        out
    }

    /// Whether (and why) the instance is retired under this configuration; `None` when it
    /// lives on.
    pub fn retires(&self, project: &str, server: &str, rule: &RuleId, subject: &str) -> Option<Retired> {
        if let RuleId::Port(monitor) = rule {
            if self.ports.contains(&(project, monitor.as_str(), subject.to_string())) {
                return None;
            }
            return Some(if self.paused_ports.contains(&(project, monitor.as_str())) { Retired::Paused } else { Retired::Removed });
        }
        let Some(p) = self.config.projects.get(project) else { return Some(Retired::Removed) };
        if let RuleId::DownCheck(name) = rule {
            let Some(check) = p.down_checks.get(name).filter(|d| d.target == server && d.port.to_string() == subject) else {
                return Some(Retired::Removed);
            };
            let paused = [&check.detector, &check.target].iter().any(|s| p.servers.get(s.as_str()).is_none_or(|s| s.paused));
            return paused.then_some(Retired::Paused);
        }
        // Every other rule is about a server that must exist and not be paused.
        let Some(srv) = p.servers.get(server) else { return Some(Retired::Removed) };
        if srv.paused {
            return Some(Retired::Paused);
        }
        let policy = server_policy(self.config, p, srv);
        let kept = match rule {
            RuleId::Metric(metric) => policy.is_some_and(|pol| pol.rules.iter().any(|r| r.metric == *metric)),
            RuleId::Process { policy: name, aspect } => p.process_policies.get(name).is_some_and(|pp| {
                pp.applies_to(server)
                    && match aspect {
                        ProcessAspect::Count => pp.count_min.is_some() || pp.count_max.is_some(),
                        ProcessAspect::Cpu => pp.cpu.is_some(),
                        ProcessAspect::Memory => pp.memory.is_some(),
                    }
            }),
            RuleId::Log { policy: name, index } => {
                p.log_policies.get(name).is_some_and(|lp| lp.servers.iter().any(|s| s == server) && *index < lp.rules.len())
            }
            RuleId::NoData => policy.is_some_and(|pol| pol.no_data.is_some()),
            RuleId::Restart => policy.is_some_and(|pol| pol.restart),
            RuleId::Port(_) | RuleId::DownCheck(_) | RuleId::Unrecognized(_) => false,
        };
        (!kept).then_some(Retired::Removed)
    }
}
