-- 048_destruction_gives_way_to_held_rows: a destruction neither waits long for another
-- transaction's row locks nor picks records another transaction holds (Art. 26, 37).
--
-- Retention's batch (retention_destroy, sql/039) and an approved bulk destroy (bulk_destroy,
-- sql/031) run inside the gateway's audit writer's transaction, one at a time with every audited
-- call's record (gateway/store/audit.c), and had no lock timeout: while a `keys migrate-suite` or
-- `keys rewrap` batch (up to 100000 rows with --batch) held an expired record's row, the DELETE
-- waited for that batch's commit, and every Search, Reveal and lawful read of that gateway waited
-- with it (a Search took 20 s instead of 20 ms; review, reproduced).
-- Now:
--  - retention's selection (retention_expired_ids, called by the gateway in place of its own
--    SELECT, store_bulk.c) takes only rows no other transaction holds (FOR UPDATE SKIP LOCKED,
--    for the selection's own short transaction): a held record is left to the next sweep;
--  - both destruction functions run with lock_timeout 2 s (a function's SET: for the call only,
--    the DELETE's triggers included, not for the other statements of the audit transaction): a
--    row taken by another transaction between the selection and the DELETE, or a bulk destroy's
--    selected row held by a batch, fails the destruction fast with SQLSTATE 55P03 instead of
--    holding the writer; nothing of it is deleted, retention retries at its next sweep, and
--    RunBulk answers UNAVAILABLE with the request still approved (api_bulk_run.c).
-- A later CREATE OR REPLACE of either function must set lock_timeout again (it replaces the
-- function's settings).
-- CREATE OR REPLACE and ALTER FUNCTION: its row deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

-- The ids of up to p_limit records past a retention of p_days days (sql/039's predicate: the
-- later of the pickup day and the day accepted) and held by no lawful-access case (sql/038), in
-- id order, skipping every row another transaction has locked.
CREATE OR REPLACE FUNCTION retention_expired_ids(p_days integer, p_limit integer)
    RETURNS SETOF uuid
LANGUAGE sql AS $fn$
    SELECT w.id FROM waybill w
     WHERE greatest(w.pickup_day, (w.accepted_at AT TIME ZONE 'Asia/Shanghai')::date)
           < (now() AT TIME ZONE 'Asia/Shanghai')::date - p_days
       AND NOT waybill_lawful_hold(w.wb_bidx)
     ORDER BY w.id LIMIT p_limit
       FOR UPDATE SKIP LOCKED
$fn$;

DO $gives_way$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    f     text := 'retention_expired_ids(integer, integer)';
    d     text;
BEGIN
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                   current_schema());
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
    FOREACH d IN ARRAY ARRAY['retention_destroy(uuid[], integer, text, text)',
                             'bulk_destroy(uuid, text, bigint, integer)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET lock_timeout = %L', d, '2s');
    END LOOP;
END
$gives_way$;
