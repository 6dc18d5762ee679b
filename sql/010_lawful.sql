-- 010_lawful: lawful access (Art. 16) and what the monthly report and `waygatectl incidents list`
-- read (Art. 17, 26, 37). A lawful-access case is registered by a lawful_access account
-- (agency, officer, case reference, legal document, the waybills asked for by the blind index of
-- their number, never the number), decided by a security admin who is not the requester (not the
-- same account, not the same person), and while approved and unexpired it lets its requester
-- read exactly the named waybills in clear: the database shows those rows to the gateway only
-- under the scope 'lawful:<requester account id>' (row-level security, as sql/007_scope.sql does
-- for branches). Under a branch scope no case, no item and no lawful read is visible.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE TABLE lawful_case (
    id                 uuid        PRIMARY KEY,
    requested_at       timestamptz NOT NULL DEFAULT now(),
    requester_account  bigint      NOT NULL REFERENCES account (id),
    requester          text        NOT NULL,
    agency             text        NOT NULL CHECK (octet_length(agency) BETWEEN 1 AND 256),
    officer            text        NOT NULL CHECK (octet_length(officer) BETWEEN 1 AND 256),
    case_ref           text        NOT NULL CHECK (octet_length(case_ref) BETWEEN 1 AND 256),
    legal_document_ref text        NOT NULL
                                   CHECK (octet_length(legal_document_ref) BETWEEN 1 AND 256),
    fields             text[]      NOT NULL DEFAULT '{}', -- field paths; empty: every field
    waybills           integer     NOT NULL CHECK (waybills >= 1),
    state              text        NOT NULL DEFAULT 'pending'
                                   CHECK (state IN ('pending', 'approved', 'rejected')),
    decided_at         timestamptz,
    decider_account    bigint      REFERENCES account (id),
    decider            text,
    decision_comment   text        CHECK (octet_length(decision_comment) <= 512),
    valid_until        timestamptz,
    CONSTRAINT lawful_case_decided CHECK ((state = 'pending') = (decided_at IS NULL)),
    CONSTRAINT lawful_case_expiry CHECK (state <> 'approved' OR valid_until > decided_at),
    CONSTRAINT lawful_case_four_eyes CHECK (decider_account IS DISTINCT FROM requester_account)
);
CREATE INDEX lawful_case_requester_idx ON lawful_case (requester_account, state);
COMMENT ON TABLE lawful_case IS
    'Lawful-access cases (Art. 16): confidential; requester, authority, legal basis, decision.';

CREATE TABLE lawful_case_item (
    case_id uuid  NOT NULL REFERENCES lawful_case (id),
    wb_bidx bytea NOT NULL CHECK (octet_length(wb_bidx) = 16), -- the number's blind index
    PRIMARY KEY (case_id, wb_bidx)
);
CREATE INDEX lawful_case_item_bidx_idx ON lawful_case_item (wb_bidx);
COMMENT ON TABLE lawful_case_item IS
    'The waybills a lawful-access case names, by the blind index of their number only.';

-- The decision, in one statement so that its checks and its write see the same row (FOR UPDATE):
-- raises WL001 no such case, WL002 already decided, WL003 the decider is the requester or the
-- same person, WL004 the case waited longer than p_ttl_s for a decision (expired). Runs with the
-- caller's privileges.
CREATE FUNCTION lawful_case_decide(p_case uuid, p_decider bigint, p_decider_name text,
                                   p_approve boolean, p_comment text, p_valid_until timestamptz,
                                   p_ttl_s bigint) RETURNS text
    LANGUAGE plpgsql AS $fn$
DECLARE
    c lawful_case%ROWTYPE;
BEGIN
    SELECT * INTO c FROM lawful_case WHERE id = p_case FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'case_id: no such lawful-access case' USING ERRCODE = 'WL001';
    END IF;
    IF c.state <> 'pending' THEN
        RAISE EXCEPTION 'case_id: the case was already decided' USING ERRCODE = 'WL002';
    END IF;
    IF c.requester_account = p_decider OR
       (SELECT person FROM account WHERE id = c.requester_account) =
       (SELECT person FROM account WHERE id = p_decider) THEN
        RAISE EXCEPTION 'case_id: the requester may not decide' USING ERRCODE = 'WL003';
    END IF;
    IF c.requested_at + make_interval(secs => p_ttl_s) < now() THEN
        RAISE EXCEPTION 'case_id: the case expired undecided' USING ERRCODE = 'WL004';
    END IF;
    IF p_approve AND p_valid_until <= now() THEN
        RAISE EXCEPTION 'valid_until: must be in the future' USING ERRCODE = 'WL006';
    END IF;
    UPDATE lawful_case
       SET state = CASE WHEN p_approve THEN 'approved' ELSE 'rejected' END,
           decided_at = now(), decider_account = p_decider, decider = p_decider_name,
           decision_comment = nullif(p_comment, ''),
           valid_until = CASE WHEN p_approve THEN p_valid_until END
     WHERE id = p_case;
    RETURN CASE WHEN p_approve THEN 'approved' ELSE 'rejected' END;
