//! The agent's bounded queues: reports, down-check results and log hits wait here until the
//! collector accepts them. A [`Queue`] drops its oldest items when full (by count or by bytes),
//! counts what it dropped, and forgets after a request only the items that request carried.

use std::collections::VecDeque;

use crate::protocol::{CheckResult, LogHit};

/// How much one queue's part of a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sent {
    /// Sequence number just past the batch's last item.
    end: u64,
    pub(super) count: usize,
    /// The drop count the request reports.
    pub(super) dropped: u64,
}

/// Roughly what an item costs to keep, in bytes: a queue bounds its memory as well as its length.
pub(super) trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for Box<str> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weight for CheckResult {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.name.len() + self.error.as_ref().map_or(0, String::len)
    }
}

impl Weight for LogHit {
    fn weight(&self) -> usize {
        size_of::<Self>() + self.policy.len() + self.file.len() + self.line.len()
    }
}

/// A bounded FIFO that drops its oldest items when full (by count or by bytes) and counts what
/// it dropped. Items carry sequence numbers, so that after a request only the items it carried
/// are forgotten — not those pushed meanwhile — even when the queue overflowed while the request
/// was in flight.
#[derive(Debug)]
pub(super) struct Queue<T> {
    items: VecDeque<T>,
    capacity: usize,
    /// The most bytes the items may weigh; a single heavier item is still kept, alone.
    max_bytes: usize,
    bytes: usize,
    /// Sequence number of `items[0]`.
    head: u64,
    /// Dropped since the last accepted request, not counting those of the batch in flight.
    dropped: u64,
    /// The end of the batch in flight.
    in_flight: Option<u64>,
    /// Items of the batch in flight dropped from the queue meanwhile: delivered if the request
    /// is accepted, lost otherwise.
    dropped_in_flight: u64,
    /// Dropping since the queue was last full, so the caller warns once per episode.
    overflowing: bool,
}

