//! Pure parsers for the /proc and /sys text the host sampler reads: text in, counters out, no I/O.
//!
//! Every function here takes the whole text of one file, so each is tested with an inline fixture
//! and none depends on the machine the tests run on.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A /proc file that did not look the way the kernel documents it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ParseError {
    /// The file, as a path such as `/proc/stat`.
    pub file: &'static str,
    pub message: String,
}

fn err(file: &'static str, message: impl Into<String>) -> ParseError {
    ParseError { file, message: message.into() }
}

/// Clock ticks all CPUs spent in each state: the aggregate `cpu` line of /proc/stat.
///
/// `guest` and `guest_nice` are not kept: the kernel already counts them in `user` and `nice`, and
/// adding them again would count guest time twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Every tick, whatever the state.
    pub fn total(&self) -> u64 {
        self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal
    }
}

/// What the sampler needs from /proc/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub cpu: CpuTimes,
    /// Online CPUs: the number of `cpuN` lines.
    pub cpu_count: u32,
    /// Boot time, seconds since the Unix epoch (`btime`).
    pub boot_time: u64,
}

/// Parses /proc/stat.
pub fn parse_stat(text: &str) -> Result<Stat, ParseError> {
    const FILE: &str = "/proc/stat";
    let mut cpu = None;
    let mut cpu_count = 0;
    let mut boot_time = None;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("cpu") => {
                let n: Vec<u64> = fields
                    .map(|f| f.parse().map_err(|_| err(FILE, format!("bad number `{f}` on the cpu line"))))
                    .collect::<Result<_, _>>()?;
                if n.len() < 4 {
                    return Err(err(FILE, "the cpu line has fewer than 4 fields"));
                }
                // Older kernels lack the later columns (iowait 2.5.41, irq/softirq 2.6.0, steal 2.6.11).
                let at = |i: usize| n.get(i).copied().unwrap_or(0);
                cpu = Some(CpuTimes {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                });
            }
            Some(name) if name.starts_with("cpu") && name[3..].bytes().all(|b| b.is_ascii_digit()) => cpu_count += 1,
            Some("btime") => {
                let v = fields.next().ok_or_else(|| err(FILE, "btime has no value"))?;
                boot_time = Some(v.parse().map_err(|_| err(FILE, format!("bad btime `{v}`")))?);
            }
            _ => {}
        }
    }
    Ok(Stat {
        cpu: cpu.ok_or_else(|| err(FILE, "no aggregate cpu line"))?,
        cpu_count,
        boot_time: boot_time.ok_or_else(|| err(FILE, "no btime line"))?,
    })
}

/// What the sampler needs from /proc/meminfo, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    /// `MemAvailable`; on kernels before 3.14, free + buffers + cached + reclaimable slab.
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

/// Parses /proc/meminfo (values in kB, converted to bytes).
pub fn parse_meminfo(text: &str) -> Result<MemInfo, ParseError> {
    const FILE: &str = "/proc/meminfo";
    let mut values: HashMap<&str, u64> = HashMap::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let mut parts = rest.split_ascii_whitespace();
        let Some(Ok(n)) = parts.next().map(str::parse::<u64>) else { continue };
        let bytes = if parts.next() == Some("kB") { n.saturating_mul(1024) } else { n };
        values.insert(key.trim(), bytes);
    }
    let get = |k: &str| values.get(k).copied();
    let total = get("MemTotal").ok_or_else(|| err(FILE, "no MemTotal"))?;
    let free = get("MemFree").ok_or_else(|| err(FILE, "no MemFree"))?;
    let available = get("MemAvailable")
        .unwrap_or_else(|| free + get("Buffers").unwrap_or(0) + get("Cached").unwrap_or(0) + get("SReclaimable").unwrap_or(0));
    Ok(MemInfo {
        total,
        free,
        available: available.min(total),
        swap_total: get("SwapTotal").unwrap_or(0),
        swap_free: get("SwapFree").unwrap_or(0),
    })
}

/// The load averages from /proc/loadavg.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

