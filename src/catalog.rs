//! The host metrics watchkeeper knows — one list, with each metric's unit, what it has one value
//! per, and whether AlertPolicy rules may use it. Config validation, the agent, the node_exporter
//! mapping, the ingest checks, the API's server columns and the charts all read it from here.

use std::fmt;

/// What a metric has one value per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Per {
    /// One value for the whole machine.
    Host,
    /// One per mount point (`/`, `/data`).
    Mount,
    /// One per block device (`sda`, `nvme0n1`).
    Device,
    /// One per network interface (`eth0`).
    Interface,
}

impl Per {
    /// How a message or an error names it: `per mount point`.
    pub fn word(self) -> &'static str {
        match self {
            Per::Host => "host-wide",
            Per::Mount => "per mount point",
            Per::Device => "per device",
            Per::Interface => "per interface",
        }
    }
}

/// What a metric's values measure, and so which values make sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// 0–100.
    Percent,
    /// A load average or a queue length: a non-negative number of tasks.
    Tasks,
    /// Events per second (IOPS, packets, page faults, errors).
    PerSecond,
    /// Bits per second (network throughput, as network people count it).
    BitsPerSecond,
    /// Bytes per second (disk throughput).
    BytesPerSecond,
    /// Bytes (disk space).
    Bytes,
}

impl Unit {
    /// The symbol shown after a value: `%`, `/s`, `bit/s`.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Percent => "%",
            Unit::Tasks => "",
            Unit::PerSecond => "/s",
            Unit::BitsPerSecond => "bit/s",
            Unit::BytesPerSecond => "B/s",
            Unit::Bytes => "B",
        }
    }

    /// The smallest and largest value a correct sampler can produce in this unit. Percentages
    /// are bounded; counts and rates are never negative; every value is finite.
    pub fn range(self) -> (f64, f64) {
        match self {
            Unit::Percent => (0.0, 100.0),
            _ => (0.0, f64::MAX),
        }
    }

    /// Whether a correct sampler could have produced `value`: finite and within [`Unit::range`].
    pub fn admits(self, value: f64) -> bool {
        let (low, high) = self.range();
        (low..=high).contains(&value)
    }

    /// [`Unit::range`] in words, for errors: `0–100 %`, `0 or more bit/s`.
    pub fn range_words(self) -> String {
        let words = match self.range() {
            (low, high) if high < f64::MAX => format!("{low}–{high} {}", self.symbol()),
            (low, _) => format!("{low} or more {}", self.symbol()),
        };
        words.trim_end().to_string()
    }
}

/// One host metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: Unit,
    pub per: Per,
    /// Whether AlertPolicy rules may name it. The others (the rest of the CPU split, free
    /// memory, space in bytes) are reported for charts and reports only.
    pub alertable: bool,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

const fn m(name: &'static str, unit: Unit, per: Per, alertable: bool) -> Metric {
    Metric { name, unit, per, alertable }
}

use Per::{Device, Host, Interface, Mount};
use Unit::{BitsPerSecond, Bytes, BytesPerSecond, PerSecond, Percent, Tasks};

/// Every host metric, alertable ones first in the order the documentation lists them.
pub const METRICS: &[Metric] = &[
    m("cpu.usage", Percent, Host, true),
    m("cpu.iowait", Percent, Host, true),
    m("cpu.steal", Percent, Host, true),
    m("cpu.irq", Percent, Host, true),
    m("cpu.softirq", Percent, Host, true),
    m("load.1", Tasks, Host, true),
    m("load.5", Tasks, Host, true),
    m("load.15", Tasks, Host, true),
    m("memory.usage", Percent, Host, true),
    m("memory.available", Percent, Host, true),
    m("swap.usage", Percent, Host, true),
    m("memory.page_faults", PerSecond, Host, true),
    m("disk.usage", Percent, Mount, true),
    m("disk.io", Percent, Device, true),
    m("disk.iops", PerSecond, Device, true),
    m("disk.read_bps", BytesPerSecond, Device, true),
    m("disk.write_bps", BytesPerSecond, Device, true),
    m("disk.queue", Tasks, Device, true),
    m("network.in_bps", BitsPerSecond, Interface, true),
    m("network.out_bps", BitsPerSecond, Interface, true),
    m("network.in_pps", PerSecond, Interface, true),
    m("network.out_pps", PerSecond, Interface, true),
    m("network.in_errors", PerSecond, Interface, true),
    m("network.out_errors", PerSecond, Interface, true),
    m("network.in_drops", PerSecond, Interface, true),
    m("network.out_drops", PerSecond, Interface, true),
    m("cpu.idle", Percent, Host, false),
    m("cpu.user", Percent, Host, false),
    m("cpu.system", Percent, Host, false),
    m("cpu.nice", Percent, Host, false),
    m("memory.free", Percent, Host, false),
    m("disk.used_bytes", Bytes, Mount, false),
    m("disk.free_bytes", Bytes, Mount, false),
];

/// The metric called `name`, if watchkeeper knows one.
pub fn lookup(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// The metric called `name`, resolved at compile time: a name missing from [`METRICS`] fails the
/// build. For code that names metrics literally (the samplers).
pub const fn known(name: &str) -> &'static Metric {
    let mut i = 0;
    while i < METRICS.len() {
        if str_eq(METRICS[i].name, name) {
            return &METRICS[i];
        }
        i += 1;
    }
    panic!("not a metric name in catalog::METRICS")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The names AlertPolicy rules may use.
pub fn alertable() -> impl Iterator<Item = &'static str> {
    METRICS.iter().filter(|m| m.alertable).map(|m| m.name)
}

/// Every name, comma-separated, for error messages.
pub fn names() -> String {
    METRICS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_subjects_follow_the_name() {
        let mut seen = HashSet::new();
        for metric in METRICS {
            assert!(seen.insert(metric.name), "{} listed twice", metric.name);
            let expected = if metric.name.starts_with("network.") {
                Interface
            } else if metric.name.starts_with("disk.") {
                if matches!(metric.name, "disk.usage" | "disk.used_bytes" | "disk.free_bytes") { Mount } else { Device }
            } else {
                Host
            };
            assert_eq!(metric.per, expected, "{}", metric.name);
        }
    }

    #[test]
    fn units_admit_what_a_sampler_can_produce_and_nothing_else() {
        let cases: &[(Unit, f64, bool)] = &[
            (Percent, 0.0, true),
            (Percent, 100.0, true),
            (Percent, 100.000_1, false),
            (Percent, -50.0, false),
            (BitsPerSecond, 1.7e308, true),
            (BitsPerSecond, -0.5, false),
            (Tasks, f64::INFINITY, false),
            (Bytes, f64::NAN, false),
            (PerSecond, f64::NEG_INFINITY, false),
        ];
        for &(unit, value, admitted) in cases {
            assert_eq!(unit.admits(value), admitted, "{unit:?} {value}");
        }
        assert_eq!(Percent.range_words(), "0–100 %");
        assert_eq!(BitsPerSecond.range_words(), "0 or more bit/s");
        assert_eq!(Tasks.range_words(), "0 or more");
    }

    #[test]
    fn lookup_and_known_agree() {
        assert_eq!(lookup("disk.io").map(|m| m.per), Some(Device));
        assert_eq!(known("network.in_bps").unit, BitsPerSecond);
        assert!(lookup("cpu.bogus").is_none());
        assert!(alertable().all(|name| lookup(name).is_some_and(|m| m.alertable)));
        assert_eq!(alertable().count(), 26);
    }
}
