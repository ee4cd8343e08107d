//! Three serve replicas on one PostgreSQL divide 300 port monitors (1 s interval, each on a
//! listener of its own) by shard leases: every monitor is checked by exactly one replica; a
//! replica stopped with SIGTERM hands its shards over at once, one killed with -9 after the
//! lease TTL; a replica that comes back takes its shards again, and only those move. The
//! take-over times, the longest gap between two checks of a monitor and the checks closer than
//! half an interval (duplicates) are printed. And a replica killed while a port is down leaves
//! exactly one fired and one resolved mail at a real SMTP server; an agent's report to one
//! replica is decided by the shard's holder and shown by every replica's server list, server
//! detail and dashboard.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use watchkeeper::lease::{SHARDS, preferred, shard_of};

use crate::pg_outage;
use crate::store::TestDb;
use crate::storm::{web01_disks, write_disks_tree};
use crate::support::agent::KEY;
use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::serve::{Listener, OPERATOR, Serve};
use crate::support::smtp::SmtpServer;

const MONITORS: usize = 300;
/// Generous: the machine may be loaded.
pub(crate) const WAIT: Duration = Duration::from_secs(90);

/// Every accepted connection of every monitor's port, by monitor index.
type Accepts = Arc<Mutex<Vec<Vec<Instant>>>>;

fn monitor(i: usize) -> String {
    format!("m{i:03}")
}

fn write_tree(dir: &Path, ports: &[u16]) {
    fs::create_dir_all(dir).unwrap();
    let mut yaml = String::from(
        "kind: User\nemail: alice@example.com\nname: Alice\n---\n\
         kind: Project\nname: shop\nmembers: [{ user: alice@example.com, role: admin }]\nchannels: []\n",
    );
    for (i, port) in ports.iter().enumerate() {
        yaml.push_str(&format!(
            "---\nkind: PortMonitor\nname: {}\nproject: shop\nhost: 127.0.0.1\nports: [{port}]\ninterval: 1s\ntimeout: 500ms\n",
            monitor(i)
        ));
    }
    fs::write(dir.join("tree.yaml"), yaml).unwrap();
}

pub(crate) fn replica(tree: &Path, db: &str, id: &str, work: &Path) -> Serve {
    let args: Vec<String> =
        ["--config", &tree.display().to_string(), "--db", db, "--replica-id", id, "--lease-ttl", "3s"].map(String::from).to_vec();
    Serve::start(&args, &[], &work.join(format!("{id}.log")))
}

/// Checks of each monitor this replica counted so far (`watchkeeper_probes_total`, any result).
pub(crate) fn checks(serve: &Serve) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in serve.metrics_text().lines().filter(|l| l.starts_with("watchkeeper_probes_total{")) {
        let Some(rest) = line.split("monitor=\"").nth(1) else { continue };
        let name = rest.split('"').next().unwrap().to_string();
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry(name).or_default() += value;
    }
    out
}

/// The live leases: shard → owner.
pub(crate) async fn owners(url: &str) -> BTreeMap<i32, String> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let rows: Vec<(i32, String)> =
        sqlx::query_as("SELECT shard, owner FROM shard_leases WHERE owner IS NOT NULL AND expires_at > clock_timestamp() ORDER BY shard")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    rows.into_iter().collect()
}

