-- 013_suite_migrate: what `waygatectl keys migrate-suite` (issue 11) needs to re-seal stored
-- waybills under another cipher suite while the gateway serves (gateway/store/store_reseal.c).
-- A re-sealed record keeps its id and every clear operational column; it gets a new data key
-- wrapped under the target suite's KEK, every ciphertext, every blind index, content_mac and
-- record_mac (MAC version 2) anew. The suite of a stored record is the algorithm byte (offset 1)
-- of its dek_wrapped: get_byte(dek_wrapped, 1) = 1 is AES, 2 is SM.
--
-- Inventory of what depends on the suite (checked in sql/001-012): sealed values live only in
-- waybill (dek_wrapped and the 23 *_ct columns); keyed digests in waybill (wb_bidx, the four
-- phone/ID blind indexes, content_mac, record_mac) and, copied from waybill's blind indexes,
-- in phone_owner / phone_sender (the suspicious-customer register) and lawful_case_item (the
-- waybills a lawful-access case names). scan, outbox, bulk_request, destruction, audit_record and
-- the accounts hold none (record ids, names, hashes that are not keyed by the suite). The audit
-- checkpoints' signatures follow the configured suite on their own (they are not re-signed).
--
-- The CLI's role reads whole records only through waybill_reseal_take and rewrites them only
-- through waybill_reseal (below), which checks what it is given. The two copies are kept in step by triggers running as the owner, so the CLI's role
-- gets no privilege on them:
--  - lawful_case_item: when a waybill's wb_bidx changes, every case naming the old blind index
--    names the new one too (the old row stays: a case is a record of what was asked), so an
--    approved case reaches the record before, during and after the migration;
--  - the suspicious-customer register: an UPDATE of waybill runs the INSERT trigger's function
--    (sql/002) over the updated rows, so the register gains the target suite's (phone, sender ID)
--    pairs as records move; pairs already present (a rewrap, which changes no blind index) change
--    nothing. The register's rows under the old suite stay as history; `suspicious list` may show
--    one phone under both suites until they are pruned.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE FUNCTION waybill_reseal_lawful_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lawful_case_item (case_id, wb_bidx)
    SELECT i.case_id, NEW.wb_bidx FROM lawful_case_item i WHERE i.wb_bidx = OLD.wb_bidx
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER waybill_reseal_lawful AFTER UPDATE OF wb_bidx ON waybill
    FOR EACH ROW WHEN (OLD.wb_bidx IS DISTINCT FROM NEW.wb_bidx)
    EXECUTE FUNCTION waybill_reseal_lawful_trg();

-- PostgreSQL allows no column list with a transition table: every UPDATE statement runs it.
CREATE TRIGGER waybill_phone_owner_update AFTER UPDATE ON waybill
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waybill_phone_owner_trg();

-- A batch of records to re-seal: up to p_limit whole rows (every column, as the table has them)
-- whose algorithm byte is not p_alg, after the id p_after (NULL: from the start), in id order,
-- locked FOR UPDATE for the caller's transaction; rows another transaction holds are skipped
-- (SKIP LOCKED: the gateway is never waited for). A dek_wrapped too short to name an algorithm
-- is taken too (it then fails to open and is reported, never skipped silently).
CREATE FUNCTION waybill_reseal_take(p_alg integer, p_after uuid, p_limit integer)
    RETURNS SETOF waybill
LANGUAGE sql AS $fn$
    SELECT * FROM waybill w
     WHERE (CASE WHEN octet_length(w.dek_wrapped) >= 2 THEN get_byte(w.dek_wrapped, 1) END)
           IS DISTINCT FROM p_alg
       AND w.id > coalesce(p_after, '00000000-0000-0000-0000-000000000000'::uuid)
     ORDER BY w.id LIMIT p_limit
       FOR UPDATE SKIP LOCKED
$fn$;

-- The one way the CLI's role rewrites a record's sealed columns: all of them at once, only to move
-- the record to another suite, only with values of that suite's sealed format. p_ct holds the 23
-- ciphertexts in the order of enum gw_col (gateway/domain/record.h); every one is present (an
-- absent field is sealed as the empty string). The row changes only while its dek_wrapped is
-- still p_old_dek (the value the caller opened) and of another algorithm than p_dek: returns
-- false otherwise (a concurrent rewrap or re-seal got there first; nothing is changed). A refusal
-- raises WS001 naming the parameter and the rule. Clear operational columns, dek_version and
-- accepted_at are not parameters: they cannot change. mac_version becomes 2 (record_mac given).
CREATE FUNCTION waybill_reseal(p_id uuid, p_old_dek bytea, p_wb_bidx bytea,
                               p_sender_phone_bidx bytea, p_recipient_phone_bidx bytea,
                               p_sender_id_bidx bytea, p_recipient_id_bidx bytea,
                               p_kek_version integer, p_dek bytea, p_content_mac bytea,
                               p_record_mac bytea, p_ct bytea[]) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    alg integer;
    i   integer;
