//! Rolling raw samples up into 5-minute, hourly and daily rollups, late buckets included, as the
//! parent module's documentation describes; one run at a time wins (the `rollup_run` counter).

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// A rollup row to write.
struct RollupRow {
    project: String,
    server: String,
    resolution_ms: i64,
    bucket_ms: i64,
    vals: String,
}

/// One server's share of a roll_up run.
#[derive(Debug, Default)]
struct ServerWork {
    /// From server_states: no raw sample is newer.
    last_report_ms: Option<i64>,
    /// Late 5-minute buckets to aggregate again.
    late: BTreeSet<i64>,
}

impl ServerWork {
    /// What to aggregate of this server at one resolution: the range [from, until) if it
    /// reported since it began, then each late bucket of `step`.
    fn ranges(&self, (from, until): (i64, i64), late: impl IntoIterator<Item = i64>, step: i64) -> Vec<(i64, i64)> {
        let whole = (from < until && self.last_report_ms.is_some_and(|t| t >= from)).then_some((from, until));
        whole.into_iter().chain(late.into_iter().map(|bucket| (bucket, bucket.saturating_add(step)))).collect()
    }
}

/// The writes of one roll_up run, in transactions guarded by the run counter.
struct RollupWriter {
    run: i64,
    pending: Vec<RollupRow>,
    stats: RollupStats,
}

