//! How serve replicas on one PostgreSQL divide the work (pure: no I/O, no clock of its own).
//!
//! The work is cut into [`SHARDS`] shards. A server belongs to shard
//! `hash(project, server) mod SHARDS`; a port monitor that names a server goes with that server,
//! one that names none to `hash(project, monitor)`; down-check pairs and `no_data` go with their
//! (target) server. The hash is FNV-1a, the same on every replica and every version — not Rust's
//! randomized hasher.
//!
//! Which replica should own a shard is decided by rendezvous (highest-random-weight) hashing of
//! the shard over the live replicas ([`preferred`]): each replica scores every shard and the
//! highest score wins, so when a replica joins or leaves only the shards it wins or held move
//! (about `SHARDS / replicas` of them), never the rest. Owning is another matter: a shard is
//! held through a lease row in the database with an owner, an epoch bumped at every claim, and
//! an expiry on the database's clock. [`Ownership`] is what this replica holds right now, as
//! the lease keeper last confirmed it; the prober, the node_exporter scraper and the alert
//! engine ask it before they act. [`RevisionSkew`] says which replicas run a revision older
//! than the newest one applied: those take no new shards until they catch up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many shards the work is cut into. Fixed: changing it moves every server.
pub const SHARDS: usize = 64;

/// FNV-1a over the parts, each followed by a 0 byte (so `("ab", "c")` and `("a", "bc")` differ).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.iter().chain(std::iter::once(&0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// A final mix (splitmix64's), so that nearby FNV values spread over all shards and scores.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The shard of a server (`name` is the server), or of a port monitor that names no server
/// (`name` is the monitor).
pub fn shard_of(project: &str, name: &str) -> usize {
    (mix(fnv1a(&[project.as_bytes(), name.as_bytes()])) % SHARDS as u64) as usize
}

/// A replica's score for a shard; the highest score among the live replicas wins it.
fn score(shard: usize, replica: &str) -> u64 {
    mix(fnv1a(&[&(shard as u64).to_le_bytes(), replica.as_bytes()]))
}

/// Which of `replicas` should own `shard`: the highest score (ties, which need a 64-bit
/// collision, go to the smaller id). `None` when there is no replica.
pub fn preferred<'a>(shard: usize, replicas: &[&'a str]) -> Option<&'a str> {
    replicas.iter().copied().max_by(|a, b| score(shard, a).cmp(&score(shard, b)).then_with(|| b.cmp(a)))
}

/// How the revisions the live replicas run compare. The newest is the one first applied on the
/// database last (by any replica; a revision applied again later, after a restart, keeps its
/// first time); a replica whose revision was first applied before the newest one's is behind. A
/// revision not recorded yet (applied this instant) counts as the newest, so nobody counts as
/// ahead of what it does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevisionSkew {
    /// revision → when it was first applied (`i64::MAX` when not recorded yet).
    first_applied: BTreeMap<String, i64>,
}

impl RevisionSkew {
    /// The revisions running, each with when it was first applied (`None`: not recorded yet).
    pub fn new(revisions: impl IntoIterator<Item = (String, Option<i64>)>) -> RevisionSkew {
        RevisionSkew { first_applied: revisions.into_iter().map(|(r, at)| (r, at.unwrap_or(i64::MAX))).collect() }
    }

    fn first_applied(&self, revision: &str) -> i64 {
        self.first_applied.get(revision).copied().unwrap_or(i64::MAX)
    }

    /// The newest revision running (ties, first applied in the same millisecond, to the larger
    /// id, so every replica names the same one).
    pub fn newest(&self) -> Option<&str> {
        self.first_applied.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0))).map(|(r, _)| r.as_str())
    }

    /// Whether a replica running `revision` is behind the newest.
    pub fn is_behind(&self, revision: &str) -> bool {
        self.newest().is_some_and(|newest| self.first_applied(revision) < self.first_applied(newest))
    }
}

/// The lease of one shard this replica holds, for fencing its writes: the database refuses a
/// write whose epoch is no longer the shard's, or whose lease has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub shard: i32,
    pub owner: String,
    pub epoch: i64,
}

/// The shards this replica holds now, shared between the lease keeper (which writes it) and
/// the tasks that act on shards (which read it, cheaply: one atomic load per question).
///
/// On SQLite there is one replica and no lease rows: [`Ownership::everything`] owns every shard
/// for good and fences nothing.
#[derive(Debug)]
pub struct Ownership {
    replica: String,
    /// Bit `s` set: shard `s` is held.
    held: AtomicU64,
    /// The epoch of each held shard.
    epochs: [AtomicI64; SHARDS],
    /// Whether leases exist at all (PostgreSQL); without them every shard is held and unfenced.
    leased: bool,
    /// Held shards stop counting at this instant (milliseconds after `base`) unless renewed
    /// first: a replica cut off from the database stops acting before its leases expire there.
    valid_until: AtomicI64,
    base: Instant,
    /// Bumped whenever the held set or an epoch changes, so readers notice a hand-over.
    generation: AtomicU64,
}

