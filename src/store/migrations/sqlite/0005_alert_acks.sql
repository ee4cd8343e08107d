-- Acknowledgements: a person records what they did about a firing alert. Keep in step with
-- ../postgres/0005_alert_acks.sql (only the id column differs). Each note is a row; the alert
-- keeps the time of its first acknowledgement, which the engine reads to stop reminders and
-- escalation without reading the notes.
CREATE TABLE alert_acks (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id BIGINT NOT NULL REFERENCES alerts (id),
    at_ms    BIGINT NOT NULL,
    by_user  TEXT   NOT NULL,
    note     TEXT   NOT NULL
);
CREATE INDEX alert_acks_alert ON alert_acks (alert_id, id);
ALTER TABLE alerts ADD COLUMN acknowledged_at_ms BIGINT;
