-- The daily report e-mail. A report mail carries an HTML part and a CSV attachment besides its
-- plain text; alert notifications leave these NULL. Keep in step with
-- ../sqlite/0009_daily_reports.sql.
ALTER TABLE outbox ADD COLUMN html TEXT;
ALTER TABLE outbox ADD COLUMN attachment_name TEXT;
ALTER TABLE outbox ADD COLUMN attachment TEXT;

-- One row per project and day whose report was queued: inserted in the same transaction as the
-- report's outbox rows, so a day is mailed once however often serve restarts.
CREATE TABLE daily_reports (
    project    TEXT   NOT NULL,
    day        TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (project, day)
);
