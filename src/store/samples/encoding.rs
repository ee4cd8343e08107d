//! The text of a sample row's `vals` (see the parent module's "Encoding"): writing a report's
//! values, merging them into buckets, and reading back only the series a chart asks for without
//! building every value. Pure: no SQL here.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::{DeserializeSeed, Deserializer, Error as _, Expected, IgnoredAny, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::{Result, SeriesPoint, StoreError, to_json};
use crate::protocol::{MetricValue, Report};

/// A report's metric values as raw `vals`, serialized without an intermediate vector.
pub(super) struct RawVals<'a>(pub(super) &'a [MetricValue]);

impl Serialize for RawVals<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| (m.name, m.subject.as_deref(), m.value)))
    }
}

/// A string from JSON, borrowed from the text unless it had escapes.
pub(super) struct Str<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Str<'a>, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Cow<'de, str>, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Cow<'de, str>, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Cow<'de, str>, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(StrVisitor).map(Str)
    }
}

/// `[name, subject, value]` of a raw row.
#[derive(Deserialize)]
pub(super) struct RawEntry<'a>(#[serde(borrow)] pub(super) Str<'a>, #[serde(borrow)] pub(super) Option<Str<'a>>, pub(super) f64);

/// `[name, subject, count, sum, min, max]` of a rollup row.
#[derive(Deserialize)]
pub(super) struct RollupEntry<'a>(#[serde(borrow)] Str<'a>, #[serde(borrow)] Option<Str<'a>>, u64, f64, f64, f64);

impl RollupEntry<'_> {
    fn agg(&self) -> Agg {
        Agg { count: self.2, sum: self.3, min: self.4, max: self.5 }
    }
}

pub(super) fn decode<'a, T: Deserialize<'a>>(what: &str, text: &'a str) -> Result<Vec<T>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Count, sum, min and max of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Agg {
    pub(super) count: u64,
    pub(super) sum: f64,
    pub(super) min: f64,
    pub(super) max: f64,
}

impl Agg {
    fn one(value: f64) -> Agg {
        Agg { count: 1, sum: value, min: value, max: value }
    }

    pub(super) fn merge(&mut self, other: Agg) {
        self.count += other.count;
        // Finite inputs keep the sum finite: it saturates rather than becoming infinite, which
        // JSON could not hold.
        self.sum = (self.sum + other.sum).clamp(f64::MIN, f64::MAX);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub(super) fn avg(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }
}

/// Set `key` to a series' key: `name` or `name\0subject` (metric names have no NUL, so the first
/// NUL splits the two; this sorts by name, then subject, host-wide first). One reused key, so
/// looking up a known series allocates nothing.
pub(super) fn series_key<'k>(key: &'k mut String, name: &str, subject: Option<&str>) -> &'k str {
    key.clear();
    key.push_str(name);
    if let Some(subject) = subject {
        key.push('\0');
        key.push_str(subject);
    }
    key
}

/// A series' key split back into its name and subject.
pub(super) fn split_key(key: &str) -> (&str, Option<&str>) {
    key.split_once('\0').map_or((key, None), |(name, subject)| (name, Some(subject)))
}

/// Every series of one server in one bucket, by [`series_key`].
#[derive(Debug, Default)]
pub(super) struct Bucket {
    pub(super) series: BTreeMap<String, Agg>,
}

impl Bucket {
    fn add(&mut self, key: &mut String, name: &str, subject: Option<&str>, agg: Agg) {
        match self.series.get_mut(series_key(key, name, subject)) {
            Some(total) => total.merge(agg),
            None => {
                self.series.insert(key.clone(), agg);
            }
        }
    }

    /// Fold in a raw row's `vals`.
    pub(super) fn add_raw(&mut self, key: &mut String, vals: &str) -> Result<()> {
        for RawEntry(name, subject, value) in decode::<RawEntry>("metric_samples.vals", vals)? {
            self.add(key, &name.0, subject.as_ref().map(|s| &*s.0), Agg::one(value));
        }
        Ok(())
    }

    /// Fold in a rollup row's `vals`.
    pub(super) fn add_rollup(&mut self, key: &mut String, vals: &str) -> Result<()> {
        for entry in decode::<RollupEntry>("metric_rollups.vals", vals)? {
            self.add(key, &entry.0.0, entry.1.as_ref().map(|s| &*s.0), entry.agg());
        }
        Ok(())
    }

