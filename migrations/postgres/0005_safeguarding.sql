-- Safeguarding: cases, their custody log, devices under legal hold, evidence, two-person requests.
-- Same schema as migrations/sqlite/0005_safeguarding.sql, in PostgreSQL's dialect.

CREATE TABLE cases (
    id             UUID PRIMARY KEY,
    number         BIGINT NOT NULL UNIQUE,
    kind           TEXT NOT NULL,
    state          TEXT NOT NULL,
    summary        TEXT NOT NULL,
    justification  TEXT NOT NULL,
    people         TEXT NOT NULL,
    refs           TEXT NOT NULL,
    involves_staff BOOLEAN NOT NULL,
    opened_by      TEXT NOT NULL,
    opened_at      TIMESTAMPTZ NOT NULL,
    closed_by      TEXT,
    closed_at      TIMESTAMPTZ
);

-- The chain of custody: every event on a case, in order. Never updated or deleted.
CREATE TABLE case_events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id       UUID NOT NULL REFERENCES cases (id),
    at            TIMESTAMPTZ NOT NULL,
    actor         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    udid          TEXT,
    justification TEXT,
    detail        TEXT NOT NULL
);
CREATE INDEX case_events_case ON case_events (case_id, seq);
CREATE FUNCTION case_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'case_events is append-only';
END $$;
CREATE TRIGGER case_events_no_change BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION case_events_append_only();

-- A device quarantined under a case: on legal hold while `state` is 'held' and the case is open.
CREATE TABLE case_devices (
    case_id          UUID NOT NULL REFERENCES cases (id),
    udid             TEXT NOT NULL,
    state            TEXT NOT NULL,
    method           TEXT NOT NULL,
    lock_pin_sealed  BYTEA,
    suspended_grants TEXT NOT NULL,
    added_by         TEXT NOT NULL,
    added_at         TIMESTAMPTZ NOT NULL,
    released_at      TIMESTAMPTZ,
    PRIMARY KEY (case_id, udid)
);
CREATE INDEX case_devices_udid ON case_devices (udid, state);

-- Commands sent for a case (lock, evidence, release), so their answers land on the case.
CREATE TABLE case_commands (
    command_uuid TEXT PRIMARY KEY,
    case_id      UUID NOT NULL REFERENCES cases (id),
    udid         TEXT NOT NULL,
    request_type TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    evidence_id  UUID
);

CREATE TABLE evidence (
    id           UUID PRIMARY KEY,
    case_id      UUID NOT NULL REFERENCES cases (id),
    udid         TEXT NOT NULL,
    command_uuid TEXT NOT NULL,
    request_type TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    received_at  TIMESTAMPTZ,
    status       TEXT,
    sha256       TEXT,
    raw          BYTEA,
    disposed_at  TIMESTAMPTZ
);
CREATE INDEX evidence_case ON evidence (case_id);

-- Two-person requests: release a device (or the whole case), dispose of evidence.
CREATE TABLE case_requests (
    id                     UUID PRIMARY KEY,
    case_id                UUID NOT NULL REFERENCES cases (id),
    kind                   TEXT NOT NULL,
    udid                   TEXT,
    state                  TEXT NOT NULL,
    requested_by           TEXT NOT NULL,
    requested_at           TIMESTAMPTZ NOT NULL,
    justification          TEXT NOT NULL,
    advice_reference       TEXT,
    restore_access         BOOLEAN NOT NULL,
    confirmation           TEXT,
    decided_by             TEXT,
    decided_at             TIMESTAMPTZ,
    decision_justification TEXT
);

-- Messages for the headteacher role (a case about a member of staff).
CREATE TABLE notifications (
    id        UUID PRIMARY KEY,
    role      TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL,
    kind      TEXT NOT NULL,
    case_id   UUID,
    message   TEXT NOT NULL
);
