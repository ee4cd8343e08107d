//! A period's statistics of chosen metrics, per server and series, for reports: the coarsest
//! stored data that covers the period exactly, read in one pass over the project's rows.

use std::collections::{BTreeMap, HashMap};
use std::future::poll_fn;
use std::pin::Pin;

use futures_core::Stream;
use sqlx::Row;

use super::*;

/// The statistics of one series (a metric and its subject) of one server over a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodSeries {
    /// Raw samples behind the figures.
    pub count: u64,
    pub avg: f64,
    pub min: f64,
    pub max: f64,
    /// The average of the newest bucket in the period that holds the series: its value at the
    /// period's end, as closely as rollups keep it.
    pub last: f64,
}

/// One server's series over a period, by metric name and subject (`None` for host-wide metrics).
pub type PeriodStats = BTreeMap<(String, Option<String>), PeriodSeries>;

/// One segment's rows of every server of a project, oldest first (so each server's are too):
/// the order of the (resolution, bucket) index, which SQLite reads without sorting. Ordered by
/// server first, it sorted every row with its `vals` in a temporary file.
const PERIOD_ROLLUPS: &str = "SELECT server, vals FROM metric_rollups
    WHERE project = $1 AND resolution_ms = $2 AND bucket_ms >= $3 AND bucket_ms < $4 ORDER BY bucket_ms";
const PERIOD_RAW: &str = "SELECT server, vals FROM metric_samples
    WHERE project = $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms";

/// The [`Sink`] of one server's period: the named metrics, every subject, plus each series'
/// newest bucket. Series are keyed by [`series_key`], so folding a row allocates nothing once
/// its series are known.
struct PeriodSink<'n> {
    names: &'n [&'n str],
    key: String,
    series: BTreeMap<String, (Agg, f64)>,
}

impl<'n> PeriodSink<'n> {
    fn new(names: &'n [&'n str]) -> PeriodSink<'n> {
        PeriodSink { names, key: String::new(), series: BTreeMap::new() }
    }

    fn stats(self) -> PeriodStats {
        self.series
            .into_iter()
            .map(|(key, (agg, last))| {
                let (name, subject) = split_key(&key);
                (
                    (name.to_string(), subject.map(str::to_string)),
                    PeriodSeries { count: agg.count, avg: agg.avg(), min: agg.min, max: agg.max, last },
                )
            })
            .collect()
    }
}

impl Sink for PeriodSink<'_> {
    fn wants(&self, name: &str, _subject: Option<&str>) -> bool {
        self.names.contains(&name)
    }

    fn add(&mut self, name: &str, subject: Option<&str>, agg: Agg, newest: f64) {
        // Rows come oldest first and hold each series once, so the last add is the newest bucket.
        match self.series.get_mut(series_key(&mut self.key, name, subject)) {
            Some((total, last)) => {
                total.merge(agg);
                *last = newest;
            }
            None => {
                self.series.insert(self.key.clone(), (agg, newest));
            }
        }
    }
}

/// The start of the bucket of `step` at or after `at_ms`.
fn ceil_to(at_ms: i64, step: i64) -> i64 {
    let floor = floor_to(at_ms, step);
    if floor == at_ms { floor } else { floor.saturating_add(step) }
}

/// The next item of a row stream.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

impl Store {
    /// The servers of `project` that ever reported, by name.
    pub async fn reported_servers(&self, project: &str) -> Result<Vec<String>> {
        const SERVERS: &str = "SELECT server FROM server_states WHERE project = $1 ORDER BY server";
        on_pool!(self, pool => {
            let found = sqlx::query(SERVERS).bind(project).fetch_all(pool).await?;
            found.iter().map(|row| row.col("server")).collect()
        })
    }

    /// Whether the database holds any host report or alert at all (a report over an empty one
    /// points at the wrong database more often than at a quiet project).
    pub async fn holds_data(&self) -> Result<bool> {
        const ANY: &str = "SELECT (EXISTS (SELECT 1 FROM server_states) OR EXISTS (SELECT 1 FROM alerts)) AS found";
        on_pool!(self, pool => Ok(sqlx::query(ANY).fetch_one(pool).await?.col::<bool>("found")?))
    }

