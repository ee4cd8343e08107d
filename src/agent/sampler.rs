//! Host metrics: successive snapshots of /proc and /sys counters become a [`Report`] of facts,
//! metric values (named as in [`crate::catalog`]), and processes.
//!
//! Three layers, so the arithmetic is testable without a machine:
//! - [`parse`] turns the text of one /proc file into counters (pure);
//! - [`HostSampler::observe`] turns two [`Snapshot`]s and the time between them into rates and
//!   percentages (pure; time is passed in);
//! - [`HostSampler::sample`] reads the real files (Linux only; elsewhere it is an error).
//!
//! Rates come from counter deltas. A counter that went backwards (wrap, device reset, reboot) or a
//! changed boot time gives no rate for that interval and the current sample becomes the baseline:
//! a rate is never negative and never the size of a whole counter.

pub mod parse;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::catalog;
use crate::protocol::{Facts, MetricValue, ProcessInfo, Report, SkippedMount};
use parse::{CpuTimes, DiskStat, LoadAvg, MemInfo, NetDev, Stat};

/// A boot time that moved by more than this is a reboot. /proc/stat derives `btime` from the wall
/// clock, so NTP adjustments move it by a second or so without a reboot.
const BOOT_TIME_TOLERANCE_SECS: u64 = 2;

/// Space on one mounted filesystem (statvfs), in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpace {
    pub mount_point: String,
    pub total_bytes: u64,
    /// Free blocks, including those reserved for root.
    pub free_bytes: u64,
    /// Free blocks an unprivileged user may use.
    pub available_bytes: u64,
}

/// One process's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSample {
    pub pid: u32,
    pub name: String,
    pub user: String,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, clock ticks: with the pid, the process's identity.
    pub start_ticks: u64,
    pub rss_bytes: u64,
}

/// Raw counters and gauges read at one moment: the input of [`HostSampler::observe`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub stat: Stat,
    pub memory: MemInfo,
    pub load: LoadAvg,
    pub uptime_secs: f64,
    /// `pgfault` from /proc/vmstat, when readable.
    pub page_faults: Option<u64>,
    /// Whole disks only (see [`parse::select_disks`]).
    pub disks: Vec<DiskStat>,
    /// Interfaces without loopback.
    pub interfaces: Vec<NetDev>,
    /// Local real filesystems (see [`parse::disk_mounts`]).
    pub mounts: Vec<MountSpace>,
    /// Network filesystems whose space was not read.
    pub skipped_mounts: Vec<SkippedMount>,
    /// User processes.
    pub processes: Vec<ProcSample>,
}

/// What the previous sample left behind for the next one's deltas.
#[derive(Debug)]
struct Baseline {
    at: Instant,
    boot_time: u64,
    cpu: CpuTimes,
    page_faults: Option<u64>,
    disks: HashMap<String, DiskStat>,
    interfaces: HashMap<String, NetDev>,
    /// (pid, start ticks) → cpu ticks.
    processes: HashMap<(u32, u64), u64>,
}

/// Why host metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("host metrics are supported on Linux only")]
    Unsupported,
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Parse(#[from] parse::ParseError),
}

/// uid → user name from /etc/passwd, re-read when an unknown uid shows up (at most once per sample).
#[derive(Debug, Default)]
pub struct UserNames {
    names: HashMap<u32, String>,
    reloaded: bool,
}

impl UserNames {
    /// Starts a sample: the next unknown uid may trigger one re-read.
    pub fn begin_sample(&mut self) {
        self.reloaded = false;
    }

    /// The name for `uid`; `passwd` is called for the text of /etc/passwd when `uid` is unknown
    /// and the table has not been re-read during this sample yet.
    pub fn name(&mut self, uid: u32, passwd: impl FnOnce() -> Option<String>) -> String {
        if !self.names.contains_key(&uid)
            && !self.reloaded
            && let Some(text) = passwd()
        {
            self.reloaded = true;
            self.names = parse::parse_passwd(&text);
        }
        self.names.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }
}

/// Takes successive samples of one host and turns each into a [`Report`].
#[derive(Debug)]
pub struct HostSampler {
    facts: Facts,
    ticks_per_second: u64,
    page_size: u64,
    users: UserNames,
    facts_read_at: Option<Instant>,
    prev: Option<Baseline>,
}

/// How often the slow-changing facts (addresses, OS) are read again.
#[cfg(target_os = "linux")]
const FACTS_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

