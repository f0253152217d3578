-- Declarative Device Management: what each device last reported (its status items, and the
-- state of each declaration Lanyard gave it), and when DDM was turned on for it. Same as
-- migrations/postgres/0016_ddm.sql.

-- When Lanyard sent the DeclarativeManagement command that turns DDM on, and when the device
-- first talked to the DDM endpoint.
ALTER TABLE devices ADD COLUMN ddm_requested_at TEXT;
ALTER TABLE devices ADD COLUMN ddm_enabled_at TEXT;
-- The device's DeclarationsToken as last served, and when it last changed (the tokens answer's
-- Timestamp).
ALTER TABLE devices ADD COLUMN ddm_declarations_token TEXT;
ALTER TABLE devices ADD COLUMN ddm_token_changed_at TEXT;

-- The last value of each status item (dotted name, e.g. device.operating-system.version) a
-- device reported, as JSON, and when it arrived. Unknown items are kept too.
CREATE TABLE ddm_status (
    udid  TEXT NOT NULL REFERENCES devices (udid) ON DELETE CASCADE,
    item  TEXT NOT NULL,
    value TEXT NOT NULL,
    at    TEXT NOT NULL,
    PRIMARY KEY (udid, item)
);

-- Each declaration's state on the device (management.declarations): active, valid and why not.
CREATE TABLE ddm_declaration_status (
    udid         TEXT NOT NULL REFERENCES devices (udid) ON DELETE CASCADE,
    identifier   TEXT NOT NULL,
    server_token TEXT,
    active       BOOLEAN,
    valid        TEXT,
    reasons      TEXT NOT NULL,
    at           TEXT NOT NULL,
    PRIMARY KEY (udid, identifier)
);
