-- Protocol core: the push certificate, enrolment tokens, issued identities, devices, the command queue.
-- Same schema as migrations/sqlite/0002_devices.sql, in PostgreSQL's dialect.

-- The school's MDM push certificate (one current row). The key is sealed with data/seal.key.
CREATE TABLE push_certificate (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    topic       TEXT NOT NULL,
    subject     TEXT NOT NULL,
    not_before  TIMESTAMPTZ NOT NULL,
    not_after   TIMESTAMPTZ NOT NULL,
    cert_pem    TEXT NOT NULL,
    key_sealed  BYTEA NOT NULL,
    uploaded_at TIMESTAMPTZ NOT NULL,
    uploaded_by TEXT NOT NULL
);

CREATE TABLE enrollment_tokens (
    id         UUID PRIMARY KEY,
    label      TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    max_uses   BIGINT,
    uses       BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ,
    group_name TEXT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

-- Every identity certificate our SCEP service issued, so that a renewed certificate can be
-- traced back to the one it renewed (and so to its device).
CREATE TABLE issued_certificates (
    sha256              TEXT PRIMARY KEY,
    serial              TEXT NOT NULL,
    subject             TEXT NOT NULL,
    not_after           TIMESTAMPTZ NOT NULL,
    issued_at           TIMESTAMPTZ NOT NULL,
    enrollment_token_id UUID,
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
    enrolled_at             TIMESTAMPTZ,
    unenrolled_at           TIMESTAMPTZ,
    first_seen_at           TIMESTAMPTZ NOT NULL,
    last_seen_at            TIMESTAMPTZ NOT NULL,
    authenticated_at        TIMESTAMPTZ NOT NULL,
    enrollment_token_id     UUID,
    cert_sha256             TEXT UNIQUE,
    push_token              BYTEA,
    push_magic              TEXT,
    push_token_invalid_at   TIMESTAMPTZ,
    unlock_token_sealed     BYTEA,
    bootstrap_token_sealed  BYTEA,
    awaiting_configuration  BOOLEAN NOT NULL DEFAULT FALSE,
    inventory_requested_at  TIMESTAMPTZ,
    info_updated_at         TIMESTAMPTZ,
    security_updated_at     TIMESTAMPTZ
);
CREATE INDEX devices_serial ON devices (serial_number);
CREATE INDEX devices_last_seen ON devices (last_seen_at);

-- A command is stored once and targeted at many devices.
CREATE TABLE commands (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid         TEXT NOT NULL UNIQUE,
    request_type TEXT NOT NULL,
    payload      BYTEA NOT NULL,
    fields       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ
);

CREATE TABLE command_targets (
    udid         TEXT NOT NULL REFERENCES devices (udid),
    command_seq  BIGINT NOT NULL REFERENCES commands (seq),
    status       TEXT NOT NULL,
    expires_at   TIMESTAMPTZ,
    queued_at    TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    sent_at      TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    not_now_count BIGINT NOT NULL DEFAULT 0,
    result_plist BYTEA,
    result_json  TEXT,
    PRIMARY KEY (udid, command_seq)
);
CREATE INDEX command_targets_by_command ON command_targets (command_seq);
CREATE INDEX command_targets_open ON command_targets (udid, status, command_seq);
