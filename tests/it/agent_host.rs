//! The host sampler on this machine's real /proc: two samples a second apart, checked against
//! what the test reads from /proc itself.
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use watchkeeper::agent::sampler::HostSampler;
use watchkeeper::protocol::Report;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn meminfo_kb(key: &str) -> u64 {
    read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/meminfo"))
}

/// Memory in use, % of the total, as `free` computes it: total − available.
fn memory_used_pct() -> f64 {
    let (total, available) = (meminfo_kb("MemTotal"), meminfo_kb("MemAvailable"));
    (total - available) as f64 * 100.0 / total as f64
}

/// `df`'s use% of / (a whole number, rounded up).
fn df_root_pct() -> f64 {
    let df = std::process::Command::new("df").args(["--output=pcent", "/"]).output().expect("run df");
    String::from_utf8_lossy(&df.stdout).lines().nth(1).unwrap().trim().trim_end_matches('%').parse().unwrap()
}

fn load1() -> f64 {
    read("/proc/loadavg").split_whitespace().next().unwrap().parse().unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn a_sample_of_this_machine_agrees_with_proc() {
    let mut sampler = HostSampler::new().expect("host metrics on Linux");
    sampler.sample(Instant::now(), now_ms()).expect("first sample");
    std::thread::sleep(Duration::from_secs(1));
    // What changes while other programs run (memory, load, disk space) is read by the test right
    // before and right after the sample: the sample's value lies between the two reads.
    let (memory_before, load_before, df_before) = (memory_used_pct(), load1(), df_root_pct());
    let report = sampler.sample(Instant::now(), now_ms()).expect("second sample");
    let (memory_after, load_after, df_after) = (memory_used_pct(), load1(), df_root_pct());

    // Memory: the test's own arithmetic on /proc/meminfo (0.5 points for rounding and for
    // allocations between a read and the sample's own).
    let usage = report.value("memory.usage", None).expect("memory.usage");
    assert!(
        usage >= memory_before.min(memory_after) - 0.5 && usage <= memory_before.max(memory_after) + 0.5,
        "memory.usage {usage} outside {memory_before}..{memory_after} from /proc/meminfo"
    );
    assert_eq!(report.facts.ram_total_bytes, meminfo_kb("MemTotal") * 1024);

    // load.1 is whatever /proc/loadavg said between the two reads around the sample.
    let load = report.value("load.1", None).expect("load.1");
    assert!(
        load >= load_before.min(load_after) - 0.01 && load <= load_before.max(load_after) + 0.01,
        "load.1 {load} outside {load_before}..{load_after}"
    );

    // CPU split: present, each a percentage, and usage + idle + iowait make up the whole.
    let cpu = |name| report.value(name, None).unwrap_or_else(|| panic!("{name} missing"));
    for name in ["cpu.usage", "cpu.idle", "cpu.user", "cpu.system", "cpu.iowait", "cpu.steal", "cpu.irq", "cpu.softirq"] {
        assert!((0.0..=100.0).contains(&cpu(name)), "{name} = {}", cpu(name));
    }
    assert!((cpu("cpu.usage") + cpu("cpu.idle") + cpu("cpu.iowait") - 100.0).abs() < 1e-6);
    assert!(report.value("memory.page_faults", None).is_some_and(|v| v > 0.0), "this test itself faults pages in");

    // Disk space of / against `df` (statvfs too, but another program's arithmetic; df rounds
    // its percentage up to a whole number).
    let disk = report.value("disk.usage", Some("/")).expect("disk.usage of /");
    assert!(
        disk >= df_before.min(df_after) - 1.0 && disk <= df_before.max(df_after),
        "disk.usage of / {disk} outside df's {df_before}%..{df_after}%"
    );

    // Facts against independent reads.
    let stat = read("/proc/stat");
    let btime: u64 = stat.lines().find_map(|l| l.strip_prefix("btime ")).unwrap().trim().parse().unwrap();
    assert!(report.facts.boot_time.abs_diff(btime) <= 2, "boot time {} vs btime {btime}", report.facts.boot_time);
    assert_eq!(report.facts.cpu_count as usize, crate::common::proc_stat_cpu_count());
    assert_eq!(report.facts.kernel, read("/proc/sys/kernel/osrelease").trim());
    assert!(!report.facts.os.is_empty());
    let uptime: f64 = read("/proc/uptime").split_whitespace().next().unwrap().parse().unwrap();
    assert!((report.facts.uptime_secs as f64 - uptime).abs() <= 5.0);

    // Every interface but loopback has traffic rates.
    for line in read("/proc/net/dev").lines().skip(2) {
        let name = line.split(':').next().unwrap().trim();
        if name != "lo" {
            assert!(report.value("network.in_bps", Some(name)).is_some(), "no network.in_bps for {name}");
        }
    }
    assert!(!report.metrics.iter().any(|m| m.subject.as_deref() == Some("lo")));

    // This test's own process is listed and counted under its name.
    let me = std::process::id();
    let comm = read("/proc/self/comm").trim().to_string();
    let own = report.processes.iter().find(|p| p.pid == me).expect("own process listed");
    assert_eq!(own.name, comm);
    assert!(own.rss_bytes > 0 && own.memory > 0.0 && own.cpu.is_some() && !own.user.is_empty());
    assert!(report.process_counts.get(&comm).is_some_and(|n| *n >= 1), "{comm} not counted");

    // The report survives its trip as the ingest body.
    let back: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(back, report);
}

/// This process's CPU time so far, in clock ticks: utime + stime in /proc/self/stat.
fn own_cpu_ticks() -> u64 {
    let stat = read("/proc/self/stat");
    // After the command's closing parenthesis: state is the 1st field, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a command in /proc/self/stat") + 1..].split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The machine's busy and total CPU ticks from /proc/stat's `cpu` line, counted as the sampler
/// counts them: every state is in the total, all but idle and iowait are busy.
fn machine_ticks() -> (u64, u64) {
    let stat = read("/proc/stat");
    let v: Vec<u64> = stat.lines().next().unwrap().split_whitespace().skip(1).take(8).map(|x| x.parse().unwrap()).collect();
    let total: u64 = v.iter().sum();
    (total - v[3] - v[4], total)
}

#[test]
fn busy_threads_raise_cpu_usage_and_the_process_cpu() {
    // How much CPU the spinning threads get depends on what else this machine runs, so the
    // reported figures are held to what /proc says right before and right after each of the two
    // samples: counters only grow, so the sample's own reading lies between those two.
    let mut sampler = HostSampler::new().expect("host metrics on Linux");
    let stop = Arc::new(AtomicBool::new(false));
    let threads = sampler.facts().cpu_count.max(1);
    let burners: Vec<_> = (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let mut sample = || {
        let before = (own_cpu_ticks(), machine_ticks());
        let at = Instant::now();
        let report = sampler.sample(at, now_ms()).expect("sample");
        (before, at, report, (own_cpu_ticks(), machine_ticks()))
    };
    let (first_before, first_at, _, first_after) = sample();
    std::thread::sleep(Duration::from_secs(2));
    let (second_before, second_at, report, second_after) = sample();
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }

    // The process: its ticks over the time between the two samples' instants, as % of a core.
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let seconds = second_at.duration_since(first_at).as_secs_f64();
    let share = |ticks: u64| ticks as f64 / ticks_per_second / seconds * 100.0;
    let (least, most) = (share(second_before.0 - first_after.0), share(second_after.0 - first_before.0));
    let own = report.processes.iter().find(|p| p.pid == std::process::id()).and_then(|p| p.cpu).expect("own cpu %");
    assert!(least > 0.0, "the spinning threads got no CPU at all in {seconds:.1} s");
    assert!((least..=most).contains(&own), "own process at {own}%, /proc says {least:.1}–{most:.1}%");

    // The machine: busy ticks over all ticks between the samples; it includes the threads' work.
    let ((busy_low, total_high), (busy_high, total_low)) = (
        (second_before.1.0 - first_after.1.0, second_after.1.1 - first_before.1.1),
        (second_after.1.0 - first_before.1.0, second_before.1.1 - first_after.1.1),
    );
    let (least, most) = (busy_low as f64 * 100.0 / total_high as f64, busy_high as f64 * 100.0 / total_low as f64);
    let usage = report.value("cpu.usage", None).expect("cpu.usage");
    // One point for an idle or iowait counter the kernel steps back (it documents that).
    assert!(least - 1.0 <= usage && usage <= most + 1.0, "cpu.usage {usage}%, /proc/stat says {least:.1}–{most:.1}%");
    assert!(least > 0.0, "the machine was not busy while {threads} threads spun");
}
