//! node_exporter pages → watchkeeper's host metrics (the names in [`catalog::METRICS`]): gauges from one scrape, rates from two.
//!
//! A scrape is reduced to a [`Snapshot`] — only the series the mapping reads, small enough to keep
//! until the next scrape. [`metrics`] turns the current snapshot (and the previous one, for rates)
//! into [`MetricValue`]s:
//!
//! | metric | from | unit |
//! |---|---|---|
//! | `cpu.usage` | 100 − idle − iowait share of Δ`node_cpu_seconds_total` (all CPUs, all modes) | % |
//! | `cpu.iowait` `cpu.steal` `cpu.irq` `cpu.softirq` | that mode's share of the same Δ | % |
//! | `load.1` `load.5` `load.15` | `node_load1` `node_load5` `node_load15` | |
//! | `memory.usage` `memory.available` | `MemAvailable` / `MemTotal` (`MemFree + Buffers + Cached` on kernels without `MemAvailable`) | % |
//! | `swap.usage` | 1 − `SwapFree` / `SwapTotal`; absent when there is no swap | % |
//! | `memory.page_faults` | Δ`node_vmstat_pgfault` | /s |
//! | `disk.usage` per mount | used / (used + avail), used = size − free, as `df` computes Use%; real filesystems only | % |
//! | `disk.io` per device | Δ`node_disk_io_time_seconds_total` / Δt (busy time) | % |
//! | `disk.iops` | Δ(reads + writes completed) / Δt | /s |
//! | `disk.read_bps` `disk.write_bps` | Δ`node_disk_read_bytes_total`, Δ`node_disk_written_bytes_total` | bytes/s |
//! | `disk.queue` | Δ`node_disk_io_time_weighted_seconds_total` / Δt (average requests in flight) | |
//! | `network.in_bps` `network.out_bps` per interface but `lo` | Δ receive/transmit bytes × 8 | bits/s |
//! | `network.in_pps` … `network.out_drops` | Δ packets, errs, drop | /s |
//!
//! The units and formulas are the agent's (`agent::host`), so that one AlertPolicy means the same on
//! a server whichever way its metrics arrive. A counter that went down between two scrapes
//! was reset (exporter or host restart) or wrapped: that rate is left out for that interval rather than
//! reported negative or huge. Percentages are clamped to 0–100, and no value is ever NaN or infinite.
//! Series names are those of node_exporter 0.16 and later.
//!
//! A snapshot also carries the host's [`Facts`], as far as node_exporter shows them: OS
//! (`node_os_info` `pretty_name`, else `node_uname_info` sysname and release) and kernel (release),
//! CPU count (distinct `cpu` labels of `node_cpu_seconds_total`), vendor and model (`node_cpu_info`,
//! when its collector is on), RAM (`MemTotal`), boot time (`node_boot_time_seconds`, so AlertPolicy
//! `restart` works for scraped servers) and uptime (`node_time_seconds` − boot time). It lists no
//! addresses.

use std::collections::{BTreeMap, BTreeSet};

use super::prom::{Exposition, Sample};
use crate::catalog;
use crate::protocol::{Facts, MetricValue};

/// A metric's name from the catalog, checked when compiling.
const fn name(metric: &str) -> &'static str {
    catalog::known(metric).name
}

const CPU_USAGE: &str = name("cpu.usage");
/// `node_cpu_seconds_total` modes reported as their own metric.
const CPU_MODES: [(&str, &str); 4] =
    [("iowait", name("cpu.iowait")), ("steal", name("cpu.steal")), ("irq", name("cpu.irq")), ("softirq", name("cpu.softirq"))];
const LOADS: [&str; 3] = [name("load.1"), name("load.5"), name("load.15")];
const MEMORY_USAGE: &str = name("memory.usage");
const MEMORY_AVAILABLE: &str = name("memory.available");
const SWAP_USAGE: &str = name("swap.usage");
const PAGE_FAULTS: &str = name("memory.page_faults");
const DISK_USAGE: &str = name("disk.usage");
const DISK_IO: &str = name("disk.io");
const DISK_IOPS: &str = name("disk.iops");
const DISK_READ_BPS: &str = name("disk.read_bps");
const DISK_WRITE_BPS: &str = name("disk.write_bps");
const DISK_QUEUE: &str = name("disk.queue");

/// Per-device disk counters; [`Disk`] holds them in this order.
const DISK_SERIES: [&str; 6] = [
    "node_disk_io_time_seconds_total",
    "node_disk_io_time_weighted_seconds_total",
    "node_disk_reads_completed_total",
    "node_disk_writes_completed_total",
    "node_disk_read_bytes_total",
    "node_disk_written_bytes_total",
];
const IO_TIME: usize = 0;
const IO_TIME_WEIGHTED: usize = 1;
const READS: usize = 2;
const WRITES: usize = 3;
const READ_BYTES: usize = 4;
const WRITTEN_BYTES: usize = 5;

