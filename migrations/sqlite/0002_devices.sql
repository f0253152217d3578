-- Protocol core: the push certificate, enrolment tokens, issued identities, devices, the command queue.
-- Same schema as migrations/postgres/0002_devices.sql, in SQLite's dialect.

-- The school's MDM push certificate (one current row). The key is sealed with data/seal.key.
CREATE TABLE push_certificate (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    topic       TEXT NOT NULL,
    subject     TEXT NOT NULL,
    not_before  TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    cert_pem    TEXT NOT NULL,
    key_sealed  BLOB NOT NULL,
    uploaded_at TEXT NOT NULL,
    uploaded_by TEXT NOT NULL
);

CREATE TABLE enrollment_tokens (
    id         BLOB PRIMARY KEY,
    label      TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    max_uses   BIGINT,
    uses       BIGINT NOT NULL DEFAULT 0,
    expires_at TEXT,
    group_name TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- Every identity certificate our SCEP service issued, so that a renewed certificate can be
-- traced back to the one it renewed (and so to its device).
CREATE TABLE issued_certificates (
    sha256              TEXT PRIMARY KEY,
    serial              TEXT NOT NULL,
    subject             TEXT NOT NULL,
    not_after           TEXT NOT NULL,
    issued_at           TEXT NOT NULL,
    enrollment_token_id BLOB,
    renewed_from        TEXT
);

CREATE TABLE devices (
    udid                    TEXT PRIMARY KEY,
    serial_number           TEXT,
    model                   TEXT,
    model_name              TEXT,
    product_name            TEXT,
    device_name             TEXT,
    os_version              TEXT,
    build_version           TEXT,
    platform                TEXT NOT NULL,
    topic                   TEXT,
    imei                    TEXT,
    meid                    TEXT,
    wifi_mac                TEXT,
    bluetooth_mac           TEXT,
    supervised              BOOLEAN,
    encrypted               BOOLEAN,
    passcode_present        BOOLEAN,
    passcode_compliant      BOOLEAN,
    filevault_enabled       BOOLEAN,
    storage_capacity_gb     DOUBLE PRECISION,
    storage_available_gb    DOUBLE PRECISION,
    battery_level           DOUBLE PRECISION,
    enrolled                BOOLEAN NOT NULL DEFAULT FALSE,
    enrolled_at             TEXT,
    unenrolled_at           TEXT,
    first_seen_at           TEXT NOT NULL,
    last_seen_at            TEXT NOT NULL,
    authenticated_at        TEXT NOT NULL,
    enrollment_token_id     BLOB,
    cert_sha256             TEXT UNIQUE,
    push_token              BLOB,
    push_magic              TEXT,
    push_token_invalid_at   TEXT,
    unlock_token_sealed     BLOB,
    bootstrap_token_sealed  BLOB,
    awaiting_configuration  BOOLEAN NOT NULL DEFAULT FALSE,
    inventory_requested_at  TEXT,
    info_updated_at         TEXT,
    security_updated_at     TEXT
);
CREATE INDEX devices_serial ON devices (serial_number);
CREATE INDEX devices_last_seen ON devices (last_seen_at);

-- A command is stored once and targeted at many devices.
CREATE TABLE commands (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid         TEXT NOT NULL UNIQUE,
    request_type TEXT NOT NULL,
    payload      BLOB NOT NULL,
    fields       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT
);

CREATE TABLE command_targets (
    udid         TEXT NOT NULL REFERENCES devices (udid),
    command_seq  BIGINT NOT NULL REFERENCES commands (seq),
    status       TEXT NOT NULL,
    expires_at   TEXT,
    queued_at    TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    sent_at      TEXT,
    completed_at TEXT,
    not_now_count BIGINT NOT NULL DEFAULT 0,
    result_plist BLOB,
    result_json  TEXT,
    PRIMARY KEY (udid, command_seq)
);
CREATE INDEX command_targets_by_command ON command_targets (command_seq);
CREATE INDEX command_targets_open ON command_targets (udid, status, command_seq);
