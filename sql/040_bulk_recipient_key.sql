-- 040_bulk_recipient_key: the key an export's or copy's output is sealed to is part of what is
-- requested and approved (Art. 37).
--
-- RunBulk's caller chose the recipient's X25519 public key when the request ran, and the request
-- named only a free-text destination: an export approved for "regulator ws 3" could be run, by
-- its requester, sealed to a key of their own. Now RequestBulk takes the key, stores it here, the
-- request's and its decision's audit records name it (the first 8 bytes of its SHA-256), the
-- decision holds only while the stored key is the one the approver's record names, and a run is
-- sealed to it alone (its claim, store_bulk.c, holds only with this very key). A destruction has
-- no key. Requests stored before this migration have none: their exports and copies are refused
-- at run time (request them again).
-- The gateway's role holds SELECT and INSERT on bulk_request, as for every column it writes once
-- (sql/009_bulk.sql), and no UPDATE of this column: a stored key is never changed.
-- IF NOT EXISTS: its row deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

ALTER TABLE bulk_request ADD COLUMN IF NOT EXISTS recipient_key bytea
    CONSTRAINT bulk_request_recipient_key CHECK (recipient_key IS NULL OR
        (operation <> 'destroy' AND octet_length(recipient_key) = 32));
COMMENT ON COLUMN bulk_request.recipient_key IS
    'An export''s or copy''s recipient X25519 public key (32 bytes, raw), requested and approved '
    'with it: every run is sealed to it. NULL for a destruction, and for a request stored before '
    'sql/040 (it cannot run: request it again).';