/// Per-interface network counters, each with the metric its rate becomes.
const NETWORK_SERIES: [(&str, &str); 8] = [
    ("node_network_receive_bytes_total", name("network.in_bps")),
    ("node_network_transmit_bytes_total", name("network.out_bps")),
    ("node_network_receive_packets_total", name("network.in_pps")),
    ("node_network_transmit_packets_total", name("network.out_pps")),
    ("node_network_receive_errs_total", name("network.in_errors")),
    ("node_network_transmit_errs_total", name("network.out_errors")),
    ("node_network_receive_drop_total", name("network.in_drops")),
    ("node_network_transmit_drop_total", name("network.out_drops")),
];

/// Filesystem types that hold no user data (or whose usage means nothing to an operator): kernel
/// interfaces, memory-backed and read-only image filesystems, container layers.
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "aufs",
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.lxcfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// The series of one scrape that [`metrics`] reads. Keep the previous one for rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When the scrape was taken, in milliseconds on any clock; only differences between two
    /// snapshots are used.
    pub at_ms: i64,
    /// `node_cpu_seconds_total` summed over CPUs, by mode.
    cpu: BTreeMap<String, f64>,
    load: [Option<f64>; 3],
    memory: Memory,
    page_faults: Option<f64>,
    /// Mount point → space, real filesystems only.
    filesystems: BTreeMap<String, Space>,
    disks: BTreeMap<String, Disk>,
    interfaces: BTreeMap<String, Interface>,
    facts: Facts,
}

/// Bytes, as `statfs` gives them: `free` includes root's reserve, `avail` does not.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Space {
    size: f64,
    free: Option<f64>,
    avail: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Memory {
    total: Option<f64>,
    available: Option<f64>,
    free: Option<f64>,
    buffers: Option<f64>,
    cached: Option<f64>,
    swap_total: Option<f64>,
    swap_free: Option<f64>,
}

/// Counters in the order of [`DISK_SERIES`].
#[derive(Debug, Clone, Default, PartialEq)]
struct Disk([Option<f64>; DISK_SERIES.len()]);

/// Counters in the order of [`NETWORK_SERIES`].
#[derive(Debug, Clone, Default, PartialEq)]
struct Interface([Option<f64>; NETWORK_SERIES.len()]);

impl Snapshot {
    /// Reduce a parsed node_exporter page taken at `at_ms`. Series it does not know are ignored; a
    /// series repeated with the same subject keeps its first value.
    pub fn new(exposition: &Exposition, at_ms: i64) -> Snapshot {
        let mut snapshot = Snapshot { at_ms, ..Snapshot::default() };
        // Filesystems are matched up after the loop: size and avail are separate samples, and a
        // filesystem reporting a device error has stale numbers.
        let mut sizes = BTreeMap::new();
        let mut frees = BTreeMap::new();
        let mut avails = BTreeMap::new();
        let mut broken = Vec::new();
        let mut host = HostSeries::default();
        for sample in &exposition.samples {
            let value = sample.value;
            let name = sample.name.as_str();
            match name {
                "node_cpu_seconds_total" => {
                    if let Some(mode) = sample.label("mode") {
                        *snapshot.cpu.entry(mode.to_owned()).or_insert(0.0) += value;
                    }
                    if let Some(cpu) = sample.label("cpu") {
                        host.cpus.insert(cpu);
                    }
                }
                "node_uname_info" => {
                    host.uname.get_or_insert((sample.label("sysname").unwrap_or(""), sample.label("release").unwrap_or("")));
                }
                "node_os_info" => set_label_once(&mut host.pretty_name, sample, "pretty_name"),
                "node_cpu_info" => {
                    set_label_once(&mut host.cpu_vendor, sample, "vendor");
                    set_label_once(&mut host.cpu_model, sample, "model_name");
                }
                "node_boot_time_seconds" => set_once(&mut host.boot_time, value),
                "node_time_seconds" => set_once(&mut host.time, value),
                "node_load1" => set_once(&mut snapshot.load[0], value),
                "node_load5" => set_once(&mut snapshot.load[1], value),
                "node_load15" => set_once(&mut snapshot.load[2], value),
                "node_memory_MemTotal_bytes" => set_once(&mut snapshot.memory.total, value),
                "node_memory_MemAvailable_bytes" => set_once(&mut snapshot.memory.available, value),
                "node_memory_MemFree_bytes" => set_once(&mut snapshot.memory.free, value),
                "node_memory_Buffers_bytes" => set_once(&mut snapshot.memory.buffers, value),
                "node_memory_Cached_bytes" => set_once(&mut snapshot.memory.cached, value),
                "node_memory_SwapTotal_bytes" => set_once(&mut snapshot.memory.swap_total, value),
                "node_memory_SwapFree_bytes" => set_once(&mut snapshot.memory.swap_free, value),
                "node_vmstat_pgfault" => set_once(&mut snapshot.page_faults, value),
                "node_filesystem_size_bytes" => {
                    if let Some(mountpoint) = real_mountpoint(sample) {
                        sizes.entry(mountpoint).or_insert(value);
                    }
                }
                "node_filesystem_free_bytes" => {
                    if let Some(mountpoint) = real_mountpoint(sample) {
                        frees.entry(mountpoint).or_insert(value);
                    }
                }
                "node_filesystem_avail_bytes" => {
                    if let Some(mountpoint) = real_mountpoint(sample) {
                        avails.entry(mountpoint).or_insert(value);
                    }
                }
                "node_filesystem_device_error" => {
                    if let Some(mountpoint) = real_mountpoint(sample).filter(|_| value != 0.0) {
                        broken.push(mountpoint);
                    }
                }
                _ if name.starts_with("node_disk_") => {
                    let (Some(index), Some(device)) = (DISK_SERIES.iter().position(|s| *s == name), sample.label("device")) else {
                        continue;
                    };
                    set_once(&mut snapshot.disks.entry(device.to_owned()).or_default().0[index], value);
                }
                _ if name.starts_with("node_network_") => {
                    let (Some(index), Some(device)) = (NETWORK_SERIES.iter().position(|s| s.0 == name), sample.label("device")) else {
                        continue;
                    };
                    if device == "lo" {
                        continue;
                    }
                    set_once(&mut snapshot.interfaces.entry(device.to_owned()).or_default().0[index], value);
                }
                _ => {}
            }
        }
        for (mountpoint, size) in sizes {
            if let Some(&avail) = avails.get(mountpoint)
                && !broken.contains(&mountpoint)
            {
                snapshot.filesystems.insert(mountpoint.to_owned(), Space { size, free: frees.get(mountpoint).copied(), avail });
            }
        }
        snapshot.facts = host.facts(snapshot.memory.total);
        snapshot
    }

