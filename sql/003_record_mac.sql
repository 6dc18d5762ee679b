-- 003_record_mac: the record MAC (Art. 36 integrity of the stored record). Every clear column a
-- reader relies on is now covered by a keyed MAC the gateway computes when it seals a waybill,
-- so an edit in SQL of any of them fails authentication on read (DATA_LOSS and an incident).
--  - mac_version: which MAC input the row was written with. 1 = rows written before this
--    migration (content_mac only; record_mac NULL); 2 = content_mac and record_mac.
--  - record_mac: HMAC over every clear column (but kek_version and dek_wrapped, which `keys
--    rewrap` changes and whose wrapping AAD already binds them) and every field's clear value.
--  - accepted_at (was created_at): now the gateway's acceptance time, stamped when sealing and
--    stored as given (so the MAC can cover it), no longer the commit time.
-- Applied in one transaction by `waygatectl migrate`: no transaction control.

ALTER TABLE waybill RENAME COLUMN created_at TO accepted_at;
ALTER TABLE waybill ADD COLUMN mac_version smallint NOT NULL DEFAULT 1;
ALTER TABLE waybill ADD COLUMN record_mac bytea CHECK (octet_length(record_mac) = 32);

COMMENT ON COLUMN waybill.accepted_at IS
    'The gateway''s acceptance time, stamped when sealing and covered by record_mac (v2).';
COMMENT ON COLUMN waybill.mac_version IS
    '1: content_mac only (rows before migration 003); 2: content_mac and record_mac.';
COMMENT ON COLUMN waybill.record_mac IS
    'Keyed MAC over every clear column (but kek_version, dek_wrapped) and every field (v2).';
COMMENT ON COLUMN waybill.content_mac IS
    'Keyed digest of the normalised content: equal on a retried submit, different on a conflicting one.';
