-- 044_outbox_parked_behind: a delivery that waits behind a parked delivery of its waybill is
-- parked too, naming the one it waits behind (review of issue 9). A waybill's later row is
-- claimable only when no earlier row of it is left (sql/012), so the scans recorded after the
-- backend refused a waybill's acceptance for good stayed in the outbox unparked: in the partial
-- index of what may be claimed (outbox_ready_idx), among the oldest ids, every claim walked and
-- probed each of them first (one refused acceptance and a courier's many scans slowed forwarding
-- for everyone); `waygatectl outbox list-parked` did not show them, `status` counted them ready,
-- and `retry ID` unparked the head alone. Now (parked_behind = the outbox id of the parked row it
-- waits behind, park_reason 'behind parked delivery <id>'):
--  - a row parked on its own (the backend refused it) parks its waybill's later rows in the same
--    transaction (outbox_park_behind, after the update);
--  - a scan's row inserted while its waybill's first row left in the outbox is parked is parked
--    on insert behind that row's head (outbox_insert_behind, before the insert; its WHEN excludes
--    kind 1, a waybill's own delivery, always its first row: Submit's insert pays nothing);
--  - a parked row unparked (`waygatectl outbox retry` of the head) unparks the rows parked behind
--    it, and only those (outbox_unpark_behind); they keep their ids, hence their order, and go
--    out after the head as before. `retry` of a row parked behind another is refused by the CLI.
-- A park and an unpark take the waybill's scan lock (pg_advisory_xact_lock(1398, hashtext(its
-- id)), which a scan group takes before its insert: gateway/store/store_scan.c) before they look
-- for the rows behind, and the insert's trigger takes it too (held already by a scan group: no
-- wait). So a scan inserted while its waybill's head is being parked or unparked is either seen
-- by that park's or unpark's update (the insert committed first) or sees its outcome (the lock
-- is granted once the park or unpark committed; each statement of the functions takes a new
-- snapshot). No cycle: the insert locks no outbox row, the park and unpark one waybill's lock.
-- The functions are SECURITY DEFINER (the owner's, search_path pinned): neither login role is
-- granted parked_behind; they read it (their SELECT on outbox covers it). The gateway's park and
-- the CLI's retry statements are unchanged.
-- ADD COLUMN IF NOT EXISTS, CREATE OR REPLACE: its row deleted, this migration applies again.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

ALTER TABLE outbox ADD COLUMN IF NOT EXISTS parked_behind bigint;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_behind_parked;
ALTER TABLE outbox ADD CONSTRAINT outbox_behind_parked
    CHECK (parked_behind IS NULL OR (parked_at IS NOT NULL AND parked_behind < id));
COMMENT ON COLUMN outbox.parked_behind IS
    'Parked because the earlier parked delivery of its waybill with this outbox id waits.';

-- The rows already waiting behind a parked row (parked on its own) when this applies.
UPDATE outbox o SET parked_at = h.parked_at, park_reason = 'behind parked delivery ' || h.id,
                    parked_behind = h.id
  FROM (SELECT DISTINCT ON (waybill_id) id, waybill_id, parked_at FROM outbox
         WHERE parked_at IS NOT NULL AND parked_behind IS NULL ORDER BY waybill_id, id) h
 WHERE o.waybill_id = h.waybill_id AND o.id > h.id AND o.parked_at IS NULL;

CREATE OR REPLACE FUNCTION outbox_park_behind_trg() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1398, hashtext(NEW.waybill_id::text));
    UPDATE outbox SET parked_at = NEW.parked_at,
                      park_reason = 'behind parked delivery ' || NEW.id,
                      parked_behind = NEW.id
     WHERE waybill_id = NEW.waybill_id AND id > NEW.id AND parked_at IS NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION outbox_unpark_behind_trg() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1398, hashtext(NEW.waybill_id::text));
    UPDATE outbox SET parked_at = NULL, park_reason = NULL, parked_behind = NULL,
                      next_at = '-infinity', lease_owner = NULL, lease_until = NULL
     WHERE parked_behind = NEW.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION outbox_insert_behind_trg() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    head outbox%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(1398, hashtext(NEW.waybill_id::text));
    SELECT * INTO head FROM outbox
     WHERE waybill_id = NEW.waybill_id AND id < NEW.id
     ORDER BY id LIMIT 1;
    IF FOUND AND head.parked_at IS NOT NULL THEN
        NEW.parked_behind := coalesce(head.parked_behind, head.id);
        NEW.parked_at := clock_timestamp();
        NEW.park_reason := 'behind parked delivery ' || NEW.parked_behind;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER outbox_park_behind AFTER UPDATE OF parked_at ON outbox
    FOR EACH ROW
    WHEN (OLD.parked_at IS NULL AND NEW.parked_at IS NOT NULL AND NEW.parked_behind IS NULL)
    EXECUTE FUNCTION outbox_park_behind_trg();
CREATE OR REPLACE TRIGGER outbox_unpark_behind AFTER UPDATE OF parked_at ON outbox
    FOR EACH ROW
    WHEN (OLD.parked_at IS NOT NULL AND NEW.parked_at IS NULL AND OLD.parked_behind IS NULL)
    EXECUTE FUNCTION outbox_unpark_behind_trg();
CREATE OR REPLACE TRIGGER outbox_insert_behind BEFORE INSERT ON outbox
    FOR EACH ROW WHEN (NEW.kind = 2)
    EXECUTE FUNCTION outbox_insert_behind_trg();

DO $behind$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    f     text;
BEGIN
    FOREACH f IN ARRAY ARRAY['outbox_park_behind_trg()', 'outbox_unpark_behind_trg()',
                             'outbox_insert_behind_trg()'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$behind$;
