-- 039_retention_from_acceptance: a waybill's retention period runs from the later of its pickup day
-- and the day the gateway accepted it (Art. 26).
--
-- retention_destroy (sql/020) and the sweep's selection (store_bulk.c) aged a record by its
-- pickup day, which the submitting device sends (any day from 2000 on, gateway/domain/waybill.c),
-- and only without one by the day accepted: a courier's certificate could submit a waybill picked
-- up "in 2001", and the next sweep destroyed it as expired, minutes after it was accepted, so a
-- device chose which of its records outlived their period. The day accepted is the gateway's own
-- clock (accepted_at, sealed under the record's MAC); a record is now past its period only when
-- both days are. An honest record, picked up a few days before it was accepted, is kept those
-- few days longer.
-- CREATE OR REPLACE: its row deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE OR REPLACE FUNCTION retention_destroy(p_ids uuid[], p_days integer, p_selector text,
                                             p_requester text) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    n     bigint;
    did   bigint;
    floor integer := (SELECT min_days FROM retention_floor);
BEGIN
    IF p_days IS NULL OR p_days < 1 OR p_ids IS NULL THEN
        RAISE EXCEPTION 'a retention period of at least one day and the records are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF floor IS NULL OR p_days < floor THEN
        RAISE EXCEPTION 'retention period of % days is below the floor of % days (waygatectl '
                        'retention floor)', p_days, coalesce(floor::text, 'unset')
            USING ERRCODE = 'WR001'; -- retention.c names the cause by this code
    END IF;
    WITH d AS (
        DELETE FROM waybill w
         WHERE w.id = ANY (p_ids)
           AND greatest(w.pickup_day, (w.accepted_at AT TIME ZONE 'Asia/Shanghai')::date)
               < (now() AT TIME ZONE 'Asia/Shanghai')::date - p_days
        RETURNING 1)
    SELECT count(*) INTO n FROM d;
    IF n <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'not every record is past its retention: % of %', n, cardinality(p_ids)
            USING ERRCODE = 'serialization_failure';
    END IF;
    INSERT INTO destruction (reason, selector, requester, count)
    VALUES ('retention', p_selector, p_requester, n) RETURNING id INTO did;
    RETURN did;
END
$fn$;

DO $retention_accepted$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    f     text := 'retention_destroy(uuid[], integer, text, text)';
BEGIN
    -- CREATE OR REPLACE keeps the owner and the grants but not these two attributes
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                   current_schema());
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
END
$retention_accepted$;