END
$fn$;

-- A lawful read's last check, in the transaction that writes its audit record: the case still
-- approved, unexpired and the caller's (WL005 otherwise), so a read never outlives its case.
CREATE FUNCTION lawful_case_check(p_case uuid, p_account bigint) RETURNS void
    LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM lawful_case
      WHERE id = p_case AND requester_account = p_account AND state = 'approved'
        AND valid_until > now();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'waybill_no: the lawful-access case is no longer approved'
            USING ERRCODE = 'WL005';
    END IF;
END
$fn$;

-- The report's and the CLI's view of incidents (Art. 17) and of the suspicious-customer
-- register, through functions running as the owner: a grant on those tables themselves would be
-- lost whenever sql/005_roles.sql, which sets their grants, runs again (as sql/006 explains), and
-- the functions give counts and the incident columns that hold no PII, nothing else.
CREATE FUNCTION report_incidents(p_from timestamptz, p_to timestamptz)
    RETURNS TABLE (severity text, incidents bigint)
    LANGUAGE sql STABLE AS $fn$
        SELECT i.severity, sum(i.count)::bigint FROM incident i
         WHERE i.occurred_at >= p_from AND i.occurred_at < p_to GROUP BY i.severity
    $fn$;

CREATE FUNCTION report_suspicious() RETURNS bigint
    LANGUAGE sql STABLE AS $fn$
        SELECT count(*) FROM phone_owner WHERE suspicious
    $fn$;

CREATE FUNCTION cli_incident_list(p_from timestamptz, p_severity text, p_limit integer)
    RETURNS TABLE (id bigint, occurred_at timestamptz, severity text, kind text, count integer,
                   principal text, peer text, branch text, detail text, record_id uuid)
    LANGUAGE sql STABLE AS $fn$
        SELECT i.id, i.occurred_at, i.severity, i.kind, i.count, i.principal, i.peer, i.branch,
               i.detail, i.record_id
          FROM incident i
         WHERE (p_from IS NULL OR i.occurred_at >= p_from)
           AND (p_severity IS NULL OR i.severity = p_severity)
         ORDER BY i.occurred_at DESC, i.id DESC LIMIT p_limit
    $fn$;

ALTER TABLE waybill ENABLE ROW LEVEL SECURITY;
ALTER TABLE lawful_case ENABLE ROW LEVEL SECURITY;
ALTER TABLE lawful_case_item ENABLE ROW LEVEL SECURITY;

DO $lawful$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    s     text := 'coalesce(current_setting(''waygate.scope'', true), '''')';
    t     text;
    f     text;
BEGIN
    FOREACH t IN ARRAY ARRAY['lawful_case', 'lawful_case_item'] LOOP
        EXECUTE format('ALTER TABLE %I OWNER TO %I', t, owner);
        EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC, %I, %I', t, gw, adm);
        -- never under a branch scope: only without one (request, decision) or under 'lawful:'
        EXECUTE format('CREATE POLICY %I ON %I TO %I USING (%s = '''' OR %s LIKE ''lawful:%%'') '
                       'WITH CHECK (%s = '''')', t || '_gateway', t, gw, s, s, s);
    END LOOP;

    -- waybill, as the gateway under 'lawful:<account id>': exactly the rows named by an approved,
    -- unexpired case of that account.
    EXECUTE format('CREATE POLICY waybill_gateway_lawful ON waybill FOR SELECT TO %I USING ('
                   '%s LIKE ''lawful:%%'' AND EXISTS (SELECT 1 FROM lawful_case c '
                   'JOIN lawful_case_item i ON i.case_id = c.id '
                   'WHERE i.wb_bidx = waybill.wb_bidx AND c.state = ''approved'' '
                   'AND c.valid_until > now() '
                   'AND c.requester_account::text = substr(%s, 8)))', gw, s, s);

    EXECUTE format('GRANT SELECT, INSERT ON lawful_case, lawful_case_item TO %I', gw);
    EXECUTE format('GRANT UPDATE (state, decided_at, decider_account, decider, decision_comment, '
                   'valid_until) ON lawful_case TO %I', gw);

    FOREACH f IN ARRAY ARRAY['lawful_case_decide(uuid, bigint, text, boolean, text, timestamptz, '
                             'bigint)', 'lawful_case_check(uuid, bigint)'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
    END LOOP;

    FOREACH f IN ARRAY ARRAY['report_incidents(timestamptz, timestamptz)', 'report_suspicious()',
                             'cli_incident_list(timestamptz, text, integer)'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    EXECUTE format('GRANT EXECUTE ON FUNCTION report_incidents(timestamptz, timestamptz), '
                   'report_suspicious() TO %I, %I', gw, adm);
    EXECUTE format('GRANT EXECUTE ON FUNCTION cli_incident_list(timestamptz, text, integer) '
                   'TO %I', adm);
END
$lawful$;
