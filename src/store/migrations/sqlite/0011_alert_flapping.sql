-- Flapping on an alert. Keep in step with ../postgres/0011_alert_flapping.sql.
-- Whether the alert's instance was flapping (changing state too often to be notified) while
-- the alert was open; for a firing alert, whether it flaps now. Written with the alert's state.
ALTER TABLE alerts ADD COLUMN flapping BOOLEAN NOT NULL DEFAULT FALSE;
