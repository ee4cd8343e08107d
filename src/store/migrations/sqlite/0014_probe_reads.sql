-- The events' index carries the reason, so failures are counted (the disconnect log by year,
-- month, day or hour) from the index alone. Keep in step with ../postgres/0014_probe_reads.sql.
DROP INDEX probe_events_target_at;
CREATE INDEX probe_events_target_at ON probe_events (target, at_ms, reason);