/// Parses /proc/loadavg.
pub fn parse_loadavg(text: &str) -> Result<LoadAvg, ParseError> {
    const FILE: &str = "/proc/loadavg";
    let mut f = text.split_ascii_whitespace().map(|v| v.parse::<f64>().map_err(|_| err(FILE, format!("bad load `{v}`"))));
    let mut next = || f.next().unwrap_or_else(|| Err(err(FILE, "fewer than 3 values")));
    Ok(LoadAvg { one: next()?, five: next()?, fifteen: next()? })
}

/// Parses /proc/uptime: seconds since boot.
pub fn parse_uptime(text: &str) -> Result<f64, ParseError> {
    let v = text.split_ascii_whitespace().next().unwrap_or("");
    v.parse().map_err(|_| err("/proc/uptime", format!("bad uptime `{v}`")))
}

/// Parses the `pgfault` counter (page faults since boot) from /proc/vmstat.
pub fn parse_vmstat_page_faults(text: &str) -> Result<u64, ParseError> {
    const FILE: &str = "/proc/vmstat";
    let line = text.lines().find_map(|l| l.strip_prefix("pgfault ")).ok_or_else(|| err(FILE, "no pgfault line"))?;
    line.trim().parse().map_err(|_| err(FILE, format!("bad pgfault `{line}`")))
}

/// One block device's counters from /proc/diskstats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStat {
    pub name: String,
    pub reads: u64,
    /// Always 512-byte units, whatever the device's sector size.
    pub sectors_read: u64,
    pub writes: u64,
    pub sectors_written: u64,
    /// I/Os in flight right now.
    pub in_progress: u64,
    /// Milliseconds the device had at least one I/O in flight (busy time).
    pub io_ms: u64,
    /// Milliseconds spent doing I/O, weighted by the number in flight (queue integral).
    pub weighted_io_ms: u64,
}

/// Parses /proc/diskstats. Lines with fewer than the 14 classic columns are skipped.
pub fn parse_diskstats(text: &str) -> Result<Vec<DiskStat>, ParseError> {
    const FILE: &str = "/proc/diskstats";
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().map_err(|_| err(FILE, format!("bad number `{}` for {}", f[i], f[2])));
        out.push(DiskStat {
            name: f[2].to_string(),
            reads: n(3)?,
            sectors_read: n(5)?,
            writes: n(7)?,
            sectors_written: n(9)?,
            in_progress: n(11)?,
            io_ms: n(12)?,
            weighted_io_ms: n(13)?,
        });
    }
    Ok(out)
}

/// The devices worth reporting: whole disks, not loop or RAM devices, and not idle since boot.
///
/// `whole_disks` is the listing of /sys/block (whole disks, never partitions) when it can be read;
/// without it a device is taken as a partition when another device's name plus digits (or `p` and
/// digits, as in `nvme0n1p1`) spells it.
pub fn select_disks(stats: Vec<DiskStat>, whole_disks: Option<&BTreeSet<String>>) -> Vec<DiskStat> {
    let names: BTreeSet<String> = stats.iter().map(|d| d.name.clone()).collect();
    let is_partition = |name: &str| match whole_disks {
        Some(whole) => !whole.contains(name),
        None => names.iter().any(|parent| {
            name.strip_prefix(parent.as_str()).is_some_and(|rest| {
                let digits = rest.strip_prefix('p').filter(|_| parent.ends_with(|c: char| c.is_ascii_digit())).unwrap_or(rest);
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            })
        }),
    };
    stats
        .into_iter()
        .filter(|d| {
            !(d.name.starts_with("loop") || d.name.starts_with("ram") || is_partition(&d.name)) && d.reads + d.writes + d.in_progress > 0
        })
        .collect()
}

/// One interface's counters from /proc/net/dev.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

