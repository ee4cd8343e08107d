//! The parser and mapping against a real node_exporter (Debian's `prometheus-node-exporter`) on
//! 127.0.0.1: two scrapes, and the values compared with what /proc says.

use std::time::{Duration, Instant};

use watchkeeper::catalog;
use watchkeeper::collect::node_exporter::{Snapshot, metrics};
use watchkeeper::collect::prom;
use watchkeeper::protocol::MetricValue;

use crate::support::exporter::{self, Exporter, start};

const MAX_PAGE_BYTES: usize = 8 << 20;

async fn scrape(client: &reqwest::Client, exporter: &Exporter, started: Instant) -> Snapshot {
    let response = client.get(&exporter.url).send().await.expect("scrape");
    assert!(response.status().is_success(), "scrape answered {}", response.status());
    let at_ms = started.elapsed().as_millis() as i64;
    let body = response.bytes().await.expect("scrape body");
    // A real page parses strictly: not one line skipped.
    let exposition = prom::parse(&body, MAX_PAGE_BYTES).unwrap_or_else(|e| panic!("node_exporter page: {e}"));
    assert!(exposition.samples.len() > 100, "only {} samples", exposition.samples.len());
    Snapshot::new(&exposition, at_ms)
}

fn value(values: &[MetricValue], name: &str) -> f64 {
    values.iter().find(|v| v.name == name && v.subject.is_none()).map(|v| v.value).unwrap_or_else(|| panic!("no {name} in {values:#?}"))
}

fn meminfo_kib(meminfo: &str, key: &str) -> f64 {
    let line = meminfo.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key} in /proc/meminfo"));
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad /proc/meminfo line {line:?}"))
}

fn load1() -> f64 {
    let loadavg = std::fs::read_to_string("/proc/loadavg").expect("read /proc/loadavg");
    loadavg.split_whitespace().next().and_then(|v| v.parse().ok()).expect("load1 in /proc/loadavg")
}

#[tokio::test]
async fn two_scrapes_of_a_real_node_exporter_map_to_sane_host_metrics() {
    let Some(binary) = exporter::required() else { return };
    let _ = rustls::crypto::ring::default_provider().install_default();
    crate::support::install_crypto();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let exporter = start(&client, &binary).await;
    let started = Instant::now();

    let first = scrape(&client, &exporter, started).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let load_before = load1();
    let second = scrape(&client, &exporter, started).await;
    let load_after = load1();
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");

    let values = metrics(Some(&first), &second);
    for v in &values {
        assert!(catalog::lookup(v.name).is_some(), "{} is not a watchkeeper metric", v.name);
        assert!(v.value.is_finite() && v.value >= 0.0, "{v:?}");
        if matches!(
            v.name,
            "cpu.usage" | "cpu.iowait" | "cpu.steal" | "cpu.irq" | "cpu.softirq" | "memory.usage" | "disk.usage" | "disk.io"
        ) {
            assert!(v.value <= 100.0, "{v:?}");
        }
    }
    assert!(values.iter().all(|v| v.subject.as_deref() != Some("lo")), "loopback is skipped");

    let cpu = value(&values, "cpu.usage");
    assert!((0.0..=100.0).contains(&cpu), "cpu.usage {cpu}");

    let expected_memory = 100.0 * (1.0 - meminfo_kib(&meminfo, "MemAvailable") / meminfo_kib(&meminfo, "MemTotal"));
    let memory = value(&values, "memory.usage");
    assert!((memory - expected_memory).abs() < 3.0, "memory.usage {memory}, /proc/meminfo says {expected_memory}");
    assert!((memory + value(&values, "memory.available") - 100.0).abs() < 1e-6);

    // The kernel recomputes load every 5 s and the host is busy building: allow for one step.
    let load = value(&values, "load.1");
    let (low, high) = (load_before.min(load_after), load_before.max(load_after));
    let tolerance = 0.5f64.max(high * 0.15);
    assert!(load >= low - tolerance && load <= high + tolerance, "load.1 {load}, /proc/loadavg said {load_before} then {load_after}");

    // Rates need both scrapes; `value` panics when one is missing.
    for name in ["memory.page_faults", "cpu.iowait", "cpu.steal", "cpu.irq", "cpu.softirq"] {
        value(&values, name);
    }
}
