-- 019_suspicious_second_sender: the suspicious-customer register (part 12 Art. 7) is written when
-- a phone number meets its second sender, not for every waybill. Until now the statement trigger
-- inserted, for every accepted waybill, its (sender phone, sender ID) pair into phone_sender and
-- its phone into phone_owner: two more rows and two more index entries per waybill, a fifth of
-- PostgreSQL's work on Submit (docs/performance.md, "The suspicious-customer register"), to
-- remember the first sender of phones that almost never see a second one. The waybill table
-- already remembers them: waybill_sender_phone_bidx_idx finds every record of a phone.
--
-- Now, per statement (the group insert, or a re-seal's update under sql/013):
--  1. a transaction-level advisory lock per distinct sender phone of the statement, class 1400,
--     key the blind index's first four bytes (an HMAC output: uniform; two phones sharing a key
--     only wait for each other), taken in blind-index order. Whoever takes a phone's lock second
--     waits for the first's commit, and its next statement's snapshot sees the first's rows:
--     two transactions giving one phone two senders at once cannot both miss each other;
--  2. a phone already in the register (always a suspicious one, see below): the statement's new
--     pairs are added and the count goes up, as before;
--  3. a phone not in the register with a record of another sender ID (the index probe, which
--     sees the statement's own rows too): every distinct pair of the phone's records is
--     registered, each with the earliest record that shows it (first_seen its acceptance time),
--     and the phone is flagged with that many senders.
-- The register therefore holds exactly the phones seen with two or more senders, as
-- `waygatectl suspicious list` and the report's suspicious-list size always counted. Its rows of
-- phones with one sender, written by the old trigger, are removed here (blind indexes of
-- customers who are not suspicious, kept for nothing). A phone whose first sender's records were
-- all destroyed at the end of their retention period is no longer compared with them: what the
-- regulation has destroyed is not kept in the register either.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE OR REPLACE FUNCTION waybill_phone_owner_trg() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(pg_advisory_xact_lock(1400, (get_byte(p, 0) << 24) | (get_byte(p, 1) << 16) |
                                              (get_byte(p, 2) << 8) | get_byte(p, 3)))
       FROM (SELECT DISTINCT sender_phone_bidx AS p
               FROM new_rows
              WHERE sender_phone_bidx IS NOT NULL AND sender_id_bidx IS NOT NULL
              ORDER BY 1) AS phones;

    WITH known AS (
        SELECT n.sender_phone_bidx AS phone, n.sender_id_bidx AS sender, n.id, n.accepted_at
          FROM new_rows n
          JOIN phone_owner o ON o.phone_bidx = n.sender_phone_bidx
         WHERE n.sender_id_bidx IS NOT NULL
    ), fresh AS (
        SELECT DISTINCT n.sender_phone_bidx AS phone
          FROM new_rows n
         WHERE n.sender_phone_bidx IS NOT NULL AND n.sender_id_bidx IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM phone_owner o WHERE o.phone_bidx = n.sender_phone_bidx)
           AND EXISTS (SELECT 1 FROM waybill w
                        WHERE w.sender_phone_bidx = n.sender_phone_bidx
                          AND w.sender_id_bidx <> n.sender_id_bidx)
    ), seen AS (
        SELECT phone, sender, id, accepted_at FROM known
        UNION ALL
        SELECT w.sender_phone_bidx, w.sender_id_bidx, w.id, w.accepted_at
          FROM fresh JOIN waybill w ON w.sender_phone_bidx = fresh.phone
         WHERE w.sender_id_bidx IS NOT NULL
    ), pairs AS (
        INSERT INTO phone_sender (phone_bidx, id_bidx, first_record, first_seen)
        SELECT DISTINCT ON (phone, sender) phone, sender, id, accepted_at
          FROM seen
         ORDER BY phone, sender, accepted_at, id
        ON CONFLICT (phone_bidx, id_bidx) DO NOTHING
        RETURNING phone_bidx, id_bidx, first_record, first_seen
    )
    INSERT INTO phone_owner AS o (phone_bidx, first_id_bidx, first_record, first_seen, senders,
                                  suspicious, flagged_at)
    SELECT phone_bidx,
           (array_agg(id_bidx ORDER BY first_seen, first_record))[1],
           (array_agg(first_record ORDER BY first_seen, first_record))[1],
           min(first_seen),
           count(*),
           count(*) > 1,
           CASE WHEN count(*) > 1 THEN now() END
      FROM pairs
     GROUP BY phone_bidx
     ORDER BY phone_bidx
    ON CONFLICT (phone_bidx) DO UPDATE
        SET senders    = o.senders + EXCLUDED.senders,
            suspicious = o.senders + EXCLUDED.senders > 1,
            flagged_at = coalesce(o.flagged_at,
                                  CASE WHEN o.senders + EXCLUDED.senders > 1 THEN now() END);
    RETURN NULL;
END;
$$;

-- CREATE OR REPLACE resets what sql/005 set: the function runs as the owner (neither login role
-- has any privilege on the register) with a fixed search path.
DO $second$
BEGIN
    EXECUTE format('ALTER FUNCTION waybill_phone_owner_trg() SECURITY DEFINER '
                   'SET search_path = %I, pg_temp', current_schema());
END
$second$;
REVOKE ALL ON FUNCTION waybill_phone_owner_trg() FROM PUBLIC;

DELETE FROM phone_sender s
 WHERE NOT EXISTS (SELECT 1 FROM phone_owner o WHERE o.phone_bidx = s.phone_bidx AND o.suspicious);
DELETE FROM phone_owner WHERE NOT suspicious;

COMMENT ON TABLE phone_owner IS
    'Suspicious-customer register (part 12 Art. 7): sender phone blind indexes seen with two or '
    'more distinct sender ID blind indexes, and how many.';
COMMENT ON TABLE phone_sender IS
    'The distinct (sender phone, sender ID) blind-index pairs of the phones in phone_owner.';
