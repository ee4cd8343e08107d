//! The prober against real sockets on 127.0.0.1, in real (short) time. A loaded machine may run
//! a check late or skip runs it fell behind on, so these tests assert the schedule (runs are due
//! on the interval's grid) and wait on conditions with generous bounds; how late checks start
//! under load is measured by the benchmarks, not asserted here.

use super::*;
use crate::clock::now_ms;

use std::collections::{HashMap, HashSet};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn key(name: &str) -> MonitorKey {
    MonitorKey { project: "shop".into(), name: name.into() }
}

fn spec(name: &str, ports: &[u16], interval_ms: u64, timeout_ms: u64) -> MonitorSpec {
    MonitorSpec {
        key: key(name),
        host: "127.0.0.1".into(),
        ports: ports.to_vec(),
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        approved: Vec::new(),
        shard: 0,
    }
}

async fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
}

async fn next_batch(rx: &mut mpsc::Receiver<Vec<PortResult>>) -> Vec<PortResult> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a batch within 5 s").expect("the prober is running")
}

#[tokio::test]
async fn every_port_of_a_monitor_reports_in_one_batch() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = closed_port().await;
    let (tx, mut rx) = mpsc::channel(16);
    let prober = Prober::start(8, tx, CancellationToken::new());
    let before = now_ms();
    assert_eq!(prober.upsert(spec("web", &[open, closed], 200, 1000)), Upsert::Added);
    let after = now_ms();
    assert_eq!(prober.len(), 1);

    let batch = next_batch(&mut rx).await;
    let ports: Vec<u16> = batch.iter().map(|r| r.port).collect();
    assert_eq!(ports, vec![open, closed], "one batch, in the spec's port order");
    for r in &batch {
        assert_eq!((&r.key, r.host.as_str()), (&key("web"), "127.0.0.1"));
        assert!(r.due_ms >= before - 1 && r.due_ms <= after + 201, "due within the first interval: {r:?}");
        assert!(r.at_ms >= r.due_ms - 1, "a check never starts before it is due: {r:?}");
    }
    assert!(batch[0].outcome.ok, "{:?}", batch[0]);
    assert_eq!(batch[1].outcome.error.as_ref().map(|e| e.kind), Some(ErrorKind::Refused));
    prober.shutdown().await;
}

#[tokio::test]
async fn runs_repeat_on_the_interval_keeping_their_phase() {
    let closed = closed_port().await;
    let (tx, mut rx) = mpsc::channel(16);
    let prober = Prober::start(8, tx, CancellationToken::new());
    prober.upsert(spec("web", &[closed], 100, 50));
    let mut due = Vec::new();
    for _ in 0..5 {
        let batch = next_batch(&mut rx).await;
        assert!(batch[0].at_ms >= batch[0].due_ms - 1, "a check never starts before it is due: {batch:?}");
        due.push(batch[0].due_ms);
    }
    // Runs stay on the 100 ms grid of the first one (a run missed under load is skipped, so a
    // gap may be several intervals, never a fraction of one); ±1 ms of rounding to milliseconds.
    for pair in due.windows(2) {
        let gap = pair[1] - pair[0];
        let off_grid = (gap + 1) % 100;
        assert!(gap >= 99 && off_grid <= 2, "runs a whole number of 100 ms intervals apart: {due:?}");
    }
    prober.shutdown().await;
}

#[tokio::test]
async fn unchanged_upsert_keeps_the_schedule_and_a_new_interval_reschedules() {
    let (tx, _rx) = mpsc::channel(16);
    let prober = Prober::start(8, tx, CancellationToken::new());
    let hourly = spec("web", &[80], 3_600_000, 5000);
    prober.upsert(hourly.clone());
    let due = prober.next_due(&key("web")).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(prober.upsert(hourly.clone()), Upsert::Unchanged);
    assert_eq!(prober.next_due(&key("web")), Some(due), "an unchanged monitor keeps its timer");

    let mut other_port = hourly.clone();
    other_port.ports = vec![443];
    assert_eq!(prober.upsert(other_port), Upsert::Changed);
    assert_eq!(prober.next_due(&key("web")), Some(due), "only an interval change moves the timer");

    let before = Instant::now();
    assert_eq!(prober.upsert(spec("web", &[443], 10_000, 5000)), Upsert::Changed);
    let after = Instant::now();
    let moved = prober.next_due(&key("web")).unwrap();
    let expected_latest = due.min(after + Duration::from_secs(10));
    assert!(moved <= expected_latest && moved >= due.min(before + Duration::from_secs(10)), "{moved:?} vs {due:?}");
    assert_eq!(prober.next_due(&key("nope")), None);
    prober.shutdown().await;
}

