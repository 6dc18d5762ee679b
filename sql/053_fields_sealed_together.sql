-- 053_fields_sealed_together: stored format version 3, every field of a waybill sealed as one
-- value (Art. 36: one seal binds the fields and the clear columns to the record).
--
-- Versions 1 and 2 (sql/002, sql/003) hold each of the 23 fields as its own sealed value in its
-- *_ct column, and version 2 binds the clear columns to the record with record_mac. Version 3
-- (gateway/domain/record.h, GW_RECORD_MAC_V3) seals every field together, as one value in the
-- new column fields_ct, under the data key with the clear columns the record MAC covered as its
-- AAD: the 23 *_ct columns and record_mac are NULL. The gateway writes every new record as
-- version 3 and still reads rows of versions 1 and 2, which stay as they are.
--  - fields_ct: the sealed value's format (gw_crypto_seal_into): byte 0 the format version, 1;
--    byte 1 the algorithm, the one of the row's data key (byte 1 of dek_wrapped); at least 30
--    bytes (header, nonce and tag).
--  - waybill_fields_sealed_together: a CHECK, for every role, that mac_version is 1, 2 or 3, that
--    a version 3 row has a well-formed fields_ct (at most 64 KiB of fields, GW_SEAL_FIELDS_MAX,
--    and 30 bytes of header, nonce and tag) and neither a record_mac nor any *_ct, and that a row
--    of version 1 or 2 has no fields_ct. Added valid: the rows stored before (versions 1 and 2,
--    fields_ct NULL as the column is new) are checked when it is added.
--  - the gateway's role inserts and reads fields_ct; it keeps reading the *_ct columns (rows of
--    versions 1 and 2) but no longer inserts them (sql/005 granted both; it is the only migration
--    granting those columns: no other role has any grant on them).
--  - waybill_reseal (sql/013), the one way `keys migrate-suite` rewrites a record's sealed
--    columns, now writes version 3: it takes the fields as one sealed value (p_fields) in place
--    of record_mac and the 23 ciphertexts (the old signature is dropped), validates it as the
--    old one validated each ciphertext, and sets record_mac and every *_ct NULL.
-- ADD COLUMN IF NOT EXISTS, DROP CONSTRAINT IF EXISTS, DROP FUNCTION IF EXISTS, CREATE OR
-- REPLACE: its row deleted (or a previous attempt's objects left), this migration applies again
-- unchanged. Applied in one transaction by `waygatectl migrate` as the owner: no transaction
-- control.

ALTER TABLE waybill ADD COLUMN IF NOT EXISTS fields_ct bytea;

COMMENT ON COLUMN waybill.fields_ct IS
    'Version 3: every field sealed as one value under the data key (byte 0 format version 1, '
    'byte 1 the algorithm of dek_wrapped), the clear columns as its AAD; NULL in versions 1, 2.';
COMMENT ON COLUMN waybill.mac_version IS
    '1: content_mac only (rows before migration 003); 2: content_mac and record_mac, each field '
    'in its *_ct column; 3: the fields sealed together in fields_ct (record_mac and *_ct NULL).';
COMMENT ON COLUMN waybill.record_mac IS
    'Keyed MAC over every clear column (but kek_version, dek_wrapped) and every field (v2); '
    'NULL in versions 1 and 3.';
COMMENT ON TABLE waybill IS
    'Sealed waybills: PII only as sealed values (fields_ct; *_ct before version 3) and 16-byte '
    'blind indexes (*_bidx).';

-- Each CASE keeps get_byte from a value too short for it (an error, not a refusal); coalesce
-- makes an unknown (NULL) answer a refusal, never a pass.
ALTER TABLE waybill DROP CONSTRAINT IF EXISTS waybill_fields_sealed_together;
ALTER TABLE waybill ADD CONSTRAINT waybill_fields_sealed_together CHECK (coalesce(
    mac_version IN (1, 2, 3) AND
    CASE WHEN mac_version = 3 THEN
        CASE WHEN octet_length(fields_ct) BETWEEN 30 AND 65566 AND octet_length(dek_wrapped) >= 2
             THEN get_byte(fields_ct, 0) = 1
                  AND get_byte(fields_ct, 1) = get_byte(dek_wrapped, 1)
             ELSE false END
        AND record_mac IS NULL
        AND num_nonnulls(waybill_no_ct, item_description_ct, pickup_time_ct, sender_name_ct,
                         sender_phone_ct, sender_province_ct, sender_city_ct, sender_district_ct,
                         sender_address_detail_ct, sender_company_ct, sender_id_type_ct,
                         sender_id_number_ct, sender_gender_ct, recipient_name_ct,
                         recipient_phone_ct, recipient_province_ct, recipient_city_ct,
                         recipient_district_ct, recipient_address_detail_ct,
                         recipient_company_ct, recipient_id_type_ct, recipient_id_number_ct,
                         recipient_gender_ct) = 0
    ELSE fields_ct IS NULL END, false));
COMMENT ON CONSTRAINT waybill_fields_sealed_together ON waybill IS
    'mac_version 1, 2 or 3. Version 3: fields_ct a sealed value (30 to 65566 bytes, format 1, '
    'the data key''s algorithm), record_mac and every *_ct NULL; versions 1 and 2: fields_ct '
    'NULL (sql/053).';

-- The old signature (p_record_mac bytea, p_ct bytea[]) wrote version 2: gone, so no caller
-- writes a version 2 row any more (the CHECK would refuse one with a fields_ct anyway).
DROP FUNCTION IF EXISTS waybill_reseal(uuid, bytea, bytea, bytea, bytea, bytea, bytea, integer,
                                       bytea, bytea, bytea, bytea[]);

-- The one way the CLI's role rewrites a record's sealed columns: all of them at once, only to move
-- the record to another suite, only with values of that suite's sealed format. p_fields holds
-- every field sealed as one value (version 3, gateway/domain/record.h). The row changes only
-- while its dek_wrapped is still p_old_dek (the value the caller opened) and of another
-- algorithm than p_dek: returns false otherwise (a concurrent rewrap or re-seal got there first;
-- nothing is changed). A refusal raises WS001 naming the parameter and the rule. Clear
-- operational columns, dek_version and accepted_at are not parameters: they cannot change.
-- mac_version becomes 3: record_mac and the 23 *_ct columns become NULL, whatever the row's
-- version was.
CREATE OR REPLACE FUNCTION waybill_reseal(p_id uuid, p_old_dek bytea, p_wb_bidx bytea,
                                          p_sender_phone_bidx bytea, p_recipient_phone_bidx bytea,
                                          p_sender_id_bidx bytea, p_recipient_id_bidx bytea,
                                          p_kek_version integer, p_dek bytea,
                                          p_content_mac bytea, p_fields bytea) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    alg integer;
BEGIN
    IF p_dek IS NULL OR octet_length(p_dek) <> 62 OR get_byte(p_dek, 0) <> 1 THEN
        RAISE EXCEPTION 'p_dek: must be a wrapped data key (62 bytes, format version 1)'
            USING ERRCODE = 'WS001';
    END IF;
    alg := get_byte(p_dek, 1);
    IF p_content_mac IS NULL OR p_wb_bidx IS NULL THEN
        RAISE EXCEPTION 'p_content_mac: wb_bidx and content_mac are required'
            USING ERRCODE = 'WS001';
    END IF;
    IF p_fields IS NULL OR octet_length(p_fields) < 30 OR get_byte(p_fields, 0) <> 1
       OR get_byte(p_fields, 1) <> alg THEN
        RAISE EXCEPTION 'p_fields: must be a sealed value of the data key''s algorithm '
                        '(format version 1, at least 30 bytes)' USING ERRCODE = 'WS001';
    END IF;
    UPDATE waybill
       SET wb_bidx = p_wb_bidx,
           sender_phone_bidx = p_sender_phone_bidx,
           recipient_phone_bidx = p_recipient_phone_bidx,
           sender_id_bidx = p_sender_id_bidx,
           recipient_id_bidx = p_recipient_id_bidx,
           kek_version = p_kek_version,
           dek_wrapped = p_dek,
           content_mac = p_content_mac,
           mac_version = 3,
           record_mac = NULL,
           fields_ct = p_fields,
           waybill_no_ct = NULL,
           item_description_ct = NULL,
           pickup_time_ct = NULL,
           sender_name_ct = NULL,
           sender_phone_ct = NULL,
           sender_province_ct = NULL,
           sender_city_ct = NULL,
           sender_district_ct = NULL,
           sender_address_detail_ct = NULL,
           sender_company_ct = NULL,
           sender_id_type_ct = NULL,
           sender_id_number_ct = NULL,
           sender_gender_ct = NULL,
           recipient_name_ct = NULL,
           recipient_phone_ct = NULL,
           recipient_province_ct = NULL,
           recipient_city_ct = NULL,
           recipient_district_ct = NULL,
           recipient_address_detail_ct = NULL,
           recipient_company_ct = NULL,
           recipient_id_type_ct = NULL,
           recipient_id_number_ct = NULL,
           recipient_gender_ct = NULL
     WHERE id = p_id AND dek_wrapped = p_old_dek AND get_byte(dek_wrapped, 1) <> alg;
    RETURN FOUND;
END;
$fn$;

DO $fields$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    f     text := 'waybill_reseal(uuid, bytea, bytea, bytea, bytea, bytea, bytea, integer, bytea, '
                  'bytea, bytea)';
BEGIN
    -- waygated (gateway/store/store_group.c, store_read.c, outbox.c): the group insert writes
    -- fields_ct, the reads read it, as sql/005 grants the *_ct columns (which the reads still
    -- read, for the rows of versions 1 and 2). Revoked first: a rerun grants the same.
    EXECUTE format('REVOKE INSERT (fields_ct), SELECT (fields_ct) ON waybill FROM PUBLIC, %I, %I',
                   gw, adm);
    EXECUTE format('GRANT INSERT (fields_ct), SELECT (fields_ct) ON waybill TO %I', gw);
    -- ... and no longer writes a *_ct column (a version 3 row has none): sql/005's INSERT on them
    -- is taken back, its SELECT kept for the rows of versions 1 and 2 (record_mac keeps its
    -- INSERT: the group insert names it, NULL, as it names every clear column of gw_rec_cols)
    EXECUTE format('REVOKE INSERT (waybill_no_ct, item_description_ct, '
                   'pickup_time_ct, sender_name_ct, sender_phone_ct, sender_province_ct, '
                   'sender_city_ct, sender_district_ct, sender_address_detail_ct, '
                   'sender_company_ct, sender_id_type_ct, sender_id_number_ct, sender_gender_ct, '
                   'recipient_name_ct, recipient_phone_ct, recipient_province_ct, '
                   'recipient_city_ct, recipient_district_ct, recipient_address_detail_ct, '
                   'recipient_company_ct, recipient_id_type_ct, recipient_id_number_ct, '
                   'recipient_gender_ct) ON waybill FROM %I', gw);

    -- waygatectl keys migrate-suite: as sql/013 set the old signature.
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                   current_schema());
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, adm);
END
$fields$;