    /// What the host is, as far as this page tells (see the module doc); fields the page does not
    /// give are empty or zero.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }
}

/// The series of one page that become [`Facts`], borrowed from the page while it is reduced.
#[derive(Default)]
struct HostSeries<'a> {
    /// Distinct `cpu` labels of `node_cpu_seconds_total`.
    cpus: BTreeSet<&'a str>,
    /// `node_uname_info`'s sysname and release.
    uname: Option<(&'a str, &'a str)>,
    pretty_name: Option<&'a str>,
    cpu_vendor: Option<&'a str>,
    cpu_model: Option<&'a str>,
    boot_time: Option<f64>,
    time: Option<f64>,
}

impl HostSeries<'_> {
    fn facts(&self, ram_total: Option<f64>) -> Facts {
        let (sysname, release) = self.uname.unwrap_or_default();
        // As the agent does without os-release: "Linux 6.1.0-18-amd64".
        let os = self.pretty_name.map_or_else(|| format!("{sysname} {release}").trim().to_owned(), str::to_owned);
        // Seconds since the epoch, whole as /proc/stat gives them; `as` maps NaN to 0 and saturates.
        let boot_time = self.boot_time.filter(|t| t.is_finite() && *t > 0.0).map_or(0, |t| t.round() as u64);
        let uptime_secs = match self.time {
            Some(now) if boot_time > 0 && now.is_finite() => (now - boot_time as f64).max(0.0) as u64,
            _ => 0,
        };
        Facts {
            os,
            kernel: release.to_owned(),
            cpu_vendor: self.cpu_vendor.unwrap_or_default().to_owned(),
            cpu_model: self.cpu_model.unwrap_or_default().to_owned(),
            cpu_count: u32::try_from(self.cpus.len()).unwrap_or(u32::MAX),
            ram_total_bytes: ram_total.filter(|t| t.is_finite()).map_or(0, |t| t as u64),
            boot_time,
            uptime_secs,
            ips: Vec::new(),
        }
    }
}

/// Keep the first non-empty value of label `name` among a series' samples.
fn set_label_once<'a>(slot: &mut Option<&'a str>, sample: &'a Sample, name: &str) {
    if slot.is_none() {
        *slot = sample.label(name).filter(|v| !v.is_empty());
    }
}

/// The mount point of a filesystem sample, unless it is a pseudo filesystem.
fn real_mountpoint(sample: &Sample) -> Option<&str> {
    let fstype = sample.label("fstype")?;
    if PSEUDO_FILESYSTEMS.contains(&fstype) { None } else { sample.label("mountpoint") }
}

impl Space {
    /// `df`'s Use%: root's reserve counts as full. Without `free`, 1 − avail / size.
    fn usage(&self) -> Option<f64> {
        let used = self.size - self.free.unwrap_or(self.avail);
        let usable = used + self.avail;
        (usable > 0.0).then(|| percent(used / usable))
    }
}

