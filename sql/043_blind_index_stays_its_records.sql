-- 043_blind_index_stays_its_records: a waybill number's blind index a record gave up in a suite
-- migration stays that record's, and a re-seal brings no record under a lawful-access case that
-- did not already name it (Art. 16, 36; issue 11). Also pins waybill_custodian's search_path again.
--
-- The CLI's role, without the keyring, could add any waybill X to an approved lawful-access case
-- through waybill_reseal (sql/013), which takes any 16 bytes as the new wb_bidx, and the trigger
-- that copies every case item naming a record's old wb_bidx onto its new one: X moved to made-up
-- bytes under the other suite's algorithm byte, a record A the case names took X's old blind
-- index (the trigger copied A's item onto it), A and then X were put back. Every row ended as it
-- was, the case named X too, and its officer read X in clear; nothing reached the trail. Now, on
-- every change of a wb_bidx, whatever makes it (the trigger runs as the owner):
--  - the blind index given up is the record's for good (waybill_bidx_retired); another record
--    taking one is refused, 23505 as the unique index refuses one another record holds (a
--    migration names such a record and goes on: the same number stored twice). A record going
--    back to one it held (aes -> sm -> aes) is its own;
--  - a lawful-access case that names the new blind index must already name one the record holds
--    or held, else WS002: a blind index no record holds (another suite's of a case's number, a
--    destroyed record's) cannot be taken to join its cases. A migration meets this only for a
--    case registered under a keyring that lacked the record's suite (its officer could not read
--    the record either): the run stops there, naming the record, and the case stays as it was.
-- A legitimate migration gives each record the blind index of its own number under the target
-- suite: held by no other record (the unique index already required that), named only by cases
-- that name the number under both suites.
--
-- waybill_custodian (sql/042, CREATE OR REPLACE) is SECURITY DEFINER with no search_path since:
-- CREATE OR REPLACE resets the attributes it does not name (042's comment says otherwise; an
-- applied migration is checksummed by `waygatectl migrate`, so 042 stays as it is).
-- CREATE ... IF NOT EXISTS, CREATE OR REPLACE: its row deleted, this migration applies again.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE TABLE IF NOT EXISTS waybill_bidx_retired (
    wb_bidx    bytea       PRIMARY KEY CHECK (octet_length(wb_bidx) = 16),
    waybill_id uuid        NOT NULL REFERENCES waybill (id) ON DELETE CASCADE,
    retired_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS waybill_bidx_retired_record_idx ON waybill_bidx_retired (waybill_id);
COMMENT ON TABLE waybill_bidx_retired IS
    'Blind indexes of waybill numbers a record gave up (suite migration): that record''s for good.';

CREATE OR REPLACE FUNCTION waybill_reseal_lawful_trg() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    holder uuid;
BEGIN
    SELECT r.waybill_id INTO holder FROM waybill_bidx_retired r
     WHERE r.wb_bidx = NEW.wb_bidx AND r.waybill_id <> NEW.id;
    IF FOUND THEN
        RAISE EXCEPTION 'p_wb_bidx: record % gave up this blind index; it stays that record''s',
                        holder
            USING ERRCODE = 'unique_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM lawful_case_item i
                WHERE i.wb_bidx = NEW.wb_bidx
                  AND NOT EXISTS (SELECT 1 FROM lawful_case_item j
                                   WHERE j.case_id = i.case_id
                                     AND (j.wb_bidx = OLD.wb_bidx
                                          OR j.wb_bidx IN (SELECT r.wb_bidx
                                                             FROM waybill_bidx_retired r
                                                            WHERE r.waybill_id = NEW.id)))) THEN
        RAISE EXCEPTION 'p_wb_bidx: record % would join a lawful-access case that names none of '
                        'its blind indexes', NEW.id
            USING ERRCODE = 'WS002';
    END IF;
    INSERT INTO waybill_bidx_retired (wb_bidx, waybill_id) VALUES (OLD.wb_bidx, OLD.id)
    ON CONFLICT (wb_bidx) DO NOTHING;
    INSERT INTO lawful_case_item (case_id, wb_bidx)
    SELECT i.case_id, NEW.wb_bidx FROM lawful_case_item i WHERE i.wb_bidx = OLD.wb_bidx
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

DO $bidx_retired$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    f     text;
BEGIN
    -- written by the trigger alone (as the owner); neither login role reads or writes it
    EXECUTE format('ALTER TABLE waybill_bidx_retired OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON TABLE waybill_bidx_retired FROM PUBLIC, %I, %I', gw, adm);
    -- CREATE OR REPLACE keeps the owner and the grants but not search_path
    FOREACH f IN ARRAY ARRAY['waybill_reseal_lawful_trg()', 'waybill_custodian(uuid)'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
    END LOOP;
    EXECUTE 'REVOKE ALL ON FUNCTION waybill_reseal_lawful_trg() FROM PUBLIC';
END
$bidx_retired$;