/// Parses /proc/net/dev, skipping the loopback interface.
pub fn parse_net_dev(text: &str) -> Result<Vec<NetDev>, ParseError> {
    const FILE: &str = "/proc/net/dev";
    let mut out = Vec::new();
    // Interface names cannot contain ':', so the first one ends the name; the two header lines have none.
    for (name, rest) in text.lines().filter_map(|l| l.split_once(':')) {
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let n: Vec<u64> = rest
            .split_ascii_whitespace()
            .map(|v| v.parse().map_err(|_| err(FILE, format!("bad number `{v}` for {name}"))))
            .collect::<Result<_, _>>()?;
        if n.len() < 16 {
            return Err(err(FILE, format!("{name} has {} counters, expected 16", n.len())));
        }
        out.push(NetDev {
            name: name.to_string(),
            rx_bytes: n[0],
            rx_packets: n[1],
            rx_errors: n[2],
            rx_drops: n[3],
            tx_bytes: n[8],
            tx_packets: n[9],
            tx_errors: n[10],
            tx_drops: n[11],
        });
    }
    Ok(out)
}

/// One line of /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
}

/// Parses /proc/self/mounts, undoing the kernel's octal escapes (`\040` for a space).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            Some(Mount { device: unescape_octal(f.next()?), mount_point: unescape_octal(f.next()?), fs_type: f.next()?.to_string() })
        })
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Filesystems that hold no user data (or are read-only images that are always full), whose space
/// is not worth reporting.
pub fn is_pseudo_fs(fs_type: &str) -> bool {
    const PSEUDO: &[&str] = &[
        "proc",
        "sysfs",
        "tmpfs",
        "devtmpfs",
        "devpts",
        "overlay",
        "squashfs",
        "securityfs",
        "pstore",
        "debugfs",
        "tracefs",
        "configfs",
        "fusectl",
        "mqueue",
        "hugetlbfs",
        "bpf",
        "binfmt_misc",
        "autofs",
        "rpc_pipefs",
        "nsfs",
        "ramfs",
        "efivarfs",
        "selinuxfs",
        "nfsd",
        "iso9660",
        "udf",
        "fuse.lxcfs",
        "fuse.gvfsd-fuse",
        "fuse.portal",
        "fuse.snapfuse",
        "ecryptfs",
        "rootfs",
    ];
    PSEUDO.contains(&fs_type) || fs_type.starts_with("cgroup")
}

/// Filesystems served over the network. statvfs on one of them blocks for as long as its server
/// does not answer (a hard NFS mount: forever), so their space is not read; the report lists
/// them as skipped instead.
pub fn is_network_fs(fs_type: &str) -> bool {
    const NETWORK: &[&str] = &[
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "davfs",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.glusterfs",
        "fuse.ceph",
        "fuse.davfs2",
        "fuse.gcsfuse",
        "fuse.goofys",
        "fuse.juicefs",
    ];
    NETWORK.contains(&fs_type)
}

/// The mounts whose space is read — local real filesystems, each mount point once, and each
/// device once (a bind mount of the same device would report the same numbers twice) — and the
/// network filesystems left out (see [`is_network_fs`]).
pub fn disk_mounts(mounts: Vec<Mount>) -> (Vec<Mount>, Vec<Mount>) {
    let mut points = BTreeSet::new();
    let mut devices = BTreeSet::new();
    mounts
        .into_iter()
        .filter(|m| !is_pseudo_fs(&m.fs_type))
        .filter(|m| points.insert(m.mount_point.clone()) && (!m.device.starts_with('/') || devices.insert(m.device.clone())))
        .partition(|m| !is_network_fs(&m.fs_type))
}

/// PF_KTHREAD from include/linux/sched.h.
const PF_KTHREAD: u64 = 0x0020_0000;

/// What the sampler needs from /proc/[pid]/stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidStat {
    pub pid: u32,
    /// `comm`: the executable name, at most 15 bytes.
    pub name: String,
    pub kernel_thread: bool,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks; with the pid it identifies a process across pid reuse.
    pub start_ticks: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