impl HostSampler {
    /// A sampler that reads this machine (Linux only).
    pub fn new() -> Result<Self, HostError> {
        #[cfg(target_os = "linux")]
        {
            Ok(Self::with_facts(live::read_facts()?, procfs::ticks_per_second(), procfs::page_size()))
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(HostError::Unsupported)
        }
    }

    /// A sampler fed by [`observe`](Self::observe) alone: for tests and replays.
    pub fn with_facts(facts: Facts, ticks_per_second: u64, page_size: u64) -> Self {
        HostSampler {
            facts,
            ticks_per_second: ticks_per_second.max(1),
            page_size,
            users: UserNames::default(),
            facts_read_at: None,
            prev: None,
        }
    }

    /// The facts as of the last sample.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// Reads this machine's counters now and reports. `now` is a monotonic instant for the rates,
    /// `at_ms` the wall-clock time stamped on the report.
    pub fn sample(&mut self, now: Instant, at_ms: i64) -> Result<Report, HostError> {
        #[cfg(target_os = "linux")]
        {
            if self.facts_read_at.is_none_or(|t| now.saturating_duration_since(t) >= FACTS_REFRESH) {
                self.facts = live::read_facts()?;
                self.facts_read_at = Some(now);
            }
            let snap = live::read_snapshot(&mut self.users, self.page_size)?;
            Ok(self.observe(snap, now, at_ms))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (now, at_ms, &self.users, self.page_size, self.facts_read_at);
            Err(HostError::Unsupported)
        }
    }

    /// Turns a snapshot into a report, with rates against the previous snapshot. Pure: all time
    /// comes from `now` and `at_ms`.
    pub fn observe(&mut self, snap: Snapshot, now: Instant, at_ms: i64) -> Report {
        self.facts.boot_time = snap.stat.boot_time;
        self.facts.uptime_secs = snap.uptime_secs.max(0.0) as u64;
        self.facts.ram_total_bytes = snap.memory.total;
        if snap.stat.cpu_count > 0 {
            self.facts.cpu_count = snap.stat.cpu_count;
        }

        // The previous sample is a usable baseline only if time moved forward and the host did not reboot.
        let base = self.prev.take().filter(|p| now > p.at && p.boot_time.abs_diff(snap.stat.boot_time) <= BOOT_TIME_TOLERANCE_SECS);
        let dt = base.as_ref().map(|p| now.duration_since(p.at).as_secs_f64());

        let mut m = Metrics::default();
        // CPU split.
        if let (Some(p), Some(_)) = (&base, dt) {
            cpu_metrics(&mut m, &p.cpu, &snap.stat.cpu);
        }
        // Load and memory are gauges: reported from the first sample on.
        m.push("load.1", None, snap.load.one);
        m.push("load.5", None, snap.load.five);
        m.push("load.15", None, snap.load.fifteen);
        let mem = &snap.memory;
        if mem.total > 0 {
            m.push("memory.usage", None, pct(mem.total - mem.available, mem.total));
            m.push("memory.available", None, pct(mem.available, mem.total));
            m.push("memory.free", None, pct(mem.free.min(mem.total), mem.total));
        }
        if mem.swap_total > 0 {
            m.push("swap.usage", None, pct(mem.swap_total.saturating_sub(mem.swap_free), mem.swap_total));
        }
        if let (Some(p), Some(dt)) = (&base, dt)
            && let Some(rate) = counter_rate(p.page_faults, snap.page_faults, dt)
        {
            m.push("memory.page_faults", None, rate);
        }
        // Space per mount: df's arithmetic (Use% = used / (used + available), so root's reserve counts as full).
        for s in &snap.mounts {
            let used = s.total_bytes.saturating_sub(s.free_bytes);
            let subject = Some(s.mount_point.as_str());
            m.push("disk.usage", subject, pct(used, used + s.available_bytes));
            m.push("disk.used_bytes", subject, used as f64);
            m.push("disk.free_bytes", subject, s.available_bytes as f64);
        }
        if let (Some(p), Some(dt)) = (&base, dt) {
            for d in &snap.disks {
                if let Some(prev) = p.disks.get(&d.name) {
                    disk_metrics(&mut m, prev, d, dt);
                }
            }
            for n in &snap.interfaces {
                if let Some(prev) = p.interfaces.get(&n.name) {
                    net_metrics(&mut m, prev, n, dt);
                }
            }
        }

        // Processes: % of one core from the tick delta of the same (pid, start time).
        let tps = self.ticks_per_second as f64;
        let mut processes: Vec<ProcessInfo> = snap
            .processes
            .iter()
            .map(|s| {
                let cpu = match (&base, dt) {
                    (Some(p), Some(dt)) => p
                        .processes
                        .get(&(s.pid, s.start_ticks))
                        .and_then(|&before| s.cpu_ticks.checked_sub(before))
                        .map(|ticks| ticks as f64 / tps / dt * 100.0),
                    _ => None,
                };
                ProcessInfo {
                    pid: s.pid,
                    name: s.name.clone(),
                    user: s.user.clone(),
                    cpu,
                    memory: if mem.total > 0 { pct(s.rss_bytes.min(mem.total), mem.total) } else { 0.0 },
                    rss_bytes: s.rss_bytes,
                }
            })
            .collect();
        processes.sort_by(|a, b| {
            b.cpu.unwrap_or(0.0).total_cmp(&a.cpu.unwrap_or(0.0)).then(b.rss_bytes.cmp(&a.rss_bytes)).then(a.pid.cmp(&b.pid))
        });
        let mut process_counts = BTreeMap::new();
        for p in &processes {
            *process_counts.entry(p.name.clone()).or_insert(0) += 1;
        }

        self.prev = Some(Baseline {
            at: now,
            boot_time: snap.stat.boot_time,
            cpu: snap.stat.cpu,
            page_faults: snap.page_faults,
            disks: snap.disks.into_iter().map(|d| (d.name.clone(), d)).collect(),
            interfaces: snap.interfaces.into_iter().map(|n| (n.name.clone(), n)).collect(),
            processes: snap.processes.iter().map(|p| ((p.pid, p.start_ticks), p.cpu_ticks)).collect(),
        });
        Report { facts: self.facts.clone(), metrics: m.0, processes, process_counts, skipped_mounts: snap.skipped_mounts, at_ms }
    }
}