/// Wait until every shard has a live lease and the owners are exactly `ids`, each holding the
/// shards rendezvous hashing gives it among them; returns how long that took.
pub(crate) fn wait_for_owners(runtime: &tokio::runtime::Runtime, url: &str, ids: &[&str], logs: &[&Serve]) -> Duration {
    let start = Instant::now();
    loop {
        let now = runtime.block_on(owners(url));
        let settled = now.len() == SHARDS && now.iter().all(|(s, o)| preferred(*s as usize, ids) == Some(o.as_str()));
        if settled {
            return start.elapsed();
        }
        if start.elapsed() > WAIT {
            let logs: Vec<String> = logs.iter().map(|s| s.log()).collect();
            panic!("the leases did not settle on {ids:?}: {now:?}\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Which replicas counted checks of each monitor between two readings.
fn checkers(before: &[BTreeMap<String, f64>], after: &[BTreeMap<String, f64>], ids: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = (0..MONITORS).map(|i| (monitor(i), BTreeSet::new())).collect();
    for ((b, a), id) in before.iter().zip(after).zip(ids) {
        for (name, n) in a {
            if *n > b.get(name).copied().unwrap_or(0.0) {
                out.entry(name.clone()).or_default().insert(id.to_string());
            }
        }
    }
    out
}

/// Gaps and duplicates in the checks of the monitors `which` within [from, to]: the longest
/// time between two checks of one monitor (counting from `from`), and how many checks came less
/// than half an interval after the one before.
fn gaps(accepts: &Accepts, which: &[usize], from: Instant, to: Instant) -> (Duration, usize) {
    let all = accepts.lock().unwrap();
    let (mut longest, mut duplicates) = (Duration::ZERO, 0);
    for &i in which {
        let mut last = from;
        for &at in all[i].iter().filter(|at| **at >= from && **at <= to) {
            let gap = at - last;
            if last != from && gap < Duration::from_millis(500) {
                duplicates += 1;
            }
            longest = longest.max(gap);
            last = at;
        }
        longest = longest.max(to - last);
    }
    (longest, duplicates)
}

#[test]
fn three_replicas_divide_the_monitors_and_take_over_from_a_stopped_or_killed_one() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let db = runtime.block_on(TestDb::postgres());
    let work = tempfile::tempdir().unwrap();
    let work = work.path();

    // One listener per monitor, noting when each check connects.
    let accepts: Accepts = Arc::new(Mutex::new(vec![Vec::new(); MONITORS]));
    let mut ports = Vec::new();
    for i in 0..MONITORS {
        let port = free_port();
        let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))).unwrap();
        let accepts = Arc::clone(&accepts);
        runtime.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                accepts.lock().unwrap()[i].push(Instant::now());
                drop(conn);
            }
        });
        ports.push(port);
    }
    let tree = work.join("tree");
    write_tree(&tree, &ports);

    let alpha = replica(&tree, &db.url, "alpha", work);
    let mut beta = replica(&tree, &db.url, "beta", work);
    let mut gamma = replica(&tree, &db.url, "gamma", work);
    for serve in [&alpha, &beta, &gamma] {
        serve.wait_until("the tree is applied", WAIT, || serve.applied().is_some());
    }
    let three = ["alpha", "beta", "gamma"];
    wait_for_owners(&runtime, &db.url, &three, &[&alpha, &beta, &gamma]);
    let shards_of = |id: &str, among: &[&str]| -> BTreeSet<usize> { (0..SHARDS).filter(|s| preferred(*s, among) == Some(id)).collect() };
    let monitors_of = |id: &str, among: &[&str]| -> Vec<usize> {
        let shards = shards_of(id, among);
        (0..MONITORS).filter(|i| shards.contains(&shard_of("shop", &monitor(*i)))).collect()
    };
    // Each replica says what it holds, in the status API and in /metrics.
    for (serve, id) in [(&alpha, "alpha"), (&beta, "beta"), (&gamma, "gamma")] {
        let expected = shards_of(id, &three).len();
        serve.wait_until("the status lists every replica's shards", WAIT, || {
            let status = serve.get("/api/v1/status");
            status["replicas"].as_array().is_some_and(|list| {
                list.len() == 3
                    && list.iter().all(|r| r["shards"].as_u64() == Some(shards_of(r["id"].as_str().unwrap(), &three).len() as u64))
            })
        });
        let sample = format!(r#"watchkeeper_replica_shards{{replica="{id}"}}"#);
        serve.wait_until("/metrics shows the replica's shards", WAIT, || serve.metric(&sample) == Some(expected as f64));
    }

    // Settled: over 5 s every monitor is checked, each by exactly one replica.
    let before = [checks(&alpha), checks(&beta), checks(&gamma)];
    let from = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let to = Instant::now();
    let after = [checks(&alpha), checks(&beta), checks(&gamma)];
    let by = checkers(&before, &after, &three);
    let wrong: Vec<_> = by.iter().filter(|(_, who)| who.len() != 1).collect();
    assert!(wrong.is_empty(), "monitors not checked by exactly one replica: {wrong:?}");
    for (name, who) in &by {
        let i: usize = name[1..].parse().unwrap();
        let owner = preferred(shard_of("shop", name), &three).unwrap();
        assert!(who.contains(owner), "{name} (port {}) is checked by {who:?}, its shard belongs to {owner}", ports[i]);
    }
    let (longest, duplicates) = gaps(&accepts, &(0..MONITORS).collect::<Vec<_>>(), from + Duration::from_secs(1), to);
    println!(
        "settled: {MONITORS} monitors on 3 replicas, each checked by exactly one; longest gap {:.2} s, {duplicates} duplicate checks",
        longest.as_secs_f64()
    );

    // SIGTERM beta: its leases are released as it stops, and alpha and gamma take them at once.
    let betas = monitors_of("beta", &three);
    let stopping = Instant::now();
    assert!(beta.terminate().success(), "{}", beta.log());
    let stopped = Instant::now();
    let still_beta: Vec<i32> = runtime.block_on(owners(&db.url)).into_iter().filter(|(_, o)| o == "beta").map(|(s, _)| s).collect();
    assert!(still_beta.is_empty(), "beta released its leases as it stopped, yet holds {still_beta:?}");
    let took = wait_for_owners(&runtime, &db.url, &["alpha", "gamma"], &[&alpha, &gamma]);
    std::thread::sleep(Duration::from_secs(3));
    let (longest, duplicates) = gaps(&accepts, &betas, stopping - Duration::from_secs(2), Instant::now());
    println!(
        "SIGTERM: beta stopped in {:.2} s; its {} shards were held by alpha and gamma {:.2} s after it exited; \
         its {} monitors' longest gap between checks {:.2} s, {duplicates} duplicate checks",
        (stopped - stopping).as_secs_f64(),
        shards_of("beta", &three).len(),
        took.as_secs_f64(),
        betas.len(),
        longest.as_secs_f64()
    );
    let two = ["alpha", "gamma"];
    let before = [checks(&alpha), checks(&gamma)];
    std::thread::sleep(Duration::from_secs(3));
    let by = checkers(&before, &[checks(&alpha), checks(&gamma)], &two);
    let wrong: Vec<_> = by.iter().filter(|(_, who)| who.len() != 1).collect();
    assert!(wrong.is_empty(), "after beta stopped, monitors not checked by exactly one replica: {wrong:?}");

    // kill -9 gamma: it cannot release; alpha takes its shards once the leases expire.
    let gammas = monitors_of("gamma", &two);
    gamma.kill();
    let killed = Instant::now();
    let took = wait_for_owners(&runtime, &db.url, &["alpha"], &[&alpha]);
    std::thread::sleep(Duration::from_secs(3));
    let (longest, duplicates) = gaps(&accepts, &gammas, killed - Duration::from_secs(2), Instant::now());
    println!(
        "kill -9: gamma's {} shards were held by alpha {:.2} s after the kill (lease TTL 3 s); \
         its {} monitors' longest gap between checks {:.2} s, {duplicates} duplicate checks",
        shards_of("gamma", &two).len(),
        took.as_secs_f64(),
        gammas.len(),
        longest.as_secs_f64()
    );
    let before = checks(&alpha);
    std::thread::sleep(Duration::from_secs(2));
    let after = checks(&alpha);
    let idle: Vec<String> = (0..MONITORS).map(monitor).filter(|m| after.get(m) <= before.get(m)).collect();
    assert!(idle.is_empty(), "alpha alone does not check {idle:?}");

    // beta comes back: it takes back the shards it ranks highest for, and only those move.
    let held_before = runtime.block_on(owners(&db.url));
    let beta = replica(&tree, &db.url, "beta", work);
    beta.wait_until("beta applies the tree", WAIT, || beta.applied().is_some());
    let took = wait_for_owners(&runtime, &db.url, &["alpha", "beta"], &[&alpha, &beta]);
    let held_after = runtime.block_on(owners(&db.url));
    let moved = held_before.iter().filter(|(s, o)| held_after.get(s) != Some(o)).count();
    assert_eq!(moved, shards_of("beta", &["alpha", "beta"]).len(), "only beta's shards move back");
    println!("rejoin: beta took back {moved} of {SHARDS} shards within {:.2} s of applying the tree", took.as_secs_f64());
    let before = [checks(&alpha), checks(&beta)];
    std::thread::sleep(Duration::from_secs(3));
    let by = checkers(&before, &[checks(&alpha), checks(&beta)], &["alpha", "beta"]);
    let wrong: Vec<_> = by.iter().filter(|(_, who)| who.len() != 1).collect();
    assert!(wrong.is_empty(), "after beta came back, monitors not checked by exactly one replica: {wrong:?}");
    assert!(alpha.log().contains("took over shards"), "{}", alpha.log());
}

