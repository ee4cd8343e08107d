//! Shard leases on a real PostgreSQL: claim, renewal, expiry on the database's clock, a steal
//! after expiry (the epoch moves on), release — and the fence: a write of alert state and its
//! notification, made under a lease that was lost, is refused by the database and leaves
//! nothing behind; the same for a write of probe results.

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use watchkeeper::alert::{AlertChange, AlertState, Phase, Severity};
use watchkeeper::lease::Fence;
use watchkeeper::store::{ShardLease, Store, StoreError};

use crate::store::{TestDb, email, key, probe};

const T0: i64 = 1_772_323_200_000;

async fn count(url: &str, table: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&mut conn).await.unwrap()
}

fn lease(store_leases: &[ShardLease], shard: i32) -> ShardLease {
    store_leases.iter().find(|l| l.shard == shard).cloned().unwrap()
}

#[tokio::test]
async fn leases_are_claimed_renewed_expire_are_stolen_and_released() {
    let db = TestDb::postgres().await;
    let store: Store = db.connect().await;
    store.ensure_shard_leases(64).await.unwrap();
    store.ensure_shard_leases(64).await.unwrap(); // a second start adds nothing
    let all = store.shard_leases().await.unwrap();
    assert_eq!(all.len(), 64);
    assert!(all.iter().all(|l| l.owner.is_none() && l.epoch == 0 && !l.live), "{all:?}");

    // a claims shard 5; b cannot while a's lease lives.
    let e1 = store.claim_shard(5, "a", 60_000).await.unwrap().expect("a free shard is claimed");
    assert_eq!(e1, 1);
    assert_eq!(store.claim_shard(5, "b", 60_000).await.unwrap(), None, "a live lease is not taken");
    assert_eq!(lease(&store.shard_leases().await.unwrap(), 5), ShardLease { shard: 5, owner: Some("a".into()), epoch: 1, live: true });
    // Renewal: only the owner, only at its epoch.
    assert_eq!(store.renew_shards("a", &[(5, 1)], 60_000).await.unwrap(), [(5, 1)]);
    assert_eq!(store.renew_shards("b", &[(5, 1)], 60_000).await.unwrap(), []);
    assert_eq!(store.renew_shards("a", &[(5, 0)], 60_000).await.unwrap(), []);

    // A short lease expires on the database's clock; then b steals it, with a new epoch.
    let e = store.claim_shard(9, "a", 200).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!lease(&store.shard_leases().await.unwrap(), 9).live, "expired");
    assert_eq!(store.renew_shards("a", &[(9, e)], 60_000).await.unwrap(), [], "an expired lease is not revived");
    let stolen = store.claim_shard(9, "b", 60_000).await.unwrap().expect("an expired lease is claimed");
    assert_eq!(stolen, e + 1);

    // Release: free at once, claimable by another without waiting; a stale release does nothing.
    assert_eq!(store.release_shards("a", &[(9, e)]).await.unwrap(), 0, "a no longer holds 9");
    assert_eq!(store.release_shards("b", &[(9, stolen)]).await.unwrap(), 1);
    let freed = lease(&store.shard_leases().await.unwrap(), 9);
    assert!(freed.owner.is_none() && !freed.live, "{freed:?}");
    assert_eq!(store.claim_shard(9, "a", 60_000).await.unwrap(), Some(stolen + 1));
}

