-- 047_bulk_request_history: a bulk request's row is written forward only: what was requested never
-- changes, a decision and a run are written once, and a state moves only as the gateway moves it
-- (Art. 37).
--
-- The gateway's role holds INSERT on bulk_request and UPDATE of its decision and run columns
-- (approver, approver_role, decision_comment, decided_at, expires_at, run_at, export_id, state;
-- sql/009), and nothing checked what an UPDATE wrote: as that role, a reviewer set the approver of
-- an executed export to another account (UPDATE 1), so `waygatectl export trace`, the tool that
-- names who requested and approved the export a leaked file came from, named someone else; and
-- swapping export_id between two finished exports pinned a leaked file on the wrong requester and
-- approver (review, reproduced on a dev stack).
-- Now row triggers refuse, to every role, the owner included (WB002, naming the column and the
-- rule), whatever rewrites the history:
--  - INSERT: a new request is pending, with no decision, no run, no export id and no run count
--    (the gateway's RequestBulk, store_bulk.c, inserts it so);
--  - UPDATE: what was requested (id, operation, selector, purpose, legal basis, destination,
--    requester, requester_role, requester_branch, record_count, requested_at, max_level,
--    recipient_key) never changes; approver, approver_role, decision_comment, decided_at,
--    expires_at, run_at, export_id and run_count, once written, never change;
--  - the state moves only as the gateway's statements move it (store_bulk.c): pending to
--    approved or rejected (the decision: approver, approver_role and decided_at = now() written
--    with it, and expires_at, after now(), for an approval only), approved to executed before the
--    approval expires (the claim: run_at = now(), export_id for an export or copy, none for a
--    destruction); rejected and executed are final;
--  - a decision's columns are written only by the decision, a run's only by the claim, and
--    run_count only on an executed destruction (bulk_destroy, sql/031, in the claim's
--    transaction): a rejected row changes no column, an executed one only that once.
-- The trigger cannot tell the gateway from whoever holds its role: such a person can still file a
-- request of their own and move it forward as the gateway does (docs/threat-model.md); the audit
-- chain, which `waygatectl export trace` now reads beside the table, records only what the
-- gateway did. Tests that tamper first set session_replication_role = replica as a superuser.
-- CREATE OR REPLACE, DROP TRIGGER IF EXISTS: its row deleted, this migration applies again
-- unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE OR REPLACE FUNCTION bulk_request_new_pending() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    c text;
BEGIN
    IF NEW.state IS DISTINCT FROM 'pending' THEN
        RAISE EXCEPTION 'bulk_request.state: a new request is pending (Art. 37)'
            USING ERRCODE = 'WB002';
    END IF;
    FOREACH c IN ARRAY ARRAY['approver', 'approver_role', 'decision_comment', 'decided_at',
                             'expires_at', 'run_at', 'export_id', 'run_count'] LOOP
        IF to_jsonb(NEW) -> c <> 'null'::jsonb THEN
            RAISE EXCEPTION 'bulk_request.%: a new request is undecided and has not run (Art. 37)',
                c USING ERRCODE = 'WB002';
        END IF;
    END LOOP;
    RETURN NEW;
END
$fn$;

CREATE OR REPLACE FUNCTION bulk_request_forward_only() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    o       jsonb := to_jsonb(OLD);
    n       jsonb := to_jsonb(NEW);
    decided boolean := OLD.state = 'pending' AND NEW.state IN ('approved', 'rejected');
    claimed boolean := OLD.state = 'approved' AND NEW.state = 'executed';
    c       text;
BEGIN
    FOREACH c IN ARRAY ARRAY['id', 'operation', 'sel_branch', 'sel_from', 'sel_to', 'sel_ids',
                             'purpose', 'legal_basis', 'destination', 'requester',
                             'requester_role', 'requester_branch', 'record_count',
                             'requested_at', 'max_level', 'recipient_key'] LOOP
        IF o -> c IS DISTINCT FROM n -> c THEN
            RAISE EXCEPTION 'bulk_request.%: what was requested never changes (Art. 37)', c
                USING ERRCODE = 'WB002';
        END IF;
    END LOOP;
    FOREACH c IN ARRAY ARRAY['approver', 'approver_role', 'decision_comment', 'decided_at',
                             'expires_at', 'run_at', 'export_id', 'run_count'] LOOP
        IF o -> c <> 'null'::jsonb AND o -> c IS DISTINCT FROM n -> c THEN
            RAISE EXCEPTION 'bulk_request.%: a decision or run, once written, never changes '
                            '(Art. 37)', c USING ERRCODE = 'WB002';
        END IF;
    END LOOP;
    IF OLD.state IS DISTINCT FROM NEW.state AND NOT (decided OR claimed) THEN
        RAISE EXCEPTION 'bulk_request.state: moves only from pending to approved or rejected, or '
                        'from approved to executed (Art. 37)' USING ERRCODE = 'WB002';
    END IF;
    FOREACH c IN ARRAY ARRAY['approver', 'approver_role', 'decision_comment', 'decided_at',
                             'expires_at'] LOOP
        IF o -> c = 'null'::jsonb AND n -> c <> 'null'::jsonb AND NOT decided THEN
            RAISE EXCEPTION 'bulk_request.%: written only by the decision of a pending request '
                            '(Art. 37)', c USING ERRCODE = 'WB002';
        END IF;
    END LOOP;
    IF decided AND (NEW.approver IS NULL OR NEW.approver_role IS NULL
                    OR NEW.decided_at IS DISTINCT FROM now()) THEN
        RAISE EXCEPTION 'bulk_request.decided_at: a decision names its approver and their role, '
                        'and is dated when it is made (Art. 37)' USING ERRCODE = 'WB002';
    END IF;
    IF decided AND (NEW.state = 'approved') <> (NEW.expires_at IS NOT NULL)
       OR decided AND NEW.expires_at <= now() THEN
        RAISE EXCEPTION 'bulk_request.expires_at: an approval, and only an approval, expires, '
                        'after it is made (Art. 37)' USING ERRCODE = 'WB002';
    END IF;
    FOREACH c IN ARRAY ARRAY['run_at', 'export_id'] LOOP
        IF o -> c = 'null'::jsonb AND n -> c <> 'null'::jsonb AND NOT claimed THEN
            RAISE EXCEPTION 'bulk_request.%: written only by the run of an approved request '
                            '(Art. 37)', c USING ERRCODE = 'WB002';
        END IF;
    END LOOP;
    IF claimed AND (NEW.run_at IS DISTINCT FROM now() OR OLD.expires_at <= now()) THEN
        RAISE EXCEPTION 'bulk_request.run_at: an approval runs before it expires, dated when it '
                        'runs (Art. 37)' USING ERRCODE = 'WB002';
    END IF;
    IF claimed AND (NEW.export_id IS NULL) <> (NEW.operation = 'destroy') THEN
        RAISE EXCEPTION 'bulk_request.export_id: an export or copy runs under an export id, a '
                        'destruction under none (Art. 37)' USING ERRCODE = 'WB002';
    END IF;
    IF OLD.run_count IS NULL AND NEW.run_count IS NOT NULL
       AND NOT (OLD.state = 'executed' AND NEW.state = 'executed'
                AND NEW.operation = 'destroy') THEN
        RAISE EXCEPTION 'bulk_request.run_count: written only by an executed destruction '
                        '(Art. 37)' USING ERRCODE = 'WB002';
    END IF;
    RETURN NEW;
END
$fn$;

DROP TRIGGER IF EXISTS bulk_request_new_pending ON bulk_request;
CREATE TRIGGER bulk_request_new_pending BEFORE INSERT ON bulk_request
    FOR EACH ROW EXECUTE FUNCTION bulk_request_new_pending();

DROP TRIGGER IF EXISTS bulk_request_forward_only ON bulk_request;
CREATE TRIGGER bulk_request_forward_only BEFORE UPDATE ON bulk_request
    FOR EACH ROW EXECUTE FUNCTION bulk_request_forward_only();

DO $request_history$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    f     text;
BEGIN
    FOREACH f IN ARRAY ARRAY['bulk_request_new_pending()', 'bulk_request_forward_only()'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
        -- the triggers alone call them: no login role may
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$request_history$;
