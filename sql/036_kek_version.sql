-- 036_kek_version: the database knows which key each KEK version is, so that a key file is never
-- used against a database whose records another key file sealed (Art. 36: nothing lost).
--
-- A KEK version was only a number: `waygatectl keys retire` pointed at the wrong database counted
-- no record under the version there and erased its key from the key file, although the database
-- that holds those records still needed it; two copies of one key file rotated separately each
-- made a version N+1 of their own, and records sealed under one copy's were unreadable with the
-- other's. Now kek_version holds, for each (suite, version) a keyring brought to this database,
-- a check value that identifies the key without revealing it: HMAC(KEK, "waygate-kek-check-v1")
-- (HMAC-SHA256 under aes, HMAC-SM3 under sm; gw_keyring_kek_check), the first one seen kept.
-- Wherever a keyring meets the database (the gateway at start and at each keyring reload; every
-- `waygatectl keys` command given a database) each active KEK of the keyring goes through
-- kek_version_meet: a version the table lacks is registered (first writer wins: INSERT ... ON
-- CONFLICT DO NOTHING, then the comparison, so two writers at once agree on one row), and a
-- version whose stored value differs is reported, which refuses the start, the reload or the
-- command. `keys retire` also refuses a version the table lacks: the database never saw that
-- key, so it cannot vouch that nothing is sealed under it. A database migrated from before
-- registers the versions in use on their first contact (the gateway's start or reload, a keys
-- command).
-- Both login roles may register a version (INSERT of the columns below; first_seen is the
-- database's own time) and read the table; neither may change or remove a row (no UPDATE,
-- DELETE or TRUNCATE): a stored check value is only ever compared with. kek_version_meet runs
-- with the caller's privileges (not SECURITY DEFINER).
-- CREATE ... IF NOT EXISTS, CREATE OR REPLACE: its row deleted, this migration applies again
-- unchanged. Applied in one transaction by `waygatectl migrate` as the owner: no transaction
-- control.

CREATE TABLE IF NOT EXISTS kek_version (
    suite         smallint    NOT NULL CHECK (suite IN (1, 2)),
    version       integer     NOT NULL CHECK (version >= 1),
    check_value   bytea       NOT NULL CHECK (octet_length(check_value) = 32),
    first_seen    timestamptz NOT NULL DEFAULT now(),
    first_seen_by text        NOT NULL CHECK (first_seen_by <> ''),
    PRIMARY KEY (suite, version)
);

COMMENT ON TABLE kek_version IS
    'The check value (HMAC of "waygate-kek-check-v1" under the KEK) of each KEK version a '
    'keyring brought to this database, the first one seen: a keyring whose KEK of that version '
    'gives another value is refused (kek_version_meet).';

-- Registers each (p_suites[i], p_versions[i]) absent, with the check value p_checks[i] (64 hex
-- digits) and p_by, and answers for each one whether it was registered now ('new'), was known
-- with that value ('same') or with another ('other').
CREATE OR REPLACE FUNCTION kek_version_meet(p_suites integer[], p_versions integer[],
                                            p_checks text[], p_by text)
RETURNS TABLE (m_suite integer, m_version integer, m_outcome text)
LANGUAGE plpgsql AS $fn$
DECLARE
    want bytea;
    have bytea;
    n    integer;
BEGIN
    IF p_by IS NULL OR p_by = '' OR p_suites IS NULL OR p_versions IS NULL OR p_checks IS NULL
       OR cardinality(p_suites) <> cardinality(p_versions)
       OR cardinality(p_suites) <> cardinality(p_checks) THEN
        RAISE EXCEPTION 'kek_version_meet: as many suites, versions and check values, and who '
                        'brings them, are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. cardinality(p_suites) LOOP
        want := decode(p_checks[i], 'hex');
        INSERT INTO kek_version (suite, version, check_value, first_seen_by)
        VALUES (p_suites[i], p_versions[i], want, p_by)
        ON CONFLICT (suite, version) DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        m_suite := p_suites[i];
        m_version := p_versions[i];
        IF n = 1 THEN
            m_outcome := 'new';
        ELSE
            -- a new statement: sees the row of a writer that won the race and committed
            SELECT k.check_value INTO have FROM kek_version k
             WHERE k.suite = p_suites[i] AND k.version = p_versions[i];
            m_outcome := CASE WHEN have = want THEN 'same' ELSE 'other' END;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;

DO $kek_version$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    f     text := 'kek_version_meet(integer[], integer[], text[], text)';
BEGIN
    EXECUTE format('ALTER TABLE kek_version OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON TABLE kek_version FROM PUBLIC, %I, %I', gw, adm);
    EXECUTE format('GRANT SELECT, INSERT (suite, version, check_value, first_seen_by) '
                   'ON TABLE kek_version TO %I, %I', gw, adm);
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I, %I', f, gw, adm);
END
$kek_version$;
