-- ADE enrolment, Setup Assistant and Activation Lock.
--
-- The one-time enrolment tokens Lanyard makes for a device that proved, with its
-- signed MachineInfo, that it is an iPad Apple School Manager lists for this server; each token
-- is bound to that device's serial number, so the identity SCEP issues against it can only
-- authenticate as that device. Same as migrations/postgres/0015_ade_enrolment.sql.
ALTER TABLE enrollment_tokens ADD COLUMN bound_serial TEXT;

-- Each MachineInfo accepted, by the SHA-256 of the signed message: one message gets one
-- enrolment profile (a replayed message is refused), and the record says which device asked and
-- when, for the console and the audit.
CREATE TABLE ade_enrolments (
    machine_info_sha256 TEXT PRIMARY KEY,
    serial_number       TEXT NOT NULL,
    udid                TEXT NOT NULL,
    product             TEXT NOT NULL,
    os_version          TEXT,
    token_id            BLOB NOT NULL REFERENCES enrollment_tokens (id) ON DELETE CASCADE,
    at                  TEXT NOT NULL
);
CREATE INDEX ade_enrolments_serial ON ade_enrolments (serial_number, at);

-- A device let out of Setup Assistant before all its profiles were in (timed out, or some
-- refused): what happened, for the device page and list. NULL when setup went as planned.
ALTER TABLE devices ADD COLUMN setup_flag TEXT;

-- The Activation Lock bypass code a supervised device made (ActivationLockBypassCode), sealed
-- with data/seal.key: kept until the device gives a different, non-empty one (Apple's rule); when
-- it came; and when Lanyard last asked (a device answers only within 15 days of supervision).
ALTER TABLE devices ADD COLUMN activation_lock_bypass_sealed BLOB;
ALTER TABLE devices ADD COLUMN activation_lock_bypass_at TEXT;
ALTER TABLE devices ADD COLUMN activation_lock_requested_at TEXT;

-- Devices waiting in Setup Assistant for DeviceConfigured (few at a time), for the sweeper that
-- releases one whose profiles took too long.
CREATE INDEX devices_awaiting_configuration ON devices (enrolled_at) WHERE awaiting_configuration;
