-- Probe results as events and rollups (see src/store/probes.rs). Keep in step with
-- ../sqlite/0006_probe_rollups.sql. probe_results stays until its rows are converted (at start,
-- in chunks, resumable); new checks never go there.

-- One row per checked (project, monitor, host, port), with its newest check.
CREATE TABLE probe_targets (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project         TEXT    NOT NULL,
    monitor         TEXT    NOT NULL,
    host            TEXT    NOT NULL,
    port            BIGINT  NOT NULL,
    last_at_ms      BIGINT,
    last_ok         BOOLEAN,
    last_latency_ms BIGINT,
    last_reason     BIGINT,
    UNIQUE (project, monitor, port, host)
);

-- Error kind and message of failures, each text once.
CREATE TABLE probe_reasons (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind    TEXT NOT NULL,
    message TEXT NOT NULL,
    UNIQUE (kind, message)
);

-- Every failed check (reason set) and every recovery (the first good check after a failure;
-- reason NULL).
CREATE TABLE probe_events (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target BIGINT NOT NULL,
    at_ms  BIGINT NOT NULL,
    reason BIGINT
);
CREATE INDEX probe_events_target_at ON probe_events (target, at_ms);

-- Checks of one target in one hour (hour = epoch ms / 3 600 000): counts, latency of good checks
-- (min, max, sum, histogram) and the checks per 5-minute slot.
CREATE TABLE probe_hours (
    target   BIGINT NOT NULL,
    hour     BIGINT NOT NULL,
    checks   BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    lat_min  BIGINT,
    lat_max  BIGINT,
    lat_sum  BIGINT NOT NULL,
    hist     BYTEA  NOT NULL,
    slots    BYTEA  NOT NULL,
    PRIMARY KEY (target, hour)
);

-- The same per UTC day (day = epoch ms / 86 400 000), rolled up from probe_hours.
CREATE TABLE probe_days (
    target   BIGINT NOT NULL,
    day      BIGINT NOT NULL,
    checks   BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    lat_min  BIGINT,
    lat_max  BIGINT,
    lat_sum  BIGINT NOT NULL,
    hist     BYTEA  NOT NULL,
    PRIMARY KEY (target, day)
);

-- Days before `next_day` are rolled up into probe_days.
CREATE TABLE probe_rollup (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    next_day BIGINT NOT NULL
);