/// What a test with mail needs: a runtime, a PostgreSQL database, aiosmtpd, a work directory.
pub(crate) fn with_mail() -> (tokio::runtime::Runtime, TestDb, SmtpServer, tempfile::TempDir) {
    crate::support::install_crypto();
    // One worker: tasks a test spawns (a relay) run while the test's thread waits.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let db = runtime.block_on(TestDb::postgres());
    (runtime, db, SmtpServer::start(), tempfile::tempdir().unwrap())
}

/// The subjects of the mails aiosmtpd received, in order.
pub(crate) fn subjects(smtp: &SmtpServer) -> Vec<String> {
    smtp.messages().into_iter().map(|m| m.subject).collect()
}

#[test]
fn a_replica_killed_while_a_port_is_down_leaves_exactly_one_down_and_one_recovered_mail() {
    let (runtime, db, smtp, work) = with_mail();
    let work = work.path();
    let web = Listener::open(free_port());
    let port = web.port;
    let tree = work.join("tree");
    pg_outage::write_tree(&tree, smtp.port, port, 3);
    let three = ["alpha", "beta", "gamma"];
    let mut replicas: BTreeMap<&str, Serve> = three.iter().map(|id| (*id, replica(&tree, &db.url, id, work))).collect();
    for serve in replicas.values() {
        serve.wait_until("the tree is applied", WAIT, || serve.applied().is_some());
    }
    let all: Vec<&Serve> = replicas.values().collect();
    wait_for_owners(&runtime, &db.url, &three, &all);
    let owner = preferred(shard_of("shop", "web"), &three).unwrap();
    let others: Vec<&str> = three.iter().copied().filter(|id| *id != owner).collect();
    let checked = |serve: &Serve| checks(serve).get("web").copied().unwrap_or(0.0);
    replicas[owner].wait_until("the owner checks web", WAIT, || checked(&replicas[owner]) >= 2.0);

    // The port goes down: the owner fires, one mail.
    let web_closed = web.close();
    smtp.wait_for(1, WAIT);
    assert!(subjects(&smtp)[0].contains("Alert fired"), "{:?}", subjects(&smtp));

    // kill -9 the owner while the port is still down; another replica takes the shard over once
    // the lease expires, loads the firing alert, and goes on checking without firing again.
    let heir = preferred(shard_of("shop", "web"), &others).unwrap();
    let mut killed = replicas.remove(owner).unwrap();
    let before = checked(&replicas[heir]);
    killed.kill();
    let killed_at = Instant::now();
    replicas[heir].wait_until("the heir checks web", WAIT, || checked(&replicas[heir]) > before);
    println!("kill -9 of web's replica: {heir} checks web again {:.2} s after the kill (lease TTL 3 s)", killed_at.elapsed().as_secs_f64());
    let remaining: Vec<&Serve> = others.iter().map(|id| &replicas[id]).collect();
    wait_for_owners(&runtime, &db.url, &others, &remaining);
    replicas[heir].wait_until("the heir checks web on", WAIT, || checked(&replicas[heir]) >= before + 5.0);
    assert_eq!(subjects(&smtp).len(), 1, "no second fired mail: {:?}", subjects(&smtp));
    assert_eq!(replicas[heir].firing().len(), 1, "the alert still fires, as the killed replica left it");

    // The port comes back: the heir resolves it, one mail.
    let _web = Listener::open(web_closed);
    smtp.wait_for(2, WAIT);
    replicas[heir].wait_until("the alert resolves", WAIT, || replicas[heir].firing().is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let sent = subjects(&smtp);
    let fired = sent.iter().filter(|s| s.contains("Alert fired")).count();
    let resolved = sent.iter().filter(|s| s.contains("Resolved")).count();
    println!(
        "exactly-once across a kill -9: {fired} fired and {resolved} resolved mails at aiosmtpd: {} duplicates, {} missing",
        fired.saturating_sub(1) + resolved.saturating_sub(1),
        usize::from(fired == 0) + usize::from(resolved == 0)
    );
    assert_eq!(sent.len(), 2, "exactly one fired and one resolved mail: {sent:?}");
    assert!(sent[0].contains("Alert fired") && sent[1].contains("Resolved"), "{sent:?}");
    let alerts = replicas[heir].get("/api/v1/projects/shop/alerts")["alerts"].as_array().cloned().unwrap();
    assert_eq!(alerts.len(), 1, "one alert, fired once and resolved once: {alerts:#?}");
    assert!(replicas[heir].log().contains("took over shards"), "{}", replicas[heir].log());
}

#[test]
fn an_agents_report_to_one_replica_is_decided_by_the_replica_holding_its_server() {
    let (runtime, db, smtp, work) = with_mail();
    let work = work.path();
    let tree = work.join("tree");
    fs::create_dir_all(&tree).unwrap();
    write_disks_tree(&tree, smtp.port);
    let two = ["alpha", "beta"];
    let replicas: BTreeMap<&str, Serve> = two.iter().map(|id| (*id, replica(&tree, &db.url, id, work))).collect();
    for serve in replicas.values() {
        serve.wait_until("the tree is applied", WAIT, || serve.applied().is_some());
    }
    wait_for_owners(&runtime, &db.url, &two, &replicas.values().collect::<Vec<_>>());
    let holder = preferred(shard_of("shop", "web-01"), &two).unwrap();
    let receiver = two.iter().copied().find(|id| *id != holder).unwrap();

    // The agent reports to the replica that does not hold web-01; the holder decides.
    let (status, text) = replicas[receiver].ingest(KEY, &web01_disks(1, 95.0));
    assert_eq!(status, 200, "{text}");
    let sent = Instant::now();
    replicas[holder].wait_until("the holder fires", WAIT, || replicas[holder].firing().len() == 1);
    println!("a report to {receiver} fired web-01's alert on {holder} {:.2} s after it was accepted", sent.elapsed().as_secs_f64());
    smtp.wait_for(1, WAIT);
    let (status, text) = replicas[receiver].ingest(KEY, &web01_disks(1, 50.0));
    assert_eq!(status, 200, "{text}");
    replicas[holder].wait_until("the holder resolves", WAIT, || replicas[holder].firing().is_empty());
    smtp.wait_for(2, WAIT);
    std::thread::sleep(Duration::from_secs(2));
    let sent = subjects(&smtp);
    assert_eq!(sent.len(), 2, "one fired and one resolved mail: {sent:?}");
    assert!(sent[0].contains("Alert fired") && sent[1].contains("Resolved"), "{sent:?}");
}

/// A report of web-01 with these CPU and disk figures, sampled now.
fn web01_report(cpu: f64, disk: f64) -> serde_json::Value {
    let mut body = web01_disks(1, disk);
    let metrics = body["reports"][0]["metrics"].as_array_mut().unwrap();
    metrics.push(serde_json::json!({ "name": "cpu.usage", "value": cpu }));
    body
}

/// web-01's CPU % and disk % of /mnt/d000 as a replica's server list shows them, then as its
/// server detail does.
fn web01_seen(serve: &Serve) -> [Option<f64>; 4] {
    let list = serve.get("/api/v1/projects/shop/servers");
    let row = list["servers"].as_array().and_then(|s| s.iter().find(|s| s["name"] == "web-01")).cloned().unwrap_or_default();
    let detail = serve.get("/api/v1/projects/shop/servers/web-01");
    let latest = &detail["latest"];
    [
        row["cpu_percent"].as_f64(),
        row["disk_percent"]["max"].as_f64(),
        latest["host"]["cpu.usage"].as_f64(),
        latest["mounts"]["/mnt/d000"]["disk.usage"].as_f64(),
    ]
}

/// What [`web01_seen`] gives once a report with these figures is shown.
fn shows(cpu: f64, disk: f64) -> [Option<f64>; 4] {
    [Some(cpu), Some(disk), Some(cpu), Some(disk)]
}

#[test]
fn every_replica_shows_an_agents_report_whichever_replica_received_it() {
    crate::support::install_crypto();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = runtime.block_on(TestDb::postgres());
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let tree = work.join("tree");
    fs::create_dir_all(&tree).unwrap();
    // No alert fires below 90 % disk: the SMTP port is never used.
    write_disks_tree(&tree, free_port());
    let two = ["alpha", "beta"];
    let replicas: BTreeMap<&str, Serve> = two.iter().map(|id| (*id, replica(&tree, &db.url, id, work))).collect();
    for serve in replicas.values() {
        serve.wait_until("the tree is applied", WAIT, || serve.applied().is_some());
    }
    let alpha = &replicas["alpha"];
    assert_eq!(web01_seen(&replicas["beta"]), [None; 4], "no report yet");

    // The agent reports to alpha: beta's list and detail show it too, the same figures; the
    // next report goes to beta, and alpha follows.
    for (to, other, cpu, disk) in [("alpha", "beta", 37.0, 61.0), ("beta", "alpha", 12.0, 64.0)] {
        let (status, text) = replicas[to].ingest(KEY, &web01_report(cpu, disk));
        assert_eq!(status, 200, "{text}");
        let sent = Instant::now();
        replicas[other].wait_until("the other replica shows the report", WAIT, || web01_seen(&replicas[other]) == shows(cpu, disk));
        println!("a report to {to} showed in {other}'s server list {:.2} s after it was accepted", sent.elapsed().as_secs_f64());
        assert_eq!(web01_seen(&replicas[to]), shows(cpu, disk));
    }

    // The dashboard's server list of alpha, which did not receive it, shows beta's report.
    runtime.block_on(async {
        let browser = Browser::start(1280, 700).await;
        let base = format!("http://127.0.0.1:{}", alpha.port);
        browser.sign_in(&base, OPERATOR).await;
        browser.client.goto(&format!("{base}/p/shop/servers")).await.unwrap();
        let row = browser.text("tr[data-server='web-01']").await;
        assert!(row.contains("12") && row.contains("64"), "alpha's server list shows beta's report: {row}");
        browser.screenshot("replicas-server-list").await;
        browser.close().await;
    });
}