#[tokio::test]
async fn a_write_under_a_lost_lease_is_refused_by_the_database() {
    let db = TestDb::postgres().await;
    let store: Store = db.connect().await;
    store.ensure_shard_leases(64).await.unwrap();
    let k = key("shop", "web-01", "port:web", "443");
    let state = AlertState { phase: Phase::Firing { since_ms: T0, severity: Severity::Fatal }, failures: 3, ..AlertState::default() };
    let open = AlertChange::Open {
        severity: Severity::Fatal,
        started_at_ms: T0,
        message: "port 443 refused".into(),
        host: "10.0.0.1".into(),
        snapshot: serde_json::json!({}),
    };

    // Under a live lease the write goes through.
    let epoch = store.claim_shard(3, "a", 300).await.unwrap().unwrap();
    let fence = Fence { shard: 3, owner: "a".into(), epoch };
    let id = store.apply_alert_fenced(Some(&fence), &k, &state, None, Some(&open), &[email("ops@example.com", "fired")], T0).await.unwrap();
    assert!(id.is_some());
    assert_eq!((count(&db.url, "alerts").await, count(&db.url, "outbox").await, count(&db.url, "alert_instances").await), (1, 1, 1));

    // Expired: refused, though nobody took it yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let k2 = key("shop", "web-02", "port:web", "443");
    let refused = store.apply_alert_fenced(Some(&fence), &k2, &state, None, Some(&open), &[email("ops@example.com", "fired")], T0).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost { shard: 3, epoch: e, .. }) if e == epoch), "{refused:?}");

    // Stolen by b: a's write with its old epoch is refused, b's goes through.
    let stolen = store.claim_shard(3, "b", 60_000).await.unwrap().unwrap();
    let refused = store.apply_alert_fenced(Some(&fence), &k2, &state, None, Some(&open), &[email("ops@example.com", "fired")], T0).await;
    let message = refused.as_ref().map(|_| ()).unwrap_err().to_string();
    assert!(message.contains("shard 3") && message.contains("refused"), "{message}");
    // Even a renewal by a cannot bring its old epoch back.
    assert_eq!(store.renew_shards("a", &[(3, epoch)], 60_000).await.unwrap(), []);
    let refused = store.apply_alert_fenced(Some(&fence), &k2, &state, None, Some(&open), &[email("ops@example.com", "fired")], T0).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost { .. })), "{refused:?}");
    assert_eq!(
        (count(&db.url, "alerts").await, count(&db.url, "outbox").await, count(&db.url, "alert_instances").await),
        (1, 1, 1),
        "nothing of a refused decision is applied"
    );
    let theirs = Fence { shard: 3, owner: "b".into(), epoch: stolen };
    store.apply_alert_fenced(Some(&theirs), &k2, &state, None, Some(&open), &[email("ops@example.com", "fired")], T0).await.unwrap();
    assert_eq!((count(&db.url, "alerts").await, count(&db.url, "outbox").await), (2, 2));
}

#[tokio::test]
async fn probe_results_written_under_a_lost_lease_are_refused_by_the_database() {
    let db = TestDb::postgres().await;
    let store: Store = db.connect().await;
    store.ensure_shard_leases(64).await.unwrap();
    let held = store.claim_shard(4, "a", 60_000).await.unwrap().unwrap();
    let short = store.claim_shard(5, "a", 300).await.unwrap().unwrap();
    let fences = [Fence { shard: 4, owner: "a".into(), epoch: held }, Fence { shard: 5, owner: "a".into(), epoch: short }];
    store.insert_probe_results_fenced(&fences, &[probe("web", 443, T0, false)]).await.unwrap();
    assert_eq!(count(&db.url, "probe_events").await, 1);

    // One of the two leases expired (nobody took it yet): the whole write is refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = store.insert_probe_results_fenced(&fences, &[probe("web", 443, T0 + 1_000, false)]).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost { shard: 5, epoch: e, .. }) if e == short), "{refused:?}");
    // Taken by b: a's write under its old epoch is refused; b's goes through.
    let stolen = store.claim_shard(5, "b", 60_000).await.unwrap().unwrap();
    let refused = store.insert_probe_results_fenced(&fences[1..], &[probe("web", 443, T0 + 1_000, false)]).await;
    assert!(matches!(refused, Err(StoreError::LeaseLost { shard: 5, .. })), "{refused:?}");
    assert_eq!(count(&db.url, "probe_events").await, 1, "nothing of a refused write is applied");
    let theirs = Fence { shard: 5, owner: "b".into(), epoch: stolen };
    store.insert_probe_results_fenced(&[theirs], &[probe("web", 443, T0 + 1_000, false)]).await.unwrap();
    assert_eq!(count(&db.url, "probe_events").await, 2);
}

#[tokio::test]
async fn leases_are_refused_on_sqlite() {
    let db = TestDb::sqlite();
    let store: Store = db.connect().await;
    let err = store.claim_shard(0, "a", 1_000).await.unwrap_err();
    assert!(err.to_string().contains("SQLite"), "{err}");
}
