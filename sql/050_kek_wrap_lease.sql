-- 050_kek_wrap_lease: the data-key wraps made under each KEK version are counted, and the
-- wrapping stops before the random-nonce bound of the KEK (Art. 36: keys used within their
-- bounds; NIST SP 800-38D 8.3: at most 2^32 invocations of one key with random 96-bit IVs).
--
-- Each record's data key is wrapped under the current KEK with a random 96-bit nonce
-- (AES-256-GCM; under sm, SM4-CTR + HMAC-SM3 with a random nonce of the same length): by the
-- gateway on Submit and SubmitBatch, and again by `waygatectl keys rewrap` and `keys
-- migrate-suite`. Nothing counted those wraps: the operator was to rotate in time. Now every
-- wrapper leases its wraps here before it makes them: kek_wrap_lease(suite, version, n, limit)
-- adds up to n to the version's count and answers how many it granted; a version whose count
-- has reached its limit grants nothing and refuses (SQLSTATE WK001, "rotate the KEK"). The
-- gateway leases blocks ahead and seals a record only against a wrap it holds; the CLI leases
-- per batch. A lease is counted whether or not its wraps are made: a crash or a restart wastes
-- the unused part of a lease (over-counting, the safe direction).
-- The limit: the row's (2^31 unless the owner lowered it: it only falls), and for one call the
-- lower of it and the caller's own (the gateway its [keys] kek_wrap_limit; the CLI 2^31), never
-- above 2^32 (refused). A caller's limit binds that call only and is never stored: whoever holds
-- a login role could otherwise set any version's limit to 1, a future version's too, and stop
-- intake across rotations (review). One lease is at most 2^20 wraps.
-- Seeded from the records that exist: count of waybill rows per suite (the algorithm byte of
-- dek_wrapped) and KEK version. A lower bound: records since destroyed, wraps a rewrap or a
-- migration replaced, and wraps of Submits the database refused are not in it.
-- The count never goes down, for any role, the owner included: a trigger refuses an UPDATE that
-- lowers count or raises wrap_limit, and any DELETE or TRUNCATE. The gateway's and the CLI's
-- roles may only read the table and call the function (SECURITY DEFINER): no INSERT, UPDATE or
-- DELETE of their own.
-- CREATE ... IF NOT EXISTS, CREATE OR REPLACE, DROP TRIGGER IF EXISTS, a seed that only raises:
-- its row deleted, this migration applies again unchanged. Applied in one transaction by
-- `waygatectl migrate` as the owner: no transaction control.

CREATE TABLE IF NOT EXISTS kek_wrap (
    suite      smallint    NOT NULL CHECK (suite IN (1, 2)),
    version    integer     NOT NULL CHECK (version >= 1),
    count      bigint      NOT NULL DEFAULT 0 CHECK (count >= 0),
    wrap_limit bigint      NOT NULL DEFAULT 2147483648
                           CHECK (wrap_limit >= 1 AND wrap_limit <= 4294967296),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (suite, version)
);

COMMENT ON TABLE kek_wrap IS
    'Data-key wraps leased under each KEK version (kek_wrap_lease): never fewer than were made, '
    'never more than wrap_limit (2^31 unless the owner lowered it). Seeded from the waybill '
    'rows at sql/050: a lower bound.';

-- The count only grows and the limit only falls; no row of a registered KEK version goes away.
-- A row whose version kek_version does not hold (sql/036) may be deleted (the login roles have
-- no DELETE: the owner): a version the login roles registered with a made-up check value and
-- then used up, to stop the next rotation, is cleared by deleting that kek_version row and then
-- this one (docs/operations.md).
CREATE OR REPLACE FUNCTION kek_wrap_keep() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM kek_version v
                                         WHERE v.suite = OLD.suite AND v.version = OLD.version) THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.suite <> OLD.suite OR NEW.version <> OLD.version OR NEW.count < OLD.count
           OR NEW.wrap_limit > OLD.wrap_limit THEN
            RAISE EXCEPTION 'kek_wrap: the wraps counted under a KEK version never go down'
                USING ERRCODE = 'WK002';
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'kek_wrap: the wraps counted under a KEK version are never removed (%)', TG_OP
        USING ERRCODE = 'WK002';
END
$fn$;

DROP TRIGGER IF EXISTS kek_wrap_keep ON kek_wrap;
CREATE TRIGGER kek_wrap_keep BEFORE UPDATE OR DELETE ON kek_wrap
    FOR EACH ROW EXECUTE FUNCTION kek_wrap_keep();
