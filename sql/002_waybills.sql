-- 002_waybills: waybill-number segments (Art. 18), sealed waybills (Art. 36) and the
-- suspicious-customer register (part 12 Art. 7). Nothing clear is stored for PII: only AES-256-GCM
-- ciphertexts (*_ct, one per gateway/record.h column), 16-byte keyed blind indexes (*_bidx) and
-- the wrapped data key. Applied in one transaction by `waygatectl migrate`: no transaction control.

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Segments of waybill numbers issued to branches. A waybill number is PREFIX + digits; a segment
-- is an inclusive range of the numeric part under one prefix. No two segments of one prefix
-- overlap, whoever issues them and however concurrently (exclusion constraint).
CREATE TABLE segment (
    id         bigserial   PRIMARY KEY,
    branch     text        NOT NULL,
    prefix     text        NOT NULL,
    range_from bigint      NOT NULL,
    range_to   bigint      NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    issued_by  text        NOT NULL,
    CONSTRAINT segment_range_order CHECK (range_to >= range_from),
    CONSTRAINT segment_no_overlap EXCLUDE USING gist
        (prefix WITH =, int8range(range_from, range_to, '[]') WITH &&)
);
CREATE INDEX segment_branch_idx ON segment (branch);

COMMENT ON TABLE segment IS 'Waybill-number segments issued to branches (Art. 18).';

-- One row per accepted waybill. Clear columns are operational, not PII (docs/threat-model.md):
-- origin branch, submitting principal, destination division code, weight, service type,
-- security level, day of pickup (for retention), key versions.
CREATE TABLE waybill (
    id                   uuid        PRIMARY KEY,
    wb_bidx              bytea       NOT NULL UNIQUE CHECK (octet_length(wb_bidx) = 16),
    origin_branch        text        NOT NULL,
    submitted_by         text        NOT NULL,
    dest_region_code     text,
    weight_grams         integer,
    service_type         text,
    security_level       smallint,
    pickup_day           date,
    created_at           timestamptz NOT NULL DEFAULT now(),
    kek_version          integer     NOT NULL,
    dek_version          integer     NOT NULL,
    dek_wrapped          bytea       NOT NULL,
    content_mac          bytea       NOT NULL CHECK (octet_length(content_mac) = 32),
    sender_phone_bidx    bytea       CHECK (octet_length(sender_phone_bidx) = 16),
    recipient_phone_bidx bytea       CHECK (octet_length(recipient_phone_bidx) = 16),
    sender_id_bidx       bytea       CHECK (octet_length(sender_id_bidx) = 16),
    recipient_id_bidx    bytea       CHECK (octet_length(recipient_id_bidx) = 16),
    waybill_no_ct                bytea,
    item_description_ct          bytea,
    pickup_time_ct               bytea,
    sender_name_ct               bytea,
    sender_phone_ct              bytea,
    sender_province_ct           bytea,
    sender_city_ct               bytea,
    sender_district_ct           bytea,
    sender_address_detail_ct     bytea,
    sender_company_ct            bytea,
    sender_id_type_ct            bytea,
    sender_id_number_ct          bytea,
    sender_gender_ct             bytea,
    recipient_name_ct            bytea,
    recipient_phone_ct           bytea,
    recipient_province_ct        bytea,
    recipient_city_ct            bytea,
    recipient_district_ct        bytea,
    recipient_address_detail_ct  bytea,
    recipient_company_ct         bytea,
    recipient_id_type_ct         bytea,
    recipient_id_number_ct       bytea,
    recipient_gender_ct          bytea
);

CREATE INDEX waybill_sender_phone_bidx_idx    ON waybill (sender_phone_bidx);
CREATE INDEX waybill_recipient_phone_bidx_idx ON waybill (recipient_phone_bidx);
CREATE INDEX waybill_sender_id_bidx_idx       ON waybill (sender_id_bidx);
CREATE INDEX waybill_recipient_id_bidx_idx    ON waybill (recipient_id_bidx);
CREATE INDEX waybill_branch_day_idx           ON waybill (origin_branch, pickup_day);
CREATE INDEX waybill_kek_version_idx          ON waybill (kek_version);

