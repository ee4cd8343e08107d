//! Caps per server on what multiplies alert instances and page size: mount points, block
//! devices, network interfaces and process names. Each server has room for so many of each;
//! values of a subject beyond that are dropped before anything is stored, so one report (or a
//! run of reports each naming new subjects) cannot open thousands of alerts.
//!
//! A subject already known keeps its place; a new one takes a free place, or the place of one
//! the server has not reported for [`FORGET_MS`]; else it is dropped. The writer counts what it
//! drops and warns once per server per [`WARN_EVERY_MS`].

use std::collections::HashMap;

use crate::catalog::{self, Per};
use crate::protocol::Report;

/// How many subjects of each kind one server may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectCaps {
    pub mounts: usize,
    pub devices: usize,
    pub interfaces: usize,
    pub process_names: usize,
}

impl Default for SubjectCaps {
    /// What an honest large host fits in: 256 mounts, 256 devices, 256 interfaces, 1 024 process names.
    fn default() -> SubjectCaps {
        SubjectCaps { mounts: 256, devices: 256, interfaces: 256, process_names: 1_024 }
    }
}

/// A subject not reported for this long gives its place up (a container host's interfaces and
/// mounts come and go).
pub const FORGET_MS: i64 = 60 * 60_000;
/// At most one warning per server this often.
pub const WARN_EVERY_MS: i64 = 60_000;

/// The kinds of subject, as `/metrics` labels them.
const KINDS: [&str; 4] = ["mount", "device", "interface", "process_name"];

/// Subjects dropped from one report, by kind ([`KINDS`] order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped(pub [u64; 4]);

impl Dropped {
    pub fn any(&self) -> bool {
        self.0.iter().any(|&n| n > 0)
    }

    /// `(kind, count)` for each kind with drops.
    pub fn by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KINDS.iter().zip(self.0).filter(|(_, n)| *n > 0).map(|(k, n)| (*k, n))
    }
}

/// One server's known subjects: name → when last reported, per kind.
#[derive(Debug, Default)]
struct Known {
    kinds: [HashMap<String, i64>; 4],
    warned_ms: Option<i64>,
}

/// The known subjects of every server. Owned by the writer.
#[derive(Debug, Default)]
pub struct Caps {
    limits: SubjectCaps,
    servers: HashMap<(String, String), Known>,
}

impl Caps {
    pub fn new(limits: SubjectCaps) -> Caps {
        Caps { limits, servers: HashMap::new() }
    }

    /// Drop from `report` (of `server` in `project`, received at `now_ms`) the values of
    /// subjects beyond the server's caps; how many subjects of each kind were dropped.
    pub fn apply(&mut self, project: &str, server: &str, report: &mut Report, now_ms: i64) -> Dropped {
        let caps = [self.limits.mounts, self.limits.devices, self.limits.interfaces, self.limits.process_names];
        let known = self.servers.entry((project.to_string(), server.to_string())).or_default();
        let mut dropped = Dropped::default();
        let mut refused: [Vec<String>; 4] = Default::default();
        let mut admit = |kind: usize, name: &str| -> bool {
            if refused[kind].iter().any(|r| r == name) {
                return false;
            }
            let seen = &mut known.kinds[kind];
            if let Some(last) = seen.get_mut(name) {
                *last = now_ms;
                return true;
            }
            if seen.len() >= caps[kind] {
                seen.retain(|_, last| now_ms - *last < FORGET_MS);
            }
            if seen.len() < caps[kind] {
                seen.insert(name.to_string(), now_ms);
                true
            } else {
                dropped.0[kind] += 1;
                refused[kind].push(name.to_string());
                false
            }
        };
        report.metrics.retain(|m| {
            let kind = match catalog::lookup(m.name).map(|metric| metric.per) {
                Some(Per::Mount) => 0,
                Some(Per::Device) => 1,
                Some(Per::Interface) => 2,
                Some(Per::Host) | None => return true,
            };
            m.subject.as_deref().is_none_or(|subject| admit(kind, subject))
        });
        report.process_counts.retain(|name, _| admit(3, name));
        report.processes.retain(|p| admit(3, &p.name));
        dropped
    }

