-- 041_people_certificates: a certificate of a people's role is always registered for
-- administration (Art. 31, 34).
--
-- A certificate of security_admin, system_admin, compliance_auditor or lawful_access registered
-- without `admin` (`waygatectl principals add` without --admin, or a row written directly) kept
-- acting with its role and named no person: it created and disabled accounts, issued segments,
-- rotated keys, exported the audit trail, without any account's token (only the bulk and lawful
-- calls refused it, in their handlers). A certificate registered for administration acts only
-- through an account's token, which names the person (gw_policy_may_call). Now the rows of those
-- roles are set `admin` here (a WARNING names them, which `waygatectl migrate` prints), and the
-- CHECK below refuses any other, whoever writes; `waygatectl principals add` refuses such a role
-- without --admin in the same terms, and the policy treats such a certificate as an
-- administration channel whatever its flag says.
-- The roles are those of gw_account_role_person_only (gateway/domain/account.c).
-- The rows so changed keep their certificate and name: the dev stack and docs/operations.md
-- registered them with --admin already; a metrics scraper's system_admin certificate is served
-- as before (gateway/app/metrics.c looks at its role, not the flag).
-- DROP CONSTRAINT IF EXISTS, an UPDATE of what is left: its row deleted, this migration applies
-- again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

DO $do$
DECLARE
    names text;
    n     bigint;
BEGIN
    WITH u AS (
        UPDATE principal SET admin = true
         WHERE role IN ('security_admin', 'system_admin', 'compliance_auditor', 'lawful_access')
           AND NOT admin
        RETURNING name)
    SELECT count(*), string_agg(name, ', ' ORDER BY name) INTO n, names FROM u;
    IF n > 0 THEN
        RAISE WARNING '041: % certificate(s) of a people''s role now registered for administration '
                     '(they act only through an account''s token): %', n, names;
    END IF;
END
$do$;

ALTER TABLE principal DROP CONSTRAINT IF EXISTS principal_people_admin;
ALTER TABLE principal ADD CONSTRAINT principal_people_admin CHECK
    (admin OR role NOT IN ('security_admin', 'system_admin', 'compliance_auditor',
                           'lawful_access'));
COMMENT ON CONSTRAINT principal_people_admin ON principal IS
    'A certificate of a people''s role (security_admin, system_admin, compliance_auditor, '
    'lawful_access) is registered for administration: it acts only through an account''s token, '
    'which names the person (Art. 31, 34; sql/041).';
