-- The CMS signing time (Unix seconds) of the latest Authenticate, TokenUpdate or CheckOut a
-- device's signature was accepted for: an older signed message replayed later is refused
-- rather than allowed to put back an old push token or mark the device unenrolled.
ALTER TABLE devices ADD COLUMN last_signed_at BIGINT;
