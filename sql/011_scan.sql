-- 011_scan: scan events (a waybill's travel: picked up, arrived, departed, out for delivery,
-- delivered, delivery failed, returned) and custody, which extends a branch's scope (Art. 34): a
-- branch whose device scanned a waybill in (ARRIVED) sees it until the waybill leaves that branch
-- (DEPARTED from it, or ARRIVED elsewhere) or is delivered. Nothing here is PII: a scan names the
-- record id, the event, its time, the branch and the scanning device's principal.
-- The gateway inserts scans only under the intake scope '*' (its group insert reads the scans
-- already stored to stay idempotent and to check the transition under a per-waybill lock); every
-- other read goes through functions that answer for one waybill (its latest event and its time,
-- its custodian), so the gateway's role never lists scans of other branches. RecordScan also reads a
-- waybill under '*' for an arrival (any branch may scan in a stored waybill: that is what gives it
-- custody) and to find the retry of an event whose waybill has left the caller's scope since;
-- the gateway's policy then decides (gateway/api/api_scan.c).
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE TABLE scan (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    seq         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    waybill_id  uuid        NOT NULL REFERENCES waybill (id) ON DELETE CASCADE,
    event       smallint    NOT NULL CHECK (event BETWEEN 1 AND 7),
    event_time  timestamptz NOT NULL,
    branch      text        NOT NULL CHECK (branch ~ '^[A-Za-z0-9_-]{1,31}$'),
    device      text        NOT NULL CHECK (octet_length(device) BETWEEN 1 AND 72),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT scan_idempotent UNIQUE (waybill_id, event, event_time, device)
);
-- A waybill's events in order (event time, then the order they were recorded).
CREATE INDEX scan_waybill_idx ON scan (waybill_id, event_time, seq);

COMMENT ON TABLE scan IS
    'Scan events (enum waygate.v1.ScanEvent): waybill, event, time, branch, device; no PII.';

-- The latest event of a waybill (0: none), by event time then recording order.
CREATE FUNCTION waybill_last_event(w uuid) RETURNS smallint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT s.event FROM scan s WHERE s.waybill_id = w
                      ORDER BY s.event_time DESC, s.seq DESC LIMIT 1), 0::smallint)
$$;

-- The time of that latest event (Unix seconds; 0: none).
CREATE FUNCTION waybill_last_event_at(w uuid) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT extract(epoch FROM s.event_time)::bigint FROM scan s
                      WHERE s.waybill_id = w ORDER BY s.event_time DESC, s.seq DESC LIMIT 1), 0)
$$;

-- The branch holding custody of a waybill, or NULL: the branch of its latest ARRIVED (2), unless a
-- later DEPARTED (3) from that branch or a later DELIVERED (5) ended it. One custodian at a time:
-- an arrival elsewhere moves custody there.
CREATE FUNCTION waybill_custodian(w uuid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT a.branch
      FROM (SELECT s.branch, s.event_time, s.seq FROM scan s
             WHERE s.waybill_id = w AND s.event = 2
             ORDER BY s.event_time DESC, s.seq DESC LIMIT 1) a
     WHERE NOT EXISTS (SELECT 1 FROM scan f
                        WHERE f.waybill_id = w AND (f.event_time, f.seq) > (a.event_time, a.seq)
                          AND (f.event = 5 OR (f.event = 3 AND f.branch = a.branch)))
$$;

ALTER TABLE scan ENABLE ROW LEVEL SECURITY;

DO $scan$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    -- the request's scope, as in 007_scope.sql
    s     text := 'coalesce(current_setting(''waygate.scope'', true), '''')';
    f     text;
BEGIN
    EXECUTE format('ALTER TABLE scan OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON TABLE scan FROM PUBLIC, %I, %I', gw, adm);

    -- The three functions run as the owner (row-level security of scan does not apply to them), so
    -- the waybill read policy below can ask them without recursion, and the gateway learns of a
    -- waybill's scans only these two facts.
    FOREACH f IN ARRAY ARRAY['waybill_last_event(uuid)', 'waybill_last_event_at(uuid)',
                             'waybill_custodian(uuid)'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
    END LOOP;

    -- scan, as the gateway: the group insert (gateway/store/store_scan.c) under '*' only; it reads
    -- the stored scans under '*' too (idempotency). No UPDATE, DELETE: a scan is never changed.
    EXECUTE format('CREATE POLICY scan_gateway_read ON scan FOR SELECT TO %I USING (%s = ''*'')',
                   gw, s);
    EXECUTE format('CREATE POLICY scan_gateway_insert ON scan FOR INSERT TO %I '
                   'WITH CHECK (%s = ''*'')', gw, s);
    EXECUTE format('GRANT INSERT (waybill_id, event, event_time, branch, device) ON scan TO %I',
                   gw);
    EXECUTE format('GRANT SELECT (id, waybill_id, event, event_time, branch, device) ON scan '
                   'TO %I', gw);

    -- waybill, as the gateway: 007's read scope plus custody (the caller's branch holds it).
    EXECUTE format('DROP POLICY waybill_gateway_read ON waybill');
    EXECUTE format('CREATE POLICY waybill_gateway_read ON waybill FOR SELECT TO %I USING ('
                   '%s = ''*'' OR (%s <> '''' AND (origin_branch = %s OR dest_region_code IN '
                   '(SELECT r.region_code FROM route r WHERE r.branch = %s) OR '
                   'waybill_custodian(id) = %s)))', gw, s, s, s, s, s);
END
$scan$;
