//! Several serve replicas on one PostgreSQL database: each heartbeats its row, every replica's
//! status lists the live ones with the revision each runs, `/metrics` shows them, a replica
//! stopped with SIGTERM leaves at once and one killed with -9 expires after the lease TTL. A
//! replica behind the newest revision keeps its shards but takes none until it catches up, and
//! every status and `/metrics` show the skew.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use watchkeeper::lease::{SHARDS, preferred};

use crate::common::run;
use crate::store::TestDb;
use crate::support::serve::Serve;

/// Generous: the machine may be loaded.
const WAIT: Duration = Duration::from_secs(60);

fn write_tree(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("tree.yaml"),
        "kind: User\nemail: alice@example.com\nname: Alice\n---\n\
         kind: Project\nname: shop\nmembers: [{ user: alice@example.com, role: admin }]\nchannels: []\n",
    )
    .unwrap();
}

fn replica_args(tree: &Path, db: &str, id: &str) -> Vec<String> {
    ["--config", &tree.display().to_string(), "--db", db, "--replica-id", id, "--lease-ttl", "3s"].map(String::from).to_vec()
}

/// The live replicas a serve's status lists: (id, revision).
fn replicas(serve: &Serve) -> Vec<(String, Option<String>)> {
    let status = serve.get("/api/v1/status");
    let list = status["replicas"].as_array().unwrap_or_else(|| panic!("no replicas in {status}"));
    list.iter().map(|r| (r["id"].as_str().unwrap().to_string(), r["revision"].as_str().map(str::to_string))).collect()
}

fn ids(serve: &Serve) -> Vec<String> {
    replicas(serve).into_iter().map(|(id, _)| id).collect()
}

#[test]
fn replicas_on_one_postgresql_see_each_other_and_see_a_stopped_or_killed_one_leave() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = runtime.block_on(TestDb::postgres());
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    write_tree(&tree);

    let alpha = Serve::start(&replica_args(&tree, &db.url, "alpha"), &[], &work.path().join("alpha.log"));
    alpha.wait_until("alpha applies the tree", WAIT, || alpha.applied().is_some());
    let revision = alpha.applied();
    let mut beta = Serve::start(&replica_args(&tree, &db.url, "beta"), &[], &work.path().join("beta.log"));
    beta.wait_until("beta applies the tree", WAIT, || beta.applied().is_some());

    // Both list both, each with the revision it runs, whichever is asked.
    let both = vec![("alpha".to_string(), revision.clone()), ("beta".to_string(), revision.clone())];
    for serve in [&alpha, &beta] {
        serve.wait_until("both replicas are listed with their revision", WAIT, || replicas(serve) == both);
    }
    let status: Value = alpha.get("/api/v1/status");
    let first = &status["replicas"][0];
    assert!(first["started_ms"].as_i64().unwrap() <= first["heartbeat_ms"].as_i64().unwrap(), "{status}");
    assert!(first["started"].as_str().is_some_and(|s| s.starts_with("20")), "{status}");
    alpha.wait_until("/metrics shows both", WAIT, || alpha.metric("watchkeeper_replicas_live") == Some(2.0));
    let info = format!(r#"watchkeeper_replica_info{{replica="beta",revision="{}"}}"#, revision.clone().unwrap());
    alpha.wait_until("/metrics shows beta's revision", WAIT, || alpha.metric(&info) == Some(1.0));

    // SIGTERM: beta removes its row as it stops, not a lease TTL later.
    assert!(beta.terminate().success(), "{}", beta.log());
    let rows: Vec<String> = runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT id FROM replicas ORDER BY id").fetch_all(&mut conn).await.unwrap()
    });
    assert_eq!(rows, ["alpha"], "beta's row is gone once it has stopped");
    alpha.wait_until("beta has left", WAIT, || ids(&alpha) == ["alpha"]);
    alpha.wait_until("/metrics shows one", WAIT, || alpha.metric("watchkeeper_replicas_live") == Some(1.0));

    // kill -9: gamma cannot say it leaves; its row expires after the lease TTL.
    let mut gamma = Serve::start(&replica_args(&tree, &db.url, "gamma"), &[], &work.path().join("gamma.log"));
    alpha.wait_until("gamma joins", WAIT, || ids(&alpha) == ["alpha", "gamma"]);
    gamma.kill();
    let killed = Instant::now();
    alpha.wait_until("gamma's lease expires", WAIT, || ids(&alpha) == ["alpha"]);
    // A figure, not a bound: the TTL counts from gamma's last heartbeat, up to a third of it before the kill.
    println!("a replica killed with -9 left the live list after {:.1} s (lease TTL 3 s)", killed.elapsed().as_secs_f64());
    assert!(alpha.log().contains("replica alpha joins"), "{}", alpha.log());
}

#[test]
fn serve_refuses_a_lease_ttl_or_replica_id_it_cannot_use() {
    let tree = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--lease-ttl", "1s", "the lease TTL is from 3s to 1h"),
        ("--lease-ttl", "2h", "the lease TTL is from 3s to 1h"),
        ("--lease-ttl", "soon", "soon"),
        ("--replica-id", "", "a replica id is 1 to 128 characters"),
        ("--replica-id", "a\nb", "without control characters"),
    ] {
        let out = run(&["serve", "--config", tree.path().to_str().unwrap(), flag, value]);
        assert_eq!(out.code, Some(2), "{flag} {value:?}: {}", out.output());
        assert!(out.stderr.contains(says), "{flag} {value:?}: {}", out.output());
    }
}

/// The tree of [`write_tree`] with one more user: a newer revision.
fn write_newer_tree(dir: &Path) {
    write_tree(dir);
    fs::write(dir.join("bob.yaml"), "kind: User\nemail: bob@example.com\nname: Bob\n").unwrap();
}

