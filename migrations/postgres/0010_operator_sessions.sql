-- Sessions that end before their hour is up.
-- Same schema as migrations/sqlite/0010_operator_sessions.sql, in PostgreSQL's dialect.
--
-- session_epoch: every session JWT carries the epoch its operator had when it was issued, and
-- is refused once the epoch has moved on. A password reset, disabling the account or changing
-- its role adds one, which ends all of the operator's sessions at once (no clock involved, so a
-- token issued in the same second as the change, but before it, is refused too).
ALTER TABLE operators ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;

-- One session ended by logging out, until the JWT would have expired anyway (then pruned).
CREATE TABLE revoked_sessions (
    jti         TEXT PRIMARY KEY,
    operator_id UUID NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);