#[derive(Default)]
struct Metrics(Vec<MetricValue>);

impl Metrics {
    fn push(&mut self, name: &'static str, subject: Option<&str>, value: f64) {
        debug_assert!(catalog::lookup(name).is_some(), "`{name}` is not in the metric catalog");
        if value.is_finite() {
            self.0.push(MetricValue { name, subject: subject.map(str::to_string), value });
        }
    }
}

/// `part` as a percentage of `whole`, 0 when there is no whole.
fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// Per-second rate of a counter; none when either side is missing or the counter went backwards.
fn counter_rate(before: Option<u64>, after: Option<u64>, dt_secs: f64) -> Option<f64> {
    let delta = after?.checked_sub(before?)?;
    (dt_secs > 0.0).then(|| delta as f64 / dt_secs)
}

fn cpu_metrics(m: &mut Metrics, before: &CpuTimes, after: &CpuTimes) {
    // A smaller total means the counters restarted: no split for this interval.
    let Some(total) = after.total().checked_sub(before.total()).filter(|t| *t > 0) else { return };
    // A single column may step back on its own (the kernel documents this for iowait on NO_HZ
    // kernels); count it as zero rather than dropping the interval.
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let idle = d(after.idle, before.idle);
    let iowait = d(after.iowait, before.iowait);
    let share = |ticks: u64| (ticks as f64 * 100.0 / total as f64).clamp(0.0, 100.0);
    m.push("cpu.usage", None, share(total.saturating_sub(idle + iowait)));
    m.push("cpu.idle", None, share(idle));
    m.push("cpu.user", None, share(d(after.user, before.user)));
    m.push("cpu.system", None, share(d(after.system, before.system)));
    m.push("cpu.nice", None, share(d(after.nice, before.nice)));
    m.push("cpu.iowait", None, share(iowait));
    m.push("cpu.steal", None, share(d(after.steal, before.steal)));
    m.push("cpu.irq", None, share(d(after.irq, before.irq)));
    m.push("cpu.softirq", None, share(d(after.softirq, before.softirq)));
}