    /// Whether a warning about `server` is due at `now_ms` (then not again for [`WARN_EVERY_MS`]).
    pub fn warn_due(&mut self, project: &str, server: &str, now_ms: i64) -> bool {
        let Some(known) = self.servers.get_mut(&(project.to_string(), server.to_string())) else { return false };
        if known.warned_ms.is_some_and(|at| now_ms - at < WARN_EVERY_MS) {
            return false;
        }
        known.warned_ms = Some(now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Facts, MetricValue, ProcessInfo};

    fn report(mounts: std::ops::Range<usize>, processes: &[&str]) -> Report {
        let mut metrics = vec![MetricValue { name: "cpu.usage", subject: None, value: 1.0 }];
        for i in mounts {
            for name in ["disk.usage", "disk.free_bytes"] {
                metrics.push(MetricValue { name, subject: Some(format!("/m{i}")), value: 1.0 });
            }
        }
        Report {
            facts: Facts::default(),
            metrics,
            processes: processes
                .iter()
                .map(|n| ProcessInfo { pid: 1, name: n.to_string(), user: "root".into(), cpu: None, memory: 0.0, rss_bytes: 0 })
                .collect(),
            process_counts: processes.iter().map(|n| (n.to_string(), 1)).collect(),
            skipped_mounts: vec![],
            at_ms: 0,
        }
    }

    fn mounts(r: &Report) -> Vec<String> {
        let mut out: Vec<String> = r.metrics.iter().filter(|m| m.name == "disk.usage").filter_map(|m| m.subject.clone()).collect();
        out.sort();
        out
    }

    #[test]
    fn subjects_beyond_the_cap_are_dropped_across_reports_and_known_ones_stay() {
        let mut caps = Caps::new(SubjectCaps { mounts: 3, process_names: 2, ..SubjectCaps::default() });
        let mut first = report(0..2, &["nginx", "java", "cron"]);
        assert_eq!(caps.apply("shop", "web-01", &mut first, 0), Dropped([0, 0, 0, 1]));
        assert_eq!(mounts(&first), ["/m0", "/m1"]);
        // Names are taken in `process_counts` order (sorted), and a process keeps its name's place.
        assert_eq!(first.process_counts.keys().collect::<Vec<_>>(), ["cron", "java"]);
        assert_eq!(first.processes.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["java", "cron"]);
        assert_eq!(first.metrics.len(), 5, "cpu.usage stays, and both values of each kept mount");
        // A later report with new mounts: one more fits, the other two are dropped; known stay.
        let mut second = report(0..5, &[]);
        assert_eq!(caps.apply("shop", "web-01", &mut second, 1_000), Dropped([2, 0, 0, 0]));
        assert_eq!(mounts(&second), ["/m0", "/m1", "/m2"]);
        // Another server has room of its own.
        let mut other = report(5..8, &[]);
        assert_eq!(caps.apply("shop", "db-01", &mut other, 1_000), Dropped::default());
        // A mount silent for an hour gives its place up.
        let mut later = report(3..4, &[]);
        let hour_later = 1_000 + FORGET_MS;
        assert_eq!(caps.apply("shop", "web-01", &mut later, hour_later), Dropped::default());
        assert_eq!(mounts(&later), ["/m3"]);
    }

    #[test]
    fn one_warning_per_server_per_interval() {
        let mut caps = Caps::new(SubjectCaps::default());
        caps.apply("shop", "web-01", &mut report(0..1, &[]), 0);
        caps.apply("shop", "db-01", &mut report(0..1, &[]), 0);
        assert!(caps.warn_due("shop", "web-01", 0));
        assert!(!caps.warn_due("shop", "web-01", WARN_EVERY_MS - 1));
        assert!(caps.warn_due("shop", "db-01", 10));
        assert!(caps.warn_due("shop", "web-01", WARN_EVERY_MS));
    }
}