DROP TRIGGER IF EXISTS kek_wrap_keep_truncate ON kek_wrap;
CREATE TRIGGER kek_wrap_keep_truncate BEFORE TRUNCATE ON kek_wrap
    FOR EACH STATEMENT EXECUTE FUNCTION kek_wrap_keep();

-- The seed: never lowers a count already there (a second run, or a row leased since).
INSERT INTO kek_wrap (suite, version, count)
SELECT get_byte(w.dek_wrapped, 1), w.kek_version, count(*)
  FROM waybill w
 WHERE octet_length(w.dek_wrapped) >= 2 AND get_byte(w.dek_wrapped, 1) IN (1, 2)
   AND w.kek_version >= 1
 GROUP BY 1, 2
ON CONFLICT (suite, version) DO UPDATE SET count = EXCLUDED.count
 WHERE kek_wrap.count < EXCLUDED.count;

-- Leases up to p_n (at most 2^20) more wraps under (p_suite, p_version), within least(the
-- row's limit, p_limit): answers (granted, count), granted between 1 and p_n and count the
-- version's count after it; with p_whole, p_n or nothing. Refuses (WK001) when the count has
-- reached that limit (with p_whole, when p_n would pass it): nothing granted, nothing counted.
-- Refuses (WK003) a version kek_version does not hold: a keyring registers each of its KEK
-- versions when it meets the database (sql/036), so no caller leases ahead of a rotation.
-- p_limit is not stored. The row is locked for the statement's transaction: two leases at once
-- add up.
DROP FUNCTION IF EXISTS kek_wrap_lease(integer, integer, bigint, bigint);
CREATE OR REPLACE FUNCTION kek_wrap_lease(p_suite integer, p_version integer, p_n bigint,
                                          p_limit bigint, p_whole boolean DEFAULT false)
RETURNS TABLE (l_granted bigint, l_count bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    r   kek_wrap%ROWTYPE;
    lim bigint;
BEGIN
    IF p_suite IS NULL OR p_suite NOT IN (1, 2) OR p_version IS NULL OR p_version < 1
       OR p_n IS NULL OR p_n < 1 OR p_n > 1048576 OR p_limit IS NULL OR p_limit < 1
       OR p_limit > 4294967296 THEN
        RAISE EXCEPTION 'kek_wrap_lease: a suite (1, 2), a version >= 1, n between 1 and 2^20 '
                        'and a limit between 1 and 2^32 are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kek_version v
                    WHERE v.suite = p_suite AND v.version = p_version) THEN
        RAISE EXCEPTION 'KEK version % of suite % is not registered in this database: a keyring '
                        'registers its versions when it meets the database', p_version, p_suite
            USING ERRCODE = 'WK003';
    END IF;
    INSERT INTO kek_wrap (suite, version) VALUES (p_suite, p_version)
    ON CONFLICT (suite, version) DO NOTHING;
    SELECT * INTO r FROM kek_wrap k WHERE k.suite = p_suite AND k.version = p_version FOR UPDATE;
    lim := least(r.wrap_limit, p_limit);
    IF r.count >= lim OR (coalesce(p_whole, false) AND r.count + p_n > lim) THEN
        RAISE EXCEPTION 'KEK version % of suite % is at its limit of % data-key wraps (% '
                        'counted, % asked): rotate the KEK', p_version, p_suite, lim, r.count, p_n
            USING ERRCODE = 'WK001';
    END IF;
    l_granted := least(p_n, lim - r.count);
    UPDATE kek_wrap k SET count = k.count + l_granted, updated_at = now()
     WHERE k.suite = p_suite AND k.version = p_version
    RETURNING k.count INTO l_count;
    RETURN NEXT;
END
$fn$;

DO $kek_wrap$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    adm   text := current_database() || '_admin';
    f     text := 'kek_wrap_lease(integer, integer, bigint, bigint, boolean)';
BEGIN
    EXECUTE format('ALTER TABLE kek_wrap OWNER TO %I', owner);
    EXECUTE format('REVOKE ALL ON TABLE kek_wrap FROM PUBLIC, %I, %I', gw, adm);
    EXECUTE format('GRANT SELECT ON TABLE kek_wrap TO %I, %I', gw, adm);
    EXECUTE format('ALTER FUNCTION kek_wrap_keep() OWNER TO %I', owner);
    EXECUTE 'REVOKE ALL ON FUNCTION kek_wrap_keep() FROM PUBLIC';
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f,
                   current_schema());
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I, %I', f, gw, adm);
END
$kek_wrap$;
