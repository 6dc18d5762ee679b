-- 030_bulk_request_level: a bulk request's count takes only the records within its requester's
-- security levels, as its run releases them (Art. 37; parts 1, 2, 4).
--
-- The count of a new request took the records of every security level while an export's or
-- copy's run released only those within its requester's levels (gw_policy_max_level): the count
-- told the requester that classified records it may not see exist, and the approver approved a
-- figure the run did not match. Now the request stores the highest level its requester's role
-- could see when it was counted (bulk_request.max_level; the gateway reads it from its policy
-- file, [levels]), its count takes only the records within it, and every run takes the records
-- within the lower of that and the requester's level when it runs, by one predicate:
-- bulk_within_level, which the gateway's request count, its run's count and its pages
-- (gateway/store/store_bulk.c) all use.
-- Requests stored before this migration, and a row inserted without it (a gateway older than
-- this migration), get max_level 0 (unclassified), the least clearance: their runs take only
-- unclassified records (fewer than their count, never more).
-- IF NOT EXISTS, CREATE OR REPLACE: its row deleted, this migration applies again unchanged.
-- Applied in one transaction by `waygatectl migrate` as the owner: no transaction control.

ALTER TABLE bulk_request ADD COLUMN IF NOT EXISTS max_level smallint NOT NULL DEFAULT 0
    CONSTRAINT bulk_request_max_level CHECK (max_level BETWEEN -1 AND 3);
COMMENT ON COLUMN bulk_request.max_level IS
    'The highest security level the requester''s role could see when the request was counted '
    '(-1: none): its count and every run of it take only records at most this level.';

-- Whether a record of security level p_level (NULL: unclassified) is within p_max, the highest
-- level a requester may see (-1: none). The one level predicate of a bulk request.
CREATE OR REPLACE FUNCTION bulk_within_level(p_level smallint, p_max integer) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(p_level, 0) <= p_max
$$;

DO $request_level$
DECLARE
    owner name := (SELECT pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database());
    gw    text := current_database() || '_gateway';
    f     text := 'bulk_within_level(smallint, integer)';
BEGIN
    EXECUTE format('ALTER FUNCTION %s OWNER TO %I', f, owner);
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, gw);
END
$request_level$;
