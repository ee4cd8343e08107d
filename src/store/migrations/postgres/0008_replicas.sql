-- The serve replicas on this database: each writes its row every third of the lease TTL and
-- deletes rows whose heartbeat is older than the TTL. Keep in step with ../sqlite/0008_replicas.sql.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    -- The revision the replica runs, once it has applied one.
    revision TEXT
);
