//! What a rollup row of probe results holds and how its blobs are written: counts, latency of
//! the good checks (min, max, sum and a histogram) and, for hours, the checks per 5-minute slot.
//! Pure: no SQL here.

use serde::Serialize;

use super::super::{Result, StoreError};

pub(crate) const FIVE_MINUTES_MS: i64 = 300_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 86_400_000;
/// 5-minute slots in an hour.
pub(crate) const SLOTS: usize = 12;

/// Upper bounds (exclusive, milliseconds) of the latency histogram's buckets; the last bucket
/// takes everything from 10 s on.
pub(crate) const LATENCY_BOUNDS_MS: [u64; 13] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000];
const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Latency of good checks over a window, in milliseconds: exact minimum, mean (one decimal) and
/// maximum; percentiles as the upper bound of their histogram bucket (1, 2, 5, 10, 20, 50, 100,
/// 200, 500 ms, 1, 2, 5, 10 s), never above the maximum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub min_ms: u64,
    pub avg_ms: f64,
    pub max_ms: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
}

/// The checks of one target over an hour or a day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rollup {
    pub checks: u64,
    pub failures: u64,
    pub lat_min: Option<u64>,
    pub lat_max: Option<u64>,
    pub lat_sum: u64,
    pub hist: [u64; BUCKETS],
    /// Checks per 5-minute slot of the hour (all zero in day rows).
    pub slots: [u64; SLOTS],
}

impl Rollup {
    /// Count one check; `latency_ms` is that of a good check (failures have none).
    pub fn add(&mut self, at_ms: i64, ok: bool, latency_ms: Option<u32>) {
        self.checks += 1;
        if !ok {
            self.failures += 1;
        }
        self.slots[(at_ms.rem_euclid(HOUR_MS) / FIVE_MINUTES_MS) as usize] += 1;
        if let Some(ms) = latency_ms.map(u64::from) {
            self.lat_min = Some(self.lat_min.map_or(ms, |m| m.min(ms)));
            self.lat_max = Some(self.lat_max.map_or(ms, |m| m.max(ms)));
            self.lat_sum = self.lat_sum.saturating_add(ms);
            self.hist[LATENCY_BOUNDS_MS.iter().position(|&b| ms < b).unwrap_or(BUCKETS - 1)] += 1;
        }
    }

    /// Add another rollup of the same target (the hours of a day, or rows written twice).
    pub fn merge(&mut self, other: &Rollup, with_slots: bool) {
        self.checks += other.checks;
        self.failures += other.failures;
        self.lat_min = min_of(self.lat_min, other.lat_min);
        self.lat_max = self.lat_max.max(other.lat_max);
        self.lat_sum = self.lat_sum.saturating_add(other.lat_sum);
        for (a, b) in self.hist.iter_mut().zip(other.hist) {
            *a += b;
        }
        if with_slots {
            for (a, b) in self.slots.iter_mut().zip(other.slots) {
                *a += b;
            }
        }
    }

    /// Good checks with a latency (down-check results carry none).
    pub fn timed(&self) -> u64 {
        self.hist.iter().sum()
    }

    /// The latency below which a fraction `q` of the timed checks fell: the upper bound of the
    /// histogram bucket it lies in, never above the maximum seen.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let timed = self.timed();
        if timed == 0 {
            return None;
        }
        let rank = ((q * timed as f64).ceil() as u64).clamp(1, timed);
        let mut seen = 0;
        for (i, count) in self.hist.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let bound = LATENCY_BOUNDS_MS.get(i).map_or(u64::MAX, |b| b - 1);
                return Some(bound.min(self.lat_max.unwrap_or(bound)));
            }
        }
        self.lat_max
    }

    /// checks, failures, lat_min, lat_max, lat_sum as the database stores them.
    pub fn columns(&self) -> (i64, i64, Option<i64>, Option<i64>, i64) {
        let narrow = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        (narrow(self.checks), narrow(self.failures), self.lat_min.map(narrow), self.lat_max.map(narrow), narrow(self.lat_sum))
    }

    /// Latency of the good checks; `None` without any.
    pub fn summary(&self) -> Option<LatencySummary> {
        let timed = self.timed();
        Some(LatencySummary {
            min_ms: self.lat_min?,
            avg_ms: ((self.lat_sum as f64 / timed.max(1) as f64) * 10.0).round() / 10.0,
            max_ms: self.lat_max?,
            p50_ms: self.quantile(0.5)?,
            p95_ms: self.quantile(0.95)?,
            p99_ms: self.quantile(0.99)?,
        })
    }

    /// The histogram from its first bucket with a count to its last: that bucket's index in one
    /// byte, then the counts as varints (empty without timed checks). A port's latency fills a
    /// few neighbouring buckets, often far from the first, so leading zeros are not written.
    pub fn hist_blob(&self) -> Vec<u8> {
        let Some(first) = self.hist.iter().position(|&n| n != 0) else { return Vec::new() };
        let mut blob = vec![first as u8];
        blob.extend(encode_counts(&self.hist[first..]));
        blob
    }

    /// The slots in 3 bytes (2 bits each) when every slot has at most 3 checks — an interval
    /// of 2 minutes or more — else as 12 varints (at least 12 bytes, so the length tells which).
    pub fn slots_blob(&self) -> Vec<u8> {
        if self.slots.iter().all(|&n| n <= 3) {
            let packed = self.slots.iter().enumerate().fold(0u32, |acc, (i, &n)| acc | ((n as u32) << (2 * i)));
            packed.to_le_bytes()[..3].to_vec()
        } else {
            self.slots.iter().flat_map(|&n| varint(n)).collect()
        }
    }

    /// A row read back: the blobs as [`Rollup::hist_blob`] and [`Rollup::slots_blob`] wrote them
    /// (empty `slots` for day rows).
    pub fn from_row(checks: i64, failures: i64, lat: (Option<i64>, Option<i64>, i64), hist: &[u8], slots: &[u8]) -> Result<Rollup> {
        let wide = |v: i64| u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative probe rollup value {v}")));
        let mut rollup = Rollup {
            checks: wide(checks)?,
            failures: wide(failures)?,
            lat_min: lat.0.map(wide).transpose()?,
            lat_max: lat.1.map(wide).transpose()?,
            lat_sum: wide(lat.2)?,
            ..Rollup::default()
        };
        if let Some((&first, counts)) = hist.split_first() {
            let into = rollup
                .hist
                .get_mut(usize::from(first)..)
                .ok_or_else(|| StoreError::Corrupt(format!("probe histogram starts at bucket {first}")))?;
            decode_counts(counts, into)?;
        }
        if slots.len() == 3 {
            let packed = u32::from_le_bytes([slots[0], slots[1], slots[2], 0]);
            for (i, slot) in rollup.slots.iter_mut().enumerate() {
                *slot = u64::from((packed >> (2 * i)) & 3);
            }
        } else if !slots.is_empty() {
            decode_counts(slots, &mut rollup.slots)?;
        }
        Ok(rollup)
    }
}