/// The shards each replica holds a live lease on.
fn shards_of(runtime: &tokio::runtime::Runtime, url: &str) -> BTreeMap<String, BTreeSet<i32>> {
    let mut out: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for (shard, owner) in runtime.block_on(crate::divided::owners(url)) {
        out.entry(owner).or_default().insert(shard);
    }
    out
}

/// The shards rendezvous hashing gives each of `ids`.
fn ranked(ids: &[&str]) -> BTreeMap<String, BTreeSet<i32>> {
    let mut out: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for shard in 0..SHARDS {
        out.entry(preferred(shard, ids).unwrap().to_string()).or_default().insert(shard as i32);
    }
    out
}

/// What a serve's status says of the revisions: the newest, and the replicas behind it.
fn skew(serve: &Serve) -> (Option<String>, Vec<String>) {
    let status = serve.get("/api/v1/status");
    let behind =
        status["replicas"].as_array().unwrap().iter().filter(|r| r["behind"] == true).map(|r| r["id"].as_str().unwrap().to_string());
    (status["newest_revision"].as_str().map(str::to_string), behind.collect())
}

#[test]
fn a_replica_behind_the_newest_revision_keeps_its_shards_but_takes_none_until_it_catches_up() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = runtime.block_on(TestDb::postgres());
    let work = tempfile::tempdir().unwrap();
    // alpha and gamma follow one directory, beta another with the same tree.
    let (one, two) = (work.path().join("one"), work.path().join("two"));
    write_tree(&one);
    write_tree(&two);
    let alpha = Serve::start(&replica_args(&one, &db.url, "alpha"), &[], &work.path().join("alpha.log"));
    let beta = Serve::start(&replica_args(&two, &db.url, "beta"), &[], &work.path().join("beta.log"));
    let mut gamma = Serve::start(&replica_args(&one, &db.url, "gamma"), &[], &work.path().join("gamma.log"));
    for serve in [&alpha, &beta, &gamma] {
        serve.wait_until("the tree is applied", WAIT, || serve.applied().is_some());
    }
    let first = alpha.applied().unwrap();
    assert_eq!(beta.applied().as_deref(), Some(first.as_str()), "the same tree is the same revision");
    let three = ranked(&["alpha", "beta", "gamma"]);
    alpha.wait_until("the three hold their shards", WAIT, || shards_of(&runtime, &db.url) == three);

    // alpha and gamma get a newer tree; beta, behind, keeps its shards. Every status says so.
    write_newer_tree(&one);
    for serve in [&alpha, &gamma] {
        serve.wait_until("the newer tree is applied", WAIT, || serve.applied().is_some_and(|r| r != first));
    }
    let newest = alpha.applied().unwrap();
    for serve in [&alpha, &beta, &gamma] {
        serve.wait_until("the status shows beta behind", WAIT, || skew(serve) == (Some(newest.clone()), vec!["beta".to_string()]));
    }
    let behind = r#"watchkeeper_replica_behind{replica="beta"}"#;
    alpha.wait_until("/metrics shows beta behind", WAIT, || alpha.metric(behind) == Some(1.0));
    assert_eq!(alpha.metric(r#"watchkeeper_replica_behind{replica="alpha"}"#), Some(0.0));
    assert_eq!(beta.applied().as_deref(), Some(first.as_str()), "beta runs its own revision");
    assert_eq!(shards_of(&runtime, &db.url)["beta"], three["beta"], "beta holds its shards");

    // gamma stops: alpha takes all of gamma's shards, beta none.
    assert!(gamma.terminate().success(), "{}", gamma.log());
    let mut without_gamma = three.clone();
    let freed = without_gamma.remove("gamma").unwrap();
    without_gamma.get_mut("alpha").unwrap().extend(freed);
    alpha.wait_until("alpha takes gamma's shards", WAIT, || shards_of(&runtime, &db.url) == without_gamma);
    std::thread::sleep(Duration::from_secs(3)); // three rounds of the lease keepers
    assert_eq!(shards_of(&runtime, &db.url), without_gamma, "beta, behind, took none of gamma's shards");
    assert!(beta.log().contains("takes no new ones"), "{}", beta.log());

    // beta gets the newer tree: it catches up and takes its share from alpha.
    write_newer_tree(&two);
    beta.wait_until("beta applies the newer tree", WAIT, || beta.applied().as_deref() == Some(newest.as_str()));
    let two_ranked = ranked(&["alpha", "beta"]);
    alpha.wait_until("beta takes its share", WAIT, || shards_of(&runtime, &db.url) == two_ranked);
    assert!(two_ranked["beta"].len() > three["beta"].len());
    for serve in [&alpha, &beta] {
        serve.wait_until("nobody is behind", WAIT, || skew(serve) == (Some(newest.clone()), vec![]));
    }
    alpha.wait_until("/metrics shows beta caught up", WAIT, || alpha.metric(behind) == Some(0.0));

    // A revision beta rejects shows in alpha's status too, as the newest news.
    fs::write(
        two.join("broken.yaml"),
        "kind: Server
name: web-01
project: nowhere
host: 127.0.0.1
",
    )
    .unwrap();
    beta.wait_until("beta rejects it", WAIT, || beta.get("/api/v1/status")["reconcile"] == "rejected");
    let rejected = beta.get("/api/v1/status")["rejected"]["revision"].clone();
    let status = alpha.get("/api/v1/status");
    assert_eq!((&status["reconcile"], &status["rejected"]["revision"]), (&Value::from("rejected"), &rejected), "{status}");
    assert_eq!(status["applied"]["revision"], newest.as_str(), "alpha runs on: {status}");
}
