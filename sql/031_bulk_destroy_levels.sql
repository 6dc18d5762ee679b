-- 031_bulk_destroy_levels: a bulk destroy deletes only the records within its requester's security
-- levels, as an export releases only those (Art. 26, 37; parts 1, 2, 4).
--
-- bulk_destroy (sql/009, sql/022, sql/024) deleted every record the request selected, whatever
-- its security level: a requester of level 0 (the compliance auditor) destroyed classified
-- records (秘密, 机密, 绝密) it may not see. Now it takes the requester's level when the run runs
-- (p_level, gw_policy_max_level) and deletes only the records within the lower of that and the
-- request's max_level (sql/030), by bulk_within_level, the predicate the gateway's count of the
-- request and of the run use: what the requester counted, the approver approved and the run
-- counted is what goes. A classified record is destroyed only under a request of a requester
-- cleared for it.
-- Automatic retention (retention_destroy, sql/009 and sql/020) is not a bulk request: the system
-- destroys expired records of every level, unchanged.
-- The old signature, which deleted every level, is dropped: the gateway's role cannot call it.
-- IF EXISTS, CREATE OR REPLACE: its row deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

DROP FUNCTION IF EXISTS bulk_destroy(uuid, text, bigint);

CREATE OR REPLACE FUNCTION bulk_destroy(p_request uuid, p_selector text, p_expected bigint,
                             p_level integer) RETURNS bigint
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
    IF p_level IS NULL THEN
        RAISE EXCEPTION 'the requester''s security level is required'
            USING ERRCODE = 'invalid_parameter_value';
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
           AND bulk_within_level(w.security_level, least(p_level, b.max_level))
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

DO $destroy_levels$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    f     text := 'bulk_destroy(uuid, text, bigint, integer)';
BEGIN
    -- a new function: owner, definer, search_path and grants as sql/009 gave the old one
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                   current_schema());
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
END
$destroy_levels$;
