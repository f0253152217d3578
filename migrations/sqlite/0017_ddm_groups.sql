-- Declarative Device Management per group: the declarations an operator gives a group, and OS
-- updates by deadline. Same as migrations/postgres/0017_ddm_groups.sql.

-- A group's declarations (configurations, assets, activations), each checked against Apple's
-- schema when written. The set is replaced whole by PUT /api/v1/groups/{id}/declarations.
CREATE TABLE group_declarations (
    group_id     BLOB NOT NULL REFERENCES device_groups (id),
    identifier   TEXT NOT NULL,
    type         TEXT NOT NULL,
    -- The Payload, as JSON.
    payload      TEXT NOT NULL,
    server_token TEXT NOT NULL,
    updated_by   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (group_id, identifier)
);

-- An OS update a group's devices must reach by a deadline: Lanyard serves each device of the
-- group (not on legal hold) a com.apple.configuration.softwareupdate.enforcement.specific
-- declaration. Cancelled updates are kept, with who cancelled them and when.
CREATE TABLE os_updates (
    id                   BLOB PRIMARY KEY,
    group_id             BLOB NOT NULL REFERENCES device_groups (id),
    target_os_version    TEXT NOT NULL,
    target_build_version TEXT,
    -- The school's local time, as the declaration's TargetLocalDateTime: yyyy-mm-ddThh:mm:ss.
    deadline             TEXT NOT NULL,
    details_url          TEXT,
    created_by           TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    cancelled_by         TEXT,
    cancelled_at         TEXT
);
CREATE INDEX os_updates_group ON os_updates (group_id) WHERE cancelled_at IS NULL;
