//! This replica's lease keeper (PostgreSQL): every round — a third of the lease TTL, at most a
//! second — it renews the shards it holds, gives back those another live replica now ranks
//! higher for (rendezvous hashing, so a replica that comes back gets its shards back), and
//! claims the free or expired shards it ranks highest for. What it holds goes into
//! [`Ownership`], which the prober, the scraper and the alert engine ask before they act.
//!
//! - A renewal the database refuses (the lease expired, or another replica took the shard) ends
//!   the shard at once. A database that does not answer ends every shard once the TTL has
//!   passed since the last confirmed renewal: [`Ownership`] lapses on its own, before the
//!   leases expire in the database, so a replica cut off stops acting before another may start.
//! - Only a replica that has applied a revision is a candidate for shards: one still reading
//!   its configuration would hold shards it has nothing to run for. Nor is one whose revision is
//!   behind the newest a live replica runs ([`crate::lease::RevisionSkew`]): it would run its
//!   shards by an older configuration. It keeps renewing the shards it holds (taking them away
//!   would stop their probes for a round) but claims none until it has applied the newer one;
//!   the others rank without it meanwhile, so the shards of a replica that leaves go to them.
//! - On shutdown (SIGTERM, SIGINT) it stops acting and releases every lease at once, so the
//!   others claim them at their next round instead of after the TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::lease::{Ownership, SHARDS, preferred};
use crate::metrics::Metrics;
use crate::store::Store;

/// Rounds come at most this far apart, whatever the TTL: a released shard is claimed within
/// about one round.
const MAX_ROUND: Duration = Duration::from_secs(1);

/// Keep this replica's leases until `cancel`; then release them.
pub async fn keep(store: Store, metrics: Arc<Metrics>, ownership: Arc<Ownership>, lease_ttl: Duration, cancel: CancellationToken) {
    let me = ownership.replica().to_string();
    let ttl_ms = i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval((lease_ttl / 3).min(MAX_ROUND));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut mine: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rows_ready = false;
    let mut failing = false;
    // The newest revision while this replica's is behind it.
    let mut behind_of: Option<String> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let confirmed = Instant::now();
        match round(&store, &metrics, &ownership, &me, ttl_ms, &mut mine, &mut rows_ready).await {
            Ok(Round { behind }) => {
                if behind != behind_of {
                    match &behind {
                        Some(newest) => {
                            tracing::warn!(replica = %me, revision = metrics.applied_revision().unwrap_or_default(), %newest, shards = mine.len(),
                            "this replica runs a revision older than another live replica's: it keeps its shards but takes no new ones until it applies the newer one")
                        }
                        None if behind_of.is_some() => {
                            tracing::info!(replica = %me, "this replica runs the newest revision again: it takes shards as before")
                        }
                        None => {}
                    }
                    behind_of = behind;
                }
                if failing {
                    tracing::info!(replica = %me, shards = mine.len(), "the leases are kept again");
                }
                failing = false;
                ownership.set(&held(&mine), confirmed, lease_ttl);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(replica = %me, error = %e, shards = mine.len(),
                        "cannot renew this replica's shard leases; it stops acting for them once the lease TTL has passed");
                }
                failing = true;
            }
        }
    }
    ownership.drop_all();
    if mine.is_empty() {
        return;
    }
    let releasing: Vec<(i32, i64)> = mine.into_iter().collect();
    match store.release_shards(&me, &releasing).await {
        Ok(n) => tracing::info!(replica = %me, shards = n, "released this replica's shard leases; the others take them over"),
        Err(e) => tracing::warn!(replica = %me, error = %e, "cannot release the shard leases; they expire after the lease TTL"),
    }
}

fn held(mine: &BTreeMap<i32, i64>) -> Vec<(usize, i64)> {
    mine.iter().filter_map(|(&s, &e)| Some((usize::try_from(s).ok()?, e))).collect()
}

