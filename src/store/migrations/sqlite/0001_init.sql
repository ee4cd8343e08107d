-- watchkeeper schema, SQLite. Keep in step with ../postgres/0001_init.sql: the same tables and
-- columns; only the id columns (INTEGER PRIMARY KEY AUTOINCREMENT) differ. Timestamps are epoch
-- milliseconds; JSON is stored as TEXT; booleans are 0/1.

-- Configuration revisions serve applied or rejected.
CREATE TABLE revisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    revision    TEXT    NOT NULL,
    at_ms       BIGINT  NOT NULL,
    applied     BOOLEAN NOT NULL,
    diagnostics TEXT    NOT NULL
);
CREATE INDEX revisions_applied_at ON revisions (applied, at_ms);

-- One row per TCP check of one port.
CREATE TABLE probe_results (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project    TEXT    NOT NULL,
    monitor    TEXT    NOT NULL,
    host       TEXT    NOT NULL,
    port       BIGINT  NOT NULL,
    at_ms      BIGINT  NOT NULL,
    ok         BOOLEAN NOT NULL,
    latency_ms BIGINT,
    error_kind TEXT,
    error      TEXT
);
CREATE INDEX probe_results_project_monitor_at ON probe_results (project, monitor, at_ms);
CREATE INDEX probe_results_at ON probe_results (at_ms);

-- Alert history: opened when an instance fires, closed when it resolves.
CREATE TABLE alerts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    project        TEXT   NOT NULL,
    server         TEXT   NOT NULL,
    rule           TEXT   NOT NULL,
    subject        TEXT   NOT NULL,
    severity       TEXT   NOT NULL CHECK (severity IN ('warning', 'fatal')),
    status         TEXT   NOT NULL CHECK (status IN ('firing', 'resolved')),
    started_at_ms  BIGINT NOT NULL,
    resolved_at_ms BIGINT,
    resolve_reason TEXT,
    message        TEXT   NOT NULL,
    host           TEXT   NOT NULL,
    snapshot       TEXT   NOT NULL
);
CREATE INDEX alerts_project_started ON alerts (project, started_at_ms);

-- The state machine of every alert instance that is not at rest, to resume after a restart.
CREATE TABLE alert_instances (
    project       TEXT   NOT NULL,
    server        TEXT   NOT NULL,
    rule          TEXT   NOT NULL,
    subject       TEXT   NOT NULL,
    state         TEXT   NOT NULL,
    open_alert_id BIGINT REFERENCES alerts (id),
    updated_ms    BIGINT NOT NULL,
    PRIMARY KEY (project, server, rule, subject)
);

-- Every notification, written in the same transaction as its alert change, before it is sent.
-- A sender claims a row by setting claimed_by / claimed_until_ms (a lease); an expired lease
-- (a crashed sender) makes the row claimable again.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id         BIGINT REFERENCES alerts (id),
    channel          TEXT   NOT NULL,
    medium           TEXT   NOT NULL CHECK (medium IN ('email', 'sms', 'webhook')),
    recipient        TEXT   NOT NULL,
    subject          TEXT   NOT NULL,
    body             TEXT   NOT NULL,
    kind             TEXT   NOT NULL,
    status           TEXT   NOT NULL CHECK (status IN ('pending', 'sent', 'not_sent', 'failed', 'delivered')),
    reason           TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    last_error       TEXT,
    created_ms       BIGINT NOT NULL,
    sent_ms          BIGINT,
    claimed_by       TEXT,
    claimed_until_ms BIGINT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_ms) WHERE status = 'pending';
CREATE INDEX outbox_alert ON outbox (alert_id);

-- The delivery log: one row per try to send one notification.
CREATE TABLE delivery_attempts (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id BIGINT  NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    at_ms     BIGINT  NOT NULL,
    ok        BOOLEAN NOT NULL,
    error     TEXT
);
CREATE INDEX delivery_attempts_outbox ON delivery_attempts (outbox_id);
