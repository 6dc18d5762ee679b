-- 051_lawful_case_names_what_existed: a lawful-access case reaches only the waybills that were
-- accepted when it was requested (Art. 16: access to the records the legal document names).
--
-- A case names its waybills by the blind index of their numbers (sql/010), and the row-level
-- security of waybill under 'lawful:<account id>' showed every row with a named blind index.
-- A number is not a record: a case named a number no waybill had yet, or one whose waybill was
-- destroyed while the case waited for its decision (the lawful hold of sql/038 begins at the
-- approval), and the waybill a sender submitted under that number later, with another person's
-- data, became readable in clear under a case its decider had approved for something else.
-- Now a row is shown under a case only when its acceptance time is not after the case's
-- request: accepted_at is the gateway's acceptance time (a whole second), stamped when sealing
-- and covered by the record's content MAC, so an edit of it in SQL is DATA_LOSS on read, never
-- a wider case; requested_at is the database's time of the request. A waybill accepted within
-- the second of the request (and the two clocks' difference) may fall on either side.
-- The gateway's grant (the case a read is recorded under, gateway/store/store_lawful.c) applies
-- the same condition, so a read is recorded under a case that covers the record.
-- The time of the request is the database's: a trigger sets requested_at to now() on INSERT,
-- whatever the inserter wrote, so that no holder of the gateway's role (which may INSERT cases)
-- registers a case dated ahead to reach waybills accepted after it (nor one that never expires
-- pending, lawful_case_decidable's WL004). One route of several: that role may still register a
-- case after the waybill, approve it through the decision columns it may update, and add items
-- to an approved case (docs/threat-model.md).
-- The lawful hold (sql/038) still holds every record whose number a case names: holding more
-- than the case covers delays a destruction, it never widens a read.
-- DROP ... IF EXISTS, CREATE OR REPLACE: this migration applies again unchanged. Applied in one
-- transaction by `waygatectl migrate` as the owner: no transaction control.

DO $lawful$
DECLARE
    gw text := current_database() || '_gateway';
    s  text := 'coalesce(current_setting(''waygate.scope'', true), '''')';
BEGIN
    DROP POLICY IF EXISTS waybill_gateway_lawful ON waybill;
    EXECUTE format('CREATE POLICY waybill_gateway_lawful ON waybill FOR SELECT TO %I USING ('
                   '%s LIKE ''lawful:%%'' AND EXISTS (SELECT 1 FROM lawful_case c '
                   'JOIN lawful_case_item i ON i.case_id = c.id '
                   'WHERE i.wb_bidx = waybill.wb_bidx AND c.state = ''approved'' '
                   'AND c.valid_until > now() AND waybill.accepted_at <= c.requested_at '
                   'AND c.requester_account::text = substr(%s, 8)))', gw, s, s);
END
$lawful$;

CREATE OR REPLACE FUNCTION lawful_case_requested_now_trg() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.requested_at := now();
    RETURN NEW;
END
$fn$;

DROP TRIGGER IF EXISTS lawful_case_requested_now ON lawful_case;
CREATE TRIGGER lawful_case_requested_now BEFORE INSERT ON lawful_case
    FOR EACH ROW EXECUTE FUNCTION lawful_case_requested_now_trg();

DO $requested$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
BEGIN
    EXECUTE format('ALTER FUNCTION lawful_case_requested_now_trg() OWNER TO %I', owner);
    EXECUTE 'REVOKE ALL ON FUNCTION lawful_case_requested_now_trg() FROM PUBLIC';
END
$requested$;