BEGIN
    IF p_dek IS NULL OR octet_length(p_dek) <> 62 OR get_byte(p_dek, 0) <> 1 THEN
        RAISE EXCEPTION 'p_dek: must be a wrapped data key (62 bytes, format version 1)'
            USING ERRCODE = 'WS001';
    END IF;
    alg := get_byte(p_dek, 1);
    IF p_record_mac IS NULL OR p_content_mac IS NULL OR p_wb_bidx IS NULL THEN
        RAISE EXCEPTION 'p_record_mac: wb_bidx, content_mac and record_mac are required'
            USING ERRCODE = 'WS001';
    END IF;
    IF p_ct IS NULL OR array_ndims(p_ct) <> 1 OR array_length(p_ct, 1) <> 23 THEN
        RAISE EXCEPTION 'p_ct: must hold the 23 ciphertexts of a waybill' USING ERRCODE = 'WS001';
    END IF;
    FOR i IN 1 .. 23 LOOP
        IF p_ct[i] IS NULL OR octet_length(p_ct[i]) < 30 OR get_byte(p_ct[i], 0) <> 1
           OR get_byte(p_ct[i], 1) <> alg THEN
            RAISE EXCEPTION 'p_ct[%]: must be a sealed value of the data key''s algorithm', i
                USING ERRCODE = 'WS001';
        END IF;
    END LOOP;
    UPDATE waybill
       SET wb_bidx = p_wb_bidx,
           sender_phone_bidx = p_sender_phone_bidx,
           recipient_phone_bidx = p_recipient_phone_bidx,
           sender_id_bidx = p_sender_id_bidx,
           recipient_id_bidx = p_recipient_id_bidx,
           kek_version = p_kek_version,
           dek_wrapped = p_dek,
           content_mac = p_content_mac,
           mac_version = 2,
           record_mac = p_record_mac,
           waybill_no_ct = p_ct[1],
           item_description_ct = p_ct[2],
           pickup_time_ct = p_ct[3],
           sender_name_ct = p_ct[4],
           sender_phone_ct = p_ct[5],
           sender_province_ct = p_ct[6],
           sender_city_ct = p_ct[7],
           sender_district_ct = p_ct[8],
           sender_address_detail_ct = p_ct[9],
           sender_company_ct = p_ct[10],
           sender_id_type_ct = p_ct[11],
           sender_id_number_ct = p_ct[12],
           sender_gender_ct = p_ct[13],
           recipient_name_ct = p_ct[14],
           recipient_phone_ct = p_ct[15],
           recipient_province_ct = p_ct[16],
           recipient_city_ct = p_ct[17],
           recipient_district_ct = p_ct[18],
           recipient_address_detail_ct = p_ct[19],
           recipient_company_ct = p_ct[20],
           recipient_id_type_ct = p_ct[21],
           recipient_id_number_ct = p_ct[22],
           recipient_gender_ct = p_ct[23]
     WHERE id = p_id AND dek_wrapped = p_old_dek AND get_byte(dek_wrapped, 1) <> alg;
    RETURN FOUND;
END;
$fn$;

DO $suite$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    adm   text := current_database() || '_admin';
    f     text;
BEGIN
    FOREACH f IN ARRAY ARRAY['waybill_reseal_lawful_trg()',
                             'waybill_reseal_take(integer, uuid, integer)',
                             'waybill_reseal(uuid, bytea, bytea, bytea, bytea, bytea, bytea, '
                             'integer, bytea, bytea, bytea, bytea[])'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;

    -- waygatectl keys migrate-suite: takes its batches through waybill_reseal_take and writes
    -- them through waybill_reseal, nothing else: no grant on waybill changes (sql/005 keeps
    -- them all and can be run again unchanged), so the role still cannot read a record but in
    -- these batches, null or swap one ciphertext, or touch a record under the target suite.
    EXECUTE format('GRANT EXECUTE ON FUNCTION waybill_reseal_take(integer, uuid, integer) TO %I',
                   adm);
    EXECUTE format('GRANT EXECUTE ON FUNCTION waybill_reseal(uuid, bytea, bytea, bytea, bytea, '
                   'bytea, bytea, integer, bytea, bytea, bytea, bytea[]) TO %I', adm);
END
$suite$;
