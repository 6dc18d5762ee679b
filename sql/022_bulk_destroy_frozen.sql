-- 022_bulk_destroy_frozen: an approved bulk destroy deletes only what was approved (Art. 37).
--
-- bulk_destroy (sql/009) deleted whatever the stored selector matched when the destroy ran, and
-- checked only that this was as many as the gateway had just counted: waybills that matched the
-- selector but arrived after the request was approved were destroyed under that approval, beyond
-- the record_count the approver saw. Now it deletes only the records accepted no later than the
-- request (the selection the approver was shown, as an export's run reads it since the same
-- review), and refuses when even those are more than the approved record_count.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE OR REPLACE FUNCTION bulk_destroy(p_request uuid, p_selector text, p_expected bigint)
    RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    b   bulk_request%ROWTYPE;
    n   bigint;
    did bigint;
BEGIN
    SELECT * INTO b FROM bulk_request WHERE id = p_request FOR UPDATE;
    IF NOT FOUND OR b.operation <> 'destroy' OR b.state <> 'executed' OR b.run_count IS NOT NULL
    THEN
        RAISE EXCEPTION 'not an approved destruction being run'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF p_expected > b.record_count THEN
        RAISE EXCEPTION 'the selection grew: % records, % approved', p_expected, b.record_count
            USING ERRCODE = 'serialization_failure';
    END IF;
    WITH d AS (
        DELETE FROM waybill w
         WHERE (b.sel_branch IS NULL OR w.origin_branch = b.sel_branch)
           AND (b.sel_from IS NULL OR w.pickup_day >= b.sel_from)
           AND (b.sel_to IS NULL OR w.pickup_day <= b.sel_to)
           AND (b.sel_ids IS NULL OR w.id = ANY (b.sel_ids))
           AND (b.requester_branch IS NULL OR w.origin_branch = b.requester_branch
                OR w.dest_region_code IN (SELECT r.region_code FROM route r
                                           WHERE r.branch = b.requester_branch))
           AND w.accepted_at <= b.requested_at
        RETURNING 1)
    SELECT count(*) INTO n FROM d;
    IF n <> p_expected THEN
        RAISE EXCEPTION 'the selection changed: % records, % expected', n, p_expected
            USING ERRCODE = 'serialization_failure';
    END IF;
    UPDATE bulk_request SET run_count = n WHERE id = p_request;
    INSERT INTO destruction (reason, request_id, selector, requester, approver, count)
    VALUES ('bulk', b.id, p_selector, b.requester, b.approver, n) RETURNING id INTO did;
    RETURN did;
END
$fn$;

DO $frozen$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    f     text := 'bulk_destroy(uuid, text, bigint)';
BEGIN
    -- CREATE OR REPLACE keeps the owner and the grants but not these two attributes
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                   current_schema());
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
END
$frozen$;
