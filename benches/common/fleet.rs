//! A fleet for the benchmarks that read a large project: every server's agent report and an
//! alert history, as a year of outages leaves it.

use watchkeeper::alert::{AlertChange, AlertState, InstanceKey, RuleId, Severity};
use watchkeeper::clock::now_ms;
use watchkeeper::protocol::{Facts, MetricValue, ProcessInfo, Report};
use watchkeeper::store::Store;

/// Fire `n_firing` alerts on servers spread over the project (a fifth warning, the rest fatal)
/// and leave `n_history` resolved ones before them.
pub async fn seed_alerts(store: &Store, project: &str, servers: &[String], n_firing: usize, n_history: usize) {
    let now = now_ms();
    for i in 0..n_history + n_firing {
        let firing = i >= n_history;
        let server = &servers[(i * 7919) % servers.len()];
        let key = InstanceKey {
            project: project.into(),
            server: server.clone(),
            rule: RuleId::Port(format!("{server}-ports")),
            subject: "22".into(),
        };
        let severity = if i % 5 == 0 { Severity::Warning } else { Severity::Fatal };
        // Resolved ones spread over the last year, firing ones started within the last hour.
        let since =
            if firing { now - (i % 3600) as i64 * 1000 } else { now - 365 * 86_400_000 + i as i64 * 1_500_000 % (364 * 86_400_000) };
        let open = AlertChange::Open {
            severity,
            started_at_ms: since,
            message: format!("port 22 of {server}-ports is down: connection refused"),
            host: "10.0.0.1".into(),
            snapshot: serde_json::json!({}),
        };
        let id = store.apply_alert(&key, &AlertState::default(), None, Some(&open), &[], since).await.expect("an alert");
        if !firing {
            let resolve = AlertChange::Resolve { at_ms: since + 600_000, reason: "recovered".into() };
            store.apply_alert(&key, &AlertState::default(), id, Some(&resolve), &[], since + 600_000).await.expect("resolving");
        }
    }
}

/// A typical agent report for server number `i`: facts, host-wide values, two mounts, two
/// devices, two interfaces, 20 processes; the numbers vary by server so sorts have work to do.
pub fn report(i: usize) -> Report {
    let x = (i % 100) as f64;
    let mut metrics: Vec<MetricValue> =
        ["cpu.usage", "cpu.iowait", "cpu.steal", "cpu.irq", "cpu.softirq", "cpu.idle", "cpu.user", "cpu.system"]
            .into_iter()
            .chain(["cpu.nice", "load.1", "load.5", "load.15", "memory.usage", "memory.available", "memory.free", "swap.usage"])
            .chain(["memory.page_faults"])
            .map(|name| MetricValue { name, subject: None, value: x })
            .collect();
    let per = |names: &[&'static str], subjects: &[&str]| -> Vec<MetricValue> {
        subjects
            .iter()
            .flat_map(|s| names.iter().map(move |&name| MetricValue { name, subject: Some(s.to_string()), value: x * 1000.0 }))
            .collect()
    };
    metrics.extend(per(&["disk.usage", "disk.used_bytes", "disk.free_bytes"], &["/", "/var"]));
    metrics.extend(per(&["disk.io", "disk.iops", "disk.read_bps", "disk.write_bps", "disk.queue"], &["sda", "sdb"]));
    let net = ["network.in_bps", "network.out_bps", "network.in_pps", "network.out_pps"];
    metrics.extend(per(&net, &["eth0", "eth1"]));
    metrics.extend(per(&["network.in_errors", "network.out_errors", "network.in_drops", "network.out_drops"], &["eth0", "eth1"]));
    let processes: Vec<ProcessInfo> = (0..20)
        .map(|p| ProcessInfo {
            pid: 1000 + p,
            name: format!("worker-{}", p % 5),
            user: "www-data".into(),
            cpu: Some(x),
            memory: 1.0,
            rss_bytes: 1 << 20,
        })
        .collect();
    let mut process_counts = std::collections::BTreeMap::new();
    for p in &processes {
        *process_counts.entry(p.name.clone()).or_insert(0) += 1;
    }
    Report {
        facts: Facts {
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.1.0-18-amd64".into(),
            cpu_vendor: "GenuineIntel".into(),
            cpu_model: "Intel(R) Xeon(R) E-2236 CPU @ 3.40GHz".into(),
            cpu_count: 12,
            ram_total_bytes: 32 << 30,
            boot_time: 1_700_000_000,
            uptime_secs: 40 * 86_400,
            ips: vec![std::net::IpAddr::from([10, 0, (i / 256 % 256) as u8, (i % 256) as u8])],
        },
        metrics,
        processes,
        process_counts,
        skipped_mounts: Vec::new(),
        at_ms: now_ms(),
    }
}
