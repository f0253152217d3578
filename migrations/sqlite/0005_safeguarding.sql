-- Safeguarding: cases, their custody log, devices under legal hold, evidence, two-person requests.
-- Same schema as migrations/postgres/0005_safeguarding.sql, in SQLite's dialect.

CREATE TABLE cases (
    id             BLOB PRIMARY KEY,
    number         BIGINT NOT NULL UNIQUE,
    kind           TEXT NOT NULL,
    state          TEXT NOT NULL,
    summary        TEXT NOT NULL,
    justification  TEXT NOT NULL,
    people         TEXT NOT NULL,
    refs           TEXT NOT NULL,
    involves_staff BOOLEAN NOT NULL,
    opened_by      TEXT NOT NULL,
    opened_at      TEXT NOT NULL,
    closed_by      TEXT,
    closed_at      TEXT
);

-- The chain of custody: every event on a case, in order. Never updated or deleted.
CREATE TABLE case_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id       BLOB NOT NULL REFERENCES cases (id),
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    udid          TEXT,
    justification TEXT,
    detail        TEXT NOT NULL
);
CREATE INDEX case_events_case ON case_events (case_id, seq);
CREATE TRIGGER case_events_no_update BEFORE UPDATE ON case_events
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;
CREATE TRIGGER case_events_no_delete BEFORE DELETE ON case_events
BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END;

-- A device quarantined under a case: on legal hold while `state` is 'held' and the case is open.
CREATE TABLE case_devices (
    case_id          BLOB NOT NULL REFERENCES cases (id),
    udid             TEXT NOT NULL,
    state            TEXT NOT NULL,
    method           TEXT NOT NULL,
    lock_pin_sealed  BLOB,
    suspended_grants TEXT NOT NULL,
    added_by         TEXT NOT NULL,
    added_at         TEXT NOT NULL,
    released_at      TEXT,
    PRIMARY KEY (case_id, udid)
);
CREATE INDEX case_devices_udid ON case_devices (udid, state);

-- Commands sent for a case (lock, evidence, release), so their answers land on the case.
CREATE TABLE case_commands (
    command_uuid TEXT PRIMARY KEY,
    case_id      BLOB NOT NULL REFERENCES cases (id),
    udid         TEXT NOT NULL,
    request_type TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    evidence_id  BLOB
);

CREATE TABLE evidence (
    id           BLOB PRIMARY KEY,
    case_id      BLOB NOT NULL REFERENCES cases (id),
    udid         TEXT NOT NULL,
    command_uuid TEXT NOT NULL,
    request_type TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    received_at  TEXT,
    status       TEXT,
    sha256       TEXT,
    raw          BLOB,
    disposed_at  TEXT
);
CREATE INDEX evidence_case ON evidence (case_id);

-- Two-person requests: release a device (or the whole case), dispose of evidence.
CREATE TABLE case_requests (
    id                     BLOB PRIMARY KEY,
    case_id                BLOB NOT NULL REFERENCES cases (id),
    kind                   TEXT NOT NULL,
    udid                   TEXT,
    state                  TEXT NOT NULL,
    requested_by           TEXT NOT NULL,
    requested_at           TEXT NOT NULL,
    justification          TEXT NOT NULL,
    advice_reference       TEXT,
    restore_access         BOOLEAN NOT NULL,
    confirmation           TEXT,
    decided_by             TEXT,
    decided_at             TEXT,
    decision_justification TEXT
);

-- Messages for the headteacher role (a case about a member of staff).
CREATE TABLE notifications (
    id        BLOB PRIMARY KEY,
    role      TEXT NOT NULL,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    case_id   BLOB,
    message   TEXT NOT NULL
);
