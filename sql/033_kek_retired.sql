-- 033_kek_retired: a retired KEK version stays retired in the database too, so that no record is
-- ever stored under a KEK whose bytes `waygatectl keys retire` erased (Art. 36: nothing lost).
--
-- `keys retire` counted the records under the version and then erased its key from the key file,
-- with nothing in between: a gateway still sealing under the version (its SIGHUP failed or was
-- never sent: a failed reload keeps the running keys) stored records under it after the count,
-- and so did a transaction already in flight at the count (not visible to it); each such record
-- was unreadable once that gateway loaded the new key file. Now:
--  - kek_retire(suite, version, by), run by the CLI before it erases the key, counts the
--    records of that suite under that version; when it sees none, it locks waybill in ACCESS
--    EXCLUSIVE mode (waits for the writers and readers in flight, holds new ones back until it
--    commits; lock_timeout 5 s, so a long writer makes it fail rather than stall the gateways),
--    counts again (an index scan of waybill_kek_version_idx finding next to nothing: the lock
--    is held for milliseconds), and only when there are still none records the retirement in
--    kek_retired (idempotent). It returns the count.
--  - Every change of kek_retired rebuilds, in its own transaction, the CHECK constraint
--    waybill_kek_retired that lists each retired (suite, version) pair: a row stored or
--    changed under one is refused by kek_retired_refuse, SQLSTATE 55000, naming the suite and
--    version and the remedy. The gateway's Submit of such a row fails (nothing acknowledged is
--    lost); a rewrap or migrate-suite never targets a retired version. The constraint is NOT
--    VALID: added under the lock right after a count of zero, so there is nothing to scan.
-- A per-row CHECK replaced statement triggers with a transition table (an earlier draft of this
-- migration), which copied every inserted row, ciphertexts included, into a tuplestore and ran
-- a join per statement, on waybill's hottest statement, to guard an event of a few times in a
-- deployment's life. The constraint compares kek_version with constants first, so a row under a
-- live version costs one or two integer comparisons per retired pair, and the refusing
-- function is only called for a row it refuses; being in the catalog, it also binds a
-- transaction whose snapshot predates the retirement.
-- A record's suite is the algorithm byte of its wrapped data key (sql/013), guarded as there for
-- a value too short to hold one: such a row has no suite, so it is under no retired pair (and
-- kek_retire never counts it); its kek_version never makes the comparison NULL (NOT NULL).
-- IF NOT EXISTS, CREATE OR REPLACE, DROP ... IF EXISTS: its row deleted, this migration applies
-- again unchanged (and rebuilds the constraint from kek_retired). Applied in one transaction by
-- `waygatectl migrate` as the owner: no transaction control.

CREATE TABLE IF NOT EXISTS kek_retired (
    suite      smallint    NOT NULL,
    version    integer     NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now(),
    retired_by text        NOT NULL,
    PRIMARY KEY (suite, version)
);

COMMENT ON TABLE kek_retired IS
    'KEK versions retired by waygatectl keys retire: no waybill may be stored under them '
    '(constraint waybill_kek_retired, rebuilt on every change of this table).';

-- the statement triggers of an earlier draft of this migration
DROP TRIGGER IF EXISTS waybill_kek_live_insert ON waybill;
DROP TRIGGER IF EXISTS waybill_kek_live_update ON waybill;
DROP FUNCTION IF EXISTS waybill_kek_live_trg();

-- The refusal of a row under a retired (suite, version), called by waybill_kek_retired for that
-- row only. It never returns.
CREATE OR REPLACE FUNCTION kek_retired_refuse(p_version integer, p_dek_wrapped bytea)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    suite integer := CASE WHEN octet_length(p_dek_wrapped) >= 2
                          THEN get_byte(p_dek_wrapped, 1) END;
BEGIN
    RAISE EXCEPTION 'KEK version % of suite % is retired: no record may be stored under it '
                    '(reload the keyring of the gateway or tool that wrote it)',
                    p_version, CASE suite WHEN 1 THEN 'aes' WHEN 2 THEN 'sm' ELSE '?' END
        USING ERRCODE = 'object_not_in_prerequisite_state', TABLE = 'waybill',
              CONSTRAINT = 'waybill_kek_retired';
END
$fn$;

