//! The prober's timer queue as plain data: which monitor is due when. No I/O and no clock of its
//! own — every operation is given `now` — so the scheduling rules are tested without a runtime.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::time::Instant;

use super::{MonitorKey, MonitorSpec};

/// What [`Prober::upsert`](super::Prober::upsert) did with a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// A new key: its first run is at a jittered offset within one interval.
    Added,
    /// The spec differs: the next runs use it (sooner, if the interval shrank).
    Changed,
    /// Identical to what runs now: nothing changes, the schedule included.
    Unchanged,
}

/// Flags one monitor's runs share with the scheduler, so a run in flight can see that its
/// monitor was removed, and the scheduler that the previous run has not finished.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    pub removed: AtomicBool,
    pub running: AtomicBool,
}

/// A monitor that is due: the spec to run and when the run was scheduled.
#[derive(Debug)]
pub(crate) struct Due {
    pub spec: Arc<MonitorSpec>,
    pub due: Instant,
    pub live: Arc<Liveness>,
}

#[derive(Debug)]
struct Entry {
    spec: Arc<MonitorSpec>,
    next_due: Instant,
    live: Arc<Liveness>,
}

#[derive(Debug)]
struct Slot {
    entry: Option<Entry>,
    /// Bumped whenever the slot's queued timer stops being the one that counts (rescheduled or
    /// removed), so stale heap items are skipped instead of searched for and deleted.
    generation: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    due: Instant,
    slot: u32,
    generation: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Schedule {
    index: HashMap<MonitorKey, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<Timer>>,
}

/// Intervals are at least this long, so a zero interval cannot spin the scheduler.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

fn interval_of(spec: &MonitorSpec) -> Duration {
    spec.interval.max(MIN_INTERVAL)
}

impl Schedule {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn next_due(&self, key: &MonitorKey) -> Option<Instant> {
        let slot = *self.index.get(key)?;
        self.slots[slot as usize].entry.as_ref().map(|e| e.next_due)
    }

    /// When the scheduler should look again: the earliest queued timer (possibly a stale one,
    /// which costs one early wake-up).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(t)| t.due)
    }

    /// Add or update a monitor. Returns what happened and whether the earliest deadline may
    /// have moved (the scheduler must be woken).
    pub fn upsert(&mut self, spec: MonitorSpec, now: Instant) -> (Upsert, bool) {
        if let Some(&slot) = self.index.get(&spec.key) {
            let s = &mut self.slots[slot as usize];
            let Some(entry) = s.entry.as_mut() else { unreachable!("indexed slots hold an entry") };
            if *entry.spec == spec {
                return (Upsert::Unchanged, false);
            }
            let interval_changed = entry.spec.interval != spec.interval;
            entry.spec = Arc::new(spec);
            if interval_changed {
                let sooner = now + interval_of(&entry.spec);
                if sooner < entry.next_due {
                    entry.next_due = sooner;
                    s.generation = s.generation.wrapping_add(1);
                    self.heap.push(Reverse(Timer { due: sooner, slot, generation: s.generation }));
                    self.compact();
                    return (Upsert::Changed, true);
                }
            }
            return (Upsert::Changed, false);
        }
        let due = now + jitter(&spec.key, interval_of(&spec));
        let key = spec.key.clone();
        let entry = Entry { spec: Arc::new(spec), next_due: due, live: Arc::default() };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize].entry = Some(entry);
                slot
            }
            None => {
                self.slots.push(Slot { entry: Some(entry), generation: 0 });
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 monitors")
            }
        };
        self.index.insert(key, slot);
        self.heap.push(Reverse(Timer { due, slot, generation: self.slots[slot as usize].generation }));
        (Upsert::Added, true)
    }

    /// Stop running a monitor. A run in flight finishes, but its results are not sent.
    pub fn remove(&mut self, key: &MonitorKey) -> bool {
        let Some(slot) = self.index.remove(key) else { return false };
        let s = &mut self.slots[slot as usize];
        if let Some(entry) = s.entry.take() {
            entry.live.removed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        s.generation = s.generation.wrapping_add(1);
        self.free.push(slot);
        self.compact();
        true
    }

    /// The next monitor due at `now`, with its next run queued: one interval after this one,
    /// or — when the prober fell more than an interval behind — the first slot of its phase
    /// still ahead of `now` (missed runs are skipped, not run in a burst).
    pub fn pop_due(&mut self, now: Instant) -> Option<Due> {
        while let Some(&Reverse(timer)) = self.heap.peek() {
            if timer.due > now {
                return None;
            }
            self.heap.pop();
            let s = &mut self.slots[timer.slot as usize];
            if s.generation != timer.generation {
                continue;
            }
            let Some(entry) = s.entry.as_mut() else { continue };
            let interval = interval_of(&entry.spec);
            let mut next = timer.due + interval;
            if next <= now {
                let behind = (now - next).as_nanos();
                let periods = behind / interval.as_nanos() + 1;
                next += Duration::from_nanos(u64::try_from(periods * interval.as_nanos()).unwrap_or(u64::MAX / 2));
            }
            entry.next_due = next;
            self.heap.push(Reverse(Timer { due: next, ..timer }));
            return Some(Due { spec: Arc::clone(&entry.spec), due: timer.due, live: Arc::clone(&entry.live) });
        }
        None
    }

    /// Rebuild the heap when stale timers outnumber live ones (after heavy churn).
    fn compact(&mut self) {
        if self.heap.len() <= 2 * self.index.len() + 1024 {
            return;
        }
        let slots = &self.slots;
        self.heap = self
            .index
            .values()
            .filter_map(|&slot| {
                let s = &slots[slot as usize];
                s.entry.as_ref().map(|e| Reverse(Timer { due: e.next_due, slot, generation: s.generation }))
            })
            .collect();
    }
}