    pub(super) fn encode(&self) -> Result<String> {
        struct Entries<'a>(&'a BTreeMap<String, Agg>);
        impl Serialize for Entries<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|(key, a)| {
                    let (name, subject) = split_key(key);
                    (name, subject, a.count, a.sum, a.min, a.max)
                }))
            }
        }
        to_json(&Entries(&self.series))
    }
}

/// Every series of one server in one UTC day, from its hourly rollups, with the average of the
/// newest hour that holds each series: a day row is `[name, subject, count, sum, min, max, last]`,
/// so a report reading days still gives a series' value at the period's end as an hour has it.
#[derive(Debug, Default)]
pub(super) struct Day {
    pub(super) series: BTreeMap<String, (Agg, f64)>,
}

impl Day {
    /// Fold in an hourly rollup row's `vals`; hours come oldest first.
    pub(super) fn add_hour(&mut self, key: &mut String, vals: &str) -> Result<()> {
        for entry in decode::<RollupEntry>("metric_rollups.vals", vals)? {
            let agg = entry.agg();
            match self.series.get_mut(series_key(key, &entry.0.0, entry.1.as_ref().map(|s| &*s.0))) {
                Some((total, last)) => {
                    total.merge(agg);
                    *last = agg.avg();
                }
                None => {
                    self.series.insert(key.clone(), (agg, agg.avg()));
                }
            }
        }
        Ok(())
    }

    pub(super) fn encode(&self) -> Result<String> {
        struct Entries<'a>(&'a BTreeMap<String, (Agg, f64)>);
        impl Serialize for Entries<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|(key, (a, last))| {
                    let (name, subject) = split_key(key);
                    (name, subject, a.count, a.sum, a.min, a.max, last)
                }))
            }
        }
        to_json(&Entries(&self.series))
    }
}

/// Per subject, the aggregate of one metric in one chart bucket.
pub(super) type SubjectAggs = BTreeMap<Option<String>, Agg>;

/// The chart point of a bucket: the series of `subject`, or with no subject the highest of every
/// subject's (the worst mount, the busiest interface), statistic by statistic.
pub(super) fn point(at_ms: i64, aggs: &SubjectAggs) -> Option<SeriesPoint> {
    aggs.values().fold(None, |acc: Option<SeriesPoint>, a| {
        let p = SeriesPoint { at_ms, avg: a.avg(), min: a.min, max: a.max };
        Some(match acc {
            None => p,
            Some(q) => SeriesPoint { at_ms, avg: q.avg.max(p.avg), min: q.min.max(p.min), max: q.max.max(p.max) },
        })
    })
}

/// Where [`fold`] puts the entries of a `vals` array it is asked for.
pub(super) trait Sink {
    /// Whether the entry of `name` and `subject` is wanted (the others are skipped unparsed).
    fn wants(&self, name: &str, subject: Option<&str>) -> bool;
    /// `last`: the average of the newest hour in the bucket for a day row (which keeps it), the
    /// bucket's average for any other.
    fn add(&mut self, name: &str, subject: Option<&str>, agg: Agg, last: f64);
}

/// Fold the wanted entries of a raw (`rollup` false) or rollup row's `vals` into `sink`.
pub(super) fn fold(sink: &mut dyn Sink, vals: &str, rollup: bool) -> Result<()> {
    let corrupt =
        |e: serde_json::Error| StoreError::Corrupt(format!("{}.vals: {e}", if rollup { "metric_rollups" } else { "metric_samples" }));
    let mut de = serde_json::Deserializer::from_str(vals);
    (&mut de).deserialize_seq(Pick { sink, rollup }).map_err(corrupt)?;
    de.end().map_err(corrupt)
}

/// Which series of a metric a chart wants.
#[derive(Clone, Copy)]
pub(super) struct Wanted<'a> {
    pub(super) name: &'a str,
    /// `None`: every subject (the point takes the highest).
    pub(super) subject: Option<&'a str>,
}

impl Wanted<'_> {
    /// Fold the wanted entries of a raw (`rollup` false) or rollup row's `vals` into `aggs`.
    pub(super) fn fold(self, aggs: &mut SubjectAggs, vals: &str, rollup: bool) -> Result<()> {
        fold(&mut ChartSink { wanted: self, aggs }, vals, rollup)
    }
}