/// Parses /proc/[pid]/stat. The name sits in parentheses and may itself contain spaces and ')',
/// so fields are counted from the last ')'.
pub fn parse_pid_stat(text: &str) -> Result<PidStat, ParseError> {
    const FILE: &str = "/proc/[pid]/stat";
    let open = text.find('(').ok_or_else(|| err(FILE, "no '('"))?;
    let close = text.rfind(')').ok_or_else(|| err(FILE, "no ')'"))?;
    if close < open {
        return Err(err(FILE, "')' before '('"));
    }
    let pid = text[..open].trim().parse().map_err(|_| err(FILE, "bad pid"))?;
    let name = text[open + 1..close].to_string();
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags(9) minflt cminflt majflt cmajflt utime(14) stime(15) ...
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let n = |field: usize| -> Result<u64, ParseError> {
        let v = rest.get(field - 3).ok_or_else(|| err(FILE, format!("field {field} missing")))?;
        v.parse().map_err(|_| err(FILE, format!("bad field {field} `{v}`")))
    };
    let rss: i64 = rest.get(24 - 3).and_then(|v| v.parse().ok()).ok_or_else(|| err(FILE, "bad rss"))?;
    Ok(PidStat {
        pid,
        name,
        kernel_thread: n(9)? & PF_KTHREAD != 0,
        cpu_ticks: n(14)? + n(15)?,
        start_ticks: n(22)?,
        rss_pages: rss.max(0) as u64,
    })
}

/// Parses /etc/passwd into uid → user name.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// The CPU's identity from /proc/cpuinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    pub vendor: Option<String>,
    pub model: Option<String>,
    /// `processor` entries, for when /proc/stat cannot say.
    pub processors: u32,
}

/// Parses /proc/cpuinfo: x86 `vendor_id` / `model name`; ARM `CPU implementer` and `Hardware` or `Model`.
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            continue;
        }
        match key {
            "processor" => info.processors += 1,
            "vendor_id" | "vendor" if info.vendor.is_none() => info.vendor = Some(value.to_string()),
            "CPU implementer" if info.vendor.is_none() => info.vendor = Some(arm_implementer(value)),
            "model name" | "cpu model" | "Hardware" | "Model" if info.model.is_none() => info.model = Some(value.to_string()),
            _ => {}
        }
    }
    info
}

fn arm_implementer(code: &str) -> String {
    let name = match code.to_ascii_lowercase().as_str() {
        "0x41" => "ARM",
        "0x42" => "Broadcom",
        "0x43" => "Cavium",
        "0x48" => "HiSilicon",
        "0x4e" => "NVIDIA",
        "0x50" => "APM",
        "0x51" => "Qualcomm",
        "0x61" => "Apple",
        "0x63" => "Arm China",
        "0xc0" => "Ampere",
        _ => return format!("ARM implementer {code}"),
    };
    name.to_string()
}

/// `PRETTY_NAME` from os-release, else `NAME VERSION`.
pub fn parse_os_release(text: &str) -> Option<String> {
    let values: HashMap<&str, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim().trim_matches(|c| c == '"' || c == '\'').replace("\\\"", "\"")))
        .collect();
    values.get("PRETTY_NAME").filter(|v| !v.is_empty()).cloned().or_else(|| {
        let name = values.get("NAME")?;
        Some(match values.get("VERSION") {
            Some(version) => format!("{name} {version}"),
            None => name.clone(),
        })
    })
}

/// The machine's own IPv4 addresses from /proc/net/fib_trie: each address followed by a
/// `/32 host LOCAL` line, without loopback, sorted and deduplicated (it appears in several tables).
pub fn parse_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut last: Option<Ipv4Addr> = None;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("|-- ") {
            last = addr.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(addr) = last.filter(|a| !a.is_loopback()) {
                out.insert(addr);
            }
        } else if t.starts_with("+--") {
            last = None;
        }
    }
    out.into_iter().collect()
}

