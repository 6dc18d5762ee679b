-- 020_retention_floor: the shortest retention period the database lets a sweep destroy by (Art. 26).
--
-- retention_destroy (sql/009) took the period from its caller and required only one day: anyone
-- holding the gateway's role could call it with 1 and destroy records far younger than the
-- configured `[compliance] retention_days`, leaving a destruction record of their chosen wording
-- and no audit record. Now the period must be at least the floor kept here, which only the CLI's
-- role changes (`waygatectl retention floor DAYS`, recorded in admin_log and the audit chain
-- 'ctl'); the gateway's role may read it. The floor starts at 1095 days, the default of
-- `retention_days`: a deployment whose legal period is shorter lowers it first, or its sweep is
-- refused (nothing destroyed: the failure keeps records, it never loses them).
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE TABLE retention_floor (
    one      boolean     PRIMARY KEY DEFAULT true CHECK (one),
    min_days integer     NOT NULL CHECK (min_days BETWEEN 1 AND 36500),
    set_by   text        NOT NULL,
    set_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE retention_floor IS
    'The shortest retention period (days) retention_destroy accepts; one row, set by waygatectl.';
INSERT INTO retention_floor (min_days, set_by) VALUES (1095, 'migration 020');

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
           AND coalesce(w.pickup_day, (w.accepted_at AT TIME ZONE 'Asia/Shanghai')::date)
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

DO $floor$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    f     text := 'retention_destroy(uuid[], integer, text, text)';
BEGIN
    EXECUTE format('ALTER TABLE retention_floor OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON TABLE retention_floor FROM PUBLIC, %I, %I', gw, adm);
    EXECUTE format('GRANT SELECT ON retention_floor TO %I, %I', gw, adm);
    EXECUTE format('GRANT UPDATE (min_days, set_by, set_at) ON retention_floor TO %I', adm);
    -- CREATE OR REPLACE keeps the owner and the grants but not these two attributes
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                   current_schema());
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
END
$floor$;
