//! A period's statistics of chosen metrics, per server and series, for reports: the coarsest
//! stored data that covers the period exactly.

use std::collections::BTreeMap;

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

/// The [`Sink`] of a period: the named metrics, every subject, plus each series' newest bucket.
struct PeriodSink<'n> {
    names: &'n [&'n str],
    series: BTreeMap<(String, Option<String>), (Agg, f64)>,
}

impl Sink for PeriodSink<'_> {
    fn wants(&self, name: &str, _subject: Option<&str>) -> bool {
        self.names.contains(&name)
    }

    fn add(&mut self, name: &str, subject: Option<&str>, agg: Agg) {
        // Rows come oldest first and hold each series once, so the last add is the newest bucket.
        match self.series.get_mut(&(name.to_string(), subject.map(str::to_owned))) {
            Some((total, last)) => {
                total.merge(agg);
                *last = agg.avg();
            }
            None => {
                self.series.insert((name.to_string(), subject.map(str::to_owned)), (agg, agg.avg()));
            }
        }
    }
}

/// The start of the bucket of `step` at or after `at_ms`.
fn ceil_to(at_ms: i64, step: i64) -> i64 {
    let floor = floor_to(at_ms, step);
    if floor == at_ms { floor } else { floor.saturating_add(step) }
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
    /// [from, to): hourly rollups for the whole hours rolled up, 5-minute rollups for the rest
    /// rolled up (the part of an hour at either end when the period does not start or end on
    /// one, as in a timezone offset by half an hour), raw samples for what is not rolled up yet.
    /// A server without data in the period has an empty map.
    pub async fn period_stats(
        &self,
        project: &str,
        servers: &[String],
        from_ms: i64,
        to_ms: i64,
        names: &[&str],
    ) -> Result<Vec<PeriodStats>> {
        let marks = on_pool!(self, pool => Marks::from_rows(&sqlx::query(ALL_MARKS).fetch_all(pool).await?)?);
        let whole_hours = (ceil_to(from_ms, HOUR_MS), floor_to(to_ms, HOUR_MS).min(marks.rolled_1h.unwrap_or(i64::MIN)));
        let (hour_from, hour_to) = if whole_hours.0 < whole_hours.1 { whole_hours } else { (from_ms, from_ms) };
        let five_to = marks.rolled_5m.unwrap_or(hour_to).clamp(hour_to, to_ms.max(hour_to));
        // Oldest first: the head of an hour, whole hours, 5-minute buckets, raw samples.
        let segments = [
            (FIVE_MINUTES_MS, from_ms, hour_from),
            (HOUR_MS, hour_from, hour_to),
            (FIVE_MINUTES_MS, hour_to, five_to),
            (RAW, five_to, to_ms),
        ];
        let mut all = Vec::with_capacity(servers.len());
        for server in servers {
            let mut sink = PeriodSink { names, series: BTreeMap::new() };
            for (resolution, from, to) in segments {
                if from >= to {
                    continue;
                }
                for (_, vals) in self.rows(project, server, resolution, from, to).await? {
                    fold(&mut sink, &vals, resolution != RAW)?;
                }
            }
            all.push(
                sink.series
                    .into_iter()
                    .map(|(key, (agg, last))| (key, PeriodSeries { count: agg.count, avg: agg.avg(), min: agg.min, max: agg.max, last }))
                    .collect(),
            );
        }
        Ok(all)
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
}
