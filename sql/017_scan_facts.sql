-- 017_scan_facts: a waybill's three scan facts (011_scan.sql: the latest event, its time, the
-- custodian) in one call. Every read of a stored waybill (Get, Search, the outbox's claim, bulk
-- exports: gateway/store/store_read.c) asked for the three separately, three calls of a SECURITY
-- DEFINER PL/pgSQL function per row at ~20 us each; the outbox's claim spent ~60 us of its ~140 us
-- per delivery in them. This one reads the latest event once and asks for the custodian only
-- when the waybill has any scan (most stored waybills have none). Same answers as the three
-- (tests/unit/test_store_scan.c compares them); those stay for the read policy and RecordScan.
-- Runs as the owner like them, so the gateway's role learns these facts and nothing else of scan.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE FUNCTION waybill_scan_facts(w uuid, OUT custodian text, OUT last_event smallint,
                                   OUT last_event_at bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    SELECT s.event, extract(epoch FROM s.event_time)::bigint INTO last_event, last_event_at
      FROM scan s WHERE s.waybill_id = w ORDER BY s.event_time DESC, s.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_event := 0;
        last_event_at := 0;
        RETURN;
    END IF;
    custodian := waybill_custodian(w);
END
$$;

DO $facts$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
BEGIN
    EXECUTE format('ALTER FUNCTION waybill_scan_facts(uuid) OWNER TO %I', owner);
    EXECUTE format('ALTER FUNCTION waybill_scan_facts(uuid) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE 'REVOKE ALL ON FUNCTION waybill_scan_facts(uuid) FROM PUBLIC';
    EXECUTE format('GRANT EXECUTE ON FUNCTION waybill_scan_facts(uuid) TO %I', gw);
END
$facts$;