/// A chart's [`Sink`]: one metric, per subject.
struct ChartSink<'a, 'w> {
    wanted: Wanted<'w>,
    aggs: &'a mut SubjectAggs,
}

impl Sink for ChartSink<'_, '_> {
    fn wants(&self, name: &str, subject: Option<&str>) -> bool {
        name == self.wanted.name && (self.wanted.subject.is_none() || self.wanted.subject == subject)
    }

    fn add(&mut self, _name: &str, subject: Option<&str>, agg: Agg, _last: f64) {
        match self.aggs.get_mut(&subject.map(str::to_owned)) {
            Some(total) => total.merge(agg),
            None => {
                self.aggs.insert(subject.map(str::to_owned), agg);
            }
        }
    }
}

/// [`Store::subject_series`]'s [`Sink`]: the metrics `names`, per subject and chart bucket.
///
/// [`Store::subject_series`]: super::Store::subject_series
pub(super) struct EachSeries<'n> {
    names: &'n [&'n str],
    /// The chart bucket of the row being folded.
    pub(super) bucket_ms: i64,
    /// By [`series_key`]: the aggregate of each bucket.
    pub(super) series: BTreeMap<String, BTreeMap<i64, Agg>>,
    key: String,
}

impl<'n> EachSeries<'n> {
    pub(super) fn new(names: &'n [&'n str]) -> EachSeries<'n> {
        EachSeries { names, bucket_ms: 0, series: BTreeMap::new(), key: String::new() }
    }
}

impl Sink for EachSeries<'_> {
    fn wants(&self, name: &str, _subject: Option<&str>) -> bool {
        self.names.contains(&name)
    }

    fn add(&mut self, name: &str, subject: Option<&str>, agg: Agg, _last: f64) {
        let buckets = match self.series.get_mut(series_key(&mut self.key, name, subject)) {
            Some(buckets) => buckets,
            None => self.series.entry(self.key.clone()).or_default(),
        };
        match buckets.get_mut(&self.bucket_ms) {
            Some(total) => total.merge(agg),
            None => {
                buckets.insert(self.bucket_ms, agg);
            }
        }
    }
}

/// Reads one `vals` array, folding the entries the sink wants and skipping the others without
/// parsing their numbers: a row holds every metric of a server, a chart or a report wants a
/// few, and parsing numbers is most of the cost of reading a row.
struct Pick<'a> {
    sink: &'a mut dyn Sink,
    /// Rollup entries (`[name, subject, count, sum, min, max]`, a day's with `last` after them)
    /// rather than raw ones.
    rollup: bool,
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of metric entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(PickEntry(Pick { sink: &mut *self.sink, rollup: self.rollup }))?.is_some() {}
        Ok(())
    }
}

/// One entry of the array [`Pick`] reads.
struct PickEntry<'a>(Pick<'a>);