#[tokio::test]
async fn a_shorter_interval_takes_effect_without_waiting_out_the_old_one() {
    let closed = closed_port().await;
    let (tx, mut rx) = mpsc::channel(16);
    let prober = Prober::start(8, tx, CancellationToken::new());
    // Jittered within an hour: practically never due during this test …
    prober.upsert(spec("web", &[closed], 3_600_000, 1000));
    // … until the interval becomes 200 ms.
    prober.upsert(spec("web", &[closed], 200, 100));
    let batch = next_batch(&mut rx).await;
    assert_eq!(batch[0].key, key("web"));
    prober.shutdown().await;
}

#[tokio::test]
async fn removed_monitor_stops_reporting() {
    let closed = closed_port().await;
    let (tx, mut rx) = mpsc::channel(64);
    let prober = Prober::start(8, tx, CancellationToken::new());
    prober.upsert(spec("keep", &[closed], 50, 40));
    prober.upsert(spec("drop", &[closed], 50, 40));
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        seen.insert(next_batch(&mut rx).await[0].key.name.clone());
    }
    let removed_ms = now_ms();
    assert!(prober.remove(&key("drop")));
    assert!(!prober.remove(&key("drop")));
    assert_eq!(prober.len(), 1);
    // A run of `drop` due before its removal may still be in the channel; none due after it may
    // arrive, while `keep` goes on: wait for five of its runs due after the removal.
    let mut kept = 0;
    while kept < 5 {
        let batch = next_batch(&mut rx).await;
        let r = &batch[0];
        if r.key == key("drop") {
            assert!(r.due_ms <= removed_ms, "a removed monitor reported a run due after its removal: {r:?}");
        } else if r.due_ms > removed_ms {
            kept += 1;
        }
    }
    prober.shutdown().await;
}

#[tokio::test]
async fn a_full_results_channel_delays_results_and_never_drops_them() {
    let closed = closed_port().await;
    let (tx, mut rx) = mpsc::channel(1);
    let prober = Prober::start(2, tx, CancellationToken::new());
    for name in ["a", "b", "c"] {
        prober.upsert(spec(name, &[closed], 50, 40));
    }
    let upserted_ms = now_ms();
    // Nobody reads for a while: the scheduler stalls on the channel instead of discarding.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut first_due = HashMap::new();
    let mut last_due: HashMap<String, i64> = HashMap::new();
    let stall_end = now_ms();
    let mut after_stall = 0;
    while first_due.len() < 3 || after_stall == 0 {
        let batch = next_batch(&mut rx).await;
        let r = &batch[0];
        first_due.entry(r.key.name.clone()).or_insert(r.due_ms);
        if let Some(previous) = last_due.insert(r.key.name.clone(), r.due_ms) {
            assert!(r.due_ms > previous, "runs of one monitor arrive in order");
        }
        if r.due_ms > stall_end {
            after_stall += 1;
        }
    }
    // The first run of each monitor (due within its first interval) was kept through the stall.
    assert_eq!(first_due.len(), 3, "{first_due:?}");
    for (name, due) in &first_due {
        assert!(*due <= upserted_ms + 51, "{name}: first result delivered is due at {due}, added by {upserted_ms}");
    }
    assert!(after_stall > 0, "checks resume once the channel drains");
    prober.shutdown().await;
}

#[tokio::test]
async fn shutdown_abandons_hung_checks_and_waits_for_every_task() {
    // A listener whose accept queue is full: connects to it hang until their timeout.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    while let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
        fillers.push(stream);
        assert!(fillers.len() < 64, "the accept queue never filled");
    }

    let (tx, mut rx) = mpsc::channel(16);
    let parent = CancellationToken::new();
    let prober = Prober::start(8, tx, parent.clone());
    prober.upsert(spec("hung", &[addr.port(), addr.port()], 100, 60_000));
    tokio::time::sleep(Duration::from_millis(300)).await; // the first run is in flight by now
    tokio::time::timeout(Duration::from_secs(5), prober.shutdown()).await.expect("shutdown does not wait out a 60 s check");
    // Every task that could send has finished: the channel is closed and empty.
    assert_eq!(rx.recv().await, None);
    assert!(!parent.is_cancelled(), "shutting the prober down leaves the caller's token alone");
    drop(fillers);
}

#[tokio::test]
async fn cancelling_the_callers_token_stops_the_prober() {
    let closed = closed_port().await;
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let prober = Prober::start(8, tx, cancel.clone());
    prober.upsert(spec("web", &[closed], 50, 40));
    next_batch(&mut rx).await;
    cancel.cancel();
    let closed = tokio::time::timeout(Duration::from_secs(5), async { while rx.recv().await.is_some() {} }).await;
    assert!(closed.is_ok(), "the prober kept running after its token was cancelled");
    prober.shutdown().await;
}