COMMENT ON TABLE waybill IS
    'Sealed waybills: PII only as AES-256-GCM ciphertext (*_ct) and 16-byte blind indexes (*_bidx).';
COMMENT ON COLUMN waybill.wb_bidx IS 'Blind index of the waybill number: the idempotency key.';
COMMENT ON COLUMN waybill.content_mac IS
    'Keyed MAC over the normalised content: equal on a retried submit, different on a conflicting one.';
COMMENT ON COLUMN waybill.dek_wrapped IS 'The record''s data key wrapped by KEK kek_version.';

-- Suspicious customers (part 12 Art. 7): one phone number used by two different senders (two
-- different ID numbers). Keys are blind indexes; values are record ids; nothing clear.
CREATE TABLE phone_owner (
    phone_bidx    bytea       PRIMARY KEY CHECK (octet_length(phone_bidx) = 16),
    first_id_bidx bytea       NOT NULL,
    first_record  uuid        NOT NULL,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    suspicious    boolean     NOT NULL DEFAULT false,
    flagged_at    timestamptz,
    senders       integer     NOT NULL DEFAULT 1
);
CREATE INDEX phone_owner_suspicious_idx ON phone_owner (flagged_at) WHERE suspicious;

-- Every distinct (phone, sender ID) pair, with the first record that showed it: counts senders
-- exactly and names the records involved.
CREATE TABLE phone_sender (
    phone_bidx   bytea       NOT NULL,
    id_bidx      bytea       NOT NULL,
    first_record uuid        NOT NULL,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (phone_bidx, id_bidx)
);

COMMENT ON TABLE phone_owner IS
    'Suspicious-customer register (part 12 Art. 7): sender phone blind index -> distinct senders.';
COMMENT ON TABLE phone_sender IS 'Distinct (sender phone, sender ID) blind-index pairs seen.';

-- Maintained once per INSERT statement over its transition table (the store inserts a whole
-- group of waybills in one statement), set-based, race-free under concurrent inserts: both
-- inserts resolve conflicts on a unique index (a concurrent inserter of the same key is waited
-- for, then seen), and rows are taken in blind-index order, so concurrent statements lock
-- phone_owner rows in one order.
CREATE FUNCTION waybill_phone_owner_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH pairs AS (
        INSERT INTO phone_sender (phone_bidx, id_bidx, first_record)
        SELECT DISTINCT ON (sender_phone_bidx, sender_id_bidx)
               sender_phone_bidx, sender_id_bidx, id
          FROM new_rows
         WHERE sender_phone_bidx IS NOT NULL AND sender_id_bidx IS NOT NULL
         ORDER BY sender_phone_bidx, sender_id_bidx, id
        ON CONFLICT (phone_bidx, id_bidx) DO NOTHING
        RETURNING phone_bidx, id_bidx, first_record
    )
    INSERT INTO phone_owner AS o (phone_bidx, first_id_bidx, first_record, senders, suspicious,
                                  flagged_at)
    SELECT phone_bidx,
           (array_agg(id_bidx ORDER BY first_record))[1],
           (array_agg(first_record ORDER BY first_record))[1],
           count(*),
           count(*) > 1,
           CASE WHEN count(*) > 1 THEN now() END
      FROM pairs
     GROUP BY phone_bidx
     ORDER BY phone_bidx
    ON CONFLICT (phone_bidx) DO UPDATE
        SET senders    = o.senders + EXCLUDED.senders,
            suspicious = true,
            flagged_at = coalesce(o.flagged_at, now());
    RETURN NULL;
END;
$$;

CREATE TRIGGER waybill_phone_owner AFTER INSERT ON waybill
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waybill_phone_owner_trg();
