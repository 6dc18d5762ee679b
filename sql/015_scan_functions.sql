-- 015_scan_functions: the three scan facts of a waybill (011_scan.sql) as PL/pgSQL, same bodies and
-- same answers. As SQL functions they were never inlined (SECURITY DEFINER forbids it) and their
-- bodies were planned again on every execution of each statement that called them: every Get,
-- Search and claim of the outbox reads all three per row, and the gateway's read policy on waybill
-- asks for the custodian, so a Get cost ~1 ms of PostgreSQL's time in planning alone. PL/pgSQL
-- keeps each body's plan for the session. Owner, SECURITY DEFINER, search_path and the grants stay
-- as 011 set them (CREATE OR REPLACE keeps owner and grants; the path is set again below).
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE OR REPLACE FUNCTION waybill_last_event(w uuid) RETURNS smallint
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    RETURN coalesce((SELECT s.event FROM scan s WHERE s.waybill_id = w
                      ORDER BY s.event_time DESC, s.seq DESC LIMIT 1), 0::smallint);
END
$$;

CREATE OR REPLACE FUNCTION waybill_last_event_at(w uuid) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    RETURN coalesce((SELECT extract(epoch FROM s.event_time)::bigint FROM scan s
                      WHERE s.waybill_id = w ORDER BY s.event_time DESC, s.seq DESC LIMIT 1), 0);
END
$$;

CREATE OR REPLACE FUNCTION waybill_custodian(w uuid) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    RETURN (SELECT a.branch
              FROM (SELECT s.branch, s.event_time, s.seq FROM scan s
                     WHERE s.waybill_id = w AND s.event = 2
                     ORDER BY s.event_time DESC, s.seq DESC LIMIT 1) a
             WHERE NOT EXISTS (SELECT 1 FROM scan f
                                WHERE f.waybill_id = w
                                  AND (f.event_time, f.seq) > (a.event_time, a.seq)
                                  AND (f.event = 5 OR (f.event = 3 AND f.branch = a.branch))));
END
$$;

DO $scanfn$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['waybill_last_event(uuid)', 'waybill_last_event_at(uuid)',
                             'waybill_custodian(uuid)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
END
$scanfn$;