impl<'de> DeserializeSeed<'de> for PickEntry<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PickEntry<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(if self.0.rollup { "[name, subject, count, sum, min, max]" } else { "[name, subject, value]" })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        fn next<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(
            seq: &mut A,
            index: usize,
            expected: &dyn Expected,
        ) -> std::result::Result<T, A::Error> {
            seq.next_element()?.ok_or_else(|| A::Error::invalid_length(index, expected))
        }
        let name: Str = next(&mut seq, 0, &self)?;
        let subject: Option<Str> = next(&mut seq, 1, &self)?;
        let subject = subject.as_ref().map(|s| &*s.0);
        if self.0.sink.wants(&name.0, subject) {
            let (agg, last) = if self.0.rollup {
                let agg = Agg {
                    count: next(&mut seq, 2, &self)?,
                    sum: next(&mut seq, 3, &self)?,
                    min: next(&mut seq, 4, &self)?,
                    max: next(&mut seq, 5, &self)?,
                };
                (agg, seq.next_element::<f64>()?.unwrap_or_else(|| agg.avg()))
            } else {
                let value = next(&mut seq, 2, &self)?;
                (Agg::one(value), value)
            };
            self.0.sink.add(&name.0, subject, agg, last);
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// The first value of a report JSON cannot hold.
pub(super) fn non_finite(report: &Report) -> Option<String> {
    if let Some(m) = report.metrics.iter().find(|m| !m.value.is_finite()) {
        let subject = m.subject.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
        return Some(format!("{}{subject} is {}", m.name, m.value));
    }
    report
        .processes
        .iter()
        .find(|p| !p.memory.is_finite() || p.cpu.is_some_and(|c| !c.is_finite()))
        .map(|p| format!("process {} ({}) has cpu {:?}, memory {}", p.pid, p.name, p.cpu, p.memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_vals_round_trip_with_escapes() {
        let metrics = vec![
            MetricValue { name: "cpu.usage", subject: None, value: 12.5 },
            MetricValue { name: "disk.usage", subject: Some("/mnt/a \"b\"\\c".into()), value: 0.1 + 0.2 },
        ];
        let text = to_json(&RawVals(&metrics)).unwrap();
        assert_eq!(text, r#"[["cpu.usage",null,12.5],["disk.usage","/mnt/a \"b\"\\c",0.30000000000000004]]"#);
        let mut bucket = Bucket::default();
        bucket.add_raw(&mut String::new(), &text).unwrap();
        bucket.add_raw(&mut String::new(), r#"[["cpu.usage",null,7.5]]"#).unwrap();
        assert_eq!(
            bucket.encode().unwrap(),
            r#"[["cpu.usage",null,2,20.0,7.5,12.5],["disk.usage","/mnt/a \"b\"\\c",1,0.30000000000000004,0.30000000000000004,0.30000000000000004]]"#
        );
    }

    #[test]
    fn sums_saturate_instead_of_overflowing() {
        let mut agg = Agg::one(f64::MAX);
        agg.merge(Agg::one(f64::MAX));
        assert_eq!((agg.count, agg.sum, agg.max), (2, f64::MAX, f64::MAX));
        let mut low = Agg::one(f64::MIN);
        low.merge(Agg::one(f64::MIN));
        assert_eq!(low.sum, f64::MIN);
    }

    #[test]
    fn charts_pick_their_series_and_refuse_malformed_rows() {
        let mut aggs = SubjectAggs::new();
        let disk = Wanted { name: "disk.usage", subject: None };
        disk.fold(&mut aggs, r#"[["cpu.usage",null,1],["disk.usage","/",40.5],["disk.usage","/h\"o",7]]"#, false).unwrap();
        disk.fold(&mut aggs, r#"[["cpu.usage",null,2,3.0,1.0,2.0],["disk.usage","/",2,81.0,40.0,41.0]]"#, true).unwrap();
        assert_eq!(aggs.get(&Some("/".into())), Some(&Agg { count: 3, sum: 121.5, min: 40.0, max: 41.0 }));
        assert_eq!(aggs.get(&Some("/h\"o".into())), Some(&Agg::one(7.0)));
        assert_eq!(aggs.len(), 2);
        let root = Wanted { name: "disk.usage", subject: Some("/") };
        let mut only_root = SubjectAggs::new();
        root.fold(&mut only_root, r#"[["disk.usage","/",1],["disk.usage","/home",2]]"#, false).unwrap();
        assert_eq!(only_root.into_iter().collect::<Vec<_>>(), vec![(Some("/".to_string()), Agg::one(1.0))]);

        for bad in ["", "{}", "[[\"disk.usage\"]]", "[[\"disk.usage\",\"/\"]]", "[[\"disk.usage\",\"/\",null]]", "[]x", "[[1,null,1]]"] {
            let err = disk.fold(&mut SubjectAggs::new(), bad, false).unwrap_err();
            assert!(matches!(&err, StoreError::Corrupt(m) if m.starts_with("metric_samples.vals")), "{bad}: {err}");
            assert!(Bucket::default().add_raw(&mut String::new(), bad).is_err(), "{bad}");
        }
        assert!(disk.fold(&mut SubjectAggs::new(), r#"[["disk.usage","/",1,2.0]]"#, true).is_err(), "a short rollup entry");
    }

    #[test]
    fn no_subject_takes_the_highest_subject_per_statistic() {
        let mut aggs = SubjectAggs::new();
        aggs.insert(Some("/".into()), Agg { count: 2, sum: 20.0, min: 5.0, max: 15.0 });
        aggs.insert(Some("/home".into()), Agg { count: 1, sum: 8.0, min: 8.0, max: 8.0 });
        assert_eq!(point(7, &aggs), Some(SeriesPoint { at_ms: 7, avg: 10.0, min: 8.0, max: 15.0 }));
        assert_eq!(point(7, &SubjectAggs::new()), None);
    }
}
