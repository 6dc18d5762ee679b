-- 021_independent_decider: whoever decides a lawful-access case or a bulk request is independent
-- of its requester (Art. 16, 37): not the same person, not the creator of the requester's
-- account, and not an account the requester created.
--
-- Until now only "not the requester" (bulk: by name; lawful access: by account and person) was
-- checked. A review showed one security admin approving alone: they created a lawful_access
-- account under an invented person with a password they chose, filed a case with it, and
-- approved that case with their own account (the persons differed), then read any waybill in
-- clear; the same works for a compliance_auditor account approving its creator's bulk request.
-- Now the decision is refused (lawful: WL007; bulk: WB001) when the two accounts are one person,
-- or either account was created by the other (by its name, or by another account of its person).
-- A chain through a third account (an admin creating a second admin who creates the requester)
-- is not caught here; each of those creations is an audit record (account.create).
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

-- Whether the accounts named p_a and p_b are one person or either created the other. Runs as the
-- owner: the gateway's role may not read account.created_by. False when either is no account
-- (a certificate principal).
CREATE FUNCTION account_related(p_a text, p_b text) RETURNS boolean
LANGUAGE sql STABLE AS $fn$
    SELECT EXISTS (
        SELECT 1 FROM account a, account b
         WHERE a.name = p_a AND b.name = p_b
           AND (a.person = b.person OR a.created_by = b.name OR b.created_by = a.name
                OR EXISTS (SELECT 1 FROM account c WHERE c.name = a.created_by
                                                      AND c.person = b.person)
                OR EXISTS (SELECT 1 FROM account c WHERE c.name = b.created_by
                                                      AND c.person = a.person)))
$fn$;

-- The bulk decision's guard, in its UPDATE's WHERE (store_bulk.c): raises WB001 when the decider
-- is not independent of the requester; true otherwise.
CREATE FUNCTION bulk_decider_independent(p_requester text, p_decider text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
    IF account_related(p_requester, p_decider) THEN
        RAISE EXCEPTION 'request_id: the decider is not independent of the requester'
            USING ERRCODE = 'WB001';
    END IF;
    RETURN true;
END
$fn$;

CREATE OR REPLACE FUNCTION lawful_case_decide(p_case uuid, p_decider bigint,
                                              p_decider_name text, p_approve boolean,
                                              p_comment text, p_valid_until timestamptz,
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
    IF account_related((SELECT name FROM account WHERE id = c.requester_account),
                       (SELECT name FROM account WHERE id = p_decider)) THEN
        RAISE EXCEPTION 'case_id: the decider is not independent of the requester'
            USING ERRCODE = 'WL007';
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

DO $independent$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    f     text;
BEGIN
    EXECUTE format('ALTER FUNCTION account_related(text, text) OWNER TO %I', owner);
    EXECUTE format('ALTER FUNCTION account_related(text, text) SECURITY DEFINER '
                   'SET search_path = %I, pg_temp', current_schema());
    FOREACH f IN ARRAY ARRAY['account_related(text, text)',
                             'bulk_decider_independent(text, text)'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
    END LOOP;
END
$independent$;
