-- Push bookkeeping moves out of `devices` into a narrow table of its own. A push to a year group
-- used to rewrite each device's whole row (about 40 columns) twice, once when the push was
-- recorded and once with APNs' answer; a `device_push` row is six short columns, so a push to
-- udid-ordered devices rewrites dozens of rows per page instead of one. WITHOUT ROWID keeps the
-- rows in udid order. A device with no row has never been pushed.
--
-- `pushes_unanswered` counts the pushes since the device was last seen. A connection no longer
-- writes 0 here (that would be a second write on every device request): each push records the
-- device's `last_seen_at` as `seen_at_push`, and the count only holds while the device's
-- `last_seen_at` is still that value; the next push after a connection starts again at 1.
-- Same as migrations/postgres/0012_device_push.sql.
CREATE TABLE device_push (
    udid              TEXT PRIMARY KEY REFERENCES devices (udid) ON DELETE CASCADE,
    last_push_at      TEXT NOT NULL,
    seen_at_push      TEXT,
    last_push_outcome TEXT,
    pushes_unanswered BIGINT NOT NULL DEFAULT 0,
    pushes_sent       BIGINT NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX device_push_last_push ON device_push (last_push_at);

INSERT INTO device_push (udid, last_push_at, seen_at_push, last_push_outcome, pushes_unanswered, pushes_sent)
    SELECT udid, last_push_at, CASE WHEN pushes_unanswered > 0 THEN last_seen_at END, last_push_outcome,
           pushes_unanswered, pushes_sent FROM devices
    WHERE last_push_at IS NOT NULL;

DROP INDEX devices_last_push;
ALTER TABLE devices DROP COLUMN last_push_at;
ALTER TABLE devices DROP COLUMN last_push_outcome;
ALTER TABLE devices DROP COLUMN pushes_unanswered;
ALTER TABLE devices DROP COLUMN pushes_sent;
