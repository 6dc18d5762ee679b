-- 024_bulk_whole_second: a bulk request selects the records accepted strictly before its second
-- (Art. 37).
--
-- waybill.accepted_at is the gateway's whole second; bulk_request.requested_at has microseconds.
-- The frozen selection (sql/022 and the gateway's run) was accepted_at <= requested_at, which
-- also takes a record accepted in the request's own second after the request was counted: such
-- a record made a run select more than the approved record_count, so the run refused (and a
-- destroy could not run at all until it was requested again). Now the request's count (the
-- gateway, gateway/store/store_bulk.c), every run of it and bulk_destroy here take only the
-- records accepted before date_trunc('second', requested_at), and requested_at is the time of
-- the count (the gateway stores it with the request): a record of the request's own second is
-- in neither the count nor any run, so what the approver saw is what runs.
-- Requests stored before this migration keep their requested_at: their runs now leave out a
-- record of the request's own second (fewer than approved, never more).
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

COMMENT ON COLUMN bulk_request.requested_at IS
    'When the request''s selection was counted: it and every run of it select only records '
    'accepted before this second (date_trunc(''second'', requested_at)).';

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
           AND w.accepted_at < date_trunc('second', b.requested_at)
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

DO $whole_second$
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
$whole_second$;