    /// The statistics of the metrics `names` (every subject) of each of `servers` over
    /// [from, to): daily rollups for the whole UTC days rolled up, hourly rollups for the other
    /// whole hours rolled up (a local day is a UTC day only where the offset is 0), 5-minute
    /// rollups for the rest rolled up (the part of an hour at either end when the period does
    /// not start or end on one, as in a timezone offset by half an hour), raw samples for what
    /// is not rolled up yet. A server without data in the period has an empty map.
    ///
    /// A month of a server is about 30 day rows and 24 hour rows rather than 744 hours: reading
    /// the `vals` text is most of a report's cost. One query per segment reads every server of
    /// the project, streamed row by row into each server's sums, all in one read snapshot.
    pub async fn period_stats(
        &self,
        project: &str,
        servers: &[String],
        from_ms: i64,
        to_ms: i64,
        names: &[&str],
    ) -> Result<Vec<PeriodStats>> {
        let index: HashMap<&str, usize> = servers.iter().enumerate().map(|(i, server)| (server.as_str(), i)).collect();
        let mut sinks: Vec<PeriodSink> = servers.iter().map(|_| PeriodSink::new(names)).collect();
        on_pool!(self, pool => {
            let mut tx = pool.begin_read().await?;
            let marks = Marks::from_rows(&sqlx::query(ALL_MARKS).fetch_all(&mut *tx).await?)?;
            let whole_hours = (ceil_to(from_ms, HOUR_MS), floor_to(to_ms, HOUR_MS).min(marks.rolled_1h.unwrap_or(i64::MIN)));
            let (hour_from, hour_to) = if whole_hours.0 < whole_hours.1 { whole_hours } else { (from_ms, from_ms) };
            let whole_days = (ceil_to(hour_from, DAY_MS), floor_to(hour_to, DAY_MS).min(marks.rolled_1d.unwrap_or(i64::MIN)));
            let (day_from, day_to) = if whole_days.0 < whole_days.1 { whole_days } else { (hour_to, hour_to) };
            let five_to = marks.rolled_5m.unwrap_or(hour_to).clamp(hour_to, to_ms.max(hour_to));
            // Oldest first: the head of an hour, the hours before the first whole day, whole
            // days, the hours after them, 5-minute buckets, raw samples.
            let segments = [
                (FIVE_MINUTES_MS, from_ms, hour_from),
                (HOUR_MS, hour_from, day_from),
                (DAY_MS, day_from, day_to),
                (HOUR_MS, day_to, hour_to),
                (FIVE_MINUTES_MS, hour_to, five_to),
                (RAW, five_to, to_ms),
            ];
            for (resolution, from, to) in segments {
                if from >= to {
                    continue;
                }
                let query = if resolution == RAW {
                    sqlx::query(PERIOD_RAW).bind(project).bind(from).bind(to)
                } else {
                    sqlx::query(PERIOD_ROLLUPS).bind(project).bind(resolution).bind(from).bind(to)
                };
                let mut rows = query.fetch(&mut *tx);
                while let Some(row) = next(&mut rows).await {
                    let row = row?;
                    let Some(&i) = index.get(row.try_get::<&str, _>("server")?) else { continue };
                    fold(&mut sinks[i], row.try_get::<&str, _>("vals")?, resolution != RAW)?;
                }
            }
            tx.commit().await?;
        });
        Ok(sinks.into_iter().map(PeriodSink::stats).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_rounds_up_to_the_next_boundary_only_off_one() {
        assert_eq!(ceil_to(0, HOUR_MS), 0);
        assert_eq!(ceil_to(1, HOUR_MS), HOUR_MS);
        assert_eq!(ceil_to(-1, HOUR_MS), 0);
        assert_eq!(ceil_to(30 * 60_000, HOUR_MS), HOUR_MS);
    }

    #[test]
    fn a_period_sink_keys_series_by_name_and_subject_and_keeps_the_newest_bucket() {
        let names = ["disk.usage", "cpu.usage"];
        let mut sink = PeriodSink::new(&names);
        fold(&mut sink, r#"[["cpu.usage",null,2,10.0,4.0,6.0],["disk.usage","/",1,40.0,40.0,40.0],["load.1",null,1,1.0,1.0,1.0]]"#, true)
            .unwrap();
        fold(
            &mut sink,
            r#"[["cpu.usage",null,1,2.0,2.0,2.0],["disk.usage","/",1,50.0,50.0,50.0],["disk.usage","/a\u0000b",1,7.0,7.0,7.0]]"#,
            true,
        )
        .unwrap();
        let stats = sink.stats();
        let get = |name: &str, subject: Option<&str>| stats[&(name.to_string(), subject.map(str::to_string))];
        assert_eq!(get("cpu.usage", None), PeriodSeries { count: 3, avg: 4.0, min: 2.0, max: 6.0, last: 2.0 });
        assert_eq!(get("disk.usage", Some("/")), PeriodSeries { count: 2, avg: 45.0, min: 40.0, max: 50.0, last: 50.0 });
        assert_eq!(get("disk.usage", Some("/a\0b")).avg, 7.0, "a subject may hold the separator");
        assert_eq!(stats.len(), 3, "{stats:?}");
    }
}
