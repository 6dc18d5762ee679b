-- 027_lawful_quiet: an expected refusal of a lawful-access decision raises nothing in the database
-- (Art. 16). PostgreSQL's own server log keeps every statement that raised an error
-- (log_min_error_statement = error, the default), with the error's text, the function that raised
-- it and, where log_parameter_max_length_on_error is set, the statement's parameters: the case id,
-- the decider, the comment. lawful_case_decide (sql/010, sql/021) raised for every refusal a
-- security admin meets in the ordinary course: no such case (WL001), already decided (WL002),
-- the requester's own person (WL003), expired undecided (WL004), a past valid_until (WL006), a
-- decider not independent of the requester (WL007); so the server log's readers (the database's
-- operators) learnt of lawful cases and when they were decided.
--
-- Now the gateway asks lawful_case_decidable first, in a read of its own: it answers the
-- SQLSTATE the decision would raise, or NULL when the case may be decided now, and raises nothing.
-- Only then is the decision queued; lawful_case_decide keeps its checks for what changed in
-- between (another decision, the clock), which stays an error: unexpected, and rare.
-- lawful_case_check (WL005) is not asked before: a lawful read reads its record under the
-- case's scope, where row-level security shows nothing of a lapsed case (the read is refused
-- without an error), so WL005 is raised only when the case lapsed during the read itself.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

-- The checks of lawful_case_decide, in its order, without the lock and without raising. Runs
-- with the caller's privileges (the gateway's role reads lawful_case under its scope '' and
-- account.person, as lawful_case_decide does; account_related runs as the owner).
CREATE FUNCTION lawful_case_decidable(p_case uuid, p_decider bigint, p_approve boolean,
                                      p_valid_until timestamptz, p_ttl_s bigint) RETURNS text
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
        END
      FROM (SELECT 1) one LEFT JOIN lawful_case c ON c.id = p_case
$fn$;

DO $quiet$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    f     text := 'lawful_case_decidable(uuid, bigint, boolean, timestamptz, bigint)';
BEGIN
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
END
$quiet$;
