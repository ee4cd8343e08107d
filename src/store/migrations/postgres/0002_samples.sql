-- Host metrics, PostgreSQL. Keep in step with ../sqlite/0002_samples.sql: the same tables and
-- columns; only the id column (GENERATED ALWAYS AS IDENTITY) and a storage parameter differ. Values are JSON text
-- (the encodings are described in src/store/samples.rs). The sample and rollup tables keep rows
-- of up to a page inline and uncompressed (toast_tuple_target): TOAST would otherwise compress
-- and chunk every row of more than 2 KB, which halved the speed of reading an hour of raw samples.

-- Raw samples: one row per host report. `vals` holds every metric value of the report as
-- [name, subject, value] triples, subject null for host-wide metrics:
-- [["cpu.usage",null,12.5],["disk.usage","/",40.1]]. The key makes a re-sent report a no-op.
CREATE TABLE metric_samples (
    project TEXT   NOT NULL,
    server  TEXT   NOT NULL,
    at_ms   BIGINT NOT NULL,
    vals    TEXT   NOT NULL,
    PRIMARY KEY (project, server, at_ms)
) WITH (toast_tuple_target = 8160);
CREATE INDEX metric_samples_at ON metric_samples (at_ms);

-- Rollups of raw samples (resolution 300000, 5 minutes) and of 5-minute rollups (3600000, 1 hour):
-- one row per server and bucket; `vals` holds [name, subject, count, sum, min, max] per series,
-- sorted by name and subject.
CREATE TABLE metric_rollups (
    project       TEXT   NOT NULL,
    server        TEXT   NOT NULL,
    resolution_ms BIGINT NOT NULL,
    bucket_ms     BIGINT NOT NULL,
    vals          TEXT   NOT NULL,
    PRIMARY KEY (project, server, resolution_ms, bucket_ms)
) WITH (toast_tuple_target = 8160);
CREATE INDEX metric_rollups_resolution_bucket ON metric_rollups (resolution_ms, bucket_ms);

-- Where rolling up and pruning stand, one row each (NULL: not yet):
--   rolled_5m   every 5-minute bucket starting before this is rolled up (the watermark);
--   rolled_1h   every hour starting before this is rolled up;
--   late_before a report for a 5-minute bucket starting before this is late: marked below;
--   raw_from    raw samples before this were pruned; older reports are not stored;
--   rollup_run  bumped by every write of roll_up, so two concurrent runs cannot both write.
CREATE TABLE metric_marks (
    name  TEXT PRIMARY KEY,
    value BIGINT
);
INSERT INTO metric_marks (name, value) VALUES
    ('rolled_5m', NULL), ('rolled_1h', NULL), ('late_before', NULL), ('raw_from', NULL), ('rollup_run', 0);

-- 5-minute buckets that received reports after they were rolled up (an agent sending its
-- backlog): roll_up aggregates them again, and their hour.
CREATE TABLE metric_late_buckets (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project   TEXT   NOT NULL,
    server    TEXT   NOT NULL,
    bucket_ms BIGINT NOT NULL
);

-- The newest report of every server (facts and the whole report as JSON), so that serve can
-- restore its live view after a restart.
CREATE TABLE server_states (
    project        TEXT   NOT NULL,
    server         TEXT   NOT NULL,
    last_report_ms BIGINT NOT NULL,
    boot_time      BIGINT NOT NULL,
    facts          TEXT   NOT NULL,
    latest         TEXT   NOT NULL,
    PRIMARY KEY (project, server)
);