impl<T: Weight> Queue<T> {
    pub(super) fn new(capacity: usize, max_bytes: usize) -> Queue<T> {
        Queue {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            head: 0,
            dropped: 0,
            in_flight: None,
            dropped_in_flight: 0,
            overflowing: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Append `item`, dropping the oldest until it fits. True when this starts dropping (the
    /// first drop since an accepted request last made room).
    pub(super) fn push(&mut self, item: T) -> bool {
        let weight = item.weight();
        let mut started = false;
        while !self.items.is_empty() && (self.items.len() >= self.capacity || self.bytes + weight > self.max_bytes) {
            if let Some(oldest) = self.items.pop_front() {
                self.bytes -= oldest.weight();
            }
            if self.in_flight.is_some_and(|end| self.head < end) {
                self.dropped_in_flight += 1;
            } else {
                self.dropped += 1;
            }
            self.head += 1;
            started |= !self.overflowing;
            self.overflowing = true;
        }
        self.bytes += weight;
        self.items.push_back(item);
        started
    }

    /// Mark the oldest `max` items (or fewer) as a request's batch.
    pub(super) fn start(&mut self, max: usize) -> Sent {
        let count = self.items.len().min(max);
        let end = self.head + count as u64;
        self.in_flight = Some(end);
        Sent { end, count, dropped: self.dropped }
    }

    /// The oldest `n` items: right after [`start`](Self::start), the batch.
    pub(super) fn front(&self, n: usize) -> impl Iterator<Item = &T> {
        self.items.iter().take(n)
    }

    /// Remove what is still queued of the batch; how many that was.
    fn remove_batch(&mut self, sent: Sent) -> usize {
        let n = (sent.end.saturating_sub(self.head) as usize).min(self.items.len());
        self.bytes -= self.items.drain(..n).map(|item| item.weight()).sum::<usize>();
        self.head += n as u64;
        self.in_flight = None;
        if n > 0 {
            self.overflowing = false;
        }
        n
    }

    /// The request was accepted: forget its batch and the drops it reported; returns those drops.
    pub(super) fn accepted(&mut self, sent: Sent) -> u64 {
        self.remove_batch(sent);
        self.dropped -= sent.dropped.min(self.dropped);
        self.dropped_in_flight = 0;
        sent.dropped
    }

    /// The request failed: everything stays for the next attempt, except what overflowed meanwhile.
    pub(super) fn failed(&mut self, _sent: Sent) {
        self.in_flight = None;
        self.dropped += std::mem::take(&mut self.dropped_in_flight);
    }

    /// The batch is given up: forget it and count it as dropped.
    pub(super) fn discard(&mut self, sent: Sent) {
        let removed = self.remove_batch(sent) as u64;
        self.dropped += removed + std::mem::take(&mut self.dropped_in_flight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weight for u32 {
        fn weight(&self) -> usize {
            1
        }
    }

    fn queue(capacity: usize, items: std::ops::Range<u32>) -> Queue<u32> {
        let mut q = Queue::new(capacity, usize::MAX);
        for i in items {
            q.push(i);
        }
        q
    }

    fn contents(q: &Queue<u32>) -> Vec<u32> {
        q.items.iter().copied().collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let mut q = Queue::new(3, usize::MAX);
        assert!(!q.push(1));
        assert!(!q.push(2));
        assert!(!q.push(3));
        assert!(q.push(4), "the first drop starts an episode");
        assert!(!q.push(5), "warned once per episode");
        assert_eq!(contents(&q), [3, 4, 5]);
        assert_eq!(q.dropped, 2);
    }

    #[test]
    fn the_drop_count_goes_with_the_next_accepted_request_then_resets() {
        let mut q = queue(3, 0..5);
        let sent = q.start(10);
        assert_eq!(sent.dropped, 2);
        q.failed(sent);
        assert_eq!(q.dropped, 2, "a failed request keeps the count");
        let sent = q.start(10);
        q.push(5); // overflows while the request is in flight: drops 2, which the request carries
        assert_eq!(q.accepted(sent), 2);
        assert_eq!(q.dropped, 0, "the dropped item of the batch was delivered by it");
        assert_eq!(contents(&q), [5]);
        assert!(!q.overflowing, "room again ends the episode");
        assert!(!q.push(6));
    }

    #[test]
    fn only_what_was_sent_is_removed() {
        let mut q = queue(10, 0..4);
        let sent = q.start(3);
        assert_eq!(sent.count, 3);
        assert_eq!(q.front(sent.count).copied().collect::<Vec<_>>(), [0, 1, 2]);
        q.push(4);
        q.push(5);
        q.accepted(sent);
        assert_eq!(contents(&q), [3, 4, 5]);
        let sent = q.start(10);
        assert_eq!(q.front(sent.count).copied().collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn items_of_a_failed_batch_that_overflowed_meanwhile_count_as_dropped() {
        let mut q = queue(3, 0..3);
        let sent = q.start(2); // 0, 1
        q.push(3); // drops 0 (in flight)
        q.push(4); // drops 1 (in flight)
        q.push(5); // drops 2 (not in flight)
        q.failed(sent);
        assert_eq!(q.dropped, 3);
        assert_eq!(contents(&q), [3, 4, 5]);
        let sent = q.start(10);
        assert_eq!(sent.dropped, 3);
        assert_eq!(q.accepted(sent), 3);
        assert!(q.is_empty());
    }

    #[test]
    fn an_accepted_batch_that_overflowed_meanwhile_removes_only_its_survivors() {
        let mut q = queue(3, 0..3);
        let sent = q.start(2); // 0, 1
        for i in 3..6 {
            q.push(i); // drops 0, 1 (delivered by the batch) and 2 (lost)
        }
        assert_eq!(q.accepted(sent), 0);
        assert_eq!(contents(&q), [3, 4, 5], "nothing pushed meanwhile is removed");
        assert_eq!(q.dropped, 1, "only the item outside the batch was lost");
    }

    #[test]
    fn a_discarded_batch_is_removed_and_counted_as_dropped() {
        let mut q = queue(10, 0..5);
        let sent = q.start(2);
        q.push(5);
        q.discard(sent);
        assert_eq!(contents(&q), [2, 3, 4, 5]);
        assert_eq!(q.dropped, 2);
        let sent = q.start(0);
        assert_eq!((sent.count, sent.dropped), (0, 2));
    }

    #[test]
    fn a_byte_budget_drops_the_oldest_too() {
        let mut q: Queue<Box<str>> = Queue::new(100, 10);
        assert!(!q.push("aaaa".into()));
        assert!(!q.push("bbbb".into()));
        assert!(q.push("cccc".into()), "12 bytes > 10: the oldest goes");
        assert_eq!((q.len(), q.bytes, q.dropped), (2, 8, 1));
        assert!(!q.push("0123456789ab".into()), "one episode");
        assert_eq!((q.len(), q.bytes, q.dropped), (1, 12, 3), "a single heavier item is kept alone");
        let sent = q.start(10);
        q.accepted(sent);
        assert_eq!((q.len(), q.bytes), (0, 0));
        let check = CheckResult { name: "n".repeat(10), at_ms: 0, port_ok: true, liveness_ok: true, error: None };
        assert!(check.weight() > 10);
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_newest() {
        let q = queue(0, 0..3);
        assert_eq!(contents(&q), [2]);
        assert_eq!(q.dropped, 2);
    }
}
