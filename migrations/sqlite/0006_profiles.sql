-- Profiles for schools (issue 5): the library with every version kept, device groups and what is
-- assigned to them, what each device has and what Lanyard asked it to do, filtering change
-- control, the timetable and lesson-time schedules, escrowed FileVault keys.
-- Same schema as migrations/postgres/0006_profiles.sql, in SQLite's dialect.
-- Group membership history is the register's group_memberships table (0003).

-- One row per profile; `version` is the version devices should have (the deployed one).
CREATE TABLE profiles (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    identifier TEXT NOT NULL,
    version    BIGINT NOT NULL,
    baseline   BOOLEAN NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT,
    deleted_by TEXT
);
CREATE UNIQUE INDEX profiles_live_name ON profiles (name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX profiles_live_identifier ON profiles (identifier) WHERE deleted_at IS NULL;

-- Every version of every profile, as normalised XML (unsigned: Lanyard signs on sending).
-- Versions are immutable: a change is a new version.
CREATE TABLE profile_versions (
    profile_id    BLOB NOT NULL REFERENCES profiles (id),
    version       BIGINT NOT NULL,
    xml           BLOB NOT NULL,
    sha256        TEXT NOT NULL,
    identifier    TEXT NOT NULL,
    payload_uuid  TEXT NOT NULL,
    display_name  TEXT,
    payload_types TEXT NOT NULL,
    filtering     TEXT,
    change_id     BLOB,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (profile_id, version)
);
CREATE TRIGGER profile_versions_no_update BEFORE UPDATE ON profile_versions
BEGIN SELECT RAISE(ABORT, 'a profile version is immutable: make a new version'); END;
CREATE TRIGGER profile_versions_no_delete BEFORE DELETE ON profile_versions
BEGIN SELECT RAISE(ABORT, 'a profile version is immutable: make a new version'); END;

-- Device groups: static (members added by hand) or smart (members follow `rules`, JSON).
CREATE TABLE device_groups (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('static', 'smart')),
    rules      TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT,
    deleted_by TEXT
);
CREATE UNIQUE INDEX device_groups_live_name ON device_groups (name) WHERE deleted_at IS NULL;
-- A device is in a group at most once at a time (several instances may refresh smart groups).
CREATE UNIQUE INDEX group_memberships_open ON group_memberships (group_id, udid) WHERE removed_at IS NULL;

-- Profiles assigned to groups: a device's intended profiles are the union over its groups.
CREATE TABLE group_profiles (
    group_id    BLOB NOT NULL REFERENCES device_groups (id),
    profile_id  BLOB NOT NULL REFERENCES profiles (id),
    assigned_by TEXT NOT NULL,
    assigned_at TEXT NOT NULL,
    PRIMARY KEY (group_id, profile_id)
);
CREATE INDEX group_profiles_profile ON group_profiles (profile_id);

-- What each device has, as far as Lanyard knows: from ProfileList results and acknowledged
-- InstallProfile/RemoveProfile commands. `lanyard` marks the profiles Lanyard installed: only
-- those are ever removed.
CREATE TABLE device_profiles (
    udid         TEXT NOT NULL,
    identifier   TEXT NOT NULL,
    payload_uuid TEXT,
    display_name TEXT,
    profile_id   BLOB,
    version      BIGINT,
    lanyard      BOOLEAN NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (udid, identifier)
);
CREATE INDEX device_profiles_profile ON device_profiles (profile_id);

-- The InstallProfile/RemoveProfile commands reconcile queued, per device. Whether one is still
-- pending is the command queue's business (command_targets); the outcome is copied here.
CREATE TABLE profile_commands (
    command_uuid TEXT NOT NULL,
    udid         TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('install', 'remove')),
    identifier   TEXT NOT NULL,
    profile_id   BLOB,
    version      BIGINT,
    queued_at    TEXT NOT NULL,
    outcome      TEXT,
    error        TEXT,
    finished_at  TEXT,
    PRIMARY KEY (command_uuid, udid)
);
CREATE INDEX profile_commands_device ON profile_commands (udid, queued_at);

-- Filtering change control (policy 7.3.1): proposed -> deployed (approved by a second person)
-- or rejected. Never deleted.
CREATE TABLE filtering_changes (
    id                     BLOB PRIMARY KEY,
    profile_id             BLOB NOT NULL REFERENCES profiles (id),
    profile_name           TEXT NOT NULL,
    kind                   TEXT NOT NULL CHECK (kind IN ('update', 'delete', 'assign', 'unassign')),
    group_id               BLOB,
    group_name             TEXT,
    base_version           BIGINT NOT NULL,
    proposed_xml           BLOB,
    before_policy          TEXT,
    after_policy           TEXT,
    diff                   TEXT NOT NULL,
    reason                 TEXT NOT NULL,
    risk_assessment_ref    TEXT NOT NULL,
    state                  TEXT NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected', 'deployed')),
    proposed_by            TEXT NOT NULL,
    proposed_at            TEXT NOT NULL,
    decided_by             TEXT,
    decided_at             TEXT,
    decision_justification TEXT,
    deployed_version       BIGINT,
    deployed_at            TEXT
);
CREATE INDEX filtering_changes_proposed ON filtering_changes (proposed_at);
CREATE TRIGGER filtering_changes_no_delete BEFORE DELETE ON filtering_changes
BEGIN SELECT RAISE(ABORT, 'filtering changes are never deleted'); END;

-- The school timetable (one row): periods per weekday and term dates, as JSON.
CREATE TABLE timetable (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    timezone   TEXT NOT NULL,
    periods    TEXT NOT NULL,
    terms      TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A profile applied to a group only during lessons. `active` is the timetable tick's view of
-- whether it applies now, and `changed_at` when that last changed.
CREATE TABLE schedules (
    id         BLOB PRIMARY KEY,
    profile_id BLOB NOT NULL REFERENCES profiles (id),
    group_id   BLOB NOT NULL REFERENCES device_groups (id),
    when_kind  TEXT NOT NULL CHECK (when_kind IN ('lessons')),
    active     BOOLEAN NOT NULL,
    changed_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    deleted_at TEXT,
    deleted_by TEXT
);

-- FileVault personal recovery keys escrowed by Macs, sealed with data/seal.key.
CREATE TABLE filevault_keys (
    udid        TEXT PRIMARY KEY,
    key_sealed  BLOB NOT NULL,
    device_key  TEXT,
    escrowed_at TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- When Lanyard last asked a device for SecurityInfo and ProfileList on its schedule.
CREATE TABLE device_checks (
    udid         TEXT PRIMARY KEY,
    requested_at TEXT NOT NULL
);
