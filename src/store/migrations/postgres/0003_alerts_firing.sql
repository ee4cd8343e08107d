-- The alerts firing now. Keep in step with ../sqlite/0003_alerts_firing.sql (the same text).
-- Every page of the status API counts them (project and server lists, state colours); with a year
-- of resolved alerts in the table, finding the few firing ones through alerts_project_started
-- read the whole history. A partial index holds only the firing rows, so its size follows what
-- is firing, not the history. It holds every column Store::firing_alerts reads (the id is
-- SQLite's rowid), so SQLite answers from the index alone; `status` leads (constant, a few
-- bytes a row) so that SQLite, which has no statistics, picks this index for "firing in every
-- project" as well as for "firing in one". Queries must say `status = 'firing'` literally for
-- the planners (PostgreSQL's included) to match the predicate.
CREATE INDEX alerts_firing ON alerts (status, project, server, rule, subject, severity, started_at_ms) WHERE status = 'firing';