fn set_once(slot: &mut Option<f64>, value: f64) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// The metrics for `current`. Rates (CPU shares, page faults, disk and network) need `previous`, an
/// earlier snapshot of the same host; without it, or when no time passed between the two, only the
/// gauges (load, memory, swap, disk usage) are given. Output order is stable: host-wide metrics, then
/// by subject.
pub fn metrics(previous: Option<&Snapshot>, current: &Snapshot) -> Vec<MetricValue> {
    let mut out = Metrics(Vec::new());
    let interval = previous.filter(|p| p.at_ms < current.at_ms).map(|p| (p, (current.at_ms - p.at_ms) as f64 / 1000.0));

    if let Some((previous, _)) = interval {
        cpu(&mut out, &previous.cpu, &current.cpu);
    }
    for (name, value) in LOADS.iter().zip(current.load) {
        out.push(name, None, value);
    }
    memory(&mut out, &current.memory);
    if let Some((previous, seconds)) = interval {
        out.push(PAGE_FAULTS, None, rate(previous.page_faults, current.page_faults, seconds));
    }

    for (mountpoint, space) in &current.filesystems {
        out.push(DISK_USAGE, Some(mountpoint), space.usage());
    }

    let Some((previous, seconds)) = interval else { return out.0 };
    for (device, now) in &current.disks {
        let Some(before) = previous.disks.get(device) else { continue };
        let rate = |i: usize| rate(before.0[i], now.0[i], seconds);
        let subject = Some(device.as_str());
        out.push(DISK_IO, subject, rate(IO_TIME).map(percent));
        out.push(DISK_IOPS, subject, rate(READS).zip(rate(WRITES)).map(|(r, w)| r + w));
        out.push(DISK_READ_BPS, subject, rate(READ_BYTES));
        out.push(DISK_WRITE_BPS, subject, rate(WRITTEN_BYTES));
        out.push(DISK_QUEUE, subject, rate(IO_TIME_WEIGHTED));
    }
    for (interface, now) in &current.interfaces {
        let Some(before) = previous.interfaces.get(interface) else { continue };
        for (i, &(_, name)) in NETWORK_SERIES.iter().enumerate() {
            // Bytes become bits for the `_bps` rates, as the agent reports them.
            let scale = if name.ends_with("_bps") { 8.0 } else { 1.0 };
            out.push(name, Some(interface), rate(before.0[i], now.0[i], seconds).map(|r| r * scale));
        }
    }
    out.0
}

/// Collects values, dropping the ones that are missing or not finite.
struct Metrics(Vec<MetricValue>);

impl Metrics {
    fn push(&mut self, name: &'static str, subject: Option<&str>, value: Option<f64>) {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            self.0.push(MetricValue { name, subject: subject.map(str::to_owned), value });
        }
    }
}

/// Per-second increase of a counter; `None` when either value is missing or the counter went down.
fn rate(before: Option<f64>, now: Option<f64>, seconds: f64) -> Option<f64> {
    let (before, now) = (before?, now?);
    (now >= before && seconds > 0.0).then(|| (now - before) / seconds)
}

/// A share (0–1, possibly a little outside through timing jitter) as a clamped percentage.
fn percent(share: f64) -> f64 {
    (share * 100.0).clamp(0.0, 100.0)
}

fn cpu(out: &mut Metrics, before: &BTreeMap<String, f64>, now: &BTreeMap<String, f64>) {
    let mut deltas = BTreeMap::new();
    for (mode, &seconds) in now {
        let Some(&earlier) = before.get(mode) else { continue };
        if seconds < earlier {
            // A reset (or a CPU gone offline): this interval's shares would be meaningless.
            return;
        }
        deltas.insert(mode.as_str(), seconds - earlier);
    }
    let total: f64 = deltas.values().sum();
    if total <= 0.0 {
        return;
    }
    let share = |mode: &str| deltas.get(mode).map(|d| percent(d / total));
    // Busy time, as the agent counts it: neither idle nor waiting for IO.
    out.push(CPU_USAGE, None, share("idle").map(|idle| 100.0 - idle - share("iowait").unwrap_or(0.0)));
    for (mode, name) in CPU_MODES {
        out.push(name, None, share(mode));
    }
}

