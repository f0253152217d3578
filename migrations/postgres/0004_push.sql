-- Push bookkeeping: when each device was last pushed, what APNs said, and how many pushes have
-- gone unanswered (the sweeper backs off on that count). Same as migrations/sqlite/0004_push.sql, in PostgreSQL's dialect.
ALTER TABLE devices ADD COLUMN last_push_at TIMESTAMPTZ;
ALTER TABLE devices ADD COLUMN last_push_outcome TEXT;
ALTER TABLE devices ADD COLUMN pushes_unanswered BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN pushes_sent BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_last_push ON devices (last_push_at);

-- The last problem APNs reported with the certificate itself (403), shown to admins.
ALTER TABLE push_certificate ADD COLUMN last_error TEXT;
ALTER TABLE push_certificate ADD COLUMN last_error_at TIMESTAMPTZ;
