//! One replica of three cut from PostgreSQL for 20 s while the others keep theirs: it reaches
//! the database through a TCP relay the test cuts (connections closed, new ones refused). The
//! port it monitors goes down during the cut and comes back before the cut ends. The cut
//! replica stops probing once its leases lapse, another takes its shards over after the lease
//! TTL and sends the one "fired" and the one "resolved" mail; nothing the cut replica did under
//! its lost leases reaches the database when it comes back; it rejoins and takes back exactly
//! its own shards.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use watchkeeper::lease::{SHARDS, preferred, shard_of};

use crate::divided::{WAIT, checks, owners, replica, subjects, wait_for_owners, with_mail};
use crate::pg_outage::write_tree;
use crate::support::free_port;
use crate::support::relay::Relay;
use crate::support::serve::{Listener, OPERATOR, Serve};

/// How long the replica is cut off.
const CUT: Duration = Duration::from_secs(20);

/// Failed checks of `web` this replica made so far.
fn failed(serve: &Serve) -> f64 {
    let prefix = r#"watchkeeper_probes_total{project="shop",monitor="web",result=""#;
    let metrics = serve.metrics_text();
    let results = metrics.lines().filter_map(|l| l.strip_prefix(prefix)?.split_once("\"} "));
    results.filter(|(result, _)| *result != "ok").map(|(_, n)| n.trim().parse::<f64>().unwrap()).sum()
}

/// When the leases `owner` holds expire, in epoch milliseconds on the database's clock.
async fn expiry_ms(url: &str, owner: &str) -> Option<i64> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let sql = "SELECT (extract(epoch FROM max(expires_at)) * 1000)::bigint FROM shard_leases WHERE owner = $1";
    sqlx::query_scalar(sql).bind(owner).fetch_one(&mut conn).await.unwrap()
}

/// When the first failed check of `web` stored happened.
async fn first_failure_ms(url: &str) -> Option<i64> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let sql =
        "SELECT min(e.at_ms) FROM probe_events e JOIN probe_targets t ON t.id = e.target WHERE t.monitor = 'web' AND e.reason IS NOT NULL";
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

