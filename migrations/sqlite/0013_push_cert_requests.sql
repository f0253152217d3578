-- The push-certificate requests Lanyard makes (`lanyard push-cert request`,
-- POST /api/v1/push-cert/requests). The key is sealed with data/seal.key and never leaves;
-- the school takes the CSR (or the vendor-signed request file) to Apple's portal, and the
-- certificate Apple returns is matched to the pending request by its public key.
-- `completed_at` is set when that certificate is loaded. Same as the PostgreSQL migration.
CREATE TABLE push_cert_requests (
    id                BLOB PRIMARY KEY,
    csr_pem           TEXT NOT NULL,
    key_sealed        BLOB NOT NULL,
    -- The base64 plist the portal takes, when a vendor certificate signed the CSR.
    signed_request    TEXT,
    vendor_subject    TEXT,
    created_at        TEXT NOT NULL,
    created_by        TEXT NOT NULL,
    completed_at      TEXT
);

-- Which expiry warnings (30, 14, 7 and 1 days before) have been written to the audit log, so
-- each is written once per certificate or token: `subject` names it (`push_cert:<not_after>`,
-- `ade_token:<id>:<expiry>`).
CREATE TABLE expiry_warnings (
    subject   TEXT NOT NULL,
    days      BIGINT NOT NULL,
    logged_at TEXT NOT NULL,
    PRIMARY KEY (subject, days)
);
