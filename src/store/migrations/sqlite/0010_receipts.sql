-- Delivery receipts. Keep in step with ../postgres/0010_receipts.sql.
-- The Message-ID an e-mail went out with (a bounce names it), the id an SMS gateway gave a
-- message (its delivery reports name it), the SHA-256 of a mail's read-receipt image id (the id
-- itself is only in the mail), when that image was first fetched, and when a bounce or a
-- delivery report last changed the notification's status.
ALTER TABLE outbox ADD COLUMN message_id TEXT;
ALTER TABLE outbox ADD COLUMN gateway_id TEXT;
ALTER TABLE outbox ADD COLUMN read_token_sha256 TEXT;
ALTER TABLE outbox ADD COLUMN read_ms BIGINT;
ALTER TABLE outbox ADD COLUMN receipt_ms BIGINT;
CREATE INDEX outbox_message_id ON outbox (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX outbox_gateway_id ON outbox (gateway_id) WHERE gateway_id IS NOT NULL;
CREATE INDEX outbox_read_token ON outbox (read_token_sha256) WHERE read_token_sha256 IS NOT NULL;
