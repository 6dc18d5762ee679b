-- 029_schema_version: the gateway's role may read how far the schema was migrated, and nothing
-- else of schema_migrations.
--
-- waygated used to run on whatever schema it found: after an upgrade without `waygatectl
-- migrate`, its statements failed on missing columns with bare SQLSTATEs. Now each connection of
-- its pool reads schema_version() as part of its set-up, and one on a schema older than the
-- newest migration the build embeds is closed and tried again after the backoff (calls answer
-- UNAVAILABLE, the log names both numbers and the remedy: gateway/store/db_conn.c).
--
-- A function run as the owner, not a column grant on schema_migrations: 005_roles.sql revokes
-- every privilege on that table from both login roles (a table-level REVOKE takes the column
-- grants with it), and run again, as it may be, it would lock every gateway out with a remedy
-- (`waygatectl migrate`) that does not help once this migration is recorded. The function also
-- gives the role the highest version only, not the names and checksums.
-- CREATE OR REPLACE: its row deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

CREATE OR REPLACE FUNCTION schema_version() RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER AS $$
    SELECT coalesce(max(version), 0) FROM schema_migrations
$$;

DO $schema_version$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
BEGIN
    EXECUTE format('ALTER FUNCTION schema_version() OWNER TO %I', owner);
    EXECUTE format('ALTER FUNCTION schema_version() SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE 'REVOKE ALL ON FUNCTION schema_version() FROM PUBLIC';
    EXECUTE format('GRANT EXECUTE ON FUNCTION schema_version() TO %I', gw);
END
$schema_version$;
