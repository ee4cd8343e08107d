//! The figures the server list, the server page and the compound eye show of a report — CPU,
//! memory, disk space and IO, network — computed once when the report arrives (see
//! [`super::live`]), not again by every page that shows it.

use serde::Serialize;

use crate::protocol::Report;

/// A metric over the subjects that have it: the machine as a whole and the worst subject.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AllMax {
    pub all: Option<f64>,
    pub max: Option<f64>,
}

/// Running figures over the subjects of a metric: how many, their sum and the largest.
#[derive(Debug, Clone, Copy, Default)]
struct Over {
    n: u32,
    sum: f64,
    max: Option<f64>,
}

impl Over {
    fn add(&mut self, value: f64) {
        self.n += 1;
        self.sum += value;
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
    }

    /// `all` is the sum over the subjects.
    fn total(self) -> AllMax {
        AllMax { all: (self.n > 0).then_some(self.sum), max: self.max }
    }

    /// `all` is the mean over the subjects.
    fn mean(self) -> AllMax {
        AllMax { all: (self.n > 0).then(|| self.sum / f64::from(self.n)), max: self.max }
    }
}

/// Per subject, the sum of two metrics (in + out, read + write).
#[derive(Debug, Default)]
struct PairSums<'a>(Vec<(&'a str, f64)>);

impl<'a> PairSums<'a> {
    fn add(&mut self, subject: &'a str, value: f64) {
        match self.0.iter_mut().find(|(s, _)| *s == subject) {
            Some((_, total)) => *total += value,
            None => self.0.push((subject, value)),
        }
    }

    fn over(&self) -> Over {
        let mut over = Over::default();
        for (_, v) in &self.0 {
            over.add(*v);
        }
        over
    }
}

/// The list's columns computed from one report, in one pass over its values.
#[derive(Debug, Clone, Copy)]
pub struct Columns {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    /// `all`: used over size of every mount together (df's arithmetic); `max`: the fullest mount.
    pub disk: AllMax,
    /// In + out, bits per second: `all` over every interface, `max` the busiest.
    pub network: AllMax,
    /// Busy %: `all` the mean over devices, `max` the busiest.
    pub disk_io: AllMax,
    /// `all` the sum over devices, `max` the busiest.
    pub disk_iops: AllMax,
    /// Read + write, bytes per second: `all` the sum over devices, `max` the busiest.
    pub disk_bps: AllMax,
    /// Received and sent, bits per second, summed over interfaces.
    pub rx: Option<f64>,
    pub tx: Option<f64>,
}

impl Columns {
    /// One pass over the report's values, no allocation but for devices and interfaces. A value
    /// that does not fit its metric (a subject on `cpu.usage`, none on `disk.io`) counts for
    /// nothing.
    pub fn of(report: &Report) -> Columns {
        let (mut cpu, mut memory) = (None, None);
        let (mut used, mut free, mut usage) = (0.0, 0.0, Over::default());
        let (mut io, mut iops) = (Over::default(), Over::default());
        let (mut network, mut disk_bps) = (PairSums::default(), PairSums::default());
        let (mut rx, mut tx) = (Over::default(), Over::default());
        for m in &report.metrics {
            match (m.name, m.subject.as_deref()) {
                ("cpu.usage", None) => cpu = Some(m.value),
                ("memory.usage", None) => memory = Some(m.value),
                ("disk.usage", Some(_)) => usage.add(m.value),
                ("disk.used_bytes", Some(_)) => used += m.value,
                ("disk.free_bytes", Some(_)) => free += m.value,
                ("disk.io", Some(_)) => io.add(m.value),
                ("disk.iops", Some(_)) => iops.add(m.value),
                ("disk.read_bps" | "disk.write_bps", Some(s)) => disk_bps.add(s, m.value),
                ("network.in_bps", Some(s)) => {
                    network.add(s, m.value);
                    rx.add(m.value);
                }
                ("network.out_bps", Some(s)) => {
                    network.add(s, m.value);
                    tx.add(m.value);
                }
                _ => {}
            }
        }
        // node_exporter gives the percentage per mount but no byte counts: no `all` then.
        let space = used + free;
        Columns {
            cpu,
            memory,
            disk: AllMax { all: (space > 0.0).then(|| used * 100.0 / space), max: usage.max },
            network: network.over().total(),
            disk_io: io.mean(),
            disk_iops: iops.total(),
            disk_bps: disk_bps.over().total(),
            rx: rx.total().all,
            tx: tx.total().all,
        }
    }
}