fn min_of(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// LEB128.
fn varint(mut n: u64) -> impl Iterator<Item = u8> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        done = n == 0;
        Some(if done { byte } else { byte | 0x80 })
    })
}

/// Counts as varints, trailing zeros left out.
fn encode_counts(counts: &[u64]) -> Vec<u8> {
    let used = counts.iter().rposition(|&n| n != 0).map_or(0, |i| i + 1);
    counts[..used].iter().flat_map(|&n| varint(n)).collect()
}

fn decode_counts(mut bytes: &[u8], into: &mut [u64]) -> Result<()> {
    let corrupt = || StoreError::Corrupt("a probe rollup's counts do not decode".into());
    for slot in into.iter_mut() {
        if bytes.is_empty() {
            break;
        }
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let (&byte, rest) = bytes.split_first().ok_or_else(corrupt)?;
            bytes = rest;
            if shift > 63 {
                return Err(corrupt());
            }
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        *slot = value;
    }
    if bytes.is_empty() { Ok(()) } else { Err(corrupt()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: &Rollup) -> Rollup {
        Rollup::from_row(
            r.checks as i64,
            r.failures as i64,
            (r.lat_min.map(|v| v as i64), r.lat_max.map(|v| v as i64), r.lat_sum as i64),
            &r.hist_blob(),
            &r.slots_blob(),
        )
        .unwrap()
    }

    #[test]
    fn a_three_minute_interval_packs_its_slots_in_three_bytes() {
        let mut r = Rollup::default();
        for i in 0..20 {
            r.add(i * 180_000, i != 7, (i != 7).then_some(3));
        }
        assert_eq!(r.slots_blob().len(), 3);
        assert_eq!(r.hist_blob(), vec![2, 19], "bucket 2 (2–4 ms) first, and only");
        assert_eq!(round_trip(&r), r);
        assert_eq!((r.checks, r.failures, r.timed(), r.lat_sum), (20, 1, 19, 57));
    }

    #[test]
    fn busy_slots_and_big_counts_survive_the_varints() {
        let mut r = Rollup::default();
        for i in 0..5_000 {
            r.add(i * 700, true, Some((i % 20_000) as u32));
        }
        r.add(HOUR_MS - 1, false, None);
        assert!(r.slots_blob().len() > 12);
        assert_eq!(round_trip(&r), r);
        assert_eq!(r.slots.iter().sum::<u64>(), 5_001);
        assert!(Rollup::from_row(1, 0, (None, None, 0), &[0, 0x80], &[]).is_err(), "a cut varint is corrupt");
        assert!(Rollup::from_row(-1, 0, (None, None, 0), &[], &[]).is_err());
        assert!(Rollup::from_row(1, 0, (None, None, 0), &[14, 1], &[]).is_err(), "a histogram past its last bucket is corrupt");
        assert!(Rollup::from_row(1, 0, (None, None, 0), &[13, 1, 1], &[]).is_err());
    }

    #[test]
    fn quantiles_come_from_the_histogram_and_never_pass_the_maximum() {
        let mut r = Rollup::default();
        assert_eq!(r.quantile(0.5), None);
        for ms in [0, 0, 0, 3, 3, 40, 40, 40, 150, 700] {
            r.add(0, true, Some(ms));
        }
        assert_eq!(r.quantile(0.5), Some(4));
        assert_eq!(r.quantile(0.6), Some(49));
        assert_eq!(r.quantile(0.3), Some(0));
        assert_eq!(r.quantile(0.99), Some(700));
        let mut day = Rollup::default();
        day.merge(&r, false);
        day.merge(&r, false);
        assert_eq!((day.checks, day.lat_min, day.lat_max, day.lat_sum, day.slots), (20, Some(0), Some(700), 2 * 976, [0; SLOTS]));
    }
}
