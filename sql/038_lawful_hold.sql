-- 038_lawful_hold: a waybill named by an approved, unexpired lawful-access case is not destroyed
-- while the case holds (Art. 16, 26, 37).
--
-- The retention sweep (retention_destroy, sql/020) and a bulk destroy (bulk_destroy, sql/031)
-- deleted whatever was past its period or selected, whether or not a lawful-access case an
-- independent security admin approved named it: a record an agency was granted for its case was
-- destroyed under it (by the next sweep once its pickup day was past the period, or by a bulk
-- destroy approved by two compliance people), and the officer's read found nothing. Now every
-- deletion of such a waybill is refused by a row trigger (WR002): whatever deletes it, through
-- either function or any other way the gateway's role may later be given. The sweep leaves the
-- held records out of its batches (waybill_lawful_hold in its selection, store_bulk.c) and
-- destroys them at a sweep after the case's valid_until; a bulk destroy that selects one is
-- refused whole (FAILED_PRECONDITION), nothing destroyed. A pending case holds nothing: the hold
-- is what an independent person approved, for as long as they approved it (at most
-- [compliance] lawful_max_s), so a lawful_access account alone cannot keep records past their
-- period by filing cases.
-- CREATE OR REPLACE, DROP TRIGGER IF EXISTS: its row deleted, this migration applies again.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

-- Whether an approved, unexpired lawful-access case names the waybill of blind index p_wb_bidx.
-- Runs as the owner: the gateway's role sees lawful_case only without a scope or under its
-- 'lawful:' scope (sql/010), and the sweep reads under '*'.
CREATE OR REPLACE FUNCTION waybill_lawful_hold(p_wb_bidx bytea) RETURNS boolean
LANGUAGE sql STABLE AS $fn$
    SELECT EXISTS (SELECT 1 FROM lawful_case_item i JOIN lawful_case c ON c.id = i.case_id
                    WHERE i.wb_bidx = p_wb_bidx AND c.state = 'approved'
                      AND c.valid_until > now())
$fn$;

-- The cases naming the waybill are locked FOR SHARE first: a decision approving one of them, not
-- yet committed, holds its row, so the deletion waits for it and then (READ COMMITTED: each
-- statement of the function takes a new snapshot) sees the approval; a decision that comes after
-- waits for the deletion's transaction instead. Without the lock a deletion beside an approval in
-- flight saw the case pending, and both committed: a case approved for a destroyed record.
CREATE OR REPLACE FUNCTION waybill_held_not_deleted() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM lawful_case_item i JOIN lawful_case c ON c.id = i.case_id
     WHERE i.wb_bidx = OLD.wb_bidx FOR SHARE OF c;
    IF waybill_lawful_hold(OLD.wb_bidx) THEN
        RAISE EXCEPTION 'a waybill named by an approved, unexpired lawful-access case is held: '
                        'not destroyed' USING ERRCODE = 'WR002'; -- api_bulk_run.c names it
    END IF;
    RETURN OLD;
END
$fn$;

DROP TRIGGER IF EXISTS waybill_lawful_hold ON waybill;
CREATE TRIGGER waybill_lawful_hold BEFORE DELETE ON waybill
    FOR EACH ROW EXECUTE FUNCTION waybill_held_not_deleted();

DO $lawful_hold$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    f     text;
BEGIN
    FOREACH f IN ARRAY ARRAY['waybill_lawful_hold(bytea)', 'waybill_held_not_deleted()'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    -- the sweep's selection leaves the held records out (store_bulk.c)
    EXECUTE format('GRANT EXECUTE ON FUNCTION waybill_lawful_hold(bytea) TO %I', gw);
END
$lawful_hold$;