#[test]
fn a_replica_cut_from_postgresql_stops_acting_and_its_stale_work_never_reaches_the_database() {
    let (runtime, db, smtp, work) = with_mail();
    let work = work.path();
    let web = Listener::open(free_port());
    let port = web.port;
    let tree = work.join("tree");
    // Fires on the first failed check: any stale failure decided again would fire a second time.
    write_tree(&tree, smtp.port, port, 1);

    let three = ["alpha", "beta", "gamma"];
    let web_shard = shard_of("shop", "web");
    let cut = preferred(web_shard, &three).unwrap();
    let others: Vec<&str> = three.iter().copied().filter(|id| *id != cut).collect();
    let heir = preferred(web_shard, &others).unwrap();
    let shards_of = |id: &str, among: &[&str]| -> BTreeSet<usize> { (0..SHARDS).filter(|s| preferred(*s, among) == Some(id)).collect() };

    // The replica holding `web` reaches PostgreSQL through the relay; the others directly.
    let (head, rest) = db.url.rsplit_once(':').unwrap();
    let (db_port, name) = rest.split_once('/').unwrap();
    let mut relay = Relay::start(runtime.handle(), free_port(), db_port.parse().unwrap());
    let relayed = format!("{head}:{}/{name}", relay.port);
    let replicas: Vec<(&str, Serve)> =
        three.iter().map(|id| (*id, replica(&tree, if *id == cut { &relayed } else { &db.url }, id, work))).collect();
    let by_id = |id: &str| &replicas.iter().find(|(r, _)| *r == id).unwrap().1;
    let all: Vec<&Serve> = replicas.iter().map(|(_, s)| s).collect();
    for serve in &all {
        serve.wait_until("the tree is applied", WAIT, || serve.applied().is_some());
    }
    wait_for_owners(&runtime, &db.url, &three, &all);
    let (cut_serve, heir_serve) = (by_id(cut), by_id(heir));
    let web_checks = |serve: &Serve| checks(serve).get("web").copied().unwrap_or(0.0);
    cut_serve.wait_until("the cut replica checks web", WAIT, || web_checks(cut_serve) >= 2.0);

    // The cut, and the port going down right after it.
    let cut_at = Instant::now();
    relay.cut();
    let web_port = web.close();
    std::thread::sleep(Duration::from_millis(300)); // a renewal in flight at the cut has landed
    let expires_ms = runtime.block_on(expiry_ms(&db.url, cut)).expect("the cut replica held leases");

    // Its shards are taken over once its leases expired; the heir fires, one mail.
    wait_for_owners(&runtime, &db.url, &others, &[by_id(others[0]), by_id(others[1])]);
    let took = cut_at.elapsed();
    smtp.wait_for(1, WAIT);
    assert!(subjects(&smtp)[0].contains("Alert fired"), "{:?}", subjects(&smtp));

    // Meanwhile the cut replica probed web until its leases lapsed, then stopped probing.
    std::thread::sleep(Duration::from_secs(1));
    let failed_by_cut = failed(cut_serve);
    assert!(failed_by_cut >= 1.0, "the cut replica checked the closed port before its leases lapsed\n{}", cut_serve.log());
    // Its status API cannot read the database: a load balancer's health check takes it out.
    let auth = format!("Bearer {OPERATOR}");
    let (status, body) = cut_serve.request("GET", "/api/v1/status", &[("Authorization", &auth)], b"");
    assert_eq!(status, 500, "{body}");

    // The port comes back before the cut ends: the heir resolves, one mail.
    std::thread::sleep((cut_at + CUT / 2).saturating_duration_since(Instant::now()));
    let _web = Listener::open(web_port);
    smtp.wait_for(2, WAIT);
    heir_serve.wait_until("the heir resolves", WAIT, || heir_serve.firing().is_empty());
    std::thread::sleep((cut_at + CUT).saturating_duration_since(Instant::now()));
    let idle_checks = failed(cut_serve);
    assert_eq!(idle_checks, failed_by_cut, "the cut replica probed after its leases lapsed\n{}", cut_serve.log());
    let log = cut_serve.log();
    assert!(log.contains("cannot renew this replica's shard leases"), "{log}");

    // The cut ends: the replica rejoins and takes back exactly the shards it ranks highest for.
    let held_before = runtime.block_on(owners(&db.url));
    relay.restore();
    let rejoined = wait_for_owners(&runtime, &db.url, &three, &all);
    let held_after = runtime.block_on(owners(&db.url));
    let moved = held_before.iter().filter(|(s, o)| held_after.get(s) != Some(o)).count();
    assert_eq!(moved, shards_of(cut, &three).len(), "only the cut replica's shards move back");
    let before = web_checks(cut_serve);
    cut_serve.wait_until("the cut replica checks web again", WAIT, || web_checks(cut_serve) >= before + 3.0);
    std::thread::sleep(Duration::from_secs(3));

    // Exactly one fired and one resolved mail, one alert in the history.
    let sent = subjects(&smtp);
    assert_eq!(sent.len(), 2, "exactly one fired and one resolved mail: {sent:?}\n{}", cut_serve.log());
    assert!(sent[0].contains("Alert fired") && sent[1].contains("Resolved"), "{sent:?}");
    let alerts = cut_serve.get("/api/v1/projects/shop/alerts")["alerts"].as_array().cloned().unwrap();
    assert_eq!(alerts.len(), 1, "one alert, fired once and resolved once: {alerts:#?}");
    assert_eq!(alerts[0]["status"], "resolved", "{alerts:#?}");

    // The fence: nothing of what the cut replica checked or decided under its lost leases was
    // written when it came back — every failure stored, and the alert, are the heir's, made
    // after the cut replica's leases expired.
    let first_failure = runtime.block_on(first_failure_ms(&db.url)).expect("the heir's failures are stored");
    assert!(
        first_failure >= expires_ms,
        "a failed check from {} ms before the cut replica's leases expired was stored\n{}",
        expires_ms - first_failure,
        cut_serve.log()
    );
    assert!(alerts[0]["started_at_ms"].as_i64().unwrap() >= expires_ms, "{alerts:#?}");
    // What the cut replica checked under its lost leases was dropped, and said so.
    let superseded = cut_serve.metric("watchkeeper_probe_results_superseded_total").unwrap_or(0.0);
    assert!(superseded >= failed_by_cut, "its checks from the cut were dropped: {superseded}\n{}", cut_serve.log());
    println!(
        "cut from PostgreSQL: {cut}'s {} shards held by the others {:.2} s after the cut (lease TTL 3 s); \
         it made {failed_by_cut} failed checks of web before its leases lapsed and none after; \
         {superseded} checks it made under its lost leases dropped when it came back; \
         it held its {moved} shards again {:.2} s after the cut ended; {} mails: {sent:?}",
        shards_of(cut, &three).len(),
        took.as_secs_f64(),
        rejoined.as_secs_f64(),
        sent.len(),
    );
}
