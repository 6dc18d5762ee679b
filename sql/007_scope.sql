-- 007_scope: branch scope (Art. 34), enforced a second time by the database, and the record of
-- every Reveal (Art. 31, 35). A waybill belongs to its origin branch and to the branch its
-- destination region routes to (table route, kept with `waygatectl routes`). The gateway's role
-- sees waybill and reveal_log rows only within the scope its request set as the transaction's
-- first statement: SELECT set_config('waygate.scope', <branch>, true). A read path that forgets
-- the scope sees nothing. '*' (every row) is sent only by intake's group insert, which must read
-- the row already stored under a number to stay idempotent whatever its branch: row-level
-- security catches a read path that forgets its scope, not a compromised gateway (which can
-- send '*' itself; docs/threat-model.md).
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

-- Region code (6-digit administrative division) -> the branch that delivers there.
CREATE TABLE route (
    region_code text        PRIMARY KEY CHECK (region_code ~ '^[0-9]{6}$'),
    branch      text        NOT NULL CHECK (branch ~ '^[A-Za-z0-9_-]{1,31}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL
);
CREATE INDEX route_branch_idx ON route (branch);

COMMENT ON TABLE route IS
    'Routing table: destination region code -> delivering branch (part of a waybill''s scope).';

-- Searches of the delivering branch by day: its waybills are found by destination region.
CREATE INDEX waybill_dest_day_idx ON waybill (dest_region_code, pickup_day);

-- Every Reveal that released a value: who (principal name, account, role, branch, certificate),
-- from where (peer), what (record and field path) and why (the caller's reason). Never the value.
-- quota_key is what the quota counts: 'account:<id>' for a person's token, else 'cert:<name>'.
-- Written before the value is sent (fail closed); the id is the reveal's audit_seq until the audit
-- chain exists.
CREATE TABLE reveal_log (
    id         bigserial   PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    quota_key  text        NOT NULL,
    principal  text        NOT NULL,
    account_id bigint,
    role       text        NOT NULL,
    branch     text        NOT NULL,
    cert       text,
    peer       text,
    record_id  uuid        NOT NULL,
    field      text        NOT NULL,
    reason     text        NOT NULL CHECK (octet_length(reason) BETWEEN 1 AND 512)
);
CREATE INDEX reveal_log_quota_idx ON reveal_log (quota_key, at);

COMMENT ON TABLE reveal_log IS
    'Reveals (Art. 31, 35): who, when, where, which field of which record, why; never the value.';

-- Row-level security. The owner (migrations) is not subject to it; the two login roles are.
ALTER TABLE waybill ENABLE ROW LEVEL SECURITY;
ALTER TABLE reveal_log ENABLE ROW LEVEL SECURITY;

DO $scope$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    -- The request's scope: a branch code, '*' (intake only), or unset/'' (nothing at all).
    s     text := 'coalesce(current_setting(''waygate.scope'', true), '''')';
    t     text;
BEGIN
    FOREACH t IN ARRAY ARRAY['route', 'reveal_log'] LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO %I', t, owner);
        EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC, %I, %I', t, gw, adm);
    END LOOP;
    EXECUTE format('REVOKE ALL ON SEQUENCE reveal_log_id_seq FROM PUBLIC, %I, %I', gw, adm);

    -- waybill, as the gateway: reads within the scope (origin branch, or destination region
    -- routed to the branch); inserts only under '*' (intake's group insert, whose ON CONFLICT
    -- path reads the stored row of any branch).
    EXECUTE format('CREATE POLICY waybill_gateway_read ON waybill FOR SELECT TO %I USING ('
                   '%s = ''*'' OR (%s <> '''' AND (origin_branch = %s OR dest_region_code IN '
                   '(SELECT r.region_code FROM route r WHERE r.branch = %s))))', gw, s, s, s, s);
    EXECUTE format('CREATE POLICY waybill_gateway_insert ON waybill FOR INSERT TO %I '
                   'WITH CHECK (%s = ''*'')', gw, s);
    -- waybill, as waygatectl: keys rewrap reads and rewrites every row's wrapped key (its
    -- column grants in 005 allow nothing else).
    EXECUTE format('CREATE POLICY waybill_admin_read ON waybill FOR SELECT TO %I USING (true)',
                   adm);
    EXECUTE format('CREATE POLICY waybill_admin_rewrap ON waybill FOR UPDATE TO %I '
                   'USING (true) WITH CHECK (true)', adm);

    -- reveal_log, as the gateway: counts and writes its scope's rows (a reveal is written under
    -- the revealing principal's branch).
    EXECUTE format('CREATE POLICY reveal_log_gateway_read ON reveal_log FOR SELECT TO %I '
                   'USING (%s <> '''' AND branch = %s)', gw, s, s);
    EXECUTE format('CREATE POLICY reveal_log_gateway_insert ON reveal_log FOR INSERT TO %I '
                   'WITH CHECK (%s <> '''' AND branch = %s)', gw, s, s);

    -- waygated: reads the routing table (scope of a record), writes and counts reveals.
    EXECUTE format('GRANT SELECT (region_code, branch) ON route TO %I', gw);
    EXECUTE format('GRANT INSERT (quota_key, principal, account_id, role, branch, cert, peer, '
                   'record_id, field, reason) ON reveal_log TO %I', gw);
    EXECUTE format('GRANT SELECT (id, at, quota_key, branch) ON reveal_log TO %I', gw);
    EXECUTE format('GRANT USAGE ON SEQUENCE reveal_log_id_seq TO %I', gw);

    -- waygatectl: keeps the routing table (routes add|list|remove), recorded in admin_log.
    EXECUTE format('GRANT SELECT, INSERT, DELETE ON route TO %I', adm);
    EXECUTE format('GRANT UPDATE (branch, created_at, created_by) ON route TO %I', adm);
END
$scope$;