impl Store {
    /// Roll up what is complete at `now_ms`: every 5-minute bucket since the watermark that
    /// ended at least [`GRACE_MS`] ago and every late bucket, for all servers; then every hour
    /// those cover. The first run starts from the oldest raw sample. Idempotent, restart-safe
    /// (the watermarks are in the database) and safe against a concurrent run.
    pub async fn roll_up(&self, now_ms: i64) -> Result<RollupStats> {
        const LATE: &str = "SELECT id, project, server, bucket_ms FROM metric_late_buckets";
        const SERVERS: &str = "SELECT project, server, last_report_ms FROM server_states";
        const OLDEST_RAW: &str = "SELECT MIN(at_ms) AS oldest FROM metric_samples";
        const OLDEST_ROLLUP: &str = "SELECT MIN(bucket_ms) AS oldest FROM metric_rollups WHERE resolution_ms = $1";

        let cut = floor_to(now_ms.saturating_sub(GRACE_MS), FIVE_MINUTES_MS);
        // From here on, reports for buckets before `cut` count as late (see the module docs).
        let (marks, late) = on_pool!(self, pool => {
            let raise = match self.backend {
                Backend::Sqlite(_) => RAISE_MARK,
                Backend::Postgres(_) => RAISE_MARK_POSTGRES,
            };
            sqlx::query(raise).bind("late_before").bind(cut).execute(pool).await?;
            let marks = Marks::from_rows(&sqlx::query(ALL_MARKS).fetch_all(pool).await?)?;
            let late = sqlx::query(LATE).fetch_all(pool).await?;
            let late = late
                .iter()
                .map(|row| Ok((row.col::<i64>("id")?, row.col::<String>("project")?, row.col::<String>("server")?, row.col::<i64>("bucket_ms")?)))
                .collect::<Result<Vec<_>>>()?;
            (marks, late)
        });

        let five_from = match marks.rolled_5m {
            Some(mark) => mark,
            None => on_pool!(self, pool => {
                sqlx::query(OLDEST_RAW).fetch_one(pool).await?.col::<Option<i64>>("oldest")?.map_or(cut, |t| floor_to(t, FIVE_MINUTES_MS))
            }),
        };
        let five_until = five_from.max(cut);
        // Late buckets at or after `cut` wait for a later run; those in [five_from, cut) are
        // covered by the range.
        let (done_late, waiting_late): (Vec<_>, Vec<_>) = late.into_iter().partition(|(_, _, _, bucket)| *bucket < cut);
        if five_from >= five_until
            && done_late.is_empty()
            && marks.rolled_1h.is_some_and(|h| h >= floor_to(five_until, HOUR_MS))
            && marks.rolled_1d.is_some_and(|d| d >= floor_to(floor_to(five_until, HOUR_MS), DAY_MS))
        {
            return Ok(RollupStats::default());
        }

        let mut work: BTreeMap<(String, String), ServerWork> = BTreeMap::new();
        on_pool!(self, pool => {
            for row in sqlx::query(SERVERS).fetch_all(pool).await? {
                work.entry((row.col("project")?, row.col("server")?)).or_default().last_report_ms = Some(row.col("last_report_ms")?);
            }
        });
        for (_, project, server, bucket) in &done_late {
            if *bucket < five_from {
                work.entry((project.clone(), server.clone())).or_default().late.insert(*bucket);
            }
        }

        let mut writer = RollupWriter { run: marks.rollup_run, pending: Vec::new(), stats: RollupStats::default() };
        let mut key = String::new();
        // Hours before the hour watermark that late buckets changed, per server.
        let mut late_hours: BTreeMap<&(String, String), BTreeSet<i64>> = BTreeMap::new();

        // 5-minute buckets from raw samples: the range since the watermark, then late ones.
        for (id, server_work) in &work {
            let (project, server) = id;
            let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
            if five_from < five_until && server_work.last_report_ms.is_some_and(|t| t >= five_from) {
                for (at_ms, vals) in self.rows(project, server, RAW, five_from, five_until).await? {
                    buckets.entry(floor_to(at_ms, FIVE_MINUTES_MS)).or_default().add_raw(&mut key, &vals)?;
                }
            }
            for &bucket in &server_work.late {
                let mut aggregated = Bucket::default();
                for (_, vals) in self.rows(project, server, RAW, bucket, bucket.saturating_add(FIVE_MINUTES_MS)).await? {
                    aggregated.add_raw(&mut key, &vals)?;
                }
                buckets.insert(bucket, aggregated);
                writer.stats.late_buckets += 1;
                if marks.rolled_1h.is_some_and(|h| bucket < h) {
                    late_hours.entry(id).or_default().insert(floor_to(bucket, HOUR_MS));
                }
            }
            for (bucket_ms, aggregated) in buckets {
                if !aggregated.series.is_empty() {
                    let row = RollupRow {
                        project: project.clone(),
                        server: server.clone(),
                        resolution_ms: FIVE_MINUTES_MS,
                        bucket_ms,
                        vals: aggregated.encode()?,
                    };
                    writer.stats.five_minute_rows += 1;
                    if !self.push_rollup(&mut writer, row).await? {
                        return Ok(writer.stats);
                    }
                }
            }
        }
        if !self.flush_rollups(&mut writer).await? {
            return Ok(writer.stats);
        }

        // Hours from 5-minute rollups: every hour the 5-minute watermark now covers, then the
        // hours of late buckets.
        let hour_until = floor_to(five_until, HOUR_MS);
        let hour_from = match marks.rolled_1h {
            Some(mark) => mark,
            None => on_pool!(self, pool => {
                let oldest = sqlx::query(OLDEST_ROLLUP).bind(FIVE_MINUTES_MS).fetch_one(pool).await?.col::<Option<i64>>("oldest")?;
                oldest.map_or(hour_until, |t| floor_to(t, HOUR_MS))
            }),
        };
        for (id, server_work) in &work {
            let (project, server) = id;
            let late = late_hours.get(id).into_iter().flatten().copied();
            for (from, to) in server_work.ranges((hour_from, hour_until), late, HOUR_MS) {
                let mut hours: BTreeMap<i64, Bucket> = BTreeMap::new();
                for (bucket_ms, vals) in self.rows(project, server, FIVE_MINUTES_MS, from, to).await? {
                    hours.entry(floor_to(bucket_ms, HOUR_MS)).or_default().add_rollup(&mut key, &vals)?;
                }
                let rows = hours.into_iter().map(|(bucket_ms, hour)| Ok((bucket_ms, hour.encode()?))).collect::<Result<_>>()?;
                if !self.push_rows(&mut writer, id, HOUR_MS, rows).await? {
                    return Ok(writer.stats);
                }
            }
        }
        if !self.flush_rollups(&mut writer).await? {
            return Ok(writer.stats);
        }

        // Days from hourly rollups: the days the hour watermark now covers (at most DAYS_PER_RUN
        // of them), then the days of late hours.
        let hour_mark = hour_from.max(hour_until);
        let day_from = match marks.rolled_1d {
            Some(mark) => mark,
            None => on_pool!(self, pool => {
                let oldest = sqlx::query(OLDEST_ROLLUP).bind(HOUR_MS).fetch_one(pool).await?.col::<Option<i64>>("oldest")?;
                oldest.map_or(floor_to(hour_mark, DAY_MS), |t| floor_to(t, DAY_MS))
            }),
        };
        let day_until = floor_to(hour_mark, DAY_MS).min(day_from.saturating_add(DAYS_PER_RUN * DAY_MS));
        for (id, server_work) in &work {
            let (project, server) = id;
            let late: BTreeSet<i64> = late_hours
                .get(id)
                .into_iter()
                .flatten()
                .map(|&h| floor_to(h, DAY_MS))
                .filter(|&d| marks.rolled_1d.is_some_and(|mark| d < mark))
                .collect();
            for (from, to) in server_work.ranges((day_from, day_until), late, DAY_MS) {
                let mut days: BTreeMap<i64, Day> = BTreeMap::new();
                for (bucket_ms, vals) in self.rows(project, server, HOUR_MS, from, to).await? {
                    days.entry(floor_to(bucket_ms, DAY_MS)).or_default().add_hour(&mut key, &vals)?;
                }
                let rows = days.into_iter().map(|(bucket_ms, day)| Ok((bucket_ms, day.encode()?))).collect::<Result<_>>()?;
                if !self.push_rows(&mut writer, id, DAY_MS, rows).await? {
                    return Ok(writer.stats);
                }
            }
        }
        if !self.flush_rollups(&mut writer).await? {
            return Ok(writer.stats);
        }

        // Advance the watermarks and forget the late buckets done, if no other run wrote meanwhile.
        let done_ids: Vec<i64> = done_late.iter().map(|(id, ..)| *id).collect();
        let day_mark = day_from.max(day_until);
        let finished = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if sqlx::query(BUMP_RUN).bind(writer.run).execute(&mut *tx).await?.rows_affected() == 0 {
                false
            } else {
                sqlx::query(SET_MARK).bind("rolled_5m").bind(five_until).execute(&mut *tx).await?;
                sqlx::query(SET_MARK).bind("rolled_1h").bind(hour_mark).execute(&mut *tx).await?;
                sqlx::query(SET_MARK).bind("rolled_1d").bind(day_mark).execute(&mut *tx).await?;
                for chunk in done_ids.chunks(LATE_DELETE_CHUNK) {
                    let mut delete = QueryBuilder::new("DELETE FROM metric_late_buckets WHERE id IN (");
                    let mut ids = delete.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    delete.push(")");
                    delete.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                true
            }
        });
        if !finished {
            return Ok(self.superseded(writer.stats));
        }
        tracing::debug!(
            five_minute_rows = writer.stats.five_minute_rows,
            hour_rows = writer.stats.hour_rows,
            day_rows = writer.stats.day_rows,
            late_buckets = writer.stats.late_buckets,
            late_waiting = waiting_late.len(),
            rolled_5m = five_until,
            rolled_1h = hour_mark,
            rolled_1d = day_mark,
            "Rolled up host metrics."
        );
        Ok(writer.stats)
    }

    /// Queue one server's hourly or daily rows (bucket start, `vals`), counting them. `false`:
    /// superseded, stop.
    async fn push_rows(
        &self,
        writer: &mut RollupWriter,
        (project, server): &(String, String),
        resolution_ms: i64,
        rows: Vec<(i64, String)>,
    ) -> Result<bool> {
        for (bucket_ms, vals) in rows {
            if resolution_ms == DAY_MS {
                writer.stats.day_rows += 1;
            } else {
                writer.stats.hour_rows += 1;
            }
            let row = RollupRow { project: project.clone(), server: server.clone(), resolution_ms, bucket_ms, vals };
            if !self.push_rollup(writer, row).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Queue a rollup row; write the queue when it is full. `false`: superseded, stop.
    async fn push_rollup(&self, writer: &mut RollupWriter, row: RollupRow) -> Result<bool> {
        writer.pending.push(row);
        if writer.pending.len() < ROLLUP_WRITE_CHUNK {
            return Ok(true);
        }
        self.flush_rollups(writer).await
    }

    /// Write the queued rollup rows in one transaction, if no other run wrote since this one's
    /// last write. `false`: another did; nothing was written.
    async fn flush_rollups(&self, writer: &mut RollupWriter) -> Result<bool> {
        if writer.pending.is_empty() {
            return Ok(true);
        }
        let ok = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if sqlx::query(BUMP_RUN).bind(writer.run).execute(&mut *tx).await?.rows_affected() == 0 {
                false
            } else {
                let mut upsert = QueryBuilder::new("INSERT INTO metric_rollups (project, server, resolution_ms, bucket_ms, vals) ");
                upsert.push_values(&writer.pending, |mut row, r| {
                    row.push_bind(&r.project).push_bind(&r.server).push_bind(r.resolution_ms).push_bind(r.bucket_ms).push_bind(&r.vals);
                });
                upsert.push(" ON CONFLICT (project, server, resolution_ms, bucket_ms) DO UPDATE SET vals = excluded.vals");
                upsert.build().execute(&mut *tx).await?;
                tx.commit().await?;
                true
            }
        });
        if !ok {
            writer.stats = self.superseded(writer.stats);
            return Ok(false);
        }
        writer.run += 1;
        writer.pending.clear();
        Ok(true)
    }

    fn superseded(&self, stats: RollupStats) -> RollupStats {
        tracing::debug!(backend = self.backend(), "Another roll-up wrote meanwhile; this one stops.");
        RollupStats { superseded: true, ..stats }
    }
}