/// The machine's global IPv6 addresses from /proc/net/if_inet6 (scope 0; not loopback or link-local).
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 6 || f[0].len() != 32 || f[3] != "00" || f[5] == "lo" {
            continue;
        }
        if let Ok(bits) = u128::from_str_radix(f[0], 16) {
            out.insert(Ipv6Addr::from(bits));
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn stat_reads_the_aggregate_line_cpu_count_and_boot_time() {
        let text = "cpu  593075 10 78458 268642 4406 1 2872 9294 7 3\n\
                    cpu0 291510 0 37440 142580 1125 0 879 4765 0 0\n\
                    cpu1 301565 0 41017 126062 3280 0 1993 4529 0 0\n\
                    intr 1 2 3\nctxt 99\nbtime 1795300847\nprocesses 20652\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.cpu_count, 2);
        assert_eq!(s.boot_time, 1795300847);
        assert_eq!(
            s.cpu,
            CpuTimes { user: 593075, nice: 10, system: 78458, idle: 268642, iowait: 4406, irq: 1, softirq: 2872, steal: 9294 }
        );
        assert_eq!(s.cpu.total(), 593075 + 10 + 78458 + 268642 + 4406 + 1 + 2872 + 9294, "guest columns are not added again");
    }

    #[test]
    fn stat_without_btime_or_cpu_line_is_an_error() {
        assert!(parse_stat("cpu 1 2 3 4\n").is_err());
        assert!(parse_stat("btime 5\n").is_err());
        assert!(parse_stat("cpu 1 x 3 4\nbtime 5\n").is_err());
    }

    #[test]
    fn meminfo_converts_kb_and_falls_back_without_memavailable() {
        let m = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 400 kB\nSwapTotal: 200 kB\nSwapFree: 50 kB\n").unwrap();
        assert_eq!(m, MemInfo { total: 1_024_000, free: 102_400, available: 409_600, swap_total: 204_800, swap_free: 51_200 });
        let old = parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\nSReclaimable: 25 kB\n").unwrap();
        assert_eq!(old.available, 375 * 1024);
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn loadavg_uptime_and_vmstat() {
        assert_eq!(parse_loadavg("1.64 3.37 3.77 1/167 20652\n").unwrap(), LoadAvg { one: 1.64, five: 3.37, fifteen: 3.77 });
        assert!(parse_loadavg("1.0 2.0").is_err());
        assert_eq!(parse_uptime("12345.67 2000.00\n").unwrap(), 12345.67);
        assert_eq!(parse_vmstat_page_faults("pgpgin 1\npgfault 987654\npgmajfault 3\n").unwrap(), 987654);
        assert!(parse_vmstat_page_faults("pgmajfault 3\n").is_err());
    }

    #[test]
    fn diskstats_picks_counters_and_select_disks_drops_partitions_loops_and_idle_devices() {
        let text = "   7       0 loop0 5 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n\
                    254       0 vda 1335443 68437 61510666 2672490 139444 123154 55621192 275778 2 131744 2968175 66577 71 32959280 16913 30915 2993\n\
                    254       1 vda1 10 0 80 0 0 0 0 0 0 0 0\n\
                    259       0 nvme0n1 9 0 8 0 1 0 8 0 0 4 4\n\
                    259       1 nvme0n1p1 9 0 8 0 1 0 8 0 0 4 4\n\
                    253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        let all = parse_diskstats(text).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(
            all[1],
            DiskStat {
                name: "vda".into(),
                reads: 1335443,
                sectors_read: 61510666,
                writes: 139444,
                sectors_written: 55621192,
                in_progress: 2,
                io_ms: 131744,
                weighted_io_ms: 2968175
            }
        );
        let names = |v: Vec<DiskStat>| v.into_iter().map(|d| d.name).collect::<Vec<_>>();
        assert_eq!(names(select_disks(all.clone(), None)), ["vda", "nvme0n1"]);
        let whole: BTreeSet<String> = ["vda", "loop0", "zram0"].map(String::from).into();
        assert_eq!(names(select_disks(all, Some(&whole))), ["vda"]);
    }

    #[test]
    fn net_dev_skips_headers_and_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
            lo: 215014384 3409972    0    0    0     0          0         0 215014384 3409972    0    0    0     0       0          0\n  \
            eth0:264972545    9647    1    2    0     0          0         0   583659    5422    3    4    0     0       0          0\n";
        let devs = parse_net_dev(text).unwrap();
        assert_eq!(
            devs,
            [NetDev {
                name: "eth0".into(),
                rx_bytes: 264972545,
                rx_packets: 9647,
                rx_errors: 1,
                rx_drops: 2,
                tx_bytes: 583659,
                tx_packets: 5422,
                tx_errors: 3,
                tx_drops: 4
            }]
        );
        assert!(parse_net_dev("eth0: 1 2 3\n").is_err());
    }

    #[test]
    fn mounts_unescape_and_keep_real_filesystems_once() {
        let text = "proc /proc proc rw 0 0\n\
                    /dev/vda / ext4 rw 0 0\n\
                    tmpfs /dev/shm tmpfs rw 0 0\n\
                    cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n\
                    /dev/vdb /srv/my\\040data xfs rw 0 0\n\
                    /dev/vda /var/lib/bind ext4 rw 0 0\n\
                    overlay /var/lib/docker/x overlay rw 0 0\n\
                    server:/export /mnt/nfs nfs4 rw 0 0\n";
        let (local, network) = disk_mounts(parse_mounts(&format!("{text}remote:/share /mnt/ssh fuse.sshfs rw 0 0\n")));
        let points = |mounts: Vec<Mount>| mounts.into_iter().map(|m| m.mount_point).collect::<Vec<_>>();
        assert_eq!(points(local), ["/", "/srv/my data"]);
        assert_eq!(points(network), ["/mnt/nfs", "/mnt/ssh"], "network filesystems are left out");
        assert!(is_pseudo_fs("cgroup") && is_pseudo_fs("squashfs") && !is_pseudo_fs("btrfs"));
    }

    #[test]
    fn pid_stat_handles_names_with_spaces_and_parentheses() {
        let text =
            "4242 (my (odd) name) S 1 4242 4242 0 -1 4194304 99 0 0 0 150 50 0 0 20 0 1 0 486147 3133440 360 18446744073709551615 0\n";
        let p = parse_pid_stat(text).unwrap();
        assert_eq!(
            p,
            PidStat { pid: 4242, name: "my (odd) name".into(), kernel_thread: false, cpu_ticks: 200, start_ticks: 486147, rss_pages: 360 }
        );
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 1 0 0 20 0 1 0 3 0 0 18446744073709551615 0\n";
        assert!(parse_pid_stat(kthread).unwrap().kernel_thread);
        assert!(parse_pid_stat("12 (short) S 1 2\n").is_err());
    }

    #[test]
    fn passwd_cpuinfo_and_os_release() {
        let users: BTreeMap<u32, String> =
            (parse_passwd("# comment\nroot:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nbad\n"))
                .into_iter()
                .collect();
        assert_eq!(users, BTreeMap::from([(0, "root".to_string()), (33, "www-data".to_string())]));

        let x86 = parse_cpuinfo(
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n",
        );
        assert_eq!(x86, CpuInfo { vendor: Some("AuthenticAMD".into()), model: Some("AMD EPYC".into()), processors: 2 });
        let arm = parse_cpuinfo("processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n\nModel\t: Raspberry Pi 4\n");
        assert_eq!(arm.vendor.as_deref(), Some("ARM"));
        assert_eq!(arm.model.as_deref(), Some("Raspberry Pi 4"));

        assert_eq!(
            parse_os_release("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(parse_os_release("NAME=Alpine\nVERSION='3.20'\n").as_deref(), Some("Alpine 3.20"));
        assert_eq!(parse_os_release(""), None);
    }

    #[test]
    fn addresses_from_fib_trie_and_if_inet6() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n\
                   +-- 127.0.0.0/31 1 0 0\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n\
                   |-- 127.255.255.255\n           /32 link BROADCAST\n     +-- 192.0.2.0/24 2 0 2\n        +-- 192.0.2.0/30 2 0 2\n\
                   |-- 192.0.2.0\n              /24 link UNICAST\n           |-- 192.0.2.2\n              /32 host LOCAL\n\
                   |-- 192.0.2.255\n           /32 link BROADCAST\nLocal:\n           |-- 192.0.2.2\n              /32 host LOCAL\n\
                   |-- 10.0.0.10\n              /32 host LOCAL\n";
        assert_eq!(parse_fib_trie(fib), [Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(192, 0, 2, 2)]);

        let inet6 = "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n\
                     fd000000000000000000000000000002 04 40 00 82     eth0\n\
                     00000000000000000000000000000001 01 80 10 80       lo\n";
        assert_eq!(parse_if_inet6(inet6), ["fd00::2".parse::<Ipv6Addr>().unwrap()]);
    }
}
