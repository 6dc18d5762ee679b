-- 055_retention_reads_old_ranges: retention's selection (retention_expired_ids, sql/048) reads
-- the part of the waybill table that can hold expired records, not all of it (Art. 26).
--
-- Its predicate, the later of the pickup day and the day accepted before the period's first day
-- (sql/039), matched no index, and the planner walked the primary key in id order, reading every
-- waybill's row to find the first p_limit expired ones: 2.0 s for 311 520 waybills none of which
-- had expired (EXPLAIN ANALYZE on a dev stack; 6 ms with this migration), at every sweep (hourly
-- by default, and at each start), one of the gateway's pooled connections held for it, and
-- growing with the table.
-- Now:
--  - waybill_accepted_brin, a BRIN index on accepted_at: rows are appended roughly in the order
--    they are accepted, so each range of 32 pages summarises a narrow span of time. It costs an
--    insert almost nothing (no tree to descend; a range is summarised once it is full,
--    autosummarize) and holds a few bytes per range;
--  - the selection adds a condition the index can answer and that the predicate implies: the
--    day accepted is before day d exactly when accepted_at is before midnight of d in
--    Asia/Shanghai. The predicate itself stays as sql/039 wrote it;
--  - it is planned at each call with the day as a constant (EXECUTE), so that the planner weighs
--    how many rows are that old from the column's statistics; a generic plan cannot, and keeps
--    the walk along the primary key.
-- The result is the same rows in the same order (id), and rows other transactions hold are still
-- skipped (sql/048). Building the index takes a lock that holds up inserts into the waybill table
-- while it reads the table once.
-- CREATE INDEX IF NOT EXISTS, CREATE OR REPLACE and ALTER FUNCTION: its row deleted, this
-- migration applies again unchanged. Applied in one transaction by `waygatectl migrate` as the
-- owner: no transaction control.

CREATE INDEX IF NOT EXISTS waybill_accepted_brin ON waybill USING brin (accepted_at)
    WITH (pages_per_range = 32, autosummarize = on);

CREATE OR REPLACE FUNCTION retention_expired_ids(p_days integer, p_limit integer)
    RETURNS SETOF uuid
LANGUAGE plpgsql AS $fn$
DECLARE
    d date := (now() AT TIME ZONE 'Asia/Shanghai')::date - p_days;
BEGIN
    IF d IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT w.id FROM waybill w
          WHERE w.accepted_at < (%1$L::date::timestamp AT TIME ZONE ''Asia/Shanghai'')
            AND greatest(w.pickup_day, (w.accepted_at AT TIME ZONE ''Asia/Shanghai'')::date)
                < %1$L::date
            AND NOT waybill_lawful_hold(w.wb_bidx)
          ORDER BY w.id LIMIT %2$s
            FOR UPDATE SKIP LOCKED', d, coalesce(p_limit::text, 'ALL'));
END
$fn$;

-- CREATE OR REPLACE keeps the owner and the grants but not the function's settings: SECURITY
-- DEFINER and the search path again, as sql/048 set them.
DO $reads_old_ranges$
DECLARE
    f text := 'retention_expired_ids(integer, integer)';
BEGIN
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                   current_schema());
END
$reads_old_ranges$;
