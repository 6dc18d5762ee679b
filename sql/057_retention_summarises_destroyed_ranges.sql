-- 057_retention_summarises_destroyed_ranges: the block ranges of waybill_accepted_brin that the
-- sweep destroyed records in are summarised again, so that the sweep's selection keeps reading
-- only the ranges that can hold expired records (Art. 26).
--
-- PostgreSQL widens a BRIN range's summary as rows arrive and never narrows it as rows go. Once
-- a range's expired records were destroyed and new rows refilled its space, its summary still
-- reached back to the destroyed records, and the selection (sql/055, sql/056) read it at every
-- later sweep: after the first full retention period, in time, most of the table at each sweep.
-- Now:
--  - the selection notes the range of each record it returns, in retention_stale_range: insert
--    only, no key, so that two gateways' sweeps noting the same range never wait for each
--    other. The sweep destroys what the selection returned, in the transaction after it; a
--    record it could not destroy is found and noted again at the next sweep;
--  - at each call, before it selects, it takes up to 64 notes at least ten minutes old (skipping
--    those another call holds), summarises their ranges again (brin_desummarize_range, then
--    brin_summarize_range) and deletes the notes. A summary is made from the rows some
--    transaction may still see: ten minutes after the selection, so after the destruction by a
--    little less, leave the transactions that could see the destroyed rows time to end. A
--    snapshot older than that (a dump running for hours) keeps them in the new summary, and the
--    range is read until a destruction in it is noted again: more read, nothing missed;
--  - it summarises only if it gets the table's SHARE UPDATE EXCLUSIVE lock at once (the lock of
--    VACUUM, ANALYZE and of the two functions, held to the end of the selection's transaction);
--    else, a VACUUM or another sweep holding it, a later call does. Any lock the call waits for
--    it waits 2 s at most (lock_timeout, for the call): past that the summarising gives way and
--    the selection, or the sweep's batch, fails as any other;
--  - if summarising fails otherwise (waybill_accepted_brin dropped or replaced by an operator),
--    the call says why in a WARNING (PostgreSQL's log), keeps the notes, and selects: the sweep
--    does not stop for it.
-- Ranges are noted in pages_per_range of the index as it is when noted (32, sql/055). Records a
-- bulk destroy deletes are not noted; they are seldom older than the period, and a range such a
-- destruction leaves behind is read by each sweep until a sweep destroys a record in it.
-- CREATE ... IF NOT EXISTS, CREATE OR REPLACE and ALTER FUNCTION: its row deleted, this
-- migration applies again unchanged. Applied in one transaction by `waygatectl migrate` as the
-- owner: no transaction control.

CREATE TABLE IF NOT EXISTS retention_stale_range (
    range_start bigint NOT NULL CHECK (range_start >= 0),
    noted_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS retention_stale_range_noted ON retention_stale_range (noted_at);
COMMENT ON TABLE retention_stale_range IS
    'Block ranges of waybill (waybill_accepted_brin''s) in which retention''s selection returned '
    'records to destroy, one row each time, to summarise again once the destruction is old '
    'enough; written and read by retention_expired_ids only (sql/057).';

CREATE OR REPLACE FUNCTION retention_expired_ids(p_days integer, p_limit integer)
    RETURNS SETOF uuid
LANGUAGE plpgsql AS $fn$
DECLARE
    d     date := (now() AT TIME ZONE 'Asia/Shanghai')::date - p_days;
    brin  regclass := to_regclass('waybill_accepted_brin');
    pages integer := 128; -- BRIN's default pages_per_range
    start bigint;
BEGIN
    IF d IS NULL THEN
        RETURN;
    END IF;
    SELECT coalesce(max(o.option_value::integer), pages) INTO pages
      FROM pg_class c, pg_options_to_table(c.reloptions) AS o
     WHERE c.oid = brin AND o.option_name = 'pages_per_range';
    IF EXISTS (SELECT 1 FROM retention_stale_range
                WHERE noted_at <= now() - interval '10 minutes') THEN
      BEGIN
        IF brin IS NULL THEN
            RAISE EXCEPTION 'index waybill_accepted_brin does not exist';
        END IF;
        LOCK TABLE waybill IN SHARE UPDATE EXCLUSIVE MODE NOWAIT;
        FOR start IN
            WITH due AS (DELETE FROM retention_stale_range
                          WHERE ctid IN (SELECT ctid FROM retention_stale_range
                                          WHERE noted_at <= now() - interval '10 minutes'
                                          ORDER BY noted_at LIMIT 64
                                            FOR UPDATE SKIP LOCKED)
                         RETURNING range_start)
            SELECT DISTINCT range_start FROM due LOOP
            PERFORM brin_desummarize_range(brin, start);
            PERFORM brin_summarize_range(brin, start);
        END LOOP;
      EXCEPTION
        WHEN lock_not_available THEN
            NULL; -- a VACUUM or ANALYZE of waybill, or another sweep: a later call does it
        WHEN OTHERS THEN -- the index dropped or replaced: the sweep goes on, the notes wait
            RAISE WARNING 'retention: ranges of destroyed records not summarised again: %',
                SQLERRM;
      END;
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH sel AS MATERIALIZED (
             SELECT w.id, w.ctid FROM waybill w
              WHERE w.accepted_at < (%1$L::date::timestamp AT TIME ZONE ''Asia/Shanghai'')
                AND greatest(w.pickup_day, (w.accepted_at AT TIME ZONE ''Asia/Shanghai'')::date)
                    < %1$L::date
                AND NOT waybill_lawful_hold(w.wb_bidx)
              ORDER BY w.id LIMIT %2$s
                FOR UPDATE OF w SKIP LOCKED),
         noted AS (
             INSERT INTO retention_stale_range (range_start)
             SELECT DISTINCT (ctid::text::point)[0]::bigint / %3$s * %3$s FROM sel)
         SELECT id FROM sel ORDER BY id', d, coalesce(p_limit::text, 'ALL'), pages);
END
$fn$;

-- The table is the database owner's, like every table (a superuser may run the migrations), and
-- no other role's. CREATE OR REPLACE keeps the function's owner and grants but not its settings:
-- SECURITY DEFINER, the search path and sequential scans off again, as sql/055 and sql/056 did,
-- and the lock timeout.
DO $summarises_destroyed_ranges$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    f     text := 'retention_expired_ids(integer, integer)';
BEGIN
    EXECUTE format('ALTER TABLE retention_stale_range OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON TABLE retention_stale_range FROM PUBLIC, %I, %I',
                   current_database() || '_gateway', current_database() || '_admin');
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp '
                   'SET enable_seqscan = off SET lock_timeout = ''2s''', f, current_schema());
END
$summarises_destroyed_ranges$;
