-- Leases on the shards serve replicas divide the work into (PostgreSQL only: a SQLite file has
-- one serve, which owns everything). A claim bumps the epoch; writes made on behalf of a shard
-- carry the epoch they were decided under and are refused once it is not the shard's, or once
-- the lease has expired. Expiry is on the database's clock, never a replica's.
CREATE TABLE shard_leases (
    shard INTEGER PRIMARY KEY,
    owner TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
);
