-- 032_lawful_longest: the database refuses a lawful-access approval longer than a year (Art. 16).
--
-- The gateway holds an approval's valid_until at most [compliance] lawful_max_s (default 365
-- days) from now (gateway/api/api_lawful.c), but the database accepted any value: a holder of
-- the gateway's role, which may UPDATE lawful_case's decision columns and call
-- lawful_case_decide, could approve a case for a century. Now a trigger on lawful_case refuses,
-- with SQLSTATE WL008, an approved row (inserted, decided or changed) whose valid_until is more
-- than 31536000 s (365 days) after the time of the writing transaction, now(): the decision's
-- time, which lawful_case_decide stores as decided_at. It is bound to now(), not to the row's
-- decided_at, because the gateway's role may write decided_at itself (a forged decision dated
-- 2100 would pass a bound on decided_at).
-- The bound is this file's constant, not a parameter: a bound the caller passes binds nothing a
-- holder of the caller's role does. It is the ceiling the gateway's configuration allows for
-- lawful_max_s (gateway/core/config.c: 60..31536000) and its default, so every approval a
-- configured gateway grants is within it; a carrier that lowers lawful_max_s is held to its
-- value by the gateway, and to this ceiling by the database. Raising it needs both changed.
-- lawful_case_decidable (sql/027) answers WL008 too, so the gateway's expected refusal raises
-- nothing in the database; lawful_case_decide raises it from the trigger (the clock passing
-- between, a gateway clock ahead of the database's).
-- Cases approved before this migration keep their valid_until (a migration does not re-decide a
-- case); `SELECT id, valid_until FROM lawful_case WHERE state = 'approved' AND valid_until >
-- decided_at + interval '365 days'` lists any that were approved for longer.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE OR REPLACE FUNCTION lawful_case_longest_trg() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.state = 'approved' AND NEW.valid_until > now() + make_interval(secs => 31536000) THEN
        RAISE EXCEPTION 'valid_until: must be at most 31536000 s (365 days) after the decision '
                        '(an approval''s longest lifetime)' USING ERRCODE = 'WL008';
    END IF;
    RETURN NEW;
END
$fn$;

DROP TRIGGER IF EXISTS lawful_case_longest ON lawful_case;
CREATE TRIGGER lawful_case_longest BEFORE INSERT OR UPDATE OF state, valid_until ON lawful_case
    FOR EACH ROW EXECUTE FUNCTION lawful_case_longest_trg();

CREATE OR REPLACE FUNCTION lawful_case_decidable(p_case uuid, p_decider bigint,
                                                 p_approve boolean, p_valid_until timestamptz,
                                                 p_ttl_s bigint) RETURNS text
    LANGUAGE sql STABLE AS $fn$
    SELECT CASE
        WHEN c.id IS NULL THEN 'WL001'
        WHEN c.state <> 'pending' THEN 'WL002'
        WHEN c.requester_account = p_decider OR
             (SELECT person FROM account WHERE id = c.requester_account) =
             (SELECT person FROM account WHERE id = p_decider) THEN 'WL003'
        WHEN account_related((SELECT name FROM account WHERE id = c.requester_account),
                             (SELECT name FROM account WHERE id = p_decider)) THEN 'WL007'
        WHEN c.requested_at + make_interval(secs => p_ttl_s) < now() THEN 'WL004'
        WHEN p_approve AND p_valid_until <= now() THEN 'WL006'
        WHEN p_approve AND p_valid_until > now() + make_interval(secs => 31536000) THEN 'WL008'
        END
      FROM (SELECT 1) one LEFT JOIN lawful_case c ON c.id = p_case
$fn$;

DO $longest$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
BEGIN
    EXECUTE format('ALTER FUNCTION lawful_case_longest_trg() OWNER TO %I', owner);
    EXECUTE 'REVOKE ALL ON FUNCTION lawful_case_longest_trg() FROM PUBLIC';
END
$longest$;
