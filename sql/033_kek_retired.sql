-- 033_kek_retired: a retired KEK version stays retired in the database too, so that no record is
-- ever stored under a KEK whose bytes `waygatectl keys retire` erased (Art. 36: nothing lost).
--
-- `keys retire` counted the records under the version and then erased its key from the key file,
-- with nothing in between: a gateway still sealing under the version (its SIGHUP failed or was
-- never sent: a failed reload keeps the running keys) stored records under it after the count,
-- and so did a transaction already in flight at the count (not visible to it); each such record
-- was unreadable once that gateway loaded the new key file. Now:
--  - kek_retire(suite, version, by), run by the CLI before it erases the key, locks waybill in
--    SHARE mode (waits for the writers in flight, holds new ones back for the moment of the
--    count; lock_timeout 5 s, so a long writer makes it fail rather than stall the gateways),
--    counts the records of that suite under that version, and only when there are none records
--    the retirement in kek_retired (idempotent). It returns the count.
--  - A statement trigger on waybill refuses any row stored or changed under a retired
--    (suite, version): SQLSTATE 55000, naming the suite and version and the remedy. The
--    gateway's Submit of such a row fails (nothing acknowledged is lost); a rewrap or
--    migrate-suite never targets a retired version.
-- A record's suite is the algorithm byte of its wrapped data key (sql/013), guarded as there for
-- a value too short to hold one.
-- IF NOT EXISTS, CREATE OR REPLACE, DROP ... IF EXISTS: its row deleted, this migration applies
-- again unchanged. Applied in one transaction by `waygatectl migrate` as the owner: no
-- transaction control.

CREATE TABLE IF NOT EXISTS kek_retired (
    suite      smallint    NOT NULL,
    version    integer     NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now(),
    retired_by text        NOT NULL,
    PRIMARY KEY (suite, version)
);

COMMENT ON TABLE kek_retired IS
    'KEK versions retired by waygatectl keys retire: no waybill may be stored under them.';

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
    -- no writer of waybill between the count and the commit of the retirement
    LOCK TABLE waybill IN SHARE MODE;
    SELECT count(*) INTO n FROM waybill
     WHERE kek_version = p_version
       AND (CASE WHEN octet_length(dek_wrapped) >= 2 THEN get_byte(dek_wrapped, 1) END) = p_suite;
    IF n = 0 THEN
        INSERT INTO kek_retired (suite, version, retired_by) VALUES (p_suite, p_version, p_by)
        ON CONFLICT (suite, version) DO NOTHING;
    END IF;
    RETURN n;
END
$fn$;

CREATE OR REPLACE FUNCTION waybill_kek_live_trg() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    bad record;
BEGIN
    SELECT r.suite, r.version INTO bad
      FROM new_rows n
      JOIN kek_retired r
        ON r.version = n.kek_version
       AND r.suite = (CASE WHEN octet_length(n.dek_wrapped) >= 2
                           THEN get_byte(n.dek_wrapped, 1) END)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'KEK version % of suite % is retired: no record may be stored under it '
                        '(reload the keyring of the gateway or tool that wrote it)',
                        bad.version, CASE bad.suite WHEN 1 THEN 'aes' ELSE 'sm' END
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NULL;
END
$fn$;

-- one trigger per event: PostgreSQL allows transition tables on single-event triggers only
DROP TRIGGER IF EXISTS waybill_kek_live_insert ON waybill;
CREATE TRIGGER waybill_kek_live_insert AFTER INSERT ON waybill
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waybill_kek_live_trg();
DROP TRIGGER IF EXISTS waybill_kek_live_update ON waybill;
CREATE TRIGGER waybill_kek_live_update AFTER UPDATE ON waybill
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION waybill_kek_live_trg();

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
    -- neither login role touches the table: the CLI records a retirement through kek_retire,
    -- the trigger reads it as the owner
    FOREACH f IN ARRAY ARRAY['kek_retire(integer, integer, text)', 'waybill_kek_live_trg()'] LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                       current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    EXECUTE 'ALTER FUNCTION kek_retire(integer, integer, text) SET lock_timeout = ''5s''';
    EXECUTE format('GRANT EXECUTE ON FUNCTION kek_retire(integer, integer, text) TO %I', adm);
END
$kek_retired$;
