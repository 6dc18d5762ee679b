-- 018_outbox_fast: the forwarder's fast path (issue 9). The gateway that accepted a waybill still
-- holds its sealed record when the group commit returns, and sends that delivery at once from
-- memory instead of claiming it (gateway/forward/forward.c). So that no other gateway (nor its own
-- claim) sends it meanwhile, the very insert that writes the outbox row takes the lease
-- (gateway/store/store_group.c: lease_owner = the gateway's owner name, lease_until = the insert's
-- clock + [forward] lease_ms); the claim already skips a row whose lease lives (sql/012). A
-- gateway that dies with the delivery in memory loses nothing: the row stays, the lease runs out,
-- and a claim sends it. Rows inserted without the fast path carry no lease, as before.
-- The gateway's role may now also set those two columns when it inserts a row (it could already
-- update them: the claim); nothing else changes. Applied in one transaction by `waygatectl
-- migrate` as the owner: no transaction control.

DO $fast$
DECLARE
    gw text := current_database() || '_gateway';
BEGIN
    EXECUTE format('GRANT INSERT (lease_owner, lease_until) ON outbox TO %I', gw);
END
$fast$;