impl Ownership {
    /// A single replica that owns every shard, with nothing to fence (SQLite).
    pub fn everything(replica: &str) -> Ownership {
        let ownership = Ownership::leased(replica);
        ownership.held.store(u64::MAX, Ordering::Release);
        ownership.valid_until.store(i64::MAX, Ordering::Release);
        Ownership { leased: false, ..ownership }
    }

    /// A replica that holds nothing until its lease keeper claims shards (PostgreSQL).
    pub fn leased(replica: &str) -> Ownership {
        Ownership {
            replica: replica.to_string(),
            held: AtomicU64::new(0),
            epochs: std::array::from_fn(|_| AtomicI64::new(0)),
            leased: true,
            valid_until: AtomicI64::new(0),
            base: Instant::now(),
            generation: AtomicU64::new(0),
        }
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether shards are held through leases (and writes fenced).
    pub fn is_leased(&self) -> bool {
        self.leased
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.base.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// The shards held now: the held set, or nothing once the last renewal is too old.
    fn held_now(&self) -> u64 {
        if self.now_ms() >= self.valid_until.load(Ordering::Acquire) { 0 } else { self.held.load(Ordering::Acquire) }
    }

    /// Whether this replica acts for `shard` now.
    pub fn owns(&self, shard: usize) -> bool {
        shard < SHARDS && self.held_now() & (1 << shard) != 0
    }

    /// Whether this replica acts for the server (or server-less monitor) `name` of `project`.
    pub fn owns_name(&self, project: &str, name: &str) -> bool {
        self.owns(shard_of(project, name))
    }

    /// The fence for a write on behalf of `shard`: `Ok(None)` when nothing is fenced (SQLite),
    /// `Err(())` when the shard is not held.
    #[allow(clippy::result_unit_err)]
    pub fn fence(&self, shard: usize) -> Result<Option<Fence>, ()> {
        if !self.owns(shard) {
            return Err(());
        }
        if !self.leased {
            return Ok(None);
        }
        Ok(Some(Fence { shard: shard as i32, owner: self.replica.clone(), epoch: self.epochs[shard].load(Ordering::Acquire) }))
    }

    /// The epoch this replica last held `shard` at (0 if never), held now or not: what a check
    /// started now is made under.
    pub fn epoch(&self, shard: usize) -> i64 {
        self.epochs.get(shard).map_or(0, |e| e.load(Ordering::Acquire))
    }

    /// Whether the lease keeper's word is current: the database confirmed this replica's
    /// leases less than the TTL ago. A replica cut off from the database is not — it cannot
    /// know whether another replica holds its shards now. Always true without leases.
    pub fn is_current(&self) -> bool {
        !self.leased || self.now_ms() < self.valid_until.load(Ordering::Acquire)
    }

    /// Whether work done for `shard` under `epoch` may still be written and decided: this
    /// replica holds the shard now at that epoch, or at the next one — its own claim after the
    /// lease lapsed, so no other replica held the shard in between (every claim moves the epoch
    /// on by one). When another replica held it meanwhile, that replica's checks and decisions
    /// cover the time, and this replica's would overwrite them with older ones.
    pub fn held_since(&self, shard: usize, epoch: i64) -> bool {
        self.owns(shard) && (!self.leased || matches!(self.epoch(shard) - epoch, 0 | 1))
    }

    /// The held shards with their epochs, by shard.
    pub fn held(&self) -> Vec<(usize, i64)> {
        let held = self.held_now();
        (0..SHARDS).filter(|s| held & (1 << s) != 0).map(|s| (s, self.epochs[s].load(Ordering::Acquire))).collect()
    }

    /// Whether any shard is held now (false once the leases lapsed).
    pub fn holds_any(&self) -> bool {
        self.held_now() != 0
    }

    /// Changes whenever the held shards or their epochs may have changed (a lapse included).
    pub fn generation(&self) -> (u64, bool) {
        (self.generation.load(Ordering::Acquire), self.holds_any())
    }

    /// The lease keeper's word: exactly `held` (shard, epoch) are held, confirmed by the
    /// database at `confirmed` (taken before the request was sent), and stay valid until `ttl`
    /// after it unless confirmed again.
    pub fn set(&self, held: &[(usize, i64)], confirmed: Instant, ttl: Duration) {
        if !self.leased {
            return;
        }
        let mut bits = 0u64;
        let mut changed = false;
        for &(shard, epoch) in held.iter().filter(|(s, _)| *s < SHARDS) {
            bits |= 1 << shard;
            changed |= self.epochs[shard].swap(epoch, Ordering::AcqRel) != epoch;
        }
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        // Signed: a confirmation from before `base` is possible (and then long lapsed).
        let confirmed_ms = ms(confirmed.saturating_duration_since(self.base)) - ms(self.base.saturating_duration_since(confirmed));
        self.valid_until.store(confirmed_ms.saturating_add(ms(ttl)), Ordering::Release);
        changed |= self.held.swap(bits, Ordering::AcqRel) != bits;
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Stop acting for `shard` at once (its lease was lost, or is being released).
    pub fn drop_shard(&self, shard: usize) {
        if self.leased && shard < SHARDS && self.held.fetch_and(!(1 << shard), Ordering::AcqRel) & (1 << shard) != 0 {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Stop acting for every shard at once (shutting down).
    pub fn drop_all(&self) {
        if self.leased && self.held.swap(0, Ordering::AcqRel) != 0 {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // Fixed values: a change of the hash would move every server of every installation.
        assert_eq!(shard_of("shop", "web-1"), shard_of("shop", "web-1"));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        let mut counts = [0usize; SHARDS];
        for i in 0..6400 {
            counts[shard_of("shop", &format!("server-{i}"))] += 1;
        }
        assert!(counts.iter().all(|&c| (50..=150).contains(&c)), "{counts:?}");
    }

    #[test]
    fn rendezvous_moves_only_the_shards_of_the_replica_that_joins_or_leaves() {
        let three = ["a", "b", "c"];
        let four = ["a", "b", "c", "d"];
        let before: Vec<&str> = (0..SHARDS).map(|s| preferred(s, &three).unwrap()).collect();
        let after: Vec<&str> = (0..SHARDS).map(|s| preferred(s, &four).unwrap()).collect();
        for s in 0..SHARDS {
            assert!(after[s] == before[s] || after[s] == "d", "shard {s} moved from {} to {}", before[s], after[s]);
        }
        let to_d = after.iter().filter(|r| **r == "d").count();
        assert!((6..=28).contains(&to_d), "d wins {to_d} of {SHARDS}");
        // Each of three gets a fair part; the order of the list does not matter.
        for r in three {
            let n = before.iter().filter(|x| **x == r).count();
            assert!((10..=35).contains(&n), "{r} wins {n}");
        }
        assert!((0..SHARDS).all(|s| preferred(s, &["c", "a", "b"]) == preferred(s, &three)));
        assert_eq!(preferred(0, &[]), None);
    }

    #[test]
    fn a_revision_first_applied_before_the_newest_is_behind() {
        let skew = RevisionSkew::new([("old".to_string(), Some(1_000)), ("new".to_string(), Some(2_000))]);
        assert_eq!(skew.newest(), Some("new"));
        assert!(skew.is_behind("old") && !skew.is_behind("new"));
        // A revision not recorded yet was applied just now: the newest; nobody is ahead of it.
        let skew = RevisionSkew::new([("new".to_string(), Some(2_000)), ("fresh".to_string(), None)]);
        assert_eq!(skew.newest(), Some("fresh"));
        assert!(skew.is_behind("new") && !skew.is_behind("fresh") && !skew.is_behind("unknown"));
        // First applied in the same millisecond: neither is behind; both name one as the newest.
        let skew = RevisionSkew::new([("a".to_string(), Some(5)), ("b".to_string(), Some(5))]);
        assert_eq!(skew.newest(), Some("b"));
        assert!(!skew.is_behind("a") && !skew.is_behind("b"));
        assert_eq!(RevisionSkew::default().newest(), None);
        assert!(!RevisionSkew::default().is_behind("any"));
    }

    #[test]
    fn ownership_holds_what_the_keeper_confirmed_until_it_lapses() {
        let o = Ownership::leased("a");
        assert!(!o.owns(3) && o.fence(3).is_err());
        let (g0, _) = o.generation();
        o.set(&[(3, 7), (5, 1)], Instant::now(), Duration::from_secs(60));
        assert!(o.owns(3) && o.owns(5) && !o.owns(4));
        assert_eq!(o.fence(3), Ok(Some(Fence { shard: 3, owner: "a".into(), epoch: 7 })));
        assert_eq!(o.held(), [(3, 7), (5, 1)]);
        assert_ne!(o.generation().0, g0);
        let g1 = o.generation().0;
        o.set(&[(3, 7), (5, 1)], Instant::now(), Duration::from_secs(60));
        assert_eq!(o.generation().0, g1, "a renewal changes nothing");
        o.drop_shard(5);
        assert!(!o.owns(5) && o.owns(3));
        // Confirmed long ago: lapsed, nothing held.
        o.set(&[(3, 7)], Instant::now() - Duration::from_secs(10), Duration::from_secs(3));
        assert!(!o.owns(3) && o.held().is_empty());
        assert!(!o.generation().1);

        // Work done under an epoch counts while the shard is held at it or at the next one
        // (this replica's own claim after a lapse), not once another replica held it between.
        o.set(&[(3, 7)], Instant::now(), Duration::from_secs(60));
        assert!(o.is_current() && o.held_since(3, 7) && o.held_since(3, 6) && !o.held_since(3, 5) && !o.held_since(3, 8));
        assert!(!o.held_since(5, 1), "a shard not held");
        o.set(&[(3, 7)], Instant::now() - Duration::from_secs(10), Duration::from_secs(3));
        assert!(!o.is_current() && !o.held_since(3, 7));
        assert_eq!(o.epoch(3), 7, "the epoch is remembered through a lapse");

        let all = Ownership::everything("solo");
        assert!(all.is_current() && all.held_since(9, 0));
        assert!((0..SHARDS).all(|s| all.owns(s)));
        assert_eq!(all.fence(9), Ok(None));
        all.drop_all();
        assert!(all.owns(9), "SQLite's one replica never gives up its work");
    }
}