/// One round: renew, give back, claim (unless this replica is behind the newest revision).
/// `mine` is what this replica holds afterwards.
async fn round(
    store: &Store,
    metrics: &Metrics,
    ownership: &Ownership,
    me: &str,
    ttl_ms: i64,
    mine: &mut BTreeMap<i32, i64>,
    rows_ready: &mut bool,
) -> crate::store::Result<Round> {
    if !*rows_ready {
        store.ensure_shard_leases(SHARDS).await?;
        *rows_ready = true;
    }
    if !mine.is_empty() {
        let asked: Vec<(i32, i64)> = mine.iter().map(|(&s, &e)| (s, e)).collect();
        let renewed: BTreeMap<i32, i64> = store.renew_shards(me, &asked, ttl_ms).await?.into_iter().collect();
        for (shard, epoch) in asked.iter().filter(|(s, _)| !renewed.contains_key(s)) {
            ownership.drop_shard(usize::try_from(*shard).unwrap_or(usize::MAX));
            tracing::warn!(replica = %me, shard, epoch, "lost the lease on a shard (expired, or taken by another replica); stopped acting for it");
        }
        *mine = renewed;
    }

    // The live replicas that applied a revision, each with the one it runs; this replica's own
    // as it is now (its heartbeat may not say so yet).
    let live = store.live_replicas(now_ms(), ttl_ms).await?;
    let applied = metrics.applied_revision();
    let mut running: Vec<(&str, &str)> =
        live.iter().filter(|r| r.id != me).filter_map(|r| Some((r.id.as_str(), r.revision.as_deref()?))).collect();
    if let Some(revision) = applied.as_deref() {
        running.push((me, revision));
    }
    // A replica behind the newest revision is no candidate for shards; this one, behind, still
    // ranks for the shards it holds (it keeps them) but claims none.
    let skew = store.revision_skew(running.iter().map(|(_, revision)| *revision)).await?;
    let behind = applied.as_deref().is_some_and(|revision| skew.is_behind(revision));
    let candidates: Vec<&str> = running.iter().filter(|(id, revision)| *id == me || !skew.is_behind(revision)).map(|(id, _)| *id).collect();

    // Give back what another live replica ranks higher for (it claims it at its next round).
    let giving: Vec<(i32, i64)> =
        mine.iter().filter(|(s, _)| preferred(usize::try_from(**s).unwrap_or(0), &candidates) != Some(me)).map(|(&s, &e)| (s, e)).collect();
    if !giving.is_empty() {
        for (shard, _) in &giving {
            ownership.drop_shard(usize::try_from(*shard).unwrap_or(usize::MAX));
            mine.remove(shard);
        }
        store.release_shards(me, &giving).await?;
        tracing::info!(replica = %me, shards = giving.len(), "gave shards back to the replicas that rank higher for them");
    }

    // Claim the free or expired shards this replica ranks highest for.
    let leases = store.shard_leases().await?;
    let mut claimed = 0;
    for lease in &leases {
        let shard = usize::try_from(lease.shard).unwrap_or(usize::MAX);
        let free = lease.owner.is_none() || !lease.live;
        if free
            && !behind
            && !mine.contains_key(&lease.shard)
            && preferred(shard, &candidates) == Some(me)
            && let Some(epoch) = store.claim_shard(lease.shard, me, ttl_ms).await?
        {
            mine.insert(lease.shard, epoch);
            claimed += 1;
        }
    }
    if claimed > 0 {
        tracing::info!(replica = %me, claimed, shards = mine.len(), "claimed shards");
    }

    let mut per_replica: HashMap<&str, usize> = HashMap::new();
    for lease in leases.iter().filter(|l| l.live && !mine.contains_key(&l.shard)) {
        if let Some(owner) = lease.owner.as_deref().filter(|o| *o != me) {
            *per_replica.entry(owner).or_default() += 1;
        }
    }
    per_replica.insert(me, mine.len());
    metrics.set_shards(per_replica, &held(mine));
    Ok(Round { behind: behind.then(|| skew.newest().unwrap_or_default().to_string()) })
}

/// What a round found besides the leases.
struct Round {
    /// This replica's revision is behind this newest one.
    behind: Option<String>,
}
