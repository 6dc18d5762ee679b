-- 035_audit_key_own_id: a checkpoint key is stored only under its own id, the SHA-256 of its
-- public key, and an SM2 key only as a point of the curve (Art. 33).
--
-- audit_key took any row of the right lengths, and both login roles may insert into it (each
-- registers its signing key). Whoever held either role could therefore:
--  - add a public key already listed, under another key id (any 64 hex digits): the live check
--    and every export list each row's key, so that key was listed twice, which both bundle
--    verifiers take as a fault of the bundle's own structure: `audit verify` stopped at the keys
--    of every chain, naming no tampering anywhere, and no exported bundle verified;
--  - add an SM2 "key" that is not a point of the curve (0x04 and 64 junk bytes): every export
--    lists it, and a verifier that follows docs/audit-bundle-format.md rule 4 (verify_bundle.py,
--    a regulator's own) refuses every bundle at it.
-- Now two CHECKs, for every role. NOT VALID: rows stored before are not re-checked here; the
-- readers of the keys (gateway/store/audit_read.c, GW_AUDIT_KEYS_SQL and gw_audit_key_row) list
-- each public key once and leave out a row that is no key.
-- CREATE OR REPLACE, DROP CONSTRAINT IF EXISTS: its row deleted, this migration applies again
-- unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

-- Whether k is an uncompressed point 04|x|y of the SM2 curve of GB/T 32918.5: x, y < p and
-- y^2 = x^3 + ax + b mod p, a = p - 3, in exact numeric arithmetic.
CREATE OR REPLACE FUNCTION audit_sm2_point_ok(k bytea) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    ph bytea := '\xfffffffeffffffffffffffffffffffffffffffff00000000ffffffffffffffff';
    bh bytea := '\x28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93';
    p  numeric := 0;
    b  numeric := 0;
    x  numeric := 0;
    y  numeric := 0;
BEGIN
    IF octet_length(k) <> 65 OR get_byte(k, 0) <> 4 THEN
        RETURN false;
    END IF;
    FOR i IN 0..31 LOOP
        p := p * 256 + get_byte(ph, i);
        b := b * 256 + get_byte(bh, i);
        x := x * 256 + get_byte(k, 1 + i);
        y := y * 256 + get_byte(k, 33 + i);
    END LOOP;
    RETURN x < p AND y < p AND mod(y * y - (x * x * x + (p - 3) * x + b), p) = 0;
END
$fn$;

ALTER TABLE audit_key DROP CONSTRAINT IF EXISTS audit_key_id_is_its_hash;
ALTER TABLE audit_key ADD CONSTRAINT audit_key_id_is_its_hash
    CHECK (key_id = encode(sha256(public_key), 'hex')) NOT VALID;
ALTER TABLE audit_key DROP CONSTRAINT IF EXISTS audit_key_sm2_on_the_curve;
ALTER TABLE audit_key ADD CONSTRAINT audit_key_sm2_on_the_curve
    CHECK (algorithm <> 'sm2' OR audit_sm2_point_ok(public_key)) NOT VALID;

DO $own_id$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
BEGIN
    EXECUTE format('ALTER FUNCTION audit_sm2_point_ok(bytea) OWNER TO %I', owner);
END
$own_id$;