fn memory(out: &mut Metrics, memory: &Memory) {
    if let Some(total) = memory.total.filter(|t| *t > 0.0) {
        let available = memory.available.or_else(|| Some(memory.free? + memory.buffers? + memory.cached?));
        if let Some(available) = available {
            out.push(MEMORY_USAGE, None, Some(percent(1.0 - available / total)));
            out.push(MEMORY_AVAILABLE, None, Some(percent(available / total)));
        }
    }
    // No swap configured: no value, as from the agent.
    if let (Some(total), Some(free)) = (memory.swap_total, memory.swap_free)
        && total > 0.0
    {
        out.push(SWAP_USAGE, None, Some(percent(1.0 - free / total)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::prom::parse;

    /// A node_exporter page, trimmed to the series the mapping reads plus a few it must ignore.
    const SCRAPE_1: &str = r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 100
node_cpu_seconds_total{cpu="0",mode="iowait"} 10
node_cpu_seconds_total{cpu="0",mode="irq"} 1
node_cpu_seconds_total{cpu="0",mode="nice"} 0
node_cpu_seconds_total{cpu="0",mode="softirq"} 2
node_cpu_seconds_total{cpu="0",mode="steal"} 3
node_cpu_seconds_total{cpu="0",mode="system"} 20
node_cpu_seconds_total{cpu="0",mode="user"} 50
node_cpu_seconds_total{cpu="1",mode="idle"} 100
node_cpu_seconds_total{cpu="1",mode="iowait"} 10
node_cpu_seconds_total{cpu="1",mode="irq"} 1
node_cpu_seconds_total{cpu="1",mode="nice"} 0
node_cpu_seconds_total{cpu="1",mode="softirq"} 2
node_cpu_seconds_total{cpu="1",mode="steal"} 3
node_cpu_seconds_total{cpu="1",mode="system"} 20
node_cpu_seconds_total{cpu="1",mode="user"} 50
node_load1 0.5
node_load5 1.25
node_load15 2
node_memory_MemTotal_bytes 8.589934592e+09
node_memory_MemAvailable_bytes 2.147483648e+09
node_memory_MemFree_bytes 1.073741824e+09
node_memory_SwapTotal_bytes 1.073741824e+09
node_memory_SwapFree_bytes 8.05306368e+08
node_vmstat_pgfault 1000
node_filesystem_size_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 1e+11
node_filesystem_free_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 5e+10
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 3e+10
node_filesystem_device_error{device="/dev/sda1",fstype="ext4",mountpoint="/"} 0
node_filesystem_size_bytes{device="/dev/sda2",fstype="vfat",mountpoint="/boot"} 1e+09
node_filesystem_free_bytes{device="/dev/sda2",fstype="vfat",mountpoint="/boot"} 5e+08
node_filesystem_avail_bytes{device="/dev/sda2",fstype="vfat",mountpoint="/boot"} 5e+08
node_filesystem_size_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1e+08
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1e+07
node_filesystem_size_bytes{device="/dev/loop0",fstype="squashfs",mountpoint="/snap/core/1"} 1e+08
node_filesystem_avail_bytes{device="/dev/loop0",fstype="squashfs",mountpoint="/snap/core/1"} 0
node_filesystem_size_bytes{device="overlay",fstype="overlay",mountpoint="/var/lib/docker/overlay2/x/merged"} 1e+11
node_filesystem_avail_bytes{device="overlay",fstype="overlay",mountpoint="/var/lib/docker/overlay2/x/merged"} 3e+10
node_filesystem_size_bytes{device="nas:/export",fstype="nfs4",mountpoint="/mnt/nas"} 1e+12
node_filesystem_avail_bytes{device="nas:/export",fstype="nfs4",mountpoint="/mnt/nas"} 1e+12
node_filesystem_device_error{device="nas:/export",fstype="nfs4",mountpoint="/mnt/nas"} 1
node_disk_io_time_seconds_total{device="sda"} 100
node_disk_io_time_weighted_seconds_total{device="sda"} 200
node_disk_reads_completed_total{device="sda"} 1000
node_disk_writes_completed_total{device="sda"} 2000
node_disk_read_bytes_total{device="sda"} 1e+06
node_disk_written_bytes_total{device="sda"} 0
node_disk_io_time_seconds_total{device="nvme0n1"} 0
node_disk_io_time_weighted_seconds_total{device="nvme0n1"} 0
node_disk_reads_completed_total{device="nvme0n1"} 0
node_disk_writes_completed_total{device="nvme0n1"} 0
node_disk_read_bytes_total{device="nvme0n1"} 0
node_disk_written_bytes_total{device="nvme0n1"} 0
node_network_receive_bytes_total{device="eth0"} 1000
node_network_transmit_bytes_total{device="eth0"} 0
node_network_receive_packets_total{device="eth0"} 0
node_network_transmit_packets_total{device="eth0"} 0
node_network_receive_errs_total{device="eth0"} 0
node_network_transmit_errs_total{device="eth0"} 0
node_network_receive_drop_total{device="eth0"} 10
node_network_transmit_drop_total{device="eth0"} 0
node_network_receive_bytes_total{device="lo"} 0
node_network_transmit_bytes_total{device="lo"} 0
node_network_up{device="eth0"} 1
node_boot_time_seconds 1.7e+09
go_goroutines 8
"#;

    /// Five seconds later: every counter moved by a known amount.
    const SCRAPE_2: &str = r#"node_cpu_seconds_total{cpu="0",mode="idle"} 103
node_cpu_seconds_total{cpu="0",mode="iowait"} 10.5
node_cpu_seconds_total{cpu="0",mode="irq"} 1.1
node_cpu_seconds_total{cpu="0",mode="nice"} 0
node_cpu_seconds_total{cpu="0",mode="softirq"} 2.15
node_cpu_seconds_total{cpu="0",mode="steal"} 3.25
node_cpu_seconds_total{cpu="0",mode="system"} 20.5
node_cpu_seconds_total{cpu="0",mode="user"} 50.5
node_cpu_seconds_total{cpu="1",mode="idle"} 103
node_cpu_seconds_total{cpu="1",mode="iowait"} 10.5
node_cpu_seconds_total{cpu="1",mode="irq"} 1.1
node_cpu_seconds_total{cpu="1",mode="nice"} 0
node_cpu_seconds_total{cpu="1",mode="softirq"} 2.15
node_cpu_seconds_total{cpu="1",mode="steal"} 3.25
node_cpu_seconds_total{cpu="1",mode="system"} 20.5
node_cpu_seconds_total{cpu="1",mode="user"} 50.5
node_load1 0.75
node_load5 1.25
node_load15 2
node_memory_MemTotal_bytes 8.589934592e+09
node_memory_MemAvailable_bytes 2.147483648e+09
node_memory_SwapTotal_bytes 1.073741824e+09
node_memory_SwapFree_bytes 8.05306368e+08
node_vmstat_pgfault 6000
node_filesystem_size_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 1e+11
node_filesystem_free_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 5e+10
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 3e+10
node_filesystem_size_bytes{device="/dev/sda2",fstype="vfat",mountpoint="/boot"} 1e+09
node_filesystem_free_bytes{device="/dev/sda2",fstype="vfat",mountpoint="/boot"} 5e+08
node_filesystem_avail_bytes{device="/dev/sda2",fstype="vfat",mountpoint="/boot"} 5e+08
node_disk_io_time_seconds_total{device="sda"} 102.5
node_disk_io_time_weighted_seconds_total{device="sda"} 210
node_disk_reads_completed_total{device="sda"} 1250
node_disk_writes_completed_total{device="sda"} 2500
node_disk_read_bytes_total{device="sda"} 6e+06
node_disk_written_bytes_total{device="sda"} 500000
node_disk_io_time_seconds_total{device="nvme0n1"} 6
node_disk_io_time_weighted_seconds_total{device="nvme0n1"} 0
node_disk_reads_completed_total{device="nvme0n1"} 0
node_disk_writes_completed_total{device="nvme0n1"} 0
node_disk_read_bytes_total{device="nvme0n1"} 0
node_disk_written_bytes_total{device="nvme0n1"} 0
node_network_receive_bytes_total{device="eth0"} 6.001e+06
node_network_transmit_bytes_total{device="eth0"} 500000
node_network_receive_packets_total{device="eth0"} 5000
node_network_transmit_packets_total{device="eth0"} 2500
node_network_receive_errs_total{device="eth0"} 5
node_network_transmit_errs_total{device="eth0"} 0
node_network_receive_drop_total{device="eth0"} 20
node_network_transmit_drop_total{device="eth0"} 10
node_network_receive_bytes_total{device="lo"} 1e+09
node_network_transmit_bytes_total{device="lo"} 1e+09
"#;

    const T1: i64 = 1_700_000_000_000;
    const T2: i64 = T1 + 5_000;

    fn snapshot(page: &str, at_ms: i64) -> Snapshot {
        Snapshot::new(&parse(page, 1 << 20).unwrap(), at_ms)
    }

    fn value(values: &[MetricValue], name: &str, subject: Option<&str>) -> Option<f64> {
        values.iter().find(|v| v.name == name && v.subject.as_deref() == subject).map(|v| v.value)
    }

    fn assert_values(actual: &[MetricValue], expected: &[(&str, Option<&str>, f64)]) {
        for &(name, subject, want) in expected {
            let got = value(actual, name, subject).unwrap_or_else(|| panic!("{name} {subject:?} missing from {actual:#?}"));
            assert!((got - want).abs() < 1e-9, "{name} {subject:?}: got {got}, want {want}");
        }
        assert_eq!(actual.len(), expected.len(), "unexpected extra values in {actual:#?}");
    }

    const GAUGES: &[(&str, Option<&str>, f64)] = &[
        ("load.1", None, 0.75),
        ("load.5", None, 1.25),
        ("load.15", None, 2.0),
        ("memory.usage", None, 75.0),
        ("memory.available", None, 25.0),
        ("swap.usage", None, 25.0),
        // used 50 GB of 80 GB usable (root's 20 GB reserve counts as full), as df says.
        ("disk.usage", Some("/"), 62.5),
        ("disk.usage", Some("/boot"), 50.0),
    ];

    #[test]
    fn two_scrapes_five_seconds_apart_give_exact_percentages_and_rates() {
        let values = metrics(Some(&snapshot(SCRAPE_1, T1)), &snapshot(SCRAPE_2, T2));
        #[rustfmt::skip]
        let rates: &[(&str, Option<&str>, f64)] = &[
            // 10 CPU-seconds passed (2 CPUs × 5 s): 6 idle, 1 iowait, 0.2 irq, 0.3 softirq, 0.5 steal.
            ("cpu.usage", None, 30.0),
            ("cpu.iowait", None, 10.0),
            ("cpu.irq", None, 2.0),
            ("cpu.softirq", None, 3.0),
            ("cpu.steal", None, 5.0),
            ("memory.page_faults", None, 1000.0),
            ("disk.io", Some("sda"), 50.0),
            ("disk.iops", Some("sda"), 150.0),
            ("disk.read_bps", Some("sda"), 1_000_000.0),
            ("disk.write_bps", Some("sda"), 100_000.0),
            ("disk.queue", Some("sda"), 2.0),
            // 6 s of busy time in 5 s is timing jitter, not 120 %.
            ("disk.io", Some("nvme0n1"), 100.0),
            ("disk.iops", Some("nvme0n1"), 0.0),
            ("disk.read_bps", Some("nvme0n1"), 0.0),
            ("disk.write_bps", Some("nvme0n1"), 0.0),
            ("disk.queue", Some("nvme0n1"), 0.0),
            ("network.in_bps", Some("eth0"), 9_600_000.0),
            ("network.out_bps", Some("eth0"), 800_000.0),
            ("network.in_pps", Some("eth0"), 1000.0),
            ("network.out_pps", Some("eth0"), 500.0),
            ("network.in_errors", Some("eth0"), 1.0),
            ("network.out_errors", Some("eth0"), 0.0),
            ("network.in_drops", Some("eth0"), 2.0),
            ("network.out_drops", Some("eth0"), 2.0),
        ];
        assert_values(&values, &[GAUGES, rates].concat());
    }

    #[test]
    fn every_alert_policy_metric_comes_from_node_exporter() {
        let values = metrics(Some(&snapshot(SCRAPE_1, T1)), &snapshot(SCRAPE_2, T2));
        for name in catalog::alertable() {
            assert!(values.iter().any(|v| v.name == name), "{name} is never produced");
        }
    }

    #[test]
    fn the_first_scrape_gives_gauges_only() {
        let first = snapshot(SCRAPE_2, T2);
        assert_values(&metrics(None, &first), GAUGES);
    }

    #[test]
    fn without_time_passing_there_are_no_rates() {
        let current = snapshot(SCRAPE_2, T2);
        assert_values(&metrics(Some(&snapshot(SCRAPE_1, T2)), &current), GAUGES);
        assert_values(&metrics(Some(&snapshot(SCRAPE_1, T2 + 1)), &current), GAUGES);
    }

    #[test]
    fn a_counter_that_went_down_gives_no_rate_for_that_interval() {
        let reset = SCRAPE_2
            .replace(r#"node_cpu_seconds_total{cpu="1",mode="user"} 50.5"#, r#"node_cpu_seconds_total{cpu="1",mode="user"} 0.5"#)
            .replace("node_vmstat_pgfault 6000", "node_vmstat_pgfault 12")
            .replace(r#"node_disk_reads_completed_total{device="sda"} 1250"#, r#"node_disk_reads_completed_total{device="sda"} 3"#)
            .replace(
                r#"node_network_receive_bytes_total{device="eth0"} 6.001e+06"#,
                r#"node_network_receive_bytes_total{device="eth0"} 0"#,
            );
        let values = metrics(Some(&snapshot(SCRAPE_1, T1)), &snapshot(&reset, T2));
        for name in ["cpu.usage", "cpu.iowait", "cpu.irq", "cpu.softirq", "cpu.steal", "memory.page_faults"] {
            assert_eq!(value(&values, name, None), None, "{name}");
        }
        assert_eq!(value(&values, "disk.iops", Some("sda")), None);
        assert_eq!(value(&values, "network.in_bps", Some("eth0")), None);
        // The counters that kept counting still give their rates.
        assert_eq!(value(&values, "disk.read_bps", Some("sda")), Some(1_000_000.0));
        assert_eq!(value(&values, "network.out_bps", Some("eth0")), Some(800_000.0));
        assert!(values.iter().all(|v| v.value >= 0.0), "{values:#?}");

        // The interval after the reset counts from the new values again.
        let later = reset.replace("node_vmstat_pgfault 12", "node_vmstat_pgfault 62");
        let values = metrics(Some(&snapshot(&reset, T2)), &snapshot(&later, T2 + 5_000));
        assert_eq!(value(&values, "memory.page_faults", None), Some(10.0));
    }

    #[test]
    fn subjects_that_appear_between_scrapes_start_with_gauges() {
        let values = metrics(Some(&snapshot("node_load1 1\n", T1)), &snapshot(SCRAPE_2, T2));
        assert_values(&values, GAUGES);
    }

    #[test]
    fn memory_falls_back_without_mem_available_and_swap_is_absent_without_swap() {
        let page = "node_memory_MemTotal_bytes 1000\n\
                    node_memory_MemFree_bytes 100\n\
                    node_memory_Buffers_bytes 50\n\
                    node_memory_Cached_bytes 250\n\
                    node_memory_SwapTotal_bytes 0\n\
                    node_memory_SwapFree_bytes 0\n";
        assert_values(&metrics(None, &snapshot(page, T1)), &[("memory.usage", None, 60.0), ("memory.available", None, 40.0)]);
    }

    #[test]
    fn filesystem_without_free_bytes_uses_avail_over_size() {
        let page = r#"node_filesystem_size_bytes{device="/dev/sdb",fstype="xfs",mountpoint="/data"} 200
node_filesystem_avail_bytes{device="/dev/sdb",fstype="xfs",mountpoint="/data"} 50
node_filesystem_size_bytes{device="/dev/sdc",fstype="xfs",mountpoint="/empty"} 0
node_filesystem_avail_bytes{device="/dev/sdc",fstype="xfs",mountpoint="/empty"} 0
"#;
        assert_values(&metrics(None, &snapshot(page, T1)), &[("disk.usage", Some("/data"), 75.0)]);
    }

    #[test]
    fn values_that_are_not_numbers_are_left_out() {
        let page = "node_load1 NaN\nnode_load5 +Inf\nnode_load15 1\nnode_memory_MemTotal_bytes 0\nnode_memory_MemAvailable_bytes 0\n";
        assert_values(&metrics(None, &snapshot(page, T1)), &[("load.15", None, 1.0)]);
        let before = "node_vmstat_pgfault 1\n";
        let after = "node_vmstat_pgfault +Inf\n";
        assert_eq!(metrics(Some(&snapshot(before, T1)), &snapshot(after, T2)), []);
    }

    #[test]
    fn facts_come_from_os_info_uname_cpu_boot_time_and_memory() {
        let page = r##"node_uname_info{domainname="(none)",machine="x86_64",nodename="web-01",release="6.1.0-18-amd64",sysname="Linux",version="#1 SMP"} 1
node_os_info{id="debian",name="Debian GNU/Linux",pretty_name="Debian GNU/Linux 12 (bookworm)",version_id="12"} 1
node_cpu_info{cachesize="28160 KB",core="0",cpu="0",family="6",model="85",model_name="Intel(R) Xeon(R) Gold 6230",package="0",vendor="GenuineIntel"} 1
node_cpu_info{cachesize="28160 KB",core="1",cpu="1",family="6",model="85",model_name="Other",package="0",vendor="Other"} 1
node_cpu_seconds_total{cpu="0",mode="idle"} 1
node_cpu_seconds_total{cpu="0",mode="user"} 1
node_cpu_seconds_total{cpu="1",mode="idle"} 1
node_cpu_seconds_total{cpu="1",mode="user"} 1
node_cpu_seconds_total{cpu="2",mode="idle"} 1
node_boot_time_seconds 1.7e+09
node_time_seconds 1.7000864005e+09
node_memory_MemTotal_bytes 8.589934592e+09
"##;
        let expected = Facts {
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.1.0-18-amd64".into(),
            cpu_vendor: "GenuineIntel".into(),
            cpu_model: "Intel(R) Xeon(R) Gold 6230".into(),
            cpu_count: 3,
            ram_total_bytes: 8 << 30,
            boot_time: 1_700_000_000,
            uptime_secs: 86_400,
            ips: vec![],
        };
        assert_eq!(snapshot(page, T1).facts(), &expected);
        // The facts do not depend on a previous scrape: the first one has them all.
        assert_eq!(snapshot(SCRAPE_1, T1).facts().boot_time, 1_700_000_000);
        assert_eq!(snapshot(SCRAPE_1, T1).facts().cpu_count, 2);
    }

    #[test]
    fn facts_fall_back_to_uname_and_leave_the_unknown_empty() {
        let page = r#"node_uname_info{machine="aarch64",nodename="pi",release="6.6.31+rpt-rpi-v8",sysname="Linux"} 1
node_os_info{pretty_name=""} 1
node_boot_time_seconds NaN
node_time_seconds 1.7e+09
"#;
        let facts = snapshot(page, T1).facts().clone();
        assert_eq!((facts.os.as_str(), facts.kernel.as_str()), ("Linux 6.6.31+rpt-rpi-v8", "6.6.31+rpt-rpi-v8"));
        // No boot time: no uptime either, rather than 54 years.
        assert_eq!((facts.boot_time, facts.uptime_secs, facts.cpu_count, facts.ram_total_bytes), (0, 0, 0, 0));
        assert_eq!(snapshot("node_load1 1\n", T1).facts(), &Facts::default());
        // A clock behind the boot time (a page from a host whose clock was stepped back) is no uptime.
        let skewed = "node_boot_time_seconds 1.7e+09\nnode_time_seconds 1.6e+09\n";
        assert_eq!(snapshot(skewed, T1).facts().uptime_secs, 0);
    }
}
