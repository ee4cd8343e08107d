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

/// Two samples `gap` apart; returns the second.
fn sample_twice(sampler: &mut HostSampler, gap: Duration) -> Report {
    sampler.sample(Instant::now(), now_ms()).expect("first sample");
    std::thread::sleep(gap);
    sampler.sample(Instant::now(), now_ms()).expect("second sample")
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

#[test]
fn busy_threads_raise_cpu_usage_and_the_process_cpu() {
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
    std::thread::sleep(Duration::from_millis(200));
    let report = sample_twice(&mut sampler, Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    // Generous bounds: other builds share this machine, but a core's worth of spinning shows.
    let usage = report.value("cpu.usage", None).expect("cpu.usage");
    assert!(usage >= 30.0, "cpu.usage {usage}% with {threads} spinning threads");
    let own = report.processes.iter().find(|p| p.pid == std::process::id()).and_then(|p| p.cpu).expect("own cpu %");
    assert!(own >= 30.0, "own process at {own}% of a core with {threads} spinning threads");
    assert!(own <= threads as f64 * 100.0 + 25.0, "own process at {own}% cannot exceed its threads");
}
