-- Daily rollups of host metrics. Keep in step with ../sqlite/0012_daily_rollups.sql.
-- metric_rollups gains a third resolution, 86400000 (one UTC day), rolled up from the hourly
-- rows; a day's vals hold [name, subject, count, sum, min, max, last] per series, where last is
-- the average of the newest hour holding the series. Reports read whole days from them.
--   rolled_1d  every UTC day starting before this is rolled up (NULL: not yet; the first
--              roll-up starts from the oldest hourly rollup).
INSERT INTO metric_marks (name, value) VALUES ('rolled_1d', NULL);
