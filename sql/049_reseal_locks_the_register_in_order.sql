-- 049_reseal_locks_the_register_in_order: a `keys migrate-suite` batch takes the
-- suspicious-customer register's rows of its phones in blind-index order, once, before its
-- records (part 12 Art. 7; Art. 26, 37).
--
-- The batch re-seals its records one UPDATE per record in one transaction; each UPDATE's
-- statement trigger (waybill_phone_owner_update, sql/013) locks the phone_owner row of that
-- record's new sender phone until the commit: record-id order. A destruction (retention_destroy,
-- bulk_destroy) runs sql/046's trigger, which locks its records' phone_owner rows in
-- blind-index order (phone_register_forget). Two phones taken in opposite orders: "deadlock
-- detected ... while locking tuple in phone_owner", and one side rolled back (review,
-- reproduced).
-- Now the CLI (gateway/store/store_reseal.c) calls phone_register_lock with every sender phone
-- blind index of its batch, old and new, before the first UPDATE: the rows are locked in
-- blind-index order, so both sides take phone_owner rows in one global order, and the batch's
-- UPDATEs then find their rows already held. A phone with no row yet has nothing to lock (its
-- row is inserted by the trigger, which no destruction touches).
-- Owner-run (SECURITY DEFINER): no login role has any privilege on phone_owner (sql/005);
-- executable by the CLI's role alone.
-- CREATE OR REPLACE: its row deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

-- Locks, until the caller's transaction ends, the phone_owner rows of the sender-phone blind
-- indexes p_phones, in blind-index order. Returns the number of rows locked.
CREATE OR REPLACE FUNCTION phone_register_lock(p_phones bytea[]) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    n bigint;
BEGIN
    PERFORM 1 FROM phone_owner o WHERE o.phone_bidx = ANY (p_phones)
     ORDER BY o.phone_bidx FOR UPDATE;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;

DO $reseal_locks$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    adm   text := current_database() || '_admin';
    f     text := 'phone_register_lock(bytea[])';
BEGIN
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                   current_schema());
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, adm);
END
$reseal_locks$;
