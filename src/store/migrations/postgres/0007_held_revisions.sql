-- A revision that removes too many objects at once is held, not applied, until this time
-- (unless a newer one replaces it). Keep in step with ../sqlite/0007_held_revisions.sql.
ALTER TABLE revisions ADD COLUMN held_until_ms BIGINT;