fn disk_metrics(m: &mut Metrics, before: &DiskStat, after: &DiskStat, dt: f64) {
    let delta = |f: fn(&DiskStat) -> u64| f(after).checked_sub(f(before));
    // Any counter going backwards means the device was reset or replaced: no rates this interval.
    let (Some(reads), Some(writes), Some(read_sectors), Some(written_sectors), Some(io_ms), Some(weighted_ms)) = (
        delta(|d| d.reads),
        delta(|d| d.writes),
        delta(|d| d.sectors_read),
        delta(|d| d.sectors_written),
        delta(|d| d.io_ms),
        delta(|d| d.weighted_io_ms),
    ) else {
        return;
    };
    let subject = Some(after.name.as_str());
    let ms = dt * 1000.0;
    m.push("disk.io", subject, (io_ms as f64 / ms * 100.0).min(100.0));
    m.push("disk.iops", subject, (reads + writes) as f64 / dt);
    m.push("disk.read_bps", subject, read_sectors as f64 * 512.0 / dt);
    m.push("disk.write_bps", subject, written_sectors as f64 * 512.0 / dt);
    // Average queue length over the interval (iostat's aqu-sz).
    m.push("disk.queue", subject, weighted_ms as f64 / ms);
}

fn net_metrics(m: &mut Metrics, before: &NetDev, after: &NetDev, dt: f64) {
    let delta = |f: fn(&NetDev) -> u64| f(after).checked_sub(f(before));
    let (Some(rx_b), Some(tx_b), Some(rx_p), Some(tx_p), Some(rx_e), Some(tx_e), Some(rx_d), Some(tx_d)) = (
        delta(|n| n.rx_bytes),
        delta(|n| n.tx_bytes),
        delta(|n| n.rx_packets),
        delta(|n| n.tx_packets),
        delta(|n| n.rx_errors),
        delta(|n| n.tx_errors),
        delta(|n| n.rx_drops),
        delta(|n| n.tx_drops),
    ) else {
        return;
    };
    let subject = Some(after.name.as_str());
    for (name, v) in [
        ("network.in_bps", rx_b),
        ("network.out_bps", tx_b),
        ("network.in_pps", rx_p),
        ("network.out_pps", tx_p),
        ("network.in_errors", rx_e),
        ("network.out_errors", tx_e),
        ("network.in_drops", rx_d),
        ("network.out_drops", tx_d),
    ] {
        // Network rates in bits (bps as network people mean it; `network.in_bps: 800000000`
        // is 80% of a gigabit link); disk rates stay in bytes.
        let scale = if name.ends_with("_bps") { 8.0 } else { 1.0 };
        m.push(name, subject, v as f64 * scale / dt);
    }
}

/// Reading the real files. Everything here is I/O; the arithmetic is above.
#[cfg(target_os = "linux")]
mod live {
    use std::collections::BTreeSet;
    use std::os::unix::fs::MetadataExt;

    use super::parse::{self, ParseError};
    use super::{Facts, HostError, MountSpace, ProcSample, SkippedMount, Snapshot, UserNames};

    fn read(path: &str) -> Result<String, HostError> {
        std::fs::read_to_string(path).map_err(|source| HostError::Read { path: path.to_string(), source })
    }

