-- The events' index carries the reason, so failures are counted (the disconnect log by year,
-- month, day or hour) from the index alone. Keep in step with ../sqlite/0014_probe_reads.sql.
DROP INDEX probe_events_target_at;
CREATE INDEX probe_events_target_at ON probe_events (target, at_ms, reason);

-- An hour row is rewritten with every batch of its hour's checks (about 20 times): room on each
-- page lets PostgreSQL put the new version beside the old one (a HOT update, no new index
-- entry) and reuse the dead one's space, instead of growing the table and its index.
ALTER TABLE probe_hours SET (fillfactor = 70);
