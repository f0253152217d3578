-- The user-access register (policy 7.2): people, AUP versions, signatures, access grants, device
-- assignments, and the device-group membership history that "who could use this device at T"
-- reads. Same schema as migrations/sqlite/0003_register.sql, in PostgreSQL's dialect.
-- An end date is the first day without access (00:00 UTC).

CREATE TABLE people (
    id         UUID PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('pupil', 'staff', 'visitor', 'governor', 'contractor', 'volunteer')),
    name       TEXT NOT NULL,
    -- The MIS id; imports upsert by it.
    school_ref TEXT UNIQUE,
    year_group TEXT,
    key_stage  TEXT,
    start_date DATE,
    end_date   DATE,
    notes      TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX people_name ON people (name, id);
CREATE INDEX people_end_date ON people (end_date);

-- AUP versions, per audience; immutable (a change is a new version).
CREATE TABLE aups (
    id             UUID PRIMARY KEY,
    audience       TEXT NOT NULL,
    version        BIGINT NOT NULL,
    title          TEXT NOT NULL,
    text           TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    effective_date DATE NOT NULL,
    review_due     DATE NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (audience, version)
);

-- Signatures are immutable: the only change allowed is voiding one, once, with a reason.
CREATE TABLE signatures (
    id          UUID PRIMARY KEY,
    person_id   UUID NOT NULL REFERENCES people (id),
    aup_id      UUID NOT NULL REFERENCES aups (id),
    method      TEXT NOT NULL CHECK (method IN ('paper', 'in_person', 'online')),
    signed_at   TIMESTAMPTZ NOT NULL,
    co_signer   TEXT,
    recorded_by TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    voided_at   TIMESTAMPTZ,
    voided_by   TEXT,
    void_reason TEXT
);
CREATE INDEX signatures_person ON signatures (person_id);

-- Access to one device, one device group or one named system. A grant is live from valid_from
-- until the earlier of valid_until and revoked_at (either may be NULL, or in the future).
CREATE TABLE grants (
    id            UUID PRIMARY KEY,
    person_id     UUID NOT NULL REFERENCES people (id),
    udid          TEXT,
    group_id      UUID,
    system        TEXT,
    valid_from    TIMESTAMPTZ NOT NULL,
    valid_until   TIMESTAMPTZ,
    reason        TEXT NOT NULL,
    -- The signature on file when the grant was made.
    signature_id  UUID REFERENCES signatures (id),
    granted_by    TEXT NOT NULL,
    granted_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ,
    revoked_by    TEXT,
    revoke_reason TEXT,
    CHECK ((CASE WHEN udid IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN group_id IS NULL THEN 0 ELSE 1 END)
         + (CASE WHEN system IS NULL THEN 0 ELSE 1 END) = 1)
);
CREATE INDEX grants_person ON grants (person_id);
CREATE INDEX grants_udid ON grants (udid);
CREATE INDEX grants_group ON grants (group_id);

-- Who holds which device, from when to when. At most one open holding per device.
CREATE TABLE assignments (
    id          UUID PRIMARY KEY,
    person_id   UUID NOT NULL REFERENCES people (id),
    udid        TEXT NOT NULL,
    grant_id    UUID REFERENCES grants (id),
    started_at  TIMESTAMPTZ NOT NULL,
    ended_at    TIMESTAMPTZ,
    assigned_by TEXT NOT NULL,
    ended_by    TEXT,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX assignments_person ON assignments (person_id);
CREATE INDEX assignments_udid ON assignments (udid, started_at);
CREATE UNIQUE INDEX assignments_one_open_holder ON assignments (udid) WHERE ended_at IS NULL;

-- Which devices were in which group when. Written by the device-groups feature; read here.
CREATE TABLE group_memberships (
    group_id   UUID NOT NULL,
    udid       TEXT NOT NULL,
    added_at   TIMESTAMPTZ NOT NULL,
    removed_at TIMESTAMPTZ,
    PRIMARY KEY (group_id, udid, added_at)
);
CREATE INDEX group_memberships_udid ON group_memberships (udid);

CREATE FUNCTION aups_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'an AUP version is immutable: publish a new version';
END $$;
CREATE TRIGGER aups_no_change BEFORE UPDATE OR DELETE ON aups
    FOR EACH ROW EXECUTE FUNCTION aups_immutable();

CREATE FUNCTION signatures_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'signatures are never deleted: void one with a reason';
    END IF;
    IF OLD.voided_at IS NOT NULL
       OR NEW.id IS DISTINCT FROM OLD.id OR NEW.person_id IS DISTINCT FROM OLD.person_id
       OR NEW.aup_id IS DISTINCT FROM OLD.aup_id OR NEW.method IS DISTINCT FROM OLD.method
       OR NEW.signed_at IS DISTINCT FROM OLD.signed_at OR NEW.co_signer IS DISTINCT FROM OLD.co_signer
       OR NEW.recorded_by IS DISTINCT FROM OLD.recorded_by
       OR NEW.recorded_at IS DISTINCT FROM OLD.recorded_at THEN
        RAISE EXCEPTION 'a signature is immutable: record a new one and void the old with a reason';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER signatures_no_change BEFORE UPDATE OR DELETE ON signatures
    FOR EACH ROW EXECUTE FUNCTION signatures_immutable();