-- Makes waybill_kek_retired list exactly the pairs of kek_retired (none: no constraint).
CREATE OR REPLACE FUNCTION kek_retired_enforce() RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    pairs text;
BEGIN
    SELECT string_agg(format('(%s, %s)', version, suite), ', ' ORDER BY suite, version)
      INTO pairs FROM kek_retired;
    -- neither there nor wanted: nothing done, no lock taken
    IF EXISTS (SELECT 1 FROM pg_constraint
                WHERE conrelid = 'waybill'::regclass AND conname = 'waybill_kek_retired') THEN
        ALTER TABLE waybill DROP CONSTRAINT waybill_kek_retired;
    END IF;
    IF pairs IS NOT NULL THEN
        -- (version, suite): a live version fails the first comparison of each pair
        EXECUTE format('ALTER TABLE waybill ADD CONSTRAINT waybill_kek_retired CHECK ('
                       'CASE WHEN (kek_version, CASE WHEN octet_length(dek_wrapped) >= 2 '
                       'THEN get_byte(dek_wrapped, 1) END) IN (%s) '
                       'THEN kek_retired_refuse(kek_version, dek_wrapped) ELSE true END) '
                       'NOT VALID', pairs);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION kek_retired_changed_trg() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM kek_retired_enforce();
    RETURN NULL;
END
$fn$;

DROP TRIGGER IF EXISTS kek_retired_changed ON kek_retired;
CREATE TRIGGER kek_retired_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON kek_retired
    FOR EACH STATEMENT EXECUTE FUNCTION kek_retired_changed_trg();

CREATE OR REPLACE FUNCTION kek_retire(p_suite integer, p_version integer, p_by text)
RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    n bigint;
BEGIN
    IF p_suite IS NULL OR p_suite NOT IN (1, 2) OR p_version IS NULL OR p_version < 1
       OR p_by IS NULL OR p_by = '' THEN
        RAISE EXCEPTION 'kek_retire: a suite (1 or 2), a version and who retires it are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- records already visible: refused at once, with no lock that would hold the gateways back
    -- for a long count (a refusal is always safe)
    SELECT count(*) INTO n FROM waybill
     WHERE kek_version = p_version
       AND (CASE WHEN octet_length(dek_wrapped) >= 2 THEN get_byte(dek_wrapped, 1) END) = p_suite;
    IF n > 0 THEN
        RETURN n;
    END IF;
    -- no writer of waybill between the count and the commit of the retirement: the lock the
    -- constraint's ALTER TABLE takes anyway, taken before the count
    LOCK TABLE waybill IN ACCESS EXCLUSIVE MODE;
    SELECT count(*) INTO n FROM waybill
     WHERE kek_version = p_version
       AND (CASE WHEN octet_length(dek_wrapped) >= 2 THEN get_byte(dek_wrapped, 1) END) = p_suite;
    IF n = 0 THEN
        -- kek_retired_changed rebuilds waybill_kek_retired, even when the pair was there
        INSERT INTO kek_retired (suite, version, retired_by) VALUES (p_suite, p_version, p_by)
        ON CONFLICT (suite, version) DO NOTHING;
    END IF;
    RETURN n;
END
$fn$;

DO $kek_retired$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    f     text;
BEGIN
    EXECUTE format('ALTER TABLE kek_retired OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON TABLE kek_retired FROM PUBLIC, %I, %I', gw, adm);
    -- neither login role touches the table or the constraint (ALTER TABLE is the owner's): the
    -- CLI records a retirement through kek_retire, whose trigger rebuilds the constraint as the
    -- owner
    FOREACH f IN ARRAY ARRAY['kek_retire(integer, integer, text)', 'kek_retired_enforce()',
                             'kek_retired_changed_trg()'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    EXECUTE 'ALTER FUNCTION kek_retire(integer, integer, text) SET lock_timeout = ''5s''';
    EXECUTE format('GRANT EXECUTE ON FUNCTION kek_retire(integer, integer, text) TO %I', adm);
    -- PostgreSQL checks EXECUTE on a function of a CHECK for the role writing the row, on
    -- every statement: both roles that write waybill (Submit; rewrap) need it. It reads nothing
    -- and only ever raises.
    EXECUTE format('ALTER FUNCTION kek_retired_refuse(integer, bytea) OWNER TO %I', owner);
    EXECUTE 'REVOKE ALL ON FUNCTION kek_retired_refuse(integer, bytea) FROM PUBLIC';
    EXECUTE format('GRANT EXECUTE ON FUNCTION kek_retired_refuse(integer, bytea) TO %I, %I',
                   gw, adm);
    -- applied again: the constraint as kek_retired says
    PERFORM kek_retired_enforce();
END
$kek_retired$;
