-- 046_register_forgets_destroyed_records: a destruction takes out of the suspicious-customer
-- register what only the destroyed waybills put in it (part 12 Art. 7; Art. 26, 37).
--
-- The register (phone_owner, phone_sender, sql/002) names a waybill only by a plain uuid
-- (first_record), and nothing removed a row when its waybill was destroyed (retention_destroy,
-- sql/039; bulk_destroy, sql/031): the destroyed customer's phone <-> ID number link (blind
-- indexes of small value spaces, which whoever holds the index key recovers by enumeration)
-- outlived the destruction for good, and the destroyed record still counted: a new waybill with
-- its phone and another ID number was flagged suspicious (senders = 2) against it, and the
-- monthly report's suspicious count included it (review, reproduced).
-- Now a statement-level AFTER DELETE trigger on waybill (whatever deletes, both functions and any
-- way a role may later be given), over the statement's transition table, in its transaction,
-- recomputes the register's rows of the destroyed records' sender phones from the waybills that
-- remain (phone_register_forget):
--  - a (phone, sender ID) pair that no remaining waybill holds and whose first record is gone is
--    deleted; one a remaining waybill holds, first shown by a destroyed one, is named by the
--    remaining holder accepted first (first_record, first_seen = its accepted_at);
--  - a phone with no pair left is deleted; the others' senders, suspicious and first sender are
--    recounted from their pairs; flagged_at is when the second remaining sender was first seen
--    (never earlier than it was).
-- One recount per DELETE statement over the distinct phones it took (a retention batch is one
-- statement), by the primary keys and waybill's sender-phone index: Submit's path (the insert
-- trigger) is unchanged. The phones' phone_owner rows are locked first, in blind-index order as
-- the insert trigger takes them, so a Submit adding a sender to one waits for the recount, or
-- the recount (a statement after the lock, with a new snapshot) counts that sender.
-- A pair kept as history of a record that moved to another suite (sql/013) stays while that
-- record does; the pairs a record left under another suite before it was destroyed are not found
-- by its destruction (its old blind indexes are not kept; finding them would need an index on
-- first_record, paid on Submit's path): they are deleted here, once, with the rows earlier
-- destructions left, and by nothing after (docs/threat-model.md).
-- CREATE OR REPLACE, DROP TRIGGER IF EXISTS; the clean-up finds nothing a second time: its row
-- deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

-- Recomputes the register's rows of the phones p_phones (sender-phone blind indexes) from the
-- waybills that remain. Returns the number of pairs deleted.
CREATE OR REPLACE FUNCTION phone_register_forget(p_phones bytea[]) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    n bigint;
BEGIN
    PERFORM 1 FROM phone_owner o WHERE o.phone_bidx = ANY (p_phones)
     ORDER BY o.phone_bidx FOR UPDATE;

    DELETE FROM phone_sender s
     WHERE s.phone_bidx = ANY (p_phones)
       AND NOT EXISTS (SELECT 1 FROM waybill w
                        WHERE w.sender_phone_bidx = s.phone_bidx
                          AND w.sender_id_bidx = s.id_bidx)
       AND NOT EXISTS (SELECT 1 FROM waybill w WHERE w.id = s.first_record);
    GET DIAGNOSTICS n = ROW_COUNT;

    UPDATE phone_sender s
       SET (first_record, first_seen) =
           (SELECT w.id, w.accepted_at FROM waybill w
             WHERE w.sender_phone_bidx = s.phone_bidx AND w.sender_id_bidx = s.id_bidx
             ORDER BY w.accepted_at, w.id LIMIT 1)
     WHERE s.phone_bidx = ANY (p_phones)
       AND NOT EXISTS (SELECT 1 FROM waybill w WHERE w.id = s.first_record)
       AND EXISTS (SELECT 1 FROM waybill w
                    WHERE w.sender_phone_bidx = s.phone_bidx AND w.sender_id_bidx = s.id_bidx);

    DELETE FROM phone_owner o
     WHERE o.phone_bidx = ANY (p_phones)
       AND NOT EXISTS (SELECT 1 FROM phone_sender s WHERE s.phone_bidx = o.phone_bidx);

    -- the first sender stays unless its pair went or was named anew
    UPDATE phone_owner o
       SET senders = c.senders, suspicious = c.suspicious, flagged_at = c.flagged_at,
           first_id_bidx = c.first_id_bidx, first_record = c.first_record,
           first_seen = c.first_seen
      FROM (SELECT p.phone_bidx, a.n::integer AS senders, a.n > 1 AS suspicious,
                   CASE WHEN a.n > 1 THEN greatest(p.flagged_at, a.second_seen) END AS flagged_at,
                   CASE WHEN a.kept THEN p.first_id_bidx ELSE a.first_id_bidx END AS first_id_bidx,
                   CASE WHEN a.kept THEN p.first_record ELSE a.first_record END AS first_record,
                   CASE WHEN a.kept THEN p.first_seen ELSE a.first_seen END AS first_seen
              FROM (SELECT s.phone_bidx, count(*) AS n,
                           bool_or(s.id_bidx = q.first_id_bidx
                                   AND s.first_record = q.first_record) AS kept,
                           (array_agg(s.id_bidx ORDER BY s.first_seen, s.first_record))[1]
                               AS first_id_bidx,
                           (array_agg(s.first_record ORDER BY s.first_seen, s.first_record))[1]
                               AS first_record,
                           min(s.first_seen) AS first_seen,
                           (array_agg(s.first_seen ORDER BY s.first_seen))[2] AS second_seen
                      FROM phone_sender s JOIN phone_owner q ON q.phone_bidx = s.phone_bidx
                     WHERE s.phone_bidx = ANY (p_phones)
                     GROUP BY s.phone_bidx) a
              JOIN phone_owner p ON p.phone_bidx = a.phone_bidx) c
     WHERE o.phone_bidx = c.phone_bidx
       AND (o.senders, o.suspicious, o.flagged_at, o.first_id_bidx, o.first_record, o.first_seen)
           IS DISTINCT FROM (c.senders, c.suspicious, c.flagged_at, c.first_id_bidx,
                             c.first_record, c.first_seen);
    RETURN n;
END
$fn$;

CREATE OR REPLACE FUNCTION waybill_phone_register_forget_trg() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    phones bytea[];
BEGIN
    SELECT array_agg(DISTINCT d.sender_phone_bidx) INTO phones
      FROM old_rows d WHERE d.sender_phone_bidx IS NOT NULL;
    IF phones IS NOT NULL THEN
        PERFORM phone_register_forget(phones);
    END IF;
    RETURN NULL;
END
$fn$;

DROP TRIGGER IF EXISTS waybill_phone_register_forget ON waybill;
CREATE TRIGGER waybill_phone_register_forget AFTER DELETE ON waybill
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waybill_phone_register_forget_trg();

DO $register_forgets$
DECLARE
    owner  name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                     WHERE datname = current_database());
    f      text;
    phones bytea[];
    n      bigint;
BEGIN
    FOREACH f IN ARRAY ARRAY['phone_register_forget(bytea[])',
                             'waybill_phone_register_forget_trg()'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
        -- the trigger alone calls them: no login role may
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;

    -- what the destructions before this migration left
    SELECT array_agg(DISTINCT x.phone_bidx) INTO phones
      FROM (SELECT s.phone_bidx FROM phone_sender s
             WHERE NOT EXISTS (SELECT 1 FROM waybill w WHERE w.id = s.first_record)
            UNION ALL
            SELECT o.phone_bidx FROM phone_owner o
             WHERE NOT EXISTS (SELECT 1 FROM waybill w WHERE w.id = o.first_record)) x;
    IF phones IS NOT NULL THEN
        n := phone_register_forget(phones);
        RAISE WARNING 'the suspicious-customer register: % phones recounted without the '
                      'destroyed waybills, % (phone, sender ID) pairs forgotten',
                      cardinality(phones), n;
    END IF;
END
$register_forgets$;