/// A deterministic offset in `[0, interval)` from the monitor's key, so monitors on one
/// interval spread out evenly and a restart puts each at the same point of its cycle.
pub(crate) fn jitter(key: &MonitorKey, interval: Duration) -> Duration {
    // FNV-1a over "project\0name", then a 64-bit finaliser (splitmix64) to spread the bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.project.bytes().chain([0]).chain(key.name.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let span = interval.as_nanos().max(1);
    Duration::from_nanos(u64::try_from(u128::from(h) % span).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> MonitorKey {
        MonitorKey { project: "shop".into(), name: name.into() }
    }

    fn spec(name: &str, interval_s: u64) -> MonitorSpec {
        MonitorSpec {
            key: key(name),
            host: "127.0.0.1".into(),
            ports: vec![80],
            interval: Duration::from_secs(interval_s),
            timeout: Duration::from_secs(1),
            approved: Vec::new(),
            shard: 0,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn new_monitor_first_runs_within_one_interval() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        assert_eq!(schedule.upsert(spec("web", 60), t0), (Upsert::Added, true));
        let due = schedule.next_due(&key("web")).unwrap();
        assert!(due >= t0 && due < t0 + secs(60));
        assert_eq!(due - t0, jitter(&key("web"), secs(60)), "the jitter is a function of the key");
        assert_eq!(schedule.len(), 1);
    }

    #[test]
    fn unchanged_spec_keeps_its_schedule() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.upsert(spec("web", 60), t0);
        let due = schedule.next_due(&key("web")).unwrap();
        // A later reconcile with the same spec: nothing moves, the scheduler is not woken.
        assert_eq!(schedule.upsert(spec("web", 60), t0 + secs(17)), (Upsert::Unchanged, false));
        assert_eq!(schedule.next_due(&key("web")), Some(due));
        // Run it once; the following reconcile still leaves the new phase alone.
        let run = schedule.pop_due(due).unwrap();
        assert_eq!(run.due, due);
        assert_eq!(schedule.upsert(spec("web", 60), due + secs(1)), (Upsert::Unchanged, false));
        assert_eq!(schedule.next_due(&key("web")), Some(due + secs(60)));
    }

    #[test]
    fn changed_spec_is_used_by_the_next_run_without_moving_it() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.upsert(spec("web", 60), t0);
        let due = schedule.next_due(&key("web")).unwrap();
        let mut changed = spec("web", 60);
        changed.ports = vec![80, 443];
        assert_eq!(schedule.upsert(changed, t0 + secs(1)), (Upsert::Changed, false));
        assert_eq!(schedule.next_due(&key("web")), Some(due));
        assert_eq!(schedule.pop_due(due).unwrap().spec.ports, vec![80, 443]);
    }

    #[test]
    fn shorter_interval_reschedules_to_the_earlier_of_next_due_and_now_plus_interval() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.upsert(spec("web", 3600), t0);
        let due = schedule.next_due(&key("web")).unwrap();
        let now = t0 + secs(1);
        let (change, wake) = schedule.upsert(spec("web", 10), now);
        assert_eq!(change, Upsert::Changed);
        let expected = due.min(now + secs(10));
        assert_eq!(schedule.next_due(&key("web")), Some(expected));
        assert_eq!(wake, expected != due);
        // The stale timer does not fire a second run.
        let first = schedule.pop_due(expected).unwrap();
        assert_eq!((first.due, first.spec.interval), (expected, secs(10)));
        assert!(schedule.pop_due(expected + secs(9)).is_none());
        assert_eq!(schedule.pop_due(expected + secs(10)).unwrap().due, expected + secs(10));
        // A longer interval never delays the run already due sooner.
        let before = schedule.next_due(&key("web")).unwrap();
        schedule.upsert(spec("web", 600), expected + secs(11));
        assert_eq!(schedule.next_due(&key("web")), Some(before));
    }

    #[test]
    fn runs_repeat_on_the_interval_and_skip_what_was_missed() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.upsert(spec("web", 10), t0);
        let first = schedule.next_due(&key("web")).unwrap();
        assert!(schedule.pop_due(first - Duration::from_millis(1)).is_none());
        assert_eq!(schedule.pop_due(first).unwrap().due, first);
        assert!(schedule.pop_due(first).is_none(), "one run per due time");
        assert_eq!(schedule.next_due(&key("web")), Some(first + secs(10)));
        // The prober stalls for 35 s: one late run, then back on the original phase.
        let late = first + secs(45);
        assert_eq!(schedule.pop_due(late).unwrap().due, first + secs(10));
        assert!(schedule.pop_due(late).is_none());
        assert_eq!(schedule.next_due(&key("web")), Some(first + secs(50)));
    }

    #[test]
    fn removed_monitor_never_comes_due_and_its_slot_is_reused() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        schedule.upsert(spec("web", 10), t0);
        schedule.upsert(spec("db", 10), t0);
        assert!(schedule.remove(&key("web")));
        assert!(!schedule.remove(&key("web")));
        assert_eq!(schedule.len(), 1);
        let mut names = Vec::new();
        for step in 1..=3 {
            while let Some(run) = schedule.pop_due(t0 + secs(10 * step)) {
                names.push(run.spec.key.name.clone());
            }
        }
        assert!(names.iter().all(|n| n == "db") && names.len() == 3, "{names:?}");
        // Re-adding takes the freed slot and starts a fresh schedule.
        assert_eq!(schedule.upsert(spec("web", 10), t0 + secs(30)).0, Upsert::Added);
        assert_eq!(schedule.slots.len(), 2);
        assert_eq!(schedule.next_due(&key("web")), Some(t0 + secs(30) + jitter(&key("web"), secs(10))));
    }

    #[test]
    fn jitter_spreads_1000_monitors_over_the_interval() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        for i in 0..1000 {
            schedule.upsert(spec(&format!("m-{i}"), 10), t0);
        }
        let mut buckets = [0usize; 10];
        for i in 0..1000 {
            let offset = schedule.next_due(&key(&format!("m-{i}"))).unwrap() - t0;
            assert!(offset < secs(10));
            buckets[offset.as_secs() as usize] += 1;
        }
        // 100 expected per second of the interval; a burst would put them all in one.
        assert!(buckets.iter().all(|&n| (60..=140).contains(&n)), "{buckets:?}");
    }

    #[test]
    fn churn_does_not_grow_the_timer_queue_without_bound() {
        let t0 = Instant::now();
        let mut schedule = Schedule::default();
        for round in 0..50u64 {
            for i in 0..100 {
                schedule.upsert(spec(&format!("m-{i}"), 1000 - 2 * round), t0 + secs(round));
            }
        }
        assert!(schedule.heap.len() <= 2 * schedule.len() + 1024 + 1, "{}", schedule.heap.len());
        for i in 0..100 {
            schedule.remove(&key(&format!("m-{i}")));
        }
        assert!(schedule.pop_due(t0 + secs(100_000)).is_none());
    }
}