    /// A file whose absence only means fewer metrics (containers hide some; old kernels lack some).
    fn read_optional(path: &str) -> Option<String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(error) => {
                tracing::debug!(path, %error, "optional host file unreadable; its metrics are left out");
                None
            }
        }
    }

    fn soft<T>(result: Result<T, ParseError>) -> Option<T> {
        result.inspect_err(|error| tracing::debug!(%error, "host file not understood; its metrics are left out")).ok()
    }

    pub(super) fn read_facts() -> Result<Facts, HostError> {
        let stat = parse::parse_stat(&read("/proc/stat")?)?;
        let memory = parse::parse_meminfo(&read("/proc/meminfo")?)?;
        let kernel = read_optional("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
        let os = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok().and_then(|t| parse::parse_os_release(&t)))
            .unwrap_or_else(|| format!("Linux {kernel}").trim().to_string());
        let cpu = read_optional("/proc/cpuinfo").map(|t| parse::parse_cpuinfo(&t)).unwrap_or_default();
        let mut ips: Vec<std::net::IpAddr> = Vec::new();
        ips.extend(
            read_optional("/proc/net/fib_trie")
                .map(|t| parse::parse_fib_trie(&t))
                .unwrap_or_default()
                .into_iter()
                .map(std::net::IpAddr::V4),
        );
        ips.extend(
            read_optional("/proc/net/if_inet6")
                .map(|t| parse::parse_if_inet6(&t))
                .unwrap_or_default()
                .into_iter()
                .map(std::net::IpAddr::V6),
        );
        let uptime = read_optional("/proc/uptime").and_then(|t| soft(parse::parse_uptime(&t))).unwrap_or(0.0);
        Ok(Facts {
            os,
            kernel,
            cpu_vendor: cpu.vendor.unwrap_or_default(),
            cpu_model: cpu.model.unwrap_or_default(),
            cpu_count: if stat.cpu_count > 0 { stat.cpu_count } else { cpu.processors },
            ram_total_bytes: memory.total,
            boot_time: stat.boot_time,
            uptime_secs: uptime as u64,
            ips,
        })
    }

    pub(super) fn read_snapshot(users: &mut UserNames, page_size: u64) -> Result<Snapshot, HostError> {
        let whole_disks: Option<BTreeSet<String>> = std::fs::read_dir("/sys/block")
            .ok()
            .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect());
        let disks = read_optional("/proc/diskstats").and_then(|t| soft(parse::parse_diskstats(&t))).unwrap_or_default();
        let (mounts, network) = read_optional("/proc/self/mounts").map(|t| parse::disk_mounts(parse::parse_mounts(&t))).unwrap_or_default();
        Ok(Snapshot {
            stat: parse::parse_stat(&read("/proc/stat")?)?,
            memory: parse::parse_meminfo(&read("/proc/meminfo")?)?,
            load: parse::parse_loadavg(&read("/proc/loadavg")?)?,
            uptime_secs: parse::parse_uptime(&read("/proc/uptime")?)?,
            page_faults: read_optional("/proc/vmstat").and_then(|t| soft(parse::parse_vmstat_page_faults(&t))),
            disks: parse::select_disks(disks, whole_disks.as_ref().filter(|w| !w.is_empty())),
            interfaces: read_optional("/proc/net/dev").and_then(|t| soft(parse::parse_net_dev(&t))).unwrap_or_default(),
            mounts: mounts.iter().filter_map(|m| fs_space(&m.mount_point)).collect(),
            skipped_mounts: network.into_iter().map(|m| SkippedMount { mount_point: m.mount_point, fs_type: m.fs_type }).collect(),
            processes: read_processes(users, page_size),
        })
    }

    /// Space on a mounted filesystem, from statvfs(2) (what `df` uses).
    fn fs_space(mount_point: &str) -> Option<MountSpace> {
        let path = std::ffi::CString::new(mount_point).ok()?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `path` is NUL-terminated and outlives the call; `stat` is writable memory of
        // the type statvfs fills, and is only read after it reported success.
        let stat = unsafe {
            if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
                return None;
            }
            stat.assume_init()
        };
        let block = if stat.f_frsize > 0 { stat.f_frsize } else { stat.f_bsize } as u64;
        Some(MountSpace {
            mount_point: mount_point.to_string(),
            total_bytes: stat.f_blocks as u64 * block,
            free_bytes: stat.f_bfree as u64 * block,
            available_bytes: stat.f_bavail as u64 * block,
        })
    }

    fn read_processes(users: &mut UserNames, page_size: u64) -> Vec<ProcSample> {
        users.begin_sample();
        let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
        let mut out = Vec::new();
        for entry in dir.filter_map(|e| e.ok()) {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            // A process may exit between the listing and the reads: skip it quietly.
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Ok(stat) = parse::parse_pid_stat(&text) else { continue };
            if stat.kernel_thread {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            out.push(ProcSample {
                pid,
                user: users.name(meta.uid(), || std::fs::read_to_string("/etc/passwd").ok()),
                name: stat.name,
                cpu_ticks: stat.cpu_ticks,
                start_ticks: stat.start_ticks,
                rss_bytes: stat.rss_pages.saturating_mul(page_size),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T: u64 = 100; // clock ticks per second in the fixtures

    fn sampler() -> HostSampler {
        HostSampler::with_facts(Facts::default(), T, 4096)
    }

    fn snapshot(stat: &str) -> Snapshot {
        Snapshot {
            stat: parse::parse_stat(stat).unwrap(),
            memory: parse::parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\nSwapTotal: 400 kB\nSwapFree: 300 kB\n")
                .unwrap(),
            load: parse::parse_loadavg("0.50 0.25 0.10 1/100 42\n").unwrap(),
            uptime_secs: 1000.0,
            ..Snapshot::default()
        }
    }

    fn names(r: &Report) -> Vec<&'static str> {
        r.metrics.iter().map(|m| m.name).collect()
    }

    #[test]
    fn two_stat_samples_give_the_exact_cpu_split() {
        let mut s = sampler();
        let t0 = Instant::now();
        let first = s.observe(snapshot("cpu 100 0 100 700 50 0 0 50 0 0\ncpu0 1 1 1 1\nbtime 1000\n"), t0, 0);
        assert_eq!(first.value("cpu.usage", None), None, "no rate without a baseline");
        // +1000 ticks: user 300, nice 100, system 100, idle 300, iowait 100, irq 20, softirq 30, steal 50.
        let r =
            s.observe(snapshot("cpu 400 100 200 1000 150 20 30 100 0 0\ncpu0 1 1 1 1\nbtime 1000\n"), t0 + Duration::from_secs(5), 5000);
        let v = |n| r.value(n, None).unwrap();
        assert_eq!(v("cpu.usage"), 60.0);
        assert_eq!(v("cpu.idle"), 30.0);
        assert_eq!(v("cpu.user"), 30.0);
        assert_eq!(v("cpu.nice"), 10.0);
        assert_eq!(v("cpu.system"), 10.0);
        assert_eq!(v("cpu.iowait"), 10.0);
        assert_eq!(v("cpu.irq"), 2.0);
        assert_eq!(v("cpu.softirq"), 3.0);
        assert_eq!(v("cpu.steal"), 5.0);
        assert_eq!(r.facts.cpu_count, 1);
        assert_eq!(r.at_ms, 5000);
    }

    #[test]
    fn a_counter_that_went_backwards_or_a_new_boot_time_gives_no_rate_and_a_new_baseline() {
        let mut s = sampler();
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let with_faults = |stat: &str, faults| Snapshot { page_faults: Some(faults), ..snapshot(stat) };
        s.observe(with_faults("cpu 100 0 100 700 0 0 0 0\nbtime 1000\n", 5000), at(0), 0);
        // Reboot: counters small again, boot time moved.
        let r = s.observe(with_faults("cpu 10 0 10 70 0 0 0 0\nbtime 2000\n", 10), at(5), 0);
        assert!(!names(&r).iter().any(|n| n.starts_with("cpu.") || *n == "memory.page_faults"), "{:?}", names(&r));
        assert_eq!(r.facts.boot_time, 2000);
        // The reboot sample is the new baseline: the next interval has rates again.
        let r = s.observe(with_faults("cpu 60 0 10 120 0 0 0 0\nbtime 2000\n", 510), at(10), 0);
        assert_eq!(r.value("cpu.usage", None), Some(50.0));
        assert_eq!(r.value("memory.page_faults", None), Some(100.0));
        // A wrapped counter with the same boot time: no rate, never negative or huge.
        let r = s.observe(with_faults("cpu 70 0 10 130 0 0 0 0\nbtime 2000\n", 3), at(15), 0);
        assert_eq!(r.value("memory.page_faults", None), None);
        assert_eq!(r.value("cpu.usage", None), Some(50.0), "cpu counters still moved forward");
        // A boot time that wobbles by a second (NTP) is not a reboot.
        let r = s.observe(with_faults("cpu 80 0 10 140 0 0 0 0\nbtime 2001\n", 53), at(20), 0);
        assert_eq!(r.value("memory.page_faults", None), Some(10.0));
        // Time that did not move forward gives no rates.
        let r = s.observe(with_faults("cpu 90 0 10 150 0 0 0 0\nbtime 2001\n", 63), at(20), 0);
        assert_eq!(r.value("cpu.usage", None), None);
    }

    #[test]
    fn an_iowait_column_stepping_back_counts_as_zero_not_negative() {
        let mut s = sampler();
        let t0 = Instant::now();
        s.observe(snapshot("cpu 100 0 0 100 50 0 0 0\nbtime 1\n"), t0, 0);
        let r = s.observe(snapshot("cpu 150 0 0 150 49 0 0 0\nbtime 1\n"), t0 + Duration::from_secs(1), 0);
        assert_eq!(r.value("cpu.iowait", None), Some(0.0));
        assert!(r.metrics.iter().all(|m| m.value >= 0.0 && m.value <= 100.0));
    }

    #[test]
    fn memory_and_swap_percentages_are_exact_from_the_first_sample() {
        let r = sampler().observe(snapshot("cpu 1 0 0 1\nbtime 1\n"), Instant::now(), 0);
        assert_eq!(r.value("memory.usage", None), Some(75.0));
        assert_eq!(r.value("memory.available", None), Some(25.0));
        assert_eq!(r.value("memory.free", None), Some(10.0));
        assert_eq!(r.value("swap.usage", None), Some(25.0));
        assert_eq!(r.value("load.1", None), Some(0.5));
        assert_eq!(r.value("load.15", None), Some(0.1));
        assert_eq!(r.facts.ram_total_bytes, 1_024_000);
        let no_swap = Snapshot {
            memory: MemInfo { swap_total: 0, swap_free: 0, ..snapshot("cpu 1 0 0 1\nbtime 1\n").memory },
            ..snapshot("cpu 1 0 0 1\nbtime 1\n")
        };
        assert_eq!(sampler().observe(no_swap, Instant::now(), 0).value("swap.usage", None), None, "no swap is not 0% of nothing");
    }

    #[test]
    fn diskstats_deltas_give_busy_iops_throughput_and_queue_per_device() {
        let mut s = sampler();
        let t0 = Instant::now();
        let disks = |text: &str| Snapshot { disks: parse::parse_diskstats(text).unwrap(), ..snapshot("cpu 1 0 0 1\nbtime 1\n") };
        s.observe(disks(" 254 0 vda 1000 0 8000 0 500 0 4000 0 0 10000 20000\n 254 16 vdb 5 0 5 0 5 0 5 0 0 5 5\n"), t0, 0);
        // Over 2 s: 300 reads + 100 writes, 4096 sectors read, 2048 written, 1000 ms busy, 3000 weighted ms.
        let r = s.observe(
            disks(" 254 0 vda 1300 0 12096 0 600 0 6048 0 1 11000 23000\n 254 16 vdb 4 0 4 0 4 0 4 0 0 4 4\n 254 32 vdc 1 0 1 0 1 0 1 0 0 1 1\n"),
            t0 + Duration::from_secs(2),
            0,
        );
        let v = |n| r.value(n, Some("vda")).unwrap();
        assert_eq!(v("disk.io"), 50.0);
        assert_eq!(v("disk.iops"), 200.0);
        assert_eq!(v("disk.read_bps"), 4096.0 * 512.0 / 2.0);
        assert_eq!(v("disk.write_bps"), 2048.0 * 512.0 / 2.0);
        assert_eq!(v("disk.queue"), 1.5);
        assert_eq!(r.value("disk.io", Some("vdb")), None, "vdb's counters went backwards (device replaced)");
        assert_eq!(r.value("disk.io", Some("vdc")), None, "vdc is new: no baseline yet");
    }

    #[test]
    fn net_dev_deltas_give_bytes_packets_errors_and_drops_per_second() {
        let mut s = sampler();
        let t0 = Instant::now();
        let nets = |text: &str| Snapshot { interfaces: parse::parse_net_dev(text).unwrap(), ..snapshot("cpu 1 0 0 1\nbtime 1\n") };
        s.observe(nets("eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\neth1: 900 9 9 9 0 0 0 0 9 9 9 9 0 0 0 0\n"), t0, 0);
        let r = s.observe(
            nets("eth0: 6000 60 5 10 0 0 0 0 4500 45 15 20 0 0 0 0\neth1: 100 1 1 1 0 0 0 0 1 1 1 1 0 0 0 0\n"),
            t0 + Duration::from_secs(5),
            0,
        );
        let v = |n| r.value(n, Some("eth0")).unwrap();
        assert_eq!([v("network.in_bps"), v("network.out_bps"), v("network.in_pps"), v("network.out_pps")], [8000.0, 4000.0, 10.0, 5.0]);
        assert_eq!([v("network.in_errors"), v("network.out_errors"), v("network.in_drops"), v("network.out_drops")], [1.0, 3.0, 2.0, 4.0]);
        assert!(!r.metrics.iter().any(|m| m.subject.as_deref() == Some("eth1")), "a reset interface has no rates");
    }

    #[test]
    fn process_cpu_is_percent_of_one_core_and_counts_are_per_name() {
        let mut s = sampler();
        let t0 = Instant::now();
        let proc = |pid, name: &str, ticks, start| ProcSample {
            pid,
            name: name.into(),
            user: "www-data".into(),
            cpu_ticks: ticks,
            start_ticks: start,
            rss_bytes: 102_400,
        };
        let procs = |p: Vec<ProcSample>| Snapshot { processes: p, ..snapshot("cpu 1 0 0 1\nbtime 1\n") };
        s.observe(procs(vec![proc(10, "nginx", 1000, 5), proc(11, "nginx", 0, 5), proc(12, "php", 50, 7)]), t0, 0);
        // Over 2 s at 100 ticks/s: pid 10 used 300 ticks (150% — two threads), pid 11 used 20 (10%);
        // pid 12 was replaced by a new process with the same pid (another start time).
        let r = s.observe(
            procs(vec![proc(10, "nginx", 1300, 5), proc(11, "nginx", 20, 5), proc(12, "php", 60, 900)]),
            t0 + Duration::from_secs(2),
            0,
        );
        let cpu: Vec<(u32, Option<f64>)> = r.processes.iter().map(|p| (p.pid, p.cpu)).collect();
        assert_eq!(cpu, [(10, Some(150.0)), (11, Some(10.0)), (12, None)]);
        assert_eq!(r.processes[0].memory, 10.0);
        assert_eq!(r.processes[0].user, "www-data");
        assert_eq!(r.process_counts, BTreeMap::from([("nginx".to_string(), 2), ("php".to_string(), 1)]));
    }

    #[test]
    fn mount_space_follows_df() {
        let snap = Snapshot {
            mounts: vec![MountSpace { mount_point: "/".into(), total_bytes: 1000, free_bytes: 300, available_bytes: 200 }],
            ..snapshot("cpu 1 0 0 1\nbtime 1\n")
        };
        let r = sampler().observe(snap, Instant::now(), 0);
        assert_eq!(r.value("disk.used_bytes", Some("/")), Some(700.0));
        assert_eq!(r.value("disk.free_bytes", Some("/")), Some(200.0));
        assert_eq!(r.value("disk.usage", Some("/")), Some(700.0 * 100.0 / 900.0));
    }

    /// Every metric of the catalog is produced, so a rule can never name a metric the agent
    /// does not send.
    #[test]
    fn a_full_sample_pair_produces_every_policy_metric() {
        let mut s = sampler();
        let t0 = Instant::now();
        let full = |k: u64| Snapshot {
            page_faults: Some(100 * k),
            disks: parse::parse_diskstats(&format!(" 8 0 sda {k} 0 {k} 0 {k} 0 {k} 0 0 {k} {k}\n")).unwrap(),
            interfaces: parse::parse_net_dev(&format!("eth0: {k} {k} {k} {k} 0 0 0 0 {k} {k} {k} {k} 0 0 0 0\n")).unwrap(),
            mounts: vec![MountSpace { mount_point: "/".into(), total_bytes: 10, free_bytes: 5, available_bytes: 5 }],
            ..snapshot(&format!("cpu {k} 0 {k} {k} {k} {k} {k} {k}\nbtime 1\n"))
        };
        s.observe(full(1), t0, 0);
        let r = s.observe(full(2), t0 + Duration::from_secs(1), 0);
        for metric in catalog::METRICS {
            assert!(r.metrics.iter().any(|m| m.name == metric.name), "{metric} is not reported");
        }
    }

    #[test]
    fn reports_round_trip_through_json_and_unknown_metric_names_are_refused() {
        let mut s = sampler();
        let report = s.observe(snapshot("cpu 1 0 0 1\nbtime 1\n"), Instant::now(), 1_795_300_847_000);
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
        let bad = json.replace("\"load.1\"", "\"load.one\"");
        let err = serde_json::from_str::<Report>(&bad).unwrap_err().to_string();
        assert!(err.contains("unknown metric `load.one`"), "{err}");
    }

    #[test]
    fn user_names_are_cached_and_reloaded_once_per_sample_for_unknown_uids() {
        let mut users = UserNames::default();
        let mut reads = 0;
        users.begin_sample();
        assert_eq!(
            users.name(0, || {
                reads += 1;
                Some("root:x:0:0::/root:/bin/sh\n".into())
            }),
            "root"
        );
        assert_eq!(
            users.name(1000, || {
                reads += 1;
                Some("root:x:0:0::/root:/bin/sh\n".into())
            }),
            "1000"
        );
        assert_eq!(reads, 1, "one re-read per sample at most");
        users.begin_sample();
        assert_eq!(users.name(0, || unreachable!("root is cached")), "root");
        assert_eq!(users.name(1000, || Some("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n".into())), "alice");
    }
}
