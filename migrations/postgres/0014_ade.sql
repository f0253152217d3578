-- Apple School Manager (ADE): Lanyard's key pair for server tokens, the tokens, and the devices
-- each token's MDM server has been assigned. Same as migrations/sqlite/0014_ade.sql.

-- The key pair whose certificate the school uploads in ASM; server tokens are encrypted to it.
-- One row; the key is sealed with data/seal.key.
CREATE TABLE ade_keypair (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    cert_pem   TEXT NOT NULL,
    key_sealed BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- One row per MDM server in ASM (a trust may have several, or ABM and ASM). The four OAuth
-- values are sealed. The sync state: `cursor` is the sync cursor once a full fetch has finished;
-- `fetch_cursor` the cursor of a full fetch in progress (NULL: none), with `fetch_generation`
-- the number every device row seen in that fetch is stamped with, so that a finished fetch can
-- flag the devices it no longer lists. Each page's devices and cursor commit together.
CREATE TABLE ade_tokens (
    id               UUID PRIMARY KEY,
    server_uuid      TEXT NOT NULL UNIQUE,
    server_name      TEXT NOT NULL,
    org_name         TEXT NOT NULL,
    org_email        TEXT,
    admin_id         TEXT,
    secrets_sealed   BYTEA NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    created_by       TEXT NOT NULL,
    renewed_at       TIMESTAMPTZ,
    cursor           TEXT,
    cursor_at        TIMESTAMPTZ,
    fetch_cursor     TEXT,
    fetch_generation BIGINT NOT NULL DEFAULT 0,
    sync_state       TEXT NOT NULL DEFAULT 'idle',
    sync_started_at  TIMESTAMPTZ,
    sync_devices     BIGINT NOT NULL DEFAULT 0,
    last_sync_at     TIMESTAMPTZ,
    last_error       TEXT,
    last_error_at    TIMESTAMPTZ,
    -- Which ADE profile each new device gets: JSON {"default_profile": id|null,
    -- "rules": [{"profile", "device_family"?, "model"?, "serials"?}]}, first match wins.
    assignment       TEXT
);

-- The devices ASM lists for each token, by serial number (a device is assigned to one MDM server
-- at a time). `removed_at`: ASM reported it deleted (unassigned, sold, released), or a full fetch
-- no longer listed it; the row is kept, so an enrolled device that leaves ASM is flagged, never
-- silently dropped. `op_date` is the latest change applied: an older record is ignored.
CREATE TABLE ade_devices (
    serial_number          TEXT PRIMARY KEY,
    token_id               UUID NOT NULL REFERENCES ade_tokens (id) ON DELETE CASCADE,
    model                  TEXT,
    description            TEXT,
    color                  TEXT,
    asset_tag              TEXT,
    os                     TEXT,
    device_family          TEXT,
    profile_status         TEXT,
    profile_uuid           TEXT,
    profile_assign_time    TEXT,
    profile_push_time      TEXT,
    device_assigned_date   TEXT,
    device_assigned_by     TEXT,
    mdm_migration_deadline TEXT,
    op_type                TEXT,
    op_date                TEXT,
    seen_generation        BIGINT NOT NULL DEFAULT 0,
    removed_at             TIMESTAMPTZ,
    updated_at             TIMESTAMPTZ NOT NULL,
    -- Lanyard's last assignment of an ADE profile to it: which profile, Apple's answer
    -- (SUCCESS, NOT_ACCESSIBLE, FAILED, THROTTLED) and when; failures are tried again later.
    assign_profile_id      UUID,
    assign_result          TEXT,
    assign_attempted_at    TIMESTAMPTZ,
    assign_retry_at        TIMESTAMPTZ
);
CREATE INDEX ade_devices_token ON ade_devices (token_id, seen_generation);

-- ADE profiles: what Setup Assistant does on a new device (supervised, mandatory, which panes
-- it skips, the support details). `settings` is Lanyard's JSON of the profile's fields.
CREATE TABLE ade_profiles (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    settings   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Apple's profiles are immutable: each (profile, token) is defined with Apple once per version of
-- its settings (`settings_hash`), and Apple's `profile_uuid` is what devices are assigned.
CREATE TABLE ade_profile_definitions (
    profile_id    UUID NOT NULL REFERENCES ade_profiles (id) ON DELETE CASCADE,
    token_id      UUID NOT NULL REFERENCES ade_tokens (id) ON DELETE CASCADE,
    settings_hash TEXT NOT NULL,
    profile_uuid  TEXT NOT NULL,
    defined_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (profile_id, token_id)
);
